//! Relay: this pod's end of the pod inboxes.
//!
//! - As a room's home, it runs requests forwarded by members' pods, and answers through
//!   their pods' inboxes (`rooms::Peer::Remote`).
//! - For a room homed on another pod, it subscribes to the room once for all its local
//!   members, forwards their requests to the home, and seats a joiner in the local fan-out
//!   when the home has answered, after the seq of its snapshot.
//!
//! Inbox messages are handled in arrival order, so a join's snapshot (Deliver) is pushed
//! before the session is seated (Seated), and every event after the snapshot reaches it
//! exactly once. A forwarded join that gets no answer in time ends in UNAVAILABLE, and so
//! does any other forwarded request: its answer is a frame carrying its request id, or the
//! room event whose origin it is. The home applies a retry (same session and request id)
//! only once.
//!
//! Failover: the relay checks each remote room's lease a few times per lease time. When
//! it lapsed (the home died) it claims the room; whoever becomes the new home, each local
//! member is taken out of the fan-out at the seq it had reached and joins the new home
//! from there, getting a resumed snapshot and the events it missed, then live ones.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock},
    time::{Duration, Instant},
};

use actix::{Addr, Recipient};
use bytes::Bytes;
use parlor_cluster::{Broker, EventSink, Inbox, Leases, Origin, Presence, SubscriptionId};
use parlor_core::{GlobalRole, RoomId, RoomRole, UserId};
use parlor_protocol::{
    error_envelope,
    v1::{self, envelope::Body, pod_message},
    ErrorCode,
};
use prost::Message as _;
use tokio::sync::oneshot;

use crate::{
    connections::{CloseUser, ConnectionManager, DirectMessage},
    error::{ApiError, ApiResult},
    rooms::{self, LiveRooms, LocalFanout, Peer, RoomManager},
    users::{Forget, UserManager},
    ws::{Identity, Outbox, SessionNotice},
    Metrics,
};

/// Events a remote room's fan-out keeps for joiners whose seating arrives after them.
const SEATING_WINDOW: usize = 64;

/// How long a forwarded request waits for the home pod's answer. Longer than a failover
/// takes to start, so that a retry after it reaches the next home.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends messages to other pods' inboxes, as this pod.
pub(crate) struct PodLink {
    pod: Arc<str>,
    inbox: Arc<dyn Inbox>,
}

impl PodLink {
    pub(crate) fn new(pod: &str, inbox: Arc<dyn Inbox>) -> Self {
        Self {
            pod: pod.into(),
            inbox,
        }
    }

    /// Queues a message for `to`. A message the backend refuses is lost; the waiting end
    /// (a forwarded join, a session) times out or is told by its own pod.
    pub(crate) fn send(&self, to: &str, body: pod_message::Body) {
        // The message is queued already; the answer only says whether Redis took it.
        drop(self.checked_send(to, body));
    }

    /// Queues a message for `to`; the future says whether the backend took it.
    pub(crate) fn checked_send(
        &self,
        to: &str,
        body: pod_message::Body,
    ) -> parlor_cluster::BoxFuture<'static, parlor_cluster::Result<()>> {
        let msg = v1::PodMessage {
            from_pod: self.pod.to_string(),
            body: Some(body),
        };
        self.inbox.send(to, Bytes::from(msg.encode_to_vec()))
    }
}

/// One session of this pod, for answers that come from other pods.
#[derive(Clone)]
pub(crate) struct SessionRef {
    pub(crate) who: Identity,
    /// The number rooms know the session by.
    pub(crate) no: u64,
    pub(crate) outbox: Outbox,
    pub(crate) notify: Recipient<SessionNotice>,
}

/// This pod's sessions by id.
#[derive(Clone, Default)]
pub(crate) struct Sessions(Arc<RwLock<HashMap<String, SessionRef>>>);

impl Sessions {
    pub(crate) fn insert(&self, id: String, s: SessionRef) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, s);
    }

    pub(crate) fn remove(&self, id: &str) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }

    fn get(&self, id: &str) -> Option<SessionRef> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }
}

/// A room homed elsewhere, fanned out here to local members.
struct RemoteRoom {
    fanout: Arc<LocalFanout>,
    sub: SubscriptionId,
    /// The pod that runs it, as last seen.
    home: Arc<str>,
    /// Members seated here, and joins on their way: their session ids.
    users: HashMap<UserId, String>,
}

