//! What SREs and dashboards rely on: health, metrics, restarts, drain, slow consumers,
//! supervision, Sentry and the binary's commands.

use std::{process::Command, time::Duration};

use parlor_client::{v1, Body, ClientError, Connection};

use super::support::*;

#[tokio::test]
async fn health_and_metrics_on_the_admin_port_only() {
    let s = TestServer::start().await;
    let admin = parlor_client::Rest::new(s.admin_url());
    assert_eq!(
        admin.get_json("/health/live", None).await.unwrap()["status"],
        "live"
    );
    assert_eq!(
        admin.get_json("/health/ready", None).await.unwrap()["status"],
        "ready"
    );
    let public = s.rest();
    assert!(matches!(
        public.get_json("/metrics", None).await,
        Err(ClientError::Http { status: 404, .. })
    ));

    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let room = a
        .create_room(create("m", "piano"))
        .await
        .unwrap()
        .room
        .unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    a.chat(&room.id, "hi").await.unwrap();
    room_events(&mut b, 1).await;
    let m = s.metrics().await;
    assert_eq!(metric(&m, "parlor_connections"), 2.0, "{m}");
    assert_eq!(metric(&m, "parlor_rooms"), 1.0);
    assert_eq!(metric(&m, "parlor_members"), 2.0);
    assert_eq!(metric(&m, "parlor_frames_in_total{type=\"chat\"}"), 1.0);
    assert!(metric(&m, "parlor_frames_out_total{kind=\"room_event\"}") >= 3.0);
    assert!(metric(&m, "parlor_fanout_size_count") >= 2.0);
    // The join and the chat line, each timed from numbering to recorded.
    assert!(
        metric(&m, "parlor_event_record_seconds_count") >= 2.0,
        "{m}"
    );
    assert!(metric(&m, "parlor_frame_handle_seconds_count{type=\"hello\"}") >= 2.0);
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        assert!(line.starts_with("parlor_"), "unprefixed metric: {line}");
    }
}

#[tokio::test]
async fn accounts_persistent_rooms_chat_and_stats_survive_a_restart() {
    survives_a_restart(StoreKind::Embedded).await;
}

#[tokio::test]
async fn on_mongodb_accounts_persistent_rooms_chat_and_stats_survive_a_restart() {
    survives_a_restart(StoreKind::MongoDb).await;
}

