//! Building and encoding a Metadata answer for 100,000 partitions (issue 4's controller bench:
//! 10 topics x 10,000 partitions, replication factor 3, 3 live brokers).
//!
//! Run: `cargo bench -p broker --bench metadata`. The cache is filled through
//! `MetadataCache::update` with one UpdateMetadata request, as the controller would send it.
//! Measured: the all-topics answer, whole frame (size, header, body), at v12 (what the bench's
//! client asks), v9 and v1, both ways: `plain` (kafka-protocol's structs, then its encoder: the
//! fallback path) and `direct` (the broker's encoder straight from the cache); and, for
//! comparison, what a client spends decoding the v12 answer with kafka-protocol (as
//! testcluster's `Client::metadata` does) and what applying the UpdateMetadata request costs
//! (the cache's write lock is held that long) and decoding it. Before criterion's figures, a quick interleaved run
//! prints the plain/direct ratio (alternating the two, so machine noise hits both alike).

use bytes::{Buf, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kafka_protocol::messages::update_metadata_request::{
    UpdateMetadataBroker, UpdateMetadataEndpoint, UpdateMetadataPartitionState,
    UpdateMetadataTopicState,
};
use kafka_protocol::messages::{
    BrokerId, MetadataResponse, ResponseHeader, ResponseKind, TopicName, UpdateMetadataRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::time::Instant;
use uuid::Uuid;

use broker::api::metadata::{self, Options};
use broker::api::metadata_encode;
use broker::metadata_cache::MetadataCache;

/// The broker binary's allocator, so allocation costs are the broker's.
#[global_allocator]
static ALLOC: broker::alloc::GuardedAlloc = broker::alloc::GuardedAlloc;

const TOPICS: usize = 10;
const PER_TOPIC: i32 = 10_000;
const BROKERS: i32 = 3;

/// The UpdateMetadata request a controller sends for the bench's 100,000 partitions.
fn update_request() -> UpdateMetadataRequest {
    let brokers = (1..=BROKERS)
        .map(|id| {
            UpdateMetadataBroker::default()
                .with_id(BrokerId(id))
                .with_endpoints(vec![UpdateMetadataEndpoint::default()
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9090 + id)
                    .with_listener(StrBytes::from_static_str("PLAINTEXT"))])
        })
        .collect();
    let topics = (0..TOPICS)
        .map(|t| {
            let name = TopicName(StrBytes::from_string(format!("bench-{t}")));
            UpdateMetadataTopicState::default()
                .with_topic_name(name.clone())
                .with_topic_id(Uuid::from_u128(t as u128 + 1))
                .with_partition_states(
                    (0..PER_TOPIC)
                        .map(|p| {
                            let replicas: Vec<BrokerId> =
                                (0..3).map(|i| BrokerId((p + i) % BROKERS + 1)).collect();
                            UpdateMetadataPartitionState::default()
                                .with_topic_name(name.clone())
                                .with_partition_index(p)
                                .with_controller_epoch(2)
                                .with_leader(replicas[0])
                                .with_leader_epoch(1)
                                .with_isr(replicas.clone())
                                .with_zk_version(1)
                                .with_replicas(replicas)
                        })
                        .collect(),
                )
        })
        .collect();
    UpdateMetadataRequest::default()
        .with_controller_id(BrokerId(1))
        .with_controller_epoch(2)
        .with_live_brokers(brokers)
        .with_topic_states(topics)
}

fn cache() -> MetadataCache {
    let c = MetadataCache::new();
    c.update(&update_request());
    c
}

fn options(version: i16) -> Options<'static> {
    Options {
        version,
        listener: "PLAINTEXT",
        cluster_id: "bench-cluster-id-000000",
        topic_operations: false,
        cluster_operations: false,
    }
}

/// The answer as the broker sent it before the direct encoder: kafka-protocol's struct, then
/// its encoder.
fn plain(c: &MetadataCache, version: i16) -> Bytes {
    let resp = metadata::build(c, &options(version), None);
    broker::api::encode_response(7, version, &ResponseKind::Metadata(resp))
        .unwrap()
        .freeze()
}

fn direct(c: &MetadataCache, version: i16) -> Bytes {
    metadata_encode::encode(c, &options(version), None, 7).unwrap()
}

/// Median over `rounds` alternating runs of plain and direct, and their ratio.
fn interleaved(c: &MetadataCache, version: i16, rounds: usize) {
    let (mut p, mut d) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        black_box(plain(c, version));
        p.push(t.elapsed());
        let t = Instant::now();
        black_box(direct(c, version));
        d.push(t.elapsed());
    }
    p.sort();
    d.sort();
    let (p, d) = (p[rounds / 2], d[rounds / 2]);
    println!(
        "v{version} interleaved x{rounds}: plain {p:.2?}, direct {d:.2?}, ratio {:.1}",
        p.as_secs_f64() / d.as_secs_f64()
    );
}

/// As issue 4's bench does it: three brokers asked at once on this machine (three threads,
/// each building one answer; the time until all three are done), plain and direct alternating.
fn three_at_once(c: &MetadataCache, rounds: usize) {
    let once = |f: fn(&MetadataCache, i16) -> Bytes| {
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| black_box(f(c, 12)));
            }
        });
        t.elapsed()
    };
    let (mut p, mut d) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p.push(once(plain));
        d.push(once(direct));
    }
    p.sort();
    d.sort();
    let (p, d) = (p[rounds / 2], d[rounds / 2]);
    println!(
        "v12 three at once x{rounds}: plain {p:.2?}, direct {d:.2?}, ratio {:.1}",
        p.as_secs_f64() / d.as_secs_f64()
    );
}

fn bench(cr: &mut Criterion) {
    let c = cache();
    for v in [12, 9, 1, 0] {
        assert_eq!(
            plain(&c, v),
            direct(&c, v),
            "v{v}: direct differs from plain"
        );
    }
    for v in [12, 9, 1] {
        interleaved(&c, v, 41);
    }
    three_at_once(&c, 21);
    let mut g = cr.benchmark_group("metadata_100k");
    g.sample_size(20);
    for v in [12, 9, 1] {
        g.bench_function(format!("plain_v{v}"), |b| b.iter(|| plain(&c, v)));
        g.bench_function(format!("direct_v{v}"), |b| b.iter(|| direct(&c, v)));
    }
    let frame = direct(&c, 12);
    println!("v12 answer: {} bytes", frame.len());
    g.bench_function("client_decode_v12", |b| {
        b.iter(|| {
            let mut body = frame.slice(4..);
            let h = ResponseHeader::decode(&mut body, 1).unwrap();
            let r = MetadataResponse::decode(&mut body, 12).unwrap();
            assert!(!body.has_remaining());
            (h, r)
        })
    });
    // For comparison: applying the controller's UpdateMetadata for all 100,000 partitions to a
    // filled cache (a failover's), which holds the cache's write lock, so answers wait for it.
    let req = update_request();
    g.bench_function("apply_update_metadata", |b| b.iter(|| c.update(&req)));
    // And decoding that request (v8, as the controller sends it) before it can be applied.
    let mut wire = BytesMut::new();
    req.encode(&mut wire, 8).unwrap();
    let wire = wire.freeze();
    println!("UpdateMetadata v8 request: {} bytes", wire.len());
    g.bench_function("decode_update_metadata", |b| {
        b.iter(|| UpdateMetadataRequest::decode(&mut wire.clone(), 8).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
