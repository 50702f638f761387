//! The controller's event handlers (Kafka's `KafkaController`).
//!
//! Kafka concept: every broker runs a controller; the one that wins `/controller` is *active*
//! and drives the cluster: it elects partition leaders, reacts to brokers coming and going, and
//! creates and deletes topics. [`KafkaController::process`] is one `match` over
//! [`ControllerEvent`] that sends each event to its `process_*` handler; most handlers return at
//! once when this broker is not the active controller.
//!
//! Invariant: a [`Error::ControllerMoved`] from any fenced ZooKeeper write means another broker
//! won a later election; the handler stops and the controller resigns (`maybe_resign`), it never
//! keeps acting on a stale epoch. Any other error is logged with the event name; an illegal
//! state makes the controller resign and trigger a new election, as Kafka's
//! `handleIllegalState` does.
//!
//! Layout: this file holds the type, `process` (one arm per event, each calling its handler,
//! which answers its caller itself; errors are then handled in one place), the election and
//! resignation. The other handlers are split by concept: `failover.rs`, `brokers.rs`
//! (membership, ControlledShutdown, AlterPartition), `topics.rs` (creation, deletion
//! requests), `preferred_election.rs`. The state machines and managers
//! ([`crate::partition_state`], [`crate::replica_state`], [`crate::topic_deletion`],
//! [`crate::reassignment`]) are separate types that borrow the controller's
//! [`ControllerCore`] for one call; the controller keeps only what the election needs (the
//! active controller id, the `/controller` watch, the rebalance timer, the handle's flags).
//!
//! Simplifications: no ISR change notifications (IBP < 2.7 only), no log-dir failures, no
//! topic-level `unclean.leader.election.enable`. Session expiry follows Kafka
//! (`Expire`, then `RegisterBrokerAndReelect` on a new session, see
//! [`crate::spawn_session_expiry_handler`]). Replicas of a topic being deleted are not moved to
//! OnlineReplica when their broker returns (Kafka does, briefly recreating them); they go
//! straight back into the deletion cycle.

mod brokers;
mod failover;
mod preferred_election;
mod topics;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::channel::ControllerChannel;
use crate::context::ControllerContext;
use crate::controller_core::ControllerCore;
use crate::error::{codes, Error, Result};
use crate::event::{AlterReassignmentsReply, ControllerEvent, EventSender, ListReassignmentsReply};
use crate::partition_state::PartitionStateMachine;
use crate::reassignment::ReassignmentManager;
use crate::replica_state::ReplicaStateMachine;
use crate::shared_state::SharedState;
use crate::state::PartitionState;
use crate::topic_deletion::TopicDeletionManager;
use crate::zk::backend::WatchKind;
use crate::zk::client::{ElectionResult, KafkaZkClient};
use crate::zk::data::{BrokerRegistration, TopicPartition};
use crate::ControllerConfig;

/// Pause before contesting again after an election attempt failed on a ZooKeeper error.
const ELECTION_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// Delay of the first automatic rebalance check after becoming controller (Kafka: 5 s).
pub const FIRST_AUTO_REBALANCE_DELAY: Duration = Duration::from_secs(5);

/// One broker's controller: the state of the active controller plus the election machinery.
pub struct KafkaController {
    /// The context, ZooKeeper client, request batch and config the state machines share.
    core: ControllerCore,
    /// This broker's registration czxid (not used for decisions; kept for logs and Kafka parity).
    broker_epoch: i64,
    /// The pending auto leader rebalance check (Kafka's `auto-leader-rebalance-task`);
    /// cancelled on resignation.
    rebalance_timer: Option<JoinHandle<()>>,
    /// Flags the broker's `ControllerHandle` reads.
    shared: Arc<SharedState>,
    /// The controller this broker believes is active (Kafka's `activeControllerId`).
    active_controller_id: Option<i32>,
    /// The `/controller` watch, kept across resignations.
    controller_watch: Option<JoinHandle<()>>,
}

impl KafkaController {
    pub fn new(
        zk: KafkaZkClient,
        config: ControllerConfig,
        broker_epoch: i64,
        channel: Box<dyn ControllerChannel>,
        events: EventSender,
        shared: Arc<SharedState>,
    ) -> Self {
        KafkaController {
            core: ControllerCore::new(zk, config, channel, events),
            broker_epoch,
            shared,
            active_controller_id: None,
            rebalance_timer: None,
            controller_watch: None,
        }
    }

