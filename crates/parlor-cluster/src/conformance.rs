//! The suites every Broker and Leases implementation must pass (behind `test-util`). Each
//! takes two pods on one backend, so that fencing and hand-over are tried between pods.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use parlor_core::{new_id, Limits, MemberState, Room, RoomId, UserId};
use parlor_protocol::{encode_body, frame_with_seq, v1};

use crate::{
    checkpoint::{self, Part},
    Broker, Claim, ClusterError, EventSink, Lease, Leases, Origin, Replay,
};

/// One pod's view of the shared backend.
#[derive(Clone)]
pub struct Node {
    /// The pod's name.
    pub pod: String,
    /// Its broker.
    pub broker: Arc<dyn Broker>,
    /// Its leases (often the same object).
    pub leases: Arc<dyn Leases>,
}

/// A fresh room id, so that suites on one backend never share a room.
pub fn room() -> RoomId {
    RoomId(new_id("r_"))
}

/// A frame for event `seq`.
pub fn frame(seq: u64) -> Bytes {
    let body = encode_body(v1::envelope::Body::Ping(v1::Ping {
        client_time_ms: seq as i64,
    }));
    frame_with_seq(seq, &body)
}

/// Records what a subscription delivered.
#[derive(Default)]
pub struct Collect {
    /// Seqs delivered, in order.
    pub seqs: Mutex<Vec<u64>>,
    /// `lost` calls.
    pub lost: Mutex<Vec<u64>>,
    /// The origins delivered with events that had one.
    pub origins: Mutex<Vec<(u64, Origin)>>,
}

impl EventSink for Collect {
    fn deliver(&self, seq: u64, frame: &Bytes) {
        assert_eq!(
            parlor_protocol::frame_seq(frame),
            Some(seq),
            "frame and seq differ"
        );
        self.seqs.lock().unwrap().push(seq);
    }
    fn deliver_from(&self, seq: u64, frame: &Bytes, origin: Origin) {
        if !origin.is_none() {
            self.origins.lock().unwrap().push((seq, origin));
        }
        self.deliver(seq, frame);
    }
    fn lost(&self, after: u64) {
        self.lost.lock().unwrap().push(after);
    }
}

impl Collect {
    /// Waits until `n` events arrived (delivery may be asynchronous), then returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<u64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.seqs.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn home(node: &Node, room: &RoomId) -> Lease {
    match node.leases.claim(room, &node.pod).await.expect("claim") {
        Claim::Home(l) => l,
        Claim::Elsewhere(l) => panic!("{} should be free, but {} holds it", room, l.pod),
    }
}

fn fenced<T: std::fmt::Debug>(r: crate::Result<T>, what: &str) {
    assert!(
        matches!(r, Err(ClusterError::Fenced(_))),
        "{what}: expected Fenced, got {r:?}"
    );
}

/// One home at a time; a lapsed lease goes to the next claimer with a higher epoch.
pub async fn leases(a: &Node, b: &Node, lease_time: Duration) {
    let r = room();
    let la = home(a, &r).await;
    assert_eq!(
        b.leases.claim(&r, &b.pod).await.unwrap(),
        Claim::Elsewhere(la.clone())
    );
    assert_eq!(
        a.leases.claim(&r, &a.pod).await.unwrap(),
        Claim::Home(la.clone())
    );
    assert_eq!(a.leases.holder(&r).await.unwrap(), Some(la.clone()));
    // Renewal keeps it past the lease time.
    for _ in 0..3 {
        tokio::time::sleep(lease_time / 2).await;
        assert_eq!(
            a.leases.renew(vec![(r.clone(), la.clone())]).await.unwrap(),
            vec![true]
        );
    }
    assert!(matches!(
        b.leases.claim(&r, &b.pod).await.unwrap(),
        Claim::Elsewhere(_)
    ));
    // Someone else's lease cannot be released.
    let forged = Lease {
        pod: b.pod.as_str().into(),
        epoch: la.epoch,
    };
    b.leases.release(&r, &forged).await.unwrap();
    assert_eq!(a.leases.holder(&r).await.unwrap(), Some(la.clone()));
    // Unrenewed, it lapses; the next home has a higher epoch and the old one cannot renew.
    tokio::time::sleep(lease_time + lease_time / 2).await;
    assert_eq!(a.leases.holder(&r).await.unwrap(), None);
    let lb = home(b, &r).await;
    assert!(lb.epoch > la.epoch, "epoch {} after {}", lb.epoch, la.epoch);
    assert_eq!(
        a.leases.renew(vec![(r.clone(), la.clone())]).await.unwrap(),
        vec![false]
    );
    b.leases.release(&r, &lb).await.unwrap();
    assert_eq!(b.leases.holder(&r).await.unwrap(), None);
    let la2 = home(a, &r).await;
    assert!(la2.epoch > lb.epoch);
    assert!(a.leases.renew(Vec::new()).await.unwrap().is_empty());
}

