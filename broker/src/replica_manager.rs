//! The partitions this broker hosts, as leader or follower, and the entry points that change
//! or use them: LeaderAndIsr, StopReplica, produce appends and the acks=all wait.
//!
//! Kafka concept: the controller tells a broker, with LeaderAndIsr, which replicas it hosts and
//! whether it leads each one (with the leader epoch and the ISR). The leader appends produced
//! batches, assigns offsets and stamps its leader epoch; it serves consumers up to the high
//! watermark, the offset every ISR member has reached. Followers copy the leader's log as is,
//! through the fetcher manager this type owns; the leader's ISR changes go to the controller
//! through the AlterPartition manager it owns. Who coordinates what (the group coordinator,
//! later the transaction coordinator) learns of leadership changes through a callback
//! registered at start ([`ReplicaManager::on_leadership_change`]), as Kafka's
//! `becomeLeaderOrFollower(..., onLeadershipChange)`.
//! Kafka class mirrored: `kafka.server.ReplicaManager` (`becomeLeaderOrFollower`,
//! `stopReplicas`, `appendRecords`, `maybeShrinkIsr`); one replica is a
//! [`crate::partition::Partition`].
//!
//! Invariants: a LeaderAndIsr with an older controller epoch, or an older leader epoch for a
//! partition, changes nothing (STALE_CONTROLLER_EPOCH / FENCED_LEADER_EPOCH); LeaderAndIsr and
//! StopReplica are applied one at a time (`state_change`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{LeaderAndIsrRequest, StopReplicaRequest};
use storage::{LogAppendInfo, LogManager};
use tokio::sync::watch;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::isr::{AlterPartitionManager, IsrMetrics};
use crate::metadata_cache::MetadataCache;
use crate::partition::{FollowerFetchOutcome, Partition};
use crate::replication::ReplicaFetcherManager;

/// The current broker epoch (it changes when the broker re-registers after a session expiry).
pub type BrokerEpoch = Arc<dyn Fn() -> i64 + Send + Sync>;

/// Whether this broker's current ZooKeeper session holds its `/brokers/ids/<id>` registration
/// (false from a session expiry until it has registered again).
pub type RegistrationCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Called after LeaderAndIsr and StopReplica with the partitions this broker now leads
/// (`elected`) and those it no longer leads (`resigned`), as (topic, partition).
pub type LeadershipCallback = Box<dyn Fn(&[(String, i32)], &[(String, i32)]) + Send + Sync>;

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

/// The broker's hosted partitions, their fetchers and their ISR changes.
pub struct ReplicaManager {
    pub broker_id: i32,
    pub config: Arc<BrokerConfig>,
    pub logs: Arc<LogManager>,
    /// The cluster as the controller last described it: where leaders and the controller are.
    pub metadata: Arc<MetadataCache>,
    /// This broker's current epoch, sent with AlterPartition.
    pub broker_epoch: BrokerEpoch,
    /// Followers' fetchers (Kafka's `ReplicaFetcherManager`).
    pub fetchers: ReplicaFetcherManager,
    /// Batches the leader's ISR changes into AlterPartition requests.
    pub alter_partitions: AlterPartitionManager,
    /// ISR shrink/expand counters for the metrics endpoint.
    pub isr_metrics: IsrMetrics,
    /// Told of leadership changes (the group coordinator); set once at start.
    leadership_callback: OnceLock<LeadershipCallback>,
    /// Set once at start; unset means registered (tests that build a bare replica manager).
    registration_check: OnceLock<RegistrationCheck>,
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
    pub error: Option<Error>,
}

