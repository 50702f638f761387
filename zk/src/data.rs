//! The ZooKeeper data model: one type per znode, with Kafka's exact path and JSON.
//!
//! Kafka concept: everything the cluster agrees on lives in ZooKeeper as small JSON documents
//! (Kafka's `kafka.zk.ZkData`, one `object XxxZNode` per path with `path`, `encode`, `decode`).
//! This module is the only place in the project that spells a znode path. Each type says whether
//! the znode is persistent or ephemeral, who writes it, who watches it, and shows the JSON Kafka
//! 3.6 writes (see `shared/reference/kafka-zk-mode.md` §1).
//!
//! Invariant: bytes written here are byte-for-byte what a Kafka 3.6 broker built for Scala 2.13
//! writes (compact JSON, no trailing newline, same key order), and decoding accepts any key order
//! and ignores unknown keys, as Kafka's readers do.
//!
//! Simplifications: only the znodes a ZooKeeper-mode controller and broker touch are modelled;
//! ACL, delegation-token and migration znodes are out of scope.

use std::collections::BTreeMap;

use base64::Engine;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// A partition of a topic (Kafka's `TopicPartition`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Leader, ISR and epochs of one partition (Kafka's `LeaderAndIsr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    /// Broker id of the leader, or [`LeaderAndIsr::NO_LEADER`].
    pub leader: i32,
    /// +1 on every leader change and every controller-initiated ISR change.
    pub leader_epoch: i32,
    /// In-sync replicas; never written empty.
    pub isr: Vec<i32>,
    /// 0 = RECOVERED, 1 = RECOVERING (after an unclean election).
    pub leader_recovery_state: i8,
    /// The zkVersion of the `state` znode (the "partition epoch"); every write is conditional on it.
    pub partition_epoch: i32,
}

impl LeaderAndIsr {
    /// Leader id meaning "no leader".
    pub const NO_LEADER: i32 = -1;
    /// Leader id sent in UpdateMetadata for partitions of a topic being deleted.
    pub const LEADER_DURING_DELETE: i32 = -2;
    /// Leader epoch sent in StopReplica for partitions of a topic being deleted.
    pub const EPOCH_DURING_DELETE: i32 = -2;

    /// A new leader (and ISR) with the leader epoch bumped (Kafka's `newLeaderAndIsr`).
    pub fn new_leader_and_isr(&self, leader: i32, isr: Vec<i32>) -> LeaderAndIsr {
        LeaderAndIsr {
            leader,
            leader_epoch: self.leader_epoch + 1,
            isr,
            leader_recovery_state: self.leader_recovery_state,
            partition_epoch: self.partition_epoch,
        }
    }
}

/// What the `state` znode holds: leader and ISR plus the epoch of the controller that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderIsrAndControllerEpoch {
    pub leader_and_isr: LeaderAndIsr,
    pub controller_epoch: i32,
}

/// Serialises `(key, value)` pairs as a JSON object in the given order (Kafka's key order).
struct OrderedMap<'a, V: Serialize>(&'a [(String, V)]);

impl<V: Serialize> Serialize for OrderedMap<'_, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn parse(path: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::BadZnode {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn bad(path: &str, reason: impl Into<String>) -> Error {
    Error::BadZnode {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn get_i64(path: &str, v: &Value, key: &str) -> Result<i64> {
    match v.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| bad(path, format!("{key} not an int"))),
        // Kafka writes a few numbers as strings ("timestamp", "/cluster/id" version); accept both.
        Some(Value::String(s)) => s
            .parse()
            .map_err(|_| bad(path, format!("{key} not a number"))),
        _ => Err(bad(path, format!("missing {key}"))),
    }
}

fn get_i32(path: &str, v: &Value, key: &str) -> Result<i32> {
    let n = get_i64(path, v, key)?;
    i32::try_from(n).map_err(|_| bad(path, format!("{key} out of range")))
}

fn get_int_list(path: &str, v: &Value) -> Result<Vec<i32>> {
    let arr = v.as_array().ok_or_else(|| bad(path, "expected a list"))?;
    arr.iter()
        .map(|x| {
            x.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| bad(path, "expected an int"))
        })
        .collect()
}

/// Parses `{"0":[1,2],"1":[2,3]}` maps of partition id to replica list.
fn get_partition_map(path: &str, v: Option<&Value>) -> Result<BTreeMap<i32, Vec<i32>>> {
    let mut out = BTreeMap::new();
    let Some(v) = v else { return Ok(out) };
    let obj = v
        .as_object()
        .ok_or_else(|| bad(path, "expected a partition map"))?;
    for (k, list) in obj {
        let p: i32 = k
            .parse()
            .map_err(|_| bad(path, format!("bad partition id {k}")))?;
        out.insert(p, get_int_list(path, list)?);
    }
    Ok(out)
}

