//! One connection's bounded outbound queue, drained straight into the HTTP response body.
//!
//! Room fan-out calls [`Outbox::push_batch`] from any thread: one short lock to queue a
//! shared `Bytes` holding a batch of already-framed events, no await, no per-member
//! allocation.
//! The queue is bounded in bytes, with two limits, as redis-server bounds a subscriber's
//! output buffer. Past the hard limit the client is a slow consumer at once. Above the soft
//! limit for longer than its time it is one too. A client that falls behind briefly (a
//! background tab, a GC pause) is kept. A slow consumer is evicted (closed with 4000)
//! instead of slowing the room.
//!
//! [`OutboundBody`] is the WebSocket response body. Each poll encodes every queued frame
//! (up to a batch) into one buffer, so a burst leaves in one write. Frames cross one
//! channel; an earlier design crossed two (this queue, then actix-ws's `Session`), and that
//! hop dominated the fan-out profile (docs/benchmarks.md).
//!
//! A batch pushed while the queue is empty and the writer has nothing in flight is written
//! to the socket in place, by the pushing thread, with a non-blocking write; only what the
//! socket does not take is queued for the writer task. So a paced room event reaches an
//! idle member with one syscall and no task wake-up, as redis-server writes to its
//! subscribers. Invariant: bytes reach the socket in push order, because an in-place write
//! happens only under the queue lock, with nothing queued and nothing in flight.

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use actix_web::body::BoxBody;
use bytes::{Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

use crate::Metrics;

/// What the connection sends, in order.
#[derive(Debug)]
pub(crate) enum Out {
    Frame(Bytes),
    /// Events, each already framed as a WebSocket binary message.
    Batch(Bytes),
    Ping,
    Pong(Bytes),
    Close(u16, String),
}

/// Frames encoded per poll of the body, so one busy connection cannot hog its worker.
const BATCH: usize = 64;

/// How much one connection may have queued.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes above which the client is dropped once it has stayed above for `soft_for`.
    pub(crate) soft_bytes: usize,
    pub(crate) soft_for: Duration,
    /// Bytes above which the client is dropped at once.
    pub(crate) hard_bytes: usize,
}

/// The queue and what both ends share.
struct Shared {
    queue: Mutex<Queue>,
    limits: Limits,
    metrics: Arc<Metrics>,
    fired: AtomicBool,
    /// The body's waker: woken by a push, an eviction or the last sender leaving.
    body: AtomicWaker,
    /// Tells the session, which then ends even if the socket never drains.
    session: Option<actix::Recipient<super::SessionNotice>>,
}

/// A VecDeque rather than a channel: it holds no memory while empty (a bounded tokio
/// channel allocates a 32-slot block up front, 1.3 KB for every idle session).
struct Queue {
    items: VecDeque<Out>,
    /// Bytes in `items`.
    bytes: usize,
    /// Since when `bytes` has been above the soft limit.
    over_soft: Option<Instant>,
    /// Live `Outbox` handles; the body ends when the last one is gone.
    senders: usize,
    /// False once the body is dropped: pushes are refused.
    open: bool,
    /// The socket, for in-place writes; None until linked and after the body is dropped.
    socket: Option<Arc<TcpStream>>,
    /// The writer has taken items whose bytes may not all be on the socket yet.
    in_flight: bool,
    /// The front item is the rest of a frame already partly written in place: it must go
    /// out before anything else, a slow consumer's Close included.
    partial: bool,
}

/// What an item counts against the limits: its payload (a header is a few bytes more).
fn size(out: &Out) -> usize {
    match out {
        Out::Frame(b) | Out::Batch(b) | Out::Pong(b) => b.len(),
        Out::Ping => 0,
        Out::Close(_, reason) => reason.len(),
    }
}

impl Shared {
    fn new(
        limits: Limits,
        metrics: Arc<Metrics>,
        session: Option<actix::Recipient<super::SessionNotice>>,
    ) -> Arc<Self> {
        Arc::new(Shared {
            queue: Mutex::new(Queue {
                items: VecDeque::new(),
                bytes: 0,
                over_soft: None,
                senders: 1,
                open: true,
                socket: None,
                in_flight: false,
                partial: false,
            }),
            limits,
            metrics,
            fired: AtomicBool::new(false),
            body: AtomicWaker::new(),
            session,
        })
    }

