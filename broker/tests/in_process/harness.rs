//! An in-process Kafka cluster for fast, deterministic tests of the replica layer.
//!
//! Kafka counterpart: the `KafkaServerTestHarness` / `QuorumTestHarness` of Kafka's own tests,
//! which start real `KafkaServer`s in the test JVM on an embedded ZooKeeper. Here every broker
//! is a real [`broker::broker::start_with_zk`] (listeners, log dirs, controller, fetchers,
//! timers) on its own session of one in-memory ZooKeeper ([`MemoryZk`]), and the tests talk to
//! it only over the wire (the broker's own [`Connection`] and kafka-protocol messages) or read
//! ZooKeeper's state, so they stay valid while the broker's internals are restructured.
//!
//! Invariants the harness keeps:
//! - each broker runs on a tokio runtime of its own, so a "crash" is honest: dropping that
//!   runtime cancels every task of that broker at once (server, connections, fetchers,
//!   controller, timers) and closes its sockets, as a killed process would; the test's own
//!   runtime only runs the clients;
//! - listeners are on 127.0.0.1:0 and a restart reuses the first bound port and the same log
//!   dir, as a restarted process would;
//! - timeouts are small (replica.lag.time.max.ms, fetch waits, back-offs) so that each test
//!   finishes well under a second; conditions are polled with a deadline, never slept on.
//!
//! Why an integration-test target (`broker/tests/in_process/`) and not a `#[cfg(test)]` module:
//! it can only use the broker's public API ([`broker::broker::start_with_zk`], the config, the
//! client), so it tests behaviour, not internals, and survives their restructuring. Why no
//! paused tokio clock: the brokers talk over real sockets on several runtimes, which a paused
//! clock does not drive; small real timeouts keep the tests fast instead.
//!
//! Simplifications, said plainly: a crashed broker's session is expired at once (no session
//! timeout to wait out); [`Cluster::freeze`] stands in for a stopped process (SIGSTOP, a long GC
//! pause): the broker's tasks are gone but its session, and so its registration, stays until
//! the test restarts it. A running broker opens its next session on the same tree after an
//! expiry (a session factory stands in for `KafkaZkClient::reinitialize`), and
//! [`Cluster::lose_session`] makes it see its session expire while the tree still holds the old
//! session's ephemerals, which the test then expires when it chooses.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::broker::Running;
use broker::client::Connection;
use broker::config::BrokerConfig;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, CreateTopicsResponse, FetchRequest, FetchResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use zk::backend::{
    MemoryZk, MultiError, NodeData, NodeMode, Watch, ZkBackend, ZkOp, ZkOpResult, ZkResult, ZkStat,
};
use zk::client::KafkaZkClient;
use zk::data::{LeaderIsrAndControllerEpoch, TopicPartition};

/// How long a condition may take before the test fails: generous, since a passing test sees it
/// in milliseconds and only a failing one waits this long.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Kafka's error codes the tests compare against.
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
}

