//! Graceful drain in a cluster (docs/operations.md): on SIGTERM a pod hands its rooms to
//! the other pods at once and sends its clients there, losing and repeating nothing.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parlor_client::{v1, Body, Connection, Frame};
use parlor_testkit::RedisServer;

use super::{
    cluster::proc_cluster_with,
    support::{create, join_id, open_room},
};

/// The drain budget the pods run with; the process must exit within it.
const GRACE_SECS: u64 = 10;

/// What one member saw of the room: each event's seq and each chat line, in order.
#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    lines: Vec<String>,
}

impl Seen {
    fn add(&mut self, f: &Frame) {
        if f.seq > 0 {
            self.seqs.push(f.seq);
        }
        if let Body::ChatMessage(m) = &f.body {
            self.lines.push(m.text.clone());
        }
    }

    /// Reads until the chat line `text` has arrived.
    async fn until(&mut self, c: &mut Connection, text: &str) -> u64 {
        loop {
            let f = c.next_frame(Duration::from_secs(20)).await.unwrap();
            self.add(&f);
            if matches!(&f.body, Body::ChatMessage(m) if m.text == text) {
                return f.seq;
            }
        }
    }
}

/// Says `text`: Some(seq) once its echo came back, None if refused as unavailable (the
/// room is moving). Every frame read on the way is recorded.
async fn say(c: &mut Connection, seen: &mut Seen, room: &str, text: &str) -> Option<u64> {
    let rid = c.chat(room, text).await.unwrap();
    loop {
        let f = c.next_frame(Duration::from_secs(15)).await.unwrap();
        seen.add(&f);
        match &f.body {
            Body::ChatMessage(m) if m.text == text => return Some(f.seq),
            Body::Error(e) if f.request_id == rid => {
                assert_eq!(e.code, v1::ErrorCode::Unavailable as i32, "{e:?}");
                return None;
            }
            _ => {}
        }
    }
}

/// A member of the drained pod: reads until told to reconnect and closed with 1001.
async fn told_to_go(c: &mut Connection, seen: &mut Seen) -> v1::Reconnect {
    let mut told = None;
    loop {
        match c.next_frame(Duration::from_secs(GRACE_SECS)).await {
            Ok(f) => {
                seen.add(&f);
                if let Body::Reconnect(r) = f.body {
                    told = Some(r);
                }
            }
            Err(parlor_client::ClientError::Closed { code, .. }) => {
                assert_eq!(code, Some(1001), "the close code");
                return told.expect("Reconnect came before the close");
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Back on another pod with the resume token, from the last seq seen.
async fn resume(url: &str, welcome: &v1::Welcome, room: &str, seen: &Seen) -> Connection {
    let mut c = Connection::connect(url).await.unwrap();
    c.resume(&welcome.resume_token).await.unwrap();
    let back = c
        .join_room(v1::JoinRoom {
            room_id: room.into(),
            last_seq: *seen.seqs.last().unwrap(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        back.resumed && !back.resync,
        "after seq {:?}: {back:?}",
        seen.seqs.last()
    );
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_rooms_over_and_clients_resume_on_the_other_pod() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut pods = proc_cluster_with(2, &redis, dir.path(), |_| {
        vec![("PARLOR_SERVER__SHUTDOWN_GRACE_SECS", GRACE_SECS.to_string())]
    })
    .await;
    // The room is homed on pod 0, with members on both pods.
    let (mut owner, owner_welcome) = pods[0].welcomed("owner").await;
    let room = open_room(&mut owner, create("drained", "piano")).await;
    let (mut x, x_welcome) = pods[0].welcomed("x").await;
    x.join_room(join_id(&room.id)).await.unwrap();
    let (mut b, _) = pods[1].welcomed("b").await;
    b.join_room(join_id(&room.id)).await.unwrap();
    let (mut seen_owner, mut seen_x, mut seen_b) =
        (Seen::default(), Seen::default(), Seen::default());
    let start = say(&mut owner, &mut seen_owner, &room.id, "before")
        .await
        .unwrap();
    assert_eq!(seen_x.until(&mut x, "before").await, start);
    assert_eq!(seen_b.until(&mut b, "before").await, start);
    for seen in [&mut seen_owner, &mut seen_x, &mut seen_b] {
        seen.seqs.retain(|s| *s >= start);
    }

    let pod0 = pods.remove(0);
    let exited = Arc::new(AtomicBool::new(false));
    let term = tokio::spawn({
        let exited = exited.clone();
        async move {
            let t = Instant::now();
            let status = pod0.term(Duration::from_secs(GRACE_SECS)).await;
            exited.store(true, Ordering::Release);
            (status, t.elapsed())
        }
    });
    // b, on the other pod, keeps talking through the drain and a while after it.
    let talker = tokio::spawn({
        let (room, exited) = (room.id.clone(), exited.clone());
        async move {
            let (mut acked, mut worst, mut after_exit, mut refused) =
                (Vec::new(), Duration::ZERO, 0, 0);
            let mut last = Instant::now();
            let began = last;
            for i in 0.. {
                let text = format!("b {i}");
                if say(&mut b, &mut seen_b, &room, &text).await.is_some() {
                    worst = worst.max(last.elapsed());
                    last = Instant::now();
                    acked.push(text);
                    if exited.load(Ordering::Acquire) {
                        after_exit += 1;
                    }
                } else {
                    refused += 1;
                }
                if after_exit >= 20 {
                    break;
                }
                assert!(
                    began.elapsed() < Duration::from_secs(60),
                    "b never got through"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            eprintln!("drain: b's lines refused while the room moved: {refused}");
            (b, seen_b, acked, worst)
        }
    });

    // The drained pod's clients are told to go, and come back through pod 1.
    let url = pods[0].ws_url();
    for (c, seen) in [(&mut owner, &mut seen_owner), (&mut x, &mut seen_x)] {
        let told = told_to_go(c, seen).await;
        assert!(told.retry_after_ms <= 1000, "{told:?}");
    }
    let mut owner = resume(&url, &owner_welcome, &room.id, &seen_owner).await;
    let mut x = resume(&url, &x_welcome, &room.id, &seen_x).await;
    let (status, took) = term.await.unwrap();
    assert!(status.success(), "the drained pod exited with {status}");
    eprintln!("drain: the pod exited 0 after {took:?}");

    let (mut b, mut seen_b, mut acked, worst) = talker.await.unwrap();
    eprintln!("drain: the longest wait between two of b's acknowledged lines was {worst:?}");
    assert!(
        worst <= Duration::from_secs(1),
        "the room paused for {worst:?}"
    );
    let mine = say(&mut owner, &mut seen_owner, &room.id, "owner is back").await;
    assert!(
        mine.is_some(),
        "the owner's line after the move was refused"
    );
    acked.push("owner is back".into());
    let end = say(&mut b, &mut seen_b, &room.id, "end").await.unwrap();
    acked.push("end".into());
    seen_owner.until(&mut owner, "end").await;
    seen_x.until(&mut x, "end").await;

    // Every member saw every event from `before` on once, in order, through the move, and
    // every acknowledged line exactly once.
    for (who, seen) in [("owner", &seen_owner), ("x", &seen_x), ("b", &seen_b)] {
        assert_eq!(
            seen.seqs,
            (start..=end).collect::<Vec<_>>(),
            "{who}'s events"
        );
        for line in &acked {
            let n = seen.lines.iter().filter(|l| *l == line).count();
            assert_eq!(n, 1, "{who} saw {line:?} {n} times");
        }
    }
    drop(redis);
}
