//! API CONTRACT STUB — the storage helper replaces the bodies and splits this into modules
//! (segment.rs, index.rs, time_index.rs, batch.rs, checkpoint.rs, epoch.rs, log.rs, log_manager.rs,
//! error.rs, cleaner.rs ...). The public names and signatures below are what the broker codes
//! against; extend them freely, change them only together with the broker.

use bytes::Bytes;
use std::path::{Path, PathBuf};

pub type Result<T> = std::result::Result<T, Error>;

/// Errors a caller can branch on. `kafka_error_code` maps each to Kafka's error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("corrupt record batch at offset {offset}: {reason}")]
    CorruptBatch { offset: i64, reason: String },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("record list too large: {0}")]
    RecordListTooLarge(String),
    #[error("offset {offset} out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    #[error("follower batch offsets do not continue the log: {0}")]
    UnexpectedOffset(String),
    #[error("{0}")]
    Config(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Kafka's error code for this error (CORRUPT_MESSAGE=2, INVALID_RECORD=87,
    /// MESSAGE_TOO_LARGE=10, RECORD_LIST_TOO_LARGE=18, OFFSET_OUT_OF_RANGE=1,
    /// KAFKA_STORAGE_ERROR=56, ...).
    pub fn kafka_error_code(&self) -> i16 {
        todo!()
    }
}

/// `cleanup.policy`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactAndDelete,
}

/// `message.timestamp.type`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-log configuration, with Kafka's topic-level names and defaults (`Default`).
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub segment_bytes: u64,        // segment.bytes 1 GiB
    pub segment_ms: i64,           // segment.ms 7 days
    pub segment_index_bytes: u64,  // segment.index.bytes 10 MiB
    pub index_interval_bytes: u64, // index.interval.bytes 4096
    pub retention_ms: i64,         // retention.ms 7 days, -1 = unlimited
    pub retention_bytes: i64,      // retention.bytes -1
    pub flush_messages: u64,       // flush.messages Long.MAX
    pub flush_ms: u64,             // flush.ms Long.MAX
    pub max_message_bytes: usize,  // max.message.bytes 1048588
    pub message_timestamp_type: TimestampType,
    pub cleanup_policy: CleanupPolicy,
    pub delete_retention_ms: i64,  // delete.retention.ms 1 day
    pub file_delete_delay_ms: u64, // file.delete.delay.ms 60 s
}

impl Default for LogConfig {
    fn default() -> Self {
        todo!()
    }
}

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogAppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// LogAppendTime stamped on the batches, or -1 (CreateTime).
    pub log_append_time: i64,
    pub log_start_offset: i64,
    pub record_count: u32,
}

/// The bytes of whole batches read from the log, and where they came from.
#[derive(Debug, Clone)]
pub struct FetchDataInfo {
    /// Zero or more whole record batches, as stored (sent to clients as they are).
    pub records: Bytes,
    pub first_offset: i64,
}

/// Answer to ListOffsets for one timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampAndOffset {
    pub timestamp: i64,
    pub offset: i64,
    pub leader_epoch: Option<i32>,
}

/// ListOffsets special timestamps.
pub const EARLIEST_TIMESTAMP: i64 = -2;
pub const LATEST_TIMESTAMP: i64 = -1;
pub const MAX_TIMESTAMP: i64 = -3;

