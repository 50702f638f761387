//! Requests from the controller to brokers: the per-broker channels and the request batch
//! (Kafka's `ControllerChannelManager`, `RequestSendThread` and `ControllerBrokerRequestBatch`).
//!
//! Kafka concept: the controller tells brokers what to do with three requests: LeaderAndIsr
//! (become leader or follower of these partitions), UpdateMetadata (here is the cluster: live
//! brokers and partition states, for the metadata cache) and StopReplica (stop, and maybe delete,
//! these replicas). A state-machine call collects them in a [`RequestBatch`] per broker, then
//! [`RequestBatch::send`] hands them to one queue per broker. Each queue has its own task that
//! sends one request at a time and retries every 100 ms until the broker answers or is removed.
//! Responses come back to the event loop as events.
//!
//! Invariant: the event loop never waits on a broker. One slow or dead broker only fills its own
//! queue. Within a batch, LeaderAndIsr goes before UpdateMetadata before StopReplica, and
//! requests are only queued for registered brokers.
//!
//! Simplifications: versions are fixed at IBP 3.6 (LeaderAndIsr v7, UpdateMetadata v8,
//! StopReplica v4); no ApiVersions handshake (Kafka's NetworkClient does one, our brokers accept
//! these versions); no TLS/SASL on the control connection.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::leader_and_isr_request::{
    LeaderAndIsrLiveLeader, LeaderAndIsrPartitionState, LeaderAndIsrTopicState,
};
use kafka_protocol::messages::stop_replica_request::{
    StopReplicaPartitionState, StopReplicaTopicState,
};
use kafka_protocol::messages::update_metadata_request::{
    UpdateMetadataBroker, UpdateMetadataEndpoint, UpdateMetadataPartitionState,
    UpdateMetadataTopicState,
};
use kafka_protocol::messages::{
    BrokerId, LeaderAndIsrRequest, LeaderAndIsrResponse, RequestHeader, ResponseHeader,
    StopReplicaRequest, StopReplicaResponse, TopicName, UpdateMetadataRequest,
    UpdateMetadataResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::context::{ControllerContext, ReplicaAssignment};
use crate::error::{Error, Result};
use crate::event::{ControllerEvent, EventSender};
use crate::zk::data::{BrokerInfo, LeaderAndIsr, LeaderIsrAndControllerEpoch, TopicPartition};

/// LeaderAndIsr: api key 4, version 7 at IBP 3.4+.
pub const LEADER_AND_ISR_KEY: i16 = 4;
pub const LEADER_AND_ISR_VERSION: i16 = 7;
/// StopReplica: api key 5, version 4 at IBP 3.4+.
pub const STOP_REPLICA_KEY: i16 = 5;
pub const STOP_REPLICA_VERSION: i16 = 4;
/// UpdateMetadata: api key 6, version 8 at IBP 3.4+.
pub const UPDATE_METADATA_KEY: i16 = 6;
pub const UPDATE_METADATA_VERSION: i16 = 8;

/// Back-off between attempts to deliver a request to a broker (Kafka's RequestSendThread).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// One request to one broker.
#[derive(Debug, Clone)]
pub enum ControlRequest {
    LeaderAndIsr(LeaderAndIsrRequest),
    UpdateMetadata(UpdateMetadataRequest),
    StopReplica(StopReplicaRequest),
}

impl ControlRequest {
    pub fn api_name(&self) -> &'static str {
        match self {
            ControlRequest::LeaderAndIsr(_) => "LeaderAndIsr",
            ControlRequest::UpdateMetadata(_) => "UpdateMetadata",
            ControlRequest::StopReplica(_) => "StopReplica",
        }
    }
}

/// Where the batch delivers requests: the real channel manager, or a recorder in tests.
pub trait ControllerChannel: Send {
    /// Starts a queue and sender task for a broker (replacing an existing one).
    fn add_broker(&mut self, broker: &BrokerInfo);
    /// Stops the broker's sender task and drops its queue.
    fn remove_broker(&mut self, broker_id: i32);
    /// Queues a request for a broker; dropped if the broker has no queue.
    fn send(&mut self, broker_id: i32, request: ControlRequest);
    /// Stops every sender task.
    fn shutdown(&mut self);
}

