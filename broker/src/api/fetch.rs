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
//! Fetch sessions (KIP-227, `crate::fetch_session`): from v7 a full fetch may open a session,
//! and an incremental one reads every partition of its session but answers only those that
//! changed. The session is settled (what each fetcher was told) only when the answer is made.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::ErrorCode;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::debug;

use crate::api::context::KafkaApis;
use crate::fetch_session::{
    params_of, session_lock, Answered, CachedPartition, FetchContext, PartitionParams,
};
use crate::partition::{FollowerFetchOutcome, Partition};
use crate::replica_manager::TopicPartitions;

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
    broker: &KafkaApis,
    topic: &str,
    partition: i32,
    want: &PartitionParams,
    replica_id: i32,
    isolation_level: i8,
    budget: usize,
    first: bool,
    version: i16,
    hosted: Option<&Arc<Partition>>,
) -> (PartitionData, bool) {
    let mut d = PartitionData::default()
        .with_partition_index(partition)
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
            let known = broker.metadata.partition(topic, partition);
            d.error_code = if known.is_some() {
                ErrorCode::NOT_LEADER_OR_FOLLOWER.code()
            } else {
                ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
            };
            if let Some(info) = known {
                d.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(info.leader))
                    .with_leader_epoch(info.leader_epoch);
            }
            let behind = leader_state_behind(replica_id, want.current_leader_epoch, None);
            return (d, behind);
        }
    };
    if replica_id >= 0 {
        return read_for_follower(broker, part, want, replica_id, budget, first, version, d);
    }
    let (leader, leader_epoch, hw) = {
        let st = part.state();
        (st.leader, st.leader_epoch, st.high_watermark)
    };
    if let Some(code) = leader_error(broker, want, leader, leader_epoch, &mut d) {
        d.error_code = code;
        return (d, false);
    }
    let read = {
        let log = part.log();
        if version >= 5 {
            d.log_start_offset = log.log_start_offset();
        }
        log.read(want.fetch_offset, budget, Some(hw), first)
    };
    d.high_watermark = hw;
    d.last_stable_offset = hw;
    match read {
        Ok(info) => d.records = Some(info.records),
        Err(e) => d.error_code = e.kafka_error_code(),
    }
    (d, false)
}

/// The error for a fetch at `want.current_leader_epoch` from a partition this broker hosts
/// with `leader` at `leader_epoch`: not the leader, or a leader epoch that does not match.
fn leader_error(
    broker: &KafkaApis,
    want: &PartitionParams,
    leader: i32,
    leader_epoch: i32,
    d: &mut PartitionData,
) -> Option<i16> {
    if leader != broker.broker_id {
        d.current_leader = LeaderIdAndEpoch::default()
            .with_leader_id(BrokerId(leader))
            .with_leader_epoch(leader_epoch);
        return Some(ErrorCode::NOT_LEADER_OR_FOLLOWER.code());
    }
    if want.current_leader_epoch >= 0 && want.current_leader_epoch < leader_epoch {
        return Some(ErrorCode::FENCED_LEADER_EPOCH.code());
    }
    if want.current_leader_epoch > leader_epoch {
        return Some(ErrorCode::UNKNOWN_LEADER_EPOCH.code());
    }
    None
}

