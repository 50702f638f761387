//! The group coordinator's state and settings: what every part of `group/` reads.
//!
//! Kafka class mirrored: the fields of `kafka.coordinator.group.GroupCoordinator` and its
//! `GroupConfig`. The coordinator's methods live beside the concept they serve (`mod.rs`:
//! leadership and loading; `rebalance.rs`, `offsets.rs`, `metadata.rs`, `timers.rs`,
//! `persist.rs`); this file only declares the state they share, so that none of them has to
//! import the module that declares all of them.
//!
//! Invariant: the groups map is the only place a group's state lives; a partition in
//! `loading` answers COORDINATOR_LOAD_IN_PROGRESS for its groups until its load completes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::ErrorCode;
use kafka_protocol::protocol::StrBytes;

use super::metadata::Group;
use super::records;

/// Group settings with Kafka's broker defaults.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub initial_rebalance_delay_ms: i32,
    /// `offsets.topic.num.partitions` (50).
    pub offsets_topic_num_partitions: i32,
    /// `group.max.size` (2147483647): JoinGroup beyond it is GROUP_MAX_SIZE_REACHED.
    pub max_size: i32,
    /// `offset.metadata.max.bytes` (4096): a longer commit metadata string is
    /// OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3000,
            offsets_topic_num_partitions: 50,
            max_size: i32::MAX,
            offset_metadata_max_bytes: 4096,
        }
    }
}

impl GroupConfig {
    /// The broker's `group.*` and `offset*` settings (Kafka's `GroupConfig` and `OffsetConfig`).
    pub fn from_broker(c: &crate::config::BrokerConfig) -> Self {
        GroupConfig {
            min_session_timeout_ms: c.group_min_session_timeout_ms,
            max_session_timeout_ms: c.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: c.group_initial_rebalance_delay_ms,
            offsets_topic_num_partitions: c.offsets_topic_num_partitions,
            max_size: c.group_max_size,
            offset_metadata_max_bytes: c.offset_metadata_max_bytes,
        }
    }
}

/// Kafka's `GroupCoordinator`.
pub struct GroupCoordinator {
    pub(super) broker_id: i32,
    pub(super) config: GroupConfig,
    pub(super) groups: Mutex<HashMap<String, Group>>,
    /// `__consumer_offsets` partitions this broker leads (groups it coordinates).
    pub(super) owned: Mutex<HashSet<i32>>,
    /// Partitions being loaded from the log since `on_elected`, with the load's token (a
    /// resignation or a newer election invalidates an older load). Their groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS.
    pub(super) loading: Mutex<HashMap<i32, u64>>,
    /// Where offsets and group metadata are written (`None`: in memory only).
    pub(super) log: Option<Arc<dyn records::GroupLog>>,
    /// Group metadata writes, in the order the state changes happened, to one writer task.
    pub(super) store_tx: Option<tokio::sync::mpsc::UnboundedSender<(i32, Bytes)>>,
    /// Hands out load tokens.
    pub(super) next_load: std::sync::atomic::AtomicU64,
    /// Ourselves, for the tasks we spawn (loads).
    pub(super) me: std::sync::Weak<GroupCoordinator>,
    /// Wakes the timer task when a handler may have created an earlier deadline (a new
    /// rebalance, a new member session); the task otherwise sleeps until the next deadline.
    pub(super) wake: Arc<tokio::sync::Notify>,
    /// How many times the timer task ran (tests check that it does not poll).
    pub(super) timer_runs: std::sync::atomic::AtomicU64,
}

impl GroupCoordinator {
    /// `group.initial.rebalance.delay.ms` as a duration.
    pub(super) fn initial_delay(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.initial_rebalance_delay_ms.max(0) as u64)
    }
}

pub(super) fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

pub(super) fn code(e: ErrorCode) -> i16 {
    e.code()
}
