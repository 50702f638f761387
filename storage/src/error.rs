//! Errors of the storage layer and their Kafka error codes.
//!
//! Kafka concept: a produce or fetch that the log refuses is answered with an error code per
//! partition (`org.apache.kafka.common.protocol.Errors`). Each variant here is a situation a
//! caller can act on, and [`Error::error_code`] is the one place that maps it to a code (a
//! [`ErrorCode`] from the `common` crate, where every Kafka code is defined once).
//! Invariant: an `append_*` that returns an error has left the log untouched.

use std::path::PathBuf;

pub use common::ErrorCode;

pub type Result<T> = std::result::Result<T, Error>;

/// Errors a caller can branch on. `error_code` maps each to Kafka's error code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("corrupt record batch at offset {offset}: {reason}")]
    CorruptBatch { offset: i64, reason: String },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error(
        "records of the compressed batch at offset {offset} exceed {max} bytes once decompressed"
    )]
    DecompressedTooLarge { offset: i64, max: u64 },
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
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    #[error("{0}")]
    Config(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl Error {
    /// Kafka's error code for this error: the one place a storage error becomes a code.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::CorruptBatch { .. } => ErrorCode::CORRUPT_MESSAGE,
            Error::InvalidRecord(_) => ErrorCode::INVALID_RECORD,
            Error::MessageTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            // Kafka's code for a batch that outgrows the limit once the leader has processed
            // it; the Java producer then splits the batch (see compression::MAX_DECOMPRESSED_BYTES).
            Error::DecompressedTooLarge { .. } => ErrorCode::MESSAGE_TOO_LARGE,
            Error::RecordListTooLarge(_) => ErrorCode::RECORD_LIST_TOO_LARGE,
            Error::OffsetOutOfRange { .. } => ErrorCode::OFFSET_OUT_OF_RANGE,
            // What Kafka answers for an unexpected append offset on a follower.
            Error::UnexpectedOffset(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
            Error::InvalidTimestamp(_) => ErrorCode::INVALID_TIMESTAMP,
            Error::OutOfOrderSequence(_) => ErrorCode::OUT_OF_ORDER_SEQUENCE_NUMBER,
            Error::InvalidProducerEpoch(_) => ErrorCode::INVALID_PRODUCER_EPOCH,
            Error::Config(_) => ErrorCode::INVALID_CONFIG,
            Error::Io { .. } => ErrorCode::KAFKA_STORAGE_ERROR,
        }
    }

    /// [`Error::error_code`] as the wire's `i16`, for the broker's response fields.
    pub fn kafka_error_code(&self) -> i16 {
        self.error_code().code()
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attach a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
