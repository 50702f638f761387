//! Network partitions (issue 22, item 7): ZooKeeper and every broker each on a host of its own
//! (a network namespace, `testcluster::netns`), one switch between them, and cuts that lose
//! packets on the wire. The test process and the stock clients sit on the switch too and are
//! never cut: each fault isolates servers from each other only.
//!
//! - A broker cut from ZooKeeper for half the session timeout keeps its session and broker
//!   epoch: it reconnects in time and the ensemble never expires it.
//! - A broker cut from ZooKeeper (but not from clients and peers) for twice the session timeout:
//!   the ensemble expires its session (the broker does not decide that itself), leadership
//!   moves, and within the session timeout + 5 s of healing it is registered again with a new
//!   broker epoch, which the controller handles as a restart. The same for the controller.
//! - A broker cut from its peers (but not from ZooKeeper): followers fall out of the ISR of
//!   the other leaders' partitions and acks=all carries on there; the partition it leads
//!   cannot shrink its ISR without the controller, so acks=all there waits; after healing
//!   every ISR is full again.
//! - The controller cut from the brokers: what it sends is retried and delivered after
//!   healing; the partition it leads shrinks its ISR to itself and refuses acks=all with
//!   NOT_ENOUGH_REPLICAS, while acks=all waits on the others (their leaders cannot reach the
//!   controller to shrink theirs). Cut from ZooKeeper as well until another broker replaces it, its
//!   retried requests are fenced by the brokers with the newer controller epoch.
//!
//! In every test an idempotent acks=all producer (confluent-kafka) numbers its records and
//! notes each acknowledgement; at the end a consumer reads the topic and every acknowledged
//! record is there, once and in order.
//!
//! Needs root (network namespaces); the cluster and its namespaces are removed at the end.

use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use testcluster::cluster::{log_bytes, WAIT};
use testcluster::netns::Netns;
use testcluster::producer::AckedProducer;
use testcluster::{wait_until, Cluster, ClusterOptions};

/// One cluster at a time in this binary (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// `zookeeper.session.timeout.ms` (ZooKeeper's tickTime is 500 ms: granted as asked).
const SESSION: Duration = Duration::from_millis(4000);

/// How soon after healing a broker must be registered again (issue 22: session timeout + 5 s).
const REJOIN: Duration = Duration::from_millis(4000 + 5000);

fn options() -> ClusterOptions {
    ClusterOptions::default()
        .netns()
        .config(
            "zookeeper.session.timeout.ms",
            &SESSION.as_millis().to_string(),
        )
        .config("min.insync.replicas", "2")
        .config("replica.lag.time.max.ms", "2000")
        // Connection attempts into a cut wait for a SYN-ACK that never comes: bound them, so
        // the controller's and the brokers' retries notice the healing soon.
        .config("controller.socket.timeout.ms", "2000")
        .config("request.timeout.ms", "5000")
        .config("auto.leader.rebalance.enable", "false")
}

/// The host name of broker `id` in the cluster's namespaces.
fn host(id: i32) -> String {
    format!("b{id}")
}

fn net(c: &mut Cluster) -> &mut Netns {
    c.netns
        .as_mut()
        .expect("the cluster runs in network namespaces")
}

/// Creates `topic` with partition `p` on brokers `p+1, ...` (RF 3, so broker `p+1` leads it)
/// and waits until every broker knows those leaders.
fn create_topic(c: &mut Cluster, topic: &str) {
    let replicas: Vec<Vec<i32>> = (0..3)
        .map(|p| (0..3).map(|i| (p + i) % 3 + 1).collect())
        .collect();
    let code = c
        .controller_client()
        .and_then(|mut k| k.create_topic_assigned(topic, &replicas))
        .expect("CreateTopics");
    assert_eq!(code, 0, "CreateTopics {topic}");
    let leaders = c.wait_for_leaders(topic, 3, WAIT).expect("leaders");
    assert_eq!(leaders, vec![1, 2, 3]);
    wait_for_full_isr(c, topic);
}

fn isr(c: &mut Cluster, topic: &str, p: i32) -> Vec<i32> {
    c.partition_state(topic, p).map(|s| s.2).unwrap_or_default()
}

fn wait_for_full_isr(c: &mut Cluster, topic: &str) {
    wait_until(&format!("every ISR of {topic} full"), WAIT, || {
        (0..3).all(|p| isr(c, topic, p).len() == 3).then_some(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            (0..3)
                .map(|p| c.partition_state(topic, p))
                .collect::<Vec<_>>()
        )
    });
}

