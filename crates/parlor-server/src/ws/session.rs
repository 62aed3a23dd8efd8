//! One actor per WebSocket. It reads binary frames (one Envelope each), answers Hello,
//! forwards room actions to room actors and writes through its Outbox.
//!
//! Requests that change which rooms the session is in (create, join, leave) run with
//! `ctx.wait`, so a client's later frames are handled after them, in order.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{
    Actor, ActorContext, ActorFutureExt, AsyncContext, Handler, Message, StreamHandler, WrapFuture,
};
use actix_web::{
    body::{BodyStream, BoxBody},
    web, HttpMessage, HttpRequest, HttpResponse,
};
use actix_ws::{AggregatedMessage, ProtocolError};
use bytes::Bytes;
use parlor_core::{new_id, now_ms, GlobalRole, RoomId, UserId};
use parlor_protocol::{
    close, decode_envelope, encode_envelope, error_envelope, error_envelope_after,
    v1::{self, envelope::Body},
    ErrorCode, PROTOCOL_VERSION,
};

use super::outbox::{self, Out, Outbox};
use crate::{
    auth::TokenKind,
    config::Parts as _,
    error::{ApiError, ApiResult},
    rooms::{self, RoomRef},
    server::Shared,
    users::CheckUser,
};

/// Who a session is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) user_id: UserId,
    pub(crate) name: String,
    pub(crate) role: GlobalRole,
}

/// Something a room or manager tells a session.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub(crate) enum SessionNotice {
    /// The session is no longer in this room (kicked, banned, replaced, closed).
    RoomGone { room_id: RoomId },
    /// Close the socket with this code after the queued frames.
    Close { code: u16, reason: String },
    /// The pod is draining: send Reconnect, then close with 1001.
    Drain { reason: String },
    /// A room the session is in now runs on this pod (its home died and this pod took it).
    Rehomed { room_id: RoomId, room: RoomRef },
    /// The room this pod ran moved to `home`: join it there, from the seq reached.
    Moved {
        room_id: RoomId,
        home: Arc<str>,
        after: u64,
    },
}

#[derive(Message)]
#[rtype(result = "()")]
struct WriterDone;

/// What resolving a room answers.
type Resolved = Result<ApiResult<(RoomId, RoomRef)>, actix::MailboxError>;

/// JoinOrCreate looks this many times for a room with a free seat.
const JOIN_OR_CREATE_TRIES: usize = 20;
/// Between two looks, while the directory catches up with a room that filled.
const JOIN_OR_CREATE_PAUSE: Duration = Duration::from_millis(25);

/// Tries at joining a room where it moved, half a second apart while its new home is
/// not ready (it may still be rebuilding the room).
const FOLLOW_TRIES: u32 = 20;

/// How long a queued close may take before the session stops regardless.
const CLOSE_BACKSTOP: Duration = Duration::from_secs(3);

/// The actor behind one WebSocket.
pub(crate) struct WsSession {
    shared: Arc<Shared>,
    id: String,
    /// Names this session to room actors, and in the origin of the events it causes; a
    /// number, so that no id is copied per event. The same on every pod.
    no: u64,
    outbox: Outbox,
    /// This actor, as rooms and other pods' answers reach it.
    notify: actix::Recipient<SessionNotice>,
    upgrade_token: Option<String>,
    identity: Option<Identity>,
    rooms: HashMap<RoomId, RoomRef>,
    /// Rooms being joined again where they moved: requests on them are refused meanwhile.
    moving: Vec<RoomId>,
    last_seen: Instant,
    closing: bool,
    frames: parlor_core::TokenBucket,
    strikes: u32,
    /// The client's address, for the limits keyed by it.
    from: Option<crate::guard::Addr>,
    /// Wrong room codes and passwords this session has sent.
    wrong_guesses: u32,
    /// This socket's place under the pod's and the address's caps.
    _admitted: crate::guard::SocketPermit,
}

/// How a join is tried: how many times (a room found full is looked for again), and
/// whether it names a code or a password, so that a wrong one spends the guess budgets.
#[derive(Clone, Copy)]
struct Attempt {
    tries: usize,
    guess: bool,
}

/// The subprotocol a client offers, and the pod selects, on /ws.
const SUBPROTOCOL: &str = "parlor.v1";
/// A subprotocol entry that carries the access token: `parlor.bearer.<token>`. Browsers
/// cannot set headers on a WebSocket, and a token in the URL ends up in proxy logs.
const BEARER_PROTOCOL: &str = "parlor.bearer.";

