//! The controller's inputs, one variant per trigger (Kafka's `sealed trait ControllerEvent`).
//!
//! Kafka concept: every input of the controller (a ZooKeeper watch firing, a broker's response,
//! an API call, a timer) becomes one event on a single queue, processed to completion one at a
//! time by the event loop. Watch tasks do nothing but enqueue; the handler re-reads ZooKeeper.
//!
//! Invariant: events that have a waiting caller carry a `oneshot::Sender`; if the event is
//! dropped unprocessed (queue drained on resignation or shutdown) the caller gets
//! `NotController`, never silence.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::{LeaderAndIsrResponse, StopReplicaResponse};
use tokio::sync::{mpsc, oneshot};

use crate::context::ReplicaAssignment;
use crate::error::{codes, Error};
use crate::zk::data::{BrokerRegistration, TopicPartition};

/// Kafka's `ElectionType` (ElectLeaders `ElectionType` field: 0 preferred, 1 unclean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// Move leadership to the head of the assignment if it is alive and in the ISR.
    Preferred,
    /// Elect a leader for partitions without a live one, out-of-sync replicas allowed.
    Unclean,
}

/// Kafka's `ElectionTrigger`: who asked for an election (changes logging and clean-up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionTrigger {
    /// The ElectLeaders API.
    AdminClient,
    /// `/admin/preferred_replica_election` was created.
    Zk,
    /// The auto leader rebalance timer.
    Auto,
}

/// A Kafka error code with an optional message (Kafka's `ApiError`).
pub type ApiError = (i16, Option<String>);

/// ElectLeaders outcome per partition: the new leader, or why not.
pub type ElectLeadersResults = BTreeMap<TopicPartition, Result<i32, ApiError>>;

/// AlterPartitionReassignments outcome: per partition, or a top-level error code.
pub type AlterReassignmentsReply = Result<BTreeMap<TopicPartition, Result<(), ApiError>>, i16>;

/// ListPartitionReassignments outcome: the full assignment of each partition being
/// reassigned, or a top-level error code.
pub type ListReassignmentsReply = Result<BTreeMap<TopicPartition, ReplicaAssignment>, i16>;

/// Kafka's `ControllerState`: what the event loop is doing, published as the ControllerState
/// gauge (the byte values are Kafka's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ControllerState {
    Idle = 0,
    ControllerChange = 1,
    BrokerChange = 2,
    TopicChange = 3,
    TopicDeletion = 4,
    AlterPartitionReassignment = 5,
    AutoLeaderBalance = 6,
    ManualLeaderBalance = 7,
    ControlledShutdown = 8,
    IsrChange = 9,
    LeaderAndIsrResponseReceived = 10,
    ControllerShutdown = 12,
    ListPartitionReassignment = 15,
    UpdateMetadataResponseReceived = 16,
}

/// Why a ControlledShutdown request failed (mapped to Kafka error codes by the broker).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlledShutdownError {
    /// This broker is not the active controller. Kafka throws `ControllerMovedException`, which
    /// goes on the wire as STALE_CONTROLLER_EPOCH (error code 11).
    #[error("not the active controller")]
    NotController,
    /// BrokerEpoch lower than the registration the controller knows: STALE_BROKER_EPOCH.
    #[error("stale broker epoch {given}, current {current}")]
    StaleBrokerEpoch { given: i64, current: i64 },
    /// The broker is not registered: BROKER_NOT_AVAILABLE.
    #[error("broker {0} is not registered")]
    BrokerNotAvailable(i32),
    /// Anything else (a ZooKeeper error while moving leaders): UNKNOWN_SERVER_ERROR.
    #[error("controlled shutdown failed: {0}")]
    Failed(String),
}

/// Reply to a ControlledShutdown: the partitions the broker still leads (empty = done).
pub type ControlledShutdownReply =
    std::result::Result<Vec<TopicPartition>, ControlledShutdownError>;

