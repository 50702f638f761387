//! The partitions this broker hosts, as leader or follower, and the reads and writes on them.
//!
//! Kafka concept: the controller tells a broker, with LeaderAndIsr, which replicas it hosts and
//! whether it leads each one (with the leader epoch and the ISR). The leader appends produced
//! batches, assigns offsets and stamps its leader epoch; it serves consumers up to the high
//! watermark, the offset every ISR member has reached. Followers copy the leader's log as is.
//! Kafka classes mirrored: `kafka.server.ReplicaManager` and `kafka.cluster.Partition`.
//!
//! Invariants: a LeaderAndIsr with an older controller epoch, or an older leader epoch for a
//! partition, changes nothing (STALE_CONTROLLER_EPOCH / FENCED_LEADER_EPOCH); the high watermark
//! never moves backwards on the leader and never passes the log end offset of an ISR member.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{LeaderAndIsrRequest, StopReplicaRequest};
use storage::{LogAppendInfo, LogManager, SharedLog};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;

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
    /// An AlterPartition for this partition is waiting for the controller's answer.
    pub isr_change_in_flight: bool,
    /// While following: the leader's high watermark in the last fetch answer minus this
    /// replica's log end offset after appending it, at least 0 (Kafka's FetcherLagMetrics
    /// ConsumerLag). None until the first answer from the current leader.
    pub fetcher_lag: Option<i64>,
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
}

/// Why an operation on a partition failed, as a Kafka error code.
pub type Code = i16;

pub fn code(e: ResponseError) -> Code {
    e.code()
}

/// One topic's hosted partitions, by partition number (numbers are dense from 0, so a slot
/// per number: a fetch naming thousands of them indexes instead of hashing). Numbers from
/// [`TopicPartitions::SLOTS`] up go to a map, so that no number makes a huge table.
#[derive(Default)]
pub struct TopicPartitions {
    slots: Vec<Option<Arc<Partition>>>,
    others: HashMap<i32, Arc<Partition>>,
    count: usize,
}

impl TopicPartitions {
    const SLOTS: usize = 1 << 20;

    fn slot(partition: i32) -> Option<usize> {
        usize::try_from(partition).ok().filter(|i| *i < Self::SLOTS)
    }

    pub fn get(&self, partition: i32) -> Option<&Arc<Partition>> {
        match Self::slot(partition) {
            Some(i) => self.slots.get(i).and_then(Option::as_ref),
            None => self.others.get(&partition),
        }
    }

    fn insert(&mut self, partition: i32, part: Arc<Partition>) {
        let replaced = match Self::slot(partition) {
            Some(i) => {
                if self.slots.len() <= i {
                    self.slots.resize(i + 1, None);
                }
                self.slots[i].replace(part)
            }
            None => self.others.insert(partition, part),
        };
        if replaced.is_none() {
            self.count += 1;
        }
    }

    fn remove(&mut self, partition: i32) {
        let removed = match Self::slot(partition) {
            Some(i) => self.slots.get_mut(i).and_then(Option::take),
            None => self.others.remove(&partition),
        };
        if removed.is_some() {
            self.count -= 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn iter(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.slots.iter().flatten().chain(self.others.values())
    }
}

/// A read view of the hosted partitions ([`ReplicaManager::hosted`]).
pub struct Hosted<'a>(std::sync::RwLockReadGuard<'a, HashMap<String, TopicPartitions>>);

impl Hosted<'_> {
    pub fn topic(&self, topic: &str) -> Option<&TopicPartitions> {
        self.0.get(topic)
    }
}

/// The broker's hosted partitions.
pub struct ReplicaManager {
    pub broker_id: i32,
    pub config: Arc<BrokerConfig>,
    pub logs: Arc<LogManager>,
    /// By topic, then partition: a lookup borrows the topic name (no allocation), and a
    /// fetch naming thousands of partitions of one topic resolves the topic once.
    partitions: RwLock<HashMap<String, TopicPartitions>>,
    /// Highest controller epoch seen in a control request.
    controller_epoch: Mutex<i32>,
    /// Bumped on every append and high watermark move; long-polling fetches wait on it.
    progress: watch::Sender<u64>,
    /// Held while LeaderAndIsr or StopReplica is applied (Kafka's `replicaStateChangeLock`):
    /// a request the controller re-sent after a timeout must not run beside the first one.
    state_change: Mutex<()>,
}

