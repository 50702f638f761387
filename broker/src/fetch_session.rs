//! Fetch sessions (KIP-227): the leader remembers what a fetcher asked for, so that the next
//! fetch only names what changed and the answer only carries what changed.
//!
//! Kafka concept: a follower fetches every partition it follows from one leader, again and
//! again. Without a session each request names all of them with their offsets, and each answer
//! carries all of them, even when nothing moved: at 100,000 partitions that is megabytes per
//! round for nothing. A fetch with `session_epoch` 0 (a "full" fetch) asks the leader to open a
//! session; the answer gives its `session_id`. The following fetches are "incremental": they
//! carry the session id and the next epoch (1, 2, ...), name only the partitions whose fetch
//! offset, log start offset, maximum or leader epoch changed (and in `forgotten_topics_data` the
//! ones to drop), and the leader answers only the partitions that have records, an error, or a
//! new high watermark or log start offset. Epoch -1 closes the session (a "sessionless" fetch).
//! Kafka classes mirrored: `FetchSession`, `CachedPartition`, `FetchSessionCache` (slots
//! `max.incremental.fetch.session.cache.slots`, eviction of a session unused for two minutes or
//! less valuable than the new one), `FetchManager.newContext`; the fetcher's side is
//! `FetchSessionHandler`, in `crate::replication`.
//!
//! Invariant: an incremental fetch is served only at the epoch the session expects, and a
//! session changes (partitions added, updated or forgotten) only while its epoch moves on, so an
//! answer computed from the session is still valid if the epoch is unchanged when it is sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::ErrorCode;
use kafka_protocol::messages::FetchRequest;

/// `session_epoch` of a full fetch that asks for a session.
pub const INITIAL_EPOCH: i32 = 0;
/// `session_epoch` of a sessionless fetch (and of one that closes its session).
pub const FINAL_EPOCH: i32 = -1;
/// Kafka's session eviction threshold (`FetchSessionCache` evictionMs): a session unused this
/// long may be replaced by any new one.
pub const EVICTION: Duration = Duration::from_secs(120);

/// The epoch after `epoch` (Kafka's `FetchMetadata.nextEpoch`).
pub fn next_epoch(epoch: i32) -> i32 {
    if epoch < 0 {
        FINAL_EPOCH
    } else if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// What a fetch asks of one partition, from the request or from the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionParams {
    pub fetch_offset: i64,
    /// The fetcher's own log start offset (followers).
    pub log_start_offset: i64,
    pub max_bytes: i32,
    pub current_leader_epoch: i32,
}

/// One partition of a session (Kafka's `CachedPartition`).
#[derive(Clone, Debug)]
pub struct CachedPartition {
    pub topic: Arc<str>,
    pub partition: i32,
    pub params: PartitionParams,
    /// The high watermark the fetcher was last told (-1 after an error, so it is told again).
    pub high_watermark: i64,
    /// Our log start offset the fetcher was last told.
    pub local_log_start_offset: i64,
}

/// What the answer said about one partition, to decide whether a session answer carries it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Answered {
    pub records_len: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub error_code: i16,
}

impl CachedPartition {
    /// Kafka's `maybeUpdateResponseData`: true when the answer must carry this partition
    /// (records, an error, or a high watermark or log start offset the fetcher has not seen);
    /// with `update`, remembers what it is now told.
    pub fn must_respond(&mut self, a: &Answered, update: bool) -> bool {
        let mut must = a.records_len > 0;
        if self.high_watermark != a.high_watermark {
            must = true;
            if update {
                self.high_watermark = a.high_watermark;
            }
        }
        if self.local_log_start_offset != a.log_start_offset {
            must = true;
            if update {
                self.local_log_start_offset = a.log_start_offset;
            }
        }
        if a.error_code != 0 {
            must = true;
            if update {
                self.high_watermark = -1;
            }
        }
        must
    }
}

/// One fetch session. Partitions are kept in order; a partition whose answer carried records
/// moves to the end, so the others get the byte budget first next time (Kafka does the same).
#[derive(Debug)]
pub struct FetchSession {
    pub id: i32,
    /// Opened by a follower (Kafka: privileged; a consumer's session cannot evict it).
    pub privileged: bool,
    /// The epoch the next incremental fetch must carry.
    pub epoch: i32,
    created: Instant,
    last_used: Instant,
    order: BTreeMap<u64, CachedPartition>,
    index: HashMap<Arc<str>, HashMap<i32, u64>>,
    next_seq: u64,
}

