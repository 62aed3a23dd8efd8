//! The one permission table. Every client action is decided by [`check`].

use parlor_protocol::ErrorCode;

use crate::{CoreError, GlobalRole, RoomRole};

/// Something a client asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// List public rooms.
    ListRooms,
    /// Create a room (and own it).
    CreateRoom,
    /// Join a room as a player.
    JoinAsPlayer,
    /// Join a room as a watcher.
    JoinAsWatcher,
    /// Change a room's settings.
    UpdateRoom,
    /// Say something in a room.
    Chat,
    /// Send a private message to one user.
    PrivateChat,
    /// Relay a game event to a room.
    SendGameEvent,
    /// Send an action to a server-run room's game. Any member may; the kind's own rules
    /// decide what each role may do (a moderator watching a match decides it).
    GameAction,
    /// Change one's own presence in a room.
    UpdatePresence,
    /// Remove a member from a room.
    Kick,
    /// Remove a member and keep them out.
    Ban,
    /// Stop a member from chatting.
    Mute,
    /// Let a muted member chat again.
    Unmute,
    /// Issue a one-time magic login code for any account.
    IssueMagicCode,
    /// Delete a room and its history.
    DeleteRoom,
    /// Read a room's chat history. For a non-member, `room` is Some(Owner) when it owns
    /// the room.
    ReadHistory,
    /// Read the audit log of moderation and admin actions, and the analytics stream.
    ReadAudit,
    /// List the cluster's pods.
    ReadCluster,
    /// Upload and read trivia question sets (they hold the answers).
    ManageQuestionSets,
}

impl Action {
    /// Every action, for tests and docs that walk the table.
    pub const ALL: [Action; 20] = [
        Action::ListRooms,
        Action::CreateRoom,
        Action::JoinAsPlayer,
        Action::JoinAsWatcher,
        Action::UpdateRoom,
        Action::Chat,
        Action::PrivateChat,
        Action::SendGameEvent,
        Action::GameAction,
        Action::UpdatePresence,
        Action::Kick,
        Action::Ban,
        Action::Mute,
        Action::Unmute,
        Action::IssueMagicCode,
        Action::DeleteRoom,
        Action::ReadHistory,
        Action::ReadAudit,
        Action::ReadCluster,
        Action::ManageQuestionSets,
    ];
}

/// The room settings that permissions depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPolicy {
    /// The room is listed and joinable without an invitation.
    pub public: bool,
    /// Chat is on.
    pub allow_chat: bool,
    /// Guests may join, and visitors may watch if the room is public.
    pub allow_guests: bool,
    /// Only the owner sends game events.
    pub owner_only_play: bool,
    /// Only the owner chats.
    pub owner_only_chat: bool,
}

impl Default for RoomPolicy {
    fn default() -> Self {
        Self {
            public: true,
            allow_chat: true,
            allow_guests: true,
            owner_only_play: false,
            owner_only_chat: false,
        }
    }
}

fn deny(code: ErrorCode, why: &str) -> Result<(), CoreError> {
    Err(CoreError::new(code, why))
}

