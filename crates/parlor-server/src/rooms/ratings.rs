//! Rating changes of a finished game (docs/games.md, "Ratings"), with `skillratings`: Elo
//! for games of two, Weng-Lin for any number of players, ties included. Only the rated
//! players take part; a guest's place does not move anyone's rating.

use std::collections::HashMap;

use parlor_core::UserId;
use parlor_games::RatingSystem;
use parlor_store::{MatchRecord, Rating};
use skillratings::{
    elo::{elo, EloConfig, EloRating},
    weng_lin::{weng_lin_multi_team, WengLinConfig, WengLinRating},
    MultiTeamOutcome, Outcomes,
};

/// A finished game for the writer: its record, and whose ratings change by what system.
#[derive(Debug, Clone)]
pub(crate) struct Finished {
    pub(crate) record: MatchRecord,
    pub(crate) system: RatingSystem,
    pub(crate) rated: Vec<UserId>,
}

/// A system's starting rating and uncertainty, for a player who has none.
pub(crate) fn start(system: RatingSystem) -> (f64, f64) {
    match system {
        RatingSystem::WengLin => {
            let d = WengLinRating::new();
            (d.rating, d.uncertainty)
        }
        RatingSystem::Elo | RatingSystem::Unrated => (EloRating::new().rating, 0.0),
    }
}

/// A player's rating before the game: the stored one, or the system's starting one.
fn before(system: RatingSystem, stored: Option<&Rating>) -> (f64, f64) {
    stored.map_or_else(|| start(system), |r| (r.value, r.uncertainty))
}

