//! What members do in a room: the permission and rate checks, then chat, game events,
//! presence, settings and moderation, each publishing its event.

use super::*;

impl RoomActor {
    /// The caller's membership, checked against the session that joined.
    pub(super) fn member_of(&self, user: &UserId, session: u64) -> Result<&MemberState, CoreError> {
        let not_in = || CoreError::new(ErrorCode::NotInRoom, "you are not in that room");
        let local = self.locals.get(user).ok_or_else(not_in)?;
        if local.session != session {
            return Err(not_in());
        }
        self.room
            .as_ref()
            .and_then(|r| r.member(user))
            .ok_or_else(not_in)
    }

    /// Applies the room's rate limit; past `flood_strikes` refusals in a row the socket closes.
    pub(super) fn rate_ok(&mut self, user: &UserId, rid: u64, reply: &Peer) -> bool {
        let strikes_max = self.deps.cfg.ws.flood_strikes;
        let Some(local) = self.locals.get_mut(user) else {
            return false;
        };
        if local.bucket.try_take(Instant::now()) {
            local.strikes = 0;
            return true;
        }
        local.strikes += 1;
        let wait = local.bucket.wait_hint();
        let flood = (local.strikes >= strikes_max).then(|| local.peer.clone());
        self.deps.metrics.error(ErrorCode::RateLimited);
        self.direct(
            reply,
            error_envelope(
                rid,
                ErrorCode::RateLimited,
                format!("rate limited; retry in {} ms", wait.as_millis().max(1)),
            ),
        );
        // After the error is queued: the session's Close ends the queue, and would drop an
        // error queued behind it.
        if let Some(session) = flood {
            session.close(
                parlor_protocol::close::FLOOD,
                "flooding after rate limit".into(),
            );
        }
        false
    }

    pub(super) fn on_act(&mut self, msg: Act, ctx: &mut Context<Self>) {
        let Act {
            user_id,
            session,
            request_id: rid,
            reply,
            action,
        } = msg;
        if self.closed {
            return self.err(&reply, rid, &self.closed_error());
        }
        if self.room.is_none() {
            return self.err(
                &reply,
                rid,
                &CoreError::new(ErrorCode::Unavailable, "the room is reloading; try again"),
            );
        }
        let member = match self.member_of(&user_id, session) {
            Ok(m) => Caller {
                global: m.global,
                role: m.role,
                user_id,
            },
            Err(e) => return self.err(&reply, rid, &e),
        };
        let origin = Origin {
            session,
            request: rid,
        };
        if let Some(seq) = self.applied.seq_of(origin) {
            return self.answer_retry(&reply, rid, seq);
        }
        self.acting = origin;
        let result = match action {
            Action::Chat(text) => self.chat(&member, rid, &reply, text, ctx),
            Action::Event(ev) => self.event(&member, rid, &reply, ev, ctx),
            Action::Presence(p) => self.presence(&member, rid, &reply, p, ctx),
            Action::Update(u) => self.update(&member, rid, &reply, u, ctx),
            Action::Moderate(m) => self.moderate(&member, rid, &reply, m, ctx),
            Action::Game(a) => self.game_action(&member, rid, &reply, a, ctx),
        };
        self.acting = Origin::default();
        if let Err(e) = result {
            self.err(&reply, rid, &e);
        }
    }

    /// A request the room applied already came again (its sender timed out and retried):
    /// it is answered with an Ack naming the event it made, once that is recorded.
    fn answer_retry(&self, reply: &Peer, rid: u64, seq: u64) {
        self.deps.metrics.retries_answered.inc();
        if seq > self.recorded {
            return self.err(
                reply,
                rid,
                &CoreError::new(
                    ErrorCode::Unavailable,
                    "that request is still being recorded; try again",
                ),
            );
        }
        let ack = v1::Ack {
            seq,
            room_id: if seq == 0 {
                String::new()
            } else {
                self.id.0.clone()
            },
        };
        self.direct(reply, encode_envelope(rid, 0, Body::Ack(ack)));
    }

    pub(super) fn allowed(&self, action: Perm, member: &Caller) -> Result<(), CoreError> {
        let room = self.room.as_ref().expect("checked by on_act");
        check(action, member.global, Some(member.role), &room.policy())
    }