/// A LeaderAndIsr entry for one partition on one broker.
#[derive(Debug, Clone)]
struct LeaderAndIsrEntry {
    state: LeaderIsrAndControllerEpoch,
    assignment: ReplicaAssignment,
    is_new: bool,
}

/// A StopReplica entry for one partition on one broker.
#[derive(Debug, Clone, Copy)]
struct StopReplicaEntry {
    delete: bool,
    leader_epoch: i32,
}

/// Collects requests between `new_batch` and `send` (Kafka's `ControllerBrokerRequestBatch`).
#[derive(Debug, Default)]
pub struct RequestBatch {
    leader_and_isr: BTreeMap<i32, BTreeMap<TopicPartition, LeaderAndIsrEntry>>,
    stop_replica: BTreeMap<i32, BTreeMap<TopicPartition, StopReplicaEntry>>,
    update_metadata_brokers: BTreeSet<i32>,
    /// Partitions whose state goes into the UpdateMetadata requests; the state itself is read
    /// from the context when the batch is sent (Kafka's `updateMetadataRequestPartitionInfo`),
    /// so a partition named by each of its replicas' transitions is built once.
    update_metadata_partitions: BTreeSet<TopicPartition>,
}

impl RequestBatch {
    pub fn is_empty(&self) -> bool {
        self.leader_and_isr.is_empty()
            && self.stop_replica.is_empty()
            && self.update_metadata_brokers.is_empty()
    }

    /// Opens a batch. A batch left unsent is a bug: Kafka throws IllegalStateException and the
    /// controller resigns; we return [`Error::IllegalState`] and the caller does the same.
    pub fn new_batch(&mut self) -> Result<()> {
        if !self.is_empty() {
            let err = format!(
                "controller to broker state change requests batch is not empty while creating a new one: {} LeaderAndIsr, {} StopReplica, {} UpdateMetadata",
                self.leader_and_isr.len(),
                self.stop_replica.len(),
                self.update_metadata_brokers.len()
            );
            debug_assert!(false, "{err}");
            *self = RequestBatch::default();
            return Err(Error::IllegalState(err));
        }
        Ok(())
    }

    /// Drops whatever was collected (after a failed state change).
    pub fn clear(&mut self) {
        *self = RequestBatch::default();
    }

    /// LeaderAndIsr for `tp` to each of `broker_ids`, plus UpdateMetadata for `tp` to every
    /// registered broker. `is_new` is sticky within the batch.
    pub fn add_leader_and_isr(
        &mut self,
        ctx: &ControllerContext,
        broker_ids: &[i32],
        tp: &TopicPartition,
        state: &LeaderIsrAndControllerEpoch,
        assignment: &ReplicaAssignment,
        is_new: bool,
    ) {
        for b in broker_ids.iter().filter(|b| **b >= 0) {
            let entry = self
                .leader_and_isr
                .entry(*b)
                .or_default()
                .entry(tp.clone())
                .or_insert_with(|| LeaderAndIsrEntry {
                    state: state.clone(),
                    assignment: assignment.clone(),
                    is_new,
                });
            entry.is_new |= is_new;
            entry.state = state.clone();
            entry.assignment = assignment.clone();
        }
        self.update_metadata_brokers
            .extend(ctx.live_brokers.keys().copied());
        if !self.update_metadata_partitions.contains(tp) {
            self.update_metadata_partitions.insert(tp.clone());
        }
    }

    /// StopReplica for `tp` to each of `broker_ids`; `delete` is sticky within the batch.
    pub fn add_stop_replica(
        &mut self,
        ctx: &ControllerContext,
        broker_ids: &[i32],
        tp: &TopicPartition,
        delete: bool,
    ) {
        let leader_epoch = if ctx.is_topic_queued_for_deletion(&tp.topic) {
            LeaderAndIsr::EPOCH_DURING_DELETE
        } else {
            ctx.leadership
                .get(tp)
                .map(|l| l.leader_and_isr.leader_epoch)
                .unwrap_or(-1)
        };
        for b in broker_ids.iter().filter(|b| **b >= 0) {
            let entry = self
                .stop_replica
                .entry(*b)
                .or_default()
                .entry(tp.clone())
                .or_insert(StopReplicaEntry {
                    delete,
                    leader_epoch,
                });
            entry.delete |= delete;
        }
    }

