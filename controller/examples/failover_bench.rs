//! Measures controller failover and broker-failure handling against a real ZooKeeper, with
//! three in-process controllers and fake brokers that only record what they are told (so the
//! figures are the controller's and ZooKeeper's, not a broker's). Not a test.
//!
//! Run: `cargo run --release -p controller --example failover_bench -- 127.0.0.1:2181 10000`
//!
//! Reported, from the trigger:
//! - controller failover (`/controller` deleted): (a) a new `/controller` exists, (c) every
//!   fake broker has a LeaderAndIsr from the new epoch for each of its partitions;
//! - broker failure (a non-controller broker's session closed): every partition it led has a
//!   new live leader in ZooKeeper and that leader has been told.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use controller::admin::{assign_replicas_with, AdminZkClient};
use controller::ControllerConfig;
use kafka_protocol::messages::{
    LeaderAndIsrRequest, LeaderAndIsrResponse, RequestHeader, ResponseHeader, StopReplicaResponse,
    UpdateMetadataResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zk::client::KafkaZkClient;
use zk::data::{now_ms, BrokerRegistration, EndPoint};

/// (topic, partition) -> (controller epoch, leader, leader epoch) as last told to one broker.
type Told = Arc<Mutex<HashMap<(String, i32), (i32, i32, i32)>>>;

async fn fake_broker(listener: TcpListener, told: Told) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let told = told.clone();
        tokio::spawn(async move {
            loop {
                let Ok(len) = s.read_i32().await else { return };
                let mut body = vec![0u8; len as usize];
                if s.read_exact(&mut body).await.is_err() {
                    return;
                }
                let mut b = bytes::Bytes::from(body);
                let key = i16::from_be_bytes([b[0], b[1]]);
                let version = i16::from_be_bytes([b[2], b[3]]);
                let mut out = BytesMut::new();
                out.put_i32(0);
                let h = RequestHeader::decode(&mut b, LeaderAndIsrRequest::header_version(version))
                    .unwrap();
                let rh = ResponseHeader::default().with_correlation_id(h.correlation_id);
                match key {
                    4 => {
                        let r = LeaderAndIsrRequest::decode(&mut b, version).unwrap();
                        {
                            let mut t = told.lock().unwrap();
                            for ts in &r.topic_states {
                                for p in &ts.partition_states {
                                    t.insert(
                                        (ts.topic_name.0.to_string(), p.partition_index),
                                        (r.controller_epoch, p.leader.0, p.leader_epoch),
                                    );
                                }
                            }
                        }
                        rh.encode(&mut out, LeaderAndIsrResponse::header_version(version))
                            .unwrap();
                        LeaderAndIsrResponse::default()
                            .encode(&mut out, version)
                            .unwrap();
                    }
                    6 => {
                        rh.encode(&mut out, UpdateMetadataResponse::header_version(version))
                            .unwrap();
                        UpdateMetadataResponse::default()
                            .encode(&mut out, version)
                            .unwrap();
                    }
                    _ => {
                        rh.encode(&mut out, StopReplicaResponse::header_version(version))
                            .unwrap();
                        StopReplicaResponse::default()
                            .encode(&mut out, version)
                            .unwrap();
                    }
                }
                let n = (out.len() - 4) as i32;
                out[0..4].copy_from_slice(&n.to_be_bytes());
                if s.write_all(&out).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn wait_until(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(start.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let hosts = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let partitions: i32 = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let connect = format!("{hosts}/failover-bench-{}", std::process::id());
    let ids = [1, 2, 3];
    let mut told: BTreeMap<i32, Told> = BTreeMap::new();
    let mut handles = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for id in ids {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let t: Told = Arc::default();
        tokio::spawn(fake_broker(listener, t.clone()));
        told.insert(id, t);
        let zk = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
        zk.ensure_persistent_paths().await?;
        let epoch = zk
            .register_broker(&BrokerRegistration {
                broker_id: id,
                endpoints: vec![EndPoint {
                    listener_name: "PLAINTEXT".into(),
                    host: "127.0.0.1".into(),
                    port,
                    security_protocol: "PLAINTEXT".into(),
                }],
                rack: None,
                timestamp_ms: now_ms(),
            })
            .await?;
        handles.insert(
            id,
            controller::start(zk.clone(), ControllerConfig::with_defaults(id), epoch),
        );
        clients.insert(id, zk);
    }
    let reader = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
    let hs = handles.clone();
    wait_until("a controller", Duration::from_secs(30), || {
        hs.values().any(|h| h.is_active())
    })
    .await?;

    // Topics of at most 1,000 partitions (a topic znode must stay under ZooKeeper's 1 MB
    // jute.maxbuffer), RF 3, leaders spread evenly.
    let per_topic = partitions.min(1000);
    let topics = (partitions + per_topic - 1) / per_topic;
    let mut assignment: Vec<((String, i32), Vec<i32>)> = Vec::new();
    let start = Instant::now();
    let admin = AdminZkClient::new(reader.clone());
    for t in 0..topics {
        let name = format!("bench-{t}");
        let n = per_topic.min(partitions - t * per_topic);
        let a = assign_replicas_with(&ids, n, 3, t as usize % 3, 0, 0)?;
        admin.create_topic(&name, &a, &BTreeMap::new()).await?;
        assignment.extend(a.into_iter().map(|(p, r)| ((name.clone(), p), r)));
    }
    let expected: BTreeMap<i32, Vec<(String, i32)>> = ids
        .iter()
        .map(|b| {
            (
                *b,
                assignment
                    .iter()
                    .filter(|(_, r)| r.contains(b))
                    .map(|(p, _)| p.clone())
                    .collect(),
            )
        })
        .collect();
    let tl = told.clone();
    let ex = expected.clone();
    wait_until("topic creation", Duration::from_secs(600), || {
        ex.iter().all(|(b, ps)| {
            let t = tl[b].lock().unwrap();
            ps.iter().all(|p| t.contains_key(p))
        })
    })
    .await?;
    println!("partitions={partitions} topic creation ({topics} topics, all LeaderAndIsr delivered): {:?}", start.elapsed());

    // Controller failover: delete /controller.
    let old_epoch = reader
        .get_controller_epoch()
        .await?
        .map(|e| e.0)
        .unwrap_or(0);
    let start = Instant::now();
    reader.backend().delete("/controller".into(), None).await?;
    let r2 = reader.clone();
    let mut elected = None;
    while elected.is_none() {
        if let Ok(Some((e, _))) = r2.get_controller_epoch().await {
            if e > old_epoch && r2.get_controller_id().await?.is_some() {
                elected = Some(start.elapsed());
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("no new controller");
        }
    }
    let new_epoch = old_epoch + 1;
    let tl = told.clone();
    let ex = expected.clone();
    wait_until("failover LeaderAndIsr", Duration::from_secs(600), || {
        ex.iter().all(|(b, ps)| {
            let t = tl[b].lock().unwrap();
            ps.iter()
                .all(|p| t.get(p).is_some_and(|v| v.0 >= new_epoch))
        })
    })
    .await?;
    println!(
        "partitions={partitions} controller failover: (a) elected {:?}, (c) every broker told by the new epoch {:?}",
        elected.unwrap(),
        start.elapsed()
    );

    // Broker failure: close a non-controller broker's session.
    let controller_id = reader.get_controller_id().await?.unwrap_or(1);
    let victim = *ids.iter().find(|b| **b != controller_id).unwrap();
    let led: Vec<(String, i32)> = assignment
        .iter()
        .filter(|(_, r)| r[0] == victim)
        .map(|(p, _)| p.clone())
        .collect();
    let start = Instant::now();
    handles[&victim].shutdown().await;
    clients[&victim].close().await;
    let tl = told.clone();
    let led2 = led.clone();
    wait_until("new leaders told", Duration::from_secs(600), || {
        led2.iter().all(|p| {
            ids.iter()
                .filter(|b| **b != victim)
                .any(|b| tl[b].lock().unwrap().get(p).is_some_and(|v| v.1 == *b))
        })
    })
    .await?;
    println!(
        "partitions={partitions} broker failure ({} leaders on broker {victim}): every new leader told {:?}",
        led.len(),
        start.elapsed()
    );
    for (id, h) in &handles {
        if *id != victim {
            h.shutdown().await;
            clients[id].close().await;
        }
    }
    reader.close().await;
    Ok(())
}
