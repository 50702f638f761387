//! A ZooKeeper plus N brokers, with the waits and reads tests need.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ::zk::client::KafkaZkClient;
use kafka_protocol::messages::MetadataResponse;

use crate::broker::BrokerProcess;
use crate::kafka::{leaders, Client};
use crate::netns::Netns;
use crate::wait_until;
use crate::zk::ZooKeeper;

#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub brokers: i32,
    /// ZooKeeper servers: 1 (standalone) or an ensemble.
    pub zk_nodes: u32,
    /// Where data goes; a temporary folder (removed on drop) when `None`.
    pub dir: Option<PathBuf>,
    /// Extra `server.properties` entries for every broker.
    pub broker_config: BTreeMap<String, String>,
    /// ZooKeeper chroot; a unique one per cluster when `None` (tests run side by side).
    pub chroot: Option<String>,
    /// Every ZooKeeper server and broker in a network namespace of its own, on one bridge
    /// (see [`crate::netns`]), so a test can cut links between them; off by default (all on
    /// 127.0.0.1 in the test's namespace). Needs root.
    pub netns: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 3,
            zk_nodes: 1,
            dir: None,
            broker_config: BTreeMap::new(),
            chroot: None,
            netns: false,
        }
    }
}

impl ClusterOptions {
    pub fn brokers(mut self, n: i32) -> Self {
        self.brokers = n;
        self
    }
    pub fn config(mut self, key: &str, value: &str) -> Self {
        self.broker_config.insert(key.into(), value.into());
        self
    }
    /// Network namespace mode (see [`ClusterOptions::netns`]).
    pub fn netns(mut self) -> Self {
        self.netns = true;
        self
    }
}

pub struct Cluster {
    // Field order is drop order: brokers die before ZooKeeper, the temp dir goes last.
    pub brokers: Vec<BrokerProcess>,
    pub zk: ZooKeeper,
    /// The hosts and the bridge in network namespace mode (named `zk1`.., `b1`..); removed
    /// after the processes in them are gone.
    pub netns: Option<Netns>,
    /// The chroot every broker of this cluster uses (`/<name>`).
    pub chroot: String,
    pub dir: PathBuf,
    rt: tokio::runtime::Runtime,
    zkc: Option<KafkaZkClient>,
    _temp: Option<tempfile::TempDir>,
}

/// Default time limit for a cluster-level condition.
pub const WAIT: Duration = Duration::from_secs(60);

/// Log lines a broker writes when its ZooKeeper session really ended (the expiry handler) or
/// when it opened another one.
pub const NEW_SESSION_LINES: [&str; 2] = [
    "ZooKeeper session expired",
    "opened a new ZooKeeper session",
];

/// Time limit of one read by the harness's own ZooKeeper client. That client waits for its
/// connection as Kafka's does (`zk::retry`), for as long as ZooKeeper is unreachable; a test
/// polling through an outage gets an error instead and polls again.
const ZK_READ_TIMEOUT: Duration = Duration::from_secs(5);

