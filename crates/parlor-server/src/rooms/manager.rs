//! RoomManager: creates rooms, finds them by id or code, and starts their actors.
//!
//! A room's actor runs only on its home pod: the manager claims the room's lease before it
//! starts one, rebuilds the room from its checkpoint, and renews every lease it holds on a
//! heartbeat (a third of the lease time). A room whose lease is lost claims it again, or
//! stops if another pod has it.

use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use actix::{
    Actor, ActorFutureExt, Addr, ArbiterHandle, AsyncContext, Context, Handler, Message,
    ResponseActFuture, Supervised, Supervisor, WrapFuture,
};
use parlor_cluster::{checkpoint, Broker, Claim, Lease, Leases, RoomDirectory};
use parlor_core::{new_id, new_room_code, now_ms, Room, RoomId};
use parlor_protocol::{v1, ErrorCode};
use parlor_store::Store;

use super::room::{HandOver, Recheck, RoomActor};
use crate::{
    error::{ApiError, ApiResult},
    stats::StatsTracker,
    ws::Identity,
    Config, Metrics,
};

/// What every room actor needs.
pub(crate) struct RoomDeps {
    pub(crate) cfg: Config,
    pub(crate) limits: parlor_core::Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) broker: Arc<dyn Broker>,
    pub(crate) leases: Arc<dyn Leases>,
    pub(crate) directory: Arc<dyn RoomDirectory>,
    pub(crate) store: Store,
    /// Users' counters.
    pub(crate) user_stats: Addr<StatsTracker>,
    /// Room passwords' hashing and checks.
    pub(crate) passwords: Arc<crate::auth::RoomPasswords>,
    /// Rooms' counters.
    pub(crate) room_stats: Addr<StatsTracker>,
    /// The analytics stream.
    pub(crate) analytics: Addr<crate::analytics::AnalyticsTracker>,
    /// The server-run room kinds.
    pub(crate) games: Arc<parlor_games::Registry>,
    /// To other pods' inboxes, as this pod (tournament announcements).
    pub(crate) link: Arc<crate::relay::PodLink>,
}

/// The live room actors by id. Only the manager writes it; sessions read it, so that
/// joining a live room by id costs no round trip through the manager's thread.
#[derive(Clone, Default)]
pub(crate) struct LiveRooms(Arc<RwLock<HashMap<RoomId, Addr<RoomActor>>>>);

impl LiveRooms {
    /// The room's actor, if it is running.
    pub(crate) fn get(&self, id: &str) -> Option<Addr<RoomActor>> {
        let live = self.0.read().unwrap_or_else(PoisonError::into_inner);
        live.get(id).filter(|a| a.connected()).cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<RoomId, Addr<RoomActor>>> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Owns room lifecycle and lookup; never on the per-event path.
pub(crate) struct RoomManager {
    deps: Arc<RoomDeps>,
    shards: Vec<ArbiterHandle>,
    live: LiveRooms,
    /// The lease of each room this pod is home to.
    leases: HashMap<RoomId, Lease>,
    /// Live rooms that clients created here, by owner (`limits.rooms_per_user`)...
    owned: HashMap<parlor_core::UserId, usize>,
    /// ...and the owner each such room counts against until it closes.
    counted: HashMap<RoomId, parlor_core::UserId>,
    /// The pod is draining: it homes no room any more (HandOverAll).
    draining: bool,
}

/// A room ready to run here: its state as of `seq`, and the lease that makes this pod its
/// home.
pub(crate) struct Homed {
    pub(crate) room: Room,
    pub(crate) lease: Lease,
    pub(crate) seq: u64,
    /// A server-run room's game, as of `seq`.
    pub(crate) game: Option<parlor_games::Host>,
}

/// A fresh secret seed for a room's RNG.
pub(crate) fn new_seed() -> parlor_games::fair::Seed {
    use rand::RngExt;
    rand::rng().random()
}

/// A server-run room's game from its checkpoint; a fresh one (its creation's config, a new
/// seed) when the checkpoint has none or cannot be read. None for a relay room.
pub(crate) fn game_of(
    deps: &RoomDeps,
    room: &Room,
    saved: Option<&bytes::Bytes>,
) -> Option<parlor_games::Host> {
    deps.games.get(&room.info.kind)?;
    if let Some(bytes) = saved {
        match parlor_games::Host::restore(&deps.games, bytes) {
            Ok(h) => return Some(h),
            Err(e) => tracing::error!(room_id = %room.info.id, error = %e.message,
                "the game's checkpoint cannot be read; the game starts again"),
        }
    }
    tracing::warn!(room_id = %room.info.id, "the room's game starts again from its config");
    use base64::Engine as _;
    let config = room
        .info
        .game_config
        .as_ref()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| <v1::GameConfig as prost::Message>::decode(b.as_slice()).ok());
    deps.games
        .create(&room.info.kind, config, new_seed())
        .ok()
        .flatten()
}

impl RoomManager {
    pub(crate) fn new(deps: Arc<RoomDeps>, shards: Vec<ArbiterHandle>, live: LiveRooms) -> Self {
        Self {
            deps,
            shards,
            live,
            leases: HashMap::new(),
            owned: HashMap::new(),
            counted: HashMap::new(),
            draining: false,
        }
    }

