//! The three measurements, each on librdkafka through the `rdkafka` crate:
//!
//! - [`produce`]: N records of S bytes to partition 0 as fast as the client goes, latency taken
//!   from the moment `send` enqueues a record to its delivery callback (so it includes linger,
//!   queueing in the client, the request round trip and, for acks=all, replication);
//! - [`consume`]: the same records read back by assignment from offset 0, checking that each
//!   offset comes once and in order and that every payload has the size sent;
//! - [`e2e`]: records at a fixed rate, each carrying its send time, read by a consumer in the same
//!   process; the latency is the consumer's clock minus the send time (one monotonic clock).
//!
//! Broker CPU seconds are sampled around each phase (see [`crate::cpu`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::cpu::BrokerCpu;
use crate::stats::Latencies;

/// Client settings shared by the commands.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub acks: String,
    pub compression: String,
    pub linger_ms: u32,
    pub batch_bytes: u32,
    /// Extra librdkafka producer properties, applied last.
    pub producer_config: Vec<(String, String)>,
    /// Extra librdkafka consumer properties, applied last.
    pub consumer_config: Vec<(String, String)>,
}

impl ClientSettings {
    fn client_config(&self, bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap)
            .set("acks", &self.acks)
            .set("compression.type", &self.compression)
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_bytes.to_string())
            .set("batch.num.messages", "1000000")
            .set("enable.idempotence", "false")
            .set("message.timeout.ms", "120000");
        for (k, v) in &self.producer_config {
            c.set(k, v);
        }
        c
    }
}

/// Outcome of one phase.
pub struct Phase {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub broker_cpu_seconds: f64,
    /// The user-mode part of `broker_cpu_seconds` (the broker's own code).
    pub broker_user_seconds: f64,
    pub latencies: Option<Latencies>,
}

impl Phase {
    pub fn records_per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }
    pub fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }
    /// Broker CPU seconds per million records.
    pub fn cpu_per_million(&self) -> f64 {
        self.broker_cpu_seconds * 1e6 / self.records as f64
    }

    pub fn json(&mut self) -> Value {
        let mut v = json!({
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_second": self.records_per_second(),
            "mb_per_second": self.mb_per_second(),
            "broker_cpu_seconds": self.broker_cpu_seconds,
            "broker_cpu_seconds_per_million": self.cpu_per_million(),
            "broker_user_seconds": self.broker_user_seconds,
        });
        if let Some(l) = &mut self.latencies {
            v["latency"] = l.summary();
        }
        v
    }
}

/// Delivery callbacks run on the thread that calls `poll`/`flush` (ours); the context counts
/// them and keeps each record's enqueue-to-delivery time. The opaque value of a record is its
/// enqueue time in nanoseconds since `start`.
struct DeliveryCounter {
    start: Instant,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    latencies: Mutex<Latencies>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_nanos: usize) {
        let now = self.start.elapsed();
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                let lat = now.saturating_sub(Duration::from_nanos(sent_nanos as u64));
                self.latencies.lock().expect("not poisoned").record(lat);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("not poisoned");
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

fn payload(size: usize) -> Vec<u8> {
    // Not all-zero, so a compression codec has some (but not unlimited) work to do.
    (0..size).map(|i| b"0123456789abcdefghij"[i % 20]).collect()
}

/// Sends `record` to partition 0, serving delivery callbacks while librdkafka's queue is full.
fn send_blocking<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &BaseProducer<C>,
    mut record: BaseRecord<'_, (), [u8], usize>,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                producer.poll(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(e).context("enqueueing a record"),
        }
    }
}

/// Produces `records` records of `size` bytes to partition 0 of `topic` and waits for every
/// delivery report.
pub fn produce(
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: usize,
    settings: &ClientSettings,
    cpu: &BrokerCpu,
) -> anyhow::Result<Phase> {
    let ctx = DeliveryCounter {
        start: Instant::now(),
        delivered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
        latencies: Mutex::new(Latencies::with_capacity(records as usize)),
    };
    let producer: BaseProducer<DeliveryCounter> = settings
        .client_config(bootstrap)
        .create_with_context(ctx)
        .context("creating the producer")?;
    // Connect and learn the leader before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata for the bench topic")?;
    let value = payload(size);
    let (user0, sys0) = cpu.user_and_system()?;
    let t0 = Instant::now();
    for i in 0..records {
        let sent = producer.context().start.elapsed().as_nanos() as usize;
        let record = BaseRecord::with_opaque_to(topic, sent)
            .partition(0)
            .payload(value.as_slice());
        send_blocking(&producer, record)?;
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(180))
        .context("waiting for delivery reports")?;
    let seconds = t0.elapsed().as_secs_f64();
    let (user1, sys1) = cpu.user_and_system()?;
    let ctx = producer.context();
    let failed = ctx.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = ctx.first_error.lock().expect("not poisoned").clone();
        anyhow::bail!(
            "{failed} of {records} records failed; first error: {}",
            first.unwrap_or_default()
        );
    }
    let delivered = ctx.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(
        delivered == records,
        "{delivered} delivery reports for {records} records"
    );
    let latencies = std::mem::take(&mut *ctx.latencies.lock().expect("not poisoned"));
    Ok(Phase {
        records,
        bytes: records * size as u64,
        seconds,
        broker_cpu_seconds: (user1 + sys1) - (user0 + sys0),
        broker_user_seconds: user1 - user0,
        latencies: Some(latencies),
    })
}

