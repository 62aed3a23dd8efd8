//! Kind `dice`: a tabletop campaign session. The owner is the DM, players roll, watchers
//! watch. Rolls are public, to the DM (the roller and the DM see them), or hidden (the DM's
//! own); everyone else learns only that a roll happened.

mod notation;

pub use notation::{DiceLimits, Group, Notation, Select, Term, MAX_NOTATION};

use std::collections::{BTreeMap, VecDeque};

use parlor_core::{CoreError, RoomRole, UserId};
use parlor_protocol::{
    v1::{self, dice_action, dice_update, game_action, game_update, RollVisibility},
    ErrorCode,
};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::contract::{Ctx, Game, LeaveReason, Player};

/// Rolls kept in the game's own history (the store keeps them all), and their most bytes:
/// the history is part of the checkpoint written with every roll.
pub const HISTORY: usize = 200;
const HISTORY_BYTES: usize = 32 * 1024;
/// Values one member may set.
pub const MAX_VARIABLES: usize = 32;
const MAX_LABEL: usize = 64;

/// The dice table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Dice {
    #[serde(with = "limits_serde")]
    limits: DiceLimits,
    /// Each member's values for `@name`.
    vars: BTreeMap<UserId, BTreeMap<String, i64>>,
    /// The DM (the room's owner) as last seen.
    dm: Option<UserId>,
    /// `RollResult`s, protobuf in base64, newest last.
    history: VecDeque<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

mod limits_serde {
    use super::DiceLimits;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(l: &DiceLimits, s: S) -> Result<S::Ok, S::Error> {
        [l.max_dice, l.max_sides, l.max_explode].serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DiceLimits, D::Error> {
        let [max_dice, max_sides, max_explode] = <[u32; 3]>::deserialize(d)?;
        Ok(DiceLimits {
            max_dice,
            max_sides,
            max_explode,
        })
    }
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::InvalidArgument, msg)
}

impl Dice {
    /// A table from its configuration; limits above the hard caps are refused.
    pub fn create(config: Option<v1::DiceConfig>) -> Result<Self, CoreError> {
        let c = config.unwrap_or_default();
        let d = DiceLimits::default();
        let pick = |v: u32, default: u32, cap: u32, what: &str| match v {
            0 => Ok(default),
            v if v <= cap => Ok(v),
            _ => Err(invalid(format!("{what} may be at most {cap}"))),
        };
        Ok(Self {
            limits: DiceLimits {
                max_dice: pick(c.max_dice, d.max_dice, 1000, "max_dice")?,
                max_sides: pick(c.max_sides, d.max_sides, 1_000_000, "max_sides")?,
                max_explode: pick(c.max_explode, d.max_explode, 100, "max_explode")?,
            },
            ..Self::default()
        })
    }

    /// The limits rolls are held to.
    pub fn limits(&self) -> DiceLimits {
        self.limits
    }

    fn roll(&mut self, from: &Player, r: v1::Roll, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        if from.role == RoomRole::Watcher {
            return Err(CoreError::new(ErrorCode::Forbidden, "watchers do not roll"));
        }
        let visibility = match RollVisibility::try_from(r.visibility) {
            Ok(RollVisibility::Unspecified | RollVisibility::Public) => RollVisibility::Public,
            Ok(v) => v,
            Err(_) => return Err(invalid("unknown roll visibility")),
        };
        if visibility == RollVisibility::Hidden && from.role != RoomRole::Owner {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "only the DM rolls hidden",
            ));
        }
        if r.label.len() > MAX_LABEL {
            return Err(CoreError::new(
                ErrorCode::TooLong,
                format!("a roll's label is at most {MAX_LABEL} bytes"),
            ));
        }
        let notation = Notation::parse(&r.notation, &self.limits)?;
        let empty = BTreeMap::new();
        let vars = self.vars.get(&from.user_id).unwrap_or(&empty);
        let mut draw = ctx.draw();
        let (total, terms) = notation.roll(vars, &self.limits, &mut draw)?;
        ctx.used(&draw);
        let result = v1::RollResult {
            roller_id: from.user_id.0.clone(),
            roller_name: from.name.clone(),
            notation: r.notation,
            visibility: visibility as i32,
            label: r.label,
            total,
            terms,
            nonce: draw.nonce(),
            at_ms: ctx.now_ms(),
        };
        let rolled = wrap(dice_update::Update::Rolled(result.clone()));
        if visibility == RollVisibility::Public {
            ctx.broadcast(rolled);
        } else {
            ctx.broadcast(wrap(dice_update::Update::HiddenRoll(hidden(&result))));
            ctx.send_to(&from.user_id, rolled.clone());
            if let Some(dm) = self.dm.as_ref().filter(|dm| **dm != from.user_id) {
                ctx.send_to(dm, rolled);
            }
        }
        use base64::Engine as _;
        self.history.push_back(b64().encode(result.encode_to_vec()));
        let mut bytes: usize = self.history.iter().map(String::len).sum();
        while self.history.len() > HISTORY || (bytes > HISTORY_BYTES && self.history.len() > 1) {
            bytes -= self.history.pop_front().map_or(0, |r| r.len());
        }
        Ok(())
    }

    fn set_variables(
        &mut self,
        from: &Player,
        s: v1::SetVariables,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        if from.role == RoomRole::Watcher {
            return Err(CoreError::new(
                ErrorCode::Forbidden,
                "watchers have no character values",
            ));
        }
        if s.values.len() > MAX_VARIABLES {
            return Err(invalid(format!("at most {MAX_VARIABLES} values")));
        }
        let mut values = BTreeMap::new();
        for (name, v) in s.values {
            let ok = !name.is_empty()
                && name.len() <= 32
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
            if !ok {
                return Err(invalid(format!(
                    "value name {name:?}: 1 to 32 letters, digits or '_'"
                )));
            }
            if !(-1_000_000..=1_000_000).contains(&v) {
                return Err(invalid(format!("@{name} must lie within ±1,000,000")));
            }
            values.insert(name.to_ascii_lowercase(), v);
        }
        ctx.broadcast(wrap(dice_update::Update::VariablesSet(v1::VariablesSet {
            user_id: from.user_id.0.clone(),
            values: values.clone().into_iter().collect(),
        })));
        self.vars.insert(from.user_id.clone(), values);
        Ok(())
    }
}

