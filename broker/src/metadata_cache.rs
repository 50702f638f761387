//! The broker's view of the cluster, as the controller last described it.
//!
//! Kafka concept: in ZooKeeper mode a broker never reads partition state from ZooKeeper to
//! answer clients. The controller pushes UpdateMetadata (live brokers with their endpoints, and
//! each partition's leader, leader epoch, ISR, replicas and offline replicas) to every broker,
//! and the broker answers Metadata, FindCoordinator and friends from this cache.
//! Kafka class mirrored: `kafka.server.metadata.ZkMetadataCache`.
//!
//! Invariant: a partition whose leader is `LeaderDuringDelete` (-2) is being deleted and is
//! removed from the cache, as Kafka does; an UpdateMetadata from an older controller epoch is
//! rejected by the caller before it gets here.
//!
//! Initialisation: a (re)started broker's cache is empty until the controller's first
//! UpdateMetadata for this run arrives (the controller sends it, with every partition, as soon as
//! it sees our registration: `onBrokerStartup`). An empty cache answers "no brokers, no topics,
//! no controller", which clients believe (librdkafka fails every queued record of a topic it is
//! told has 0 partitions). So the cache records when it was first filled
//! ([`MetadataCache::is_initialized`]) and request handlers wait for it
//! ([`MetadataCache::wait_until_initialized`], used by `crate::api::handle`). Kafka 3.6 in
//! ZooKeeper mode does not wait (its `ZkMetadataCache` answers from the empty snapshot); its
//! KRaft broker does (`BrokerServer.startup` blocks on the initial metadata catch-up before it
//! enables request processing), and that is the behaviour we take.

use std::collections::{btree_map, BTreeMap};
use std::sync::RwLock;
use std::time::Duration;

use kafka_protocol::messages::update_metadata_request::UpdateMetadataPartitionState;
use kafka_protocol::messages::{BrokerId, UpdateMetadataRequest};
use uuid::Uuid;

/// The leader id the controller sends for a partition of a topic being deleted.
pub const LEADER_DURING_DELETE: i32 = -2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub listener: String,
    pub host: String,
    pub port: i32,
    pub security_protocol: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEntry {
    pub id: i32,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub replicas: Vec<i32>,
    pub offline_replicas: Vec<i32>,
    pub zk_version: i32,
    pub controller_epoch: i32,
}

#[derive(Debug, Clone, Default)]
pub struct TopicEntry {
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionInfo>,
}

#[derive(Debug, Default)]
struct Inner {
    controller_id: Option<i32>,
    controller_epoch: i32,
    brokers: BTreeMap<i32, BrokerEntry>,
    topics: BTreeMap<String, TopicEntry>,
}

/// The cache as one read lock sees it (see [`MetadataCache::with_view`]).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    pub controller_id: Option<i32>,
    pub brokers: &'a BTreeMap<i32, BrokerEntry>,
    pub topics: &'a BTreeMap<String, TopicEntry>,
}

impl View<'_> {
    pub fn is_alive(&self, id: i32) -> bool {
        self.brokers.contains_key(&id)
    }
}

