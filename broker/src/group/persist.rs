//! Writing the coordinator's state to `__consumer_offsets` and loading it back.
//!
//! Kafka concept: the coordinator of a group is the leader of the group's `__consumer_offsets`
//! partition, and that partition is the group's durable state. A commit is answered only once
//! its records are in the log; group metadata (generation, protocol, leader, members and their
//! assignments) is written when a group becomes Stable or Empty. A broker elected leader of
//! the partition replays it, newest record per key winning, before it serves the groups;
//! until then they answer COORDINATOR_LOAD_IN_PROGRESS.
//! Kafka class mirrored: `GroupMetadataManager` (`storeOffsets`, `storeGroup`,
//! `scheduleLoadGroupAndOffsets`, `doLoadGroupsAndOffsets`).
//!
//! Invariant: an OffsetCommit answered with NONE is in the log (as the log's `append` promises).
//! Simplifications: group metadata is written in the background, in order, without holding
//! back the SyncGroup answers (Kafka waits for that write and fails the SyncGroup if it
//! fails): a lost write only costs a rebalance after a coordinator move, never offsets.
//! Offsets never expire (`offsets.retention.minutes` is not enforced) and transactional
//! offset commits are not supported.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use super::records::{self, GroupLog, GroupValue, MemberValue, OffsetValue, Record};
use super::{partition_for, Group, GroupCoordinator, GroupState, Member};

/// Wall-clock milliseconds, for commit timestamps.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Starts the task that appends group metadata records in the order they were queued.
pub(super) fn spawn_group_writer(
    broker_id: i32,
    log: Arc<dyn GroupLog>,
) -> mpsc::UnboundedSender<(i32, Bytes)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(i32, Bytes)>();
    tokio::spawn(async move {
        while let Some((partition, batch)) = rx.recv().await {
            if let Err(error_code) = log.append(partition, batch).await {
                warn!(
                    broker_id,
                    partition, error_code, "failed to write group metadata to __consumer_offsets"
                );
            }
        }
    });
    tx
}

/// Kafka's mapping of a failed `__consumer_offsets` append to the error a committer sees
/// (`GroupMetadataManager.storeOffsets`).
fn commit_error(log_error: i16) -> i16 {
    use ResponseError as E;
    match ResponseError::try_from_code(log_error) {
        Some(
            E::UnknownTopicOrPartition | E::NotEnoughReplicas | E::NotEnoughReplicasAfterAppend,
        ) => E::CoordinatorNotAvailable.code(),
        Some(E::NotLeaderOrFollower | E::KafkaStorageError) => E::NotCoordinator.code(),
        Some(E::MessageTooLarge | E::RecordListTooLarge | E::InvalidFetchSize) => {
            E::InvalidCommitOffsetSize.code()
        }
        _ => log_error,
    }
}

impl GroupCoordinator {
    /// Appends the commits' records; `Ok` at once without a log.
    pub(super) async fn store_offsets(
        &self,
        group_id: &str,
        commits: &[(String, i32, OffsetValue)],
    ) -> Result<(), i16> {
        let Some(log) = &self.log else { return Ok(()) };
        if commits.is_empty() {
            return Ok(());
        }
        let recs: Vec<(Bytes, Option<Bytes>)> = commits
            .iter()
            .map(|(t, p, v)| {
                (
                    records::offset_key(group_id, t, *p),
                    Some(records::offset_value(v)),
                )
            })
            .collect();
        let partition = partition_for(group_id, self.config.offsets_topic_num_partitions);
        log.append(partition, records::batch(&recs, now_ms()))
            .await
            .map_err(commit_error)
    }

