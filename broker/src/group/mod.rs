//! Placeholder until the group coordinator lands: no group API is advertised.

pub mod placement;

pub use placement::partition_for;

/// The group coordinator (Kafka's `GroupCoordinator`), not implemented yet on this branch.
pub struct GroupCoordinator;

impl GroupCoordinator {
    /// (api_key, min_version, max_version) implemented: none yet.
    pub const SUPPORTED_APIS: &'static [(i16, i16, i16)] = &[];
}
