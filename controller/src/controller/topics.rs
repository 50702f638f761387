//! Topics appearing, growing and being deleted (Kafka's `processTopicChange`,
//! `onNewPartitionCreation`, `processPartitionModifications`, `processTopicDeletion`,
//! `processTopicDeletionStopReplicaResponseReceived`).
//!
//! Kafka concept: admin clients only write znodes; these handlers turn the watches' firings
//! into state machine moves: New -> Online for new partitions, and the deletion queue of the
//! [`TopicDeletionManager`].
//!
//! Invariant: a topic being deleted gets no new partitions (its old assignment is written
//! back), and a deleted topic's watch is stopped before it is forgotten.

use std::collections::BTreeSet;

use kafka_protocol::messages::StopReplicaResponse;
use tracing::{info, warn};

use crate::context::PartitionAndReplica;
use crate::error::Result;
use crate::event::ControllerEvent;
use crate::partition_state::ElectionStrategy;
use crate::state::{PartitionState, ReplicaState};
use crate::zk::backend::WatchKind;
use crate::zk::data::{DeleteTopicsZNode, TopicPartition, Topics};

use super::failover::assignment_map;
use super::KafkaController;

impl KafkaController {
    // ---- topics ----------------------------------------------------------------------------

    /// `/brokers/topics` children changed: new topics get their partitions created.
    pub(super) async fn process_topic_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self.core.zk.get_children_and_watch(Topics::path()).await?;
        self.core.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let current: BTreeSet<String> = topics.into_iter().collect();
        let new: Vec<String> = current
            .iter()
            .filter(|t| !self.core.ctx.all_topics.contains(*t))
            .cloned()
            .collect();
        let deleted: Vec<String> = self
            .core
            .ctx
            .all_topics
            .iter()
            .filter(|t| !current.contains(*t))
            .cloned()
            .collect();
        for t in &deleted {
            self.core.unarm_watch(&format!("topic:{t}"));
            self.core.ctx.remove_topic(t);
        }
        let mut new_partitions = Vec::new();
        for t in &new {
            if self.load_topic(t).await? {
                new_partitions.extend(self.core.ctx.partitions_for_topic(t));
            }
        }
        if !new.is_empty() || !deleted.is_empty() {
            info!(
                controller_epoch = self.core.ctx.epoch,
                new_topics = ?new,
                deleted_topics = ?deleted,
                "topics changed"
            );
        }
        self.on_new_partition_creation(&new_partitions).await
    }

    /// Kafka's `onNewPartitionCreation`: partitions -> New, replicas -> New, partitions ->
    /// Online (leader = first live replica, state znode created, LeaderAndIsr IsNew to the ISR,
    /// UpdateMetadata to all), replicas -> Online.
    async fn on_new_partition_creation(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        info!(
            controller_epoch = self.core.ctx.epoch,
            partitions = partitions.len(),
            "new partition creation"
        );
        let replicas: Vec<PartitionAndReplica> = partitions
            .iter()
            .flat_map(|tp| {
                self.core
                    .ctx
                    .replicas(tp)
                    .iter()
                    .map(|r| PartitionAndReplica {
                        tp: tp.clone(),
                        replica: *r,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.partition_state_machine()
            .handle_state_changes(partitions, PartitionState::New, None)
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&replicas, ReplicaState::New)
            .await?;
        self.partition_state_machine()
            .handle_state_changes(
                partitions,
                PartitionState::Online,
                Some(ElectionStrategy::Offline {
                    allow_unclean: false,
                }),
            )
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&replicas, ReplicaState::Online)
            .await?;
        Ok(())
    }

    /// A topic znode changed: partitions that are new get created; a topic being deleted gets
    /// its old assignment written back (Kafka refuses to add partitions to it).
    pub(super) async fn process_partition_modifications(&mut self, topic: &str) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let Some((a, w)) = self.core.zk.get_topic_assignment_and_watch(topic).await? else {
            return Ok(());
        };
        let t = topic.to_string();
        self.core
            .arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
                WatchKind::DataChanged => {
                    Some(ControllerEvent::PartitionModifications { topic: t })
                }
                _ => None,
            });
        let known = self
            .core
            .ctx
            .assignments
            .get(topic)
            .cloned()
            .unwrap_or_default();
        let added: Vec<i32> = a
            .partitions
            .keys()
            .filter(|p| !known.contains_key(p))
            .copied()
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        if self.core.ctx.is_topic_queued_for_deletion(topic) {
            warn!(
                topic,
                "partitions added to a topic being deleted; restoring the old assignment"
            );
            let mut restored = a.clone();
            restored.partitions.retain(|p, _| known.contains_key(p));
            self.core
                .zk
                .set_topic_assignment(topic, &restored, Some(self.core.ctx.epoch_zk_version))
                .await?;
            return Ok(());
        }
        info!(topic, added_partitions = ?added, "partitions added");
        let map = assignment_map(&a);
        let entry = self
            .core
            .ctx
            .assignments
            .entry(topic.to_string())
            .or_default();
        for p in &added {
            if let Some(r) = map.get(p) {
                entry.insert(*p, r.clone());
            }
        }
        let tps: Vec<TopicPartition> = added
            .iter()
            .map(|p| TopicPartition::new(topic, *p))
            .collect();
        self.on_new_partition_creation(&tps).await
    }

    /// `/admin/delete_topics` children changed (Kafka's `processTopicDeletion`): re-arm the
    /// watch, drop markers of unknown topics (or all, with `delete.topic.enable` false), and
    /// queue the rest with the [`TopicDeletionManager`].
    pub(super) async fn process_topic_deletion(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self
            .core
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.core
            .arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
                Some(ControllerEvent::TopicDeletion)
            });
        let (existing, unknown): (Vec<String>, Vec<String>) = topics
            .into_iter()
            .partition(|t| self.core.ctx.all_topics.contains(t));
        if !unknown.is_empty() {
            info!(topics = ?unknown, "deleting markers of topics that do not exist");
            self.core
                .zk
                .delete_topic_deletion_markers(&unknown, self.core.ctx.epoch_zk_version)
                .await?;
        }
        if existing.is_empty() {
            return Ok(());
        }
        if !self.core.config.delete_topic_enable {
            info!(topics = ?existing, "delete.topic.enable is false; removing deletion markers");
            return Ok(self
                .core
                .zk
                .delete_topic_deletion_markers(&existing, self.core.ctx.epoch_zk_version)
                .await?);
        }
        self.topic_deletion_manager()
            .enqueue_topics_for_deletion(existing)
            .await
    }

    /// StopReplica answered (Kafka's `processTopicDeletionStopReplicaResponseReceived`):
    /// replicas in DeletionStarted succeed or fail.
    pub(super) async fn process_stop_replica_response(
        &mut self,
        broker_id: i32,
        response: &StopReplicaResponse,
    ) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started: Vec<PartitionAndReplica> = self
            .core
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
            self.topic_deletion_manager()
                .fail_replica_deletion(&failed)
                .await?;
        }
        if !succeeded.is_empty() {
            self.topic_deletion_manager()
                .complete_replica_deletion(&succeeded)
                .await?;
        }
        Ok(())
    }
}
