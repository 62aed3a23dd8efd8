//! Kind `trivia`: a live quiz arena. The host (the owner) starts the game; each question
//! opens a buzz window, the first buzz by the server's order of receipt wins the right to
//! answer, and a wrong answer or a timeout passes the question to the next buzzer, or
//! reveals it. The answer is in no frame before the reveal.
//!
//! Scoring (docs/games.md): a right answer earns 10 points, plus 5 × the share of the buzz
//! window that was left when the player buzzed, rounded down. A wrong answer or a timeout
//! costs 5 points.

use parlor_core::{CoreError, GlobalRole, RoomRole, UserId};
use parlor_protocol::{
    v1::{self, game_action, game_update, trivia_action, trivia_update, trivia_view::Phase},
    ErrorCode,
};
use serde::{Deserialize, Serialize};

use crate::contract::{Ctx, Game, GameResult, LeaveReason, Placed, Player, RatingSystem};

const BUZZ: &str = "buzz";
const ANSWER: &str = "answer";
const NEXT: &str = "next";
/// Points for a right answer, the most its speed adds, and what a wrong one costs.
pub const RIGHT: i64 = 10;
pub const SPEED: i64 = 5;
pub const WRONG: i64 = 5;
/// Questions a game may hold.
pub const MAX_QUESTIONS: usize = 200;

/// A question, as uploaded and stored. `correct` indexes `answers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub text: String,
    pub answers: Vec<String>,
    pub correct: u32,
    #[serde(default)]
    pub category: String,
    #[serde(default = "one")]
    pub difficulty: u32,
}

fn one() -> u32 {
    1
}

fn invalid(msg: impl Into<String>) -> CoreError {
    CoreError::new(ErrorCode::InvalidArgument, msg)
}

impl From<v1::TriviaQuestion> for Question {
    fn from(q: v1::TriviaQuestion) -> Self {
        Self {
            text: q.text,
            answers: q.answers,
            correct: q.correct,
            category: q.category,
            difficulty: q.difficulty.max(1),
        }
    }
}

impl From<Question> for v1::TriviaQuestion {
    fn from(q: Question) -> Self {
        Self {
            text: q.text,
            answers: q.answers,
            correct: q.correct,
            category: q.category,
            difficulty: q.difficulty,
        }
    }
}

impl Question {
    /// Checks one question; `at` names it in the error.
    pub fn check(&self, at: usize) -> Result<(), CoreError> {
        let bad = |what: &str| invalid(format!("question {at}: {what}"));
        if self.text.trim().is_empty() || self.text.len() > 500 {
            return Err(bad("text must be 1 to 500 bytes"));
        }
        if !(2..=6).contains(&self.answers.len()) {
            return Err(bad("2 to 6 answers"));
        }
        if self
            .answers
            .iter()
            .any(|a| a.trim().is_empty() || a.len() > 200)
        {
            return Err(bad("each answer must be 1 to 200 bytes"));
        }
        if self.correct as usize >= self.answers.len() {
            return Err(bad("correct must index an answer"));
        }
        if self.category.len() > 64 {
            return Err(bad("category at most 64 bytes"));
        }
        if !(1..=5).contains(&self.difficulty) {
            return Err(bad("difficulty 1 to 5"));
        }
        Ok(())
    }
}

/// A question set: 1 to `MAX_QUESTIONS` valid questions.
pub fn check_set(questions: &[Question]) -> Result<(), CoreError> {
    if questions.is_empty() || questions.len() > MAX_QUESTIONS {
        return Err(invalid(format!(
            "a set holds 1 to {MAX_QUESTIONS} questions"
        )));
    }
    questions
        .iter()
        .enumerate()
        .try_for_each(|(i, q)| q.check(i))
}

