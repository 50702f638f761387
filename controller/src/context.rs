//! The controller's in-memory view of the cluster (Kafka's `ControllerContext`).
//!
//! Kafka concept: after winning the election the controller reads ZooKeeper once and then keeps
//! everything it decides on in memory: live brokers and their epochs, topics and topic ids,
//! replica assignments, the leader and ISR of each partition, the state of every partition and
//! replica, and the topics queued for deletion.
//!
//! Invariant: no I/O here. Only the event loop owns the context (by value), so no lock is needed;
//! it is cleared on resignation and rebuilt from ZooKeeper on the next failover.
//!
//! Simplifications: no offline log directories.

use std::collections::{BTreeMap, BTreeSet};

use crate::state::{PartitionState, ReplicaState};
use crate::zk::data::{BrokerInfo, LeaderIsrAndControllerEpoch, TopicPartition};

/// A replica: a partition on one broker (Kafka's `PartitionAndReplica`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionAndReplica {
    pub tp: TopicPartition,
    pub replica: i32,
}

/// Replicas of one partition (Kafka's `ReplicaAssignment`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplicaAssignment {
    /// Full replica set RS (preferred replica first).
    pub replicas: Vec<i32>,
    /// AR: replicas being added by an in-flight reassignment (empty when none).
    pub adding_replicas: Vec<i32>,
    /// RR: replicas being removed by an in-flight reassignment (empty when none).
    pub removing_replicas: Vec<i32>,
}

