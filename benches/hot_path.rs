//! Micro-benchmarks of a room event's hot path: the envelope codec, the broker's frame,
//! fan-out to 1,000 local outboxes, the permission check and access-token verification.
//!
//! `cargo bench --bench hot_path` (add `-- --warm-up-time 1 --measurement-time 2` for a
//! quick run).

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::FutureExt as _;
use parlor_cluster::{Broker, Claim, Leases, MemoryBroker, Retention};
use parlor_core::{check, Action, GlobalRole, RoomId, RoomPolicy, RoomRole};
use parlor_protocol::{
    decode_envelope, encode_body, encode_envelope, frame_with_seq,
    v1::{envelope::Body, ChatMessage, GameEvent},
};
use parlor_server::bench_support::{Fanout, Keys};

const ROOM: &str = "r_5f0c6a1e9b2d4c7e8a3f1b6d";
const USER: &str = "u_0a1b2c3d4e5f60718293a4b5";

fn game_event() -> Body {
    Body::GameEvent(GameEvent {
        room_id: ROOM.into(),
        r#type: "note_on".into(),
        payload: (0..64u8).collect(),
        target_user_id: String::new(),
        sender_id: USER.into(),
        sent_at_ms: 1_767_225_600_000,
    })
}

fn chat_message() -> Body {
    Body::ChatMessage(ChatMessage {
        room_id: ROOM.into(),
        from_user_id: USER.into(),
        from_name: "Ann".into(),
        text: "ready for the next round? I'll take the bass line this time".into(),
        sent_at_ms: 1_767_225_600_000,
        to_user_id: String::new(),
    })
}

fn envelope(c: &mut Criterion) {
    let mut g = c.benchmark_group("envelope");
    for (name, body) in [("game_event_64B", game_event()), ("chat", chat_message())] {
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter_batched(
                || body.clone(),
                |body| encode_envelope(black_box(7), black_box(42), body),
                BatchSize::SmallInput,
            )
        });
        let frame = encode_envelope(7, 42, body.clone());
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| decode_envelope(black_box(&frame)).expect("a valid frame"))
        });
        // The room's path: encode the body once, then the broker prefixes the seq.
        g.bench_function(format!("encode_body+frame_with_seq/{name}"), |b| {
            b.iter_batched(
                || body.clone(),
                |body| frame_with_seq(black_box(42), &encode_body(body)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

const MEMBERS: usize = 1_000;
/// Events published between two drains, well under the default queue limits, so that no
/// outbox fills.
const BATCH: u64 = 64;

fn fanout(c: &mut Criterion) {
    let mut fanout = Fanout::new(MEMBERS);
    let broker = MemoryBroker::new(Retention::default(), Duration::from_secs(3600));
    let room = RoomId::from(ROOM);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    rt.block_on(broker.subscribe(&room, fanout.sink()))
        .expect("subscribed");
    let Ok(Claim::Home(lease)) = rt.block_on(broker.claim(&room, "bench")) else {
        panic!("a fresh room's lease is free")
    };
    let mut seq = 0;
    let body: Bytes = encode_body(game_event());

    let mut g = c.benchmark_group("fanout");
    g.throughput(Throughput::Elements(MEMBERS as u64));
    g.bench_function("broker_publish/1000_members", |b| {
        // Only the publishes are timed; the queues are emptied between batches.
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH);
                let start = Instant::now();
                for _ in 0..n {
                    // As the room actor does: frame with the next seq, publish, and find
                    // the memory broker's answer ready.
                    seq += 1;
                    let frame = frame_with_seq(seq, &body);
                    broker
                        .publish(
                            black_box(&room),
                            &lease,
                            seq,
                            frame,
                            Default::default(),
                            Vec::new(),
                        )
                        .now_or_never()
                        .expect("a memory publish is done at once")
                        .expect("published");
                }
                timed += start.elapsed();
                assert_eq!(
                    fanout.drain(),
                    n as usize * MEMBERS,
                    "every member got every frame"
                );
                left -= n;
            }
            timed
        })
    });
    g.finish();
    assert_eq!(
        fanout.evicted(),
        0,
        "no outbox may fill during the benchmark"
    );
}

fn permissions(c: &mut Criterion) {
    let policy = RoomPolicy::default();
    let cases = [
        (
            "game_event/user_player",
            Action::SendGameEvent,
            GlobalRole::User,
            Some(RoomRole::Player),
        ),
        (
            "chat/guest_watcher",
            Action::Chat,
            GlobalRole::Guest,
            Some(RoomRole::Watcher),
        ),
        (
            "kick/moderator_player",
            Action::Kick,
            GlobalRole::Moderator,
            Some(RoomRole::Player),
        ),
        (
            "join_watcher/visitor",
            Action::JoinAsWatcher,
            GlobalRole::Visitor,
            None,
        ),
        (
            "game_event/user_watcher_denied",
            Action::SendGameEvent,
            GlobalRole::User,
            Some(RoomRole::Watcher),
        ),
    ];
    let mut g = c.benchmark_group("check");
    for (name, action, global, room) in cases {
        g.bench_function(name, |b| {
            b.iter(|| {
                check(
                    black_box(action),
                    black_box(global),
                    black_box(room),
                    black_box(&policy),
                )
            })
        });
    }
    g.finish();
}

fn token(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp dir");
    let keys = Keys::generate(dir.path()).expect("a generated key");
    let token = keys.issue_access(USER, "Ann", GlobalRole::User, 900);
    assert!(keys.verify_access(&token));
    c.bench_function("token/verify_access", |b| {
        b.iter(|| keys.verify_access(black_box(&token)))
    });
}

criterion_group!(benches, envelope, fanout, permissions, token);
criterion_main!(benches);