/// Only the home publishes, only at the next seq; a deposed home is refused.
pub async fn fencing(a: &Node, b: &Node, lease_time: Duration) {
    let r = room();
    let la = home(a, &r).await;
    a.broker
        .publish(&r, &la, 1, frame(1), Origin::default(), vec![])
        .await
        .unwrap();
    fenced(
        a.broker
            .publish(&r, &la, 3, frame(3), Origin::default(), vec![])
            .await,
        "seq gap",
    );
    fenced(
        a.broker
            .publish(&r, &la, 1, frame(1), Origin::default(), vec![])
            .await,
        "seq repeat",
    );
    let forged = Lease {
        pod: b.pod.as_str().into(),
        epoch: la.epoch,
    };
    fenced(
        b.broker
            .publish(&r, &forged, 2, frame(2), Origin::default(), vec![])
            .await,
        "not the home",
    );
    fenced(
        b.broker.reset(&r, &forged, 1, vec![]).await,
        "reset by a non-home",
    );
    tokio::time::sleep(lease_time + lease_time / 2).await;
    let lb = home(b, &r).await;
    fenced(
        a.broker
            .publish(&r, &la, 2, frame(2), Origin::default(), vec![])
            .await,
        "deposed home",
    );
    // The new home continues the seq.
    assert_eq!(b.broker.last_seq(&r).await.unwrap(), 1);
    b.broker
        .publish(&r, &lb, 2, frame(2), Origin::default(), vec![])
        .await
        .unwrap();
    assert_eq!(a.broker.last_seq(&r).await.unwrap(), 2);
}

/// An origin for some events (every third), none for the rest.
fn origin_of(seq: u64) -> Origin {
    match seq % 3 {
        0 => Origin {
            session: u64::MAX - seq,
            request: seq,
        },
        _ => Origin::default(),
    }
}