impl FetchSession {
    fn new(id: i32, privileged: bool, now: Instant) -> Self {
        FetchSession {
            id,
            privileged,
            epoch: next_epoch(INITIAL_EPOCH),
            created: now,
            last_used: now,
            order: BTreeMap::new(),
            index: HashMap::new(),
            next_seq: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The partitions, in session order.
    pub fn partitions(&self) -> impl Iterator<Item = &CachedPartition> {
        self.order.values()
    }

    fn seq_of(&self, topic: &str, partition: i32) -> Option<u64> {
        self.index.get(topic)?.get(&partition).copied()
    }

    fn push(&mut self, cp: CachedPartition) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.index
            .entry(cp.topic.clone())
            .or_default()
            .insert(cp.partition, seq);
        self.order.insert(seq, cp);
    }

    /// Adds or updates `params` for a partition (Kafka's `FetchSession.update`, one entry).
    pub fn upsert(&mut self, topic: &str, partition: i32, params: PartitionParams) {
        match self
            .seq_of(topic, partition)
            .and_then(|s| self.order.get_mut(&s))
        {
            Some(cp) => cp.params = params,
            None => {
                let topic: Arc<str> = match self.index.get_key_value(topic) {
                    Some((t, _)) => t.clone(),
                    None => Arc::from(topic),
                };
                self.push(CachedPartition {
                    topic,
                    partition,
                    params,
                    high_watermark: -1,
                    local_log_start_offset: -1,
                });
            }
        }
    }

    /// Drops a partition (one the fetcher forgot, or one about to be replaced).
    pub fn forget(&mut self, topic: &str, partition: i32) {
        let Some(by_partition) = self.index.get_mut(topic) else {
            return;
        };
        let Some(seq) = by_partition.remove(&partition) else {
            return;
        };
        if by_partition.is_empty() {
            self.index.remove(topic);
        }
        self.order.remove(&seq);
    }

    /// Applies an incremental fetch's partitions and forgotten partitions.
    pub fn update_from(&mut self, req: &FetchRequest) {
        for t in &req.topics {
            for p in &t.partitions {
                self.upsert(t.topic.0.as_str(), p.partition, params_of(p));
            }
        }
        for f in &req.forgotten_topics_data {
            for p in &f.partitions {
                self.forget(f.topic.0.as_str(), *p);
            }
        }
    }

    /// Decides, partition by partition in session order, what an answer carries: `answered`
    /// must give every session partition in session order. Remembers what the fetcher is told,
    /// moves the partitions that got records to the end, and returns one flag per partition.
    pub fn settle(&mut self, answered: impl IntoIterator<Item = Answered>) -> Vec<bool> {
        let mut keep = Vec::with_capacity(self.order.len());
        let mut to_end = Vec::new();
        for ((seq, cp), a) in self.order.iter_mut().zip(answered) {
            let must = cp.must_respond(&a, true);
            if must && a.records_len > 0 {
                to_end.push(*seq);
            }
            keep.push(must);
        }
        for seq in to_end {
            if let Some(cp) = self.order.remove(&seq) {
                let (topic, partition) = (cp.topic.clone(), cp.partition);
                let new = self.next_seq;
                self.next_seq += 1;
                if let Some(s) = self
                    .index
                    .get_mut(&*topic)
                    .and_then(|m| m.get_mut(&partition))
                {
                    *s = new;
                }
                self.order.insert(new, cp);
            }
        }
        keep
    }
}

/// A request partition's parameters.
pub fn params_of(p: &kafka_protocol::messages::fetch_request::FetchPartition) -> PartitionParams {
    PartitionParams {
        fetch_offset: p.fetch_offset,
        log_start_offset: p.log_start_offset,
        max_bytes: p.partition_max_bytes,
        current_leader_epoch: p.current_leader_epoch,
    }
}

pub type SharedSession = Arc<Mutex<FetchSession>>;

/// How a fetch is served (Kafka's `FetchContext` kinds).
pub enum FetchContext {
    /// No session: read what the request names, answer all of it, session id 0.
    Sessionless,
    /// A full fetch asking for a session: read what the request names, answer all of it, and
    /// open a session of those partitions if the cache has (or can make) room.
    Full,
    /// An incremental fetch on a live session, already updated from the request; the answer
    /// must be settled while the session's epoch is still `epoch`.
    Incremental { session: SharedSession, epoch: i32 },
    /// The session is unknown or the epoch is wrong: answer this error, nothing else.
    Error(i16),
}

struct CacheInner {
    sessions: HashMap<i32, SharedSession>,
    next_id: u32,
    partitions_cached: usize,
}

/// The broker's fetch sessions (Kafka's `FetchSessionCache`).
pub struct FetchSessionCache {
    slots: usize,
    inner: Mutex<CacheInner>,
}

/// Locks a session.
pub fn session_lock(s: &SharedSession) -> MutexGuard<'_, FetchSession> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl FetchSessionCache {
    /// A cache of `slots` sessions (`max.incremental.fetch.session.cache.slots`; 0 = none).
    pub fn new(slots: usize, seed: u32) -> Self {
        FetchSessionCache {
            slots,
            inner: Mutex::new(CacheInner {
                sessions: HashMap::new(),
                next_id: seed,
                partitions_cached: 0,
            }),
        }
    }

