//! Single-elimination tournaments (docs/games.md, "Tournaments"): registration, seeding
//! by rating, a `match` room per pairing, and advancing winners as their rooms settle.
//!
//! The record lives in the store and every write names the version it follows, so pods
//! that advance one tournament at once cannot both win. A pairing's room is made only by
//! the writer that marked the pairing open, then recorded in a second write. A pairing
//! marked open whose room never came (its pod died in between, or the room could not be
//! made) opens again on the next advance, or when the organizer starts it again.
//!
//! Each tournament has a watchers' room; every start and advance is announced there as a
//! `TournamentUpdate` room event.

use std::sync::Arc;

use actix::Addr;
use parlor_core::{now_ms, GlobalRole, RoomId, TournamentSlot, UserId};
use parlor_games::bracket::{Bracket, Ready};
use parlor_protocol::{v1, ErrorCode};
use parlor_store::{Store, TournamentRecord};

use crate::{
    error::{ApiError, ApiResult},
    relay::PodLink,
    rooms::{self, Create, RoomManager, RoomRef},
    ws::Identity,
};

/// Tries of a read-change-write before giving up under contention.
const TRIES: usize = 8;
/// A pairing marked open whose room is not made yet: this, then the time it was marked.
const OPENING: &str = "opening:";
/// A pairing marked open this long ago without a room is opened again.
const REOPEN_AFTER_MS: i64 = 30_000;

/// What running tournaments takes.
#[derive(Clone)]
pub(crate) struct Organizing {
    pub(crate) store: Store,
    pub(crate) rooms: Addr<RoomManager>,
    pub(crate) link: Arc<PodLink>,
}

/// A room id recorded for a pairing, if it is a room and not a mark.
fn made(id: &str) -> Option<&str> {
    (!id.is_empty() && !id.starts_with(OPENING)).then_some(id)
}

/// Whether a pairing's mark is old enough to open again (an empty one is from a failed
/// try, or from before marks had times).
fn stale(id: &str, now: i64) -> bool {
    match id.strip_prefix(OPENING) {
        Some(at) => at
            .parse::<i64>()
            .map_or(true, |at| now - at >= REOPEN_AFTER_MS),
        None => id.is_empty(),
    }
}

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

/// A new tournament of `match`es, with its watchers' room.
pub(crate) async fn create(
    o: &Organizing,
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
    let watchers = o
        .rooms
        .send(Create {
            req: v1::CreateRoom {
                name: format!("{name} · bracket"),
                kind: "tournament".into(),
                persistent: true,
                ..Default::default()
            },
            owner: organizer.clone(),
            tournament: None,
            quota: false,
        })
        .await
        .map_err(ApiError::from)??
        .0;
    let store = &o.store;
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
        room_id: watchers.0,
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

/// Marks the bracket's ready pairings open (new ones, and stale marks again); answers
/// the ones this write opened.
fn mark_open(t: &mut TournamentRecord, b: &Bracket) -> Vec<Ready> {
    let now = now_ms();
    let mark = format!("{OPENING}{now}");
    let mut open = Vec::new();
    for r in b.ready() {
        let key = (r.round as u32, r.index as u32);
        match t.rooms.iter_mut().find(|(ro, i, _)| (*ro, *i) == key) {
            None => t.rooms.push((key.0, key.1, mark.clone())),
            Some(e) if stale(&e.2, now) => e.2 = mark.clone(),
            Some(_) => continue,
        }
        open.push(r);
    }
    open
}

/// Makes the rooms of pairings this pod opened, and records them; answers those made.
/// A pairing whose room could not be made loses its mark, so that the next advance or
/// start opens it again.
async fn open_rooms(
    o: &Organizing,
    t: &TournamentRecord,
    opened: Vec<Ready>,
) -> ApiResult<Vec<(Ready, RoomId)>> {
    let (store, rooms) = (&o.store, &o.rooms);
    let mut out = Vec::new();
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
        let made_room = rooms
            .send(Create {
                req,
                owner: organizer.clone(),
                tournament: Some(slot),
                quota: false,
            })
            .await
            .map_err(ApiError::from)
            .and_then(|r| r);
        let key = (r.round as u32, r.index as u32);
        let room = match made_room {
            Ok((room, _)) => room,
            // The other pairings still open; this one opens again later.
            Err(e) => {
                tracing::error!(tournament = %t.id, round = r.round, index = r.index, error = %e.message, "a pairing's room was not made");
                update(store, &t.id, |t| {
                    if let Some(e) = t.rooms.iter_mut().find(|(ro, i, _)| (*ro, *i) == key) {
                        e.2 = String::new();
                    }
                    Ok(())
                })
                .await?;
                continue;
            }
        };
        update(store, &t.id, |t| {
            if let Some(e) = t.rooms.iter_mut().find(|(ro, i, _)| (*ro, *i) == key) {
                e.2 = room.0.clone();
            }
            Ok(())
        })
        .await?;
        out.push((r, room));
    }
    Ok(out)
}