#[derive(Debug)]
pub enum ControllerEvent {
    /// Watch `/controller` and contest the election (queued once at start).
    Startup,
    /// `/controller` was deleted: resign if active, then contest again.
    Reelect,
    /// `/controller` was created or changed: re-read it, resign if we lost.
    ControllerChange,
    /// Our ZooKeeper session expired: resign (Kafka's `Expire`). Queued with
    /// [`crate::ControllerHandle::expire`], which also drops the events queued before it.
    Expire,
    /// After a new session: re-register `/brokers/ids/<id>` (new broker epoch) and contest the
    /// election again (Kafka's `RegisterBrokerAndReelect`). Replies with the new broker epoch.
    RegisterBrokerAndReelect {
        registration: BrokerRegistration,
        reply: oneshot::Sender<std::result::Result<i64, String>>,
    },
    /// The children of `/brokers/ids` changed.
    BrokerChange,
    /// A broker rewrote its registration (e.g. new endpoints).
    BrokerModifications { broker_id: i32 },
    /// The children of `/brokers/topics` changed.
    TopicChange,
    /// A topic znode's data changed (partitions added).
    PartitionModifications { topic: String },
    /// The children of `/admin/delete_topics` changed.
    TopicDeletion,
    /// A broker asks to be drained before it stops.
    ControlledShutdown {
        broker_id: i32,
        broker_epoch: i64,
        reply: oneshot::Sender<ControlledShutdownReply>,
    },
    /// A partition leader asks to change its ISR (the AlterPartition API, key 56).
    AlterPartition(Box<crate::alter_partition::AlterPartitionRequest>),
    /// A broker answered a LeaderAndIsr.
    LeaderAndIsrResponseReceived {
        broker_id: i32,
        response: LeaderAndIsrResponse,
    },
    /// A broker answered an UpdateMetadata.
    UpdateMetadataResponseReceived { broker_id: i32, error_code: i16 },
    /// A broker answered a StopReplica (Kafka's `TopicDeletionStopReplicaResponseReceived`).
    StopReplicaResponseReceived {
        broker_id: i32,
        response: StopReplicaResponse,
    },
    /// Elect leaders on demand (Kafka's `ReplicaLeaderElection`): from the ElectLeaders API
    /// (`partitions` given, `reply` set) or from `/admin/preferred_replica_election`
    /// (`partitions` read from the znode, no reply).
    ReplicaLeaderElection {
        partitions: Option<Vec<TopicPartition>>,
        election_type: ElectionType,
        trigger: ElectionTrigger,
        reply: Option<oneshot::Sender<ElectLeadersResults>>,
    },
    /// The auto leader rebalance timer fired (Kafka's `AutoPreferredReplicaLeaderElection`).
    AutoPreferredReplicaLeaderElection,
    /// `/admin/reassign_partitions` was created (Kafka's `ZkPartitionReassignment`).
    ZkPartitionReassignment,
    /// AlterPartitionReassignments (Kafka's `ApiPartitionReassignment`); a `None` target
    /// cancels the partition's reassignment.
    ApiPartitionReassignment {
        reassignments: BTreeMap<TopicPartition, Option<Vec<i32>>>,
        reply: oneshot::Sender<AlterReassignmentsReply>,
    },
    /// ListPartitionReassignments (Kafka's `ListPartitionReassignments`); `None` = all.
    ListPartitionReassignments {
        partitions: Option<Vec<TopicPartition>>,
        reply: oneshot::Sender<ListReassignmentsReply>,
    },
    /// Stop the event loop (resigning first); `done` fires when it has stopped.
    Shutdown { done: oneshot::Sender<()> },
}

impl ControllerEvent {
    /// Kafka's event name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ControllerEvent::Startup => "Startup",
            ControllerEvent::Reelect => "Reelect",
            ControllerEvent::ControllerChange => "ControllerChange",
            ControllerEvent::Expire => "Expire",
            ControllerEvent::RegisterBrokerAndReelect { .. } => "RegisterBrokerAndReelect",
            ControllerEvent::BrokerChange => "BrokerChange",
            ControllerEvent::BrokerModifications { .. } => "BrokerModifications",
            ControllerEvent::TopicChange => "TopicChange",
            ControllerEvent::PartitionModifications { .. } => "PartitionModifications",
            ControllerEvent::TopicDeletion => "TopicDeletion",
            ControllerEvent::ControlledShutdown { .. } => "ControlledShutdown",
            ControllerEvent::AlterPartition(_) => "AlterPartitionReceived",
            ControllerEvent::LeaderAndIsrResponseReceived { .. } => "LeaderAndIsrResponseReceived",
            ControllerEvent::UpdateMetadataResponseReceived { .. } => {
                "UpdateMetadataResponseReceived"
            }
            ControllerEvent::StopReplicaResponseReceived { .. } => {
                "TopicDeletionStopReplicaResponseReceived"
            }
            ControllerEvent::ReplicaLeaderElection { .. } => "ReplicaLeaderElection",
            ControllerEvent::AutoPreferredReplicaLeaderElection => {
                "AutoPreferredReplicaLeaderElection"
            }
            ControllerEvent::ZkPartitionReassignment => "ZkPartitionReassignment",
            ControllerEvent::ApiPartitionReassignment { .. } => "ApiPartitionReassignment",
            ControllerEvent::ListPartitionReassignments { .. } => "ListPartitionReassignments",
            ControllerEvent::Shutdown { .. } => "ShutdownEventThread",
        }
    }

    /// The controller state while this event is processed (Kafka's `ControllerEvent.state`).
    pub fn state(&self) -> ControllerState {
        use ControllerEvent as E;
        match self {
            E::Startup
            | E::Reelect
            | E::ControllerChange
            | E::Expire
            | E::RegisterBrokerAndReelect { .. } => ControllerState::ControllerChange,
            E::BrokerChange | E::BrokerModifications { .. } => ControllerState::BrokerChange,
            E::TopicChange | E::PartitionModifications { .. } => ControllerState::TopicChange,
            E::TopicDeletion | E::StopReplicaResponseReceived { .. } => {
                ControllerState::TopicDeletion
            }
            E::ZkPartitionReassignment | E::ApiPartitionReassignment { .. } => {
                ControllerState::AlterPartitionReassignment
            }
            E::AutoPreferredReplicaLeaderElection => ControllerState::AutoLeaderBalance,
            E::ReplicaLeaderElection { .. } => ControllerState::ManualLeaderBalance,
            E::ControlledShutdown { .. } => ControllerState::ControlledShutdown,
            E::AlterPartition(_) => ControllerState::IsrChange,
            E::LeaderAndIsrResponseReceived { .. } => ControllerState::LeaderAndIsrResponseReceived,
            E::UpdateMetadataResponseReceived { .. } => {
                ControllerState::UpdateMetadataResponseReceived
            }
            E::ListPartitionReassignments { .. } => ControllerState::ListPartitionReassignment,
            E::Shutdown { .. } => ControllerState::ControllerShutdown,
        }
    }

    /// Answers a waiting caller with "not the controller" (queue drained without processing).
    pub fn reject(self) {
        match self {
            ControllerEvent::ControlledShutdown { reply, .. } => {
                let _ = reply.send(Err(ControlledShutdownError::NotController));
            }
            ControllerEvent::RegisterBrokerAndReelect { reply, .. } => {
                let _ = reply.send(Err("controller event loop stopped".into()));
            }
            ControllerEvent::Shutdown { done } => {
                let _ = done.send(());
            }
            ControllerEvent::AlterPartition(req) => {
                let _ = req
                    .reply
                    .send(Err(crate::alter_partition::codes::NOT_CONTROLLER));
            }
            ControllerEvent::ReplicaLeaderElection {
                partitions,
                reply: Some(reply),
                ..
            } => {
                let _ = reply.send(not_controller_results(partitions.unwrap_or_default()));
            }
            ControllerEvent::ApiPartitionReassignment { reply, .. } => {
                let _ = reply.send(Err(codes::NOT_CONTROLLER));
            }
            ControllerEvent::ListPartitionReassignments { reply, .. } => {
                let _ = reply.send(Err(codes::NOT_CONTROLLER));
            }
            _ => {}
        }
    }
}

