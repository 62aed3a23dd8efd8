//! Envelope decoding and dispatch: any bytes are a refused frame, or a message that passes
//! the shape check and is then acted on the way a room acts on it (room state and the
//! built-in games, which do no I/O). Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parlor_core::{check_inbound, GlobalRole, Limits, Room, RoomId, RoomRole, UserId};
use parlor_games::{Player, Registry};
use parlor_protocol::v1::{self, envelope::Body};

fn player(id: &str, role: RoomRole) -> Player {
    Player {
        user_id: UserId(id.into()),
        name: id.into(),
        role,
        global: GlobalRole::User,
    }
}

fn room(limits: &Limits) -> Room {
    let req = v1::CreateRoom {
        name: "fuzz".into(),
        kind: "piano".into(),
        ..Default::default()
    };
    Room::create(
        RoomId("r_fuzz".into()),
        "CODE".into(),
        &req,
        UserId("u_owner".into()),
        limits,
        0,
    )
    .expect("a plain room is valid")
}

fuzz_target!(|data: &[u8]| {
    let Ok((_, body)) = parlor_protocol::decode_envelope(data) else {
        return;
    };
    let limits = Limits::default();
    if check_inbound(&body, &limits).is_err() {
        return;
    }
    let games = Registry::builtin();
    match body {
        Body::CreateRoom(req) => {
            let owner = UserId("u_owner".into());
            if let Ok(r) = Room::create(RoomId("r".into()), "C".into(), &req, owner, &limits, 0) {
                let _ = r.summary();
                let _ = r.admit(&UserId("u_a".into()), GlobalRole::Guest, RoomRole::Player, false);
            }
            if let Ok(Some(mut host)) = games.create(&req.kind, req.game, [1; 32]) {
                host.joined(&player("u_owner", RoomRole::Owner), 0);
                host.joined(&player("u_a", RoomRole::Player), 1);
                let _ = host.view_for(&player("u_a", RoomRole::Player), "r");
            }
        }
        Body::UpdateRoom(u) => {
            let mut r = room(&limits);
            let _ = r.apply_update(&u, &limits);
        }
        Body::JoinRoom(j) => {
            let r = room(&limits);
            let want = RoomRole::requested(j.role);
            let _ = r.admit(&UserId(j.room_id), GlobalRole::User, want, j.password.is_empty());
        }
        Body::GameAction(a) => {
            let Some(action) = a.action else { return };
            for kind in ["dice", "cards", "trivia", "match"] {
                let Ok(Some(mut host)) = games.create(kind, None, [2; 32]) else {
                    continue;
                };
                let (owner, p) = (player("u_owner", RoomRole::Owner), player("u_a", RoomRole::Player));
                host.joined(&owner, 0);
                host.joined(&p, 1);
                for who in [&owner, &p] {
                    let _ = host.act(who, action.clone(), 2, [3; 32]);
                }
                let _ = host.checkpoint();
            }
        }
        _ => {}
    }
});
