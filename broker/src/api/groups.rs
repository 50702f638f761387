//! Consumer group APIs: FindCoordinator here, the rest answered by
//! [`crate::group::GroupCoordinator`].
//!
//! Kafka concept: a group's coordinator is the leader of the `__consumer_offsets` partition
//! `abs(groupId.hashCode) % offsets.topic.num.partitions`; the topic is created (with
//! `offsets.topic.num.partitions` partitions and `offsets.topic.replication.factor` replicas, at
//! most the live brokers) the first time a client looks for a coordinator.
//! Kafka: `KafkaApis.handleFindCoordinatorRequest`.

use common::ErrorCode;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::context::KafkaApis;

use crate::group::placement::OFFSETS_TOPIC;

/// Dispatches a group API request; `None` for anything else.
pub async fn handle(
    broker: &KafkaApis,
    req: RequestKind,
    version: i16,
    client_id: &str,
) -> Option<ResponseKind> {
    let g = &broker.groups;
    Some(match req {
        RequestKind::JoinGroup(r) => {
            ResponseKind::JoinGroup(g.join_group(r, version, client_id).await)
        }
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(g.sync_group(r, version).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(g.heartbeat(r, version).await),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(g.leave_group(r, version).await),
        RequestKind::OffsetCommit(r) => {
            let known = |t: &str, p: i32| broker.metadata.partition(t, p).is_some();
            ResponseKind::OffsetCommit(g.offset_commit_known(r, version, known).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(g.offset_fetch(r, version).await),
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(g.describe_groups(r, version))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(g.list_groups(r, version)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(g.delete_groups(r, version).await)
        }
        RequestKind::OffsetDelete(r) => {
            let known = |t: &str, p: i32| broker.metadata.partition(t, p).is_some();
            ResponseKind::OffsetDelete(g.offset_delete_known(r, version, known).await)
        }
        _ => return None,
    })
}

/// The coordinator for one key: (error code, node id, host, port).
async fn coordinator_for(broker: &KafkaApis, key: &str, key_type: i8) -> (i16, i32, String, i32) {
    if key_type != 0 {
        // Transaction coordinators (key type 1) need the transaction state topic: not served.
        return (ErrorCode::INVALID_REQUEST.code(), -1, String::new(), -1);
    }
    if key.is_empty() {
        return (ErrorCode::INVALID_GROUP_ID.code(), -1, String::new(), -1);
    }
    let n = broker.config.offsets_topic_num_partitions;
    let partition = crate::group::partition_for(key, n);
    match broker.metadata.partition(OFFSETS_TOPIC, partition) {
        Some(p) if p.leader >= 0 => {
            let listener = &broker.config.listeners[0].name;
            match broker
                .metadata
                .broker(p.leader)
                .and_then(|b| b.endpoints.into_iter().find(|e| &e.listener == listener))
            {
                Some(ep) => (0, p.leader, ep.host, ep.port),
                None => (
                    ErrorCode::COORDINATOR_NOT_AVAILABLE.code(),
                    -1,
                    String::new(),
                    -1,
                ),
            }
        }
        Some(_) => (
            ErrorCode::COORDINATOR_NOT_AVAILABLE.code(),
            -1,
            String::new(),
            -1,
        ),
        None => {
            if broker.metadata.topic(OFFSETS_TOPIC).is_none() {
                if let Err(code) = super::admin::auto_create_topic(broker, OFFSETS_TOPIC).await {
                    tracing::warn!(error_code = code, "cannot create __consumer_offsets");
                }
            }
            (
                ErrorCode::COORDINATOR_NOT_AVAILABLE.code(),
                -1,
                String::new(),
                -1,
            )
        }
    }
}

pub async fn find_coordinator(
    broker: &KafkaApis,
    req: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    if version >= 4 {
        let mut coordinators = Vec::with_capacity(req.coordinator_keys.len());
        for key in &req.coordinator_keys {
            let (code, node, host, port) = coordinator_for(broker, key, req.key_type).await;
            coordinators.push(
                Coordinator::default()
                    .with_key(key.clone())
                    .with_node_id(BrokerId(node))
                    .with_host(StrBytes::from_string(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(None),
            );
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, node, host, port) = coordinator_for(broker, &req.key, req.key_type).await;
    let mut r = FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_node_id(BrokerId(node))
        .with_host(StrBytes::from_string(host))
        .with_port(port);
    if version >= 1 {
        r.error_message = None;
    }
    r
}
