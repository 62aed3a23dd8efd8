use std::{ffi::OsString, path::PathBuf};

use crate::{free_port, Daemon};

/// One `redis-server` on 127.0.0.1, in memory only. It is found at `$PARLOR_REDIS_SERVER`,
/// else on `PATH` (`scripts/test-deps.sh` installs Debian's package); a test fails, never
/// skips, when there is none.
pub struct RedisServer {
    daemon: Daemon,
}

pub(crate) fn redis_server() -> PathBuf {
    if let Some(p) = std::env::var_os("PARLOR_REDIS_SERVER") {
        return p.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("redis-server"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "no redis-server for the tests: run scripts/test-deps.sh (it installs \
                 Debian's redis-server) or set PARLOR_REDIS_SERVER"
            )
        })
}

/// Calls of each command, by lower-case name, from the text of `INFO commandstats`.
pub fn commandstats(info: &str) -> std::collections::HashMap<String, u64> {
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.trim().parse().ok()?))
        })
        .collect()
}

/// The arguments of a redis-server on 127.0.0.1:`port` that keeps nothing on disk, then
/// `more`.
pub(crate) fn memory_only(port: u16, more: &[&str]) -> Vec<OsString> {
    let port = port.to_string();
    let base = [
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        "--loglevel",
        "warning",
    ];
    base.iter().chain(more).map(OsString::from).collect()
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        let port = free_port();
        Self {
            daemon: Daemon::start(redis_server(), memory_only(port, &[]), port),
        }
    }

    /// `redis://` URL of this server, speaking RESP3.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/?protocol=resp3", self.daemon.port())
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.daemon.port()
    }

    /// Stops the server; its data goes with it.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.daemon.restart();
    }
}
