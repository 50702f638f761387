//! The coordinator's clock: session expiry, pending-member expiry, the initial rebalance
//! delay, the rebalance timeout and the pending-sync timeout.
//!
//! Kafka concept: the `DelayedHeartbeat` and `DelayedJoin` purgatories. Simplification: one
//! task sleeps until the earliest deadline of every group (or until a handler says a new one
//! may be earlier) and then looks at every group; no periodic polling.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tracing::info;

use super::coordinator::GroupCoordinator;
use super::metadata::{Group, GroupState};
use super::rebalance::{member_gone, try_complete_join};

/// Starts the coordinator's clock: one task that runs [`GroupCoordinator::on_tick`] at each
/// deadline it returns, or when a handler wakes it, and ends once the coordinator is dropped.
pub(super) fn spawn(
    weak: std::sync::Weak<GroupCoordinator>,
    wake: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
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
    })
}

impl GroupCoordinator {
    /// Session expiry and rebalance completion at a deadline; returns the next deadline
    /// (always in the future), if any.
    pub(super) fn on_tick(&self) -> Option<Instant> {
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
        groups
            .values()
            .flat_map(next_deadlines)
            .filter(|d| *d > now)
            .min()
    }
}

/// The instants at which the timer must look at `g` again: member session expiries, pending
/// member expiries, the pending-sync deadline, and the rebalance's delay and timeout.
pub(super) fn next_deadlines(g: &Group) -> Vec<Instant> {
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
    if let (GroupState::PreparingRebalance, Some((started, _))) = (g.state, g.rebalance_started) {
        out.extend(g.initial_delay.map(|(until, _)| until));
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