/// Stops the producer and checks that every acknowledged record is in `topic` once and in
/// order (the tests' own unkeyed acks=all probes, `produce_acks_all`, passed over).
fn finish_and_verify(producer: AckedProducer, c: &Cluster, topic: &str) -> String {
    let acked = producer.finish();
    let text = acked.verify(c, topic, true);
    assert!(
        acked.count() > 0,
        "nothing was acknowledged: the test proves nothing"
    );
    text
}

/// Waits until the three replicas of every partition of `topic` hold the same bytes: a
/// leader cut off and replaced truncated what it alone had appended (its unacknowledged
/// records), and nothing is missing anywhere.
fn wait_for_identical_replicas(c: &mut Cluster, topic: &str) {
    wait_until(&format!("identical replicas of {topic}"), WAIT, || {
        (0..3)
            .all(|p| {
                let logs: Vec<Vec<u8>> = (1..=3)
                    .map(|id| log_bytes(&c.log_dir(id).join(format!("{topic}-{p}"))))
                    .collect();
                !logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])
            })
            .then_some(())
    })
    .unwrap_or_else(|e| {
        let sizes: Vec<Vec<usize>> = (0..3)
            .map(|p| {
                (1..=3)
                    .map(|id| log_bytes(&c.log_dir(id).join(format!("{topic}-{p}"))).len())
                    .collect()
            })
            .collect();
        panic!("{e}: bytes per partition per broker {sizes:?}")
    });
}

/// One ProduceRequest (v9, acks=all, one record, no producer id) to broker `id` for
/// `topic`-`partition`, waiting at most `timeout_ms` on the broker; the partition's error code.
fn produce_acks_all(c: &Cluster, id: i32, topic: &str, partition: i32, timeout_ms: i32) -> i16 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
        key: None,
        value: Some(bytes::Bytes::from_static(b"probe")),
        headers: Default::default(),
    };
    let mut batch = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.freeze()))])]);
    let addr = c
        .brokers
        .iter()
        .find(|b| b.id == id)
        .expect("broker")
        .address();
    let mut k = testcluster::kafka::Client::connect(&addr).expect("connect");
    let r: ProduceResponse = k.send(ApiKey::Produce, 9, &req).expect("produce");
    r.responses[0].partition_responses[0].error_code
}

/// An expired session is an expected event: the old controller resigns on `Expire` and handles
/// nothing else against the dead session (the znode watches that the session's end fired
/// used to queue `BrokerChange` or `TopicChange` ahead of `Expire`, which then failed with
/// "session expired": in one run in three).
fn assert_no_event_errors(log: &str, id: i32) {
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("error processing controller event"))
        .collect();
    assert!(errors.is_empty(), "broker {id}: {errors:#?}");
}

/// Kafka error codes the tests name.
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const REQUEST_TIMED_OUT: i16 = 7;
const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;

