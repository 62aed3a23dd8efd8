use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use parlor_core::{Room, RoomId};
use parlor_protocol::v1::RoomSummary;

use crate::{ready, BoxFuture, Result};

/// RoomDirectory is responsible for finding rooms: by id, by code, in the public list, and
/// the oldest one of a kind with a free seat. It lists a room's info, settings and member
/// count; the members themselves live in the room's checkpoint.
pub trait RoomDirectory: Send + Sync + 'static {
    /// Registers a new room under its code, atomically: false, and nothing written, if
    /// the code is taken.
    fn create(&self, room: &Room) -> BoxFuture<'_, Result<bool>>;
    /// Updates a room's listing (info, settings, member count), never its members.
    fn put(&self, room: &Room) -> BoxFuture<'_, Result<()>>;
    /// The room as listed, without its members.
    fn get(&self, id: &RoomId) -> BoxFuture<'_, Result<Option<Room>>>;
    /// The id of the room with this short code (case-insensitive).
    fn find_code(&self, code: &str) -> BoxFuture<'_, Result<Option<RoomId>>>;
    /// Removes a room.
    fn remove(&self, id: &RoomId) -> BoxFuture<'_, Result<()>>;
    /// Public rooms, optionally of one kind, oldest first: one page and the total count.
    fn list(
        &self,
        kind: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<RoomSummary>, usize)>>;
    /// The oldest public, password-less room of `kind` with a free seat, that admits
    /// guests.
    fn find_open(&self, kind: &str) -> BoxFuture<'_, Result<Option<RoomId>>>;
    /// Takes a named lock for `owner` for at most `ttl`; false if someone else holds it.
    fn lock(&self, name: &str, owner: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>>;
    /// Releases a lock `owner` holds.
    fn unlock(&self, name: &str, owner: &str) -> BoxFuture<'_, Result<()>>;
}

/// Whether a listed room takes JoinOrCreate joiners.
pub(crate) fn is_open(room: &Room, members: usize) -> bool {
    room.info.public
        && room.info.password.is_empty()
        && room.settings.allow_guests
        && members < room.info.max_members as usize
}

/// A room as listed: without members, with their count.
pub(crate) fn listed(room: &Room) -> (Room, usize) {
    let mut r = room.clone();
    let n = std::mem::take(&mut r.members).len();
    (r, n)
}

/// The listing of a room with `members` members.
pub(crate) fn summary(room: &Room, members: usize) -> RoomSummary {
    let mut s = room.summary();
    s.member_count = members as u32;
    s
}

/// The single-pod directory.
#[derive(Default)]
pub struct MemoryDirectory {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, (Room, usize)>,
    codes: HashMap<String, RoomId>,
    locks: HashMap<String, (String, Instant)>,
}

impl MemoryDirectory {
    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn public_sorted<'a>(inner: &'a Inner, kind: Option<&str>) -> Vec<&'a (Room, usize)> {
        let mut rooms: Vec<&(Room, usize)> = inner
            .rooms
            .values()
            .filter(|(r, _)| r.info.public && kind.is_none_or(|k| r.info.kind == k))
            .collect();
        rooms.sort_by(|(a, _), (b, _)| {
            (a.info.created_at_ms, &a.info.id).cmp(&(b.info.created_at_ms, &b.info.id))
        });
        rooms
    }
}

impl RoomDirectory for MemoryDirectory {
    fn create(&self, room: &Room) -> BoxFuture<'_, Result<bool>> {
        let code = room.info.code.to_ascii_uppercase();
        let mut inner = self.lock_inner();
        if inner.codes.contains_key(&code) {
            return ready(Ok(false));
        }
        inner.codes.insert(code, room.info.id.clone());
        inner.rooms.insert(room.info.id.clone(), listed(room));
        ready(Ok(true))
    }

    fn put(&self, room: &Room) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.lock_inner();
        inner
            .codes
            .insert(room.info.code.to_ascii_uppercase(), room.info.id.clone());
        inner.rooms.insert(room.info.id.clone(), listed(room));
        ready(Ok(()))
    }

    fn get(&self, id: &RoomId) -> BoxFuture<'_, Result<Option<Room>>> {
        ready(Ok(self.lock_inner().rooms.get(id).map(|(r, _)| r.clone())))
    }

    fn find_code(&self, code: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        ready(Ok(self
            .lock_inner()
            .codes
            .get(&code.to_ascii_uppercase())
            .cloned()))
    }

    fn remove(&self, id: &RoomId) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.lock_inner();
        if let Some((room, _)) = inner.rooms.remove(id) {
            let code = room.info.code.to_ascii_uppercase();
            if inner.codes.get(&code) == Some(id) {
                inner.codes.remove(&code);
            }
        }
        ready(Ok(()))
    }

    fn list(
        &self,
        kind: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<RoomSummary>, usize)>> {
        let inner = self.lock_inner();
        let rooms = Self::public_sorted(&inner, kind);
        let total = rooms.len();
        let page = rooms
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(r, n)| summary(r, *n))
            .collect();
        ready(Ok((page, total)))
    }

    fn find_open(&self, kind: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        let inner = self.lock_inner();
        let found = Self::public_sorted(&inner, Some(kind))
            .into_iter()
            .find(|(r, n)| is_open(r, *n))
            .map(|(r, _)| r.info.id.clone());
        ready(Ok(found))
    }

    fn lock(&self, name: &str, owner: &str, ttl: Duration) -> BoxFuture<'_, Result<bool>> {
        let mut inner = self.lock_inner();
        let now = Instant::now();
        let free = match inner.locks.get(name) {
            Some((o, until)) => o == owner || *until <= now,
            None => true,
        };
        if free {
            inner
                .locks
                .insert(name.to_owned(), (owner.to_owned(), now + ttl));
        }
        ready(Ok(free))
    }

    fn unlock(&self, name: &str, owner: &str) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.lock_inner();
        if inner.locks.get(name).is_some_and(|(o, _)| o == owner) {
            inner.locks.remove(name);
        }
        ready(Ok(()))
    }
}
