//! `bench`: a load tool on librdkafka (the `rdkafka` crate), the C client inside kcat and
//! confluent-kafka, so the numbers are what a stock client gets from our brokers.
//!
//! It measures produce and consume throughput, produce latency (enqueue to delivery report),
//! end-to-end latency (send to consume) at a fixed rate, and the brokers' CPU seconds per
//! million records, read from `/proc/<pid>/stat`. On a small machine the client, not the broker,
//! is usually the limit on records/s, so broker CPU per record is the figure that says how much
//! work the broker does; records/s says how the whole set-up (client + brokers + ZooKeeper on
//! the same cores) performs.
//!
//! Without `--bootstrap`, a run starts its own cluster through the testcluster library (real
//! ZooKeeper and `target/release/broker` processes in a temporary folder) and knows the broker
//! pids; with `--bootstrap`, pass `--broker-pid` to get CPU figures.

#[path = "bench/cpu.rs"]
mod cpu;
#[path = "bench/stats.rs"]
mod stats;
#[path = "bench/target.rs"]
mod target;
#[path = "bench/workload.rs"]
mod workload;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use target::{Layout, Target};
use workload::{ClientSettings, E2e, Phase};

/// Load tool for the ZooKeeper-mode Kafka brokers, on librdkafka (the `rdkafka` crate).
///
/// Without --bootstrap each command starts its own cluster (real ZooKeeper and
/// target/release/broker processes; run `cargo build --release -p broker` first).
///
/// Examples:
///   bench produce-consume --records 1000000 --size 100 --acks 1
///   bench e2e --rate 50000 --seconds 10
///   bench compare
#[derive(Parser)]
// `name`: clap's default is the package's name (`tools`; it was `testcluster`).
#[command(name = "bench", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Produce N records to a new 1-partition topic, then consume them back from offset 0.
    ///
    /// Reports records/s and MB/s of both phases, produce latency (enqueue to delivery
    /// report) p50/p99/p99.9/max, and broker CPU seconds per million records per phase.
    ///
    /// Examples:
    ///   bench produce-consume                                  # own 1-broker cluster, 1M x 100 B, acks=1
    ///   bench produce-consume --records 200000 --size 1000 --compression lz4
    ///   bench produce-consume --brokers 3 --replication-factor 3 --min-isr 2 --acks all
    ///   bench produce-consume --bootstrap 127.0.0.1:9092 --broker-pid 12345 --json
    #[command(verbatim_doc_comment)]
    ProduceConsume {
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        producer: ProducerArgs,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// End-to-end latency (send to consume, one clock) at a fixed produce rate.
    ///
    /// Examples:
    ///   bench e2e --rate 50000 --seconds 10
    ///   bench e2e --brokers 3 --replication-factor 3 --min-isr 2 --acks all --rate 100000
    ///   bench e2e --bootstrap 127.0.0.1:9092 --rate 1000 --seconds 30 --json
    #[command(verbatim_doc_comment)]
    E2e {
        #[command(flatten)]
        target: TargetArgs,
        /// Records per second.
        #[arg(long)]
        rate: f64,
        /// How long to produce.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Records sent in the first seconds are consumed but not measured.
        #[arg(long, default_value_t = 1.0)]
        warmup_seconds: f64,
        /// Record value size in bytes (at least 8: the send time is in the first 8).
        #[arg(long, default_value_t = 100)]
        size: usize,
        #[command(flatten)]
        producer: ProducerArgs,
        #[arg(long)]
        json: bool,
    },
    /// acks=1 on 1 broker against acks=all on 3 brokers (RF 3, min.insync.replicas 2), same run.
    ///
    /// Runs produce-consume on each (each on its own fresh cluster), prints the throughput
    /// ratio (goal: acks=all at >= 60% of acks=1), then end-to-end latency on each at half of
    /// its maximal e2e rate (goal: p99 < 20 ms), the highest paced rate a consumer kept up
    /// with, producer and consumer running at once (searched from a flat-out send); and, for
    /// comparison, at half the lower of produce alone and consume alone.
    ///
    /// Examples:
    ///   bench compare
    ///   bench compare --records 500000 --e2e-seconds 5 --json
    #[command(verbatim_doc_comment)]
    Compare {
        #[command(flatten)]
        load: LoadArgs,
        /// Seconds of end-to-end measurement per configuration.
        #[arg(long, default_value_t = 10.0)]
        e2e_seconds: f64,
        /// Compression codec for both configurations.
        #[arg(long, default_value = "none")]
        compression: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// Use this cluster (host:port[,host:port...]) instead of starting one.
    #[arg(long)]
    bootstrap: Option<String>,
    /// With --bootstrap: a broker process to measure CPU of (repeatable).
    #[arg(long = "broker-pid", value_name = "PID", requires = "bootstrap")]
    broker_pids: Vec<u32>,
    /// Brokers to start when no --bootstrap is given.
    #[arg(long, default_value_t = 1, conflicts_with = "bootstrap")]
    brokers: i32,
    /// Replication factor of the bench topic.
    #[arg(long, default_value_t = 1)]
    replication_factor: i16,
    /// min.insync.replicas of the bench topic (broker default when absent).
    #[arg(long)]
    min_isr: Option<u32>,
    /// Extra server.properties entry for the brokers this run starts (repeatable),
    /// e.g. replica.fetch.wait.max.ms=50.
    #[arg(long = "broker-config", value_name = "KEY=VALUE", value_parser = key_value,
          conflicts_with = "bootstrap")]
    broker_config: Vec<(String, String)>,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Records to produce and consume.
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Record value size in bytes (no key).
    #[arg(long, default_value_t = 100)]
    size: usize,
}

