//! A snapshot of what the classic architecture keeps in ZooKeeper, plus what the kernel says
//! about each process: the input of `status` and `watch`.
//!
//! In ZooKeeper mode the cluster's truth is in ZooKeeper: `/controller` (who is controller),
//! `/controller_epoch` (how many controllers there have been), `/brokers/ids/<id>` (ephemeral:
//! who is alive for the cluster), `/brokers/topics/<t>` (the replica assignment, preferred
//! replica first) and `/brokers/topics/<t>/partitions/<p>/state` (leader, leader epoch and ISR,
//! written by the controller, or by the leader through AlterPartition).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use zk::client::KafkaZkClient;
use zk::data::TopicPartition;

use crate::tool::state::{proc_state, ClusterState, ProcState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub partition: i32,
    /// Assigned replicas; the first one is the preferred leader.
    pub replicas: Vec<i32>,
    /// -1 when the partition has no leader (offline), or no state znode yet.
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

impl PartitionView {
    pub fn preferred(&self) -> i32 {
        self.replicas.first().copied().unwrap_or(-1)
    }
    pub fn offline(&self, registered: &BTreeSet<i32>) -> bool {
        self.leader < 0 || !registered.contains(&self.leader)
    }
    pub fn under_replicated(&self) -> bool {
        self.isr.len() < self.replicas.len()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub controller: Option<i32>,
    pub epoch: Option<i32>,
    /// Broker ids with a `/brokers/ids/<id>` znode.
    pub registered: BTreeSet<i32>,
    pub topics: BTreeMap<String, Vec<PartitionView>>,
    /// Broker id -> process state, from `cluster.json` pids.
    pub processes: BTreeMap<i32, ProcState>,
}

/// Connects to the cluster's ZooKeeper (with its chroot).
pub async fn connect(state: &ClusterState) -> anyhow::Result<KafkaZkClient> {
    let c = tokio::time::timeout(
        Duration::from_secs(15),
        KafkaZkClient::connect(&state.zookeeper_connect, Duration::from_secs(10)),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "cannot reach ZooKeeper at {} within 15 s",
            state.zookeeper_connect
        )
    })??;
    Ok(c)
}

pub async fn read(zk: &KafkaZkClient, state: &ClusterState) -> anyhow::Result<Snapshot> {
    let controller = zk.get_controller_id().await?;
    let epoch = zk.get_controller_epoch().await?.map(|(e, _)| e);
    let registered = zk
        .get_children_maybe("/brokers/ids")
        .await?
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let mut topics = BTreeMap::new();
    let mut names = zk.get_all_topics().await?;
    names.sort();
    for topic in names {
        let Some(assignment) = zk.get_topic_assignment(&topic).await? else {
            continue;
        };
        let tps: Vec<TopicPartition> = assignment
            .partitions
            .keys()
            .map(|p| TopicPartition::new(topic.clone(), *p))
            .collect();
        let states = zk.get_partition_states(&tps).await?;
        let parts = assignment
            .partitions
            .iter()
            .map(|(p, replicas)| {
                let st = states.get(&TopicPartition::new(topic.clone(), *p));
                PartitionView {
                    partition: *p,
                    replicas: replicas.clone(),
                    leader: st.map_or(-1, |s| s.leader_and_isr.leader),
                    leader_epoch: st.map_or(-1, |s| s.leader_and_isr.leader_epoch),
                    isr: st.map_or(Vec::new(), |s| s.leader_and_isr.isr.clone()),
                }
            })
            .collect();
        topics.insert(topic, parts);
    }
    let processes = state
        .brokers
        .iter()
        .map(|b| (b.id, proc_state(b.pid)))
        .collect();
    Ok(Snapshot {
        controller,
        epoch,
        registered,
        topics,
        processes,
    })
}

pub fn ids(v: &[i32]) -> String {
    let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", s.join(","))
}
