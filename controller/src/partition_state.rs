//! The partition state machine (Kafka's `PartitionStateMachine` / `ZkPartitionStateMachine`).
//!
//! Kafka concept: every partition is in one of four states, and the controller moves it between
//! them with side effects on ZooKeeper and on brokers:
//!
//! | Target | Allowed from | Side effects, in order |
//! |---|---|---|
//! | `NewPartition` | NonExistent | none (the assignment is already in the context) |
//! | `OnlinePartition` | New | initialize: leader = first online replica in AR order, ISR = online replicas, leader epoch 0; create the `state` znode (fenced); LeaderAndIsr (IsNew) to the ISR; UpdateMetadata to all |
//! | `OnlinePartition` | Online, Offline | elect with a strategy (`election.rs`); conditional, fenced write of `state`; LeaderAndIsr to the strategy's recipients; UpdateMetadata to all |
//! | `OfflinePartition` | New, Online, Offline | mark only |
//! | `NonExistentPartition` | Offline | mark only |
//!
//! Invariant: an invalid move is logged (target `state_change`) and skipped, never applied; a
//! partition whose election finds no candidate stays where it was. One call of
//! `handle_state_changes` is one request batch, opened before and sent after it.
//!
//! The states and their table are in [`crate::state`]; [`PartitionStateMachine`] borrows the
//! controller's [`ControllerCore`] for one call.
//!
//! Simplifications: the topic-level `unclean.leader.election.enable` override is not read; the
//! broker-level setting in `ControllerConfig` applies.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{error, info};

use crate::controller_core::{ControllerCore, IsrWrite};
use crate::election;
use crate::error::Result;
use crate::state::PartitionState;
use crate::zk::client::UpdateLeaderAndIsrResult;
use crate::zk::data::{LeaderAndIsr, LeaderIsrAndControllerEpoch, TopicPartition};

/// Why a leader is being elected (Kafka's `PartitionLeaderElectionStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionStrategy {
    /// New or offline partitions; `allow_unclean` forces an unclean pick (admin UNCLEAN).
    Offline {
        allow_unclean: bool,
    },
    Reassign,
    Preferred,
    ControlledShutdown,
}

/// Outcome per partition of a state change to Online.
pub type ElectionResults = BTreeMap<TopicPartition, std::result::Result<LeaderAndIsr, String>>;

/// Kafka's `ZkPartitionStateMachine`: moves partitions between [`PartitionState`]s along the
/// table above, with the side effects listed there. Built on the fly around the controller's
/// core (`PartitionStateMachine::new(&mut core)`) for one call.
pub struct PartitionStateMachine<'a> {
    core: &'a mut ControllerCore,
}

impl<'a> PartitionStateMachine<'a> {
    pub fn new(core: &'a mut ControllerCore) -> Self {
        PartitionStateMachine { core }
    }

    /// Moves `partitions` to `target` as one request batch (Kafka's `handleStateChanges`).
    pub(crate) async fn handle_state_changes(
        &mut self,
        partitions: &[TopicPartition],
        target: PartitionState,
        strategy: Option<ElectionStrategy>,
    ) -> Result<ElectionResults> {
        if partitions.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.core.batch.new_batch()?;
        match self
            .do_handle_state_changes(partitions, target, strategy)
            .await
        {
            Ok(r) => {
                self.core.send_batch();
                Ok(r)
            }
            Err(e) => {
                self.core.batch.clear();
                Err(e)
            }
        }
    }

