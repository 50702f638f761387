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
    /// `/brokers/ids/<id>` is held by another live session.
    #[error("broker id {0} is already registered in ZooKeeper by another live broker")]
    BrokerIdAlreadyRegistered(i32),
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
    /// later election. Kafka's `ControllerMovedException`; the controller resigns on it.
    #[error("the controller moved: this broker's controller epoch is fenced")]
    ControllerMoved,
    /// The request needs the active controller and this broker is not it.
    #[error("this broker is not the active controller")]
    NotController,
    /// The controller found its own state inconsistent (Kafka's `IllegalStateException`); it
    /// resigns so that a fresh election rebuilds the state from ZooKeeper.
    #[error("illegal controller state: {0}")]
    IllegalState(String),
    /// Contesting the controller election failed (ZooKeeper unreachable for a moment, say):
    /// without a `/controller` watch this broker would never contest again, so the event loop
    /// retries the election after a pause. Prints as the error it wraps.
    #[error(transparent)]
    ElectionFailed(Box<Error>),
    #[error("ZooKeeper error on {path}: {source}")]
    Zk {
        path: String,
        source: zookeeper_client::Error,
    },
    #[error("bad znode data at {path}: {reason}")]
    BadZnode { path: String, reason: String },
    #[error("bad zookeeper.connect '{0}'")]
    BadConnectString(String),
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
        Error::Zk {
            path: path.into(),
            source,
        }
    }
}

/// Kafka error codes the controller answers API calls with (`Errors.java`); the broker puts
/// them on the wire as they are.
pub mod codes {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const INVALID_REQUEST: i16 = 42;
    pub const PREFERRED_LEADER_NOT_AVAILABLE: i16 = 80;
    pub const ELIGIBLE_LEADERS_NOT_AVAILABLE: i16 = 83;
    pub const ELECTION_NOT_NEEDED: i16 = 84;
    pub const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
}