/// Polls `cond` every 5 ms until it returns `Some`, failing the test after [`PATIENCE`].
pub async fn wait_for<T, F, Fut>(what: &str, mut cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = cond().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Whether `cond` stays false for all of `period` (for "this must not happen" checks).
pub async fn stays_false<F, Fut>(period: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + period;
    while Instant::now() < end {
        if cond().await {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

pub fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

type BoxFuture<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A broker's ZooKeeper session as the broker sees it: every call goes to its [`MemoryZk`]
/// session until the harness closes the gate, after which every new call hangs forever, as the
/// calls of a killed or stopped process never happen. (The controller's event loop runs on a
/// thread of its own, outside the broker's runtime, so it must be stopped this way.)
///
/// It can also *lose* its session ([`Cluster::lose_session`]): from then on the broker sees the
/// session as expired (calls fail with SESSIONEXPIRED, `session_ended` resolves, its watches end
/// with a session event) while the in-memory ZooKeeper still holds it, ephemerals included,
/// until the test expires it: ZooKeeper's expiry reaching the broker before the ensemble has
/// deleted the old session's `/brokers/ids/<id>`.
struct GatedZk {
    inner: MemoryZk,
    closed: Arc<AtomicBool>,
    lost: tokio::sync::watch::Receiver<bool>,
}

impl GatedZk {
    fn pass<'a, T: Send + 'a>(&self, f: impl FnOnce() -> BoxFuture<'a, T>) -> BoxFuture<'a, T> {
        if self.closed.load(Ordering::SeqCst) {
            Box::pin(std::future::pending())
        } else {
            f()
        }
    }

    fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// A call of a lost session fails as an expired one does.
    fn live<'a, T: Send + 'a>(
        &self,
        f: impl FnOnce() -> BoxFuture<'a, ZkResult<T>>,
    ) -> BoxFuture<'a, ZkResult<T>> {
        if self.is_lost() {
            return self.pass(|| Box::pin(async { Err(zk::backend::ZkError::SessionExpired) }));
        }
        self.pass(f)
    }

    /// A watch of a lost session ends with a session event.
    fn watch(&self, w: Watch) -> Watch {
        let mut lost = self.lost.clone();
        Box::pin(async move {
            tokio::select! {
                kind = w => kind,
                _ = lost.wait_for(|l| *l) => zk::backend::WatchKind::Session,
            }
        })
    }
}

impl ZkBackend for GatedZk {
    fn get_data(&self, path: String) -> BoxFuture<'_, ZkResult<NodeData>> {
        self.live(|| self.inner.get_data(path))
    }
    fn get_data_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat, Watch)>> {
        self.live(|| {
            Box::pin(async move {
                let (d, s, w) = self.inner.get_data_and_watch(path).await?;
                Ok((d, s, self.watch(w)))
            })
        })
    }
    fn exists_and_watch(&self, path: String) -> BoxFuture<'_, ZkResult<(Option<ZkStat>, Watch)>> {
        self.live(|| {
            Box::pin(async move {
                let (s, w) = self.inner.exists_and_watch(path).await?;
                Ok((s, self.watch(w)))
            })
        })
    }
    fn get_data_many(
        &self,
        paths: Vec<String>,
    ) -> BoxFuture<'_, ZkResult<Vec<ZkResult<NodeData>>>> {
        self.live(|| self.inner.get_data_many(paths))
    }
    fn get_children(&self, path: String) -> BoxFuture<'_, ZkResult<Vec<String>>> {
        self.live(|| self.inner.get_children(path))
    }
    fn get_children_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<String>, Watch)>> {
        self.live(|| {
            Box::pin(async move {
                let (c, w) = self.inner.get_children_and_watch(path).await?;
                Ok((c, self.watch(w)))
            })
        })
    }
    fn create(
        &self,
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        self.live(|| self.inner.create(path, data, mode))
    }
    fn set_data(
        &self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        self.live(|| self.inner.set_data(path, data, version))
    }
    fn delete(&self, path: String, version: Option<i32>) -> BoxFuture<'_, ZkResult<()>> {
        self.live(|| self.inner.delete(path, version))
    }
    fn multi(&self, ops: Vec<ZkOp>) -> BoxFuture<'_, Result<Vec<ZkOpResult>, MultiError>> {
        if self.is_lost() {
            return self.pass(|| {
                Box::pin(async { Err(MultiError::Request(zk::backend::ZkError::SessionExpired)) })
            });
        }
        self.pass(|| self.inner.multi(ops))
    }
    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        if self.is_lost() {
            // A client cannot close a session it lost; the test ends it when it chooses.
            return Box::pin(async {});
        }
        self.pass(|| self.inner.close())
    }
    fn session_ended(&self) -> BoxFuture<'static, ()> {
        let ended = self.inner.session_ended();
        let mut lost = self.lost.clone();
        Box::pin(async move {
            tokio::select! {
                _ = ended => {}
                _ = lost.wait_for(|l| *l) => {}
            }
        })
    }
    fn wait_until_connected(&self) -> BoxFuture<'_, ZkResult<()>> {
        self.live(|| self.inner.wait_until_connected())
    }
}

/// A broker's current session: the in-memory session and the switch that makes the broker
/// lose it. Replaced when the broker opens a new session after an expiry.
#[derive(Clone)]
struct BrokerSession {
    mem: MemoryZk,
    lost: Arc<tokio::sync::watch::Sender<bool>>,
}

impl BrokerSession {
    fn open(tree: &MemoryZk, gate: &Arc<AtomicBool>) -> (BrokerSession, GatedZk) {
        let mem = tree.new_session();
        let (tx, rx) = tokio::sync::watch::channel(false);
        let gated = GatedZk {
            inner: mem.clone(),
            closed: gate.clone(),
            lost: rx,
        };
        (
            BrokerSession {
                mem,
                lost: Arc::new(tx),
            },
            gated,
        )
    }
}

