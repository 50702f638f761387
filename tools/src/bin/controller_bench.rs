//! Controller benchmark on real processes (issue 4): a real ZooKeeper (Debian's, fsync on) and
//! three real `target/release/broker` processes, started with the testcluster library. Not a
//! test: it prints a table of seconds.
//!
//! For each partition count (topics of at most `--per-topic` partitions, created through
//! CreateTopics, replication factor `--replication-factor`, leaders spread by the broker's own
//! assignment):
//!
//! 1. **controller failover**: `/controller` is deleted from ZooKeeper (Kafka's "znode deleted"
//!    trigger; the old controller keeps running and contests again). From the delete:
//!    (a) `/controller_epoch` is higher and `/controller` names the winner;
//!    (b) the winner logs `controller failover complete` for that epoch (log timestamp);
//!    (c) every broker's Metadata names the new controller and gives every partition a live
//!    leader.
//! 2. **broker failure**: SIGKILL of the non-controller broker leading the most partitions.
//!    Times are from its `/brokers/ids/<id>` znode vanishing (seen through a ZooKeeper watch;
//!    the session timeout between the SIGKILL and that moment is printed apart):
//!    (a) the controller logs `broker membership changed` naming it dead;
//!    (b) the controller logs `broker failure handled`;
//!    (c) every live broker's Metadata gives every partition a live leader.
//!    The broker is then restarted and the bench waits for every ISR to be full again.
//! 3. **controlled shutdown**: SIGTERM of the non-controller broker leading the most
//!    partitions. From the SIGTERM: (b) the controller logs `controlled shutdown handled` for
//!    it with no partition remaining; (c) no other broker's Metadata shows it as a leader and
//!    every partition has a live leader; and, apart, the process exits.
//!
//! `--shutdown-leaders N` adds a run on a fresh cluster where one broker is the preferred
//! leader of exactly N partitions (explicit assignment), for scenario 3 alone.
//!
//! Metadata is polled in a loop (all topics, v12, every broker by a thread of its own, a broker
//! that passed is not asked again); a condition counts as met when the last broker first
//! answered with it holding, so (c) is an upper bound (the slowest answer's duration is
//! printed). In scenarios 1 and 2 a thread first asks for no topic (a few hundred bytes) until
//! its broker names the new controller, or no longer lists the dead broker: neither (c) can
//! hold before that, and at 100,000 partitions the full answers, megabytes each, took the CPU
//! the controller being measured needed. After an answer that fails the condition a thread
//! pauses as long as that answer took (at least 5 ms), so (c) is late by at most about two
//! answers. (b) comes from the broker's log timestamp, on the same clock.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use kafka_protocol::messages::MetadataResponse;
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};
use zk::client::KafkaZkClient;

#[derive(Parser, Debug)]
#[command(about = "Controller failover, broker failure and controlled shutdown timings")]
struct Args {
    /// Partition counts, run one after the other, each on a fresh cluster (0: none).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    partitions: Vec<usize>,
    /// Replication factor of the bench topics (3 = every broker hosts every partition).
    #[arg(long, default_value_t = 3)]
    replication_factor: i16,
    /// Partitions per topic (a topic znode holds the whole assignment).
    #[arg(long, default_value_t = 10_000)]
    per_topic: usize,
    /// Also run controlled shutdown of a broker leading exactly this many partitions on a
    /// fresh cluster (0 = skip).
    #[arg(long, default_value_t = 10_000)]
    shutdown_leaders: usize,
    /// Rounds of the `--shutdown-leaders` run. After each round the broker is restarted and a
    /// preferred election (ElectLeaders) gives it every leadership back. The first round is
    /// also the first time the fresh ZooKeeper's JVM runs its write path at this rate
    /// (its JIT compiler then takes a sixth of the machine); later rounds see a warm
    /// ZooKeeper, as a running cluster has.
    #[arg(long, default_value_t = 2)]
    shutdown_rounds: usize,
    /// Scenarios to run per partition count (failover, broker, shutdown).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "failover,broker,shutdown"
    )]
    scenarios: Vec<String>,
    /// The brokers' `zookeeper.session.timeout.ms` (Kafka's default is 18000). Creating
    /// 100,000 partitions on 2 cores starved the brokers' ZooKeeper pings past 6 s. Times are
    /// taken from the znode's deletion, so this only delays when a killed broker is noticed.
    #[arg(long, default_value_t = 6000)]
    session_timeout_ms: u64,
    /// Time limit of each wait, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Data folder (kept); a temporary folder when absent.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// One line of the result table.
