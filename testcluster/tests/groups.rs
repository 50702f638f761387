//! Consumer groups driven by stock clients against a real cluster (real ZooKeeper, three
//! broker processes): static membership (KIP-345) with confluent-kafka (librdkafka).

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use testcluster::{Cluster, ClusterOptions};

/// One cluster at a time in this binary: the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs a client script with a time limit; returns (status ok, stdout, stderr).
fn run(cmd: &mut Command, limit: Duration) -> (bool, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn client");
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if done_rx.recv_timeout(limit).is_err() {
            // SAFETY: kill(2) on the client's pid, which has not been waited for yet.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    });
    let out = child.wait_with_output().expect("wait client");
    let _ = done_tx.send(());
    let _ = watchdog.join();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn python_client(script: &str, args: &[&str], limit: Duration) -> (bool, String, String) {
    let root = testcluster::workspace_root();
    run(
        testcluster::command(root.join(".venv/bin/python"))
            .arg(root.join("testcluster/clients").join(script))
            .args(args),
        limit,
    )
}

/// The scenario: two confluent-kafka consumers with `group.instance.id` static-1 and
/// static-2; static-2 is closed and a new consumer with the same instance id starts within
/// the session timeout. It gets static-2's old partitions at once, with the same generation
/// (no rebalance), and static-1 sees no revoke. Then a duplicate static-1 fences the running
/// one (FENCED_INSTANCE_ID) and takes its partitions. The checks are in
/// `clients/py_static_members.py`.
#[test]
fn static_member_restart_keeps_its_partitions_without_rebalance() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c =
        Cluster::start(ClusterOptions::default().config("group.initial.rebalance.delay.ms", "500"))
            .expect("cluster");
    c.create_topic("static-topic", 4, 1, &[])
        .expect("create topic");
    let (ok, out, err) = python_client(
        "py_static_members.py",
        &[&c.bootstrap(), "static-topic", "static-group", "4"],
        Duration::from_secs(180),
    );
    assert!(ok && out.contains("\nOK"), "static members: {out}\n{err}");
}

/// Group administration with stock admin clients (confluent-kafka's AdminClient, kafka-python's
/// KafkaAdminClient for OffsetDelete): committing offsets for a partition beyond the topic's
/// count or an unknown topic is UNKNOWN_TOPIC_OR_PARTITION for those partitions; a group with a
/// member cannot be deleted (NON_EMPTY_GROUP) and keeps the offsets of the topic it subscribes
/// to (GROUP_SUBSCRIBED_TO_TOPIC) while another topic's are deleted; an unknown group is
/// GROUP_ID_NOT_FOUND; an Empty group is deleted with its offsets and its tombstone is in
/// `__consumer_offsets`. The checks are in `clients/py_group_admin.py`.
#[test]
fn admin_clients_delete_groups_and_offsets() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c =
        Cluster::start(ClusterOptions::default().config("group.initial.rebalance.delay.ms", "0"))
            .expect("cluster");
    c.create_topic("adm-topic", 4, 1, &[])
        .expect("create topic");
    c.create_topic("adm-other", 1, 1, &[])
        .expect("create topic");
    let (ok, out, err) = python_client(
        "py_group_admin.py",
        &[&c.bootstrap(), "adm-topic", "adm-other"],
        Duration::from_secs(180),
    );
    assert!(ok && out.contains("OK"), "group admin: {out}\n{err}");
}
