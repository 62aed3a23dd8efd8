//! The pod's one typed Config, loaded as file (`parlor.toml`) < env (`PARLOR_*`, `__` for
//! nesting) < CLI flags, and validated at start-up with errors that name the field.
//!
//! A crate of its own, below the server, so that loading it can be fuzzed (and checked by
//! tools) without building the server. What the server makes of it (the cluster and store
//! settings, queue limits) is in parlor-server.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Env, Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

/// Everything a pod can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners, threads and the data dir.
    pub server: ServerConfig,
    /// WebSocket limits and timers.
    pub ws: WsConfig,
    /// Token keys and lifetimes.
    pub auth: AuthConfig,
    /// Room retention and timers.
    pub rooms: RoomsConfig,
    /// Size limits on client input, and quotas.
    pub limits: LimitsConfig,
    /// Abuse limits: rate limits, socket caps, failure budgets, trusted proxies, origins.
    pub guard: GuardConfig,
    /// Which cluster backend, and its Redis.
    pub cluster: ClusterConfig,
    /// Which store, and how to reach it.
    pub store: StoreConfig,
    /// Stats batching.
    pub stats: StatsConfig,
    /// Log format: `json` (default) or `pretty`.
    pub log_format: String,
    /// Log filter, tracing-subscriber syntax. Default `info`.
    pub log_level: String,
    /// Sentry DSN; empty (default) disables Sentry. Env: `PARLOR_SENTRY_DSN`.
    pub sentry_dsn: String,
    /// Sentry environment name. Default `production`.
    pub sentry_environment: String,
    /// Test-only switches; never enable them in production.
    pub debug: DebugConfig,
}

/// Listeners, threads and the data dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Public listener (REST and /ws). Default `0.0.0.0:8080`.
    pub public_addr: SocketAddr,
    /// Admin listener (/metrics, /health/*). Default `0.0.0.0:9090`.
    pub admin_addr: SocketAddr,
    /// HTTP worker threads; 0 (default) means one per core.
    pub workers: usize,
    /// Room arbiters (threads that run room actors); 0 (default) means one per core.
    pub room_shards: usize,
    /// Where the embedded store and generated keys live. Default `./data`.
    pub data_dir: PathBuf,
    /// This pod's name in logs and presence. Default: `$HOSTNAME`, else `parlor`.
    pub pod_name: String,
    /// Seconds SIGTERM waits for clients to leave and buffers to flush. Default 10.
    pub shutdown_grace_secs: u64,
    /// Largest REST request body in bytes. Default 65536.
    pub max_body_bytes: usize,
    /// Serve the web client from this folder instead of the copy built into the binary
    /// (for working on web/). Default empty: the built-in copy.
    pub web_dir: PathBuf,
}

/// WebSocket limits and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsConfig {
    /// Largest inbound frame; a bigger one closes with 1009. Default 65536.
    pub max_frame_bytes: usize,
    /// Bytes queued for one client above which it is closed with 4000 (slow consumer)
    /// if it stays above for `outbound_soft_ms`. Default 1048576 (1 MiB).
    pub outbound_soft_bytes: usize,
    /// How long a client may stay above `outbound_soft_bytes`. Default 10000 ms.
    pub outbound_soft_ms: u64,
    /// Bytes queued for one client above which it is closed with 4000 at once.
    /// Default 8388608 (8 MiB).
    pub outbound_hard_bytes: usize,
    /// SO_SNDBUF of client sockets; 0 (default) leaves it to the kernel's autotuning. A
    /// small value bounds kernel memory per client, and the queue limits then see a client
    /// that stopped reading sooner; too small a value slows distant clients.
    pub send_buffer_bytes: usize,
    /// How often the server pings. Default 15000 ms.
    pub heartbeat_interval_ms: u64,
    /// A client silent this long is closed with 4004. Default 45000 ms.
    pub idle_timeout_ms: u64,
    /// Time allowed between connect and Hello. Default 10000 ms.
    pub hello_timeout_ms: u64,
    /// Rate-limit rejections in a row before the socket is closed with 4029. Default 20.
    pub flood_strikes: u32,
    /// Frames of any kind one connection may send per second (bursts of twice that).
    /// Room events are further limited by each room's `event_rate_limit`. Default 200.
    pub max_frames_per_sec: u32,
}

