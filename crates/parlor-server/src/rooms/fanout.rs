//! The local fan-out of one room: the outboxes of this pod's members.
//!
//! Events are coalesced. `deliver` appends the event, already framed as a WebSocket binary
//! message, to a pending batch; the batch goes to every member as one shared `Bytes` when
//! the delivering task yields (a flush task is spawned on the current runtime), when it
//! reaches `MAX_BATCH_BYTES` or `MAX_BATCH_FRAMES`, or before the member set changes or the
//! room replies to one member directly. So a room
//! busy with many events wakes each member's writer once per batch, and writes the batch
//! without copying it per member.
//!
//! Invariant: a batch goes to the members as they were when its events were delivered, and
//! batches are pushed in delivery order (the batch is taken and pushed under one lock).
//!
//! A joiner's snapshot is as of some seq; events up to it may still be on their way from the
//! broker (Redis delivers after the publish has returned). So a member is added "after" a
//! seq: at once if the fan-out has delivered that far, else it waits and is added right
//! after that event, and gets every later one exactly once.
//!
//! An answer to a request that made an event (`answer_after`) waits in the same way, and
//! goes out right after that event: it may come on another path (the pod inbox) and
//! arrive first.
//!
//! In a room with `echo_events` off, a game event goes out on its own: the batch before it
//! is pushed first, then the event to every member but its sender, who gets an Ack with
//! the event's seq in its place. The sender is read from the event itself, so this holds
//! on any pod that fans the room out.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc, Mutex, MutexGuard, Weak,
};

use bytes::{Bytes, BytesMut};
use parlor_cluster::EventSink;
use parlor_core::UserId;
use parlor_protocol::{
    encode_envelope,
    v1::{self, envelope::Body},
};
use prost::Message as _;

use actix_http::ws::{Codec, Message};
use tokio_util::codec::Encoder;

use crate::{ws::Outbox, Metrics};

/// A batch is flushed at once when it grows past this, so that a flood of events in one
/// mailbox drain neither waits nor builds one huge buffer. It is no more than the smallest
/// hard queue limit a pod may configure (`ws.outbound_hard_bytes` >= 16 KiB), and an empty
/// queue always takes one batch.
const MAX_BATCH_BYTES: usize = 16 * 1024;
/// Frames per batch, so that one batch of tiny events does not delay the first of them.
const MAX_BATCH_FRAMES: u32 = 64;

struct Inner {
    members: Vec<(UserId, Outbox)>,
    /// Members to add once the event with their seq has been delivered.
    waiting: Vec<(UserId, Outbox, u64)>,
    /// Answers to push once the event with their seq has been delivered.
    answers: Vec<(u64, Outbox, Bytes)>,
    /// The seq of the newest event delivered.
    position: u64,
    /// The newest events, oldest first, for a joiner seated after some of them went out
    /// (its seating came on another channel than the events). Empty when `keep` is 0.
    recent: std::collections::VecDeque<(u64, Bytes)>,
    keep: usize,
    /// The server-side WebSocket codec (unmasked frames), as each connection's body uses.
    codec: Codec,
    /// Framed events not yet pushed, and how many.
    pending: BytesMut,
    frames: u32,
}

/// This pod's members of one room.
pub(crate) struct LocalFanout {
    inner: Mutex<Inner>,
    /// A flush task is queued; no second one is needed.
    scheduled: AtomicBool,
    /// Senders get their own game events (the room's `echo_events`).
    echo: AtomicBool,
    me: Weak<LocalFanout>,
    metrics: Arc<Metrics>,
}

