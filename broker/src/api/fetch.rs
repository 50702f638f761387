//! Fetch: reading record batches from leaders, for consumers and for follower replicas.
//!
//! Kafka concept: a fetch names partitions and offsets; the leader returns whole batches from
//! each, as stored, up to `partition_max_bytes` per partition and `max_bytes` in all (but at
//! least one batch so a big batch is never stuck). Consumers read only up to the high watermark
//! (what every ISR member has); followers (`replica_id` >= 0) read up to the log end and, by
//! fetching, tell the leader how far they are, which moves the high watermark. If less than
//! `min_bytes` is available the answer waits up to `max_wait_ms` for more (long poll).
//! Kafka: `KafkaApis.handleFetchRequest`, `ReplicaManager.fetchMessages`, `DelayedFetch`.
//!
//! A follower's fetch can arrive before this broker has applied the LeaderAndIsr that makes it
//! the leader: the controller sends LeaderAndIsr to every replica at once, and a follower that
//! applies it first fetches at once. Kafka answers UNKNOWN_TOPIC_OR_PARTITION /
//! NOT_LEADER_OR_FOLLOWER / UNKNOWN_LEADER_EPOCH and the follower backs off
//! `replica.fetch.backoff.ms` (1 s), which holds every acks=all produce of the partition that
//! long (the follower is in the ISR). When the follower names a leader epoch newer than ours (or
//! a partition we do not host yet), we are the one behind: such a partition counts as "nothing
//! yet" in the long poll, and the fetch is read again when our replica state changes, so it is
//! answered as soon as the LeaderAndIsr lands; at `max_wait_ms` the error is answered as before.
//!
//! Fetch sessions (KIP-227): we never create one and answer session id 0, which Kafka's
//! clients read as "keep sending full fetches" (what Kafka does when its session cache is
//! full). An incremental fetch for a session id we never gave is FETCH_SESSION_ID_NOT_FOUND.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use crate::broker::Broker;
use crate::replica_manager::Partition;

/// A follower fetching at `requested_epoch` (its `current_leader_epoch`) from this broker,
/// which hosts the partition at `hosted_epoch` (None: not hosted): true when the follower has
/// been told of a newer leader epoch than we have, i.e. our LeaderAndIsr has not landed yet.
pub fn leader_state_behind(
    replica_id: i32,
    requested_epoch: i32,
    hosted_epoch: Option<i32>,
) -> bool {
    replica_id >= 0 && requested_epoch >= 0 && hosted_epoch.is_none_or(|e| e < requested_epoch)
}