/// GET /ws: upgrades to a WebSocket. A token in `?token=` or `Authorization: Bearer` is
/// checked here, so a bad one is refused with 401 before the upgrade.
pub(crate) async fn ws_route(
    req: HttpRequest,
    body: web::Payload,
    shared: web::Data<Shared>,
) -> ApiResult<HttpResponse> {
    let shared = shared.into_inner();
    if shared.is_draining() {
        return Err(ApiError::new(ErrorCode::Unavailable, "pod is draining"));
    }
    shared.guard.check_origin(&req)?;
    let from = shared.guard.client(&req);
    let admitted = shared.guard.admit_socket(from)?;
    let (offered, protocol_token) = subprotocols(&req);
    let token = crate::http::bearer(&req)
        .or(protocol_token)
        .or_else(|| query_token(&req));
    if let Some(t) = &token {
        shared.verify_token(t, TokenKind::Access)?;
    }
    let (mut response, session, stream) = actix_ws::handle(&req, body)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    if offered {
        response.headers_mut().insert(
            actix_web::http::header::SEC_WEBSOCKET_PROTOCOL,
            actix_web::http::header::HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    let max = shared.cfg.ws.max_frame_bytes;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    // Frames leave through our own body (ws/outbox.rs), so actix-ws's Session goes unused.
    drop(session);
    let (head, upgrade) = response.into_parts();
    let id = new_id("s_");
    let no = crate::relay::session_no(&shared.cfg.server.pod_name, &id);
    let rate = shared.cfg.ws.max_frames_per_sec;
    let mut outbound = None;
    WsSession::create(|ctx| {
        let addr = ctx.address();
        let (outbox, body) = outbox::start(
            shared.cfg.queue_limits(),
            shared.metrics.clone(),
            addr.clone().recipient(),
            upgrade,
            move || addr.do_send(WriterDone),
        );
        if let Some(slot) = req.extensions().get::<outbox::LinkSlot>() {
            body.link(slot);
        }
        outbound = Some(body);
        ctx.add_stream(stream);
        WsSession {
            shared,
            id,
            no,
            outbox,
            notify: ctx.address().recipient(),
            upgrade_token: token,
            identity: None,
            rooms: HashMap::new(),
            moving: Vec::new(),
            last_seen: Instant::now(),
            closing: false,
            frames: parlor_core::TokenBucket::new(rate, rate.saturating_mul(2), Instant::now()),
            strikes: 0,
            from,
            wrong_guesses: 0,
            _admitted: admitted,
        }
    });
    let body = outbound.ok_or_else(|| ApiError::internal("session did not start"))?;
    Ok(head.set_body(BoxBody::new(BodyStream::new(body))))
}

/// Whether the client offered `parlor.v1`, and the token of a `parlor.bearer.` entry.
fn subprotocols(req: &HttpRequest) -> (bool, Option<String>) {
    let mut offered = false;
    let mut token = None;
    let values = req
        .headers()
        .get_all(actix_web::http::header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok());
    for p in values.flat_map(|v| v.split(',')).map(str::trim) {
        if p == SUBPROTOCOL {
            offered = true;
        } else if let Some(t) = p.strip_prefix(BEARER_PROTOCOL).filter(|t| !t.is_empty()) {
            token = Some(t.to_owned());
        }
    }
    (offered, token)
}

fn query_token(req: &HttpRequest) -> Option<String> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("token").cloned())
        .filter(|t| !t.is_empty())
}

/// The frame's index in `metrics::FRAME_TYPES`.
fn body_kind(body: &Body) -> usize {
    match body {
        Body::Hello(_) => 0,
        Body::Ping(_) => 1,
        Body::CreateRoom(_) => 2,
        Body::JoinRoom(_) => 3,
        Body::JoinOrCreate(_) => 4,
        Body::LeaveRoom(_) => 5,
        Body::ListRooms(_) => 6,
        Body::UpdateRoom(_) => 7,
        Body::Chat(_) => 8,
        Body::GameEvent(_) => 9,
        Body::PresenceUpdate(_) => 10,
        Body::Moderate(_) => 11,
        Body::GameAction(_) => 14,
        _ => 12,
    }
}

/// Index of undecodable frames in `metrics::FRAME_TYPES`.
const INVALID_KIND: usize = 13;

