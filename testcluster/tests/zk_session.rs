//! A broker's ZooKeeper session against a real ZooKeeper: only the ensemble decides that a
//! session expired (issue 22).
//!
//! Kafka's brokers sit on ZooKeeper's Java client, which keeps reconnecting with its session id
//! and password until a server accepts the session again or answers SESSION_EXPIRED; a
//! connection loss the ensemble forgives changes nothing (same session, same `/brokers/ids/<id>`
//! czxid, so the same broker epoch; no controller failover). `zookeeper-client` alone gives up
//! after 7/5 of the session timeout without an answer; `zk::real::RealZk` resumes such a
//! session. Both tests pause or stop the ZooKeeper server itself (a standalone server), which
//! every broker loses at once, and check each broker's registration (czxid and
//! `ephemeralOwner`) and the controller (id and epoch) before and after.

use std::sync::Mutex;
use std::time::Duration;

use testcluster::cluster::WAIT;
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};

/// One cluster at a time in this binary (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `zookeeper.session.timeout.ms` of every broker (ZooKeeper's tickTime is 500 ms here, so it
/// is granted as asked).
const SESSION: Duration = Duration::from_millis(6000);

fn options() -> ClusterOptions {
    ClusterOptions::default()
        .config(
            "zookeeper.session.timeout.ms",
            &SESSION.as_millis().to_string(),
        )
        .config("default.replication.factor", "3")
        .config("auto.leader.rebalance.enable", "false")
}

/// ZooKeeper paused (SIGSTOP) for 0.55 of the session timeout, then resumed: long enough for
/// every broker to lose its connection (the client's connection timeout is 2/5 of the session
/// timeout, counted from its last answer), short enough that the server, whose clock counts
/// from its last contact (up to a ping interval, 0.15 of the timeout, before the pause) and
/// rounds up to a tick, cannot expire anyone while the clients reconnect with their endpoint
/// back-off. Every broker keeps its session, its registration and its broker epoch, the
/// controller stays, and no broker logs an expiry.
#[test]
fn a_zookeeper_pause_shorter_than_the_session_timeout_keeps_sessions_and_broker_epochs() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("s", 3, 3, &[]).unwrap();
    let before = c.registrations();
    let controller = c.controller().expect("a controller");
    let count = |c: &mut Cluster, id: i32, line: &str| c.broker(id).log().matches(line).count();
    let disconnects: Vec<usize> = (1..=3)
        .map(|id| count(&mut c, id, "enter state Disconnected"))
        .collect();
    let connects: Vec<usize> = (1..=3)
        .map(|id| count(&mut c, id, "succeeds to establish session"))
        .collect();
    c.zk.servers[0].signal(Signal::Stop);
    // The fault's length, not a wait for a condition.
    std::thread::sleep(SESSION * 55 / 100);
    c.zk.servers[0].signal(Signal::Cont);
    wait_until("every broker connected again", WAIT, || {
        (1..=3)
            .all(|id| {
                count(&mut c, id, "succeeds to establish session") > connects[(id - 1) as usize]
            })
            .then_some(())
    })
    .unwrap();
    for id in 1..=3 {
        assert!(
            count(&mut c, id, "enter state Disconnected") > disconnects[(id - 1) as usize],
            "broker {id} never lost its connection: the pause did not reach it"
        );
    }
    c.assert_sessions_kept(&before, controller, "s", 3);
}

