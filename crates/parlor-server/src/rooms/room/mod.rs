//! RoomActor: one per live room. It is the only writer of its room, so admission, rate
//! limits, permissions and publishing are serialised per room without locks.
//!
//! Invariants:
//! - The actor is its room's one sequencer: it runs only on the room's home pod (it holds the
//!   lease) and numbers every event itself. Each event is encoded once and published
//!   through the Broker with the checkpoint writes of what it changed, in one atomic step;
//!   the Broker delivers it to each subscribed pod's LocalFanout.
//! - Nothing is answered before its event is recorded: an answer waits for the publish. A
//!   publish that fails (the backend is down, or the lease was lost) gets the sender an
//!   UNAVAILABLE error, and the room reloads from its checkpoint, which holds exactly the
//!   recorded events; until then actions are refused as unavailable.
//! - A joiner gets RoomJoined (snapshot at `last_seq`) and any replay before it is added to
//!   the fan-out, inside one `AtomicResponse`, so it sees every later event exactly once.
//! - A panic inside a handler is caught at the handler boundary, counted and reported (the
//!   Sentry panic hook still fires). The actor then restarts in place: it drops its cached
//!   room and reloads it from the checkpoint; meanwhile the room is absent, so no message
//!   is handled against a half-updated room. It does not stop, because a stopped actix context
//!   drops its spawned work and keeps draining its mailbox until the Supervisor restarts it.
//!   Local members and their outboxes are pod-local state and survive.
//! - Directory and store writes go through one ordered writer task per room, detached from
//!   the actor's context, so a restart loses none and a reload first waits for them.
//! - A member whose socket drops keeps their seat, marked away, for
//!   `rooms.reconnect_grace_secs`; rejoining in time needs no password and keeps the role.
//!
//! Layout: this file holds the actor, membership and its handlers; `actions` what members
//! do (chat, events, presence, settings, moderation); `recording` publishing, reloading
//! and stepping down.

mod actions;
mod applied;
mod game;
mod recording;
mod takeover;

use applied::Applied;
use recording::Published;
pub(crate) use recording::{HandOver, Recheck};

use std::{
    collections::{HashMap, VecDeque},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, AtomicResponse, Context, Handler, Message,
    SpawnHandle, Supervised, WrapFuture,
};
use futures_util::FutureExt as _;
use parlor_cluster::{
    checkpoint::{self, Part},
    BoxFuture, Claim, ClusterError, Lease, Origin, Replay, SubscriptionId,
};
use parlor_core::{
    check, now_ms, Action as Perm, CoreError, GlobalRole, Limits, MemberState, Room, RoomId,
    RoomRole, TokenBucket, UserId,
};
use parlor_protocol::{
    encode_body, encode_envelope, error_envelope, frame_with_seq,
    v1::{self, envelope::Body},
    ErrorCode,
};
use parlor_store::{ChatRecord, Stats, StatsDelta, StatsSubject};
use tokio::sync::{mpsc, oneshot};

use super::{
    fanout::LocalFanout,
    manager::{game_of, Closed, Homed, Relet, RoomDeps, RoomManager},
    peer::Peer,
    writer::{spawn_writer, Backlog, Write},
};
use crate::{
    error::{ApiError, ApiResult},
    stats::Record,
    ws::Identity,
};

/// Events a room's own fan-out keeps for members seated just behind it.
const RESUME_WINDOW: usize = 64;

/// The game-event type that panics a room when `debug.fault_injection` is on.
const PANIC_EVENT: &str = "parlor.debug.panic";

/// How a session wants to join.
#[derive(Debug, Clone)]
pub(crate) struct JoinSpec {
    pub(crate) role: RoomRole,
    pub(crate) password: String,
    pub(crate) last_seq: u64,
}

impl Default for JoinSpec {
    fn default() -> Self {
        Self {
            role: RoomRole::Player,
            password: String::new(),
            last_seq: 0,
        }
    }
}

/// Joins a session to the room; RoomJoined goes straight to its peer.
#[derive(Message)]
#[rtype(result = "ApiResult<()>")]
pub(crate) struct Join {
    pub(crate) who: Identity,
    pub(crate) session: u64,
    /// Where the snapshot and answers go.
    pub(crate) peer: Peer,
    pub(crate) spec: JoinSpec,
    pub(crate) request_id: u64,
}

/// A session leaves (or disconnected).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Leave {
    pub(crate) room_id: RoomId,
    pub(crate) user_id: UserId,
    pub(crate) session: u64,
    pub(crate) reason: v1::LeaveReason,
    pub(crate) request_id: u64,
    /// Where RoomLeft goes; None when the socket is already gone.
    pub(crate) reply: Option<Peer>,
}

