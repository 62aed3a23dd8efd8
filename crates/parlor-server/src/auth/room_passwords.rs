//! Room passwords, kept only as keyed hashes: `h1$<kid>$<salt>$<mac>`, the MAC being
//! HMAC-SHA256 over the salt and the password, under a key derived (HKDF) from the signing
//! key that `kid` names. A dump of the directory, the checkpoints or the store shows no
//! password, and cannot be guessed against offline without that key.
//!
//! A room password is a shared join secret, not an account credential: it is checked on
//! every join, on the room's thread, so it gets a MAC (about a microsecond) rather than
//! argon2. Online guessing is bounded by the guess budgets (guard.rs).

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use rand::RngExt;
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "h1$";

/// The keys room passwords are hashed under, by the `kid` of the signing key each came
/// from: the current one, and those of earlier keys whose private half is still configured.
pub(crate) struct RoomPasswords {
    kid: String,
    keys: HashMap<String, [u8; 32]>,
}

fn mac(key: &[u8; 32], salt: &[u8], password: &str) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(salt);
    m.update(password.as_bytes());
    m.finalize().into_bytes().into()
}

impl RoomPasswords {
    pub(crate) fn new(kid: String, keys: HashMap<String, [u8; 32]>) -> Self {
        Self { kid, keys }
    }

    /// The stored form of a password; an empty one (no password) stays empty.
    pub(crate) fn hash(&self, password: &str) -> String {
        if password.is_empty() {
            return String::new();
        }
        let salt: [u8; 16] = rand::rng().random();
        let key = &self.keys[&self.kid];
        format!(
            "{PREFIX}{}${}${}",
            self.kid,
            hex::encode(salt),
            hex::encode(mac(key, &salt, password))
        )
    }

    /// Whether `stored` is already a hash (and not a password kept before hashing began).
    pub(crate) fn is_hashed(stored: &str) -> bool {
        stored.starts_with(PREFIX)
    }

    /// Whether `candidate` is the password `stored` holds, compared in constant time. A
    /// hash under a key this pod no longer has never matches: the owner sets it again.
    pub(crate) fn matches(&self, stored: &str, candidate: &str) -> bool {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            // Kept in the clear by an older version, until the room is saved again.
            return bool::from(stored.as_bytes().ct_eq(candidate.as_bytes()));
        };
        let mut parts = rest.splitn(3, '$');
        let (Some(kid), Some(salt), Some(want)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let (Some(key), Ok(salt), Ok(want)) =
            (self.keys.get(kid), hex::decode(salt), hex::decode(want))
        else {
            return false;
        };
        bool::from(mac(key, &salt, candidate).ct_eq(&want[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(kid: &str, key: u8) -> RoomPasswords {
        RoomPasswords::new(kid.into(), HashMap::from([(kid.to_owned(), [key; 32])]))
    }

    #[test]
    fn hashes_match_only_their_password_and_key() {
        let p = ring("k1", 7);
        let stored = p.hash("sesame");
        assert!(RoomPasswords::is_hashed(&stored));
        assert!(!stored.contains("sesame"));
        assert_ne!(stored, p.hash("sesame"), "each hash has its own salt");
        assert!(p.matches(&stored, "sesame"));
        assert!(!p.matches(&stored, "sesame "));
        assert!(!p.matches(&stored, ""));
        // Another cluster's key, or a mangled hash, never matches.
        assert!(!ring("k1", 8).matches(&stored, "sesame"));
        assert!(!p.matches(&stored[..stored.len() - 2], "sesame"));
        assert!(!p.matches("h1$k1$zz$zz", "sesame"));
        // A password kept in the clear before hashing began still works until saved again.
        assert!(p.matches("old", "old") && !p.matches("old", "new"));
        assert_eq!(p.hash(""), "");
    }
}