/// Current time in epoch milliseconds, for the `timestamp` fields.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Encodes a topic or cluster id (16 bytes) as Kafka does: base64url without padding, 22 chars.
pub fn encode_uuid(id: uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Decodes Kafka's base64url id form.
pub fn decode_uuid(s: &str) -> Option<uuid::Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

/// A fresh random id in Kafka's form (topic ids, cluster ids).
pub fn random_uuid_string() -> String {
    // Kafka's Uuid.randomUuid also never returns an id starting with '-' (it re-rolls); base64url
    // ids may start with '-', which confuses command-line tools. Re-roll the same way.
    loop {
        let s = encode_uuid(uuid::Uuid::new_v4());
        if !s.starts_with('-') {
            return s;
        }
    }
}

/// Persistent paths every broker ensures at startup (Kafka's `ZkData.PersistentZkPaths`).
pub const PERSISTENT_ZK_PATHS: &[&str] = &[
    "/consumers",
    "/brokers/ids",
    "/brokers/topics",
    "/config/changes",
    "/admin/delete_topics",
    "/brokers/seqid",
    "/isr_change_notification",
    "/latest_producer_id_block",
    "/log_dir_event_notification",
    "/config/topics",
    "/config/clients",
    "/config/users",
    "/config/brokers",
    "/config/ips",
];

/// `/controller` (ephemeral). Written by the broker that wins the election (in one multi-op with
/// the `/controller_epoch` bump); watched (exists) by every broker.
///
/// `{"version":2,"brokerid":1,"timestamp":"1700000000789","kraftControllerEpoch":-1}`
pub struct Controller;

impl Controller {
    pub fn path() -> &'static str {
        "/controller"
    }
    pub fn encode(broker_id: i32, timestamp_ms: i64) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json {
            version: i32,
            brokerid: i32,
            timestamp: String,
            #[serde(rename = "kraftControllerEpoch")]
            kraft_controller_epoch: i32,
        }
        serde_json::to_vec(&Json {
            version: 2,
            brokerid: broker_id,
            timestamp: timestamp_ms.to_string(),
            kraft_controller_epoch: -1,
        })
        .expect("serialising a plain struct cannot fail")
    }
    /// The controller's broker id (the only field readers need; v1 and v2 accepted).
    pub fn decode(bytes: &[u8]) -> Result<i32> {
        let v = parse(Self::path(), bytes)?;
        get_i32(Self::path(), &v, "brokerid")
    }
}

/// `/controller_epoch` (persistent). Not JSON: the decimal epoch, e.g. `1`. Set by each election
/// winner to old+1 with an expected-version check; its zkVersion fences every controller write.
pub struct ControllerEpoch;

impl ControllerEpoch {
    pub fn path() -> &'static str {
        "/controller_epoch"
    }
    pub fn encode(epoch: i32) -> Vec<u8> {
        epoch.to_string().into_bytes()
    }
    pub fn decode(bytes: &[u8]) -> Result<i32> {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| bad(Self::path(), "not a decimal epoch"))
    }
}

/// `/brokers/ids` (persistent, null data): the controller watches its children.
pub struct BrokerIds;

impl BrokerIds {
    pub fn path() -> &'static str {
        "/brokers/ids"
    }
}

/// One advertised endpoint of a broker, e.g. `PLAINTEXT://127.0.0.1:9092`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndPoint {
    pub listener_name: String,
    pub host: String,
    pub port: u16,
    /// `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: String,
}

impl EndPoint {
    /// Kafka's `SecurityProtocol.id` as carried in UpdateMetadata.
    pub fn security_protocol_id(&self) -> i16 {
        match self.security_protocol.as_str() {
            "SSL" => 1,
            "SASL_PLAINTEXT" => 2,
            "SASL_SSL" => 3,
            _ => 0,
        }
    }
}

/// `/brokers/ids/<id>` (ephemeral), JSON version 5. Written by the broker itself at startup;
/// the controller watches the children of `/brokers/ids` and each node's data.
///
/// `{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://10.0.0.1:9092"],"jmx_port":-1,"port":9092,"host":"10.0.0.1","version":5,"timestamp":"1700000000123"}`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: i32,
    pub endpoints: Vec<EndPoint>,
    pub rack: Option<String>,
    pub timestamp_ms: i64,
}

/// A broker as the controller and tools see it: registration plus broker epoch (czxid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub registration: BrokerRegistration,
    pub broker_epoch: i64,
}

impl BrokerInfo {
    pub fn id(&self) -> i32 {
        self.registration.broker_id
    }
    /// The endpoint for `listener_name`, if the broker advertises it.
    pub fn endpoint(&self, listener_name: &str) -> Option<&EndPoint> {
        self.registration
            .endpoints
            .iter()
            .find(|e| e.listener_name == listener_name)
    }
}

/// The Kafka name of `/brokers/ids/<id>`.
pub struct BrokerIdZNode;

