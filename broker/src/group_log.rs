//! `__consumer_offsets` as the group coordinator's log: appends wait until the batch is
//! committed (Kafka writes offsets with acks=all), reads return the partition from its start.
//!
//! Kafka class mirrored: the `ReplicaManager.appendRecords` call in `GroupMetadataManager`
//! (`storeOffsets`, `storeGroup`) and its loading of a partition (`doLoadGroupsAndOffsets`);
//! [`leadership_callback`] is the `onLeadershipChange` that tells the coordinator which
//! `__consumer_offsets` partitions this broker leads.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::ErrorCode;

use crate::group::placement::OFFSETS_TOPIC;
use crate::group::records::{BoxFuture, GroupLog};
use crate::group::GroupCoordinator;
use crate::replica_manager::{LeadershipCallback, ReplicaManager};

pub struct OffsetsTopicLog {
    pub replicas: Arc<ReplicaManager>,
    pub timeout: Duration,
}

impl GroupLog for OffsetsTopicLog {
    fn append(&self, partition: i32, batch: Bytes) -> BoxFuture<'_, Result<(), i16>> {
        Box::pin(async move {
            let append = async {
                let part = self.replicas.leader_partition(OFFSETS_TOPIC, partition)?;
                let (info, epoch) = self.replicas.append_as_leader(&part, batch, -1)?;
                self.replicas
                    .wait_for_high_watermark(&part, info.last_offset + 1, epoch, self.timeout)
                    .await
            };
            append.await.map_err(|e| e.code())
        })
    }

    fn read(&self, partition: i32) -> BoxFuture<'_, Result<Bytes, i16>> {
        Box::pin(async move {
            let part = self
                .replicas
                .get(OFFSETS_TOPIC, partition)
                .ok_or(ErrorCode::NOT_LEADER_OR_FOLLOWER.code())?;
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

/// The replica manager's leadership callback for the group coordinator (Kafka's
/// `onLeadershipChange` in `KafkaApis.handleLeaderAndIsrRequest`): this broker coordinates the
/// groups of the `__consumer_offsets` partitions it leads. The coordinator is held weakly (it
/// holds the replica manager through its log).
pub fn leadership_callback(groups: &Arc<GroupCoordinator>) -> LeadershipCallback {
    let groups = Arc::downgrade(groups);
    Box::new(move |elected, resigned| {
        let Some(g) = groups.upgrade() else {
            return;
        };
        for (_, p) in elected.iter().filter(|(t, _)| t == OFFSETS_TOPIC) {
            g.on_elected(*p);
        }
        for (_, p) in resigned.iter().filter(|(t, _)| t == OFFSETS_TOPIC) {
            g.on_resigned(*p);
        }
    })
}
