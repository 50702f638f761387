//! The broker's configuration: Kafka's `server.properties` keys with Kafka's defaults.
//!
//! Kafka class mirrored: `kafka.server.KafkaConfig`. A key we know is parsed into its type and
//! a bad value is an error naming the key; an unknown key is kept and warned about (Kafka logs
//! "The configuration 'x' was supplied but isn't a known config").
//!
//! The file format is Java's `.properties`: `key=value` or `key: value`, `#`/`!` comments, a
//! trailing backslash continues a line. Only that subset is parsed (no unicode escapes): it is
//! twenty lines, so we write it rather than pull a crate in.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// An error in the configuration, always naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("missing required configuration {0}")]
    Missing(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad override {0:?}: expected key=value")]
    BadOverride(String),
}

/// One listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// The keys this broker understands, each with Kafka's name in its doc.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `broker.id` (required here; Kafka can generate one, we do not).
    pub broker_id: i32,
    /// `listeners` (PLAINTEXT://:9092).
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners`).
    pub advertised_listeners: Vec<Listener>,
    /// `inter.broker.listener.name` (the first listener, PLAINTEXT by default).
    pub inter_broker_listener_name: String,
    /// `log.dirs` (or `log.dir`; /tmp/kafka-logs).
    pub log_dirs: Vec<PathBuf>,
    /// `zookeeper.connect` (required), chroot allowed.
    pub zookeeper_connect: String,
    /// `zookeeper.session.timeout.ms` (18000).
    pub zookeeper_session_timeout: Duration,
    /// `broker.rack` (none).
    pub rack: Option<String>,
    /// `num.partitions` (1).
    pub num_partitions: i32,
    /// `default.replication.factor` (1).
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable` (true).
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable` (true).
    pub delete_topic_enable: bool,
    /// `log.segment.bytes` (1 GiB).
    pub log_segment_bytes: u64,
    /// `log.roll.ms` / `log.roll.hours` (168 h).
    pub log_roll_ms: i64,
    /// `log.retention.ms` / `.minutes` / `.hours` (168 h).
    pub log_retention_ms: i64,
    /// `log.retention.bytes` (-1).
    pub log_retention_bytes: i64,
    /// `log.retention.check.interval.ms` (300000).
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.interval.messages` (Long.MAX).
    pub log_flush_interval_messages: u64,
    /// `log.flush.interval.ms` (none: falls back to log.flush.scheduler.interval.ms's Long.MAX).
    pub log_flush_interval_ms: u64,
    /// `log.flush.scheduler.interval.ms` (Long.MAX: the periodic flush check, which applies
    /// flush.ms, never runs; flush.messages is checked on append).
    pub log_flush_scheduler_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms` (60000).
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `log.index.interval.bytes` (4096).
    pub log_index_interval_bytes: u64,
    /// `log.index.size.max.bytes` (10 MiB).
    pub log_index_size_max_bytes: u64,
    /// `log.cleanup.policy` (delete).
    pub log_cleanup_policy: String,
    /// `log.message.timestamp.type` (CreateTime).
    pub log_message_timestamp_type: String,
    /// `message.max.bytes` (1048588).
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes` (104857600).
    pub socket_request_max_bytes: usize,
    /// `min.insync.replicas` (1).
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable` (false).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (true).
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.per.broker.percentage` (10).
    pub leader_imbalance_per_broker_percentage: u32,
    /// `leader.imbalance.check.interval.seconds` (300).
    pub leader_imbalance_check_interval_seconds: u64,
    /// `controlled.shutdown.enable` (true).
    pub controlled_shutdown_enable: bool,
    /// `controlled.shutdown.max.retries` (3).
    pub controlled_shutdown_max_retries: u32,
    /// `controlled.shutdown.retry.backoff.ms` (5000).
    pub controlled_shutdown_retry_backoff_ms: u64,
    /// `controller.socket.timeout.ms` (30000).
    pub controller_socket_timeout_ms: u64,
    /// `request.timeout.ms` (30000).
    pub request_timeout_ms: u64,
    /// `replica.lag.time.max.ms` (30000).
    pub replica_lag_time_max_ms: u64,
    /// `num.replica.fetchers` (1).
    pub num_replica_fetchers: u32,
    /// `replica.fetch.max.bytes` (1048576).
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (500).
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.backoff.ms` (1000).
    pub replica_fetch_backoff_ms: u64,
    /// `max.incremental.fetch.session.cache.slots` (1000): fetch sessions kept (KIP-227).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `offsets.topic.num.partitions` (50).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (3).
    pub offsets_topic_replication_factor: i16,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms` (6000): a JoinGroup with a shorter session timeout is
    /// INVALID_SESSION_TIMEOUT.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000): likewise for a longer one.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size` (2147483647): members a group may hold (GROUP_MAX_SIZE_REACHED).
    pub group_max_size: i32,
    /// `offsets.commit.timeout.ms` (5000): how long a commit (or a group metadata write)
    /// waits for `__consumer_offsets`' replicas before it fails with REQUEST_TIMED_OUT.
    pub offsets_commit_timeout_ms: u64,
    /// `offset.metadata.max.bytes` (4096): the longest metadata string a commit may carry
    /// (OFFSET_METADATA_TOO_LARGE beyond).
    pub offset_metadata_max_bytes: usize,
    /// `metrics.port`: our own key (Kafka exposes JMX): a Prometheus text endpoint on the
    /// first listener's host; 0 = a free port, -1 = off (default).
    pub metrics_port: i32,
    /// Every key as given, for DescribeConfigs.
    pub raw: BTreeMap<String, String>,
}