/// What a crashed run leaves (a claim whose process is gone, its bridge and a namespace) is
/// removed by the next `Netns::create`.
#[test]
fn a_crashed_runs_namespaces_are_removed_by_the_next_run() {
    let _g = serial();
    let list = |args: &[&str]| {
        let out = testcluster::command("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ip = |args: &[&str]| {
        let st = testcluster::command("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    // A process that is gone: a child, reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let dir = std::path::Path::new("/run/testcluster-netns");
    std::fs::create_dir_all(dir).unwrap();
    let subnet = (1..=254u32)
        .rev()
        .find(|n| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join(format!("tcn{n}.pid")))
                .is_ok()
        })
        .expect("a free subnet");
    std::fs::write(dir.join(format!("tcn{subnet}.pid")), format!("{dead}\n")).unwrap();
    let prefix = format!("tcn{subnet}-");
    ip(&["link", "add", &format!("{prefix}br"), "type", "bridge"]);
    ip(&["netns", "add", &format!("{prefix}x")]);
    let n = Netns::create().unwrap();
    assert!(
        !list(&["netns", "list"]).contains(&format!("{prefix}x")),
        "the crashed run's namespace is left"
    );
    if n.subnet as u32 != subnet {
        // (The new Netns may have claimed the freed subnet itself, bridge and all.)
        assert!(
            !list(&["-o", "link", "show"]).contains(&prefix),
            "the crashed run's bridge is left"
        );
        assert!(!dir.join(format!("tcn{subnet}.pid")).exists(), "claim left");
    }
}

/// The mechanism itself: a cut loses packets silently (a connection attempt times out, it is
/// not refused), the test's own namespace still reaches both hosts, healing restores the link,
/// and dropping the `Netns` leaves no namespace or link behind.
#[test]
fn a_cut_loses_packets_silently_and_healing_restores_the_link() {
    let _g = serial();
    let python = testcluster::workspace_root().join(".venv/bin/python");
    let mut n = Netns::create().unwrap();
    let a = n.add("a").unwrap();
    let b = n.add("b").unwrap();
    let serve = format!(
        "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('{}',7000))\ns.listen()\nwhile True:\n c,_=s.accept()\n c.sendall(b'hi')\n c.close()\n",
        b.host
    );
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Kill(
        b.command(&python)
            .args(["-c", &serve])
            .stdin(Stdio::null())
            .spawn()
            .expect("python (scripts/setup makes .venv)"),
    );
    let hello = |timeout: Duration| -> std::io::Result<()> {
        use std::io::Read;
        let addr = format!("{}:7000", b.host).parse().unwrap();
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.read_exact(&mut [0u8; 2])
    };
    wait_until("the server in b", Duration::from_secs(20), || {
        hello(Duration::from_secs(1)).ok()
    })
    .unwrap();
    // A connection attempt from a's namespace (python again: the test's namespace is not cut).
    let from_a = || {
        let out = a
            .command(&python)
            .arg("-c")
            .arg(format!(
                "import socket,time\nt=time.time()\ntry:\n socket.create_connection(('{}',7000),timeout=1.5).recv(2); print('ok')\n\
                 except Exception as e: print(type(e).__name__, round(time.time()-t,1))",
                b.host
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(from_a(), "ok");
    n.cut("a", "b").unwrap();
    let started = Instant::now();
    let answer = from_a();
    assert!(
        answer.starts_with("TimeoutError") && started.elapsed() >= Duration::from_millis(1500),
        "a connection attempt across a cut must time out, not fail at once: {answer}"
    );
    hello(Duration::from_secs(2)).expect("the test's namespace still reaches b");
    n.heal_all().unwrap();
    assert_eq!(from_a(), "ok");
    let prefix = n.prefix().to_string();
    drop(_server);
    drop(n);
    let list = |args: &[&str]| {
        let out = testcluster::command("ip").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(
        !list(&["netns", "list"]).contains(&prefix),
        "a namespace was left behind"
    );
    assert!(
        !list(&["-o", "link", "show"]).contains(&prefix),
        "a link was left behind"
    );
}

/// Cuts `victim` from ZooKeeper (clients and the other brokers still reach it) for twice the
/// session timeout while the producer writes, and checks what Kafka does: ZooKeeper expires
/// the session and deletes `/brokers/ids/<victim>` (the broker itself never declares its session
/// expired while it cannot reach the ensemble), the partitions it led get other leaders and
/// lose it from their ISR, the producer carries on; after healing the broker is told its session
/// expired, registers again with a new broker epoch within the session timeout + 5 s, the
/// controller handles it as a restarted broker (membership change naming it new) and every ISR
/// is full again. Returns the controller (id, epoch) after the fault.
fn cut_from_zookeeper_and_rejoin(
    c: &mut Cluster,
    victim: i32,
    topic: &str,
    producer: &AckedProducer,
) -> (i32, i32) {
    let (controller, epoch) = c.controller().expect("a controller");
    let led: Vec<i32> = (0..3)
        .filter(|p| c.partition_state(topic, *p).is_some_and(|s| s.0 == victim))
        .collect();
    assert!(
        !led.is_empty(),
        "broker {victim} leads no partition of {topic}"
    );
    let before = c.broker_registration(victim).expect("registered");
    let membership_lines = |c: &mut Cluster, id: i32| {
        c.broker(id)
            .log()
            .matches("broker membership changed")
            .count()
    };
    let seen: Vec<usize> = (1..=3).map(|id| membership_lines(c, id)).collect();

    net(c).isolate(&host(victim), &["zk1"]).unwrap();
    let cut_at = Instant::now();
    wait_until("ZooKeeper to expire the cut broker's session", WAIT, || {
        (!c.registered_brokers().contains(&victim)).then_some(())
    })
    .unwrap();
    let expired_after = cut_at.elapsed();
    // The ensemble counts from its last contact with the broker (at most a ping interval
    // before the cut), so well over half the timeout has passed.
    assert!(
        expired_after >= SESSION / 2,
        "the registration went {expired_after:?} after the cut: not a session expiry"
    );
    let new_controller = if victim == controller {
        wait_until("another controller, with a higher epoch", WAIT, || {
            c.controller().filter(|(id, e)| *id != victim && *e > epoch)
        })
        .unwrap()
    } else {
        (controller, epoch)
    };
    wait_until(
        "the cut broker's partitions led by others, without it in the ISR",
        WAIT,
        || {
            led.iter()
                .all(|p| {
                    c.partition_state(topic, *p)
                        .is_some_and(|(l, _, isr)| l != victim && l >= 0 && !isr.contains(&victim))
                })
                .then_some(())
        },
    )
    .unwrap();
    producer.wait_for_progress(
        50,
        "acknowledgements while the broker is cut from ZooKeeper",
    );
    // Still reachable by clients: it answers, and still believes it leads its partitions (no
    // controller can tell it otherwise), but an acks=all write there is not acknowledged: its
    // followers now fetch from the new leader.
    c.metadata_from(victim, Some(&[topic]))
        .expect("the cut broker still answers clients");
    let code = produce_acks_all(c, victim, topic, led[0], 2_000);
    assert!(
        [
            REQUEST_TIMED_OUT,
            NOT_ENOUGH_REPLICAS,
            NOT_LEADER_OR_FOLLOWER
        ]
        .contains(&code),
        "acks=all to the broker cut from ZooKeeper answered {code}"
    );
    // The fault's length, not a wait for a condition.
    std::thread::sleep((SESSION * 2).saturating_sub(cut_at.elapsed()));
    let log = c.broker(victim).log();
    assert!(
        !log.contains("ZooKeeper session expired"),
        "broker {victim} declared its session expired while it could not hear ZooKeeper"
    );

    net(c).heal_all().unwrap();
    let healed_at = Instant::now();
    let after = wait_until("the broker registered again", WAIT, || {
        c.broker_registration(victim).filter(|r| *r != before)
    })
    .unwrap();
    let rejoined_after = healed_at.elapsed();
    assert!(
        rejoined_after <= REJOIN,
        "broker {victim} registered again {rejoined_after:?} after healing (limit {REJOIN:?})"
    );
    assert!(
        after.0 > before.0,
        "a new broker epoch (czxid): {before:?} -> {after:?}"
    );
    assert_ne!(after.1, before.1, "a new session owns the registration");
    eprintln!(
        "broker {victim}: registration gone {expired_after:?} after the cut, back \
         {rejoined_after:?} after healing"
    );
    // The znode is there before the broker's event loop has taken the new epoch and logs it.
    wait_until("the broker to log its re-registration", WAIT, || {
        let log = c.broker(victim).log();
        (log.contains("ZooKeeper session expired; resigning and re-registering")
            && log.contains("re-registered broker after session expiry"))
        .then_some(())
    })
    .unwrap();
    // The controller saw it come back as a new broker (its old registration had gone).
    let (now_controller, _) = new_controller;
    wait_until(
        "the controller to handle the returning broker",
        WAIT,
        || {
            let log = c.broker(now_controller).log();
            log.lines()
                .filter(|l| l.contains("broker membership changed"))
                .skip(seen[(now_controller - 1) as usize])
                .any(|l| l.contains(&format!("new_brokers={{{victim}}}")))
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        let log = c.broker(now_controller).log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("membership")).collect();
        panic!("{e}: {lines:?}")
    });
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_for_full_isr(c, topic);
    assert_eq!(
        c.controller(),
        Some(new_controller),
        "no further controller change"
    );
    producer.wait_for_progress(50, "acknowledgements after the broker rejoined");
    new_controller
}

/// A leader cut from ZooKeeper for half the session timeout (the issue's firewall cuts of a
/// few seconds): it loses its connection and reconnects once the cut heals, and the ensemble,
/// which heard from it again in time, keeps its session. Same session, same registration
/// (czxid, so the same broker epoch), same controller, no expiry logged, and every partition
/// keeps its leader and a full ISR (Kafka: the Java client resumes the session, nothing else
/// happens).
#[test]
fn a_cut_from_zookeeper_shorter_than_the_session_timeout_keeps_the_session_and_broker_epoch() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "shortcut");
    let producer = AckedProducer::start(&c, "shortcut", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let controller = c.controller().unwrap();
    let victim = (1..=3).find(|id| *id != controller.0).unwrap();
    let before = c.broker_registration(victim).unwrap();
    let count = |c: &mut Cluster, line: &str| c.broker(victim).log().matches(line).count();
    let disconnects = count(&mut c, "enter state Disconnected");
    let connects = count(&mut c, "succeeds to establish session");
    net(&mut c).isolate(&host(victim), &["zk1"]).unwrap();
    // The fault's length, not a wait for a condition.
    std::thread::sleep(SESSION / 2);
    net(&mut c).heal_all().unwrap();
    let healed = Instant::now();
    wait_until("the broker connected to ZooKeeper again", WAIT, || {
        (count(&mut c, "succeeds to establish session") > connects).then_some(())
    })
    .unwrap();
    eprintln!("reconnected {:?} after healing", healed.elapsed());
    assert!(
        count(&mut c, "enter state Disconnected") > disconnects,
        "broker {victim} never lost its connection: the cut did not reach it"
    );
    assert_eq!(
        c.broker_registration(victim),
        Some(before),
        "same session and broker epoch"
    );
    assert_eq!(c.controller(), Some(controller), "no controller change");
    for line in [
        "ZooKeeper session expired",
        "opened a new ZooKeeper session",
    ] {
        assert!(
            !c.broker(victim).log().contains(line),
            "broker {victim} logged '{line}'"
        );
    }
    assert_eq!(
        (0..3)
            .map(|p| c.partition_state("shortcut", p).map(|s| (s.0, s.1)))
            .collect::<Vec<_>>(),
        (0..3).map(|p| Some((p + 1, 0))).collect::<Vec<_>>(),
        "every partition kept its leader and leader epoch"
    );
    wait_for_full_isr(&mut c, "shortcut");
    producer.wait_for_progress(100, "acknowledgements after healing");
    let text = finish_and_verify(producer, &c, "shortcut");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "shortcut");
}

/// A broker that leads a partition but is not the controller, cut from ZooKeeper for twice
/// the session timeout (Kafka: `KafkaController.onBrokerFailure`, then
/// `KafkaZkClient.registerBroker` after `ZooKeeperClient.reinitialize`, then `onBrokerStartup`).
#[test]
fn a_leader_cut_from_zookeeper_for_twice_the_session_timeout_rejoins_with_a_new_broker_epoch() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "zkcut");
    let producer = AckedProducer::start(&c, "zkcut", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let (controller, epoch) = c.controller().unwrap();
    let victim = (1..=3).find(|id| *id != controller).unwrap();
    let after = cut_from_zookeeper_and_rejoin(&mut c, victim, "zkcut", &producer);
    assert_eq!(after, (controller, epoch), "the controller stayed");
    let text = finish_and_verify(producer, &c, "zkcut");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "zkcut");
}

