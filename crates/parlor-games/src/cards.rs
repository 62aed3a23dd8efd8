//! Kind `cards`: a round-based card table. The owner is the master: they set the deck and
//! start rounds, which shuffle the deck with the room's RNG and lay it out face down.
//! Players flip cards, freely or in turn; everyone sees a flipped card. No frame carries
//! a card's face before it is flipped, the master's included.

use parlor_core::{CoreError, RoomRole, UserId};
use parlor_protocol::{
    v1::{self, cards_action, cards_update, game_action, game_update, TurnOrder},
    ErrorCode,
};
use serde::{Deserialize, Serialize};

use crate::contract::{Ctx, Game, LeaveReason, Player};

/// Faces a custom deck may hold.
pub const MAX_FACES: usize = 520;
/// The timer that passes the turn on.
const TURN: &str = "turn";
const MAX_FACE: usize = 32;

/// One flip, for the round history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Flipped {
    round: u32,
    index: u32,
    face: String,
    by: UserId,
    at_ms: i64,
}

/// The card table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cards {
    deck: Vec<String>,
    round_robin: bool,
    round: u32,
    /// This round's faces by position; empty between rounds.
    layout: Vec<String>,
    /// Who turned each card up, if anyone has.
    shown: Vec<Option<UserId>>,
    /// Players in the order they joined: the turn order.
    players: Vec<UserId>,
    turn: usize,
    /// This round's flips and the last round's.
    history: Vec<Flipped>,
    /// Round-robin: how long a turn lasts (0: for ever), and when this one ends.
    #[serde(default)]
    turn_ms: u32,
    #[serde(default)]
    turn_ends_at_ms: i64,
}

/// The 52 faces of a standard deck: rank then suit, "AS", "10H", "KC".
pub fn standard_deck() -> Vec<String> {
    let ranks = [
        "A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K",
    ];
    ["S", "H", "D", "C"]
        .iter()
        .flat_map(|s| ranks.iter().map(move |r| format!("{r}{s}")))
        .collect()
}

fn check_deck(faces: Vec<String>) -> Result<Vec<String>, CoreError> {
    if faces.is_empty() {
        return Ok(standard_deck());
    }
    if faces.len() > MAX_FACES {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("a deck holds at most {MAX_FACES} cards"),
        ));
    }
    if let Some(f) = faces.iter().find(|f| f.is_empty() || f.len() > MAX_FACE) {
        return Err(CoreError::new(
            ErrorCode::InvalidArgument,
            format!("card face {f:?}: 1 to {MAX_FACE} bytes"),
        ));
    }
    Ok(faces)
}

fn wrap(u: cards_update::Update) -> game_update::Update {
    game_update::Update::Cards(v1::CardsUpdate { update: Some(u) })
}

fn master_only(who: &Player, what: &str) -> Result<(), CoreError> {
    if who.role == RoomRole::Owner {
        Ok(())
    } else {
        Err(CoreError::new(
            ErrorCode::Forbidden,
            format!("only the master may {what}"),
        ))
    }
}