    /// UpdateMetadata to `broker_ids` carrying the current state of `partitions` (which may be
    /// empty: then only the live-broker list is sent). Partitions of a topic being deleted carry
    /// leader -2 so brokers drop them.
    pub fn add_update_metadata(&mut self, broker_ids: &[i32], partitions: &[TopicPartition]) {
        self.update_metadata_brokers
            .extend(broker_ids.iter().filter(|b| **b >= 0));
        self.update_metadata_partitions
            .extend(partitions.iter().cloned());
    }

    /// One partition's UpdateMetadata state, from the context as it is now.
    fn update_metadata_state(
        ctx: &ControllerContext,
        tp: &TopicPartition,
        name: &TopicName,
    ) -> Option<UpdateMetadataPartitionState> {
        let l = ctx.leadership.get(tp)?;
        let replicas = ctx.replicas(tp);
        let offline: Vec<BrokerId> = replicas
            .iter()
            .filter(|r| !ctx.is_replica_online(**r))
            .map(|r| BrokerId(*r))
            .collect();
        let leader = if ctx.is_topic_queued_for_deletion(&tp.topic) {
            LeaderAndIsr::LEADER_DURING_DELETE
        } else {
            l.leader_and_isr.leader
        };
        Some(
            UpdateMetadataPartitionState::default()
                .with_topic_name(name.clone())
                .with_partition_index(tp.partition)
                .with_controller_epoch(l.controller_epoch)
                .with_leader(BrokerId(leader))
                .with_leader_epoch(l.leader_and_isr.leader_epoch)
                .with_isr(l.leader_and_isr.isr.iter().map(|b| BrokerId(*b)).collect())
                .with_zk_version(l.leader_and_isr.partition_epoch)
                .with_replicas(replicas.iter().map(|b| BrokerId(*b)).collect())
                .with_offline_replicas(offline),
        )
    }

