//! What the controller's state machines share: the context, the ZooKeeper client, the request
//! batch and the config (the `KafkaController` fields that Kafka passes to the constructors of
//! `ZkPartitionStateMachine`, `ZkReplicaStateMachine` and `TopicDeletionManager`).
//!
//! Kafka concept: the state machines and the managers are separate classes, but they all act on
//! the one `ControllerContext`, write through the one `KafkaZkClient` and add to the one
//! `ControllerBrokerRequestBatch`. Here [`ControllerCore`] holds those, owned by
//! [`crate::controller::KafkaController`]; a machine is a short-lived value that borrows it
//! (`PartitionStateMachine::new(&mut core)`), so nothing holds a pointer back to the controller.
//!
//! Invariant: every leader-and-ISR write that ZooKeeper accepted reaches the context through
//! `ControllerCore::apply_isr_write`, which sets the new partition epoch (the znode's
//! version) and logs the change, whoever made it (a new partition's first state, an election,
//! a replica going offline, AlterPartition, a reassignment's leader epoch bump).
//!
//! Simplification: the watches of the active controller are kept here by znode path, so that a
//! machine can re-arm the watch of the znode it just read (Kafka registers handler objects with
//! its `ZooKeeperClient` instead).

use std::collections::HashMap;

use tokio::task::JoinHandle;
use tracing::info;

use crate::channel::{ControllerChannel, RequestBatch};
use crate::context::{ControllerContext, ReplicaAssignment};
use crate::error::Result;
use crate::event::{ControllerEvent, EventSender};
use crate::zk::backend::{Watch, WatchKind};
use crate::zk::client::KafkaZkClient;
use crate::zk::data::{BrokerInfo, LeaderIsrAndControllerEpoch, TopicPartition};
use crate::ControllerConfig;

/// The active controller's state and the means to act on it, shared by the state machines.
pub struct ControllerCore {
    /// This broker's controller settings; fixed for the controller's life.
    pub(crate) config: ControllerConfig,
    /// ZooKeeper I/O; every controller write in it is fenced by `ctx.epoch_zk_version`.
    pub(crate) zk: KafkaZkClient,
    /// Everything the active controller knows; reset on resignation.
    pub(crate) ctx: ControllerContext,
    /// Requests collected by the current state-machine call.
    pub(crate) batch: RequestBatch,
    /// Per-broker queues (real sockets, or a recorder in tests).
    channel: Box<dyn ControllerChannel>,
    /// Our own queue, for watch tasks and timers.
    events: EventSender,
    /// Watch tasks of the active controller, by path; aborted on resignation.
    watches: HashMap<String, JoinHandle<()>>,
}

/// Why an ISR write was made: picks the `state_change` line `ControllerCore::apply_isr_write`
/// logs (an election is logged by the partition state change that follows it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum IsrWrite {
    /// A leader election, or a new partition's first leader and ISR (the `state` znode
    /// created); logged as the partition state change that follows (PartitionStateMachine).
    Election,
    /// `broker_id` left the ISR as its replica went offline (ReplicaStateMachine).
    ReplicaRemoved { broker_id: i32 },
    /// A leader's AlterPartition request.
    AlterPartition,
    /// Leader and ISR unchanged, leader epoch +1 (a reassignment); the caller logs what it sent.
    LeaderEpochBump,
}

impl ControllerCore {
    pub fn new(
        zk: KafkaZkClient,
        config: ControllerConfig,
        channel: Box<dyn ControllerChannel>,
        events: EventSender,
    ) -> Self {
        ControllerCore {
            config,
            zk,
            ctx: ControllerContext::default(),
            batch: RequestBatch::default(),
            channel,
            events,
            watches: HashMap::new(),
        }
    }

    /// The full assignment of `tp` (empty if unknown).
    pub(crate) fn assignment(&self, tp: &TopicPartition) -> ReplicaAssignment {
        self.ctx
            .assignments
            .get(&tp.topic)
            .and_then(|m| m.get(&tp.partition))
            .cloned()
            .unwrap_or_default()
    }