/// One partition replica's log: the folder `<log.dir>/<topic>-<partition>`.
/// Not internally synchronised: the broker keeps each `Log` behind a lock.
pub struct Log {
    _private: (),
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
        let _ = (
            dir,
            config,
            recovery_point,
            log_start_offset,
            had_clean_shutdown,
        );
        todo!()
    }
    pub fn dir(&self) -> &Path {
        todo!()
    }
    pub fn topic(&self) -> &str {
        todo!()
    }
    pub fn partition(&self) -> i32 {
        todo!()
    }
    pub fn config(&self) -> &LogConfig {
        todo!()
    }
    pub fn update_config(&mut self, config: LogConfig) {
        let _ = config;
        todo!()
    }
    /// Leader append: validates, assigns offsets in place (rewrites base offsets, sets the
    /// partition leader epoch), stamps LogAppendTime if configured. `records` is one or more v2 batches.
    pub fn append_as_leader(
        &mut self,
        records: bytes::BytesMut,
        leader_epoch: i32,
    ) -> Result<LogAppendInfo> {
        let _ = (records, leader_epoch);
        todo!()
    }
    /// Follower append: validates and keeps the leader's offsets; they must continue the log.
    pub fn append_as_follower(&mut self, records: Bytes) -> Result<LogAppendInfo> {
        let _ = records;
        todo!()
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
        let _ = (start_offset, max_bytes, max_offset, min_one_message);
        todo!()
    }
    pub fn fetch_offset_by_timestamp(&self, timestamp: i64) -> Result<Option<TimestampAndOffset>> {
        let _ = timestamp;
        todo!()
    }
    pub fn log_start_offset(&self) -> i64 {
        todo!()
    }
    pub fn log_end_offset(&self) -> i64 {
        todo!()
    }
    pub fn recovery_point(&self) -> i64 {
        todo!()
    }
    /// Flushes if the flush policy says so (flush.messages / flush.ms); called by the broker after appends and on a timer.
    pub fn maybe_flush(&mut self) -> Result<()> {
        todo!()
    }
    pub fn flush(&mut self) -> Result<()> {
        todo!()
    }
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let _ = offset;
        todo!()
    }
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let _ = offset;
        todo!()
    }
    /// DeleteRecords semantics: raises the log start offset (never above `high_watermark`).
    pub fn maybe_increment_log_start_offset(
        &mut self,
        offset: i64,
        high_watermark: i64,
    ) -> Result<()> {
        let _ = (offset, high_watermark);
        todo!()
    }
    /// Retention by time and size for segments wholly below `high_watermark`; returns segments deleted.
    pub fn delete_old_segments(&mut self, high_watermark: i64) -> Result<usize> {
        let _ = high_watermark;
        todo!()
    }
    /// Leader epoch cache: record that `epoch` starts at `start_offset`.
    pub fn assign_epoch_start_offset(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        let _ = (epoch, start_offset);
        todo!()
    }
    pub fn latest_epoch(&self) -> Option<i32> {
        todo!()
    }
    /// OffsetsForLeaderEpoch: (epoch, end offset), (-1, -1) when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let _ = epoch;
        todo!()
    }
    /// Trims index files, writes checkpoint state; the log can be reopened cleanly.
    pub fn close(self) -> Result<()> {
        todo!()
    }
    /// Renames to `<topic>-<p>.<uuid>-delete` and removes the files.
    pub fn delete(self) -> Result<()> {
        todo!()
    }
}

/// A log shared between request handlers; operations are short and synchronous, so a std Mutex.
pub type SharedLog = std::sync::Arc<std::sync::Mutex<Log>>;

/// All logs under `log.dirs`: meta.properties, the per-dir checkpoint files, the clean-shutdown
/// marker, creating and deleting partition folders. Mirrors Kafka's LogManager.
/// Internally synchronised (`&self` everywhere) so the broker can share it in an `Arc`.
pub struct LogManager {
    _private: (),
}

/// Contents of `meta.properties` (ZooKeeper mode: version=0, broker.id, cluster.id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub broker_id: i32,
    pub cluster_id: String,
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
        let _ = (log_dirs, meta, default_config);
        todo!()
    }
    /// The log for a partition, created in the dir with fewest partitions if absent.
    pub fn get_or_create_log(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<SharedLog> {
        let _ = (topic, partition, config);
        todo!()
    }
    pub fn get_log(&self, topic: &str, partition: i32) -> Option<SharedLog> {
        let _ = (topic, partition);
        todo!()
    }
    /// Removes the log and its folder (StopReplica with delete).
    pub fn delete_log(&self, topic: &str, partition: i32) -> Result<()> {
        let _ = (topic, partition);
        todo!()
    }
    /// Writes recovery-point, log-start-offset checkpoints.
    pub fn checkpoint(&self) -> Result<()> {
        todo!()
    }
    /// Writes replication-offset-checkpoint (high watermarks) per dir.
    pub fn checkpoint_high_watermarks(&self, hws: &[(String, i32, i64)]) -> Result<()> {
        let _ = hws;
        todo!()
    }
    pub fn high_watermark_checkpoint(&self, topic: &str, partition: i32) -> Option<i64> {
        let _ = (topic, partition);
        todo!()
    }
    /// Flush, close every log, write checkpoints and `.kafka_cleanshutdown`.
    pub fn shutdown(&self) -> Result<()> {
        todo!()
    }
    /// Every (topic, partition) with a log on disk.
    pub fn all_logs(&self) -> Vec<(String, i32, SharedLog)> {
        todo!()
    }
}
