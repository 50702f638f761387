//! Where the load goes: a cluster this run starts (real ZooKeeper and broker processes, through
//! the testcluster library) or an external one named by `--bootstrap`.

use std::time::Duration;

use anyhow::Context;
use testcluster::kafka::{leaders, Client};
use testcluster::{wait_until, Cluster, ClusterOptions};

use crate::cpu::BrokerCpu;

/// How many brokers to start, and with which topic settings.
#[derive(Debug, Clone)]
pub struct Layout {
    pub brokers: i32,
    pub replication_factor: i16,
    pub min_isr: Option<u32>,
    /// Extra `server.properties` entries for the brokers started.
    pub broker_config: Vec<(String, String)>,
}

pub enum Target {
    /// A cluster started (and stopped on drop) by this run.
    Own(Box<Cluster>),
    /// An external cluster; `pids` are the broker processes to measure (may be empty).
    External { bootstrap: String, pids: Vec<u32> },
}

impl Target {
    pub fn start(layout: &Layout) -> anyhow::Result<Target> {
        let mut opts = ClusterOptions::default().brokers(layout.brokers);
        for (k, v) in &layout.broker_config {
            opts = opts.config(k, v);
        }
        let cluster = Cluster::start(opts).context(
            "starting ZooKeeper and brokers (is `cargo build --release -p broker` done?)",
        )?;
        Ok(Target::Own(Box::new(cluster)))
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Target::Own(c) => c.bootstrap(),
            Target::External { bootstrap, .. } => bootstrap.clone(),
        }
    }

    pub fn cpu(&self) -> BrokerCpu {
        match self {
            Target::Own(c) => BrokerCpu::new(c.brokers.iter().filter_map(|b| b.pid()).collect()),
            Target::External { pids, .. } => BrokerCpu::new(pids.clone()),
        }
    }

    /// A folder on the brokers' file system (for the page-cache control), else the temp dir.
    pub fn scratch_dir(&self) -> std::path::PathBuf {
        match self {
            Target::Own(c) => c.path().to_path_buf(),
            Target::External { .. } => std::env::temp_dir(),
        }
    }

    /// Bytes of partition 0's segment files on the first broker holding it (own cluster only).
    pub fn log_bytes(&self, topic: &str) -> Option<u64> {
        let Target::Own(c) = self else { return None };
        c.brokers.iter().find_map(|b| {
            let dir = c.log_dir(b.id).join(format!("{topic}-0"));
            let entries = std::fs::read_dir(dir).ok()?;
            Some(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                    .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                    .sum(),
            )
        })
    }

    /// Creates a 1-partition topic and waits until it has a leader.
    pub fn create_topic(&mut self, name: &str, layout: &Layout) -> anyhow::Result<()> {
        let min_isr = layout.min_isr.map(|m| m.to_string());
        let mut configs = Vec::new();
        if let Some(m) = &min_isr {
            configs.push(("min.insync.replicas", m.as_str()));
        }
        match self {
            Target::Own(c) => {
                c.create_topic(name, 1, layout.replication_factor, &configs)?;
            }
            Target::External { bootstrap, .. } => {
                create_external(bootstrap, name, layout.replication_factor, &configs)?
            }
        }
        Ok(())
    }
}

/// CreateTopics goes to the controller (a ZooKeeper-mode broker that is not the controller
/// answers NOT_CONTROLLER), found in a Metadata answer from the first bootstrap address.
fn create_external(
    bootstrap: &str,
    name: &str,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let first = bootstrap.split(',').next().unwrap_or(bootstrap).trim();
    let addr = resolve(first)?;
    let md = Client::connect(&addr)?.metadata(Some(&[]))?;
    let controller = md
        .brokers
        .iter()
        .find(|b| b.node_id == md.controller_id)
        .with_context(|| format!("{first} reports no live controller"))?;
    let controller_addr = resolve(&format!("{}:{}", controller.host.as_str(), controller.port))?;
    let r =
        Client::connect(&controller_addr)?.create_topic(name, 1, replication_factor, configs)?;
    let code = r.topics.first().map_or(-1, |t| t.error_code);
    anyhow::ensure!(code == 0, "CreateTopics {name} answered error code {code}");
    wait_until(
        &format!("a leader for {name}"),
        Duration::from_secs(60),
        || {
            let md = Client::connect(&addr).ok()?.metadata(Some(&[name])).ok()?;
            leaders(&md, name)
        },
    )?;
    Ok(())
}

/// `host:port` to a socket address string (the small client takes `ip:port`).
fn resolve(host_port: &str) -> anyhow::Result<String> {
    use std::net::ToSocketAddrs;
    let a = host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {host_port}"))?
        .next()
        .with_context(|| format!("{host_port} resolves to nothing"))?;
    Ok(a.to_string())
}