/// Something a member does in the room.
pub(crate) enum Action {
    Chat(String),
    Event(v1::GameEvent),
    Presence(v1::PresenceUpdate),
    Update(v1::UpdateRoom),
    Moderate(v1::Moderate),
    Game(v1::GameAction),
}

impl Action {
    /// The request that asks for this action, as a client sends it (for forwarding).
    pub(crate) fn into_body(self, room: &RoomId) -> Body {
        match self {
            Action::Chat(text) => Body::Chat(v1::Chat {
                room_id: room.0.clone(),
                text,
                to_user_id: String::new(),
            }),
            Action::Event(ev) => Body::GameEvent(ev),
            Action::Presence(p) => Body::PresenceUpdate(p),
            Action::Update(u) => Body::UpdateRoom(u),
            Action::Moderate(m) => Body::Moderate(m),
            Action::Game(a) => Body::GameAction(a),
        }
    }
}

/// A member's action; errors go back to `reply` with the request id.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Act {
    pub(crate) user_id: UserId,
    pub(crate) session: u64,
    pub(crate) request_id: u64,
    pub(crate) reply: Peer,
    pub(crate) action: Action,
}

/// Who is acting: taken from the message and the member's roles, so that no member is
/// copied per event.
struct Caller {
    user_id: UserId,
    global: GlobalRole,
    role: RoomRole,
}

struct Local {
    session: u64,
    peer: Peer,
    bucket: TokenBucket,
    strikes: u32,
    /// This member's counters since the last flush (kept here: no map lookup per event).
    stats: Stats,
    /// Since when its time in the room has not been counted.
    since: Instant,
}

impl Local {
    /// Tells this session it is no longer in the room: RoomLeft on the wire, after the room
    /// events delivered so far, and a notice so that it forgets the room.
    fn dismiss(&self, fanout: &LocalFanout, room: &RoomId, reason: v1::LeaveReason) {
        fanout.flush();
        self.peer.push(encode_envelope(
            0,
            0,
            Body::RoomLeft(v1::RoomLeft {
                room_id: room.0.clone(),
                reason: reason as i32,
            }),
        ));
        self.peer.room_gone(room);
    }
}

/// An admitted joiner, before its snapshot goes out.
struct Joining {
    since: u64,
    local: Local,
    role: RoomRole,
    user: UserId,
    /// A new member (not a session taking its seat over).
    fresh: bool,
    /// The publish of the join's event, if it made one.
    recorded: Option<Published>,
}

/// The actor that runs one room.
pub(crate) struct RoomActor {
    id: RoomId,
    /// None while the room reloads from its checkpoint.
    room: Option<Room>,
    /// What makes this pod the room's home; every publish is fenced by it.
    lease: Lease,
    /// The seq of the newest event published.
    seq: u64,
    /// The seq of the newest event known to be recorded.
    recorded: u64,
    /// The room as this actor last held it, kept while it reloads: if the backend comes
    /// back without the room's checkpoint (Redis lost its data), the room goes on from it.
    stale: Option<Room>,
    deps: Arc<RoomDeps>,
    manager: Addr<RoomManager>,
    fanout: Arc<LocalFanout>,
    locals: HashMap<UserId, Local>,
    sub: Option<SubscriptionId>,
    recent_chat: VecDeque<v1::ChatMessage>,
    /// Chat lines of a persistent room for the store: recorded ones, and before them, by
    /// seq, those whose publish has not returned yet.
    pending_chat: Vec<ChatRecord>,
    unrecorded_chat: VecDeque<(u64, ChatRecord)>,
    pending_stats: HashMap<StatsSubject, Stats>,
    room_stats: Stats,
    closed: bool,
    timers: Vec<SpawnHandle>,
    writer: mpsc::UnboundedSender<Write>,
    /// The writer's unsaved chat lines.
    backlog: Backlog,
    away: HashMap<UserId, SpawnHandle>,
    /// Requests applied, so that retries are answered, not applied again.
    applied: Applied,
    /// The request being handled: what the events it makes are recorded as caused by.
    acting: Origin,
    /// A reload is under way (its retries included).
    reloading: bool,
    /// A hand-over asked for while the room was reloading, begun once the reload is done.
    hand_over: Option<oneshot::Sender<bool>>,
    /// The room was handed over to another pod (closed here, but not gone).
    handed_over: bool,
    /// A server-run room's game; None for a relay room.
    game: Option<parlor_games::Host>,
    /// The game changed since its state was last written with an event.
    game_dirty: bool,
    /// The game's armed timers, and its beat if it has one.
    game_timers: HashMap<String, SpawnHandle>,
    game_tick: Option<SpawnHandle>,
    /// Members whose cursor moved in this window, and the window's timer.
    moved: std::collections::HashSet<UserId>,
    cursor_timer: Option<SpawnHandle>,
}

