//! Pods sharing rooms through one real redis-server and one MongoDB wire server: members
//! spread over pods, joins racing for seats, JoinOrCreate filling rooms in turn.

use std::collections::HashSet;

use parlor_client::{v1, Body, Connection};
use parlor_testkit::RedisServer;

use super::support::{create, join_id, metric, store_config, StoreKind, TestServer, T};

/// Three pods (or `n`) on one Redis and one store, each its own actix System.
pub(crate) struct Cluster {
    pub(crate) pods: Vec<TestServer>,
    /// Lives as long as the pods.
    _redis: RedisServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub(crate) async fn start(n: usize) -> Cluster {
        Self::with(n, |_| {}).await
    }

    pub(crate) async fn with(n: usize, tweak: impl Fn(&mut parlor_server::Config)) -> Cluster {
        let redis = RedisServer::start();
        // One data dir: the pods share the signing key the first one generates there (the
        // store is MongoDB, so nothing else is kept in it).
        let dir = tempfile::tempdir().unwrap();
        let mut base = store_config(dir.path(), StoreKind::MongoDb);
        base.cluster.kind = "redis".into();
        base.cluster.redis_url = redis.url();
        base.cluster.lease_ms = 1500;
        tweak(&mut base);
        let mut pods = Vec::new();
        for i in 0..n {
            let mut cfg = base.clone();
            cfg.server.pod_name = format!("pod-{i}");
            pods.push(TestServer::start_config(cfg).await);
        }
        Cluster {
            pods,
            _redis: redis,
            _dir: dir,
        }
    }

    /// A guest connected to pod `i`.
    pub(crate) async fn guest(&self, i: usize, name: &str) -> Connection {
        self.pods[i % self.pods.len()].guest(name).await.0
    }
}

