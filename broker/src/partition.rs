//! One hosted replica of a partition: its log, its high watermark, and, on the leader, what
//! each follower has fetched, the ISR decisions and the acks=all check.
//!
//! Kafka concept: the controller tells each replica, with LeaderAndIsr, who leads and which
//! replicas are in sync. The leader appends produced batches (assigning offsets, stamping its
//! leader epoch), records each follower's fetch position, and moves the high watermark to the
//! lowest log end offset in the ISR. A follower that has not caught up for
//! `replica.lag.time.max.ms` is proposed out of the ISR; one that reaches the high watermark is
//! proposed back in (the controller decides, through AlterPartition: see [`crate::isr`]).
//! A produce with acks=all is answered once the high watermark passes its batch.
//! Kafka class mirrored: `kafka.cluster.Partition` (`makeLeader`, `makeFollower`,
//! `appendRecordsToLeader`, `updateFollowerFetchState`, `maybeExpandIsr`, `maybeShrinkIsr`,
//! `checkEnoughReplicasReachOffset`, `truncateTo`).
//!
//! Invariants: the high watermark never moves backwards on the leader and never passes the log
//! end offset of an ISR member; one ISR change per partition is in flight at a time (Kafka's
//! `PendingShrinkIsr` / `PendingExpandIsr`), and the high watermark keeps using the current ISR
//! until the controller answers.
//! Simplification, said plainly: the waiters of acks=all are not kept per partition (Kafka's
//! `DelayedProduce` purgatory); they re-check on the replica manager's progress signal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::leader_and_isr_request::LeaderAndIsrPartitionState;
use storage::{LogAppendInfo, SharedLog};
use tracing::{info, warn};
use uuid::Uuid;

use crate::error::{Error, Result};

/// What a follower has told the leader through its fetches.
#[derive(Debug, Clone)]
pub struct FollowerState {
    /// The follower's log end offset (its last fetch offset).
    pub log_end_offset: i64,
    /// When the follower last fetched up to the leader's log end offset.
    pub last_caught_up: Instant,
    /// The leader's log end offset when the follower last fetched.
    pub last_fetch_leader_log_end_offset: i64,
    /// When the follower last fetched.
    pub last_fetch_time: Instant,
}

/// Replication state of one hosted partition, changed only by LeaderAndIsr (and, on the leader,
/// by follower fetches moving the high watermark).
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    pub controller_epoch: i32,
    pub high_watermark: i64,
    pub followers: HashMap<i32, FollowerState>,
    /// min.insync.replicas for this topic.
    pub min_isr: i32,
    /// An AlterPartition for this partition is waiting for the controller's answer (Kafka's
    /// `PendingShrinkIsr` / `PendingExpandIsr`): sent, being retried, or refused for good.
    pub isr_change_in_flight: bool,
    /// The controller refused the pending change with an error that retrying cannot fix
    /// (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, ...): the change stays pending, and no
    /// other is proposed, until the next LeaderAndIsr (Kafka's `handleAlterPartitionError`
    /// returning false). The code it was refused with.
    pub isr_change_refused: Option<i16>,
    /// While following: the leader's high watermark in the last fetch answer minus this
    /// replica's log end offset after appending it, at least 0 (Kafka's FetcherLagMetrics
    /// ConsumerLag). None until the first answer from the current leader.
    pub fetcher_lag: Option<i64>,
}

/// An ISR the leader proposes to the controller (AlterPartition), with the epochs it is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub isr: Vec<i32>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// What one follower fetch changed on the leader ([`PartitionState::on_follower_fetch`]).
#[derive(Debug, Default)]
pub struct FollowerFetchOutcome {
    /// The high watermark moved: waiters (acks=all, long polls) should look again.
    pub high_watermark_moved: bool,
    /// The follower caught up: the ISR expansion to send to the controller.
    pub expansion: Option<IsrProposal>,
}

