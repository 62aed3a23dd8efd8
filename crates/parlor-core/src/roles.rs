use parlor_protocol::v1;
use serde::{Deserialize, Serialize};

/// An account's role across the whole cluster, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalRole {
    /// Not authenticated.
    Visitor,
    /// A throwaway account made from a display name.
    Guest,
    /// A registered account.
    User,
    /// May moderate any room.
    Moderator,
    /// May do anything, including issuing magic login codes.
    Admin,
}

impl GlobalRole {
    /// Every role, weakest first.
    pub const ALL: [GlobalRole; 5] = [
        GlobalRole::Visitor,
        GlobalRole::Guest,
        GlobalRole::User,
        GlobalRole::Moderator,
        GlobalRole::Admin,
    ];

    /// Parses the lowercase name used in tokens and config.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The lowercase name used in tokens and config.
    pub fn as_str(self) -> &'static str {
        match self {
            GlobalRole::Visitor => "visitor",
            GlobalRole::Guest => "guest",
            GlobalRole::User => "user",
            GlobalRole::Moderator => "moderator",
            GlobalRole::Admin => "admin",
        }
    }

    /// True for moderators and admins.
    pub fn is_staff(self) -> bool {
        self >= GlobalRole::Moderator
    }

    /// From the wire enum; None for an unknown or unspecified value.
    pub fn from_proto(wire: i32) -> Option<GlobalRole> {
        Some(match v1::GlobalRole::try_from(wire).ok()? {
            v1::GlobalRole::Visitor => GlobalRole::Visitor,
            v1::GlobalRole::Guest => GlobalRole::Guest,
            v1::GlobalRole::User => GlobalRole::User,
            v1::GlobalRole::Moderator => GlobalRole::Moderator,
            v1::GlobalRole::Admin => GlobalRole::Admin,
            v1::GlobalRole::Unspecified => return None,
        })
    }

    /// The wire enum.
    pub fn to_proto(self) -> v1::GlobalRole {
        match self {
            GlobalRole::Visitor => v1::GlobalRole::Visitor,
            GlobalRole::Guest => v1::GlobalRole::Guest,
            GlobalRole::User => v1::GlobalRole::User,
            GlobalRole::Moderator => v1::GlobalRole::Moderator,
            GlobalRole::Admin => v1::GlobalRole::Admin,
        }
    }
}

/// A member's role inside one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoomRole {
    /// Created the room; may update and moderate it.
    Owner,
    /// Plays: sends game events.
    Player,
    /// Watches: receives everything, sends no game events.
    Watcher,
}

impl RoomRole {
    /// Every room role.
    pub const ALL: [RoomRole; 3] = [RoomRole::Owner, RoomRole::Player, RoomRole::Watcher];

    /// The wire enum.
    pub fn to_proto(self) -> v1::RoomRole {
        match self {
            RoomRole::Owner => v1::RoomRole::Owner,
            RoomRole::Player => v1::RoomRole::Player,
            RoomRole::Watcher => v1::RoomRole::Watcher,
        }
    }

    /// The role a join request asks for; unspecified means player.
    pub fn requested(wire: i32) -> RoomRole {
        match v1::RoomRole::try_from(wire) {
            Ok(v1::RoomRole::Watcher) => RoomRole::Watcher,
            _ => RoomRole::Player,
        }
    }
}
