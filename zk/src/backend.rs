//! The raw ZooKeeper operations `KafkaZkClient` is built on, behind a trait.
//!
//! Kafka concept: Kafka's `ZooKeeperClient` is the thin layer under `KafkaZkClient` that sends
//! requests and delivers watch notifications. We keep the same split so the controller's logic
//! can run against [`MemoryZk`], an in-memory ZooKeeper, in deterministic unit tests (as raft-rs
//! tests against `MemStorage`), while brokers use [`RealZk`] on top of the `zookeeper-client`
//! crate.
//!
//! Invariant: both implementations give the same answers for the operations used here: NONODE,
//! NODEEXISTS, BADVERSION, NOTEMPTY, atomic multi-ops that either apply fully or report the index
//! of the failing op, a dataVersion starting at 0 and bumped by every set, and a czxid per create.
//!
//! [`MemoryZk`] is one shared tree with many sessions: [`MemoryZk::new_session`] hands out
//! another session (another broker), each with its own session id as the `ephemeral_owner` of
//! the ephemerals it creates. [`MemoryZk::expire`] (and `close`) ends a session as ZooKeeper
//! does: its ephemerals are deleted (firing the watches on them and their parents), the watches
//! that session had set fire with [`WatchKind::Session`], `session_ended` resolves, and every
//! later call on that session fails with `SessionExpired`.
//!
//! A test can also cut a session's connection ([`MemoryZk::disconnect`], or
//! [`MemoryZk::disconnect_on_next_write`] to lose it in the middle of a handler's work): its
//! calls then answer CONNECTIONLOSS, as the real client's do while it looks for another server,
//! until [`MemoryZk::reconnect`]; the session and its ephemerals live on meanwhile.
//!
//! Simplifications: no session timeout (a test ends a session explicitly), a lost connection
//! loses no applied write (the real one may lose the answer of an applied write), and
//! [`MemoryZk::expire_session`], the controller tests' shortcut, only deletes the ephemerals
//! and leaves the session usable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;
use zookeeper_client as zkc;

/// ZooKeeper's error codes, reused as-is.
pub type ZkError = zkc::Error;
pub type ZkResult<T> = std::result::Result<T, ZkError>;

/// The parts of ZooKeeper's `Stat` we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ZkStat {
    /// Creation transaction id: a broker's epoch is its registration's czxid.
    pub czxid: i64,
    /// dataVersion: the value conditional writes are checked against.
    pub version: i32,
    /// Session id owning an ephemeral node, 0 for persistent nodes.
    pub ephemeral_owner: i64,
}

impl From<zkc::Stat> for ZkStat {
    fn from(s: zkc::Stat) -> Self {
        ZkStat {
            czxid: s.czxid,
            version: s.version,
            ephemeral_owner: s.ephemeral_owner,
        }
    }
}

/// A znode's data and stat.
pub type NodeData = (Vec<u8>, ZkStat);

/// Persistent or ephemeral (the only two modes Kafka's znodes use here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    Persistent,
    Ephemeral,
}

/// What fired a one-shot watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Created,
    Deleted,
    DataChanged,
    ChildrenChanged,
    /// A session event (disconnected, expired, closed) ended the watch.
    Session,
}

/// A one-shot watch: resolves once, when the watched change happens.
pub type Watch = BoxFuture<'static, WatchKind>;

/// One operation of a multi-op.
#[derive(Debug, Clone)]
pub enum ZkOp {
    Check {
        path: String,
        version: i32,
    },
    Create {
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    },
    Delete {
        path: String,
        version: Option<i32>,
    },
}

impl ZkOp {
    pub fn path(&self) -> &str {
        match self {
            ZkOp::Check { path, .. }
            | ZkOp::Create { path, .. }
            | ZkOp::SetData { path, .. }
            | ZkOp::Delete { path, .. } => path,
        }
    }
}

/// Result of one operation of a successful multi-op.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZkOpResult {
    Check,
    Create(ZkStat),
    SetData(ZkStat),
    Delete,
}

/// Why a multi-op failed: the index of the first failing op and its error, or the whole request.
#[derive(Debug, Clone)]
pub enum MultiError {
    Op { index: usize, error: ZkError },
    Request(ZkError),
}

