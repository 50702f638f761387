//! Kafka's ZooKeeper layer (the `kafka.zk` package): the typed znode model, the typed client
//! and the raw operations behind a trait.
//!
//! # Layout
//!
//! | file | Kafka class | role |
//! |---|---|---|
//! | [`data`] | `ZkData` (`ControllerZNode`, `BrokerIdZNode`, `TopicZNode`, ...) | one type per znode: Kafka's exact path and JSON; the only place a znode path is spelled |
//! | [`client`] | `KafkaZkClient` | typed operations for the broker and the controller; every controller write fenced by the controller epoch's zkVersion |
//! | [`backend`] | `ZooKeeperClient` | the raw operations as the [`backend::ZkBackend`] trait: [`backend::RealZk`] on `zookeeper-client`, [`backend::MemoryZk`] in memory for deterministic tests |
//! | [`real`] | ZooKeeper's Java `ClientCnxn` (reconnect with the session id) | [`real::RealZk`]: a session only ZooKeeper can expire; resumed with its id and password after the crate's own time-out, watches re-armed |
//! | [`retry`] | `KafkaZkClient.retryRequestsUntilConnected` | [`retry::UntilConnected`]: a request that met a lost connection waits for the session to be connected again and goes again |
//! | [`error`] | `ControllerMovedException`, `NodeExistsException`, `KeeperException` | the ZooKeeper-level errors callers branch on |
//!
//! Users: the controller (its state machines write through [`client::KafkaZkClient`]), the
//! broker (its own `/brokers/ids/<id>` registration, producer id blocks, topic configs) and
//! `testcluster` (decoding znodes in assertions and tools). This crate depends on none of ours:
//! `AdminZkClient`, which Kafka also keeps in `kafka.zk`, stays in the controller crate because
//! its validation errors (`InvalidReplicationFactor`, ...) are the controller's.
//!
//! Invariant: a write from a stale controller epoch is rejected by ZooKeeper (the multi-op's
//! `check(/controller_epoch, epochZkVersion)`), not by us, and surfaces as
//! [`Error::ControllerMoved`].

pub mod backend;
pub mod client;
pub mod data;
pub mod error;
pub mod real;
pub mod retry;

pub use error::{Error, Result};
