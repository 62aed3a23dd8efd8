//! What pods share: room events and checkpoints (Broker), who runs each room (Leases), the
//! room directory (RoomDirectory) and who is online (Presence). Each contract has a memory
//! implementation for a single pod and a Redis one for a cluster; both pass the same
//! conformance suites (`conformance`, behind `test-util`).
//!
//! - `broker`: per-room sequence numbers, bounded history, checkpoints and fan-out to pods.
//! - `lease`: one home pod per room, with a fencing epoch.
//! - `checkpoint`: a room as checkpoint fields, and back.
//! - `directory`: rooms by id and by code, and the public list.
//! - `presence`: which sessions a user has online.
//! - `inbox`: messages between pods.
//! - `queues`: matchmaking queues by kind.
//! - `redis`: the Redis implementations, and their key and channel layout.

mod broker;
pub mod checkpoint;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod directory;
mod inbox;
mod lease;
mod presence;
mod queues;
mod redis;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

pub use broker::{
    Broker, EventSink, MemoryBroker, Origin, Replay, Retained, Retention, StateWrite,
    SubscriptionId,
};
pub use checkpoint::Checkpoint;
pub use directory::{MemoryDirectory, RoomDirectory};
pub use inbox::{Inbox, InboxHandler, MemoryInbox};
pub use lease::{Claim, Lease, Leases};
pub use presence::{MemoryPresence, PodInfo, Presence};
pub use queues::{MemoryQueues, Paired, Queues, Ticket};
pub use redis::{RedisBackend, RedisOptions};

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
    /// The caller is not the room's home (another pod holds the lease, or it expired), or
    /// its seq is not the room's next: the write was refused and nothing changed.
    #[error("refused: {0}")]
    Fenced(String),
    /// The configuration cannot work; names the key.
    #[error("{0}")]
    Config(String),
}

/// The shared contracts a pod runs on.
#[derive(Clone)]
pub struct Backends {
    /// Room events, history and checkpoints.
    pub broker: Arc<dyn Broker>,
    /// Home-pod leases.
    pub leases: Arc<dyn Leases>,
    /// Room lookup and listing.
    pub directory: Arc<dyn RoomDirectory>,
    /// Sessions online.
    pub presence: Arc<dyn Presence>,
    /// Messages between pods.
    pub inbox: Arc<dyn Inbox>,
    /// Matchmaking queues.
    pub queues: Arc<dyn Queues>,
    /// Whether the shared backend is reachable and delivering.
    pub health: Arc<dyn Health>,
}

/// Health is responsible for telling readiness whether the cluster backend works, and
/// for the counts behind its metrics.
pub trait Health: Send + Sync + 'static {
    /// False while the backend is unreachable or its subscription delivers nothing.
    fn ready(&self) -> bool;
    /// What the subscriber has done so far.
    fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// Running totals of the subscriber (all 0 for the memory backend, which loses nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Gaps filled from history before later events were delivered.
    pub gaps_healed: u64,
    /// Gaps history could not fill (the sinks were told with `EventSink::lost`).
    pub gaps_lost: u64,
    /// Times the subscription connection dropped and was subscribed again.
    pub resubscriptions: u64,
    /// Batches of publishes whose events fewer replicas than `Settings::wait_replicas` had
    /// in time.
    pub unreplicated: u64,
}

/// Told of every Redis round trip: the command, how long it took, whether it worked.
pub type Observer = Arc<dyn Fn(&'static str, Duration, bool) + Send + Sync>;

/// What picks and configures the implementation (`cluster.*` in the pod's config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `memory` (one pod) or `redis`.
    pub kind: String,
    /// `standalone` (one Redis at `redis_url`) or `cluster` (a Redis Cluster, reached
    /// through `redis_urls`).
    pub redis_mode: String,
    /// The Redis URL (`cluster.redis_url`); required for a standalone Redis.
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster (`cluster.redis_urls`); required in cluster mode.
    pub redis_urls: Vec<String>,
    /// Prefix of every key and channel, so that several clusters can share one Redis.
    pub key_prefix: String,
    /// This pod's name, unique in the cluster.
    pub pod: String,
    /// How long a home pod's lease lasts unless renewed.
    pub lease: Duration,
    /// What each room keeps for resume.
    pub retention: Retention,
    /// How often the subscription's liveness probe and position check run.
    pub probe_every: Duration,
    /// Replicas that must have an event before it counts as recorded (Redis WAIT); 0 does
    /// not wait.
    pub wait_replicas: u32,
    /// The longest such a wait may take.
    pub wait: Duration,
}

/// Picks and connects the implementation named by `settings.kind`. An unknown kind, or
/// `redis` without a URL, is an error naming the key.
pub async fn backends(settings: &Settings, observer: Option<Observer>) -> Result<Backends> {
    match settings.kind.as_str() {
        "memory" => {
            let broker = Arc::new(MemoryBroker::new(settings.retention, settings.lease));
            Ok(Backends {
                broker: broker.clone(),
                leases: broker.clone(),
                directory: Arc::new(MemoryDirectory::default()),
                presence: Arc::new(MemoryPresence::default()),
                inbox: Arc::new(MemoryInbox::default()),
                queues: Arc::new(MemoryQueues::default()),
                health: broker,
            })
        }
        "redis" => {
            match settings.redis_mode.as_str() {
                "standalone" if settings.redis_url.is_empty() => {
                    return Err(ClusterError::Config(
                        "cluster.redis_url is required when cluster.kind is \"redis\"".into(),
                    ))
                }
                "cluster" if settings.redis_urls.is_empty() => {
                    return Err(ClusterError::Config(
                        "cluster.redis_urls is required when cluster.redis_mode is \"cluster\""
                            .into(),
                    ))
                }
                "standalone" | "cluster" => {}
                other => {
                    return Err(ClusterError::Config(format!(
                        "cluster.redis_mode {other:?} is unknown (expected \"standalone\" or \"cluster\")"
                    )))
                }
            }
            let mut opts = RedisOptions::from(settings);
            opts.observer = observer;
            let broker = RedisBackend::connect(opts).await?;
            Ok(Backends {
                broker: broker.clone(),
                leases: broker.clone(),
                directory: broker.clone(),
                presence: broker.clone(),
                inbox: broker.clone(),
                queues: broker.clone(),
                health: broker,
            })
        }
        other => Err(ClusterError::Config(format!(
            "cluster.kind {other:?} is unknown (expected \"memory\" or \"redis\")"
        ))),
    }
}

fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}
