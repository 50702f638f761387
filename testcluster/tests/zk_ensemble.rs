//! Faults of ZooKeeper itself, against a real 3-server ensemble (issue 22, item 6): its leader
//! killed, a minority of servers down, the whole ensemble down for 30 s, the whole ensemble
//! paused past the session timeout, and one server paused (a slow ZooKeeper) while the
//! controller works.
//!
//! What Kafka does, and what these tests hold the broker to: the data path never touches
//! ZooKeeper, so leaders keep serving reads and writes (acks=all too, while the ISR does not
//! need to change) whatever happens to the ensemble. A broker's session lives in the
//! ensemble, not in one server: when a server dies its clients reconnect to another one with
//! their session id and keep the session (same `/brokers/ids/<id>` czxid and owner, so the same
//! broker epoch), and a quorum that starts again on its data restores every session with a
//! fresh timeout, so that a whole-ensemble outage expires nobody either (ZooKeeper's
//! `SessionTrackerImpl` is rebuilt from the snapshot's session table; only a running quorum
//! that hears nothing from a client expires it: a paused ensemble, whose clocks ran on, does).
//! Kafka's `KafkaZkClient` retries every request that failed with CONNECTIONLOSS once it is
//! connected again (`retryRequestsUntilConnected`), so a ZooKeeper that stalls for seconds
//! delays the controller's work but never loses it.
//!
//! Cluster: 3 ZooKeeper servers (tickTime 500 ms, syncLimit 10 ticks), 3 brokers,
//! `zookeeper.session.timeout.ms` 6 s, RF 3, `min.insync.replicas` 2.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testcluster::cluster::{NEW_SESSION_LINES, WAIT};
use testcluster::probe::kcat_produce;
use testcluster::producer::AckedProducer;
use testcluster::zk::four_letter;
use testcluster::{wait_until, Cluster, ClusterOptions, Signal};

/// One cluster at a time in this binary (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `zookeeper.session.timeout.ms` of every broker.
const SESSION: Duration = Duration::from_millis(6000);

fn options() -> ClusterOptions {
    let mut o = ClusterOptions::default()
        .config(
            "zookeeper.session.timeout.ms",
            &SESSION.as_millis().to_string(),
        )
        .config("default.replication.factor", "3")
        .config("min.insync.replicas", "2")
        .config("auto.leader.rebalance.enable", "false")
        .config("metrics.port", "0");
    o.zk_nodes = 3;
    o
}

/// The id of the server that answers `srvr` with `Mode: leader`, if one does.
fn zk_leader(c: &Cluster) -> Option<u32> {
    c.zk.servers
        .iter()
        .find(|s| four_letter(s.client_port, "srvr").is_some_and(|a| a.contains("Mode: leader")))
        .map(|s| s.id)
}

/// The `Mode:` a server reports (`leader`, `follower`), `None` while it does not serve.
fn zk_mode(c: &Cluster, id: u32) -> Option<String> {
    let s = c.zk.servers.iter().find(|s| s.id == id)?;
    let a = four_letter(s.client_port, "srvr")?;
    a.lines()
        .find_map(|l| l.strip_prefix("Mode: "))
        .map(str::to_string)
}

/// One acks=all record to each of `topic`'s 3 partitions with kcat (a stock client); fails if
/// any is not acknowledged within kcat's 20 s message timeout.
fn produce_all_partitions(c: &Cluster, topic: &str, acks: &str, tag: &str) {
    for p in 0..3 {
        kcat_produce(&c.bootstrap(), topic, p, acks, &format!("{tag}-{p}\n"))
            .unwrap_or_else(|e| panic!("{acks} produce to {topic}-{p} ({tag}): {e}"));
    }
}

