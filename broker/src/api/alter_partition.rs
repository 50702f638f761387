//! AlterPartition, the controller's side: a leader proposes a new ISR for its partitions and
//! the controller accepts (writing the state znode) or refuses each.
//!
//! Kafka concept: since KIP-497 (Kafka 2.7) a leader does not write ISR changes to ZooKeeper
//! itself; it sends them here, to the active controller, which checks the broker epoch, the
//! leader epoch and the partition epoch of each change before writing it with a fenced
//! conditional write. The leader's side is `crate::isr::AlterPartitionManager`.
//! Kafka: `KafkaApis.handleAlterPartitionRequest`, `KafkaController.processAlterPartition`.
//!
//! Invariant: this file only translates; every check and write is the controller's (a broker
//! that is not the active controller answers what the controller handle says, NOT_CONTROLLER).

use controller::alter_partition::AlterPartitionItem;
use kafka_protocol::messages::alter_partition_response as resp;
use kafka_protocol::messages::{
    AlterPartitionRequest, AlterPartitionResponse, BrokerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use zk::data::TopicPartition;

use crate::api::context::KafkaApis;

/// The AlterPartition API (v0-1, topic names).
pub async fn handle(
    broker: &KafkaApis,
    req: AlterPartitionRequest,
    version: i16,
) -> AlterPartitionResponse {
    let mut items = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            items.push(AlterPartitionItem {
                tp: TopicPartition::new(t.topic_name.to_string(), p.partition_index),
                leader_epoch: p.leader_epoch,
                new_isr: p.new_isr.iter().map(|r| r.0).collect(),
                leader_recovery_state: p.leader_recovery_state,
                partition_epoch: p.partition_epoch,
            });
        }
    }
    let reply = broker
        .controller
        .alter_partition(req.broker_id.0, req.broker_epoch, version, items)
        .await;
    let results = match reply {
        Ok(r) => r,
        Err(code) => return AlterPartitionResponse::default().with_error_code(code),
    };
    let mut topics: Vec<resp::TopicData> = Vec::new();
    for (tp, r) in results {
        let mut pd = resp::PartitionData::default().with_partition_index(tp.partition);
        match r {
            Ok(l) => {
                pd.leader_id = BrokerId(l.leader);
                pd.leader_epoch = l.leader_epoch;
                pd.isr = l.isr.iter().map(|r| BrokerId(*r)).collect();
                pd.partition_epoch = l.partition_epoch;
                if version >= 1 {
                    pd.leader_recovery_state = l.leader_recovery_state;
                }
            }
            Err(code) => pd.error_code = code,
        }
        match topics
            .iter_mut()
            .find(|t| t.topic_name.0.as_str() == tp.topic.as_str())
        {
            Some(t) => t.partitions.push(pd),
            None => topics.push(
                resp::TopicData::default()
                    .with_topic_name(TopicName(StrBytes::from_string(tp.topic.clone())))
                    .with_partitions(vec![pd]),
            ),
        }
    }
    AlterPartitionResponse::default().with_topics(topics)
}
