//! Whole rebalances driven through the public handlers with paused time, and wire round trips
//! of every advertised version of every response.

use std::fmt::Debug;

use bytes::BytesMut;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::protocol::{Decodable, Encodable};

use super::*;

const G: &str = "g";

fn gid(g: &str) -> GroupId {
    GroupId(s(g))
}

fn join_req(group: &str, member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(5_000)
        .with_member_id(s(member))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"meta")),
            JoinGroupRequestProtocol::default()
                .with_name(s("roundrobin"))
                .with_metadata(Bytes::from_static(b"rr")),
        ])
}

fn coordinator() -> Arc<GroupCoordinator> {
    let gc = GroupCoordinator::new(
        1,
        GroupConfig {
            initial_rebalance_delay_ms: 100,
            ..GroupConfig::default()
        },
    );
    gc.on_elected(partition_for(G, 50));
    gc
}

/// Gets a member id (answering MEMBER_ID_REQUIRED on v4+), without completing a join.
async fn member_id(gc: &GroupCoordinator, version: i16) -> Option<String> {
    if version < 4 {
        return None;
    }
    let r = gc.join_group(join_req(G, ""), version, "client").await;
    assert_eq!(r.error_code, ErrorCode::MEMBER_ID_REQUIRED.code());
    assert!(r.member_id.starts_with("client-"), "{:?}", r.member_id);
    Some(r.member_id.to_string())
}

fn sync_req(
    member: &str,
    generation: i32,
    assignments: &[(&str, &'static [u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(gid(G))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::from_static(a))
                })
                .collect(),
        )
}

fn hb(member: &str, generation: i32) -> HeartbeatRequest {
    HeartbeatRequest::default()
        .with_group_id(gid(G))
        .with_generation_id(generation)
        .with_member_id(s(member))
}

fn commit_req(member: &str, generation: i32, offset: i64) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(G))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])])
}

fn commit_error(r: &OffsetCommitResponse) -> i16 {
    r.topics[0].partitions[0].error_code
}

async fn fetch_offset(gc: &GroupCoordinator, group: &str) -> i64 {
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(group))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])])),
            7,
        )
        .await;
    assert_eq!(f.error_code, 0);
    f.topics[0].partitions[0].committed_offset
}

/// Two members form a stable group at generation 1: returns (leader, follower).
async fn stable_pair(gc: &GroupCoordinator) -> (String, String) {
    let a = member_id(gc, 5).await.expect("v5");
    let b = member_id(gc, 5).await.expect("v5");
    let (ra, rb) = tokio::join!(
        gc.join_group(join_req(G, &a), 5, "client"),
        gc.join_group(join_req(G, &b), 5, "client")
    );
    assert_eq!((ra.error_code, rb.error_code), (0, 0));
    assert_eq!((ra.generation_id, rb.generation_id), (1, 1));
    let leader = ra.leader.to_string();
    let follower = if leader == a { b } else { a };
    let (sl, sf) = tokio::join!(
        gc.sync_group(
            sync_req(&leader, 1, &[(&leader, b"L"), (&follower, b"F")]),
            5
        ),
        gc.sync_group(sync_req(&follower, 1, &[]), 5)
    );
    assert_eq!((sl.error_code, sf.error_code), (0, 0));
    (leader, follower)
}

/// The chosen protocol is the one every member supports, preferred by the members' votes;
/// the leader alone receives the member list with each member's metadata for it.
// Kafka: GroupMetadata.selectProtocol, GroupCoordinator.onCompleteJoin.
#[tokio::test(start_paused = true)]
async fn join_picks_common_protocol_and_only_leader_gets_members() {
    let gc = coordinator();
    let a = member_id(&gc, 7).await.unwrap();
    let b = member_id(&gc, 7).await.unwrap();
    // b supports only roundrobin, so range is not a candidate.
    let mut jb = join_req(G, &b);
    jb.protocols.remove(0);
    let (ra, rb) = tokio::join!(
        gc.join_group(join_req(G, &a), 7, "client"),
        gc.join_group(jb, 7, "client")
    );
    for r in [&ra, &rb] {
        assert_eq!(r.error_code, 0);
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(r.protocol_type.as_deref(), Some("consumer"));
    }
    let (leader, follower) = if ra.leader.as_str() == a.as_str() {
        (&ra, &rb)
    } else {
        (&rb, &ra)
    };
    assert_eq!(leader.members.len(), 2);
    assert!(leader.members.iter().all(|m| m.metadata.as_ref() == b"rr"));
    assert!(follower.members.is_empty());
    // A member whose protocols share nothing with the group is refused.
    let mut bad = join_req(G, "");
    bad.protocols = vec![JoinGroupRequestProtocol::default().with_name(s("sticky"))];
    let r = gc.join_group(bad, 7, "client").await;
    assert_eq!(r.error_code, ErrorCode::INCONSISTENT_GROUP_PROTOCOL.code());
}

