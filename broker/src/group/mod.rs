//! Consumer-group coordination (Kafka's classic `GroupCoordinator` + `GroupMetadataManager`).
//!
//! Status: only coordinator placement is implemented so far (see [`placement`]). The group
//! state machine, the request handlers and `__consumer_offsets` persistence are NOT written yet;
//! nothing here may be advertised in ApiVersions until they are.

pub mod placement;