#[derive(Args, Clone)]
struct ProducerArgs {
    /// Producer acks: 0, 1 or all.
    #[arg(long, default_value = "1", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    /// Producer compression.type.
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4"])]
    compression: String,
    /// Producer linger.ms (produce-consume defaults to 5, e2e to 1).
    #[arg(long)]
    linger_ms: Option<u32>,
    /// Producer batch.size in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: u32,
    /// Extra librdkafka producer property (repeatable), e.g. queue.buffering.max.messages=500000.
    #[arg(long = "producer-config", value_name = "KEY=VALUE", value_parser = key_value)]
    producer_config: Vec<(String, String)>,
    /// Extra librdkafka consumer property (repeatable), e.g. fetch.max.bytes=104857600.
    #[arg(long = "consumer-config", value_name = "KEY=VALUE", value_parser = key_value)]
    consumer_config: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))?;
    Ok((k.trim().to_string(), v.trim().to_string()))
}

impl ProducerArgs {
    fn settings(&self, default_linger_ms: u32) -> ClientSettings {
        ClientSettings {
            acks: self.acks.clone(),
            compression: self.compression.clone(),
            linger_ms: self.linger_ms.unwrap_or(default_linger_ms),
            batch_bytes: self.batch_bytes,
            producer_config: self.producer_config.clone(),
            consumer_config: self.consumer_config.clone(),
        }
    }
}

impl TargetArgs {
    fn layout(&self) -> Layout {
        Layout {
            brokers: self.brokers,
            replication_factor: self.replication_factor,
            min_isr: self.min_isr,
            broker_config: self.broker_config.clone(),
        }
    }

    fn open(&self) -> anyhow::Result<Target> {
        let layout = self.layout();
        match &self.bootstrap {
            Some(b) => Ok(Target::External {
                bootstrap: b.clone(),
                pids: self.broker_pids.clone(),
            }),
            None => {
                anyhow::ensure!(layout.brokers >= 1, "--brokers must be at least 1");
                anyhow::ensure!(
                    i32::from(layout.replication_factor) <= layout.brokers,
                    "--replication-factor {} needs at least that many --brokers (got {})",
                    layout.replication_factor,
                    layout.brokers
                );
                eprintln!(
                    "[bench] starting ZooKeeper and {} broker(s)",
                    layout.brokers
                );
                Target::start(&layout)
            }
        }
    }
}

fn topic_name() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("bench-{}-{ms}", std::process::id())
}

/// One produce-consume run on an open target.
struct RunResult {
    label: String,
    produce: Phase,
    consume: Phase,
    pids: usize,
    /// Bytes the log holds, and the CPU seconds a plain write of as many bytes to a new file
    /// costs the kernel here (see [`cpu::page_cache_write_seconds`]).
    control: Option<(u64, f64)>,
}

