//! All logs under `log.dirs`, and the files that belong to a log dir rather than to a log.
//!
//! Kafka class mirrored: `kafka.log.LogManager` (with `BrokerMetadataCheckpoint` for
//! `meta.properties` and `PartitionMetadataFile` for `partition.metadata`). Per log dir:
//!
//! - `meta.properties`: Java properties with a `#` date comment, `version=0`, `broker.id`,
//!   `cluster.id` (ZooKeeper mode). A stored value that differs from ours is an error naming the
//!   dir and the key: a log dir must never be served by another broker or cluster.
//! - `.lock`: an exclusive `flock` held while we run, so two brokers cannot share a dir.
//! - `.kafka_cleanshutdown`: written after a clean shutdown, removed at start; without it every
//!   log is recovered from its recovery point.
//! - `recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//!   `replication-offset-checkpoint` (high watermarks, written for the broker).
//!
//! Invariant: a checkpointed recovery point is never above what was fsynced (we flush before
//! writing the checkpoint at shutdown; in between the value comes from each log's flushes).

use crate::checkpoint::{
    self, OffsetCheckpointFile, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
};
use crate::config::LogConfig;
use crate::error::{Error, IoContext, Result};
use crate::log::{parse_topic_partition, Log};
use crate::SharedLog;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use tracing::{info, warn};

pub const META_PROPERTIES: &str = "meta.properties";
pub const LOCK_FILE: &str = ".lock";
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";
pub const PARTITION_METADATA: &str = "partition.metadata";

/// Contents of `meta.properties` (ZooKeeper mode: version=0, broker.id, cluster.id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub broker_id: i32,
    pub cluster_id: String,
}

impl MetaProperties {
    /// Renders Kafka's file: a date comment line, then `key=value` lines.
    pub fn render(&self, date: &str) -> String {
        format!(
            "#\n#{date}\ncluster.id={}\nversion=0\nbroker.id={}\n",
            self.cluster_id, self.broker_id
        )
    }

    /// Reads `meta.properties`, checking `version=0`. Keys are returned as found.
    pub fn read(path: &Path) -> Result<HashMap<String, String>> {
        let text = std::fs::read_to_string(path).ctx(path)?;
        let mut props = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                props.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        Ok(props)
    }
}

/// What we know about each log dir.
struct LogDir {
    path: PathBuf,
    /// Holds the `flock` on `.lock` for as long as the manager lives.
    _lock: File,
}

/// All logs under `log.dirs`: meta.properties, the per-dir checkpoint files, the clean-shutdown
/// marker, creating and deleting partition folders. Mirrors Kafka's LogManager.
/// Internally synchronised (`&self` everywhere) so the broker can share it in an `Arc`.
pub struct LogManager {
    dirs: Vec<LogDir>,
    /// (topic, partition) -> (index into `dirs`, log).
    logs: Mutex<HashMap<(String, i32), (usize, SharedLog)>>,
    /// High watermarks read from `replication-offset-checkpoint` at open.
    high_watermarks: Mutex<HashMap<(String, i32), i64>>,
    default_config: LogConfig,
    /// Leader-epoch checkpoints written after their LeaderAndIsr was answered and not yet
    /// durable (see [`LogManager::defer_epoch_sync`]).
    pending_epoch_syncs: Arc<(Mutex<usize>, Condvar)>,
}

/// Held while leader-epoch checkpoints of a LeaderAndIsr are still being made durable. The
/// recovery-point checkpoint (and the clean-shutdown marker after it) waits until none is held,
/// and no guard is taken while it is written: a recovery point is never durable past records
/// of an epoch whose checkpoint entry is not, so after a crash either the entry is on disk or
/// the records are re-read by recovery, which assigns their epochs again.
pub struct EpochSyncGuard {
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl Drop for EpochSyncGuard {
    fn drop(&mut self) {
        let (n, cv) = &*self.pending;
        *n.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_all();
    }
}

fn date_line() -> String {
    // Kafka writes `new Date()`; we write the UTC time in seconds, enough for a human reader.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("written at unix time {secs} UTC")
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx(&path)?;
    // SAFETY: flock on a valid, open file descriptor owned by `f`.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(Error::Config(format!(
            "failed to acquire lock on {}: another process is using the log dir",
            path.display()
        )));
    }
    Ok(f)
}