impl ReplicaAssignment {
    /// A settled assignment (no reassignment in flight).
    pub fn new(replicas: Vec<i32>) -> Self {
        ReplicaAssignment {
            replicas,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    /// True while a reassignment is in flight (Kafka's `isBeingReassigned`).
    pub fn is_being_reassigned(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// ORS = RS - AR (Kafka's `originReplicas`).
    pub fn origin_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }

    /// TRS = RS - RR (Kafka's `targetReplicas`).
    pub fn target_replicas(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// Kafka's `reassignTo`: RS = distinct(TRS ++ ORS), AR = RS - ORS, RR = RS - TRS. Target
    /// replicas come first, so the target's head becomes the preferred replica.
    pub fn reassign_to(&self, target: &[i32]) -> ReplicaAssignment {
        let origin = self.origin_replicas();
        let mut full: Vec<i32> = Vec::new();
        for r in target.iter().chain(origin.iter()) {
            if !full.contains(r) {
                full.push(*r);
            }
        }
        ReplicaAssignment {
            adding_replicas: full
                .iter()
                .copied()
                .filter(|r| !origin.contains(r))
                .collect(),
            removing_replicas: full
                .iter()
                .copied()
                .filter(|r| !target.contains(r))
                .collect(),
            replicas: full,
        }
    }

    /// Kafka's `removeReplica`: drops a replica from RS, AR and RR.
    pub fn remove_replica(&mut self, replica: i32) {
        self.replicas.retain(|r| *r != replica);
        self.adding_replicas.retain(|r| *r != replica);
        self.removing_replicas.retain(|r| *r != replica);
    }
}

#[derive(Debug, Default)]
pub struct ControllerContext {
    /// Controller epoch won in the election; 0 when not active.
    pub epoch: i32,
    /// zkVersion of `/controller_epoch` after our win: the fencing token of every write.
    pub epoch_zk_version: i32,
    /// Registered brokers (live or shutting down), with their epochs (czxid).
    pub live_brokers: BTreeMap<i32, BrokerInfo>,
    /// Brokers in controlled shutdown: still registered but not "live" for elections.
    pub shutting_down_broker_ids: BTreeSet<i32>,
    /// Every topic the controller knows.
    pub all_topics: BTreeSet<String>,
    /// Topic ids (16 bytes), for LeaderAndIsr v5+ and UpdateMetadata v7+.
    pub topic_ids: BTreeMap<String, uuid::Uuid>,
    /// topic -> partition -> replicas.
    pub assignments: BTreeMap<String, BTreeMap<i32, ReplicaAssignment>>,
    /// Leader, ISR and epochs per partition, as last written to ZooKeeper.
    pub leadership: BTreeMap<TopicPartition, LeaderIsrAndControllerEpoch>,
    pub partition_states: BTreeMap<TopicPartition, PartitionState>,
    pub replica_states: BTreeMap<PartitionAndReplica, ReplicaState>,
    /// Topics with a deletion marker that the controller accepted.
    pub topics_to_be_deleted: BTreeSet<String>,
    /// Topics whose deletion started (partitions already moved to NonExistent).
    pub topics_with_deletion_started: BTreeSet<String>,
    /// Topics whose deletion waits (a replica's broker is down, or a StopReplica failed).
    pub topics_ineligible_for_deletion: BTreeSet<String>,
    /// Partitions with a reassignment in flight (Kafka's `partitionsBeingReassigned`); their
    /// assignment has non-empty adding or removing replicas, in memory and in ZooKeeper.
    pub partitions_being_reassigned: BTreeSet<TopicPartition>,
}

impl ControllerContext {
    /// Live broker ids, excluding brokers in controlled shutdown.
    pub fn live_broker_ids(&self) -> BTreeSet<i32> {
        self.live_brokers
            .keys()
            .filter(|id| !self.shutting_down_broker_ids.contains(id))
            .copied()
            .collect()
    }

    /// Live broker ids including those shutting down (they still get UpdateMetadata).
    pub fn live_or_shutting_down_broker_ids(&self) -> BTreeSet<i32> {
        self.live_brokers.keys().copied().collect()
    }

    pub fn is_live(&self, broker_id: i32) -> bool {
        self.live_brokers.contains_key(&broker_id)
            && !self.shutting_down_broker_ids.contains(&broker_id)
    }

    /// A replica is online iff its broker is live (no offline log dirs modelled).
    pub fn is_replica_online(&self, broker_id: i32) -> bool {
        self.is_live(broker_id)
    }

    pub fn replicas(&self, tp: &TopicPartition) -> &[i32] {
        self.assignments
            .get(&tp.topic)
            .and_then(|m| m.get(&tp.partition))
            .map(|a| a.replicas.as_slice())
            .unwrap_or(&[])
    }

    /// Online replicas of a partition, in assignment order.
    pub fn online_replicas(&self, tp: &TopicPartition) -> Vec<i32> {
        self.replicas(tp)
            .iter()
            .copied()
            .filter(|r| self.is_replica_online(*r))
            .collect()
    }

    pub fn all_partitions(&self) -> Vec<TopicPartition> {
        self.assignments
            .iter()
            .flat_map(|(t, m)| m.keys().map(|p| TopicPartition::new(t.clone(), *p)))
            .collect()
    }

    pub fn partitions_for_topic(&self, topic: &str) -> Vec<TopicPartition> {
        self.assignments
            .get(topic)
            .map(|m| m.keys().map(|p| TopicPartition::new(topic, *p)).collect())
            .unwrap_or_default()
    }

    /// Every replica of the given topic.
    pub fn replicas_for_topic(&self, topic: &str) -> Vec<PartitionAndReplica> {
        self.partitions_for_topic(topic)
            .into_iter()
            .flat_map(|tp| {
                self.replicas(&tp)
                    .iter()
                    .map(|r| PartitionAndReplica {
                        tp: tp.clone(),
                        replica: *r,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every replica hosted on one of `brokers`.
    pub fn replicas_on_brokers(&self, brokers: &BTreeSet<i32>) -> Vec<PartitionAndReplica> {
        self.all_partitions()
            .into_iter()
            .flat_map(|tp| {
                self.replicas(&tp)
                    .iter()
                    .filter(|r| brokers.contains(r))
                    .map(|r| PartitionAndReplica {
                        tp: tp.clone(),
                        replica: *r,
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn partition_state(&self, tp: &TopicPartition) -> PartitionState {
        self.partition_states
            .get(tp)
            .copied()
            .unwrap_or(PartitionState::NonExistent)
    }

    pub fn replica_state(&self, r: &PartitionAndReplica) -> ReplicaState {
        self.replica_states
            .get(r)
            .copied()
            .unwrap_or(ReplicaState::NonExistent)
    }

    /// Partitions in one of the given states.
    pub fn partitions_in_states(&self, states: &[PartitionState]) -> Vec<TopicPartition> {
        self.partition_states
            .iter()
            .filter(|(_, s)| states.contains(s))
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    pub fn is_topic_queued_for_deletion(&self, topic: &str) -> bool {
        self.topics_to_be_deleted.contains(topic)
    }

    /// Forgets a topic entirely (deletion completed).
    pub fn remove_topic(&mut self, topic: &str) {
        self.all_topics.remove(topic);
        self.topic_ids.remove(topic);
        self.assignments.remove(topic);
        self.leadership.retain(|tp, _| tp.topic != topic);
        self.partition_states.retain(|tp, _| tp.topic != topic);
        self.replica_states.retain(|r, _| r.tp.topic != topic);
        self.topics_to_be_deleted.remove(topic);
        self.topics_with_deletion_started.remove(topic);
        self.topics_ineligible_for_deletion.remove(topic);
        self.partitions_being_reassigned
            .retain(|tp| tp.topic != topic);
    }

    /// The full assignment (RS, AR, RR) of a partition; empty if unknown.
    pub fn partition_full_replica_assignment(&self, tp: &TopicPartition) -> ReplicaAssignment {
        self.assignments
            .get(&tp.topic)
            .and_then(|m| m.get(&tp.partition))
            .cloned()
            .unwrap_or_default()
    }

    /// Replaces a partition's full assignment (Kafka's `updatePartitionFullReplicaAssignment`).
    pub fn update_partition_full_replica_assignment(
        &mut self,
        tp: &TopicPartition,
        assignment: ReplicaAssignment,
    ) {
        self.assignments
            .entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition, assignment);
    }

    /// Partitions not led by their preferred replica, among topics not being deleted (Kafka's
    /// `preferredReplicaImbalanceCount`).
    pub fn preferred_replica_imbalance_count(&self) -> i64 {
        self.leadership
            .iter()
            .filter(|(tp, l)| {
                !self.is_topic_queued_for_deletion(&tp.topic)
                    && self.replicas(tp).first() != Some(&l.leader_and_isr.leader)
            })
            .count() as i64
    }

    pub fn topic_id(&self, topic: &str) -> uuid::Uuid {
        self.topic_ids
            .get(topic)
            .copied()
            .unwrap_or(uuid::Uuid::nil())
    }
}

#[cfg(test)]
mod tests {
    use super::ReplicaAssignment;

    // Kafka: ReplicaAssignmentTest / the example in KafkaController.onPartitionReassignment.
    #[test]
    fn reassign_to_puts_target_first_and_splits_adding_and_removing() {
        let a = ReplicaAssignment::new(vec![1, 2, 3]).reassign_to(&[4, 5, 6]);
        assert_eq!(a.replicas, vec![4, 5, 6, 1, 2, 3]);
        assert_eq!(a.adding_replicas, vec![4, 5, 6]);
        assert_eq!(a.removing_replicas, vec![1, 2, 3]);
        assert_eq!(a.origin_replicas(), vec![1, 2, 3]);
        assert_eq!(a.target_replicas(), vec![4, 5, 6]);
        // Overlapping target: [1,2,3] -> [3,4,2] is encoded as [3,4,2,1].
        let b = ReplicaAssignment::new(vec![1, 2, 3]).reassign_to(&[3, 4, 2]);
        assert_eq!(b.replicas, vec![3, 4, 2, 1]);
        assert_eq!(b.adding_replicas, vec![4]);
        assert_eq!(b.removing_replicas, vec![1]);
        // Cancelling (target = origin) settles back on the origin replicas.
        let c = b.reassign_to(&b.origin_replicas());
        assert_eq!(c.replicas, vec![3, 2, 1]);
        assert!(!c.is_being_reassigned());
    }
}
