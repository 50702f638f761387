//! Replication between brokers, the follower's side: fetching from leaders (the leader's view
//! of its followers, the ISR and the high watermark, is `crate::partition::Partition`'s).
//!
//! Kafka concept: a follower is a consumer with a `replica_id`: it fetches from the leader and
//! appends the leader's batches unchanged (offsets and leader epochs kept). Each fetch tells the
//! leader the follower's log end offset; the leader advances the high watermark to the lowest
//! log end offset in the ISR. Before fetching, a follower that may hold records the new leader
//! never had (it was the old leader, or it just restarted) asks OffsetsForLeaderEpoch for the
//! end of its latest epoch on the leader and truncates its divergent tail (KIP-101, KIP-279).
//!
//! Kafka classes mirrored: `ReplicaFetcherManager` (one fetcher per source broker and fetcher
//! index, `num.replica.fetchers`), `ReplicaFetcherThread` / `AbstractFetcherThread` (truncate,
//! then fetch; back off `replica.fetch.backoff.ms` on errors). The fetchers hold the replica
//! manager weakly (they stop when it is gone), not the broker.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use common::ErrorCode;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse,
    OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::client::Connection;
use crate::error::{Error, Result};
use crate::fetch_session::{next_epoch, PartitionParams, INITIAL_EPOCH};
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;

/// Fetch version the followers use (v12: flexible, names not ids, as Kafka 3.x with IBP 3.x
/// below topic-id fetches).
const FETCH_VERSION: i16 = 12;

/// What a fetcher knows about one of its partitions.
#[derive(Clone)]
struct FetchState {
    /// The hosted partition (a StopReplica or a LeaderAndIsr that replaces it also removes
    /// or re-adds it here).
    part: Arc<Partition>,
    leader_epoch: i32,
    /// Must truncate (OffsetsForLeaderEpoch) before the next fetch.
    truncating: bool,
    /// Backing off after an error until then.
    delayed_until: Option<Instant>,
}

/// A fetcher's key: the leader it fetches from and its index (`num.replica.fetchers`).
type FetcherKey = (i32, u32);
/// A partition's key in a fetcher: topic and partition.
type PartitionKey = (String, i32);

/// One fetcher: pulls every partition it is given from one leader.
struct Fetcher {
    leader: i32,
    partitions: Mutex<HashMap<(String, i32), FetchState>>,
    wake: Notify,
    task: OnceLock<tokio::task::JoinHandle<()>>,
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        if let Some(t) = self.task.get() {
            t.abort();
        }
    }
}

/// Kafka's `ReplicaFetcherManager`. Owned by the replica manager; its fetchers hold the
/// replica manager weakly and stop when it is gone.
pub struct ReplicaFetcherManager {
    replicas: Weak<ReplicaManager>,
    fetchers: Mutex<HashMap<(i32, u32), Arc<Fetcher>>>,
}

