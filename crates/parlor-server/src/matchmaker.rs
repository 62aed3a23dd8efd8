//! The matchmaker: players queue for a kind, and a group forms from the players whose
//! ratings lie within a window that widens while they wait. A group gets a new room of
//! the kind with its seats reserved (a match names its two players; a trivia arena starts
//! at the group's size), and each player is told with `Matched`.
//!
//! One queue per pod: in cluster mode players are grouped with others on their own pod
//! (docs/games.md says so; an atomic pairing step in Redis comes next).

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use parlor_core::UserId;
use parlor_protocol::{encode_envelope, v1, v1::envelope::Body};

use crate::{
    rooms::{Create, RoomManager},
    ws::{Identity, Outbox},
    Config,
};

/// How often the queues are looked at.
const TICK: Duration = Duration::from_millis(200);
/// How long a cancel is remembered, for an Enqueue still reading its rating behind it.
const CANCEL_KEPT: Duration = Duration::from_secs(60);

static ORDER: AtomicU64 = AtomicU64::new(1);

/// A stamp for a Matchmake or a cancel, taken when the session receives it: a later stamp
/// wins, whatever order the two reach the matchmaker in.
pub(crate) fn stamp() -> u64 {
    ORDER.fetch_add(1, Ordering::Relaxed)
}

/// A queued ticket's rating (set on arrival).
fn rating(t: &Ticket) -> f64 {
    t.rating.unwrap_or_default()
}

/// One player waiting.
pub(crate) struct Ticket {
    pub(crate) who: Identity,
    pub(crate) outbox: Outbox,
    pub(crate) request_id: u64,
    pub(crate) kind: String,
    pub(crate) min: u32,
    pub(crate) max: u32,
    /// The stored rating; None: the kind's starting one.
    pub(crate) rating: Option<f64>,
    pub(crate) since: Instant,
    /// When the session received the Matchmake (`stamp`).
    pub(crate) stamp: u64,
}

/// Queues a player (a ticket of theirs for the same kind is replaced).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue(pub(crate) Ticket);

/// Takes a player out of a kind's queue (every kind if None); true if they were in it.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Cancel {
    pub(crate) user: UserId,
    pub(crate) kind: Option<String>,
    pub(crate) stamp: u64,
}

pub(crate) struct Matchmaker {
    games: std::sync::Arc<parlor_games::Registry>,
    window: f64,
    widen: f64,
    rooms: Addr<RoomManager>,
    waiting: Vec<Ticket>,
    /// Recent cancels by (user, kind or None for every kind): their stamp and time.
    cancels: HashMap<(UserId, Option<String>), (u64, Instant)>,
}

impl Matchmaker {
    pub(crate) fn new(
        cfg: &Config,
        rooms: Addr<RoomManager>,
        games: std::sync::Arc<parlor_games::Registry>,
    ) -> Self {
        Self {
            games,
            window: cfg.rooms.matchmaking_window,
            widen: cfg.rooms.matchmaking_widen_per_sec,
            rooms,
            waiting: Vec::new(),
            cancels: HashMap::new(),
        }
    }

    fn reach(&self, t: &Ticket, now: Instant) -> f64 {
        self.window + self.widen * now.duration_since(t.since).as_secs_f64()
    }