/// The new ratings, and the record with each rated player's before and after. `stored`
/// holds the rated players' current ratings, if they have one.
pub(crate) fn rate(f: &Finished, stored: &HashMap<UserId, Rating>) -> (MatchRecord, Vec<Rating>) {
    let mut record = f.record.clone();
    let places: Vec<(UserId, u32)> = record
        .players
        .iter()
        .filter(|p| f.rated.contains(&p.user))
        .map(|p| (p.user.clone(), p.place))
        .collect();
    let old: Vec<(f64, f64)> = places
        .iter()
        .map(|(u, _)| before(f.system, stored.get(u)))
        .collect();
    let new: Vec<(f64, f64)> = match (f.system, places.len()) {
        (RatingSystem::Elo, 2) => {
            let outcome = match places[0].1.cmp(&places[1].1) {
                std::cmp::Ordering::Less => Outcomes::WIN,
                std::cmp::Ordering::Greater => Outcomes::LOSS,
                std::cmp::Ordering::Equal => Outcomes::DRAW,
            };
            let (a, b) = elo(
                &EloRating { rating: old[0].0 },
                &EloRating { rating: old[1].0 },
                &outcome,
                &EloConfig::new(),
            );
            vec![(a.rating, 0.0), (b.rating, 0.0)]
        }
        (RatingSystem::WengLin, n) if n >= 2 => {
            let teams: Vec<[WengLinRating; 1]> = old
                .iter()
                .map(|(r, u)| {
                    [WengLinRating {
                        rating: *r,
                        uncertainty: *u,
                    }]
                })
                .collect();
            let ranked: Vec<(&[WengLinRating], MultiTeamOutcome)> = teams
                .iter()
                .zip(&places)
                .map(|(t, (_, place))| (&t[..], MultiTeamOutcome::new(*place as usize)))
                .collect();
            weng_lin_multi_team(&ranked, &WengLinConfig::new())
                .into_iter()
                .map(|t| t.first().map_or((0.0, 0.0), |r| (r.rating, r.uncertainty)))
                .collect()
        }
        // Unrated, or too few rated players for the system: nothing changes.
        _ => return (record, Vec::new()),
    };
    let all_drew = places.iter().all(|(_, p)| *p == places[0].1);
    let mut ratings = Vec::with_capacity(places.len());
    for (((user, place), was), now) in places.iter().zip(&old).zip(&new) {
        let (won, lost) = match (all_drew, *place) {
            (true, _) => (0, 0),
            (false, 1) => (1, 0),
            _ => (0, 1),
        };
        if let Some(p) = record.players.iter_mut().find(|p| p.user == *user) {
            p.rating_before = Some(was.0);
            p.rating_after = Some(now.0);
        }
        ratings.push(Rating {
            user: user.clone(),
            kind: record.kind.clone(),
            value: now.0,
            games: stored.get(user).map_or(0, |r| r.games) + 1,
            updated_at_ms: record.at_ms,
            uncertainty: now.1,
            wins: stored.get(user).map_or(0, |r| r.wins) + won,
            losses: stored.get(user).map_or(0, |r| r.losses) + lost,
        });
    }
    (record, ratings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parlor_store::MatchPlayer;

    fn finished(system: RatingSystem, places: &[(&str, u32)], rated: &[&str]) -> Finished {
        Finished {
            record: MatchRecord {
                id: "m".into(),
                kind: "k".into(),
                room: None,
                at_ms: 5,
                players: places
                    .iter()
                    .map(|(u, place)| MatchPlayer {
                        user: UserId((*u).into()),
                        place: *place,
                        score: 0,
                        rating_before: None,
                        rating_after: None,
                    })
                    .collect(),
            },
            system,
            rated: rated.iter().map(|u| UserId((*u).into())).collect(),
        }
    }

    #[test]
    fn elo_moves_a_winner_up_by_what_the_loser_loses() {
        let f = finished(RatingSystem::Elo, &[("a", 1), ("b", 2)], &["a", "b"]);
        let (record, r) = rate(&f, &HashMap::new());
        assert_eq!(r.len(), 2);
        assert!(r[0].value > 1000.0 && r[1].value < 1000.0);
        assert!((r[0].value - 1000.0 + (r[1].value - 1000.0)).abs() < 1e-9);
        assert_eq!(record.players[0].rating_before, Some(1000.0));
        assert_eq!(r[0].games, 1);
        assert_eq!(
            (r[0].wins, r[0].losses, r[1].wins, r[1].losses),
            (1, 0, 0, 1)
        );
        let draw = finished(RatingSystem::Elo, &[("a", 1), ("b", 1)], &["a", "b"]);
        let (_, r) = rate(&draw, &HashMap::new());
        assert!(r
            .iter()
            .all(|x| x.wins == 0 && x.losses == 0 && x.games == 1));
    }

    #[test]
    fn weng_lin_orders_by_place_and_leaves_guests_out() {
        let f = finished(
            RatingSystem::WengLin,
            &[("a", 1), ("g", 2), ("b", 3), ("c", 3)],
            &["a", "b", "c"],
        );
        let (record, r) = rate(&f, &HashMap::new());
        let by: HashMap<&str, f64> = r.iter().map(|x| (x.user.0.as_str(), x.value)).collect();
        assert_eq!(by.len(), 3, "the guest has no rating");
        assert!(by["a"] > 25.0 && by["b"] < 25.0);
        assert!(
            (by["b"] - by["c"]).abs() < 1e-9,
            "a tie moves both the same"
        );
        assert!(r.iter().all(|x| x.uncertainty < 25.0 / 3.0));
        let guest = record.players.iter().find(|p| p.user.0 == "g").unwrap();
        assert_eq!(guest.rating_after, None);
    }

    #[test]
    fn one_rated_player_or_an_unrated_game_changes_nothing() {
        let f = finished(RatingSystem::WengLin, &[("a", 1), ("g", 2)], &["a"]);
        assert!(rate(&f, &HashMap::new()).1.is_empty());
        let f = finished(RatingSystem::Unrated, &[("a", 1), ("b", 2)], &["a", "b"]);
        assert!(rate(&f, &HashMap::new()).1.is_empty());
    }
}
