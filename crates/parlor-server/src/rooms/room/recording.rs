//! Recording a room's events, and what happens when recording fails: publish (the
//! answer waits for it), reload from the checkpoint, rewrite a room the backend lost, and
//! step down when another pod is home.

use super::*;

/// What a reload found.
pub(super) enum Reloaded {
    /// The checkpoint: the room as of its seq, and its game.
    Room(Lease, Room, u64, Option<parlor_games::Host>),
    /// No checkpoint, so the room as held was written back.
    Rewritten(Lease, Room, u64),
    /// No checkpoint and nothing held: the room is gone.
    Gone,
    /// Another pod is the home: this lease.
    Elsewhere(Lease),
}

/// A publish in flight: its seq, and the broker's answer once the event is recorded.
pub(super) struct Published {
    pub(super) seq: u64,
    /// When it was numbered, for `parlor_event_record_seconds`.
    pub(super) at: Instant,
    pub(super) recorded: BoxFuture<'static, Result<(), ClusterError>>,
}

/// How long a room's first reload may hold its mailbox.
pub(super) const RELOAD_WAIT: Duration = Duration::from_secs(2);

impl RoomActor {
    /// Numbers one room event and publishes it with the checkpoint writes of `parts`, as
    /// the room is now, and as caused by the request being handled. The future resolves
    /// once the event is recorded.
    pub(super) fn publish(&mut self, body: Body, parts: &[Part]) -> Published {
        self.seq += 1;
        let seq = self.seq;
        let origin = self.acting;
        self.applied.record(origin, seq);
        let frame = frame_with_seq(seq, &encode_body(body));
        let mut writes = match &self.room {
            Some(room) if !parts.is_empty() => checkpoint::writes(room, parts),
            _ => Vec::new(),
        };
        if std::mem::take(&mut self.game_dirty) {
            writes.extend(self.game.as_ref().map(|g| checkpoint::game(g.checkpoint())));
        }
        let recorded = self
            .deps
            .broker
            .publish(&self.id, &self.lease, seq, frame, origin, writes);
        Published {
            seq,
            at: Instant::now(),
            recorded,
        }
    }

    /// Publishes an event; `who` hears of a failure, and `answer` goes to it once the event
    /// is recorded.
    pub(super) fn emit(
        &mut self,
        body: Body,
        parts: &[Part],
        who: Option<(&Peer, u64)>,
        answer: Option<bytes::Bytes>,
        ctx: &mut Context<Self>,
    ) {
        let fut = self.publish(body, parts);
        self.settle(fut, who.map(|(o, rid)| (o.clone(), rid)), answer, ctx);
    }

    /// Waits for a publish without blocking the mailbox (a memory broker has already
    /// finished), then answers or recovers.
    pub(super) fn settle(
        &mut self,
        p: Published,
        who: Option<(Peer, u64)>,
        answer: Option<bytes::Bytes>,
        ctx: &mut Context<Self>,
    ) {
        let Published {
            seq,
            at,
            mut recorded,
        } = p;
        match (&mut recorded).now_or_never() {
            Some(r) => self.settled(r.map(|()| (seq, at)), who, answer, ctx),
            None => {
                ctx.spawn(
                    recorded.into_actor(self).map(move |r, act, ctx| {
                        act.settled(r.map(|()| (seq, at)), who, answer, ctx)
                    }),
                );
            }
        }
    }

    /// Event `seq`, numbered at `at`, is recorded.
    pub(super) fn was_recorded(&mut self, seq: u64, at: Instant) {
        let m = &self.deps.metrics;
        m.events_published.inc();
        m.event_record_seconds.observe(at.elapsed().as_secs_f64());
        self.recorded = self.recorded.max(seq);
    }

