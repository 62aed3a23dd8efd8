//! The match kind as a state machine.

use parlor_core::{GlobalRole, RoomRole, UserId};
use parlor_games::{Effect, Host, Player, RatingSystem, Registry};
use parlor_protocol::{
    v1::{self, game_action, game_update, match_action, match_settled::How, match_update},
    ErrorCode,
};

fn player(id: &str, role: RoomRole, global: GlobalRole) -> Player {
    Player {
        user_id: UserId(id.into()),
        name: id.into(),
        role,
        global,
    }
}

fn duel(config: v1::MatchConfig) -> Host {
    let c = v1::GameConfig {
        config: Some(v1::game_config::Config::Match(config)),
    };
    Registry::builtin()
        .create("match", Some(c), [0; 32])
        .unwrap()
        .unwrap()
}

fn report(winner: &str, draw: bool) -> game_action::Action {
    game_action::Action::Match(v1::MatchAction {
        action: Some(match_action::Action::Report(v1::ReportResult {
            winner_user_id: winner.into(),
            draw,
        })),
    })
}

fn decide(winner: &str, draw: bool) -> game_action::Action {
    game_action::Action::Match(v1::MatchAction {
        action: Some(match_action::Action::Decide(v1::DecideResult {
            winner_user_id: winner.into(),
            draw,
        })),
    })
}

fn settled(fx: &[Effect]) -> Option<v1::MatchSettled> {
    fx.iter().find_map(|e| match e {
        Effect::Broadcast(game_update::Update::Match(v1::MatchUpdate {
            update: Some(match_update::Update::Settled(s)),
        })) => Some(s.clone()),
        _ => None,
    })
}

fn places(fx: &[Effect]) -> Vec<(String, u32, bool)> {
    let r = fx
        .iter()
        .find_map(|e| match e {
            Effect::Finish(r) => Some(r.clone()),
            _ => None,
        })
        .expect("a finish");
    assert_eq!(r.rating, RatingSystem::Elo);
    r.players
        .iter()
        .map(|p| (p.user.0.clone(), p.place, p.rated))
        .collect()
}

