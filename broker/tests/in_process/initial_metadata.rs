//! A (re)started broker and its empty metadata cache: client requests wait for the
//! controller's first UpdateMetadata, and are never answered as if the cluster had no topics.
//!
//! Kafka counterpart: KRaft's `BrokerServer.startup` blocks on the initial metadata catch-up
//! before it enables request processing; Kafka 3.6 in ZooKeeper mode answers from its empty
//! `ZkMetadataCache`, which librdkafka takes as "partition count changed to 0" (issue 22).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::client::Connection;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};

use crate::harness::{topic_name, wait_for, Cluster};

const LEADER_NOT_AVAILABLE: i16 = 5;

/// Metadata v12 for `topics` (`None`: all topics), without auto-creation.
fn metadata_request(topics: Option<&[&str]>) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                .collect()
        }))
        .with_allow_auto_topic_creation(false)
}

async fn ask(addr: std::net::SocketAddr, topics: Option<&[&str]>) -> Option<MetadataResponse> {
    let mut c = Connection::connect(&addr.to_string(), "probe", Duration::from_secs(5))
        .await
        .ok()?;
    c.send(ApiKey::Metadata, 12, &metadata_request(topics))
        .await
        .ok()
}

/// What the test requires of every answer a restarted broker gives: topic `t` with both of
/// its partitions, at least one broker, and a controller.
fn describes_the_cluster(md: &MetadataResponse) -> Result<(), String> {
    let t = md
        .topics
        .iter()
        .find(|x| x.name.as_ref().is_some_and(|n| n.as_str() == "t"))
        .ok_or_else(|| format!("no topic t in {md:?}"))?;
    if t.error_code != 0 || t.partitions.len() != 2 {
        return Err(format!(
            "topic t answered with error {} and {} partitions",
            t.error_code,
            t.partitions.len()
        ));
    }
    if md.brokers.is_empty() || md.controller_id.0 < 0 {
        return Err(format!(
            "{} brokers, controller {}",
            md.brokers.len(),
            md.controller_id.0
        ));
    }
    Ok(())
}

// Issue 22 item 4 (Kafka: KRaft's BrokerServer waits for its initial metadata; ZooKeeper mode
// gets the same from the first UpdateMetadata of onBrokerStartup). Requests sent while the
// restarted broker still waits for its old registration to go are answered only once the
// controller has described the cluster, and so is every request after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restarted_within_the_session_timeout_never_answers_metadata_without_topics() {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3], &[3, 2]], &[]).await;
    c.wait_metadata_leader(2, "t", 0, 2).await;
    c.freeze(2).await;
    let starting = c.begin_restart_while_registered(2);
    let addr = c.addr(2);

    // From the moment the port is bound: requests queued before the broker serves, on
    // connections of their own (each one alone on its connection, as a client's first).
    wait_for("broker 2's port bound again", || async {
        tokio::net::TcpStream::connect(addr).await.ok().map(|_| ())
    })
    .await;
    let mut early = Vec::new();
    for topics in [Some(&["t"][..]), None, Some(&["t"][..])] {
        early.push(tokio::spawn(async move { ask(addr, topics).await }));
    }
    // And a client asking again and again, through the start and after it.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Some(md) = ask(addr, Some(&["t"])).await {
                    answers.push(md);
                }
            }
            answers
        }
    });

    // The old session expires (the ensemble's session timeout); the new run registers.
    c.expire_old_session(2);
    c.finish_restart(starting).await;
    wait_for("broker 2 serving metadata again", || async {
        ask(addr, Some(&["t"]))
            .await
            .filter(|md| describes_the_cluster(md).is_ok())
            .map(|_| ())
    })
    .await;
    stop.store(true, Ordering::SeqCst);

    for (i, e) in early.into_iter().enumerate() {
        let md = e.await.unwrap().expect("an answer to the early request");
        if let Err(why) = describes_the_cluster(&md) {
            panic!("early request {i}: {why}");
        }
    }
    let answers = poller.await.unwrap();
    assert!(!answers.is_empty());
    for (i, md) in answers.iter().enumerate() {
        if let Err(why) = describes_the_cluster(md) {
            panic!("polled answer {i} of {}: {why}", answers.len());
        }
    }
}

// Issue 22 item 4, the bound: with no controller to send UpdateMetadata (its broker hung, its
// session still holding /controller), a restarted broker answers after request.timeout.ms
// (2 s in these tests) without claiming the topic is gone: LEADER_NOT_AVAILABLE without
// partitions (which librdkafka ignores and the Java client retries), itself as the broker
// list, and the topics of ZooKeeper for an all-topics request. Kafka 3.6 would answer
// UNKNOWN_TOPIC_OR_PARTITION, no brokers, and no topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_update_metadata_a_restarted_broker_answers_leader_not_available() {
    let mut c = Cluster::start(2).await;
    c.create_topic("t", &[&[1, 2], &[1, 2]], &[]).await;
    c.wait_metadata_leader(2, "t", 0, 1).await;
    c.freeze(1).await;
    c.freeze(2).await;
    c.restart(2).await;
    let addr = c.addr(2);

    let started = Instant::now();
    let (named, all) = tokio::join!(ask(addr, Some(&["t"])), ask(addr, None));
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "answered after {:?}, before the wait's bound",
        started.elapsed()
    );
    for md in [
        named.expect("named answer"),
        all.expect("all-topics answer"),
    ] {
        assert_eq!(md.topics.len(), 1, "{md:?}");
        let t = &md.topics[0];
        assert_eq!(t.name.as_ref().map(|n| n.as_str()), Some("t"));
        assert_eq!(t.error_code, LEADER_NOT_AVAILABLE);
        assert!(t.partitions.is_empty());
        let brokers: Vec<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
        assert_eq!(brokers, [2]);
        assert_eq!(md.brokers[0].port, i32::from(addr.port()));
        assert_eq!(md.controller_id.0, -1);
    }
}
