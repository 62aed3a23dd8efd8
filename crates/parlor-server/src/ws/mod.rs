//! WebSocket connections: one actor per socket, and its bounded outbound queue.

mod outbox;
mod session;

#[cfg(any(test, feature = "bench"))]
pub(crate) use outbox::Out;
pub(crate) use outbox::{put_binary_frame, Outbox};
pub(crate) use session::{ws_route, Identity, SessionNotice};