impl Cluster {
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let (dir, temp) = match &opts.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.canonicalize()?, None)
            }
            None => {
                let t = tempfile::Builder::new().prefix("zk-kafka-").tempdir()?;
                if std::env::var_os("TESTCLUSTER_KEEP").is_some() {
                    // Keep logs and data for a post-mortem.
                    let path = t.keep();
                    eprintln!("[testcluster] keeping {}", path.display());
                    (path, None)
                } else {
                    (t.path().to_path_buf(), Some(t))
                }
            }
        };
        let mut netns = if opts.netns {
            Some(Netns::create()?)
        } else {
            None
        };
        let mut placements = BTreeMap::new();
        if let Some(n) = netns.as_mut() {
            for i in 1..=opts.zk_nodes {
                placements.insert(format!("zk{i}"), n.add(&format!("zk{i}"))?);
            }
            for id in 1..=opts.brokers {
                placements.insert(format!("b{id}"), n.add(&format!("b{id}"))?);
            }
        }
        let zk = ZooKeeper::start_placed(
            &dir,
            (1..=opts.zk_nodes)
                .map(|i| placements.get(&format!("zk{i}")).cloned())
                .collect(),
        )?;
        let chroot = opts
            .chroot
            .clone()
            .unwrap_or_else(|| format!("/kafka-{}-{}", std::process::id(), crate::free_port()));
        let connect = format!("{}{}", zk.connect_string(), chroot);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut brokers = Vec::new();
        for id in 1..=opts.brokers {
            brokers.push(BrokerProcess::start_placed(
                id,
                dir.join(format!("broker{id}")),
                &connect,
                &opts.broker_config,
                placements.get(&format!("b{id}")).cloned(),
            )?);
        }
        let mut c = Cluster {
            brokers,
            zk,
            netns,
            chroot,
            dir,
            rt,
            zkc: None,
            _temp: temp,
        };
        c.wait_for_all_brokers(WAIT)?;
        Ok(c)
    }

    /// The ZooKeeper connect string brokers use (with the chroot).
    pub fn zookeeper_connect(&self) -> String {
        format!("{}{}", self.zk.connect_string(), self.chroot)
    }

    pub fn bootstrap(&self) -> String {
        self.brokers
            .iter()
            .map(|b| b.address())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn broker(&mut self, id: i32) -> &mut BrokerProcess {
        self.brokers
            .iter_mut()
            .find(|b| b.id == id)
            .expect("no such broker")
    }

    fn zk_client(&mut self) -> anyhow::Result<KafkaZkClient> {
        if self.zkc.is_none() {
            let connect = self.zookeeper_connect();
            let c = self
                .rt
                .block_on(KafkaZkClient::connect(&connect, Duration::from_secs(30)))?;
            self.zkc = Some(c);
        }
        Ok(self.zkc.clone().expect("set above"))
    }

    /// Runs one read of the harness's ZooKeeper client, bounded by [`ZK_READ_TIMEOUT`].
    fn zk_read<T>(&self, read: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
        self.rt
            .block_on(async { tokio::time::timeout(ZK_READ_TIMEOUT, read).await })
            .map_err(|_| anyhow::anyhow!("no answer from ZooKeeper within {ZK_READ_TIMEOUT:?}"))
    }

    /// A znode's data as text (path relative to the chroot), `None` if absent.
    pub fn zk_get(&mut self, path: &str) -> anyhow::Result<Option<String>> {
        let c = self.zk_client()?;
        let data = self.zk_read(c.get_data_maybe(path))??;
        Ok(data.map(|(d, _)| String::from_utf8_lossy(&d).into_owned()))
    }

    /// Children of a znode (relative to the chroot).
    pub fn zk_children(&mut self, path: &str) -> anyhow::Result<Vec<String>> {
        let c = self.zk_client()?;
        Ok(self.zk_read(c.get_children_maybe(path))??)
    }

    /// (controller id, controller epoch) from ZooKeeper, read consistently: the epoch is read
    /// before and after `/controller`, so a dead controller's lingering node is never paired
    /// with its successor's epoch.
    pub fn controller(&mut self) -> Option<(i32, i32)> {
        let c = self.zk_client().ok()?;
        for _ in 0..10 {
            let (before, _) = self.zk_read(c.get_controller_epoch()).ok()?.ok()??;
            let id = self.zk_read(c.get_controller_id()).ok()?.ok()??;
            let (after, _) = self.zk_read(c.get_controller_epoch()).ok()?.ok()??;
            if before == after {
                return Some((id, after));
            }
        }
        None
    }

    /// The broker epoch (czxid of `/brokers/ids/<id>`), if registered.
    pub fn broker_epoch(&mut self, id: i32) -> Option<i64> {
        let c = self.zk_client().ok()?;
        self.zk_read(c.get_broker(id))
            .ok()?
            .ok()?
            .map(|b| b.broker_epoch)
    }

    /// Every broker's `/brokers/ids/<id>` as (czxid, ephemeralOwner), once all are there.
    pub fn registrations(&mut self) -> Vec<(i64, i64)> {
        let n = self.brokers.len() as i32;
        wait_until("every broker registered", WAIT, || {
            (1..=n)
                .map(|id| self.broker_registration(id))
                .collect::<Option<Vec<_>>>()
        })
        .expect("registrations")
    }

    /// Asserts that every broker kept its ZooKeeper session through a fault: the same
    /// registrations as `before` (czxid = broker epoch, owner session), the same controller and
    /// epoch, no broker logging an expired or a new session, and `topic`'s leaders agreeing
    /// between ZooKeeper and every broker on each of its `partitions`.
    pub fn assert_sessions_kept(
        &mut self,
        before: &[(i64, i64)],
        controller: (i32, i32),
        topic: &str,
        partitions: i32,
    ) {
        assert_eq!(
            self.registrations(),
            before,
            "(czxid, ephemeralOwner) per broker"
        );
        assert_eq!(
            self.controller(),
            Some(controller),
            "no controller failover"
        );
        let n = self.brokers.len() as i32;
        for id in 1..=n {
            let log = self.broker(id).log();
            for line in NEW_SESSION_LINES {
                assert!(!log.contains(line), "broker {id} logged '{line}'");
            }
        }
        self.wait_for_all_brokers(WAIT).unwrap();
        assert!(wait_until("consistent state", WAIT, || self
            .consistent(topic, partitions))
        .is_ok());
    }

    /// `/brokers/ids/<id>` as ZooKeeper holds it: (czxid = broker epoch, ephemeralOwner =
    /// the session that registered it), if registered.
    pub fn broker_registration(&mut self, id: i32) -> Option<(i64, i64)> {
        let c = self.zk_client().ok()?;
        let path = ::zk::data::BrokerIdZNode::path(id);
        self.zk_read(c.get_data_maybe(&path))
            .ok()?
            .ok()?
            .map(|(_, stat)| (stat.czxid, stat.ephemeral_owner))
    }

    /// (leader, leader_epoch, isr) of a partition from its state znode.
    pub fn partition_state(&mut self, topic: &str, partition: i32) -> Option<(i32, i32, Vec<i32>)> {
        let text = self
            .zk_get(&format!(
                "/brokers/topics/{topic}/partitions/{partition}/state"
            ))
            .ok()??;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        let isr = v["isr"]
            .as_array()?
            .iter()
            .filter_map(|x| x.as_i64().map(|x| x as i32))
            .collect();
        Some((
            v["leader"].as_i64()? as i32,
            v["leader_epoch"].as_i64()? as i32,
            isr,
        ))
    }

    /// Every running broker's Metadata agrees with ZooKeeper on each partition of `topic`
    /// (same leader, leader alive and in the ISR); returns the leaders.
    pub fn consistent(&mut self, topic: &str, partitions: i32) -> Option<Vec<i32>> {
        let ids = self.running();
        let mut leaders = Vec::new();
        for p in 0..partitions {
            let (leader, _, isr) = self.partition_state(topic, p)?;
            if !ids.contains(&leader) || !isr.contains(&leader) {
                return None;
            }
            leaders.push(leader);
        }
        for id in &ids {
            let md = self.metadata_from(*id, Some(&[topic])).ok()?;
            if crate::kafka::leaders(&md, topic)? != leaders {
                return None;
            }
        }
        Some(leaders)
    }

    /// Deletes a topic through the controller (DeleteTopics); returns the error code.
    pub fn delete_topic(&mut self, name: &str, timeout_ms: i32) -> anyhow::Result<i16> {
        let (controller, _) = wait_until("a controller", WAIT, || self.controller())?;
        let addr = self.broker(controller).address();
        Client::connect(&addr)?.delete_topic(name, timeout_ms)
    }

    /// A client connected to the active controller.
    pub fn controller_client(&mut self) -> anyhow::Result<Client> {
        let (controller, _) = wait_until("a controller", WAIT, || self.controller())?;
        let addr = self.broker(controller).address();
        Client::connect(&addr)
    }

    /// A topic's replica assignment from `/brokers/topics/<t>`.
    pub fn assignment(&mut self, topic: &str) -> Option<BTreeMap<i32, Vec<i32>>> {
        let text = self.zk_get(&format!("/brokers/topics/{topic}")).ok()??;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["partitions"]
            .as_object()?
            .iter()
            .map(|(p, r)| {
                Some((
                    p.parse().ok()?,
                    r.as_array()?
                        .iter()
                        .filter_map(|x| x.as_i64().map(|x| x as i32))
                        .collect(),
                ))
            })
            .collect()
    }

    /// Registered broker ids.
    pub fn registered_brokers(&mut self) -> Vec<i32> {
        let mut ids: Vec<i32> = self
            .zk_children("/brokers/ids")
            .unwrap_or_default()
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Metadata (all topics) from one broker.
    pub fn metadata_from(
        &self,
        id: i32,
        topics: Option<&[&str]>,
    ) -> anyhow::Result<MetadataResponse> {
        let b = self
            .brokers
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| anyhow::anyhow!("no broker {id}"))?;
        Client::connect(&b.address())?.metadata(topics)
    }

    /// Ids of brokers whose process is running.
    pub fn running(&mut self) -> Vec<i32> {
        self.brokers
            .iter_mut()
            .filter_map(|b| b.is_running().then_some(b.id))
            .collect()
    }

    /// Waits until every running broker is registered, a controller is elected, and every
    /// running broker's Metadata lists all running brokers and the controller.
    pub fn wait_for_all_brokers(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let want = self.running();
        wait_until(
            "all brokers registered and known to each other",
            timeout,
            || {
                if self.registered_brokers() != want {
                    return None;
                }
                let (controller, _) = self.controller()?;
                want.iter()
                    .all(|id| {
                        self.metadata_from(*id, Some(&[])).is_ok_and(|md| {
                            let mut ids: Vec<i32> =
                                md.brokers.iter().map(|b| b.node_id.0).collect();
                            ids.sort_unstable();
                            ids == want && md.controller_id.0 == controller
                        })
                    })
                    .then_some(())
            },
        )
    }

    /// Waits until every running broker's Metadata gives `topic` a live leader for each of its
    /// `partitions` partitions; returns the leaders.
    pub fn wait_for_leaders(
        &mut self,
        topic: &str,
        partitions: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<i32>> {
        let ids = self.running();
        wait_until(
            &format!("leaders for every partition of {topic}"),
            timeout,
            || {
                let mut seen = None;
                for id in &ids {
                    let md = self.metadata_from(*id, Some(&[topic])).ok()?;
                    let l = leaders(&md, topic)?;
                    if l.len() != partitions || !l.iter().all(|x| ids.contains(x)) {
                        return None;
                    }
                    if seen.as_ref().is_some_and(|s| *s != l) {
                        return None;
                    }
                    seen = Some(l);
                }
                seen
            },
        )
    }

    /// Creates a topic through the controller and waits for its leaders.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<Vec<i32>> {
        let (controller, _) = wait_until("a controller", WAIT, || self.controller())?;
        let addr = self.broker(controller).address();
        let r =
            Client::connect(&addr)?.create_topic(name, partitions, replication_factor, configs)?;
        let code = r.topics.first().map_or(-1, |t| t.error_code);
        anyhow::ensure!(code == 0, "CreateTopics {name} answered error code {code}");
        self.wait_for_leaders(name, partitions as usize, WAIT)
    }

    /// The folder of broker `id`'s log dir.
    pub fn log_dir(&self, id: i32) -> PathBuf {
        self.dir.join(format!("broker{id}")).join("logs")
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

/// The concatenated `.log` segment bytes of one replica of a partition (its folder in a
/// broker's log dir), in segment order; empty when the folder is missing. Replicas that agree
/// hold the same bytes.
pub fn log_bytes(dir: &Path) -> Vec<u8> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|x| x == "log"));
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(c) = self.zkc.take() {
            self.rt.block_on(c.close());
        }
        for b in &mut self.brokers {
            b.kill();
        }
        self.zk.kill_all();
    }
}