    pub(super) fn settled(
        &mut self,
        r: Result<(u64, Instant), ClusterError>,
        who: Option<(Peer, u64)>,
        answer: Option<bytes::Bytes>,
        ctx: &mut Context<Self>,
    ) {
        match r {
            Ok((seq, at)) => {
                self.was_recorded(seq, at);
                while self.unrecorded_chat.front().is_some_and(|(s, _)| *s <= seq) {
                    let (_, line) = self.unrecorded_chat.pop_front().expect("checked");
                    self.pending_chat.push(line);
                }
                if let (Some((to, _)), Some(frame)) = (&who, answer) {
                    self.after_event(to, Some(seq), frame);
                }
            }
            Err(e) => {
                if let Some((to, rid)) = &who {
                    self.err(
                        to,
                        *rid,
                        &CoreError::new(
                            ErrorCode::Unavailable,
                            "the room could not record that; try again",
                        ),
                    );
                }
                self.desync(&e, ctx);
            }
        }
    }

    /// Sends a direct frame after event `seq` reaches this pod's members (at once if none).
    /// A local member is written to by this room's fan-out only while it has a
    /// subscription here; without one, no event of the room goes out here.
    pub(super) fn after_event(&self, peer: &Peer, seq: Option<u64>, frame: bytes::Bytes) {
        match (seq, peer, self.sub) {
            (Some(seq), Peer::Remote(_), _) | (Some(seq), Peer::Local { .. }, Some(_)) => {
                peer.answer_after(&self.fanout, &self.id, seq, frame)
            }
            _ => self.direct(peer, frame),
        }
    }

    /// A publish failed: what this actor holds may be ahead of what was recorded, so it
    /// reloads the recorded room.
    pub(super) fn desync(&mut self, e: &ClusterError, ctx: &mut Context<Self>) {
        let reason = match e {
            ClusterError::Fenced(_) => "fenced",
            _ => "unavailable",
        };
        self.deps
            .metrics
            .publish_failures
            .with_label_values(&[reason])
            .inc();
        if self.room.is_none() || self.closed {
            return;
        }
        tracing::warn!(room_id = %self.id, error = %e, "publish failed; reloading the room");
        // Lines not recorded now never will be (later publishes fail too): none is saved.
        self.unrecorded_chat.clear();
        self.stale = self.room.take();
        self.reload(ctx);
    }

    /// Writes the room through to the directory; `durable` also to the store (persistent
    /// rooms only), for changes the store keeps: info, settings, bans and mutes, never
    /// members or presence.
    pub(super) fn persist(&self, durable: bool) {
        if let Some(room) = &self.room {
            let _ = self
                .writer
                .send(Write::Put(Box::new(room.clone()), durable));
        }
    }

    /// Reloads the room from its checkpoint, after every queued write has landed, taking the
    /// lease again. The first try holds the mailbox for up to `RELOAD_WAIT`, so that
    /// actions right behind a restart are handled, not refused; if the backend is down,
    /// later tries run beside the mailbox and actions are refused as unavailable meanwhile.
    pub(super) fn reload(&mut self, ctx: &mut Context<Self>) {
        // One reload at a time: a second would set the seq back under the first's feet.
        if !self.reloading {
            self.reloading = true;
            self.reload_with(true, ctx);
        }
    }

