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

use std::collections::BTreeSet;

use kafka_protocol::messages::StopReplicaResponse;
use tracing::info;

use crate::context::PartitionAndReplica;
use crate::controller::KafkaController;
use crate::error::Result;
use crate::event::ControllerEvent;
use crate::partition_state::PartitionState;
use crate::replica_state::ReplicaState;
use crate::zk::data::DeleteTopicsZNode;

impl KafkaController {
    /// `/admin/delete_topics` children changed.
    pub(crate) async fn process_topic_deletion(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.arm_deletion_watch(w);
        let (existing, unknown): (Vec<String>, Vec<String>) = topics
            .into_iter()
            .partition(|t| self.ctx.all_topics.contains(t));
        if !unknown.is_empty() {
            info!(topics = ?unknown, "deleting markers of topics that do not exist");
            self.zk
                .delete_topic_deletion_markers(&unknown, self.ctx.epoch_zk_version)
                .await?;
        }
        if existing.is_empty() {
            return Ok(());
        }
        if !self.config.delete_topic_enable {
            info!(topics = ?existing, "delete.topic.enable is false; removing deletion markers");
            return Ok(self
                .zk
                .delete_topic_deletion_markers(&existing, self.ctx.epoch_zk_version)
                .await?);
        }
        let new: Vec<String> = existing
            .into_iter()
            .filter(|t| !self.ctx.topics_to_be_deleted.contains(t))
            .collect();
        for t in &new {
            // Kafka: a reassignment in flight halts the deletion until it completes.
            if self
                .ctx
                .partitions_being_reassigned
                .iter()
                .any(|tp| tp.topic == *t)
            {
                info!(topic = %t, "topic reassignment in progress; deletion waits for it");
                self.ctx.topics_ineligible_for_deletion.insert(t.clone());
            }
        }
        if !new.is_empty() {
            info!(controller_epoch = self.ctx.epoch, topics = ?new, "topic deletion requested");
            self.ctx.topics_to_be_deleted.extend(new);
        }
        self.resume_deletions().await
    }