/// A broker whose start-up is under way ([`Cluster::begin_restart_while_registered`]).
pub struct Starting {
    id: i32,
    session: Arc<std::sync::Mutex<BrokerSession>>,
    gate: Arc<AtomicBool>,
    /// Taken by [`Cluster::finish_restart`]; a test that fails before that drops it here.
    runtime: Option<tokio::runtime::Runtime>,
    log_dir: PathBuf,
    first: Option<tokio::task::JoinHandle<broker::error::Result<Running>>>,
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            self.gate.store(true, Ordering::SeqCst);
            rt.shutdown_background();
        }
    }
}

/// One broker of the cluster: its runtime (None when down), its session and its dirs.
struct Node {
    runtime: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
    /// Its controller (the one part of a broker that runs outside the broker's runtime).
    controller: Option<controller::ControllerHandle>,
    /// The broker's current session (the broker replaces it after an expiry).
    session: Arc<std::sync::Mutex<BrokerSession>>,
    gate: Arc<AtomicBool>,
    port: u16,
    log_dir: PathBuf,
}

/// N brokers in this process on one in-memory ZooKeeper.
pub struct Cluster {
    /// The tree every session shares; this handle is the harness's own session.
    pub mem: MemoryZk,
    /// The harness's reader of ZooKeeper's state.
    pub zk: KafkaZkClient,
    nodes: BTreeMap<i32, Node>,
    overrides: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

/// The small timeouts every in-process broker runs with; tests add or replace keys.
const FAST: &[(&str, &str)] = &[
    ("replica.lag.time.max.ms", "300"),
    ("replica.fetch.wait.max.ms", "20"),
    ("replica.fetch.backoff.ms", "20"),
    ("controlled.shutdown.retry.backoff.ms", "20"),
    ("controller.socket.timeout.ms", "2000"),
    ("request.timeout.ms", "2000"),
    ("zookeeper.session.timeout.ms", "1000"),
    ("group.initial.rebalance.delay.ms", "0"),
    ("offsets.topic.replication.factor", "1"),
    ("offsets.topic.num.partitions", "1"),
    ("auto.leader.rebalance.enable", "false"),
    ("auto.create.topics.enable", "false"),
    ("metrics.port", "-1"),
];

impl Cluster {
    /// Starts brokers 1..=n with the default fast settings; broker 1 is the controller.
    pub async fn start(n: i32) -> Cluster {
        Self::start_with(n, &[]).await
    }

    /// Starts brokers 1..=n with `overrides` on top of the fast settings.
    pub async fn start_with(n: i32, overrides: &[(&str, &str)]) -> Cluster {
        // RUST_LOG=info (or debug) shows the brokers' logs with the test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let mem = MemoryZk::new();
        let zk = KafkaZkClient::from_backend(Arc::new(mem.clone()));
        zk.ensure_persistent_paths().await.unwrap();
        let mut c = Cluster {
            zk,
            mem,
            nodes: BTreeMap::new(),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            dir: tempfile::tempdir().unwrap(),
        };
        // Broker 1 starts alone and becomes the controller, so that every test begins with
        // the same controller (the election is otherwise a race between threads).
        for id in 1..=n {
            c.launch(id, 0).await;
            if id == 1 {
                c.wait_for_controller().await;
            }
        }
        c
    }

    fn config(&self, id: i32, port: u16, log_dir: &std::path::Path) -> BrokerConfig {
        let mut pairs: BTreeMap<String, String> = FAST
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.insert("broker.id".into(), id.to_string());
        pairs.insert("listeners".into(), format!("PLAINTEXT://127.0.0.1:{port}"));
        pairs.insert("log.dirs".into(), log_dir.display().to_string());
        pairs.insert("zookeeper.connect".into(), "in-process".into());
        for (k, v) in &self.overrides {
            pairs.insert(k.clone(), v.clone());
        }
        BrokerConfig::from_pairs(pairs.into_iter().collect()).expect("broker config")
    }

    /// Starts broker `id` on a fresh session, its own runtime, and `port` (0 = any).
    async fn launch(&mut self, id: i32, port: u16) {
        let starting = self.begin_launch(id, port);
        self.finish_launch(starting).await;
    }

