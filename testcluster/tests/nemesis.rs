//! The nemesis (issue 22, item 8): a seeded random schedule of faults against 3 ZooKeeper
//! servers and 3 (or 5) brokers, each on a host of its own (network namespaces, as in
//! `partition.rs`), with an idempotent acks=all producer and a consumer group running
//! throughout.
//!
//! Faults: SIGKILL of a partition leader and restart; SIGKILL of the controller and restart;
//! two brokers killed at once (5 brokers only); the controller paused (SIGSTOP) past its session
//! and resumed; a broker cut from every ZooKeeper server for 3-15 s; a broker cut from its
//! peers; a rolling restart (SIGTERM, restart, one broker after the other); SIGKILL of the
//! ZooKeeper ensemble's leader and restart. Each fault is injected, held for a random time and
//! healed; then the suite waits for full recovery (every running broker registered, a
//! controller, every ISR full, every broker's Metadata agreeing with ZooKeeper, the producer
//! acknowledged on every partition) and notes how long it took.
//!
//! Checks:
//! - every broker a fault took out is registered again within `zookeeper.session.timeout.ms`
//!   + 5 s of the fault healing (a restarted one, a resumed one, one whose cut healed);
//! - no partition goes without an acknowledged write for longer than the session timeout + 5 s
//!   (a majority of brokers and ZooKeeper servers is up during every fault), except while a
//!   fault leaves it unable to take an acks=all write in Kafka too: both killed brokers among its
//!   three replicas (below `min.insync.replicas`=2), or its leader cut from its peers (the
//!   leader cannot shrink its ISR without the controller; all partitions the controller's
//!   followers lead when the controller is the one cut). Those intervals are subtracted;
//! - no acknowledged record lost, none duplicated, none reordered (a consumer reads the topic
//!   from the start, `py_verify_acked.py`);
//! - the consumer group received every acknowledged record;
//! - every replica of every partition is byte-identical at the end.
//!
//! The schedule: rounds of every fault type once, each round in a seeded random order, targets
//! and hold times drawn from the same seed; `NEMESIS_FAULTS` faults in all. Environment:
//! `NEMESIS_SEED` (default: from the clock; printed), `NEMESIS_FAULTS` (default: two rounds),
//! `NEMESIS_BROKERS` (3 or 5, default 3). The default schedule (14 faults) takes about 2
//! minutes; the test is not in CI yet (`#[ignore]`, see its reason and the README) while a
//! rolling restart can still stall a partition past the bound. The long run is a command in the
//! README. At the end it prints, per fault type, how many there were and the median and worst
//! time from healing to full recovery and to registration.
//!
//! Needs root (network namespaces); the cluster and its namespaces are removed at the end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testcluster::cluster::{log_bytes, WAIT};
use testcluster::zk::four_letter_at;
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};

/// `zookeeper.session.timeout.ms` (ZooKeeper's tickTime is 500 ms: granted as asked).
const SESSION: Duration = Duration::from_millis(4000);

/// Registration after healing, and the longest a partition may go without an acknowledged
/// write: session timeout + 5 s (issue 22).
const BOUND: Duration = Duration::from_millis(4000 + 5000);

const TOPIC: &str = "nemesis";
const PARTITIONS: i32 = 6;

/// splitmix64: a small seeded generator, the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A duration in [lo, hi] milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillLeader,
    KillController,
    KillTwo,
    PauseController,
    CutFromZk,
    CutFromPeers,
    RollingRestart,
    KillZkLeader,
}

