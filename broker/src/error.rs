//! The broker's error type: what the request handlers and the replica layer branch on, and the
//! one place where each is turned into a Kafka wire error code.
//!
//! Kafka concept: every failed partition in an answer carries an error code from
//! `org.apache.kafka.common.protocol.Errors` (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, ...);
//! Kafka's broker throws typed exceptions (`NotLeaderOrFollowerException`, ...) and
//! `Errors.forException` maps them at the API edge. We do the same: library code returns
//! [`Error`], and [`Error::code`] is the only mapping to a code.
//!
//! Invariant: no other function in the broker turns an [`Error`] into a code; a new variant
//! gets its code here, next to the others.
//! Simplification, said plainly: the group coordinator still speaks bare codes; its codes
//! pass through [`Error::Code`] unchanged.

use common::ErrorCode;

/// A failure of a broker operation, as callers branch on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This broker neither leads nor follows the partition (or no longer leads it).
    #[error("not the leader or a follower of the partition")]
    NotLeaderOrFollower,
    /// The partition is not in the cluster (or not a replica here, for control requests).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// acks=all refused up front: the ISR is smaller than `min.insync.replicas`.
    #[error("the ISR has {isr} replicas, below min.insync.replicas {min_isr}")]
    NotEnoughReplicas { isr: usize, min_isr: i32 },
    /// acks=all: the batch is committed but the ISR shrank below `min.insync.replicas`.
    #[error("appended, but the ISR has {isr} replicas, below min.insync.replicas {min_isr}")]
    NotEnoughReplicasAfterAppend { isr: usize, min_isr: i32 },
    /// acks=all: the high watermark did not reach the batch in the request's timeout.
    #[error("the request timed out")]
    RequestTimedOut,
    /// A request named a leader epoch newer than this replica's.
    #[error("unknown leader epoch")]
    UnknownLeaderEpoch,
    /// A request named a leader epoch older than this replica's.
    #[error("fenced leader epoch")]
    FencedLeaderEpoch,
    /// A control request from an older controller (or at a leader epoch already applied).
    #[error("stale controller epoch")]
    StaleControllerEpoch,
    /// A control request meant for an earlier registration of this broker.
    #[error("stale broker epoch")]
    StaleBrokerEpoch,
    /// Produce with acks other than -1, 0 or 1.
    #[error("invalid required acks {0}")]
    InvalidRequiredAcks(i16),
    /// A produce partition without records.
    #[error("produce request without records")]
    MissingRecords,
    /// Clients may not write the topic (an internal topic).
    #[error("invalid topic {0}")]
    InvalidTopic(String),
    /// The log refused or failed (corrupt batch, I/O, ...).
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The controller's logic failed (a ZooKeeper failure inside it included).
    #[error(transparent)]
    Controller(#[from] controller::Error),
    /// A ZooKeeper read or write of the broker's own failed.
    #[error(transparent)]
    Zk(#[from] zk::Error),
    /// A request to another broker failed before an answer (connect, timeout, framing).
    #[error("request to another broker failed: {0}")]
    Network(String),
    /// Another broker answered a whole request with an error code.
    #[error("the peer answered error code {0}")]
    Peer(i16),
    /// A start-up or shutdown step failed; the message names the config key or the step.
    #[error("{0}")]
    Lifecycle(String),
    /// A code from a layer that still speaks codes (the group coordinator), passed through.
    #[error("error code {0}")]
    Code(i16),
}

/// The broker's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// I/O on a connection to another broker (the only I/O the broker's library code does
/// outside the log).
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Network(e.to_string())
    }
}

