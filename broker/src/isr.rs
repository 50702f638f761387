//! The leader's ISR changes on their way to the controller: Kafka's `AlterPartitionManager`.
//!
//! Kafka concept: a follower stays in the in-sync replica set while it keeps up: if it has not
//! caught up to the leader's log end for `replica.lag.time.max.ms`, the leader shrinks the ISR;
//! once its log end reaches the high watermark, the leader expands the ISR again (those
//! decisions are [`crate::partition::Partition`]'s). Since Kafka 2.7 (KIP-497) the leader does
//! not write ZooKeeper itself: it sends AlterPartition to the controller, which checks leader
//! epoch and partition epoch, writes the state znode with a fenced conditional write, answers
//! with the new state, and tells every broker with UpdateMetadata. We chose that path (not the
//! older `/isr_change_notification`) so the controller stays the only writer of partition
//! state. The controller's side of the API is `crate::api::alter_partition`.
//! Kafka: `AlterPartitionManager`, and the `IsrShrinksPerSec` / `IsrExpandsPerSec` meters.
//!
//! Invariant: one change per partition is in flight at a time (Kafka's `PendingShrinkIsr` /
//! `PendingExpandIsr`); the high watermark keeps using the current ISR until the answer.
//! Changes are batched per broker by [`AlterPartitionManager`], as Kafka's is.
//!
//! What a refusal does (Kafka: `Partition.handleAlterPartitionError`,
//! `DefaultAlterPartitionManager.handleAlterPartitionResponse`; [`classify`] is the table):
//! - the request failed as a whole (no controller known, a broken connection, top-level
//!   NOT_CONTROLLER or STALE_BROKER_EPOCH), or one partition got an error not listed below:
//!   the same change is sent again after a back-off (50 ms doubling to 2 s; Kafka: 50 ms), for as
//!   long as it is still the partition's pending change;
//! - OPERATION_NOT_ATTEMPTED or INELIGIBLE_REPLICA: the controller says the change was not
//!   applied and our state is current, so the pending mark is cleared and the leader may
//!   propose again (a follower still out of sync is proposed again at the next check);
//! - FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_ID,
//!   INVALID_REQUEST, NEW_LEADER_ELECTED: this leader's view is out of date; the change stays
//!   pending and nothing more is proposed for the partition until the controller's next
//!   LeaderAndIsr replaces its state. (Before, every refusal cleared the mark and the next ISR
//!   check, every `replica.lag.time.max.ms / 2`, proposed the same refused change again,
//!   forever, on a broker the cluster had moved on from.)
//!
//! Metrics: [`IsrMetrics`] also counts failed ISR updates (Kafka's `FailedIsrUpdatesPerSec`),
//! and `crate::metrics` shows how many partitions have a change pending or refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::messages::alter_partition_request::{PartitionData, TopicData};
use kafka_protocol::messages::alter_partition_response as resp;
use kafka_protocol::messages::{
    AlterPartitionRequest, AlterPartitionResponse, ApiKey, BrokerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};
use crate::partition::{IsrProposal, Partition};
use crate::replica_manager::ReplicaManager;

/// Version we send (names, not topic ids).
const ALTER_PARTITION_VERSION: i16 = 1;

/// The ISR change counters (Kafka's `IsrShrinksPerSec` / `IsrExpandsPerSec` /
/// `FailedIsrUpdatesPerSec` meters).
#[derive(Debug, Default)]
pub struct IsrMetrics {
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
    failed_isr_updates: AtomicU64,
}

impl IsrMetrics {
    /// Called when the controller accepted an ISR change this broker (the leader) proposed.
    pub fn record_isr_change(&self, before: usize, after: usize) {
        if after < before {
            self.isr_shrinks.fetch_add(1, Ordering::Relaxed);
        } else if after > before {
            self.isr_expands.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Called when the controller refused a partition's ISR change (Kafka's `markFailed`).
    pub fn record_failed_isr_update(&self) {
        self.failed_isr_updates.fetch_add(1, Ordering::Relaxed);
    }

    /// Refused ISR changes so far.
    pub fn failed_isr_updates(&self) -> u64 {
        self.failed_isr_updates.load(Ordering::Relaxed)
    }

    /// (shrinks, expands) so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.isr_shrinks.load(Ordering::Relaxed),
            self.isr_expands.load(Ordering::Relaxed),
        )
    }
}