    /// The first half of [`Cluster::launch`]: the broker's runtime and session are created and
    /// its start-up is under way (it may be waiting for its registration) when this returns.
    fn begin_launch(&self, id: i32, port: u16) -> Starting {
        let log_dir = self.dir.path().join(format!("broker-{id}"));
        let config = self.config(id, port, &log_dir);
        let gate = Arc::new(AtomicBool::new(false));
        let (first, backend) = BrokerSession::open(&self.mem, &gate);
        let session = Arc::new(std::sync::Mutex::new(first));
        // After an expiry the broker opens its next session on the same tree (what
        // `KafkaZkClient::reinitialize` does against a real ensemble).
        let factory: zk::client::SessionFactory = {
            let (tree, gate, session) = (self.mem.clone(), gate.clone(), session.clone());
            Arc::new(move || {
                let (next, backend) = BrokerSession::open(&tree, &gate);
                *session.lock().unwrap() = next;
                let backend: Arc<dyn ZkBackend> = Arc::new(backend);
                Box::pin(async move { Ok(backend) })
            })
        };
        let zk = KafkaZkClient::with_session_factory(Arc::new(backend), factory);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("broker-{id}"))
            .enable_all()
            .build()
            .unwrap();
        // The log dir's `.lock` of a previous run is released when its runtime has dropped
        // the last task holding the log manager; wait for that rather than guess.
        let first = runtime.spawn({
            let (config, zk) = (config.clone(), zk.clone());
            async move {
                let mut attempt = 0;
                loop {
                    match broker::broker::start_with_zk(config.clone(), zk.clone()).await {
                        Err(e) if attempt < 100 && format!("{e:#}").contains("lock") => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        other => return other,
                    }
                }
            }
        });
        Starting {
            id,
            session,
            gate,
            runtime: Some(runtime),
            log_dir,
            first: Some(first),
        }
    }

    /// The second half of [`Cluster::launch`]: waits until broker `s.id` has started.
    async fn finish_launch(&mut self, mut s: Starting) {
        let id = s.id;
        let (session, gate, log_dir) = (s.session.clone(), s.gate.clone(), s.log_dir.clone());
        let runtime = s.runtime.take().expect("not finished yet");
        let first = s.first.take().expect("not finished yet");
        drop(s);
        let running = match first.await.expect("start task") {
            Ok(r) => r,
            Err(e) => panic!("broker {id} failed to start: {e:#}"),
        };
        let port = running.bound[0].1.port();
        let controller = running.broker.apis.controller.clone();
        self.nodes.insert(
            id,
            Node {
                runtime: Some(runtime),
                running: Some(running),
                controller: Some(controller),
                session,
                gate,
                port,
                log_dir,
            },
        );
    }

    /// Broker `id`'s metrics page, as `GET /metrics` would serve it.
    pub fn metrics_page(&self, id: i32) -> String {
        let running = self.nodes[&id].running.as_ref().expect("broker is up");
        broker::metrics::render_broker(&running.broker.apis)
    }

