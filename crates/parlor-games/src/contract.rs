//! The contract between the server and a room kind.
//!
//! A kind is a state machine: the server calls it with typed input (joins, leaves,
//! actions, timers) and a `Ctx`, and carries out what it asked of the `Ctx` afterwards, in
//! order. A kind never sleeps, reads a clock or does I/O itself; its time comes from
//! `Ctx::now_ms` and its randomness from `Ctx::draw`, so the same inputs give the same
//! game.

use std::collections::BTreeMap;

use parlor_core::{CoreError, GlobalRole, RoomRole, UserId};
use parlor_protocol::v1;

use crate::fair::{Draw, Fairness};

/// A member as a game sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Player {
    /// The account or guest id.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Their role in this room (the owner is the game's master or DM).
    pub role: RoomRole,
    /// Their role on the server.
    pub global: GlobalRole,
}

/// Why someone left a game.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// They asked to.
    Left,
    /// A moderator or the game removed them.
    Kicked,
    /// Their connection dropped and they were not back within the grace period.
    Dropped,
}

/// A kind's update, as it goes on the wire.
pub type Update = v1::game_update::Update;

/// A finished game, for the match history and the ratings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GameResult {
    /// Every player, in any order.
    pub players: Vec<Placed>,
    /// How the rated players' ratings change.
    pub rating: RatingSystem,
}

/// One player's part in a finished game.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The player.
    pub user: UserId,
    /// 1 is first; equal places drew.
    pub place: u32,
    /// The game's own score.
    pub score: i64,
    /// Their rating changes (registered accounts in a rated game; never guests).
    pub rated: bool,
}

/// The rating system a kind's finished games use (docs/games.md, "Ratings").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatingSystem {
    /// Results are recorded; no rating changes.
    Unrated,
    /// Elo, for games of two.
    Elo,
    /// Weng-Lin (OpenSkill), for games of any size, with ties.
    WengLin,
}

/// What a kind asked the server to do, in the order it asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A room event: numbered, sent to every member, kept for resume.
    Broadcast(Update),
    /// Hidden detail for one member only (seq 0, not in the room's history).
    SendTo(UserId, Update),
    /// Removes a member from the room.
    Kick(UserId, String),
    /// Sets what the room's listing says about the game.
    Status(String),
    /// Records a finished game.
    Finish(GameResult),
    /// A timer was set (or moved) to fire at `due_ms`.
    Armed(String, i64),
    /// A timer was cancelled.
    Disarmed(String),
}

/// What the server gives a kind on each call.
pub struct Ctx<'a> {
    now_ms: i64,
    fair: &'a mut Fairness,
    timers: &'a mut BTreeMap<String, i64>,
    effects: Vec<Effect>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(
        now_ms: i64,
        fair: &'a mut Fairness,
        timers: &'a mut BTreeMap<String, i64>,
    ) -> Self {
        Self {
            now_ms,
            fair,
            timers,
            effects: Vec::new(),
        }
    }

    pub(crate) fn into_effects(self) -> Vec<Effect> {
        self.effects
    }

    /// The server's clock, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Sends an update to the whole room, as a numbered room event.
    pub fn broadcast(&mut self, u: Update) {
        self.effects.push(Effect::Broadcast(u));
    }

    /// Sends an update to one member only.
    pub fn send_to(&mut self, user: &UserId, u: Update) {
        self.effects.push(Effect::SendTo(user.clone(), u));
    }

    /// Removes a member from the room.
    pub fn kick(&mut self, user: &UserId, reason: impl Into<String>) {
        self.effects.push(Effect::Kick(user.clone(), reason.into()));
    }

    /// Sets the room's listing status, e.g. "round 2".
    pub fn set_status(&mut self, status: impl Into<String>) {
        self.effects.push(Effect::Status(status.into()));
    }

    /// Records a finished game in the match history.
    pub fn finish(&mut self, result: GameResult) {
        self.effects.push(Effect::Finish(result));
    }

    /// Fires `on_timer(id)` after `after_ms`; an armed timer with the same id moves.
    pub fn schedule(&mut self, id: &str, after_ms: u64) {
        let due = self
            .now_ms
            .saturating_add(i64::try_from(after_ms).unwrap_or(i64::MAX));
        self.timers.insert(id.to_owned(), due);
        self.effects.push(Effect::Armed(id.to_owned(), due));
    }

    /// Cancels a timer; nothing if it is not armed.
    pub fn cancel(&mut self, id: &str) {
        if self.timers.remove(id).is_some() {
            self.effects.push(Effect::Disarmed(id.to_owned()));
        }
    }

    /// The room's next random draw. It counts as used once `used` is called with its
    /// nonce; a refused action leaves it for the next one.
    pub fn draw(&self) -> Draw {
        self.fair.draw()
    }

    /// Marks a draw as used.
    pub fn used(&mut self, draw: &Draw) {
        self.fair.commit(draw.nonce());
    }
}

/// One room's game. Methods that change the game get a `Ctx`; a refusal is a `CoreError`
/// with a code from the one error-code table, and changes nothing.
pub trait Game: Send + 'static {
    /// The kind's name, as rooms are created with it.
    fn kind(&self) -> &'static str;

    /// May `who` join as `requested`? Answers the role they get. The room has already
    /// checked bans, passwords and seats.
    fn join_attempt(&self, who: &Player, requested: RoomRole) -> Result<RoomRole, CoreError> {
        let _ = who;
        Ok(requested)
    }

    /// `who` joined (a new member, not a reconnect).
    fn on_join(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        let _ = (who, ctx);
    }

    /// `who`'s room role changed (an heir became the owner).
    fn on_role(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        let _ = (who, ctx);
    }

    /// `who` left the room for good.
    fn on_leave(&mut self, who: &UserId, reason: LeaveReason, ctx: &mut Ctx<'_>) {
        let _ = (who, reason, ctx);
    }

    /// A member's action. All of the kind's validation lives here.
    fn on_action(
        &mut self,
        from: &Player,
        action: v1::game_action::Action,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError>;

    /// A timer set with `Ctx::schedule` is due.
    fn on_timer(&mut self, id: &str, ctx: &mut Ctx<'_>) {
        let _ = (id, ctx);
    }

    /// For kinds that need a steady beat: `on_tick` runs this often.
    fn tick_ms(&self) -> Option<u64> {
        None
    }

    /// The beat of `tick_ms`.
    fn on_tick(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// May the room reveal its seed now? A reveal makes every draw under it reproducible,
    /// so a kind whose draws still hide something (a face-down layout) refuses.
    fn may_reveal(&self) -> Result<(), CoreError> {
        Ok(())
    }

    /// The game as `viewer` may see it: nothing they may not see, ever.
    fn view_for(&self, viewer: &Player) -> v1::game_view::View;

    /// The game's state, for the room's checkpoint. `restore` of the kind reads it back.
    fn checkpoint(&self) -> Vec<u8>;
}
