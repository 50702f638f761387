//! The controller's inputs, one variant per trigger (Kafka's `sealed trait ControllerEvent`).
//!
//! Kafka concept: every input of the controller (a ZooKeeper watch firing, a broker's response,
//! an API call, a timer) becomes one event on a single queue, processed to completion one at a
//! time by the event loop. Watch tasks do nothing but enqueue; the handler re-reads ZooKeeper.
//!
//! Invariant: events that have a waiting caller carry a `oneshot::Sender`; if the event is
//! dropped unprocessed (queue drained on resignation or shutdown) the caller gets
//! `NotController`, never silence.

use kafka_protocol::messages::{LeaderAndIsrResponse, StopReplicaResponse};
use tokio::sync::{mpsc, oneshot};

use crate::error::Error;
use crate::zk::data::{BrokerRegistration, TopicPartition};

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
            ControllerEvent::Shutdown { .. } => "ShutdownEventThread",
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
            _ => {}
        }
    }
}

/// The sending side of the controller's queue (cloned into watch and sender tasks).
pub type EventSender = mpsc::UnboundedSender<ControllerEvent>;

impl From<Error> for ControlledShutdownError {
    fn from(e: Error) -> Self {
        match e {
            Error::ControllerMoved | Error::NotController => ControlledShutdownError::NotController,
            other => ControlledShutdownError::Failed(other.to_string()),
        }
    }
}
