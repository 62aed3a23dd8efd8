//! Single-elimination tournaments (docs/games.md, "Tournaments"): registration, seeding
//! by rating, a `match` room per pairing, and advancing winners as their rooms settle.
//!
//! The record lives in the store and every write names the version it follows, so pods
//! that advance one tournament at once cannot both win. A pairing's room is made only by
//! the writer that marked the pairing open, then recorded in a second write.

use actix::Addr;
use parlor_core::{now_ms, GlobalRole, TournamentSlot, UserId};
use parlor_games::bracket::{Bracket, Ready};
use parlor_protocol::{v1, ErrorCode};
use parlor_store::{Store, TournamentRecord};

use crate::{
    error::{ApiError, ApiResult},
    rooms::{Create, RoomManager},
    ws::Identity,
};

/// Tries of a read-change-write before giving up under contention.
const TRIES: usize = 8;
/// A pairing marked open whose room is not made yet.
const OPENING: &str = "";

fn bracket_of(t: &TournamentRecord) -> ApiResult<Bracket> {
    let v = t
        .bracket
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::IllegalMove, "the tournament has not started"))?;
    serde_json::from_value(v).map_err(|e| ApiError::internal(format!("bracket: {e}")))
}

/// Reads, changes and writes a tournament until its write follows the stored version.
/// `change` answers what to do once written (or an error, which writes nothing).
async fn update<T>(
    store: &Store,
    id: &str,
    mut change: impl FnMut(&mut TournamentRecord) -> ApiResult<T>,
) -> ApiResult<(TournamentRecord, T)> {
    for _ in 0..TRIES {
        let mut t = store
            .tournaments
            .tournament(id)
            .await?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tournament"))?;
        let out = change(&mut t)?;
        t.version += 1;
        if store.tournaments.save_tournament(&t).await? {
            return Ok((t, out));
        }
    }
    Err(ApiError::unavailable("the tournament is busy; try again"))
}

/// A new tournament of `match`es.
pub(crate) async fn create(
    store: &Store,
    organizer: &Identity,
    name: String,
    max_players: u32,
    registration_closes_at_ms: i64,
) -> ApiResult<TournamentRecord> {
    if organizer.role < GlobalRole::User {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "register an account to organize",
        ));
    }
    if !(2..=parlor_games::bracket::MAX_PLAYERS as u32).contains(&max_players) {
        return Err(ApiError::new(
            ErrorCode::InvalidArgument,
            "max_players must be 2 to 256",
        ));
    }
    let at = now_ms();
    let t = TournamentRecord {
        id: format!("{at:013}-{}", parlor_core::new_id("")),
        name,
        kind: "match".into(),
        organizer: organizer.user_id.clone(),
        max_players,
        registration_closes_at_ms,
        state: "registering".into(),
        players: Vec::new(),
        bracket: None,
        rooms: Vec::new(),
        champion: None,
        version: 1,
        created_at_ms: at,
    };
    if !store.tournaments.save_tournament(&t).await? {
        return Err(ApiError::internal("a new tournament's id was taken"));
    }
    Ok(t)
}

/// Registers a player (registered accounts only, before the deadline, while seats last).
pub(crate) async fn register(
    store: &Store,
    id: &str,
    who: &Identity,
) -> ApiResult<TournamentRecord> {
    if who.role < GlobalRole::User {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "guests play unrated: register an account",
        ));
    }
    let (t, ()) = update(store, id, |t| {
        if t.state != "registering" || now_ms() > t.registration_closes_at_ms {
            return Err(ApiError::new(
                ErrorCode::IllegalMove,
                "registration is closed",
            ));
        }
        if t.players.contains(&who.user_id) {
            return Err(ApiError::new(ErrorCode::IllegalMove, "you are registered"));
        }
        if t.players.len() >= t.max_players as usize {
            return Err(ApiError::new(ErrorCode::RoomFull, "the tournament is full"));
        }
        t.players.push(who.user_id.clone());
        Ok(())
    })
    .await?;
    Ok(t)
}

/// Marks the bracket's ready pairings open; answers the ones this write opened.
fn mark_open(t: &mut TournamentRecord, b: &Bracket) -> Vec<Ready> {
    let open: Vec<Ready> = b
        .ready()
        .into_iter()
        .filter(|r| {
            !t.rooms
                .iter()
                .any(|(ro, i, _)| (*ro, *i) == (r.round as u32, r.index as u32))
        })
        .collect();
    for r in &open {
        t.rooms
            .push((r.round as u32, r.index as u32, OPENING.into()));
    }
    open
}