    async fn do_handle_state_changes(
        &mut self,
        partitions: &[TopicPartition],
        target: PartitionState,
        strategy: Option<ElectionStrategy>,
    ) -> Result<ElectionResults> {
        let mut valid = Vec::new();
        for tp in partitions {
            let current = self.core.ctx.partition_state(tp);
            if target.valid_previous_states().contains(&current) {
                valid.push((tp.clone(), current));
            } else {
                error!(
                    target: "state_change",
                    controller_epoch = self.core.ctx.epoch,
                    topic = %tp.topic,
                    partition = tp.partition,
                    from_state = %current,
                    to_state = %target,
                    "invalid partition state change"
                );
            }
        }
        let mut results = BTreeMap::new();
        match target {
            PartitionState::Online => {
                let (uninitialized, to_elect): (Vec<_>, Vec<_>) = valid
                    .into_iter()
                    .partition(|(_, s)| *s == PartitionState::New);
                let uninitialized: Vec<TopicPartition> =
                    uninitialized.into_iter().map(|(tp, _)| tp).collect();
                results.extend(self.initialize_leader_and_isr(&uninitialized).await?);
                if !to_elect.is_empty() {
                    let strategy = strategy.unwrap_or(ElectionStrategy::Offline {
                        allow_unclean: false,
                    });
                    results.extend(self.elect_leaders(&to_elect, strategy).await?);
                }
            }
            _ => {
                for (tp, from) in valid {
                    self.set_state(&tp, from, target);
                }
            }
        }
        Ok(results)
    }

    fn set_state(&mut self, tp: &TopicPartition, from: PartitionState, to: PartitionState) {
        let l = self.core.ctx.leadership.get(tp).map(|l| &l.leader_and_isr);
        info!(
            target: "state_change",
            controller_epoch = self.core.ctx.epoch,
            topic = %tp.topic,
            partition = tp.partition,
            from_state = %from,
            to_state = %to,
            leader = l.map(|l| l.leader),
            isr = ?l.map(|l| &l.isr),
            leader_epoch = l.map(|l| l.leader_epoch),
            "partition state change"
        );
        self.core.ctx.partition_states.insert(tp.clone(), to);
    }

