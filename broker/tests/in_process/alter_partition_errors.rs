//! A leader's AlterPartition refused by the controller: which refusals end the attempt (the
//! change stays pending until the next LeaderAndIsr) and which are retried.
//!
//! Kafka counterpart: `Partition.handleAlterPartitionError` (per-partition codes) and
//! `DefaultAlterPartitionManager.handleAlterPartitionResponse` (a top-level error: retried).
//!
//! The controller here is a stand-in the test runs: broker 2 is told, by an UpdateMetadata of
//! a newer controller epoch, that broker 99 at the stand-in's address is the controller, so
//! every AlterPartition broker 2 sends reaches the test, which answers with the code under
//! test. The broker is real; only its peer is scripted, which is how a refusal the live
//! controller gives only in a race can be given on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::api::{encode_response, parse_request};
use bytes::{Buf, BytesMut};
use kafka_protocol::messages::alter_partition_response as resp;
use kafka_protocol::messages::leader_and_isr_request::LeaderAndIsrPartitionState;
use kafka_protocol::messages::leader_and_isr_request::{
    LeaderAndIsrLiveLeader, LeaderAndIsrTopicState,
};
use kafka_protocol::messages::update_metadata_request::{
    UpdateMetadataBroker, UpdateMetadataEndpoint,
};
use kafka_protocol::messages::{
    AlterPartitionResponse, ApiKey, BrokerId, LeaderAndIsrRequest, LeaderAndIsrResponse,
    RequestKind, ResponseKind, UpdateMetadataRequest, UpdateMetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{code, stays_false, topic_name, wait_for, Cluster};

const STAND_IN: i32 = 99;
const STAND_IN_EPOCH: i32 = 100;
const STALE_BROKER_EPOCH: i16 = 77;

/// How the stand-in answers.
#[derive(Clone, Copy)]
enum Answer {
    /// Every partition refused with this code.
    Partition(i16),
    /// The whole request refused with this code.
    TopLevel(i16),
}

struct StandIn {
    addr: std::net::SocketAddr,
    /// AlterPartition requests received.
    received: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
}

impl StandIn {
    fn received(&self) -> usize {
        self.received.load(Ordering::SeqCst)
    }
}

/// A controller stand-in answering AlterPartition as `answer` says.
async fn stand_in(answer: Answer) -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(Mutex::new(answer));
    tokio::spawn({
        let (received, answer) = (received.clone(), answer.clone());
        async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (received, answer) = (received.clone(), answer.clone());
                tokio::spawn(async move {
                    loop {
                        let Ok(len) = s.read_i32().await else { return };
                        let mut frame = BytesMut::zeroed(len as usize);
                        if s.read_exact(&mut frame).await.is_err() {
                            return;
                        }
                        let mut peek = &frame[..];
                        let (key, version) = (peek.get_i16(), peek.get_i16());
                        let Ok(req) = parse_request(key, version, frame.freeze()) else {
                            return;
                        };
                        let RequestKind::AlterPartition(r) = req.body else {
                            return;
                        };
                        received.fetch_add(1, Ordering::SeqCst);
                        let a = *answer.lock().unwrap();
                        let body = match a {
                            Answer::TopLevel(code) => {
                                AlterPartitionResponse::default().with_error_code(code)
                            }
                            Answer::Partition(code) => AlterPartitionResponse::default()
                                .with_topics(
                                    r.topics
                                        .iter()
                                        .map(|t| {
                                            resp::TopicData::default()
                                                .with_topic_name(t.topic_name.clone())
                                                .with_partitions(
                                                    t.partitions
                                                        .iter()
                                                        .map(|p| {
                                                            resp::PartitionData::default()
                                                                .with_partition_index(
                                                                    p.partition_index,
                                                                )
                                                                .with_error_code(code)
                                                        })
                                                        .collect(),
                                                )
                                        })
                                        .collect(),
                                ),
                        };
                        let out = encode_response(
                            req.header.correlation_id,
                            version,
                            &ResponseKind::AlterPartition(body),
                        )
                        .unwrap();
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    StandIn {
        addr,
        received,
        answer,
    }
}

fn endpoint(port: u16) -> UpdateMetadataEndpoint {
    UpdateMetadataEndpoint::default()
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(i32::from(port))
        .with_listener(StrBytes::from_static_str("PLAINTEXT"))
}

/// Tells broker `id` that the stand-in is the controller (a newer controller epoch).
async fn install_stand_in(c: &Cluster, id: i32, s: &StandIn) {
    let mut brokers: Vec<UpdateMetadataBroker> = (1..=3)
        .map(|b| {
            UpdateMetadataBroker::default()
                .with_id(BrokerId(b))
                .with_endpoints(vec![endpoint(c.addr(b).port())])
        })
        .collect();
    brokers.push(
        UpdateMetadataBroker::default()
            .with_id(BrokerId(STAND_IN))
            .with_endpoints(vec![endpoint(s.addr.port())]),
    );
    let req = UpdateMetadataRequest::default()
        .with_controller_id(BrokerId(STAND_IN))
        .with_controller_epoch(STAND_IN_EPOCH)
        .with_broker_epoch(-1)
        .with_live_brokers(brokers);
    let r: UpdateMetadataResponse = c
        .connect(id)
        .await
        .send(ApiKey::UpdateMetadata, 8, &req)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
}

/// The stand-in's LeaderAndIsr for `t-0`: leader 2 with a new leader epoch, ISR [2, 3].
async fn leader_and_isr_from_stand_in(c: &Cluster, leader_epoch: i32, partition_epoch: i32) {
    let md = c.metadata(2, &["t"]).await;
    let topic_id = md.topics[0].topic_id;
    let req = LeaderAndIsrRequest::default()
        .with_controller_id(BrokerId(STAND_IN))
        .with_controller_epoch(STAND_IN_EPOCH)
        .with_broker_epoch(-1)
        .with_topic_states(vec![LeaderAndIsrTopicState::default()
            .with_topic_name(topic_name("t"))
            .with_topic_id(topic_id)
            .with_partition_states(vec![LeaderAndIsrPartitionState::default()
                .with_topic_name(topic_name("t"))
                .with_partition_index(0)
                .with_controller_epoch(STAND_IN_EPOCH)
                .with_leader(BrokerId(2))
                .with_leader_epoch(leader_epoch)
                .with_isr(vec![BrokerId(2), BrokerId(3)])
                .with_partition_epoch(partition_epoch)
                .with_replicas(vec![BrokerId(2), BrokerId(3)])])])
        .with_live_leaders(vec![LeaderAndIsrLiveLeader::default()
            .with_broker_id(BrokerId(2))
            .with_host_name(StrBytes::from_static_str("127.0.0.1"))
            .with_port(i32::from(c.addr(2).port()))]);
    let r: LeaderAndIsrResponse = c
        .connect(2)
        .await
        .send(ApiKey::LeaderAndIsr, 7, &req)
        .await
        .unwrap();
    assert_eq!(r.error_code, 0);
}

/// The value of metric `name` on broker `id`'s page.
fn metric(c: &Cluster, id: i32, name: &str) -> u64 {
    let page = c.metrics_page(id);
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

const PENDING: &str = "kafka_server_AlterPartitionManager_PendingIsrChangeCount";
const REFUSED: &str = "kafka_server_AlterPartitionManager_RefusedIsrChangeCount";
const FAILED: &str = "kafka_server_ReplicaManager_FailedIsrUpdatesPerSec_total";

/// Broker 2 leads `t-0` with follower 3, and sends its AlterPartitions to a stand-in
/// answering `answer`; broker 3 is then frozen, so broker 2 proposes shrinking the ISR to [2].
/// Returns the cluster, the stand-in and the partition's (leader epoch, partition epoch).
async fn leader_proposing_a_shrink(answer: Answer) -> (Cluster, StandIn, (i32, i32)) {
    let mut c = Cluster::start(3).await;
    c.create_topic("t", &[&[2, 3]], &[]).await;
    c.wait_isr_seen_by(2, "t", 0, &[2, 3]).await;
    let state = c.state("t", 0).await.unwrap().leader_and_isr;
    let s = stand_in(answer).await;
    install_stand_in(&c, 2, &s).await;
    c.freeze(3).await;
    // Only a follower behind the leader's log end lags.
    assert_eq!(c.produce(2, "t", 0, 1, &["a"]).await.0, code::NONE);
    wait_for("the shrink sent to the stand-in", || async {
        (s.received() >= 1).then_some(())
    })
    .await;
    (c, s, (state.leader_epoch, state.partition_epoch))
}

// Kafka: Partition.handleAlterPartitionError, FENCED_LEADER_EPOCH (and INVALID_UPDATE_VERSION,
// UNKNOWN_TOPIC_OR_PARTITION, ...): "awaiting new the latest metadata", no retry. The refused
// shrink stays pending, nothing more is proposed for the partition (the ISR check runs every
// 150 ms here: before, it sent the same shrink again each time), the metrics show it, and the
// next LeaderAndIsr ends the wait: the shrink is proposed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_refused_with_fenced_leader_epoch_waits_for_leader_and_isr() {
    let (c, s, (leader_epoch, partition_epoch)) =
        leader_proposing_a_shrink(Answer::Partition(code::FENCED_LEADER_EPOCH)).await;
    wait_for("the refusal counted", || async {
        (metric(&c, 2, FAILED) == 1).then_some(())
    })
    .await;
    assert!(
        stays_false(Duration::from_millis(1000), || async { s.received() > 1 }).await,
        "the refused shrink was sent {} times",
        s.received()
    );
    assert_eq!(metric(&c, 2, PENDING), 1);
    assert_eq!(metric(&c, 2, REFUSED), 1);
    assert_eq!(metric(&c, 2, FAILED), 1);

    // A LeaderAndIsr (new leader epoch, same ISR) replaces the state; the follower is still
    // gone and behind, so the shrink is proposed again (and refused again).
    leader_and_isr_from_stand_in(&c, leader_epoch + 1, partition_epoch).await;
    assert_eq!(c.produce(2, "t", 0, 1, &["b"]).await.0, code::NONE);
    wait_for("the shrink proposed again after LeaderAndIsr", || async {
        (s.received() == 2).then_some(())
    })
    .await;
    assert_eq!(metric(&c, 2, REFUSED), 1);
}

// Kafka: Partition.handleAlterPartitionError, OPERATION_NOT_ATTEMPTED / INELIGIBLE_REPLICA:
// the controller did not apply the change and our state is current, so the pending mark is
// cleared and the next ISR check may propose again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_change_was_not_attempted_proposes_again() {
    let (c, s, _) =
        leader_proposing_a_shrink(Answer::Partition(55 /* OPERATION_NOT_ATTEMPTED */)).await;
    wait_for("the shrink proposed again", || async {
        (s.received() >= 3).then_some(())
    })
    .await;
    assert_eq!(metric(&c, 2, REFUSED), 0);
    assert!(metric(&c, 2, FAILED) >= 2);
}

// Kafka: DefaultAlterPartitionManager, a top-level STALE_BROKER_EPOCH ("retrying") or
// NOT_CONTROLLER: the same change is sent again after a back-off while it is pending (it is
// not refused for good: a broker that registers again gets a new epoch), and once the
// controller answers, the change settles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_top_level_stale_broker_epoch_is_retried_with_back_off() {
    let (c, s, _) = leader_proposing_a_shrink(Answer::TopLevel(STALE_BROKER_EPOCH)).await;
    wait_for("the same shrink sent again", || async {
        (s.received() >= 3).then_some(())
    })
    .await;
    assert_eq!(metric(&c, 2, PENDING), 1);
    assert_eq!(metric(&c, 2, REFUSED), 0);
    assert_eq!(
        metric(&c, 2, FAILED),
        0,
        "a top-level error is not a refused update"
    );
    // Now a per-partition refusal: the retries stop.
    *s.answer.lock().unwrap() = Answer::Partition(code::FENCED_LEADER_EPOCH);
    wait_for("the refusal", || async {
        (metric(&c, 2, REFUSED) == 1).then_some(())
    })
    .await;
    let sent = s.received();
    assert!(stays_false(Duration::from_millis(600), || async { s.received() > sent }).await);
}