impl BrokerIdZNode {
    pub fn path(broker_id: i32) -> String {
        format!("/brokers/ids/{broker_id}")
    }

    pub fn encode(reg: &BrokerRegistration) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            features: OrderedMap<'a, Value>,
            listener_security_protocol_map: OrderedMap<'a, String>,
            endpoints: Vec<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            rack: Option<&'a str>,
            jmx_port: i32,
            port: i32,
            host: Option<&'a str>,
            version: i32,
            timestamp: String,
        }
        let mut protocol_map: Vec<(String, String)> = Vec::new();
        for e in &reg.endpoints {
            if !protocol_map.iter().any(|(k, _)| *k == e.listener_name) {
                protocol_map.push((e.listener_name.clone(), e.security_protocol.clone()));
            }
        }
        // host/port are the first PLAINTEXT endpoint, for pre-0.10 clients.
        let plaintext = reg
            .endpoints
            .iter()
            .find(|e| e.security_protocol == "PLAINTEXT");
        let json = Json {
            features: OrderedMap(&[]),
            listener_security_protocol_map: OrderedMap(&protocol_map),
            endpoints: reg
                .endpoints
                .iter()
                .map(|e| format!("{}://{}:{}", e.listener_name, e.host, e.port))
                .collect(),
            rack: reg.rack.as_deref(),
            jmx_port: -1,
            port: plaintext.map(|e| e.port as i32).unwrap_or(-1),
            host: plaintext.map(|e| e.host.as_str()),
            version: 5,
            timestamp: reg.timestamp_ms.to_string(),
        };
        serde_json::to_vec(&json).expect("serialising a plain struct cannot fail")
    }

    /// Decodes versions 1 to 5 (v1-3 without a listener map imply PLAINTEXT endpoints).
    pub fn decode(broker_id: i32, bytes: &[u8]) -> Result<BrokerRegistration> {
        let path = Self::path(broker_id);
        let v = parse(&path, bytes)?;
        let version = get_i32(&path, &v, "version")?;
        if !(1..=5).contains(&version) {
            return Err(bad(&path, format!("unsupported version {version}")));
        }
        let protocol_map: BTreeMap<String, String> = match v.get("listener_security_protocol_map") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("PLAINTEXT").to_string()))
                .collect(),
            _ => BTreeMap::new(),
        };
        let mut endpoints = Vec::new();
        match v.get("endpoints") {
            Some(Value::Array(list)) if version > 1 => {
                for e in list {
                    let s = e
                        .as_str()
                        .ok_or_else(|| bad(&path, "endpoint not a string"))?;
                    endpoints.push(parse_endpoint(&path, s, &protocol_map)?);
                }
            }
            _ => {
                let host = v
                    .get("host")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(&path, "missing host"))?;
                let port = get_i32(&path, &v, "port")?;
                endpoints.push(EndPoint {
                    listener_name: "PLAINTEXT".into(),
                    host: host.to_string(),
                    port: u16::try_from(port).map_err(|_| bad(&path, "bad port"))?,
                    security_protocol: "PLAINTEXT".into(),
                });
            }
        }
        Ok(BrokerRegistration {
            broker_id,
            endpoints,
            rack: v.get("rack").and_then(Value::as_str).map(str::to_string),
            timestamp_ms: get_i64(&path, &v, "timestamp").unwrap_or(-1),
        })
    }
}

/// Parses `LISTENER://host:port` (IPv6 hosts in brackets keep their brackets stripped).
fn parse_endpoint(path: &str, s: &str, map: &BTreeMap<String, String>) -> Result<EndPoint> {
    let (listener, rest) = s
        .split_once("://")
        .ok_or_else(|| bad(path, format!("bad endpoint {s}")))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad(path, format!("bad endpoint {s}")))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port
        .parse()
        .map_err(|_| bad(path, format!("bad port in {s}")))?;
    let security_protocol = map
        .get(listener)
        .cloned()
        .unwrap_or_else(|| listener.to_string());
    Ok(EndPoint {
        listener_name: listener.to_string(),
        host: host.to_string(),
        port,
        security_protocol,
    })
}

/// `/brokers/topics` (persistent, null data): the controller watches its children.
pub struct Topics;

impl Topics {
    pub fn path() -> &'static str {
        "/brokers/topics"
    }
}

/// The content of a topic znode: the replica assignment and the topic id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicAssignment {
    /// Partition id -> replicas (AR, preferred first).
    pub partitions: BTreeMap<i32, Vec<i32>>,
    /// Base64url topic id; `None` for topics created before Kafka 2.8.
    pub topic_id: Option<String>,
    pub adding_replicas: BTreeMap<i32, Vec<i32>>,
    pub removing_replicas: BTreeMap<i32, Vec<i32>>,
}