/// Token keys and lifetimes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// PKCS#8 PEM of the Ed25519 signing key. Empty (default): generated into
    /// `<data_dir>/keys/signing.pem` on first start, with a warning.
    pub signing_key: PathBuf,
    /// PEM files of earlier keys (private or public) whose tokens are still accepted.
    /// Default none.
    pub verify_keys: Vec<PathBuf>,
    /// Access-token lifetime. Default 900 s.
    pub access_ttl_secs: u64,
    /// Refresh-token lifetime. Default 2592000 s (30 days).
    pub refresh_ttl_secs: u64,
    /// Resume-token lifetime. Default 600 s.
    pub resume_ttl_secs: u64,
    /// Magic login code lifetime. Default 900 s.
    pub magic_ttl_secs: u64,
    /// Logins that get the admin role when they register. Default none.
    pub admins: Vec<String>,
    /// The `iss` of every token the pods issue, and the only one they accept. Default
    /// `parlor`.
    pub issuer: String,
    /// The `aud` of every token the pods issue, and the only one they accept. Default
    /// `parlor`.
    pub audience: String,
    /// Third-party sign-in providers (OpenID Connect, authorization code with PKCE).
    /// Default none.
    pub oidc: Vec<OidcProvider>,
    /// How long a third-party sign-in may take from its start to its callback.
    /// Default 600 s.
    pub oidc_state_ttl_secs: u64,
}

/// One OpenID Connect provider that accounts can sign in with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcProvider {
    /// The provider's name in routes (`/api/v1/auth/oidc/<name>/start`): 1 to 32 of a-z,
    /// 0-9, `-`, `_`. Required.
    pub name: String,
    /// The issuer URL; its discovery document is read from
    /// `<issuer>/.well-known/openid-configuration`. Required.
    pub issuer: String,
    /// The client id registered at the provider. Required.
    pub client_id: String,
    /// The client secret; empty (default) for a public client. Prefer
    /// `client_secret_file`, which keeps it out of the config.
    pub client_secret: String,
    /// A file holding the client secret (a mounted Secret). Default none.
    pub client_secret_file: PathBuf,
    /// This cluster's callback URL as registered at the provider, ending in
    /// `/api/v1/auth/oidc/<name>/callback`. Required.
    pub redirect_uri: String,
    /// Scopes asked for; `openid` is always sent. Default `openid`, `profile`, `email`.
    pub scopes: Vec<String>,
    /// Where the callback sends the browser, with a one-time login code in the fragment
    /// (`#login_code=...`, redeemed at `/api/v1/auth/magic/redeem`): a path on this pod,
    /// or an absolute URL. Empty (default): the callback answers with the tokens as JSON.
    pub return_to: String,
}

impl Default for OidcProvider {
    fn default() -> Self {
        Self {
            name: String::new(),
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            client_secret_file: PathBuf::new(),
            redirect_uri: String::new(),
            scopes: vec!["openid".into(), "profile".into(), "email".into()],
            return_to: String::new(),
        }
    }
}

fn http_url(v: &str) -> bool {
    (v.starts_with("https://") || v.starts_with("http://"))
        && v.len() > "https://".len()
        && !v.chars().any(char::is_whitespace)
}

impl OidcProvider {
    fn validate(&self, i: usize) -> Result<(), ConfigError> {
        let f = |k: &str| format!("auth.oidc[{i}].{k}");
        let slug = (1..=32).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !slug {
            return Err(field(&f("name"), "must be 1 to 32 of a-z, 0-9, '-', '_'"));
        }
        if !http_url(&self.issuer) {
            return Err(field(&f("issuer"), "must be an http(s) URL"));
        }
        if self.client_id.is_empty() {
            return Err(field(&f("client_id"), "must not be empty"));
        }
        let callback = format!("/api/v1/auth/oidc/{}/callback", self.name);
        if !http_url(&self.redirect_uri) || !self.redirect_uri.ends_with(&callback) {
            return Err(field(
                &f("redirect_uri"),
                &format!("must be an http(s) URL ending in {callback}"),
            ));
        }
        let ret = &self.return_to;
        if !(ret.is_empty() || http_url(ret) || (ret.starts_with('/') && !ret.starts_with("//"))) {
            return Err(field(&f("return_to"), "must be empty, a path or a URL"));
        }
        Ok(())
    }
}