    // A poisoned lock means a panic between two plain field updates; the queue stays usable.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the oldest item, keeping the byte count and the soft-limit clock.
    fn pop(&self, q: &mut Queue) -> Option<Out> {
        let out = q.items.pop_front()?;
        q.partial = false;
        q.bytes -= size(&out);
        if q.bytes <= self.limits.soft_bytes && q.over_soft.take().is_some() {
            self.metrics.outbound_over_soft.dec();
        }
        Some(out)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let q = self.queue.get_mut().unwrap_or_else(|p| p.into_inner());
        if q.over_soft.is_some() {
            self.metrics.outbound_over_soft.dec();
        }
    }
}

/// A cheap, cloneable handle to one connection's queue.
pub(crate) struct Outbox {
    shared: Arc<Shared>,
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Outbox {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut q = self.shared.lock();
            q.senders -= 1;
            q.senders == 0
        };
        if last {
            self.shared.body.wake();
        }
    }
}

/// The reading end of a queue with no socket, for tests and benchmarks.
#[cfg(any(test, feature = "bench"))]
pub(crate) struct Detached(Arc<Shared>);

#[cfg(any(test, feature = "bench"))]
impl Detached {
    /// Takes the oldest queued item, if any.
    pub(crate) fn try_recv(&mut self) -> Option<Out> {
        let mut q = self.0.lock();
        self.0.pop(&mut q)
    }
}

impl Outbox {
    /// A queue with no socket: the caller reads it. For tests and benchmarks, which drive
    /// the real push path without a connection.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn detached(limits: Limits, metrics: Arc<Metrics>) -> (Outbox, Detached) {
        let shared = Shared::new(limits, metrics, None);
        (
            Outbox {
                shared: shared.clone(),
            },
            Detached(shared),
        )
    }

    /// Queues a frame. Returns false if the connection is gone or was just evicted.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        self.send(Out::Frame(frame))
    }

    /// Queues events, each already framed as a WebSocket binary message (by the same codec
    /// the body uses), shared with other members.
    pub(crate) fn push_batch(&self, batch: Bytes) -> bool {
        let q = self.shared.lock();
        let idle = q.items.is_empty() && !q.in_flight && !self.shared.fired.load(Ordering::Acquire);
        // Straight to the socket, past tokio's readiness cache: the writer's own write
        // corrects that cache if this one found the socket full. A failed write leaves the
        // batch to the writer, which waits for the socket or sees the error itself.
        let written = match &q.socket {
            Some(socket) if idle => socket2::SockRef::from(&**socket).send(&batch).unwrap_or(0),
            _ => 0,
        };
        if written == 0 {
            return self.enqueue(q, Out::Batch(batch));
        }
        if written < batch.len() {
            // Half a frame is on the wire: its rest is queued whatever the limits say, under
            // the same lock, so that nothing can get between the two parts.
            let mut q = q;
            q.bytes += batch.len() - written;
            q.items.push_back(Out::Batch(batch.slice(written..)));
            q.partial = true;
            drop(q);
            self.shared.body.wake();
        }
        true
    }

    /// Queues a control message (ping, pong, close) in order with the frames.
    pub(crate) fn send(&self, out: Out) -> bool {
        self.enqueue(self.shared.lock(), out)
    }

    fn enqueue(&self, mut q: MutexGuard<'_, Queue>, out: Out) -> bool {
        if !q.open || self.shared.fired.load(Ordering::Acquire) {
            return false;
        }
        let limits = &self.shared.limits;
        let bytes = q.bytes + size(&out);
        // An empty queue takes any one item: a client that has read everything is not
        // slow, however many events one room turn produced.
        let slow = !q.items.is_empty()
            && (bytes > limits.hard_bytes
                || q.over_soft.is_some_and(|t| t.elapsed() >= limits.soft_for));
        if slow {
            drop(q);
            self.evict();
            return false;
        }
        if bytes > limits.soft_bytes && q.over_soft.is_none() {
            q.over_soft = Some(Instant::now());
            self.shared.metrics.outbound_over_soft.inc();
        }
        q.bytes = bytes;
        q.items.push_back(out);
        drop(q);
        self.shared.body.wake();
        true
    }

    fn evict(&self) {
        if !self.shared.fired.swap(true, Ordering::AcqRel) {
            self.shared.metrics.slow_consumer_disconnects.inc();
            self.shared.body.wake();
            if let Some(session) = &self.shared.session {
                session.do_send(super::SessionNotice::Close {
                    code: parlor_protocol::close::SLOW_CONSUMER,
                    reason: "slow consumer".into(),
                });
            }
        }
    }
}