    pub(super) fn chat(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        text: String,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        self.allowed(Perm::Chat, m)?;
        let room = self.room.as_ref().expect("checked by on_act");
        let persistent = room.info.persistent;
        if room.mutes.contains(&m.user_id) {
            return Err(CoreError::new(
                ErrorCode::Muted,
                "you are muted in this room",
            ));
        }
        Limits::check_len("chat", text.len(), self.deps.limits.chat_bytes)?;
        if text.trim().is_empty() {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "chat text is empty",
            ));
        }
        if persistent
            && self.backlog.lines() + self.pending_chat.len() + self.unrecorded_chat.len()
                >= self.deps.cfg.rooms.chat_backlog_max
        {
            // The store has refused lines for a while: refuse this one rather than hold
            // more than the bound, or drop a line already shown to the room.
            self.deps
                .metrics
                .store_refused_writes
                .with_label_values(&["chat"])
                .inc();
            return Err(CoreError::new(
                ErrorCode::Unavailable,
                "chat history cannot be saved right now; try again shortly",
            ));
        }
        if !self.rate_ok(&m.user_id, rid, reply) {
            return Ok(());
        }
        let from_name = self
            .room
            .as_ref()
            .and_then(|r| r.member(&m.user_id))
            .map(|x| x.name.clone())
            .unwrap_or_default();
        let line = v1::ChatMessage {
            room_id: self.id.0.clone(),
            from_user_id: m.user_id.0.clone(),
            from_name,
            text,
            sent_at_ms: now_ms(),
            to_user_id: String::new(),
        };
        if persistent {
            // For the store once recorded (a memory broker records within `emit`).
            let record = ChatRecord {
                seq: 0, // keyed by the writer (writer.rs)
                from_user_id: m.user_id.clone(),
                from_name: line.from_name.clone(),
                text: line.text.clone(),
                sent_at_ms: line.sent_at_ms,
                game: None,
            };
            self.unrecorded_chat.push_back((self.seq + 1, record));
        }
        self.emit(
            Body::ChatMessage(line.clone()),
            &[],
            Some((reply, rid)),
            None,
            ctx,
        );
        self.recent_chat.push_back(line);
        while self.recent_chat.len() > self.deps.cfg.rooms.snapshot_chat {
            self.recent_chat.pop_front();
        }
        self.count(
            &m.user_id,
            Stats {
                chat_messages: 1,
                ..Stats::default()
            },
        );
        Ok(())
    }

    pub(super) fn event(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        mut ev: v1::GameEvent,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        if self.game.is_some() {
            return Err(CoreError::new(
                ErrorCode::WrongKind,
                "this room's game is server-run: send GameAction, not GameEvent",
            ));
        }
        self.allowed(Perm::SendGameEvent, m)?;
        Limits::check_len(
            "event type",
            ev.r#type.len(),
            self.deps.limits.event_type_bytes,
        )?;
        Limits::check_len(
            "event payload",
            ev.payload.len(),
            self.deps.limits.event_payload_bytes,
        )?;
        if ev.r#type.is_empty() {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "event type is empty",
            ));
        }
        if self.deps.cfg.debug.fault_injection && ev.r#type == PANIC_EVENT {
            panic!("fault injection: {PANIC_EVENT} in room {}", self.id);
        }
        if !self.rate_ok(&m.user_id, rid, reply) {
            return Ok(());
        }
        ev.sender_id = m.user_id.0.clone();
        ev.sent_at_ms = now_ms();
        self.count(
            &m.user_id,
            Stats {
                game_events: 1,
                ..Stats::default()
            },
        );
        if ev.target_user_id.is_empty() {
            self.emit(Body::GameEvent(ev), &[], Some((reply, rid)), None, ctx);
            return Ok(());
        }
        // A targeted event skips the room sequence: other members must not see a gap.
        let target = UserId(ev.target_user_id.clone());
        let Some(to) = self.locals.get(&target) else {
            return Err(CoreError::new(
                ErrorCode::UserNotFound,
                "target is not in this room",
            ));
        };
        // The sender's copy carries its request id: its answer.
        let ev = Body::GameEvent(ev);
        if target != m.user_id {
            self.direct(&to.peer, encode_envelope(0, 0, ev.clone()));
        }
        self.direct(reply, encode_envelope(rid, 0, ev));
        self.applied.record(self.acting, 0);
        Ok(())
    }

    pub(super) fn presence(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        p: v1::PresenceUpdate,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        self.allowed(Perm::UpdatePresence, m)?;
        let window = self.deps.cfg.rooms.cursor_interval_ms;
        let conflated = window > 0
            && p.status == v1::PresenceStatus::Unspecified as i32
            && (p.cursor_x.is_some() || p.cursor_y.is_some());
        // A conflated move costs the room at most one event per window, so it takes no
        // token: a cursor at mouse rate must not trip the flood guard.
        if !conflated && !self.rate_ok(&m.user_id, rid, reply) {
            return Ok(());
        }
        let room = self.room.as_mut().expect("checked by on_act");
        let Some(member) = room.member_mut(&m.user_id) else {
            return Ok(());
        };
        if p.status != v1::PresenceStatus::Unspecified as i32 {
            member.status = p.status;
        }
        if let Some(x) = p.cursor_x.filter(|x| x.is_finite()) {
            member.cursor.0 = x;
        }
        if let Some(y) = p.cursor_y.filter(|y| y.is_finite()) {
            member.cursor.1 = y;
        }
        if conflated {
            self.moved.insert(m.user_id.clone());
            if self.cursor_timer.is_none() {
                let every = Duration::from_millis(window);
                self.cursor_timer = Some(ctx.run_later(every, |act, ctx| act.send_cursors(ctx)));
            }
            return Ok(());
        }
        // This event carries the latest cursor too.
        self.moved.remove(&m.user_id);
        let member = member.clone();
        let proto = room.member_proto(&member);
        let updated = Body::MemberUpdated(v1::MemberUpdated {
            room_id: self.id.0.clone(),
            member: Some(proto),
        });
        self.emit(
            updated,
            &[Part::Member(m.user_id.clone())],
            Some((reply, rid)),
            None,
            ctx,
        );
        // Cursor moves are frequent and cheap to lose; only status changes are written through.
        if p.status != v1::PresenceStatus::Unspecified as i32 {
            self.persist(false);
        }
        Ok(())
    }

    /// The window's cursor moves: one MemberUpdated per member who moved, with the latest.
    fn send_cursors(&mut self, ctx: &mut Context<Self>) {
        self.cursor_timer = None;
        if self.closed {
            return;
        }
        let moved: Vec<UserId> = self.moved.drain().collect();
        for user in moved {
            let Some(proto) = self
                .room
                .as_ref()
                .and_then(|r| r.member(&user).map(|m| r.member_proto(m)))
            else {
                continue;
            };
            let updated = Body::MemberUpdated(v1::MemberUpdated {
                room_id: self.id.0.clone(),
                member: Some(proto),
            });
            self.emit(updated, &[Part::Member(user)], None, None, ctx);
        }
    }

    pub(super) fn update(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        u: v1::UpdateRoom,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        self.allowed(Perm::UpdateRoom, m)?;
        let limits = self.deps.limits;
        let mut u = u;
        // Length first: the hash is longer than the password.
        if let Some(pw) = u.password.as_mut() {
            parlor_core::Limits::check_len("password", pw.len(), limits.text_field_bytes)?;
            *pw = self.deps.passwords.hash(pw);
        }
        let room = self.room.as_mut().expect("checked by on_act");
        room.apply_update(&u, &limits)?;
        let rate = room.settings.event_rate_limit;
        let echo = room.settings.echo_events;
        let updated = v1::RoomUpdated {
            room: Some(room.summary()),
            settings: Some(room.settings.to_proto()),
        };
        for local in self.locals.values_mut() {
            local.bucket.set_rate(rate, rate);
        }
        let ack = encode_envelope(rid, 0, Body::Ack(v1::Ack::default()));
        self.emit(
            Body::RoomUpdated(updated),
            &[Part::Info, Part::Settings],
            Some((reply, rid)),
            Some(ack),
            ctx,
        );
        self.fanout.set_echo(echo);
        self.persist(true);
        Ok(())
    }

    pub(super) fn moderate(
        &mut self,
        m: &Caller,
        rid: u64,
        reply: &Peer,
        req: v1::Moderate,
        ctx: &mut Context<Self>,
    ) -> Result<(), CoreError> {
        use v1::ModerationAction as MA;
        let action = MA::try_from(req.action).unwrap_or(MA::Unspecified);
        let perm = match action {
            MA::Kick => Perm::Kick,
            MA::Ban | MA::Unban => Perm::Ban,
            MA::Mute => Perm::Mute,
            MA::Unmute => Perm::Unmute,
            MA::Unspecified => {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "unknown moderation action",
                ))
            }
        };
        self.allowed(perm, m)?;
        let target = UserId(req.user_id.clone());
        if target == m.user_id {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "you cannot moderate yourself",
            ));
        }
        let room = self.room.as_mut().expect("checked by on_act");
        let target_member = room.member(&target).cloned();
        let protected = target == room.info.owner_id
            || target_member.as_ref().is_some_and(|t| t.global.is_staff());
        if protected && !m.global.is_staff() {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "the owner and moderators cannot be moderated by you",
            ));
        }
        if target_member.is_none() && matches!(action, MA::Kick | MA::Mute | MA::Unmute) {
            return Err(CoreError::new(
                ErrorCode::UserNotFound,
                "that user is not in this room",
            ));
        }
        let cap = self.deps.cfg.limits.bans_per_room;
        let full = match action {
            MA::Ban => room.bans.len() >= cap && !room.bans.contains(&target),
            MA::Mute => room.mutes.len() >= cap && !room.mutes.contains(&target),
            _ => false,
        };
        if full {
            return Err(CoreError::new(
                ErrorCode::QuotaExceeded,
                format!("this room's list holds {cap} users already; lift one first"),
            ));
        }
        match action {
            MA::Ban => {
                room.bans.insert(target.clone());
            }
            MA::Mute => {
                room.mutes.insert(target.clone());
            }
            MA::Unmute => {
                room.mutes.remove(&target);
            }
            MA::Unban => {
                room.bans.remove(&target);
            }
            _ => {}
        }
        let muted_update = matches!(action, MA::Mute | MA::Unmute)
            .then(|| target_member.as_ref().map(|t| room.member_proto(t)))
            .flatten();
        let list = match action {
            MA::Ban | MA::Unban => vec![Part::Bans],
            MA::Mute | MA::Unmute => vec![Part::Mutes],
            _ => Vec::new(),
        };
        let moderated = Body::Moderated(v1::Moderated {
            room_id: self.id.0.clone(),
            user_id: target.0.clone(),
            action: action as i32,
            by_user_id: m.user_id.0.clone(),
            reason: req.reason.clone(),
        });
        let ack = encode_envelope(rid, 0, Body::Ack(v1::Ack::default()));
        self.emit(moderated, &list, Some((reply, rid)), Some(ack), ctx);
        if let Some(member) = muted_update {
            let updated = Body::MemberUpdated(v1::MemberUpdated {
                room_id: self.id.0.clone(),
                member: Some(member),
            });
            self.emit(updated, &[], None, None, ctx);
        }
        if matches!(action, MA::Kick | MA::Ban) && target_member.is_some() {
            let reason = if action == MA::Ban {
                v1::LeaveReason::Banned
            } else {
                v1::LeaveReason::Kicked
            };
            if let Some(local) = self.locals.get(&target) {
                local.dismiss(&self.fanout, &self.id, reason);
            }
            self.depart(&target, reason, ctx);
        }
        if action != MA::Kick {
            self.persist(true);
        }
        let what = match action {
            MA::Kick => "room.kick",
            MA::Ban => "room.ban",
            MA::Mute => "room.mute",
            MA::Unban => "room.unban",
            _ => "room.unmute",
        };
        let _ = self
            .writer
            .send(Write::Audit(parlor_store::AuditRecord::now(
                m.user_id.clone(),
                what,
                target.as_str(),
                Some(self.id.clone()),
                &req.reason,
            )));
        Ok(())
    }
}