fn produce_consume(
    target: &mut Target,
    layout: &Layout,
    load: &LoadArgs,
    settings: &ClientSettings,
    label: String,
) -> anyhow::Result<RunResult> {
    let topic = topic_name();
    target.create_topic(&topic, layout)?;
    let cpu = target.cpu();
    let bootstrap = target.bootstrap();
    eprintln!(
        "[bench] {label}: producing {} x {} B to {topic}",
        load.records, load.size
    );
    let produce = workload::produce(&bootstrap, &topic, load.records, load.size, settings, &cpu)?;
    eprintln!("[bench] {label}: consuming them back");
    let consume = workload::consume(&bootstrap, &topic, load.records, load.size, settings, &cpu)?;
    let log_bytes = target
        .log_bytes(&topic)
        .unwrap_or(load.records * load.size as u64);
    let control = match cpu::page_cache_write_seconds(&target.scratch_dir(), log_bytes) {
        Ok(s) => Some((log_bytes, s)),
        Err(e) => {
            eprintln!("[bench] page-cache control failed: {e:#}");
            None
        }
    };
    Ok(RunResult {
        label,
        produce,
        consume,
        pids: cpu.pids().len(),
        control,
    })
}

fn run_json(r: &mut RunResult, layout: &Layout, load: &LoadArgs, s: &ClientSettings) -> Value {
    json!({
        "label": r.label,
        "records": load.records,
        "size": load.size,
        "acks": s.acks,
        "compression": s.compression,
        "linger_ms": s.linger_ms,
        "replication_factor": layout.replication_factor,
        "min_insync_replicas": layout.min_isr,
        "broker_pids_measured": r.pids,
        "produce": r.produce.json(),
        "consume": r.consume.json(),
        "control_page_cache_write": r.control.map(|(bytes, s)| json!({
            "bytes": bytes,
            "cpu_seconds": s,
            "cpu_seconds_per_million_records": s * 1e6 / load.records as f64,
        })),
    })
}

fn print_run(r: &mut RunResult) {
    println!("== {}", r.label);
    for (name, p) in [("produce", &mut r.produce), ("consume", &mut r.consume)] {
        print!(
            "{name:8} {:>10.0} records/s {:>8.1} MB/s  {:>7.2} s",
            p.records_per_second(),
            p.mb_per_second(),
            p.seconds
        );
        if r.pids > 0 {
            print!(
                "  broker CPU {:.2} s (user {:.2}) = {:.3} CPU-s per million records",
                p.broker_cpu_seconds,
                p.broker_user_seconds,
                p.cpu_per_million()
            );
        }
        println!();
        if let Some(l) = &mut p.latencies {
            println!(
                "         latency (enqueue to delivery report) p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
                l.percentile_ms(0.5),
                l.percentile_ms(0.99),
                l.percentile_ms(0.999),
                l.max_ms()
            );
        }
    }
    if r.pids == 0 {
        println!("(no broker pid given: pass --broker-pid for broker CPU figures)");
    }
    if let Some((bytes, s)) = r.control {
        println!(
            "control  writing {:.1} MB (the log's size) to a new file here costs the kernel {s:.3} CPU-s = {:.3} per million records",
            bytes as f64 / 1e6,
            s * 1e6 / r.produce.records as f64
        );
    }
}

fn print_e2e(label: &str, e: &mut E2e) {
    println!(
        "== {label}: end-to-end at {:.0} records/s (achieved {:.0}, consumed {:.0} while sending), {} measured: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        e.target_rate,
        e.achieved_rate,
        e.consumed_while_sending_rate,
        e.measured,
        e.latencies.percentile_ms(0.5),
        e.latencies.percentile_ms(0.99),
        e.latencies.percentile_ms(0.999),
        e.latencies.max_ms()
    );
}

fn run_e2e(
    target: &mut Target,
    layout: &Layout,
    rate: f64,
    seconds: f64,
    warmup_seconds: f64,
    size: usize,
    settings: &ClientSettings,
) -> anyhow::Result<E2e> {
    let topic = topic_name();
    target.create_topic(&topic, layout)?;
    eprintln!("[bench] e2e: {rate:.0} records/s for {seconds} s to {topic}");
    workload::e2e(
        &target.bootstrap(),
        &topic,
        rate,
        seconds,
        Duration::from_secs_f64(warmup_seconds),
        size,
        settings,
    )
}

/// What `compare` measured on one configuration.
struct CompareRun {
    run: RunResult,
    json: Value,
    /// e2e with nothing holding the producer back.
    flat_out: E2e,
    /// The paced rates tried after it, each with whether the consumer kept up.
    probes: Vec<(f64, bool)>,
    /// The maximal e2e rate: the highest rate tried that the consumer kept up with.
    max_rate: f64,
    /// e2e at half of `max_rate` (issue 5's goal).
    half: E2e,
    /// e2e at half the lower of produce alone and consume alone (the rate used until
    /// 2026-12-06), for comparison with earlier figures.
    half_alone: E2e,
}

