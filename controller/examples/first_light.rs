//! First light against a real ZooKeeper, without brokers: three in-process controllers (one per
//! fake broker id) elect a controller, a topic is created through the admin path, and the
//! controller's LeaderAndIsr / UpdateMetadata reach small fake broker sockets that answer
//! "no error". Then the active controller shuts down and another one takes over.
//!
//! Run: `cargo run -p controller --example first_light -- 127.0.0.1:2181`
//! (the chroot `/first-light-<pid>` is used, so an existing cluster is not disturbed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use controller::admin::{assign_replicas_to_brokers, AdminZkClient};
use controller::ControllerConfig;
use kafka_protocol::messages::stop_replica_response::StopReplicaPartitionError;
use kafka_protocol::messages::{
    LeaderAndIsrRequest, LeaderAndIsrResponse, RequestHeader, ResponseHeader, StopReplicaRequest,
    StopReplicaResponse, UpdateMetadataRequest, UpdateMetadataResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zk::client::KafkaZkClient;
use zk::data::{BrokerRegistration, EndPoint};

/// A fake broker: decodes control requests and answers with an empty success response.
async fn fake_broker(id: i32, listener: TcpListener) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
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
                macro_rules! answer {
                    ($req:ty, $resp:ty, $show:expr, $build:expr) => {{
                        let h =
                            RequestHeader::decode(&mut b, <$req>::header_version(version)).unwrap();
                        let r = <$req>::decode(&mut b, version).unwrap();
                        println!(
                            "broker {id}: {} v{version} from client {:?}: {}",
                            stringify!($req),
                            h.client_id.as_deref(),
                            $show(&r)
                        );
                        ResponseHeader::default()
                            .with_correlation_id(h.correlation_id)
                            .encode(&mut out, <$resp>::header_version(version))
                            .unwrap();
                        let resp: $resp = $build(&r);
                        resp.encode(&mut out, version).unwrap();
                    }};
                }
                match key {
                    4 => answer!(
                        LeaderAndIsrRequest,
                        LeaderAndIsrResponse,
                        |r: &LeaderAndIsrRequest| format!(
                            "epoch {} partitions {:?}",
                            r.controller_epoch,
                            r.topic_states
                                .iter()
                                .flat_map(|t| t.partition_states.iter().map(move |p| (
                                    t.topic_name.0.to_string(),
                                    p.partition_index,
                                    p.leader.0,
                                    p.is_new
                                )))
                                .collect::<Vec<_>>()
                        ),
                        |_: &LeaderAndIsrRequest| LeaderAndIsrResponse::default()
                    ),
                    6 => answer!(
                        UpdateMetadataRequest,
                        UpdateMetadataResponse,
                        |r: &UpdateMetadataRequest| format!(
                            "epoch {} live brokers {} partitions {}",
                            r.controller_epoch,
                            r.live_brokers.len(),
                            r.topic_states
                                .iter()
                                .map(|t| t.partition_states.len())
                                .sum::<usize>()
                        ),
                        |_: &UpdateMetadataRequest| UpdateMetadataResponse::default()
                    ),
                    5 => answer!(
                        StopReplicaRequest,
                        StopReplicaResponse,
                        |r: &StopReplicaRequest| format!(
                            "{:?}",
                            r.topic_states
                                .iter()
                                .flat_map(|t| t.partition_states.iter().map(move |p| (
                                    t.topic_name.0.to_string(),
                                    p.partition_index,
                                    p.delete_partition
                                )))
                                .collect::<Vec<_>>()
                        ),
                        |r: &StopReplicaRequest| StopReplicaResponse::default()
                            .with_partition_errors(
                                r.topic_states
                                    .iter()
                                    .flat_map(|t| t.partition_states.iter().map(move |p| {
                                        StopReplicaPartitionError::default()
                                            .with_topic_name(t.topic_name.clone())
                                            .with_partition_index(p.partition_index)
                                    }))
                                    .collect()
                            )
                    ),
                    _ => return,
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

async fn wait_for<F, Fut>(what: &str, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        if start.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let zk_hosts = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:2181".into());
    let connect = format!("{zk_hosts}/first-light-{}", std::process::id());
    let mut handles = Vec::new();
    let mut clients = Vec::new();
    for id in 1..=3 {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(fake_broker(id, listener));
        let zk = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
        zk.ensure_persistent_paths().await?;
        let cluster_id = zk
            .get_or_create_cluster_id(&zk::data::random_uuid_string())
            .await?;
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
                timestamp_ms: zk::data::now_ms(),
            })
            .await?;
        println!("broker {id}: cluster id {cluster_id}, broker epoch {epoch}");
        handles.push(controller::start(
            zk.clone(),
            ControllerConfig::with_defaults(id),
            epoch,
        ));
        clients.push(zk);
    }
    // A second registration of the same id from another session must fail.
    let dup = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
    let again = dup
        .register_broker(&BrokerRegistration {
            broker_id: 1,
            endpoints: vec![],
            rack: None,
            timestamp_ms: 0,
        })
        .await;
    println!(
        "duplicate broker id 1: {:?}",
        again.err().map(|e| e.to_string())
    );
    dup.close().await;

    let h2 = handles.clone();
    wait_for("an active controller", || {
        let h = h2.clone();
        async move { h.iter().any(|h| h.is_active()) }
    })
    .await?;
    let active = handles.iter().position(|h| h.is_active()).unwrap();
    println!(
        "active controller: broker {}, epoch {:?}",
        active + 1,
        handles[active].controller_epoch()
    );

    // A separate session for reading, like an operator's zkCli.
    let zk = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
    let admin = AdminZkClient::new(zk.clone());
    let assignment = assign_replicas_to_brokers(&[1, 2, 3], 3, 2)?;
    let id = admin
        .create_topic("orders", &assignment, &BTreeMap::new())
        .await?;
    println!("created topic orders with id {id}");
    let z = zk.clone();
    wait_for("partition states", || {
        let z = z.clone();
        async move {
            z.get_data_maybe("/brokers/topics/orders/partitions/2/state")
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await?;
    for path in [
        "/controller",
        "/controller_epoch",
        "/brokers/ids/1",
        "/brokers/topics/orders",
        "/brokers/topics/orders/partitions/0/state",
        "/cluster/id",
        "/feature",
        "/config/topics/orders",
    ] {
        let (data, stat) = zk.get_data_maybe(path).await?.unwrap();
        println!(
            "{path} (version {}): {}",
            stat.version,
            String::from_utf8_lossy(&data)
        );
    }

    println!(
        "shutting down the active controller (broker {})",
        active + 1
    );
    handles[active].shutdown().await;
    clients[active].close().await;
    let h2 = handles.clone();
    wait_for("a new controller", || {
        let h = h2.clone();
        async move {
            h.iter()
                .enumerate()
                .any(|(i, h)| i != active && h.is_active())
        }
    })
    .await?;
    let new_active = handles.iter().position(|h| h.is_active()).unwrap();
    println!(
        "new controller: broker {}, epoch {:?}",
        new_active + 1,
        handles[new_active].controller_epoch()
    );
    let z = zk.clone();
    let dead = active as i32 + 1;
    wait_for("leaders moved off the dead broker", || {
        let z = z.clone();
        async move {
            for p in 0..3 {
                let path = format!("/brokers/topics/orders/partitions/{p}/state");
                let Ok(Some((d, _))) = z.get_data_maybe(&path).await else {
                    return false;
                };
                if String::from_utf8_lossy(&d).contains(&format!("\"leader\":{dead},")) {
                    return false;
                }
            }
            true
        }
    })
    .await?;
    for p in 0..3 {
        let path = format!("/brokers/topics/orders/partitions/{p}/state");
        let (data, _) = zk.get_data_maybe(&path).await?.unwrap();
        println!("{path}: {}", String::from_utf8_lossy(&data));
    }
    admin.delete_topic("orders").await?;
    println!("deletion requested while broker {dead} is down; bringing it back");
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(fake_broker(dead, listener));
    let back = KafkaZkClient::connect(&connect, Duration::from_secs(6)).await?;
    let epoch = back
        .register_broker(&BrokerRegistration {
            broker_id: dead,
            endpoints: vec![EndPoint {
                listener_name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: None,
            timestamp_ms: zk::data::now_ms(),
        })
        .await?;
    println!("broker {dead} re-registered with broker epoch {epoch}");
    let z = zk.clone();
    wait_for("topic deleted", || {
        let z = z.clone();
        async move {
            z.get_topic_assignment("orders")
                .await
                .ok()
                .flatten()
                .is_none()
        }
    })
    .await?;
    println!("topic orders deleted");
    for h in &handles {
        h.shutdown().await;
    }
    for c in &clients {
        c.close().await;
    }
    back.close().await;
    zk.close().await;
    Ok(())
}
