//! Server-run games end to end: real pods, real clients, every frame decoded.

use std::collections::HashSet;

use parlor_client::{v1, Body, Connection, Frame};
use parlor_games::{dice::DiceLimits, verify};
use prost::Message;
use v1::{cards_action, cards_update, dice_action, dice_update, game_action, game_update};

use super::support::*;

fn roll(notation: &str, visibility: v1::RollVisibility) -> game_action::Action {
    game_action::Action::Dice(v1::DiceAction {
        action: Some(dice_action::Action::Roll(v1::Roll {
            notation: notation.into(),
            visibility: visibility as i32,
            label: String::new(),
        })),
    })
}

fn cards(a: cards_action::Action) -> game_action::Action {
    game_action::Action::Cards(v1::CardsAction { action: Some(a) })
}

fn flip(i: u32) -> game_action::Action {
    cards(cards_action::Action::Flip(v1::Flip { index: i }))
}

pub(crate) fn start_round() -> game_action::Action {
    cards(cards_action::Action::StartRound(v1::StartRound {}))
}

/// Reads until the GameView that follows a join.
async fn view(c: &mut Connection) -> v1::GameView {
    c.wait_for(T, |f| match &f.body {
        Body::GameView(v) => Some(v.clone()),
        _ => None,
    })
    .await
    .unwrap()
}

/// Every dice update `c` receives until one matches `stop`, with its seq.
async fn dice_until(
    c: &mut Connection,
    mut stop: impl FnMut(&dice_update::Update) -> bool,
) -> Vec<(u64, dice_update::Update)> {
    let mut out = Vec::new();
    loop {
        let f = c.next_frame(T).await.unwrap();
        if let Body::GameUpdate(v1::GameUpdate {
            update: Some(game_update::Update::Dice(v1::DiceUpdate { update: Some(u) })),
            ..
        }) = f.body
        {
            let done = stop(&u);
            out.push((f.seq, u));
            if done {
                return out;
            }
        }
    }
}

fn rolled(u: &dice_update::Update) -> Option<&v1::RollResult> {
    match u {
        dice_update::Update::Rolled(r) => Some(r),
        _ => None,
    }
}

#[tokio::test]
async fn a_dm_two_players_and_an_observer_roll_with_values_hidden_rolls_and_a_fair_seed() {
    let s = TestServer::start().await;
    let (mut dm, _) = s.guest("DM").await;
    let (mut p1, w1) = s.guest("Ann").await;
    let (mut p2, _) = s.guest("Bob").await;
    let (mut obs, _) = s.guest("Eve").await;
    let joined = dm.create_room(create("Campaign", "dice")).await.unwrap();
    let room = joined.room.unwrap().id;
    let committed = view(&mut dm).await.fairness.unwrap().seed_commitment;
    assert_eq!(committed.len(), 64);
    for c in [&mut p1, &mut p2] {
        c.join_room(join_id(&room)).await.unwrap();
        assert_eq!(view(c).await.fairness.unwrap().seed_commitment, committed);
    }
    let watcher = v1::JoinRoom {
        role: v1::RoomRole::Watcher as i32,
        ..join_id(&room)
    };
    assert_eq!(
        obs.join_room(watcher).await.unwrap().your_role,
        v1::RoomRole::Watcher as i32
    );
    view(&mut obs).await;
    let ann = w1.user.unwrap().id;

    // Ann sets her strength and rolls with it, publicly.
    let set = game_action::Action::Dice(v1::DiceAction {
        action: Some(dice_action::Action::SetVariables(v1::SetVariables {
            values: [("str".to_string(), 3)].into(),
        })),
    });
    p1.game_action(&room, set).await.unwrap();
    let ack = p1
        .game_action(&room, roll("2d20kh1+@str", v1::RollVisibility::Public))
        .await
        .unwrap();
    assert!(ack.seq > 0);
    // Bob rolls to the DM; the DM rolls hidden.
    p2.game_action(&room, roll("1d20+2", v1::RollVisibility::ToDm))
        .await
        .unwrap();
    dm.game_action(&room, roll("3d6!", v1::RollVisibility::Hidden))
        .await
        .unwrap();
    // The observer and players may not roll hidden or roll at all.
    refused(
        obs.game_action(&room, roll("1d6", v1::RollVisibility::Public))
            .await,
        v1::ErrorCode::Forbidden,
    );
    refused(
        p1.game_action(&room, roll("1d6", v1::RollVisibility::Hidden))
            .await,
        v1::ErrorCode::Forbidden,
    );
    refused(
        p1.game_action(&room, roll("2d6*3", v1::RollVisibility::Public))
            .await,
        v1::ErrorCode::InvalidArgument,
    );
    // What each saw, in order: three rolls after the values.
    let is_third = |u: &dice_update::Update| match u {
        dice_update::Update::HiddenRoll(h) => h.nonce == 2,
        dice_update::Update::Rolled(r) => r.nonce == 2,
        _ => false,
    };
    let seen_obs = dice_until(&mut obs, is_third).await;
    let seen_dm = dice_until(&mut dm, |u| rolled(u).is_some_and(|r| r.nonce == 2)).await;
    let seen_p1 = dice_until(&mut p1, is_third).await;
    let seen_p2 = dice_until(&mut p2, is_third).await;
    let shown = |seen: &[(u64, dice_update::Update)]| -> Vec<u64> {
        seen.iter()
            .filter_map(|(_, u)| rolled(u).map(|r| r.nonce))
            .collect()
    };
    assert_eq!(
        shown(&seen_obs),
        [0],
        "the observer sees the public roll only"
    );
    assert_eq!(shown(&seen_p1), [0]);
    assert_eq!(shown(&seen_p2), [0, 1], "Bob sees his own roll to the DM");
    assert_eq!(shown(&seen_dm), [0, 1, 2]);
    // Hidden detail is never a room event; the room's events are the same for everyone.
    let events = |seen: &[(u64, dice_update::Update)]| -> Vec<u64> {
        seen.iter().map(|(s, _)| *s).filter(|s| *s > 0).collect()
    };
    assert!(seen_dm
        .iter()
        .all(|(s, u)| (*s == 0) == (rolled(u).is_some_and(|r| r.visibility != 1))));
    assert_eq!(events(&seen_obs), events(&seen_p1));
    let first = seen_obs.iter().find_map(|(_, u)| rolled(u)).unwrap();
    assert_eq!(first.roller_id, ann);
    assert!(matches!(
        first.terms.get(1).and_then(|t| t.term.clone()),
        Some(v1::roll_term::Term::Variable(v)) if v.name == "str" && v.value == 3
    ));

    // A late joiner's view holds the history as they may see it.
    let (mut late, _) = s.guest("Late").await;
    late.join_room(join_id(&room)).await.unwrap();
    let Some(v1::game_view::View::Dice(d)) = view(&mut late).await.view else {
        panic!("a dice view")
    };
    let kinds: Vec<bool> = d
        .history
        .iter()
        .map(|u| matches!(u.update, Some(dice_update::Update::Rolled(_))))
        .collect();
    assert_eq!(kinds, [true, false, false]);

    // The DM reveals the seed: every roll the DM saw replays from it.
    let ack = dm
        .game_action(&room, game_action::Action::RevealSeed(v1::RevealSeed {}))
        .await
        .unwrap();
    let revealed = obs
        .wait_for(T, |f| match &f.body {
            Body::GameUpdate(v1::GameUpdate {
                update: Some(game_update::Update::SeedRevealed(r)),
                ..
            }) => Some((f.seq, r.clone())),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(revealed.0, ack.seq);
    let rev = revealed.1;
    assert_eq!(rev.seed_commitment, committed);
    let rolls: Vec<v1::RollResult> = seen_dm
        .iter()
        .filter_map(|(_, u)| rolled(u).cloned())
        .collect();
    assert_eq!(verify::rolls(&rev, &rolls, &DiceLimits::default()), Ok(3));
    let mut forged = rolls.clone();
    forged[1].total += 1;
    assert!(verify::rolls(&rev, &forged, &DiceLimits::default()).is_err());

    // Relay events have no place in a server-run room.
    let ev = p1.game_event(&room, "roll", vec![1u8]).await.unwrap();
    let (rid, e) = next_error(&mut p1).await;
    assert_eq!((rid, code(&e)), (ev, v1::ErrorCode::WrongKind));
}

/// Every face string in a frame, as encoded on the wire.
fn carries(f: &Frame, face: &str) -> bool {
    let bytes = v1::Envelope {
        request_id: f.request_id,
        seq: f.seq,
        body: Some(f.body.clone()),
    }
    .encode_to_vec();
    bytes.windows(face.len()).any(|w| w == face.as_bytes())
}

fn cards_update(f: &Frame) -> Option<&cards_update::Update> {
    match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            update: Some(game_update::Update::Cards(v1::CardsUpdate { update: Some(u) })),
            ..
        }) => Some(u),
        _ => None,
    }
}