impl LogManager {
    /// Opens every dir, creating it if missing; checks `meta.properties` against `meta`
    /// (a different cluster.id or broker.id is an error naming the dir), writes it if absent,
    /// takes `.lock`, loads checkpoints, and opens every `<topic>-<partition>` folder found.
    pub fn open(
        log_dirs: &[PathBuf],
        meta: &MetaProperties,
        default_config: LogConfig,
    ) -> Result<LogManager> {
        if log_dirs.is_empty() {
            return Err(Error::Config("log.dirs is empty".into()));
        }
        let mut dirs = Vec::new();
        let mut logs = HashMap::new();
        let mut hws = HashMap::new();
        for (i, dir) in log_dirs.iter().enumerate() {
            std::fs::create_dir_all(dir).ctx(dir)?;
            let lock = lock_dir(dir)?;
            let meta_path = dir.join(META_PROPERTIES);
            if meta_path.exists() {
                let props = MetaProperties::read(&meta_path)?;
                let expect = [
                    ("version", "0".to_string()),
                    ("broker.id", meta.broker_id.to_string()),
                    ("cluster.id", meta.cluster_id.clone()),
                ];
                for (key, want) in expect {
                    match props.get(key) {
                        Some(v) if *v == want => {}
                        found => {
                            return Err(Error::Config(format!(
                                "{} in log dir {} is {:?} but this broker has {want:?} (file {})",
                                key,
                                dir.display(),
                                found,
                                meta_path.display()
                            )))
                        }
                    }
                }
            } else {
                checkpoint::write_atomically(&meta_path, meta.render(&date_line()).as_bytes())?;
            }
            let clean_marker = dir.join(CLEAN_SHUTDOWN_FILE);
            let had_clean_shutdown = clean_marker.exists();
            let recovery: HashMap<(String, i32), i64> =
                OffsetCheckpointFile::read(&dir.join(RECOVERY_POINT_CHECKPOINT))?
                    .into_iter()
                    .map(|(t, p, o)| ((t, p), o))
                    .collect();
            let starts: HashMap<(String, i32), i64> =
                OffsetCheckpointFile::read(&dir.join(LOG_START_OFFSET_CHECKPOINT))?
                    .into_iter()
                    .map(|(t, p, o)| ((t, p), o))
                    .collect();
            for (t, p, o) in OffsetCheckpointFile::read(&dir.join(REPLICATION_OFFSET_CHECKPOINT))? {
                hws.insert((t, p), o);
            }
            for entry in std::fs::read_dir(dir).ctx(dir)? {
                let entry = entry.ctx(dir)?;
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with("-delete") {
                    // Kafka deletes these in the background; nothing in them is needed.
                    let _ = std::fs::remove_dir_all(&path);
                    continue;
                }
                let Ok((topic, partition)) = parse_topic_partition(&path) else {
                    warn!(dir = %path.display(), "skipping folder that is not <topic>-<partition>");
                    continue;
                };
                let key = (topic.clone(), partition);
                let rp = recovery.get(&key).copied().unwrap_or(0);
                let lso = starts.get(&key).copied().unwrap_or(0);
                let log = Log::open(&path, default_config.clone(), rp, lso, had_clean_shutdown)?;
                if logs.insert(key, (i, Arc::new(Mutex::new(log)))).is_some() {
                    return Err(Error::Config(format!(
                        "duplicate log directories for {topic}-{partition} (second in {})",
                        dir.display()
                    )));
                }
            }
            if had_clean_shutdown {
                std::fs::remove_file(&clean_marker).ctx(&clean_marker)?;
            }
            info!(dir = %dir.display(), had_clean_shutdown, "opened log dir");
            dirs.push(LogDir {
                path: dir.clone(),
                _lock: lock,
            });
        }
        Ok(LogManager {
            dirs,
            logs: Mutex::new(logs),
            high_watermarks: Mutex::new(hws),
            default_config,
            pending_epoch_syncs: Arc::new((Mutex::new(0), Condvar::new())),
        })
    }

