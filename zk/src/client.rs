//! Typed ZooKeeper operations of the broker and the controller (Kafka's `KafkaZkClient`).
//!
//! Kafka concept: nobody outside this file issues a raw ZooKeeper request. Brokers use it to
//! register themselves (`registerBroker`), the controller to win the election
//! (`registerControllerAndIncrementControllerEpoch`) and to write partition state
//! (`createTopicPartitionStatesRaw`, `updateLeaderAndIsr`), the admin path to create topics.
//!
//! Invariant: every write the controller makes is a multi-op that starts with
//! `check(/controller_epoch, epochZkVersion)`. A controller that lost its election (a paused
//! zombie) is therefore rejected by ZooKeeper itself, not by us; the failed check surfaces as
//! [`Error::ControllerMoved`].
//!
//! Every session sits behind [`UntilConnected`] (Kafka's `retryRequestsUntilConnected`): a
//! request that meets a lost connection waits until the session is connected again and goes
//! again, so callers never see CONNECTIONLOSS; only the end of the session fails them.
//!
//! Simplifications: no ACLs (Kafka's default `zookeeper.set.acl=false`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use tracing::{debug, info, warn};

use super::backend::{
    MultiError, NodeMode, RealZk, Watch, ZkBackend, ZkError, ZkOp, ZkOpResult, ZkStat,
};
use super::data::*;
use crate::error::{Error, Result};
use crate::retry::UntilConnected;

/// Znodes per multi-read request when loading partition states.
const MULTI_READ_CHUNK: usize = 500;
/// Partition state writes per fenced multi-op (see `update_leader_and_isr`).
const MULTI_WRITE_CHUNK: usize = 100;

/// Outcome of an election attempt (expected outcomes, not errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionResult {
    /// We created `/controller` and bumped `/controller_epoch` to `epoch`; `epoch_zk_version` is
    /// the fencing token for every later write.
    Won { epoch: i32, epoch_zk_version: i32 },
    /// Another broker is the controller (or won the race).
    Lost { controller_id: Option<i32> },
    /// Our current session holds no `/brokers/ids/<id>`: not eligible (a broker that lost its
    /// session and has not re-registered yet never becomes controller).
    NotRegistered,
}

/// Result of one conditional partition-state write (Kafka's `UpdateLeaderAndIsrResult` split).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateLeaderAndIsrResult {
    /// Written; the new zkVersion (partition epoch).
    Updated(i32),
    /// BADVERSION: someone changed the partition meanwhile; re-read and retry.
    NeedsRetry,
    /// Any other failure of this one partition.
    Failed(String),
}

/// Opens a new session (Kafka's `ZooKeeperClient.reinitialize` builds a new `ZooKeeper` with
/// the same connect string): the real client's connects again, tests hand out another
/// in-memory session.
pub type SessionFactory =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, Result<Arc<dyn ZkBackend>>> + Send + Sync>;

/// All ZooKeeper I/O of the broker and the controller. Cheap to clone; every clone shares the
/// same session, and [`KafkaZkClient::reinitialize`] replaces it for all of them.
#[derive(Clone)]
pub struct KafkaZkClient {
    /// The current session. Replaced (not mutated) after a session expiry.
    inner: Arc<std::sync::RwLock<Arc<dyn ZkBackend>>>,
    /// Opens the next session after an expiry; `None` for a client that cannot (tools).
    factory: Option<SessionFactory>,
}

/// Outcome of one attempt to create `/brokers/ids/<id>` (Kafka's `CheckedEphemeral.create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerRegistrationOutcome {
    /// The znode belongs to our current session; its czxid is the broker epoch.
    Registered { broker_epoch: i64 },
    /// Another session holds it (a previous run of this broker, or this broker's own expired
    /// session whose ephemerals ZooKeeper has not deleted yet, or a live duplicate id).
    HeldByAnotherSession { owner_session: i64, czxid: i64 },
}

fn split_connect(connect: &str) -> (&str, Option<&str>) {
    match connect.find('/') {
        Some(i) if i + 1 < connect.len() => (&connect[..i], Some(&connect[i..])),
        Some(i) => (&connect[..i], None),
        None => (connect, None),
    }
}

impl KafkaZkClient {
    /// Connects to `zookeeper.connect` (host:port,...[/chroot]); creates the chroot if missing,
    /// as Kafka's `KafkaZkClient.createChroot` does.
    pub async fn connect(
        zookeeper_connect: &str,
        session_timeout: Duration,
    ) -> Result<KafkaZkClient> {
        let connect = zookeeper_connect.to_string();
        let factory: SessionFactory = Arc::new(move || {
            let connect = connect.clone();
            Box::pin(async move { Self::open(&connect, session_timeout).await })
        });
        let backend = factory().await?;
        info!(
            zookeeper_connect,
            session_id = %format_args!("0x{:x}", backend.session_id()),
            "connected to ZooKeeper"
        );
        Ok(KafkaZkClient {
            inner: Arc::new(std::sync::RwLock::new(UntilConnected::wrap(backend))),
            factory: Some(factory),
        })
    }

    async fn open(
        zookeeper_connect: &str,
        session_timeout: Duration,
    ) -> Result<Arc<dyn ZkBackend>> {
        let (hosts, chroot) = split_connect(zookeeper_connect.trim());
        if hosts.is_empty() {
            return Err(Error::BadConnectString(zookeeper_connect.to_string()));
        }
        let target = crate::real::ConnectTarget {
            hosts: hosts.to_string(),
            chroot: chroot.map(str::to_string),
            session_timeout,
        };
        let zk = RealZk::connect(target).await.map_err(|e| match e {
            ZkError::BadArguments(_) => Error::BadConnectString(zookeeper_connect.to_string()),
            e => Error::zk(hosts, e),
        })?;
        Ok(Arc::new(zk))
    }

    /// A client over any backend (tests use [`super::backend::MemoryZk`]); it cannot open a
    /// new session after an expiry.
    pub fn from_backend(backend: Arc<dyn ZkBackend>) -> KafkaZkClient {
        KafkaZkClient {
            inner: Arc::new(std::sync::RwLock::new(UntilConnected::wrap(backend))),
            factory: None,
        }
    }

    /// A client over `backend` that opens its next session with `factory` (tests hand out
    /// another in-memory session).
    pub fn with_session_factory(
        backend: Arc<dyn ZkBackend>,
        factory: SessionFactory,
    ) -> KafkaZkClient {
        KafkaZkClient {
            inner: Arc::new(std::sync::RwLock::new(UntilConnected::wrap(backend))),
            factory: Some(factory),
        }
    }