    /// New -> Online: first leader and ISR, `state` znode created (fenced).
    async fn initialize_leader_and_isr(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<ElectionResults> {
        let mut results = BTreeMap::new();
        let mut to_create = Vec::new();
        for tp in partitions {
            let live = self.core.ctx.online_replicas(tp);
            let Some(&leader) = live.first() else {
                error!(
                    target: "state_change",
                    controller_epoch = self.core.ctx.epoch,
                    topic = %tp.topic,
                    partition = tp.partition,
                    replicas = ?self.core.ctx.replicas(tp),
                    "cannot initialize partition: no assigned replica is alive"
                );
                results.insert(tp.clone(), Err("no live replica".to_string()));
                continue;
            };
            let state = LeaderIsrAndControllerEpoch {
                leader_and_isr: LeaderAndIsr {
                    leader,
                    leader_epoch: 0,
                    isr: live,
                    leader_recovery_state: 0,
                    partition_epoch: 0,
                },
                controller_epoch: self.core.ctx.epoch,
            };
            to_create.push((tp.clone(), state));
        }
        if to_create.is_empty() {
            return Ok(results);
        }
        let created = self
            .core
            .zk
            .create_partition_states(&to_create, self.core.ctx.epoch_zk_version)
            .await?;
        for (tp, state) in to_create {
            match created.get(&tp) {
                Some(Ok(version)) => {
                    let state = self
                        .core
                        .apply_isr_write(&tp, state, *version, IsrWrite::Election);
                    let assignment = self.core.assignment(&tp);
                    let isr = state.leader_and_isr.isr.clone();
                    self.core.batch.add_leader_and_isr(
                        &self.core.ctx,
                        &isr,
                        &tp,
                        &state,
                        &assignment,
                        true,
                    );
                    self.set_state(&tp, PartitionState::New, PartitionState::Online);
                    results.insert(tp, Ok(state.leader_and_isr));
                }
                Some(Err(e)) => {
                    error!(
                        target: "state_change",
                        controller_epoch = self.core.ctx.epoch,
                        topic = %tp.topic,
                        partition = tp.partition,
                        error = %e,
                        "failed to create partition state znode"
                    );
                    results.insert(tp, Err(e.clone()));
                }
                None => {
                    results.insert(tp, Err("no result".into()));
                }
            }
        }
        Ok(results)
    }

    /// Online/Offline -> Online: elect with `strategy`, conditional fenced write, retried on
    /// BADVERSION (Kafka's `electLeaderForPartitions`).
    async fn elect_leaders(
        &mut self,
        partitions: &[(TopicPartition, PartitionState)],
        strategy: ElectionStrategy,
    ) -> Result<ElectionResults> {
        const MAX_ATTEMPTS: usize = 10;
        let mut results = BTreeMap::new();
        let from: BTreeMap<TopicPartition, PartitionState> = partitions.iter().cloned().collect();
        let mut remaining: Vec<TopicPartition> =
            partitions.iter().map(|(tp, _)| tp.clone()).collect();
        for _ in 0..MAX_ATTEMPTS {
            if remaining.is_empty() {
                break;
            }
            let read_started = std::time::Instant::now();
            let stored = self.core.zk.get_partition_states(&remaining).await?;
            let read_ms = read_started.elapsed().as_millis() as u64;
            let mut updates = Vec::new();
            let mut recipients_of = BTreeMap::new();
            for tp in &remaining {
                let Some(current) = stored.get(tp) else {
                    results.insert(tp.clone(), Err("partition state znode missing".into()));
                    continue;
                };
                if current.controller_epoch > self.core.ctx.epoch {
                    // Kafka: another controller already decided for this partition.
                    results.insert(
                        tp.clone(),
                        Err(format!(
                            "aborted: state written by controller epoch {} > ours {}",
                            current.controller_epoch, self.core.ctx.epoch
                        )),
                    );
                    continue;
                }
                match self.compute_election(tp, &current.leader_and_isr, strategy) {
                    Some((new, recipients)) => {
                        recipients_of.insert(tp.clone(), recipients);
                        updates.push((
                            tp.clone(),
                            LeaderIsrAndControllerEpoch {
                                leader_and_isr: new,
                                controller_epoch: self.core.ctx.epoch,
                            },
                        ));
                    }
                    None => {
                        error!(
                            target: "state_change",
                            controller_epoch = self.core.ctx.epoch,
                            topic = %tp.topic,
                            partition = tp.partition,
                            strategy = ?strategy,
                            replicas = ?self.core.ctx.replicas(tp),
                            isr = ?current.leader_and_isr.isr,
                            "no eligible leader; partition stays offline"
                        );
                        results.insert(tp.clone(), Err("no eligible leader".into()));
                    }
                }
            }
            let write_started = std::time::Instant::now();
            let written = self
                .core
                .zk
                .update_leader_and_isr(&updates, self.core.ctx.epoch_zk_version)
                .await?;
            info!(
                controller_epoch = self.core.ctx.epoch,
                strategy = ?strategy,
                partitions = updates.len(),
                zk_read_ms = read_ms,
                zk_write_ms = write_started.elapsed().as_millis() as u64,
                "leaders elected: partition states read from ZooKeeper, new ones written"
            );
            remaining.clear();
            for (tp, state) in updates {
                match written.get(&tp) {
                    Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                        let state = self
                            .core
                            .apply_isr_write(&tp, state, *v, IsrWrite::Election);
                        let assignment = self.core.assignment(&tp);
                        let recipients = recipients_of.remove(&tp).unwrap_or_default();
                        self.core.batch.add_leader_and_isr(
                            &self.core.ctx,
                            &recipients,
                            &tp,
                            &state,
                            &assignment,
                            false,
                        );
                        let prev = from.get(&tp).copied().unwrap_or(PartitionState::Offline);
                        self.set_state(&tp, prev, PartitionState::Online);
                        results.insert(tp, Ok(state.leader_and_isr));
                    }
                    Some(UpdateLeaderAndIsrResult::NeedsRetry) => remaining.push(tp),
                    Some(UpdateLeaderAndIsrResult::Failed(e)) => {
                        results.insert(tp, Err(e.clone()));
                    }
                    None => {
                        results.insert(tp, Err("no result".into()));
                    }
                }
            }
        }
        for tp in remaining {
            results.insert(tp, Err("gave up after repeated BADVERSION".into()));
        }
        Ok(results)
    }