/// The values of partition `p` of `topic` from the beginning to its end, read with kcat
/// without a group (no coordinator, no ZooKeeper anywhere on the way).
fn consume_partition(c: &Cluster, topic: &str, p: i32) -> Vec<String> {
    let mut child = testcluster::command("kcat")
        .args(["-b", &c.bootstrap(), "-C", "-t", topic, "-p"])
        .arg(p.to_string())
        .args(["-o", "beginning", "-e", "-q"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kcat");
    let limit = Instant::now() + Duration::from_secs(30);
    while Instant::now() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("kcat output");
            return String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string)
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("kcat did not reach the end of {topic}-{p} within 30 s");
}

/// The ZooKeeper leader SIGKILLed, then started again. The two others elect a new leader, and
/// every broker (the followers close their clients' connections when they lose the leader)
/// reconnects with its session id. Every broker
/// keeps its session and broker epoch, the controller stays, acks=all keeps being acknowledged
/// while the leader is down, and the restarted server rejoins as a follower.
#[test]
fn the_zookeeper_leader_killed_keeps_sessions_and_the_controller() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("l", 3, 3, &[]).unwrap();
    let before = c.registrations();
    let controller = c.controller().expect("a controller");
    let leader = zk_leader(&c).expect("a ZooKeeper leader");
    let connects = |c: &mut Cluster| -> Vec<usize> {
        (1..=3)
            .map(|id| {
                c.broker(id)
                    .log()
                    .matches("succeeds to establish session")
                    .count()
            })
            .collect()
    };
    let connected = connects(&mut c);
    c.zk.server(leader).unwrap().kill();
    let new_leader = wait_until("the two others to elect a leader", WAIT, || {
        zk_leader(&c).filter(|l| *l != leader)
    })
    .unwrap();
    eprintln!("ZooKeeper leader {leader} killed; {new_leader} leads now");
    // Followers that lose their leader close every client connection: the fault reached
    // every broker, whichever server it was connected to.
    wait_until("every broker connected again", WAIT, || {
        let now = connects(&mut c);
        now.iter().zip(&connected).all(|(n, b)| n > b).then_some(())
    })
    .unwrap();
    produce_all_partitions(&c, "l", "all", "leader-down");
    c.zk.server(leader).unwrap().start().unwrap();
    wait_until("the restarted server to follow", WAIT, || {
        (zk_mode(&c, leader).as_deref() == Some("follower")).then_some(())
    })
    .unwrap();
    c.assert_sessions_kept(&before, controller, "l", 3);
    produce_all_partitions(&c, "l", "all", "leader-back");
    for p in 0..3 {
        let values = consume_partition(&c, "l", p);
        assert_eq!(
            values,
            vec![format!("leader-down-{p}"), format!("leader-back-{p}")]
        );
    }
}

