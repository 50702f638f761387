//! Writing the coordinator's state to `__consumer_offsets` and loading it back.
//!
//! Kafka concept: the coordinator of a group is the leader of the group's `__consumer_offsets`
//! partition, and that partition is the group's durable state. A commit is answered only once
//! its records are in the log; group metadata (generation, protocol, leader, members and their
//! assignments) is written when a group becomes Stable or Empty. A broker elected leader of
//! the partition replays it, newest record per key winning, before it serves the groups;
//! until then they answer COORDINATOR_LOAD_IN_PROGRESS.
//! Kafka class mirrored: `GroupMetadataManager` (`storeOffsets`, `storeGroup`,
//! `scheduleLoadGroupAndOffsets`, `doLoadGroupsAndOffsets`).
//!
//! Invariant: an OffsetCommit answered with NONE is in the log (as the log's `append` promises).
//! Simplifications: group metadata is written in the background, in order, without holding
//! back the SyncGroup answers (Kafka waits for that write and fails the SyncGroup if it
//! fails): a lost write only costs a rebalance after a coordinator move, never offsets.
//! Offsets never expire (`offsets.retention.minutes` is not enforced) and transactional
//! offset commits are not supported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::ErrorCode;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::coordinator::GroupCoordinator;
use super::metadata::{Group, GroupState, Member};
use super::placement::partition_for;
use super::records::{self, GroupLog, GroupValue, MemberValue, OffsetValue, Record};

/// Wall-clock milliseconds, for commit timestamps.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the task that appends group metadata records in the order they were queued.
pub(super) fn spawn_group_writer(
    broker_id: i32,
    log: Arc<dyn GroupLog>,
) -> mpsc::UnboundedSender<(i32, Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(i32, Bytes)>();
    tokio::spawn(async move {
        while let Some((partition, batch)) = rx.recv().await {
            if let Err(error_code) = log.append(partition, batch).await {
                warn!(
                    broker_id,
                    partition, error_code, "failed to write group metadata to __consumer_offsets"
                );
            }
        }
    });
    tx
}

/// Kafka's mapping of a failed `__consumer_offsets` append to the error a committer sees
/// (`GroupMetadataManager.storeOffsets`).
fn commit_error(log_error: i16) -> i16 {
    use ErrorCode as E;
    match ErrorCode::from_code(log_error) {
        E::UNKNOWN_TOPIC_OR_PARTITION
        | E::NOT_ENOUGH_REPLICAS
        | E::NOT_ENOUGH_REPLICAS_AFTER_APPEND => E::COORDINATOR_NOT_AVAILABLE.code(),
        E::NOT_LEADER_OR_FOLLOWER | E::KAFKA_STORAGE_ERROR => E::NOT_COORDINATOR.code(),
        E::MESSAGE_TOO_LARGE | E::RECORD_LIST_TOO_LARGE | E::INVALID_FETCH_SIZE => {
            E::INVALID_COMMIT_OFFSET_SIZE.code()
        }
        _ => log_error,
    }
}

impl GroupCoordinator {
    /// Appends the commits' records; `Ok` at once without a log.
    pub(super) async fn store_offsets(
        &self,
        group_id: &str,
        commits: &[(String, i32, OffsetValue)],
    ) -> Result<(), i16> {
        let Some(log) = &self.log else { return Ok(()) };
        if commits.is_empty() {
            return Ok(());
        }
        let recs: Vec<(Bytes, Option<Bytes>)> = commits
            .iter()
            .map(|(t, p, v)| {
                (
                    records::offset_key(group_id, t, *p),
                    Some(records::offset_value(v)),
                )
            })
            .collect();
        let partition = partition_for(group_id, self.config.offsets_topic_num_partitions);
        log.append(partition, records::batch(&recs, now_ms()))
            .await
            .map_err(commit_error)
    }

