//! ApiVersions: what a client may send us.
//!
//! Kafka concept: the first request of every client. The answer lists, per api key, the version
//! range the broker implements, and clients pick the highest version both sides know. We list
//! exactly [`SUPPORTED`] plus the group APIs the coordinator implements, nothing more:
//! advertising a version is a promise that every field of it is honoured.
//! The response header is always v0, even for the flexible v3 body (Kafka's special case, so a
//! client that does not know our versions can still read the answer).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

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

/// The ApiVersions answer with `error_code` (0, or UNSUPPORTED_VERSION for a version we do not
/// know, in which case the client retries with v0).
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = SUPPORTED
        .iter()
        .map(|(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(*k as i16)
                .with_min_version(*lo)
                .with_max_version(*hi)
        })
        .collect();
    for (k, lo, hi) in crate::group::GroupCoordinator::SUPPORTED_APIS
        .iter()
        .chain(crate::group::GroupCoordinator::ADMIN_APIS)
    {
        if ApiKey::try_from(*k).is_ok() {
            keys.push(
                ApiVersion::default()
                    .with_api_key(*k)
                    .with_min_version(*lo)
                    .with_max_version(*hi),
            );
        }
    }
    if groups_enabled() {
        let (lo, hi) = FIND_COORDINATOR;
        keys.push(
            ApiVersion::default()
                .with_api_key(ApiKey::FindCoordinator as i16)
                .with_min_version(lo)
                .with_max_version(hi),
        );
    }
    keys.sort_by_key(|k| k.api_key);
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(keys)
        .with_throttle_time_ms(0)
}