    pub(super) fn reload_with(&mut self, first: bool, ctx: &mut Context<Self>) {
        let deps = self.deps.clone();
        let id = self.id.clone();
        let (done, landed) = oneshot::channel();
        let _ = self.writer.send(Write::Barrier(done));
        // What to go on from if the checkpoint is gone: the room as held, at the newest
        // event known to be recorded.
        let stale = self.stale.clone().map(|r| (r, self.recorded));
        let held_game = self.game.as_ref().map(|g| g.checkpoint());
        let fut = tokio::time::timeout(RELOAD_WAIT, async move {
            let _ = landed.await;
            let lease = match deps.leases.claim(&id, &deps.cfg.server.pod_name).await? {
                Claim::Home(l) => l,
                Claim::Elsewhere(l) => return Ok(Reloaded::Elsewhere(l)),
            };
            if let Some(cp) = deps.broker.load(&id).await? {
                if let Some(room) = cp.room()? {
                    // A checkpoint behind what was recorded (Redis came back from older
                    // data) would make pods that were ahead drop the new events as
                    // duplicates: the room as held is written back instead.
                    let behind = stale.as_ref().is_some_and(|(_, seq)| cp.seq < *seq);
                    if !behind {
                        let game = game_of(&deps, &room, cp.game());
                        return Ok(Reloaded::Room(lease, room, cp.seq, game));
                    }
                }
            }
            let Some((room, seq)) = stale else {
                return Ok(Reloaded::Gone);
            };
            // The backend lost the room (a Redis flush or restart without persistence):
            // write it back whole; its history is gone, so members are resynced.
            let writes = checkpoint::full(&room, held_game);
            deps.broker.reset(&id, &lease, seq, writes).await?;
            Ok::<_, ClusterError>(Reloaded::Rewritten(lease, room, seq))
        })
        .into_actor(self)
        .map(|res, act, ctx| {
            let res =
                res.unwrap_or_else(|_| Err(ClusterError::Unavailable("reload timed out".into())));
            let (lease, room, seq, rewritten) = match res {
                Ok(Reloaded::Room(l, r, s, game)) => {
                    // The game as recorded; what this actor held may be ahead of it.
                    act.game = game;
                    act.game_dirty = false;
                    (l, r, s, false)
                }
                Ok(Reloaded::Rewritten(l, r, s)) => (l, r, s, true),
                Ok(Reloaded::Gone) => return act.vanish(ctx),
                Ok(Reloaded::Elsewhere(l)) => return act.deposed(l.pod, ctx),
                Err(e) => {
                    tracing::error!(room_id = %act.id, error = %e, "room reload failed; retrying");
                    ctx.run_later(Duration::from_secs(1), |act, ctx| {
                        act.reload_with(false, ctx)
                    });
                    return;
                }
            };
            tracing::info!(room_id = %act.id, seq, rewritten, "room reloaded");
            act.fanout.set_echo(room.settings.echo_events);
            if lease != act.lease {
                act.manager.do_send(Relet {
                    room_id: act.id.clone(),
                    lease: lease.clone(),
                });
            }
            act.lease = lease;
            act.seq = seq;
            act.recorded = seq;
            act.stale = None;
            act.reloading = false;
            act.room = Some(room);
            if let Some(done) = act.hand_over.take() {
                // The pod began draining meanwhile: the room goes on elsewhere.
                act.room = None;
                return act.begin_hand_over(done, ctx);
            }
            act.learn_applied(ctx);
            act.hold_absent(ctx);
            act.arm_game_timers(ctx);
            if rewritten {
                act.resync_all(ctx);
            }
        });
        if first {
            ctx.wait(fut);
        } else {
            ctx.spawn(fut);
        }
    }

    /// After the backend lost the room's history: lists the room again and sends every
    /// member, on every pod, a fresh snapshot as a room event (`RoomJoined` with `resync`),
    /// so that nobody goes on from a gap unknowingly.
    pub(super) fn resync_all(&mut self, ctx: &mut Context<Self>) {
        self.persist(false);
        let Some(room) = &self.room else { return };
        let mut snap = self.snapshot(room, RoomRole::Player, self.seq + 1, true);
        snap.your_role = v1::RoomRole::Unspecified as i32;
        self.emit(Body::RoomJoined(snap), &[], None, None, ctx);
    }

    /// Members the reloaded room holds who have no session here keep their seat for the
    /// reconnect grace, as after a dropped socket.
    pub(super) fn hold_absent(&mut self, ctx: &mut Context<Self>) {
        let Some(room) = &self.room else { return };
        let absent: Vec<UserId> = room
            .members
            .iter()
            .map(|m| m.user_id.clone())
            .filter(|u| !self.locals.contains_key(u) && !self.away.contains_key(u))
            .collect();
        let grace = Duration::from_secs(self.deps.cfg.rooms.reconnect_grace_secs);
        for user in absent {
            self.arm_away(user, grace, ctx);
        }
    }

