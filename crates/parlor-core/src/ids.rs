use std::fmt;

use rand::RngExt;
use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        // Lets maps keyed by id be searched with a &str, without allocating.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// Identifies an account (or, with a `v_` prefix, one visitor's session).
    UserId
);

/// The id prefix of a visitor: someone with no account, for one session.
pub const VISITOR_PREFIX: &str = "v_";

impl UserId {
    /// True for a visitor, who leaves no stats, ratings or other lasting rows.
    pub fn is_visitor(&self) -> bool {
        self.0.starts_with(VISITOR_PREFIX)
    }
}

/// A room code as typed: case, and the dashes or spaces that group it, do not matter.
pub fn normalize_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}
string_id!(
    /// Identifies a room across every pod.
    RoomId
);

/// A fresh random id: `prefix` then 24 hex digits (96 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 12] = rand::rng().random();
    let mut s = String::with_capacity(prefix.len() + 24);
    s.push_str(prefix);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

// No 0/O, 1/I: codes are read aloud and typed on phones.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Characters in a room code: 60 bits, so that guessing a private room's code within the
/// guess budgets is impractical (docs/security.md has the arithmetic).
pub const ROOM_CODE_LEN: usize = 12;

/// A human-friendly room code (`ROOM_CODE_LEN` characters).
pub fn new_room_code() -> String {
    let mut rng = rand::rng();
    (0..ROOM_CODE_LEN)
        .map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = new_id("r_");
        assert_eq!(a.len(), 26);
        assert!(a.starts_with("r_"));
        assert_ne!(a, new_id("r_"));
        let code = new_room_code();
        assert_eq!(code.len(), ROOM_CODE_LEN);
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        let typed = format!("{}-{} ", &code[..6], &code[6..]).to_ascii_lowercase();
        assert_eq!(normalize_code(&typed), code);
        assert!(UserId("v_1".into()).is_visitor() && !UserId("u_1".into()).is_visitor());
    }
}