/// Room retention and timers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Chat lines in a join snapshot. Default 50.
    pub snapshot_chat: usize,
    /// Chat lines a persistent room holds while the store refuses them; past it, new
    /// lines are refused with UNAVAILABLE. Default 10000.
    pub chat_backlog_max: usize,
    /// A non-persistent room created with nobody in it closes after this unless someone
    /// joins. (A room closes as soon as its last member leaves.) Default 300 s.
    pub empty_room_ttl_secs: u64,
    /// Seats of the rooms JoinOrCreate makes. Default 16.
    pub join_or_create_seats: u32,
    /// A member whose socket drops keeps their seat, marked away, this long; 0 frees it at
    /// once. Default 30 s.
    pub reconnect_grace_secs: u64,
    /// Cursor moves (presence updates that change only the cursor) are conflated over this
    /// window: each member's latest goes out once per window. 0 sends each move at once,
    /// under the room's rate limit. Default 50 ms.
    pub cursor_interval_ms: u64,
    /// The matchmaker groups players whose ratings differ by at most this, at first.
    /// Default 100.
    pub matchmaking_window: f64,
    /// ...and widens the window by this much for each second a player waits. Default 50.
    pub matchmaking_widen_per_sec: f64,
}

/// Size limits on client input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longest room or display name in characters. Default 64.
    pub name_chars: usize,
    /// Longest chat line in bytes. Default 2000.
    pub chat_bytes: usize,
    /// Largest game-event payload in bytes. Default 32768.
    pub event_payload_bytes: usize,
    /// Most members per room. Default 5000.
    pub max_members: u32,
    /// Live rooms one account may own on a pod at once. Default 5.
    pub rooms_per_user: usize,
    /// Persistent rooms one registered account may own. Guests own none. Default 3.
    pub persistent_rooms_per_user: usize,
    /// Bans, and mutes, one room holds. Default 1000 each.
    pub bans_per_room: usize,
    /// Users one account may block from private messages. Default 1000.
    pub blocks_per_user: usize,
}

/// Abuse limits (docs/security.md). Each is per pod, so behind a load balancer of N pods
/// one address gets up to N times a limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// Proxies whose `X-Forwarded-For` is believed, as CIDR ranges or addresses
    /// (`["10.0.0.0/8"]`). A request from anywhere else is keyed by its peer address, so a
    /// client cannot choose its own. Default none.
    pub trusted_proxies: Vec<String>,
    /// REST requests per address per minute (bursts of as many). Default 100.
    pub rest_per_min: u32,
    /// Sign-in requests (guest, register, login, refresh, magic redeem) per address per
    /// minute, on top of `rest_per_min`. Default 10.
    pub auth_per_min: u32,
    /// Failed logins one account takes per minute from addresses it has not signed in
    /// from; past it they are refused (429) until the budget refills. Default 10.
    pub login_failures_per_min: u32,
    /// Wrong room codes and passwords per address per minute; past it joins by code or
    /// password are refused (429). Each session also gets a fifth of it. Default 20.
    pub join_failures_per_min: u32,
    /// Open WebSockets per address. Default 32.
    pub ws_per_addr: u32,
    /// Open WebSockets per pod; 0 (default): 90% of the descriptor limit, less 64.
    pub ws_max: u32,
    /// WebSocket handshakes per address per minute. Default 60.
    pub ws_handshakes_per_min: u32,
    /// Password hashes at once; 0 (default): one per core.
    pub hash_concurrency: usize,
    /// Sign-ins waiting for a hash slot; past it they are refused (503). Default 32.
    pub hash_queue: usize,
    /// Browser origins allowed to open /ws and call REST (CORS), as
    /// `https://host[:port]`; `["*"]` allows any. Empty (default): the pod's own origin.
    pub allowed_origins: Vec<String>,
}

