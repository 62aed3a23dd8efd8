use std::future::Future;

use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::*;

type Peer = WebSocketStream<TcpStream>;

const T: Duration = Duration::from_secs(5);

/// Runs `script` as the server side of one WebSocket on 127.0.0.1; returns the URL and the
/// script's handle (await it to surface the peer's assertions).
async fn spawn_peer<F, Fut, R>(script: F) -> (String, tokio::task::JoinHandle<R>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        tokio::time::timeout(T, script(ws))
            .await
            .expect("peer script timed out")
    });
    (format!("ws://{addr}/ws"), handle)
}

/// The peer's next binary Envelope, skipping control frames.
async fn recv(peer: &mut Peer) -> (u64, Body) {
    loop {
        match peer.next().await.expect("client went away").unwrap() {
            Message::Binary(b) => return parlor_protocol::decode_envelope(&b).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("peer got {other:?}"),
        }
    }
}

async fn push(peer: &mut Peer, request_id: u64, seq: u64, body: Body) {
    let bytes = encode_envelope(request_id, seq, body);
    peer.send(Message::Binary(bytes)).await.unwrap();
}

fn chat_line(text: &str) -> Body {
    Body::ChatMessage(v1::ChatMessage {
        room_id: "r1".into(),
        text: text.into(),
        ..Default::default()
    })
}

/// Drains the peer until the client closes; returns whether a Pong with `payload` was seen.
async fn drain(peer: &mut Peer, payload: &[u8]) -> bool {
    let mut saw_pong = false;
    while let Some(Ok(msg)) = peer.next().await {
        if let Message::Pong(p) = msg {
            saw_pong |= p.as_ref() == payload;
        }
    }
    saw_pong
}

#[tokio::test]
async fn hello_request_push_error_and_close_code() {
    let (url, peer) = spawn_peer(|mut peer| async move {
        let (id, body) = recv(&mut peer).await;
        assert_eq!(id, 1);
        let Body::Hello(hello) = body else {
            panic!("wanted Hello, got {body:?}")
        };
        assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
        assert_eq!(hello.access_token, "tok");
        assert_eq!(hello.resume_token, "");
        let welcome = v1::Welcome {
            session_id: "s1".into(),
            resume_token: "rt".into(),
            ..Default::default()
        };
        push(&mut peer, id, 0, Body::Welcome(welcome)).await;

        // An unsolicited push arrives before the answer.
        let (id, body) = recv(&mut peer).await;
        assert_eq!(id, 2);
        assert!(matches!(body, Body::ListRooms(_)));
        push(&mut peer, 0, 7, chat_line("early")).await;
        let list = v1::RoomList {
            total: 3,
            ..Default::default()
        };
        push(&mut peer, id, 0, Body::RoomList(list)).await;

        let (id, body) = recv(&mut peer).await;
        assert!(matches!(body, Body::JoinRoom(_)));
        let err = parlor_protocol::error_envelope(id, ErrorCode::RoomNotFound, "nope");
        peer.send(Message::Binary(err)).await.unwrap();

        let close = CloseFrame {
            code: CloseCode::from(4001),
            reason: "bye".into(),
        };
        peer.close(Some(close)).await.unwrap();
        while let Some(Ok(_)) = peer.next().await {}
    })
    .await;

    let mut conn = Connection::connect(&url).await.unwrap();
    let welcome = conn.hello(Some("tok")).await.unwrap();
    assert_eq!(welcome.session_id, "s1");
    assert_eq!(welcome.resume_token, "rt");

    let list = conn.list_rooms("").await.unwrap();
    assert_eq!(list.total, 3);
    let queued = conn.next_frame(T).await.unwrap();
    assert_eq!((queued.request_id, queued.seq), (0, 7));
    assert_eq!(queued.body, chat_line("early"));

    let err = conn
        .join_room(v1::JoinRoom {
            room_id: "missing".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Server { code: ErrorCode::RoomNotFound, message, .. } if message == "nope"),
        "{err:?}"
    );

    for _ in 0..2 {
        let err = conn.next_frame(T).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Closed { code: Some(4001), reason } if reason == "bye"),
            "{err:?}"
        );
    }
    let err = conn.chat("r1", "too late").await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Closed {
                code: Some(4001),
                ..
            }
        ),
        "{err:?}"
    );
    peer.await.unwrap();
}