/// Applies one topic's partition states: the topic is looked up once, and a partition already
/// cached is updated in place (its id lists keep their allocations), so a failover's
/// UpdateMetadata for every partition holds the write lock briefly.
fn apply_topic(
    topics: &mut BTreeMap<String, TopicEntry>,
    name: &str,
    topic_id: Uuid,
    states: &[UpdateMetadataPartitionState],
    deleted: &mut Vec<(String, i32)>,
) {
    fn set(ids: &mut Vec<i32>, from: &[BrokerId]) {
        ids.clear();
        ids.extend(from.iter().map(|b| b.0));
    }
    let (key, mut entry) = topics
        .remove_entry(name)
        .unwrap_or_else(|| (name.to_string(), TopicEntry::default()));
    for p in states {
        if p.leader.0 == LEADER_DURING_DELETE {
            entry.partitions.remove(&p.partition_index);
            deleted.push((name.to_string(), p.partition_index));
            continue;
        }
        if !topic_id.is_nil() {
            entry.id = topic_id;
        }
        match entry.partitions.entry(p.partition_index) {
            btree_map::Entry::Occupied(mut o) => {
                let info = o.get_mut();
                info.leader = p.leader.0;
                info.leader_epoch = p.leader_epoch;
                set(&mut info.isr, &p.isr);
                set(&mut info.replicas, &p.replicas);
                set(&mut info.offline_replicas, &p.offline_replicas);
                info.zk_version = p.zk_version;
                info.controller_epoch = p.controller_epoch;
            }
            btree_map::Entry::Vacant(v) => {
                v.insert(PartitionInfo {
                    leader: p.leader.0,
                    leader_epoch: p.leader_epoch,
                    isr: p.isr.iter().map(|b| b.0).collect(),
                    replicas: p.replicas.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    zk_version: p.zk_version,
                    controller_epoch: p.controller_epoch,
                });
            }
        }
    }
    // A topic whose last partition was deleted (or that only saw deletions) is not kept.
    if !entry.partitions.is_empty() {
        topics.insert(key, entry);
    }
}

/// Shared, read-mostly: a std `RwLock` because every access is short and never awaits.
#[derive(Debug)]
pub struct MetadataCache {
    inner: RwLock<Inner>,
    /// Turns true, once per broker run, when the first UpdateMetadata has been applied; never
    /// turns false again (a later session expiry keeps the last known state, as Kafka does).
    /// A watch channel so that waiting requests wake up together, without polling.
    initialized: tokio::sync::watch::Sender<bool>,
}

impl Default for MetadataCache {
    fn default() -> Self {
        MetadataCache {
            inner: RwLock::default(),
            initialized: tokio::sync::watch::channel(false).0,
        }
    }
}