fn consumer(bootstrap: &str, settings: &ClientSettings) -> anyhow::Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        // librdkafka wants a group.id even for a manual assignment; the group never joins
        // (no subscribe) and no offset is committed.
        .set("group.id", format!("bench-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100");
    for (k, v) in &settings.consumer_config {
        c.set(k, v);
    }
    c.create().context("creating the consumer")
}

/// The group.id librdkafka insists on makes it look up a group coordinator, and the first
/// FindCoordinator makes the broker create `__consumer_offsets` (50 partitions by default), as
/// Kafka does. Asking for committed offsets waits for that to happen before the CPU clock
/// starts, so the consume figure counts fetching only. Errors are only reported.
/// While `__consumer_offsets` is being created the answer is NOT_COORDINATOR or
/// COORDINATOR_NOT_AVAILABLE, so this asks again until an answer succeeds (30 s at most).
fn warm_up_group(c: &BaseConsumer, topic: &str) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let mut last_error = None;
    let ok = testcluster::wait_until("the group coordinator", Duration::from_secs(30), || match c
        .committed_offsets(tpl.clone(), Duration::from_secs(5))
    {
        Ok(_) => Some(()),
        Err(e) => {
            last_error = Some(e);
            None
        }
    });
    if ok.is_err() {
        eprintln!(
            "[bench] group warm-up failed (consume CPU may include creating __consumer_offsets): {}",
            last_error.map(|e| e.to_string()).unwrap_or_default()
        );
    }
}

fn assign_from_zero(c: &BaseConsumer, topic: &str) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(0))?;
    c.assign(&tpl).context("assigning partition 0")?;
    Ok(())
}

/// Reads partition 0 of `topic` from offset 0 until `records` records have come, checking that
/// offsets are 0, 1, 2, ... and that every payload is `size` bytes.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    records: u64,
    size: usize,
    settings: &ClientSettings,
    cpu: &BrokerCpu,
) -> anyhow::Result<Phase> {
    let c = consumer(bootstrap, settings)?;
    c.fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("metadata for the bench topic")?;
    warm_up_group(&c, topic);
    let (user0, sys0) = cpu.user_and_system()?;
    let t0 = Instant::now();
    assign_from_zero(&c, topic)?;
    let mut next: i64 = 0;
    let mut bytes = 0u64;
    let (mut progress_at, mut last_progress) = (0i64, Instant::now());
    while (next as u64) < records {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                anyhow::ensure!(
                    m.offset() == next,
                    "expected offset {next}, got {} (a gap or a duplicate)",
                    m.offset()
                );
                let len = m.payload_len();
                anyhow::ensure!(
                    len == size,
                    "offset {next}: payload of {len} bytes, sent {size}"
                );
                bytes += len as u64;
                next += 1;
            }
            Some(Err(e)) => return Err(e).context("consuming"),
            None => {
                // Reading the clock per record costs more than the record here: only an
                // empty poll checks for a stall.
                if next != progress_at {
                    (progress_at, last_progress) = (next, Instant::now());
                }
                anyhow::ensure!(
                    last_progress.elapsed() < Duration::from_secs(30),
                    "no record for 30 s after {next} of {records}"
                );
            }
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let (user1, sys1) = cpu.user_and_system()?;
    Ok(Phase {
        records,
        bytes,
        seconds,
        broker_cpu_seconds: (user1 + sys1) - (user0 + sys0),
        broker_user_seconds: user1 - user0,
        latencies: None,
    })
}

/// Outcome of an end-to-end run.
pub struct E2e {
    pub target_rate: f64,
    pub achieved_rate: f64,
    /// Records the consumer had read when sending stopped, per second of sending: what
    /// producer, brokers and consumer sustained together.
    pub consumed_while_sending_rate: f64,
    pub sent: u64,
    pub measured: u64,
    pub latencies: Latencies,
}

impl E2e {
    pub fn json(&mut self) -> Value {
        json!({
            "target_rate": self.target_rate,
            "achieved_rate": self.achieved_rate,
            "consumed_while_sending_rate": self.consumed_while_sending_rate,
            "sent": self.sent,
            "measured": self.measured,
            "latency": self.latencies.summary(),
        })
    }
}