/// The controller cut from ZooKeeper for twice the session timeout: another broker becomes
/// controller with a higher epoch when ZooKeeper expires the old one's session; the old one
/// only learns it when it reaches ZooKeeper again, resigns, and registers as a plain broker,
/// which the new controller handles as a restart.
#[test]
fn the_controller_cut_from_zookeeper_for_twice_the_session_timeout_rejoins_as_a_broker() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "ctlcut");
    let producer = AckedProducer::start(&c, "ctlcut", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let (controller, epoch) = c.controller().unwrap();
    let (new_controller, new_epoch) =
        cut_from_zookeeper_and_rejoin(&mut c, controller, "ctlcut", &producer);
    assert_ne!(new_controller, controller);
    assert!(new_epoch > epoch);
    let log = c.broker(controller).log();
    assert!(
        log.contains("resigned as controller"),
        "the old controller resigned once it heard of the expiry"
    );
    assert_no_event_errors(&log, controller);
    let text = finish_and_verify(producer, &c, "ctlcut");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "ctlcut");
}

/// A broker (not the controller) cut from the other brokers but not from ZooKeeper or the
/// clients. Kafka: the leaders of the other partitions stop hearing its fetches and shrink it
/// out of their ISR after `replica.lag.time.max.ms` (`Partition.maybeShrinkIsr`, AlterPartition
/// to the controller), so acks=all there carries on with two in-sync replicas; the partition it
/// leads keeps its full ISR, since shrinking needs the controller it cannot reach, and an
/// acks=all write there is not acknowledged (it waits, then REQUEST_TIMED_OUT). Its
/// registration stays. After healing every ISR is full again, and no acknowledged record was
/// lost.
#[test]
fn a_broker_cut_from_its_peers_drops_out_of_their_isr_and_acks_all_waits_on_its_own_partition() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "peercut");
    let producer = AckedProducer::start(&c, "peercut", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let (controller, epoch) = c.controller().unwrap();
    let victim = (1..=3).find(|id| *id != controller).unwrap();
    let own = victim - 1; // the partition it leads
    let others: Vec<i32> = (1..=3).filter(|id| *id != victim).collect();
    let registration = c.broker_registration(victim).unwrap();

    net(&mut c)
        .isolate(
            &host(victim),
            &others
                .iter()
                .map(|id| host(*id))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .unwrap();
    wait_until(
        "the cut broker out of the other leaders' ISRs",
        WAIT,
        || {
            (0..3)
                .filter(|p| *p != own)
                .all(|p| {
                    let isr = isr(&mut c, "peercut", p);
                    isr.len() == 2 && !isr.contains(&victim)
                })
                .then_some(())
        },
    )
    .unwrap();
    // acks=all still works where the ISR shrank to two (min.insync.replicas).
    for p in (0..3).filter(|p| *p != own) {
        let leader = p + 1;
        assert_eq!(
            produce_acks_all(&c, leader, "peercut", p, 10_000),
            0,
            "acks=all to partition {p} (leader {leader}, ISR of two)"
        );
    }
    producer.wait_for_progress(50, "acknowledgements while a broker is cut from its peers");
    // Its own partition: the leader cannot reach the controller to shrink the ISR, so the
    // followers stay in it and acks=all is not acknowledged.
    let code = produce_acks_all(&c, victim, "peercut", own, 2_000);
    assert!(
        code == REQUEST_TIMED_OUT || code == NOT_ENOUGH_REPLICAS,
        "acks=all to the cut leader's partition answered {code}"
    );
    let (leader, _, own_isr) = c.partition_state("peercut", own).unwrap();
    assert_eq!(leader, victim, "nothing moved its partition");
    assert_eq!(own_isr.len(), 3, "the cut leader could not shrink its ISR");
    // It tried to shrink its ISR: the request fails after `request.timeout.ms`.
    wait_until("the cut leader's AlterPartition to fail", WAIT, || {
        c.broker(victim)
            .log()
            .contains("AlterPartition failed")
            .then_some(())
    })
    .unwrap();
    assert_eq!(isr(&mut c, "peercut", own).len(), 3, "still the full ISR");
    assert_eq!(
        c.broker_registration(victim),
        Some(registration),
        "same session throughout"
    );

    net(&mut c).heal_all().unwrap();
    wait_for_full_isr(&mut c, "peercut");
    producer.wait_for_progress(100, "acknowledgements after healing");
    assert_eq!(
        c.broker_registration(victim),
        Some(registration),
        "same session throughout"
    );
    assert_eq!(
        c.controller(),
        Some((controller, epoch)),
        "no controller change"
    );
    let text = finish_and_verify(producer, &c, "peercut");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "peercut");
}

