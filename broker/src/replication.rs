//! Replication between brokers: followers fetching from leaders, and the leader's view of its
//! followers (the ISR and the high watermark).
//!
//! Kafka concept: a follower is a consumer with a `replica_id`: it fetches from the leader and
//! appends the leader's batches unchanged. Each fetch tells the leader the follower's log end
//! offset; the leader advances the high watermark to the lowest log end offset in the ISR.
//! Kafka classes mirrored: `Partition.updateFollowerFetchState`, `ReplicaFetcherManager`.

use crate::broker::Broker;
use crate::replica_manager::{LeaderAndIsrOutcome, Partition};

/// A follower fetched `fetch_offset` (its log end offset): record it, maybe move the high
/// watermark.
pub fn on_follower_fetch(broker: &Broker, part: &Partition, replica_id: i32, fetch_offset: i64) {
    let leo = part.log_end_offset();
    {
        let mut st = part.state();
        if let Some(f) = st.followers.get_mut(&replica_id) {
            f.log_end_offset = fetch_offset;
            if fetch_offset >= leo {
                f.last_caught_up = std::time::Instant::now();
            }
        }
    }
    if part.maybe_advance_high_watermark(broker.broker_id) {
        broker.replicas.notify_progress();
    }
}

/// After LeaderAndIsr: start or stop fetchers for the partitions it changed.
pub fn on_leader_and_isr(_broker: &Broker, _outcomes: &[LeaderAndIsrOutcome]) {}

/// After StopReplica: stop fetching the stopped partitions.
pub fn on_stop_replica(_broker: &Broker, _stopped: &[(String, i32, i16)]) {}