/// ZooKeeper stopped (SIGKILL) for twice the session timeout, then started again on its data:
/// the server restores its sessions with a fresh timeout, so a client that reconnects with its
/// session id in time keeps it, as Kafka's brokers do. `zookeeper-client` declares the session
/// expired by itself after 7/5 of the timeout; the broker resumes it instead: same sessions,
/// registrations and broker epochs, the same controller and controller epoch, and every broker
/// logs the resumption and no expiry.
#[test]
fn zookeeper_down_past_the_clients_own_timeout_then_back_keeps_every_session() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("d", 3, 3, &[]).unwrap();
    let before = c.registrations();
    let controller = c.controller().expect("a controller");
    c.zk.servers[0].kill();
    // The fault's length, not a wait for a condition.
    std::thread::sleep(SESSION * 2);
    c.zk.servers[0].start().unwrap();
    wait_until("ZooKeeper serving again", WAIT, || {
        c.zk.servers[0].is_ok().then_some(())
    })
    .unwrap();
    wait_until("every broker resumed its session", WAIT, || {
        (1..=3)
            .all(|id| c.broker(id).log().contains("resumed the ZooKeeper session"))
            .then_some(())
    })
    .unwrap();
    for id in 1..=3 {
        assert!(
            c.broker(id)
                .log()
                .contains("the ZooKeeper client gave up on its session"),
            "broker {id}: the client library did not give up, the test proves nothing"
        );
    }
    c.assert_sessions_kept(&before, controller, "d", 3);
}

/// The client layer alone (`KafkaZkClient` on `zk::real::RealZk`): ZooKeeper down for longer
/// than `zookeeper-client` waits (7/5 of a 2 s session timeout), then back on its data. The
/// session is resumed (same id, `session_expired` never resolves) and the watches armed before
/// the outage still fire for changes made once ZooKeeper is back, with the kind ZooKeeper would
/// have sent (a data change, a creation, a child change), as the Java client's `setWatches`
/// gives Kafka. Without the re-arming they would have ended with a session event.
#[test]
fn watches_armed_before_an_outage_fire_after_the_session_is_resumed() {
    use zk::backend::WatchKind;
    use zk::client::KafkaZkClient;
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut zookeeper = testcluster::ZooKeeper::start(dir.path(), 1).expect("ZooKeeper");
    let connect = format!("{}/watches", zookeeper.connect_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let session = Duration::from_secs(2);
    let (zk, a, b, c) = rt.block_on(async {
        let zk = KafkaZkClient::connect(&connect, session).await.unwrap();
        zk.create_recursive("/a").await.unwrap();
        zk.create_recursive("/c").await.unwrap();
        let (_, _, a) = zk.backend().get_data_and_watch("/a".into()).await.unwrap();
        let (_, b) = zk.backend().exists_and_watch("/b".into()).await.unwrap();
        let (_, c) = zk
            .backend()
            .get_children_and_watch("/c".into())
            .await
            .unwrap();
        (zk, a, b, c)
    });
    let session_id = zk.session_id();
    let a = rt.spawn(a);
    let b = rt.spawn(b);
    let c = rt.spawn(c);
    let expired = {
        let zk = zk.clone();
        rt.spawn(async move { zk.session_expired().await })
    };
    zookeeper.servers[0].kill();
    // The fault's length, not a wait for a condition: longer than the client waits.
    std::thread::sleep(session * 2);
    zookeeper.servers[0].start().unwrap();
    wait_until("ZooKeeper serving again", WAIT, || {
        zookeeper.servers[0].is_ok().then_some(())
    })
    .unwrap();
    rt.block_on(async {
        let other = KafkaZkClient::connect(&connect, session).await.unwrap();
        other
            .backend()
            .set_data("/a".into(), b"x".to_vec(), None)
            .await
            .unwrap();
        other.create_recursive("/b").await.unwrap();
        other.create_recursive("/c/child").await.unwrap();
        let limit = Duration::from_secs(30);
        assert_eq!(
            tokio::time::timeout(limit, a).await.unwrap().unwrap(),
            WatchKind::DataChanged
        );
        assert_eq!(
            tokio::time::timeout(limit, b).await.unwrap().unwrap(),
            WatchKind::Created
        );
        assert_eq!(
            tokio::time::timeout(limit, c).await.unwrap().unwrap(),
            WatchKind::ChildrenChanged
        );
        // Resumed, not replaced: the same session answers, and it never ended.
        let (_, stat) = zk
            .backend()
            .get_data("/a".into())
            .await
            .expect("the resumed session serves reads");
        assert!(stat.version >= 1);
        other.close().await;
    });
    assert_eq!(zk.session_id(), session_id);
    assert!(!expired.is_finished(), "the session was reported expired");
    rt.block_on(zk.close());
}
