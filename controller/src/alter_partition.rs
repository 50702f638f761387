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
//! Simplifications: topic ids in the request (v2+) are resolved by the broker's API handler into
//! names before the event; reassignment completion is not checked afterwards (no reassignment
//! yet).

use std::collections::BTreeMap;

use tokio::sync::oneshot;
use tracing::info;

use crate::controller::KafkaController;
use crate::zk::client::UpdateLeaderAndIsrResult;
use crate::zk::data::{LeaderAndIsr, LeaderIsrAndControllerEpoch, TopicPartition};

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

impl KafkaController {
    /// Kafka's checks, in Kafka's order (reference §2.14), then the fenced conditional writes.
    pub(crate) async fn process_alter_partition(
        &mut self,
        req: &AlterPartitionRequest,
    ) -> crate::Result<AlterPartitionReply> {
        use codes::*;
        if !self.is_active() {
            return Ok(Err(NOT_CONTROLLER));
        }
        match self.ctx.live_brokers.get(&req.broker_id) {
            Some(b) if b.broker_epoch == req.broker_epoch || req.broker_epoch == -1 => {}
            _ => return Ok(Err(STALE_BROKER_EPOCH)),
        }
        let mut results = BTreeMap::new();
        let mut writes = Vec::new();
        for item in &req.items {
            let Some(current) = self.ctx.leadership.get(&item.tp) else {
                results.insert(item.tp.clone(), Err(UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let l = &current.leader_and_isr;
            let code = if item.partition_epoch > l.partition_epoch
                || item.leader_epoch > l.leader_epoch
            {
                Some(NOT_CONTROLLER)
            } else if item.leader_epoch < l.leader_epoch {
                Some(FENCED_LEADER_EPOCH)
            } else if item.new_isr == l.isr && item.leader_recovery_state == l.leader_recovery_state
            {
                // Identical to the current state (a retry): success, nothing to write.
                results.insert(item.tp.clone(), Ok(l.clone()));
                continue;
            } else if item.partition_epoch < l.partition_epoch {
                Some(INVALID_UPDATE_VERSION)
            } else if item.leader_recovery_state == 1
                && (item.new_isr.len() > 1 || l.leader_recovery_state == 0)
            {
                // RECOVERING with more than one ISR member, or RECOVERED -> RECOVERING.
                Some(INVALID_REQUEST)
            } else if item.new_isr.iter().any(|b| !self.ctx.is_live(*b)) {
                Some(if req.version >= 2 {
                    INELIGIBLE_REPLICA
                } else {
                    OPERATION_NOT_ATTEMPTED
                })
            } else {
                None
            };
            if let Some(code) = code {
                results.insert(item.tp.clone(), Err(code));
                continue;
            }
            writes.push((
                item.tp.clone(),
                LeaderIsrAndControllerEpoch {
                    leader_and_isr: LeaderAndIsr {
                        leader: req.broker_id,
                        leader_epoch: l.leader_epoch,
                        isr: item.new_isr.clone(),
                        leader_recovery_state: item.leader_recovery_state,
                        partition_epoch: l.partition_epoch,
                    },
                    controller_epoch: self.ctx.epoch,
                },
            ));
        }
        if !writes.is_empty() {
            let written = self
                .zk
                .update_leader_and_isr(&writes, self.ctx.epoch_zk_version)
                .await?;
            let mut changed = Vec::new();
            for (tp, mut state) in writes {
                match written.get(&tp) {
                    Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                        state.leader_and_isr.partition_epoch = *v;
                        let l = &state.leader_and_isr;
                        info!(
                            target: "state_change",
                            controller_epoch = self.ctx.epoch,
                            topic = %tp.topic,
                            partition = tp.partition,
                            leader = l.leader,
                            isr = ?l.isr,
                            leader_epoch = l.leader_epoch,
                            zk_version = *v,
                            "ISR changed by AlterPartition"
                        );
                        results.insert(tp.clone(), Ok(l.clone()));
                        self.ctx.leadership.insert(tp.clone(), state);
                        changed.push(tp);
                    }
                    _ => {
                        results.insert(tp, Err(INVALID_UPDATE_VERSION));
                    }
                }
            }
            if !changed.is_empty() {
                let all: Vec<i32> = self
                    .ctx
                    .live_or_shutting_down_broker_ids()
                    .into_iter()
                    .collect();
                self.send_update_metadata(&all, &changed)?;
            }
        }
        Ok(Ok(results))
    }
}