    /// The default config given at open.
    pub fn default_config(&self) -> &LogConfig {
        &self.default_config
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), (usize, SharedLog)>> {
        // A poisoned map only means a panic elsewhere; the map itself is still consistent.
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every completed write and rename under the log dirs durable: one `syncfs(2)` per
    /// dir's filesystem (instead of one folder fsync per changed file).
    pub fn sync_dirs(&self) -> Result<()> {
        for dir in &self.dirs {
            let f = File::open(&dir.path).ctx(&dir.path)?;
            // SAFETY: syncfs on a descriptor we own and keep open for the call.
            if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
                return Err(Error::Io {
                    path: dir.path.clone(),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    /// The log for a partition, created in the dir with fewest partitions if absent.
    pub fn get_or_create_log(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<SharedLog> {
        let mut logs = self.logs();
        if let Some((_, log)) = logs.get(&(topic.to_string(), partition)) {
            return Ok(log.clone());
        }
        // With one dir there is nothing to count (counting every creation is quadratic).
        let i = if self.dirs.len() == 1 {
            0
        } else {
            let mut counts = vec![0usize; self.dirs.len()];
            for (i, _) in logs.values() {
                counts[*i] += 1;
            }
            (0..self.dirs.len())
                .min_by_key(|&i| counts[i])
                .expect("at least one dir")
        };
        let path = self.dirs[i].path.join(format!("{topic}-{partition}"));
        let log = Log::open(&path, config, 0, 0, true)?;
        let shared = Arc::new(Mutex::new(log));
        logs.insert((topic.to_string(), partition), (i, shared.clone()));
        drop(logs);
        // Outside the map's lock: creations of other partitions, in parallel, share the
        // journal commit instead of queueing behind this fsync.
        checkpoint::fsync_dir(&self.dirs[i].path)?;
        info!(topic, partition, dir = %path.display(), "created log");
        Ok(shared)
    }

    pub fn get_log(&self, topic: &str, partition: i32) -> Option<SharedLog> {
        self.logs()
            .get(&(topic.to_string(), partition))
            .map(|(_, l)| l.clone())
    }

    /// Removes the log and its folder (StopReplica with delete).
    pub fn delete_log(&self, topic: &str, partition: i32) -> Result<()> {
        let removed = self.logs().remove(&(topic.to_string(), partition));
        let Some((_, shared)) = removed else {
            return Ok(());
        };
        let log = match Arc::try_unwrap(shared) {
            Ok(m) => m.into_inner().unwrap_or_else(|e| e.into_inner()),
            Err(shared) => {
                // Someone still holds it (a leader-epoch checkpoint in the background, a
                // fetch): rename the folder under the log's lock, as Kafka does first, so that
                // their later writes by the old path fail instead of re-filling the folder we
                // remove; their open handles see unlinked files, as in Kafka after StopReplica.
                let log = shared.lock().unwrap_or_else(|e| e.into_inner());
                let target = log.rename_for_deletion()?;
                drop(log);
                std::fs::remove_dir_all(&target).ctx(&target)?;
                self.high_watermarks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(topic.to_string(), partition));
                return Ok(());
            }
        };
        self.high_watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(topic.to_string(), partition));
        log.delete()
    }

    /// See [`EpochSyncGuard`]. Taken before a LeaderAndIsr changes any partition, dropped when
    /// its leader-epoch checkpoints are durable.
    pub fn defer_epoch_sync(&self) -> EpochSyncGuard {
        let (n, _) = &*self.pending_epoch_syncs;
        *n.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        EpochSyncGuard {
            pending: self.pending_epoch_syncs.clone(),
        }
    }

    /// Writes recovery-point and log-start-offset checkpoints.
    pub fn checkpoint(&self) -> Result<()> {
        let (n, cv) = &*self.pending_epoch_syncs;
        let mut pending = n.lock().unwrap_or_else(|e| e.into_inner());
        while *pending > 0 {
            pending = cv.wait(pending).unwrap_or_else(|e| e.into_inner());
        }
        let logs = self.logs();
        for (i, dir) in self.dirs.iter().enumerate() {
            let mut rps = Vec::new();
            let mut starts = Vec::new();
            for ((t, p), (d, log)) in logs.iter() {
                if *d != i {
                    continue;
                }
                let log = log.lock().unwrap_or_else(|e| e.into_inner());
                rps.push((t.clone(), *p, log.recovery_point()));
                let first_base = log.segment_base_offsets().first().copied().unwrap_or(0);
                if log.log_start_offset() > first_base {
                    starts.push((t.clone(), *p, log.log_start_offset()));
                }
            }
            rps.sort();
            starts.sort();
            OffsetCheckpointFile::write(&dir.path.join(RECOVERY_POINT_CHECKPOINT), &rps)?;
            OffsetCheckpointFile::write(&dir.path.join(LOG_START_OFFSET_CHECKPOINT), &starts)?;
        }
        Ok(())
    }

    /// Writes replication-offset-checkpoint (high watermarks) per dir.
    pub fn checkpoint_high_watermarks(&self, hws: &[(String, i32, i64)]) -> Result<()> {
        let logs = self.logs();
        let mut per_dir: Vec<Vec<(String, i32, i64)>> = vec![Vec::new(); self.dirs.len()];
        let mut stored = self
            .high_watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (t, p, hw) in hws {
            if let Some((d, _)) = logs.get(&(t.clone(), *p)) {
                per_dir[*d].push((t.clone(), *p, *hw));
                stored.insert((t.clone(), *p), *hw);
            }
        }
        for (i, mut entries) in per_dir.into_iter().enumerate() {
            entries.sort();
            OffsetCheckpointFile::write(
                &self.dirs[i].path.join(REPLICATION_OFFSET_CHECKPOINT),
                &entries,
            )?;
        }
        Ok(())
    }

    pub fn high_watermark_checkpoint(&self, topic: &str, partition: i32) -> Option<i64> {
        self.high_watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// Flush, close every log, write checkpoints and `.kafka_cleanshutdown`.
    ///
    /// Kafka flushes and closes each log in turn (with `num.recovery.threads.per.data.dir`
    /// threads). Here each log's index files are trimmed, then one `syncfs` per log dir makes
    /// every log's data, indexes and folder durable at once, and each recovery point moves up
    /// to the end the log had before that sync. At 10,000 partitions that is one sync instead of
    /// tens of thousands of fsyncs (each a journal commit and a disk cache flush), which kept a
    /// broker stopping in a controlled shutdown busy for seconds, on the machine its peers share.
    pub fn shutdown(&self) -> Result<()> {
        {
            let all: Vec<SharedLog> = self.logs().values().map(|(_, l)| l.clone()).collect();
            let mut ends = Vec::with_capacity(all.len());
            for log in &all {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                log.trim_indexes_unsynced()?;
                ends.push(log.log_end_offset());
            }
            self.sync_dirs()?;
            for (log, end) in all.iter().zip(ends) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .mark_synced_to(end);
            }
        }
        self.checkpoint()?;
        for dir in &self.dirs {
            let marker = dir.path.join(CLEAN_SHUTDOWN_FILE);
            File::create(&marker)
                .and_then(|f| f.sync_all())
                .ctx(&marker)?;
            checkpoint::fsync_dir(&dir.path)?;
        }
        info!("log manager shut down cleanly");
        Ok(())
    }

    /// Every (topic, partition) with a log on disk.
    pub fn all_logs(&self) -> Vec<(String, i32, SharedLog)> {
        let mut v: Vec<_> = self
            .logs()
            .iter()
            .map(|((t, p), (_, l))| (t.clone(), *p, l.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        v
    }

    /// Writes `partition.metadata` (`version: 0`, `topic_id: <base64url uuid>`, no trailing
    /// newline) in the partition folder, atomically.
    pub fn write_partition_metadata(
        &self,
        topic: &str,
        partition: i32,
        topic_id: &str,
    ) -> Result<()> {
        let log = self
            .get_log(topic, partition)
            .ok_or_else(|| Error::Config(format!("no log for {topic}-{partition}")))?;
        let dir = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dir()
            .to_path_buf();
        checkpoint::write_atomically(
            &dir.join(PARTITION_METADATA),
            format!("version: 0\ntopic_id: {topic_id}").as_bytes(),
        )
    }

    /// Reads the topic id from `partition.metadata`, if present.
    pub fn read_partition_metadata(&self, topic: &str, partition: i32) -> Result<Option<String>> {
        let Some(log) = self.get_log(topic, partition) else {
            return Ok(None);
        };
        let path = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dir()
            .join(PARTITION_METADATA);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(t
                .lines()
                .find_map(|l| l.strip_prefix("topic_id: "))
                .map(|s| s.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }
}
