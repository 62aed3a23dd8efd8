//! What pods share: room events (Broker), the room directory (RoomDirectory) and who is
//! online (Presence). Each contract has a memory implementation for a single pod; Redis
//! implementations arrive with the cluster issue and must pass the same conformance suites.
//!
//! - `broker`: per-room sequence numbers, recent-event retention and fan-out to pods.
//! - `directory`: rooms, members and settings, by id and by code.
//! - `presence`: which sessions a user has online.

mod broker;
mod directory;
mod presence;

use std::{future::Future, pin::Pin, sync::Arc};

pub use broker::{Broker, EventSink, MemoryBroker, Replay, Retention, SubscriptionId};
pub use directory::{MemoryDirectory, RoomDirectory};
pub use presence::{MemoryPresence, Presence};

/// A boxed future, so that the contracts stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Result alias for cluster calls.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// Why a cluster call failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    /// The shared backend cannot be reached; the pod reports not-ready meanwhile.
    #[error("cluster backend unavailable: {0}")]
    Unavailable(String),
    /// The room does not exist.
    #[error("no such room")]
    NoSuchRoom,
}

/// The three shared contracts a pod runs on.
pub type Backends = (Arc<dyn Broker>, Arc<dyn RoomDirectory>, Arc<dyn Presence>);

/// Picks implementations by name from config (`memory`; `redis` arrives with the cluster
/// issue); an unknown name is an error.
pub fn backends(kind: &str, retention: Retention) -> Result<Backends> {
    match kind {
        "memory" => Ok((
            Arc::new(MemoryBroker::new(retention)),
            Arc::new(MemoryDirectory::default()),
            Arc::new(MemoryPresence::default()),
        )),
        other => Err(ClusterError::Unavailable(format!(
            "unknown cluster kind {other:?} (expected \"memory\")"
        ))),
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}
