//! The replica state machine (Kafka's `ReplicaStateMachine` / `ZkReplicaStateMachine`).
//!
//! Kafka concept: each replica (a partition on one broker) is in one of seven states:
//!
//! | Target | Allowed from | Side effects, in order |
//! |---|---|---|
//! | `NewReplica` | NonExistent | if the partition has a leader: LeaderAndIsr (IsNew) to this replica (refused if it *is* the leader) |
//! | `OnlineReplica` | New | add to the assignment if missing; no request |
//! | `OnlineReplica` | Online, Offline, DeletionIneligible | LeaderAndIsr with the current state to this replica, UpdateMetadata to all |
//! | `OfflineReplica` | New, Online, Offline, DeletionIneligible | StopReplica (no delete) to it; removed from the ISR in ZooKeeper (leader -1 if it led, an ISR of one left as is), leader epoch +1; LeaderAndIsr to the other replicas unless the topic is being deleted; UpdateMetadata to all |
//! | `ReplicaDeletionStarted` | Offline | StopReplica (delete) to it |
//! | `ReplicaDeletionSuccessful` | DeletionStarted | mark only |
//! | `ReplicaDeletionIneligible` | Offline, DeletionStarted | mark only |
//! | `NonExistentReplica` | DeletionSuccessful | removed from the assignment, state dropped |
//!
//! Invariant: invalid moves are logged at error (target `state_change`) and skipped. One call of
//! `handle_state_changes` is one request batch, opened before and sent after it.
//!
//! The states and their table are in [`crate::state`]; [`ReplicaStateMachine`] borrows the
//! controller's [`ControllerCore`] for one call.

use std::collections::BTreeMap;

use tracing::{error, trace};

use crate::context::PartitionAndReplica;
use crate::controller_core::{ControllerCore, IsrWrite};
use crate::error::Result;
use crate::state::ReplicaState;
use crate::zk::client::UpdateLeaderAndIsrResult;
use crate::zk::data::{LeaderAndIsr, LeaderIsrAndControllerEpoch, TopicPartition};

/// Kafka's `ZkReplicaStateMachine`: moves replicas between [`ReplicaState`]s along the table
/// above, with the side effects listed there. Built on the fly around the controller's core
/// (`ReplicaStateMachine::new(&mut core)`) for one call.
pub struct ReplicaStateMachine<'a> {
    core: &'a mut ControllerCore,
}

impl<'a> ReplicaStateMachine<'a> {
    pub fn new(core: &'a mut ControllerCore) -> Self {
        ReplicaStateMachine { core }
    }

    /// Moves `replicas` to `target` as one request batch.
    pub(crate) async fn handle_state_changes(
        &mut self,
        replicas: &[PartitionAndReplica],
        target: ReplicaState,
    ) -> Result<()> {
        if replicas.is_empty() {
            return Ok(());
        }
        self.core.batch.new_batch()?;
        match self.do_handle_state_changes(replicas, target).await {
            Ok(()) => {
                self.core.send_batch();
                Ok(())
            }
            Err(e) => {
                self.core.batch.clear();
                Err(e)
            }
        }
    }

    fn set_state(&mut self, r: &PartitionAndReplica, from: ReplicaState, to: ReplicaState) {
        // TRACE, as Kafka's `logSuccessfulTransition` (a failover moves every replica of the
        // cluster: 300,000 lines at 100,000 partitions). RUST_LOG=state_change=trace shows them.
        trace!(
            target: "state_change",
            controller_epoch = self.core.ctx.epoch,
            topic = %r.tp.topic,
            partition = r.tp.partition,
            broker_id = r.replica,
            from_state = %from,
            to_state = %to,
            "replica state change"
        );
        if to == ReplicaState::NonExistent {
            self.core.ctx.replica_states.remove(r);
        } else {
            self.core.ctx.replica_states.insert(r.clone(), to);
        }
    }

