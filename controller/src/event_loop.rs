//! The controller's single event loop (Kafka's `ControllerEventManager`) and the handle the
//! broker holds on it.
//!
//! Kafka concept: one thread drains one queue; each event runs to completion, so the
//! controller's state needs no lock. Everything else (ZooKeeper watches, broker responses, API
//! handlers) only enqueues.
//!
//! Invariant: on shutdown the queue is drained and every waiting caller is answered with
//! NotController (Kafka's `clearAndPut`), never left hanging.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::controller::KafkaController;
use crate::event::{
    ControlledShutdownError, ControlledShutdownReply, ControllerEvent, EventSender,
};

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
    /// Metrics of the active controller (0 when not active), refreshed after every event:
    /// Kafka's OfflinePartitionsCount, GlobalPartitionCount, PreferredReplicaImbalanceCount.
    pub offline_partitions_count: AtomicI64,
    pub global_partition_count: AtomicI64,
    pub preferred_replica_imbalance_count: AtomicI64,
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
            offline_partitions_count: AtomicI64::new(0),
            global_partition_count: AtomicI64::new(0),
            preferred_replica_imbalance_count: AtomicI64::new(0),
            expiring: AtomicBool::new(false),
        }
    }
}

/// A snapshot of the controller's gauges (Kafka's `KafkaController` metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ControllerMetrics {
    pub active_controller_count: i64,
    pub offline_partitions_count: i64,
    pub global_partition_count: i64,
    pub preferred_replica_imbalance_count: i64,
}

/// The broker's handle on its `KafkaController` (an event sender plus shared read-only flags).
#[derive(Clone)]
pub struct ControllerHandle {
    events: EventSender,
    shared: Arc<SharedState>,
}

impl ControllerHandle {
    /// True while this broker is the active controller.
    pub fn is_active(&self) -> bool {
        self.shared.is_active.load(Ordering::SeqCst)
    }

    /// Epoch of the controller this broker last saw win, if any.
    pub fn controller_epoch(&self) -> Option<i32> {
        let e = self.shared.controller_epoch.load(Ordering::SeqCst);
        (e >= 0).then_some(e)
    }

    /// The active controller's broker id as last read from `/controller`, if any.
    pub fn active_controller_id(&self) -> Option<i32> {
        let id = self.shared.active_controller_id.load(Ordering::SeqCst);
        (id >= 0).then_some(id)
    }

    /// This broker's current epoch as the controller module knows it (-1 until known).
    pub fn broker_epoch(&self) -> i64 {
        self.shared.broker_epoch.load(Ordering::SeqCst)
    }

    /// The ZooKeeper session expired: drop queued events (answering their callers with
    /// NotController) and queue `Expire`, which resigns (Kafka's `clearAndPut(Expire)`).
    pub fn expire(&self) {
        self.shared.expiring.store(true, Ordering::SeqCst);
        self.put(ControllerEvent::Expire);
    }

    /// After [`crate::zk::client::KafkaZkClient::reinitialize`]: re-register this broker and
    /// contest the election again. Returns the new broker epoch.
    pub async fn register_broker_and_reelect(
        &self,
        registration: crate::zk::data::BrokerRegistration,
    ) -> std::result::Result<i64, String> {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::RegisterBrokerAndReelect {
            registration,
            reply,
        });
        rx.await
            .unwrap_or_else(|_| Err("controller event loop stopped".into()))
    }

    /// Kafka's controller metrics as (ActiveControllerCount, OfflinePartitionsCount,
    /// GlobalPartitionCount, PreferredReplicaImbalanceCount); zeros when not active.
    pub fn metrics(&self) -> ControllerMetrics {
        let sh = &self.shared;
        ControllerMetrics {
            active_controller_count: i64::from(self.is_active()),
            offline_partitions_count: sh.offline_partitions_count.load(Ordering::SeqCst),
            global_partition_count: sh.global_partition_count.load(Ordering::SeqCst),
            preferred_replica_imbalance_count: sh
                .preferred_replica_imbalance_count
                .load(Ordering::SeqCst),
        }
    }

    /// Submits an AlterPartition request (the broker's API handler for key 56).
    pub async fn alter_partition(
        &self,
        broker_id: i32,
        broker_epoch: i64,
        version: i16,
        items: Vec<crate::alter_partition::AlterPartitionItem>,
    ) -> crate::alter_partition::AlterPartitionReply {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::AlterPartition(Box::new(
            crate::alter_partition::AlterPartitionRequest {
                broker_id,
                broker_epoch,
                version,
                items,
                reply,
            },
        )));
        rx.await
            .unwrap_or(Err(crate::alter_partition::codes::NOT_CONTROLLER))
    }

    /// True once the event loop has stopped.
    pub fn is_stopped(&self) -> bool {
        self.events.is_closed()
    }

    /// Enqueues an event (for API handlers and tests).
    pub fn put(&self, event: ControllerEvent) {
        if let Err(e) = self.events.send(event) {
            e.0.reject();
        }
    }

    /// Asks the controller to drain `broker_id` before it stops (the ControlledShutdown API).
    /// Returns the partitions the broker still leads; empty means it may stop.
    pub async fn controlled_shutdown(
        &self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> ControlledShutdownReply {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::ControlledShutdown {
            broker_id,
            broker_epoch,
            reply,
        });
        rx.await
            .unwrap_or(Err(ControlledShutdownError::NotController))
    }

    /// Resigns (if active), stops the event loop, its watches and its send tasks.
    pub async fn shutdown(&self) {
        let (done, rx) = oneshot::channel();
        if self.events.send(ControllerEvent::Shutdown { done }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Kafka's `ControllerEventManager`: drains the queue, one event at a time.
pub struct ControllerEventManager;

impl ControllerEventManager {
    /// Creates the queue and its handle; `run` must then be spawned with the receiver.
    pub fn channel() -> (ControllerHandle, mpsc::UnboundedReceiver<ControllerEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = ControllerHandle {
            events: tx,
            shared: Arc::new(SharedState::default()),
        };
        (handle, rx)
    }

    /// The shared flags of a handle (to build the controller with).
    pub fn shared(handle: &ControllerHandle) -> Arc<SharedState> {
        handle.shared.clone()
    }

    /// The raw sender of a handle (watch tasks and per-broker senders enqueue through it).
    pub fn sender(handle: &ControllerHandle) -> EventSender {
        handle.events.clone()
    }

    /// Runs until a `Shutdown` event, then answers whatever is left in the queue.
    pub async fn run(
        mut controller: KafkaController,
        mut rx: mpsc::UnboundedReceiver<ControllerEvent>,
    ) {
        while let Some(event) = rx.recv().await {
            if controller.shared().expiring.load(Ordering::SeqCst)
                && !matches!(
                    event,
                    ControllerEvent::Expire | ControllerEvent::Shutdown { .. }
                )
            {
                event.reject();
                continue;
            }
            let stop = matches!(event, ControllerEvent::Shutdown { .. });
            let span = tracing::info_span!(
                "controller_event",
                event = event.name(),
                controller_epoch = controller.context().epoch
            );
            controller.process(event).instrument(span).await;
            controller.update_metrics();
            if stop {
                break;
            }
        }
        rx.close();
        while let Ok(event) = rx.try_recv() {
            event.reject();
        }
    }
}