/// One member leaves: the other is told REBALANCE_IN_PROGRESS by its heartbeat, rejoins and
/// becomes the leader of generation 2 alone; the leaver is unknown afterwards.
// Kafka: GroupCoordinator.handleLeaveGroup -> removeMemberAndUpdateGroup -> prepareRebalance.
#[tokio::test(start_paused = true)]
async fn leave_triggers_rebalance_for_the_rest() {
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    let r = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(s(&leader))
                    .with_reason(Some(s("shutting down")))]),
            5,
        )
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.members[0].error_code, 0);
    let h = gc.heartbeat(hb(&follower, 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::REBALANCE_IN_PROGRESS.code());
    let r = gc.join_group(join_req(G, &follower), 5, "client").await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 2);
    assert_eq!(r.leader.as_str(), follower);
    assert_eq!(r.members.len(), 1);
    let h = gc.heartbeat(hb(&leader, 2), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
    // A stale generation is refused.
    let h = gc.heartbeat(hb(&follower, 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::ILLEGAL_GENERATION.code());
}

/// A follower that stops heartbeating is removed after its session timeout; the leader,
/// who keeps heartbeating, is then asked to rejoin.
// Kafka: GroupCoordinator.onExpireHeartbeat.
#[tokio::test(start_paused = true)]
async fn session_expiry_removes_only_the_silent_member() {
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let h = gc.heartbeat(hb(&leader, 1), 4).await;
        if h.error_code != 0 {
            assert_eq!(h.error_code, ErrorCode::REBALANCE_IN_PROGRESS.code());
            break;
        }
    }
    let h = gc.heartbeat(hb(&follower, 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
    let h = gc.heartbeat(hb(&leader, 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::REBALANCE_IN_PROGRESS.code());
}

/// A consumer commits what it consumed while a rebalance is being prepared (its
/// partitions-revoked callback runs before it rejoins): Kafka accepts that commit.
// Kafka: GroupCoordinator.doCommitOffsets (only CompletingRebalance refuses).
#[tokio::test(start_paused = true)]
async fn commit_during_preparing_rebalance_is_accepted() {
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req(&follower, 1, 10), 8).await),
        0
    );
    // A third member's join puts the group in PreparingRebalance.
    let gc2 = gc.clone();
    let c = tokio::spawn(async move {
        let id = member_id(&gc2, 5).await.unwrap();
        gc2.join_group(join_req(G, &id), 5, "client").await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        gc.heartbeat(hb(&leader, 1), 4).await.error_code,
        ErrorCode::REBALANCE_IN_PROGRESS.code()
    );
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req(&follower, 1, 20), 8).await),
        0
    );
    assert_eq!(fetch_offset(&gc, G).await, 20);
    // A stale generation is refused, and so is a stranger.
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req(&follower, 0, 30), 8).await),
        ErrorCode::ILLEGAL_GENERATION.code()
    );
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req("nobody", 1, 30), 8).await),
        ErrorCode::UNKNOWN_MEMBER_ID.code()
    );
    // A simple commit into a non-empty group is refused.
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req("", -1, 30), 8).await),
        ErrorCode::UNKNOWN_MEMBER_ID.code()
    );
    // Let the rebalance finish: the others rejoin, generation 2.
    let (rl, rf) = tokio::join!(
        gc.join_group(join_req(G, &leader), 5, "client"),
        gc.join_group(join_req(G, &follower), 5, "client")
    );
    let rc = c.await.unwrap();
    assert_eq!(
        (rl.generation_id, rf.generation_id, rc.generation_id),
        (2, 2, 2)
    );
    // CompletingRebalance: the member knows generation 2 but has no assignment yet.
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req(&follower, 2, 40), 8).await),
        ErrorCode::REBALANCE_IN_PROGRESS.code()
    );
    assert_eq!(fetch_offset(&gc, G).await, 20);
}

/// Consumers that assign partitions themselves commit with generation -1 and no member id;
/// an unknown group with a real generation is ILLEGAL_GENERATION and is not created.
// Kafka: GroupCoordinator.handleCommitOffsets.
#[tokio::test(start_paused = true)]
async fn simple_commit_without_membership() {
    let gc = coordinator();
    let r = gc.offset_commit(commit_req("m", 3, 5), 8).await;
    assert_eq!(commit_error(&r), ErrorCode::ILLEGAL_GENERATION.code());
    assert!(gc
        .list_groups(ListGroupsRequest::default(), 4)
        .groups
        .is_empty());
    let r = gc.offset_commit(commit_req("", -1, 5), 2).await;
    assert_eq!(commit_error(&r), 0);
    assert_eq!(fetch_offset(&gc, G).await, 5);
    // Unknown partitions answer -1; null topics (v2+) list every committed partition.
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(G))
                .with_topics(None),
            2,
        )
        .await;
    assert_eq!(f.topics.len(), 1);
    assert_eq!(f.topics[0].partitions[0].committed_offset, 5);
    // Metadata over offset.metadata.max.bytes fails that partition only.
    let mut req = commit_req("", -1, 6);
    let mut big = req.topics[0].partitions[0].clone();
    big.partition_index = 1;
    big.committed_metadata = Some(s(&"x".repeat(5000)));
    req.topics[0].partitions.push(big);
    let r = gc.offset_commit(req, 8).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        r.topics[0].partitions[1].error_code,
        ErrorCode::OFFSET_METADATA_TOO_LARGE.code()
    );
    let d = gc.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(G)]),
        5,
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
}

/// A member id handed out with MEMBER_ID_REQUIRED holds a rebalance back only until its
/// session timeout; a leader that never sends SyncGroup is dropped after the rebalance timeout.
// Kafka: GroupMetadata.hasAllMembersJoined (pending members), GroupCoordinator.onExpirePendingSync.
#[tokio::test(start_paused = true)]
async fn pending_member_and_missing_sync_do_not_stall_the_group() {
    let gc = coordinator();
    let a = member_id(&gc, 5).await.unwrap();
    let _never = member_id(&gc, 5).await.unwrap();
    let start = Instant::now();
    let r = gc.join_group(join_req(G, &a), 5, "client").await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.members.len(), 1);
    // Completed by the rebalance timeout (5 s) at the latest, not held forever.
    assert!(
        start.elapsed() <= Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );
    // a is the leader and keeps heartbeating but never syncs: after the rebalance timeout
    // (5 s, well within its 10 s session) it is removed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(gc.heartbeat(hb(&a, 1), 4).await.error_code, 0);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let h = gc.heartbeat(hb(&a, 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
}

/// DescribeGroups shows the members with metadata and assignment once Stable, an unknown
/// group as Dead, a group of another coordinator as NOT_COORDINATOR; ListGroups filters by state.
// Kafka: GroupCoordinator.handleDescribeGroup, handleListGroups.
#[tokio::test(start_paused = true)]
async fn describe_and_list_groups() {
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    let other = (0..100)
        .map(|i| format!("other-{i}"))
        .find(|g| partition_for(g, 50) != partition_for(G, 50))
        .unwrap();
    let d = gc.describe_groups(
        DescribeGroupsRequest::default()
            .with_groups(vec![gid(G), gid("unknown-but-mine"), gid(&other)])
            .with_include_authorized_operations(true),
        5,
    );
    let g = &d.groups[0];
    assert_eq!((g.error_code, g.group_state.as_str()), (0, "Stable"));
    assert_eq!(g.protocol_type.as_str(), "consumer");
    assert_eq!(g.protocol_data.as_str(), "range");
    assert_eq!(g.members.len(), 2);
    let lm = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == leader)
        .unwrap();
    assert_eq!(lm.member_assignment.as_ref(), b"L");
    assert_eq!(lm.member_metadata.as_ref(), b"meta");
    assert_eq!(lm.client_id.as_str(), "client");
    let fm = g
        .members
        .iter()
        .find(|m| m.member_id.as_str() == follower)
        .unwrap();
    assert_eq!(fm.member_assignment.as_ref(), b"F");
    let mine = partition_for("unknown-but-mine", 50) == partition_for(G, 50);
    if mine {
        assert_eq!(d.groups[1].group_state.as_str(), "Dead");
    } else {
        assert_eq!(d.groups[1].error_code, ErrorCode::NOT_COORDINATOR.code());
    }
    assert_eq!(d.groups[2].error_code, ErrorCode::NOT_COORDINATOR.code());
    let l = gc.list_groups(
        ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
        4,
    );
    assert_eq!(l.groups.len(), 1);
    assert_eq!(l.groups[0].group_state.as_str(), "Stable");
    let l = gc.list_groups(
        ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        4,
    );
    assert!(l.groups.is_empty());
}

