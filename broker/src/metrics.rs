//! The numbers an operator watches, served in Prometheus text format on
//! `http://<first listener host>:<metrics.port>/metrics`.
//!
//! Kafka concept: Kafka publishes its metrics over JMX; operators usually scrape them through
//! the Prometheus JMX exporter, which names them `<domain>_<type>_<name>`. We serve the same
//! names directly:
//!
//! - controller (`kafka.controller:type=KafkaController`): `ActiveControllerCount` (1 on the
//!   active controller, 0 elsewhere: summed over brokers it must be exactly 1),
//!   `OfflinePartitionsCount`, `PreferredReplicaImbalanceCount`, `GlobalPartitionCount`,
//!   `ControllerState` (Kafka's state byte: 0 idle, 2 broker change, 5 reassignment, ...), and
//!   `ControllerEpoch` (our addition: the epoch this broker last saw win);
//! - controller event loop (`type=ControllerEventManager`): `EventQueueSize` and the
//!   `EventQueueTimeMs` histogram (how long events waited before being processed);
//! - replica manager (`kafka.server:type=ReplicaManager`), computed from the partitions this
//!   broker leads: `UnderReplicatedPartitions` (ISR smaller than the replica set),
//!   `UnderMinIsrPartitionCount` (ISR below `min.insync.replicas`), `PartitionCount`,
//!   `LeaderCount`, and the counters `IsrShrinksPerSec` / `IsrExpandsPerSec` /
//!   `FailedIsrUpdatesPerSec` (Kafka's meters; a counter here, so `rate()` gives the per-second
//!   figure);
//! - the leader's ISR changes (`type=AlterPartitionManager`, our addition):
//!   `PendingIsrChangeCount` (partitions led here with an AlterPartition sent, being retried
//!   or refused) and `RefusedIsrChangeCount` (of those, the ones the controller refused for
//!   good: this broker's view is out of date and it waits for a LeaderAndIsr; non-zero for
//!   long means a leader the cluster has moved on from);
//! - registration (`type=KafkaServer`, our addition): `ZooKeeperRegistered`, 1 while this
//!   broker's `/brokers/ids/<id>` belongs to its current session, 0 before it registered and
//!   after a session expiry until it registers again;
//! - fetch sessions (`kafka.server:type=FetchSessionCache`): `NumIncrementalFetchSessions` and
//!   `NumIncrementalFetchPartitionsCached` (KIP-227; each follower fetcher holds one session on
//!   each leader it fetches from).
//!
//! Why a hand-written HTTP responder: the endpoint answers one read-only page to a scraper;
//! an HTTP stack (hyper and its companions) would add a dozen crates to the broker for that.
//! The responder reads one request head (bounded size and time), answers `GET /metrics` with
//! `Connection: close`, 404 for other paths and 405 for other methods, and never keeps a
//! connection open.
//!
//! Invariant: reading the metrics takes no lock held across an await and never blocks the
//! controller's event loop: controller figures are atomics the loop publishes after each event.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use controller::ControllerMetrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info};

use crate::api::context::KafkaApis;
use crate::config::BrokerConfig;
use crate::isr::IsrMetrics;

/// Largest request head we read before answering 400.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The replica manager's figures (Kafka's `ReplicaManager` gauges and meters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaMetrics {
    pub partition_count: u64,
    pub leader_count: u64,
    pub under_replicated_partitions: u64,
    pub under_min_isr_partition_count: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    /// ISR changes the controller refused (Kafka's `FailedIsrUpdatesPerSec`).
    pub failed_isr_updates: u64,
    /// Partitions led here with an ISR change pending (sent, retried, or refused).
    pub pending_isr_changes: u64,
    /// Of those, the ones refused for good (waiting for a LeaderAndIsr).
    pub refused_isr_changes: u64,
}

/// One hosted partition as the gauges see it: (leader, ISR size, replica count, min ISR,
/// ISR change pending, ISR change refused).
pub type PartitionView = (i32, usize, usize, i32, bool, bool);

