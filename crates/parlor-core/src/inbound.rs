//! The shape check every client message passes before anything acts on it: each string
//! field against its length limit, each enum field against its known values, and each
//! repeated field against a count. A message that fails is refused whole (TOO_LONG or
//! INVALID_ARGUMENT), so nothing of it is applied. The rules of each field's content
//! (names, kinds, notation, seats) are checked later, where they mean something.

use parlor_protocol::{
    v1::{self, envelope::Body},
    ErrorCode,
};

use crate::{CoreError, Limits};

/// Longest id a client names (rooms, users, codes, question sets): ours are 26 bytes.
pub const ID_BYTES: usize = 64;
/// Longest token in Hello.
pub const TOKEN_BYTES: usize = 8192;
/// Longest room kind.
const KIND_BYTES: usize = 32;
/// Most entries in one repeated or map field (seats, faces, questions, variables).
const MAX_ENTRIES: usize = 1000;

fn len(what: &str, s: &str, max: usize) -> Result<(), CoreError> {
    Limits::check_len(what, s.len(), max)
}

fn id(what: &str, s: &str) -> Result<(), CoreError> {
    len(what, s, ID_BYTES)
}

fn ids(what: &str, v: &[String]) -> Result<(), CoreError> {
    count(what, v.len())?;
    v.iter().try_for_each(|s| id(what, s))
}

fn count(what: &str, n: usize) -> Result<(), CoreError> {
    if n > MAX_ENTRIES {
        return Err(CoreError::new(
            ErrorCode::TooLong,
            format!("{what} has {n} entries; the limit is {MAX_ENTRIES}"),
        ));
    }
    Ok(())
}

/// A proto3 enum field holds any i32 on the wire; only the declared values are accepted.
fn known<E: TryFrom<i32>>(what: &str, v: i32) -> Result<(), CoreError> {
    E::try_from(v).map(|_| ()).map_err(|_| {
        CoreError::new(
            ErrorCode::InvalidArgument,
            format!("{what} {v} is not a known value"),
        )
    })
}

fn settings(s: Option<&v1::RoomSettings>, l: &Limits) -> Result<(), CoreError> {
    match s.and_then(|s| s.welcome_message.as_deref()) {
        Some(w) => len("welcome_message", w, l.text_field_bytes),
        None => Ok(()),
    }
}

fn game_config(g: Option<&v1::GameConfig>, l: &Limits) -> Result<(), CoreError> {
    use v1::game_config::Config;
    let text = l.text_field_bytes;
    match g.and_then(|g| g.config.as_ref()) {
        None | Some(Config::Dice(_)) => Ok(()),
        Some(Config::Cards(c)) => {
            known::<v1::TurnOrder>("turn_order", c.turn_order)?;
            count("faces", c.faces.len())?;
            c.faces.iter().try_for_each(|f| len("face", f, KIND_BYTES))
        }
        Some(Config::Trivia(t)) => {
            id("question_set_id", &t.question_set_id)?;
            ids("players", &t.players)?;
            count("questions", t.questions.len())?;
            for q in &t.questions {
                len("question", &q.text, text)?;
                len("category", &q.category, text)?;
                count("answers", q.answers.len())?;
                q.answers.iter().try_for_each(|a| len("answer", a, text))?;
            }
            Ok(())
        }
        Some(Config::Match(m)) => {
            ids("players", &m.players)?;
            id("organizer_id", &m.organizer_id)
        }
        Some(Config::Opaque(b)) => Limits::check_len("game config", b.len(), l.event_payload_bytes),
    }
}

