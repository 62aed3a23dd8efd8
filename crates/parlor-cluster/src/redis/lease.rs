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
            let claim = &self.scripts.claim;
            let keys = [
                self.keys.room(&room, "lease"),
                self.keys.room(&room, "epoch"),
            ];
            let ms = (self.opts.lease.as_millis().max(1) as u64).to_string();
            let r: std::result::Result<String, _> = claim
                .run(&mut self.con(), claim.call(&keys, &[pod.as_str(), &ms]))
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
            if held.is_empty() {
                return Ok(Vec::new());
            }
            let ms = (self.opts.lease.as_millis().max(1) as u64).to_string();
            let renew = &self.scripts.renew;
            let calls: Vec<redis::Cmd> = held
                .iter()
                .map(|(room, lease)| {
                    let token = lease.token();
                    renew.call(&[self.keys.room(room, "lease")], &[token.as_str(), &ms])
                })
                .collect();
            let pipe = |body: bool| {
                let mut pipe = redis::pipe();
                for c in &calls {
                    pipe.add_command(if body { renew.with_body(c) } else { c.clone() });
                }
                pipe
            };
            let mut con = self.con();
            let r: std::result::Result<Vec<i64>, _> = match pipe(false).query_async(&mut con).await
            {
                // A Redis that lost the script: the whole renewal again, with the body.
                Err(e) if super::scripts::no_script(&e) => pipe(true).query_async(&mut con).await,
                r => r,
            };
            Ok(self.seen(r)?.into_iter().map(|v| v == 1).collect())
        })
    }

    fn release(&self, room: &RoomId, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        let (room, lease) = (room.clone(), lease.clone());
        Box::pin(async move {
            checked(&room)?;
            let release = &self.scripts.release;
            let call = release.call(&[self.keys.room(&room, "lease")], &[lease.token()]);
            let r: std::result::Result<i64, _> = release.run(&mut self.con(), call).await;
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
