//! One connection's bounded outbound queue and the task that drains it into the socket.
//!
//! Room fan-out calls [`Outbox::push`] from any thread: a `try_send` of shared `Bytes`, no
//! await, no per-member allocation. When the queue is full the client is a slow consumer:
//! it is evicted (closed with 4000) instead of slowing the room. The writer hands every
//! frame that is ready to actix-ws, whose response body encodes all queued frames into one
//! buffer per poll, so frames are coalesced into one write.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_ws::{CloseCode, CloseReason, Session};
use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use crate::Metrics;

/// What the writer sends.
#[derive(Debug)]
pub(crate) enum Out {
    Frame(Bytes),
    Ping,
    Pong(Bytes),
    Close(u16, String),
}

struct Evict {
    fired: AtomicBool,
    notify: Notify,
}

/// A cheap, cloneable handle to one connection's queue.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
    evict: Arc<Evict>,
    metrics: Arc<Metrics>,
}

impl Outbox {
    /// A queue of `capacity` frames with no socket and no writer: the caller reads the
    /// receiver. For benchmarks, which drive the real push path without a connection.
    #[cfg(feature = "bench")]
    pub(crate) fn detached(
        capacity: usize,
        metrics: Arc<Metrics>,
    ) -> (Outbox, mpsc::Receiver<Out>) {
        let (tx, rx) = mpsc::channel(capacity);
        let evict = Arc::new(Evict {
            fired: AtomicBool::new(false),
            notify: Notify::new(),
        });
        (Outbox { tx, evict, metrics }, rx)
    }

    /// Queues a frame. Returns false if the connection is gone or was just evicted.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        self.send(Out::Frame(frame))
    }

    /// Queues a control message (ping, pong, close) in order with the frames.
    pub(crate) fn send(&self, out: Out) -> bool {
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
            self.evict.notify.notify_one();
        }
    }
}

/// Creates a queue of `capacity` frames and spawns its writer on the current arbiter.
/// `on_done` runs once when the writer stops (socket closed or client evicted).
pub(crate) fn start(
    session: Session,
    capacity: usize,
    metrics: Arc<Metrics>,
    on_done: impl FnOnce() + 'static,
) -> Outbox {
    let (tx, rx) = mpsc::channel(capacity);
    let evict = Arc::new(Evict {
        fired: AtomicBool::new(false),
        notify: Notify::new(),
    });
    actix_web::rt::spawn(write_loop(session, rx, evict.clone(), on_done));
    Outbox { tx, evict, metrics }
}

const CLOSE_WAIT: Duration = Duration::from_secs(1);

async fn close(session: Session, code: u16, reason: String) {
    let reason = CloseReason {
        code: CloseCode::from(code),
        description: Some(reason),
    };
    // A slow consumer's socket may never drain; do not wait on it for ever.
    let _ = tokio::time::timeout(CLOSE_WAIT, session.close(Some(reason))).await;
}

async fn write_loop(
    mut session: Session,
    mut rx: mpsc::Receiver<Out>,
    evict: Arc<Evict>,
    on_done: impl FnOnce(),
) {
    const SLOW: u16 = parlor_protocol::close::SLOW_CONSUMER;
    loop {
        let next = tokio::select! {
            biased;
            _ = evict.notify.notified() => None,
            out = rx.recv() => out,
        };
        let out = match next {
            Some(Out::Close(code, reason)) => {
                close(session, code, reason).await;
                break;
            }
            Some(out) => out,
            None => {
                if evict.fired.load(Ordering::Acquire) {
                    close(session, SLOW, "slow consumer".into()).await;
                }
                break;
            }
        };
        // Every send races eviction: a peer that stops reading must not wedge the writer.
        let sent = tokio::select! {
            biased;
            _ = evict.notify.notified() => {
                close(session, SLOW, "slow consumer".into()).await;
                break;
            }
            r = async {
                match out {
                    Out::Frame(bytes) => session.binary(bytes).await,
                    Out::Ping => session.ping(b"").await,
                    Out::Pong(bytes) => session.pong(&bytes).await,
                    Out::Close(..) => Ok(()),
                }
            } => r,
        };
        if sent.is_err() {
            break;
        }
    }
    on_done();
}
