//! The controller's failure handling with real processes: a killed controller, a killed leader,
//! a paused (zombie) controller, a broker whose ZooKeeper session expired, controlled shutdown
//! during a rolling restart, deletion with a broker down, and the controller's broker restarted
//! in a loop. Each test ends by checking ZooKeeper and every broker's Metadata agree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testcluster::cluster::WAIT;
use testcluster::producer::AckedProducer;
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};

/// One cluster at a time in this binary (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn options() -> ClusterOptions {
    ClusterOptions::default()
        .config("zookeeper.session.timeout.ms", "4000")
        .config("replica.lag.time.max.ms", "5000")
        .config("default.replication.factor", "3")
        .config("auto.leader.rebalance.enable", "false")
}

fn new_controller(c: &mut Cluster, old: (i32, i32)) -> (i32, i32) {
    wait_until("a new controller with a higher epoch", WAIT, || {
        c.controller().filter(|(_, e)| *e > old.1)
    })
    .expect("new controller")
}

/// Polls every broker's Metadata in the background and records any partition without a leader.
struct OfflineWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

fn watch_offline(addrs: Vec<String>, topic: &str) -> OfflineWatch {
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (s2, seen2, topic) = (stop.clone(), seen.clone(), topic.to_string());
    let handle = std::thread::spawn(move || {
        while !s2.load(Ordering::SeqCst) {
            for a in &addrs {
                let Ok(mut cl) = testcluster::kafka::Client::connect(a) else {
                    continue; // that broker is restarting
                };
                if let Ok(md) = cl.metadata(Some(&[&topic])) {
                    for t in &md.topics {
                        for p in &t.partitions {
                            if p.leader_id.0 < 0 {
                                seen2.lock().unwrap().push(format!(
                                    "partition {} offline per {a}",
                                    p.partition_index
                                ));
                            }
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    OfflineWatch {
        stop,
        seen,
        handle: Some(handle),
    }
}

impl OfflineWatch {
    fn finish(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.seen.lock().unwrap().clone()
    }
}

/// SIGKILL of the controller while a producer runs: another broker wins with epoch + 1,
/// leaders on the dead broker move, and no acknowledged record is lost.
#[test]
fn controller_sigkill_while_producing() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("orders", 6, 3, &[("min.insync.replicas", "2")])
        .unwrap();
    let prod = AckedProducer::start(&c, "orders", "all");
    prod.wait_for_acks(500, WAIT, "the producer to get acknowledgements");
    let old = c.controller().unwrap();
    c.broker(old.0).signal(Signal::Kill);
    let (new_id, new_epoch) = new_controller(&mut c, old);
    assert_ne!(new_id, old.0);
    assert_eq!(new_epoch, old.1 + 1);
    wait_until("leaders on live brokers only", WAIT, || {
        c.consistent("orders", 6)
    })
    .unwrap();
    let n = prod.acked();
    prod.wait_for_acks(n + 500, WAIT, "the producer to get acknowledgements");
    c.broker(old.0).wait_exit(Duration::from_secs(10)).unwrap();
    c.broker(old.0).restart().unwrap();
    c.wait_for_all_brokers(WAIT).unwrap();
    let acked = prod.finish();
    wait_until("ISR full again", WAIT, || {
        (0..6)
            .all(|p| {
                c.partition_state("orders", p)
                    .is_some_and(|s| s.2.len() == 3)
            })
            .then_some(())
    })
    .unwrap();
    // Every acknowledged record exactly once, in order per partition (idempotent producer: a
    // batch the dead leader had replicated but not acknowledged is retried and recognised).
    let report = acked.verify(&c, "orders", false);
    assert!(report.contains("lost=0"), "{report}");
    eprintln!("controller SIGKILL: {report}");
    assert!(c.consistent("orders", 6).is_some());
}

/// SIGKILL of a leader: its partitions get a new leader from the ISR (first alive in
/// assignment order), with a higher leader epoch, in ZooKeeper and in every Metadata.
#[test]
fn leader_sigkill_elects_from_isr() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    let leaders = c.create_topic("t", 3, 3, &[]).unwrap();
    let controller = c.controller().unwrap().0;
    let victim = *leaders
        .iter()
        .find(|l| **l != controller)
        .unwrap_or(&leaders[0]);
    let before: Vec<_> = (0..3).map(|p| c.partition_state("t", p).unwrap()).collect();
    c.broker(victim).signal(Signal::Kill);
    c.broker(victim).wait_exit(Duration::from_secs(10)).unwrap();
    let after = wait_until("leaders moved off the dead broker", WAIT, || {
        let l = c.consistent("t", 3)?;
        (!l.contains(&victim)).then_some(l)
    })
    .unwrap();
    for p in 0..3 {
        let (leader, epoch, isr) = c.partition_state("t", p).unwrap();
        assert_eq!(leader, after[p as usize]);
        assert!(
            !isr.contains(&victim),
            "dead broker left the ISR of partition {p}"
        );
        if before[p as usize].0 == victim {
            assert!(
                epoch > before[p as usize].1,
                "leader epoch bumped on partition {p}"
            );
            // First live ISR member in assignment order.
            let assignment = c.zk_get("/brokers/topics/t").unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_str(&assignment).unwrap();
            let first_alive = v["partitions"][p.to_string()]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap() as i32)
                .find(|b| *b != victim)
                .unwrap();
            assert_eq!(leader, first_alive, "partition {p}");
        }
    }
}

/// SIGSTOP of the controller past its session timeout, then SIGCONT: another broker takes
/// over; the old one, fenced by the epoch, changes nothing: ZooKeeper and every Metadata keep
/// naming the new controller, and the old one resigns.
#[test]
fn paused_controller_is_fenced() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("z", 3, 3, &[]).unwrap();
    let old = c.controller().unwrap();
    c.broker(old.0).signal(Signal::Stop);
    let new = new_controller(&mut c, old);
    assert_ne!(new.0, old.0);
    c.broker(old.0).signal(Signal::Cont);
    wait_until("the old controller to re-register", WAIT, || {
        c.registered_brokers().contains(&old.0).then_some(())
    })
    .unwrap();
    c.wait_for_all_brokers(WAIT).unwrap();
    assert_eq!(
        c.controller().unwrap(),
        new,
        "the zombie did not take the controller back"
    );
    let l = wait_until("consistent state", WAIT, || c.consistent("z", 3)).unwrap();
    assert_eq!(l.len(), 3);
    for p in 0..3 {
        let s = c
            .zk_get(&format!("/brokers/topics/z/partitions/{p}/state"))
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert!(v["controller_epoch"].as_i64().unwrap() <= new.1 as i64);
    }
    let log = c.broker(old.0).log();
    assert!(
        log.contains("resign") || log.contains("session expired"),
        "the paused controller noticed it lost the controllership"
    );
}

/// A broker whose ZooKeeper session expires (paused past the timeout) re-registers with a new
/// broker epoch, and the controller treats it as bounced: it gets its replicas back.
#[test]
fn broker_session_expiry_reregisters() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("s", 3, 3, &[]).unwrap();
    let controller = c.controller().unwrap().0;
    let victim = (1..=3).find(|b| *b != controller).unwrap();
    let epoch_before = c.broker_epoch(victim).unwrap();
    c.broker(victim).signal(Signal::Stop);
    wait_until("the paused broker's znode to vanish", WAIT, || {
        (!c.registered_brokers().contains(&victim)).then_some(())
    })
    .unwrap();
    c.broker(victim).signal(Signal::Cont);
    let epoch_after = wait_until("re-registration", WAIT, || c.broker_epoch(victim)).unwrap();
    assert!(epoch_after > epoch_before, "a new broker epoch");
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_until("the bounced broker back in every ISR", WAIT, || {
        (0..3)
            .all(|p| {
                c.partition_state("s", p)
                    .is_some_and(|s| s.2.contains(&victim))
            })
            .then_some(())
    })
    .unwrap();
    assert!(c.consistent("s", 3).is_some());
}

/// A rolling restart with controlled shutdown: every broker in turn is stopped with SIGTERM
/// (exit 0) and started again; producers and consumers never see an offline partition.
#[test]
fn rolling_restart_has_no_offline_partition() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("roll", 6, 3, &[("min.insync.replicas", "2")])
        .unwrap();
    let prod = AckedProducer::start(&c, "roll", "all");
    prod.wait_for_acks(200, WAIT, "the producer to get acknowledgements");
    let addrs: Vec<String> = c.brokers.iter().map(|b| b.address()).collect();
    let watch = watch_offline(addrs, "roll");
    for id in 1..=3 {
        let code = c.broker(id).stop(Duration::from_secs(60)).unwrap();
        assert_eq!(
            code,
            Some(0),
            "broker {id} exits 0 after controlled shutdown"
        );
        c.broker(id).restart().unwrap();
        c.wait_for_all_brokers(WAIT).unwrap();
        wait_until("full ISR before the next restart", WAIT, || {
            (0..6)
                .all(|p| c.partition_state("roll", p).is_some_and(|s| s.2.len() == 3))
                .then_some(())
        })
        .unwrap();
    }
    let offline = watch.finish();
    assert!(offline.is_empty(), "offline partitions seen: {offline:?}");
    let acked = prod.finish();
    // Availability (no offline partition), and every acknowledged record exactly once, in
    // order per partition.
    let report = acked.verify(&c, "roll", false);
    assert!(report.contains("lost=0"), "{report}");
    eprintln!("rolling restart: {report}");
}

/// Topic deletion with a replica's broker down: the deletion waits (the topic stays in
/// /admin/delete_topics) and completes when the broker returns; znodes and log folders go.
#[test]
fn topic_deletion_waits_for_a_dead_broker() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("doomed", 3, 3, &[]).unwrap();
    let controller = c.controller().unwrap().0;
    let victim = (1..=3).find(|b| *b != controller).unwrap();
    c.broker(victim).signal(Signal::Kill);
    c.broker(victim).wait_exit(Duration::from_secs(10)).unwrap();
    wait_until("the dead broker unregistered", WAIT, || {
        (!c.registered_brokers().contains(&victim)).then_some(())
    })
    .unwrap();
    let code = c.delete_topic("doomed", 2000).unwrap();
    assert!(code == 0 || code == 7, "DeleteTopics answered {code}");
    // While the broker is down the deletion cannot finish.
    std::thread::sleep(Duration::from_millis(500));
    assert!(c.zk_get("/brokers/topics/doomed").unwrap().is_some());
    assert!(c
        .zk_children("/admin/delete_topics")
        .unwrap()
        .contains(&"doomed".to_string()));
    c.broker(victim).restart().unwrap();
    wait_until("deletion to complete", WAIT, || {
        (c.zk_get("/brokers/topics/doomed").ok()?.is_none()
            && !c
                .zk_children("/admin/delete_topics")
                .ok()?
                .contains(&"doomed".to_string()))
        .then_some(())
    })
    .unwrap();
    wait_until("log folders removed on every broker", WAIT, || {
        (1..=3)
            .all(|id| {
                std::fs::read_dir(c.log_dir(id))
                    .map(|d| {
                        !d.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with("doomed-"))
                    })
                    .unwrap_or(true)
            })
            .then_some(())
    })
    .unwrap();
    for id in c.running() {
        let md = c.metadata_from(id, None).unwrap();
        assert!(md
            .topics
            .iter()
            .all(|t| t.name.as_ref().unwrap().0.as_str() != "doomed"));
    }
}

/// The controller's own broker restarted 20 times in a row: each time another broker takes
/// over with a higher epoch, and the cluster ends consistent.
#[test]
fn controller_broker_restarted_twenty_times() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("loop", 3, 3, &[]).unwrap();
    let first = c.controller().unwrap();
    let mut last = first;
    for round in 0..20 {
        let (id, _) = last;
        c.broker(id).signal(if round % 2 == 0 {
            Signal::Kill
        } else {
            Signal::Term
        });
        c.broker(id).wait_exit(Duration::from_secs(60)).unwrap();
        last = new_controller(&mut c, last);
        assert_ne!(
            last.0, id,
            "round {round}: the stopped broker cannot be the new controller"
        );
        c.broker(id).restart().unwrap();
        c.wait_for_all_brokers(WAIT).unwrap();
        wait_until("consistent after a restart", WAIT, || {
            c.consistent("loop", 3)
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(last.1 >= first.1 + 20);
    wait_until("every ISR full", WAIT, || {
        (0..3)
            .all(|p| c.partition_state("loop", p).is_some_and(|s| s.2.len() == 3))
            .then_some(())
    })
    .unwrap();
}