/// The cluster backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `memory` (default; one pod) or `redis` (pods share rooms through Redis).
    pub kind: String,
    /// `standalone` (default; one Redis at `redis_url`) or `cluster` (a Redis Cluster,
    /// reached through `redis_urls`, with sharded channels).
    pub redis_mode: String,
    /// Redis URL, `redis://[user:password@]host:port[/db]`; required for a standalone
    /// Redis. The pod speaks RESP3 whatever the URL says.
    pub redis_url: String,
    /// Seed nodes of a Redis Cluster, `redis://host:port` each; required in cluster mode.
    /// Env: `PARLOR_CLUSTER__REDIS_URLS='["redis://a:7000", "redis://b:7000"]'`.
    pub redis_urls: Vec<String>,
    /// Prefix of every Redis key and channel, so several clusters can share one Redis.
    /// Default `parlor`.
    pub key_prefix: String,
    /// How long a home pod's lease on a room lasts unless renewed; a dead pod's rooms move
    /// after at most this. Renewed every third of it. Default 3000 ms.
    pub lease_ms: u64,
    /// Recent events kept per room for resume. Default 256.
    pub history_events: usize,
    /// Oldest event kept for resume. Default 120 s.
    pub history_secs: u64,
    /// How often each pod probes its own Redis subscription and checks that it has every
    /// room's newest event; a dead subscription turns readiness off. Default 1000 ms.
    pub probe_ms: u64,
    /// Replicas that must have an event before it is acknowledged (Redis WAIT), so that a
    /// master's failover loses none. Default 1 in cluster mode, 0 on a standalone Redis.
    pub wait_replicas: Option<u32>,
    /// The longest an acknowledgement waits for them; when replicas fall short, events are
    /// acknowledged from the master alone for a while (`cluster_unreplicated_total`).
    /// Default 200 ms.
    pub wait_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            kind: "memory".into(),
            redis_mode: "standalone".into(),
            redis_url: String::new(),
            redis_urls: Vec::new(),
            key_prefix: "parlor".into(),
            lease_ms: 3000,
            history_events: 256,
            history_secs: 120,
            probe_ms: 1000,
            wait_replicas: None,
            wait_ms: 200,
        }
    }
}

/// The durable store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `embedded` (default; a redb file under `server.data_dir`) or `mongodb`.
    pub kind: String,
    /// For `mongodb`: a `mongodb://` or `mongodb+srv://` URI. Env:
    /// `PARLOR_STORE__MONGODB_URI`.
    pub mongodb_uri: String,
    /// For `mongodb`: the database. Default `parlor`.
    pub database: String,
    /// For `mongodb`: most connections per pod. Default 10.
    pub pool_size: u32,
    /// Newest chat lines kept per room; 0 keeps every line. Default 100000.
    pub chat_retain_lines: usize,
    /// Chat lines older than this many days are deleted; 0 (default) keeps them.
    pub chat_retain_days: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            kind: "embedded".into(),
            mongodb_uri: String::new(),
            database: "parlor".into(),
            pool_size: 10,
            chat_retain_lines: 100_000,
            chat_retain_days: 0,
        }
    }
}

/// Stats batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatsConfig {
    /// How often counters are written to the store. Default 5000 ms.
    pub flush_interval_ms: u64,
    /// A tracker also writes as soon as this many subjects are pending. Default 10000.
    pub flush_records: usize,
    /// Analytics events older than this many days are purged; 0 keeps them. Default 90.
    pub analytics_retain_days: u64,
}

/// Test-only switches.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DebugConfig {
    /// A game event of type `parlor.debug.panic` panics its room actor. Default false.
    pub fault_injection: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            ws: WsConfig::default(),
            auth: AuthConfig::default(),
            rooms: RoomsConfig::default(),
            limits: LimitsConfig::default(),
            guard: GuardConfig::default(),
            cluster: ClusterConfig::default(),
            store: StoreConfig::default(),
            stats: StatsConfig::default(),
            log_format: "json".into(),
            log_level: "info".into(),
            sentry_dsn: String::new(),
            sentry_environment: "production".into(),
            debug: DebugConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            public_addr: ([0, 0, 0, 0], 8080).into(),
            admin_addr: ([0, 0, 0, 0], 9090).into(),
            workers: 0,
            room_shards: 0,
            data_dir: PathBuf::from("./data"),
            pod_name: std::env::var("HOSTNAME").unwrap_or_else(|_| "parlor".into()),
            shutdown_grace_secs: 10,
            max_body_bytes: 64 * 1024,
            web_dir: PathBuf::new(),
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_frame_bytes: parlor_protocol::DEFAULT_MAX_FRAME_BYTES,
            outbound_soft_bytes: 1 << 20,
            outbound_soft_ms: 10_000,
            outbound_hard_bytes: 8 << 20,
            send_buffer_bytes: 0,
            heartbeat_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            hello_timeout_ms: 10_000,
            flood_strikes: 20,
            max_frames_per_sec: 200,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            signing_key: PathBuf::new(),
            verify_keys: Vec::new(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            resume_ttl_secs: 600,
            magic_ttl_secs: 900,
            admins: Vec::new(),
            issuer: "parlor".into(),
            audience: "parlor".into(),
            oidc: Vec::new(),
            oidc_state_ttl_secs: 600,
        }
    }
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            snapshot_chat: 50,
            chat_backlog_max: 10_000,
            empty_room_ttl_secs: 300,
            join_or_create_seats: parlor_core::DEFAULT_MAX_MEMBERS,
            reconnect_grace_secs: 30,
            cursor_interval_ms: 50,
            matchmaking_window: 100.0,
            matchmaking_widen_per_sec: 50.0,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = parlor_core::Limits::default();
        Self {
            name_chars: l.name_chars,
            chat_bytes: l.chat_bytes,
            event_payload_bytes: l.event_payload_bytes,
            max_members: l.max_members,
            rooms_per_user: 5,
            persistent_rooms_per_user: 3,
            bans_per_room: 1000,
            blocks_per_user: 1000,
        }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            rest_per_min: 100,
            auth_per_min: 10,
            login_failures_per_min: 10,
            join_failures_per_min: 20,
            ws_per_addr: 32,
            ws_max: 0,
            ws_handshakes_per_min: 60,
            hash_concurrency: 0,
            hash_queue: 32,
            allowed_origins: Vec::new(),
        }
    }
}