impl Cards {
    /// A table from its configuration.
    pub fn create(config: Option<v1::CardsConfig>) -> Result<Self, CoreError> {
        let c = config.unwrap_or_default();
        let round_robin = match TurnOrder::try_from(c.turn_order) {
            Ok(TurnOrder::RoundRobin) => true,
            Ok(_) => false,
            Err(_) => {
                return Err(CoreError::new(
                    ErrorCode::InvalidArgument,
                    "unknown turn order",
                ))
            }
        };
        if c.turn_timeout_ms != 0 && !(100..=600_000).contains(&c.turn_timeout_ms) {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "turn_timeout_ms must be 0, or 100 to 600000",
            ));
        }
        if c.turn_timeout_ms != 0 && !round_robin {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "a turn timeout needs the round-robin turn order",
            ));
        }
        Ok(Self {
            turn_ms: c.turn_timeout_ms,
            turn_ends_at_ms: 0,
            deck: check_deck(c.faces)?,
            round_robin,
            round: 0,
            layout: Vec::new(),
            shown: Vec::new(),
            players: Vec::new(),
            turn: 0,
            history: Vec::new(),
        })
    }

    fn on_turn(&self) -> Option<&UserId> {
        if !self.round_robin || self.layout.is_empty() {
            return None;
        }
        self.players.get(self.turn % self.players.len().max(1))
    }

    fn turn_id(&self) -> String {
        self.on_turn().map(|u| u.0.clone()).unwrap_or_default()
    }

    /// Starts the turn clock for whoever is on turn, or stops it when nobody is (no round,
    /// no face-down card, no player).
    fn clock(&mut self, ctx: &mut Ctx<'_>) {
        let playing = self.shown.iter().any(Option::is_none) && self.on_turn().is_some();
        if self.turn_ms > 0 && playing {
            ctx.schedule(TURN, u64::from(self.turn_ms));
            self.turn_ends_at_ms = ctx.now_ms() + i64::from(self.turn_ms);
        } else {
            ctx.cancel(TURN);
            self.turn_ends_at_ms = 0;
        }
    }

    fn start(&mut self, who: &Player, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        master_only(who, "start a round")?;
        let mut draw = ctx.draw();
        let mut layout = self.deck.clone();
        draw.shuffle(&mut layout);
        ctx.used(&draw);
        self.round += 1;
        self.shown = vec![None; layout.len()];
        self.layout = layout;
        self.turn = 0;
        let round = self.round;
        self.history.retain(|f| f.round + 1 == round);
        ctx.broadcast(wrap(cards_update::Update::RoundStarted(v1::RoundStarted {
            round,
            cards: self.layout.len() as u32,
            nonce: draw.nonce(),
            turn_user_id: self.turn_id(),
        })));
        self.clock(ctx);
        ctx.set_status(format!("round {round}"));
        Ok(())
    }

    fn flip(&mut self, who: &Player, index: u32, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        if who.role == RoomRole::Watcher {
            return Err(CoreError::new(ErrorCode::Forbidden, "watchers do not flip"));
        }
        if self.layout.is_empty() {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "no round is being played",
            ));
        }
        let i = index as usize;
        let Some(slot) = self.shown.get(i) else {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                format!("no card {index}: the table has {}", self.layout.len()),
            ));
        };
        if slot.is_some() {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                format!("card {index} is face up already"),
            ));
        }
        let players_turn = who.role != RoomRole::Owner;
        if players_turn && self.round_robin && self.on_turn() != Some(&who.user_id) {
            return Err(CoreError::new(
                ErrorCode::NotYourTurn,
                "it is not your turn",
            ));
        }
        self.shown[i] = Some(who.user_id.clone());
        if players_turn && self.round_robin {
            self.turn = (self.turn + 1) % self.players.len().max(1);
        }
        let f = Flipped {
            round: self.round,
            index,
            face: self.layout[i].clone(),
            by: who.user_id.clone(),
            at_ms: ctx.now_ms(),
        };
        ctx.broadcast(wrap(cards_update::Update::Flipped(self.flip_proto(&f))));
        self.history.push(f);
        // A player's flip starts the next turn; the last card stops the clock.
        if (players_turn && self.round_robin) || self.shown.iter().all(Option::is_some) {
            self.clock(ctx);
        }
        Ok(())
    }

    fn flip_proto(&self, f: &Flipped) -> v1::CardFlipped {
        v1::CardFlipped {
            round: f.round,
            index: f.index,
            face: f.face.clone(),
            by_user_id: f.by.0.clone(),
            at_ms: f.at_ms,
            turn_user_id: self.turn_id(),
        }
    }

    fn reveal_all(&mut self, who: &Player, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        master_only(who, "reveal the table")?;
        if self.layout.is_empty() {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "no round is being played",
            ));
        }
        for s in self.shown.iter_mut().filter(|s| s.is_none()) {
            *s = Some(who.user_id.clone());
        }
        ctx.broadcast(wrap(cards_update::Update::AllRevealed(v1::AllRevealed {
            round: self.round,
            faces: self.layout.clone(),
        })));
        self.clock(ctx);
        Ok(())
    }
}

impl Cards {
    /// Takes someone out of the turn order; the player after them keeps or takes the turn.
    fn drop_player(&mut self, who: &UserId, ctx: &mut Ctx<'_>) {
        let had_turn = self.on_turn() == Some(who);
        if let Some(i) = self.players.iter().position(|p| p == who) {
            self.players.remove(i);
            if i < self.turn {
                self.turn -= 1;
            }
            if self.turn >= self.players.len() {
                self.turn = 0;
            }
        }
        if had_turn || self.on_turn().is_none() {
            self.clock(ctx);
        }
    }
}

