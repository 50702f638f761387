//! The consumer group coordinator: Kafka's classic group membership protocol and committed
//! offsets.
//!
//! Kafka concept: consumers of a group find their coordinator (the leader of the group's
//! `__consumer_offsets` partition), JoinGroup, and the coordinator runs a rebalance: it waits
//! for every known member to (re)join (or the rebalance timeout), bumps the generation, picks
//! the protocol every member supports that most members prefer, and names a leader, who
//! computes the assignment and hands it back with SyncGroup; the coordinator passes each
//! member its share. Heartbeats keep a member alive within its session timeout and tell it
//! when a rebalance is under way. Commits carry the generation, so a member that missed a
//! rebalance cannot overwrite the offsets of the partitions' new owner.
//! Kafka classes mirrored: `GroupCoordinator`, `GroupMetadata` (states Empty,
//! PreparingRebalance, CompletingRebalance, Stable; Dead is a group we no longer hold),
//! `GroupMetadataManager` ([`records`] and `persist`: writing to and loading from
//! `__consumer_offsets`).
//!
//! Layout: this file holds [`GroupCoordinator`], its settings and the checks every handler
//! makes (ownership, loading); `metadata` the group state (Kafka's `GroupMetadata` and
//! `MemberMetadata`) and what DescribeGroups and ListGroups show; `rebalance` JoinGroup,
//! SyncGroup, Heartbeat and LeaveGroup with the state machine's transitions; `offsets`
//! OffsetCommit and OffsetFetch; `delete` DeleteGroups and OffsetDelete (tombstones); `timers` the one task that sleeps until the earliest deadline
//! (session expiry, pending member expiry, rebalance delay/timeout, pending sync), as Kafka's
//! purgatories do; [`placement`] says which `__consumer_offsets` partition owns a group;
//! [`records`] the record formats and the [`records::GroupLog`] trait the broker implements;
//! `persist` the writes and the load on election.
//!
//! Static membership (KIP-345): a member with a `group.instance.id` joins without the
//! MEMBER_ID_REQUIRED round trip; when it restarts (joins again with its instance id and no
//! member id) it replaces its old member id and, in a Stable group whose protocol does not
//! change, gets its old assignment at the same generation; the old id is then fenced
//! (FENCED_INSTANCE_ID) in JoinGroup, SyncGroup, Heartbeat, OffsetCommit and LeaveGroup. A
//! static member that misses a rebalance stays a member until its session expires.
//!
//! Invariants: a group is served only by the broker leading its partition (NOT_COORDINATOR
//! elsewhere, COORDINATOR_LOAD_IN_PROGRESS while the partition is replayed); an OffsetCommit
//! is answered NONE only once stored (in the log when one is given).
//!
//! Simplifications, said plainly: built with [`GroupCoordinator::new`] offsets and groups
//! live in memory only (lost when the coordinator moves); [`GroupCoordinator::with_log`]
//! persists them. Group metadata is written in the background, without delaying SyncGroup
//! answers (see `persist`): a restarted static member is answered before its new member id is
//! written. Offsets never expire. The leader of a new generation is the previous leader if
//! it rejoined, else the joined member with the smallest id (Kafka: the first to join). A new
//! group's initial rebalance delay waits for every member given an id (KIP-394) to join, not
//! only for the delay to pass (Kafka completes without the late ones).

mod coordinator;
mod delete;
mod metadata;
mod offsets;
mod persist;
pub mod placement;
mod rebalance;
#[cfg(test)]
mod rebalance_tests;
pub mod records;
mod timers;

pub use coordinator::{GroupConfig, GroupCoordinator};
pub use metadata::GroupState;
pub use placement::partition_for;

use coordinator::code;
use metadata::Group;
// The unit tests (`tests` below and `rebalance_tests`) reach the handlers' request types
// through `use super::*`.
#[cfg(test)]
use bytes::Bytes;
#[cfg(test)]
use coordinator::s;
#[cfg(test)]
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
#[cfg(test)]
use std::time::Duration;
#[cfg(test)]
use tokio::time::Instant;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use common::ErrorCode;
use tracing::info;

