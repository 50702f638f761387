//! Controller logic tests: events fed into `KafkaController::process` against the in-memory
//! ZooKeeper, with a channel that records what would be sent. Deterministic, no sleeps.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::messages::stop_replica_response::StopReplicaPartitionError;
use kafka_protocol::messages::StopReplicaResponse;
use tokio::sync::oneshot;

use crate::admin::AdminZkClient;
use crate::channel::{ControlRequest, SharedRecordingChannel};
use crate::controller::KafkaController;
use crate::event::ControllerEvent;
use crate::shared_state::SharedState;
use crate::state::PartitionState;
use crate::zk::backend::MemoryZk;
use crate::zk::client::KafkaZkClient;
use crate::zk::data::*;
use crate::ControllerConfig;

struct Harness {
    mem: MemoryZk,
    /// One ZooKeeper session per broker (expire one to kill the broker).
    sessions: HashMap<i32, MemoryZk>,
    admin: AdminZkClient,
    reader: KafkaZkClient,
}

struct Node {
    controller: KafkaController,
    sent: SharedRecordingChannel,
    rx: crate::event::EventReceiver,
}

/// Broker `id`'s registration at 127.0.0.1:9000+id (also used by the state machines' tests).
pub(crate) fn registration(id: i32) -> BrokerRegistration {
    BrokerRegistration {
        broker_id: id,
        endpoints: vec![EndPoint {
            listener_name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
            security_protocol: "PLAINTEXT".into(),
        }],
        rack: None,
        timestamp_ms: 1,
    }
}

impl Harness {
    async fn new(brokers: &[i32]) -> Harness {
        let mem = MemoryZk::new();
        let reader = KafkaZkClient::from_backend(Arc::new(mem.clone()));
        reader.ensure_persistent_paths().await.unwrap();
        let mut sessions = HashMap::new();
        for id in brokers {
            sessions.insert(*id, mem.new_session());
        }
        let h = Harness {
            admin: AdminZkClient::new(reader.clone()),
            mem,
            sessions,
            reader,
        };
        for id in brokers {
            h.zk_of(*id)
                .register_broker(&registration(*id))
                .await
                .unwrap();
        }
        h
    }

    fn zk_of(&self, id: i32) -> KafkaZkClient {
        KafkaZkClient::from_backend(Arc::new(self.sessions[&id].clone()))
    }

    /// A controller hosted by broker `id`, started (it contests the election).
    async fn start_controller(&self, id: i32) -> Node {
        let (tx, rx) = crate::event::event_queue();
        let sent = SharedRecordingChannel::default();
        let mut controller = KafkaController::new(
            self.zk_of(id),
            ControllerConfig::with_defaults(id),
            0,
            Box::new(sent.clone()),
            tx,
            Arc::new(SharedState::default()),
        );
        controller.process(ControllerEvent::Startup).await;
        Node {
            controller,
            sent,
            rx,
        }
    }

    async fn create_topic(&self, topic: &str, assignment: &[(i32, Vec<i32>)]) {
        let a: BTreeMap<i32, Vec<i32>> = assignment.iter().cloned().collect();
        self.admin
            .create_topic(topic, &a, &BTreeMap::new())
            .await
            .unwrap();
    }

    async fn state(&self, topic: &str, p: i32) -> LeaderIsrAndControllerEpoch {
        let tp = TopicPartition::new(topic, p);
        self.reader
            .get_partition_states(std::slice::from_ref(&tp))
            .await
            .unwrap()
            .remove(&tp)
            .expect("partition state znode")
    }

    /// Kills a broker: its session expires and its ephemeral registration vanishes.
    fn kill(&self, id: i32) {
        self.sessions[&id].expire_session();
    }
}

