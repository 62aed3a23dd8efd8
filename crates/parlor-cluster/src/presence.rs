use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use parlor_core::{now_ms, UserId};

use crate::{ready, BoxFuture, Result};

/// A pod as presence knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    /// Its name.
    pub name: String,
    /// When its registration lapses unless it heartbeats again (ms since the epoch).
    pub expires_at_ms: i64,
    /// Sessions it has online.
    pub sessions: usize,
}

/// Presence is responsible for knowing which pods are alive and which sessions each user
/// has online, cluster-wide.
///
/// Invariants every implementation keeps: a pod that stops heartbeating drops out of
/// `pods` once its registration lapses, and `sweep` then removes its sessions; `sessions`
/// never lists a session of a lapsed pod.
pub trait Presence: Send + Sync + 'static {
    /// Registers `pod`, or refreshes it, for `ttl`. True if it was not registered (its
    /// first beat, or its sessions were swept after it lapsed): the pod must list its
    /// sessions again.
    fn heartbeat(&self, pod: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>>;
    /// Records a session of `user` as online on `pod`.
    fn online(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>>;
    /// Records a session as gone.
    fn offline(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>>;
    /// The (session, pod) pairs of a user, on live pods.
    fn sessions(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<(String, String)>>>;
    /// The live pods.
    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodInfo>>>;
    /// Removes the sessions of pods whose registration lapsed; returns how many.
    fn sweep(&self) -> BoxFuture<'_, Result<usize>>;
}

#[derive(Default)]
struct Inner {
    users: HashMap<UserId, Vec<(String, String)>>,
    pods: HashMap<String, i64>,
}

/// The single-pod presence map.
#[derive(Default)]
pub struct MemoryPresence {
    inner: Mutex<Inner>,
}

impl MemoryPresence {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live(pods: &HashMap<String, i64>, pod: &str, now: i64) -> bool {
    pods.get(pod).is_some_and(|until| *until > now)
}

impl Presence for MemoryPresence {
    fn heartbeat(&self, pod: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>> {
        let until = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let fresh = self.lock().pods.insert(pod.to_owned(), until).is_none();
        ready(Ok(fresh))
    }

    fn online(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>> {
        self.lock()
            .users
            .entry(user.clone())
            .or_default()
            .push((session.to_owned(), pod.to_owned()));
        ready(Ok(()))
    }

    fn offline(&self, user: &UserId, session: &str, _pod: &str) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.lock();
        if let Some(list) = inner.users.get_mut(user) {
            list.retain(|(s, _)| s != session);
            if list.is_empty() {
                inner.users.remove(user);
            }
        }
        ready(Ok(()))
    }

    fn sessions(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        let inner = self.lock();
        let now = now_ms();
        let out = inner
            .users
            .get(user)
            .into_iter()
            .flatten()
            .filter(|(_, pod)| live(&inner.pods, pod, now))
            .cloned()
            .collect();
        ready(Ok(out))
    }

    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodInfo>>> {
        let inner = self.lock();
        let now = now_ms();
        let mut out: Vec<PodInfo> = inner
            .pods
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(name, until)| PodInfo {
                name: name.clone(),
                expires_at_ms: *until,
                sessions: inner
                    .users
                    .values()
                    .flatten()
                    .filter(|(_, p)| p == name)
                    .count(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        ready(Ok(out))
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize>> {
        let mut inner = self.lock();
        let now = now_ms();
        let dead: Vec<String> = inner
            .pods
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let mut swept = 0;
        for pod in &dead {
            inner.pods.remove(pod);
        }
        inner.users.retain(|_, list| {
            let before = list.len();
            list.retain(|(_, p)| !dead.contains(p));
            swept += before - list.len();
            !list.is_empty()
        });
        ready(Ok(swept))
    }
}
