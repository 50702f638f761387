//! `testcluster produce` and `testcluster consume`: Kafka's `kafka-console-producer.sh` and
//! `kafka-console-consumer.sh`, on librdkafka (the `rdkafka` crate, the C client inside kcat
//! and confluent-kafka), so what they exercise is what a stock client does.
//!
//! - `produce` reads records from stdin, one per line; with `--key-separator` each line is
//!   `key<sep>value` (Kafka's `parse.key=true`). It waits for every acknowledgement before it
//!   exits, and fails if any record was not acknowledged.
//! - `consume` subscribes to a topic in a consumer group (JoinGroup, SyncGroup, Heartbeat,
//!   OffsetCommit on the group coordinator). Without `--group` it uses a throw-away group
//!   `console-consumer-<n>` and commits nothing, as Kafka's tool does; with `--group` it commits
//!   what it printed, so the next consumer of that group continues where it stopped.
//!   `--from-beginning` applies when the group has no committed offset. It stops after
//!   `--max-messages`, after `--timeout-ms` without a record, or on Ctrl-C, and prints
//!   `Processed a total of N messages` to stderr.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use crate::tool::state::ClusterState;

/// Set by SIGINT/SIGTERM; the consume loop checks it between polls.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn stop_on_signals() {
    let handler: extern "C" fn(libc::c_int) = on_stop_signal;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
    }
}

/// Counts acknowledgements; prints each failure as Kafka's `ErrorLoggingCallback` does.
struct Deliveries {
    topic: String,
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let key = m
                    .key()
                    .map_or("null".to_string(), |k| format!("{} bytes", k.len()));
                let value = m.payload().map_or(0, <[u8]>::len);
                eprintln!(
                    "ERROR Error when sending message to topic {} with key: {key}, value: {value} bytes with error: {e}",
                    self.topic
                );
                self.first_error
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub struct ProduceArgs {
    pub topic: String,
    pub key_separator: Option<String>,
    pub acks: String,
}

/// Splits `line` into (key, value) with Kafka's `parse.key` rule: the first separator.
pub fn split_key<'a>(
    line: &'a str,
    sep: Option<&str>,
    number: u64,
) -> anyhow::Result<(Option<&'a str>, &'a str)> {
    match sep {
        None => Ok((None, line)),
        Some(sep) => line
            .split_once(sep)
            .map(|(k, v)| (Some(k), v))
            .ok_or_else(|| {
                anyhow::anyhow!("No key separator found on line number {number}: '{line}'")
            }),
    }
}