/// Raw ZooKeeper operations; paths are relative to the chroot.
pub trait ZkBackend: Send + Sync + 'static {
    fn get_data(&self, path: String) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat)>>;
    fn get_data_and_watch(&self, path: String)
        -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat, Watch)>>;
    /// Existence check that also watches creation, deletion and data changes.
    fn exists_and_watch(&self, path: String) -> BoxFuture<'_, ZkResult<(Option<ZkStat>, Watch)>>;
    /// Reads many nodes at once (ZooKeeper 3.6+ multi-read); one result per path, in order.
    fn get_data_many(&self, paths: Vec<String>)
        -> BoxFuture<'_, ZkResult<Vec<ZkResult<NodeData>>>>;
    fn get_children(&self, path: String) -> BoxFuture<'_, ZkResult<Vec<String>>>;
    fn get_children_and_watch(&self, path: String)
        -> BoxFuture<'_, ZkResult<(Vec<String>, Watch)>>;
    fn create(
        &self,
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    ) -> BoxFuture<'_, ZkResult<ZkStat>>;
    fn set_data(
        &self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    ) -> BoxFuture<'_, ZkResult<ZkStat>>;
    fn delete(&self, path: String, version: Option<i32>) -> BoxFuture<'_, ZkResult<()>>;
    fn multi(&self, ops: Vec<ZkOp>) -> BoxFuture<'_, Result<Vec<ZkOpResult>, MultiError>>;
    /// This client's session id (owner of its ephemerals).
    fn session_id(&self) -> i64;
    fn close(&self) -> BoxFuture<'_, ()>;
    /// Resolves when this session has ended for good (expired, closed, auth failed).
    fn session_ended(&self) -> BoxFuture<'static, ()>;
    /// Waits until the session is connected to a server (Kafka's
    /// `ZooKeeperClient.waitUntilConnected`, without a time limit): at once when it is; an
    /// error once the session has ended. What [`crate::retry::UntilConnected`] waits on
    /// between a CONNECTIONLOSS and sending the request again.
    fn wait_until_connected(&self) -> BoxFuture<'_, ZkResult<()>>;
    /// True for a backend that already sends requests again after a lost connection
    /// ([`crate::retry::UntilConnected`]), so that it is not wrapped twice.
    fn retries_until_connected(&self) -> bool {
        false
    }
}

pub use crate::real::RealZk;

#[derive(Debug, Clone)]
struct MemNode {
    data: Vec<u8>,
    stat: ZkStat,
}

#[derive(Default)]
struct MemState {
    nodes: BTreeMap<String, MemNode>,
    zxid: i64,
    /// (path, is_child_watch, session that set it, sender)
    watches: Vec<(String, bool, i64, oneshot::Sender<WatchKind>)>,
    /// Sessions ended by `expire` or `close`: their calls fail with `SessionExpired`.
    ended: std::collections::BTreeSet<i64>,
    /// Who waits in `session_ended`, by session.
    end_waiters: Vec<(i64, oneshot::Sender<()>)>,
    /// Sessions whose connection is lost (a test's fault): their calls answer CONNECTIONLOSS
    /// until [`MemoryZk::reconnect`].
    disconnected: std::collections::BTreeSet<i64>,
    /// Sessions that lose their connection at their next write, before it is applied.
    disconnect_on_write: std::collections::BTreeSet<i64>,
    /// Who waits in `wait_until_connected`, by session (woken by a reconnection or the end).
    connect_waiters: Vec<(i64, oneshot::Sender<()>)>,
}

/// An in-memory ZooKeeper for unit tests: one shared tree, many sessions.
#[derive(Clone)]
pub struct MemoryZk {
    state: Arc<Mutex<MemState>>,
    session: i64,
}

impl Default for MemoryZk {
    fn default() -> Self {
        Self::new()
    }
}

fn parent_of(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    if i == 0 {
        if path.len() > 1 {
            Some("/")
        } else {
            None
        }
    } else {
        Some(&path[..i])
    }
}

