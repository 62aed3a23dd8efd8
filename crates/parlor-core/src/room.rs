//! Room state that every pod agrees on: info, settings, members, bans and mutes.

use std::collections::BTreeSet;

use parlor_protocol::{v1, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::{
    check, validate_kind, validate_name, Action, CoreError, GlobalRole, Limits, RoomId, RoomPolicy,
    RoomRole, UserId,
};

/// Members a room holds unless its creator says otherwise.
pub const DEFAULT_MAX_MEMBERS: u32 = 16;
const DEFAULT_EVENT_RATE: u32 = 50;

/// What a room is, as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// Stable id.
    pub id: RoomId,
    /// Short code people type to join.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Game kind ("piano", "cards", ...).
    pub kind: String,
    /// Listed and joinable without the code.
    pub public: bool,
    /// Empty when the room has none; else its keyed hash, which the pod checks (the
    /// server's `RoomPasswords`). Never the password itself, and never sent to clients.
    pub password: String,
    /// Most members at once (owner, players and watchers together).
    pub max_members: u32,
    /// The account that owns the room.
    pub owner_id: UserId,
    /// Outlives its last member and a restart.
    pub persistent: bool,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// What a server-run game says about itself in listings ("round 2"); set by the game.
    #[serde(default)]
    pub status: String,
    /// A server-run room's `CreateRoom.game`, protobuf in base64, so that a game that must
    /// start again (no checkpoint left) starts as it was configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_config: Option<String>,
    /// The tournament pairing this room plays, if any: set by the server, never a client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tournament: Option<TournamentSlot>,
}

/// A tournament's pairing: the tournament, the round and the pairing's index in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TournamentSlot {
    pub id: String,
    pub round: u32,
    pub index: u32,
}

/// A room's resolved settings (every field has its value). Stored: a field missing from
/// an older record takes its default (docs/storage.md, the compatibility rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomSettings {
    /// Chat is on.
    pub allow_chat: bool,
    /// Guests may join; visitors may watch when the room is public.
    pub allow_guests: bool,
    /// Only the owner sends game events.
    pub owner_only_play: bool,
    /// Only the owner chats.
    pub owner_only_chat: bool,
    /// Shown to each joiner.
    pub welcome_message: String,
    /// Chat lines plus game events per member per second.
    pub event_rate_limit: u32,
    /// A sender receives its own game events; when false it gets an Ack with the seq.
    pub echo_events: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            allow_chat: true,
            allow_guests: true,
            owner_only_play: false,
            owner_only_chat: false,
            welcome_message: String::new(),
            event_rate_limit: DEFAULT_EVENT_RATE,
            echo_events: true,
        }
    }
}

impl RoomSettings {
    /// Applies the fields a request sets, leaving the rest.
    pub fn merge(&mut self, req: &v1::RoomSettings, limits: &Limits) -> Result<(), CoreError> {
        if let Some(w) = &req.welcome_message {
            Limits::check_len("welcome message", w.len(), limits.text_field_bytes)?;
            self.welcome_message = w.clone();
        }
        if let Some(rate) = req.event_rate_limit {
            if !(1..=10_000).contains(&rate) {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "event_rate_limit must be 1 to 10000",
                ));
            }
            self.event_rate_limit = rate;
        }
        if let Some(v) = req.allow_chat {
            self.allow_chat = v;
        }
        if let Some(v) = req.allow_guests {
            self.allow_guests = v;
        }
        if let Some(v) = req.owner_only_play {
            self.owner_only_play = v;
        }
        if let Some(v) = req.owner_only_chat {
            self.owner_only_chat = v;
        }
        if let Some(v) = req.echo_events {
            self.echo_events = v;
        }
        Ok(())
    }

    /// The wire form, every field set.
    pub fn to_proto(&self) -> v1::RoomSettings {
        v1::RoomSettings {
            allow_chat: Some(self.allow_chat),
            allow_guests: Some(self.allow_guests),
            owner_only_play: Some(self.owner_only_play),
            owner_only_chat: Some(self.owner_only_chat),
            welcome_message: Some(self.welcome_message.clone()),
            event_rate_limit: Some(self.event_rate_limit),
            echo_events: Some(self.echo_events),
        }
    }
}

