//! A room's game with what every kind shares: the fair RNG, the timers, the checkpoint
//! envelope and seed reveals. The server holds one `Host` per server-run room.

use std::collections::BTreeMap;

use parlor_core::{CoreError, RoomRole, UserId};
use parlor_protocol::{v1, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::{
    contract::{Ctx, Effect, Game, LeaveReason, Player},
    fair::{Fairness, Seed},
    Registry,
};

/// A running game and its room-level state.
pub struct Host {
    game: Box<dyn Game>,
    fair: Fairness,
    timers: BTreeMap<String, i64>,
}

/// The checkpoint envelope: the kind's own state beside the shared parts.
#[derive(Serialize, Deserialize)]
struct Saved {
    kind: String,
    fair: Fairness,
    timers: BTreeMap<String, i64>,
    /// The kind's `checkpoint()`, base64.
    state: String,
}

impl Host {
    pub(crate) fn new(game: Box<dyn Game>, seed: Seed) -> Self {
        Self {
            game,
            fair: Fairness::new(seed),
            timers: BTreeMap::new(),
        }
    }

    /// The kind's name.
    pub fn kind(&self) -> &'static str {
        self.game.kind()
    }

    fn run(
        &mut self,
        now_ms: i64,
        f: impl FnOnce(&mut dyn Game, &mut Ctx<'_>) -> Result<(), CoreError>,
    ) -> Result<Vec<Effect>, CoreError> {
        // A refusal changes nothing: run on copies of the shared parts, keep them on success.
        let (mut fair, mut timers) = (self.fair.clone(), self.timers.clone());
        let mut ctx = Ctx::new(now_ms, &mut fair, &mut timers);
        f(&mut *self.game, &mut ctx)?;
        let effects = ctx.into_effects();
        self.fair = fair;
        self.timers = timers;
        Ok(effects)
    }

    /// The role `who` gets, or why they may not join.
    pub fn join_attempt(&self, who: &Player, requested: RoomRole) -> Result<RoomRole, CoreError> {
        self.game.join_attempt(who, requested)
    }

    /// A new member joined.
    pub fn joined(&mut self, who: &Player, now_ms: i64) -> Vec<Effect> {
        self.run(now_ms, |g, ctx| {
            g.on_join(who, ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// A member's room role changed.
    pub fn role_changed(&mut self, who: &Player, now_ms: i64) -> Vec<Effect> {
        self.run(now_ms, |g, ctx| {
            g.on_role(who, ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// A member left for good.
    pub fn left(&mut self, who: &UserId, reason: LeaveReason, now_ms: i64) -> Vec<Effect> {
        self.run(now_ms, |g, ctx| {
            g.on_leave(who, reason, ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// A member's action. `fresh` is a new seed, used if the action reveals the current one.
    pub fn act(
        &mut self,
        from: &Player,
        action: v1::game_action::Action,
        now_ms: i64,
        fresh: Seed,
    ) -> Result<Vec<Effect>, CoreError> {
        if let v1::game_action::Action::RevealSeed(_) = action {
            if from.role != RoomRole::Owner && !from.global.is_staff() {
                return Err(CoreError::new(
                    ErrorCode::Forbidden,
                    "only the room's owner may reveal its seed",
                ));
            }
            self.game.may_reveal()?;
            return Ok(vec![Effect::Broadcast(self.reveal(fresh))]);
        }
        self.run(now_ms, |g, ctx| g.on_action(from, action, ctx))
    }

    /// Draws were made under the current seed, which has not been revealed, and the kind
    /// lets it be revealed now.
    pub fn revealable(&self) -> bool {
        self.fair.unrevealed() && self.game.may_reveal().is_ok()
    }

    /// Gives up the seed for checking and commits to `fresh`: the update says both.
    pub fn reveal(&mut self, fresh: Seed) -> v1::game_update::Update {
        let old = self.fair.commitment();
        let r = self.fair.reveal(fresh);
        v1::game_update::Update::SeedRevealed(v1::SeedRevealed {
            seed: hex::encode(r.seed),
            seed_commitment: old,
            next_commitment: self.fair.commitment(),
            first_nonce: r.first,
            last_nonce: r.last,
        })
    }

    /// The timer `id` fired for the deadline `due_ms` it was armed with. A timer that was
    /// cancelled or moved since does nothing.
    pub fn fire(&mut self, id: &str, due_ms: i64, now_ms: i64) -> Vec<Effect> {
        if self.timers.get(id) != Some(&due_ms) {
            return Vec::new();
        }
        self.timers.remove(id);
        self.run(now_ms, |g, ctx| {
            g.on_timer(id, ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// The kind's beat interval, if it has one.
    pub fn tick_ms(&self) -> Option<u64> {
        self.game.tick_ms()
    }

    /// One beat.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        self.run(now_ms, |g, ctx| {
            g.on_tick(ctx);
            Ok(())
        })
        .unwrap_or_default()
    }

    /// Armed timers and their deadlines, to arm again after a restore.
    pub fn timers(&self) -> impl Iterator<Item = (&str, i64)> {
        self.timers.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// What the room publishes about its seed.
    pub fn fairness(&self) -> v1::Fairness {
        v1::Fairness {
            seed_commitment: self.fair.commitment(),
            next_nonce: self.fair.next_nonce(),
        }
    }

    /// The game as `viewer` may see it.
    pub fn view_for(&self, viewer: &Player, room_id: &str) -> v1::GameView {
        v1::GameView {
            room_id: room_id.to_owned(),
            kind: self.kind().to_owned(),
            fairness: Some(self.fairness()),
            view: Some(self.game.view_for(viewer)),
        }
    }

    /// The whole game, seed included, for the room's checkpoint.
    pub fn checkpoint(&self) -> Vec<u8> {
        let saved = Saved {
            kind: self.kind().to_owned(),
            fair: self.fair.clone(),
            timers: self.timers.clone(),
            state: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                self.game.checkpoint(),
            ),
        };
        serde_json::to_vec(&saved).unwrap_or_default()
    }

    /// A game from its checkpoint.
    pub fn restore(registry: &Registry, bytes: &[u8]) -> Result<Self, CoreError> {
        let bad = |e: String| CoreError::new(ErrorCode::Internal, format!("game checkpoint: {e}"));
        let saved: Saved = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let kind = registry
            .get(&saved.kind)
            .ok_or_else(|| bad(format!("unknown kind {}", saved.kind)))?;
        let state =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &saved.state)
                .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            game: (kind.restore)(&state)?,
            fair: saved.fair,
            timers: saved.timers,
        })
    }

    /// The published commitment (also in every view).
    pub fn commitment(&self) -> String {
        self.fair.commitment()
    }
}
