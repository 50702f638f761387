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

/// One partition's read, before it becomes a response entry.
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
) -> PartitionData {
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
            return d;
        }
    };
    let (leader, leader_epoch, hw) = {
        let st = part.state();
        (st.leader, st.leader_epoch, st.high_watermark)
    };
    if leader != broker.broker_id {
        d.error_code = ResponseError::NotLeaderOrFollower.code();
        d.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(leader_epoch);
        return d;
    }
    if p.current_leader_epoch >= 0 {
        if p.current_leader_epoch < leader_epoch {
            d.error_code = ResponseError::FencedLeaderEpoch.code();
            return d;
        }
        if p.current_leader_epoch > leader_epoch {
            d.error_code = ResponseError::UnknownLeaderEpoch.code();
            return d;
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
    d
}

/// Reads every requested partition once; returns the response and the bytes it carries.
fn read_all(
    broker: &Broker,
    req: &FetchRequest,
    replica_id: i32,
    version: i16,
) -> (FetchResponse, usize, bool) {
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
                let d = read_partition(
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
                any_error |= d.error_code != 0;
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
    (
        FetchResponse::default().with_responses(responses),
        total,
        any_error,
    )
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
        let (resp, total, any_error) = read_all(broker, &req, replica_id, version);
        if total >= req.min_bytes.max(0) as usize
            || any_error
            || tokio::time::Instant::now() >= deadline
        {
            return resp;
        }
        // Nothing moved (no append, no high watermark change) until the deadline: the answer
        // just read is still the answer, so it is not read a second time.
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return resp,
        }
    }
}