/// Makes the rooms of pairings this pod opened, and records them.
async fn open_rooms(
    store: &Store,
    rooms: &Addr<RoomManager>,
    t: &TournamentRecord,
    opened: Vec<Ready>,
) -> ApiResult<()> {
    let organizer = Identity {
        user_id: t.organizer.clone(),
        name: "organizer".into(),
        role: GlobalRole::User,
    };
    for r in opened {
        let req = v1::CreateRoom {
            name: format!("{} · round {} · match {}", t.name, r.round + 1, r.index + 1),
            kind: "match".into(),
            game: Some(v1::GameConfig {
                config: Some(v1::game_config::Config::Match(v1::MatchConfig {
                    players: r.players.iter().map(|u| u.0.clone()).collect(),
                    no_draws: true,
                    organizer_id: t.organizer.0.clone(),
                    ..Default::default()
                })),
            }),
            ..Default::default()
        };
        let slot = TournamentSlot {
            id: t.id.clone(),
            round: r.round as u32,
            index: r.index as u32,
        };
        let made = rooms
            .send(Create {
                req,
                owner: organizer.clone(),
                tournament: Some(slot),
            })
            .await
            .map_err(ApiError::from)
            .and_then(|r| r);
        let room = match made {
            Ok((room, _)) => room,
            // The other pairings still open; this one stays marked, with no room.
            Err(e) => {
                tracing::error!(tournament = %t.id, round = r.round, index = r.index, error = %e.message, "a pairing's room was not made");
                continue;
            }
        };
        let key = (r.round as u32, r.index as u32);
        update(store, &t.id, |t| {
            if let Some(e) = t.rooms.iter_mut().find(|(ro, i, _)| (*ro, *i) == key) {
                e.2 = room.0.clone();
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The organizer starts it: seeding by rating, byes through, the first rooms open.
pub(crate) async fn start(
    store: &Store,
    rooms: &Addr<RoomManager>,
    id: &str,
    who: &Identity,
) -> ApiResult<TournamentRecord> {
    let t = store
        .tournaments
        .tournament(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such tournament"))?;
    let mut seeded = Vec::with_capacity(t.players.len());
    for p in &t.players {
        let r = store.ratings.rating(p, &t.kind).await?;
        let none = crate::rooms::ratings::start(parlor_games::RatingSystem::Elo).0;
        seeded.push((p.clone(), r.map_or(none, |r| r.value)));
    }
    let (t, opened) = update(store, id, |t| {
        if t.organizer != who.user_id {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                "only the organizer starts it",
            ));
        }
        if t.state != "registering" {
            return Err(ApiError::new(
                ErrorCode::IllegalMove,
                "the tournament has started",
            ));
        }
        if seeded.len() != t.players.len() {
            return Err(ApiError::unavailable("registrations changed; try again"));
        }
        let b = Bracket::seed(&seeded)?;
        t.state = "running".into();
        let opened = mark_open(t, &b);
        t.bracket = Some(serde_json::to_value(&b).map_err(|e| ApiError::internal(e.to_string()))?);
        Ok(opened)
    })
    .await?;
    open_rooms(store, rooms, &t, opened).await?;
    Ok(store.tournaments.tournament(id).await?.unwrap_or(t))
}

/// A pairing's room settled with `winner`: the bracket advances, and the pairings it
/// makes ready open. A pairing already advanced (a retry) changes nothing.
pub(crate) async fn advance(
    store: &Store,
    rooms: &Addr<RoomManager>,
    slot: &TournamentSlot,
    winner: &UserId,
) -> ApiResult<()> {
    let (t, opened) = update(store, &slot.id, |t| {
        let mut b = bracket_of(t)?;
        let (round, index) = (slot.round as usize, slot.index as usize);
        let done = b
            .rounds
            .get(round)
            .and_then(|r| r.get(index))
            .is_some_and(|p| p.winner.is_some());
        if done {
            return Ok(Vec::new());
        }
        b.report(round, index, winner)?;
        let opened = mark_open(t, &b);
        if let Some(c) = b.champion() {
            t.champion = Some(c.clone());
            t.state = "done".into();
        }
        t.bracket = Some(serde_json::to_value(&b).map_err(|e| ApiError::internal(e.to_string()))?);
        Ok(opened)
    })
    .await?;
    open_rooms(store, rooms, &t, opened).await
}

/// The tournament as REST serves it: rounds of pairings with their players, winners and
/// rooms.
pub(crate) fn to_json(t: &TournamentRecord) -> serde_json::Value {
    use parlor_games::bracket::Slot;
    let rounds: Vec<serde_json::Value> = bracket_of(t)
        .map(|b| {
            b.rounds
                .iter()
                .enumerate()
                .map(|(ri, round)| {
                    let pairings: Vec<serde_json::Value> = round
                        .iter()
                        .enumerate()
                        .map(|(pi, p)| {
                            let slot = |s: &Slot| match s {
                                Slot::Player(u) => serde_json::json!(u.0),
                                Slot::Bye => serde_json::json!("bye"),
                                Slot::Waiting => serde_json::Value::Null,
                            };
                            let room = t
                                .rooms
                                .iter()
                                .find(|(r, i, _)| (*r as usize, *i as usize) == (ri, pi))
                                .map(|(_, _, id)| id.clone())
                                .filter(|id| !id.is_empty());
                            serde_json::json!({
                                "players": [slot(&p.slots[0]), slot(&p.slots[1])],
                                "winner": p.winner.as_ref().map(|u| u.0.clone()),
                                "room_id": room,
                            })
                        })
                        .collect();
                    serde_json::json!({ "round": ri + 1, "pairings": pairings })
                })
                .collect()
        })
        .unwrap_or_default();
    serde_json::json!({
        "id": t.id, "name": t.name, "kind": t.kind, "organizer": t.organizer,
        "state": t.state, "max_players": t.max_players,
        "registration_closes_at_ms": t.registration_closes_at_ms,
        "players": t.players, "rounds": rounds, "champion": t.champion,
    })
}