impl ReplicaFetcherManager {
    pub fn new(replicas: Weak<ReplicaManager>) -> Self {
        ReplicaFetcherManager {
            replicas,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    fn fetcher_index(topic: &str, partition: i32, n: u32) -> u32 {
        // Kafka: Utils.abs(31 * topic.hashCode + partition) % numFetchers; any stable spread works.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (topic, partition).hash(&mut h);
        (h.finish() % n.max(1) as u64) as u32
    }

    /// Applies the fetcher changes of one LeaderAndIsr or StopReplica at once (Kafka's
    /// `addFetcherForPartitions` / `removeFetcherForPartitions`, which also take a whole
    /// request's partitions): every partition named in `adds` or `removes` leaves the fetcher
    /// it was in, then each of `adds` (topic, partition, leader, leader epoch) joins its
    /// leader's fetcher and truncates first. A fetcher left with nothing stops.
    ///
    /// Each fetcher's partitions are locked once and each fetcher woken once, after all its
    /// partitions are in. Called per partition, a 3,333-partition LeaderAndIsr locked every
    /// fetcher for each partition and woke a fetcher 3,333 times, and the fetchers woken
    /// first ran beside the rest of the request on a 2-core machine (issue 20's measurements).
    pub fn update(&self, adds: &[(String, i32, i32, i32)], removes: &[(String, i32)]) {
        if adds.is_empty() && removes.is_empty() {
            return;
        }
        let Some(rm) = self.replicas.upgrade() else {
            return;
        };
        let n = rm.config.num_replica_fetchers;
        let mut by_fetcher: HashMap<FetcherKey, Vec<(PartitionKey, FetchState)>> = HashMap::new();
        for (topic, partition, leader, leader_epoch) in adds {
            let Some(part) = rm.get(topic, *partition) else {
                warn!(
                    topic = %topic,
                    partition, "asked to fetch a partition this broker does not host"
                );
                continue;
            };
            let key = (*leader, Self::fetcher_index(topic, *partition, n));
            by_fetcher.entry(key).or_default().push((
                (topic.clone(), *partition),
                FetchState {
                    part,
                    leader_epoch: *leader_epoch,
                    truncating: true,
                    delayed_until: None,
                },
            ));
        }
        drop(rm);
        let leaving: std::collections::HashSet<(&str, i32)> = adds
            .iter()
            .map(|(t, p, _, _)| (t.as_str(), *p))
            .chain(removes.iter().map(|(t, p)| (t.as_str(), *p)))
            .collect();
        let mut fetchers = self.fetchers.lock().unwrap_or_else(|e| e.into_inner());
        fetchers.retain(|key, f| {
            let mut parts = f.partitions.lock().unwrap_or_else(|e| e.into_inner());
            parts.retain(|(t, p), _| !leaving.contains(&(t.as_str(), *p)));
            !parts.is_empty() || by_fetcher.contains_key(key)
        });
        for (key, states) in by_fetcher {
            let f = fetchers.entry(key).or_insert_with(|| {
                let f = Arc::new(Fetcher {
                    leader: key.0,
                    partitions: Mutex::new(HashMap::new()),
                    wake: Notify::new(),
                    task: OnceLock::new(),
                });
                let task = tokio::spawn(run_fetcher(Arc::downgrade(&f), self.replicas.clone()));
                let _ = f.task.set(task);
                info!(leader = key.0, fetcher = key.1, "started replica fetcher");
                f
            });
            f.partitions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(states);
            f.wake.notify_one();
        }
    }

    pub fn shutdown(&self) {
        self.fetchers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

fn leader_address(rm: &ReplicaManager, leader: i32) -> Option<String> {
    let b = rm.metadata.broker(leader)?;
    let ep = b
        .endpoints
        .iter()
        .find(|e| e.listener == rm.config.inter_broker_listener_name)?;
    Some(format!("{}:{}", ep.host, ep.port))
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn run_fetcher(me: Weak<Fetcher>, replicas: Weak<ReplicaManager>) {
    let mut conn: Option<Connection> = None;
    let mut session = SessionHandler::default();
    loop {
        let (Some(f), Some(b)) = (me.upgrade(), replicas.upgrade()) else {
            return;
        };
        let backoff = Duration::from_millis(b.config.replica_fetch_backoff_ms);
        let now = Instant::now();
        let parts: Vec<FetchState> = f
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|s| s.delayed_until.is_none_or(|d| d <= now))
            .cloned()
            .collect();
        if parts.is_empty() {
            drop(b);
            // Holding `f` here delays its drop by at most one backoff; the loop then ends.
            let _ = tokio::time::timeout(backoff, f.wake.notified()).await;
            continue;
        }
        if conn.is_none() {
            let Some(addr) = leader_address(&b, f.leader) else {
                debug!(
                    leader = f.leader,
                    "leader not in the metadata cache yet; waiting"
                );
                drop((f, b));
                tokio::time::sleep(backoff).await;
                continue;
            };
            match Connection::connect(
                &addr,
                &format!("replica-fetcher-{}", b.broker_id),
                Duration::from_millis(b.config.request_timeout_ms),
            )
            .await
            {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    warn!(leader = f.leader, error = %e, "replica fetcher cannot connect to the leader");
                    drop((f, b));
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let truncating: Vec<((String, i32), FetchState)> = parts
            .iter()
            .filter(|s| s.truncating)
            .map(|s| ((s.part.topic.clone(), s.part.partition), s.clone()))
            .collect();
        let result = if !truncating.is_empty() {
            truncate(&b, &f, c, &truncating).await
        } else {
            fetch(&b, &f, c, &mut session, &parts).await
        };
        if let Err(e) = result {
            warn!(leader = f.leader, error = %e, "replica fetch failed; reconnecting after backoff");
            conn = None;
            session.reset(false);
            drop((f, b));
            tokio::time::sleep(backoff).await;
        }
    }
}

fn delay(f: &Fetcher, key: &(String, i32), backoff: Duration) {
    if let Some(s) = f
        .partitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(key)
    {
        s.delayed_until = Some(Instant::now() + backoff);
    }
}

fn set_truncating(f: &Fetcher, key: &(String, i32), epoch: i32, value: bool) {
    if let Some(s) = f
        .partitions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(key)
    {
        // A newer LeaderAndIsr may have replaced the state meanwhile; keep its flag.
        if s.leader_epoch == epoch {
            s.truncating = value;
        }
    }
}

/// Truncates each partition to where its log stops agreeing with the leader's.
async fn truncate(
    b: &ReplicaManager,
    f: &Fetcher,
    c: &mut Connection,
    parts: &[((String, i32), FetchState)],
) -> Result<()> {
    let backoff = Duration::from_millis(b.config.replica_fetch_backoff_ms);
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    let mut no_epoch = Vec::new();
    for ((t, p), s) in parts {
        let Some(part) = b.get(t, *p) else {
            continue;
        };
        let latest = part.log().latest_epoch();
        match latest {
            None => no_epoch.push(((t.clone(), *p), s.leader_epoch, part)),
            Some(e) => {
                let entry = OffsetForLeaderPartition::default()
                    .with_partition(*p)
                    .with_current_leader_epoch(s.leader_epoch)
                    .with_leader_epoch(e);
                match topics.iter_mut().find(|x| x.topic.0.as_str() == t.as_str()) {
                    Some(x) => x.partitions.push(entry),
                    None => topics.push(
                        OffsetForLeaderTopic::default()
                            .with_topic(name(t))
                            .with_partitions(vec![entry]),
                    ),
                }
            }
        }
    }
    // No epoch recorded: Kafka falls back to the high watermark.
    for (key, epoch, part) in no_epoch {
        let hw = part.state().high_watermark;
        part.truncate_to(
            hw,
            "no leader epoch recorded: truncating to the high watermark",
        );
        set_truncating(f, &key, epoch, false);
    }
    if topics.is_empty() {
        return Ok(());
    }
    let req = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(b.broker_id))
        .with_topics(topics);
    let resp: OffsetForLeaderEpochResponse = c.send(ApiKey::OffsetForLeaderEpoch, 4, &req).await?;
    let epochs: HashMap<&(String, i32), i32> =
        parts.iter().map(|(k, s)| (k, s.leader_epoch)).collect();
    for t in resp.topics {
        let topic = t.topic.to_string();
        for r in t.partitions {
            let key = (topic.clone(), r.partition);
            let Some(part) = b.get(&topic, r.partition) else {
                continue;
            };
            let epoch = epochs.get(&key).copied().unwrap_or(-1);
            if r.error_code != 0 {
                debug!(topic = %topic, partition = r.partition, error_code = r.error_code,
                    "OffsetsForLeaderEpoch failed; backing off");
                delay(f, &key, backoff);
                continue;
            }
            let target = if r.leader_epoch < 0 || r.end_offset < 0 {
                part.state().high_watermark
            } else {
                let ours = part.log().end_offset_for_epoch(r.leader_epoch).1;
                let ours = if ours < 0 {
                    part.log_end_offset()
                } else {
                    ours
                };
                r.end_offset.min(ours)
            };
            part.truncate_to(target, "truncating to the end of the leader's epoch");
            set_truncating(f, &key, epoch, false);
        }
    }
    Ok(())
}

/// The follower's side of a fetch session with its leader (Kafka's `FetchSessionHandler`):
/// which session the leader gave, the epoch of the next request, and what the leader's
/// session holds for each partition, so that a request names only what changed.
#[derive(Default)]
struct SessionHandler {
    /// The leader's session id (0: none).
    id: i32,
    /// The next request's epoch: 0 (a full fetch, asking for a session), then 1, 2, ...
    epoch: i32,
    /// Per topic and partition, the parameters the leader's session holds.
    sent: HashMap<String, HashMap<i32, PartitionParams>>,
    sent_count: usize,
}

impl SessionHandler {
    /// After an error the next fetch is full and closes the session (Kafka's
    /// `nextCloseExisting`); FETCH_SESSION_ID_NOT_FOUND means there is none to close.
    fn reset(&mut self, session_gone: bool) {
        if session_gone {
            self.id = 0;
        }
        self.epoch = INITIAL_EPOCH;
        self.forget_all();
    }

    fn forget_all(&mut self) {
        self.sent.clear();
        self.sent_count = 0;
    }

    fn sent(&self, topic: &str, partition: i32) -> Option<&PartitionParams> {
        self.sent.get(topic)?.get(&partition)
    }

    fn record(&mut self, topic: &str, partition: i32, params: PartitionParams) {
        let by_partition = match self.sent.get_mut(topic) {
            Some(m) => m,
            None => self.sent.entry(topic.to_string()).or_default(),
        };
        if by_partition.insert(partition, params).is_none() {
            self.sent_count += 1;
        }
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(m) = self.sent.get_mut(topic) {
            if m.remove(&partition).is_some() {
                self.sent_count -= 1;
            }
            if m.is_empty() {
                self.sent.remove(topic);
            }
        }
    }
}

/// One fetch round for every partition not truncating or backing off. Within a session only
/// the partitions whose parameters changed are named, and the answer carries only those with
/// news (see `crate::fetch_session`).
async fn fetch(
    b: &ReplicaManager,
    f: &Fetcher,
    c: &mut Connection,
    session: &mut SessionHandler,
    parts: &[FetchState],
) -> Result<()> {
    let backoff = Duration::from_millis(b.config.replica_fetch_backoff_ms);
    let full = session.epoch == INITIAL_EPOCH;
    let mut topics: Vec<FetchTopic> = Vec::new();
    // The states in request order (grouped by topic as the request is): a full answer comes
    // in the same order, so it is matched by position, without a lookup per partition.
    let mut in_request: Vec<Vec<&FetchState>> = Vec::new();
    let mut changed: Vec<(&str, i32, PartitionParams)> = Vec::new();
    let mut still_sent = 0usize;
    for s in parts {
        let part = &s.part;
        let (leo, start) = {
            let log = part.log();
            (log.log_end_offset(), log.log_start_offset())
        };
        let params = PartitionParams {
            fetch_offset: leo,
            log_start_offset: start,
            max_bytes: b.config.replica_fetch_max_bytes,
            current_leader_epoch: s.leader_epoch,
        };
        if !full {
            if let Some(was) = session.sent(&part.topic, part.partition) {
                still_sent += 1;
                if *was == params {
                    continue;
                }
            }
        }
        changed.push((&part.topic, part.partition, params));
        let entry = FetchPartition::default()
            .with_partition(part.partition)
            .with_current_leader_epoch(params.current_leader_epoch)
            .with_fetch_offset(params.fetch_offset)
            .with_log_start_offset(params.log_start_offset)
            .with_partition_max_bytes(params.max_bytes);
        match topics
            .iter()
            .position(|x| x.topic.0.as_str() == part.topic.as_str())
        {
            Some(i) => {
                topics[i].partitions.push(entry);
                in_request[i].push(s);
            }
            None => {
                topics.push(
                    FetchTopic::default()
                        .with_topic(name(&part.topic))
                        .with_partitions(vec![entry]),
                );
                in_request.push(vec![s]);
            }
        }
    }
    // Partitions the session holds that this round does not fetch (stopped, backing off,
    // truncating) are forgotten.
    let mut forgotten: Vec<(String, i32)> = Vec::new();
    if !full && still_sent < session.sent_count {
        let wanted: HashMap<&str, std::collections::HashSet<i32>> =
            parts.iter().fold(HashMap::new(), |mut m, s| {
                m.entry(s.part.topic.as_str())
                    .or_default()
                    .insert(s.part.partition);
                m
            });
        for (t, ps) in &session.sent {
            for p in ps.keys() {
                if !wanted.get(t.as_str()).is_some_and(|w| w.contains(p)) {
                    forgotten.push((t.clone(), *p));
                }
            }
        }
    }
    let mut forgotten_topics: Vec<ForgottenTopic> = Vec::new();
    for (t, p) in &forgotten {
        match forgotten_topics
            .iter_mut()
            .find(|x| x.topic.0.as_str() == t.as_str())
        {
            Some(x) => x.partitions.push(*p),
            None => forgotten_topics.push(
                ForgottenTopic::default()
                    .with_topic(name(t))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(b.broker_id))
        .with_max_wait_ms(b.config.replica_fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(10 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_id(session.id)
        .with_session_epoch(session.epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgotten_topics);
    let resp: FetchResponse = c.send(ApiKey::Fetch, FETCH_VERSION, &req).await?;
    if resp.error_code == ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code()
        || resp.error_code == ErrorCode::INVALID_FETCH_SESSION_EPOCH.code()
    {
        debug!(
            leader = f.leader,
            session_id = session.id,
            error_code = resp.error_code,
            "fetch session lost; the next fetch is full"
        );
        session.reset(resp.error_code == ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code());
        return Ok(());
    }
    if resp.error_code != 0 {
        return Err(Error::Peer(resp.error_code));
    }
    // What the leader's session now holds.
    if resp.session_id == 0 {
        session.reset(true);
    } else {
        if full {
            session.forget_all();
        }
        for (t, p, params) in &changed {
            session.record(t, *p, *params);
        }
        for (t, p) in &forgotten {
            session.forget(t, *p);
        }
        session.id = resp.session_id;
        session.epoch = next_epoch(session.epoch);
    }
    // Positional matching holds for a full answer; an incremental one is a subset, found
    // through an index built the first time a partition is not where position says.
    let mut index: Option<HashMap<(&str, i32), &FetchState>> = None;
    let mut progressed = false;
    for (ti, t) in resp.responses.into_iter().enumerate() {
        let topic = t.topic.to_string();
        for (pi, d) in t.partitions.into_iter().enumerate() {
            let positional = in_request
                .get(ti)
                .and_then(|v| v.get(pi))
                .copied()
                .filter(|s| s.part.partition == d.partition_index && s.part.topic == topic);
            let s = match positional {
                Some(s) => s,
                None => {
                    let index = index.get_or_insert_with(|| {
                        parts
                            .iter()
                            .map(|s| ((s.part.topic.as_str(), s.part.partition), s))
                            .collect()
                    });
                    match index.get(&(topic.as_str(), d.partition_index)) {
                        Some(s) => s,
                        None => continue,
                    }
                }
            };
            let part = &s.part;
            let epoch = s.leader_epoch;
            let key = || (topic.clone(), d.partition_index);
            match d.error_code {
                0 => {
                    let records = d.records.unwrap_or_default();
                    if !records.is_empty()
                        && !b
                            .get(&topic, d.partition_index)
                            .is_some_and(|now| Arc::ptr_eq(&now, part))
                    {
                        // Stopped (or replaced) while the fetch was in flight.
                        continue;
                    }
                    match part.append_records_to_follower(records, d.high_watermark) {
                        Ok(()) => progressed = true,
                        Err(storage::Error::UnexpectedOffset(msg)) => {
                            warn!(topic = %topic, partition = d.partition_index, reason = %msg,
                                "leader's batches do not continue our log; truncating again");
                            set_truncating(f, &key(), epoch, true);
                        }
                        Err(e) => {
                            warn!(topic = %topic, partition = d.partition_index, error = %e,
                                "follower append failed; backing off");
                            delay(f, &key(), backoff);
                        }
                    }
                }
                code if code == ErrorCode::OFFSET_OUT_OF_RANGE.code() => {
                    handle_out_of_range(b, c, part).await?;
                }
                code => {
                    debug!(topic = %topic, partition = d.partition_index, error_code = code,
                        "replica fetch error; backing off");
                    delay(f, &key(), backoff);
                }
            }
        }
    }
    if progressed {
        b.notify_progress();
    }
    Ok(())
}

/// Kafka's `handleOutOfRangeError`: past the leader's end, truncate to it; below the leader's
/// start, start over empty at the leader's log start offset.
async fn handle_out_of_range(
    b: &ReplicaManager,
    c: &mut Connection,
    part: &Partition,
) -> Result<()> {
    let ask = |ts: i64| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(b.broker_id))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name(&part.topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(part.partition)
                    .with_timestamp(ts)])])
    };
    let offset_of = |r: ListOffsetsResponse| -> Option<i64> {
        let p = r.topics.first()?.partitions.first()?;
        (p.error_code == 0).then_some(p.offset)
    };
    let latest = offset_of(c.send(ApiKey::ListOffsets, 4, &ask(-1)).await?);
    let leo = part.log_end_offset();
    match latest {
        Some(leader_end) if leo > leader_end => {
            part.truncate_to(leader_end, "fetch offset past the leader's log end");
        }
        Some(_) => {
            if let Some(start) = offset_of(c.send(ApiKey::ListOffsets, 4, &ask(-2)).await?) {
                info!(topic = %part.topic, partition = part.partition, leader_log_start = start,
                    "fetch offset below the leader's log start; starting over there");
                if let Err(e) = part.log().truncate_fully_and_start_at(start) {
                    warn!(error = %e, "cannot restart the log");
                }
                let mut st = part.state();
                st.high_watermark = st.high_watermark.max(start);
            }
        }
        None => {}
    }
    Ok(())
}
