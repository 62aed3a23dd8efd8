//! Real MongoDB wire servers for tests (behind `test-util`).
//!
//! With `MONGODB_URI` set, tests use that server, each in a database of its own. Otherwise
//! they start SecantusDB (`secantusd-py`, a wire-compatible server) on a free loopback
//! port, in memory. It is found at `$PARLOR_SECANTUSD`, else in the venv that
//! `scripts/test-deps.sh` makes, else on `PATH`; a test fails, never skips, when there is
//! none. Each server is a `parlor_testkit::Daemon`, stopped when the test process exits.

use std::{ffi::OsString, path::PathBuf, sync::OnceLock};

use parlor_testkit::{free_port, Daemon};

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

/// One SecantusDB process on 127.0.0.1.
pub struct WireServer {
    daemon: Daemon,
}

impl WireServer {
    /// Starts a server on a free port, in memory, and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(":memory:".into())
    }

    /// Starts a server that keeps its data in `dir`, so that it survives `restart`.
    pub fn start_on_disk(dir: &std::path::Path) -> Self {
        Self::start_with(dir.as_os_str().to_owned())
    }

    fn start_with(storage: OsString) -> Self {
        let port = free_port();
        let args = vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string().into(),
            "--storage-path".into(),
            storage,
        ];
        Self {
            daemon: Daemon::start(secantusd(), args, port),
        }
    }

    /// `mongodb://` URI of this server.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.daemon.port()
        )
    }

    /// Stops the server (an in-memory server's data goes with it).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.daemon.restart();
    }
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
