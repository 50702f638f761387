//! ElectLeaders (API key 43, versions 0 to 2): leader elections asked for by an admin client
//! (`kafka-leader-election.sh`, `AdminClient.electLeaders`).
//!
//! Kafka classes mirrored: `KafkaApis.handleElectLeaders`, `ReplicaManager.electLeaders` and
//! `DelayedElectLeader`. Clients send it to the controller; the controller elects (see
//! `controller::preferred_election`) and answers per partition. Like Kafka, the answer for a
//! partition that got a new leader waits (up to the request's `timeout_ms`) until this broker's
//! metadata cache shows that leader, so a client that refreshes its metadata right after sees
//! the new leader; a partition still not there at the deadline gets REQUEST_TIMED_OUT.
//!
//! Versions: v0 has no `ElectionType` (always PREFERRED) and no top-level error code; v1 adds
//! both; v2 is the flexible encoding. A null topic list means every partition in the metadata
//! cache, and then partitions that needed no election are left out of the answer (as Kafka).

use std::collections::BTreeMap;
use std::time::Duration;

use common::ErrorCode;
use controller::ElectionType;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use zk::data::TopicPartition;

use crate::api::context::KafkaApis;

pub async fn handle(
    broker: &KafkaApis,
    req: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    // v0 has no ElectionType field (decoded as 0: PREFERRED).
    let election_type = match req.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            info!(
                election_type = other,
                "ElectLeaders with an unknown election type"
            );
            return ElectLeadersResponse::default()
                .with_error_code(ErrorCode::INVALID_REQUEST.code());
        }
    };
    let _ = version;
    let all_partitions = req.topic_partitions.is_none();
    let partitions: Vec<TopicPartition> = match req.topic_partitions {
        Some(topics) => topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| TopicPartition::new(t.topic.0.to_string(), *p))
            })
            .collect(),
        None => broker
            .metadata
            .topic_names()
            .into_iter()
            .flat_map(|t| {
                let n = broker.metadata.partition_count(&t) as i32;
                (0..n).map(move |p| TopicPartition::new(t.clone(), p))
            })
            .collect(),
    };
    info!(
        broker_id = broker.broker_id,
        ?election_type,
        partitions = partitions.len(),
        "ElectLeaders request received"
    );
    let results = broker
        .controller
        .elect_leaders(partitions, election_type)
        .await;
    let mut answers: BTreeMap<TopicPartition, (i16, Option<String>)> = BTreeMap::new();
    let mut expected: BTreeMap<TopicPartition, i32> = BTreeMap::new();
    for (tp, r) in results {
        match r {
            Ok(leader) => {
                expected.insert(tp, leader);
            }
            Err((code, msg)) => {
                if !(all_partitions && code == ErrorCode::ELECTION_NOT_NEEDED.code()) {
                    answers.insert(tp, (code, msg));
                }
            }
        }
    }
    if !expected.is_empty() {
        // Kafka's DelayedElectLeader: wait until the metadata cache shows the new leaders.
        let shows_leaders = |b: &KafkaApis| {
            expected.iter().all(|(tp, leader)| {
                b.metadata
                    .partition(&tp.topic, tp.partition)
                    .is_some_and(|p| p.leader == *leader)
            })
        };
        let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
        crate::api::admin::wait_for(broker, timeout, shows_leaders).await;
        for (tp, leader) in expected {
            let there = broker
                .metadata
                .partition(&tp.topic, tp.partition)
                .is_some_and(|p| p.leader == leader);
            let answer = if there {
                (0, None)
            } else {
                (
                    ErrorCode::REQUEST_TIMED_OUT.code(),
                    Some("Timed out waiting for the new leader in the metadata".to_string()),
                )
            };
            answers.insert(tp, answer);
        }
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (tp, (code, msg)) in answers {
        by_topic.entry(tp.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(tp.partition)
                .with_error_code(code)
                .with_error_message(msg.map(StrBytes::from_string)),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(partitions)
            })
            .collect(),
    )
}
