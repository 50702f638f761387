//! Leader elections on demand and the automatic leader rebalance (Kafka's
//! `KafkaController.processReplicaLeaderElection`, `onReplicaElection` and
//! `checkAndTriggerAutoLeaderRebalance`).
//!
//! Kafka concept: the head of a partition's assignment is its *preferred* replica. Topic
//! creation spreads the preferred replicas evenly over the brokers, so leadership is balanced
//! while every partition is led by its preferred replica. Failures move leadership elsewhere;
//! a preferred election moves it back, but only to a preferred replica that is alive and in the
//! ISR (never losing acknowledged writes). Three triggers:
//!
//! - the ElectLeaders API (key 43): PREFERRED, or UNCLEAN (elect a leader for partitions whose
//!   leader is gone, out-of-sync replicas allowed, whatever the topic's config says);
//! - the creation of `/admin/preferred_replica_election` (the legacy tool path): elect, then
//!   delete the znode;
//! - a timer (`auto.leader.rebalance.enable`): every `leader.imbalance.check.interval.seconds`,
//!   per preferred broker, when the share of its partitions led by someone else exceeds
//!   `leader.imbalance.per.broker.percentage`, elect the preferred leaders that are eligible.
//!
//! Invariant: the timer task only enqueues `AutoPreferredReplicaLeaderElection`; all decisions
//! are made by the event loop, and the timer is cancelled on resignation.
//!
//! Simplifications: a malformed `/admin/preferred_replica_election` is logged and deleted (Kafka
//! leaves it in place, which blocks later requests until the controller moves).

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use crate::controller::KafkaController;
use crate::election;
use crate::error::{codes, Error, Result};
use crate::event::{
    not_controller_results, ControllerEvent, ElectLeadersResults, ElectionTrigger, ElectionType,
};
use crate::partition_state::{ElectionResults, ElectionStrategy};
use crate::state::PartitionState;
use crate::zk::backend::WatchKind;
use crate::zk::data::{LeaderAndIsr, PreferredReplicaElectionZNode, TopicPartition};

