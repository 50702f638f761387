//! Produce: appending a client's record batches to the leaders' logs.
//!
//! Kafka concept: a producer sends batches per partition to the partition's leader with
//! `acks`: 0 (no answer at all), 1 (answered once the leader has appended), or -1/all (answered
//! once every ISR member has the batch, i.e. the high watermark passed it; refused up front
//! with NOT_ENOUGH_REPLICAS when the ISR is smaller than `min.insync.replicas`).
//! Kafka: `KafkaApis.handleProduceRequest`, `ReplicaManager.appendRecords`,
//! `DelayedProduce` (the acks=all wait).
//!
//! The batch bytes are appended as they arrived (after offsets are assigned in place); the log
//! validates each batch (CRC, sizes, magic) and answers CORRUPT_MESSAGE, MESSAGE_TOO_LARGE, ...

use std::time::Duration;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tracing::debug;

use crate::api::context::KafkaApis;
use crate::error::Error;

pub async fn handle(broker: &KafkaApis, req: ProduceRequest, version: i16) -> ProduceResponse {
    let acks = req.acks;
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index, partition, offset to reach) for acks=all.
    let mut waits = Vec::new();
    for (ti, t) in req.topic_data.into_iter().enumerate() {
        let topic = t.name.to_string();
        let mut partitions = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let mut r = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let result = if !matches!(acks, -1..=1) {
                Err(Error::InvalidRequiredAcks(acks))
            } else if broker.metadata.partition(&topic, p.index).is_none()
                && broker.replicas.get(&topic, p.index).is_none()
            {
                Err(Error::UnknownTopicOrPartition)
            } else if crate::api::metadata::is_internal(&topic) {
                Err(Error::InvalidTopic(topic.clone()))
            } else {
                match (broker.replicas.leader_partition(&topic, p.index), p.records) {
                    (Err(e), _) => Err(e),
                    (Ok(_), None) => Err(Error::MissingRecords),
                    (Ok(part), Some(records)) => {
                        match broker.replicas.append_as_leader(&part, records, acks) {
                            Ok((info, epoch)) => {
                                if acks == -1 {
                                    waits.push((
                                        ti,
                                        partitions.len(),
                                        part,
                                        info.last_offset + 1,
                                        epoch,
                                    ));
                                }
                                Ok(info)
                            }
                            Err(e) => Err(e),
                        }
                    }
                }
            };
            match result {
                Ok(info) => {
                    r.base_offset = info.base_offset;
                    r.log_append_time_ms = info.log_append_time;
                    if version >= 5 {
                        r.log_start_offset = info.log_start_offset;
                    }
                }
                Err(e) => {
                    let code = e.code();
                    debug!(topic = %topic, partition = p.index, error_code = code, error = %e,
                        "produce failed");
                    r.error_code = code;
                }
            }
            partitions.push(r);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(t.name)
                .with_partition_responses(partitions),
        );
    }
    if !waits.is_empty() {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
        for (ti, pi, part, offset, epoch) in waits {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Err(e) = broker
                .replicas
                .wait_for_high_watermark(&part, offset, epoch, left)
                .await
            {
                responses[ti].partition_responses[pi].error_code = e.code();
            }
        }
    }
    ProduceResponse::default().with_responses(responses)
}
