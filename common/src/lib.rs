//! What every crate of the workspace shares, with no dependencies besides std.
//!
//! # Layout
//!
//! | file | Kafka class | role |
//! |---|---|---|
//! | [`errors`] | `org.apache.kafka.common.protocol.Errors` | [`ErrorCode`]: every error code of the protocol, with Kafka's name, retriability and default message |
//!
//! It sits lowest in the crate graph (storage, zk, controller and broker may all depend on
//! it), so it must stay free of I/O, of kafka-protocol and of our other crates.

pub mod errors;

pub use errors::ErrorCode;
