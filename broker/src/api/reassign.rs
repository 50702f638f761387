//! AlterPartitionReassignments (API key 45) and ListPartitionReassignments (API key 46),
//! version 0 of each: the KIP-455 way to move partitions between brokers
//! (`kafka-reassign-partitions.sh --execute/--cancel/--list`, `AdminClient`).
//!
//! Kafka classes mirrored: `KafkaApis.handleAlterPartitionReassignmentsRequest` and
//! `handleListPartitionReassignmentsRequest`. Clients send both to the controller; the
//! controller (`controller::reassignment`) validates, writes the adding/removing replicas to
//! the topic znode and answers at once; the move itself completes asynchronously as the new
//! replicas join the ISR. A null replica list cancels the partition's reassignment. Anywhere
//! but on the active controller the answer is NOT_CONTROLLER (top-level error code).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;
use zk::data::TopicPartition;

use crate::api::context::KafkaApis;

fn topic_name(s: String) -> TopicName {
    TopicName(StrBytes::from_string(s))
}

fn broker_ids(v: &[i32]) -> Vec<BrokerId> {
    v.iter().map(|b| BrokerId(*b)).collect()
}

pub async fn alter_partition_reassignments(
    broker: &KafkaApis,
    req: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut reassignments: BTreeMap<TopicPartition, Option<Vec<i32>>> = BTreeMap::new();
    for t in &req.topics {
        for p in &t.partitions {
            reassignments.insert(
                TopicPartition::new(t.name.0.to_string(), p.partition_index),
                p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            );
        }
    }
    info!(
        broker_id = broker.broker_id,
        partitions = reassignments.len(),
        "AlterPartitionReassignments request received"
    );
    match broker
        .controller
        .alter_partition_reassignments(reassignments)
        .await
    {
        Err(code) => AlterPartitionReassignmentsResponse::default().with_error_code(code),
        Ok(results) => {
            let mut by_topic: BTreeMap<String, Vec<ReassignablePartitionResponse>> =
                BTreeMap::new();
            for (tp, r) in results {
                let (code, msg) = match r {
                    Ok(()) => (0, None),
                    Err((code, msg)) => (code, msg),
                };
                by_topic.entry(tp.topic).or_default().push(
                    ReassignablePartitionResponse::default()
                        .with_partition_index(tp.partition)
                        .with_error_code(code)
                        .with_error_message(msg.map(StrBytes::from_string)),
                );
            }
            AlterPartitionReassignmentsResponse::default().with_responses(
                by_topic
                    .into_iter()
                    .map(|(t, partitions)| {
                        ReassignableTopicResponse::default()
                            .with_name(topic_name(t))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
    }
}

pub async fn list_partition_reassignments(
    broker: &KafkaApis,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let partitions = req.topics.map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(move |p| TopicPartition::new(t.name.0.to_string(), *p))
            })
            .collect()
    });
    match broker
        .controller
        .list_partition_reassignments(partitions)
        .await
    {
        Err(code) => ListPartitionReassignmentsResponse::default().with_error_code(code),
        Ok(ongoing) => {
            let mut by_topic: BTreeMap<String, Vec<OngoingPartitionReassignment>> = BTreeMap::new();
            for (tp, a) in ongoing {
                by_topic.entry(tp.topic).or_default().push(
                    OngoingPartitionReassignment::default()
                        .with_partition_index(tp.partition)
                        .with_replicas(broker_ids(&a.replicas))
                        .with_adding_replicas(broker_ids(&a.adding_replicas))
                        .with_removing_replicas(broker_ids(&a.removing_replicas)),
                );
            }
            ListPartitionReassignmentsResponse::default().with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, partitions)| {
                        OngoingTopicReassignment::default()
                            .with_name(topic_name(t))
                            .with_partitions(partitions)
                    })
                    .collect(),
            )
        }
    }
}