/// Keys we accept, so that anything else is warned about.
const KNOWN_KEYS: &[&str] = &[
    "broker.id",
    "listeners",
    "advertised.listeners",
    "inter.broker.listener.name",
    "listener.security.protocol.map",
    "log.dirs",
    "log.dir",
    "zookeeper.connect",
    "zookeeper.session.timeout.ms",
    "zookeeper.connection.timeout.ms",
    "broker.rack",
    "num.partitions",
    "default.replication.factor",
    "auto.create.topics.enable",
    "delete.topic.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.flush.offset.checkpoint.interval.ms",
    "log.flush.scheduler.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.cleanup.policy",
    "log.message.timestamp.type",
    "message.max.bytes",
    "socket.request.max.bytes",
    "min.insync.replicas",
    "unclean.leader.election.enable",
    "auto.leader.rebalance.enable",
    "leader.imbalance.per.broker.percentage",
    "leader.imbalance.check.interval.seconds",
    "controlled.shutdown.enable",
    "controlled.shutdown.max.retries",
    "controlled.shutdown.retry.backoff.ms",
    "controller.socket.timeout.ms",
    "request.timeout.ms",
    "replica.lag.time.max.ms",
    "num.replica.fetchers",
    "replica.fetch.max.bytes",
    "replica.fetch.wait.max.ms",
    "replica.fetch.backoff.ms",
    "max.incremental.fetch.session.cache.slots",
    "offsets.topic.num.partitions",
    "offsets.topic.replication.factor",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "offsets.commit.timeout.ms",
    "offset.metadata.max.bytes",
    "num.network.threads",
    "num.io.threads",
    "num.recovery.threads.per.data.dir",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "metrics.port",
];

/// Parses Java `.properties` text into key/value pairs, in order.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if pending.is_empty() && (trimmed.starts_with('#') || trimmed.starts_with('!')) {
            continue;
        }
        if let Some(stripped) = trimmed.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(trimmed);
        let logical = std::mem::take(&mut pending);
        let logical = logical.trim();
        if logical.is_empty() {
            continue;
        }
        let split = logical.find(['=', ':']).unwrap_or(logical.len());
        let key = logical[..split].trim().to_string();
        let value = logical.get(split + 1..).unwrap_or("").trim().to_string();
        out.push((key, value));
    }
    out
}

