//! `run`: builds every part of a pod from Config, serves until `shutdown`, then drains.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{Actor, Addr, Arbiter, Supervisor};
use actix_http::HttpService;
use actix_service::{map_config, IntoServiceFactory};
use actix_web::{dev::AppConfig, web::Data, App, HttpServer};
use anyhow::Context as _;
use parlor_cluster::{Broker, Health, RoomDirectory};
use parlor_store::Store;

use crate::{
    analytics::AnalyticsTracker,
    auth::{Claims, Keyring, TokenKind},
    config::Parts as _,
    connections::{self, ConnectionManager},
    error::{ApiError, ApiResult},
    http,
    relay::{Relay, RelayParts, Sessions},
    rooms::{LiveRooms, RoomDeps, RoomManager},
    stats::{self, StatsTracker},
    users::{UserCache, UserManager},
    Config, Metrics,
};

/// The two already-bound listeners a pod serves on.
pub struct Listeners {
    /// REST, /ws and JWKS.
    pub public: std::net::TcpListener,
    /// /metrics and /health/*.
    pub admin: std::net::TcpListener,
}

/// What request handlers share.
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    /// `cfg`'s limits on client input, as the domain checks take them.
    pub(crate) limits: parlor_core::Limits,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) keys: Arc<Keyring>,
    pub(crate) store: Store,
    pub(crate) directory: Arc<dyn RoomDirectory>,
    /// Room checkpoints, for reads of a room's members.
    pub(crate) broker: Arc<dyn Broker>,
    /// Whether the cluster backend works, for readiness.
    pub(crate) cluster: Arc<dyn Health>,
    pub(crate) rooms: Addr<RoomManager>,
    pub(crate) live_rooms: LiveRooms,
    pub(crate) matchmaker: Addr<crate::matchmaker::Matchmaker>,
    pub(crate) users: Addr<UserManager>,
    pub(crate) user_cache: UserCache,
    pub(crate) analytics: Addr<AnalyticsTracker>,
    pub(crate) conns: Addr<ConnectionManager>,
    /// Requests to and answers from other pods.
    pub(crate) relay: Arc<Relay>,
    /// This pod's sessions by id, for answers from other pods.
    pub(crate) sessions: Sessions,
    /// Which pods are alive, and where each user's sessions are.
    pub(crate) presence: Arc<dyn parlor_cluster::Presence>,
    /// Abuse limits.
    pub(crate) guard: Arc<crate::guard::Guard>,
    /// Third-party sign-in providers.
    pub(crate) oidc: crate::auth::oidc::Oidc,
    draining: AtomicBool,
}

impl Shared {
    /// True once shutdown has begun.
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Verifies a token, counting refusals by reason.
    pub(crate) fn verify_token(&self, token: &str, kind: TokenKind) -> ApiResult<Claims> {
        self.keys.verify(token, kind).map_err(|e| {
            self.metrics
                .auth_failures
                .with_label_values(&[e.reason()])
                .inc();
            ApiError::new(e.code(), format!("token rejected: {}", e.reason()))
        })
    }
}

/// How often expired refresh tokens and magic codes are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

fn threads(n: usize) -> usize {
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    }
}

/// Runs a pod on already-bound listeners until `shutdown` resolves, then drains: stops
/// accepting, tells every client to reconnect elsewhere, flushes stats, and returns within
/// `server.shutdown_grace_secs`. Must be called inside an actix System.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    run_with_games(cfg, listeners, shutdown, parlor_games::Registry::builtin()).await
}

