//! `testcluster reassign ...`: Kafka's `kafka-reassign-partitions.sh` over the Admin APIs
//! (Metadata, AlterPartitionReassignments, ListPartitionReassignments), with its plan format
//! and its messages.
//!
//! - `propose` (Kafka's `--generate`): the topics' current assignment and a proposed one over
//!   the given brokers, both as `{"version":1,"partitions":[{"topic":..,"partition":..,
//!   "replicas":[..],"log_dirs":["any",..]}]}`.
//! - `execute`: prints the current assignment (to roll back with), then asks the controller to
//!   move each partition of the plan to its replicas.
//! - `verify`: for each partition of the plan, still in progress (listed by
//!   ListPartitionReassignments), completed (the replicas are the plan's), or neither.
//! - `cancel`: cancels the plan's partitions that are still moving (a null target); the
//!   controller puts back the original replicas.
//!
//! Differences from Kafka's tool: `propose` takes `--topics a,b` instead of a topics JSON file
//! and starts the round-robin at a fixed broker per topic (Kafka picks it at random), so the
//! same cluster gives the same proposal; there are no throttles and no log-dir moves
//! (`log_dirs` must be `"any"`), so the tool never prints Kafka's throttle lines.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, ApiKey, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use testcluster::kafka::Client;

use crate::tool::topics::{connect_with, kafka_error};

const TIMEOUT_MS: i32 = 30_000;

/// A partition, printed `topic-partition` as Kafka's `TopicPartition`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tp {
    pub topic: String,
    pub partition: i32,
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Partition -> replicas, in the order Kafka sorts them (topic, then partition).
pub type Assignment = BTreeMap<Tp, Vec<i32>>;

/// Kafka's `Error: ...` line for a failed command.
fn error(msg: impl fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("Error: {msg}")
}

/// The controller took the connection but did not answer (paused, dying) or closed it.
fn no_answer(api: &str, e: anyhow::Error) -> anyhow::Error {
    error(format!(
        "the controller did not answer {api} ({e}); is it paused? (testcluster status)"
    ))
}

fn error_text(msg: String) -> anyhow::Error {
    error(msg)
}

fn join<T: fmt::Display>(items: impl IntoIterator<Item = T>, sep: &str) -> String {
    items
        .into_iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(sep)
}

/// A plan in kafka-reassign-partitions.sh's JSON, keys in Kafka's order, on one line.
pub fn plan_json(a: &Assignment) -> String {
    let parts: Vec<String> = a
        .iter()
        .map(|(tp, replicas)| {
            format!(
                "{{\"topic\":{},\"partition\":{},\"replicas\":[{}],\"log_dirs\":[{}]}}",
                serde_json::Value::String(tp.topic.clone()),
                tp.partition,
                join(replicas, ","),
                join(replicas.iter().map(|_| "\"any\""), ",")
            )
        })
        .collect();
    format!("{{\"version\":1,\"partitions\":[{}]}}", parts.join(","))
}