impl RoomActor {
    pub(crate) fn new(homed: Homed, deps: Arc<RoomDeps>, manager: Addr<RoomManager>) -> Self {
        let Homed {
            room,
            lease,
            seq,
            game,
        } = homed;
        let (writer, backlog) = spawn_writer(deps.clone(), room.info.id.clone());
        // The newest events are kept for a member who resumes while a publish is in
        // flight: the replay reads what is recorded, and the kept events bring the rest.
        let fanout = LocalFanout::keeping(deps.metrics.clone(), RESUME_WINDOW);
        fanout.set_echo(room.settings.echo_events);
        Self {
            id: room.info.id.clone(),
            room: Some(room),
            lease,
            seq,
            recorded: seq,
            stale: None,
            fanout,
            deps,
            manager,
            locals: HashMap::new(),
            sub: None,
            recent_chat: VecDeque::new(),
            pending_chat: Vec::new(),
            unrecorded_chat: VecDeque::new(),
            pending_stats: HashMap::new(),
            room_stats: Stats::default(),
            closed: false,
            timers: Vec::new(),
            writer,
            backlog,
            away: HashMap::new(),
            applied: Applied::default(),
            acting: Origin::default(),
            reloading: false,
            hand_over: None,
            handed_over: false,
            game,
            game_dirty: false,
            game_timers: HashMap::new(),
            game_tick: None,
            moved: Default::default(),
            cursor_timer: None,
        }
    }

