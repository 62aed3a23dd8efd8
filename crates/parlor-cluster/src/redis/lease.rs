//! Home-pod leases on Redis.

use parlor_core::RoomId;
use redis::AsyncCommands;

use super::{checked, RedisBackend};
use crate::{BoxFuture, Claim, ClusterError, Lease, Leases, Result};

impl Leases for RedisBackend {
    fn claim(&self, room: &RoomId, pod: &str) -> BoxFuture<'_, Result<Claim>> {
        let (room, pod) = (room.clone(), pod.to_owned());
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<String, _> = self
                .scripts
                .claim
                .key(self.keys.room(&room, "lease"))
                .key(self.keys.room(&room, "epoch"))
                .arg(&pod)
                .arg(self.opts.lease.as_millis().max(1) as u64)
                .invoke_async(&mut self.con())
                .await;
            let token = self.seen(r)?;
            let lease = Lease::parse(&token)
                .ok_or_else(|| ClusterError::Unavailable(format!("bad lease {token:?}")))?;
            Ok(if *lease.pod == *pod {
                Claim::Home(lease)
            } else {
                Claim::Elsewhere(lease)
            })
        })
    }

    fn renew(&self, held: Vec<(RoomId, Lease)>) -> BoxFuture<'_, Result<Vec<bool>>> {
        Box::pin(async move {
            let ms = self.opts.lease.as_millis().max(1) as u64;
            let mut pipe = redis::pipe();
            for (room, lease) in &held {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts.renew.get_hash())
                    .arg(1)
                    .arg(self.keys.room(room, "lease"))
                    .arg(lease.token())
                    .arg(ms);
                pipe.add_command(cmd);
            }
            if held.is_empty() {
                return Ok(Vec::new());
            }
            // Renewal is the pod's heartbeat, so the scripts are loaded first: a pipeline
            // cannot fall back from EVALSHA by itself.
            let mut con = self.con();
            let loaded = self.scripts.renew.load_async(&mut con).await;
            self.seen(loaded)?;
            let r: std::result::Result<Vec<i64>, _> = pipe.query_async(&mut con).await;
            Ok(self.seen(r)?.into_iter().map(|v| v == 1).collect())
        })
    }

    fn release(&self, room: &RoomId, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        let (room, lease) = (room.clone(), lease.clone());
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<i64, _> = self
                .scripts
                .release
                .key(self.keys.room(&room, "lease"))
                .arg(lease.token())
                .invoke_async(&mut self.con())
                .await;
            self.seen(r).map(|_| ())
        })
    }

    fn holder(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Lease>>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<Option<String>, _> =
                self.con().get(self.keys.room(&room, "lease")).await;
            Ok(self.seen(r)?.as_deref().and_then(Lease::parse))
        })
    }
}
