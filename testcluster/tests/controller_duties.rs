//! The controller's other duties with real processes: preferred replica election (automatic
//! and on demand), partition reassignment (also across a controller failover), and the
//! metrics endpoint an operator reads.

use std::sync::Mutex;
use std::time::Duration;

use testcluster::cluster::WAIT;
use testcluster::probe::{http_get, metric, metrics_address};
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn preferred(c: &mut Cluster, topic: &str, p: i32) -> i32 {
    c.assignment(topic).unwrap()[&p][0]
}

/// Move leadership off a broker by restarting it with controlled shutdown; returns once it is
/// back in every ISR (but not leading, unless an election moves leaders back).
fn bounce(c: &mut Cluster, id: i32, topic: &str, partitions: i32) {
    assert_eq!(c.broker(id).stop(Duration::from_secs(60)).unwrap(), Some(0));
    c.broker(id).restart().unwrap();
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_until("the broker back in every ISR", WAIT, || {
        (0..partitions)
            .all(|p| {
                c.partition_state(topic, p)
                    .is_some_and(|s| s.2.contains(&id))
            })
            .then_some(())
    })
    .unwrap();
}

/// On demand: after a broker's restart its preferred partitions are led by others; an
/// ElectLeaders(preferred) request moves them back; a second one answers ELECTION_NOT_NEEDED.
#[test]
fn preferred_election_on_demand() {
    let _g = serial();
    let mut c =
        Cluster::start(ClusterOptions::default().config("auto.leader.rebalance.enable", "false"))
            .unwrap();
    c.create_topic("pref", 3, 3, &[]).unwrap();
    let victim = preferred(&mut c, "pref", 0);
    bounce(&mut c, victim, "pref", 3);
    let (leader, _, _) = c.partition_state("pref", 0).unwrap();
    assert_ne!(
        leader, victim,
        "controlled shutdown moved the leadership away"
    );
    let results = c
        .controller_client()
        .unwrap()
        .elect_leaders(0, "pref", &[0, 1, 2])
        .unwrap();
    let p0 = results.iter().find(|(p, _)| *p == 0).unwrap().1;
    assert_eq!(
        p0, 0,
        "partition 0 elected its preferred leader: {results:?}"
    );
    wait_until("preferred leaders everywhere", WAIT, || {
        let l = c.consistent("pref", 3)?;
        (0..3)
            .all(|p| l[p as usize] == preferred(&mut c, "pref", p))
            .then_some(())
    })
    .unwrap();
    let again = c
        .controller_client()
        .unwrap()
        .elect_leaders(0, "pref", &[0])
        .unwrap();
    assert_eq!(again, vec![(0, 84)], "ELECTION_NOT_NEEDED");
}

/// Automatic: with auto.leader.rebalance.enable and a short check interval the controller
/// moves leadership back to the preferred replicas by itself.
#[test]
fn preferred_election_automatic() {
    let _g = serial();
    let mut c = Cluster::start(
        ClusterOptions::default()
            .config("auto.leader.rebalance.enable", "true")
            .config("leader.imbalance.check.interval.seconds", "1")
            .config("leader.imbalance.per.broker.percentage", "0"),
    )
    .unwrap();
    c.create_topic("auto", 3, 3, &[]).unwrap();
    let victim = preferred(&mut c, "auto", 1);
    bounce(&mut c, victim, "auto", 3);
    wait_until("the controller to restore preferred leaders", WAIT, || {
        let l = c.consistent("auto", 3)?;
        (0..3)
            .all(|p| l[p as usize] == preferred(&mut c, "auto", p))
            .then_some(())
    })
    .unwrap();
}

/// A reassignment moves a partition to new replicas with Kafka's phases; the old replica's
/// folder is deleted and the data is readable from the new leader.
#[test]
fn reassignment_moves_replicas() {
    let _g = serial();
    let mut c = Cluster::start(ClusterOptions::default().brokers(4)).unwrap();
    c.create_topic("moves", 1, 2, &[]).unwrap();
    let old = c.assignment("moves").unwrap()[&0].clone();
    let target: Vec<i32> = (1..=4).filter(|b| !old.contains(b)).collect();
    let r = c
        .controller_client()
        .unwrap()
        .alter_reassignments("moves", &[(0, Some(target.clone()))])
        .unwrap();
    assert_eq!(r, vec![(0, 0)]);
    wait_until("the reassignment to complete", WAIT, || {
        let a = c.assignment("moves")?;
        let (l, _, isr) = c.partition_state("moves", 0)?;
        let mut isr = isr;
        isr.sort_unstable();
        (a[&0] == target
            && isr == target
            && target.contains(&l)
            && c.controller_client()
                .ok()?
                .list_reassignments()
                .ok()?
                .is_empty())
        .then_some(())
    })
    .unwrap();
    for b in old {
        wait_until("the old replica's folder deleted", WAIT, || {
            (!c.log_dir(b).join("moves-0").exists()).then_some(())
        })
        .unwrap();
    }
    c.wait_for_leaders("moves", 1, WAIT).unwrap();
}