/// NOT_CONTROLLER for every partition (Kafka answers ElectLeaders this way when inactive).
pub fn not_controller_results(partitions: Vec<TopicPartition>) -> ElectLeadersResults {
    partitions
        .into_iter()
        .map(|tp| (tp, Err((codes::NOT_CONTROLLER, None))))
        .collect()
}

/// An event with the time it was queued (for the EventQueueTimeMs metric).
#[derive(Debug)]
pub struct QueuedEvent {
    pub event: ControllerEvent,
    pub enqueued_at: Instant,
}

/// The sending side of the controller's queue (cloned into watch and sender tasks). It stamps
/// each event with its enqueue time and counts the queue length (Kafka's `EventQueueSize`).
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<QueuedEvent>,
    queue_size: Arc<AtomicI64>,
}

/// The receiving side, owned by the event loop.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<QueuedEvent>,
    queue_size: Arc<AtomicI64>,
}

/// A new controller queue.
pub fn event_queue() -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queue_size = Arc::new(AtomicI64::new(0));
    (
        EventSender {
            tx,
            queue_size: queue_size.clone(),
        },
        EventReceiver { rx, queue_size },
    )
}

impl EventSender {
    /// Enqueues an event; gives it back if the event loop has stopped.
    pub fn send(&self, event: ControllerEvent) -> Result<(), ControllerEvent> {
        self.queue_size.fetch_add(1, Ordering::SeqCst);
        self.tx
            .send(QueuedEvent {
                event,
                enqueued_at: Instant::now(),
            })
            .map_err(|e| {
                self.queue_size.fetch_sub(1, Ordering::SeqCst);
                e.0.event
            })
    }

    /// True once the event loop has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Events queued and not yet taken by the loop.
    pub fn queue_size(&self) -> i64 {
        self.queue_size.load(Ordering::SeqCst).max(0)
    }
}

impl EventReceiver {
    /// The next event, waiting for one; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<QueuedEvent> {
        let e = self.rx.recv().await;
        if e.is_some() {
            self.queue_size.fetch_sub(1, Ordering::SeqCst);
        }
        e
    }

    /// The next event if one is queued.
    pub fn try_recv(&mut self) -> Option<QueuedEvent> {
        let e = self.rx.try_recv().ok();
        if e.is_some() {
            self.queue_size.fetch_sub(1, Ordering::SeqCst);
        }
        e
    }

    /// Stops accepting events (senders get them back).
    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl From<Error> for ControlledShutdownError {
    fn from(e: Error) -> Self {
        match e {
            Error::ControllerMoved | Error::NotController => ControlledShutdownError::NotController,
            other => ControlledShutdownError::Failed(other.to_string()),
        }
    }
}
