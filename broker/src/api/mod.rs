//! The Kafka APIs this broker serves: parsing a frame into a typed request, dispatching it to
//! the file that implements it, and encoding the answer.
//!
//! Kafka class mirrored: `kafka.server.KafkaApis` (one `handleXxx` per API). Each API lives in
//! its own file; this one only knows which versions we implement ([`SUPPORTED`], which is
//! exactly what ApiVersions advertises) and how to frame an answer.

pub mod admin;
pub mod alter_partition;
pub mod api_versions;
pub mod configs;
pub mod control;
pub mod elect;
pub mod fetch;
pub mod fetch_encode;
pub mod groups;
pub mod list_offsets;
pub mod metadata;
pub mod metadata_encode;
pub mod produce;
pub mod producer_id;
pub mod reassign;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use tracing::{debug, warn};

use crate::broker::Broker;

/// (api, min version, max version) implemented here, within Kafka 3.x ZooKeeper-mode ranges.
/// The group APIs come from [`crate::group::GroupCoordinator::SUPPORTED_APIS`].
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::LeaderAndIsr, 7, 7),
    (ApiKey::StopReplica, 4, 4),
    (ApiKey::UpdateMetadata, 8, 8),
    (ApiKey::ControlledShutdown, 3, 3),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::AlterPartition, 0, 1),
    (ApiKey::ElectLeaders, 0, 2),
    (ApiKey::AlterPartitionReassignments, 0, 0),
    (ApiKey::ListPartitionReassignments, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
];

/// FindCoordinator versions, advertised only together with the group APIs it serves.
pub const FIND_COORDINATOR: (i16, i16) = (0, 4);

/// True when the group coordinator implements the group APIs.
pub fn groups_enabled() -> bool {
    !crate::group::GroupCoordinator::SUPPORTED_APIS.is_empty()
}

/// The version range we implement for `key`, if any (group APIs included).
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    if key == ApiKey::FindCoordinator {
        return groups_enabled().then_some(FIND_COORDINATOR);
    }
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, lo, hi)| (*lo, *hi))
        .or_else(|| {
            crate::group::GroupCoordinator::SUPPORTED_APIS
                .iter()
                .chain(crate::group::GroupCoordinator::ADMIN_APIS)
                .find(|(k, _, _)| *k == key as i16)
                .map(|(_, lo, hi)| (*lo, *hi))
        })
}

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
            let body = api_versions::response(
                kafka_protocol::error::ResponseError::UnsupportedVersion.code(),
            );
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

/// Frames a response: size, header (version from the API), body.
pub fn encode_response(correlation_id: i32, version: i16, body: &ResponseKind) -> Option<BytesMut> {
    let header_version = body.header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    if let Err(e) = header.encode(&mut buf, header_version) {
        warn!(error = %e, "cannot encode response header");
        return None;
    }
    if let Err(e) = body.encode(&mut buf, version) {
        warn!(error = %e, version, "cannot encode response");
        return None;
    }
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf)
}

/// A response frame as chunks written in order (record batches are their own chunks).
pub type Frame = Vec<Bytes>;

/// Runs one request to completion; `None` means no answer (Produce with acks=0).
pub async fn handle(broker: Arc<Broker>, req: Request, peer: SocketAddr) -> Option<Frame> {
    let correlation_id = req.header.correlation_id;
    let version = req.version;
    let client_id = req
        .header
        .client_id
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_default();
    debug!(api = ?req.api_key, version, correlation_id, client_id = %client_id, %peer, "request");
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