impl LocalFanout {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            inner: Mutex::new(Inner {
                members: Vec::new(),
                waiting: Vec::new(),
                answers: Vec::new(),
                position: 0,
                recent: std::collections::VecDeque::new(),
                keep: 0,
                codec: Codec::new(),
                pending: BytesMut::new(),
                frames: 0,
            }),
            scheduled: AtomicBool::new(false),
            echo: AtomicBool::new(true),
            me: me.clone(),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fan-out that keeps its newest `keep` events, for members seated by a message that
    /// may come after events it should have had (a room homed on another pod).
    pub(crate) fn keeping(metrics: Arc<Metrics>, keep: usize) -> Arc<Self> {
        let me = Self::new(metrics);
        me.lock().keep = keep;
        me
    }

    /// Adds or replaces a member's outbox, to get every event after seq `after`.
    pub(crate) fn insert(&self, user: UserId, outbox: Outbox, after: u64) {
        let mut inner = self.lock();
        push_pending(&mut inner);
        if after < inner.position {
            // Events it should have had went out before it was seated.
            let first = inner.recent.front().map_or(u64::MAX, |(s, _)| *s);
            if first > after + 1 {
                outbox.send(crate::ws::Out::Close(
                    parlor_protocol::close::RESUME,
                    "room events went by while joining; rejoin with your last seq".into(),
                ));
                return;
            }
            for (_, f) in inner.recent.iter().filter(|(s, _)| *s > after) {
                outbox.push(f.clone());
            }
        }
        let before = inner.members.len() + inner.waiting.len();
        inner.members.retain(|(u, _)| u != &user);
        inner.waiting.retain(|(u, _, _)| u != &user);
        if inner.members.len() + inner.waiting.len() == before {
            self.metrics.members.inc();
        }
        if after > inner.position {
            inner.waiting.push((user, outbox, after));
        } else {
            inner.members.push((user, outbox));
        }
    }

    /// Pushes `frame` to `outbox` once event `seq` has gone out here: an answer sent on
    /// another path than the room's events must not overtake the event it answers.
    pub(crate) fn answer_after(&self, seq: u64, outbox: Outbox, frame: Bytes) {
        let mut inner = self.lock();
        push_pending(&mut inner);
        if seq <= inner.position {
            outbox.push(frame);
        } else {
            inner.answers.push((seq, outbox, frame));
        }
    }

    /// Pushes every held answer now: the fan-out stops (its room moved), and an answer
    /// to a recorded event must not be lost, even if its event comes another way.
    pub(crate) fn release_answers(&self) {
        let mut inner = self.lock();
        push_pending(&mut inner);
        for (_, outbox, f) in std::mem::take(&mut inner.answers) {
            outbox.push(f);
        }
    }

    /// Where a new subscription starts: the broker delivers every event after `seq`
    /// (some may have been delivered already: the position never goes back).
    pub(crate) fn start_at(&self, seq: u64) {
        let mut inner = self.lock();
        inner.position = inner.position.max(seq);
    }

    /// Takes a member out, returning the seq it had reached (its snapshot's, if it was
    /// still waiting), so that it can join again from there.
    pub(crate) fn take(&self, user: &UserId) -> Option<u64> {
        let mut inner = self.lock();
        push_pending(&mut inner);
        let waiting = inner
            .waiting
            .iter()
            .find(|(u, _, _)| u == user)
            .map(|(_, _, after)| *after);
        let active = inner.members.iter().any(|(u, _)| u == user);
        inner.members.retain(|(u, _)| u != user);
        inner.waiting.retain(|(u, _, _)| u != user);
        let at = waiting.or(active.then_some(inner.position));
        if at.is_some() {
            self.metrics.members.dec();
        }
        at
    }

    /// Removes a member, after pushing it the events delivered so far; returns whether it
    /// was there.
    pub(crate) fn remove(&self, user: &UserId) -> bool {
        let mut inner = self.lock();
        push_pending(&mut inner);
        let before = inner.members.len() + inner.waiting.len();
        inner.members.retain(|(u, _)| u != user);
        inner.waiting.retain(|(u, _, _)| u != user);
        let removed = inner.members.len() + inner.waiting.len() < before;
        if removed {
            self.metrics.members.dec();
        }
        removed
    }

