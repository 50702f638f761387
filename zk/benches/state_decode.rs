//! Decoding the partition-state znodes a new controller reads at failover (issue 4's
//! controller bench: 10 topics x 10,000 partitions). Run: `cargo bench -p zk --bench
//! state_decode`; compare two versions with criterion's `--save-baseline` / `--baseline`.
//! One iteration decodes all 100,000 `state` documents, as Kafka 3.6 writes them, into a map
//! like the one `KafkaZkClient::get_partition_states` returns.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use zk::data::{TopicPartition, TopicPartitionStateZNode};

const TOPICS: usize = 10;
const PER_TOPIC: i32 = 10_000;

fn states() -> Vec<(TopicPartition, Vec<u8>)> {
    let mut out = Vec::new();
    for t in 0..TOPICS {
        for p in 0..PER_TOPIC {
            let leader = 1 + (p % 3);
            let isr = [leader, 1 + (leader % 3), 1 + ((leader + 1) % 3)];
            let json = format!(
                r#"{{"controller_epoch":{},"leader":{leader},"version":1,"leader_epoch":{},"isr":[{},{},{}]}}"#,
                3 + p % 5,
                p % 17,
                isr[0],
                isr[1],
                isr[2]
            );
            out.push((
                TopicPartition::new(format!("cbench-{t}"), p),
                json.into_bytes(),
            ));
        }
    }
    out
}

fn decode_all(c: &mut Criterion) {
    let input = states();
    let mut g = c.benchmark_group("partition_states");
    g.sample_size(20);
    g.bench_function("decode_100000", |b| {
        b.iter(|| {
            let mut out = BTreeMap::new();
            for (tp, bytes) in &input {
                let s = TopicPartitionStateZNode::decode(tp, bytes, 7).expect("valid state");
                out.insert(tp.clone(), s);
            }
            black_box(out)
        })
    });
    g.finish();
}

criterion_group!(benches, decode_all);
criterion_main!(benches);
