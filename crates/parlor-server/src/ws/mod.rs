//! WebSocket connections: one actor per socket, and its bounded outbound queue.

mod conn;
mod outbox;
mod session;

pub(crate) use conn::upgrade;
#[cfg(any(test, feature = "bench"))]
pub(crate) use outbox::{frames_of, Detached};
pub(crate) use outbox::{Limits as QueueLimits, Out, Outbox};
pub(crate) use session::{ws_route, Identity, SessionNotice};
