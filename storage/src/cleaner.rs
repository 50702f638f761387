//! Log compaction: keep the latest record per key.
//!
//! Kafka class mirrored: `kafka.log.LogCleaner` (with `Cleaner`, `OffsetMap`). For a log with
//! `cleanup.policy=compact`, the cleaner reads the non-active segments, builds a map from each
//! key to the last offset that wrote it, and rewrites every such segment keeping only records
//! that are the latest for their key. Tombstones (a key with a null value) are kept for
//! `delete.retention.ms` after their segment's last timestamp so consumers can see a delete, and
//! then dropped.
//!
//! Invariant: offsets never change; the cleaned segment has the same base offset and holds a
//! subsequence of the batches/records it had. Appends are not blocked: the map and the cleaned
//! files are built without holding the log's lock (non-active segments are immutable); the lock
//! is taken only to swap each cleaned file in, and a segment that was truncated or deleted
//! meanwhile is left alone.
//!
//! Simplifications (said plainly): compressed batches, control batches and batches with a
//! producer id are kept whole (Kafka decompresses and filters them, and keeps producer state);
//! segments are cleaned one to one rather than grouped; there is no `cleaner-offset-checkpoint`:
//! each pass considers all non-active segments; the offset map is a `HashMap` with no memory cap
//! (`log.cleaner.dedupe.buffer.size`).

use crate::batch::{self, BatchHeader, NewRecord, RECORD_BATCH_OVERHEAD};
use crate::error::{IoContext, Result};
use crate::log::now_ms;
use crate::segment::file_name;
use crate::SharedLog;
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{debug, info};

/// What one cleaning pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanerStats {
    pub segments_cleaned: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn read_file(path: &std::path::Path, size: u64) -> Result<Vec<u8>> {
    let f = std::fs::File::open(path).ctx(path)?;
    let mut buf = vec![0u8; size as usize];
    f.read_exact_at(&mut buf, 0).ctx(path)?;
    Ok(buf)
}

fn for_each_batch(buf: &[u8], mut f: impl FnMut(&BatchHeader, &[u8])) {
    let mut at = 0;
    while at + RECORD_BATCH_OVERHEAD <= buf.len() {
        let h = BatchHeader::parse(&buf[at..]);
        if at + h.size() > buf.len() {
            break;
        }
        f(&h, &buf[at..at + h.size()]);
        at += h.size();
    }
}

fn keeps_whole(h: &BatchHeader) -> bool {
    h.compression() != 0 || h.is_control() || h.producer_id >= 0
}

