//! The cluster contracts' suites, on memory and on a real redis-server, plus what only a
//! lossy Redis subscription needs: gap healing, the position check and reconnecting.

use std::{sync::Arc, time::Duration};

use parlor_cluster::{
    conformance::{self, Collect, Node},
    Claim, Health, MemoryBroker, Origin, RedisBackend, RedisOptions, Retention,
};
use parlor_testkit::{RedisCluster, RedisServer};

const LEASE: Duration = Duration::from_millis(400);
const RETAINED: usize = 16;

fn retention() -> Retention {
    Retention {
        count: RETAINED,
        age: Duration::from_secs(60),
    }
}

fn memory_pods() -> (Node, Node) {
    let broker = Arc::new(MemoryBroker::new(retention(), LEASE));
    let node = |pod: &str| Node {
        pod: pod.into(),
        broker: broker.clone(),
        leases: broker.clone(),
    };
    (node("pod-a"), node("pod-b"))
}

/// A pod's options: on one Redis (`url`) or a Redis Cluster (`cluster_urls`), waiting
/// for `wait_replicas` before an event counts as recorded.
fn options(url: String, cluster_urls: Vec<String>, pod: &str, wait_replicas: u32) -> RedisOptions {
    RedisOptions {
        url,
        cluster_urls,
        prefix: "parlor-test".into(),
        pod: pod.into(),
        lease: LEASE,
        retention: retention(),
        probe_every: Duration::from_millis(200),
        observer: None,
        wait_replicas,
        wait: Duration::from_millis(500),
    }
}

async fn redis_pod(server: &RedisServer, pod: &str) -> (Arc<RedisBackend>, Node) {
    connect(options(server.url(), Vec::new(), pod, 0)).await
}

/// A pod on a Redis Cluster, through its seed nodes. Every master has a replica: events
/// count as recorded once it has them.
async fn cluster_pod(cluster: &RedisCluster, pod: &str) -> (Arc<RedisBackend>, Node) {
    connect(options(String::new(), cluster.urls(), pod, 1)).await
}

async fn connect(opts: RedisOptions) -> (Arc<RedisBackend>, Node) {
    let pod = opts.pod.clone();
    let b = RedisBackend::connect(opts).await.expect("connect");
    let node = Node {
        pod,
        broker: b.clone(),
        leases: b.clone(),
    };
    (b, node)
}

#[tokio::test]
async fn memory_passes_every_suite() {
    let (a, b) = memory_pods();
    conformance::run_all(&a, &b, LEASE, RETAINED).await;
    let d = parlor_cluster::MemoryDirectory::default();
    conformance::directory(&d, &d, "cards").await;
    let inbox = parlor_cluster::MemoryInbox::default();
    conformance::inbox(&inbox, &inbox, "pod-a", "pod-b").await;
    let p = parlor_cluster::MemoryPresence::default();
    conformance::presence(&p, &p, "pod-a", "pod-b").await;
    let q = parlor_cluster::MemoryQueues::default();
    conformance::queues(&q, &q).await;
}

