//! `zkCli.sh get` shows Kafka's znodes with Kafka's JSON: a broker registration, the controller,
//! a topic's assignment and a partition's state, as a real ZooKeeper-mode cluster writes them.

use serde_json::Value;
use testcluster::{Cluster, ClusterOptions};

fn json(c: &Cluster, path: &str) -> Value {
    let full = format!("{}{}", c.chroot, path);
    let text =
        c.zk.zkcli_get(&full)
            .unwrap_or_else(|| panic!("zkCli.sh get {full} printed no data"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{full}: {e}: {text}"))
}

#[test]
fn zkcli_shows_kafkas_json() {
    let mut c = Cluster::start(ClusterOptions::default()).expect("cluster");
    c.create_topic("orders", 3, 2, &[("retention.ms", "3600000")])
        .unwrap();

    let b = json(&c, "/brokers/ids/1");
    assert_eq!(b["version"], 5);
    assert_eq!(b["host"], "127.0.0.1");
    assert_eq!(b["port"].as_i64(), Some(c.broker(1).port as i64));
    assert_eq!(b["jmx_port"], -1);
    assert_eq!(
        b["endpoints"][0],
        format!("PLAINTEXT://127.0.0.1:{}", c.broker(1).port)
    );
    assert_eq!(
        b["listener_security_protocol_map"]["PLAINTEXT"],
        "PLAINTEXT"
    );
    assert!(b["features"].is_object());
    assert!(
        b["timestamp"].as_str().unwrap().parse::<i64>().is_ok(),
        "timestamp is a string of ms"
    );

    let ctl = json(&c, "/controller");
    assert_eq!(ctl["version"], 2);
    let (id, epoch) = c.controller().unwrap();
    assert_eq!(ctl["brokerid"].as_i64(), Some(id as i64));
    assert_eq!(ctl["kraftControllerEpoch"], -1);
    assert!(ctl["timestamp"].as_str().unwrap().parse::<i64>().is_ok());
    let e =
        c.zk.zkcli_get(&format!("{}/controller_epoch", c.chroot))
            .unwrap();
    assert_eq!(e.trim().parse::<i32>().unwrap(), epoch);

    let t = json(&c, "/brokers/topics/orders");
    assert_eq!(t["version"], 3);
    assert_eq!(t["partitions"].as_object().unwrap().len(), 3);
    assert_eq!(t["partitions"]["0"].as_array().unwrap().len(), 2);
    assert_eq!(t["topic_id"].as_str().unwrap().len(), 22, "base64url UUID");
    assert!(t["adding_replicas"].is_object() && t["removing_replicas"].is_object());

    let s = json(&c, "/brokers/topics/orders/partitions/0/state");
    assert_eq!(s["version"], 1);
    assert_eq!(s["controller_epoch"].as_i64(), Some(epoch as i64));
    assert_eq!(
        s["leader"], t["partitions"]["0"][0],
        "preferred replica leads"
    );
    assert_eq!(s["leader_epoch"], 0);
    assert_eq!(s["isr"].as_array().unwrap().len(), 2);

    let cfg = json(&c, "/config/topics/orders");
    assert_eq!(cfg["version"], 1);
    assert_eq!(cfg["config"]["retention.ms"], "3600000");

    let id = c.zk.zkcli_get(&format!("{}/cluster/id", c.chroot)).unwrap();
    let id: Value = serde_json::from_str(&id).unwrap();
    assert_eq!(id["version"], "1");
    assert_eq!(id["id"].as_str().unwrap().len(), 22);

    // Every broker claims a block of producer ids at start-up (Kafka's `ZkProducerIdManager`),
    // so after three the latest is {"version":1,"broker":<id>,"block_start":"2000",
    // "block_end":"2999"}; an idempotent producer (confluent-kafka, enable.idempotence) is
    // served from those blocks and claims none.
    let root = testcluster::workspace_root();
    let script = "import sys\nfrom confluent_kafka import Producer\n\
        p = Producer({'bootstrap.servers': sys.argv[1], 'enable.idempotence': True})\n\
        p.produce('orders', b'v')\nassert p.flush(30) == 0\n";
    let out = testcluster::command("timeout")
        .arg("60")
        .arg(root.join(".venv/bin/python"))
        .args(["-c", script, &c.bootstrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let block = json(&c, "/latest_producer_id_block");
    assert_eq!(block["version"], 1);
    assert!((1..=3).contains(&block["broker"].as_i64().unwrap()));
    assert_eq!(block["block_start"], "2000");
    assert_eq!(block["block_end"], "2999");
}