    async fn do_handle_state_changes(
        &mut self,
        replicas: &[PartitionAndReplica],
        target: ReplicaState,
    ) -> Result<()> {
        let mut valid = Vec::new();
        for r in replicas {
            let current = self.core.ctx.replica_state(r);
            if target.valid_previous_states().contains(&current) {
                valid.push((r.clone(), current));
            } else {
                error!(
                    target: "state_change",
                    controller_epoch = self.core.ctx.epoch,
                    topic = %r.tp.topic,
                    partition = r.tp.partition,
                    broker_id = r.replica,
                    from_state = %current,
                    to_state = %target,
                    "invalid replica state change"
                );
            }
        }
        match target {
            ReplicaState::New => {
                for (r, from) in valid {
                    if let Some(l) = self.core.ctx.leadership.get(&r.tp).cloned() {
                        if l.leader_and_isr.leader == r.replica {
                            error!(
                                target: "state_change",
                                controller_epoch = self.core.ctx.epoch,
                                topic = %r.tp.topic,
                                partition = r.tp.partition,
                                broker_id = r.replica,
                                "replica is already the leader; cannot become NewReplica"
                            );
                            continue;
                        }
                        let a = self.core.assignment(&r.tp);
                        self.core.batch.add_leader_and_isr(
                            &self.core.ctx,
                            &[r.replica],
                            &r.tp,
                            &l,
                            &a,
                            true,
                        );
                    }
                    self.set_state(&r, from, ReplicaState::New);
                }
            }
            ReplicaState::Online => {
                for (r, from) in valid {
                    if from == ReplicaState::New {
                        let entry = self
                            .core
                            .ctx
                            .assignments
                            .entry(r.tp.topic.clone())
                            .or_default()
                            .entry(r.tp.partition)
                            .or_default();
                        if !entry.replicas.contains(&r.replica) {
                            entry.replicas.push(r.replica);
                        }
                    } else if let Some(l) = self.core.ctx.leadership.get(&r.tp).cloned() {
                        let a = self.core.assignment(&r.tp);
                        self.core.batch.add_leader_and_isr(
                            &self.core.ctx,
                            &[r.replica],
                            &r.tp,
                            &l,
                            &a,
                            false,
                        );
                    }
                    self.set_state(&r, from, ReplicaState::Online);
                }
            }
            ReplicaState::Offline => {
                for (r, _) in &valid {
                    self.core
                        .batch
                        .add_stop_replica(&self.core.ctx, &[r.replica], &r.tp, false);
                }
                // Group by broker: one ISR removal pass per broker, as Kafka does.
                let mut by_broker: BTreeMap<i32, Vec<(TopicPartition, ReplicaState)>> =
                    BTreeMap::new();
                for (r, from) in &valid {
                    by_broker
                        .entry(r.replica)
                        .or_default()
                        .push((r.tp.clone(), *from));
                }
                for (replica, parts) in by_broker {
                    let (with_leader, without): (Vec<_>, Vec<_>) = parts
                        .into_iter()
                        .partition(|(tp, _)| self.core.ctx.leadership.contains_key(tp));
                    let tps: Vec<TopicPartition> =
                        with_leader.iter().map(|(tp, _)| tp.clone()).collect();
                    let updated = self.remove_replicas_from_isr(replica, &tps).await?;
                    for (tp, from) in with_leader {
                        if let Some(state) = updated.get(&tp) {
                            if !self.core.ctx.is_topic_queued_for_deletion(&tp.topic) {
                                let a = self.core.assignment(&tp);
                                let recipients: Vec<i32> = a
                                    .replicas
                                    .iter()
                                    .copied()
                                    .filter(|b| *b != replica)
                                    .collect();
                                self.core.batch.add_leader_and_isr(
                                    &self.core.ctx,
                                    &recipients,
                                    &tp,
                                    state,
                                    &a,
                                    false,
                                );
                            }
                            let r = PartitionAndReplica { tp, replica };
                            self.set_state(&r, from, ReplicaState::Offline);
                        }
                    }
                    for (tp, from) in without {
                        let all: Vec<i32> = self
                            .core
                            .ctx
                            .live_or_shutting_down_broker_ids()
                            .into_iter()
                            .collect();
                        self.core
                            .batch
                            .add_update_metadata(&all, std::slice::from_ref(&tp));
                        let r = PartitionAndReplica { tp, replica };
                        self.set_state(&r, from, ReplicaState::Offline);
                    }
                }
            }
            ReplicaState::DeletionStarted => {
                for (r, from) in valid {
                    self.core
                        .batch
                        .add_stop_replica(&self.core.ctx, &[r.replica], &r.tp, true);
                    self.set_state(&r, from, ReplicaState::DeletionStarted);
                }
            }
            ReplicaState::DeletionSuccessful | ReplicaState::DeletionIneligible => {
                for (r, from) in valid {
                    self.set_state(&r, from, target);
                }
            }
            ReplicaState::NonExistent => {
                for (r, from) in valid {
                    if let Some(a) = self
                        .core
                        .ctx
                        .assignments
                        .get_mut(&r.tp.topic)
                        .and_then(|m| m.get_mut(&r.tp.partition))
                    {
                        a.remove_replica(r.replica);
                    }
                    self.set_state(&r, from, ReplicaState::NonExistent);
                }
            }
        }
        Ok(())
    }