impl ReplicaMetrics {
    /// Counts over the partitions hosted by `broker_id` (Kafka's `Partition.isUnderReplicated`
    /// and `isUnderMinIsr`, both only on the leader).
    pub fn compute(
        broker_id: i32,
        partitions: impl IntoIterator<Item = PartitionView>,
        counters: &IsrMetrics,
    ) -> ReplicaMetrics {
        let mut m = ReplicaMetrics {
            isr_shrinks: counters.counts().0,
            isr_expands: counters.counts().1,
            failed_isr_updates: counters.failed_isr_updates(),
            ..ReplicaMetrics::default()
        };
        for (leader, isr, replicas, min_isr, pending, refused) in partitions {
            m.partition_count += 1;
            if leader != broker_id {
                continue;
            }
            m.leader_count += 1;
            m.pending_isr_changes += u64::from(pending);
            m.refused_isr_changes += u64::from(refused);
            if isr < replicas {
                m.under_replicated_partitions += 1;
            }
            if (isr as i64) < i64::from(min_isr) {
                m.under_min_isr_partition_count += 1;
            }
        }
        m
    }
}

/// Every metric of this broker, in Prometheus text exposition format 0.0.4.
pub fn render(c: &ControllerMetrics, r: &ReplicaMetrics) -> String {
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    let kc = "kafka_controller_KafkaController_";
    metric(
        &format!("{kc}ActiveControllerCount"),
        "gauge",
        "1 if this broker is the active controller, else 0.",
        c.active_controller_count.to_string(),
    );
    metric(
        &format!("{kc}OfflinePartitionsCount"),
        "gauge",
        "Partitions without a live leader (active controller only).",
        c.offline_partitions_count.to_string(),
    );
    metric(
        &format!("{kc}PreferredReplicaImbalanceCount"),
        "gauge",
        "Partitions not led by their preferred replica (active controller only).",
        c.preferred_replica_imbalance_count.to_string(),
    );
    metric(
        &format!("{kc}GlobalPartitionCount"),
        "gauge",
        "Partitions in the cluster (active controller only).",
        c.global_partition_count.to_string(),
    );
    metric(
        &format!("{kc}ControllerState"),
        "gauge",
        "Kafka's ControllerState byte of the event being processed (0 = idle).",
        c.controller_state.to_string(),
    );
    metric(
        &format!("{kc}ControllerEpoch"),
        "gauge",
        "Controller epoch this broker last saw win (-1 = none yet).",
        c.controller_epoch.to_string(),
    );
    let em = "kafka_controller_ControllerEventManager_";
    metric(
        &format!("{em}EventQueueSize"),
        "gauge",
        "Events waiting in the controller's queue.",
        c.event_queue_size.to_string(),
    );
    let rm = "kafka_server_ReplicaManager_";
    metric(
        &format!("{rm}UnderReplicatedPartitions"),
        "gauge",
        "Partitions led here whose ISR is smaller than the replica set.",
        r.under_replicated_partitions.to_string(),
    );
    metric(
        &format!("{rm}UnderMinIsrPartitionCount"),
        "gauge",
        "Partitions led here whose ISR is below min.insync.replicas.",
        r.under_min_isr_partition_count.to_string(),
    );
    metric(
        &format!("{rm}PartitionCount"),
        "gauge",
        "Partitions hosted on this broker.",
        r.partition_count.to_string(),
    );
    metric(
        &format!("{rm}LeaderCount"),
        "gauge",
        "Partitions led by this broker.",
        r.leader_count.to_string(),
    );
    metric(
        &format!("{rm}IsrShrinksPerSec_total"),
        "counter",
        "ISR shrinks of partitions led here (accepted by the controller).",
        r.isr_shrinks.to_string(),
    );
    metric(
        &format!("{rm}IsrExpandsPerSec_total"),
        "counter",
        "ISR expansions of partitions led here (accepted by the controller).",
        r.isr_expands.to_string(),
    );
    metric(
        &format!("{rm}FailedIsrUpdatesPerSec_total"),
        "counter",
        "ISR changes of partitions led here that the controller refused.",
        r.failed_isr_updates.to_string(),
    );
    let ap = "kafka_server_AlterPartitionManager_";
    metric(
        &format!("{ap}PendingIsrChangeCount"),
        "gauge",
        "Partitions led here with an ISR change sent to the controller and not settled.",
        r.pending_isr_changes.to_string(),
    );
    metric(
        &format!("{ap}RefusedIsrChangeCount"),
        "gauge",
        "Partitions led here whose ISR change the controller refused for good (waiting for LeaderAndIsr).",
        r.refused_isr_changes.to_string(),
    );
    let h = format!("{em}EventQueueTimeMs");
    out.push_str(&format!(
        "# HELP {h} Time events waited in the controller's queue, in milliseconds.\n# TYPE {h} histogram\n"
    ));
    for (le, n) in &c.event_queue_time_cumulative {
        out.push_str(&format!("{h}_bucket{{le=\"{le}\"}} {n}\n"));
    }
    out.push_str(&format!(
        "{h}_bucket{{le=\"+Inf\"}} {}\n{h}_sum {}\n{h}_count {}\n",
        c.event_queue_time_count, c.event_queue_time_sum_ms, c.event_queue_time_count
    ));
    out
}

