//! Requests sent again after a lost connection (Kafka's `KafkaZkClient.retryRequestsUntilConnected`).
//!
//! Kafka concept: CONNECTIONLOSS is not a failure of the request but of the connection it was
//! on: the session lives on (the client reconnects to another server with its session id), and
//! the request may or may not have been applied. Kafka's `KafkaZkClient` sends every request
//! through `retryRequestsUntilConnected`: the requests answered CONNECTIONLOSS wait in
//! `ZooKeeperClient.waitUntilConnected` (no time limit) and go again; only a session that ended
//! (expired, closed, authentication failed) fails them. A ZooKeeper server that stalls for
//! seconds, or an ensemble that loses its leader, therefore delays the controller's event but
//! never drops its work half done: without this, an event that had already changed the
//! controller's context (a dead broker removed from the live set) and then lost its ZooKeeper
//! write would leave that broker's partitions leaderless, and no later event would redo it.
//!
//! [`UntilConnected`] wraps any [`ZkBackend`] with that loop; `KafkaZkClient` puts every
//! session it uses behind one, so every typed operation gets it.
//!
//! Invariant: a call through [`UntilConnected`] never answers CONNECTIONLOSS; it answers what
//! ZooKeeper answered once connected, or SESSIONEXPIRED (or the backend's error for a closed
//! session) once the session has ended.
//!
//! Simplification, said plainly (Kafka has it too): a write whose answer was lost may have been
//! applied, and sent again it meets its own result: NODEEXISTS for a create, BADVERSION for a
//! conditional set. Callers already treat those as a conflict (the broker registration compares
//! the znode's owner session with its own, a partition state write re-reads and retries), so the
//! outcome is right, at the cost of one more round.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tracing::debug;

use crate::backend::NodeMode;
use crate::backend::{
    MultiError, NodeData, Watch, ZkBackend, ZkError, ZkOp, ZkOpResult, ZkResult, ZkStat,
};

/// Pause before sending again when the connection was reported back but the request still met
/// a lost connection (it dropped again at once); doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A backend whose requests wait for the connection and go again after CONNECTIONLOSS.
pub struct UntilConnected {
    inner: Arc<dyn ZkBackend>,
}

impl UntilConnected {
    /// `inner` behind the retry loop (a backend already wrapped is returned as it is).
    pub fn wrap(inner: Arc<dyn ZkBackend>) -> Arc<dyn ZkBackend> {
        if inner.retries_until_connected() {
            return inner;
        }
        Arc::new(UntilConnected { inner })
    }

    /// Runs `call` until it answers something other than CONNECTIONLOSS, waiting for the
    /// connection in between.
    fn retry<'a, T: Send + 'a>(
        &'a self,
        what: &'static str,
        call: impl Fn(&'a dyn ZkBackend) -> BoxFuture<'a, ZkResult<T>> + Send + 'a,
    ) -> BoxFuture<'a, ZkResult<T>> {
        async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                match call(&*self.inner).await {
                    Err(ZkError::ConnectionLoss) => {
                        self.wait(what, &mut backoff).await?;
                    }
                    r => return r,
                }
            }
        }
        .boxed()
    }

    /// Waits until the session is connected again (or fails once it has ended), then backs
    /// off a little if the last wait found it connected already.
    async fn wait(&self, what: &'static str, backoff: &mut Duration) -> ZkResult<()> {
        debug!(
            request = what,
            session_id = %format_args!("0x{:x}", self.inner.session_id()),
            "ZooKeeper connection lost during a request; sending it again once connected"
        );
        let started = tokio::time::Instant::now();
        self.inner.wait_until_connected().await?;
        if started.elapsed() < *backoff {
            tokio::time::sleep(*backoff).await;
            *backoff = (*backoff * 2).min(MAX_BACKOFF);
        }
        Ok(())
    }
}

