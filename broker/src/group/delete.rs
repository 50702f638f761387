//! Deleting groups and committed offsets: DeleteGroups and OffsetDelete.
//!
//! Kafka concept: an administrator removes a group that no longer has members (its offsets and
//! metadata), or some of a group's committed offsets, e.g. for a topic it stopped reading.
//! Removal is written to `__consumer_offsets` as tombstones (null values), so that a
//! coordinator that loads the partition later, and compaction, forget them too.
//! Kafka class mirrored: `GroupCoordinator.handleDeleteGroups` / `handleDeleteOffsets`,
//! `GroupMetadataManager.cleanupGroupMetadata`, `GroupMetadata.isSubscribedToTopic`.
//!
//! Invariant: only an Empty group is deleted (NON_EMPTY_GROUP otherwise); a group with members
//! loses only offsets of topics none of its members subscribes to (GROUP_SUBSCRIBED_TO_TOPIC).
//! As in Kafka, the answer does not wait for the tombstones' write (a failed write is logged;
//! the group is already gone from this coordinator's memory).

use std::collections::HashSet;

use bytes::{Buf, Bytes};
use common::ErrorCode;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
use tracing::info;

use super::coordinator::{code, GroupCoordinator};
use super::metadata::{Group, GroupState};
use super::placement::partition_for;
use super::{persist, records};

impl GroupCoordinator {
    /// DeleteGroups: each Empty group is removed with its offsets (tombstones written);
    /// a group with members is NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND, one of
    /// another coordinator NOT_COORDINATOR. The empty group id is a valid id here (Kafka
    /// accepts it for DeleteGroups).
    pub async fn delete_groups(
        &self,
        req: DeleteGroupsRequest,
        _version: i16,
    ) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(req.groups_names.len());
        let mut removed: Vec<(String, Group)> = Vec::new();
        for gid in &req.groups_names {
            let id = gid.to_string();
            let c = if !self.owns(&id) {
                code(ErrorCode::NOT_COORDINATOR)
            } else if self.is_loading(&id) {
                code(ErrorCode::COORDINATOR_LOAD_IN_PROGRESS)
            } else {
                let mut groups = self.groups();
                match groups.get(&id).map(|g| g.state) {
                    None => code(ErrorCode::GROUP_ID_NOT_FOUND),
                    Some(GroupState::Empty) => {
                        let g = groups.remove(&id).expect("present");
                        removed.push((id.clone(), g));
                        0
                    }
                    Some(_) => code(ErrorCode::NON_EMPTY_GROUP),
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(gid.clone())
                    .with_error_code(c),
            );
        }
        for (id, g) in removed {
            let mut keys: Vec<Bytes> = g
                .offsets
                .keys()
                .map(|(t, p)| records::offset_key(&id, t, *p))
                .collect();
            // Kafka: a group that only stored offsets (generation 0) never had metadata written.
            if g.generation > 0 {
                keys.push(records::group_key(&id));
            }
            info!(group = %id, offsets = g.offsets.len(), "group deleted");
            self.write_tombstones(&id, keys);
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    /// OffsetDelete as the broker serves it: partitions the metadata cache does not know
    /// (`known` false) are UNKNOWN_TOPIC_OR_PARTITION. An Empty group loses the asked offsets;
    /// a consumer group with members loses those of topics no member subscribes to, the
    /// others are GROUP_SUBSCRIBED_TO_TOPIC; any other group with members is NON_EMPTY_GROUP.
    /// A group error is answered alone, without partitions.
    /// Kafka: `KafkaApis.handleOffsetDeleteRequest`, `GroupCoordinator.handleDeleteOffsets`.
    pub async fn offset_delete_known(
        &self,
        req: OffsetDeleteRequest,
        _version: i16,
        known: impl Fn(&str, i32) -> bool,
    ) -> OffsetDeleteResponse {
        let group_id = req.group_id.to_string();
        let err = |c: i16| OffsetDeleteResponse::default().with_error_code(c);
        if let Err(c) = self.check_group(&group_id) {
            return err(c);
        }
        let mut deleted: Vec<(String, i32)> = Vec::new();
        let topics = {
            let mut groups = self.groups();
            let Some(g) = groups.get_mut(&group_id) else {
                return err(code(ErrorCode::GROUP_ID_NOT_FOUND));
            };
            let subscribed = match g.state {
                GroupState::Empty => HashSet::new(),
                _ if g.protocol_type.as_deref() == Some("consumer") => {
                    subscribed_topics(g).unwrap_or_default()
                }
                _ => return err(code(ErrorCode::NON_EMPTY_GROUP)),
            };
            req.topics
                .iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let c = if !known(&t.name, p.partition_index) {
                                code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION)
                            } else if subscribed.contains(t.name.as_str()) {
                                code(ErrorCode::GROUP_SUBSCRIBED_TO_TOPIC)
                            } else {
                                let key = (t.name.to_string(), p.partition_index);
                                if g.offsets.remove(&key).is_some() {
                                    deleted.push(key);
                                }
                                0
                            };
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(c)
                        })
                        .collect();
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(partitions)
                })
                .collect()
        };
        if !deleted.is_empty() {
            info!(group = %group_id, offsets = deleted.len(), "committed offsets deleted");
            let keys = deleted
                .iter()
                .map(|(t, p)| records::offset_key(&group_id, t, *p))
                .collect();
            self.write_tombstones(&group_id, keys);
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    /// Queues a tombstone for each key to the group's `__consumer_offsets` partition, behind
    /// the group metadata writes already queued (so a group's last metadata cannot land after
    /// its tombstone). Without a log there is nothing to do. Kafka's `cleanupGroupMetadata`
    /// does not wait for this write either; a failure is logged by the writer.
    fn write_tombstones(&self, group_id: &str, keys: Vec<Bytes>) {
        let Some(tx) = &self.store_tx else { return };
        if keys.is_empty() {
            return;
        }
        let partition = partition_for(group_id, self.config.offsets_topic_num_partitions);
        let recs: Vec<(Bytes, Option<Bytes>)> = keys.into_iter().map(|k| (k, None)).collect();
        let _ = tx.send((partition, records::batch(&recs, persist::now_ms())));
    }
}

