//! The Parlor pod: actix actors, HTTP and WebSocket routes, auth, config and metrics.
//!
//! - `config`: the typed Config (file < env < CLI).
//! - `server`: `run(config, listeners, shutdown)`, the one entry point; wires everything.
//! - `ws`: one actor per WebSocket (`session`) and its bounded outbound queue (`outbox`).
//! - `rooms`: RoomManager (lifecycle, lookup) and one RoomActor per room on sharded arbiters.
//! - `users`: UserManager (accounts, token checks) over the Store.
//! - `connections`: ConnectionManager (local sessions, private messages, drain).
//! - `relay`: this pod's end of the pod inboxes (requests to and answers from other pods).
//! - `stats`: StatsTracker, batching activity counters into the Store.
//! - `http`: REST under /api/v1, JWKS, and the admin routes.
//! - `guard`: abuse limits at the edge (rate limits, socket caps, failure budgets).
//! - `auth`, `error`, `metrics`, `telemetry`: the supporting pieces.
//! - `bench_support` (feature `bench`, off by default): hot-path pieces for benchmarks.

mod analytics;
mod auth;
mod config;
mod connections;
mod error;
mod guard;
mod http;
mod matchmaker;
mod metrics;
mod relay;
mod rooms;
mod server;
mod stats;
mod telemetry;
mod tournaments;
mod users;
mod ws;

pub use auth::{generate_pem, mint_token, write_private, KeyError};
pub use config::{service_link_vars, Config, ConfigError, GuardConfig, OidcProvider};
pub use error::{ApiError, ApiResult};
pub use metrics::Metrics;
pub use server::{run, run_with_games, Listeners};
pub use telemetry::{init_logging, init_sentry};

/// The crate-private hot-path pieces, opened up for the root package's benchmarks.
/// Only built with the `bench` feature; not part of the server's API.
#[cfg(feature = "bench")]
pub mod bench_support {
    use std::{path::Path, sync::Arc};

    use parlor_cluster::EventSink;
    use parlor_core::{GlobalRole, UserId};

    use crate::{
        auth::{Keyring, TokenKind},
        ws::{Detached, Out, Outbox},
        KeyError, Metrics,
    };

    /// A room's `LocalFanout` whose members are real `Outbox`es, each read by a plain
    /// bounded receiver instead of a socket writer.
    pub struct Fanout {
        sink: Arc<dyn EventSink>,
        queues: Vec<Detached>,
        metrics: Arc<Metrics>,
    }

    impl Fanout {
        /// `members` outboxes with the default queue limits.
        pub fn new(members: usize) -> Fanout {
            use crate::config::Parts as _;
            let limits = crate::Config::default().queue_limits();
            let metrics = Arc::new(Metrics::new());
            let mut queues = Vec::with_capacity(members);
            let mut outboxes = Vec::with_capacity(members);
            for i in 0..members {
                let (outbox, rx) = Outbox::detached(limits, metrics.clone());
                outboxes.push((UserId(format!("u_{i}")), outbox));
                queues.push(rx);
            }
            let sink = Fanout::local_sink(metrics.clone(), outboxes);
            Fanout {
                sink,
                queues,
                metrics,
            }
        }

        /// The LocalFanout, to subscribe to a broker.
        pub fn sink(&self) -> Arc<dyn EventSink> {
            self.sink.clone()
        }

        /// Empties every queue; returns the number of frames taken.
        pub fn drain(&mut self) -> usize {
            let mut n = 0;
            for rx in &mut self.queues {
                while let Some(out) = rx.try_recv() {
                    n += match out {
                        Out::Frame(_) => 1,
                        Out::Batch(b) => crate::ws::frames_of(&b).len(),
                        _ => 0,
                    };
                }
            }
            n
        }

        /// Outboxes evicted because their queue was full (should stay 0).
        pub fn evicted(&self) -> u64 {
            self.metrics.slow_consumer_disconnects.get()
        }
    }

    /// The pod's Ed25519 keyring, for access-token issue and verify.
    pub struct Keys(Keyring);

    impl Keys {
        /// Generates a signing key under `dir/keys` (or reuses one there).
        pub fn generate(dir: &Path) -> Result<Keys, KeyError> {
            Keyring::load(Path::new(""), &[], dir).map(Keys)
        }

        /// Signs an access token.
        pub fn issue_access(
            &self,
            user: &str,
            name: &str,
            role: GlobalRole,
            ttl_secs: u64,
        ) -> String {
            self.0
                .issue(TokenKind::Access, user, name, role, ttl_secs, None)
                .0
        }

        /// Whether `token` is a valid access token (signature, alg, kid, expiry, type),
        /// checked in full: the verified-token cache is bypassed.
        pub fn verify_access(&self, token: &str) -> bool {
            self.0.verify_signed(token, TokenKind::Access).is_ok()
        }
    }
}