fn wrap(u: dice_update::Update) -> game_update::Update {
    game_update::Update::Dice(v1::DiceUpdate { update: Some(u) })
}

fn hidden(r: &v1::RollResult) -> v1::HiddenRoll {
    v1::HiddenRoll {
        roller_id: r.roller_id.clone(),
        label: r.label.clone(),
        nonce: r.nonce,
        at_ms: r.at_ms,
    }
}

/// May `viewer` see this roll's dice?
pub fn sees(r: &v1::RollResult, viewer: &Player, dm: Option<&UserId>) -> bool {
    r.visibility == RollVisibility::Public as i32
        || r.roller_id == viewer.user_id.0
        || dm == Some(&viewer.user_id)
}

impl Game for Dice {
    fn kind(&self) -> &'static str {
        "dice"
    }

    fn on_join(&mut self, who: &Player, _ctx: &mut Ctx<'_>) {
        if who.role == RoomRole::Owner {
            self.dm = Some(who.user_id.clone());
        }
    }

    fn on_role(&mut self, who: &Player, _ctx: &mut Ctx<'_>) {
        self.on_join(who, _ctx);
    }

    fn on_leave(&mut self, who: &UserId, _reason: LeaveReason, _ctx: &mut Ctx<'_>) {
        self.vars.remove(who);
    }

    fn on_action(
        &mut self,
        from: &Player,
        action: game_action::Action,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        let game_action::Action::Dice(a) = action else {
            return Err(CoreError::new(
                ErrorCode::WrongKind,
                "this room plays dice: send a dice action",
            ));
        };
        match a.action {
            Some(dice_action::Action::Roll(r)) => self.roll(from, r, ctx),
            Some(dice_action::Action::SetVariables(s)) => self.set_variables(from, s, ctx),
            None => Err(invalid("empty dice action")),
        }
    }

    fn view_for(&self, viewer: &Player) -> v1::game_view::View {
        let history = self
            .history
            .iter()
            .filter_map(|b| {
                use base64::Engine as _;
                let bytes = b64().decode(b).ok()?;
                v1::RollResult::decode(bytes.as_slice()).ok()
            })
            .map(|r| {
                let u = if sees(&r, viewer, self.dm.as_ref()) {
                    dice_update::Update::Rolled(r)
                } else {
                    dice_update::Update::HiddenRoll(hidden(&r))
                };
                v1::DiceUpdate { update: Some(u) }
            })
            .collect();
        let variables = self
            .vars
            .iter()
            .map(|(u, vals)| v1::VariablesSet {
                user_id: u.0.clone(),
                values: vals.clone().into_iter().collect(),
            })
            .collect();
        let l = self.limits;
        let limits = Some(v1::DiceConfig {
            max_dice: l.max_dice,
            max_sides: l.max_sides,
            max_explode: l.max_explode,
        });
        v1::game_view::View::Dice(v1::DiceView {
            history,
            variables,
            limits,
        })
    }

    fn checkpoint(&self) -> Vec<u8> {
        crate::state(self)
    }
}

impl crate::BuiltIn for Dice {
    const NAME: &'static str = "dice";
    const RATING: crate::RatingSystem = crate::RatingSystem::Unrated;
    type Config = v1::DiceConfig;

    fn config(c: v1::game_config::Config) -> Option<v1::DiceConfig> {
        match c {
            v1::game_config::Config::Dice(c) => Some(c),
            _ => None,
        }
    }

    fn create(config: Option<v1::DiceConfig>) -> Result<Self, CoreError> {
        Dice::create(config)
    }
}
