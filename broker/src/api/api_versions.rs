//! ApiVersions: what a client may send us.
//!
//! Kafka concept: the first request of every client. The answer lists, per api key, the version
//! range the broker implements, and clients pick the highest version both sides know. We list
//! exactly [`super::SUPPORTED`] plus the group APIs the coordinator implements, nothing more:
//! advertising a version is a promise that every field of it is honoured.
//! The response header is always v0, even for the flexible v3 body (Kafka's special case, so a
//! client that does not know our versions can still read the answer).

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// The ApiVersions answer with `error_code` (0, or UNSUPPORTED_VERSION for a version we do not
/// know, in which case the client retries with v0).
pub fn response(error_code: i16) -> ApiVersionsResponse {
    let mut keys: Vec<ApiVersion> = super::SUPPORTED
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
    if super::groups_enabled() {
        let (lo, hi) = super::FIND_COORDINATOR;
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
