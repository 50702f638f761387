//! The broker's life: start-up in Kafka's order, the wiring of the parts every request handler
//! sees (`crate::api::context::KafkaApis`), and the clean shutdown on SIGTERM.
//!
//! Kafka class mirrored: `kafka.server.KafkaServer` (`startup`, `controlledShutdown`,
//! `shutdown`). Start-up order, as Kafka's:
//! 1. connect to ZooKeeper and create the persistent paths (`/brokers/ids`, `/config`, ...);
//! 2. read `/cluster/id`, or create it if this is the first broker ever;
//! 3. open the log dirs, checking `meta.properties` (a dir from another cluster or broker
//!    stops the broker with a message naming the dir);
//! 4. bind the listeners, so the advertised ports are known;
//! 5. register the ephemeral `/brokers/ids/<id>`: its czxid is the broker epoch;
//! 6. start this broker's controller, which contests `/controller`;
//! 7. serve clients.
//!
//! Shutdown (SIGTERM or Ctrl-C): controlled shutdown first (the controller moves our
//! leaderships away), then stop accepting and finish in-flight requests, checkpoint and flush
//! the logs, stop the controller and close the ZooKeeper session (our ephemeral znodes vanish).

use std::sync::Arc;
use std::time::Duration;

use controller::admin::AdminZkClient;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ControlledShutdownRequest, ControlledShutdownResponse,
};
use storage::{LogManager, MetaProperties};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};
use zk::client::KafkaZkClient;
use zk::data::{BrokerRegistration, EndPoint};

use crate::api::context::KafkaApis;
use crate::config::BrokerConfig;
use crate::error::{Error, Result};
use crate::metadata_cache::MetadataCache;
use crate::replica_manager::ReplicaManager;

/// The started broker's shared state: what the request handlers see, and the shutdown signal.
pub struct Broker {
    /// The request handlers' context (Kafka's `KafkaApis`).
    pub apis: Arc<KafkaApis>,
    /// Turns true when shutdown starts.
    pub shutting_down: watch::Sender<bool>,
}

/// A started broker: its shared state and the tasks to stop.
pub struct Running {
    pub broker: Arc<Broker>,
    server: tokio::task::JoinHandle<()>,
    expiry: tokio::task::JoinHandle<()>,
    timers: Vec<tokio::task::JoinHandle<()>>,
    logs: Arc<LogManager>,
    /// The bound address of each listener (name, address).
    pub bound: Vec<(String, std::net::SocketAddr)>,
}

fn proposed_cluster_id() -> String {
    zk::data::encode_uuid(uuid::Uuid::new_v4())
}

/// Runs start-up steps 1 to 7.
pub async fn start(config: BrokerConfig) -> Result<Running> {
    info!(broker_id = config.broker_id, zookeeper = %config.zookeeper_connect, "starting broker");
    let zk = KafkaZkClient::connect(&config.zookeeper_connect, config.zookeeper_session_timeout)
        .await
        .map_err(|e| {
            Error::lifecycle(format!(
                "zookeeper.connect {}: {e}",
                config.zookeeper_connect
            ))
        })?;
    start_with_zk(config, zk).await
}

