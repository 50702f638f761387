//! DescribeConfigs (topic and broker configs) and DescribeCluster.
//!
//! Kafka concept: a topic's effective config is the broker default overridden by the topic's
//! own entries in `/config/topics/<t>`; each entry says where its value comes from
//! (DYNAMIC_TOPIC_CONFIG, STATIC_BROKER_CONFIG from server.properties, or DEFAULT_CONFIG).
//! Kafka: `ConfigHelper.describeConfigs`, `KafkaApis.handleDescribeCluster`.

use std::collections::BTreeMap;

use common::ErrorCode;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeConfigsRequest,
    DescribeConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::context::KafkaApis;

/// Kafka's `ConfigSource` ids.
pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
pub const STATIC_BROKER_CONFIG: i8 = 4;
pub const DEFAULT_CONFIG: i8 = 5;

/// Kafka's UNSUPPORTED_ENDPOINT_TYPE (Kafka 3.7+; not in kafka-protocol 0.15's error list).
pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 119;

/// Kafka's `ConfigResource.Type` ids.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

/// One effective config entry.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub value: String,
    pub source: i8,
    /// Kafka's `ConfigType` id (STRING 2, INT 3, LONG 5, BOOLEAN 1, LIST 7).
    pub config_type: i8,
    /// Where the default came from: (broker key, value, source) when a broker key sets it.
    pub synonym: Option<(String, String, i8)>,
}

fn config_type(name: &str) -> i8 {
    match name {
        "cleanup.policy" => 7,
        "message.timestamp.type" | "compression.type" => 2,
        "unclean.leader.election.enable" => 1,
        "min.insync.replicas"
        | "max.message.bytes"
        | "segment.bytes"
        | "segment.index.bytes"
        | "index.interval.bytes" => 3,
        _ => 5,
    }
}

/// The broker-level value of a topic config's default, and whether server.properties set it.
fn broker_default(broker: &KafkaApis, topic_key: &str, broker_key: &str) -> (String, bool) {
    if let Some(v) = broker.config.raw.get(broker_key) {
        return (v.clone(), true);
    }
    let c = &broker.config;
    let d = c.default_log_config();
    let v = match topic_key {
        "cleanup.policy" => c.log_cleanup_policy.clone(),
        "delete.retention.ms" => d.delete_retention_ms.to_string(),
        "flush.messages" => d.flush_messages.to_string(),
        "flush.ms" => d.flush_ms.to_string(),
        "max.message.bytes" => d.max_message_bytes.to_string(),
        "message.timestamp.type" => c.log_message_timestamp_type.clone(),
        "min.insync.replicas" => c.min_insync_replicas.to_string(),
        "retention.bytes" => d.retention_bytes.to_string(),
        "retention.ms" => d.retention_ms.to_string(),
        "segment.bytes" => d.segment_bytes.to_string(),
        "segment.index.bytes" => d.segment_index_bytes.to_string(),
        "segment.ms" => d.segment_ms.to_string(),
        "index.interval.bytes" => d.index_interval_bytes.to_string(),
        "unclean.leader.election.enable" => c.unclean_leader_election_enable.to_string(),
        "compression.type" => "producer".to_string(),
        _ => String::new(),
    };
    // A retention or roll set through a derived key (log.retention.hours) is still static.
    let derived = matches!(topic_key, "retention.ms" | "segment.ms")
        && c.raw.keys().any(|k| {
            k.starts_with(if topic_key == "retention.ms" {
                "log.retention."
            } else {
                "log.roll."
            }) && !k.ends_with(".bytes")
                && !k.ends_with("check.interval.ms")
        });
    (v, derived)
}

/// The effective config of a topic with `overrides` from `/config/topics/<t>`.
pub fn topic_entries(broker: &KafkaApis, overrides: &BTreeMap<String, String>) -> Vec<Entry> {
    crate::config::TOPIC_CONFIGS
        .iter()
        .map(|(key, broker_key)| {
            let (default, is_static) = broker_default(broker, key, broker_key);
            let synonym = is_static.then(|| {
                (
                    broker_key.to_string(),
                    default.clone(),
                    STATIC_BROKER_CONFIG,
                )
            });
            match overrides.get(*key) {
                Some(v) => Entry {
                    name: key.to_string(),
                    value: v.clone(),
                    source: DYNAMIC_TOPIC_CONFIG,
                    config_type: config_type(key),
                    synonym,
                },
                None => Entry {
                    name: key.to_string(),
                    value: default,
                    source: if is_static {
                        STATIC_BROKER_CONFIG
                    } else {
                        DEFAULT_CONFIG
                    },
                    config_type: config_type(key),
                    synonym,
                },
            }
        })
        .collect()
}