impl Actor for WsSession {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shared.metrics.connections.inc();
        let hb = self.shared.cfg.heartbeat();
        let idle = self.shared.cfg.idle_timeout();
        ctx.run_interval(hb, move |act, ctx| {
            if act.last_seen.elapsed() > idle {
                act.close_with(ctx, close::IDLE_TIMEOUT, "idle timeout");
            } else {
                act.outbox.send(Out::Ping);
            }
        });
        let hello = Duration::from_millis(self.shared.cfg.ws.hello_timeout_ms);
        ctx.run_later(hello, |act, ctx| {
            if act.identity.is_none() {
                act.close_with(ctx, close::IDLE_TIMEOUT, "no Hello in time");
            }
        });
    }

    fn stopping(&mut self, _ctx: &mut Self::Context) -> actix::Running {
        if let Some(who) = &self.identity {
            // A player who goes leaves every matchmaking queue.
            self.shared.matchmaker.do_send(crate::matchmaker::Cancel {
                user: who.user_id.clone(),
                kind: None,
                stamp: crate::matchmaker::stamp(),
            });
            for (room_id, room) in self.rooms.drain() {
                match room {
                    RoomRef::Local(room) => room.do_send(rooms::Leave {
                        room_id,
                        user_id: who.user_id.clone(),
                        session: self.no,
                        reason: v1::LeaveReason::Disconnected,
                        request_id: 0,
                        reply: None,
                    }),
                    RoomRef::Remote(home) => {
                        let (relay, who, id) =
                            (self.shared.relay.clone(), who.clone(), self.id.clone());
                        actix::spawn(async move {
                            relay.leave(&home, &room_id, &who, &id, 0, true).await;
                        });
                    }
                }
            }
            self.shared.sessions.remove(&self.id);
            self.shared.conns.do_send(crate::connections::Disconnect {
                session_id: self.id.clone(),
                user_id: who.user_id.clone(),
            });
        }
        actix::Running::Stop
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.shared.metrics.connections.dec();
    }
}