    /// Runs a handler body, turning a panic into a restart instead of a dead pod.
    fn guarded<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut Self, &mut Context<Self>) -> R,
    ) -> Option<R> {
        match catch_unwind(AssertUnwindSafe(|| f(self, ctx))) {
            Ok(r) => Some(r),
            Err(_) => {
                tracing::error!(room_id = %self.id, "room actor panicked; restarting it");
                self.deps
                    .metrics
                    .actor_restarts
                    .with_label_values(&["room"])
                    .inc();
                self.room = None;
                self.acting = Origin::default();
                self.reload(ctx);
                None
            }
        }
    }

    /// The room is gone from the directory: tell local members and close for good.
    fn vanish(&mut self, ctx: &mut Context<Self>) {
        self.dismiss_all();
        self.shut(ctx);
    }

    /// Tells every local member the room closed, keeping their counters for the flush.
    fn dismiss_all(&mut self) {
        for (user, mut local) in self.locals.drain() {
            Self::collect_stats(&mut self.pending_stats, &user, &mut local);
            self.fanout.remove(&user);
            local.dismiss(&self.fanout, &self.id, v1::LeaveReason::Closed);
        }
    }

    /// Counts activity. Seated members count into their `Local`; the rest (a join, before
    /// the seat exists) go straight to the pending map.
    fn count(&mut self, user: &UserId, add: Stats) {
        self.room_stats.add(&add);
        match self.locals.get_mut(user) {
            Some(local) => local.stats.add(&add),
            None => self
                .pending_stats
                .entry(StatsSubject::User(user.clone()))
                .or_default()
                .add(&add),
        }
    }

    /// Moves a member's counters into the pending map (flush, or the member leaving).
    fn collect_stats(pending: &mut HashMap<StatsSubject, Stats>, user: &UserId, local: &mut Local) {
        // Time in the room counts at every flush, so a long stay is not lost to a crash.
        let now = Instant::now();
        let ms = now.duration_since(local.since).as_millis();
        local.since = now;
        local.stats.room_ms = local
            .stats
            .room_ms
            .saturating_add(u64::try_from(ms).unwrap_or(u64::MAX));
        if local.stats != Stats::default() {
            let add = std::mem::take(&mut local.stats);
            pending
                .entry(StatsSubject::User(user.clone()))
                .or_default()
                .add(&add);
        }
    }

    /// Hands stats to the tracker and queues pending chat lines for the store.
    fn flush(&mut self) {
        for (user, local) in self.locals.iter_mut() {
            Self::collect_stats(&mut self.pending_stats, user, local);
        }
        if self.room_stats != Stats::default() {
            let add = std::mem::take(&mut self.room_stats);
            self.pending_stats
                .entry(StatsSubject::Room(self.id.clone()))
                .or_default()
                .add(&add);
        }
        if !self.pending_stats.is_empty() {
            let (rooms, users): (Vec<_>, Vec<_>) = self
                .pending_stats
                .drain()
                // A visitor is one session of no one: counting it would leave a row forever.
                .filter(|(subject, _)| !matches!(subject, StatsSubject::User(u) if u.is_visitor()))
                .map(|(subject, add)| StatsDelta { subject, add })
                .partition(|d| matches!(d.subject, StatsSubject::Room(_)));
            if !users.is_empty() {
                self.deps.user_stats.do_send(Record { batch: users });
            }
            if !rooms.is_empty() {
                self.deps.room_stats.do_send(Record { batch: rooms });
            }
        }
        if !self.pending_chat.is_empty() {
            let lines = std::mem::take(&mut self.pending_chat);
            self.backlog.handed(lines.len());
            let _ = self.writer.send(Write::Chat(lines));
        }
    }

    /// What a closed room answers: a room that moved is retried, one that closed is gone.
    fn closed_error(&self) -> CoreError {
        if self.handed_over {
            CoreError::new(
                ErrorCode::Unavailable,
                "the room is moving to another pod; try again",
            )
        } else {
            CoreError::new(ErrorCode::RoomNotFound, "room closed")
        }
    }

    fn err(&self, to: &Peer, rid: u64, e: &CoreError) {
        self.deps.metrics.error(e.code);
        self.direct(to, error_envelope(rid, e.code, &e.message));
    }

    /// Sends one member a frame outside the room sequence, after the room events already
    /// delivered, which the fan-out may still be batching.
    fn direct(&self, to: &Peer, frame: bytes::Bytes) {
        self.fanout.flush();
        to.push(frame);
    }

    fn snapshot(&self, room: &Room, role: RoomRole, last_seq: u64, resync: bool) -> v1::RoomJoined {
        v1::RoomJoined {
            room: Some(room.summary()),
            settings: Some(room.settings.to_proto()),
            members: room.members.iter().map(|m| room.member_proto(m)).collect(),
            recent_chat: self.recent_chat.iter().cloned().collect(),
            last_seq,
            your_role: role.to_proto() as i32,
            resync,
            resumed: false,
        }
    }

    /// Closes a non-persistent room once its last member has gone.
    fn close_if_empty(&mut self, ctx: &mut Context<Self>) {
        let Some(room) = &self.room else { return };
        if !room.members.is_empty() || room.info.persistent || self.closed {
            return;
        }
        self.shut(ctx);
    }

    /// Closes the room for good: no timers, no subscription, out of the directory. The actor
    /// then idles until the last address to it is dropped.
    fn shut(&mut self, ctx: &mut Context<Self>) {
        let sub = self.stop(ctx);
        let deps = self.deps.clone();
        let id = self.id.clone();
        let (done, landed) = oneshot::channel();
        let _ = self.writer.send(Write::Barrier(done));
        // Detached, after queued writes, so that a late Put cannot resurrect the room.
        actix::spawn(async move {
            let _ = landed.await;
            if let Some(sub) = sub {
                let _ = deps.broker.unsubscribe(&id, sub).await;
            }
            let _ = deps.directory.remove(&id).await;
            let _ = deps.broker.forget(&id).await;
        });
        tracing::debug!(room_id = %self.id, "room closed");
    }

    /// Stops the actor's own work for good (closed, counters flushed, no timers, out of
    /// the manager's map); returns its subscription, for the caller to end.
    fn stop(&mut self, ctx: &mut Context<Self>) -> Option<SubscriptionId> {
        self.closed = true;
        self.flush();
        for t in self
            .timers
            .drain(..)
            .chain(self.away.drain().map(|(_, t)| t))
            .chain(self.game_timers.drain().map(|(_, t)| t))
            .chain(self.game_tick.take())
            .chain(self.cursor_timer.take())
        {
            ctx.cancel_future(t);
        }
        self.manager.do_send(Closed {
            room_id: self.id.clone(),
            room: ctx.address(),
        });
        self.sub.take()
    }

    fn remove_local(&mut self, user: &UserId, ctx: &mut Context<Self>) {
        if let Some(mut local) = self.locals.remove(user) {
            Self::collect_stats(&mut self.pending_stats, user, &mut local);
            self.applied.end(local.session);
        }
        self.fanout.remove(user);
        if self.fanout.len() == 0 {
            if let Some(sub) = self.sub {
                // In ctx.wait, so that a join right behind cannot subscribe a second sink.
                let deps = self.deps.clone();
                let id = self.id.clone();
                ctx.wait(
                    async move { deps.broker.unsubscribe(&id, sub).await }
                        .into_actor(self)
                        .map(move |res, act, _| {
                            if res.is_ok() && act.sub == Some(sub) {
                                act.sub = None;
                            }
                        }),
                );
            }
        }
    }

    /// Removes a member and tells the room; returns false if they were not a member.
    fn depart(&mut self, user: &UserId, reason: v1::LeaveReason, ctx: &mut Context<Self>) -> bool {
        if let Some(timer) = self.away.remove(user) {
            ctx.cancel_future(timer);
        }
        let Some(room) = self.room.as_mut() else {
            return false;
        };
        let (gone, promoted) = room.remove_member(user);
        if gone.is_none() {
            return false;
        }
        let promoted = promoted.map(|m| (m.user_id.clone(), room.member_proto(&m)));
        self.remove_local(user, ctx);
        let mut game_fx = self.game_left(user, reason);
        let left = Body::MemberLeft(v1::MemberLeft {
            room_id: self.id.0.clone(),
            user_id: user.0.clone(),
            reason: reason as i32,
        });
        self.emit(left, &[Part::Member(user.clone())], None, None, ctx);
        if let Some((heir, member)) = promoted {
            game_fx.extend(self.game_role(&heir));
            let updated = Body::MemberUpdated(v1::MemberUpdated {
                room_id: self.id.0.clone(),
                member: Some(member),
            });
            self.emit(updated, &[Part::Member(heir), Part::Info], None, None, ctx);
        }
        self.carry_out(game_fx, None, ctx);
        self.end_session(ctx);
        self.persist(false);
        true
    }

    /// Keeps a disconnected member's seat, marked away, until `grace` runs out.
    fn hold_seat(&mut self, user: UserId, grace: Duration, ctx: &mut Context<Self>) {
        self.remove_local(&user, ctx);
        self.set_status(&user, v1::PresenceStatus::Away, ctx);
        self.arm_away(user, grace, ctx);
    }

    fn arm_away(&mut self, user: UserId, grace: Duration, ctx: &mut Context<Self>) {
        let who = user.clone();
        let timer = ctx.run_later(grace, move |act, ctx| {
            if act.away.remove(&who).is_some() {
                act.depart(&who, v1::LeaveReason::Disconnected, ctx);
                act.close_if_empty(ctx);
            }
        });
        if let Some(old) = self.away.insert(user, timer) {
            ctx.cancel_future(old);
        }
    }

    /// Sets a member's presence status and tells the room.
    fn set_status(&mut self, user: &UserId, status: v1::PresenceStatus, ctx: &mut Context<Self>) {
        let Some(room) = self.room.as_mut() else {
            return;
        };
        let Some(member) = room.member_mut(user) else {
            return;
        };
        member.status = status as i32;
        if let Some(fut) = self.status_event(user) {
            self.settle(fut, None, None, ctx);
        }
        self.persist(false);
    }

    fn on_join(&mut self, msg: Join, ctx: &mut Context<Self>) -> Result<Joining, ApiError> {
        if self.closed {
            let e = self.closed_error();
            return Err(ApiError::new(e.code, e.message));
        }
        let room = self
            .room
            .as_mut()
            .ok_or_else(|| ApiError::unavailable("room is reloading"))?;
        let who = &msg.who;
        let rate = room.settings.event_rate_limit;
        let local = Local {
            session: msg.session,
            peer: msg.peer.clone(),
            bucket: TokenBucket::new(rate, rate, Instant::now()),
            strikes: 0,
            stats: Stats::default(),
            since: Instant::now(),
        };
        if let Some(existing) = room.member(&who.user_id) {
            // The same user from a new session takes the seat over; the room sees no change.
            // It keeps its seat's role, but asking for a role it may not have is refused
            // as a first join would be (a visitor watching may not ask to play).
            let role = existing.role;
            let asked = match msg.spec.role {
                RoomRole::Watcher => parlor_core::Action::JoinAsWatcher,
                _ => parlor_core::Action::JoinAsPlayer,
            };
            parlor_core::check(asked, who.role, Some(role), &room.policy())?;
            if let Some(old) = self.locals.get(&who.user_id) {
                if old.session != msg.session {
                    old.dismiss(&self.fanout, &self.id, v1::LeaveReason::Replaced);
                }
            }
            self.fanout.remove(&who.user_id);
            // The old session's counters stay the user's.
            if let Some(mut old) = self.locals.remove(&who.user_id) {
                Self::collect_stats(&mut self.pending_stats, &who.user_id, &mut old);
            }
            let mut recorded = None;
            if let Some(timer) = self.away.remove(&who.user_id) {
                ctx.cancel_future(timer);
                let online = v1::PresenceStatus::Online;
                if let Some(m) = self.room.as_mut().and_then(|r| r.member_mut(&who.user_id)) {
                    m.status = online as i32;
                }
                recorded = self.status_event(&who.user_id);
            }
            return Ok(Joining {
                since: msg.spec.last_seq,
                local,
                role,
                user: who.user_id.clone(),
                fresh: false,
                recorded,
            });
        }
        let stored = &room.info.password;
        let password_ok =
            stored.is_empty() || self.deps.passwords.matches(stored, &msg.spec.password);
        let role = room.admit(&who.user_id, who.role, msg.spec.role, password_ok)?;
        let role = self.game_admits(who, role)?;
        let room = self.room.as_mut().expect("checked above");
        let member = MemberState {
            user_id: who.user_id.clone(),
            name: who.name.clone(),
            global: who.role,
            role,
            status: v1::PresenceStatus::Online as i32,
            cursor: (0.0, 0.0),
            // The seq of this join's event.
            order: self.seq + 1,
        };
        let proto = room.member_proto(&member);
        room.members.push(member);
        let game_fx = self.game_joined(&who.user_id);
        let joined = Body::MemberJoined(v1::MemberJoined {
            room_id: self.id.0.clone(),
            member: Some(proto),
        });
        let recorded = self.publish(joined, &[Part::Member(who.user_id.clone())]);
        self.carry_out(game_fx, None, ctx);
        self.count(
            &who.user_id,
            Stats {
                joins: 1,
                ..Stats::default()
            },
        );
        let members = self.room.as_ref().map_or(0, |r| r.members.len()) as u64;
        self.room_stats.peak_members = self.room_stats.peak_members.max(members);
        self.persist(false);
        Ok(Joining {
            since: msg.spec.last_seq,
            local,
            role,
            user: who.user_id.clone(),
            fresh: true,
            recorded: Some(recorded),
        })
    }

    /// Publishes a member's current state (a status change); None if not a member.
    fn status_event(&mut self, user: &UserId) -> Option<Published> {
        let room = self.room.as_ref()?;
        let proto = room.member_proto(room.member(user)?);
        let updated = Body::MemberUpdated(v1::MemberUpdated {
            room_id: self.id.0.clone(),
            member: Some(proto),
        });
        Some(self.publish(updated, &[Part::Member(user.clone())]))
    }
}