/// The page for a running broker.
pub fn render_broker(broker: &KafkaApis) -> String {
    let views: Vec<PartitionView> = broker
        .replicas
        .all()
        .iter()
        .map(|p| {
            let st = p.state();
            (
                st.leader,
                st.isr.len(),
                st.replicas.len(),
                st.min_isr,
                st.isr_change_in_flight,
                st.isr_change_refused.is_some(),
            )
        })
        .collect();
    let r = ReplicaMetrics::compute(broker.broker_id, views, &broker.replicas.isr_metrics);
    let mut out = render(&broker.controller.metrics(), &r);
    render_registered(&mut out, broker.controller.is_registered());
    let mut lags: Vec<(String, i32, i64)> = broker
        .replicas
        .all()
        .iter()
        .filter_map(|p| {
            let st = p.state();
            let following = st.leader >= 0 && st.leader != broker.broker_id;
            let lag = st.fetcher_lag.filter(|_| following)?;
            Some((p.topic.clone(), p.partition, lag))
        })
        .collect();
    lags.sort();
    render_fetcher_lag(&mut out, &lags);
    let fs = "kafka_server_FetchSessionCache_";
    for (name, help, value) in [
        (
            "NumIncrementalFetchSessions",
            "Fetch sessions (KIP-227) this broker keeps for its fetchers.",
            broker.fetch_sessions.len(),
        ),
        (
            "NumIncrementalFetchPartitionsCached",
            "Partitions held over all fetch sessions.",
            broker.fetch_sessions.partitions_cached(),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {fs}{name} {help}\n# TYPE {fs}{name} gauge\n{fs}{name} {value}\n"
        ));
    }
    out
}

/// `ZooKeeperRegistered`: whether this broker's registration belongs to its current session.
fn render_registered(out: &mut String, registered: bool) {
    let name = "kafka_server_KafkaServer_ZooKeeperRegistered";
    out.push_str(&format!(
        "# HELP {name} 1 while /brokers/ids/<id> is held by this broker's current ZooKeeper session.\n# TYPE {name} gauge\n{name} {}\n",
        u8::from(registered)
    ));
}

/// Kafka's `kafka.server:type=FetcherLagMetrics,name=ConsumerLag,topic=..,partition=..`: per
/// partition this broker follows, how many records it was behind its leader's high watermark
/// at the last fetch answer.
fn render_fetcher_lag(out: &mut String, lags: &[(String, i32, i64)]) {
    let name = "kafka_server_FetcherLagMetrics_ConsumerLag";
    out.push_str(&format!(
        "# HELP {name} Records this follower was behind its leader's high watermark at the last fetch, per partition.\n# TYPE {name} gauge\n"
    ));
    for (topic, partition, lag) in lags {
        out.push_str(&format!(
            "{name}{{topic=\"{topic}\",partition=\"{partition}\"}} {lag}\n"
        ));
    }
}

/// Binds `metrics.port` on the first listener's host, unless it is -1 (done early in start-up,
/// with the listeners, so a taken port stops the broker before it registers).
pub async fn bind(config: &BrokerConfig) -> crate::error::Result<Option<TcpListener>> {
    let port = config.metrics_port;
    if port < 0 {
        return Ok(None);
    }
    let host = config
        .listeners
        .first()
        .map(|l| l.host.as_str())
        .filter(|h| !h.is_empty())
        .unwrap_or("0.0.0.0");
    let addr = format!("{host}:{port}");
    let listener = TcpListener::bind(&addr).await.map_err(|e| {
        crate::error::Error::lifecycle(format!("metrics.port: cannot bind {addr}: {e}"))
    })?;
    Ok(Some(listener))
}

