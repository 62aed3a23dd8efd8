//! The `parlor` binary: parses flags, binds, and calls `parlor_server::run`.
//!
//! - `parlor serve` (the default): run a pod.
//! - `parlor keygen`: write an Ed25519 key pair as PKCS#8 / SPKI PEM.
//! - `parlor token`: mint an access token for an existing account (ops and tests).
//! - `parlor verify`: check a room's history export against its revealed seeds.
//! - `parlor bench`: the load generator (see docs/benchmarks.md), in builds with the
//!   `loadgen` feature (the default; release images leave it out).

mod verify;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use parlor_server::Config;
use serde::Serialize;

#[derive(Parser)]
#[command(name = "parlor", version, about = "Parlor: a multiplayer game server")]
struct Cli {
    /// Config file; `parlor.toml` in the working directory is read if it exists.
    #[arg(long, global = true, env = "PARLOR_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pod (the default).
    Serve(ServeArgs),
    /// Write a new Ed25519 signing key pair.
    Keygen {
        /// Directory for signing.pem (private, PKCS#8) and signing.pub.pem (public, SPKI).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Probe a running pod's admin port, for a container HEALTHCHECK: exits 0 when
    /// /health/live (or, with --ready, /health/ready) answers 200, else 1.
    Health {
        /// Check readiness instead of liveness.
        #[arg(long)]
        ready: bool,
        /// The admin address; by default the configured `server.admin_addr` on loopback.
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
    },
    /// Run a bounded load scenario against pods (or redis-server, for the baseline).
    #[cfg(feature = "loadgen")]
    Bench(Box<parlor_bench::BenchArgs>),
    /// Mint an access token for an existing account, signed with the configured key.
    Token {
        /// The account id (`u_...`).
        #[arg(long)]
        user: String,
        /// Display name to put in the token.
        #[arg(long, default_value = "ops")]
        name: String,
        /// Global role: guest, user, moderator or admin.
        #[arg(long, default_value = "user")]
        role: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 900)]
        ttl: u64,
    },
    /// Check a room's history export: every revealed seed against its commitment, and
    /// every roll and card its seed covers (docs/games.md). Exits 1 on a mismatch.
    Verify {
        /// The export (JSON Lines from GET /rooms/{id}/messages/export).
        export: PathBuf,
        /// The card table's deck, one face per line; the standard deck if not given.
        #[arg(long)]
        deck: Option<PathBuf>,
        /// The dice room's max_dice, if it set one.
        #[arg(long, default_value_t = 100)]
        max_dice: u32,
        /// The dice room's max_sides, if it set one.
        #[arg(long, default_value_t = 1000)]
        max_sides: u32,
        /// The dice room's max_explode, if it set one.
        #[arg(long, default_value_t = 20)]
        max_explode: u32,
        /// The seed commitment you saw before the first draw (GameView.fairness): the
        /// first reveal must answer it.
        #[arg(long)]
        commitment: Option<String>,
    },
}

/// CLI flags that override file and env settings.
#[derive(Args, Default, Serialize)]
struct ServeArgs {
    /// Public listener (REST and /ws).
    #[arg(long)]
    #[serde(skip)]
    public_addr: Option<SocketAddr>,
    /// Admin listener (/metrics, /health).
    #[arg(long)]
    #[serde(skip)]
    admin_addr: Option<SocketAddr>,
    /// Data directory.
    #[arg(long)]
    #[serde(skip)]
    data_dir: Option<PathBuf>,
    /// Log format: json or pretty.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
}

#[derive(Serialize)]
struct Overrides<'a> {
    #[serde(flatten)]
    top: &'a ServeArgs,
    server: serde_json::Map<String, serde_json::Value>,
}

fn load(config: Option<&PathBuf>, args: &ServeArgs) -> anyhow::Result<Config> {
    let mut server = serde_json::Map::new();
    if let Some(a) = args.public_addr {
        server.insert("public_addr".into(), a.to_string().into());
    }
    if let Some(a) = args.admin_addr {
        server.insert("admin_addr".into(), a.to_string().into());
    }
    if let Some(d) = &args.data_dir {
        server.insert("data_dir".into(), d.display().to_string().into());
    }
    let (file, required) = match config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from("parlor.toml"), false),
    };
    Ok(Config::load(
        &file,
        required,
        Overrides { top: args, server },
    )?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => serve(load(cli.config.as_ref(), &args)?),
        #[cfg(feature = "loadgen")]
        Command::Bench(args) => parlor_bench::main(*args),
        Command::Health { ready, addr } => {
            let addr = match addr {
                Some(a) => a,
                None => {
                    let mut a = load(cli.config.as_ref(), &ServeArgs::default())?
                        .server
                        .admin_addr;
                    if a.ip().is_unspecified() {
                        a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                    a
                }
            };
            health(addr, ready)
        }
        Command::Keygen { out } => {
            std::fs::create_dir_all(&out)?;
            let (private, public) = parlor_server::generate_pem()?;
            parlor_server::write_private(&out.join("signing.pem"), &private)?;
            std::fs::write(out.join("signing.pub.pem"), public)?;
            println!("wrote {}/signing.pem and signing.pub.pem", out.display());
            Ok(())
        }
        Command::Token {
            user,
            name,
            role,
            ttl,
        } => {
            let cfg = load(cli.config.as_ref(), &ServeArgs::default())?;
            let token = parlor_server::mint_token(&cfg, &user, &name, &role, ttl)?;
            println!("{token}");
            Ok(())
        }
        Command::Verify {
            export,
            deck,
            max_dice,
            max_sides,
            max_explode,
            commitment,
        } => {
            let limits = parlor_games::dice::DiceLimits {
                max_dice,
                max_sides,
                max_explode,
            };
            verify::run(&export, deck.as_deref(), limits, commitment.as_deref()).map(drop)
        }
    }
}

/// One GET on the admin port, with a deadline: a hung pod fails the check too.
fn health(addr: std::net::SocketAddr, ready: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let path = if ready {
        "/health/ready"
    } else {
        "/health/live"
    };
    let limit = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, limit)?;
    s.set_read_timeout(Some(limit))?;
    s.set_write_timeout(Some(limit))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut status = [0u8; 12];
    s.read_exact(&mut status)?;
    match &status[9..] {
        b"200" => Ok(()),
        other => anyhow::bail!(
            "{path} on {addr} answered {}",
            String::from_utf8_lossy(other)
        ),
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    // Sentry first, so that it sees panics from every thread the System starts.
    let _sentry = parlor_server::init_sentry(&cfg);
    parlor_server::init_logging(&cfg);
    let skipped = parlor_server::service_link_vars();
    if !skipped.is_empty() {
        tracing::info!(vars = ?skipped, "skipped Kubernetes service-link variables; they are not config (set enableServiceLinks: false to drop them)");
    }
    let public = std::net::TcpListener::bind(cfg.server.public_addr)
        .with_context(|| format!("server.public_addr {}", cfg.server.public_addr))?;
    let admin = std::net::TcpListener::bind(cfg.server.admin_addr)
        .with_context(|| format!("server.admin_addr {}", cfg.server.admin_addr))?;
    let listeners = parlor_server::Listeners { public, admin };
    actix_web::rt::System::new().block_on(parlor_server::run(cfg, listeners, shutdown_signal()))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