/// The controller cut from the other brokers but not from ZooKeeper or the clients, while a
/// topic is created through it. Kafka: the controller writes the topic to ZooKeeper and its
/// LeaderAndIsr and UpdateMetadata for the other brokers wait in their queues, retried
/// (`RequestSendThread`) until delivered once the cut heals; the partition it leads shrinks
/// its ISR to itself (its AlterPartition reaches it) and refuses acks=all with
/// NOT_ENOUGH_REPLICAS; the other leaders cannot reach it to shrink theirs, so acks=all there
/// waits. After healing the other brokers host the new topic and every ISR is full again.
#[test]
fn the_controller_cut_from_the_brokers_retries_its_requests_until_the_cut_heals() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "ctlpeers");
    let producer = AckedProducer::start(&c, "ctlpeers", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let (controller, epoch) = c.controller().unwrap();
    let own = controller - 1;
    let others: Vec<i32> = (1..=3).filter(|id| *id != controller).collect();
    let other_hosts: Vec<String> = others.iter().map(|id| host(*id)).collect();
    let other_hosts: Vec<&str> = other_hosts.iter().map(String::as_str).collect();

    net(&mut c)
        .isolate(&host(controller), &other_hosts)
        .unwrap();
    // A new topic through the controller (clients still reach it): ZooKeeper has it at once,
    // the other brokers hear of it only through the controller.
    let replicas: Vec<Vec<i32>> = vec![
        vec![others[0], others[1], controller],
        vec![others[1], controller, others[0]],
    ];
    let code = testcluster::kafka::Client::connect(&c.broker(controller).address())
        .and_then(|mut k| k.create_topic_assigned("late", &replicas))
        .expect("CreateTopics");
    assert_eq!(code, 0, "CreateTopics answered {code}");
    assert!(c.assignment("late").is_some(), "the topic is in ZooKeeper");
    wait_until(
        "the controller's partition shrunk to the controller alone",
        WAIT,
        || (isr(&mut c, "ctlpeers", own) == vec![controller]).then_some(()),
    )
    .unwrap();
    // ZooKeeper holds the shrunk ISR a moment before the leader applies the controller's
    // answer: a produce in that window is appended while the leader still counts two in sync
    // and then refused with NOT_ENOUGH_REPLICAS_AFTER_APPEND, as Kafka answers in the same race.
    // Never acknowledged either way; once the leader has applied the shrink, refused up front.
    wait_until(
        "acks=all refused up front with an ISR of one below min.insync.replicas=2",
        WAIT,
        || match produce_acks_all(&c, controller, "ctlpeers", own, 2_000) {
            NOT_ENOUGH_REPLICAS => Some(()),
            NOT_ENOUGH_REPLICAS_AFTER_APPEND => None,
            code => {
                panic!("acks=all with an ISR of one below min.insync.replicas=2 answered {code}")
            }
        },
    )
    .unwrap();
    // The other leaders cannot reach the controller to shrink their ISRs: acks=all waits.
    for p in (0..3).filter(|p| *p != own) {
        let leader = p + 1;
        assert_eq!(
            isr(&mut c, "ctlpeers", p).len(),
            3,
            "partition {p}: ISR unchanged"
        );
        let code = produce_acks_all(&c, leader, "ctlpeers", p, 2_000);
        assert!(
            code == REQUEST_TIMED_OUT || code == NOT_ENOUGH_REPLICAS,
            "acks=all to partition {p} while its leader cannot reach the controller: {code}"
        );
    }
    for id in &others {
        let md = c.metadata_from(*id, Some(&["late"])).unwrap();
        assert!(
            testcluster::kafka::leaders(&md, "late").is_none_or(|l| l.is_empty()),
            "broker {id} cannot have heard of the new topic yet"
        );
    }
    wait_until("the controller retrying its requests", WAIT, || {
        c.broker(controller)
            .log()
            .contains("controller failed to send request to broker; retrying")
            .then_some(())
    })
    .unwrap();

    net(&mut c).heal_all().unwrap();
    // Delivered: every broker serves the new topic with the controller's leaders.
    let leaders = c.wait_for_leaders("late", 2, WAIT).unwrap();
    assert_eq!(leaders, vec![others[0], others[1]]);
    for id in &others {
        for p in 0..2 {
            assert!(
                c.log_dir(*id).join(format!("late-{p}")).is_dir(),
                "broker {id} created its replica of late-{p}"
            );
        }
    }
    wait_for_full_isr(&mut c, "ctlpeers");
    producer.wait_for_progress(100, "acknowledgements after healing");
    assert_eq!(
        c.controller(),
        Some((controller, epoch)),
        "no controller change"
    );
    let text = finish_and_verify(producer, &c, "ctlpeers");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "ctlpeers");
}