fn leader_and_isr_to(sent: &[(i32, ControlRequest)], broker: i32) -> Vec<(String, i32, i32, bool)> {
    sent.iter()
        .filter(|(b, _)| *b == broker)
        .filter_map(|(_, r)| match r {
            ControlRequest::LeaderAndIsr(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| {
            r.topic_states.iter().flat_map(|t| {
                t.partition_states.iter().map(move |p| {
                    (
                        t.topic_name.0.to_string(),
                        p.partition_index,
                        p.leader.0,
                        p.is_new,
                    )
                })
            })
        })
        .collect()
}

/// Kafka: KafkaController.onControllerFailover steps 6-8 — UpdateMetadata first, then
/// partitions without a state znode are New and get their first leader.
#[tokio::test]
async fn failover_sends_update_metadata_first_and_elects_leaders_for_new_partitions() {
    let h = Harness::new(&[1, 2, 3]).await;
    h.create_topic("orders", &[(0, vec![1, 2]), (1, vec![2, 3])])
        .await;
    let node = h.start_controller(1).await;
    assert!(node.controller.is_active());
    assert_eq!(node.controller.context().epoch, 1);

    let s0 = h.state("orders", 0).await;
    assert_eq!(s0.leader_and_isr.leader, 1);
    assert_eq!(s0.leader_and_isr.isr, vec![1, 2]);
    assert_eq!(s0.leader_and_isr.leader_epoch, 0);
    assert_eq!(s0.controller_epoch, 1);
    let s1 = h.state("orders", 1).await;
    assert_eq!(s1.leader_and_isr.leader, 2);

    let sent = node.sent.take();
    // The first request to every broker is an UpdateMetadata with the live brokers.
    for b in [1, 2, 3] {
        let first = sent
            .iter()
            .find(|(to, _)| *to == b)
            .expect("something sent");
        match &first.1 {
            ControlRequest::UpdateMetadata(um) => {
                assert_eq!(um.live_brokers.len(), 3);
                assert_eq!(um.controller_epoch, 1);
            }
            other => panic!("expected UpdateMetadata first, got {}", other.api_name()),
        }
    }
    // LeaderAndIsr (IsNew) went to each ISR member.
    assert!(leader_and_isr_to(&sent, 2).contains(&("orders".into(), 0, 1, true)));
    assert!(leader_and_isr_to(&sent, 3).contains(&("orders".into(), 1, 2, true)));
    assert_eq!(
        node.controller
            .context()
            .partition_state(&TopicPartition::new("orders", 0)),
        PartitionState::Online
    );
}

/// Kafka: KafkaController.onNewPartitionCreation on a /brokers/topics child change.
#[tokio::test]
async fn topic_change_creates_partition_state_and_sends_leader_and_isr() {
    let h = Harness::new(&[1, 2]).await;
    let mut node = h.start_controller(1).await;
    node.sent.take();
    h.create_topic("t", &[(0, vec![2, 1])]).await;
    node.controller.process(ControllerEvent::TopicChange).await;
    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, 2);
    assert_eq!(s.leader_and_isr.isr, vec![2, 1]);
    let sent = node.sent.take();
    assert_eq!(leader_and_isr_to(&sent, 2), vec![("t".into(), 0, 2, true)]);
    assert_eq!(leader_and_isr_to(&sent, 1), vec![("t".into(), 0, 2, true)]);
    // The LeaderAndIsr carries the topic id written by the admin path.
    let id = h
        .reader
        .get_topic_assignment("t")
        .await
        .unwrap()
        .unwrap()
        .topic_id
        .unwrap();
    let lai = sent
        .iter()
        .find_map(|(_, r)| match r {
            ControlRequest::LeaderAndIsr(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(encode_uuid(lai.topic_states[0].topic_id), id);
    assert_eq!(lai.live_leaders[0].port, 9002);

    // Adding a partition (PartitionModifications) creates just that one.
    h.admin
        .create_partitions("t", 2, Some(vec![vec![1, 2]]))
        .await
        .unwrap();
    node.controller
        .process(ControllerEvent::PartitionModifications { topic: "t".into() })
        .await;
    assert_eq!(h.state("t", 1).await.leader_and_isr.leader, 1);
}

/// Kafka: KafkaController.onBrokerFailure — the offline partition's new leader is the first live
/// ISR member in assignment order, with leader epoch + 1.
#[tokio::test]
async fn broker_failure_moves_leadership_to_next_live_isr_member() {
    let h = Harness::new(&[1, 2, 3]).await;
    h.create_topic("t", &[(0, vec![1, 2, 3])]).await;
    let mut node = h.start_controller(3).await;
    assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
    node.sent.take();

    h.kill(1);
    node.controller.process(ControllerEvent::BrokerChange).await;

    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, 2);
    assert_eq!(s.leader_and_isr.isr, vec![2, 3]);
    assert_eq!(s.leader_and_isr.leader_epoch, 1);
    let sent = node.sent.take();
    assert!(leader_and_isr_to(&sent, 2).contains(&("t".into(), 0, 2, false)));
    assert!(leader_and_isr_to(&sent, 3).contains(&("t".into(), 0, 2, false)));
    assert!(leader_and_isr_to(&sent, 1).is_empty());
    assert!(!node.controller.context().live_brokers.contains_key(&1));
}

/// Kafka: KafkaZkClient.retryRequestsUntilConnected. The controller's ZooKeeper connection is
/// lost in the middle of a broker failure, after it read the new membership (and took the dead
/// broker out of its live set) and before it wrote the new leader. The write waits for the
/// connection and goes again: the event finishes once ZooKeeper answers, with the leader Kafka
/// elects. Dropping the event there instead left the partition led by the dead broker for good,
/// since no later BrokerChange sees that broker die again.
#[tokio::test]
async fn a_connection_lost_in_the_middle_of_a_broker_failure_delays_it_but_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let h = Harness::new(&[1, 2, 3]).await;
    h.create_topic("t", &[(0, vec![1, 2, 3])]).await;
    let mut node = h.start_controller(3).await;
    assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
    node.sent.take();

    h.kill(1);
    let session = h.sessions[&3].clone();
    session.disconnect_on_next_write();
    let done = AtomicBool::new(false);
    let process = async {
        node.controller.process(ControllerEvent::BrokerChange).await;
        done.store(true, Ordering::SeqCst);
    };
    let fault = async {
        while !session.is_disconnected() {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(
            !done.load(Ordering::SeqCst),
            "the event ended while ZooKeeper was unreachable"
        );
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
        session.reconnect();
    };
    tokio::join!(process, fault);

    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, 2);
    assert_eq!(s.leader_and_isr.isr, vec![2, 3]);
    assert_eq!(s.leader_and_isr.leader_epoch, 1);
    let sent = node.sent.take();
    assert!(leader_and_isr_to(&sent, 2).contains(&("t".into(), 0, 2, false)));
    assert!(leader_and_isr_to(&sent, 3).contains(&("t".into(), 0, 2, false)));
}

/// Kafka: the last ISR member dying leaves the partition offline with leader -1 and that
/// member kept in the ISR; it leads again when it returns.
#[tokio::test]
async fn partition_without_live_isr_goes_offline_and_recovers_when_broker_returns() {
    let mut h = Harness::new(&[1, 2]).await;
    h.create_topic("t", &[(0, vec![1])]).await;
    let mut node = h.start_controller(2).await;
    h.kill(1);
    node.controller.process(ControllerEvent::BrokerChange).await;
    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, -1);
    assert_eq!(s.leader_and_isr.isr, vec![1]);
    node.controller.update_metrics();
    let shared = node.controller.shared();
    assert_eq!(
        shared
            .offline_partitions_count
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        node.controller
            .context()
            .partition_state(&TopicPartition::new("t", 0)),
        PartitionState::Offline
    );

    // Broker 1 restarts with a new session (a new broker epoch).
    h.sessions.insert(1, h.mem.new_session());
    h.zk_of(1).register_broker(&registration(1)).await.unwrap();
    node.sent.take();
    node.controller.process(ControllerEvent::BrokerChange).await;
    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, 1);
    assert!(s.leader_and_isr.leader_epoch >= 2);
    let sent = node.sent.take();
    assert!(leader_and_isr_to(&sent, 1)
        .iter()
        .any(|(t, p, l, _)| t == "t" && *p == 0 && *l == 1));
}

/// Kafka: every controller write is fenced by the epoch zkVersion; a controller whose epoch was
/// superseded (a paused zombie) cannot change anything and resigns on ControllerMoved.
#[tokio::test]
async fn zombie_controller_is_fenced_and_resigns() {
    let h = Harness::new(&[1, 2, 3]).await;
    h.create_topic("t", &[(0, vec![1, 2])]).await;
    let mut old = h.start_controller(1).await;
    assert!(old.controller.is_active());
    let before = h.state("t", 0).await;

    // The old controller's /controller vanishes (its session expired in ZooKeeper) and broker 2
    // wins epoch 2; the old one has not noticed yet.
    h.reader
        .backend()
        .delete("/controller".into(), None)
        .await
        .unwrap();
    let new = h.start_controller(2).await;
    assert!(new.controller.is_active());
    assert_eq!(new.controller.context().epoch, 2);

    // The zombie processes a broker failure: its write must be rejected by ZooKeeper.
    h.kill(1);
    old.controller.process(ControllerEvent::BrokerChange).await;
    let after = h.state("t", 0).await;
    assert_eq!(after, before, "a fenced controller changed partition state");
    assert!(!old.controller.is_active());
    assert_eq!(h.reader.get_controller_id().await.unwrap(), Some(2));
}