impl GuardConfig {
    /// The trusted proxies, parsed; an address alone is a range of one.
    pub fn proxies(&self) -> Result<Vec<ipnet::IpNet>, String> {
        self.trusted_proxies
            .iter()
            .map(|p| {
                p.parse::<ipnet::IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{p:?} is not an address or CIDR range"))
            })
            .collect()
    }
}

impl Default for StatsConfig {
    fn default() -> Self {
        Self {
            flush_interval_ms: 5000,
            flush_records: 10_000,
            analytics_retain_days: 90,
        }
    }
}

/// A config that could not be loaded or is invalid; the message names the field.
#[derive(Debug, thiserror::Error)]
#[error("invalid config: {0}")]
pub struct ConfigError(pub String);

fn field(name: &str, why: &str) -> ConfigError {
    ConfigError(format!("`{name}` {why}"))
}

/// True for a `PARLOR_*` variable (named here without the prefix) that has the shape of
/// the variables kubelet injects for a Service named `parlor` or `parlor-*`:
/// `{SVC}_SERVICE_HOST`, `{SVC}_SERVICE_PORT[_{PORT_NAME}]`, `{SVC}_PORT` and
/// `{SVC}_PORT_{N}_{PROTO}[_PROTO|_PORT|_ADDR]`. Such a name has no `__`, and no config key
/// has this shape (a test checks). So a typo in a real key, which has `__` or is a top-level
/// name, still fails; only a made-up name of this shape, such as `PARLOR_PORT`, is skipped.
fn is_service_link(key: &str) -> bool {
    if key.contains("__") {
        return false;
    }
    let upper = key.to_ascii_uppercase();
    let t: Vec<&str> = upper.split('_').collect();
    let n = t.len();
    let is_proto = |s: &str| matches!(s, "TCP" | "UDP" | "SCTP");
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ends = |suffix: &[&str]| n >= suffix.len() && t[n - suffix.len()..] == *suffix;
    ends(&["SERVICE", "HOST"])
        || ends(&["PORT"])
        || t.windows(2)
            .position(|w| w == ["SERVICE", "PORT"])
            .is_some_and(|i| t[i + 2..].iter().all(|s| !s.is_empty()))
        || (n >= 3 && t[n - 3] == "PORT" && is_num(t[n - 2]) && is_proto(t[n - 1]))
        || (n >= 4
            && t[n - 4] == "PORT"
            && is_num(t[n - 3])
            && is_proto(t[n - 2])
            && matches!(t[n - 1], "PROTO" | "PORT" | "ADDR"))
}

/// The `PARLOR_*` variables that were skipped as Kubernetes service links, for the log.
pub fn service_link_vars() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            // Case-insensitive, as figment matches the prefix.
            k.get(..7)
                .is_some_and(|p| p.eq_ignore_ascii_case("PARLOR_"))
                && k.len() > 7
                && is_service_link(&k[7..])
        })
        .collect();
    names.sort();
    names
}

