//! `__consumer_offsets` as the group coordinator's log: appends wait until the batch is
//! committed (Kafka writes offsets with acks=all), reads return the partition from its start.
//!
//! Kafka class mirrored: the `ReplicaManager.appendRecords` call in `GroupMetadataManager`
//! (`storeOffsets`, `storeGroup`) and its loading of a partition (`doLoadGroupsAndOffsets`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;

use crate::api::groups::OFFSETS_TOPIC;
use crate::group::records::{BoxFuture, GroupLog};
use crate::replica_manager::ReplicaManager;

pub struct OffsetsTopicLog {
    pub replicas: Arc<ReplicaManager>,
    pub timeout: Duration,
}

impl GroupLog for OffsetsTopicLog {
    fn append(&self, partition: i32, batch: Bytes) -> BoxFuture<'_, Result<(), i16>> {
        Box::pin(async move {
            let part = self.replicas.leader_partition(OFFSETS_TOPIC, partition)?;
            let (info, epoch) = self.replicas.append_as_leader(&part, batch, -1)?;
            self.replicas
                .wait_for_high_watermark(&part, info.last_offset + 1, epoch, self.timeout)
                .await
        })
    }

    fn read(&self, partition: i32) -> BoxFuture<'_, Result<Bytes, i16>> {
        Box::pin(async move {
            let part = self
                .replicas
                .get(OFFSETS_TOPIC, partition)
                .ok_or(ResponseError::NotLeaderOrFollower.code())?;
            let mut out = BytesMut::new();
            let log = part.log();
            let end = log.log_end_offset();
            let mut offset = log.log_start_offset();
            while offset < end {
                let info = log
                    .read(offset, 16 << 20, None, true)
                    .map_err(|e| e.kafka_error_code())?;
                if info.records.is_empty() {
                    break;
                }
                let batches = storage::batch::split_batches(&info.records)
                    .map_err(|e| e.kafka_error_code())?;
                let Some(last) = batches.last() else { break };
                offset = last.header.next_offset();
                out.extend_from_slice(&info.records);
            }
            Ok(out.freeze())
        })
    }
}