/// One configuration of `compare`: produce-consume; the search for the maximal e2e rate
/// (producer, brokers and consumer running together: a flat-out send, then paced probes);
/// e2e at half of it; and e2e at half the lower of produce alone and consume alone.
fn compare_one(
    label: &str,
    layout: &Layout,
    acks: &str,
    load: &LoadArgs,
    e2e_seconds: f64,
    compression: &str,
) -> anyhow::Result<CompareRun> {
    let args = TargetArgs {
        bootstrap: None,
        broker_pids: Vec::new(),
        brokers: layout.brokers,
        replication_factor: layout.replication_factor,
        min_isr: layout.min_isr,
        broker_config: layout.broker_config.clone(),
    };
    let mut t = args.open()?;
    let settings = ProducerArgs {
        acks: acks.into(),
        compression: compression.into(),
        linger_ms: None,
        batch_bytes: 1_000_000,
        producer_config: Vec::new(),
        consumer_config: Vec::new(),
    }
    .settings(5);
    let mut run = produce_consume(&mut t, layout, load, &settings, label.into())?;
    let json = run_json(&mut run, layout, load, &settings);
    // Every e2e run keeps the producer settings the maximal rates were measured with
    // (linger.ms=5): half of what linger.ms=5 reached, sent with linger.ms=1 (smaller batches,
    // and a broker answers a connection's requests one at a time, as Kafka does), was more
    // than the pipeline sustains once the consume phase ran fast.
    //
    // The maximal rate of an e2e run is what producer, brokers and consumer sustain at once
    // (on this machine they share two cores). Produce alone and consume alone each go faster,
    // and half the lower of the two was, when the consume phase ran fast, more than the three
    // sustain together: the consumer fell behind and the latency measured its backlog.
    //
    // The search: a flat-out send gives a first rate, what the consumer had read when it
    // stopped, per second. A flat-out producer also takes CPU from the consumer, so that
    // rate can be low: paced runs of PROBE_SECONDS then go up by STEP while the consumer
    // keeps up (has read 95 % of what was sent when sending stops, and the producer sent
    // 97 % of the rate), or down until it does. The maximal e2e rate is the highest rate
    // it kept up with.
    const PROBE_SECONDS: f64 = 3.0;
    const STEP: f64 = 1.2;
    let kept_up = |e: &E2e| {
        e.achieved_rate >= 0.97 * e.target_rate
            && e.consumed_while_sending_rate >= 0.95 * e.achieved_rate
    };
    let flat_out = run_e2e(
        &mut t,
        layout,
        f64::INFINITY,
        PROBE_SECONDS,
        1.0,
        load.size,
        &settings,
    )?;
    let mut probes = Vec::new();
    let mut probe = |t: &mut Target, rate: f64| -> anyhow::Result<bool> {
        let e = run_e2e(t, layout, rate, PROBE_SECONDS, 1.0, load.size, &settings)?;
        let ok = kept_up(&e);
        probes.push((rate, ok));
        Ok(ok)
    };
    let mut max_rate = flat_out.consumed_while_sending_rate.floor();
    if probe(&mut t, max_rate)? {
        for _ in 0..8 {
            let up = (max_rate * STEP).floor();
            if !probe(&mut t, up)? {
                break;
            }
            max_rate = up;
        }
    } else {
        for _ in 0..8 {
            max_rate = (max_rate / STEP).floor();
            if probe(&mut t, max_rate)? {
                break;
            }
        }
    }
    let mut measure_at_half = |rate: f64| {
        run_e2e(
            &mut t,
            layout,
            (rate / 2.0).floor(),
            e2e_seconds,
            1.0,
            load.size,
            &settings,
        )
    };
    let half = measure_at_half(max_rate)?;
    let alone = run
        .produce
        .records_per_second()
        .min(run.consume.records_per_second());
    let half_alone = measure_at_half(alone)?;
    Ok(CompareRun {
        run,
        json,
        flat_out,
        probes,
        max_rate,
        half,
        half_alone,
    })
}