/// `/brokers/topics/<t>` (persistent), JSON version 3. Written by the topic creator (admin path)
/// and by the controller on reassignment; the controller watches its data.
///
/// `{"partitions":{"0":[1,2,3],"1":[2,3,1]},"topic_id":"pTprpIZ6SqWJMP5PEH8O4g","adding_replicas":{},"removing_replicas":{},"version":3}`
pub struct TopicZNode;

impl TopicZNode {
    pub fn path(topic: &str) -> String {
        format!("/brokers/topics/{topic}")
    }

    pub fn encode(a: &TopicAssignment) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            partitions: OrderedMap<'a, Vec<i32>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            topic_id: Option<&'a str>,
            adding_replicas: OrderedMap<'a, Vec<i32>>,
            removing_replicas: OrderedMap<'a, Vec<i32>>,
            version: i32,
        }
        let to_vec = |m: &BTreeMap<i32, Vec<i32>>| -> Vec<(String, Vec<i32>)> {
            m.iter().map(|(p, r)| (p.to_string(), r.clone())).collect()
        };
        let (p, ad, rm) = (
            to_vec(&a.partitions),
            to_vec(&a.adding_replicas),
            to_vec(&a.removing_replicas),
        );
        serde_json::to_vec(&Json {
            partitions: OrderedMap(&p),
            topic_id: a.topic_id.as_deref(),
            adding_replicas: OrderedMap(&ad),
            removing_replicas: OrderedMap(&rm),
            version: 3,
        })
        .expect("serialising a plain struct cannot fail")
    }

    pub fn decode(topic: &str, bytes: &[u8]) -> Result<TopicAssignment> {
        let path = Self::path(topic);
        let v = parse(&path, bytes)?;
        Ok(TopicAssignment {
            partitions: get_partition_map(&path, v.get("partitions"))?,
            topic_id: v
                .get("topic_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            adding_replicas: get_partition_map(&path, v.get("adding_replicas"))?,
            removing_replicas: get_partition_map(&path, v.get("removing_replicas"))?,
        })
    }
}

/// `/brokers/topics/<t>/partitions` (persistent, null data), created by the controller.
pub struct TopicPartitionsZNode;

impl TopicPartitionsZNode {
    pub fn path(topic: &str) -> String {
        format!("/brokers/topics/{topic}/partitions")
    }
}

/// `/brokers/topics/<t>/partitions/<p>` (persistent, null data), created by the controller.
pub struct TopicPartitionZNode;

impl TopicPartitionZNode {
    pub fn path(tp: &TopicPartition) -> String {
        format!("/brokers/topics/{}/partitions/{}", tp.topic, tp.partition)
    }
}

/// `/brokers/topics/<t>/partitions/<p>/state` (persistent), JSON version 1. Written by the
/// controller (conditional on its zkVersion, the partition epoch); nobody watches it at IBP 3.6.
///
/// `{"controller_epoch":1,"leader":2,"version":1,"leader_epoch":0,"isr":[2,3,1]}`
pub struct TopicPartitionStateZNode;

impl TopicPartitionStateZNode {
    pub fn path(tp: &TopicPartition) -> String {
        format!(
            "/brokers/topics/{}/partitions/{}/state",
            tp.topic, tp.partition
        )
    }

    pub fn encode(s: &LeaderIsrAndControllerEpoch) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            controller_epoch: i32,
            leader: i32,
            version: i32,
            #[serde(skip_serializing_if = "Option::is_none")]
            leader_recovery_state: Option<i8>,
            leader_epoch: i32,
            isr: &'a [i32],
        }
        let l = &s.leader_and_isr;
        serde_json::to_vec(&Json {
            controller_epoch: s.controller_epoch,
            leader: l.leader,
            version: 1,
            // Written only when RECOVERING (1); absent means RECOVERED.
            leader_recovery_state: (l.leader_recovery_state == 1).then_some(1),
            leader_epoch: l.leader_epoch,
            isr: &l.isr,
        })
        .expect("serialising a plain struct cannot fail")
    }

    /// Decodes; `zk_version` (the znode's dataVersion) becomes the partition epoch. A new
    /// controller decodes every partition's state, so this goes straight to a typed struct
    /// (no `Value` tree, no path string unless the znode is bad).
    pub fn decode(
        tp: &TopicPartition,
        bytes: &[u8],
        zk_version: i32,
    ) -> Result<LeaderIsrAndControllerEpoch> {
        #[derive(serde::Deserialize)]
        struct Json {
            controller_epoch: i32,
            leader: i32,
            leader_epoch: i32,
            isr: Vec<i32>,
            /// Absent means RECOVERED (0).
            #[serde(default)]
            leader_recovery_state: i8,
        }
        let j: Json =
            serde_json::from_slice(bytes).map_err(|e| bad(&Self::path(tp), e.to_string()))?;
        Ok(LeaderIsrAndControllerEpoch {
            leader_and_isr: LeaderAndIsr {
                leader: j.leader,
                leader_epoch: j.leader_epoch,
                isr: j.isr,
                leader_recovery_state: j.leader_recovery_state,
                partition_epoch: zk_version,
            },
            controller_epoch: j.controller_epoch,
        })
    }
}