/// Kafka: `ZooKeeperClient` hands a session expiry to its state-change handlers, never to the
/// znode handlers. When the active controller's session ends, the watches it armed on
/// `/brokers/topics` and `/admin/delete_topics` (znodes the expiry does not touch) end with
/// the session and queue nothing. They used to queue `TopicChange` and `TopicDeletion`,
/// which could then be handled ahead of `Expire` against the dead session and fail (the
/// partition suite saw it). The in-memory ZooKeeper also fires the node events of the
/// session's own ephemerals (`/controller`, `/brokers/ids/1`) at their owner, which a real
/// ensemble never delivers to an expired client; those are not this test's subject.
#[tokio::test(start_paused = true)]
async fn a_session_end_queues_no_event_for_znodes_that_did_not_change() {
    let h = Harness::new(&[1, 2]).await;
    let mut node = h.start_controller(1).await;
    assert!(node.controller.is_active());
    h.sessions[&1].expire();
    let mut queued = Vec::new();
    // The watch tasks run once the test yields; the clock is paused, so the time-out only
    // elapses when nothing else is left to run.
    while let Ok(Some(q)) =
        tokio::time::timeout(std::time::Duration::from_secs(1), node.rx.recv()).await
    {
        queued.push(q.event.name());
    }
    assert!(!queued.is_empty(), "the session's end reached no watch");
    for name in ["TopicChange", "TopicDeletion"] {
        assert!(!queued.contains(&name), "queued {queued:?}");
    }
}

/// Kafka: TopicDeletionManager — UpdateMetadata with leader -2, StopReplica(delete), and the
/// znodes removed once every replica reported success.
#[tokio::test]
async fn topic_deletion_completes_after_stop_replica_responses() {
    let h = Harness::new(&[1, 2]).await;
    h.create_topic("gone", &[(0, vec![1, 2])]).await;
    let mut node = h.start_controller(1).await;
    node.sent.take();
    h.admin.delete_topic("gone").await.unwrap();
    node.controller
        .process(ControllerEvent::TopicDeletion)
        .await;
    let sent = node.sent.take();
    let um_leader = sent.iter().find_map(|(_, r)| match r {
        ControlRequest::UpdateMetadata(um) => um
            .topic_states
            .iter()
            .flat_map(|t| t.partition_states.iter())
            .next()
            .map(|p| p.leader.0),
        _ => None,
    });
    assert_eq!(um_leader, Some(-2));
    for b in [1, 2] {
        let deletes: Vec<_> = sent
            .iter()
            .filter(|(to, _)| *to == b)
            .filter_map(|(_, r)| match r {
                ControlRequest::StopReplica(sr) => Some(sr),
                _ => None,
            })
            .flat_map(|sr| {
                sr.topic_states
                    .iter()
                    .flat_map(|t| t.partition_states.iter())
            })
            .filter(|p| p.delete_partition)
            .collect();
        assert_eq!(deletes.len(), 1, "broker {b} gets one StopReplica(delete)");
        assert_eq!(deletes[0].leader_epoch, -2);
    }
    // Still there until the brokers answer.
    assert!(h
        .reader
        .get_topic_assignment("gone")
        .await
        .unwrap()
        .is_some());
    for b in [1, 2] {
        node.controller.process(stop_replica_ok(b, "gone", 0)).await;
    }
    assert!(h
        .reader
        .get_topic_assignment("gone")
        .await
        .unwrap()
        .is_none());
    assert!(h
        .reader
        .get_data_maybe("/config/topics/gone")
        .await
        .unwrap()
        .is_none());
    assert!(h.reader.get_topic_deletions().await.unwrap().is_empty());
    assert!(!node.controller.context().all_topics.contains("gone"));
}

/// Kafka: deletion with a replica's broker down waits (ineligible) and finishes when it returns.
#[tokio::test]
async fn topic_deletion_waits_for_a_dead_broker() {
    let mut h = Harness::new(&[1, 2]).await;
    h.create_topic("gone", &[(0, vec![1, 2])]).await;
    let mut node = h.start_controller(1).await;
    h.kill(2);
    node.controller.process(ControllerEvent::BrokerChange).await;
    h.admin.delete_topic("gone").await.unwrap();
    node.controller
        .process(ControllerEvent::TopicDeletion)
        .await;
    assert!(node
        .controller
        .context()
        .topics_ineligible_for_deletion
        .contains("gone"));
    // Broker 1 deletes its replica; broker 2's is still pending.
    node.controller.process(stop_replica_ok(1, "gone", 0)).await;
    assert!(h
        .reader
        .get_topic_assignment("gone")
        .await
        .unwrap()
        .is_some());
    node.sent.take();

    h.sessions.insert(2, h.mem.new_session());
    h.zk_of(2).register_broker(&registration(2)).await.unwrap();
    node.controller.process(ControllerEvent::BrokerChange).await;
    let sent = node.sent.take();
    let delete_to_2 = sent.iter().any(|(to, r)| {
        *to == 2
            && matches!(r, ControlRequest::StopReplica(sr)
                if sr.topic_states.iter().any(|t| t.partition_states.iter().any(|p| p.delete_partition)))
    });
    assert!(delete_to_2, "deletion resumed on the returning broker");
    assert!(!node
        .controller
        .context()
        .topics_ineligible_for_deletion
        .contains("gone"));
    node.controller.process(stop_replica_ok(2, "gone", 0)).await;
    assert!(h
        .reader
        .get_topic_assignment("gone")
        .await
        .unwrap()
        .is_none());
}

fn stop_replica_ok(broker_id: i32, topic: &'static str, partition: i32) -> ControllerEvent {
    let response = StopReplicaResponse::default().with_partition_errors(vec![
        StopReplicaPartitionError::default()
            .with_topic_name(kafka_protocol::messages::TopicName(
                kafka_protocol::protocol::StrBytes::from_static_str(topic),
            ))
            .with_partition_index(partition)
            .with_error_code(0),
    ]);
    ControllerEvent::StopReplicaResponseReceived {
        broker_id,
        response,
    }
}

/// `broker_id` asks `node`'s controller for a controlled shutdown (any broker epoch); the answer.
async fn controlled_shutdown(
    node: &mut Node,
    broker_id: i32,
) -> crate::event::ControlledShutdownReply {
    let (reply, rx) = oneshot::channel();
    node.controller
        .process(ControllerEvent::ControlledShutdown {
            broker_id,
            broker_epoch: -1,
            reply,
        })
        .await;
    rx.await.unwrap()
}