/// Every group API answers NOT_COORDINATOR for a group whose `__consumer_offsets` partition
/// this broker does not lead, and resigning drops the groups it held.
// Kafka: GroupCoordinator.validateGroupStatus, GroupMetadataManager.removeGroupsForPartition.
#[tokio::test(start_paused = true)]
async fn not_coordinator_before_election_and_after_resignation() {
    let gc = coordinator();
    assert_eq!(
        gc.offset_commit(commit_req("", -1, 7), 8).await.topics[0].partitions[0].error_code,
        0
    );
    gc.on_resigned(partition_for(G, 50));
    let nc = ErrorCode::NOT_COORDINATOR.code();
    assert_eq!(gc.join_group(join_req(G, ""), 5, "c").await.error_code, nc);
    assert_eq!(gc.sync_group(sync_req("m", 1, &[]), 5).await.error_code, nc);
    assert_eq!(gc.heartbeat(hb("m", 1), 4).await.error_code, nc);
    let l = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_member_id(s("m")),
            2,
        )
        .await;
    assert_eq!(l.error_code, nc);
    assert_eq!(
        commit_error(&gc.offset_commit(commit_req("", -1, 8), 8).await),
        nc
    );
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(G))
                .with_topics(None),
            7,
        )
        .await;
    assert_eq!(f.error_code, nc);
    // v8: one answer per group.
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
                .with_group_id(gid(G))
                .with_topics(None)]),
            8,
        )
        .await;
    assert_eq!(f.groups[0].error_code, nc);
    // Elected again: the group state was dropped with the partition (kept in memory only).
    gc.on_elected(partition_for(G, 50));
    assert_eq!(fetch_offset(&gc, G).await, -1);
}

/// OffsetFetch v8 answers several groups at once, each with its own offsets.
#[tokio::test(start_paused = true)]
async fn offset_fetch_v8_batches_groups() {
    let gc = coordinator();
    let same = (0..1000)
        .map(|i| format!("g{i}"))
        .find(|g| g != G && partition_for(g, 50) == partition_for(G, 50))
        .unwrap();
    gc.offset_commit(commit_req("", -1, 11), 8).await;
    let mut c = commit_req("", -1, 22);
    c.group_id = gid(&same);
    gc.offset_commit(c, 8).await;
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(G))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0, 1])])),
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(&same))
                    .with_topics(None),
            ]),
            8,
        )
        .await;
    assert_eq!(f.groups.len(), 2);
    let p = &f.groups[0].topics[0].partitions;
    assert_eq!((p[0].committed_offset, p[1].committed_offset), (11, -1));
    assert_eq!(f.groups[1].topics[0].partitions[0].committed_offset, 22);
}

fn round_trip<T: Encodable + Decodable + PartialEq + Debug>(what: &str, msg: &T, version: i16) {
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{what} v{version} does not encode: {e}"));
    assert_eq!(
        buf.len(),
        msg.compute_size(version).unwrap(),
        "{what} v{version} size"
    );
    let mut bytes = buf.freeze();
    let back = T::decode(&mut bytes, version)
        .unwrap_or_else(|e| panic!("{what} v{version} does not decode: {e}"));
    assert!(bytes.is_empty(), "{what} v{version}: trailing bytes");
    // Equal only if no field was set that the version cannot carry.
    assert_eq!(&back, msg, "{what} v{version}");
}

fn versions(key: i16) -> std::ops::RangeInclusive<i16> {
    let (_, lo, hi) = GroupCoordinator::SUPPORTED_APIS
        .iter()
        .chain(GroupCoordinator::ADMIN_APIS)
        .find(|(k, _, _)| *k == key)
        .copied()
        .unwrap();
    lo..=hi
}

