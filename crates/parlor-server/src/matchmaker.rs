//! The matchmaker: players queue for a kind, and a group forms from the players whose
//! ratings lie within a window that widens while they wait (the rule is in
//! `parlor_cluster::Queues`). A group gets a new room of the kind, homed on the pod that
//! formed it, with its seats reserved (a match names its two players; a trivia arena
//! starts at the group's size), and each player is told with `Matched`, on whatever pod
//! their session is.
//!
//! The queues are the cluster's (`Backends::queues`): in memory on one pod, on Redis in
//! cluster mode, where one script takes a group out, so that two pods never seat a player
//! twice. A pod pairs a kind after it queues a ticket, and on each tick while that kind's
//! queue is not empty.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use parlor_cluster::{Presence, Queues};
use parlor_core::{GlobalRole, UserId};
use parlor_protocol::{encode_envelope, v1, v1::envelope::Body, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::{
    relay::Relay,
    rooms::{Create, RoomManager},
    ws::Identity,
    Config,
};

/// How often the queues are looked at.
const TICK: Duration = Duration::from_millis(200);

/// The kinds the matchmaker seats.
pub(crate) const KINDS: [&str; 2] = ["match", "trivia"];

static LAST: AtomicU64 = AtomicU64::new(0);

/// A stamp for a Matchmake or a cancel, taken when the session receives it: a later stamp
/// wins, whatever order the two reach the queue in. Microseconds of the wall clock, never
/// repeating on a pod, so that stamps from different pods compare too.
pub(crate) fn stamp() -> u64 {
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(u64::MAX);
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

/// One player asking to be queued.
pub(crate) struct Ticket {
    pub(crate) who: Identity,
    pub(crate) session: String,
    pub(crate) request_id: u64,
    pub(crate) kind: String,
    pub(crate) min: u32,
    pub(crate) max: u32,
    /// The stored rating; None: the kind's starting one.
    pub(crate) rating: Option<f64>,
    /// When the session received the Matchmake (`stamp`).
    pub(crate) stamp: u64,
}

/// Where a queued player is, carried in the queue with their ticket.
#[derive(Serialize, Deserialize)]
struct Seat {
    pod: String,
    session: String,
    request_id: u64,
    name: String,
    role: GlobalRole,
}

/// Queues a player (a ticket of theirs for the same kind is replaced).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Enqueue(pub(crate) Ticket);

/// Takes a player out of a kind's queue (every kind if None).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Cancel {
    pub(crate) user: UserId,
    pub(crate) kind: Option<String>,
    pub(crate) stamp: u64,
}

/// What the matchmaker is built from.
pub(crate) struct MatchmakerParts {
    pub(crate) games: Arc<parlor_games::Registry>,
    pub(crate) rooms: Addr<RoomManager>,
    pub(crate) queues: Arc<dyn Queues>,
    pub(crate) presence: Arc<dyn Presence>,
    pub(crate) relay: Arc<Relay>,
}

pub(crate) struct Matchmaker {
    p: MatchmakerParts,
    pod: String,
    window: f64,
    widen: f64,
    /// Kinds with a pairing in flight: a slow Redis gets one at a time per kind.
    pairing: HashSet<&'static str>,
    /// Kinds whose queue had tickets at this pod's last look: paired on each tick.
    active: HashSet<&'static str>,
}

impl Matchmaker {
    pub(crate) fn new(cfg: &Config, p: MatchmakerParts) -> Self {
        Self {
            p,
            pod: cfg.server.pod_name.clone(),
            window: cfg.rooms.matchmaking_window,
            widen: cfg.rooms.matchmaking_widen_per_sec,
            pairing: HashSet::new(),
            active: HashSet::new(),
        }
    }

    /// Takes out the groups of `kind` that can form now, and seats them.
    fn pair(&mut self, kind: &'static str, ctx: &mut Context<Self>) {
        if !self.pairing.insert(kind) {
            return;
        }
        let queues = self.p.queues.clone();
        let (window, widen) = (self.window, self.widen);
        let fut = async move { queues.pair(kind, window, widen).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.pairing.remove(kind);
            match res {
                Ok(paired) => {
                    if paired.waiting == 0 {
                        act.active.remove(kind);
                    }
                    for g in paired.groups {
                        act.seat(kind, g, ctx);
                    }
                }
                Err(e) => tracing::warn!(kind, error = %e, "matchmaking could not pair"),
            }
        }));
    }

    /// A room for the group, then `Matched` to each of them. A group with a player whose
    /// pod has stopped is not seated: the others go back in the queue.
    fn seat(
        &mut self,
        kind: &'static str,
        group: Vec<parlor_cluster::Ticket>,
        ctx: &mut Context<Self>,
    ) {
        let seats: Vec<(parlor_cluster::Ticket, Seat)> = group
            .into_iter()
            .filter_map(|t| {
                let seat = serde_json::from_str(&t.payload).ok()?;
                Some((t, seat))
            })
            .collect();
        let (presence, queues, rooms) = (
            self.p.presence.clone(),
            self.p.queues.clone(),
            self.p.rooms.clone(),
        );
        let me = self.pod.clone();
        let fut = async move {
            let live: HashSet<String> = match presence.pods().await {
                Ok(pods) => pods.into_iter().map(|p| p.name).collect(),
                // Unknown: seat them; a player who is gone forfeits as in any room.
                Err(_) => seats.iter().map(|(_, s)| s.pod.clone()).collect(),
            };
            let min = seats.first().map_or(2, |(t, _)| t.min) as usize;
            let here: Vec<_> = seats
                .into_iter()
                .filter(|(_, s)| s.pod == me || live.contains(&s.pod))
                .collect();
            if here.len() < min {
                for (t, _) in &here {
                    if let Err(e) = queues.enqueue(kind, t.clone()).await {
                        // Their session still waits for Matched: it times out and queues again.
                        tracing::warn!(kind, error = %e, "a player could not be queued again");
                    }
                }
                return (here, None);
            }
            let created = rooms.send(create(kind, &here)).await;
            let room = match created {
                Ok(Ok((id, _))) => Ok(id),
                other => Err(format!("{:?}", other.map(|r| r.map(|_| ())))),
            };
            (here, Some(room))
        };
        ctx.spawn(fut.into_actor(self).map(move |(group, room), act, _| {
            // None: queued again, nobody to tell.
            let Some(room) = room else {
                return;
            };
            let ids: Vec<String> = group.iter().map(|(t, _)| t.user.0.clone()).collect();
            let frame = |s: &Seat| match &room {
                Ok(room) => encode_envelope(
                    s.request_id,
                    0,
                    Body::Matched(v1::Matched {
                        room_id: room.0.clone(),
                        kind: kind.to_owned(),
                        players: ids.clone(),
                    }),
                ),
                // Not queued again: a cancel may have come meanwhile. Each is told.
                Err(_) => parlor_protocol::error_envelope(
                    s.request_id,
                    ErrorCode::Unavailable,
                    "no room could be made for your group; queue again",
                ),
            };
            if let Err(why) = &room {
                tracing::warn!(kind, why, "matchmaking could not make a room");
            }
            for (_, s) in &group {
                act.p.relay.to_session(&s.pod, &s.session, frame(s));
            }
        }));
    }
}