impl Config {
    /// Loads file (if it exists, or fails if `required`) < env < `overrides`, then validates.
    pub fn load(
        file: &std::path::Path,
        required: bool,
        overrides: impl Serialize,
    ) -> Result<Config, ConfigError> {
        if required && !file.exists() {
            return Err(ConfigError(format!(
                "config file {} not found",
                file.display()
            )));
        }
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            .merge(
                Env::prefixed("PARLOR_")
                    .filter(|k| !is_service_link(k.as_str()))
                    .split("__")
                    .ignore(&["config"]),
            )
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// A config from TOML text alone (no env, no flags), validated: what `load` makes of a
    /// file. For checks of a file before it is deployed, and for fuzzing.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ws.max_frame_bytes < 1024 {
            return Err(field("ws.max_frame_bytes", "must be at least 1024"));
        }
        if self.ws.outbound_hard_bytes < 16 * 1024 {
            return Err(field("ws.outbound_hard_bytes", "must be at least 16384"));
        }
        if self.ws.outbound_soft_bytes > self.ws.outbound_hard_bytes {
            return Err(field(
                "ws.outbound_soft_bytes",
                "must not exceed ws.outbound_hard_bytes",
            ));
        }
        if self.ws.heartbeat_interval_ms == 0
            || self.ws.idle_timeout_ms <= self.ws.heartbeat_interval_ms
        {
            return Err(field(
                "ws.idle_timeout_ms",
                "must be greater than ws.heartbeat_interval_ms (> 0)",
            ));
        }
        if self.ws.max_frames_per_sec == 0 {
            return Err(field("ws.max_frames_per_sec", "must be > 0"));
        }
        if self.auth.access_ttl_secs == 0 || self.auth.refresh_ttl_secs == 0 {
            return Err(field(
                "auth.access_ttl_secs",
                "and refresh_ttl_secs must be > 0",
            ));
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return Err(field("auth.issuer", "and auth.audience must not be empty"));
        }
        for (i, p) in self.auth.oidc.iter().enumerate() {
            p.validate(i)?;
            if self.auth.oidc[..i].iter().any(|q| q.name == p.name) {
                return Err(field(&format!("auth.oidc[{i}].name"), "is not unique"));
            }
        }
        if self.auth.oidc_state_ttl_secs == 0 {
            return Err(field("auth.oidc_state_ttl_secs", "must be > 0"));
        }
        if self.cluster.history_events == 0 {
            return Err(field("cluster.history_events", "must be > 0"));
        }
        if self.cluster.lease_ms < 300 {
            return Err(field("cluster.lease_ms", "must be at least 300"));
        }
        if self.limits.max_members == 0 {
            return Err(field("limits.max_members", "must be > 0"));
        }
        if self.rooms.join_or_create_seats == 0
            || self.rooms.join_or_create_seats > self.limits.max_members
        {
            return Err(field(
                "rooms.join_or_create_seats",
                "must be 1 to limits.max_members",
            ));
        }
        if let Err(e) = self.guard.proxies() {
            return Err(field("guard.trusted_proxies", &e));
        }
        for (name, v) in [
            ("guard.rest_per_min", self.guard.rest_per_min),
            ("guard.auth_per_min", self.guard.auth_per_min),
            (
                "guard.login_failures_per_min",
                self.guard.login_failures_per_min,
            ),
            (
                "guard.join_failures_per_min",
                self.guard.join_failures_per_min,
            ),
            ("guard.ws_per_addr", self.guard.ws_per_addr),
            (
                "guard.ws_handshakes_per_min",
                self.guard.ws_handshakes_per_min,
            ),
        ] {
            if v == 0 {
                return Err(field(name, "must be > 0"));
            }
        }
        for o in &self.guard.allowed_origins {
            let ok = o == "*"
                || ((o.starts_with("https://") || o.starts_with("http://"))
                    && !o.ends_with('/')
                    && !o[o.find("//").map_or(0, |i| i + 2)..].contains('/'));
            if !ok {
                return Err(field(
                    "guard.allowed_origins",
                    "entries must be \"*\" or scheme://host[:port], with no path",
                ));
            }
        }
        if !matches!(self.log_format.as_str(), "json" | "pretty") {
            return Err(field("log_format", "must be \"json\" or \"pretty\""));
        }
        match self.cluster.kind.as_str() {
            "memory" => {}
            "redis" => {
                match self.cluster.redis_mode.as_str() {
                    "standalone" if self.cluster.redis_url.is_empty() => {
                        return Err(field(
                            "cluster.redis_url",
                            "is required when cluster.kind is \"redis\"",
                        ));
                    }
                    "cluster" if self.cluster.redis_urls.is_empty() => {
                        return Err(field(
                            "cluster.redis_urls",
                            "is required when cluster.redis_mode is \"cluster\"",
                        ));
                    }
                    "standalone" | "cluster" => {}
                    _ => {
                        return Err(field(
                            "cluster.redis_mode",
                            "must be \"standalone\" or \"cluster\"",
                        ))
                    }
                }
                if self.cluster.key_prefix.is_empty()
                    || self.cluster.key_prefix.contains(['{', '}'])
                {
                    return Err(field(
                        "cluster.key_prefix",
                        "must be non-empty, without braces",
                    ));
                }
            }
            _ => return Err(field("cluster.kind", "must be \"memory\" or \"redis\"")),
        }
        match self.store.kind.as_str() {
            "embedded" => {}
            "mongodb" => {
                if self.store.mongodb_uri.is_empty() {
                    return Err(field(
                        "store.mongodb_uri",
                        "must be set when store.kind is \"mongodb\"",
                    ));
                }
                if self.store.database.is_empty() {
                    return Err(field("store.database", "must not be empty"));
                }
            }
            _ => return Err(field("store.kind", "must be \"embedded\" or \"mongodb\"")),
        }
        Ok(())
    }

    /// Domain limits from config.
    pub fn core_limits(&self) -> parlor_core::Limits {
        parlor_core::Limits {
            name_chars: self.limits.name_chars,
            chat_bytes: self.limits.chat_bytes,
            event_payload_bytes: self.limits.event_payload_bytes,
            max_members: self.limits.max_members,
            ..parlor_core::Limits::default()
        }
    }

    /// How often the server pings.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.ws.heartbeat_interval_ms)
    }

    /// How long a silent client is kept.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.ws.idle_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct NoOverrides {}

    #[test]
    #[allow(clippy::result_large_err)]
    fn a_redis_cluster_is_named_by_its_seed_urls() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("parlor.toml", "")?;
            let load = || Config::load("parlor.toml".as_ref(), true, NoOverrides {});
            jail.set_env("PARLOR_CLUSTER__KIND", "redis");
            jail.set_env("PARLOR_CLUSTER__REDIS_MODE", "cluster");
            let err = load().unwrap_err();
            assert!(err.to_string().contains("`cluster.redis_urls`"), "{err}");
            jail.set_env(
                "PARLOR_CLUSTER__REDIS_URLS",
                r#"["redis://a:7000", "redis://b:7000"]"#,
            );
            let cfg = load().unwrap();
            assert_eq!(cfg.cluster.redis_urls, ["redis://a:7000", "redis://b:7000"]);
            jail.set_env("PARLOR_CLUSTER__REDIS_MODE", "sentinel");
            let err = load().unwrap_err();
            assert!(err.to_string().contains("`cluster.redis_mode`"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn oidc_providers_load_from_toml_and_bad_ones_name_their_field() {
        let good = r#"
            [[auth.oidc]]
            name = "local"
            issuer = "https://id.example"
            client_id = "parlor"
            redirect_uri = "https://play.example/api/v1/auth/oidc/local/callback"
        "#;
        let cfg = Config::from_toml(good).unwrap();
        assert_eq!(cfg.auth.oidc[0].scopes, ["openid", "profile", "email"]);
        let cases = [
            ("name = \"local\"", "name = \"Local!\"", "auth.oidc[0].name"),
            ("https://id.example", "id.example", "auth.oidc[0].issuer"),
            (
                "client_id = \"parlor\"",
                "client_id = \"\"",
                "auth.oidc[0].client_id",
            ),
            (
                "/local/callback",
                "/other/callback",
                "auth.oidc[0].redirect_uri",
            ),
        ];
        for (from, to, key) in cases {
            let err = Config::from_toml(&good.replace(from, to))
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("`{key}`")), "{from} -> {to}: {err}");
        }
        let err = Config::from_toml(&format!("{good}{good}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`auth.oidc[1].name` is not unique"), "{err}");
        let unknown = format!("{good}\nsecret = \"x\"\n");
        assert!(Config::from_toml(&unknown).is_err());
    }

    #[test]
    // figment::Jail's closure type returns figment's (large) Error; not ours to shrink.
    #[allow(clippy::result_large_err)]
    fn file_then_env_then_cli_and_errors_name_fields() {
        figment::Jail::expect_with(|jail| {
            // The test's own environment may hold PARLOR_* variables of the tooling's.
            jail.clear_env();
            jail.create_file(
                "parlor.toml",
                "[server]\nworkers = 3\n[ws]\noutbound_soft_ms = 500\n",
            )?;
            jail.set_env("PARLOR_WS__OUTBOUND_SOFT_MS", "700");
            #[derive(Serialize)]
            struct Cli {
                server: serde_json::Value,
            }
            let cli = Cli {
                server: serde_json::json!({"workers": 5}),
            };
            let cfg = Config::load("parlor.toml".as_ref(), true, cli).unwrap();
            assert_eq!(cfg.server.workers, 5);
            assert_eq!(cfg.ws.outbound_soft_ms, 700);

            jail.set_env("PARLOR_WS__OUTBOUND_HARD_BYTES", "2");
            let err = Config::load("parlor.toml".as_ref(), true, NoOverrides {}).unwrap_err();
            assert!(err.to_string().contains("ws.outbound_hard_bytes"), "{err}");

            jail.set_env("PARLOR_WS__OUTBOUND_HARD_BYTES", "lots");
            let err = Config::load("parlor.toml".as_ref(), true, NoOverrides {}).unwrap_err();
            assert!(
                err.to_string()
                    .to_lowercase()
                    .contains("ws.outbound_hard_bytes"),
                "{err}"
            );

            jail.clear_env();
            // A store kind that does not exist, and MongoDB without a URI, name their keys.
            jail.set_env("PARLOR_STORE__KIND", "postgres");
            let err = Config::load("parlor.toml".as_ref(), true, NoOverrides {}).unwrap_err();
            assert!(err.to_string().contains("`store.kind`"), "{err}");
            jail.set_env("PARLOR_STORE__KIND", "mongodb");
            let err = Config::load("parlor.toml".as_ref(), true, NoOverrides {}).unwrap_err();
            assert!(err.to_string().contains("`store.mongodb_uri`"), "{err}");
            jail.set_env(
                "PARLOR_STORE__MONGODB_URI",
                "mongodb://db:27017/?replicaSet=rs0",
            );
            let cfg = Config::load("parlor.toml".as_ref(), true, NoOverrides {}).unwrap();
            assert_eq!(
                (cfg.store.database.as_str(), cfg.store.pool_size),
                ("parlor", 10)
            );

            jail.clear_env();
            jail.create_file("bad.toml", "[server]\nworkerz = 1\n")?;
            let err = Config::load("bad.toml".as_ref(), true, NoOverrides {}).unwrap_err();
            assert!(err.to_string().contains("workerz"), "{err}");
            Ok(())
        });
    }
}

