//! Rust client SDK for Parlor: used by the integration tests, and later by bots and the load
//! generator.
//!
//! - `error`: [`ClientError`] and the [`Result`] alias shared by everything here.
//! - `ws`: [`Connection`], one WebSocket session speaking one protobuf `Envelope` per binary
//!   frame, with request/answer matching and a queue that keeps pushes for later.
//! - `rest`: [`Rest`], a small JSON client for the HTTP API (auth endpoints and raw calls).

mod error;
mod rest;
mod ws;

pub use error::{ClientError, Result};
pub use rest::{Rest, Tokens};
pub use ws::{Connection, Frame, DEFAULT_TIMEOUT};

/// The generated protocol types, re-exported so callers need not depend on `parlor-protocol`.
pub use parlor_protocol::v1;
/// The body of an `Envelope`: the oneof of every message.
pub use parlor_protocol::v1::envelope::Body;
/// The WebSocket library, re-exported for [`Connection::send_raw`] messages.
pub use tokio_tungstenite::tungstenite;
