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
//! Simplifications: no offline log directories, no reassignment bookkeeping yet.

use std::collections::{BTreeMap, BTreeSet};

use crate::partition_state::PartitionState;
use crate::replica_state::ReplicaState;
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
    pub adding_replicas: Vec<i32>,
    pub removing_replicas: Vec<i32>,
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
    }

    pub fn topic_id(&self, topic: &str) -> uuid::Uuid {
        self.topic_ids
            .get(topic)
            .copied()
            .unwrap_or(uuid::Uuid::nil())
    }
}
