use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use parlor_core::RoomId;

use crate::{ready, BoxFuture, Checkpoint, Claim, ClusterError, Health, Lease, Leases, Result};

/// Receives the frames of one room on this pod.
pub trait EventSink: Send + Sync {
    /// Called once per room event, in seq order without gaps, with the final frame.
    fn deliver(&self, seq: u64, frame: &Bytes);
    /// As `deliver`, with what caused the event; for sinks that match events to requests.
    fn deliver_from(&self, seq: u64, frame: &Bytes, origin: Origin) {
        let _ = origin;
        self.deliver(seq, frame);
    }
    /// The events after `after` could not be delivered, nor found in history: what the
    /// sink holds is stale from there on.
    fn lost(&self, after: u64) {
        let _ = after;
    }
}

/// What caused an event: the asking session's number (the same on every pod) and its
/// request id. Pods match an event to a request they forwarded with it, and a new home
/// refuses a retry that history shows applied. The default is no origin.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Origin {
    pub session: u64,
    pub request: u64,
}

impl Origin {
    /// True unless a request caused the event.
    pub fn is_none(&self) -> bool {
        self.request == 0
    }

    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.session.to_be_bytes());
        out[8..].copy_from_slice(&self.request.to_be_bytes());
        out
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Self> {
        let (s, r) = (b.get(..8)?, b.get(8..16)?);
        Some(Self {
            session: u64::from_be_bytes(s.try_into().ok()?),
            request: u64::from_be_bytes(r.try_into().ok()?),
        })
    }
}

/// One event as history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retained {
    pub seq: u64,
    pub frame: Bytes,
    pub origin: Origin,
}

/// Names one subscription, for unsubscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(pub(crate) u64);

/// What a reconnecting client missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every frame after the given seq, oldest first (possibly none).
    Events(Vec<Bytes>),
    /// Some were dropped from retention (or the seq is from the future): resync.
    Gone,
}

/// How many recent events a room keeps for replay, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many events per room.
    pub count: usize,
    /// None older than this.
    pub age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            count: 256,
            age: Duration::from_secs(120),
        }
    }
}

/// One write to a room's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// Sets a field.
    Set(String, Bytes),
    /// Removes a field.
    Del(String),
}