/// `/admin/delete_topics` (persistent): the controller watches its children.
pub struct DeleteTopicsZNode;

impl DeleteTopicsZNode {
    pub fn path() -> &'static str {
        "/admin/delete_topics"
    }
}

/// `/admin/delete_topics/<t>` (persistent, null data): the deletion marker. Created by
/// DeleteTopics or tools; deleted by the controller when the deletion completes.
pub struct DeleteTopicsTopicZNode;

impl DeleteTopicsTopicZNode {
    pub fn path(topic: &str) -> String {
        format!("/admin/delete_topics/{topic}")
    }
}

/// `/isr_change_notification` (persistent): only used below IBP 2.7-IV2; we clean it at failover.
pub struct IsrChangeNotificationZNode;

impl IsrChangeNotificationZNode {
    pub fn path() -> &'static str {
        "/isr_change_notification"
    }
}

/// `/admin/preferred_replica_election` (persistent, legacy admin path). Written by tools
/// (`kafka-preferred-replica-election.sh` before 2.4, or by hand); the controller watches its
/// existence, runs a preferred election for the listed partitions when it is created, then
/// deletes it (fenced).
///
/// `{"version":1,"partitions":[{"topic":"t","partition":0}]}`
pub struct PreferredReplicaElectionZNode;

impl PreferredReplicaElectionZNode {
    pub fn path() -> &'static str {
        "/admin/preferred_replica_election"
    }

    pub fn encode(partitions: &[TopicPartition]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Entry<'a> {
            topic: &'a str,
            partition: i32,
        }
        #[derive(Serialize)]
        struct Json<'a> {
            version: i32,
            partitions: Vec<Entry<'a>>,
        }
        serde_json::to_vec(&Json {
            version: 1,
            partitions: partitions
                .iter()
                .map(|tp| Entry {
                    topic: &tp.topic,
                    partition: tp.partition,
                })
                .collect(),
        })
        .expect("serialising a plain struct cannot fail")
    }

    /// The listed partitions (duplicates collapsed, as Kafka reads them into a set).
    pub fn decode(bytes: &[u8]) -> Result<Vec<TopicPartition>> {
        let path = Self::path();
        let v = parse(path, bytes)?;
        let list = v
            .get("partitions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(path, "missing partitions"))?;
        let mut out = Vec::new();
        for e in list {
            let topic = e
                .get("topic")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(path, "partition entry without topic"))?;
            let tp = TopicPartition::new(topic, get_i32(path, e, "partition")?);
            if !out.contains(&tp) {
                out.push(tp);
            }
        }
        Ok(out)
    }
}

/// `/admin/reassign_partitions` (persistent, legacy admin path, deprecated since 2.4 in favour
/// of AlterPartitionReassignments). Written by `kafka-reassign-partitions.sh` (old versions) or
/// by hand; the controller reacts to its creation, rewrites it without the partitions that
/// finished, and deletes it when empty (all fenced).
///
/// `{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[2,3]}]}`
pub struct ReassignPartitionsZNode;

impl ReassignPartitionsZNode {
    pub fn path() -> &'static str {
        "/admin/reassign_partitions"
    }

    pub fn encode(reassignments: &[(TopicPartition, Vec<i32>)]) -> Vec<u8> {
        #[derive(Serialize)]
        struct Entry<'a> {
            topic: &'a str,
            partition: i32,
            replicas: &'a [i32],
        }
        #[derive(Serialize)]
        struct Json<'a> {
            version: i32,
            partitions: Vec<Entry<'a>>,
        }
        serde_json::to_vec(&Json {
            version: 1,
            partitions: reassignments
                .iter()
                .map(|(tp, r)| Entry {
                    topic: &tp.topic,
                    partition: tp.partition,
                    replicas: r,
                })
                .collect(),
        })
        .expect("serialising a plain struct cannot fail")
    }

    /// Target replicas per partition, in file order (a later entry for the same partition
    /// replaces an earlier one, as Kafka's map does). `log_dirs` entries are ignored.
    pub fn decode(bytes: &[u8]) -> Result<Vec<(TopicPartition, Vec<i32>)>> {
        let path = Self::path();
        let v = parse(path, bytes)?;
        let list = v
            .get("partitions")
            .and_then(Value::as_array)
            .ok_or_else(|| bad(path, "missing partitions"))?;
        let mut out: Vec<(TopicPartition, Vec<i32>)> = Vec::new();
        for e in list {
            let topic = e
                .get("topic")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(path, "partition entry without topic"))?;
            let tp = TopicPartition::new(topic, get_i32(path, e, "partition")?);
            let replicas = get_int_list(
                path,
                e.get("replicas")
                    .ok_or_else(|| bad(path, "partition entry without replicas"))?,
            )?;
            out.retain(|(t, _)| *t != tp);
            out.push((tp, replicas));
        }
        Ok(out)
    }
}

