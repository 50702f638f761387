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
//! Layout: this file holds the state machine and the request handlers; [`placement`] says
//! which `__consumer_offsets` partition owns a group; [`records`] the record formats and the
//! [`records::GroupLog`] trait the broker implements; `persist` the writes and the load on
//! election. Timers: one task sleeps until the earliest deadline (session expiry, pending
//! member expiry, rebalance delay/timeout, pending sync), as Kafka's purgatories do.
//!
//! Invariants: a group is served only by the broker leading its partition (NOT_COORDINATOR
//! elsewhere, COORDINATOR_LOAD_IN_PROGRESS while the partition is replayed); an OffsetCommit
//! is answered NONE only once stored (in the log when one is given).
//!
//! Simplifications, said plainly: built with [`GroupCoordinator::new`] offsets and groups
//! live in memory only (lost when the coordinator moves); [`GroupCoordinator::with_log`]
//! persists them. Group metadata is written in the background, without delaying SyncGroup
//! answers (see `persist`). Static membership (`group.instance.id`) is recorded and shown by
//! DescribeGroups but otherwise treated as dynamic (no FENCED_INSTANCE_ID, a restarted static
//! member triggers a rebalance). Offsets never expire. The initial rebalance delay is fixed
//! from the first join (Kafka extends it with each new member up to the rebalance timeout).
//! The leader of a new generation is the previous leader if it rejoined, else the member with
//! the smallest id (Kafka: the first to join).

mod persist;
pub mod placement;
#[cfg(test)]
mod rebalance_tests;
pub mod records;

pub use placement::partition_for;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tracing::{debug, info};

/// Group settings with Kafka's broker defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.topic.num.partitions` (50).
    pub offsets_topic_num_partitions: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            offsets_topic_num_partitions: 50,
        }
    }
}

/// The states of a classic group (Kafka's `GroupState`; `Dead` is a group we no longer hold,
/// which here means it is simply absent from the map).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members; committed offsets may remain.
    Empty,
    /// Waiting for every known member to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment and heartbeats.
    Stable,
}

impl GroupState {
    /// Kafka's name for the state, as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

struct Member {
    /// The client's `client.id` and address, shown by DescribeGroups.
    client_id: String,
    client_host: String,
    /// `group.instance.id` as sent (static membership is otherwise treated as dynamic).
    group_instance_id: Option<String>,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heartbeat: Instant,
    join: Option<(i16, oneshot::Sender<JoinGroupResponse>)>,
    sync: Option<(i16, oneshot::Sender<SyncGroupResponse>)>,
}

struct Group {
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// When the current rebalance started, and whether it began from an empty group.
    rebalance_started: Option<(Instant, bool)>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined (KIP-394), with the
    /// time they expire if the client never comes back (its session timeout). A rebalance
    /// waits for them, as Kafka's `GroupMetadata.hasAllMembersJoined` does.
    pending: HashMap<String, Instant>,
    /// While CompletingRebalance: when members that have not sent SyncGroup are dropped
    /// (Kafka's pending-sync timeout, the rebalance timeout), so a leader that never syncs
    /// cannot stall the group.
    sync_deadline: Option<Instant>,
    /// The (generation, state) last queued to `__consumer_offsets`, so each Stable or Empty
    /// generation is written once.
    stored: Option<(i32, GroupState)>,
    offsets: HashMap<(String, i32), (i64, i32, Option<String>)>,
}

impl Group {
    fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_started: None,
            pending: HashMap::new(),
            sync_deadline: None,
            stored: None,
            offsets: HashMap::new(),
        }
    }
}

