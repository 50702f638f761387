//! The leader's ISR management: dropping followers that fell behind, re-admitting them when they
//! catch up, always through the controller with AlterPartition.
//!
//! Kafka concept: a follower stays in the in-sync replica set while it keeps up: if it has not
//! caught up to the leader's log end for `replica.lag.time.max.ms`, the leader shrinks the ISR;
//! once its log end reaches the high watermark, the leader expands the ISR again. Since Kafka
//! 2.7 (KIP-497) the leader does not write ZooKeeper itself: it sends AlterPartition to the
//! controller, which checks leader epoch and partition epoch, writes the state znode with a
//! fenced conditional write, answers with the new state, and tells every broker with
//! UpdateMetadata. We chose that path (not the older `/isr_change_notification`) so the
//! controller stays the only writer of partition state.
//! Kafka: `Partition.maybeShrinkIsr`, `Partition.maybeExpandIsr`, `AlterPartitionManager`,
//! `KafkaApis.handleAlterPartitionRequest`.
//!
//! One change per partition is in flight at a time (Kafka's `PendingShrinkIsr` /
//! `PendingExpandIsr`); the high watermark keeps using the current ISR until the answer.
//! Changes are batched per broker by [`AlterPartitionManager`], as Kafka's is.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use controller::alter_partition::AlterPartitionItem;
use kafka_protocol::messages::alter_partition_request::{PartitionData, TopicData};
use kafka_protocol::messages::alter_partition_response as resp;
use kafka_protocol::messages::{
    AlterPartitionRequest, AlterPartitionResponse, ApiKey, BrokerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;
use tracing::{info, warn};
use zk::data::TopicPartition;

use crate::broker::Broker;
use crate::replica_manager::{Partition, PartitionState};

/// Version we send (names, not topic ids).
const ALTER_PARTITION_VERSION: i16 = 1;

/// Leader side, on each follower fetch, with the partition's state locked: the ISR with
/// `replica` re-admitted, once it reached the high watermark and no other change is in
/// flight. The change is then marked in flight; send it with [`submit_expansion`].
pub fn take_expansion(
    st: &mut PartitionState,
    broker_id: i32,
    replica: i32,
) -> Option<(Vec<i32>, i32, i32)> {
    if st.leader != broker_id || st.isr.contains(&replica) || st.isr_change_in_flight {
        return None;
    }
    let f = st.followers.get(&replica)?;
    if f.log_end_offset < st.high_watermark || f.log_end_offset < 0 {
        return None;
    }
    let mut isr = st.isr.clone();
    isr.push(replica);
    st.isr_change_in_flight = true;
    Some((isr, st.leader_epoch, st.partition_epoch))
}

/// Sends an expansion [`take_expansion`] decided to the controller.
pub fn submit_expansion(
    broker: &Broker,
    part: &Arc<Partition>,
    replica: i32,
    proposal: (Vec<i32>, i32, i32),
) {
    info!(topic = %part.topic, partition = part.partition, replica, isr = ?proposal.0,
        "follower caught up: expanding the ISR");
    submit(broker, part, proposal);
}

/// Leader side, every `replica.lag.time.max.ms / 2`: drop followers that did not catch up for
/// `replica.lag.time.max.ms`.
pub fn maybe_shrink_all(broker: &Broker) {
    let lag = Duration::from_millis(broker.config.replica_lag_time_max_ms);
    let now = Instant::now();
    for part in broker.replicas.all() {
        let leo = part.log_end_offset();
        let proposal = {
            let st = part.state();
            if st.leader != broker.broker_id || st.isr_change_in_flight {
                continue;
            }
            let out: Vec<i32> = st
                .isr
                .iter()
                .copied()
                .filter(|r| *r != broker.broker_id)
                .filter(|r| {
                    st.followers.get(r).is_some_and(|f| {
                        f.log_end_offset < leo && now.duration_since(f.last_caught_up) > lag
                    })
                })
                .collect();
            if out.is_empty() {
                continue;
            }
            let isr: Vec<i32> = st
                .isr
                .iter()
                .copied()
                .filter(|r| !out.contains(r))
                .collect();
            warn!(topic = %part.topic, partition = part.partition, out_of_sync = ?out,
                isr = ?isr, leader_epoch = st.leader_epoch,
                "followers fell behind for replica.lag.time.max.ms: shrinking the ISR");
            (isr, st.leader_epoch, st.partition_epoch)
        };
        propose(broker, &part, proposal);
    }
}

fn propose(broker: &Broker, part: &Arc<Partition>, proposal: (Vec<i32>, i32, i32)) {
    part.state().isr_change_in_flight = true;
    submit(broker, part, proposal);
}

fn submit(
    broker: &Broker,
    part: &Arc<Partition>,
    (isr, leader_epoch, partition_epoch): (Vec<i32>, i32, i32),
) {
    let part = part.clone();
    broker.alter_partitions.submit(
        broker,
        PendingChange {
            part,
            isr,
            leader_epoch,
            partition_epoch,
        },
    );
}

/// One proposed ISR change waiting for the controller.
pub struct PendingChange {
    part: Arc<Partition>,
    isr: Vec<i32>,
    leader_epoch: i32,
    partition_epoch: i32,
}

/// Most partitions sent in one AlterPartition request.
const MAX_BATCH: usize = 10_000;

/// Kafka's `AlterPartitionManager`: proposed ISR changes queue here and one task sends them to
/// the controller, everything pending in one AlterPartition request, one request at a time,
/// on one connection kept while the controller stays the same. (One request and one
/// connection per partition made a restarted broker's thousands of ISR expansions reach the
/// controller as thousands of events, each with its own ZooKeeper write, and time out.)
#[derive(Default)]
pub struct AlterPartitionManager {
    queue: std::sync::OnceLock<mpsc::UnboundedSender<PendingChange>>,
}

impl AlterPartitionManager {
    fn submit(&self, broker: &Broker, change: PendingChange) {
        let tx = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let weak = broker.me().map(|b| Arc::downgrade(&b));
            tokio::spawn(async move {
                if let Some(weak) = weak {
                    run_sender(weak, rx).await;
                }
            });
            tx
        });
        if let Err(e) = tx.send(change) {
            e.0.part.state().isr_change_in_flight = false;
        }
    }
}

