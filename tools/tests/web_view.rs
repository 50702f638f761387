//! The web view `testcluster up` serves, tested in a real browser: headless Chromium (Debian's
//! `chromium` package) driven by playwright-core (`testcluster/clients/web_view_failover.js`).
//!
//! `up` runs in the background as a user runs it; the browser opens the URL `up` printed,
//! clicks the page's "kill controller" button and waits until the page shows a new controller,
//! a higher epoch and the killed broker's partitions led elsewhere. The test then checks what
//! the page showed against ZooKeeper, and that Ctrl-C on `up` leaves no process behind.
//!
//! Screenshots go to a temporary folder; with `UPDATE_SCREENSHOTS=1` they replace
//! `docs/web-view-before.png` and `docs/web-view-after.png`.
//!
//! Needs `cargo build --release -p broker` and `scripts/setup` (chromium, playwright-core).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use testcluster::wait_until;
use zk::client::KafkaZkClient;

mod common;
use common::alive;

const BIN: &str = env!("CARGO_BIN_EXE_testcluster");
const TOPIC: &str = "web";
const PARTITIONS: usize = 3;

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

/// What ZooKeeper says: (controller, controller epoch, registered brokers, leader per partition).
struct ZkView {
    controller: i64,
    epoch: i64,
    registered: Vec<String>,
    leaders: BTreeMap<String, i64>,
}

fn read_zookeeper(connect: &str) -> ZkView {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let zk = KafkaZkClient::connect(connect, Duration::from_secs(10))
            .await
            .expect("connect to ZooKeeper");
        let json = |path: &'static str| {
            let zk = zk.clone();
            async move {
                let (data, _) = zk
                    .get_data_maybe(path)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("no znode {path}"));
                serde_json::from_slice::<serde_json::Value>(&data).unwrap()
            }
        };
        let controller = json("/controller").await["brokerid"].as_i64().unwrap();
        let epoch = json("/controller_epoch").await.as_i64().unwrap();
        let mut registered = zk.get_children_maybe("/brokers/ids").await.unwrap();
        registered.sort();
        let mut leaders = BTreeMap::new();
        for p in 0..PARTITIONS {
            let path = format!("/brokers/topics/{TOPIC}/partitions/{p}/state");
            let (data, _) = zk.get_data_maybe(&path).await.unwrap().unwrap();
            let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
            leaders.insert(p.to_string(), v["leader"].as_i64().unwrap());
        }
        zk.close().await;
        ZkView {
            controller,
            epoch,
            registered,
            leaders,
        }
    })
}

fn leaders_of(v: &serde_json::Value) -> BTreeMap<String, i64> {
    v["leaders"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, l)| (k.clone(), l.as_i64().unwrap()))
        .collect()
}

/// Pids of processes whose command line names `path` (brokers and ZooKeeper carry their
/// config's path in it), except this test's own.
fn processes_under(path: &Path) -> Vec<(i32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if pid != me && cmd.contains(&needle) && alive(pid) {
            out.push((pid, cmd));
        }
    }
    out
}