/// Parses and checks a plan as Kafka's `parseExecuteAssignmentArgs` does.
pub fn parse_plan(text: &str) -> anyhow::Result<Assignment> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| error(format!("the reassignment plan is not valid JSON: {e}")))?;
    let parts = v
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or_else(|| error("the reassignment plan has no \"partitions\" array"))?;
    if let Some(ver) = v.get("version") {
        if ver.as_i64() != Some(1) {
            return Err(error(format!(
                "Not supported version field value {ver} (only version 1)"
            )));
        }
    }
    let mut out = Assignment::new();
    let mut dup_parts = BTreeSet::new();
    let mut dup_replicas = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let field = |name: &str| {
            p.get(name)
                .ok_or_else(|| error(format!("partition entry {i} has no \"{name}\" field")))
        };
        let topic = field("topic")?
            .as_str()
            .ok_or_else(|| error(format!("partition entry {i}: \"topic\" is not a string")))?
            .to_string();
        let partition = field("partition")?
            .as_i64()
            .and_then(|x| i32::try_from(x).ok())
            .ok_or_else(|| {
                error(format!(
                    "partition entry {i}: \"partition\" is not a number"
                ))
            })?;
        let replicas: Vec<i32> = field("replicas")?
            .as_array()
            .ok_or_else(|| error(format!("partition entry {i}: \"replicas\" is not an array")))?
            .iter()
            .map(|r| r.as_i64().and_then(|x| i32::try_from(x).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| error(format!("partition entry {i}: a replica is not a broker id")))?;
        let tp = Tp { topic, partition };
        if let Some(dirs) = p.get("log_dirs") {
            let dirs: Vec<&str> = dirs
                .as_array()
                .map(|d| d.iter().filter_map(|x| x.as_str()).collect())
                .unwrap_or_default();
            if dirs.len() != replicas.len() {
                return Err(error(format!(
                    "Size of replicas list {} is different from size of log dirs list {} for partition {tp}",
                    crate::tool::snapshot::ids(&replicas),
                    serde_json::to_string(&dirs).unwrap_or_default()
                )));
            }
            if let Some(d) = dirs.iter().find(|d| **d != "any") {
                return Err(error(format!(
                    "{tp}: log dir {d:?}: moving replicas between log dirs is not supported here (use \"any\")"
                )));
            }
        }
        if replicas.is_empty() {
            return Err(error("Partition replica list cannot be empty"));
        }
        let distinct: BTreeSet<i32> = replicas.iter().copied().collect();
        if distinct.len() != replicas.len() {
            let mut seen = BTreeSet::new();
            let dups: BTreeSet<i32> = replicas
                .iter()
                .filter(|r| !seen.insert(**r))
                .copied()
                .collect();
            dup_replicas.push(format!(
                "{tp} contains multiple entries for {}",
                join(dups, ",")
            ));
        }
        if out.insert(tp.clone(), replicas).is_some() {
            dup_parts.insert(tp);
        }
    }
    if out.is_empty() {
        return Err(error("Partition reassignment list cannot be empty"));
    }
    if !dup_parts.is_empty() {
        return Err(error(format!(
            "Partition reassignment contains duplicate topic partitions: {}",
            join(dup_parts, ",")
        )));
    }
    if !dup_replicas.is_empty() {
        return Err(error(format!(
            "Partition replica lists may not contain duplicate entries: {}",
            dup_replicas.join(". ")
        )));
    }
    Ok(out)
}

fn read_plan(file: &Path) -> anyhow::Result<Assignment> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| error(format!("cannot read {}: {e}", file.display())))?;
    parse_plan(&text)
}

