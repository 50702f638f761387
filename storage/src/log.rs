//! The log of one partition replica: an ordered set of segments plus its offsets.
//!
//! Kafka classes mirrored: `UnifiedLog` and `LocalLog` (appends, reads, roll, truncation,
//! retention, flush) and `LogLoader` (recovery on open). The folder is
//! `<log.dir>/<topic>-<partition>`; the segments are keyed by base offset; the last one is the
//! active segment, the only one written to.
//!
//! Offsets kept here:
//! - `log_start_offset`: the first offset a reader may ask for (raised by retention and
//!   DeleteRecords);
//! - `log_end_offset` (LEO): the offset the next appended record gets;
//! - `recovery_point`: everything below it has been fsynced; on an unclean open only segments
//!   holding offsets at or above it are re-read and validated.
//!
//! The high watermark is not kept here: it belongs to replication, so the broker owns it and
//! passes it in where it matters (`read`'s `max_offset`, retention, DeleteRecords).
//!
//! Invariant: an append either writes all its batches or, on a validation error, nothing.
//! Simplifications: no producer state (`.snapshot`) or transaction index (`.txnindex`); files of
//! deleted segments are removed at once rather than after `file.delete.delay.ms`.

use crate::batch::{self, BatchHeader};
use crate::checkpoint::LEADER_EPOCH_CHECKPOINT;
use crate::config::{LogConfig, TimestampType};
use crate::epoch::LeaderEpochFileCache;
use crate::error::{Error, IoContext, Result};
use crate::producer_state::{self, ProducerStateManager, SequenceCheck};
use crate::segment::LogSegment;
use crate::{FetchDataInfo, LogAppendInfo, TimestampAndOffset};
use crate::{EARLIEST_TIMESTAMP, LATEST_TIMESTAMP, MAX_TIMESTAMP};
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tracing::{debug, info, warn};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Splits a partition folder name `<topic>-<partition>`.
pub fn parse_topic_partition(dir: &Path) -> Result<(String, i32)> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("log folder {} has no usable name", dir.display())))?;
    let (topic, p) = name.rsplit_once('-').ok_or_else(|| {
        Error::Config(format!(
            "log folder {} is not named <topic>-<partition>",
            dir.display()
        ))
    })?;
    let partition: i32 = p.parse().map_err(|_| {
        Error::Config(format!(
            "log folder {} is not named <topic>-<partition>",
            dir.display()
        ))
    })?;
    if topic.is_empty() || partition < 0 {
        return Err(Error::Config(format!(
            "log folder {} is not named <topic>-<partition>",
            dir.display()
        )));
    }
    Ok((topic.to_string(), partition))
}

