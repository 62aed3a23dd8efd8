//! A room as checkpoint fields, and back.
//!
//! The home pod writes the fields an event changed in the same atomic step as the event
//! (`Broker::publish`), so a checkpoint is always the room exactly as of its `seq`. Each
//! member is a field of its own, so a join writes one member, never the whole room.

use std::collections::HashMap;

use bytes::Bytes;
use parlor_core::{Room, UserId};

use crate::{ClusterError, Result, StateWrite};

const INFO: &str = "info";
const SETTINGS: &str = "settings";
const BANS: &str = "bans";
const MUTES: &str = "mutes";
const MEMBER: &str = "m:";
/// A server-run game's own checkpoint (parlor-games' `Host::checkpoint`), opaque here.
const GAME: &str = "game";

/// A room's checkpoint: its fields as of `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// The seq of the newest event the fields include (0 before the first).
    pub seq: u64,
    /// Field name to value.
    pub fields: HashMap<String, Bytes>,
}

/// A part of a room that an event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Name, owner, visibility and the rest of `RoomInfo`.
    Info,
    /// The settings.
    Settings,
    /// The ban list.
    Bans,
    /// The mute list.
    Mutes,
    /// One member: written if they are in the room, deleted if not.
    Member(UserId),
}

fn json<T: serde::Serialize>(v: &T) -> Bytes {
    // The room's types are plain data: serialising them cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

/// The writes that bring a checkpoint in line with `room` for the parts named.
pub fn writes(room: &Room, parts: &[Part]) -> Vec<StateWrite> {
    parts
        .iter()
        .map(|p| match p {
            Part::Info => StateWrite::Set(INFO.into(), json(&room.info)),
            Part::Settings => StateWrite::Set(SETTINGS.into(), json(&room.settings)),
            Part::Bans => StateWrite::Set(BANS.into(), json(&room.bans)),
            Part::Mutes => StateWrite::Set(MUTES.into(), json(&room.mutes)),
            Part::Member(u) => {
                let field = format!("{MEMBER}{u}");
                match room.member(u) {
                    Some(m) => StateWrite::Set(field, json(m)),
                    None => StateWrite::Del(field),
                }
            }
        })
        .collect()
}

/// The write of a server-run room's game state.
pub fn game(state: Vec<u8>) -> StateWrite {
    StateWrite::Set(GAME.into(), Bytes::from(state))
}

/// Every field of `room`, and of its server-run game if it has one, for a checkpoint
/// written whole (a new room, or a home that found its Redis emptied).
pub fn full(room: &Room, game: Option<Vec<u8>>) -> Vec<StateWrite> {
    let mut parts = vec![Part::Info, Part::Settings, Part::Bans, Part::Mutes];
    parts.extend(room.members.iter().map(|m| Part::Member(m.user_id.clone())));
    let mut w = writes(room, &parts);
    w.extend(game.map(self::game));
    w
}

fn parse<T: serde::de::DeserializeOwned>(field: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v)
        .map_err(|e| ClusterError::Unavailable(format!("checkpoint field {field}: {e}")))
}

impl Checkpoint {
    /// The room these fields describe; `None` when they hold no room.
    pub fn room(&self) -> Result<Option<Room>> {
        let Some(info) = self.fields.get(INFO) else {
            return Ok(None);
        };
        let mut room = Room {
            info: parse(INFO, info)?,
            settings: Default::default(),
            members: Vec::new(),
            bans: Default::default(),
            mutes: Default::default(),
        };
        for (k, v) in &self.fields {
            match k.as_str() {
                INFO | GAME => {}
                SETTINGS => room.settings = parse(k, v)?,
                BANS => room.bans = parse(k, v)?,
                MUTES => room.mutes = parse(k, v)?,
                m if m.starts_with(MEMBER) => room.members.push(parse(k, v)?),
                // A field from a newer pod: ignored, as the store's compatibility rule does.
                _ => {}
            }
        }
        room.members.sort_by_key(|m| m.order);
        Ok(Some(room))
    }

    /// The game state of a server-run room, if it has one.
    pub fn game(&self) -> Option<&Bytes> {
        self.fields.get(GAME)
    }

    /// Applies writes in order, as a broker does.
    pub fn apply(&mut self, writes: &[StateWrite]) {
        for w in writes {
            match w {
                StateWrite::Set(k, v) => {
                    self.fields.insert(k.clone(), v.clone());
                }
                StateWrite::Del(k) => {
                    self.fields.remove(k);
                }
            }
        }
    }
}