/// One partition in a LeaderAndIsr request, resolved.
pub struct LeaderAndIsrOutcome {
    pub topic: String,
    pub partition: i32,
    pub topic_id: Uuid,
    pub error: Code,
}

impl ReplicaManager {
    pub fn new(broker_id: i32, config: Arc<BrokerConfig>, logs: Arc<LogManager>) -> Self {
        ReplicaManager {
            broker_id,
            config,
            logs,
            partitions: RwLock::new(HashMap::new()),
            controller_epoch: Mutex::new(0),
            progress: watch::channel(0).0,
            state_change: Mutex::new(()),
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .and_then(|t| t.get(partition))
            .cloned()
    }

    /// Runs `f` with the hosted partitions of `topic`, by partition number (None if none),
    /// under the map's read lock: `f` must not create or remove partitions.
    pub fn with_topic<R>(&self, topic: &str, f: impl FnOnce(Option<&TopicPartitions>) -> R) -> R {
        f(self
            .partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic))
    }

    /// The hosted partitions under the map's read lock, for reading many topics at once (a
    /// fetch): while it is held no partition is created or removed.
    pub fn hosted(&self) -> Hosted<'_> {
        Hosted(self.partitions.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .flat_map(|t| t.iter().cloned())
            .collect()
    }

    /// A receiver that changes whenever data or a high watermark moved.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.progress.subscribe()
    }

    pub fn notify_progress(&self) {
        self.progress.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Checks a control request's controller epoch: older than the newest seen is stale.
    pub fn check_controller_epoch(&self, epoch: i32) -> bool {
        let mut e = self
            .controller_epoch
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if epoch < *e {
            return false;
        }
        *e = epoch;
        true
    }

    /// Applies LeaderAndIsr: creates or opens each log, becomes leader or follower.
    /// `topic_configs` holds `/config/topics/<t>` for the topics in the request.
    pub fn become_leader_or_follower(
        &self,
        req: &LeaderAndIsrRequest,
        topic_configs: &HashMap<String, BTreeMap<String, String>>,
    ) -> Vec<LeaderAndIsrOutcome> {
        let epoch_sync = self.logs.defer_epoch_sync();
        let _changing = self.state_change.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        // Logs of new replicas are created first, side by side: each creation fsyncs its
        // folder and `partition.metadata`, and concurrent fsyncs share the filesystem journal's
        // commits, where one after the other each waits for its own. A failure here is met
        // again, and reported, by the sequential pass below.
        let empty = BTreeMap::new();
        let new: Vec<(String, i32, Uuid, &BTreeMap<String, String>)> = req
            .topic_states
            .iter()
            .flat_map(|t| {
                let topic = t.topic_name.to_string();
                let overrides = topic_configs.get(&topic).unwrap_or(&empty);
                t.partition_states
                    .iter()
                    .filter(|p| p.replicas.iter().any(|r| r.0 == self.broker_id))
                    .filter(|p| self.get(&topic, p.partition_index).is_none())
                    .map(|p| (topic.clone(), p.partition_index, t.topic_id, overrides))
                    .collect::<Vec<_>>()
            })
            .collect();
        for_each_in_parallel(&new, |(topic, partition, id, overrides)| {
            let _ = self.create_partition(topic, *partition, *id, overrides);
        });
        // Leader epoch start offsets to record (each an fsynced checkpoint), done side by side
        // after the pass below, before answering.
        let mut new_epochs: Vec<(Arc<Partition>, i32)> = Vec::new();
        let mut same_epoch = 0usize;
        for t in &req.topic_states {
            let topic = t.topic_name.to_string();
            let overrides = topic_configs.get(&topic).unwrap_or(&empty);
            for p in &t.partition_states {
                let mut outcome = LeaderAndIsrOutcome {
                    topic: topic.clone(),
                    partition: p.partition_index,
                    topic_id: t.topic_id,
                    error: 0,
                };
                if !p.replicas.iter().any(|r| r.0 == self.broker_id) {
                    outcome.error = code(ResponseError::UnknownTopicOrPartition);
                    out.push(outcome);
                    continue;
                }
                let existing = self.get(&topic, p.partition_index);
                if let Some(part) = &existing {
                    let st = part.state();
                    if p.leader_epoch < st.leader_epoch {
                        warn!(topic = %topic, partition = p.partition_index,
                            leader_epoch = p.leader_epoch, current_leader_epoch = st.leader_epoch,
                            "ignoring LeaderAndIsr with an older leader epoch");
                        outcome.error = code(ResponseError::StaleControllerEpoch);
                        out.push(outcome);
                        continue;
                    }
                    if p.leader_epoch == st.leader_epoch {
                        // Kafka: "ignoring LeaderAndIsr ... since its associated leader epoch
                        // matches the current leader epoch". Every change the controller makes
                        // with LeaderAndIsr bumps the leader epoch; a new controller re-sends
                        // every partition's current state, which we already have.
                        debug!(topic = %topic, partition = p.partition_index,
                            leader_epoch = p.leader_epoch,
                            "ignoring LeaderAndIsr at the leader epoch we already have");
                        same_epoch += 1;
                        outcome.error = code(ResponseError::StaleControllerEpoch);
                        out.push(outcome);
                        continue;
                    }
                }
                let part = match existing {
                    Some(p) => p,
                    None => match self.create_partition(
                        &topic,
                        p.partition_index,
                        t.topic_id,
                        overrides,
                    ) {
                        Ok(part) => part,
                        Err(e) => {
                            warn!(topic = %topic, partition = p.partition_index, error = %e, "cannot open log");
                            outcome.error = code(ResponseError::KafkaStorageError);
                            out.push(outcome);
                            continue;
                        }
                    },
                };
                let isr: Vec<i32> = p.isr.iter().map(|b| b.0).collect();
                let replicas: Vec<i32> = p.replicas.iter().map(|b| b.0).collect();
                let is_leader = p.leader.0 == self.broker_id;
                let leo = part.log_end_offset();
                {
                    let mut st = part.state();
                    let was_leader = st.leader == self.broker_id;
                    let new_epoch = p.leader_epoch > st.leader_epoch;
                    if st.leader != p.leader.0 {
                        st.fetcher_lag = None;
                    }
                    st.leader = p.leader.0;
                    st.leader_epoch = p.leader_epoch;
                    st.partition_epoch = p.partition_epoch;
                    st.isr = isr.clone();
                    st.replicas = replicas;
                    st.controller_epoch = p.controller_epoch;
                    st.isr_change_in_flight = false;
                    st.min_isr = self.config.min_isr_for(overrides);
                    if is_leader && (!was_leader || new_epoch) {
                        // Kafka's makeLeader: followers start unknown, caught-up clock now.
                        st.followers.clear();
                        let now = Instant::now();
                        for r in &st.replicas.clone() {
                            if *r != self.broker_id {
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
                if is_leader {
                    new_epochs.push((part.clone(), p.leader_epoch));
                }
                part.maybe_advance_high_watermark(self.broker_id);
                info!(
                    topic = %topic,
                    partition = p.partition_index,
                    leader = p.leader.0,
                    leader_epoch = p.leader_epoch,
                    isr = ?isr,
                    role = if is_leader { "leader" } else { "follower" },
                    "replica state changed by LeaderAndIsr"
                );
                out.push(outcome);
            }
        }
        // Kafka's makeLeader records the new epoch's start offset at the log end (an append
        // as leader that slips in before this records it itself, at the same offset, and then
        // this is a no-op), and fsyncs the checkpoint before answering. Here the entry is in
        // the cache before the answer, and the checkpoints are written and made durable right
        // after it, in the background, for many partitions at once: staged files, one
        // filesystem sync, the renames, one more sync. Durable before the answer, a broker
        // taking over 10,000 leaderships answered (and got its UpdateMetadata) a second later.
        // What keeps a crash safe meanwhile: `epoch_sync` holds back the recovery-point
        // checkpoint (see `storage::EpochSyncGuard`), so records written in the new epoch are
        // either covered by a durable entry or re-read by recovery, which assigns their epoch.
        if same_epoch > 0 {
            info!(
                broker_id = self.broker_id,
                controller_epoch = req.controller_epoch,
                partitions = same_epoch,
                "LeaderAndIsr named partitions at the leader epoch they already have here \
                 (a new controller re-sends every partition's state); left them as they are"
            );
        }
        let mut pending: Vec<(Arc<Partition>, u64)> = Vec::new();
        for (part, epoch) in &new_epochs {
            let mut log = part.log();
            let leo = log.log_end_offset();
            if let Some(ticket) = log.assign_epoch_start_offset_pending(*epoch, leo) {
                pending.push((part.clone(), ticket));
            }
        }
        if !pending.is_empty() {
            let logs = self.logs.clone();
            let spawned = std::thread::Builder::new()
                .name("epoch-checkpoints".into())
                .spawn(move || {
                    let _guard = epoch_sync;
                    // Nothing waits for these files (see above), and writing 10,000 of them is
                    // a second of CPU: it yields to request handling, on a shared machine to
                    // the peers' too. Its helper threads inherit the lower priority.
                    lower_this_threads_priority();
                    write_epoch_checkpoints(&logs, &pending);
                });
            if let Err(e) = spawned {
                warn!(error = %e, "cannot start the leader epoch checkpoint thread");
            }
        }
        // Long-polling fetches re-read their partitions when woken: only when a replica's
        // state changed (a new controller's LeaderAndIsr at known epochs changes none).
        if out.iter().any(|o| o.error == 0) {
            self.notify_progress();
        }
        out
    }

    fn create_partition(
        &self,
        topic: &str,
        partition: i32,
        topic_id: Uuid,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Arc<Partition>, String> {
        let cfg = self
            .config
            .log_config_with(overrides)
            .unwrap_or_else(|_| self.config.default_log_config());
        let log = self
            .logs
            .get_or_create_log(topic, partition, cfg)
            .map_err(|e| e.to_string())?;
        if !topic_id.is_nil() {
            let id = zk::data::encode_uuid(topic_id);
            if let Err(e) = self.logs.write_partition_metadata(topic, partition, &id) {
                warn!(topic, partition, error = %e, "cannot write partition.metadata");
            }
        }
        let hw = self
            .logs
            .high_watermark_checkpoint(topic, partition)
            .unwrap_or(0);
        let leo = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log_end_offset();
        let part = Arc::new(Partition::new(
            topic.to_string(),
            partition,
            topic_id,
            log,
            hw.min(leo),
        ));
        self.partitions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_string())
            .or_default()
            .insert(partition, part.clone());
        Ok(part)
    }

    /// Applies StopReplica: stops serving each partition, deleting its log when asked.
    /// Returns (topic, partition, error code) for every partition in the request.
    pub fn stop_replicas(&self, req: &StopReplicaRequest) -> Vec<(String, i32, Code)> {
        let _changing = self.state_change.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for t in &req.topic_states {
            let topic = t.topic_name.to_string();
            for p in &t.partition_states {
                let existing = self.get(&topic, p.partition_index);
                if let Some(part) = &existing {
                    let st = part.state();
                    // -2 (EpochDuringDelete) and -1 (NoEpoch) always apply.
                    if p.leader_epoch >= 0 && p.leader_epoch < st.leader_epoch {
                        out.push((
                            topic.clone(),
                            p.partition_index,
                            code(ResponseError::FencedLeaderEpoch),
                        ));
                        continue;
                    }
                }
                {
                    let mut map = self.partitions.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(t) = map.get_mut(&topic) {
                        t.remove(p.partition_index);
                        if t.is_empty() {
                            map.remove(&topic);
                        }
                    }
                }
                let mut err = 0;
                if p.delete_partition && self.logs.get_log(&topic, p.partition_index).is_some() {
                    if let Err(e) = self.logs.delete_log(&topic, p.partition_index) {
                        warn!(topic = %topic, partition = p.partition_index, error = %e, "cannot delete log");
                        err = code(ResponseError::KafkaStorageError);
                    }
                }
                info!(topic = %topic, partition = p.partition_index, delete = p.delete_partition,
                    "replica stopped by StopReplica");
                out.push((topic.clone(), p.partition_index, err));
            }
        }
        self.notify_progress();
        out
    }

    /// The leader for (topic, partition) on this broker, or the error to answer.
    pub fn leader_partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, Code> {
        match self.get(topic, partition) {
            Some(p) if p.state().leader == self.broker_id => Ok(p),
            Some(_) => Err(code(ResponseError::NotLeaderOrFollower)),
            None => Err(code(ResponseError::NotLeaderOrFollower)),
        }
    }

    /// Appends produced batches as leader. `acks` is -1, 0 or 1.
    pub fn append_as_leader(
        &self,
        part: &Partition,
        records: Bytes,
        acks: i16,
    ) -> Result<(LogAppendInfo, i32), Code> {
        let (leader_epoch, isr_len, min_isr) = {
            let st = part.state();
            (st.leader_epoch, st.isr.len() as i32, st.min_isr)
        };
        if acks == -1 && isr_len < min_isr {
            return Err(code(ResponseError::NotEnoughReplicas));
        }
        // The client's bytes go to the file as received; only each batch's 16-byte prefix
        // (base offset, leader epoch) is patched in a side buffer.
        let info = part
            .log()
            .append_as_leader_shared(records, leader_epoch)
            .map_err(|e| e.kafka_error_code())?;
        if let Err(e) = part.log().maybe_flush() {
            warn!(topic = %part.topic, partition = part.partition, error = %e, "flush failed");
        }
        if info.duplicate {
            // A retry of a batch already in the log (idempotent producer), perhaps written
            // under an earlier leader: the acks=all wait follows the epoch it was written in.
            let written_in = part.log().epoch_for_offset(info.last_offset);
            return Ok((info, written_in.unwrap_or(leader_epoch)));
        }
        part.maybe_advance_high_watermark(self.broker_id);
        self.notify_progress();
        Ok((info, leader_epoch))
    }

    /// Waits until the high watermark reaches `offset` (acks=all), or the timeout.
    ///
    /// Kafka answers NOT_LEADER_OR_FOLLOWER as soon as the leader is demoted, even when the
    /// batch was already replicated, and a retrying producer without idempotence then writes
    /// it twice. We keep waiting after a demotion: as a follower this broker learns the high
    /// watermark from the new leader, and once it passes `offset` while our log still holds
    /// the batch in the epoch we appended it (`leader_epoch`), the batch is committed and the
    /// answer is success. If the batch is truncated away (it was never replicated), the answer
    /// is NOT_LEADER_OR_FOLLOWER, as Kafka's.
    pub async fn wait_for_high_watermark(
        &self,
        part: &Partition,
        offset: i64,
        leader_epoch: i32,
        timeout: Duration,
    ) -> Result<(), Code> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let still_ours = {
                let log = part.log();
                log.log_end_offset() >= offset
                    && log.epoch_for_offset(offset - 1) == Some(leader_epoch)
            };
            if !still_ours {
                return Err(code(ResponseError::NotLeaderOrFollower));
            }
            {
                let st = part.state();
                if st.high_watermark >= offset {
                    if st.leader == self.broker_id && (st.isr.len() as i32) < st.min_isr {
                        return Err(code(ResponseError::NotEnoughReplicasAfterAppend));
                    }
                    return Ok(());
                }
            }
            if self.get(&part.topic, part.partition).is_none() {
                return Err(code(ResponseError::NotLeaderOrFollower));
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let st = part.state();
                return Err(code(if st.leader == self.broker_id {
                    ResponseError::RequestTimedOut
                } else {
                    ResponseError::NotLeaderOrFollower
                }));
            }
        }
    }

    /// High watermarks of every partition, for `replication-offset-checkpoint`.
    pub fn high_watermarks(&self) -> Vec<(String, i32, i64)> {
        self.all()
            .iter()
            .map(|p| (p.topic.clone(), p.partition, p.state().high_watermark))
            .collect()
    }

    /// Writes the high watermark and recovery point checkpoints.
    pub fn checkpoint(&self) {
        if let Err(e) = self
            .logs
            .checkpoint_high_watermarks(&self.high_watermarks())
        {
            warn!(error = %e, "cannot write replication-offset-checkpoint");
        }
        if let Err(e) = self.logs.checkpoint() {
            warn!(error = %e, "cannot write recovery-point checkpoints");
        }
    }

    /// Retention: deletes old segments of every log (up to the high watermark).
    pub fn enforce_retention(&self) {
        for p in self.all() {
            let hw = p.state().high_watermark;
            if let Err(e) = p.log().delete_old_segments(hw) {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "retention failed");
            }
        }
    }

    /// Flush policy by time.
    pub fn maybe_flush_all(&self) {
        for p in self.all() {
            if let Err(e) = p.log().maybe_flush() {
                warn!(topic = %p.topic, partition = p.partition, error = %e, "flush failed");
            }
        }
    }
}

/// Writes and makes durable the leader-epoch checkpoints of entries assigned with
/// `assign_epoch_start_offset_pending`: staged files side by side, a sync, the renames, a sync.
fn write_epoch_checkpoints(logs: &LogManager, pending: &[(Arc<Partition>, u64)]) {
    let started = Instant::now();
    let staged: Mutex<Vec<(Arc<Partition>, u64)>> = Mutex::new(Vec::new());
    for_each_in_parallel(pending, |(part, ticket)| {
        match part.log().stage_pending_epoch_checkpoint(*ticket) {
            Ok(true) => staged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((part.clone(), *ticket)),
            Ok(false) => {}
            Err(e) => warn!(topic = %part.topic, partition = part.partition, error = %e,
                "cannot record leader epoch start"),
        }
    });
    let staged = staged.into_inner().unwrap_or_else(|e| e.into_inner());
    if staged.is_empty() {
        return;
    }
    let sync = |what: &str| {
        if let Err(e) = logs.sync_dirs() {
            warn!(error = %e, step = what, "cannot sync the log dirs");
        }
    };
    sync("staged leader epoch checkpoints");
    for_each_in_parallel(&staged, |(part, ticket)| {
        if let Err(e) = part.log().commit_epoch_checkpoint(*ticket) {
            warn!(topic = %part.topic, partition = part.partition, error = %e,
                "cannot record leader epoch start");
        }
    });
    sync("renamed leader epoch checkpoints");
    info!(
        partitions = staged.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "leader epoch checkpoints synced"
    );
}

/// Threads used for per-partition file work (log creation, leader epoch checkpoints): enough
/// for the filesystem journal to batch many concurrent fsyncs in one commit.
const FSYNC_PARALLELISM: usize = 16;

/// Background work at nice 10 (Linux keeps a nice value per thread; threads this one starts
/// inherit it). Best effort: a failure leaves the priority as it was.
fn lower_this_threads_priority() {
    // SAFETY: gettid and setpriority on the calling thread, no pointers involved.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Runs `f` on every item, on up to [`FSYNC_PARALLELISM`] scoped threads; returns when all
/// are done. A handful of items run on the calling thread.
fn for_each_in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    if items.len() <= 2 {
        items.iter().for_each(&f);
        return;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..FSYNC_PARALLELISM.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match items.get(i) {
                    Some(item) => f(item),
                    None => return,
                }
            });
        }
    });
}