/// Sends `rate` records/s for `seconds` seconds (each payload starts with its send time in
/// nanoseconds since a shared start), while a consumer thread reads them back. Records sent in
/// the first `warmup` are read but not measured. An infinite `rate` sends as fast as the
/// producer's queue takes records, to find what the whole pipeline sustains.
pub fn e2e(
    bootstrap: &str,
    topic: &str,
    rate: f64,
    seconds: f64,
    warmup: Duration,
    size: usize,
    settings: &ClientSettings,
) -> anyhow::Result<E2e> {
    anyhow::ensure!(rate > 0.0 && seconds > 0.0, "rate and seconds must be > 0");
    let size = size.max(8);
    let start = Instant::now();
    let total = Arc::new(AtomicU64::new(u64::MAX));
    // Records the consumer has read so far.
    let consumed = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicBool::new(false));
    // Send times (ns since `start`) from which records are measured; set when sending starts.
    let measure_from = Arc::new(AtomicU64::new(u64::MAX));
    let reader = {
        let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
        let (total, ready, measure_from) = (total.clone(), ready.clone(), measure_from.clone());
        let consumed = consumed.clone();
        let settings = settings.clone();
        std::thread::spawn(move || -> anyhow::Result<(u64, Latencies)> {
            let c = consumer(&bootstrap, &settings)?;
            c.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            // Creating __consumer_offsets (150 replicas on 3 brokers) must not overlap the
            // measured window.
            warm_up_group(&c, &topic);
            assign_from_zero(&c, &topic)?;
            let mut lat = Latencies::with_capacity(((rate * seconds) as usize).min(1 << 24));
            let mut seen = 0u64;
            let mut last_progress = Instant::now();
            loop {
                if seen >= total.load(Ordering::Acquire) {
                    return Ok((seen, lat));
                }
                match c.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let now = start.elapsed();
                        ready.store(true, Ordering::Release);
                        let p = m.payload().context("record without payload")?;
                        anyhow::ensure!(m.offset() == seen as i64, "gap or duplicate");
                        let sent = Duration::from_nanos(u64::from_be_bytes(p[..8].try_into()?));
                        if sent.as_nanos() as u64 >= measure_from.load(Ordering::Relaxed) {
                            lat.record(now.saturating_sub(sent));
                        }
                        seen += 1;
                        consumed.store(seen, Ordering::Relaxed);
                        last_progress = Instant::now();
                    }
                    Some(Err(e)) => return Err(e).context("consuming"),
                    None => {
                        // An empty poll means the assignment is in place and fetching.
                        ready.store(true, Ordering::Release);
                        anyhow::ensure!(
                            last_progress.elapsed() < Duration::from_secs(30),
                            "no record for 30 s after {seen}"
                        );
                    }
                }
            }
        })
    };
    let producer: BaseProducer<DeliveryCounter> = settings
        .client_config(bootstrap)
        .create_with_context(DeliveryCounter {
            start,
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            first_error: Mutex::new(None),
            latencies: Mutex::new(Latencies::default()),
        })?;
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    testcluster::wait_until("the consumer to start", Duration::from_secs(30), || {
        ready.load(Ordering::Acquire).then_some(())
    })?;
    let mut value = payload(size);
    let t0 = start.elapsed();
    measure_from.store((t0 + warmup).as_nanos() as u64, Ordering::Relaxed);
    let mut sent = 0u64;
    loop {
        let elapsed = (start.elapsed() - t0).as_secs_f64();
        if elapsed >= seconds {
            break;
        }
        // At most 1,000 records between two looks at the clock (an unreachable rate would
        // otherwise never leave this loop).
        let due = ((elapsed * rate) as u64).min(sent + 1_000);
        while sent < due {
            let now = start.elapsed();
            value[..8].copy_from_slice(&(now.as_nanos() as u64).to_be_bytes());
            let record = BaseRecord::with_opaque_to(topic, now.as_nanos() as usize)
                .partition(0)
                .payload(value.as_slice());
            send_blocking(&producer, record)?;
            sent += 1;
        }
        // Serves delivery callbacks, then sleeps until the next record is due (at most 1 ms,
        // so callbacks are still served). librdkafka's poll takes whole milliseconds: the
        // 200 µs it was given here became 0, and this loop spun a whole core (4.7 of 5
        // CPU-seconds in `perf sched`) beside the brokers and the consumer it measures.
        producer.poll(Duration::ZERO);
        let next_due = t0 + Duration::from_secs_f64((sent + 1) as f64 / rate);
        let now = start.elapsed();
        if next_due > now {
            std::thread::sleep((next_due - now).min(Duration::from_millis(1)));
        }
    }
    let send_seconds = (start.elapsed() - t0).as_secs_f64();
    let consumed_while_sending = consumed.load(Ordering::Relaxed);
    producer.flush(Duration::from_secs(60))?;
    let failed = producer.context().failed.load(Ordering::Relaxed);
    anyhow::ensure!(failed == 0, "{failed} records failed");
    total.store(sent, Ordering::Release);
    let (seen, latencies) = reader
        .join()
        .map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
    anyhow::ensure!(seen == sent, "sent {sent}, consumed {seen}");
    Ok(E2e {
        target_rate: rate,
        achieved_rate: sent as f64 / send_seconds,
        consumed_while_sending_rate: consumed_while_sending as f64 / send_seconds,
        sent,
        measured: latencies.len() as u64,
        latencies,
    })
}
