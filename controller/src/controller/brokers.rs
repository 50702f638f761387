//! Broker membership and the requests brokers send the controller (Kafka's
//! `processBrokerChange`, `onBrokerStartup`, `onBrokerFailure`, `processControlledShutdown`,
//! `processAlterPartition`).
//!
//! Kafka concept: a broker is live while its ephemeral `/brokers/ids/<id>` exists; a new
//! registration with a higher epoch is a bounce (failure, then startup). A stopping broker asks
//! to be drained (ControlledShutdown); a leader asks to change its ISR (AlterPartition).
//!
//! Invariant: a broker's requests are checked against its current broker epoch, and ISR
//! changes against the partition and leader epochs, before anything is written.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::oneshot;
use tracing::info;

use crate::alter_partition::{AlterPartitionReply, AlterPartitionRequest};
use crate::context::PartitionAndReplica;
use crate::controller_core::IsrWrite;
use crate::error::{Error, Result};
use crate::event::{ControlledShutdownError, ControlledShutdownReply, ControllerEvent};
use crate::partition_state::ElectionStrategy;
use crate::state::{PartitionState, ReplicaState};
use crate::zk::client::UpdateLeaderAndIsrResult;
use crate::zk::data::{
    BrokerIdZNode, BrokerIds, BrokerInfo, LeaderAndIsr, LeaderIsrAndControllerEpoch, TopicPartition,
};

use super::KafkaController;

impl KafkaController {
    // ---- broker membership -----------------------------------------------------------------