    /// Broker `id`'s client address.
    pub fn addr(&self, id: i32) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.nodes[&id].port))
    }

    pub fn log_dir(&self, id: i32) -> PathBuf {
        self.nodes[&id].log_dir.clone()
    }

    pub fn is_up(&self, id: i32) -> bool {
        self.nodes.get(&id).is_some_and(|n| n.runtime.is_some())
    }

    /// A new client connection to broker `id`.
    pub async fn connect(&self, id: i32) -> Connection {
        Connection::connect(
            &self.addr(id).to_string(),
            "in-process-test",
            Duration::from_secs(5),
        )
        .await
        .expect("connect")
    }

    // ---- ZooKeeper's view ----------------------------------------------------------------

    pub async fn controller_id(&self) -> Option<i32> {
        self.zk.get_controller_id().await.unwrap()
    }

    pub async fn wait_for_controller(&self) -> i32 {
        wait_for("a controller", || async { self.controller_id().await }).await
    }

    /// The partition's `state` znode.
    pub async fn state(&self, topic: &str, p: i32) -> Option<LeaderIsrAndControllerEpoch> {
        let tp = TopicPartition::new(topic, p);
        self.zk
            .get_partition_states(std::slice::from_ref(&tp))
            .await
            .unwrap()
            .remove(&tp)
    }

    /// (leader, leader_epoch, isr) from the `state` znode.
    pub async fn leader_isr(&self, topic: &str, p: i32) -> (i32, i32, Vec<i32>) {
        let s = self.state(topic, p).await.expect("partition state znode");
        let mut isr = s.leader_and_isr.isr.clone();
        isr.sort();
        (s.leader_and_isr.leader, s.leader_and_isr.leader_epoch, isr)
    }

    /// Waits until the `state` znode's ISR (sorted) is `isr`.
    pub async fn wait_isr(&self, topic: &str, p: i32, isr: &[i32]) {
        wait_for(&format!("{topic}-{p} ISR {isr:?}"), || async {
            (self.leader_isr(topic, p).await.2 == isr).then_some(())
        })
        .await
    }

    /// Waits until broker `id`'s metadata cache shows `isr` for the partition. The controller
    /// sends a broker its LeaderAndIsr before the UpdateMetadata of the same change, one
    /// request at a time, so from then on the broker's replica holds that ISR too (the znode
    /// alone says only that the controller wrote it).
    pub async fn wait_isr_seen_by(&self, id: i32, topic: &str, p: i32, isr: &[i32]) {
        wait_for(
            &format!("{topic}-{p} ISR {isr:?} at broker {id}"),
            || async {
                let md = self.metadata(id, &[topic]).await;
                let seen = md.topics.iter().any(|t| {
                    t.partitions.iter().any(|q| {
                        q.partition_index == p
                            && q.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>() == isr
                    })
                });
                seen.then_some(())
            },
        )
        .await
    }

    /// Waits until the `state` znode names `leader`; returns its leader epoch.
    pub async fn wait_leader(&self, topic: &str, p: i32, leader: i32) -> i32 {
        wait_for(&format!("{topic}-{p} leader {leader}"), || async {
            let (l, e, _) = self.leader_isr(topic, p).await;
            (l == leader).then_some(e)
        })
        .await
    }

    /// Waits until broker `id`'s Metadata names `leader` for the partition.
    pub async fn wait_metadata_leader(&self, id: i32, topic: &str, p: i32, leader: i32) {
        wait_for(
            &format!("broker {id}'s metadata: {topic}-{p} led by {leader}"),
            || async {
                let md = self.metadata(id, &[topic]).await;
                (leader_in(&md, topic, p) == Some(leader)).then_some(())
            },
        )
        .await
    }

    pub async fn broker_registered(&self, id: i32) -> bool {
        self.zk.get_broker(id).await.unwrap().is_some()
    }

    /// Broker `id`'s registration as ZooKeeper holds it: (broker epoch = czxid, owner session).
    pub async fn registration(&self, id: i32) -> Option<(i64, i64)> {
        self.zk
            .get_data_maybe(&zk::data::BrokerIdZNode::path(id))
            .await
            .unwrap()
            .map(|(_, stat)| (stat.czxid, stat.ephemeral_owner))
    }

    /// Queues a `Reelect` on broker `id`'s controller: what its `/controller` watch does when
    /// the znode goes (for tests that must see a broker contest, whatever its watches).
    pub fn poke_election(&self, id: i32) {
        if let Some(h) = &self.nodes[&id].controller {
            h.put(controller::ControllerEvent::Reelect);
        }
    }

    // ---- admin -----------------------------------------------------------------------------

    /// CreateTopics v7 with an explicit assignment (`replicas[p]` for partition `p`), sent to
    /// broker `via`; returns the topic's error code.
    pub async fn create_topic_via(
        &self,
        via: i32,
        topic: &str,
        replicas: &[&[i32]],
        configs: &[(&str, &str)],
    ) -> i16 {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(
                    replicas
                        .iter()
                        .enumerate()
                        .map(|(p, r)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(p as i32)
                                .with_broker_ids(r.iter().map(|b| BrokerId(*b)).collect())
                        })
                        .collect(),
                )
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]);
        let mut c = self.connect(via).await;
        let r: CreateTopicsResponse = c.send(ApiKey::CreateTopics, 7, &req).await.unwrap();
        r.topics[0].error_code
    }

    /// Creates `topic` with the given assignment and waits until every replica's broker knows
    /// the leader (the first replica) and the ISR holds every replica.
    pub async fn create_topic(&self, topic: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) {
        let via = self.wait_for_controller().await;
        assert_eq!(
            self.create_topic_via(via, topic, replicas, configs).await,
            code::NONE
        );
        for (p, r) in replicas.iter().enumerate() {
            let p = p as i32;
            self.wait_leader(topic, p, r[0]).await;
            for b in r.iter().filter(|b| self.is_up(**b)) {
                self.wait_metadata_leader(*b, topic, p, r[0]).await;
            }
        }
    }

    /// DeleteTopics v4 sent to broker `via`; returns the topic's error code.
    pub async fn delete_topic(&self, via: i32, topic: &str) -> i16 {
        let req = kafka_protocol::messages::DeleteTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topic_names(vec![topic_name(topic)]);
        let mut c = self.connect(via).await;
        let r: kafka_protocol::messages::DeleteTopicsResponse =
            c.send(ApiKey::DeleteTopics, 4, &req).await.unwrap();
        r.responses[0].error_code
    }

    /// ElectLeaders v2 (0 = preferred, 1 = unclean) sent to broker `via`: (top-level error,
    /// the partition's error code).
    pub async fn elect_leader(
        &self,
        via: i32,
        election_type: i8,
        topic: &str,
        p: i32,
    ) -> (i16, i16) {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let req = kafka_protocol::messages::ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(5_000)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![p])]));
        let mut c = self.connect(via).await;
        let r: kafka_protocol::messages::ElectLeadersResponse =
            c.send(ApiKey::ElectLeaders, 2, &req).await.unwrap();
        let code = r
            .replica_election_results
            .first()
            .and_then(|t| t.partition_result.first())
            .map_or(-1, |x| x.error_code);
        (r.error_code, code)
    }

    /// AlterPartitionReassignments v0 of one partition to `replicas`, sent to broker `via`:
    /// (top-level error, the partition's error code).
    pub async fn reassign(&self, via: i32, topic: &str, p: i32, replicas: &[i32]) -> (i16, i16) {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        let req = kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(p)
                    .with_replicas(Some(
                        replicas.iter().map(|b| BrokerId(*b)).collect(),
                    ))])]);
        let mut c = self.connect(via).await;
        let r: kafka_protocol::messages::AlterPartitionReassignmentsResponse = c
            .send(ApiKey::AlterPartitionReassignments, 0, &req)
            .await
            .unwrap();
        let code = r
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .map_or(-1, |x| x.error_code);
        (r.error_code, code)
    }

    /// InitProducerId v4 (no transactional id) at broker `id`: (error, producer id, epoch).
    pub async fn init_producer_id(&self, id: i32) -> (i16, i64, i16) {
        let req = kafka_protocol::messages::InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(kafka_protocol::messages::ProducerId(-1))
            .with_producer_epoch(-1);
        let mut c = self.connect(id).await;
        let r: kafka_protocol::messages::InitProducerIdResponse =
            c.send(ApiKey::InitProducerId, 4, &req).await.unwrap();
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// The replicas the topic's assignment znode names for partition `p`.
    pub async fn assignment(&self, topic: &str, p: i32) -> Vec<i32> {
        let a = self.zk.get_topic_assignment(topic).await.unwrap();
        let a = a.expect("topic znode");
        a.partitions.get(&p).cloned().unwrap_or_default()
    }

    pub async fn metadata(&self, id: i32, topics: &[&str]) -> MetadataResponse {
        let req = MetadataRequest::default()
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false);
        let mut c = self.connect(id).await;
        c.send(ApiKey::Metadata, 12, &req).await.unwrap()
    }

    // ---- produce and fetch ------------------------------------------------------------------

    /// Produces `values` as one batch to broker `id`; returns (error code, base offset).
    pub async fn produce(
        &self,
        id: i32,
        topic: &str,
        p: i32,
        acks: i16,
        values: &[&str],
    ) -> (i16, i64) {
        let mut c = self.connect(id).await;
        produce_on(&mut c, topic, p, acks, batch(values, None)).await
    }

    /// Fetches from broker `id` as a consumer; see [`Fetched`].
    pub async fn fetch(&self, id: i32, topic: &str, p: i32, offset: i64) -> Fetched {
        self.fetch_with(id, topic, p, offset, -1, 0).await
    }

    /// Fetch v12 with a `current_leader_epoch` (-1 = unchecked) and `max_wait_ms`.
    pub async fn fetch_with(
        &self,
        id: i32,
        topic: &str,
        p: i32,
        offset: i64,
        current_leader_epoch: i32,
        max_wait_ms: i32,
    ) -> Fetched {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(if max_wait_ms > 0 { 1 } else { 0 })
            .with_max_bytes(1 << 20)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(topic))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(p)
                    .with_current_leader_epoch(current_leader_epoch)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let mut c = self.connect(id).await;
        let r: FetchResponse = c.send(ApiKey::Fetch, 12, &req).await.unwrap();
        let part = &r.responses[0].partitions[0];
        let mut values = Vec::new();
        if let Some(mut records) = part.records.clone() {
            for set in RecordBatchDecoder::decode_all(&mut records).unwrap() {
                for rec in set.records {
                    let v = rec.value.map(|b| String::from_utf8_lossy(&b).into_owned());
                    values.push((rec.offset, v.unwrap_or_default()));
                }
            }
        }
        Fetched {
            error_code: part.error_code,
            high_watermark: part.high_watermark,
            records: values,
        }
    }

    /// ListOffsets v7 as a consumer (read_uncommitted) for `timestamp` (-1 latest, -2
    /// earliest): (error code, offset).
    pub async fn list_offset(&self, id: i32, topic: &str, p: i32, timestamp: i64) -> (i16, i64) {
        use kafka_protocol::messages::list_offsets_request::{
            ListOffsetsPartition, ListOffsetsTopic,
        };
        let req = kafka_protocol::messages::ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(0)
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(p)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp)])]);
        let mut c = self.connect(id).await;
        let r: kafka_protocol::messages::ListOffsetsResponse =
            c.send(ApiKey::ListOffsets, 7, &req).await.unwrap();
        let part = &r.topics[0].partitions[0];
        (part.error_code, part.offset)
    }

    /// Waits until broker `id` reports a high watermark of `hw` to consumers.
    pub async fn wait_hw(&self, id: i32, topic: &str, p: i32, hw: i64) {
        wait_for(&format!("broker {id}: {topic}-{p} hw {hw}"), || async {
            let f = self.fetch(id, topic, p, 0).await;
            (f.error_code == code::NONE && f.high_watermark == hw).then_some(())
        })
        .await
    }

    /// The values broker `id` holds in its log of `topic-p` (read as a replica reads: through
    /// the file, ignoring the high watermark).
    pub fn log_end(&self, id: i32, topic: &str, p: i32) -> u64 {
        let dir = self.log_dir(id).join(format!("{topic}-{p}"));
        std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .map(|e| e.metadata().map_or(0, |m| m.len()))
                    .sum()
            })
            .unwrap_or(0)
    }

    // ---- life and death ---------------------------------------------------------------------

    /// Stops broker `id` cleanly (Kafka's shutdown: controlled shutdown first).
    pub async fn stop(&mut self, id: i32) {
        let node = self.nodes.get_mut(&id).unwrap();
        let runtime = node.runtime.take().expect("broker is up");
        let running = node.running.take().unwrap();
        node.controller.take();
        runtime
            .spawn(running.shutdown())
            .await
            .expect("shutdown task");
        drop_runtime(runtime).await;
    }

    /// Kills broker `id` as `kill -9` would, then expires its session (ephemerals vanish).
    pub async fn crash(&mut self, id: i32) {
        self.freeze(id).await;
        self.session_of(id).expire();
    }

    /// Broker `id`'s current ZooKeeper session (as the in-memory ZooKeeper holds it).
    pub fn session_of(&self, id: i32) -> MemoryZk {
        self.nodes[&id].session.lock().unwrap().mem.clone()
    }

    /// Broker `id` learns that its session expired, but ZooKeeper has not deleted the old
    /// session's ephemerals yet (its `/brokers/ids/<id>` stays): returns that old session, for
    /// the test to expire "late" with [`MemoryZk::expire`]. The broker then opens a new session
    /// and has to wait for the old registration to go.
    pub fn lose_session(&self, id: i32) -> MemoryZk {
        let s = self.nodes[&id].session.lock().unwrap().clone();
        s.lost.send_replace(true);
        s.mem
    }

    /// Stops every task of broker `id` at once, but keeps its session: a hung process whose
    /// ZooKeeper session has not timed out yet. It stops fetching and answering.
    pub async fn freeze(&mut self, id: i32) {
        let node = self.nodes.get_mut(&id).unwrap();
        let runtime = node.runtime.take().expect("broker is up");
        node.gate.store(true, Ordering::SeqCst);
        // Dropping `Running` without shutdown leaves the tasks to the runtime's end.
        node.running.take();
        drop_runtime(runtime).await;
        stop_controller(node.controller.take());
    }

    /// Restarts a stopped, crashed or frozen broker on its log dir and port (a frozen one's
    /// session is expired first, as it would time out).
    pub async fn restart(&mut self, id: i32) {
        let (port, session) = {
            let n = &self.nodes[&id];
            assert!(n.runtime.is_none(), "broker {id} is still up");
            (n.port, self.session_of(id))
        };
        session.expire();
        self.launch(id, port).await;
    }

    /// Starts a frozen broker again while its old session still holds `/brokers/ids/<id>`, as a
    /// process restarted within `zookeeper.session.timeout.ms` of its death: the new run binds
    /// its port and waits for the old registration to go. Nothing goes until the test calls
    /// [`Cluster::expire_old_session`]; [`Cluster::finish_restart`] then waits for the start.
    pub fn begin_restart_while_registered(&mut self, id: i32) -> Starting {
        let port = {
            let n = &self.nodes[&id];
            assert!(n.runtime.is_none(), "broker {id} is still up");
            n.port
        };
        self.begin_launch(id, port)
    }

    /// Expires broker `id`'s previous session (the ensemble's session timeout passing).
    pub fn expire_old_session(&self, id: i32) {
        self.nodes[&id].session.lock().unwrap().mem.expire();
    }

    /// Waits for a restart begun with [`Cluster::begin_restart_while_registered`].
    pub async fn finish_restart(&mut self, s: Starting) {
        self.finish_launch(s).await;
    }

    /// Stops everything (for tests that check a clean end; `Drop` does it otherwise).
    pub async fn shutdown(mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            if self.is_up(id) {
                self.crash(id).await;
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in self.nodes.values_mut() {
            n.gate.store(true, Ordering::SeqCst);
            n.running.take();
            if let Some(rt) = n.runtime.take() {
                rt.shutdown_background();
            }
            stop_controller(n.controller.take());
        }
    }
}

