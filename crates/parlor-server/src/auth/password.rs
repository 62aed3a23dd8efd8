//! argon2id password hashing. Both calls are CPU-heavy: they run on the hashing threads
//! (guard.rs), never on the async ones.
//!
//! Each thread hashes into one block buffer of its own, reused for every hash, instead of
//! the 19 MiB the PHC helpers allocate per call: glibc kept those around, and a pod's
//! memory grew to 380 MiB over 20 logins with two threads. Now it is 19 MiB per thread.

use std::cell::RefCell;

use argon2::{
    password_hash::{Output, PasswordHash, SaltString},
    Algorithm, Argon2, Block, Params, Version,
};
use rand::RngExt;
use subtle::ConstantTimeEq;

thread_local! {
    /// This thread's argon2 memory, grown to the largest cost it has met.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Fills `out` with the argon2id hash of `password` under `params` and `salt`.
fn compute(params: Params, password: &str, salt: &[u8], out: &mut [u8]) -> Result<(), String> {
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    BLOCKS.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < blocks {
            b.resize(blocks, Block::default());
        }
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut b[..blocks])
            .map_err(|e| e.to_string())
    })
}

/// Hashes a password into a PHC string.
pub(crate) fn hash(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    let params = Params::DEFAULT;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    compute(params.clone(), password, &salt_bytes, &mut out)?;
    let phc = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().map_err(|e| format!("{e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string, in constant time; a malformed hash, or one of
/// another algorithm, never matches.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Ok(params), Some(salt), Some(want)) =
        (Params::try_from(&parsed), parsed.salt, parsed.hash)
    else {
        return false;
    };
    if parsed.algorithm != argon2::ARGON2ID_IDENT {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out = vec![0u8; want.len()];
    compute(params, password, salt, &mut out).is_ok() && bool::from(out.ct_eq(want.as_bytes()))
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    #[test]
    fn hash_and_verify() {
        let h = super::hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(super::verify("correct horse", &h));
        assert!(!super::verify("wrong", &h));
        assert!(!super::verify("x", "not-a-hash"));
    }

    #[test]
    fn hashes_are_the_argon2_crates_own_format_both_ways() {
        // Ours verifies with the crate's verifier, and the crate's (older accounts) with ours.
        let ours = super::hash("correct horse").unwrap();
        let parsed = argon2::PasswordHash::new(&ours).unwrap();
        assert!(argon2::Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        let salt = argon2::password_hash::SaltString::encode_b64(&[9; 16]).unwrap();
        let theirs = argon2::Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert!(super::verify("correct horse", &theirs));
        assert!(!super::verify("correct horsf", &theirs));
    }
}