/// Checks that no frame carried a face before a frame turned it up in that round: a
/// view's cards and history by their rounds, every other frame as raw bytes.
pub(crate) fn no_face_before_its_flip(frames: &[Frame], deck: &[String], who: &str) {
    let mut up: std::collections::HashMap<u32, HashSet<String>> = Default::default();
    let mut round = 0;
    for (i, f) in frames.iter().enumerate() {
        match cards_update(f) {
            Some(cards_update::Update::RoundStarted(r)) => round = r.round,
            Some(cards_update::Update::Flipped(c)) => {
                up.entry(c.round).or_default().insert(c.face.clone());
            }
            Some(cards_update::Update::AllRevealed(a)) => {
                up.entry(a.round).or_default().extend(a.faces.clone());
            }
            _ => {}
        }
        let seen = |r: u32, face: &str| up.get(&r).is_some_and(|s| s.contains(face));
        if let Body::GameView(v1::GameView {
            view: Some(v1::game_view::View::Cards(cv)),
            ..
        }) = &f.body
        {
            round = cv.round;
            for c in &cv.cards {
                let shown = !c.face.is_empty();
                assert_eq!(shown, !c.flipped_by.is_empty(), "{who}'s frame {i}: {c:?}");
                assert!(
                    !shown || seen(cv.round, &c.face),
                    "{who}'s frame {i}: {c:?}"
                );
            }
            for h in &cv.history {
                assert!(seen(h.round, &h.face), "{who}'s frame {i}: {h:?}");
            }
            continue;
        }
        for face in deck {
            assert!(
                !carries(f, face) || seen(round, face),
                "{who}'s frame {i} carries face-down card {face}: {f:?}"
            );
        }
    }
}

/// A deck whose faces cannot turn up in a frame by chance.
pub(crate) fn secret_deck(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("face-{i:02}-of-the-deck")).collect()
}

/// Reads frames until `pick` matches one, keeping every frame in `log`.
async fn logged<T>(
    c: &mut Connection,
    log: &mut Vec<Frame>,
    mut pick: impl FnMut(&Frame) -> Option<T>,
) -> T {
    loop {
        let f = c.next_frame(T).await.unwrap();
        let got = pick(&f);
        log.push(f);
        if let Some(v) = got {
            return v;
        }
    }
}

fn flipped(f: &Frame) -> Option<v1::CardFlipped> {
    match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            update:
                Some(game_update::Update::Cards(v1::CardsUpdate {
                    update: Some(cards_update::Update::Flipped(c)),
                })),
            ..
        }) => Some(c.clone()),
        _ => None,
    }
}

#[tokio::test]
async fn a_master_three_players_and_a_watcher_play_two_rounds_and_nobody_sees_a_face_down_card() {
    let s = TestServer::start().await;
    let deck = secret_deck(12);
    let (mut m, _) = s.guest("Master").await;
    let req = v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
                faces: deck.clone(),
                turn_order: v1::TurnOrder::RoundRobin as i32,
                ..Default::default()
            })),
        }),
        ..create("Table", "cards")
    };
    let room = m.create_room(req).await.unwrap().room.unwrap().id;
    let mut logs: Vec<Vec<Frame>> = vec![Vec::new(); 4];
    let mut players = Vec::new();
    for name in ["A", "B", "C"] {
        let (c, w) = s.guest(name).await;
        players.push((c, w.user.unwrap().id));
    }
    for (c, _) in &mut players {
        c.join_room(join_id(&room)).await.unwrap();
    }
    let (mut w, _) = s.guest("Watcher").await;
    w.join_room(v1::JoinRoom {
        role: v1::RoomRole::Watcher as i32,
        ..join_id(&room)
    })
    .await
    .unwrap();
    // A visitor (no account) may watch too, and may not play.
    let (mut visitor, _) = s.connect(None).await;
    let vj = visitor
        .join_room(v1::JoinRoom {
            role: v1::RoomRole::Watcher as i32,
            ..join_id(&room)
        })
        .await
        .unwrap();
    assert_eq!(vj.your_role, v1::RoomRole::Watcher as i32);
    refused(
        visitor.game_action(&room, flip(0)).await,
        v1::ErrorCode::Unauthenticated,
    );

    for round in 1..=2u32 {
        refused(
            players[0].0.game_action(&room, start_round()).await,
            v1::ErrorCode::Forbidden,
        );
        m.game_action(&room, start_round()).await.unwrap();
        // The listing follows the game's status (written to the directory behind the event).
        let want = format!("round {round}");
        let mut status = String::new();
        for _ in 0..40 {
            status = m.list_rooms("cards").await.unwrap().rooms[0].status.clone();
            if status == want {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status, want);
        // Each player flips in turn: A, B, C, A.
        for (turn, card) in [0usize, 1, 2, 0].into_iter().zip([3u32, 7, 11, 0]) {
            let other = (turn + 1) % 3;
            refused(
                players[other].0.game_action(&room, flip(card)).await,
                v1::ErrorCode::NotYourTurn,
            );
            players[turn]
                .0
                .game_action(&room, flip(card))
                .await
                .unwrap();
        }
        refused(
            players[1].0.game_action(&room, flip(3)).await,
            v1::ErrorCode::IllegalMove,
        );
        // The watcher saw the round's last flip, and whose turn is next.
        let mut wv = Vec::new();
        let f = logged(&mut w, &mut wv, |f| {
            flipped(f).filter(|c| c.index == 0 && c.round == round)
        })
        .await;
        assert_eq!(f.turn_user_id, players[1].1);
        logs[3].extend(wv);
        if round == 1 {
            // The master reveals the rest to end the first round.
            m.game_action(
                &room,
                cards(cards_action::Action::RevealAll(v1::RevealAll {})),
            )
            .await
            .unwrap();
        }
    }
    // The watcher comes back mid-round: its view goes into the frames checked below.
    w.leave_room(&room).await.unwrap();
    w.join_room(v1::JoinRoom {
        role: v1::RoomRole::Watcher as i32,
        ..join_id(&room)
    })
    .await
    .unwrap();
    logged(&mut w, &mut logs[3], |f| {
        matches!(f.body, Body::GameView(_)).then_some(())
    })
    .await;
    // A late watcher's view: round 2, four cards up.
    let (mut late, _) = s.guest("Late").await;
    late.join_room(v1::JoinRoom {
        role: v1::RoomRole::Watcher as i32,
        ..join_id(&room)
    })
    .await
    .unwrap();
    let Some(v1::game_view::View::Cards(cv)) = view(&mut late).await.view else {
        panic!()
    };
    assert_eq!(cv.round, 2);
    assert_eq!(cv.cards.iter().filter(|c| !c.face.is_empty()).count(), 4);
    assert_eq!(
        cv.history.len(),
        4 + 4,
        "this round's flips and the last round's"
    );

    // The seed stays secret while cards are down: it would show them.
    let reveal = game_action::Action::RevealSeed(v1::RevealSeed {});
    refused(
        m.game_action(&room, reveal.clone()).await,
        v1::ErrorCode::IllegalMove,
    );
    // Once the table is up, the seed replays both shuffles; every flip showed the
    // shuffled face.
    m.game_action(
        &room,
        cards(cards_action::Action::RevealAll(v1::RevealAll {})),
    )
    .await
    .unwrap();
    m.game_action(&room, reveal).await.unwrap();
    let rev = logged(&mut w, &mut logs[3], |f| match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            update: Some(game_update::Update::SeedRevealed(r)),
            ..
        }) => Some(r.clone()),
        _ => None,
    })
    .await;
    let seed = verify::seed(&rev).unwrap();
    let mut nonces = Vec::new();
    for f in &logs[3] {
        if let Body::GameUpdate(v1::GameUpdate {
            update:
                Some(game_update::Update::Cards(v1::CardsUpdate {
                    update: Some(cards_update::Update::RoundStarted(r)),
                })),
            ..
        }) = &f.body
        {
            nonces.push(r.nonce);
        }
        if let Some(c) = flipped(f) {
            let layout = verify::shuffle(&seed, nonces[c.round as usize - 1], &deck);
            assert_eq!(c.face, layout[c.index as usize]);
        }
    }
    assert_eq!(nonces.len(), 2);

    // Everything every player and the watcher got: no face before its flip.
    for (i, (c, _)) in players.iter_mut().enumerate() {
        while let Ok(f) = c.next_frame(std::time::Duration::from_millis(300)).await {
            logs[i].push(f);
        }
    }
    while let Ok(f) = w.next_frame(std::time::Duration::from_millis(300)).await {
        logs[3].push(f);
    }
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.iter().any(|f| flipped(f).is_some()),
            "log {i} saw flips"
        );
        no_face_before_its_flip(log, &deck, &format!("member {i}"));
    }
}

