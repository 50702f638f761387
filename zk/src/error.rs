//! Errors of the ZooKeeper layer.
//!
//! Kafka concept: `KafkaZkClient` turns ZooKeeper's result codes into the few exceptions its
//! callers handle differently: `ControllerMovedException` when a fenced write fails its
//! `check(/controller_epoch, epochZkVersion)`, `NodeExistsException` when a broker id is taken
//! or a topic exists, `NoNodeException`, and any other `KeeperException` as plain I/O failure.
//! Each is one variant here; the controller wraps this type in its own `controller::Error`.
//!
//! Expected outcomes (losing an election, a BADVERSION on a partition state that will be
//! retried, an absent optional znode) are not errors: they are `Option`s and enum results in
//! [`crate::client`].

/// Result alias for the whole crate.
pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/brokers/ids/<id>` is held by another live session.
    #[error("broker id {0} is already registered in ZooKeeper by another live broker")]
    BrokerIdAlreadyRegistered(i32),
    /// `/brokers/topics/<t>` exists already (NODEEXISTS on the admin path's create).
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// `/brokers/topics/<t>` does not exist (NONODE where the topic is required).
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// A fenced write failed its `check(/controller_epoch, epochZkVersion)`: another broker won a
    /// later election. Kafka's `ControllerMovedException`; the controller resigns on it.
    #[error("the controller moved: this broker's controller epoch is fenced")]
    ControllerMoved,
    /// `/latest_producer_id_block` has reached the end of the id space (Kafka's
    /// `ZkProducerIdManager` throws a `KafkaException` there).
    #[error("producer ids are exhausted")]
    ProducerIdsExhausted,
    /// Any other ZooKeeper failure (connection loss, NONODE where a znode must exist, ...),
    /// with the path it happened on.
    #[error("ZooKeeper error on {path}: {source}")]
    Zk {
        path: String,
        source: zookeeper_client::Error,
    },
    /// A znode whose bytes do not decode as the JSON Kafka writes there.
    #[error("bad znode data at {path}: {reason}")]
    BadZnode { path: String, reason: String },
    #[error("bad zookeeper.connect '{0}'")]
    BadConnectString(String),
}

impl Error {
    /// Wraps a ZooKeeper error with the path it happened on.
    pub fn zk(path: impl Into<String>, source: zookeeper_client::Error) -> Error {
        Error::Zk {
            path: path.into(),
            source,
        }
    }
}
