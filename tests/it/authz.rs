//! The authorization matrix on live pods: every client action, tried by every global role
//! (visitor, guest, user, moderator, admin) holding every room role (owner, player,
//! watcher, not a member), through real sockets and REST, and compared with the one
//! permission table, `parlor_core::check`. On a difference the whole matrix is printed.
//!
//! Runs on one pod, and on two pods with the actor on one and the rooms' owner (and home)
//! on the other.

use parlor_client::{v1, Body, Connection};
use parlor_core::{check, Action, GlobalRole, RoomPolicy, RoomRole};
use parlor_store::Store;

use super::{
    cluster::Cluster,
    support::{code, create, raw_http, store_config, StoreKind, TestServer, T},
};

const ROOM_ROLES: [Option<RoomRole>; 4] = [
    None,
    Some(RoomRole::Owner),
    Some(RoomRole::Player),
    Some(RoomRole::Watcher),
];

/// Codes that mean "not allowed"; any other error is a failure of the test's setup, and
/// shows in the matrix as `?`.
const DENIALS: [v1::ErrorCode; 5] = [
    v1::ErrorCode::Forbidden,
    v1::ErrorCode::Unauthenticated,
    v1::ErrorCode::NotInRoom,
    v1::ErrorCode::ChatDisabled,
    v1::ErrorCode::RoomNotFound,
];

/// What happened when an action was tried.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Allowed,
    Denied,
    /// Neither: an error the table does not speak of, or no answer.
    Other(String),
}

fn ws_outcome(r: Result<(), v1::ErrorCode>) -> Outcome {
    match r {
        Ok(()) => Outcome::Allowed,
        Err(c) if DENIALS.contains(&c) => Outcome::Denied,
        Err(c) => Outcome::Other(format!("{c:?}")),
    }
}

fn http_outcome(status: u16, body: &str) -> Outcome {
    match status {
        200..=299 => Outcome::Allowed,
        401 | 403 | 404 => Outcome::Denied,
        s => Outcome::Other(format!("HTTP {s}: {body}")),
    }
}

/// Sends `body` and waits for its direct answer: an error, or anything else with its
/// request id (a private line comes back, delivered, with none: `echo` picks it out).
async fn answer(
    c: &mut Connection,
    body: Body,
    echo: impl Fn(&Body) -> bool,
) -> Result<(), v1::ErrorCode> {
    let rid = c.send(body).await.unwrap();
    let got = c
        .wait_for(T, |f| match &f.body {
            Body::Error(e) if f.request_id == rid => Some(Err(code(e))),
            _ if f.request_id == rid => Some(Ok(())),
            b if echo(b) => Some(Ok(())),
            _ => None,
        })
        .await;
    got.unwrap_or(Err(v1::ErrorCode::Unspecified))
}

fn none(_: &Body) -> bool {
    false
}

/// An account (or a visitor) with a global role, signed in on `pod`.
struct Actor {
    conn: Connection,
    token: Option<String>,
    id: String,
}

async fn actor(pod: &TestServer, store: &Store, role: GlobalRole, name: &str) -> Actor {
    let tokens = match role {
        GlobalRole::Visitor => None,
        GlobalRole::Guest => Some(pod.rest().guest(name).await.unwrap()),
        _ => Some(
            pod.rest()
                .register(name, "correct horse battery", name)
                .await
                .unwrap(),
        ),
    };
    if let (Some(t), GlobalRole::Moderator | GlobalRole::Admin) = (&tokens, role) {
        // Staff are made in the store, as an operator does; the pods read roles from it.
        let id = parlor_core::UserId(t.user_id.clone());
        let mut user = store.accounts.get_user(&id).await.unwrap().unwrap();
        user.role = role;
        store.accounts.update_user(&user).await.unwrap();
    }
    let token = tokens.map(|t| t.access_token);
    let (conn, w) = pod.connect(token.as_deref()).await;
    Actor {
        conn,
        token,
        id: w.user.unwrap().id,
    }
}

fn join(room: &str, role: v1::RoomRole) -> Body {
    Body::JoinRoom(v1::JoinRoom {
        room_id: room.into(),
        role: role as i32,
        ..Default::default()
    })
}

fn moderate(room: &str, user: &str, action: v1::ModerationAction) -> Body {
    Body::Moderate(v1::Moderate {
        room_id: room.into(),
        user_id: user.into(),
        action: action as i32,
        reason: String::new(),
    })
}

fn flip(room: &str) -> Body {
    use v1::{cards_action, game_action};
    Body::GameAction(v1::GameAction {
        room_id: room.into(),
        action: Some(game_action::Action::Cards(v1::CardsAction {
            action: Some(cards_action::Action::Flip(v1::Flip { index: 0 })),
        })),
    })
}

