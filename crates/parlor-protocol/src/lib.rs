//! Parlor's wire protocol: the prost types built from `proto/`, the frame codec, the error-code
//! table and the WebSocket close codes.
//!
//! - `v1`: generated messages (`Envelope` and its bodies).
//! - `codes`: the one table that maps each `ErrorCode` to its JSON name and HTTP status.
//! - `frame`: encode/decode of one `Envelope` per binary frame.

mod codes;
mod frame;

/// Generated protobuf types for `parlor.v1`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/parlor.v1.rs"));
}

pub use codes::{close, ErrorInfo};
pub use frame::{
    decode_envelope, encode_body, encode_envelope, error_envelope, error_envelope_after,
    frame_request_id, frame_seq, frame_with_seq, FrameError,
};
pub use v1::ErrorCode;

/// The protocol version this build speaks; Hello must carry it.
pub const PROTOCOL_VERSION: u32 = 1;

/// Default limit on one inbound WebSocket frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024;
