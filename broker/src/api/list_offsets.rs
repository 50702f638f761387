//! ListOffsets (offset for a timestamp: earliest -2, latest -1, max timestamp -3) and
//! OffsetForLeaderEpoch (where a leader epoch ended, so a follower or a consumer can detect and
//! cut a divergent tail).
//!
//! Kafka: `KafkaApis.handleListOffsetRequest`, `Partition.fetchOffsetForTimestamp`,
//! `KafkaApis.handleOffsetForLeaderEpochRequest`, `Partition.lastOffsetForLeaderEpoch`.
//! Consumers see offsets up to the high watermark only, as in Kafka.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::api::context::KafkaApis;
use crate::error::{Error, Result};
use crate::partition::Partition;

/// The leader partition after the leader-epoch check, or the error code.
fn leader_checked(
    broker: &KafkaApis,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<std::sync::Arc<Partition>> {
    let part = match broker.replicas.leader_partition(topic, partition) {
        Ok(p) => p,
        Err(e) => {
            return Err(
                if broker.metadata.partition(topic, partition).is_none()
                    && broker.replicas.get(topic, partition).is_none()
                {
                    Error::UnknownTopicOrPartition
                } else {
                    e
                },
            )
        }
    };
    if current_leader_epoch >= 0 {
        let epoch = part.state().leader_epoch;
        if current_leader_epoch < epoch {
            return Err(Error::FencedLeaderEpoch);
        }
        if current_leader_epoch > epoch {
            return Err(Error::UnknownLeaderEpoch);
        }
    }
    Ok(part)
}

pub fn handle(broker: &KafkaApis, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let is_consumer = req.replica_id.0 < 0;
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = t.name.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    let part = match leader_checked(
                        broker,
                        &topic,
                        p.partition_index,
                        p.current_leader_epoch,
                    ) {
                        Ok(part) => part,
                        Err(e) => {
                            r.error_code = e.code();
                            return r;
                        }
                    };
                    let hw = part.state().high_watermark;
                    let log = part.log();
                    let found = if p.timestamp == storage::LATEST_TIMESTAMP && is_consumer {
                        // Consumers' "latest" is the high watermark (read_uncommitted) or the
                        // last stable offset (read_committed, equal here: no transactions).
                        Ok(Some(storage::TimestampAndOffset {
                            timestamp: -1,
                            offset: hw,
                            leader_epoch: log.latest_epoch(),
                        }))
                    } else {
                        log.fetch_offset_by_timestamp(p.timestamp)
                    };
                    match found {
                        Ok(Some(t))
                            if !is_consumer
                                || t.offset <= hw
                                || p.timestamp == storage::EARLIEST_TIMESTAMP =>
                        {
                            r.timestamp = t.timestamp;
                            r.offset = t.offset;
                            if version >= 4 {
                                r.leader_epoch = t.leader_epoch.unwrap_or(-1);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => r.error_code = e.kafka_error_code(),
                    }
                    r
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub fn offsets_for_leader_epoch(
    broker: &KafkaApis,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .iter()
        .map(|t| {
            let topic = t.topic.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    match leader_checked(broker, &topic, p.partition, p.current_leader_epoch) {
                        Ok(part) => {
                            let (epoch, end) = part.log().end_offset_for_epoch(p.leader_epoch);
                            r.leader_epoch = epoch;
                            r.end_offset = end;
                        }
                        Err(e) => r.error_code = e.code(),
                    }
                    r
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
