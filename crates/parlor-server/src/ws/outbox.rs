//! One connection's bounded outbound queue, drained straight into the HTTP response body.
//!
//! Room fan-out calls [`Outbox::push_batch`] from any thread: a `try_send` of one shared
//! `Bytes` holding a batch of already-framed events, no await, no per-member allocation.
//! The queue is bounded in frames, not entries: when more than its capacity are queued the
//! client is a slow consumer and is evicted (closed with 4000) instead of slowing the room.
//!
//! [`OutboundBody`] is the WebSocket response body. Each poll encodes every queued frame
//! (up to a batch) into one buffer, so a burst leaves in one write. Frames cross one
//! channel; an earlier design crossed two (this queue, then actix-ws's `Session`), and that
//! hop dominated the fan-out profile (docs/benchmarks.md).

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use actix_web::body::BoxBody;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::task::AtomicWaker;
use tokio::sync::mpsc;
use tokio_util::codec::Encoder;

use crate::Metrics;

/// What the connection sends, in order.
#[derive(Debug)]
pub(crate) enum Out {
    Frame(Bytes),
    /// `.1` events, each already framed as a WebSocket binary message.
    Batch(Bytes, u32),
    Ping,
    Pong(Bytes),
    Close(u16, String),
}

/// Frames encoded per poll of the body, so one busy connection cannot hog its worker.
const BATCH: usize = 64;

/// Appends `payload` framed as one unmasked, final WebSocket binary message (RFC 6455 5.2).
pub(crate) fn put_binary_frame(dst: &mut BytesMut, payload: &[u8]) {
    let len = payload.len();
    dst.reserve(len + 10);
    dst.put_u8(0x82);
    if len < 126 {
        dst.put_u8(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        dst.put_u8(126);
        dst.put_u16(len);
    } else {
        dst.put_u8(127);
        dst.put_u64(len as u64);
    }
    dst.put_slice(payload);
}

struct Evict {
    /// Frames queued and not yet encoded, against `limit`.
    queued: AtomicUsize,
    limit: usize,
    fired: AtomicBool,
    /// The body's waker, so that eviction is seen even while the queue is idle.
    body: AtomicWaker,
    /// Tells the session, which then ends even if the socket never drains.
    session: Option<actix::Recipient<super::SessionNotice>>,
}

/// A cheap, cloneable handle to one connection's queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
    evict: Arc<Evict>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// A queue of `capacity` frames with no socket: the caller reads the receiver. For
    /// benchmarks, which drive the real push path without a connection.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn detached(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbox, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(capacity);
        let evict = Arc::new(Evict {
            queued: AtomicUsize::new(0),
            limit: capacity,
            fired: AtomicBool::new(false),
            body: AtomicWaker::new(),
            session: None,
        });
        (Outbox { tx, evict, metrics }, rx)
    }

    /// Queues a frame. Returns false if the connection is gone or was just evicted.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        self.send(Out::Frame(frame))
    }

    /// Queues `frames` events framed by [`put_binary_frame`], shared with other members.
    pub(crate) fn push_batch(&self, batch: Bytes, frames: u32) -> bool {
        self.send(Out::Batch(batch, frames))
    }

    /// Queues a control message (ping, pong, close) in order with the frames.
    pub(crate) fn send(&self, out: Out) -> bool {
        let n = match &out {
            Out::Batch(_, n) => *n as usize,
            _ => 1,
        };
        if self.evict.queued.fetch_add(n, Ordering::AcqRel) + n > self.evict.limit {
            self.evict();
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.evict();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn evict(&self) {
        if !self.evict.fired.swap(true, Ordering::AcqRel) {
            self.metrics.slow_consumer_disconnects.inc();
            self.evict.body.wake();
            if let Some(session) = &self.evict.session {
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
    rx: mpsc::Receiver<Out>,
    evict: Arc<Evict>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
    on_done: Option<Box<dyn FnOnce()>>,
    /// actix-ws's own body, kept alive but never polled: dropping it is what tells
    /// actix-ws's inbound `MessageStream` that the connection is gone.
    _upgrade: BoxBody,
}

/// Creates a queue of `capacity` frames and the response body that drains it. `upgrade`
/// is the body actix-ws built for the handshake; `on_done` runs when the body is dropped,
/// that is, when the connection has ended.
pub(crate) fn start(
    capacity: usize,
    metrics: Arc<Metrics>,
    session: actix::Recipient<super::SessionNotice>,
    upgrade: BoxBody,
    on_done: impl FnOnce() + 'static,
) -> (Outbox, OutboundBody) {
    let (tx, rx) = mpsc::channel(capacity);
    let evict = Arc::new(Evict {
        queued: AtomicUsize::new(0),
        limit: capacity,
        fired: AtomicBool::new(false),
        body: AtomicWaker::new(),
        session: Some(session),
    });
    let body = OutboundBody {
        rx,
        evict: evict.clone(),
        codec: Codec::new(),
        buf: BytesMut::new(),
        done: false,
        on_done: Some(Box::new(on_done)),
        _upgrade: upgrade,
    };
    (Outbox { tx, evict, metrics }, body)
}

fn close_message(code: u16, reason: String) -> Message {
    Message::Close(Some(CloseReason {
        code: CloseCode::from(code),
        description: Some(reason),
    }))
}

impl OutboundBody {
    fn encode(&mut self, msg: Message) {
        // Encoding into a BytesMut only fails for control frames over 125 bytes; ours are
        // shorter, and a failure drops that frame rather than the connection.
        let _ = self.codec.encode(msg, &mut self.buf);
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
            if this.evict.fired.load(Ordering::Acquire) {
                // Queued frames are dropped: this client could not keep up with them.
                this.buf.clear();
                this.encode(close_message(
                    parlor_protocol::close::SLOW_CONSUMER,
                    "slow consumer".into(),
                ));
                this.done = true;
                return Poll::Ready(Some(Ok(this.buf.split().freeze())));
            }
            let mut taken = 0;
            while taken < BATCH {
                match this.rx.poll_recv(cx) {
                    Poll::Ready(Some(out)) => {
                        taken += 1;
                        let n = match &out {
                            Out::Batch(_, n) => *n as usize,
                            _ => 1,
                        };
                        this.evict.queued.fetch_sub(n, Ordering::AcqRel);
                        match out {
                            Out::Frame(bytes) => this.encode(Message::Binary(bytes)),
                            // A batch alone goes out as it is, shared with the other
                            // members rather than copied.
                            Out::Batch(bytes, _) if this.buf.is_empty() => {
                                return Poll::Ready(Some(Ok(bytes)));
                            }
                            Out::Batch(bytes, _) => this.buf.extend_from_slice(&bytes),
                            Out::Ping => this.encode(Message::Ping(Bytes::new())),
                            Out::Pong(bytes) => this.encode(Message::Pong(bytes)),
                            Out::Close(code, reason) => {
                                this.encode(close_message(code, reason));
                                this.done = true;
                                break;
                            }
                        }
                    }
                    Poll::Ready(None) => {
                        this.done = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if !this.buf.is_empty() {
                return Poll::Ready(Some(Ok(this.buf.split().freeze())));
            }
            if this.done {
                return Poll::Ready(None);
            }
            this.evict.body.register(cx.waker());
            // Eviction may have fired between the check above and the registration.
            if !this.evict.fired.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for OutboundBody {
    fn drop(&mut self) {
        if let Some(done) = self.on_done.take() {
            done();
        }
    }
}