/// One member of a room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberState {
    /// The member's account (or visitor id).
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Cluster-wide role.
    pub global: GlobalRole,
    /// Role in this room.
    pub role: RoomRole,
    /// Wire presence status.
    pub status: i32,
    /// Last cursor position.
    pub cursor: (f32, f32),
    /// Orders members by when they joined (the seq of their join), so that a member list
    /// rebuilt from a checkpoint keeps its order.
    #[serde(default)]
    pub order: u64,
}

/// A room: info, settings, members (in join order), bans and mutes. Stored: everything
/// but `info` may be missing from an older record, and takes its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Room {
    /// What the room is.
    pub info: RoomInfo,
    /// How it behaves.
    #[serde(default)]
    pub settings: RoomSettings,
    /// Who is in it, oldest first.
    #[serde(default)]
    pub members: Vec<MemberState>,
    /// Accounts that may not join.
    #[serde(default)]
    pub bans: BTreeSet<UserId>,
    /// Accounts that may not chat.
    #[serde(default)]
    pub mutes: BTreeSet<UserId>,
}

fn visibility_public(wire: i32, default: bool) -> bool {
    match v1::Visibility::try_from(wire) {
        Ok(v1::Visibility::Public) => true,
        Ok(v1::Visibility::Private) => false,
        _ => default,
    }
}