impl Game for Cards {
    fn kind(&self) -> &'static str {
        "cards"
    }

    fn on_join(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        if who.role == RoomRole::Player && !self.players.contains(&who.user_id) {
            self.players.push(who.user_id.clone());
        }
        if self.turn_ends_at_ms == 0 {
            // The first player at a table in mid-round: their turn starts now.
            self.clock(ctx);
        }
    }

    fn on_role(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        // Only players take turns: an heir who became the master leaves the rotation.
        if who.role == RoomRole::Player {
            self.on_join(who, ctx);
        } else {
            self.drop_player(&who.user_id, ctx);
        }
    }

    fn on_leave(&mut self, who: &UserId, _reason: LeaveReason, ctx: &mut Ctx<'_>) {
        self.drop_player(who, ctx);
    }

    fn may_reveal(&self) -> Result<(), CoreError> {
        if self.shown.iter().any(Option::is_none) {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "cards are face down: the seed would show them; reveal the table or reset first",
            ));
        }
        Ok(())
    }

    fn on_timer(&mut self, id: &str, ctx: &mut Ctx<'_>) {
        let Some(skipped) = self.on_turn().cloned().filter(|_| id == TURN) else {
            return;
        };
        self.turn = (self.turn + 1) % self.players.len().max(1);
        ctx.broadcast(wrap(cards_update::Update::TurnPassed(v1::TurnPassed {
            round: self.round,
            skipped_user_id: skipped.0,
            turn_user_id: self.turn_id(),
        })));
        self.clock(ctx);
    }

    fn on_action(
        &mut self,
        from: &Player,
        action: game_action::Action,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        let game_action::Action::Cards(a) = action else {
            return Err(CoreError::new(
                ErrorCode::WrongKind,
                "this room plays cards: send a cards action",
            ));
        };
        match a.action {
            Some(cards_action::Action::StartRound(_)) => self.start(from, ctx),
            Some(cards_action::Action::Flip(f)) => self.flip(from, f.index, ctx),
            Some(cards_action::Action::RevealAll(_)) => self.reveal_all(from, ctx),
            Some(cards_action::Action::Reset(_)) => {
                master_only(from, "reset the table")?;
                self.layout.clear();
                self.shown.clear();
                self.clock(ctx);
                ctx.broadcast(wrap(cards_update::Update::Reset(v1::TableReset {})));
                ctx.set_status("between rounds");
                Ok(())
            }
            Some(cards_action::Action::SetDeck(d)) => {
                master_only(from, "set the deck")?;
                if !self.layout.is_empty() {
                    return Err(CoreError::new(
                        ErrorCode::IllegalMove,
                        "the deck changes between rounds: reset the table first",
                    ));
                }
                self.deck = check_deck(d.faces)?;
                ctx.broadcast(wrap(cards_update::Update::DeckSet(v1::DeckSet {
                    cards: self.deck.len() as u32,
                })));
                Ok(())
            }
            None => Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "empty cards action",
            )),
        }
    }

    fn view_for(&self, _viewer: &Player) -> v1::game_view::View {
        let cards = self
            .layout
            .iter()
            .zip(&self.shown)
            .enumerate()
            .map(|(i, (face, by))| v1::Card {
                index: i as u32,
                face: if by.is_some() {
                    face.clone()
                } else {
                    String::new()
                },
                flipped_by: by.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
            })
            .collect();
        v1::game_view::View::Cards(v1::CardsView {
            round: self.round,
            cards,
            turn_order: if self.round_robin {
                TurnOrder::RoundRobin
            } else {
                TurnOrder::Free
            } as i32,
            turn_user_id: self.turn_id(),
            deck_size: self.deck.len() as u32,
            history: self.history.iter().map(|f| self.flip_proto(f)).collect(),
            turn_timeout_ms: self.turn_ms,
            turn_ends_at_ms: self.turn_ends_at_ms,
        })
    }

    fn checkpoint(&self) -> Vec<u8> {
        crate::state(self)
    }
}

impl crate::BuiltIn for Cards {
    const NAME: &'static str = "cards";
    const RATING: crate::RatingSystem = crate::RatingSystem::Unrated;
    type Config = v1::CardsConfig;

    fn config(c: v1::game_config::Config) -> Option<v1::CardsConfig> {
        match c {
            v1::game_config::Config::Cards(c) => Some(c),
            _ => None,
        }
    }

    fn create(config: Option<v1::CardsConfig>) -> Result<Self, CoreError> {
        Cards::create(config)
    }
}
