//! Server-run room kinds as pure state machines, free of I/O (docs/games.md).
//!
//! - `contract`: what a kind implements (`Game`) and what the server gives it (`Ctx`).
//! - `host`: a room's game with its fair RNG, timers and checkpoint.
//! - `fair`: the seed commitment and the public rule every draw follows.
//! - `dice`, `cards`, `trivia`, `duel` (kind `match`): the built-in kinds.
//! - `verify`: replays a revealed history.
//! - `bracket`: single-elimination seeding and advancing, for tournaments.
//!
//! A room whose kind is not registered here relays: its kind is a label.

pub mod bracket;
pub mod cards;
pub mod contract;
pub mod dice;
pub mod duel;
pub mod fair;
mod host;
pub mod trivia;
pub mod verify;

pub use contract::{
    Ctx, Effect, Game, GameResult, LeaveReason, Placed, Player, RatingSystem, Update,
};
pub use host::Host;

use parlor_core::CoreError;
use parlor_protocol::{v1, ErrorCode};

/// A kind's new or restored game, or why there is none.
pub type Made = Result<Box<dyn Game>, CoreError>;

/// A kind: how to start its game and how to bring one back from a checkpoint.
pub struct Kind {
    /// The name rooms are created with.
    pub name: &'static str,
    /// A new game from CreateRoom's config (None: the defaults).
    pub create: fn(Option<v1::game_config::Config>) -> Made,
    /// A game from its `Game::checkpoint`.
    pub restore: fn(&[u8]) -> Made,
    /// How its rated games rate players: what the matchmaker and tournaments seed a
    /// player without a rating by.
    pub rating: RatingSystem,
}

/// The kinds a server runs.
pub struct Registry {
    kinds: Vec<Kind>,
}

/// A kind of this repo: its config is one variant of `GameConfig`, and its checkpoint
/// is its own serde form.
trait BuiltIn: Game + serde::Serialize + serde::de::DeserializeOwned + Sized {
    const NAME: &'static str;
    const RATING: RatingSystem;
    type Config;
    /// The variant that configures this kind, if `c` is it.
    fn config(c: v1::game_config::Config) -> Option<Self::Config>;
    fn create(config: Option<Self::Config>) -> Result<Self, CoreError>;
}

/// The checkpoint of a built-in kind.
fn state<T: serde::Serialize>(game: &T) -> Vec<u8> {
    // Plain data: serialising it cannot fail.
    serde_json::to_vec(game).unwrap_or_default()
}

fn builtin<K: BuiltIn>() -> Kind {
    Kind {
        name: K::NAME,
        create: |c| {
            let config = match c {
                None => None,
                Some(c) => Some(K::config(c).ok_or_else(|| {
                    CoreError::new(
                        ErrorCode::WrongKind,
                        format!("that game config is not for kind {}", K::NAME),
                    )
                })?),
            };
            Ok(Box::new(K::create(config)?))
        },
        restore: |b| {
            let game: K = serde_json::from_slice(b).map_err(|e| {
                CoreError::new(ErrorCode::Internal, format!("{} checkpoint: {e}", K::NAME))
            })?;
            Ok(Box::new(game))
        },
        rating: K::RATING,
    }
}

impl Registry {
    /// The kinds in this repo: `dice`, `cards`, `trivia` and `match`.
    pub fn builtin() -> Self {
        Self {
            kinds: vec![
                builtin::<dice::Dice>(),
                builtin::<cards::Cards>(),
                builtin::<trivia::Trivia>(),
                builtin::<duel::Duel>(),
            ],
        }
    }

    /// Adds a kind (one added outside this repo); a kind of the same name is replaced.
    pub fn register(&mut self, kind: Kind) {
        self.kinds.retain(|k| k.name != kind.name);
        self.kinds.push(kind);
    }

    /// The kind of that name, if it is server-run.
    pub fn get(&self, name: &str) -> Option<&Kind> {
        self.kinds.iter().find(|k| k.name == name)
    }

    /// The game for a new room of `kind`, seeded with `seed`; None for a relay kind, which
    /// takes no config.
    pub fn create(
        &self,
        kind: &str,
        config: Option<v1::GameConfig>,
        seed: fair::Seed,
    ) -> Result<Option<Host>, CoreError> {
        let config = config.and_then(|c| c.config);
        match self.get(kind) {
            Some(k) => Ok(Some(Host::new((k.create)(config)?, seed))),
            None if config.is_some() => Err(CoreError::new(
                ErrorCode::WrongKind,
                format!("kind {kind} is not server-run, so it takes no game config"),
            )),
            None => Ok(None),
        }
    }
}
