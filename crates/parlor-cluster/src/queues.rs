//! Matchmaking queues: one per kind, shared by every pod, so that a player queued on one
//! pod can be grouped with a player queued on another.
//!
//! The grouping rule (both implementations, and the Redis script, keep it):
//! - tickets are looked at oldest first;
//! - a ticket `t` takes the tickets `o` of the same group size whose rating is within
//!   `min(reach(t), reach(o))`, where `reach = window + widen_per_sec * seconds waited`;
//! - closest in rating first (then oldest, then by user), up to the group's most; a group
//!   forms only if it reaches the group's least;
//! - a formed group leaves the queue in the same step that found it.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use parlor_core::{now_ms, UserId};
use serde::{Deserialize, Serialize};

use crate::{ready, BoxFuture, Result};

/// How long a cancel is remembered, for a ticket still on its way behind it (µs).
pub const CANCEL_KEPT_US: u64 = 60_000_000;

/// One player waiting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub user: UserId,
    pub rating: f64,
    /// The group sizes this player accepts; only equal sizes group.
    pub min: u32,
    pub max: u32,
    /// When the player's pod received the request, in µs since the epoch: a cancel with a
    /// later stamp wins, whichever reaches the queue first.
    pub stamp: u64,
    /// What the caller needs to seat the player (its session, say); opaque here.
    pub payload: String,
}

/// Queues is responsible for holding every kind's waiting players and handing each to
/// exactly one group.
///
/// Invariants every implementation keeps: a user has at most one ticket per kind; `pair`
/// is atomic, so two pods pairing at once never both get a ticket; a ticket older than a
/// cancel that reached the queue is never queued or grouped.
pub trait Queues: Send + Sync + 'static {
    /// Queues a ticket for `kind`, replacing the user's earlier one (whose wait starts
    /// again). False, and nothing queued, if a later cancel came first.
    fn enqueue(&self, kind: &str, t: Ticket) -> BoxFuture<'_, Result<bool>>;
    /// Takes the user's ticket for `kind` out if it is older than `stamp`; true if one
    /// was. The cancel is remembered for `CANCEL_KEPT_US`.
    fn cancel(&self, kind: &str, user: &UserId, stamp: u64) -> BoxFuture<'_, Result<bool>>;
    /// Takes out every group that can form now (module docs), oldest first, each oldest
    /// ticket first.
    fn pair(
        &self,
        kind: &str,
        window: f64,
        widen_per_sec: f64,
    ) -> BoxFuture<'_, Result<Vec<Vec<Ticket>>>>;
}

/// A queued ticket and when its wait started (ms since the epoch).
struct Waiting {
    t: Ticket,
    since: i64,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// The latest cancel stamp per user.
    cancels: HashMap<UserId, u64>,
}

/// The single-pod queues.
#[derive(Default)]
pub struct MemoryQueues {
    inner: Mutex<HashMap<String, Queue>>,
}

impl MemoryQueues {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Queue>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Queues for MemoryQueues {
    fn enqueue(&self, kind: &str, t: Ticket) -> BoxFuture<'_, Result<bool>> {
        let mut all = self.lock();
        let q = all.entry(kind.to_owned()).or_default();
        if q.cancels.get(&t.user).is_some_and(|c| *c > t.stamp) {
            return ready(Ok(false));
        }
        q.waiting.retain(|w| w.t.user != t.user);
        q.waiting.push(Waiting { t, since: now_ms() });
        ready(Ok(true))
    }

    fn cancel(&self, kind: &str, user: &UserId, stamp: u64) -> BoxFuture<'_, Result<bool>> {
        let mut all = self.lock();
        let q = all.entry(kind.to_owned()).or_default();
        let before = q.waiting.len();
        q.waiting
            .retain(|w| !(w.t.user == *user && w.t.stamp < stamp));
        let c = q.cancels.entry(user.clone()).or_default();
        *c = (*c).max(stamp);
        ready(Ok(q.waiting.len() != before))
    }

    fn pair(
        &self,
        kind: &str,
        window: f64,
        widen_per_sec: f64,
    ) -> BoxFuture<'_, Result<Vec<Vec<Ticket>>>> {
        let mut all = self.lock();
        let Some(q) = all.get_mut(kind) else {
            return ready(Ok(Vec::new()));
        };
        let now = now_ms();
        let oldest = u64::try_from(now).unwrap_or(0) * 1000;
        q.cancels
            .retain(|_, stamp| *stamp + CANCEL_KEPT_US > oldest);
        ready(Ok(groups(&mut q.waiting, now, window, widen_per_sec)))
    }
}

/// The grouping rule (module docs) over one queue.
fn groups(waiting: &mut Vec<Waiting>, now: i64, window: f64, widen: f64) -> Vec<Vec<Ticket>> {
    let reach = |w: &Waiting| window + widen * (now - w.since) as f64 / 1000.0;
    waiting.sort_by(|a, b| (a.since, &a.t.user.0).cmp(&(b.since, &b.t.user.0)));
    // Indexes by rating, so that each ticket looks only at those within its reach.
    let mut by_rating: Vec<(f64, usize)> = waiting
        .iter()
        .enumerate()
        .map(|(j, w)| (w.t.rating, j))
        .collect();
    by_rating.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut taken = vec![false; waiting.len()];
    let mut out = Vec::new();
    for i in 0..waiting.len() {
        if taken[i] {
            continue;
        }
        let t = &waiting[i];
        let r = reach(t);
        let lo = by_rating.partition_point(|(x, _)| *x < t.t.rating - r);
        let hi = by_rating.partition_point(|(x, _)| *x <= t.t.rating + r);
        let mut near: Vec<(f64, usize)> = by_rating[lo..hi]
            .iter()
            .map(|(_, j)| *j)
            .filter(|&j| j != i && !taken[j])
            .filter(|&j| {
                let o = &waiting[j];
                (o.t.min, o.t.max) == (t.t.min, t.t.max)
                    && (o.t.rating - t.t.rating).abs() <= r.min(reach(o))
            })
            .map(|j| ((waiting[j].t.rating - t.t.rating).abs(), j))
            .collect();
        if near.len() + 1 < t.t.min as usize {
            continue;
        }
        // Equal distances: the lower index, which is the older ticket (sorted above).
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut group: Vec<usize> = near
            .iter()
            .take(t.t.max as usize - 1)
            .map(|(_, j)| *j)
            .collect();
        group.push(i);
        group.sort_unstable();
        for &j in &group {
            taken[j] = true;
        }
        out.push(group.into_iter().map(|j| waiting[j].t.clone()).collect());
    }
    let mut k = 0;
    waiting.retain(|_| {
        k += 1;
        !taken[k - 1]
    });
    out
}
