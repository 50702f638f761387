//! Partition reassignment (KIP-455; Kafka's `KafkaController.onPartitionReassignment` and the
//! handlers around it).
//!
//! Kafka concept: moving a partition to other brokers without losing availability. The
//! controller first *adds* the target replicas, waits until they have caught up (joined the
//! ISR), moves leadership into the target set if needed, and only then *removes* the old
//! replicas. Notation: ORS original replicas, TRS target replicas, RS = distinct(TRS ++ ORS) the
//! full set written to ZooKeeper meanwhile, AR = RS - ORS adding, RR = RS - TRS removing.
//!
//! - Phase U (always first): U1 write RS/AR/RR to `/brokers/topics/<t>` (fenced), U2 update
//!   memory, U3 stop replicas of a replaced reassignment that the new one does not keep.
//! - Phase A (TRS not yet in the ISR): A1 bump the leader epoch and send LeaderAndIsr with the
//!   new assignment to ORS (IsNew=false) and AR (IsNew=true); A2 AR -> NewReplica.
//! - Phase B (TRS within the ISR, checked after every accepted AlterPartition): B1 AR ->
//!   OnlineReplica; B2 RS = TRS in memory; B3 elect a leader from TRS if the leader is not in it
//!   (or is dead), else bump the leader epoch; B4 RR -> OfflineReplica (out of the ISR); B5 RR ->
//!   ReplicaDeletionStarted -> Successful -> NonExistent (StopReplica with delete); B6 write
//!   RS = TRS with empty AR/RR to ZooKeeper; B7 drop it from `/admin/reassign_partitions`; B8
//!   UpdateMetadata to every broker.
//!
//! Invariant: ZooKeeper is written before memory and the final RS = TRS last (it is the only
//! persistent copy of ORS), so a new controller resumes any reassignment from the
//! `adding_replicas`/`removing_replicas` fields of the topic znode. The latest request for a
//! partition (API or znode) wins; cancelling targets ORS again.
//!
//! Simplifications: no `log_dirs` in `/admin/reassign_partitions` (ignored) and no throttles;
//! the znode path validates the replica list like the API does (non-empty, no duplicates, no
//! negative ids; Kafka does not check, and an empty list would leave the partition with no
//! replica). Adding replicas that already have a state (a resumed reassignment) are not moved
//! to NewReplica again (Kafka tries and logs an invalid transition).

use std::collections::{BTreeMap, BTreeSet};

use tracing::{error, info, warn};

use crate::context::{PartitionAndReplica, ReplicaAssignment};
use crate::controller_core::{ControllerCore, IsrWrite};
use crate::error::{codes, Error, Result};
use crate::event::{ApiError, ControllerEvent};
use crate::partition_state::{ElectionStrategy, PartitionStateMachine};
use crate::replica_state::ReplicaStateMachine;
use crate::state::{PartitionState, ReplicaState};
use crate::topic_deletion::TopicDeletionManager;
use crate::zk::backend::WatchKind;
use crate::zk::client::UpdateLeaderAndIsrResult;
use crate::zk::data::{
    encode_uuid, LeaderIsrAndControllerEpoch, ReassignPartitionsZNode, TopicAssignment,
    TopicPartition,
};

/// Per-partition outcome of starting a reassignment.
pub(crate) type ReassignmentResults = BTreeMap<TopicPartition, std::result::Result<(), ApiError>>;

/// Partition reassignment on the controller's core (`ReassignmentManager::new(&mut core)` for
/// one call). Kafka keeps these steps in `KafkaController`; they are one concept, so one type
/// here. The controller's handlers check that it is active before calling in.
pub struct ReassignmentManager<'a> {
    core: &'a mut ControllerCore,
}

impl<'a> ReassignmentManager<'a> {
    pub fn new(core: &'a mut ControllerCore) -> Self {
        ReassignmentManager { core }
    }

