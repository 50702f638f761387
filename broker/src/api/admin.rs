//! CreateTopics, DeleteTopics, CreatePartitions: admin requests the controller's broker
//! carries out by writing ZooKeeper, the way Kafka's ZooKeeper mode does.
//!
//! Kafka concept: in ZooKeeper mode the admin path writes znodes (`/config/topics/<t>`,
//! `/brokers/topics/<t>`, `/admin/delete_topics/<t>`) and the controller reacts to its own
//! watches: it elects leaders and tells the brokers. Clients must send these requests to the
//! controller (others answer NOT_CONTROLLER); the answer waits, up to the request's timeout, until
//! the metadata cache shows the result (Kafka's `DelayedCreatePartitions`, `DelayedDeleteTopics`).
//! Auto-creation on Metadata uses the same path from any broker, as Kafka's `AutoTopicCreationManager`
//! does in ZooKeeper mode.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::ErrorCode;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use uuid::Uuid;

use crate::api::context::KafkaApis;

/// Kafka's error code (and message) for a controller-crate error.
pub fn error_code(e: &controller::Error) -> i16 {
    use controller::Error as E;
    match e {
        E::TopicExists(_) => ErrorCode::TOPIC_ALREADY_EXISTS.code(),
        E::UnknownTopic(_) => ErrorCode::UNKNOWN_TOPIC_OR_PARTITION.code(),
        E::InvalidTopic(_) => ErrorCode::INVALID_TOPIC_EXCEPTION.code(),
        E::InvalidReplicationFactor { .. } => ErrorCode::INVALID_REPLICATION_FACTOR.code(),
        E::InvalidPartitions(_) => ErrorCode::INVALID_PARTITIONS.code(),
        E::InvalidReplicaAssignment(_) => ErrorCode::INVALID_REPLICA_ASSIGNMENT.code(),
        E::ControllerMoved | E::NotController => ErrorCode::NOT_CONTROLLER.code(),
        _ => ErrorCode::UNKNOWN_SERVER_ERROR.code(),
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Waits (on the broker's progress signal, no polling) until `done` holds or `timeout` passes.
pub async fn wait_for(
    broker: &KafkaApis,
    timeout: Duration,
    done: impl Fn(&KafkaApis) -> bool,
) -> bool {
    let mut rx = broker.replicas.subscribe();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done(broker) {
            return true;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return done(broker);
        }
    }
}

async fn live_broker_ids(broker: &KafkaApis) -> Result<Vec<i32>, i16> {
    broker
        .zk
        .get_all_brokers()
        .await
        .map(|v| v.iter().map(|b| b.id()).collect())
        .map_err(|e| error_code(&e.into()))
}

/// Creates a topic with the broker's defaults (Metadata auto-creation and internal topics).
pub async fn auto_create_topic(broker: &KafkaApis, topic: &str) -> Result<(), i16> {
    let (partitions, rf) = if topic == "__consumer_offsets" {
        (
            broker.config.offsets_topic_num_partitions,
            broker.config.offsets_topic_replication_factor as i32,
        )
    } else {
        (
            broker.config.num_partitions,
            broker.config.default_replication_factor as i32,
        )
    };
    let brokers = live_broker_ids(broker).await?;
    // Kafka creates the offsets topic with min(rf, live brokers) replicas.
    let rf = if topic == "__consumer_offsets" {
        rf.min(brokers.len() as i32).max(1)
    } else {
        rf
    };
    let assignment = controller::admin::assign_replicas_to_brokers(&brokers, partitions, rf)
        .map_err(|e| error_code(&e))?;
    let mut config = BTreeMap::new();
    if topic == "__consumer_offsets" {
        config.insert("cleanup.policy".to_string(), "compact".to_string());
        config.insert("segment.bytes".to_string(), "104857600".to_string());
        config.insert("compression.type".to_string(), "producer".to_string());
    }
    match broker.admin.create_topic(topic, &assignment, &config).await {
        Ok(topic_id) => {
            info!(topic, topic_id = %topic_id, partitions, replication_factor = rf, "auto-created topic");
            Ok(())
        }
        Err(controller::Error::TopicExists(_)) => Ok(()),
        Err(e) => Err(error_code(&e)),
    }
}

fn validate_configs(broker: &KafkaApis, configs: &BTreeMap<String, String>) -> Result<(), String> {
    for k in configs.keys() {
        if !crate::config::TOPIC_CONFIGS.iter().any(|(n, _)| n == k) {
            return Err(format!("Unknown topic config name: {k}"));
        }
    }
    broker
        .config
        .log_config_with(configs)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub async fn create_topics(
    broker: &KafkaApis,
    req: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let is_controller = broker.controller.is_active();
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = req
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let live = live_broker_ids(broker).await.unwrap_or_default();
    let mut results = Vec::new();
    let mut created = Vec::new();
    for t in &req.topics {
        let topic = t.name.to_string();
        let mut r = CreatableTopicResult::default()
            .with_name(name(&topic))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_configs(None);
        let fail = |mut r: CreatableTopicResult, code: i16, msg: String| {
            r.error_code = code;
            r.error_message = Some(StrBytes::from_string(msg));
            r
        };
        if !is_controller {
            results.push(fail(
                r,
                ErrorCode::NOT_CONTROLLER.code(),
                "This is not the correct controller for this cluster.".into(),
            ));
            continue;
        }
        if dupes.contains(&topic) {
            results.push(fail(
                r,
                ErrorCode::INVALID_REQUEST.code(),
                format!("Create topics request from client contains duplicate topic {topic}"),
            ));
            continue;
        }
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        if let Err(msg) = validate_configs(broker, &configs) {
            results.push(fail(r, ErrorCode::INVALID_CONFIG.code(), msg));
            continue;
        }
        let assignment: Result<BTreeMap<i32, Vec<i32>>, (i16, String)> = if !t
            .assignments
            .is_empty()
        {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                Err((ErrorCode::INVALID_REQUEST.code(), "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.".into()))
            } else {
                Ok(t.assignments
                    .iter()
                    .map(|a| {
                        (
                            a.partition_index,
                            a.broker_ids.iter().map(|b| b.0).collect(),
                        )
                    })
                    .collect())
            }
        } else {
            let partitions = if t.num_partitions == -1 {
                broker.config.num_partitions
            } else {
                t.num_partitions
            };
            let rf = if t.replication_factor == -1 {
                broker.config.default_replication_factor
            } else {
                t.replication_factor
            } as i32;
            if partitions <= 0 {
                Err((
                    ErrorCode::INVALID_PARTITIONS.code(),
                    "Number of partitions must be larger than 0.".into(),
                ))
            } else if rf <= 0 {
                Err((
                    ErrorCode::INVALID_REPLICATION_FACTOR.code(),
                    "Replication factor must be larger than 0.".into(),
                ))
            } else if rf as usize > live.len() {
                Err((
                    ErrorCode::INVALID_REPLICATION_FACTOR.code(),
                    format!(
                        "Replication factor: {rf} larger than available brokers: {}.",
                        live.len()
                    ),
                ))
            } else {
                controller::admin::assign_replicas_to_brokers(&live, partitions, rf)
                    .map_err(|e| (error_code(&e), e.to_string()))
            }
        };
        let assignment = match assignment {
            Ok(a) => a,
            Err((code, msg)) => {
                results.push(fail(r, code, msg));
                continue;
            }
        };
        if let Err(e) = controller::admin::validate_topic_name(&topic) {
            results.push(fail(
                r,
                ErrorCode::INVALID_TOPIC_EXCEPTION.code(),
                e.to_string(),
            ));
            continue;
        }
        let partitions = assignment.len() as i32;
        let rf = assignment.values().next().map_or(0, |v| v.len()) as i16;
        if req.validate_only {
            if broker.admin.topic_exists(&topic).await.unwrap_or(false) {
                results.push(fail(
                    r,
                    ErrorCode::TOPIC_ALREADY_EXISTS.code(),
                    format!("Topic '{topic}' already exists."),
                ));
                continue;
            }
        } else {
            match broker
                .admin
                .create_topic(&topic, &assignment, &configs)
                .await
            {
                Ok(id) => {
                    info!(topic = %topic, topic_id = %id, partitions, replication_factor = rf, "created topic (CreateTopics)");
                    if version >= 7 {
                        r.topic_id = zk::data::decode_uuid(&id).unwrap_or(Uuid::nil());
                    }
                    created.push(topic.clone());
                }
                Err(controller::Error::TopicExists(_)) => {
                    results.push(fail(
                        r,
                        ErrorCode::TOPIC_ALREADY_EXISTS.code(),
                        format!("Topic '{topic}' already exists."),
                    ));
                    continue;
                }
                Err(e) => {
                    results.push(fail(r, error_code(&e), e.to_string()));
                    continue;
                }
            }
        }
        if version >= 5 {
            r.num_partitions = partitions;
            r.replication_factor = rf;
            r.configs = Some(
                super::configs::topic_entries(broker, &configs)
                    .into_iter()
                    .map(|e| {
                        CreatableTopicConfigs::default()
                            .with_name(StrBytes::from_string(e.name))
                            .with_value(Some(StrBytes::from_string(e.value)))
                            .with_read_only(false)
                            .with_config_source(e.source)
                            .with_is_sensitive(false)
                    })
                    .collect(),
            );
        }
        results.push(r);
    }
    if !created.is_empty() && req.timeout_ms > 0 {
        let ok = wait_for(broker, Duration::from_millis(req.timeout_ms as u64), |b| {
            created.iter().all(|t| b.metadata.has_leaders(t))
        })
        .await;
        if !ok {
            for r in results.iter_mut() {
                if r.error_code == 0
                    && created.contains(&r.name.to_string())
                    && !broker.metadata.has_leaders(&r.name)
                {
                    r.error_code = ErrorCode::REQUEST_TIMED_OUT.code();
                    r.error_message = Some(StrBytes::from_static_str(
                        "Timed out waiting for the topic's partitions to get leaders.",
                    ));
                }
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub async fn delete_topics(
    broker: &KafkaApis,
    req: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let is_controller = broker.controller.is_active();
    let mut wanted: Vec<(Option<String>, Uuid)> = Vec::new();
    if version >= 6 {
        for t in &req.topics {
            wanted.push((t.name.as_ref().map(|n| n.to_string()), t.topic_id));
        }
    } else {
        for n in &req.topic_names {
            wanted.push((Some(n.to_string()), Uuid::nil()));
        }
    }
    let mut results = Vec::new();
    let mut deleting = Vec::new();
    for (topic, id) in wanted {
        let topic = match topic {
            Some(t) => t,
            None => match broker.metadata.topic_by_id(id) {
                Some((t, _)) => t,
                None => {
                    results.push(
                        DeletableTopicResult::default()
                            .with_name(None)
                            .with_topic_id(id)
                            .with_error_code(ErrorCode::UNKNOWN_TOPIC_ID.code()),
                    );
                    continue;
                }
            },
        };
        let topic_id = if version >= 6 {
            broker.metadata.topic(&topic).map_or(Uuid::nil(), |t| t.id)
        } else {
            Uuid::nil()
        };
        let mut r = DeletableTopicResult::default()
            .with_name(Some(name(&topic)))
            .with_topic_id(topic_id);
        let code = if !is_controller {
            ErrorCode::NOT_CONTROLLER.code()
        } else if !broker.config.delete_topic_enable {
            ErrorCode::TOPIC_DELETION_DISABLED.code()
        } else {
            match broker.admin.delete_topic(&topic).await {
                Ok(()) => {
                    info!(topic = %topic, "topic marked for deletion (DeleteTopics)");
                    deleting.push(topic.clone());
                    0
                }
                Err(e) => error_code(&e),
            }
        };
        r.error_code = code;
        if code != 0 && version >= 5 {
            r.error_message = Some(StrBytes::from_string(format!(
                "error code {code} deleting {topic}"
            )));
        }
        results.push(r);
    }
    if !deleting.is_empty() && req.timeout_ms > 0 {
        let ok = wait_for(broker, Duration::from_millis(req.timeout_ms as u64), |b| {
            deleting.iter().all(|t| b.metadata.topic(t).is_none())
        })
        .await;
        if !ok {
            for r in results.iter_mut() {
                let n = r.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                if r.error_code == 0 && broker.metadata.topic(&n).is_some() {
                    r.error_code = ErrorCode::REQUEST_TIMED_OUT.code();
                }
            }
        }
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub async fn create_partitions(
    broker: &KafkaApis,
    req: CreatePartitionsRequest,
    _version: i16,
) -> CreatePartitionsResponse {
    let is_controller = broker.controller.is_active();
    let mut results = Vec::new();
    let mut grown = Vec::new();
    for t in &req.topics {
        let topic = t.name.to_string();
        let mut r = CreatePartitionsTopicResult::default().with_name(name(&topic));
        let outcome: Result<(), (i16, String)> = if !is_controller {
            Err((
                ErrorCode::NOT_CONTROLLER.code(),
                "This is not the correct controller for this cluster.".into(),
            ))
        } else {
            let current = broker.metadata.partition_count(&topic) as i32;
            if current > 0 && t.count < current {
                Err((ErrorCode::INVALID_PARTITIONS.code(), format!("Topic currently has {current} partitions, which is higher than the requested {}.", t.count)))
            } else if current > 0 && t.count == current {
                Err((
                    ErrorCode::INVALID_PARTITIONS.code(),
                    format!("Topic already has {current} partitions."),
                ))
            } else if req.validate_only {
                Ok(())
            } else {
                let assignment = t.assignments.as_ref().map(|a| {
                    a.iter()
                        .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                        .collect()
                });
                broker
                    .admin
                    .create_partitions(&topic, t.count, assignment)
                    .await
                    .map_err(|e| (error_code(&e), e.to_string()))
            }
        };
        match outcome {
            Ok(()) => {
                if !req.validate_only {
                    grown.push((topic.clone(), t.count as usize));
                }
            }
            Err((code, msg)) => {
                r.error_code = code;
                r.error_message = Some(StrBytes::from_string(msg));
            }
        }
        results.push(r);
    }
    if !grown.is_empty() && req.timeout_ms > 0 {
        let ok = wait_for(broker, Duration::from_millis(req.timeout_ms as u64), |b| {
            grown
                .iter()
                .all(|(t, n)| b.metadata.partition_count(t) >= *n && b.metadata.has_leaders(t))
        })
        .await;
        if !ok {
            for r in results.iter_mut() {
                if r.error_code == 0 {
                    r.error_code = ErrorCode::REQUEST_TIMED_OUT.code();
                }
            }
        }
    }
    CreatePartitionsResponse::default().with_results(results)
}