    /// Gives back one of `owner`'s live-room places.
    fn release(&mut self, owner: &parlor_core::UserId) {
        if let Some(n) = self.owned.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.owned.remove(owner);
            }
        }
    }

    fn spawn(&mut self, homed: Homed, me: Addr<RoomManager>) -> Addr<RoomActor> {
        let id = homed.room.info.id.clone();
        if let Some(addr) = self.live.get(id.as_str()) {
            return addr;
        }
        self.leases.insert(id.clone(), homed.lease.clone());
        if self.live.write().remove(&id).is_some() {
            self.deps.metrics.rooms.dec();
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % self.shards.len()];
        let deps = self.deps.clone();
        let addr = Supervisor::start_in_arbiter(shard, move |_| RoomActor::new(homed, deps, me));
        self.deps.metrics.rooms.inc();
        self.live.write().insert(id, addr.clone());
        addr
    }
}

impl Actor for RoomManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = Duration::from_millis(self.deps.cfg.cluster.lease_ms / 3);
        ctx.run_interval(every, |act, ctx| act.renew(ctx));
    }
}

impl RoomManager {
    /// Renews every lease held; a room whose lease was lost stops being served here.
    fn renew(&mut self, ctx: &mut Context<Self>) {
        let held: Vec<(RoomId, Lease)> = self
            .leases
            .iter()
            .map(|(r, l)| (r.clone(), l.clone()))
            .collect();
        if held.is_empty() {
            return;
        }
        let leases = self.deps.leases.clone();
        let fut = async move {
            let kept = leases.renew(held.clone()).await;
            (held, kept)
        };
        ctx.spawn(fut.into_actor(self).map(|(held, kept), act, _| {
            let kept = match kept {
                Ok(k) => k,
                // Redis is down: the rooms go on here; the next beat tries again.
                Err(e) => return tracing::warn!(error = %e, "lease renewal failed"),
            };
            for ((room, lease), ok) in held.into_iter().zip(kept) {
                if ok || act.leases.get(&room) != Some(&lease) {
                    continue;
                }
                tracing::warn!(room_id = %room, epoch = lease.epoch, "lease lost; room checks it again");
                act.deps.metrics.leases.with_label_values(&["lost"]).inc();
                act.leases.remove(&room);
                if let Some(addr) = act.live.get(room.as_str()) {
                    addr.do_send(Recheck);
                }
            }
        }));
    }
}

impl Supervised for RoomManager {}

/// Where a found room runs.
#[derive(Clone, Debug)]
pub(crate) enum RoomRef {
    /// Here: its actor.
    Local(Addr<RoomActor>),
    /// On this other pod, its home.
    Remote(Arc<str>),
}

type Found = ApiResult<(RoomId, RoomRef)>;

/// Creates a room owned by `owner` and starts its actor (the caller joins next).
#[derive(Message)]
#[rtype(result = "Found")]
pub(crate) struct Create {
    pub(crate) req: v1::CreateRoom,
    pub(crate) owner: Identity,
    /// The tournament pairing the room plays (the server's tournaments only).
    pub(crate) tournament: Option<parlor_core::TournamentSlot>,
    /// A client asked for it, so the owner's quotas apply; rooms the server makes for
    /// matches and tournaments are not counted.
    pub(crate) quota: bool,
}