/// Every advertised version of every response, produced by a real scenario (successes and
/// errors), survives kafka-protocol's encode then decode unchanged, and non-nullable strings
/// of old versions are never null.
#[tokio::test(start_paused = true)]
async fn every_advertised_response_version_round_trips() {
    for v in versions(11) {
        let gc = coordinator();
        let id = match member_id(&gc, v).await {
            Some(id) => {
                let r = gc.join_group(join_req(G, ""), v, "client").await;
                round_trip("JoinGroup(MEMBER_ID_REQUIRED)", &r, v);
                id
            }
            None => String::new(),
        };
        let mut req = join_req(G, &id);
        if v >= 8 {
            req.reason = Some(s("test"));
        }
        let r = gc.join_group(req, v, "client").await;
        assert_eq!(r.error_code, 0, "JoinGroup v{v}");
        assert!(r.protocol_name.is_some() || v >= 7);
        round_trip("JoinGroup", &r, v);
        let bad = gc.join_group(join_req(G, "stranger"), v, "client").await;
        assert_eq!(bad.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
        assert!(bad.protocol_name.is_some() || v >= 7);
        round_trip("JoinGroup(error)", &bad, v);
    }
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    for v in versions(14) {
        let r = gc.sync_group(sync_req(&follower, 1, &[]), v).await;
        assert_eq!(r.assignment.as_ref(), b"F");
        round_trip("SyncGroup", &r, v);
        round_trip(
            "SyncGroup(error)",
            &gc.sync_group(sync_req(&follower, 9, &[]), v).await,
            v,
        );
    }
    for v in versions(12) {
        round_trip("Heartbeat", &gc.heartbeat(hb(&leader, 1), v).await, v);
    }
    for v in versions(8) {
        let r = gc.offset_commit(commit_req(&leader, 1, 3), v).await;
        assert_eq!(commit_error(&r), 0);
        round_trip("OffsetCommit", &r, v);
    }
    for v in versions(9) {
        let r = if v >= 8 {
            OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid(G))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("x"))
                    .with_topics(None),
            ])
        } else {
            OffsetFetchRequest::default()
                .with_group_id(gid(G))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0, 1])]))
        };
        round_trip("OffsetFetch", &gc.offset_fetch(r, v).await, v);
        let err = OffsetFetchRequest::default()
            .with_group_id(gid(""))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partition_indexes(vec![0])]));
        round_trip("OffsetFetch(error)", &gc.offset_fetch(err, v).await, v);
    }
    for v in versions(15) {
        let r = gc.describe_groups(
            DescribeGroupsRequest::default()
                .with_groups(vec![gid(G), gid("x"), gid("y")])
                .with_include_authorized_operations(v >= 3),
            v,
        );
        round_trip("DescribeGroups", &r, v);
    }
    for v in versions(16) {
        let mut req = ListGroupsRequest::default();
        if v >= 4 {
            req.states_filter = vec![s("Stable")];
        }
        let r = gc.list_groups(req, v);
        assert_eq!(r.groups.len(), 1);
        round_trip("ListGroups", &r, v);
    }
    for v in versions(13) {
        let gc = coordinator();
        let (leader, _) = stable_pair(&gc).await;
        let req = LeaveGroupRequest::default().with_group_id(gid(G));
        let req = if v >= 3 {
            req.with_members(vec![
                MemberIdentity::default().with_member_id(s(&leader)),
                MemberIdentity::default().with_member_id(s("stranger")),
            ])
        } else {
            req.with_member_id(s(&leader))
        };
        let r = gc.leave_group(req, v).await;
        round_trip("LeaveGroup", &r, v);
    }
}

/// With several common protocols, the members' first choices are counted and the majority
/// wins, whoever the leader is.
// Kafka: GroupMetadata.selectProtocol (votes).
#[tokio::test(start_paused = true)]
async fn protocol_is_chosen_by_vote() {
    let gc = coordinator();
    let ids = [
        member_id(&gc, 5).await.unwrap(),
        member_id(&gc, 5).await.unwrap(),
        member_id(&gc, 5).await.unwrap(),
    ];
    // The first id in order becomes the leader of a new group: it alone prefers range.
    let leader = ids.iter().min().unwrap().clone();
    let reqs: Vec<JoinGroupRequest> = ids
        .iter()
        .map(|id| {
            let mut r = join_req(G, id);
            if *id != leader {
                r.protocols.reverse(); // roundrobin first
            }
            r
        })
        .collect();
    let mut it = reqs.into_iter();
    let (r0, r1, r2) = tokio::join!(
        gc.join_group(it.next().unwrap(), 5, "client"),
        gc.join_group(it.next().unwrap(), 5, "client"),
        gc.join_group(it.next().unwrap(), 5, "client")
    );
    for r in [&r0, &r1, &r2] {
        assert_eq!(r.error_code, 0);
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(r.leader.as_str(), leader);
    }
}

/// The timer sleeps until the next deadline instead of polling: a stable group whose
/// members heartbeat every 3 s for a minute wakes it a handful of times, not every 100 ms;
/// and a silent member is still expired at its session timeout, not later.
#[tokio::test(start_paused = true)]
async fn timer_wakes_at_deadlines_only() {
    let gc = coordinator();
    let (leader, follower) = stable_pair(&gc).await;
    let before = gc.timer_runs.load(std::sync::atomic::Ordering::Relaxed);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(gc.heartbeat(hb(&leader, 1), 4).await.error_code, 0);
        assert_eq!(gc.heartbeat(hb(&follower, 1), 4).await.error_code, 0);
    }
    let runs = gc.timer_runs.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(runs <= 40, "timer ran {runs} times in 60 s");
    // The follower goes silent: gone once 10 s have passed since its last heartbeat.
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert_eq!(gc.heartbeat(hb(&leader, 1), 4).await.error_code, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gc.heartbeat(hb(&leader, 1), 4).await.error_code,
        ErrorCode::REBALANCE_IN_PROGRESS.code()
    );
}

/// A member that lost its JoinGroup answer and rejoins unchanged before syncing gets the same
/// generation again (the leader with the member list) instead of starting a new rebalance.
// Kafka: GroupCoordinator.doCurrentMemberJoinGroup, CompletingRebalance with matching metadata.
#[tokio::test(start_paused = true)]
async fn unchanged_rejoin_while_completing_rebalance_repeats_the_answer() {
    let gc = coordinator();
    let a = member_id(&gc, 5).await.unwrap();
    let first = gc.join_group(join_req(G, &a), 5, "client").await;
    assert_eq!((first.error_code, first.generation_id), (0, 1));
    let again = gc.join_group(join_req(G, &a), 5, "client").await;
    assert_eq!((again.error_code, again.generation_id), (0, 1));
    assert_eq!(again.leader.as_str(), a);
    assert_eq!(again.members.len(), 1);
    // Changed metadata does start a new generation.
    let mut changed = join_req(G, &a);
    changed.protocols[0].metadata = Bytes::from_static(b"new");
    let r = gc.join_group(changed, 5, "client").await;
    assert_eq!(r.generation_id, 2);
}

// --- Static membership (KIP-345) ---

fn join_static(instance: &str, member: &str) -> JoinGroupRequest {
    join_req(G, member).with_group_instance_id(Some(s(instance)))
}