/// One hosted replica: its log and its replication state.
pub struct Partition {
    pub topic: String,
    pub partition: i32,
    pub topic_id: Uuid,
    pub log: SharedLog,
    pub state: Mutex<PartitionState>,
}

impl Partition {
    /// A hosted partition before its first LeaderAndIsr: no leader, no ISR, epochs unknown.
    pub fn new(
        topic: String,
        partition: i32,
        topic_id: Uuid,
        log: SharedLog,
        high_watermark: i64,
    ) -> Self {
        Partition {
            topic,
            partition,
            topic_id,
            log,
            state: Mutex::new(PartitionState {
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
                isr: Vec::new(),
                replicas: Vec::new(),
                controller_epoch: -1,
                high_watermark,
                followers: HashMap::new(),
                min_isr: 1,
                isr_change_in_flight: false,
                isr_change_refused: None,
                fetcher_lag: None,
            }),
        }
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, PartitionState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn log(&self) -> std::sync::MutexGuard<'_, storage::Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log().log_end_offset()
    }

    /// Recomputes the leader's high watermark: the lowest log end offset among the ISR
    /// (the leader's own included). Returns true if it moved.
    pub fn maybe_advance_high_watermark(&self, broker_id: i32) -> bool {
        let leo = self.log_end_offset();
        self.state().advance_high_watermark(broker_id, leo)
    }

    /// Applies one partition of a LeaderAndIsr whose leader epoch is newer than ours (Kafka's
    /// `makeLeader` / `makeFollower`); returns true if this broker now leads. A new leadership
    /// starts every follower unknown with its caught-up clock at now.
    pub fn make_leader_or_follower(
        &self,
        broker_id: i32,
        p: &LeaderAndIsrPartitionState,
        min_isr: i32,
    ) -> bool {
        let is_leader = p.leader.0 == broker_id;
        let leo = self.log_end_offset();
        {
            let mut st = self.state();
            let was_leader = st.leader == broker_id;
            let new_epoch = p.leader_epoch > st.leader_epoch;
            if st.leader != p.leader.0 {
                st.fetcher_lag = None;
            }
            st.leader = p.leader.0;
            st.leader_epoch = p.leader_epoch;
            st.partition_epoch = p.partition_epoch;
            st.isr = p.isr.iter().map(|b| b.0).collect();
            st.replicas = p.replicas.iter().map(|b| b.0).collect();
            st.controller_epoch = p.controller_epoch;
            st.isr_change_in_flight = false;
            st.isr_change_refused = None;
            st.min_isr = min_isr;
            if is_leader && (!was_leader || new_epoch) {
                st.followers.clear();
                let now = Instant::now();
                for r in &st.replicas.clone() {
                    if *r != broker_id {
                        st.followers.insert(
                            *r,
                            FollowerState {
                                log_end_offset: -1,
                                last_caught_up: now,
                                last_fetch_leader_log_end_offset: -1,
                                last_fetch_time: now,
                            },
                        );
                    }
                }
                st.high_watermark = st.high_watermark.min(leo);
            }
            if !is_leader {
                st.followers.clear();
            }
        }
        self.maybe_advance_high_watermark(broker_id);
        is_leader
    }