/// Kafka's `GroupCoordinator`.
pub struct GroupCoordinator {
    broker_id: i32,
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions this broker leads (groups it coordinates).
    owned: Mutex<HashSet<i32>>,
    /// Partitions being loaded from the log since `on_elected`, with the load's token (a
    /// resignation or a newer election invalidates an older load). Their groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS.
    loading: Mutex<HashMap<i32, u64>>,
    /// Where offsets and group metadata are written (`None`: in memory only).
    log: Option<Arc<dyn records::GroupLog>>,
    /// Group metadata writes, in the order the state changes happened, to one writer task.
    store_tx: Option<tokio::sync::mpsc::UnboundedSender<(i32, Bytes)>>,
    /// Hands out load tokens.
    next_load: std::sync::atomic::AtomicU64,
    /// Ourselves, for the tasks we spawn (loads).
    me: std::sync::Weak<GroupCoordinator>,
    /// Wakes the timer task when a handler may have created an earlier deadline (a new
    /// rebalance, a new member session); the task otherwise sleeps until the next deadline.
    wake: Arc<tokio::sync::Notify>,
    /// How many times the timer task ran (tests check that it does not poll).
    timer_runs: std::sync::atomic::AtomicU64,
}

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

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
        let weak = Arc::downgrade(&gc);
        let wake = gc.wake.clone();
        tokio::spawn(async move {
            // The coordinator's clock (Kafka's DelayedHeartbeat / DelayedJoin purgatories):
            // one task sleeping until the earliest session expiry or rebalance deadline, or
            // until a handler says a new one may be earlier. No periodic polling.
            loop {
                let next = {
                    let Some(gc) = weak.upgrade() else { return };
                    gc.on_tick()
                };
                // With nothing to wait for, still look again now and then so the task ends
                // soon after the coordinator is dropped.
                let next = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
                tokio::select! {
                    _ = tokio::time::sleep_until(next) => {}
                    _ = wake.notified() => {}
                }
            }
        });
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
            return Err(code(ResponseError::InvalidGroupId));
        }
        if !self.owns(group) {
            return Err(code(ResponseError::NotCoordinator));
        }
        if self.is_loading(group) {
            return Err(code(ResponseError::CoordinatorLoadInProgress));
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

    /// JoinGroup from a client whose address is unknown (DescribeGroups then shows an empty
    /// `client_host`); see [`Self::join_group_from`].
    pub async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
    ) -> JoinGroupResponse {
        self.join_group_from(req, version, client_id, "").await
    }

    /// JoinGroup. `client_id` comes from the request header and prefixes the member id
    /// (`<client_id>-<uuid>`, as Kafka names members); `client_host` is the peer address as
    /// Kafka shows it (`/127.0.0.1`), reported by DescribeGroups.
    pub async fn join_group_from(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        let fail = |c: i16, member: &str| {
            fit_join(
                JoinGroupResponse::default()
                    .with_error_code(c)
                    .with_generation_id(-1)
                    .with_member_id(s(member)),
                version,
            )
        };
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            return fail(c, &req.member_id);
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return fail(code(ResponseError::InvalidSessionTimeout), &req.member_id);
        }
        if let Some(reason) = &req.reason {
            debug!(group = %group_id, member_id = %req.member_id, %reason, "JoinGroup reason");
        }
        let rx = {
            let mut groups = self.groups();
            let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
            let protocols: Vec<(String, Bytes)> = req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect();
            let ptype = req.protocol_type.to_string();
            if protocols.is_empty()
                || (!g.members.is_empty()
                    && (g.protocol_type.as_deref() != Some(ptype.as_str())
                        || !g.members.values().all(|m| {
                            m.protocols
                                .iter()
                                .any(|(n, _)| protocols.iter().any(|(p, _)| p == n))
                        })))
            {
                return fail(
                    code(ResponseError::InconsistentGroupProtocol),
                    &req.member_id,
                );
            }
            let client_id = client_id.to_string();
            let mut member_id = req.member_id.to_string();
            if member_id.is_empty() {
                member_id = format!("{client_id}-{}", uuid::Uuid::new_v4());
                if version >= 4 {
                    // KIP-394: the client must rejoin with the id we give it.
                    let expires =
                        Instant::now() + Duration::from_millis(req.session_timeout_ms as u64);
                    g.pending.insert(member_id.clone(), expires);
                    self.wake.notify_one(); // a new pending-member deadline
                    return fail(code(ResponseError::MemberIdRequired), &member_id);
                }
            } else if !g.members.contains_key(&member_id) && g.pending.remove(&member_id).is_none()
            {
                return fail(code(ResponseError::UnknownMemberId), &member_id);
            }
            let session = Duration::from_millis(req.session_timeout_ms as u64);
            let rebalance = if version >= 1 {
                Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
            } else {
                session
            };
            let (tx, rx) = oneshot::channel();
            let changed = match g.members.get(&member_id) {
                Some(m) => m.protocols != protocols,
                None => true,
            };
            let m = g
                .members
                .entry(member_id.clone())
                .or_insert_with(|| Member {
                    client_id: client_id.clone(),
                    client_host: client_host.to_string(),
                    group_instance_id: None,
                    session_timeout: session,
                    rebalance_timeout: rebalance,
                    protocol_type: ptype.clone(),
                    protocols: protocols.clone(),
                    assignment: Bytes::new(),
                    last_heartbeat: Instant::now(),
                    join: None,
                    sync: None,
                });
            m.session_timeout = session;
            m.rebalance_timeout = rebalance;
            m.group_instance_id = req.group_instance_id.as_ref().map(|i| i.to_string());
            m.protocols = protocols;
            m.protocol_type = ptype.clone();
            m.last_heartbeat = Instant::now();
            m.join = Some((version, tx));
            g.protocol_type = Some(ptype);
            match g.state {
                GroupState::PreparingRebalance => {}
                GroupState::Empty => prepare_rebalance(&group_id, g, true),
                GroupState::CompletingRebalance | GroupState::Stable => {
                    let is_leader = g.leader.as_deref() == Some(member_id.as_str());
                    // Kafka: a member rejoining unchanged while CompletingRebalance probably
                    // lost its JoinGroup answer: it gets this generation's answer again. While
                    // Stable, the leader's rejoin (it may see new topics) or a change of
                    // metadata starts a rebalance; a follower's unchanged rejoin does not.
                    let stable = g.state == GroupState::Stable;
                    if changed || (stable && is_leader) {
                        prepare_rebalance(&group_id, g, false);
                    } else {
                        let m = g.members.get_mut(&member_id).expect("inserted above");
                        if let Some((v, tx)) = m.join.take() {
                            let _ = tx.send(join_response(g, &member_id, v));
                        }
                    }
                }
            }
            try_complete_join(&group_id, g, self.config.initial_rebalance_delay_ms);
            self.maybe_store_group(&group_id, g);
            self.wake.notify_one();
            rx
        };
        match rx.await {
            Ok(r) => r,
            Err(_) => fail(code(ResponseError::UnknownMemberId), &req.member_id),
        }
    }

    pub async fn sync_group(&self, req: SyncGroupRequest, version: i16) -> SyncGroupResponse {
        let fail = |c: i16| {
            fit_sync(
                SyncGroupResponse::default().with_error_code(c),
                version,
                None,
            )
        };
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            return fail(c);
        }
        let rx = {
            let mut groups = self.groups();
            let Some(g) = groups.get_mut(&group_id) else {
                return fail(code(ResponseError::UnknownMemberId));
            };
            let member_id = req.member_id.to_string();
            if !g.members.contains_key(&member_id) {
                return fail(code(ResponseError::UnknownMemberId));
            }
            if req.generation_id != g.generation {
                return fail(code(ResponseError::IllegalGeneration));
            }
            if version >= 5 {
                let t = req.protocol_type.as_ref().map(|x| x.to_string());
                let n = req.protocol_name.as_ref().map(|x| x.to_string());
                if (t.is_some() && t != g.protocol_type) || (n.is_some() && n != g.protocol) {
                    return fail(code(ResponseError::InconsistentGroupProtocol));
                }
            }
            match g.state {
                GroupState::Empty => return fail(code(ResponseError::UnknownMemberId)),
                GroupState::PreparingRebalance => {
                    return fail(code(ResponseError::RebalanceInProgress))
                }
                GroupState::Stable => {
                    let m = g.members.get_mut(&member_id).expect("checked");
                    m.last_heartbeat = Instant::now();
                    let a = m.assignment.clone();
                    return fit_sync(
                        SyncGroupResponse::default().with_assignment(a),
                        version,
                        Some(g),
                    );
                }
                GroupState::CompletingRebalance => {
                    let (tx, rx) = oneshot::channel();
                    let m = g.members.get_mut(&member_id).expect("checked");
                    m.sync = Some((version, tx));
                    m.last_heartbeat = Instant::now();
                    if g.leader.as_deref() == Some(member_id.as_str()) {
                        let given: HashMap<String, Bytes> = req
                            .assignments
                            .iter()
                            .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                            .collect();
                        for (id, m) in g.members.iter_mut() {
                            m.assignment = given.get(id).cloned().unwrap_or_default();
                        }
                        g.state = GroupState::Stable;
                        g.sync_deadline = None;
                        self.maybe_store_group(&group_id, g);
                        self.wake.notify_one();
                        info!(group = %group_id, generation = g.generation, members = g.members.len(),
                            "group stable: assignment received from the leader");
                        let snapshot = (g.protocol_type.clone(), g.protocol.clone());
                        for m in g.members.values_mut() {
                            if let Some((v, tx)) = m.sync.take() {
                                m.last_heartbeat = Instant::now();
                                let mut r = SyncGroupResponse::default()
                                    .with_assignment(m.assignment.clone());
                                if v >= 5 {
                                    r.protocol_type = snapshot.0.as_deref().map(s);
                                    r.protocol_name = snapshot.1.as_deref().map(s);
                                }
                                let _ = tx.send(r);
                            }
                        }
                    }
                    rx
                }
            }
        };
        match rx.await {
            Ok(r) => r,
            Err(_) => fail(code(ResponseError::RebalanceInProgress)),
        }
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest, _version: i16) -> HeartbeatResponse {
        let r = |c: i16| HeartbeatResponse::default().with_error_code(c);
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            return r(c);
        }
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(&group_id) else {
            return r(code(ResponseError::UnknownMemberId));
        };
        let Some(m) = g.members.get_mut(&req.member_id.to_string()) else {
            return r(code(ResponseError::UnknownMemberId));
        };
        // Kafka: GroupCoordinator.handleHeartbeat checks membership, then the generation,
        // then the state; only a valid heartbeat extends the session.
        if req.generation_id != g.generation {
            return r(code(ResponseError::IllegalGeneration));
        }
        m.last_heartbeat = Instant::now();
        match g.state {
            GroupState::Empty => r(code(ResponseError::UnknownMemberId)),
            GroupState::PreparingRebalance => r(code(ResponseError::RebalanceInProgress)),
            GroupState::CompletingRebalance | GroupState::Stable => r(0),
        }
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            return LeaveGroupResponse::default().with_error_code(c);
        }
        let ids: Vec<String> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    if let Some(reason) = &m.reason {
                        debug!(group = %group_id, member_id = %m.member_id, %reason, "LeaveGroup reason");
                    }
                    m.member_id.to_string()
                })
                .collect()
        } else {
            vec![req.member_id.to_string()]
        };
        let mut groups = self.groups();
        let mut results = Vec::new();
        let mut top = 0;
        match groups.get_mut(&group_id) {
            None => {
                // Kafka: every member unknown; v3+ keeps the top-level error NONE.
                let c = code(ResponseError::UnknownMemberId);
                if version < 3 {
                    top = c;
                }
                for id in &ids {
                    results.push(
                        MemberResponse::default()
                            .with_member_id(s(id))
                            .with_error_code(c),
                    );
                }
            }
            Some(g) => {
                let mut removed = false;
                for id in &ids {
                    let c = if g.members.remove(id).is_some() {
                        removed = true;
                        info!(group = %group_id, member_id = %id, "member left the group");
                        0
                    } else if g.pending.remove(id).is_some() {
                        // A member that got its id but never joined (Kafka: removePendingMember).
                        removed = true;
                        0
                    } else {
                        code(ResponseError::UnknownMemberId)
                    };
                    if version < 3 {
                        top = c;
                    }
                    results.push(
                        MemberResponse::default()
                            .with_member_id(s(id))
                            .with_error_code(c),
                    );
                }
                if removed {
                    member_gone(&group_id, g);
                    try_complete_join(&group_id, g, self.config.initial_rebalance_delay_ms);
                    self.maybe_store_group(&group_id, g);
                    self.wake.notify_one();
                }
            }
        }
        let mut r = LeaveGroupResponse::default().with_error_code(top);
        if version >= 3 {
            r.members = results;
        }
        r
    }

    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.to_string();
        let all = |c: i16| {
            OffsetCommitResponse::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(c)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        if let Err(c) = self.check_group(&group_id) {
            return all(c);
        }
        let member_id = req.member_id.to_string();
        let generation = req.generation_id_or_member_epoch;
        if let Err(c) = self.validate_offset_commit(&group_id, &member_id, generation) {
            return all(c);
        }
        // Kafka: `offset.metadata.max.bytes` (4096): a too-long metadata string fails only
        // its own partition.
        let too_large =
            |p: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition| {
                p.committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
            };
        let mut resp = all(0);
        for (t, rt) in req.topics.iter().zip(resp.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                if too_large(p) {
                    rp.error_code = code(ResponseError::OffsetMetadataTooLarge);
                }
            }
        }
        let now_ms = persist::now_ms();
        let commits: Vec<(String, i32, records::OffsetValue)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter(|p| !too_large(p)).map(move |p| {
                    let value = records::OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now_ms,
                    };
                    (t.name.to_string(), p.partition_index, value)
                })
            })
            .collect();
        if let Err(c) = self.store_offsets(&group_id, &commits).await {
            for rt in resp.topics.iter_mut() {
                for rp in rt.partitions.iter_mut().filter(|rp| rp.error_code == 0) {
                    rp.error_code = c;
                }
            }
            return resp;
        }
        let mut groups = self.groups();
        if let Some(g) = groups.get_mut(&group_id) {
            for (topic, partition, v) in commits {
                g.offsets.insert(
                    (topic, partition),
                    (v.offset, v.leader_epoch, Some(v.metadata)),
                );
            }
        }
        resp
    }

    /// Kafka: `GroupCoordinator.handleCommitOffsets` and `validateOffsetCommit`.
    fn validate_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        generation: i32,
    ) -> Result<(), i16> {
        let mut groups = self.groups();
        // Kafka: GroupCoordinator.handleCommitOffsets. An unknown group is created only for a
        // "simple" commit (generation -1) from a consumer that assigns partitions itself.
        if !groups.contains_key(group_id) && generation >= 0 {
            return Err(code(ResponseError::IllegalGeneration));
        }
        let g = groups
            .entry(group_id.to_string())
            .or_insert_with(Group::new);
        // Kafka: GroupCoordinator.validateOffsetCommit.
        if generation >= 0 || !member_id.is_empty() {
            if !g.members.contains_key(member_id) {
                return Err(code(ResponseError::UnknownMemberId));
            }
            if generation != g.generation {
                return Err(code(ResponseError::IllegalGeneration));
            }
            // The member got this generation's JoinGroup answer but not its assignment yet.
            // (PreparingRebalance is allowed: a consumer commits what it consumed before it
            // rejoins, in its partitions-revoked callback.)
            if g.state == GroupState::CompletingRebalance {
                return Err(code(ResponseError::RebalanceInProgress));
            }
            if let Some(m) = g.members.get_mut(member_id) {
                m.last_heartbeat = Instant::now();
            }
        } else if g.state != GroupState::Empty {
            // A non-empty group takes commits from its members only.
            return Err(code(ResponseError::UnknownMemberId));
        }
        Ok(())
    }

    /// OffsetFetch. v0-7 ask about one group (`group_id`, `topics`, null = every committed
    /// partition from v2); v8 batches several groups in `groups`, each answered with its own
    /// error. A partition without a committed offset answers offset -1 and empty metadata.
    /// Kafka: `KafkaApis.handleOffsetFetchRequest`, `GroupCoordinator.handleFetchOffsets`.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut r = OffsetFetchResponse::default();
        if version >= 8 {
            r.groups = req
                .groups
                .iter()
                .map(|rg| {
                    let wanted = rg.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let mut out =
                        OffsetFetchResponseGroup::default().with_group_id(rg.group_id.clone());
                    match self.fetch_offsets(&rg.group_id, wanted) {
                        Ok(topics) => {
                            out.topics = topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(s(&t)))
                                        .with_partitions(
                                            ps.into_iter()
                                                .map(|(p, off, epoch, meta)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(off)
                                                        .with_committed_leader_epoch(epoch)
                                                        .with_metadata(Some(s(&meta)))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect()
                        }
                        Err(c) => out.error_code = c,
                    }
                    out
                })
                .collect();
            return r;
        }
        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let (topics, err) = match self.fetch_offsets(&req.group_id, wanted.clone()) {
            Ok(t) => (t, 0),
            Err(c) if version >= 2 => (Vec::new(), c),
            Err(c) => {
                // v0-1 have no top-level error: every asked partition carries it.
                let t = wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| {
                        (
                            t,
                            ps.into_iter().map(|p| (p, -1, -1, String::new())).collect(),
                        )
                    })
                    .collect();
                (t, c)
            }
        };
        if version >= 2 {
            r.error_code = err;
        }
        r.topics = topics
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(&t)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, off, epoch, meta)| {
                                let mut x = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(off)
                                    .with_metadata(Some(s(&meta)));
                                if version >= 5 {
                                    x.committed_leader_epoch = epoch;
                                }
                                if version < 2 {
                                    x.error_code = err;
                                }
                                x
                            })
                            .collect(),
                    )
            })
            .collect();
        r
    }

    /// The committed offsets of `group_id`: for the asked partitions, or (None) for every
    /// partition with a commit. Each entry is (partition, offset, leader epoch, metadata).
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, i64, i32, String)>)>, i16> {
        self.check_group(group_id)?;
        let groups = self.groups();
        let empty = HashMap::new();
        let offsets = groups.get(group_id).map_or(&empty, |g| &g.offsets);
        let wanted = wanted.unwrap_or_else(|| {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in offsets.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    (t, ps)
                })
                .collect()
        });
        Ok(wanted
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| match offsets.get(&(t.clone(), p)) {
                        Some((off, epoch, meta)) => {
                            (p, *off, *epoch, meta.clone().unwrap_or_default())
                        }
                        None => (p, -1, -1, String::new()),
                    })
                    .collect();
                (t, parts)
            })
            .collect())
    }

    /// DescribeGroups: each group's state, protocol and members; member metadata and
    /// assignments only once the group is Stable, as Kafka's `GroupMetadata.summary` does.
    /// An unknown group is reported as `Dead` with no error.
    /// Kafka: `GroupCoordinator.handleDescribeGroup`.
    pub fn describe_groups(
        &self,
        req: DescribeGroupsRequest,
        version: i16,
    ) -> DescribeGroupsResponse {
        let groups_out = req
            .groups
            .iter()
            .map(|gid| {
                let mut d = DescribedGroup::default().with_group_id(gid.clone());
                if version >= 3 && req.include_authorized_operations {
                    // No authorizer: every group operation is allowed (Kafka reports the
                    // supported set as a bit field: READ=3, DELETE=6, DESCRIBE=8).
                    d.authorized_operations = (1 << 3) | (1 << 6) | (1 << 8);
                }
                if !self.owns(gid) {
                    d.error_code = code(ResponseError::NotCoordinator);
                    return d;
                }
                if self.is_loading(gid) {
                    d.error_code = code(ResponseError::CoordinatorLoadInProgress);
                    return d;
                }
                let groups = self.groups();
                let Some(g) = groups.get(gid.as_str()) else {
                    d.group_state = s("Dead");
                    return d;
                };
                d.group_state = s(g.state.name());
                d.protocol_type = s(g.protocol_type.as_deref().unwrap_or(""));
                let stable = g.state == GroupState::Stable;
                if stable {
                    d.protocol_data = s(g.protocol.as_deref().unwrap_or(""));
                }
                d.members = g
                    .members
                    .iter()
                    .map(|(id, m)| {
                        let mut dm = DescribedGroupMember::default()
                            .with_member_id(s(id))
                            .with_client_id(s(&m.client_id))
                            .with_client_host(s(&m.client_host));
                        if version >= 4 {
                            dm.group_instance_id = m.group_instance_id.as_deref().map(s);
                        }
                        if stable {
                            let proto = g.protocol.as_deref().unwrap_or("");
                            dm.member_metadata = m
                                .protocols
                                .iter()
                                .find(|(n, _)| n == proto)
                                .map(|(_, md)| md.clone())
                                .unwrap_or_default();
                            dm.member_assignment = m.assignment.clone();
                        }
                        dm
                    })
                    .collect();
                d
            })
            .collect();
        DescribeGroupsResponse::default().with_groups(groups_out)
    }

    /// ListGroups: the groups this broker coordinates (v4: filtered by state names, compared
    /// case-insensitively as Kafka parses them). Kafka: `GroupCoordinator.handleListGroups`.
    pub fn list_groups(&self, req: ListGroupsRequest, version: i16) -> ListGroupsResponse {
        let filter: Vec<String> = if version >= 4 {
            req.states_filter.iter().map(|x| x.to_lowercase()).collect()
        } else {
            Vec::new()
        };
        if !self
            .loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
        {
            // Kafka answers the whole list with this error while any partition loads.
            return ListGroupsResponse::default()
                .with_error_code(code(ResponseError::CoordinatorLoadInProgress));
        }
        let owned = self.owned.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let n = self.config.offsets_topic_num_partitions;
        let groups = self.groups();
        let mut listed: Vec<ListedGroup> = groups
            .iter()
            .filter(|(id, _)| owned.contains(&partition_for(id, n)))
            .filter(|(_, g)| filter.is_empty() || filter.contains(&g.state.name().to_lowercase()))
            .map(|(id, g)| {
                let mut l = ListedGroup::default()
                    .with_group_id(GroupId(s(id)))
                    .with_protocol_type(s(g.protocol_type.as_deref().unwrap_or("")));
                if version >= 4 {
                    l.group_state = s(g.state.name());
                }
                l
            })
            .collect();
        listed.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        ListGroupsResponse::default().with_groups(listed)
    }

    /// Session expiry and rebalance completion at a deadline; returns the next deadline
    /// (always in the future), if any.
    fn on_tick(&self) -> Option<Instant> {
        self.timer_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let mut groups = self.groups();
        for (id, g) in groups.iter_mut() {
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    // A member waiting in JoinGroup or SyncGroup is alive (Kafka's
                    // `MemberMetadata.shouldKeepAlive`): the rebalance timeout bounds it.
                    m.join.is_none()
                        && m.sync.is_none()
                        && now.duration_since(m.last_heartbeat) >= m.session_timeout
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut expired = expired;
            if g.state == GroupState::CompletingRebalance
                && g.sync_deadline.is_some_and(|d| now >= d)
            {
                // Kafka: onExpirePendingSync drops the members that never sent SyncGroup.
                for (mid, m) in &g.members {
                    if m.sync.is_none() && !expired.contains(mid) {
                        info!(group = %id, member_id = %mid, "member did not sync within the rebalance timeout; removing it");
                        expired.push(mid.clone());
                    }
                }
            }
            for m in &expired {
                g.members.remove(m);
                info!(group = %id, member_id = %m, "member session expired; removing it from the group");
            }
            let before = g.pending.len();
            g.pending.retain(|_, expires| *expires > now);
            if !expired.is_empty() {
                member_gone(id, g);
            } else if g.pending.len() != before {
                try_complete_join(id, g, self.config.initial_rebalance_delay_ms);
            }
            try_complete_join(id, g, self.config.initial_rebalance_delay_ms);
            self.maybe_store_group(id, g);
        }
        let delay = Duration::from_millis(self.config.initial_rebalance_delay_ms.max(0) as u64);
        groups
            .values()
            .flat_map(|g| next_deadlines(g, delay))
            .filter(|d| *d > now)
            .min()
    }
}