#[derive(Debug, Clone)]
struct Row {
    partitions: usize,
    scenario: String,
    a: Option<f64>,
    b: Option<f64>,
    c: Option<f64>,
    notes: String,
}

/// What one broker's Metadata says about the bench topics.
#[derive(Debug, Default, Clone)]
struct Summary {
    controller_id: i32,
    /// The brokers the answer lists.
    brokers: Vec<i32>,
    partitions: usize,
    /// Partitions with no error and a leader, by leader id.
    led_by: BTreeMap<i32, usize>,
    /// Partitions whose ISR holds every replica.
    full_isr: usize,
}

impl Summary {
    fn of(md: &MetadataResponse) -> Summary {
        let mut s = Summary {
            controller_id: md.controller_id.0,
            brokers: md.brokers.iter().map(|b| b.node_id.0).collect(),
            ..Summary::default()
        };
        for t in &md.topics {
            if !t
                .name
                .as_ref()
                .is_some_and(|n| n.0.starts_with(TOPIC_PREFIX))
            {
                continue;
            }
            for p in &t.partitions {
                s.partitions += 1;
                if p.error_code == 0 && p.leader_id.0 >= 0 {
                    *s.led_by.entry(p.leader_id.0).or_default() += 1;
                }
                if p.isr_nodes.len() == p.replica_nodes.len() {
                    s.full_isr += 1;
                }
            }
        }
        s
    }

    fn led_by_live(&self, live: &[i32]) -> usize {
        live.iter()
            .map(|id| self.led_by.get(id).copied().unwrap_or(0))
            .sum()
    }
}

const TOPIC_PREFIX: &str = "cbench-";

struct Bench {
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    zk: KafkaZkClient,
    timeout: Duration,
    /// Duration of the slowest Metadata answer seen in the last poll.
    last_round: Duration,
    /// Per broker: the `wall0` of the last log scan and the byte offset of its first line
    /// stamped at or after it, so a wait re-reads only the log's new part (at 100,000
    /// partitions a broker's log is 100 MB, and reading it all every 50 ms took half a core
    /// while the controller was still at work).
    scan_from: std::cell::RefCell<BTreeMap<i32, (SystemTime, u64)>>,
}

impl Bench {
    fn start(args: &Args, label: &str) -> anyhow::Result<Bench> {
        let opts = ClusterOptions {
            brokers: 3,
            dir: args.dir.as_ref().map(|d| d.join(label)),
            ..ClusterOptions::default()
        }
        // The bench measures the failure paths, not the periodic rebalance.
        .config("auto.leader.rebalance.enable", "false")
        .config(
            "zookeeper.session.timeout.ms",
            &args.session_timeout_ms.to_string(),
        );
        let cluster = Cluster::start(opts)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let zk = rt.block_on(KafkaZkClient::connect(
            &cluster.zookeeper_connect(),
            Duration::from_secs(30),
        ))?;
        Ok(Bench {
            cluster,
            rt,
            zk,
            timeout: Duration::from_secs(args.timeout),
            last_round: Duration::ZERO,
            scan_from: Default::default(),
        })
    }

    fn summary(&self, id: i32) -> Option<Summary> {
        self.cluster
            .metadata_from(id, None)
            .ok()
            .map(|md| Summary::of(&md))
    }