    /// Appends produced batches as the leader (`acks` is -1, 0 or 1): refused up front with
    /// NOT_ENOUGH_REPLICAS for acks=all below `min.insync.replicas`. Returns what was appended
    /// and the leader epoch the acks=all wait must find the batch in. A retried batch already
    /// in the log (idempotent producer) comes back with `duplicate` set and the epoch it was
    /// written in; it moves nothing.
    pub fn append_records_to_leader(
        &self,
        broker_id: i32,
        records: Bytes,
        acks: i16,
    ) -> Result<(LogAppendInfo, i32)> {
        let (leader_epoch, isr_len, min_isr) = {
            let st = self.state();
            (st.leader_epoch, st.isr.len(), st.min_isr)
        };
        if acks == -1 && (isr_len as i32) < min_isr {
            return Err(Error::NotEnoughReplicas {
                isr: isr_len,
                min_isr,
            });
        }
        // The client's bytes go to the file as received; only each batch's 16-byte prefix
        // (base offset, leader epoch) is patched in a side buffer.
        let info = self.log().append_as_leader_shared(records, leader_epoch)?;
        if let Err(e) = self.log().maybe_flush() {
            warn!(topic = %self.topic, partition = self.partition, error = %e, "flush failed");
        }
        if info.duplicate {
            // Perhaps written under an earlier leader: the acks=all wait follows that epoch.
            let written_in = self.log().epoch_for_offset(info.last_offset);
            return Ok((info, written_in.unwrap_or(leader_epoch)));
        }
        self.maybe_advance_high_watermark(broker_id);
        Ok((info, leader_epoch))
    }

    /// The acks=all check (Kafka's `checkEnoughReplicasReachOffset`) for a batch ending before
    /// `offset`, appended in `leader_epoch`: None while it is not committed yet.
    ///
    /// Kafka answers NOT_LEADER_OR_FOLLOWER as soon as the leader is demoted, even when the
    /// batch was already replicated, and a retrying producer without idempotence then writes
    /// it twice. We keep waiting after a demotion: as a follower this broker learns the high
    /// watermark from the new leader, and once it passes `offset` while our log still holds
    /// the batch in the epoch we appended it, the batch is committed and the answer is success.
    /// If the batch is truncated away (it was never replicated), the answer is
    /// NOT_LEADER_OR_FOLLOWER, as Kafka's.
    pub fn check_enough_replicas_reach_offset(
        &self,
        broker_id: i32,
        offset: i64,
        leader_epoch: i32,
    ) -> Option<Result<()>> {
        let still_ours = {
            let log = self.log();
            log.log_end_offset() >= offset && log.epoch_for_offset(offset - 1) == Some(leader_epoch)
        };
        if !still_ours {
            return Some(Err(Error::NotLeaderOrFollower));
        }
        let st = self.state();
        if st.high_watermark < offset {
            return None;
        }
        if st.leader == broker_id && (st.isr.len() as i32) < st.min_isr {
            return Some(Err(Error::NotEnoughReplicasAfterAppend {
                isr: st.isr.len(),
                min_isr: st.min_isr,
            }));
        }
        Some(Ok(()))
    }

