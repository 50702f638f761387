//! ZooKeeper: the data model ([`data`]), the typed client ([`client`]) and the raw operations
//! behind a trait ([`backend`]).

pub mod backend;
pub mod client;
pub mod data;
pub mod error;

pub use error::{Error, Result};