/// One partition's read, before it becomes a response entry, and whether its error only
/// means that this broker has not applied the follower's leader epoch yet (see the module
/// doc).
#[allow(clippy::too_many_arguments)]
fn read_partition(
    broker: &Broker,
    topic: &str,
    p: &kafka_protocol::messages::fetch_request::FetchPartition,
    replica_id: i32,
    isolation_level: i8,
    budget: usize,
    first: bool,
    version: i16,
    hosted: Option<&Arc<Partition>>,
) -> (PartitionData, bool) {
    let mut d = PartitionData::default()
        .with_partition_index(p.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_records(Some(Bytes::new()));
    if isolation_level == 1 {
        d.aborted_transactions = Some(Vec::new());
    }
    let part = match hosted {
        Some(part) => part,
        None => {
            d.error_code = if broker.metadata.partition(topic, p.partition).is_some() {
                ResponseError::NotLeaderOrFollower.code()
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            if let Some(info) = broker.metadata.partition(topic, p.partition) {
                d.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(info.leader))
                    .with_leader_epoch(info.leader_epoch);
            }
            let behind = leader_state_behind(replica_id, p.current_leader_epoch, None);
            return (d, behind);
        }
    };
    let (leader, leader_epoch, hw) = {
        let st = part.state();
        (st.leader, st.leader_epoch, st.high_watermark)
    };
    let behind = leader_state_behind(replica_id, p.current_leader_epoch, Some(leader_epoch));
    if leader != broker.broker_id {
        d.error_code = ResponseError::NotLeaderOrFollower.code();
        d.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(leader_epoch);
        return (d, behind);
    }
    if p.current_leader_epoch >= 0 {
        if p.current_leader_epoch < leader_epoch {
            d.error_code = ResponseError::FencedLeaderEpoch.code();
            return (d, false);
        }
        if p.current_leader_epoch > leader_epoch {
            d.error_code = ResponseError::UnknownLeaderEpoch.code();
            return (d, behind);
        }
    }
    let is_follower = replica_id >= 0;
    let max_offset = if is_follower { None } else { Some(hw) };
    let read = {
        let log = part.log();
        if version >= 5 {
            d.log_start_offset = log.log_start_offset();
        }
        log.read(p.fetch_offset, budget, max_offset, first)
    };
    d.high_watermark = hw;
    d.last_stable_offset = hw;
    match read {
        Ok(info) => d.records = Some(info.records),
        Err(e) => d.error_code = e.kafka_error_code(),
    }
    if is_follower && d.error_code == 0 {
        crate::replication::on_follower_fetch(broker, part, replica_id, p.fetch_offset);
        d.high_watermark = part.state().high_watermark;
    }
    (d, false)
}

/// One read of every requested partition.
struct ReadAll {
    response: FetchResponse,
    /// Record bytes in the response.
    total: usize,
    /// A partition failed with an error to answer at once.
    any_error: bool,
}

/// Reads every requested partition once. A partition whose error only means that our leader
/// state is behind the follower's (see the module doc) does not count as an error to answer
/// at once.
fn read_all(broker: &Broker, req: &FetchRequest, replica_id: i32, version: i16) -> ReadAll {
    let mut total = 0usize;
    let mut any_error = false;
    let max_bytes = if req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut responses = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let topic = t.topic.to_string();
        let mut parts = Vec::with_capacity(t.partitions.len());
        broker.replicas.with_topic(&topic, |hosted| {
            for p in &t.partitions {
                let left = max_bytes.saturating_sub(total);
                let budget = (p.partition_max_bytes.max(0) as usize).min(left);
                let (d, behind) = read_partition(
                    broker,
                    &topic,
                    p,
                    replica_id,
                    req.isolation_level,
                    budget,
                    total == 0,
                    version,
                    hosted.and_then(|h| h.get(p.partition)),
                );
                any_error |= d.error_code != 0 && !behind;
                total += d.records.as_ref().map_or(0, |r| r.len());
                parts.push(d);
            }
        });
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(t.topic.clone())
                .with_topic_id(t.topic_id)
                .with_partitions(parts),
        );
    }
    ReadAll {
        response: FetchResponse::default().with_responses(responses),
        total,
        any_error,
    }
}

pub async fn handle(broker: &Broker, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let mut rx = broker.replicas.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    loop {
        let read = read_all(broker, &req, replica_id, version);
        if read.total >= req.min_bytes.max(0) as usize
            || read.any_error
            || tokio::time::Instant::now() >= deadline
        {
            return read.response;
        }
        // Nothing moved (no append, no high watermark change) until the deadline: the answer
        // just read is still the answer, so it is not read a second time.
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return read.response,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::leader_state_behind;

    #[test]
    fn a_follower_ahead_of_our_leader_state_is_held_not_failed() {
        // The follower was told of epoch 0 for a partition we do not host yet (topic creation).
        assert!(leader_state_behind(2, 0, None));
        // ... or of epoch 5 while we still have 4 (a leader change).
        assert!(leader_state_behind(2, 5, Some(4)));
    }

    #[test]
    fn real_errors_are_answered_at_once() {
        // Same epoch: our state is current, so NOT_LEADER_OR_FOLLOWER is the answer.
        assert!(!leader_state_behind(2, 4, Some(4)));
        // A stale follower (FENCED_LEADER_EPOCH).
        assert!(!leader_state_behind(2, 3, Some(4)));
        // Consumers (replica id -1) and fetches without a leader epoch (before v9).
        assert!(!leader_state_behind(-1, 0, None));
        assert!(!leader_state_behind(2, -1, None));
    }
}
