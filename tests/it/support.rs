//! TestServer: a real pod on 127.0.0.1:0 in its own actix System thread, with its own
//! data dir, plus helpers to sign in and connect clients.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::Duration,
};

use parlor_client::{v1, Body, Connection, Frame, Rest, Tokens};
use parlor_server::Config;
use tokio::sync::oneshot;

pub(crate) const T: Duration = Duration::from_secs(5);

pub(crate) struct TestServer {
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    pub(crate) cfg: Config,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// A config for tests: fast timers, small shards, data in `dir`.
pub(crate) fn test_config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.server.data_dir = dir.to_path_buf();
    cfg.server.workers = 2;
    cfg.server.room_shards = 2;
    cfg.server.shutdown_grace_secs = 3;
    cfg.server.pod_name = "test-pod".into();
    cfg.stats.flush_interval_ms = 100;
    cfg.auth.admins = vec!["root".into()];
    // Every test client shares 127.0.0.1 and signs in and connects far faster than one
    // person; the abuse tests (tests/it/abuse.rs) put the defaults back.
    let g = &mut cfg.guard;
    (g.rest_per_min, g.auth_per_min, g.ws_handshakes_per_min) = (1 << 30, 1 << 30, 1 << 30);
    (g.login_failures_per_min, g.join_failures_per_min) = (1 << 30, 1 << 30);
    (g.ws_per_addr, g.hash_queue) = (1 << 20, 1 << 20);
    cfg.limits.rooms_per_user = 1 << 20;
    cfg.limits.persistent_rooms_per_user = 1 << 20;
    cfg
}

/// The stores a pod can run on, for tests that must hold on each.
#[derive(Clone, Copy, Debug)]
pub(crate) enum StoreKind {
    Embedded,
    MongoDb,
}

/// `test_config(dir)` on `kind`: for MongoDB, a fresh database on the tests' server
/// (`MONGODB_URI`, else SecantusDB), shared by every pod started from this config.
pub(crate) fn store_config(dir: &Path, kind: StoreKind) -> Config {
    let mut cfg = test_config(dir);
    if let StoreKind::MongoDb = kind {
        let opts = parlor_store::testing::options(&parlor_store::testing::shared_uri());
        cfg.store.kind = "mongodb".into();
        cfg.store.mongodb_uri = opts.uri;
        cfg.store.database = opts.database;
    }
    cfg
}

