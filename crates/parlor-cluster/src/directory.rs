use std::{
    collections::HashMap,
    sync::{RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use parlor_core::{Room, RoomId};
use parlor_protocol::v1::RoomSummary;

use crate::{ready, BoxFuture, Result};

/// RoomDirectory is responsible for the shared view of every live room: info, settings,
/// members, bans and mutes. The pod that runs a room writes it through after each change.
pub trait RoomDirectory: Send + Sync + 'static {
    /// Inserts or replaces a room.
    fn put(&self, room: &Room) -> BoxFuture<'_, Result<()>>;
    /// The room with this id.
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
    /// The oldest public, password-less room of `kind` with a free seat.
    fn find_open(&self, kind: &str) -> BoxFuture<'_, Result<Option<RoomId>>>;
}

/// The single-pod directory.
#[derive(Default)]
pub struct MemoryDirectory {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    rooms: HashMap<RoomId, Room>,
    codes: HashMap<String, RoomId>,
}

impl MemoryDirectory {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn public_sorted<'a>(inner: &'a Inner, kind: Option<&str>) -> Vec<&'a Room> {
        let mut rooms: Vec<&Room> = inner
            .rooms
            .values()
            .filter(|r| r.info.public && kind.is_none_or(|k| r.info.kind == k))
            .collect();
        rooms.sort_by(|a, b| {
            (a.info.created_at_ms, &a.info.id).cmp(&(b.info.created_at_ms, &b.info.id))
        });
        rooms
    }
}

impl RoomDirectory for MemoryDirectory {
    fn put(&self, room: &Room) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.write();
        inner
            .codes
            .insert(room.info.code.to_ascii_uppercase(), room.info.id.clone());
        inner.rooms.insert(room.info.id.clone(), room.clone());
        ready(Ok(()))
    }

    fn get(&self, id: &RoomId) -> BoxFuture<'_, Result<Option<Room>>> {
        ready(Ok(self.read().rooms.get(id).cloned()))
    }

    fn find_code(&self, code: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        ready(Ok(self
            .read()
            .codes
            .get(&code.to_ascii_uppercase())
            .cloned()))
    }

    fn remove(&self, id: &RoomId) -> BoxFuture<'_, Result<()>> {
        let mut inner = self.write();
        if let Some(room) = inner.rooms.remove(id) {
            inner.codes.remove(&room.info.code.to_ascii_uppercase());
        }
        ready(Ok(()))
    }

    fn list(
        &self,
        kind: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> BoxFuture<'_, Result<(Vec<RoomSummary>, usize)>> {
        let inner = self.read();
        let rooms = Self::public_sorted(&inner, kind);
        let total = rooms.len();
        let page = rooms
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(Room::summary)
            .collect();
        ready(Ok((page, total)))
    }

    fn find_open(&self, kind: &str) -> BoxFuture<'_, Result<Option<RoomId>>> {
        let inner = self.read();
        let found = Self::public_sorted(&inner, Some(kind))
            .into_iter()
            .find(|r| r.info.password.is_empty() && !r.is_full() && r.settings.allow_guests)
            .map(|r| r.info.id.clone());
        ready(Ok(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_core::Limits;
    use parlor_protocol::v1;

    fn room(id: &str, code: &str, kind: &str, public: bool, at: i64) -> Room {
        let req = v1::CreateRoom {
            name: id.into(),
            kind: kind.into(),
            visibility: if public {
                v1::Visibility::Public
            } else {
                v1::Visibility::Private
            } as i32,
            max_members: 1,
            ..Default::default()
        };
        Room::create(
            id.into(),
            code.into(),
            &req,
            "o".into(),
            &Limits::default(),
            at,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn lookup_list_and_find_open() {
        let d = MemoryDirectory::default();
        d.put(&room("a", "AAAAAA", "piano", true, 1)).await.unwrap();
        d.put(&room("b", "BBBBBB", "cards", true, 2)).await.unwrap();
        d.put(&room("c", "CCCCCC", "piano", false, 3))
            .await
            .unwrap();
        d.put(&room("d", "DDDDDD", "piano", true, 4)).await.unwrap();
        assert_eq!(d.find_code("bbbbbb").await.unwrap(), Some("b".into()));
        let (page, total) = d.list(Some("piano"), 0, 1).await.unwrap();
        assert_eq!((page.len(), total), (1, 2));
        assert_eq!(page[0].id, "a");
        let (page, _) = d.list(None, 1, 10).await.unwrap();
        assert_eq!(
            page.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["b", "d"]
        );

        let mut full = room("a", "AAAAAA", "piano", true, 1);
        full.members.push(parlor_core::MemberState {
            user_id: "x".into(),
            name: "x".into(),
            global: parlor_core::GlobalRole::User,
            role: parlor_core::RoomRole::Player,
            status: 1,
            cursor: (0.0, 0.0),
            order: 0,
        });
        d.put(&full).await.unwrap();
        assert_eq!(d.find_open("piano").await.unwrap(), Some("d".into()));
        d.remove(&"d".into()).await.unwrap();
        assert_eq!(d.find_open("piano").await.unwrap(), None);
        assert_eq!(d.find_code("DDDDDD").await.unwrap(), None);
    }
}