impl MemState {
    fn fire(&mut self, path: &str, child: bool, kind: WatchKind) {
        let (fired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.watches)
            .into_iter()
            .partition(|(p, c, _, _)| p == path && *c == child);
        self.watches = kept;
        for (_, _, _, tx) in fired {
            let _ = tx.send(kind);
        }
    }

    fn watch(&mut self, path: &str, child: bool, session: i64) -> Watch {
        let (tx, rx) = oneshot::channel();
        self.watches.push((path.to_string(), child, session, tx));
        async move { rx.await.unwrap_or(WatchKind::Session) }.boxed()
    }

    fn children(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        self.nodes
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect()
    }

    fn check_op(&self, op: &ZkOp) -> ZkResult<()> {
        match op {
            ZkOp::Check { path, version } => match self.nodes.get(path) {
                None => Err(ZkError::NoNode),
                Some(n) if *version >= 0 && n.stat.version != *version => Err(ZkError::BadVersion),
                Some(_) => Ok(()),
            },
            ZkOp::Create { path, .. } => {
                if self.nodes.contains_key(path) {
                    return Err(ZkError::NodeExists);
                }
                match parent_of(path) {
                    Some("/") => Ok(()),
                    Some(p) => match self.nodes.get(p) {
                        None => Err(ZkError::NoNode),
                        Some(n) if n.stat.ephemeral_owner != 0 => {
                            Err(ZkError::NoChildrenForEphemerals)
                        }
                        Some(_) => Ok(()),
                    },
                    None => Err(ZkError::BadArguments(&"bad path")),
                }
            }
            ZkOp::SetData { path, version, .. } => match self.nodes.get(path) {
                None => Err(ZkError::NoNode),
                Some(n) if version.is_some_and(|v| v != n.stat.version) => Err(ZkError::BadVersion),
                Some(_) => Ok(()),
            },
            ZkOp::Delete { path, version } => match self.nodes.get(path) {
                None => Err(ZkError::NoNode),
                Some(n) if version.is_some_and(|v| v != n.stat.version) => Err(ZkError::BadVersion),
                Some(_) if !self.children(path).is_empty() => Err(ZkError::NotEmpty),
                Some(_) => Ok(()),
            },
        }
    }

    fn apply(&mut self, op: ZkOp, session: i64) -> ZkOpResult {
        match op {
            ZkOp::Check { .. } => ZkOpResult::Check,
            ZkOp::Create { path, data, mode } => {
                self.zxid += 1;
                let stat = ZkStat {
                    czxid: self.zxid,
                    version: 0,
                    ephemeral_owner: if mode == NodeMode::Ephemeral {
                        session
                    } else {
                        0
                    },
                };
                self.nodes.insert(path.clone(), MemNode { data, stat });
                self.fire(&path, false, WatchKind::Created);
                if let Some(p) = parent_of(&path) {
                    self.fire(p, true, WatchKind::ChildrenChanged);
                }
                ZkOpResult::Create(stat)
            }
            ZkOp::SetData { path, data, .. } => {
                self.zxid += 1;
                let n = self.nodes.get_mut(&path).expect("checked before apply");
                n.data = data;
                n.stat.version += 1;
                let stat = n.stat;
                self.fire(&path, false, WatchKind::DataChanged);
                ZkOpResult::SetData(stat)
            }
            ZkOp::Delete { path, .. } => {
                self.zxid += 1;
                self.nodes.remove(&path);
                self.fire(&path, false, WatchKind::Deleted);
                self.fire(&path, true, WatchKind::Deleted);
                if let Some(p) = parent_of(&path) {
                    self.fire(p, true, WatchKind::ChildrenChanged);
                }
                ZkOpResult::Delete
            }
        }
    }
}

impl MemoryZk {
    pub fn new() -> Self {
        MemoryZk {
            state: Arc::new(Mutex::new(MemState::default())),
            session: 1,
        }
    }

    /// Another session on the same tree (another broker).
    pub fn new_session(&self) -> MemoryZk {
        let mut s = self.lock();
        s.zxid += 1;
        MemoryZk {
            state: self.state.clone(),
            session: 1000 + s.zxid,
        }
    }

