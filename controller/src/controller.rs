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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::channel::{ControllerChannel, RequestBatch};
use crate::context::{ControllerContext, PartitionAndReplica, ReplicaAssignment};
use crate::error::{Error, Result};
use crate::event::{
    ControlledShutdownError, ControlledShutdownReply, ControllerEvent, EventSender,
};
use crate::event_loop::SharedState;
use crate::partition_state::{ElectionStrategy, PartitionState};
use crate::replica_state::ReplicaState;
use crate::zk::backend::{Watch, WatchKind};
use crate::zk::client::{ElectionResult, KafkaZkClient};
use crate::zk::data::{
    decode_uuid, random_uuid_string, BrokerIdZNode, BrokerIds, BrokerInfo, DeleteTopicsZNode,
    IsrChangeNotificationZNode, TopicAssignment, TopicPartition, Topics,
};
use crate::ControllerConfig;

/// Pause before contesting again after an election attempt failed on a ZooKeeper error.
const ELECTION_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// One broker's controller: the state of the active controller plus the election machinery.
pub struct KafkaController {
    pub(crate) config: ControllerConfig,
    pub(crate) zk: KafkaZkClient,
    /// This broker's registration czxid (not used for decisions; kept for logs and Kafka parity).
    pub(crate) broker_epoch: i64,
    /// Everything the active controller knows; reset on resignation.
    pub(crate) ctx: ControllerContext,
    /// Requests collected by the current state-machine call.
    pub(crate) batch: RequestBatch,
    /// Per-broker queues (real sockets, or a recorder in tests).
    pub(crate) channel: Box<dyn ControllerChannel>,
    /// Our own queue, for watch tasks and timers.
    pub(crate) events: EventSender,
    /// The pending auto leader rebalance check (Kafka's `auto-leader-rebalance-task`);
    /// cancelled on resignation.
    pub(crate) rebalance_timer: Option<JoinHandle<()>>,
    /// Flags the broker's `ControllerHandle` reads.
    shared: Arc<SharedState>,
    /// The controller this broker believes is active (Kafka's `activeControllerId`).
    active_controller_id: Option<i32>,
    /// Watch tasks of the active controller, by path; aborted on resignation.
    watches: HashMap<String, JoinHandle<()>>,
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
            config,
            zk,
            broker_epoch,
            ctx: ControllerContext::default(),
            batch: RequestBatch::default(),
            channel,
            events,
            shared,
            active_controller_id: None,
            rebalance_timer: None,
            watches: HashMap::new(),
            controller_watch: None,
        }
    }

    /// True while this broker is the active controller: `/controller` names it *and* it won an
    /// epoch (a `/controller` left by this broker's previous session does not count).
    pub fn is_active(&self) -> bool {
        self.active_controller_id == Some(self.config.broker_id) && self.ctx.epoch > 0
    }

    /// The controller's in-memory state (read-only, for tests and diagnostics).
    pub fn context(&self) -> &ControllerContext {
        &self.ctx
    }

    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch
    }

    /// Refreshes the gauges the handle reports (Kafka's `updateMetrics`).
    pub fn update_metrics(&self) {
        let (offline, global, imbalance) = if self.is_active() {
            let mut offline = 0;
            let mut imbalance = 0;
            let mut global = 0;
            for (tp, state) in &self.ctx.partition_states {
                if self.ctx.is_topic_queued_for_deletion(&tp.topic) {
                    continue;
                }
                global += 1;
                if *state != PartitionState::Online {
                    offline += 1;
                }
                let preferred = self.ctx.replicas(tp).first().copied();
                let leader = self.ctx.leadership.get(tp).map(|l| l.leader_and_isr.leader);
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

    /// Processes one event to completion (Kafka's `ControllerEventProcessor.process`).
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
            } => match self.zk.register_broker(&registration).await {
                Ok(epoch) => {
                    self.broker_epoch = epoch;
                    self.shared.broker_epoch.store(epoch, Ordering::SeqCst);
                    let _ = reply.send(Ok(epoch));
                    self.process_reelect().await
                }
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                    Err(e.into())
                }
            },
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
                let r = self
                    .process_controlled_shutdown(broker_id, broker_epoch)
                    .await;
                let (answer, outcome) = match r {
                    Ok(remaining) => (Ok(remaining), Ok(())),
                    Err(e) => {
                        let answer: ControlledShutdownReply = Err(match &e {
                            ShutdownFailure::Reply(err) => err.clone(),
                            ShutdownFailure::Controller(Error::ControllerMoved) => {
                                ControlledShutdownError::NotController
                            }
                            ShutdownFailure::Controller(inner) => {
                                ControlledShutdownError::Failed(inner.to_string())
                            }
                        });
                        let outcome = match e {
                            ShutdownFailure::Controller(inner) => Err(inner),
                            ShutdownFailure::Reply(_) => Ok(()),
                        };
                        (answer, outcome)
                    }
                };
                let _ = reply.send(answer);
                outcome
            }
            ControllerEvent::AlterPartition(req) => {
                let req = *req;
                match self.process_alter_partition(&req).await {
                    Ok(reply) => {
                        // Kafka answers first, then checks whether an accepted ISR expansion
                        // completes a reassignment.
                        let accepted: Vec<TopicPartition> = match &reply {
                            Ok(results) => results
                                .iter()
                                .filter(|(tp, r)| {
                                    r.is_ok() && self.ctx.partitions_being_reassigned.contains(*tp)
                                })
                                .map(|(tp, _)| tp.clone())
                                .collect(),
                            Err(_) => Vec::new(),
                        };
                        let _ = req.reply.send(reply);
                        let mut outcome = Ok(());
                        for tp in accepted {
                            outcome = self.maybe_complete_reassignment(&tp).await;
                            if outcome.is_err() {
                                break;
                            }
                        }
                        outcome
                    }
                    Err(e) => {
                        let _ = req
                            .reply
                            .send(Err(crate::alter_partition::codes::NOT_CONTROLLER));
                        Err(e)
                    }
                }
            }
            ControllerEvent::LeaderAndIsrResponseReceived {
                broker_id,
                response,
            } => {
                self.process_leader_and_isr_response(broker_id, &response);
                Ok(())
            }
            ControllerEvent::UpdateMetadataResponseReceived {
                broker_id,
                error_code,
            } => {
                if error_code != 0 {
                    warn!(
                        target_broker_id = broker_id,
                        error_code, "UpdateMetadata answered with an error"
                    );
                }
                Ok(())
            }
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
                self.process_zk_partition_reassignment().await.map(|_| ())
            }
            ControllerEvent::ApiPartitionReassignment {
                reassignments,
                reply,
            } => match self.process_api_partition_reassignment(reassignments).await {
                Ok(r) => {
                    let _ = reply.send(r);
                    Ok(())
                }
                Err(e) => {
                    let _ = reply.send(Err(match e {
                        Error::ControllerMoved | Error::NotController => {
                            crate::error::codes::NOT_CONTROLLER
                        }
                        _ => crate::error::codes::UNKNOWN_SERVER_ERROR,
                    }));
                    Err(e)
                }
            },
            ControllerEvent::ListPartitionReassignments { partitions, reply } => {
                let _ = reply.send(self.process_list_partition_reassignments(partitions));
                Ok(())
            }
            ControllerEvent::Shutdown { done } => {
                self.shutdown().await;
                let _ = done.send(());
                Ok(())
            }
        };
        match result {
            Ok(()) => {}
            Err(Error::ControllerMoved) => {
                info!(
                    event = name,
                    controller_epoch = self.ctx.epoch,
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
            Err(Error::IllegalState(msg)) => {
                error!(event = name, reason = %msg, "illegal controller state; resigning");
                self.trigger_controller_move().await;
            }
            Err(e) => {
                error!(event = name, error = %e, "error processing controller event");
                // Without a /controller watch this broker would never contest again: retry the
                // election after a pause (ZooKeeper was probably unreachable for a moment).
                if matches!(name, "Startup" | "Reelect" | "RegisterBrokerAndReelect")
                    && self.active_controller_id.is_none()
                {
                    let events = self.events.clone();
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

    fn spawn_watch(
        &mut self,
        key: String,
        watch: Watch,
        on_fire: impl FnOnce(WatchKind) -> Option<ControllerEvent> + Send + 'static,
    ) -> JoinHandle<()> {
        let events = self.events.clone();
        let _ = &key;
        tokio::spawn(async move {
            let kind = watch.await;
            if let Some(e) = on_fire(kind) {
                let _ = events.send(e);
            }
        })
    }

    /// Stops a watch task of the active controller.
    pub(crate) fn unarm_watch(&mut self, key: &str) {
        if let Some(h) = self.watches.remove(key) {
            h.abort();
        }
    }

    /// Arms a watch of the active controller (replacing the previous one on the same path).
    pub(crate) fn arm_watch(
        &mut self,
        key: String,
        watch: Watch,
        on_fire: impl FnOnce(WatchKind) -> Option<ControllerEvent> + Send + 'static,
    ) {
        let h = self.spawn_watch(key.clone(), watch, on_fire);
        if let Some(old) = self.watches.insert(key, h) {
            old.abort();
        }
    }

    async fn arm_controller_watch(&mut self) -> Result<()> {
        let w = self.zk.watch_controller().await?;
        let h = self.spawn_watch("/controller".into(), w, |kind| match kind {
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
        if let Ok(Some((epoch, _))) = self.zk.get_controller_epoch().await {
            self.shared.controller_epoch.store(epoch, Ordering::SeqCst);
        }
    }

    async fn process_startup(&mut self) -> Result<()> {
        self.arm_controller_watch().await?;
        self.elect().await
    }

    async fn process_reelect(&mut self) -> Result<()> {
        self.arm_controller_watch().await?;
        self.maybe_resign().await?;
        self.elect().await
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
        let id = self.zk.get_controller_id().await?;
        self.set_active_controller(id);
        if was_active && !self.is_active() {
            self.on_controller_resignation();
        }
        Ok(())
    }

    /// Kafka's `elect()` (reference §2.2).
    async fn elect(&mut self) -> Result<()> {
        let broker_id = self.config.broker_id;
        let current = self.zk.get_controller_id().await?;
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
            .zk
            .register_controller_and_increment_epoch(broker_id)
            .await
        {
            Ok(ElectionResult::Won {
                epoch,
                epoch_zk_version,
            }) => {
                self.ctx.epoch = epoch;
                self.ctx.epoch_zk_version = epoch_zk_version;
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
                Err(e.into())
            }
        }
    }

    /// Resigns and deletes `/controller` (fenced) so that a new election happens (Kafka's
    /// `triggerControllerMove`).
    async fn trigger_controller_move(&mut self) {
        let version = self.ctx.epoch_zk_version;
        let was_active = self.is_active();
        if was_active {
            self.on_controller_resignation();
        }
        self.set_active_controller(None);
        if was_active {
            if let Err(e) = self.zk.delete_controller(version).await {
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
        self.zk.ensure_feature_znode().await?;
        // 2. (watches armed by the reads below, which re-arm on every read)
        let (broker_ids, w) = self.zk.get_children_and_watch(BrokerIds::path()).await?;
        self.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let (topics, w) = self.zk.get_children_and_watch(Topics::path()).await?;
        self.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let (deletions, w) = self
            .zk
            .get_children_and_watch(DeleteTopicsZNode::path())
            .await?;
        self.arm_watch(DeleteTopicsZNode::path().into(), w, |_| {
            Some(ControllerEvent::TopicDeletion)
        });
        // 3.
        self.zk
            .delete_children(
                IsrChangeNotificationZNode::path(),
                self.ctx.epoch_zk_version,
            )
            .await?;
        // 4.
        let registrations_read = started.elapsed();
        let brokers = self.zk.get_all_brokers().await?;
        debug!(
            registered = broker_ids.len(),
            read = brokers.len(),
            "read brokers"
        );
        for b in &brokers {
            self.ctx.live_brokers.insert(b.id(), b.clone());
            self.channel.add_broker(b);
        }
        let ids: Vec<i32> = brokers.iter().map(|b| b.id()).collect();
        for id in ids {
            self.watch_broker(id).await?;
        }
        // Every topic's assignment read at once (Kafka's `getReplicaAssignmentForTopics`
        // pipelines its getData requests), then applied one after the other.
        let reads = {
            let zk = &self.zk;
            futures::future::join_all(topics.iter().map(|t| zk.get_topic_assignment_and_watch(t)))
                .await
        };
        for (t, read) in topics.iter().zip(reads) {
            self.apply_topic_assignment(t, read?).await?;
        }
        let assignments_read = started.elapsed();
        let partitions = self.ctx.all_partitions();
        let states = self.zk.get_partition_states(&partitions).await?;
        let states_read = started.elapsed();
        self.ctx.leadership.extend(states);
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        info!(
            controller_epoch = self.ctx.epoch,
            partitions = partitions.len(),
            elapsed_ms = ms(started.elapsed()),
            watches_and_cleanup_ms = ms(registrations_read),
            brokers_and_assignments_ms = ms(assignments_read - registrations_read),
            partition_states_ms = ms(states_read - assignments_read),
            "controller context loaded"
        );
        // 5.
        let existing: BTreeSet<String> = self.ctx.all_topics.clone();
        let (queued, unknown): (Vec<String>, Vec<String>) =
            deletions.into_iter().partition(|t| existing.contains(t));
        if !unknown.is_empty() {
            self.zk
                .delete_topic_deletion_markers(&unknown, self.ctx.epoch_zk_version)
                .await?;
        }
        if !self.config.delete_topic_enable {
            self.zk
                .delete_topic_deletion_markers(&queued, self.ctx.epoch_zk_version)
                .await?;
        } else {
            for t in queued {
                // Replicas on dead brokers, or a reassignment in flight, make a topic
                // ineligible until they return or it completes.
                let dead = self
                    .ctx
                    .replicas_for_topic(&t)
                    .iter()
                    .any(|r| !self.ctx.is_replica_online(r.replica));
                let reassigning = self
                    .ctx
                    .partitions_being_reassigned
                    .iter()
                    .any(|tp| tp.topic == t);
                if dead || reassigning {
                    self.ctx.topics_ineligible_for_deletion.insert(t.clone());
                }
                self.ctx.topics_to_be_deleted.insert(t);
            }
        }
        // 6.
        let live: Vec<i32> = self
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .collect();
        self.send_update_metadata(&live, &[])?;
        // 7. Replica state machine startup (Kafka's `ReplicaStateMachine.startup`).
        let mut online = Vec::new();
        let mut offline = Vec::new();
        for tp in self.ctx.all_partitions() {
            for r in self.ctx.replicas(&tp).to_vec() {
                let pr = PartitionAndReplica {
                    tp: tp.clone(),
                    replica: r,
                };
                if self.ctx.is_replica_online(r) {
                    self.ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::Online);
                    online.push(pr);
                } else {
                    self.ctx
                        .replica_states
                        .insert(pr.clone(), ReplicaState::DeletionIneligible);
                    offline.push(pr);
                }
            }
        }
        self.handle_replica_state_changes(&online, ReplicaState::Online)
            .await?;
        self.handle_replica_state_changes(&offline, ReplicaState::Offline)
            .await?;
        // 8. Partition state machine startup (Kafka's `PartitionStateMachine.startup`).
        for tp in self.ctx.all_partitions() {
            let state = match self.ctx.leadership.get(&tp) {
                None => PartitionState::New,
                Some(l) if self.ctx.is_replica_online(l.leader_and_isr.leader) => {
                    PartitionState::Online
                }
                Some(_) => PartitionState::Offline,
            };
            self.ctx.partition_states.insert(tp, state);
        }
        self.trigger_online_partition_state_change().await?;
        // 9.
        self.initialize_partition_reassignments().await?;
        self.resume_deletions().await?;
        self.resume_pending_preferred_replica_elections().await?;
        if self.config.auto_leader_rebalance_enable {
            self.schedule_auto_leader_rebalance_task(
                crate::preferred_election::FIRST_AUTO_REBALANCE_DELAY,
            );
        }
        info!(
            controller_epoch = self.ctx.epoch,
            live_brokers = ?self.ctx.live_broker_ids(),
            topics = self.ctx.all_topics.len(),
            partitions = self.ctx.partition_states.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "controller failover complete"
        );
        Ok(())
    }

    /// Reads one topic's assignment (with a data watch) into the context, back-filling a
    /// missing topic id (fenced write), as Kafka does at IBP >= 2.8.
    async fn load_topic(&mut self, topic: &str) -> Result<bool> {
        let read = self.zk.get_topic_assignment_and_watch(topic).await?;
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
        self.arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
            WatchKind::DataChanged => Some(ControllerEvent::PartitionModifications { topic: t }),
            _ => None,
        });
        let id = match a.topic_id.as_deref().and_then(decode_uuid) {
            Some(id) => id,
            None => {
                let s = random_uuid_string();
                a.topic_id = Some(s.clone());
                self.zk
                    .set_topic_assignment(topic, &a, Some(self.ctx.epoch_zk_version))
                    .await?;
                info!(topic, topic_id = %s, "back-filled topic id");
                decode_uuid(&s).unwrap_or_default()
            }
        };
        self.ctx.all_topics.insert(topic.to_string());
        self.ctx.topic_ids.insert(topic.to_string(), id);
        let map = assignment_map(&a);
        for (p, r) in &map {
            if r.is_being_reassigned() {
                self.ctx
                    .partitions_being_reassigned
                    .insert(TopicPartition::new(topic, *p));
            }
        }
        self.ctx.assignments.insert(topic.to_string(), map);
        Ok(true)
    }

    async fn watch_broker(&mut self, broker_id: i32) -> Result<()> {
        let path = BrokerIdZNode::path(broker_id);
        match self.zk.backend().get_data_and_watch(path.clone()).await {
            Ok((_, _, w)) => {
                self.arm_watch(path, w, move |kind| match kind {
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
        let epoch = self.ctx.epoch;
        for (_, h) in self.watches.drain() {
            h.abort();
        }
        self.cancel_auto_leader_rebalance_task();
        self.channel.shutdown();
        self.batch.clear();
        self.ctx = ControllerContext::default();
        self.shared.is_active.store(false, Ordering::SeqCst);
        info!(
            broker_id = self.config.broker_id,
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
        for (_, h) in self.watches.drain() {
            h.abort();
        }
        self.channel.shutdown();
    }

    // ---- helpers used by the state machines ------------------------------------------------

    pub(crate) fn assignment(&self, tp: &TopicPartition) -> ReplicaAssignment {
        self.ctx
            .assignments
            .get(&tp.topic)
            .and_then(|m| m.get(&tp.partition))
            .cloned()
            .unwrap_or_default()
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

    // ---- broker membership -----------------------------------------------------------------

    /// `/brokers/ids` children changed: new, dead and bounced brokers (reference §2.4).
    async fn process_broker_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (_, w) = self.zk.get_children_and_watch(BrokerIds::path()).await?;
        self.arm_watch(BrokerIds::path().into(), w, |_| {
            Some(ControllerEvent::BrokerChange)
        });
        let current: BTreeMap<i32, BrokerInfo> = self
            .zk
            .get_all_brokers()
            .await?
            .into_iter()
            .map(|b| (b.id(), b))
            .collect();
        let known = self.ctx.live_or_shutting_down_broker_ids();
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
                self.ctx
                    .live_brokers
                    .get(id)
                    .is_some_and(|old| b.broker_epoch > old.broker_epoch)
            })
            .map(|(id, _)| *id)
            .collect();
        info!(
            controller_epoch = self.ctx.epoch,
            new_brokers = ?new,
            dead_brokers = ?dead,
            bounced_brokers = ?bounced,
            live_brokers = ?current.keys().collect::<Vec<_>>(),
            "broker membership changed"
        );
        for id in &new {
            let b = &current[id];
            self.channel.add_broker(b);
            self.ctx.live_brokers.insert(*id, b.clone());
        }
        for id in bounced.iter().chain(dead.iter()) {
            self.channel.remove_broker(*id);
            self.ctx.live_brokers.remove(id);
        }
        if !new.is_empty() {
            self.on_broker_startup(&new).await?;
        }
        if !bounced.is_empty() {
            self.on_broker_failure(&bounced).await?;
            for id in &bounced {
                let b = &current[id];
                self.channel.add_broker(b);
                self.ctx.live_brokers.insert(*id, b.clone());
            }
            self.on_broker_startup(&bounced).await?;
        }
        if !dead.is_empty() {
            for id in &dead {
                if let Some(h) = self.watches.remove(&BrokerIdZNode::path(*id)) {
                    h.abort();
                }
            }
            self.on_broker_failure(&dead).await?;
            info!(
                controller_epoch = self.ctx.epoch,
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
            .ctx
            .live_or_shutting_down_broker_ids()
            .into_iter()
            .filter(|b| !new.contains(b))
            .collect();
        self.send_update_metadata(&existing, &[])?;
        let with_leader: Vec<TopicPartition> = self.ctx.leadership.keys().cloned().collect();
        let new_ids: Vec<i32> = new.iter().copied().collect();
        self.send_update_metadata(&new_ids, &with_leader)?;
        let replicas = self.ctx.replicas_on_brokers(new);
        let (for_deletion, others): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        self.handle_replica_state_changes(&others, ReplicaState::Online)
            .await?;
        self.trigger_online_partition_state_change().await?;
        self.maybe_resume_reassignments(|_, a| a.target_replicas().iter().any(|r| new.contains(r)))
            .await?;
        if !for_deletion.is_empty() {
            let topics: BTreeSet<String> =
                for_deletion.iter().map(|r| r.tp.topic.clone()).collect();
            self.resume_deletion_for_topics(&topics).await?;
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
            self.ctx.shutting_down_broker_ids.remove(id);
        }
        let replicas = self.ctx.replicas_on_brokers(dead);
        let (for_deletion, not_for_deletion): (Vec<_>, Vec<_>) = replicas
            .into_iter()
            .partition(|r| self.ctx.is_topic_queued_for_deletion(&r.tp.topic));
        let offline_leader: Vec<TopicPartition> = self
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                !self.ctx.is_replica_online(l.leader_and_isr.leader)
                    && !self.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .map(|(tp, _)| tp.clone())
            .collect();
        self.handle_partition_state_changes(&offline_leader, PartitionState::Offline, None)
            .await?;
        self.trigger_online_partition_state_change().await?;
        self.handle_replica_state_changes(&not_for_deletion, ReplicaState::Offline)
            .await?;
        if !for_deletion.is_empty() {
            self.fail_replica_deletion(&for_deletion).await?;
        }
        if offline_leader.is_empty() && not_for_deletion.is_empty() {
            let live: Vec<i32> = self
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    /// A broker rewrote its registration: refresh endpoints and tell everyone.
    async fn process_broker_modifications(&mut self, broker_id: i32) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        self.watch_broker(broker_id).await?;
        let Some(b) = self.zk.get_broker(broker_id).await? else {
            return Ok(());
        };
        let changed = self
            .ctx
            .live_brokers
            .get(&broker_id)
            .is_some_and(|old| old.registration.endpoints != b.registration.endpoints);
        if changed {
            info!(broker_id, endpoints = ?b.registration.endpoints, "broker endpoints changed");
            self.ctx.live_brokers.insert(broker_id, b.clone());
            self.channel.add_broker(&b);
            let live: Vec<i32> = self
                .ctx
                .live_or_shutting_down_broker_ids()
                .into_iter()
                .collect();
            self.send_update_metadata(&live, &[])?;
        }
        Ok(())
    }

    // ---- topics ----------------------------------------------------------------------------

    /// `/brokers/topics` children changed: new topics get their partitions created.
    async fn process_topic_change(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let (topics, w) = self.zk.get_children_and_watch(Topics::path()).await?;
        self.arm_watch(Topics::path().into(), w, |_| {
            Some(ControllerEvent::TopicChange)
        });
        let current: BTreeSet<String> = topics.into_iter().collect();
        let new: Vec<String> = current
            .iter()
            .filter(|t| !self.ctx.all_topics.contains(*t))
            .cloned()
            .collect();
        let deleted: Vec<String> = self
            .ctx
            .all_topics
            .iter()
            .filter(|t| !current.contains(*t))
            .cloned()
            .collect();
        for t in &deleted {
            if let Some(h) = self.watches.remove(&format!("topic:{t}")) {
                h.abort();
            }
            self.ctx.remove_topic(t);
        }
        let mut new_partitions = Vec::new();
        for t in &new {
            if self.load_topic(t).await? {
                new_partitions.extend(self.ctx.partitions_for_topic(t));
            }
        }
        if !new.is_empty() || !deleted.is_empty() {
            info!(
                controller_epoch = self.ctx.epoch,
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
            controller_epoch = self.ctx.epoch,
            partitions = partitions.len(),
            "new partition creation"
        );
        let replicas: Vec<PartitionAndReplica> = partitions
            .iter()
            .flat_map(|tp| {
                self.ctx
                    .replicas(tp)
                    .iter()
                    .map(|r| PartitionAndReplica {
                        tp: tp.clone(),
                        replica: *r,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        self.handle_partition_state_changes(partitions, PartitionState::New, None)
            .await?;
        self.handle_replica_state_changes(&replicas, ReplicaState::New)
            .await?;
        self.handle_partition_state_changes(
            partitions,
            PartitionState::Online,
            Some(ElectionStrategy::Offline {
                allow_unclean: false,
            }),
        )
        .await?;
        self.handle_replica_state_changes(&replicas, ReplicaState::Online)
            .await?;
        Ok(())
    }

    /// A topic znode changed: partitions that are new get created; a topic being deleted gets
    /// its old assignment written back (Kafka refuses to add partitions to it).
    async fn process_partition_modifications(&mut self, topic: &str) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        let Some((a, w)) = self.zk.get_topic_assignment_and_watch(topic).await? else {
            return Ok(());
        };
        let t = topic.to_string();
        self.arm_watch(format!("topic:{topic}"), w, move |kind| match kind {
            WatchKind::DataChanged => Some(ControllerEvent::PartitionModifications { topic: t }),
            _ => None,
        });
        let known = self.ctx.assignments.get(topic).cloned().unwrap_or_default();
        let added: Vec<i32> = a
            .partitions
            .keys()
            .filter(|p| !known.contains_key(p))
            .copied()
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        if self.ctx.is_topic_queued_for_deletion(topic) {
            warn!(
                topic,
                "partitions added to a topic being deleted; restoring the old assignment"
            );
            let mut restored = a.clone();
            restored.partitions.retain(|p, _| known.contains_key(p));
            self.zk
                .set_topic_assignment(topic, &restored, Some(self.ctx.epoch_zk_version))
                .await?;
            return Ok(());
        }
        info!(topic, added_partitions = ?added, "partitions added");
        let map = assignment_map(&a);
        let entry = self.ctx.assignments.entry(topic.to_string()).or_default();
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

    // ---- responses -------------------------------------------------------------------------

    fn process_leader_and_isr_response(
        &mut self,
        broker_id: i32,
        response: &kafka_protocol::messages::LeaderAndIsrResponse,
    ) {
        if response.error_code != 0 {
            warn!(
                target_broker_id = broker_id,
                error_code = response.error_code,
                "LeaderAndIsr answered with an error"
            );
            return;
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
    }

    // ---- controlled shutdown ---------------------------------------------------------------

    /// Kafka's `doControlledShutdown` (reference §2.13): move leadership away from the broker,
    /// drop it from the ISRs, answer with what it still leads.
    async fn process_controlled_shutdown(
        &mut self,
        broker_id: i32,
        broker_epoch: i64,
    ) -> std::result::Result<Vec<TopicPartition>, ShutdownFailure> {
        if !self.is_active() {
            return Err(ShutdownFailure::Reply(
                ControlledShutdownError::NotController,
            ));
        }
        let Some(info) = self.ctx.live_brokers.get(&broker_id) else {
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
            controller_epoch = self.ctx.epoch,
            "controlled shutdown requested"
        );
        self.ctx.shutting_down_broker_ids.insert(broker_id);
        let eligible: Vec<TopicPartition> = self
            .ctx
            .all_partitions()
            .into_iter()
            .filter(|tp| {
                let r = self.ctx.replicas(tp);
                r.contains(&broker_id)
                    && r.len() > 1
                    && self.ctx.leadership.contains_key(tp)
                    && !self.ctx.is_topic_queued_for_deletion(&tp.topic)
            })
            .collect();
        let (led, followed): (Vec<_>, Vec<_>) = eligible.into_iter().partition(|tp| {
            self.ctx
                .leadership
                .get(tp)
                .is_some_and(|l| l.leader_and_isr.leader == broker_id)
        });
        self.handle_partition_state_changes(
            &led,
            PartitionState::Online,
            Some(ElectionStrategy::ControlledShutdown),
        )
        .await
        .map_err(ShutdownFailure::Controller)?;
        if !followed.is_empty() {
            self.batch
                .new_batch()
                .map_err(ShutdownFailure::Controller)?;
            for tp in &followed {
                self.batch
                    .add_stop_replica(&self.ctx, &[broker_id], tp, false);
            }
            self.send_batch();
            let replicas: Vec<PartitionAndReplica> = followed
                .iter()
                .map(|tp| PartitionAndReplica {
                    tp: tp.clone(),
                    replica: broker_id,
                })
                .collect();
            self.handle_replica_state_changes(&replicas, ReplicaState::Offline)
                .await
                .map_err(ShutdownFailure::Controller)?;
        }
        let remaining: Vec<TopicPartition> = self
            .ctx
            .leadership
            .iter()
            .filter(|(tp, l)| {
                l.leader_and_isr.leader == broker_id
                    && self.ctx.replicas(tp).len() > 1
                    && !self.ctx.is_topic_queued_for_deletion(&tp.topic)
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
