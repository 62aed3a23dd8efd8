//! WebSocket connections: one actor per socket, and its bounded outbound queue.

mod outbox;
mod session;

#[cfg(feature = "bench")]
pub(crate) use outbox::Out;
pub(crate) use outbox::Outbox;
pub(crate) use session::{ws_route, Identity, SessionNotice};
