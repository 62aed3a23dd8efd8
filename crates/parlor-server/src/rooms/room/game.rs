//! A server-run room's game (parlor-games): the room hands it joins, leaves, actions and
//! timers, and carries out its effects. Its updates are room events like any other;
//! hidden detail goes only to the member it is for, after the event it belongs with.
//!
//! Invariant: every event a game call makes carries the game's state as of the end of
//! that call, so a new home goes on from the checkpoint with nothing recorded missing; a
//! call that published nothing leaves its state to the room's next event, a join's or a
//! leave's goes with the member event.

use parlor_games::{Effect, Host, LeaveReason, Player};

use super::*;

impl RoomActor {
    /// A member as the game sees them.
    pub(super) fn player(&self, user: &UserId) -> Option<Player> {
        let m = self.room.as_ref()?.member(user)?;
        Some(Player {
            user_id: m.user_id.clone(),
            name: m.name.clone(),
            role: m.role,
            global: m.global,
        })
    }

    /// The GameView frame for `user`, if the room runs a game.
    pub(super) fn game_view(&self, user: &UserId) -> Option<bytes::Bytes> {
        let game = self.game.as_ref()?;
        let view = game.view_for(&self.player(user)?, &self.id.0);
        Some(encode_envelope(0, 0, Body::GameView(view)))
    }

