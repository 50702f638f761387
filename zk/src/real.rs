//! The real ZooKeeper backend: a `zookeeper-client` session that only ZooKeeper can expire.
//!
//! Kafka concept: Kafka's `ZooKeeperClient` sits on ZooKeeper's Java client, whose `ClientCnxn`
//! keeps reconnecting with the session id and password after a connection loss, for as long
//! as it takes, until a server either accepts the session again or answers SESSION_EXPIRED.
//! Only then does `ZooKeeperClient` see `Expired` and `reinitialize` (a new session, a new
//! broker registration). Watches survive a reconnection: the Java client re-sends them with
//! `setWatches(lastZxid)` and the server fires at once those whose znode changed meanwhile.
//!
//! Why this file exists: `zookeeper-client` 0.11 gives up on a session by itself. When it has
//! heard nothing for 7/5 of the negotiated session timeout (its `session_expired_timeout`, see
//! `Session::start` in the crate) it moves to the terminal `Expired` state, although the
//! ensemble may still hold the session: the server's clock starts at its own last contact, and
//! a cut that heals just before the timeout leaves the client still busy with a connection
//! attempt that only times out later. Its watches end with that state and the `Client` is
//! dead for good. A broker that believed it would resign, open a new session and race its
//! own old `/brokers/ids/<id>` (issue 22).
//!
//! What we do instead, with the crate's own `Connector::with_session`: a supervisor task
//! waits for the crate's terminal state; unless we closed the session ourselves it reconnects
//! with the same session id and password until a server answers. If the session is accepted,
//! the new `Client` replaces the old one (same session id, so the same ephemerals and broker
//! epoch), and every watch armed on the old `Client` is re-armed on the new one, firing at once
//! if its znode changed in between (compared by the zxids in the znode's `Stat`, which is what
//! ZooKeeper's `setWatches` compares). Only an answer of SESSION_EXPIRED ends the session: then
//! [`ZkBackend::session_ended`] resolves and the watches fire [`WatchKind::Session`].
//!
//! Invariant: [`ZkBackend::session_ended`] resolves only when ZooKeeper expired the session,
//! when we closed it, or on an authentication failure; never on the client's own timer.
//! While the session is being resumed every call fails fast with CONNECTIONLOSS (not
//! SESSIONEXPIRED), as the Java client's calls do while it is disconnected; callers retry.
//!
//! Simplifications, said plainly: a watch is re-armed by reading its znode again (a second
//! round trip per watch after a resumption) rather than by one `setWatches` request; a
//! resumed session is `sync`ed once but carries no last-seen zxid, so a server that lags the
//! one we last talked to may answer reads a little behind until the `sync` completes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::watch;
use tracing::{debug, info, warn, Instrument};
use zookeeper_client as zkc;

use crate::backend::{
    MultiError, NodeData, NodeMode, Watch, WatchKind, ZkBackend, ZkError, ZkOp, ZkOpResult,
    ZkResult, ZkStat,
};

/// Longest pause between two attempts to resume a session (each attempt itself waits up to
/// 7/5 of the session timeout for a server, so this only spaces out refused connections).
const MAX_RESUME_BACKOFF: Duration = Duration::from_secs(1);

/// Where a session stands, as its supervisor publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionStatus {
    /// A `Client` of the session is in use (connected, or reconnecting inside the crate).
    /// `generation` counts the `Client`s the session has had: 0, then one more per resumption.
    Live { generation: u64 },
    /// The crate gave up; we are reconnecting with the session id and password.
    Resuming,
    /// ZooKeeper expired the session, we closed it, or authentication failed: for good.
    Ended,
}

/// What is needed to reconnect: the servers, the chroot and the requested session timeout.
#[derive(Debug, Clone)]
pub struct ConnectTarget {
    pub hosts: String,
    pub chroot: Option<String>,
    pub session_timeout: Duration,
}

