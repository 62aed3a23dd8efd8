//! A single-elimination bracket, free of I/O: seeding by rating with byes, and advancing
//! winners. The server keeps one per tournament and opens a `match` room for each pairing
//! once both of its players are known.
//!
//! Seeding: players are ordered by rating (highest first, ties by id), and placed in a
//! bracket of the next power of two so that seed 1 and seed 2 can meet only in the final
//! (1 v 8, 4 v 5, 2 v 7, 3 v 6 for eight). The missing seeds are byes, so when the count is
//! not a power of two the top seeds go through the first round without playing.

use parlor_core::{CoreError, UserId};
use parlor_protocol::ErrorCode;
use serde::{Deserialize, Serialize};

/// Players a bracket may hold.
pub const MAX_PLAYERS: usize = 256;

/// One pairing: two slots, either of which may be a bye (None) or not known yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pairing {
    /// The players, once known; `Slot::Bye` when nobody will come.
    pub slots: [Slot; 2],
    /// Who went through.
    pub winner: Option<UserId>,
}

/// A pairing's slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    /// Filled by the winner of the pairing before it, when known.
    Waiting,
    /// Nobody: the other player goes through.
    Bye,
    /// A player.
    Player(UserId),
}

/// The bracket: `rounds[0]` is the first round, the last holds the final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bracket {
    pub rounds: Vec<Vec<Pairing>>,
}

/// A pairing to play now: both players known, no winner yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    pub round: usize,
    pub index: usize,
    pub players: [UserId; 2],
}

/// Seed positions for a bracket of `size` (a power of two), top seed first in each pair.
fn order(size: usize) -> Vec<usize> {
    let mut o = vec![1];
    while o.len() < size {
        let n = o.len() * 2;
        o = o.iter().flat_map(|&s| [s, n + 1 - s]).collect();
    }
    o
}

