//! Store throughput and login latency, on the embedded store and on a MongoDB wire server
//! (SecantusDB on loopback, or `MONGODB_URI`).
//!
//! `cargo bench --bench store [-- RUNS]` prints, per store and run:
//! - stats flush: 10 batches of 1,000 subjects each, in records/s;
//! - chat writes: 100 appends of 50 lines to one room, in lines/s, and the p99 of one
//!   append (one writer flush);
//! - login: 200 sequential `POST /api/v1/auth/login` to an in-process pod on that store,
//!   p50 and p99 (argon2 verification included, as a user sees it).
//!
//! Then the median of each over the runs.

use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use parlor_core::{new_id, RoomId, UserId};
use parlor_store::{
    testing, ChatRecord, ChatRetention, Stats, StatsBatch, StatsDelta, StatsSubject, Store,
};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn stats_flush(store: &Store) -> f64 {
    const BATCHES: usize = 10;
    const SUBJECTS: usize = 1000;
    let run = new_id("");
    let start = Instant::now();
    for b in 0..BATCHES {
        let deltas = (0..SUBJECTS)
            .map(|i| StatsDelta {
                subject: StatsSubject::User(UserId(format!("u_{run}_{i}"))),
                add: Stats {
                    chat_messages: 1,
                    game_events: 3,
                    joins: 1,
                    ..Stats::default()
                },
            })
            .collect();
        let batch = StatsBatch {
            id: format!("{run}-{b}"),
            deltas,
        };
        store.stats.add_stats(&batch).await.expect("stats batch");
    }
    (BATCHES * SUBJECTS) as f64 / start.elapsed().as_secs_f64()
}

async fn chat_writes(store: &Store) -> (f64, Duration) {
    const APPENDS: u64 = 100;
    const LINES: u64 = 50;
    // Below the default count, so trimming is measured only as its check.
    assert!((APPENDS * LINES) as usize <= ChatRetention::default().max_lines);
    let room = RoomId(new_id("r_"));
    let mut each = Vec::new();
    let start = Instant::now();
    for a in 0..APPENDS {
        let lines: Vec<ChatRecord> = (0..LINES)
            .map(|i| {
                let seq = a * LINES + i + 1;
                ChatRecord {
                    seq,
                    from_user_id: UserId("u_bench".into()),
                    from_name: "bench".into(),
                    text: format!("line {seq} of a campaign's long history"),
                    sent_at_ms: 1_700_000_000_000 + seq as i64,
                    game: None,
                }
            })
            .collect();
        let t = Instant::now();
        store.chat.append_chat(&room, &lines).await.expect("append");
        each.push(t.elapsed());
    }
    let rate = (APPENDS * LINES) as f64 / start.elapsed().as_secs_f64();
    each.sort();
    let _ = store.rooms.delete_room(&room).await;
    (rate, pct(&each, 0.99))
}

/// Logins against an in-process pod on `cfg`'s store: (p50, p99).
fn logins(cfg: parlor_server::Config) -> (Duration, Duration) {
    let public = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = public.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let pod = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(parlor_server::run(
            cfg,
            parlor_server::Listeners { public, admin },
            async move {
                let _ = actix_web::rt::task::spawn_blocking(move || rx.recv()).await;
            },
        ))
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let times = rt.block_on(async {
        let rest = parlor_client::Rest::new(format!("http://{addr}"));
        let mut tries = 0;
        while rest.get_json("/.well-known/jwks.json", None).await.is_err() {
            tries += 1;
            assert!(tries < 200, "pod did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rest.register("bencher", "correct horse battery", "Bencher")
            .await
            .expect("register");
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            rest.login("bencher", "correct horse battery")
                .await
                .expect("login");
            times.push(t.elapsed());
        }
        times
    });
    let _ = tx.send(());
    let _ = pod.join();
    let mut times = times;
    times.sort();
    (pct(&times, 0.5), pct(&times, 0.99))
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mongo_uri = testing::shared_uri();
    for kind in ["embedded", "mongodb"] {
        let (mut flush, mut chat, mut chat_p99, mut p50s, mut p99s) =
            (vec![], vec![], vec![], vec![], vec![]);
        for run in 0..runs {
            let mut cfg = parlor_server::Config::default();
            cfg.server.data_dir = dir.path().join(format!("{kind}-{run}"));
            cfg.log_level = "warn".into();
            let settings = if kind == "mongodb" {
                let opts = testing::options(&mongo_uri);
                cfg.store.kind = "mongodb".into();
                cfg.store.mongodb_uri = opts.uri.clone();
                cfg.store.database = opts.database.clone();
                parlor_store::Settings::MongoDb(opts)
            } else {
                std::fs::create_dir_all(&cfg.server.data_dir).unwrap();
                parlor_store::Settings::Embedded(cfg.server.data_dir.join("parlor.redb"))
            };
            let (f, (c, cp)) = rt.block_on(async {
                let store = parlor_store::open(&settings, ChatRetention::default(), None)
                    .await
                    .expect("open store");
                (stats_flush(&store).await, chat_writes(&store).await)
            });
            let (p50, p99) = logins(cfg);
            println!(
                "{kind:9} run {}: stats {f:>9.0} records/s, chat {c:>8.0} lines/s \
                 (append p99 {:.2} ms), login p50 {:.1} ms p99 {:.1} ms",
                run + 1,
                cp.as_secs_f64() * 1e3,
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
            flush.push(f);
            chat.push(c);
            chat_p99.push(cp.as_secs_f64() * 1e3);
            p50s.push(p50.as_secs_f64() * 1e3);
            p99s.push(p99.as_secs_f64() * 1e3);
        }
        println!(
            "{kind:9} median: stats {:.0} records/s, chat {:.0} lines/s (append p99 {:.2} ms), \
             login p50 {:.1} ms p99 {:.1} ms",
            median(flush),
            median(chat),
            median(chat_p99),
            median(p50s),
            median(p99s)
        );
    }
}