/// One proposed ISR change waiting for the controller.
pub struct PendingChange {
    part: Arc<Partition>,
    proposal: IsrProposal,
}

/// Most partitions sent in one AlterPartition request.
const MAX_BATCH: usize = 10_000;

/// Kafka's `AlterPartitionManager`: proposed ISR changes queue here and one task sends them to
/// the controller, everything pending in one AlterPartition request, one request at a time,
/// on one connection kept while the controller stays the same. (One request and one
/// connection per partition made a restarted broker's thousands of ISR expansions reach the
/// controller as thousands of events, each with its own ZooKeeper write, and time out.)
/// The sending task holds the replica manager weakly: it ends when the broker is gone.
pub struct AlterPartitionManager {
    replicas: Weak<ReplicaManager>,
    queue: OnceLock<mpsc::UnboundedSender<PendingChange>>,
}

impl AlterPartitionManager {
    pub fn new(replicas: Weak<ReplicaManager>) -> Self {
        AlterPartitionManager {
            replicas,
            queue: OnceLock::new(),
        }
    }

    /// Queues a change `part` marked in flight (see `Partition::maybe_shrink_isr` and
    /// `PartitionState::maybe_expand_isr`); the answer clears the mark.
    pub fn submit(&self, part: &Arc<Partition>, proposal: IsrProposal) {
        let tx = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_sender(self.replicas.clone(), rx, tx.downgrade()));
            tx
        });
        let change = PendingChange {
            part: part.clone(),
            proposal,
        };
        if let Err(e) = tx.send(change) {
            e.0.part.complete_isr_change(None);
        }
    }

    /// Leader side, on a follower fetch: sends the expansion `PartitionState::maybe_expand_isr`
    /// decided for `replica`.
    pub fn submit_expansion(&self, part: &Arc<Partition>, replica: i32, proposal: IsrProposal) {
        info!(topic = %part.topic, partition = part.partition, replica, isr = ?proposal.isr,
            "follower caught up: expanding the ISR");
        self.submit(part, proposal);
    }
}

/// First wait before a failed change is sent again (Kafka: 50 ms after a top-level error).
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two sends of a failing change: a broker the controller keeps
/// refusing asks again every 2 s, not 20 times a second.
const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What the leader does with the controller's answer for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted: take the ISR the controller wrote.
    Accepted(IsrProposal),
    /// Not applied, and our state is current: clear the pending mark (may propose again).
    Reset(i16),
    /// Our view is out of date: keep the change pending until the next LeaderAndIsr.
    AwaitLeaderAndIsr(i16),
    /// Send the same change again after a back-off.
    Retry(String),
}

/// Kafka's `Partition.handleAlterPartitionError` (per-partition codes) and
/// `DefaultAlterPartitionManager` (a failed request: retried) as one table.
pub fn classify(result: Result<resp::PartitionData>) -> Outcome {
    use common::ErrorCode as E;
    let p = match result {
        Ok(p) => p,
        Err(e) => return Outcome::Retry(e.to_string()),
    };
    match E::from_code(p.error_code) {
        E::NONE => Outcome::Accepted(IsrProposal {
            isr: p.isr.iter().map(|r| r.0).collect(),
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        }),
        E::OPERATION_NOT_ATTEMPTED | E::INELIGIBLE_REPLICA => Outcome::Reset(p.error_code),
        E::FENCED_LEADER_EPOCH
        | E::INVALID_UPDATE_VERSION
        | E::UNKNOWN_TOPIC_OR_PARTITION
        | E::UNKNOWN_TOPIC_ID
        | E::INVALID_REQUEST
        | E::NEW_LEADER_ELECTED => Outcome::AwaitLeaderAndIsr(p.error_code),
        other => Outcome::Retry(format!("controller answered {other:?}")),
    }
}

