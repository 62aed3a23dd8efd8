//! Abuse limits on a live pod, tried as an abuser would (docs/security.md). The test
//! clients come from different loopback addresses (127.0.0.2, 127.0.0.3, ...), each a
//! different client to the pod, or through a trusted proxy's X-Forwarded-For.

use std::{net::IpAddr, time::Duration};

use parlor_client::{v1, Body, Connection};
use parlor_server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::*;

/// A pod with the production abuse limits (test_config lifts them), then `tweak`.
async fn guarded(tweak: impl FnOnce(&mut Config)) -> TestServer {
    TestServer::with(|c| {
        c.guard = Config::default().guard;
        c.limits = Config::default().limits;
        tweak(c);
    })
    .await
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An HTTP answer: status, the head (lowercased), the body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(str::trim)
        })
    }

    fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap_or_default();
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

/// One raw HTTP/1.1 request to the pod's public port from the loopback address `from`.
async fn http(
    s: &TestServer,
    from: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((ip(from), 0).into()).unwrap();
    let mut tcp = socket.connect(s.public).await.unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        s.public,
        body.len()
    );
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        head.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // An upgrade answer keeps the socket open: read only what arrives in time.
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status: head.split(' ').nth(1).unwrap_or("0").parse().unwrap_or(0),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

async fn guest_from(s: &TestServer, from: &str, headers: &[(&str, &str)]) -> Answer {
    http(
        s,
        from,
        "POST",
        "/api/v1/auth/guest",
        headers,
        r#"{"name":"g"}"#,
    )
    .await
}

/// Sends `attempt` until it is refused with 429; returns how many passed before that.
async fn until_429<F: std::future::Future<Output = Answer>>(
    max: usize,
    mut attempt: impl FnMut(usize) -> F,
) -> (usize, Answer) {
    for i in 0..max {
        let a = attempt(i).await;
        if a.status == 429 {
            return (i, a);
        }
        assert_eq!(a.status, 200, "attempt {i}: {}", a.body);
    }
    panic!("no 429 in {max} attempts");
}