/// Broker is responsible for room events between pods, and for each room's checkpoint.
///
/// Invariants every implementation keeps:
/// - A room's events are numbered by its home pod; `publish` records the event in history,
///   applies its checkpoint writes and publishes it in one atomic step, and refuses it
///   (changing nothing) unless the lease is current and the seq is the room's next.
/// - Subscribers receive a room's events in seq order, each once; a gap is filled from
///   history before later events are delivered, or reported with `EventSink::lost`.
/// - Retained events can be replayed by seq.
pub trait Broker: Send + Sync + 'static {
    /// Records and publishes one event: `frame` is `frame_with_seq(seq, body)`, and
    /// `origin` is kept with it in history and on the way to subscribers. The future
    /// resolves once the event is recorded; nothing may be acknowledged before.
    fn publish(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        frame: Bytes,
        origin: Origin,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'static, Result<()>>;
    /// Replaces the room's checkpoint whole, at `seq` (a new room, or a home rewriting a
    /// checkpoint that the backend lost). Fenced like `publish`, but needs no next seq.
    fn reset(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'_, Result<()>>;
    /// The room's checkpoint, if it has one.
    fn load(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Checkpoint>>>;
    /// Starts delivering the room's events to `sink` (a pod's first local member joined).
    /// Returns the position: the sink gets every event after it.
    fn subscribe(
        &self,
        room: &RoomId,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<(SubscriptionId, u64)>>;
    /// Stops a subscription (the pod's last local member left).
    fn unsubscribe(&self, room: &RoomId, id: SubscriptionId) -> BoxFuture<'_, Result<()>>;
    /// The seq of the room's newest event (0 if none).
    fn last_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<u64>>;
    /// The retained events after `since`.
    fn replay(&self, room: &RoomId, since: u64) -> BoxFuture<'_, Result<Replay>>;
    /// Every retained event, oldest first (for a new home to learn what its room did).
    fn retained(&self, room: &RoomId) -> BoxFuture<'_, Result<Vec<Retained>>>;
    /// Drops a closed room's seq, history, checkpoint and lease.
    fn forget(&self, room: &RoomId) -> BoxFuture<'_, Result<()>>;
}

#[derive(Default)]
struct Channel {
    seq: u64,
    recent: VecDeque<(u64, Instant, Bytes, Origin)>,
    sinks: Vec<(SubscriptionId, Arc<dyn EventSink>)>,
    state: Checkpoint,
    /// The newest epoch handed out; survives the lease lapsing.
    epoch: u64,
    lease: Option<(Lease, Instant)>,
}

impl Channel {
    fn current(&self, now: Instant) -> Option<&Lease> {
        self.lease
            .as_ref()
            .filter(|(_, until)| *until > now)
            .map(|(l, _)| l)
    }

    fn fenced(&self, lease: &Lease, now: Instant) -> Result<()> {
        match self.current(now) {
            Some(l) if l == lease => Ok(()),
            _ => Err(ClusterError::Fenced(format!(
                "pod {} epoch {} no longer holds the lease",
                lease.pod, lease.epoch
            ))),
        }
    }
}

/// The single-pod broker and leases: events go straight to in-process sinks.
pub struct MemoryBroker {
    retention: Retention,
    lease_for: Duration,
    channels: Mutex<HashMap<RoomId, Arc<Mutex<Channel>>>>,
    next_sub: AtomicU64,
}

// A poisoned lock only means a sink panicked mid-delivery; the channel data stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBroker {
    /// A broker keeping `retention` per room, with leases that last `lease_for`.
    pub fn new(retention: Retention, lease_for: Duration) -> Self {
        Self {
            retention,
            lease_for,
            channels: Mutex::new(HashMap::new()),
            next_sub: AtomicU64::new(1),
        }
    }

    fn channel(&self, room: &RoomId) -> Arc<Mutex<Channel>> {
        lock(&self.channels)
            .entry(room.clone())
            .or_default()
            .clone()
    }

    fn existing(&self, room: &RoomId) -> Option<Arc<Mutex<Channel>>> {
        lock(&self.channels).get(room).cloned()
    }
}

impl Broker for MemoryBroker {
    fn publish(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        frame: Bytes,
        origin: Origin,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'static, Result<()>> {
        let channel = self.channel(room);
        // Held across delivery so that concurrent publishers cannot reorder a room's events.
        let mut ch = lock(&channel);
        let now = Instant::now();
        if let Err(e) = ch.fenced(lease, now) {
            return ready(Err(e));
        }
        if seq != ch.seq + 1 {
            return ready(Err(ClusterError::Fenced(format!(
                "seq {seq} is not next after {}",
                ch.seq
            ))));
        }
        ch.seq = seq;
        ch.state.seq = seq;
        ch.state.apply(&writes);
        ch.recent.push_back((seq, now, frame.clone(), origin));
        while ch.recent.len() > self.retention.count
            || ch
                .recent
                .front()
                .is_some_and(|(_, t, ..)| now.duration_since(*t) > self.retention.age)
        {
            ch.recent.pop_front();
        }
        for (_, sink) in &ch.sinks {
            sink.deliver_from(seq, &frame, origin);
        }
        ready(Ok(()))
    }

    fn reset(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'_, Result<()>> {
        let channel = self.channel(room);
        let mut ch = lock(&channel);
        if let Err(e) = ch.fenced(lease, Instant::now()) {
            return ready(Err(e));
        }
        ch.state = Checkpoint::default();
        ch.state.apply(&writes);
        ch.state.seq = seq;
        if seq != ch.seq {
            // The seq moved on without this store: what it kept no longer lines up.
            ch.seq = seq;
            ch.recent.clear();
        }
        ready(Ok(()))
    }

    fn load(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Checkpoint>>> {
        let out = self
            .existing(room)
            .map(|ch| lock(&ch).state.clone())
            .filter(|s| !s.fields.is_empty());
        ready(Ok(out))
    }

    fn subscribe(
        &self,
        room: &RoomId,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<(SubscriptionId, u64)>> {
        let id = SubscriptionId(self.next_sub.fetch_add(1, Ordering::Relaxed));
        let channel = self.channel(room);
        let mut ch = lock(&channel);
        ch.sinks.push((id, sink));
        ready(Ok((id, ch.seq)))
    }

    fn unsubscribe(&self, room: &RoomId, id: SubscriptionId) -> BoxFuture<'_, Result<()>> {
        if let Some(ch) = self.existing(room) {
            lock(&ch).sinks.retain(|(s, _)| *s != id);
        }
        ready(Ok(()))
    }

    fn last_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<u64>> {
        let seq = self.existing(room).map_or(0, |ch| lock(&ch).seq);
        ready(Ok(seq))
    }

    fn replay(&self, room: &RoomId, since: u64) -> BoxFuture<'_, Result<Replay>> {
        let Some(channel) = self.existing(room) else {
            return ready(Ok(if since == 0 {
                Replay::Events(Vec::new())
            } else {
                Replay::Gone
            }));
        };
        let ch = lock(&channel);
        let now = Instant::now();
        let kept = ch
            .recent
            .iter()
            .filter(|(_, t, ..)| now.duration_since(*t) <= self.retention.age)
            .map(|(s, _, f, _)| (*s, f));
        ready(Ok(select(kept, since, ch.seq)))
    }

    fn retained(&self, room: &RoomId) -> BoxFuture<'_, Result<Vec<Retained>>> {
        let now = Instant::now();
        let out = self.existing(room).map_or_else(Vec::new, |ch| {
            lock(&ch)
                .recent
                .iter()
                .filter(|(_, t, ..)| now.duration_since(*t) <= self.retention.age)
                .map(|(seq, _, frame, origin)| Retained {
                    seq: *seq,
                    frame: frame.clone(),
                    origin: *origin,
                })
                .collect()
        });
        ready(Ok(out))
    }

    fn forget(&self, room: &RoomId) -> BoxFuture<'_, Result<()>> {
        lock(&self.channels).remove(room);
        ready(Ok(()))
    }
}