async fn run_sender(broker: Weak<Broker>, mut rx: mpsc::UnboundedReceiver<PendingChange>) {
    let mut conn: Option<(i32, crate::client::Connection)> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let Some(b) = broker.upgrade() else {
            return;
        };
        match send_alter_partition(&b, &mut conn, &batch).await {
            Ok(mut answers) => {
                for c in &batch {
                    let key = (c.part.topic.clone(), c.part.partition);
                    let r = answers.remove(&key).ok_or_else(|| {
                        anyhow::anyhow!("partition missing from the AlterPartition answer")
                    });
                    on_answer(&b, &c.part, r);
                }
            }
            Err(e) => {
                conn = None;
                for c in &batch {
                    on_answer(&b, &c.part, Err(anyhow::anyhow!("{e}")));
                }
            }
        }
    }
}

fn on_answer(b: &Broker, part: &Partition, result: anyhow::Result<resp::PartitionData>) {
    let mut st = part.state();
    st.isr_change_in_flight = false;
    match result {
        Ok(p) if p.error_code == 0 => {
            if p.leader_epoch == st.leader_epoch {
                let before = st.isr.len();
                st.isr = p.isr.iter().map(|r| r.0).collect();
                b.metrics.record_isr_change(before, st.isr.len());
                st.partition_epoch = p.partition_epoch;
                info!(topic = %part.topic, partition = part.partition, isr = ?st.isr,
                    leader_epoch = st.leader_epoch, partition_epoch = st.partition_epoch,
                    "ISR changed (AlterPartition accepted)");
            }
            drop(st);
            if part.maybe_advance_high_watermark(b.broker_id) {
                b.replicas.notify_progress();
            }
            b.replicas.notify_progress();
        }
        Ok(p) => {
            warn!(topic = %part.topic, partition = part.partition, error_code = p.error_code,
            "AlterPartition refused; waiting for the controller's LeaderAndIsr")
        }
        Err(e) => warn!(topic = %part.topic, partition = part.partition, error = %e,
            "AlterPartition failed; will retry"),
    }
}

