//! The partition log on disk, in Apache Kafka's layout and formats.
//!
//! # Layout
//!
//! | File | Kafka class | What it holds |
//! |---|---|---|
//! | `batch.rs` | `DefaultRecordBatch`, `LogValidator` | the v2 batch header, CRC-32C, validation, in-place offset rewrite |
//! | `compression.rs` | `CompressionType`, `LogValidator` (compressed half) | gzip, snappy, lz4, zstd: the leader decompresses a producer's batch and walks its records |
//! | `segment.rs` | `LogSegment` | one `.log` file and its two indexes |
//! | `index.rs` | `OffsetIndex` | `.index`: relative offset -> file position |
//! | `time_index.rs` | `TimeIndex` | `.timeindex`: timestamp -> relative offset |
//! | `epoch.rs` | `LeaderEpochFileCache` | `leader-epoch-checkpoint` |
//! | `checkpoint.rs` | `CheckpointFile`, `OffsetCheckpointFile` | the text checkpoint files, written atomically |
//! | `log.rs` | `UnifiedLog`, `LocalLog`, `LogLoader` | a partition's log: append, read, roll, truncate, retention, recovery |
//! | `log_manager.rs` | `LogManager` | all logs under `log.dirs`, `meta.properties`, `.lock`, clean shutdown |
//! | `cleaner.rs` | `LogCleaner` | compaction of `cleanup.policy=compact` logs |
//! | `config.rs` | `LogConfig` | topic-level configs with Kafka's defaults |
//! | `error.rs` | `CorruptRecordException`, `KafkaStorageException`, ... | typed errors, each mapped to a Kafka error code (`common::ErrorCode`, Kafka's `Errors`) |
//!
//! A partition folder `<log.dir>/<topic>-<partition>` holds segments named by their first offset
//! (`00000000000000000000.log`, `.index`, `.timeindex`) and `leader-epoch-checkpoint`.
//!
//! # How the pieces fit
//!
//! The broker opens a [`LogManager`] over `log.dirs`; it recovers every log (unless the last
//! shutdown was clean) and hands out [`SharedLog`]s. A produce request's records go to
//! [`Log::append_as_leader`] as bytes, which validates every batch, rewrites base offsets and the
//! leader epoch in place and writes them to the active segment. A fetch calls [`Log::read`],
//! which returns whole stored batches as [`bytes::Bytes`] (one `pread`), to be sent as they are.
//! The broker keeps the high watermark and passes it to `read` as `max_offset`.
//!
//! # Performance
//!
//! See `storage/README.md` for the benchmark (`cargo bench -p storage --bench log`) and the fio
//! reference it is compared with.

pub mod batch;
pub mod checkpoint;
pub mod cleaner;
pub mod compression;
pub mod config;
pub mod epoch;
pub mod error;
pub mod index;
pub mod log;
pub mod log_manager;
pub mod producer_state;
pub mod segment;
pub mod time_index;

pub use cleaner::{clean_log, CleanerStats, LogCleaner};
pub use config::{CleanupPolicy, LogConfig, TimestampType};
pub use error::{Error, Result};
pub use log::Log;
pub use log_manager::{EpochSyncGuard, LogManager, MetaProperties};

use bytes::Bytes;

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
    /// The batch was a retry of one already in the log (idempotent producer): nothing was
    /// written and the offsets are those of the first copy.
    pub duplicate: bool,
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

/// A log shared between request handlers; operations are short and synchronous, so a std Mutex.
pub type SharedLog = std::sync::Arc<std::sync::Mutex<Log>>;
