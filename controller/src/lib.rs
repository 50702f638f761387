//! The classic (ZooKeeper-mode) Kafka controller.
//!
//! # Layout
//!
//! - The ZooKeeper layer is the `zk` crate (Kafka's `kafka.zk`: `ZkData`, `KafkaZkClient`, the
//!   backend trait with its in-memory ZooKeeper); it is re-exported as [`zk`] so that
//!   `crate::zk::client::KafkaZkClient` reads as before inside this crate.
//! - [`admin`]: what CreateTopics / CreatePartitions / DeleteTopics write (Kafka's
//!   `AdminZkClient`, `AdminUtils`).
//! - [`event`]: the controller's events; [`event_loop`]: the single task that drains them and
//!   the broker's [`ControllerHandle`] (Kafka's `ControllerEventManager`).
//! - [`controller`]: Kafka's `KafkaController`, the event handlers split by concept:
//!   `controller/mod.rs` (`process`, the one dispatch; election and resignation),
//!   `failover.rs` (`on_controller_failover`), `brokers.rs` (membership, ControlledShutdown,
//!   AlterPartition), `topics.rs` (creation, partition growth, deletion requests),
//!   `preferred_election.rs` (ElectLeaders, `/admin/preferred_replica_election`, the auto
//!   leader rebalance).
//! - [`controller_core`]: [`controller_core::ControllerCore`], what the state machines share
//!   (context, ZooKeeper client, request batch, config, the active controller's watches) and
//!   the one place an accepted ISR write reaches the context.
//! - [`partition_state`], [`replica_state`]: `PartitionStateMachine` and `ReplicaStateMachine`,
//!   types that borrow the core for one call, each with its transition table and side effects;
//!   [`state`]: the state enums and their `valid_previous_states` (a leaf module).
//! - [`topic_deletion`]: Kafka's `TopicDeletionManager`; [`reassignment`]: the
//!   `ReassignmentManager` (KIP-455 phases); both borrow the core the same way.
//! - [`alter_partition`]: the AlterPartition request and reply types (the handler is in
//!   `controller/brokers.rs`).
//! - [`context`]: the in-memory cluster view (Kafka's `ControllerContext`).
//! - [`shared_state`]: the flags and gauges the event loop publishes for the handle.
//! - [`election`]: the leader election rules as pure functions.
//! - [`channel`]: requests to brokers, batched per broker and sent from one queue per broker
//!   (Kafka's `ControllerChannelManager`, `ControllerBrokerRequestBatch`).
//! - [`error`]: the crate's error enum (wrapping `zk::Error`) and the wire codes its replies
//!   carry (from `common::ErrorCode`).
//!
//! Examples (need a running ZooKeeper, not tests): `examples/first_light.rs` walks through an
//! election, topic creation, a controller failover and a deletion with a broker down, printing
//! the znodes; `examples/failover_bench.rs` times failover and broker failure at N partitions.
//!
//! # How it fits together
//!
//! The broker connects a [`zk::client::KafkaZkClient`], registers itself, and calls [`start`].
//! That spawns one task running [`event_loop::ControllerEventManager::run`] and queues `Startup`:
//! the controller watches `/controller` and contests the election. The winner runs failover,
//! watches `/brokers/ids`, `/brokers/topics` and `/admin/delete_topics`, and from then on every
//! watch firing is an event processed by [`controller::KafkaController::process`], which hands
//! it to one `process_*` handler. Handlers decide with the state machines, built on the
//! controller's [`controller_core::ControllerCore`] for one call
//! (`PartitionStateMachine::new(&mut core).handle_state_changes(..)`). Decisions change the
//! context, are written to ZooKeeper (fenced), and become requests on the per-broker queues,
//! which the brokers answer asynchronously.
//!
//! A broker typically does:
//!
//! ```no_run
//! # async fn broker(reg: zk::data::BrokerRegistration) -> controller::Result<()> {
//! use std::time::Duration;
//! use zk::client::KafkaZkClient;
//! let zk = KafkaZkClient::connect("127.0.0.1:2181/kafka", Duration::from_secs(18)).await?;
//! zk.ensure_persistent_paths().await?;
//! let cluster_id = zk.get_or_create_cluster_id("fn7-MseRQReG__IBE9axXQ").await?;
//! let broker_epoch = zk.register_broker(&reg).await?;
//! let config = controller::ControllerConfig::with_defaults(reg.broker_id);
//! let handle = controller::start(zk.clone(), config, broker_epoch);
//! let expiry = controller::spawn_session_expiry_handler(zk.clone(), handle.clone(), reg);
//! // ... serve clients. On the active controller's broker, the ControlledShutdown API handler
//! // answers a stopping broker (here id 1) with what it still leads:
//! let still_led = handle.controlled_shutdown(1, broker_epoch).await;
//! // On SIGTERM (after its own ControlledShutdown request succeeded):
//! expiry.abort();
//! handle.shutdown().await;
//! zk.close().await;
//! # let _ = (cluster_id, still_led); Ok(()) }
//! ```