/// Runs start-up steps 1 (after the connection) to 7 on a session the caller opened: `start`
/// connects `zookeeper.connect` and calls this; the in-process test cluster passes a session on
/// the in-memory ZooKeeper (`MemoryZk`).
pub async fn start_with_zk(config: BrokerConfig, zk: KafkaZkClient) -> Result<Running> {
    let config = Arc::new(config);
    let id = config.broker_id;
    zk.ensure_persistent_paths().await?;
    let cluster_id = zk.get_or_create_cluster_id(&proposed_cluster_id()).await?;
    info!(broker_id = id, cluster_id = %cluster_id, "cluster id");

    let meta = MetaProperties {
        broker_id: id,
        cluster_id: cluster_id.clone(),
    };
    let logs_dirs = config.log_dirs.clone();
    let default_log = config.default_log_config();
    let logs =
        tokio::task::spawn_blocking(move || LogManager::open(&logs_dirs, &meta, default_log))
            .await
            .map_err(|e| Error::lifecycle(format!("log.dirs: {e}")))?
            .map_err(|e| Error::lifecycle(format!("log.dirs: {e}")))?;
    let logs = Arc::new(logs);

    // Bind every listener; an advertised port 0 becomes the bound port.
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for l in &config.listeners {
        let host = if l.host.is_empty() {
            "0.0.0.0"
        } else {
            &l.host
        };
        let addr = format!("{host}:{}", l.port);
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|e| Error::lifecycle(format!("listeners: cannot bind {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::lifecycle(format!("listeners: {addr}: {e}")))?;
        info!(broker_id = id, listener = %l.name, address = %local, "listening");
        bound.push((l.name.clone(), local));
        listeners.push(listener);
    }
    let metrics_listener = crate::metrics::bind(&config).await?;
    let endpoints: Vec<EndPoint> = config
        .advertised_listeners
        .iter()
        .map(|a| {
            let port = if a.port == 0 {
                bound
                    .iter()
                    .find(|(n, _)| *n == a.name)
                    .map_or(0, |(_, s)| s.port())
            } else {
                a.port
            };
            let host = if a.host.is_empty() {
                "127.0.0.1".to_string()
            } else {
                a.host.clone()
            };
            EndPoint {
                listener_name: a.name.clone(),
                host,
                port,
                security_protocol: a.name.clone(),
            }
        })
        .collect();
    let registration = BrokerRegistration {
        broker_id: id,
        endpoints,
        rack: config.rack.clone(),
        timestamp_ms: zk::data::now_ms(),
    };
    // Kafka fails at once if /brokers/ids/<id> is held by another session. After a crash that
    // session lingers for zookeeper.session.timeout.ms, so we wait that long (logging why)
    // before giving up: a restarted broker then comes back by itself.
    // ZooKeeper expires a session at a tick boundary after its timeout, later on a loaded
    // machine (seen: 13 s for a 4 s session on 2 busy cores), hence the generous bound.
    let give_up = tokio::time::Instant::now()
        + config.zookeeper_session_timeout * 3
        + Duration::from_secs(10);
    let broker_epoch = loop {
        use zk::client::BrokerRegistrationOutcome as Outcome;
        match zk.try_register_broker(&registration).await {
            Ok(Outcome::Registered { broker_epoch }) => break broker_epoch,
            Ok(Outcome::HeldByAnotherSession { owner_session, .. })
                if tokio::time::Instant::now() < give_up =>
            {
                warn!(
                    broker_id = id,
                    owner_session = %format_args!("0x{owner_session:x}"),
                    "waiting for the old registration to go: /brokers/ids/{id} is held by \
                     another session (a previous run not expired yet?); retrying for up to three \
                     times zookeeper.session.timeout.ms + 10 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(Outcome::HeldByAnotherSession { owner_session, .. }) => {
                return Err(Error::lifecycle(format!(
                    "cannot register /brokers/ids/{id}: broker id {id} is already registered \
                     by live session 0x{owner_session:x}: another broker with the same broker.id?"
                )))
            }
            // A lost connection (seen on a loaded machine: "no response from connection in
            // 1600ms") is retried as Kafka's client waits for its connection: the session
            // resumes (zk::real) and a create that did land is found ours by the next try.
            Err(e) if tokio::time::Instant::now() < give_up => {
                warn!(broker_id = id, error = %e,
                    "cannot register /brokers/ids/{id} yet; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(Error::lifecycle(format!(
                    "cannot register /brokers/ids/{id}: {e}"
                )))
            }
        }
    };
    info!(broker_id = id, broker_epoch, "registered /brokers/ids/{id}");

    let mut cc = controller::ControllerConfig::with_defaults(id);
    cc.inter_broker_listener_name = config.inter_broker_listener_name.clone();
    cc.delete_topic_enable = config.delete_topic_enable;
    cc.unclean_leader_election_enable = config.unclean_leader_election_enable;
    cc.auto_leader_rebalance_enable = config.auto_leader_rebalance_enable;
    cc.leader_imbalance_per_broker_percentage = config.leader_imbalance_per_broker_percentage;
    cc.leader_imbalance_check_interval =
        Duration::from_secs(config.leader_imbalance_check_interval_seconds);
    cc.controller_socket_timeout = Duration::from_millis(config.controller_socket_timeout_ms);
    cc.request_timeout = Duration::from_millis(config.request_timeout_ms);
    let handle = controller::start(zk.clone(), cc, broker_epoch);
    // This broker as Metadata lists it before the first UpdateMetadata (`api::metadata`).
    let local_broker = crate::metadata_cache::BrokerEntry {
        id,
        endpoints: registration
            .endpoints
            .iter()
            .map(|e| crate::metadata_cache::Endpoint {
                listener: e.listener_name.clone(),
                host: e.host.clone(),
                port: i32::from(e.port),
                security_protocol: e.security_protocol_id(),
            })
            .collect(),
        rack: registration.rack.clone(),
    };
    let expiry = controller::spawn_session_expiry_handler(zk.clone(), handle.clone(), registration);

    let metadata = Arc::new(MetadataCache::new());
    let replicas = ReplicaManager::new(id, config.clone(), logs.clone(), metadata.clone(), {
        let handle = handle.clone();
        Arc::new(move || handle.broker_epoch())
    });
    let groups = crate::group::GroupCoordinator::with_log(
        id,
        crate::group::GroupConfig::from_broker(&config),
        Arc::new(crate::group_log::OffsetsTopicLog {
            replicas: replicas.clone(),
            timeout: Duration::from_millis(config.offsets_commit_timeout_ms),
        }),
    );
    replicas.on_leadership_change(crate::group_log::leadership_callback(&groups));
    replicas.set_registration_check({
        let handle = handle.clone();
        Arc::new(move || handle.is_registered())
    });
    let producer_ids = crate::api::producer_id::ProducerIdManager::start(&zk, id).await;
    let apis = Arc::new(KafkaApis {
        broker_id: id,
        config: config.clone(),
        cluster_id,
        admin: AdminZkClient::new(zk.clone()),
        zk,
        controller: handle,
        metadata,
        local_broker,
        replicas: replicas.clone(),
        fetch_sessions: crate::fetch_session::FetchSessionCache::new(
            config.max_incremental_fetch_session_cache_slots,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos() ^ (id as u32).rotate_left(16)),
        ),
        groups,
        producer_ids,
    });
    let broker = Arc::new(Broker {
        apis: apis.clone(),
        shutting_down: watch::channel(false).0,
    });

    let mut timers = Vec::new();
    timers.push(every(
        Duration::from_millis(config.log_flush_offset_checkpoint_interval_ms.max(100)),
        {
            let r = replicas.clone();
            move || r.checkpoint()
        },
    ));
    timers.push(every(
        Duration::from_millis(config.log_retention_check_interval_ms.max(100)),
        {
            let r = replicas.clone();
            move || r.enforce_retention()
        },
    ));
    {
        let weak = Arc::downgrade(&replicas);
        let period = Duration::from_millis((config.replica_lag_time_max_ms / 2).max(10));
        timers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(r) = weak.upgrade() else { return };
                r.maybe_shrink_isr();
            }
        }));
    }
    // Kafka's `kafka-log-flusher`: every log.flush.scheduler.interval.ms (Long.MAX by default,
    // i.e. never: at 100,000 partitions a pass locks every log).
    if config.log_flush_scheduler_interval_ms < i64::MAX as u64 {
        timers.push(every(
            Duration::from_millis(config.log_flush_scheduler_interval_ms.max(100)),
            {
                let r = replicas.clone();
                move || r.maybe_flush_all()
            },
        ));
    }

    timers.extend(crate::metrics::start(
        metrics_listener,
        &apis,
        broker.shutting_down.subscribe(),
    ));
    let mut servers = Vec::new();
    for listener in listeners {
        servers.push(tokio::spawn(crate::server::run(
            listener,
            apis.clone(),
            broker.shutting_down.subscribe(),
        )));
    }
    let server = tokio::spawn(async move {
        for s in servers {
            let _ = s.await;
        }
    });
    info!(broker_id = id, broker_epoch, "broker started");
    Ok(Running {
        broker,
        server,
        expiry,
        timers,
        logs,
        bound,
    })
}