pub fn produce(dir: &Path, args: ProduceArgs) -> anyhow::Result<()> {
    let state = ClusterState::load(dir)?;
    if !matches!(args.acks.as_str(), "0" | "1" | "all" | "-1") {
        anyhow::bail!("--acks {:?}: expected 0, 1 or all", args.acks);
    }
    if args.key_separator.as_deref() == Some("") {
        anyhow::bail!("--key-separator must not be empty");
    }
    let ctx = Deliveries {
        topic: args.topic.clone(),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: Mutex::new(None),
    };
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &state.bootstrap_servers)
        .set("client.id", "console-producer")
        .set("acks", &args.acks)
        // The brokers do not serve InitProducerId (no idempotent producer yet).
        .set("enable.idempotence", "false")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .create_with_context(ctx)?;
    // SAFETY: isatty on fd 0 only reads.
    if unsafe { libc::isatty(0) } == 1 {
        eprintln!(
            "type records for {}, one per line{}; Ctrl-D sends what is left and exits",
            args.topic,
            args.key_separator
                .as_deref()
                .map(|s| format!(" as key{s}value"))
                .unwrap_or_default()
        );
    }
    let mut sent = 0u64;
    let mut bad_line = None;
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line?;
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let (key, value) = match split_key(line, args.key_separator.as_deref(), i as u64 + 1) {
            Ok(kv) => kv,
            Err(e) => {
                bad_line = Some(e);
                break;
            }
        };
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&args.topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => anyhow::bail!("cannot send to {}: {e}", args.topic),
            }
        }
        sent += 1;
        producer.poll(Duration::ZERO);
    }
    // Wait for every acknowledgement (or failure) of what was sent.
    if let Err(e) = producer.flush(Duration::from_secs(90)) {
        eprintln!("ERROR not every record was acknowledged within 90 s: {e}");
    }
    let ctx = producer.context();
    let (acked, failed) = (
        ctx.acked.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "{acked} of {sent} record{} acknowledged by {} (acks={})",
        if sent == 1 { "" } else { "s" },
        args.topic,
        args.acks
    );
    if let Some(e) = bad_line {
        return Err(e);
    }
    if acked != sent {
        anyhow::bail!(
            "{} record(s) not acknowledged ({failed} failed{})",
            sent - acked,
            ctx.first_error
                .lock()
                .expect("not poisoned")
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

pub struct ConsumeArgs {
    pub topic: String,
    pub group: Option<String>,
    pub from_beginning: bool,
    pub max_messages: Option<u64>,
    pub print_key: bool,
    pub key_separator: String,
    pub timeout_ms: Option<u64>,
}

/// One output line, as `kafka-console-consumer.sh` prints it (`print.key` puts the key, or
/// `null`, and the separator first).
pub fn format_record(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    print_key: bool,
    sep: &str,
) -> String {
    fn text(b: Option<&[u8]>) -> std::borrow::Cow<'_, str> {
        b.map_or("null".into(), String::from_utf8_lossy)
    }
    if print_key {
        format!("{}{sep}{}", text(key), text(value))
    } else {
        text(value).into_owned()
    }
}

pub fn consume(dir: &Path, args: ConsumeArgs) -> anyhow::Result<()> {
    let state = ClusterState::load(dir)?;
    let (group, commit) = match &args.group {
        Some(g) if g.is_empty() => anyhow::bail!("--group must not be empty"),
        Some(g) => (g.clone(), true),
        // Kafka's tool: a random group, offsets not committed.
        None => (
            format!("console-consumer-{}", std::process::id() % 100_000),
            false,
        ),
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &state.bootstrap_servers)
        .set("client.id", "console-consumer")
        .set("group.id", &group)
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        )
        // Offsets are stored by hand for the records printed, and committed every 5 s and
        // at the end, so a stop after --max-messages commits exactly what was printed.
        // (librdkafka's automatic store would also count the records that closing the
        // consumer drains from its queue unprinted.)
        .set("enable.auto.commit", if commit { "true" } else { "false" })
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", "5000")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .create()?;
    consumer.subscribe(&[&args.topic])?;
    stop_on_signals();
    let mut count = 0u64;
    let mut last = Instant::now();
    let mut errors_seen = std::collections::BTreeSet::new();
    let stdout = std::io::stdout();
    while !STOP.load(Ordering::SeqCst) {
        if args.max_messages.is_some_and(|m| count >= m) {
            break;
        }
        if args
            .timeout_ms
            .is_some_and(|t| last.elapsed() >= Duration::from_millis(t))
        {
            eprintln!(
                "ERROR Error processing message, terminating consumer process: no record within {} ms (TimeoutException)",
                args.timeout_ms.unwrap_or_default()
            );
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                let line = format_record(m.key(), m.payload(), args.print_key, &args.key_separator);
                let mut out = stdout.lock();
                writeln!(out, "{line}")?;
                out.flush()?;
                if commit {
                    consumer.store_offset_from_message(&m)?;
                }
                count += 1;
                last = Instant::now();
            }
            // Kafka's consumer logs these and keeps going (a topic not there yet, a leader
            // moving); print each kind once.
            Some(Err(e)) if errors_seen.insert(e.to_string()) => eprintln!("WARN {e}"),
            Some(Err(_)) => {}
        }
    }
    if commit && count > 0 {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing new since the last automatic commit.
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => eprintln!("ERROR committing the group's offsets failed: {e}"),
        }
    }
    eprintln!("Processed a total of {count} messages");
    drop(consumer); // leaves the group (LeaveGroup) before exiting
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_separator() {
        assert_eq!(
            split_key("a:b:c", Some(":"), 1).unwrap(),
            (Some("a"), "b:c")
        );
        assert_eq!(split_key("a:b", None, 1).unwrap(), (None, "a:b"));
        assert_eq!(split_key(":v", Some(":"), 1).unwrap(), (Some(""), "v"));
        assert_eq!(
            split_key("novalue", Some(":"), 3).unwrap_err().to_string(),
            "No key separator found on line number 3: 'novalue'"
        );
    }

    #[test]
    fn records_print_as_the_console_consumer_prints_them() {
        assert_eq!(format_record(Some(b"k"), Some(b"v"), false, "\t"), "v");
        assert_eq!(format_record(Some(b"k"), Some(b"v"), true, "\t"), "k\tv");
        assert_eq!(format_record(None, Some(b"v"), true, ":"), "null:v");
        assert_eq!(format_record(None, None, false, "\t"), "null");
    }
}