/// Decides whether a subject with `global` role, holding `room` role in the room (None when
/// not a member), may perform `action` in a room governed by `policy`.
///
/// Membership-scoped actions (chat, events, presence) require `room` to be Some. For join
/// actions `room` is Some(Owner) when the joiner owns the room, else None.
pub fn check(
    action: Action,
    global: GlobalRole,
    room: Option<RoomRole>,
    policy: &RoomPolicy,
) -> Result<(), CoreError> {
    use Action::*;
    use GlobalRole::*;

    let owner = room == Some(RoomRole::Owner);
    let member = room.is_some();
    let guest_barred = global == Guest && !policy.allow_guests;

    match action {
        ListRooms => Ok(()),
        IssueMagicCode | ReadAudit | ReadCluster if global == Admin => Ok(()),
        IssueMagicCode => deny(ErrorCode::Forbidden, "only admins issue magic codes"),
        ReadAudit => deny(ErrorCode::Forbidden, "only admins read the audit log"),
        ReadCluster => deny(ErrorCode::Forbidden, "only admins list the pods"),
        _ if global == Visitor => match action {
            JoinAsWatcher if policy.public && policy.allow_guests => Ok(()),
            JoinAsWatcher => deny(
                ErrorCode::Forbidden,
                "visitors may only watch public rooms that allow guests",
            ),
            _ => deny(
                ErrorCode::Unauthenticated,
                "sign in (a guest account will do)",
            ),
        },
        CreateRoom => Ok(()),
        ManageQuestionSets if global.is_staff() => Ok(()),
        ManageQuestionSets => deny(
            ErrorCode::Forbidden,
            "only moderators and admins manage question sets",
        ),
        DeleteRoom if owner || global == Admin => Ok(()),
        DeleteRoom => deny(
            ErrorCode::Forbidden,
            "only the room owner or an admin may delete it",
        ),
        // A private room's history is hidden like the room itself.
        ReadHistory if policy.public || member || global.is_staff() => Ok(()),
        ReadHistory => deny(ErrorCode::RoomNotFound, "no such room"),
        JoinAsPlayer | JoinAsWatcher if guest_barred && !owner => {
            deny(ErrorCode::Forbidden, "this room does not allow guests")
        }
        JoinAsPlayer | JoinAsWatcher => Ok(()),
        PrivateChat if global == Guest => {
            deny(ErrorCode::Forbidden, "guests may not send private messages")
        }
        PrivateChat => Ok(()),
        // Everything below acts in a room from inside it: staff too join (as watchers) to
        // moderate, so that their actions come through the room like everyone's.
        _ if !member => deny(ErrorCode::NotInRoom, "join the room first"),
        UpdateRoom | Kick | Ban | Mute | Unmute if owner || global.is_staff() => Ok(()),
        UpdateRoom | Kick | Ban | Mute | Unmute => deny(
            ErrorCode::Forbidden,
            "only the room owner or a moderator may do that",
        ),
        Chat if !policy.allow_chat => deny(ErrorCode::ChatDisabled, "chat is off in this room"),
        Chat if policy.owner_only_chat && !owner => {
            deny(ErrorCode::ChatDisabled, "only the owner chats in this room")
        }
        Chat | UpdatePresence | GameAction => Ok(()),
        SendGameEvent if room == Some(RoomRole::Watcher) => {
            deny(ErrorCode::Forbidden, "watchers do not send game events")
        }
        SendGameEvent if policy.owner_only_play && !owner => {
            deny(ErrorCode::Forbidden, "only the owner plays in this room")
        }
        SendGameEvent => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows: actions. Columns: global role (visitor, guest, user, moderator, admin), each
    /// for room role (none, owner, player, watcher). `1` allowed, `.` denied. Default policy.
    const EXPECTED: [(Action, &str); 20] = [
        (Action::ListRooms, "1111 1111 1111 1111 1111"),
        (Action::CreateRoom, ".... 1111 1111 1111 1111"),
        (Action::JoinAsPlayer, ".... 1111 1111 1111 1111"),
        (Action::JoinAsWatcher, "1111 1111 1111 1111 1111"),
        (Action::UpdateRoom, ".... .1.. .1.. .111 .111"),
        (Action::Chat, ".... .111 .111 .111 .111"),
        (Action::PrivateChat, ".... .... 1111 1111 1111"),
        (Action::SendGameEvent, ".... .11. .11. .11. .11."),
        (Action::GameAction, ".... .111 .111 .111 .111"),
        (Action::UpdatePresence, ".... .111 .111 .111 .111"),
        (Action::Kick, ".... .1.. .1.. .111 .111"),
        (Action::Ban, ".... .1.. .1.. .111 .111"),
        (Action::Mute, ".... .1.. .1.. .111 .111"),
        (Action::Unmute, ".... .1.. .1.. .111 .111"),
        (Action::IssueMagicCode, ".... .... .... .... 1111"),
        (Action::DeleteRoom, ".... .1.. .1.. .1.. 1111"),
        (Action::ReadHistory, ".... 1111 1111 1111 1111"),
        (Action::ReadAudit, ".... .... .... .... 1111"),
        (Action::ReadCluster, ".... .... .... .... 1111"),
        (Action::ManageQuestionSets, ".... .... .... 1111 1111"),
    ];

    const ROOM: [Option<RoomRole>; 4] = [
        None,
        Some(RoomRole::Owner),
        Some(RoomRole::Player),
        Some(RoomRole::Watcher),
    ];

    #[test]
    fn walks_the_whole_table() {
        assert_eq!(EXPECTED.len(), Action::ALL.len());
        for (action, row) in EXPECTED {
            let cells: Vec<char> = row.chars().filter(|c| *c != ' ').collect();
            assert_eq!(cells.len(), 20, "{action:?}");
            for (g, global) in GlobalRole::ALL.into_iter().enumerate() {
                for (r, room) in ROOM.into_iter().enumerate() {
                    let want = cells[g * 4 + r] == '1';
                    let got = check(action, global, room, &RoomPolicy::default()).is_ok();
                    assert_eq!(got, want, "{action:?} by {global:?} as {room:?}");
                }
            }
        }
    }

    #[test]
    fn settings_narrow_the_table() {
        let p = RoomPolicy {
            allow_guests: false,
            ..RoomPolicy::default()
        };
        let g = GlobalRole::Guest;
        assert_eq!(
            check(Action::JoinAsPlayer, g, None, &p).unwrap_err().code,
            ErrorCode::Forbidden
        );
        assert!(check(Action::JoinAsWatcher, GlobalRole::Visitor, None, &p).is_err());
        let owner = Some(RoomRole::Owner);
        assert!(
            check(Action::JoinAsPlayer, g, owner, &p).is_ok(),
            "a guest may enter its own room"
        );
        assert!(check(Action::JoinAsPlayer, GlobalRole::User, None, &p).is_ok());

        let private = RoomPolicy {
            public: false,
            ..RoomPolicy::default()
        };
        assert!(check(Action::JoinAsWatcher, GlobalRole::Visitor, None, &private).is_err());
        let u = GlobalRole::User;
        assert_eq!(
            check(Action::ReadHistory, u, None, &private)
                .unwrap_err()
                .code,
            ErrorCode::RoomNotFound,
            "a private room's history is hidden from outsiders"
        );
        assert!(check(Action::ReadHistory, u, owner, &private).is_ok());
        assert!(check(Action::ReadHistory, u, Some(RoomRole::Watcher), &private).is_ok());
        assert!(check(Action::ReadHistory, GlobalRole::Moderator, None, &private).is_ok());

        let p = RoomPolicy {
            owner_only_play: true,
            owner_only_chat: true,
            ..RoomPolicy::default()
        };
        let u = GlobalRole::User;
        let player = Some(RoomRole::Player);
        let owner = Some(RoomRole::Owner);
        assert!(check(Action::SendGameEvent, u, player, &p).is_err());
        assert!(check(Action::SendGameEvent, u, owner, &p).is_ok());
        assert_eq!(
            check(Action::Chat, u, player, &p).unwrap_err().code,
            ErrorCode::ChatDisabled
        );
        assert!(check(Action::Chat, u, owner, &p).is_ok());

        let p = RoomPolicy {
            allow_chat: false,
            ..RoomPolicy::default()
        };
        assert_eq!(
            check(Action::Chat, u, owner, &p).unwrap_err().code,
            ErrorCode::ChatDisabled
        );
        assert_eq!(
            check(Action::Chat, u, None, &RoomPolicy::default())
                .unwrap_err()
                .code,
            ErrorCode::NotInRoom
        );
    }
}
