//! Consumer group APIs, answered by [`crate::group::GroupCoordinator`] (not yet wired).

use kafka_protocol::messages::{RequestKind, ResponseKind};

use crate::broker::Broker;

/// Dispatches a group API request; `None` for anything else.
pub async fn handle(_broker: &Broker, _req: RequestKind, _version: i16) -> Option<ResponseKind> {
    None
}