fn broker_entries(broker: &KafkaApis) -> Vec<Entry> {
    broker
        .config
        .raw
        .iter()
        .map(|(k, v)| Entry {
            name: k.clone(),
            value: v.clone(),
            source: STATIC_BROKER_CONFIG,
            config_type: 2,
            synonym: None,
        })
        .collect()
}

pub async fn describe_configs(
    broker: &KafkaApis,
    req: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let mut results = Vec::new();
    for r in &req.resources {
        let name = r.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let entries = match r.resource_type {
            RESOURCE_TOPIC => {
                if broker.metadata.topic(&name).is_none() {
                    result.error_code = ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code();
                    result.error_message = Some(StrBytes::from_string(format!(
                        "Topic {name} does not exist"
                    )));
                    results.push(result);
                    continue;
                }
                match broker.zk.get_topic_config(&name).await {
                    Ok(o) => topic_entries(broker, &o),
                    Err(e) => {
                        result.error_code = ErrorCode::UNKNOWN_SERVER_ERROR.code();
                        result.error_message = Some(StrBytes::from_string(e.to_string()));
                        results.push(result);
                        continue;
                    }
                }
            }
            RESOURCE_BROKER => {
                if !name.is_empty() && name != broker.broker_id.to_string() {
                    result.error_code = ErrorCode::INVALID_REQUEST.code();
                    result.error_message = Some(StrBytes::from_string(format!(
                        "Unexpected broker id, expected {} or empty string, but received {name}",
                        broker.broker_id
                    )));
                    results.push(result);
                    continue;
                }
                broker_entries(broker)
            }
            other => {
                result.error_code = ErrorCode::INVALID_REQUEST.code();
                result.error_message = Some(StrBytes::from_string(format!(
                    "Unsupported resource type {other}"
                )));
                results.push(result);
                continue;
            }
        };
        let wanted: Option<Vec<String>> = r
            .configuration_keys
            .as_ref()
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        result.configs = entries
            .into_iter()
            .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
            .map(|e| {
                let mut c = DescribeConfigsResourceResult::default()
                    .with_name(StrBytes::from_string(e.name.clone()))
                    .with_value(Some(StrBytes::from_string(e.value.clone())))
                    .with_read_only(r.resource_type == RESOURCE_BROKER)
                    .with_is_sensitive(false);
                if version == 0 {
                    c.is_default = e.source == DEFAULT_CONFIG;
                } else {
                    c.config_source = e.source;
                }
                if version >= 3 {
                    c.config_type = e.config_type;
                }
                if req.include_synonyms {
                    let mut syn = Vec::new();
                    if e.source == DYNAMIC_TOPIC_CONFIG {
                        syn.push(
                            DescribeConfigsSynonym::default()
                                .with_name(StrBytes::from_string(e.name.clone()))
                                .with_value(Some(StrBytes::from_string(e.value.clone())))
                                .with_source(DYNAMIC_TOPIC_CONFIG),
                        );
                    }
                    if let Some((k, v, s)) = &e.synonym {
                        syn.push(
                            DescribeConfigsSynonym::default()
                                .with_name(StrBytes::from_string(k.clone()))
                                .with_value(Some(StrBytes::from_string(v.clone())))
                                .with_source(*s),
                        );
                    }
                    c.synonyms = syn;
                }
                c
            })
            .collect();
        results.push(result);
    }
    DescribeConfigsResponse::default().with_results(results)
}

pub fn describe_cluster(
    broker: &KafkaApis,
    req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let mut resp = DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.metadata.controller_id().unwrap_or(-1)))
        .with_endpoint_type(1)
        .with_brokers(
            super::metadata::brokers(broker)
                .into_iter()
                .map(|b| {
                    DescribeClusterBroker::default()
                        .with_broker_id(b.node_id)
                        .with_host(b.host)
                        .with_port(b.port)
                        .with_rack(b.rack)
                })
                .collect(),
        );
    // endpoint_type 1 = brokers; 2 = controllers is KRaft-only.
    if req.endpoint_type == 2 {
        resp.error_code = UNSUPPORTED_ENDPOINT_TYPE;
        resp.error_message = Some(StrBytes::from_static_str(
            "The controller endpoint type is only served by KRaft controllers",
        ));
        resp.brokers.clear();
    }
    if req.include_cluster_authorized_operations {
        resp.cluster_authorized_operations = super::metadata::CLUSTER_OPERATIONS;
    }
    resp
}
