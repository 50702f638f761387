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
//! wait conditions: ApiVersions, Metadata, CreateTopics), [`netns`] (network namespaces, opt-in
//! with [`ClusterOptions::netns`]: every server on its own host so a test can cut the network
//! between them).
//!
//! The integration suites in `tests/` drive brokers and the controller through this library and
//! stock clients. The binaries built on it (the `testcluster` command-line tool, the load tools
//! `bench` and `controller_bench`) are in the `tools` crate with their own suites: they link
//! librdkafka, and keeping it out of this crate keeps its bundled `./configure && make` out of
//! the build of these suites.

pub mod broker;
pub mod cluster;
pub mod kafka;
pub mod netns;
pub mod probe;
pub mod producer;
pub mod zk;

pub use broker::{BrokerProcess, Signal};
pub use cluster::{Cluster, ClusterOptions};
pub use zk::ZooKeeper;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A command for an external client (kcat, python, node, zkCli) with the test process's
/// `LD_LIBRARY_PATH` removed: cargo points it at the native libraries built for the test's
/// dependencies (in the `tools` crate's suites, librdkafka built without zstd), which must not
/// replace the system's.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut c = std::process::Command::new(program);
    c.env_remove("LD_LIBRARY_PATH");
    c
}

/// A free TCP port on 127.0.0.1 for a server, chosen **below the kernel's ephemeral range**.
///
/// A port from `bind(0)` lies in the ephemeral range (32768-60999 on Linux), from which the
/// kernel also picks the source ports of outgoing connections. While a broker is down between a
/// kill and its restart, a client connecting anywhere can be given that very port as its source
/// port, and the restarted broker then fails to bind its listener. Ports below the range are
/// never handed out that way. Each call in a process gets a different port (a counter from a
/// per-process starting point), checked free by binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    const LOW: u32 = 10_000;
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<u32>().ok())
        })
        .unwrap_or(32_768);
    if ephemeral_low > LOW + 1_000 {
        let span = ephemeral_low - LOW;
        let _ = NEXT.compare_exchange(
            u32::MAX,
            (std::process::id().wrapping_mul(7_919)) % span,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        for _ in 0..span {
            let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % span;
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
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