/// `/config/topics/<t>` (persistent). Written by the topic creator (always, possibly empty) and by
/// AlterConfigs; read by brokers on a config-change notification.
///
/// `{"version":1,"config":{"retention.ms":"86400000"}}`
pub struct ConfigEntityZNode;

impl ConfigEntityZNode {
    pub fn topic_path(topic: &str) -> String {
        format!("/config/topics/{topic}")
    }
    pub fn encode(config: &BTreeMap<String, String>) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            version: i32,
            config: &'a BTreeMap<String, String>,
        }
        serde_json::to_vec(&Json { version: 1, config })
            .expect("serialising a plain struct cannot fail")
    }
    pub fn decode(path: &str, bytes: &[u8]) -> Result<BTreeMap<String, String>> {
        if bytes.is_empty() {
            return Ok(BTreeMap::new());
        }
        let v = parse(path, bytes)?;
        let mut out = BTreeMap::new();
        if let Some(Value::Object(m)) = v.get("config") {
            for (k, val) in m {
                let s = match val {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), s);
            }
        }
        Ok(out)
    }
}

/// `/cluster/id` (persistent). Created by the first broker ever to start; nobody watches it.
///
/// `{"version":"1","id":"fn7-MseRQReG__IBE9axXQ"}` (note `version` is a string)
pub struct ClusterIdZNode;

impl ClusterIdZNode {
    pub fn path() -> &'static str {
        "/cluster/id"
    }
    pub fn encode(id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json<'a> {
            version: &'a str,
            id: &'a str,
        }
        serde_json::to_vec(&Json { version: "1", id })
            .expect("serialising a plain struct cannot fail")
    }
    pub fn decode(bytes: &[u8]) -> Result<String> {
        let v = parse(Self::path(), bytes)?;
        v.get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| bad(Self::path(), "missing id"))
    }
}

/// `/latest_producer_id_block` (persistent, created with null data at start-up): the last block
/// of producer ids handed out. Start and end are inclusive and written as strings.
///
/// `{"version":1,"broker":0,"block_start":"8000","block_end":"8999"}`
pub struct ProducerIdBlockZNode;

impl ProducerIdBlockZNode {
    /// Ids per block (Kafka: `ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE`).
    pub const BLOCK_SIZE: i64 = 1000;
    pub fn path() -> &'static str {
        "/latest_producer_id_block"
    }
    pub fn encode(broker_id: i32, block_start: i64, block_end: i64) -> Vec<u8> {
        #[derive(Serialize)]
        struct Json {
            version: i32,
            broker: i32,
            block_start: String,
            block_end: String,
        }
        serde_json::to_vec(&Json {
            version: 1,
            broker: broker_id,
            block_start: block_start.to_string(),
            block_end: block_end.to_string(),
        })
        .expect("serialising a plain struct cannot fail")
    }
    /// `(broker, block_start, block_end)`.
    pub fn decode(bytes: &[u8]) -> Result<(i32, i64, i64)> {
        let v = parse(Self::path(), bytes)?;
        let num = |key: &str| -> Result<i64> {
            v.get(key)
                .and_then(|x| {
                    x.as_str()
                        .and_then(|s| s.parse().ok())
                        .or_else(|| x.as_i64())
                })
                .ok_or_else(|| bad(Self::path(), format!("missing or bad {key}")))
        };
        let broker = v
            .get("broker")
            .and_then(Value::as_i64)
            .ok_or_else(|| bad(Self::path(), "missing broker"))? as i32;
        Ok((broker, num("block_start")?, num("block_end")?))
    }
}

/// `/feature` (persistent). Written by the controller at failover; brokers watch it. A ZooKeeper
/// broker advertises no features, so the finalized map is empty and the status Enabled (1).
///
/// `{"features":{},"version":2,"status":1}`
pub struct FeatureZNode;

