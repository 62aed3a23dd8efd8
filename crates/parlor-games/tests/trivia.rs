//! The trivia kind as a state machine, on a clock the test moves.

use parlor_core::{GlobalRole, RoomRole, UserId};
use parlor_games::{Effect, Host, Player, RatingSystem, Registry};
use parlor_protocol::{
    v1::{self, game_action, game_update, trivia_action, trivia_update},
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

fn q(text: &str, correct: u32) -> v1::TriviaQuestion {
    v1::TriviaQuestion {
        text: text.into(),
        answers: vec!["a".into(), "b".into(), "c".into()],
        correct,
        category: "test".into(),
        difficulty: 1,
    }
}

fn arena(rated: bool, auto: u32) -> Host {
    let config = v1::GameConfig {
        config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
            questions: vec![q("one", 2), q("two", 0)],
            buzz_window_ms: 10_000,
            answer_ms: 5_000,
            reveal_ms: 1_000,
            auto_start_players: auto,
            rated,
            question_set_id: String::new(),
            players: Vec::new(),
        })),
    };
    Registry::builtin()
        .create("trivia", Some(config), [3; 32])
        .unwrap()
        .unwrap()
}

fn act(a: trivia_action::Action) -> game_action::Action {
    game_action::Action::Trivia(v1::TriviaAction { action: Some(a) })
}
fn start() -> game_action::Action {
    act(trivia_action::Action::Start(v1::StartTrivia {}))
}
fn buzz(q: u32) -> game_action::Action {
    act(trivia_action::Action::Buzz(v1::Buzz { question: q }))
}
fn answer(q: u32, choice: u32) -> game_action::Action {
    act(trivia_action::Action::Answer(v1::AnswerTrivia {
        question: q,
        choice,
    }))
}

fn updates(fx: &[Effect]) -> Vec<trivia_update::Update> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Broadcast(game_update::Update::Trivia(v1::TriviaUpdate {
                update: Some(u),
            })) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