/// Finds a live room by id or by code, starting its actor if needed.
#[derive(Message)]
#[rtype(result = "Found")]
pub(crate) struct Resolve {
    pub(crate) room_id: String,
    pub(crate) code: String,
}

/// The first public room of a kind with a free seat, else a new one.
#[derive(Message)]
#[rtype(result = "Found")]
pub(crate) struct FindOrCreate {
    pub(crate) kind: String,
    pub(crate) who: Identity,
}

/// A room actor closed for good, or stopped being home here.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Closed {
    pub(crate) room_id: RoomId,
    /// The actor that closed, so that a room reopened since keeps its entry.
    pub(crate) room: Addr<RoomActor>,
}

/// A room actor took its room's lease again, with this epoch (after a reload).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Relet {
    pub(crate) room_id: RoomId,
    pub(crate) lease: Lease,
}

impl Handler<Relet> for RoomManager {
    type Result = ();
    fn handle(&mut self, msg: Relet, _: &mut Context<Self>) {
        self.leases.insert(msg.room_id, msg.lease);
    }
}

/// Claims the lease of a room that exists, and rebuilds it from its checkpoint (or, for a
/// persistent room with none, from the directory).
async fn open(deps: &RoomDeps, room: Room) -> ApiResult<Opened> {
    let id = room.info.id.clone();
    let lease = match deps.leases.claim(&id, &deps.cfg.server.pod_name).await? {
        Claim::Home(l) => l,
        Claim::Elsewhere(l) => return Ok(Opened::Remote(l.pod)),
    };
    deps.metrics.leases.with_label_values(&["claimed"]).inc();
    if let Some(cp) = deps.broker.load(&id).await? {
        if let Some(room) = cp.room()? {
            let game = game_of(deps, &room, cp.game());
            return Ok(Opened::New(Box::new(Homed {
                room,
                lease,
                seq: cp.seq,
                game,
            })));
        }
    }
    let mut room = room;
    room.members.clear();
    let game = game_of(deps, &room, None);
    let seq = deps.broker.last_seq(&id).await?;
    deps.broker
        .reset(
            &id,
            &lease,
            seq,
            checkpoint::full(&room, game.as_ref().map(parlor_games::Host::checkpoint)),
        )
        .await?;
    Ok(Opened::New(Box::new(Homed {
        room,
        lease,
        seq,
        game,
    })))
}

async fn create(
    deps: Arc<RoomDeps>,
    req: v1::CreateRoom,
    owner: Identity,
    tournament: Option<parlor_core::TournamentSlot>,
    quota: bool,
) -> ApiResult<Homed> {
    parlor_core::check(
        parlor_core::Action::CreateRoom,
        owner.role,
        None,
        &parlor_core::RoomPolicy::default(),
    )?;
    if req.persistent && quota {
        persistent_allowed(&deps, &owner).await?;
    }
    let mut req = req;
    with_question_set(&deps, &mut req, &owner).await?;
    parlor_core::Limits::check_len("password", req.password.len(), deps.limits.text_field_bytes)?;
    req.password = deps.passwords.hash(&req.password);
    // A clash of 6-character codes is rare; retry a few times rather than fail.
    for _ in 0..8 {
        let mut room = Room::create(
            RoomId(new_id("r_")),
            new_room_code(),
            &req,
            owner.user_id.clone(),
            &deps.limits,
            now_ms(),
        )?;
        room.info.tournament = tournament.clone();
        let game = deps.games.create(&req.kind, req.game.clone(), new_seed())?;
        if game.is_some() {
            use base64::Engine as _;
            let config = req.game.clone().unwrap_or_default();
            room.info.game_config = Some(
                base64::engine::general_purpose::STANDARD
                    .encode(prost::Message::encode_to_vec(&config)),
            );
        }
        // The code is taken atomically, before anything else is written.
        if !deps.directory.create(&room).await? {
            continue;
        }
        let id = room.info.id.clone();
        let homed = match home_new(&deps, room, game).await {
            Ok(h) => h,
            Err(e) => {
                let _ = deps.directory.remove(&id).await;
                return Err(e);
            }
        };
        deps.analytics
            .do_send(crate::analytics::Track(parlor_store::AnalyticsEvent::now(
                "room_created",
                Some(owner.user_id.clone()),
                Some(id),
            )));
        return Ok(homed);
    }
    Err(ApiError::unavailable("could not allocate a room code"))
}