impl Fault {
    fn all(brokers: i32) -> Vec<Fault> {
        use Fault::*;
        let mut v = vec![
            KillLeader,
            KillController,
            PauseController,
            CutFromZk,
            CutFromPeers,
            RollingRestart,
            KillZkLeader,
        ];
        if brokers >= 5 {
            v.push(KillTwo);
        }
        v
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn broker_host(id: i32) -> String {
    format!("b{id}")
}

fn options(brokers: i32) -> ClusterOptions {
    let mut o = ClusterOptions::default()
        .netns()
        .brokers(brokers)
        .config(
            "zookeeper.session.timeout.ms",
            &SESSION.as_millis().to_string(),
        )
        .config("min.insync.replicas", "2")
        .config("replica.lag.time.max.ms", "2000")
        .config("controller.socket.timeout.ms", "2000")
        .config("request.timeout.ms", "5000")
        .config("auto.leader.rebalance.enable", "false");
    o.zk_nodes = 3;
    o
}

/// A background client process (python, confluent-kafka) stopped by a stop file.
struct Client {
    child: Child,
    stop: PathBuf,
    log: PathBuf,
}

impl Client {
    fn stop(&mut self, timeout: Duration) {
        std::fs::write(&self.stop, b"").unwrap();
        wait_until("a client to exit", timeout, || {
            self.child.try_wait().ok().flatten()
        })
        .unwrap();
    }

    fn last_log_lines(&self) -> String {
        last_lines(&self.log)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 20 lines of a client's log.
fn last_lines(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// An interval during which a partition is excused from the availability bound.
struct Excuse {
    partition: i32,
    from_ms: i64,
    to_ms: i64,
}

/// What one fault did and how long recovery took.
struct Record {
    fault: Fault,
    detail: String,
    inject_ms: i64,
    heal_ms: i64,
    /// Healing to the slowest affected broker's registration.
    registered: Option<Duration>,
    /// Healing to full recovery.
    recovered: Duration,
}

struct Nemesis {
    c: Cluster,
    rng: Rng,
    seed: u64,
    brokers: i32,
    ack_log: PathBuf,
    producer_log: PathBuf,
    excuses: Vec<Excuse>,
    failures: Vec<String>,
}

impl Nemesis {
    fn replicas(&mut self) -> BTreeMap<i32, Vec<i32>> {
        self.c.assignment(TOPIC).expect("the topic's assignment")
    }

    fn zk_hosts(&self) -> Vec<String> {
        (1..=self.c.zk.servers.len())
            .map(|i| format!("zk{i}"))
            .collect()
    }

    fn zk_leader(&self) -> Option<u32> {
        self.c.zk.servers.iter().find_map(|s| {
            four_letter_at(&s.host(), s.client_port, "srvr")
                .is_some_and(|a| a.contains("Mode: leader"))
                .then_some(s.id)
        })
    }

    /// Every running broker registered, a controller, every ZooKeeper server serving, every
    /// ISR full and every broker's Metadata agreeing with ZooKeeper.
    fn recovered(&mut self) -> bool {
        let running = self.c.running();
        if self.c.registered_brokers() != running || self.c.controller().is_none() {
            return false;
        }
        if !self.c.zk.servers.iter().all(|s| s.is_ok()) {
            return false;
        }
        let Some(replicas) = self.c.assignment(TOPIC) else {
            return false;
        };
        for (p, r) in &replicas {
            match self.c.partition_state(TOPIC, *p) {
                Some((_, _, isr)) if isr.len() == r.len() => {}
                _ => return false,
            }
        }
        self.c.consistent(TOPIC, PARTITIONS).is_some()
    }

    /// Waits for full recovery and for the producer to be acknowledged again on every
    /// partition (the next fault must not start while one is still stalled); the time since
    /// `healed`.
    fn wait_recovered(&mut self, healed: Instant, what: &str) -> Duration {
        let seed = self.seed;
        wait_until(&format!("full recovery after {what}"), WAIT, || {
            self.recovered().then_some(())
        })
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let from = std::fs::metadata(&self.ack_log).map_or(0, |m| m.len());
        wait_until(
            &format!("acknowledgements on every partition after {what}"),
            WAIT,
            || {
                (partitions_acked_since(&self.ack_log, from).len() == PARTITIONS as usize)
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| {
            let acked = partitions_acked_since(&self.ack_log, from);
            let states: Vec<_> = (0..PARTITIONS)
                .map(|p| (p, self.c.partition_state(TOPIC, p)))
                .collect();
            panic!(
                "seed {seed}: {e}: partitions acknowledged {acked:?}, states {states:?}; \
                 producer's last lines:\n{}",
                last_lines(&self.producer_log)
            )
        });
        healed.elapsed()
    }

    /// Waits until each of `ids` is registered, with a new broker epoch where an old one is
    /// given (a broker that was killed or whose session expired must not be passed by its old
    /// registration lingering); the longest time since `healed`. A broker registered later
    /// than [`BOUND`] is a failure (noted, the run goes on).
    fn wait_registered(
        &mut self,
        ids: &[(i32, Option<i64>)],
        healed: Instant,
        what: &str,
    ) -> Duration {
        let seed = self.seed;
        let mut worst = Duration::ZERO;
        for (id, old) in ids {
            wait_until(
                &format!("broker {id} registered after {what}"),
                WAIT,
                || {
                    self.c
                        .broker_epoch(*id)
                        .filter(|e| old.is_none_or(|old| old != *e))
                        .map(|_| ())
                },
            )
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let took = healed.elapsed();
            if took > BOUND {
                self.failures.push(format!(
                    "{what}: broker {id} registered {took:?} after healing (bound {BOUND:?})"
                ));
            }
            worst = worst.max(took);
        }
        worst
    }

    fn excuse(&mut self, partitions: &[i32], from_ms: i64, to_ms: i64) {
        for p in partitions {
            self.excuses.push(Excuse {
                partition: *p,
                from_ms,
                to_ms,
            });
        }
    }

    fn random_broker(&mut self) -> i32 {
        1 + self.rng.below(self.brokers as u64) as i32
    }

    fn run(&mut self, fault: Fault) -> Record {
        let inject_ms = now_ms();
        let (detail, healed, heal_ms, affected) = match fault {
            Fault::KillLeader | Fault::KillController => {
                let id = if fault == Fault::KillLeader {
                    let p = self.rng.below(PARTITIONS as u64) as i32;
                    self.c.partition_state(TOPIC, p).expect("partition state").0
                } else {
                    self.c.controller().expect("a controller").0
                };
                let hold = self.rng.millis(500, 5000);
                let epoch = self.c.broker_epoch(id);
                self.c.broker(id).kill();
                std::thread::sleep(hold);
                self.c.broker(id).restart().expect("restart");
                (
                    format!("broker {id} down {hold:?}"),
                    Instant::now(),
                    now_ms(),
                    vec![(id, epoch)],
                )
            }
            Fault::KillTwo => {
                let a = self.random_broker();
                let b = loop {
                    let b = self.random_broker();
                    if b != a {
                        break b;
                    }
                };
                let both: Vec<i32> = self
                    .replicas()
                    .into_iter()
                    .filter(|(_, r)| r.contains(&a) && r.contains(&b))
                    .map(|(p, _)| p)
                    .collect();
                let hold = self.rng.millis(500, 5000);
                let (ea, eb) = (self.c.broker_epoch(a), self.c.broker_epoch(b));
                self.c.broker(a).kill();
                self.c.broker(b).kill();
                std::thread::sleep(hold);
                self.c.broker(a).restart().expect("restart");
                self.c.broker(b).restart().expect("restart");
                let heal_ms = now_ms();
                self.excuse(&both, inject_ms, heal_ms);
                (
                    format!("brokers {a} and {b} down {hold:?}, partitions {both:?} below min ISR"),
                    Instant::now(),
                    heal_ms,
                    vec![(a, ea), (b, eb)],
                )
            }
            Fault::PauseController => {
                let id = self.c.controller().expect("a controller").0;
                let hold = SESSION + self.rng.millis(1000, 5000);
                let epoch = self.c.broker_epoch(id);
                self.c.broker(id).signal(Signal::Stop);
                std::thread::sleep(hold);
                self.c.broker(id).signal(Signal::Cont);
                (
                    format!("controller {id} paused {hold:?}"),
                    Instant::now(),
                    now_ms(),
                    vec![(id, epoch)],
                )
            }
            Fault::CutFromZk => {
                let id = self.random_broker();
                let hold = self.rng.millis(3000, 15000);
                let zks = self.zk_hosts();
                let zks: Vec<&str> = zks.iter().map(String::as_str).collect();
                let net = self.c.netns.as_mut().expect("network namespaces");
                net.isolate(&broker_host(id), &zks).unwrap();
                std::thread::sleep(hold);
                for z in &zks {
                    net.heal(&broker_host(id), z).unwrap();
                }
                (
                    format!("broker {id} cut from ZooKeeper {hold:?}"),
                    Instant::now(),
                    now_ms(),
                    // Its session may or may not have expired: either registration will do.
                    vec![(id, None)],
                )
            }
            Fault::CutFromPeers => {
                let id = self.random_broker();
                let controller = self.c.controller().map(|c| c.0);
                let stalled: Vec<i32> = (0..PARTITIONS)
                    .filter(|p| {
                        self.c
                            .partition_state(TOPIC, *p)
                            .is_some_and(|(l, _, isr)| {
                                l == id || (controller == Some(id) && isr.contains(&id))
                            })
                    })
                    .collect();
                let hold = self.rng.millis(2000, 8000);
                let peers: Vec<String> = (1..=self.brokers)
                    .filter(|b| *b != id)
                    .map(broker_host)
                    .collect();
                let peers: Vec<&str> = peers.iter().map(String::as_str).collect();
                let net = self.c.netns.as_mut().expect("network namespaces");
                net.isolate(&broker_host(id), &peers).unwrap();
                std::thread::sleep(hold);
                for p in &peers {
                    net.heal(&broker_host(id), p).unwrap();
                }
                let heal_ms = now_ms();
                self.excuse(&stalled, inject_ms, heal_ms);
                let role = if controller == Some(id) {
                    " (the controller)"
                } else {
                    ""
                };
                (
                    format!(
                        "broker {id}{role} cut from its peers {hold:?}, partitions {stalled:?} wait"
                    ),
                    Instant::now(),
                    now_ms(),
                    vec![],
                )
            }
            Fault::RollingRestart => {
                let mut worst = Duration::ZERO;
                let mut slowest = Duration::ZERO;
                let mut healed = Instant::now();
                for id in 1..=self.brokers {
                    let seed = self.seed;
                    let epoch = self.c.broker_epoch(id);
                    self.c
                        .broker(id)
                        .stop(WAIT)
                        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                    self.c.broker(id).restart().expect("restart");
                    healed = Instant::now();
                    let what = format!("rolling restart of broker {id}");
                    worst = worst.max(self.wait_registered(&[(id, epoch)], healed, &what));
                    slowest = slowest.max(self.wait_recovered(healed, &what));
                }
                (
                    format!(
                        "{} brokers restarted in turn, slowest registration {worst:?}, \
                         slowest recovery {slowest:?}",
                        self.brokers
                    ),
                    healed,
                    now_ms(),
                    vec![],
                )
            }
            Fault::KillZkLeader => {
                let seed = self.seed;
                let leader = wait_until("a ZooKeeper leader", WAIT, || self.zk_leader())
                    .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
                let hold = self.rng.millis(1000, 5000);
                let s = self.c.zk.server(leader).expect("server");
                s.kill();
                std::thread::sleep(hold);
                s.start().expect("ZooKeeper restart");
                (
                    format!("ZooKeeper server {leader} (leader) down {hold:?}"),
                    Instant::now(),
                    now_ms(),
                    vec![],
                )
            }
        };
        let what = format!("{fault:?} ({detail})");
        let registered =
            (!affected.is_empty()).then(|| self.wait_registered(&affected, healed, &what));
        let recovered = self.wait_recovered(healed, &what);
        if fault == Fault::KillZkLeader {
            // Nobody's session was lost: the same brokers as before, all of them.
            let all: Vec<i32> = (1..=self.brokers).collect();
            if self.c.registered_brokers() != all {
                self.failures.push(format!(
                    "{what}: registered {:?}",
                    self.c.registered_brokers()
                ));
            }
        }
        Record {
            fault,
            detail,
            inject_ms,
            heal_ms,
            registered,
            recovered,
        }
    }
}

/// The partitions with an acknowledgement noted in the ack log after byte `offset`.
fn partitions_acked_since(ack_log: &Path, offset: u64) -> std::collections::BTreeSet<i32> {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(ack_log) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
    }
    text.lines()
        .filter(|l| l.ends_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn median_and_worst(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() - 1])
}

/// Gaps longer than [`BOUND`] (less the excused time within them) between acknowledged writes
/// of a partition, over `[from_ms, to_ms]`.
fn availability_gaps(
    ack_log: &Path,
    excuses: &[Excuse],
    records: &[Record],
    from_ms: i64,
    to_ms: i64,
) -> (Vec<String>, BTreeMap<i32, i64>) {
    let mut acks: BTreeMap<i32, Vec<i64>> = (0..PARTITIONS).map(|p| (p, vec![])).collect();
    for l in lines(ack_log) {
        let mut it = l.split_whitespace();
        if let (Some(p), Some(t)) = (
            it.next().and_then(|x| x.parse::<i32>().ok()),
            it.next().and_then(|x| x.parse::<i64>().ok()),
        ) {
            if t >= from_ms && t <= to_ms {
                acks.entry(p).or_default().push(t);
            }
        }
    }
    let mut bad = Vec::new();
    let mut longest = BTreeMap::new();
    for (p, mut ts) in acks {
        ts.sort_unstable();
        let mut points = vec![from_ms];
        points.extend(ts);
        points.push(to_ms);
        for w in points.windows(2) {
            let (a, b) = (w[0], w[1]);
            let excused: i64 = excuses
                .iter()
                .filter(|e| e.partition == p)
                .map(|e| (b.min(e.to_ms) - a.max(e.from_ms)).max(0))
                .sum();
            let gap = b - a - excused;
            let l = longest.entry(p).or_insert(0);
            *l = (*l).max(gap);
            if gap > BOUND.as_millis() as i64 {
                let during: Vec<String> = records
                    .iter()
                    .filter(|r| r.inject_ms <= b && r.heal_ms + r.recovered.as_millis() as i64 >= a)
                    .map(|r| format!("{:?} ({})", r.fault, r.detail))
                    .collect();
                bad.push(format!(
                    "partition {p}: no acknowledged write for {gap} ms (excused {excused} ms) \
                     from {a} to {b}; faults around: {during:?}"
                ));
            }
        }
    }
    (bad, longest)
}

#[test]
#[ignore = "not in CI yet: about 4 runs in 10 of the 14-fault schedule fail the availability \
            check after a rolling restart (a partition 9.1-9.4 s without an acknowledged write \
            against 9 s), an open broker problem of issue 22; run it with --ignored"]
fn a_seeded_schedule_of_faults_loses_nothing_and_the_cluster_recovers_in_time() {
    let seed: u64 = env_or(
        "NEMESIS_SEED",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000_000),
    );
    let brokers: i32 = env_or("NEMESIS_BROKERS", 3);
    assert!(
        brokers == 3 || brokers == 5,
        "NEMESIS_BROKERS is 3 or 5 (RF 3)"
    );
    let types = Fault::all(brokers);
    let count: usize = env_or("NEMESIS_FAULTS", 2 * types.len());
    let mut rng = Rng(seed);
    // Rounds of every fault type in a seeded order: each type as often as the others.
    let mut schedule = Vec::new();
    while schedule.len() < count {
        let mut round = types.clone();
        for i in (1..round.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            round.swap(i, j);
        }
        schedule.extend(round);
    }
    schedule.truncate(count);
    eprintln!(
        "nemesis: seed={seed} brokers={brokers} faults={count} (NEMESIS_SEED={seed} \
         NEMESIS_BROKERS={brokers} NEMESIS_FAULTS={count} to repeat)"
    );
    let started = Instant::now();

    let mut c = Cluster::start(options(brokers)).expect("cluster");
    c.create_topic(TOPIC, PARTITIONS, 3, &[]).expect("topic");
    let acked = c.path().join("nemesis.acked");
    let ack_log = c.path().join("nemesis.acklog");
    let bootstrap = c.bootstrap();
    let stop = c.path().join("producer.stop");
    let root = testcluster::workspace_root();
    let mut producer = Client {
        child: testcluster::command(root.join(".venv/bin/python"))
            .arg(root.join("testcluster/clients/py_acked_producer.py"))
            .args([&bootstrap, TOPIC, "all"])
            .arg(&stop)
            .arg(&acked)
            .arg("--idempotent")
            .arg("--ack-log")
            .arg(&ack_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(c.path().join("producer.log")).unwrap())
            .spawn()
            .expect("python producer"),
        stop,
        log: c.path().join("producer.log"),
    };
    let consumed: Vec<PathBuf> = (1..=2)
        .map(|i| c.path().join(format!("consumer{i}.keys")))
        .collect();
    let mut consumers: Vec<Client> = consumed
        .iter()
        .enumerate()
        .map(|(i, out)| Client::spawn_consumer(&c, &bootstrap, out, &format!("consumer{}", i + 1)))
        .collect();
    wait_until("first acknowledgements", WAIT, || {
        (count_lines(&acked) > 100).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; producer:\n{}", producer.last_log_lines()));

    let mut n = Nemesis {
        c,
        rng,
        seed,
        brokers,
        ack_log: ack_log.clone(),
        producer_log: producer.log.clone(),
        excuses: vec![],
        failures: vec![],
    };
    let from_ms = now_ms();
    let mut records = Vec::new();
    for (i, fault) in schedule.iter().enumerate() {
        let r = n.run(*fault);
        eprintln!(
            "nemesis: seed={seed} fault {}/{count} {:?}: {}; registered {:?}, recovered {:?}",
            i + 1,
            r.fault,
            r.detail,
            r.registered,
            r.recovered
        );
        records.push(r);
    }
    let to_ms = now_ms();

    producer.stop(Duration::from_secs(120));
    let out = testcluster::command(root.join(".venv/bin/python"))
        .arg(root.join("testcluster/clients/py_verify_acked.py"))
        .args([&bootstrap, TOPIC])
        .arg(&acked)
        .output()
        .expect("verify");
    let verdict = String::from_utf8_lossy(&out.stdout).into_owned();
    let acked_keys: std::collections::BTreeSet<String> = lines(&acked).into_iter().collect();
    let group = wait_until(
        "the consumer group to receive every acknowledged record",
        WAIT,
        || {
            let seen: std::collections::BTreeSet<String> =
                consumed.iter().flat_map(|p| lines(p)).collect();
            acked_keys.is_subset(&seen).then_some(seen.len())
        },
    );
    for cons in &mut consumers {
        cons.stop(WAIT);
    }
    let replicas = n.replicas();
    let identical = wait_until("identical replicas", WAIT, || {
        replicas
            .iter()
            .all(|(p, r)| {
                let logs: Vec<Vec<u8>> = r
                    .iter()
                    .map(|id| log_bytes(&n.c.log_dir(*id).join(format!("{TOPIC}-{p}"))))
                    .collect();
                !logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])
            })
            .then_some(())
    });
    let (gaps, longest) = availability_gaps(&ack_log, &n.excuses, &records, from_ms, to_ms);

    // The report: per fault type, count, median and worst time to full recovery.
    let mut by_type: BTreeMap<Fault, Vec<&Record>> = BTreeMap::new();
    for r in &records {
        by_type.entry(r.fault).or_default().push(r);
    }
    let mut report = format!(
        "nemesis report: seed={seed} brokers={brokers} zookeeper=3 faults={} took {:?}\n\
         {:<16} {:>5} {:>14} {:>14} {:>14}\n",
        records.len(),
        started.elapsed(),
        "fault",
        "count",
        "recovery med",
        "recovery max",
        "register max"
    );
    for (f, rs) in &by_type {
        let (med, max) = median_and_worst(rs.iter().map(|r| r.recovered).collect());
        let reg = rs.iter().filter_map(|r| r.registered).max();
        report.push_str(&format!(
            "{:<16} {:>5} {:>14} {:>14} {:>14}\n",
            format!("{f:?}"),
            rs.len(),
            format!("{:.1?}", med),
            format!("{:.1?}", max),
            reg.map_or("-".into(), |d| format!("{d:.1?}"))
        ));
    }
    report.push_str(&format!(
        "longest time without an acknowledged write per partition (ms, excused time taken off): \
         {longest:?}\nverify: {}",
        verdict.trim()
    ));
    eprintln!("{report}");

    let mut failures = std::mem::take(&mut n.failures);
    if !verdict.starts_with("OK") {
        failures.push(format!(
            "verification: {verdict}{}\nproducer:\n{}",
            String::from_utf8_lossy(&out.stderr),
            producer.last_log_lines()
        ));
    }
    if count_lines(&acked) == 0 {
        failures.push("nothing was acknowledged".into());
    }
    if let Err(e) = group {
        failures.push(format!(
            "{e}; consumer 1:\n{}",
            consumers[0].last_log_lines()
        ));
    }
    if let Err(e) = identical {
        failures.push(e.to_string());
    }
    failures.extend(gaps);
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failure(s):\n{}\n{report}",
        failures.len(),
        failures.join("\n")
    );
}

impl Client {
    fn spawn_consumer(c: &Cluster, bootstrap: &str, out: &Path, name: &str) -> Client {
        let root = testcluster::workspace_root();
        let stop = c.path().join(format!("{name}.stop"));
        let log = c.path().join(format!("{name}.log"));
        let child = testcluster::command(root.join(".venv/bin/python"))
            .arg(root.join("testcluster/clients/py_group_consumer.py"))
            .args([bootstrap, TOPIC, "nemesis-group"])
            .arg(&stop)
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("consumer log"))
            .spawn()
            .expect("python consumer");
        Client { child, stop, log }
    }
}
