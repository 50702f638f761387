//! Topic administration through ZooKeeper (Kafka's `AdminZkClient` and `AdminUtils`).
//!
//! Kafka concept: in ZooKeeper mode creating a topic only *writes* ZooKeeper: `/config/topics/<t>`
//! then `/brokers/topics/<t>` with the replica assignment and a fresh topic id. The controller sees
//! the new child of `/brokers/topics` and does the rest (partition state znodes, leaders,
//! LeaderAndIsr). Deleting a topic only creates `/admin/delete_topics/<t>`.
//!
//! Invariant: the assignment is Kafka's rack-unaware `assignReplicasToBrokers`, so the same
//! inputs (brokers, start index, shift) give the same replicas as Kafka.
//!
//! Simplifications: rack-aware assignment is not implemented (brokers with `broker.rack` are
//! assigned rack-unaware); topic config values are not validated here.

use std::collections::BTreeMap;

use rand::Rng;

use crate::error::{Error, Result};
use crate::zk::client::KafkaZkClient;
use crate::zk::data::{random_uuid_string, TopicAssignment};

/// Longest legal topic name (Kafka's `Topic.MAX_NAME_LENGTH`).
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// Kafka's topic name rules (legal characters `[a-zA-Z0-9._-]`, length <= 249, not "." or "..").
pub fn validate_topic_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidTopic(
            "topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(Error::InvalidTopic(
            "topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LENGTH {
        return Err(Error::InvalidTopic(format!(
            "topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LENGTH} characters, topic name: {name}"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(Error::InvalidTopic(format!(
            "topic name {name} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Two names collide if they are equal once '.' is replaced by '_' (metric names would clash).
pub fn has_collision_chars(name: &str) -> bool {
    name.contains('.') || name.contains('_')
}

fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

/// Rack-unaware assignment (AdminUtils.assignReplicasToBrokers), `broker_ids` any order, with a
/// random start index and shift as Kafka picks them.
pub fn assign_replicas_to_brokers(
    broker_ids: &[i32],
    num_partitions: i32,
    replication_factor: i32,
) -> Result<BTreeMap<i32, Vec<i32>>> {
    let n = broker_ids.len().max(1);
    let mut rng = rand::thread_rng();
    let start = rng.gen_range(0..n);
    let shift = rng.gen_range(0..n);
    assign_replicas_with(
        broker_ids,
        num_partitions,
        replication_factor,
        start,
        shift,
        0,
    )
}

/// The deterministic core of Kafka's rack-unaware assignment (reference §2.9):
///
/// ```text
/// for each partition p (counting from start_partition_id):
///     if p > 0 and p % n == 0: shift += 1
///     first = (p + start_index) % n
///     replicas = [B[first]] + [B[(first + 1 + (shift + j) % (n - 1)) % n] for j in 0..RF-1]
/// ```
pub fn assign_replicas_with(
    broker_ids: &[i32],
    num_partitions: i32,
    replication_factor: i32,
    start_index: usize,
    mut shift: usize,
    start_partition_id: i32,
) -> Result<BTreeMap<i32, Vec<i32>>> {
    if num_partitions <= 0 {
        return Err(Error::InvalidPartitions(
            "Number of partitions must be larger than 0.".into(),
        ));
    }
    if replication_factor <= 0 {
        return Err(Error::InvalidReplicationFactor {
            replication_factor,
            live_brokers: broker_ids.len(),
        });
    }
    if replication_factor as usize > broker_ids.len() {
        return Err(Error::InvalidReplicationFactor {
            replication_factor,
            live_brokers: broker_ids.len(),
        });
    }
    let mut brokers = broker_ids.to_vec();
    brokers.sort_unstable();
    let n = brokers.len();
    let mut out = BTreeMap::new();
    let first_partition = start_partition_id.max(0) as usize;
    for current in first_partition..first_partition + num_partitions as usize {
        if current > 0 && current.is_multiple_of(n) {
            shift += 1;
        }
        let first = (current + start_index) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..(replication_factor as usize - 1) {
            // n > 1 here: replication_factor > 1 implies at least two brokers.
            let idx = (first + 1 + (shift + j) % (n - 1)) % n;
            replicas.push(brokers[idx]);
        }
        out.insert(current as i32, replicas);
    }
    Ok(out)
}

/// Writes topics, partitions and deletion markers as Kafka's admin path does.
pub struct AdminZkClient {
    zk: KafkaZkClient,
}

impl AdminZkClient {
    pub fn new(zk: KafkaZkClient) -> Self {
        AdminZkClient { zk }
    }

    /// Writes `/config/topics/<t>` then creates `/brokers/topics/<t>` with a fresh topic id
    /// (returned, base64url). `TopicExists` if it is there already.
    pub async fn create_topic(
        &self,
        topic: &str,
        assignment: &BTreeMap<i32, Vec<i32>>,
        config: &BTreeMap<String, String>,
    ) -> Result<String> {
        validate_topic_name(topic)?;
        let existing = self.zk.get_all_topics().await?;
        if existing.iter().any(|t| t == topic) {
            return Err(Error::TopicExists(topic.to_string()));
        }
        if self
            .zk
            .get_topic_deletions()
            .await?
            .iter()
            .any(|t| t == topic)
        {
            return Err(Error::TopicExists(format!(
                "{topic} is marked for deletion"
            )));
        }
        if has_collision_chars(topic) {
            let unified = unify_collision_chars(topic);
            if let Some(other) = existing
                .iter()
                .find(|t| unify_collision_chars(t) == unified)
            {
                return Err(Error::InvalidTopic(format!(
                    "topic '{topic}' collides with existing topic: {other}"
                )));
            }
        }
        validate_assignment(assignment)?;
        self.zk.set_or_create_topic_config(topic, config).await?;
        let topic_id = random_uuid_string();
        self.zk
            .create_topic_assignment(
                topic,
                &TopicAssignment {
                    partitions: assignment.clone(),
                    topic_id: Some(topic_id.clone()),
                    ..Default::default()
                },
            )
            .await?;
        tracing::info!(
            topic,
            topic_id,
            partitions = assignment.len(),
            "created topic znode"
        );
        Ok(topic_id)
    }

    /// Adds partitions up to `total` (assignment computed as Kafka does unless given).
    pub async fn create_partitions(
        &self,
        topic: &str,
        total: i32,
        assignment: Option<Vec<Vec<i32>>>,
    ) -> Result<()> {
        let current = self
            .zk
            .get_topic_assignment(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        if self
            .zk
            .get_topic_deletions()
            .await?
            .iter()
            .any(|t| t == topic)
        {
            return Err(Error::UnknownTopic(format!("{topic} is being deleted")));
        }
        let existing = current.partitions.len() as i32;
        if total <= existing {
            return Err(Error::InvalidPartitions(format!(
                "Topic currently has {existing} partitions, which is higher than the requested {total}."
            )));
        }
        let to_add = total - existing;
        let rf = current
            .partitions
            .get(&0)
            .map(|r| r.len() as i32)
            .ok_or_else(|| Error::InvalidPartitions(format!("topic {topic} has no partition 0")))?;
        let brokers: Vec<i32> = self
            .zk
            .get_all_brokers()
            .await?
            .iter()
            .map(|b| b.id())
            .collect();
        let added: BTreeMap<i32, Vec<i32>> = match assignment {
            Some(given) => {
                if given.len() as i32 != to_add {
                    return Err(Error::InvalidReplicaAssignment(format!(
                        "Increasing the number of partitions by {to_add} but {} assignments provided.",
                        given.len()
                    )));
                }
                for r in &given {
                    if r.len() as i32 != rf {
                        return Err(Error::InvalidReplicaAssignment(format!(
                            "Inconsistent replication factor between partitions, partition 0 has {rf} while another has {}.",
                            r.len()
                        )));
                    }
                    if let Some(b) = r.iter().find(|b| !brokers.contains(b)) {
                        return Err(Error::InvalidReplicaAssignment(format!(
                            "Unknown broker(s) in replica assignment: {b}."
                        )));
                    }
                }
                given
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (existing + i as i32, r))
                    .collect()
            }
            None => {
                let mut sorted = brokers.clone();
                sorted.sort_unstable();
                // Kafka: startIndex = index of the first broker whose id >= partition 0's head.
                let head = current.partitions[&0][0];
                let start = sorted.iter().position(|b| *b >= head).unwrap_or(0);
                assign_replicas_with(&sorted, to_add, rf, start, start, existing)?
            }
        };
        let mut updated = current.clone();
        updated.partitions.extend(added.clone());
        validate_assignment(&updated.partitions)?;
        self.zk.set_topic_assignment(topic, &updated, None).await?;
        tracing::info!(topic, total, "added partitions");
        Ok(())
    }

    /// Creates `/admin/delete_topics/<t>`.
    pub async fn delete_topic(&self, topic: &str) -> Result<()> {
        if !self.topic_exists(topic).await? {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        Ok(self.zk.create_delete_topic_marker(topic).await?)
    }

    pub async fn topic_exists(&self, topic: &str) -> Result<bool> {
        Ok(self.zk.get_topic_assignment(topic).await?.is_some())
    }

    /// `/config/topics/<t>` contents.
    pub async fn fetch_topic_config(&self, topic: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.zk.get_topic_config(topic).await?)
    }
}

/// Kafka's assignment checks: partitions 0..n-1, equal replication factor, no duplicate replicas.
fn validate_assignment(assignment: &BTreeMap<i32, Vec<i32>>) -> Result<()> {
    if assignment.is_empty() {
        return Err(Error::InvalidReplicaAssignment("no partitions".into()));
    }
    for (i, p) in assignment.keys().enumerate() {
        if *p != i as i32 {
            return Err(Error::InvalidReplicaAssignment(
                "partitions should be a consecutive 0-based integer sequence".into(),
            ));
        }
    }
    let rf = assignment[&0].len();
    for (p, r) in assignment {
        if r.is_empty() {
            return Err(Error::InvalidReplicaAssignment(format!(
                "partition {p} has no replicas"
            )));
        }
        if r.len() != rf {
            return Err(Error::InvalidReplicaAssignment(
                "All partitions should have the same number of replicas".into(),
            ));
        }
        let mut s = r.clone();
        s.sort_unstable();
        s.dedup();
        if s.len() != r.len() {
            return Err(Error::InvalidReplicaAssignment(format!(
                "Duplicate replica assignment found: {r:?}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders-1.v2_x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name(".").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }

    /// Kafka: AdminUtils.assignReplicasToBrokers, rack-unaware, fixed startIndex/shift.
    /// Same numbers as Kafka's `AdminRackAwareTest.testReplicaAssignment`-style example:
    /// 5 brokers, 10 partitions, RF 3, startIndex 0, shift 0.
    #[test]
    fn rack_unaware_assignment_matches_kafka() {
        let a = assign_replicas_with(&[4, 2, 0, 3, 1], 10, 3, 0, 0, 0).unwrap();
        let expected: BTreeMap<i32, Vec<i32>> = [
            (0, vec![0, 1, 2]),
            (1, vec![1, 2, 3]),
            (2, vec![2, 3, 4]),
            (3, vec![3, 4, 0]),
            (4, vec![4, 0, 1]),
            (5, vec![0, 2, 3]),
            (6, vec![1, 3, 4]),
            (7, vec![2, 4, 0]),
            (8, vec![3, 0, 1]),
            (9, vec![4, 1, 2]),
        ]
        .into_iter()
        .collect();
        assert_eq!(a, expected);
    }

    #[test]
    fn assignment_rejects_replication_factor_above_broker_count() {
        assert!(matches!(
            assign_replicas_with(&[1, 2], 1, 3, 0, 0, 0),
            Err(Error::InvalidReplicationFactor { .. })
        ));
        assert!(assign_replicas_to_brokers(&[1, 2, 3], 6, 1).unwrap().len() == 6);
    }

    #[test]
    fn added_partitions_continue_from_start_partition_id() {
        // Partitions 3.. of a topic on brokers 1,2,3 with start index 0 and shift 0.
        let a = assign_replicas_with(&[1, 2, 3], 2, 2, 0, 0, 3).unwrap();
        // p=3: 3 % 3 == 0 -> shift 1; first = 0 -> [1, B[(0+1+1)%3]=3]
        assert_eq!(a[&3], vec![1, 3]);
        assert_eq!(a[&4], vec![2, 1]);
    }

    #[tokio::test]
    async fn create_topic_writes_config_then_topic_with_id() {
        use crate::zk::backend::MemoryZk;
        use std::sync::Arc;
        let zk = KafkaZkClient::from_backend(Arc::new(MemoryZk::new()));
        zk.ensure_persistent_paths().await.unwrap();
        let admin = AdminZkClient::new(zk.clone());
        let assignment: BTreeMap<i32, Vec<i32>> = [(0, vec![1])].into_iter().collect();
        let id = admin
            .create_topic("t.x", &assignment, &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(id.len(), 22);
        let a = zk.get_topic_assignment("t.x").await.unwrap().unwrap();
        assert_eq!(a.topic_id.as_deref(), Some(id.as_str()));
        let (cfg, _) = zk
            .get_data_maybe("/config/topics/t.x")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cfg, br#"{"version":1,"config":{}}"#);
        assert!(matches!(
            admin
                .create_topic("t.x", &assignment, &BTreeMap::new())
                .await,
            Err(Error::TopicExists(_))
        ));
        assert!(matches!(
            admin
                .create_topic("t_x", &assignment, &BTreeMap::new())
                .await,
            Err(Error::InvalidTopic(_))
        ));
        assert!(matches!(
            admin.delete_topic("nope").await,
            Err(Error::UnknownTopic(_))
        ));
    }
}