/// Runs `f` on a blocking thread every `period`.
fn every<F: Fn() + Send + Sync + 'static>(period: Duration, f: F) -> tokio::task::JoinHandle<()> {
    let f = Arc::new(f);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let f = f.clone();
            let _ = tokio::task::spawn_blocking(move || f()).await;
        }
    })
}

impl Running {
    /// Kafka's shutdown sequence; see the module doc.
    pub async fn shutdown(self) {
        let b = &self.broker.apis;
        let id = b.broker_id;
        info!(broker_id = id, "shutting down");
        if b.config.controlled_shutdown_enable {
            controlled_shutdown(b).await;
        }
        self.broker.shutting_down.send_replace(true);
        let _ = self.server.await;
        b.replicas.fetchers.shutdown();
        for t in &self.timers {
            t.abort();
        }
        let replicas = b.replicas.clone();
        let logs = self.logs.clone();
        let _ = tokio::task::spawn_blocking(move || {
            replicas.checkpoint();
            if let Err(e) = logs.shutdown() {
                error!(error = %e, "log manager shutdown failed");
            }
        })
        .await;
        self.expiry.abort();
        // An event waiting for ZooKeeper's connection (`zk::retry`) holds the controller's
        // loop; closing the session ends that wait (SESSIONEXPIRED), so the loop can stop.
        let bound = b.config.zookeeper_session_timeout;
        if tokio::time::timeout(bound, b.controller.shutdown())
            .await
            .is_err()
        {
            warn!(
                broker_id = id,
                "the controller is still waiting for ZooKeeper; closing the session to end it"
            );
            b.zk.close().await;
            b.controller.shutdown().await;
        }
        b.zk.close().await;
        info!(broker_id = id, "shut down completed");
    }
}