    /// Removes `replica` from the ISR of `partitions` in ZooKeeper (Kafka's
    /// `removeReplicasFromIsr`): leader -1 if it led, an ISR of one left as is, epoch +1.
    /// Returns the new state of every partition that needs no further work (updated, or the
    /// replica was not in its ISR).
    async fn remove_replicas_from_isr(
        &mut self,
        replica: i32,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, LeaderIsrAndControllerEpoch>> {
        const MAX_ATTEMPTS: usize = 10;
        let mut done = BTreeMap::new();
        let mut remaining = partitions.to_vec();
        for _ in 0..MAX_ATTEMPTS {
            if remaining.is_empty() {
                break;
            }
            let stored = self.core.zk.get_partition_states(&remaining).await?;
            let mut updates = Vec::new();
            for tp in &remaining {
                let Some(current) = stored.get(tp) else {
                    continue;
                };
                if current.controller_epoch > self.core.ctx.epoch {
                    error!(
                        target: "state_change",
                        controller_epoch = self.core.ctx.epoch,
                        topic = %tp.topic,
                        partition = tp.partition,
                        "aborted ISR shrink: state written by a newer controller"
                    );
                    continue;
                }
                let l = &current.leader_and_isr;
                if !l.isr.contains(&replica) {
                    self.core.ctx.leadership.insert(tp.clone(), current.clone());
                    done.insert(tp.clone(), current.clone());
                    continue;
                }
                let new_leader = if l.leader == replica {
                    LeaderAndIsr::NO_LEADER
                } else {
                    l.leader
                };
                let new_isr = if l.isr.len() == 1 {
                    l.isr.clone()
                } else {
                    l.isr.iter().copied().filter(|b| *b != replica).collect()
                };
                updates.push((
                    tp.clone(),
                    LeaderIsrAndControllerEpoch {
                        leader_and_isr: l.new_leader_and_isr(new_leader, new_isr),
                        controller_epoch: self.core.ctx.epoch,
                    },
                ));
            }
            let written = self
                .core
                .zk
                .update_leader_and_isr(&updates, self.core.ctx.epoch_zk_version)
                .await?;
            remaining.clear();
            for (tp, state) in updates {
                match written.get(&tp) {
                    Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                        let why = IsrWrite::ReplicaRemoved { broker_id: replica };
                        let state = self.core.apply_isr_write(&tp, state, *v, why);
                        done.insert(tp, state);
                    }
                    Some(UpdateLeaderAndIsrResult::NeedsRetry) => remaining.push(tp),
                    Some(UpdateLeaderAndIsrResult::Failed(e)) => error!(
                        target: "state_change",
                        controller_epoch = self.core.ctx.epoch,
                        topic = %tp.topic,
                        partition = tp.partition,
                        error = %e,
                        "failed to remove replica from ISR"
                    ),
                    None => {}
                }
            }
        }
        Ok(done)
    }
}