#[cfg(test)]
mod topic_partitions_tests {
    use super::*;

    fn partition(dir: &std::path::Path, n: i32) -> Arc<Partition> {
        let log = storage::Log::open(
            &dir.join(format!("t-{n}")),
            storage::LogConfig::default(),
            0,
            0,
            true,
        )
        .unwrap();
        Arc::new(Partition::new(
            "t".into(),
            n,
            Uuid::nil(),
            Arc::new(Mutex::new(log)),
            0,
        ))
    }

    #[test]
    fn slots_and_overflow_keep_lookups_and_count() {
        let d = tempfile::tempdir().unwrap();
        let mut t = TopicPartitions::default();
        assert!(t.is_empty() && t.get(0).is_none() && t.get(-1).is_none());
        let big = TopicPartitions::SLOTS as i32 + 5;
        for n in [0, 7, big] {
            t.insert(n, partition(d.path(), n));
        }
        assert_eq!(t.slots.len(), 8, "a huge number does not grow the table");
        assert_eq!(t.get(7).map(|p| p.partition), Some(7));
        assert_eq!(t.get(big).map(|p| p.partition), Some(big));
        assert!(t.get(3).is_none() && t.get(-7).is_none() && t.get(i32::MAX).is_none());
        t.insert(7, partition(d.path(), 7));
        assert_eq!(t.iter().count(), 3, "replacing a partition keeps the count");
        t.remove(7);
        t.remove(7);
        t.remove(3);
        t.remove(big);
        assert!(!t.is_empty());
        t.remove(0);
        assert!(t.is_empty() && t.iter().next().is_none());
    }
}

