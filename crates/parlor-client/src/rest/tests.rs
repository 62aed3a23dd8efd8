use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// One request as the fake server saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: String,
}

/// Serves one scripted `(status line, body)` answer per connection, in order, and returns what
/// each request looked like.
async fn spawn_http(
    answers: Vec<(&'static str, &'static str)>,
) -> (String, tokio::task::JoinHandle<Vec<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let mut seen = Vec::new();
        for (status, body) in answers {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client hung up mid-request");
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let n = tcp.read(&mut chunk).await.unwrap();
                assert!(n > 0, "client hung up mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let req_body = String::from_utf8(buf[head_end..head_end + len].to_vec()).unwrap();
            seen.push(Seen {
                head,
                body: req_body,
            });
            let resp = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(resp.as_bytes()).await.unwrap();
            tcp.shutdown().await.unwrap();
        }
        seen
    });
    (format!("http://{addr}/"), handle)
}

const TOKENS: &str = r#"{"access_token":"a1","refresh_token":"r1","expires_in":900,
    "user":{"id":"u1","name":"bob","role":"guest"}}"#;

#[tokio::test]
async fn auth_helpers_post_the_right_json_and_parse_tokens() {
    let (base, server) = spawn_http(vec![
        ("200 OK", TOKENS),
        ("201 Created", TOKENS),
        ("200 OK", TOKENS),
        ("200 OK", TOKENS),
    ])
    .await;
    let rest = Rest::new(base);
    let want = Tokens {
        access_token: "a1".into(),
        refresh_token: "r1".into(),
        user_id: "u1".into(),
    };
    assert_eq!(rest.guest("bob").await.unwrap(), want);
    assert_eq!(rest.register("bob", "pw", "Bob").await.unwrap(), want);
    assert_eq!(rest.login("bob", "pw").await.unwrap(), want);
    assert_eq!(rest.refresh("r0").await.unwrap(), want);

    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    let expected = [
        ("/api/v1/auth/guest", json!({"name": "bob"})),
        (
            "/api/v1/auth/register",
            json!({"login": "bob", "password": "pw", "name": "Bob"}),
        ),
        (
            "/api/v1/auth/login",
            json!({"login": "bob", "password": "pw"}),
        ),
        ("/api/v1/auth/refresh", json!({"refresh_token": "r0"})),
    ];
    for (seen, (path, body)) in seen.iter().zip(expected) {
        assert!(
            seen.head.starts_with(&format!("POST {path} HTTP/1.1\r\n")),
            "{}",
            seen.head
        );
        assert_eq!(serde_json::from_str::<Value>(&seen.body).unwrap(), body);
    }
}

#[tokio::test]
async fn errors_bearer_and_empty_bodies() {
    let (base, server) = spawn_http(vec![
        ("200 OK", r#"{"ok":true}"#),
        (
            "409 Conflict",
            r#"{"error":{"code":"NAME_TAKEN","message":"taken"}}"#,
        ),
        ("502 Bad Gateway", "upstream down"),
        ("204 No Content", ""),
        ("200 OK", r#"{"access_token":"a"}"#),
    ])
    .await;
    let rest = Rest::new(base);

    let v = rest.get_json("/api/v1/me", Some("xyz")).await.unwrap();
    assert_eq!(v, json!({"ok": true}));

    let err = rest.register("bob", "pw", "Bob").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 409, code, message } if code == "NAME_TAKEN" && message == "taken"),
        "{err:?}"
    );
    let err = rest.get_json("api/v1/rooms", None).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 502, code, message } if code.is_empty() && message == "upstream down"),
        "{err:?}"
    );
    let v = rest.post_json("/api/v1/x", &json!({}), None).await.unwrap();
    assert_eq!(v, Value::Null);
    let err = rest.guest("bob").await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");

    let seen = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    assert!(seen[0].head.starts_with("GET /api/v1/me HTTP/1.1\r\n"));
    assert!(
        seen[0]
            .head
            .to_ascii_lowercase()
            .contains("\r\nauthorization: bearer xyz\r\n"),
        "{}",
        seen[0].head
    );
    assert!(!seen[1].head.to_ascii_lowercase().contains("authorization"));
    assert!(seen[2].head.starts_with("GET /api/v1/rooms HTTP/1.1\r\n"));
}
