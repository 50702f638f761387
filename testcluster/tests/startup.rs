//! Start-up checks a broker makes, as Kafka's: a bad config value stops it with a message
//! naming the key, a second broker with a live broker's id fails clearly, and so does a log dir
//! that belongs to another cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use testcluster::{BrokerProcess, Cluster, ClusterOptions};

fn run_broker(props: &str, dir: &std::path::Path) -> (Option<i32>, String) {
    let cfg = dir.join("bad.properties");
    std::fs::write(&cfg, props).unwrap();
    let out = testcluster::command(testcluster::broker_binary())
        .arg(&cfg)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_broker(
        "broker.id=1\nzookeeper.connect=127.0.0.1:1\nnum.partitions=lots\n",
        dir.path(),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("num.partitions"), "{err}");
    let (code, err) = run_broker("zookeeper.connect=127.0.0.1:1\n", dir.path());
    assert_ne!(code, Some(0));
    assert!(err.contains("broker.id"), "{err}");
}

#[test]
fn duplicate_broker_id_and_foreign_log_dir_fail_clearly() {
    let mut c = Cluster::start(
        ClusterOptions::default()
            .brokers(1)
            .config("zookeeper.session.timeout.ms", "2000"),
    )
    .unwrap();
    // A second broker claiming id 1 while broker 1 is alive: refused (after waiting out a
    // possible stale session: three times the session timeout + 10 s, 16 s here).
    let mut extra = BTreeMap::new();
    extra.insert(
        "zookeeper.session.timeout.ms".to_string(),
        "2000".to_string(),
    );
    let mut dup =
        BrokerProcess::start(1, c.path().join("dup"), &c.zookeeper_connect(), &extra).unwrap();
    let code = dup.wait_exit(Duration::from_secs(30)).unwrap();
    assert_ne!(code, Some(0));
    let log = dup.log();
    assert!(
        log.contains("/brokers/ids/1") && log.contains("already registered"),
        "{log}"
    );
    assert!(c.broker(1).is_running(), "the original broker is untouched");

    // Broker 1's log dir holds meta.properties of this cluster; a broker of another cluster
    // (another chroot, so another /cluster/id) pointed at it must refuse to start.
    c.broker(1).stop(Duration::from_secs(30)).unwrap();
    let mut foreign = BTreeMap::new();
    foreign.insert("log.dirs".to_string(), c.log_dir(1).display().to_string());
    let other = format!("{}/another-cluster", c.zk.connect_string());
    let mut b = BrokerProcess::start(1, c.path().join("foreign"), &other, &foreign).unwrap();
    let code = b.wait_exit(Duration::from_secs(30)).unwrap();
    assert_ne!(code, Some(0));
    let log = b.log();
    assert!(
        log.contains("cluster.id") && log.contains("meta.properties"),
        "{log}"
    );
}
