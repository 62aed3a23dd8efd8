//! Matchmaking queues: one per kind, shared by every pod, so that a player queued on one
//! pod can be grouped with a player queued on another.
//!
//! The grouping rule (both implementations, and the Redis script, keep it):
//! - tickets are looked at oldest first;
//! - a ticket `t` takes the tickets `o` of the same group size whose rating is within
//!   `min(reach(t), reach(o))`, where `reach = window + widen_per_sec * seconds waited`;
//! - closest in rating first, up to the group's most (ties: the lower rating, then the
//!   lower user id, the order of a Redis sorted set); a group forms only if it reaches
//!   the group's least;
//! - a formed group leaves the queue in the same step that found it.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use parlor_core::{now_ms, UserId};
use serde::{Deserialize, Serialize};

use crate::{ready, BoxFuture, Result};

/// How long a cancel is remembered, for a ticket still on its way behind it (µs).
pub(crate) const CANCEL_KEPT_US: u64 = 60_000_000;

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
    fn pair(&self, kind: &str, window: f64, widen_per_sec: f64) -> BoxFuture<'_, Result<Paired>>;
}

/// What a pairing step took out, and how many tickets are left waiting.
#[derive(Debug, Default)]
pub struct Paired {
    pub groups: Vec<Vec<Ticket>>,
    pub waiting: usize,
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

    fn pair(&self, kind: &str, window: f64, widen_per_sec: f64) -> BoxFuture<'_, Result<Paired>> {
        let mut all = self.lock();
        let Some(q) = all.get_mut(kind) else {
            return ready(Ok(Paired::default()));
        };
        let now = now_ms();
        let now_us = u64::try_from(now).unwrap_or(0) * 1000;
        q.cancels
            .retain(|_, stamp| *stamp + CANCEL_KEPT_US > now_us);
        let groups = groups(&mut q.waiting, now, window, widen_per_sec);
        ready(Ok(Paired {
            groups,
            waiting: q.waiting.len(),
        }))
    }
}

/// The grouping rule (module docs) over one queue. Each ticket walks outward from its own
/// rating, nearest first, so that it looks at the few tickets it could take rather than
/// at every ticket within reach.
fn groups(waiting: &mut Vec<Waiting>, now: i64, window: f64, widen: f64) -> Vec<Vec<Ticket>> {
    let reach = |w: &Waiting| window + widen * (now - w.since) as f64 / 1000.0;
    waiting.sort_by(|a, b| (a.since, &a.t.user.0).cmp(&(b.since, &b.t.user.0)));
    // Indexes by rating (ties by user id), and where each index sits in that order.
    let mut by_rating: Vec<(f64, usize)> = waiting
        .iter()
        .enumerate()
        .map(|(j, w)| (w.t.rating, j))
        .collect();
    by_rating.sort_by(|a, b| {
        a.0.total_cmp(&b.0)
            .then_with(|| waiting[a.1].t.user.0.cmp(&waiting[b.1].t.user.0))
    });
    let mut pos = vec![0; waiting.len()];
    for (p, (_, j)) in by_rating.iter().enumerate() {
        pos[*j] = p;
    }
    let n = waiting.len();
    // The untaken tickets in rating order, as a linked list over positions, so that a
    // walk never steps over taken ones.
    let mut prev: Vec<Option<usize>> = (0..n).map(|p| p.checked_sub(1)).collect();
    let mut next: Vec<Option<usize>> = (0..n).map(|p| (p + 1 < n).then_some(p + 1)).collect();
    let mut taken = vec![false; n];
    let mut out = Vec::new();
    for i in 0..n {
        if taken[i] {
            continue;
        }
        let t = &waiting[i];
        let r = reach(t);
        let most = t.t.max as usize - 1;
        // Nearest first, the lower side first on a tie.
        let mut near: Vec<usize> = Vec::new();
        let (mut left, mut right) = (prev[pos[i]], next[pos[i]]);
        while near.len() < most {
            let dl = left.map(|l| (t.t.rating - by_rating[l].0, by_rating[l].1));
            let dr = right.map(|r| (by_rating[r].0 - t.t.rating, by_rating[r].1));
            let (d, j) = match (dl, dr) {
                (Some(a), Some(b)) if a.0 <= b.0 => {
                    left = left.and_then(|l| prev[l]);
                    a
                }
                (Some(a), None) => {
                    left = left.and_then(|l| prev[l]);
                    a
                }
                (_, Some(b)) => {
                    right = right.and_then(|r| next[r]);
                    b
                }
                (None, None) => break,
            };
            if d > r {
                break;
            }
            let o = &waiting[j];
            if (o.t.min, o.t.max) != (t.t.min, t.t.max) || d > reach(o) {
                continue;
            }
            near.push(j);
        }
        if near.len() + 1 < t.t.min as usize {
            continue;
        }
        let mut group = near;
        group.push(i);
        group.sort_unstable();
        for &j in &group {
            taken[j] = true;
            let p = pos[j];
            if let Some(a) = prev[p] {
                next[a] = next[p];
            }
            if let Some(b) = next[p] {
                prev[b] = prev[p];
            }
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