    /// Follows the room's `echo_events` setting.
    pub(crate) fn set_echo(&self, echo: bool) {
        self.echo.store(echo, Ordering::Relaxed);
    }

    /// Number of local members.
    pub(crate) fn len(&self) -> usize {
        let inner = self.lock();
        inner.members.len() + inner.waiting.len()
    }

    /// Pushes the pending batch now. A room calls this before replying to one member
    /// directly, so that the reply does not overtake the room events before it.
    pub(crate) fn flush(&self) {
        push_pending(&mut self.lock());
    }

    fn schedule(&self) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.me.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Some(me) = me.upgrade() {
                        // Cleared before taking the batch: a deliver racing this flush then
                        // schedules another rather than being stranded.
                        me.scheduled.store(false, Ordering::Release);
                        me.flush();
                    }
                });
            }
            Err(_) => {
                self.scheduled.store(false, Ordering::Release);
                self.flush();
            }
        }
    }
}

/// Adds the members waiting for `seq`, once the batch up to it has gone out.
fn admit_waiting(inner: &mut Inner, seq: u64, frame: &Bytes) {
    inner.position = seq;
    if inner.keep > 0 {
        if inner.recent.len() == inner.keep {
            inner.recent.pop_front();
        }
        inner.recent.push_back((seq, frame.clone()));
    }
    if inner.answers.iter().any(|(after, ..)| *after <= seq) {
        push_pending(inner);
        let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.answers)
            .into_iter()
            .partition(|(after, ..)| *after <= seq);
        inner.answers = wait;
        for (_, outbox, f) in ready {
            outbox.push(f);
        }
    }
    if inner.waiting.iter().all(|(_, _, after)| *after > seq) {
        return;
    }
    push_pending(inner);
    let (ready, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.waiting)
        .into_iter()
        .partition(|(_, _, after)| *after <= seq);
    inner.waiting = wait;
    inner
        .members
        .extend(ready.into_iter().map(|(u, o, _)| (u, o)));
}

fn push_pending(inner: &mut Inner) {
    if inner.frames == 0 {
        return;
    }
    let batch: Bytes = inner.pending.split().freeze();
    inner.frames = 0;
    for (_, outbox) in &inner.members {
        outbox.push_batch(batch.clone());
    }
}

/// The Ack that stands for a game event in its sender's stream, and the sender, if
/// `frame` is a game event.
fn own_event(frame: &Bytes) -> Option<(v1::Ack, UserId)> {
    let env = v1::Envelope::decode(&frame[..]).ok()?;
    match env.body? {
        Body::GameEvent(ev) if !ev.sender_id.is_empty() => Some((
            v1::Ack {
                seq: env.seq,
                room_id: ev.room_id,
            },
            UserId(ev.sender_id),
        )),
        _ => None,
    }
}

impl LocalFanout {
    /// Delivers a game event to every member but its sender, who gets an Ack instead.
    fn deliver_without_echo(&self, seq: u64, frame: &Bytes, ack: v1::Ack, sender: &UserId) {
        let mut inner = self.lock();
        push_pending(&mut inner);
        let Inner { codec, members, .. } = &mut *inner;
        let mut framed = BytesMut::new();
        let _ = codec.encode(Message::Binary(frame.clone()), &mut framed);
        let framed = framed.freeze();
        let ack = encode_envelope(0, 0, Body::Ack(ack));
        for (user, outbox) in members.iter() {
            if user == sender {
                outbox.push(ack.clone());
            } else {
                outbox.push_batch(framed.clone());
            }
        }
        let n = members.len();
        admit_waiting(&mut inner, seq, frame);
        drop(inner);
        self.metrics.fanout_size.observe(n as f64);
        self.metrics.out_room_event.inc_by(n as u64);
    }
}

