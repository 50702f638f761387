//! Shared by the suites that drive the `testcluster` binary as a user would (tool_cli,
//! tool_admin, web_view): the processes `testcluster up` recorded and a guard that kills them
//! if a test ends early.
#![allow(dead_code)]

use std::path::Path;
use std::process::Child;

/// Every pid recorded in cluster.json (ZooKeeper servers and brokers).
pub fn pids(dir: &Path) -> Vec<i32> {
    let Ok(text) = std::fs::read_to_string(dir.join("cluster.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out = Vec::new();
    for key in ["zookeeper", "brokers"] {
        for s in v[key].as_array().into_iter().flatten() {
            if let Some(p) = s["pid"].as_i64() {
                out.push(p as i32);
            }
        }
    }
    out
}

/// True while `pid` runs (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Kills `up` and every process it recorded if the test ends early.
pub struct Guard {
    pub up: Child,
    pub seen: Vec<i32>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.up.kill();
        let _ = self.up.wait();
        for p in &self.seen {
            // SAFETY: kill(2) on pids this test saw the cluster start.
            unsafe {
                libc::kill(*p, libc::SIGCONT);
                libc::kill(*p, libc::SIGKILL);
            }
        }
    }
}