/// The instants at which the timer must look at `g` again: member session expiries, pending
/// member expiries, the pending-sync deadline, and the rebalance's delay and timeout.
fn next_deadlines(g: &Group, initial_delay: Duration) -> Vec<Instant> {
    let mut out: Vec<Instant> = g
        .members
        .values()
        .filter(|m| m.join.is_none() && m.sync.is_none())
        .map(|m| m.last_heartbeat + m.session_timeout)
        .collect();
    out.extend(g.pending.values().copied());
    if g.state == GroupState::CompletingRebalance {
        out.extend(g.sync_deadline);
    }
    if let (GroupState::PreparingRebalance, Some((started, from_empty))) =
        (g.state, g.rebalance_started)
    {
        if from_empty {
            out.push(started + initial_delay);
        }
        let timeout = g
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        out.push(started + timeout);
    }
    out
}

/// A member left or expired: a stable group rebalances; a rebalance may now be complete.
fn member_gone(group: &str, g: &mut Group) {
    if g.members.is_empty() {
        if g.state != GroupState::Empty {
            g.generation += 1;
            g.state = GroupState::Empty;
            g.leader = None;
            g.protocol = None;
            g.rebalance_started = None;
            info!(group, generation = g.generation, "group is now empty");
        }
        return;
    }
    if matches!(
        g.state,
        GroupState::Stable | GroupState::CompletingRebalance
    ) {
        prepare_rebalance(group, g, false);
    }
}

