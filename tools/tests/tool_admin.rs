//! The admin commands of the `testcluster` binary, driven as a user drives them against a
//! cluster started with `testcluster up`: `reassign propose/execute/verify/list/cancel`,
//! `produce` and `consume` (keys, a consumer group), and `zk`. Each result is checked against
//! what the cluster really did (Metadata through `topics describe`, ZooKeeper through `zk`,
//! the records read back), and bad input must get Kafka's error text.
//!
//! Needs `cargo build --release -p broker` first (the tool starts the real broker binary).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testcluster::wait_until;

mod common;
use common::alive;

const BIN: &str = env!("CARGO_BIN_EXE_testcluster");

fn tool_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    // Every command is bounded (timeout(1)): a hung one fails the test instead of hanging it.
    let mut child = Command::new("timeout")
        .arg("120")
        .arg(BIN)
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run testcluster");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().expect("wait for testcluster")
}

fn tool(dir: &Path, args: &[&str]) -> Output {
    tool_in(dir, args, None)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tool(dir, args);
    assert!(
        out.status.success(),
        "testcluster {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// A command that must fail; returns its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = tool(dir, args);
    assert!(
        !out.status.success(),
        "testcluster {args:?} should have failed: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// (controller id) from `status`.
fn controller(dir: &Path) -> i32 {
    let s = ok(dir, &["status"]);
    let line = s
        .lines()
        .find(|l| l.starts_with("Controller: broker "))
        .unwrap_or_else(|| panic!("no controller in {s}"));
    line["Controller: broker ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Partition -> replicas of `topic`, from `topics describe` (the brokers' Metadata).
fn replicas(dir: &Path, topic: &str) -> BTreeMap<i32, Vec<i32>> {
    let d = ok(dir, &["topics", "describe", "--topic", topic]);
    let mut out = BTreeMap::new();
    for l in d.lines().filter(|l| l.contains("Partition: ")) {
        let field = |name: &str| {
            l.split('\t')
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in {l}"))
                .to_string()
        };
        let p: i32 = field("Partition: ").parse().unwrap();
        let r: Vec<i32> = field("Replicas: ")
            .split(',')
            .map(|x| x.parse().unwrap())
            .collect();
        out.insert(p, r);
    }
    out
}

/// Partition -> replicas in a reassignment plan (Kafka's JSON).
fn plan_replicas(json: &str) -> BTreeMap<(String, i64), Vec<i64>> {
    let v: serde_json::Value =
        serde_json::from_str(json).unwrap_or_else(|e| panic!("not JSON ({e}): {json}"));
    assert_eq!(v["version"], 1, "{json}");
    v["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let r: Vec<i64> = p["replicas"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect();
            let dirs = p["log_dirs"].as_array().unwrap();
            assert_eq!(dirs.len(), r.len(), "{json}");
            assert!(dirs.iter().all(|d| d == "any"), "{json}");
            (
                (
                    p["topic"].as_str().unwrap().to_string(),
                    p["partition"].as_i64().unwrap(),
                ),
                r,
            )
        })
        .collect()
}

/// The line after `header` in `text`.
fn line_after<'a>(text: &'a str, header: &str) -> &'a str {
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| *l == header)
        .unwrap_or_else(|| panic!("no {header:?} in:\n{text}"));
    lines
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("nothing after {header:?} in:\n{text}"))
}