    /// Deletes this session's ephemeral nodes but leaves the session usable (the controller
    /// tests' shortcut for a broker's death; [`MemoryZk::expire`] is the whole expiry).
    pub fn expire_session(&self) {
        let mut s = self.lock();
        Self::delete_ephemerals(&mut s, self.session);
    }

    /// Ends this session as ZooKeeper expires one: its ephemerals are deleted (their watches
    /// and their parents' child watches fire), the watches it had set fire with
    /// [`WatchKind::Session`], `session_ended` resolves, and later calls fail with
    /// `SessionExpired`. Other sessions on the tree are untouched.
    pub fn expire(&self) {
        let mut s = self.lock();
        if !s.ended.insert(self.session) {
            return;
        }
        Self::delete_ephemerals(&mut s, self.session);
        let session = self.session;
        let (mine, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.watches)
            .into_iter()
            .partition(|(_, _, owner, _)| *owner == session);
        s.watches = kept;
        for (_, _, _, tx) in mine {
            let _ = tx.send(WatchKind::Session);
        }
        let (waiters, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.end_waiters)
            .into_iter()
            .partition(|(owner, _)| *owner == session);
        s.end_waiters = kept;
        for (_, tx) in waiters {
            let _ = tx.send(());
        }
        Self::wake_connect_waiters(&mut s, session);
    }

    /// Cuts this session's connection: its calls answer CONNECTIONLOSS (applying nothing) until
    /// [`MemoryZk::reconnect`]. The session, its ephemerals and its watches live on.
    pub fn disconnect(&self) {
        self.lock().disconnected.insert(self.session);
    }

    /// Lets this session's reads through but cuts its connection at its next write (create,
    /// set, delete or multi), which is not applied: a handler loses ZooKeeper in the middle of
    /// its work, after it read what it decided on.
    pub fn disconnect_on_next_write(&self) {
        self.lock().disconnect_on_write.insert(self.session);
    }

    /// Gives this session its connection back and wakes whoever waits for it.
    pub fn reconnect(&self) {
        let mut s = self.lock();
        s.disconnected.remove(&self.session);
        s.disconnect_on_write.remove(&self.session);
        Self::wake_connect_waiters(&mut s, self.session);
    }

    /// Whether this session's connection is cut.
    pub fn is_disconnected(&self) -> bool {
        self.lock().disconnected.contains(&self.session)
    }

    fn wake_connect_waiters(s: &mut MemState, session: i64) {
        let (waiters, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut s.connect_waiters)
            .into_iter()
            .partition(|(owner, _)| *owner == session);
        s.connect_waiters = kept;
        for (_, tx) in waiters {
            let _ = tx.send(());
        }
    }

    /// Whether [`MemoryZk::expire`] or `close` has ended this session.
    pub fn is_expired(&self) -> bool {
        self.lock().ended.contains(&self.session)
    }