/// How a test opens, itself, the store that a pod on `cfg` uses (the pod must be stopped
/// for the embedded one: redb locks its file).
pub(crate) fn store_settings(kind: StoreKind, dir: &Path, cfg: &Config) -> parlor_store::Settings {
    match kind {
        StoreKind::Embedded => parlor_store::Settings::Embedded(dir.join("parlor.redb")),
        StoreKind::MongoDb => parlor_store::Settings::MongoDb(parlor_store::MongoOptions {
            uri: cfg.store.mongodb_uri.clone(),
            database: cfg.store.database.clone(),
            pool_size: 2,
        }),
    }
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        Self::with(|_| {}).await
    }

    pub(crate) async fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        let mut s = Self::start_config(cfg).await;
        s._dir = Some(dir);
        s
    }

    /// Starts a pod on `cfg` (whose data dir the caller owns).
    pub(crate) async fn start_config(cfg: Config) -> TestServer {
        Self::start_with_games(cfg, parlor_games::Registry::builtin).await
    }

    /// A pod that runs the kinds `games()` registers.
    pub(crate) async fn start_with_games(
        cfg: Config,
        games: fn() -> parlor_games::Registry,
    ) -> TestServer {
        let public = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::start_on(cfg, games, public).await
    }

    /// A pod on a listener bound before its config was made (`Reserved`).
    pub(crate) async fn start_reserved(cfg: Config, at: Reserved) -> TestServer {
        Self::start_on(cfg, parlor_games::Registry::builtin, at.listener).await
    }

    async fn start_on(
        cfg: Config,
        games: fn() -> parlor_games::Registry,
        public: TcpListener,
    ) -> TestServer {
        cfg.validate().unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let (public_addr, admin_addr) = (public.local_addr().unwrap(), admin.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let run_cfg = cfg.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(parlor_server::run_with_games(
                run_cfg,
                parlor_server::Listeners { public, admin },
                async move {
                    let _ = rx.await;
                },
                games(),
            ))
        });
        let s = TestServer {
            public: public_addr,
            admin: admin_addr,
            cfg,
            stop: Some(tx),
            thread: Some(thread),
            _dir: None,
        };
        // Ready once the admin port answers.
        let rest = Rest::new(s.admin_url());
        let mut s = s;
        for _ in 0..200 {
            if rest.get_json("/health/live", None).await.is_ok() {
                return s;
            }
            if s.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let res = s.thread.take().unwrap().join().unwrap();
                panic!("test server exited: {res:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("test server did not start");
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://{}", self.public)
    }

    pub(crate) fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.public)
    }

    pub(crate) fn rest(&self) -> Rest {
        Rest::new(self.http_url())
    }

    /// Stops the pod (as SIGTERM would) and waits for `run` to return.
    pub(crate) async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join().unwrap().unwrap())
                .await
                .unwrap();
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.cfg.server.data_dir.clone()
    }

    /// A guest account, connected and welcomed.
    pub(crate) async fn guest(&self, name: &str) -> (Connection, v1::Welcome) {
        let tokens = self.rest().guest(name).await.unwrap();
        self.connect(Some(&tokens.access_token)).await
    }

    /// A registered account, connected and welcomed.
    pub(crate) async fn user(&self, login: &str) -> (Connection, v1::Welcome, Tokens) {
        let tokens = self
            .rest()
            .register(login, "correct horse battery", login)
            .await
            .unwrap();
        let (c, w) = self.connect(Some(&tokens.access_token)).await;
        (c, w, tokens)
    }

    pub(crate) async fn connect(&self, token: Option<&str>) -> (Connection, v1::Welcome) {
        let mut c = Connection::connect(&self.ws_url()).await.unwrap();
        let w = c.hello(token).await.unwrap();
        (c, w)
    }

    pub(crate) async fn metrics(&self) -> String {
        // The metrics endpoint is text, not JSON.
        let (status, body) = raw_http("GET", &format!("{}/metrics", self.admin_url()), None).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A raw HTTP/1.1 request (no client library between the test and the pod), with an
/// optional bearer token: (status, body), the body de-chunked if it came chunked.
pub(crate) async fn raw_http(method: &str, url: &str, bearer: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_once('/').unwrap();
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Length: 0\r\n{auth}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    if !head.to_lowercase().contains("transfer-encoding: chunked") {
        return (status, body.to_owned());
    }
    // Chunked: size in hex, CRLF, data, CRLF; a 0 size ends it.
    let (mut rest, mut data) = (body, String::new());
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return (status, data);
        }
        data.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The value of one metric line (name with labels, exactly as rendered), or 0.
pub(crate) fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

pub(crate) fn create(name: &str, kind: &str) -> v1::CreateRoom {
    v1::CreateRoom {
        name: name.into(),
        kind: kind.into(),
        ..Default::default()
    }
}

/// A CreateRoom whose members may each send `rate` chat lines and events a second.
pub(crate) fn rated(name: &str, kind: &str, rate: u32) -> v1::CreateRoom {
    v1::CreateRoom {
        settings: Some(v1::RoomSettings {
            event_rate_limit: Some(rate),
            ..Default::default()
        }),
        ..create(name, kind)
    }
}

/// Sends a private chat line; returns its request id.
pub(crate) async fn private_line(c: &mut Connection, to: &str, text: &str) -> u64 {
    c.send(Body::Chat(v1::Chat {
        to_user_id: to.into(),
        text: text.into(),
        ..Default::default()
    }))
    .await
    .unwrap()
}

pub(crate) fn join_id(id: &str) -> v1::JoinRoom {
    v1::JoinRoom {
        room_id: id.into(),
        ..Default::default()
    }
}

/// The next frame that is an Error (others are skipped but kept queued).
pub(crate) async fn next_error(c: &mut Connection) -> (u64, v1::Error) {
    c.wait_for(T, |f| match &f.body {
        Body::Error(e) => Some((f.request_id, e.clone())),
        _ => None,
    })
    .await
    .unwrap()
}

pub(crate) fn code(e: &v1::Error) -> v1::ErrorCode {
    v1::ErrorCode::try_from(e.code).unwrap()
}

/// Room events (seq > 0) until `n` have arrived.
pub(crate) async fn room_events(c: &mut Connection, n: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        let f = c.next_frame(T).await.unwrap();
        if f.seq > 0 {
            out.push(f);
        }
    }
    out
}