/// Parses `NAME://host:port,...`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let bad = |reason: &str| ConfigError::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, rest) = part
            .split_once("://")
            .ok_or_else(|| bad("expected NAME://host:port"))?;
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| bad("expected NAME://host:port"))?;
        let port: u16 = port.parse().map_err(|_| bad("port is not a number"))?;
        if name.is_empty() {
            return Err(bad("empty listener name"));
        }
        out.push(Listener {
            name: name.to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        });
    }
    if out.is_empty() {
        return Err(bad("no listener"));
    }
    Ok(out)
}

struct Props {
    map: BTreeMap<String, String>,
}

impl Props {
    fn get(&self, key: &str) -> Option<&str> {
        self.map.get(key).map(String::as_str)
    }
    fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.parse::<T>().map_err(|e| ConfigError::Invalid {
                key: key.into(),
                value: v.into(),
                reason: e.to_string(),
            }),
        }
    }
    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(key).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(_) => Err(ConfigError::Invalid {
                key: key.into(),
                value: self.get(key).unwrap_or_default().into(),
                reason: "expected true or false".into(),
            }),
        }
    }
    fn at_least<T: PartialOrd + std::fmt::Display + Copy>(
        &self,
        key: &str,
        v: T,
        min: T,
    ) -> Result<T, ConfigError> {
        if v < min {
            return Err(ConfigError::Invalid {
                key: key.into(),
                value: v.to_string(),
                reason: format!("value must be at least {min}"),
            });
        }
        Ok(v)
    }
}

