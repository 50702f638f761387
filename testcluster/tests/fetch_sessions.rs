//! Fetch sessions (KIP-227) with real processes: followers replicate through incremental
//! fetches (every leader holds one session per follower, holding exactly the partitions it
//! leads), and a consumer's session follows Kafka's rules on the wire: a full fetch opens it,
//! an incremental one answers only what changed, a wrong epoch or an unknown id is refused,
//! and epoch -1 closes it.

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use testcluster::cluster::{log_bytes, WAIT};
use testcluster::probe::{self, http_get, metric, metrics_address};
use testcluster::{wait_until, Cluster, ClusterOptions};

const TOPIC: &str = "fs";
const PARTITIONS: i32 = 12;

fn metrics_addr(c: &mut Cluster, id: i32) -> String {
    metrics_address(&c.broker(id).log()).expect("metrics address in the log")
}

fn kcat_produce(c: &Cluster, partition: i32, lines: &str) {
    probe::kcat_produce(&c.bootstrap(), TOPIC, partition, "all", lines).unwrap();
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// A consumer's Fetch v12 on session (`id`, `epoch`) naming `parts` (partition, offset).
fn fetch(
    client: &mut testcluster::kafka::Client,
    id: i32,
    epoch: i32,
    parts: &[(i32, i64)],
    forget: &[i32],
) -> FetchResponse {
    let mut req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(200)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(id)
        .with_session_epoch(epoch);
    if !parts.is_empty() {
        req.topics = vec![FetchTopic::default()
            .with_topic(name(TOPIC))
            .with_partitions(
                parts
                    .iter()
                    .map(|(p, o)| {
                        FetchPartition::default()
                            .with_partition(*p)
                            .with_fetch_offset(*o)
                            .with_current_leader_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(1 << 20)
                    })
                    .collect(),
            )];
    }
    if !forget.is_empty() {
        req.forgotten_topics_data = vec![ForgottenTopic::default()
            .with_topic(name(TOPIC))
            .with_partitions(forget.to_vec())];
    }
    client.send(ApiKey::Fetch, 12, &req).unwrap()
}

/// (partition, records bytes, high watermark) of every partition an answer carries.
fn carried(r: &FetchResponse) -> Vec<(i32, usize, i64)> {
    r.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.records.as_ref().map_or(0, Bytes::len),
                p.high_watermark,
            )
        })
        .collect()
}

#[test]
fn followers_and_consumers_fetch_through_sessions() {
    let mut c = Cluster::start(
        ClusterOptions::default()
            .config("metrics.port", "0")
            .config("auto.leader.rebalance.enable", "false"),
    )
    .unwrap();
    let leaders = c.create_topic(TOPIC, PARTITIONS, 3, &[]).unwrap();
    let addrs: Vec<String> = (1..=3).map(|id| metrics_addr(&mut c, id)).collect();

    // 1. Every leader holds a session for each of its two followers, holding exactly the
    //    partitions it leads (the offsets topic does not exist: no consumer group yet).
    let per_leader = |b: i32| leaders.iter().filter(|l| **l == b).count() as f64;
    wait_until("a fetch session per follower on every leader", WAIT, || {
        let ok = (1..=3).all(|b| {
            let page = http_get(&addrs[(b - 1) as usize], "/metrics").unwrap_or_default();
            let sessions = metric(
                &page,
                "kafka_server_FetchSessionCache_NumIncrementalFetchSessions",
            );
            let cached = metric(
                &page,
                "kafka_server_FetchSessionCache_NumIncrementalFetchPartitionsCached",
            );
            let leads = per_leader(b);
            sessions == Some(if leads > 0.0 { 2.0 } else { 0.0 }) && cached == Some(2.0 * leads)
        });
        ok.then_some(())
    })
    .unwrap();

    // 2. Records reach every replica through the sessions: the three copies of each
    //    partition end up byte for byte the same, and a consumer reads them all.
    let mut expected = String::new();
    for p in 0..PARTITIONS {
        let lines: String = (0..20).map(|i| format!("p{p}-r{i}\n")).collect();
        kcat_produce(&c, p, &lines);
        expected.push_str(&lines);
    }
    wait_until("every replica identical", WAIT, || {
        let same = (0..PARTITIONS).all(|p| {
            let copies: Vec<Vec<u8>> = (1..=3)
                .map(|b| log_bytes(&c.log_dir(b).join(format!("{TOPIC}-{p}"))))
                .collect();
            !copies[0].is_empty() && copies.iter().all(|x| *x == copies[0])
        });
        same.then_some(())
    })
    .unwrap();
    let out = testcluster::command("kcat")
        .args(["-b", &c.bootstrap(), "-C", "-t", TOPIC, "-e", "-q"])
        .output()
        .unwrap();
    let mut got: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let mut want: Vec<&str> = expected.lines().collect();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);

    // 3. A consumer's session on the wire, on the partitions broker `b` leads.
    let b = leaders[0];
    let mine: Vec<i32> = (0..PARTITIONS)
        .filter(|p| leaders[*p as usize] == b)
        .collect();
    assert!(mine.len() >= 2, "broker {b} leads {mine:?}");
    let addr = c.broker(b).address();
    let mut client = testcluster::kafka::Client::connect(&addr).unwrap();
    // A full fetch at epoch 0 opens a session and answers every partition named.
    let at_end: Vec<(i32, i64)> = mine.iter().map(|p| (*p, 20)).collect();
    let r = fetch(&mut client, 0, 0, &at_end, &[]);
    assert_eq!(r.error_code, 0);
    let id = r.session_id;
    assert_ne!(id, 0, "a full fetch at epoch 0 opens a session");
    assert_eq!(carried(&r).len(), mine.len());
    // Nothing changed: the incremental answer carries nothing (after the long poll).
    let r = fetch(&mut client, id, 1, &[], &[]);
    assert_eq!((r.error_code, r.session_id), (0, id));
    assert_eq!(carried(&r), vec![]);
    // One partition gets a record: only it is carried, with the record and the new high
    // watermark, though the request named no partition.
    let hot = mine[1];
    kcat_produce(&c, hot, "hot\n");
    let r = fetch(&mut client, id, 2, &[], &[]);
    let got = carried(&r);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, hot);
    assert!(got[0].1 > 0);
    assert_eq!(got[0].2, 21);
    // The same epoch again (a duplicate) is INVALID_FETCH_SESSION_EPOCH; an unknown id is
    // FETCH_SESSION_ID_NOT_FOUND.
    assert_eq!(fetch(&mut client, id, 2, &[], &[]).error_code, 71);
    let unknown = if id == i32::MAX { 1 } else { id + 1 };
    assert_eq!(fetch(&mut client, unknown, 1, &[], &[]).error_code, 70);
    // Moving the hot partition's offset past the record: nothing new anywhere.
    let r = fetch(&mut client, id, 3, &[(hot, 21)], &[]);
    assert_eq!(carried(&r), vec![]);
    // Forgetting every partition closes the session (answered sessionless).
    let r = fetch(&mut client, id, 4, &[], &mine);
    assert_eq!((r.error_code, r.session_id), (0, 0));
    assert_eq!(fetch(&mut client, id, 5, &[], &[]).error_code, 70);
    // Epoch -1 is a sessionless fetch: no session is opened.
    let r = fetch(&mut client, 0, -1, &at_end, &[]);
    assert_eq!((r.error_code, r.session_id), (0, 0));
}
