//! Writes the seed corpus of the `envelope` fuzz target: one real frame of each client
//! message, as a client would send it. `cargo run --example fuzz_seeds -- fuzz/corpus/envelope`

use parlor_protocol::{
    encode_envelope,
    v1::{self, envelope::Body},
};

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/envelope".into());
    std::fs::create_dir_all(&dir)?;
    let room = || "r_0123456789abcdef01234567".to_owned();
    use v1::{cards_action, dice_action, game_action, game_config, match_action, trivia_action};
    let roll = v1::Roll {
        notation: "2d20kh1+@str".into(),
        visibility: v1::RollVisibility::ToDm as i32,
        label: "attack".into(),
    };
    let action = |a: game_action::Action| {
        Body::GameAction(v1::GameAction {
            room_id: room(),
            action: Some(a),
        })
    };
    let bodies = vec![
        Body::Hello(v1::Hello {
            protocol_version: 1,
            access_token: "eyJhbGciOiJFZERTQSJ9.e30.c2ln".into(),
            resume_token: String::new(),
        }),
        Body::Ping(v1::Ping { client_time_ms: 1 }),
        Body::CreateRoom(v1::CreateRoom {
            name: "Jam".into(),
            kind: "piano".into(),
            visibility: v1::Visibility::Private as i32,
            password: "sesame".into(),
            max_members: 16,
            settings: Some(v1::RoomSettings {
                welcome_message: Some("hi".into()),
                event_rate_limit: Some(20),
                ..Default::default()
            }),
            persistent: false,
            game: None,
        }),
        Body::CreateRoom(v1::CreateRoom {
            name: "Table".into(),
            kind: "cards".into(),
            game: Some(v1::GameConfig {
                config: Some(game_config::Config::Cards(v1::CardsConfig {
                    faces: vec!["AS".into(), "KH".into()],
                    turn_order: v1::TurnOrder::RoundRobin as i32,
                    turn_timeout_ms: 1000,
                })),
            }),
            ..Default::default()
        }),
        Body::CreateRoom(v1::CreateRoom {
            name: "Quiz".into(),
            kind: "trivia".into(),
            game: Some(v1::GameConfig {
                config: Some(game_config::Config::Trivia(v1::TriviaConfig {
                    questions: vec![v1::TriviaQuestion {
                        text: "2+2?".into(),
                        answers: vec!["3".into(), "4".into()],
                        correct: 1,
                        category: "math".into(),
                        difficulty: 1,
                    }],
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }),
        Body::JoinRoom(v1::JoinRoom {
            room_id: String::new(),
            code: "ABCD-EFGH-JKLM".into(),
            password: "sesame".into(),
            role: v1::RoomRole::Watcher as i32,
            last_seq: 7,
        }),
        Body::JoinOrCreate(v1::JoinOrCreate {
            kind: "piano".into(),
            role: 0,
        }),
        Body::LeaveRoom(v1::LeaveRoom { room_id: room() }),
        Body::ListRooms(v1::ListRooms {
            kind: "dice".into(),
            offset: 0,
            limit: 10,
        }),
        Body::UpdateRoom(v1::UpdateRoom {
            room_id: room(),
            name: Some("Renamed".into()),
            visibility: v1::Visibility::Public as i32,
            password: Some(String::new()),
            max_members: Some(8),
            settings: None,
        }),
        Body::Chat(v1::Chat {
            room_id: room(),
            to_user_id: String::new(),
            text: "hello".into(),
        }),
        Body::Chat(v1::Chat {
            room_id: String::new(),
            to_user_id: "u_0123456789abcdef01234567".into(),
            text: "psst".into(),
        }),
        Body::GameEvent(v1::GameEvent {
            room_id: room(),
            r#type: "note_on".into(),
            payload: vec![60, 100].into(),
            target_user_id: String::new(),
            sender_id: String::new(),
            sent_at_ms: 0,
        }),
        Body::PresenceUpdate(v1::PresenceUpdate {
            room_id: room(),
            status: v1::PresenceStatus::Away as i32,
            cursor_x: Some(0.25),
            cursor_y: Some(0.75),
        }),
        Body::Moderate(v1::Moderate {
            room_id: room(),
            user_id: "u_0123456789abcdef01234567".into(),
            action: v1::ModerationAction::Ban as i32,
            reason: "spam".into(),
        }),
        Body::Matchmake(v1::Matchmake {
            kind: "match".into(),
            min_players: 2,
            max_players: 2,
            cancel: false,
        }),
        action(game_action::Action::Dice(v1::DiceAction {
            action: Some(dice_action::Action::Roll(roll)),
        })),
        action(game_action::Action::Dice(v1::DiceAction {
            action: Some(dice_action::Action::SetVariables(v1::SetVariables {
                values: [("str".to_owned(), 3)].into(),
            })),
        })),
        action(game_action::Action::Cards(v1::CardsAction {
            action: Some(cards_action::Action::Flip(v1::Flip { index: 3 })),
        })),
        action(game_action::Action::Trivia(v1::TriviaAction {
            action: Some(trivia_action::Action::Answer(v1::AnswerTrivia {
                question: 0,
                choice: 1,
            })),
        })),
        action(game_action::Action::Match(v1::MatchAction {
            action: Some(match_action::Action::Report(v1::ReportResult {
                winner_user_id: "u_0123456789abcdef01234567".into(),
                draw: false,
            })),
        })),
        action(game_action::Action::RevealSeed(v1::RevealSeed {})),
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let frame = encode_envelope(i as u64 + 1, 0, body);
        std::fs::write(format!("{dir}/seed{i:02}"), &frame)?;
    }
    Ok(())
}