    /// Leader side, every `replica.lag.time.max.ms / 2` (Kafka's `maybeShrinkIsr`): the ISR
    /// without the followers that have not caught up for `lag`, if any, and if no other change
    /// is in flight. The change is then marked in flight until the controller answers.
    pub fn maybe_shrink_isr(
        &self,
        broker_id: i32,
        lag: Duration,
        now: Instant,
    ) -> Option<IsrProposal> {
        let leo = self.log_end_offset();
        let mut st = self.state();
        if st.leader != broker_id || st.isr_change_in_flight {
            return None;
        }
        let out: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|r| *r != broker_id)
            .filter(|r| {
                st.followers.get(r).is_some_and(|f| {
                    f.log_end_offset < leo && now.duration_since(f.last_caught_up) > lag
                })
            })
            .collect();
        if out.is_empty() {
            return None;
        }
        let isr: Vec<i32> = st
            .isr
            .iter()
            .copied()
            .filter(|r| !out.contains(r))
            .collect();
        warn!(topic = %self.topic, partition = self.partition, out_of_sync = ?out,
            isr = ?isr, leader_epoch = st.leader_epoch,
            "followers fell behind for replica.lag.time.max.ms: shrinking the ISR");
        st.isr_change_in_flight = true;
        Some(IsrProposal {
            isr,
            leader_epoch: st.leader_epoch,
            partition_epoch: st.partition_epoch,
        })
    }

    /// The controller answered an ISR change this leader proposed: the in-flight mark is
    /// cleared, and an accepted ISR (`Some(proposal)` as the controller wrote it) is taken if
    /// it is for our leader epoch. Returns the ISR sizes (before, after) when it was taken.
    pub fn complete_isr_change(&self, accepted: Option<IsrProposal>) -> Option<(usize, usize)> {
        let mut st = self.state();
        st.isr_change_in_flight = false;
        st.isr_change_refused = None;
        let a = accepted?;
        if a.leader_epoch != st.leader_epoch {
            return None;
        }
        let before = st.isr.len();
        st.isr = a.isr;
        st.partition_epoch = a.partition_epoch;
        info!(topic = %self.topic, partition = self.partition, isr = ?st.isr,
            leader_epoch = st.leader_epoch, partition_epoch = st.partition_epoch,
            "ISR changed (AlterPartition accepted)");
        Some((before, st.isr.len()))
    }

    /// Whether `proposal` is still this leader's pending ISR change: nothing (a LeaderAndIsr,
    /// an accepted or reset change) has settled it since it was proposed. A retry of a change
    /// that is no longer pending is dropped.
    pub fn is_pending(&self, broker_id: i32, proposal: &IsrProposal) -> bool {
        self.state().is_pending(broker_id, proposal)
    }

    /// The controller refused the pending change for good (`code`): it stays pending, so this
    /// leader proposes nothing more until its next LeaderAndIsr (which clears it). Returns
    /// false if the change was no longer pending (the answer came after a LeaderAndIsr).
    pub fn await_leader_and_isr(&self, broker_id: i32, proposal: &IsrProposal, code: i16) -> bool {
        let mut st = self.state();
        if !st.is_pending(broker_id, proposal) {
            return false;
        }
        st.isr_change_refused = Some(code);
        true
    }

    /// Follower side: appends the leader's batches as they are (an empty answer appends
    /// nothing) and takes the leader's high watermark, up to our log end.
    pub fn append_records_to_follower(
        &self,
        records: Bytes,
        leader_high_watermark: i64,
    ) -> storage::Result<()> {
        if !records.is_empty() {
            self.log().append_as_follower(records)?;
        }
        let leo = self.log_end_offset();
        let mut st = self.state();
        let hw = leader_high_watermark.min(leo);
        if hw > st.high_watermark {
            st.high_watermark = hw;
        }
        st.fetcher_lag = Some((leader_high_watermark - leo).max(0));
        Ok(())
    }

    /// Follower side (Kafka's `truncateTo`): drops the log's tail from `offset` on, logging
    /// `why`; the high watermark follows the new log end down.
    pub fn truncate_to(&self, offset: i64, why: &str) {
        let mut log = self.log();
        let leo = log.log_end_offset();
        if offset < leo {
            info!(topic = %self.topic, partition = self.partition, log_end_offset = leo,
                truncate_to = offset, reason = why, "follower truncating divergent tail");
            if let Err(e) = log.truncate_to(offset.max(0)) {
                warn!(topic = %self.topic, partition = self.partition, error = %e,
                    "truncation failed");
            }
        }
        let leo = log.log_end_offset();
        drop(log);
        let mut st = self.state();
        st.high_watermark = st.high_watermark.min(leo);
    }
}

impl PartitionState {
    /// On the leader whose log ends at `leo`: moves the high watermark up to the lowest log end
    /// offset in the ISR (the leader's own included). Returns true if it moved.
    pub fn advance_high_watermark(&mut self, broker_id: i32, leo: i64) -> bool {
        if self.leader != broker_id {
            return false;
        }
        let mut hw = leo;
        for r in &self.isr {
            if *r == broker_id {
                continue;
            }
            let f = self.followers.get(r).map_or(0, |f| f.log_end_offset);
            hw = hw.min(f);
        }
        if hw > self.high_watermark {
            self.high_watermark = hw;
            true
        } else {
            false
        }
    }