impl MetadataCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once an UpdateMetadata has been applied since this broker started.
    pub fn is_initialized(&self) -> bool {
        *self.initialized.borrow()
    }

    /// Waits until the first UpdateMetadata has been applied, at most `timeout`; returns
    /// whether the cache is initialized. Immediate once it is.
    pub async fn wait_until_initialized(&self, timeout: Duration) -> bool {
        if self.is_initialized() {
            return true;
        }
        let mut rx = self.initialized.subscribe();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|ready| *ready))
            .await
            .is_ok_and(|r| r.is_ok());
        ready
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies an UpdateMetadata request (v8: topic states grouped by topic).
    /// Returns the partitions that were deleted (leader -2).
    pub fn update(&self, req: &UpdateMetadataRequest) -> Vec<(String, i32)> {
        let mut g = self.inner.write().unwrap_or_else(|e| e.into_inner());
        g.controller_id = Some(req.controller_id.0);
        g.controller_epoch = req.controller_epoch;
        g.brokers = req
            .live_brokers
            .iter()
            .map(|b| {
                (
                    b.id.0,
                    BrokerEntry {
                        id: b.id.0,
                        endpoints: b
                            .endpoints
                            .iter()
                            .map(|e| Endpoint {
                                listener: e.listener.to_string(),
                                host: e.host.to_string(),
                                port: e.port,
                                security_protocol: e.security_protocol,
                            })
                            .collect(),
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        let mut deleted = Vec::new();
        for t in &req.topic_states {
            apply_topic(
                &mut g.topics,
                t.topic_name.as_str(),
                t.topic_id,
                &t.partition_states,
                &mut deleted,
            );
        }
        for p in &req.ungrouped_partition_states {
            apply_topic(
                &mut g.topics,
                p.topic_name.as_str(),
                Uuid::nil(),
                std::slice::from_ref(p),
                &mut deleted,
            );
        }
        drop(g);
        // After the write lock is released, so that woken requests read the new state.
        self.initialized
            .send_if_modified(|ready| !std::mem::replace(ready, true));
        deleted
    }

    pub fn controller_id(&self) -> Option<i32> {
        self.read().controller_id
    }

    pub fn controller_epoch(&self) -> i32 {
        self.read().controller_epoch
    }

    pub fn brokers(&self) -> Vec<BrokerEntry> {
        self.read().brokers.values().cloned().collect()
    }

    pub fn broker(&self, id: i32) -> Option<BrokerEntry> {
        self.read().brokers.get(&id).cloned()
    }

    pub fn is_alive(&self, id: i32) -> bool {
        self.read().brokers.contains_key(&id)
    }

    pub fn topic_names(&self) -> Vec<String> {
        self.read().topics.keys().cloned().collect()
    }

    pub fn topic(&self, name: &str) -> Option<TopicEntry> {
        self.read().topics.get(name).cloned()
    }

    /// Runs `f` on the whole cache under one read lock (a Metadata answer for all topics sees
    /// one consistent state and takes the lock once). `f` must not block.
    pub fn with_view<R>(&self, f: impl FnOnce(View<'_>) -> R) -> R {
        let g = self.read();
        f(View {
            controller_id: g.controller_id,
            brokers: &g.brokers,
            topics: &g.topics,
        })
    }

    /// True when the cache has `name`.
    pub fn has_topic(&self, name: &str) -> bool {
        self.read().topics.contains_key(name)
    }

    /// The name of the topic with id `id` (nothing else is copied).
    pub fn topic_name_by_id(&self, id: Uuid) -> Option<String> {
        self.read()
            .topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, _)| n.clone())
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<(String, TopicEntry)> {
        self.read()
            .topics
            .iter()
            .find(|(_, t)| t.id == id)
            .map(|(n, t)| (n.clone(), t.clone()))
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionInfo> {
        self.read()
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(&partition).cloned())
    }

    /// True when every partition of `topic` has a leader that is alive.
    pub fn has_leaders(&self, topic: &str) -> bool {
        let g = self.read();
        g.topics.get(topic).is_some_and(|t| {
            !t.partitions.is_empty()
                && t.partitions
                    .values()
                    .all(|p| p.leader >= 0 && g.brokers.contains_key(&p.leader))
        })
    }

    /// The number of partitions of `topic`, 0 if unknown.
    pub fn partition_count(&self, topic: &str) -> usize {
        self.read()
            .topics
            .get(topic)
            .map_or(0, |t| t.partitions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::update_metadata_request::{
        UpdateMetadataBroker, UpdateMetadataEndpoint, UpdateMetadataTopicState,
    };
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn req(leader: i32) -> UpdateMetadataRequest {
        UpdateMetadataRequest::default()
            .with_controller_id(BrokerId(2))
            .with_controller_epoch(5)
            .with_live_brokers(vec![UpdateMetadataBroker::default()
                .with_id(BrokerId(1))
                .with_endpoints(vec![UpdateMetadataEndpoint::default()
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9092)
                    .with_listener(StrBytes::from_static_str("PLAINTEXT"))])])
            .with_topic_states(vec![UpdateMetadataTopicState::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("t")))
                .with_topic_id(Uuid::from_u128(7))
                .with_partition_states(vec![UpdateMetadataPartitionState::default()
                    .with_topic_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_index(0)
                    .with_leader(BrokerId(leader))
                    .with_leader_epoch(3)
                    .with_isr(vec![BrokerId(1)])
                    .with_replicas(vec![BrokerId(1)])])])
    }

    /// The cache is not initialized until its first UpdateMetadata; a waiter gives up after
    /// its timeout before that, and is woken by the update (not by its timeout) after.
    #[tokio::test]
    async fn waiters_are_released_by_the_first_update_metadata() {
        let c = std::sync::Arc::new(MetadataCache::new());
        assert!(!c.is_initialized());
        assert!(!c.wait_until_initialized(Duration::from_millis(10)).await);
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_until_initialized(Duration::from_secs(30)).await }
        });
        tokio::task::yield_now().await;
        c.update(&req(1));
        let woken = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(woken.expect("woken by the update").unwrap());
        assert!(c.is_initialized());
        assert!(c.wait_until_initialized(Duration::ZERO).await);
    }

    #[test]
    fn update_then_delete() {
        let c = MetadataCache::new();
        assert!(c.update(&req(1)).is_empty());
        assert_eq!(c.controller_id(), Some(2));
        assert_eq!(c.partition("t", 0).unwrap().leader_epoch, 3);
        assert!(c.has_leaders("t"));
        assert_eq!(c.topic("t").unwrap().id, Uuid::from_u128(7));
        assert_eq!(c.update(&req(LEADER_DURING_DELETE)), vec![("t".into(), 0)]);
        assert!(c.topic("t").is_none());
    }

    fn state(
        topic: &str,
        index: i32,
        leader: i32,
        isr: &[i32],
        offline: &[i32],
    ) -> UpdateMetadataPartitionState {
        let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
        UpdateMetadataPartitionState::default()
            .with_topic_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_index(index)
            .with_controller_epoch(6)
            .with_leader(BrokerId(leader))
            .with_leader_epoch(leader + 10)
            .with_isr(ids(isr))
            .with_zk_version(leader + 20)
            .with_replicas(ids(&[1, 2, 3]))
            .with_offline_replicas(ids(offline))
    }

    /// A second UpdateMetadata replaces what the first said, partition by partition (cached
    /// partitions are updated in place), adds new ones, deletes others; a topic that loses its
    /// last partition is gone, one that only hears of deletions is never created.
    #[test]
    fn later_updates_replace_in_place() {
        let c = MetadataCache::new();
        let topic = |name: &str, id: u128, states: Vec<UpdateMetadataPartitionState>| {
            UpdateMetadataTopicState::default()
                .with_topic_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_topic_id(Uuid::from_u128(id))
                .with_partition_states(states)
        };
        c.update(&req(1).with_topic_states(vec![
            topic(
                "a",
                1,
                vec![
                    state("a", 0, 1, &[1, 2, 3], &[]),
                    state("a", 1, 2, &[2, 3, 1], &[]),
                ],
            ),
            topic("b", 2, vec![state("b", 0, 3, &[3], &[])]),
        ]));
        let deleted = c.update(
            &req(1)
                .with_topic_states(vec![
                    topic(
                        "a",
                        1,
                        vec![state("a", 1, 3, &[3], &[2]), state("a", 2, 1, &[1], &[])],
                    ),
                    topic("b", 2, vec![state("b", 0, LEADER_DURING_DELETE, &[], &[])]),
                    topic(
                        "ghost",
                        3,
                        vec![state("ghost", 0, LEADER_DURING_DELETE, &[], &[])],
                    ),
                ])
                .with_ungrouped_partition_states(vec![state("c", 0, 2, &[2, 1], &[3])]),
        );
        assert_eq!(deleted, vec![("b".into(), 0), ("ghost".into(), 0)]);
        assert_eq!(c.topic_names(), ["a", "c"]);
        let a = c.topic("a").unwrap();
        assert_eq!(a.id, Uuid::from_u128(1));
        assert_eq!(a.partitions.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(a.partitions[&0].isr, [1, 2, 3], "untouched partition kept");
        let p1 = &a.partitions[&1];
        assert_eq!(
            (
                p1.leader,
                p1.leader_epoch,
                p1.zk_version,
                p1.controller_epoch
            ),
            (3, 13, 23, 6)
        );
        assert_eq!(
            (p1.isr.as_slice(), p1.offline_replicas.as_slice()),
            (&[3][..], &[2][..])
        );
        assert_eq!(a.partitions[&2].leader, 1);
        let cc = c.topic("c").unwrap();
        assert_eq!(cc.id, Uuid::nil());
        assert_eq!(cc.partitions[&0].offline_replicas, [3]);
        assert!(c.topic("b").is_none() && c.topic("ghost").is_none());
    }
}