async fn run_sender(
    replicas: Weak<ReplicaManager>,
    mut rx: mpsc::UnboundedReceiver<PendingChange>,
    retry_tx: mpsc::WeakUnboundedSender<PendingChange>,
) {
    let mut conn: Option<(i32, crate::client::Connection)> = None;
    // Consecutive requests with a change to retry: the back-off grows with them, and only the
    // first of a streak is logged at warn.
    let mut failures: u32 = 0;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let Some(rm) = replicas.upgrade() else {
            return;
        };
        // A retried change that a LeaderAndIsr (or an answer) has settled meanwhile is dropped.
        batch.retain(|c| c.part.is_pending(rm.broker_id, &c.proposal));
        if batch.is_empty() {
            continue;
        }
        let answers = send_alter_partition(&rm, &mut conn, &batch).await;
        if answers.is_err() {
            conn = None;
        }
        let mut retry = Vec::new();
        for c in batch {
            let result = match &answers {
                Ok(a) => a
                    .get(&(c.part.topic.clone(), c.part.partition))
                    .cloned()
                    .ok_or_else(|| {
                        Error::network("partition missing from the AlterPartition answer")
                    }),
                Err(e) => Err(Error::network(e)),
            };
            match classify(result) {
                Outcome::Retry(why) => {
                    if failures == 0 {
                        warn!(topic = %c.part.topic, partition = c.part.partition,
                            isr = ?c.proposal.isr, leader_epoch = c.proposal.leader_epoch,
                            error = %why, "AlterPartition failed; retrying with back-off");
                    } else {
                        debug!(topic = %c.part.topic, partition = c.part.partition,
                            error = %why, failures, "AlterPartition failed again; retrying");
                    }
                    retry.push(c);
                }
                outcome => on_answer(&rm, &c.part, &c.proposal, outcome),
            }
        }
        if retry.is_empty() {
            if failures > 0 {
                info!(failures, "AlterPartition reaches the controller again");
            }
            failures = 0;
            continue;
        }
        let backoff = RETRY_BACKOFF_MIN
            .saturating_mul(1u32 << failures.min(16))
            .min(RETRY_BACKOFF_MAX);
        failures = failures.saturating_add(1);
        let Some(tx) = retry_tx.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            for c in retry {
                if tx.send(c).is_err() {
                    return;
                }
            }
        });
    }
}

/// Applies a settled answer (`Accepted`, `Reset` or `AwaitLeaderAndIsr`) to `part`, unless the
/// change is no longer pending (a LeaderAndIsr came first: Kafka ignores such an answer).
fn on_answer(rm: &ReplicaManager, part: &Partition, proposal: &IsrProposal, outcome: Outcome) {
    if !part.is_pending(rm.broker_id, proposal) {
        debug!(topic = %part.topic, partition = part.partition, ?outcome,
            "ignoring the answer to an ISR change that is no longer pending");
        return;
    }
    match outcome {
        Outcome::Accepted(accepted) => {
            if let Some((before, after)) = part.complete_isr_change(Some(accepted)) {
                rm.isr_metrics.record_isr_change(before, after);
            }
            if part.maybe_advance_high_watermark(rm.broker_id) {
                rm.notify_progress();
            }
            rm.notify_progress();
        }
        Outcome::Reset(code) => {
            rm.isr_metrics.record_failed_isr_update();
            part.complete_isr_change(None);
            info!(topic = %part.topic, partition = part.partition, isr = ?proposal.isr,
                error_code = code, error = %common::ErrorCode::from_code(code),
                "AlterPartition not applied; back to the last committed ISR");
        }
        Outcome::AwaitLeaderAndIsr(code) => {
            rm.isr_metrics.record_failed_isr_update();
            part.await_leader_and_isr(rm.broker_id, proposal, code);
            warn!(topic = %part.topic, partition = part.partition, isr = ?proposal.isr,
                leader_epoch = proposal.leader_epoch,
                partition_epoch = proposal.partition_epoch,
                error_code = code, error = %common::ErrorCode::from_code(code),
                "AlterPartition refused: this leader's state is out of date; proposing no \
                 ISR change until the controller's next LeaderAndIsr");
        }
        // Never passed here: `run_sender` queues retries again itself.
        Outcome::Retry(_) => {}
    }
}

