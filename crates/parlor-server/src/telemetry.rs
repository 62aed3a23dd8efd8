//! Logging (tracing, JSON by default) and Sentry.

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::Config;

/// Installs the global tracing subscriber; later calls are no-ops (tests start many pods).
pub fn init_logging(cfg: &Config) {
    let filter = EnvFilter::try_new(&cfg.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let sentry_on = !cfg.sentry_dsn.is_empty();
    let errors = sentry_on.then(sentry::integrations::tracing::ErrorLayer::new);
    let crumbs = sentry_on.then(sentry::integrations::tracing::BreadcrumbLayer::new);
    let registry = registry.with(errors).with(crumbs);
    let result = if cfg.log_format == "pretty" {
        registry.with(fmt::layer()).try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init()
    };
    let _ = result;
}

/// Starts Sentry when a DSN is configured. Call before the actix System starts and keep the
/// guard alive until exit, so that queued events are flushed.
pub fn init_sentry(cfg: &Config) -> Option<sentry::ClientInitGuard> {
    if cfg.sentry_dsn.is_empty() {
        return None;
    }
    let options = sentry::ClientOptions::new()
        .release(concat!("parlor@", env!("CARGO_PKG_VERSION")))
        .environment(cfg.sentry_environment.clone());
    // Validated here because ClientOptions::dsn panics on a bad value.
    if let Err(e) = cfg.sentry_dsn.parse::<sentry::types::Dsn>() {
        eprintln!("invalid sentry_dsn, Sentry disabled: {e}");
        return None;
    }
    Some(sentry::init(options.dsn(&cfg.sentry_dsn)))
}
