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
use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::partition::{IsrProposal, Partition};
use crate::replica_manager::ReplicaManager;

/// Version we send (names, not topic ids).
const ALTER_PARTITION_VERSION: i16 = 1;

/// The ISR change counters (Kafka's `IsrShrinksPerSec` / `IsrExpandsPerSec` meters).
#[derive(Debug, Default)]
pub struct IsrMetrics {
    isr_shrinks: AtomicU64,
    isr_expands: AtomicU64,
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
            tokio::spawn(run_sender(self.replicas.clone(), rx));
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

async fn run_sender(
    replicas: Weak<ReplicaManager>,
    mut rx: mpsc::UnboundedReceiver<PendingChange>,
) {
    let mut conn: Option<(i32, crate::client::Connection)> = None;
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
        match send_alter_partition(&rm, &mut conn, &batch).await {
            Ok(mut answers) => {
                for c in &batch {
                    let key = (c.part.topic.clone(), c.part.partition);
                    let r = answers.remove(&key).ok_or_else(|| {
                        Error::network("partition missing from the AlterPartition answer")
                    });
                    on_answer(&rm, &c.part, r);
                }
            }
            Err(e) => {
                conn = None;
                for c in &batch {
                    on_answer(&rm, &c.part, Err(Error::network(&e)));
                }
            }
        }
    }
}

fn on_answer(rm: &ReplicaManager, part: &Partition, result: Result<resp::PartitionData>) {
    match result {
        Ok(p) if p.error_code == 0 => {
            let accepted = IsrProposal {
                isr: p.isr.iter().map(|r| r.0).collect(),
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
            };
            if let Some((before, after)) = part.complete_isr_change(Some(accepted)) {
                rm.isr_metrics.record_isr_change(before, after);
            }
            if part.maybe_advance_high_watermark(rm.broker_id) {
                rm.notify_progress();
            }
            rm.notify_progress();
        }
        Ok(p) => {
            part.complete_isr_change(None);
            warn!(topic = %part.topic, partition = part.partition, error_code = p.error_code,
                "AlterPartition refused; waiting for the controller's LeaderAndIsr")
        }
        Err(e) => {
            part.complete_isr_change(None);
            warn!(topic = %part.topic, partition = part.partition, error = %e,
                "AlterPartition failed; will retry")
        }
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