impl GroupCoordinator {
    /// (api_key, min_version, max_version) implemented here, for ApiVersions.
    ///
    /// Within Kafka 3.6's ZK-mode ranges. OffsetCommit starts at v2 and OffsetFetch at v1
    /// because Kafka's v0 reads and writes offsets in ZooKeeper (`/consumers/<group>/offsets`)
    /// and OffsetCommit v1 carries per-partition commit timestamps: neither is implemented.
    /// Every client we support negotiates higher versions (kafkajs 2.x, librdkafka 2.0.2 and
    /// 2.16, kafka-python), so they pick the highest version both sides know.
    /// JoinGroup v8 / LeaveGroup v5 add a free-text `reason` (logged at debug); JoinGroup
    /// v9's `skip_assignment` is always false (no broker-side assignors in the classic
    /// protocol); OffsetFetch v8 batches groups.
    pub const SUPPORTED_APIS: &'static [(i16, i16, i16)] = &[
        (8, 2, 8),  // OffsetCommit
        (9, 1, 8),  // OffsetFetch
        (11, 0, 9), // JoinGroup
        (12, 0, 4), // Heartbeat
        (13, 0, 5), // LeaveGroup
        (14, 0, 5), // SyncGroup
        (42, 0, 2), // DeleteGroups
        (47, 0, 0), // OffsetDelete
    ];

    /// DescribeGroups and ListGroups, implemented by [`Self::describe_groups`] and
    /// [`Self::list_groups`]. Kept apart from [`Self::SUPPORTED_APIS`] until the broker's
    /// dispatch (`api/groups.rs`) routes them: advertise them together with that routing.
    pub const ADMIN_APIS: &'static [(i16, i16, i16)] = &[
        (15, 0, 5), // DescribeGroups
        (16, 0, 4), // ListGroups
    ];

    /// A coordinator keeping offsets and groups in memory only (lost when coordination
    /// moves). Must be called inside a Tokio runtime.
    pub fn new(broker_id: i32, config: GroupConfig) -> Arc<Self> {
        Self::build(broker_id, config, None)
    }

    /// A coordinator that writes commits and group metadata to `__consumer_offsets` through
    /// `log` and reloads a partition's groups when elected its leader. Must be called inside
    /// a Tokio runtime.
    pub fn with_log(
        broker_id: i32,
        config: GroupConfig,
        log: Arc<dyn records::GroupLog>,
    ) -> Arc<Self> {
        Self::build(broker_id, config, Some(log))
    }

    fn build(
        broker_id: i32,
        config: GroupConfig,
        log: Option<Arc<dyn records::GroupLog>>,
    ) -> Arc<Self> {
        let store_tx = log
            .as_ref()
            .map(|log| persist::spawn_group_writer(broker_id, log.clone()));
        let gc = Arc::new_cyclic(|me| GroupCoordinator {
            broker_id,
            config,
            groups: Mutex::new(HashMap::new()),
            owned: Mutex::new(HashSet::new()),
            loading: Mutex::new(HashMap::new()),
            log,
            store_tx,
            next_load: std::sync::atomic::AtomicU64::new(0),
            me: me.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            timer_runs: std::sync::atomic::AtomicU64::new(0),
        });
        timers::spawn(Arc::downgrade(&gc), gc.wake.clone());
        gc
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This broker now leads `__consumer_offsets` partition `partition`.
    pub fn on_elected(&self, partition: i32) {
        if self
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition)
        {
            info!(
                broker_id = self.broker_id,
                partition, "became group coordinator for __consumer_offsets partition"
            );
            self.start_load(partition);
        }
    }

    /// This broker no longer leads `partition`: its groups are dropped (clients rediscover).
    pub fn on_resigned(&self, partition: i32) {
        if self
            .owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition)
        {
            let n = self.config.offsets_topic_num_partitions;
            self.loading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&partition);
            self.groups()
                .retain(|g, _| partition_for(g, n) != partition);
            info!(
                broker_id = self.broker_id,
                partition, "resigned as group coordinator for __consumer_offsets partition"
            );
        }
    }

    fn owns(&self, group: &str) -> bool {
        let p = partition_for(group, self.config.offsets_topic_num_partitions);
        self.owned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&p)
    }

    fn check_group(&self, group: &str) -> Result<(), i16> {
        if group.is_empty() {
            return Err(code(ErrorCode::INVALID_GROUP_ID));
        }
        if !self.owns(group) {
            return Err(code(ErrorCode::NOT_COORDINATOR));
        }
        if self.is_loading(group) {
            return Err(code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS));
        }
        Ok(())
    }

    fn is_loading(&self, group: &str) -> bool {
        let p = partition_for(group, self.config.offsets_topic_num_partitions);
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::GroupId;

    fn join(member: &str) -> JoinGroupRequest {
        JoinGroupRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(5_000)
            .with_member_id(s(member))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta"))])
    }

    fn coordinator() -> Arc<GroupCoordinator> {
        let gc = GroupCoordinator::new(
            1,
            GroupConfig {
                initial_rebalance_delay_ms: 100,
                ..GroupConfig::default()
            },
        );
        gc.on_elected(partition_for("g", 50));
        gc
    }

    /// Two members join, the leader assigns, both get their share; a third join rebalances.
    #[tokio::test(start_paused = true)]
    async fn two_members_rebalance_and_sync() {
        let gc = coordinator();
        let r = gc.join_group(join(""), 5, "c").await;
        assert_eq!(r.error_code, code(ErrorCode::MEMBER_ID_REQUIRED));
        let a = r.member_id.to_string();
        let r = gc.join_group(join(""), 5, "c").await;
        let b = r.member_id.to_string();
        let (ra, rb) = tokio::join!(
            gc.join_group(join(&a), 5, "c"),
            gc.join_group(join(&b), 5, "c")
        );
        assert_eq!(ra.error_code, 0);
        assert_eq!(rb.error_code, 0);
        assert_eq!(ra.generation_id, 1);
        assert_eq!(ra.leader, rb.leader);
        let (leader, follower) = if ra.leader.as_str() == a {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let lr = if leader == a { &ra } else { &rb };
        assert_eq!(lr.members.len(), 2, "the leader sees every member");
        let sync = |m: &str, assignments: Vec<SyncGroupRequestAssignment>| {
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id(1)
                .with_member_id(s(m))
                .with_assignments(assignments)
        };
        let assignments = vec![
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&leader))
                .with_assignment(Bytes::from_static(b"L")),
            SyncGroupRequestAssignment::default()
                .with_member_id(s(&follower))
                .with_assignment(Bytes::from_static(b"F")),
        ];
        let (sf, sl) = tokio::join!(
            gc.sync_group(sync(&follower, vec![]), 3),
            gc.sync_group(sync(&leader, assignments), 3)
        );
        assert_eq!(sl.assignment, Bytes::from_static(b"L"));
        assert_eq!(sf.assignment, Bytes::from_static(b"F"));
        let hb = gc
            .heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id(1)
                    .with_member_id(s(&a)),
                3,
            )
            .await;
        assert_eq!(hb.error_code, 0);
        // Offsets: commit with the generation, fetch them back.
        let commit = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(1)
            .with_member_id(s(&a))
            .with_topics(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(42)])]);
        let r = gc.offset_commit(commit.clone(), 7).await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
        let f = gc
            .offset_fetch(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None),
                7,
            )
            .await;
        assert_eq!(f.topics[0].partitions[0].committed_offset, 42);
        // A stale generation is refused.
        let r = gc
            .offset_commit(commit.with_generation_id_or_member_epoch(0), 7)
            .await;
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            code(ErrorCode::ILLEGAL_GENERATION)
        );
    }

    /// A member that stops heartbeating is removed after its session timeout.
    #[tokio::test(start_paused = true)]
    async fn session_expiry_removes_member() {
        let gc = coordinator();
        let id = gc.join_group(join(""), 5, "c").await.member_id.to_string();
        let r = gc.join_group(join(&id), 5, "c").await;
        assert_eq!(r.generation_id, 1);
        tokio::time::sleep(Duration::from_secs(11)).await;
        let hb = gc
            .heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id(1)
                    .with_member_id(s(&id)),
                3,
            )
            .await;
        assert_eq!(hb.error_code, code(ErrorCode::UNKNOWN_MEMBER_ID));
    }

    #[tokio::test(start_paused = true)]
    async fn not_coordinator_for_other_partitions() {
        let gc = GroupCoordinator::new(1, GroupConfig::default());
        let r = gc.join_group(join(""), 5, "c").await;
        assert_eq!(r.error_code, code(ErrorCode::NOT_COORDINATOR));
    }
}