impl Actor for RoomActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.closed {
            // Closed for good: stay idle until the last address is dropped.
            return;
        }
        if self.room.is_none() {
            // Restarted by the Supervisor: the directory holds the truth.
            self.reload(ctx);
        } else if self.seq > 0 {
            // A new home: history says what the room did that this pod does not know.
            self.take_over(ctx);
        } else if self.room.as_ref().is_some_and(|r| r.info.persistent)
            && self.recent_chat.is_empty()
        {
            let deps = self.deps.clone();
            let id = self.id.clone();
            let n = deps.cfg.rooms.snapshot_chat;
            ctx.wait(
                async move { deps.store.chat.recent_chat(&id, None, n).await }
                    .into_actor(self)
                    .map(|res, act, _| {
                        for r in res
                            .unwrap_or_default()
                            .into_iter()
                            .filter(ChatRecord::is_chat)
                        {
                            act.recent_chat.push_back(v1::ChatMessage {
                                room_id: act.id.0.clone(),
                                from_user_id: r.from_user_id.0,
                                from_name: r.from_name,
                                text: r.text,
                                sent_at_ms: r.sent_at_ms,
                                to_user_id: String::new(),
                            });
                        }
                    }),
            );
        }
        let every = Duration::from_millis(self.deps.cfg.stats.flush_interval_ms.max(100));
        let flush = ctx.run_interval(every, |act, _| act.flush());
        let ttl = Duration::from_secs(self.deps.cfg.rooms.empty_room_ttl_secs);
        let empty = ctx.run_later(ttl, |act, ctx| act.close_if_empty(ctx));
        self.timers = vec![flush, empty];
        if self.room.is_some() {
            self.arm_game_timers(ctx);
        }
    }

    fn stopping(&mut self, _ctx: &mut Context<Self>) -> actix::Running {
        self.flush();
        actix::Running::Stop
    }
}

