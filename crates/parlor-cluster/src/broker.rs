use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use bytes::Bytes;
use parlor_core::RoomId;
use parlor_protocol::frame_with_seq;

use crate::{ready, BoxFuture, Result};

/// Receives the frames of one room on this pod.
pub trait EventSink: Send + Sync {
    /// Called once per room event, in sequence order, with the final frame.
    fn deliver(&self, frame: &Bytes);
}

/// Names one subscription, for unsubscribing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriptionId(u64);

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

/// Broker is responsible for room events between pods.
///
/// Invariants every implementation keeps: each published event gets the room's next seq
/// (strictly increasing, assigned in one place); subscribers receive a room's events in seq
/// order; retained events can be replayed by seq.
pub trait Broker: Send + Sync + 'static {
    /// Enqueues one room event body (from `parlor_protocol::encode_body`). Never blocks;
    /// fails only when the backend is down or its queue is full.
    fn publish(&self, room: &RoomId, body: Bytes) -> Result<()>;
    /// Starts delivering the room's events to `sink` (a pod's first local member joined).
    fn subscribe(
        &self,
        room: &RoomId,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId>>;
    /// Stops a subscription (the pod's last local member left).
    fn unsubscribe(&self, room: &RoomId, id: SubscriptionId) -> BoxFuture<'_, Result<()>>;
    /// The seq of the room's newest event (0 if none).
    fn last_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<u64>>;
    /// The retained events after `since`.
    fn replay(&self, room: &RoomId, since: u64) -> BoxFuture<'_, Result<Replay>>;
    /// Drops a deleted room's seq and retained events.
    fn forget(&self, room: &RoomId) -> BoxFuture<'_, Result<()>>;
}

#[derive(Default)]
struct Channel {
    seq: u64,
    recent: VecDeque<(u64, Instant, Bytes)>,
    sinks: Vec<(SubscriptionId, Arc<dyn EventSink>)>,
}

/// The single-pod broker: events go straight to in-process sinks.
pub struct MemoryBroker {
    retention: Retention,
    channels: Mutex<HashMap<RoomId, Arc<Mutex<Channel>>>>,
    next_sub: std::sync::atomic::AtomicU64,
}

// A poisoned lock only means a sink panicked mid-delivery; the channel data stays valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryBroker {
    /// A broker keeping `retention` per room.
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            channels: Mutex::new(HashMap::new()),
            next_sub: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn channel(&self, room: &RoomId) -> Arc<Mutex<Channel>> {
        lock(&self.channels)
            .entry(room.clone())
            .or_default()
            .clone()
    }
}

impl Broker for MemoryBroker {
    fn publish(&self, room: &RoomId, body: Bytes) -> Result<()> {
        let channel = self.channel(room);
        // Held across delivery so that concurrent publishers cannot reorder a room's events.
        let mut ch = lock(&channel);
        ch.seq += 1;
        let frame = frame_with_seq(ch.seq, &body);
        let now = Instant::now();
        let seq = ch.seq;
        ch.recent.push_back((seq, now, frame.clone()));
        while ch.recent.len() > self.retention.count
            || ch
                .recent
                .front()
                .is_some_and(|(_, t, _)| now.duration_since(*t) > self.retention.age)
        {
            ch.recent.pop_front();
        }
        for (_, sink) in &ch.sinks {
            sink.deliver(&frame);
        }
        Ok(())
    }

    fn subscribe(
        &self,
        room: &RoomId,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<SubscriptionId>> {
        let id = SubscriptionId(
            self.next_sub
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        );
        lock(&self.channel(room)).sinks.push((id, sink));
        ready(Ok(id))
    }

    fn unsubscribe(&self, room: &RoomId, id: SubscriptionId) -> BoxFuture<'_, Result<()>> {
        if let Some(ch) = lock(&self.channels).get(room) {
            lock(ch).sinks.retain(|(s, _)| *s != id);
        }
        ready(Ok(()))
    }

    fn last_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<u64>> {
        let seq = lock(&self.channels).get(room).map_or(0, |ch| lock(ch).seq);
        ready(Ok(seq))
    }

    fn replay(&self, room: &RoomId, since: u64) -> BoxFuture<'_, Result<Replay>> {
        let channel = self.channel(room);
        let ch = lock(&channel);
        let now = Instant::now();
        let out = if since > ch.seq {
            Replay::Gone
        } else if since == ch.seq {
            Replay::Events(Vec::new())
        } else {
            let kept: Vec<&(u64, Instant, Bytes)> = ch
                .recent
                .iter()
                .filter(|(_, t, _)| now.duration_since(*t) <= self.retention.age)
                .collect();
            match kept.first() {
                Some((first, _, _)) if *first <= since + 1 => Replay::Events(
                    kept.iter()
                        .filter(|(s, _, _)| *s > since)
                        .map(|(_, _, f)| f.clone())
                        .collect(),
                ),
                _ => Replay::Gone,
            }
        };
        ready(Ok(out))
    }

    fn forget(&self, room: &RoomId) -> BoxFuture<'_, Result<()>> {
        lock(&self.channels).remove(room);
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_protocol::{encode_body, v1};
    use prost_like::decode_seq;

    mod prost_like {
        /// Reads the seq field the broker prefixed.
        pub(super) fn decode_seq(frame: &[u8]) -> u64 {
            assert_eq!(frame[0], 0x10);
            let mut v = 0u64;
            for (i, b) in frame[1..].iter().enumerate() {
                v |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    break;
                }
            }
            v
        }
    }

    struct Collect(Mutex<Vec<u64>>);
    impl EventSink for Collect {
        fn deliver(&self, frame: &Bytes) {
            self.0.lock().unwrap().push(decode_seq(frame));
        }
    }

    fn body(n: i64) -> Bytes {
        encode_body(v1::envelope::Body::Ping(v1::Ping { client_time_ms: n }))
    }

    #[tokio::test]
    async fn seq_order_subscribe_and_replay() {
        let b = MemoryBroker::new(Retention {
            count: 3,
            age: Duration::from_secs(60),
        });
        let room = RoomId::from("r");
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let sub = b.subscribe(&room, sink.clone()).await.unwrap();
        for i in 0..5 {
            b.publish(&room, body(i)).unwrap();
        }
        assert_eq!(*sink.0.lock().unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(b.last_seq(&room).await.unwrap(), 5);
        // Retention keeps 3..=5.
        match b.replay(&room, 2).await.unwrap() {
            Replay::Events(ev) => {
                assert_eq!(
                    ev.iter().map(|f| decode_seq(f)).collect::<Vec<_>>(),
                    vec![3, 4, 5]
                )
            }
            Replay::Gone => panic!("3..=5 are retained"),
        }
        assert_eq!(b.replay(&room, 1).await.unwrap(), Replay::Gone);
        assert_eq!(b.replay(&room, 5).await.unwrap(), Replay::Events(vec![]));
        assert_eq!(b.replay(&room, 9).await.unwrap(), Replay::Gone);
        b.unsubscribe(&room, sub).await.unwrap();
        b.publish(&room, body(6)).unwrap();
        assert_eq!(sink.0.lock().unwrap().len(), 5);
        b.forget(&room).await.unwrap();
        assert_eq!(b.last_seq(&room).await.unwrap(), 0);
    }
}