/// Every suite, on two pods of one Redis backend.
async fn every_suite(pods: [&(Arc<RedisBackend>, Node); 2]) {
    let [(da, a), (db, b)] = pods;
    conformance::run_all(a, b, LEASE, RETAINED).await;
    conformance::directory(&**da, &**db, "cards").await;
    conformance::inbox(&**da, &**db, "pod-a", "pod-b").await;
    conformance::presence(&**da, &**db, "pod-a", "pod-b").await;
    conformance::queues(&**da, &**db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_passes_every_suite() {
    let server = RedisServer::start();
    let a = redis_pod(&server, "pod-a").await;
    let b = redis_pod(&server, "pod-b").await;
    every_suite([&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_passes_every_suite() {
    let cluster = RedisCluster::start();
    let pa = cluster_pod(&cluster, "pod-a").await;
    let pb = cluster_pod(&cluster, "pod-b").await;
    every_suite([&pa, &pb]).await;
    let ((da, a), (db, _)) = (&pa, &pb);
    assert!(da.ready() && db.ready());
    // Rooms spread over the masters (30 rooms miss one with odds of 1 in 60,000), and
    // every channel was sharded.
    let masters = cluster.masters();
    let before: Vec<u64> = masters
        .iter()
        .map(|m| cluster.calls(*m, "evalsha"))
        .collect();
    let mut held = Vec::new();
    for _ in 0..30 {
        let room = conformance::room();
        let Claim::Home(lease) = a.leases.claim(&room, "pod-a").await.unwrap() else {
            panic!("a new room is free")
        };
        held.push((room, lease));
    }
    // In flight at once, so that the publisher's pipelines and the renewal's span slots.
    let sent: Vec<_> = held
        .iter()
        .map(|(r, l)| {
            let frame = conformance::frame(1);
            a.broker.publish(r, l, 1, frame, Origin::default(), vec![])
        })
        .collect();
    for s in sent {
        s.await.unwrap();
    }
    assert_eq!(a.leases.renew(held).await.unwrap(), vec![true; 30]);
    assert_eq!(masters.len(), 3);
    let scripts: Vec<u64> = masters
        .iter()
        .zip(before)
        .map(|(m, b)| cluster.calls(*m, "evalsha") - b)
        .collect();
    assert!(
        scripts.iter().all(|n| *n > 0),
        "script calls per master: {scripts:?}"
    );
    let total = |cmd: &str| -> u64 { masters.iter().map(|m| cluster.calls(*m, cmd)).sum() };
    assert!(total("spublish") > 0 && total("ssubscribe") > 0);
    assert_eq!(
        (total("publish"), total("subscribe")),
        (0, 0),
        "no cluster-wide channel"
    );
    // Whether each WAIT came back in time depends on the machine's load, so only that
    // the publishes waited is checked here; the failover test checks a short one.
    assert!(total("wait") > 0, "publishes waited for replicas");
}

/// Writes event `seq` into history and the seq counter as the publish script does, but
/// without publishing it: a message pub/sub lost. Its origin is `lost_origin(seq)`.
/// Publishes event `seq` with no origin and no writes; it must be accepted.
async fn publish(node: &Node, room: &parlor_core::RoomId, lease: &parlor_cluster::Lease, seq: u64) {
    node.broker
        .publish(
            room,
            lease,
            seq,
            conformance::frame(seq),
            Origin::default(),
            vec![],
        )
        .await
        .unwrap();
}

fn lost_origin(seq: u64) -> Origin {
    Origin {
        session: 9,
        request: seq,
    }
}

async fn lose(server: &RedisServer, room: &parlor_core::RoomId, seq: u64) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::pipe()
        .cmd("XADD")
        .arg(format!("parlor-test:{{{room}}}:hist"))
        .arg(format!("{seq}-1"))
        .arg("t")
        .arg(parlor_core::now_ms())
        .arg("f")
        .arg(conformance::frame(seq).to_vec())
        .arg("o")
        .arg([9u64.to_be_bytes(), seq.to_be_bytes()].concat())
        .ignore()
        .cmd("HSET")
        .arg(format!("parlor-test:{{{room}}}:state"))
        .arg("seq")
        .arg(seq)
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_heals_gaps_from_history() {
    let server = RedisServer::start();
    let (broker, a) = redis_pod(&server, "pod-a").await;
    let (_, b) = redis_pod(&server, "pod-b").await;
    let room = conformance::room();
    let Claim::Home(lease) = a.leases.claim(&room, "pod-a").await.unwrap() else {
        panic!("free room")
    };
    let sink = Arc::new(Collect::default());
    let (_, _) = b.broker.subscribe(&room, sink.clone()).await.unwrap();
    publish(&a, &room, &lease, 1).await;
    // Seq 2 and 3 never reach the channel; 4 does, and brings them with it from history.
    lose(&server, &room, 2).await;
    lose(&server, &room, 3).await;
    publish(&a, &room, &lease, 4).await;
    assert_eq!(sink.wait_for(4).await, vec![1, 2, 3, 4]);
    // A silent stop: 5 is lost and nothing follows. The position check finds it.
    lose(&server, &room, 5).await;
    assert_eq!(sink.wait_for(5).await, vec![1, 2, 3, 4, 5]);
    // After the heal, the next event comes through as itself, not as a duplicate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The test's lease is short: take it again (a new epoch if it lapsed meanwhile).
    let Claim::Home(lease) = a.leases.claim(&room, "pod-a").await.unwrap() else {
        panic!("nobody else claims it")
    };
    publish(&a, &room, &lease, 6).await;
    assert_eq!(sink.wait_for(6).await, vec![1, 2, 3, 4, 5, 6]);
    assert!(sink.lost.lock().unwrap().is_empty());
    let healed: Vec<_> = [2, 3, 5].map(|s| (s, lost_origin(s))).into();
    assert_eq!(
        *sink.origins.lock().unwrap(),
        healed,
        "origins come with healed events"
    );
    assert!(broker.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_is_survived() {
    let mut server = RedisServer::start();
    let (broker, a) = redis_pod(&server, "pod-a").await;
    let room = conformance::room();
    let sink = Arc::new(Collect::default());
    a.broker.subscribe(&room, sink.clone()).await.unwrap();
    assert!(broker.ready());
    server.stop();
    // Down: calls fail as unavailable, readiness follows within a few probes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!broker.ready(), "ready while Redis is down");
    assert!(matches!(
        a.leases.claim(&room, "pod-a").await,
        Err(parlor_cluster::ClusterError::Unavailable(_))
    ));
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !broker.ready() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(broker.ready(), "not ready after Redis came back");
    // Redis came back empty: a new lease, a new seq, delivered on the old subscription.
    let Claim::Home(lease) = a.leases.claim(&room, "pod-a").await.unwrap() else {
        panic!("free room")
    };
    a.broker.reset(&room, &lease, 0, vec![]).await.unwrap();
    publish(&a, &room, &lease, 1).await;
    assert_eq!(sink.wait_for(1).await, vec![1]);
}