/// Kafka: KafkaController.doControlledShutdown moves leadership to another ISR member and drops
/// the broker from the ISR.
#[tokio::test]
async fn controlled_shutdown_moves_leadership_and_replies_with_nothing_left() {
    let h = Harness::new(&[1, 2]).await;
    h.create_topic("t", &[(0, vec![1, 2]), (1, vec![2, 1])])
        .await;
    let mut node = h.start_controller(2).await;
    assert_eq!(controlled_shutdown(&mut node, 1).await, Ok(vec![]));
    let s0 = h.state("t", 0).await;
    assert_eq!(s0.leader_and_isr.leader, 2);
    assert_eq!(s0.leader_and_isr.isr, vec![2]);
    let s1 = h.state("t", 1).await;
    assert_eq!(s1.leader_and_isr.leader, 2);
    assert_eq!(s1.leader_and_isr.isr, vec![2]);
}

/// The requests of a controlled shutdown go to the brokers that stay before the one stopping
/// (it still gets its LeaderAndIsr, as a follower, and its UpdateMetadata).
#[tokio::test]
async fn controlled_shutdown_sends_to_the_staying_brokers_first() {
    let h = Harness::new(&[1, 2, 3]).await;
    h.create_topic("t", &[(0, vec![1, 2, 3]), (1, vec![1, 3, 2])])
        .await;
    let mut node = h.start_controller(3).await;
    node.sent.take();
    assert_eq!(controlled_shutdown(&mut node, 1).await, Ok(vec![]));
    let sent = node.sent.take();
    let order = |api: &str| -> Vec<i32> {
        sent.iter()
            .filter(|(_, r)| r.api_name() == api)
            .map(|(b, _)| *b)
            .collect()
    };
    assert_eq!(order("LeaderAndIsr"), vec![2, 3, 1]);
    assert_eq!(order("UpdateMetadata"), vec![2, 3, 1]);
}

/// A broker that is not the controller answers ControlledShutdown with NotController.
#[tokio::test]
async fn inactive_controller_rejects_controlled_shutdown() {
    let h = Harness::new(&[1, 2]).await;
    let _active = h.start_controller(1).await;
    let mut passive = h.start_controller(2).await;
    assert!(!passive.controller.is_active());
    assert_eq!(
        controlled_shutdown(&mut passive, 1).await,
        Err(crate::event::ControlledShutdownError::NotController)
    );
}

/// Kafka: /controller deleted -> Reelect; the next contender wins with epoch + 1.
#[tokio::test]
async fn reelect_after_controller_znode_deletion_bumps_epoch() {
    let h = Harness::new(&[1, 2]).await;
    let mut a = h.start_controller(1).await;
    let mut b = h.start_controller(2).await;
    assert!(a.controller.is_active() && !b.controller.is_active());
    // Broker 1 resigns by deleting /controller (as on shutdown).
    a.controller.process(shutdown_event()).await;
    assert!(!a.controller.is_active());
    b.controller.process(ControllerEvent::Reelect).await;
    assert!(b.controller.is_active());
    assert_eq!(b.controller.context().epoch, 2);
    assert_eq!(
        h.reader.get_controller_epoch().await.unwrap().map(|e| e.0),
        Some(2)
    );
}

fn shutdown_event() -> ControllerEvent {
    let (done, _rx) = oneshot::channel();
    ControllerEvent::Shutdown { done }
}

/// Kafka: session expiry -> Expire (resign), then RegisterBrokerAndReelect with a new session:
/// a new broker epoch and, /controller being gone, a new election with epoch + 1.
#[tokio::test]
async fn session_expiry_resigns_then_reregisters_and_reelects() {
    let h = Harness::new(&[1, 2]).await;
    h.create_topic("t", &[(0, vec![1, 2])]).await;
    let mut node = h.start_controller(1).await;
    assert!(node.controller.is_active());
    let old_epoch = h
        .zk_of(1)
        .get_broker(1)
        .await
        .unwrap()
        .unwrap()
        .broker_epoch;

    h.kill(1);
    node.controller.process(ControllerEvent::Expire).await;
    assert!(!node.controller.is_active());
    assert!(node.controller.context().live_brokers.is_empty());

    // New session (what KafkaZkClient::reinitialize does against a real ZooKeeper).
    let fresh = h.mem.new_session();
    node.controller.zk().set_backend(Arc::new(fresh));
    let (reply, rx) = oneshot::channel();
    node.controller
        .process(ControllerEvent::RegisterBrokerAndReelect {
            registration: registration(1),
            reply,
        })
        .await;
    let new_epoch = rx.await.unwrap().unwrap();
    assert!(new_epoch > old_epoch);
    assert!(node.controller.is_active());
    assert_eq!(node.controller.context().epoch, 2);
    // Broker 1 is live again under its new epoch, so its leadership stands; the new controller
    // re-sends the current state (LeaderAndIsr, controller epoch 2) to the replicas.
    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.leader, 1);
    let sent = node.sent.take();
    let resent = sent.iter().any(|(to, r)| {
        *to == 2 && matches!(r, ControlRequest::LeaderAndIsr(l) if l.controller_epoch == 2)
    });
    assert!(resent);
    assert_eq!(
        node.controller.context().live_brokers[&1].broker_epoch,
        new_epoch
    );
}

/// Kafka: KafkaController.processAlterPartition — a leader shrinks its ISR; a stale leader epoch
/// is fenced; the accepted change is written with a new partition epoch.
#[tokio::test]
async fn alter_partition_shrinks_isr_and_fences_stale_leader_epoch() {
    use crate::alter_partition::{codes, AlterPartitionItem, AlterPartitionRequest};
    let h = Harness::new(&[1, 2]).await;
    h.create_topic("t", &[(0, vec![1, 2])]).await;
    let mut node = h.start_controller(1).await;
    let epoch1 = h
        .zk_of(1)
        .get_broker(1)
        .await
        .unwrap()
        .unwrap()
        .broker_epoch;
    let tp = TopicPartition::new("t", 0);
    let send = |leader_epoch, partition_epoch| {
        let (reply, rx) = oneshot::channel();
        let event = ControllerEvent::AlterPartition(Box::new(AlterPartitionRequest {
            broker_id: 1,
            broker_epoch: epoch1,
            version: 2,
            items: vec![AlterPartitionItem {
                tp: tp.clone(),
                leader_epoch,
                new_isr: vec![1],
                leader_recovery_state: 0,
                partition_epoch,
            }],
            reply,
        }));
        (event, rx)
    };
    let (event, rx) = send(0, 0);
    node.controller.process(event).await;
    let result = rx.await.unwrap().unwrap().remove(&tp).unwrap().unwrap();
    assert_eq!(result.isr, vec![1]);
    assert_eq!(result.partition_epoch, 1);
    let s = h.state("t", 0).await;
    assert_eq!(s.leader_and_isr.isr, vec![1]);
    assert_eq!(s.leader_and_isr.leader_epoch, 0);

    // A leader epoch older than the controller's is fenced.
    let (event, rx) = send(-1, 1);
    node.controller.process(event).await;
    let r = rx.await.unwrap().unwrap().remove(&tp).unwrap();
    assert_eq!(r, Err(codes::FENCED_LEADER_EPOCH));
}