/// One ZooKeeper session, shared by the backend, its watches (weakly) and its supervisor
/// (weakly: dropping the backend drops the last `Client`, which closes the session).
struct RealSession {
    /// The session's current `Client` and its generation; `None` once closed.
    client: RwLock<Option<(zkc::Client, u64)>>,
    /// The session id (unchanged across resumptions: that is the point).
    session_id: i64,
    /// Published by the supervisor (and by `close`).
    status: watch::Sender<SessionStatus>,
    /// Set by `close` before it drops the client, so the supervisor does not resume.
    closed: AtomicBool,
}

impl RealSession {
    fn current(&self) -> Option<(zkc::Client, u64)> {
        self.client
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn end(&self, why: &str) {
        if *self.status.borrow() != SessionStatus::Ended {
            info!(
                session_id = %hex(self.session_id),
                reason = why,
                "ZooKeeper session ended"
            );
        }
        self.status.send_replace(SessionStatus::Ended);
    }
}

fn hex(session_id: i64) -> String {
    format!("0x{session_id:x}")
}

/// The real thing: a `zookeeper_client::Client` session (already chrooted) that is resumed
/// after the crate's own time-out, until ZooKeeper itself expires it.
pub struct RealZk {
    session: Arc<RealSession>,
}

impl RealZk {
    /// Connects a new session to `target` (creating the chroot if missing, as Kafka's
    /// `KafkaZkClient.createChroot` does) and starts its supervisor. Needs a tokio runtime.
    pub async fn connect(target: ConnectTarget) -> ZkResult<RealZk> {
        let client = zkc::Client::connector()
            .with_session_timeout(target.session_timeout)
            .connect(&target.hosts)
            .await?;
        let client = match &target.chroot {
            None => client,
            Some(root) => {
                let opts = zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all());
                client.mkdir(root, &opts).await?;
                client
                    .chroot(root.clone())
                    .map_err(|_| ZkError::BadArguments(&"bad chroot"))?
            }
        };
        Ok(Self::start(client, target))
    }

    /// Wraps a connected (and chrooted) `Client` and starts the supervisor that resumes its
    /// session against `target` whenever the crate gives up on it.
    pub fn start(client: zkc::Client, target: ConnectTarget) -> RealZk {
        let session_id = client.session_id().0;
        let state = client.state_watcher();
        let info = client.session().clone();
        let session = Arc::new(RealSession {
            client: RwLock::new(Some((client, 0))),
            session_id,
            status: watch::channel(SessionStatus::Live { generation: 0 }).0,
            closed: AtomicBool::new(false),
        });
        // In the caller's span (the broker's `broker{broker_id}`), so its lines name the broker.
        tokio::spawn(supervise(Arc::downgrade(&session), state, info, target).in_current_span());
        RealZk { session }
    }

    /// The current `Client` and its generation. Fails fast while the session is being resumed
    /// (CONNECTIONLOSS) or once it has ended.
    fn client(&self) -> ZkResult<(zkc::Client, u64)> {
        match *self.session.status.borrow() {
            SessionStatus::Live { .. } => {}
            SessionStatus::Resuming => return Err(ZkError::ConnectionLoss),
            SessionStatus::Ended => return Err(ZkError::SessionExpired),
        }
        self.session.current().ok_or(ZkError::ClientClosed)
    }

    /// A call that failed because the crate's `Client` died under it is a connection loss as
    /// long as the session itself lives on (it is being resumed). So is one failed with the
    /// transport's own error: the crate answers the requests in flight on a connection it drops
    /// with the reason it dropped it ("no response from connection in 2400ms", an I/O error),
    /// where ZooKeeper's Java client answers CONNECTIONLOSS; the session goes on elsewhere.
    fn fix(&self, e: ZkError) -> ZkError {
        let lives = *self.session.status.borrow() != SessionStatus::Ended;
        match e {
            ZkError::SessionExpired | ZkError::ClientClosed | ZkError::Custom(_) if lives => {
                ZkError::ConnectionLoss
            }
            e => e,
        }
    }

    fn watch(&self, generation: u64, w: zkc::OneshotWatcher, rearm: Rearm) -> Watch {
        real_watch(Arc::downgrade(&self.session), generation, w, rearm)
    }
}