/// The topics the members of a consumer group subscribe to, from their subscription metadata
/// for the selected protocol (`ConsumerProtocolSubscription`: version, then the topics); `None`
/// when one cannot be read (Kafka then treats no topic as subscribed).
/// Kafka: `GroupMetadata.computeSubscribedTopics`.
fn subscribed_topics(g: &Group) -> Option<HashSet<String>> {
    let protocol = g.protocol.as_deref()?;
    let mut topics = HashSet::new();
    for m in g.members.values() {
        let (_, meta) = m.protocols.iter().find(|(n, _)| n == protocol)?;
        topics.extend(subscription_topics(meta.clone())?);
    }
    Some(topics)
}

/// The topics of a `ConsumerProtocolSubscription` (every version starts with an int16
/// version and the topics as an int32-counted array of int16-length strings).
fn subscription_topics(mut b: Bytes) -> Option<Vec<String>> {
    if b.remaining() < 6 {
        return None;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    let mut out = Vec::with_capacity(n.clamp(0, 1024) as usize);
    for _ in 0..n.max(0) {
        if b.remaining() < 2 {
            return None;
        }
        let len = b.get_i16();
        if len < 0 || b.remaining() < len as usize {
            return None;
        }
        out.push(String::from_utf8(b.split_to(len as usize).to_vec()).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_topics_are_read_from_every_version() {
        // v1: topics ["a", "bc"], then user data (ignored).
        let b = Bytes::from_static(b"\x00\x01\x00\x00\x00\x02\x00\x01a\x00\x02bc\xff\xff\xff\xff");
        assert_eq!(subscription_topics(b), Some(vec!["a".into(), "bc".into()]));
        assert_eq!(
            subscription_topics(Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x05ab")),
            None
        );
        assert_eq!(subscription_topics(Bytes::from_static(b"meta")), None);
    }
}
