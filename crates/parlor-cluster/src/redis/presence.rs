//! Presence on Redis.
//!
//! - `P:pods`: every pod, scored by when its registration lapses.
//! - `P:user:{U}:sessions`: hash, session id to pod, per user.
//! - `P:pod:{POD}:sessions`: set of `user<TAB>session`, so that a dead pod's sessions can be
//!   swept without scanning every user.

use std::time::Duration;

use parlor_core::{now_ms, UserId};
use redis::AsyncCommands;

use super::RedisBackend;
use crate::{BoxFuture, PodInfo, Presence, Result};

impl RedisBackend {
    fn pods_key(&self) -> String {
        format!("{}:pods", self.keys.prefix)
    }

    fn user_sessions(&self, user: &UserId) -> String {
        format!("{}:user:{{{user}}}:sessions", self.keys.prefix)
    }

    fn pod_sessions(&self, pod: &str) -> String {
        format!("{}:pod:{{{pod}}}:sessions", self.keys.prefix)
    }
}

impl Presence for RedisBackend {
    fn heartbeat(&self, pod: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>> {
        let pod = pod.to_owned();
        Box::pin(async move {
            let until = now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
            // ZADD answers how many members it added: 1 when the pod was not listed.
            let r: std::result::Result<i64, _> =
                self.con().zadd(self.pods_key(), &pod, until).await;
            Ok(self.seen(r)? == 1)
        })
    }

    fn online(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>> {
        let (user, session, pod) = (user.clone(), session.to_owned(), pod.to_owned());
        Box::pin(async move {
            let r: std::result::Result<(), _> = redis::pipe()
                .hset(self.user_sessions(&user), &session, &pod)
                .ignore()
                .sadd(self.pod_sessions(&pod), format!("{user}\t{session}"))
                .ignore()
                .query_async(&mut self.con())
                .await;
            self.seen(r)
        })
    }

    fn offline(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>> {
        let (user, session, pod) = (user.clone(), session.to_owned(), pod.to_owned());
        Box::pin(async move {
            let r: std::result::Result<(), _> = redis::pipe()
                .hdel(self.user_sessions(&user), &session)
                .ignore()
                .srem(self.pod_sessions(&pod), format!("{user}\t{session}"))
                .ignore()
                .query_async(&mut self.con())
                .await;
            self.seen(r)
        })
    }

    fn sessions(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        let user = user.clone();
        Box::pin(async move {
            let r: std::result::Result<Vec<(String, String)>, _> =
                self.con().hgetall(self.user_sessions(&user)).await;
            let all = self.seen(r)?;
            let live: Vec<String> = self.pods().await?.into_iter().map(|p| p.name).collect();
            Ok(all
                .into_iter()
                .filter(|(_, pod)| live.contains(pod))
                .collect())
        })
    }

    fn pods(&self) -> BoxFuture<'_, Result<Vec<PodInfo>>> {
        Box::pin(async move {
            // Scores come back as doubles on RESP3.
            let r: std::result::Result<Vec<(String, f64)>, _> = self
                .con()
                .zrangebyscore_withscores(self.pods_key(), now_ms(), "+inf")
                .await;
            let pods = self.seen(r)?;
            let mut pipe = redis::pipe();
            for (name, _) in &pods {
                pipe.scard(self.pod_sessions(name));
            }
            let r: std::result::Result<Vec<usize>, _> = pipe.query_async(&mut self.con()).await;
            let counts = if pods.is_empty() {
                Vec::new()
            } else {
                self.seen(r)?
            };
            let mut out: Vec<PodInfo> = pods
                .into_iter()
                .zip(counts)
                .map(|((name, until), sessions)| PodInfo {
                    name,
                    expires_at_ms: until as i64,
                    sessions,
                })
                .collect();
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        })
    }

    fn sweep(&self) -> BoxFuture<'_, Result<usize>> {
        Box::pin(async move {
            let r: std::result::Result<Vec<String>, _> = self
                .con()
                .zrangebyscore(self.pods_key(), "-inf", now_ms())
                .await;
            let mut swept = 0;
            for pod in self.seen(r)? {
                let r: std::result::Result<Vec<String>, _> =
                    self.con().smembers(self.pod_sessions(&pod)).await;
                let members = self.seen(r)?;
                // Three steps, each awaited, because on a Redis Cluster one pipeline's
                // slots land in any order. The pod leaves `P:pods` last, so its next
                // heartbeat reports it fresh and it lists its sessions again only after
                // every delete of this sweep has landed.
                let mut pipe = redis::pipe();
                for m in &members {
                    if let Some((user, session)) = m.split_once('\t') {
                        pipe.hdel(self.user_sessions(&UserId(user.to_owned())), session)
                            .ignore();
                    }
                }
                if !members.is_empty() {
                    let r: std::result::Result<(), _> = pipe.query_async(&mut self.con()).await;
                    self.seen(r)?;
                }
                let r: std::result::Result<(), _> = self.con().del(self.pod_sessions(&pod)).await;
                self.seen(r)?;
                let r: std::result::Result<(), _> = self.con().zrem(self.pods_key(), &pod).await;
                self.seen(r)?;
                swept += members.len();
            }
            Ok(swept)
        })
    }
}
