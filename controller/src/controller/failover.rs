//! Becoming the active controller (Kafka's `KafkaController.onControllerFailover`): watches
//! first, then the context read from ZooKeeper, then the state machines' startup and whatever
//! a previous controller left in flight.
//!
//! Invariant: every watch is registered before the znode it guards is read, so no change falls
//! between the read and the watch; UpdateMetadata goes to every broker before any LeaderAndIsr.
//!
//! Simplification: topic ids missing from topic znodes are back-filled here (Kafka does it at
//! IBP >= 2.8 as well), with a fenced write.

use std::collections::{BTreeMap, BTreeSet};

use tracing::{debug, info};

use crate::context::{PartitionAndReplica, ReplicaAssignment};
use crate::error::{Error, Result};
use crate::event::ControllerEvent;
use crate::state::{PartitionState, ReplicaState};
use crate::zk::backend::WatchKind;
use crate::zk::data::{
    decode_uuid, random_uuid_string, BrokerIdZNode, BrokerIds, DeleteTopicsZNode,
    IsrChangeNotificationZNode, TopicAssignment, TopicPartition, Topics,
};

use super::{KafkaController, FIRST_AUTO_REBALANCE_DELAY};

impl KafkaController {
    /// Becoming the active controller (Kafka's `onControllerFailover`), in order:
    /// 1. set up `/feature` (Enabled, no features);
    /// 2. register child watches on `/brokers/ids`, `/brokers/topics`, `/admin/delete_topics`
    ///    *before* reading them, so no change is missed;
    /// 3. delete pending ISR-change notifications;
    /// 4. build the context: brokers and epochs, topics, assignments (back-filling topic ids),
    ///    partition states; start one send queue per live broker;
    /// 5. read the pending topic deletions;
    /// 6. send UpdateMetadata (live brokers, no partitions) to every live broker, before any
    ///    LeaderAndIsr so brokers know the leaders' endpoints;
    /// 7. replica state machine startup; 8. partition state machine startup and elections for
    ///    New/Offline partitions; 9. resume reassignments (`/admin/reassign_partitions` first,
    ///    then those recorded in the topic znodes), topic deletion, a pending
    ///    `/admin/preferred_replica_election`, and schedule the first auto rebalance check.
    pub(super) async fn on_controller_failover(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        // 1.
        self.core.zk.ensure_feature_znode().await?;
        // 2. (watches armed by the reads below, which re-arm on every read)
        let (broker_ids, w) = self
            .core
            .zk
            .get_children_and_watch(BrokerIds::path())
            .await?;
        self.core.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let (topics, w) = self.core.zk.get_children_and_watch(Topics::path()).await?;
        self.core.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let (deletions, w) = self
            .core
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.core
            .arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
                Some(ControllerEvent::TopicDeletion)
            });
        // 3.
        self.core
            .zk
            .delete_children(
                IsrChangeNotificationZNode::path(),
                self.core.ctx.epoch_zk_version,
            )
            .await?;
        // 4.
        let registrations_read = started.elapsed();
        let brokers = self.core.zk.get_all_brokers().await?;
        debug!(
            registered = broker_ids.len(),
            read = brokers.len(),
            "read brokers"
        );
        for b in &brokers {
            self.core.ctx.live_brokers.insert(b.id(), b.clone());
            self.core.add_broker(b);
        }
        let ids: Vec<i32> = brokers.iter().map(|b| b.id()).collect();
        for id in ids {
            self.watch_broker(id).await?;
        }
        // Every topic's assignment read at once (Kafka's `getReplicaAssignmentForTopics`
        // pipelines its getData requests), then applied one after the other.
        let reads = {
            let zk = &self.core.zk;
            futures::future::join_all(topics.iter().map(|t| zk.get_topic_assignment_and_watch(t)))
                .await
        };
        for (t, read) in topics.iter().zip(reads) {
            self.apply_topic_assignment(t, read?).await?;
        }
        let assignments_read = started.elapsed();
        let partitions = self.core.ctx.all_partitions();
        let states = self.core.zk.get_partition_states(&partitions).await?;
        let states_read = started.elapsed();
        self.core.ctx.leadership.extend(states);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        info!(
            controller_epoch = self.core.ctx.epoch,
            partitions = partitions.len(),
            elapsed_ms = ms(started.elapsed()),
            watches_and_cleanup_ms = ms(registrations_read),
            brokers_and_assignments_ms = ms(assignments_read - registrations_read),
            partition_states_ms = ms(states_read - assignments_read),
            "controller context loaded"
        );
        // 5.
        let existing: BTreeSet<String> = self.core.ctx.all_topics.clone();
        let (queued, unknown): (Vec<String>, Vec<String>) =
            deletions.into_iter().partition(|t| existing.contains(t));
        if !unknown.is_empty() {
            self.core
                .zk
                .delete_topic_deletion_markers(&unknown, self.core.ctx.epoch_zk_version)
                .await?;
        }
        if !self.core.config.delete_topic_enable {
            self.core
                .zk
                .delete_topic_deletion_markers(&queued, self.core.ctx.epoch_zk_version)
                .await?;
        } else {
            for t in queued {
                // Replicas on dead brokers, or a reassignment in flight, make a topic
                // ineligible until they return or it completes.
                let dead = self
                    .core
                    .ctx
                    .replicas_for_topic(&t)
                    .iter()
                    .any(|r| !self.core.ctx.is_replica_online(r.replica));
                let reassigning = self
                    .core
                    .ctx
                    .partitions_being_reassigned
                    .iter()
                    .any(|tp| tp.topic == t);
                if dead || reassigning {
                    self.core
                        .ctx
                        .topics_ineligible_for_deletion
                        .insert(t.clone());
                }
                self.core.ctx.topics_to_be_deleted.insert(t);
            }
        }
        // 6.
        let live: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.core.send_update_metadata(&live, &[])?;
        // 7. Replica state machine startup (Kafka's `ReplicaStateMachine.startup`).
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for tp in self.core.ctx.all_partitions() {
            for r in self.core.ctx.replicas(&tp).to_vec() {
                let pr = PartitionAndReplica {
                    tp: tp.clone(),
                    replica: r,
                };
                if self.core.ctx.is_replica_online(r) {
                    self.core
                        .ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::Online);
                    online.push(pr);
                } else {
                    self.core
                        .ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::DeletionIneligible);
                    offline.push(pr);
                }
            }
        }
        self.replica_state_machine()
            .handle_state_changes(&online, ReplicaState::Online)
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&offline, ReplicaState::Offline)
            .await?;
        // 8. Partition state machine startup (Kafka's `PartitionStateMachine.startup`).
        for tp in self.core.ctx.all_partitions() {
            let state = match self.core.ctx.leadership.get(&tp) {
                None => PartitionState::New,
                Some(l) if self.core.ctx.is_replica_online(l.leader_and_isr.leader) => {
                    PartitionState::Online
                }
                Some(_) => PartitionState::Offline,
            };
            self.core.ctx.partition_states.insert(tp, state);
        }
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        // 9.
        self.reassignment_manager()
            .initialize_partition_reassignments()
            .await?;
        self.topic_deletion_manager().resume_deletions().await?;
        self.resume_pending_preferred_replica_elections().await?;
        if self.core.config.auto_leader_rebalance_enable {
            self.schedule_auto_leader_rebalance_task(FIRST_AUTO_REBALANCE_DELAY);
        }
        info!(
            controller_epoch = self.core.ctx.epoch,
            live_brokers = ?self.core.ctx.live_broker_ids(),
            topics = self.core.ctx.all_topics.len(),
            partitions = self.core.ctx.partition_states.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controller failover complete"
        );
        Ok(())
    }

    /// Reads one topic's assignment (with a data watch) into the context, back-filling a
    /// missing topic id (fenced write), as Kafka does at IBP >= 2.8.
    pub(super) async fn load_topic(&mut self, topic: &str) -> Result<bool> {
        let read = self.core.zk.get_topic_assignment_and_watch(topic).await?;
        self.apply_topic_assignment(topic, read).await
    }

    /// The second half of [`Self::load_topic`], for an assignment already read.
    async fn apply_topic_assignment(
        &mut self,
        topic: &str,
        read: Option<(TopicAssignment, crate::zk::backend::Watch)>,
    ) -> Result<bool> {
        let Some((mut a, w)) = read else {
            return Ok(false);
        };
        let t = topic.to_string();
        self.core
            .arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
                WatchKind::DataChanged => {
                    Some(ControllerEvent::PartitionModifications { topic: t })
                }
                _ => None,
            });
        let id = match a.topic_id.as_deref().and_then(decode_uuid) {
            Some(id) => id,
            None => {
                let s = random_uuid_string();
                a.topic_id = Some(s.clone());
                self.core
                    .zk
                    .set_topic_assignment(topic, &a, Some(self.core.ctx.epoch_zk_version))
                    .await?;
                info!(topic, topic_id = %s, "back-filled topic id");
                decode_uuid(&s).unwrap_or_default()
            }
        };
        self.core.ctx.all_topics.insert(topic.to_string());
        self.core.ctx.topic_ids.insert(topic.to_string(), id);
        let map = assignment_map(&a);
        for (p, r) in &map {
            if r.is_being_reassigned() {
                self.core
                    .ctx
                    .partitions_being_reassigned
                    .insert(TopicPartition::new(topic, *p));
            }
        }
        self.core.ctx.assignments.insert(topic.to_string(), map);
        Ok(true)
    }

    pub(super) async fn watch_broker(&mut self, broker_id: i32) -> Result<()> {
        let path = BrokerIdZNode::path(broker_id);
        match self
            .core
            .zk
            .backend()
            .get_data_and_watch(path.clone())
            .await
        {
            Ok((_, _, w)) => {
                self.core.arm_watch(path, w, move |kind| match kind {
                    WatchKind::DataChanged => {
                        Some(ControllerEvent::BrokerModifications { broker_id })
                    }
                    _ => None,
                });
                Ok(())
            }
            Err(zookeeper_client::Error::NoNode) => Ok(()),
            Err(e) => Err(Error::zk(path, e)),
        }
    }
}

/// Topic znode content -> the context's per-partition assignment.
pub(super) fn assignment_map(a: &TopicAssignment) -> BTreeMap<i32, ReplicaAssignment> {
    a.partitions
        .iter()
        .map(|(p, r)| {
            (
                *p,
                ReplicaAssignment {
                    replicas: r.clone(),
                    adding_replicas: a.adding_replicas.get(p).cloned().unwrap_or_default(),
                    removing_replicas: a.removing_replicas.get(p).cloned().unwrap_or_default(),
                },
            )
        })
        .collect()
}
