//! Ed25519 signing keys: PEM load/generate, `kid`s and the JWKS document.

use std::{collections::HashMap, path::Path};

use base64::Engine;
use ed25519_dalek::{
    pkcs8::{
        spki::der::pem::LineEnding, DecodePrivateKey, DecodePublicKey, EncodePrivateKey,
        EncodePublicKey,
    },
    SigningKey, VerifyingKey,
};
use jsonwebtoken::{DecodingKey, EncodingKey};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// Why keys could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

impl KeyError {
    pub(crate) fn new(msg: String) -> Self {
        Self(msg)
    }
}

/// A fresh key pair as (PKCS#8 private PEM, SPKI public PEM).
pub fn generate_pem() -> Result<(String, String), KeyError> {
    // ThreadRng is a CSPRNG seeded from the OS.
    let secret: [u8; 32] = rand::rng().random();
    let key = SigningKey::from_bytes(&secret);
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("encode private key: {e}")))?;
    let public = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError(format!("encode public key: {e}")))?;
    Ok((private.to_string(), public))
}

/// The key id of a public key: 16 hex digits of its SHA-256, the same on every pod.
pub(crate) fn kid_of(public: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(public.as_bytes())[..8])
}

/// A verify-only key, and its private half when the file holds one.
fn read_public(path: &Path) -> Result<(VerifyingKey, Option<SigningKey>), KeyError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| KeyError(format!("read {}: {e}", path.display())))?;
    if let Ok(sk) = SigningKey::from_pkcs8_pem(&pem) {
        return Ok((sk.verifying_key(), Some(sk)));
    }
    VerifyingKey::from_public_key_pem(&pem)
        .map(|k| (k, None))
        .map_err(|e| KeyError(format!("{} is not an Ed25519 PEM key: {e}", path.display())))
}

/// A 32-byte key for one purpose (`info`), derived from a signing key with HKDF-SHA256, so
/// that no two uses share key material and none can be turned back into the signing key.
fn derive(signing: &SigningKey, info: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let hk = hkdf::Hkdf::<Sha256>::new(Some(b"parlor"), &signing.to_bytes());
    // 32 bytes is far below HKDF-SHA256's limit of 8160, so expand cannot fail.
    let _ = hk.expand(info, &mut out);
    out
}

/// The signing key plus every key whose tokens are accepted, by `kid`.
pub(crate) struct Keyring {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: HashMap<String, DecodingKey>,
    /// HS256 key for resume tokens, which only pods read: derived from the signing key,
    /// so pods that share that key share this one. A MAC costs about a microsecond where
    /// an Ed25519 signature cost about 20 µs on every Welcome.
    pub(crate) resume_encoding: EncodingKey,
    pub(crate) resume_decoding: DecodingKey,
    /// Access and resume tokens already verified, so that a reconnect storm verifies
    /// each token once (see `Keyring::verify`).
    pub(crate) verified: super::tokens::VerifiedCache,
    /// Room passwords' keys: one derived from each signing key whose private half is here.
    room_passwords: HashMap<String, [u8; 32]>,
    /// The `iss` and `aud` every token carries and must carry.
    pub(crate) issuer: String,
    pub(crate) audience: String,
    jwks: serde_json::Value,
}

impl Keyring {
    /// Loads the signing key (or generates one into `data_dir/keys`) and the verify-only
    /// keys, for tokens of the default issuer and audience.
    #[cfg(any(test, feature = "bench"))]
    pub(crate) fn load(
        signing: &Path,
        verify: &[std::path::PathBuf],
        data_dir: &Path,
    ) -> Result<Keyring, KeyError> {
        Self::load_for(signing, verify, data_dir, "parlor", "parlor")
    }

    /// `load`, with the `iss` and `aud` of this cluster's tokens.
    pub(crate) fn load_for(
        signing: &Path,
        verify: &[std::path::PathBuf],
        data_dir: &Path,
        issuer: &str,
        audience: &str,
    ) -> Result<Keyring, KeyError> {
        let signing_path = if signing.as_os_str().is_empty() {
            let path = data_dir.join("keys").join("signing.pem");
            if !path.exists() {
                tracing::warn!(
                    path = %path.display(),
                    "no auth.signing_key configured: generated a key pair; pods of one cluster must share a key"
                );
                let (private, public) = generate_pem()?;
                let dir = path.parent().unwrap_or(data_dir);
                std::fs::create_dir_all(dir)
                    .map_err(|e| KeyError(format!("create {}: {e}", dir.display())))?;
                write_private(&path, &private)?;
                std::fs::write(dir.join("signing.pub.pem"), public)
                    .map_err(|e| KeyError(format!("write public key: {e}")))?;
            }
            path
        } else {
            signing.to_path_buf()
        };
        let pem = std::fs::read_to_string(&signing_path)
            .map_err(|e| KeyError(format!("auth.signing_key {}: {e}", signing_path.display())))?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
            KeyError(format!(
                "auth.signing_key {} is not a PKCS#8 Ed25519 key: {e}",
                signing_path.display()
            ))
        })?;
        let der = key
            .to_pkcs8_der()
            .map_err(|e| KeyError(format!("encode signing key: {e}")))?;
        let mut publics = vec![key.verifying_key()];
        let kid = kid_of(&publics[0]);
        let mut room_passwords = HashMap::from([(kid.clone(), derive(&key, b"room passwords v1"))]);
        for path in verify {
            let (public, private) = read_public(path)?;
            if let Some(sk) = private {
                room_passwords.insert(kid_of(&public), derive(&sk, b"room passwords v1"));
            }
            publics.push(public);
        }
        let mut decoding = HashMap::new();
        let mut jwks = Vec::new();
        for public in &publics {
            let kid = kid_of(public);
            decoding.insert(kid.clone(), DecodingKey::from_ed_der(public.as_bytes()));
            jwks.push(serde_json::json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": kid,
                "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public.as_bytes()),
            }));
        }
        let resume_secret = derive(&key, b"resume tokens v1");
        Ok(Keyring {
            kid,
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding,
            resume_encoding: EncodingKey::from_secret(&resume_secret),
            resume_decoding: DecodingKey::from_secret(&resume_secret),
            verified: Default::default(),
            room_passwords,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            jwks: serde_json::json!({ "keys": jwks }),
        })
    }

    /// The room-password hasher of these keys.
    pub(crate) fn room_passwords(&self) -> super::RoomPasswords {
        super::RoomPasswords::new(self.kid.clone(), self.room_passwords.clone())
    }

    /// The public keys as a JWKS document.
    pub(crate) fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }
}

/// Writes a private key readable by its owner only.
pub fn write_private(path: &Path, pem: &str) -> Result<(), KeyError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .map_err(|e| KeyError(format!("create {}: {e}", path.display())))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| KeyError(format!("write {}: {e}", path.display())))
}
