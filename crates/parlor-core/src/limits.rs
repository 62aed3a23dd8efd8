use parlor_protocol::ErrorCode;

use crate::CoreError;

/// Size limits on what clients send. The defaults are what a pod uses unless configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest room or display name, in characters.
    pub name_chars: usize,
    /// Longest chat line, in bytes.
    pub chat_bytes: usize,
    /// Largest game-event payload, in bytes.
    pub event_payload_bytes: usize,
    /// Longest game-event type tag, in bytes.
    pub event_type_bytes: usize,
    /// Longest room password or welcome message, in bytes.
    pub text_field_bytes: usize,
    /// Most members a room may be created with.
    pub max_members: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            name_chars: 64,
            chat_bytes: 2000,
            event_payload_bytes: 32 * 1024,
            event_type_bytes: 64,
            text_field_bytes: 500,
            max_members: 5000,
        }
    }
}

impl Limits {
    /// Checks a byte length against a limit.
    pub fn check_len(what: &str, len: usize, max: usize) -> Result<(), CoreError> {
        if len > max {
            return Err(CoreError::new(
                ErrorCode::TooLong,
                format!("{what} is {len} bytes; the limit is {max}"),
            ));
        }
        Ok(())
    }
}

/// A display or room name: 1..=max characters, no control characters, trimmed.
pub fn validate_name(what: &str, name: &str, max_chars: usize) -> Result<String, CoreError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("{what} must not be empty"),
        ));
    }
    if name.chars().count() > max_chars {
        return Err(CoreError::new(
            ErrorCode::TooLong,
            format!("{what} is longer than {max_chars} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("{what} must not contain control characters"),
        ));
    }
    Ok(name.to_owned())
}

/// A room kind: 1..=32 of `a-z 0-9 - _`.
pub fn validate_kind(kind: &str) -> Result<(), CoreError> {
    let ok = !kind.is_empty()
        && kind.len() <= 32
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorCode::InvalidArgument,
            "kind must be 1 to 32 of a-z, 0-9, '-' and '_'",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(validate_name("name", "  Ann ", 64).unwrap(), "Ann");
        assert_eq!(
            validate_name("name", "", 64).unwrap_err().code,
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            validate_name("name", &"x".repeat(65), 64).unwrap_err().code,
            ErrorCode::TooLong
        );
        assert!(validate_name("name", "a\u{7}b", 64).is_err());
        assert!(validate_kind("piano").is_ok());
        assert!(validate_kind("Piano").is_err());
        assert!(validate_kind("").is_err());
        assert_eq!(
            Limits::check_len("chat", 2001, 2000).unwrap_err().code,
            ErrorCode::TooLong
        );
    }
}