    /// Builds the requests and queues them per broker, in Kafka's order: LeaderAndIsr, then
    /// UpdateMetadata, then StopReplica. Only registered brokers get anything.
    pub fn send(
        &mut self,
        ctx: &ControllerContext,
        controller_id: i32,
        listener_name: &str,
        channel: &mut dyn ControllerChannel,
    ) {
        let batch = std::mem::take(self);
        let registered = ctx.live_or_shutting_down_broker_ids();
        let broker_epoch = |b: i32| {
            ctx.live_brokers
                .get(&b)
                .map(|i| i.broker_epoch)
                .unwrap_or(-1)
        };

        // Brokers in controlled shutdown get theirs last: the brokers that stay are the ones
        // clients are about to be sent to, and each request takes a while to build and apply
        // at 10,000 partitions. (Kafka's order is its hash map's.)
        let mut leader_and_isr: Vec<_> = batch.leader_and_isr.into_iter().collect();
        leader_and_isr.sort_by_key(|(b, _)| ctx.shutting_down_broker_ids.contains(b));
        for (broker, entries) in leader_and_isr {
            if !registered.contains(&broker) {
                continue;
            }
            let mut topics: Vec<(TopicName, Vec<LeaderAndIsrPartitionState>)> = Vec::new();
            let mut leaders = BTreeSet::new();
            for (tp, e) in &entries {
                let l = &e.state.leader_and_isr;
                if l.leader >= 0 {
                    leaders.insert(l.leader);
                }
                let (name, states) = topic_group(&mut topics, &tp.topic);
                let ps = LeaderAndIsrPartitionState::default()
                    .with_topic_name(name.clone())
                    .with_partition_index(tp.partition)
                    .with_controller_epoch(e.state.controller_epoch)
                    .with_leader(BrokerId(l.leader))
                    .with_leader_epoch(l.leader_epoch)
                    .with_isr(l.isr.iter().map(|b| BrokerId(*b)).collect())
                    .with_partition_epoch(l.partition_epoch)
                    .with_replicas(e.assignment.replicas.iter().map(|b| BrokerId(*b)).collect())
                    .with_adding_replicas(
                        e.assignment
                            .adding_replicas
                            .iter()
                            .map(|b| BrokerId(*b))
                            .collect(),
                    )
                    .with_removing_replicas(
                        e.assignment
                            .removing_replicas
                            .iter()
                            .map(|b| BrokerId(*b))
                            .collect(),
                    )
                    .with_is_new(e.is_new)
                    .with_leader_recovery_state(l.leader_recovery_state);
                states.push(ps);
            }
            // LiveLeaders: the nodes of the leaders named in this request, on the inter-broker
            // listener.
            let live_leaders: Vec<LeaderAndIsrLiveLeader> = leaders
                .iter()
                .filter_map(|id| ctx.live_brokers.get(id))
                .filter_map(|b| {
                    b.endpoint(listener_name).map(|e| {
                        LeaderAndIsrLiveLeader::default()
                            .with_broker_id(BrokerId(b.id()))
                            .with_host_name(StrBytes::from_string(e.host.clone()))
                            .with_port(e.port as i32)
                    })
                })
                .collect();
            let request = LeaderAndIsrRequest::default()
                .with_controller_id(BrokerId(controller_id))
                .with_is_k_raft_controller(false)
                .with_controller_epoch(ctx.epoch)
                .with_broker_epoch(broker_epoch(broker))
                .with_type(0)
                .with_topic_states(
                    topics
                        .into_iter()
                        .map(|(name, ps)| {
                            LeaderAndIsrTopicState::default()
                                .with_topic_id(ctx.topic_id(name.0.as_str()))
                                .with_topic_name(name)
                                .with_partition_states(ps)
                        })
                        .collect(),
                )
                .with_live_leaders(live_leaders);
            for (tp, e) in &entries {
                let l = &e.state.leader_and_isr;
                debug!(
                    target_broker_id = broker,
                    controller_epoch = ctx.epoch,
                    topic = %tp.topic,
                    partition = tp.partition,
                    leader = l.leader,
                    isr = ?l.isr,
                    leader_epoch = l.leader_epoch,
                    is_new = e.is_new,
                    "LeaderAndIsr partition state"
                );
            }
            info!(
                target_broker_id = broker,
                controller_epoch = ctx.epoch,
                partitions = entries.len(),
                "sent LeaderAndIsr"
            );
            channel.send(broker, ControlRequest::LeaderAndIsr(request));
        }

        if !batch.update_metadata_brokers.is_empty() {
            let live_brokers: Vec<UpdateMetadataBroker> = ctx
                .live_brokers
                .values()
                .map(|b| {
                    UpdateMetadataBroker::default()
                        .with_id(BrokerId(b.id()))
                        .with_endpoints(
                            b.registration
                                .endpoints
                                .iter()
                                .map(|e| {
                                    UpdateMetadataEndpoint::default()
                                        .with_port(e.port as i32)
                                        .with_host(StrBytes::from_string(e.host.clone()))
                                        .with_listener(StrBytes::from_string(
                                            e.listener_name.clone(),
                                        ))
                                        .with_security_protocol(e.security_protocol_id())
                                })
                                .collect(),
                        )
                        .with_rack(b.registration.rack.clone().map(StrBytes::from_string))
                })
                .collect();
            let mut topics: Vec<(TopicName, Vec<UpdateMetadataPartitionState>)> = Vec::new();
            for tp in &batch.update_metadata_partitions {
                let (name, states) = topic_group(&mut topics, &tp.topic);
                if let Some(s) = Self::update_metadata_state(ctx, tp, name) {
                    states.push(s);
                }
            }
            let topic_states: Vec<UpdateMetadataTopicState> = topics
                .into_iter()
                .filter(|(_, ps)| !ps.is_empty())
                .map(|(name, ps)| {
                    UpdateMetadataTopicState::default()
                        .with_topic_id(ctx.topic_id(name.0.as_str()))
                        .with_topic_name(name)
                        .with_partition_states(ps)
                })
                .collect();
            let mut brokers: Vec<i32> = batch.update_metadata_brokers.iter().copied().collect();
            brokers.sort_by_key(|b| ctx.shutting_down_broker_ids.contains(b));
            for broker in &brokers {
                if !registered.contains(broker) {
                    continue;
                }
                let request = UpdateMetadataRequest::default()
                    .with_controller_id(BrokerId(controller_id))
                    .with_is_k_raft_controller(false)
                    .with_type(0)
                    .with_controller_epoch(ctx.epoch)
                    .with_broker_epoch(broker_epoch(*broker))
                    .with_topic_states(topic_states.clone())
                    .with_live_brokers(live_brokers.clone());
                info!(
                    target_broker_id = broker,
                    controller_epoch = ctx.epoch,
                    partitions = batch.update_metadata_partitions.len(),
                    "sent UpdateMetadata"
                );
                channel.send(*broker, ControlRequest::UpdateMetadata(request));
            }
        }

        for (broker, entries) in batch.stop_replica {
            if !registered.contains(&broker) {
                continue;
            }
            let mut topics: BTreeMap<String, Vec<StopReplicaPartitionState>> = BTreeMap::new();
            for (tp, e) in &entries {
                topics.entry(tp.topic.clone()).or_default().push(
                    StopReplicaPartitionState::default()
                        .with_partition_index(tp.partition)
                        .with_leader_epoch(e.leader_epoch)
                        .with_delete_partition(e.delete),
                );
            }
            let request = StopReplicaRequest::default()
                .with_controller_id(BrokerId(controller_id))
                .with_is_k_raft_controller(false)
                .with_controller_epoch(ctx.epoch)
                .with_broker_epoch(broker_epoch(broker))
                .with_topic_states(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            StopReplicaTopicState::default()
                                .with_topic_name(topic_name(&t))
                                .with_partition_states(ps)
                        })
                        .collect(),
                );
            debug!(
                target_broker_id = broker,
                controller_epoch = ctx.epoch,
                partitions = entries.len(),
                "sent StopReplica"
            );
            channel.send(broker, ControlRequest::StopReplica(request));
        }
    }
}