fn game_action(a: &v1::GameAction, l: &Limits) -> Result<(), CoreError> {
    use v1::{cards_action, dice_action, game_action::Action, match_action};
    id("room_id", &a.room_id)?;
    match a.action.as_ref() {
        Some(Action::Dice(d)) => match d.action.as_ref() {
            Some(dice_action::Action::Roll(r)) => {
                known::<v1::RollVisibility>("visibility", r.visibility)?;
                len("notation", &r.notation, l.text_field_bytes)?;
                len("label", &r.label, l.name_chars * 4)
            }
            Some(dice_action::Action::SetVariables(v)) => {
                count("variables", v.values.len())?;
                v.values
                    .keys()
                    .try_for_each(|k| len("variable", k, KIND_BYTES))
            }
            None => Ok(()),
        },
        Some(Action::Cards(c)) => match c.action.as_ref() {
            Some(cards_action::Action::SetDeck(d)) => {
                count("faces", d.faces.len())?;
                d.faces.iter().try_for_each(|f| len("face", f, KIND_BYTES))
            }
            _ => Ok(()),
        },
        Some(Action::Match(m)) => match m.action.as_ref() {
            Some(match_action::Action::Report(r)) => id("winner_user_id", &r.winner_user_id),
            Some(match_action::Action::Decide(d)) => id("winner_user_id", &d.winner_user_id),
            None => Ok(()),
        },
        Some(Action::Opaque(o)) => {
            len("type", &o.r#type, l.event_type_bytes)?;
            Limits::check_len("payload", o.payload.len(), l.event_payload_bytes)
        }
        Some(Action::RevealSeed(_)) | Some(Action::Trivia(_)) | None => Ok(()),
    }
}

/// Checks one client message's shape against `l`.
pub fn check_inbound(body: &Body, l: &Limits) -> Result<(), CoreError> {
    // Names are checked in characters later; a character is at most 4 bytes.
    let name = l.name_chars * 4;
    let text = l.text_field_bytes;
    match body {
        Body::Hello(h) => {
            len("access_token", &h.access_token, TOKEN_BYTES)?;
            len("resume_token", &h.resume_token, TOKEN_BYTES)
        }
        Body::CreateRoom(c) => {
            len("name", &c.name, name)?;
            len("kind", &c.kind, KIND_BYTES)?;
            len("password", &c.password, text)?;
            known::<v1::Visibility>("visibility", c.visibility)?;
            settings(c.settings.as_ref(), l)?;
            game_config(c.game.as_ref(), l)
        }
        Body::JoinRoom(j) => {
            id("room_id", &j.room_id)?;
            id("code", &j.code)?;
            len("password", &j.password, text)?;
            known::<v1::RoomRole>("role", j.role)
        }
        Body::JoinOrCreate(j) => {
            len("kind", &j.kind, KIND_BYTES)?;
            known::<v1::RoomRole>("role", j.role)
        }
        Body::LeaveRoom(r) => id("room_id", &r.room_id),
        Body::ListRooms(r) => len("kind", &r.kind, KIND_BYTES),
        Body::UpdateRoom(u) => {
            id("room_id", &u.room_id)?;
            len("name", u.name.as_deref().unwrap_or_default(), name)?;
            len("password", u.password.as_deref().unwrap_or_default(), text)?;
            known::<v1::Visibility>("visibility", u.visibility)?;
            settings(u.settings.as_ref(), l)
        }
        Body::Chat(c) => {
            id("room_id", &c.room_id)?;
            id("to_user_id", &c.to_user_id)?;
            len("text", &c.text, l.chat_bytes)
        }
        Body::GameEvent(e) => {
            id("room_id", &e.room_id)?;
            id("target_user_id", &e.target_user_id)?;
            id("sender_id", &e.sender_id)?;
            len("type", &e.r#type, l.event_type_bytes)?;
            Limits::check_len("payload", e.payload.len(), l.event_payload_bytes)
        }
        Body::PresenceUpdate(p) => {
            id("room_id", &p.room_id)?;
            if [p.cursor_x, p.cursor_y]
                .iter()
                .flatten()
                .any(|c| !c.is_finite())
            {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "a cursor must be a finite number",
                ));
            }
            known::<v1::PresenceStatus>("status", p.status)
        }
        Body::Moderate(m) => {
            id("room_id", &m.room_id)?;
            id("user_id", &m.user_id)?;
            known::<v1::ModerationAction>("action", m.action)?;
            len("reason", &m.reason, text)
        }
        Body::GameAction(a) => game_action(a, l),
        Body::Matchmake(m) => len("kind", &m.kind, KIND_BYTES),
        // Ping has no strings; server-to-client messages are refused by the dispatcher.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(body: Body) -> ErrorCode {
        check_inbound(&body, &Limits::default()).unwrap_err().code
    }

    #[test]
    fn long_strings_and_unknown_enums_are_refused() {
        let long = "x".repeat(501);
        assert_eq!(
            refused(Body::Moderate(v1::Moderate {
                reason: long.clone(),
                action: 1,
                ..Default::default()
            })),
            ErrorCode::TooLong
        );
        assert_eq!(
            refused(Body::Moderate(v1::Moderate {
                action: 99,
                ..Default::default()
            })),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            refused(Body::PresenceUpdate(v1::PresenceUpdate {
                status: -3,
                ..Default::default()
            })),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            refused(Body::JoinRoom(v1::JoinRoom {
                code: "C".repeat(65),
                ..Default::default()
            })),
            ErrorCode::TooLong
        );
        assert_eq!(
            refused(Body::CreateRoom(v1::CreateRoom {
                visibility: 7,
                ..Default::default()
            })),
            ErrorCode::InvalidArgument
        );
        let roll = v1::GameAction {
            action: Some(v1::game_action::Action::Dice(v1::DiceAction {
                action: Some(v1::dice_action::Action::Roll(v1::Roll {
                    visibility: 12,
                    ..Default::default()
                })),
            })),
            ..Default::default()
        };
        assert_eq!(refused(Body::GameAction(roll)), ErrorCode::InvalidArgument);
        // Within the limits, and the zero (unset) value of every enum, pass.
        for ok in [
            Body::Moderate(v1::Moderate {
                reason: "x".repeat(500),
                ..Default::default()
            }),
            Body::JoinRoom(v1::JoinRoom::default()),
            Body::CreateRoom(v1::CreateRoom::default()),
        ] {
            assert!(check_inbound(&ok, &Limits::default()).is_ok());
        }
    }
}