/// Ends a dead broker's controller event loop: it stops at once when idle, or hangs at its
/// next ZooKeeper call (the gate is closed), either way doing nothing more.
fn stop_controller(handle: Option<controller::ControllerHandle>) {
    if let Some(h) = handle {
        let (done, _) = tokio::sync::oneshot::channel();
        h.put(controller::ControllerEvent::Shutdown { done });
    }
}

/// Ends a broker's runtime: every task is cancelled and dropped (sockets close, the log
/// manager is released). Blocking, so done off the test's runtime.
async fn drop_runtime(runtime: tokio::runtime::Runtime) {
    tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(2)))
        .await
        .unwrap();
}

/// A consumer's view of one Fetch answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    /// (offset, value) of every record returned.
    pub records: Vec<(i64, String)>,
}

impl Fetched {
    pub fn values(&self) -> Vec<&str> {
        self.records.iter().map(|(_, v)| v.as_str()).collect()
    }
}

/// Idempotent producer fields of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Idempotence {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

/// One record batch (magic 2) of `values`.
pub fn batch(values: &[&str], idem: Option<Idempotence>) -> Bytes {
    batch_compressed(values, idem, Compression::None)
}

/// One record batch (magic 2) of `values`, compressed by kafka-protocol's codec (snappy as one
/// raw block and lz4 as a frame of independent blocks, the framings librdkafka writes).
pub fn batch_compressed(
    values: &[&str],
    idem: Option<Idempotence>,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: idem.map_or(-1, |x| x.producer_id),
            producer_epoch: idem.map_or(-1, |x| x.producer_epoch),
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch wherever offset - sequence changes, so without
            // idempotence the sequences count up from -1 (the batch's base sequence, "none")
            // to keep all values in one batch, as a producer sends them.
            sequence: idem.map_or(i as i32 - 1, |x| x.base_sequence + i as i32),
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produce v9 of `records` on an open connection; returns (error code, base offset).
pub async fn produce_on(
    c: &mut Connection,
    topic: &str,
    p: i32,
    acks: i16,
    records: Bytes,
) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(2_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(records))])]);
    let r: ProduceResponse = c.send(ApiKey::Produce, 9, &req).await.unwrap();
    let pr = &r.responses[0].partition_responses[0];
    (pr.error_code, pr.base_offset)
}