/// The WebSocket response body: the queue's frames, encoded in batches.
pub(crate) struct OutboundBody {
    shared: Arc<Shared>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
    on_done: Option<Box<dyn FnOnce()>>,
    /// actix-ws's own body, kept alive but never polled: dropping it is what tells
    /// actix-ws's inbound `MessageStream` that the connection is gone.
    _upgrade: BoxBody,
}

/// Creates a queue bounded by `limits` and the response body that drains it. `upgrade`
/// is the body actix-ws built for the handshake; `on_done` runs when the body is dropped,
/// that is, when the connection has ended.
pub(crate) fn start(
    limits: Limits,
    metrics: Arc<Metrics>,
    session: actix::Recipient<super::SessionNotice>,
    upgrade: BoxBody,
    on_done: impl FnOnce() + 'static,
) -> (Outbox, OutboundBody) {
    let shared = Shared::new(limits, metrics, Some(session));
    let body = OutboundBody {
        shared: shared.clone(),
        codec: Codec::new(),
        buf: BytesMut::new(),
        done: false,
        on_done: Some(Box::new(on_done)),
        _upgrade: upgrade,
    };
    (Outbox { shared }, body)
}

/// The writer's side of a queue: what lets the socket's writer and in-place writes share
/// the socket without reordering bytes.
pub(crate) struct Link(Arc<Shared>);

impl Link {
    /// Lets pushes write to `socket` in place. Called once the handshake's response head
    /// is on the socket, so that no frame can precede it.
    pub(crate) fn attach(&self, socket: Arc<TcpStream>) {
        let mut q = self.0.lock();
        if q.open {
            q.socket = Some(socket);
        }
    }

    /// Called by the writer once everything it took so far is on the socket.
    pub(crate) fn written(&self) {
        let mut q = self.0.lock();
        if q.items.is_empty() {
            q.in_flight = false;
        }
    }
}

/// Where the socket's task and the WebSocket route meet: the slot goes in with the request,
/// and the queue's `Link` comes out once the session has started.
pub(crate) struct LinkSlot(pub(crate) std::rc::Rc<std::cell::Cell<Option<Link>>>);

impl OutboundBody {
    /// Gives the socket's writer this queue's `Link`.
    pub(crate) fn link(&self, slot: &LinkSlot) {
        slot.0.set(Some(Link(self.shared.clone())));
    }
}

/// The payloads of a batch's binary frames (server frames: unmasked). For tests and
/// benchmarks; panics on anything but whole binary frames.
#[cfg(any(test, feature = "bench"))]
pub(crate) fn frames_of(mut batch: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while !batch.is_empty() {
        assert_eq!(batch[0], 0x82, "a final binary frame");
        let (head, len) = match batch[1] {
            126 => (4, usize::from(u16::from_be_bytes([batch[2], batch[3]]))),
            127 => (
                10,
                u64::from_be_bytes(batch[2..10].try_into().unwrap()) as usize,
            ),
            n => (2, usize::from(n)),
        };
        frames.push(&batch[head..head + len]);
        batch = &batch[head + len..];
    }
    frames
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseReason {
        code: CloseCode::from(code),
        description: Some(reason),
    }))
}

fn encode(codec: &mut Codec, buf: &mut BytesMut, msg: Message) {
    // Encoding into a BytesMut only fails for control frames over 125 bytes; ours are
    // shorter, and a failure drops that frame rather than the connection.
    let _ = codec.encode(msg, buf);
}

impl OutboundBody {
    /// Encodes up to `BATCH` queued items. Returns a batch that should go out as it is,
    /// shared rather than copied, when it is the first item.
    fn take(&mut self) -> Option<Bytes> {
        let Self {
            shared,
            codec,
            buf,
            done,
            ..
        } = self;
        let mut q = shared.lock();
        for _ in 0..BATCH {
            let Some(out) = shared.pop(&mut q) else {
                break;
            };
            q.in_flight = true;
            match out {
                Out::Batch(bytes) if buf.is_empty() => return Some(bytes),
                Out::Batch(bytes) => buf.extend_from_slice(&bytes),
                Out::Frame(bytes) => encode(codec, buf, Message::Binary(bytes)),
                Out::Ping => encode(codec, buf, Message::Ping(Bytes::new())),
                Out::Pong(bytes) => encode(codec, buf, Message::Pong(bytes)),
                Out::Close(code, reason) => {
                    encode(codec, buf, close_message(code, reason));
                    *done = true;
                    // Nothing may follow a Close frame, in place or not.
                    q.socket = None;
                    break;
                }
            }
        }
        if q.items.is_empty() {
            // An idle connection keeps no queue memory.
            if q.items.capacity() > 8 {
                q.items = VecDeque::new();
            }
            if q.senders == 0 {
                *done = true;
            }
        }
        None
    }

