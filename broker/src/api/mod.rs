//! The Kafka APIs this broker serves: parsing a frame into a typed request, dispatching it to
//! the file that implements it, and encoding the answer.
//!
//! Kafka class mirrored: `kafka.server.KafkaApis` (one `handleXxx` per API). Each API lives in
//! its own file and takes the handlers' context ([`context::KafkaApis`]); this one only
//! parses and dispatches. Which versions we implement ([`SUPPORTED`], exactly what ApiVersions
//! advertises) is in [`api_versions`], how an answer is framed in [`frame`]; neither imports
//! this file, so no handler is in an import circle with the dispatch.
//!
//! Before a handler runs, a client request waits until the metadata cache holds the
//! controller's first UpdateMetadata of this run ([`initial_metadata_wait`]): a restarted broker
//! accepts connections before the controller has described the cluster to it, and an answer
//! from the empty cache ("no brokers, no topics") makes clients drop their records. The
//! controller's requests (LeaderAndIsr, UpdateMetadata, StopReplica), the brokers' own
//! (AlterPartition, ControlledShutdown, a follower's Fetch and OffsetForLeaderEpoch) and
//! ApiVersions never wait: the first are what fills the cache. Each connection waits on its
//! own, so a waiting client holds up only its own connection, as any slow request does.

pub mod admin;
pub mod alter_partition;
pub mod api_versions;
pub mod configs;
pub mod context;
pub mod control;
pub mod elect;
pub mod fetch;
pub mod fetch_encode;
pub mod frame;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod metadata_encode;
pub mod produce;
pub mod producer_id;
pub mod reassign;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;
use tracing::{debug, warn};

use crate::api::context::KafkaApis;

pub use api_versions::{groups_enabled, supported_range, FIND_COORDINATOR, SUPPORTED};
pub use frame::{encode_response, Frame};

/// A decoded request.
pub struct Request {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: RequestKind,
}

pub enum ParseError {
    /// Answer this and keep the connection (ApiVersions with an unknown version).
    Respond(BytesMut),
    /// Close the connection, logging the reason.
    Close(String),
}

/// Decodes header and body. Unknown api keys and unsupported versions close the connection,
/// as Kafka does, except ApiVersions, which is answered with UNSUPPORTED_VERSION (v0 body).
pub fn parse_request(api_key: i16, version: i16, mut frame: Bytes) -> Result<Request, ParseError> {
    let key = ApiKey::try_from(api_key)
        .map_err(|_| ParseError::Close(format!("unknown api key {api_key}")))?;
    let Some((lo, hi)) = supported_range(key) else {
        return Err(ParseError::Close(format!(
            "api {key:?} (key {api_key}) is not supported by this broker"
        )));
    };
    if version < lo || version > hi {
        if key == ApiKey::ApiVersions {
            // Kafka reads the correlation id from the v1 header and answers with v0.
            let correlation_id = if frame.len() >= 8 {
                i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
            } else {
                0
            };
            let body = api_versions::response(common::ErrorCode::UNSUPPORTED_VERSION.code());
            return match encode_response(correlation_id, 0, &ResponseKind::ApiVersions(body)) {
                Some(b) => Err(ParseError::Respond(b)),
                None => Err(ParseError::Close("cannot encode ApiVersions".into())),
            };
        }
        return Err(ParseError::Close(format!(
            "unsupported version {version} of {key:?} (supported {lo}..={hi})"
        )));
    }
    let header =
        RequestHeader::decode(&mut frame, key.request_header_version(version)).map_err(|e| {
            ParseError::Close(format!("bad request header for {key:?} v{version}: {e}"))
        })?;
    let body = RequestKind::decode(key, &mut frame, version)
        .map_err(|e| ParseError::Close(format!("malformed {key:?} v{version} request: {e}")))?;
    Ok(Request {
        api_key: key,
        version,
        header,
        body,
    })
}

/// The longest a client request waits for the first UpdateMetadata: below every stock client's
/// request timeout (Java's and kafkajs's 30 s, librdkafka's 60 s socket timeout), so the
/// client hears an answer rather than timing out, and far above the time the controller takes
/// to answer a registration (milliseconds; seconds for a failover on thousands of partitions).
pub const INITIAL_METADATA_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long `body` may wait for the metadata cache's first UpdateMetadata: `None` for the
/// requests that must not wait (see the module doc), otherwise the smaller of
/// [`INITIAL_METADATA_WAIT_MAX`], `request.timeout.ms` and the request's own timeout
/// (Produce's `timeout_ms`). After that the handler answers from what the cache has; Metadata
/// then answers without claiming that topics do not exist (`metadata::handle`).
pub fn initial_metadata_wait(broker: &KafkaApis, body: &RequestKind) -> Option<Duration> {
    let cap =
        INITIAL_METADATA_WAIT_MAX.min(Duration::from_millis(broker.config.request_timeout_ms));
    match body {
        RequestKind::ApiVersions(_)
        | RequestKind::LeaderAndIsr(_)
        | RequestKind::UpdateMetadata(_)
        | RequestKind::StopReplica(_)
        | RequestKind::AlterPartition(_)
        | RequestKind::ControlledShutdown(_) => None,
        RequestKind::Fetch(r) if r.replica_id.0 >= 0 => None,
        RequestKind::OffsetForLeaderEpoch(r) if r.replica_id.0 >= 0 => None,
        RequestKind::Produce(r) => Some(cap.min(Duration::from_millis(r.timeout_ms.max(0) as u64))),
        _ => Some(cap),
    }
}

