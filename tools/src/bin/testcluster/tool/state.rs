//! `cluster.json`: what `testcluster up` writes in `--dir` so the other subcommands find the
//! running cluster (ZooKeeper connect string, every server's port, pid and config).
//!
//! `up` rewrites it whenever a process starts or exits, and removes it when it stops. A reader
//! never trusts a pid blindly: [`proc_state`] looks at `/proc/<pid>/stat` to tell a running
//! process from a paused (SIGSTOP) or dead one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file's name inside `--dir`.
pub const STATE_FILE: &str = "cluster.json";
/// The control socket's name inside `--dir` (`up` listens, `kill`/`start`/... connect).
pub const CONTROL_SOCKET: &str = "control.sock";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    /// Pid of the `testcluster up` process that owns every child below.
    pub up_pid: u32,
    /// `host:port,...` plus the chroot, as in the brokers' `zookeeper.connect`.
    pub zookeeper_connect: String,
    pub chroot: String,
    pub bootstrap_servers: String,
    /// The live web view, if `up` serves one.
    pub web_url: Option<String>,
    pub control_socket: PathBuf,
    pub zookeeper: Vec<ZkServerState>,
    pub brokers: Vec<BrokerState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZkServerState {
    pub id: u32,
    pub port: u16,
    /// `None` once the server was stopped (`zk-kill`).
    pub pid: Option<u32>,
    pub config: PathBuf,
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerState {
    pub id: i32,
    pub port: u16,
    pub address: String,
    /// `None` once the process exited.
    pub pid: Option<u32>,
    pub config: PathBuf,
    pub log: PathBuf,
}

/// What the kernel says about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcState {
    Alive,
    /// Stopped by SIGSTOP: keeps its sockets, answers nothing.
    Paused,
    Dead,
}

impl ProcState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcState::Alive => "alive",
            ProcState::Paused => "paused",
            ProcState::Dead => "dead",
        }
    }
}

/// Reads the state letter of `/proc/<pid>/stat` (R/S/D running or sleeping, T stopped, Z zombie).
pub fn proc_state(pid: Option<u32>) -> ProcState {
    let Some(pid) = pid else {
        return ProcState::Dead;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return ProcState::Dead;
    };
    // "pid (comm) S ...": the comm may contain spaces, so split after the last ')'.
    match stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim().chars().next())
    {
        Some('T') | Some('t') => ProcState::Paused,
        Some('Z') | Some('X') | None => ProcState::Dead,
        Some(_) => ProcState::Alive,
    }
}

impl ClusterState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(STATE_FILE)
    }

    /// Reads `cluster.json`; a clear error when no cluster runs there.
    pub fn load(dir: &Path) -> anyhow::Result<ClusterState> {
        let path = Self::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "no running cluster in {} ({}: {e}); start one with `testcluster up --dir {}`",
                dir.display(),
                path.display(),
                dir.display()
            )
        })?;
        let s: ClusterState = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!("{}: not a testcluster state file: {e}", path.display())
        })?;
        if proc_state(Some(s.up_pid)) == ProcState::Dead {
            anyhow::bail!(
                "the `testcluster up` that wrote {} (pid {}) is gone; start it again",
                path.display(),
                s.up_pid
            );
        }
        Ok(s)
    }

    /// Writes atomically (temp file then rename), so a reader never sees half a file.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let tmp = dir.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_unknown_pid_is_dead() {
        assert_eq!(proc_state(Some(std::process::id())), ProcState::Alive);
        assert_eq!(proc_state(None), ProcState::Dead);
        assert_eq!(proc_state(Some(u32::MAX - 1)), ProcState::Dead);
    }
}
