//! Errors of the storage layer and their Kafka error codes.
//!
//! Kafka concept: a produce or fetch that the log refuses is answered with an error code per
//! partition (`org.apache.kafka.common.protocol.Errors`). Each variant here is a situation a
//! caller can act on, and [`Error::kafka_error_code`] is the one place that maps it to a code.
//! Invariant: an `append_*` that returns an error has left the log untouched.

use std::path::PathBuf;

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

/// Kafka's error codes used by this crate (`Errors.java`).
pub mod codes {
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const INVALID_TIMESTAMP: i16 = 32;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const INVALID_RECORD: i16 = 87;
    /// UNKNOWN_SERVER_ERROR: what Kafka answers for an unexpected append offset on a follower.
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const INVALID_CONFIG: i16 = 40;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
}

impl Error {
    /// Kafka's error code for this error (CORRUPT_MESSAGE=2, INVALID_RECORD=87,
    /// MESSAGE_TOO_LARGE=10, RECORD_LIST_TOO_LARGE=18, OFFSET_OUT_OF_RANGE=1,
    /// KAFKA_STORAGE_ERROR=56, INVALID_TIMESTAMP=32).
    pub fn kafka_error_code(&self) -> i16 {
        match self {
            Error::CorruptBatch { .. } => codes::CORRUPT_MESSAGE,
            Error::InvalidRecord(_) => codes::INVALID_RECORD,
            Error::MessageTooLarge { .. } => codes::MESSAGE_TOO_LARGE,
            Error::RecordListTooLarge(_) => codes::RECORD_LIST_TOO_LARGE,
            Error::OffsetOutOfRange { .. } => codes::OFFSET_OUT_OF_RANGE,
            Error::UnexpectedOffset(_) => codes::UNKNOWN_SERVER_ERROR,
            Error::InvalidTimestamp(_) => codes::INVALID_TIMESTAMP,
            Error::OutOfOrderSequence(_) => codes::OUT_OF_ORDER_SEQUENCE_NUMBER,
            Error::InvalidProducerEpoch(_) => codes::INVALID_PRODUCER_EPOCH,
            Error::Config(_) => codes::INVALID_CONFIG,
            Error::Io { .. } => codes::KAFKA_STORAGE_ERROR,
        }
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
