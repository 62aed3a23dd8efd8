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
    /// A draw's nonce lies outside the range revealed with the seed, or is used twice.
    #[error("nonce {0} was not drawn under this seed, or drawn twice")]
    Nonce(u64),
    /// Replaying a roll gave other dice or another total.
    #[error("roll with nonce {0} ({1}) does not replay: the room reported other dice")]
    Roll(u64, String),
    /// A card turned up that its round's shuffle did not lay there.
    #[error("round {0}, card {1}: not the card the shuffle laid there (or another deck)")]
    Card(u32, u32),
    /// A reveal does not answer the commitment the one before it made, or does not take
    /// the nonces on from where it stopped.
    #[error("the reveal from nonce {0} does not follow the commitment before it")]
    Chain(u64),
    /// A draw the room made under a revealed seed is missing from the history.
    #[error("draw {0} was made but is not in the history")]
    Gap(u64),
    /// A roll used another value than its roller had set.
    #[error("roll with nonce {0} used @{1} with another value than its roller set")]
    Variable(u64, String),
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

/// Checks a room's public history, in order.
/// - The seed reveals form one chain: each answers the commitment the one before it made
///   (and the first answers `first_commitment`, if the checker saw it), and takes the
///   nonces on from where the one before stopped.
/// - Every draw a revealed seed covers is in the history exactly once, as a roll, a
///   hidden roll's notice, or a round's start: a draw the room made and left out is a gap.
/// - Every public roll replays, with the values its roller had set, and every card turned
///   up is the one its round's shuffle of `deck` laid there.
pub fn history(
    updates: &[v1::game_update::Update],
    limits: &DiceLimits,
    deck: &[String],
    first_commitment: Option<&str>,
) -> Result<Report, Mismatch> {
    use v1::{cards_update::Update as C, dice_update::Update as D, game_update::Update as U};
    let mut report = Report::default();
    let mut seeds: Vec<(u64, u64, Seed)> = Vec::new();
    let mut expect: Option<(String, u64)> = first_commitment.map(|c| (c.to_ascii_lowercase(), 0));
    for u in updates {
        if let U::SeedRevealed(r) = u {
            if let Some((commitment, from)) = &expect {
                if *commitment != r.seed_commitment || *from != r.first_nonce {
                    return Err(Mismatch::Chain(r.first_nonce));
                }
            }
            seeds.push((r.first_nonce, r.last_nonce, seed(r)?));
            expect = Some((r.next_commitment.clone(), r.last_nonce));
            report.seeds += 1;
        }
    }
    let seed_of = |nonce: u64| {
        seeds
            .iter()
            .find(|(a, b, _)| (*a..*b).contains(&nonce))
            .map(|(_, _, s)| *s)
    };
    // Each draw once: rolls, hidden rolls' notices and round starts.
    let mut drawn = std::collections::BTreeSet::new();
    let mut draw = |nonce: u64| {
        if drawn.insert(nonce) {
            Ok(())
        } else {
            Err(Mismatch::Nonce(nonce))
        }
    };
    // The values each roller last set.
    let mut values: std::collections::HashMap<String, BTreeMap<String, i64>> = Default::default();
    // The round being played and its layout, if its shuffle is revealed.
    let mut layout: Option<(u32, Vec<String>)> = None;
    let card = |layout: &Option<(u32, Vec<String>)>, i: u32, face: &str, round: u32| match layout {
        Some((r, l)) if *r == round => match l.get(i as usize) {
            Some(f) if f == face => Ok(true),
            _ => Err(Mismatch::Card(round, i)),
        },
        // A round whose start is not in the history (or not revealed): not checkable.
        _ => Ok(false),
    };
    for u in updates {
        match u {
            U::Dice(v1::DiceUpdate { update: Some(d) }) => match d {
                D::VariablesSet(v) => {
                    values.insert(v.user_id.clone(), v.values.clone().into_iter().collect());
                }
                D::HiddenRoll(h) => draw(h.nonce)?,
                D::Rolled(r) => {
                    draw(r.nonce)?;
                    if let Some(set) = values.get(&r.roller_id) {
                        for t in &r.terms {
                            if let Some(v1::roll_term::Term::Variable(v)) = &t.term {
                                if set.get(&v.name) != Some(&v.value) {
                                    return Err(Mismatch::Variable(r.nonce, v.name.clone()));
                                }
                            }
                        }
                    }
                    match seed_of(r.nonce) {
                        Some(s) => {
                            roll(&s, r, limits)?;
                            report.rolls += 1;
                        }
                        None => report.unrevealed += 1,
                    }
                }
            },
            U::Cards(v1::CardsUpdate { update: Some(c) }) => match c {
                C::RoundStarted(r) => {
                    draw(r.nonce)?;
                    let shuffled = seed_of(r.nonce).map(|s| shuffle(&s, r.nonce, deck));
                    if shuffled
                        .as_ref()
                        .is_some_and(|l| l.len() != r.cards as usize)
                    {
                        return Err(Mismatch::Card(r.round, r.cards));
                    }
                    if shuffled.is_none() {
                        report.unrevealed += 1;
                    }
                    layout = shuffled.map(|l| (r.round, l));
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
    // Inside a revealed range every draw is accounted for.
    for (first, last, _) in &seeds {
        if let Some(n) = (*first..*last).find(|n| !drawn.contains(n)) {
            return Err(Mismatch::Gap(n));
        }
    }
    Ok(report)
}