/// The events after `since` out of a room's retained ones (oldest first), or Gone when
/// some of them are no longer kept.
pub(crate) fn select<'a>(
    kept: impl Iterator<Item = (u64, &'a Bytes)>,
    since: u64,
    last: u64,
) -> Replay {
    if since > last {
        return Replay::Gone;
    }
    if since == last {
        return Replay::Events(Vec::new());
    }
    let mut out = Vec::new();
    let mut expect = since + 1;
    for (seq, frame) in kept.filter(|(s, _)| *s > since) {
        if seq != expect {
            return Replay::Gone;
        }
        out.push(frame.clone());
        expect += 1;
    }
    if expect == last + 1 {
        Replay::Events(out)
    } else {
        Replay::Gone
    }
}

impl Leases for MemoryBroker {
    fn claim(&self, room: &RoomId, pod: &str) -> BoxFuture<'_, Result<Claim>> {
        let channel = self.channel(room);
        let mut ch = lock(&channel);
        let now = Instant::now();
        let until = now + self.lease_for;
        let claim = match ch.current(now).cloned() {
            Some(l) if &*l.pod == pod => {
                ch.lease = Some((l.clone(), until));
                Claim::Home(l)
            }
            Some(l) => Claim::Elsewhere(l),
            None => {
                ch.epoch += 1;
                let l = Lease {
                    pod: pod.into(),
                    epoch: ch.epoch,
                };
                ch.lease = Some((l.clone(), until));
                Claim::Home(l)
            }
        };
        ready(Ok(claim))
    }

    fn renew(&self, held: Vec<(RoomId, Lease)>) -> BoxFuture<'_, Result<Vec<bool>>> {
        let now = Instant::now();
        let out = held
            .iter()
            .map(|(room, lease)| {
                let Some(channel) = self.existing(room) else {
                    return false;
                };
                let mut ch = lock(&channel);
                let ok = ch.current(now) == Some(lease);
                if ok {
                    ch.lease = Some((lease.clone(), now + self.lease_for));
                }
                ok
            })
            .collect();
        ready(Ok(out))
    }

    fn release(&self, room: &RoomId, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        if let Some(channel) = self.existing(room) {
            let mut ch = lock(&channel);
            if ch.lease.as_ref().is_some_and(|(l, _)| l == lease) {
                ch.lease = None;
            }
        }
        ready(Ok(()))
    }

    fn holder(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Lease>>> {
        let now = Instant::now();
        let out = self
            .existing(room)
            .and_then(|ch| lock(&ch).current(now).cloned());
        ready(Ok(out))
    }
}

impl Health for MemoryBroker {
    fn ready(&self) -> bool {
        true
    }
}