/// Two static members (`s1`, `s2`) form a stable group at generation 1 with assignments
/// b"A1" and b"A2": returns (leader id, s1's id, s2's id).
async fn stable_static_pair(gc: &GroupCoordinator) -> (String, String, String) {
    // A static member gets its id at once (no MEMBER_ID_REQUIRED round trip).
    let (r1, r2) = tokio::join!(
        gc.join_group(join_static("s1", ""), 5, "client"),
        gc.join_group(join_static("s2", ""), 5, "client")
    );
    assert_eq!((r1.error_code, r2.error_code), (0, 0));
    assert_eq!((r1.generation_id, r2.generation_id), (1, 1));
    let (id1, id2) = (r1.member_id.to_string(), r2.member_id.to_string());
    assert!(
        id1.starts_with("s1-") && id2.starts_with("s2-"),
        "{id1} {id2}"
    );
    let leader = r1.leader.to_string();
    let syncs = [(id1.as_str(), "s1"), (id2.as_str(), "s2")].map(|(id, inst)| {
        let assignments: &[(&str, &'static [u8])] = if id == leader {
            &[(&id1, b"A1"), (&id2, b"A2")]
        } else {
            &[]
        };
        sync_req(id, 1, assignments).with_group_instance_id(Some(s(inst)))
    });
    let [a, b] = syncs;
    let (sa, sb) = tokio::join!(gc.sync_group(a, 5), gc.sync_group(b, 5));
    assert_eq!(
        (sa.assignment.as_ref(), sb.assignment.as_ref()),
        (&b"A1"[..], &b"A2"[..])
    );
    (leader, id1, id2)
}

fn static_hb(member: &str, instance: &str, generation: i32) -> HeartbeatRequest {
    hb(member, generation).with_group_instance_id(Some(s(instance)))
}

/// A static member that restarts (JoinGroup with its instance id and no member id) while the
/// group is Stable replaces its old member id and gets its old assignment at once: same
/// generation, no rebalance for the other member. Every request from the old member id is
/// then FENCED_INSTANCE_ID (JoinGroup, SyncGroup, Heartbeat, OffsetCommit, LeaveGroup).
// Kafka: GroupCoordinator.doStaticNewMemberJoinGroup, updateStaticMemberAndRebalance,
// validateCurrentMember.
#[tokio::test(start_paused = true)]
async fn static_member_restart_keeps_assignment_and_fences_old_id() {
    let gc = coordinator();
    let (leader, id1, id2) = stable_static_pair(&gc).await;
    // s2 restarts (whichever of the two leads: the follower case; the leader case has its
    // own test).
    let (inst, old, other, other_inst, want) = if leader == id1 {
        ("s2", id2.clone(), id1.clone(), "s1", &b"A2"[..])
    } else {
        ("s1", id1.clone(), id2.clone(), "s2", &b"A1"[..])
    };
    let r = gc.join_group(join_static(inst, ""), 5, "client").await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1, "no new generation");
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    assert_eq!(r.leader.as_str(), leader);
    assert!(r.members.is_empty());
    let sy = gc
        .sync_group(
            sync_req(&new, 1, &[]).with_group_instance_id(Some(s(inst))),
            5,
        )
        .await;
    assert_eq!((sy.error_code, sy.assignment.as_ref()), (0, want));
    // The other member sees nothing: its heartbeat is fine at generation 1.
    let h = gc.heartbeat(static_hb(&other, other_inst, 1), 4).await;
    assert_eq!(h.error_code, 0);
    assert_eq!(
        gc.heartbeat(static_hb(&new, inst, 1), 4).await.error_code,
        0
    );
    // The old id is fenced everywhere.
    let fenced = ErrorCode::FENCED_INSTANCE_ID.code();
    assert_eq!(
        gc.heartbeat(static_hb(&old, inst, 1), 4).await.error_code,
        fenced
    );
    let sy = gc
        .sync_group(
            sync_req(&old, 1, &[]).with_group_instance_id(Some(s(inst))),
            5,
        )
        .await;
    assert_eq!(sy.error_code, fenced);
    let c = gc
        .offset_commit(
            commit_req(&old, 1, 5).with_group_instance_id(Some(s(inst))),
            8,
        )
        .await;
    assert_eq!(commit_error(&c), fenced);
    let j = gc.join_group(join_static(inst, &old), 5, "client").await;
    assert_eq!(j.error_code, fenced);
    let l = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(s(&old))
                    .with_group_instance_id(Some(s(inst)))]),
            5,
        )
        .await;
    assert_eq!((l.error_code, l.members[0].error_code), (0, fenced));
    // The new id commits; an instance id nobody holds is UNKNOWN_MEMBER_ID.
    let c = gc
        .offset_commit(
            commit_req(&new, 1, 5).with_group_instance_id(Some(s(inst))),
            8,
        )
        .await;
    assert_eq!(commit_error(&c), 0);
    let h = gc.heartbeat(static_hb(&new, "nobody", 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
    // Still Stable at generation 1 with the two current ids.
    let d = gc.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(G)]),
        5,
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    let mut ids: Vec<String> = d.groups[0]
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    ids.sort();
    let mut want_ids = vec![new.clone(), other.clone()];
    want_ids.sort();
    assert_eq!(ids, want_ids);
    assert!(d.groups[0]
        .members
        .iter()
        .all(|m| m.group_instance_id.is_some()));
}

/// The leader restarting as a static member: before JoinGroup v9 the answer names the old
/// leader id, so the new process acts as a follower and fetches its old assignment with
/// SyncGroup (a Stable group would ignore a new assignment); from v9 it is told it leads,
/// with the member list and `skip_assignment`. Neither moves the generation.
// Kafka: GroupCoordinator.updateStaticMemberAndRebalance (supportSkippingAssignment).
#[tokio::test(start_paused = true)]
async fn static_leader_restart_skips_assignment() {
    let gc = coordinator();
    let (leader, id1, _) = stable_static_pair(&gc).await;
    let (inst, want) = if leader == id1 {
        ("s1", &b"A1"[..])
    } else {
        ("s2", &b"A2"[..])
    };
    let r = gc.join_group(join_static(inst, ""), 5, "client").await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let new = r.member_id.to_string();
    assert_eq!(
        r.leader.as_str(),
        leader,
        "the old leader id, not the new one"
    );
    assert!(r.members.is_empty());
    let sy = gc
        .sync_group(
            sync_req(&new, 1, &[]).with_group_instance_id(Some(s(inst))),
            5,
        )
        .await;
    assert_eq!((sy.error_code, sy.assignment.as_ref()), (0, want));
    // Again with v9: told it leads, with the members, and to skip the assignment.
    let r = gc.join_group(join_static(inst, ""), 9, "client").await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let newer = r.member_id.to_string();
    assert_eq!(r.leader.as_str(), newer);
    assert!(r.skip_assignment);
    assert_eq!(r.members.len(), 2);
    let sy = gc
        .sync_group(
            sync_req(&newer, 1, &[]).with_group_instance_id(Some(s(inst))),
            5,
        )
        .await;
    assert_eq!((sy.error_code, sy.assignment.as_ref()), (0, want));
    assert_eq!(
        gc.heartbeat(static_hb(&new, inst, 1), 4).await.error_code,
        ErrorCode::FENCED_INSTANCE_ID.code()
    );
}