use std::time::Duration;

pub use kafka_protocol::messages::BrokerId;

pub mod admin;
pub mod alter_partition;
pub mod channel;
pub mod context;
pub mod controller;
pub mod controller_core;
pub mod election;
pub mod error;
pub mod event;
pub mod event_loop;
pub mod partition_state;
pub mod reassignment;
pub mod replica_state;
pub mod shared_state;
pub mod state;
pub mod topic_deletion;
/// The ZooKeeper layer moved to the `zk` crate; `crate::zk::...` paths keep working.
pub use ::zk;

pub use error::{Error, Result};
pub use event::{
    ApiError, ControlledShutdownError, ControlledShutdownReply, ControllerEvent, ControllerState,
    ElectLeadersResults, ElectionTrigger, ElectionType,
};
pub use event_loop::{ControllerHandle, ControllerMetrics};

/// What the controller needs from the broker's config.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub broker_id: i32,
    /// Listener the controller uses to reach brokers (inter.broker.listener.name, default PLAINTEXT).
    pub inter_broker_listener_name: String,
    pub delete_topic_enable: bool,
    pub unclean_leader_election_enable: bool,
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_per_broker_percentage: u32,
    pub leader_imbalance_check_interval: Duration,
    pub controller_socket_timeout: Duration,
    pub request_timeout: Duration,
}