/// Many publishes in flight at once land in order; every subscriber on every pod gets them
/// in order, once, with their origins; replay follows retention.
pub async fn order_and_replay(a: &Node, b: &Node, retained: usize) {
    let r = room();
    let la = home(a, &r).await;
    let here = Arc::new(Collect::default());
    let there = Arc::new(Collect::default());
    let (_, p) = a.broker.subscribe(&r, here.clone()).await.unwrap();
    assert_eq!(p, 0);
    let (sub_b, _) = b.broker.subscribe(&r, there.clone()).await.unwrap();
    let n = retained as u64 + 20;
    let pending: Vec<_> = (1..=n)
        .map(|s| a.broker.publish(&r, &la, s, frame(s), origin_of(s), vec![]))
        .collect();
    for p in pending {
        p.await.unwrap();
    }
    let want: Vec<u64> = (1..=n).collect();
    assert_eq!(here.wait_for(n as usize).await, want);
    assert_eq!(there.wait_for(n as usize).await, want);
    assert_eq!(b.broker.last_seq(&r).await.unwrap(), n);
    let with_origin = |from: u64| -> Vec<(u64, Origin)> {
        (from..=n)
            .map(|s| (s, origin_of(s)))
            .filter(|(_, o)| !o.is_none())
            .collect()
    };
    assert_eq!(*there.origins.lock().unwrap(), with_origin(1));
    assert_eq!(*here.origins.lock().unwrap(), with_origin(1));
    let kept = b.broker.retained(&r).await.unwrap();
    assert_eq!(
        kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
        ((n - retained as u64 + 1)..=n).collect::<Vec<_>>()
    );
    assert!(kept.iter().all(|e| e.frame == frame(e.seq)));
    assert_eq!(
        kept.iter()
            .filter(|e| !e.origin.is_none())
            .map(|e| (e.seq, e.origin))
            .collect::<Vec<_>>(),
        with_origin(n - retained as u64 + 1),
        "history keeps the origins of what it retains"
    );
    let seqs = |rep: Replay| match rep {
        Replay::Events(ev) => ev
            .iter()
            .map(|f| parlor_protocol::frame_seq(f).unwrap())
            .collect::<Vec<_>>(),
        Replay::Gone => panic!("expected events"),
    };
    let since = n - retained as u64;
    assert_eq!(
        seqs(b.broker.replay(&r, since).await.unwrap()),
        ((since + 1)..=n).collect::<Vec<_>>()
    );
    assert_eq!(b.broker.replay(&r, since - 1).await.unwrap(), Replay::Gone);
    assert_eq!(
        b.broker.replay(&r, n).await.unwrap(),
        Replay::Events(vec![])
    );
    assert_eq!(b.broker.replay(&r, n + 5).await.unwrap(), Replay::Gone);
    // A second subscriber on a pod starts at the current position.
    let late = Arc::new(Collect::default());
    let (late_id, p) = b.broker.subscribe(&r, late.clone()).await.unwrap();
    assert_eq!(p, n);
    b.broker.unsubscribe(&r, sub_b).await.unwrap();
    a.broker
        .publish(&r, &la, n + 1, frame(n + 1), Origin::default(), vec![])
        .await
        .unwrap();
    assert_eq!(late.wait_for(1).await, vec![n + 1]);
    assert_eq!(here.wait_for(n as usize + 1).await.last(), Some(&(n + 1)));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(there.seqs.lock().unwrap().len(), n as usize, "unsubscribed");
    b.broker.unsubscribe(&r, late_id).await.unwrap();
}

fn sample_room(id: &RoomId) -> Room {
    let req = v1::CreateRoom {
        name: "Checkpoint".into(),
        kind: "cards".into(),
        ..Default::default()
    };
    let mut room = Room::create(
        id.clone(),
        "ABCDEF".into(),
        &req,
        "u_owner".into(),
        &Limits::default(),
        1,
    )
    .unwrap();
    room.bans.insert("u_banned".into());
    for (i, name) in ["u_owner", "u_b", "u_c"].iter().enumerate() {
        room.members.push(MemberState {
            user_id: (*name).into(),
            name: name.to_string(),
            global: parlor_core::GlobalRole::User,
            role: if i == 0 {
                parlor_core::RoomRole::Owner
            } else {
                parlor_core::RoomRole::Player
            },
            status: 1,
            cursor: (0.5, 0.25),
            order: 10 - i as u64,
        });
    }
    room.members.sort_by_key(|m| m.order);
    room
}

/// A checkpoint rebuilds the room exactly; event writes apply atomically with the event;
/// forget drops everything.
pub async fn checkpoints(a: &Node, b: &Node) {
    let r = room();
    assert_eq!(b.broker.load(&r).await.unwrap(), None);
    let la = home(a, &r).await;
    let mut room = sample_room(&r);
    a.broker
        .reset(&r, &la, 0, checkpoint::full(&room, None))
        .await
        .unwrap();
    let loaded = b.broker.load(&r).await.unwrap().expect("checkpoint");
    assert_eq!(loaded.seq, 0);
    assert_eq!(loaded.room().unwrap(), Some(room.clone()));
    // A leave and a setting change, written with the event that says so.
    room.remove_member(&"u_b".into());
    room.settings.allow_chat = false;
    let writes = checkpoint::writes(&room, &[Part::Member("u_b".into()), Part::Settings]);
    a.broker
        .publish(&r, &la, 1, frame(1), Origin::default(), writes)
        .await
        .unwrap();
    let loaded = b.broker.load(&r).await.unwrap().expect("checkpoint");
    assert_eq!(loaded.seq, 1);
    assert_eq!(loaded.room().unwrap(), Some(room.clone()));
    // A refused publish changes nothing.
    let ghost = checkpoint::writes(&room, &[Part::Info]);
    fenced(
        a.broker
            .publish(&r, &la, 5, frame(5), Origin::default(), ghost)
            .await,
        "gap",
    );
    assert_eq!(b.broker.load(&r).await.unwrap().unwrap().seq, 1);
    // A reset at another seq drops history that no longer lines up.
    a.broker
        .reset(&r, &la, 7, checkpoint::full(&room, None))
        .await
        .unwrap();
    assert_eq!(b.broker.last_seq(&r).await.unwrap(), 7);
    assert_eq!(b.broker.replay(&r, 0).await.unwrap(), Replay::Gone);
    a.broker
        .publish(&r, &la, 8, frame(8), Origin::default(), vec![])
        .await
        .unwrap();
    a.broker.forget(&r).await.unwrap();
    assert_eq!(b.broker.load(&r).await.unwrap(), None);
    assert_eq!(b.broker.last_seq(&r).await.unwrap(), 0);
    assert_eq!(b.leases.holder(&r).await.unwrap(), None);
}

