use std::sync::Arc;

use parlor_core::RoomId;

use crate::{BoxFuture, Result};

/// A home pod's hold on a room. The epoch grows with every new home, so that a deposed
/// home's writes can be told apart and refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    /// The pod that runs the room.
    pub pod: Arc<str>,
    /// The fencing epoch, 1 for a room's first home.
    pub epoch: u64,
}

impl Lease {
    /// How the lease is written in Redis, and compared by the scripts.
    pub(crate) fn token(&self) -> String {
        format!("{}|{}", self.pod, self.epoch)
    }

    pub(crate) fn parse(token: &str) -> Option<Lease> {
        let (pod, epoch) = token.rsplit_once('|')?;
        Some(Lease {
            pod: pod.into(),
            epoch: epoch.parse().ok()?,
        })
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller is the home, with this lease (new, or its own renewed).
    Home(Lease),
    /// Another pod is the home.
    Elsewhere(Lease),
}

/// Leases is responsible for there being at most one home pod per room.
///
/// Invariants every implementation keeps: a lease is held by one pod at a time; it lapses
/// unless renewed within the lease time; each new holder gets a higher epoch than every
/// holder before it (for as long as the backend keeps its data).
pub trait Leases: Send + Sync + 'static {
    /// Takes the room's lease for `pod` if it is free, renews it if `pod` holds it, and
    /// otherwise says who does.
    fn claim(&self, room: &RoomId, pod: &str) -> BoxFuture<'_, Result<Claim>>;
    /// Renews held leases in one round; `false` for each one that was lost.
    fn renew(&self, held: Vec<(RoomId, Lease)>) -> BoxFuture<'_, Result<Vec<bool>>>;
    /// Gives a lease up (the room closed, or the pod is draining).
    fn release(&self, room: &RoomId, lease: &Lease) -> BoxFuture<'_, Result<()>>;
    /// The current holder, if any.
    fn holder(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Lease>>>;
}