    /// Queues the group's metadata when it reached a Stable or Empty generation not yet
    /// written (Kafka writes at those two points: `storeGroup`).
    pub(super) fn maybe_store_group(&self, group_id: &str, g: &mut Group) {
        let Some(tx) = &self.store_tx else { return };
        if !matches!(g.state, GroupState::Stable | GroupState::Empty) || g.generation == 0 {
            return;
        }
        if g.stored == Some((g.generation, g.state)) {
            return;
        }
        g.stored = Some((g.generation, g.state));
        let protocol = g.protocol.clone();
        let value = GroupValue {
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            generation: g.generation,
            protocol: protocol.clone(),
            leader: g.leader.clone(),
            current_state_timestamp: now_ms(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout: m.rebalance_timeout.as_millis() as i32,
                    session_timeout: m.session_timeout.as_millis() as i32,
                    subscription: m
                        .protocols
                        .iter()
                        .find(|(n, _)| Some(n) == protocol.as_ref())
                        .map(|(_, md)| md.clone())
                        .unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        let partition = partition_for(group_id, self.config.offsets_topic_num_partitions);
        let batch = records::batch(
            &[(
                records::group_key(group_id),
                Some(records::group_value(&value)),
            )],
            now_ms(),
        );
        let _ = tx.send((partition, batch));
    }

    /// After `on_elected`: replay the partition (with a log), answering
    /// COORDINATOR_LOAD_IN_PROGRESS for its groups meanwhile.
    pub(super) fn start_load(&self, partition: i32) {
        let Some(log) = self.log.clone() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            warn!(
                broker_id = self.broker_id,
                partition, "no runtime to load __consumer_offsets partition; serving it empty"
            );
            return;
        };
        let token = self
            .next_load
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(partition, token);
        let me = self.me.clone();
        rt.spawn(async move {
            let started = Instant::now();
            loop {
                let result = log.read(partition).await;
                let Some(gc) = me.upgrade() else { return };
                if gc.load_token(partition) != Some(token) {
                    return; // resigned or re-elected meanwhile
                }
                match result {
                    Ok(bytes) => {
                        gc.finish_load(partition, token, &bytes, started);
                        return;
                    }
                    Err(error_code) => {
                        warn!(
                            broker_id = gc.broker_id,
                            partition,
                            error_code,
                            "reading __consumer_offsets partition failed; retrying in 1 s"
                        );
                    }
                }
                drop(gc);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    fn load_token(&self, partition: i32) -> Option<u64> {
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }

    /// Rebuilds the partition's groups from its records (Kafka: `doLoadGroupsAndOffsets`).
    fn finish_load(&self, partition: i32, token: u64, bytes: &[u8], started: Instant) {
        let (recs, skipped) = records::decode_batches(bytes);
        let n = self.config.offsets_topic_num_partitions;
        let mut loaded: HashMap<String, Group> = HashMap::new();
        let mut offsets_loaded = 0usize;
        for rec in recs {
            match rec {
                Record::Offset(o) => {
                    let g = loaded.entry(o.group).or_insert_with(Group::new);
                    match o.value {
                        Some(v) => {
                            g.offsets.insert(
                                (o.topic, o.partition),
                                (v.offset, v.leader_epoch, Some(v.metadata)),
                            );
                        }
                        None => {
                            g.offsets.remove(&(o.topic, o.partition));
                        }
                    }
                }
                Record::Group(id, Some(v)) => {
                    let g = loaded.entry(id).or_insert_with(Group::new);
                    apply_group_value(g, v);
                }
                Record::Group(id, None) => {
                    loaded.remove(&id);
                }
            }
        }
        let mut groups = self.groups();
        // Check again under the groups lock: a resignation clears groups under it too.
        if self.load_token(partition) != Some(token) {
            return;
        }
        let count = loaded.len();
        for (id, g) in loaded {
            if partition_for(&id, n) != partition {
                continue;
            }
            offsets_loaded += g.offsets.len();
            groups.insert(id, g);
        }
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&partition);
        info!(
            broker_id = self.broker_id,
            partition,
            groups = count,
            offsets = offsets_loaded,
            skipped_records = skipped,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded groups and offsets from __consumer_offsets partition"
        );
    }
}

/// A loaded group is Stable with its members (who keep heartbeating as before) or Empty,
/// as Kafka's `GroupMetadata.loadGroup` rebuilds it.
fn apply_group_value(g: &mut Group, v: GroupValue) {
    let now = Instant::now();
    g.generation = v.generation;
    g.protocol_type = Some(v.protocol_type.clone()).filter(|t| !t.is_empty());
    g.protocol = v.protocol.clone();
    g.leader = v.leader;
    g.members = v
        .members
        .into_iter()
        .map(|m| {
            let member = Member {
                client_id: m.client_id,
                client_host: m.client_host,
                group_instance_id: m.group_instance_id,
                session_timeout: Duration::from_millis(m.session_timeout.max(0) as u64),
                rebalance_timeout: Duration::from_millis(m.rebalance_timeout.max(0) as u64),
                protocol_type: v.protocol_type.clone(),
                protocols: vec![(v.protocol.clone().unwrap_or_default(), m.subscription)],
                assignment: m.assignment,
                last_heartbeat: now,
                join: None,
                sync: None,
            };
            (m.member_id, member)
        })
        .collect();
    g.state = if g.members.is_empty() {
        GroupState::Empty
    } else {
        GroupState::Stable
    };
    g.stored = Some((g.generation, g.state));
}
