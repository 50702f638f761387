//! Metadata: which brokers exist, who the controller is, and each partition's leader, replicas
//! and ISR, answered from the metadata cache the controller keeps up to date.
//!
//! Kafka concept: clients bootstrap from any broker and learn the whole cluster from this answer,
//! then send produce and fetch requests to each partition's leader. A topic that does not exist
//! is created here when `auto.create.topics.enable` is set and the client allows it (the answer
//! then says LEADER_NOT_AVAILABLE until the controller has elected leaders).
//! Kafka: `KafkaApis.handleTopicMetadataRequest`, `ZkMetadataCache.getTopicMetadata`.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;

/// Bits of Kafka's `AclOperation` codes allowed on a topic without an authorizer:
/// READ(3) WRITE(4) CREATE(5) DELETE(6) ALTER(7) DESCRIBE(8) DESCRIBE_CONFIGS(10) ALTER_CONFIGS(11).
pub const TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
/// On the cluster: CREATE(5) ALTER(7) DESCRIBE(8) CLUSTER_ACTION(9) DESCRIBE_CONFIGS(10)
/// ALTER_CONFIGS(11) IDEMPOTENT_WRITE(12).
pub const CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// Internal topics (Kafka's `Topic.isInternal`).
pub fn is_internal(topic: &str) -> bool {
    topic == "__consumer_offsets" || topic == "__transaction_state"
}

/// The brokers as clients should reach them: the endpoint of the listener clients use.
pub fn brokers(broker: &Broker) -> Vec<MetadataResponseBroker> {
    let listener = &broker.config.listeners[0].name;
    broker
        .metadata
        .brokers()
        .into_iter()
        .filter_map(|b| {
            let ep = b.endpoints.iter().find(|e| &e.listener == listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(StrBytes::from_string(ep.host.clone()))
                    .with_port(ep.port)
                    .with_rack(b.rack.map(StrBytes::from_string)),
            )
        })
        .collect()
}

/// One topic's metadata from the cache (`None` if the topic is unknown).
pub fn topic_metadata(broker: &Broker, name: &str, version: i16) -> Option<MetadataResponseTopic> {
    broker.metadata.with_topic(name, |t, is_alive| {
        let partitions = t
            .partitions
            .iter()
            .map(|(idx, p)| {
                let leader_alive = p.leader >= 0 && is_alive(p.leader);
                let error = if leader_alive {
                    0
                } else {
                    ResponseError::LeaderNotAvailable.code()
                };
                let mut replicas: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r)).collect();
                let mut isr: Vec<BrokerId> = p.isr.iter().map(|r| BrokerId(*r)).collect();
                if version == 0 {
                    replicas.retain(|r| is_alive(r.0));
                    isr.retain(|r| is_alive(r.0));
                }
                MetadataResponsePartition::default()
                    .with_error_code(error)
                    .with_partition_index(*idx)
                    .with_leader_id(BrokerId(if leader_alive { p.leader } else { -1 }))
                    .with_leader_epoch(p.leader_epoch)
                    .with_replica_nodes(replicas)
                    .with_isr_nodes(isr)
                    .with_offline_replicas(
                        p.offline_replicas.iter().map(|r| BrokerId(*r)).collect(),
                    )
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
            .with_topic_id(t.id)
            .with_is_internal(is_internal(name))
            .with_partitions(partitions)
    })
}

pub async fn handle(broker: &Broker, req: MetadataRequest, version: i16) -> MetadataResponse {
    let all = match &req.topics {
        None => true,
        Some(t) => version == 0 && t.is_empty(),
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut topics = Vec::new();
    if all {
        for name in broker.metadata.topic_names() {
            if let Some(t) = topic_metadata(broker, &name, version) {
                topics.push(t);
            }
        }
    } else {
        for rt in req.topics.as_deref().unwrap_or_default() {
            let name = match &rt.name {
                Some(n) => n.to_string(),
                None => match broker.metadata.topic_by_id(rt.topic_id) {
                    Some((n, _)) => n,
                    None => {
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_error_code(ResponseError::UnknownTopicId.code())
                                .with_name(None)
                                .with_topic_id(rt.topic_id),
                        );
                        continue;
                    }
                },
            };
            if let Some(t) = topic_metadata(broker, &name, version) {
                topics.push(t);
                continue;
            }
            let error = if controller::admin::validate_topic_name(&name).is_err() {
                ResponseError::InvalidTopicException.code()
            } else if allow_auto_create && broker.config.auto_create_topics_enable {
                match super::admin::auto_create_topic(broker, &name).await {
                    Ok(()) => ResponseError::LeaderNotAvailable.code(),
                    Err(code) => code,
                }
            } else {
                ResponseError::UnknownTopicOrPartition.code()
            };
            topics.push(
                MetadataResponseTopic::default()
                    .with_error_code(error)
                    .with_name(Some(TopicName(StrBytes::from_string(name))))
                    .with_topic_id(Uuid::nil())
                    .with_is_internal(false),
            );
        }
    }
    if version >= 8 && req.include_topic_authorized_operations {
        for t in &mut topics {
            t.topic_authorized_operations = TOPIC_OPERATIONS;
        }
    }
    let mut resp = MetadataResponse::default()
        .with_brokers(brokers(broker))
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.metadata.controller_id().unwrap_or(-1)))
        .with_topics(topics);
    if (8..=10).contains(&version) && req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    fit_to_version(&mut resp, version);
    resp
}

/// Resets the fields `version` does not carry to their defaults (kafka-protocol refuses to
/// encode a field set on a version that lacks it).
pub fn fit_to_version(resp: &mut MetadataResponse, version: i16) {
    if version < 1 {
        resp.controller_id = BrokerId(-1);
        for b in &mut resp.brokers {
            b.rack = None;
        }
    }
    if version < 2 {
        resp.cluster_id = None;
    }
    for t in &mut resp.topics {
        if version < 1 {
            t.is_internal = false;
        }
        if version < 10 {
            t.topic_id = Uuid::nil();
        }
        for p in &mut t.partitions {
            if version < 7 {
                p.leader_epoch = -1;
            }
            if version < 5 {
                p.offline_replicas.clear();
            }
        }
    }
}