/// The set that ships with the server.
pub fn sample_set() -> Vec<Question> {
    serde_json::from_str(include_str!("sample.json")).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Stage {
    Lobby,
    Buzzing,
    Answering,
    Revealed,
    Over,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    user: UserId,
    score: i64,
    registered: bool,
    /// When they left during the game (an order), if they did.
    left: Option<u32>,
}

/// The arena.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trivia {
    questions: Vec<Question>,
    buzz_ms: u32,
    answer_ms: u32,
    reveal_ms: u32,
    auto_start: u32,
    rated: bool,
    stage: Stage,
    index: u32,
    players: Vec<Entry>,
    /// This question's buzzers waiting, in order of receipt, with when they buzzed.
    queue: Vec<(UserId, i64)>,
    answering: Option<(UserId, i64)>,
    /// Who already answered this question (wrong, or too late).
    tried: Vec<UserId>,
    buzzes: u32,
    window_open: bool,
    asked_at_ms: i64,
    buzz_closes_at_ms: i64,
    answer_closes_at_ms: i64,
    /// (question, correct, won by), for the view.
    revealed: Vec<(u32, u32, String)>,
    leavers: u32,
    /// Reserved seats (a matchmade arena); empty: every player plays.
    #[serde(default)]
    seats: Vec<UserId>,
}

impl Trivia {
    /// An arena from its configuration.
    pub fn create(config: Option<v1::TriviaConfig>) -> Result<Self, CoreError> {
        let c = config.unwrap_or_default();
        let questions: Vec<Question> = if c.questions.is_empty() {
            sample_set()
        } else {
            c.questions.into_iter().map(Question::from).collect()
        };
        check_set(&questions)?;
        let ms = |v: u32, default: u32, what: &str| match v {
            0 => Ok(default),
            v if (100..=600_000).contains(&v) => Ok(v),
            _ => Err(invalid(format!("{what} must be 0, or 100 to 600000"))),
        };
        if c.auto_start_players > 64 {
            return Err(invalid("auto_start_players at most 64"));
        }
        Ok(Self {
            questions,
            buzz_ms: ms(c.buzz_window_ms, 10_000, "buzz_window_ms")?,
            answer_ms: ms(c.answer_ms, 10_000, "answer_ms")?,
            reveal_ms: ms(c.reveal_ms, 3_000, "reveal_ms")?,
            auto_start: c.auto_start_players,
            rated: c.rated,
            stage: Stage::Lobby,
            index: 0,
            players: Vec::new(),
            queue: Vec::new(),
            answering: None,
            tried: Vec::new(),
            buzzes: 0,
            window_open: false,
            asked_at_ms: 0,
            buzz_closes_at_ms: 0,
            answer_closes_at_ms: 0,
            revealed: Vec::new(),
            leavers: 0,
            seats: c.players.into_iter().map(UserId).collect(),
        })
    }

    fn active(&self) -> impl Iterator<Item = &Entry> {
        self.players.iter().filter(|e| e.left.is_none())
    }

    fn playing(&self) -> bool {
        !matches!(self.stage, Stage::Lobby | Stage::Over)
    }