    /// Records an accepted ISR write (ZooKeeper answered with the znode's new `zk_version`):
    /// the partition epoch becomes that version, the context takes the new state, and the
    /// change is logged as `why` says. Returns the state as stored.
    pub(crate) fn apply_isr_write(
        &mut self,
        tp: &TopicPartition,
        mut state: LeaderIsrAndControllerEpoch,
        zk_version: i32,
        why: IsrWrite,
    ) -> LeaderIsrAndControllerEpoch {
        state.leader_and_isr.partition_epoch = zk_version;
        let l = &state.leader_and_isr;
        match why {
            IsrWrite::Election | IsrWrite::LeaderEpochBump => {}
            IsrWrite::ReplicaRemoved { broker_id } => info!(
                target: "state_change",
                controller_epoch = self.ctx.epoch,
                topic = %tp.topic,
                partition = tp.partition,
                broker_id,
                leader = l.leader,
                isr = ?l.isr,
                leader_epoch = l.leader_epoch,
                "removed replica from ISR"
            ),
            IsrWrite::AlterPartition => info!(
                target: "state_change",
                controller_epoch = self.ctx.epoch,
                topic = %tp.topic,
                partition = tp.partition,
                leader = l.leader,
                isr = ?l.isr,
                leader_epoch = l.leader_epoch,
                zk_version,
                "ISR changed by AlterPartition"
            ),
        }
        self.ctx.leadership.insert(tp.clone(), state.clone());
        state
    }

    /// Queues the collected batch on the per-broker channels.
    pub(crate) fn send_batch(&mut self) {
        let listener = self.config.inter_broker_listener_name.clone();
        self.batch.send(
            &self.ctx,
            self.config.broker_id,
            &listener,
            self.channel.as_mut(),
        );
    }

    /// UpdateMetadata for `partitions` to `brokers` as its own batch (Kafka's
    /// `sendUpdateMetadataRequest`).
    pub(crate) fn send_update_metadata(
        &mut self,
        brokers: &[i32],
        partitions: &[TopicPartition],
    ) -> Result<()> {
        self.batch.new_batch()?;
        self.batch.add_update_metadata(brokers, partitions);
        self.send_batch();
        Ok(())
    }

    /// UpdateMetadata for `partitions` to every live (or shutting down) broker.
    pub(crate) fn send_update_metadata_to_all(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<()> {
        let live: Vec<i32> = self
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.send_update_metadata(&live, partitions)
    }

    /// Opens a send queue to `broker` (or replaces its endpoints).
    pub(crate) fn add_broker(&mut self, broker: &BrokerInfo) {
        self.channel.add_broker(broker);
    }

    /// Closes the send queue of `broker_id`.
    pub(crate) fn remove_broker(&mut self, broker_id: i32) {
        self.channel.remove_broker(broker_id);
    }

    /// Closes every send queue (resignation, shutdown).
    pub(crate) fn shutdown_channel(&mut self) {
        self.channel.shutdown();
    }

    /// Puts an event on our own queue (a re-queue, a timer's event).
    pub(crate) fn enqueue(&self, event: ControllerEvent) {
        let _ = self.events.send(event);
    }

    /// A sender to our own queue, for tasks that enqueue later.
    pub(crate) fn event_sender(&self) -> EventSender {
        self.events.clone()
    }

    /// A task that awaits `watch` and enqueues what `on_fire` makes of it.
    pub(crate) fn spawn_watch(
        &self,
        watch: Watch,
        on_fire: impl FnOnce(WatchKind) -> Option<ControllerEvent> + Send + 'static,
    ) -> JoinHandle<()> {
        let events = self.events.clone();
        tokio::spawn(async move {
            let kind = watch.await;
            if let Some(e) = on_fire(kind) {
                let _ = events.send(e);
            }
        })
    }

    /// Arms a watch of the active controller (replacing the previous one on the same path).
    ///
    /// A watch ended by the end of our session (`WatchKind::Session`) enqueues nothing: that
    /// is no change of its znode, and the session's end is handled once, by `Expire`, which
    /// resigns (the `/controller` watch and the session expiry handler both bring it). Kafka's
    /// znode handlers never see session events either; `ZooKeeperClient` gives those to its
    /// state-change handlers. Otherwise a `BrokerChange` or `TopicChange` could be handled
    /// ahead of `Expire`, as the active controller, against the expired session, and fail.
    pub(crate) fn arm_watch(
        &mut self,
        key: String,
        watch: Watch,
        on_fire: impl FnOnce(WatchKind) -> Option<ControllerEvent> + Send + 'static,
    ) {
        let h = self.spawn_watch(watch, move |kind| match kind {
            WatchKind::Session => None,
            kind => on_fire(kind),
        });
        if let Some(old) = self.watches.insert(key, h) {
            old.abort();
        }
    }

    /// Stops a watch task of the active controller.
    pub(crate) fn unarm_watch(&mut self, key: &str) {
        if let Some(h) = self.watches.remove(key) {
            h.abort();
        }
    }

    /// Stops every watch task of the active controller.
    pub(crate) fn unarm_all_watches(&mut self) {
        for (_, h) in self.watches.drain() {
            h.abort();
        }
    }
}
