//! LogManager: meta.properties checks, the dir lock, clean shutdown and recovery, checkpoints.

use bytes::BytesMut;
use storage::batch;
use storage::{LogConfig, LogManager, MetaProperties};

fn meta(id: i32) -> MetaProperties {
    MetaProperties {
        broker_id: id,
        cluster_id: "cluster-a".into(),
    }
}

fn append(lm: &LogManager, topic: &str, p: i32, n: usize) {
    let log = lm
        .get_or_create_log(topic, p, LogConfig::default())
        .unwrap();
    let mut log = log.lock().unwrap();
    for _ in 0..n {
        log.append_as_leader(BytesMut::from(&batch::simple_batch(0, 2, 20, 1)[..]), 0)
            .unwrap();
    }
}

// Kafka: BrokerMetadataCheckpoint; a dir of another broker or cluster is refused.
#[test]
fn meta_properties_mismatch_names_the_dir_and_the_key() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().join("a")];
    LogManager::open(&dirs, &meta(1), LogConfig::default())
        .unwrap()
        .shutdown()
        .unwrap();
    let e = LogManager::open(&dirs, &meta(2), LogConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("broker.id") && e.contains(&dirs[0].display().to_string()),
        "{e}"
    );
    let other = MetaProperties {
        broker_id: 1,
        cluster_id: "cluster-b".into(),
    };
    let e = LogManager::open(&dirs, &other, LogConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cluster.id"), "{e}");
}

#[test]
fn a_locked_dir_cannot_be_opened_twice() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().to_path_buf()];
    let _lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
    let e = LogManager::open(&dirs, &meta(1), LogConfig::default())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains(".lock"), "{e}");
}

#[test]
fn logs_survive_clean_and_unclean_restarts_across_dirs() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().join("a"), d.path().join("b")];
    {
        let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
        append(&lm, "orders", 0, 3);
        append(&lm, "orders", 1, 2);
        append(&lm, "my-topic", 0, 1);
        lm.checkpoint_high_watermarks(&[("orders".into(), 0, 4)])
            .unwrap();
        lm.shutdown().unwrap();
    }
    // Partitions were spread over both dirs.
    assert!(dirs.iter().all(|d| std::fs::read_dir(d)
        .unwrap()
        .any(|e| e.unwrap().path().is_dir())));
    {
        let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
        assert!(
            !dirs[0].join(".kafka_cleanshutdown").exists(),
            "marker removed while running"
        );
        let logs = lm.all_logs();
        let names: Vec<_> = logs.iter().map(|(t, p, _)| format!("{t}-{p}")).collect();
        assert_eq!(names, vec!["my-topic-0", "orders-0", "orders-1"]);
        assert_eq!(
            lm.get_log("orders", 0)
                .unwrap()
                .lock()
                .unwrap()
                .log_end_offset(),
            6
        );
        assert_eq!(lm.high_watermark_checkpoint("orders", 0), Some(4));
        append(&lm, "orders", 0, 1);
        // no shutdown: a crash
    }
    let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
    assert_eq!(
        lm.get_log("orders", 0)
            .unwrap()
            .lock()
            .unwrap()
            .log_end_offset(),
        8
    );
    lm.write_partition_metadata("orders", 0, "AAAAAAAAAAAAAAAAAAAAAA")
        .unwrap();
    assert_eq!(
        lm.read_partition_metadata("orders", 0).unwrap().as_deref(),
        Some("AAAAAAAAAAAAAAAAAAAAAA")
    );
    lm.delete_log("orders", 1).unwrap();
    assert!(lm.get_log("orders", 1).is_none());
    assert!(!dirs.iter().any(|d| d.join("orders-1").exists()));
}

/// Descriptors of this process open on files under `dir` (other tests run alongside).
fn open_descriptors(dir: &std::path::Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

// Idle partitions hold no descriptor (segment and index files are opened on use), so a broker
// can host more partitions than its open-file limit; the ones in use work as before, also
// after a restart.
#[test]
fn idle_logs_hold_no_file_descriptor() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().join("a")];
    let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
    let before = open_descriptors(d.path());
    for p in 0..300 {
        lm.get_or_create_log("idle", p, LogConfig::default())
            .unwrap();
    }
    let after = open_descriptors(d.path());
    assert!(
        after <= before + 2,
        "300 idle logs opened {} descriptors",
        after - before
    );
    append(&lm, "busy", 0, 5);
    lm.shutdown().unwrap();
    drop(lm);
    let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
    let reopened = open_descriptors(d.path());
    assert!(
        reopened <= before + 2,
        "reopening 301 logs opened {} descriptors",
        reopened - before
    );
    let log = lm.get_log("busy", 0).unwrap();
    assert_eq!(log.lock().unwrap().log_end_offset(), 10);
    append(&lm, "busy", 0, 1);
    assert_eq!(
        lm.get_log("busy", 0)
            .unwrap()
            .lock()
            .unwrap()
            .log_end_offset(),
        12
    );
}

// Leader-epoch checkpoints made durable after a LeaderAndIsr answer hold back the
// recovery-point checkpoint until they are done (see storage::EpochSyncGuard).
#[test]
fn recovery_points_wait_for_pending_epoch_checkpoints() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().join("a")];
    let lm = std::sync::Arc::new(LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap());
    append(&lm, "t", 0, 3);
    let guard = lm.defer_epoch_sync();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let lm = lm.clone();
        std::thread::spawn(move || {
            lm.checkpoint().unwrap();
            tx.send(()).unwrap();
        })
    };
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "the checkpoint was written while an epoch checkpoint was pending"
    );
    drop(guard);
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("the checkpoint is written once nothing is pending");
    writer.join().unwrap();
    // A guard taken after the checkpoint does not block the next one forever once dropped.
    drop(lm.defer_epoch_sync());
    lm.checkpoint().unwrap();
}

// A clean shutdown makes everything written so far durable with one sync of each log dir's
// filesystem: every log's recovery point reaches its end (so a restart recovers nothing) and
// the active segments' preallocated index files are trimmed to their entries, as Kafka leaves
// them.
#[test]
fn clean_shutdown_checkpoints_every_log_at_its_end_with_trimmed_indexes() {
    let d = tempfile::tempdir().unwrap();
    let dirs = vec![d.path().join("a")];
    {
        let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
        for p in 0..20 {
            append(&lm, "orders", p, p as usize % 4);
        }
        lm.shutdown().unwrap();
    }
    let checkpoint =
        std::fs::read_to_string(dirs[0].join("recovery-point-offset-checkpoint")).unwrap();
    for p in 0..20 {
        let end = 2 * (p % 4);
        assert!(
            checkpoint.lines().any(|l| l == format!("orders {p} {end}")),
            "orders-{p} at {end} in:\n{checkpoint}"
        );
        for ext in ["index", "timeindex"] {
            let f = dirs[0].join(format!("orders-{p}/00000000000000000000.{ext}"));
            let len = std::fs::metadata(&f).unwrap().len();
            assert!(len < 1024, "{} is {len} bytes", f.display());
        }
    }
    let lm = LogManager::open(&dirs, &meta(1), LogConfig::default()).unwrap();
    for p in 0..20 {
        let log = lm.get_log("orders", p).unwrap();
        let log = log.lock().unwrap();
        assert_eq!(log.log_end_offset(), 2 * (p as i64 % 4));
        assert_eq!(log.recovery_point(), log.log_end_offset());
    }
}
