//! Apache ZooKeeper processes (Debian's `zookeeper` package) and reading znodes.
//!
//! A server is started as `java -cp /etc/zookeeper/conf:/usr/share/java/* QuorumPeerMain
//! zoo.cfg` with a config written here (its own dataDir, client port on 127.0.0.1, the admin
//! server off), never through systemd. Readiness is ZooKeeper's `ruok` four-letter word
//! answered `imok`. An ensemble is N such servers with `server.N=` lines and `myid` files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// One ZooKeeper server of a standalone setup or an ensemble.
pub struct ZkServer {
    pub id: u32,
    pub client_port: u16,
    pub dir: PathBuf,
    config: PathBuf,
    child: Option<Child>,
    /// The network namespace and address it runs at; `None`: the test's namespace, 127.0.0.1.
    pub placement: Option<crate::netns::Placement>,
}

/// A running ZooKeeper (1 server, or an ensemble of N).
pub struct ZooKeeper {
    pub servers: Vec<ZkServer>,
}

/// Sends a four-letter word and returns the answer.
pub fn four_letter(port: u16, word: &str) -> Option<String> {
    four_letter_at("127.0.0.1", port, word)
}

/// [`four_letter`] to a server at `host`.
pub fn four_letter_at(host: &str, port: u16, word: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{host}:{port}").parse().ok()?,
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(word.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

impl ZkServer {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.dir.join("zookeeper.log"))?;
        let mut command = match &self.placement {
            Some(p) => p.command("java"),
            None => crate::command("java"),
        };
        let child = command
            // Own process group: a Ctrl-C in the terminal reaches `testcluster` only, which
            // then stops brokers (controlled shutdown) before ZooKeeper.
            .process_group(0)
            .arg("-Xmx256m")
            .arg("-Dzookeeper.admin.enableServer=false")
            .arg("-cp")
            .arg("/etc/zookeeper/conf:/usr/share/java/*")
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start java for ZooKeeper (run scripts/setup): {e}")
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// True once the server answers `ruok` with `imok`.
    pub fn is_ok(&self) -> bool {
        four_letter_at(&self.host(), self.client_port, "ruok").is_some_and(|a| a == "imok")
    }

    /// Stops the server with SIGKILL (ZooKeeper has no clean-shutdown need for tests).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same config and data.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_none() {
            self.spawn()?;
        }
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal to the server process (no-op if it is not running): `Stop` pauses it
    /// with its sockets open (clients time out on it), `Cont` resumes it.
    pub fn signal(&self, sig: crate::Signal) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as i32, sig.number());
            }
        }
    }

    /// The address it serves clients on.
    pub fn host(&self) -> String {
        self.placement
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_string(), |p| p.host.to_string())
    }

    /// The server's `zoo.cfg`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

impl ZooKeeper {
    /// Starts `n` servers (1 = standalone) under `base`, waits until they answer.
    pub fn start(base: &Path, n: u32) -> anyhow::Result<ZooKeeper> {
        Self::start_placed(base, (0..n).map(|_| None).collect())
    }

    /// [`ZooKeeper::start`] with server `i` at `placements[i]`: in that network namespace, on
    /// its address, with ZooKeeper's usual ports (the host is the server's own); one server
    /// per entry.
    pub fn start_placed(
        base: &Path,
        placements: Vec<Option<crate::netns::Placement>>,
    ) -> anyhow::Result<ZooKeeper> {
        let n = placements.len() as u32;
        let mut servers = Vec::new();
        let hosts: Vec<String> = placements
            .iter()
            .map(|p| {
                p.as_ref()
                    .map_or("127.0.0.1".into(), |p| p.host.to_string())
            })
            .collect();
        let ports: Vec<(u16, u16, u16)> = placements
            .iter()
            .map(|p| match p {
                Some(_) => (2181, 2888, 3888),
                None => (free_port(), free_port(), free_port()),
            })
            .collect();
        for id in 1..=n {
            let dir = base.join(format!("zk{id}"));
            std::fs::create_dir_all(dir.join("data"))?;
            let (client, _, _) = ports[(id - 1) as usize];
            let mut cfg = format!(
                "tickTime=500\ninitLimit=20\nsyncLimit=10\ndataDir={}\nclientPort={client}\n\
                 clientPortAddress={host}\nmaxClientCnxns=0\nadmin.enableServer=false\n\
                 4lw.commands.whitelist=*\nminSessionTimeout=1000\nmaxSessionTimeout=60000\n",
                dir.join("data").display(),
                host = hosts[(id - 1) as usize],
            );
            if n > 1 {
                std::fs::write(dir.join("data/myid"), format!("{id}\n"))?;
                for (i, (_, p, e)) in ports.iter().enumerate() {
                    cfg.push_str(&format!("server.{}={}:{p}:{e}\n", i + 1, hosts[i]));
                }
            }
            let config = dir.join("zoo.cfg");
            std::fs::write(&config, cfg)?;
            let mut s = ZkServer {
                id,
                client_port: client,
                dir,
                config,
                child: None,
                placement: placements[(id - 1) as usize].clone(),
            };
            s.spawn()?;
            servers.push(s);
        }
        let zk = ZooKeeper { servers };
        wait_until("ZooKeeper to answer ruok", Duration::from_secs(60), || {
            zk.servers.iter().all(|s| s.is_ok()).then_some(())
        })?;
        if n > 1 {
            wait_until(
                "the ensemble to elect a leader",
                Duration::from_secs(60),
                || {
                    zk.servers
                        .iter()
                        .any(|s| {
                            four_letter_at(&s.host(), s.client_port, "srvr")
                                .is_some_and(|a| a.contains("Mode: leader"))
                        })
                        .then_some(())
                },
            )?;
        }
        Ok(zk)
    }

    /// `host:port,...` of every server, without chroot.
    pub fn connect_string(&self) -> String {
        self.servers
            .iter()
            .map(|s| format!("{}:{}", s.host(), s.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn server(&mut self, id: u32) -> Option<&mut ZkServer> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    pub fn kill_all(&mut self) {
        for s in &mut self.servers {
            s.kill();
        }
    }

    /// Reads a znode's data as text with ZooKeeper's own `zkCli.sh` (`None` if absent).
    pub fn zkcli_get(&self, path: &str) -> Option<String> {
        let out = crate::command("/usr/share/zookeeper/bin/zkCli.sh")
            .arg("-server")
            .arg(self.connect_string())
            .arg("get")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // zkCli prints connection chatter, then the data on its own line.
        text.lines()
            .rev()
            .find(|l| l.starts_with('{') || l.starts_with('"') || l.parse::<i64>().is_ok())
            .map(str::to_string)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        self.kill_all();
    }
}