fn due(fx: &[Effect], timer: &str) -> i64 {
    fx.iter()
        .find_map(|e| match e {
            Effect::Armed(id, at) if id == timer => Some(*at),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no {timer} timer in {fx:?}"))
}

#[test]
fn a_game_plays_to_the_end_with_buzzes_passes_timeouts_and_standings() {
    let host = player("host", RoomRole::Owner, GlobalRole::User);
    let (a, b, c) = (
        player("a", RoomRole::Player, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::User),
        player("c", RoomRole::Player, GlobalRole::Guest),
    );
    let w = player("w", RoomRole::Watcher, GlobalRole::User);
    let mut h = arena(true, 0);
    for p in [&host, &a, &b, &c, &w] {
        h.joined(p, 0);
    }
    assert_eq!(
        h.act(&a, start(), 0, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    let fx = h.act(&host, start(), 0, [0; 32]).unwrap();
    let u = updates(&fx);
    assert!(matches!(&u[0], trivia_update::Update::Started(s) if s.players == ["a", "b", "c"]));
    let trivia_update::Update::Asked(asked) = &u[1] else {
        panic!("{u:?}")
    };
    assert_eq!((asked.index, asked.answers.len()), (0, 3));
    // The answer is in no frame before the reveal.
    assert!(!u
        .iter()
        .any(|u| matches!(u, trivia_update::Update::Revealed(_))));
    let buzz_due = due(&fx, "buzz");

    // a buzzes first, b second; c's buzz on another question and w's are refused.
    let fx = h.act(&a, buzz(0), 2_000, [0; 32]).unwrap();
    assert!(
        matches!(&updates(&fx)[0], trivia_update::Update::Buzzed(z) if z.answering && z.position == 1)
    );
    let answer_due = due(&fx, "answer");
    let fx = h.act(&b, buzz(0), 2_500, [0; 32]).unwrap();
    assert!(
        matches!(&updates(&fx)[0], trivia_update::Update::Buzzed(z) if !z.answering && z.position == 2)
    );
    assert_eq!(
        h.act(&b, buzz(0), 2_600, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    assert_eq!(
        h.act(&c, buzz(1), 2_600, [0; 32]).unwrap_err().code,
        ErrorCode::IllegalMove
    );
    assert_eq!(
        h.act(&w, buzz(0), 2_600, [0; 32]).unwrap_err().code,
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.act(&b, answer(0, 2), 2_700, [0; 32]).unwrap_err().code,
        ErrorCode::NotYourTurn
    );
    // a answers wrong: -5, and the question passes to b.
    let fx = h.act(&a, answer(0, 1), 3_000, [0; 32]).unwrap();
    let u = updates(&fx);
    assert!(matches!(&u[0], trivia_update::Update::Judged(j) if !j.correct && j.points == -5));
    assert!(matches!(&u[1], trivia_update::Update::Buzzed(z) if z.user_id == "b" && z.answering));
    assert!(
        h.fire("answer", answer_due, 3_000).is_empty(),
        "a's timer was cancelled"
    );
    // b answers right: 10, plus 5 × (7,500 / 10,000) rounded down = 3.
    let fx = h.act(&b, answer(0, 2), 4_000, [0; 32]).unwrap();
    let u = updates(&fx);
    assert!(
        matches!(&u[0], trivia_update::Update::Judged(j) if j.correct && j.points == 13 && j.score == 13)
    );
    assert!(
        matches!(&u[1], trivia_update::Update::Revealed(r) if r.correct == 2 && r.won_by == "b")
    );
    assert!(
        h.fire("buzz", buzz_due, 10_000).is_empty(),
        "the buzz window closed with the reveal"
    );

    // Question two: c buzzes and lets the answer time run out; nobody else buzzes.
    let next = due(&fx, "next");
    let fx = h.fire("next", next, next);
    let trivia_update::Update::Asked(asked) = &updates(&fx)[0] else {
        panic!()
    };
    assert_eq!(asked.index, 1);
    let buzz_due = due(&fx, "buzz");
    let fx = h.act(&c, buzz(1), next + 100, [0; 32]).unwrap();
    let answer_due = due(&fx, "answer");
    let fx = h.fire("answer", answer_due, answer_due);
    assert!(
        matches!(&updates(&fx)[0], trivia_update::Update::Judged(j) if j.timed_out && j.points == -5)
    );
    let fx = h.fire("buzz", buzz_due, buzz_due);
    assert!(matches!(&updates(&fx)[0], trivia_update::Update::Revealed(r) if r.won_by.is_empty()));
    let fx = h.fire("next", due(&fx, "next"), buzz_due + 1_000);
    let u = updates(&fx);
    let trivia_update::Update::Over(over) = &u[0] else {
        panic!("{u:?}")
    };
    let places: Vec<(&str, u32, i64)> = over
        .standings
        .iter()
        .map(|s| (s.user_id.as_str(), s.place, s.score))
        .collect();
    assert_eq!(places, [("b", 1, 13), ("a", 2, -5), ("c", 2, -5)]);
    // The finish: rated with Weng-Lin, and never for the guest.
    let result = fx
        .iter()
        .find_map(|e| match e {
            Effect::Finish(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(result.rating, RatingSystem::WengLin);
    let rated: Vec<(&str, bool)> = result
        .players
        .iter()
        .map(|p| (p.user.0.as_str(), p.rated))
        .collect();
    assert_eq!(rated, [("b", true), ("a", true), ("c", false)]);
    assert!(fx.contains(&Effect::Status("finished".into())));
}

#[test]
fn an_abandoned_game_ends_with_who_stayed_first() {
    let host = player("host", RoomRole::Owner, GlobalRole::User);
    let (a, b) = (
        player("a", RoomRole::Player, GlobalRole::User),
        player("b", RoomRole::Player, GlobalRole::User),
    );
    // Two players start it on their own.
    let mut h = arena(true, 2);
    h.joined(&host, 0);
    assert!(h.joined(&a, 0).is_empty());
    let fx = h.joined(&b, 0);
    assert!(matches!(
        &updates(&fx)[0],
        trivia_update::Update::Started(_)
    ));
    h.act(&a, buzz(0), 100, [0; 32]).unwrap();
    h.act(&a, answer(0, 2), 200, [0; 32]).unwrap();
    // a, who leads, leaves: b is the last one in, and wins the abandoned game.
    let fx = h.left(&a.user_id, parlor_games::LeaveReason::Left, 300);
    let trivia_update::Update::Over(over) = &updates(&fx)[0] else {
        panic!("{fx:?}")
    };
    let places: Vec<(&str, u32, bool)> = over
        .standings
        .iter()
        .map(|s| (s.user_id.as_str(), s.place, s.left))
        .collect();
    assert_eq!(places, [("b", 1, false), ("a", 2, true)]);
    // The host can start again; the leaver is gone from the next game.
    h.joined(&player("c", RoomRole::Player, GlobalRole::User), 400);
    let fx = h.act(&host, start(), 500, [0; 32]).unwrap();
    assert!(
        matches!(&updates(&fx)[0], trivia_update::Update::Started(s) if s.players == ["b", "c"])
    );
}

#[test]
fn views_never_hold_the_current_answer_and_a_restore_goes_on_the_same() {
    let host = player("host", RoomRole::Owner, GlobalRole::User);
    let a = player("a", RoomRole::Player, GlobalRole::User);
    let mut h = arena(false, 0);
    h.joined(&host, 0);
    h.joined(&a, 0);
    h.act(&host, start(), 0, [0; 32]).unwrap();
    h.act(&a, buzz(0), 100, [0; 32]).unwrap();
    let Some(v1::game_view::View::Trivia(v)) = h.view_for(&a, "r").view else {
        panic!()
    };
    assert_eq!(v.phase, v1::trivia_view::Phase::Answering as i32);
    assert!(v.revealed.is_empty() && v.current.is_some());
    let reg = Registry::builtin();
    let mut back = Host::restore(&reg, &h.checkpoint()).unwrap();
    assert_eq!(
        back.timers().collect::<Vec<_>>(),
        h.timers().collect::<Vec<_>>()
    );
    assert_eq!(
        back.act(&a, answer(0, 2), 200, [0; 32]).unwrap(),
        h.act(&a, answer(0, 2), 200, [0; 32]).unwrap()
    );
    let Some(v1::game_view::View::Trivia(v)) = h.view_for(&a, "r").view else {
        panic!()
    };
    assert_eq!(v.revealed.len(), 1);
}

#[test]
fn question_sets_are_validated() {
    let bad = |questions: Vec<v1::TriviaQuestion>| {
        let config = v1::GameConfig {
            config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
                questions,
                ..Default::default()
            })),
        };
        Registry::builtin()
            .create("trivia", Some(config), [0; 32])
            .err()
            .unwrap()
    };
    assert!(bad(vec![q("", 0)]).message.contains("question 0"));
    assert!(bad(vec![q("fine", 0), q("three answers", 3)])
        .message
        .contains("question 1"));
    let mut one = q("one answer", 0);
    one.answers.truncate(1);
    assert_eq!(bad(vec![one]).code, ErrorCode::InvalidArgument);
    // The sample set that ships is valid, and is the default.
    assert!(parlor_games::trivia::check_set(&parlor_games::trivia::sample_set()).is_ok());
    assert!(Registry::builtin()
        .create("trivia", None, [0; 32])
        .unwrap()
        .is_some());
}

#[test]
fn reserved_seats_play_the_owner_included_and_everyone_else_watches() {
    let config = v1::GameConfig {
        config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
            players: vec!["o".into(), "a".into()],
            auto_start_players: 2,
            ..Default::default()
        })),
    };
    let mut h = Registry::builtin()
        .create("trivia", Some(config), [0; 32])
        .unwrap()
        .unwrap();
    let (o, a) = (
        player("o", RoomRole::Owner, GlobalRole::Guest),
        player("a", RoomRole::Player, GlobalRole::Guest),
    );
    let x = player("x", RoomRole::Player, GlobalRole::Guest);
    assert_eq!(
        h.join_attempt(&x, RoomRole::Player).unwrap(),
        RoomRole::Watcher
    );
    assert_eq!(
        h.join_attempt(&a, RoomRole::Player).unwrap(),
        RoomRole::Player
    );
    assert!(h.joined(&o, 0).is_empty());
    let fx = h.joined(&a, 0);
    assert!(
        matches!(&updates(&fx)[0], trivia_update::Update::Started(s) if s.players == ["o", "a"])
    );
}
