//! The controller's requests to brokers (LeaderAndIsr, UpdateMetadata, StopReplica) and a
//! stopping broker's request to the controller (ControlledShutdown).
//!
//! Kafka concept: these are how the classic controller commands the cluster. Each carries the
//! controller's epoch; a broker that has seen a newer epoch answers STALE_CONTROLLER_EPOCH and
//! changes nothing, which is what fences a zombie controller that was paused past its session.
//! Each also carries the broker epoch the controller knows for us: an older one means the
//! request was meant for our previous incarnation (STALE_BROKER_EPOCH).
//! Kafka: `KafkaApis.handleLeaderAndIsrRequest`, `handleUpdateMetadataRequest`,
//! `handleStopReplicaRequest`, `handleControlledShutdownRequest`.

use std::collections::{BTreeMap, HashMap};

use common::ErrorCode;
use kafka_protocol::messages::controlled_shutdown_response::RemainingPartition;
use kafka_protocol::messages::leader_and_isr_response::{
    LeaderAndIsrPartitionError, LeaderAndIsrTopicError,
};
use kafka_protocol::messages::stop_replica_response::StopReplicaPartitionError;
use kafka_protocol::messages::{
    ControlledShutdownRequest, ControlledShutdownResponse, LeaderAndIsrRequest,
    LeaderAndIsrResponse, StopReplicaRequest, StopReplicaResponse, TopicName,
    UpdateMetadataRequest, UpdateMetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use crate::api::context::KafkaApis;
use crate::error::Error;

/// Kafka's `isBrokerEpochStale`: -1 means "not checked"; older than ours is stale.
fn broker_epoch_is_stale(broker: &KafkaApis, given: i64) -> bool {
    given != -1 && given < broker.broker_epoch()
}

pub async fn leader_and_isr(broker: &KafkaApis, req: LeaderAndIsrRequest) -> LeaderAndIsrResponse {
    let fail = |code: i16| LeaderAndIsrResponse::default().with_error_code(code);
    if broker_epoch_is_stale(broker, req.broker_epoch) {
        warn!(
            broker_id = broker.broker_id,
            broker_epoch = req.broker_epoch,
            "ignoring LeaderAndIsr for an older broker epoch"
        );
        return fail(ErrorCode::STALE_BROKER_EPOCH.code());
    }
    if !broker.replicas.check_controller_epoch(req.controller_epoch) {
        warn!(
            broker_id = broker.broker_id,
            controller_epoch = req.controller_epoch,
            controller_id = req.controller_id.0,
            "ignoring LeaderAndIsr from a controller with an older epoch"
        );
        return fail(ErrorCode::STALE_CONTROLLER_EPOCH.code());
    }
    // Topic configs for partitions we do not host yet (read once per topic).
    let mut configs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    for t in &req.topic_states {
        let name = t.topic_name.to_string();
        let new = t
            .partition_states
            .iter()
            .any(|p| broker.replicas.get(&name, p.partition_index).is_none());
        if new && !configs.contains_key(&name) {
            match broker.zk.get_topic_config(&name).await {
                Ok(c) => {
                    configs.insert(name, c);
                }
                Err(e) => {
                    warn!(topic = %name, error = %e, "cannot read topic config; using broker defaults")
                }
            }
        }
    }
    // Fetchers and the group coordinator hear of the changes inside (see ReplicaManager).
    let replicas = broker.replicas.clone();
    let outcomes =
        tokio::task::block_in_place(|| replicas.become_leader_or_follower(&req, &configs));
    let mut topics: Vec<LeaderAndIsrTopicError> = Vec::new();
    for o in outcomes {
        let err = LeaderAndIsrPartitionError::default()
            .with_topic_name(TopicName(StrBytes::from_string(o.topic.clone())))
            .with_partition_index(o.partition)
            .with_error_code(o.error.as_ref().map_or(0, Error::code));
        match topics.iter_mut().find(|t| t.topic_id == o.topic_id) {
            Some(t) => t.partition_errors.push(err),
            None => topics.push(
                LeaderAndIsrTopicError::default()
                    .with_topic_id(o.topic_id)
                    .with_partition_errors(vec![err]),
            ),
        }
    }
    LeaderAndIsrResponse::default().with_topics(topics)
}

pub fn update_metadata(broker: &KafkaApis, req: UpdateMetadataRequest) -> UpdateMetadataResponse {
    if broker_epoch_is_stale(broker, req.broker_epoch) {
        return UpdateMetadataResponse::default()
            .with_error_code(ErrorCode::STALE_BROKER_EPOCH.code());
    }
    if !broker.replicas.check_controller_epoch(req.controller_epoch) {
        warn!(
            broker_id = broker.broker_id,
            controller_epoch = req.controller_epoch,
            "ignoring UpdateMetadata from a controller with an older epoch"
        );
        return UpdateMetadataResponse::default()
            .with_error_code(ErrorCode::STALE_CONTROLLER_EPOCH.code());
    }
    let deleted = broker.metadata.update(&req);
    info!(
        broker_id = broker.broker_id,
        controller_id = req.controller_id.0,
        controller_epoch = req.controller_epoch,
        live_brokers = req.live_brokers.len(),
        partitions = req
            .topic_states
            .iter()
            .map(|t| t.partition_states.len())
            .sum::<usize>(),
        deleted = deleted.len(),
        "metadata cache updated by UpdateMetadata"
    );
    broker.replicas.notify_progress();
    UpdateMetadataResponse::default()
}

pub fn stop_replica(broker: &KafkaApis, req: StopReplicaRequest) -> StopReplicaResponse {
    if broker_epoch_is_stale(broker, req.broker_epoch) {
        return StopReplicaResponse::default()
            .with_error_code(ErrorCode::STALE_BROKER_EPOCH.code());
    }
    if !broker.replicas.check_controller_epoch(req.controller_epoch) {
        warn!(
            broker_id = broker.broker_id,
            controller_epoch = req.controller_epoch,
            "ignoring StopReplica from a controller with an older epoch"
        );
        return StopReplicaResponse::default()
            .with_error_code(ErrorCode::STALE_CONTROLLER_EPOCH.code());
    }
    let replicas = broker.replicas.clone();
    let results = tokio::task::block_in_place(|| replicas.stop_replicas(&req));
    StopReplicaResponse::default().with_partition_errors(
        results
            .into_iter()
            .map(|(t, p, e)| {
                StopReplicaPartitionError::default()
                    .with_topic_name(TopicName(StrBytes::from_string(t)))
                    .with_partition_index(p)
                    .with_error_code(e.as_ref().map_or(0, Error::code))
            })
            .collect(),
    )
}

pub async fn controlled_shutdown(
    broker: &KafkaApis,
    req: ControlledShutdownRequest,
) -> ControlledShutdownResponse {
    use controller::ControlledShutdownError as E;
    info!(
        broker_id = req.broker_id.0,
        broker_epoch = req.broker_epoch,
        "ControlledShutdown request received"
    );
    match broker
        .controller
        .controlled_shutdown(req.broker_id.0, req.broker_epoch)
        .await
    {
        Ok(remaining) => ControlledShutdownResponse::default().with_remaining_partitions(
            remaining
                .into_iter()
                .map(|tp| {
                    RemainingPartition::default()
                        .with_topic_name(TopicName(StrBytes::from_string(tp.topic)))
                        .with_partition_index(tp.partition)
                })
                .collect(),
        ),
        Err(e) => {
            let code = match e {
                E::NotController => ErrorCode::STALE_CONTROLLER_EPOCH.code(),
                E::StaleBrokerEpoch { .. } => ErrorCode::STALE_BROKER_EPOCH.code(),
                E::BrokerNotAvailable(_) => ErrorCode::BROKER_NOT_AVAILABLE.code(),
                E::Failed(_) => ErrorCode::UNKNOWN_SERVER_ERROR.code(),
            };
            ControlledShutdownResponse::default().with_error_code(code)
        }
    }
}