/// Sends one AlterPartition with every change of `batch` to the controller, reusing `conn`
/// while it points at the current controller; answers by (topic, partition).
async fn send_alter_partition(
    rm: &ReplicaManager,
    conn: &mut Option<(i32, crate::client::Connection)>,
    batch: &[PendingChange],
) -> Result<HashMap<(String, i32), resp::PartitionData>> {
    let controller_id = rm
        .metadata
        .controller_id()
        .ok_or_else(|| Error::network("no controller known"))?;
    if conn.as_ref().is_none_or(|(id, _)| *id != controller_id) {
        let ep = rm
            .metadata
            .broker(controller_id)
            .and_then(|x| {
                x.endpoints
                    .into_iter()
                    .find(|e| e.listener == rm.config.inter_broker_listener_name)
            })
            .ok_or_else(|| Error::network(format!("controller {controller_id} has no endpoint")))?;
        let c = crate::client::Connection::connect(
            &format!("{}:{}", ep.host, ep.port),
            &rm.broker_id.to_string(),
            Duration::from_millis(rm.config.request_timeout_ms),
        )
        .await?;
        *conn = Some((controller_id, c));
    }
    let (_, c) = conn.as_mut().expect("connected above");
    let mut by_topic: BTreeMap<&str, Vec<PartitionData>> = BTreeMap::new();
    for ch in batch {
        by_topic.entry(&ch.part.topic).or_default().push(
            PartitionData::default()
                .with_partition_index(ch.part.partition)
                .with_leader_epoch(ch.proposal.leader_epoch)
                .with_new_isr(ch.proposal.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_partition_epoch(ch.proposal.partition_epoch),
        );
    }
    let req = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(rm.broker_id))
        .with_broker_epoch((rm.broker_epoch)())
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    TopicData::default()
                        .with_topic_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let r: AlterPartitionResponse = c
        .send(ApiKey::AlterPartition, ALTER_PARTITION_VERSION, &req)
        .await?;
    if r.error_code != 0 {
        return Err(Error::Peer(r.error_code));
    }
    Ok(r.topics
        .into_iter()
        .flat_map(|t| {
            let name = t.topic_name.0.to_string();
            t.partitions
                .into_iter()
                .map(move |p| ((name.clone(), p.partition_index), p))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: common::ErrorCode) -> Result<resp::PartitionData> {
        Ok(resp::PartitionData::default().with_error_code(code.code()))
    }

    /// Kafka's `Partition.handleAlterPartitionError`, code by code, and a failed request.
    #[test]
    fn each_refusal_is_classified_as_kafka_does() {
        use common::ErrorCode as E;
        for code in [E::OPERATION_NOT_ATTEMPTED, E::INELIGIBLE_REPLICA] {
            assert_eq!(classify(answer(code)), Outcome::Reset(code.code()));
        }
        for code in [
            E::FENCED_LEADER_EPOCH,
            E::INVALID_UPDATE_VERSION,
            E::UNKNOWN_TOPIC_OR_PARTITION,
            E::UNKNOWN_TOPIC_ID,
            E::INVALID_REQUEST,
            E::NEW_LEADER_ELECTED,
        ] {
            assert_eq!(
                classify(answer(code)),
                Outcome::AwaitLeaderAndIsr(code.code())
            );
        }
        for code in [E::NOT_CONTROLLER, E::UNKNOWN_SERVER_ERROR] {
            assert!(matches!(classify(answer(code)), Outcome::Retry(_)));
        }
        let top_level = Err(Error::Peer(E::STALE_BROKER_EPOCH.code()));
        assert!(matches!(classify(top_level), Outcome::Retry(_)));
        let accepted = Ok(resp::PartitionData::default()
            .with_isr(vec![BrokerId(1), BrokerId(2)])
            .with_leader_epoch(4)
            .with_partition_epoch(9));
        assert_eq!(
            classify(accepted),
            Outcome::Accepted(IsrProposal {
                isr: vec![1, 2],
                leader_epoch: 4,
                partition_epoch: 9,
            })
        );
    }
}
