//! Slow consumers: a member past the hard queue limit is closed at once, one above the soft
//! limit for longer than its time is closed too, and one that falls behind briefly is kept.
//! In every case the other members get every event, in order.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use parlor_client::{tungstenite::Message, v1, Body, Connection};
use tokio::sync::watch;

use super::support::*;

#[tokio::test]
async fn a_consumer_past_the_hard_limit_is_closed_at_once_and_the_room_does_not_wait() {
    let s = TestServer::with(|c| {
        // The fast member has at most 8 events of 30 KiB queued; the slow one far more.
        c.ws.outbound_hard_bytes = 512 * 1024;
        c.ws.outbound_soft_bytes = 512 * 1024;
        c.ws.max_frames_per_sec = 100_000;
    })
    .await;
    let (mut sender, _) = s.guest("sender").await;
    let (mut fast, _) = s.guest("fast").await;
    let (mut slow, _) = s.guest("slow").await;
    let room = sender
        .create_room(rated("firehose", "piano", 10_000))
        .await
        .unwrap()
        .room
        .unwrap();
    fast.join_room(join_id(&room.id)).await.unwrap();
    slow.join_room(join_id(&room.id)).await.unwrap();
    room_events(&mut fast, 1).await;
    // `slow` now stops reading. 600 x 30 KiB is far more than socket buffers hold. The
    // sender stays at most 8 events ahead of `fast`, so only `slow` can fall behind.
    const N: usize = 600;
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while n < N {
            let f = fast.next_frame(Duration::from_secs(20)).await.unwrap();
            if matches!(f.body, Body::GameEvent(_)) {
                n += 1;
                let _ = progress.send(n);
            }
        }
        n
    });
    for i in 0..N {
        let mut payload = vec![0u8; 30 * 1024];
        payload[0] = (i % 256) as u8;
        sender.game_event(&room.id, "blob", payload).await.unwrap();
        // The sender is a member too: it reads its own copy to stay a fast consumer.
        sender
            .wait_for(T, |f| matches!(f.body, Body::GameEvent(_)).then_some(()))
            .await
            .unwrap();
        if i >= 8 {
            seen.wait_for(|n| *n + 8 >= i).await.unwrap();
        }
    }
    assert_eq!(reader.await.unwrap(), N, "the fast member got every event");
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "parlor_slow_consumer_disconnects_total"),
        1.0,
        "{m}"
    );
    assert_eq!(close_code(&mut slow).await, Some(4000));
}

const SOFT_MS: u64 = 3000;

/// A member whose socket takes little into its kernel buffers, so that the pod's own queue
/// grows as soon as it stops reading.
async fn small_buffer_member(s: &TestServer, name: &str, room: &str) -> Connection {
    let t = s.rest().guest(name).await.unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut c = Connection::connect_socket(&s.ws_url(), socket)
        .await
        .unwrap();
    c.hello(Some(&t.access_token)).await.unwrap();
    c.join_room(join_id(room)).await.unwrap();
    c
}

/// Sends an 8 KiB game event every 10 ms (800 KB/s) until `stop`, then a chat line
/// "end"; reads and drops its own copies meanwhile. Returns the events sent.
async fn paced_sender(c: Connection, room: String, mut stop: watch::Receiver<bool>) -> u64 {
    let (ws, _) = c.into_parts();
    let (mut tx, mut rx) = ws.split();
    let drain = tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
    let mut every = tokio::time::interval(Duration::from_millis(10));
    let mut sent = 0u64;
    while !*stop.borrow() {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.changed() => break,
        }
        sent += 1;
        let frame = parlor_protocol::encode_envelope(
            sent,
            0,
            Body::GameEvent(v1::GameEvent {
                room_id: room.clone(),
                r#type: "blob".into(),
                payload: vec![(sent % 256) as u8; 8 * 1024].into(),
                ..Default::default()
            }),
        );
        tx.send(Message::Binary(frame)).await.unwrap();
    }
    let end = parlor_protocol::encode_envelope(
        sent + 1,
        0,
        Body::Chat(v1::Chat {
            room_id: room,
            text: "end".into(),
            ..Default::default()
        }),
    );
    tx.send(Message::Binary(end)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain.abort();
    sent
}

/// Reads room events until the chat line "end" and returns the game events seen. Fails
/// on any gap or reorder in the room's seqs. With `pause`, stops reading for that long
/// after the first 50 events.
async fn read_all(mut c: Connection, mut pause: Option<Duration>) -> u64 {
    let (mut events, mut last_seq) = (0u64, 0u64);
    loop {
        let f = c.next_frame(T).await.unwrap();
        if f.seq > 0 {
            assert!(
                last_seq == 0 || f.seq == last_seq + 1,
                "seq {} after {last_seq}",
                f.seq
            );
            last_seq = f.seq;
        }
        match f.body {
            Body::GameEvent(_) => events += 1,
            Body::ChatMessage(m) if m.text == "end" => return events,
            Body::Error(e) => panic!("{e:?}"),
            _ => {}
        }
        if events >= 50 {
            if let Some(p) = pause.take() {
                tokio::time::sleep(p).await;
            }
        }
    }
}

