//! Kind `match`: a reported 1v1 match. Both players report who won. Reports that agree
//! are final; reports that differ are disputed until a moderator, or the organizer (the
//! room's owner when not seated), decides; a report the other player leaves unanswered
//! becomes final when its time runs out. The result is rated with Elo.

use parlor_core::{CoreError, GlobalRole, RoomRole, UserId};
use parlor_protocol::{
    v1::{self, game_action, game_update, match_action, match_settled::How, match_update},
    ErrorCode,
};
use serde::{Deserialize, Serialize};

use crate::contract::{Ctx, Game, GameResult, Placed, Player, RatingSystem};

const CONFIRM: &str = "confirm";

/// A claim: the winner's id, or None for a draw.
type Claim = Option<UserId>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Seat {
    user: UserId,
    registered: bool,
    report: Option<Claim>,
}

/// The match.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Duel {
    /// Fixed by the config, or taken by the first two to join.
    fixed: Vec<UserId>,
    seats: Vec<Seat>,
    confirm_ms: u32,
    rated: bool,
    #[serde(default)]
    no_draws: bool,
    #[serde(default)]
    organizer: Option<UserId>,
    final_at_ms: i64,
    disputed: bool,
    /// (claim, how, decided by) once settled.
    settled: Option<(Claim, i32, String)>,
}

fn err(code: ErrorCode, msg: &str) -> CoreError {
    CoreError::new(code, msg)
}

fn wrap(u: match_update::Update) -> game_update::Update {
    game_update::Update::Match(v1::MatchUpdate { update: Some(u) })
}

impl Duel {
    /// A match from its configuration.
    pub fn create(config: Option<v1::MatchConfig>) -> Result<Self, CoreError> {
        let c = config.unwrap_or_default();
        let fixed: Vec<UserId> = c.players.into_iter().map(UserId).collect();
        let distinct = fixed.len() == 2 && fixed[0] != fixed[1];
        if !(fixed.is_empty() || distinct) {
            return Err(err(
                ErrorCode::InvalidArgument,
                "a match seats two different players, or none (the first two to join)",
            ));
        }
        let confirm_ms = match c.confirm_ms {
            0 => 86_400_000,
            v if (1_000..=604_800_000).contains(&v) => v,
            _ => {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    "confirm_ms must be 0, or 1000 to 604800000",
                ))
            }
        };
        Ok(Self {
            fixed,
            seats: Vec::new(),
            confirm_ms,
            rated: !c.unrated,
            no_draws: c.no_draws,
            organizer: Some(UserId(c.organizer_id)).filter(|u| !u.0.is_empty()),
            final_at_ms: 0,
            disputed: false,
            settled: None,
        })
    }

    fn seated(&self, user: &UserId) -> bool {
        self.seats.iter().any(|s| s.user == *user)
    }

    fn may_sit(&self, who: &Player) -> bool {
        let plays = matches!(who.role, RoomRole::Owner | RoomRole::Player);
        let listed = self.fixed.is_empty() || self.fixed.contains(&who.user_id);
        plays && listed && self.seats.len() < 2
    }

    fn claim(&self, winner: &str, draw: bool) -> Result<Claim, CoreError> {
        if draw && self.no_draws {
            return Err(err(
                ErrorCode::InvalidArgument,
                "this match cannot be drawn",
            ));
        }
        if draw {
            return Ok(None);
        }
        let w = UserId(winner.to_owned());
        if !self.seated(&w) || self.seats.len() < 2 {
            return Err(err(
                ErrorCode::InvalidArgument,
                "the winner must be one of the two players",
            ));
        }
        Ok(Some(w))
    }

    fn reported(&self, by: &UserId, claim: &Claim) -> v1::MatchReported {
        v1::MatchReported {
            by_user_id: by.0.clone(),
            winner_user_id: claim.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
            draw: claim.is_none(),
            final_at_ms: self.final_at_ms,
        }
    }

    fn report(
        &mut self,
        who: &Player,
        r: v1::ReportResult,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        if self.settled.is_some() {
            return Err(err(ErrorCode::IllegalMove, "the match is settled"));
        }
        if self.seats.len() < 2 {
            return Err(err(
                ErrorCode::IllegalMove,
                "the second player has not come yet",
            ));
        }
        if self.disputed {
            return Err(err(
                ErrorCode::IllegalMove,
                "the match is disputed: a moderator decides",
            ));
        }
        let claim = self.claim(&r.winner_user_id, r.draw)?;
        let Some(i) = self.seats.iter().position(|s| s.user == who.user_id) else {
            return Err(err(ErrorCode::Forbidden, "only the two players report"));
        };
        if self.seats[i].report.is_some() {
            return Err(err(ErrorCode::IllegalMove, "you have reported"));
        }
        self.seats[i].report = Some(claim.clone());
        let other = self.seats[1 - i].report.clone();
        match other {
            None => {
                self.final_at_ms = ctx.now_ms() + i64::from(self.confirm_ms);
                ctx.schedule(CONFIRM, u64::from(self.confirm_ms));
                ctx.broadcast(wrap(match_update::Update::Reported(
                    self.reported(&who.user_id, &claim),
                )));
            }
            Some(theirs) if theirs == claim => {
                ctx.broadcast(wrap(match_update::Update::Reported(
                    self.reported(&who.user_id, &claim),
                )));
                self.settle(claim, How::Agreed, "", ctx);
            }
            Some(_) => {
                ctx.cancel(CONFIRM);
                self.disputed = true;
                let reports = self
                    .seats
                    .iter()
                    .filter_map(|s| s.report.as_ref().map(|c| self.reported(&s.user, c)))
                    .collect();
                ctx.broadcast(wrap(match_update::Update::Disputed(v1::MatchDisputed {
                    reports,
                })));
                ctx.set_status("disputed");
            }
        }
        Ok(())
    }

    fn decide(
        &mut self,
        who: &Player,
        d: v1::DecideResult,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        // Never a player of the match; the organizer only once the players disagree.
        if self.seated(&who.user_id) {
            return Err(err(
                ErrorCode::Forbidden,
                "a player does not decide their own match",
            ));
        }
        let organizer = self.organizer.as_ref() == Some(&who.user_id);
        if !(who.global.is_staff() || (organizer && self.disputed)) {
            return Err(err(
                ErrorCode::Forbidden,
                "a moderator decides, or the organizer once the reports disagree",
            ));
        }
        if self.settled.is_some() {
            return Err(err(ErrorCode::IllegalMove, "the match is settled"));
        }
        if self.seats.len() < 2 {
            return Err(err(
                ErrorCode::IllegalMove,
                "the second player has not come yet",
            ));
        }
        let claim = self.claim(&d.winner_user_id, d.draw)?;
        self.settle(claim, How::Decided, &who.user_id.0, ctx);
        Ok(())
    }

    fn settled_proto(&self) -> Option<v1::MatchSettled> {
        self.settled
            .as_ref()
            .map(|(claim, how, by)| v1::MatchSettled {
                winner_user_id: claim.as_ref().map(|u| u.0.clone()).unwrap_or_default(),
                draw: claim.is_none(),
                how: *how,
                decided_by: by.clone(),
            })
    }

    fn settle(&mut self, claim: Claim, how: How, by: &str, ctx: &mut Ctx<'_>) {
        ctx.cancel(CONFIRM);
        self.disputed = false;
        self.settled = Some((claim.clone(), how as i32, by.to_owned()));
        if let Some(s) = self.settled_proto() {
            ctx.broadcast(wrap(match_update::Update::Settled(s)));
        }
        ctx.set_status("final");
        let place = |u: &UserId| match &claim {
            Some(w) if w != u => 2,
            _ => 1,
        };
        ctx.finish(GameResult {
            players: self
                .seats
                .iter()
                .map(|s| Placed {
                    user: s.user.clone(),
                    place: place(&s.user),
                    score: 0,
                    rated: self.rated && s.registered,
                })
                .collect(),
            rating: if self.rated {
                RatingSystem::Elo
            } else {
                RatingSystem::Unrated
            },
        });
    }
}

