//! Real MongoDB wire servers for tests (behind `test-util`).
//!
//! With `MONGODB_URI` set, tests use that server, each in a database of its own. Otherwise
//! they start SecantusDB (`secantusd-py`, a wire-compatible server) on a free loopback
//! port, in memory. It is found at `$PARLOR_SECANTUSD`, else in the venv that
//! `scripts/test-deps.sh` makes, else on `PATH`; a test fails, never skips, when there is
//! none. Each server is watched by a small shell that stops it when the test process
//! exits, however it exits.

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use crate::{MongoOptions, MongoStore, Store};

/// The venv `scripts/test-deps.sh` installs SecantusDB into (`PARLOR_SECANTUS_VENV`, as
/// there).
fn venv_bin() -> Option<PathBuf> {
    let venv = match std::env::var_os("PARLOR_SECANTUS_VENV") {
        Some(v) => PathBuf::from(v),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/parlor/secantus"),
    };
    Some(venv.join("bin/secantusd-py"))
}

fn secantusd() -> PathBuf {
    if let Some(p) = std::env::var_os("PARLOR_SECANTUSD") {
        return p.into();
    }
    if let Some(p) = venv_bin().filter(|p| p.exists()) {
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("secantusd-py"))
        .find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "no MongoDB wire server for the tests: run scripts/test-deps.sh (it installs \
             SecantusDB into ~/.cache/parlor/secantus), set PARLOR_SECANTUSD, or set \
             MONGODB_URI to a MongoDB of your own"
        )
    })
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// One SecantusDB process on 127.0.0.1.
pub struct WireServer {
    port: u16,
    storage: String,
    child: Option<Child>,
}

impl WireServer {
    /// Starts a server on a free port, in memory, and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(":memory:".into())
    }

    /// Starts a server that keeps its data in `dir`, so that it survives `restart`.
    pub fn start_on_disk(dir: &std::path::Path) -> Self {
        Self::start_with(dir.display().to_string())
    }

    fn start_with(storage: String) -> Self {
        let mut s = Self {
            port: free_port(),
            storage,
            child: None,
        };
        s.restart();
        s
    }

    /// `mongodb://` URI of this server.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    /// Stops the server (an in-memory server's data goes with it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // TERM, not KILL, so that the watcher's trap stops the server too.
            let _ = Command::new("kill").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while connectable(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        let bin = secantusd();
        // The shell stops the server once this process is gone, so none outlives a test
        // run; `exec` keeps the server's own pid out of the picture.
        let watch = format!(
            "\"$0\" --host 127.0.0.1 --port {port} --storage-path \"$1\" & s=$!; \
             trap 'kill $s 2>/dev/null' EXIT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $s 2>/dev/null; do sleep 0.5; done",
            port = self.port,
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(watch)
            .arg(&bin)
            .arg(&self.storage)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !connectable(self.port) {
            assert!(
                Instant::now() < deadline,
                "{} did not listen on port {} within 30 s",
                bin.display(),
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn connectable(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// The URI tests share: `MONGODB_URI`, else one SecantusDB per test process.
pub fn shared_uri() -> String {
    static SHARED: OnceLock<String> = OnceLock::new();
    SHARED
        .get_or_init(|| match std::env::var("MONGODB_URI") {
            Ok(uri) if !uri.is_empty() => uri,
            _ => {
                let server = WireServer::start();
                let uri = server.uri();
                // Lives as long as the process; its watcher stops it at exit.
                std::mem::forget(server);
                uri
            }
        })
        .clone()
}

/// A database name no other test uses. On a server of your own (`MONGODB_URI`) the test
/// databases stay behind; they are all named `parlor_test_*`.
pub fn fresh_database() -> String {
    format!("parlor_test_{}", parlor_core::new_id(""))
}

/// Options for a fresh database on `uri`.
pub fn options(uri: &str) -> MongoOptions {
    MongoOptions {
        uri: uri.to_owned(),
        database: fresh_database(),
        pool_size: 4,
    }
}

/// A MongoDB store in a fresh database on the shared server, keeping chat as the
/// conformance suites expect.
pub async fn mongo_store() -> (MongoStore, Store) {
    let store = MongoStore::connect(&options(&shared_uri()))
        .await
        .expect("connect to the test MongoDB")
        .with_retention(crate::conformance::RETENTION);
    (store.clone(), Store::new(store))
}
