//! Bad input gets a typed error (or the documented close code), never a panic, and loses
//! nothing already accepted.

use parlor_client::{tungstenite::Message, v1, Body, ClientError, Connection};

use super::support::*;

#[tokio::test]
async fn malformed_unknown_and_server_only_frames_get_typed_errors_and_the_session_lives_on() {
    let s = TestServer::start().await;
    let (mut c, _) = s.guest("g").await;
    c.send_raw(Message::Binary(vec![0xff, 0xff, 0xff, 0x01].into()))
        .await
        .unwrap();
    assert_eq!(
        code(&next_error(&mut c).await.1),
        v1::ErrorCode::MalformedFrame
    );
    // Envelope field 999: a oneof member this server does not know.
    c.send_raw(Message::Binary(vec![0xb8, 0x3e, 0x01].into()))
        .await
        .unwrap();
    assert_eq!(
        code(&next_error(&mut c).await.1),
        v1::ErrorCode::UnknownMessage
    );
    let rid = c.send(Body::Welcome(v1::Welcome::default())).await.unwrap();
    let (erid, e) = next_error(&mut c).await;
    assert_eq!((erid, code(&e)), (rid, v1::ErrorCode::UnknownMessage));
    let rid = c
        .send(Body::Hello(v1::Hello {
            protocol_version: 1,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(
        next_error(&mut c).await,
        (
            rid,
            v1::Error {
                code: v1::ErrorCode::AlreadyWelcomed as i32,
                message: "Hello was already accepted".into(),
                retry_after_ms: 0,
            }
        )
    );
    let pong = c
        .request(Body::Ping(v1::Ping { client_time_ms: 42 }), T)
        .await
        .unwrap();
    assert!(matches!(pong.body, Body::Pong(p) if p.client_time_ms == 42));
    let m = s.metrics().await;
    assert!(
        metric(&m, "parlor_errors_total{code=\"MALFORMED_FRAME\"}") >= 1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_frame_before_hello_is_refused_and_a_wrong_version_is_closed() {
    let s = TestServer::start().await;
    let mut c = Connection::connect(&s.ws_url()).await.unwrap();
    let rid = c.send(Body::Ping(v1::Ping::default())).await.unwrap();
    let (erid, e) = next_error(&mut c).await;
    assert_eq!((erid, code(&e)), (rid, v1::ErrorCode::HelloRequired));
    c.hello(None).await.unwrap();

    let mut old = Connection::connect(&s.ws_url()).await.unwrap();
    old.send(Body::Hello(v1::Hello {
        protocol_version: 99,
        ..Default::default()
    }))
    .await
    .unwrap();
    assert_eq!(
        code(&next_error(&mut old).await.1),
        v1::ErrorCode::UnsupportedVersion
    );
    assert_eq!(close_code(&mut old).await, Some(4001));
}

#[tokio::test]
async fn text_frames_close_with_1003_and_oversized_frames_with_1009() {
    let s = TestServer::start().await;
    let (mut c, _) = s.guest("t").await;
    c.send_raw(Message::Text("hello?".into())).await.unwrap();
    assert_eq!(code(&next_error(&mut c).await.1), v1::ErrorCode::TextFrame);
    assert_eq!(close_code(&mut c).await, Some(1003));

    let (mut big, _) = s.guest("b").await;
    big.send_raw(Message::Binary(vec![0u8; 64 * 1024 + 1].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut big).await, Some(1009));

    // Exactly at the limit is accepted (and rejected only as a malformed Envelope).
    let (mut edge, _) = s.guest("e").await;
    edge.send_raw(Message::Binary(vec![0xffu8; 64 * 1024].into()))
        .await
        .unwrap();
    assert_eq!(
        code(&next_error(&mut edge).await.1),
        v1::ErrorCode::MalformedFrame
    );
}

#[tokio::test]
async fn room_actions_outside_the_room_full_rooms_and_wrong_passwords() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let (mut c, _) = s.guest("c").await;
    let room = a
        .create_room(v1::CreateRoom {
            max_members: 2,
            password: "pw".into(),
            ..create("duo", "pool")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    for body in [
        Body::Chat(v1::Chat {
            room_id: room.id.clone(),
            text: "x".into(),
            ..Default::default()
        }),
        Body::GameEvent(v1::GameEvent {
            room_id: room.id.clone(),
            r#type: "x".into(),
            ..Default::default()
        }),
        Body::LeaveRoom(v1::LeaveRoom {
            room_id: room.id.clone(),
        }),
        Body::PresenceUpdate(v1::PresenceUpdate {
            room_id: room.id.clone(),
            ..Default::default()
        }),
    ] {
        let rid = b.send(body).await.unwrap();
        let (erid, e) = next_error(&mut b).await;
        assert_eq!((erid, code(&e)), (rid, v1::ErrorCode::NotInRoom));
    }
    let wrong = b.join_room(join_pw(&room.id, "nope")).await;
    refused(wrong, v1::ErrorCode::WrongPassword);
    b.join_room(join_pw(&room.id, "pw")).await.unwrap();
    let full = c.join_room(join_pw(&room.id, "pw")).await;
    refused(full, v1::ErrorCode::RoomFull);
    let missing = c.join_room(join_id("r_nope")).await;
    refused(missing, v1::ErrorCode::RoomNotFound);
}

#[tokio::test]
async fn names_chat_and_payloads_over_their_limits_are_refused() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let long_name = a.create_room(create(&"n".repeat(65), "piano")).await;
    refused(long_name, v1::ErrorCode::TooLong);
    let bad_kind = a.create_room(create("ok", "Not A Kind!")).await;
    refused(bad_kind, v1::ErrorCode::InvalidArgument);
    let room = a
        .create_room(create("ok", "piano"))
        .await
        .unwrap()
        .room
        .unwrap();
    a.chat(&room.id, &"x".repeat(2001)).await.unwrap();
    assert_eq!(code(&next_error(&mut a).await.1), v1::ErrorCode::TooLong);
    a.game_event(&room.id, "blob", vec![0u8; 32 * 1024 + 1])
        .await
        .unwrap();
    assert_eq!(code(&next_error(&mut a).await.1), v1::ErrorCode::TooLong);
    a.game_event(&room.id, &"t".repeat(65), vec![])
        .await
        .unwrap();
    assert_eq!(code(&next_error(&mut a).await.1), v1::ErrorCode::TooLong);
    let guest_name = s.rest().guest(&"g".repeat(65)).await;
    assert!(
        matches!(guest_name, Err(ClientError::Http { status: 400, .. })),
        "{guest_name:?}"
    );
}

#[tokio::test]
async fn a_flood_is_rate_limited_then_closed_and_accepted_events_are_not_lost() {
    let s = TestServer::with(|c| c.ws.flood_strikes = 10).await;
    let (mut a, _) = s.guest("flooder").await;
    let (mut b, _) = s.guest("listener").await;
    let room = a
        .create_room(rated("r", "piano", 5))
        .await
        .unwrap()
        .room
        .unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    for i in 0..40 {
        if a.game_event(&room.id, "note", vec![i as u8]).await.is_err() {
            break;
        }
    }
    // The flooder sees RATE_LIMITED, then is closed with 4029.
    let mut limited = 0;
    let close = loop {
        match a.next_frame(T).await {
            Ok(f) => {
                if let Body::Error(e) = f.body {
                    assert_eq!(code(&e), v1::ErrorCode::RateLimited);
                    limited += 1;
                }
            }
            Err(ClientError::Closed { code, .. }) => break code,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(close, Some(4029));
    assert!(limited >= 10, "got {limited} RATE_LIMITED errors");
    // Everything accepted before the limit reached the listener, in order.
    let got: Vec<u8> = room_events(&mut b, 5)
        .await
        .into_iter()
        .map(|f| match f.body {
            Body::GameEvent(e) => e.payload[0],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn malformed_and_oversized_rest_bodies_get_json_errors() {
    let s = TestServer::start().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn raw(addr: std::net::SocketAddr, body: &[u8]) -> String {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/v1/auth/guest HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        let _ = c.write_all(body).await;
        let mut out = String::new();
        let _ = c.read_to_string(&mut out).await;
        out
    }
    let bad = raw(s.public, b"{\"name\": ").await;
    assert!(bad.starts_with("HTTP/1.0 400"), "{bad}");
    assert!(bad.contains("\"code\":\"BAD_REQUEST\""), "{bad}");
    let huge = format!("{{\"name\":\"{}\"}}", "x".repeat(70 * 1024));
    let big = raw(s.public, huge.as_bytes()).await;
    assert!(big.starts_with("HTTP/1.0 413"), "{big}");
    assert!(big.contains("\"code\":\"BODY_TOO_LARGE\""), "{big}");
}

#[tokio::test]
async fn a_frame_flood_of_any_kind_is_limited_per_connection() {
    let s = TestServer::with(|c| {
        c.ws.max_frames_per_sec = 10;
        c.ws.flood_strikes = 15;
    })
    .await;
    let (mut c, _) = s.guest("pinger").await;
    for _ in 0..100 {
        if c.send(Body::Ping(v1::Ping::default())).await.is_err() {
            break;
        }
    }
    let (mut pongs, mut limited) = (0, 0);
    let close = loop {
        match c.next_frame(T).await {
            Ok(f) => match f.body {
                Body::Pong(_) => pongs += 1,
                Body::Error(e) => {
                    assert_eq!(code(&e), v1::ErrorCode::RateLimited);
                    limited += 1;
                }
                other => panic!("{other:?}"),
            },
            Err(ClientError::Closed { code, .. }) => break code,
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(close, Some(4029));
    assert!(
        (19..=21).contains(&pongs),
        "the burst (2 x 10) was served: {pongs}"
    );
    assert_eq!(limited, 15);
}
