//! Errors of the controller crate.
//!
//! Kafka concept: the controller and the ZooKeeper client signal a handful of situations that a
//! caller must act on differently: a fenced controller (`ControllerMovedException`), a duplicate
//! broker id (`NodeExistsException` at registration), admin validation failures
//! (`TopicExistsException`, `InvalidReplicationFactorException`, ...), and plain ZooKeeper I/O
//! failures. Each is one variant here so the broker can map it to a Kafka error code in one place.
//!
//! Expected outcomes (losing an election, a BADVERSION on a partition state that will be retried)
//! are not errors: they are enum results in `zk::client`.

/// Result alias for the whole crate.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name: {0}")]
    InvalidTopic(String),
    #[error(
        "replication factor {replication_factor} larger than available brokers {live_brokers}"
    )]
    InvalidReplicationFactor {
        replication_factor: i32,
        live_brokers: usize,
    },
    #[error("invalid partitions: {0}")]
    InvalidPartitions(String),
    #[error("invalid replica assignment: {0}")]
    InvalidReplicaAssignment(String),
    /// A fenced write failed its `check(/controller_epoch, epochZkVersion)`: another broker won a
    /// later election. Kafka's `ControllerMovedException`; the controller resigns on it. The zk
    /// crate detects it ([`zk::Error::ControllerMoved`]); `From` lifts it to this variant, so
    /// this is the one case to match whichever layer saw it.
    #[error("the controller moved: this broker's controller epoch is fenced")]
    ControllerMoved,
    /// The request needs the active controller and this broker is not it.
    #[error("this broker is not the active controller")]
    NotController,
    /// The controller found its own state inconsistent (Kafka's `IllegalStateException`); it
    /// resigns so that a fresh election rebuilds the state from ZooKeeper.
    #[error("illegal controller state: {0}")]
    IllegalState(String),
    /// Any other ZooKeeper-level failure (I/O, a malformed znode, a taken broker id, ...).
    #[error(transparent)]
    Zk(zk::Error),
    /// Contesting the controller election failed (ZooKeeper unreachable for a moment, say):
    /// without a `/controller` watch this broker would never contest again, so the event loop
    /// retries the election after a pause. Prints as the error it wraps.
    #[error(transparent)]
    ElectionFailed(Box<Error>),
}

impl Error {
    /// Marks an error met while contesting the election (Startup, Reelect,
    /// RegisterBrokerAndReelect) as [`Error::ElectionFailed`]; `ControllerMoved` and
    /// `IllegalState` keep their own handling.
    pub fn in_election(self) -> Error {
        match self {
            Error::ControllerMoved | Error::IllegalState(_) | Error::ElectionFailed(_) => self,
            other => Error::ElectionFailed(Box::new(other)),
        }
    }

    /// Wraps a ZooKeeper error with the path it happened on.
    pub fn zk(path: impl Into<String>, source: zookeeper_client::Error) -> Error {
        Error::Zk(zk::Error::zk(path, source))
    }
}

/// The zk cases the controller branches on become its own variants (same message); the rest
/// stay wrapped.
impl From<zk::Error> for Error {
    fn from(e: zk::Error) -> Error {
        match e {
            zk::Error::ControllerMoved => Error::ControllerMoved,
            zk::Error::TopicExists(topic) => Error::TopicExists(topic),
            zk::Error::UnknownTopic(topic) => Error::UnknownTopic(topic),
            other => Error::Zk(other),
        }
    }
}

/// The Kafka error codes the controller answers with, as the wire `i16`s its reply types carry
/// (`event::ApiError`, `alter_partition::AlterPartitionReply`, shared with the broker). Each is
/// a name for a [`common::ErrorCode`], where every Kafka code is defined once; these names go
/// when the replies carry `ErrorCode` itself.
pub mod codes {
    use common::ErrorCode;

    pub const UNKNOWN_SERVER_ERROR: i16 = ErrorCode::UNKNOWN_SERVER_ERROR.code();
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
    pub const REQUEST_TIMED_OUT: i16 = ErrorCode::REQUEST_TIMED_OUT.code();
    pub const INVALID_TOPIC_EXCEPTION: i16 = ErrorCode::INVALID_TOPIC_EXCEPTION.code();
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = ErrorCode::INVALID_REPLICA_ASSIGNMENT.code();
    pub const NOT_CONTROLLER: i16 = ErrorCode::NOT_CONTROLLER.code();
    pub const INVALID_REQUEST: i16 = ErrorCode::INVALID_REQUEST.code();
    pub const OPERATION_NOT_ATTEMPTED: i16 = ErrorCode::OPERATION_NOT_ATTEMPTED.code();
    pub const FENCED_LEADER_EPOCH: i16 = ErrorCode::FENCED_LEADER_EPOCH.code();
    pub const STALE_BROKER_EPOCH: i16 = ErrorCode::STALE_BROKER_EPOCH.code();
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 =
        ErrorCode::PREFERRED_LEADER_NOT_AVAILABLE.code();
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 =
        ErrorCode::ELIGIBLE_LEADERS_NOT_AVAILABLE.code();
    pub const ELECTION_NOT_NEEDED: i16 = ErrorCode::ELECTION_NOT_NEEDED.code();
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = ErrorCode::NO_REASSIGNMENT_IN_PROGRESS.code();
    pub const INVALID_UPDATE_VERSION: i16 = ErrorCode::INVALID_UPDATE_VERSION.code();
    /// Kafka 3.5+ (KIP-903); not in kafka-protocol's error table.
    pub const INELIGIBLE_REPLICA: i16 = ErrorCode::INELIGIBLE_REPLICA.code();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fencing case keeps one name whichever layer detected it (Kafka's
    /// `ControllerMovedException` is thrown by `KafkaZkClient` and caught by `KafkaController`).
    #[test]
    fn zk_controller_moved_becomes_the_controllers_own_variant() {
        assert!(matches!(
            Error::from(zk::Error::ControllerMoved),
            Error::ControllerMoved
        ));
        assert!(matches!(
            Error::from(zk::Error::TopicExists("t".into())),
            Error::TopicExists(t) if t == "t"
        ));
        let taken = Error::from(zk::Error::BrokerIdAlreadyRegistered(1));
        assert!(matches!(
            taken,
            Error::Zk(zk::Error::BrokerIdAlreadyRegistered(1))
        ));
        assert_eq!(
            taken.to_string(),
            "broker id 1 is already registered in ZooKeeper by another live broker"
        );
    }

    /// The names are Kafka's codes (`Errors.java`).
    #[test]
    fn reply_codes_are_kafkas() {
        assert_eq!(codes::NOT_CONTROLLER, 41);
        assert_eq!(codes::UNKNOWN_SERVER_ERROR, -1);
        assert_eq!(codes::ELECTION_NOT_NEEDED, 84);
        assert_eq!(codes::INELIGIBLE_REPLICA, 107);
    }
}
