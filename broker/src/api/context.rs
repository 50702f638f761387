//! What the request handlers see: the broker's parts a request may use, and nothing of its
//! start-up or shutdown.
//!
//! Kafka class mirrored: `kafka.server.KafkaApis`'s constructor arguments (`replicaManager`,
//! `groupCoordinator`, `controller`, `zkClient`, `metadataCache`, `config`, ...). Each API file
//! in `api/` takes a `&KafkaApis`; the broker builds one at start-up (`crate::broker::start`)
//! and hands it to the socket server.
//!
//! Invariant: this module imports no handler, so the dispatch in `api/mod.rs` and the handlers
//! do not import each other in a circle through it.
//! Simplification, said plainly: one context for every API (Kafka's has the same shape); a
//! handler may reach any part, not only the ones it needs.

use std::sync::Arc;

use controller::admin::AdminZkClient;
use controller::ControllerHandle;
use zk::client::KafkaZkClient;

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::metadata_cache::{BrokerEntry, MetadataCache};
use crate::replica_manager::ReplicaManager;

use super::producer_id::ProducerIdManager;

/// Everything a request handler needs, shared by all connections.
pub struct KafkaApis {
    pub broker_id: i32,
    pub config: Arc<BrokerConfig>,
    pub cluster_id: String,
    pub zk: KafkaZkClient,
    pub admin: AdminZkClient,
    pub controller: ControllerHandle,
    /// The cluster as the controller last described it (UpdateMetadata).
    pub metadata: Arc<MetadataCache>,
    /// This broker as registered in `/brokers/ids/<id>` (advertised endpoints with their bound
    /// ports): what a Metadata answer lists before the first UpdateMetadata.
    pub local_broker: BrokerEntry,
    /// The hosted partitions, their fetchers and their ISR changes (Kafka's `ReplicaManager`).
    pub replicas: Arc<ReplicaManager>,
    /// The consumer group coordinator.
    pub groups: Arc<GroupCoordinator>,
    /// Fetch sessions this broker keeps as a leader (KIP-227).
    pub fetch_sessions: FetchSessionCache,
    /// Producer ids for idempotent producers (InitProducerId).
    pub producer_ids: ProducerIdManager,
}

impl KafkaApis {
    /// The current broker epoch (czxid of our `/brokers/ids/<id>`; changes after a session
    /// expiry and re-registration).
    pub fn broker_epoch(&self) -> i64 {
        self.controller.broker_epoch()
    }
}