/// A restarted static member whose protocols change the group's selected protocol does cause
/// a rebalance; so does one rejoining while the group is CompletingRebalance.
// Kafka: updateStaticMemberAndRebalance (selectProtocol changes; CompletingRebalance).
#[tokio::test(start_paused = true)]
async fn static_rejoin_with_other_protocol_rebalances() {
    let gc = coordinator();
    let (_, id1, id2) = stable_static_pair(&gc).await;
    // s2 now supports only roundrobin: range is no longer common.
    let mut j = join_static("s2", "");
    j.protocols.remove(0);
    let (r2, r1) = tokio::join!(gc.join_group(j, 5, "client"), async {
        // s1 learns of the rebalance from its heartbeat and rejoins.
        let h = gc.heartbeat(static_hb(&id1, "s1", 1), 4).await;
        assert_eq!(h.error_code, ErrorCode::REBALANCE_IN_PROGRESS.code());
        gc.join_group(join_static("s1", &id1), 5, "client").await
    });
    assert_eq!((r1.error_code, r2.error_code), (0, 0));
    assert_eq!((r1.generation_id, r2.generation_id), (2, 2));
    assert_eq!(r1.protocol_name.as_deref(), Some("roundrobin"));
    assert_ne!(r2.member_id.as_str(), id2);
}

/// A static member that does not rejoin during a rebalance stays in the group (the leader
/// assigns to it) until its session expires; dynamic members that do not rejoin are dropped.
// Kafka: GroupCoordinator.onCompleteJoin (notYetRejoinedDynamicMembers), onExpireHeartbeat.
#[tokio::test(start_paused = true)]
async fn absent_static_member_stays_until_its_session_expires() {
    let gc = coordinator();
    let (_, id1, id2) = stable_static_pair(&gc).await;
    // A dynamic member joins: a rebalance; only s1 rejoins, s2 stays silent.
    let d = member_id(&gc, 5).await.unwrap();
    let (rd, r1) = tokio::join!(gc.join_group(join_req(G, &d), 5, "client"), async {
        gc.join_group(join_static("s1", &id1), 5, "client").await
    });
    assert_eq!((rd.error_code, r1.error_code), (0, 0));
    assert_eq!(rd.generation_id, 2);
    let leader = if r1.leader.as_str() == id1 { &r1 } else { &rd };
    assert_eq!(
        leader.members.len(),
        3,
        "the absent static member is still a member"
    );
    // The silent s2 is removed once its session (10 s) runs out, which rebalances again.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let h = gc.heartbeat(static_hb(&id2, "s2", 2), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
}

/// LeaveGroup v3+ removes several members in one request, each answered on its own: a static
/// member by its instance id alone (administrative removal), a member by id, an unknown
/// instance id as UNKNOWN_MEMBER_ID.
// Kafka: GroupCoordinator.handleLeaveGroup (KIP-345 batch leave).
#[tokio::test(start_paused = true)]
async fn leave_group_by_instance_id_in_a_batch() {
    let gc = coordinator();
    let (_, id1, id2) = stable_static_pair(&gc).await;
    let r = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_members(vec![
                    MemberIdentity::default().with_group_instance_id(Some(s("s1"))),
                    MemberIdentity::default().with_group_instance_id(Some(s("nobody"))),
                    MemberIdentity::default()
                        .with_member_id(s(&id2))
                        .with_group_instance_id(Some(s("s2"))),
                ]),
            3,
        )
        .await;
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, ErrorCode::UNKNOWN_MEMBER_ID.code(), 0]);
    assert_eq!(r.members[0].group_instance_id.as_deref(), Some("s1"));
    let h = gc.heartbeat(static_hb(&id1, "s1", 1), 4).await;
    assert_eq!(h.error_code, ErrorCode::UNKNOWN_MEMBER_ID.code());
    let d = gc.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(G)]),
        5,
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
}

// --- Group settings (`group.*`, `offset.metadata.max.bytes`) ---

fn coordinator_with(config: GroupConfig) -> Arc<GroupCoordinator> {
    let gc = GroupCoordinator::new(1, config);
    gc.on_elected(partition_for(G, 50));
    gc
}

/// `group.min.session.timeout.ms` / `group.max.session.timeout.ms` bound the session timeout a
/// member may ask for: 3 s is refused at Kafka's default minimum (6 s) and accepted once the
/// minimum is lowered; beyond the maximum is refused too.
// Kafka: GroupCoordinator.handleJoinGroup (INVALID_SESSION_TIMEOUT).
#[tokio::test(start_paused = true)]
async fn session_timeout_bounds_come_from_the_config() {
    let short = || join_req(G, "").with_session_timeout_ms(3000);
    let gc = coordinator();
    let r = gc.join_group(short(), 5, "client").await;
    assert_eq!(r.error_code, ErrorCode::INVALID_SESSION_TIMEOUT.code());
    let gc = coordinator_with(GroupConfig {
        min_session_timeout_ms: 1000,
        max_session_timeout_ms: 20_000,
        initial_rebalance_delay_ms: 100,
        ..GroupConfig::default()
    });
    let r = gc.join_group(short(), 5, "client").await;
    assert_eq!(r.error_code, ErrorCode::MEMBER_ID_REQUIRED.code());
    let long = join_req(G, "").with_session_timeout_ms(30_000);
    let r = gc.join_group(long, 5, "client").await;
    assert_eq!(r.error_code, ErrorCode::INVALID_SESSION_TIMEOUT.code());
}