/// Chat lines with `prefix`, in the order received, until `n` arrived.
async fn chat_lines(c: &mut Connection, n: usize) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = c.next_frame(T).await.unwrap();
        if let Body::ChatMessage(m) = &f.body {
            out.push((f.seq, m.text.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_on_three_pods_see_every_event_in_one_order() {
    let cluster = Cluster::start(3).await;
    let mut a = cluster.guest(0, "a").await;
    let room = a
        .create_room(create("spread", "piano"))
        .await
        .unwrap()
        .room
        .unwrap();
    let mut b = cluster.guest(1, "b").await;
    let joined = b.join_room(join_id(&room.id)).await.unwrap();
    assert_eq!(joined.members.len(), 2, "b sees itself and a");
    let mut c = cluster.guest(2, "c").await;
    let joined = c
        .join_room(v1::JoinRoom {
            code: room.code.to_lowercase(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(joined.members.len(), 3);
    let after = joined.last_seq;

    // Each member says three things; every member sees all nine in the same order.
    for i in 0..3 {
        a.chat(&room.id, &format!("a{i}")).await.unwrap();
        b.chat(&room.id, &format!("b{i}")).await.unwrap();
        c.chat(&room.id, &format!("c{i}")).await.unwrap();
    }
    let (la, lb, lc) = tokio::join!(
        chat_lines(&mut a, 9),
        chat_lines(&mut b, 9),
        chat_lines(&mut c, 9)
    );
    assert_eq!(la, lb);
    assert_eq!(lb, lc);
    let seqs: Vec<u64> = lc.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        seqs,
        ((after + 1)..=(after + 9)).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    let texts: HashSet<&str> = lc.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(texts.len(), 9);
    // b's and c's lines went to the room's home, pod 0, through their pods' inboxes.
    for (i, dir) in [(1, "sent"), (2, "sent"), (0, "received")] {
        let m = cluster.pods[i].metrics().await;
        let n = metric(
            &m,
            &format!("parlor_cluster_forwards_total{{direction=\"{dir}\"}}"),
        );
        assert!(n >= 3.0, "pod {i} {dir} {n} forwards");
    }

    // A presence change on one pod reaches the others.
    c.send(Body::PresenceUpdate(v1::PresenceUpdate {
        room_id: room.id.clone(),
        cursor_x: Some(0.5),
        ..Default::default()
    }))
    .await
    .unwrap();
    for conn in [&mut a, &mut b] {
        let m = conn
            .wait_for(T, |f| match &f.body {
                Body::MemberUpdated(m) => m.member.clone(),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(m.cursor_x, 0.5);
    }

    // The room list is the same on every pod.
    let mut lists = Vec::new();
    for conn in [&mut a, &mut b, &mut c] {
        let l = conn.list_rooms("piano").await.unwrap();
        lists.push(
            l.rooms
                .iter()
                .map(|r| (r.id.clone(), r.member_count))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(lists[0], vec![(room.id.clone(), 3)]);
    assert!(lists.iter().all(|l| *l == lists[0]));

    // A member on another pod leaves; the others see it, and it gets no more events.
    b.leave_room(&room.id).await.unwrap();
    for conn in [&mut a, &mut c] {
        conn.wait_for(T, |f| match &f.body {
            Body::MemberLeft(m) if m.user_id == joined.members[1].user_id => Some(()),
            _ => None,
        })
        .await
        .unwrap();
    }
    a.chat(&room.id, "after b left").await.unwrap();
    chat_lines(&mut c, 1).await;
    let stray = b.next_frame(std::time::Duration::from_millis(300)).await;
    assert!(
        !matches!(&stray, Ok(f) if matches!(f.body, Body::ChatMessage(_))),
        "b left but got {stray:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_joins_from_three_pods_seat_exactly_ten() {
    let cluster = Cluster::start(3).await;
    let mut owner = cluster.guest(0, "owner").await;
    let room = owner
        .create_room(v1::CreateRoom {
            max_members: 10,
            ..create("ten seats", "cards")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let mut conns = Vec::new();
    for i in 0..50 {
        conns.push(cluster.guest(i, &format!("p{i}")).await);
    }
    let joins = conns.into_iter().map(|mut c| {
        let id = room.id.clone();
        tokio::spawn(async move { (c.join_room(join_id(&id)).await, c) })
    });
    let mut seated = 0;
    let mut full = 0;
    let mut keep = Vec::new();
    for j in joins {
        let (res, c) = j.await.unwrap();
        match res {
            Ok(_) => seated += 1,
            Err(parlor_client::ClientError::Server {
                code: v1::ErrorCode::RoomFull,
                ..
            }) => full += 1,
            Err(e) => panic!("join failed otherwise: {e:?}"),
        }
        keep.push(c);
    }
    // The owner holds one of the ten seats.
    assert_eq!((seated, full), (9, 41));
    let list = owner.list_rooms("cards").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let list = if list.rooms[0].member_count == 10 {
        list
    } else {
        owner.list_rooms("cards").await.unwrap()
    };
    assert_eq!(list.rooms[0].member_count, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_join_or_creates_on_three_pods_fill_rooms_of_eight_in_turn() {
    let cluster = Cluster::start(3).await;
    let mut conns = Vec::new();
    for i in 0..30 {
        conns.push(cluster.guest(i, &format!("q{i}")).await);
    }
    let joins = conns.into_iter().map(|mut c| {
        tokio::spawn(async move {
            let r = c
                .request(
                    Body::JoinOrCreate(v1::JoinOrCreate {
                        kind: "trivia".into(),
                        ..Default::default()
                    }),
                    T,
                )
                .await
                .unwrap();
            (r, c)
        })
    });
    let mut rooms: std::collections::HashMap<String, usize> = Default::default();
    let mut keep = Vec::new();
    for j in joins {
        let (f, c) = j.await.unwrap();
        match f.body {
            Body::RoomJoined(r) => *rooms.entry(r.room.unwrap().id).or_default() += 1,
            other => panic!("JoinOrCreate answered {other:?}"),
        }
        keep.push(c);
    }
    let mut sizes: Vec<usize> = rooms.values().copied().collect();
    sizes.sort_unstable();
    // Rooms of the default 16 seats: 30 joiners need two, filled in turn.
    assert_eq!(sizes, vec![14, 16], "rooms {rooms:?}");
}