/// A minority of the ensemble down (one follower killed): ZooKeeper still has a quorum, so
/// nothing changes for the brokers and the controller still works (a topic is created). Then
/// the other two killed as well, the whole ensemble down for 30 s (5 session timeouts), and
/// all three started again on their data.
///
/// While ZooKeeper is down the brokers serve what needs no ZooKeeper, as Kafka's do: records
/// written before are consumed, acks=1 and acks=all writes are acknowledged (the ISR need not
/// change), and an idempotent producer started during the outage gets a producer id (Kafka's
/// `ZkProducerIdManager` claims its first block at start-up) and its acks=all records are
/// acknowledged. When the ensemble is back it restores the sessions with a fresh timeout:
/// every broker resumes its session within the session timeout + 5 s of ZooKeeper serving
/// again, with the same registration and broker epoch, the controller keeps its epoch (no
/// election at all, so none twice) and creates a topic, and every acknowledged record is
/// there exactly once.
#[test]
fn a_minority_down_then_the_whole_ensemble_down_for_30_s_and_back() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("e", 3, 3, &[]).unwrap();
    produce_all_partitions(&c, "e", "all", "before");
    let before = c.registrations();
    let controller = c.controller().expect("a controller");

    // A minority down: one follower.
    let leader = zk_leader(&c).expect("a ZooKeeper leader");
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.zk.server(follower).unwrap().kill();
    c.create_topic("m", 3, 3, &[])
        .expect("the controller creates a topic with one ZooKeeper server down");
    produce_all_partitions(&c, "e", "all", "minority");
    c.assert_sessions_kept(&before, controller, "e", 3);

    // The whole ensemble down.
    for id in 1..=3 {
        c.zk.server(id).unwrap().kill();
    }
    let down = Instant::now();
    for p in 0..3 {
        assert_eq!(
            consume_partition(&c, "e", p),
            vec![format!("before-{p}"), format!("minority-{p}")],
            "records written before the outage, read during it"
        );
    }
    produce_all_partitions(&c, "e", "1", "down-acks1");
    produce_all_partitions(&c, "e", "all", "down-acksall");
    let producer = AckedProducer::start(&c, "m", "all");
    producer.wait_for_acks(
        100,
        Duration::from_secs(20),
        "a new idempotent producer's acks=all records acknowledged while ZooKeeper is down",
    );
    let outage = Duration::from_secs(30);
    // The fault's length, not a wait for a condition.
    std::thread::sleep(outage.saturating_sub(down.elapsed()));
    let acked_during = producer.acked();
    eprintln!(
        "ZooKeeper down for {:?}; {acked_during} records acknowledged meanwhile",
        down.elapsed()
    );

    for id in 1..=3 {
        c.zk.server(id).unwrap().start().unwrap();
    }
    let back = wait_until("the ensemble to elect a leader", WAIT, || zk_leader(&c)).unwrap();
    let serving = Instant::now();
    eprintln!("ZooKeeper serving again (leader {back})");
    wait_until(
        "every broker to resume its session",
        SESSION + Duration::from_secs(5),
        || {
            (1..=3)
                .all(|id| {
                    c.broker(id)
                        .log()
                        .matches("resumed the ZooKeeper session")
                        .count()
                        > 0
                })
                .then_some(())
        },
    )
    .unwrap();
    eprintln!(
        "every broker resumed its session {:?} after ZooKeeper was back",
        serving.elapsed()
    );
    // Read with the harness's own client, whose reconnection (30 s session, so 12 s per server
    // tried) is not what is under test.
    let registered = c.registrations();
    assert_eq!(registered, before, "(czxid, ephemeralOwner) per broker");
    c.assert_sessions_kept(&before, controller, "e", 3);
    assert!(wait_until("consistent state", WAIT, || c.consistent("m", 3)).is_ok());
    c.create_topic("a", 3, 3, &[])
        .expect("the controller creates a topic after the outage");
    produce_all_partitions(&c, "e", "all", "after");
    producer.wait_for_acks(
        acked_during,
        WAIT,
        "the idempotent producer's records acknowledged after the outage",
    );
    let acked = producer.finish();
    eprintln!("{}", acked.verify(&c, "m", false));
    for p in 0..3 {
        let values = consume_partition(&c, "e", p);
        let want: Vec<String> = ["before", "minority", "down-acks1", "down-acksall", "after"]
            .iter()
            .map(|t| format!("{t}-{p}"))
            .collect();
        assert_eq!(values, want, "partition {p}");
    }
}

/// The ZooKeeper server a broker's session is connected to, from each server's `cons` list.
fn zk_server_of(c: &Cluster, session_id: i64) -> Option<u32> {
    let sid = format!("sid=0x{session_id:x},");
    c.zk.servers
        .iter()
        .find(|s| four_letter(s.client_port, "cons").is_some_and(|a| a.contains(&sid)))
        .map(|s| s.id)
}

