//! Metadata: which brokers exist, who the controller is, and each partition's leader, replicas
//! and ISR, answered from the metadata cache the controller keeps up to date.
//!
//! Kafka concept: clients bootstrap from any broker and learn the whole cluster from this answer,
//! then send produce and fetch requests to each partition's leader. A topic that does not exist
//! is created here when `auto.create.topics.enable` is set and the client allows it (the answer
//! then says LEADER_NOT_AVAILABLE until the controller has elected leaders).
//! Kafka: `KafkaApis.handleTopicMetadataRequest`, `ZkMetadataCache.getTopicMetadata`.
//!
//! Before the controller's first UpdateMetadata of this run the request has waited for it
//! (`crate::api::handle`). If it still has not come, Kafka 3.6 (ZooKeeper mode) would answer
//! from its empty cache: no brokers, controller -1, and UNKNOWN_TOPIC_OR_PARTITION for every
//! topic asked for (or none at all when all topics are asked for), which librdkafka takes as
//! "the topic has 0 partitions now" and fails the records it holds for it. We never claim a
//! topic is gone on that basis ([`not_initialized`]): every topic asked for is answered with
//! LEADER_NOT_AVAILABLE and no partitions, which clients treat as passing (librdkafka ignores
//! such a topic in the answer, the Java client retries), all topics means the names in
//! ZooKeeper, answered the same way, no topic is auto-created, and the broker list holds at
//! least this broker, so a client keeps somewhere to ask again.

use common::ErrorCode;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::frame::{encode_response, Frame};
use crate::api::context::KafkaApis;
use crate::metadata_cache::{BrokerEntry, MetadataCache, TopicEntry, View};

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
pub fn brokers(broker: &KafkaApis) -> Vec<MetadataResponseBroker> {
    let listener = &broker.config.listeners[0].name;
    broker
        .metadata
        .with_view(|view| response_brokers(view, listener))
}

/// The live brokers of `view` that have an endpoint for `listener`, by id.
fn response_brokers(view: View<'_>, listener: &str) -> Vec<MetadataResponseBroker> {
    view.brokers
        .values()
        .filter_map(|b| response_broker(b, listener))
        .collect()
}

/// `b` as a Metadata answer lists it, if it has an endpoint for `listener`.
fn response_broker(b: &BrokerEntry, listener: &str) -> Option<MetadataResponseBroker> {
    let ep = b.endpoints.iter().find(|e| e.listener == listener)?;
    Some(
        MetadataResponseBroker::default()
            .with_node_id(BrokerId(b.id))
            .with_host(StrBytes::from_string(ep.host.clone()))
            .with_port(ep.port)
            .with_rack(b.rack.clone().map(StrBytes::from_string)),
    )
}

/// One topic of a Metadata answer, as the request resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A topic the cache had when the request was resolved (answered from the cache; if it
    /// is gone by then, UNKNOWN_TOPIC_OR_PARTITION).
    Topic(String),
    /// A topic answered with an error and no partitions.
    Failed {
        error: i16,
        name: Option<String>,
        id: Uuid,
    },
}

/// What the answer depends on besides the cache and the topics.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    pub version: i16,
    /// The listener whose endpoints clients are given.
    pub listener: &'a str,
    pub cluster_id: &'a str,
    /// `include_topic_authorized_operations` (used from v8).
    pub topic_operations: bool,
    /// `include_cluster_authorized_operations` (used in v8 to v10).
    pub cluster_operations: bool,
}

/// One cached topic's metadata.
fn topic_metadata(
    view: View<'_>,
    name: &str,
    t: &TopicEntry,
    version: i16,
) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .map(|(idx, p)| {
            let leader_alive = p.leader >= 0 && view.is_alive(p.leader);
            let error = if leader_alive {
                0
            } else {
                ErrorCode::LEADER_NOT_AVAILABLE.code()
            };
            let mut replicas: Vec<BrokerId> = p.replicas.iter().map(|r| BrokerId(*r)).collect();
            let mut isr: Vec<BrokerId> = p.isr.iter().map(|r| BrokerId(*r)).collect();
            if version == 0 {
                replicas.retain(|r| view.is_alive(r.0));
                isr.retain(|r| view.is_alive(r.0));
            }
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(*idx)
                .with_leader_id(BrokerId(if leader_alive { p.leader } else { -1 }))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(replicas)
                .with_isr_nodes(isr)
                .with_offline_replicas(p.offline_replicas.iter().map(|r| BrokerId(*r)).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
        .with_topic_id(t.id)
        .with_is_internal(is_internal(name))
        .with_partitions(partitions)
}

fn failed_topic(error: i16, name: Option<&str>, id: Uuid) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error)
        .with_name(name.map(|n| TopicName(StrBytes::from_string(n.to_string()))))
        .with_topic_id(id)
        .with_is_internal(false)
}

/// The answer as kafka-protocol's struct, under one read lock of the cache: every topic when
/// `wanted` is `None`, else the topics of `wanted` in order.
pub fn build(
    cache: &MetadataCache,
    o: &Options<'_>,
    wanted: Option<&[Wanted]>,
) -> MetadataResponse {
    let version = o.version;
    let mut resp = cache.with_view(|view| {
        let topics = match wanted {
            None => view
                .topics
                .iter()
                .map(|(name, t)| topic_metadata(view, name, t, version))
                .collect(),
            Some(wanted) => wanted
                .iter()
                .map(|w| match w {
                    Wanted::Topic(name) => match view.topics.get(name) {
                        Some(t) => topic_metadata(view, name, t, version),
                        None => failed_topic(
                            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
                            Some(name),
                            Uuid::nil(),
                        ),
                    },
                    Wanted::Failed { error, name, id } => {
                        failed_topic(*error, name.as_deref(), *id)
                    }
                })
                .collect(),
        };
        MetadataResponse::default()
            .with_brokers(response_brokers(view, o.listener))
            .with_cluster_id(Some(StrBytes::from_string(o.cluster_id.to_string())))
            .with_controller_id(BrokerId(view.controller_id.unwrap_or(-1)))
            .with_topics(topics)
    });
    if version >= 8 && o.topic_operations {
        for t in &mut resp.topics {
            t.topic_authorized_operations = TOPIC_OPERATIONS;
        }
    }
    if (8..=10).contains(&version) && o.cluster_operations {
        resp.cluster_authorized_operations = CLUSTER_OPERATIONS;
    }
    fit_to_version(&mut resp, version);
    resp
}