/// As `run`, with the server-run room kinds of `games`: the built-in ones and any a
/// binary outside this repo registers (docs/games.md, "Adding a kind").
pub async fn run_with_games(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    games: parlor_games::Registry,
) -> anyhow::Result<()> {
    let games = Arc::new(games);
    let metrics = Arc::new(Metrics::new());
    let guard = crate::guard::Guard::new(&cfg, metrics.clone());
    {
        let guard = guard.clone();
        actix::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                guard.tidy();
            }
        });
    }
    std::fs::create_dir_all(&cfg.server.data_dir)
        .with_context(|| format!("server.data_dir {}", cfg.server.data_dir.display()))?;
    let observe: parlor_store::Observer = {
        let m = metrics.clone();
        Arc::new(move |op, took, ok| {
            m.store_seconds
                .with_label_values(&[op])
                .observe(took.as_secs_f64());
            if !ok {
                m.store_errors.with_label_values(&[op]).inc();
            }
        })
    };
    let store = parlor_store::open(&cfg.store_settings(), cfg.chat_retention(), Some(observe))
        .await
        .context("store")?;
    let keys = Arc::new(
        Keyring::load_for(
            &cfg.auth.signing_key,
            &cfg.auth.verify_keys,
            &cfg.server.data_dir,
            &cfg.auth.issuer,
            &cfg.auth.audience,
        )
        .context("auth keys")?,
    );
    let redis_observer: parlor_cluster::Observer = {
        let m = metrics.clone();
        Arc::new(move |op, took, ok| {
            m.redis_seconds
                .with_label_values(&[op])
                .observe(took.as_secs_f64());
            if !ok {
                m.redis_errors.with_label_values(&[op]).inc();
            }
        })
    };
    let cluster = parlor_cluster::backends(&cfg.cluster_settings(), Some(redis_observer))
        .await
        .context("cluster")?;
    let (directory, presence) = (cluster.directory.clone(), cluster.presence.clone());

    let passwords = keys.room_passwords();
    for mut room in store
        .rooms
        .load_rooms()
        .await
        .context("loading persistent rooms")?
    {
        room.members.clear();
        // A password an older version kept in the clear is hashed now, once.
        let pw = &room.info.password;
        if !pw.is_empty() && !crate::auth::RoomPasswords::is_hashed(pw) {
            room.info.password = passwords.hash(pw);
            store
                .rooms
                .save_room(&room)
                .await
                .context("hashing a room password")?;
        }
        directory.put(&room).await.context("room directory")?;
    }

    // Expired refresh tokens and magic codes go within the hour (MongoDB's TTL indexes
    // are quicker; the embedded store has only this).
    {
        let store = store.clone();
        let retain_ms = i64::try_from(cfg.stats.analytics_retain_days.saturating_mul(86_400_000))
            .unwrap_or(i64::MAX);
        actix::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                every.tick().await;
                match store.accounts.purge_expired(parlor_core::now_ms()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "expired tokens and codes purged"),
                    Err(e) => tracing::warn!(error = %e, "purging expired tokens failed"),
                }
                if retain_ms > 0 {
                    let before = parlor_core::now_ms().saturating_sub(retain_ms);
                    match store.analytics.purge_events(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(purged = n, "old analytics events purged"),
                        Err(e) => tracing::warn!(error = %e, "purging analytics failed"),
                    }
                }
            }
        });
    }

    let flush_every = Duration::from_millis(cfg.stats.flush_interval_ms.max(100));
    let tracker = |name: &'static str| {
        let (store, metrics, max) = (store.clone(), metrics.clone(), cfg.stats.flush_records);
        Supervisor::start(move |_| StatsTracker::new(name, store, metrics, flush_every, max))
    };
    let (user_stats, room_stats) = (tracker("user_stats"), tracker("room_stats"));
    let analytics = {
        let (store, metrics, max) = (store.clone(), metrics.clone(), cfg.stats.flush_records);
        Supervisor::start(move |_| AnalyticsTracker::new(store, metrics, flush_every, max))
    };
    let user_cache = UserCache::default();
    let users = {
        let (store, keys, cfg, metrics, cache) = (
            store.clone(),
            keys.clone(),
            cfg.clone(),
            metrics.clone(),
            user_cache.clone(),
        );
        let guard = guard.clone();
        Supervisor::start(move |_| UserManager::new(store, keys, cfg, metrics, cache, guard))
    };
    let conns = {
        let (pod, stats, metrics) = (
            cfg.server.pod_name.clone(),
            user_stats.clone(),
            metrics.clone(),
        );
        let (presence, ttl) = (
            presence.clone(),
            Duration::from_millis(cfg.cluster.lease_ms),
        );
        Supervisor::start(move |_| ConnectionManager::new(pod, presence, ttl, metrics, stats))
    };
    let arbiters: Vec<Arbiter> = (0..threads(cfg.server.room_shards))
        .map(|_| Arbiter::new())
        .collect();
    let link = Arc::new(crate::relay::PodLink::new(
        &cfg.server.pod_name,
        cluster.inbox.clone(),
    ));
    let deps = Arc::new(RoomDeps {
        cfg: cfg.clone(),
        limits: cfg.core_limits(),
        metrics: metrics.clone(),
        broker: cluster.broker.clone(),
        leases: cluster.leases.clone(),
        directory: directory.clone(),
        store: store.clone(),
        user_stats: user_stats.clone(),
        passwords: Arc::new(keys.room_passwords()),
        room_stats: room_stats.clone(),
        analytics: analytics.clone(),
        games: games.clone(),
        link: link.clone(),
    });
    let handles = arbiters.iter().map(|a| a.handle()).collect();
    let live_rooms = LiveRooms::default();
    let rooms = {
        let live = live_rooms.clone();
        Supervisor::start(move |_| RoomManager::new(deps, handles, live))
    };
    let sessions = Sessions::default();
    let relay = Relay::start(RelayParts {
        pod: cfg.server.pod_name.clone(),
        inbox: cluster.inbox.clone(),
        link,
        broker: cluster.broker.clone(),
        leases: cluster.leases.clone(),
        lease_time: Duration::from_millis(cfg.cluster.lease_ms),
        metrics: metrics.clone(),
        sessions: sessions.clone(),
        live: live_rooms.clone(),
        manager: rooms.clone(),
        conns: conns.clone(),
        users: users.clone(),
    })
    .await
    .context("pod inbox")?;
    let matchmaker = crate::matchmaker::Matchmaker::new(
        &cfg,
        crate::matchmaker::MatchmakerParts {
            games: games.clone(),
            rooms: rooms.clone(),
            queues: cluster.queues.clone(),
            presence: presence.clone(),
            relay: relay.clone(),
        },
    )
    .start();

    let oidc = crate::auth::oidc::Oidc::new(&cfg, store.clone(), metrics.clone())?;
    let shared = Arc::new(Shared {
        cfg: cfg.clone(),
        limits: cfg.core_limits(),
        metrics,
        keys,
        store,
        directory,
        broker: cluster.broker.clone(),
        cluster: cluster.health.clone(),
        rooms: rooms.clone(),
        live_rooms,
        matchmaker,
        users,
        user_cache,
        analytics: analytics.clone(),
        conns: conns.clone(),
        relay,
        sessions,
        presence,
        guard,
        oidc,
        draining: AtomicBool::new(false),
    });

    if cfg.ws.send_buffer_bytes > 0 {
        // Accepted sockets inherit the listener's send buffer size.
        socket2::SockRef::from(&listeners.public).set_send_buffer_size(cfg.ws.send_buffer_bytes)?;
    }
    let public_addr = listeners.public.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    let max_body = cfg.server.max_body_bytes;
    let data = Data::from(shared.clone());
    let guard = shared.guard.clone();
    // Built from actix-http's parts rather than HttpServer, for the upgrade hook: /ws
    // sockets leave the HTTP/1 dispatcher and its fixed buffers (ws/conn.rs).
    let stall = cfg.idle_timeout();
    let public = actix_server::Server::build()
        .workers(threads(cfg.server.workers))
        .disable_signals()
        .shutdown_timeout(grace.as_secs().max(1))
        .listen("parlor-public", listeners.public, {
            let data = data.clone();
            move || {
                let app = || {
                    let guard = guard.clone();
                    let app = App::new()
                        .app_data(data.clone())
                        .configure(|c| http::public_routes(c, max_body, guard));
                    map_config(app.into_factory(), |_| AppConfig::default())
                };
                HttpService::build()
                    // Frames are already coalesced per flush; Nagle would only add latency.
                    .tcp_nodelay(true)
                    .upgrade(crate::ws::upgrade(app(), stall))
                    .finish(app())
                    .tcp()
            }
        })?
        .run();
    let admin = HttpServer::new({
        let data = data.clone();
        move || {
            App::new()
                .app_data(data.clone())
                .configure(http::admin_routes)
        }
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listeners.admin)?
    .run();
    let (public_handle, admin_handle) = (public.handle(), admin.handle());
    let public_task = actix_web::rt::spawn(public);
    let admin_task = actix_web::rt::spawn(admin);
    tracing::info!(%public_addr, %admin_addr, pod = %cfg.server.pod_name, "parlor pod serving");

    shutdown.await;
    // The budget: rooms hand over within half of it, clients leave by three quarters, and
    // the final flush takes the rest, so that the pod exits within it.
    let started = Instant::now();
    let (handed_by, clients_by) = (started + grace / 2, started + grace * 3 / 4);
    let deadline = started + grace;
    tracing::info!("draining");
    shared.draining.store(true, Ordering::Release);
    public_handle.pause().await;
    // Rooms move before their members are told to go, so that members who reconnect to
    // another pod find their rooms taken over there (docs/operations.md, the drain).
    let released = tokio::time::timeout_at(handed_by.into(), rooms.send(crate::rooms::HandOverAll))
        .await
        .unwrap_or_else(|_| {
            // Those released are claimed at the other pods' next lease check instead.
            tracing::warn!("rooms did not all hand over within half the drain budget");
            Ok(Vec::new())
        })
        .unwrap_or_default();
    let handed_over = released.len();
    shared.relay.released(&*shared.presence, released).await;
    let told = conns
        .send(connections::Drain {
            reason: "server shutting down".into(),
        })
        .await
        .unwrap_or(0);
    let mut left = told;
    while Instant::now() < clients_by {
        left = conns.send(connections::Count).await.unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let flush = async {
        let _ = rooms.send(crate::rooms::FlushAll).await;
        user_stats.send(stats::Flush).await.unwrap_or(false)
            & room_stats.send(stats::Flush).await.unwrap_or(false)
            & analytics
                .send(crate::analytics::FlushAnalytics)
                .await
                .unwrap_or(false)
    };
    let flushed = tokio::time::timeout_at(deadline.into(), flush)
        .await
        .unwrap_or(false);
    tracing::info!(
        rooms_handed_over = handed_over,
        clients_told = told,
        clients_left_open = left,
        stats_flushed = flushed,
        "drained"
    );
    // Sockets still open at this point are closed, not waited for.
    public_handle.stop(left == 0).await;
    admin_handle.stop(true).await;
    let _ = public_task.await;
    let _ = admin_task.await;
    // Room actors hold the store; join their threads so that it is closed when we return.
    for a in arbiters {
        a.stop();
        let _ = a.join();
    }
    Ok(())
}