/// One compaction pass over `log` (no-op unless its policy compacts), at wall clock `now`.
pub fn clean_log(log: &SharedLog, now: i64) -> Result<CleanerStats> {
    // Phase 1, under the lock: which segments, and their sizes.
    let (dir, segs, delete_retention_ms, topic, partition) = {
        let l = log.lock().unwrap_or_else(|e| e.into_inner());
        if !l.config.cleanup_policy.compacts() {
            return Ok(CleanerStats::default());
        }
        let active = *l.segments.keys().next_back().expect("active segment");
        let segs: Vec<(i64, u64, i64)> = l
            .segments
            .iter()
            .filter(|(b, _)| **b != active)
            .map(|(b, s)| (*b, s.size(), s.max_timestamp_so_far))
            .collect();
        (
            l.dir.clone(),
            segs,
            l.config.delete_retention_ms,
            l.topic().to_string(),
            l.partition(),
        )
    };
    let mut stats = CleanerStats::default();
    if segs.is_empty() {
        return Ok(stats);
    }
    // Phase 2, no lock: the offset map, key -> last offset.
    let mut map: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut contents = Vec::with_capacity(segs.len());
    for &(base, size, _) in &segs {
        let buf = read_file(&dir.join(file_name(base, ".log")), size)?;
        for_each_batch(&buf, |h, b| {
            if keeps_whole(h) {
                return;
            }
            if let Ok(recs) = batch::records(&b[RECORD_BATCH_OVERHEAD..], h) {
                for r in recs {
                    if let Some(k) = r.key {
                        map.insert(k.to_vec(), h.base_offset + r.offset_delta as i64);
                    }
                }
            }
        });
        contents.push(buf);
    }
    // Phase 3, no lock: write cleaned copies.
    let mut cleaned: Vec<(i64, u64, PathBuf)> = Vec::new();
    for (&(base, size, max_ts), buf) in segs.iter().zip(&contents) {
        let tombstones_expire = max_ts >= 0 && max_ts + delete_retention_ms < now;
        let mut out = Vec::with_capacity(buf.len());
        let mut removed = 0u64;
        for_each_batch(buf, |h, b| {
            if keeps_whole(h) {
                out.extend_from_slice(b);
                return;
            }
            let Ok(recs) = batch::records(&b[RECORD_BATCH_OVERHEAD..], h) else {
                out.extend_from_slice(b);
                return;
            };
            let keep: Vec<_> = recs
                .iter()
                .filter(|r| {
                    let offset = h.base_offset + r.offset_delta as i64;
                    match r.key {
                        None => true,
                        Some(k) => {
                            map.get(k) == Some(&offset) && !(r.value.is_none() && tombstones_expire)
                        }
                    }
                })
                .collect();
            removed += (recs.len() - keep.len()) as u64;
            if keep.len() == recs.len() {
                out.extend_from_slice(b);
            } else if !keep.is_empty() {
                let new: Vec<NewRecord> = keep
                    .iter()
                    .map(|r| NewRecord {
                        offset_delta: r.offset_delta,
                        timestamp: h.base_timestamp + r.timestamp_delta,
                        key: r.key,
                        value: r.value,
                    })
                    .collect();
                let mut nb = batch::build_batch_with(
                    h.base_offset,
                    h.partition_leader_epoch,
                    &new,
                    h.producer_id,
                    -1,
                    -1,
                    h.attributes,
                );
                if h.is_log_append_time() {
                    // The batch's LogAppendTime is its max timestamp: keep it.
                    batch::set_log_append_time(&mut nb, h.max_timestamp);
                }
                out.extend_from_slice(&nb);
            }
        });
        if removed == 0 {
            continue;
        }
        let path = dir.join(file_name(base, ".log.cleaned"));
        let f = std::fs::File::create(&path).ctx(&path)?;
        f.write_all_at(&out, 0).ctx(&path)?;
        f.sync_all().ctx(&path)?;
        stats.records_removed += removed;
        stats.bytes_before += size;
        stats.bytes_after += out.len() as u64;
        cleaned.push((base, size, path));
    }
    // Phase 4, under the lock briefly per segment: swap in.
    for (base, size, path) in cleaned {
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        if l.replace_segment(base, size, &path)? {
            stats.segments_cleaned += 1;
        }
    }
    if stats.segments_cleaned > 0 {
        info!(topic = %topic, partition, segments = stats.segments_cleaned,
            records_removed = stats.records_removed, bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after, "compacted log");
    }
    Ok(stats)
}

/// A background thread that compacts logs every `interval` (Kafka's `log.cleaner.backoff.ms`).
/// Dropping the handle stops the thread.
pub struct LogCleaner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogCleaner {
    /// Starts the thread; `logs` is asked for the current logs on every pass.
    pub fn spawn<F>(logs: F, interval: std::time::Duration) -> LogCleaner
    where
        F: Fn() -> Vec<SharedLog> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("kafka-log-cleaner-thread-0".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    for log in logs() {
                        if let Err(e) = clean_log(&log, now_ms()) {
                            tracing::warn!(error = %e, "log cleaner pass failed");
                        }
                    }
                    // Sleep in short steps so a stop is seen quickly.
                    let deadline = std::time::Instant::now() + interval;
                    while !flag.load(Ordering::Relaxed) && std::time::Instant::now() < deadline {
                        std::thread::park_timeout(std::time::Duration::from_millis(50));
                    }
                }
                debug!("log cleaner stopped");
            })
            .ok();
        LogCleaner { stop, thread }
    }
}

impl Drop for LogCleaner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}