// ---- preferred replica election, auto rebalance, reassignment --------------------------------

mod election_and_reassignment {
    use super::*;
    use crate::alter_partition::{AlterPartitionItem, AlterPartitionRequest};
    use crate::error::codes;
    use crate::event::{ElectLeadersResults, ElectionTrigger, ElectionType};

    /// The leader asks the controller to set the ISR (AlterPartition), with the epochs it has.
    async fn alter_isr(
        h: &Harness,
        node: &mut Node,
        leader: i32,
        tp: &TopicPartition,
        isr: &[i32],
    ) {
        let s = h.state(&tp.topic, tp.partition).await;
        let broker_epoch = h
            .zk_of(leader)
            .get_broker(leader)
            .await
            .unwrap()
            .unwrap()
            .broker_epoch;
        let (reply, rx) = oneshot::channel();
        node.controller
            .process(ControllerEvent::AlterPartition(Box::new(
                AlterPartitionRequest {
                    broker_id: leader,
                    broker_epoch,
                    version: 2,
                    items: vec![AlterPartitionItem {
                        tp: tp.clone(),
                        leader_epoch: s.leader_and_isr.leader_epoch,
                        new_isr: isr.to_vec(),
                        leader_recovery_state: 0,
                        partition_epoch: s.leader_and_isr.partition_epoch,
                    }],
                    reply,
                },
            )))
            .await;
        let r = rx.await.unwrap().unwrap().remove(tp).unwrap();
        assert!(r.is_ok(), "AlterPartition refused: {r:?}");
    }

    async fn elect(
        node: &mut Node,
        election_type: ElectionType,
        partitions: &[TopicPartition],
    ) -> ElectLeadersResults {
        let (reply, rx) = oneshot::channel();
        node.controller
            .process(ControllerEvent::ReplicaLeaderElection {
                partitions: Some(partitions.to_vec()),
                election_type,
                trigger: ElectionTrigger::AdminClient,
                reply: Some(reply),
            })
            .await;
        rx.await.unwrap()
    }

    async fn restart(h: &mut Harness, node: &mut Node, id: i32) {
        h.sessions.insert(id, h.mem.new_session());
        h.zk_of(id)
            .register_broker(&registration(id))
            .await
            .unwrap();
        node.controller.process(ControllerEvent::BrokerChange).await;
    }

