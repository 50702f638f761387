//! A consumer group's state: its members, generation, protocol and leader, and what the admin
//! APIs (DescribeGroups, ListGroups) show of it.
//!
//! Kafka classes mirrored: `GroupMetadata` (with `GroupState`) and `MemberMetadata`;
//! `GroupCoordinator.handleDescribeGroup` / `handleListGroups`.
//!
//! Invariant: a group in the map is one this broker coordinates (its `__consumer_offsets`
//! partition is led here); `Dead` is not a state but the group's absence.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use common::ErrorCode;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, JoinGroupResponse, ListGroupsRequest,
    ListGroupsResponse, SyncGroupResponse,
};
use tokio::sync::oneshot;
use tracing::info;

use super::coordinator::{code, s, GroupCoordinator};
use super::placement::partition_for;

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

pub(super) struct Member {
    /// The client's `client.id` and address, shown by DescribeGroups.
    pub(super) client_id: String,
    pub(super) client_host: String,
    /// `group.instance.id` (KIP-345): a static member. The group's instance-id map (Kafka's
    /// `GroupMetadata.staticMembers`) is this field of its members, so it can never disagree
    /// with the member list (see [`Group::static_member`]).
    pub(super) group_instance_id: Option<String>,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) protocol_type: String,
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) assignment: Bytes,
    pub(super) last_heartbeat: Instant,
    pub(super) join: Option<(i16, oneshot::Sender<JoinGroupResponse>)>,
    pub(super) sync: Option<(i16, oneshot::Sender<SyncGroupResponse>)>,
}

pub(super) struct Group {
    pub(super) state: GroupState,
    pub(super) generation: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    pub(super) members: BTreeMap<String, Member>,
    /// When the current rebalance started, and whether it began from an empty group.
    pub(super) rebalance_started: Option<(Instant, bool)>,
    /// A rebalance that began from an empty group first waits `group.initial.rebalance.delay.ms`
    /// and, while a new group (generation 0) keeps gaining members, waits that long again, up
    /// to its rebalance timeout (Kafka's `InitialDelayedJoin`): (the end of the current wait,
    /// what may still be added after it).
    pub(super) initial_delay: Option<(Instant, Duration)>,
    /// A new member joined during the current initial delay (Kafka's `newMemberAdded`).
    pub(super) new_member_added: bool,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet joined (KIP-394), with the
    /// time they expire if the client never comes back (its session timeout). A rebalance
    /// waits for them, as Kafka's `GroupMetadata.hasAllMembersJoined` does.
    pub(super) pending: HashMap<String, Instant>,
    /// While CompletingRebalance: when members that have not sent SyncGroup are dropped
    /// (Kafka's pending-sync timeout, the rebalance timeout), so a leader that never syncs
    /// cannot stall the group.
    pub(super) sync_deadline: Option<Instant>,
    /// The (generation, state) last queued to `__consumer_offsets`, so each Stable or Empty
    /// generation is written once.
    pub(super) stored: Option<(i32, GroupState)>,
    pub(super) offsets: HashMap<(String, i32), (i64, i32, Option<String>)>,
}

impl Group {
    pub(super) fn new() -> Self {
        Group {
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            rebalance_started: None,
            initial_delay: None,
            new_member_added: false,
            pending: HashMap::new(),
            sync_deadline: None,
            stored: None,
            offsets: HashMap::new(),
        }
    }
}

impl Group {
    /// The member id that `instance` (a `group.instance.id`) currently maps to (Kafka's
    /// `GroupMetadata.currentStaticMemberId`).
    pub(super) fn static_member(&self, instance: &str) -> Option<String> {
        self.members
            .iter()
            .find(|(_, m)| m.group_instance_id.as_deref() == Some(instance))
            .map(|(id, _)| id.clone())
    }

    /// Kafka's `GroupCoordinator.validateCurrentMember`: with an instance id, it must map to
    /// `member_id` (another member id holding it means this request comes from a replaced
    /// instance: FENCED_INSTANCE_ID; an unknown instance id: UNKNOWN_MEMBER_ID); without one,
    /// `member_id` must be a member.
    pub(super) fn validate_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
    ) -> Result<(), i16> {
        match instance {
            Some(instance) => match self.static_member(instance) {
                Some(current) if current != member_id => {
                    info!(member_id, group_instance_id = instance, current_member_id = %current,
                        "request from a replaced static member: fenced");
                    Err(code(ErrorCode::FENCED_INSTANCE_ID))
                }
                Some(_) => Ok(()),
                None => Err(code(ErrorCode::UNKNOWN_MEMBER_ID)),
            },
            None if self.members.contains_key(member_id) => Ok(()),
            None => Err(code(ErrorCode::UNKNOWN_MEMBER_ID)),
        }
    }
}

impl GroupCoordinator {
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
                    d.error_code = code(ErrorCode::NOT_COORDINATOR);
                    return d;
                }
                if self.is_loading(gid) {
                    d.error_code = code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS);
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
                .with_error_code(code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS));
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
}