    /// Applies an election rule: the new leader-and-ISR and who must hear about it.
    fn compute_election(
        &self,
        tp: &TopicPartition,
        current: &LeaderAndIsr,
        strategy: ElectionStrategy,
    ) -> Option<(LeaderAndIsr, Vec<i32>)> {
        let assignment = self.core.assignment(tp);
        let ar = &assignment.replicas;
        let live: BTreeSet<i32> = ar
            .iter()
            .copied()
            .filter(|r| self.core.ctx.is_replica_online(*r))
            .collect();
        let live_in_ar: Vec<i32> = ar.iter().copied().filter(|r| live.contains(r)).collect();
        let isr = &current.isr;
        match strategy {
            ElectionStrategy::Offline { allow_unclean } => {
                let unclean = allow_unclean || self.core.config.unclean_leader_election_enable;
                let leader = election::offline_partition_leader_election(ar, isr, &live, unclean)?;
                let (new_isr, recovery) = if isr.contains(&leader) {
                    (
                        isr.iter().copied().filter(|r| live.contains(r)).collect(),
                        0,
                    )
                } else {
                    // Unclean: the new leader is the whole ISR and recovers (KIP-704).
                    (vec![leader], 1)
                };
                let mut new = current.new_leader_and_isr(leader, new_isr);
                new.leader_recovery_state = recovery;
                Some((new, live_in_ar))
            }
            ElectionStrategy::Reassign => {
                let target: Vec<i32> = ar
                    .iter()
                    .copied()
                    .filter(|r| !assignment.removing_replicas.contains(r))
                    .collect();
                let leader = election::reassign_partition_leader_election(&target, isr, &live)?;
                let recipients = target
                    .iter()
                    .copied()
                    .filter(|r| live.contains(r))
                    .collect();
                Some((current.new_leader_and_isr(leader, isr.clone()), recipients))
            }
            ElectionStrategy::Preferred => {
                let leader = election::preferred_replica_partition_leader_election(ar, isr, &live)?;
                Some((current.new_leader_and_isr(leader, isr.clone()), live_in_ar))
            }
            ElectionStrategy::ControlledShutdown => {
                let live_or_shutting: BTreeSet<i32> =
                    self.core.ctx.live_or_shutting_down_broker_ids();
                let shutting = &self.core.ctx.shutting_down_broker_ids;
                let leader = election::controlled_shutdown_partition_leader_election(
                    ar,
                    isr,
                    &live_or_shutting,
                    shutting,
                )?;
                let new_isr = isr
                    .iter()
                    .copied()
                    .filter(|r| !shutting.contains(r))
                    .collect();
                let recipients = ar
                    .iter()
                    .copied()
                    .filter(|r| live_or_shutting.contains(r))
                    .collect();
                Some((current.new_leader_and_isr(leader, new_isr), recipients))
            }
        }
    }

