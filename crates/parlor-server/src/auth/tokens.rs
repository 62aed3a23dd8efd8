//! Access, refresh and resume tokens: EdDSA JWTs with a `kid`.

use jsonwebtoken::{
    decode, decode_header, encode, errors::ErrorKind, Algorithm, Header, Validation,
};
use parlor_core::{new_id, GlobalRole};
use serde::{Deserialize, Serialize};

use super::keys::Keyring;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TokenKind {
    Access,
    Refresh,
    Resume,
}

/// The claims Parlor puts in every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    /// Who the token is for: this cluster (`auth.audience`), so that a token another
    /// service issues under the same key is not taken.
    pub(crate) aud: String,
    pub(crate) sub: String,
    pub(crate) name: String,
    pub(crate) role: GlobalRole,
    pub(crate) typ: TokenKind,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
    pub(crate) jti: String,
    /// Refresh tokens: the rotation family.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fam: Option<String>,
}

/// Why a token was refused; `reason()` is the bounded metrics label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Malformed,
    BadAlgorithm,
    UnknownKid,
    BadSignature,
    Expired,
    WrongType,
    WrongIssuer,
    WrongAudience,
}

impl TokenError {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::BadAlgorithm => "bad_algorithm",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::WrongType => "wrong_type",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
        }
    }

    pub(crate) fn code(self) -> parlor_protocol::ErrorCode {
        match self {
            TokenError::Expired => parlor_protocol::ErrorCode::TokenExpired,
            _ => parlor_protocol::ErrorCode::TokenInvalid,
        }
    }
}

/// The `alg` a header claims, even one the JWT library refuses to parse (such as "none").
fn raw_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let head = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

/// Resume tokens are only ever read by pods, so they carry a MAC; every other token is an
/// EdDSA signature that anyone can check against the JWKS.
fn alg(typ: TokenKind) -> Algorithm {
    match typ {
        TokenKind::Resume => Algorithm::HS256,
        _ => Algorithm::EdDSA,
    }
}

fn now_secs() -> u64 {
    (parlor_core::now_ms() / 1000).max(0) as u64
}

/// Seconds of clock skew a token's `exp` is allowed.
const LEEWAY: u64 = 5;

/// Entries the verified-token cache holds before it starts over.
const CACHE_ENTRIES: usize = 4096;

/// Access and resume tokens whose signature has been checked, by their exact text, so
/// that a forged or altered token can never hit. Expiry and type are checked again on
/// every hit. When full it is cleared: a miss only costs one more signature check.
#[derive(Default)]
pub(crate) struct VerifiedCache(std::sync::Mutex<std::collections::HashMap<String, Claims>>);

impl VerifiedCache {
    fn get(&self, token: &str) -> Option<Claims> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn put(&self, token: &str, claims: &Claims) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_ENTRIES {
            map.clear();
        }
        map.insert(token.to_owned(), claims.clone());
    }
}

