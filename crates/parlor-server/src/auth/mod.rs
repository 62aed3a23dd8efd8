//! Authentication: keys, tokens, passwords and the REST routes under /api/v1/auth.

mod keys;
pub(crate) mod oidc;
mod password;
mod room_passwords;
mod tokens;

pub(crate) use keys::Keyring;
pub use keys::{generate_pem, write_private, KeyError};
pub(crate) use password::{hash as hash_password, verify as verify_password};
pub(crate) use room_passwords::RoomPasswords;
pub(crate) use tokens::{Claims, TokenKind};

/// Mints an access token for an account with the configured signing key (for `parlor token`).
pub fn mint_token(
    cfg: &crate::Config,
    user: &str,
    name: &str,
    role: &str,
    ttl_secs: u64,
) -> Result<String, KeyError> {
    let role = parlor_core::GlobalRole::parse(role)
        .ok_or_else(|| KeyError::new(format!("unknown role {role:?}")))?;
    let keys = Keyring::load_for(
        &cfg.auth.signing_key,
        &cfg.auth.verify_keys,
        &cfg.server.data_dir,
        &cfg.auth.issuer,
        &cfg.auth.audience,
    )?;
    Ok(keys
        .issue(TokenKind::Access, user, name, role, ttl_secs, None)
        .0)
}
