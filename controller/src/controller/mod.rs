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
//! Preferred elections and the auto rebalance live in [`crate::preferred_election`], partition
//! reassignment in [`crate::reassignment`], ISR changes in [`crate::alter_partition`].
//!
//! Simplifications: no ISR change notifications (IBP < 2.7 only), no log-dir failures, no
//! topic-level `unclean.leader.election.enable`. Session expiry follows Kafka
//! (`Expire`, then `RegisterBrokerAndReelect` on a new session, see
//! [`crate::spawn_session_expiry_handler`]). Replicas of a topic being deleted are not moved to
//! OnlineReplica when their broker returns (Kafka does, briefly recreating them); they go
//! straight back into the deletion cycle.

mod preferred_election;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::StopReplicaResponse;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::alter_partition::{AlterPartitionReply, AlterPartitionRequest};
use crate::channel::ControllerChannel;
use crate::context::{ControllerContext, PartitionAndReplica, ReplicaAssignment};
use crate::controller_core::{ControllerCore, IsrWrite};
use crate::error::{codes, Error, Result};
use crate::event::{
    AlterReassignmentsReply, ControlledShutdownError, ControlledShutdownReply, ControllerEvent,
    EventSender, ListReassignmentsReply,
};
use crate::partition_state::{ElectionStrategy, PartitionStateMachine};
use crate::reassignment::ReassignmentManager;
use crate::replica_state::ReplicaStateMachine;
use crate::shared_state::SharedState;
use crate::state::{PartitionState, ReplicaState};
use crate::topic_deletion::TopicDeletionManager;
use crate::zk::backend::WatchKind;
use crate::zk::client::{ElectionResult, KafkaZkClient, UpdateLeaderAndIsrResult};
use crate::zk::data::{
    decode_uuid, random_uuid_string, BrokerIdZNode, BrokerIds, BrokerInfo, BrokerRegistration,
    DeleteTopicsZNode, IsrChangeNotificationZNode, LeaderAndIsr, LeaderIsrAndControllerEpoch,
    TopicAssignment, TopicPartition, Topics,
};
use crate::ControllerConfig;

/// Pause before contesting again after an election attempt failed on a ZooKeeper error.
const ELECTION_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// Delay of the first automatic rebalance check after becoming controller (Kafka: 5 s).
pub const FIRST_AUTO_REBALANCE_DELAY: Duration = Duration::from_secs(5);

/// One broker's controller: the state of the active controller plus the election machinery.
pub struct KafkaController {
    /// The context, ZooKeeper client, request batch and config the state machines share.
    pub(crate) core: ControllerCore,
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