fn prepare_rebalance(group: &str, g: &mut Group, from_empty: bool) {
    if g.state == GroupState::CompletingRebalance {
        // Members waiting in SyncGroup must rejoin.
        for m in g.members.values_mut() {
            if let Some((v, tx)) = m.sync.take() {
                let _ = tx.send(fit_sync(
                    SyncGroupResponse::default()
                        .with_error_code(code(ResponseError::RebalanceInProgress)),
                    v,
                    None,
                ));
            }
        }
    }
    g.state = GroupState::PreparingRebalance;
    g.rebalance_started = Some((Instant::now(), from_empty));
    info!(
        group,
        generation = g.generation,
        members = g.members.len(),
        "preparing to rebalance group"
    );
}

/// Completes the join phase when every member has rejoined (after the initial delay for a
/// group that started empty), or when the rebalance timeout passed (dropping the absent).
fn try_complete_join(group: &str, g: &mut Group, initial_delay_ms: i32) {
    if g.state != GroupState::PreparingRebalance {
        return;
    }
    let Some((started, from_empty)) = g.rebalance_started else {
        return;
    };
    let elapsed = started.elapsed();
    let timeout = g
        .members
        .values()
        .map(|m| m.rebalance_timeout)
        .max()
        .unwrap_or_default();
    let all_joined = g.members.values().all(|m| m.join.is_some()) && g.pending.is_empty();
    let delay_done =
        !from_empty || elapsed >= Duration::from_millis(initial_delay_ms.max(0) as u64);
    if !(all_joined && delay_done) && elapsed < timeout {
        return;
    }
    g.members.retain(|_, m| m.join.is_some());
    if g.members.is_empty() {
        member_gone(group, g);
        return;
    }
    g.generation += 1;
    let first = g.members.keys().next().cloned().expect("non-empty");
    let leader = match &g.leader {
        Some(l) if g.members.contains_key(l) => l.clone(),
        _ => first,
    };
    let protocol = select_protocol(g, &leader);
    g.leader = Some(leader.clone());
    g.protocol = protocol;
    g.state = GroupState::CompletingRebalance;
    g.rebalance_started = None;
    g.sync_deadline = Some(Instant::now() + timeout);
    info!(group, generation = g.generation, leader = %leader, members = g.members.len(),
        protocol = ?g.protocol, "rebalance: join phase complete");
    let ids: Vec<String> = g.members.keys().cloned().collect();
    for id in ids {
        let resp_version = g.members[&id].join.as_ref().map(|(v, _)| *v).unwrap_or(0);
        let resp = join_response(g, &id, resp_version);
        if let Some(m) = g.members.get_mut(&id) {
            // Kafka: completeAndScheduleNextHeartbeatExpiration; the session restarts now.
            m.last_heartbeat = Instant::now();
            if let Some((_, tx)) = m.join.take() {
                let _ = tx.send(resp);
            }
        }
    }
}