impl ReplicaManager {
    /// The replica manager, in its `Arc`: its fetchers and AlterPartition sender hold a
    /// `Weak` to it (they stop when it is gone).
    pub fn new(
        broker_id: i32,
        config: Arc<BrokerConfig>,
        logs: Arc<LogManager>,
        metadata: Arc<MetadataCache>,
        broker_epoch: BrokerEpoch,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me: &Weak<ReplicaManager>| ReplicaManager {
            broker_id,
            config,
            logs,
            metadata,
            broker_epoch,
            fetchers: ReplicaFetcherManager::new(me.clone()),
            alter_partitions: AlterPartitionManager::new(me.clone()),
            isr_metrics: IsrMetrics::default(),
            leadership_callback: OnceLock::new(),
            registration_check: OnceLock::new(),
            partitions: RwLock::new(HashMap::new()),
            controller_epoch: Mutex::new(0),
            progress: watch::channel(0).0,
            state_change: Mutex::new(()),
        })
    }

    /// Registers who is told of leadership changes (once, at start; later calls are ignored).
    pub fn on_leadership_change(&self, callback: LeadershipCallback) {
        let _ = self.leadership_callback.set(callback);
    }

    /// Sets how to tell whether this broker is registered in ZooKeeper (its controller handle
    /// knows); set once at start.
    pub fn set_registration_check(&self, check: RegistrationCheck) {
        let _ = self.registration_check.set(check);
    }

    /// Whether this broker's current ZooKeeper session holds its registration.
    pub fn is_registered(&self) -> bool {
        self.registration_check.get().is_none_or(|check| check())
    }

    /// Tells the callback which partitions this broker now leads and which it no longer does.
    fn report_leadership(&self, elected: &[(String, i32)], resigned: &[(String, i32)]) {
        let Some(cb) = self.leadership_callback.get() else {
            return;
        };
        if elected.is_empty() && resigned.is_empty() {
            return;
        }
        cb(elected, resigned);
    }

    /// [`ReplicaManager::report_leadership`] for partitions whose leadership is read back from
    /// their state (after StopReplica; LeaderAndIsr already knows it).
    fn report_leadership_of(&self, changed: &[(String, i32)]) {
        if self.leadership_callback.get().is_none() || changed.is_empty() {
            return;
        }
        let (elected, resigned): (Vec<_>, Vec<_>) = changed.iter().cloned().partition(|(t, p)| {
            self.get(t, *p)
                .is_some_and(|part| part.state().leader == self.broker_id)
        });
        self.report_leadership(&elected, &resigned);
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
                    error: None,
                };
                if !p.replicas.iter().any(|r| r.0 == self.broker_id) {
                    outcome.error = Some(Error::UnknownTopicOrPartition);
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
                        outcome.error = Some(Error::StaleControllerEpoch);
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
                        outcome.error = Some(Error::StaleControllerEpoch);
                        out.push(outcome);
                        continue;
                    }
                }
                // A topic's config is read only for partitions new here (see api/control.rs):
                // a hosted partition keeps the min.insync.replicas it was created with.
                let min_isr = match (&existing, topic_configs.get(&topic)) {
                    (Some(part), None) => part.state().min_isr,
                    _ => self.config.min_isr_for(overrides),
                };
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
                            outcome.error = Some(e);
                            out.push(outcome);
                            continue;
                        }
                    },
                };
                let isr: Vec<i32> = p.isr.iter().map(|b| b.0).collect();
                let is_leader = part.make_leader_or_follower(self.broker_id, p, min_isr);
                if is_leader {
                    new_epochs.push((part.clone(), p.leader_epoch));
                }
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
        if out.iter().any(|o| o.error.is_none()) {
            self.notify_progress();
        }
        // Kafka's makeFollowers adds fetchers (after truncation) and makeLeaders removes them.
        // The leadership callback hears of the same partitions, split by what was just read
        // (reading every partition's state a second time for it cost 1 to 13 ms per 3,333
        // partitions, under contention with the fetchers just woken: issue 20's measurements).
        let (mut elected, mut resigned) = (Vec::new(), Vec::new());
        let (mut fetch, mut unfetch) = (Vec::new(), Vec::new());
        for o in out.iter().filter(|o| o.error.is_none()) {
            let Some(part) = self.get(&o.topic, o.partition) else {
                continue;
            };
            let (leader, epoch) = {
                let st = part.state();
                (st.leader, st.leader_epoch)
            };
            if leader == self.broker_id {
                elected.push((o.topic.clone(), o.partition));
            } else {
                resigned.push((o.topic.clone(), o.partition));
            }
            if leader == self.broker_id || leader < 0 {
                unfetch.push((o.topic.clone(), o.partition));
            } else {
                fetch.push((o.topic.clone(), o.partition, leader, epoch));
            }
        }
        self.fetchers.update(&fetch, &unfetch);
        self.report_leadership(&elected, &resigned);
        out
    }

    fn create_partition(
        &self,
        topic: &str,
        partition: i32,
        topic_id: Uuid,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Arc<Partition>> {
        let cfg = self
            .config
            .log_config_with(overrides)
            .unwrap_or_else(|_| self.config.default_log_config());
        let log = self.logs.get_or_create_log(topic, partition, cfg)?;
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

    /// Applies StopReplica: stops serving and fetching each partition, deleting its log when
    /// asked. Returns (topic, partition, error) for every partition in the request.
    pub fn stop_replicas(&self, req: &StopReplicaRequest) -> Vec<(String, i32, Option<Error>)> {
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
                            Some(Error::FencedLeaderEpoch),
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
                let mut err = None;
                if p.delete_partition && self.logs.get_log(&topic, p.partition_index).is_some() {
                    if let Err(e) = self.logs.delete_log(&topic, p.partition_index) {
                        warn!(topic = %topic, partition = p.partition_index, error = %e, "cannot delete log");
                        err = Some(Error::Storage(e));
                    }
                }
                info!(topic = %topic, partition = p.partition_index, delete = p.delete_partition,
                    "replica stopped by StopReplica");
                out.push((topic.clone(), p.partition_index, err));
            }
        }
        self.notify_progress();
        let stopped: Vec<(String, i32)> = out.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
        self.fetchers.update(&[], &stopped);
        self.report_leadership_of(&stopped);
        out
    }

    /// The leader for (topic, partition) on this broker, or the error to answer.
    pub fn leader_partition(&self, topic: &str, partition: i32) -> Result<Arc<Partition>> {
        match self.get(topic, partition) {
            Some(p) if p.state().leader == self.broker_id => Ok(p),
            Some(_) | None => Err(Error::NotLeaderOrFollower),
        }
    }

    /// Appends produced batches as leader (Kafka's `appendRecords` for one partition). `acks`
    /// is -1, 0 or 1; returns what was appended and the leader epoch to wait in for acks=all.
    pub fn append_as_leader(
        &self,
        part: &Partition,
        records: Bytes,
        acks: i16,
    ) -> Result<(LogAppendInfo, i32)> {
        let (info, epoch) = part.append_records_to_leader(self.broker_id, records, acks)?;
        if !info.duplicate {
            self.notify_progress();
        }
        Ok((info, epoch))
    }

    /// Waits until the high watermark reaches `offset` (acks=all), or the timeout: Kafka's
    /// `DelayedProduce`, re-checking [`Partition::check_enough_replicas_reach_offset`] on every
    /// progress signal. A partition no longer hosted answers NOT_LEADER_OR_FOLLOWER; at the
    /// timeout, REQUEST_TIMED_OUT if we still lead, NOT_LEADER_OR_FOLLOWER if not.
    pub async fn wait_for_high_watermark(
        &self,
        part: &Partition,
        offset: i64,
        leader_epoch: i32,
        timeout: Duration,
    ) -> Result<()> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(done) =
                part.check_enough_replicas_reach_offset(self.broker_id, offset, leader_epoch)
            {
                return done;
            }
            if self.get(&part.topic, part.partition).is_none() {
                return Err(Error::NotLeaderOrFollower);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let st = part.state();
                return Err(if st.leader == self.broker_id {
                    Error::RequestTimedOut
                } else {
                    Error::NotLeaderOrFollower
                });
            }
        }
    }

    /// After a follower's fetch of a partition this broker leads: wakes the waiters if the
    /// high watermark moved, and sends the ISR expansion the fetch allowed, if any.
    pub fn complete_follower_fetch(
        &self,
        part: &Arc<Partition>,
        replica_id: i32,
        outcome: FollowerFetchOutcome,
    ) {
        if outcome.high_watermark_moved {
            self.notify_progress();
        }
        if let Some(proposal) = outcome.expansion {
            if self.is_registered() {
                self.alter_partitions
                    .submit_expansion(part, replica_id, proposal);
            } else {
                // A leader whose ZooKeeper session lost its registration keeps serving (acks=1
                // produce, fetches) but proposes no new ISR member: the controller may already
                // count it dead, and the ISR it would grow is the one a new leader is elected
                // from. The next fetch of that follower proposes again once it is registered.
                part.complete_isr_change(None);
                debug!(topic = %part.topic, partition = part.partition, replica_id,
                    "not expanding the ISR: this broker's ZooKeeper session holds no registration");
            }
        }
    }

    /// Leader side, every `replica.lag.time.max.ms / 2` (Kafka's `maybeShrinkIsr` task): each
    /// led partition whose followers fell behind proposes a smaller ISR to the controller.
    pub fn maybe_shrink_isr(&self) {
        let lag = Duration::from_millis(self.config.replica_lag_time_max_ms);
        let now = Instant::now();
        for part in self.all() {
            if let Some(proposal) = part.maybe_shrink_isr(self.broker_id, lag, now) {
                self.alter_partitions.submit(&part, proposal);
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

    fn manager(dir: &std::path::Path) -> Arc<ReplicaManager> {
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
        ReplicaManager::new(
            1,
            config,
            Arc::new(logs),
            Arc::new(MetadataCache::new()),
            Arc::new(|| 0),
        )
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
    #[tokio::test]
    async fn only_a_newer_leader_epoch_changes_the_replica() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        let none = HashMap::new();
        let first = rm.become_leader_or_follower(&request(1, 4, &[1, 2]), &none);
        assert!(first[0].error.is_none());
        let part = rm.get("t", 0).unwrap();
        {
            let mut st = part.state();
            assert_eq!((st.leader, st.leader_epoch), (1, 4));
            st.followers.get_mut(&2).unwrap().log_end_offset = 0;
        }
        // Same epoch, even with another ISR: ignored, follower state kept.
        let again = rm.become_leader_or_follower(&request(1, 4, &[1]), &none);
        assert_eq!(again[0].error.as_ref().map(Error::code), Some(11));
        {
            let st = part.state();
            assert_eq!(st.isr, vec![1, 2]);
            assert_eq!(st.followers[&2].log_end_offset, 0);
        }
        // Older: refused.
        let older = rm.become_leader_or_follower(&request(2, 3, &[2]), &none);
        assert_eq!(older[0].error.as_ref().map(Error::code), Some(11));
        assert_eq!(part.state().leader, 1);
        // Newer: applied (now a follower of 2).
        let newer = rm.become_leader_or_follower(&request(2, 5, &[2, 1]), &none);
        assert!(newer[0].error.is_none());
        let st = part.state();
        assert_eq!(
            (st.leader, st.leader_epoch, st.isr.clone()),
            (2, 5, vec![2, 1])
        );
        assert!(st.followers.is_empty());
    }

    fn stop(delete: bool) -> StopReplicaRequest {
        use kafka_protocol::messages::stop_replica_request::{
            StopReplicaPartitionState, StopReplicaTopicState,
        };
        StopReplicaRequest::default()
            .with_controller_epoch(3)
            .with_topic_states(vec![StopReplicaTopicState::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_states(vec![StopReplicaPartitionState::default()
                    .with_partition_index(0)
                    .with_leader_epoch(-1)
                    .with_delete_partition(delete)])])
    }

    /// Kafka: ReplicaManager.becomeLeaderOrFollower calls onLeadershipChange with the
    /// partitions made leader and follower; StopReplica resigns too (the group coordinator's
    /// `onResignation`).
    #[tokio::test]
    async fn leadership_changes_reach_the_callback() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        type Seen = Vec<(Vec<(String, i32)>, Vec<(String, i32)>)>;
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let s = seen.clone();
        rm.on_leadership_change(Box::new(move |elected, resigned| {
            s.lock()
                .unwrap()
                .push((elected.to_vec(), resigned.to_vec()));
        }));
        let none = HashMap::new();
        let t0 = || vec![("t".to_string(), 0)];
        rm.become_leader_or_follower(&request(1, 1, &[1, 2]), &none);
        // The same epoch again changes nothing, and is not reported.
        rm.become_leader_or_follower(&request(1, 1, &[1, 2]), &none);
        rm.become_leader_or_follower(&request(2, 2, &[2, 1]), &none);
        let stopped = rm.stop_replicas(&stop(true));
        assert!(stopped[0].2.is_none());
        assert!(rm.get("t", 0).is_none());
        let seen = seen.lock().unwrap();
        assert_eq!(*seen, vec![(t0(), vec![]), (vec![], t0()), (vec![], t0())]);
    }

    /// Kafka: DelayedProduce completes when checkEnoughReplicasReachOffset says the high
    /// watermark passed the batch, and expires with REQUEST_TIMED_OUT on the leader.
    #[tokio::test(start_paused = true)]
    async fn acks_all_waits_for_the_follower_then_times_out_without_it() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        rm.become_leader_or_follower(&request(1, 1, &[1, 2]), &HashMap::new());
        let part = rm.get("t", 0).unwrap();
        let batch = || Bytes::from(storage::batch::simple_batch(0, 2, 10, 1_000));
        let (info, epoch) = rm
            .append_as_leader(&part, batch(), -1)
            .expect("ISR of 2 meets min.insync.replicas 1");
        let end = info.last_offset + 1;
        let waiter = {
            let (rm, part) = (rm.clone(), part.clone());
            tokio::spawn(async move {
                rm.wait_for_high_watermark(&part, end, epoch, Duration::from_secs(30))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "follower 2 has not fetched yet");
        // Follower 2 fetches at the log end: the high watermark moves, the waiter is answered.
        part.state()
            .update_follower_fetch_state(2, end, end, Instant::now());
        assert!(part.maybe_advance_high_watermark(1));
        rm.notify_progress();
        waiter.await.unwrap().expect("committed");
        // A second batch the follower never fetches: REQUEST_TIMED_OUT at the timeout.
        let (info, epoch) = rm.append_as_leader(&part, batch(), -1).unwrap();
        let waited = rm
            .wait_for_high_watermark(&part, info.last_offset + 1, epoch, Duration::from_secs(5))
            .await;
        assert!(matches!(waited, Err(Error::RequestTimedOut)), "{waited:?}");
    }

    /// Our divergence from Kafka, kept on purpose: a leader demoted while an acks=all batch
    /// waits keeps waiting; the batch is committed (success) once the new leader's high
    /// watermark, learnt as a follower, passes it, and NOT_LEADER_OR_FOLLOWER if truncation
    /// removes it (it was never replicated).
    #[tokio::test(start_paused = true)]
    async fn demoted_leader_answers_acks_all_by_what_the_new_leader_committed() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        let none = HashMap::new();
        rm.become_leader_or_follower(&request(1, 1, &[1, 2]), &none);
        let part = rm.get("t", 0).unwrap();
        let batch = || Bytes::from(storage::batch::simple_batch(0, 2, 10, 1_000));
        let wait = |end: i64, epoch: i32| {
            let (rm, part) = (rm.clone(), part.clone());
            tokio::spawn(async move {
                rm.wait_for_high_watermark(&part, end, epoch, Duration::from_secs(30))
                    .await
            })
        };
        let (first, epoch) = rm.append_as_leader(&part, batch(), -1).unwrap();
        let committed = wait(first.last_offset + 1, epoch);
        let (second, epoch) = rm.append_as_leader(&part, batch(), -1).unwrap();
        let lost = wait(second.last_offset + 1, epoch);
        tokio::task::yield_now().await;
        // Broker 2 takes over; as its follower we learn its high watermark: the first batch.
        rm.become_leader_or_follower(&request(2, 2, &[2, 1]), &none);
        part.append_records_to_follower(Bytes::new(), first.last_offset + 1)
            .unwrap();
        rm.notify_progress();
        committed
            .await
            .unwrap()
            .expect("the new leader had the first batch");
        assert!(!lost.is_finished());
        // The second batch never reached broker 2: truncated away.
        part.truncate_to(
            first.last_offset + 1,
            "test: the new leader's log ends here",
        );
        rm.notify_progress();
        assert!(matches!(
            lost.await.unwrap(),
            Err(Error::NotLeaderOrFollower)
        ));
    }

    /// Kafka: ReplicaManager.stopReplicas refuses a request naming an older leader epoch
    /// (FENCED_LEADER_EPOCH) and keeps the replica.
    #[tokio::test]
    async fn stop_replica_with_an_older_leader_epoch_is_fenced() {
        let d = tempfile::tempdir().unwrap();
        let rm = manager(d.path());
        rm.become_leader_or_follower(&request(1, 5, &[1, 2]), &HashMap::new());
        let mut req = stop(false);
        req.topic_states[0].partition_states[0].leader_epoch = 4;
        let out = rm.stop_replicas(&req);
        assert_eq!(out[0].2.as_ref().map(Error::code), Some(74));
        assert!(rm.get("t", 0).is_some());
    }
}