/// The pod's end of the inboxes (module docs).
pub(crate) struct Relay {
    link: Arc<PodLink>,
    broker: Arc<dyn Broker>,
    leases: Arc<dyn Leases>,
    metrics: Arc<Metrics>,
    sessions: Sessions,
    live: LiveRooms,
    manager: Addr<RoomManager>,
    conns: Addr<ConnectionManager>,
    users: Addr<UserManager>,
    remote: tokio::sync::Mutex<HashMap<RoomId, RemoteRoom>>,
    pending: Mutex<Pending>,
    unanswered: Arc<Unanswered>,
    /// REST calls made to other pods, waiting for their answer, by call id.
    calls: Mutex<HashMap<u64, oneshot::Sender<ApiResult<()>>>>,
    next_call: std::sync::atomic::AtomicU64,
    /// Rooms whose home is being checked now: one check at a time per room, so that the
    /// periodic check and a Released message do not both move the same members.
    watching: Mutex<std::collections::HashSet<RoomId>>,
}

/// Forwarded requests other than joins with no answer yet, by origin: the session's id,
/// and when the request went. `len` mirrors the map's size, so that the events of a pod
/// with nothing waiting take no lock.
#[derive(Default)]
struct Unanswered {
    waiting: Mutex<HashMap<Origin, (String, Instant)>>,
    len: std::sync::atomic::AtomicUsize,
}

impl Unanswered {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<Origin, (String, Instant)>) -> R) -> R {
        let mut m = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let r = f(&mut m);
        self.len
            .store(m.len(), std::sync::atomic::Ordering::Relaxed);
        r
    }

    fn wait(&self, o: Origin, session_id: &str) {
        self.with(|m| m.insert(o, (session_id.to_owned(), Instant::now())));
    }

    fn answered(&self, o: Origin) {
        if !o.is_none() && self.len.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            self.with(|m| m.remove(&o));
        }
    }

    /// Takes the requests that waited longer than `FORWARD_TIMEOUT`.
    fn expired(&self, now: Instant) -> Vec<(Origin, String)> {
        let mut out = Vec::new();
        if self.len.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return out;
        }
        self.with(|m| {
            m.retain(|o, (session, since)| {
                let keep = now.duration_since(*since) < FORWARD_TIMEOUT;
                if !keep {
                    out.push((*o, std::mem::take(session)));
                }
                keep
            })
        });
        out
    }
}

/// A remote room's subscription: its events go to the local fan-out, and answer the
/// forwarded requests they came from.
struct RemoteSink {
    fanout: Arc<LocalFanout>,
    unanswered: Arc<Unanswered>,
}

impl EventSink for RemoteSink {
    fn deliver(&self, seq: u64, frame: &Bytes) {
        self.fanout.deliver(seq, frame);
    }

    fn deliver_from(&self, seq: u64, frame: &Bytes, origin: Origin) {
        self.fanout.deliver(seq, frame);
        self.unanswered.answered(origin);
    }

    fn lost(&self, after: u64) {
        self.fanout.lost(after);
    }
}

/// What a relay is built from.
pub(crate) struct RelayParts {
    pub(crate) pod: String,
    pub(crate) inbox: Arc<dyn Inbox>,
    /// Sends to other pods' inboxes, shared with the rooms (RoomDeps).
    pub(crate) link: Arc<PodLink>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) leases: Arc<dyn Leases>,
    /// How often homes are checked is a third of this.
    pub(crate) lease_time: Duration,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) sessions: Sessions,
    pub(crate) live: LiveRooms,
    pub(crate) manager: Addr<RoomManager>,
    pub(crate) conns: Addr<ConnectionManager>,
    pub(crate) users: Addr<UserManager>,
}

/// Forwarded joins waiting for their answer, by (session id, room id, request id): a
/// session that follows two moved rooms at once rejoins both with request id 0.
type Pending = HashMap<(String, String, u64), oneshot::Sender<ApiResult<()>>>;

/// A session's number, which rooms tell sessions apart by and events' origins carry: the
/// same on every pod, so that a room's next home knows it.
/// SHA-256 rather than std's hasher, whose output may change between builds: pods in a
/// rolling upgrade must agree.
pub(crate) fn session_no(pod: &str, session_id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(pod.as_bytes());
    h.update([0]);
    h.update(session_id.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("a digest has 32 bytes"))
}