    /// A follower fetched at `fetch_offset` (its log end offset) from a leader whose log ends
    /// at `leo`, at `now` (Kafka's `updateFollowerFetchState`). Kafka's rule for the caught-up
    /// clock: caught up now if it reached the leader's log end offset, or caught up as of its
    /// previous fetch if it reached the log end offset the leader had then.
    pub fn update_follower_fetch_state(
        &mut self,
        replica_id: i32,
        fetch_offset: i64,
        leo: i64,
        now: Instant,
    ) {
        if let Some(f) = self.followers.get_mut(&replica_id) {
            if fetch_offset >= leo {
                f.last_caught_up = now;
            } else if fetch_offset >= f.last_fetch_leader_log_end_offset {
                f.last_caught_up = f.last_caught_up.max(f.last_fetch_time);
            }
            f.log_end_offset = fetch_offset;
            f.last_fetch_leader_log_end_offset = leo;
            f.last_fetch_time = now;
        }
    }

    /// Leader side, one follower fetch at `fetch_offset` while the leader's log ends at `leo`
    /// (Kafka's `updateFollowerFetchState`, which then tries `maybeExpandIsr` and
    /// `maybeIncrementLeaderHW`). Send the outcome to `ReplicaManager::complete_follower_fetch`.
    pub fn on_follower_fetch(
        &mut self,
        broker_id: i32,
        replica_id: i32,
        fetch_offset: i64,
        leo: i64,
        now: Instant,
    ) -> FollowerFetchOutcome {
        self.update_follower_fetch_state(replica_id, fetch_offset, leo, now);
        FollowerFetchOutcome {
            high_watermark_moved: self.advance_high_watermark(broker_id, leo),
            expansion: self.maybe_expand_isr(broker_id, replica_id),
        }
    }

    /// See [`Partition::is_pending`].
    fn is_pending(&self, broker_id: i32, proposal: &IsrProposal) -> bool {
        self.leader == broker_id
            && self.isr_change_in_flight
            && self.isr_change_refused.is_none()
            && self.leader_epoch == proposal.leader_epoch
            && self.partition_epoch == proposal.partition_epoch
    }

