//! InitProducerId: the producer id an idempotent producer stamps on its batches.
//!
//! Kafka concept: a producer with `enable.idempotence` first asks any broker for a producer id
//! and epoch (`InitProducerId` with a null transactional id), then numbers its records per
//! partition. Leaders remember each producer's last batches (storage's `producer_state`) so that
//! a batch retried after a lost answer (the leader died, the connection dropped) is recognised
//! and answered with the first copy's offsets instead of being written twice.
//!
//! Ids come in blocks of 1000 claimed in `/latest_producer_id_block` with a conditional write
//! (Kafka's `ZkProducerIdManager`, which brokers used directly before IBP 3.0-IV0; later the
//! controller does the same ZooKeeper work on their behalf through AllocateProducerIds).
//! Kafka: `KafkaApis.handleInitProducerIdRequest`, `TransactionCoordinator.handleInitProducerId`.
//!
//! Simplification: transactions are not implemented (no transaction coordinator), so a request
//! with a transactional id is answered INVALID_REQUEST, as FindCoordinator for a transaction is.

use common::ErrorCode;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::api::context::KafkaApis;

/// Hands out producer ids from the block this broker claimed last.
#[derive(Default)]
pub struct ProducerIdManager {
    /// (next id, last id of the block), inclusive; `None` before the first block.
    block: Mutex<Option<(i64, i64)>>,
}

impl ProducerIdManager {
    /// A manager holding the first block, claimed at start-up as Kafka's `ZkProducerIdManager`
    /// does in its constructor ("grab the first block of producerIds"): an idempotent producer
    /// that starts while ZooKeeper is unreachable still gets an id from this broker, up to a
    /// block's worth. If the claim fails the first InitProducerId claims it instead.
    pub async fn start(zk: &zk::client::KafkaZkClient, broker_id: i32) -> ProducerIdManager {
        match zk.allocate_producer_id_block(broker_id).await {
            Ok((first, last)) => {
                info!(
                    broker_id,
                    block_start = first,
                    block_end = last,
                    "claimed the first producer id block"
                );
                ProducerIdManager {
                    block: Mutex::new(Some((first, last))),
                }
            }
            Err(e) => {
                warn!(broker_id, error = %e,
                    "cannot claim a producer id block at start-up; the first InitProducerId will");
                ProducerIdManager::default()
            }
        }
    }

    /// The next unused producer id, claiming a new block in ZooKeeper when this one is used up.
    pub async fn next_id(&self, broker: &KafkaApis) -> controller::Result<i64> {
        let mut block = self.block.lock().await;
        if let Some((next, last)) = *block {
            if next <= last {
                *block = Some((next + 1, last));
                return Ok(next);
            }
        }
        let (first, last) = broker
            .zk
            .allocate_producer_id_block(broker.broker_id)
            .await?;
        *block = Some((first + 1, last));
        Ok(first)
    }
}

pub async fn handle(broker: &KafkaApis, req: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(txn) = req.transactional_id.as_ref() {
        warn!(transactional_id = %txn.0, "InitProducerId for a transactional producer: transactions are not implemented");
        return resp.with_error_code(ErrorCode::INVALID_REQUEST.code());
    }
    match broker.producer_ids.next_id(broker).await {
        Ok(id) => {
            info!(
                broker_id = broker.broker_id,
                producer_id = id,
                "assigned a producer id to an idempotent producer"
            );
            resp.with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Err(e) => {
            warn!(error = %e, "cannot claim a producer id block in ZooKeeper");
            resp.with_error_code(ErrorCode::COORDINATOR_NOT_AVAILABLE.code())
        }
    }
}