impl BrokerConfig {
    /// Reads a properties file and applies `key=value` overrides on top.
    pub fn load(path: &std::path::Path, overrides: &[String]) -> Result<BrokerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut pairs = parse_properties(&text);
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride(o.clone()))?;
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        Self::from_pairs(pairs)
    }

    /// Builds the config from key/value pairs (later pairs win).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Result<BrokerConfig, ConfigError> {
        let map: BTreeMap<String, String> = pairs.into_iter().collect();
        for key in map.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                tracing::warn!(
                    key = %key,
                    "the configuration '{key}' was supplied but isn't a known config"
                );
            }
        }
        let p = Props { map };
        let broker_id: i32 = match p.get("broker.id") {
            None => return Err(ConfigError::Missing("broker.id".into())),
            Some(_) => p.parse("broker.id", 0)?,
        };
        p.at_least("broker.id", broker_id, 0)?;
        let listeners = parse_listeners(
            "listeners",
            p.get("listeners").unwrap_or("PLAINTEXT://:9092"),
        )?;
        let advertised_listeners = match p.get("advertised.listeners") {
            Some(v) => parse_listeners("advertised.listeners", v)?,
            None => listeners.clone(),
        };
        let inter_broker_listener_name = p
            .get("inter.broker.listener.name")
            .map(str::to_string)
            .unwrap_or_else(|| listeners[0].name.clone());
        if !advertised_listeners
            .iter()
            .any(|l| l.name == inter_broker_listener_name)
        {
            return Err(ConfigError::Invalid {
                key: "inter.broker.listener.name".into(),
                value: inter_broker_listener_name,
                reason: "must be one of the advertised listeners".into(),
            });
        }
        let log_dirs: Vec<PathBuf> = p
            .get("log.dirs")
            .or(p.get("log.dir"))
            .unwrap_or("/tmp/kafka-logs")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(ConfigError::Invalid {
                key: "log.dirs".into(),
                value: String::new(),
                reason: "no directory given".into(),
            });
        }
        let zookeeper_connect = p
            .get("zookeeper.connect")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ConfigError::Missing("zookeeper.connect".into()))?
            .to_string();
        let zk_session_ms: u64 = p.parse("zookeeper.session.timeout.ms", 18_000)?;
        p.at_least("zookeeper.session.timeout.ms", zk_session_ms, 1)?;
        let hour = 60 * 60 * 1000i64;
        let log_roll_ms = match p.get("log.roll.ms") {
            Some(_) => p.parse("log.roll.ms", 0i64)?,
            None => p.parse::<i64>("log.roll.hours", 168)? * hour,
        };
        p.at_least("log.roll.ms", log_roll_ms, 1)?;
        let log_retention_ms = if p.get("log.retention.ms").is_some() {
            p.parse("log.retention.ms", 0i64)?
        } else if p.get("log.retention.minutes").is_some() {
            p.parse::<i64>("log.retention.minutes", 0)? * 60_000
        } else {
            p.parse::<i64>("log.retention.hours", 168)? * hour
        };
        let policy = p.get("log.cleanup.policy").unwrap_or("delete").to_string();
        for part in policy.split(',').map(str::trim) {
            if part != "delete" && part != "compact" {
                return Err(ConfigError::Invalid {
                    key: "log.cleanup.policy".into(),
                    value: policy.clone(),
                    reason: "expected delete, compact or both".into(),
                });
            }
        }
        let ts_type = p
            .get("log.message.timestamp.type")
            .unwrap_or("CreateTime")
            .to_string();
        if ts_type != "CreateTime" && ts_type != "LogAppendTime" {
            return Err(ConfigError::Invalid {
                key: "log.message.timestamp.type".into(),
                value: ts_type,
                reason: "expected CreateTime or LogAppendTime".into(),
            });
        }
        let num_partitions = p.parse("num.partitions", 1)?;
        let default_replication_factor = p.parse("default.replication.factor", 1)?;
        let min_insync_replicas = p.parse("min.insync.replicas", 1)?;
        let message_max_bytes: usize = p.parse("message.max.bytes", 1_048_588)?;
        let socket_request_max_bytes: usize = p.parse("socket.request.max.bytes", 104_857_600)?;
        let log_segment_bytes: u64 = p.parse("log.segment.bytes", 1 << 30)?;
        let cfg = BrokerConfig {
            broker_id,
            listeners,
            advertised_listeners,
            inter_broker_listener_name,
            log_dirs,
            zookeeper_connect,
            zookeeper_session_timeout: Duration::from_millis(zk_session_ms),
            rack: p.get("broker.rack").map(str::to_string),
            num_partitions: p.at_least("num.partitions", num_partitions, 1)?,
            default_replication_factor: p.at_least(
                "default.replication.factor",
                default_replication_factor,
                1,
            )?,
            auto_create_topics_enable: p.bool("auto.create.topics.enable", true)?,
            delete_topic_enable: p.bool("delete.topic.enable", true)?,
            log_segment_bytes: p.at_least("log.segment.bytes", log_segment_bytes, 14)?,
            log_roll_ms,
            log_retention_ms,
            log_retention_bytes: p.parse("log.retention.bytes", -1)?,
            log_retention_check_interval_ms: p.parse("log.retention.check.interval.ms", 300_000)?,
            log_flush_interval_messages: p.parse("log.flush.interval.messages", i64::MAX as u64)?,
            log_flush_interval_ms: p.parse("log.flush.interval.ms", i64::MAX as u64)?,
            log_flush_scheduler_interval_ms: p
                .parse("log.flush.scheduler.interval.ms", i64::MAX as u64)?,
            log_flush_offset_checkpoint_interval_ms: p
                .parse("log.flush.offset.checkpoint.interval.ms", 60_000)?,
            log_index_interval_bytes: p.parse("log.index.interval.bytes", 4096)?,
            log_index_size_max_bytes: p.parse("log.index.size.max.bytes", 10 * 1024 * 1024)?,
            log_cleanup_policy: policy,
            log_message_timestamp_type: ts_type,
            message_max_bytes: p.at_least("message.max.bytes", message_max_bytes, 0)?,
            socket_request_max_bytes: p.at_least(
                "socket.request.max.bytes",
                socket_request_max_bytes,
                1,
            )?,
            min_insync_replicas: p.at_least("min.insync.replicas", min_insync_replicas, 1)?,
            unclean_leader_election_enable: p.bool("unclean.leader.election.enable", false)?,
            auto_leader_rebalance_enable: p.bool("auto.leader.rebalance.enable", true)?,
            leader_imbalance_per_broker_percentage: p
                .parse("leader.imbalance.per.broker.percentage", 10)?,
            leader_imbalance_check_interval_seconds: p
                .parse("leader.imbalance.check.interval.seconds", 300)?,
            controlled_shutdown_enable: p.bool("controlled.shutdown.enable", true)?,
            controlled_shutdown_max_retries: p.parse("controlled.shutdown.max.retries", 3)?,
            controlled_shutdown_retry_backoff_ms: p
                .parse("controlled.shutdown.retry.backoff.ms", 5000)?,
            controller_socket_timeout_ms: p.parse("controller.socket.timeout.ms", 30_000)?,
            request_timeout_ms: p.parse("request.timeout.ms", 30_000)?,
            replica_lag_time_max_ms: p.parse("replica.lag.time.max.ms", 30_000)?,
            num_replica_fetchers: p.parse("num.replica.fetchers", 1)?,
            replica_fetch_max_bytes: p.parse("replica.fetch.max.bytes", 1_048_576)?,
            replica_fetch_wait_max_ms: p.parse("replica.fetch.wait.max.ms", 500)?,
            replica_fetch_backoff_ms: p.parse("replica.fetch.backoff.ms", 1000)?,
            max_incremental_fetch_session_cache_slots: p
                .parse("max.incremental.fetch.session.cache.slots", 1000)?,
            offsets_topic_num_partitions: p.parse("offsets.topic.num.partitions", 50)?,
            offsets_topic_replication_factor: p.parse("offsets.topic.replication.factor", 3)?,
            group_initial_rebalance_delay_ms: p.parse("group.initial.rebalance.delay.ms", 3000)?,
            group_min_session_timeout_ms: p.parse("group.min.session.timeout.ms", 6000)?,
            group_max_session_timeout_ms: p.parse("group.max.session.timeout.ms", 1_800_000)?,
            group_max_size: p.parse("group.max.size", i32::MAX)?,
            offsets_commit_timeout_ms: p.parse("offsets.commit.timeout.ms", 5000)?,
            offset_metadata_max_bytes: p.parse("offset.metadata.max.bytes", 4096)?,
            metrics_port: p.parse("metrics.port", -1)?,
            raw: p.map.clone(),
        };
        p.at_least("num.replica.fetchers", cfg.num_replica_fetchers, 1)?;
        // Kafka's validation: group.max.size >= 1, offsets.commit.timeout.ms >= 1.
        p.at_least("group.max.size", cfg.group_max_size, 1)?;
        p.at_least(
            "offsets.commit.timeout.ms",
            cfg.offsets_commit_timeout_ms,
            1,
        )?;
        p.at_least(
            "offsets.topic.num.partitions",
            cfg.offsets_topic_num_partitions,
            1,
        )?;
        p.at_least(
            "offsets.topic.replication.factor",
            cfg.offsets_topic_replication_factor,
            1,
        )?;
        Ok(cfg)
    }

    /// The log config every partition gets unless its topic overrides it.
    pub fn default_log_config(&self) -> storage::LogConfig {
        self.log_config_with(&BTreeMap::new())
            .unwrap_or_else(|_| storage::LogConfig::default())
    }

    /// The log config for a topic: broker defaults with `/config/topics/<t>` overrides.
    pub fn log_config_with(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<storage::LogConfig, ConfigError> {
        use storage::TimestampType;
        let mut c = storage::LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            segment_index_bytes: self.log_index_size_max_bytes,
            index_interval_bytes: self.log_index_interval_bytes,
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms,
            max_message_bytes: self.message_max_bytes,
            message_timestamp_type: if self.log_message_timestamp_type == "LogAppendTime" {
                TimestampType::LogAppendTime
            } else {
                TimestampType::CreateTime
            },
            cleanup_policy: cleanup_policy(&self.log_cleanup_policy),
            ..storage::LogConfig::default()
        };
        let p = Props {
            map: overrides.clone(),
        };
        if p.get("segment.bytes").is_some() {
            c.segment_bytes = p.at_least("segment.bytes", p.parse("segment.bytes", 0u64)?, 14)?;
        }
        if p.get("segment.ms").is_some() {
            c.segment_ms = p.at_least("segment.ms", p.parse("segment.ms", 0i64)?, 1)?;
        }
        if p.get("retention.ms").is_some() {
            c.retention_ms = p.parse("retention.ms", 0)?;
        }
        if p.get("retention.bytes").is_some() {
            c.retention_bytes = p.parse("retention.bytes", 0)?;
        }
        if p.get("flush.messages").is_some() {
            c.flush_messages = p.parse("flush.messages", 0)?;
        }
        if p.get("flush.ms").is_some() {
            c.flush_ms = p.parse("flush.ms", 0)?;
        }
        if p.get("max.message.bytes").is_some() {
            c.max_message_bytes = p.parse("max.message.bytes", 0)?;
        }
        if p.get("delete.retention.ms").is_some() {
            c.delete_retention_ms = p.parse("delete.retention.ms", 0)?;
        }
        if let Some(v) = p.get("message.timestamp.type") {
            c.message_timestamp_type = match v {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => {
                    return Err(ConfigError::Invalid {
                        key: "message.timestamp.type".into(),
                        value: v.into(),
                        reason: "expected CreateTime or LogAppendTime".into(),
                    })
                }
            };
        }
        if let Some(v) = p.get("cleanup.policy") {
            for part in v.split(',').map(str::trim) {
                if part != "delete" && part != "compact" {
                    return Err(ConfigError::Invalid {
                        key: "cleanup.policy".into(),
                        value: v.into(),
                        reason: "expected delete, compact or both".into(),
                    });
                }
            }
            c.cleanup_policy = cleanup_policy(v);
        }
        if let Some(v) = p.get("min.insync.replicas") {
            let n: i32 = p.parse("min.insync.replicas", 1)?;
            p.at_least("min.insync.replicas", n, 1)
                .map_err(|_| ConfigError::Invalid {
                    key: "min.insync.replicas".into(),
                    value: v.into(),
                    reason: "value must be at least 1".into(),
                })?;
        }
        Ok(c)
    }

    /// `min.insync.replicas` for a topic (its override or the broker default).
    pub fn min_isr_for(&self, overrides: &BTreeMap<String, String>) -> i32 {
        overrides
            .get("min.insync.replicas")
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.min_insync_replicas)
    }

    /// The advertised endpoint for `listener_name`.
    pub fn advertised(&self, listener_name: &str) -> Option<&Listener> {
        self.advertised_listeners
            .iter()
            .find(|l| l.name == listener_name)
    }
}