/// Every suite, on one backend.
pub async fn run_all(a: &Node, b: &Node, lease_time: Duration, retained: usize) {
    leases(a, b, lease_time).await;
    fencing(a, b, lease_time).await;
    order_and_replay(a, b, retained).await;
    checkpoints(a, b).await;
}

fn listed_room(code: &str, kind: &str, public: bool, at: i64, max: u32) -> Room {
    let req = v1::CreateRoom {
        name: code.into(),
        kind: kind.into(),
        visibility: if public {
            v1::Visibility::Public
        } else {
            v1::Visibility::Private
        } as i32,
        max_members: max,
        ..Default::default()
    };
    Room::create(
        room(),
        code.into(),
        &req,
        "u_o".into(),
        &Limits::default(),
        at,
    )
    .unwrap()
}

fn seat(room: &mut Room, n: usize) {
    for i in 0..n {
        room.members.push(MemberState {
            user_id: format!("u_{i}").as_str().into(),
            name: format!("m{i}"),
            global: parlor_core::GlobalRole::User,
            role: parlor_core::RoomRole::Player,
            status: 1,
            cursor: (0.0, 0.0),
            order: i as u64,
        });
    }
}

/// Codes are taken once; the list is ordered and paged; JoinOrCreate finds the oldest open
/// room; a listing never holds members; locks exclude other owners. `a` and `b` must share
/// one backend, and `kind` must be unused on it.
pub async fn directory(a: &dyn crate::RoomDirectory, b: &dyn crate::RoomDirectory, kind: &str) {
    let code = new_id("C").to_ascii_uppercase();
    let first = listed_room(&code, kind, true, 1, 2);
    let clash = listed_room(&code, kind, true, 2, 2);
    // Two pods racing for one code: exactly one wins.
    let (x, y) = tokio::join!(a.create(&first), b.create(&clash));
    assert!(x.unwrap() ^ y.unwrap(), "exactly one create takes the code");
    let winner = if b.find_code(&code.to_lowercase()).await.unwrap() == Some(first.info.id.clone())
    {
        first.clone()
    } else {
        clash.clone()
    };
    assert_eq!(a.get(&winner.info.id).await.unwrap(), Some(winner.clone()));
    let loser = if winner == first { &clash } else { &first };
    assert_eq!(b.get(&loser.info.id).await.unwrap(), None);

    let mut private = listed_room(&new_id("P"), kind, false, 3, 2);
    assert!(a.create(&private).await.unwrap());
    let mut older = listed_room(&new_id("O"), kind, true, 0, 2);
    assert!(b.create(&older).await.unwrap());
    let (page, total) = a.list(Some(kind), 0, 10).await.unwrap();
    assert_eq!(total, 2, "public rooms of the kind");
    assert_eq!(
        page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [older.info.id.as_str(), winner.info.id.as_str()],
        "oldest first"
    );
    let (page, total) = b.list(Some(kind), 1, 1).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0].id, winner.info.id.0);

    // A full room is not open; its listing counts members but holds none.
    assert_eq!(
        a.find_open(kind).await.unwrap(),
        Some(older.info.id.clone())
    );
    seat(&mut older, 2);
    b.put(&older).await.unwrap();
    assert_eq!(
        a.find_open(kind).await.unwrap(),
        Some(winner.info.id.clone())
    );
    let listed = a.get(&older.info.id).await.unwrap().unwrap();
    assert!(listed.members.is_empty(), "a listing holds no members");
    let (page, _) = a.list(Some(kind), 0, 1).await.unwrap();
    assert_eq!(page[0].member_count, 2);
    // A password closes a room to JoinOrCreate; a private room is never open or listed.
    let mut locked = winner.clone();
    locked.info.password = "pw".into();
    a.put(&locked).await.unwrap();
    assert_eq!(b.find_open(kind).await.unwrap(), None);
    seat(&mut private, 0);
    private.info.name = "renamed".into();
    b.put(&private).await.unwrap();
    assert_eq!(
        a.get(&private.info.id).await.unwrap().unwrap().info.name,
        "renamed"
    );
    assert_eq!(a.list(Some(kind), 0, 10).await.unwrap().1, 2);

    // Removal frees the code and drops the listing and its index entries.
    a.remove(&locked.info.id).await.unwrap();
    assert_eq!(b.find_code(&code).await.unwrap(), None);
    assert_eq!(b.get(&locked.info.id).await.unwrap(), None);
    assert_eq!(b.list(Some(kind), 0, 10).await.unwrap().1, 1);
    older.members.clear();
    a.put(&older).await.unwrap();
    assert_eq!(
        b.find_open(kind).await.unwrap(),
        Some(older.info.id.clone())
    );
    b.remove(&older.info.id).await.unwrap();
    b.remove(&private.info.id).await.unwrap();
    assert_eq!(a.find_open(kind).await.unwrap(), None);

    // Locks: one owner at a time, released by the owner only, lapsing after the ttl.
    let name = format!("create:{kind}");
    let ttl = Duration::from_millis(300);
    assert!(a.lock(&name, "pod-a", ttl).await.unwrap());
    assert!(!b.lock(&name, "pod-b", ttl).await.unwrap());
    assert!(
        a.lock(&name, "pod-a", ttl).await.unwrap(),
        "the owner holds it"
    );
    b.unlock(&name, "pod-b").await.unwrap();
    assert!(!b.lock(&name, "pod-b", ttl).await.unwrap());
    a.unlock(&name, "pod-a").await.unwrap();
    assert!(b.lock(&name, "pod-b", ttl).await.unwrap());
    tokio::time::sleep(ttl * 2).await;
    assert!(
        a.lock(&name, "pod-a", ttl).await.unwrap(),
        "a lapsed lock is free"
    );
}