/// `group.max.size`: a full Stable group refuses a new member (before handing it a member
/// id) and a new static member with GROUP_MAX_SIZE_REACHED, while its members rejoin as
/// usual; a member leaving makes room again.
// Kafka: GroupCoordinator.acceptJoiningMember.
#[tokio::test(start_paused = true)]
async fn group_max_size_refuses_members_beyond_it() {
    let gc = coordinator_with(GroupConfig {
        max_size: 2,
        initial_rebalance_delay_ms: 100,
        ..GroupConfig::default()
    });
    let (leader, follower) = stable_pair(&gc).await;
    let full = ErrorCode::GROUP_MAX_SIZE_REACHED.code();
    let r = gc.join_group(join_req(G, ""), 5, "client").await;
    assert_eq!((r.error_code, r.member_id.as_str()), (full, ""));
    let r = gc.join_group(join_static("s9", ""), 5, "client").await;
    assert_eq!(r.error_code, full);
    // The follower's unchanged rejoin is fine (same generation).
    let r = gc.join_group(join_req(G, &follower), 5, "client").await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let r = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_member_id(s(&follower)),
            0,
        )
        .await;
    assert_eq!(r.error_code, 0);
    // Rebalancing with one member waiting: one more may join.
    let (rl, rn) = tokio::join!(
        gc.join_group(join_req(G, &leader), 5, "client"),
        gc.join_group(join_req(G, ""), 3, "client")
    );
    assert_eq!((rl.error_code, rn.error_code), (0, 0));
    assert_eq!(rl.generation_id, 2);
}

/// `offset.metadata.max.bytes`: a commit whose metadata is longer fails only that partition
/// with OFFSET_METADATA_TOO_LARGE.
// Kafka: GroupMetadataManager.validateOffsetMetadataLength.
#[tokio::test(start_paused = true)]
async fn offset_metadata_limit_comes_from_the_config() {
    let gc = coordinator_with(GroupConfig {
        offset_metadata_max_bytes: 4,
        ..GroupConfig::default()
    });
    let mut req = commit_req("", -1, 7);
    let mut long = req.topics[0].partitions[0].clone();
    long.partition_index = 1;
    long.committed_metadata = Some(s("12345"));
    req.topics[0].partitions[0].committed_metadata = Some(s("1234"));
    req.topics[0].partitions.push(long);
    let r = gc.offset_commit(req, 8).await;
    let codes: Vec<i16> = r.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, ErrorCode::OFFSET_METADATA_TOO_LARGE.code()]);
    assert_eq!(fetch_offset(&gc, G).await, 7);
}

/// OffsetCommit for a topic the broker does not know, or a partition beyond the topic's
/// count, answers UNKNOWN_TOPIC_OR_PARTITION for that partition alone; the known ones are
/// committed; a commit with nothing known does not create the group.
// Kafka: KafkaApis.handleOffsetCommitRequest (metadataCache.contains).
#[tokio::test(start_paused = true)]
async fn commit_to_unknown_topic_or_partition_is_refused_per_partition() {
    let gc = coordinator();
    // The metadata: topic "t" with 4 partitions.
    let known = |t: &str, p: i32| t == "t" && (0..4).contains(&p);
    let part = |i: i32| {
        OffsetCommitRequestPartition::default()
            .with_partition_index(i)
            .with_committed_offset(10 + i as i64)
    };
    let req = commit_req("", -1, 0).with_topics(vec![
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![part(0), part(99)]),
        OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("nope")))
            .with_partitions(vec![part(0)]),
    ]);
    let r = gc.offset_commit_known(req, 8, known).await;
    let codes: Vec<Vec<i16>> = r
        .topics
        .iter()
        .map(|t| t.partitions.iter().map(|p| p.error_code).collect())
        .collect();
    let unknown = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
    assert_eq!(codes, vec![vec![0, unknown], vec![unknown]]);
    assert_eq!(r.topics[1].name.as_str(), "nope");
    assert_eq!(fetch_offset(&gc, G).await, 10);
    // Nothing known: answered without touching (or creating) the group.
    let only_unknown = OffsetCommitRequest::default()
        .with_group_id(gid("other"))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("nope")))
            .with_partitions(vec![part(0)])]);
    let other = GroupCoordinator::new(1, GroupConfig::default());
    other.on_elected(partition_for("other", 50));
    let r = other.offset_commit_known(only_unknown, 8, known).await;
    assert_eq!(r.topics[0].partitions[0].error_code, unknown);
    let l = other.list_groups(ListGroupsRequest::default(), 4);
    assert!(l.groups.is_empty(), "{:?}", l.groups);
}

// --- DeleteGroups and OffsetDelete ---

/// A ConsumerProtocolSubscription v0 for `topics` (as a consumer's JoinGroup metadata).
fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for t in topics {
        b.extend_from_slice(&(t.len() as i16).to_be_bytes());
        b.extend_from_slice(t.as_bytes());
    }
    b.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    b.freeze()
}

fn offset_delete_req(group: &str, topics: &[(&str, i32)]) -> OffsetDeleteRequest {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    OffsetDeleteRequest::default()
        .with_group_id(gid(group))
        .with_topics(
            topics
                .iter()
                .map(|(t, p)| {
                    OffsetDeleteRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![
                            OffsetDeleteRequestPartition::default().with_partition_index(*p)
                        ])
                })
                .collect(),
        )
}

fn delete_groups_req(groups: &[&str]) -> DeleteGroupsRequest {
    DeleteGroupsRequest::default().with_groups_names(groups.iter().map(|g| gid(g)).collect())
}

async fn fetch_at(gc: &GroupCoordinator, topic: &str) -> i64 {
    let f = gc
        .offset_fetch(
            OffsetFetchRequest::default()
                .with_group_id(gid(G))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partition_indexes(vec![0])])),
            7,
        )
        .await;
    f.topics[0].partitions[0].committed_offset
}