fn is_png(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() > 10_000 && b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn browser_click_kills_the_controller_and_the_page_shows_the_failover() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let root = testcluster::workspace_root();
    let script = root.join("testcluster/clients/web_view_failover.js");
    assert!(
        Path::new(&chromium).is_file()
            && root
                .join("testcluster/clients/node_modules/playwright-core")
                .is_dir(),
        "the browser test needs Debian's chromium and playwright-core: run scripts/setup"
    );

    let tmp = tempfile::tempdir().unwrap();
    let (mut g, dir, log_path) = common::start_up(tmp.path(), &[]);
    let up_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    assert_eq!(
        processes_under(&dir).len(),
        5,
        "the /proc scan finds up, ZooKeeper and the 3 brokers: {:?}",
        processes_under(&dir)
    );
    assert_eq!(g.seen.len(), 4, "1 ZooKeeper + 3 brokers in cluster.json");
    let url = up_log()
        .lines()
        .find_map(|l| {
            l.split_once("web view: ")
                .map(|(_, u)| u.trim().to_string())
        })
        .unwrap_or_else(|| panic!("up printed no web view URL:\n{}", up_log()));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let zk_connect = state["zookeeper_connect"].as_str().unwrap().to_string();

    // 3 partitions on all 3 brokers: each broker is the preferred leader of one, so the
    // controller leads one and killing it must move a leader.
    ok(
        &dir,
        &[
            "topics",
            "create",
            "--topic",
            TOPIC,
            "--partitions",
            &PARTITIONS.to_string(),
            "--replication-factor",
            "3",
        ],
    );
    wait_until("the topic to have leaders", Duration::from_secs(60), || {
        // Right after CreateTopics a broker may not have the topic's metadata yet: retry.
        let d =
            String::from_utf8_lossy(&tool(&dir, &["topics", "describe", "--topic", TOPIC]).stdout)
                .into_owned();
        (d.matches("Leader: ").count() == PARTITIONS && !d.contains("Leader: none")).then_some(())
    })
    .unwrap();

    let (before_png, after_png): (PathBuf, PathBuf) =
        if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
            (
                root.join("docs/web-view-before.png"),
                root.join("docs/web-view-after.png"),
            )
        } else {
            (
                tmp.path().join("web-view-before.png"),
                tmp.path().join("web-view-after.png"),
            )
        };
    let _ = std::fs::remove_file(&before_png);
    let _ = std::fs::remove_file(&after_png);

    let out = testcluster::command("timeout")
        .arg("180")
        .arg("node")
        .arg(&script)
        .arg(&url)
        .arg(TOPIC)
        .arg(PARTITIONS.to_string())
        .arg(&before_png)
        .arg(&after_png)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed:\n{stdout}\n{stderr}\n--- up ---\n{}",
        up_log()
    );
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"));
    eprintln!("page: {result}");

    let killed = result["killed"].as_i64().unwrap();
    let (before, after) = (&result["before"], &result["after"]);
    let (epoch_before, epoch_after) = (
        before["epoch"].as_i64().unwrap(),
        after["epoch"].as_i64().unwrap(),
    );
    let new_controller = after["controller"].as_i64().unwrap();
    assert_eq!(before["controller"].as_i64(), Some(killed));
    assert_ne!(new_controller, killed);
    assert!(epoch_after > epoch_before, "{result}");
    assert!(
        result["answer"]
            .as_str()
            .unwrap()
            .contains(&format!("broker {killed}")),
        "{result}"
    );
    let (leaders_before, leaders_after) = (leaders_of(before), leaders_of(after));
    assert_eq!(leaders_before.len(), PARTITIONS);
    let moved: Vec<&String> = leaders_before
        .iter()
        .filter(|(_, l)| **l == killed)
        .map(|(p, _)| p)
        .collect();
    assert!(!moved.is_empty(), "{result}");
    for p in &moved {
        let l = leaders_after[*p];
        assert!(
            l >= 0 && l != killed,
            "partition {p}: leader {l} ({result})"
        );
    }
    assert_eq!(after["brokers"][killed.to_string()]["process"], "dead");
    assert_eq!(after["brokers"][killed.to_string()]["registered"], false);

    // What the page showed is what ZooKeeper holds.
    let zk = read_zookeeper(&zk_connect);
    assert_eq!(zk.controller, new_controller, "/controller");
    assert_eq!(zk.epoch, epoch_after, "/controller_epoch");
    assert!(!zk.registered.contains(&killed.to_string()), "/brokers/ids");
    assert_eq!(zk.registered.len(), 2, "/brokers/ids: {:?}", zk.registered);
    assert_eq!(zk.leaders, leaders_after, "partition state znodes");
    // The controller really died: its process is gone, as the page said.
    let dead_pid = state["brokers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"].as_i64() == Some(killed))
        .and_then(|b| b["pid"].as_i64())
        .unwrap() as i32;
    assert!(
        !alive(dead_pid),
        "broker {killed} (pid {dead_pid}) still runs"
    );

    assert!(is_png(&before_png), "{}", before_png.display());
    assert!(is_png(&after_png), "{}", after_png.display());
    assert_ne!(
        std::fs::read(&before_png).unwrap(),
        std::fs::read(&after_png).unwrap()
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
    assert!(!dir.join("cluster.json").exists());
    let left = processes_under(&dir);
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");
}
