//! Checks a revealed history: every roll and shuffle is replayed from the seed by the
//! public rule (`fair`), and must come out exactly as the room reported it.

use std::collections::BTreeMap;

use parlor_protocol::v1;

use crate::{
    dice::{DiceLimits, Notation},
    fair::{seed_matches, Draw, Seed},
};

/// Why a history does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The seed does not hash to the commitment published before the draws.
    #[error("the seed does not match its commitment")]
    Seed,
    /// A draw's nonce lies outside the range revealed with the seed.
    #[error("nonce {0} was not drawn under this seed")]
    Nonce(u64),
    /// Replaying a roll gave other dice or another total.
    #[error("roll with nonce {0} ({1}) does not replay: the room reported other dice")]
    Roll(u64, String),
    /// A card turned up that its round's shuffle did not lay there.
    #[error("round {0}, card {1}: not the card the shuffle laid there (or another deck)")]
    Card(u32, u32),
}

/// The seed, once it matches the commitment published for it.
pub fn seed(revealed: &v1::SeedRevealed) -> Result<Seed, Mismatch> {
    seed_matches(&revealed.seed, &revealed.seed_commitment).ok_or(Mismatch::Seed)
}

/// Replays one roll under `seed` with the room's limits.
pub fn roll(seed: &Seed, r: &v1::RollResult, limits: &DiceLimits) -> Result<(), Mismatch> {
    let bad = || Mismatch::Roll(r.nonce, r.notation.clone());
    let notation = Notation::parse(&r.notation, limits).map_err(|_| bad())?;
    // The roller's values are in the roll itself.
    let vars: BTreeMap<String, i64> = r
        .terms
        .iter()
        .filter_map(|t| match &t.term {
            Some(v1::roll_term::Term::Variable(v)) => Some((v.name.clone(), v.value)),
            _ => None,
        })
        .collect();
    let mut draw = Draw::new(seed, r.nonce);
    let (total, terms) = notation.roll(&vars, limits, &mut draw).map_err(|_| bad())?;
    if total != r.total || terms != r.terms {
        return Err(bad());
    }
    Ok(())
}

/// The layout a shuffle of `deck` with draw `nonce` gives.
pub fn shuffle(seed: &Seed, nonce: u64, deck: &[String]) -> Vec<String> {
    let mut layout = deck.to_vec();
    Draw::new(seed, nonce).shuffle(&mut layout);
    layout
}

/// Checks every roll of a revealed range.
pub fn rolls(
    revealed: &v1::SeedRevealed,
    rolls: &[v1::RollResult],
    limits: &DiceLimits,
) -> Result<usize, Mismatch> {
    let seed = seed(revealed)?;
    for r in rolls {
        if !(revealed.first_nonce..revealed.last_nonce).contains(&r.nonce) {
            return Err(Mismatch::Nonce(r.nonce));
        }
        roll(&seed, r, limits)?;
    }
    Ok(rolls.len())
}

/// What checking a history found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Seeds that matched their commitments.
    pub seeds: usize,
    /// Public rolls replayed.
    pub rolls: usize,
    /// Flips (and reveals) that showed the card their shuffle laid there.
    pub cards: usize,
    /// Draws no revealed seed covers yet.
    pub unrevealed: usize,
}

/// Checks a room's public history, in order: every seed reveal against its commitment,
/// then every roll and every turned-up card whose draw a revealed seed covers. `deck` is
/// the table's deck, for card rounds.
pub fn history(
    updates: &[v1::game_update::Update],
    limits: &DiceLimits,
    deck: &[String],
) -> Result<Report, Mismatch> {
    use v1::{cards_update::Update as C, dice_update::Update as D, game_update::Update as U};
    let mut report = Report::default();
    let mut seeds: Vec<(u64, u64, Seed)> = Vec::new();
    for u in updates {
        if let U::SeedRevealed(r) = u {
            seeds.push((r.first_nonce, r.last_nonce, seed(r)?));
            report.seeds += 1;
        }
    }
    let seed_of = |nonce: u64| {
        seeds
            .iter()
            .find(|(a, b, _)| (*a..*b).contains(&nonce))
            .map(|(_, _, s)| *s)
    };
    // The layout of the round being played, if its shuffle is revealed.
    let mut layout: Option<Vec<String>> = None;
    let card = |layout: &Option<Vec<String>>, i: u32, face: &str, round: u32| match layout
        .as_ref()
        .map(|l| l.get(i as usize).map(String::as_str))
    {
        Some(Some(f)) if f == face => Ok(true),
        Some(_) => Err(Mismatch::Card(round, i)),
        None => Ok(false),
    };
    for u in updates {
        match u {
            U::Dice(v1::DiceUpdate {
                update: Some(D::Rolled(r)),
            }) => match seed_of(r.nonce) {
                Some(s) => {
                    roll(&s, r, limits)?;
                    report.rolls += 1;
                }
                None => report.unrevealed += 1,
            },
            U::Cards(v1::CardsUpdate { update: Some(c) }) => match c {
                C::RoundStarted(r) => {
                    layout = seed_of(r.nonce).map(|s| shuffle(&s, r.nonce, deck));
                    if layout.as_ref().is_some_and(|l| l.len() != r.cards as usize) {
                        return Err(Mismatch::Card(r.round, r.cards));
                    }
                    if layout.is_none() {
                        report.unrevealed += 1;
                    }
                }
                C::Flipped(f) => {
                    report.cards += usize::from(card(&layout, f.index, &f.face, f.round)?);
                }
                C::AllRevealed(a) => {
                    for (i, face) in a.faces.iter().enumerate() {
                        report.cards += usize::from(card(&layout, i as u32, face, a.round)?);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    Ok(report)
}
