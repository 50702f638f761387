//! One broker process: its `server.properties`, its log dir, its signals.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

/// Signals a test sends to a broker, as an operator would with `kill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Clean stop: controlled shutdown first.
    Term,
    /// Crash.
    Kill,
    /// Pause (the process keeps its sockets but answers nothing, ZooKeeper session included).
    Stop,
    /// Resume after `Stop`.
    Cont,
}

impl Signal {
    pub(crate) fn number(self) -> i32 {
        match self {
            Signal::Term => libc::SIGTERM,
            Signal::Kill => libc::SIGKILL,
            Signal::Stop => libc::SIGSTOP,
            Signal::Cont => libc::SIGCONT,
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        match s.to_ascii_uppercase().trim_start_matches("SIG") {
            "TERM" => Some(Signal::Term),
            "KILL" => Some(Signal::Kill),
            "STOP" => Some(Signal::Stop),
            "CONT" => Some(Signal::Cont),
            _ => None,
        }
    }
}

pub struct BrokerProcess {
    pub id: i32,
    pub port: u16,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log_file: PathBuf,
    child: Option<Child>,
    /// The network namespace and address it runs at; `None`: the test's namespace, 127.0.0.1.
    pub placement: Option<crate::netns::Placement>,
}

impl BrokerProcess {
    /// Writes `server.properties` for broker `id` and starts it.
    pub fn start(
        id: i32,
        dir: PathBuf,
        zookeeper_connect: &str,
        extra: &BTreeMap<String, String>,
    ) -> anyhow::Result<BrokerProcess> {
        Self::start_placed(id, dir, zookeeper_connect, extra, None)
    }

    /// [`BrokerProcess::start`] inside a network namespace when `placement` is given: the
    /// listener is on the namespace's address (port 9092: the host is the broker's own).
    pub fn start_placed(
        id: i32,
        dir: PathBuf,
        zookeeper_connect: &str,
        extra: &BTreeMap<String, String>,
        placement: Option<crate::netns::Placement>,
    ) -> anyhow::Result<BrokerProcess> {
        std::fs::create_dir_all(&dir)?;
        let (host, port) = match &placement {
            Some(p) => (p.host.to_string(), 9092),
            None => ("127.0.0.1".to_string(), crate::free_port()),
        };
        let mut props = BTreeMap::new();
        props.insert("broker.id".to_string(), id.to_string());
        props.insert(
            "listeners".to_string(),
            format!("PLAINTEXT://{host}:{port}"),
        );
        props.insert(
            "log.dirs".to_string(),
            dir.join("logs").display().to_string(),
        );
        props.insert(
            "zookeeper.connect".to_string(),
            zookeeper_connect.to_string(),
        );
        props.insert(
            "zookeeper.session.timeout.ms".to_string(),
            "6000".to_string(),
        );
        props.insert(
            "controlled.shutdown.retry.backoff.ms".to_string(),
            "500".to_string(),
        );
        for (k, v) in extra {
            props.insert(k.clone(), v.clone());
        }
        let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let config = dir.join("server.properties");
        std::fs::write(&config, text)?;
        let mut b = BrokerProcess {
            id,
            port,
            log_file: dir.join("broker.log"),
            dir,
            config,
            child: None,
            placement,
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = crate::broker_binary();
        if !bin.is_file() {
            anyhow::bail!(
                "broker binary {} not found: run `cargo build --release -p broker`",
                bin.display()
            );
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)?;
        let mut command = match &self.placement {
            Some(p) => p.command(bin),
            None => crate::command(bin),
        };
        let child = command
            // Own process group: a Ctrl-C in the terminal reaches `testcluster` only, which
            // then stops brokers (controlled shutdown) before ZooKeeper.
            .process_group(0)
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("BROKER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    pub fn address(&self) -> String {
        match &self.placement {
            Some(p) => format!("{}:{}", p.host, self.port),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (no-op if the process is gone).
    pub fn signal(&mut self, sig: Signal) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as i32, sig.number());
            }
        }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        let Some(c) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = crate::wait_until(&format!("broker {} to exit", self.id), timeout, || {
            c.try_wait().ok().flatten()
        })?;
        self.child = None;
        Ok(status.code())
    }

    /// SIGTERM and wait (controlled shutdown); returns the exit code.
    pub fn stop(&mut self, timeout: Duration) -> anyhow::Result<Option<i32>> {
        self.signal(Signal::Term);
        self.wait_exit(timeout)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again with the same config, port and data.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.is_running() {
            anyhow::bail!("broker {} is still running", self.id);
        }
        self.child = None;
        self.spawn()
    }

    /// The broker's log output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            // A paused process ignores SIGKILL until continued on some kernels: resume first.
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGCONT);
            }
        }
        self.kill();
    }
}