    /// Groups that can form now, oldest ticket first: the oldest waiting player takes the
    /// closest players in rating that both of them reach, up to the group's most.
    fn groups(&mut self, now: Instant) -> Vec<Vec<Ticket>> {
        self.waiting.sort_by_key(|t| t.since);
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            let t = &self.waiting[i];
            let mut near: Vec<(f64, usize)> = self
                .waiting
                .iter()
                .enumerate()
                .filter(|(j, o)| {
                    *j != i
                        && o.who.user_id != t.who.user_id
                        && o.kind == t.kind
                        && (o.min, o.max) == (t.min, t.max)
                        && (rating(o) - rating(t)).abs()
                            <= self.reach(t, now).min(self.reach(o, now))
                })
                .map(|(j, o)| ((rating(o) - rating(t)).abs(), j))
                .collect();
            if near.len() + 1 < t.min as usize {
                i += 1;
                continue;
            }
            near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut take: Vec<usize> = near
                .iter()
                .take(t.max as usize - 1)
                .map(|(_, j)| *j)
                .collect();
            take.push(i);
            take.sort_unstable_by(|a, b| b.cmp(a));
            let mut group: Vec<Ticket> = take.into_iter().map(|j| self.waiting.remove(j)).collect();
            group.sort_by_key(|t| t.since);
            out.push(group);
            // The indexes moved: start over from the oldest left.
            i = 0;
        }
        out
    }

    /// A room for the group, then `Matched` to each of them.
    fn seat(&mut self, group: Vec<Ticket>, ctx: &mut Context<Self>) {
        let kind = group[0].kind.clone();
        let ids: Vec<String> = group.iter().map(|t| t.who.user_id.0.clone()).collect();
        let config = match kind.as_str() {
            "match" => v1::game_config::Config::Match(v1::MatchConfig {
                players: ids.clone(),
                ..Default::default()
            }),
            _ => v1::game_config::Config::Trivia(v1::TriviaConfig {
                auto_start_players: group.len() as u32,
                rated: true,
                players: ids.clone(),
                ..Default::default()
            }),
        };
        let req = v1::CreateRoom {
            name: format!("{kind} for {}", group.len()),
            kind: kind.clone(),
            game: Some(v1::GameConfig {
                config: Some(config),
            }),
            ..Default::default()
        };
        let create = self.rooms.send(Create {
            req,
            owner: group[0].who.clone(),
            tournament: None,
        });
        ctx.spawn(create.into_actor(self).map(move |res, _act, _| {
            let room = match res {
                Ok(Ok((id, _))) => id,
                other => {
                    tracing::warn!(kind, result = ?other.map(|r| r.map(|_| ())), "matchmaking could not make a room");
                    // Not queued again: a cancel may have come meanwhile. Each is told.
                    for t in &group {
                        t.outbox.push(parlor_protocol::error_envelope(
                            t.request_id,
                            parlor_protocol::ErrorCode::Unavailable,
                            "no room could be made for your group; queue again",
                        ));
                    }
                    return;
                }
            };
            for t in &group {
                t.outbox.push(encode_envelope(
                    t.request_id,
                    0,
                    Body::Matched(v1::Matched {
                        room_id: room.0.clone(),
                        kind: kind.clone(),
                        players: ids.clone(),
                    }),
                ));
            }
        }));
    }
}

impl Actor for Matchmaker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| {
            act.cancels.retain(|_, (_, at)| at.elapsed() < CANCEL_KEPT);
            for group in act.groups(Instant::now()) {
                act.seat(group, ctx);
            }
        });
    }
}

impl Handler<Enqueue> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let mut t = msg.0;
        let system = self
            .games
            .get(&t.kind)
            .map_or(parlor_games::RatingSystem::Elo, |k| k.rating);
        t.rating = Some(
            t.rating
                .unwrap_or_else(|| crate::rooms::ratings::start(system).0),
        );
        let cancelled = |kind: Option<String>| {
            self.cancels
                .get(&(t.who.user_id.clone(), kind))
                .is_some_and(|(s, _)| *s > t.stamp)
        };
        // A cancel the session received after this Matchmake, which got here first.
        if cancelled(Some(t.kind.clone())) || cancelled(None) {
            return;
        }
        self.waiting
            .retain(|w| !(w.who.user_id == t.who.user_id && w.kind == t.kind));
        self.waiting.push(t);
        for group in self.groups(Instant::now()) {
            self.seat(group, ctx);
        }
    }
}

impl Handler<Cancel> for Matchmaker {
    type Result = bool;

    fn handle(&mut self, msg: Cancel, _ctx: &mut Context<Self>) -> bool {
        let before = self.waiting.len();
        self.waiting.retain(|w| {
            let theirs =
                w.who.user_id == msg.user && msg.kind.as_ref().is_none_or(|k| *k == w.kind);
            !(theirs && w.stamp < msg.stamp)
        });
        self.cancels
            .insert((msg.user, msg.kind), (msg.stamp, Instant::now()));
        self.waiting.len() != before
    }
}