impl Bracket {
    /// Seeds `players` (with their ratings) into a bracket; byes go through at once.
    pub fn seed(players: &[(UserId, f64)]) -> Result<Self, CoreError> {
        if !(2..=MAX_PLAYERS).contains(&players.len()) {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                format!("a bracket holds 2 to {MAX_PLAYERS} players"),
            ));
        }
        let mut seeded: Vec<&(UserId, f64)> = players.iter().collect();
        seeded.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        seeded.dedup_by(|a, b| a.0 == b.0);
        if seeded.len() < 2 {
            return Err(CoreError::new(
                ErrorCode::InvalidArgument,
                "a bracket needs two different players",
            ));
        }
        let size = seeded.len().next_power_of_two();
        let slot = |seed: usize| match seeded.get(seed - 1) {
            Some((u, _)) => Slot::Player(u.clone()),
            None => Slot::Bye,
        };
        let positions = order(size);
        let first: Vec<Pairing> = positions
            .chunks(2)
            .map(|p| Pairing {
                slots: [slot(p[0]), slot(p[1])],
                winner: None,
            })
            .collect();
        let mut rounds = vec![first];
        while rounds.last().is_some_and(|r| r.len() > 1) {
            let n = rounds.last().map_or(0, Vec::len) / 2;
            rounds.push(vec![
                Pairing {
                    slots: [Slot::Waiting, Slot::Waiting],
                    winner: None,
                };
                n
            ]);
        }
        let mut b = Self { rounds };
        // A player paired with a bye goes through without playing.
        for i in 0..b.rounds[0].len() {
            if let [Slot::Player(u), Slot::Bye] | [Slot::Bye, Slot::Player(u)] =
                &b.rounds[0][i].slots
            {
                let u = u.clone();
                b.advance(0, i, u);
            }
        }
        Ok(b)
    }

    fn advance(&mut self, round: usize, index: usize, winner: UserId) {
        self.rounds[round][index].winner = Some(winner.clone());
        if let Some(next) = self.rounds.get_mut(round + 1) {
            next[index / 2].slots[index % 2] = Slot::Player(winner);
        }
    }

    /// Records the winner of a pairing, who must be one of its two players.
    pub fn report(&mut self, round: usize, index: usize, winner: &UserId) -> Result<(), CoreError> {
        let bad = |m: &str| CoreError::new(ErrorCode::IllegalMove, m);
        let p = self
            .rounds
            .get(round)
            .and_then(|r| r.get(index))
            .ok_or_else(|| bad("no such pairing"))?;
        if p.winner.is_some() {
            return Err(bad("that pairing has its winner"));
        }
        let plays = p.slots.iter().any(|s| *s == Slot::Player(winner.clone()));
        let both = p.slots.iter().all(|s| matches!(s, Slot::Player(_)));
        if !plays || !both {
            return Err(bad("the winner must be one of the pairing's two players"));
        }
        self.advance(round, index, winner.clone());
        Ok(())
    }

    /// The pairings to play now.
    pub fn ready(&self) -> Vec<Ready> {
        let mut out = Vec::new();
        for (r, round) in self.rounds.iter().enumerate() {
            for (i, p) in round.iter().enumerate() {
                if let (None, [Slot::Player(a), Slot::Player(b)]) = (&p.winner, &p.slots) {
                    out.push(Ready {
                        round: r,
                        index: i,
                        players: [a.clone(), b.clone()],
                    });
                }
            }
        }
        out
    }

    /// The winner of the final, once played.
    pub fn champion(&self) -> Option<&UserId> {
        self.rounds.last()?.first()?.winner.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn players(n: usize) -> Vec<(UserId, f64)> {
        (1..=n)
            .map(|i| (UserId(format!("p{i}")), 2000.0 - i as f64 * 10.0))
            .collect()
    }

    #[test]
    fn seeds_meet_as_late_as_their_rank_allows() {
        assert_eq!(order(8), [1, 8, 4, 5, 2, 7, 3, 6]);
        let b = Bracket::seed(&players(8)).unwrap();
        assert_eq!(b.rounds.len(), 3);
        assert_eq!(b.ready().len(), 4);
        let first = &b.rounds[0][0].slots;
        assert_eq!(
            first,
            &[
                Slot::Player(UserId("p1".into())),
                Slot::Player(UserId("p8".into()))
            ]
        );
    }

    #[test]
    fn seven_players_play_to_a_champion_with_one_bye_each_round_once() {
        let mut b = Bracket::seed(&players(7)).unwrap();
        // Seed 1 has the bye and waits in round two.
        assert_eq!(b.rounds[0][0].winner, Some(UserId("p1".into())));
        assert_eq!(b.ready().len(), 3);
        // The lower seed wins every match it plays, except against p1.
        let mut rounds_played = 0;
        while b.champion().is_none() {
            let ready = b.ready();
            assert!(!ready.is_empty(), "the bracket stalled");
            let round = ready[0].round;
            let mut seen = std::collections::HashSet::new();
            for r in &ready {
                assert_eq!(r.round, round, "one round at a time here");
                for p in &r.players {
                    assert!(seen.insert(p.clone()), "{p} twice in round {round}");
                }
                let winner = if r.players.contains(&UserId("p1".into())) {
                    UserId("p1".into())
                } else {
                    r.players[1].clone()
                };
                b.report(r.round, r.index, &winner).unwrap();
            }
            rounds_played += 1;
        }
        assert_eq!(rounds_played, 3);
        assert_eq!(b.champion(), Some(&UserId("p1".into())));
        // Reports that are not the bracket's are refused.
        assert!(b.report(2, 0, &UserId("p1".into())).is_err());
        assert!(b.report(9, 0, &UserId("p1".into())).is_err());
    }

    #[test]
    fn a_winner_must_be_in_the_pairing_and_brackets_need_two() {
        let mut b = Bracket::seed(&players(4)).unwrap();
        assert!(b.report(0, 0, &UserId("p2".into())).is_err());
        assert!(
            b.report(1, 0, &UserId("p1".into())).is_err(),
            "the final is not ready"
        );
        assert!(Bracket::seed(&players(1)).is_err());
        let twice = vec![(UserId("a".into()), 1.0), (UserId("a".into()), 1.0)];
        assert!(Bracket::seed(&twice).is_err());
    }
}