impl KafkaController {
    /// Kafka's `processReplicaLeaderElection`: the ElectLeaders API (`reply` set) or the
    /// `/admin/preferred_replica_election` znode (`partitions` = `None`).
    pub(super) async fn process_replica_leader_election(
        &mut self,
        partitions: Option<Vec<TopicPartition>>,
        election_type: ElectionType,
        trigger: ElectionTrigger,
        reply: Option<oneshot::Sender<ElectLeadersResults>>,
    ) -> Result<()> {
        if !self.is_active() {
            if let Some(reply) = reply {
                let _ = reply.send(not_controller_results(partitions.unwrap_or_default()));
            }
            return Ok(());
        }
        let partitions = match partitions {
            Some(p) => p,
            None => match self.read_preferred_replica_election().await? {
                Some(p) => p,
                None => return Ok(()),
            },
        };
        let asked = partitions.clone();
        match self
            .do_replica_leader_election(partitions, election_type, trigger)
            .await
        {
            Ok(results) => {
                if let Some(reply) = reply {
                    let _ = reply.send(results);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(reply) = reply {
                    let code = match e {
                        Error::ControllerMoved | Error::NotController => codes::NOT_CONTROLLER,
                        _ => codes::UNKNOWN_SERVER_ERROR,
                    };
                    let msg = e.to_string();
                    let _ = reply.send(
                        asked
                            .into_iter()
                            .map(|tp| (tp, Err((code, Some(msg.clone())))))
                            .collect(),
                    );
                }
                Err(e)
            }
        }
    }

    /// Re-arms the existence watch on `/admin/preferred_replica_election` and reads it
    /// (Kafka's `registerZNodeChangeHandlerAndCheckExistence` + `getPreferredReplicaElection`).
    /// `None` if it does not exist (or was malformed and has been deleted).
    async fn read_preferred_replica_election(&mut self) -> Result<Option<Vec<TopicPartition>>> {
        let path = PreferredReplicaElectionZNode::path();
        let (exists, w) = self.core.zk.exists_and_watch(path).await?;
        // Kafka's PreferredReplicaElectionHandler reacts to creation only.
        self.core.arm_watch(path.into(), w, |kind| {
            (kind == WatchKind::Created).then_some(ControllerEvent::ReplicaLeaderElection {
                partitions: None,
                election_type: ElectionType::Preferred,
                trigger: ElectionTrigger::Zk,
                reply: None,
            })
        });
        if !exists {
            return Ok(None);
        }
        match self.core.zk.get_preferred_replica_election().await {
            Ok(p) => Ok(p),
            Err(zk::Error::BadZnode { path, reason }) => {
                error!(path = %path, reason = %reason, "malformed preferred replica election request; deleting it");
                self.core
                    .zk
                    .delete_preferred_replica_election(self.core.ctx.epoch_zk_version)
                    .await?;
                self.requeue_zk_preferred_election();
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn requeue_zk_preferred_election(&self) {
        // Re-arms the watch (the handler checks existence first), as Kafka re-queues the event.
        self.core.enqueue(ControllerEvent::ReplicaLeaderElection {
            partitions: None,
            election_type: ElectionType::Preferred,
            trigger: ElectionTrigger::Zk,
            reply: None,
        });
    }

    /// Sorts the requested partitions (unknown, being deleted, no election needed, electable),
    /// elects the electable ones and maps the outcome to Kafka's per-partition errors.
    async fn do_replica_leader_election(
        &mut self,
        partitions: Vec<TopicPartition>,
        election_type: ElectionType,
        trigger: ElectionTrigger,
    ) -> Result<ElectLeadersResults> {
        let mut results: ElectLeadersResults = BTreeMap::new();
        let mut electable = Vec::new();
        let requested: BTreeSet<TopicPartition> = partitions.into_iter().collect();
        for tp in requested {
            let replicas = self.core.ctx.replicas(&tp);
            if replicas.is_empty() {
                info!(topic = %tp.topic, partition = tp.partition, ?election_type, ?trigger,
                    "skipping leader election: partition does not exist");
                results.insert(
                    tp,
                    Err((
                        codes::UNKNOWN_TOPIC_OR_PARTITION,
                        Some("The partition does not exist.".into()),
                    )),
                );
                continue;
            }
            if self.core.ctx.is_topic_queued_for_deletion(&tp.topic) {
                warn!(topic = %tp.topic, partition = tp.partition, ?election_type, ?trigger,
                    "skipping leader election: topic is being deleted");
                results.insert(
                    tp,
                    Err((
                        codes::INVALID_TOPIC_EXCEPTION,
                        Some("The topic is being deleted".into()),
                    )),
                );
                continue;
            }
            let leader = self
                .core
                .ctx
                .leadership
                .get(&tp)
                .map_or(LeaderAndIsr::NO_LEADER, |l| l.leader_and_isr.leader);
            let needed = match election_type {
                ElectionType::Preferred => replicas.first() != Some(&leader),
                ElectionType::Unclean => {
                    leader == LeaderAndIsr::NO_LEADER || !self.core.ctx.is_live(leader)
                }
            };
            if needed {
                electable.push(tp);
            } else {
                results.insert(tp, Err((codes::ELECTION_NOT_NEEDED, None)));
            }
        }
        let elected = self
            .on_replica_election(&electable, election_type, trigger)
            .await?;
        let not_available = match election_type {
            ElectionType::Preferred => codes::PREFERRED_LEADER_NOT_AVAILABLE,
            ElectionType::Unclean => codes::ELIGIBLE_LEADERS_NOT_AVAILABLE,
        };
        for tp in electable {
            let r = match elected.get(&tp) {
                Some(Ok(l)) => Ok(l.leader),
                Some(Err(msg)) => Err((not_available, Some(msg.clone()))),
                None => Err((
                    codes::UNKNOWN_SERVER_ERROR,
                    Some(format!(
                        "invalid partition state change from {}",
                        self.core.ctx.partition_state(&tp)
                    )),
                )),
            };
            results.insert(tp, r);
        }
        Ok(results)
    }

    /// Kafka's `onReplicaElection`: partitions -> OnlinePartition with the preferred strategy
    /// (or, for UNCLEAN, the offline strategy with unclean allowed when an admin asked). For the
    /// znode and timer triggers, failures are logged and the znode request is cleared after.
    async fn on_replica_election(
        &mut self,
        partitions: &[TopicPartition],
        election_type: ElectionType,
        trigger: ElectionTrigger,
    ) -> Result<ElectionResults> {
        info!(
            controller_epoch = self.core.ctx.epoch,
            ?election_type,
            ?trigger,
            partitions = ?partitions.iter().map(|tp| tp.to_string()).collect::<Vec<_>>(),
            "starting replica leader election"
        );
        let strategy = match election_type {
            ElectionType::Preferred => ElectionStrategy::Preferred,
            ElectionType::Unclean => ElectionStrategy::Offline {
                allow_unclean: trigger == ElectionTrigger::AdminClient,
            },
        };
        let results = self
            .partition_state_machine()
            .handle_state_changes(partitions, PartitionState::Online, Some(strategy))
            .await?;
        if trigger != ElectionTrigger::AdminClient {
            for (tp, r) in &results {
                if let Err(e) = r {
                    error!(topic = %tp.topic, partition = tp.partition, ?election_type, error = %e,
                        "error completing replica leader election");
                }
            }
            self.remove_partitions_from_preferred_replica_election(
                partitions,
                trigger == ElectionTrigger::Auto,
            )
            .await?;
        }
        Ok(results)
    }

    /// Kafka's `removePartitionsFromPreferredReplicaElection`: logs each outcome; for the znode
    /// trigger deletes `/admin/preferred_replica_election` (fenced) and re-arms its watch.
    async fn remove_partitions_from_preferred_replica_election(
        &mut self,
        partitions: &[TopicPartition],
        triggered_by_auto_rebalance: bool,
    ) -> Result<()> {
        for tp in partitions {
            let leader = self
                .core
                .ctx
                .leadership
                .get(tp)
                .map(|l| l.leader_and_isr.leader);
            let preferred = self.core.ctx.replicas(tp).first().copied();
            if leader.is_some() && leader == preferred {
                info!(topic = %tp.topic, partition = tp.partition, leader,
                    "partition completed preferred replica leader election");
            } else {
                warn!(topic = %tp.topic, partition = tp.partition, leader, preferred,
                    "partition failed to complete preferred replica leader election");
            }
        }
        if !triggered_by_auto_rebalance {
            self.core
                .zk
                .delete_preferred_replica_election(self.core.ctx.epoch_zk_version)
                .await?;
            self.requeue_zk_preferred_election();
        }
        Ok(())
    }

    /// Failover step 9 (Kafka's `fetchPendingPreferredReplicaElections`): a request left in
    /// `/admin/preferred_replica_election` is run, minus partitions already led by their
    /// preferred replica, deleted, or of topics being deleted.
    pub(super) async fn resume_pending_preferred_replica_elections(&mut self) -> Result<()> {
        let Some(requested) = self.read_preferred_replica_election().await? else {
            return Ok(());
        };
        let pending: Vec<TopicPartition> =
            requested
                .into_iter()
                .filter(|tp| {
                    let replicas = self.core.ctx.replicas(tp);
                    let done =
                        replicas.is_empty()
                            || self.core.ctx.leadership.get(tp).is_some_and(|l| {
                                Some(&l.leader_and_isr.leader) == replicas.first()
                            });
                    !done && !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
                })
                .collect();
        info!(
            partitions = pending.len(),
            "resuming preferred replica election"
        );
        self.on_replica_election(&pending, ElectionType::Preferred, ElectionTrigger::Zk)
            .await?;
        Ok(())
    }

    /// Kafka's `processAutoPreferredReplicaLeaderElection`: check, then schedule the next check.
    pub(super) async fn process_auto_preferred_replica_leader_election(&mut self) -> Result<()> {
        if !self.is_active() {
            return Ok(());
        }
        info!(
            controller_epoch = self.core.ctx.epoch,
            "processing automatic preferred replica leader election"
        );
        let r = self.check_and_trigger_auto_leader_rebalance().await;
        // Scheduled even after an error, as Kafka's `finally`; a resignation cancels it.
        self.schedule_auto_leader_rebalance_task(self.core.config.leader_imbalance_check_interval);
        r
    }

    /// Kafka's `checkAndTriggerAutoLeaderRebalance` (reference §2.12).
    async fn check_and_trigger_auto_leader_rebalance(&mut self) -> Result<()> {
        let mut by_preferred: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for tp in self.core.ctx.all_partitions() {
            if self.core.ctx.is_topic_queued_for_deletion(&tp.topic) {
                continue;
            }
            if let Some(&preferred) = self.core.ctx.replicas(&tp).first() {
                by_preferred.entry(preferred).or_default().push(tp);
            }
        }
        let threshold = f64::from(self.core.config.leader_imbalance_per_broker_percentage) / 100.0;
        for (broker, partitions) in by_preferred {
            let not_preferred: Vec<TopicPartition> = partitions
                .iter()
                .filter(|tp| {
                    self.core
                        .ctx
                        .leadership
                        .get(*tp)
                        .is_some_and(|l| l.leader_and_isr.leader != broker)
                })
                .cloned()
                .collect();
            let ratio = not_preferred.len() as f64 / partitions.len() as f64;
            debug!(
                broker_id = broker,
                imbalance_ratio = ratio,
                "leader imbalance ratio"
            );
            if ratio <= threshold {
                continue;
            }
            let candidates: Vec<TopicPartition> = not_preferred
                .into_iter()
                .filter(|tp| {
                    !self.core.ctx.is_topic_queued_for_deletion(&tp.topic)
                        && self.core.ctx.all_topics.contains(&tp.topic)
                        && self.can_preferred_replica_be_leader(tp)
                })
                .collect();
            info!(
                broker_id = broker,
                imbalance_ratio = ratio,
                candidates = candidates.len(),
                "leader imbalance above leader.imbalance.per.broker.percentage"
            );
            if !candidates.is_empty() {
                self.on_replica_election(
                    &candidates,
                    ElectionType::Preferred,
                    ElectionTrigger::Auto,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Kafka's `canPreferredReplicaBeLeader`: the preferred replica is online and in the ISR.
    fn can_preferred_replica_be_leader(&self, tp: &TopicPartition) -> bool {
        let assignment = self.core.ctx.replicas(tp);
        let live: BTreeSet<i32> = assignment
            .iter()
            .copied()
            .filter(|r| self.core.ctx.is_replica_online(*r))
            .collect();
        let Some(l) = self.core.ctx.leadership.get(tp) else {
            return false;
        };
        election::preferred_replica_partition_leader_election(
            assignment,
            &l.leader_and_isr.isr,
            &live,
        )
        .is_some()
    }
}
