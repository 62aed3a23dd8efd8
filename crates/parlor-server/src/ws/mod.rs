//! WebSocket connections: one actor per socket, and its bounded outbound queue.

mod conn;
mod outbox;
mod session;

pub(crate) use conn::upgrade;
pub(crate) use outbox::Outbox;
#[cfg(any(test, feature = "bench"))]
pub(crate) use outbox::{Detached, Out};
pub(crate) use session::{ws_route, Identity, SessionNotice};
