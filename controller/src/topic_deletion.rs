//! Topic deletion (Kafka's `TopicDeletionManager`).
//!
//! Kafka concept: DeleteTopics only creates `/admin/delete_topics/<t>`. The controller queues the
//! topic, moves its partitions Offline -> NonExistent, tells every broker to forget them
//! (UpdateMetadata with leader -2), and sends StopReplica(delete) to every replica. When every
//! replica reports success it deletes `/brokers/topics/<t>`, `/config/topics/<t>` and the marker.
//! A replica whose broker is down makes the topic *ineligible*: the deletion waits and resumes
//! when that broker comes back.
//!
//! Invariant: the topic znodes are deleted only after every replica's deletion succeeded, and
//! every ZooKeeper delete is fenced by the controller epoch.
//!
//! A reassignment in flight makes its topic ineligible; its completion resumes the deletion.
//!
//! [`TopicDeletionManager`] borrows the controller's [`ControllerCore`] for one call and moves
//! partitions and replicas through the two state machines. The controller's handlers
//! (`process_topic_deletion`, `process_stop_replica_response` in `controller/topics.rs`) read
//! the znodes and responses and call it.

use std::collections::BTreeSet;

use tracing::info;

use crate::context::PartitionAndReplica;
use crate::controller_core::ControllerCore;
use crate::error::Result;
use crate::partition_state::PartitionStateMachine;
use crate::replica_state::ReplicaStateMachine;
use crate::state::{PartitionState, ReplicaState};

/// Kafka's `TopicDeletionManager`: the deletion queue's progress, on the controller's core
/// (`TopicDeletionManager::new(&mut core)` for one call).
pub struct TopicDeletionManager<'a> {
    core: &'a mut ControllerCore,
}

impl<'a> TopicDeletionManager<'a> {
    pub fn new(core: &'a mut ControllerCore) -> Self {
        TopicDeletionManager { core }
    }