fn assert_rate_limited(a: &Answer) {
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.code(), "RATE_LIMITED", "{}", a.body);
    let secs: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(secs >= 1, "{secs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_sign_ins_are_limited_per_address_with_429_and_retry_after() {
    let s = guarded(|_| {}).await;
    // Sign-ins: 10 a minute per address (and 500 guest accounts in a row no longer work).
    let (passed, refused) = until_429(20, |_| guest_from(&s, "127.0.0.2", &[])).await;
    assert!((10..=11).contains(&passed), "{passed} sign-ups passed");
    assert_rate_limited(&refused);
    // Another address has its own allowance.
    assert_eq!(guest_from(&s, "127.0.0.3", &[]).await.status, 200);
    // Everything else: 100 a minute per address.
    let (passed, refused) = until_429(150, |_| {
        http(&s, "127.0.0.4", "GET", "/api/v1/rooms", &[], "")
    })
    .await;
    assert!((100..=110).contains(&passed), "{passed} requests passed");
    assert_rate_limited(&refused);
    let m = s.metrics().await;
    assert!(
        metric(&m, r#"parlor_refused_total{limit="auth"}"#) >= 1.0,
        "{m}"
    );
    assert!(
        metric(&m, r#"parlor_refused_total{limit="rest"}"#) >= 1.0,
        "{m}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Untrusted: a client naming a new address in each request still shares one allowance.
    let s = guarded(|_| {}).await;
    let (passed, _) = until_429(20, |i| {
        let xff = format!("10.9.0.{i}");
        let s = &s;
        async move { guest_from(s, "127.0.0.2", &[("X-Forwarded-For", &xff)]).await }
    })
    .await;
    assert!(passed <= 11, "{passed}");
    s.stop().await;

    // Behind a trusted proxy, each forwarded client has its own allowance...
    let s = guarded(|c| c.guard.trusted_proxies = vec!["127.0.0.2".into()]).await;
    for i in 0..15 {
        let xff = format!("1.2.3.4, 198.51.100.{i}");
        let a = guest_from(&s, "127.0.0.2", &[("X-Forwarded-For", &xff)]).await;
        assert_eq!(a.status, 200, "client {i}: {}", a.body);
    }
    // ...and the forwarded address is the one limited.
    let (passed, refused) = until_429(20, |_| {
        guest_from(&s, "127.0.0.2", &[("X-Forwarded-For", "203.0.113.50")])
    })
    .await;
    assert!((10..=11).contains(&passed), "{passed}");
    assert_rate_limited(&refused);
    s.stop().await;
}

async fn login_from(s: &TestServer, client: &str, login: &str, password: &str) -> Answer {
    let body = serde_json::json!({"login": login, "password": password}).to_string();
    let xff = [("X-Forwarded-For", client)];
    http(s, "127.0.0.2", "POST", "/api/v1/auth/login", &xff, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_addresses_guessing_one_account_are_slowed_and_its_owner_still_signs_in() {
    let s = guarded(|c| {
        c.guard.trusted_proxies = vec!["127.0.0.2".into()];
        // Each guesser sends one attempt: only the account's budget can stop them.
        c.guard.auth_per_min = 1000;
        c.guard.rest_per_min = 1000;
    })
    .await;
    s.rest()
        .register("victim", "correct horse battery", "Victim")
        .await
        .unwrap();
    let home = "192.0.2.10";
    assert_eq!(
        login_from(&s, home, "victim", "correct horse battery")
            .await
            .status,
        200
    );
    let (mut wrong, mut limited) = (0, 0);
    for i in 0..40 {
        let a = login_from(&s, &format!("203.0.113.{i}"), "victim", "guess").await;
        match a.status {
            401 => wrong += 1,
            429 => {
                assert_rate_limited(&a);
                limited += 1;
            }
            other => panic!("{other}: {}", a.body),
        }
    }
    assert!((10..=12).contains(&wrong), "{wrong} guesses were tried");
    assert!(limited >= 28, "{limited} guesses were refused");
    // The owner, from where they signed in before, is not locked out...
    let a = login_from(&s, home, "victim", "correct horse battery").await;
    assert_eq!(a.status, 200, "{}", a.body);
    // ...while the account's budget is spent for everyone else, even with the password.
    let a = login_from(&s, "198.51.100.9", "victim", "correct horse battery").await;
    assert_rate_limited(&a);
    // Other accounts are not affected.
    s.rest()
        .register("bystander", "correct horse battery", "B")
        .await
        .unwrap();
    let a = login_from(&s, "203.0.113.200", "bystander", "correct horse battery").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = s.metrics().await;
    assert!(metric(&m, r#"parlor_refused_total{limit="login_account"}"#) >= 28.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_hashing_is_bounded_and_a_full_queue_answers_503() {
    let s = guarded(|c| {
        c.guard.auth_per_min = 10_000;
        c.guard.login_failures_per_min = 10_000;
        c.guard.hash_concurrency = 1;
        c.guard.hash_queue = 1;
    })
    .await;
    // An over-long password is refused before any hashing.
    let long = "x".repeat(10_000);
    let a = login_from(&s, "127.0.0.9", "anyone", &long).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (400, "TOO_LONG"),
        "{}",
        a.body
    );
    // A flood: one hashes, one waits, the rest are told to come back.
    let flood = (0..24).map(|i| {
        let s = &s;
        async move { login_from(s, "127.0.0.9", &format!("nobody{i}"), "wrong password").await }
    });
    let answers = futures_util::future::join_all(flood).await;
    let busy: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    let tried = answers.iter().filter(|a| a.status == 401).count();
    assert_eq!(busy.len() + tried, 24, "only 401 and 503 are expected");
    // How many are tried depends on when the one thread takes the first job off the queue
    // of one (the second may find it still full): at least one.
    assert!(
        !busy.is_empty() && tried >= 1,
        "{} busy, {tried} tried",
        busy.len()
    );
    for a in busy {
        assert_eq!(a.code(), "UNAVAILABLE");
        assert_eq!(a.header("retry-after"), Some("1"));
    }
    let m = s.metrics().await;
    assert!(metric(&m, r#"parlor_refused_total{limit="hash_queue"}"#) >= 1.0);
    // Once the flood is over, sign-ins work.
    s.rest()
        .register("later", "correct horse battery", "L")
        .await
        .unwrap();
    s.stop().await;
}

/// The HTTP status of a refused WebSocket upgrade.
fn status_of(e: &parlor_client::ClientError) -> u16 {
    match e {
        parlor_client::ClientError::Http { status, .. } => *status,
        other => panic!("expected a refused upgrade, got {other:?}"),
    }
}

async fn ws_from(s: &TestServer, from: &str) -> parlor_client::Result<Connection> {
    Connection::connect_from(&s.ws_url(), Some(ip(from))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_admission_caps_sockets_per_address_and_per_pod_and_handshake_rate() {
    let s = guarded(|c| {
        c.guard.ws_per_addr = 3;
        c.guard.ws_max = 5;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = ws_from(&s, "127.0.0.2").await.unwrap();
        c.hello(None).await.unwrap();
        open.push(c);
    }
    let err = ws_from(&s, "127.0.0.2").await.unwrap_err();
    assert_eq!(status_of(&err), 429, "{err}");
    // Other addresses fill the pod to its cap; past it, the pod is full.
    for from in ["127.0.0.3", "127.0.0.4"] {
        open.push(ws_from(&s, from).await.unwrap());
    }
    let err = ws_from(&s, "127.0.0.5").await.unwrap_err();
    assert_eq!(status_of(&err), 503, "{err}");
    // A socket that closes frees its places.
    open.remove(0).close().await;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = ws_from(&s, "127.0.0.2").await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the closed socket's place was not freed");
    let m = s.metrics().await;
    assert!(metric(&m, r#"parlor_refused_total{limit="ws_addr"}"#) >= 1.0);
    assert!(metric(&m, r#"parlor_refused_total{limit="ws_pod"}"#) >= 1.0);
    s.stop().await;

    let s = guarded(|c| c.guard.ws_handshakes_per_min = 5).await;
    for _ in 0..5 {
        ws_from(&s, "127.0.0.6").await.unwrap().close().await;
    }
    let err = ws_from(&s, "127.0.0.6").await.unwrap_err();
    assert_eq!(status_of(&err), 429, "{err}");
    assert!(ws_from(&s, "127.0.0.7").await.is_ok());
    let m = s.metrics().await;
    assert!(metric(&m, r#"parlor_refused_total{limit="ws_handshake"}"#) >= 1.0);
    s.stop().await;
}

fn upgrade(origin: &str) -> Vec<(&str, &str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Origin", origin),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_origins_are_the_pods_own_unless_configured() {
    let s = guarded(|_| {}).await;
    let own = format!("http://{}", s.public);
    let mut ws = upgrade("http://evil.example");
    ws.push(("Connection", "Upgrade"));
    let a = http(&s, "127.0.0.2", "GET", "/ws", &ws, "").await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "FORBIDDEN"),
        "{}",
        a.head
    );
    let mut ws = upgrade(&own);
    ws.push(("Connection", "Upgrade"));
    assert_eq!(
        http(&s, "127.0.0.2", "GET", "/ws", &ws, "").await.status,
        101
    );
    // REST: a page elsewhere cannot post on a user's behalf; the pod's own page can.
    let a = guest_from(&s, "127.0.0.3", &[("Origin", "http://evil.example")]).await;
    assert_eq!((a.status, a.code().as_str()), (403, "FORBIDDEN"));
    assert_eq!(
        guest_from(&s, "127.0.0.3", &[("Origin", &own)])
            .await
            .status,
        200
    );
    s.stop().await;

    let s = guarded(|c| c.guard.allowed_origins = vec!["http://good.example".into()]).await;
    let preflight = [
        ("Origin", "http://good.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let a = http(
        &s,
        "127.0.0.2",
        "OPTIONS",
        "/api/v1/auth/guest",
        &preflight,
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.head);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://good.example")
    );
    let a = guest_from(&s, "127.0.0.2", &[("Origin", "http://good.example")]).await;
    assert_eq!(a.status, 200);
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some("http://good.example")
    );
    let mut ws = upgrade("http://good.example");
    ws.push(("Connection", "Upgrade"));
    assert_eq!(
        http(&s, "127.0.0.2", "GET", "/ws", &ws, "").await.status,
        101
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_the_websocket_subprotocol_signs_the_session_in() {
    let s = TestServer::start().await;
    let tokens = s.rest().guest("Ann").await.unwrap();
    let mut c = Connection::connect_with_token(&s.ws_url(), &tokens.access_token)
        .await
        .unwrap();
    let w = c.hello(None).await.unwrap();
    assert_eq!(w.user.unwrap().id, tokens.user_id);
    // A bad token there is refused before the upgrade, as in the URL.
    let err = Connection::connect_with_token(&s.ws_url(), "not.a.token")
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), 401, "{err}");
    s.stop().await;
}

async fn join_code(c: &mut Connection, code: &str, password: &str) -> v1::ErrorCode {
    let req = v1::JoinRoom {
        code: code.into(),
        password: password.into(),
        ..Default::default()
    };
    match c.join_room(req).await {
        Ok(_) => v1::ErrorCode::Unspecified,
        Err(parlor_client::ClientError::Server { code, .. }) => code,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_room_codes_and_passwords_spend_a_budget_per_session_and_per_address() {
    // Sign-ups here come from the test's own address; only guesses are under test.
    let s = guarded(|c| c.guard.auth_per_min = 1000).await;
    let (mut owner, _) = s.guest("Owner").await;
    let room = owner
        .create_room(v1::CreateRoom {
            name: "secret".into(),
            kind: "chat".into(),
            visibility: v1::Visibility::Private as i32,
            password: "sesame".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let code = room.room.unwrap().code;
    let guesser = |from: &'static str| {
        let s = &s;
        async move {
            let t = s.rest().guest("G").await.unwrap();
            let mut c = ws_from(s, from).await.unwrap();
            c.hello(Some(&t.access_token)).await.unwrap();
            c
        }
    };
    // One session: four wrong guesses (a fifth of the address's 20), then refusals, even
    // of the right code and password.
    let mut c = guesser("127.0.0.2").await;
    for i in 0..4 {
        assert_eq!(
            join_code(&mut c, &format!("WRONG{i}"), "").await,
            v1::ErrorCode::RoomNotFound
        );
    }
    assert_eq!(
        join_code(&mut c, &code, "sesame").await,
        v1::ErrorCode::RateLimited
    );
    // New sessions from the same address spend the address's budget of 20 (wrong
    // passwords count too); the failure that finds it spent starts the refusals.
    let mut wrong = 4;
    'sessions: for _ in 0..6 {
        let mut c = guesser("127.0.0.2").await;
        for _ in 0..4 {
            let got = join_code(&mut c, &code, "open sesame").await;
            if got == v1::ErrorCode::RateLimited {
                break 'sessions;
            }
            assert_eq!(got, v1::ErrorCode::WrongPassword);
            wrong += 1;
        }
    }
    assert!(
        (20..=22).contains(&wrong),
        "{wrong} wrong guesses were tried"
    );
    let mut c = guesser("127.0.0.2").await;
    assert_eq!(
        join_code(&mut c, &code, "sesame").await,
        v1::ErrorCode::RateLimited
    );
    // The refusal says when the address's budget has room again.
    let again = c
        .join_room(v1::JoinRoom {
            code: code.clone(),
            password: "sesame".into(),
            ..Default::default()
        })
        .await;
    match again {
        Err(parlor_client::ClientError::Server {
            code: v1::ErrorCode::RateLimited,
            retry_after: Some(wait),
            ..
        }) => assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(4),
            "{wait:?}"
        ),
        other => panic!("{other:?}"),
    }
    // Someone else, who knows the code and the password, gets in.
    let mut c = guesser("127.0.0.3").await;
    assert_eq!(
        join_code(&mut c, &code, "sesame").await,
        v1::ErrorCode::Unspecified
    );
    let m = s.metrics().await;
    assert!(metric(&m, r#"parlor_refused_total{limit="room_guess"}"#) >= 2.0);
    s.stop().await;
}

fn room_req(name: &str) -> v1::CreateRoom {
    create(name, "chat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_bound_live_rooms_persistent_rooms_and_ban_lists() {
    let s = guarded(|c| {
        c.guard.auth_per_min = 1000;
        c.limits.rooms_per_user = 2;
        c.limits.persistent_rooms_per_user = 1;
        c.limits.bans_per_room = 2;
    })
    .await;
    // Live rooms: two at once, then QUOTA_EXCEEDED until one closes.
    let (mut g, _) = s.guest("Greedy").await;
    let first = g.create_room(room_req("one")).await.unwrap().room.unwrap();
    g.create_room(room_req("two")).await.unwrap();
    refused(
        g.create_room(room_req("three")).await,
        v1::ErrorCode::QuotaExceeded,
    );
    g.leave_room(&first.id).await.unwrap();
    let mut made = false;
    for _ in 0..50 {
        match g.create_room(room_req("three")).await {
            Ok(_) => {
                made = true;
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(made, "a closed room did not give its place back");

    // Persistent rooms: never for guests; one for a registered account.
    let body = r#"{"name":"forever","kind":"chat","persistent":true}"#;
    let guest = s.rest().guest("G").await.unwrap();
    let bearer = format!("Bearer {}", guest.access_token);
    let auth = [("Authorization", bearer.as_str())];
    let a = http(&s, "127.0.0.2", "POST", "/api/v1/rooms", &auth, body).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "FORBIDDEN"),
        "{}",
        a.body
    );
    let user = s
        .rest()
        .register("keeper", "correct horse battery", "K")
        .await
        .unwrap();
    let bearer = format!("Bearer {}", user.access_token);
    let auth = [("Authorization", bearer.as_str())];
    let a = http(&s, "127.0.0.2", "POST", "/api/v1/rooms", &auth, body).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = http(&s, "127.0.0.2", "POST", "/api/v1/rooms", &auth, body).await;
    assert_eq!(
        (a.status, a.code().as_str()),
        (403, "QUOTA_EXCEEDED"),
        "{}",
        a.body
    );

    // Ban lists: two entries, then lift one to add another.
    let (mut owner, _) = s.guest("Owner").await;
    let room = owner
        .create_room(room_req("club"))
        .await
        .unwrap()
        .room
        .unwrap();
    let ban = |user: &str, action: v1::ModerationAction| v1::Moderate {
        room_id: room.id.clone(),
        user_id: user.into(),
        action: action as i32,
        reason: "spam".into(),
    };
    let call = |m: v1::Moderate| Body::Moderate(m);
    for u in ["u_a", "u_b"] {
        owner
            .request(call(ban(u, v1::ModerationAction::Ban)), T)
            .await
            .unwrap();
    }
    let third = owner
        .request(call(ban("u_c", v1::ModerationAction::Ban)), T)
        .await;
    refused(third, v1::ErrorCode::QuotaExceeded);
    owner
        .request(call(ban("u_a", v1::ModerationAction::Unban)), T)
        .await
        .unwrap();
    owner
        .request(call(ban("u_c", v1::ModerationAction::Ban)), T)
        .await
        .unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_strings_and_unknown_enum_values_are_refused_whole() {
    let s = TestServer::start().await;
    let (mut c, _) = s.guest("Ann").await;
    let room = c
        .create_room(room_req("lobby"))
        .await
        .unwrap()
        .room
        .unwrap();
    let long = "x".repeat(10_000);
    let cases = [
        (
            Body::Moderate(v1::Moderate {
                room_id: room.id.clone(),
                user_id: "u_x".into(),
                action: v1::ModerationAction::Ban as i32,
                reason: long.clone(),
            }),
            v1::ErrorCode::TooLong,
        ),
        (
            Body::Moderate(v1::Moderate {
                room_id: room.id.clone(),
                user_id: "u_x".into(),
                action: 77,
                reason: String::new(),
            }),
            v1::ErrorCode::InvalidArgument,
        ),
        (
            Body::PresenceUpdate(v1::PresenceUpdate {
                room_id: room.id.clone(),
                status: 9,
                ..Default::default()
            }),
            v1::ErrorCode::InvalidArgument,
        ),
        (
            Body::PresenceUpdate(v1::PresenceUpdate {
                room_id: room.id.clone(),
                cursor_x: Some(f32::NAN),
                ..Default::default()
            }),
            v1::ErrorCode::InvalidArgument,
        ),
        (
            Body::JoinRoom(v1::JoinRoom {
                code: long.clone(),
                ..Default::default()
            }),
            v1::ErrorCode::TooLong,
        ),
        (
            Body::CreateRoom(v1::CreateRoom {
                visibility: 3,
                ..room_req("x")
            }),
            v1::ErrorCode::InvalidArgument,
        ),
        (
            Body::JoinOrCreate(v1::JoinOrCreate {
                kind: "chat".into(),
                role: 12,
            }),
            v1::ErrorCode::InvalidArgument,
        ),
        (
            Body::Chat(v1::Chat {
                to_user_id: "u_anyone".into(),
                text: long.clone(),
                ..Default::default()
            }),
            v1::ErrorCode::TooLong,
        ),
    ];
    for (body, want) in cases {
        let what = format!("{body:?}").chars().take(60).collect::<String>();
        match c.request(body, T).await {
            Err(parlor_client::ClientError::Server { code, .. }) => {
                assert_eq!(code, want, "{what}")
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // Nothing of them was applied (the refused create made no room), and the session
    // goes on.
    assert_eq!(c.list_rooms("chat").await.unwrap().total, 1);
    c.chat(&room.id, "still here").await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_leaves_no_stats_row() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut owner, ow) = s.guest("Host").await;
    let owner_id = ow.user.unwrap().id;
    let room = owner
        .create_room(room_req("open"))
        .await
        .unwrap()
        .room
        .unwrap();
    let (mut visitor, w) = s.connect(None).await;
    let visitor_id = w.user.unwrap().id;
    visitor
        .join_room(v1::JoinRoom {
            room_id: room.id.clone(),
            role: v1::RoomRole::Watcher as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    // Time in the room counts at every flush (100 ms here): wait for a few.
    tokio::time::sleep(Duration::from_millis(400)).await;
    visitor.leave_room(&room.id).await.unwrap();
    owner.chat(&room.id, "bye").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.stop().await;
    let settings = store_settings(StoreKind::Embedded, dir.path(), &cfg);
    let store = parlor_store::open(&settings, Default::default(), None)
        .await
        .unwrap();
    let stats = |id: &str| {
        let subject = parlor_store::StatsSubject::User(parlor_core::UserId(id.into()));
        let store = &store;
        async move { store.stats.stats(&subject).await.unwrap() }
    };
    assert_eq!(stats(&visitor_id).await, parlor_store::Stats::default());
    // The account next to it was counted, so the flush did run.
    assert!(stats(&owner_id).await.room_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_passwords_are_kept_only_as_keyed_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut owner, _, _) = s.user("keeper").await;
    let room = owner
        .create_room(v1::CreateRoom {
            password: "sesame".into(),
            persistent: true,
            ..room_req("vault")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    assert!(room.has_password);
    s.stop().await;
    let settings = store_settings(StoreKind::Embedded, dir.path(), &cfg);
    let rooms = || async {
        let store = parlor_store::open(&settings, Default::default(), None)
            .await
            .unwrap();
        store.rooms.load_rooms().await.unwrap()
    };
    let mut stored = rooms().await.pop().unwrap();
    let hashed = stored.info.password.clone();
    assert!(
        hashed.starts_with("h1$") && !hashed.contains("sesame"),
        "{hashed}"
    );

    // A room an older version saved with its password in the clear is hashed at start.
    stored.info.id = parlor_core::RoomId("r_legacy".into());
    stored.info.code = "LEGACY".into();
    stored.info.password = "open sesame".into();
    {
        let store = parlor_store::open(&settings, Default::default(), None)
            .await
            .unwrap();
        store.rooms.save_room(&stored).await.unwrap();
    }
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut g, _) = s.guest("G").await;
    refused(
        g.join_room(join_pw(&room.id, "Sesame")).await,
        v1::ErrorCode::WrongPassword,
    );
    g.join_room(join_pw(&room.id, "sesame")).await.unwrap();
    refused(
        g.join_room(join_pw("r_legacy", "sesame")).await,
        v1::ErrorCode::WrongPassword,
    );
    g.join_room(join_pw("r_legacy", "open sesame"))
        .await
        .unwrap();
    s.stop().await;
    for r in rooms().await {
        assert!(r.info.password.starts_with("h1$"), "{}", r.info.password);
    }
}

async fn private(c: &mut Connection, to: &str, text: &str) -> v1::ErrorCode {
    let req = Body::Chat(v1::Chat {
        to_user_id: to.into(),
        text: text.into(),
        ..Default::default()
    });
    // A delivered line comes back to the sender as its acknowledgement.
    let rid = c.send(req).await.unwrap();
    c.wait_for(T, |f| match &f.body {
        Body::Error(e) if f.request_id == rid => Some(code(e)),
        Body::ChatMessage(m) if m.to_user_id == to && m.text == text => {
            Some(v1::ErrorCode::Unspecified)
        }
        _ => None,
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_messages_are_never_empty_never_to_visitors_and_obey_block_lists() {
    let s = TestServer::with(|c| c.limits.blocks_per_user = 1).await;
    let (mut ann, aw, _) = s.user("ann").await;
    let (mut bob, bw, bob_tokens) = s.user("bob").await;
    let (_carl, cw, _) = s.user("carl").await;
    let (_visitor, vw) = s.connect(None).await;
    let (ann_id, bob_id) = (aw.user.unwrap().id, bw.user.unwrap().id);
    assert_eq!(
        private(&mut ann, &bob_id, "hi").await,
        v1::ErrorCode::Unspecified
    );
    bob.wait_for(T, |f| {
        matches!(&f.body, Body::ChatMessage(m) if m.text == "hi").then_some(())
    })
    .await
    .unwrap();
    assert_eq!(
        private(&mut ann, &bob_id, "  ").await,
        v1::ErrorCode::InvalidArgument
    );
    let visitor_id = vw.user.unwrap().id;
    assert_eq!(
        private(&mut ann, &visitor_id, "hi").await,
        v1::ErrorCode::Forbidden
    );

    // Bob blocks Ann: her lines are refused, and nobody else's are.
    let rest = s.rest();
    let bearer = Some(bob_tokens.access_token.as_str());
    let blocks = |id: &str| format!("/api/v1/me/blocks/{id}");
    let put = |path: String| {
        let s = &s;
        let t = bob_tokens.access_token.clone();
        async move { raw_http("PUT", &format!("{}{path}", s.http_url()), Some(&t)).await }
    };
    assert_eq!(put(blocks(&ann_id)).await.0, 200);
    assert_eq!(
        private(&mut ann, &bob_id, "hi again").await,
        v1::ErrorCode::Forbidden
    );
    let listed = rest.get_json("/api/v1/me/blocks", bearer).await.unwrap();
    assert_eq!(listed["blocked"], serde_json::json!([ann_id]));
    // The list is bounded (one here).
    let (status, body) = put(blocks(&cw.user.unwrap().id)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("QUOTA_EXCEEDED"), "{body}");
    // Unblocked, she gets through again.
    let (status, _) = raw_http(
        "DELETE",
        &format!("{}{}", s.http_url(), blocks(&ann_id)),
        bearer,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        private(&mut ann, &bob_id, "friends").await,
        v1::ErrorCode::Unspecified
    );
    s.stop().await;
}

/// A small deterministic generator (xorshift64*), so that a failing run can be repeated.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// Random bytes, or a real frame with bytes flipped, cut, or spliced in.
    fn frame(&mut self, seeds: &[Vec<u8>]) -> Vec<u8> {
        if self.below(4) == 0 {
            let n = self.below(300);
            return (0..n).map(|_| self.next() as u8).collect();
        }
        let mut f = seeds[self.below(seeds.len())].clone();
        for _ in 0..1 + self.below(4) {
            match self.below(4) {
                0 if !f.is_empty() => {
                    let i = self.below(f.len());
                    f[i] ^= 1 << self.below(8);
                }
                1 if !f.is_empty() => f.truncate(self.below(f.len())),
                2 => {
                    let i = self.below(f.len() + 1);
                    f.insert(i, self.next() as u8);
                }
                _ => {
                    let i = self.below(f.len() + 1);
                    let n = self.below(8);
                    f.splice(i..i, std::iter::repeat_n(0xff, n));
                }
            }
        }
        f
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_mutated_frames_from_many_connections_leave_the_room_serving() {
    use parlor_client::tungstenite::Message;
    use parlor_protocol::encode_envelope;
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("Speaker").await;
    let (mut b, _) = s.guest("Listener").await;
    let room = a.create_room(create("jam", "piano")).await.unwrap();
    let room = room.room.unwrap().id;
    b.join_room(join_id(&room)).await.unwrap();
    let r = || room.clone();
    let seeds: Vec<Vec<u8>> = [
        Body::Chat(v1::Chat {
            room_id: r(),
            text: "hi".into(),
            ..Default::default()
        }),
        Body::GameEvent(v1::GameEvent {
            room_id: r(),
            r#type: "note_on".into(),
            payload: vec![60, 100].into(),
            ..Default::default()
        }),
        Body::PresenceUpdate(v1::PresenceUpdate {
            room_id: r(),
            cursor_x: Some(0.5),
            ..Default::default()
        }),
        Body::UpdateRoom(v1::UpdateRoom {
            room_id: r(),
            name: Some("x".into()),
            ..Default::default()
        }),
        Body::Moderate(v1::Moderate {
            room_id: r(),
            user_id: "u_x".into(),
            action: 2,
            reason: "r".into(),
        }),
        Body::JoinRoom(join_id(&room)),
        Body::LeaveRoom(v1::LeaveRoom { room_id: r() }),
        Body::CreateRoom(create("fuzzed", "dice")),
        Body::ListRooms(Default::default()),
        Body::Hello(v1::Hello::default()),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, b)| encode_envelope(i as u64 + 1, 0, b).to_vec())
    .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    let mut fuzzers = Vec::new();
    for n in 0..8u64 {
        let (seeds, room, ws) = (seeds.clone(), room.clone(), s.ws_url());
        let tokens = s.rest().guest("Fuzzer").await.unwrap();
        fuzzers.push(tokio::spawn(async move {
            let mut noise = Noise(0x9e37_79b9_7f4a_7c15 ^ (n + 1));
            let mut sent = 0u64;
            while tokio::time::Instant::now() < deadline {
                let Ok(mut c) = Connection::connect(&ws).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                if c.hello(Some(&tokens.access_token)).await.is_err() {
                    continue;
                }
                let _ = c.join_room(join_id(&room)).await;
                // Until the pod closes this socket (flooding, a text frame) or time is up.
                while tokio::time::Instant::now() < deadline {
                    let msg = match noise.below(20) {
                        0 => Message::Text("{\"hello\":1}".into()),
                        _ => Message::Binary(noise.frame(&seeds).into()),
                    };
                    if c.send_raw(msg).await.is_err() {
                        break;
                    }
                    sent += 1;
                    // Read what came back, so that this socket is never a slow consumer.
                    while c.next_frame(Duration::from_millis(1)).await.is_ok() {}
                    if noise.below(8) == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            sent
        }));
    }
    // Meanwhile a member keeps talking, and another keeps hearing every line, in order.
    let mut said = 0;
    while tokio::time::Instant::now() < deadline {
        a.chat(&room, &format!("tick {said}")).await.unwrap();
        said += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut heard = 0;
    while heard < said {
        let want = format!("tick {heard}");
        b.wait_for(T, |f| match &f.body {
            Body::ChatMessage(m) if m.text.starts_with("tick ") => Some(m.text.clone()),
            _ => None,
        })
        .await
        .map(|got| assert_eq!(got, want))
        .unwrap();
        heard += 1;
    }
    let mut sent = 0;
    for f in fuzzers {
        sent += f.await.unwrap();
    }
    assert!(sent > 500, "only {sent} frames were sent");
    // No actor panicked, and the pod still serves.
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, r#"parlor_actor_restarts_total{actor="room"}"#),
        0.0
    );
    let (mut late, _) = s.guest("Late").await;
    late.join_room(join_id(&room)).await.unwrap();
    s.stop().await;
}
