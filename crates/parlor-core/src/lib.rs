//! Parlor's domain model, free of I/O.
//!
//! - `ids`: user, room and session ids, and short room codes.
//! - `roles`: global and room roles.
//! - `permissions`: the one table that decides every client action.
//! - `room`: room settings, members, admission and moderation state.
//! - `limits`: size limits and validation of names, texts and payloads.
//! - `rate`: the token bucket behind per-member rate limits.

mod error;
mod ids;
mod inbound;
mod limits;
mod permissions;
mod rate;
mod roles;
mod room;

pub use error::CoreError;
pub use ids::{
    new_id, new_room_code, normalize_code, RoomId, UserId, ROOM_CODE_LEN, VISITOR_PREFIX,
};
pub use inbound::{check_inbound, ID_BYTES, TOKEN_BYTES};
pub use limits::{validate_kind, validate_name, Limits};
pub use permissions::{check, Action, RoomPolicy};
pub use rate::TokenBucket;
pub use roles::{GlobalRole, RoomRole};
pub use room::{MemberState, Room, RoomInfo, RoomSettings, TournamentSlot, DEFAULT_MAX_MEMBERS};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