/// Reads until `stop` fires, then keeps the socket open without reading.
async fn read_until(mut c: Connection, mut stop: watch::Receiver<bool>) -> Connection {
    loop {
        tokio::select! {
            f = c.next_frame(T) => { f.unwrap(); }
            _ = stop.changed() => return c,
        }
    }
}

#[tokio::test]
async fn a_brief_pause_is_kept_and_a_reader_that_stops_is_dropped_after_the_soft_limit_time() {
    let s = TestServer::with(|c| {
        c.ws.outbound_soft_bytes = 64 * 1024;
        c.ws.outbound_soft_ms = SOFT_MS;
        c.ws.outbound_hard_bytes = 64 << 20;
        // Small kernel buffers, so that a pause shows in the pod's own queue.
        c.ws.send_buffer_bytes = 64 * 1024;
        c.ws.max_frames_per_sec = 100_000;
    })
    .await;
    let (mut sender, _) = s.guest("sender").await;
    let room = sender
        .create_room(rated("stage", "piano", 10_000))
        .await
        .unwrap()
        .room
        .unwrap();
    let (mut fast, _) = s.guest("fast").await;
    fast.join_room(join_id(&room.id)).await.unwrap();
    let paused = small_buffer_member(&s, "paused", &room.id).await;
    let stopper = small_buffer_member(&s, "stopper", &room.id).await;

    let (stop_sending, stop_rx) = watch::channel(false);
    let (stop_reading, reading_rx) = watch::channel(false);
    let sending = tokio::spawn(paced_sender(sender, room.id.clone(), stop_rx));
    let fast = tokio::spawn(read_all(fast, None));
    let paused = tokio::spawn(read_all(paused, Some(Duration::from_secs(2))));
    let stopper = tokio::spawn(read_until(stopper, reading_rx));

    // The paused member goes over the soft limit, for less than its time, and stays.
    let mut over = 0.0f64;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        let m = s.metrics().await;
        over = over.max(metric(&m, "parlor_outbound_over_soft"));
        assert_eq!(metric(&m, "parlor_slow_consumer_disconnects_total"), 0.0);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        over >= 1.0,
        "the pause never took the queue over the soft limit"
    );

    // The other one stops for good: it is dropped once the soft limit's time has passed.
    stop_reading.send(true).unwrap();
    let stopped = Instant::now();
    let mut stopper = stopper.await.unwrap();
    loop {
        let m = s.metrics().await;
        if metric(&m, "parlor_slow_consumer_disconnects_total") >= 1.0 {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "never dropped: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its queue passes the soft limit once its socket buffers are full, well within a
    // second at this rate; then the soft limit's time runs.
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_millis(SOFT_MS) && took < Duration::from_millis(SOFT_MS + 4000),
        "dropped {took:?} after it stopped reading; the soft limit's time is {SOFT_MS} ms"
    );
    stop_sending.send(true).unwrap();
    let sent = sending.await.unwrap();
    assert!(sent > 300, "only {sent} events sent");
    assert_eq!(fast.await.unwrap(), sent, "the fast member missed events");
    assert_eq!(
        paused.await.unwrap(),
        sent,
        "the paused member missed events"
    );
    assert_eq!(close_code(&mut stopper).await, Some(4000));
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "parlor_slow_consumer_disconnects_total"),
        1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "parlor_outbound_over_soft"), 0.0, "{m}");
}

#[tokio::test]
async fn with_echo_off_a_sender_gets_acks_with_seqs_instead_of_its_own_events() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let room = a
        .create_room(v1::CreateRoom {
            settings: Some(v1::RoomSettings {
                echo_events: Some(false),
                ..Default::default()
            }),
            ..create("keys", "piano")
        })
        .await
        .unwrap();
    assert_eq!(room.settings.unwrap().echo_events, Some(false));
    let room = room.room.unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    for note in [60u8, 62, 64] {
        a.game_event(&room.id, "note_on", vec![note]).await.unwrap();
    }
    b.game_event(&room.id, "note_on", vec![67]).await.unwrap();
    // Each sees the other's events and an Ack in the place of each of its own, in order.
    let a_got = events_and_acks(&mut a, &room.id).await;
    let b_got = events_and_acks(&mut b, &room.id).await;
    let seqs: Vec<u64> = a_got.iter().map(|(_, s)| *s).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let kinds = |got: &[(&'static str, u64)]| got.iter().map(|(k, _)| *k).collect::<Vec<_>>();
    assert_eq!(kinds(&a_got), ["ack", "ack", "ack", "event"]);
    assert_eq!(kinds(&b_got), ["event", "event", "event", "ack"]);
    assert_eq!(
        b_got.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        seqs,
        "both saw the same seqs"
    );
}

/// The next four game events (by seq) and seq-carrying Acks a member receives.
async fn events_and_acks(c: &mut Connection, room: &str) -> Vec<(&'static str, u64)> {
    let mut got = Vec::new();
    while got.len() < 4 {
        let f = c.next_frame(T).await.unwrap();
        match f.body {
            Body::Ack(ack) if ack.seq > 0 => {
                assert_eq!(ack.room_id, room);
                got.push(("ack", ack.seq));
            }
            Body::GameEvent(_) => got.push(("event", f.seq)),
            _ => {}
        }
    }
    got
}
