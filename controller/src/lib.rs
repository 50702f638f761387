//! API CONTRACT STUB — the controller helper replaces the bodies and splits this into the module
//! map of ../shared/STYLE.md (zk/data.rs, zk/client.rs, admin.rs, assignment.rs, event.rs,
//! event_loop.rs, controller.rs, context.rs, partition_state.rs, replica_state.rs, election.rs,
//! channel.rs, error.rs). The public names and signatures below are what the broker codes
//! against; extend freely, change only together with the broker.

use std::collections::BTreeMap;
use std::time::Duration;

pub use kafka_protocol::messages::BrokerId;

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
    #[error("the controller moved: this broker's controller epoch is fenced")]
    ControllerMoved,
    #[error("ZooKeeper error on {path}: {source}")]
    Zk {
        path: String,
        source: zookeeper_client::Error,
    },
    #[error("bad znode data at {path}: {reason}")]
    BadZnode { path: String, reason: String },
}

/// ZooKeeper data model: one type per znode, Kafka's exact JSON.
pub mod zk {
    pub mod data {
        /// One advertised endpoint of a broker, e.g. `PLAINTEXT://127.0.0.1:9092`.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct EndPoint {
            pub listener_name: String,
            pub host: String,
            pub port: u16,
            pub security_protocol: String,
        }

        /// `/brokers/ids/<id>` (ephemeral), JSON version 5.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct BrokerRegistration {
            pub broker_id: i32,
            pub endpoints: Vec<EndPoint>,
            pub rack: Option<String>,
            pub timestamp_ms: i64,
        }
        /// A broker as the controller and tools see it: registration plus broker epoch (czxid).
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct BrokerInfo {
            pub registration: BrokerRegistration,
            pub broker_epoch: i64,
        }
    }

    pub mod client {
        use super::data::*;
        use crate::Result;
        use std::time::Duration;

        /// All ZooKeeper I/O of the broker and the controller (Kafka's KafkaZkClient). Cheap to clone.
        #[derive(Clone)]
        pub struct KafkaZkClient {
            _private: (),
        }

        impl KafkaZkClient {
            /// Connects to `zookeeper.connect` (host:port,...[/chroot]); creates the chroot if missing.
            pub async fn connect(
                zookeeper_connect: &str,
                session_timeout: Duration,
            ) -> Result<KafkaZkClient> {
                let _ = (zookeeper_connect, session_timeout);
                todo!()
            }
            /// Kafka's persistent paths (§0 of the reference).
            pub async fn ensure_persistent_paths(&self) -> Result<()> {
                todo!()
            }
            /// Reads `/cluster/id`, creating it with `proposed` if absent.
            pub async fn get_or_create_cluster_id(&self, proposed: &str) -> Result<String> {
                let _ = proposed;
                todo!()
            }
            /// Registers the ephemeral `/brokers/ids/<id>`; returns the broker epoch (czxid).
            pub async fn register_broker(&self, registration: &BrokerRegistration) -> Result<i64> {
                let _ = registration;
                todo!()
            }
            pub async fn get_all_brokers(&self) -> Result<Vec<BrokerInfo>> {
                todo!()
            }
            /// Closes the session (ephemerals vanish at once).
            pub async fn close(&self) {
                todo!()
            }
        }
    }
}

/// Topic administration through ZooKeeper (Kafka's AdminZkClient): what CreateTopics,
/// auto-creation, CreatePartitions and DeleteTopics write; the controller does the rest.
pub mod admin {
    use super::*;
    use crate::zk::client::KafkaZkClient;

    /// Kafka's topic name rules (legal characters, length <= 249, not "." or "..").
    pub fn validate_topic_name(name: &str) -> Result<()> {
        let _ = name;
        todo!()
    }

    /// Rack-unaware assignment (AdminUtils.assignReplicasToBrokers), `broker_ids` any order.
    pub fn assign_replicas_to_brokers(
        broker_ids: &[i32],
        num_partitions: i32,
        replication_factor: i32,
    ) -> Result<BTreeMap<i32, Vec<i32>>> {
        let _ = (broker_ids, num_partitions, replication_factor);
        todo!()
    }

    pub struct AdminZkClient {
        _private: (),
    }
    impl AdminZkClient {
        pub fn new(zk: KafkaZkClient) -> Self {
            let _ = zk;
            todo!()
        }
        /// Writes `/config/topics/<t>` then creates `/brokers/topics/<t>` with a fresh topic id
        /// (returned, base64url). `TopicExists` if it is there already.
        pub async fn create_topic(
            &self,
            topic: &str,
            assignment: &BTreeMap<i32, Vec<i32>>,
            config: &BTreeMap<String, String>,
        ) -> Result<String> {
            let _ = (topic, assignment, config);
            todo!()
        }
        /// Adds partitions up to `total` (assignment computed as Kafka does unless given).
        pub async fn create_partitions(
            &self,
            topic: &str,
            total: i32,
            assignment: Option<Vec<Vec<i32>>>,
        ) -> Result<()> {
            let _ = (topic, total, assignment);
            todo!()
        }
        /// Creates `/admin/delete_topics/<t>`.
        pub async fn delete_topic(&self, topic: &str) -> Result<()> {
            let _ = topic;
            todo!()
        }
        pub async fn topic_exists(&self, topic: &str) -> Result<bool> {
            let _ = topic;
            todo!()
        }
        /// `/config/topics/<t>` contents.
        pub async fn fetch_topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>> {
            let _ = topic;
            todo!()
        }
    }
}

/// What the controller needs from the broker's config.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub broker_id: i32,
    /// Listener the controller uses to reach brokers (inter.broker.listener.name, default PLAINTEXT).
    pub inter_broker_listener_name: String,
    pub delete_topic_enable: bool,
    pub unclean_leader_election_enable: bool,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_per_broker_percentage: u32,
    pub leader_imbalance_check_interval: Duration,
    pub controller_socket_timeout: Duration,
    pub request_timeout: Duration,
}

/// The broker's handle on its `KafkaController` (an event sender plus shared read-only flags).
#[derive(Clone)]
pub struct ControllerHandle {
    _private: (),
}

impl ControllerHandle {
    /// True while this broker is the active controller.
    pub fn is_active(&self) -> bool {
        todo!()
    }
    /// Epoch of the controller this broker last saw win, if any.
    pub fn controller_epoch(&self) -> Option<i32> {
        todo!()
    }
    /// Resigns (if active), stops the event loop and its watches.
    pub async fn shutdown(&self) {
        todo!()
    }
}

/// Starts this broker's controller: watches `/controller` and contests the election.
/// `broker_epoch` is this broker's registration czxid.
pub fn start(
    zk: zk::client::KafkaZkClient,
    config: ControllerConfig,
    broker_epoch: i64,
) -> ControllerHandle {
    let _ = (zk, config, broker_epoch);
    todo!()
}