/// Each pod reads only its own inbox, in the order messages were sent. `a` and `b` share
/// one backend; `pod_a` and `pod_b` must be unused on it.
pub async fn inbox(a: &dyn crate::Inbox, b: &dyn crate::Inbox, pod_a: &str, pod_b: &str) {
    let got_a = Arc::new(Mutex::new(Vec::new()));
    let got_b = Arc::new(Mutex::new(Vec::new()));
    let sink = |got: &Arc<Mutex<Vec<Bytes>>>| {
        let got = got.clone();
        Arc::new(move |m: Bytes| got.lock().unwrap().push(m)) as crate::InboxHandler
    };
    a.listen(pod_a, sink(&got_a)).await.unwrap();
    b.listen(pod_b, sink(&got_b)).await.unwrap();
    let n = 200u32;
    let sent: Vec<_> = (0..n)
        .map(|i| a.send(pod_b, Bytes::from(i.to_be_bytes().to_vec())))
        .collect();
    for s in sent {
        s.await.expect("the backend took it");
    }
    b.send(pod_a, Bytes::from_static(b"back")).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (got_b.lock().unwrap().len() < n as usize || got_a.lock().unwrap().is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let want: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(i.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(*got_b.lock().unwrap(), want, "in order, each once");
    assert_eq!(*got_a.lock().unwrap(), vec![Bytes::from_static(b"back")]);
}

/// Pods register with a ttl; a pod that stops heartbeating drops out, and its sessions
/// with it once swept. `a` and `b` share one backend; the pod names must be unused on it.
pub async fn presence(a: &dyn crate::Presence, b: &dyn crate::Presence, pod_a: &str, pod_b: &str) {
    let short = Duration::from_millis(400);
    let long = Duration::from_secs(60);
    assert!(
        a.heartbeat(pod_a, short).await.unwrap(),
        "a first beat registers"
    );
    assert!(b.heartbeat(pod_b, long).await.unwrap());
    assert!(
        !b.heartbeat(pod_b, long).await.unwrap(),
        "a refresh is no new registration"
    );
    let user = parlor_core::UserId(new_id("u_"));
    a.online(&user, "s1", pod_a).await.unwrap();
    a.online(&user, "s2", pod_a).await.unwrap();
    b.online(&user, "s3", pod_b).await.unwrap();
    let mut got = b.sessions(&user).await.unwrap();
    got.sort();
    let want = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(s, p)| (s.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(got, want(&[("s1", pod_a), ("s2", pod_a), ("s3", pod_b)]));
    a.offline(&user, "s2", pod_a).await.unwrap();
    let pods = b.pods().await.unwrap();
    let mine: Vec<(String, usize)> = pods
        .iter()
        .filter(|p| p.name == pod_a || p.name == pod_b)
        .map(|p| (p.name.clone(), p.sessions))
        .collect();
    assert_eq!(mine, vec![(pod_a.to_owned(), 1), (pod_b.to_owned(), 1)]);
    // a stops heartbeating: it and its sessions are no longer listed, then swept.
    tokio::time::sleep(short + Duration::from_millis(200)).await;
    assert!(b.pods().await.unwrap().iter().all(|p| p.name != pod_a));
    assert_eq!(b.sessions(&user).await.unwrap(), want(&[("s3", pod_b)]));
    assert!(b.sweep().await.unwrap() >= 1);
    assert!(
        a.heartbeat(pod_a, long).await.unwrap(),
        "a swept pod is told to list its sessions again"
    );
    assert_eq!(
        a.sessions(&user).await.unwrap(),
        want(&[("s3", pod_b)]),
        "swept for good"
    );
    b.offline(&user, "s3", pod_b).await.unwrap();
    assert!(a.sessions(&user).await.unwrap().is_empty());
}

/// Matchmaking queues, seen from two pods: atomic pairing, the widening window, group
/// sizes, replacement and cancels ordered by stamp.
pub async fn queues(a: &dyn crate::Queues, b: &dyn crate::Queues) {
    use crate::Ticket;
    let ticket = |user: &UserId, rating: f64, (min, max): (u32, u32), stamp: u64| Ticket {
        user: user.clone(),
        rating,
        min,
        max,
        stamp,
        payload: format!("seat {user}"),
    };
    let users = |n: usize| -> Vec<UserId> { (0..n).map(|_| UserId(new_id("u_"))).collect() };
    let names = |g: &[Ticket]| -> Vec<UserId> { g.iter().map(|t| t.user.clone()).collect() };
    // Waits start on the queue's millisecond clock: apart, so that "oldest" is one.
    let tick = || tokio::time::sleep(Duration::from_millis(3));

    // 40 players queued through both pods, paired by both at once: 20 pairs, each player
    // in exactly one.
    let kind = new_id("k");
    let many = users(40);
    for (i, u) in many.iter().enumerate() {
        let q = if i % 2 == 0 { a } else { b };
        assert!(q
            .enqueue(&kind, ticket(u, 1500.0, (2, 2), 1))
            .await
            .unwrap());
    }
    let mut seated: Vec<UserId> = Vec::new();
    for _ in 0..5 {
        let (ga, gb) = tokio::join!(a.pair(&kind, 100.0, 0.0), b.pair(&kind, 100.0, 0.0));
        for g in ga.unwrap().groups.into_iter().chain(gb.unwrap().groups) {
            assert_eq!(g.len(), 2, "a pair");
            assert_eq!(
                g[0].payload,
                format!("seat {}", g[0].user),
                "tickets come back whole"
            );
            seated.extend(names(&g));
        }
    }
    seated.sort();
    let mut want = many.clone();
    want.sort();
    assert_eq!(seated, want, "every player seated exactly once");

    // Far apart: no group until the window has widened to cover them.
    let kind = new_id("k");
    let far = users(2);
    a.enqueue(&kind, ticket(&far[0], 1000.0, (2, 2), 1))
        .await
        .unwrap();
    tick().await;
    b.enqueue(&kind, ticket(&far[1], 2000.0, (2, 2), 1))
        .await
        .unwrap();
    tick().await;
    assert!(
        a.pair(&kind, 100.0, 2000.0)
            .await
            .unwrap()
            .groups
            .is_empty(),
        "too far apart at first"
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    let g = b.pair(&kind, 100.0, 2000.0).await.unwrap().groups;
    assert_eq!(g.len(), 1, "the window widened");
    assert_eq!(names(&g[0]), far, "oldest first");

    // Closest in rating first; only equal group sizes group; a replaced ticket is one.
    let kind = new_id("k");
    let u = users(5);
    a.enqueue(&kind, ticket(&u[0], 1500.0, (2, 2), 1))
        .await
        .unwrap();
    tick().await;
    a.enqueue(&kind, ticket(&u[0], 1500.0, (2, 2), 2))
        .await
        .unwrap();
    tick().await;
    b.enqueue(&kind, ticket(&u[1], 1590.0, (2, 2), 1))
        .await
        .unwrap();
    tick().await;
    b.enqueue(&kind, ticket(&u[2], 1510.0, (2, 2), 1))
        .await
        .unwrap();
    tick().await;
    a.enqueue(&kind, ticket(&u[3], 1500.0, (3, 4), 1))
        .await
        .unwrap();
    tick().await;
    b.enqueue(&kind, ticket(&u[4], 1500.0, (3, 4), 1))
        .await
        .unwrap();
    tick().await;
    let g = a.pair(&kind, 100.0, 0.0).await.unwrap().groups;
    assert_eq!(g.len(), 1, "{g:?}");
    assert_eq!(names(&g[0]), vec![u[0].clone(), u[2].clone()]);
    let third = users(1).remove(0);
    a.enqueue(&kind, ticket(&third, 1450.0, (3, 4), 1))
        .await
        .unwrap();
    tick().await;
    let g = b.pair(&kind, 100.0, 0.0).await.unwrap().groups;
    assert_eq!(g.len(), 1, "three of 3..4 form a group: {g:?}");
    assert_eq!(names(&g[0]), vec![u[3].clone(), u[4].clone(), third]);
    let left = a.pair(&kind, 1000.0, 0.0).await.unwrap();
    assert!(left.groups.is_empty(), "u1 waits alone");
    assert_eq!(left.waiting, 1, "and is counted as waiting");

    // Cancels: a later stamp wins, whichever arrives first.
    let kind = new_id("k");
    let c = users(2);
    a.enqueue(&kind, ticket(&c[0], 1500.0, (2, 2), 10))
        .await
        .unwrap();
    tick().await;
    assert!(
        b.cancel(&kind, &c[0], 20).await.unwrap(),
        "queued, then cancelled"
    );
    assert!(
        !a.enqueue(&kind, ticket(&c[0], 1500.0, (2, 2), 15))
            .await
            .unwrap(),
        "a ticket older than a cancel already in is refused"
    );
    assert!(
        !b.cancel(&kind, &c[0], 21).await.unwrap(),
        "nothing left to cancel"
    );
    assert!(a
        .enqueue(&kind, ticket(&c[0], 1500.0, (2, 2), 30))
        .await
        .unwrap());
    tick().await;
    assert!(
        !b.cancel(&kind, &c[0], 25).await.unwrap(),
        "an older cancel leaves it"
    );
    b.enqueue(&kind, ticket(&c[1], 1500.0, (2, 2), 30))
        .await
        .unwrap();
    tick().await;
    let g = a.pair(&kind, 100.0, 0.0).await.unwrap().groups;
    assert_eq!(g.len(), 1);
    assert_eq!(names(&g[0]), c);
}