/// Asks the active controller to move our leaderships away (Kafka's `controlledShutdown`):
/// up to `controlled.shutdown.max.retries` attempts, `controlled.shutdown.retry.backoff.ms`
/// apart, until the controller answers with no remaining partitions.
async fn controlled_shutdown(b: &KafkaApis) {
    let id = b.broker_id;
    let retries = b.config.controlled_shutdown_max_retries.max(1);
    for attempt in 1..=retries {
        match try_controlled_shutdown(b).await {
            Ok(0) => {
                info!(broker_id = id, attempt, "controlled shutdown succeeded");
                return;
            }
            Ok(remaining) => warn!(
                broker_id = id,
                attempt, remaining, "controlled shutdown: partitions still led here; retrying"
            ),
            Err(e) => {
                warn!(broker_id = id, attempt, error = %e, "controlled shutdown attempt failed")
            }
        }
        if attempt < retries {
            tokio::time::sleep(Duration::from_millis(
                b.config.controlled_shutdown_retry_backoff_ms,
            ))
            .await;
        }
    }
    warn!(
        broker_id = id,
        "proceeding to do an unclean shutdown as all the controlled shutdown attempts failed"
    );
}

async fn try_controlled_shutdown(b: &KafkaApis) -> Result<usize> {
    // ZooKeeper reads wait for the connection (`zk::retry`); a broker stopped while ZooKeeper
    // is unreachable gives the attempt up after a session timeout instead.
    let bound = b.config.zookeeper_session_timeout;
    let unreachable = |_| Error::lifecycle("ZooKeeper unreachable");
    let controller_id = tokio::time::timeout(bound, b.zk.get_controller_id())
        .await
        .map_err(unreachable)??
        .ok_or_else(|| Error::lifecycle("no controller elected"))?;
    let info = tokio::time::timeout(bound, b.zk.get_broker(controller_id))
        .await
        .map_err(unreachable)??
        .ok_or_else(|| Error::lifecycle(format!("controller {controller_id} is not registered")))?;
    let ep = info
        .endpoint(&b.config.inter_broker_listener_name)
        .ok_or_else(|| {
            Error::lifecycle(format!(
                "controller has no {} endpoint",
                b.config.inter_broker_listener_name
            ))
        })?;
    let addr = format!("{}:{}", ep.host, ep.port);
    info!(
        broker_id = b.broker_id,
        controller_id, "sending ControlledShutdown to the controller"
    );
    let mut conn = crate::client::Connection::connect(
        &addr,
        &b.broker_id.to_string(),
        Duration::from_millis(b.config.request_timeout_ms),
    )
    .await?;
    let req = ControlledShutdownRequest::default()
        .with_broker_id(BrokerId(b.broker_id))
        .with_broker_epoch(b.broker_epoch());
    let resp: ControlledShutdownResponse = conn.send(ApiKey::ControlledShutdown, 3, &req).await?;
    if resp.error_code != 0 {
        return Err(Error::Peer(resp.error_code));
    }
    Ok(resp.remaining_partitions.len())
}
