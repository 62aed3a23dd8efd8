//! The cards kind as a state machine, with fixed seeds.

use parlor_core::{GlobalRole, RoomRole, UserId};
use parlor_games::{verify, Effect, Player, Registry};
use parlor_protocol::{
    v1::{self, cards_action, cards_update, game_action, game_update},
    ErrorCode,
};

fn player(id: &str, role: RoomRole) -> Player {
    Player {
        user_id: UserId(id.into()),
        name: id.into(),
        role,
        global: GlobalRole::User,
    }
}

fn act(a: cards_action::Action) -> game_action::Action {
    game_action::Action::Cards(v1::CardsAction { action: Some(a) })
}

fn flip(i: u32) -> game_action::Action {
    act(cards_action::Action::Flip(v1::Flip { index: i }))
}

fn update(fx: &[Effect]) -> cards_update::Update {
    for e in fx {
        if let Effect::Broadcast(game_update::Update::Cards(v1::CardsUpdate { update: Some(u) })) =
            e
        {
            return u.clone();
        }
    }
    panic!("no cards update in {fx:?}")
}

fn faces(h: &parlor_games::Host, p: &Player) -> Vec<String> {
    match h.view_for(p, "r").view {
        Some(v1::game_view::View::Cards(c)) => c.cards.into_iter().map(|c| c.face).collect(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_round_robin_round_flips_in_turn_and_hides_every_face_down_card() {
    let reg = Registry::builtin();
    let config = v1::GameConfig {
        config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
            faces: vec![],
            turn_order: v1::TurnOrder::RoundRobin as i32,
            ..Default::default()
        })),
    };
    let mut h = reg.create("cards", Some(config), [8; 32]).unwrap().unwrap();
    let (m, a, b, w) = (
        player("m", RoomRole::Owner),
        player("a", RoomRole::Player),
        player("b", RoomRole::Player),
        player("w", RoomRole::Watcher),
    );
    for p in [&m, &a, &b, &w] {
        h.joined(p, 0);
    }
    // No round yet; only the master starts one.
    assert_eq!(
        h.act(&a, flip(0), 0, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    let start = act(cards_action::Action::StartRound(v1::StartRound {}));
    assert_eq!(
        h.act(&a, start.clone(), 0, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    let fx = h.act(&m, start.clone(), 0, [0; 32]).unwrap();
    let cards_update::Update::RoundStarted(rs) = update(&fx) else {
        panic!()
    };
    assert_eq!((rs.round, rs.cards, rs.turn_user_id.as_str()), (1, 52, "a"));
    assert!(fx.contains(&Effect::Status("round 1".into())));
    // The round started frame carries no face, and neither does any view.
    assert!(!format!("{fx:?}").contains("face"));
    for p in [&m, &a, &b, &w] {
        assert!(faces(&h, p).iter().all(String::is_empty));
    }
    // Turns: a, then b; out of turn is refused; the master flips any time.
    assert_eq!(
        h.act(&b, flip(0), 1, [0; 32]).unwrap_err().code,
        ErrorCode::NotYourTurn
    );
    let cards_update::Update::Flipped(f) = update(&h.act(&a, flip(5), 1, [0; 32]).unwrap()) else {
        panic!()
    };
    assert_eq!((f.index, f.turn_user_id.as_str()), (5, "b"));
    assert_eq!(
        h.act(&b, flip(5), 2, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    assert_eq!(
        h.act(&b, flip(52), 2, [0; 32]).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        h.act(&w, flip(1), 2, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    h.act(&m, flip(7), 2, [0; 32]).unwrap();
    h.act(&b, flip(9), 3, [0; 32]).unwrap();
    let shown = faces(&h, &w);
    assert_eq!(shown.iter().filter(|f| !f.is_empty()).count(), 3);
    assert_eq!(shown[5], f.face);

    // The seed would show the face-down cards: it stays secret until the table is up.
    let reveal = game_action::Action::RevealSeed(v1::RevealSeed {});
    assert_eq!(
        h.act(&m, reveal.clone(), 4, [1; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    assert!(!h.revealable());
    let cards_update::Update::AllRevealed(all) = update(
        &h.act(
            &m,
            act(cards_action::Action::RevealAll(v1::RevealAll {})),
            5,
            [0; 32],
        )
        .unwrap(),
    ) else {
        panic!()
    };
    // Now the shuffle replays from the seed.
    let fx = h.act(&m, reveal, 5, [1; 32]).unwrap();
    let [Effect::Broadcast(game_update::Update::SeedRevealed(rev))] = &fx[..] else {
        panic!()
    };
    let seed = verify::seed(rev).unwrap();
    let layout = verify::shuffle(&seed, rs.nonce, &parlor_games::cards::standard_deck());
    assert_eq!(layout[5], f.face);
    assert_eq!(all.faces, layout);
    let cards_update::Update::RoundStarted(r2) = update(&h.act(&m, start, 6, [0; 32]).unwrap())
    else {
        panic!()
    };
    assert_eq!(r2.round, 2);
    assert!(faces(&h, &a).iter().all(String::is_empty));
    match h.view_for(&a, "r").view {
        Some(v1::game_view::View::Cards(c)) => assert_eq!(c.history.len(), 3, "last round's flips"),
        _ => panic!(),
    }
}

#[test]
fn a_custom_deck_is_validated_and_changes_only_between_rounds() {
    let reg = Registry::builtin();
    let m = player("m", RoomRole::Owner);
    let mut h = reg.create("cards", None, [9; 32]).unwrap().unwrap();
    h.joined(&m, 0);
    let set = |faces: Vec<String>| act(cards_action::Action::SetDeck(v1::SetDeck { faces }));
    assert_eq!(
        h.act(&m, set(vec![String::new()]), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    assert_eq!(
        h.act(&m, set(vec!["x".into(); 521]), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::InvalidArgument
    );
    h.act(
        &m,
        set(vec!["sun".into(), "moon".into(), "star".into()]),
        0,
        [0; 32],
    )
    .unwrap();
    h.act(
        &m,
        act(cards_action::Action::StartRound(v1::StartRound {})),
        0,
        [0; 32],
    )
    .unwrap();
    assert_eq!(
        h.act(&m, set(vec!["a".into()]), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::IllegalMove
    );
    assert_eq!(faces(&h, &m).len(), 3);
    // A config for another kind, and a config for a relay kind, are refused.
    let dice_cfg = v1::GameConfig {
        config: Some(v1::game_config::Config::Dice(v1::DiceConfig::default())),
    };
    assert_eq!(
        reg.create("cards", Some(dice_cfg.clone()), [0; 32])
            .err()
            .unwrap()
            .code,
        ErrorCode::WrongKind
    );
    assert_eq!(
        reg.create("piano", Some(dice_cfg), [0; 32])
            .err()
            .unwrap()
            .code,
        ErrorCode::WrongKind
    );
    assert!(reg.create("piano", None, [0; 32]).unwrap().is_none());
}

#[test]
fn a_tables_history_checks_against_its_revealed_seed() {
    let reg = Registry::builtin();
    let (m, a) = (player("m", RoomRole::Owner), player("a", RoomRole::Player));
    let mut h = reg.create("cards", None, [6; 32]).unwrap().unwrap();
    h.joined(&m, 0);
    h.joined(&a, 0);
    let mut log = Vec::new();
    fn keep_in(log: &mut Vec<game_update::Update>, fx: Vec<Effect>) {
        log.extend(fx.into_iter().filter_map(|e| match e {
            Effect::Broadcast(u) => Some(u),
            _ => None,
        }))
    }
    keep_in(
        &mut log,
        h.act(
            &m,
            act(cards_action::Action::StartRound(v1::StartRound {})),
            0,
            [0; 32],
        )
        .unwrap(),
    );
    keep_in(&mut log, h.act(&a, flip(4), 1, [0; 32]).unwrap());
    keep_in(&mut log, h.act(&a, flip(9), 2, [0; 32]).unwrap());
    keep_in(
        &mut log,
        h.act(
            &m,
            act(cards_action::Action::RevealAll(v1::RevealAll {})),
            3,
            [0; 32],
        )
        .unwrap(),
    );
    let deck = parlor_games::cards::standard_deck();
    let limits = parlor_games::dice::DiceLimits::default();
    // Before the reveal nothing can be checked; after it, every card.
    let early = verify::history(&log, &limits, &deck, None).unwrap();
    assert_eq!((early.seeds, early.cards, early.unrevealed), (0, 0, 1));
    keep_in(
        &mut log,
        h.act(
            &m,
            game_action::Action::RevealSeed(v1::RevealSeed {}),
            4,
            [1; 32],
        )
        .unwrap(),
    );
    let report = verify::history(&log, &limits, &deck, None).unwrap();
    assert_eq!(
        (report.seeds, report.cards, report.unrevealed),
        (1, 2 + 52, 0)
    );
    // A flip that showed another card, or another deck, fails.
    let mut forged = log.clone();
    if let game_update::Update::Cards(v1::CardsUpdate {
        update: Some(cards_update::Update::Flipped(f)),
    }) = &mut forged[1]
    {
        f.face = if f.face == "AS" {
            "KD".into()
        } else {
            "AS".into()
        };
    }
    assert_eq!(
        verify::history(&forged, &limits, &deck, None),
        Err(verify::Mismatch::Card(1, 4))
    );
    let mut other = deck.clone();
    other.swap(0, 1);
    assert!(verify::history(&log, &limits, &other, None).is_err());
}

fn timed(ms: u32) -> v1::GameConfig {
    v1::GameConfig {
        config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
            faces: vec![],
            turn_order: v1::TurnOrder::RoundRobin as i32,
            turn_timeout_ms: ms,
        })),
    }
}

#[test]
fn a_turn_timer_passes_the_turn_and_survives_a_checkpoint() {
    let reg = Registry::builtin();
    let (m, a, b) = (
        player("m", RoomRole::Owner),
        player("a", RoomRole::Player),
        player("b", RoomRole::Player),
    );
    let mut h = reg
        .create("cards", Some(timed(1000)), [5; 32])
        .unwrap()
        .unwrap();
    for p in [&m, &a, &b] {
        h.joined(p, 0);
    }
    let start = act(cards_action::Action::StartRound(v1::StartRound {}));
    let fx = h.act(&m, start, 0, [0; 32]).unwrap();
    assert!(fx.contains(&Effect::Armed("turn".into(), 1000)), "{fx:?}");
    // a lets the time pass: the turn goes to b, with a fresh clock.
    let fx = h.fire("turn", 1000, 1003);
    let cards_update::Update::TurnPassed(t) = update(&fx) else {
        panic!("{fx:?}")
    };
    assert_eq!(
        (t.skipped_user_id.as_str(), t.turn_user_id.as_str()),
        ("a", "b")
    );
    assert!(fx.contains(&Effect::Armed("turn".into(), 2003)));
    // A timer that fires for a deadline it no longer has does nothing.
    assert!(h.fire("turn", 1000, 1100).is_empty());
    // A refused flip leaves the clock alone; b's flip restarts it for a.
    assert_eq!(
        h.act(&a, flip(0), 1500, [0; 32]).unwrap_err().code,
        ErrorCode::NotYourTurn
    );
    assert_eq!(h.timers().collect::<Vec<_>>(), [("turn", 2003)]);
    let fx = h.act(&b, flip(0), 1500, [0; 32]).unwrap();
    assert!(fx.contains(&Effect::Armed("turn".into(), 2500)));
    assert!(h.fire("turn", 2003, 2003).is_empty());
    // The checkpoint holds the deadline; the restored table passes the turn the same way.
    let mut back = parlor_games::Host::restore(&reg, &h.checkpoint()).unwrap();
    assert_eq!(back.timers().collect::<Vec<_>>(), [("turn", 2500)]);
    assert_eq!(back.fire("turn", 2500, 2600), h.fire("turn", 2500, 2600));
    match back.view_for(&a, "r").view {
        Some(v1::game_view::View::Cards(c)) => {
            assert_eq!((c.turn_timeout_ms, c.turn_ends_at_ms), (1000, 3600));
        }
        other => panic!("{other:?}"),
    }
    // Revealing the table stops the clock.
    let fx = h
        .act(
            &m,
            act(cards_action::Action::RevealAll(v1::RevealAll {})),
            2700,
            [0; 32],
        )
        .unwrap();
    assert!(fx.contains(&Effect::Disarmed("turn".into())), "{fx:?}");
    assert_eq!(h.timers().count(), 0);
    // Bad timeouts.
    assert!(reg.create("cards", Some(timed(50)), [0; 32]).is_err());
    let free = v1::GameConfig {
        config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
            turn_timeout_ms: 1000,
            ..Default::default()
        })),
    };
    assert!(reg.create("cards", Some(free), [0; 32]).is_err());
}

#[test]
fn an_heir_who_becomes_master_leaves_the_turn_order() {
    let reg = Registry::builtin();
    let config = v1::GameConfig {
        config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
            turn_order: v1::TurnOrder::RoundRobin as i32,
            ..Default::default()
        })),
    };
    let mut h = reg.create("cards", Some(config), [4; 32]).unwrap().unwrap();
    let (m, a, b) = (
        player("m", RoomRole::Owner),
        player("a", RoomRole::Player),
        player("b", RoomRole::Player),
    );
    for p in [&m, &a, &b] {
        h.joined(p, 0);
    }
    h.act(
        &m,
        act(cards_action::Action::StartRound(v1::StartRound {})),
        0,
        [0; 32],
    )
    .unwrap();
    // The master leaves; a, on turn, inherits the room.
    h.left(&m.user_id, parlor_games::LeaveReason::Left, 1);
    let heir = Player {
        role: RoomRole::Owner,
        ..a.clone()
    };
    h.role_changed(&heir, 1);
    let cards_update::Update::Flipped(f) = update(&h.act(&b, flip(0), 2, [0; 32]).unwrap()) else {
        panic!()
    };
    assert_eq!(f.turn_user_id, "b", "b is the only player left");
    // The new master flips any time, without taking a turn.
    h.act(&heir, flip(1), 3, [0; 32]).unwrap();
    h.act(&b, flip(2), 4, [0; 32]).unwrap();
}