impl ControllerConfig {
    /// Kafka's defaults for everything but the broker id.
    pub fn with_defaults(broker_id: i32) -> Self {
        ControllerConfig {
            broker_id,
            inter_broker_listener_name: "PLAINTEXT".into(),
            delete_topic_enable: true,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_per_broker_percentage: 10,
            leader_imbalance_check_interval: Duration::from_secs(300),
            controller_socket_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Starts this broker's controller: watches `/controller` and contests the election.
/// `broker_epoch` is this broker's registration czxid. Must be called inside a tokio runtime.
pub fn start(
    zk: zk::client::KafkaZkClient,
    config: ControllerConfig,
    broker_epoch: i64,
) -> ControllerHandle {
    use event_loop::ControllerEventManager;
    let (handle, rx) = ControllerEventManager::channel();
    let events = ControllerEventManager::sender(&handle);
    let channel = channel::ControllerChannelManager::new(
        config.broker_id,
        config.inter_broker_listener_name.clone(),
        events.clone(),
        config.controller_socket_timeout,
        config.request_timeout,
    );
    let controller = controller::KafkaController::new(
        zk,
        config,
        broker_epoch,
        Box::new(channel),
        events,
        ControllerEventManager::shared(&handle),
    );
    let shared = event_loop::ControllerEventManager::shared(&handle);
    shared
        .broker_epoch
        .store(broker_epoch, std::sync::atomic::Ordering::SeqCst);
    // `start` is called once the broker has registered (Kafka's `KafkaServer.startup` registers
    // before it starts the controller).
    shared
        .registered
        .store(true, std::sync::atomic::Ordering::SeqCst);
    handle.put(ControllerEvent::Startup);
    // Kafka's `controller-event-thread`: the event loop gets a thread (and a single-threaded
    // runtime) of its own, so that handling an event for seconds (a failover at 100,000
    // partitions) never holds one of the workers that serve this broker's clients and the
    // controller's own requests to it.
    let spawned = std::thread::Builder::new()
        .name("controller-event-thread".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(ControllerEventManager::run(controller, rx)),
                Err(e) => tracing::error!(error = %e, "cannot start the controller's runtime"),
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the controller event thread");
    }
    handle
}

/// First pause between two looks at a `/brokers/ids/<id>` still held by an older session, and
/// between two attempts to open a session; doubled up to [`REREGISTER_MAX_BACKOFF`].
pub const REREGISTER_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two attempts: a fraction of any sensible session timeout, so the
/// broker is back well within "session timeout + a few seconds" of the old session's end.
pub const REREGISTER_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Kafka's reaction to this broker's ZooKeeper session expiring (`KafkaController`'s session
/// expiration handler, `ZooKeeperClient.reinitialize`, then `RegisterBrokerAndReelect`):
///
/// 1. resign at once (`Expire`, answering queued events with NOT_CONTROLLER), and mark the
///    broker unregistered (no ISR expansion, no controller election from now on);
/// 2. open a new session, retrying with backoff for as long as the process lives;
/// 3. create `/brokers/ids/<id>` again; while another session owns it (the old session's
///    ephemeral that ZooKeeper has not deleted yet, or a previous run of this broker), log
///    "waiting for the old registration to go" with that owner session and retry with backoff,
///    never giving up (KAFKA-7165: Kafka compares the znode's `ephemeralOwner` with its current
///    session);
/// 4. `RegisterBrokerAndReelect` on the controller's event loop: the znode's czxid becomes the
///    new broker epoch, the `/controller` watch is re-armed and the election contested. The
///    active controller sees the registration with a higher epoch as a bounced broker
///    (`onBrokerFailure` then `onBrokerStartup`), and sends it LeaderAndIsr and UpdateMetadata.
///
/// "Expired" means ZooKeeper said so: the real backend resumes a session that only the client
/// library gave up on ([`zk::real`]), so a connection loss shorter than the session timeout
/// keeps the session, the registration and the broker epoch. Runs until the controller stops;
/// abort the task before a clean `close`.
pub fn spawn_session_expiry_handler(
    zk: zk::client::KafkaZkClient,
    handle: ControllerHandle,
    registration: zk::data::BrokerRegistration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let broker_id = registration.broker_id;
        loop {
            zk.session_expired().await;
            if handle.is_stopped() {
                return;
            }
            tracing::warn!(
                broker_id,
                broker_epoch = handle.broker_epoch(),
                session_id = %format_args!("0x{:x}", zk.session_id()),
                "ZooKeeper session expired; resigning and re-registering"
            );
            handle.expire();
            let mut backoff = REREGISTER_INITIAL_BACKOFF;
            while let Err(e) = zk.reinitialize().await {
                if handle.is_stopped() {
                    return;
                }
                tracing::warn!(broker_id, error = %e,
                    "could not open a new ZooKeeper session; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(REREGISTER_MAX_BACKOFF);
            }
            let mut reg = registration.clone();
            reg.timestamp_ms = zk::data::now_ms();
            if let Some(broker_epoch) = reregister(&zk, &handle, reg).await {
                tracing::info!(
                    broker_id,
                    broker_epoch,
                    "re-registered broker after session expiry"
                );
            }
        }
    })
}

/// Steps 3 and 4 of [`spawn_session_expiry_handler`] on the current session: the new broker
/// epoch, or `None` when the controller stopped or this session ended too (the caller then
/// waits for that and starts over).
async fn reregister(
    zk: &zk::client::KafkaZkClient,
    handle: &ControllerHandle,
    reg: zk::data::BrokerRegistration,
) -> Option<i64> {
    use zk::client::BrokerRegistrationOutcome;
    let broker_id = reg.broker_id;
    let session = zk.backend();
    let mut backoff = REREGISTER_INITIAL_BACKOFF;
    loop {
        if handle.is_stopped() {
            return None;
        }
        match zk.try_register_broker(&reg).await {
            Ok(BrokerRegistrationOutcome::Registered { .. }) => {
                // Ours now: let the controller take the epoch and contest the election (it
                // registers again, which finds the znode ours and returns the same czxid).
                match handle.register_broker_and_reelect(reg.clone()).await {
                    Ok(broker_epoch) => return Some(broker_epoch),
                    Err(e) => tracing::warn!(broker_id, error = %e,
                        "re-registration on the controller's event loop failed; retrying"),
                }
            }
            Ok(BrokerRegistrationOutcome::HeldByAnotherSession {
                owner_session,
                czxid,
            }) => tracing::info!(
                broker_id,
                owner_session = %format_args!("0x{owner_session:x}"),
                session_id = %format_args!("0x{:x}", session.session_id()),
                old_broker_epoch = czxid,
                "waiting for the old registration to go: /brokers/ids/{broker_id} is held by \
                 another session"
            ),
            Err(e) => tracing::warn!(broker_id, error = %e,
                "could not re-register broker after session expiry; retrying"),
        }
        // This session may have ended meanwhile (expired as well, or closed on shutdown):
        // the caller starts over with a new one.
        if session_has_ended(&*session).await {
            return None;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(REREGISTER_MAX_BACKOFF);
    }
}

/// Whether `session` has already ended (without waiting for it to).
async fn session_has_ended(session: &dyn zk::backend::ZkBackend) -> bool {
    tokio::time::timeout(Duration::ZERO, session.session_ended())
        .await
        .is_ok()
}

#[cfg(test)]
mod controller_tests;