/// One partition replica's log: the folder `<log.dir>/<topic>-<partition>`.
/// Not internally synchronised: the broker keeps each `Log` behind a lock.
pub struct Log {
    pub(crate) dir: PathBuf,
    topic: String,
    partition: i32,
    pub(crate) config: LogConfig,
    /// Segments by base offset; the last is active.
    pub(crate) segments: BTreeMap<i64, LogSegment>,
    log_start_offset: i64,
    log_end_offset: i64,
    recovery_point: i64,
    epoch_cache: LeaderEpochFileCache,
    /// Idempotent producers' last batches (duplicate and sequence checks).
    producers: ProducerStateManager,
    /// Wall clock of the last flush (for `flush.ms`).
    last_flush_ms: i64,
    /// Segment files were created since the last flush: the folder needs an fsync too.
    dir_dirty: bool,
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering segments past `recovery_point` when
    /// `had_clean_shutdown` is false.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
        had_clean_shutdown: bool,
    ) -> Result<Log> {
        let (topic, partition) = parse_topic_partition(dir)?;
        std::fs::create_dir_all(dir).ctx(dir)?;
        let now = now_ms();
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).ctx(dir)? {
            let entry = entry.ctx(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".deleted")
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
                || name.ends_with(".tmp")
            {
                // Leftovers of an interrupted delete, clean or checkpoint: the originals are intact.
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        // Orphan index files (no .log) are removed so they cannot be picked up later.
        for entry in std::fs::read_dir(dir).ctx(dir)? {
            let entry = entry.ctx(dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stem = name
                .strip_suffix(".index")
                .or_else(|| name.strip_suffix(".timeindex"));
            if let Some(base) = stem.and_then(|s| s.parse::<i64>().ok()) {
                if bases.binary_search(&base).is_err() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let mut segments = BTreeMap::new();
        let mut recovered_any = false;
        let mut recovered_bases = Vec::new();
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let (mut seg, sane) = LogSegment::open(dir, base, &config, now)?;
            let next_base = bases.get(i + 1).copied();
            let unflushed = next_base.is_none_or(|n| n > recovery_point);
            if !sane || (!had_clean_shutdown && unflushed) {
                let cut = seg.recover(config.max_message_bytes)?;
                recovered_any = true;
                recovered_bases.push(base);
                if cut > 0 {
                    warn!(topic = %topic, partition, base_offset = base, bytes_truncated = cut,
                        "truncated invalid bytes at the end of segment during recovery");
                    // Everything after a corrupt batch is gone: later segments cannot continue.
                    for &later in &bases[i + 1..] {
                        if let Ok((s, _)) = LogSegment::open(dir, later, &config, now) {
                            s.delete_files()?;
                        }
                    }
                    segments.insert(base, seg);
                    break;
                }
            }
            segments.insert(base, seg);
            i += 1;
        }
        let epoch_cache = LeaderEpochFileCache::load(&dir.join(LEADER_EPOCH_CHECKPOINT))?;
        let mut log = Log {
            dir: dir.to_path_buf(),
            topic,
            partition,
            config,
            segments,
            log_start_offset: log_start_offset.max(0),
            log_end_offset: 0,
            recovery_point,
            epoch_cache,
            producers: ProducerStateManager::new(),
            last_flush_ms: now,
            dir_dirty: true,
        };
        if log.segments.is_empty() {
            let base = log.log_start_offset;
            log.segments
                .insert(base, LogSegment::create(dir, base, &log.config, now)?);
        }
        // The active segment gets preallocated indexes again.
        log.active_mut().on_become_active()?;
        log.log_end_offset = log.active().next_offset;
        let first_base = *log.segments.keys().next().expect("at least one segment");
        log.log_start_offset = log.log_start_offset.max(first_base);
        if log.log_start_offset > log.log_end_offset {
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        if recovered_any {
            for seg in log.segments.values() {
                seg.flush()?;
            }
            log.recovery_point = log.log_end_offset;
        }
        log.recovery_point = log.recovery_point.min(log.log_end_offset);
        log.epoch_cache.truncate_from_end(log.log_end_offset)?;
        log.epoch_cache.truncate_from_start(log.log_start_offset)?;
        // Kafka's `LogSegment.recover`: every recovered batch's leader epoch is assigned, so
        // the cache covers the batches that reached the disk even if the checkpoint recording
        // their epoch did not.
        let mut rebuilt = false;
        for base in &recovered_bases {
            if let Some(seg) = log.segments.get(base) {
                let cache = &mut log.epoch_cache;
                seg.for_each_header(|h| {
                    if h.partition_leader_epoch >= 0 {
                        rebuilt |= cache.assign_in_memory(h.partition_leader_epoch, h.base_offset);
                    }
                })?;
            }
        }
        if rebuilt {
            log.epoch_cache.flush()?;
        }
        log.rebuild_producer_state()?;
        info!(topic = %log.topic, partition = log.partition, log_start_offset = log.log_start_offset,
            log_end_offset = log.log_end_offset, recovery_point = log.recovery_point,
            segments = log.segments.len(), recovered = recovered_any,
            producers = log.producers.len(), "loaded log");
        Ok(log)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn topic(&self) -> &str {
        &self.topic
    }
    pub fn partition(&self) -> i32 {
        self.partition
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn update_config(&mut self, config: LogConfig) {
        self.config = config;
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset
    }
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }
    /// Number of segments (tests and metrics).
    pub fn number_of_segments(&self) -> usize {
        self.segments.len()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }
    /// Total bytes of the `.log` files.
    pub fn size(&self) -> u64 {
        self.segments.values().map(LogSegment::size).sum()
    }
    /// The leader epoch cache entries (epoch, start offset).
    pub fn leader_epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epoch_cache.entries().to_vec()
    }

    pub(crate) fn active(&self) -> &LogSegment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }
    pub(crate) fn active_mut(&mut self) -> &mut LogSegment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Splits and validates producer input; the typed error leaves the log untouched.
    fn analyze(&self, records: &[u8], from_client: bool) -> Result<Vec<batch::BatchPos>> {
        let batches = batch::split_batches(records)?;
        if batches.is_empty() {
            return Err(Error::InvalidRecord(
                "no record batches in the request".into(),
            ));
        }
        for b in &batches {
            let size = b.header.size();
            if size > self.config.max_message_bytes {
                return Err(Error::MessageTooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            let bytes = &records[b.position..b.position + size];
            if from_client {
                batch::validate_client_batch(bytes, self.config.cleanup_policy.compacts())?;
            } else {
                batch::validate_stored_batch(bytes)?;
            }
        }
        if records.len() as u64 > self.config.segment_bytes {
            return Err(Error::RecordListTooLarge(format!(
                "{} bytes of batches exceed segment.bytes {}",
                records.len(),
                self.config.segment_bytes
            )));
        }
        if from_client && batches.len() > 1 {
            // Kafka: LogValidator.getFirstBatchAndMaybeValidateNoMoreBatches; with magic 2 a
            // partition's records in a produce request are one batch (what every client sends).
            return Err(Error::InvalidRecord(format!(
                "{} record batches for one partition; a produce request carries one",
                batches.len()
            )));
        }
        Ok(batches)
    }

    /// Leader append: validates, assigns offsets in place (rewrites base offsets, sets the
    /// partition leader epoch), stamps LogAppendTime if configured. `records` is one or more v2
    /// batches.
    pub fn append_as_leader(
        &mut self,
        mut records: BytesMut,
        leader_epoch: i32,
    ) -> Result<LogAppendInfo> {
        let batches = self.analyze(&records, true)?;
        if let Some(dup) = self.check_producers(&batches)? {
            return Ok(dup);
        }
        let now = now_ms();
        let log_append_time = self.config.message_timestamp_type == TimestampType::LogAppendTime;
        let mut offset = self.log_end_offset;
        let mut headers = Vec::with_capacity(batches.len());
        for b in &batches {
            let bytes = &mut records[b.position..b.position + b.header.size()];
            batch::set_offset_and_epoch(bytes, offset, leader_epoch);
            if log_append_time {
                batch::set_log_append_time(bytes, now);
            }
            let h = BatchHeader::parse(bytes);
            offset = h.next_offset();
            headers.push(h);
        }
        if self
            .epoch_cache
            .latest_epoch()
            .is_none_or(|e| leader_epoch > e)
            && leader_epoch >= 0
        {
            self.epoch_cache.assign(leader_epoch, self.log_end_offset)?;
        }
        let mut info = self.write(&records, &headers)?;
        info.log_append_time = if log_append_time { now } else { -1 };
        Ok(info)
    }

    /// Follower append: validates and keeps the leader's offsets; they must continue the log.
    pub fn append_as_follower(&mut self, records: Bytes) -> Result<LogAppendInfo> {
        let batches = self.analyze(&records, false)?;
        let mut expected = self.log_end_offset;
        for b in &batches {
            if b.header.base_offset < expected {
                return Err(Error::UnexpectedOffset(format!(
                    "batch at offset {} but the log end offset is {} (topic {}, partition {})",
                    b.header.base_offset, expected, self.topic, self.partition
                )));
            }
            expected = b.header.next_offset();
        }
        let headers: Vec<BatchHeader> = batches.iter().map(|b| b.header).collect();
        for h in &headers {
            let e = h.partition_leader_epoch;
            if e >= 0 && self.epoch_cache.latest_epoch().is_none_or(|l| e > l) {
                self.epoch_cache.assign(e, h.base_offset)?;
            }
        }
        self.write(&records, &headers)
    }

    /// Leader append without copying the client's bytes: each batch's first 16 bytes (base
    /// offset, length, leader epoch; not covered by the CRC) are patched in a small buffer and
    /// written before the rest of the batch as received. LogAppendTime topics change
    /// CRC-covered bytes, so they take the copying [`Log::append_as_leader`].
    pub fn append_as_leader_shared(
        &mut self,
        records: Bytes,
        leader_epoch: i32,
    ) -> Result<LogAppendInfo> {
        if self.config.message_timestamp_type == TimestampType::LogAppendTime {
            return self.append_as_leader(BytesMut::from(&records[..]), leader_epoch);
        }
        let batches = self.analyze(&records, true)?;
        if let Some(dup) = self.check_producers(&batches)? {
            return Ok(dup);
        }
        let mut offset = self.log_end_offset;
        let mut headers = Vec::with_capacity(batches.len());
        let mut prefixes = Vec::with_capacity(batches.len());
        for b in &batches {
            let mut prefix = [0u8; 16];
            prefix.copy_from_slice(&records[b.position..b.position + 16]);
            batch::set_offset_and_epoch(&mut prefix, offset, leader_epoch);
            let mut h = b.header;
            h.base_offset = offset;
            h.partition_leader_epoch = leader_epoch;
            offset = h.next_offset();
            headers.push(h);
            prefixes.push(prefix);
        }
        let mut parts: Vec<&[u8]> = Vec::with_capacity(2 * batches.len());
        for (b, prefix) in batches.iter().zip(&prefixes) {
            parts.push(prefix);
            parts.push(&records[b.position + 16..b.position + b.header.size()]);
        }
        if self
            .epoch_cache
            .latest_epoch()
            .is_none_or(|e| leader_epoch > e)
            && leader_epoch >= 0
        {
            self.epoch_cache.assign(leader_epoch, self.log_end_offset)?;
        }
        self.write_parts(&parts, &headers)
    }

    /// Writes validated batches to the active segment, rolling first if needed.
    fn write(&mut self, records: &[u8], headers: &[BatchHeader]) -> Result<LogAppendInfo> {
        self.write_parts(&[records], headers)
    }

    /// [`Log::write`] with the bytes given as consecutive pieces.
    fn write_parts(&mut self, parts: &[&[u8]], headers: &[BatchHeader]) -> Result<LogAppendInfo> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let first = headers.first().expect("analyze refuses empty input");
        let last = headers.last().expect("analyze refuses empty input");
        let now = now_ms();
        let max_ts = headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1);
        if self
            .active()
            .should_roll(&self.config, len as u64, last.last_offset(), max_ts, now)
        {
            self.roll(first.base_offset, now)?;
        }
        self.active_mut().append_parts(parts, headers)?;
        self.log_end_offset = last.next_offset();
        for h in headers {
            self.producers.update(h);
        }
        let mut max_timestamp = -1;
        let mut record_count = 0u32;
        for h in headers {
            max_timestamp = max_timestamp.max(h.max_timestamp);
            record_count += h.record_count.max(0) as u32;
        }
        debug!(topic = %self.topic, partition = self.partition, base_offset = first.base_offset,
            last_offset = last.last_offset(), bytes = len, "appended");
        // Kafka's `UnifiedLog.append`: flush.messages is checked on every append (flush.ms only
        // by the periodic flusher, every log.flush.scheduler.interval.ms).
        let unflushed = (self.log_end_offset - self.recovery_point).max(0) as u64;
        if unflushed >= self.config.flush_messages {
            self.flush()?;
        }
        Ok(LogAppendInfo {
            base_offset: first.base_offset,
            last_offset: last.last_offset(),
            max_timestamp,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            record_count,
            duplicate: false,
        })
    }

    /// Producer checks of a client's batches (Kafka: `analyzeAndValidateProducerState`).
    /// `Some` when the request is a retry of a batch already in the log: the answer to give.
    fn check_producers(&self, batches: &[batch::BatchPos]) -> Result<Option<LogAppendInfo>> {
        let idempotent = batches
            .iter()
            .any(|b| b.header.producer_id != producer_state::NO_PRODUCER_ID);
        if !idempotent {
            return Ok(None);
        }
        if batches.len() > 1 {
            // ProduceRequest v3+ carries exactly one batch per partition.
            return Err(Error::InvalidRecord(
                "a produce request must carry exactly one record batch per partition".into(),
            ));
        }
        let h = &batches[0].header;
        match self.producers.check(&self.topic, self.partition, h)? {
            SequenceCheck::Append => Ok(None),
            SequenceCheck::Duplicate(m) => {
                info!(topic = %self.topic, partition = self.partition, producer_id = h.producer_id,
                    producer_epoch = h.producer_epoch, first_sequence = m.first_seq,
                    base_offset = m.first_offset, "duplicate batch of an idempotent producer: not written again");
                Ok(Some(LogAppendInfo {
                    base_offset: m.first_offset,
                    last_offset: m.last_offset,
                    max_timestamp: m.max_timestamp,
                    log_append_time: -1,
                    log_start_offset: self.log_start_offset,
                    record_count: 0,
                    duplicate: true,
                }))
            }
        }
    }

    /// Reads every batch header of the log again to rebuild the producer state (after load and
    /// truncation; Kafka restores a snapshot and reads from there).
    fn rebuild_producer_state(&mut self) -> Result<()> {
        self.producers.clear();
        let producers = &mut self.producers;
        for seg in self.segments.values() {
            seg.for_each_header(|h| producers.update(h))?;
        }
        Ok(())
    }

    /// Starts a new active segment at `base_offset` (Kafka: `roll`).
    fn roll(&mut self, base_offset: i64, now: i64) -> Result<()> {
        let base_offset = base_offset.max(self.log_end_offset);
        if self.active().is_empty() && self.active().base_offset == base_offset {
            return Ok(());
        }
        self.active_mut().on_become_inactive()?;
        if self.active().is_empty() {
            // An empty active segment at a lower base is replaced (Kafka deletes it too).
            let base = self.active().base_offset;
            if let Some(seg) = self.segments.remove(&base) {
                seg.delete_files()?;
            }
        }
        let seg = LogSegment::create(&self.dir, base_offset, &self.config, now)?;
        self.segments.insert(base_offset, seg);
        self.dir_dirty = true;
        info!(topic = %self.topic, partition = self.partition, base_offset, "rolled new log segment");
        Ok(())
    }

    /// Whole batches from `start_offset`, at most `max_bytes` (but at least one batch when
    /// `min_one_message`), none starting at or past `max_offset` (e.g. the high watermark).
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset: Option<i64>,
        min_one_message: bool,
    ) -> Result<FetchDataInfo> {
        if start_offset < self.log_start_offset || start_offset > self.log_end_offset {
            return Err(Error::OffsetOutOfRange {
                offset: start_offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset,
            });
        }
        let empty = FetchDataInfo {
            records: Bytes::new(),
            first_offset: start_offset,
        };
        if start_offset == self.log_end_offset || max_offset.is_some_and(|m| start_offset >= m) {
            return Ok(empty);
        }
        let floor = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(self.log_start_offset, |(b, _)| *b);
        for (_, seg) in self.segments.range(floor..) {
            if let Some((records, first_offset)) =
                seg.read(start_offset, max_bytes, max_offset, min_one_message)?
            {
                return Ok(FetchDataInfo {
                    records,
                    first_offset,
                });
            }
        }
        Ok(empty)
    }

    /// ListOffsets: earliest (-2), latest (-1), max timestamp (-3), or the first offset whose
    /// timestamp is >= `timestamp`.
    pub fn fetch_offset_by_timestamp(&self, timestamp: i64) -> Result<Option<TimestampAndOffset>> {
        let epoch_of = |o: i64| self.epoch_cache.epoch_for_offset(o);
        match timestamp {
            EARLIEST_TIMESTAMP => Ok(Some(TimestampAndOffset {
                timestamp: -1,
                offset: self.log_start_offset,
                leader_epoch: epoch_of(self.log_start_offset),
            })),
            LATEST_TIMESTAMP => Ok(Some(TimestampAndOffset {
                timestamp: -1,
                offset: self.log_end_offset,
                leader_epoch: self.epoch_cache.latest_epoch(),
            })),
            MAX_TIMESTAMP => {
                let best = self
                    .segments
                    .values()
                    .filter(|s| s.max_timestamp_so_far >= 0)
                    .max_by_key(|s| s.max_timestamp_so_far);
                Ok(best.map(|s| TimestampAndOffset {
                    timestamp: s.max_timestamp_so_far,
                    offset: s.offset_of_max_timestamp,
                    leader_epoch: epoch_of(s.offset_of_max_timestamp),
                }))
            }
            t if t < 0 => Err(Error::InvalidTimestamp(format!(
                "unsupported ListOffsets timestamp {t}"
            ))),
            t => {
                for seg in self.segments.values() {
                    if seg.max_timestamp_so_far < t {
                        continue;
                    }
                    if let Some((offset, ts, epoch)) = seg.find_offset_by_timestamp(t)? {
                        if offset < self.log_start_offset {
                            continue;
                        }
                        return Ok(Some(TimestampAndOffset {
                            timestamp: ts,
                            offset,
                            leader_epoch: (epoch >= 0).then_some(epoch),
                        }));
                    }
                }
                Ok(None)
            }
        }
    }

    /// Flushes if the flush policy says so (flush.messages / flush.ms); called by the broker
    /// after appends and on a timer.
    pub fn maybe_flush(&mut self) -> Result<()> {
        let unflushed = (self.log_end_offset - self.recovery_point).max(0) as u64;
        let elapsed = (now_ms() - self.last_flush_ms).max(0) as u64;
        if unflushed > 0
            && (unflushed >= self.config.flush_messages || elapsed >= self.config.flush_ms)
        {
            self.flush()?;
        }
        Ok(())
    }

    /// fsyncs every segment holding offsets at or above the recovery point, then moves the
    /// recovery point to the log end offset.
    pub fn flush(&mut self) -> Result<()> {
        let rp = self.recovery_point;
        let floor = self
            .segments
            .range(..=rp)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let active = self.active().base_offset;
        for (&base, seg) in self.segments.range(floor..) {
            if base == active {
                seg.flush_log()?;
            } else {
                seg.flush()?;
            }
        }
        // New segment files must survive a crash too: their directory entries are in the folder.
        if self.dir_dirty {
            crate::checkpoint::fsync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        self.recovery_point = self.log_end_offset;
        self.last_flush_ms = now_ms();
        debug!(topic = %self.topic, partition = self.partition, offset = self.recovery_point, "flushed log");
        Ok(())
    }

    /// Truncates the log so that it ends before `offset` (a follower after a leader change).
    /// Whole batches only: a batch holding `offset` is removed entirely, so the new log end
    /// offset is the end of the last batch kept, <= `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(Error::InvalidRecord(format!(
                "cannot truncate to negative offset {offset}"
            )));
        }
        if offset >= self.log_end_offset {
            return Ok(());
        }
        if offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset);
        }
        let doomed: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        if doomed.len() == self.segments.len() {
            return self.truncate_fully_and_start_at(offset);
        }
        for b in doomed {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete_files()?;
            }
        }
        let active = self.active_mut();
        active.truncate_to(offset)?;
        active.on_become_active()?;
        self.log_end_offset = self.active().next_offset;
        if self.log_end_offset < self.log_start_offset {
            // The batch holding the log start offset went: nothing readable is left.
            return self.truncate_fully_and_start_at(offset);
        }
        self.recovery_point = self.recovery_point.min(self.log_end_offset);
        self.epoch_cache.truncate_from_end(self.log_end_offset)?;
        self.rebuild_producer_state()?;
        info!(topic = %self.topic, partition = self.partition, offset, log_end_offset = self.log_end_offset,
            "truncated log");
        Ok(())
    }

    /// Deletes every segment and starts empty at `offset` (Kafka: `truncateFullyAndStartAt`).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let all = std::mem::take(&mut self.segments);
        for (_, seg) in all {
            seg.delete_files()?;
        }
        let seg = LogSegment::create(&self.dir, offset, &self.config, now_ms())?;
        self.segments.insert(offset, seg);
        self.dir_dirty = true;
        self.log_start_offset = offset;
        self.log_end_offset = offset;
        self.recovery_point = offset;
        self.epoch_cache.clear()?;
        self.producers.clear();
        info!(topic = %self.topic, partition = self.partition, offset, "truncated log fully");
        Ok(())
    }

    /// DeleteRecords semantics: raises the log start offset (never above `high_watermark`).
    pub fn maybe_increment_log_start_offset(
        &mut self,
        offset: i64,
        high_watermark: i64,
    ) -> Result<()> {
        if offset > high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: high_watermark,
            });
        }
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.epoch_cache.truncate_from_start(offset)?;
            info!(topic = %self.topic, partition = self.partition, log_start_offset = offset,
                "incremented log start offset");
        }
        Ok(())
    }

    /// Retention by time and size for segments wholly below `high_watermark`, and removal of
    /// segments wholly below the log start offset; returns segments deleted.
    pub fn delete_old_segments(&mut self, high_watermark: i64) -> Result<usize> {
        let now = now_ms();
        let deletes = self.config.cleanup_policy.deletes();
        let retention_ms = self.config.retention_ms;
        let mut size_excess = if deletes && self.config.retention_bytes >= 0 {
            self.size() as i64 - self.config.retention_bytes
        } else {
            -1
        };
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut doomed = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let seg = &self.segments[&base];
            let upper = bases.get(i + 1).copied().unwrap_or(self.log_end_offset);
            let is_active = i + 1 == bases.len();
            if is_active && seg.is_empty() {
                break;
            }
            let below_start = upper <= self.log_start_offset;
            let by_time =
                deletes && retention_ms >= 0 && now - seg.largest_timestamp() > retention_ms;
            let by_size = size_excess >= 0 && size_excess - seg.size() as i64 >= 0;
            if below_start || (upper <= high_watermark && (by_time || by_size)) {
                if by_size {
                    size_excess -= seg.size() as i64;
                }
                doomed.push((base, below_start, by_time));
            } else {
                break;
            }
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        if doomed.len() == bases.len() {
            // Everything goes: roll an empty active segment first, as Kafka does.
            let leo = self.log_end_offset;
            self.roll(leo, now)?;
        }
        for &(base, below_start, by_time) in &doomed {
            if let Some(seg) = self.segments.remove(&base) {
                info!(topic = %self.topic, partition = self.partition, base_offset = base,
                    reason = if below_start { "log start offset" } else if by_time { "retention.ms" } else { "retention.bytes" },
                    "deleting segment");
                seg.delete_files()?;
            }
        }
        let first = *self.segments.keys().next().expect("active segment kept");
        if first > self.log_start_offset {
            self.log_start_offset = first;
            self.epoch_cache.truncate_from_start(first)?;
        }
        Ok(doomed.len())
    }

    /// Leader epoch cache: record that `epoch` starts at `start_offset`.
    pub fn assign_epoch_start_offset(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        self.epoch_cache.assign(epoch, start_offset)?;
        Ok(())
    }
    /// Leader epoch cache: `epoch` starts at `start_offset`, in memory now; the checkpoint
    /// follows through [`Self::stage_pending_epoch_checkpoint`] and
    /// [`Self::commit_epoch_checkpoint`] (`LeaderEpochFileCache::assign_pending`).
    pub fn assign_epoch_start_offset_pending(
        &mut self,
        epoch: i32,
        start_offset: i64,
    ) -> Option<u64> {
        self.epoch_cache.assign_pending(epoch, start_offset)
    }
    /// Writes the staged checkpoint of a pending assignment; false if a later write made it moot.
    pub fn stage_pending_epoch_checkpoint(&mut self, ticket: u64) -> Result<bool> {
        self.epoch_cache.stage_pending(ticket)
    }
    /// Installs a checkpoint staged by [`Self::stage_pending_epoch_checkpoint`].
    pub fn commit_epoch_checkpoint(&mut self, ticket: u64) -> Result<()> {
        self.epoch_cache.commit_staged(ticket)
    }
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epoch_cache.latest_epoch()
    }
    /// The leader epoch that wrote `offset` (from the leader-epoch cache).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.epoch_cache.epoch_for_offset(offset)
    }
    /// OffsetsForLeaderEpoch: (epoch, end offset), (-1, -1) when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache.end_offset_for(epoch, self.log_end_offset)
    }

    /// Flushes and trims index files; the log can be reopened cleanly.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        self.trim_indexes()?;
        info!(topic = %self.topic, partition = self.partition, log_end_offset = self.log_end_offset, "closed log");
        Ok(())
    }

    /// Renames to `<topic>-<p>.<uuid>-delete` and removes the files.
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        let target = self.rename_for_deletion()?;
        drop(self);
        std::fs::remove_dir_all(&target).ctx(&target)?;
        info!(dir = %dir.display(), "deleted log");
        Ok(())
    }

    /// Kafka's first step of deleting a log: the folder becomes `<topic>-<p>.<uuid>-delete`
    /// (durably), so that nothing writing by the old path (a leader-epoch checkpoint, say) can
    /// put a file back into it, and a restart that finds the renamed folder only finishes
    /// removing it. Returns the new path; the caller removes it.
    pub fn rename_for_deletion(&self) -> Result<PathBuf> {
        let name = format!("{}-{}.{}-delete", self.topic, self.partition, pseudo_uuid());
        let target = self.dir.with_file_name(name);
        std::fs::rename(&self.dir, &target).ctx(&self.dir)?;
        if let Some(parent) = target.parent() {
            crate::checkpoint::fsync_dir(parent)?;
        }
        Ok(target)
    }

    /// Swaps in a cleaned copy of a non-active segment (used by the cleaner). Returns false,
    /// leaving everything as it was, when the segment changed since the cleaner read it.
    pub(crate) fn replace_segment(
        &mut self,
        base: i64,
        expected_size: u64,
        cleaned: &Path,
    ) -> Result<bool> {
        let active_base = self.active().base_offset;
        let ok = base != active_base
            && self
                .segments
                .get(&base)
                .is_some_and(|s| s.size() == expected_size);
        if !ok {
            let _ = std::fs::remove_file(cleaned);
            return Ok(false);
        }
        let seg = self.segments.remove(&base).expect("checked above");
        let log_path = seg.log_path().to_path_buf();
        drop(seg);
        std::fs::rename(cleaned, &log_path).ctx(&log_path)?;
        crate::checkpoint::fsync_dir(&self.dir)?;
        let (mut seg, _) = LogSegment::open(&self.dir, base, &self.config, now_ms())?;
        seg.recover(usize::MAX / 2)?;
        seg.on_become_inactive()?;
        self.segments.insert(base, seg);
        Ok(true)
    }
}

/// 32 hex digits, unique enough for a `-delete` folder name (no uuid dependency needed).
fn pseudo_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    for i in 0..2u64 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_i64(now_ms());
        h.write_u32(std::process::id());
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Log {
    /// Trims the active segment's preallocated index files to their entries (clean shutdown).
    pub fn trim_indexes(&mut self) -> Result<()> {
        self.trim_indexes_unsynced()?;
        self.active().flush()
    }

    /// Trims the active segment's index files without syncing them; the caller makes the
    /// trim durable (the log manager's shutdown syncs each log dir's filesystem once).
    pub fn trim_indexes_unsynced(&mut self) -> Result<()> {
        self.active_mut().on_become_inactive()
    }

    /// Records that everything below `offset` is durable: a sync of the whole filesystem
    /// (`syncfs`) covered this log's files and its folder after its end was `offset`.
    pub fn mark_synced_to(&mut self, offset: i64) {
        if offset > self.recovery_point {
            self.recovery_point = offset.min(self.log_end_offset);
        }
        if offset >= self.log_end_offset {
            self.dir_dirty = false;
            self.last_flush_ms = now_ms();
        }
    }
}