async fn survives_a_restart(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(dir.path(), kind);
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut a, _, tokens) = s.user("keeper").await;
    let room = a
        .create_room(v1::CreateRoom {
            persistent: true,
            ..create("Campaign", "tabletop")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let temp = a
        .create_room(create("scratch", "tabletop"))
        .await
        .unwrap()
        .room
        .unwrap();
    a.chat(&room.id, "the dragon sleeps").await.unwrap();
    a.game_event(&room.id, "roll", vec![20u8]).await.unwrap();
    room_events(&mut a, 1).await;
    // Time in rooms counts: at least this long, in each of the two rooms.
    tokio::time::sleep(Duration::from_millis(60)).await;
    a.close().await;
    s.stop().await;

    let s = TestServer::start_config(cfg).await;
    let t2 = s
        .rest()
        .login("keeper", "correct horse battery")
        .await
        .unwrap();
    assert_eq!(t2.user_id, tokens.user_id);
    let stats = s
        .rest()
        .get_json("/api/v1/me/stats", Some(&t2.access_token))
        .await
        .unwrap();
    assert_eq!(stats["chat_messages"], 1, "{stats}");
    assert_eq!(stats["game_events"], 1, "{stats}");
    assert_eq!(stats["joins"], 2, "{stats}");
    assert_eq!(stats["sessions"], 1, "{stats}");
    assert!(stats["room_ms"].as_u64().unwrap() >= 120, "{stats}");
    let got = s
        .rest()
        .get_json(&format!("/api/v1/rooms/{}", room.id), None)
        .await
        .unwrap();
    assert_eq!(got["name"], "Campaign");
    assert!(matches!(
        s.rest()
            .get_json(&format!("/api/v1/rooms/{}", temp.id), None)
            .await,
        Err(ClientError::Http { status: 404, .. })
    ));
    let (mut a2, _) = s.connect(Some(&t2.access_token)).await;
    let joined = a2.join_room(join_id(&room.id)).await.unwrap();
    assert_eq!(joined.your_role, v1::RoomRole::Owner as i32);
    let lines: Vec<_> = joined.recent_chat.iter().map(|c| c.text.as_str()).collect();
    assert_eq!(lines, ["the dragon sleeps"]);
}

/// Sends `texts` as chat and waits until the room has echoed the last of them.
async fn say_all(c: &mut Connection, room: &str, texts: &[String]) {
    for t in texts {
        c.chat(room, t).await.unwrap();
    }
    let last = texts.last().unwrap().clone();
    loop {
        let f = c.next_frame(T).await.unwrap();
        match f.body {
            Body::ChatMessage(m) if m.text == last => break,
            Body::Error(e) => panic!("chat refused: {e:?}"),
            _ => {}
        }
    }
}

/// Rejoins `room` on `s` as the registered `login` and returns its chat snapshot.
async fn chat_after_restart(s: &TestServer, login: &str, room: &str) -> Vec<String> {
    let t = s
        .rest()
        .login(login, "correct horse battery")
        .await
        .unwrap();
    let (mut c, _) = s.connect(Some(&t.access_token)).await;
    let joined = c.join_room(join_id(room)).await.unwrap();
    c.close().await;
    joined.recent_chat.into_iter().map(|l| l.text).collect()
}

#[tokio::test]
async fn every_chat_line_of_a_persistent_room_survives_restarts_in_order() {
    chat_survives_restarts(StoreKind::Embedded).await;
}

#[tokio::test]
async fn on_mongodb_every_chat_line_of_a_persistent_room_survives_restarts_in_order() {
    chat_survives_restarts(StoreKind::MongoDb).await;
}

async fn chat_survives_restarts(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = store_config(dir.path(), kind);
    cfg.rooms.snapshot_chat = 1000;
    let wait_flush = Duration::from_millis(cfg.stats.flush_interval_ms * 3);
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut a, _, _) = s.user("scribe").await;
    let room = a
        .create_room(v1::CreateRoom {
            persistent: true,
            ..rated("Chronicle", "tabletop", 1000)
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let lines: Vec<String> = (0..130).map(|i| format!("line {i:03}")).collect();
    // Two batches, each left to a periodic flush, then a restart.
    say_all(&mut a, &room.id, &lines[..60]).await;
    tokio::time::sleep(wait_flush).await;
    say_all(&mut a, &room.id, &lines[60..120]).await;
    tokio::time::sleep(wait_flush).await;
    a.close().await;
    s.stop().await;

    let s = TestServer::start_config(cfg.clone()).await;
    assert_eq!(
        chat_after_restart(&s, "scribe", &room.id).await,
        lines[..120]
    );

    // Lines written after a restart continue the history instead of overwriting it.
    let t = s
        .rest()
        .login("scribe", "correct horse battery")
        .await
        .unwrap();
    let (mut a, _) = s.connect(Some(&t.access_token)).await;
    a.join_room(join_id(&room.id)).await.unwrap();
    say_all(&mut a, &room.id, &lines[120..]).await;
    a.close().await;
    s.stop().await;

    let s = TestServer::start_config(cfg).await;
    assert_eq!(chat_after_restart(&s, "scribe", &room.id).await, lines);
}

#[tokio::test]
async fn a_panicking_room_is_restarted_and_its_members_play_on() {
    let s = TestServer::with(|c| c.debug.fault_injection = true).await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let room = a
        .create_room(create("fragile", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    a.chat(&room.id, "before").await.unwrap();
    let before = room_events(&mut b, 1).await[0].seq;

    let rid = a
        .game_event(&room.id, "parlor.debug.panic", vec![])
        .await
        .unwrap();
    let (erid, e) = next_error(&mut a).await;
    assert_eq!((erid, code(&e)), (rid, v1::ErrorCode::Internal));

    a.chat(&room.id, "after").await.unwrap();
    let after = b
        .wait_for(T, |f| match &f.body {
            Body::ChatMessage(m) if m.text == "after" => Some(f.seq),
            _ => None,
        })
        .await
        .unwrap();
    assert!(after > before, "seq keeps increasing across the restart");
    let list = b.list_rooms("table").await.unwrap();
    assert_eq!(
        list.rooms[0].member_count, 2,
        "membership survived the restart"
    );
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "parlor_actor_restarts_total{actor=\"room\"}"),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn draining_tells_clients_to_reconnect_then_closes_with_1001() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let stop = tokio::spawn(s.stop());
    let reconnect = a
        .wait_for(T, |f| match &f.body {
            Body::Reconnect(r) => Some(r.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert!(!reconnect.reason.is_empty());
    assert_eq!(close_code(&mut a).await, Some(1001));
    stop.await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_closed_after_the_idle_timeout() {
    let s = TestServer::with(|c| {
        c.ws.heartbeat_interval_ms = 100;
        c.ws.idle_timeout_ms = 300;
    })
    .await;
    // A raw socket that completes the handshake and then never reads or answers pings.
    let url = format!("ws://{}/ws", s.public);
    let code = tokio::task::spawn_blocking(move || {
        let (mut ws, _) = parlor_client::tungstenite::client::connect(url).unwrap();
        std::thread::sleep(Duration::from_millis(900));
        let mut code = None;
        while let Ok(msg) = ws.read() {
            if let parlor_client::tungstenite::Message::Close(Some(f)) = msg {
                code = Some(u16::from(f.code));
            }
        }
        code
    })
    .await
    .unwrap();
    assert_eq!(code, Some(4004));
    let _ = Connection::connect(&s.ws_url()).await.unwrap(); // the pod is fine
}

fn parlor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_parlor"));
    for k in inherited_parlor_vars() {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `parlor serve` in `dir` with `env`, expects it to refuse to start, and returns
/// what it printed on stderr.
fn refused_start(dir: &std::path::Path, env: &[(String, String)]) -> String {
    let out = parlor()
        .current_dir(dir)
        .envs(env.iter().cloned())
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn invalid_config_fails_at_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = [("PARLOR_WS__OUTBOUND_HARD_BYTES".to_owned(), "3".to_owned())];
    let err = refused_start(dir.path(), &bad);
    assert!(err.contains("ws.outbound_hard_bytes"), "{err}");

    std::fs::write(
        dir.path().join("parlor.toml"),
        "[server]\npublic_adr = \"x\"\n",
    )
    .unwrap();
    assert!(refused_start(dir.path(), &[]).contains("public_adr"));
}

/// The variables kubelet injects into every pod for a Service, unless the pod sets
/// `enableServiceLinks: false`.
fn service_links(service: &str, ip: &str, ports: &[(&str, u16)]) -> Vec<(String, String)> {
    let svc = service.to_ascii_uppercase().replace('-', "_");
    let (_, first) = ports[0];
    let mut vars = vec![
        (format!("{svc}_SERVICE_HOST"), ip.to_owned()),
        (format!("{svc}_SERVICE_PORT"), first.to_string()),
        (format!("{svc}_PORT"), format!("tcp://{ip}:{first}")),
    ];
    for (name, port) in ports {
        let name = name.to_ascii_uppercase().replace('-', "_");
        let p = format!("{svc}_PORT_{port}_TCP");
        vars.extend([
            (format!("{svc}_SERVICE_PORT_{name}"), port.to_string()),
            (p.clone(), format!("tcp://{ip}:{port}")),
            (format!("{p}_PROTO"), "tcp".into()),
            (format!("{p}_PORT"), port.to_string()),
            (format!("{p}_ADDR"), ip.to_owned()),
        ]);
    }
    vars
}

#[tokio::test]
async fn the_pod_starts_beside_kubernetes_service_links_and_still_refuses_typos() {
    let mut env = service_links("parlor", "10.96.0.10", &[("public", 8080)]);
    env.extend(service_links(
        "parlor-admin",
        "10.96.0.11",
        &[("admin", 9090)],
    ));
    assert!(env.iter().any(|(k, _)| k == "PARLOR_PORT"));
    assert!(env
        .iter()
        .any(|(k, _)| k == "PARLOR_ADMIN_PORT_9090_TCP_ADDR"));

    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, admin) = spawn_pod(dir.path(), &env, std::process::Stdio::piped());
    let probe = parlor_client::Rest::new(format!("http://{admin}"));
    let mut ready = false;
    for _ in 0..400 {
        if let Ok(Some(status)) = child.try_wait() {
            let out = child.wait_with_output().await.unwrap();
            panic!(
                "pod exited with {status}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if probe.get_json("/health/ready", None).await.is_ok() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "pod never became ready");
    child.start_kill().unwrap();

    // A typo in a real key is still an error that names it.
    env.push(("PARLOR_WS__OUTBOUND_QUEU".to_owned(), "5".to_owned()));
    let err = refused_start(dir.path(), &env);
    assert!(err.contains("outbound_queu"), "{err}");

    // Our own manifests opt out of service links: the pod needs none of them.
    let root = env!("CARGO_MANIFEST_DIR");
    for f in ["k8s/parlor.yaml", "helm/parlor/templates/statefulset.yaml"] {
        let text = std::fs::read_to_string(format!("{root}/{f}")).unwrap();
        assert!(text.contains("enableServiceLinks: false"), "{f}");
    }
}

#[tokio::test]
async fn keygen_and_token_commands_produce_keys_and_tokens_the_pod_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let out = parlor()
        .args(["keygen", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let pem = std::fs::read_to_string(dir.path().join("signing.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("signing.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key = dir.path().join("signing.pem");
    let s = TestServer::with(|c| c.auth.signing_key = key.clone()).await;
    let user = s.rest().guest("ops-target").await.unwrap();
    let out = parlor()
        .env("PARLOR_AUTH__SIGNING_KEY", &key)
        .env("PARLOR_SERVER__DATA_DIR", dir.path())
        .args(["token", "--user", &user.user_id, "--role", "guest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).unwrap();
    let (_, w) = s.connect(Some(token.trim())).await;
    assert_eq!(w.user.unwrap().id, user.user_id);
}

/// Runs the real binary with a DSN pointing at a local HTTP listener, panics a room, and
/// checks that the envelope Sentry posts carries the panic and the release.
#[tokio::test]
async fn a_panic_reaches_sentry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sentry = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sentry_addr = sentry.local_addr().unwrap();
    let captured = tokio::spawn(async move {
        let mut all = Vec::new();
        loop {
            let (mut sock, _) = sentry.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            // Read until the request body (Content-Length) is complete.
            loop {
                let n = sock.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = find(&buf, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map(|v| v.trim().parse::<usize>().unwrap())
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            // One request per connection, so that no keep-alive request goes unread.
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")
                .await;
            all.extend_from_slice(&buf);
            let text = String::from_utf8_lossy(&all).to_string();
            if text.contains("fault injection") {
                return text;
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "PARLOR_SENTRY_DSN".to_owned(),
            format!("http://publickey@{sentry_addr}/1"),
        ),
        (
            "PARLOR_DEBUG__FAULT_INJECTION".to_owned(),
            "true".to_owned(),
        ),
    ];
    let (mut child, public, _) = spawn_pod(dir.path(), &env, std::process::Stdio::null());
    let rest = parlor_client::Rest::new(format!("http://{public}"));
    let mut tokens = None;
    for _ in 0..200 {
        if let Ok(t) = rest.guest("crash").await {
            tokens = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let tokens = tokens.expect("pod started");
    let mut c = Connection::connect(&format!("ws://{public}/ws"))
        .await
        .unwrap();
    c.hello(Some(&tokens.access_token)).await.unwrap();
    let room = c
        .create_room(create("boom", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    c.game_event(&room.id, "parlor.debug.panic", vec![])
        .await
        .unwrap();
    assert_eq!(code(&next_error(&mut c).await.1), v1::ErrorCode::Internal);

    let envelope = tokio::time::timeout(Duration::from_secs(15), captured)
        .await
        .unwrap()
        .unwrap();
    assert!(envelope.contains("/api/1/envelope/"), "{envelope}");
    assert!(
        envelope.contains(&format!("parlor@{}", env!("CARGO_PKG_VERSION"))),
        "{envelope}"
    );
    // The pod survived its room's panic.
    assert!(rest.get_json("/api/v1/rooms", None).await.is_ok());
    child.start_kill().unwrap();
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads from `sock` into `buf` until `done` holds; fails after 5 s.
async fn read_until(
    sock: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) {
    use tokio::io::AsyncReadExt;
    let read = async {
        while !done(buf) {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed early; got {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("timed out");
}

#[tokio::test]
async fn upgraded_sockets_keep_pipelined_bytes_and_other_upgrades_get_a_plain_answer() {
    use tokio::io::AsyncWriteExt;
    let s = TestServer::start().await;
    let token = s.rest().guest("raw").await.unwrap().access_token;
    // A Hello frame sent in the same write as the handshake: it arrives with the request
    // head, before the socket leaves the HTTP dispatcher, and must not be lost.
    let hello = parlor_protocol::encode_envelope(
        7,
        0,
        Body::Hello(v1::Hello {
            protocol_version: parlor_protocol::PROTOCOL_VERSION,
            access_token: token,
            resume_token: String::new(),
        }),
    );
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut req = b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    let len = u16::try_from(hello.len()).unwrap();
    req.extend_from_slice(&[0x82, 0x80 | 126]);
    req.extend_from_slice(&len.to_be_bytes());
    req.extend_from_slice(&mask);
    req.extend(hello.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let mut sock = tokio::net::TcpStream::connect(s.public).await.unwrap();
    sock.write_all(&req).await.unwrap();
    // The first server frame after the 101 head: (payload start, payload length).
    let frame = |b: &[u8]| -> Option<(usize, usize)> {
        let h = b.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let (at, len) = match *b.get(h + 1)? & 0x7f {
            126 => (
                h + 4,
                usize::from(u16::from_be_bytes([*b.get(h + 2)?, *b.get(h + 3)?])),
            ),
            127 => return None,
            n => (h + 2, usize::from(n)),
        };
        (b.len() >= at + len).then_some((at, len))
    };
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| frame(b).is_some()).await;
    assert!(
        buf.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    let (at, len) = frame(&buf).unwrap();
    let env = <v1::Envelope as prost::Message>::decode(&buf[at..at + len]).unwrap();
    assert_eq!(env.request_id, 7);
    assert!(matches!(env.body, Some(Body::Welcome(_))), "{env:?}");

    // An upgrade to anything else is answered as a plain request, then closed.
    let mut sock = tokio::net::TcpStream::connect(s.public).await.unwrap();
    sock.write_all(
        b"GET /api/v1/rooms HTTP/1.1\r\nHost: t\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        sock.read_to_end(&mut buf).await.unwrap();
    })
    .await
    .expect("the server closes after answering");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"rooms\""), "{text}");
}

/// Polls `/health/ready` until it answers `ready` (true) or not (false), within 20 s.
async fn wait_ready(s: &TestServer, want: bool) {
    let probe = parlor_client::Rest::new(s.admin_url());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ready = probe.get_json("/health/ready", None).await.is_ok();
        if ready == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/health/ready never became {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_mongodb_outage_loses_no_chat_line_stats_or_room_change_and_readiness_follows_it() {
    // The outage needs a server the test can stop, so it runs on its own SecantusDB.
    let disk = tempfile::tempdir().unwrap();
    let mut db = parlor_store::testing::WireServer::start_on_disk(disk.path());
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    // Writes give up after 1 s, so the outage makes them fail and be retried.
    let opts =
        parlor_store::testing::options(&format!("{}&serverSelectionTimeoutMS=1000", db.uri()));
    cfg.store.kind = "mongodb".into();
    cfg.store.mongodb_uri = opts.uri.clone();
    cfg.store.database = opts.database.clone();
    cfg.rooms.snapshot_chat = 1000;
    // Exactly the lines said during the outage fit; one more is refused.
    cfg.rooms.chat_backlog_max = 20;
    let s = TestServer::start_config(cfg).await;
    let (mut a, _, bard) = s.user("bard").await;
    let room = a
        .create_room(v1::CreateRoom {
            persistent: true,
            ..rated("Saga", "tabletop", 1000)
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let lines: Vec<String> = (0..40).map(|i| format!("verse {i:02}")).collect();
    for i in 0..10u8 {
        a.game_event(&room.id, "roll", vec![i]).await.unwrap();
    }
    say_all(&mut a, &room.id, &lines[..20]).await;
    wait_ready(&s, true).await;
    // The first lines are stored before the outage begins.
    let history = format!("/api/v1/rooms/{}/messages?limit=50", room.id);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = s
            .rest()
            .get_json(&history, Some(&bard.access_token))
            .await
            .unwrap();
        if page["messages"].as_array().unwrap().len() == 20 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "lines never stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The store goes away for 5 s while play goes on.
    let stopped = tokio::time::Instant::now();
    db.stop();
    wait_ready(&s, false).await;
    for i in 0..10u8 {
        a.game_event(&room.id, "roll", vec![i]).await.unwrap();
    }
    say_all(&mut a, &room.id, &lines[20..]).await;
    // The backlog is full: the next line is refused, with a reason, not dropped later.
    a.chat(&room.id, "one too many").await.unwrap();
    assert_eq!(
        code(&next_error(&mut a).await.1),
        v1::ErrorCode::Unavailable
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while metric(&s.metrics().await, "parlor_chat_unsaved") != 20.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the writer holds the 20 lines"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A settings change is acknowledged during the outage, and must reach the store later.
    a.request(
        Body::UpdateRoom(v1::UpdateRoom {
            room_id: room.id.clone(),
            settings: Some(v1::RoomSettings {
                welcome_message: Some("written while the store was down".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        T,
    )
    .await
    .unwrap();
    // A login must read the account now: it is refused, and says why.
    match s.rest().login("bard", "correct horse battery").await {
        Err(ClientError::Http { status, code, .. }) => {
            assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"))
        }
        other => panic!("login during the outage: {other:?}"),
    }
    tokio::time::sleep_until(stopped + Duration::from_secs(5)).await;
    db.restart();
    wait_ready(&s, true).await;

    // Every line and increment lands exactly once, read back from MongoDB itself.
    let store = parlor_store::MongoStore::connect(&opts).await.unwrap();
    let store = parlor_store::Store::new(store);
    let user = parlor_store::StatsSubject::User(parlor_core::UserId(bard.user_id.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let history = store
            .chat
            .recent_chat(&parlor_core::RoomId(room.id.clone()), None, 10_000)
            .await
            .unwrap();
        let stats = store.stats.stats(&user).await.unwrap();
        let texts: Vec<String> = history.iter().map(|l| l.text.clone()).collect();
        if texts.len() >= lines.len() && stats.chat_messages >= 40 && stats.game_events >= 20 {
            assert_eq!(texts, lines, "every line once, in order");
            assert_eq!((stats.chat_messages, stats.game_events), (40, 20));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "after the outage the store has {} lines and {stats:?}",
            texts.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let room_stats = store
        .stats
        .stats(&parlor_store::StatsSubject::Room(parlor_core::RoomId(
            room.id.clone(),
        )))
        .await
        .unwrap();
    assert_eq!((room_stats.peak_members, room_stats.chat_messages), (1, 40));
    let saved = store.rooms.load_rooms().await.unwrap();
    let saved = saved.iter().find(|r| r.info.id.0 == room.id).unwrap();
    assert_eq!(
        saved.settings.welcome_message,
        "written while the store was down"
    );
    // Nothing more arrives later (no duplicate from a late retry).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = store.stats.stats(&user).await.unwrap();
    assert_eq!((stats.chat_messages, stats.game_events), (40, 20));
    let m = s.metrics().await;
    // Every store call is timed by operation, and the outage's failures are counted.
    assert_eq!(metric(&m, "parlor_chat_unsaved"), 0.0);
    for series in [
        "parlor_store_refused_writes_total{kind=\"chat\"}",
        "parlor_store_retries_total{kind=\"user_stats\"}",
        "parlor_store_seconds_count{op=\"append_chat\"}",
        "parlor_store_errors_total{op=\"find_user_by_login\"}",
        "parlor_tracker_batches_total{tracker=\"user_stats\"}",
        "parlor_tracker_batches_total{tracker=\"room_stats\"}",
    ] {
        assert!(metric(&m, series) >= 1.0, "{series} in {m}");
    }
    a.close().await;
    s.stop().await;
}

#[tokio::test]
async fn chat_history_pages_and_exports_by_room_role_on_the_embedded_store() {
    history_pages_and_exports(StoreKind::Embedded).await;
}

#[tokio::test]
async fn chat_history_pages_and_exports_by_room_role_on_mongodb() {
    history_pages_and_exports(StoreKind::MongoDb).await;
}

async fn history_pages_and_exports(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_config(store_config(dir.path(), kind)).await;
    let (mut owner, _, ot) = s.user("keeper").await;
    let (mut other, ow, tt) = s.user("wanderer").await;
    let public = owner
        .create_room(v1::CreateRoom {
            persistent: true,
            ..rated("Campaign", "tabletop", 1000)
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let secret = owner
        .create_room(v1::CreateRoom {
            persistent: true,
            visibility: v1::Visibility::Private as i32,
            ..create("Secret", "tabletop")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let lines: Vec<String> = (0..120).map(|i| format!("entry {i:03}")).collect();
    say_all(&mut owner, &public.id, &lines).await;

    let rest = s.rest();
    let page = |before: Option<u64>, token: String| {
        let rest = s.rest();
        let q = before.map_or(String::new(), |b| format!("&before={b}"));
        let path = format!("/api/v1/rooms/{}/messages?limit=50{q}", public.id);
        async move { rest.get_json(&path, Some(&token)).await }
    };
    // The writer flushes in the background; wait for the newest line to be stored.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let first = page(None, tt.access_token.clone()).await.unwrap();
        if first["messages"]
            .as_array()
            .unwrap()
            .last()
            .map(|m| m["text"].clone())
            == Some(serde_json::json!("entry 119"))
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "history not stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back through the history in pages of 50: 50, 50, 20, then no further page.
    let mut got: Vec<String> = Vec::new();
    let mut before = None;
    let mut pages = 0;
    loop {
        let p = page(before, tt.access_token.clone()).await.unwrap();
        pages += 1;
        let texts: Vec<String> = p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect();
        got.splice(0..0, texts);
        match p["next_before"].as_u64() {
            Some(b) => before = Some(b),
            None => break,
        }
    }
    assert_eq!(got, lines);
    assert_eq!(pages, 3);

    // The export is every line, as JSON Lines, oldest first.
    let url = format!(
        "{}/api/v1/rooms/{}/messages/export",
        s.http_url(),
        public.id
    );
    let resp = raw_http("GET", &url, Some(&tt.access_token)).await;
    assert_eq!(resp.0, 200);
    let exported: Vec<String> = resp
        .1
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(exported, lines);

    // Refusals: no token, a bad limit, a private room's outsider, a banned account.
    assert!(matches!(
        rest.get_json(&format!("/api/v1/rooms/{}/messages", public.id), None)
            .await,
        Err(ClientError::Http { status: 401, .. })
    ));
    assert!(matches!(
        rest.get_json(
            &format!("/api/v1/rooms/{}/messages?limit=0", public.id),
            Some(&tt.access_token)
        )
        .await,
        Err(ClientError::Http { status: 400, .. })
    ));
    let secret_path = format!("/api/v1/rooms/{}/messages", secret.id);
    assert!(matches!(
        rest.get_json(&secret_path, Some(&tt.access_token)).await,
        Err(ClientError::Http { status: 404, .. })
    ));
    rest.get_json(&secret_path, Some(&ot.access_token))
        .await
        .unwrap();
    other.join_room(join_id(&public.id)).await.unwrap();
    owner
        .request(
            Body::Moderate(v1::Moderate {
                room_id: public.id.clone(),
                user_id: ow.user.unwrap().id,
                action: v1::ModerationAction::Ban as i32,
                reason: "spoilers".into(),
            }),
            T,
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match page(None, tt.access_token.clone()).await {
            Err(ClientError::Http { status: 403, .. }) => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "banned reader still served: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deleting_a_persistent_room_removes_it_and_its_history_on_the_embedded_store() {
    room_deletion(StoreKind::Embedded).await;
}

#[tokio::test]
async fn deleting_a_persistent_room_removes_it_and_its_history_on_mongodb() {
    room_deletion(StoreKind::MongoDb).await;
}

async fn room_deletion(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(dir.path(), kind);
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut owner, _, ot) = s.user("founder").await;
    let (mut member, _, mt) = s.user("regular").await;
    let room = owner
        .create_room(v1::CreateRoom {
            persistent: true,
            ..create("Doomed", "table")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    member.join_room(join_id(&room.id)).await.unwrap();
    say_all(&mut owner, &room.id, &["last words".to_string()]).await;

    let path = format!("/api/v1/rooms/{}", room.id);
    assert_eq!(
        reqwest_delete(&s, &path, &mt.access_token).await,
        403,
        "a member may not delete"
    );
    assert_eq!(reqwest_delete(&s, &path, &ot.access_token).await, 204);
    let left = member
        .wait_for(T, |f| match &f.body {
            Body::RoomLeft(l) => Some(l.reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(left, v1::LeaveReason::Closed as i32);
    assert!(matches!(
        s.rest().get_json(&path, None).await,
        Err(ClientError::Http { status: 404, .. })
    ));
    assert_eq!(
        reqwest_delete(&s, &path, &ot.access_token).await,
        404,
        "already gone"
    );
    owner.close().await;
    member.close().await;
    s.stop().await;

    // Gone from the store too: not loaded at the next start, and no history left.
    let s = TestServer::start_config(cfg.clone()).await;
    assert!(matches!(
        s.rest().get_json(&path, None).await,
        Err(ClientError::Http { status: 404, .. })
    ));
    s.stop().await;
    let settings = store_settings(kind, dir.path(), &cfg);
    let store = parlor_store::open(&settings, Default::default(), None)
        .await
        .unwrap();
    let history = store
        .chat
        .recent_chat(&parlor_core::RoomId(room.id.clone()), None, 10)
        .await
        .unwrap();
    assert!(history.is_empty(), "{history:?}");
}

#[tokio::test]
async fn moderation_and_admin_actions_are_audited_on_the_embedded_store() {
    audited(StoreKind::Embedded).await;
}

#[tokio::test]
async fn moderation_and_admin_actions_are_audited_on_mongodb() {
    audited(StoreKind::MongoDb).await;
}

async fn audited(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_config(store_config(dir.path(), kind)).await;
    let (mut owner, ow, ot) = s.user("warden").await;
    let (mut member, mw, mt) = s.user("rowdy").await;
    let (_root, _, rt) = s.user("root").await;
    let (owner_id, member_id) = (ow.user.unwrap().id, mw.user.unwrap().id);
    let room = owner
        .create_room(create("Hall", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    member.join_room(join_id(&room.id)).await.unwrap();
    owner
        .request(
            Body::Moderate(v1::Moderate {
                room_id: room.id.clone(),
                user_id: member_id.clone(),
                action: v1::ModerationAction::Ban as i32,
                reason: "spoilers".into(),
            }),
            T,
        )
        .await
        .unwrap();
    s.rest()
        .post_json(
            "/api/v1/auth/magic",
            &serde_json::json!({"login": "rowdy"}),
            Some(&rt.access_token),
        )
        .await
        .unwrap();
    assert_eq!(
        reqwest_delete(&s, &format!("/api/v1/rooms/{}", room.id), &ot.access_token).await,
        204
    );

    // Only admins read the log; it is newest first.
    assert!(matches!(
        s.rest()
            .get_json("/api/v1/admin/audit", Some(&mt.access_token))
            .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let records = loop {
        let log = s
            .rest()
            .get_json("/api/v1/admin/audit?limit=10", Some(&rt.access_token))
            .await
            .unwrap();
        let records = log["records"].as_array().unwrap().clone();
        if records.len() >= 3 {
            break records;
        }
        assert!(tokio::time::Instant::now() < deadline, "audit log: {log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["room.delete", "account.magic_code", "room.ban"]);
    let ban = &records[2];
    assert_eq!(ban["actor"], owner_id.as_str());
    assert_eq!(ban["target"], member_id.as_str());
    assert_eq!(ban["room"], room.id.as_str());
    assert_eq!(ban["reason"], "spoilers");
    assert_eq!(records[1]["target"], "rowdy");
}

#[tokio::test]
async fn leaderboards_and_user_stats_read_the_ratings_on_the_embedded_store() {
    leaderboards(StoreKind::Embedded).await;
}

#[tokio::test]
async fn leaderboards_and_user_stats_read_the_ratings_on_mongodb() {
    leaderboards(StoreKind::MongoDb).await;
}

async fn leaderboards(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(dir.path(), kind);
    let s = TestServer::start_config(cfg.clone()).await;
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for name in ["ada", "bob", "cyd"] {
        let t = s
            .rest()
            .register(name, "correct horse battery", name)
            .await
            .unwrap();
        ids.push(parlor_core::UserId(t.user_id.clone()));
        tokens.push(t.access_token);
    }
    s.stop().await;

    // Results as the room-kinds issue will write them: straight into the store.
    let settings = store_settings(kind, dir.path(), &cfg);
    {
        let store = parlor_store::open(&settings, Default::default(), None)
            .await
            .unwrap();
        let rating = |i: usize, value: f64| parlor_store::Rating {
            user: ids[i].clone(),
            kind: "trivia".into(),
            value,
            games: 1,
            updated_at_ms: 1,
            uncertainty: 0.0,
            wins: 0,
            losses: 0,
        };
        let m = parlor_store::MatchRecord {
            id: format!("{:013}-m1", parlor_core::now_ms()),
            kind: "trivia".into(),
            room: None,
            at_ms: parlor_core::now_ms(),
            players: (0..3)
                .map(|i| parlor_store::MatchPlayer {
                    user: ids[i].clone(),
                    place: i as u32 + 1,
                    score: 0,
                    rating_before: Some(1000.0),
                    rating_after: None,
                })
                .collect(),
        };
        store
            .ratings
            .record_match(
                &m,
                &[rating(0, 1030.0), rating(1, 1000.0), rating(2, 970.0)],
            )
            .await
            .unwrap();
    }

    let s = TestServer::start_config(cfg).await;
    let top = s
        .rest()
        .get_json("/api/v1/leaderboards/trivia?limit=2", None)
        .await
        .unwrap();
    let users: Vec<&str> = top["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(top["players"][0]["place"], 1);
    let near = s
        .rest()
        .get_json(
            "/api/v1/leaderboards/trivia?around=me&limit=1",
            Some(&tokens[2]),
        )
        .await
        .unwrap();
    assert_eq!(near["place"], 3);
    let places: Vec<u64> = near["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["place"].as_u64().unwrap())
        .collect();
    assert_eq!(places, [2, 3]);
    assert!(matches!(
        s.rest()
            .get_json("/api/v1/leaderboards/trivia?around=me", None)
            .await,
        Err(ClientError::Http { status: 401, .. })
    ));
    assert!(matches!(
        s.rest()
            .get_json("/api/v1/leaderboards/trivia?limit=0", None)
            .await,
        Err(ClientError::Http { status: 400, .. })
    ));
    let stats = s
        .rest()
        .get_json(&format!("/api/v1/users/{}/stats", ids[0]), None)
        .await
        .unwrap();
    assert_eq!(stats["ratings"]["trivia"]["rating"], 1030.0);
    assert_eq!(stats["name"], "ada");
    assert!(matches!(
        s.rest()
            .get_json("/api/v1/users/u_nobody/stats", None)
            .await,
        Err(ClientError::Http { status: 404, .. })
    ));
}

#[tokio::test]
async fn a_tracker_writes_early_once_enough_subjects_are_pending() {
    // An interval too long to matter: only the record count can trigger the write.
    let s = TestServer::with(|c| {
        c.stats.flush_interval_ms = 600_000;
        c.stats.flush_records = 1;
    })
    .await;
    let (mut a, _, t) = s.user("eager").await;
    let room = a
        .create_room(create("Quick", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    say_all(&mut a, &room.id, &["one".to_string()]).await;
    // The room hands its counters over at its own flush; then the tracker writes at once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = s
            .rest()
            .get_json("/api/v1/me/stats", Some(&t.access_token))
            .await
            .unwrap();
        if stats["sessions"] == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_analytics_stream_records_signups_logins_and_rooms_on_the_embedded_store() {
    analytics_stream(StoreKind::Embedded).await;
}

#[tokio::test]
async fn the_analytics_stream_records_signups_logins_and_rooms_on_mongodb() {
    analytics_stream(StoreKind::MongoDb).await;
}

async fn analytics_stream(kind: StoreKind) {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_config(store_config(dir.path(), kind)).await;
    let root = s
        .rest()
        .register("root", "correct horse battery", "Root")
        .await
        .unwrap();
    let t = s
        .rest()
        .login("root", "correct horse battery")
        .await
        .unwrap();
    let (mut c, _) = s.connect(Some(&t.access_token)).await;
    let room = c
        .create_room(create("Counted", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    assert!(matches!(
        s.rest()
            .get_json(
                "/api/v1/admin/analytics",
                Some(&s.rest().guest("g").await.unwrap().access_token)
            )
            .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = s
            .rest()
            .get_json("/api/v1/admin/analytics?limit=50", Some(&t.access_token))
            .await
            .unwrap();
        let events: Vec<(String, String, String)> = got["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let f = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                (f("kind"), f("user"), f("room"))
            })
            .collect();
        let me = root.user_id.clone();
        let want = [
            ("room_created".to_owned(), me.clone(), room.id.clone()),
            ("login".to_owned(), me.clone(), String::new()),
            ("signup".to_owned(), me.clone(), String::new()),
        ];
        let ours: Vec<_> = events.iter().filter(|e| e.1 == me).cloned().collect();
        let guest = events.iter().any(|e| e.0 == "signup" && e.1 != me);
        if ours.len() >= 3 && guest {
            assert_eq!(ours, want, "newest first");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "analytics: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The metrics reference in docs/operations.md: each row's name, type and labels.
fn metrics_reference() -> std::collections::HashMap<String, (String, Vec<String>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .unwrap();
    let section = doc
        .split("\n## Metrics reference\n")
        .nth(1)
        .expect("docs/operations.md has a metrics reference");
    let mut rows = std::collections::HashMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `parlor_")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let labels = cells[3]
            .split(',')
            .map(|l| l.trim().trim_matches('`').to_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let name = cells[1].trim_matches('`').to_owned();
        assert!(
            rows.insert(name.clone(), (cells[2].to_owned(), labels))
                .is_none(),
            "{name} is in the reference twice"
        );
    }
    rows
}

#[tokio::test]
async fn every_metric_on_metrics_is_in_the_reference() {
    let reference = metrics_reference();
    // Every registered family, labelled ones included, and nothing the pod lacks.
    let families = parlor_server::Metrics::new().families().to_vec();
    for (name, labels) in &families {
        let (_, documented) = reference
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing from the metrics reference"));
        assert_eq!(documented, labels, "the labels of {name}");
    }
    for name in reference.keys() {
        assert!(
            families.iter().any(|(n, _)| n == name),
            "the reference lists {name}, which the pod does not have"
        );
    }

    // What a live pod exposes, with the types it says.
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let room = open_room(&mut a, create("m", "piano")).await;
    a.chat(&room.id, "hi").await.unwrap();
    let _ = a.join_room(join_id("no-such-room")).await;
    let m = s.metrics().await;
    let mut typed = 0;
    for line in m.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let (documented, _) = reference
                .get(name)
                .unwrap_or_else(|| panic!("/metrics has {name}, which the reference lacks"));
            assert_eq!(documented, kind, "the type of {name}");
            typed += 1;
        } else if !line.starts_with('#') && !line.is_empty() {
            let series = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.strip_suffix(s))
                .filter(|f| reference.get(*f).is_some_and(|(k, _)| k == "histogram"))
                .unwrap_or(series);
            assert!(reference.contains_key(family), "/metrics has {series}");
        }
    }
    assert!(typed >= 20, "only {typed} families exposed:\n{m}");
}

#[tokio::test]
async fn the_health_command_probes_the_admin_port() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, admin) = spawn_pod(dir.path(), &[], std::process::Stdio::null());
    let probe = |args: &[&str]| {
        parlor()
            .arg("health")
            .args(args)
            .output()
            .unwrap()
            .status
            .success()
    };
    let addr = admin.to_string();
    let mut ready = false;
    for _ in 0..400 {
        if probe(&["--ready", "--addr", &addr]) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready, "the pod never answered ready");
    assert!(probe(&["--addr", &addr]), "live");
    // Without --addr, as the image's HEALTHCHECK runs it: the configured admin address.
    let configured = parlor()
        .arg("health")
        .env(
            "PARLOR_SERVER__ADMIN_ADDR",
            format!("0.0.0.0:{}", admin.port()),
        )
        .status()
        .unwrap();
    assert!(configured.success(), "the configured admin address");
    child.start_kill().unwrap();
    let _ = child.wait().await;
    assert!(!probe(&["--addr", &addr]), "a stopped pod passed");
}