/// A follower's read: up to the log end, and the fetch offset is the follower's log end,
/// which moves the caught-up clock, the high watermark and maybe the ISR. One lock of the
/// log, then one of the state, per partition (a follower's session reads every partition it
/// follows on every fetch, most of them idle).
#[allow(clippy::too_many_arguments)]
fn read_for_follower(
    broker: &KafkaApis,
    part: &Arc<Partition>,
    want: &PartitionParams,
    replica_id: i32,
    budget: usize,
    first: bool,
    version: i16,
    mut d: PartitionData,
) -> (PartitionData, bool) {
    let (log_start, leo, read) = {
        let log = part.log();
        let read = log.read(want.fetch_offset, budget, None, first);
        (log.log_start_offset(), log.log_end_offset(), read)
    };
    let now = std::time::Instant::now();
    let me = broker.broker_id;
    let outcome = {
        let mut st = part.state();
        let behind =
            leader_state_behind(replica_id, want.current_leader_epoch, Some(st.leader_epoch));
        if let Some(code) = leader_error(broker, want, st.leader, st.leader_epoch, &mut d) {
            d.error_code = code;
            // Only an epoch we have not seen yet means our LeaderAndIsr is still coming.
            let behind = behind && code != ErrorCode::FENCED_LEADER_EPOCH.code();
            return (d, behind);
        }
        if version >= 5 {
            d.log_start_offset = log_start;
        }
        match read {
            Ok(info) => d.records = Some(info.records),
            Err(e) => d.error_code = e.kafka_error_code(),
        }
        let mut outcome = FollowerFetchOutcome::default();
        if d.error_code == 0 {
            outcome = st.on_follower_fetch(me, replica_id, want.fetch_offset, leo, now);
        }
        d.high_watermark = st.high_watermark;
        d.last_stable_offset = st.high_watermark;
        outcome
    };
    broker
        .replicas
        .complete_follower_fetch(part, replica_id, outcome);
    (d, false)
}

/// One read of every partition a fetch covers.
struct ReadAll {
    /// Per topic run (consecutive partitions of one topic), in the order read.
    topics: Vec<FetchableTopicResponse>,
    /// Record bytes in the response.
    total: usize,
    /// A partition failed with an error to answer at once.
    any_error: bool,
}

/// Reads `wants` (topic, partition, what is asked) in order; consecutive partitions of one
/// topic become one topic entry. A partition whose error only means that our leader state is
/// behind the follower's (see the module doc) does not count as an error to answer at once.
fn read_all<'a>(
    broker: &KafkaApis,
    wants: impl Iterator<Item = (&'a str, i32, PartitionParams)>,
    replica_id: i32,
    isolation_level: i8,
    max_bytes: i32,
    version: i16,
) -> ReadAll {
    let mut total = 0usize;
    let mut any_error = false;
    let max_bytes = if max_bytes > 0 {
        max_bytes as usize
    } else {
        usize::MAX
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let hosted = broker.replicas.hosted();
    let mut current: Option<(&str, Option<&TopicPartitions>)> = None;
    for (topic, partition, want) in wants {
        let same = current.is_some_and(|(t, _)| t == topic);
        if !same {
            current = Some((topic, hosted.topic(topic)));
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string()))),
            );
        }
        let in_topic = current.and_then(|(_, t)| t);
        let left = max_bytes.saturating_sub(total);
        let budget = (want.max_bytes.max(0) as usize).min(left);
        let (d, behind) = read_partition(
            broker,
            topic,
            partition,
            &want,
            replica_id,
            isolation_level,
            budget,
            total == 0,
            version,
            in_topic.and_then(|h| h.get(partition)),
        );
        any_error |= d.error_code != 0 && !behind;
        total += d.records.as_ref().map_or(0, |r| r.len());
        if let Some(t) = topics.last_mut() {
            t.partitions.push(d);
        }
    }
    ReadAll {
        topics,
        total,
        any_error,
    }
}

/// What an answer said of one partition, for the session's bookkeeping.
fn answered(d: &PartitionData) -> Answered {
    Answered {
        records_len: d.records.as_ref().map_or(0, |r| r.len()),
        high_watermark: d.high_watermark,
        log_start_offset: d.log_start_offset,
        error_code: d.error_code,
    }
}

/// Reads what the fetch covers: the request's partitions, or the session's.
fn read_once(
    broker: &KafkaApis,
    req: &FetchRequest,
    ctx: &FetchContext,
    replica_id: i32,
    version: i16,
) -> ReadAll {
    match ctx {
        FetchContext::Incremental { session, .. } => {
            let s = session_lock(session);
            read_all(
                broker,
                s.partitions().map(|c| (&*c.topic, c.partition, c.params)),
                replica_id,
                req.isolation_level,
                req.max_bytes,
                version,
            )
        }
        _ => read_all(
            broker,
            req.topics.iter().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.topic.0.as_str(), p.partition, params_of(p)))
            }),
            replica_id,
            req.isolation_level,
            req.max_bytes,
            version,
        ),
    }
}