fn cleanup_policy(v: &str) -> storage::CleanupPolicy {
    let compact = v.contains("compact");
    let delete = v.contains("delete");
    match (compact, delete) {
        (true, true) => storage::CleanupPolicy::CompactAndDelete,
        (true, false) => storage::CleanupPolicy::Compact,
        _ => storage::CleanupPolicy::Delete,
    }
}

/// Topic-level config keys Kafka accepts in CreateTopics and AlterConfigs, with the broker key
/// their default comes from (for DescribeConfigs).
pub const TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "log.cleanup.policy"),
    ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
    ("flush.messages", "log.flush.interval.messages"),
    ("flush.ms", "log.flush.interval.ms"),
    ("max.message.bytes", "message.max.bytes"),
    ("message.timestamp.type", "log.message.timestamp.type"),
    ("min.insync.replicas", "min.insync.replicas"),
    ("retention.bytes", "log.retention.bytes"),
    ("retention.ms", "log.retention.ms"),
    ("segment.bytes", "log.segment.bytes"),
    ("segment.index.bytes", "log.index.size.max.bytes"),
    ("segment.ms", "log.roll.ms"),
    ("index.interval.bytes", "log.index.interval.bytes"),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
    ),
    ("compression.type", "compression.type"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_syntax() {
        let p = parse_properties(
            "# comment\n! also\nbroker.id=1\nlisteners : PLAINTEXT://a:1\nlog.dirs=/a,\\\n  /b\n\n",
        );
        assert_eq!(
            p,
            pairs(&[
                ("broker.id", "1"),
                ("listeners", "PLAINTEXT://a:1"),
                ("log.dirs", "/a,/b")
            ])
        );
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::from_pairs(pairs(&[
            ("broker.id", "3"),
            ("zookeeper.connect", "127.0.0.1:2181/kafka"),
        ]))
        .unwrap();
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.default_replication_factor, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.log_segment_bytes, 1 << 30);
        assert_eq!(c.log_retention_ms, 168 * 3600 * 1000);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.zookeeper_session_timeout, Duration::from_secs(18));
        assert_eq!(c.listeners[0].port, 9092);
        assert_eq!(c.inter_broker_listener_name, "PLAINTEXT");
    }

    /// The group coordinator's settings are read (with Kafka's defaults), known (no
    /// "isn't a known config" warning) and validated.
    #[test]
    fn group_settings() {
        let base = [("broker.id", "1"), ("zookeeper.connect", "x")];
        let c = BrokerConfig::from_pairs(pairs(&base)).unwrap();
        assert_eq!(
            (
                c.group_min_session_timeout_ms,
                c.group_max_session_timeout_ms,
                c.group_max_size,
                c.offsets_commit_timeout_ms,
                c.offset_metadata_max_bytes,
                c.group_initial_rebalance_delay_ms
            ),
            (6000, 1_800_000, i32::MAX, 5000, 4096, 3000)
        );
        let set = [
            ("group.min.session.timeout.ms", "1000"),
            ("group.max.session.timeout.ms", "60000"),
            ("group.max.size", "3"),
            ("offsets.commit.timeout.ms", "2000"),
            ("offset.metadata.max.bytes", "10"),
            ("group.initial.rebalance.delay.ms", "0"),
        ];
        for (k, _) in set {
            assert!(KNOWN_KEYS.contains(&k), "{k} would be warned about");
        }
        let c = BrokerConfig::from_pairs(pairs(&[&base[..], &set[..]].concat())).unwrap();
        let g = crate::group::GroupConfig::from_broker(&c);
        assert_eq!(
            (
                g.min_session_timeout_ms,
                g.max_session_timeout_ms,
                g.max_size,
                g.offset_metadata_max_bytes,
                g.initial_rebalance_delay_ms
            ),
            (1000, 60000, 3, 10, 0)
        );
        assert_eq!(c.offsets_commit_timeout_ms, 2000);
        let e = BrokerConfig::from_pairs(pairs(&[&base[..], &[("group.max.size", "0")]].concat()))
            .unwrap_err();
        assert!(e.to_string().contains("group.max.size"), "{e}");
    }

    #[test]
    fn bad_value_names_the_key() {
        let e = BrokerConfig::from_pairs(pairs(&[
            ("broker.id", "1"),
            ("zookeeper.connect", "x:1"),
            ("num.partitions", "many"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = BrokerConfig::from_pairs(pairs(&[("zookeeper.connect", "x:1")])).unwrap_err();
        assert!(e.to_string().contains("broker.id"), "{e}");
        let e = BrokerConfig::from_pairs(pairs(&[
            ("broker.id", "1"),
            ("zookeeper.connect", "x:1"),
            ("listeners", "127.0.0.1:9092"),
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("listeners"), "{e}");
    }

    #[test]
    fn topic_overrides() {
        let c = BrokerConfig::from_pairs(pairs(&[("broker.id", "1"), ("zookeeper.connect", "x")]))
            .unwrap();
        let mut o = BTreeMap::new();
        o.insert("segment.bytes".to_string(), "1000".to_string());
        assert_eq!(c.log_config_with(&o).unwrap().segment_bytes, 1000);
        o.insert("cleanup.policy".to_string(), "nonsense".to_string());
        assert!(c
            .log_config_with(&o)
            .unwrap_err()
            .to_string()
            .contains("cleanup.policy"));
    }
}