impl ZkBackend for UntilConnected {
    fn get_data(&self, path: String) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat)>> {
        self.retry("getData", move |b| b.get_data(path.clone()))
    }
    fn get_data_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<u8>, ZkStat, Watch)>> {
        self.retry("getData", move |b| b.get_data_and_watch(path.clone()))
    }
    fn exists_and_watch(&self, path: String) -> BoxFuture<'_, ZkResult<(Option<ZkStat>, Watch)>> {
        self.retry("exists", move |b| b.exists_and_watch(path.clone()))
    }
    fn get_data_many(
        &self,
        paths: Vec<String>,
    ) -> BoxFuture<'_, ZkResult<Vec<ZkResult<NodeData>>>> {
        self.retry("multiRead", move |b| b.get_data_many(paths.clone()))
    }
    fn get_children(&self, path: String) -> BoxFuture<'_, ZkResult<Vec<String>>> {
        self.retry("getChildren", move |b| b.get_children(path.clone()))
    }
    fn get_children_and_watch(
        &self,
        path: String,
    ) -> BoxFuture<'_, ZkResult<(Vec<String>, Watch)>> {
        self.retry("getChildren", move |b| {
            b.get_children_and_watch(path.clone())
        })
    }
    fn create(
        &self,
        path: String,
        data: Vec<u8>,
        mode: NodeMode,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        self.retry("create", move |b| {
            b.create(path.clone(), data.clone(), mode)
        })
    }
    fn set_data(
        &self,
        path: String,
        data: Vec<u8>,
        version: Option<i32>,
    ) -> BoxFuture<'_, ZkResult<ZkStat>> {
        self.retry("setData", move |b| {
            b.set_data(path.clone(), data.clone(), version)
        })
    }
    fn delete(&self, path: String, version: Option<i32>) -> BoxFuture<'_, ZkResult<()>> {
        self.retry("delete", move |b| b.delete(path.clone(), version))
    }
    fn multi(&self, ops: Vec<ZkOp>) -> BoxFuture<'_, Result<Vec<ZkOpResult>, MultiError>> {
        async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                match self.inner.multi(ops.clone()).await {
                    Err(MultiError::Request(ZkError::ConnectionLoss)) => self
                        .wait("multi", &mut backoff)
                        .await
                        .map_err(MultiError::Request)?,
                    r => return r,
                }
            }
        }
        .boxed()
    }
    fn session_id(&self) -> i64 {
        self.inner.session_id()
    }
    fn close(&self) -> BoxFuture<'_, ()> {
        self.inner.close()
    }
    fn session_ended(&self) -> BoxFuture<'static, ()> {
        self.inner.session_ended()
    }
    fn wait_until_connected(&self) -> BoxFuture<'_, ZkResult<()>> {
        self.inner.wait_until_connected()
    }
    fn retries_until_connected(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryZk;

    // Kafka: retryRequestsUntilConnected waits for the connection and sends the request again;
    // the write lands once, after the reconnection.
    #[tokio::test]
    async fn a_request_that_met_a_lost_connection_goes_again_once_connected() {
        let mem = MemoryZk::new();
        let zk = UntilConnected::wrap(Arc::new(mem.clone()));
        mem.disconnect();
        let create = zk.create("/a".into(), b"x".to_vec(), NodeMode::Persistent);
        let reconnect = async {
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            assert!(matches!(
                mem.get_data("/a".into()).await,
                Err(ZkError::ConnectionLoss)
            ));
            mem.reconnect();
        };
        let (created, ()) = tokio::join!(create, reconnect);
        assert_eq!(created.unwrap().version, 0);
        assert_eq!(zk.get_data("/a".into()).await.unwrap().0, b"x");
    }

    // Kafka: waitUntilConnected throws once the session has expired: the request fails with
    // SESSIONEXPIRED instead of waiting for ever.
    #[tokio::test]
    async fn a_request_waiting_for_the_connection_fails_when_the_session_ends() {
        let mem = MemoryZk::new();
        let zk = UntilConnected::wrap(Arc::new(mem.clone()));
        mem.disconnect_on_next_write();
        let multi = zk.multi(vec![ZkOp::Create {
            path: "/b".into(),
            data: vec![],
            mode: NodeMode::Persistent,
        }]);
        let expire = async {
            while !mem.is_disconnected() {
                tokio::task::yield_now().await;
            }
            mem.expire();
        };
        let (r, ()) = tokio::join!(multi, expire);
        assert!(matches!(
            r,
            Err(MultiError::Request(ZkError::SessionExpired))
        ));
    }
}
