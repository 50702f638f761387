//! Per-log configuration with Kafka's topic-level names and defaults.
//!
//! Kafka class mirrored: `org.apache.kafka.storage.internals.log.LogConfig`. Each field keeps the
//! topic config's name in its doc; `Default` gives Kafka 3.6's defaults.

/// `cleanup.policy`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactAndDelete,
}

impl CleanupPolicy {
    pub fn compacts(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Compact | CleanupPolicy::CompactAndDelete
        )
    }
    pub fn deletes(self) -> bool {
        matches!(
            self,
            CleanupPolicy::Delete | CleanupPolicy::CompactAndDelete
        )
    }
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
    /// `segment.bytes` (1 GiB): roll when the next append would pass this size.
    pub segment_bytes: u64,
    /// `segment.ms` (7 days): roll a non-empty segment this old.
    pub segment_ms: i64,
    /// `segment.index.bytes` (10 MiB): preallocated size of each index file.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes` (4096): bytes between two offset index entries.
    pub index_interval_bytes: u64,
    /// `retention.ms` (7 days), -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes` (-1 = unlimited).
    pub retention_bytes: i64,
    /// `flush.messages` (Long.MAX): fsync after this many messages.
    pub flush_messages: u64,
    /// `flush.ms` (Long.MAX): fsync when the last flush is this old.
    pub flush_ms: u64,
    /// `max.message.bytes` (1048588): largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type` (CreateTime).
    pub message_timestamp_type: TimestampType,
    /// `cleanup.policy` (delete).
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms` (1 day): how long compaction keeps tombstones.
    pub delete_retention_ms: i64,
    /// `file.delete.delay.ms` (60 s). We delete `.deleted` files at once (simplification).
    pub file_delete_delay_ms: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            segment_index_bytes: 10 * 1024 * 1024,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            flush_messages: i64::MAX as u64,
            flush_ms: i64::MAX as u64,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            cleanup_policy: CleanupPolicy::Delete,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            file_delete_delay_ms: 60_000,
        }
    }
}