/// Turns the last read into the answer, settling the session: a full fetch may open one; an
/// incremental answer keeps only the partitions that changed, if the session is still at the
/// epoch this fetch was served at.
fn answer(
    broker: &KafkaApis,
    req: &FetchRequest,
    read: ReadAll,
    ctx: &FetchContext,
    replica_id: i32,
) -> FetchResponse {
    match ctx {
        FetchContext::Sessionless | FetchContext::Error(_) => {
            FetchResponse::default().with_responses(read.topics)
        }
        FetchContext::Full => {
            // The read follows the request's order, so request and answer pair up.
            let asked = req
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.0.as_str(), p)));
            let answers = read.topics.iter().flat_map(|t| t.partitions.iter());
            let mut topic_name: Option<Arc<str>> = None;
            let mut parts =
                Vec::with_capacity(read.topics.iter().map(|t| t.partitions.len()).sum());
            for ((topic, p), d) in asked.zip(answers) {
                let topic = match &topic_name {
                    Some(a) if &**a == topic => a.clone(),
                    _ => {
                        let a: Arc<str> = Arc::from(topic);
                        topic_name = Some(a.clone());
                        a
                    }
                };
                parts.push(CachedPartition {
                    topic,
                    partition: p.partition,
                    params: params_of(p),
                    high_watermark: d.high_watermark,
                    local_log_start_offset: d.log_start_offset,
                });
            }
            let id = broker.fetch_sessions.maybe_create(
                replica_id >= 0,
                parts,
                std::time::Instant::now(),
            );
            FetchResponse::default()
                .with_session_id(id)
                .with_responses(read.topics)
        }
        FetchContext::Incremental { session, epoch } => {
            let mut s = session_lock(session);
            if s.epoch != *epoch {
                // Another fetch on this session came in meanwhile (Kafka: "possible duplicate
                // request"); this answer no longer matches the session.
                return FetchResponse::default()
                    .with_error_code(ErrorCode::INVALID_FETCH_SESSION_EPOCH.code())
                    .with_session_id(s.id);
            }
            let keep = s.settle(
                read.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(answered)),
            );
            let id = s.id;
            drop(s);
            let mut keep = keep.into_iter();
            let mut topics = Vec::new();
            for mut t in read.topics {
                t.partitions.retain(|_| keep.next().unwrap_or(true));
                if !t.partitions.is_empty() {
                    topics.push(t);
                }
            }
            FetchResponse::default()
                .with_session_id(id)
                .with_responses(topics)
        }
    }
}

pub async fn handle(broker: &KafkaApis, req: FetchRequest, version: i16) -> FetchResponse {
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let ctx = if version >= 7 {
        broker
            .fetch_sessions
            .new_context(&req, std::time::Instant::now())
    } else {
        FetchContext::Sessionless
    };
    if let FetchContext::Error(code) = ctx {
        debug!(
            session_id = req.session_id,
            session_epoch = req.session_epoch,
            error_code = code,
            "fetch session error"
        );
        return FetchResponse::default()
            .with_error_code(code)
            .with_session_id(0);
    }
    let mut rx = broker.replicas.subscribe();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    loop {
        let read = read_once(broker, &req, &ctx, replica_id, version);
        if read.total >= req.min_bytes.max(0) as usize
            || read.any_error
            || tokio::time::Instant::now() >= deadline
        {
            return answer(broker, &req, read, &ctx, replica_id);
        }
        // Nothing moved (no append, no high watermark change) until the deadline: the answer
        // just read is still the answer, so it is not read a second time.
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => continue,
            Ok(Err(_)) | Err(_) => return answer(broker, &req, read, &ctx, replica_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::api::fetch::leader_state_behind;

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
