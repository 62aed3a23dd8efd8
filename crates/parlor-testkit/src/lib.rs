//! Real server processes for tests: each on a free loopback port, each stopped when the
//! test process exits, however it exits.
//!
//! - `Daemon`: any server binary, watched by a small shell.
//! - `RedisServer`: Debian's `redis-server`, with no persistence, on its own port (never
//!   the machine's shared one on 6379).
//! - `RedisCluster`: six of them joined as a Redis Cluster of three masters and three
//!   replicas.

mod cluster;
mod daemon;
mod redis;

pub use cluster::RedisCluster;
pub use daemon::{connectable, free_port, Daemon};
pub use redis::{commandstats, RedisServer};
