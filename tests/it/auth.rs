//! Accounts, tokens and every forged or stale token we must refuse.

use base64::Engine;
use parlor_client::{v1, ClientError, Connection};

use super::support::*;

fn b64(v: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

fn unb64(s: &str) -> serde_json::Value {
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .unwrap(),
    )
    .unwrap()
}

async fn http_code(r: parlor_client::Result<impl std::fmt::Debug>) -> (u16, String) {
    match r {
        Err(ClientError::Http { status, code, .. }) => (status, code),
        other => panic!("expected an HTTP error, got {other:?}"),
    }
}

#[tokio::test]
async fn register_login_and_refresh_rotation_with_reuse_detection() {
    let s = TestServer::start().await;
    let rest = s.rest();
    let t = rest
        .register("Alice", "correct horse battery", "Alice")
        .await
        .unwrap();
    assert_eq!(
        http_code(rest.register("alice", "another password", "A").await).await,
        (409, "NAME_TAKEN".into())
    );
    assert_eq!(
        http_code(rest.login("alice", "wrong password").await).await,
        (401, "INVALID_CREDENTIALS".into())
    );
    assert_eq!(
        http_code(rest.login("nobody", "wrong password").await).await,
        (401, "INVALID_CREDENTIALS".into())
    );
    let again = rest.login("ALICE", "correct horse battery").await.unwrap();
    assert_eq!(again.user_id, t.user_id);

    let r1 = rest.refresh(&t.refresh_token).await.unwrap();
    assert_eq!(r1.user_id, t.user_id);
    // The first token is spent: using it again is a replay and revokes the family.
    assert_eq!(
        http_code(rest.refresh(&t.refresh_token).await).await,
        (401, "TOKEN_INVALID".into())
    );
    assert_eq!(
        http_code(rest.refresh(&r1.refresh_token).await).await,
        (401, "TOKEN_INVALID".into())
    );
    // An access token is not a refresh token.
    assert_eq!(
        http_code(rest.refresh(&again.access_token).await).await.0,
        401
    );
    // The other login's family is untouched.
    rest.refresh(&again.refresh_token).await.unwrap();

    let me = rest
        .get_json("/api/v1/me", Some(&r1.access_token))
        .await
        .unwrap();
    assert_eq!(me["login"], "alice");
    assert_eq!(me["role"], "user");
}

/// Every way a token can be bad, in Hello and at the upgrade.
#[tokio::test]
async fn forged_expired_and_orphaned_tokens_are_refused() {
    let s = TestServer::start().await;
    let rest = s.rest();
    let good = rest.guest("Gus").await.unwrap();
    let parts: Vec<&str> = good.access_token.split('.').collect();
    let header = unb64(parts[0]);
    let claims = unb64(parts[1]);
    let jwks = rest.get_json("/.well-known/jwks.json", None).await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();

    let mut forged: Vec<(&str, String, v1::ErrorCode)> = Vec::new();
    // alg none
    let mut h = header.clone();
    h["alg"] = "none".into();
    forged.push((
        "alg none",
        format!("{}.{}.", b64(&h), parts[1]),
        v1::ErrorCode::TokenInvalid,
    ));
    // HS256 signed with the public key as the secret
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = header["kid"].as_str().map(String::from);
    let hs_token = jsonwebtoken::encode(
        &hs,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public),
    )
    .unwrap();
    forged.push((
        "HS256 with the public key",
        hs_token,
        v1::ErrorCode::TokenInvalid,
    ));
    // wrong signature: claims changed to admin, signature kept
    let mut c = claims.clone();
    c["role"] = "admin".into();
    forged.push((
        "tampered claims",
        format!("{}.{}.{}", parts[0], b64(&c), parts[2]),
        v1::ErrorCode::TokenInvalid,
    ));
    // unknown kid: signed by a key this pod has never seen
    let other = tempfile::tempdir().unwrap();
    let (private, _) = parlor_server::generate_pem().unwrap();
    let key_path = other.path().join("k.pem");
    parlor_server::write_private(&key_path, &private).unwrap();
    let mut other_cfg = test_config(other.path());
    other_cfg.auth.signing_key = key_path;
    let unknown =
        parlor_server::mint_token(&other_cfg, &good.user_id, "Gus", "guest", 600).unwrap();
    forged.push(("unknown kid", unknown, v1::ErrorCode::TokenInvalid));
    // expired: a real signature with exp in the past
    let pem = std::fs::read(s.data_dir().join("keys/signing.pem")).unwrap();
    let mut stale = claims.clone();
    stale["exp"] = (parlor_core::now_ms() / 1000 - 60).into();
    let mut eh = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    eh.kid = header["kid"].as_str().map(String::from);
    let expired = jsonwebtoken::encode(
        &eh,
        &stale,
        &jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
    )
    .unwrap();
    forged.push(("expired", expired, v1::ErrorCode::TokenExpired));

    for (what, token, want) in &forged {
        let mut conn = Connection::connect(&s.ws_url()).await.unwrap();
        match conn.hello(Some(token)).await {
            Err(ClientError::Server { code, .. }) => assert_eq!(code, *want, "{what}"),
            other => panic!("{what}: expected refusal, got {other:?}"),
        }
        assert_eq!(close_code(&mut conn).await, Some(4002), "{what}");
        // The same token at the upgrade is an HTTP 401 before any WebSocket exists.
        let url = format!("{}?token={token}", s.ws_url());
        match Connection::connect(&url).await {
            Err(ClientError::Http { status, .. }) => assert_eq!(status, 401, "{what}"),
            Err(e) => panic!("{what}: expected 401, got {e:?}"),
            Ok(_) => panic!("{what}: upgrade accepted"),
        }
    }
    let m = s.metrics().await;
    assert!(
        metric(&m, "parlor_auth_failures_total{reason=\"bad_algorithm\"}") >= 4.0,
        "{m}"
    );
    assert!(metric(&m, "parlor_auth_failures_total{reason=\"unknown_kid\"}") >= 2.0);
    assert!(metric(&m, "parlor_auth_failures_total{reason=\"expired\"}") >= 2.0);

    // A token for a deleted account.
    let doomed = rest.guest("Doomed").await.unwrap();
    rest.get_json("/api/v1/me", Some(&doomed.access_token))
        .await
        .unwrap();
    let (mut live, _) = s.connect(Some(&doomed.access_token)).await;
    let del = reqwest_delete(&s, "/api/v1/me", &doomed.access_token).await;
    assert_eq!(del, 204);
    assert_eq!(
        close_code(&mut live).await,
        Some(4002),
        "live sessions end with the account"
    );
    let mut conn = Connection::connect(&s.ws_url()).await.unwrap();
    match conn.hello(Some(&doomed.access_token)).await {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, v1::ErrorCode::TokenInvalid),
        other => panic!("deleted user accepted: {other:?}"),
    }
    assert_eq!(
        http_code(
            rest.get_json("/api/v1/me", Some(&doomed.access_token))
                .await
        )
        .await
        .0,
        401
    );
    assert_eq!(
        http_code(rest.refresh(&doomed.refresh_token).await).await.0,
        401
    );
}

