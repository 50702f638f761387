//! The states of the controller's two state machines and their transition tables (Kafka's
//! `PartitionState` and `ReplicaState` objects with their `validPreviousStates`).
//!
//! Kafka concept: the controller tracks one state per partition and one per replica, and only
//! moves them along the edges written here. The side effects of each edge (ZooKeeper writes,
//! requests to brokers) are in the machines: [`crate::partition_state::PartitionStateMachine`]
//! and [`crate::replica_state::ReplicaStateMachine`].
//!
//! Invariant: `valid_previous_states` is the whole table; a move from any other state is
//! invalid, logged and skipped by the machines. This module imports nothing of the crate, so
//! the context, the machines and the tests can all name the states without forming a circle.

use std::fmt;

/// The state of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionState {
    /// Created with an assignment but no leader yet.
    New,
    /// Has a live leader.
    Online,
    /// Its leader died; waiting for a new one.
    Offline,
    /// Never created, or deleted.
    NonExistent,
}

impl PartitionState {
    /// Kafka's `validPreviousStates`: the states this one may be entered from.
    pub fn valid_previous_states(self) -> &'static [PartitionState] {
        use PartitionState::*;
        match self {
            New => &[NonExistent],
            Online => &[New, Online, Offline],
            Offline => &[New, Online, Offline],
            NonExistent => &[Offline],
        }
    }
}

impl fmt::Display for PartitionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartitionState::New => "NewPartition",
            PartitionState::Online => "OnlinePartition",
            PartitionState::Offline => "OfflinePartition",
            PartitionState::NonExistent => "NonExistentPartition",
        })
    }
}

/// The state of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaState {
    /// Assigned, created during partition creation or reassignment; may only be a follower.
    New,
    /// Started and part of the assigned replicas; may lead or follow.
    Online,
    /// Its broker died (or it is being stopped).
    Offline,
    /// StopReplica(delete) sent during topic deletion.
    DeletionStarted,
    /// The broker confirmed the deletion.
    DeletionSuccessful,
    /// Deletion failed or cannot happen now (broker down); retried later.
    DeletionIneligible,
    /// Not assigned (or fully deleted).
    NonExistent,
}

impl ReplicaState {
    /// Kafka's `validPreviousStates`.
    pub fn valid_previous_states(self) -> &'static [ReplicaState] {
        use ReplicaState::*;
        match self {
            New => &[NonExistent],
            Online => &[New, Online, Offline, DeletionIneligible],
            Offline => &[New, Online, Offline, DeletionIneligible],
            DeletionStarted => &[Offline],
            DeletionSuccessful => &[DeletionStarted],
            DeletionIneligible => &[Offline, DeletionStarted],
            NonExistent => &[DeletionSuccessful],
        }
    }
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaState::New => "NewReplica",
            ReplicaState::Online => "OnlineReplica",
            ReplicaState::Offline => "OfflineReplica",
            ReplicaState::DeletionStarted => "ReplicaDeletionStarted",
            ReplicaState::DeletionSuccessful => "ReplicaDeletionSuccessful",
            ReplicaState::DeletionIneligible => "ReplicaDeletionIneligible",
            ReplicaState::NonExistent => "NonExistentReplica",
        })
    }
}

#[cfg(test)]
mod tests {
    mod partition {
        use crate::state::PartitionState::*;

        /// Kafka's table, restated: each target with exactly its legal previous states.
        #[test]
        fn partition_transition_table_matches_kafka() {
            assert_eq!(New.valid_previous_states(), &[NonExistent]);
            assert_eq!(Online.valid_previous_states(), &[New, Online, Offline]);
            assert_eq!(Offline.valid_previous_states(), &[New, Online, Offline]);
            assert_eq!(NonExistent.valid_previous_states(), &[Offline]);
            // Not allowed: straight from NonExistent to Online, or Online to NonExistent.
            assert!(!Online.valid_previous_states().contains(&NonExistent));
            assert!(!NonExistent.valid_previous_states().contains(&Online));
        }

        #[test]
        fn partition_states_print_kafka_names() {
            assert_eq!(Online.to_string(), "OnlinePartition");
            assert_eq!(NonExistent.to_string(), "NonExistentPartition");
        }
    }

    mod replica {
        use crate::state::ReplicaState::*;

        #[test]
        fn replica_transition_table_matches_kafka() {
            assert_eq!(New.valid_previous_states(), &[NonExistent]);
            assert_eq!(
                Online.valid_previous_states(),
                &[New, Online, Offline, DeletionIneligible]
            );
            assert_eq!(
                Offline.valid_previous_states(),
                &[New, Online, Offline, DeletionIneligible]
            );
            assert_eq!(DeletionStarted.valid_previous_states(), &[Offline]);
            assert_eq!(
                DeletionSuccessful.valid_previous_states(),
                &[DeletionStarted]
            );
            assert_eq!(
                DeletionIneligible.valid_previous_states(),
                &[Offline, DeletionStarted]
            );
            assert_eq!(NonExistent.valid_previous_states(), &[DeletionSuccessful]);
            assert_eq!(DeletionStarted.to_string(), "ReplicaDeletionStarted");
        }
    }
}
