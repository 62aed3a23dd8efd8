//! The room directory on Redis.
//!
//! - `P:code:CODE`: the room id a code names, taken with SET NX.
//! - `P:{R}:listing`: hash: `room` (JSON, without members) and `count` (members).
//! - `P:public`, `P:public:KIND`: public rooms, scored by creation time.
//! - `P:open:KIND`: public rooms of a kind that JoinOrCreate may fill, by creation time.
//! - `P:lock:NAME`: short locks (SET NX PX), so that racing pods create one room, not three.
//!
//! The sets are indexes over the listings, written after them: a stale entry (a room
//! removed mid-write) is skipped on read.

use std::{collections::HashMap, time::Duration};

use parlor_core::{Room, RoomId};
use parlor_protocol::v1::RoomSummary;
use redis::{AsyncCommands, Value};

use super::{checked, RedisBackend};
use crate::{
    directory::{is_open, listed, summary},
    BoxFuture, ClusterError, Result, RoomDirectory,
};

impl RedisBackend {
    fn code_key(&self, code: &str) -> String {
        format!("{}:code:{}", self.keys.prefix, code.to_ascii_uppercase())
    }

    fn index_key(&self, what: &str) -> String {
        format!("{}:{what}", self.keys.prefix)
    }

    /// The writes of a room's listing and its index entries.
    fn listing_pipe(&self, room: &Room) -> redis::Pipeline {
        let (bare, n) = listed(room);
        let id = room.info.id.as_str();
        let kind = &room.info.kind;
        let score = room.info.created_at_ms;
        let mut pipe = redis::pipe();
        pipe.hset_multiple(
            self.keys.room(&room.info.id, "listing"),
            &[
                ("room", serde_json::to_vec(&bare).unwrap_or_default()),
                ("count", n.to_string().into_bytes()),
            ],
        )
        .ignore();
        let (all, of_kind) = (
            self.index_key("public"),
            self.index_key(&format!("public:{kind}")),
        );
        if room.info.public {
            pipe.zadd(&all, id, score).ignore();
            pipe.zadd(&of_kind, id, score).ignore();
        } else {
            pipe.zrem(&all, id).ignore();
            pipe.zrem(&of_kind, id).ignore();
        }
        let open = self.index_key(&format!("open:{kind}"));
        if is_open(room, n) {
            pipe.zadd(&open, id, score).ignore();
        } else {
            pipe.zrem(&open, id).ignore();
        }
        pipe
    }

    /// Listings by id, in the given order; ids with none are left out.
    async fn listings(&self, ids: &[String]) -> Result<Vec<(Room, usize)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.room(&RoomId(id.clone()), "listing"));
        }
        let r: std::result::Result<Vec<HashMap<String, Vec<u8>>>, _> =
            pipe.query_async(&mut self.con()).await;
        let mut out = Vec::with_capacity(ids.len());
        for fields in self.seen(r)? {
            let (Some(room), Some(count)) = (fields.get("room"), fields.get("count")) else {
                continue;
            };
            let room: Room = serde_json::from_slice(room)
                .map_err(|e| ClusterError::Unavailable(format!("room listing: {e}")))?;
            let count = std::str::from_utf8(count)
                .ok()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            out.push((room, count));
        }
        Ok(out)
    }
}