impl Relay {
    /// Starts reading this pod's inbox.
    pub(crate) async fn start(p: RelayParts) -> anyhow::Result<Arc<Relay>> {
        let (pod, inbox, lease_time) = (p.pod, p.inbox, p.lease_time);
        let relay = Arc::new(Relay {
            link: p.link,
            broker: p.broker,
            leases: p.leases,
            metrics: p.metrics,
            sessions: p.sessions,
            live: p.live,
            manager: p.manager,
            conns: p.conns,
            users: p.users,
            remote: tokio::sync::Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            unanswered: Arc::default(),
            calls: Mutex::new(HashMap::new()),
            next_call: std::sync::atomic::AtomicU64::new(1),
            watching: Mutex::default(),
        });
        // One task reads the inbox in order; the handler only queues.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        inbox
            .listen(&pod, Arc::new(move |m| drop(tx.send(m))))
            .await?;
        let me = Arc::downgrade(&relay);
        actix::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let Some(relay) = me.upgrade() else { return };
                relay.on_message(msg).await;
            }
        });
        let me = Arc::downgrade(&relay);
        actix::spawn(async move {
            let mut every = tokio::time::interval(FORWARD_TIMEOUT / 10);
            loop {
                every.tick().await;
                let Some(relay) = me.upgrade() else { return };
                relay.time_out_forwards();
            }
        });
        let me = Arc::downgrade(&relay);
        actix::spawn(async move {
            let mut every = tokio::time::interval(lease_time / 3);
            loop {
                every.tick().await;
                let Some(relay) = me.upgrade() else { return };
                relay.watch_homes().await;
            }
        });
        Ok(relay)
    }

    /// Follows each remote room's home: a lapsed lease is claimed, and a room that moved
    /// gets its local members back in from the seq they had reached.
    async fn watch_homes(self: &Arc<Self>) {
        let rooms: Vec<(RoomId, Arc<str>)> = self
            .remote
            .lock()
            .await
            .iter()
            .map(|(r, rr)| (r.clone(), rr.home.clone()))
            .collect();
        for (room, home) in rooms {
            if !self.watch(&room, &home).await {
                // Redis is down: nothing can move meanwhile.
                return;
            }
        }
    }

    /// Follows one remote room's home; false if the lease could not be read.
    async fn watch(self: &Arc<Self>, room: &RoomId, home: &Arc<str>) -> bool {
        let watching = || self.watching.lock().unwrap_or_else(PoisonError::into_inner);
        if !watching().insert(room.clone()) {
            return true;
        }
        let ok = self.watch_one(room, home).await;
        watching().remove(room);
        ok
    }

    async fn watch_one(self: &Arc<Self>, room: &RoomId, home: &Arc<str>) -> bool {
        let holder = match self.leases.holder(room).await {
            Ok(h) => h,
            Err(_) => return false,
        };
        match holder {
            Some(l) if l.pod == *home => {}
            // Claimed here since the room was listed (a join through this pod).
            Some(l) if *l.pod == *self.link.pod => match self.live.get(&room.0) {
                Some(addr) => self.adopt(room, addr).await,
                None => self.rehome(room, l.pod).await,
            },
            Some(l) => self.rehome(room, l.pod).await,
            None => {
                // The home stopped renewing: claim the room (another pod may win).
                let found = self
                    .manager
                    .send(rooms::Resolve {
                        room_id: room.0.clone(),
                        code: String::new(),
                    })
                    .await;
                match found {
                    Ok(Ok((_, rooms::RoomRef::Local(addr)))) => self.adopt(room, addr).await,
                    Ok(Ok((_, rooms::RoomRef::Remote(pod)))) => self.rehome(room, pod).await,
                    Ok(Err(e)) => {
                        tracing::warn!(room_id = %room, error = %e, "room takeover failed")
                    }
                    Err(_) => {}
                }
            }
        }
        true
    }

    /// A draining pod released these rooms: those this pod follows are taken over now.
    async fn on_released(self: &Arc<Self>, from: &str, rooms: Vec<String>) {
        let followed: Vec<RoomId> = {
            let remote = self.remote.lock().await;
            rooms
                .into_iter()
                .map(RoomId)
                .filter(|r| remote.get(r).is_some_and(|rr| *rr.home == *from))
                .collect()
        };
        let from: Arc<str> = from.into();
        for room in followed {
            let (me, from) = (self.clone(), from.clone());
            actix::spawn(async move {
                me.watch(&room, &from).await;
            });
        }
    }

    /// Tells every other live pod which rooms this draining pod released.
    pub(crate) async fn released(&self, presence: &dyn Presence, rooms: Vec<RoomId>) {
        let Ok(pods) = presence.pods().await else {
            return;
        };
        let room_ids: Vec<String> = rooms.into_iter().map(|r| r.0).collect();
        for pod in pods.iter().filter(|p| *p.name != *self.link.pod) {
            self.link.send(
                &pod.name,
                pod_message::Body::Released(v1::Released {
                    room_ids: room_ids.clone(),
                }),
            );
        }
    }

    /// Takes every local member out of a remote room's fan-out, with the seq they reached.
    /// With a new home the subscription stays (their rejoins come back to it); without one
    /// (this pod is the home now) it ends.
    async fn take_members(&self, room: &RoomId, home: Option<Arc<str>>) -> Vec<(SessionRef, u64)> {
        let mut remote = self.remote.lock().await;
        let Some(r) = remote.get_mut(room) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (user, session_id) in &r.users {
            let at = r.fanout.take(user);
            if let (Some(at), Some(s)) = (at, self.sessions.get(session_id)) {
                out.push((s, at));
            }
        }
        match home {
            Some(h) => r.home = h,
            None => {
                r.fanout.release_answers();
                let sub = r.sub;
                remote.remove(room);
                drop(remote);
                let _ = self.broker.unsubscribe(room, sub).await;
            }
        }
        out
    }

    /// The room moved to `pod`: each local member joins it again from where it was (the
    /// session does, holding its own requests until it is seated).
    async fn rehome(self: &Arc<Self>, room: &RoomId, pod: Arc<str>) {
        tracing::info!(room_id = %room, home = %pod, "room moved; members follow");
        for (s, at) in self.take_members(room, Some(pod.clone())).await {
            s.notify.do_send(SessionNotice::Moved {
                room_id: room.clone(),
                home: pod.clone(),
                after: at,
            });
        }
    }

    /// This pod became the room's home: its members join the room's new actor from where
    /// they were.
    async fn adopt(self: &Arc<Self>, room: &RoomId, addr: actix::Addr<rooms::RoomActor>) {
        tracing::info!(room_id = %room, "took the room over; members join it here");
        for (s, at) in self.take_members(room, None).await {
            // The join goes first: once the session hears of the move it sends its
            // requests straight to the room, and they must find the member seated.
            addr.do_send(rooms::Join {
                who: s.who.clone(),
                session: s.no,
                peer: Peer::Local {
                    outbox: s.outbox.clone(),
                    notify: s.notify.clone(),
                },
                spec: rooms::JoinSpec {
                    role: RoomRole::Player,
                    password: String::new(),
                    last_seq: at,
                },
                request_id: 0,
            });
            s.notify.do_send(SessionNotice::Rehomed {
                room_id: room.clone(),
                room: rooms::RoomRef::Local(addr.clone()),
            });
        }
    }

    /// Forwarded requests with no answer in time get UNAVAILABLE: the home may be gone, or
    /// may still apply them; a retry with the same request id is applied at most once.
    fn time_out_forwards(&self) {
        for (o, session_id) in self.unanswered.expired(Instant::now()) {
            self.metrics.forwards_timed_out.inc();
            if let Some(s) = self.sessions.get(&session_id) {
                s.outbox.push(error_envelope(
                    o.request,
                    ErrorCode::Unavailable,
                    "the room's pod did not answer in time; retry with the same request_id",
                ));
            }
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn on_message(self: &Arc<Self>, msg: Bytes) {
        let Ok(msg) = v1::PodMessage::decode(msg) else {
            return tracing::warn!("undecodable pod message");
        };
        let from = msg.from_pod;
        match msg.body {
            Some(pod_message::Body::Forward(f)) => self.on_forward(from, f),
            Some(pod_message::Body::Deliver(d)) => {
                let Some(s) = self.sessions.get(&d.session_id) else {
                    return;
                };
                // An answer waits for its event to go out here (ordered after it).
                let fanout = match d.after_seq {
                    0 => None,
                    _ => {
                        let remote = self.remote.lock().await;
                        remote.get(d.room_id.as_str()).map(|r| r.fanout.clone())
                    }
                };
                for f in d.frames {
                    self.unanswered.answered(Origin {
                        session: s.no,
                        request: parlor_protocol::frame_request_id(&f),
                    });
                    match &fanout {
                        Some(fanout) => fanout.answer_after(d.after_seq, s.outbox.clone(), f),
                        None => drop(s.outbox.push(f)),
                    }
                }
            }
            Some(pod_message::Body::Seated(s)) => self.on_seated(&from, s).await,
            Some(pod_message::Body::Notice(n)) => self.on_notice(n).await,
            Some(pod_message::Body::ToUser(t)) => {
                for frame in t.frames {
                    self.conns.do_send(DirectMessage {
                        to: UserId(t.user_id.clone()),
                        frame,
                    });
                }
            }
            Some(pod_message::Body::Call(c)) => self.on_call(from, c),
            Some(pod_message::Body::Released(r)) => self.on_released(&from, r.room_ids).await,
            Some(pod_message::Body::Announce(a)) => {
                let Some(update) = a.update.and_then(|u| u.update) else {
                    return;
                };
                let room = self.local_room(a.room_id.clone());
                actix::spawn(async move {
                    match room.await {
                        Ok(rooms::RoomRef::Local(addr)) => addr.do_send(rooms::Announce(update)),
                        _ => {
                            tracing::warn!(room_id = %a.room_id, "an announcement found no room here")
                        }
                    }
                });
            }
            Some(pod_message::Body::CallDone(d)) => {
                let waiting = self
                    .calls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&d.call_id);
                if let Some(tx) = waiting {
                    let _ = tx.send(match d.error {
                        None => Ok(()),
                        Some(e) => Err(ApiError::new(
                            ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal),
                            e.message,
                        )),
                    });
                }
            }
            Some(pod_message::Body::CloseUser(c)) => {
                let user = UserId(c.user_id);
                // No stale cache: the account is refused here from now on.
                self.users.do_send(Forget { id: user.clone() });
                self.conns.do_send(CloseUser { user_id: user });
            }
            None => {}
        }
    }

    // ----- as a room's home -----

    fn on_forward(self: &Arc<Self>, from: String, f: v1::Forward) {
        self.metrics.forwards.with_label_values(&["received"]).inc();
        let room_id = RoomId(f.room_id);
        let user_id = UserId(f.user_id);
        let session = session_no(&from, &f.session_id);
        let peer = Peer::Remote(Arc::new(rooms::RemotePeer {
            pod: from.as_str().into(),
            session_id: f.session_id,
            link: self.link.clone(),
        }));
        let live = self.live.get(room_id.as_str());
        if f.disconnected {
            if let Some(room) = live {
                room.do_send(rooms::Leave {
                    room_id,
                    user_id,
                    session,
                    reason: v1::LeaveReason::Disconnected,
                    request_id: 0,
                    reply: None,
                });
            }
            return;
        }
        let Some(v1::Envelope {
            request_id: rid,
            body: Some(body),
            ..
        }) = f.request
        else {
            return;
        };
        let action = match body {
            Body::JoinRoom(req) => {
                let who = Identity {
                    user_id,
                    name: f.name,
                    role: GlobalRole::from_proto(f.role).unwrap_or(GlobalRole::Visitor),
                };
                let spec = rooms::JoinSpec {
                    role: RoomRole::requested(req.role),
                    password: req.password,
                    last_seq: req.last_seq,
                };
                let manager = self.manager.clone();
                actix::spawn(async move {
                    let found = match live {
                        Some(addr) => Ok(rooms::RoomRef::Local(addr)),
                        None => manager
                            .send(rooms::Resolve {
                                room_id: room_id.0.clone(),
                                code: String::new(),
                            })
                            .await
                            .map_err(ApiError::from)
                            .and_then(|r| r.map(|(_, room)| room)),
                    };
                    let joined = match found {
                        Ok(rooms::RoomRef::Local(addr)) => addr
                            .send(rooms::Join {
                                who,
                                session,
                                peer: peer.clone(),
                                spec,
                                request_id: rid,
                            })
                            .await
                            .map_err(ApiError::from)
                            .and_then(|r| r),
                        Ok(rooms::RoomRef::Remote(_)) => Err(ApiError::unavailable(
                            "the room moved to another pod; try again",
                        )),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = joined {
                        peer.join_failed(&room_id, rid, &e);
                    }
                });
                return;
            }
            Body::LeaveRoom(_) => {
                if let Some(room) = live {
                    room.do_send(rooms::Leave {
                        room_id,
                        user_id,
                        session,
                        reason: v1::LeaveReason::Left,
                        request_id: rid,
                        reply: Some(peer),
                    });
                }
                return;
            }
            Body::Chat(c) => rooms::Action::Chat(c.text),
            Body::GameEvent(ev) => rooms::Action::Event(ev),
            Body::GameAction(a) => rooms::Action::Game(a),
            Body::PresenceUpdate(p) => rooms::Action::Presence(p),
            Body::UpdateRoom(u) => rooms::Action::Update(u),
            Body::Moderate(m) => rooms::Action::Moderate(m),
            _ => return,
        };
        match live {
            Some(room) => room.do_send(rooms::Act {
                user_id,
                session,
                request_id: rid,
                reply: peer,
                action,
            }),
            None => {
                peer.push(error_envelope(
                    rid,
                    ErrorCode::Unavailable,
                    "the room is not running on its pod; join it again",
                ));
            }
        }
    }

    /// The room, live here or loaded through the manager (a persistent room loads on its
    /// home); for messages from other pods that name a room homed here.
    fn local_room(
        &self,
        room_id: String,
    ) -> impl std::future::Future<Output = ApiResult<rooms::RoomRef>> + 'static {
        let (manager, live) = (self.manager.clone(), self.live.get(&room_id));
        async move {
            match live {
                Some(addr) => Ok(rooms::RoomRef::Local(addr)),
                None => manager
                    .send(rooms::Resolve {
                        room_id,
                        code: String::new(),
                    })
                    .await
                    .map_err(ApiError::from)
                    .and_then(|r| r.map(|(_, room)| room)),
            }
        }
    }

    /// A REST call from another pod on a room homed here; answered with CallDone.
    fn on_call(self: &Arc<Self>, from: String, c: v1::Call) {
        let (room, link) = (self.local_room(c.room_id.clone()), self.link.clone());
        actix::spawn(async move {
            let by = Identity {
                user_id: UserId(c.user_id),
                name: c.name,
                role: GlobalRole::from_proto(c.role).unwrap_or(GlobalRole::Visitor),
            };
            let room = room.await;
            let done = match (room, c.kind) {
                (Ok(rooms::RoomRef::Local(addr)), Some(v1::call::Kind::DeleteRoom(_))) => addr
                    .send(rooms::DeleteRoom { by })
                    .await
                    .map_err(ApiError::from)
                    .and_then(|r| r),
                (Ok(rooms::RoomRef::Remote(_)), _) => Err(ApiError::unavailable(
                    "the room moved to another pod; try again",
                )),
                (Err(e), _) => Err(e),
                (_, None) => Err(ApiError::new(ErrorCode::UnknownMessage, "unknown call")),
            };
            link.send(
                &from,
                pod_message::Body::CallDone(v1::CallDone {
                    call_id: c.call_id,
                    error: done.err().map(|e| v1::Error {
                        code: e.code as i32,
                        retry_after_ms: e.retry_after_ms(),
                        message: e.message,
                    }),
                }),
            );
        });
    }

    /// Deletes a room homed on `home` (REST on a pod that is not its home).
    pub(crate) async fn delete_room(
        &self,
        home: &str,
        room: &RoomId,
        by: &Identity,
    ) -> ApiResult<()> {
        let id = self
            .next_call
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let calls = || self.calls.lock().unwrap_or_else(PoisonError::into_inner);
        calls().insert(id, tx);
        let sent = self.link.checked_send(
            home,
            pod_message::Body::Call(v1::Call {
                call_id: id,
                room_id: room.0.clone(),
                user_id: by.user_id.0.clone(),
                name: by.name.clone(),
                role: by.role.to_proto() as i32,
                kind: Some(v1::call::Kind::DeleteRoom(true)),
            }),
        );
        if let Err(e) = sent.await {
            calls().remove(&id);
            return Err(ApiError::unavailable(format!(
                "the room's pod cannot be reached: {e}"
            )));
        }
        match tokio::time::timeout(FORWARD_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            _ => {
                calls().remove(&id);
                Err(ApiError::unavailable(
                    "the room's pod did not answer in time; try again",
                ))
            }
        }
    }

    // ----- for users on other pods -----

    /// Sends messages to other pods as this pod.
    pub(crate) fn link(&self) -> Arc<PodLink> {
        self.link.clone()
    }

    /// Sends a frame to one session, on this pod or on another; lost if it is gone.
    pub(crate) fn to_session(&self, pod: &str, session: &str, frame: Bytes) {
        if *pod == *self.link.pod {
            if let Some(s) = self.sessions.get(session) {
                s.outbox.push(frame);
            }
            return;
        }
        self.link.send(
            pod,
            pod_message::Body::Deliver(v1::Deliver {
                session_id: session.to_owned(),
                frames: vec![frame],
                ..Default::default()
            }),
        );
    }

    /// Sends a private frame to a user's sessions on other pods; returns how many sessions
    /// presence lists there.
    pub(crate) async fn to_user(
        &self,
        presence: &dyn Presence,
        user: &UserId,
        frame: Bytes,
    ) -> usize {
        let Ok(sessions) = presence.sessions(user).await else {
            return 0;
        };
        let mut pods: HashMap<String, usize> = HashMap::new();
        for (_, pod) in sessions {
            if *pod != *self.link.pod {
                *pods.entry(pod).or_default() += 1;
            }
        }
        for pod in pods.keys() {
            self.link.send(
                pod,
                pod_message::Body::ToUser(v1::ToUser {
                    user_id: user.0.clone(),
                    frames: vec![frame.clone()],
                }),
            );
        }
        pods.values().sum()
    }

    /// Tells every other live pod that an account is gone: they close its sessions and
    /// refuse it from then on.
    pub(crate) async fn close_user(&self, presence: &dyn Presence, user: &UserId, reason: &str) {
        let Ok(pods) = presence.pods().await else {
            return;
        };
        for pod in pods.iter().filter(|p| *p.name != *self.link.pod) {
            self.link.send(
                &pod.name,
                pod_message::Body::CloseUser(v1::CloseUser {
                    user_id: user.0.clone(),
                    code: u32::from(parlor_protocol::close::AUTH_FAILED),
                    reason: reason.to_owned(),
                }),
            );
        }
    }

    // ----- for rooms homed elsewhere -----

    /// Joins a local session to a room homed on `home`: subscribes first, so that nothing
    /// after the snapshot is missed, then forwards the join and waits for the answer.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn join(
        self: Arc<Self>,
        home: Arc<str>,
        room: RoomId,
        who: Identity,
        session_id: String,
        spec: rooms::JoinSpec,
        rid: u64,
    ) -> ApiResult<()> {
        self.hold(&room, &who.user_id, &session_id, &home).await?;
        let (tx, rx) = oneshot::channel();
        self.pending()
            .insert((session_id.clone(), room.0.clone(), rid), tx);
        let request = encode_join(&room, &spec, rid);
        self.forward(&home, &room, &who, &session_id, request, false);
        let answer = tokio::time::timeout(FORWARD_TIMEOUT, rx).await;
        let result = match answer {
            Ok(Ok(r)) => r,
            _ => {
                self.pending().remove(&(session_id, room.0.clone(), rid));
                Err(ApiError::unavailable(
                    "the room's pod did not answer in time; try again",
                ))
            }
        };
        if result.is_err() {
            self.unhold(&room, &who.user_id).await;
        }
        result
    }

    /// Sends a local member's request to the room's home. If the backend refuses it (Redis
    /// is down), the session gets UNAVAILABLE for it.
    pub(crate) fn forward(
        &self,
        home: &str,
        room: &RoomId,
        who: &Identity,
        session_id: &str,
        request: Option<v1::Envelope>,
        disconnected: bool,
    ) {
        self.metrics.forwards.with_label_values(&["sent"]).inc();
        let rid = request.as_ref().map_or(0, |r| r.request_id);
        let session = self.sessions.get(session_id);
        // Joins wait for their answer themselves; a leave is done here already.
        let awaited = request
            .as_ref()
            .is_some_and(|r| !matches!(r.body, Some(Body::JoinRoom(_) | Body::LeaveRoom(_))));
        if let (true, Some(s)) = (awaited && rid != 0, &session) {
            let origin = Origin {
                session: s.no,
                request: rid,
            };
            self.unanswered.wait(origin, session_id);
        }
        let sent = self.link.checked_send(
            home,
            pod_message::Body::Forward(v1::Forward {
                room_id: room.0.clone(),
                session_id: session_id.to_owned(),
                user_id: who.user_id.0.clone(),
                name: who.name.clone(),
                role: who.role.to_proto() as i32,
                request,
                disconnected,
            }),
        );
        actix::spawn(async move {
            if let (Err(e), Some(s)) = (sent.await, session) {
                s.outbox.push(error_envelope(
                    rid,
                    ErrorCode::Unavailable,
                    format!("the room's pod cannot be reached: {e}"),
                ));
            }
        });
    }

    /// A local member leaves a room homed elsewhere: no more events here, and the home is
    /// told (`rid` 0 and `disconnected` when the socket dropped).
    pub(crate) async fn leave(
        &self,
        home: &str,
        room: &RoomId,
        who: &Identity,
        session_id: &str,
        rid: u64,
        disconnected: bool,
    ) {
        self.unhold(room, &who.user_id).await;
        let request = (!disconnected).then(|| v1::Envelope {
            request_id: rid,
            seq: 0,
            body: Some(Body::LeaveRoom(v1::LeaveRoom {
                room_id: room.0.clone(),
            })),
        });
        self.forward(home, room, who, session_id, request, disconnected);
    }

    /// Makes sure the room is fanned out here, and counts `user` in.
    async fn hold(
        &self,
        room: &RoomId,
        user: &UserId,
        session_id: &str,
        home: &Arc<str>,
    ) -> ApiResult<()> {
        let mut remote = self.remote.lock().await;
        if let Some(r) = remote.get_mut(room) {
            r.users.insert(user.clone(), session_id.to_owned());
            return Ok(());
        }
        let fanout = LocalFanout::keeping(self.metrics.clone(), SEATING_WINDOW);
        let sink = Arc::new(RemoteSink {
            fanout: fanout.clone(),
            unanswered: self.unanswered.clone(),
        });
        let (sub, position) = self.broker.subscribe(room, sink).await?;
        fanout.start_at(position);
        remote.insert(
            room.clone(),
            RemoteRoom {
                fanout,
                sub,
                home: home.clone(),
                users: HashMap::from([(user.clone(), session_id.to_owned())]),
            },
        );
        Ok(())
    }

    /// Takes `user` out of the local fan-out; the last one out ends the subscription.
    async fn unhold(&self, room: &RoomId, user: &UserId) {
        let mut remote = self.remote.lock().await;
        let Some(r) = remote.get_mut(room) else {
            return;
        };
        r.fanout.remove(user);
        r.users.remove(user);
        if r.users.is_empty() {
            let sub = r.sub;
            remote.remove(room);
            drop(remote);
            let _ = self.broker.unsubscribe(room, sub).await;
        }
    }

    async fn on_seated(&self, home: &str, s: v1::Seated) {
        let waiting =
            self.pending()
                .remove(&(s.session_id.clone(), s.room_id.clone(), s.request_id));
        let room = RoomId(s.room_id);
        let user = UserId(s.user_id);
        let session = self.sessions.get(&s.session_id);
        let seated = match &session {
            Some(session) => {
                let remote = self.remote.lock().await;
                match remote.get(&room) {
                    // Awaited, or late while the same session still wants the room: a
                    // timed-out try of a join that is being tried again seats the member
                    // just as the newer try would (the client may get both snapshots).
                    Some(r)
                        if waiting.is_some()
                            || r.users.get(&user).is_some_and(|id| *id == s.session_id) =>
                    {
                        r.fanout
                            .insert(user.clone(), session.outbox.clone(), s.after_seq);
                        true
                    }
                    _ => false,
                }
            }
            None => false,
        };
        if let Some(tx) = waiting {
            let _ = tx.send(if seated {
                Ok(())
            } else {
                Err(ApiError::unavailable("the session left while joining"))
            });
        }
        if !seated {
            // Seated too late (the join timed out) or for a gone session: leave again.
            self.link.send(
                home,
                pod_message::Body::Forward(v1::Forward {
                    room_id: room.0.clone(),
                    session_id: s.session_id,
                    user_id: user.0.clone(),
                    disconnected: true,
                    ..Default::default()
                }),
            );
        }
    }

    async fn on_notice(&self, n: v1::Notice) {
        match n.kind {
            Some(v1::notice::Kind::JoinFailed(e)) => {
                let key = (n.session_id, n.room_id, n.request_id);
                if let Some(tx) = self.pending().remove(&key) {
                    let code = ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal);
                    let _ = tx.send(Err(ApiError::new(code, e.message)));
                }
            }
            Some(v1::notice::Kind::RoomGone(_)) => {
                let room = RoomId(n.room_id);
                if let Some(s) = self.sessions.get(&n.session_id) {
                    s.notify.do_send(SessionNotice::RoomGone {
                        room_id: room.clone(),
                    });
                }
                if let Some(s) = self.sessions.get(&n.session_id) {
                    self.unhold(&room, &s.who.user_id).await;
                }
            }
            Some(v1::notice::Kind::Close(c)) => {
                if let Some(s) = self.sessions.get(&n.session_id) {
                    s.notify.do_send(SessionNotice::Close {
                        code: u16::try_from(c.code).unwrap_or(parlor_protocol::close::NORMAL),
                        reason: c.reason,
                    });
                }
            }
            None => {}
        }
    }
}

fn encode_join(room: &RoomId, spec: &rooms::JoinSpec, rid: u64) -> Option<v1::Envelope> {
    Some(v1::Envelope {
        request_id: rid,
        seq: 0,
        body: Some(Body::JoinRoom(v1::JoinRoom {
            room_id: room.0.clone(),
            code: String::new(),
            password: spec.password.clone(),
            role: spec.role.to_proto() as i32,
            last_seq: spec.last_seq,
        })),
    })
}