    pub(super) fn game_action(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        a: v1::GameAction,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        if self.game.is_none() {
            return Err(CoreError::new(
                ErrorCode::WrongKind,
                "this room relays: send GameEvent, not GameAction",
            ));
        }
        self.allowed(Perm::GameAction, m)?;
        let Some(action) = a.action else {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "empty game action",
            ));
        };
        if !self.rate_ok(&m.user_id, rid, reply) {
            return Ok(());
        }
        let from = self
            .player(&m.user_id)
            .ok_or_else(|| CoreError::new(ErrorCode::NotInRoom, "you are not in that room"))?;
        let game = self.game.as_mut().expect("checked above");
        let effects = game.act(&from, action, now_ms(), super::super::manager::new_seed())?;
        self.count(
            &m.user_id,
            Stats {
                game_events: 1,
                ..Stats::default()
            },
        );
        self.carry_out(effects, Some((reply, rid, &m.user_id)), ctx);
        Ok(())
    }

    /// Carries out a game's effects in order. `asker` (an action's sender: its peer,
    /// request and user) gets an Ack naming the action's first event once it is recorded,
    /// or at once if it made none.
    pub(super) fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        asker: Option<(&Peer, u64, &UserId)>,
        ctx: &mut Context<Self>,
    ) {
        let by = asker.map(|(_, _, u)| u.clone());
        let asker = asker.map(|(p, rid, _)| (p, rid));
        // Nothing may carry the state: it goes with the room's next event.
        self.game_dirty = true;
        let mut answered = false;
        let mut after = None;
        for e in effects {
            if matches!(e, Effect::Broadcast(_) | Effect::Status(_)) {
                self.game_dirty = true;
            }
            match e {
                Effect::Broadcast(u) => {
                    let body = Body::GameUpdate(v1::GameUpdate {
                        room_id: self.id.0.clone(),
                        update: Some(u),
                    });
                    let seq = self.seq + 1;
                    self.keep_in_history(seq, &body, by.as_ref());
                    let who = asker.filter(|_| !answered);
                    let ack = who.map(|(_, rid)| {
                        encode_envelope(
                            rid,
                            0,
                            Body::Ack(v1::Ack {
                                seq,
                                room_id: self.id.0.clone(),
                            }),
                        )
                    });
                    answered |= who.is_some();
                    self.emit(body, &[], who, ack, ctx);
                    after = Some(seq);
                }
                Effect::SendTo(user, u) => {
                    let frame = encode_envelope(
                        0,
                        0,
                        Body::GameUpdate(v1::GameUpdate {
                            room_id: self.id.0.clone(),
                            update: Some(u),
                        }),
                    );
                    if let Some(peer) = self.locals.get(&user).map(|l| l.peer.clone()) {
                        self.after_event(&peer, after, frame);
                    }
                }
                Effect::Status(status) => {
                    let Some(room) = self.room.as_mut() else {
                        continue;
                    };
                    room.info.status = status;
                    let updated = v1::RoomUpdated {
                        room: Some(room.summary()),
                        settings: Some(room.settings.to_proto()),
                    };
                    after = Some(self.seq + 1);
                    self.emit(Body::RoomUpdated(updated), &[Part::Info], None, None, ctx);
                    self.persist(false);
                }
                Effect::Kick(user, reason) => {
                    tracing::info!(room_id = %self.id, user = %user, reason, "the game removed a member");
                    if let Some(local) = self.locals.get(&user) {
                        local.dismiss(&self.fanout, &self.id, v1::LeaveReason::Kicked);
                    }
                    self.depart(&user, v1::LeaveReason::Kicked, ctx);
                }
                Effect::Finish(result) => self.record_result(result),
                Effect::Armed(id, due) => self.arm_game_timer(id, due, ctx),
                Effect::Disarmed(id) => {
                    if let Some(t) = self.game_timers.remove(&id) {
                        ctx.cancel_future(t);
                    }
                }
            }
        }
        if let (Some((peer, rid)), false) = (asker, answered) {
            self.direct(peer, encode_envelope(rid, 0, Body::Ack(v1::Ack::default())));
        }
    }

    /// A persistent room keeps its game's public updates in the store's history beside the
    /// chat, once the event is recorded (the chat lines' path): the history export then
    /// holds every public roll and shuffle, and the seed reveals that check them.
    pub(super) fn keep_in_history(&mut self, seq: u64, body: &Body, by: Option<&UserId>) {
        if !self.room.as_ref().is_some_and(|r| r.info.persistent) {
            return;
        }
        use base64::Engine as _;
        let Body::GameUpdate(u) = body else { return };
        let who = by.and_then(|u| self.room.as_ref()?.member(u));
        let record = ChatRecord {
            seq: 0, // keyed by the writer (writer.rs)
            from_user_id: who
                .map(|m| m.user_id.clone())
                .unwrap_or_else(|| UserId(String::new())),
            from_name: who.map(|m| m.name.clone()).unwrap_or_default(),
            text: String::new(),
            sent_at_ms: now_ms(),
            game: Some(
                base64::engine::general_purpose::STANDARD.encode(prost::Message::encode_to_vec(u)),
            ),
        };
        self.unrecorded_chat.push_back((seq, record));
    }

    fn arm_game_timer(&mut self, id: String, due_ms: i64, ctx: &mut Context<Self>) {
        let wait = Duration::from_millis(u64::try_from(due_ms - now_ms()).unwrap_or(0));
        let name = id.clone();
        let handle = ctx.run_later(wait, move |act, ctx| {
            act.game_timers.remove(&name);
            let live = act.room.is_some() && !act.closed;
            let Some(game) = act.game.as_mut().filter(|_| live) else {
                return;
            };
            let effects = game.fire(&name, due_ms, now_ms());
            act.carry_out(effects, None, ctx);
        });
        if let Some(old) = self.game_timers.insert(id, handle) {
            ctx.cancel_future(old);
        }
    }

    /// Arms the game's timers as its checkpoint holds them (a new home, or a reload).
    pub(super) fn arm_game_timers(&mut self, ctx: &mut Context<Self>) {
        for (_, t) in self.game_timers.drain() {
            ctx.cancel_future(t);
        }
        let due: Vec<(String, i64)> = self
            .game
            .iter()
            .flat_map(|g| g.timers().map(|(id, at)| (id.to_owned(), at)))
            .collect();
        for (id, at) in due {
            self.arm_game_timer(id, at, ctx);
        }
        if let Some(old) = self.game_tick.take() {
            ctx.cancel_future(old);
        }
        if let Some(every) = self.game.as_ref().and_then(Host::tick_ms) {
            let beat = ctx.run_interval(Duration::from_millis(every.max(10)), |act, ctx| {
                if act.room.is_none() || act.closed {
                    return;
                }
                if let Some(game) = act.game.as_mut() {
                    let effects = game.tick(now_ms());
                    act.carry_out(effects, None, ctx);
                }
            });
            self.game_tick = Some(beat);
        }
    }

    /// A new member's role, as the game allows it.
    pub(super) fn game_admits(
        &self,
        who: &Identity,
        role: RoomRole,
    ) -> Result<RoomRole, CoreError> {
        let Some(game) = &self.game else {
            return Ok(role);
        };
        let p = Player {
            user_id: who.user_id.clone(),
            name: who.name.clone(),
            role,
            global: who.role,
        };
        game.join_attempt(&p, role)
    }

    /// Tells the game a member joined; its state goes with the join's event.
    pub(super) fn game_joined(&mut self, user: &UserId) -> Vec<Effect> {
        let Some(p) = self.player(user) else {
            return Vec::new();
        };
        let Some(game) = self.game.as_mut() else {
            return Vec::new();
        };
        let fx = game.joined(&p, now_ms());
        self.game_dirty = true;
        fx
    }

    /// Tells the game a member left for good (the room event is published after this).
    pub(super) fn game_left(&mut self, user: &UserId, reason: v1::LeaveReason) -> Vec<Effect> {
        let Some(game) = self.game.as_mut() else {
            return Vec::new();
        };
        let why = match reason {
            v1::LeaveReason::Kicked | v1::LeaveReason::Banned => LeaveReason::Kicked,
            v1::LeaveReason::Disconnected => LeaveReason::Dropped,
            _ => LeaveReason::Left,
        };
        let fx = game.left(user, why, now_ms());
        self.game_dirty = true;
        fx
    }

    /// Tells the game a member's role changed.
    pub(super) fn game_role(&mut self, user: &UserId) -> Vec<Effect> {
        let Some(p) = self.player(user) else {
            return Vec::new();
        };
        let Some(game) = self.game.as_mut() else {
            return Vec::new();
        };
        let fx = game.role_changed(&p, now_ms());
        self.game_dirty = true;
        fx
    }

    /// The last member left: the session is over, so the room reveals the seed its draws
    /// were made under (into the history of a persistent room) and commits to a fresh one.
    pub(super) fn end_session(&mut self, ctx: &mut Context<Self>) {
        let empty = self.room.as_ref().is_some_and(|r| r.members.is_empty());
        let Some(game) = self.game.as_mut().filter(|g| empty && g.revealable()) else {
            return;
        };
        let reveal = game.reveal(super::super::manager::new_seed());
        self.carry_out(vec![Effect::Broadcast(reveal)], None, ctx);
    }

    /// A finished game goes into the match history; a tournament's pairing advances its
    /// bracket.
    fn record_result(&self, result: parlor_games::GameResult) {
        let slot = self.room.as_ref().and_then(|r| r.info.tournament.clone());
        let firsts: Vec<&UserId> = result
            .players
            .iter()
            .filter(|p| p.place == 1)
            .map(|p| &p.user)
            .collect();
        if let (Some(slot), [winner]) = (slot, &firsts[..]) {
            let o = crate::tournaments::Organizing {
                store: self.deps.store.clone(),
                rooms: self.manager.clone(),
                link: self.deps.link.clone(),
            };
            let winner = (*winner).clone();
            actix::spawn(async move {
                if let Err(e) = crate::tournaments::advance(&o, &slot, &winner).await {
                    tracing::error!(tournament = %slot.id, error = %e.message, "the bracket did not advance");
                }
            });
        }
        let at_ms = now_ms();
        let record = parlor_store::MatchRecord {
            id: format!("{at_ms:013}-{}", parlor_core::new_id("")),
            kind: self
                .room
                .as_ref()
                .map(|r| r.info.kind.clone())
                .unwrap_or_default(),
            room: Some(self.id.clone()),
            at_ms,
            players: result
                .players
                .iter()
                .map(|p| parlor_store::MatchPlayer {
                    user: p.user.clone(),
                    place: p.place,
                    score: p.score,
                    rating_before: None,
                    rating_after: None,
                })
                .collect(),
        };
        // Guests play unrated, whatever the kind says of a member still in the room.
        let guest = |u: &UserId| {
            self.room
                .as_ref()
                .and_then(|r| r.member(u))
                .is_some_and(|m| m.global < parlor_core::GlobalRole::User)
        };
        let rated = result
            .players
            .into_iter()
            .filter(|p| p.rated && !guest(&p.user))
            .map(|p| p.user)
            .collect();
        // Through the room's writer: rated there, retried while the store refuses it, and
        // flushed at shutdown like the room's other writes.
        let _ = self
            .writer
            .send(Write::Match(Box::new(super::super::ratings::Finished {
                record,
                system: result.rating,
                rated,
            })));
    }
}
