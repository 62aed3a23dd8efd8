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