fn compare(load: &LoadArgs, e2e_seconds: f64, compression: &str, json: bool) -> anyhow::Result<()> {
    let single = Layout {
        brokers: 1,
        replication_factor: 1,
        min_isr: None,
        broker_config: Vec::new(),
    };
    let replicated = Layout {
        brokers: 3,
        replication_factor: 3,
        min_isr: Some(2),
        broker_config: Vec::new(),
    };
    // Each configuration gets its own cluster, stopped before the next one starts.
    let mut a = compare_one(
        "acks=1, 1 broker, rf=1",
        &single,
        "1",
        load,
        e2e_seconds,
        compression,
    )?;
    let mut b = compare_one(
        "acks=all, 3 brokers, rf=3, min.insync.replicas=2",
        &replicated,
        "all",
        load,
        e2e_seconds,
        compression,
    )?;
    let ratio = b.run.produce.records_per_second() / a.run.produce.records_per_second();
    let b_p99 = b.half.latencies.percentile_ms(0.99);
    if json {
        let e2e = |c: &mut CompareRun| {
            json!({
                "flat_out": c.flat_out.json(),
                "probes": c.probes.iter().map(|(r, ok)| json!({"rate": r, "kept_up": ok})).collect::<Vec<_>>(),
                "max_e2e_rate": c.max_rate,
                "at_half_max": c.half.json(),
                "at_half_of_lower_alone_rate": c.half_alone.json(),
            })
        };
        println!(
            "{}",
            json!({
                "acks1": a.json,
                "acks1_e2e": e2e(&mut a),
                "acks_all": b.json,
                "acks_all_e2e": e2e(&mut b),
                "produce_throughput_ratio": ratio,
                "goal_ratio_met": ratio >= 0.6,
                "goal_e2e_p99_met": b_p99 < 20.0,
            })
        );
        return Ok(());
    }
    for (label, c) in [
        ("acks=1, 1 broker, rf=1", &mut a),
        ("acks=all, 3 brokers, rf=3", &mut b),
    ] {
        print_run(&mut c.run);
        let probes: Vec<String> = c
            .probes
            .iter()
            .map(|(r, ok)| format!("{r:.0} {}", if *ok { "kept up" } else { "fell behind" }))
            .collect();
        println!(
            "== {label}: flat out sent {:.0} records/s, the consumer read {:.0}/s; paced: {}; maximal e2e rate {}{:.0} records/s",
            c.flat_out.achieved_rate,
            c.flat_out.consumed_while_sending_rate,
            probes.join(", "),
            // The search stops after 8 steps: then the consumer never fell behind.
            if c.probes.iter().all(|(_, ok)| *ok) { "at least " } else { "" },
            c.max_rate
        );
        print_e2e(&format!("{label}, half the maximal e2e rate"), &mut c.half);
        print_e2e(
            &format!("{label}, half the lower of produce alone and consume alone"),
            &mut c.half_alone,
        );
    }
    println!(
        "produce throughput acks=all / acks=1 = {:.1}%  (goal >= 60%: {})",
        ratio * 100.0,
        if ratio >= 0.6 { "met" } else { "MISSED" }
    );
    println!(
        "acks=all end-to-end p99 at half its maximal e2e rate = {b_p99:.2} ms  (goal < 20 ms: {})",
        if b_p99 < 20.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::ProduceConsume {
            target,
            load,
            producer,
            json,
        } => {
            let layout = target.layout();
            let settings = producer.settings(5);
            let mut t = target.open()?;
            let label = format!(
                "acks={} rf={} brokers={}",
                settings.acks,
                layout.replication_factor,
                if target.bootstrap.is_some() {
                    "external".to_string()
                } else {
                    layout.brokers.to_string()
                }
            );
            let mut r = produce_consume(&mut t, &layout, &load, &settings, label)?;
            if json {
                println!("{}", run_json(&mut r, &layout, &load, &settings));
            } else {
                print_run(&mut r);
            }
        }
        Cmd::E2e {
            target,
            rate,
            seconds,
            warmup_seconds,
            size,
            producer,
            json,
        } => {
            let layout = target.layout();
            let settings = producer.settings(1);
            let mut t = target.open()?;
            let mut e = run_e2e(
                &mut t,
                &layout,
                rate,
                seconds,
                warmup_seconds,
                size,
                &settings,
            )?;
            if json {
                println!("{}", e.json());
            } else {
                print_e2e(&format!("acks={}", settings.acks), &mut e);
            }
        }
        Cmd::Compare {
            load,
            e2e_seconds,
            compression,
            json,
        } => compare(&load, e2e_seconds, &compression, json)?,
    }
    Ok(())
}