    fn delete_ephemerals(s: &mut MemState, session: i64) {
        let owned: Vec<String> = s
            .nodes
            .iter()
            .filter(|(_, n)| n.stat.ephemeral_owner == session)
            .map(|(p, _)| p.clone())
            .collect();
        for p in owned {
            s.apply(
                ZkOp::Delete {
                    path: p,
                    version: None,
                },
                session,
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A poisoned lock only means a test panicked; the tree is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tree, if this session is still alive and connected.
    fn live(&self) -> ZkResult<std::sync::MutexGuard<'_, MemState>> {
        let s = self.lock();
        if s.ended.contains(&self.session) {
            return Err(ZkError::SessionExpired);
        }
        if s.disconnected.contains(&self.session) {
            return Err(ZkError::ConnectionLoss);
        }
        Ok(s)
    }

    /// The tree for a write: as [`MemoryZk::live`], and the write that
    /// [`MemoryZk::disconnect_on_next_write`] waits for cuts the connection instead.
    fn live_for_write(&self) -> ZkResult<std::sync::MutexGuard<'_, MemState>> {
        let mut s = self.live()?;
        if s.disconnect_on_write.remove(&self.session) {
            s.disconnected.insert(self.session);
            return Err(ZkError::ConnectionLoss);
        }
        Ok(s)
    }

    fn run_one(&self, op: ZkOp) -> ZkResult<ZkOpResult> {
        let mut s = self.live_for_write()?;
        s.check_op(&op)?;
        Ok(s.apply(op, self.session))
    }
}

impl ZkBackend for MemoryZk {
    fn get_data(&self, path: String) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat)>> {
        let r = self.live().and_then(|s| {
            s.nodes
                .get(&path)
                .map(|n| (n.data.clone(), n.stat))
                .ok_or(ZkError::NoNode)
        });
        async move { r }.boxed()
    }
    fn get_data_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat, Watch)>> {
        let r = self.live().and_then(|mut s| {
            match s.nodes.get(&path).map(|n| (n.data.clone(), n.stat)) {
                Some((d, st)) => Ok((d, st, s.watch(&path, false, self.session))),
                None => Err(ZkError::NoNode),
            }
        });
        async move { r }.boxed()
    }
    fn exists_and_watch(&self, path: String) -> BoxFuture<'_, ZkResult<(Option<ZkStat>, Watch)>> {
        let r = self.live().map(|mut s| {
            let stat = s.nodes.get(&path).map(|n| n.stat);
            (stat, s.watch(&path, false, self.session))
        });
        async move { r }.boxed()
    }
    fn get_data_many(
        &self,
        paths: Vec<String>,
    ) -> BoxFuture<'_, ZkResult<Vec<ZkResult<NodeData>>>> {
        let r = self.live().map(|s| {
            paths
                .iter()
                .map(|p| {
                    s.nodes
                        .get(p)
                        .map(|n| (n.data.clone(), n.stat))
                        .ok_or(ZkError::NoNode)
                })
                .collect()
        });
        async move { r }.boxed()
    }
    fn get_children(&self, path: String) -> BoxFuture<'_, ZkResult<Vec<String>>> {
        let r = self.live().and_then(|s| {
            if s.nodes.contains_key(&path) {
                Ok(s.children(&path))
            } else {
                Err(ZkError::NoNode)
            }
        });
        async move { r }.boxed()
    }
    fn get_children_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<String>, Watch)>> {
        let r = self.live().and_then(|mut s| {
            if s.nodes.contains_key(&path) {
                let c = s.children(&path);
                Ok((c, s.watch(&path, true, self.session)))
            } else {
                Err(ZkError::NoNode)
            }
        });
        async move { r }.boxed()
    }
    fn create(
        &self,
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        let r = self
            .run_one(ZkOp::Create { path, data, mode })
            .map(|r| match r {
                ZkOpResult::Create(s) => s,
                _ => ZkStat::default(),
            });
        async move { r }.boxed()
    }
    fn set_data(
        &self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        let r = self
            .run_one(ZkOp::SetData {
                path,
                data,
                version,
            })
            .map(|r| match r {
                ZkOpResult::SetData(s) => s,
                _ => ZkStat::default(),
            });
        async move { r }.boxed()
    }
    fn delete(&self, path: String, version: Option<i32>) -> BoxFuture<'_, ZkResult<()>> {
        let r = self.run_one(ZkOp::Delete { path, version }).map(|_| ());
        async move { r }.boxed()
    }
    fn multi(&self, ops: Vec<ZkOp>) -> BoxFuture<'_, Result<Vec<ZkOpResult>, MultiError>> {
        let mut s = match self.live_for_write() {
            Ok(s) => s,
            Err(e) => return async move { Err(MultiError::Request(e)) }.boxed(),
        };
        // Check every op against the tree as it would be after the previous ops: apply to a copy.
        let saved_nodes = s.nodes.clone();
        let saved_zxid = s.zxid;
        let saved_watches = std::mem::take(&mut s.watches);
        let mut results = Vec::new();
        let mut failed = None;
        for (index, op) in ops.iter().enumerate() {
            if let Err(error) = s.check_op(op) {
                failed = Some(MultiError::Op { index, error });
                break;
            }
            results.push(s.apply(op.clone(), self.session));
        }
        // Watches must not fire for a rolled-back multi: they were set aside above.
        s.watches = saved_watches;
        let r = match failed {
            Some(e) => {
                s.nodes = saved_nodes;
                s.zxid = saved_zxid;
                Err(e)
            }
            None => {
                // Replay on the real tree so watches fire for the committed changes.
                s.nodes = saved_nodes;
                s.zxid = saved_zxid;
                let session = self.session;
                Ok(ops.into_iter().map(|op| s.apply(op, session)).collect())
            }
        };
        drop(results);
        async move { r }.boxed()
    }
    fn session_id(&self) -> i64 {
        self.session
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.expire();
        async {}.boxed()
    }
    fn session_ended(&self) -> BoxFuture<'static, ()> {
        // No session timeouts here: a session ends when a test calls `expire` or `close`.
        let mut s = self.lock();
        if s.ended.contains(&self.session) {
            return async {}.boxed();
        }
        let (tx, rx) = oneshot::channel();
        s.end_waiters.push((self.session, tx));
        async move {
            if rx.await.is_err() {
                // The tree was dropped: the session can never end.
                futures::future::pending::<()>().await;
            }
        }
        .boxed()
    }
    fn wait_until_connected(&self) -> BoxFuture<'_, ZkResult<()>> {
        async move {
            loop {
                let rx = {
                    let mut s = self.lock();
                    if s.ended.contains(&self.session) {
                        return Err(ZkError::SessionExpired);
                    }
                    if !s.disconnected.contains(&self.session) {
                        return Ok(());
                    }
                    let (tx, rx) = oneshot::channel();
                    s.connect_waiters.push((self.session, tx));
                    rx
                };
                if rx.await.is_err() {
                    // The tree was dropped: nobody will ever reconnect this session.
                    futures::future::pending::<()>().await;
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ZooKeeper: a session's expiry deletes its ephemerals, and only its own.
    #[tokio::test]
    async fn expiring_a_session_deletes_its_ephemerals_and_no_others() {
        let a = MemoryZk::new();
        let b = a.new_session();
        a.create("/a".into(), vec![], NodeMode::Ephemeral)
            .await
            .unwrap();
        let stat = b
            .create("/b".into(), vec![], NodeMode::Ephemeral)
            .await
            .unwrap();
        assert_eq!(stat.ephemeral_owner, b.session_id());
        a.expire();
        assert!(a.is_expired() && !b.is_expired());
        assert!(matches!(
            b.get_data("/a".into()).await,
            Err(ZkError::NoNode)
        ));
        assert!(b.get_data("/b".into()).await.is_ok());
    }

    // ZooKeeper: an expired session's handle answers SESSIONEXPIRED to every call, its watches
    // end with a session event, and another session's watch sees the ephemeral deleted.
    #[tokio::test]
    async fn an_expired_session_fails_its_calls_and_ends_its_watches() {
        let a = MemoryZk::new();
        let b = a.new_session();
        a.create("/e".into(), vec![], NodeMode::Ephemeral)
            .await
            .unwrap();
        let (_, own) = a.exists_and_watch("/x".into()).await.unwrap();
        let (_, other) = b.exists_and_watch("/e".into()).await.unwrap();
        let ended = a.session_ended();
        a.expire();
        assert_eq!(own.await, WatchKind::Session);
        assert_eq!(other.await, WatchKind::Deleted);
        ended.await;
        assert!(matches!(
            a.get_data("/".into()).await,
            Err(ZkError::SessionExpired)
        ));
        assert!(matches!(
            a.create("/y".into(), vec![], NodeMode::Persistent).await,
            Err(ZkError::SessionExpired)
        ));
        assert!(matches!(
            a.multi(vec![]).await,
            Err(MultiError::Request(ZkError::SessionExpired))
        ));
        // A closed session has ended too.
        b.close().await;
        b.session_ended().await;
    }

    // The controller tests' shortcut keeps the session usable.
    #[tokio::test]
    async fn expire_session_deletes_ephemerals_but_keeps_the_session() {
        let a = MemoryZk::new();
        a.create("/e".into(), vec![], NodeMode::Ephemeral)
            .await
            .unwrap();
        a.expire_session();
        assert!(!a.is_expired());
        assert!(matches!(
            a.get_data("/e".into()).await,
            Err(ZkError::NoNode)
        ));
    }
}
