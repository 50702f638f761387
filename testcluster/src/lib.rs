//! Starts real ZooKeeper and broker processes for tests and demos.
//!
//! Nothing here is a mock: [`ZooKeeper`] runs Apache ZooKeeper from Debian's `zookeeper`
//! package as a plain `java` process with its own `zoo.cfg`, and [`Cluster`] runs the real
//! `broker` binary, one process per broker, each with its own `server.properties` and log dir.
//! Every server binds 127.0.0.1 on a free port; each cluster uses its own ZooKeeper chroot, so
//! tests run in parallel. Conditions are awaited by polling ZooKeeper or a broker's Metadata
//! answer with a deadline ([`wait_until`]), never by sleeping a fixed time. Dropping a
//! [`Cluster`] kills every process it started, even when a test panics.
//!
//! Modules: [`zk`] (ZooKeeper processes and znode reads), [`broker`] (broker processes and
//! signals), [`cluster`] (the two together), [`kafka`] (a small blocking Kafka client for
//! wait conditions: ApiVersions, Metadata, CreateTopics).

pub mod broker;
pub mod cluster;
pub mod kafka;
pub mod zk;

pub use broker::{BrokerProcess, Signal};
pub use cluster::{Cluster, ClusterOptions};
pub use zk::ZooKeeper;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot find a free port on 127.0.0.1")
}

/// Polls `f` every 50 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The workspace root (where `target/` and `.venv/` live).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testcluster lives in the workspace")
        .to_path_buf()
}

/// The broker binary: `$BROKER_BIN`, else next to the running executable (the `testcluster`
/// binary), else `target/release/broker`, else `target/debug/broker`.
pub fn broker_binary() -> PathBuf {
    if let Ok(p) = std::env::var("BROKER_BIN") {
        return PathBuf::from(p);
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let candidate = dir.join("broker");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let root = workspace_root();
    let release = root.join("target/release/broker");
    if release.is_file() {
        return release;
    }
    root.join("target/debug/broker")
}
