//! A Kafka broker in ZooKeeper mode: it registers in ZooKeeper, hosts a controller that
//! contests `/controller`, keeps partition logs with the `storage` crate and serves stock Kafka
//! clients.
//!
//! # Layout (one file per concept)
//!
//! - [`alloc`]: the allocator guard that keeps a malformed request from aborting the broker.
//! - [`config`]: `server.properties` keys with Kafka's defaults (`KafkaConfig`).
//! - [`broker`]: start-up in Kafka's order, wiring, clean shutdown (`KafkaServer`).
//! - [`server`]: accepting connections, framing, in-order answers (`SocketServer`).
//! - [`api`]: one file per Kafka API (`KafkaApis`), each taking the handlers' context
//!   `api::context::KafkaApis`; `api::SUPPORTED` is what ApiVersions says.
//! - [`metadata_cache`]: the cluster as the controller last described it (`ZkMetadataCache`).
//! - [`error`]: the broker's error type, mapped to Kafka error codes in one place.
//! - [`replica_manager`]: the hosted partitions and the entry points that change them
//!   (`ReplicaManager`: LeaderAndIsr, StopReplica, appends, the acks=all wait).
//! - [`partition`]: one replica: log, high watermark, follower states, ISR decisions
//!   (`kafka.cluster.Partition`).
//! - [`replication`]: followers fetching from leaders (`ReplicaFetcherManager`).
//! - [`isr`]: the leader's ISR changes sent to the controller (`AlterPartitionManager`).
//! - [`client`]: the broker's own requests to other brokers.
//! - [`metrics`]: the Prometheus endpoint (`metrics.port`).
//! - [`group_log`]: `__consumer_offsets` as the group coordinator's log, and the leadership
//!   callback that tells the coordinator which of its partitions this broker leads.
//! - [`group`]: the consumer group coordinator (`GroupCoordinator`).
//!
//! The controller itself lives in the `controller` crate; [`broker::start`] starts it. ZooKeeper
//! is reached through the `zk` crate (`KafkaZkClient`); [`broker::start_with_zk`] takes a session
//! opened by the caller, as the in-process test cluster (`tests/in_process/`) does on the
//! in-memory ZooKeeper. Error codes come from the `common` crate (`ErrorCode`). The flow of a
//! produce request through these files: docs/architecture.md.

pub mod alloc;
pub mod api;
pub mod broker;
pub mod client;
pub mod config;
pub mod error;
pub mod fetch_session;
pub mod group;
pub mod group_log;
pub mod isr;
pub mod metadata_cache;
pub mod metrics;
pub mod partition;
pub mod replica_manager;
pub mod replication;
pub mod server;

/// Unit tests decode hostile frames too, so they run under the same guard as the binary.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOC: alloc::GuardedAlloc = alloc::GuardedAlloc;