/// Resolves the request's topics (`None`: all topics), creating unknown ones when allowed.
async fn resolve(broker: &KafkaApis, req: &MetadataRequest, version: i16) -> Option<Vec<Wanted>> {
    let requested = match &req.topics {
        None => return None,
        Some(t) if version == 0 && t.is_empty() => return None,
        Some(t) => t,
    };
    let allow_auto_create = version < 4 || req.allow_auto_topic_creation;
    let mut wanted = Vec::with_capacity(requested.len());
    for rt in requested {
        let name = match &rt.name {
            Some(n) => n.to_string(),
            None => match broker.metadata.topic_name_by_id(rt.topic_id) {
                Some(n) => n,
                None => {
                    wanted.push(Wanted::Failed {
                        error: ErrorCode::UNKNOWN_TOPIC_ID.code(),
                        name: None,
                        id: rt.topic_id,
                    });
                    continue;
                }
            },
        };
        if broker.metadata.has_topic(&name) {
            wanted.push(Wanted::Topic(name));
            continue;
        }
        let error = if controller::admin::validate_topic_name(&name).is_err() {
            ErrorCode::INVALID_TOPIC_EXCEPTION.code()
        } else if allow_auto_create && broker.config.auto_create_topics_enable {
            match super::admin::auto_create_topic(broker, &name).await {
                Ok(()) => ErrorCode::LEADER_NOT_AVAILABLE.code(),
                Err(code) => code,
            }
        } else {
            ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code()
        };
        wanted.push(Wanted::Failed {
            error,
            name: Some(name),
            id: Uuid::nil(),
        });
    }
    Some(wanted)
}

/// The answer while the cache has had no UpdateMetadata yet (see the module doc): every topic
/// of `requested` (names, or ids when `None`) as LEADER_NOT_AVAILABLE without partitions, and
/// `local` (this broker) in the broker list if the cache lists none.
pub fn not_initialized(
    cache: &MetadataCache,
    o: &Options<'_>,
    requested: &[(Option<String>, Uuid)],
    local: &BrokerEntry,
) -> MetadataResponse {
    let wanted: Vec<Wanted> = requested
        .iter()
        .map(|(name, id)| Wanted::Failed {
            error: ErrorCode::LEADER_NOT_AVAILABLE.code(),
            name: name.clone(),
            id: *id,
        })
        .collect();
    let mut resp = build(cache, o, Some(&wanted));
    if resp.brokers.is_empty() {
        resp.brokers.extend(response_broker(local, o.listener));
        fit_to_version(&mut resp, o.version);
    }
    resp
}

/// The topics a request names (`None` when it asks for all topics), as (name, id) pairs.
fn requested_topics(req: &MetadataRequest, version: i16) -> Option<Vec<(Option<String>, Uuid)>> {
    match &req.topics {
        None => None,
        Some(t) if version == 0 && t.is_empty() => None,
        Some(t) => Some(
            t.iter()
                .map(|rt| (rt.name.as_ref().map(|n| n.to_string()), rt.topic_id))
                .collect(),
        ),
    }
}

/// How long the all-topics answer of an uninitialized broker may spend reading the topic
/// names from ZooKeeper.
const ZK_TOPICS_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Answers a Metadata request: the whole response frame, encoded straight from the cache
/// ([`super::metadata_encode`]), or through kafka-protocol's structs if that cannot be done.
pub async fn handle(
    broker: &KafkaApis,
    req: MetadataRequest,
    version: i16,
    correlation_id: i32,
) -> Option<Frame> {
    let o = Options {
        version,
        listener: &broker.config.listeners[0].name,
        cluster_id: &broker.cluster_id,
        topic_operations: req.include_topic_authorized_operations,
        cluster_operations: req.include_cluster_authorized_operations,
    };
    if !broker.metadata.is_initialized() {
        let requested = match requested_topics(&req, version) {
            Some(r) => r,
            None => {
                let read = broker.zk.get_all_topics();
                match tokio::time::timeout(ZK_TOPICS_READ_TIMEOUT, read).await {
                    Ok(Ok(names)) => names.into_iter().map(|n| (Some(n), Uuid::nil())).collect(),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the topic names from ZooKeeper");
                        Vec::new()
                    }
                    Err(_) => {
                        tracing::warn!("reading the topic names from ZooKeeper timed out");
                        Vec::new()
                    }
                }
            }
        };
        let resp = not_initialized(&broker.metadata, &o, &requested, &broker.local_broker);
        return encode_response(correlation_id, version, &ResponseKind::Metadata(resp))
            .map(|b| vec![b.freeze()]);
    }
    let wanted = resolve(broker, &req, version).await;
    if let Some(frame) =
        super::metadata_encode::encode(&broker.metadata, &o, wanted.as_deref(), correlation_id)
    {
        return Some(vec![frame]);
    }
    let resp = build(&broker.metadata, &o, wanted.as_deref());
    encode_response(correlation_id, version, &ResponseKind::Metadata(resp))
        .map(|b| vec![b.freeze()])
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