    /// Another pod (`home`) is the room's home now: local members follow it there from the
    /// seq they reached, as members on other pods do (their pods follow the lease), and
    /// the actor stops without touching the room's shared state.
    pub(super) fn deposed(&mut self, home: Arc<str>, ctx: &mut Context<Self>) {
        tracing::warn!(room_id = %self.id, home = %home, "no longer this room's home; members follow");
        self.fanout.release_answers();
        for (user, mut local) in self.locals.drain() {
            Self::collect_stats(&mut self.pending_stats, &user, &mut local);
            let reached = self.fanout.take(&user);
            if let (Peer::Local { notify, .. }, Some(after)) = (&local.peer, reached) {
                notify.do_send(crate::ws::SessionNotice::Moved {
                    room_id: self.id.clone(),
                    home: home.clone(),
                    after,
                });
            }
        }
        if let Some(sub) = self.stop(ctx) {
            let (deps, id) = (self.deps.clone(), self.id.clone());
            actix::spawn(async move {
                let _ = deps.broker.unsubscribe(&id, sub).await;
            });
        }
    }
}

/// How long a room that hands over waits for the publishes it has in flight.
const HAND_OVER_WAIT: Duration = Duration::from_secs(2);

/// The pod is draining. The room stops taking actions (they are refused as unavailable, as
/// during a reload), waits for its publishes in flight, hands its pending writes to the
/// store, and releases its lease, so that another pod takes it over at once instead of
/// after the lease lapses. Answers whether the lease was released.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct HandOver;

impl Handler<HandOver> for RoomActor {
    type Result = actix::ResponseFuture<bool>;

    fn handle(&mut self, _: HandOver, ctx: &mut Context<Self>) -> Self::Result {
        if self.closed {
            return Box::pin(async { false });
        }
        let (tx, rx) = oneshot::channel();
        if self.room.take().is_some() {
            self.begin_hand_over(tx, ctx);
        } else {
            // Reloading (after a failed publish or a panic): hand over once it is back,
            // rather than let the reload claim the lease again here.
            self.hand_over = Some(tx);
        }
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

impl RoomActor {
    /// The room is taken out (actions are refused as unavailable); once its publishes in
    /// flight are answered, it steps down.
    fn begin_hand_over(&mut self, done: oneshot::Sender<bool>, ctx: &mut Context<Self>) {
        self.stale = None;
        let mut tx = Some(done);
        let deadline = Instant::now() + HAND_OVER_WAIT;
        // Polled rather than awaited: the publishes settle in this actor's own context.
        let poll = ctx.run_interval(Duration::from_millis(5), move |act, ctx| {
            if act.recorded < act.seq && Instant::now() < deadline {
                return;
            }
            if let Some(tx) = tx.take() {
                act.step_down(tx, ctx);
            }
        });
        self.timers.push(poll);
    }

    fn step_down(&mut self, done: oneshot::Sender<bool>, ctx: &mut Context<Self>) {
        if self.recorded < self.seq {
            tracing::warn!(room_id = %self.id, seq = self.seq, recorded = self.recorded,
                "handing over with publishes unanswered; their senders were not answered");
        }
        self.handed_over = true;
        let sub = self.stop(ctx);
        let (deps, id, lease) = (self.deps.clone(), self.id.clone(), self.lease.clone());
        let (flushed, landed) = oneshot::channel();
        let _ = self.writer.send(Write::Barrier(flushed));
        actix::spawn(async move {
            let _ = landed.await;
            if let Some(sub) = sub {
                let _ = deps.broker.unsubscribe(&id, sub).await;
            }
            let released = deps.leases.release(&id, &lease).await;
            if let Err(e) = &released {
                tracing::warn!(room_id = %id, error = %e, "lease release failed; it lapses instead");
            }
            let _ = done.send(released.is_ok());
        });
    }
}

/// The room's lease could not be renewed: the room takes it again if it can (Redis lost
/// its data) or stops here (another pod is its home).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Recheck;

impl Handler<Recheck> for RoomActor {
    type Result = ();

    fn handle(&mut self, _: Recheck, ctx: &mut Context<Self>) {
        if !self.closed && self.room.is_some() {
            self.stale = self.room.take();
            self.reload(ctx);
        }
    }
}