/// The supervisor: waits for the crate to give up on the session, then resumes it with the
/// same id and password until a server accepts it (a new `Client`, the next generation) or
/// answers SESSION_EXPIRED (the end). Holds the session only weakly.
async fn supervise(
    session: Weak<RealSession>,
    mut state: zkc::StateWatcher,
    mut info: zkc::SessionInfo,
    target: ConnectTarget,
) {
    let mut generation = 0u64;
    loop {
        let mut st = state.peek_state();
        while !st.is_terminated() {
            st = state.changed().await;
        }
        let Some(s) = session.upgrade() else { return };
        if s.closed.load(Ordering::SeqCst) {
            s.end("closed");
            return;
        }
        if st == zkc::SessionState::AuthFailed {
            s.end("authentication failed");
            return;
        }
        s.status.send_replace(SessionStatus::Resuming);
        warn!(
            session_id = %hex(s.session_id),
            client_state = %st,
            "the ZooKeeper client gave up on its session by its own timer; reconnecting with the \
             same session until the ensemble accepts it or answers that it expired"
        );
        drop(s);
        let mut backoff = Duration::from_millis(50);
        let resumed = loop {
            let attempt = zkc::Client::connector()
                .with_session(info.clone())
                .with_session_timeout(target.session_timeout)
                .connect(&target.hosts)
                .await;
            let Some(s) = session.upgrade() else { return };
            if s.closed.load(Ordering::SeqCst) {
                s.end("closed");
                return;
            }
            match attempt {
                Ok(client) => break client,
                Err(zkc::Error::SessionExpired) => {
                    s.end("expired by ZooKeeper");
                    return;
                }
                Err(zkc::Error::AuthFailed) => {
                    s.end("authentication failed");
                    return;
                }
                Err(e) => {
                    debug!(session_id = %hex(s.session_id), error = %e,
                        "could not reach ZooKeeper to resume the session yet; retrying");
                }
            }
            drop(s);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_RESUME_BACKOFF);
        };
        let client = match &target.chroot {
            None => resumed,
            Some(root) => match resumed.chroot(root.clone()) {
                Ok(c) => c,
                Err(_) => {
                    if let Some(s) = session.upgrade() {
                        s.end("bad chroot");
                    }
                    return;
                }
            },
        };
        // A server that lags the one we last talked to catches up before we read (the crate
        // does not carry our last-seen zxid into a resumed session).
        if let Err(e) = client.sync("/").await {
            debug!(error = %e, "sync after resuming the ZooKeeper session failed");
        }
        let Some(s) = session.upgrade() else { return };
        if s.closed.load(Ordering::SeqCst) {
            s.end("closed");
            return;
        }
        generation += 1;
        state = client.state_watcher();
        info = client.session().clone();
        *s.client.write().unwrap_or_else(|e| e.into_inner()) = Some((client, generation));
        s.status.send_replace(SessionStatus::Live { generation });
        info!(
            session_id = %hex(s.session_id),
            generation,
            "resumed the ZooKeeper session: the ensemble still held it (ephemeral znodes and \
             broker epoch unchanged)"
        );
    }
}

/// How to arm a watch again on a resumed session, with what the znode looked like when the
/// watch was armed (the zxids ZooKeeper's `setWatches` would compare).
enum Rearm {
    /// `get_data_and_watch`: fires if the znode was deleted or changed (mzxid) or recreated.
    Data {
        path: String,
        czxid: i64,
        mzxid: i64,
    },
    /// `exists_and_watch`: fires if the znode appeared, vanished, or changed.
    Exists {
        path: String,
        seen: Option<(i64, i64)>,
    },
    /// `get_children_and_watch`: fires if the znode vanished or its children changed (pzxid).
    Children {
        path: String,
        czxid: i64,
        pzxid: i64,
    },
}

/// A re-armed watch: it already fired, or it watches again on the new `Client`.
enum Rearmed {
    Fired(WatchKind),
    Watching(zkc::OneshotWatcher),
}