    fn inner(&self) -> MutexGuard<'_, CacheInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open sessions (Kafka's `NumIncrementalFetchSessions`).
    pub fn len(&self) -> usize {
        self.inner().sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Partitions cached over all sessions (`NumIncrementalFetchPartitionsCached`), as of each
    /// session's last use.
    pub fn partitions_cached(&self) -> usize {
        self.inner().partitions_cached
    }

    /// Kafka's `FetchManager.newContext`: what kind of fetch `req` is, with the session
    /// already updated from it if it is incremental.
    pub fn new_context(&self, req: &FetchRequest, now: Instant) -> FetchContext {
        let (id, epoch) = (req.session_id, req.session_epoch);
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // A full fetch closes the session it names.
            if id != 0 {
                self.remove(id);
            }
            return if epoch == FINAL_EPOCH {
                FetchContext::Sessionless
            } else {
                FetchContext::Full
            };
        }
        let mut inner = self.inner();
        let Some(session) = inner.sessions.get(&id).cloned() else {
            return FetchContext::Error(ErrorCode::FETCH_SESSION_ID_NOT_FOUND.code());
        };
        let mut s = session_lock(&session);
        if s.epoch != epoch {
            return FetchContext::Error(ErrorCode::INVALID_FETCH_SESSION_EPOCH.code());
        }
        let before = s.len();
        s.update_from(req);
        inner.partitions_cached = inner.partitions_cached - before + s.len();
        if s.is_empty() {
            // Nothing left to fetch: Kafka closes the session and answers sessionless.
            drop(s);
            inner.sessions.remove(&id);
            return FetchContext::Sessionless;
        }
        s.last_used = now;
        s.epoch = next_epoch(s.epoch);
        let expected = s.epoch;
        drop(s);
        FetchContext::Incremental {
            session,
            epoch: expected,
        }
    }

    /// Closes session `id`.
    pub fn remove(&self, id: i32) {
        let mut inner = self.inner();
        if let Some(s) = inner.sessions.remove(&id) {
            let n = session_lock(&s).len();
            inner.partitions_cached -= n;
        }
    }

    /// Kafka's `maybeCreateSession`: opens a session of `partitions` (with what the full
    /// answer told of each) if there is a free slot or one can be evicted; its id, or 0.
    pub fn maybe_create(
        &self,
        privileged: bool,
        partitions: impl IntoIterator<Item = CachedPartition>,
        now: Instant,
    ) -> i32 {
        if self.slots == 0 {
            return 0;
        }
        let mut inner = self.inner();
        let mut s = FetchSession::new(0, privileged, now);
        for cp in partitions {
            // A request naming a partition twice keeps its last entry (Kafka reads it into a map).
            s.forget(&cp.topic, cp.partition);
            s.push(cp);
        }
        if inner.sessions.len() >= self.slots
            && !Self::try_evict(&mut inner, privileged, s.len(), now)
        {
            return 0;
        }
        let id = loop {
            // Kafka draws a random positive id; a counter from a random start walked by an
            // odd step is as good and never repeats within 2^31 sessions.
            inner.next_id = inner.next_id.wrapping_add(0x9E37_79B9) & 0x7FFF_FFFF;
            let id = inner.next_id as i32;
            if id != 0 && !inner.sessions.contains_key(&id) {
                break id;
            }
        };
        s.id = id;
        inner.partitions_cached += s.len();
        inner.sessions.insert(id, Arc::new(Mutex::new(s)));
        id
    }

    /// Kafka's `tryEvict`: a session unused for [`EVICTION`] goes first; otherwise the least
    /// valuable one (unprivileged before privileged, then fewest partitions) goes if the new
    /// session is worth at least as much. A session younger than [`EVICTION`] can only be
    /// evicted by a privileged one, and a privileged one only once it is that old.
    fn try_evict(inner: &mut CacheInner, privileged: bool, size: usize, now: Instant) -> bool {
        let mut stalest: Option<(Instant, i32)> = None;
        let mut cheapest: Option<((bool, usize, i32), i32)> = None;
        for (id, s) in &inner.sessions {
            let s = session_lock(s);
            if stalest.is_none_or(|(t, _)| s.last_used < t) {
                stalest = Some((s.last_used, *id));
            }
            let old = now.duration_since(s.created) > EVICTION;
            let evictable = if privileged {
                !s.privileged || old
            } else {
                old
            };
            let key = (s.privileged, s.len(), *id);
            if evictable && cheapest.is_none_or(|(k, _)| key < k) {
                cheapest = Some((key, *id));
            }
        }
        let victim = match (stalest, cheapest) {
            (Some((t, id)), _) if now.duration_since(t) > EVICTION => Some(id),
            (_, Some((key, id))) if (privileged, size, 0) >= key => Some(id),
            _ => None,
        };
        match victim.and_then(|id| inner.sessions.remove(&id)) {
            Some(s) => {
                inner.partitions_cached -= session_lock(&s).len();
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn params(offset: i64) -> PartitionParams {
        PartitionParams {
            fetch_offset: offset,
            log_start_offset: 0,
            max_bytes: 1 << 20,
            current_leader_epoch: 3,
        }
    }

    fn cached(topic: &str, partition: i32, offset: i64, hw: i64) -> CachedPartition {
        CachedPartition {
            topic: Arc::from(topic),
            partition,
            params: params(offset),
            high_watermark: hw,
            local_log_start_offset: 0,
        }
    }

    fn request(
        id: i32,
        epoch: i32,
        parts: &[(&str, i32, i64)],
        forget: &[(&str, i32)],
    ) -> FetchRequest {
        let name = |t: &str| TopicName(StrBytes::from_string(t.to_string()));
        FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch)
            .with_topics(
                parts
                    .iter()
                    .map(|(t, p, o)| {
                        FetchTopic::default()
                            .with_topic(name(t))
                            .with_partitions(vec![FetchPartition::default()
                                .with_partition(*p)
                                .with_fetch_offset(*o)
                                .with_current_leader_epoch(3)
                                .with_partition_max_bytes(1 << 20)])
                    })
                    .collect(),
            )
            .with_forgotten_topics_data(
                forget
                    .iter()
                    .map(|(t, p)| {
                        ForgottenTopic::default()
                            .with_topic(name(t))
                            .with_partitions(vec![*p])
                    })
                    .collect(),
            )
    }

    fn answered(records_len: usize, hw: i64) -> Answered {
        Answered {
            records_len,
            high_watermark: hw,
            log_start_offset: 0,
            error_code: 0,
        }
    }

    #[test]
    fn epochs_follow_kafka() {
        assert_eq!(next_epoch(0), 1);
        assert_eq!(next_epoch(7), 8);
        assert_eq!(next_epoch(i32::MAX), 1);
        assert_eq!(next_epoch(-1), -1);
    }

    #[test]
    fn an_answer_carries_only_what_changed() {
        let mut cp = cached("t", 0, 10, 10);
        // Nothing new: left out, and stays left out.
        assert!(!cp.must_respond(&answered(0, 10), true));
        // A new high watermark is told once.
        assert!(cp.must_respond(&answered(0, 12), true));
        assert!(!cp.must_respond(&answered(0, 12), true));
        // Records always.
        assert!(cp.must_respond(&answered(100, 12), true));
        // An error is told, and the next answer after it tells the high watermark again.
        let err = Answered {
            error_code: 6,
            ..answered(0, 12)
        };
        assert!(cp.must_respond(&err, true));
        assert!(cp.must_respond(&answered(0, 12), true));
        // A moved log start offset is told.
        let moved = Answered {
            log_start_offset: 5,
            ..answered(0, 12)
        };
        assert!(cp.must_respond(&moved, true));
        // Without update nothing is remembered.
        assert!(cp.must_respond(&answered(0, 13), false));
        assert!(cp.must_respond(&answered(0, 13), false));
    }

    #[test]
    fn a_session_lives_through_incremental_fetches_at_the_right_epoch() {
        let now = Instant::now();
        let cache = FetchSessionCache::new(10, 1);
        assert!(matches!(
            cache.new_context(&request(0, INITIAL_EPOCH, &[("t", 0, 0)], &[]), now),
            FetchContext::Full
        ));
        let id = cache.maybe_create(true, [cached("t", 0, 0, 0), cached("t", 1, 0, 0)], now);
        assert_ne!(id, 0);
        assert_eq!((cache.len(), cache.partitions_cached()), (1, 2));
        // Epoch 1 is next; it adds u-0 and forgets t-1.
        let ctx = cache.new_context(&request(id, 1, &[("u", 0, 5)], &[("t", 1)]), now);
        let FetchContext::Incremental { session, epoch } = ctx else {
            panic!("expected an incremental context");
        };
        assert_eq!(epoch, 2);
        {
            let s = session_lock(&session);
            let keys: Vec<(String, i32, i64)> = s
                .partitions()
                .map(|c| (c.topic.to_string(), c.partition, c.params.fetch_offset))
                .collect();
            assert_eq!(keys, vec![("t".into(), 0, 0), ("u".into(), 0, 5)]);
        }
        assert_eq!(cache.partitions_cached(), 2);
        // The same epoch again (a duplicate) is refused; so is an unknown session.
        assert!(matches!(
            cache.new_context(&request(id, 1, &[], &[]), now),
            FetchContext::Error(71)
        ));
        assert!(matches!(
            cache.new_context(&request(id + 1, 1, &[], &[]), now),
            FetchContext::Error(70)
        ));
        // A full fetch naming the session closes it.
        assert!(matches!(
            cache.new_context(&request(id, FINAL_EPOCH, &[], &[]), now),
            FetchContext::Sessionless
        ));
        assert_eq!((cache.len(), cache.partitions_cached()), (0, 0));
    }

    #[test]
    fn forgetting_every_partition_closes_the_session() {
        let now = Instant::now();
        let cache = FetchSessionCache::new(10, 1);
        let id = cache.maybe_create(false, [cached("t", 0, 0, 0)], now);
        assert!(matches!(
            cache.new_context(&request(id, 1, &[], &[("t", 0)]), now),
            FetchContext::Sessionless
        ));
        assert!(cache.is_empty());
    }

    #[test]
    fn settling_keeps_the_changed_and_moves_the_ones_with_records_last() {
        let mut s = FetchSession::new(1, true, Instant::now());
        for p in 0..3 {
            s.push(cached("t", p, 0, 0));
        }
        let keep = s.settle([answered(50, 0), answered(0, 0), answered(0, 4)]);
        assert_eq!(keep, vec![true, false, true]);
        let order: Vec<i32> = s.partitions().map(|c| c.partition).collect();
        assert_eq!(order, vec![1, 2, 0]);
        // Lookups still find the moved partition.
        s.upsert("t", 0, params(50));
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.partitions().last().map(|c| c.params.fetch_offset),
            Some(50)
        );
    }

    #[test]
    fn eviction_prefers_stale_then_unprivileged_small_sessions() {
        let t0 = Instant::now();
        let cache = FetchSessionCache::new(2, 1);
        let consumer = cache.maybe_create(false, [cached("t", 0, 0, 0)], t0);
        let follower = cache.maybe_create(true, [cached("t", 1, 0, 0)], t0);
        assert!(consumer != 0 && follower != 0);
        // Full: another consumer cannot push out a young session.
        assert_eq!(cache.maybe_create(false, [cached("t", 2, 0, 0)], t0), 0);
        // A follower can push out the consumer's.
        let f2 = cache.maybe_create(true, [cached("t", 3, 0, 0)], t0);
        assert_ne!(f2, 0);
        let ids: Vec<i32> = cache.inner().sessions.keys().copied().collect();
        assert!(ids.contains(&follower) && ids.contains(&f2) && !ids.contains(&consumer));
        // Once both are unused past the eviction time, anyone may replace the stalest.
        let later = t0 + EVICTION + Duration::from_secs(1);
        assert_ne!(cache.maybe_create(false, [cached("t", 4, 0, 0)], later), 0);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn no_slots_no_sessions() {
        let cache = FetchSessionCache::new(0, 1);
        assert_eq!(
            cache.maybe_create(true, [cached("t", 0, 0, 0)], Instant::now()),
            0
        );
    }
}