    /// True while this broker is the active controller: `/controller` names it *and* it won an
    /// epoch (a `/controller` left by this broker's previous session does not count).
    pub fn is_active(&self) -> bool {
        self.active_controller_id == Some(self.core.config.broker_id) && self.core.ctx.epoch > 0
    }

    /// The controller's in-memory state (read-only, for tests and diagnostics).
    pub fn context(&self) -> &ControllerContext {
        &self.core.ctx
    }

    /// The ZooKeeper client (tests swap its backend to simulate a session loss).
    #[cfg(test)]
    pub(crate) fn zk(&self) -> &KafkaZkClient {
        &self.core.zk
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch
    }

    /// Refreshes the gauges the handle reports (Kafka's `updateMetrics`).
    pub fn update_metrics(&self) {
        let ctx = &self.core.ctx;
        let (offline, global, imbalance) = if self.is_active() {
            let mut offline = 0;
            let mut imbalance = 0;
            let mut global = 0;
            for (tp, state) in &ctx.partition_states {
                if ctx.is_topic_queued_for_deletion(&tp.topic) {
                    continue;
                }
                global += 1;
                if *state != PartitionState::Online {
                    offline += 1;
                }
                let preferred = ctx.replicas(tp).first().copied();
                let leader = ctx.leadership.get(tp).map(|l| l.leader_and_isr.leader);
                if leader.is_some() && leader != preferred {
                    imbalance += 1;
                }
            }
            (offline, global, imbalance)
        } else {
            (0, 0, 0)
        };
        let sh = &self.shared;
        sh.offline_partitions_count.store(offline, Ordering::SeqCst);
        sh.global_partition_count.store(global, Ordering::SeqCst);
        sh.preferred_replica_imbalance_count
            .store(imbalance, Ordering::SeqCst);
    }

    pub(crate) fn shared(&self) -> &SharedState {
        &self.shared
    }

    pub(crate) fn shared_arc(&self) -> Arc<SharedState> {
        self.shared.clone()
    }

    // ---- the state machines, built on the core for one call ------------------------------

