//! `testcluster topics ...`: Kafka's `kafka-topics.sh` and `kafka-leader-election.sh`, over the
//! Admin APIs (CreateTopics, DeleteTopics, CreatePartitions, ElectLeaders, Metadata).
//!
//! As Kafka's AdminClient does in ZooKeeper mode, requests that change topics go to the
//! controller, found in a Metadata answer (`controller_id`); listing and describing read
//! Metadata from any live broker. Errors print as the Kafka tools print them:
//! `Error while executing topic command : <message>`.

use std::path::Path;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, ElectLeadersRequest,
    ElectLeadersResponse, MetadataResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use testcluster::kafka::Client;

use crate::tool::state::{proc_state, ClusterState, ProcState};

/// How long the broker may take for a topic change (CreateTopics and friends' `timeout_ms`).
const TIMEOUT_MS: i32 = 30_000;

/// Kafka's text for an error code, with the broker's message when it sent one.
pub fn kafka_error(code: i16, message: Option<&StrBytes>) -> String {
    let name = ResponseError::try_from_code(code)
        .map(|e| e.to_string())
        .unwrap_or_else(|| "None".into());
    match message {
        Some(m) if !m.is_empty() => format!("{m} ({name}, error code {code})"),
        _ => format!("{name} (error code {code})"),
    }
}