/// A slow ZooKeeper never wedges the controller: the ZooKeeper server the controller's session
/// is connected to paused (SIGSTOP) for 4 s, longer than the client's connection timeout (2/5
/// of the session timeout) and shorter than the session timeout, while the controller handles
/// an ElectLeaders request. Its ZooKeeper requests hang, then fail with CONNECTIONLOSS when the
/// client gives up on that server and reconnects to another one with the same session. Kafka's
/// controller retries them once connected (`retryRequestsUntilConnected`), so the election is
/// only delayed: the request is answered without error, the preferred leaders lead, the
/// controller, its epoch and every session stay, and the event queue is empty afterwards.
#[test]
fn a_paused_zookeeper_server_delays_the_controller_but_loses_nothing() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    let (controller, epoch) = c.controller().expect("a controller");
    // Partitions whose preferred leader (first replica) is another broker, moved off it by a
    // controlled shutdown and restart of that broker.
    let other = (1..=3).find(|id| *id != controller).unwrap();
    let third = (1..=3)
        .find(|id| *id != controller && *id != other)
        .unwrap();
    let client = &mut c.controller_client().unwrap();
    let r = client
        .create_topic_assigned(
            "p",
            &[
                vec![other, controller, third],
                vec![other, third, controller],
                vec![other, controller, third],
            ],
        )
        .unwrap();
    assert_eq!(r, 0, "CreateTopics");
    c.wait_for_leaders("p", 3, WAIT).unwrap();
    c.broker(other).stop(WAIT).unwrap();
    c.broker(other).restart().unwrap();
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_until("broker back in every ISR, not leading", WAIT, || {
        (0..3)
            .all(|p| {
                c.partition_state("p", p)
                    .is_some_and(|(l, _, isr)| l != other && isr.len() == 3)
            })
            .then_some(())
    })
    .unwrap();
    let before = c.registrations();
    let session = c.broker_registration(controller).unwrap().1;
    let server = wait_until("the controller's ZooKeeper server", WAIT, || {
        zk_server_of(&c, session)
    })
    .unwrap();
    eprintln!("controller {controller} is connected to ZooKeeper server {server}");

    c.zk.server(server).unwrap().signal(Signal::Stop);
    let addr = c.broker(controller).address();
    let asked = Instant::now();
    let election = std::thread::spawn(move || {
        let r = testcluster::kafka::Client::connect(&addr)
            .and_then(|mut cl| cl.elect_leaders(0, "p", &[0, 1, 2]));
        (r, asked.elapsed())
    });
    // The fault's length, not a wait for a condition.
    std::thread::sleep(Duration::from_secs(4));
    c.zk.server(server).unwrap().signal(Signal::Cont);
    let (result, took) = election.join().unwrap();
    eprintln!("ElectLeaders answered after {took:?}: {result:?}");
    let result = result.expect("ElectLeaders answered");
    assert_eq!(
        result,
        vec![(0, 0), (1, 0), (2, 0)],
        "every partition elected without error"
    );
    wait_until("the preferred leaders lead", WAIT, || {
        (0..3)
            .all(|p| {
                c.partition_state("p", p)
                    .is_some_and(|(l, _, _)| l == other)
            })
            .then_some(())
    })
    .unwrap();
    c.assert_sessions_kept(&before, (controller, epoch), "p", 3);
    let metrics = testcluster::probe::metrics_address(&c.broker(controller).log())
        .expect("metrics address in the log");
    wait_until("the controller's event queue empty", WAIT, || {
        let page = testcluster::probe::http_get(&metrics, "/metrics").ok()?;
        let size = testcluster::probe::metric(
            &page,
            "kafka_controller_ControllerEventManager_EventQueueSize",
        )?;
        (size == 0.0).then_some(())
    })
    .unwrap();
    produce_all_partitions(&c, "p", "all", "after-pause");
}