/// One cell: `global` holding `room_role`. The actor is on `pods[1]` (or the only pod);
/// the rooms' owner, and the members acted on, on `pods[0]`.
async fn cell(
    pods: &[TestServer],
    store: &Store,
    global: GlobalRole,
    room_role: Option<RoomRole>,
    n: usize,
) -> Vec<(Action, Outcome)> {
    let (home, away) = (&pods[0], &pods[pods.len() - 1]);
    let mut a = actor(away, store, global, &format!("actor{n}")).await;
    let mut owner = actor(home, store, GlobalRole::User, &format!("owner{n}")).await;
    let mut target = actor(home, store, GlobalRole::Guest, &format!("target{n}")).await;
    let mut out = Vec::new();
    // The rooms: a relay room and a dice room, owned by the actor when it is the owner.
    let maker = if room_role == Some(RoomRole::Owner) {
        &mut a
    } else {
        &mut owner
    };
    let piano = maker.conn.create_room(create("piano", "piano")).await;
    let Ok(piano) = piano else {
        // A visitor cannot own a room: the cell cannot exist.
        return out;
    };
    let piano = piano.room.unwrap().id;
    let dice = maker
        .conn
        .create_room(create("dice", "dice"))
        .await
        .unwrap();
    let dice = dice.room.unwrap().id;
    target
        .conn
        .join_room(parlor_client::v1::JoinRoom {
            room_id: piano.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let as_role = match room_role {
        Some(RoomRole::Player) => Some(v1::RoomRole::Player),
        Some(RoomRole::Watcher) => Some(v1::RoomRole::Watcher),
        _ => None,
    };
    if let Some(r) = as_role {
        for room in [&piano, &dice] {
            if answer(&mut a.conn, join(room, r), none).await.is_err() {
                // A visitor cannot play: the cell cannot exist.
                return out;
            }
        }
    }
    let c = &mut a.conn;
    let ws = |r| ws_outcome(r);
    out.push((
        Action::ListRooms,
        ws(answer(c, Body::ListRooms(Default::default()), none).await),
    ));
    let made = answer(c, Body::CreateRoom(create("mine", "piano")), none).await;
    out.push((Action::CreateRoom, ws(made)));
    let chat = Body::Chat(v1::Chat {
        room_id: piano.clone(),
        text: "hello".into(),
        ..Default::default()
    });
    let me = a.id.clone();
    let said = |b: &Body| matches!(b, Body::ChatMessage(m) if m.from_user_id == me);
    out.push((Action::Chat, ws(answer(c, chat, said).await)));
    let line = format!("psst {n}");
    let private = Body::Chat(v1::Chat {
        to_user_id: target.id.clone(),
        text: line.clone(),
        ..Default::default()
    });
    let delivered = |b: &Body| matches!(b, Body::ChatMessage(m) if m.text == line);
    out.push((Action::PrivateChat, ws(answer(c, private, delivered).await)));
    let event = Body::GameEvent(v1::GameEvent {
        room_id: piano.clone(),
        r#type: "note_on".into(),
        payload: vec![60, 100].into(),
        ..Default::default()
    });
    let sent = |b: &Body| matches!(b, Body::GameEvent(e) if e.sender_id == me);
    out.push((Action::SendGameEvent, ws(answer(c, event, sent).await)));
    // The table lets a member's game action through to the game, whose own rules then
    // decide (dice: watchers do not roll). A cards action in the dice room is answered
    // WRONG_KIND by the game, whatever the role: that answer shows it got past the table.
    let through = match answer(c, flip(&dice), none).await {
        Err(v1::ErrorCode::WrongKind) => Ok(()),
        Ok(()) => Err(v1::ErrorCode::Unspecified),
        other => other,
    };
    out.push((Action::GameAction, ws(through)));
    let presence = Body::PresenceUpdate(v1::PresenceUpdate {
        room_id: piano.clone(),
        status: v1::PresenceStatus::Away as i32,
        ..Default::default()
    });
    let moved = |b: &Body| {
        matches!(b, Body::MemberUpdated(u)
            if u.member.as_ref().is_some_and(|m| m.user_id == me && m.status == 2))
    };
    out.push((Action::UpdatePresence, ws(answer(c, presence, moved).await)));
    let update = Body::UpdateRoom(v1::UpdateRoom {
        room_id: piano.clone(),
        name: Some("renamed".into()),
        ..Default::default()
    });
    out.push((Action::UpdateRoom, ws(answer(c, update, none).await)));
    use v1::ModerationAction as MA;
    for (action, m) in [
        (Action::Mute, MA::Mute),
        (Action::Unmute, MA::Unmute),
        (Action::Kick, MA::Kick),
    ] {
        let got = answer(c, moderate(&piano, &target.id, m), none).await;
        out.push((action, ws(got)));
    }
    let banned = answer(c, moderate(&piano, "u_stranger", MA::Ban), none).await;
    out.push((Action::Ban, ws(banned)));
    // Joining: a member's join is a rejoin of the seat it holds.
    let watch = answer(c, join(&piano, v1::RoomRole::Watcher), none).await;
    out.push((Action::JoinAsWatcher, ws(watch)));
    let play = answer(c, join(&dice, v1::RoomRole::Player), none).await;
    out.push((Action::JoinAsPlayer, ws(play)));

    // REST.
    let url = |path: &str| format!("{}{path}", away.http_url());
    let bearer = a.token.as_deref();
    for (action, method, path) in [
        (
            Action::ReadHistory,
            "GET",
            format!("/api/v1/rooms/{piano}/messages"),
        ),
        (Action::ReadAudit, "GET", "/api/v1/admin/audit".into()),
        (Action::ReadCluster, "GET", "/api/v1/admin/pods".into()),
        (
            Action::ManageQuestionSets,
            "GET",
            "/api/v1/question-sets".into(),
        ),
    ] {
        let (status, body) = raw_http(method, &url(&path), bearer).await;
        out.push((action, http_outcome(status, &body)));
    }
    let magic = serde_json::json!({ "user_id": target.id });
    let rest = away.rest();
    let issued = rest.post_json("/api/v1/auth/magic", &magic, bearer).await;
    out.push((
        Action::IssueMagicCode,
        match issued {
            Ok(_) => Outcome::Allowed,
            Err(parlor_client::ClientError::Http {
                status, message, ..
            }) => http_outcome(status, &message),
            Err(e) => Outcome::Other(e.to_string()),
        },
    ));
    let (status, body) = raw_http("DELETE", &url(&format!("/api/v1/rooms/{piano}")), bearer).await;
    out.push((Action::DeleteRoom, http_outcome(status, &body)));
    let _ = owner.conn.close().await;
    out
}

/// Walks every cell on `pods` and fails, printing the matrix, on any difference.
async fn walk(pods: &[TestServer]) {
    let cfg = &pods[0].cfg;
    let settings = parlor_store::Settings::MongoDb(parlor_store::MongoOptions {
        uri: cfg.store.mongodb_uri.clone(),
        database: cfg.store.database.clone(),
        pool_size: 2,
    });
    let store = parlor_store::open(&settings, Default::default(), None)
        .await
        .unwrap();
    let mut got = std::collections::HashMap::new();
    let mut n = 0;
    for global in GlobalRole::ALL {
        for room in ROOM_ROLES {
            n += 1;
            for (action, outcome) in cell(pods, &store, global, room, n).await {
                got.insert((action, global, room), outcome);
            }
        }
    }
    // A cell that cannot exist (a visitor owning or playing) is skipped, and its row
    // printed as '-'; every other cell must have been tried.
    let mut table = String::new();
    let mut wrong = Vec::new();
    for action in Action::ALL {
        table.push_str(&format!("{:<20}", format!("{action:?}")));
        for global in GlobalRole::ALL {
            table.push(' ');
            for room in ROOM_ROLES {
                let want = check(action, global, room, &RoomPolicy::default()).is_ok();
                let ch = match got.get(&(action, global, room)) {
                    None => '-',
                    Some(Outcome::Allowed) if want => '1',
                    Some(Outcome::Denied) if !want => '.',
                    Some(o) => {
                        wrong.push(format!("{action:?} by {global:?} as {room:?}: {o:?}"));
                        '!'
                    }
                };
                table.push(ch);
            }
        }
        table.push('\n');
    }
    let tried = got.len();
    assert!(
        wrong.is_empty(),
        "the pods disagree with the permission table ('!'):\n\
         columns: visitor guest user moderator admin, each none/owner/player/watcher\n\
         {table}\n{}",
        wrong.join("\n")
    );
    // Visitors own and play nothing: 2 of the 20 cells cannot exist.
    assert_eq!(tried, Action::ALL.len() * 18, "\n{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_by_every_role_on_one_pod_matches_the_permission_table() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_config(store_config(dir.path(), StoreKind::MongoDb)).await;
    walk(std::slice::from_ref(&s)).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_by_every_role_across_two_pods_matches_the_permission_table() {
    let cluster = Cluster::start(2).await;
    walk(&cluster.pods).await;
}