/// A persistent room outlives everyone in it, so only registered accounts make them, and
/// each at most `limits.persistent_rooms_per_user` (staff: any number). The count is
/// checked, not reserved: two creates at once on two pods may pass it by one.
async fn persistent_allowed(deps: &RoomDeps, owner: &Identity) -> ApiResult<()> {
    if owner.role < parlor_core::GlobalRole::User {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "only registered accounts may create persistent rooms",
        ));
    }
    if owner.role.is_staff() {
        return Ok(());
    }
    let cap = deps.cfg.limits.persistent_rooms_per_user;
    let n = deps.store.rooms.count_rooms_owned(&owner.user_id).await?;
    if n >= cap as u64 {
        return Err(ApiError::new(
            ErrorCode::QuotaExceeded,
            format!("you own {n} persistent rooms; the most one account may own is {cap}"),
        ));
    }
    Ok(())
}

/// A trivia room created with `question_set_id` plays the uploaded set: its questions go
/// into the config, so the game and its checkpoint hold them whole.
/// A set that is not public is played only by its uploader and staff.
async fn with_question_set(
    deps: &RoomDeps,
    req: &mut v1::CreateRoom,
    host: &Identity,
) -> ApiResult<()> {
    let Some(v1::GameConfig {
        config: Some(v1::game_config::Config::Trivia(t)),
    }) = req.game.as_mut()
    else {
        return Ok(());
    };
    if t.question_set_id.is_empty() || !t.questions.is_empty() {
        return Ok(());
    }
    let set = deps
        .store
        .questions
        .question_set(&t.question_set_id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such question set"))?;
    if !set.public && set.by != host.user_id && host.role < parlor_core::GlobalRole::Moderator {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this question set is not public: only its uploader and staff may play it",
        ));
    }
    let questions: Vec<parlor_games::trivia::Question> = serde_json::from_value(set.questions)
        .map_err(|e| ApiError::internal(format!("question set {}: {e}", set.id)))?;
    t.questions = questions.into_iter().map(Into::into).collect();
    Ok(())
}

/// Takes a new room's lease and writes its first checkpoint (and, if persistent, its
/// store record).
async fn home_new(
    deps: &RoomDeps,
    room: Room,
    game: Option<parlor_games::Host>,
) -> ApiResult<Homed> {
    let Claim::Home(lease) = deps
        .leases
        .claim(&room.info.id, &deps.cfg.server.pod_name)
        .await?
    else {
        return Err(ApiError::internal("a new room's lease was taken"));
    };
    deps.broker
        .reset(
            &room.info.id,
            &lease,
            0,
            checkpoint::full(&room, game.as_ref().map(parlor_games::Host::checkpoint)),
        )
        .await?;
    if room.info.persistent {
        deps.store.rooms.save_room(&room).await?;
    }
    Ok(Homed {
        room,
        lease,
        seq: 0,
        game,
    })
}

impl Handler<Create> for RoomManager {
    type Result = ResponseActFuture<Self, Found>;

    fn handle(&mut self, msg: Create, _ctx: &mut Context<Self>) -> Self::Result {
        if self.draining {
            return Box::pin(actix::fut::ready(Err(draining())));
        }
        let deps = self.deps.clone();
        let owner = msg.owner.user_id.clone();
        // Counted here, on the pod that creates (and first homes) the room: the place is
        // taken before the create starts, so that creates racing each other cannot pass it.
        let counted = msg.quota && !msg.owner.role.is_staff();
        if counted {
            let n = self.owned.get(&owner).copied().unwrap_or(0);
            let cap = deps.cfg.limits.rooms_per_user;
            if n >= cap {
                return Box::pin(actix::fut::ready(Err(ApiError::new(
                    ErrorCode::QuotaExceeded,
                    format!("you own {n} live rooms; the most one account may own is {cap}"),
                ))));
            }
            *self.owned.entry(owner.clone()).or_default() += 1;
        }
        Box::pin(
            create(deps, msg.req, msg.owner, msg.tournament, msg.quota)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let homed = match res {
                        Ok(h) => h,
                        Err(e) => {
                            if counted {
                                act.release(&owner);
                            }
                            return Err(e);
                        }
                    };
                    let id = homed.room.info.id.clone();
                    let room = match act.start(homed, ctx) {
                        Ok(room) => room,
                        Err(e) => {
                            if counted {
                                act.release(&owner);
                            }
                            return Err(e);
                        }
                    };
                    if counted {
                        act.counted.insert(id.clone(), owner);
                    }
                    Ok((id, RoomRef::Local(room)))
                }),
        )
    }
}

