use crate::v1::ErrorCode;

/// Wire name and HTTP status of an error code.
pub trait ErrorInfo {
    /// The JSON name, e.g. `ROOM_FULL`.
    fn name(self) -> &'static str;
    /// The HTTP status an HTTP client gets for this code.
    fn http_status(self) -> u16;
}

impl ErrorInfo for ErrorCode {
    fn name(self) -> &'static str {
        let full = self.as_str_name();
        full.strip_prefix("ERROR_CODE_").unwrap_or(full)
    }

    // Exhaustive on purpose: a new code does not compile until it has a status.
    fn http_status(self) -> u16 {
        use ErrorCode::*;
        match self {
            Unspecified | Internal => 500,
            MalformedFrame | UnknownMessage | TextFrame | HelloRequired | UnsupportedVersion
            | AlreadyWelcomed | TooLong | InvalidArgument | BadRequest => 400,
            FrameTooLarge | BodyTooLarge => 413,
            Unauthenticated | TokenExpired | TokenInvalid | InvalidCredentials => 401,
            Forbidden | Banned | Muted | ChatDisabled | WrongPassword | QuotaExceeded => 403,
            RoomNotFound | UserNotFound | NotFound => 404,
            NameTaken | NotInRoom | RoomFull | NotYourTurn | IllegalMove | WrongKind => 409,
            RateLimited => 429,
            Unavailable => 503,
        }
    }
}

/// WebSocket close codes the server uses.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The pod is draining; reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame arrived; only binary protobuf frames are accepted.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Protocol violation the server will not tolerate further.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// An inbound frame was over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed internally.
    pub const INTERNAL: u16 = 1011;
    /// The client did not read its frames fast enough.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// Hello named a protocol version the server does not speak.
    pub const UNSUPPORTED_VERSION: u16 = 4001;
    /// Hello's token was rejected.
    pub const AUTH_FAILED: u16 = 4002;
    /// No Hello, or no frame at all, within the timeout.
    pub const IDLE_TIMEOUT: u16 = 4004;
    /// Room events this session should have got were lost on the way and are no longer in
    /// history: reconnect, and rejoin with the last seq seen (the answer is a resync).
    pub const RESUME: u16 = 4008;
    /// The client went on flooding after being rate limited.
    pub const FLOOD: u16 = 4029;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_the_prefix() {
        assert_eq!(ErrorCode::RoomFull.name(), "ROOM_FULL");
        assert_eq!(ErrorCode::RoomFull.http_status(), 409);
        assert_eq!(ErrorCode::BodyTooLarge.http_status(), 413);
    }
}