    /// `/brokers/ids` children changed: new, dead and bounced brokers (reference §2.4).
    pub(super) async fn process_broker_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (_, w) = self
            .core
            .zk
            .get_children_and_watch(BrokerIds::path())
            .await?;
        self.core.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let current: BTreeMap<i32, BrokerInfo> = self
            .core
            .zk
            .get_all_brokers()
            .await?
            .into_iter()
            .map(|b| (b.id(), b))
            .collect();
        let known = self.core.ctx.live_or_shutting_down_broker_ids();
        let new: BTreeSet<i32> = current
            .keys()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        let dead: BTreeSet<i32> = known
            .iter()
            .filter(|id| !current.contains_key(id))
            .copied()
            .collect();
        let bounced: BTreeSet<i32> = current
            .iter()
            .filter(|(id, b)| {
                self.core
                    .ctx
                    .live_brokers
                    .get(id)
                    .is_some_and(|old| b.broker_epoch > old.broker_epoch)
            })
            .map(|(id, _)| *id)
            .collect();
        info!(
            controller_epoch = self.core.ctx.epoch,
            new_brokers = ?new,
            dead_brokers = ?dead,
            bounced_brokers = ?bounced,
            live_brokers = ?current.keys().collect::<Vec<_>>(),
            "broker membership changed"
        );
        for id in &new {
            let b = &current[id];
            self.core.add_broker(b);
            self.core.ctx.live_brokers.insert(*id, b.clone());
        }
        for id in bounced.iter().chain(dead.iter()) {
            self.core.remove_broker(*id);
            self.core.ctx.live_brokers.remove(id);
        }
        if !new.is_empty() {
            self.on_broker_startup(&new).await?;
        }
        if !bounced.is_empty() {
            self.on_broker_failure(&bounced).await?;
            for id in &bounced {
                let b = &current[id];
                self.core.add_broker(b);
                self.core.ctx.live_brokers.insert(*id, b.clone());
            }
            self.on_broker_startup(&bounced).await?;
        }
        if !dead.is_empty() {
            for id in &dead {
                self.core.unarm_watch(&BrokerIdZNode::path(*id));
            }
            self.on_broker_failure(&dead).await?;
            info!(
                controller_epoch = self.core.ctx.epoch,
                dead_brokers = ?dead,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "broker failure handled"
            );
        }
        Ok(())
    }

    /// Kafka's `onBrokerStartup`:
    /// 1. UpdateMetadata (broker list) to the brokers that were already there;
    /// 2. UpdateMetadata with every partition that has a leader to the new brokers;
    /// 3. their replicas -> OnlineReplica (LeaderAndIsr with the current state);
    /// 4. New/Offline partitions -> Online (a returning broker may lead again);
    /// 5. restart reassignments whose target includes a new broker; resume deletion of topics
    ///    with replicas on them; 6. watch their znodes.
    async fn on_broker_startup(&mut self, new: &BTreeSet<i32>) -> Result<()> {
        let existing: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .filter(|b| !new.contains(b))
            .collect();
        self.core.send_update_metadata(&existing, &[])?;
        let with_leader: Vec<TopicPartition> = self.core.ctx.leadership.keys().cloned().collect();
        let new_ids: Vec<i32> = new.iter().copied().collect();
        self.core.send_update_metadata(&new_ids, &with_leader)?;
        let replicas = self.core.ctx.replicas_on_brokers(new);
        let (for_deletion, others): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.core.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        self.replica_state_machine()
            .handle_state_changes(&others, ReplicaState::Online)
            .await?;
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        self.reassignment_manager()
            .maybe_resume_reassignments(|_, a| a.target_replicas().iter().any(|r| new.contains(r)))
            .await?;
        if !for_deletion.is_empty() {
            let topics: BTreeSet<String> =
                for_deletion.iter().map(|r| r.tp.topic.clone()).collect();
            self.topic_deletion_manager()
                .resume_deletion_for_topics(&topics)
                .await?;
        }
        for id in new {
            self.watch_broker(*id).await?;
        }
        Ok(())
    }

    /// Kafka's `onBrokerFailure` / `onReplicasBecomeOffline`:
    /// 1. partitions whose leader is gone -> OfflinePartition, then New/Offline -> Online
    ///    (offline election: first live ISR member in assignment order);
    /// 2. the dead brokers' replicas -> OfflineReplica (removed from ISR, LeaderAndIsr to the
    ///    remaining replicas);
    /// 3. replicas of topics being deleted -> deletion failed (retried when they return);
    /// 4. if nothing above sent anything, UpdateMetadata (broker list) to everyone.
    async fn on_broker_failure(&mut self, dead: &BTreeSet<i32>) -> Result<()> {
        for id in dead {
            self.core.ctx.shutting_down_broker_ids.remove(id);
        }
        let replicas = self.core.ctx.replicas_on_brokers(dead);
        let (for_deletion, not_for_deletion): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.core.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        let offline_leader: Vec<TopicPartition> = self
            .core
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                !self.core.ctx.is_replica_online(l.leader_and_isr.leader)
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        self.partition_state_machine()
            .handle_state_changes(&offline_leader, PartitionState::Offline, None)
            .await?;
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&not_for_deletion, ReplicaState::Offline)
            .await?;
        if !for_deletion.is_empty() {
            self.topic_deletion_manager()
                .fail_replica_deletion(&for_deletion)
                .await?;
        }
        if offline_leader.is_empty() && not_for_deletion.is_empty() {
            let live: Vec<i32> = self
                .core
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.core.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    /// A broker rewrote its registration: refresh endpoints and tell everyone.
    pub(super) async fn process_broker_modifications(&mut self, broker_id: i32) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        self.watch_broker(broker_id).await?;
        let Some(b) = self.core.zk.get_broker(broker_id).await? else {
            return Ok(());
        };
        let changed = self
            .core
            .ctx
            .live_brokers
            .get(&broker_id)
            .is_some_and(|old| old.registration.endpoints != b.registration.endpoints);
        if changed {
            info!(broker_id, endpoints = ?b.registration.endpoints, "broker endpoints changed");
            self.core.ctx.live_brokers.insert(broker_id, b.clone());
            self.core.add_broker(&b);
            let live: Vec<i32> = self
                .core
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.core.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    // ---- controlled shutdown ---------------------------------------------------------------

    /// A broker asks to be drained before it stops (Kafka's `processControlledShutdown`): it
    /// is answered with what it still leads, or with why not.
    pub(super) async fn process_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        reply: oneshot::Sender<ControlledShutdownReply>,
    ) -> Result<()> {
        let (answer, outcome) = match self.do_controlled_shutdown(broker_id, broker_epoch).await {
            Ok(remaining) => (Ok(remaining), Ok(())),
            Err(ShutdownFailure::Reply(err)) => (Err(err), Ok(())),
            Err(ShutdownFailure::Controller(e)) => {
                let err = match &e {
                    Error::ControllerMoved => ControlledShutdownError::NotController,
                    inner => ControlledShutdownError::Failed(inner.to_string()),
                };
                (Err(err), Err(e))
            }
        };
        let _ = reply.send(answer);
        outcome
    }

    /// Kafka's `doControlledShutdown` (reference §2.13): move leadership away from the broker,
    /// drop it from the ISRs, answer with what it still leads.
    async fn do_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> std::result::Result<Vec<TopicPartition>, ShutdownFailure> {
        if !self.is_active() {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::NotController,
            ));
        }
        let Some(info) = self.core.ctx.live_brokers.get(&broker_id) else {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::BrokerNotAvailable(broker_id),
            ));
        };
        if broker_epoch != -1 && broker_epoch < info.broker_epoch {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::StaleBrokerEpoch {
                    given: broker_epoch,
                    current: info.broker_epoch,
                },
            ));
        }
        info!(
            broker_id,
            controller_epoch = self.core.ctx.epoch,
            "controlled shutdown requested"
        );
        self.core.ctx.shutting_down_broker_ids.insert(broker_id);
        let eligible: Vec<TopicPartition> = self
            .core
            .ctx
            .all_partitions()
            .into_iter()
            .filter(|tp| {
                let r = self.core.ctx.replicas(tp);
                r.contains(&broker_id)
                    && r.len() > 1
                    && self.core.ctx.leadership.contains_key(tp)
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .collect();
        let (led, followed): (Vec<_>, Vec<_>) = eligible.into_iter().partition(|tp| {
            self.core
                .ctx
                .leadership
                .get(tp)
                .is_some_and(|l| l.leader_and_isr.leader == broker_id)
        });
        self.partition_state_machine()
            .handle_state_changes(
                &led,
                PartitionState::Online,
                Some(ElectionStrategy::ControlledShutdown),
            )
            .await
            .map_err(ShutdownFailure::Controller)?;
        if !followed.is_empty() {
            self.core
                .batch
                .new_batch()
                .map_err(ShutdownFailure::Controller)?;
            for tp in &followed {
                self.core
                    .batch
                    .add_stop_replica(&self.core.ctx, &[broker_id], tp, false);
            }
            self.core.send_batch();
            let replicas: Vec<PartitionAndReplica> = followed
                .iter()
                .map(|tp| PartitionAndReplica {
                    tp: tp.clone(),
                    replica: broker_id,
                })
                .collect();
            self.replica_state_machine()
                .handle_state_changes(&replicas, ReplicaState::Offline)
                .await
                .map_err(ShutdownFailure::Controller)?;
        }
        let remaining: Vec<TopicPartition> = self
            .core
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                l.leader_and_isr.leader == broker_id
                    && self.core.ctx.replicas(tp).len() > 1
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        info!(
            broker_id,
            remaining_partitions = remaining.len(),
            "controlled shutdown handled"
        );
        Ok(remaining)
    }

    // ---- AlterPartition --------------------------------------------------------------------

    /// A leader asks to change ISRs (Kafka's `processAlterPartition`). Kafka answers first,
    /// then checks whether an accepted ISR expansion completes a reassignment.
    pub(super) async fn process_alter_partition(
        &mut self,
        req: AlterPartitionRequest,
    ) -> Result<()> {
        let reply = match self.try_process_alter_partition(&req).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = req
                    .reply
                    .send(Err(crate::alter_partition::codes::NOT_CONTROLLER));
                return Err(e);
            }
        };
        let accepted: Vec<TopicPartition> = match &reply {
            Ok(results) => results
                .iter()
                .filter(|(tp, r)| {
                    r.is_ok() && self.core.ctx.partitions_being_reassigned.contains(*tp)
                })
                .map(|(tp, _)| tp.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let _ = req.reply.send(reply);
        if self.is_active() {
            for tp in accepted {
                self.reassignment_manager()
                    .maybe_complete_reassignment(&tp)
                    .await?;
            }
        }
        Ok(())
    }

    /// Kafka's `tryProcessAlterPartition`: its checks, in Kafka's order (reference §2.14), then
    /// the fenced conditional writes.
    async fn try_process_alter_partition(
        &mut self,
        req: &AlterPartitionRequest,
    ) -> Result<AlterPartitionReply> {
        use crate::alter_partition::codes::*;
        if !self.is_active() {
            return Ok(Err(NOT_CONTROLLER));
        }
        match self.core.ctx.live_brokers.get(&req.broker_id) {
            Some(b) if b.broker_epoch == req.broker_epoch || req.broker_epoch == -1 => {}
            _ => return Ok(Err(STALE_BROKER_EPOCH)),
        }
        let mut results = BTreeMap::new();
        let mut writes = Vec::new();
        for item in &req.items {
            let Some(current) = self.core.ctx.leadership.get(&item.tp) else {
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
            } else if item.new_isr.iter().any(|b| !self.core.ctx.is_live(*b)) {
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
                    controller_epoch: self.core.ctx.epoch,
                },
            ));
        }
        if !writes.is_empty() {
            let written = self
                .core
                .zk
                .update_leader_and_isr(&writes, self.core.ctx.epoch_zk_version)
                .await?;
            let mut changed = Vec::new();
            for (tp, state) in writes {
                match written.get(&tp) {
                    Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                        let state =
                            self.core
                                .apply_isr_write(&tp, state, *v, IsrWrite::AlterPartition);
                        results.insert(tp.clone(), Ok(state.leader_and_isr));
                        changed.push(tp);
                    }
                    _ => {
                        results.insert(tp, Err(INVALID_UPDATE_VERSION));
                    }
                }
            }
            if !changed.is_empty() {
                self.core.send_update_metadata_to_all(&changed)?;
            }
        }
        Ok(Ok(results))
    }
}

/// Why a controlled shutdown could not be served.
enum ShutdownFailure {
    /// Answer the broker with this error; the controller itself is fine.
    Reply(ControlledShutdownError),
    /// The controller hit an error (possibly ControllerMoved) that `process` must handle.
    Controller(Error),
}