/// The group of `topic` in `topics`, built from partitions in topic order (the batch's maps
/// are sorted): one name (a shared buffer) and one list per topic, a new group when the topic
/// changes.
fn topic_group<'a, T>(
    topics: &'a mut Vec<(TopicName, Vec<T>)>,
    topic: &str,
) -> &'a mut (TopicName, Vec<T>) {
    if topics.last().is_none_or(|(n, _)| n.0.as_str() != topic) {
        topics.push((topic_name(topic), Vec::new()));
    }
    let last = topics.len() - 1;
    &mut topics[last]
}

fn topic_name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// Records requests instead of sending them (controller logic tests).
#[derive(Debug, Default)]
pub struct RecordingChannel {
    pub brokers: BTreeSet<i32>,
    pub sent: Vec<(i32, ControlRequest)>,
}

impl ControllerChannel for RecordingChannel {
    fn add_broker(&mut self, broker: &BrokerInfo) {
        self.brokers.insert(broker.id());
    }
    fn remove_broker(&mut self, broker_id: i32) {
        self.brokers.remove(&broker_id);
    }
    fn send(&mut self, broker_id: i32, request: ControlRequest) {
        if self.brokers.contains(&broker_id) {
            self.sent.push((broker_id, request));
        }
    }
    fn shutdown(&mut self) {
        self.brokers.clear();
    }
}

/// Shared handle on a [`RecordingChannel`] so a test can read what the controller sent.
#[derive(Debug, Default, Clone)]
pub struct SharedRecordingChannel(pub std::sync::Arc<std::sync::Mutex<RecordingChannel>>);

impl SharedRecordingChannel {
    /// Takes everything recorded so far.
    pub fn take(&self) -> Vec<(i32, ControlRequest)> {
        std::mem::take(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()).sent)
    }
}

impl ControllerChannel for SharedRecordingChannel {
    fn add_broker(&mut self, broker: &BrokerInfo) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_broker(broker)
    }
    fn remove_broker(&mut self, broker_id: i32) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove_broker(broker_id)
    }
    fn send(&mut self, broker_id: i32, request: ControlRequest) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(broker_id, request)
    }
    fn shutdown(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).shutdown()
    }
}

struct BrokerQueue {
    tx: mpsc::UnboundedSender<ControlRequest>,
    task: JoinHandle<()>,
}