    fn idle(&self) -> bool {
        let q = self.shared.lock();
        q.items.is_empty() && q.senders > 0 && !self.shared.fired.load(Ordering::Acquire)
    }
}

impl futures_util::Stream for OutboundBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.shared.fired.load(Ordering::Acquire) {
                // Queued frames are dropped: this client could not keep up with them. The
                // rest of a frame already partly written goes first, or the Close would
                // land inside that frame.
                this.buf.clear();
                let mut q = this.shared.lock();
                if q.partial {
                    if let Some(Out::Batch(rest)) = q.items.pop_front() {
                        this.buf.extend_from_slice(&rest);
                    }
                    q.partial = false;
                }
                drop(q);
                encode(
                    &mut this.codec,
                    &mut this.buf,
                    close_message(
                        parlor_protocol::close::SLOW_CONSUMER,
                        "slow consumer".into(),
                    ),
                );
                this.done = true;
                return Poll::Ready(Some(Ok(std::mem::take(&mut this.buf).freeze())));
            }
            if let Some(batch) = this.take() {
                return Poll::Ready(Some(Ok(batch)));
            }
            if !this.buf.is_empty() {
                // Taken, not split: a split leaves the allocation's unused tail with an idle
                // connection.
                return Poll::Ready(Some(Ok(std::mem::take(&mut this.buf).freeze())));
            }
            if this.done {
                return Poll::Ready(None);
            }
            this.shared.body.register(cx.waker());
            // A push, an eviction or the last sender may have come before the registration.
            if this.idle() {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for OutboundBody {
    fn drop(&mut self) {
        {
            let mut q = self.shared.lock();
            q.open = false;
            q.items = VecDeque::new();
            q.bytes = 0;
            q.socket = None;
            if q.over_soft.take().is_some() {
                self.shared.metrics.outbound_over_soft.dec();
            }
        }
        if let Some(done) = self.on_done.take() {
            done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    /// A queue linked to a real socket whose peer never reads, and its body.
    async fn stalled(limits: Limits) -> (Outbox, OutboundBody, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (io, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&io)
            .set_send_buffer_size(4096)
            .unwrap();
        let shared = Shared::new(limits, Arc::new(Metrics::new()), None);
        Link(shared.clone()).attach(Arc::new(io));
        let body = OutboundBody {
            shared: shared.clone(),
            codec: Codec::new(),
            buf: BytesMut::new(),
            done: false,
            on_done: None,
            _upgrade: BoxBody::new(()),
        };
        (Outbox { shared }, body, peer)
    }

    /// One binary frame of `n` payload bytes, as the fan-out frames events.
    fn frame(n: usize) -> Bytes {
        let mut buf = BytesMut::new();
        let _ = Codec::new().encode(Message::Binary(Bytes::from(vec![7u8; n])), &mut buf);
        buf.freeze()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_evicted_client_gets_the_rest_of_a_half_written_frame_before_the_close() {
        let limits = Limits {
            soft_bytes: 1 << 20,
            soft_for: Duration::from_secs(60),
            hard_bytes: 1 << 20,
        };
        let (outbox, mut body, _peer) = stalled(limits).await;
        // Frames go out in place until the socket takes only part of one.
        let big = frame(64 * 1024);
        let mut pushes = 0;
        while !outbox.shared.lock().partial {
            assert!(outbox.push_batch(big.clone()));
            pushes += 1;
            assert!(pushes < 1000, "the socket never filled");
        }
        let rest = match outbox.shared.lock().items.front() {
            Some(Out::Batch(rest)) => rest.clone(),
            other => panic!("queued {other:?}"),
        };
        assert!(!rest.is_empty() && rest.len() < big.len());
        // Past the hard limit: the client is evicted.
        while outbox.push_batch(big.clone()) {}
        let chunk = body.next().await.unwrap().unwrap();
        assert_eq!(
            &chunk[..rest.len()],
            &rest[..],
            "the frame's rest goes first"
        );
        let mut close = BytesMut::new();
        encode(
            &mut Codec::new(),
            &mut close,
            close_message(
                parlor_protocol::close::SLOW_CONSUMER,
                "slow consumer".into(),
            ),
        );
        assert_eq!(
            &chunk[rest.len()..],
            &close[..],
            "then the Close, and nothing else"
        );
        assert!(body.next().await.is_none());
    }
}