fn tool_error(msg: String) -> anyhow::Error {
    anyhow::anyhow!("Error while executing topic command : {msg}")
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A live broker's Metadata (all topics) and a client connected to the controller.
fn connect(dir: &Path) -> anyhow::Result<(MetadataResponse, Client)> {
    connect_with(dir, tool_error)
}

/// [`connect`], with the calling tool's way of wording an error (`Error while executing topic
/// command : ...` here, `Error: ...` for the reassignment tool).
pub fn connect_with(
    dir: &Path,
    tool_error: fn(String) -> anyhow::Error,
) -> anyhow::Result<(MetadataResponse, Client)> {
    let state = ClusterState::load(dir)?;
    let mut last_err = None;
    let mut no_controller = None;
    for b in &state.brokers {
        if proc_state(b.pid) != ProcState::Alive {
            continue;
        }
        match Client::connect(&b.address).and_then(|mut c| c.metadata(None)) {
            Ok(md) => {
                let controller = md.controller_id.0;
                let Some(addr) = md
                    .brokers
                    .iter()
                    .find(|x| x.node_id.0 == controller)
                    .map(|x| format!("{}:{}", x.host, x.port))
                else {
                    // A broker that just started may not know the controller yet (no
                    // UpdateMetadata so far), as Kafka's AdminClient finds: ask the next.
                    no_controller.get_or_insert(format!(
                        "no controller is available right now (broker {} reports controller {controller})",
                        b.id
                    ));
                    continue;
                };
                return Ok((md, Client::connect(&addr)?));
            }
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(msg) = no_controller {
        return Err(tool_error(msg));
    }
    Err(tool_error(format!(
        "Timed out waiting for a node assignment: no broker of {} answered ({})",
        state.bootstrap_servers,
        last_err.map_or("none is running".into(), |e| e.to_string())
    )))
}

pub fn list(dir: &Path) -> anyhow::Result<()> {
    let (md, _) = connect(dir)?;
    let mut names: Vec<String> = md
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    for n in names {
        println!("{n}");
    }
    Ok(())
}

/// Prints topics as `kafka-topics.sh --describe` does, from the brokers' Metadata.
pub fn describe(dir: &Path, topic: Option<&str>) -> anyhow::Result<()> {
    let (md, _) = connect(dir)?;
    let mut topics: Vec<_> = md
        .topics
        .iter()
        .filter(|t| topic.is_none_or(|want| t.name.as_ref().is_some_and(|n| n.0.as_str() == want)))
        .collect();
    if let Some(want) = topic {
        if topics.is_empty() {
            return Err(tool_error(format!(
                "Topic '{want}' does not exist as expected"
            )));
        }
    }
    topics.sort_by_key(|t| t.name.as_ref().map(|n| n.0.to_string()));
    for t in topics {
        let tname = t.name.as_ref().map_or(String::new(), |n| n.0.to_string());
        let rf = t.partitions.first().map_or(0, |p| p.replica_nodes.len());
        println!(
            "Topic: {tname}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {rf}",
            t.topic_id,
            t.partitions.len()
        );
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by_key(|p| p.partition_index);
        for p in parts {
            let list = |v: &[kafka_protocol::messages::BrokerId]| {
                v.iter()
                    .map(|b| b.0.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let mut line = format!(
                "\tTopic: {tname}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                p.partition_index,
                if p.leader_id.0 < 0 {
                    "none".to_string()
                } else {
                    p.leader_id.0.to_string()
                },
                list(&p.replica_nodes),
                list(&p.isr_nodes)
            );
            if !p.offline_replicas.is_empty() {
                line.push_str(&format!("\tOffline: {}", list(&p.offline_replicas)));
            }
            println!("{line}");
        }
    }
    Ok(())
}

pub fn create(
    dir: &Path,
    topic: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let (_, mut c) = connect(dir)?;
    let cfg: Vec<(&str, &str)> = configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = c.create_topic(topic, partitions, replication_factor, &cfg)?;
    let t = r
        .topics
        .first()
        .ok_or_else(|| tool_error("empty CreateTopics answer".into()))?;
    if t.error_code != 0 {
        return Err(tool_error(kafka_error(
            t.error_code,
            t.error_message.as_ref(),
        )));
    }
    println!("Created topic {topic}.");
    Ok(())
}

pub fn delete(dir: &Path, topic: &str) -> anyhow::Result<()> {
    let (_, mut c) = connect(dir)?;
    let code = c.delete_topic(topic, TIMEOUT_MS)?;
    if code != 0 {
        return Err(tool_error(kafka_error(code, None)));
    }
    println!("Deleted topic {topic}.");
    Ok(())
}

/// `kafka-topics.sh --alter --partitions N`: N is the new total.
pub fn add_partitions(dir: &Path, topic: &str, count: i32) -> anyhow::Result<()> {
    let (_, mut c) = connect(dir)?;
    let req = CreatePartitionsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name(topic))
            .with_count(count)
            .with_assignments(None)]);
    let r: CreatePartitionsResponse = c.send(ApiKey::CreatePartitions, 1, &req)?;
    let t = r
        .results
        .first()
        .ok_or_else(|| tool_error("empty CreatePartitions answer".into()))?;
    if t.error_code != 0 {
        return Err(tool_error(kafka_error(
            t.error_code,
            t.error_message.as_ref(),
        )));
    }
    println!("Topic {topic} now has {count} partitions.");
    Ok(())
}

/// `kafka-leader-election.sh --election-type PREFERRED|UNCLEAN`.
pub fn elect(
    dir: &Path,
    unclean: bool,
    topic: Option<&str>,
    partition: Option<i32>,
) -> anyhow::Result<()> {
    let (md, mut c) = connect(dir)?;
    let targets = match topic {
        None => None,
        Some(t) => {
            let parts = match partition {
                Some(p) => vec![p],
                None => md
                    .topics
                    .iter()
                    .find(|x| x.name.as_ref().is_some_and(|n| n.0.as_str() == t))
                    .ok_or_else(|| tool_error(format!("Topic '{t}' does not exist as expected")))?
                    .partitions
                    .iter()
                    .map(|p| p.partition_index)
                    .collect(),
            };
            Some(vec![TopicPartitions::default()
                .with_topic(name(t))
                .with_partitions(parts)])
        }
    };
    let req = ElectLeadersRequest::default()
        .with_election_type(if unclean { 1 } else { 0 })
        .with_topic_partitions(targets)
        .with_timeout_ms(TIMEOUT_MS);
    let r: ElectLeadersResponse = c.send(ApiKey::ElectLeaders, 1, &req)?;
    if r.error_code != 0 {
        anyhow::bail!(
            "Error completing leader election: {}",
            kafka_error(r.error_code, None)
        );
    }
    let kind = if unclean { "Unclean" } else { "Preferred" };
    let (mut ok, mut none, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for t in &r.replica_election_results {
        for p in &t.partition_result {
            let tp = format!("{}-{}", t.topic.0, p.partition_id);
            match p.error_code {
                0 => ok.push(tp),
                // ELECTION_NOT_NEEDED: the leader already is the one the election would choose.
                84 => none.push(tp),
                code => failed.push(format!(
                    "{tp}: {}",
                    kafka_error(code, p.error_message.as_ref())
                )),
            }
        }
    }
    if !ok.is_empty() {
        println!(
            "Successfully completed leader election ({kind}) for partitions {}",
            ok.join(", ")
        );
    }
    if !none.is_empty() {
        println!(
            "Valid replica already elected for partitions {}",
            none.join(", ")
        );
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "Error completing leader election ({kind}) for partitions: {}",
            failed.join("; ")
        );
    }
    Ok(())
}