#[tokio::test]
async fn kinds_refuse_what_is_not_theirs() {
    let s = TestServer::start().await;
    let (mut a, _) = s.guest("A").await;
    // A relay room takes no game config and no game actions.
    let bad = v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Dice(v1::DiceConfig::default())),
        }),
        ..create("Jam", "piano")
    };
    refused(a.create_room(bad).await, v1::ErrorCode::WrongKind);
    let bad = v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Dice(v1::DiceConfig {
                max_dice: 5000,
                ..Default::default()
            })),
        }),
        ..create("Huge", "dice")
    };
    refused(a.create_room(bad).await, v1::ErrorCode::InvalidArgument);
    let jam = a.create_room(create("Jam", "piano")).await.unwrap();
    let jam = jam.room.unwrap().id;
    refused(a.game_action(&jam, flip(0)).await, v1::ErrorCode::WrongKind);
    // A dice room takes no cards action.
    let dice = a.create_room(create("Dice", "dice")).await.unwrap();
    let dice = dice.room.unwrap().id;
    refused(
        a.game_action(&dice, flip(0)).await,
        v1::ErrorCode::WrongKind,
    );
    refused(
        a.game_action(
            &dice,
            cards(cards_action::Action::RevealAll(v1::RevealAll {})),
        )
        .await,
        v1::ErrorCode::WrongKind,
    );
    // Not a member.
    let (mut b, _) = s.guest("B").await;
    refused(
        b.game_action(&dice, roll("1d6", v1::RollVisibility::Public))
            .await,
        v1::ErrorCode::NotInRoom,
    );
}

/// The game lines of a room's export, as the store holds them, once it holds `n`.
async fn exported_games(s: &TestServer, room: &str, bearer: &str, n: usize) -> String {
    let url = format!("{}/api/v1/rooms/{room}/messages/export", s.http_url());
    for _ in 0..100 {
        let (status, body) = raw_http("GET", &url, Some(bearer)).await;
        assert_eq!(status, 200, "{body}");
        if body.lines().filter(|l| l.contains("\"game\"")).count() >= n {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the export never held {n} game lines");
}

/// Runs `parlor verify` on an export; its exit status and output.
fn parlor_verify(export: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.jsonl");
    std::fs::write(&path, export).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_parlor"))
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn a_campaigns_history_exports_its_public_rolls_and_parlor_verify_checks_them() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let s = TestServer::start().await;
    let (mut dm, _, tokens) = s.user("dungeonmaster").await;
    let (mut p, _) = s.guest("Ann").await;
    let req = v1::CreateRoom {
        persistent: true,
        ..create("Campaign", "dice")
    };
    let room = dm.create_room(req).await.unwrap().room.unwrap().id;
    p.join_room(join_id(&room)).await.unwrap();
    dm.chat(&room, "welcome, adventurers").await.unwrap();
    for n in ["2d20kh1+5", "4d6dl1", "3d6!r1"] {
        p.game_action(&room, roll(n, v1::RollVisibility::Public))
            .await
            .unwrap();
    }
    p.game_action(&room, roll("1d20", v1::RollVisibility::ToDm))
        .await
        .unwrap();
    dm.game_action(&room, game_action::Action::RevealSeed(v1::RevealSeed {}))
        .await
        .unwrap();
    // Three rolls, the hidden roll's notice and the reveal; the chat line beside them.
    let export = exported_games(&s, &room, &tokens.access_token, 5).await;
    assert!(export.contains("welcome, adventurers"));
    let updates: Vec<v1::GameUpdate> = export
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let g = b64.decode(v["game"].as_str()?).unwrap();
            Some(v1::GameUpdate::decode(g.as_slice()).unwrap())
        })
        .collect();
    // The roll to the DM is in the history only as the notice everyone got.
    let hidden = updates
        .iter()
        .filter(|u| {
            matches!(
                &u.update,
                Some(game_update::Update::Dice(v1::DiceUpdate {
                    update: Some(dice_update::Update::HiddenRoll(h))
                })) if h.nonce == 3
            )
        })
        .count();
    assert_eq!(hidden, 1);
    let (ok, out) = parlor_verify(&export);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 seeds match") && out.contains("3 rolls"),
        "{out}"
    );

    // One die changed in the export: the check fails and names the roll.
    let forged: Vec<String> = export
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let Some(g) = v["game"].as_str() else {
                return l.to_owned();
            };
            let mut u = v1::GameUpdate::decode(b64.decode(g).unwrap().as_slice()).unwrap();
            if let Some(game_update::Update::Dice(v1::DiceUpdate {
                update: Some(dice_update::Update::Rolled(r)),
            })) = &mut u.update
            {
                if r.nonce == 1 {
                    if let Some(v1::roll_term::Term::Dice(g)) = &mut r.terms[0].term {
                        g.dice[0].value = g.dice[0].value % 6 + 1;
                    }
                }
            }
            v["game"] = b64.encode(u.encode_to_vec()).into();
            v.to_string()
        })
        .collect();
    let (ok, out) = parlor_verify(&forged.join("\n"));
    assert!(!ok, "a forged die passed: {out}");
    assert!(out.contains("nonce 1"), "{out}");
}

#[tokio::test]
async fn when_the_last_member_leaves_the_room_reveals_its_seed_into_the_history() {
    let s = TestServer::start().await;
    let (mut dm, _, tokens) = s.user("keeper").await;
    let req = v1::CreateRoom {
        persistent: true,
        ..create("Solo", "dice")
    };
    let room = dm.create_room(req).await.unwrap().room.unwrap().id;
    let committed = view(&mut dm).await.fairness.unwrap().seed_commitment;
    dm.game_action(&room, roll("4d6dl1", v1::RollVisibility::Public))
        .await
        .unwrap();
    dm.leave_room(&room).await.unwrap();
    // The roll and the reveal are in the history, and the reveal answers the commitment.
    let export = exported_games(&s, &room, &tokens.access_token, 2).await;
    let (ok, out) = parlor_verify(&export);
    assert!(
        ok && out.contains("1 seeds match") && out.contains("1 rolls"),
        "{out}"
    );
    // Back in: the room is under a fresh commitment.
    dm.join_room(join_id(&room)).await.unwrap();
    let again = view(&mut dm).await.fairness.unwrap();
    assert_ne!(again.seed_commitment, committed);
    assert_eq!(again.next_nonce, 1);
}