impl Handler<Resolve> for RoomManager {
    type Result = ResponseActFuture<Self, Found>;

    fn handle(&mut self, msg: Resolve, _ctx: &mut Context<Self>) -> Self::Result {
        // A live room answers at once: no directory read, no copy of the room.
        if let Some(addr) = self.live.get(&msg.room_id) {
            return Box::pin(actix::fut::ready(Ok((
                RoomId(msg.room_id),
                RoomRef::Local(addr),
            ))));
        }
        if self.draining {
            return Box::pin(actix::fut::ready(Err(draining())));
        }
        let deps = self.deps.clone();
        let fut = async move {
            let id = if !msg.room_id.is_empty() {
                RoomId(msg.room_id)
            } else if !msg.code.is_empty() {
                let code = parlor_core::normalize_code(&msg.code);
                deps.directory.find_code(&code).await?.ok_or_else(|| {
                    ApiError::new(ErrorCode::RoomNotFound, "no room with that code")
                })?
            } else {
                return Err(ApiError::new(
                    ErrorCode::InvalidArgument,
                    "give room_id or code",
                ));
            };
            let room = deps
                .directory
                .get(&id)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::RoomNotFound, "no such room"))?;
            Ok((id, open(&deps, room).await?))
        };
        Box::pin(
            fut.into_actor(self)
                .map(|res, act, ctx| res.and_then(|(id, o)| act.place(id, o, ctx))),
        )
    }
}

impl Handler<FindOrCreate> for RoomManager {
    type Result = ResponseActFuture<Self, Found>;

    fn handle(&mut self, msg: FindOrCreate, _ctx: &mut Context<Self>) -> Self::Result {
        if self.draining {
            return Box::pin(actix::fut::ready(Err(draining())));
        }
        let deps = self.deps.clone();
        let live = self.live.clone();
        let fut = async move {
            parlor_core::validate_kind(&msg.kind)?;
            let pod = &deps.cfg.server.pod_name;
            let lock = format!("create:{}", msg.kind);
            // Pods racing to fill a kind create one room between them: the one holding the
            // lock creates; the others find that room once it is listed.
            for _ in 0..FIND_OR_CREATE_TRIES {
                if let Some(id) = deps.directory.find_open(&msg.kind).await? {
                    if let Some(addr) = live.get(id.as_str()) {
                        return Ok((id, Opened::Live(addr)));
                    }
                    if let Some(room) = deps.directory.get(&id).await? {
                        return Ok((id, open(&deps, room).await?));
                    }
                }
                if !deps.directory.lock(&lock, pod, CREATE_LOCK).await? {
                    tokio::time::sleep(FIND_OR_CREATE_PAUSE).await;
                    continue;
                }
                // Someone may have listed a room between the look and the lock.
                if deps.directory.find_open(&msg.kind).await?.is_some() {
                    deps.directory.unlock(&lock, pod).await?;
                    continue;
                }
                let req = v1::CreateRoom {
                    name: format!("{} room", msg.kind),
                    kind: msg.kind.clone(),
                    visibility: v1::Visibility::Public as i32,
                    max_members: deps.cfg.rooms.join_or_create_seats,
                    ..Default::default()
                };
                let made = create(deps.clone(), req, msg.who.clone(), None, false).await;
                let _ = deps.directory.unlock(&lock, pod).await;
                return made.map(|h| (h.room.info.id.clone(), Opened::New(Box::new(h))));
            }
            Err(ApiError::unavailable(
                "no room could be found or created; try again",
            ))
        };
        Box::pin(
            fut.into_actor(self)
                .map(|res, act, ctx| res.and_then(|(id, o)| act.place(id, o, ctx))),
        )
    }
}