    fn partition_state_machine(&mut self) -> PartitionStateMachine<'_> {
        PartitionStateMachine::new(self.core)
    }

    fn replica_state_machine(&mut self) -> ReplicaStateMachine<'_> {
        ReplicaStateMachine::new(self.core)
    }

    fn topic_deletion_manager(&mut self) -> TopicDeletionManager<'_> {
        TopicDeletionManager::new(self.core)
    }

    /// The body of Kafka's `processZkPartitionReassignment`: re-arms the existence watch on
    /// `/admin/reassign_partitions` and starts what it lists. Returns the partitions started.
    pub(crate) async fn start_zk_reassignments(&mut self) -> Result<BTreeSet<TopicPartition>> {
        let path = ReassignPartitionsZNode::path();
        let (exists, w) = self.core.zk.exists_and_watch(path).await?;
        // Kafka's PartitionReassignmentHandler reacts to creation only.
        self.core.arm_watch(path.into(), w, |kind| {
            (kind == WatchKind::Created).then_some(ControllerEvent::ZkPartitionReassignment)
        });
        if !exists {
            return Ok(BTreeSet::new());
        }
        let requested = match self.core.zk.get_partition_reassignment().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(BTreeSet::new()),
            Err(zk::Error::BadZnode { path, reason }) => {
                error!(path = %path, reason = %reason, "malformed reassignment request; deleting it");
                self.core
                    .zk
                    .delete_partition_reassignment(self.core.ctx.epoch_zk_version)
                    .await?;
                self.core.enqueue(ControllerEvent::ZkPartitionReassignment);
                return Ok(BTreeSet::new());
            }
            Err(e) => return Err(e.into()),
        };
        let mut results: ReassignmentResults = BTreeMap::new();
        let mut to_reassign = BTreeMap::new();
        for (tp, target) in requested {
            if let Some(err) = validate_replica_list(&target) {
                results.insert(tp, Err(err));
                continue;
            }
            match self.maybe_build_reassignment(&tp, Some(&target)) {
                Some(a) => {
                    to_reassign.insert(tp, a);
                }
                None => {
                    results.insert(tp, Err((codes::NO_REASSIGNMENT_IN_PROGRESS, None)));
                }
            }
        }
        results.extend(
            self.maybe_trigger_partition_reassignment(to_reassign)
                .await?,
        );
        let failed: BTreeSet<TopicPartition> = results
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(tp, _)| tp.clone())
            .collect();
        if !failed.is_empty() {
            warn!(failed = ?results.iter().filter_map(|(tp, r)| r.as_ref().err().map(|e| (tp.to_string(), e.0))).collect::<Vec<_>>(),
                "failed reassignment through /admin/reassign_partitions");
            self.maybe_remove_from_zk_reassignment(|tp, _| failed.contains(tp))
                .await?;
        }
        Ok(results
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(tp, _)| tp)
            .collect())
    }

    /// The body of Kafka's `processApiPartitionReassignment` (AlterPartitionReassignments).
    pub(crate) async fn start_api_reassignments(
        &mut self,
        reassignments: BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> Result<ReassignmentResults> {
        let mut results: ReassignmentResults = BTreeMap::new();
        let mut to_reassign = BTreeMap::new();
        for (tp, target) in reassignments {
            if let Some(t) = &target {
                if let Some(err) = self.validate_replicas(&tp, t) {
                    results.insert(tp, Err(err));
                    continue;
                }
            }
            match self.maybe_build_reassignment(&tp, target.as_deref()) {
                Some(a) => {
                    to_reassign.insert(tp, a);
                }
                None => {
                    results.insert(tp, Err((codes::NO_REASSIGNMENT_IN_PROGRESS, None)));
                }
            }
        }
        // The latest request wins: drop these partitions from a znode-submitted reassignment.
        let api: BTreeSet<TopicPartition> = to_reassign.keys().cloned().collect();
        self.maybe_remove_from_zk_reassignment(|tp, _| api.contains(tp))
            .await?;
        results.extend(
            self.maybe_trigger_partition_reassignment(to_reassign)
                .await?,
        );
        Ok(results)
    }

    /// The body of Kafka's `processListPartitionReassignments`.
    pub(crate) fn list_reassignments(
        &self,
        partitions: Option<Vec<TopicPartition>>,
    ) -> BTreeMap<TopicPartition, ReplicaAssignment> {
        let list: Vec<TopicPartition> = partitions.unwrap_or_else(|| {
            self.core
                .ctx
                .partitions_being_reassigned
                .iter()
                .cloned()
                .collect()
        });
        list.into_iter()
            .filter_map(|tp| {
                let a = self.core.ctx.partition_full_replica_assignment(&tp);
                a.is_being_reassigned().then_some((tp, a))
            })
            .collect()
    }

    /// Kafka's `validateReplicas` (API path): non-empty, distinct, non-negative, and every
    /// replica being added on a live broker.
    fn validate_replicas(&self, tp: &TopicPartition, target: &[i32]) -> Option<ApiError> {
        if let Some(err) = validate_replica_list(target) {
            return Some(err);
        }
        let adding = self
            .core
            .ctx
            .partition_full_replica_assignment(tp)
            .reassign_to(target)
            .adding_replicas;
        let live = self.core.ctx.live_broker_ids();
        if adding.iter().any(|r| !live.contains(r)) {
            return Some((
                codes::INVALID_REPLICA_ASSIGNMENT,
                Some(format!(
                    "Replica assignment has brokers that are not alive. Replica list: {adding:?}, live broker list: {live:?}"
                )),
            ));
        }
        None
    }

    /// Kafka's `maybeBuildReassignment`: the new full assignment, or `None` when cancelling a
    /// partition that is not being reassigned.
    fn maybe_build_reassignment(
        &self,
        tp: &TopicPartition,
        target: Option<&[i32]>,
    ) -> Option<ReplicaAssignment> {
        let current = self.core.ctx.partition_full_replica_assignment(tp);
        if current.is_being_reassigned() {
            let origin = current.origin_replicas();
            Some(current.reassign_to(target.unwrap_or(&origin)))
        } else {
            target.map(|t| current.reassign_to(t))
        }
    }

    /// Kafka's `maybeTriggerPartitionReassignment`: starts each reassignment unless the topic
    /// is being deleted or the partition is unknown.
    async fn maybe_trigger_partition_reassignment(
        &mut self,
        reassignments: BTreeMap<TopicPartition, ReplicaAssignment>,
    ) -> Result<ReassignmentResults> {
        let mut results = BTreeMap::new();
        for (tp, reassignment) in reassignments {
            let unknown = (
                codes::UNKNOWN_TOPIC_OR_PARTITION,
                Some("The partition does not exist.".to_string()),
            );
            let r = if self.core.ctx.is_topic_queued_for_deletion(&tp.topic) {
                info!(topic = %tp.topic, partition = tp.partition,
                    "skipping reassignment: the topic is being deleted");
                Err(unknown)
            } else if self.core.ctx.replicas(&tp).is_empty() {
                Err(unknown)
            } else {
                match self.on_partition_reassignment(&tp, reassignment).await {
                    Ok(()) => Ok(()),
                    Err(e @ Error::ControllerMoved) => return Err(e),
                    Err(e) => {
                        error!(topic = %tp.topic, partition = tp.partition, error = %e,
                            "error completing reassignment");
                        Err((codes::UNKNOWN_SERVER_ERROR, Some(e.to_string())))
                    }
                }
            };
            results.insert(tp, r);
        }
        Ok(results)
    }

    /// Kafka's `onPartitionReassignment`; see the module doc for phases U, A and B.
    pub(crate) async fn on_partition_reassignment(
        &mut self,
        tp: &TopicPartition,
        reassignment: ReplicaAssignment,
    ) -> Result<()> {
        // While a reassignment is in flight the topic cannot be deleted.
        if self.core.ctx.is_topic_queued_for_deletion(&tp.topic) {
            self.core
                .ctx
                .topics_ineligible_for_deletion
                .insert(tp.topic.clone());
        }
        self.update_current_reassignment(tp, &reassignment).await?;
        if !self.is_reassignment_complete(tp, &reassignment).await? {
            info!(target: "state_change", controller_epoch = self.core.ctx.epoch, topic = %tp.topic,
                partition = tp.partition, replicas = ?reassignment.replicas,
                adding_replicas = ?reassignment.adding_replicas,
                removing_replicas = ?reassignment.removing_replicas,
                "reassignment started: waiting for the target replicas to join the ISR");
            // A1.
            self.update_leader_epoch_and_send_request(tp, &reassignment)
                .await?;
            // A2.
            self.start_new_replicas_for_reassigned_partition(tp, &reassignment.adding_replicas)
                .await?;
            return Ok(());
        }
        // B1.
        let adding = replicas_of(tp, &reassignment.adding_replicas);
        self.replica_state_machine()
            .handle_state_changes(&adding, ReplicaState::Online)
            .await?;
        // B2.
        let completed = ReplicaAssignment::new(reassignment.target_replicas());
        self.core
            .ctx
            .update_partition_full_replica_assignment(tp, completed.clone());
        // B3.
        self.move_reassigned_partition_leader_if_required(tp, &completed)
            .await?;
        // B4, B5.
        self.stop_removed_replicas_of_reassigned_partition(tp, &reassignment.removing_replicas)
            .await?;
        // B6.
        self.update_replica_assignment_for_partition(tp, &completed)
            .await?;
        // B7.
        self.remove_partition_from_reassigning_partitions(tp, &completed)
            .await?;
        // B8.
        let all: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.core
            .send_update_metadata(&all, std::slice::from_ref(tp))?;
        let l = self
            .core
            .ctx
            .leadership
            .get(tp)
            .map(|l| l.leader_and_isr.clone());
        info!(target: "state_change", controller_epoch = self.core.ctx.epoch, topic = %tp.topic,
            partition = tp.partition, replicas = ?completed.replicas,
            leader = l.as_ref().map(|l| l.leader), isr = ?l.as_ref().map(|l| l.isr.clone()),
            leader_epoch = l.as_ref().map(|l| l.leader_epoch), "reassignment completed");
        self.topic_deletion_manager()
            .resume_deletion_for_topics(&BTreeSet::from([tp.topic.clone()]))
            .await
    }

    /// U1-U3 (Kafka's `updateCurrentReassignment`).
    async fn update_current_reassignment(
        &mut self,
        tp: &TopicPartition,
        reassignment: &ReplicaAssignment,
    ) -> Result<()> {
        let current = self.core.ctx.partition_full_replica_assignment(tp);
        if current != *reassignment {
            // U1: ZooKeeper first, so a new controller can resume.
            self.update_replica_assignment_for_partition(tp, reassignment)
                .await?;
            // U2.
            self.core
                .ctx
                .update_partition_full_replica_assignment(tp, reassignment.clone());
            // U3: replicas of a replaced reassignment that the new one drops.
            let unneeded: Vec<i32> = current
                .replicas
                .iter()
                .copied()
                .filter(|r| !reassignment.replicas.contains(r))
                .collect();
            if !unneeded.is_empty() {
                self.stop_removed_replicas_of_reassigned_partition(tp, &unneeded)
                    .await?;
            }
        }
        self.core.ctx.partitions_being_reassigned.insert(tp.clone());
        Ok(())
    }

    /// Kafka's `isReassignmentComplete`: TRS within the ISR read from ZooKeeper.
    async fn is_reassignment_complete(
        &mut self,
        tp: &TopicPartition,
        assignment: &ReplicaAssignment,
    ) -> Result<bool> {
        if !assignment.is_being_reassigned() {
            return Ok(true);
        }
        let states = self
            .core
            .zk
            .get_partition_states(std::slice::from_ref(tp))
            .await?;
        Ok(states.get(tp).is_some_and(|s| {
            assignment
                .target_replicas()
                .iter()
                .all(|r| s.leader_and_isr.isr.contains(r))
        }))
    }

    /// Kafka's `maybeCompleteReassignment`, run after an accepted ISR change.
    pub(crate) async fn maybe_complete_reassignment(&mut self, tp: &TopicPartition) -> Result<()> {
        if !self.core.ctx.partitions_being_reassigned.contains(tp) {
            return Ok(());
        }
        let reassignment = self.core.ctx.partition_full_replica_assignment(tp);
        if self.is_reassignment_complete(tp, &reassignment).await? {
            info!(topic = %tp.topic, partition = tp.partition,
                target_replicas = ?reassignment.target_replicas(),
                "target replicas have caught up with the leader; completing reassignment");
            self.on_partition_reassignment(tp, reassignment).await?;
        }
        Ok(())
    }

    /// Kafka's `maybeResumeReassignments`: re-runs `onPartitionReassignment` for the
    /// partitions being reassigned that `should_resume` selects (failover, broker start-up).
    pub(crate) async fn maybe_resume_reassignments(
        &mut self,
        should_resume: impl Fn(&TopicPartition, &ReplicaAssignment) -> bool,
    ) -> Result<()> {
        let partitions: Vec<TopicPartition> = self
            .core
            .ctx
            .partitions_being_reassigned
            .iter()
            .cloned()
            .collect();
        for tp in partitions {
            let a = self.core.ctx.partition_full_replica_assignment(&tp);
            if !should_resume(&tp, &a) {
                continue;
            }
            info!(topic = %tp.topic, partition = tp.partition, replicas = ?a.replicas,
                adding_replicas = ?a.adding_replicas, removing_replicas = ?a.removing_replicas,
                "resuming reassignment");
            match self.on_partition_reassignment(&tp, a).await {
                Ok(()) => {}
                Err(e @ Error::ControllerMoved) => return Err(e),
                Err(e) => error!(topic = %tp.topic, partition = tp.partition, error = %e,
                    "error resuming reassignment"),
            }
        }
        Ok(())
    }

    /// Failover step 9 (Kafka's `initializePartitionReassignments`): znode requests first
    /// (they supersede), then resume the API ones found in the topic znodes.
    pub(crate) async fn initialize_partition_reassignments(&mut self) -> Result<()> {
        let from_zk = self.start_zk_reassignments().await?;
        self.maybe_resume_reassignments(|tp, _| !from_zk.contains(tp))
            .await
    }

    /// B3 (Kafka's `moveReassignedPartitionLeaderIfRequired`).
    async fn move_reassigned_partition_leader_if_required(
        &mut self,
        tp: &TopicPartition,
        completed: &ReplicaAssignment,
    ) -> Result<()> {
        let leader = self
            .core
            .ctx
            .leadership
            .get(tp)
            .map_or(-1, |l| l.leader_and_isr.leader);
        if !completed.replicas.contains(&leader) || !self.core.ctx.is_replica_online(leader) {
            info!(topic = %tp.topic, partition = tp.partition, leader,
                replicas = ?completed.replicas,
                "leader of the reassigned partition is not a live target replica; re-electing");
            self.partition_state_machine()
                .handle_state_changes(
                    std::slice::from_ref(tp),
                    PartitionState::Online,
                    Some(ElectionStrategy::Reassign),
                )
                .await?;
            Ok(())
        } else {
            info!(topic = %tp.topic, partition = tp.partition, leader,
                replicas = ?completed.replicas,
                "leader of the reassigned partition is a live target replica; bumping its epoch");
            self.update_leader_epoch_and_send_request(tp, completed)
                .await
        }
    }

    /// B4, B5 and U3 (Kafka's `stopRemovedReplicasOfReassignedPartition`): Offline (out of the
    /// ISR, StopReplica), then DeletionStarted (StopReplica with delete), Successful,
    /// NonExistent. Kafka does not wait for the StopReplica answer here either.
    async fn stop_removed_replicas_of_reassigned_partition(
        &mut self,
        tp: &TopicPartition,
        removed: &[i32],
    ) -> Result<()> {
        let replicas = replicas_of(tp, removed);
        for state in [
            ReplicaState::Offline,
            ReplicaState::DeletionStarted,
            ReplicaState::DeletionSuccessful,
            ReplicaState::NonExistent,
        ] {
            self.replica_state_machine()
                .handle_state_changes(&replicas, state)
                .await?;
        }
        Ok(())
    }

    /// A2 (Kafka's `startNewReplicasForReassignedPartition`).
    async fn start_new_replicas_for_reassigned_partition(
        &mut self,
        tp: &TopicPartition,
        adding: &[i32],
    ) -> Result<()> {
        let new: Vec<PartitionAndReplica> = replicas_of(tp, adding)
            .into_iter()
            .filter(|r| self.core.ctx.replica_state(r) == ReplicaState::NonExistent)
            .collect();
        self.replica_state_machine()
            .handle_state_changes(&new, ReplicaState::New)
            .await
    }

    /// U1 and B6 (Kafka's `updateReplicaAssignmentForPartition`): writes the topic znode with
    /// this partition's assignment replaced, fenced by the controller epoch.
    async fn update_replica_assignment_for_partition(
        &mut self,
        tp: &TopicPartition,
        assignment: &ReplicaAssignment,
    ) -> Result<()> {
        let mut partitions = self
            .core
            .ctx
            .assignments
            .get(&tp.topic)
            .cloned()
            .unwrap_or_default();
        partitions.insert(tp.partition, assignment.clone());
        let mut znode = TopicAssignment {
            topic_id: self
                .core
                .ctx
                .topic_ids
                .get(&tp.topic)
                .map(|id| encode_uuid(*id)),
            ..TopicAssignment::default()
        };
        for (p, a) in partitions {
            znode.partitions.insert(p, a.replicas.clone());
            if !a.adding_replicas.is_empty() {
                znode.adding_replicas.insert(p, a.adding_replicas.clone());
            }
            if !a.removing_replicas.is_empty() {
                znode
                    .removing_replicas
                    .insert(p, a.removing_replicas.clone());
            }
        }
        self.core
            .zk
            .set_topic_assignment(&tp.topic, &znode, Some(self.core.ctx.epoch_zk_version))
            .await?;
        info!(topic = %tp.topic, partition = tp.partition, replicas = ?assignment.replicas,
            adding_replicas = ?assignment.adding_replicas,
            removing_replicas = ?assignment.removing_replicas,
            "updated the partition's assignment in ZooKeeper");
        Ok(())
    }

    /// A1 and B3 (Kafka's `updateLeaderEpochAndSendRequest`): +1 leader epoch (leader and ISR
    /// unchanged), LeaderAndIsr with `assignment` to ORS (IsNew=false) and AR (IsNew=true).
    async fn update_leader_epoch_and_send_request(
        &mut self,
        tp: &TopicPartition,
        assignment: &ReplicaAssignment,
    ) -> Result<()> {
        let Some(state) = self.update_leader_epoch(tp).await? else {
            error!(target: "state_change", controller_epoch = self.core.ctx.epoch, topic = %tp.topic,
                partition = tp.partition,
                "failed to send LeaderAndIsr with the new assignment of a partition being reassigned");
            return Ok(());
        };
        self.core.batch.new_batch()?;
        let origin = assignment.origin_replicas();
        self.core
            .batch
            .add_leader_and_isr(&self.core.ctx, &origin, tp, &state, assignment, false);
        self.core.batch.add_leader_and_isr(
            &self.core.ctx,
            &assignment.adding_replicas,
            tp,
            &state,
            assignment,
            true,
        );
        self.core.send_batch();
        let l = &state.leader_and_isr;
        info!(target: "state_change", controller_epoch = self.core.ctx.epoch, topic = %tp.topic,
            partition = tp.partition, leader = l.leader, isr = ?l.isr, leader_epoch = l.leader_epoch,
            replicas = ?assignment.replicas, "sent LeaderAndIsr with the new replica assignment");
        Ok(())
    }

    /// Kafka's `updateLeaderEpoch`: leader and ISR unchanged, leader epoch +1, conditional and
    /// fenced write (re-read and retried on BADVERSION). `None` if the partition has no state
    /// or a newer controller wrote it.
    async fn update_leader_epoch(
        &mut self,
        tp: &TopicPartition,
    ) -> Result<Option<LeaderIsrAndControllerEpoch>> {
        const MAX_ATTEMPTS: usize = 10;
        for _ in 0..MAX_ATTEMPTS {
            let states = self
                .core
                .zk
                .get_partition_states(std::slice::from_ref(tp))
                .await?;
            let Some(current) = states.get(tp) else {
                return Ok(None);
            };
            if current.controller_epoch > self.core.ctx.epoch {
                error!(target: "state_change", controller_epoch = self.core.ctx.epoch, topic = %tp.topic,
                    partition = tp.partition,
                    "leader and ISR written by a newer controller; aborting the leader epoch bump");
                return Ok(None);
            }
            let l = &current.leader_and_isr;
            let update = LeaderIsrAndControllerEpoch {
                leader_and_isr: l.new_leader_and_isr(l.leader, l.isr.clone()),
                controller_epoch: self.core.ctx.epoch,
            };
            let written = self
                .core
                .zk
                .update_leader_and_isr(
                    &[(tp.clone(), update.clone())],
                    self.core.ctx.epoch_zk_version,
                )
                .await?;
            match written.get(tp) {
                Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                    let state =
                        self.core
                            .apply_isr_write(tp, update, *v, IsrWrite::LeaderEpochBump);
                    return Ok(Some(state));
                }
                Some(UpdateLeaderAndIsrResult::NeedsRetry) => continue,
                Some(UpdateLeaderAndIsrResult::Failed(e)) => {
                    error!(topic = %tp.topic, partition = tp.partition, error = %e,
                        "could not bump the leader epoch");
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// B7 (Kafka's `removePartitionFromReassigningPartitions`).
    async fn remove_partition_from_reassigning_partitions(
        &mut self,
        tp: &TopicPartition,
        completed: &ReplicaAssignment,
    ) -> Result<()> {
        if self.core.ctx.partitions_being_reassigned.remove(tp) {
            let replicas = completed.replicas.clone();
            self.maybe_remove_from_zk_reassignment(|t, r| t == tp && *r == replicas)
                .await
        } else {
            warn!(topic = %tp.topic, partition = tp.partition,
                "completed a reassignment that was not recorded as in flight");
            Ok(())
        }
    }

    /// Kafka's `maybeRemoveFromZkReassignment`: rewrites `/admin/reassign_partitions` without
    /// the selected partitions, deleting it (and re-arming its watch) when nothing is left.
    async fn maybe_remove_from_zk_reassignment(
        &mut self,
        should_remove: impl Fn(&TopicPartition, &Vec<i32>) -> bool,
    ) -> Result<()> {
        let current = match self.core.zk.get_partition_reassignment().await {
            Ok(Some(c)) => c,
            Ok(None) | Err(zk::Error::BadZnode { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let (removing, remaining): (Vec<_>, Vec<_>) = current
            .into_iter()
            .partition(|(tp, r)| should_remove(tp, r));
        if removing.is_empty() {
            return Ok(());
        }
        info!(partitions = ?removing.iter().map(|(tp, _)| tp.to_string()).collect::<Vec<_>>(),
            "removing partitions from /admin/reassign_partitions");
        if remaining.is_empty() {
            self.core
                .zk
                .delete_partition_reassignment(self.core.ctx.epoch_zk_version)
                .await?;
            // Re-arms the watch so that the next request is seen.
            self.core.enqueue(ControllerEvent::ZkPartitionReassignment);
        } else {
            self.core
                .zk
                .set_or_create_partition_reassignment(&remaining, self.core.ctx.epoch_zk_version)
                .await?;
        }
        Ok(())
    }
}

fn replicas_of(tp: &TopicPartition, brokers: &[i32]) -> Vec<PartitionAndReplica> {
    brokers
        .iter()
        .map(|r| PartitionAndReplica {
            tp: tp.clone(),
            replica: *r,
        })
        .collect()
}

/// The checks on a target replica list that need no cluster state.
fn validate_replica_list(target: &[i32]) -> Option<ApiError> {
    let distinct: BTreeSet<i32> = target.iter().copied().collect();
    let reason = if target.is_empty() {
        "Empty replica list specified in partition reassignment.".to_string()
    } else if distinct.len() != target.len() {
        format!("Duplicate replica ids in partition reassignment replica list: {target:?}")
    } else if target.iter().any(|r| *r < 0) {
        format!("Invalid broker id in replica list: {target:?}")
    } else {
        return None;
    };
    Some((codes::INVALID_REPLICA_ASSIGNMENT, Some(reason)))
}