impl EventSink for LocalFanout {
    /// Events were lost and history cannot give them back: members are closed with
    /// RESUME rather than left to go on from a silent gap.
    fn lost(&self, after: u64) {
        let mut inner = self.lock();
        // Their sessions close: nothing is left to wait for.
        inner.answers.clear();
        tracing::warn!(
            after,
            members = inner.members.len(),
            "room events lost; members resume"
        );
        let waiting = inner.waiting.iter().map(|(_, o, _)| o);
        for outbox in inner.members.iter().map(|(_, o)| o).chain(waiting) {
            outbox.send(crate::ws::Out::Close(
                parlor_protocol::close::RESUME,
                "room events were lost; rejoin with your last seq".into(),
            ));
        }
    }

    fn deliver(&self, seq: u64, frame: &Bytes) {
        self.metrics.events_received.inc();
        if !self.echo.load(Ordering::Relaxed) {
            if let Some((ack, sender)) = own_event(frame) {
                return self.deliver_without_echo(seq, frame, ack, &sender);
            }
        }
        let mut inner = self.lock();
        let Inner { codec, pending, .. } = &mut *inner;
        // Only control frames over 125 bytes fail to encode; this is a binary frame.
        let _ = codec.encode(Message::Binary(frame.clone()), pending);
        inner.frames += 1;
        let n = inner.members.len();
        let full = inner.pending.len() >= MAX_BATCH_BYTES || inner.frames >= MAX_BATCH_FRAMES;
        if full {
            push_pending(&mut inner);
        }
        admit_waiting(&mut inner, seq, frame);
        drop(inner);
        self.metrics.fanout_size.observe(n as f64);
        self.metrics.out_room_event.inc_by(n as u64);
        if !full {
            self.schedule();
        }
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
            fanout.insert(user, outbox, 0);
        }
        fanout
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::{frames_of, Detached, Out, QueueLimits};

    /// How many frames the next queued item holds, if it is a batch.
    fn next_batch_frames(rx: &mut Detached) -> Option<usize> {
        match rx.try_recv()? {
            Out::Batch(b) => Some(frames_of(&b).len()),
            _ => None,
        }
    }

    /// A queue that holds `hard` bytes, with no soft limit to speak of.
    fn limits(hard: usize) -> QueueLimits {
        QueueLimits {
            soft_bytes: hard,
            soft_for: std::time::Duration::from_secs(3600),
            hard_bytes: hard,
        }
    }

    fn member(fanout: &LocalFanout, name: &str, metrics: &Arc<Metrics>) -> Detached {
        let (outbox, rx) = Outbox::detached(limits(1 << 20), metrics.clone());
        // Joins after whatever was delivered so far.
        let at = fanout.lock().position;
        fanout.insert(UserId(name.into()), outbox, at);
        rx
    }