/// How many times JoinOrCreate looks for a room before it gives up.
const FIND_OR_CREATE_TRIES: usize = 40;
/// Between two looks, while another pod creates the kind's next room.
const FIND_OR_CREATE_PAUSE: Duration = Duration::from_millis(25);
/// How long a creation lock may be held; a pod that dies holding it blocks no longer.
const CREATE_LOCK: Duration = Duration::from_secs(2);

/// What looking a room up found.
enum Opened {
    /// Running here.
    Live(Addr<RoomActor>),
    /// Ready to start here, as its new home.
    New(Box<Homed>),
    /// Running on another pod.
    Remote(Arc<str>),
}

impl RoomManager {
    /// Starts a room that became homed here; says where the others run.
    fn place(&mut self, id: RoomId, o: Opened, ctx: &mut Context<Self>) -> Found {
        let at = match o {
            Opened::Live(addr) => RoomRef::Local(addr),
            Opened::New(homed) => RoomRef::Local(self.start(*homed, ctx)?),
            Opened::Remote(pod) => {
                self.deps
                    .metrics
                    .leases
                    .with_label_values(&["elsewhere"])
                    .inc();
                RoomRef::Remote(pod)
            }
        };
        Ok((id, at))
    }

    /// Starts a room homed here, unless the pod began draining while its lease was being
    /// claimed: then the lease goes back at once, for another pod to take.
    fn start(&mut self, homed: Homed, ctx: &mut Context<Self>) -> ApiResult<Addr<RoomActor>> {
        if self.draining {
            let leases = self.deps.leases.clone();
            actix::spawn(async move {
                let _ = leases.release(&homed.room.info.id, &homed.lease).await;
            });
            return Err(draining());
        }
        Ok(self.spawn(homed, ctx.address()))
    }
}

impl Handler<Closed> for RoomManager {
    type Result = ();

    fn handle(&mut self, msg: Closed, _ctx: &mut Context<Self>) {
        let mut live = self.live.write();
        // Only the closing actor's own entry goes: a room reopened since keeps its own.
        if live.get(&msg.room_id) == Some(&msg.room) {
            live.remove(&msg.room_id);
            self.leases.remove(&msg.room_id);
            self.deps.metrics.rooms.dec();
            drop(live);
            if let Some(owner) = self.counted.remove(&msg.room_id) {
                self.release(&owner);
            }
        }
    }
}

/// What a draining pod answers instead of homing a room.
fn draining() -> ApiError {
    ApiError::unavailable("this pod is shutting down; reconnect to another")
}

/// The pod is draining: from now on it homes no room, and every live room hands over
/// (room::HandOver). Answers the rooms whose leases were released, for the other pods
/// to take over at once.
#[derive(Message)]
#[rtype(result = "Vec<RoomId>")]
pub(crate) struct HandOverAll;

impl Handler<HandOverAll> for RoomManager {
    type Result = actix::ResponseFuture<Vec<RoomId>>;

    fn handle(&mut self, _: HandOverAll, _ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let rooms: Vec<(RoomId, Addr<RoomActor>)> = self
            .live
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect();
        let metrics = self.deps.metrics.clone();
        Box::pin(async move {
            let asked = rooms.into_iter().map(|(id, room)| async move {
                room.send(HandOver).await.unwrap_or(false).then_some(id)
            });
            let released: Vec<RoomId> = futures_util::future::join_all(asked)
                .await
                .into_iter()
                .flatten()
                .collect();
            metrics
                .leases
                .with_label_values(&["released"])
                .inc_by(released.len() as u64);
            released
        })
    }
}

/// Asks every live room to hand over its pending stats and chat lines (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FlushAll;

impl Handler<FlushAll> for RoomManager {
    type Result = actix::ResponseFuture<()>;

    fn handle(&mut self, _: FlushAll, _ctx: &mut Context<Self>) -> Self::Result {
        let rooms: Vec<_> = self
            .live
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        Box::pin(async move {
            for room in rooms {
                let _ = room.send(super::room::FlushRoom).await;
            }
        })
    }
}