    /// New and Offline partitions (of topics not being deleted) -> Online with the offline
    /// strategy (Kafka's `triggerOnlinePartitionStateChange`).
    pub(crate) async fn trigger_online_partition_state_change(&mut self) -> Result<()> {
        let partitions: Vec<TopicPartition> = self
            .core
            .ctx
            .partitions_in_states(&[PartitionState::New, PartitionState::Offline])
            .into_iter()
            .filter(|tp| !self.core.ctx.is_topic_queued_for_deletion(&tp.topic))
            .collect();
        self.handle_state_changes(
            &partitions,
            PartitionState::Online,
            Some(ElectionStrategy::Offline {
                allow_unclean: false,
            }),
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Arc;

    use super::PartitionStateMachine;
    use crate::admin::AdminZkClient;
    use crate::channel::{ControlRequest, SharedRecordingChannel};
    use crate::context::ReplicaAssignment;
    use crate::controller_core::ControllerCore;
    use crate::event::event_queue;
    use crate::state::PartitionState;
    use crate::zk::backend::MemoryZk;
    use crate::zk::client::{ElectionResult, KafkaZkClient};
    use crate::zk::data::TopicPartition;
    use crate::ControllerConfig;

    /// A core as the active controller of epoch 1 on an in-memory ZooKeeper, brokers 1 and 2
    /// live, topic `t` with partition 0 on replicas [2, 1] in the context as `state`.
    async fn core_with_partition(
        state: PartitionState,
    ) -> (ControllerCore, KafkaZkClient, SharedRecordingChannel) {
        let zk = KafkaZkClient::from_backend(Arc::new(MemoryZk::new()));
        zk.ensure_persistent_paths().await.unwrap();
        for id in [1, 2] {
            zk.register_broker(&crate::controller_tests::registration(id))
                .await
                .unwrap();
        }
        let assignment = BTreeMap::from([(0, vec![2, 1])]);
        AdminZkClient::new(zk.clone())
            .create_topic("t", &assignment, &BTreeMap::new())
            .await
            .unwrap();
        let ElectionResult::Won {
            epoch,
            epoch_zk_version,
        } = zk.register_controller_and_increment_epoch(1).await.unwrap()
        else {
            panic!("the only contender loses the election");
        };
        let (events, _) = event_queue();
        let sent = SharedRecordingChannel::default();
        let mut core = ControllerCore::new(
            zk.clone(),
            ControllerConfig::with_defaults(1),
            Box::new(sent.clone()),
            events,
        );
        core.ctx.epoch = epoch;
        core.ctx.epoch_zk_version = epoch_zk_version;
        for b in zk.get_all_brokers().await.unwrap() {
            core.add_broker(&b);
            core.ctx.live_brokers.insert(b.id(), b);
        }
        core.ctx.all_topics.insert("t".into());
        core.ctx
            .assignments
            .entry("t".into())
            .or_default()
            .insert(0, ReplicaAssignment::new(vec![2, 1]));
        core.ctx
            .partition_states
            .insert(TopicPartition::new("t", 0), state);
        (core, zk, sent)
    }

    // Kafka: ZkPartitionStateMachine.initializeLeaderAndIsrForPartitions
    #[tokio::test]
    async fn new_partition_goes_online_led_by_its_first_live_replica() {
        let (mut core, zk, sent) = core_with_partition(PartitionState::New).await;
        let tp = TopicPartition::new("t", 0);
        let results = PartitionStateMachine::new(&mut core)
            .handle_state_changes(std::slice::from_ref(&tp), PartitionState::Online, None)
            .await
            .unwrap();
        let elected = results[&tp].as_ref().expect("a leader");
        assert_eq!((elected.leader, &elected.isr), (2, &vec![2, 1]));
        assert_eq!(core.ctx.partition_state(&tp), PartitionState::Online);
        let stored = zk
            .get_partition_states(std::slice::from_ref(&tp))
            .await
            .unwrap();
        assert_eq!(stored[&tp].leader_and_isr.leader, 2);
        assert_eq!(
            core.ctx.leadership[&tp].leader_and_isr.partition_epoch,
            elected.partition_epoch
        );
        let told: BTreeSet<i32> = sent
            .take()
            .into_iter()
            .filter(|(_, r)| matches!(r, ControlRequest::LeaderAndIsr(_)))
            .map(|(b, _)| b)
            .collect();
        assert_eq!(told, BTreeSet::from([1, 2]));
    }

    // Kafka: ZkPartitionStateMachine.doHandleStateChanges logs and skips invalid transitions.
    #[tokio::test]
    async fn invalid_partition_move_is_skipped_and_sends_nothing() {
        let (mut core, _zk, sent) = core_with_partition(PartitionState::New).await;
        let tp = TopicPartition::new("t", 0);
        let results = PartitionStateMachine::new(&mut core)
            .handle_state_changes(std::slice::from_ref(&tp), PartitionState::NonExistent, None)
            .await
            .unwrap();
        assert!(results.is_empty());
        assert_eq!(core.ctx.partition_state(&tp), PartitionState::New);
        assert!(core.ctx.leadership.is_empty());
        assert!(sent.take().is_empty());
    }
}