    /// The frames a member received, as payloads, batch by batch.
    fn received(rx: &mut Detached) -> Vec<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        while let Some(o) = rx.try_recv() {
            match o {
                Out::Batch(b) => out.push(frames_of(&b).iter().map(|f| f.to_vec()).collect()),
                Out::Frame(f) => out.push(vec![f.to_vec()]),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn with_echo_off_the_sender_gets_an_ack_in_its_events_place() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        fanout.set_echo(false);
        let mut a = member(&fanout, "a", &metrics);
        let mut b = member(&fanout, "b", &metrics);
        let event = |seq, from: &str| {
            let body = parlor_protocol::encode_body(Body::GameEvent(v1::GameEvent {
                room_id: "r".into(),
                sender_id: from.into(),
                ..Default::default()
            }));
            parlor_protocol::frame_with_seq(seq, &body)
        };
        let chat = parlor_protocol::frame_with_seq(
            6,
            &parlor_protocol::encode_body(Body::ChatMessage(v1::ChatMessage::default())),
        );
        fanout.deliver(6, &chat);
        fanout.deliver(7, &event(7, "a"));
        fanout.deliver(8, &event(8, "b"));
        tokio::task::yield_now().await;
        let ack = |seq| {
            let ack = v1::Ack {
                seq,
                room_id: "r".into(),
            };
            vec![encode_envelope(0, 0, Body::Ack(ack)).to_vec()]
        };
        // Batches split around each event without echo; the order holds for everyone.
        assert_eq!(
            received(&mut a),
            vec![vec![chat.to_vec()], ack(7), vec![event(8, "b").to_vec()]]
        );
        assert_eq!(
            received(&mut b),
            vec![vec![chat.to_vec()], vec![event(7, "a").to_vec()], ack(8)]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_goes_out_after_the_event_it_answers() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        let (outbox, mut a) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("a".into()), outbox.clone(), 0);
        fanout.deliver(1, &Bytes::from_static(b"e1"));
        // The answer to event 2 arrived before event 2 did: it waits.
        fanout.answer_after(2, outbox.clone(), Bytes::from_static(b"ack2"));
        // The answer to event 1 goes now, after the batch holding event 1.
        fanout.answer_after(1, outbox.clone(), Bytes::from_static(b"ack1"));
        fanout.deliver(2, &Bytes::from_static(b"e2"));
        let payloads = |v: &[&[u8]]| v.iter().map(|p| vec![p.to_vec()]).collect::<Vec<_>>();
        assert_eq!(
            received(&mut a),
            payloads(&[b"e1", b"ack1", b"e2", b"ack2"])
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn events_in_one_turn_go_out_as_one_batch_in_order() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        let mut a = member(&fanout, "a", &metrics);
        for i in 0..3u8 {
            fanout.deliver(u64::from(i) + 1, &Bytes::from(vec![i; 3]));
        }
        // Not before the delivering task yields.
        assert!(received(&mut a).is_empty());
        tokio::task::yield_now().await;
        assert_eq!(
            received(&mut a),
            vec![vec![vec![0; 3], vec![1; 3], vec![2; 3]]]
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn membership_changes_and_direct_replies_keep_the_order() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        let mut a = member(&fanout, "a", &metrics);
        fanout.deliver(1, &Bytes::from_static(b"e1"));
        // A joiner does not get what was delivered before it joined.
        let mut b = member(&fanout, "b", &metrics);
        fanout.deliver(2, &Bytes::from_static(b"e2"));
        // A direct reply comes after the room events before it.
        fanout.flush();
        assert!(fanout.lock().members[0]
            .1
            .push(Bytes::from_static(b"reply")));
        fanout.deliver(3, &Bytes::from_static(b"e3"));
        // A leaver still gets what was delivered while it was in.
        assert!(fanout.remove(&UserId("a".into())));
        tokio::task::yield_now().await;
        let e = |s: &[u8]| vec![s.to_vec()];
        assert_eq!(
            received(&mut a),
            vec![e(b"e1"), e(b"e2"), e(b"reply"), e(b"e3")]
        );
        assert_eq!(received(&mut b), vec![e(b"e2"), e(b"e3")]);
    }

    #[test]
    fn a_full_batch_is_pushed_at_once_and_bytes_count_against_the_queue() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        // 64 frames of 3 bytes (a 2-byte header and the event).
        let (outbox, mut rx) = Outbox::detached(limits(64 * 3), metrics.clone());
        fanout.insert(UserId("a".into()), outbox, 0);
        // No runtime here, so each event is pushed as it comes; 65 frames exceed the
        // queue's 192 bytes and the member is evicted.
        for seq in 1..=65 {
            fanout.deliver(seq, &Bytes::from_static(b"x"));
        }
        assert_eq!(received(&mut rx).len(), 64);
        assert_eq!(metrics.slow_consumer_disconnects.get(), 1);
        // Big events: the batch is pushed inline once it passes MAX_BATCH_BYTES.
        let fanout = LocalFanout::new(metrics.clone());
        let (outbox, mut rx) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("b".into()), outbox, 0);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let big = Bytes::from(vec![7u8; 4000]);
            for seq in 1..=5 {
                fanout.deliver(seq, &big);
            }
            assert_eq!(next_batch_frames(&mut rx), Some(5));
            assert!(rx.try_recv().is_none());
        });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn one_turn_of_many_events_does_not_evict_a_member_with_a_small_queue() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        let (outbox, mut rx) = Outbox::detached(limits(16 * 3), metrics.clone());
        fanout.insert(UserId("a".into()), outbox, 0);
        for seq in 1..=40 {
            fanout.deliver(seq, &Bytes::from_static(b"x"));
        }
        tokio::task::yield_now().await;
        assert_eq!(metrics.slow_consumer_disconnects.get(), 0);
        assert_eq!(next_batch_frames(&mut rx), Some(40));
        // More than MAX_BATCH_FRAMES in one turn are split into batches.
        for seq in 41..=140 {
            fanout.deliver(seq, &Bytes::from_static(b"y"));
        }
        tokio::task::yield_now().await;
        assert_eq!(next_batch_frames(&mut rx), Some(64));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_joiner_ahead_of_delivery_waits_for_its_snapshot_seq() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::new(metrics.clone());
        let mut a = member(&fanout, "a", &metrics);
        // b's snapshot is as of seq 2, but only 1 has been delivered here.
        fanout.deliver(1, &Bytes::from_static(b"e1"));
        let (outbox, mut b) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("b".into()), outbox, 2);
        assert_eq!(fanout.len(), 2);
        for (seq, e) in [(2, &b"e2"[..]), (3, b"e3"), (4, b"e4")] {
            fanout.deliver(seq, &Bytes::from_static(e));
        }
        tokio::task::yield_now().await;
        let all: Vec<Vec<u8>> = received(&mut a).concat();
        assert_eq!(
            all,
            vec![
                b"e1".to_vec(),
                b"e2".to_vec(),
                b"e3".to_vec(),
                b"e4".to_vec()
            ]
        );
        // Nothing up to its snapshot, everything after, once.
        assert_eq!(
            received(&mut b).concat(),
            vec![b"e3".to_vec(), b"e4".to_vec()]
        );
        assert!(fanout.remove(&UserId("b".into())));
        assert_eq!(fanout.len(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_member_seated_late_gets_what_went_by_and_is_taken_out_where_it_was() {
        let metrics = Arc::new(Metrics::new());
        let fanout = LocalFanout::keeping(metrics.clone(), 4);
        fanout.start_at(10);
        // A subscription's position never goes back.
        fanout.start_at(3);
        for (seq, e) in [(11, &b"e11"[..]), (12, b"e12"), (13, b"e13")] {
            fanout.deliver(seq, &Bytes::from_static(e));
        }
        // Seated after 11, when 12 and 13 had gone out already: it gets them first.
        let (outbox, mut late) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("late".into()), outbox, 11);
        fanout.deliver(14, &Bytes::from_static(b"e14"));
        tokio::task::yield_now().await;
        let got: Vec<Vec<u8>> = received(&mut late).concat();
        assert_eq!(got, vec![b"e12".to_vec(), b"e13".to_vec(), b"e14".to_vec()]);
        // Too far back for what is kept: closed, to rejoin with its last seq.
        let (outbox, mut stale) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("stale".into()), outbox, 2);
        assert!(
            matches!(stale.try_recv(), Some(Out::Close(c, _)) if c == parlor_protocol::close::RESUME)
        );
        // Taken out at the seq reached; a waiting one at its snapshot's.
        let (outbox, _w) = Outbox::detached(limits(1 << 20), metrics.clone());
        fanout.insert(UserId("ahead".into()), outbox, 20);
        assert_eq!(fanout.take(&UserId("late".into())), Some(14));
        assert_eq!(fanout.take(&UserId("ahead".into())), Some(20));
        assert_eq!(fanout.take(&UserId("late".into())), None);
    }
}