    fn start(&mut self, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        if self.playing() {
            return Err(CoreError::new(ErrorCode::IllegalMove, "a game is on"));
        }
        // A new game: who left the last one is gone, everyone else starts from 0.
        self.players.retain(|e| e.left.is_none());
        if self.players.is_empty() {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "nobody is here to play",
            ));
        }
        for e in &mut self.players {
            e.score = 0;
        }
        self.index = 0;
        self.revealed.clear();
        self.leavers = 0;
        ctx.broadcast(wrap(trivia_update::Update::Started(v1::TriviaStarted {
            questions: self.questions.len() as u32,
            players: self.players.iter().map(|e| e.user.0.clone()).collect(),
        })));
        self.ask(ctx);
        Ok(())
    }

    fn asked(&self) -> v1::QuestionAsked {
        let q = &self.questions[self.index as usize];
        v1::QuestionAsked {
            index: self.index,
            text: q.text.clone(),
            answers: q.answers.clone(),
            category: q.category.clone(),
            difficulty: q.difficulty,
            buzz_closes_at_ms: self.buzz_closes_at_ms,
        }
    }

    fn ask(&mut self, ctx: &mut Ctx<'_>) {
        self.stage = Stage::Buzzing;
        self.queue.clear();
        self.tried.clear();
        self.answering = None;
        self.buzzes = 0;
        self.window_open = true;
        self.asked_at_ms = ctx.now_ms();
        self.buzz_closes_at_ms = ctx.now_ms() + i64::from(self.buzz_ms);
        ctx.schedule(BUZZ, u64::from(self.buzz_ms));
        ctx.broadcast(wrap(trivia_update::Update::Asked(self.asked())));
        ctx.set_status(format!(
            "question {} of {}",
            self.index + 1,
            self.questions.len()
        ));
    }

    fn buzz(&mut self, who: &Player, q: u32, ctx: &mut Ctx<'_>) -> Result<(), CoreError> {
        if !matches!(self.stage, Stage::Buzzing | Stage::Answering) || q != self.index {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "that question takes no buzzes",
            ));
        }
        if !self.window_open {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "the buzz window has closed",
            ));
        }
        if !self.active().any(|e| e.user == who.user_id) {
            return Err(CoreError::new(ErrorCode::Forbidden, "only players buzz"));
        }
        let me = &who.user_id;
        let already = self.tried.contains(me)
            || self.queue.iter().any(|(u, _)| u == me)
            || self.answering.as_ref().is_some_and(|(u, _)| u == me);
        if already {
            return Err(CoreError::new(
                ErrorCode::IllegalMove,
                "you have buzzed on this question",
            ));
        }
        self.buzzes += 1;
        self.queue.push((me.clone(), ctx.now_ms()));
        if self.answering.is_none() {
            self.give_turn(ctx);
        } else {
            ctx.broadcast(wrap(trivia_update::Update::Buzzed(v1::Buzzed {
                question: self.index,
                user_id: me.0.clone(),
                position: self.buzzes,
                answering: false,
                answer_closes_at_ms: 0,
            })));
        }
        Ok(())
    }

    /// The next buzzer in line takes the right to answer.
    fn give_turn(&mut self, ctx: &mut Ctx<'_>) {
        let (user, at) = self.queue.remove(0);
        let position = self.buzzes - self.queue.len() as u32;
        self.stage = Stage::Answering;
        self.answer_closes_at_ms = ctx.now_ms() + i64::from(self.answer_ms);
        ctx.schedule(ANSWER, u64::from(self.answer_ms));
        ctx.broadcast(wrap(trivia_update::Update::Buzzed(v1::Buzzed {
            question: self.index,
            user_id: user.0.clone(),
            position,
            answering: true,
            answer_closes_at_ms: self.answer_closes_at_ms,
        })));
        self.answering = Some((user, at));
    }

    fn answer(
        &mut self,
        who: &Player,
        a: v1::AnswerTrivia,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        let holds = self
            .answering
            .as_ref()
            .is_some_and(|(u, _)| *u == who.user_id);
        if !holds || a.question != self.index || self.stage != Stage::Answering {
            return Err(CoreError::new(
                ErrorCode::NotYourTurn,
                "you do not hold the answer",
            ));
        }
        let q = &self.questions[self.index as usize];
        if a.choice as usize >= q.answers.len() {
            return Err(invalid(format!(
                "choice {} of {} answers",
                a.choice,
                q.answers.len()
            )));
        }
        ctx.cancel(ANSWER);
        let (user, buzzed_at) = self.answering.take().expect("checked above");
        if a.choice == q.correct {
            // The share of the window left when they buzzed, in fifths, rounded down.
            let left = (self.buzz_closes_at_ms - buzzed_at).clamp(0, i64::from(self.buzz_ms));
            let points = RIGHT + SPEED * left / i64::from(self.buzz_ms);
            self.judge(&user, true, false, points, ctx);
            self.reveal(Some(user), ctx);
        } else {
            self.judge(&user, false, false, -WRONG, ctx);
            self.tried.push(user);
            self.pass_on(ctx);
        }
        Ok(())
    }

    fn judge(
        &mut self,
        user: &UserId,
        correct: bool,
        timed_out: bool,
        points: i64,
        ctx: &mut Ctx<'_>,
    ) {
        let score = match self.players.iter_mut().find(|e| e.user == *user) {
            Some(e) => {
                e.score += points;
                e.score
            }
            None => 0,
        };
        ctx.broadcast(wrap(trivia_update::Update::Judged(v1::AnswerJudged {
            question: self.index,
            user_id: user.0.clone(),
            correct,
            timed_out,
            points,
            score,
        })));
    }

    /// After a wrong answer: the next buzzer, else more buzzes while the window is open,
    /// else the reveal.
    fn pass_on(&mut self, ctx: &mut Ctx<'_>) {
        if !self.queue.is_empty() {
            self.give_turn(ctx);
        } else if self.window_open {
            self.stage = Stage::Buzzing;
        } else {
            self.reveal(None, ctx);
        }
    }

    fn reveal(&mut self, won_by: Option<UserId>, ctx: &mut Ctx<'_>) {
        ctx.cancel(BUZZ);
        ctx.cancel(ANSWER);
        self.window_open = false;
        self.answering = None;
        self.queue.clear();
        self.stage = Stage::Revealed;
        let r = v1::QuestionRevealed {
            question: self.index,
            correct: self.questions[self.index as usize].correct,
            won_by: won_by.map(|u| u.0).unwrap_or_default(),
        };
        self.revealed
            .push((r.question, r.correct, r.won_by.clone()));
        ctx.broadcast(wrap(trivia_update::Update::Revealed(r)));
        ctx.schedule(NEXT, u64::from(self.reveal_ms));
    }

    /// Places: those who stayed by score (equal scores share a place), then those who left,
    /// the last to leave first.
    fn standings(&self) -> Vec<v1::Standing> {
        let mut stayed: Vec<&Entry> = self.active().collect();
        stayed.sort_by_key(|e| std::cmp::Reverse(e.score));
        let mut out = Vec::new();
        let mut place = 0;
        let mut last = None;
        for (i, e) in stayed.iter().enumerate() {
            if last != Some(e.score) {
                place = i as u32 + 1;
                last = Some(e.score);
            }
            out.push(v1::Standing {
                user_id: e.user.0.clone(),
                place,
                score: e.score,
                left: false,
            });
        }
        let mut gone: Vec<&Entry> = self.players.iter().filter(|e| e.left.is_some()).collect();
        gone.sort_by_key(|e| std::cmp::Reverse(e.left));
        let after = out.len() as u32;
        for (i, e) in gone.iter().enumerate() {
            out.push(v1::Standing {
                user_id: e.user.0.clone(),
                place: after + i as u32 + 1,
                score: e.score,
                left: true,
            });
        }
        out
    }

    fn over(&mut self, ctx: &mut Ctx<'_>) {
        for t in [BUZZ, ANSWER, NEXT] {
            ctx.cancel(t);
        }
        self.stage = Stage::Over;
        self.window_open = false;
        self.answering = None;
        self.queue.clear();
        let standings = self.standings();
        ctx.broadcast(wrap(trivia_update::Update::Over(v1::TriviaOver {
            standings: standings.clone(),
        })));
        ctx.set_status("finished");
        let registered = |u: &str| self.players.iter().any(|e| e.user.0 == u && e.registered);
        ctx.finish(GameResult {
            players: standings
                .iter()
                .map(|s| Placed {
                    user: UserId(s.user_id.clone()),
                    place: s.place,
                    score: s.score,
                    rated: self.rated && registered(&s.user_id),
                })
                .collect(),
            rating: if self.rated {
                RatingSystem::WengLin
            } else {
                RatingSystem::Unrated
            },
        });
    }
}

