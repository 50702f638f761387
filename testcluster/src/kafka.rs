//! A small blocking Kafka client for tests and tools: ApiVersions, Metadata, CreateTopics,
//! DeleteTopics, raw frames. kafka-protocol encodes and decodes; this file only frames.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

pub struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    pub fn connect(addr: &str) -> anyhow::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr.parse()?, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            correlation_id: 0,
        })
    }

    /// How long a response may take (30 s unless changed).
    pub fn set_read_timeout(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    pub fn send<Req, Resp>(&mut self, key: ApiKey, version: i16, req: &Req) -> anyhow::Result<Resp>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("testcluster")));
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        header.encode(&mut buf, Req::header_version(version))?;
        req.encode(&mut buf, version)?;
        let len = (buf.len() - 4) as i32;
        buf[..4].copy_from_slice(&len.to_be_bytes());
        self.stream.write_all(&buf)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let h = ResponseHeader::decode(&mut body, Resp::header_version(version))?;
        anyhow::ensure!(
            h.correlation_id == self.correlation_id,
            "correlation id mismatch"
        );
        let r = Resp::decode(&mut body, version)?;
        anyhow::ensure!(!body.has_remaining(), "trailing bytes in the response");
        Ok(r)
    }

    pub fn api_versions(&mut self) -> anyhow::Result<ApiVersionsResponse> {
        self.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
    }

    /// Metadata v12 for `topics` (None = all topics), without auto-creation.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let req = MetadataRequest::default()
            .with_topics(topics.map(|t| {
                t.iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n.to_string()))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        self.send(ApiKey::Metadata, 12, &req)
    }

    /// CreateTopics v5 (send it to the controller).
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> anyhow::Result<CreateTopicsResponse> {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(partitions)
                .with_replication_factor(replication_factor)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]);
        self.send(ApiKey::CreateTopics, 5, &req)
    }

    /// CreateTopics v5 with an explicit replica assignment (`replicas[p]` for partition `p`);
    /// returns the topic's error code.
    pub fn create_topic_assigned(
        &mut self,
        name: &str,
        replicas: &[Vec<i32>],
    ) -> anyhow::Result<i16> {
        use kafka_protocol::messages::create_topics_request::CreatableReplicaAssignment;
        use kafka_protocol::messages::BrokerId;
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.to_string())))
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_assignments(
                    replicas
                        .iter()
                        .enumerate()
                        .map(|(p, r)| {
                            CreatableReplicaAssignment::default()
                                .with_partition_index(p as i32)
                                .with_broker_ids(r.iter().map(|b| BrokerId(*b)).collect())
                        })
                        .collect(),
                )]);
        let r: CreateTopicsResponse = self.send(ApiKey::CreateTopics, 5, &req)?;
        Ok(r.topics.first().map_or(-1, |t| t.error_code))
    }

    /// DeleteTopics v4 (send it to the controller); returns the topic's error code.
    pub fn delete_topic(&mut self, name: &str, timeout_ms: i32) -> anyhow::Result<i16> {
        let req = kafka_protocol::messages::DeleteTopicsRequest::default()
            .with_timeout_ms(timeout_ms)
            .with_topic_names(vec![TopicName(StrBytes::from_string(name.to_string()))]);
        let r: kafka_protocol::messages::DeleteTopicsResponse =
            self.send(ApiKey::DeleteTopics, 4, &req)?;
        Ok(r.responses.first().map_or(-1, |t| t.error_code))
    }

    /// ElectLeaders v2 (0 = preferred, 1 = unclean) for `partitions` of `topic`; returns the
    /// (partition, error code) results.
    pub fn elect_leaders(
        &mut self,
        election_type: i8,
        topic: &str,
        partitions: &[i32],
    ) -> anyhow::Result<Vec<(i32, i16)>> {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        let req = kafka_protocol::messages::ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(30_000)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(partitions.to_vec())]));
        let r: kafka_protocol::messages::ElectLeadersResponse =
            self.send(ApiKey::ElectLeaders, 2, &req)?;
        anyhow::ensure!(r.error_code == 0, "ElectLeaders error {}", r.error_code);
        Ok(r.replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result
                    .iter()
                    .map(|p| (p.partition_id, p.error_code))
            })
            .collect())
    }

    /// AlterPartitionReassignments v0: `targets` = (partition, Some(replicas) or None to cancel);
    /// returns (partition, error code).
    pub fn alter_reassignments(
        &mut self,
        topic: &str,
        targets: &[(i32, Option<Vec<i32>>)],
    ) -> anyhow::Result<Vec<(i32, i16)>> {
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            ReassignablePartition, ReassignableTopic,
        };
        use kafka_protocol::messages::BrokerId;
        let req = kafka_protocol::messages::AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(
                    targets
                        .iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(
                                    r.as_ref().map(|v| v.iter().map(|b| BrokerId(*b)).collect()),
                                )
                        })
                        .collect(),
                )]);
        let r: kafka_protocol::messages::AlterPartitionReassignmentsResponse =
            self.send(ApiKey::AlterPartitionReassignments, 0, &req)?;
        anyhow::ensure!(
            r.error_code == 0,
            "AlterPartitionReassignments error {}",
            r.error_code
        );
        Ok(r.responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.error_code))
            })
            .collect())
    }

    /// ListPartitionReassignments v0 for all topics: (topic, partition) in progress.
    pub fn list_reassignments(&mut self) -> anyhow::Result<Vec<(String, i32)>> {
        let req = kafka_protocol::messages::ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(None);
        let r: kafka_protocol::messages::ListPartitionReassignmentsResponse =
            self.send(ApiKey::ListPartitionReassignments, 0, &req)?;
        Ok(r.topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.to_string(), p.partition_index))
            })
            .collect())
    }

    /// Writes raw bytes (for malformed-input tests).
    pub fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one size-prefixed frame (without the size).
    pub fn read_frame(&mut self) -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        Ok(body)
    }

    /// True if the broker closed the connection (EOF) within the read timeout.
    pub fn closed_by_peer(&mut self, timeout: Duration) -> bool {
        let _ = self.stream.set_read_timeout(Some(timeout));
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b), Ok(0))
            || matches!(self.stream.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

/// (leader per partition) of `topic` in a Metadata answer, if every partition has one.
pub fn leaders(md: &MetadataResponse, topic: &str) -> Option<Vec<i32>> {
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))?;
    if t.error_code != 0 || t.partitions.is_empty() {
        return None;
    }
    let mut ps: Vec<_> = t.partitions.iter().collect();
    ps.sort_by_key(|p| p.partition_index);
    ps.iter()
        .map(|p| (p.error_code == 0 && p.leader_id.0 >= 0).then_some(p.leader_id.0))
        .collect()
}