/// The leader Metadata names for `topic-p`, if any.
pub fn leader_in(md: &MetadataResponse, topic: &str, p: i32) -> Option<i32> {
    md.topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
        .and_then(|t| t.partitions.iter().find(|x| x.partition_index == p))
        .filter(|x| x.error_code == 0 && x.leader_id.0 >= 0)
        .map(|x| x.leader_id.0)
}

/// Produce v9 with acks=0: the broker sends no answer (Kafka closes no connection either), so
/// this only writes the frame.
pub async fn produce_acks0(addr: SocketAddr, topic: &str, p: i32, records: Bytes) {
    use kafka_protocol::messages::RequestHeader;
    use kafka_protocol::protocol::{Encodable, HeaderVersion};
    use tokio::io::AsyncWriteExt;
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_timeout_ms(2_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(records))])]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("acks0")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, ProduceRequest::header_version(9))
        .unwrap();
    req.encode(&mut buf, 9).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&buf).await.unwrap();
    s.flush().await.unwrap();
    // Keep the connection open a moment so the broker reads the whole frame before EOF.
    let _ = tokio::time::timeout(Duration::from_millis(50), async {
        use tokio::io::AsyncReadExt;
        let mut b = [0u8; 1];
        let _ = s.read(&mut b).await;
    })
    .await;
}
