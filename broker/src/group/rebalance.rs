//! The classic rebalance protocol: JoinGroup, SyncGroup, Heartbeat and LeaveGroup, and the
//! group state machine's transitions (Empty -> PreparingRebalance -> CompletingRebalance ->
//! Stable).
//!
//! Kafka class mirrored: `GroupCoordinator` (`handleJoinGroup`, `handleSyncGroup`,
//! `handleHeartbeat`, `handleLeaveGroup`, `prepareRebalance`, `onCompleteJoin`) and
//! `GroupMetadata.selectProtocol`.
//!
//! Invariant: every member waiting in JoinGroup or SyncGroup gets exactly one answer: the
//! generation's, or an error when a rebalance or an expiry overtakes it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use common::ErrorCode;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::coordinator::{code, s, GroupCoordinator};
use super::metadata::{Group, GroupState, Member};

impl GroupCoordinator {
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
            return fail(code(ErrorCode::INVALID_SESSION_TIMEOUT), &req.member_id);
        }
        if let Some(reason) = &req.reason {
            debug!(group = %group_id, member_id = %req.member_id, %reason, "JoinGroup reason");
        }
        // JoinGroup v5 adds `group.instance.id` (KIP-345).
        let instance = if version >= 5 {
            req.group_instance_id.as_ref().map(|i| i.to_string())
        } else {
            None
        };
        let rx = {
            let mut groups = self.groups();
            if !req.member_id.is_empty() && !groups.contains_key(&group_id) {
                // Kafka: only a member without an id creates a group.
                return fail(code(ErrorCode::UNKNOWN_MEMBER_ID), &req.member_id);
            }
            let g = groups.entry(group_id.clone()).or_insert_with(Group::new);
            if !accept_joining_member(g, &req.member_id, self.config.max_size) {
                // Kafka: a member that did not rejoin in time is dropped from the rebalance.
                if g.members.remove(req.member_id.as_str()).is_some() {
                    info!(group = %group_id, member_id = %req.member_id, max_size = self.config.max_size,
                        "group is full: removing a member that had not rejoined");
                    try_complete_join(&group_id, g, self.config.initial_rebalance_delay_ms);
                    self.maybe_store_group(&group_id, g);
                    self.wake.notify_one();
                }
                return fail(code(ErrorCode::GROUP_MAX_SIZE_REACHED), "");
            }
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
                return fail(code(ErrorCode::INCONSISTENT_GROUP_PROTOCOL), &req.member_id);
            }
            let client_id = client_id.to_string();
            let session = Duration::from_millis(req.session_timeout_ms as u64);
            let rebalance = if version >= 1 {
                Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
            } else {
                session
            };
            let mut member_id = req.member_id.to_string();
            // A static member rejoining without its member id (a restarted process): (old id).
            let mut replaces = None;
            if member_id.is_empty() {
                match &instance {
                    // Kafka: a static member needs no MEMBER_ID_REQUIRED round trip; its id
                    // is `<group.instance.id>-<uuid>`.
                    Some(instance) => {
                        member_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                        replaces = g.static_member(instance);
                    }
                    None => {
                        member_id = format!("{client_id}-{}", uuid::Uuid::new_v4());
                        if version >= 4 {
                            // KIP-394: the client must rejoin with the id we give it.
                            let expires = Instant::now()
                                + Duration::from_millis(req.session_timeout_ms as u64);
                            g.pending.insert(member_id.clone(), expires);
                            self.wake.notify_one(); // a new pending-member deadline
                            return fail(code(ErrorCode::MEMBER_ID_REQUIRED), &member_id);
                        }
                    }
                }
            } else if g.pending.remove(&member_id).is_none() {
                if let Err(c) = g.validate_member(&member_id, instance.as_deref()) {
                    return fail(c, &member_id);
                }
            }
            let (tx, rx) = oneshot::channel();
            if let Some(old_id) = replaces {
                let instance = instance.as_deref().unwrap_or_default();
                let new = (member_id.as_str(), protocols, session, rebalance);
                self.replace_static_member(&group_id, g, &old_id, instance, new, (version, tx));
            } else {
                let is_new = !g.members.contains_key(&member_id);
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
                m.group_instance_id = instance.clone();
                m.protocols = protocols;
                m.protocol_type = ptype.clone();
                m.last_heartbeat = Instant::now();
                m.join = Some((version, tx));
                g.protocol_type = Some(ptype);
                match g.state {
                    // Kafka: a new group still gaining members extends its initial delay.
                    GroupState::PreparingRebalance => {
                        g.new_member_added |= is_new && g.generation == 0
                    }
                    GroupState::Empty => {
                        prepare_rebalance(&group_id, g, Some(self.initial_delay()))
                    }
                    GroupState::CompletingRebalance | GroupState::Stable => {
                        let is_leader = g.leader.as_deref() == Some(member_id.as_str());
                        // Kafka: a member rejoining unchanged while CompletingRebalance probably
                        // lost its JoinGroup answer: it gets this generation's answer again.
                        // While Stable, the leader's rejoin (it may see new topics) or a change
                        // of metadata starts a rebalance; a follower's unchanged rejoin does not.
                        let stable = g.state == GroupState::Stable;
                        if changed || (stable && is_leader) {
                            prepare_rebalance(&group_id, g, None);
                        } else {
                            let m = g.members.get_mut(&member_id).expect("inserted above");
                            if let Some((v, tx)) = m.join.take() {
                                let _ = tx.send(join_response(g, &member_id, v));
                            }
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
            Err(_) => fail(code(ErrorCode::UNKNOWN_MEMBER_ID), &req.member_id),
        }
    }

    /// A static member rejoined without a member id (its process restarted): the instance's
    /// old member id is replaced by `new.0`, keeping the member's assignment. Whoever still
    /// waits in JoinGroup or SyncGroup under the old id is fenced (FENCED_INSTANCE_ID). A Stable
    /// group whose selected protocol would not change answers at once with the current
    /// generation, no rebalance: before JoinGroup v9 the answer names the old leader id, so a
    /// rejoining leader acts as a follower and fetches its assignment with SyncGroup instead
    /// of computing one the Stable group would ignore; from v9 the leader is told it leads
    /// with `skip_assignment`. A CompletingRebalance group rebalances again (the leader may
    /// be assigning to the old id); a PreparingRebalance group just counts the member as
    /// rejoined.
    /// Kafka: `GroupCoordinator.updateStaticMemberAndRebalance`, `GroupMetadata.replaceStaticMember`.
    fn replace_static_member(
        &self,
        group_id: &str,
        g: &mut Group,
        old_id: &str,
        instance: &str,
        new: (&str, Vec<(String, Bytes)>, Duration, Duration),
        join: (i16, oneshot::Sender<JoinGroupResponse>),
    ) {
        let (new_id, protocols, session, rebalance) = new;
        let fenced = code(ErrorCode::FENCED_INSTANCE_ID);
        let current_leader = g.leader.clone();
        let Some(mut m) = g.members.remove(old_id) else {
            return;
        };
        if let Some((v, tx)) = m.join.take() {
            let _ = tx.send(fit_join(
                JoinGroupResponse::default()
                    .with_error_code(fenced)
                    .with_generation_id(-1)
                    .with_member_id(s(old_id)),
                v,
            ));
        }
        if let Some((v, tx)) = m.sync.take() {
            let _ = tx.send(fit_sync(
                SyncGroupResponse::default().with_error_code(fenced),
                v,
                None,
            ));
        }
        m.protocols = protocols;
        m.session_timeout = session;
        m.rebalance_timeout = rebalance;
        m.last_heartbeat = Instant::now();
        m.join = Some(join);
        g.members.insert(new_id.to_string(), m);
        if g.leader.as_deref() == Some(old_id) {
            g.leader = Some(new_id.to_string());
        }
        info!(
            group = group_id,
            group_instance_id = instance,
            old_member_id = old_id,
            member_id = new_id,
            state = g.state.name(),
            "static member rejoined: replacing its old member id"
        );
        match g.state {
            GroupState::Stable => {
                let leader = g.leader.clone().unwrap_or_default();
                if select_protocol(g, &leader) != g.protocol {
                    prepare_rebalance(group_id, g, None);
                    return;
                }
                info!(
                    group = group_id,
                    generation = g.generation,
                    member_id = new_id,
                    "static member rejoined a stable group: same generation, no rebalance"
                );
                g.stored = None; // the new member id must be written
                self.maybe_store_group(group_id, g);
                let Some((v, tx)) = g.members.get_mut(new_id).and_then(|m| m.join.take()) else {
                    return;
                };
                let r = if v >= 9 {
                    let mut r = join_response(g, new_id, v);
                    r.skip_assignment = leader == new_id;
                    r
                } else {
                    let mut r = JoinGroupResponse::default()
                        .with_generation_id(g.generation)
                        .with_protocol_name(Some(s(g.protocol.as_deref().unwrap_or_default())))
                        .with_leader(s(current_leader.as_deref().unwrap_or_default()))
                        .with_member_id(s(new_id));
                    r.protocol_type = g.protocol_type.as_deref().map(s);
                    fit_join(r, v)
                };
                let _ = tx.send(r);
            }
            GroupState::CompletingRebalance => prepare_rebalance(group_id, g, None),
            GroupState::PreparingRebalance | GroupState::Empty => {}
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
            // Kafka: while loading, the rebalance in flight is lost; REBALANCE_IN_PROGRESS
            // sends the member back to JoinGroup (older clients do not know the load error).
            if c == code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) {
                return fail(code(ErrorCode::REBALANCE_IN_PROGRESS));
            }
            return fail(c);
        }
        let rx = {
            let mut groups = self.groups();
            let Some(g) = groups.get_mut(&group_id) else {
                return fail(code(ErrorCode::UNKNOWN_MEMBER_ID));
            };
            let member_id = req.member_id.to_string();
            let instance = req.group_instance_id.as_deref().filter(|_| version >= 3);
            if let Err(c) = g.validate_member(&member_id, instance) {
                return fail(c);
            }
            if req.generation_id != g.generation {
                return fail(code(ErrorCode::ILLEGAL_GENERATION));
            }
            if version >= 5 {
                let t = req.protocol_type.as_ref().map(|x| x.to_string());
                let n = req.protocol_name.as_ref().map(|x| x.to_string());
                if (t.is_some() && t != g.protocol_type) || (n.is_some() && n != g.protocol) {
                    return fail(code(ErrorCode::INCONSISTENT_GROUP_PROTOCOL));
                }
            }
            match g.state {
                GroupState::Empty => return fail(code(ErrorCode::UNKNOWN_MEMBER_ID)),
                GroupState::PreparingRebalance => {
                    return fail(code(ErrorCode::REBALANCE_IN_PROGRESS))
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
            Err(_) => fail(code(ErrorCode::REBALANCE_IN_PROGRESS)),
        }
    }

    pub async fn heartbeat(&self, req: HeartbeatRequest, version: i16) -> HeartbeatResponse {
        let r = |c: i16| HeartbeatResponse::default().with_error_code(c);
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            // Kafka: a heartbeat while the group loads is answered NONE blindly.
            if c == code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS) {
                return r(0);
            }
            return r(c);
        }
        let mut groups = self.groups();
        let Some(g) = groups.get_mut(&group_id) else {
            return r(code(ErrorCode::UNKNOWN_MEMBER_ID));
        };
        // Kafka: GroupCoordinator.handleHeartbeat checks membership (and the static member's
        // instance id, v3+), then the generation, then the state; only a valid heartbeat
        // extends the session.
        let member_id = req.member_id.to_string();
        let instance = req.group_instance_id.as_deref().filter(|_| version >= 3);
        if let Err(c) = g.validate_member(&member_id, instance) {
            return r(c);
        }
        if req.generation_id != g.generation {
            return r(code(ErrorCode::ILLEGAL_GENERATION));
        }
        if let Some(m) = g.members.get_mut(&member_id) {
            m.last_heartbeat = Instant::now();
        }
        match g.state {
            GroupState::Empty => r(code(ErrorCode::UNKNOWN_MEMBER_ID)),
            GroupState::PreparingRebalance => r(code(ErrorCode::REBALANCE_IN_PROGRESS)),
            GroupState::CompletingRebalance | GroupState::Stable => r(0),
        }
    }

    pub async fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let group_id = req.group_id.to_string();
        if let Err(c) = self.check_group(&group_id) {
            return LeaveGroupResponse::default().with_error_code(c);
        }
        // (member id, group.instance.id): v3+ batches members (KIP-345), each by member id
        // or, for an administrative removal, by instance id alone.
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    if let Some(reason) = &m.reason {
                        debug!(group = %group_id, member_id = %m.member_id, %reason, "LeaveGroup reason");
                    }
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let mut groups = self.groups();
        let mut results = Vec::new();
        let mut top = 0;
        let answer = |id: &str, instance: &Option<String>, c: i16| {
            MemberResponse::default()
                .with_member_id(s(id))
                .with_group_instance_id(instance.as_deref().map(s))
                .with_error_code(c)
        };
        match groups.get_mut(&group_id) {
            None => {
                // Kafka: every member unknown; v3+ keeps the top-level error NONE.
                let c = code(ErrorCode::UNKNOWN_MEMBER_ID);
                if version < 3 {
                    top = c;
                }
                for (id, instance) in &leaving {
                    results.push(answer(id, instance, c));
                }
            }
            Some(g) => {
                let mut removed = false;
                for (id, instance) in &leaving {
                    // Kafka: GroupCoordinator.handleLeaveGroup.
                    let outcome = if id.is_empty() {
                        instance
                            .as_deref()
                            .and_then(|i| g.static_member(i))
                            .ok_or(code(ErrorCode::UNKNOWN_MEMBER_ID))
                    } else if g.pending.remove(id).is_some() {
                        // A member that got its id but never joined (Kafka: removePendingMember).
                        removed = true;
                        Err(0)
                    } else {
                        g.validate_member(id, instance.as_deref())
                            .map(|_| id.clone())
                    };
                    let c = match outcome {
                        Ok(current) => {
                            g.members.remove(&current);
                            removed = true;
                            info!(group = %group_id, member_id = %current,
                                group_instance_id = ?instance, "member left the group");
                            0
                        }
                        Err(c) => c,
                    };
                    if version < 3 {
                        top = c;
                    }
                    results.push(answer(id, instance, c));
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
}

/// Kafka's `GroupCoordinator.acceptJoiningMember` (`group.max.size`): an Empty group takes
/// anyone; while PreparingRebalance a member already waiting is kept and others are taken
/// while fewer than `max_size` wait (so after the limit was lowered the last to rejoin are
/// the ones left out); otherwise a current member is kept and a new one is taken while the
/// group has fewer than `max_size` members.
pub(super) fn accept_joining_member(g: &Group, member_id: &str, max_size: i32) -> bool {
    let max = max_size.max(0) as usize;
    match g.state {
        GroupState::Empty => true,
        GroupState::PreparingRebalance => {
            g.members.get(member_id).is_some_and(|m| m.join.is_some())
                || g.members.values().filter(|m| m.join.is_some()).count() < max
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            g.members.contains_key(member_id) || g.members.len() < max
        }
    }
}

/// A member left or expired: a stable group rebalances; a rebalance may now be complete.
pub(super) fn member_gone(group: &str, g: &mut Group) {
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
        prepare_rebalance(group, g, None);
    }
}

/// Starts a rebalance. `initial_delay`: the group was Empty, so the join phase first waits
/// `group.initial.rebalance.delay.ms` for more members (Kafka's `InitialDelayedJoin`).
pub(super) fn prepare_rebalance(group: &str, g: &mut Group, initial_delay: Option<Duration>) {
    if g.state == GroupState::CompletingRebalance {
        // Members waiting in SyncGroup must rejoin.
        for m in g.members.values_mut() {
            if let Some((v, tx)) = m.sync.take() {
                let _ = tx.send(fit_sync(
                    SyncGroupResponse::default()
                        .with_error_code(code(ErrorCode::REBALANCE_IN_PROGRESS)),
                    v,
                    None,
                ));
            }
        }
    }
    g.state = GroupState::PreparingRebalance;
    g.rebalance_started = Some((Instant::now(), initial_delay.is_some()));
    g.new_member_added = false;
    g.initial_delay = initial_delay.map(|initial_delay| {
        let timeout = g.members.values().map(|m| m.rebalance_timeout).max();
        let remaining = timeout.unwrap_or_default().saturating_sub(initial_delay);
        (Instant::now() + initial_delay, remaining)
    });
    info!(
        group,
        generation = g.generation,
        members = g.members.len(),
        "preparing to rebalance group"
    );
}

/// Completes the join phase when every member has rejoined (after the initial delay for a
/// group that started empty), or when the rebalance timeout passed (dropping the absent).
pub(super) fn try_complete_join(group: &str, g: &mut Group, initial_delay_ms: i32) {
    if g.state != GroupState::PreparingRebalance {
        return;
    }
    let Some((started, _)) = g.rebalance_started else {
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
    let delay_done = match g.initial_delay {
        None => true,
        Some((until, _)) if Instant::now() < until => false,
        Some((_, remaining)) if g.new_member_added && !remaining.is_zero() => {
            // Kafka's InitialDelayedJoin: members are still arriving; wait again.
            let delay = Duration::from_millis(initial_delay_ms.max(0) as u64);
            let step = delay.min(remaining);
            g.initial_delay = Some((Instant::now() + step, remaining.saturating_sub(delay)));
            g.new_member_added = false;
            false
        }
        Some(_) => true,
    };
    if !(all_joined && delay_done) && elapsed < timeout {
        return;
    }
    // Kafka: dynamic members that did not rejoin are dropped; static members stay (their
    // session timeout removes them), so a restarting static member keeps its place.
    g.members
        .retain(|_, m| m.join.is_some() || m.group_instance_id.is_some());
    if g.members.is_empty() {
        member_gone(group, g);
        return;
    }
    let joined = |g: &Group, id: &str| g.members.get(id).is_some_and(|m| m.join.is_some());
    let Some(first) = g.members.keys().find(|id| joined(g, id)).cloned() else {
        // Only absent static members remain: wait another rebalance timeout (Kafka's
        // GroupCoordinator.onCompleteJoin) while their sessions run out.
        g.rebalance_started = Some((Instant::now(), false));
        return;
    };
    g.generation += 1;
    let leader = match &g.leader {
        Some(l) if joined(g, l) => l.clone(),
        _ => first,
    };
    let protocol = select_protocol(g, &leader);
    g.leader = Some(leader.clone());
    g.protocol = protocol;
    g.state = GroupState::CompletingRebalance;
    g.rebalance_started = None;
    g.initial_delay = None;
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
pub(super) fn select_protocol(g: &Group, leader: &str) -> Option<String> {
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

pub(super) fn join_response(g: &Group, member_id: &str, version: i16) -> JoinGroupResponse {
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
pub(super) fn fit_join(mut r: JoinGroupResponse, version: i16) -> JoinGroupResponse {
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

pub(super) fn fit_sync(
    mut r: SyncGroupResponse,
    version: i16,
    g: Option<&Group>,
) -> SyncGroupResponse {
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