/// Kafka's rack-unaware `assignReplicasToBrokers`: partition p's first replica is broker
/// `(p + start) % n`; the others follow at a shift that grows by one every n partitions, so
/// replicas and leaders spread evenly.
pub fn assign_round_robin(
    brokers: &[i32],
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> anyhow::Result<Vec<Vec<i32>>> {
    let n = brokers.len();
    if replication_factor == 0 {
        return Err(error("Replication factor must be larger than 0."));
    }
    if replication_factor > n {
        return Err(error(format!(
            "Replication factor: {replication_factor} larger than available brokers: {n}."
        )));
    }
    let mut out = Vec::new();
    let mut shift = start;
    for p in 0..partitions as usize {
        if p > 0 && p % n == 0 {
            shift += 1;
        }
        let first = (p + start) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..replication_factor - 1 {
            let step = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + step) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

/// Each partition's assigned replicas, from a Metadata answer.
fn current_assignment(md: &MetadataResponse) -> Assignment {
    let mut out = Assignment::new();
    for t in &md.topics {
        let Some(name) = &t.name else { continue };
        if t.error_code != 0 {
            continue;
        }
        for p in &t.partitions {
            out.insert(
                Tp {
                    topic: name.0.to_string(),
                    partition: p.partition_index,
                },
                p.replica_nodes.iter().map(|b| b.0).collect(),
            );
        }
    }
    out
}

/// (partition, replicas, adding, removing) of every reassignment in progress.
type Ongoing = BTreeMap<Tp, (Vec<i32>, Vec<i32>, Vec<i32>)>;

fn list_ongoing(c: &mut Client) -> anyhow::Result<Ongoing> {
    let req = ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(None);
    let r: ListPartitionReassignmentsResponse = c
        .send(ApiKey::ListPartitionReassignments, 0, &req)
        .map_err(|e| no_answer("ListPartitionReassignments", e))?;
    if r.error_code != 0 {
        return Err(error(kafka_error(r.error_code, r.error_message.as_ref())));
    }
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let mut out = Ongoing::new();
    for t in &r.topics {
        for p in &t.partitions {
            out.insert(
                Tp {
                    topic: t.name.to_string(),
                    partition: p.partition_index,
                },
                (
                    ids(&p.replicas),
                    ids(&p.adding_replicas),
                    ids(&p.removing_replicas),
                ),
            );
        }
    }
    Ok(out)
}

/// AlterPartitionReassignments for `targets` (None cancels); the partitions the controller
/// refused, with Kafka's message.
fn alter(
    c: &mut Client,
    targets: &BTreeMap<Tp, Option<Vec<i32>>>,
) -> anyhow::Result<BTreeMap<Tp, String>> {
    let mut by_topic: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
    for (tp, replicas) in targets {
        by_topic.entry(tp.topic.as_str()).or_default().push(
            ReassignablePartition::default()
                .with_partition_index(tp.partition)
                .with_replicas(
                    replicas
                        .as_ref()
                        .map(|v| v.iter().map(|b| BrokerId(*b)).collect()),
                ),
        );
    }
    let req = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(TIMEOUT_MS)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(t, ps)| {
                    ReassignableTopic::default()
                        .with_name(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let r: AlterPartitionReassignmentsResponse = c
        .send(ApiKey::AlterPartitionReassignments, 0, &req)
        .map_err(|e| no_answer("AlterPartitionReassignments", e))?;
    if r.error_code != 0 {
        return Err(error(kafka_error(r.error_code, r.error_message.as_ref())));
    }
    let mut errors = BTreeMap::new();
    for t in &r.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                errors.insert(
                    Tp {
                        topic: t.name.to_string(),
                        partition: p.partition_index,
                    },
                    kafka_error(p.error_code, p.error_message.as_ref()),
                );
            }
        }
    }
    Ok(errors)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// `propose` (Kafka's `--generate`): prints the current and the proposed assignment of
/// `topics` over `brokers`; writes the proposal to `output` too when given.
pub fn propose(
    dir: &Path,
    topics: &[String],
    brokers: &[i32],
    output: Option<&Path>,
) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    let dup_brokers: BTreeSet<i32> = brokers
        .iter()
        .filter(|b| !seen.insert(**b))
        .copied()
        .collect();
    if !dup_brokers.is_empty() {
        return Err(error(format!(
            "Broker list contains duplicate entries: {}",
            join(dup_brokers, ",")
        )));
    }
    let mut seen = BTreeSet::new();
    let dup_topics: BTreeSet<&String> = topics.iter().filter(|t| !seen.insert(*t)).collect();
    if !dup_topics.is_empty() {
        return Err(error(format!(
            "List of topics to reassign contains duplicate entries: {}",
            join(dup_topics, ",")
        )));
    }
    let (md, _) = connect_with(dir, error_text)?;
    let live: BTreeSet<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    if let Some(b) = brokers.iter().find(|b| !live.contains(b)) {
        return Err(error(format!(
            "Unknown broker id {b} (live brokers: {})",
            join(&live, ",")
        )));
    }
    let all = current_assignment(&md);
    let mut current = Assignment::new();
    let mut proposed = Assignment::new();
    let mut sorted_brokers = brokers.to_vec();
    sorted_brokers.sort_unstable();
    for (i, topic) in topics.iter().enumerate() {
        let parts: Assignment = all
            .iter()
            .filter(|(tp, _)| &tp.topic == topic)
            .map(|(tp, r)| (tp.clone(), r.clone()))
            .collect();
        let Some(rf) = parts.values().next().map(Vec::len) else {
            return Err(error(format!("Topic {topic} not found.")));
        };
        let assigned =
            assign_round_robin(&sorted_brokers, parts.len() as i32, rf, i % brokers.len())?;
        for (p, replicas) in assigned.into_iter().enumerate() {
            proposed.insert(
                Tp {
                    topic: topic.clone(),
                    partition: p as i32,
                },
                replicas,
            );
        }
        current.extend(parts);
    }
    println!(
        "Current partition replica assignment\n{}\n",
        plan_json(&current)
    );
    println!(
        "Proposed partition reassignment configuration\n{}",
        plan_json(&proposed)
    );
    if let Some(out) = output {
        std::fs::write(out, format!("{}\n", plan_json(&proposed)))
            .map_err(|e| error(format!("cannot write {}: {e}", out.display())))?;
        eprintln!("(proposal written to {})", out.display());
    }
    Ok(())
}

const CANNOT_EXECUTE: &str = "Cannot execute because there is an existing partition assignment.  \
Use --additional to override this and create a new partition assignment in addition to the \
existing one. The --additional flag can also be used to change the throttle by resubmitting the \
current reassignment.";

/// `execute`: prints the current assignment of the plan's partitions, then starts the moves.
pub fn execute(dir: &Path, plan: &Path, additional: bool) -> anyhow::Result<()> {
    let plan = read_plan(plan)?;
    let (md, mut c) = connect_with(dir, error_text)?;
    let ongoing = list_ongoing(&mut c)?;
    if !additional && !ongoing.is_empty() {
        anyhow::bail!("{CANNOT_EXECUTE}");
    }
    let live: BTreeSet<i32> = md.brokers.iter().map(|b| b.node_id.0).collect();
    let wanted: BTreeSet<i32> = plan.values().flatten().copied().collect();
    if let Some(b) = wanted.iter().find(|b| !live.contains(b)) {
        return Err(error(format!("Unknown broker id {b}")));
    }
    let all = current_assignment(&md);
    let missing: Vec<&Tp> = plan.keys().filter(|tp| !all.contains_key(*tp)).collect();
    if !missing.is_empty() {
        return Err(error(format!(
            "Unable to find partition: {}",
            join(missing, ", ")
        )));
    }
    let current: Assignment = plan
        .keys()
        .map(|tp| (tp.clone(), all[tp].clone()))
        .collect();
    println!(
        "Current partition replica assignment\n\n{}\n\nSave this to use as the --reassignment-json-file option during rollback",
        plan_json(&current)
    );
    let targets = plan
        .iter()
        .map(|(tp, r)| (tp.clone(), Some(r.clone())))
        .collect();
    let errors = alter(&mut c, &targets)?;
    if !errors.is_empty() {
        anyhow::bail!(
            "Error reassigning partition(s):\n{}",
            join(errors.iter().map(|(tp, e)| format!("{tp}: {e}")), "\n")
        );
    }
    println!(
        "Successfully started partition reassignment{} for {}",
        plural(plan.len()),
        join(plan.keys(), ",")
    );
    Ok(())
}

/// One partition's state, as `verify` reports it.
#[derive(Debug, PartialEq, Eq)]
pub enum PartitionState {
    InProgress,
    Completed,
    /// Not moving, but its replicas are not the plan's.
    Differs(Vec<i32>),
}

/// Kafka's `partitionReassignmentStatesToString` line for one partition.
pub fn state_line(tp: &Tp, target: &[i32], state: &PartitionState) -> String {
    match state {
        PartitionState::InProgress => {
            format!("Reassignment of partition {tp} is still in progress.")
        }
        PartitionState::Completed => format!("Reassignment of partition {tp} is completed."),
        PartitionState::Differs(current) => format!(
            "There is no active reassignment of partition {tp}, but replica set is {} rather than {}.",
            join(current, ","),
            join(target, ",")
        ),
    }
}

/// `verify`: each partition of the plan is in progress, completed, or neither. Fails (exit 1)
/// only when the cluster cannot be asked; the states are printed as Kafka prints them.
pub fn verify(dir: &Path, plan: &Path) -> anyhow::Result<()> {
    let plan = read_plan(plan)?;
    let (_, mut c) = connect_with(dir, error_text)?;
    let ongoing = list_ongoing(&mut c)?;
    // The controller's own Metadata: another broker may not have had the UpdateMetadata
    // that ends a reassignment yet, and would report the replicas of its middle phase.
    let all = current_assignment(&c.metadata(None).map_err(|e| no_answer("Metadata", e))?);
    println!("Status of partition reassignment:");
    for (tp, target) in &plan {
        let state = if ongoing.contains_key(tp) {
            PartitionState::InProgress
        } else {
            let current = all.get(tp).cloned().unwrap_or_default();
            if &current == target {
                PartitionState::Completed
            } else {
                PartitionState::Differs(current)
            }
        };
        println!("{}", state_line(tp, target, &state));
    }
    Ok(())
}

/// `cancel`: cancels the plan's partitions that are still moving.
pub fn cancel(dir: &Path, plan: &Path) -> anyhow::Result<()> {
    let plan = read_plan(plan)?;
    let (_, mut c) = connect_with(dir, error_text)?;
    let ongoing = list_ongoing(&mut c)?;
    let moving: BTreeMap<Tp, Option<Vec<i32>>> = plan
        .keys()
        .filter(|tp| ongoing.contains_key(*tp))
        .map(|tp| (tp.clone(), None))
        .collect();
    if moving.is_empty() {
        println!("None of the specified partition reassignments are active.");
        return Ok(());
    }
    let errors = alter(&mut c, &moving)?;
    if !errors.is_empty() {
        anyhow::bail!(
            "Error cancelling partition reassignment{} for:\n{}",
            plural(errors.len()),
            join(errors.iter().map(|(tp, e)| format!("{tp}: {e}")), "\n")
        );
    }
    println!(
        "Successfully cancelled partition reassignment{} for: {}",
        plural(moving.len()),
        join(moving.keys(), ",")
    );
    Ok(())
}

/// `list`: the reassignments in progress, as `--list` prints them.
pub fn list(dir: &Path) -> anyhow::Result<()> {
    let (_, mut c) = connect_with(dir, error_text)?;
    let ongoing = list_ongoing(&mut c)?;
    if ongoing.is_empty() {
        println!("No partition reassignments found.");
        return Ok(());
    }
    println!("Current partition reassignments:");
    for (tp, (replicas, adding, removing)) in &ongoing {
        let mut line = format!("{tp}: replicas: {}.", join(replicas, ","));
        if !adding.is_empty() {
            line.push_str(&format!(" adding: {}.", join(adding, ",")));
        }
        if !removing.is_empty() {
            line.push_str(&format!(" removing: {}.", join(removing, ",")));
        }
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> Tp {
        Tp {
            topic: t.into(),
            partition: p,
        }
    }

    #[test]
    fn plan_json_is_kafkas_format_and_parses_back() {
        let a = Assignment::from([(tp("b", 1), vec![3, 1]), (tp("a", 0), vec![1, 2])]);
        let j = plan_json(&a);
        assert_eq!(
            j,
            "{\"version\":1,\"partitions\":[{\"topic\":\"a\",\"partition\":0,\"replicas\":[1,2],\"log_dirs\":[\"any\",\"any\"]},{\"topic\":\"b\",\"partition\":1,\"replicas\":[3,1],\"log_dirs\":[\"any\",\"any\"]}]}"
        );
        assert_eq!(parse_plan(&j).unwrap(), a);
        // log_dirs may be left out, as Kafka allows.
        let short = r#"{"version":1,"partitions":[{"topic":"a","partition":0,"replicas":[2]}]}"#;
        assert_eq!(parse_plan(short).unwrap()[&tp("a", 0)], vec![2]);
    }

    #[test]
    fn bad_plans_get_kafkas_errors() {
        let err = |s: &str| parse_plan(s).unwrap_err().to_string();
        assert!(err("{").contains("not valid JSON"));
        assert_eq!(
            err(r#"{"version":1,"partitions":[]}"#),
            "Error: Partition reassignment list cannot be empty"
        );
        assert_eq!(
            err(r#"{"partitions":[{"topic":"a","partition":0,"replicas":[]}]}"#),
            "Error: Partition replica list cannot be empty"
        );
        assert_eq!(
            err(r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1,2,1]}]}"#),
            "Error: Partition replica lists may not contain duplicate entries: a-0 contains multiple entries for 1"
        );
        assert_eq!(
            err(
                r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1]},{"topic":"a","partition":0,"replicas":[2]}]}"#
            ),
            "Error: Partition reassignment contains duplicate topic partitions: a-0"
        );
        assert!(err(
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1,2],"log_dirs":["any"]}]}"#
        )
        .contains("Size of replicas list [1,2] is different from size of log dirs list"));
        assert!(err(r#"{"partitions":[{"topic":"a","replicas":[1]}]}"#)
            .contains("no \"partition\" field"));
    }

    #[test]
    fn round_robin_spreads_leaders_and_replicas() {
        let a = assign_round_robin(&[1, 2, 3], 6, 2, 0).unwrap();
        assert_eq!(
            a,
            vec![
                vec![1, 2],
                vec![2, 3],
                vec![3, 1],
                vec![1, 3],
                vec![2, 1],
                vec![3, 2]
            ]
        );
        // Every partition gets distinct replicas; leaders are spread evenly.
        let b = assign_round_robin(&[1, 2, 3, 4], 8, 3, 1).unwrap();
        let mut leaders = BTreeMap::new();
        for r in &b {
            assert_eq!(r.iter().collect::<BTreeSet<_>>().len(), 3, "{r:?}");
            *leaders.entry(r[0]).or_insert(0) += 1;
        }
        assert!(leaders.values().all(|n| *n == 2), "{leaders:?}");
        assert_eq!(
            assign_round_robin(&[1, 2], 1, 3, 0)
                .unwrap_err()
                .to_string(),
            "Error: Replication factor: 3 larger than available brokers: 2."
        );
    }

    #[test]
    fn verify_lines_read_as_kafkas() {
        let t = tp("demo", 0);
        assert_eq!(
            state_line(&t, &[1, 2], &PartitionState::InProgress),
            "Reassignment of partition demo-0 is still in progress."
        );
        assert_eq!(
            state_line(&t, &[1, 2], &PartitionState::Completed),
            "Reassignment of partition demo-0 is completed."
        );
        assert_eq!(
            state_line(&t, &[1, 2], &PartitionState::Differs(vec![2, 3])),
            "There is no active reassignment of partition demo-0, but replica set is 2,3 rather than 1,2."
        );
    }
}