impl Supervised for RoomActor {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        self.room = None;
        self.timers.clear();
        self.game_timers.clear();
        self.game_tick = None;
        // The window's timer went with the context: its moves go out with the next one.
        self.cursor_timer = None;
        self.moved.clear();
        // A restart dropped any reload under way with the rest of the context's work.
        self.reloading = false;
        // A restart drops every timer: give held seats a fresh grace period.
        let grace = Duration::from_secs(self.deps.cfg.rooms.reconnect_grace_secs);
        let held: Vec<UserId> = self.away.drain().map(|(u, _)| u).collect();
        for user in held {
            self.arm_away(user, grace, ctx);
        }
    }
}

impl Handler<Join> for RoomActor {
    type Result = AtomicResponse<Self, ApiResult<()>>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let rid = msg.request_id;
        let joined = self
            .guarded(ctx, |act, ctx| act.on_join(msg, ctx))
            .unwrap_or_else(|| Err(ApiError::internal("room restarted")));
        let Joining {
            since,
            local,
            role,
            user,
            fresh,
            recorded,
        } = match joined {
            Ok(v) => v,
            Err(e) => return AtomicResponse::new(Box::pin(actix::fut::ready(Err(e)))),
        };
        let deps = self.deps.clone();
        let id = self.id.clone();
        // Only members on this pod are fanned out from here.
        let sink =
            (self.sub.is_none() && local.peer.outbox().is_some()).then(|| self.fanout.clone());
        let fut = async move {
            let seq = match recorded {
                Some(p) => {
                    p.recorded.await.map_err(|e| (true, e))?;
                    Some((p.seq, p.at))
                }
                None => None,
            };
            let sub = match sink {
                Some(sink) => Some(
                    deps.broker
                        .subscribe(&id, sink)
                        .await
                        .map_err(|e| (false, e))?,
                ),
                None => None,
            };
            let replay = if since > 0 {
                Some(
                    deps.broker
                        .replay(&id, since)
                        .await
                        .map_err(|e| (false, e))?,
                )
            } else {
                None
            };
            Ok::<_, (bool, ClusterError)>((seq, sub, replay))
        };
        AtomicResponse::new(Box::pin(fut.into_actor(self).map(move |res, act, ctx| {
            let (seq, sub, replay) = match res {
                Ok(v) => v,
                // The join's event was not recorded: the room reloads without it.
                Err((true, e)) => {
                    act.desync(&e, ctx);
                    return Err(ApiError::unavailable(
                        "the room could not record the join; try again",
                    ));
                }
                Err((false, e)) => {
                    // Admitted but never seated: take the member out again.
                    if fresh {
                        act.depart(&user, v1::LeaveReason::Left, ctx);
                    }
                    return Err(e.into());
                }
            };
            if let Some((seq, at)) = seq {
                act.was_recorded(seq, at);
            }
            if let Some((sub, position)) = sub {
                act.sub = Some(sub);
                act.fanout.start_at(position);
            }
            let last = act.seq;
            let room = act
                .room
                .as_ref()
                .ok_or_else(|| ApiError::unavailable("room is reloading"))?;
            let snap = match replay {
                // The client keeps its state as of `since`; the events below bring it up to
                // what is recorded, and the fan-out brings the rest (a publish in flight).
                Some(Replay::Events(_)) => v1::RoomJoined {
                    room: Some(room.summary()),
                    settings: None,
                    members: Vec::new(),
                    recent_chat: Vec::new(),
                    last_seq: since,
                    your_role: role.to_proto() as i32,
                    resync: false,
                    resumed: true,
                },
                Some(_) => act.snapshot(room, role, last, true),
                None => act.snapshot(room, role, last, false),
            };
            if snap.resumed {
                act.deps.metrics.resume_replays.inc();
            } else if snap.resync {
                act.deps.metrics.resyncs.inc();
            }
            let events = match replay {
                Some(Replay::Events(ev)) if snap.resumed => ev,
                _ => Vec::new(),
            };
            // Where the member's state is once the frames below are applied.
            let at = if snap.resumed {
                since + events.len() as u64
            } else {
                last
            };
            let mut frames = Vec::with_capacity(events.len() + 1);
            frames.push(encode_envelope(rid, 0, Body::RoomJoined(snap)));
            frames.extend(events);
            // The game as this member may see it, as of the snapshot and replay above.
            frames.extend(act.game_view(&user));
            local.peer.push_all(frames);
            match local.peer.outbox() {
                Some(outbox) => act.fanout.insert(user.clone(), outbox.clone(), at),
                None => local.peer.seated(&act.id, &user, at, rid),
            }
            act.locals.insert(user, local);
            Ok(())
        })))
    }
}

