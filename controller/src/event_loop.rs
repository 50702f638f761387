//! The controller's single event loop (Kafka's `ControllerEventManager`) and the handle the
//! broker holds on it.
//!
//! Kafka concept: one thread drains one queue; each event runs to completion, so the
//! controller's state needs no lock. Everything else (ZooKeeper watches, broker responses, API
//! handlers) only enqueues.
//!
//! Invariant: on shutdown the queue is drained and every waiting caller is answered with
//! NotController (Kafka's `clearAndPut`), never left hanging.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
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
}

impl Default for SharedState {
    fn default() -> Self {
        SharedState {
            is_active: AtomicBool::new(false),
            controller_epoch: AtomicI32::new(-1),
            active_controller_id: AtomicI32::new(-1),
        }
    }
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
            let stop = matches!(event, ControllerEvent::Shutdown { .. });
            let span = tracing::info_span!(
                "controller_event",
                event = event.name(),
                controller_epoch = controller.context().epoch
            );
            controller.process(event).instrument(span).await;
            if stop {
                break;
            }
        }
        rx.close();
        while let Ok(event) = rx.try_recv() {
            match event {
                ControllerEvent::Shutdown { done } => {
                    let _ = done.send(());
                }
                other => other.reject(),
            }
        }
    }
}
