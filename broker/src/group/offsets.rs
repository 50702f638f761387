//! Committed offsets: OffsetCommit and OffsetFetch.
//!
//! Kafka class mirrored: `GroupCoordinator.handleCommitOffsets` / `handleFetchOffsets` and
//! `GroupMetadataManager.storeOffsets` (the write itself is in `persist`).
//!
//! Invariant: a commit carries the member's generation, so a member that missed a rebalance
//! cannot overwrite the offsets of the partitions' new owner; a commit is answered NONE only
//! once stored (in the log when there is one).

use std::collections::{BTreeMap, HashMap};

use tokio::time::Instant;

use common::ErrorCode;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};

use super::coordinator::{code, s, GroupCoordinator};
use super::metadata::{Group, GroupState};
use super::{persist, records};

impl GroupCoordinator {
    /// OffsetCommit as the broker serves it: a partition the metadata cache does not know
    /// (`known` is false: an unknown topic, or a partition beyond the topic's count) is
    /// answered UNKNOWN_TOPIC_OR_PARTITION without reaching the group, the others are
    /// committed by [`Self::offset_commit`]. Kafka: `KafkaApis.handleOffsetCommitRequest`
    /// (its `metadataCache.contains` check comes before the coordinator's).
    pub async fn offset_commit_known(
        &self,
        req: OffsetCommitRequest,
        version: i16,
        known: impl Fn(&str, i32) -> bool,
    ) -> OffsetCommitResponse {
        let mut valid = req.clone();
        for t in valid.topics.iter_mut() {
            t.partitions.retain(|p| known(&t.name, p.partition_index));
        }
        valid.topics.retain(|t| !t.partitions.is_empty());
        let inner = if valid.topics.is_empty() {
            OffsetCommitResponse::default()
        } else {
            self.offset_commit(valid, version).await
        };
        let answered: HashMap<(&str, i32), i16> = inner
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| ((t.name.as_str(), p.partition_index), p.error_code))
            })
            .collect();
        let unknown = code(ErrorCode::UNKNOWN_TOPIC_OR_PARTITION);
        let topics = req
            .topics
            .iter()
            .map(|t| {
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                let c = if known(&t.name, p.partition_index) {
                                    answered
                                        .get(&(t.name.as_str(), p.partition_index))
                                        .copied()
                                        .unwrap_or(unknown)
                                } else {
                                    unknown
                                };
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(c)
                            })
                            .collect(),
                    )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    pub async fn offset_commit(
        &self,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.to_string();
        let all = |c: i16| {
            OffsetCommitResponse::default().with_topics(
                req.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(c)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
        };
        if let Err(c) = self.check_group(&group_id) {
            return all(c);
        }
        let member_id = req.member_id.to_string();
        let generation = req.generation_id_or_member_epoch;
        // OffsetCommit v7 adds `group.instance.id` (KIP-345).
        let instance = req.group_instance_id.as_deref().filter(|_| version >= 7);
        if let Err(c) = self.validate_offset_commit(&group_id, &member_id, instance, generation) {
            return all(c);
        }
        // Kafka: `offset.metadata.max.bytes` (4096): a too-long metadata string fails only
        // its own partition.
        let max_metadata = self.config.offset_metadata_max_bytes;
        let too_large =
            |p: &kafka_protocol::messages::offset_commit_request::OffsetCommitRequestPartition| {
                p.committed_metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > max_metadata)
            };
        let mut resp = all(0);
        for (t, rt) in req.topics.iter().zip(resp.topics.iter_mut()) {
            for (p, rp) in t.partitions.iter().zip(rt.partitions.iter_mut()) {
                if too_large(p) {
                    rp.error_code = code(ErrorCode::OFFSET_METADATA_TOO_LARGE);
                }
            }
        }
        let now_ms = persist::now_ms();
        let commits: Vec<(String, i32, records::OffsetValue)> = req
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().filter(|p| !too_large(p)).map(move |p| {
                    let value = records::OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: p
                            .committed_metadata
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        commit_timestamp: now_ms,
                    };
                    (t.name.to_string(), p.partition_index, value)
                })
            })
            .collect();
        if let Err(c) = self.store_offsets(&group_id, &commits).await {
            for rt in resp.topics.iter_mut() {
                for rp in rt.partitions.iter_mut().filter(|rp| rp.error_code == 0) {
                    rp.error_code = c;
                }
            }
            return resp;
        }
        let mut groups = self.groups();
        if let Some(g) = groups.get_mut(&group_id) {
            for (topic, partition, v) in commits {
                g.offsets.insert(
                    (topic, partition),
                    (v.offset, v.leader_epoch, Some(v.metadata)),
                );
            }
        }
        resp
    }

    /// Kafka: `GroupCoordinator.handleCommitOffsets` and `validateOffsetCommit`.
    fn validate_offset_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation: i32,
    ) -> Result<(), i16> {
        let mut groups = self.groups();
        // Kafka: GroupCoordinator.handleCommitOffsets. An unknown group is created only for a
        // "simple" commit (generation -1) from a consumer that assigns partitions itself.
        if !groups.contains_key(group_id) && generation >= 0 {
            return Err(code(ErrorCode::ILLEGAL_GENERATION));
        }
        let g = groups
            .entry(group_id.to_string())
            .or_insert_with(Group::new);
        // Kafka: GroupCoordinator.validateOffsetCommit.
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            // A replaced static member's commit is FENCED_INSTANCE_ID.
            g.validate_member(member_id, instance)?;
            if generation != g.generation {
                return Err(code(ErrorCode::ILLEGAL_GENERATION));
            }
            // The member got this generation's JoinGroup answer but not its assignment yet.
            // (PreparingRebalance is allowed: a consumer commits what it consumed before it
            // rejoins, in its partitions-revoked callback.)
            if g.state == GroupState::CompletingRebalance {
                return Err(code(ErrorCode::REBALANCE_IN_PROGRESS));
            }
            if let Some(m) = g.members.get_mut(member_id) {
                m.last_heartbeat = Instant::now();
            }
        } else if g.state != GroupState::Empty {
            // A non-empty group takes commits from its members only.
            return Err(code(ErrorCode::UNKNOWN_MEMBER_ID));
        }
        Ok(())
    }

    /// OffsetFetch. v0-7 ask about one group (`group_id`, `topics`, null = every committed
    /// partition from v2); v8 batches several groups in `groups`, each answered with its own
    /// error. A partition without a committed offset answers offset -1 and empty metadata.
    /// Kafka: `KafkaApis.handleOffsetFetchRequest`, `GroupCoordinator.handleFetchOffsets`.
    pub async fn offset_fetch(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        let mut r = OffsetFetchResponse::default();
        if version >= 8 {
            r.groups = req
                .groups
                .iter()
                .map(|rg| {
                    let wanted = rg.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let mut out =
                        OffsetFetchResponseGroup::default().with_group_id(rg.group_id.clone());
                    match self.fetch_offsets(&rg.group_id, wanted) {
                        Ok(topics) => {
                            out.topics = topics
                                .into_iter()
                                .map(|(t, ps)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(s(&t)))
                                        .with_partitions(
                                            ps.into_iter()
                                                .map(|(p, off, epoch, meta)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(off)
                                                        .with_committed_leader_epoch(epoch)
                                                        .with_metadata(Some(s(&meta)))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect()
                        }
                        Err(c) => out.error_code = c,
                    }
                    out
                })
                .collect();
            return r;
        }
        let wanted: Option<Vec<(String, Vec<i32>)>> = req.topics.as_ref().map(|ts| {
            ts.iter()
                .map(|t| (t.name.to_string(), t.partition_indexes.clone()))
                .collect()
        });
        let (topics, err) = match self.fetch_offsets(&req.group_id, wanted.clone()) {
            Ok(t) => (t, 0),
            Err(c) if version >= 2 => (Vec::new(), c),
            Err(c) => {
                // v0-1 have no top-level error: every asked partition carries it.
                let t = wanted
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, ps)| {
                        (
                            t,
                            ps.into_iter().map(|p| (p, -1, -1, String::new())).collect(),
                        )
                    })
                    .collect();
                (t, c)
            }
        };
        if version >= 2 {
            r.error_code = err;
        }
        r.topics = topics
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(s(&t)))
                    .with_partitions(
                        ps.into_iter()
                            .map(|(p, off, epoch, meta)| {
                                let mut x = OffsetFetchResponsePartition::default()
                                    .with_partition_index(p)
                                    .with_committed_offset(off)
                                    .with_metadata(Some(s(&meta)));
                                if version >= 5 {
                                    x.committed_leader_epoch = epoch;
                                }
                                if version < 2 {
                                    x.error_code = err;
                                }
                                x
                            })
                            .collect(),
                    )
            })
            .collect();
        r
    }

    /// The committed offsets of `group_id`: for the asked partitions, or (None) for every
    /// partition with a commit. Each entry is (partition, offset, leader epoch, metadata).
    #[allow(clippy::type_complexity)]
    fn fetch_offsets(
        &self,
        group_id: &str,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, i64, i32, String)>)>, i16> {
        self.check_group(group_id)?;
        let groups = self.groups();
        let empty = HashMap::new();
        let offsets = groups.get(group_id).map_or(&empty, |g| &g.offsets);
        let wanted = wanted.unwrap_or_else(|| {
            let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for (t, p) in offsets.keys() {
                by_topic.entry(t.clone()).or_default().push(*p);
            }
            by_topic
                .into_iter()
                .map(|(t, mut ps)| {
                    ps.sort_unstable();
                    (t, ps)
                })
                .collect()
        });
        Ok(wanted
            .into_iter()
            .map(|(t, ps)| {
                let parts = ps
                    .into_iter()
                    .map(|p| match offsets.get(&(t.clone(), p)) {
                        Some((off, epoch, meta)) => {
                            (p, *off, *epoch, meta.clone().unwrap_or_default())
                        }
                        None => (p, -1, -1, String::new()),
                    })
                    .collect();
                (t, parts)
            })
            .collect())
    }
}