/// Deletes the room and its history, if `by` owns it or is an admin. Its members are told
/// the room closed; the answer comes once the store has dropped the room.
#[derive(Message)]
#[rtype(result = "ApiResult<()>")]
pub(crate) struct DeleteRoom {
    pub(crate) by: Identity,
}

impl Handler<DeleteRoom> for RoomActor {
    type Result = actix::ResponseFuture<ApiResult<()>>;

    fn handle(&mut self, msg: DeleteRoom, ctx: &mut Context<Self>) -> Self::Result {
        let Some(room) = self.room.as_ref().filter(|_| !self.closed) else {
            let e = ApiError::new(ErrorCode::RoomNotFound, "no such room");
            return Box::pin(async move { Err(e) });
        };
        let owner = (room.info.owner_id == msg.by.user_id).then_some(RoomRole::Owner);
        if let Err(e) = parlor_core::check(
            parlor_core::Action::DeleteRoom,
            msg.by.role,
            owner,
            &room.policy(),
        ) {
            return Box::pin(async move { Err(e.into()) });
        }
        self.dismiss_all();
        if let Some(room) = self.room.as_mut() {
            room.members.clear();
        }
        let _ = self
            .writer
            .send(Write::Audit(parlor_store::AuditRecord::now(
                msg.by.user_id.clone(),
                "room.delete",
                self.id.as_str(),
                Some(self.id.clone()),
                "",
            )));
        // Unsaved lines and snapshots go before the delete, so no retry brings them back:
        // the room's own pending lines here, the writer's with Discard.
        self.pending_chat.clear();
        self.unrecorded_chat.clear();
        let (done, landed) = oneshot::channel();
        let _ = self.writer.send(Write::Discard(done));
        self.shut(ctx);
        let (deps, id) = (self.deps.clone(), self.id.clone());
        tracing::info!(room_id = %id, by = %msg.by.user_id, "room deleted");
        Box::pin(async move {
            let _ = landed.await;
            deps.directory.remove(&id).await?;
            deps.store.rooms.delete_room(&id).await?;
            Ok(())
        })
    }
}