/// Serves the page on the bound listener until the broker shuts down; returns the task.
pub fn start(
    listener: Option<TcpListener>,
    broker: &Arc<KafkaApis>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let listener = listener?;
    match listener.local_addr() {
        Ok(local) => info!(broker_id = broker.broker_id, address = %local,
            "serving metrics on http://{local}/metrics"),
        Err(e) => info!(broker_id = broker.broker_id, error = %e, "serving metrics"),
    }
    let weak: Weak<KafkaApis> = Arc::downgrade(broker);
    let page = move || weak.upgrade().map(|b| render_broker(&b));
    Some(tokio::spawn(serve(listener, shutdown, page)))
}

/// Accepts scrapers until `shutdown` turns true; each connection gets one answer.
pub async fn serve(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    page: impl Fn() -> Option<String> + Send + Sync + 'static,
) {
    let page = Arc::new(page);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let page = page.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, peer, || page()).await {
                        debug!(%peer, error = %e, "metrics connection failed");
                    }
                });
            }
            Err(e) => {
                debug!(error = %e, "metrics accept failed");
                // A failing accept (e.g. out of file descriptors) should not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(
    mut stream: TcpStream,
    peer: SocketAddr,
    page: impl FnOnce() -> Option<String>,
) -> std::io::Result<()> {
    let head = tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "request head"))??;
    let (status, extra, body) = match head {
        None => ("400 Bad Request", "", "bad request\n".to_string()),
        Some((method, path)) => {
            let path = path.split('?').next().unwrap_or("");
            match (method.as_str(), path) {
                ("GET" | "HEAD", "/metrics") => match page() {
                    Some(p) => ("200 OK", "", p),
                    None => (
                        "503 Service Unavailable",
                        "",
                        "broker stopping\n".to_string(),
                    ),
                },
                ("GET" | "HEAD", _) => ("404 Not Found", "", "try /metrics\n".to_string()),
                _ => (
                    "405 Method Not Allowed",
                    "Allow: GET, HEAD\r\n",
                    "method not allowed\n".to_string(),
                ),
            }
        }
    };
    debug!(%peer, status, "metrics request");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head; `None` if it is malformed or too big.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<(String, String)>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]);
            let mut first = head.lines().next().unwrap_or("").split(' ');
            return Ok(match (first.next(), first.next(), first.next()) {
                (Some(m), Some(p), Some(v)) if v.starts_with("HTTP/") => {
                    Some((m.to_string(), p.to_string()))
                }
                _ => None,
            });
        }
        if buf.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gauges Kafka defines on the leader only, and the ISR change counters.
    #[test]
    fn replica_metrics_count_only_partitions_led_here() {
        let counters = IsrMetrics::default();
        counters.record_isr_change(3, 2);
        counters.record_isr_change(2, 3);
        counters.record_isr_change(2, 3);
        counters.record_failed_isr_update();
        let m = ReplicaMetrics::compute(
            1,
            [
                (1, 3, 3, 2, false, false), // healthy leader
                (1, 2, 3, 2, true, false),  // under-replicated, shrink pending
                (1, 1, 3, 2, true, true),   // under min ISR, change refused
                (2, 1, 3, 2, true, true),   // led elsewhere: not counted
            ],
            &counters,
        );
        assert_eq!(
            m,
            ReplicaMetrics {
                partition_count: 4,
                leader_count: 3,
                under_replicated_partitions: 2,
                under_min_isr_partition_count: 1,
                isr_shrinks: 1,
                isr_expands: 2,
                failed_isr_updates: 1,
                pending_isr_changes: 2,
                refused_isr_changes: 1,
            }
        );
    }

    #[test]
    fn registered_is_a_gauge_of_one_or_zero() {
        for (registered, value) in [(true, 1), (false, 0)] {
            let mut out = String::new();
            render_registered(&mut out, registered);
            assert!(out.contains("# TYPE kafka_server_KafkaServer_ZooKeeperRegistered gauge\n"));
            assert!(out.ends_with(&format!(
                "kafka_server_KafkaServer_ZooKeeperRegistered {value}\n"
            )));
        }
    }

    #[test]
    fn fetcher_lag_is_one_labelled_sample_per_followed_partition() {
        let mut out = String::new();
        render_fetcher_lag(&mut out, &[("t".into(), 0, 0), ("t".into(), 2, 17)]);
        let samples: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                r#"kafka_server_FetcherLagMetrics_ConsumerLag{topic="t",partition="0"} 0"#,
                r#"kafka_server_FetcherLagMetrics_ConsumerLag{topic="t",partition="2"} 17"#,
            ]
        );
        assert!(out.contains("# TYPE kafka_server_FetcherLagMetrics_ConsumerLag gauge\n"));
    }

    #[test]
    fn render_writes_prometheus_text_with_kafka_names() {
        let c = ControllerMetrics {
            active_controller_count: 1,
            offline_partitions_count: 2,
            preferred_replica_imbalance_count: 3,
            global_partition_count: 4,
            controller_state: 0,
            event_queue_size: 5,
            event_queue_time_cumulative: vec![(1, 6), (5, 7)],
            event_queue_time_count: 8,
            event_queue_time_sum_ms: 90,
            controller_epoch: 9,
        };
        let r = ReplicaMetrics {
            under_replicated_partitions: 1,
            isr_shrinks: 4,
            failed_isr_updates: 6,
            refused_isr_changes: 1,
            ..ReplicaMetrics::default()
        };
        let page = render(&c, &r);
        for line in [
            "kafka_controller_KafkaController_ActiveControllerCount 1",
            "kafka_controller_KafkaController_OfflinePartitionsCount 2",
            "kafka_controller_KafkaController_PreferredReplicaImbalanceCount 3",
            "kafka_controller_KafkaController_GlobalPartitionCount 4",
            "kafka_controller_KafkaController_ControllerState 0",
            "kafka_controller_KafkaController_ControllerEpoch 9",
            "kafka_controller_ControllerEventManager_EventQueueSize 5",
            "kafka_controller_ControllerEventManager_EventQueueTimeMs_bucket{le=\"5\"} 7",
            "kafka_controller_ControllerEventManager_EventQueueTimeMs_bucket{le=\"+Inf\"} 8",
            "kafka_controller_ControllerEventManager_EventQueueTimeMs_sum 90",
            "kafka_server_ReplicaManager_UnderReplicatedPartitions 1",
            "kafka_server_ReplicaManager_UnderMinIsrPartitionCount 0",
            "# TYPE kafka_server_ReplicaManager_IsrShrinksPerSec_total counter",
            "kafka_server_ReplicaManager_IsrShrinksPerSec_total 4",
            "kafka_server_ReplicaManager_FailedIsrUpdatesPerSec_total 6",
            "kafka_server_AlterPartitionManager_PendingIsrChangeCount 0",
            "kafka_server_AlterPartitionManager_RefusedIsrChangeCount 1",
        ] {
            assert!(
                page.lines().any(|l| l == line),
                "missing {line:?} in\n{page}"
            );
        }
        // Every sample line is `name value` or `name{labels} value`.
        for l in page.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(
                !name.is_empty() && value.parse::<f64>().is_ok(),
                "bad line {l:?}"
            );
        }
    }

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// The responder answers /metrics, refuses other paths and methods, and stops on shutdown.
    #[tokio::test]
    async fn responder_serves_metrics_path_only() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, rx, || Some("x_metric 1\n".to_string())));

        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 11\r\n"));
        assert!(ok.ends_with("\r\n\r\nx_metric 1\n"));
        let q = get(addr, "GET /metrics?name=x HTTP/1.0\r\n\r\n").await;
        assert!(q.starts_with("HTTP/1.1 200 OK\r\n"));
        let nf = get(addr, "GET / HTTP/1.1\r\n\r\n").await;
        assert!(nf.starts_with("HTTP/1.1 404 "));
        let na = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(na.starts_with("HTTP/1.1 405 "));
        let bad = get(addr, "nonsense\r\n\r\n").await;
        assert!(bad.starts_with("HTTP/1.1 400 "));

        stop.send_replace(true);
        task.await.unwrap();
    }
}
