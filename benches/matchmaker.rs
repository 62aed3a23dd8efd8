//! Matchmaker throughput with 10,000 players queued, on the memory queues and on Redis
//! (a redis-server of its own on loopback), through the `Queues` contract that the pods'
//! matchmaker calls.
//!
//! `cargo bench --bench matchmaker [-- RUNS]` prints, per backend and run:
//! - drain: 10,000 compatible players queued, then seated by pairing steps, in players
//!   seated per second (the pairing steps only) and the enqueue rate;
//! - full queue: 10,000 players who cannot be grouped stay queued while pairs arrive; each
//!   arrival is two enqueues and one pairing step, as a pod does. Players seated per
//!   second, and the median time of one pairing step over the full queue.
//!
//! Then the median of each over the runs.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parlor_cluster::{MemoryQueues, Queues, RedisBackend, RedisOptions, Retention, Ticket};
use parlor_core::{new_id, UserId};

const QUEUED: usize = 10_000;
const ARRIVALS: usize = 200;

fn ticket(user: String, rating: f64) -> Ticket {
    Ticket {
        user: UserId(user),
        rating,
        min: 2,
        max: 2,
        stamp: 1,
        payload: r#"{"pod":"pod-a","session":"s","request_id":1,"name":"n","role":"guest"}"#.into(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Run {
    enqueued_per_sec: f64,
    drain_seated_per_sec: f64,
    full_seated_per_sec: f64,
    full_pair_ms: f64,
}

async fn run(q: &dyn Queues) -> Run {
    // Drain.
    let kind = new_id("bench");
    let start = Instant::now();
    for i in 0..QUEUED {
        q.enqueue(&kind, ticket(format!("u{i}"), 1500.0))
            .await
            .unwrap();
    }
    let enqueued_per_sec = QUEUED as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut seated = 0;
    while seated < QUEUED {
        let groups = q.pair(&kind, 100.0, 0.0).await.unwrap().groups;
        assert!(!groups.is_empty(), "a pairing step seated nobody");
        seated += groups.iter().map(Vec::len).sum::<usize>();
    }
    let drain_seated_per_sec = QUEUED as f64 / start.elapsed().as_secs_f64();

    // A full queue of players too far apart to group, while pairs arrive.
    let kind = new_id("bench");
    for i in 0..QUEUED {
        q.enqueue(&kind, ticket(format!("w{i}"), i as f64 * 1000.0))
            .await
            .unwrap();
    }
    let mut steps = Vec::with_capacity(ARRIVALS);
    let start = Instant::now();
    for a in 0..ARRIVALS {
        // Between two waiting players' ratings, so that only the pair can group.
        let r = (a as f64) * 1000.0 + 500.0;
        q.enqueue(&kind, ticket(format!("a{a}"), r)).await.unwrap();
        q.enqueue(&kind, ticket(format!("b{a}"), r + 1.0))
            .await
            .unwrap();
        let t = Instant::now();
        let groups = q.pair(&kind, 100.0, 0.0).await.unwrap().groups;
        steps.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(groups.len(), 1, "exactly the arriving pair");
    }
    let full_seated_per_sec = (2 * ARRIVALS) as f64 / start.elapsed().as_secs_f64();
    Run {
        enqueued_per_sec,
        drain_seated_per_sec,
        full_seated_per_sec,
        full_pair_ms: median(steps),
    }
}

fn redis_options(url: String) -> RedisOptions {
    RedisOptions {
        url,
        cluster_urls: Vec::new(),
        prefix: "parlor-bench".into(),
        pod: "pod-a".into(),
        lease: Duration::from_secs(5),
        retention: Retention {
            count: 16,
            age: Duration::from_secs(60),
        },
        probe_every: Duration::from_secs(1),
        observer: None,
        wait_replicas: 0,
        wait: Duration::from_millis(200),
    }
}

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let redis = parlor_testkit::RedisServer::start();
    rt.block_on(async {
        let memory: Arc<dyn Queues> = Arc::new(MemoryQueues::default());
        let on_redis: Arc<dyn Queues> = RedisBackend::connect(redis_options(redis.url()))
            .await
            .expect("redis");
        for (name, q) in [("memory", memory), ("redis", on_redis)] {
            let mut all = Vec::new();
            for i in 0..runs {
                let r = run(&*q).await;
                println!(
                    "{name} run {i}: enqueue {:.0}/s; drain {:.0} seated/s; full queue {:.0} seated/s, one pairing step {:.2} ms",
                    r.enqueued_per_sec, r.drain_seated_per_sec, r.full_seated_per_sec, r.full_pair_ms
                );
                all.push(r);
            }
            println!(
                "{name} median of {runs}: enqueue {:.0}/s; drain {:.0} seated/s; full queue {:.0} seated/s, one pairing step {:.2} ms",
                median(all.iter().map(|r| r.enqueued_per_sec).collect()),
                median(all.iter().map(|r| r.drain_seated_per_sec).collect()),
                median(all.iter().map(|r| r.full_seated_per_sec).collect()),
                median(all.iter().map(|r| r.full_pair_ms).collect()),
            );
        }
    });
}
