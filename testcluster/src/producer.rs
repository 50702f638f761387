//! A background producer of numbered records (confluent-kafka, `clients/py_acked_producer.py`)
//! that notes every acknowledged record in a file, and the check that every acknowledged record
//! is in the topic exactly once and in order (`clients/py_verify_acked.py`). The suites that
//! inject faults run it beside the fault; the producer's stderr (librdkafka's log) is kept in a
//! file beside the acknowledged numbers, to print when a check fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::cluster::{Cluster, WAIT};
use crate::wait_until;

/// A running producer; killed when dropped.
pub struct AckedProducer {
    child: Child,
    stop: PathBuf,
    acked: PathBuf,
    log: PathBuf,
}

/// What a stopped producer leaves: the acknowledged numbers and its log.
pub struct Acked {
    pub path: PathBuf,
    log: PathBuf,
}

impl AckedProducer {
    /// Starts an idempotent producer (InitProducerId, sequence numbers) with `acks` on `topic`.
    /// Idempotence matters: without it librdkafka may reorder a partition's records when a
    /// leader moves while a request is in flight, and writes a retried batch twice when the old
    /// leader had replicated it.
    pub fn start(c: &Cluster, topic: &str, acks: &str) -> AckedProducer {
        let root = crate::workspace_root();
        let stop = c.path().join(format!("{topic}.stop"));
        let acked = c.path().join(format!("{topic}.acked"));
        let log = c.path().join(format!("{topic}.producer.log"));
        let child = crate::command(root.join(".venv/bin/python"))
            .arg(root.join("testcluster/clients/py_acked_producer.py"))
            .args([&c.bootstrap(), topic, acks])
            .arg(&stop)
            .arg(&acked)
            .arg("--idempotent")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("producer log"))
            .spawn()
            .expect("python producer");
        AckedProducer {
            child,
            stop,
            acked,
            log,
        }
    }

    /// How many records are acknowledged so far.
    pub fn acked(&self) -> usize {
        std::fs::read_to_string(&self.acked)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Waits until more than `more_than` records are acknowledged; panics after `within` with
    /// the count and the producer's last log lines.
    pub fn wait_for_acks(&self, more_than: usize, within: Duration, what: &str) {
        wait_until(what, within, || (self.acked() > more_than).then_some(())).unwrap_or_else(|e| {
            panic!(
                "{e} ({} acknowledged); producer's last lines:\n{}",
                self.acked(),
                last_lines(&self.log)
            )
        });
    }

    /// Waits until `n` more records than now are acknowledged (within `WAIT`).
    pub fn wait_for_progress(&self, n: usize, what: &str) {
        self.wait_for_acks(self.acked() + n, WAIT, what);
    }

    /// Stops the producer (it flushes first) and waits for it to exit.
    pub fn finish(mut self) -> Acked {
        std::fs::write(&self.stop, b"").unwrap();
        wait_until(
            "the producer to flush and exit",
            Duration::from_secs(120),
            || self.child.try_wait().ok().flatten(),
        )
        .unwrap();
        Acked {
            path: self.acked.clone(),
            log: self.log.clone(),
        }
    }
}

impl Drop for AckedProducer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Acked {
    /// How many records were acknowledged.
    pub fn count(&self) -> usize {
        std::fs::read_to_string(&self.path)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Consumes `topic` from the start and asserts that every acknowledged record is there
    /// exactly once, in order per partition; returns the verifier's report. `skip_unkeyed`
    /// passes over records without a key (a test's own probes written beside the producer's).
    pub fn verify(&self, c: &Cluster, topic: &str, skip_unkeyed: bool) -> String {
        let root = crate::workspace_root();
        let mut cmd = crate::command(root.join(".venv/bin/python"));
        cmd.arg(root.join("testcluster/clients/py_verify_acked.py"))
            .args([&c.bootstrap(), topic])
            .arg(&self.path);
        if skip_unkeyed {
            cmd.arg("--skip-unkeyed");
        }
        let out = cmd.output().expect("verify");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.starts_with("OK"),
            "verification failed: {text}{}\nproducer's last lines:\n{}",
            String::from_utf8_lossy(&out.stderr),
            last_lines(&self.log)
        );
        text
    }
}

/// The last 20 lines of a file.
fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}