/// Runs one request to completion; `None` means no answer (Produce with acks=0).
pub async fn handle(broker: Arc<KafkaApis>, req: Request, peer: SocketAddr) -> Option<Frame> {
    let correlation_id = req.header.correlation_id;
    let version = req.version;
    let client_id = req
        .header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    debug!(api = ?req.api_key, version, correlation_id, client_id = %client_id, %peer, "request");
    if !broker.metadata.is_initialized() {
        if let Some(wait) = initial_metadata_wait(&broker, &req.body) {
            let started = std::time::Instant::now();
            let ready = broker.metadata.wait_until_initialized(wait).await;
            if ready {
                debug!(api = ?req.api_key, correlation_id, %peer,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "request waited for the first UpdateMetadata");
            } else {
                warn!(api = ?req.api_key, correlation_id, %peer,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "no UpdateMetadata from the controller yet; answering without it");
            }
        }
    }
    let resp: ResponseKind = match req.body {
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::response(0)),
        RequestKind::Metadata(r) => {
            return metadata::handle(&broker, r, version, correlation_id).await;
        }
        RequestKind::Produce(r) => {
            let acks = r.acks;
            let resp = produce::handle(&broker, r, version).await;
            if acks == 0 {
                return None;
            }
            ResponseKind::Produce(resp)
        }
        RequestKind::Fetch(r) => {
            let resp = fetch::handle(&broker, r, version).await;
            return fetch_encode::encode(correlation_id, version, &resp);
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(&broker, r, version))
        }
        RequestKind::OffsetForLeaderEpoch(r) => {
            ResponseKind::OffsetForLeaderEpoch(list_offsets::offsets_for_leader_epoch(&broker, r))
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(admin::create_topics(&broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(admin::delete_topics(&broker, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(admin::create_partitions(&broker, r, version).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe_configs(&broker, r, version).await)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(configs::describe_cluster(&broker, r))
        }
        RequestKind::LeaderAndIsr(r) => {
            ResponseKind::LeaderAndIsr(control::leader_and_isr(&broker, r).await)
        }
        RequestKind::UpdateMetadata(r) => {
            ResponseKind::UpdateMetadata(control::update_metadata(&broker, r))
        }
        RequestKind::StopReplica(r) => ResponseKind::StopReplica(control::stop_replica(&broker, r)),
        RequestKind::AlterPartition(r) => {
            ResponseKind::AlterPartition(alter_partition::handle(&broker, r, version).await)
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(&broker, r, version).await)
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect::handle(&broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            reassign::alter_partition_reassignments(&broker, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            reassign::list_partition_reassignments(&broker, r).await,
        ),
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producer_id::handle(&broker, r).await)
        }
        RequestKind::ControlledShutdown(r) => {
            ResponseKind::ControlledShutdown(control::controlled_shutdown(&broker, r).await)
        }
        other => match groups::handle(&broker, other, version, &client_id).await {
            Some(resp) => resp,
            None => {
                warn!(api = ?req.api_key, "request type reached dispatch but has no handler");
                return None;
            }
        },
    };
    encode_response(correlation_id, version, &resp).map(|b| vec![b.freeze()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn frame(key: i16, version: i16, body: &[u8]) -> Bytes {
        let mut b = BytesMut::new();
        b.put_i16(key);
        b.put_i16(version);
        b.put_i32(7);
        b.put_i16(1);
        b.put_slice(b"x");
        b.put_slice(body);
        b.freeze()
    }

    /// A Metadata v1 request claiming 2^31-1 topics in 4 bytes is refused, not allocated.
    #[test]
    fn hostile_array_length_is_a_decode_error() {
        let f = frame(3, 1, &0x7fff_ffffi32.to_be_bytes());
        match parse_request(3, 1, f) {
            Err(ParseError::Close(reason)) => assert!(reason.contains("malformed"), "{reason}"),
            _ => panic!("expected the connection to be closed"),
        }
    }

    #[test]
    fn unknown_key_and_version_close_but_api_versions_answers() {
        assert!(matches!(
            parse_request(999, 0, frame(999, 0, b"")),
            Err(ParseError::Close(_))
        ));
        assert!(matches!(
            parse_request(3, 99, frame(3, 99, b"")),
            Err(ParseError::Close(_))
        ));
        match parse_request(18, 99, frame(18, 99, b"")) {
            Err(ParseError::Respond(b)) => {
                // size, correlation id 7, error code 35 (UNSUPPORTED_VERSION)
                assert_eq!(&b[4..8], &7i32.to_be_bytes());
                assert_eq!(&b[8..10], &35i16.to_be_bytes());
            }
            _ => panic!("ApiVersions with an unknown version must be answered"),
        }
    }

    /// Every advertised version of ApiVersions, Metadata and Produce responses encodes.
    #[test]
    fn advertised_versions_encode() {
        for (key, lo, hi) in SUPPORTED {
            for v in *lo..=*hi {
                let body = match key {
                    ApiKey::ApiVersions => ResponseKind::ApiVersions(api_versions::response(0)),
                    ApiKey::Metadata => {
                        let mut m = kafka_protocol::messages::MetadataResponse::default();
                        metadata::fit_to_version(&mut m, v);
                        ResponseKind::Metadata(m)
                    }
                    _ => continue,
                };
                assert!(encode_response(1, v, &body).is_some(), "{key:?} v{v}");
            }
        }
    }
}