    fn partition_state_machine(&mut self) -> PartitionStateMachine<'_> {
        PartitionStateMachine::new(&mut self.core)
    }

    fn replica_state_machine(&mut self) -> ReplicaStateMachine<'_> {
        ReplicaStateMachine::new(&mut self.core)
    }

    fn topic_deletion_manager(&mut self) -> TopicDeletionManager<'_> {
        TopicDeletionManager::new(&mut self.core)
    }

    fn reassignment_manager(&mut self) -> ReassignmentManager<'_> {
        ReassignmentManager::new(&mut self.core)
    }

    /// Processes one event to completion (Kafka's `ControllerEventProcessor.process`): one arm
    /// per event, each handler answering its caller itself; then the error, if any, is handled
    /// in one place.
    pub async fn process(&mut self, event: ControllerEvent) {
        let name = event.name();
        let result = match event {
            ControllerEvent::Startup => self.process_startup().await,
            ControllerEvent::Reelect => self.process_reelect().await,
            ControllerEvent::ControllerChange => self.process_controller_change().await,
            ControllerEvent::Expire => self.process_expire().await,
            ControllerEvent::RegisterBrokerAndReelect {
                registration,
                reply,
            } => {
                self.process_register_broker_and_reelect(&registration, reply)
                    .await
            }
            ControllerEvent::BrokerChange => self.process_broker_change().await,
            ControllerEvent::BrokerModifications { broker_id } => {
                self.process_broker_modifications(broker_id).await
            }
            ControllerEvent::TopicChange => self.process_topic_change().await,
            ControllerEvent::PartitionModifications { topic } => {
                self.process_partition_modifications(&topic).await
            }
            ControllerEvent::TopicDeletion => self.process_topic_deletion().await,
            ControllerEvent::ControlledShutdown {
                broker_id,
                broker_epoch,
                reply,
            } => {
                self.process_controlled_shutdown(broker_id, broker_epoch, reply)
                    .await
            }
            ControllerEvent::AlterPartition(req) => self.process_alter_partition(*req).await,
            ControllerEvent::LeaderAndIsrResponseReceived {
                broker_id,
                response,
            } => self.process_leader_and_isr_response(broker_id, &response),
            ControllerEvent::UpdateMetadataResponseReceived {
                broker_id,
                error_code,
            } => self.process_update_metadata_response(broker_id, error_code),
            ControllerEvent::StopReplicaResponseReceived {
                broker_id,
                response,
            } => {
                self.process_stop_replica_response(broker_id, &response)
                    .await
            }
            ControllerEvent::ReplicaLeaderElection {
                partitions,
                election_type,
                trigger,
                reply,
            } => {
                self.process_replica_leader_election(partitions, election_type, trigger, reply)
                    .await
            }
            ControllerEvent::AutoPreferredReplicaLeaderElection => {
                self.process_auto_preferred_replica_leader_election().await
            }
            ControllerEvent::ZkPartitionReassignment => {
                self.process_zk_partition_reassignment().await
            }
            ControllerEvent::ApiPartitionReassignment {
                reassignments,
                reply,
            } => {
                self.process_api_partition_reassignment(reassignments, reply)
                    .await
            }
            ControllerEvent::ListPartitionReassignments { partitions, reply } => {
                self.process_list_partition_reassignments(partitions, reply)
            }
            ControllerEvent::Shutdown { done } => self.process_shutdown(done).await,
        };
        if let Err(e) = result {
            self.handle_event_error(name, e).await;
        }
    }

    /// What an event's error leads to (Kafka's `handleIllegalState` and the
    /// `ControllerMovedException` catch in `ControllerEventProcessor.process`).
    async fn handle_event_error(&mut self, name: &'static str, e: Error) {
        match e {
            Error::ControllerMoved => {
                info!(
                    event = name,
                    controller_epoch = self.core.ctx.epoch,
                    "controller moved to another broker while processing; resigning if needed"
                );
                if let Err(e) = self.maybe_resign().await {
                    warn!(error = %e, "could not re-read /controller after ControllerMoved");
                    // Whatever /controller says, a fenced write means we are not the controller.
                    if self.is_active() {
                        self.on_controller_resignation();
                        self.set_active_controller(None);
                    }
                }
            }
            Error::IllegalState(msg) => {
                error!(event = name, reason = %msg, "illegal controller state; resigning");
                self.trigger_controller_move().await;
            }
            e => {
                error!(event = name, error = %e, "error processing controller event");
                // Without a /controller watch this broker would never contest again: retry the
                // election after a pause (ZooKeeper was probably unreachable for a moment).
                if matches!(e, Error::ElectionFailed(_)) && self.active_controller_id.is_none() {
                    let events = self.core.event_sender();
                    tokio::spawn(async move {
                        tokio::time::sleep(ELECTION_RETRY_BACKOFF).await;
                        let _ = events.send(ControllerEvent::Reelect);
                    });
                }
            }
        }
    }

    // ---- election ------------------------------------------------------------------------

    fn set_active_controller(&mut self, id: Option<i32>) {
        self.active_controller_id = id;
        self.shared
            .active_controller_id
            .store(id.unwrap_or(-1), Ordering::SeqCst);
        self.shared
            .is_active
            .store(self.is_active(), Ordering::SeqCst);
    }

    async fn arm_controller_watch(&mut self) -> Result<()> {
        let w = self.core.zk.watch_controller().await?;
        let h = self.core.spawn_watch(w, |kind| match kind {
            WatchKind::Deleted => Some(ControllerEvent::Reelect),
            WatchKind::Session => Some(ControllerEvent::Expire),
            _ => Some(ControllerEvent::ControllerChange),
        });
        if let Some(old) = self.controller_watch.replace(h) {
            // Re-arming after a new session: the old watch task is obsolete.
            old.abort();
        }
        Ok(())
    }

    async fn refresh_epoch_seen(&mut self) {
        if let Ok(Some((epoch, _))) = self.core.zk.get_controller_epoch().await {
            self.shared.controller_epoch.store(epoch, Ordering::SeqCst);
        }
    }

    async fn process_startup(&mut self) -> Result<()> {
        async {
            self.arm_controller_watch().await?;
            self.elect().await
        }
        .await
        .map_err(Error::in_election)
    }

    async fn process_reelect(&mut self) -> Result<()> {
        async {
            self.arm_controller_watch().await?;
            self.maybe_resign().await?;
            self.elect().await
        }
        .await
        .map_err(Error::in_election)
    }

    /// After a new session: re-register `/brokers/ids/<id>` (a new broker epoch), answer the
    /// session expiry handler with it, and contest the election again.
    async fn process_register_broker_and_reelect(
        &mut self,
        registration: &BrokerRegistration,
        reply: oneshot::Sender<std::result::Result<i64, String>>,
    ) -> Result<()> {
        match self.core.zk.register_broker(registration).await {
            Ok(epoch) => {
                info!(
                    broker_id = registration.broker_id,
                    broker_epoch = epoch,
                    previous_broker_epoch = self.broker_epoch,
                    "registered with a new broker epoch; contesting the election again"
                );
                self.broker_epoch = epoch;
                self.shared.broker_epoch.store(epoch, Ordering::SeqCst);
                self.shared.registered.store(true, Ordering::SeqCst);
                let _ = reply.send(Ok(epoch));
                self.process_reelect().await
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Err(Error::from(e).in_election())
            }
        }
    }

    async fn process_controller_change(&mut self) -> Result<()> {
        self.arm_controller_watch().await?;
        self.maybe_resign().await?;
        self.refresh_epoch_seen().await;
        Ok(())
    }

    async fn process_expire(&mut self) -> Result<()> {
        self.shared.expiring.store(false, Ordering::SeqCst);
        self.shared.registered.store(false, Ordering::SeqCst);
        let was_active = self.is_active();
        self.set_active_controller(None);
        if was_active {
            self.on_controller_resignation();
        }
        Ok(())
    }

    /// Re-reads `/controller` and resigns if we were active and are not any more.
    async fn maybe_resign(&mut self) -> Result<()> {
        let was_active = self.is_active();
        let id = self.core.zk.get_controller_id().await?;
        self.set_active_controller(id);
        if was_active && !self.is_active() {
            self.on_controller_resignation();
        }
        Ok(())
    }

    /// Kafka's `elect()` (reference §2.2).
    async fn elect(&mut self) -> Result<()> {
        let broker_id = self.core.config.broker_id;
        let current = self.core.zk.get_controller_id().await?;
        self.set_active_controller(current);
        if let Some(id) = current {
            debug!(
                broker_id,
                controller_id = id,
                "a controller is already elected; not contesting"
            );
            self.refresh_epoch_seen().await;
            return Ok(());
        }
        info!(broker_id, "contesting controller election");
        match self
            .core
            .zk
            .register_controller_and_increment_epoch(broker_id)
            .await
        {
            Ok(ElectionResult::Won {
                epoch,
                epoch_zk_version,
            }) => {
                self.core.ctx.epoch = epoch;
                self.core.ctx.epoch_zk_version = epoch_zk_version;
                self.shared.controller_epoch.store(epoch, Ordering::SeqCst);
                self.set_active_controller(Some(broker_id));
                info!(
                    broker_id,
                    controller_epoch = epoch,
                    zk_version = epoch_zk_version,
                    "elected controller"
                );
                if let Err(e) = self.on_controller_failover().await {
                    if matches!(e, Error::ControllerMoved) {
                        return Err(e);
                    }
                    error!(error = %e, "error while becoming controller; resigning");
                    self.trigger_controller_move().await;
                }
                Ok(())
            }
            Ok(ElectionResult::NotRegistered) => {
                // Kafka elects only after `registerBroker` on the same session; a broker whose
                // session lost its registration contests again after RegisterBrokerAndReelect.
                warn!(
                    broker_id,
                    broker_epoch = self.broker_epoch,
                    "not contesting the controller election: this broker's ZooKeeper session \
                     holds no /brokers/ids registration"
                );
                Ok(())
            }
            Ok(ElectionResult::Lost { controller_id }) => {
                self.set_active_controller(controller_id);
                self.refresh_epoch_seen().await;
                info!(
                    broker_id,
                    controller_id = ?controller_id,
                    "lost controller election"
                );
                Ok(())
            }
            Err(e) => {
                error!(error = %e, "error while contesting the controller election");
                Err(e.into())
            }
        }
    }

    /// Resigns and deletes `/controller` (fenced) so that a new election happens (Kafka's
    /// `triggerControllerMove`).
    async fn trigger_controller_move(&mut self) {
        let version = self.core.ctx.epoch_zk_version;
        let was_active = self.is_active();
        if was_active {
            self.on_controller_resignation();
        }
        self.set_active_controller(None);
        if was_active {
            if let Err(e) = self.core.zk.delete_controller(version).await {
                warn!(error = %e, "could not delete /controller while resigning");
            }
        }
    }

    /// Tearing down the active controller (Kafka's `onControllerResignation`): stop watches and
    /// send queues, clear the context.
    fn on_controller_resignation(&mut self) {
        let epoch = self.core.ctx.epoch;
        self.core.unarm_all_watches();
        self.cancel_auto_leader_rebalance_task();
        self.core.shutdown_channel();
        self.core.batch.clear();
        self.core.ctx = ControllerContext::default();
        self.shared.is_active.store(false, Ordering::SeqCst);
        info!(
            broker_id = self.core.config.broker_id,
            controller_epoch = epoch,
            "resigned as controller"
        );
    }

    /// Stops everything: resigns (deleting `/controller` so others elect at once) and drops the
    /// `/controller` watch.
    async fn shutdown(&mut self) {
        if self.is_active() {
            self.trigger_controller_move().await;
        }
        if let Some(h) = self.controller_watch.take() {
            h.abort();
        }
        self.cancel_auto_leader_rebalance_task();
        self.core.unarm_all_watches();
        self.core.shutdown_channel();
    }

    /// Kafka's `scheduleAutoLeaderRebalanceTask`: a timer task that only enqueues
    /// `AutoPreferredReplicaLeaderElection` after `delay` (replacing any pending one).
    fn schedule_auto_leader_rebalance_task(&mut self, delay: Duration) {
        let events = self.core.event_sender();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(ControllerEvent::AutoPreferredReplicaLeaderElection);
        });
        if let Some(old) = self.rebalance_timer.replace(task) {
            old.abort();
        }
    }

    /// Cancels the pending rebalance check (resignation, shutdown).
    fn cancel_auto_leader_rebalance_task(&mut self) {
        if let Some(t) = self.rebalance_timer.take() {
            t.abort();
        }
    }

    // ---- responses -------------------------------------------------------------------------

    fn process_leader_and_isr_response(
        &mut self,
        broker_id: i32,
        response: &kafka_protocol::messages::LeaderAndIsrResponse,
    ) -> Result<()> {
        if response.error_code != 0 {
            warn!(
                target_broker_id = broker_id,
                error_code = response.error_code,
                "LeaderAndIsr answered with an error"
            );
            return Ok(());
        }
        // Kafka acts only on KAFKA_STORAGE_ERROR here (a replica on a failed log directory);
        // STALE_CONTROLLER_EPOCH for a partition is a broker that already has its leader
        // epoch (every partition after a failover), which is expected.
        let mut stale = 0usize;
        for t in &response.topics {
            for p in &t.partition_errors {
                match p.error_code {
                    0 => {}
                    11 => stale += 1,
                    code => warn!(
                        target_broker_id = broker_id,
                        partition = p.partition_index,
                        error_code = code,
                        "LeaderAndIsr partition error"
                    ),
                }
            }
        }
        if stale > 0 {
            debug!(
                target_broker_id = broker_id,
                partitions = stale,
                "LeaderAndIsr: partitions already at their leader epoch on the broker"
            );
        }
        Ok(())
    }

    fn process_update_metadata_response(&mut self, broker_id: i32, error_code: i16) -> Result<()> {
        if error_code != 0 {
            warn!(
                target_broker_id = broker_id,
                error_code, "UpdateMetadata answered with an error"
            );
        }
        Ok(())
    }

    // ---- reassignment ----------------------------------------------------------------------

    /// `/admin/reassign_partitions` was created (Kafka's `processZkPartitionReassignment`).
    async fn process_zk_partition_reassignment(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        self.reassignment_manager()
            .start_zk_reassignments()
            .await
            .map(|_| ())
    }

    /// AlterPartitionReassignments (Kafka's `processApiPartitionReassignment`).
    async fn process_api_partition_reassignment(
        &mut self,
        reassignments: BTreeMap<TopicPartition, Option<Vec<i32>>>,
        reply: oneshot::Sender<AlterReassignmentsReply>,
    ) -> Result<()> {
        if !self.is_active() {
            let _ = reply.send(Err(codes::NOT_CONTROLLER));
            return Ok(());
        }
        match self
            .reassignment_manager()
            .start_api_reassignments(reassignments)
            .await
        {
            Ok(results) => {
                let _ = reply.send(Ok(results));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(match e {
                    Error::ControllerMoved | Error::NotController => codes::NOT_CONTROLLER,
                    _ => codes::UNKNOWN_SERVER_ERROR,
                }));
                Err(e)
            }
        }
    }

    /// ListPartitionReassignments (Kafka's `processListPartitionReassignments`).
    fn process_list_partition_reassignments(
        &mut self,
        partitions: Option<Vec<TopicPartition>>,
        reply: oneshot::Sender<ListReassignmentsReply>,
    ) -> Result<()> {
        let answer = if self.is_active() {
            Ok(self.reassignment_manager().list_reassignments(partitions))
        } else {
            Err(codes::NOT_CONTROLLER)
        };
        let _ = reply.send(answer);
        Ok(())
    }

    /// Stop the event loop: resign and stop every task, then tell the caller.
    async fn process_shutdown(&mut self, done: oneshot::Sender<()>) -> Result<()> {
        self.shutdown().await;
        let _ = done.send(());
        Ok(())
    }
}