    fn partition_state_machine(&mut self) -> PartitionStateMachine<'_> {
        PartitionStateMachine::new(self.core)
    }

    fn replica_state_machine(&mut self) -> ReplicaStateMachine<'_> {
        ReplicaStateMachine::new(self.core)
    }

    /// Kafka's `enqueueTopicsForDeletion`: queues `topics` (a reassignment in flight makes a
    /// topic ineligible until it completes) and resumes deletions.
    pub(crate) async fn enqueue_topics_for_deletion(&mut self, topics: Vec<String>) -> Result<()> {
        let new: Vec<String> = topics
            .into_iter()
            .filter(|t| !self.core.ctx.topics_to_be_deleted.contains(t))
            .collect();
        for t in &new {
            // Kafka: a reassignment in flight halts the deletion until it completes.
            if self
                .core
                .ctx
                .partitions_being_reassigned
                .iter()
                .any(|tp| tp.topic == *t)
            {
                info!(topic = %t, "topic reassignment in progress; deletion waits for it");
                self.core
                    .ctx
                    .topics_ineligible_for_deletion
                    .insert(t.clone());
            }
        }
        if !new.is_empty() {
            info!(controller_epoch = self.core.ctx.epoch, topics = ?new, "topic deletion requested");
            self.core.ctx.topics_to_be_deleted.extend(new);
        }
        self.resume_deletions().await
    }

    /// Kafka's `completeReplicaDeletion`: the replicas' StopReplica(delete) succeeded.
    pub(crate) async fn complete_replica_deletion(
        &mut self,
        replicas: &[PartitionAndReplica],
    ) -> Result<()> {
        self.replica_state_machine()
            .handle_state_changes(replicas, ReplicaState::DeletionSuccessful)
            .await?;
        self.resume_deletions().await
    }

    /// Kafka's `resumeDeletions`: completes, waits on, retries or starts each queued deletion.
    pub(crate) async fn resume_deletions(&mut self) -> Result<()> {
        let queued: Vec<String> = self.core.ctx.topics_to_be_deleted.iter().cloned().collect();
        let mut eligible = Vec::new();
        for topic in queued {
            let replicas = self.core.ctx.replicas_for_topic(&topic);
            let all_done = replicas
                .iter()
                .all(|r| self.core.ctx.replica_state(r) == ReplicaState::DeletionSuccessful);
            let in_progress = replicas
                .iter()
                .any(|r| self.core.ctx.replica_state(r) == ReplicaState::DeletionStarted);
            if all_done {
                self.complete_delete_topic(&topic).await?;
                continue;
            }
            if in_progress {
                info!(topic, "deletion in progress");
                continue;
            }
            if self
                .core
                .ctx
                .topics_ineligible_for_deletion
                .contains(&topic)
            {
                continue;
            }
            let ineligible: Vec<PartitionAndReplica> = replicas
                .iter()
                .filter(|r| self.core.ctx.replica_state(r) == ReplicaState::DeletionIneligible)
                .cloned()
                .collect();
            if !ineligible.is_empty() {
                // Kafka's retryDeletionForIneligibleReplicas.
                info!(
                    topic,
                    replicas = ineligible.len(),
                    "retrying deletion of replicas"
                );
                self.replica_state_machine()
                    .handle_state_changes(&ineligible, ReplicaState::Offline)
                    .await?;
            }
            eligible.push(topic);
        }
        if !eligible.is_empty() {
            self.on_topic_deletion(&eligible).await?;
        }
        Ok(())
    }

    /// Kafka's `onTopicDeletion`: partitions Offline -> NonExistent the first time, UpdateMetadata
    /// (leader -2) to every broker, then replica deletion.
    async fn on_topic_deletion(&mut self, topics: &[String]) -> Result<()> {
        let unseen: Vec<String> = topics
            .iter()
            .filter(|t| !self.core.ctx.topics_with_deletion_started.contains(*t))
            .cloned()
            .collect();
        if !unseen.is_empty() {
            let partitions: Vec<_> = unseen
                .iter()
                .flat_map(|t| self.core.ctx.partitions_for_topic(t))
                .collect();
            self.partition_state_machine()
                .handle_state_changes(&partitions, PartitionState::Offline, None)
                .await?;
            self.partition_state_machine()
                .handle_state_changes(&partitions, PartitionState::NonExistent, None)
                .await?;
            self.core.ctx.topics_with_deletion_started.extend(unseen);
        }
        let all_partitions: Vec<_> = topics
            .iter()
            .flat_map(|t| self.core.ctx.partitions_for_topic(t))
            .collect();
        let live: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.core.send_update_metadata(&live, &all_partitions)?;
        for t in topics {
            let replicas = self.core.ctx.replicas_for_topic(t);
            self.start_replica_deletion(t, &replicas).await?;
        }
        Ok(())
    }

    /// Kafka's `onPartitionDeletion` / `startReplicaDeletion`.
    async fn start_replica_deletion(
        &mut self,
        topic: &str,
        replicas: &[PartitionAndReplica],
    ) -> Result<()> {
        let (alive, dead): (Vec<_>, Vec<_>) = replicas
            .iter()
            .cloned()
            .partition(|r| self.core.ctx.is_replica_online(r.replica));
        let to_delete: Vec<PartitionAndReplica> = alive
            .into_iter()
            .filter(|r| self.core.ctx.replica_state(r) != ReplicaState::DeletionSuccessful)
            .collect();
        if !dead.is_empty() {
            info!(
                topic,
                replicas = dead.len(),
                "replicas on dead brokers; topic ineligible for deletion until they return"
            );
            self.replica_state_machine()
                .handle_state_changes(&dead, ReplicaState::DeletionIneligible)
                .await?;
            self.core
                .ctx
                .topics_ineligible_for_deletion
                .insert(topic.to_string());
        }
        if !to_delete.is_empty() {
            self.replica_state_machine()
                .handle_state_changes(&to_delete, ReplicaState::Offline)
                .await?;
            self.replica_state_machine()
                .handle_state_changes(&to_delete, ReplicaState::DeletionStarted)
                .await?;
        }
        Ok(())
    }

    /// Kafka's `failReplicaDeletion`: DeletionIneligible, topic ineligible, resume.
    pub(crate) async fn fail_replica_deletion(
        &mut self,
        replicas: &[PartitionAndReplica],
    ) -> Result<()> {
        let failed: Vec<PartitionAndReplica> = replicas
            .iter()
            .filter(|r| self.core.ctx.is_topic_queued_for_deletion(&r.tp.topic))
            .cloned()
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let topics: BTreeSet<String> = failed.iter().map(|r| r.tp.topic.clone()).collect();
        info!(topics = ?topics, replicas = failed.len(), "replica deletion failed; will retry");
        self.core.ctx.topics_ineligible_for_deletion.extend(topics);
        self.replica_state_machine()
            .handle_state_changes(&failed, ReplicaState::DeletionIneligible)
            .await?;
        self.resume_deletions().await
    }

    /// Kafka's `resumeDeletionForTopics`: the topics become eligible again.
    pub(crate) async fn resume_deletion_for_topics(
        &mut self,
        topics: &BTreeSet<String>,
    ) -> Result<()> {
        let queued: Vec<String> = topics
            .iter()
            .filter(|t| self.core.ctx.is_topic_queued_for_deletion(t))
            .cloned()
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        for t in &queued {
            self.core.ctx.topics_ineligible_for_deletion.remove(t);
        }
        self.resume_deletions().await
    }

    /// Kafka's `completeDeleteTopic`: replicas -> NonExistent, znodes deleted (fenced), topic
    /// forgotten.
    async fn complete_delete_topic(&mut self, topic: &str) -> Result<()> {
        let replicas = self.core.ctx.replicas_for_topic(topic);
        self.core.unarm_watch(&format!("topic:{topic}"));
        self.replica_state_machine()
            .handle_state_changes(&replicas, ReplicaState::NonExistent)
            .await?;
        self.core
            .zk
            .delete_topic_znodes(topic, self.core.ctx.epoch_zk_version)
            .await?;
        self.core
            .zk
            .delete_topic_deletion_markers(&[topic.to_string()], self.core.ctx.epoch_zk_version)
            .await?;
        self.core.ctx.remove_topic(topic);
        info!(
            controller_epoch = self.core.ctx.epoch,
            topic, "deletion of topic completed"
        );
        Ok(())
    }
}
