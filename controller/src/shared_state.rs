//! The flags and gauges the controller's event loop publishes for the broker's
//! [`crate::ControllerHandle`] (Kafka's controller metrics: `ActiveControllerCount`,
//! `OfflinePartitionsCount`, `ControllerState`, `EventQueueTimeMs`, ...).
//!
//! Kafka concept: the broker reads whether it is the controller, the controller epoch and the
//! gauges without going through the event queue. Here they are atomics in one [`SharedState`]
//! that the event loop writes and the handle reads.
//!
//! Invariant: only the event loop (the controller and `ControllerEventManager::run`) writes
//! them, except `expiring`, which the handle sets to have queued events answered with
//! NotController (Kafka's `clearAndPut`), and `registered`, which the handle clears the moment
//! the session is known to have expired. A leaf apart from the events' states, so both the
//! controller and the event loop can name it without importing each other.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, AtomicU8, Ordering};

use crate::event::ControllerState;

/// Upper bounds (ms) of the EventQueueTimeMs histogram buckets (Prometheus `le` labels).
pub const EVENT_QUEUE_TIME_BUCKETS_MS: [u64; 10] = [1, 5, 10, 25, 50, 100, 250, 1000, 5000, 30000];

/// Flags the event loop publishes for the broker (read without going through the queue).
#[derive(Debug)]
pub struct SharedState {
    /// True while this broker is the active controller.
    pub is_active: AtomicBool,
    /// Last controller epoch this broker saw (-1 = none yet).
    pub controller_epoch: AtomicI32,
    /// Broker id of the active controller as last read from `/controller` (-1 = none).
    pub active_controller_id: AtomicI32,
    /// This broker's current epoch (czxid of its registration), -1 until known.
    pub broker_epoch: AtomicI64,
    /// True while this broker's current ZooKeeper session holds `/brokers/ids/<id>`: set at
    /// start and on re-registration, cleared when the session expires (by the handle, before
    /// `Expire` is queued, so the broker sees it at once).
    pub registered: AtomicBool,
    /// Metrics of the active controller (0 when not active), refreshed after every event:
    /// Kafka's OfflinePartitionsCount, GlobalPartitionCount, PreferredReplicaImbalanceCount.
    pub offline_partitions_count: AtomicI64,
    pub global_partition_count: AtomicI64,
    pub preferred_replica_imbalance_count: AtomicI64,
    /// Kafka's ControllerState gauge: the state of the event being processed, 0 (Idle) between
    /// events.
    pub controller_state: AtomicU8,
    /// EventQueueTimeMs histogram: how long events waited in the queue before processing.
    /// One counter per bucket of [`EVENT_QUEUE_TIME_BUCKETS_MS`] (not cumulative), plus the
    /// count and the sum.
    pub event_queue_time_buckets: [AtomicU64; EVENT_QUEUE_TIME_BUCKETS_MS.len()],
    pub event_queue_time_count: AtomicU64,
    pub event_queue_time_sum_ms: AtomicU64,
    /// Set by `ControllerHandle::expire`: events queued before `Expire` are answered with
    /// NotController instead of processed (Kafka's `clearAndPut`).
    pub expiring: AtomicBool,
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState {
            is_active: AtomicBool::new(false),
            controller_epoch: AtomicI32::new(-1),
            active_controller_id: AtomicI32::new(-1),
            broker_epoch: AtomicI64::new(-1),
            registered: AtomicBool::new(false),
            offline_partitions_count: AtomicI64::new(0),
            global_partition_count: AtomicI64::new(0),
            preferred_replica_imbalance_count: AtomicI64::new(0),
            controller_state: AtomicU8::new(ControllerState::Idle as u8),
            event_queue_time_buckets: Default::default(),
            event_queue_time_count: AtomicU64::new(0),
            event_queue_time_sum_ms: AtomicU64::new(0),
            expiring: AtomicBool::new(false),
        }
    }
}

impl SharedState {
    /// Records how long one event waited in the queue.
    pub(crate) fn observe_queue_time(&self, waited: std::time::Duration) {
        let ms = waited.as_millis() as u64;
        if let Some(i) = EVENT_QUEUE_TIME_BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.event_queue_time_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.event_queue_time_count.fetch_add(1, Ordering::Relaxed);
        self.event_queue_time_sum_ms
            .fetch_add(ms, Ordering::Relaxed);
    }
}