    /// Leader side, on each follower fetch (Kafka's `maybeExpandIsr`): the ISR with `replica`
    /// re-admitted, once it reached the high watermark and no other change is in flight. The
    /// change is then marked in flight until the controller answers.
    pub fn maybe_expand_isr(&mut self, broker_id: i32, replica: i32) -> Option<IsrProposal> {
        if self.leader != broker_id || self.isr.contains(&replica) || self.isr_change_in_flight {
            return None;
        }
        let f = self.followers.get(&replica)?;
        if f.log_end_offset < self.high_watermark || f.log_end_offset < 0 {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.push(replica);
        self.isr_change_in_flight = true;
        Some(IsrProposal {
            isr,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::BrokerId;

    fn partition(dir: &std::path::Path) -> Partition {
        let log = storage::Log::open(&dir.join("t-0"), storage::LogConfig::default(), 0, 0, true)
            .unwrap();
        Partition::new(
            "t".into(),
            0,
            Uuid::nil(),
            std::sync::Arc::new(Mutex::new(log)),
            0,
        )
    }

    fn leader_and_isr(leader: i32, epoch: i32, isr: &[i32]) -> LeaderAndIsrPartitionState {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        LeaderAndIsrPartitionState::default()
            .with_leader(BrokerId(leader))
            .with_leader_epoch(epoch)
            .with_partition_epoch(epoch)
            .with_isr(ids(isr))
            .with_replicas(ids(&[1, 2, 3]))
    }

    /// Kafka: Partition.makeLeader starts each follower unknown (log end -1), so the high
    /// watermark cannot pass what an ISR member has not confirmed; makeFollower forgets them.
    #[test]
    fn make_leader_starts_followers_unknown_and_make_follower_forgets_them() {
        let d = tempfile::tempdir().unwrap();
        let p = partition(d.path());
        assert!(p.make_leader_or_follower(1, &leader_and_isr(1, 1, &[1, 2]), 2));
        {
            let st = p.state();
            assert_eq!(st.followers.len(), 2);
            assert!(st.followers.values().all(|f| f.log_end_offset == -1));
            assert_eq!(st.min_isr, 2);
        }
        assert!(!p.make_leader_or_follower(1, &leader_and_isr(2, 2, &[2, 1]), 1));
        assert!(p.state().followers.is_empty());
    }

    /// Kafka: Partition.maybeExpandIsr admits a follower once its log end reaches the high
    /// watermark, one change in flight at a time; maybeShrinkIsr drops one that did not catch
    /// up for replica.lag.time.max.ms.
    #[test]
    fn expand_waits_for_the_high_watermark_and_shrink_for_the_lag() {
        let d = tempfile::tempdir().unwrap();
        let p = partition(d.path());
        p.make_leader_or_follower(1, &leader_and_isr(1, 1, &[1, 2]), 1);
        let now = Instant::now();
        {
            let mut st = p.state();
            st.high_watermark = 0;
            assert_eq!(st.maybe_expand_isr(1, 3), None, "follower 3 never fetched");
            st.update_follower_fetch_state(3, 0, 0, now);
            let proposal = st.maybe_expand_isr(1, 3).unwrap();
            assert_eq!(proposal.isr, vec![1, 2, 3]);
            assert!(st.isr_change_in_flight);
            assert_eq!(st.maybe_expand_isr(1, 3), None, "one change in flight");
        }
        assert_eq!(p.complete_isr_change(None), None);
        assert!(!p.state().isr_change_in_flight);
        // Follower 2 never fetched (log end -1, behind our 0): out once the lag passed.
        let later = now + Duration::from_secs(1);
        assert_eq!(p.maybe_shrink_isr(1, Duration::from_secs(5), later), None);
        let shrink = p.maybe_shrink_isr(1, Duration::ZERO, later).unwrap();
        assert_eq!(shrink.isr, vec![1]);
        assert!(p.state().isr_change_in_flight);
        // Accepted: taken (sizes before and after), and the mark cleared.
        assert_eq!(p.complete_isr_change(Some(shrink)), Some((2, 1)));
        assert_eq!(p.state().isr, vec![1]);
        assert!(!p.state().isr_change_in_flight);
    }

    /// Kafka: Partition.checkEnoughReplicasReachOffset: not before the high watermark passes
    /// the batch; NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR then is below min.insync.replicas.
    #[test]
    fn acks_all_check_waits_for_the_high_watermark() {
        let d = tempfile::tempdir().unwrap();
        let p = partition(d.path());
        p.make_leader_or_follower(1, &leader_and_isr(1, 3, &[1, 2]), 1);
        let batch = Bytes::from(storage::batch::simple_batch(0, 3, 10, 1_000));
        let (info, epoch) = p.append_records_to_leader(1, batch, -1).unwrap();
        assert_eq!(epoch, 3);
        let end = info.last_offset + 1;
        assert!(p
            .check_enough_replicas_reach_offset(1, end, epoch)
            .is_none());
        p.state()
            .update_follower_fetch_state(2, end, end, Instant::now());
        assert!(p.maybe_advance_high_watermark(1));
        assert!(matches!(
            p.check_enough_replicas_reach_offset(1, end, epoch),
            Some(Ok(()))
        ));
        p.state().min_isr = 3;
        assert!(matches!(
            p.check_enough_replicas_reach_offset(1, end, epoch),
            Some(Err(Error::NotEnoughReplicasAfterAppend {
                isr: 2,
                min_isr: 3
            }))
        ));
        assert!(matches!(
            p.append_records_to_leader(1, Bytes::new(), -1),
            Err(Error::NotEnoughReplicas { .. })
        ));
    }
}