    /// The current session's backend, behind [`UntilConnected`] (raw reads for tools and
    /// tests).
    pub fn backend(&self) -> Arc<dyn ZkBackend> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The current session's id (the `ephemeralOwner` of the znodes it creates).
    pub fn session_id(&self) -> i64 {
        self.backend().session_id()
    }

    /// Closes the session (ephemerals vanish at once).
    pub async fn close(&self) {
        self.backend().close().await
    }

    /// Resolves when the current session has ended: ZooKeeper expired it (the real backend
    /// resumes a session the client library alone gave up on, see [`crate::real`]) or it was
    /// closed. Kafka's `ZooKeeperClient` state-change handler; the broker then calls
    /// [`KafkaZkClient::reinitialize`] and re-registers.
    pub async fn session_expired(&self) {
        self.backend().session_ended().await
    }

    /// Swaps in another session's backend (what `reinitialize` does; for tests and tools).
    pub fn set_backend(&self, backend: Arc<dyn ZkBackend>) {
        *self.inner.write().unwrap_or_else(|e| e.into_inner()) = UntilConnected::wrap(backend);
    }

    /// Opens a new session and makes every clone use it (Kafka's
    /// `ZooKeeperClient.reinitialize`). Ephemerals of the old session are gone, or will be
    /// once ZooKeeper has finished expiring it.
    pub async fn reinitialize(&self) -> Result<()> {
        let Some(factory) = self.factory.clone() else {
            return Err(Error::BadConnectString(
                "client has no connect string".into(),
            ));
        };
        let fresh = UntilConnected::wrap(factory().await?);
        let session_id = fresh.session_id();
        let old = std::mem::replace(
            &mut *self.inner.write().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        old.close().await;
        info!(
            session_id = %format_args!("0x{session_id:x}"),
            "opened a new ZooKeeper session"
        );
        Ok(())
    }

    // ---- generic helpers -------------------------------------------------------------------

    /// `mkdir -p` with null data; existing nodes are fine.
    pub async fn create_recursive(&self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            prefix.push('/');
            prefix.push_str(part);
            match self
                .backend()
                .create(prefix.clone(), Vec::new(), NodeMode::Persistent)
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => {}
                Err(e) => return Err(Error::zk(&prefix, e)),
            }
        }
        Ok(())
    }

    /// Reads a node; `None` if it does not exist.
    pub async fn get_data_maybe(&self, path: &str) -> Result<Option<(Vec<u8>, ZkStat)>> {
        match self.backend().get_data(path.to_string()).await {
            Ok(r) => Ok(Some(r)),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Children of a node; empty if it does not exist.
    pub async fn get_children_maybe(&self, path: &str) -> Result<Vec<String>> {
        match self.backend().get_children(path.to_string()).await {
            Ok(r) => Ok(r),
            Err(ZkError::NoNode) => Ok(Vec::new()),
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Children with a child watch; the node must exist (Kafka's persistent paths do).
    pub async fn get_children_and_watch(&self, path: &str) -> Result<(Vec<String>, Watch)> {
        self.backend()
            .get_children_and_watch(path.to_string())
            .await
            .map_err(|e| Error::zk(path, e))
    }

    /// Runs `ops` fenced by the controller epoch's zkVersion (Kafka's `MultiRequest` with
    /// `CheckOp(ControllerEpochZNode.path, expectedControllerEpochZkVersion)`).
    pub async fn fenced_multi(
        &self,
        epoch_zk_version: i32,
        ops: Vec<ZkOp>,
    ) -> std::result::Result<Vec<ZkOpResult>, FencedError> {
        let mut all = Vec::with_capacity(ops.len() + 1);
        all.push(ZkOp::Check {
            path: ControllerEpoch::path().to_string(),
            version: epoch_zk_version,
        });
        let paths: Vec<String> = ops.iter().map(|o| o.path().to_string()).collect();
        all.extend(ops);
        match self.backend().multi(all).await {
            Ok(mut r) => {
                r.remove(0);
                Ok(r)
            }
            Err(MultiError::Op { index: 0, .. }) => Err(FencedError::ControllerMoved),
            Err(MultiError::Op { index, error }) => Err(FencedError::Op {
                path: paths[index - 1].clone(),
                error,
            }),
            Err(MultiError::Request(e)) => Err(FencedError::Op {
                path: paths.first().cloned().unwrap_or_default(),
                error: e,
            }),
        }
    }

    // ---- broker startup --------------------------------------------------------------------

    /// Kafka's persistent paths (reference §0), created with null data if missing.
    pub async fn ensure_persistent_paths(&self) -> Result<()> {
        for p in PERSISTENT_ZK_PATHS {
            self.create_recursive(p).await?;
        }
        Ok(())
    }

    /// Reads `/cluster/id`, creating it with `proposed` if absent (first broker ever wins).
    pub async fn get_or_create_cluster_id(&self, proposed: &str) -> Result<String> {
        let path = ClusterIdZNode::path();
        if let Some((data, _)) = self.get_data_maybe(path).await? {
            return ClusterIdZNode::decode(&data);
        }
        self.create_recursive("/cluster").await?;
        match self
            .backend()
            .create(
                path.to_string(),
                ClusterIdZNode::encode(proposed),
                NodeMode::Persistent,
            )
            .await
        {
            Ok(_) => Ok(proposed.to_string()),
            Err(ZkError::NodeExists) => match self.get_data_maybe(path).await? {
                Some((data, _)) => ClusterIdZNode::decode(&data),
                None => Err(Error::zk(path, ZkError::NoNode)),
            },
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Registers the ephemeral `/brokers/ids/<id>`; returns the broker epoch (czxid). Fails
    /// with [`Error::BrokerIdAlreadyRegistered`] when another session holds it; callers that
    /// wait for that session to go use [`KafkaZkClient::try_register_broker`].
    pub async fn register_broker(&self, registration: &BrokerRegistration) -> Result<i64> {
        match self.try_register_broker(registration).await? {
            BrokerRegistrationOutcome::Registered { broker_epoch } => Ok(broker_epoch),
            BrokerRegistrationOutcome::HeldByAnotherSession { .. } => {
                Err(Error::BrokerIdAlreadyRegistered(registration.broker_id))
            }
        }
    }

    /// One registration of `/brokers/ids/<id>` (Kafka's `registerBroker` through
    /// `checkedEphemeralCreate`): one multi creating the node with null data and setting the
    /// data with expected version 0, so a fresh registration shows dataVersion 1. If the node
    /// exists, its `ephemeralOwner` decides: our current session (a retried create after a
    /// connection loss) means it is ours; another session means it is held, and the caller
    /// retries until ZooKeeper has expired that session (KAFKA-7165).
    pub async fn try_register_broker(
        &self,
        registration: &BrokerRegistration,
    ) -> Result<BrokerRegistrationOutcome> {
        let path = BrokerIdZNode::path(registration.broker_id);
        let data = BrokerIdZNode::encode(registration);
        // The node can vanish between a failed create and the read that follows (the older
        // session that held it expires just then): create again. Bounded, as each round needs
        // another session to have created the node in between.
        let mut held = None;
        for _ in 0..10 {
            match self
                .register_broker_once(registration, &path, &data)
                .await?
            {
                Some(BrokerRegistrationOutcome::Registered { broker_epoch }) => {
                    return Ok(BrokerRegistrationOutcome::Registered { broker_epoch })
                }
                Some(h) => {
                    held = Some(h);
                    break;
                }
                None => {
                    debug!(broker_id = registration.broker_id,
                    "the registration of the older session vanished meanwhile; registering again")
                }
            }
        }
        Ok(
            held.unwrap_or(BrokerRegistrationOutcome::HeldByAnotherSession {
                owner_session: 0,
                czxid: 0,
            }),
        )
    }

    /// One registration attempt; `None` when the node that blocked it is already gone.
    async fn register_broker_once(
        &self,
        registration: &BrokerRegistration,
        path: &str,
        data: &[u8],
    ) -> Result<Option<BrokerRegistrationOutcome>> {
        let ops = vec![
            ZkOp::Create {
                path: path.to_string(),
                data: Vec::new(),
                mode: NodeMode::Ephemeral,
            },
            ZkOp::SetData {
                path: path.to_string(),
                data: data.to_vec(),
                version: Some(0),
            },
        ];
        let session = self.backend().session_id();
        match self.backend().multi(ops).await {
            Ok(results) => {
                let czxid = match results.first() {
                    Some(ZkOpResult::Create(stat)) if stat.czxid > 0 => stat.czxid,
                    // Some servers return an invalid stat in multi results (ZOOKEEPER-4026):
                    // read it back.
                    _ => self.broker_czxid(registration.broker_id).await?,
                };
                info!(
                    broker_id = registration.broker_id,
                    broker_epoch = czxid,
                    session_id = %format_args!("0x{session:x}"),
                    "registered broker"
                );
                Ok(Some(BrokerRegistrationOutcome::Registered {
                    broker_epoch: czxid,
                }))
            }
            Err(MultiError::Op {
                error: ZkError::NodeExists,
                ..
            }) => {
                let Some((_, stat)) = self.get_data_maybe(path).await? else {
                    return Ok(None);
                };
                if stat.ephemeral_owner == session {
                    Ok(Some(BrokerRegistrationOutcome::Registered {
                        broker_epoch: stat.czxid,
                    }))
                } else {
                    Ok(Some(BrokerRegistrationOutcome::HeldByAnotherSession {
                        owner_session: stat.ephemeral_owner,
                        czxid: stat.czxid,
                    }))
                }
            }
            Err(MultiError::Op { error, .. }) | Err(MultiError::Request(error)) => {
                Err(Error::zk(path, error))
            }
        }
    }

    /// The stat of `/brokers/ids/<id>` if our *current* session owns it: the condition for
    /// taking part in the controller election (a broker whose session lost its registration
    /// must not become controller).
    pub async fn own_registration(&self, broker_id: i32) -> Result<Option<ZkStat>> {
        let path = BrokerIdZNode::path(broker_id);
        let session = self.backend().session_id();
        Ok(self
            .get_data_maybe(&path)
            .await?
            .map(|(_, stat)| stat)
            .filter(|stat| stat.ephemeral_owner == session))
    }

    async fn broker_czxid(&self, broker_id: i32) -> Result<i64> {
        let path = BrokerIdZNode::path(broker_id);
        let (_, stat) = self
            .get_data_maybe(&path)
            .await?
            .ok_or_else(|| Error::zk(&path, ZkError::NoNode))?;
        Ok(stat.czxid)
    }

    /// Rewrites our registration in place (advertised listeners changed).
    pub async fn update_broker_info(&self, registration: &BrokerRegistration) -> Result<()> {
        let path = BrokerIdZNode::path(registration.broker_id);
        self.backend()
            .set_data(path.clone(), BrokerIdZNode::encode(registration), None)
            .await
            .map_err(|e| Error::zk(path, e))?;
        Ok(())
    }

    /// Every registered broker with its epoch (czxid), sorted by id.
    pub async fn get_all_brokers(&self) -> Result<Vec<BrokerInfo>> {
        let mut ids: Vec<i32> = self
            .get_children_maybe(BrokerIds::path())
            .await?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        ids.sort_unstable();
        let reads = ids.iter().map(|id| async move {
            let path = BrokerIdZNode::path(*id);
            match self.get_data_maybe(&path).await? {
                Some((data, stat)) => Ok(Some(BrokerInfo {
                    registration: BrokerIdZNode::decode(*id, &data)?,
                    broker_epoch: stat.czxid,
                })),
                // Vanished between the list and the read.
                None => Ok(None),
            }
        });
        let mut out = Vec::new();
        for r in join_all(reads).await {
            match r {
                Ok(Some(b)) => out.push(b),
                Ok(None) => {}
                // A broker znode we cannot decode is skipped, not fatal for the cluster view.
                Err(Error::BadZnode { path, reason }) => {
                    warn!(path, reason, "skipping undecodable broker registration")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// One broker's registration, if present.
    pub async fn get_broker(&self, broker_id: i32) -> Result<Option<BrokerInfo>> {
        let path = BrokerIdZNode::path(broker_id);
        match self.get_data_maybe(&path).await? {
            Some((data, stat)) => Ok(Some(BrokerInfo {
                registration: BrokerIdZNode::decode(broker_id, &data)?,
                broker_epoch: stat.czxid,
            })),
            None => Ok(None),
        }
    }

    // ---- controller election ---------------------------------------------------------------

    /// The active controller's id, if any.
    pub async fn get_controller_id(&self) -> Result<Option<i32>> {
        match self.get_data_maybe(Controller::path()).await? {
            Some((data, _)) => Ok(Some(Controller::decode(&data)?)),
            None => Ok(None),
        }
    }

    /// Sets an existence watch on `/controller` (creation, deletion, data change).
    pub async fn watch_controller(&self) -> Result<Watch> {
        let (_, w) = self
            .backend()
            .exists_and_watch(Controller::path().to_string())
            .await
            .map_err(|e| Error::zk(Controller::path(), e))?;
        Ok(w)
    }

    /// `/controller_epoch` as (epoch, zkVersion), if it exists.
    pub async fn get_controller_epoch(&self) -> Result<Option<(i32, i32)>> {
        match self.get_data_maybe(ControllerEpoch::path()).await? {
            Some((data, stat)) => Ok(Some((ControllerEpoch::decode(&data)?, stat.version))),
            None => Ok(None),
        }
    }

    /// Claims the next block of producer ids for `broker_id` (Kafka's `ZkProducerIdManager`, the
    /// path brokers take before IBP 3.0-IV0): read `/latest_producer_id_block` with its version,
    /// write the following block with that version, and retry if another broker won the race.
    /// Returns `(first, last)`, both inclusive.
    pub async fn allocate_producer_id_block(&self, broker_id: i32) -> Result<(i64, i64)> {
        let path = ProducerIdBlockZNode::path();
        loop {
            let (data, version) = match self.get_data_maybe(path).await? {
                Some((data, stat)) => (data, Some(stat.version)),
                None => (Vec::new(), None),
            };
            let start = if data.is_empty() {
                0
            } else {
                let (_, _, end) = ProducerIdBlockZNode::decode(&data)?;
                end.checked_add(1)
                    .filter(|s| s.checked_add(ProducerIdBlockZNode::BLOCK_SIZE).is_some())
                    .ok_or(Error::ProducerIdsExhausted)?
            };
            let end = start + ProducerIdBlockZNode::BLOCK_SIZE - 1;
            let bytes = ProducerIdBlockZNode::encode(broker_id, start, end);
            let written = match version {
                Some(v) => self
                    .backend()
                    .set_data(path.to_string(), bytes, Some(v))
                    .await
                    .map(|_| ()),
                None => self
                    .backend()
                    .create(path.to_string(), bytes, NodeMode::Persistent)
                    .await
                    .map(|_| ()),
            };
            match written {
                Ok(()) => {
                    info!(
                        broker_id,
                        block_start = start,
                        block_end = end,
                        "claimed a block of producer ids"
                    );
                    return Ok((start, end));
                }
                Err(ZkError::BadVersion) | Err(ZkError::NodeExists) => {
                    debug!(
                        broker_id,
                        "another broker claimed that producer id block; retrying"
                    );
                }
                Err(e) => return Err(Error::zk(path, e)),
            }
        }
    }

    /// Kafka's `registerControllerAndIncrementControllerEpoch` (reference §2.2 steps 2-5),
    /// guarded by this broker's own registration: only a broker whose current session holds
    /// `/brokers/ids/<id>` may create `/controller`. The multi-op checks that znode's version
    /// too, so a registration that vanishes meanwhile fails the election atomically.
    /// (Kafka gets the same guarantee from its order of events: the controller elects only
    /// after `registerBroker` on the same session; here it is checked, as a broker stranded
    /// without registration once won and ran the cluster without itself as a live broker.)
    pub async fn register_controller_and_increment_epoch(
        &self,
        broker_id: i32,
    ) -> Result<ElectionResult> {
        let Some(registration) = self.own_registration(broker_id).await? else {
            return Ok(ElectionResult::NotRegistered);
        };
        let epoch_path = ControllerEpoch::path();
        // Step 2: read the epoch, creating it with 0 if absent.
        let (epoch, version) = match self.get_controller_epoch().await? {
            Some(ev) => ev,
            None => {
                match self
                    .backend()
                    .create(
                        epoch_path.to_string(),
                        ControllerEpoch::encode(0),
                        NodeMode::Persistent,
                    )
                    .await
                {
                    Ok(_) | Err(ZkError::NodeExists) => {}
                    Err(e) => return Err(Error::zk(epoch_path, e)),
                }
                self.get_controller_epoch()
                    .await?
                    .ok_or_else(|| Error::zk(epoch_path, ZkError::NoNode))?
            }
        };
        let new_epoch = epoch + 1;
        // Step 3: one multi creating /controller and bumping the epoch conditionally.
        let ops = vec![
            ZkOp::Check {
                path: BrokerIdZNode::path(broker_id),
                version: registration.version,
            },
            ZkOp::Create {
                path: Controller::path().to_string(),
                data: Controller::encode(broker_id, now_ms()),
                mode: NodeMode::Ephemeral,
            },
            ZkOp::SetData {
                path: epoch_path.to_string(),
                data: ControllerEpoch::encode(new_epoch),
                version: Some(version),
            },
        ];
        match self.backend().multi(ops).await {
            Ok(results) => {
                let epoch_zk_version = match results.get(2) {
                    Some(ZkOpResult::SetData(stat)) => stat.version,
                    _ => version + 1,
                };
                Ok(ElectionResult::Won {
                    epoch: new_epoch,
                    epoch_zk_version,
                })
            }
            // Our registration vanished (or was replaced) since we read it.
            Err(MultiError::Op {
                index: 0,
                error: ZkError::NoNode | ZkError::BadVersion,
            }) => Ok(ElectionResult::NotRegistered),
            Err(MultiError::Op {
                error: ZkError::NodeExists | ZkError::BadVersion,
                ..
            }) => {
                // Step 5: did a retried multi of ours actually win?
                let controller_id = self.get_controller_id().await?;
                if controller_id == Some(broker_id) {
                    if let Some((e, v)) = self.get_controller_epoch().await? {
                        if e == new_epoch {
                            return Ok(ElectionResult::Won {
                                epoch: e,
                                epoch_zk_version: v,
                            });
                        }
                    }
                }
                Ok(ElectionResult::Lost { controller_id })
            }
            Err(MultiError::Op { error, .. }) | Err(MultiError::Request(error)) => {
                Err(Error::zk(Controller::path(), error))
            }
        }
    }

    /// Deletes `/controller` under the epoch check (a resigning controller triggering a new
    /// election, Kafka's `deleteController`). A missing node is fine.
    pub async fn delete_controller(&self, epoch_zk_version: i32) -> Result<()> {
        match self
            .fenced_multi(
                epoch_zk_version,
                vec![ZkOp::Delete {
                    path: Controller::path().to_string(),
                    version: None,
                }],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(FencedError::Op {
                error: ZkError::NoNode,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `/feature` with status Enabled, or flips it to Enabled (failover step 1).
    pub async fn ensure_feature_znode(&self) -> Result<()> {
        let path = FeatureZNode::path();
        match self.get_data_maybe(path).await? {
            None => match self
                .backend()
                .create(
                    path.to_string(),
                    FeatureZNode::encode_enabled(),
                    NodeMode::Persistent,
                )
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => Ok(()),
                Err(e) => Err(Error::zk(path, e)),
            },
            Some((data, stat)) => {
                if FeatureZNode::decode_status(&data).ok() != Some(1) {
                    self.backend()
                        .set_data(
                            path.to_string(),
                            FeatureZNode::encode_enabled(),
                            Some(stat.version),
                        )
                        .await
                        .map_err(|e| Error::zk(path, e))?;
                }
                Ok(())
            }
        }
    }

    // ---- topics ----------------------------------------------------------------------------

    /// All topic names.
    pub async fn get_all_topics(&self) -> Result<Vec<String>> {
        self.get_children_maybe(Topics::path()).await
    }

    /// A topic's assignment with its zkVersion, if the topic exists.
    pub async fn get_topic_assignment(&self, topic: &str) -> Result<Option<TopicAssignment>> {
        match self.get_data_maybe(&TopicZNode::path(topic)).await? {
            Some((data, _)) => Ok(Some(TopicZNode::decode(topic, &data)?)),
            None => Ok(None),
        }
    }

    /// A topic's assignment plus a data watch on its znode; `None` if the topic is gone.
    pub async fn get_topic_assignment_and_watch(
        &self,
        topic: &str,
    ) -> Result<Option<(TopicAssignment, Watch)>> {
        let path = TopicZNode::path(topic);
        match self.backend().get_data_and_watch(path.clone()).await {
            Ok((data, _, w)) => Ok(Some((TopicZNode::decode(topic, &data)?, w))),
            Err(ZkError::NoNode) => Ok(None),
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Creates `/brokers/topics/<t>` (admin path, not fenced). `TopicExists` on NODEEXISTS.
    pub async fn create_topic_assignment(
        &self,
        topic: &str,
        assignment: &TopicAssignment,
    ) -> Result<()> {
        let path = TopicZNode::path(topic);
        match self
            .backend()
            .create(
                path.clone(),
                TopicZNode::encode(assignment),
                NodeMode::Persistent,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ZkError::NodeExists) => Err(Error::TopicExists(topic.to_string())),
            Err(ZkError::NoNode) => {
                self.create_recursive(Topics::path()).await?;
                self.backend()
                    .create(
                        path.clone(),
                        TopicZNode::encode(assignment),
                        NodeMode::Persistent,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| match e {
                        ZkError::NodeExists => Error::TopicExists(topic.to_string()),
                        e => Error::zk(path, e),
                    })
            }
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Overwrites `/brokers/topics/<t>` (any version). With `epoch_zk_version` the write is
    /// fenced (controller writes); without it, it is an admin write.
    pub async fn set_topic_assignment(
        &self,
        topic: &str,
        assignment: &TopicAssignment,
        epoch_zk_version: Option<i32>,
    ) -> Result<()> {
        let path = TopicZNode::path(topic);
        let data = TopicZNode::encode(assignment);
        match epoch_zk_version {
            Some(v) => {
                self.fenced_multi(
                    v,
                    vec![ZkOp::SetData {
                        path,
                        data,
                        version: None,
                    }],
                )
                .await?;
                Ok(())
            }
            None => {
                self.backend()
                    .set_data(path.clone(), data, None)
                    .await
                    .map_err(|e| match e {
                        ZkError::NoNode => Error::UnknownTopic(topic.to_string()),
                        e => Error::zk(path, e),
                    })?;
                Ok(())
            }
        }
    }

    /// Writes `/config/topics/<t>` (set, or create if missing).
    pub async fn set_or_create_topic_config(
        &self,
        topic: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<()> {
        let path = ConfigEntityZNode::topic_path(topic);
        let data = ConfigEntityZNode::encode(config);
        match self
            .backend()
            .set_data(path.clone(), data.clone(), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(ZkError::NoNode) => {
                self.create_recursive("/config/topics").await?;
                match self
                    .backend()
                    .create(path.clone(), data.clone(), NodeMode::Persistent)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(ZkError::NodeExists) => self
                        .backend()
                        .set_data(path.clone(), data, None)
                        .await
                        .map(|_| ())
                        .map_err(|e| Error::zk(path, e)),
                    Err(e) => Err(Error::zk(path, e)),
                }
            }
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// `/config/topics/<t>` contents; empty if absent.
    pub async fn get_topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>> {
        let path = ConfigEntityZNode::topic_path(topic);
        match self.get_data_maybe(&path).await? {
            Some((data, _)) => ConfigEntityZNode::decode(&path, &data),
            None => Ok(BTreeMap::new()),
        }
    }

    // ---- partition state -------------------------------------------------------------------

    /// Reads the `state` znodes of `partitions` (pipelined); missing ones are left out.
    pub async fn get_partition_states(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, LeaderIsrAndControllerEpoch>> {
        // Multi-reads of a few hundred znodes each, all in flight at once: one round trip per
        // chunk instead of per partition (Kafka pipelines single getData requests instead).
        let backend = self.backend();
        let chunks: Vec<&[TopicPartition]> = partitions.chunks(MULTI_READ_CHUNK).collect();
        let reads = chunks.iter().map(|chunk| {
            let paths = chunk.iter().map(TopicPartitionStateZNode::path).collect();
            backend.get_data_many(paths)
        });
        let mut out = BTreeMap::new();
        for (chunk, r) in chunks.iter().zip(join_all(reads).await) {
            let results = r.map_err(|e| Error::zk("/brokers/topics/*/partitions/*/state", e))?;
            for (tp, r) in chunk.iter().zip(results) {
                match r {
                    Ok((data, stat)) => {
                        out.insert(
                            tp.clone(),
                            TopicPartitionStateZNode::decode(tp, &data, stat.version)?,
                        );
                    }
                    Err(ZkError::NoNode) => {}
                    Err(e) => return Err(Error::zk(TopicPartitionStateZNode::path(tp), e)),
                }
            }
        }
        Ok(out)
    }

    /// Creates `partitions/<p>/state` (and its parents) for new partitions, fenced (Kafka's
    /// `createTopicPartitionStatesRaw`). Returns per partition the new zkVersion (0) or why not.
    pub async fn create_partition_states(
        &self,
        states: &[(TopicPartition, LeaderIsrAndControllerEpoch)],
        epoch_zk_version: i32,
    ) -> Result<BTreeMap<TopicPartition, std::result::Result<i32, String>>> {
        // Parents first: `partitions` per topic, then `<p>` per partition; NODEEXISTS is fine.
        // Each level is pipelined (all requests in flight at once), as Kafka's async client does.
        let mut topics: Vec<&str> = states.iter().map(|(tp, _)| tp.topic.as_str()).collect();
        topics.sort_unstable();
        topics.dedup();
        let levels: [Vec<String>; 2] = [
            topics
                .iter()
                .map(|t| TopicPartitionsZNode::path(t))
                .collect(),
            states
                .iter()
                .map(|(tp, _)| TopicPartitionZNode::path(tp))
                .collect(),
        ];
        for paths in levels {
            let creates = paths.into_iter().map(|path| {
                self.fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Create {
                        path,
                        data: Vec::new(),
                        mode: NodeMode::Persistent,
                    }],
                )
            });
            for r in join_all(creates).await {
                match r {
                    Ok(_)
                    | Err(FencedError::Op {
                        error: ZkError::NodeExists,
                        ..
                    }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        let writes = states.iter().map(|(tp, s)| async move {
            let r = self
                .fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Create {
                        path: TopicPartitionStateZNode::path(tp),
                        data: TopicPartitionStateZNode::encode(s),
                        mode: NodeMode::Persistent,
                    }],
                )
                .await;
            (tp.clone(), r)
        });
        let mut out = BTreeMap::new();
        for (tp, r) in join_all(writes).await {
            match r {
                Ok(_) => {
                    out.insert(tp, Ok(0));
                }
                Err(FencedError::ControllerMoved) => return Err(Error::ControllerMoved),
                Err(FencedError::Op { error, .. }) => {
                    out.insert(tp, Err(error.to_string()));
                }
            }
        }
        Ok(out)
    }

    /// Conditional, fenced writes of partition states (Kafka's `updateLeaderAndIsr`); each
    /// write expects the partition epoch carried in its `LeaderAndIsr`.
    pub async fn update_leader_and_isr(
        &self,
        states: &[(TopicPartition, LeaderIsrAndControllerEpoch)],
        epoch_zk_version: i32,
    ) -> Result<BTreeMap<TopicPartition, UpdateLeaderAndIsrResult>> {
        // Chunks of writes, one fenced multi-op each, all in flight at once: ZooKeeper logs
        // and fsyncs a multi-op as one transaction, where one write per partition made
        // ZooKeeper's transaction rate the bound of a failover. One failing write fails its
        // whole multi-op; that chunk is then written one partition at a time, as before.
        let chunks: Vec<&[(TopicPartition, LeaderIsrAndControllerEpoch)]> =
            states.chunks(MULTI_WRITE_CHUNK).collect();
        let batched = chunks.iter().map(|chunk| async move {
            let ops = chunk
                .iter()
                .map(|(tp, s)| ZkOp::SetData {
                    path: TopicPartitionStateZNode::path(tp),
                    data: TopicPartitionStateZNode::encode(s),
                    version: Some(s.leader_and_isr.partition_epoch),
                })
                .collect();
            (*chunk, self.fenced_multi(epoch_zk_version, ops).await)
        });
        let mut out = BTreeMap::new();
        let mut singly: Vec<&(TopicPartition, LeaderIsrAndControllerEpoch)> = Vec::new();
        for (chunk, r) in join_all(batched).await {
            match r {
                Ok(results) if results.len() == chunk.len() => {
                    for ((tp, _), r) in chunk.iter().zip(results) {
                        let res = match r {
                            ZkOpResult::SetData(stat) => {
                                UpdateLeaderAndIsrResult::Updated(stat.version)
                            }
                            _ => UpdateLeaderAndIsrResult::Failed("unexpected multi result".into()),
                        };
                        out.insert(tp.clone(), res);
                    }
                }
                Err(FencedError::ControllerMoved) => return Err(Error::ControllerMoved),
                Ok(_) | Err(FencedError::Op { .. }) => singly.extend(chunk.iter()),
            }
        }
        let writes = singly.into_iter().map(|(tp, s)| async move {
            let r = self
                .fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::SetData {
                        path: TopicPartitionStateZNode::path(tp),
                        data: TopicPartitionStateZNode::encode(s),
                        version: Some(s.leader_and_isr.partition_epoch),
                    }],
                )
                .await;
            (tp.clone(), r)
        });
        for (tp, r) in join_all(writes).await {
            let res = match r {
                Ok(results) => match results.first() {
                    Some(ZkOpResult::SetData(stat)) => {
                        UpdateLeaderAndIsrResult::Updated(stat.version)
                    }
                    _ => UpdateLeaderAndIsrResult::Failed("unexpected multi result".into()),
                },
                Err(FencedError::ControllerMoved) => return Err(Error::ControllerMoved),
                Err(FencedError::Op {
                    error: ZkError::BadVersion,
                    ..
                }) => UpdateLeaderAndIsrResult::NeedsRetry,
                Err(FencedError::Op { error, .. }) => {
                    UpdateLeaderAndIsrResult::Failed(error.to_string())
                }
            };
            out.insert(tp, res);
        }
        Ok(out)
    }

    // ---- topic deletion --------------------------------------------------------------------

    /// Creates the deletion marker `/admin/delete_topics/<t>`; an existing one is fine.
    pub async fn create_delete_topic_marker(&self, topic: &str) -> Result<()> {
        let path = DeleteTopicsTopicZNode::path(topic);
        match self
            .backend()
            .create(path.clone(), Vec::new(), NodeMode::Persistent)
            .await
        {
            Ok(_) | Err(ZkError::NodeExists) => Ok(()),
            Err(ZkError::NoNode) => {
                self.create_recursive(&path).await?;
                Ok(())
            }
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Topics marked for deletion.
    pub async fn get_topic_deletions(&self) -> Result<Vec<String>> {
        self.get_children_maybe(DeleteTopicsZNode::path()).await
    }

    /// Deletes deletion markers, fenced; missing markers are fine.
    pub async fn delete_topic_deletion_markers(
        &self,
        topics: &[String],
        epoch_zk_version: i32,
    ) -> Result<()> {
        for t in topics {
            match self
                .fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Delete {
                        path: DeleteTopicsTopicZNode::path(t),
                        version: None,
                    }],
                )
                .await
            {
                Ok(_)
                | Err(FencedError::Op {
                    error: ZkError::NoNode,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Deletes `/brokers/topics/<t>` recursively and `/config/topics/<t>`, each delete fenced
    /// (Kafka's `deleteTopicZNode` + `deleteTopicConfigs`).
    pub async fn delete_topic_znodes(&self, topic: &str, epoch_zk_version: i32) -> Result<()> {
        let root = TopicZNode::path(topic);
        let mut paths = Vec::new();
        self.collect_subtree(&root, &mut paths).await?;
        // Children before parents.
        paths.reverse();
        paths.push(ConfigEntityZNode::topic_path(topic));
        for path in paths {
            match self
                .fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Delete {
                        path,
                        version: None,
                    }],
                )
                .await
            {
                Ok(_)
                | Err(FencedError::Op {
                    error: ZkError::NoNode,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        debug!(topic, "deleted topic znodes");
        Ok(())
    }

    /// Pre-order list of `root` and its descendants that exist.
    async fn collect_subtree(&self, root: &str, out: &mut Vec<String>) -> Result<()> {
        let mut stack = vec![root.to_string()];
        while let Some(p) = stack.pop() {
            if self.get_data_maybe(&p).await?.is_none() {
                continue;
            }
            let children = self.get_children_maybe(&p).await?;
            out.push(p.clone());
            for c in children {
                stack.push(format!("{p}/{c}"));
            }
        }
        Ok(())
    }

    // ---- admin paths: preferred election and reassignment ---------------------------------

    /// Existence check with a watch on creation, deletion and data change of `path`.
    pub async fn exists_and_watch(&self, path: &str) -> Result<(bool, Watch)> {
        let (stat, w) = self
            .backend()
            .exists_and_watch(path.to_string())
            .await
            .map_err(|e| Error::zk(path, e))?;
        Ok((stat.is_some(), w))
    }

    /// The partitions listed in `/admin/preferred_replica_election`, if it exists.
    pub async fn get_preferred_replica_election(&self) -> Result<Option<Vec<TopicPartition>>> {
        match self
            .get_data_maybe(PreferredReplicaElectionZNode::path())
            .await?
        {
            Some((data, _)) => Ok(Some(PreferredReplicaElectionZNode::decode(&data)?)),
            None => Ok(None),
        }
    }

    /// Deletes `/admin/preferred_replica_election`, fenced; a missing node is fine.
    pub async fn delete_preferred_replica_election(&self, epoch_zk_version: i32) -> Result<()> {
        self.fenced_delete_maybe(PreferredReplicaElectionZNode::path(), epoch_zk_version)
            .await
    }

    /// The reassignments listed in `/admin/reassign_partitions`, if it exists.
    pub async fn get_partition_reassignment(
        &self,
    ) -> Result<Option<Vec<(TopicPartition, Vec<i32>)>>> {
        match self.get_data_maybe(ReassignPartitionsZNode::path()).await? {
            Some((data, _)) => Ok(Some(ReassignPartitionsZNode::decode(&data)?)),
            None => Ok(None),
        }
    }

    /// Rewrites (or creates) `/admin/reassign_partitions`, fenced (Kafka's
    /// `setOrCreatePartitionReassignment`).
    pub async fn set_or_create_partition_reassignment(
        &self,
        reassignments: &[(TopicPartition, Vec<i32>)],
        epoch_zk_version: i32,
    ) -> Result<()> {
        let path = ReassignPartitionsZNode::path().to_string();
        let data = ReassignPartitionsZNode::encode(reassignments);
        let set = self
            .fenced_multi(
                epoch_zk_version,
                vec![ZkOp::SetData {
                    path: path.clone(),
                    data: data.clone(),
                    version: None,
                }],
            )
            .await;
        match set {
            Ok(_) => Ok(()),
            Err(FencedError::Op {
                error: ZkError::NoNode,
                ..
            }) => {
                self.fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Create {
                        path,
                        data,
                        mode: NodeMode::Persistent,
                    }],
                )
                .await?;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes `/admin/reassign_partitions`, fenced; a missing node is fine.
    pub async fn delete_partition_reassignment(&self, epoch_zk_version: i32) -> Result<()> {
        self.fenced_delete_maybe(ReassignPartitionsZNode::path(), epoch_zk_version)
            .await
    }

    async fn fenced_delete_maybe(&self, path: &str, epoch_zk_version: i32) -> Result<()> {
        match self
            .fenced_multi(
                epoch_zk_version,
                vec![ZkOp::Delete {
                    path: path.to_string(),
                    version: None,
                }],
            )
            .await
        {
            Ok(_)
            | Err(FencedError::Op {
                error: ZkError::NoNode,
                ..
            }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes all children of a notification path (ISR change, log dir events) at failover.
    pub async fn delete_children(&self, path: &str, epoch_zk_version: i32) -> Result<()> {
        for c in self.get_children_maybe(path).await? {
            match self
                .fenced_multi(
                    epoch_zk_version,
                    vec![ZkOp::Delete {
                        path: format!("{path}/{c}"),
                        version: None,
                    }],
                )
                .await
            {
                Ok(_)
                | Err(FencedError::Op {
                    error: ZkError::NoNode,
                    ..
                }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Failure of a fenced multi-op.
#[derive(Debug)]
pub enum FencedError {
    /// The epoch check failed: another controller was elected since.
    ControllerMoved,
    /// The check passed but an operation failed.
    Op { path: String, error: ZkError },
}

impl From<FencedError> for Error {
    fn from(e: FencedError) -> Self {
        match e {
            FencedError::ControllerMoved => Error::ControllerMoved,
            FencedError::Op { path, error } => Error::zk(path, error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryZk;

    fn reg(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            broker_id: id,
            endpoints: vec![EndPoint {
                listener_name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: None,
            timestamp_ms: 1,
        }
    }

    #[tokio::test]
    async fn broker_registration_sets_data_version_1_and_rejects_duplicates() {
        let mem = MemoryZk::new();
        let zk = KafkaZkClient::from_backend(Arc::new(mem.clone()));
        zk.ensure_persistent_paths().await.unwrap();
        let epoch = zk.register_broker(&reg(1)).await.unwrap();
        let (_, stat) = zk.get_data_maybe("/brokers/ids/1").await.unwrap().unwrap();
        // Kafka: create with null data then setData(version 0) in one multi.
        assert_eq!(stat.version, 1);
        assert_eq!(stat.czxid, epoch);
        // Our own session re-registering is not a conflict.
        assert_eq!(zk.register_broker(&reg(1)).await.unwrap(), epoch);
        // Another live session holding the id is.
        let other = KafkaZkClient::from_backend(Arc::new(mem.new_session()));
        assert!(matches!(
            other.register_broker(&reg(1)).await,
            Err(Error::BrokerIdAlreadyRegistered(1))
        ));
        let all = zk.get_all_brokers().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].broker_epoch, epoch);
    }

    /// A client on `session`, registered as broker `id` (only registered brokers contest).
    async fn registered(session: MemoryZk, id: i32) -> KafkaZkClient {
        let zk = KafkaZkClient::from_backend(Arc::new(session));
        zk.ensure_persistent_paths().await.unwrap();
        zk.register_broker(&reg(id)).await.unwrap();
        zk
    }

    // Kafka (KAFKA-7165): a registration held by another session is reported with that
    // session, so the broker can wait for ZooKeeper to expire it; once it is gone, the
    // registration succeeds with a new broker epoch.
    #[tokio::test]
    async fn a_registration_held_by_an_older_session_names_the_owner_until_it_goes() {
        let mem = MemoryZk::new();
        let old_session = mem.new_session();
        let old = registered(old_session.clone(), 1).await;
        let old_epoch = old.own_registration(1).await.unwrap().unwrap().czxid;
        let fresh = KafkaZkClient::from_backend(Arc::new(mem.new_session()));
        assert_eq!(
            fresh.try_register_broker(&reg(1)).await.unwrap(),
            BrokerRegistrationOutcome::HeldByAnotherSession {
                owner_session: old_session.session_id(),
                czxid: old_epoch
            }
        );
        assert_eq!(fresh.own_registration(1).await.unwrap(), None);
        old_session.expire();
        let BrokerRegistrationOutcome::Registered { broker_epoch } =
            fresh.try_register_broker(&reg(1)).await.unwrap()
        else {
            panic!("the old registration is gone")
        };
        assert!(broker_epoch > old_epoch, "a new broker epoch");
        assert_eq!(
            fresh.own_registration(1).await.unwrap().map(|s| s.czxid),
            Some(broker_epoch)
        );
    }

    // A broker whose current session holds no /brokers/ids/<id> (never registered, or the
    // znode still belongs to its previous session) never creates /controller.
    #[tokio::test]
    async fn a_broker_without_a_registration_of_its_session_never_becomes_controller() {
        let mem = MemoryZk::new();
        let stranded = KafkaZkClient::from_backend(Arc::new(mem.new_session()));
        stranded.ensure_persistent_paths().await.unwrap();
        assert_eq!(
            stranded
                .register_controller_and_increment_epoch(1)
                .await
                .unwrap(),
            ElectionResult::NotRegistered
        );
        // Its id is held by another session (its own previous one, not expired yet).
        let _previous = registered(mem.new_session(), 1).await;
        assert_eq!(
            stranded
                .register_controller_and_increment_epoch(1)
                .await
                .unwrap(),
            ElectionResult::NotRegistered
        );
        assert_eq!(stranded.get_controller_id().await.unwrap(), None);
        assert_eq!(stranded.get_controller_epoch().await.unwrap(), None);
    }

    #[tokio::test]
    async fn election_bumps_epoch_and_second_contender_loses() {
        let mem = MemoryZk::new();
        let a = registered(mem.clone(), 1).await;
        let b = registered(mem.new_session(), 2).await;
        let won = a.register_controller_and_increment_epoch(1).await.unwrap();
        assert_eq!(
            won,
            ElectionResult::Won {
                epoch: 1,
                epoch_zk_version: 1
            }
        );
        assert_eq!(
            b.register_controller_and_increment_epoch(2).await.unwrap(),
            ElectionResult::Lost {
                controller_id: Some(1)
            }
        );
        assert_eq!(a.get_controller_epoch().await.unwrap(), Some((1, 1)));
    }

    #[tokio::test]
    async fn batched_state_writes_fall_back_per_partition_when_one_is_stale() {
        let mem = MemoryZk::new();
        let zk = registered(mem.clone(), 1).await;
        let ElectionResult::Won {
            epoch_zk_version, ..
        } = zk.register_controller_and_increment_epoch(1).await.unwrap()
        else {
            panic!("first contender must win")
        };
        let state = |leader: i32, partition_epoch: i32| LeaderIsrAndControllerEpoch {
            leader_and_isr: LeaderAndIsr {
                leader,
                leader_epoch: 0,
                isr: vec![leader],
                leader_recovery_state: 0,
                partition_epoch,
            },
            controller_epoch: 1,
        };
        // More partitions than one multi-op carries, so several chunks are in flight.
        let n = MULTI_WRITE_CHUNK as i32 * 2 + 5;
        let tps: Vec<TopicPartition> = (0..n).map(|p| TopicPartition::new("t", p)).collect();
        zk.create_recursive("/brokers/topics/t").await.unwrap();
        let created: Vec<_> = tps.iter().map(|tp| (tp.clone(), state(1, 0))).collect();
        let r = zk
            .create_partition_states(&created, epoch_zk_version)
            .await
            .unwrap();
        assert!(r.values().all(|x| x.is_ok()));
        // Every write expects zkVersion 0, but partition 7 is written once before.
        let bump = [(tps[7].clone(), state(2, 0))];
        zk.update_leader_and_isr(&bump, epoch_zk_version)
            .await
            .unwrap();
        let writes: Vec<_> = tps.iter().map(|tp| (tp.clone(), state(3, 0))).collect();
        let out = zk
            .update_leader_and_isr(&writes, epoch_zk_version)
            .await
            .unwrap();
        assert_eq!(out.len(), n as usize);
        for (tp, r) in &out {
            if tp.partition == 7 {
                assert!(matches!(r, UpdateLeaderAndIsrResult::NeedsRetry), "{r:?}");
            } else {
                assert!(
                    matches!(r, UpdateLeaderAndIsrResult::Updated(1)),
                    "{tp:?} {r:?}"
                );
            }
        }
        let states = zk.get_partition_states(&tps).await.unwrap();
        assert_eq!(states[&tps[7]].leader_and_isr.leader, 2);
        assert!(tps
            .iter()
            .filter(|tp| tp.partition != 7)
            .all(|tp| states[tp].leader_and_isr.leader == 3));
    }

    #[tokio::test]
    async fn cluster_id_is_created_once() {
        let zk = KafkaZkClient::from_backend(Arc::new(MemoryZk::new()));
        assert_eq!(zk.get_or_create_cluster_id("abc").await.unwrap(), "abc");
        assert_eq!(zk.get_or_create_cluster_id("xyz").await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn stale_epoch_zk_version_write_fails_with_controller_moved() {
        let mem = MemoryZk::new();
        let old = registered(mem.clone(), 1).await;
        let ElectionResult::Won {
            epoch_zk_version: old_v,
            ..
        } = old
            .register_controller_and_increment_epoch(1)
            .await
            .unwrap()
        else {
            panic!("first contender must win")
        };
        // The old controller's session expires; another broker wins epoch 2.
        mem.expire_session();
        let new = registered(mem.new_session(), 2).await;
        assert!(matches!(
            new.register_controller_and_increment_epoch(2)
                .await
                .unwrap(),
            ElectionResult::Won { epoch: 2, .. }
        ));
        let tp = TopicPartition::new("t", 0);
        let state = LeaderIsrAndControllerEpoch {
            leader_and_isr: LeaderAndIsr {
                leader: 1,
                leader_epoch: 0,
                isr: vec![1],
                leader_recovery_state: 0,
                partition_epoch: 0,
            },
            controller_epoch: 1,
        };
        let r = old
            .create_partition_states(&[(tp.clone(), state)], old_v)
            .await;
        assert!(matches!(r, Err(Error::ControllerMoved)));
        assert!(old.get_partition_states(&[tp]).await.unwrap().is_empty());
    }
}