/// Kafka's `GroupMetadata.selectProtocol`: the candidates are the protocols every member
/// supports; each member votes for the first candidate in its own preference order, and the
/// most votes win. Ties (unspecified in Kafka) go to the leader's preference order.
fn select_protocol(g: &Group, leader: &str) -> Option<String> {
    let supported_by_all = |n: &str| {
        g.members
            .values()
            .all(|m| m.protocols.iter().any(|(p, _)| p == n))
    };
    let mut votes: HashMap<&str, usize> = HashMap::new();
    for m in g.members.values() {
        if let Some((n, _)) = m.protocols.iter().find(|(n, _)| supported_by_all(n)) {
            *votes.entry(n.as_str()).or_default() += 1;
        }
    }
    let most = votes.values().copied().max()?;
    g.members
        .get(leader)?
        .protocols
        .iter()
        .find_map(|(n, _)| (votes.get(n.as_str()) == Some(&most)).then(|| n.clone()))
}

fn join_response(g: &Group, member_id: &str, version: i16) -> JoinGroupResponse {
    let leader = g.leader.clone().unwrap_or_default();
    let protocol = g.protocol.clone().unwrap_or_default();
    let mut r = JoinGroupResponse::default()
        .with_generation_id(g.generation)
        .with_protocol_name(Some(s(&protocol)))
        .with_leader(s(&leader))
        .with_member_id(s(member_id));
    r.protocol_type = g.protocol_type.as_deref().map(s);
    if member_id == leader {
        r.members = g
            .members
            .iter()
            .map(|(id, m)| {
                let meta = m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                JoinGroupResponseMember::default()
                    .with_member_id(s(id))
                    .with_metadata(meta)
            })
            .collect();
    }
    fit_join(r, version)
}

