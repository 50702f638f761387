//! The `testcluster` command-line tool, one file per concern (mini-redis's `cmd/`):
//!
//! - [`up`]: starts ZooKeeper and the brokers and owns their processes until Ctrl-C; writes
//!   [`state`]'s `cluster.json` and answers [`control`] requests on `control.sock`.
//! - [`status`] and [`watch`]: read a [`snapshot`] of ZooKeeper (and the brokers' Metadata).
//! - [`topics`] and [`reassign`]: the admin commands over the Kafka protocol.
//! - [`console`]: console producer and consumer on librdkafka.
//! - [`znodes`]: the ZooKeeper tree Kafka wrote, decoded.
//! - [`web`]: the live web view `up` serves.

pub mod console;
pub mod control;
pub mod reassign;
pub mod snapshot;
pub mod state;
pub mod status;
pub mod topics;
pub mod up;
pub mod watch;
pub mod web;
pub mod znodes;