    /// Queues the group's metadata when it reached a Stable or Empty generation not yet
    /// written (Kafka writes at those two points: `storeGroup`).
    pub(super) fn maybe_store_group(&self, group_id: &str, g: &mut Group) {
        let Some(tx) = &self.store_tx else { return };
        if !matches!(g.state, GroupState::Stable | GroupState::Empty) || g.generation == 0 {
            return;
        }
        if g.stored == Some((g.generation, g.state)) {
            return;
        }
        g.stored = Some((g.generation, g.state));
        let protocol = g.protocol.clone();
        let value = GroupValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            protocol: protocol.clone(),
            leader: g.leader.clone(),
            current_state_timestamp: now_ms(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout.as_millis() as i32,
                    session_timeout: m.session_timeout.as_millis() as i32,
                    subscription: m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        let partition = partition_for(group_id, self.config.offsets_topic_num_partitions);
        let batch = records::batch(
            &[(
                records::group_key(group_id),
                Some(records::group_value(&value)),
            )],
            now_ms(),
        );
        let _ = tx.send((partition, batch));
    }

    /// After `on_elected`: replay the partition (with a log), answering
    /// COORDINATOR_LOAD_IN_PROGRESS for its groups meanwhile.
    pub(super) fn start_load(&self, partition: i32) {
        let Some(log) = self.log.clone() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            warn!(
                broker_id = self.broker_id,
                partition, "no runtime to load __consumer_offsets partition; serving it empty"
            );
            return;
        };
        let token = self
            .next_load
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, token);
        let me = self.me.clone();
        rt.spawn(async move {
            let started = Instant::now();
            loop {
                let result = log.read(partition).await;
                let Some(gc) = me.upgrade() else { return };
                if gc.load_token(partition) != Some(token) {
                    return; // resigned or re-elected meanwhile
                }
                match result {
                    Ok(bytes) => {
                        gc.finish_load(partition, token, &bytes, started);
                        return;
                    }
                    Err(error_code) => {
                        warn!(
                            broker_id = gc.broker_id,
                            partition,
                            error_code,
                            "reading __consumer_offsets partition failed; retrying in 1 s"
                        );
                    }
                }
                drop(gc);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn load_token(&self, partition: i32) -> Option<u64> {
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }

    /// Rebuilds the partition's groups from its records (Kafka: `doLoadGroupsAndOffsets`).
    fn finish_load(&self, partition: i32, token: u64, bytes: &[u8], started: Instant) {
        let (recs, skipped) = records::decode_batches(bytes);
        let n = self.config.offsets_topic_num_partitions;
        let mut loaded: HashMap<String, Group> = HashMap::new();
        let mut offsets_loaded = 0usize;
        for rec in recs {
            match rec {
                Record::Offset(o) => {
                    let g = loaded.entry(o.group).or_insert_with(Group::new);
                    match o.value {
                        Some(v) => {
                            g.offsets.insert(
                                (o.topic, o.partition),
                                (v.offset, v.leader_epoch, Some(v.metadata)),
                            );
                        }
                        None => {
                            g.offsets.remove(&(o.topic, o.partition));
                        }
                    }
                }
                Record::Group(id, Some(v)) => {
                    let g = loaded.entry(id).or_insert_with(Group::new);
                    apply_group_value(g, v);
                }
                Record::Group(id, None) => {
                    loaded.remove(&id);
                }
            }
        }
        // Kafka: a group that only stored offsets and lost them all (OffsetDelete tombstones)
        // is not recreated.
        loaded.retain(|_, g| g.generation > 0 || !g.offsets.is_empty());
        let mut groups = self.groups();
        // Check again under the groups lock: a resignation clears groups under it too.
        if self.load_token(partition) != Some(token) {
            return;
        }
        let count = loaded.len();
        for (id, g) in loaded {
            if partition_for(&id, n) != partition {
                continue;
            }
            offsets_loaded += g.offsets.len();
            let mut g = g;
            if g.members.len() > self.config.max_size.max(0) as usize {
                // Kafka: GroupCoordinator.onGroupLoaded rebalances a group over `group.max.size`
                // (the limit was lowered), so its members can commit and the last to rejoin
                // are left out.
                super::rebalance::prepare_rebalance(&id, &mut g, None);
            }
            groups.insert(id, g);
        }
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
        // Loaded members' sessions start now: the timer must learn their deadlines.
        self.wake.notify_one();
        info!(
            broker_id = self.broker_id,
            partition,
            groups = count,
            offsets = offsets_loaded,
            skipped_records = skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded groups and offsets from __consumer_offsets partition"
        );
    }
}

/// A loaded group is Stable with its members (who keep heartbeating as before) or Empty,
/// as Kafka's `GroupMetadata.loadGroup` rebuilds it.
fn apply_group_value(g: &mut Group, v: GroupValue) {
    let now = Instant::now();
    g.generation = v.generation;
    g.protocol_type = Some(v.protocol_type.clone()).filter(|t| !t.is_empty());
    g.protocol = v.protocol.clone();
    g.leader = v.leader;
    g.members = v
        .members
        .into_iter()
        .map(|m| {
            let member = Member {
                client_id: m.client_id,
                client_host: m.client_host,
                group_instance_id: m.group_instance_id,
                session_timeout: Duration::from_millis(m.session_timeout.max(0) as u64),
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout.max(0) as u64),
                protocol_type: v.protocol_type.clone(),
                protocols: vec![(v.protocol.clone().unwrap_or_default(), m.subscription)],
                assignment: m.assignment,
                last_heartbeat: now,
                join: None,
                sync: None,
            };
            (m.member_id, member)
        })
        .collect();
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g.stored = Some((g.generation, g.state));
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::{
        DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, ListGroupsRequest,
        OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
    };
    use kafka_protocol::protocol::StrBytes;
    use tokio::sync::Notify;

    use super::*;
    use crate::group::GroupConfig;

    /// A `__consumer_offsets` stand-in: batches concatenated per partition, an error to fail
    /// appends with, and a gate that holds reads back.
    #[derive(Default)]
    struct MemLog {
        parts: Mutex<HashMap<i32, Vec<u8>>>,
        fail_appends: Mutex<Option<i16>>,
        gate: Option<Arc<Notify>>,
    }

    impl GroupLog for MemLog {
        fn append(&self, partition: i32, batch: Bytes) -> records::BoxFuture<'_, Result<(), i16>> {
            Box::pin(async move {
                if let Some(e) = *self.fail_appends.lock().unwrap() {
                    return Err(e);
                }
                self.parts
                    .lock()
                    .unwrap()
                    .entry(partition)
                    .or_default()
                    .extend_from_slice(&batch);
                Ok(())
            })
        }
        fn read(&self, partition: i32) -> records::BoxFuture<'_, Result<Bytes, i16>> {
            Box::pin(async move {
                if let Some(g) = &self.gate {
                    g.notified().await;
                }
                let parts = self.parts.lock().unwrap();
                Ok(Bytes::from(
                    parts.get(&partition).cloned().unwrap_or_default(),
                ))
            })
        }
    }