#[tokio::test]
async fn wait_for_keeps_skipped_frames_in_order_and_pings_are_answered() {
    let (url, peer) = spawn_peer(|mut peer| async move {
        peer.send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        for seq in 1..=3 {
            push(&mut peer, 0, seq, chat_line(&format!("line {seq}"))).await;
        }
        drain(&mut peer, b"hi").await
    })
    .await;

    let mut conn = Connection::connect(&url).await.unwrap();
    let got = conn
        .wait_for(T, |f| (f.seq == 2).then(|| f.body.clone()))
        .await
        .unwrap();
    assert_eq!(got, chat_line("line 2"));
    // Frame 3 is read from the socket, frame 1 stays queued ahead of it.
    let got = conn
        .wait_for(T, |f| (f.seq == 3).then_some(f.seq))
        .await
        .unwrap();
    assert_eq!(got, 3);
    assert_eq!(conn.next_frame(T).await.unwrap().seq, 1);
    let err = conn
        .next_frame(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    let err = conn
        .wait_for(Duration::from_millis(50), |_| Some(()))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    conn.close().await;
    assert!(peer.await.unwrap(), "the client never answered the ping");
}

#[tokio::test]
async fn request_ids_raw_frames_and_bad_server_frames() {
    let (url, peer) = spawn_peer(|mut peer| async move {
        assert_eq!(recv(&mut peer).await.0, 1);
        assert_eq!(recv(&mut peer).await.0, 2);
        let (id, body) = recv(&mut peer).await;
        assert_eq!(id, 3);
        let Body::GameEvent(ev) = body else {
            panic!("wanted GameEvent, got {body:?}")
        };
        assert_eq!((ev.room_id.as_str(), ev.r#type.as_str()), ("r1", "note_on"));
        assert_eq!(ev.payload.as_ref(), &[1, 2, 3]);
        match peer.next().await.unwrap().unwrap() {
            Message::Text(t) => assert_eq!(t.as_str(), "hello"),
            other => panic!("wanted text, got {other:?}"),
        }
        peer.send(Message::Binary(Bytes::from_static(&[0xff, 0xff, 0xff])))
            .await
            .unwrap();
        peer.send(Message::text("nope")).await.unwrap();
        drain(&mut peer, b"").await;
    })
    .await;

    let mut conn = Connection::connect(&url).await.unwrap();
    let ping = Body::Ping(v1::Ping { client_time_ms: 1 });
    assert_eq!(conn.send(ping).await.unwrap(), 1);
    assert_eq!(conn.chat("r1", "hi").await.unwrap(), 2);
    assert_eq!(
        conn.game_event("r1", "note_on", vec![1, 2, 3])
            .await
            .unwrap(),
        3
    );
    conn.send_raw(Message::text("hello")).await.unwrap();
    let err = conn.next_frame(T).await.unwrap_err();
    assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
    let err = conn.next_frame(T).await.unwrap_err();
    assert!(matches!(err, ClientError::Unexpected(_)), "{err:?}");
    conn.close().await;
    peer.await.unwrap();
}

#[tokio::test]
async fn refused_upgrade_is_an_http_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut read = 0;
        while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            read += tcp.read(&mut buf[read..]).await.unwrap();
        }
        let body = r#"{"error":{"code":"TOKEN_INVALID","message":"bad token"}}"#;
        let resp = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(resp.as_bytes()).await.unwrap();
    });
    let err = Connection::connect(&format!("ws://{addr}/ws?token=x"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Http { status: 401, code, .. } if code == "TOKEN_INVALID"),
        "{err:?}"
    );
    server.await.unwrap();
}

#[tokio::test]
async fn connect_refused_is_io() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = Connection::connect(&format!("ws://{addr}/ws"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
}