/// (key, value) records printed by `consume --print-key`.
fn records(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("not key<TAB>value: {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn reassign_produce_consume_and_zk_as_a_user_would() {
    let tmp = tempfile::tempdir().unwrap();
    // A long session timeout keeps a paused broker registered (and so a valid reassignment
    // target) while the test starts a reassignment that cannot finish.
    let (mut g, dir, log_path) = common::start_up(
        tmp.path(),
        &["--config", "zookeeper.session.timeout.ms=30000"],
    );
    let up_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(g.seen.len(), 4);

    // Every new command answers --help with examples.
    for cmd in [
        &["reassign", "--help"][..],
        &["reassign", "propose", "--help"],
        &["reassign", "execute", "--help"],
        &["reassign", "verify", "--help"],
        &["reassign", "cancel", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
        &["zk", "--help"],
    ] {
        let h = ok(&dir, cmd);
        assert!(h.contains("Examples:"), "{cmd:?}:\n{h}");
    }

    // ---- reassign ------------------------------------------------------------------------
    ok(
        &dir,
        &[
            "topics",
            "create",
            "--topic",
            "moving",
            "--partitions",
            "3",
            "--replication-factor",
            "2",
        ],
    );
    wait_until("moving to have leaders", Duration::from_secs(60), || {
        // Right after CreateTopics a broker may not have the topic's metadata yet: retry.
        let d = String::from_utf8_lossy(
            &tool(&dir, &["topics", "describe", "--topic", "moving"]).stdout,
        )
        .into_owned();
        (d.matches("Leader: ").count() == 3 && !d.contains("Leader: none")).then_some(())
    })
    .unwrap();
    let c = controller(&dir);
    // `slow` will be paused later; the first plan moves every replica off it.
    let slow = (1..=3).find(|b| *b != c).unwrap();
    let others: Vec<String> = (1..=3)
        .filter(|b| *b != slow)
        .map(|b| b.to_string())
        .collect();
    let before = replicas(&dir, "moving");
    let plan = tmp.path().join("plan.json");
    let out = ok(
        &dir,
        &[
            "reassign",
            "propose",
            "--topics",
            "moving",
            "--brokers",
            &others.join(","),
            "--output",
            plan.to_str().unwrap(),
        ],
    );
    let current = plan_replicas(line_after(&out, "Current partition replica assignment"));
    let proposed = plan_replicas(line_after(
        &out,
        "Proposed partition reassignment configuration",
    ));
    for (p, r) in &before {
        let r: Vec<i64> = r.iter().map(|x| *x as i64).collect();
        assert_eq!(current[&("moving".to_string(), *p as i64)], r, "{out}");
    }
    assert_eq!(proposed.len(), 3);
    for r in proposed.values() {
        assert_eq!(r.len(), 2, "replication factor kept: {out}");
        assert!(!r.contains(&(slow as i64)), "{out}");
        assert_ne!(r[0], r[1]);
    }
    assert_eq!(
        plan_replicas(&std::fs::read_to_string(&plan).unwrap()),
        proposed
    );
    // Kafka's errors for bad input.
    assert_eq!(
        fails(
            &dir,
            &[
                "reassign",
                "propose",
                "--topics",
                "moving",
                "--brokers",
                "1,1"
            ]
        )
        .trim(),
        "Error: Broker list contains duplicate entries: 1"
    );
    assert!(fails(
        &dir,
        &[
            "reassign",
            "propose",
            "--topics",
            "moving",
            "--brokers",
            "1,9"
        ]
    )
    .contains("Error: Unknown broker id 9"));
    assert!(fails(
        &dir,
        &[
            "reassign",
            "propose",
            "--topics",
            "nosuch",
            "--brokers",
            "1,2"
        ]
    )
    .contains("Error: Topic nosuch not found."));
    assert!(fails(
        &dir,
        &[
            "reassign",
            "propose",
            "--topics",
            "moving",
            "--brokers",
            "1"
        ]
    )
    .contains("Error: Replication factor: 2 larger than available brokers: 1."));
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version":1,"partitions":[{"topic":"moving","partition":0,"replicas":[1,1]}]}"#,
    )
    .unwrap();
    assert!(fails(&dir, &["reassign", "execute", "--plan", bad.to_str().unwrap()]).contains(
        "Error: Partition replica lists may not contain duplicate entries: moving-0 contains multiple entries for 1"
    ));
    std::fs::write(
        &bad,
        r#"{"version":1,"partitions":[{"topic":"moving","partition":7,"replicas":[1,2]}]}"#,
    )
    .unwrap();
    assert!(fails(
        &dir,
        &["reassign", "execute", "--plan", bad.to_str().unwrap()]
    )
    .contains("Error: Unable to find partition: moving-7"));

    let out = ok(
        &dir,
        &["reassign", "execute", "--plan", plan.to_str().unwrap()],
    );
    assert!(
        out.contains("Save this to use as the --reassignment-json-file option during rollback"),
        "{out}"
    );
    assert_eq!(
        plan_replicas(line_after(&out, "Current partition replica assignment")),
        current
    );
    assert!(
        out.contains("Successfully started partition reassignments for moving-0,moving-1,moving-2"),
        "{out}"
    );
    wait_until(
        "the reassignment to complete",
        Duration::from_secs(60),
        || {
            let v = ok(
                &dir,
                &["reassign", "verify", "--plan", plan.to_str().unwrap()],
            );
            assert!(v.starts_with("Status of partition reassignment:\n"), "{v}");
            (v.matches("is completed.").count() == 3).then_some(())
        },
    )
    .unwrap();
    // The brokers agree: every partition has the proposed replicas, none on `slow`.
    wait_until(
        "Metadata to show the new replicas",
        Duration::from_secs(30),
        || {
            let now = replicas(&dir, "moving");
            now.iter()
                .all(|(p, r)| {
                    let want = &proposed[&("moving".to_string(), *p as i64)];
                    r.iter().map(|x| *x as i64).collect::<Vec<_>>() == *want
                })
                .then_some(())
        },
    )
    .unwrap();
    assert_eq!(
        ok(&dir, &["reassign", "list"]).trim(),
        "No partition reassignments found."
    );

    // A reassignment that cannot finish: add the paused broker to moving-0, then cancel it.
    let p0 = proposed[&("moving".to_string(), 0)].clone();
    let stuck = tmp.path().join("stuck.json");
    std::fs::write(
        &stuck,
        format!(
            r#"{{"version":1,"partitions":[{{"topic":"moving","partition":0,"replicas":[{},{slow}]}}]}}"#,
            p0[0]
        ),
    )
    .unwrap();
    let stuck_s = stuck.to_str().unwrap();
    ok(&dir, &["kill", &slow.to_string(), "--signal", "STOP"]);
    let out = ok(&dir, &["reassign", "execute", "--plan", stuck_s]);
    assert!(
        out.contains("Successfully started partition reassignment for moving-0"),
        "{out}"
    );
    let v = ok(&dir, &["reassign", "verify", "--plan", stuck_s]);
    assert!(
        v.contains("Reassignment of partition moving-0 is still in progress."),
        "{v}"
    );
    let l = ok(&dir, &["reassign", "list"]);
    assert!(
        l.starts_with("Current partition reassignments:\nmoving-0: replicas: ")
            && l.contains(&format!("adding: {slow}.")),
        "{l}"
    );
    // A second plan while one runs needs --additional, as in Kafka.
    assert!(fails(
        &dir,
        &["reassign", "execute", "--plan", plan.to_str().unwrap()]
    )
    .contains("Cannot execute because there is an existing partition assignment."));
    let out = ok(&dir, &["reassign", "cancel", "--plan", stuck_s]);
    assert_eq!(
        out.trim(),
        "Successfully cancelled partition reassignment for: moving-0"
    );
    assert_eq!(
        ok(&dir, &["reassign", "cancel", "--plan", stuck_s]).trim(),
        "None of the specified partition reassignments are active."
    );
    let v = ok(&dir, &["reassign", "verify", "--plan", stuck_s]);
    assert!(
        v.contains("There is no active reassignment of partition moving-0, but replica set is"),
        "{v}"
    );
    // Cancelled: moving-0 is back on its replicas before the stuck plan (in any order).
    let r0: BTreeSet<i64> = replicas(&dir, "moving")[&0]
        .iter()
        .map(|x| *x as i64)
        .collect();
    assert_eq!(r0, p0.iter().copied().collect::<BTreeSet<_>>());
    ok(&dir, &["kill", &slow.to_string(), "--signal", "CONT"]);

    // ---- produce and consume -------------------------------------------------------------
    ok(
        &dir,
        &[
            "topics",
            "create",
            "--topic",
            "kv",
            "--partitions",
            "3",
            "--replication-factor",
            "3",
        ],
    );
    let lines: Vec<(String, String)> = (0..30)
        .map(|i| (format!("key{}", i % 4), format!("value{i}")))
        .collect();
    let input: String = lines.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let out = tool_in(
        &dir,
        &["produce", "kv", "--key-separator", ":"],
        Some(&input),
    );
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stderr(&out).contains("30 of 30 records acknowledged by kv (acks=all)"),
        "{}",
        stderr(&out)
    );
    // A line without the separator is refused with Kafka's message.
    let out = tool_in(
        &dir,
        &["produce", "kv", "--key-separator", ":"],
        Some("nokey\n"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("No key separator found on line number 1: 'nokey'"),
        "{}",
        stderr(&out)
    );

    // A group reads 10 records, commits, and its next consumer reads the other 20.
    let first = tool(
        &dir,
        &[
            "consume",
            "kv",
            "--group",
            "readers",
            "--from-beginning",
            "--max-messages",
            "10",
            "--print-key",
            "--timeout-ms",
            "60000",
        ],
    );
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("Processed a total of 10 messages"));
    let second = tool(
        &dir,
        &[
            "consume",
            "kv",
            "--group",
            "readers",
            "--from-beginning",
            "--max-messages",
            "20",
            "--print-key",
            "--timeout-ms",
            "60000",
        ],
    );
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stderr(&second).contains("Processed a total of 20 messages"),
        "{}",
        stderr(&second)
    );
    let mut got = records(&stdout(&first));
    got.extend(records(&stdout(&second)));
    let got_set: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), 30);
    assert_eq!(
        got_set,
        lines.iter().cloned().collect::<BTreeSet<_>>(),
        "each record once, with its key"
    );
    // Records of one key share a partition, so each consumer sees them in order.
    for part in [records(&stdout(&first)), records(&stdout(&second))] {
        let mut last: BTreeMap<String, i32> = BTreeMap::new();
        for (k, v) in part {
            let n: i32 = v["value".len()..].parse().unwrap();
            if let Some(prev) = last.insert(k.clone(), n) {
                assert!(prev < n, "{k}: {prev} then {n}");
            }
        }
    }
    // Without a group: from the beginning, nothing committed, values only.
    let all = tool(
        &dir,
        &[
            "consume",
            "kv",
            "--from-beginning",
            "--max-messages",
            "30",
            "--timeout-ms",
            "60000",
        ],
    );
    assert!(all.status.success(), "{}", stderr(&all));
    let values: BTreeSet<String> = stdout(&all).lines().map(str::to_string).collect();
    assert_eq!(
        values,
        lines
            .iter()
            .map(|(_, v)| v.clone())
            .collect::<BTreeSet<_>>()
    );

    // ---- zk -----------------------------------------------------------------------------
    let c = controller(&dir);
    let z = ok(&dir, &["zk", "/controller"]);
    assert!(z.starts_with("/controller  (ephemeral)\n"), "{z}");
    assert!(z.contains(&format!("\"brokerid\": {c}")), "{z}");
    let z = ok(&dir, &["zk", "/brokers/topics/kv"]);
    for p in 0..3 {
        assert!(
            z.contains(&format!("/brokers/topics/kv/partitions/{p}/state\n")),
            "{z}"
        );
    }
    assert!(
        z.contains("\"isr\": [") && z.contains("\"leader\": "),
        "{z}"
    );
    assert!(z.contains("\"partitions\": {"), "assignment decoded: {z}");
    let z = ok(&dir, &["zk"]);
    assert!(z.contains("/brokers/ids/1  (ephemeral)"), "{z}");
    assert!(z.contains("/controller_epoch\n"), "{z}");
    assert!(z.contains("znodes under the chroot /kafka"), "{z}");
    assert_eq!(
        fails(&dir, &["zk", "/nosuch"]).trim(),
        "Node does not exist: /nosuch"
    );

    // Ctrl-C: everything stops, nothing is left.
    // SAFETY: signal to our own child.
    unsafe { libc::kill(g.up.id() as i32, libc::SIGINT) };
    let status = wait_until("up to exit after SIGINT", Duration::from_secs(120), || {
        g.up.try_wait().ok().flatten()
    })
    .unwrap();
    assert!(status.success(), "{}", up_log());
    for p in &g.seen {
        assert!(!alive(*p), "pid {p} still running after Ctrl-C");
    }
}