/// Waits for the server to close the socket and returns the close code.
pub(crate) async fn close_code(c: &mut Connection) -> Option<u16> {
    loop {
        match c.next_frame(T).await {
            Ok(_) => continue,
            Err(parlor_client::ClientError::Closed { code, .. }) => return code,
            Err(e) => panic!("expected a close, got {e:?}"),
        }
    }
}

/// Asserts that a request was refused by the server with exactly `want`.
pub(crate) fn refused<T: std::fmt::Debug>(got: parlor_client::Result<T>, want: v1::ErrorCode) {
    match got {
        Err(parlor_client::ClientError::Server { code, .. }) if code == want => {}
        other => panic!("expected the server to refuse with {want:?}, got {other:?}"),
    }
}

/// A JoinRoom by id with a password.
pub(crate) fn join_pw(id: &str, password: &str) -> v1::JoinRoom {
    v1::JoinRoom {
        room_id: id.into(),
        password: password.into(),
        ..Default::default()
    }
}

/// A DELETE of `path` on the public port with a bearer token; returns the status.
pub(crate) async fn reqwest_delete(s: &TestServer, path: &str, bearer: &str) -> u16 {
    raw_http("DELETE", &format!("{}{path}", s.http_url()), Some(bearer))
        .await
        .0
}

/// Starts the real binary as `parlor serve` in `dir` with `env`, on fresh loopback ports.
pub(crate) fn spawn_pod(
    dir: &std::path::Path,
    env: &[(String, String)],
    stderr: std::process::Stdio,
) -> (
    tokio::process::Child,
    std::net::SocketAddr,
    std::net::SocketAddr,
) {
    let (public, admin) = (free_port(), free_port());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_parlor"));
    for k in inherited_parlor_vars() {
        cmd.env_remove(k);
    }
    let child = cmd
        .current_dir(dir)
        .envs(env.iter().cloned())
        .args(["serve", "--public-addr", &public.to_string()])
        .args(["--admin-addr", &admin.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    (child, public, admin)
}

/// A public listener bound ahead of its pod, for a config that names the pod's own URL
/// (a callback registered elsewhere).
pub(crate) struct Reserved {
    listener: TcpListener,
    pub(crate) url: String,
}

pub(crate) fn reserve() -> Reserved {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    Reserved { listener, url }
}

pub(crate) fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends a Moderate request and returns the answer frame.
pub(crate) async fn moderate(
    c: &mut Connection,
    room: &str,
    user: &str,
    action: v1::ModerationAction,
    reason: &str,
) -> Frame {
    c.request(
        Body::Moderate(v1::Moderate {
            room_id: room.to_owned(),
            user_id: user.to_owned(),
            action: action as i32,
            reason: reason.to_owned(),
        }),
        T,
    )
    .await
    .unwrap()
}

/// The `PARLOR_*` variables of the test's own environment (`PARLOR_SECANTUS_VENV`, say):
/// a pod would read them as config and refuse the unknown ones, so spawned pods get only
/// the ones a test gives them.
pub(crate) fn inherited_parlor_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("PARLOR_"))
        .collect()
}

/// Creates a room (the caller joins it as owner) and returns its summary.
pub(crate) async fn open_room(c: &mut Connection, req: v1::CreateRoom) -> v1::RoomSummary {
    c.create_room(req).await.unwrap().room.unwrap()
}

/// An HTTP client that shows redirects instead of following them, as a test of what a
/// browser is sent needs.
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}
