//! Game-client scenarios from the foundation issue, end to end.

use parlor_client::{v1, Body};

use super::support::*;

#[tokio::test]
async fn a_guest_joins_a_public_room() {
    let s = TestServer::start().await;
    let (mut a, wa) = s.guest("Ann").await;
    let (mut b, wb) = s.guest("Bob").await;
    assert_eq!(wa.user.as_ref().unwrap().role, v1::GlobalRole::Guest as i32);

    let joined = a.create_room(create("Jam", "piano")).await.unwrap();
    let room = joined.room.unwrap();
    assert_eq!(joined.your_role, v1::RoomRole::Owner as i32);
    assert_eq!(room.max_members, 16, "default max members");

    let list = b.list_rooms("piano").await.unwrap();
    assert_eq!(list.total, 1);
    assert_eq!(list.rooms[0].id, room.id);

    let jb = b.join_room(join_id(&room.id)).await.unwrap();
    assert_eq!(jb.your_role, v1::RoomRole::Player as i32);
    let names: Vec<_> = jb.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["Ann", "Bob"]);

    let ev = room_events(&mut a, 1).await;
    match &ev[0].body {
        Body::MemberJoined(m) => {
            assert_eq!(m.member.as_ref().unwrap().user_id, wb.user.unwrap().id)
        }
        other => panic!("expected MemberJoined, got {other:?}"),
    }
    assert_eq!(
        ev[0].seq, jb.last_seq,
        "the joiner's snapshot includes its own join"
    );
}