    const G: &str = "g";

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    fn p() -> i32 {
        partition_for(G, 50)
    }

    fn join_req(member: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(5_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"sub"))])
    }

    fn commit_req(member: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
        OffsetCommitRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(s(member))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)
                    .with_committed_metadata(Some(s("meta")))])])
    }

    fn fetch_req() -> OffsetFetchRequest {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]))
    }

    /// Waits (in paused time) until the coordinator serves the group.
    async fn until_loaded(gc: &GroupCoordinator) {
        for _ in 0..100 {
            let f = gc.offset_fetch(fetch_req(), 7).await;
            if f.error_code != ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("partition never loaded");
    }

    /// A commit is in the log before it is answered; a broker that becomes coordinator later
    /// replays the log and serves the same offsets and the same Stable group, whose member
    /// keeps heartbeating at its generation without a rebalance.
    // Kafka: GroupMetadataManager.storeOffsets, storeGroup, doLoadGroupsAndOffsets.
    #[tokio::test(start_paused = true)]
    async fn commits_and_group_survive_a_coordinator_move() {
        let log = Arc::new(MemLog::default());
        let gc1 = GroupCoordinator::with_log(1, GroupConfig::default(), log.clone());
        gc1.on_elected(p());
        until_loaded(&gc1).await;
        let id = gc1
            .join_group(join_req(""), 5, "c")
            .await
            .member_id
            .to_string();
        let j = gc1.join_group(join_req(&id), 5, "c").await;
        assert_eq!((j.error_code, j.generation_id), (0, 1));
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id(1)
            .with_member_id(s(&id))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&id))
                .with_assignment(Bytes::from_static(b"asg"))]);
        assert_eq!(gc1.sync_group(sync, 5).await.error_code, 0);
        let r = gc1.offset_commit(commit_req(&id, 1, 77), 8).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        // The commit is already in the log when answered.
        let (recs, skipped) = records::decode_batches(&log.parts.lock().unwrap()[&p()]);
        assert_eq!(skipped, 0);
        assert!(recs.iter().any(|r| matches!(r,
            Record::Offset(o) if o.value.as_ref().map(|v| v.offset) == Some(77))));
        // Let the group metadata writer run, then move coordination to broker 2.
        tokio::time::sleep(Duration::from_millis(1)).await;
        gc1.on_resigned(p());
        let gc2 = GroupCoordinator::with_log(2, GroupConfig::default(), log.clone());
        gc2.on_elected(p());
        until_loaded(&gc2).await;
        let f = gc2.offset_fetch(fetch_req(), 7).await;
        let part = &f.topics[0].partitions[0];
        assert_eq!(part.committed_offset, 77);
        assert_eq!(part.metadata.as_deref(), Some("meta"));
        let d = gc2.describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s(G))]),
            5,
        );
        let g = &d.groups[0];
        assert_eq!(g.group_state.as_str(), "Stable");
        assert_eq!(g.protocol_data.as_str(), "range");
        assert_eq!(g.members[0].member_id.as_str(), id);
        assert_eq!(g.members[0].member_assignment.as_ref(), b"asg");
        assert_eq!(g.members[0].member_metadata.as_ref(), b"sub");
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id(1)
            .with_member_id(s(&id));
        assert_eq!(gc2.heartbeat(hb, 4).await.error_code, 0);
    }

    /// Static members are persisted with their instance ids (GroupMetadataValue v3): after a
    /// coordinator move the instance-id map is rebuilt, so a restarted static member gets its
    /// old assignment without a rebalance and its old member id is fenced; the replacement is
    /// written too (a third coordinator knows the new member id).
    // Kafka: GroupMetadataManager.storeGroup / loadGroup (static members), replaceStaticMember.
    #[tokio::test(start_paused = true)]
    async fn static_members_survive_a_coordinator_move() {
        let log = Arc::new(MemLog::default());
        let gc1 = GroupCoordinator::with_log(1, GroupConfig::default(), log.clone());
        gc1.on_elected(p());
        until_loaded(&gc1).await;
        let static_join = |member: &str| join_req(member).with_group_instance_id(Some(s("inst")));
        let j = gc1.join_group(static_join(""), 5, "c").await;
        assert_eq!((j.error_code, j.generation_id), (0, 1));
        let old = j.member_id.to_string();
        let sync = |id: &str| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_generation_id(1)
                .with_member_id(s(id))
                .with_group_instance_id(Some(s("inst")))
        };
        let r = gc1
            .sync_group(
                sync(&old).with_assignments(vec![SyncGroupRequestAssignment::default()
                    .with_member_id(s(&old))
                    .with_assignment(Bytes::from_static(b"asg"))]),
                5,
            )
            .await;
        assert_eq!(r.error_code, 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        gc1.on_resigned(p());
        let gc2 = GroupCoordinator::with_log(2, GroupConfig::default(), log.clone());
        gc2.on_elected(p());
        until_loaded(&gc2).await;
        let d = gc2.describe_groups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s(G))]),
            5,
        );
        assert_eq!(
            d.groups[0].members[0].group_instance_id.as_deref(),
            Some("inst")
        );
        let j = gc2.join_group(static_join(""), 5, "c").await;
        assert_eq!((j.error_code, j.generation_id), (0, 1));
        let new = j.member_id.to_string();
        assert_ne!(new, old);
        let r = gc2.sync_group(sync(&new), 5).await;
        assert_eq!((r.error_code, r.assignment.as_ref()), (0, &b"asg"[..]));
        let hb = |id: &str| {
            HeartbeatRequest::default()
                .with_group_id(GroupId(s(G)))
                .with_generation_id(1)
                .with_member_id(s(id))
                .with_group_instance_id(Some(s("inst")))
        };
        assert_eq!(
            gc2.heartbeat(hb(&old), 4).await.error_code,
            ErrorCode::FENCED_INSTANCE_ID.code()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
        gc2.on_resigned(p());
        let gc3 = GroupCoordinator::with_log(3, GroupConfig::default(), log.clone());
        gc3.on_elected(p());
        until_loaded(&gc3).await;
        assert_eq!(gc3.heartbeat(hb(&new), 4).await.error_code, 0);
        assert_eq!(
            gc3.heartbeat(hb(&old), 4).await.error_code,
            ErrorCode::FENCED_INSTANCE_ID.code()
        );
    }

    /// DeleteGroups writes tombstones for the group's offsets and metadata to
    /// `__consumer_offsets`: a coordinator that loads the partition afterwards knows neither
    /// (GROUP_ID_NOT_FOUND). An offset deleted with OffsetDelete stays deleted too.
    // Kafka: GroupMetadataManager.cleanupGroupMetadata.
    #[tokio::test(start_paused = true)]
    async fn deleted_groups_and_offsets_stay_deleted_after_a_move() {
        use kafka_protocol::messages::offset_delete_request::{
            OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
        };
        use kafka_protocol::messages::{
            DeleteGroupsRequest, LeaveGroupRequest, OffsetDeleteRequest,
        };
        let log = Arc::new(MemLog::default());
        let gc1 = GroupCoordinator::with_log(1, GroupConfig::default(), log.clone());
        gc1.on_elected(p());
        until_loaded(&gc1).await;
        let id = gc1
            .join_group(join_req(""), 5, "c")
            .await
            .member_id
            .to_string();
        let j = gc1.join_group(join_req(&id), 5, "c").await;
        assert_eq!((j.error_code, j.generation_id), (0, 1));
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id(1)
            .with_member_id(s(&id));
        assert_eq!(gc1.sync_group(sync, 5).await.error_code, 0);
        assert_eq!(
            gc1.offset_commit(commit_req(&id, 1, 3), 8).await.topics[0].partitions[0].error_code,
            0
        );
        let leave = LeaveGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_member_id(s(&id));
        assert_eq!(gc1.leave_group(leave, 0).await.error_code, 0);
        let del = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s(G))]);
        assert_eq!(
            gc1.delete_groups(del.clone(), 2).await.results[0].error_code,
            0
        );
        // A simple consumer's group, with one offset deleted by OffsetDelete.
        gc1.offset_commit(commit_req("", -1, 4), 8).await;
        let od = OffsetDeleteRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![OffsetDeleteRequestPartition::default()])]);
        let r = gc1.offset_delete_known(od, 0, |_, _| true).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        tokio::time::sleep(Duration::from_millis(1)).await;
        let (recs, _) = records::decode_batches(&log.parts.lock().unwrap()[&p()]);
        assert!(
            recs.contains(&Record::Group(G.into(), None)),
            "group tombstone"
        );
        let offset_tombstones = recs
            .iter()
            .filter(|r| matches!(r, Record::Offset(o) if o.value.is_none()))
            .count();
        assert_eq!(offset_tombstones, 2);
        gc1.on_resigned(p());
        let gc2 = GroupCoordinator::with_log(2, GroupConfig::default(), log.clone());
        gc2.on_elected(p());
        until_loaded(&gc2).await;
        assert_eq!(
            gc2.offset_fetch(fetch_req(), 7).await.topics[0].partitions[0].committed_offset,
            -1
        );
        assert_eq!(
            gc2.delete_groups(del, 2).await.results[0].error_code,
            ErrorCode::GROUP_ID_NOT_FOUND.code()
        );
    }

    /// Until the partition is replayed its groups answer COORDINATOR_LOAD_IN_PROGRESS.
    #[tokio::test(start_paused = true)]
    async fn groups_answer_load_in_progress_until_loaded() {
        let gate = Arc::new(Notify::new());
        let log = Arc::new(MemLog {
            gate: Some(gate.clone()),
            ..MemLog::default()
        });
        let gc = GroupCoordinator::with_log(1, GroupConfig::default(), log);
        gc.on_elected(p());
        let lip = ErrorCode::COORDINATOR_LOAD_IN_PROGRESS.code();
        assert_eq!(gc.join_group(join_req(""), 5, "c").await.error_code, lip);
        // Kafka: a heartbeat is answered NONE blindly; a SyncGroup REBALANCE_IN_PROGRESS
        // (the rebalance in flight is lost; the member rejoins).
        let hb = HeartbeatRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id(1)
            .with_member_id(s("m"));
        assert_eq!(gc.heartbeat(hb, 4).await.error_code, 0);
        let sync = SyncGroupRequest::default()
            .with_group_id(GroupId(s(G)))
            .with_generation_id(1)
            .with_member_id(s("m"));
        assert_eq!(
            gc.sync_group(sync, 5).await.error_code,
            ErrorCode::REBALANCE_IN_PROGRESS.code()
        );
        assert_eq!(gc.offset_fetch(fetch_req(), 7).await.error_code, lip);
        assert_eq!(
            gc.list_groups(ListGroupsRequest::default(), 4).error_code,
            lip
        );
        gate.notify_one();
        until_loaded(&gc).await;
        let r = gc.join_group(join_req(""), 5, "c").await;
        assert_eq!(r.error_code, ErrorCode::MEMBER_ID_REQUIRED.code());
    }

    /// A failed append fails the commit with Kafka's mapped error and stores nothing.
    #[tokio::test(start_paused = true)]
    async fn failed_append_fails_the_commit() {
        let log = Arc::new(MemLog::default());
        let gc = GroupCoordinator::with_log(1, GroupConfig::default(), log.clone());
        gc.on_elected(p());
        until_loaded(&gc).await;
        *log.fail_appends.lock().unwrap() = Some(ErrorCode::NOT_LEADER_OR_FOLLOWER.code());
        let r = gc.offset_commit(commit_req("", -1, 5), 8).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::NOT_COORDINATOR.code()
        );
        *log.fail_appends.lock().unwrap() = Some(ErrorCode::NOT_ENOUGH_REPLICAS.code());
        let r = gc.offset_commit(commit_req("", -1, 5), 8).await;
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            ErrorCode::COORDINATOR_NOT_AVAILABLE.code()
        );
        let f = gc.offset_fetch(fetch_req(), 7).await;
        assert_eq!(f.topics[0].partitions[0].committed_offset, -1);
    }
}
