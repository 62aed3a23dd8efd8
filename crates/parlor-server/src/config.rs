//! The pod's Config is parlor-config's; here is what the server makes of it: the settings
//! of the cluster backend and the store, and each socket's queue limits.

use std::time::Duration;

pub use parlor_config::{service_link_vars, Config, ConfigError, GuardConfig, OidcProvider};

/// The parts of the server a Config sets up.
pub(crate) trait Parts {
    fn cluster_settings(&self) -> parlor_cluster::Settings;
    fn store_settings(&self) -> parlor_store::Settings;
    fn chat_retention(&self) -> parlor_store::ChatRetention;
    fn queue_limits(&self) -> crate::ws::QueueLimits;
}

impl Parts for Config {
    /// The cluster backend's settings.
    fn cluster_settings(&self) -> parlor_cluster::Settings {
        parlor_cluster::Settings {
            kind: self.cluster.kind.clone(),
            redis_mode: self.cluster.redis_mode.clone(),
            redis_url: self.cluster.redis_url.clone(),
            redis_urls: self.cluster.redis_urls.clone(),
            key_prefix: self.cluster.key_prefix.clone(),
            pod: self.server.pod_name.clone(),
            lease: std::time::Duration::from_millis(self.cluster.lease_ms),
            retention: parlor_cluster::Retention {
                count: self.cluster.history_events,
                age: std::time::Duration::from_secs(self.cluster.history_secs),
            },
            probe_every: std::time::Duration::from_millis(self.cluster.probe_ms.max(50)),
            wait_replicas: self
                .cluster
                .wait_replicas
                .unwrap_or(u32::from(self.cluster.redis_mode == "cluster")),
            wait: std::time::Duration::from_millis(self.cluster.wait_ms.max(1)),
        }
    }

    /// Which store to open.
    fn store_settings(&self) -> parlor_store::Settings {
        match self.store.kind.as_str() {
            "mongodb" => parlor_store::Settings::MongoDb(parlor_store::MongoOptions {
                uri: self.store.mongodb_uri.clone(),
                database: self.store.database.clone(),
                pool_size: self.store.pool_size,
            }),
            _ => parlor_store::Settings::Embedded(self.server.data_dir.join("parlor.redb")),
        }
    }

    /// How much chat history the store keeps.
    fn chat_retention(&self) -> parlor_store::ChatRetention {
        parlor_store::ChatRetention {
            max_lines: self.store.chat_retain_lines,
            max_age_secs: self.store.chat_retain_days.saturating_mul(86_400),
        }
    }

    fn queue_limits(&self) -> crate::ws::QueueLimits {
        crate::ws::QueueLimits {
            soft_bytes: self.ws.outbound_soft_bytes,
            soft_for: Duration::from_millis(self.ws.outbound_soft_ms),
            hard_bytes: self.ws.outbound_hard_bytes,
        }
    }
}