impl Rearm {
    async fn arm(&mut self, c: &zkc::Client) -> ZkResult<Rearmed> {
        match self {
            Rearm::Data { path, czxid, mzxid } => match c.get_and_watch_data(path).await {
                Ok((_, st, w)) if st.czxid == *czxid && st.mzxid == *mzxid => {
                    Ok(Rearmed::Watching(w))
                }
                Ok(_) => Ok(Rearmed::Fired(WatchKind::DataChanged)),
                Err(ZkError::NoNode) => Ok(Rearmed::Fired(WatchKind::Deleted)),
                Err(e) => Err(e),
            },
            Rearm::Exists { path, seen } => {
                let (st, w) = c.check_and_watch_stat(path).await?;
                match (*seen, st) {
                    (None, None) => Ok(Rearmed::Watching(w)),
                    (None, Some(_)) => Ok(Rearmed::Fired(WatchKind::Created)),
                    (Some(_), None) => Ok(Rearmed::Fired(WatchKind::Deleted)),
                    (Some((cz, mz)), Some(st)) if st.czxid == cz && st.mzxid == mz => {
                        Ok(Rearmed::Watching(w))
                    }
                    (Some(_), Some(_)) => Ok(Rearmed::Fired(WatchKind::DataChanged)),
                }
            }
            Rearm::Children { path, czxid, pzxid } => match c.get_and_watch_children(path).await {
                Ok((_, st, w)) if st.czxid == *czxid && st.pzxid == *pzxid => {
                    Ok(Rearmed::Watching(w))
                }
                Ok(_) => Ok(Rearmed::Fired(WatchKind::ChildrenChanged)),
                Err(ZkError::NoNode) => Ok(Rearmed::Fired(WatchKind::Deleted)),
                Err(e) => Err(e),
            },
        }
    }
}

fn kind_of(event: &zkc::WatchedEvent) -> WatchKind {
    match event.event_type {
        zkc::EventType::NodeCreated => WatchKind::Created,
        zkc::EventType::NodeDeleted => WatchKind::Deleted,
        zkc::EventType::NodeDataChanged => WatchKind::DataChanged,
        zkc::EventType::NodeChildrenChanged => WatchKind::ChildrenChanged,
        _ => WatchKind::Session,
    }
}

/// A watch that outlives the crate's `Client`: a session event re-arms it on the resumed
/// session, and only the session's end fires it as [`WatchKind::Session`].
fn real_watch(
    session: Weak<RealSession>,
    mut generation: u64,
    mut w: zkc::OneshotWatcher,
    mut rearm: Rearm,
) -> Watch {
    async move {
        loop {
            let kind = kind_of(&w.changed().await);
            if kind != WatchKind::Session {
                return kind;
            }
            match rearm_after_resumption(&session, generation, &mut rearm).await {
                Some((Rearmed::Fired(kind), _)) => return kind,
                Some((Rearmed::Watching(next), g)) => {
                    w = next;
                    generation = g;
                }
                None => return WatchKind::Session,
            }
        }
    }
    .boxed()
}