impl Keyring {
    /// Signs a token of `typ` for a user, valid for `ttl_secs`.
    pub(crate) fn issue(
        &self,
        typ: TokenKind,
        user: &str,
        name: &str,
        role: GlobalRole,
        ttl_secs: u64,
        fam: Option<String>,
    ) -> (String, Claims) {
        let iat = now_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user.into(),
            name: name.into(),
            role,
            typ,
            iat,
            exp: iat + ttl_secs,
            jti: new_id("t_"),
            fam,
        };
        let mut header = Header::new(alg(typ));
        header.kid = Some(self.kid.clone());
        let key = match typ {
            TokenKind::Resume => &self.resume_encoding,
            _ => &self.encoding,
        };
        // Signing with a loaded key and serialisable claims cannot fail.
        let token = encode(&header, &claims, key).unwrap_or_default();
        (token, claims)
    }

    /// Verifies signature, algorithm, `kid`, expiry, issuer, audience and type. An access or resume
    /// token seen before skips the signature check (`VerifiedCache`); refresh tokens are
    /// rare and always checked in full.
    pub(crate) fn verify(&self, token: &str, want: TokenKind) -> Result<Claims, TokenError> {
        let cached = want != TokenKind::Refresh;
        if let Some(claims) = cached.then(|| self.verified.get(token)).flatten() {
            if claims.exp.saturating_add(LEEWAY) < now_secs() {
                return Err(TokenError::Expired);
            }
            if claims.typ != want {
                return Err(TokenError::WrongType);
            }
            return Ok(claims);
        }
        let claims = self.verify_signed(token, want)?;
        if cached {
            self.verified.put(token, &claims);
        }
        Ok(claims)
    }

    /// `verify` without the cache.
    pub(crate) fn verify_signed(&self, token: &str, want: TokenKind) -> Result<Claims, TokenError> {
        let alg = alg(want);
        let header = decode_header(token).map_err(|_| match raw_alg(token) {
            Some(a) if a != format!("{alg:?}") => TokenError::BadAlgorithm,
            _ => TokenError::Malformed,
        })?;
        if header.alg != alg {
            return Err(TokenError::BadAlgorithm);
        }
        let key = match want {
            TokenKind::Resume if header.kid.as_deref() == Some(&self.kid) => &self.resume_decoding,
            TokenKind::Resume => return Err(TokenError::UnknownKid),
            _ => header
                .kid
                .as_ref()
                .and_then(|kid| self.decoding.get(kid))
                .ok_or(TokenError::UnknownKid)?,
        };
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let data = decode::<Claims>(token, key, &v).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::BadAlgorithm,
            _ => TokenError::Malformed,
        })?;
        if data.claims.typ != want {
            return Err(TokenError::WrongType);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn ring(dir: &std::path::Path) -> Keyring {
        Keyring::load("".as_ref(), &[], dir).unwrap()
    }

    fn b64(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn issue_verify_and_every_forgery() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let (tok, _) = keys.issue(TokenKind::Access, "u_1", "Ann", GlobalRole::User, 60, None);
        let c = keys.verify(&tok, TokenKind::Access).unwrap();
        assert_eq!((c.sub.as_str(), c.role), ("u_1", GlobalRole::User));
        assert_eq!(
            keys.verify(&tok, TokenKind::Refresh),
            Err(TokenError::WrongType)
        );

        // A key generated elsewhere: same kid is impossible, so use our kid with a foreign key.
        let other = tempfile::tempdir().unwrap();
        let foreign = ring(other.path());
        let (forged, _) =
            foreign.issue(TokenKind::Access, "u_1", "Ann", GlobalRole::Admin, 60, None);
        assert_eq!(
            keys.verify(&forged, TokenKind::Access),
            Err(TokenError::UnknownKid)
        );
        let parts: Vec<&str> = forged.split('.').collect();
        let mut hdr: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[0])
                .unwrap(),
        )
        .unwrap();
        hdr["kid"] = keys.kid.clone().into();
        let relabeled = format!("{}.{}.{}", b64(&hdr), parts[1], parts[2]);
        assert_eq!(
            keys.verify(&relabeled, TokenKind::Access),
            Err(TokenError::BadSignature)
        );

        let claims = serde_json::json!({"iss":"parlor","sub":"u_1","name":"x","role":"admin",
            "typ":"access","iat":0,"exp":now_secs()+60,"jti":"t"});
        let none = format!(
            "{}.{}.",
            b64(&serde_json::json!({"alg":"none","kid":keys.kid})),
            b64(&claims)
        );
        assert_eq!(
            keys.verify(&none, TokenKind::Access),
            Err(TokenError::BadAlgorithm)
        );

        let (expired, _) = keys.issue(TokenKind::Access, "u_1", "Ann", GlobalRole::User, 0, None);
        // exp == iat; with 5 s leeway it is still valid now, so forge an older one instead.
        let mut old = serde_json::from_slice::<serde_json::Value>(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(expired.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        old["exp"] = 1.into();
        let mut h = Header::new(Algorithm::EdDSA);
        h.kid = Some(keys.kid.clone());
        let stale = encode(&h, &old, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify(&stale, TokenKind::Access),
            Err(TokenError::Expired)
        );
        assert_eq!(
            keys.verify("not a jwt", TokenKind::Access),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn resume_tokens_carry_a_mac_that_only_pods_with_the_key_accept() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let (tok, _) = keys.issue(TokenKind::Resume, "u_1", "Ann", GlobalRole::User, 60, None);
        assert_eq!(keys.verify(&tok, TokenKind::Resume).unwrap().sub, "u_1");
        // The same pod restarted (same key file) accepts it; one with another key does not.
        let again = ring(dir.path());
        assert_eq!(again.verify(&tok, TokenKind::Resume).unwrap().sub, "u_1");
        let other = tempfile::tempdir().unwrap();
        let foreign = ring(other.path());
        assert_eq!(
            foreign.verify(&tok, TokenKind::Resume),
            Err(TokenError::UnknownKid)
        );
        // A foreign MAC relabeled with our kid fails its signature check.
        let (forged, _) =
            foreign.issue(TokenKind::Resume, "u_1", "Ann", GlobalRole::Admin, 60, None);
        let parts: Vec<&str> = forged.split('.').collect();
        let hdr = serde_json::json!({"alg":"HS256","typ":"JWT","kid":keys.kid});
        let relabeled = format!("{}.{}.{}", b64(&hdr), parts[1], parts[2]);
        assert_eq!(
            keys.verify(&relabeled, TokenKind::Resume),
            Err(TokenError::BadSignature)
        );
        // A MAC is never an access token, and a signature is never a resume token.
        let fresh = ring(dir.path());
        assert_eq!(
            fresh.verify(&tok, TokenKind::Access),
            Err(TokenError::BadAlgorithm)
        );
        let (access, _) = keys.issue(TokenKind::Access, "u_1", "Ann", GlobalRole::User, 60, None);
        assert_eq!(
            fresh.verify(&access, TokenKind::Resume),
            Err(TokenError::BadAlgorithm)
        );
    }

    #[test]
    fn a_cached_token_is_still_checked_for_expiry_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ring(dir.path());
        let (tok, mut claims) =
            keys.issue(TokenKind::Access, "u_1", "Ann", GlobalRole::User, 60, None);
        assert!(keys.verify(&tok, TokenKind::Access).is_ok());
        assert_eq!(
            keys.verify(&tok, TokenKind::Resume),
            Err(TokenError::WrongType)
        );
        // The cache answers by exact text: an expired entry is refused even on a hit.
        claims.exp = 1;
        keys.verified.put(&tok, &claims);
        assert_eq!(
            keys.verify(&tok, TokenKind::Access),
            Err(TokenError::Expired)
        );
        // It stays bounded.
        for i in 0..CACHE_ENTRIES + 10 {
            keys.verified.put(&format!("t{i}"), &claims);
        }
        assert!(keys.verified.0.lock().unwrap().len() <= CACHE_ENTRIES);
    }

    #[test]
    fn a_restart_reuses_the_generated_key_and_jwks_lists_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = ring(dir.path());
        let b = ring(dir.path());
        assert_eq!(a.kid, b.kid);
        assert_eq!(a.jwks()["keys"][0]["kid"], a.kid.as_str());
        assert_eq!(a.jwks()["keys"][0]["crv"], "Ed25519");
    }

    #[test]
    fn tokens_for_another_issuer_or_audience_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let load = |iss: &str, aud: &str| {
            Keyring::load_for("".as_ref(), &[], dir.path(), iss, aud).unwrap()
        };
        // One signing key, shared by three services that differ in iss or aud.
        let ours = load("parlor", "parlor");
        let other_aud = load("parlor", "billing");
        let other_iss = load("accounts", "parlor");
        let issue = |k: &Keyring, typ| k.issue(typ, "u_1", "Ann", GlobalRole::User, 60, None).0;
        for typ in [TokenKind::Access, TokenKind::Refresh, TokenKind::Resume] {
            assert!(ours.verify(&issue(&ours, typ), typ).is_ok());
            assert_eq!(
                ours.verify(&issue(&other_aud, typ), typ),
                Err(TokenError::WrongAudience)
            );
            assert_eq!(
                ours.verify(&issue(&other_iss, typ), typ),
                Err(TokenError::WrongIssuer)
            );
        }
        // A token with no aud at all (signed before audiences existed) is refused too.
        let mut claims = ours
            .verify(&issue(&ours, TokenKind::Access), TokenKind::Access)
            .unwrap();
        claims.aud = String::new();
        let mut v = serde_json::to_value(&claims).unwrap();
        v.as_object_mut().unwrap().remove("aud");
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ours.kid.clone());
        let bare = encode(&header, &v, &ours.encoding).unwrap();
        assert!(ours.verify(&bare, TokenKind::Access).is_err());
    }
}
