//! The controller's single event loop (Kafka's `ControllerEventManager`) and the handle the
//! broker holds on it.
//!
//! Kafka concept: one thread drains one queue; each event runs to completion, so the
//! controller's state needs no lock. Everything else (ZooKeeper watches, broker responses, API
//! handlers) only enqueues.
//!
//! Invariant: on shutdown the queue is drained and every waiting caller is answered with
//! NotController (Kafka's `clearAndPut`), never left hanging.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::Instrument;

use crate::controller::KafkaController;
use crate::event::{
    event_queue, AlterReassignmentsReply, ControlledShutdownError, ControlledShutdownReply,
    ControllerEvent, ControllerState, ElectLeadersResults, ElectionTrigger, ElectionType,
    EventReceiver, EventSender, ListReassignmentsReply,
};
use crate::shared_state::{SharedState, EVENT_QUEUE_TIME_BUCKETS_MS};
use crate::zk::data::TopicPartition;

/// A snapshot of the controller's gauges (Kafka's `KafkaController` and
/// `ControllerEventManager` metrics).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControllerMetrics {
    pub active_controller_count: i64,
    pub offline_partitions_count: i64,
    pub global_partition_count: i64,
    pub preferred_replica_imbalance_count: i64,
    /// Kafka's ControllerState byte (0 = Idle).
    pub controller_state: u8,
    /// Events waiting in the queue.
    pub event_queue_size: i64,
    /// EventQueueTimeMs histogram: cumulative counts per bucket of
    /// [`EVENT_QUEUE_TIME_BUCKETS_MS`], then count and sum (ms).
    pub event_queue_time_cumulative: Vec<(u64, u64)>,
    pub event_queue_time_count: u64,
    pub event_queue_time_sum_ms: u64,
    /// The controller epoch this broker last saw (-1 = none yet).
    pub controller_epoch: i32,
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

    /// True while this broker's current ZooKeeper session holds its `/brokers/ids/<id>`
    /// registration (false from a session expiry until the re-registration). A leader that is
    /// not registered keeps serving but does not expand ISRs.
    pub fn is_registered(&self) -> bool {
        self.shared.registered.load(Ordering::SeqCst)
    }

    /// This broker's current epoch as the controller module knows it (-1 until known).
    pub fn broker_epoch(&self) -> i64 {
        self.shared.broker_epoch.load(Ordering::SeqCst)
    }

    /// The ZooKeeper session expired: drop queued events (answering their callers with
    /// NotController) and queue `Expire`, which resigns (Kafka's `clearAndPut(Expire)`).
    pub fn expire(&self) {
        self.shared.registered.store(false, Ordering::SeqCst);
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
        let mut running = 0;
        let event_queue_time_cumulative = EVENT_QUEUE_TIME_BUCKETS_MS
            .iter()
            .zip(sh.event_queue_time_buckets.iter())
            .map(|(le, n)| {
                running += n.load(Ordering::Relaxed);
                (*le, running)
            })
            .collect();
        ControllerMetrics {
            active_controller_count: i64::from(self.is_active()),
            offline_partitions_count: sh.offline_partitions_count.load(Ordering::SeqCst),
            global_partition_count: sh.global_partition_count.load(Ordering::SeqCst),
            preferred_replica_imbalance_count: sh
                .preferred_replica_imbalance_count
                .load(Ordering::SeqCst),
            controller_state: sh.controller_state.load(Ordering::SeqCst),
            event_queue_size: self.events.queue_size(),
            event_queue_time_cumulative,
            event_queue_time_count: sh.event_queue_time_count.load(Ordering::Relaxed),
            event_queue_time_sum_ms: sh.event_queue_time_sum_ms.load(Ordering::Relaxed),
            controller_epoch: sh.controller_epoch.load(Ordering::SeqCst),
        }
    }

    /// The ElectLeaders API (key 43): elects leaders for `partitions` on the active controller.
    /// Answers NOT_CONTROLLER per partition elsewhere.
    pub async fn elect_leaders(
        &self,
        partitions: Vec<TopicPartition>,
        election_type: ElectionType,
    ) -> ElectLeadersResults {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::ReplicaLeaderElection {
            partitions: Some(partitions.clone()),
            election_type,
            trigger: ElectionTrigger::AdminClient,
            reply: Some(reply),
        });
        rx.await
            .unwrap_or_else(|_| crate::event::not_controller_results(partitions))
    }

    /// The AlterPartitionReassignments API (key 45): starts (target given) or cancels
    /// (`None`) reassignments.
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: BTreeMap<TopicPartition, Option<Vec<i32>>>,
    ) -> AlterReassignmentsReply {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::ApiPartitionReassignment {
            reassignments,
            reply,
        });
        rx.await.unwrap_or(Err(crate::error::codes::NOT_CONTROLLER))
    }

    /// The ListPartitionReassignments API (key 46); `None` lists every reassignment in flight.
    pub async fn list_partition_reassignments(
        &self,
        partitions: Option<Vec<TopicPartition>>,
    ) -> ListReassignmentsReply {
        let (reply, rx) = oneshot::channel();
        self.put(ControllerEvent::ListPartitionReassignments { partitions, reply });
        rx.await.unwrap_or(Err(crate::error::codes::NOT_CONTROLLER))
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
            e.reject();
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
    pub fn channel() -> (ControllerHandle, EventReceiver) {
        let (tx, rx) = event_queue();
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
    pub async fn run(mut controller: KafkaController, mut rx: EventReceiver) {
        while let Some(queued) = rx.recv().await {
            let event = queued.event;
            controller
                .shared()
                .observe_queue_time(queued.enqueued_at.elapsed());
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
            let shared = controller.shared_arc();
            shared
                .controller_state
                .store(event.state() as u8, Ordering::SeqCst);
            controller.process(event).instrument(span).await;
            shared
                .controller_state
                .store(ControllerState::Idle as u8, Ordering::SeqCst);
            controller.update_metrics();
            if stop {
                break;
            }
        }
        rx.close();
        while let Some(queued) = rx.try_recv() {
            queued.event.reject();
        }
    }
}