#[tokio::test]
async fn cursor_moves_are_conflated_to_the_latest_and_never_rate_limited() {
    let s = TestServer::start().await;
    let (mut m, _) = s.guest("Master").await;
    let room = m.create_room(create("Cursors", "cards")).await.unwrap();
    let room = room.room.unwrap().id;
    let (mut p, wp) = s.guest("Mover").await;
    p.join_room(join_id(&room)).await.unwrap();
    let mover = wp.user.unwrap().id;
    // Four times the room's rate limit of 50 a second, in one burst.
    let moves = 200;
    for i in 1..=moves {
        p.send(Body::PresenceUpdate(v1::PresenceUpdate {
            room_id: room.clone(),
            cursor_x: Some(i as f32),
            cursor_y: Some(1.0),
            ..Default::default()
        }))
        .await
        .unwrap();
    }
    // The master sees the mover's cursor only go forward, ending at the last move.
    let mut seen = Vec::new();
    while seen.last() != Some(&(moves as f32)) {
        let f = m.next_frame(T).await.unwrap();
        if let Body::MemberUpdated(u) = &f.body {
            let member = u.member.as_ref().unwrap();
            if member.user_id == mover {
                seen.push(member.cursor_x);
            }
        }
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert!(
        seen.len() <= moves / 2,
        "{} events for {moves} moves",
        seen.len()
    );
    // Nothing was refused: the mover got no error at all.
    while let Ok(f) = p.next_frame(std::time::Duration::from_millis(200)).await {
        assert!(!matches!(f.body, Body::Error(_)), "{f:?}");
    }
}

#[tokio::test]
async fn a_persistent_table_restarts_on_one_pod_with_the_deck_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_config(cfg.clone()).await;
    let (mut m, _, tokens) = s.user("dealer").await;
    let deck = secret_deck(5);
    let req = v1::CreateRoom {
        persistent: true,
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
                faces: deck.clone(),
                turn_order: v1::TurnOrder::RoundRobin as i32,
                turn_timeout_ms: 5_000,
            })),
        }),
        ..create("Kept", "cards")
    };
    let room = m.create_room(req).await.unwrap().room.unwrap().id;
    m.close().await;
    s.stop().await;

    // One pod keeps no checkpoint over a restart: the game starts again, as configured.
    let s = TestServer::start_config(cfg).await;
    let (mut m, _) = s.connect(Some(&tokens.access_token)).await;
    m.join_room(join_id(&room)).await.unwrap();
    let Some(v1::game_view::View::Cards(c)) = view(&mut m).await.view else {
        panic!("a cards view")
    };
    assert_eq!(c.deck_size, 5);
    assert_eq!(c.turn_order, v1::TurnOrder::RoundRobin as i32);
    assert_eq!(c.turn_timeout_ms, 5_000);
}

/// A kind from outside the repo, on the opaque path: members add numbers for a while, then
/// the game ends on a timer and records who took part.
mod tally {
    use parlor_core::{CoreError, RoomRole, UserId};
    use parlor_games::{Ctx, Game, GameResult, Player};
    use parlor_protocol::{v1, ErrorCode};
    use serde::{Deserialize, Serialize};

    #[derive(Default, Serialize, Deserialize)]
    pub(super) struct Tally {
        total: i64,
        ms: u64,
        players: Vec<UserId>,
        ended: bool,
    }

    fn opaque(t: &str, n: i64) -> parlor_games::Update {
        v1::game_update::Update::Opaque(v1::OpaqueGame {
            r#type: t.into(),
            payload: n.to_be_bytes().to_vec().into(),
        })
    }