impl Room {
    /// Builds a room from a create request; the creator is its owner (not yet a member).
    pub fn create(
        id: RoomId,
        code: String,
        req: &v1::CreateRoom,
        owner: UserId,
        limits: &Limits,
        now_ms: i64,
    ) -> Result<Room, CoreError> {
        let name = validate_name("room name", &req.name, limits.name_chars)?;
        validate_kind(&req.kind)?;
        Limits::check_len("password", req.password.len(), limits.text_field_bytes)?;
        let max_members = match req.max_members {
            0 => DEFAULT_MAX_MEMBERS,
            n if n <= limits.max_members => n,
            n => {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    format!("max_members {n} is over {}", limits.max_members),
                ))
            }
        };
        let mut settings = RoomSettings::default();
        if let Some(s) = &req.settings {
            settings.merge(s, limits)?;
        }
        Ok(Room {
            info: RoomInfo {
                id,
                code,
                name,
                kind: req.kind.clone(),
                public: visibility_public(req.visibility, true),
                password: req.password.clone(),
                max_members,
                owner_id: owner,
                persistent: req.persistent,
                created_at_ms: now_ms,
                status: String::new(),
                game_config: None,
                tournament: None,
            },
            settings,
            members: Vec::new(),
            bans: BTreeSet::new(),
            mutes: BTreeSet::new(),
        })
    }

    /// The settings permissions depend on.
    pub fn policy(&self) -> RoomPolicy {
        RoomPolicy {
            public: self.info.public,
            allow_chat: self.settings.allow_chat,
            allow_guests: self.settings.allow_guests,
            owner_only_play: self.settings.owner_only_play,
            owner_only_chat: self.settings.owner_only_chat,
        }
    }

    /// The member with this id.
    pub fn member(&self, user: &UserId) -> Option<&MemberState> {
        self.members.iter().find(|m| &m.user_id == user)
    }

    /// The member with this id, mutably.
    pub fn member_mut(&mut self, user: &UserId) -> Option<&mut MemberState> {
        self.members.iter_mut().find(|m| &m.user_id == user)
    }

    /// True when no seat is free.
    pub fn is_full(&self) -> bool {
        self.members.len() >= self.info.max_members as usize
    }

    /// Decides whether a non-member may join, and with which role. `password_ok` says
    /// whether the password given matched (true when the room has none).
    pub fn admit(
        &self,
        user: &UserId,
        global: GlobalRole,
        want: RoomRole,
        password_ok: bool,
    ) -> Result<RoomRole, CoreError> {
        let is_owner = &self.info.owner_id == user;
        let action = match want {
            RoomRole::Watcher => Action::JoinAsWatcher,
            _ => Action::JoinAsPlayer,
        };
        check(
            action,
            global,
            is_owner.then_some(RoomRole::Owner),
            &self.policy(),
        )?;
        // Staff are never locked out: an owner cannot ban the people who moderate owners.
        if self.bans.contains(user) && !global.is_staff() {
            return Err(CoreError::new(
                ErrorCode::Banned,
                "you are banned from this room",
            ));
        }
        let exempt = is_owner || global.is_staff();
        if !self.info.password.is_empty() && !exempt && !password_ok {
            return Err(CoreError::new(
                ErrorCode::WrongPassword,
                "wrong room password",
            ));
        }
        if self.is_full() {
            return Err(CoreError::new(ErrorCode::RoomFull, "the room is full"));
        }
        Ok(if is_owner {
            RoomRole::Owner
        } else if want == RoomRole::Watcher {
            RoomRole::Watcher
        } else {
            RoomRole::Player
        })
    }

    /// Removes a member. When the owner of a non-persistent room leaves, the oldest
    /// remaining player (or member) becomes owner; returns that member's new state.
    pub fn remove_member(&mut self, user: &UserId) -> (Option<MemberState>, Option<MemberState>) {
        let Some(pos) = self.members.iter().position(|m| &m.user_id == user) else {
            return (None, None);
        };
        let gone = self.members.remove(pos);
        let mut promoted = None;
        if gone.role == RoomRole::Owner && !self.info.persistent {
            let next = self
                .members
                .iter()
                .position(|m| m.role == RoomRole::Player)
                .or(if self.members.is_empty() {
                    None
                } else {
                    Some(0)
                });
            if let Some(i) = next {
                let m = &mut self.members[i];
                m.role = RoomRole::Owner;
                self.info.owner_id = m.user_id.clone();
                promoted = Some(m.clone());
            }
        }
        (Some(gone), promoted)
    }

    /// Applies an owner's update request.
    pub fn apply_update(&mut self, req: &v1::UpdateRoom, limits: &Limits) -> Result<(), CoreError> {
        let mut next = self.clone();
        if let Some(name) = &req.name {
            next.info.name = validate_name("room name", name, limits.name_chars)?;
        }
        next.info.public = visibility_public(req.visibility, next.info.public);
        if let Some(pw) = &req.password {
            Limits::check_len("password", pw.len(), limits.text_field_bytes)?;
            next.info.password = pw.clone();
        }
        if let Some(max) = req.max_members {
            if max == 0 || max > limits.max_members || (max as usize) < next.members.len() {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "max_members must cover the current members and stay within the limit",
                ));
            }
            next.info.max_members = max;
        }
        if let Some(s) = &req.settings {
            next.settings.merge(s, limits)?;
        }
        *self = next;
        Ok(())
    }

    /// The listing form.
    pub fn summary(&self) -> v1::RoomSummary {
        let i = &self.info;
        v1::RoomSummary {
            id: i.id.0.clone(),
            code: i.code.clone(),
            name: i.name.clone(),
            kind: i.kind.clone(),
            visibility: if i.public {
                v1::Visibility::Public
            } else {
                v1::Visibility::Private
            } as i32,
            member_count: self.members.len() as u32,
            max_members: i.max_members,
            has_password: !i.password.is_empty(),
            owner_id: i.owner_id.0.clone(),
            persistent: i.persistent,
            status: i.status.clone(),
        }
    }

    /// The wire form of one member.
    pub fn member_proto(&self, m: &MemberState) -> v1::Member {
        v1::Member {
            user_id: m.user_id.0.clone(),
            name: m.name.clone(),
            role: m.role.to_proto() as i32,
            status: m.status,
            cursor_x: m.cursor.0,
            cursor_y: m.cursor.1,
            muted: self.mutes.contains(&m.user_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_stored_before_echo_events_existed_still_load_with_echo_on() {
        let old = r#"{"allow_chat":true,"allow_guests":false,"owner_only_play":false,
            "owner_only_chat":false,"welcome_message":"hi","event_rate_limit":20}"#;
        let s: RoomSettings = serde_json::from_str(old).unwrap();
        assert!(s.echo_events);
        assert!(!s.allow_guests);
        assert_eq!(s.event_rate_limit, 20);
    }

    fn room(password: &str, max: u32) -> Room {
        let req = v1::CreateRoom {
            name: "Jam".into(),
            kind: "piano".into(),
            password: password.into(),
            max_members: max,
            ..Default::default()
        };
        Room::create(
            "r1".into(),
            "ABCDEF".into(),
            &req,
            "owner".into(),
            &Limits::default(),
            0,
        )
        .unwrap()
    }

    fn member(id: &str, role: RoomRole) -> MemberState {
        MemberState {
            user_id: id.into(),
            name: id.into(),
            global: GlobalRole::User,
            role,
            status: 1,
            cursor: (0.0, 0.0),
            order: 0,
        }
    }

    #[test]
    fn admission_rules() {
        let mut r = room("pw", 2);
        let u = GlobalRole::User;
        assert_eq!(
            r.admit(&"a".into(), u, RoomRole::Player, false)
                .unwrap_err()
                .code,
            ErrorCode::WrongPassword
        );
        assert_eq!(
            r.admit(&"a".into(), u, RoomRole::Player, true),
            Ok(RoomRole::Player)
        );
        assert_eq!(
            r.admit(&"owner".into(), u, RoomRole::Watcher, false),
            Ok(RoomRole::Owner)
        );
        r.members.push(member("owner", RoomRole::Owner));
        r.members.push(member("a", RoomRole::Player));
        assert_eq!(
            r.admit(&"b".into(), u, RoomRole::Player, true)
                .unwrap_err()
                .code,
            ErrorCode::RoomFull
        );
        r.bans.insert("c".into());
        r.members.pop();
        assert_eq!(
            r.admit(&"c".into(), u, RoomRole::Player, true)
                .unwrap_err()
                .code,
            ErrorCode::Banned
        );
    }

    #[test]
    fn owner_leaving_promotes_the_oldest_player() {
        let mut r = room("", 0);
        assert_eq!(r.info.max_members, DEFAULT_MAX_MEMBERS);
        r.members.push(member("owner", RoomRole::Owner));
        r.members.push(member("w", RoomRole::Watcher));
        r.members.push(member("p", RoomRole::Player));
        let (gone, promoted) = r.remove_member(&"owner".into());
        assert_eq!(gone.unwrap().user_id.0, "owner");
        assert_eq!(promoted.unwrap().user_id.0, "p");
        assert_eq!(r.info.owner_id.0, "p");
    }

    #[test]
    fn updates_are_all_or_nothing() {
        let mut r = room("", 4);
        let bad = v1::UpdateRoom {
            name: Some("New".into()),
            max_members: Some(0),
            ..Default::default()
        };
        assert!(r.apply_update(&bad, &Limits::default()).is_err());
        assert_eq!(r.info.name, "Jam");
        let good = v1::UpdateRoom {
            name: Some("New".into()),
            settings: Some(v1::RoomSettings {
                allow_chat: Some(false),
                ..Default::default()
            }),
            ..Default::default()
        };
        r.apply_update(&good, &Limits::default()).unwrap();
        assert_eq!(r.info.name, "New");
        assert!(!r.settings.allow_chat);
    }
}