/// The whole ensemble paused (SIGSTOP) for twice the session timeout, then resumed. Unlike a
/// restart, the servers' session clocks kept running: when they resume, the leader finds the
/// sessions overdue and expires them (a session whose client reconnects first survives; both
/// are accepted). While ZooKeeper is paused the brokers serve as in the outage above (records
/// consumed, acks=all writes acknowledged). Afterwards, within the session timeout + 5 s of the
/// resume, every broker whose session expired has re-registered with a new session and a
/// higher broker epoch, and every other one has resumed its session with its registration
/// unchanged; the controller epoch went up by exactly one if the controller's session expired
/// (one election, no flapping) and not at all otherwise; leaders agree everywhere, a topic can
/// be created and acks=all writes are acknowledged.
#[test]
fn the_whole_ensemble_paused_past_the_session_timeout_reregisters_and_reelects_once() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    c.create_topic("s", 3, 3, &[]).unwrap();
    produce_all_partitions(&c, "s", "all", "before");
    let before = c.registrations();
    let (controller, epoch) = c.controller().expect("a controller");

    for s in &c.zk.servers {
        s.signal(Signal::Stop);
    }
    let paused = Instant::now();
    for p in 0..3 {
        assert_eq!(consume_partition(&c, "s", p), vec![format!("before-{p}")]);
    }
    produce_all_partitions(&c, "s", "all", "paused");
    // The fault's length, not a wait for a condition.
    std::thread::sleep((SESSION * 2).saturating_sub(paused.elapsed()));
    for s in &c.zk.servers {
        s.signal(Signal::Cont);
    }
    let resumed = Instant::now();

    // Each broker settles one way or the other, as its own log says (the bound is on the
    // broker, not on the harness's ZooKeeper client, whose reconnection is not under test).
    let expired = |c: &mut Cluster, id: i32| c.broker(id).log().contains(NEW_SESSION_LINES[0]);
    let settled = wait_until(
        "every broker re-registered or resumed",
        SESSION + Duration::from_secs(5),
        || {
            let mut outcome = Vec::new();
            for id in 1..=3 {
                let log = c.broker(id).log();
                if log.contains(NEW_SESSION_LINES[0]) {
                    log.contains("re-registered broker after session expiry")
                        .then_some(())?;
                    outcome.push((id, true));
                } else {
                    log.contains("resumed the ZooKeeper session")
                        .then_some(())?;
                    outcome.push((id, false));
                }
            }
            Some(outcome)
        },
    )
    .unwrap();
    eprintln!(
        "(broker, expired) {settled:?} settled {:?} after the ensemble resumed",
        resumed.elapsed()
    );
    let after = c.registrations();
    for (id, expired) in settled {
        let (now, was) = (after[(id - 1) as usize], before[(id - 1) as usize]);
        if expired {
            assert!(
                now.1 != was.1 && now.0 > was.0,
                "broker {id} re-registered with a new session and a higher epoch: {was:?} -> {now:?}"
            );
        } else {
            assert_eq!(now, was, "broker {id} resumed its session");
        }
    }
    let reelected = expired(&mut c, controller);
    let want = epoch + i32::from(reelected);
    let (now_controller, now_epoch) = wait_until("a controller", WAIT, || {
        c.controller().filter(|(_, e)| *e >= want)
    })
    .unwrap();
    eprintln!("controller {controller} epoch {epoch} -> {now_controller} epoch {now_epoch}");
    c.wait_for_all_brokers(WAIT).unwrap();
    assert!(wait_until("consistent state", WAIT, || c.consistent("s", 3)).is_ok());
    c.create_topic("t", 3, 3, &[])
        .expect("the controller creates a topic after the pause");
    produce_all_partitions(&c, "s", "all", "after");
    assert_eq!(
        c.controller().map(|(_, e)| e),
        Some(want),
        "one election if the controller's session expired, none otherwise"
    );
    for p in 0..3 {
        let want: Vec<String> = ["before", "paused", "after"]
            .iter()
            .map(|t| format!("{t}-{p}"))
            .collect();
        assert_eq!(consume_partition(&c, "s", p), want, "partition {p}");
    }
}