/// A server event for the room's members (a tournament's advance), published as a room
/// event like any other.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Announce(pub(crate) v1::game_update::Update);

impl Handler<Announce> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Announce, ctx: &mut Context<Self>) {
        if self.closed || self.room.is_none() {
            tracing::warn!(room_id = %self.id, "an announcement for a room not running here was dropped");
            return;
        }
        self.guarded(ctx, |act, ctx| {
            let body = Body::GameUpdate(v1::GameUpdate {
                room_id: act.id.0.clone(),
                update: Some(msg.0),
            });
            act.keep_in_history(act.seq + 1, &body, None);
            act.emit(body, &[], None, None, ctx);
        });
    }
}

/// Hands over pending stats and writes pending chat now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FlushRoom;

impl Handler<FlushRoom> for RoomActor {
    type Result = actix::ResponseFuture<()>;

    fn handle(&mut self, _: FlushRoom, _ctx: &mut Context<Self>) -> Self::Result {
        self.flush();
        let (done, landed) = oneshot::channel();
        let _ = self.writer.send(Write::Barrier(done));
        Box::pin(async move {
            let _ = landed.await;
        })
    }
}

impl Handler<Leave> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        self.guarded(ctx, |act, ctx| {
            let is_session = act
                .locals
                .get(&msg.user_id)
                .is_some_and(|l| l.session == msg.session);
            let grace = Duration::from_secs(act.deps.cfg.rooms.reconnect_grace_secs);
            if is_session && msg.reason == v1::LeaveReason::Disconnected && !grace.is_zero() {
                act.hold_seat(msg.user_id.clone(), grace, ctx);
            } else if is_session {
                act.depart(&msg.user_id, msg.reason, ctx);
            }
            if let Some(reply) = msg.reply {
                act.direct(
                    &reply,
                    encode_envelope(
                        msg.request_id,
                        0,
                        Body::RoomLeft(v1::RoomLeft {
                            room_id: msg.room_id.0,
                            reason: msg.reason as i32,
                        }),
                    ),
                );
            }
            act.close_if_empty(ctx);
        });
    }
}

impl Handler<Act> for RoomActor {
    type Result = ();

    fn handle(&mut self, msg: Act, ctx: &mut Context<Self>) {
        let reply = msg.reply.clone();
        let rid = msg.request_id;
        if self.guarded(ctx, |act, ctx| act.on_act(msg, ctx)).is_none() {
            self.direct(
                &reply,
                error_envelope(
                    rid,
                    ErrorCode::Internal,
                    "internal error; the room restarted",
                ),
            );
        }
    }
}