    pub(super) fn registry() -> parlor_games::Registry {
        let mut r = parlor_games::Registry::builtin();
        r.register(parlor_games::Kind {
            name: "tally",
            create: |c| match c {
                Some(v1::game_config::Config::Opaque(b)) if b.len() == 8 => {
                    let ms = u64::from_be_bytes(b[..].try_into().unwrap());
                    Ok(Box::new(Tally {
                        ms,
                        ..Tally::default()
                    }))
                }
                _ => Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "tally takes its length in ms",
                )),
            },
            restore: |b| {
                Ok(Box::new(
                    serde_json::from_slice::<Tally>(b).unwrap_or_default(),
                ))
            },
            rating: parlor_games::RatingSystem::Unrated,
        });
        r
    }

    impl Game for Tally {
        fn kind(&self) -> &'static str {
            "tally"
        }

        fn on_action(
            &mut self,
            from: &Player,
            action: v1::game_action::Action,
            ctx: &mut Ctx<'_>,
        ) -> Result<(), CoreError> {
            let v1::game_action::Action::Opaque(o) = action else {
                return Err(CoreError::new(ErrorCode::WrongKind, "tally is opaque"));
            };
            if self.ended {
                return Err(CoreError::new(ErrorCode::IllegalMove, "the tally is over"));
            }
            let n = i64::from_be_bytes(o.payload[..].try_into().map_err(|_| {
                CoreError::new(ErrorCode::InvalidArgument, "eight bytes, big-endian")
            })?);
            if self.players.is_empty() {
                ctx.schedule("end", self.ms);
            }
            if from.role != RoomRole::Watcher && !self.players.contains(&from.user_id) {
                self.players.push(from.user_id.clone());
            }
            self.total += n;
            ctx.broadcast(opaque("total", self.total));
            Ok(())
        }

        fn on_timer(&mut self, id: &str, ctx: &mut Ctx<'_>) {
            if id != "end" {
                return;
            }
            self.ended = true;
            ctx.broadcast(opaque("ended", self.total));
            ctx.set_status("over");
            ctx.finish(GameResult {
                players: self
                    .players
                    .iter()
                    .map(|u| parlor_games::Placed {
                        user: u.clone(),
                        place: 1,
                        score: self.total,
                        rated: false,
                    })
                    .collect(),
                rating: parlor_games::RatingSystem::Unrated,
            });
        }

        fn view_for(&self, _viewer: &Player) -> v1::game_view::View {
            v1::game_view::View::Opaque(self.total.to_be_bytes().to_vec().into())
        }

        fn checkpoint(&self) -> Vec<u8> {
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

#[tokio::test]
async fn a_kind_from_outside_the_repo_plays_on_the_opaque_path_and_its_finish_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = test_config(dir.path());
    let s = TestServer::start_with_games(cfg.clone(), tally::registry).await;
    let (mut a, wa) = s.guest("A").await;
    let (mut b, _) = s.guest("B").await;
    let req = v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Opaque(
                300u64.to_be_bytes().to_vec().into(),
            )),
        }),
        ..create("Tally", "tally")
    };
    let room = a.create_room(req).await.unwrap().room.unwrap().id;
    b.join_room(join_id(&room)).await.unwrap();
    let add = |n: i64| {
        game_action::Action::Opaque(v1::OpaqueGame {
            r#type: "add".into(),
            payload: n.to_be_bytes().to_vec().into(),
        })
    };
    a.game_action(&room, add(2)).await.unwrap();
    b.game_action(&room, add(5)).await.unwrap();
    // The timer the kind set ends the game through the server.
    let ended = b
        .wait_for(T, |f| match &f.body {
            Body::GameUpdate(v1::GameUpdate {
                update: Some(game_update::Update::Opaque(o)),
                ..
            }) if o.r#type == "ended" => {
                Some(i64::from_be_bytes(o.payload[..].try_into().unwrap()))
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(ended, 7);
    refused(
        a.game_action(&room, add(1)).await,
        v1::ErrorCode::IllegalMove,
    );
    // The listing follows (the directory is written behind the event).
    let mut status = String::new();
    for _ in 0..40 {
        status = a.list_rooms("tally").await.unwrap().rooms[0].status.clone();
        if status == "over" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, "over");
    a.close().await;
    b.close().await;
    s.stop().await;
    // The finish is in the match history, for each player.
    let settings = store_settings(StoreKind::Embedded, dir.path(), &cfg);
    let store = parlor_store::open(&settings, Default::default(), None)
        .await
        .unwrap();
    let me = parlor_core::UserId(wa.user.unwrap().id);
    let matches = store.ratings.matches_of(&me, None, 10).await.unwrap();
    assert_eq!(matches.len(), 1, "{matches:?}");
    assert_eq!(matches[0].kind, "tally");
    assert_eq!(matches[0].players.len(), 2);
    assert!(matches[0]
        .players
        .iter()
        .all(|p| p.place == 1 && p.score == 7));
}

fn trivia(a: v1::trivia_action::Action) -> game_action::Action {
    game_action::Action::Trivia(v1::TriviaAction { action: Some(a) })
}

/// Reads until a trivia update that `pick` takes.
async fn trivia_until<T>(
    c: &mut Connection,
    mut pick: impl FnMut(&v1::trivia_update::Update) -> Option<T>,
) -> T {
    c.wait_for(std::time::Duration::from_secs(20), |f| match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            update: Some(game_update::Update::Trivia(v1::TriviaUpdate { update: Some(u) })),
            ..
        }) => pick(u),
        _ => None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rated_trivia_game_plays_to_the_end_and_moves_registered_players_ratings() {
    use v1::{trivia_action as ta, trivia_update as tu};
    let s = TestServer::start().await;
    let (mut host, _, _) = s.user("quizmaster").await;
    let (mut a, wa, _) = s.user("alice").await;
    let (mut b, wb, _) = s.user("bruno").await;
    let (mut g, wg) = s.guest("Guest").await;
    let question = |text: &str, correct: u32| v1::TriviaQuestion {
        text: text.into(),
        answers: vec!["north".into(), "south".into(), "east".into()],
        correct,
        category: "geography".into(),
        difficulty: 2,
    };
    let req = v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
                questions: vec![question("first", 2), question("second", 0)],
                buzz_window_ms: 3_000,
                answer_ms: 3_000,
                reveal_ms: 200,
                auto_start_players: 0,
                rated: true,
                question_set_id: String::new(),
                players: Vec::new(),
            })),
        }),
        ..create("Quiz", "trivia")
    };
    let room = host.create_room(req).await.unwrap().room.unwrap().id;
    for c in [&mut a, &mut b, &mut g] {
        c.join_room(join_id(&room)).await.unwrap();
    }
    host.game_action(&room, trivia(ta::Action::Start(v1::StartTrivia {})))
        .await
        .unwrap();
    // Question one: alice buzzes first and is right.
    let asked = trivia_until(&mut a, |u| match u {
        tu::Update::Asked(q) => Some(q.clone()),
        _ => None,
    })
    .await;
    assert_eq!((asked.index, asked.text.as_str()), (0, "first"));
    a.game_action(&room, trivia(ta::Action::Buzz(v1::Buzz { question: 0 })))
        .await
        .unwrap();
    refused(
        b.game_action(
            &room,
            trivia(ta::Action::Answer(v1::AnswerTrivia {
                question: 0,
                choice: 2,
            })),
        )
        .await,
        v1::ErrorCode::NotYourTurn,
    );
    a.game_action(
        &room,
        trivia(ta::Action::Answer(v1::AnswerTrivia {
            question: 0,
            choice: 2,
        })),
    )
    .await
    .unwrap();
    // Question two: bruno is wrong, the guest is right.
    trivia_until(&mut b, |u| {
        matches!(u, tu::Update::Asked(q) if q.index == 1).then_some(())
    })
    .await;
    b.game_action(&room, trivia(ta::Action::Buzz(v1::Buzz { question: 1 })))
        .await
        .unwrap();
    g.game_action(&room, trivia(ta::Action::Buzz(v1::Buzz { question: 1 })))
        .await
        .unwrap();
    b.game_action(
        &room,
        trivia(ta::Action::Answer(v1::AnswerTrivia {
            question: 1,
            choice: 1,
        })),
    )
    .await
    .unwrap();
    let gid = wg.user.clone().unwrap().id;
    trivia_until(&mut g, |u| {
        matches!(u, tu::Update::Buzzed(z) if z.answering && z.user_id == gid).then_some(())
    })
    .await;
    g.game_action(
        &room,
        trivia(ta::Action::Answer(v1::AnswerTrivia {
            question: 1,
            choice: 0,
        })),
    )
    .await
    .unwrap();
    let over = trivia_until(&mut host, |u| match u {
        tu::Update::Over(o) => Some(o.clone()),
        _ => None,
    })
    .await;
    let (ida, idb, idg) = (
        wa.user.unwrap().id,
        wb.user.unwrap().id,
        wg.user.unwrap().id,
    );
    let places: Vec<(String, u32)> = over
        .standings
        .iter()
        .map(|s| (s.user_id.clone(), s.place))
        .collect();
    assert_eq!(places[2], (idb.clone(), 3), "{places:?}");
    let alice_place = places.iter().find(|p| p.0 == ida).map(|p| p.1).unwrap();
    assert!(places[..2].iter().any(|p| p.0 == ida) && places[..2].iter().any(|p| p.0 == idg));

    // The result and the rating changes were written together: alice up, bruno down, the
    // guest unrated.
    let rating = |id: String| {
        let rest = s.rest();
        async move {
            for _ in 0..50 {
                let stats = rest
                    .get_json(&format!("/api/v1/users/{id}/stats"), None)
                    .await;
                if let Ok(v) = &stats {
                    if !v["ratings"]["trivia"].is_null() {
                        return Some(v["ratings"]["trivia"].clone());
                    }
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            None
        }
    };
    let ra = rating(ida).await.expect("alice is rated");
    let rb = rating(idb).await.expect("bruno is rated");
    assert!(ra["rating"].as_f64().unwrap() > 25.0, "{ra}");
    assert!(rb["rating"].as_f64().unwrap() < 25.0, "{rb}");
    assert_eq!(
        (ra["games"].as_u64(), rb["games"].as_u64()),
        (Some(1), Some(1))
    );
    // First place is a win (alice's, unless the guest was faster); bruno's third, a loss.
    let (wins, losses) = (ra["wins"].as_u64().unwrap(), ra["losses"].as_u64().unwrap());
    assert_eq!(
        (wins, losses),
        if alice_place == 1 { (1, 0) } else { (0, 1) },
        "{ra}"
    );
    assert_eq!(
        (rb["wins"].as_u64(), rb["losses"].as_u64()),
        (Some(0), Some(1))
    );
    let guest = s
        .rest()
        .get_json(&format!("/api/v1/users/{idg}/stats"), None)
        .await;
    assert!(
        guest.map_or(true, |v| v["ratings"]["trivia"].is_null()),
        "guests play unrated"
    );
}

fn duel(a: v1::match_action::Action) -> game_action::Action {
    game_action::Action::Match(v1::MatchAction { action: Some(a) })
}

fn report(winner: &str) -> game_action::Action {
    duel(v1::match_action::Action::Report(v1::ReportResult {
        winner_user_id: winner.into(),
        draw: false,
    }))
}

/// Waits for the match in `room` to settle, as `c` sees it.
async fn settled(c: &mut Connection, room: &str) -> v1::MatchSettled {
    c.wait_for(T, |f| match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            update:
                Some(game_update::Update::Match(v1::MatchUpdate {
                    update: Some(v1::match_update::Update::Settled(s)),
                })),
            room_id,
        }) if room_id == room => Some(s.clone()),
        _ => None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_league_of_reported_matches_rates_agreed_and_decided_results() {
    league(&[TestServer::start().await]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_three_pods_a_league_of_reported_matches_rates_agreed_and_decided_results() {
    league(&super::cluster::Cluster::start(3).await.pods).await;
}

/// Two matches between two players, each on its own pod when there are several: one
/// agreed, one disputed and decided by a moderator; then the league table.
async fn league(pods: &[TestServer]) {
    let on = |i: usize| &pods[i % pods.len()];
    let s = on(0);
    let (mut a, wa, _) = on(0).user("ana").await;
    let (mut b, wb, _) = on(1).user("ben").await;
    let (mut root, _, _) = on(2).user("root").await;
    let (ida, idb) = (wa.user.unwrap().id, wb.user.unwrap().id);

    // Match one, by invitation: both report that ana won.
    let first = a.create_room(create("League 1", "match")).await.unwrap();
    let code = first.room.unwrap().code;
    let joined = b
        .join_room(v1::JoinRoom {
            code: code.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let room = joined.room.unwrap().id;
    // A third who asks to play is seated as a watcher.
    let (mut c, _) = on(3).guest("Cleo").await;
    let cj = c
        .join_room(v1::JoinRoom {
            code,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(cj.your_role, v1::RoomRole::Watcher as i32);
    refused(
        c.game_action(&room, report(&ida)).await,
        v1::ErrorCode::Forbidden,
    );
    a.game_action(&room, report(&ida)).await.unwrap();
    b.game_action(&room, report(&ida)).await.unwrap();
    let s1 = settled(&mut c, &room).await;
    assert_eq!(
        (s1.winner_user_id.as_str(), s1.how),
        (ida.as_str(), v1::match_settled::How::Agreed as i32)
    );

    // Match two: they disagree, and a moderator, watching, decides for ben.
    let second = a.create_room(create("League 2", "match")).await.unwrap();
    let room2 = second.room.unwrap().id;
    b.join_room(join_id(&room2)).await.unwrap();
    root.join_room(v1::JoinRoom {
        role: v1::RoomRole::Watcher as i32,
        ..join_id(&room2)
    })
    .await
    .unwrap();
    a.game_action(&room2, report(&ida)).await.unwrap();
    b.game_action(&room2, report(&idb)).await.unwrap();
    refused(
        a.game_action(&room2, report(&ida)).await,
        v1::ErrorCode::IllegalMove,
    );
    let decide = duel(v1::match_action::Action::Decide(v1::DecideResult {
        winner_user_id: idb.clone(),
        draw: false,
    }));
    refused(
        a.game_action(&room2, decide.clone()).await,
        v1::ErrorCode::Forbidden,
    );
    root.game_action(&room2, decide).await.unwrap();
    let s2 = settled(&mut b, &room2).await;
    assert_eq!(s2.how, v1::match_settled::How::Decided as i32);

    // The league table: one win and one loss each, Elo from 1000.
    let mut rows = serde_json::Value::Null;
    for _ in 0..50 {
        rows = s
            .rest()
            .get_json("/api/v1/leaderboards/match?limit=10", None)
            .await
            .unwrap();
        let done = rows["players"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|r| r["games"] == 2));
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let players = rows["players"].as_array().expect("a leaderboard");
    assert_eq!(players.len(), 2, "{rows}");
    for r in players {
        assert_eq!(
            (
                r["games"].as_u64(),
                r["wins"].as_u64(),
                r["losses"].as_u64()
            ),
            (Some(2), Some(1), Some(1)),
            "{r}"
        );
    }
    // Ana won at 1000 against 1000 (+16), then lost at 1016 against 984 (about -17.5).
    let of = |id: &str| {
        players.iter().find(|r| r["user_id"] == id).unwrap()["rating"]
            .as_f64()
            .unwrap()
    };
    assert!(of(&idb) > of(&ida), "{rows}");
    assert!(
        (of(&ida) + of(&idb) - 2000.0).abs() < 1e-6,
        "Elo moves points, it does not make them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_matches_of_one_player_ending_at_once_on_two_pods_both_count() {
    let cluster = super::cluster::Cluster::start(2).await;
    let (p0, p1) = (&cluster.pods[0], &cluster.pods[1]);
    let (mut x0, wx, tok) = p0.user("xena").await;
    let (mut x1, _) = p1.connect(Some(&tok.access_token)).await;
    let (mut y, _, _) = p0.user("yuri").await;
    let (mut z, _, _) = p1.user("zoe").await;
    let idx = wx.user.unwrap().id;
    // One room homed on each pod; xena plays in both.
    let mut rooms = Vec::new();
    for (x, o) in [(&mut x0, &mut y), (&mut x1, &mut z)] {
        let made = x.create_room(create("duel", "match")).await.unwrap();
        let code = made.room.unwrap().code;
        let j = o
            .join_room(v1::JoinRoom {
                code,
                ..Default::default()
            })
            .await
            .unwrap();
        let room = j.room.unwrap().id;
        x.game_action(&room, report(&idx)).await.unwrap();
        rooms.push(room);
    }
    // The two deciding reports at once: both games are rated from 1000 at the same time.
    let (ry, rz) = tokio::join!(
        y.game_action(&rooms[0], report(&idx)),
        z.game_action(&rooms[1], report(&idx))
    );
    ry.unwrap();
    rz.unwrap();
    let mut r = serde_json::Value::Null;
    for _ in 0..100 {
        let stats = p0
            .rest()
            .get_json(&format!("/api/v1/users/{idx}/stats"), None)
            .await
            .unwrap();
        r = stats["ratings"]["match"].clone();
        if r["games"].as_u64() == Some(2) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (r["games"].as_u64(), r["wins"].as_u64()),
        (Some(2), Some(2)),
        "{r}"
    );
    // Two wins over players at 1000, one after the other: 1016, then 1031.3.
    let value = r["rating"].as_f64().unwrap();
    assert!((value - 1031.26).abs() < 0.1, "{r}");
}

#[tokio::test]
async fn moderators_upload_question_sets_and_a_host_plays_one() {
    use parlor_client::ClientError;
    let s = TestServer::start().await;
    let (_, _, admin) = s.user("root").await;
    let (mut host, _, player_tokens) = s.user("host").await;
    let set = serde_json::json!({
        "name": "Capitals",
        "questions": [
            {"text": "Capital of Peru?", "answers": ["Lima", "Quito"], "correct": 0, "category": "geo", "difficulty": 2},
            {"text": "Capital of Kenya?", "answers": ["Mombasa", "Nairobi"], "correct": 1}
        ]
    });
    let rest = s.rest();
    // Players may neither upload nor read sets: they hold the answers.
    assert!(matches!(
        rest.post_json(
            "/api/v1/question-sets",
            &set,
            Some(&player_tokens.access_token)
        )
        .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    // A bad question is refused and named.
    let mut bad = set.clone();
    bad["questions"][1]["correct"] = 5.into();
    match rest
        .post_json("/api/v1/question-sets", &bad, Some(&admin.access_token))
        .await
    {
        Err(ClientError::Http {
            status: 400,
            message,
            ..
        }) => assert!(message.contains("question 1"), "{message}"),
        other => panic!("{other:?}"),
    }
    // Staff only unless public: a host who plays a set learns its answers.
    let staff_only = rest
        .post_json("/api/v1/question-sets", &set, Some(&admin.access_token))
        .await
        .unwrap();
    assert_eq!(staff_only["public"], false);
    let mut public = set.clone();
    public["public"] = true.into();
    let made = rest
        .post_json("/api/v1/question-sets", &public, Some(&admin.access_token))
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["questions"], 2);
    let list = rest
        .get_json("/api/v1/question-sets", Some(&admin.access_token))
        .await
        .unwrap();
    assert_eq!(list["sets"][0]["id"], id.as_str());
    assert!(matches!(
        rest.get_json(
            &format!("/api/v1/question-sets/{id}"),
            Some(&player_tokens.access_token)
        )
        .await,
        Err(ClientError::Http { status: 403, .. })
    ));

    // A host plays it by id; an unknown id is refused.
    let with = |set: &str| v1::CreateRoom {
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
                question_set_id: set.into(),
                ..Default::default()
            })),
        }),
        ..create("Capitals", "trivia")
    };
    refused(
        host.create_room(with("no-such-set")).await,
        v1::ErrorCode::NotFound,
    );
    let staff_id = staff_only["id"].as_str().unwrap();
    refused(
        host.create_room(with(staff_id)).await,
        v1::ErrorCode::Forbidden,
    );
    let (mut root, _) = s.connect(Some(&admin.access_token)).await;
    root.create_room(with(staff_id)).await.unwrap();
    let room = host.create_room(with(&id)).await.unwrap().room.unwrap().id;
    let Some(v1::game_view::View::Trivia(v)) = view(&mut host).await.view else {
        panic!()
    };
    assert_eq!(v.questions, 2);
    let (mut p, _) = s.guest("Pat").await;
    p.join_room(join_id(&room)).await.unwrap();
    host.game_action(
        &room,
        trivia(v1::trivia_action::Action::Start(v1::StartTrivia {})),
    )
    .await
    .unwrap();
    let asked = trivia_until(&mut p, |u| match u {
        v1::trivia_update::Update::Asked(q) => Some(q.clone()),
        _ => None,
    })
    .await;
    assert_eq!(
        (asked.text.as_str(), asked.answers.len()),
        ("Capital of Peru?", 2)
    );
}

/// Queues `c` for `kind`; the Ack comes at once, `Matched` later.
async fn queue(c: &mut Connection, kind: &str) -> u64 {
    let f = c
        .request(
            Body::Matchmake(v1::Matchmake {
                kind: kind.into(),
                ..Default::default()
            }),
            T,
        )
        .await
        .unwrap();
    assert!(matches!(f.body, Body::Ack(_)), "{f:?}");
    f.request_id
}

async fn matched(c: &mut Connection) -> v1::Matched {
    c.wait_for(T, |f| match &f.body {
        Body::Matched(m) => Some(m.clone()),
        _ => None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_matchmaker_seats_every_queued_player_exactly_once() {
    let s = TestServer::start().await;
    let mut players = Vec::new();
    for i in 0..8 {
        let (c, w) = s.guest(&format!("P{i}")).await;
        players.push((c, w.user.unwrap().id));
    }
    for (c, _) in &mut players {
        queue(c, "match").await;
    }
    let mut rooms: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (c, id) in &mut players {
        let m = matched(c).await;
        assert!(m.players.contains(id) && m.players.len() == 2, "{m:?}");
        rooms.entry(m.room_id.clone()).or_default().push(id.clone());
        // The room seats the pair: each joins as a player.
        let j = c.join_room(join_id(&m.room_id)).await.unwrap();
        assert_ne!(j.your_role, v1::RoomRole::Watcher as i32);
    }
    assert_eq!(rooms.len(), 4);
    assert!(rooms.values().all(|p| p.len() == 2));
    // Three queue for a trivia arena of three: it starts once they are all in.
    let mut arena = Vec::new();
    for i in 0..3 {
        let (mut c, _) = s.guest(&format!("T{i}")).await;
        let f = c
            .request(
                Body::Matchmake(v1::Matchmake {
                    kind: "trivia".into(),
                    min_players: 3,
                    ..Default::default()
                }),
                T,
            )
            .await
            .unwrap();
        assert!(matches!(f.body, Body::Ack(_)));
        arena.push(c);
    }
    for c in &mut arena {
        let m = matched(c).await;
        c.join_room(join_id(&m.room_id)).await.unwrap();
    }
    // The last to join sees the game begun in its view; the first sees it start.
    let started = trivia_until(&mut arena[0], |u| match u {
        v1::trivia_update::Update::Started(st) => Some(st.players.len()),
        _ => None,
    })
    .await;
    assert_eq!(started, 3);
    let (mut v, _) = s.connect(None).await;
    let e = v
        .request(
            Body::Matchmake(v1::Matchmake {
                kind: "match".into(),
                ..Default::default()
            }),
            T,
        )
        .await;
    refused(e, v1::ErrorCode::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_players_on_three_pods_are_seated_in_twenty_matches_each_exactly_once() {
    let cluster = super::cluster::Cluster::start(3).await;
    let mut players = Vec::new();
    for i in 0..40 {
        let (c, w) = cluster.pods[i % 3].guest(&format!("P{i}")).await;
        players.push((c, w.user.unwrap().id));
    }
    for (c, _) in &mut players {
        queue(c, "match").await;
    }
    let mut rooms: std::collections::HashMap<String, Vec<String>> = Default::default();
    for (c, id) in &mut players {
        let m = matched(c).await;
        assert!(m.players.contains(id) && m.players.len() == 2, "{m:?}");
        rooms.entry(m.room_id.clone()).or_default().push(id.clone());
    }
    assert_eq!(rooms.len(), 20, "{rooms:?}");
    for (room, seated) in &rooms {
        assert_eq!(seated.len(), 2, "{room}: {seated:?}");
    }
    // Each is told once: nothing more comes within two ticks of the queue (a second
    // Matched would be waiting on the socket by then).
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    for (c, _) in &mut players {
        let again = c
            .wait_for(std::time::Duration::from_millis(20), |f| {
                matches!(f.body, Body::Matched(_)).then_some(())
            })
            .await;
        assert!(again.is_err(), "matched twice");
    }
    // The pairs really are seated, wherever the room's home is.
    for (c, id) in players.iter_mut().take(6) {
        let room = rooms.iter().find(|(_, p)| p.contains(id)).unwrap().0;
        let j = c.join_room(join_id(room)).await.unwrap();
        assert_ne!(j.your_role, v1::RoomRole::Watcher as i32, "seated to play");
    }
}

#[tokio::test]
async fn players_far_apart_wait_for_the_window_and_a_cancel_leaves_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = store_config(dir.path(), StoreKind::MongoDb);
    cfg.rooms.matchmaking_window = 100.0;
    cfg.rooms.matchmaking_widen_per_sec = 20.0;
    let s = TestServer::start_config(cfg.clone()).await;
    let mut conns = Vec::new();
    for name in ["A", "B", "C", "D", "E", "F", "G"] {
        let (c, w) = s.guest(name).await;
        conns.push((c, w.user.unwrap().id));
    }
    // Ratings straight into the store: B and D far above A, C near A.
    let store = parlor_store::open(
        &store_settings(StoreKind::MongoDb, dir.path(), &cfg),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let m = parlor_store::MatchRecord {
        id: format!("{:013}-seed", parlor_core::now_ms()),
        kind: "match".into(),
        room: None,
        at_ms: parlor_core::now_ms(),
        players: Vec::new(),
    };
    let rate = |i: usize, value: f64| parlor_store::Rating {
        user: parlor_core::UserId(conns[i].1.clone()),
        kind: "match".into(),
        value,
        games: 1,
        updated_at_ms: 1,
        uncertainty: 0.0,
        wins: 0,
        losses: 0,
    };
    store
        .ratings
        .record_match(&m, &[rate(1, 1400.0), rate(2, 1020.0), rate(3, 1450.0)])
        .await
        .unwrap();
    let ids: Vec<String> = conns.iter().map(|(_, id)| id.clone()).collect();
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    queue(&mut conns[0].0, "match").await;
    queue(&mut conns[1].0, "match").await;
    // C is within A's window, B is not (and will not be for 15 s): A goes with C.
    queue(&mut conns[2].0, "match").await;
    let got = matched(&mut conns[0].0).await;
    assert_eq!(
        got.players.iter().collect::<HashSet<_>>(),
        [a, c].into_iter().collect()
    );
    // D, near B, comes: B goes with D.
    queue(&mut conns[3].0, "match").await;
    let got = matched(&mut conns[1].0).await;
    assert_eq!(
        got.players.iter().collect::<HashSet<_>>(),
        [b, d].into_iter().collect()
    );
    // E queues and cancels; F and G, who come after, go together.
    queue(&mut conns[4].0, "match").await;
    let f = conns[4]
        .0
        .request(
            Body::Matchmake(v1::Matchmake {
                kind: "match".into(),
                cancel: true,
                ..Default::default()
            }),
            T,
        )
        .await
        .unwrap();
    assert!(matches!(f.body, Body::Ack(_)));
    queue(&mut conns[5].0, "match").await;
    queue(&mut conns[6].0, "match").await;
    let got = matched(&mut conns[6].0).await;
    assert_eq!(
        got.players.iter().collect::<HashSet<_>>(),
        [&ids[5], &ids[6]].into_iter().collect()
    );
}

#[tokio::test]
async fn seven_players_play_a_knock_out_bracket_to_its_champion() {
    bracket_of_seven(&[TestServer::start().await]).await;
}

#[tokio::test]
async fn a_pairing_left_without_a_room_opens_again_when_the_organizer_starts_again() {
    use parlor_client::ClientError;
    let dir = tempfile::tempdir().unwrap();
    let cfg = store_config(dir.path(), StoreKind::MongoDb);
    let s = TestServer::start_config(cfg.clone()).await;
    let rest = s.rest();
    let (_, _, org) = s.user("organizer").await;
    let t = rest
        .post_json(
            "/api/v1/tournaments",
            &serde_json::json!({"name": "Duel", "max_players": 2}),
            Some(&org.access_token),
        )
        .await
        .unwrap();
    let tid = t["id"].as_str().unwrap().to_owned();
    let path = |what: &str| format!("/api/v1/tournaments/{tid}{what}");
    let mut players = Vec::new();
    for name in ["ann", "bob"] {
        let (c, w, tok) = s.user(name).await;
        rest.post_json(
            &path("/register"),
            &serde_json::json!({}),
            Some(&tok.access_token),
        )
        .await
        .unwrap();
        players.push((c, w.user.unwrap().id, tok));
    }
    let (start_path, empty) = (path("/start"), serde_json::json!({}));
    let start = || rest.post_json(&start_path, &empty, Some(&org.access_token));
    let started = start().await.unwrap();
    let first_room = started["rounds"][0]["pairings"][0]["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The pod that marked the pairing open died before making its room: the record holds
    // the mark, long ago, and no room.
    let store = parlor_store::open(
        &store_settings(StoreKind::MongoDb, dir.path(), &cfg),
        Default::default(),
        None,
    )
    .await
    .unwrap();
    let mut rec = store.tournaments.tournament(&tid).await.unwrap().unwrap();
    rec.rooms[0].2 = "opening:1".into();
    rec.version += 1;
    assert!(store.tournaments.save_tournament(&rec).await.unwrap());
    let t = rest.get_json(&path(""), None).await.unwrap();
    assert!(t["rounds"][0]["pairings"][0]["room_id"].is_null(), "{t}");
    // Only the organizer may start it again; doing so makes the room.
    assert!(matches!(
        rest.post_json(
            &path("/start"),
            &serde_json::json!({}),
            Some(&players[0].2.access_token)
        )
        .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    let again = start().await.unwrap();
    let room = again["rounds"][0]["pairings"][0]["room_id"]
        .as_str()
        .expect("a room")
        .to_owned();
    assert_ne!(room, first_room);
    assert_eq!(
        start().await.unwrap()["rounds"][0]["pairings"][0]["room_id"],
        room.as_str(),
        "a pairing with its room stays as it is"
    );
    let winner = players[0].1.clone();
    for (c, _, _) in &mut players {
        c.join_room(join_id(&room)).await.unwrap();
    }
    for (c, _, _) in &mut players {
        c.game_action(&room, report(&winner)).await.unwrap();
    }
    let mut t = serde_json::Value::Null;
    for _ in 0..100 {
        t = rest.get_json(&path(""), None).await.unwrap();
        if t["state"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        (t["state"].as_str(), t["champion"].as_str()),
        (Some("done"), Some(winner.as_str())),
        "{t}"
    );
    assert!(
        matches!(start().await, Err(ClientError::Http { status: 409, .. })),
        "over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_three_pods_and_a_redis_cluster_seven_players_play_a_bracket_to_its_champion() {
    bracket_of_seven(&super::cluster::Cluster::sharded(3, |_| {}).await.pods).await;
}

/// Seven registered players, spread over the pods, through a knock-out bracket.
async fn bracket_of_seven(pods: &[TestServer]) {
    use parlor_client::ClientError;
    let on = |i: usize| &pods[i % pods.len()];
    let s = on(0);
    let rest = s.rest();
    let (_, _, org) = s.user("organizer").await;
    // Made through another pod than the one that starts it: on three pods, the watchers'
    // room is homed apart from the match rooms, and announcements cross pods.
    let t = on(1)
        .rest()
        .post_json(
            "/api/v1/tournaments",
            &serde_json::json!({"name": "Cup", "max_players": 8}),
            Some(&org.access_token),
        )
        .await
        .unwrap();
    let tid = t["id"].as_str().unwrap().to_owned();
    let path = |what: &str| format!("/api/v1/tournaments/{tid}{what}");
    let mut players: std::collections::HashMap<String, Connection> = Default::default();
    for i in 0..7 {
        let (c, w, tok) = on(i + 1).user(&format!("player{i}")).await;
        rest.post_json(
            &path("/register"),
            &serde_json::json!({}),
            Some(&tok.access_token),
        )
        .await
        .unwrap();
        players.insert(w.user.unwrap().id, c);
    }
    // A guest may not register; a player may not start it.
    let guest = rest.guest("Guest").await.unwrap();
    assert!(matches!(
        rest.post_json(
            &path("/register"),
            &serde_json::json!({}),
            Some(&guest.access_token)
        )
        .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    let (_, _, other) = on(2).user("bystander").await;
    assert!(matches!(
        rest.post_json(
            &path("/start"),
            &serde_json::json!({}),
            Some(&other.access_token)
        )
        .await,
        Err(ClientError::Http { status: 403, .. })
    ));
    // A watcher in the tournament's room, on another pod than the one that starts it.
    let (mut watcher, _) = on(1).guest("Watcher").await;
    let watchers_room = t["room_id"].as_str().expect("a watchers' room").to_owned();
    watcher
        .join_room(v1::JoinRoom {
            role: v1::RoomRole::Watcher as i32,
            ..join_id(&watchers_room)
        })
        .await
        .unwrap();
    let started = rest
        .post_json(
            &path("/start"),
            &serde_json::json!({}),
            Some(&org.access_token),
        )
        .await
        .unwrap();
    assert_eq!(started["state"], "running");
    let rounds = started["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 3, "{started}");
    let byes = rounds[0]["pairings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["players"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("bye"))
        })
        .count();
    assert_eq!(byes, 1, "seven players: one bye");

    // Round by round, the first-listed player of each pairing wins, and both report it.
    let mut lost: HashSet<String> = HashSet::new();
    for round in 0..3 {
        let mut played = Vec::new();
        let mut t = serde_json::Value::Null;
        // The round's rooms open as the round before it settles.
        for _ in 0..100 {
            t = rest.get_json(&path(""), None).await.unwrap();
            let pairings = t["rounds"][round]["pairings"].as_array().unwrap().clone();
            let open = pairings
                .iter()
                .filter(|p| p["winner"].is_null())
                .all(|p| p["room_id"].is_string());
            if open {
                played = pairings;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(!played.is_empty(), "round {round} never opened: {t}");
        let mut seen = HashSet::new();
        for p in &played {
            for u in p["players"].as_array().unwrap() {
                if let Some(u) = u.as_str().filter(|u| *u != "bye") {
                    assert!(seen.insert(u.to_owned()), "{u} twice in round {round}");
                    assert!(!lost.contains(u), "{u} lost but plays on");
                }
            }
            if !p["winner"].is_null() {
                continue; // a bye
            }
            let room = p["room_id"].as_str().unwrap().to_owned();
            let (a, b) = (
                p["players"][0].as_str().unwrap().to_owned(),
                p["players"][1].as_str().unwrap().to_owned(),
            );
            for u in [&a, &b] {
                let c = players.get_mut(u).unwrap();
                let j = c.join_room(join_id(&room)).await.unwrap();
                assert_eq!(j.your_role, v1::RoomRole::Player as i32);
            }
            for u in [&a, &b] {
                players
                    .get_mut(u)
                    .unwrap()
                    .game_action(&room, report(&a))
                    .await
                    .unwrap();
            }
            lost.insert(b);
        }
    }
    // The champion is the one player who never lost.
    let mut t = serde_json::Value::Null;
    for _ in 0..100 {
        t = rest.get_json(&path(""), None).await.unwrap();
        if t["state"] == "done" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(t["state"], "done", "{t}");
    let champion = t["champion"].as_str().unwrap().to_owned();
    let unbeaten: Vec<&String> = players.keys().filter(|u| !lost.contains(*u)).collect();
    assert_eq!(unbeaten, [&champion]);
    // The watcher saw the start and each of the six results, in order, as room events.
    let mut news = Vec::new();
    while news.len() < 7 {
        let u = watcher
            .wait_for(T, |f| match &f.body {
                Body::GameUpdate(v1::GameUpdate {
                    update: Some(game_update::Update::Tournament(u)),
                    room_id,
                }) if *room_id == watchers_room && f.seq > 0 => Some(u.clone()),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(u.tournament_id, tid);
        news.push(u);
    }
    assert_eq!(
        (news[0].round, news[0].opened.len()),
        (0, 3),
        "{:?}",
        news[0]
    );
    let rounds: Vec<u32> = news[1..].iter().map(|u| u.round).collect();
    assert_eq!(rounds, [1, 1, 1, 2, 2, 3]);
    let last = news.last().unwrap();
    assert_eq!(
        (last.winner_user_id.as_str(), last.champion_user_id.as_str()),
        (champion.as_str(), champion.as_str())
    );
    let opened: usize = news.iter().map(|u| u.opened.len()).sum();
    assert_eq!(opened, 6, "every match room was announced once");
    // Ratings changed as reported: the champion won every match they played.
    let mut stats = serde_json::Value::Null;
    for _ in 0..100 {
        stats = rest
            .get_json(&format!("/api/v1/users/{champion}/stats"), None)
            .await
            .unwrap();
        if stats["ratings"]["match"]["games"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = &stats["ratings"]["match"];
    assert!(
        r["games"].as_u64().unwrap_or(0) >= 2 && r["losses"] == 0,
        "{stats}"
    );
    assert!(r["rating"].as_f64().unwrap() > 1000.0);
}