/// The controller cut from the brokers while a topic is created through it, then cut from
/// ZooKeeper too until ZooKeeper expires its session and another broker becomes controller
/// with a higher epoch. Healed towards the brokers first (still cut from ZooKeeper, so it
/// still believes it is the controller), its retried requests reach them and are refused:
/// they have seen the newer controller epoch (Kafka: `KafkaApis` answers
/// STALE_CONTROLLER_EPOCH and changes nothing). Healed towards ZooKeeper, it learns its
/// session expired, resigns and registers as a plain broker; the new controller handles it as
/// a restart, and no acknowledged record was lost.
#[test]
fn a_controller_replaced_while_cut_off_is_fenced_by_the_brokers_with_its_old_epoch() {
    let _g = serial();
    let mut c = Cluster::start(options()).expect("cluster");
    create_topic(&mut c, "zombie");
    let producer = AckedProducer::start(&c, "zombie", "all");
    producer.wait_for_progress(100, "first acknowledgements");
    let (old, epoch) = c.controller().unwrap();
    let others: Vec<i32> = (1..=3).filter(|id| *id != old).collect();
    let other_hosts: Vec<String> = others.iter().map(|id| host(*id)).collect();
    let other_hosts: Vec<&str> = other_hosts.iter().map(String::as_str).collect();
    let refusal = "ignoring LeaderAndIsr from a controller with an older epoch";
    for id in &others {
        assert!(!c.broker(*id).log().contains(refusal));
    }

    net(&mut c).isolate(&host(old), &other_hosts).unwrap();
    let replicas: Vec<Vec<i32>> = vec![
        vec![others[0], others[1], old],
        vec![others[1], others[0], old],
    ];
    let code = testcluster::kafka::Client::connect(&c.broker(old).address())
        .and_then(|mut k| k.create_topic_assigned("late", &replicas))
        .expect("CreateTopics");
    assert_eq!(code, 0, "CreateTopics answered {code}");
    wait_until("the old controller retrying its requests", WAIT, || {
        c.broker(old)
            .log()
            .contains("controller failed to send request to broker; retrying")
            .then_some(())
    })
    .unwrap();

    net(&mut c).isolate(&host(old), &["zk1"]).unwrap();
    let (new, new_epoch) = wait_until(
        "ZooKeeper to expire the old controller's session and another to take over",
        WAIT,
        || c.controller().filter(|(id, e)| *id != old && *e > epoch),
    )
    .unwrap();
    assert!(!c.registered_brokers().contains(&old));
    // The new controller read the topic from ZooKeeper and started it on the live brokers.
    wait_until(
        "the new controller's leaders for the new topic",
        WAIT,
        || {
            others
                .iter()
                .all(|id| {
                    c.metadata_from(*id, Some(&["late"]))
                        .ok()
                        .and_then(|md| testcluster::kafka::leaders(&md, "late"))
                        .is_some_and(|l| l.len() == 2 && l.iter().all(|x| others.contains(x)))
                })
                .then_some(())
        },
    )
    .unwrap();

    // Towards the brokers only: the old controller still believes it is the controller.
    for h in &other_hosts {
        net(&mut c).heal(&host(old), h).unwrap();
    }
    let want = format!("controller_epoch={epoch} controller_id={old}");
    wait_until(
        "the brokers to refuse the old controller's retried LeaderAndIsr",
        WAIT,
        || {
            others
                .iter()
                .all(|id| {
                    c.broker(*id)
                        .log()
                        .lines()
                        .any(|l| l.contains(refusal) && l.contains(&want))
                })
                .then_some(())
        },
    )
    .unwrap_or_else(|e| {
        let log = c.broker(old).log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("controller")).collect();
        panic!(
            "{e}; old controller's lines: {:#?}",
            &lines[lines.len().saturating_sub(20)..]
        )
    });
    assert!(
        !c.broker(old).log().contains("resigned as controller"),
        "the old controller cannot know yet that it was replaced"
    );
    // Refused, so nothing changed: every broker still follows the new controller.
    assert_eq!(c.controller(), Some((new, new_epoch)));
    for id in &others {
        let md = c.metadata_from(*id, Some(&[])).unwrap();
        assert_eq!(md.controller_id.0, new, "broker {id}'s controller");
    }

    net(&mut c).heal_all().unwrap();
    let healed_at = Instant::now();
    wait_until("the old controller registered again", WAIT, || {
        c.registered_brokers().contains(&old).then_some(())
    })
    .unwrap();
    assert!(
        healed_at.elapsed() <= REJOIN,
        "registered again {:?} after healing",
        healed_at.elapsed()
    );
    let log = c.broker(old).log();
    assert!(log.contains("resigned as controller"));
    assert_no_event_errors(&log, old);
    c.wait_for_all_brokers(WAIT).unwrap();
    wait_for_full_isr(&mut c, "zombie");
    assert_eq!(
        c.controller(),
        Some((new, new_epoch)),
        "the new controller stayed"
    );
    producer.wait_for_progress(100, "acknowledgements after healing");
    let text = finish_and_verify(producer, &c, "zombie");
    eprintln!("{text}");
    wait_for_identical_replicas(&mut c, "zombie");
}