/// Waits until the session has a `Client` newer than `generation` and re-arms the watch on
/// it; `None` when the session ended instead.
async fn rearm_after_resumption(
    session: &Weak<RealSession>,
    generation: u64,
    rearm: &mut Rearm,
) -> Option<(Rearmed, u64)> {
    loop {
        let s = session.upgrade()?;
        let mut status = s.status.subscribe();
        let current = *status.borrow_and_update();
        let ready = match current {
            SessionStatus::Ended => return None,
            SessionStatus::Live { generation: g } if g > generation => s.current(),
            _ => None,
        };
        drop(s);
        let Some((client, g)) = ready else {
            // Not resumed yet: wait for the supervisor (or the end of the session).
            status.changed().await.ok()?;
            continue;
        };
        match rearm.arm(&client).await {
            Ok(r) => return Some((r, g)),
            // The resumed connection dropped again, or a call raced the next resumption.
            Err(e) => {
                debug!(error = %e, "could not re-arm a watch on the resumed session; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn acl_mode(mode: NodeMode) -> zkc::CreateOptions<'static> {
    match mode {
        NodeMode::Persistent => zkc::CreateMode::Persistent.with_acls(zkc::Acls::anyone_all()),
        NodeMode::Ephemeral => zkc::CreateMode::Ephemeral.with_acls(zkc::Acls::anyone_all()),
    }
}

impl ZkBackend for RealZk {
    fn get_data(&self, path: String) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat)>> {
        async move {
            let (c, _) = self.client()?;
            let (d, s) = c.get_data(&path).await.map_err(|e| self.fix(e))?;
            Ok((d, s.into()))
        }
        .boxed()
    }
    fn get_data_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat, Watch)>> {
        async move {
            let (c, g) = self.client()?;
            let (d, s, w) = c.get_and_watch_data(&path).await.map_err(|e| self.fix(e))?;
            let rearm = Rearm::Data {
                path,
                czxid: s.czxid,
                mzxid: s.mzxid,
            };
            Ok((d, s.into(), self.watch(g, w, rearm)))
        }
        .boxed()
    }
    fn exists_and_watch(&self, path: String) -> BoxFuture<'_, ZkResult<(Option<ZkStat>, Watch)>> {
        async move {
            let (c, g) = self.client()?;
            let (s, w) = c
                .check_and_watch_stat(&path)
                .await
                .map_err(|e| self.fix(e))?;
            let rearm = Rearm::Exists {
                path,
                seen: s.as_ref().map(|s| (s.czxid, s.mzxid)),
            };
            Ok((s.map(Into::into), self.watch(g, w, rearm)))
        }
        .boxed()
    }
    fn get_data_many(
        &self,
        paths: Vec<String>,
    ) -> BoxFuture<'_, ZkResult<Vec<ZkResult<NodeData>>>> {
        async move {
            let (c, _) = self.client()?;
            let mut r = c.new_multi_reader();
            for p in &paths {
                r.add_get_data(p)?;
            }
            let results = r.commit().await.map_err(|e| self.fix(e))?;
            Ok(results
                .into_iter()
                .map(|x| match x {
                    zkc::MultiReadResult::Data { data, stat } => Ok((data, stat.into())),
                    zkc::MultiReadResult::Error { err } => Err(err),
                    _ => Err(ZkError::UnexpectedError("children in a data read".into())),
                })
                .collect())
        }
        .boxed()
    }
    fn get_children(&self, path: String) -> BoxFuture<'_, ZkResult<Vec<String>>> {
        async move {
            let (c, _) = self.client()?;
            c.list_children(&path).await.map_err(|e| self.fix(e))
        }
        .boxed()
    }
    fn get_children_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<String>, Watch)>> {
        async move {
            let (c, g) = self.client()?;
            let (ch, s, w) = c
                .get_and_watch_children(&path)
                .await
                .map_err(|e| self.fix(e))?;
            let rearm = Rearm::Children {
                path,
                czxid: s.czxid,
                pzxid: s.pzxid,
            };
            Ok((ch, self.watch(g, w, rearm)))
        }
        .boxed()
    }
    fn create(
        &self,
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        async move {
            let (c, _) = self.client()?;
            let (s, _) = c
                .create(&path, &data, &acl_mode(mode))
                .await
                .map_err(|e| self.fix(e))?;
            Ok(s.into())
        }
        .boxed()
    }
    fn set_data(
        &self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        async move {
            let (c, _) = self.client()?;
            Ok(c.set_data(&path, &data, version)
                .await
                .map_err(|e| self.fix(e))?
                .into())
        }
        .boxed()
    }
    fn delete(&self, path: String, version: Option<i32>) -> BoxFuture<'_, ZkResult<()>> {
        async move {
            let (c, _) = self.client()?;
            c.delete(&path, version).await.map_err(|e| self.fix(e))
        }
        .boxed()
    }
    fn multi(&self, ops: Vec<ZkOp>) -> BoxFuture<'_, Result<Vec<ZkOpResult>, MultiError>> {
        async move {
            let (c, _) = self.client().map_err(MultiError::Request)?;
            let mut w = c.new_multi_writer();
            for op in &ops {
                let added = match op {
                    ZkOp::Check { path, version } => w.add_check_version(path, *version),
                    ZkOp::Create { path, data, mode } => w.add_create(path, data, &acl_mode(*mode)),
                    ZkOp::SetData {
                        path,
                        data,
                        version,
                    } => w.add_set_data(path, data, *version),
                    ZkOp::Delete { path, version } => w.add_delete(path, *version),
                };
                added.map_err(MultiError::Request)?;
            }
            match w.commit().await {
                Ok(results) => Ok(results
                    .into_iter()
                    .map(|r| match r {
                        zkc::MultiWriteResult::Check => ZkOpResult::Check,
                        zkc::MultiWriteResult::Create { stat, .. } => {
                            ZkOpResult::Create(stat.into())
                        }
                        zkc::MultiWriteResult::SetData { stat } => ZkOpResult::SetData(stat.into()),
                        _ => ZkOpResult::Delete,
                    })
                    .collect()),
                Err(zkc::MultiWriteError::OperationFailed { index, source }) => {
                    Err(MultiError::Op {
                        index,
                        error: source,
                    })
                }
                Err(zkc::MultiWriteError::RequestFailed { source }) => {
                    Err(MultiError::Request(self.fix(source)))
                }
            }
        }
        .boxed()
    }
    fn session_id(&self) -> i64 {
        self.session.session_id
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.session.closed.store(true, Ordering::SeqCst);
        let taken = self
            .session
            .client
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        // Dropping the last `Client` makes the session task send CloseSession in the
        // background; wait (briefly) until it is done, so a process that exits right after
        // `close` has really closed its session and its ephemeral znodes are gone at once,
        // as with Kafka's `zkClient.close()`, instead of lingering until the session times out.
        let watcher = taken.as_ref().map(|(c, _)| c.state_watcher());
        drop(taken);
        async move {
            if let Some(mut w) = watcher {
                let wait = async {
                    if w.peek_state().is_terminated() {
                        return;
                    }
                    while !w.changed().await.is_terminated() {}
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), wait).await;
            }
            self.session.end("closed");
        }
        .boxed()
    }
    fn wait_until_connected(&self) -> BoxFuture<'_, ZkResult<()>> {
        let mut status = self.session.status.subscribe();
        async move {
            loop {
                let current = *status.borrow_and_update();
                match current {
                    SessionStatus::Ended => return Err(ZkError::SessionExpired),
                    // The supervisor is resuming the session: wait for its next status.
                    SessionStatus::Resuming => {}
                    SessionStatus::Live { .. } => {
                        let Some((client, _)) = self.session.current() else {
                            return Err(ZkError::ClientClosed);
                        };
                        // Connected, or the crate is looking for a server: wait for its state,
                        // unless it gives up (terminal state), which the supervisor handles.
                        // Only the watcher is kept: a `Client` held here would keep the session
                        // open under a `close`.
                        let mut state = client.state_watcher();
                        drop(client);
                        let mut st = state.state();
                        loop {
                            if matches!(
                                st,
                                zkc::SessionState::SyncConnected
                                    | zkc::SessionState::ConnectedReadOnly
                            ) {
                                return Ok(());
                            }
                            if st.is_terminated() {
                                break;
                            }
                            tokio::select! {
                                next = state.changed() => st = next,
                                changed = status.changed() => {
                                    if changed.is_err() {
                                        return Err(ZkError::SessionExpired);
                                    }
                                    break;
                                }
                            }
                        }
                        if *status.borrow() != current {
                            continue;
                        }
                    }
                }
                if status.changed().await.is_err() {
                    return Err(ZkError::SessionExpired);
                }
            }
        }
        .boxed()
    }
    fn session_ended(&self) -> BoxFuture<'static, ()> {
        let mut status = self.session.status.subscribe();
        async move {
            loop {
                if *status.borrow_and_update() == SessionStatus::Ended {
                    return;
                }
                if status.changed().await.is_err() {
                    // The backend was dropped: its session is gone with it.
                    return;
                }
            }
        }
        .boxed()
    }
}