/// OffsetDelete on a consumer group with a member deletes the offsets of topics it does not
/// subscribe to and refuses the subscribed one (GROUP_SUBSCRIBED_TO_TOPIC) and unknown
/// partitions; DeleteGroups refuses a group with members (NON_EMPTY_GROUP), an unknown group
/// (GROUP_ID_NOT_FOUND) and another coordinator's (NOT_COORDINATOR), and deletes the group
/// with its offsets once Empty.
// Kafka: GroupCoordinator.handleDeleteOffsets, handleDeleteGroups; KafkaApis' metadata check.
#[tokio::test(start_paused = true)]
async fn delete_offsets_and_groups() {
    let gc = coordinator();
    let id = member_id(&gc, 5).await.unwrap();
    let mut j = join_req(G, &id);
    j.protocols[0].metadata = subscription(&["t"]);
    let r = gc.join_group(j, 5, "client").await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    assert_eq!(
        gc.sync_group(sync_req(&id, 1, &[(&id, b"A")]), 5)
            .await
            .error_code,
        0
    );
    for topic in ["t", "u"] {
        let mut c = commit_req(&id, 1, 5);
        c.topics[0].name = TopicName(s(topic));
        assert_eq!(commit_error(&gc.offset_commit(c, 8).await), 0);
    }
    let known = |t: &str, p: i32| (t == "t" || t == "u") && p == 0;
    let r = gc
        .offset_delete_known(
            offset_delete_req(G, &[("t", 0), ("u", 0), ("x", 0)]),
            0,
            known,
        )
        .await;
    assert_eq!(r.error_code, 0);
    let codes: Vec<i16> = r
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC.code(),
            0,
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
        ]
    );
    assert_eq!(
        (fetch_at(&gc, "t").await, fetch_at(&gc, "u").await),
        (5, -1)
    );
    // An unknown group of this coordinator, and a group of another one.
    let mine = |n: &&String| partition_for(n, 50) == partition_for(G, 50);
    let names: Vec<String> = (0..1000).map(|i| format!("nope{i}")).collect();
    let unknown = names.iter().find(mine).unwrap();
    let elsewhere = names.iter().find(|n| !mine(n)).unwrap();
    let r = gc
        .offset_delete_known(offset_delete_req(unknown, &[("t", 0)]), 0, known)
        .await;
    assert_eq!(r.error_code, ErrorCode::GROUP_ID_NOT_FOUND.code());
    assert!(r.topics.is_empty());
    let r = gc
        .delete_groups(delete_groups_req(&[G, unknown, elsewhere]), 2)
        .await;
    let codes: Vec<i16> = r.results.iter().map(|g| g.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::NON_EMPTY_GROUP.code(),
            ErrorCode::GROUP_ID_NOT_FOUND.code(),
            ErrorCode::NOT_COORDINATOR.code()
        ]
    );
    let l = LeaveGroupRequest::default()
        .with_group_id(gid(G))
        .with_member_id(s(&id));
    assert_eq!(gc.leave_group(l, 0).await.error_code, 0);
    // Empty: any offset may go; then the group itself.
    let r = gc
        .offset_delete_known(offset_delete_req(G, &[("t", 0)]), 0, known)
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let mut c = commit_req("", -1, 9);
    c.topics[0].name = TopicName(s("u"));
    assert_eq!(commit_error(&gc.offset_commit(c, 8).await), 0);
    let r = gc.delete_groups(delete_groups_req(&[G]), 2).await;
    assert_eq!(r.results[0].error_code, 0);
    assert_eq!(fetch_at(&gc, "u").await, -1);
    let d = gc.describe_groups(
        DescribeGroupsRequest::default().with_groups(vec![gid(G)]),
        5,
    );
    assert_eq!(d.groups[0].group_state.as_str(), "Dead");
    let r = gc.delete_groups(delete_groups_req(&[G]), 0).await;
    assert_eq!(
        r.results[0].error_code,
        ErrorCode::GROUP_ID_NOT_FOUND.code()
    );
    for v in versions(42) {
        round_trip("DeleteGroups", &r, v);
    }
    let r = gc
        .offset_delete_known(offset_delete_req(G, &[("t", 0)]), 0, known)
        .await;
    round_trip("OffsetDelete", &r, 0);
}

/// A static member restarting while its old process still waits in JoinGroup (a rebalance
/// is under way): the old JoinGroup is answered FENCED_INSTANCE_ID at once and the new one
/// takes its place in the rebalance.
// Kafka: GroupMetadata.replaceStaticMember (fences a waiting join), PreparingRebalance case.
#[tokio::test(start_paused = true)]
async fn restart_during_rebalance_fences_the_waiting_old_join() {
    let gc = coordinator();
    let (_, id1, id2) = stable_static_pair(&gc).await;
    let mut changed = join_static("s1", &id1);
    changed.protocols[0].metadata = Bytes::from_static(b"new");
    let (old, new, r2) = tokio::join!(
        gc.join_group(changed, 5, "client"),
        async {
            // Let the old join start the rebalance and wait.
            tokio::time::sleep(Duration::from_millis(10)).await;
            gc.join_group(join_static("s1", ""), 5, "client").await
        },
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            gc.join_group(join_static("s2", &id2), 5, "client").await
        }
    );
    assert_eq!(old.error_code, ErrorCode::FENCED_INSTANCE_ID.code());
    assert_eq!((new.error_code, r2.error_code), (0, 0));
    assert_eq!((new.generation_id, r2.generation_id), (2, 2));
    assert_ne!(new.member_id.as_str(), id1);
}

/// A new group's first rebalance waits `group.initial.rebalance.delay.ms` and waits again
/// each time new members arrived meanwhile (bounded by the rebalance timeout); members joining
/// a group that is Empty at a later generation do not extend it.
// Kafka: InitialDelayedJoin, GroupCoordinator.addMemberAndRebalance (newMemberAdded when
// generation 0).
#[tokio::test(start_paused = true)]
async fn initial_delay_extends_while_a_new_group_gains_members() {
    let gc = coordinator(); // delay 100 ms, rebalance timeout 5 s
    let t0 = Instant::now();
    let joined_after = |ms: u64| {
        let gc = gc.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let r = gc.join_group(join_req(G, ""), 3, "client").await;
            assert_eq!(r.error_code, 0);
            (r.generation_id, r.member_id.to_string())
        }
    };
    let (a, b, c) = tokio::join!(joined_after(0), joined_after(80), joined_after(150));
    assert_eq!((a.0, b.0, c.0), (1, 1, 1));
    // 0 -> 100 (b arrived: wait again) -> 200 (c arrived: again) -> 300.
    assert_eq!(t0.elapsed(), Duration::from_millis(300));
    // Everyone leaves: Empty at generation 2; two members join 50 ms apart: one delay only.
    let ids: Vec<MemberIdentity> = [a.1, b.1, c.1]
        .iter()
        .map(|id| MemberIdentity::default().with_member_id(s(id)))
        .collect();
    let l = gc
        .leave_group(
            LeaveGroupRequest::default()
                .with_group_id(gid(G))
                .with_members(ids),
            3,
        )
        .await;
    assert!(l.members.iter().all(|m| m.error_code == 0));
    let t1 = Instant::now();
    let (d, e) = tokio::join!(joined_after(0), joined_after(50));
    assert_eq!((d.0, e.0), (3, 3));
    assert_eq!(t1.elapsed(), Duration::from_millis(100));
}