impl Game for Duel {
    fn kind(&self) -> &'static str {
        "match"
    }

    /// A player beyond the two seats, or not listed in the config, watches.
    fn join_attempt(&self, who: &Player, requested: RoomRole) -> Result<RoomRole, CoreError> {
        let seat = self.seated(&who.user_id)
            || self.may_sit(&Player {
                role: requested,
                ..who.clone()
            });
        Ok(match requested {
            RoomRole::Player if !seat => RoomRole::Watcher,
            r => r,
        })
    }

    fn on_join(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        if self.seated(&who.user_id) || !self.may_sit(who) {
            return;
        }
        self.seats.push(Seat {
            user: who.user_id.clone(),
            registered: who.global >= GlobalRole::User,
            report: None,
        });
        if self.seats.len() == 2 {
            ctx.broadcast(wrap(match_update::Update::Seated(v1::MatchSeated {
                players: self.seats.iter().map(|s| s.user.0.clone()).collect(),
            })));
            ctx.set_status("playing");
        }
    }

    fn on_action(
        &mut self,
        from: &Player,
        action: game_action::Action,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        let game_action::Action::Match(a) = action else {
            return Err(err(
                ErrorCode::WrongKind,
                "this room plays a match: send a match action",
            ));
        };
        match a.action {
            Some(match_action::Action::Report(r)) => self.report(from, r, ctx),
            Some(match_action::Action::Decide(d)) => self.decide(from, d, ctx),
            None => Err(err(ErrorCode::InvalidArgument, "empty match action")),
        }
    }

    fn on_timer(&mut self, id: &str, ctx: &mut Ctx<'_>) {
        if id != CONFIRM || self.settled.is_some() || self.disputed {
            return;
        }
        let reports: Vec<Claim> = self.seats.iter().filter_map(|s| s.report.clone()).collect();
        if let [only] = &reports[..] {
            self.settle(only.clone(), How::Unanswered, "", ctx);
        }
    }

    fn view_for(&self, _viewer: &Player) -> v1::game_view::View {
        v1::game_view::View::Match(v1::MatchView {
            players: self.seats.iter().map(|s| s.user.0.clone()).collect(),
            reports: self
                .seats
                .iter()
                .filter_map(|s| s.report.as_ref().map(|c| self.reported(&s.user, c)))
                .collect(),
            disputed: self.disputed,
            result: self.settled_proto(),
        })
    }

    fn checkpoint(&self) -> Vec<u8> {
        crate::state(self)
    }
}

impl crate::BuiltIn for Duel {
    const NAME: &'static str = "match";
    const RATING: crate::RatingSystem = crate::RatingSystem::Elo;
    type Config = v1::MatchConfig;

    fn config(c: v1::game_config::Config) -> Option<v1::MatchConfig> {
        match c {
            v1::game_config::Config::Match(c) => Some(c),
            _ => None,
        }
    }

    fn create(config: Option<v1::MatchConfig>) -> Result<Self, CoreError> {
        Duel::create(config)
    }
}