    /// Topic "t" with one partition assigned [1, 2], whose leadership has moved to broker 2
    /// (broker 1 bounced) and whose ISR is back to [2, 1]: a preferred election is due.
    async fn leadership_moved_away(controller_on: i32) -> (Harness, Node, TopicPartition) {
        let mut h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(controller_on).await;
        let tp = TopicPartition::new("t", 0);
        h.kill(1);
        node.controller.process(ControllerEvent::BrokerChange).await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 2);
        restart(&mut h, &mut node, 1).await;
        (h, node, tp)
    }

    /// Kafka: processReplicaLeaderElection (PREFERRED) — the preferred replica must be in the
    /// ISR; once it is, leadership moves back with a new leader epoch and the ISR unchanged.
    #[tokio::test]
    async fn elect_leaders_preferred_moves_leadership_back_once_preferred_replica_is_in_isr() {
        let (h, mut node, tp) = leadership_moved_away(3).await;
        let r = elect(
            &mut node,
            ElectionType::Preferred,
            std::slice::from_ref(&tp),
        )
        .await;
        assert_eq!(
            r[&tp].as_ref().unwrap_err().0,
            codes::PREFERRED_LEADER_NOT_AVAILABLE
        );

        alter_isr(&h, &mut node, 2, &tp, &[2, 1]).await;
        let before = h.state("t", 0).await;
        node.sent.take();
        let r = elect(
            &mut node,
            ElectionType::Preferred,
            std::slice::from_ref(&tp),
        )
        .await;
        assert_eq!(r[&tp], Ok(1));
        let after = h.state("t", 0).await;
        assert_eq!(after.leader_and_isr.leader, 1);
        assert_eq!(after.leader_and_isr.isr, vec![2, 1]);
        assert_eq!(
            after.leader_and_isr.leader_epoch,
            before.leader_and_isr.leader_epoch + 1
        );
        let sent = node.sent.take();
        assert!(leader_and_isr_to(&sent, 1).contains(&("t".into(), 0, 1, false)));
        assert!(leader_and_isr_to(&sent, 2).contains(&("t".into(), 0, 1, false)));
        assert_eq!(
            node.controller
                .context()
                .preferred_replica_imbalance_count(),
            0
        );

        // Already led by the preferred replica; unknown partitions are reported as such.
        let unknown = TopicPartition::new("nope", 0);
        let r = elect(
            &mut node,
            ElectionType::Preferred,
            &[tp.clone(), unknown.clone()],
        )
        .await;
        assert_eq!(r[&tp].as_ref().unwrap_err().0, codes::ELECTION_NOT_NEEDED);
        assert_eq!(
            r[&unknown].as_ref().unwrap_err().0,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
    }

    /// Kafka: ElectLeaders on a broker that is not the controller answers NOT_CONTROLLER.
    #[tokio::test]
    async fn elect_leaders_on_inactive_controller_answers_not_controller() {
        let h = Harness::new(&[1, 2]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let _active = h.start_controller(1).await;
        let mut passive = h.start_controller(2).await;
        let tp = TopicPartition::new("t", 0);
        let r = elect(
            &mut passive,
            ElectionType::Preferred,
            std::slice::from_ref(&tp),
        )
        .await;
        assert_eq!(r[&tp].as_ref().unwrap_err().0, codes::NOT_CONTROLLER);
    }

    /// Kafka: UNCLEAN from the admin API elects an out-of-sync live replica when no ISR member
    /// is alive (KIP-704 recovery state), and is not needed while the leader is alive.
    #[tokio::test]
    async fn elect_leaders_unclean_elects_out_of_sync_replica_only_when_leader_is_gone() {
        let h = Harness::new(&[1, 2]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(2).await;
        let tp = TopicPartition::new("t", 0);
        let r = elect(&mut node, ElectionType::Unclean, std::slice::from_ref(&tp)).await;
        assert_eq!(r[&tp].as_ref().unwrap_err().0, codes::ELECTION_NOT_NEEDED);

        alter_isr(&h, &mut node, 1, &tp, &[1]).await;
        h.kill(1);
        node.controller.process(ControllerEvent::BrokerChange).await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, -1);

        let r = elect(&mut node, ElectionType::Unclean, std::slice::from_ref(&tp)).await;
        assert_eq!(r[&tp], Ok(2));
        let s = h.state("t", 0).await;
        assert_eq!(s.leader_and_isr.leader, 2);
        assert_eq!(s.leader_and_isr.isr, vec![2]);
        assert_eq!(s.leader_and_isr.leader_recovery_state, 1);
    }

    /// Kafka: PreferredReplicaElectionHandler + removePartitionsFromPreferredReplicaElection —
    /// creating the znode fires the controller's watch; the election runs; the znode is deleted.
    #[tokio::test]
    async fn preferred_replica_election_znode_is_watched_processed_and_deleted() {
        let (h, mut node, tp) = leadership_moved_away(3).await;
        alter_isr(&h, &mut node, 2, &tp, &[2, 1]).await;
        let path = PreferredReplicaElectionZNode::path();
        h.reader
            .backend()
            .create(
                path.into(),
                br#"{"version":1,"partitions":[{"topic":"t","partition":0}]}"#.to_vec(),
                crate::zk::backend::NodeMode::Persistent,
            )
            .await
            .unwrap();
        // The watch armed at failover enqueues the event (and does nothing else).
        let event = next_event(&mut node, |e| {
            matches!(
                e,
                ControllerEvent::ReplicaLeaderElection {
                    partitions: None,
                    ..
                }
            )
        })
        .await;
        node.controller.process(event).await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
        assert!(h.reader.get_data_maybe(path).await.unwrap().is_none());
        // The controller re-queued the event to re-arm its watch; processing it finds no znode.
        let event = next_event(&mut node, |e| {
            matches!(
                e,
                ControllerEvent::ReplicaLeaderElection {
                    partitions: None,
                    ..
                }
            )
        })
        .await;
        node.controller.process(event).await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
    }

    /// Takes events from the controller's queue until one matches (bounded, no sleeping: the
    /// watch and timer tasks run while we await).
    async fn next_event(
        node: &mut Node,
        wanted: impl Fn(&ControllerEvent) -> bool,
    ) -> ControllerEvent {
        let deadline = std::time::Duration::from_secs(600);
        tokio::time::timeout(deadline, async {
            loop {
                let q = node.rx.recv().await.expect("controller queue open");
                if wanted(&q.event) {
                    return q.event;
                }
            }
        })
        .await
        .expect("event enqueued")
    }

    /// Kafka: checkAndTriggerAutoLeaderRebalance — broker 1 leads none of its 1 preferred
    /// partition (imbalance 100% > 10%), its preferred replica is back in the ISR: elected.
    #[tokio::test]
    async fn auto_rebalance_elects_preferred_leaders_above_imbalance_threshold() {
        let (h, mut node, tp) = leadership_moved_away(3).await;
        node.controller
            .process(ControllerEvent::AutoPreferredReplicaLeaderElection)
            .await;
        // Not in the ISR yet: nothing happens.
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 2);
        assert_eq!(
            node.controller
                .context()
                .preferred_replica_imbalance_count(),
            1
        );

        alter_isr(&h, &mut node, 2, &tp, &[2, 1]).await;
        node.controller
            .process(ControllerEvent::AutoPreferredReplicaLeaderElection)
            .await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);
        node.controller.update_metrics();
        assert_eq!(
            node.controller
                .context()
                .preferred_replica_imbalance_count(),
            0
        );
    }

    /// Kafka: a broker whose imbalance is at or below leader.imbalance.per.broker.percentage is
    /// left alone (1 of 10 partitions = 10%, not above 10%).
    #[tokio::test]
    async fn auto_rebalance_leaves_imbalance_at_threshold_alone() {
        let mut h = Harness::new(&[1, 2]).await;
        let assignment: Vec<(i32, Vec<i32>)> = (0..10).map(|p| (p, vec![1, 2])).collect();
        h.create_topic("t", &assignment).await;
        let mut node = h.start_controller(2).await;
        // Broker 1 bounces: all ten leaderships move to 2. Once 1 is back in the ISRs, nine
        // are moved back by ElectLeaders, leaving 1 of broker 1's 10 partitions led elsewhere.
        h.kill(1);
        node.controller.process(ControllerEvent::BrokerChange).await;
        restart(&mut h, &mut node, 1).await;
        let all: Vec<TopicPartition> = (0..10).map(|p| TopicPartition::new("t", p)).collect();
        for tp in &all {
            alter_isr(&h, &mut node, 2, tp, &[2, 1]).await;
        }
        let r = elect(&mut node, ElectionType::Preferred, &all[1..]).await;
        assert!(r.values().all(|r| *r == Ok(1)));
        node.controller
            .process(ControllerEvent::AutoPreferredReplicaLeaderElection)
            .await;
        assert_eq!(
            h.state("t", 0).await.leader_and_isr.leader,
            2,
            "10% is not above 10%"
        );
    }

    /// Kafka: scheduleAutoLeaderRebalanceTask — 5 s after failover the timer enqueues
    /// AutoPreferredReplicaLeaderElection, and after processing it the next check is scheduled
    /// leader.imbalance.check.interval.seconds later. (Virtual time: no real waiting.)
    #[tokio::test(start_paused = true)]
    async fn auto_rebalance_timer_only_enqueues_the_event_every_interval() {
        let h = Harness::new(&[1, 2]).await;
        let mut node = h.start_controller(1).await;
        let start = tokio::time::Instant::now();
        let is_auto =
            |e: &ControllerEvent| matches!(e, ControllerEvent::AutoPreferredReplicaLeaderElection);
        let event = next_event(&mut node, is_auto).await;
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(5));
        node.controller.process(event).await;
        next_event(&mut node, is_auto).await;
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(305));
    }

    async fn reassign(
        node: &mut Node,
        reassignments: &[(TopicPartition, Option<Vec<i32>>)],
    ) -> crate::event::AlterReassignmentsReply {
        let (reply, rx) = oneshot::channel();
        node.controller
            .process(ControllerEvent::ApiPartitionReassignment {
                reassignments: reassignments.iter().cloned().collect(),
                reply,
            })
            .await;
        rx.await.unwrap()
    }

    async fn list(node: &mut Node) -> BTreeMap<TopicPartition, crate::context::ReplicaAssignment> {
        let (reply, rx) = oneshot::channel();
        node.controller
            .process(ControllerEvent::ListPartitionReassignments {
                partitions: None,
                reply,
            })
            .await;
        rx.await.unwrap().unwrap()
    }

    fn stop_replica_deletes_to(sent: &[(i32, ControlRequest)], broker: i32) -> usize {
        sent.iter()
            .filter(|(to, _)| *to == broker)
            .filter_map(|(_, r)| match r {
                ControlRequest::StopReplica(sr) => Some(sr),
                _ => None,
            })
            .flat_map(|sr| {
                sr.topic_states
                    .iter()
                    .flat_map(|t| t.partition_states.iter())
            })
            .filter(|p| p.delete_partition)
            .count()
    }

    /// Kafka: onPartitionReassignment phases U, A, B — [1,2] -> [2,3]: RS [2,3,1] with
    /// adding [3] / removing [1] written first; the leader (1) is not in the target, so once 3
    /// joins the ISR leadership moves to 2, 1 is stopped and deleted, and RS = [2,3] last.
    #[tokio::test]
    async fn reassignment_adds_target_waits_for_isr_moves_leader_then_removes_old_replica() {
        let h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(3).await;
        let tp = TopicPartition::new("t", 0);
        node.sent.take();
        let r = reassign(&mut node, &[(tp.clone(), Some(vec![2, 3]))]).await;
        assert_eq!(r, Ok(BTreeMap::from([(tp.clone(), Ok(()))])));

        // U1: the topic znode records RS, AR and RR.
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![2, 3, 1]);
        assert_eq!(a.adding_replicas[&0], vec![3]);
        assert_eq!(a.removing_replicas[&0], vec![1]);
        // A1: leader epoch bumped, leader and ISR unchanged; LeaderAndIsr IsNew to the new one.
        let s = h.state("t", 0).await;
        assert_eq!(
            (s.leader_and_isr.leader, s.leader_and_isr.leader_epoch),
            (1, 1)
        );
        assert_eq!(s.leader_and_isr.isr, vec![1, 2]);
        let sent = node.sent.take();
        assert!(leader_and_isr_to(&sent, 3).contains(&("t".into(), 0, 1, true)));
        assert!(leader_and_isr_to(&sent, 1).contains(&("t".into(), 0, 1, false)));
        let listed = list(&mut node).await;
        assert_eq!(listed[&tp].replicas, vec![2, 3, 1]);

        // Not complete while 3 is out of the ISR.
        alter_isr(&h, &mut node, 1, &tp, &[1, 2]).await;
        assert_eq!(h.state("t", 0).await.leader_and_isr.leader, 1);

        // The leader adds 3 to the ISR: phase B.
        alter_isr(&h, &mut node, 1, &tp, &[1, 2, 3]).await;
        let s = h.state("t", 0).await;
        assert_eq!(s.leader_and_isr.leader, 2);
        assert_eq!(s.leader_and_isr.isr, vec![2, 3]);
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![2, 3]);
        assert!(a.adding_replicas.is_empty() && a.removing_replicas.is_empty());
        let sent = node.sent.take();
        assert_eq!(stop_replica_deletes_to(&sent, 1), 1);
        assert!(list(&mut node).await.is_empty());
        let ctx = node.controller.context();
        assert!(ctx.partitions_being_reassigned.is_empty());
        assert_eq!(ctx.replicas(&tp), &[2, 3]);
        assert!(!ctx
            .replica_states
            .contains_key(&crate::context::PartitionAndReplica {
                tp: tp.clone(),
                replica: 1
            }));
    }

    /// Kafka: AlterPartitionReassignments with a null target cancels (targets ORS again): the
    /// added replica is stopped and deleted, RS goes back to ORS; a second cancel finds nothing.
    #[tokio::test]
    async fn reassignment_cancel_reverts_to_original_replicas() {
        let h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(1).await;
        let tp = TopicPartition::new("t", 0);
        reassign(&mut node, &[(tp.clone(), Some(vec![1, 3]))])
            .await
            .unwrap();
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 3, 2]);
        node.sent.take();

        let r = reassign(&mut node, &[(tp.clone(), None)]).await.unwrap();
        assert_eq!(r[&tp], Ok(()));
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 2]);
        assert!(a.adding_replicas.is_empty() && a.removing_replicas.is_empty());
        assert_eq!(stop_replica_deletes_to(&node.sent.take(), 3), 1);
        let s = h.state("t", 0).await;
        assert_eq!(s.leader_and_isr.leader, 1);
        assert_eq!(s.leader_and_isr.isr, vec![1, 2]);

        let r = reassign(&mut node, &[(tp.clone(), None)]).await.unwrap();
        assert_eq!(
            r[&tp].as_ref().unwrap_err().0,
            codes::NO_REASSIGNMENT_IN_PROGRESS
        );
    }

    /// Kafka: validateReplicas and maybeTriggerPartitionReassignment errors.
    #[tokio::test]
    async fn reassignment_requests_are_validated() {
        let h = Harness::new(&[1, 2]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(1).await;
        let tp = TopicPartition::new("t", 0);
        let unknown = TopicPartition::new("t", 7);
        let r = reassign(
            &mut node,
            &[
                (tp.clone(), Some(vec![1, 9])),
                (unknown.clone(), Some(vec![1])),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            r[&tp].as_ref().unwrap_err().0,
            codes::INVALID_REPLICA_ASSIGNMENT
        );
        assert_eq!(
            r[&unknown].as_ref().unwrap_err().0,
            codes::UNKNOWN_TOPIC_OR_PARTITION
        );
        for bad in [vec![], vec![1, 1], vec![-1, 2]] {
            let r = reassign(&mut node, &[(tp.clone(), Some(bad))])
                .await
                .unwrap();
            assert_eq!(
                r[&tp].as_ref().unwrap_err().0,
                codes::INVALID_REPLICA_ASSIGNMENT
            );
        }
        // Nothing was written.
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 2]);

        let mut passive = h.start_controller(2).await;
        let r = reassign(&mut passive, &[(tp.clone(), Some(vec![2, 1]))]).await;
        assert_eq!(r, Err(codes::NOT_CONTROLLER));
    }

    /// Kafka: a new controller resumes a reassignment from the adding/removing fields of the
    /// topic znode (initializePartitionReassignments) and completes it on the ISR change.
    #[tokio::test]
    async fn reassignment_interrupted_by_controller_failover_is_resumed_and_completed() {
        let h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut old = h.start_controller(3).await;
        let tp = TopicPartition::new("t", 0);
        reassign(&mut old, &[(tp.clone(), Some(vec![2, 3]))])
            .await
            .unwrap();
        old.controller.process(shutdown_event()).await;

        let mut new = h.start_controller(2).await;
        assert!(new.controller.is_active());
        assert!(new
            .controller
            .context()
            .partitions_being_reassigned
            .contains(&tp));
        // Resumed: phase A again under the new epoch (LeaderAndIsr IsNew to the adding replica).
        let sent = new.sent.take();
        assert!(leader_and_isr_to(&sent, 3).contains(&("t".into(), 0, 1, true)));
        assert_eq!(h.state("t", 0).await.controller_epoch, 2);

        alter_isr(&h, &mut new, 1, &tp, &[1, 2, 3]).await;
        let s = h.state("t", 0).await;
        assert_eq!(s.leader_and_isr.leader, 2);
        assert_eq!(s.leader_and_isr.isr, vec![2, 3]);
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![2, 3]);
        assert!(a.adding_replicas.is_empty() && a.removing_replicas.is_empty());
    }

    /// Kafka: PartitionReassignmentHandler / maybeRemoveFromZkReassignment — a request written
    /// to /admin/reassign_partitions is started, and the znode is deleted once it completes.
    #[tokio::test]
    async fn reassign_partitions_znode_is_watched_and_deleted_when_done() {
        let h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2]), (1, vec![2, 1])])
            .await;
        let mut node = h.start_controller(3).await;
        let path = ReassignPartitionsZNode::path();
        let body = br#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,3]},{"topic":"t","partition":1,"replicas":[2,3]}]}"#;
        h.reader
            .backend()
            .create(
                path.into(),
                body.to_vec(),
                crate::zk::backend::NodeMode::Persistent,
            )
            .await
            .unwrap();
        let event = next_event(&mut node, |e| {
            matches!(e, ControllerEvent::ZkPartitionReassignment)
        })
        .await;
        node.controller.process(event).await;
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 3, 2]);
        assert_eq!(a.partitions[&1], vec![2, 3, 1]);

        // Partition 0 completes: the znode is rewritten without it.
        let tp0 = TopicPartition::new("t", 0);
        alter_isr(&h, &mut node, 1, &tp0, &[1, 2, 3]).await;
        let left = h
            .reader
            .get_partition_reassignment()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(left, vec![(TopicPartition::new("t", 1), vec![2, 3])]);
        // Partition 1 completes: the znode is deleted.
        let tp1 = TopicPartition::new("t", 1);
        alter_isr(&h, &mut node, 2, &tp1, &[2, 1, 3]).await;
        assert!(h
            .reader
            .get_partition_reassignment()
            .await
            .unwrap()
            .is_none());
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 3]);
        assert_eq!(a.partitions[&1], vec![2, 3]);
        assert_eq!(h.state("t", 1).await.leader_and_isr.leader, 2);
    }

    /// Kafka: onBrokerStartup restarts reassignments whose target includes the new broker
    /// (the znode path does not check liveness, so a target broker may be down at first).
    #[tokio::test]
    async fn reassignment_to_a_dead_broker_resumes_when_it_starts() {
        let mut h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(1).await;
        h.kill(3);
        node.controller.process(ControllerEvent::BrokerChange).await;
        h.reader
            .set_or_create_partition_reassignment(
                &[(TopicPartition::new("t", 0), vec![1, 3])],
                node.controller.context().epoch_zk_version,
            )
            .await
            .unwrap();
        node.controller
            .process(ControllerEvent::ZkPartitionReassignment)
            .await;
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.adding_replicas[&0], vec![3]);
        node.sent.take();

        restart(&mut h, &mut node, 3).await;
        let sent = node.sent.take();
        assert!(leader_and_isr_to(&sent, 3).contains(&("t".into(), 0, 1, true)));
        let tp = TopicPartition::new("t", 0);
        alter_isr(&h, &mut node, 1, &tp, &[1, 2, 3]).await;
        let a = h.reader.get_topic_assignment("t").await.unwrap().unwrap();
        assert_eq!(a.partitions[&0], vec![1, 3]);
        assert!(h
            .reader
            .get_partition_reassignment()
            .await
            .unwrap()
            .is_none());
    }

    /// Kafka: a topic with a reassignment in flight is ineligible for deletion; the deletion
    /// starts when the reassignment completes (resumeDeletionForTopics).
    #[tokio::test]
    async fn topic_deletion_waits_for_an_in_flight_reassignment() {
        let h = Harness::new(&[1, 2, 3]).await;
        h.create_topic("t", &[(0, vec![1, 2])]).await;
        let mut node = h.start_controller(1).await;
        let tp = TopicPartition::new("t", 0);
        reassign(&mut node, &[(tp.clone(), Some(vec![2, 3]))])
            .await
            .unwrap();
        h.admin.delete_topic("t").await.unwrap();
        node.controller
            .process(ControllerEvent::TopicDeletion)
            .await;
        assert!(node
            .controller
            .context()
            .topics_ineligible_for_deletion
            .contains("t"));
        let sent = node.sent.take();
        assert_eq!(
            stop_replica_deletes_to(&sent, 2) + stop_replica_deletes_to(&sent, 3),
            0,
            "no replica deleted while the reassignment runs"
        );

        alter_isr(&h, &mut node, 1, &tp, &[1, 2, 3]).await;
        let sent = node.sent.take();
        assert_eq!(stop_replica_deletes_to(&sent, 2), 1);
        assert_eq!(stop_replica_deletes_to(&sent, 3), 1);
        assert!(!node
            .controller
            .context()
            .topics_ineligible_for_deletion
            .contains("t"));
    }

    /// The ControllerState gauge reads Idle between events, and the queue time is recorded.
    #[tokio::test]
    async fn event_loop_publishes_controller_state_and_queue_metrics() {
        let (handle, rx) = crate::event_loop::ControllerEventManager::channel();
        let h = Harness::new(&[1]).await;
        let controller = KafkaController::new(
            h.zk_of(1),
            ControllerConfig::with_defaults(1),
            0,
            Box::new(SharedRecordingChannel::default()),
            crate::event_loop::ControllerEventManager::sender(&handle),
            crate::event_loop::ControllerEventManager::shared(&handle),
        );
        handle.put(ControllerEvent::Startup);
        assert_eq!(handle.metrics().event_queue_size, 1);
        let task = tokio::spawn(crate::event_loop::ControllerEventManager::run(
            controller, rx,
        ));
        let r = handle.list_partition_reassignments(None).await;
        assert_eq!(r, Ok(BTreeMap::new()));
        let m = handle.metrics();
        assert_eq!(m.active_controller_count, 1);
        assert_eq!(
            m.controller_state,
            crate::event::ControllerState::Idle as u8
        );
        // Startup and ListPartitionReassignments at least (the /controller watch may have
        // queued a ControllerChange too); every wait fell in a bucket.
        assert!(m.event_queue_time_count >= 2);
        assert_eq!(m.controller_epoch, 1);
        assert_eq!(
            m.event_queue_time_cumulative.last().unwrap().1,
            m.event_queue_time_count
        );
        handle.shutdown().await;
        task.await.unwrap();
    }
}