impl RoomDirectory for RedisBackend {
    fn create(&self, room: &Room) -> BoxFuture<'_, Result<bool>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room.info.id)?;
            let r: std::result::Result<Value, _> = redis::cmd("SET")
                .arg(self.code_key(&room.info.code))
                .arg(room.info.id.as_str())
                .arg("NX")
                .query_async(&mut self.con())
                .await;
            if matches!(self.seen(r)?, Value::Nil) {
                return Ok(false);
            }
            let r: std::result::Result<(), _> =
                self.listing_pipe(&room).query_async(&mut self.con()).await;
            self.seen(r)?;
            Ok(true)
        })
    }

    fn put(&self, room: &Room) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room.info.id)?;
            let mut pipe = self.listing_pipe(&room);
            pipe.set(self.code_key(&room.info.code), room.info.id.as_str())
                .ignore();
            let r: std::result::Result<(), _> = pipe.query_async(&mut self.con()).await;
            self.seen(r)
        })
    }

    fn get(&self, id: &RoomId) -> BoxFuture<'_, Result<Option<Room>>> {
        let id = id.clone();
        Box::pin(async move {
            if checked(&id).is_err() {
                return Ok(None);
            }
            Ok(self
                .listings(std::slice::from_ref(&id.0))
                .await?
                .into_iter()
                .next()
                .map(|(r, _)| r))
        })
    }

    fn find_code(&self, code: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        let key = self.code_key(code);
        Box::pin(async move {
            let r: std::result::Result<Option<String>, _> = self.con().get(key).await;
            Ok(self.seen(r)?.map(RoomId))
        })
    }

    fn remove(&self, id: &RoomId) -> BoxFuture<'_, Result<()>> {
        let id = id.clone();
        Box::pin(async move {
            checked(&id)?;
            let Some((room, _)) = self
                .listings(std::slice::from_ref(&id.0))
                .await?
                .into_iter()
                .next()
            else {
                return Ok(());
            };
            let code = self.code_key(&room.info.code);
            let r: std::result::Result<Option<String>, _> = self.con().get(&code).await;
            let mut pipe = redis::pipe();
            if self.seen(r)?.as_deref() == Some(id.as_str()) {
                pipe.del(&code).ignore();
            }
            let kind = &room.info.kind;
            for index in [
                "public".to_owned(),
                format!("public:{kind}"),
                format!("open:{kind}"),
            ] {
                pipe.zrem(self.index_key(&index), id.as_str()).ignore();
            }
            pipe.del(self.keys.room(&id, "listing")).ignore();
            let r: std::result::Result<(), _> = pipe.query_async(&mut self.con()).await;
            self.seen(r)
        })
    }

    fn list(
        &self,
        kind: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<RoomSummary>, usize)>> {
        let index = match kind {
            Some(k) => self.index_key(&format!("public:{k}")),
            None => self.index_key("public"),
        };
        Box::pin(async move {
            if limit == 0 {
                let r: std::result::Result<usize, _> = self.con().zcard(&index).await;
                return Ok((Vec::new(), self.seen(r)?));
            }
            let stop = (offset + limit - 1) as isize;
            let r: std::result::Result<(Vec<String>, usize), _> = redis::pipe()
                .zrange(&index, offset as isize, stop)
                .zcard(&index)
                .query_async(&mut self.con())
                .await;
            let (ids, total) = self.seen(r)?;
            let page = self
                .listings(&ids)
                .await?
                .iter()
                .map(|(r, n)| summary(r, *n))
                .collect();
            Ok((page, total))
        })
    }

    fn find_open(&self, kind: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        let index = self.index_key(&format!("open:{kind}"));
        Box::pin(async move {
            // The oldest few, in case the first was removed since the index was read.
            let r: std::result::Result<Vec<String>, _> = self.con().zrange(&index, 0, 3).await;
            let ids = self.seen(r)?;
            Ok(self
                .listings(&ids)
                .await?
                .into_iter()
                .find(|(r, n)| is_open(r, *n))
                .map(|(r, _)| r.info.id))
        })
    }

    fn lock(&self, name: &str, owner: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>> {
        let key = self.index_key(&format!("lock:{name}"));
        let owner = owner.to_owned();
        Box::pin(async move {
            let r: std::result::Result<Value, _> = redis::cmd("SET")
                .arg(&key)
                .arg(&owner)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64)
                .query_async(&mut self.con())
                .await;
            if !matches!(self.seen(r)?, Value::Nil) {
                return Ok(true);
            }
            let r: std::result::Result<Option<String>, _> = self.con().get(&key).await;
            Ok(self.seen(r)?.as_deref() == Some(owner.as_str()))
        })
    }

    fn unlock(&self, name: &str, owner: &str) -> BoxFuture<'_, Result<()>> {
        let key = self.index_key(&format!("lock:{name}"));
        let owner = owner.to_owned();
        Box::pin(async move {
            let unlock = &self.scripts.unlock;
            let r: std::result::Result<Value, _> = unlock
                .run(&mut self.con(), unlock.call(&[&key], &[&owner]))
                .await;
            self.seen(r).map(|_| ())
        })
    }
}
