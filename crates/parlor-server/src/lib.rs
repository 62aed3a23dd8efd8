//! The Parlor pod: actix actors, HTTP and WebSocket routes, auth, config and metrics.
//!
//! - `config`: the typed Config (file < env < CLI).
//! - `server`: `run(config, listeners, shutdown)`, the one entry point; wires everything.
//! - `ws`: one actor per WebSocket (`session`) and its bounded outbound queue (`outbox`).
//! - `rooms`: RoomManager (lifecycle, lookup) and one RoomActor per room on sharded arbiters.
//! - `users`: UserManager (accounts, token checks) over the Store.
//! - `connections`: ConnectionManager (local sessions, private messages, drain).
//! - `stats`: StatsTracker, batching activity counters into the Store.
//! - `http`: REST under /api/v1, JWKS, and the admin routes.
//! - `auth`, `error`, `metrics`, `telemetry`: the supporting pieces.

mod auth;
mod config;
mod connections;
mod error;
mod http;
mod metrics;
mod rooms;
mod server;
mod stats;
mod telemetry;
mod users;
mod ws;

pub use auth::{generate_pem, mint_token, write_private, KeyError};
pub use config::{Config, ConfigError};
pub use error::{ApiError, ApiResult};
pub use metrics::Metrics;
pub use server::{run, Listeners};
pub use telemetry::{init_logging, init_sentry};