/// A reassignment interrupted by a controller failover is resumed by the new controller
/// (from the adding/removing replicas recorded in /brokers/topics/<t>).
#[test]
fn reassignment_survives_controller_failover() {
    let _g = serial();
    let mut c = Cluster::start(
        ClusterOptions::default()
            .brokers(4)
            .config("zookeeper.session.timeout.ms", "4000"),
    )
    .unwrap();
    c.create_topic("moving", 1, 2, &[]).unwrap();
    let old = c.assignment("moving").unwrap()[&0].clone();
    let (controller, _) = c.controller().unwrap();
    // Target: the two brokers outside the current assignment, one of them not the controller.
    let target: Vec<i32> = (1..=4).filter(|b| !old.contains(b)).collect();
    // Pause one target replica so the reassignment cannot finish before the failover.
    let slow = *target.iter().find(|b| **b != controller).unwrap();
    c.broker(slow).signal(Signal::Stop);
    let r = c
        .controller_client()
        .unwrap()
        .alter_reassignments("moving", &[(0, Some(target.clone()))])
        .unwrap();
    assert_eq!(r, vec![(0, 0)]);
    let topic = c.zk_get("/brokers/topics/moving").unwrap().unwrap();
    assert!(
        topic.contains("\"adding_replicas\":{\"0\""),
        "reassignment recorded: {topic}"
    );
    let old_controller = c.controller().unwrap();
    c.broker(old_controller.0).signal(Signal::Kill);
    c.broker(old_controller.0)
        .wait_exit(Duration::from_secs(10))
        .unwrap();
    wait_until("a new controller", WAIT, || {
        c.controller().filter(|x| x.1 > old_controller.1)
    })
    .unwrap();
    c.broker(slow).signal(Signal::Cont);
    c.broker(old_controller.0).restart().unwrap();
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_until("the resumed reassignment to complete", WAIT, || {
        let a = c.assignment("moving")?;
        let (l, _, mut isr) = c.partition_state("moving", 0)?;
        isr.sort_unstable();
        (a[&0] == target && isr == target && target.contains(&l)).then_some(())
    })
    .unwrap();
    let topic = c.zk_get("/brokers/topics/moving").unwrap().unwrap();
    assert!(topic.contains("\"adding_replicas\":{}"), "{topic}");
}

/// The metrics endpoint: exactly one broker says it is the active controller, partition
/// counts add up, and a dead broker shows as under-replicated partitions.
#[test]
fn metrics_endpoint() {
    let _g = serial();
    let mut c = Cluster::start(ClusterOptions::default().config("metrics.port", "0")).unwrap();
    c.create_topic("m", 3, 3, &[]).unwrap();
    let addr_of = |c: &mut Cluster, id: i32| -> String {
        metrics_address(&c.broker(id).log()).expect("metrics address in the log")
    };
    let pages: Vec<String> = (1..=3)
        .map(|id| http_get(&addr_of(&mut c, id), "/metrics").unwrap())
        .collect();
    let active: f64 = pages
        .iter()
        .map(|p| metric(p, "kafka_controller_KafkaController_ActiveControllerCount").unwrap())
        .sum();
    assert_eq!(active, 1.0);
    let (controller, epoch) = c.controller().unwrap();
    let cp = &pages[(controller - 1) as usize];
    assert_eq!(
        metric(cp, "kafka_controller_KafkaController_GlobalPartitionCount"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            cp,
            "kafka_controller_KafkaController_OfflinePartitionsCount"
        ),
        Some(0.0)
    );
    assert!(cp.contains(&format!("{}", epoch)));
    // Every broker follows two of the three partitions and reports its lag on each (Kafka's
    // FetcherLagMetrics ConsumerLag), 0 once the followers are caught up.
    wait_until(
        "a fetcher lag of 0 on two partitions per broker",
        WAIT,
        || {
            (1..=3)
                .all(|id| {
                    let page = http_get(&addr_of(&mut c, id), "/metrics").unwrap_or_default();
                    let lags: Vec<&str> = page
                        .lines()
                        .filter(|l| {
                            l.starts_with("kafka_server_FetcherLagMetrics_ConsumerLag{topic=\"m\"")
                        })
                        .collect();
                    lags.len() == 2 && lags.iter().all(|l| l.ends_with(" 0"))
                })
                .then_some(())
        },
    )
    .unwrap();
    // Kill a non-controller: the others report under-replicated partitions.
    let victim = (1..=3).find(|b| *b != controller).unwrap();
    c.broker(victim).signal(Signal::Kill);
    c.broker(victim).wait_exit(Duration::from_secs(10)).unwrap();
    let addr = addr_of(&mut c, controller);
    wait_until("UnderReplicatedPartitions", WAIT, || {
        let total: f64 = (1..=3)
            .filter(|b| *b != victim)
            .map(|b| {
                let a = if b == controller {
                    addr.clone()
                } else {
                    addr_of(&mut c, b)
                };
                metric(
                    &http_get(&a, "/metrics").unwrap_or_default(),
                    "kafka_server_ReplicaManager_UnderReplicatedPartitions",
                )
                .unwrap_or(0.0)
            })
            .sum();
        (total == 3.0).then_some(())
    })
    .unwrap();
}