/// Sends one AlterPartition with every change of `batch` to the controller, reusing `conn`
/// while it points at the current controller; answers by (topic, partition).
async fn send_alter_partition(
    b: &Arc<Broker>,
    conn: &mut Option<(i32, crate::client::Connection)>,
    batch: &[PendingChange],
) -> anyhow::Result<HashMap<(String, i32), resp::PartitionData>> {
    let controller_id = b
        .metadata
        .controller_id()
        .ok_or_else(|| anyhow::anyhow!("no controller known"))?;
    if conn.as_ref().is_none_or(|(id, _)| *id != controller_id) {
        let ep = b
            .metadata
            .broker(controller_id)
            .and_then(|x| {
                x.endpoints
                    .into_iter()
                    .find(|e| e.listener == b.config.inter_broker_listener_name)
            })
            .ok_or_else(|| anyhow::anyhow!("controller {controller_id} has no endpoint"))?;
        let c = crate::client::Connection::connect(
            &format!("{}:{}", ep.host, ep.port),
            &b.broker_id.to_string(),
            Duration::from_millis(b.config.request_timeout_ms),
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
                .with_leader_epoch(ch.leader_epoch)
                .with_new_isr(ch.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_partition_epoch(ch.partition_epoch),
        );
    }
    let req = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(b.broker_id))
        .with_broker_epoch(b.broker_epoch())
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
        anyhow::bail!("controller answered error code {}", r.error_code);
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

/// The controller side: the AlterPartition API (v0-1, topic names).
pub async fn handle(
    broker: &Broker,
    req: AlterPartitionRequest,
    version: i16,
) -> AlterPartitionResponse {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push(AlterPartitionItem {
                tp: TopicPartition::new(t.topic_name.to_string(), p.partition_index),
                leader_epoch: p.leader_epoch,
                new_isr: p.new_isr.iter().map(|r| r.0).collect(),
                leader_recovery_state: p.leader_recovery_state,
                partition_epoch: p.partition_epoch,
            });
        }
    }
    let reply = broker
        .controller
        .alter_partition(req.broker_id.0, req.broker_epoch, version, items)
        .await;
    let results = match reply {
        Ok(r) => r,
        Err(code) => return AlterPartitionResponse::default().with_error_code(code),
    };
    let mut topics: Vec<resp::TopicData> = Vec::new();
    for (tp, r) in results {
        let mut pd = resp::PartitionData::default().with_partition_index(tp.partition);
        match r {
            Ok(l) => {
                pd.leader_id = BrokerId(l.leader);
                pd.leader_epoch = l.leader_epoch;
                pd.isr = l.isr.iter().map(|r| BrokerId(*r)).collect();
                pd.partition_epoch = l.partition_epoch;
                if version >= 1 {
                    pd.leader_recovery_state = l.leader_recovery_state;
                }
            }
            Err(code) => pd.error_code = code,
        }
        match topics
            .iter_mut()
            .find(|t| t.topic_name.0.as_str() == tp.topic.as_str())
        {
            Some(t) => t.partitions.push(pd),
            None => topics.push(
                resp::TopicData::default()
                    .with_topic_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_partitions(vec![pd]),
            ),
        }
    }
    AlterPartitionResponse::default().with_topics(topics)
}