#[cfg(test)]
mod readme {
    use super::*;

    #[test]
    fn service_link_shapes_are_never_config_keys() {
        for k in [
            "PORT",
            "SERVICE_HOST",
            "SERVICE_PORT",
            "SERVICE_PORT_PUBLIC",
            "PORT_8080_TCP",
            "PORT_8080_TCP_PROTO",
            "PORT_8080_TCP_PORT",
            "PORT_8080_TCP_ADDR",
            "ADMIN_PORT",
            "ADMIN_SERVICE_PORT_ADMIN",
            "ADMIN_PORT_9090_TCP_ADDR",
            "REDIS_MASTER_PORT_6379_TCP",
        ] {
            assert!(is_service_link(k), "{k}");
        }
        let mut all = Vec::new();
        keys(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut all,
        );
        for k in all {
            let env = k.replace('.', "__").to_ascii_uppercase();
            assert!(
                !is_service_link(&env),
                "config key `{k}` looks like a service link"
            );
        }
        for k in ["WS__OUTBOUND_QUEU", "LOG_LEVE", "SERVER__PORT", "PORTS"] {
            assert!(!is_service_link(k), "{k}");
        }
    }

    fn keys(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    keys(&path, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }

    #[test]
    fn readme_lists_every_key() {
        let readme = include_str!("../../../README.md");
        let mut all = Vec::new();
        keys(
            "",
            &serde_json::to_value(Config::default()).unwrap(),
            &mut all,
        );
        // Each provider's keys too, which an empty list does not show.
        keys(
            "auth.oidc[]",
            &serde_json::to_value(OidcProvider::default()).unwrap(),
            &mut all,
        );
        assert!(all.len() > 30);
        for k in all {
            assert!(
                readme.contains(&format!("| `{k}` |")),
                "README.md lacks config key `{k}`"
            );
        }
    }
}
