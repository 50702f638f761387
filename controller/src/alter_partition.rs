//! ISR changes requested by partition leaders (Kafka's `KafkaController.processAlterPartition`).
//!
//! Kafka concept: at IBP >= 2.7-IV2 a leader never writes its ISR to ZooKeeper itself; it sends
//! AlterPartition (key 56) to the controller, which checks the request against what it knows,
//! writes the new ISR conditionally on the partition epoch (fenced by the controller epoch as
//! every controller write), tells every broker with UpdateMetadata and answers with the new
//! state and partition epoch.
//!
//! Invariant: a request from a stale broker epoch, a stale leader epoch or an older partition
//! epoch changes nothing; an ISR may only contain live brokers.
//!
//! This module holds the request and reply types the broker and the event share; the handler
//! is `KafkaController::process_alter_partition` in `controller/brokers.rs`, which records each
//! accepted write through `ControllerCore::apply_isr_write`.
//!
//! Simplifications: topic ids in the request (v2+) are resolved by the broker's API handler into
//! names before the event.

use std::collections::BTreeMap;

use tokio::sync::oneshot;

use crate::zk::data::{LeaderAndIsr, TopicPartition};

/// Kafka error codes this API answers with (names for `common::ErrorCode`s).
pub use crate::error::codes;

/// One partition of an AlterPartition request.
#[derive(Debug, Clone)]
pub struct AlterPartitionItem {
    pub tp: TopicPartition,
    pub leader_epoch: i32,
    pub new_isr: Vec<i32>,
    pub leader_recovery_state: i8,
    pub partition_epoch: i32,
}

/// Per partition: the new state (with the new partition epoch) or an error code.
pub type AlterPartitionResults = BTreeMap<TopicPartition, Result<LeaderAndIsr, i16>>;

/// Reply: per-partition results, or a top-level error code.
pub type AlterPartitionReply = Result<AlterPartitionResults, i16>;

/// The event's payload (kept in one struct so `ControllerEvent` stays small).
#[derive(Debug)]
pub struct AlterPartitionRequest {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// AlterPartition v2+ answers INELIGIBLE_REPLICA, v0-1 OPERATION_NOT_ATTEMPTED.
    pub version: i16,
    pub items: Vec<AlterPartitionItem>,
    pub reply: oneshot::Sender<AlterPartitionReply>,
}