/// One queue and one sender task per broker (Kafka's `ControllerChannelManager`).
pub struct ControllerChannelManager {
    controller_id: i32,
    listener_name: String,
    events: EventSender,
    socket_timeout: Duration,
    request_timeout: Duration,
    brokers: HashMap<i32, BrokerQueue>,
    /// Where the sender tasks run: the runtime `new` was called in (the broker's), not the
    /// controller's own single-threaded one, so requests go out while an event is handled
    /// (Kafka's `RequestSendThread`s are threads of their own too).
    runtime: tokio::runtime::Handle,
}

impl ControllerChannelManager {
    /// Must be called inside the tokio runtime the sender tasks are to run on.
    pub fn new(
        controller_id: i32,
        listener_name: String,
        events: EventSender,
        socket_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        ControllerChannelManager {
            controller_id,
            listener_name,
            events,
            socket_timeout,
            request_timeout,
            brokers: HashMap::new(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl ControllerChannel for ControllerChannelManager {
    fn add_broker(&mut self, broker: &BrokerInfo) {
        self.remove_broker(broker.id());
        let Some(endpoint) = broker.endpoint(&self.listener_name) else {
            warn!(
                target_broker_id = broker.id(),
                listener = %self.listener_name,
                "broker has no endpoint for the inter-broker listener; requests to it are dropped"
            );
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let sender = RequestSender {
            broker_id: broker.id(),
            addr: format!("{}:{}", endpoint.host, endpoint.port),
            // Kafka's controller NetworkClient uses the controller's broker id as client id.
            client_id: self.controller_id.to_string(),
            events: self.events.clone(),
            socket_timeout: self.socket_timeout,
            request_timeout: self.request_timeout,
        };
        let task = self.runtime.spawn(sender.run(rx));
        self.brokers.insert(broker.id(), BrokerQueue { tx, task });
    }

    fn remove_broker(&mut self, broker_id: i32) {
        if let Some(q) = self.brokers.remove(&broker_id) {
            q.task.abort();
        }
    }

    fn send(&mut self, broker_id: i32, request: ControlRequest) {
        match self.brokers.get(&broker_id) {
            Some(q) => {
                let _ = q.tx.send(request);
            }
            None => debug!(
                target_broker_id = broker_id,
                api = request.api_name(),
                "no channel to broker; request dropped"
            ),
        }
    }

    fn shutdown(&mut self) {
        for (_, q) in self.brokers.drain() {
            q.task.abort();
        }
    }
}

impl Drop for ControllerChannelManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The task behind one broker's queue (Kafka's `RequestSendThread`).
struct RequestSender {
    broker_id: i32,
    addr: String,
    client_id: String,
    events: EventSender,
    socket_timeout: Duration,
    request_timeout: Duration,
}

impl RequestSender {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<ControlRequest>) {
        let mut conn: Option<TcpStream> = None;
        let mut correlation_id: i32 = 0;
        while let Some(request) = rx.recv().await {
            let mut attempts: u64 = 0;
            loop {
                correlation_id = correlation_id.wrapping_add(1);
                match self.send_once(&mut conn, &request, correlation_id).await {
                    Ok(event) => {
                        let _ = self.events.send(event);
                        break;
                    }
                    Err(e) => {
                        conn = None;
                        attempts += 1;
                        // Log the first failure and then every 50th (5 s), not every 100 ms.
                        if attempts == 1 || attempts.is_multiple_of(50) {
                            warn!(
                                target_broker_id = self.broker_id,
                                api = request.api_name(),
                                attempts,
                                error = %e,
                                "controller failed to send request to broker; retrying"
                            );
                        }
                        tokio::time::sleep(RETRY_BACKOFF).await;
                    }
                }
            }
        }
    }

    async fn send_once(
        &self,
        conn: &mut Option<TcpStream>,
        request: &ControlRequest,
        correlation_id: i32,
    ) -> std::result::Result<ControllerEvent, String> {
        if conn.is_none() {
            let stream = tokio::time::timeout(self.socket_timeout, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| format!("connect to {} timed out", self.addr))?
                .map_err(|e| format!("connect to {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            *conn = Some(stream);
        }
        // Just set above when it was None.
        let stream = conn.as_mut().ok_or("no connection")?;
        let (frame, key, version) = match request {
            ControlRequest::LeaderAndIsr(r) => (
                encode_request(
                    LEADER_AND_ISR_KEY,
                    LEADER_AND_ISR_VERSION,
                    correlation_id,
                    &self.client_id,
                    r,
                )?,
                LEADER_AND_ISR_KEY,
                LEADER_AND_ISR_VERSION,
            ),
            ControlRequest::UpdateMetadata(r) => (
                encode_request(
                    UPDATE_METADATA_KEY,
                    UPDATE_METADATA_VERSION,
                    correlation_id,
                    &self.client_id,
                    r,
                )?,
                UPDATE_METADATA_KEY,
                UPDATE_METADATA_VERSION,
            ),
            ControlRequest::StopReplica(r) => (
                encode_request(
                    STOP_REPLICA_KEY,
                    STOP_REPLICA_VERSION,
                    correlation_id,
                    &self.client_id,
                    r,
                )?,
                STOP_REPLICA_KEY,
                STOP_REPLICA_VERSION,
            ),
        };
        let io = async {
            stream.write_all(&frame).await.map_err(|e| e.to_string())?;
            let len = stream.read_i32().await.map_err(|e| e.to_string())?;
            if !(0..=100 * 1024 * 1024).contains(&len) {
                return Err(format!("bad response length {len}"));
            }
            let mut body = vec![0u8; len as usize];
            stream
                .read_exact(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(body)
        };
        let body = tokio::time::timeout(self.request_timeout, io)
            .await
            .map_err(|_| "request timed out".to_string())??;
        let mut buf = bytes::Bytes::from(body);
        let broker_id = self.broker_id;
        let event = match key {
            LEADER_AND_ISR_KEY => {
                let response: LeaderAndIsrResponse =
                    decode_response(&mut buf, version, correlation_id)?;
                ControllerEvent::LeaderAndIsrResponseReceived {
                    broker_id,
                    response,
                }
            }
            UPDATE_METADATA_KEY => {
                let response: UpdateMetadataResponse =
                    decode_response(&mut buf, version, correlation_id)?;
                ControllerEvent::UpdateMetadataResponseReceived {
                    broker_id,
                    error_code: response.error_code,
                }
            }
            _ => {
                let response: StopReplicaResponse =
                    decode_response(&mut buf, version, correlation_id)?;
                ControllerEvent::StopReplicaResponseReceived {
                    broker_id,
                    response,
                }
            }
        };
        Ok(event)
    }
}

/// Size-prefixed request frame: header (version from the API's `header_version`) then body.
pub fn encode_request<T: Encodable + HeaderVersion>(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> std::result::Result<BytesMut, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api_key)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header
        .encode(&mut buf, T::header_version(version))
        .map_err(|e| e.to_string())?;
    body.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

fn decode_response<R: Decodable + HeaderVersion>(
    buf: &mut bytes::Bytes,
    version: i16,
    correlation_id: i32,
) -> std::result::Result<R, String> {
    let header =
        ResponseHeader::decode(buf, R::header_version(version)).map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "correlation id mismatch: sent {correlation_id}, got {}",
            header.correlation_id
        ));
    }
    let r = R::decode(buf, version).map_err(|e| e.to_string())?;
    if buf.has_remaining() {
        debug!(remaining = buf.remaining(), "trailing bytes in response");
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frame_uses_flexible_header_for_leader_and_isr_v7() {
        let req = LeaderAndIsrRequest::default().with_controller_epoch(3);
        let frame = encode_request(4, 7, 9, "1", &req).unwrap();
        let mut b = bytes::Bytes::from(frame.to_vec());
        let len = b.get_i32() as usize;
        assert_eq!(len, b.len());
        // Header v2 (flexible): key, version, correlation id, client id, tagged fields.
        assert_eq!(LeaderAndIsrRequest::header_version(7), 2);
        let h = RequestHeader::decode(&mut b, 2).unwrap();
        assert_eq!(
            (h.request_api_key, h.request_api_version, h.correlation_id),
            (4, 7, 9)
        );
        assert_eq!(h.client_id.as_deref(), Some("1"));
        let back = LeaderAndIsrRequest::decode(&mut b, 7).unwrap();
        assert_eq!(back.controller_epoch, 3);
    }
}