#[tokio::test]
async fn an_owner_makes_a_private_room_with_a_password_and_a_friend_joins_by_code() {
    let s = TestServer::start().await;
    let (mut owner, _, _) = s.user("olivia").await;
    let (mut friend, _, _) = s.user("frank").await;
    let joined = owner
        .create_room(v1::CreateRoom {
            name: "Poker night".into(),
            kind: "table".into(),
            visibility: v1::Visibility::Private as i32,
            password: "s3cret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let room = joined.room.unwrap();
    assert!(room.has_password);
    assert_eq!(
        friend.list_rooms("table").await.unwrap().total,
        0,
        "private rooms are unlisted"
    );

    let wrong = friend
        .join_room(v1::JoinRoom {
            code: room.code.to_lowercase(),
            password: "guess".into(),
            ..Default::default()
        })
        .await;
    match wrong {
        Err(parlor_client::ClientError::Server { code, .. }) => {
            assert_eq!(code, v1::ErrorCode::WrongPassword)
        }
        other => panic!("expected WRONG_PASSWORD, got {other:?}"),
    }
    let ok = friend
        .join_room(v1::JoinRoom {
            code: room.code.clone(),
            password: "s3cret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.room.unwrap().id, room.id);
    assert_eq!(ok.members.len(), 2);
}

#[tokio::test]
async fn chat_presence_and_events_arrive_in_sequence_order_at_every_member() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let (mut c, _) = s.guest("c").await;
    let room = a
        .create_room(create("r", "piano"))
        .await
        .unwrap()
        .room
        .unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    let jc = c.join_room(join_id(&room.id)).await.unwrap();
    // Drain the join events a and b saw.
    room_events(&mut a, 2).await;
    room_events(&mut b, 1).await;

    a.chat(&room.id, "hello").await.unwrap();
    b.send(Body::PresenceUpdate(v1::PresenceUpdate {
        room_id: room.id.clone(),
        status: v1::PresenceStatus::Away as i32,
        cursor_x: Some(0.5),
        cursor_y: Some(0.25),
    }))
    .await
    .unwrap();
    c.game_event(&room.id, "note_on", vec![60u8, 100])
        .await
        .unwrap();
    for _ in 0..20 {
        a.game_event(&room.id, "tick", vec![1u8]).await.unwrap();
    }

    let mut seen = Vec::new();
    for conn in [&mut a, &mut b, &mut c] {
        let ev = room_events(conn, 23).await;
        let seqs: Vec<u64> = ev.iter().map(|f| f.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "contiguous: {seqs:?}"
        );
        assert_eq!(seqs[0], jc.last_seq + 1);
        seen.push(ev);
    }
    // Every member saw exactly the same frames.
    assert_eq!(
        seen[0].iter().map(|f| &f.body).collect::<Vec<_>>(),
        seen[1].iter().map(|f| &f.body).collect::<Vec<_>>()
    );
    assert_eq!(
        seen[0].iter().map(|f| &f.body).collect::<Vec<_>>(),
        seen[2].iter().map(|f| &f.body).collect::<Vec<_>>()
    );
    // Different senders race to the room; one sender's frames keep their order.
    let kinds: Vec<&str> = seen[0]
        .iter()
        .map(|f| match &f.body {
            Body::ChatMessage(m) if m.text == "hello" => "chat",
            Body::MemberUpdated(m)
                if m.member.as_ref().unwrap().status == v1::PresenceStatus::Away as i32 =>
            {
                "presence"
            }
            Body::GameEvent(e) if e.r#type == "note_on" && e.payload.as_ref() == [60, 100] => {
                assert!(!e.sender_id.is_empty());
                "event"
            }
            Body::GameEvent(e) if e.r#type == "tick" => "tick",
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, ["chat", "event", "presence", "tick"]);
    assert_eq!(kinds.iter().filter(|k| **k == "tick").count(), 20);
    let chat_at = kinds.iter().position(|k| *k == "chat").unwrap();
    let first_tick = kinds.iter().position(|k| *k == "tick").unwrap();
    assert!(
        chat_at < first_tick,
        "a's chat was sent before its ticks: {kinds:?}"
    );
}

#[tokio::test]
async fn a_watcher_may_chat_but_its_game_event_is_denied() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("dealer").await;
    let (mut w, _) = s.guest("watcher").await;
    let room = a
        .create_room(create("table", "table"))
        .await
        .unwrap()
        .room
        .unwrap();
    let jw = w
        .join_room(v1::JoinRoom {
            room_id: room.id.clone(),
            role: v1::RoomRole::Watcher as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jw.your_role, v1::RoomRole::Watcher as i32);
    let rid = w.game_event(&room.id, "play", vec![1u8]).await.unwrap();
    let (erid, e) = next_error(&mut w).await;
    assert_eq!((erid, code(&e)), (rid, v1::ErrorCode::Forbidden));
    w.chat(&room.id, "nice hand").await.unwrap();
    let ev = room_events(&mut a, 2).await; // MemberJoined, then the chat
    assert!(matches!(&ev[1].body, Body::ChatMessage(m) if m.text == "nice hand"));
}

#[tokio::test]
async fn a_kick_removes_the_member_and_tells_the_others() {
    let s = TestServer::start().await;
    let (mut owner, _) = s.guest("owner").await;
    let (mut bad, wbad) = s.guest("troll").await;
    let (mut other, _) = s.guest("other").await;
    let room = owner
        .create_room(create("r", "trivia"))
        .await
        .unwrap()
        .room
        .unwrap();
    bad.join_room(join_id(&room.id)).await.unwrap();
    other.join_room(join_id(&room.id)).await.unwrap();
    let troll = wbad.user.unwrap().id;

    // A player may not kick.
    other
        .send(Body::Moderate(v1::Moderate {
            room_id: room.id.clone(),
            user_id: troll.clone(),
            action: v1::ModerationAction::Kick as i32,
            reason: String::new(),
        }))
        .await
        .unwrap();
    assert_eq!(
        code(&next_error(&mut other).await.1),
        v1::ErrorCode::Forbidden
    );

    let ack = moderate(
        &mut owner,
        &room.id,
        &troll,
        v1::ModerationAction::Kick,
        "spam",
    )
    .await;
    assert!(matches!(ack.body, Body::Ack(_)));

    // The kicked member sees the room's Moderated event, and only then its RoomLeft: room
    // events still being batched must not arrive after it has been told it left.
    let mut moderated_first = false;
    let left = bad
        .wait_for(T, |f| match &f.body {
            Body::Moderated(_) => {
                moderated_first = true;
                None
            }
            Body::RoomLeft(l) => Some(l.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(left.reason, v1::LeaveReason::Kicked as i32);
    assert!(moderated_first, "Moderated came after RoomLeft");

    let seen = other
        .wait_for(T, |f| match &f.body {
            Body::MemberLeft(m) => Some(m.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        (seen.user_id.as_str(), seen.reason),
        (troll.as_str(), v1::LeaveReason::Kicked as i32)
    );

    bad.chat(&room.id, "still here?").await.unwrap();
    assert_eq!(
        code(&next_error(&mut bad).await.1),
        v1::ErrorCode::NotInRoom
    );
}

#[tokio::test]
async fn visitors_may_only_list_and_watch_public_rooms_that_allow_guests() {
    let s = TestServer::start().await;
    let (mut owner, _) = s.guest("owner").await;
    let open = owner
        .create_room(create("open", "pool"))
        .await
        .unwrap()
        .room
        .unwrap();
    let closed = owner
        .create_room(v1::CreateRoom {
            settings: Some(v1::RoomSettings {
                allow_guests: Some(false),
                ..Default::default()
            }),
            ..create("members only", "pool")
        })
        .await
        .unwrap()
        .room
        .unwrap();

    let (mut v, w) = s.connect(None).await;
    assert_eq!(w.user.unwrap().role, v1::GlobalRole::Visitor as i32);
    assert!(w.resume_token.is_empty());
    assert_eq!(v.list_rooms("pool").await.unwrap().total, 2);

    let as_player = v.join_room(join_id(&open.id)).await;
    refused(as_player, v1::ErrorCode::Unauthenticated);
    let watch = |id: &str| v1::JoinRoom {
        room_id: id.into(),
        role: v1::RoomRole::Watcher as i32,
        ..Default::default()
    };
    let barred = v.join_room(watch(&closed.id)).await;
    refused(barred, v1::ErrorCode::Forbidden);
    let ok = v.join_room(watch(&open.id)).await.unwrap();
    assert_eq!(ok.your_role, v1::RoomRole::Watcher as i32);

    v.chat(&open.id, "hi").await.unwrap();
    assert_eq!(
        code(&next_error(&mut v).await.1),
        v1::ErrorCode::Unauthenticated
    );
    let created = v.create_room(create("mine", "pool")).await;
    refused(created, v1::ErrorCode::Unauthenticated);

    // The visitor still receives the room's events as a watcher.
    owner.chat(&open.id, "welcome, watcher").await.unwrap();
    let line = v
        .wait_for(T, |f| match &f.body {
            Body::ChatMessage(m) => Some(m.text.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(line, "welcome, watcher");
}

#[tokio::test]
async fn join_or_create_fills_an_open_room_before_making_another() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, _) = s.guest("b").await;
    let req = |kind: &str| {
        Body::JoinOrCreate(v1::JoinOrCreate {
            kind: kind.into(),
            role: 0,
        })
    };
    let ra = a.request(req("trivia"), T).await.unwrap();
    let rb = b.request(req("trivia"), T).await.unwrap();
    let (Body::RoomJoined(ja), Body::RoomJoined(jb)) = (ra.body, rb.body) else {
        panic!("expected RoomJoined twice");
    };
    assert_eq!(ja.room.unwrap().id, jb.room.as_ref().unwrap().id);
    assert_eq!(jb.members.len(), 2);
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_what_it_missed_or_a_resync() {
    let s = TestServer::with(|c| c.cluster.history_events = 6).await;
    let (mut a, _) = s.guest("a").await;
    let (mut b, wb) = s.guest("b").await;
    let room = a
        .create_room(create("r", "tabletop"))
        .await
        .unwrap()
        .room
        .unwrap();
    let jb = b.join_room(join_id(&room.id)).await.unwrap();
    let seen = jb.last_seq;
    b.close().await;

    // b's seat is held (it shows as away) while two lines are said.
    let away = room_events(&mut a, 2).await; // b joined, b away
    assert!(matches!(&away[1].body, Body::MemberUpdated(m)
        if m.member.as_ref().unwrap().status == v1::PresenceStatus::Away as i32));
    a.chat(&room.id, "one").await.unwrap();
    a.chat(&room.id, "two").await.unwrap();
    room_events(&mut a, 2).await;

    let mut b2 = parlor_client::Connection::connect(&s.ws_url())
        .await
        .unwrap();
    let w2 = b2.resume(&wb.resume_token).await.unwrap();
    assert_eq!(
        w2.user.unwrap().id,
        wb.user.unwrap().id,
        "resume keeps the identity"
    );
    let rejoined = b2
        .join_room(v1::JoinRoom {
            room_id: room.id.clone(),
            last_seq: seen,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(!rejoined.resync);
    assert!(rejoined.resumed);
    assert!(
        rejoined.members.is_empty(),
        "a resumed join carries no snapshot"
    );
    assert_eq!(rejoined.last_seq, seen);
    let missed = room_events(&mut b2, 4).await; // away, one, two, back online
    let seqs: Vec<u64> = missed.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (seen + 1..=seen + 4).collect::<Vec<_>>());
    let texts: Vec<String> = missed
        .iter()
        .filter_map(|f| match &f.body {
            Body::ChatMessage(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert!(matches!(&missed[3].body, Body::MemberUpdated(m)
        if m.member.as_ref().unwrap().status == v1::PresenceStatus::Online as i32));

    // Far behind the retention window: an explicit resync, never a silent gap.
    for i in 0..10 {
        a.chat(&room.id, &format!("m{i}")).await.unwrap();
    }
    room_events(&mut b2, 10).await;
    let (mut b3, _) = s.guest("late").await;
    let stale = b3
        .join_room(v1::JoinRoom {
            room_id: room.id.clone(),
            last_seq: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(stale.resync);
    assert!(stale.last_seq > seen + 10);
}

#[tokio::test]
async fn owners_update_settings_mute_and_ban_and_members_see_it() {
    let s = TestServer::start().await;
    let (mut owner, _, _) = s.user("host").await;
    let (mut p, wp, _) = s.user("player1").await;
    let room = owner
        .create_room(create("quiz", "trivia"))
        .await
        .unwrap()
        .room
        .unwrap();
    p.join_room(join_id(&room.id)).await.unwrap();
    let pid = wp.user.unwrap().id;

    let upd = |settings: v1::RoomSettings| {
        Body::UpdateRoom(v1::UpdateRoom {
            room_id: room.id.clone(),
            name: Some("Quiz night".into()),
            settings: Some(settings),
            ..Default::default()
        })
    };
    let denied = p.request(upd(v1::RoomSettings::default()), T).await;
    refused(denied, v1::ErrorCode::Forbidden);
    let ack = owner
        .request(
            upd(v1::RoomSettings {
                allow_chat: Some(false),
                ..Default::default()
            }),
            T,
        )
        .await
        .unwrap();
    assert!(matches!(ack.body, Body::Ack(_)));
    let updated = p
        .wait_for(T, |f| match &f.body {
            Body::RoomUpdated(u) => Some(u.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(updated.room.unwrap().name, "Quiz night");
    assert_eq!(updated.settings.unwrap().allow_chat, Some(false));
    p.chat(&room.id, "can I talk?").await.unwrap();
    assert_eq!(
        code(&next_error(&mut p).await.1),
        v1::ErrorCode::ChatDisabled
    );

    owner
        .request(
            upd(v1::RoomSettings {
                allow_chat: Some(true),
                ..Default::default()
            }),
            T,
        )
        .await
        .unwrap();
    let moderate = |action: v1::ModerationAction| {
        Body::Moderate(v1::Moderate {
            room_id: room.id.clone(),
            user_id: pid.clone(),
            action: action as i32,
            reason: String::new(),
        })
    };
    owner
        .request(moderate(v1::ModerationAction::Mute), T)
        .await
        .unwrap();
    let muted = p
        .wait_for(T, |f| match &f.body {
            Body::MemberUpdated(m) if m.member.as_ref().unwrap().muted => Some(()),
            _ => None,
        })
        .await;
    assert!(muted.is_ok());
    p.chat(&room.id, "hello?").await.unwrap();
    assert_eq!(code(&next_error(&mut p).await.1), v1::ErrorCode::Muted);
    owner
        .request(moderate(v1::ModerationAction::Unmute), T)
        .await
        .unwrap();
    p.chat(&room.id, "thanks").await.unwrap();
    let heard = owner
        .wait_for(T, |f| match &f.body {
            Body::ChatMessage(m) => Some(m.text.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(heard, "thanks");

    owner
        .request(moderate(v1::ModerationAction::Ban), T)
        .await
        .unwrap();
    let left = p
        .wait_for(T, |f| match &f.body {
            Body::RoomLeft(l) => Some(l.reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(left, v1::LeaveReason::Banned as i32);
    let back = p.join_room(join_id(&room.id)).await;
    refused(back, v1::ErrorCode::Banned);
}

#[tokio::test]
async fn private_messages_and_targeted_events_reach_only_their_target() {
    let s = TestServer::start().await;
    let (mut a, wa, _) = s.user("alice").await;
    let (mut b, wb, _) = s.user("bobby").await;
    let (mut c, _) = s.guest("carol").await;
    let bid = wb.user.unwrap().id;
    let aid = wa.user.unwrap().id;

    private_line(&mut a, &bid, "psst").await;
    let dm = b
        .wait_for(T, |f| match &f.body {
            Body::ChatMessage(m) => Some(m.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(
        (
            dm.text.as_str(),
            dm.from_user_id.as_str(),
            dm.room_id.as_str()
        ),
        ("psst", aid.as_str(), "")
    );
    // Guests may not send private messages; nobody online is a typed error.
    private_line(&mut c, &bid, "hi").await;
    assert_eq!(code(&next_error(&mut c).await.1), v1::ErrorCode::Forbidden);
    private_line(&mut a, "u_offline", "hi").await;
    assert_eq!(
        code(&next_error(&mut a).await.1),
        v1::ErrorCode::UserNotFound
    );

    let room = a
        .create_room(create("dice", "tabletop"))
        .await
        .unwrap()
        .room
        .unwrap();
    b.join_room(join_id(&room.id)).await.unwrap();
    c.join_room(join_id(&room.id)).await.unwrap();
    a.send(Body::GameEvent(v1::GameEvent {
        room_id: room.id.clone(),
        r#type: "secret_roll".into(),
        payload: vec![6u8].into(),
        target_user_id: bid.clone(),
        ..Default::default()
    }))
    .await
    .unwrap();
    a.chat(&room.id, "rolled").await.unwrap();
    let got = b
        .wait_for(T, |f| match &f.body {
            Body::GameEvent(e) => Some((f.seq, e.clone())),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(got.0, 0, "targeted events are outside the room sequence");
    assert_eq!(got.1.sender_id, aid);
    // Carol sees the chat that followed but never the targeted event.
    let seen_by_carol = c
        .wait_for(T, |f| match &f.body {
            Body::GameEvent(_) => Some(false),
            Body::ChatMessage(m) if m.text == "rolled" => Some(true),
            _ => None,
        })
        .await
        .unwrap();
    assert!(seen_by_carol);
}

#[tokio::test]
async fn a_dropped_member_keeps_the_seat_for_the_grace_period_only() {
    let s = TestServer::with(|c| c.rooms.reconnect_grace_secs = 1).await;
    let (mut owner, _) = s.guest("owner").await;
    let room = owner
        .create_room(v1::CreateRoom {
            password: "pw".into(),
            max_members: 2,
            ..create("held", "table")
        })
        .await
        .unwrap()
        .room
        .unwrap();
    let (mut p, wp) = s.guest("player").await;
    p.join_room(join_pw(&room.id, "pw")).await.unwrap();
    p.close().await;
    // The seat is held: a third user finds the room full.
    let (mut third, _) = s.guest("third").await;
    let full = third.join_room(join_pw(&room.id, "pw")).await;
    refused(full, v1::ErrorCode::RoomFull);
    // Back within the grace period: no password needed, same seat.
    let mut back = parlor_client::Connection::connect(&s.ws_url())
        .await
        .unwrap();
    back.resume(&wp.resume_token).await.unwrap();
    back.join_room(join_id(&room.id)).await.unwrap();
    back.close().await;
    // Gone for longer than the grace period: the seat is freed and the room is told.
    let left = owner
        .wait_for(T, |f| match &f.body {
            Body::MemberLeft(m) => Some(m.reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(left, v1::LeaveReason::Disconnected as i32);
    third.join_room(join_pw(&room.id, "pw")).await.unwrap();
}