/// Tells the tournament's watchers that `decided` was won and `opened` are ready. Best
/// effort: the REST view is the record.
async fn announce(
    o: &Organizing,
    t: &TournamentRecord,
    decided: Option<(&TournamentSlot, &UserId)>,
    opened: &[(Ready, RoomId)],
) {
    if t.room_id.is_empty() {
        return;
    }
    let u = v1::TournamentUpdate {
        tournament_id: t.id.clone(),
        round: decided.map_or(0, |(s, _)| s.round + 1),
        index: decided.map_or(0, |(s, _)| s.index + 1),
        winner_user_id: decided.map(|(_, w)| w.0.clone()).unwrap_or_default(),
        opened: opened
            .iter()
            .map(|(r, room)| v1::TournamentPairing {
                round: r.round as u32 + 1,
                index: r.index as u32 + 1,
                players: r.players.iter().map(|u| u.0.clone()).collect(),
                room_id: room.0.clone(),
            })
            .collect(),
        champion_user_id: t.champion.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
    };
    let update = v1::game_update::Update::Tournament(u);
    let found = o
        .rooms
        .send(rooms::Resolve {
            room_id: t.room_id.clone(),
            code: String::new(),
        })
        .await;
    match found {
        Ok(Ok((_, RoomRef::Local(addr)))) => addr.do_send(rooms::Announce(update)),
        Ok(Ok((id, RoomRef::Remote(home)))) => o.link.send(
            &home,
            v1::pod_message::Body::Announce(v1::Announce {
                room_id: id.0.clone(),
                update: Some(v1::GameUpdate {
                    room_id: id.0,
                    update: Some(update),
                }),
            }),
        ),
        other => {
            tracing::warn!(tournament = %t.id, result = ?other.map(|r| r.map(|_| ())), "the watchers' room was not found")
        }
    }
}

/// The organizer starts it: seeding by rating, byes through, the first rooms open. Started
/// again while it runs, it opens the pairings left without a room.
pub(crate) async fn start(o: &Organizing, id: &str, who: &Identity) -> ApiResult<TournamentRecord> {
    let store = &o.store;
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
        if t.state == "running" {
            let b = bracket_of(t)?;
            return Ok(mark_open(t, &b));
        }
        if t.state != "registering" {
            return Err(ApiError::new(
                ErrorCode::IllegalMove,
                "the tournament is over",
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
    let made = open_rooms(o, &t, opened).await?;
    if !made.is_empty() {
        announce(o, &t, None, &made).await;
    }
    Ok(store.tournaments.tournament(id).await?.unwrap_or(t))
}

/// A pairing's room settled with `winner`: the bracket advances, and the pairings it
/// makes ready open. A pairing already advanced (a retry) changes nothing.
pub(crate) async fn advance(
    o: &Organizing,
    slot: &TournamentSlot,
    winner: &UserId,
) -> ApiResult<()> {
    let mut first = false;
    let (t, opened) = update(&o.store, &slot.id, |t| {
        let mut b = bracket_of(t)?;
        let (round, index) = (slot.round as usize, slot.index as usize);
        let done = b
            .rounds
            .get(round)
            .and_then(|r| r.get(index))
            .is_some_and(|p| p.winner.is_some());
        if done {
            first = false;
            return Ok(Vec::new());
        }
        first = true;
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
    let made = open_rooms(o, &t, opened).await?;
    if first {
        announce(o, &t, Some((slot, winner)), &made).await;
    }
    Ok(())
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
                                .and_then(|(_, _, id)| made(id));
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
        "room_id": made(&t.room_id),
    })
}