/// The room a group is seated in, owned by its oldest player.
fn create(kind: &str, group: &[(parlor_cluster::Ticket, Seat)]) -> Create {
    let ids: Vec<String> = group.iter().map(|(t, _)| t.user.0.clone()).collect();
    let config = match kind {
        "match" => v1::game_config::Config::Match(v1::MatchConfig {
            players: ids,
            ..Default::default()
        }),
        _ => v1::game_config::Config::Trivia(v1::TriviaConfig {
            auto_start_players: group.len() as u32,
            rated: true,
            players: ids,
            ..Default::default()
        }),
    };
    let (first, seat) = &group[0];
    Create {
        req: v1::CreateRoom {
            name: format!("{kind} for {}", group.len()),
            kind: kind.to_owned(),
            game: Some(v1::GameConfig {
                config: Some(config),
            }),
            ..Default::default()
        },
        owner: Identity {
            user_id: first.user.clone(),
            name: seat.name.clone(),
            role: seat.role,
        },
        tournament: None,
        quota: false,
    }
}

impl Actor for Matchmaker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| {
            let kinds: Vec<&'static str> = act.active.iter().copied().collect();
            for kind in kinds {
                act.pair(kind, ctx);
            }
        });
    }
}

impl Handler<Enqueue> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) {
        let t = msg.0;
        let Some(kind) = KINDS.into_iter().find(|k| *k == t.kind) else {
            return;
        };
        let system = self
            .p
            .games
            .get(kind)
            .map_or(parlor_games::RatingSystem::Elo, |k| k.rating);
        let seat = Seat {
            pod: self.pod.clone(),
            session: t.session,
            request_id: t.request_id,
            name: t.who.name,
            role: t.who.role,
        };
        let ticket = parlor_cluster::Ticket {
            user: t.who.user_id,
            rating: t
                .rating
                .unwrap_or_else(|| crate::rooms::ratings::start(system).0),
            min: t.min,
            max: t.max,
            stamp: t.stamp,
            payload: serde_json::to_string(&seat).unwrap_or_default(),
        };
        let (queues, relay, pod) = (
            self.p.queues.clone(),
            self.p.relay.clone(),
            self.pod.clone(),
        );
        let fut = async move { queues.enqueue(kind, ticket).await };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| match res {
            // Queued: pair at once rather than at the next tick.
            Ok(true) => {
                act.active.insert(kind);
                act.pair(kind, ctx)
            }
            // A later cancel came first.
            Ok(false) => {}
            Err(e) => relay.to_session(
                &pod,
                &seat.session,
                parlor_protocol::error_envelope(
                    seat.request_id,
                    ErrorCode::Unavailable,
                    format!("the matchmaking queue is unavailable: {e}"),
                ),
            ),
        }));
    }
}

impl Handler<Cancel> for Matchmaker {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) {
        let kinds: Vec<&'static str> = KINDS
            .into_iter()
            .filter(|k| msg.kind.as_deref().is_none_or(|m| m == *k))
            .collect();
        let queues = self.p.queues.clone();
        ctx.spawn(
            async move {
                for kind in kinds {
                    if let Err(e) = queues.cancel(kind, &msg.user, msg.stamp).await {
                        tracing::warn!(kind, error = %e, "a matchmaking cancel failed");
                    }
                }
            }
            .into_actor(self),
        );
    }
}