impl Error {
    /// The Kafka wire error code for this error: the only mapping in the broker.
    pub fn code(&self) -> i16 {
        let e = match self {
            Error::NotLeaderOrFollower => ErrorCode::NOT_LEADER_OR_FOLLOWER,
            Error::UnknownTopicOrPartition => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION,
            Error::NotEnoughReplicas { .. } => ErrorCode::NOT_ENOUGH_REPLICAS,
            Error::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NOT_ENOUGH_REPLICAS_AFTER_APPEND
            }
            Error::RequestTimedOut => ErrorCode::REQUEST_TIMED_OUT,
            Error::FencedLeaderEpoch => ErrorCode::FENCED_LEADER_EPOCH,
            Error::UnknownLeaderEpoch => ErrorCode::UNKNOWN_LEADER_EPOCH,
            Error::StaleControllerEpoch => ErrorCode::STALE_CONTROLLER_EPOCH,
            Error::StaleBrokerEpoch => ErrorCode::STALE_BROKER_EPOCH,
            Error::InvalidRequiredAcks(_) => ErrorCode::INVALID_REQUIRED_ACKS,
            Error::MissingRecords => ErrorCode::CORRUPT_MESSAGE,
            Error::InvalidTopic(_) => ErrorCode::INVALID_TOPIC_EXCEPTION,
            Error::Storage(e) => e.error_code(),
            Error::Controller(_) | Error::Zk(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
            Error::Network(_) => ErrorCode::NETWORK_EXCEPTION,
            Error::Lifecycle(_) => ErrorCode::UNKNOWN_SERVER_ERROR,
            Error::Peer(code) | Error::Code(code) => return *code,
        };
        e.code()
    }

    /// A failed start-up or shutdown step.
    pub fn lifecycle(reason: impl std::fmt::Display) -> Self {
        Error::Lifecycle(reason.to_string())
    }

    /// The error for a request to another broker that failed before an answer.
    pub fn network(reason: impl std::fmt::Display) -> Self {
        Error::Network(reason.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes the replica layer answers are Kafka's (`Errors.java`).
    #[test]
    fn replica_layer_errors_map_to_kafka_codes() {
        assert_eq!(Error::NotLeaderOrFollower.code(), 6);
        assert_eq!(Error::UnknownTopicOrPartition.code(), 3);
        assert_eq!(Error::RequestTimedOut.code(), 7);
        assert_eq!(Error::StaleControllerEpoch.code(), 11);
        assert_eq!(Error::NotEnoughReplicas { isr: 1, min_isr: 2 }.code(), 19);
        assert_eq!(
            Error::NotEnoughReplicasAfterAppend { isr: 1, min_isr: 2 }.code(),
            20
        );
        assert_eq!(Error::InvalidRequiredAcks(2).code(), 21);
        assert_eq!(Error::FencedLeaderEpoch.code(), 74);
        assert_eq!(Error::MissingRecords.code(), 2);
        assert_eq!(Error::Code(25).code(), 25);
        let io = storage::Error::Io {
            path: "x".into(),
            source: std::io::Error::other("disk"),
        };
        assert_eq!(Error::from(io).code(), 56);
    }

    /// `common::ErrorCode` (the one table the crates share) agrees with kafka-protocol's,
    /// generated from Kafka's `Errors.java`, on every code both know: the broker answers with
    /// the former and clients decode with tables like the latter.
    #[test]
    fn error_code_table_agrees_with_kafka_protocol() {
        use kafka_protocol::error::ResponseError;
        let mut checked = 0;
        for &e in common::ErrorCode::ALL {
            let theirs = match ResponseError::try_from_code(e.code()) {
                None | Some(ResponseError::Unknown(_)) => continue,
                Some(theirs) => theirs,
            };
            assert_eq!(theirs.code(), e.code());
            let their_name = format!("{theirs:?}");
            let ours: String = e
                .name()
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next().map_or(String::new(), |f| {
                        f.to_string() + &c.as_str().to_lowercase()
                    })
                })
                .collect();
            assert_eq!(ours, their_name, "code {}", e.code());
            assert_eq!(theirs.is_retriable(), e.is_retriable(), "{}", e.name());
            checked += 1;
        }
        assert!(checked > 100, "only {checked} codes compared");
    }
}