/// Resets fields the version lacks (kafka-protocol refuses to encode them).
fn fit_join(mut r: JoinGroupResponse, version: i16) -> JoinGroupResponse {
    if version < 7 {
        r.protocol_type = None;
        if r.protocol_name.is_none() {
            r.protocol_name = Some(StrBytes::default());
        }
    }
    if version < 9 {
        r.skip_assignment = false;
    }
    r
}

fn fit_sync(mut r: SyncGroupResponse, version: i16, g: Option<&Group>) -> SyncGroupResponse {
    if version >= 5 {
        if let Some(g) = g {
            r.protocol_type = g.protocol_type.as_deref().map(s);
            r.protocol_name = g.protocol.as_deref().map(s);
        }
    } else {
        r.protocol_type = None;
        r.protocol_name = None;
    }
    r
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
        assert_eq!(r.error_code, code(ResponseError::MemberIdRequired));
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
            code(ResponseError::IllegalGeneration)
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
        assert_eq!(hb.error_code, code(ResponseError::UnknownMemberId));
    }

    #[tokio::test(start_paused = true)]
    async fn not_coordinator_for_other_partitions() {
        let gc = GroupCoordinator::new(1, GroupConfig::default());
        let r = gc.join_group(join(""), 5, "c").await;
        assert_eq!(r.error_code, code(ResponseError::NotCoordinator));
    }
}
