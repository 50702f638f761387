//! Shared by the suites that drive the `testcluster` binary as a user would (tool_cli,
//! tool_admin, web_view): the processes `testcluster up` recorded and a guard that kills them
//! if a test ends early.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// Runs `testcluster up --brokers 3 <extra> --dir <tmp>/cluster` with its output in
/// `<tmp>/up.log` and waits until it reports the cluster running. Returns the guard (its `seen`
/// holds the pids in cluster.json), the cluster folder and the log's path.
pub fn start_up(tmp: &Path, extra: &[&str]) -> (Guard, PathBuf, PathBuf) {
    let dir = tmp.join("cluster");
    let log_path = tmp.join("up.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let up = Command::new(env!("CARGO_BIN_EXE_testcluster"))
        .args(["up", "--brokers", "3"])
        .args(extra)
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut g = Guard {
        up,
        seen: Vec::new(),
    };
    let up_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // `up` prints "running" once the cluster is ready and cluster.json is written.
    testcluster::wait_until("up to report running", Duration::from_secs(120), || {
        up_log().contains("running; Ctrl-C").then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", up_log()));
    g.seen = pids(&dir);
    (g, dir, log_path)
}