fn wrap(u: trivia_update::Update) -> game_update::Update {
    game_update::Update::Trivia(v1::TriviaUpdate { update: Some(u) })
}

impl Game for Trivia {
    fn kind(&self) -> &'static str {
        "trivia"
    }

    /// With reserved seats, anyone else who asks to play watches.
    fn join_attempt(&self, who: &Player, requested: RoomRole) -> Result<RoomRole, CoreError> {
        let unlisted = !self.seats.is_empty() && !self.seats.contains(&who.user_id);
        Ok(match requested {
            RoomRole::Player if unlisted => RoomRole::Watcher,
            r => r,
        })
    }

    fn on_join(&mut self, who: &Player, ctx: &mut Ctx<'_>) {
        let seated = self.seats.contains(&who.user_id);
        let plays = match who.role {
            RoomRole::Player => self.seats.is_empty() || seated,
            RoomRole::Owner => seated,
            RoomRole::Watcher => false,
        };
        if !plays {
            return;
        }
        match self.players.iter_mut().find(|e| e.user == who.user_id) {
            Some(e) => e.left = None,
            None => self.players.push(Entry {
                user: who.user_id.clone(),
                score: 0,
                registered: who.global >= GlobalRole::User,
                left: None,
            }),
        }
        let enough = self.auto_start > 0 && self.active().count() >= self.auto_start as usize;
        if self.stage == Stage::Lobby && enough {
            let _ = self.start(ctx);
        }
    }

    fn on_leave(&mut self, who: &UserId, _reason: LeaveReason, ctx: &mut Ctx<'_>) {
        if !self.playing() {
            self.players.retain(|e| e.user != *who);
            return;
        }
        let Some(e) = self
            .players
            .iter_mut()
            .find(|e| e.user == *who && e.left.is_none())
        else {
            return;
        };
        self.leavers += 1;
        e.left = Some(self.leavers);
        self.queue.retain(|(u, _)| u != who);
        // Abandoned: with one player or none left, the game ends now (docs/games.md).
        if self.active().count() <= 1 {
            return self.over(ctx);
        }
        if self.answering.as_ref().is_some_and(|(u, _)| u == who) {
            ctx.cancel(ANSWER);
            self.answering = None;
            self.tried.push(who.clone());
            self.pass_on(ctx);
        }
    }

    fn on_action(
        &mut self,
        from: &Player,
        action: game_action::Action,
        ctx: &mut Ctx<'_>,
    ) -> Result<(), CoreError> {
        let game_action::Action::Trivia(a) = action else {
            return Err(CoreError::new(
                ErrorCode::WrongKind,
                "this room plays trivia: send a trivia action",
            ));
        };
        match a.action {
            Some(trivia_action::Action::Start(_)) => {
                if from.role != RoomRole::Owner {
                    return Err(CoreError::new(ErrorCode::Forbidden, "only the host starts"));
                }
                self.start(ctx)
            }
            Some(trivia_action::Action::Buzz(b)) => self.buzz(from, b.question, ctx),
            Some(trivia_action::Action::Answer(ans)) => self.answer(from, ans, ctx),
            None => Err(invalid("empty trivia action")),
        }
    }

    fn on_timer(&mut self, id: &str, ctx: &mut Ctx<'_>) {
        match (id, self.stage) {
            (BUZZ, Stage::Buzzing | Stage::Answering) => {
                self.window_open = false;
                if self.stage == Stage::Buzzing {
                    self.reveal(None, ctx);
                }
            }
            (ANSWER, Stage::Answering) => {
                if let Some((user, _)) = self.answering.take() {
                    self.judge(&user, false, true, -WRONG, ctx);
                    self.tried.push(user);
                }
                self.pass_on(ctx);
            }
            (NEXT, Stage::Revealed) => {
                if (self.index as usize) + 1 < self.questions.len() {
                    self.index += 1;
                    self.ask(ctx);
                } else {
                    self.over(ctx);
                }
            }
            _ => {}
        }
    }

    fn view_for(&self, _viewer: &Player) -> v1::game_view::View {
        let phase = match self.stage {
            Stage::Lobby => Phase::Lobby,
            Stage::Buzzing => Phase::Buzzing,
            Stage::Answering => Phase::Answering,
            Stage::Revealed => Phase::Revealed,
            Stage::Over => Phase::Over,
        };
        let current = matches!(
            self.stage,
            Stage::Buzzing | Stage::Answering | Stage::Revealed
        )
        .then(|| self.asked());
        let mut queue = Vec::new();
        if let Some((u, _)) = &self.answering {
            queue.push(v1::Buzzed {
                question: self.index,
                user_id: u.0.clone(),
                position: 0,
                answering: true,
                answer_closes_at_ms: self.answer_closes_at_ms,
            });
        }
        queue.extend(self.queue.iter().map(|(u, _)| v1::Buzzed {
            question: self.index,
            user_id: u.0.clone(),
            position: 0,
            answering: false,
            answer_closes_at_ms: 0,
        }));
        v1::game_view::View::Trivia(v1::TriviaView {
            phase: phase as i32,
            questions: self.questions.len() as u32,
            current,
            queue,
            scores: self.standings(),
            revealed: self
                .revealed
                .iter()
                .map(|(question, correct, won_by)| v1::QuestionRevealed {
                    question: *question,
                    correct: *correct,
                    won_by: won_by.clone(),
                })
                .collect(),
            auto_start_players: self.auto_start,
        })
    }

    fn checkpoint(&self) -> Vec<u8> {
        crate::state(self)
    }
}

impl crate::BuiltIn for Trivia {
    const NAME: &'static str = "trivia";
    const RATING: crate::RatingSystem = crate::RatingSystem::WengLin;
    type Config = v1::TriviaConfig;

    fn config(c: v1::game_config::Config) -> Option<v1::TriviaConfig> {
        match c {
            v1::game_config::Config::Trivia(c) => Some(c),
            _ => None,
        }
    }

    fn create(config: Option<v1::TriviaConfig>) -> Result<Self, CoreError> {
        Trivia::create(config)
    }
}