#[test]
fn agreeing_reports_settle_the_match_and_rate_it() {
    let (a, b) = (
        player("a", RoomRole::Owner, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::User),
    );
    let c = player("c", RoomRole::Player, GlobalRole::User);
    let mut h = duel(v1::MatchConfig::default());
    h.joined(&a, 0);
    let fx = h.joined(&b, 0);
    assert!(matches!(
        &fx[0],
        Effect::Broadcast(game_update::Update::Match(_))
    ));
    // A third who asks to play watches.
    assert_eq!(
        h.join_attempt(&c, RoomRole::Player).unwrap(),
        RoomRole::Watcher
    );
    assert_eq!(
        h.act(&c, report("a", false), 0, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.act(&a, report("c", false), 0, [0; 32]).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    let fx = h.act(&a, report("a", false), 10, [0; 32]).unwrap();
    assert!(fx.contains(&Effect::Armed("confirm".into(), 10 + 86_400_000)));
    assert_eq!(
        h.act(&a, report("a", false), 11, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    let fx = h.act(&b, report("a", false), 20, [0; 32]).unwrap();
    let s = settled(&fx).unwrap();
    assert_eq!(
        (s.winner_user_id.as_str(), s.how),
        ("a", How::Agreed as i32)
    );
    assert_eq!(places(&fx), [("a".into(), 1, true), ("b".into(), 2, true)]);
    assert_eq!(
        h.act(&b, report("b", false), 30, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
}

#[test]
fn differing_reports_wait_for_a_moderator_and_the_organizer_may_decide() {
    let organizer = player("o", RoomRole::Owner, GlobalRole::User);
    let (a, b) = (
        player("a", RoomRole::Player, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::Guest),
    );
    let outsider = player("x", RoomRole::Player, GlobalRole::User);
    let mut h = duel(v1::MatchConfig {
        players: vec!["a".into(), "b".into()],
        organizer_id: "o".into(),
        ..Default::default()
    });
    // The organizer and anyone not listed watch or organize; they are not seated.
    assert_eq!(
        h.join_attempt(&outsider, RoomRole::Player).unwrap(),
        RoomRole::Watcher
    );
    for p in [&organizer, &a, &b] {
        h.joined(p, 0);
    }
    // The organizer decides only a dispute.
    assert_eq!(
        h.act(&organizer, decide("a", false), 0, [0; 32])
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
    h.act(&a, report("a", false), 0, [0; 32]).unwrap();
    let fx = h.act(&b, report("b", false), 1, [0; 32]).unwrap();
    assert!(fx.contains(&Effect::Disarmed("confirm".into())));
    assert!(fx.contains(&Effect::Status("disputed".into())));
    assert_eq!(
        h.act(&a, report("a", false), 2, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    assert_eq!(
        h.act(&a, decide("a", false), 2, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    let fx = h.act(&organizer, decide("", true), 3, [0; 32]).unwrap();
    // (A knock-out match refuses draws: see the tournament test.)
    let s = settled(&fx).unwrap();
    assert!(s.draw && s.how == How::Decided as i32 && s.decided_by == "o");
    // A draw places both first; the guest is not rated.
    assert_eq!(places(&fx), [("a".into(), 1, true), ("b".into(), 1, false)]);
}

#[test]
fn an_unanswered_report_stands_when_its_time_runs_out_and_moderators_decide_anywhere() {
    let (a, b) = (
        player("a", RoomRole::Owner, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::User),
    );
    let mut h = duel(v1::MatchConfig {
        confirm_ms: 5_000,
        ..Default::default()
    });
    h.joined(&a, 0);
    h.joined(&b, 0);
    let fx = h.act(&b, report("b", false), 100, [0; 32]).unwrap();
    assert!(fx.contains(&Effect::Armed("confirm".into(), 5_100)));
    let mut back = Host::restore(&Registry::builtin(), &h.checkpoint()).unwrap();
    let fx = back.fire("confirm", 5_100, 5_100);
    let s = settled(&fx).unwrap();
    assert_eq!(
        (s.winner_user_id.as_str(), s.how),
        ("b", How::Unanswered as i32)
    );
    assert_eq!(places(&fx), [("a".into(), 2, true), ("b".into(), 1, true)]);
    // On another table, a moderator (staff) decides without any report.
    let mut h = duel(v1::MatchConfig::default());
    h.joined(&a, 0);
    h.joined(&b, 0);
    let m = player("mod", RoomRole::Watcher, GlobalRole::Moderator);
    assert!(settled(&h.act(&m, decide("a", false), 0, [0; 32]).unwrap()).is_some());
    // Bad configs.
    let bad = |players: Vec<String>, confirm_ms| {
        let c = v1::GameConfig {
            config: Some(v1::game_config::Config::Match(v1::MatchConfig {
                players,
                confirm_ms,
                ..Default::default()
            })),
        };
        Registry::builtin()
            .create("match", Some(c), [0; 32])
            .is_err()
    };
    assert!(bad(vec!["a".into()], 0) && bad(vec!["a".into(), "a".into()], 0) && bad(vec![], 10));
}

#[test]
fn a_knock_out_match_refuses_draws() {
    let (a, b) = (
        player("a", RoomRole::Player, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::User),
    );
    let mut h = duel(v1::MatchConfig {
        no_draws: true,
        ..Default::default()
    });
    h.joined(&a, 0);
    h.joined(&b, 0);
    assert_eq!(
        h.act(&a, report("", true), 0, [0; 32]).unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    h.act(&a, report("b", false), 0, [0; 32]).unwrap();
}

#[test]
fn a_lone_player_cannot_report_and_a_seated_moderator_cannot_decide() {
    let a = player("a", RoomRole::Owner, GlobalRole::Moderator);
    let b = player("b", RoomRole::Player, GlobalRole::User);
    let mut h = duel(v1::MatchConfig::default());
    h.joined(&a, 0);
    // One seat only: a draw report is refused, not a panic.
    assert_eq!(
        h.act(&a, report("", true), 0, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    h.joined(&b, 0);
    assert_eq!(
        h.act(&a, decide("a", false), 0, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
}
