//! Leader election rules as pure functions (Kafka's `Election.scala` and
//! `PartitionLeaderElectionAlgorithms`).
//!
//! Kafka concept: when a partition needs a leader the controller scans the assigned replicas (AR)
//! in order, so the preferred replica (the head of AR) wins whenever it is eligible. Which
//! replicas are eligible depends on why the election happens.
//!
//! Invariant: a clean election only ever picks a member of the ISR, so no acknowledged write is
//! lost; an unclean one (explicitly allowed) may pick any live replica.
//!
//! These functions take slices in and return the chosen leader; no context, no I/O.

use std::collections::BTreeSet;

/// Offline (new/offline partition, broker failure): first replica in AR that is live and in ISR;
/// if none and `unclean` is allowed, the first live replica.
pub fn offline_partition_leader_election(
    assignment: &[i32],
    isr: &[i32],
    live_replicas: &BTreeSet<i32>,
    unclean: bool,
) -> Option<i32> {
    assignment
        .iter()
        .find(|r| live_replicas.contains(r) && isr.contains(r))
        .or_else(|| {
            if unclean {
                assignment.iter().find(|r| live_replicas.contains(r))
            } else {
                None
            }
        })
        .copied()
}

/// Reassignment: first *target* replica that is live and in ISR.
pub fn reassign_partition_leader_election(
    reassignment: &[i32],
    isr: &[i32],
    live_replicas: &BTreeSet<i32>,
) -> Option<i32> {
    reassignment
        .iter()
        .find(|r| live_replicas.contains(r) && isr.contains(r))
        .copied()
}

/// Preferred: the head of AR only, if it is live and in ISR.
pub fn preferred_replica_partition_leader_election(
    assignment: &[i32],
    isr: &[i32],
    live_replicas: &BTreeSet<i32>,
) -> Option<i32> {
    assignment
        .first()
        .filter(|r| live_replicas.contains(r) && isr.contains(r))
        .copied()
}

/// Controlled shutdown: first replica that is live-or-shutting-down, in ISR and not shutting down.
pub fn controlled_shutdown_partition_leader_election(
    assignment: &[i32],
    isr: &[i32],
    live_or_shutting_down: &BTreeSet<i32>,
    shutting_down: &BTreeSet<i32>,
) -> Option<i32> {
    assignment
        .iter()
        .find(|r| {
            live_or_shutting_down.contains(r) && isr.contains(r) && !shutting_down.contains(r)
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    // Kafka: PartitionLeaderElectionAlgorithmsTest.testOfflinePartitionLeaderElection
    #[test]
    fn offline_election_picks_first_live_isr_member_in_assignment_order() {
        assert_eq!(
            offline_partition_leader_election(&[2, 4], &[4], &set(&[2, 4]), false),
            Some(4)
        );
    }

    // Kafka: ...testOfflinePartitionLeaderElectionLastIsrOfflineUncleanLeaderElectionDisabled
    #[test]
    fn offline_election_without_live_isr_fails_when_unclean_disabled() {
        assert_eq!(
            offline_partition_leader_election(&[2, 4], &[2], &set(&[4]), false),
            None
        );
    }

    // Kafka: ...testOfflinePartitionLeaderElectionLastIsrOfflineUncleanLeaderElectionEnabled
    #[test]
    fn offline_election_unclean_picks_first_live_replica() {
        assert_eq!(
            offline_partition_leader_election(&[2, 4], &[2], &set(&[4]), true),
            Some(4)
        );
    }

    // Kafka: ...testReassignPartitionLeaderElection
    #[test]
    fn reassign_election_scans_target_replicas() {
        assert_eq!(
            reassign_partition_leader_election(&[2, 4], &[2, 4], &set(&[2, 4])),
            Some(2)
        );
        assert_eq!(
            reassign_partition_leader_election(&[2, 4], &[4], &set(&[2, 4])),
            Some(4)
        );
        assert_eq!(
            reassign_partition_leader_election(&[2, 4], &[2], &set(&[4])),
            None
        );
    }

    // Kafka: ...testPreferredReplicaPartitionLeaderElection{,PreferredReplicaInIsrNotLive}
    #[test]
    fn preferred_election_only_takes_the_head_of_the_assignment() {
        assert_eq!(
            preferred_replica_partition_leader_election(&[2, 4], &[2, 4], &set(&[2, 4])),
            Some(2)
        );
        assert_eq!(
            preferred_replica_partition_leader_election(&[2, 4], &[2, 4], &set(&[4])),
            None
        );
        assert_eq!(
            preferred_replica_partition_leader_election(&[2, 4], &[4], &set(&[2, 4])),
            None
        );
    }

    // Kafka: ...testControlledShutdownPartitionLeaderElection{,AllIsrSimultaneouslyShutdown}
    #[test]
    fn controlled_shutdown_election_skips_shutting_down_brokers() {
        assert_eq!(
            controlled_shutdown_partition_leader_election(
                &[0, 2, 4],
                &[0, 2, 4],
                &set(&[0, 2, 4]),
                &set(&[2])
            ),
            Some(0)
        );
        assert_eq!(
            controlled_shutdown_partition_leader_election(
                &[0, 2, 4],
                &[0, 2, 4],
                &set(&[0, 2, 4]),
                &set(&[0])
            ),
            Some(2)
        );
        assert_eq!(
            controlled_shutdown_partition_leader_election(
                &[0, 2, 4],
                &[2, 4],
                &set(&[0, 2, 4]),
                &set(&[2, 4])
            ),
            None
        );
    }
}