impl StreamHandler<Result<AggregatedMessage, ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<AggregatedMessage, ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match msg {
            Ok(AggregatedMessage::Binary(bytes)) => self.on_frame(bytes, ctx),
            Ok(AggregatedMessage::Text(_)) => {
                self.error(
                    0,
                    ErrorCode::TextFrame,
                    "only binary protobuf frames are accepted",
                );
                self.close_with(ctx, close::UNSUPPORTED_DATA, "text frames are not accepted");
            }
            Ok(AggregatedMessage::Ping(b)) => {
                self.outbox.send(Out::Pong(b));
            }
            Ok(AggregatedMessage::Pong(_)) => {}
            // RFC 6455: answer a Close with a Close, so that the client can finish at once.
            Ok(AggregatedMessage::Close(reason)) => {
                let code = reason.map_or(close::NORMAL, |r| u16::from(r.code));
                self.close_with(ctx, code, "closing");
            }
            Err(ProtocolError::Overflow) => {
                self.shared.metrics.error(ErrorCode::FrameTooLarge);
                self.close_with(ctx, close::TOO_BIG, "frame over the size limit");
            }
            // The peer went away without a close frame: nothing to answer.
            Err(ProtocolError::Io(_)) => ctx.stop(),
            Err(e) => {
                self.shared.metrics.error(ErrorCode::MalformedFrame);
                self.close_with(
                    ctx,
                    close::POLICY_VIOLATION,
                    &format!("protocol error: {e}"),
                );
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<WriterDone> for WsSession {
    type Result = ();
    fn handle(&mut self, _: WriterDone, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<SessionNotice> for WsSession {
    type Result = ();
    fn handle(&mut self, msg: SessionNotice, ctx: &mut Self::Context) {
        match msg {
            SessionNotice::RoomGone { room_id } => {
                self.moving.retain(|r| *r != room_id);
                self.rooms.remove(&room_id);
            }
            SessionNotice::Rehomed { room_id, room } => {
                if let Some(r) = self.rooms.get_mut(&room_id) {
                    *r = room;
                }
            }
            SessionNotice::Moved {
                room_id,
                home,
                after,
            } => self.follow(room_id, home, after, FOLLOW_TRIES, ctx),
            SessionNotice::Close { code, reason } => self.close_with(ctx, code, &reason),
            SessionNotice::Drain { reason } => {
                self.outbox.push(encode_envelope(
                    0,
                    0,
                    Body::Reconnect(v1::Reconnect {
                        reason: reason.clone(),
                        // Spread out, so that a drained pod's clients do not all arrive at
                        // once; their rooms have moved already.
                        retry_after_ms: rand::random_range(100..1000),
                    }),
                ));
                self.close_with(ctx, close::GOING_AWAY, &reason);
            }
        }
    }
}

impl WsSession {
    fn error(&self, request_id: u64, code: ErrorCode, message: &str) {
        self.shared.metrics.error(code);
        self.outbox.push(error_envelope(request_id, code, message));
    }

    fn api_error(&self, request_id: u64, e: &ApiError) {
        self.shared.metrics.error(e.code);
        let frame = error_envelope_after(request_id, e.code, &e.message, e.retry_after_ms());
        self.outbox.push(frame);
    }

    /// Queues the caller for a group of a seated kind (or cancels), answering with an Ack;
    /// `Matched` follows once a group forms.
    fn matchmake(&mut self, rid: u64, m: v1::Matchmake, ctx: &mut actix::Context<Self>) {
        use crate::matchmaker::{stamp, Cancel, Enqueue, Ticket};
        let at = stamp();
        let who = self.me();
        if who.role == GlobalRole::Visitor {
            return self.error(
                rid,
                ErrorCode::Unauthenticated,
                "sign in (a guest account will do)",
            );
        }
        if !crate::matchmaker::KINDS.contains(&m.kind.as_str()) {
            return self.error(
                rid,
                ErrorCode::WrongKind,
                "the matchmaker seats match and trivia",
            );
        }
        if m.cancel {
            self.shared.matchmaker.do_send(Cancel {
                user: who.user_id,
                kind: Some(m.kind),
                stamp: at,
            });
            return self.reply(rid, Body::Ack(v1::Ack::default()));
        }
        let (min, max) = match m.kind.as_str() {
            "match" => (2, 2),
            _ => {
                let min = m.min_players.max(2);
                (
                    min,
                    if m.max_players == 0 {
                        min
                    } else {
                        m.max_players
                    },
                )
            }
        };
        if min > max || max > 16 {
            return self.error(
                rid,
                ErrorCode::InvalidArgument,
                "2 <= min_players <= max_players <= 16",
            );
        }
        let store = self.shared.store.clone();
        let kind = m.kind.clone();
        let user = who.user_id.clone();
        let fut = async move {
            let stored = store.ratings.rating(&user, &kind).await?;
            Ok::<_, parlor_store::StoreError>(stored.map(|r| r.value))
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
            // The Ack goes first: a group can form, and Matched follow, at once.
            Ok(rating) => {
                act.reply(rid, Body::Ack(v1::Ack::default()));
                act.shared.matchmaker.do_send(Enqueue(Ticket {
                    who,
                    session: act.id.clone(),
                    request_id: rid,
                    kind: m.kind,
                    min,
                    max,
                    rating,
                    stamp: at,
                }));
            }
            Err(e) => act.api_error(rid, &ApiError::from(e)),
        }));
    }

    fn reply(&self, request_id: u64, body: Body) {
        self.shared.metrics.out_direct.inc();
        self.outbox.push(encode_envelope(request_id, 0, body));
    }

    /// Queues a close after the frames already queued; the writer then ends the actor.
    fn close_with(&mut self, ctx: &mut actix::Context<Self>, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        if !self.outbox.send(Out::Close(code, reason.to_owned())) {
            ctx.stop();
            return;
        }
        // Backstop: if the writer cannot deliver the close (a peer that reads nothing), the
        // session still ends, and with it its room seats.
        ctx.run_later(CLOSE_BACKSTOP, |_, ctx| ctx.stop());
    }

    fn on_frame(&mut self, bytes: Bytes, ctx: &mut actix::Context<Self>) {
        if self.closing {
            return;
        }
        let started = Instant::now();
        let (request_id, body) = match decode_envelope(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.shared.metrics.frame_in[INVALID_KIND].inc();
                self.error(0, e.code(), &e.to_string());
                return;
            }
        };
        let kind = body_kind(&body);
        self.shared.metrics.frame_in[kind].inc();
        if let Err(e) = parlor_core::check_inbound(&body, &self.shared.limits) {
            self.error(request_id, e.code, &e.message);
            return;
        }
        if !self.frames.try_take(started) {
            self.strikes += 1;
            let wait = self.frames.wait_hint().as_millis().max(1);
            self.outbox.push(error_envelope_after(
                request_id,
                ErrorCode::RateLimited,
                "too many frames; slow down",
                u32::try_from(wait).unwrap_or(u32::MAX),
            ));
            self.shared.metrics.error(ErrorCode::RateLimited);
            if self.strikes >= self.shared.cfg.ws.flood_strikes {
                self.close_with(ctx, close::FLOOD, "flooding after rate limit");
            }
            return;
        }
        self.strikes = 0;
        self.dispatch(request_id, body, ctx);
        self.shared.metrics.frame_time[kind].observe(started.elapsed().as_secs_f64());
    }

    fn dispatch(&mut self, rid: u64, body: Body, ctx: &mut actix::Context<Self>) {
        if self.identity.is_none() {
            return match body {
                Body::Hello(h) => self.on_hello(rid, h, ctx),
                _ => self.error(
                    rid,
                    ErrorCode::HelloRequired,
                    "the first frame must be Hello",
                ),
            };
        }
        // The identity is cloned only where a request needs it whole (joins, private chat),
        // not for every room event.
        match body {
            Body::Hello(_) => self.error(
                rid,
                ErrorCode::AlreadyWelcomed,
                "Hello was already accepted",
            ),
            Body::Ping(p) => self.reply(
                rid,
                Body::Pong(v1::Pong {
                    client_time_ms: p.client_time_ms,
                    server_time_ms: now_ms(),
                }),
            ),
            Body::CreateRoom(req) => {
                let (manager, who) = (self.shared.rooms.clone(), self.me());
                let owner = who.clone();
                let create = move || {
                    manager.send(rooms::Create {
                        req: req.clone(),
                        owner: owner.clone(),
                        tournament: None,
                        quota: true,
                    })
                };
                let once = Attempt {
                    tries: 1,
                    guess: false,
                };
                self.enter_room(rid, who, create, once, rooms::JoinSpec::default(), ctx);
            }
            Body::JoinRoom(req) => {
                // A code or a password can be guessed; a room id cannot (96 random bits).
                let guess = !req.code.is_empty() || !req.password.is_empty();
                if guess {
                    if let Err(e) = self.guess_allowed() {
                        return self.api_error(rid, &e);
                    }
                }
                let spec = rooms::JoinSpec {
                    role: parlor_core::RoomRole::requested(req.role),
                    password: req.password.clone(),
                    last_seq: req.last_seq,
                };
                // A live room is found without a round trip through the manager.
                if let Some(room) = self.shared.live_rooms.get(&req.room_id) {
                    let found = (RoomId(req.room_id), RoomRef::Local(room));
                    let live = move || std::future::ready(Ok(Ok(found.clone())));
                    let once = Attempt { tries: 1, guess };
                    return self.enter_room(rid, self.me(), live, once, spec, ctx);
                }
                let manager = self.shared.rooms.clone();
                let resolve = move || {
                    manager.send(rooms::Resolve {
                        room_id: req.room_id.clone(),
                        code: req.code.clone(),
                    })
                };
                let once = Attempt { tries: 1, guess };
                self.enter_room(rid, self.me(), resolve, once, spec, ctx);
            }
            Body::JoinOrCreate(req) => {
                let spec = rooms::JoinSpec {
                    role: parlor_core::RoomRole::requested(req.role),
                    ..Default::default()
                };
                let (manager, who) = (self.shared.rooms.clone(), self.me());
                // A room found open can fill before this join reaches it (another pod's
                // joiners): look again rather than fail.
                let find = move || {
                    manager.send(rooms::FindOrCreate {
                        kind: req.kind.clone(),
                        who: who.clone(),
                    })
                };
                let tries = Attempt {
                    tries: JOIN_OR_CREATE_TRIES,
                    guess: false,
                };
                self.enter_room(rid, self.me(), find, tries, spec, ctx);
            }
            Body::LeaveRoom(req) => {
                let room_id = RoomId(req.room_id);
                self.moving.retain(|r| *r != room_id);
                let Some(room) = self.rooms.remove(&room_id) else {
                    return self.error(rid, ErrorCode::NotInRoom, "you are not in that room");
                };
                match room {
                    RoomRef::Local(room) => room.do_send(rooms::Leave {
                        room_id,
                        user_id: self.user_id(),
                        session: self.no,
                        reason: v1::LeaveReason::Left,
                        request_id: rid,
                        reply: Some(self.peer(ctx)),
                    }),
                    RoomRef::Remote(home) => {
                        let (relay, who, id) =
                            (self.shared.relay.clone(), self.me(), self.id.clone());
                        // In order with later frames: a rejoin right after goes out after it.
                        ctx.wait(
                            async move { relay.leave(&home, &room_id, &who, &id, rid, false).await }
                                .into_actor(self),
                        );
                    }
                }
            }
            Body::ListRooms(req) => {
                let limit = match req.limit {
                    0 => 50,
                    n => n.min(200),
                } as usize;
                let dir = self.shared.directory.clone();
                let kind = (!req.kind.is_empty()).then_some(req.kind);
                let fut =
                    async move { dir.list(kind.as_deref(), req.offset as usize, limit).await };
                ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
                    Ok((rooms, total)) => act.reply(
                        rid,
                        Body::RoomList(v1::RoomList {
                            rooms,
                            total: total as u32,
                        }),
                    ),
                    Err(e) => act.api_error(rid, &e.into()),
                }));
            }
            Body::UpdateRoom(req) => {
                if let Some(room) = self.joined(rid, &req.room_id) {
                    self.act(&room, rid, rooms::Action::Update(req));
                }
            }
            Body::Moderate(req) => {
                if let Some(room) = self.joined(rid, &req.room_id) {
                    self.act(&room, rid, rooms::Action::Moderate(req));
                }
            }
            Body::Chat(req) if req.room_id.is_empty() => {
                self.private_chat(rid, self.me(), req, ctx)
            }
            Body::Chat(req) => {
                if let Some(room) = self.joined(rid, &req.room_id) {
                    self.act(&room, rid, rooms::Action::Chat(req.text));
                }
            }
            Body::GameEvent(ev) => {
                if let Some(room) = self.joined(rid, &ev.room_id) {
                    self.act(&room, rid, rooms::Action::Event(ev));
                }
            }
            Body::PresenceUpdate(p) => {
                if let Some(room) = self.joined(rid, &p.room_id) {
                    self.act(&room, rid, rooms::Action::Presence(p));
                }
            }
            Body::GameAction(a) => {
                if let Some(room) = self.joined(rid, &a.room_id) {
                    self.act(&room, rid, rooms::Action::Game(a));
                }
            }
            Body::Matchmake(m) => self.matchmake(rid, m, ctx),
            _ => self.error(
                rid,
                ErrorCode::UnknownMessage,
                "that message is server-to-client only",
            ),
        }
    }

    /// Hands a member's action to its room, here or on its home pod; the room answers
    /// errors itself.
    fn act(&self, (room, room_id): &(RoomRef, RoomId), rid: u64, action: rooms::Action) {
        match room {
            RoomRef::Local(room) => room.do_send(rooms::Act {
                user_id: self.user_id(),
                session: self.no,
                request_id: rid,
                reply: rooms::Peer::Local {
                    outbox: self.outbox.clone(),
                    notify: self.notify.clone(),
                },
                action,
            }),
            RoomRef::Remote(home) => {
                let request = v1::Envelope {
                    request_id: rid,
                    seq: 0,
                    body: Some(action.into_body(room_id)),
                };
                self.shared.relay.forward(
                    home,
                    room_id,
                    &self.me(),
                    &self.id,
                    Some(request),
                    false,
                );
            }
        }
    }

    /// This session as a room sees it.
    fn peer(&self, _ctx: &mut actix::Context<Self>) -> rooms::Peer {
        rooms::Peer::Local {
            outbox: self.outbox.clone(),
            notify: self.notify.clone(),
        }
    }

    /// The welcomed identity (dispatch checks that there is one).
    fn me(&self) -> Identity {
        self.identity.clone().unwrap_or_else(|| Identity {
            user_id: UserId(String::new()),
            name: String::new(),
            role: GlobalRole::Visitor,
        })
    }

    fn user_id(&self) -> UserId {
        self.identity
            .as_ref()
            .map_or_else(|| UserId(String::new()), |w| w.user_id.clone())
    }

    fn joined(&self, rid: u64, room_id: &str) -> Option<(RoomRef, RoomId)> {
        if self.moving.iter().any(|r| r.as_str() == room_id) {
            self.error(
                rid,
                ErrorCode::Unavailable,
                "the room is moving to another pod; try again",
            );
            return None;
        }
        let room = self
            .rooms
            .get(room_id)
            .cloned()
            .map(|r| (r, RoomId(room_id.to_owned())));
        if room.is_none() {
            self.error(rid, ErrorCode::NotInRoom, "you are not in that room");
        }
        room
    }

    fn on_hello(&mut self, rid: u64, hello: v1::Hello, ctx: &mut actix::Context<Self>) {
        if hello.protocol_version != PROTOCOL_VERSION {
            self.error(
                rid,
                ErrorCode::UnsupportedVersion,
                &format!(
                    "protocol version {} is not supported; use {PROTOCOL_VERSION}",
                    hello.protocol_version
                ),
            );
            return self.close_with(
                ctx,
                close::UNSUPPORTED_VERSION,
                "unsupported protocol version",
            );
        }
        let token = if !hello.access_token.is_empty() {
            Some((hello.access_token, TokenKind::Access))
        } else if !hello.resume_token.is_empty() {
            Some((hello.resume_token, TokenKind::Resume))
        } else {
            self.upgrade_token.take().map(|t| (t, TokenKind::Access))
        };
        let Some((token, kind)) = token else {
            let who = Identity {
                user_id: UserId(format!("{}{}", parlor_core::VISITOR_PREFIX, &self.id[2..])),
                name: "visitor".into(),
                role: GlobalRole::Visitor,
            };
            return self.welcome(rid, who, None, ctx);
        };
        let claims = match self.shared.verify_token(&token, kind) {
            Ok(c) => c,
            Err(e) => return self.auth_failed(rid, &e, ctx),
        };
        // A resumed session's resume token never outlives the one it came from.
        let resume_until = (kind == TokenKind::Resume).then_some(claims.exp);
        let id = UserId(claims.sub);
        let identity = |user: parlor_store::UserRecord| Identity {
            user_id: user.id,
            name: user.name,
            role: user.role,
        };
        // A known account is welcomed without a round trip through the manager.
        if let Some(user) = self.shared.user_cache.get(&id) {
            return self.welcome(rid, identity(user), resume_until, ctx);
        }
        let fut = self.shared.users.send(CheckUser { id });
        ctx.wait(fut.into_actor(self).map(move |res, act, ctx| {
            match res.map_err(ApiError::from).and_then(|r| r) {
                Ok(user) => act.welcome(rid, identity(user), resume_until, ctx),
                Err(e) => {
                    act.shared
                        .metrics
                        .auth_failures
                        .with_label_values(&["unknown_user"])
                        .inc();
                    act.auth_failed(rid, &e, ctx)
                }
            }
        }));
    }

    fn auth_failed(&mut self, rid: u64, e: &ApiError, ctx: &mut actix::Context<Self>) {
        self.api_error(rid, e);
        self.close_with(ctx, close::AUTH_FAILED, "authentication failed");
    }

    fn welcome(
        &mut self,
        rid: u64,
        who: Identity,
        resume_until: Option<u64>,
        ctx: &mut actix::Context<Self>,
    ) {
        let ttl = self.shared.cfg.auth.resume_ttl_secs;
        let ttl = resume_until.map_or(ttl, |exp| {
            exp.saturating_sub((now_ms() / 1000).max(0) as u64).min(ttl)
        });
        let resume_token = if who.role == GlobalRole::Visitor {
            String::new()
        } else {
            self.shared
                .keys
                .issue(
                    TokenKind::Resume,
                    who.user_id.as_str(),
                    &who.name,
                    who.role,
                    ttl,
                    None,
                )
                .0
        };
        self.shared.sessions.insert(
            self.id.clone(),
            crate::relay::SessionRef {
                who: who.clone(),
                no: self.no,
                outbox: self.outbox.clone(),
                notify: self.notify.clone(),
            },
        );
        self.shared.conns.do_send(crate::connections::Connect {
            session_id: self.id.clone(),
            user_id: who.user_id.clone(),
            account: who.role != GlobalRole::Visitor,
            addr: ctx.address().recipient(),
            outbox: self.outbox.clone(),
        });
        self.reply(
            rid,
            Body::Welcome(v1::Welcome {
                session_id: self.id.clone(),
                user: Some(v1::User {
                    id: who.user_id.0.clone(),
                    name: who.name.clone(),
                    role: who.role.to_proto() as i32,
                }),
                server_time_ms: now_ms(),
                resume_token,
                protocol_version: PROTOCOL_VERSION,
                heartbeat_interval_ms: self.shared.cfg.ws.heartbeat_interval_ms as u32,
                idle_timeout_ms: self.shared.cfg.ws.idle_timeout_ms as u32,
            }),
        );
        tracing::debug!(session_id = %self.id, user_id = %who.user_id, "session welcomed");
        self.identity = Some(who);
    }

    /// Resolves a room (create, join, join-or-create), then joins it, in order with later
    /// frames; resolves again (up to `tries` in all) while the room found is full.
    fn enter_room<F: std::future::Future<Output = Resolved> + 'static>(
        &mut self,
        rid: u64,
        who: Identity,
        mut resolve: impl FnMut() -> F + 'static,
        Attempt { tries, guess }: Attempt,
        spec: rooms::JoinSpec,
        ctx: &mut actix::Context<Self>,
    ) {
        let peer = self.peer(ctx);
        let session = self.no;
        let (relay, session_id) = (self.shared.relay.clone(), self.id.clone());
        let fut = async move {
            let mut left = tries;
            loop {
                left -= 1;
                let (room_id, room) = resolve().await.map_err(ApiError::from)??;
                let joined = match &room {
                    RoomRef::Local(addr) => addr
                        .send(rooms::Join {
                            who: who.clone(),
                            session,
                            peer: peer.clone(),
                            spec: spec.clone(),
                            request_id: rid,
                        })
                        .await
                        .map_err(ApiError::from)?,
                    RoomRef::Remote(home) => {
                        relay
                            .clone()
                            .join(
                                home.clone(),
                                room_id.clone(),
                                who.clone(),
                                session_id.clone(),
                                spec.clone(),
                                rid,
                            )
                            .await
                    }
                };
                match joined {
                    Err(e) if e.code == ErrorCode::RoomFull && left > 0 => {
                        tokio::time::sleep(JOIN_OR_CREATE_PAUSE).await;
                    }
                    r => return r.map(|()| (room_id, room)),
                }
            }
        };
        ctx.wait(fut.into_actor(self).map(move |res, act, _| match res {
            Ok((room_id, room)) => {
                act.rooms.insert(room_id, room);
            }
            Err(e) => {
                if guess && matches!(e.code, ErrorCode::RoomNotFound | ErrorCode::WrongPassword) {
                    act.wrong_guesses += 1;
                    if let Some(a) = act.from {
                        act.shared.guard.guesses.fail(&a);
                    }
                }
                act.api_error(rid, &e)
            }
        }));
    }

    /// A join by code or password: refused once this session, or its address, has sent
    /// too many wrong ones.
    fn guess_allowed(&self) -> ApiResult<()> {
        if self.wrong_guesses >= self.shared.guard.session_guesses {
            self.shared
                .metrics
                .refused
                .with_label_values(&["room_guess"])
                .inc();
            return Err(ApiError::new(
                ErrorCode::RateLimited,
                "too many wrong room codes or passwords on this connection",
            ));
        }
        self.shared.guard.guess_allowed(self.from)
    }

    /// Joins a room at its new home from `after`, trying again while that home answers
    /// UNAVAILABLE; if it still fails, the client is told the room is gone rather than
    /// left in it without events. During a try the session's own requests wait
    /// (`ctx.wait`), so that none reaches the new home before the join; between tries,
    /// requests on the room are refused with UNAVAILABLE (`moving`).
    fn follow(
        &mut self,
        room_id: RoomId,
        home: Arc<str>,
        after: u64,
        tries: u32,
        ctx: &mut actix::Context<Self>,
    ) {
        let Some(r) = self.rooms.get_mut(&room_id) else {
            return;
        };
        *r = RoomRef::Remote(home.clone());
        if !self.moving.contains(&room_id) {
            self.moving.push(room_id.clone());
        }
        let (relay, who, id) = (self.shared.relay.clone(), self.me(), self.id.clone());
        let spec = rooms::JoinSpec {
            role: parlor_core::RoomRole::Player,
            password: String::new(),
            last_seq: after,
        };
        let (room, to) = (room_id.clone(), home.clone());
        let join = async move { relay.join(to, room, who, id, spec, 0).await };
        ctx.wait(join.into_actor(self).map(move |res, act, ctx| {
            // Moved on again meanwhile: the newer move is followed instead.
            let still = matches!(act.rooms.get(&room_id), Some(RoomRef::Remote(h)) if *h == home);
            let Err(e) = res else {
                if still {
                    act.moving.retain(|r| *r != room_id);
                }
                return;
            };
            if !still {
                // Left meanwhile (a newer move keeps its own entry).
                if !act.rooms.contains_key(&room_id) {
                    act.moving.retain(|r| *r != room_id);
                }
                return;
            }
            if e.code == ErrorCode::Unavailable && tries > 1 {
                ctx.run_later(Duration::from_millis(500), move |act, ctx| {
                    // A newer move, or a leave, during the pause ends this chain.
                    let still =
                        matches!(act.rooms.get(&room_id), Some(RoomRef::Remote(h)) if *h == home);
                    if still {
                        act.follow(room_id, home, after, tries - 1, ctx)
                    }
                });
                return;
            }
            tracing::warn!(room_id = %room_id, error = %e, "following a moved room failed");
            act.moving.retain(|r| *r != room_id);
            act.rooms.remove(&room_id);
            act.outbox.push(encode_envelope(
                0,
                0,
                Body::RoomLeft(v1::RoomLeft {
                    room_id: room_id.0,
                    reason: v1::LeaveReason::Closed as i32,
                }),
            ));
        }));
    }

    fn private_chat(
        &mut self,
        rid: u64,
        who: Identity,
        req: v1::Chat,
        ctx: &mut actix::Context<Self>,
    ) {
        if let Err(e) = parlor_core::check(
            parlor_core::Action::PrivateChat,
            who.role,
            None,
            &parlor_core::RoomPolicy::default(),
        ) {
            return self.api_error(rid, &e.into());
        }
        if req.to_user_id.is_empty() {
            return self.error(rid, ErrorCode::InvalidArgument, "set room_id or to_user_id");
        }
        if req.text.trim().is_empty() {
            return self.error(
                rid,
                ErrorCode::InvalidArgument,
                "a private message must not be empty",
            );
        }
        if req.to_user_id == who.user_id.0 {
            return self.error(rid, ErrorCode::InvalidArgument, "that is you");
        }
        if UserId(req.to_user_id.clone()).is_visitor() {
            return self.error(
                rid,
                ErrorCode::Forbidden,
                "visitors have no account and take no private messages",
            );
        }
        let frame = encode_envelope(
            0,
            0,
            Body::ChatMessage(v1::ChatMessage {
                room_id: String::new(),
                from_user_id: who.user_id.0.clone(),
                from_name: who.name.clone(),
                text: req.text,
                sent_at_ms: now_ms(),
                to_user_id: req.to_user_id.clone(),
            }),
        );
        let to = UserId(req.to_user_id);
        let shared = self.shared.clone();
        let sent = frame.clone();
        let from = who.user_id;
        // Sessions here get it at once; those on other pods through their pods' inboxes.
        let fut = async move {
            let accepts = shared
                .users
                .send(crate::users::Accepts {
                    to: to.clone(),
                    from,
                })
                .await??;
            if !accepts {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "that user takes no private messages from you",
                ));
            }
            let here = shared
                .conns
                .send(crate::connections::DirectMessage {
                    to: to.clone(),
                    frame: sent.clone(),
                })
                .await?;
            let there = shared.relay.to_user(&*shared.presence, &to, sent).await;
            Ok::<_, ApiError>(here + there)
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| match res {
            Ok(0) => act.error(rid, ErrorCode::UserNotFound, "that user is not online"),
            Ok(_) => {
                // The sender gets its own copy as the acknowledgement.
                act.outbox.push(frame);
            }
            Err(e) => act.api_error(rid, &e),
        }));
    }
}