#[tokio::test]
async fn tokens_work_as_bearer_query_or_hello_and_resume_keeps_identity() {
    let s = TestServer::start().await;
    let t = s.rest().guest("Tess").await.unwrap();
    let mut q = Connection::connect(&format!("{}?token={}", s.ws_url(), t.access_token))
        .await
        .unwrap();
    let w = q.hello(None).await.unwrap();
    assert_eq!(
        w.user.as_ref().unwrap().id,
        t.user_id,
        "?token= authenticates"
    );
    let (_, w2) = s.connect(Some(&t.access_token)).await;
    assert_eq!(w2.user.unwrap().id, t.user_id);
    let mut r = Connection::connect(&s.ws_url()).await.unwrap();
    let w3 = r.resume(&w.resume_token).await.unwrap();
    assert_eq!(w3.user.unwrap().id, t.user_id);
    // A resume token is not an access token.
    let mut bad = Connection::connect(&s.ws_url()).await.unwrap();
    assert!(bad.hello(Some(&w.resume_token)).await.is_err());
}

#[tokio::test]
async fn magic_codes_are_issued_by_admins_and_redeemed_once() {
    let s = TestServer::start().await;
    let rest = s.rest();
    let admin = rest
        .register("root", "correct horse battery", "Root")
        .await
        .unwrap();
    let user = rest
        .register("mallory", "correct horse battery", "M")
        .await
        .unwrap();
    let me = rest
        .get_json("/api/v1/me", Some(&admin.access_token))
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");

    let denied = rest
        .post_json(
            "/api/v1/auth/magic",
            &serde_json::json!({"login": "root"}),
            Some(&user.access_token),
        )
        .await;
    assert_eq!(http_code(denied).await, (403, "FORBIDDEN".into()));

    let issued = rest
        .post_json(
            "/api/v1/auth/magic",
            &serde_json::json!({"login": "mallory"}),
            Some(&admin.access_token),
        )
        .await
        .unwrap();
    let code = issued["code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 12);
    let left = issued["expires_at_ms"].as_i64().unwrap() - parlor_core::now_ms();
    assert!(
        (14 * 60_000..=15 * 60_000).contains(&left),
        "expires in 15 min, got {left} ms"
    );

    let redeemed = rest
        .post_json(
            "/api/v1/auth/magic/redeem",
            &serde_json::json!({"code": code.to_lowercase()}),
            None,
        )
        .await
        .unwrap();
    assert_eq!(redeemed["user"]["id"], user.user_id.as_str());
    let again = rest
        .post_json(
            "/api/v1/auth/magic/redeem",
            &serde_json::json!({"code": code}),
            None,
        )
        .await;
    assert_eq!(http_code(again).await, (401, "INVALID_CREDENTIALS".into()));
}
