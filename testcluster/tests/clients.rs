//! Stock Kafka clients against a real cluster (real ZooKeeper, three broker processes):
//! kcat (librdkafka 2.0.2) with every compression codec, confluent-kafka (librdkafka 2.x) and
//! kafka-python at acks=1 and acks=all, each checking that every record comes back once, in
//! order per partition, with its key, value, headers and timestamp.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use testcluster::{Cluster, ClusterOptions};

/// One cluster at a time in this binary: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs a command with a time limit; returns (status ok, stdout, stderr).
fn run(cmd: &mut Command, stdin: Option<&[u8]>, limit: Duration) -> (bool, String, String) {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn client");
    if let Some(input) = stdin {
        let mut si = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = si.write_all(&input);
        });
    }
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(limit);
        // SAFETY: kill(2) on the client's pid; harmless if it already exited.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    });
    let out = child.wait_with_output().expect("wait client");
    drop(watchdog);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kcat_roundtrip(c: &Cluster, topic: &str, codec: &str, n: usize) {
    let input: String = (0..n).map(|i| format!("k{i}:v{i}\n")).collect();
    let t0 = now_ms();
    let (ok, _, err) = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(),
            "-P",
            "-t",
            topic,
            "-K:",
            "-z",
            codec,
            "-H",
            "origin=kcat",
            "-X",
            "linger.ms=20",
        ]),
        Some(input.as_bytes()),
        Duration::from_secs(120),
    );
    assert!(ok, "kcat produce ({codec}) failed: {err}");
    let t1 = now_ms();
    let (ok, out, err) = run(
        Command::new("kcat").args([
            "-b",
            &c.bootstrap(),
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p\t%o\t%k\t%s\t%h\t%T\n",
        ]),
        None,
        Duration::from_secs(120),
    );
    assert!(ok, "kcat consume failed: {err}");
    let mut seen = vec![false; n];
    let mut last: HashMap<i32, (i64, usize)> = HashMap::new();
    let mut count = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 6, "bad kcat line {line:?}");
        let p: i32 = f[0].parse().unwrap();
        let off: i64 = f[1].parse().unwrap();
        let i: usize = f[2].trim_start_matches('k').parse().unwrap();
        assert_eq!(f[3], format!("v{i}"), "value of record {i}");
        assert_eq!(f[4], "origin=kcat", "headers of record {i}");
        let ts: i64 = f[5].parse().unwrap();
        assert!(
            ts >= t0 - 1000 && ts <= t1 + 1000,
            "timestamp {ts} of record {i} outside the produce run"
        );
        assert!(!seen[i], "record {i} consumed twice");
        seen[i] = true;
        if let Some((po, pi)) = last.get(&p) {
            assert!(
                off > *po && i > *pi,
                "partition {p}: record {i}@{off} after {pi}@{po}"
            );
        }
        last.insert(p, (off, i));
        count += 1;
    }
    assert_eq!(count, n, "{codec}: consumed {count} of {n}");
}

/// kcat produces and consumes 100,000 records with each codec, on 6- and 1-partition topics.
#[test]
fn kcat_every_codec() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(ClusterOptions::default()).expect("cluster");
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("kcat-{codec}");
        let leaders = c.create_topic(&topic, 6, 1, &[]).expect("create topic");
        let mut spread = leaders.clone();
        spread.sort_unstable();
        spread.dedup();
        assert_eq!(
            spread.len(),
            3,
            "6 partitions over 3 brokers: leaders {leaders:?}"
        );
        kcat_roundtrip(&c, &topic, codec, 100_000);
    }
    c.create_topic("kcat-single", 1, 1, &[])
        .expect("create topic");
    kcat_roundtrip(&c, "kcat-single", "none", 100_000);
}

fn python(c: &Cluster, client: &str, topic: &str, acks: &str, n: usize) {
    let py = testcluster::workspace_root().join(".venv/bin/python");
    let script = testcluster::workspace_root().join("testcluster/clients/py_roundtrip.py");
    let (ok, out, err) = run(
        Command::new(py)
            .arg(script)
            .args([client, &c.bootstrap(), topic, acks, &n.to_string()]),
        None,
        Duration::from_secs(240),
    );
    assert!(
        ok && out.contains(&format!("OK {n}")),
        "{client} acks={acks} on {topic}: {out}\n{err}"
    );
}

/// confluent-kafka and kafka-python, acks=1 and acks=all, on 1- and 6-partition topics.
#[test]
fn python_clients_acks_1_and_all() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(ClusterOptions::default()).expect("cluster");
    for (client, short) in [("confluent", "ck"), ("kafka-python", "kp")] {
        for acks in ["1", "all"] {
            for parts in [1, 6] {
                let topic = format!("{short}-acks{acks}-p{parts}");
                c.create_topic(&topic, parts, 1, &[]).expect("create topic");
                python(&c, client, &topic, acks, 20_000);
            }
        }
    }
}

/// kafkajs produces and consumes through a consumer group (FindCoordinator, JoinGroup,
/// SyncGroup, Heartbeat, OffsetCommit/OffsetFetch), on a 6-partition topic.
#[test]
fn kafkajs_produce_consume() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::start(ClusterOptions::default()).expect("cluster");
    c.create_topic("js-topic", 6, 1, &[]).expect("create topic");
    let script = testcluster::workspace_root().join("testcluster/clients/kafkajs_roundtrip.js");
    let (ok, out, err) = run(
        Command::new("node")
            .arg(script)
            .args([&c.bootstrap(), "js-topic", "10000"]),
        None,
        Duration::from_secs(180),
    );
    assert!(ok && out.contains("OK 10000"), "kafkajs: {out}\n{err}");
}