    pub(crate) fn partition_state_machine(&mut self) -> PartitionStateMachine<'_> {
        PartitionStateMachine::new(&mut self.core)
    }

    pub(crate) fn replica_state_machine(&mut self) -> ReplicaStateMachine<'_> {
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
                self.broker_epoch = epoch;
                self.shared.broker_epoch.store(epoch, Ordering::SeqCst);
                let _ = reply.send(Ok(epoch));
                self.process_reelect().await
            }
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                Err(e.in_election())
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
                Err(e)
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

    /// Becoming the active controller (Kafka's `onControllerFailover`), in order:
    /// 1. set up `/feature` (Enabled, no features);
    /// 2. register child watches on `/brokers/ids`, `/brokers/topics`, `/admin/delete_topics`
    ///    *before* reading them, so no change is missed;
    /// 3. delete pending ISR-change notifications;
    /// 4. build the context: brokers and epochs, topics, assignments (back-filling topic ids),
    ///    partition states; start one send queue per live broker;
    /// 5. read the pending topic deletions;
    /// 6. send UpdateMetadata (live brokers, no partitions) to every live broker, before any
    ///    LeaderAndIsr so brokers know the leaders' endpoints;
    /// 7. replica state machine startup; 8. partition state machine startup and elections for
    ///    New/Offline partitions; 9. resume reassignments (`/admin/reassign_partitions` first,
    ///    then those recorded in the topic znodes), topic deletion, a pending
    ///    `/admin/preferred_replica_election`, and schedule the first auto rebalance check.
    async fn on_controller_failover(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        // 1.
        self.core.zk.ensure_feature_znode().await?;
        // 2. (watches armed by the reads below, which re-arm on every read)
        let (broker_ids, w) = self
            .core
            .zk
            .get_children_and_watch(BrokerIds::path())
            .await?;
        self.core.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let (topics, w) = self.core.zk.get_children_and_watch(Topics::path()).await?;
        self.core.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let (deletions, w) = self
            .core
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.core
            .arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
                Some(ControllerEvent::TopicDeletion)
            });
        // 3.
        self.core
            .zk
            .delete_children(
                IsrChangeNotificationZNode::path(),
                self.core.ctx.epoch_zk_version,
            )
            .await?;
        // 4.
        let registrations_read = started.elapsed();
        let brokers = self.core.zk.get_all_brokers().await?;
        debug!(
            registered = broker_ids.len(),
            read = brokers.len(),
            "read brokers"
        );
        for b in &brokers {
            self.core.ctx.live_brokers.insert(b.id(), b.clone());
            self.core.add_broker(b);
        }
        let ids: Vec<i32> = brokers.iter().map(|b| b.id()).collect();
        for id in ids {
            self.watch_broker(id).await?;
        }
        // Every topic's assignment read at once (Kafka's `getReplicaAssignmentForTopics`
        // pipelines its getData requests), then applied one after the other.
        let reads = {
            let zk = &self.core.zk;
            futures::future::join_all(topics.iter().map(|t| zk.get_topic_assignment_and_watch(t)))
                .await
        };
        for (t, read) in topics.iter().zip(reads) {
            self.apply_topic_assignment(t, read?).await?;
        }
        let assignments_read = started.elapsed();
        let partitions = self.core.ctx.all_partitions();
        let states = self.core.zk.get_partition_states(&partitions).await?;
        let states_read = started.elapsed();
        self.core.ctx.leadership.extend(states);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        info!(
            controller_epoch = self.core.ctx.epoch,
            partitions = partitions.len(),
            elapsed_ms = ms(started.elapsed()),
            watches_and_cleanup_ms = ms(registrations_read),
            brokers_and_assignments_ms = ms(assignments_read - registrations_read),
            partition_states_ms = ms(states_read - assignments_read),
            "controller context loaded"
        );
        // 5.
        let existing: BTreeSet<String> = self.core.ctx.all_topics.clone();
        let (queued, unknown): (Vec<String>, Vec<String>) =
            deletions.into_iter().partition(|t| existing.contains(t));
        if !unknown.is_empty() {
            self.core
                .zk
                .delete_topic_deletion_markers(&unknown, self.core.ctx.epoch_zk_version)
                .await?;
        }
        if !self.core.config.delete_topic_enable {
            self.core
                .zk
                .delete_topic_deletion_markers(&queued, self.core.ctx.epoch_zk_version)
                .await?;
        } else {
            for t in queued {
                // Replicas on dead brokers, or a reassignment in flight, make a topic
                // ineligible until they return or it completes.
                let dead = self
                    .core
                    .ctx
                    .replicas_for_topic(&t)
                    .iter()
                    .any(|r| !self.core.ctx.is_replica_online(r.replica));
                let reassigning = self
                    .core
                    .ctx
                    .partitions_being_reassigned
                    .iter()
                    .any(|tp| tp.topic == t);
                if dead || reassigning {
                    self.core
                        .ctx
                        .topics_ineligible_for_deletion
                        .insert(t.clone());
                }
                self.core.ctx.topics_to_be_deleted.insert(t);
            }
        }
        // 6.
        let live: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.core.send_update_metadata(&live, &[])?;
        // 7. Replica state machine startup (Kafka's `ReplicaStateMachine.startup`).
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for tp in self.core.ctx.all_partitions() {
            for r in self.core.ctx.replicas(&tp).to_vec() {
                let pr = PartitionAndReplica {
                    tp: tp.clone(),
                    replica: r,
                };
                if self.core.ctx.is_replica_online(r) {
                    self.core
                        .ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::Online);
                    online.push(pr);
                } else {
                    self.core
                        .ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::DeletionIneligible);
                    offline.push(pr);
                }
            }
        }
        self.replica_state_machine()
            .handle_state_changes(&online, ReplicaState::Online)
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&offline, ReplicaState::Offline)
            .await?;
        // 8. Partition state machine startup (Kafka's `PartitionStateMachine.startup`).
        for tp in self.core.ctx.all_partitions() {
            let state = match self.core.ctx.leadership.get(&tp) {
                None => PartitionState::New,
                Some(l) if self.core.ctx.is_replica_online(l.leader_and_isr.leader) => {
                    PartitionState::Online
                }
                Some(_) => PartitionState::Offline,
            };
            self.core.ctx.partition_states.insert(tp, state);
        }
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        // 9.
        self.reassignment_manager()
            .initialize_partition_reassignments()
            .await?;
        self.topic_deletion_manager().resume_deletions().await?;
        self.resume_pending_preferred_replica_elections().await?;
        if self.core.config.auto_leader_rebalance_enable {
            self.schedule_auto_leader_rebalance_task(FIRST_AUTO_REBALANCE_DELAY);
        }
        info!(
            controller_epoch = self.core.ctx.epoch,
            live_brokers = ?self.core.ctx.live_broker_ids(),
            topics = self.core.ctx.all_topics.len(),
            partitions = self.core.ctx.partition_states.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controller failover complete"
        );
        Ok(())
    }

    /// Reads one topic's assignment (with a data watch) into the context, back-filling a
    /// missing topic id (fenced write), as Kafka does at IBP >= 2.8.
    async fn load_topic(&mut self, topic: &str) -> Result<bool> {
        let read = self.core.zk.get_topic_assignment_and_watch(topic).await?;
        self.apply_topic_assignment(topic, read).await
    }

    /// The second half of [`Self::load_topic`], for an assignment already read.
    async fn apply_topic_assignment(
        &mut self,
        topic: &str,
        read: Option<(TopicAssignment, crate::zk::backend::Watch)>,
    ) -> Result<bool> {
        let Some((mut a, w)) = read else {
            return Ok(false);
        };
        let t = topic.to_string();
        self.core
            .arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
                WatchKind::DataChanged => {
                    Some(ControllerEvent::PartitionModifications { topic: t })
                }
                _ => None,
            });
        let id = match a.topic_id.as_deref().and_then(decode_uuid) {
            Some(id) => id,
            None => {
                let s = random_uuid_string();
                a.topic_id = Some(s.clone());
                self.core
                    .zk
                    .set_topic_assignment(topic, &a, Some(self.core.ctx.epoch_zk_version))
                    .await?;
                info!(topic, topic_id = %s, "back-filled topic id");
                decode_uuid(&s).unwrap_or_default()
            }
        };
        self.core.ctx.all_topics.insert(topic.to_string());
        self.core.ctx.topic_ids.insert(topic.to_string(), id);
        let map = assignment_map(&a);
        for (p, r) in &map {
            if r.is_being_reassigned() {
                self.core
                    .ctx
                    .partitions_being_reassigned
                    .insert(TopicPartition::new(topic, *p));
            }
        }
        self.core.ctx.assignments.insert(topic.to_string(), map);
        Ok(true)
    }

    async fn watch_broker(&mut self, broker_id: i32) -> Result<()> {
        let path = BrokerIdZNode::path(broker_id);
        match self
            .core
            .zk
            .backend()
            .get_data_and_watch(path.clone())
            .await
        {
            Ok((_, _, w)) => {
                self.core.arm_watch(path, w, move |kind| match kind {
                    WatchKind::DataChanged => {
                        Some(ControllerEvent::BrokerModifications { broker_id })
                    }
                    _ => None,
                });
                Ok(())
            }
            Err(zookeeper_client::Error::NoNode) => Ok(()),
            Err(e) => Err(Error::zk(path, e)),
        }
    }

    /// Tearing down the active controller (Kafka's `onControllerResignation`): stop watches and
    /// send queues, clear the context.
    pub(crate) fn on_controller_resignation(&mut self) {
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
    pub(crate) async fn shutdown(&mut self) {
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
    pub(crate) fn schedule_auto_leader_rebalance_task(&mut self, delay: Duration) {
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
    pub(crate) fn cancel_auto_leader_rebalance_task(&mut self) {
        if let Some(t) = self.rebalance_timer.take() {
            t.abort();
        }
    }

    // ---- broker membership -----------------------------------------------------------------

    /// `/brokers/ids` children changed: new, dead and bounced brokers (reference §2.4).
    async fn process_broker_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (_, w) = self
            .core
            .zk
            .get_children_and_watch(BrokerIds::path())
            .await?;
        self.core.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let current: BTreeMap<i32, BrokerInfo> = self
            .core
            .zk
            .get_all_brokers()
            .await?
            .into_iter()
            .map(|b| (b.id(), b))
            .collect();
        let known = self.core.ctx.live_or_shutting_down_broker_ids();
        let new: BTreeSet<i32> = current
            .keys()
            .filter(|id| !known.contains(id))
            .copied()
            .collect();
        let dead: BTreeSet<i32> = known
            .iter()
            .filter(|id| !current.contains_key(id))
            .copied()
            .collect();
        let bounced: BTreeSet<i32> = current
            .iter()
            .filter(|(id, b)| {
                self.core
                    .ctx
                    .live_brokers
                    .get(id)
                    .is_some_and(|old| b.broker_epoch > old.broker_epoch)
            })
            .map(|(id, _)| *id)
            .collect();
        info!(
            controller_epoch = self.core.ctx.epoch,
            new_brokers = ?new,
            dead_brokers = ?dead,
            bounced_brokers = ?bounced,
            live_brokers = ?current.keys().collect::<Vec<_>>(),
            "broker membership changed"
        );
        for id in &new {
            let b = &current[id];
            self.core.add_broker(b);
            self.core.ctx.live_brokers.insert(*id, b.clone());
        }
        for id in bounced.iter().chain(dead.iter()) {
            self.core.remove_broker(*id);
            self.core.ctx.live_brokers.remove(id);
        }
        if !new.is_empty() {
            self.on_broker_startup(&new).await?;
        }
        if !bounced.is_empty() {
            self.on_broker_failure(&bounced).await?;
            for id in &bounced {
                let b = &current[id];
                self.core.add_broker(b);
                self.core.ctx.live_brokers.insert(*id, b.clone());
            }
            self.on_broker_startup(&bounced).await?;
        }
        if !dead.is_empty() {
            for id in &dead {
                self.core.unarm_watch(&BrokerIdZNode::path(*id));
            }
            self.on_broker_failure(&dead).await?;
            info!(
                controller_epoch = self.core.ctx.epoch,
                dead_brokers = ?dead,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "broker failure handled"
            );
        }
        Ok(())
    }

    /// Kafka's `onBrokerStartup`:
    /// 1. UpdateMetadata (broker list) to the brokers that were already there;
    /// 2. UpdateMetadata with every partition that has a leader to the new brokers;
    /// 3. their replicas -> OnlineReplica (LeaderAndIsr with the current state);
    /// 4. New/Offline partitions -> Online (a returning broker may lead again);
    /// 5. restart reassignments whose target includes a new broker; resume deletion of topics
    ///    with replicas on them; 6. watch their znodes.
    async fn on_broker_startup(&mut self, new: &BTreeSet<i32>) -> Result<()> {
        let existing: Vec<i32> = self
            .core
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .filter(|b| !new.contains(b))
            .collect();
        self.core.send_update_metadata(&existing, &[])?;
        let with_leader: Vec<TopicPartition> = self.core.ctx.leadership.keys().cloned().collect();
        let new_ids: Vec<i32> = new.iter().copied().collect();
        self.core.send_update_metadata(&new_ids, &with_leader)?;
        let replicas = self.core.ctx.replicas_on_brokers(new);
        let (for_deletion, others): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.core.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        self.replica_state_machine()
            .handle_state_changes(&others, ReplicaState::Online)
            .await?;
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        self.reassignment_manager()
            .maybe_resume_reassignments(|_, a| a.target_replicas().iter().any(|r| new.contains(r)))
            .await?;
        if !for_deletion.is_empty() {
            let topics: BTreeSet<String> =
                for_deletion.iter().map(|r| r.tp.topic.clone()).collect();
            self.topic_deletion_manager()
                .resume_deletion_for_topics(&topics)
                .await?;
        }
        for id in new {
            self.watch_broker(*id).await?;
        }
        Ok(())
    }

    /// Kafka's `onBrokerFailure` / `onReplicasBecomeOffline`:
    /// 1. partitions whose leader is gone -> OfflinePartition, then New/Offline -> Online
    ///    (offline election: first live ISR member in assignment order);
    /// 2. the dead brokers' replicas -> OfflineReplica (removed from ISR, LeaderAndIsr to the
    ///    remaining replicas);
    /// 3. replicas of topics being deleted -> deletion failed (retried when they return);
    /// 4. if nothing above sent anything, UpdateMetadata (broker list) to everyone.
    async fn on_broker_failure(&mut self, dead: &BTreeSet<i32>) -> Result<()> {
        for id in dead {
            self.core.ctx.shutting_down_broker_ids.remove(id);
        }
        let replicas = self.core.ctx.replicas_on_brokers(dead);
        let (for_deletion, not_for_deletion): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.core.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        let offline_leader: Vec<TopicPartition> = self
            .core
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                !self.core.ctx.is_replica_online(l.leader_and_isr.leader)
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        self.partition_state_machine()
            .handle_state_changes(&offline_leader, PartitionState::Offline, None)
            .await?;
        self.partition_state_machine()
            .trigger_online_partition_state_change()
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&not_for_deletion, ReplicaState::Offline)
            .await?;
        if !for_deletion.is_empty() {
            self.topic_deletion_manager()
                .fail_replica_deletion(&for_deletion)
                .await?;
        }
        if offline_leader.is_empty() && not_for_deletion.is_empty() {
            let live: Vec<i32> = self
                .core
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.core.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    /// A broker rewrote its registration: refresh endpoints and tell everyone.
    async fn process_broker_modifications(&mut self, broker_id: i32) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        self.watch_broker(broker_id).await?;
        let Some(b) = self.core.zk.get_broker(broker_id).await? else {
            return Ok(());
        };
        let changed = self
            .core
            .ctx
            .live_brokers
            .get(&broker_id)
            .is_some_and(|old| old.registration.endpoints != b.registration.endpoints);
        if changed {
            info!(broker_id, endpoints = ?b.registration.endpoints, "broker endpoints changed");
            self.core.ctx.live_brokers.insert(broker_id, b.clone());
            self.core.add_broker(&b);
            let live: Vec<i32> = self
                .core
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.core.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    // ---- topics ----------------------------------------------------------------------------

    /// `/brokers/topics` children changed: new topics get their partitions created.
    async fn process_topic_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self.core.zk.get_children_and_watch(Topics::path()).await?;
        self.core.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let current: BTreeSet<String> = topics.into_iter().collect();
        let new: Vec<String> = current
            .iter()
            .filter(|t| !self.core.ctx.all_topics.contains(*t))
            .cloned()
            .collect();
        let deleted: Vec<String> = self
            .core
            .ctx
            .all_topics
            .iter()
            .filter(|t| !current.contains(*t))
            .cloned()
            .collect();
        for t in &deleted {
            self.core.unarm_watch(&format!("topic:{t}"));
            self.core.ctx.remove_topic(t);
        }
        let mut new_partitions = Vec::new();
        for t in &new {
            if self.load_topic(t).await? {
                new_partitions.extend(self.core.ctx.partitions_for_topic(t));
            }
        }
        if !new.is_empty() || !deleted.is_empty() {
            info!(
                controller_epoch = self.core.ctx.epoch,
                new_topics = ?new,
                deleted_topics = ?deleted,
                "topics changed"
            );
        }
        self.on_new_partition_creation(&new_partitions).await
    }

    /// Kafka's `onNewPartitionCreation`: partitions -> New, replicas -> New, partitions ->
    /// Online (leader = first live replica, state znode created, LeaderAndIsr IsNew to the ISR,
    /// UpdateMetadata to all), replicas -> Online.
    async fn on_new_partition_creation(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        info!(
            controller_epoch = self.core.ctx.epoch,
            partitions = partitions.len(),
            "new partition creation"
        );
        let replicas: Vec<PartitionAndReplica> = partitions
            .iter()
            .flat_map(|tp| {
                self.core
                    .ctx
                    .replicas(tp)
                    .iter()
                    .map(|r| PartitionAndReplica {
                        tp: tp.clone(),
                        replica: *r,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.partition_state_machine()
            .handle_state_changes(partitions, PartitionState::New, None)
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&replicas, ReplicaState::New)
            .await?;
        self.partition_state_machine()
            .handle_state_changes(
                partitions,
                PartitionState::Online,
                Some(ElectionStrategy::Offline {
                    allow_unclean: false,
                }),
            )
            .await?;
        self.replica_state_machine()
            .handle_state_changes(&replicas, ReplicaState::Online)
            .await?;
        Ok(())
    }

    /// A topic znode changed: partitions that are new get created; a topic being deleted gets
    /// its old assignment written back (Kafka refuses to add partitions to it).
    async fn process_partition_modifications(&mut self, topic: &str) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let Some((a, w)) = self.core.zk.get_topic_assignment_and_watch(topic).await? else {
            return Ok(());
        };
        let t = topic.to_string();
        self.core
            .arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
                WatchKind::DataChanged => {
                    Some(ControllerEvent::PartitionModifications { topic: t })
                }
                _ => None,
            });
        let known = self
            .core
            .ctx
            .assignments
            .get(topic)
            .cloned()
            .unwrap_or_default();
        let added: Vec<i32> = a
            .partitions
            .keys()
            .filter(|p| !known.contains_key(p))
            .copied()
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        if self.core.ctx.is_topic_queued_for_deletion(topic) {
            warn!(
                topic,
                "partitions added to a topic being deleted; restoring the old assignment"
            );
            let mut restored = a.clone();
            restored.partitions.retain(|p, _| known.contains_key(p));
            self.core
                .zk
                .set_topic_assignment(topic, &restored, Some(self.core.ctx.epoch_zk_version))
                .await?;
            return Ok(());
        }
        info!(topic, added_partitions = ?added, "partitions added");
        let map = assignment_map(&a);
        let entry = self
            .core
            .ctx
            .assignments
            .entry(topic.to_string())
            .or_default();
        for p in &added {
            if let Some(r) = map.get(p) {
                entry.insert(*p, r.clone());
            }
        }
        let tps: Vec<TopicPartition> = added
            .iter()
            .map(|p| TopicPartition::new(topic, *p))
            .collect();
        self.on_new_partition_creation(&tps).await
    }

    /// `/admin/delete_topics` children changed (Kafka's `processTopicDeletion`): re-arm the
    /// watch, drop markers of unknown topics (or all, with `delete.topic.enable` false), and
    /// queue the rest with the [`TopicDeletionManager`].
    async fn process_topic_deletion(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self
            .core
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.core
            .arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
                Some(ControllerEvent::TopicDeletion)
            });
        let (existing, unknown): (Vec<String>, Vec<String>) = topics
            .into_iter()
            .partition(|t| self.core.ctx.all_topics.contains(t));
        if !unknown.is_empty() {
            info!(topics = ?unknown, "deleting markers of topics that do not exist");
            self.core
                .zk
                .delete_topic_deletion_markers(&unknown, self.core.ctx.epoch_zk_version)
                .await?;
        }
        if existing.is_empty() {
            return Ok(());
        }
        if !self.core.config.delete_topic_enable {
            info!(topics = ?existing, "delete.topic.enable is false; removing deletion markers");
            return self
                .core
                .zk
                .delete_topic_deletion_markers(&existing, self.core.ctx.epoch_zk_version)
                .await;
        }
        self.topic_deletion_manager()
            .enqueue_topics_for_deletion(existing)
            .await
    }

    /// StopReplica answered (Kafka's `processTopicDeletionStopReplicaResponseReceived`):
    /// replicas in DeletionStarted succeed or fail.
    async fn process_stop_replica_response(
        &mut self,
        broker_id: i32,
        response: &StopReplicaResponse,
    ) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started: Vec<PartitionAndReplica> = self
            .core
            .ctx
            .replica_states
            .iter()
            .filter(|(r, s)| r.replica == broker_id && **s == ReplicaState::DeletionStarted)
            .map(|(r, _)| r.clone())
            .collect();
        let mut succeeded = Vec::new();
        let mut failed = Vec::new();
        for r in started {
            let entry = response.partition_errors.iter().find(|p| {
                p.topic_name.0.as_str() == r.tp.topic && p.partition_index == r.tp.partition
            });
            match entry {
                _ if response.error_code != 0 => failed.push(r),
                Some(p) if p.error_code != 0 => failed.push(r),
                Some(_) => succeeded.push(r),
                // Not in this response (it answered a StopReplica without delete).
                None => {}
            }
        }
        if !failed.is_empty() {
            self.topic_deletion_manager()
                .fail_replica_deletion(&failed)
                .await?;
        }
        if !succeeded.is_empty() {
            self.topic_deletion_manager()
                .complete_replica_deletion(&succeeded)
                .await?;
        }
        Ok(())
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

    // ---- controlled shutdown ---------------------------------------------------------------

    /// A broker asks to be drained before it stops (Kafka's `processControlledShutdown`): it
    /// is answered with what it still leads, or with why not.
    async fn process_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
        reply: oneshot::Sender<ControlledShutdownReply>,
    ) -> Result<()> {
        let (answer, outcome) = match self.do_controlled_shutdown(broker_id, broker_epoch).await {
            Ok(remaining) => (Ok(remaining), Ok(())),
            Err(ShutdownFailure::Reply(err)) => (Err(err), Ok(())),
            Err(ShutdownFailure::Controller(e)) => {
                let err = match &e {
                    Error::ControllerMoved => ControlledShutdownError::NotController,
                    inner => ControlledShutdownError::Failed(inner.to_string()),
                };
                (Err(err), Err(e))
            }
        };
        let _ = reply.send(answer);
        outcome
    }

    /// Kafka's `doControlledShutdown` (reference §2.13): move leadership away from the broker,
    /// drop it from the ISRs, answer with what it still leads.
    async fn do_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> std::result::Result<Vec<TopicPartition>, ShutdownFailure> {
        if !self.is_active() {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::NotController,
            ));
        }
        let Some(info) = self.core.ctx.live_brokers.get(&broker_id) else {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::BrokerNotAvailable(broker_id),
            ));
        };
        if broker_epoch != -1 && broker_epoch < info.broker_epoch {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::StaleBrokerEpoch {
                    given: broker_epoch,
                    current: info.broker_epoch,
                },
            ));
        }
        info!(
            broker_id,
            controller_epoch = self.core.ctx.epoch,
            "controlled shutdown requested"
        );
        self.core.ctx.shutting_down_broker_ids.insert(broker_id);
        let eligible: Vec<TopicPartition> = self
            .core
            .ctx
            .all_partitions()
            .into_iter()
            .filter(|tp| {
                let r = self.core.ctx.replicas(tp);
                r.contains(&broker_id)
                    && r.len() > 1
                    && self.core.ctx.leadership.contains_key(tp)
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .collect();
        let (led, followed): (Vec<_>, Vec<_>) = eligible.into_iter().partition(|tp| {
            self.core
                .ctx
                .leadership
                .get(tp)
                .is_some_and(|l| l.leader_and_isr.leader == broker_id)
        });
        self.partition_state_machine()
            .handle_state_changes(
                &led,
                PartitionState::Online,
                Some(ElectionStrategy::ControlledShutdown),
            )
            .await
            .map_err(ShutdownFailure::Controller)?;
        if !followed.is_empty() {
            self.core
                .batch
                .new_batch()
                .map_err(ShutdownFailure::Controller)?;
            for tp in &followed {
                self.core
                    .batch
                    .add_stop_replica(&self.core.ctx, &[broker_id], tp, false);
            }
            self.core.send_batch();
            let replicas: Vec<PartitionAndReplica> = followed
                .iter()
                .map(|tp| PartitionAndReplica {
                    tp: tp.clone(),
                    replica: broker_id,
                })
                .collect();
            self.replica_state_machine()
                .handle_state_changes(&replicas, ReplicaState::Offline)
                .await
                .map_err(ShutdownFailure::Controller)?;
        }
        let remaining: Vec<TopicPartition> = self
            .core
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                l.leader_and_isr.leader == broker_id
                    && self.core.ctx.replicas(tp).len() > 1
                    && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        info!(
            broker_id,
            remaining_partitions = remaining.len(),
            "controlled shutdown handled"
        );
        Ok(remaining)
    }

    // ---- AlterPartition --------------------------------------------------------------------

    /// A leader asks to change ISRs (Kafka's `processAlterPartition`). Kafka answers first,
    /// then checks whether an accepted ISR expansion completes a reassignment.
    async fn process_alter_partition(&mut self, req: AlterPartitionRequest) -> Result<()> {
        let reply = match self.try_process_alter_partition(&req).await {
            Ok(reply) => reply,
            Err(e) => {
                let _ = req
                    .reply
                    .send(Err(crate::alter_partition::codes::NOT_CONTROLLER));
                return Err(e);
            }
        };
        let accepted: Vec<TopicPartition> = match &reply {
            Ok(results) => results
                .iter()
                .filter(|(tp, r)| {
                    r.is_ok() && self.core.ctx.partitions_being_reassigned.contains(*tp)
                })
                .map(|(tp, _)| tp.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let _ = req.reply.send(reply);
        if self.is_active() {
            for tp in accepted {
                self.reassignment_manager()
                    .maybe_complete_reassignment(&tp)
                    .await?;
            }
        }
        Ok(())
    }

    /// Kafka's `tryProcessAlterPartition`: its checks, in Kafka's order (reference §2.14), then
    /// the fenced conditional writes.
    async fn try_process_alter_partition(
        &mut self,
        req: &AlterPartitionRequest,
    ) -> Result<AlterPartitionReply> {
        use crate::alter_partition::codes::*;
        if !self.is_active() {
            return Ok(Err(NOT_CONTROLLER));
        }
        match self.core.ctx.live_brokers.get(&req.broker_id) {
            Some(b) if b.broker_epoch == req.broker_epoch || req.broker_epoch == -1 => {}
            _ => return Ok(Err(STALE_BROKER_EPOCH)),
        }
        let mut results = BTreeMap::new();
        let mut writes = Vec::new();
        for item in &req.items {
            let Some(current) = self.core.ctx.leadership.get(&item.tp) else {
                results.insert(item.tp.clone(), Err(UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let l = &current.leader_and_isr;
            let code = if item.partition_epoch > l.partition_epoch
                || item.leader_epoch > l.leader_epoch
            {
                Some(NOT_CONTROLLER)
            } else if item.leader_epoch < l.leader_epoch {
                Some(FENCED_LEADER_EPOCH)
            } else if item.new_isr == l.isr && item.leader_recovery_state == l.leader_recovery_state
            {
                // Identical to the current state (a retry): success, nothing to write.
                results.insert(item.tp.clone(), Ok(l.clone()));
                continue;
            } else if item.partition_epoch < l.partition_epoch {
                Some(INVALID_UPDATE_VERSION)
            } else if item.leader_recovery_state == 1
                && (item.new_isr.len() > 1 || l.leader_recovery_state == 0)
            {
                // RECOVERING with more than one ISR member, or RECOVERED -> RECOVERING.
                Some(INVALID_REQUEST)
            } else if item.new_isr.iter().any(|b| !self.core.ctx.is_live(*b)) {
                Some(if req.version >= 2 {
                    INELIGIBLE_REPLICA
                } else {
                    OPERATION_NOT_ATTEMPTED
                })
            } else {
                None
            };
            if let Some(code) = code {
                results.insert(item.tp.clone(), Err(code));
                continue;
            }
            writes.push((
                item.tp.clone(),
                LeaderIsrAndControllerEpoch {
                    leader_and_isr: LeaderAndIsr {
                        leader: req.broker_id,
                        leader_epoch: l.leader_epoch,
                        isr: item.new_isr.clone(),
                        leader_recovery_state: item.leader_recovery_state,
                        partition_epoch: l.partition_epoch,
                    },
                    controller_epoch: self.core.ctx.epoch,
                },
            ));
        }
        if !writes.is_empty() {
            let written = self
                .core
                .zk
                .update_leader_and_isr(&writes, self.core.ctx.epoch_zk_version)
                .await?;
            let mut changed = Vec::new();
            for (tp, state) in writes {
                match written.get(&tp) {
                    Some(UpdateLeaderAndIsrResult::Updated(v)) => {
                        let state =
                            self.core
                                .apply_isr_write(&tp, state, *v, IsrWrite::AlterPartition);
                        results.insert(tp.clone(), Ok(state.leader_and_isr));
                        changed.push(tp);
                    }
                    _ => {
                        results.insert(tp, Err(INVALID_UPDATE_VERSION));
                    }
                }
            }
            if !changed.is_empty() {
                self.core.send_update_metadata_to_all(&changed)?;
            }
        }
        Ok(Ok(results))
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

/// Why a controlled shutdown could not be served.
enum ShutdownFailure {
    /// Answer the broker with this error; the controller itself is fine.
    Reply(ControlledShutdownError),
    /// The controller hit an error (possibly ControllerMoved) that `process` must handle.
    Controller(Error),
}

/// Topic znode content -> the context's per-partition assignment.
pub(crate) fn assignment_map(a: &TopicAssignment) -> BTreeMap<i32, ReplicaAssignment> {
    a.partitions
        .iter()
        .map(|(p, r)| {
            (
                *p,
                ReplicaAssignment {
                    replicas: r.clone(),
                    adding_replicas: a.adding_replicas.get(p).cloned().unwrap_or_default(),
                    removing_replicas: a.removing_replicas.get(p).cloned().unwrap_or_default(),
                },
            )
        })
        .collect()
}