impl FeatureZNode {
    pub fn path() -> &'static str {
        "/feature"
    }
    /// Status Enabled with no finalized features.
    pub fn encode_enabled() -> Vec<u8> {
        br#"{"features":{},"version":2,"status":1}"#.to_vec()
    }
    /// The `status` field (1 = Enabled, 0 = Disabled).
    pub fn decode_status(bytes: &[u8]) -> Result<i32> {
        let v = parse(Self::path(), bytes)?;
        get_i32(Self::path(), &v, "status")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same keys and values, whatever the order (Kafka's own order differs between its builds).
    fn same_json(a: &[u8], b: &str) {
        let a: Value = serde_json::from_slice(a).unwrap();
        let b: Value = serde_json::from_str(b).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn controller_json_round_trips_reference_sample() {
        let sample =
            r#"{"version":2,"brokerid":1,"timestamp":"1700000000789","kraftControllerEpoch":-1}"#;
        assert_eq!(Controller::decode(sample.as_bytes()).unwrap(), 1);
        let ours = Controller::encode(1, 1_700_000_000_789);
        assert_eq!(std::str::from_utf8(&ours).unwrap(), sample);
        // The 2.x form (version 1) is accepted too.
        let v1 = r#"{"version":1,"brokerid":0,"timestamp":"1600000000111"}"#;
        assert_eq!(Controller::decode(v1.as_bytes()).unwrap(), 0);
    }

    #[test]
    fn admin_election_and_reassignment_json_round_trip_reference_samples() {
        let sample = r#"{"version":1,"partitions":[{"topic":"t","partition":0}]}"#;
        let tps = PreferredReplicaElectionZNode::decode(sample.as_bytes()).unwrap();
        assert_eq!(tps, vec![TopicPartition::new("t", 0)]);
        assert_eq!(
            PreferredReplicaElectionZNode::encode(&tps),
            sample.as_bytes()
        );
        let sample =
            r#"{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[2,3]}]}"#;
        let r = ReassignPartitionsZNode::decode(sample.as_bytes()).unwrap();
        assert_eq!(r, vec![(TopicPartition::new("orders", 0), vec![2, 3])]);
        assert_eq!(ReassignPartitionsZNode::encode(&r), sample.as_bytes());
        assert!(ReassignPartitionsZNode::decode(br#"{"version":1}"#).is_err());
        assert!(ReassignPartitionsZNode::decode(
            br#"{"version":1,"partitions":[{"topic":"t","partition":0}]}"#
        )
        .is_err());
    }

    #[test]
    fn controller_epoch_is_plain_decimal_text() {
        assert_eq!(ControllerEpoch::encode(7), b"7");
        assert_eq!(ControllerEpoch::decode(b"12").unwrap(), 12);
        assert!(ControllerEpoch::decode(b"x").is_err());
    }

    #[test]
    fn broker_registration_round_trips_reference_samples() {
        let sample = r#"{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://10.0.0.1:9092"],"jmx_port":-1,"port":9092,"host":"10.0.0.1","version":5,"timestamp":"1700000000123"}"#;
        let reg = BrokerIdZNode::decode(1, sample.as_bytes()).unwrap();
        assert_eq!(
            reg,
            BrokerRegistration {
                broker_id: 1,
                endpoints: vec![EndPoint {
                    listener_name: "PLAINTEXT".into(),
                    host: "10.0.0.1".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into()
                }],
                rack: None,
                timestamp_ms: 1_700_000_000_123,
            }
        );
        let ours = BrokerIdZNode::encode(&reg);
        // Byte-identical to the 2.13 build's order.
        assert_eq!(std::str::from_utf8(&ours).unwrap(), sample);

        let with_rack = r#"{"features":{},"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://b1:9092"],"rack":"r1","jmx_port":-1,"port":9092,"host":"b1","version":5,"timestamp":"1700000000321"}"#;
        let reg = BrokerIdZNode::decode(3, with_rack.as_bytes()).unwrap();
        assert_eq!(reg.rack.as_deref(), Some("r1"));
        assert_eq!(
            std::str::from_utf8(&BrokerIdZNode::encode(&reg)).unwrap(),
            with_rack
        );

        let v212 = r#"{"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://localhost:9092"],"jmx_port":-1,"features":{},"host":"localhost","timestamp":"1700000000456","port":9092,"version":5}"#;
        let reg = BrokerIdZNode::decode(2, v212.as_bytes()).unwrap();
        same_json(&BrokerIdZNode::encode(&reg), v212);
    }

    #[test]
    fn broker_registration_without_plaintext_writes_null_host() {
        let reg = BrokerRegistration {
            broker_id: 1,
            endpoints: vec![EndPoint {
                listener_name: "INTERNAL".into(),
                host: "h".into(),
                port: 1,
                security_protocol: "SSL".into(),
            }],
            rack: None,
            timestamp_ms: 5,
        };
        let v: Value = serde_json::from_slice(&BrokerIdZNode::encode(&reg)).unwrap();
        assert_eq!(v["host"], Value::Null);
        assert_eq!(v["port"], -1);
        assert_eq!(v["listener_security_protocol_map"]["INTERNAL"], "SSL");
        assert_eq!(
            BrokerIdZNode::decode(1, &BrokerIdZNode::encode(&reg)).unwrap(),
            reg
        );
    }

    #[test]
    fn topic_assignment_round_trips_reference_samples() {
        let sample = r#"{"partitions":{"0":[1,2,3],"1":[2,3,1],"2":[3,1,2]},"topic_id":"pTprpIZ6SqWJMP5PEH8O4g","adding_replicas":{},"removing_replicas":{},"version":3}"#;
        let a = TopicZNode::decode("t", sample.as_bytes()).unwrap();
        assert_eq!(a.partitions[&1], vec![2, 3, 1]);
        assert_eq!(a.topic_id.as_deref(), Some("pTprpIZ6SqWJMP5PEH8O4g"));
        assert_eq!(
            std::str::from_utf8(&TopicZNode::encode(&a)).unwrap(),
            sample
        );
        let mid = r#"{"partitions":{"0":[4,5,6,1,2,3]},"topic_id":"pTprpIZ6SqWJMP5PEH8O4g","adding_replicas":{"0":[4,5,6]},"removing_replicas":{"0":[1,2,3]},"version":3}"#;
        let a = TopicZNode::decode("t", mid.as_bytes()).unwrap();
        assert_eq!(a.removing_replicas[&0], vec![1, 2, 3]);
        assert_eq!(std::str::from_utf8(&TopicZNode::encode(&a)).unwrap(), mid);
        let v212 = r#"{"removing_replicas":{},"partitions":{"2":[2,1],"1":[1,3],"0":[3,2]},"topic_id":"I0iVB4fIRgSh5pME0T8pPw","adding_replicas":{},"version":3}"#;
        let a = TopicZNode::decode("t", v212.as_bytes()).unwrap();
        same_json(&TopicZNode::encode(&a), v212);
        assert!(decode_uuid(a.topic_id.as_deref().unwrap()).is_some());
    }

    #[test]
    fn partition_state_round_trips_reference_samples() {
        let tp = TopicPartition::new("t", 0);
        for sample in [
            r#"{"controller_epoch":1,"leader":2,"version":1,"leader_epoch":0,"isr":[2,3,1]}"#,
            r#"{"controller_epoch":5,"leader":-1,"version":1,"leader_epoch":7,"isr":[3]}"#,
            r#"{"controller_epoch":6,"leader":1,"version":1,"leader_recovery_state":1,"leader_epoch":8,"isr":[1]}"#,
        ] {
            let s = TopicPartitionStateZNode::decode(&tp, sample.as_bytes(), 4).unwrap();
            assert_eq!(s.leader_and_isr.partition_epoch, 4);
            assert_eq!(
                std::str::from_utf8(&TopicPartitionStateZNode::encode(&s)).unwrap(),
                sample
            );
        }
    }

    #[test]
    fn a_bad_partition_state_names_its_path_and_key() {
        let tp = TopicPartition::new("t", 3);
        let missing = r#"{"controller_epoch":1,"leader":2,"version":1,"leader_epoch":0}"#;
        let e = TopicPartitionStateZNode::decode(&tp, missing.as_bytes(), 0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/brokers/topics/t/partitions/3/state") && e.contains("isr"),
            "{e}"
        );
        let wide = r#"{"controller_epoch":1,"leader":3000000000,"leader_epoch":0,"isr":[2]}"#;
        assert!(TopicPartitionStateZNode::decode(&tp, wide.as_bytes(), 0).is_err());
        // Unknown keys are ignored, as Kafka's reader does.
        let extra = r#"{"controller_epoch":1,"leader":2,"leader_epoch":0,"isr":[2],"x":{"y":[1]}}"#;
        assert!(TopicPartitionStateZNode::decode(&tp, extra.as_bytes(), 0).is_ok());
    }

    #[test]
    fn config_cluster_id_and_feature_match_kafka() {
        let empty = ConfigEntityZNode::encode(&BTreeMap::new());
        assert_eq!(empty, br#"{"version":1,"config":{}}"#);
        let sample = r#"{"version":1,"config":{"retention.ms":"86400000"}}"#;
        let c = ConfigEntityZNode::decode("/config/topics/t", sample.as_bytes()).unwrap();
        assert_eq!(c["retention.ms"], "86400000");
        assert_eq!(ConfigEntityZNode::encode(&c), sample.as_bytes());

        let id = r#"{"version":"1","id":"fn7-MseRQReG__IBE9axXQ"}"#;
        assert_eq!(
            ClusterIdZNode::decode(id.as_bytes()).unwrap(),
            "fn7-MseRQReG__IBE9axXQ"
        );
        assert_eq!(
            ClusterIdZNode::encode("fn7-MseRQReG__IBE9axXQ"),
            id.as_bytes()
        );

        let block = r#"{"version":1,"broker":0,"block_start":"8000","block_end":"8999"}"#;
        assert_eq!(
            ProducerIdBlockZNode::encode(0, 8000, 8999),
            block.as_bytes()
        );
        assert_eq!(
            ProducerIdBlockZNode::decode(block.as_bytes()).unwrap(),
            (0, 8000, 8999)
        );

        assert_eq!(
            FeatureZNode::decode_status(&FeatureZNode::encode_enabled()).unwrap(),
            1
        );
    }

    #[test]
    fn uuids_are_22_char_base64url() {
        let s = random_uuid_string();
        assert_eq!(s.len(), 22);
        assert!(!s.starts_with('-'));
        assert_eq!(encode_uuid(decode_uuid(&s).unwrap()), s);
    }
}
