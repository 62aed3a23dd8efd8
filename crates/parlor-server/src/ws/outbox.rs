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

/// Frames taken from the queue per wake-up.
const BATCH: usize = 64;

async fn write_loop(
    mut session: Session,
    mut rx: mpsc::Receiver<Out>,
    evict: Arc<Evict>,
    on_done: impl FnOnce(),
) {
    const SLOW: u16 = parlor_protocol::close::SLOW_CONSUMER;
    // One eviction waiter for the writer's whole life: making one per frame showed up in
    // the fan-out profile (docs/benchmarks.md).
    let evicted = evict.notify.notified();
    tokio::pin!(evicted);
    let mut batch = Vec::with_capacity(BATCH);
    let close_with: Option<(u16, String)> = 'run: loop {
        let first = tokio::select! {
            biased;
            _ = &mut evicted => break 'run Some((SLOW, "slow consumer".into())),
            out = rx.recv() => out,
        };
        let Some(first) = first else {
            break 'run evict
                .fired
                .load(Ordering::Acquire)
                .then(|| (SLOW, "slow consumer".into()));
        };
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(out) => batch.push(out),
                Err(_) => break,
            }
        }
        for out in batch.drain(..) {
            let send = match out {
                Out::Close(code, reason) => break 'run Some((code, reason)),
                out => {
                    async {
                        match out {
                            Out::Frame(bytes) => session.binary(bytes).await,
                            Out::Ping => session.ping(b"").await,
                            Out::Pong(bytes) => session.pong(&bytes).await,
                            Out::Close(..) => Ok(()),
                        }
                    }
                }
            };
            // Every send races eviction: a peer that stops reading must not wedge the writer.
            let sent = tokio::select! {
                biased;
                _ = &mut evicted => break 'run Some((SLOW, "slow consumer".into())),
                r = send => r,
            };
            if sent.is_err() {
                break 'run None;
            }
        }
    };
    if let Some((code, reason)) = close_with {
        close(session, code, reason).await;
    }
    on_done();
}
