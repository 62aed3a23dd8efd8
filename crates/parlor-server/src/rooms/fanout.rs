//! The local fan-out of one room: the outboxes of this pod's members.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use parlor_cluster::EventSink;
use parlor_core::UserId;

use crate::{ws::Outbox, Metrics};

/// This pod's members of one room. Every event is delivered as the same `Bytes` to each,
/// under one lock per event (not per member).
pub(crate) struct LocalFanout {
    members: Mutex<Vec<(UserId, Outbox)>>,
    metrics: Arc<Metrics>,
}

impl LocalFanout {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            members: Mutex::new(Vec::new()),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(UserId, Outbox)>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds or replaces a member's outbox.
    pub(crate) fn insert(&self, user: UserId, outbox: Outbox) {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|(u, _)| u != &user);
        if m.len() == before {
            self.metrics.members.inc();
        }
        m.push((user, outbox));
    }

    /// Removes a member; returns whether it was there.
    pub(crate) fn remove(&self, user: &UserId) -> bool {
        let mut m = self.lock();
        let before = m.len();
        m.retain(|(u, _)| u != user);
        let removed = m.len() < before;
        if removed {
            self.metrics.members.dec();
        }
        removed
    }

    /// Number of local members.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

impl EventSink for LocalFanout {
    fn deliver(&self, frame: &Bytes) {
        let members = self.lock();
        for (_, outbox) in members.iter() {
            outbox.push(frame.clone());
        }
        let n = members.len();
        drop(members);
        self.metrics.fanout_size.observe(n as f64);
        self.metrics.out_room_event.inc_by(n as u64);
    }
}

// `fanout` is private to `rooms`, so the benchmark constructor lives here, as an inherent
// impl of the public bench type (impls may sit anywhere in the crate).
#[cfg(feature = "bench")]
impl crate::bench_support::Fanout {
    /// A LocalFanout over `members`, as the sink a room subscribes to its broker.
    pub(crate) fn local_sink(
        metrics: Arc<Metrics>,
        members: impl IntoIterator<Item = (UserId, Outbox)>,
    ) -> Arc<dyn EventSink> {
        let fanout = LocalFanout::new(metrics);
        for (user, outbox) in members {
            fanout.insert(user, outbox);
        }
        Arc::new(fanout)
    }
}