#[cfg(test)]
mod leader_and_isr_tests {
    use super::*;
    use kafka_protocol::messages::leader_and_isr_request::{
        LeaderAndIsrPartitionState, LeaderAndIsrTopicState,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn manager(dir: &std::path::Path) -> ReplicaManager {
        let pairs = [
            ("broker.id", "1"),
            ("zookeeper.connect", "127.0.0.1:1"),
            ("log.dirs", dir.to_str().unwrap()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let config = Arc::new(BrokerConfig::from_pairs(pairs).unwrap());
        let meta = storage::MetaProperties {
            broker_id: 1,
            cluster_id: "c".into(),
        };
        let logs =
            LogManager::open(&[dir.to_path_buf()], &meta, config.default_log_config()).unwrap();
        ReplicaManager::new(1, config, Arc::new(logs))
    }

    fn request(leader: i32, leader_epoch: i32, isr: &[i32]) -> LeaderAndIsrRequest {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        LeaderAndIsrRequest::default()
            .with_controller_id(BrokerId(2))
            .with_controller_epoch(3)
            .with_topic_states(vec![LeaderAndIsrTopicState::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_states(vec![LeaderAndIsrPartitionState::default()
                    .with_partition_index(0)
                    .with_controller_epoch(3)
                    .with_leader(BrokerId(leader))
                    .with_leader_epoch(leader_epoch)
                    .with_isr(ids(isr))
                    .with_partition_epoch(leader_epoch)
                    .with_replicas(ids(&[1, 2]))])])
    }

    /// Kafka's rule: a LeaderAndIsr at the leader epoch the broker already has (what a new
    /// controller sends for every partition) is ignored with STALE_CONTROLLER_EPOCH and changes
    /// nothing; a newer epoch is applied; an older one is refused.
    #[test]
    fn only_a_newer_leader_epoch_changes_the_replica() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        let none = HashMap::new();
        let first = rm.become_leader_or_follower(&request(1, 4, &[1, 2]), &none);
        assert_eq!(first[0].error, 0);
        let part = rm.get("t", 0).unwrap();
        {
            let mut st = part.state();
            assert_eq!((st.leader, st.leader_epoch), (1, 4));
            st.followers.get_mut(&2).unwrap().log_end_offset = 0;
        }
        // Same epoch, even with another ISR: ignored, follower state kept.
        let again = rm.become_leader_or_follower(&request(1, 4, &[1]), &none);
        assert_eq!(again[0].error, 11);
        {
            let st = part.state();
            assert_eq!(st.isr, vec![1, 2]);
            assert_eq!(st.followers[&2].log_end_offset, 0);
        }
        // Older: refused.
        let older = rm.become_leader_or_follower(&request(2, 3, &[2]), &none);
        assert_eq!(older[0].error, 11);
        assert_eq!(part.state().leader, 1);
        // Newer: applied (now a follower of 2).
        let newer = rm.become_leader_or_follower(&request(2, 5, &[2, 1]), &none);
        assert_eq!(newer[0].error, 0);
        let st = part.state();
        assert_eq!(
            (st.leader, st.leader_epoch, st.isr.clone()),
            (2, 5, vec![2, 1])
        );
        assert!(st.followers.is_empty());
    }
}