    /// Polls the Metadata of `ids` until `ok` holds for every one; returns the time from `t0`
    /// at which the last of them first answered with `ok` holding. Each broker is asked by a
    /// thread of its own, again and again until its answer passes (in these scenarios what
    /// `ok` tests, once true, stays true), so the figure is late by at most one Metadata answer
    /// of the last broker.
    ///
    /// With a `gate`, a thread first asks for no topic at all (brokers and controller only,
    /// a few hundred bytes) until `gate` holds, and only then for every topic: `gate` is a
    /// condition that must hold before `ok` can (the new controller named, the dead broker
    /// gone), so the megabyte answers of 100,000 partitions are not encoded and decoded while
    /// the controller being measured is still loading its state on the same two cores.
    fn poll_metadata(
        &mut self,
        what: &str,
        t0: Instant,
        ids: &[i32],
        gate: Option<&(dyn Fn(&Summary) -> bool + Sync)>,
        ok: impl Fn(&Summary) -> bool + Sync,
    ) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + self.timeout;
        let addrs: Vec<String> = ids
            .iter()
            .map(|id| {
                self.cluster
                    .brokers
                    .iter()
                    .find(|b| b.id == *id)
                    .map(|b| b.address())
                    .ok_or_else(|| anyhow::anyhow!("no broker {id}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let ok = &ok;
        let results: Vec<Option<(Duration, Duration)>> = std::thread::scope(|s| {
            let handles: Vec<_> = addrs
                .iter()
                .map(|addr| {
                    s.spawn(move || {
                        let mut slowest = Duration::ZERO;
                        let mut gated = gate.is_some();
                        let mut conn: Option<testcluster::kafka::Client> = None;
                        while Instant::now() <= deadline {
                            let asked = Instant::now();
                            let topics: Option<&[&str]> = if gated { Some(&[]) } else { None };
                            let answer = match conn.take() {
                                Some(c) => Ok(c),
                                None => testcluster::kafka::Client::connect(addr),
                            }
                            .and_then(|mut c| {
                                let md = c.metadata(topics)?;
                                conn = Some(c);
                                Ok(Summary::of(&md))
                            })
                            .ok();
                            let took = asked.elapsed();
                            if let Some(g) = gate.filter(|_| gated) {
                                if answer.as_ref().is_some_and(g) {
                                    gated = false;
                                } else {
                                    std::thread::sleep(Duration::from_millis(2));
                                }
                                continue;
                            }
                            slowest = slowest.max(took);
                            if answer.as_ref().is_some_and(ok) {
                                return Some((t0.elapsed(), slowest));
                            }
                            // Pause as long as the answer took (at least 5 ms): at 100,000
                            // partitions an answer is megabytes to encode and decode, and three
                            // threads asking back to back took more CPU than the 2-core
                            // machine has, from the very controller being measured.
                            std::thread::sleep(took.max(Duration::from_millis(5)));
                        }
                        None
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().ok().flatten())
                .collect()
        });
        let mut last = Duration::ZERO;
        let mut slowest = Duration::ZERO;
        for r in results {
            let Some((at, answer)) = r else {
                anyhow::bail!("timed out after {:?} waiting for {what}", self.timeout);
            };
            last = last.max(at);
            slowest = slowest.max(answer);
        }
        self.last_round = slowest;
        Ok(last)
    }

    /// Creates the bench topics (RF `rf`) and waits until every broker's Metadata shows every
    /// partition led with a full ISR.
    fn create_topics(&mut self, n: usize, per_topic: usize, rf: i16) -> anyhow::Result<f64> {
        let t0 = Instant::now();
        let mut client = self.cluster.controller_client()?;
        // CreateTopics waits up to 30 s broker-side; creating 10,000 more partitions on a
        // cluster that already hosts many takes longer, and the answer is then late.
        client.set_read_timeout(Duration::from_secs(120))?;
        let mut left = n;
        let mut t = 0;
        while left > 0 {
            let k = left.min(per_topic);
            let r = client.create_topic(&format!("{TOPIC_PREFIX}{t}"), k as i32, rf, &[])?;
            let code = r.topics.first().map_or(-1, |t| t.error_code);
            // REQUEST_TIMED_OUT (7): the topic is created, its partitions not all led yet
            // within the request's 30 s; the wait below covers them.
            anyhow::ensure!(
                code == 0 || code == 7,
                "CreateTopics answered error code {code}"
            );
            left -= k;
            t += 1;
        }
        self.wait_settled(n, t0)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Every running broker's Metadata: all `n` partitions led by running brokers, full ISRs.
    fn wait_settled(&mut self, n: usize, t0: Instant) -> anyhow::Result<()> {
        let live = self.cluster.running();
        let l2 = live.clone();
        self.poll_metadata("every partition led, full ISRs", t0, &live, None, |s| {
            s.partitions == n && s.led_by_live(&l2) == n && s.full_isr == n
        })?;
        // A scenario starts on a settled cluster: the brokers' background work after the
        // last change (leader-epoch checkpoints of thousands of partitions, written and
        // synced off the request path) is done when its thread is gone and the disks are idle.
        let quiet = Instant::now();
        match wait_until("a settled cluster", Duration::from_secs(120), || {
            cluster_settled(Duration::from_millis(500))
        }) {
            Ok(()) => eprintln!(
                "[controller_bench] cluster settled (no epoch-checkpoint thread, disks idle) after {:.1} s",
                quiet.elapsed().as_secs_f64()
            ),
            Err(e) => eprintln!("[controller_bench] going on without a settled cluster: {e}"),
        }
        Ok(())
    }

    fn controller(&mut self) -> anyhow::Result<(i32, i32)> {
        wait_until("a controller", self.timeout, || self.cluster.controller())
    }

    /// The non-controller broker leading the most bench partitions, and that count.
    fn busiest_non_controller(&mut self, controller: i32) -> anyhow::Result<(i32, usize)> {
        let s = self
            .summary(controller)
            .ok_or_else(|| anyhow::anyhow!("no Metadata from the controller"))?;
        self.cluster
            .running()
            .into_iter()
            .filter(|id| *id != controller)
            .map(|id| (id, s.led_by.get(&id).copied().unwrap_or(0)))
            .max_by_key(|(id, k)| (*k, -id))
            .ok_or_else(|| anyhow::anyhow!("no broker besides the controller"))
    }

    /// Scenario 1: delete `/controller`.
    fn failover(&mut self, n: usize) -> anyhow::Result<Row> {
        let (old_id, old_epoch) = self.controller()?;
        let seen: Arc<Mutex<Option<(Instant, i32, i32)>>> = Arc::default();
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        self.rt
            .block_on(self.zk.backend().delete("/controller".into(), None))
            .map_err(|e| anyhow::anyhow!("delete /controller: {e}"))?;
        // (a): a ZooKeeper watch on /controller fires when the winner creates it (in the same
        // multi-op that bumps /controller_epoch); then both are read.
        let (exists, watch) = self.rt.block_on(self.zk.exists_and_watch("/controller"))?;
        let zk = self.zk.clone();
        let s2 = seen.clone();
        let timeout = self.timeout;
        let poller = self.rt.spawn(async move {
            if !exists {
                let _ = tokio::time::timeout(timeout, watch).await;
            }
            let at = Instant::now();
            if let (Ok(Some((e, _))), Ok(Some(id))) = (
                zk.get_controller_epoch().await,
                zk.get_controller_id().await,
            ) {
                if e > old_epoch {
                    *s2.lock().expect("poisoned") = Some((at, id, e));
                }
            }
        });
        let ids = self.cluster.running();
        let live = ids.clone();
        let seen2 = seen.clone();
        let new_named = move |s: &Summary| {
            let new_id = seen2.lock().expect("poisoned").map(|(_, id, _)| id);
            new_id.is_some_and(|id| s.controller_id == id)
        };
        let c = self.poll_metadata(
            "Metadata naming the new controller",
            t0,
            &ids,
            Some(&new_named),
            |s| new_named(s) && s.led_by_live(&live) == n,
        )?;
        let round = self.last_round;
        let (ta, new_id, new_epoch) = wait_until("the new controller", self.timeout, || {
            *seen.lock().expect("poisoned")
        })?;
        poller.abort();
        let epoch_of = |l: &str| field(l, "controller_epoch") == Some(new_epoch as usize);
        let b = self.wait_log_line(new_id, wall0, |l| {
            l.contains("controller failover complete") && epoch_of(l)
        })?;
        // Leaders do not move here, so (c) holds as soon as the new controller's first
        // UpdateMetadata (brokers only) lands; when the full one (every partition, new epoch)
        // was applied by every broker comes from the brokers' logs.
        let mut full = 0.0f64;
        for id in self.cluster.running() {
            let t = wait_until("the full UpdateMetadata", self.timeout, || {
                let mut sum = 0usize;
                self.scan_log(id, wall0, |l| {
                    if l.contains("metadata cache updated by UpdateMetadata") && epoch_of(l) {
                        sum += field(l, "partitions").unwrap_or(0);
                    }
                    sum >= n
                })
            })?;
            full = full.max(t);
        }
        Ok(Row {
            partitions: n,
            scenario: "controller failover (/controller deleted)".into(),
            a: Some(ta.duration_since(t0).as_secs_f64()),
            b: Some(b),
            c: Some(c.as_secs_f64()),
            notes: format!(
                "broker {old_id} (epoch {old_epoch}) -> broker {new_id} (epoch {new_epoch}); \
                 every broker applied the new epoch's UpdateMetadata for all partitions at \
                 {full:.3} s; slowest Metadata answer {:.3} s",
                round.as_secs_f64()
            ),
        })
    }

    /// Scenario 2: SIGKILL of the busiest non-controller broker, then its restart.
    fn broker_failure(&mut self, n: usize) -> anyhow::Result<Row> {
        let (ctrl, _) = self.controller()?;
        let (victim, led) = self.busiest_non_controller(ctrl)?;
        let path = format!("/brokers/ids/{victim}");
        let (exists, watch) = self.rt.block_on(self.zk.exists_and_watch(&path))?;
        anyhow::ensure!(exists, "{path} is absent before the kill");
        let gone = self.rt.spawn(async move {
            let kind = watch.await;
            (Instant::now(), kind)
        });
        let wall_kill = SystemTime::now();
        let t_kill = Instant::now();
        self.cluster.broker(victim).signal(Signal::Kill);
        let (t0, kind) = self.rt.block_on(gone)?;
        anyhow::ensure!(
            kind == zk::backend::WatchKind::Deleted,
            "watch on {path} fired with {kind:?}"
        );
        let wall0 = wall_kill + t0.duration_since(t_kill);
        self.cluster.broker(victim).kill(); // reap
        let live: Vec<i32> = self.cluster.running();
        let l2 = live.clone();
        // Leaders move with an UpdateMetadata, which also carries the live brokers.
        let victim_gone = move |s: &Summary| !s.brokers.contains(&victim);
        let c = self.poll_metadata(
            "live leaders after a broker failure",
            t0,
            &live,
            Some(&victim_gone),
            |s| s.partitions == n && s.led_by_live(&l2) == n,
        )?;
        let round = self.last_round;
        let dead_field = format!("dead_brokers={{{victim}}}");
        let a = self.wait_log_line(ctrl, wall0, |l| {
            l.contains("broker membership changed") && l.contains(&dead_field)
        })?;
        let b = self.wait_log_line(ctrl, wall0, |l| {
            l.contains("broker failure handled") && l.contains(&dead_field)
        })?;
        eprintln!(
            "[controller_bench] {n} partitions, broker failure: (a) {a:.3} (b) {b:.3} (c) {:.3} s; \
             restarting broker {victim}",
            c.as_secs_f64()
        );
        // Back to a full cluster for the next scenario.
        let restart = Instant::now();
        self.cluster.broker(victim).restart()?;
        self.cluster.wait_for_all_brokers(self.timeout)?;
        self.wait_settled(n, restart)?;
        Ok(Row {
            partitions: n,
            scenario: "broker failure (SIGKILL, from znode gone)".into(),
            a: Some(a),
            b: Some(b),
            c: Some(c.as_secs_f64()),
            notes: format!(
                "broker {victim} led {led}; SIGKILL -> znode gone {:.2} s (session timeout); \
                 slowest Metadata answer {:.3} s; restart to full ISRs {:.1} s",
                t0.duration_since(t_kill).as_secs_f64(),
                round.as_secs_f64(),
                restart.elapsed().as_secs_f64()
            ),
        })
    }

    /// After a controlled shutdown and restart of `target`, the preferred replica of all `n`
    /// partitions (in `topics` topics of `per_topic`): a preferred election (ElectLeaders)
    /// gives it every leadership back; waits for a settled cluster before and after.
    fn lead_again(
        &mut self,
        target: i32,
        topics: usize,
        n: usize,
        per_topic: usize,
    ) -> anyhow::Result<()> {
        let t0 = Instant::now();
        self.cluster.wait_for_all_brokers(self.timeout)?;
        self.wait_settled(n, t0)?;
        let live = self.cluster.running();
        let mut client = self.cluster.controller_client()?;
        client.set_read_timeout(Duration::from_secs(120))?;
        let mut left = n;
        for t in 0..topics {
            let k = left.min(per_topic);
            let partitions: Vec<i32> = (0..k as i32).collect();
            for (p, code) in client.elect_leaders(0, &format!("{TOPIC_PREFIX}{t}"), &partitions)? {
                // 84: ELECTION_NOT_NEEDED (already led by its preferred replica).
                anyhow::ensure!(
                    code == 0 || code == 84,
                    "preferred election of partition {p} answered {code}"
                );
            }
            left -= k;
        }
        self.poll_metadata(
            "every leadership back on the preferred replica",
            t0,
            &live,
            None,
            |s| s.partitions == n && s.led_by.get(&target).copied() == Some(n) && s.full_isr == n,
        )?;
        self.wait_settled(n, t0)?;
        eprintln!(
            "[controller_bench] broker {target} leads all {n} again after {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Scenario 3: SIGTERM (controlled shutdown) of the busiest non-controller broker.
    fn controlled_shutdown(&mut self, n: usize, label: &str) -> anyhow::Result<Row> {
        let (ctrl, _) = self.controller()?;
        let (target, led) = self.busiest_non_controller(ctrl)?;
        let pid = self
            .cluster
            .broker(target)
            .pid()
            .ok_or_else(|| anyhow::anyhow!("broker {target} has no process"))?;
        let exited: Arc<Mutex<Option<Instant>>> = Arc::default();
        let e2 = exited.clone();
        let wall0 = SystemTime::now();
        let t0 = Instant::now();
        self.cluster.broker(target).signal(Signal::Term);
        // Exit seen from /proc without reaping (a zombie, or gone), every millisecond.
        let watcher = std::thread::spawn(move || loop {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
            if stat.is_empty() || state == Some(Some('Z')) {
                *e2.lock().expect("poisoned") = Some(Instant::now());
                return;
            }
            if t0.elapsed() > Duration::from_secs(900) {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        });
        let others: Vec<i32> = self
            .cluster
            .running()
            .into_iter()
            .filter(|id| *id != target)
            .collect();
        let o2 = others.clone();
        let c = self.poll_metadata(
            "no leadership left on the stopped broker",
            t0,
            &others,
            None,
            |s| s.partitions == n && s.led_by_live(&o2) == n,
        )?;
        let round = self.last_round;
        let _ = watcher.join();
        let exit = exited
            .lock()
            .expect("poisoned")
            .map(|t| t.duration_since(t0).as_secs_f64());
        let code = self.cluster.broker(target).wait_exit(self.timeout)?;
        let b = self.wait_log_line(ctrl, wall0, |l| {
            l.contains("controlled shutdown handled")
                && field(l, "broker_id") == Some(target as usize)
                && l.contains("remaining_partitions=0")
        })?;
        self.cluster.broker(target).restart()?;
        Ok(Row {
            partitions: n,
            scenario: format!("controlled shutdown (SIGTERM){label}"),
            a: None,
            b: Some(b),
            c: Some(c.as_secs_f64()),
            notes: format!(
                "broker {target} led {led}; process exit {} (code {code:?}); slowest Metadata answer \
                 {:.3} s",
                exit.map_or("not seen".to_string(), |e| format!("{e:.3} s")),
                round.as_secs_f64()
            ),
        })
    }

    /// Seconds from `wall0` to the first line of broker `id`'s log, stamped at or after
    /// `wall0`, that `want` accepts; waits for it.
    fn wait_log_line(
        &self,
        id: i32,
        wall0: SystemTime,
        want: impl Fn(&str) -> bool,
    ) -> anyhow::Result<f64> {
        wait_until(&format!("a log line of broker {id}"), self.timeout, || {
            self.scan_log(id, wall0, &want)
        })
    }

    /// One pass over broker `id`'s log: lines stamped at or after `wall0` go to `want` in
    /// order until it accepts one; returns that line's seconds from `wall0`. Complete lines
    /// only (the writer may be in the middle of one).
    fn scan_log(
        &self,
        id: i32,
        wall0: SystemTime,
        mut want: impl FnMut(&str) -> bool,
    ) -> Option<f64> {
        use std::io::{Read, Seek, SeekFrom};
        let file = &self.cluster.brokers.iter().find(|b| b.id == id)?.log_file;
        let since = wall0.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
        let start = match self.scan_from.borrow().get(&id) {
            Some((w, offset)) if *w == wall0 => *offset,
            _ => 0,
        };
        let mut bytes = Vec::new();
        let mut f = std::fs::File::open(file).ok()?;
        f.seek(SeekFrom::Start(start)).ok()?;
        f.read_to_end(&mut bytes).ok()?;
        // Where the next pass starts: the first line at or after `wall0`, or, while there is
        // none yet, the end of the complete lines read (all of them earlier).
        let mut first: Option<usize> = None;
        let mut pos = 0;
        let mut found = None;
        for raw in bytes.split_inclusive(|b| *b == b'\n') {
            let at = pos;
            if !raw.ends_with(b"\n") {
                break;
            }
            pos += raw.len();
            let text = String::from_utf8_lossy(&raw[..raw.len() - 1]);
            let l = strip_ansi(&text);
            let Some(ts) = log_timestamp(&l) else {
                continue;
            };
            if ts < since - 0.000_5 {
                continue;
            }
            first.get_or_insert(at);
            if want(&l) {
                found = Some((ts - since).max(0.0));
                break;
            }
        }
        let next = start + first.unwrap_or(pos) as u64;
        self.scan_from.borrow_mut().insert(id, (wall0, next));
        found
    }
}

/// The integer value of the last `name=` in a tracing line (the event's own field comes after
/// those of its spans, e.g. `controller_event{... controller_epoch=0}: ... controller_epoch=2`).
fn field(line: &str, name: &str) -> Option<usize> {
    let key = format!(" {name}=");
    let at = line.rfind(&key)? + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Removes ANSI colour sequences (`ESC [ ... m`); a line without any is borrowed as it is.
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Seconds since the Unix epoch of a tracing line's leading `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn log_timestamp(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: f64 = t.next()?.parse().ok()?;
    // Days from civil (proleptic Gregorian), after H. Hinnant's public-domain algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// Lets this process and its children (the brokers) open as many files as the kernel allows:
/// every partition replica keeps its segment, offset index and time index open, as Kafka does.
fn raise_nofile_limit() {
    let max: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1_048_576);
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return;
        }
        let want = libc::rlimit {
            rlim_cur: max as libc::rlim_t,
            rlim_max: max as libc::rlim_t,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            // Not privileged: raise the soft limit to the hard one.
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        eprintln!(
            "[controller_bench] RLIMIT_NOFILE {} / {}",
            r.rlim_cur, r.rlim_max
        );
    }
}

fn fmt(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.3}"))
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| partitions | scenario | (a) s | (b) s | (c) s | notes |");
    println!("|---:|---|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.partitions,
            r.scenario,
            fmt(r.a),
            fmt(r.b),
            fmt(r.c),
            r.notes
        );
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=3).contains(&args.replication_factor),
        "--replication-factor must be 1 to 3 (3 brokers)"
    );
    anyhow::ensure!(args.per_topic > 0, "--per-topic must be positive");
    for s in &args.scenarios {
        anyhow::ensure!(
            ["failover", "broker", "shutdown"].contains(&s.as_str()),
            "unknown scenario {s} (failover, broker, shutdown)"
        );
    }
    raise_nofile_limit();
    let mut rows = Vec::new();
    for &n in args.partitions.iter().filter(|n| **n > 0) {
        eprintln!("[controller_bench] {n} partitions: starting the cluster");
        let mut bench = Bench::start(&args, &format!("p{n}"))?;
        let created = bench.create_topics(n, args.per_topic, args.replication_factor)?;
        eprintln!("[controller_bench] {n} partitions created and led in {created:.1} s");
        rows.push(Row {
            partitions: n,
            scenario: format!("(setup) create, RF {}", args.replication_factor),
            a: None,
            b: None,
            c: Some(created),
            notes: "CreateTopics until every broker's Metadata shows all led, full ISRs".into(),
        });
        for s in &args.scenarios {
            let row = match s.as_str() {
                "failover" => bench.failover(n)?,
                "broker" => bench.broker_failure(n)?,
                _ => bench.controlled_shutdown(n, "")?,
            };
            eprintln!("[controller_bench] {row:?}");
            rows.push(row);
            // The next scenario starts on a settled cluster too (a failover's new controller
            // re-sends every partition's state after (c)).
            bench.cluster.wait_for_all_brokers(bench.timeout)?;
            let t = Instant::now();
            bench.wait_settled(n, t)?;
        }
        print_table(&rows);
    }
    if args.shutdown_leaders > 0 {
        let n = args.shutdown_leaders;
        eprintln!("[controller_bench] controlled shutdown of a broker leading {n}");
        let mut bench = Bench::start(&args, &format!("shutdown{n}"))?;
        let (ctrl, _) = bench.controller()?;
        let mut ids = bench.cluster.running();
        ids.retain(|id| *id != ctrl);
        let target = ids[0];
        // Preferred leader `target` for every partition, the other brokers as followers.
        let mut replicas = vec![target];
        replicas.extend(
            bench
                .cluster
                .running()
                .into_iter()
                .filter(|id| *id != target)
                .take(args.replication_factor as usize - 1),
        );
        let t0 = Instant::now();
        let mut client = bench.cluster.controller_client()?;
        let mut left = n;
        let mut t = 0;
        while left > 0 {
            let k = left.min(args.per_topic);
            let code = client
                .create_topic_assigned(&format!("{TOPIC_PREFIX}{t}"), &vec![replicas.clone(); k])?;
            anyhow::ensure!(code == 0, "CreateTopics answered error code {code}");
            left -= k;
            t += 1;
        }
        bench.wait_settled(n, t0)?;
        for round in 1..=args.shutdown_rounds.max(1) {
            if round > 1 {
                bench.lead_again(target, t, n, args.per_topic)?;
            }
            let label = format!(", one broker leads all, round {round}");
            let row = bench.controlled_shutdown(n, &label)?;
            eprintln!("[controller_bench] {row:?}");
            rows.push(row);
            print_table(&rows);
        }
    }
    Ok(())
}

/// Sectors written and I/Os in flight, summed over the machine's block devices.
fn disk_activity() -> Option<(u64, u64)> {
    let stats = std::fs::read_to_string("/proc/diskstats").ok()?;
    let mut written = 0u64;
    let mut in_flight = 0u64;
    for line in stats.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 12 || f[2].starts_with("loop") || f[2].starts_with("ram") {
            continue;
        }
        written += f[9].parse::<u64>().ok()?;
        in_flight += f[11].parse::<u64>().ok()?;
    }
    Some((written, in_flight))
}

/// Whether a process on this machine has a thread named `name` (as `/proc/*/task/*/comm`
/// shows it, at most 15 bytes).
fn thread_running(name: &str) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        std::fs::read_dir(p.path().join("task")).is_ok_and(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
        })
    })
}

/// `Some(())` when the cluster's background work is done: no broker has its leader-epoch
/// checkpoint thread (`epoch-checkpoints`) running, and no block device wrote a sector or
/// had an I/O in flight for `window` (sampled every 10 ms). The thread counts on its own:
/// it writes thousands of small files into the page cache long before anything reaches the
/// disk.
fn cluster_settled(window: Duration) -> Option<()> {
    let (first, _) = disk_activity()?;
    let start = Instant::now();
    while start.elapsed() < window {
        let (written, in_flight) = disk_activity()?;
        if written != first || in_flight != 0 || thread_running("epoch-checkpoin") {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps_parse() {
        let t = log_timestamp("2026-11-29T17:54:19.250000Z  INFO x: y").unwrap();
        // 2026-11-29 is day 20,786 since 1970-01-01.
        assert!((t - (20_786.0 * 86_400.0 + 17.0 * 3600.0 + 54.0 * 60.0 + 19.25)).abs() < 1e-6);
        assert_eq!(log_timestamp("no timestamp"), None);
        assert_eq!(strip_ansi("\u{1b}[2mA\u{1b}[0m B"), "A B");
        let l = "T INFO controller_event{event=\"Reelect\" controller_epoch=0}: x: \
                 controller failover complete controller_epoch=12 partitions=1000";
        assert_eq!(field(l, "controller_epoch"), Some(12));
        assert_eq!(field(l, "partitions"), Some(1000));
        assert_eq!(field(l, "broker_id"), None);
    }
}