    fn arm_deletion_watch(&mut self, w: crate::zk::backend::Watch) {
        self.arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
            Some(ControllerEvent::TopicDeletion)
        });
    }

    /// Kafka's `resumeDeletions`: completes, waits on, retries or starts each queued deletion.
    pub(crate) async fn resume_deletions(&mut self) -> Result<()> {
        let queued: Vec<String> = self.ctx.topics_to_be_deleted.iter().cloned().collect();
        let mut eligible = Vec::new();
        for topic in queued {
            let replicas = self.ctx.replicas_for_topic(&topic);
            let all_done = replicas
                .iter()
                .all(|r| self.ctx.replica_state(r) == ReplicaState::DeletionSuccessful);
            let in_progress = replicas
                .iter()
                .any(|r| self.ctx.replica_state(r) == ReplicaState::DeletionStarted);
            if all_done {
                self.complete_delete_topic(&topic).await?;
                continue;
            }
            if in_progress {
                info!(topic, "deletion in progress");
                continue;
            }
            if self.ctx.topics_ineligible_for_deletion.contains(&topic) {
                continue;
            }
            let ineligible: Vec<PartitionAndReplica> = replicas
                .iter()
                .filter(|r| self.ctx.replica_state(r) == ReplicaState::DeletionIneligible)
                .cloned()
                .collect();
            if !ineligible.is_empty() {
                // Kafka's retryDeletionForIneligibleReplicas.
                info!(
                    topic,
                    replicas = ineligible.len(),
                    "retrying deletion of replicas"
                );
                self.handle_replica_state_changes(&ineligible, ReplicaState::Offline)
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
            .filter(|t| !self.ctx.topics_with_deletion_started.contains(*t))
            .cloned()
            .collect();
        if !unseen.is_empty() {
            let partitions: Vec<_> = unseen
                .iter()
                .flat_map(|t| self.ctx.partitions_for_topic(t))
                .collect();
            self.handle_partition_state_changes(&partitions, PartitionState::Offline, None)
                .await?;
            self.handle_partition_state_changes(&partitions, PartitionState::NonExistent, None)
                .await?;
            self.ctx.topics_with_deletion_started.extend(unseen);
        }
        let all_partitions: Vec<_> = topics
            .iter()
            .flat_map(|t| self.ctx.partitions_for_topic(t))
            .collect();
        let live: Vec<i32> = self
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.send_update_metadata(&live, &all_partitions)?;
        for t in topics {
            let replicas = self.ctx.replicas_for_topic(t);
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
            .partition(|r| self.ctx.is_replica_online(r.replica));
        let to_delete: Vec<PartitionAndReplica> = alive
            .into_iter()
            .filter(|r| self.ctx.replica_state(r) != ReplicaState::DeletionSuccessful)
            .collect();
        if !dead.is_empty() {
            info!(
                topic,
                replicas = dead.len(),
                "replicas on dead brokers; topic ineligible for deletion until they return"
            );
            self.handle_replica_state_changes(&dead, ReplicaState::DeletionIneligible)
                .await?;
            self.ctx
                .topics_ineligible_for_deletion
                .insert(topic.to_string());
        }
        if !to_delete.is_empty() {
            self.handle_replica_state_changes(&to_delete, ReplicaState::Offline)
                .await?;
            self.handle_replica_state_changes(&to_delete, ReplicaState::DeletionStarted)
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
            .filter(|r| self.ctx.is_topic_queued_for_deletion(&r.tp.topic))
            .cloned()
            .collect();
        if failed.is_empty() {
            return Ok(());
        }
        let topics: BTreeSet<String> = failed.iter().map(|r| r.tp.topic.clone()).collect();
        info!(topics = ?topics, replicas = failed.len(), "replica deletion failed; will retry");
        self.ctx.topics_ineligible_for_deletion.extend(topics);
        self.handle_replica_state_changes(&failed, ReplicaState::DeletionIneligible)
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
            .filter(|t| self.ctx.is_topic_queued_for_deletion(t))
            .cloned()
            .collect();
        if queued.is_empty() {
            return Ok(());
        }
        for t in &queued {
            self.ctx.topics_ineligible_for_deletion.remove(t);
        }
        self.resume_deletions().await
    }

    /// StopReplica answered: replicas in DeletionStarted succeed or fail.
    pub(crate) async fn process_stop_replica_response(
        &mut self,
        broker_id: i32,
        response: &StopReplicaResponse,
    ) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started: Vec<PartitionAndReplica> = self
            .ctx
            .replica_states
            .iter()
            .filter(|(r, s)| r.replica == broker_id && **s == ReplicaState::DeletionStarted)
            .map(|(r, _)| r.clone())
            .collect();
        let mut succeeded = Vec::new();
        let mut failed = Vec::new();
        for r in started {
            let entry = response.partition_errors.iter().find(|p| {
                p.topic_name.0.as_str() == r.tp.topic && p.partition_index == r.tp.partition
            });
            match entry {
                _ if response.error_code != 0 => failed.push(r),
                Some(p) if p.error_code != 0 => failed.push(r),
                Some(_) => succeeded.push(r),
                // Not in this response (it answered a StopReplica without delete).
                None => {}
            }
        }
        if !failed.is_empty() {
            self.fail_replica_deletion(&failed).await?;
        }
        if !succeeded.is_empty() {
            self.handle_replica_state_changes(&succeeded, ReplicaState::DeletionSuccessful)
                .await?;
            self.resume_deletions().await?;
        }
        Ok(())
    }

    /// Kafka's `completeDeleteTopic`: replicas -> NonExistent, znodes deleted (fenced), topic
    /// forgotten.
    async fn complete_delete_topic(&mut self, topic: &str) -> Result<()> {
        let replicas = self.ctx.replicas_for_topic(topic);
        self.unarm_watch(&format!("topic:{topic}"));
        self.handle_replica_state_changes(&replicas, ReplicaState::NonExistent)
            .await?;
        self.zk
            .delete_topic_znodes(topic, self.ctx.epoch_zk_version)
            .await?;
        self.zk
            .delete_topic_deletion_markers(&[topic.to_string()], self.ctx.epoch_zk_version)
            .await?;
        self.ctx.remove_topic(topic);
        info!(
            controller_epoch = self.ctx.epoch,
            topic, "deletion of topic completed"
        );
        Ok(())
    }
}
