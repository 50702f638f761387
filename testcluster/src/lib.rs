//! Starts real ZooKeeper and broker processes for tests and demos.
