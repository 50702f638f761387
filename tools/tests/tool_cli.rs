//! The `testcluster` binary driven as a user drives it: `up` in the background, then `status`,
//! `topics`, `kill controller`, `start`, `watch`, and Ctrl-C (SIGINT) on `up`, which must leave
//! no process behind.
//!
//! Needs `cargo build --release -p broker` first (the tool starts the real broker binary).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testcluster::wait_until;

mod common;
use common::{alive, pids};

const BIN: &str = env!("CARGO_BIN_EXE_testcluster");

fn tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run testcluster")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tool(dir, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "testcluster {args:?} failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// (controller, epoch) from `status` output.
fn controller(status: &str) -> Option<(i32, i32)> {
    let line = status
        .lines()
        .find(|l| l.starts_with("Controller: broker "))?;
    let mut words = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty());
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

fn broker_line(status: &str, id: i32) -> String {
    status
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("broker {id} at")))
        .unwrap_or_default()
        .to_string()
}

/// up -> status -> topics create/describe -> kill controller -> status shows a new controller
/// with a higher epoch and the old one dead -> start it -> registered again -> Ctrl-C -> no
/// process left, state file removed.
#[test]
fn up_status_kill_controller_start_and_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut g, dir, log_path) = common::start_up(tmp.path(), &[]);
    let up_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(g.seen.len(), 4, "1 ZooKeeper + 3 brokers in cluster.json");
    assert!(up_log().contains("bootstrap servers: 127.0.0.1:"));

    let status = ok(&dir, &["status"]);
    let (c1, e1) = controller(&status).unwrap_or_else(|| panic!("no controller in:\n{status}"));
    for id in 1..=3 {
        assert!(broker_line(&status, id).contains("alive"), "{status}");
    }

    ok(
        &dir,
        &[
            "topics",
            "create",
            "--topic",
            "demo",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    let again = tool(
        &dir,
        &["topics", "create", "--topic", "demo", "--partitions", "3"],
    );
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("Error while executing topic command") && err.contains("TopicAlreadyExists"),
        "{err}"
    );
    wait_until("demo to have leaders", Duration::from_secs(60), || {
        // Right after CreateTopics a broker may not have the topic's metadata yet: retry.
        let d =
            String::from_utf8_lossy(&tool(&dir, &["topics", "describe", "--topic", "demo"]).stdout)
                .into_owned();
        (d.matches("Leader: ").count() == 3 && !d.contains("Leader: none")).then_some(())
    })
    .unwrap();

    // Watch in the background while the controller dies.
    let watch_file = tmp.path().join("watch.log");
    let mut watch = Command::new(BIN)
        .args(["watch", "--seconds", "40", "--dir"])
        .arg(&dir)
        .stdout(std::fs::File::create(&watch_file).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let watched = || std::fs::read_to_string(&watch_file).unwrap_or_default();
    wait_until(
        "watch to take its first snapshot",
        Duration::from_secs(30),
        || watched().contains("watching").then_some(()),
    )
    .unwrap();

    let killed = ok(&dir, &["kill", "controller"]);
    assert!(killed.contains(&format!("broker {c1}")), "{killed}");

    let (c2, e2) = wait_until(
        "status to show a new controller",
        Duration::from_secs(60),
        || controller(&ok(&dir, &["status"])).filter(|(c, e)| *c != c1 && *e > e1),
    )
    .unwrap();
    let status = ok(&dir, &["status"]);
    assert!(broker_line(&status, c1).contains("dead"), "{status}");
    assert!(
        broker_line(&status, c1).contains("not in /brokers/ids"),
        "{status}"
    );
    assert!(
        broker_line(&status, c2).contains("[controller]"),
        "{status}"
    );
    // No partition is led by the dead broker once the new controller has acted.
    wait_until(
        "leaders moved off the dead broker",
        Duration::from_secs(60),
        || {
            let s = ok(&dir, &["status"]);
            (!s.contains(&format!("leader {c1} "))).then_some(())
        },
    )
    .unwrap();

    ok(&dir, &["start", &c1.to_string()]);
    wait_until(
        "the restarted broker to register",
        Duration::from_secs(60),
        || {
            let s = ok(&dir, &["status"]);
            let l = broker_line(&s, c1);
            (l.contains("alive") && l.contains("registered in /brokers/ids")).then_some(())
        },
    )
    .unwrap();
    g.seen.extend(pids(&dir));
    // Starting a running broker is refused with a clear error.
    let twice = tool(&dir, &["start", &c1.to_string()]);
    assert!(!twice.status.success());
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already running"));

    // The preferred leader can lead again once it is back in the ISR.
    wait_until(
        "the restarted broker to rejoin every ISR",
        Duration::from_secs(60),
        || {
            ok(&dir, &["status"])
                .contains("under-replicated partitions: 0")
                .then_some(())
        },
    )
    .unwrap();
    let ok_elect = ok(&dir, &["topics", "elect", "--preferred", "--topic", "demo"]);
    assert!(
        ok_elect.contains("leader election") || ok_elect.contains("already elected"),
        "{ok_elect}"
    );

    // The watcher saw the failover with its timings.
    let _ = watch.kill();
    let _ = watch.wait();
    let w = watched();
    assert!(w.contains(&format!("broker {c1}: process exited")), "{w}");
    assert!(
        w.contains(&format!(
            "controller: broker {c2} elected (controller epoch {e2})"
        )),
        "{w}"
    );
    assert!(w.contains("s after: "), "{w}");

    // Ctrl-C: everything stops, nothing is left.
    // SAFETY: signal to our own child.
    unsafe { libc::kill(g.up.id() as i32, libc::SIGINT) };
    let status = wait_until("up to exit after SIGINT", Duration::from_secs(120), || {
        g.up.try_wait().ok().flatten()
    })
    .unwrap();
    assert!(status.success(), "{}", up_log());
    assert!(up_log().contains("stopped"));
    for p in &g.seen {
        assert!(!alive(*p), "pid {p} still running after Ctrl-C");
    }
    assert!(!dir.join("cluster.json").exists());
    assert!(!dir.join("control.sock").exists());
    // The commands now say so clearly.
    let after = tool(&dir, &["status"]);
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("no running cluster"));
}
