//! Bots that play whole games as real clients: trivia tables, card tables, and 1v1
//! matches found through the matchmaker. Each table (a unit of the plan) connects its
//! seats, then plays one game after another until the run ends.
//!
//! What each records (counters in the report): `cycles` are games (trivia), rounds
//! (cards) or settled matches; `sent` and `delivered` are the timed actions and their
//! answers; the latency histogram is buzz to its `Buzzed` (trivia), flip to its
//! `CardFlipped` (cards), or Matchmake to `Matched` (match).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use parlor_client::{v1, Body, Connection, Frame};
use v1::{game_action::Action, game_update::Update};

use crate::{
    measure::{now_ns, Counters},
    plan::Plan,
    scenarios::{ramp, signed_in, sleep_until_ns},
};

/// How long a bot waits for the next frame before it gives up on a game.
const STALL: Duration = Duration::from_secs(30);

/// A small deterministic generator, so that runs repeat (xorshift).
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Seats `n` clients of table `t`: clients `t * n ..`, each on its ramp turn.
async fn seat_table(
    plan: &Plan,
    t: usize,
    n: usize,
    c: &Counters,
) -> anyhow::Result<Vec<(Connection, String)>> {
    let mut seats = Vec::with_capacity(n);
    for s in 0..n {
        let i = t * n + s;
        ramp(plan, i).await;
        seats.push(signed_in(plan, i).await?);
        c.connected_one();
    }
    Ok(seats)
}

fn game_update(f: &Frame, room: &str) -> Option<Update> {
    match &f.body {
        Body::GameUpdate(v1::GameUpdate {
            room_id,
            update: Some(u),
        }) if room_id == room => Some(u.clone()),
        _ => None,
    }
}

fn action(room: &str, a: Action) -> Body {
    Body::GameAction(v1::GameAction {
        room_id: room.to_owned(),
        action: Some(a),
    })
}

// ----- trivia -----

/// Buzzes of one question by the table's players: (send time, position by receipt).
#[derive(Default)]
struct Buzzes(HashMap<(u64, u32), Vec<(u64, u32)>>);

const QUESTIONS: u32 = 5;

fn trivia_room(plan: &Plan, t: usize, game: u64) -> v1::CreateRoom {
    let questions = (0..QUESTIONS)
        .map(|q| v1::TriviaQuestion {
            text: format!("question {q} of game {game}"),
            answers: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            correct: (q + game as u32) % 4,
            category: "bench".into(),
            difficulty: 1,
        })
        .collect();
    v1::CreateRoom {
        name: format!("bench trivia {t}.{game}"),
        kind: "trivia".into(),
        game: Some(v1::GameConfig {
            config: Some(v1::game_config::Config::Trivia(v1::TriviaConfig {
                questions,
                buzz_window_ms: 2_000,
                answer_ms: 1_000,
                reveal_ms: 100,
                auto_start_players: plan.args.players as u32,
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// A host and `--players` bots; the host makes a room per game, the game starts when the
/// players are in, and each player buzzes within `--buzz-jitter-ms` of each question.
pub(crate) async fn trivia_table(
    plan: &Arc<Plan>,
    t: usize,
    c: &Arc<Counters>,
) -> anyhow::Result<()> {
    let players = plan.args.players.max(1);
    let mut seats = seat_table(plan, t, players + 1, c).await?;
    let (mut host, _) = seats.remove(0);
    sleep_until_ns(plan.start_at_ns).await;
    let buzzes = Arc::new(Mutex::new(Buzzes::default()));
    let mut game = 0u64;
    while now_ns() < plan.end_ns() {
        game += 1;
        let made = host.create_room(trivia_room(plan, t, game)).await?;
        let room = made.room.map(|r| r.id).unwrap_or_default();
        let mut tasks = Vec::new();
        for (seat, (conn, me)) in seats.drain(..).enumerate() {
            let (room, buzzes, plan, c) = (room.clone(), buzzes.clone(), plan.clone(), c.clone());
            tasks.push(tokio::spawn(async move {
                trivia_player(&plan, conn, me, room, game, seat, &buzzes, &c).await
            }));
        }
        // The host sees the whole game as a member; it ends at TriviaOver.
        loop {
            let f = host.next_frame(STALL).await?;
            if let Some(Update::Trivia(v1::TriviaUpdate {
                update: Some(v1::trivia_update::Update::Over(_)),
            })) = game_update(&f, &room)
            {
                break;
            }
        }
        for task in tasks {
            seats.push(task.await??);
        }
        c.add(&c.cycles, 1);
        score_fairness(&buzzes, c);
        host.leave_room(&room).await?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn trivia_player(
    plan: &Plan,
    mut conn: Connection,
    me: String,
    room: String,
    game: u64,
    seat: usize,
    buzzes: &Mutex<Buzzes>,
    c: &Counters,
) -> anyhow::Result<(Connection, String)> {
    conn.join_room(v1::JoinRoom {
        room_id: room.clone(),
        ..Default::default()
    })
    .await?;
    let mut dice = Dice::new(game * 1_000 + seat as u64);
    let jitter = plan.args.buzz_jitter_ms.max(1);
    let mut sent: HashMap<u32, u64> = HashMap::new();
    let mut seen: std::collections::HashSet<u32> = Default::default();
    let trivia = |a| action(&room, Action::Trivia(v1::TriviaAction { action: Some(a) }));
    loop {
        let f = conn.next_frame(STALL).await?;
        let Some(Update::Trivia(v1::TriviaUpdate { update: Some(u) })) = game_update(&f, &room)
        else {
            continue;
        };
        use v1::trivia_update::Update as U;
        match u {
            U::Asked(q) => {
                tokio::time::sleep(Duration::from_millis(dice.below(jitter))).await;
                let at = now_ns();
                conn.send(trivia(v1::trivia_action::Action::Buzz(v1::Buzz {
                    question: q.index,
                })))
                .await?;
                sent.insert(q.index, at);
                c.add(&c.sent, 1);
            }
            U::Buzzed(b) if b.user_id == me => {
                if seen.insert(b.question) {
                    if let Some(at) = sent.get(&b.question) {
                        if c.measuring.load(std::sync::atomic::Ordering::Relaxed) {
                            c.record(now_ns() - at);
                        }
                        c.add(&c.delivered, 1);
                        buzzes
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                            .entry((game, b.question))
                            .or_default()
                            .push((*at, b.position));
                    }
                }
                if b.answering {
                    // Right seven times in ten; the answer is the one the host set.
                    let correct = (b.question + game as u32) % 4;
                    let choice = if dice.below(10) < 7 {
                        correct
                    } else {
                        (correct + 1) % 4
                    };
                    conn.send(trivia(v1::trivia_action::Action::Answer(
                        v1::AnswerTrivia {
                            question: b.question,
                            choice,
                        },
                    )))
                    .await?;
                }
            }
            U::Over(_) => break,
            _ => {}
        }
    }
    conn.leave_room(&room).await?;
    Ok((conn, me))
}

/// Counts, over every pair of buzzes on one question, whether the server's order of
/// receipt kept the order of sending (one clock: every bot is in this process).
fn score_fairness(buzzes: &Mutex<Buzzes>, c: &Counters) {
    let all = std::mem::take(&mut buzzes.lock().unwrap_or_else(|p| p.into_inner()).0);
    for (_, b) in all {
        for (i, x) in b.iter().enumerate() {
            for y in &b[i + 1..] {
                let kept = (x.0 < y.0) == (x.1 < y.1);
                let apart = x.0.abs_diff(y.0) >= 1_000_000;
                c.add(
                    match (kept, apart) {
                        (true, _) => &c.in_order,
                        (false, false) => &c.out_of_order_close,
                        (false, true) => &c.out_of_order,
                    },
                    1,
                );
            }
        }
    }
}

// ----- cards -----

const DECK: usize = 12;

/// A master and `--players` players at a round-robin table of 12 cards: the master deals,
/// each player on turn flips a face-down card, and after every card is up the master
/// deals again.
pub(crate) async fn cards_table(
    plan: &Arc<Plan>,
    t: usize,
    c: &Arc<Counters>,
) -> anyhow::Result<()> {
    let players = plan.args.players.max(1);
    let mut seats = seat_table(plan, t, players + 1, c).await?;
    let (mut master, _) = seats.remove(0);
    let made = master
        .create_room(v1::CreateRoom {
            name: format!("bench cards {t}"),
            kind: "cards".into(),
            game: Some(v1::GameConfig {
                config: Some(v1::game_config::Config::Cards(v1::CardsConfig {
                    faces: (0..DECK).map(|i| format!("F{i}")).collect(),
                    turn_order: v1::TurnOrder::RoundRobin as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        })
        .await
        .context("creating the card table")?;
    let room = made.room.map(|r| r.id).unwrap_or_default();
    let mut tasks = Vec::new();
    for (seat, (conn, me)) in seats.into_iter().enumerate() {
        let (room, plan, c) = (room.clone(), plan.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            card_player(&plan, conn, me, room, seat, &c).await
        }));
    }
    // Everyone is seated before the first deal; a player joining later sees it in its view.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sleep_until_ns(plan.start_at_ns).await;
    let cards = |a| action(&room, Action::Cards(v1::CardsAction { action: Some(a) }));
    while now_ns() < plan.end_ns() {
        master
            .request(
                cards(v1::cards_action::Action::StartRound(v1::StartRound {})),
                STALL,
            )
            .await
            .context("dealing")?;
        let mut up = 0;
        while up < DECK {
            let f = master
                .next_frame(STALL)
                .await
                .context("waiting for flips")?;
            if let Some(Update::Cards(v1::CardsUpdate {
                update: Some(v1::cards_update::Update::Flipped(_)),
            })) = game_update(&f, &room)
            {
                up += 1;
            }
        }
        c.add(&c.cycles, 1);
    }
    master
        .request(
            cards(v1::cards_action::Action::Reset(v1::ResetTable {})),
            STALL,
        )
        .await?;
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn card_player(
    plan: &Plan,
    mut conn: Connection,
    me: String,
    room: String,
    seat: usize,
    c: &Counters,
) -> anyhow::Result<()> {
    conn.join_room(v1::JoinRoom {
        room_id: room.clone(),
        ..Default::default()
    })
    .await
    .context("joining the card table")?;
    let mut dice = Dice::new(seat as u64 + 7);
    let mut down: Vec<u32> = Vec::new();
    let mut flipped_at: Option<u64> = None;
    let cards = |a| action(&room, Action::Cards(v1::CardsAction { action: Some(a) }));
    let end = plan.end_ns();
    loop {
        let f = match conn.next_frame(Duration::from_millis(500)).await {
            Ok(f) => f,
            Err(parlor_client::ClientError::Timeout) if now_ns() < end => continue,
            Err(parlor_client::ClientError::Timeout) => break,
            Err(e) => return Err(e.into()),
        };
        if let Body::Error(e) = &f.body {
            anyhow::bail!("a flip was refused: {} {}", e.code, e.message);
        }
        let Some(Update::Cards(v1::CardsUpdate { update: Some(u) })) = game_update(&f, &room)
        else {
            continue;
        };
        use v1::cards_update::Update as U;
        let turn = match u {
            U::RoundStarted(r) => {
                down = (0..r.cards).collect();
                r.turn_user_id
            }
            U::Flipped(f) => {
                down.retain(|i| *i != f.index);
                if f.by_user_id == me {
                    if let Some(at) = flipped_at.take() {
                        if c.measuring.load(std::sync::atomic::Ordering::Relaxed) {
                            c.record(now_ns() - at);
                        }
                        c.add(&c.delivered, 1);
                    }
                }
                f.turn_user_id
            }
            U::Reset(_) if now_ns() >= end => break,
            _ => continue,
        };
        if turn == me && !down.is_empty() {
            // A player thinks before a flip (`--think-ms` on average), as people do; the
            // room's event rate limit is set for people.
            let think = plan.args.think_ms.max(1);
            tokio::time::sleep(Duration::from_millis(dice.below(2 * think))).await;
            let index = down[dice.below(down.len() as u64) as usize];
            flipped_at = Some(now_ns());
            conn.send(cards(v1::cards_action::Action::Flip(v1::Flip { index })))
                .await?;
            c.add(&c.sent, 1);
        }
    }
    conn.leave_room(&room).await?;
    Ok(())
}

// ----- match -----

/// One player who queues for a match, plays it (both players report the lower user id as
/// the winner, so that they agree), and queues again, until the run ends.
pub(crate) async fn match_player(plan: &Plan, i: usize, c: &Counters) -> anyhow::Result<()> {
    ramp(plan, i).await;
    let (mut conn, me) = signed_in(plan, i).await?;
    c.connected_one();
    sleep_until_ns(plan.start_at_ns).await;
    while now_ns() < plan.end_ns() {
        match one_match(plan, &mut conn, &me, c).await {
            Ok(true) => {}
            Ok(false) => break,
            // A partner who stopped as the run ended: not an error of the run.
            Err(e)
                if now_ns() >= plan.end_ns()
                    && matches!(
                        e.downcast_ref::<parlor_client::ClientError>(),
                        Some(parlor_client::ClientError::Timeout)
                    ) =>
            {
                break
            }
            Err(e) => return Err(e),
        }
    }
    conn.close().await;
    Ok(())
}

/// Queues, plays one match and leaves it; false if the run ended while queued.
async fn one_match(
    plan: &Plan,
    conn: &mut Connection,
    me: &str,
    c: &Counters,
) -> anyhow::Result<bool> {
    {
        let at = now_ns();
        let queued = conn
            .request(
                Body::Matchmake(v1::Matchmake {
                    kind: "match".into(),
                    ..Default::default()
                }),
                STALL,
            )
            .await?;
        let rid = queued.request_id;
        c.add(&c.sent, 1);
        // The last players queued as the run ends may find nobody: they leave the queue.
        let wait = Duration::from_nanos(plan.end_ns().saturating_sub(now_ns())) + STALL / 6;
        let m = match conn
            .wait_for(wait.min(STALL), |f| match &f.body {
                Body::Matched(m) if f.request_id == rid => Some(m.clone()),
                _ => None,
            })
            .await
        {
            Ok(m) => m,
            Err(parlor_client::ClientError::Timeout) if now_ns() >= plan.end_ns() => {
                let cancel = Body::Matchmake(v1::Matchmake {
                    kind: "match".into(),
                    cancel: true,
                    ..Default::default()
                });
                conn.request(cancel, STALL).await?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        };
        if c.measuring.load(std::sync::atomic::Ordering::Relaxed) {
            c.record(now_ns() - at);
        }
        c.add(&c.delivered, 1);
        conn.join_room(v1::JoinRoom {
            room_id: m.room_id.clone(),
            ..Default::default()
        })
        .await?;
        // Both seated: the second to join sees it in its view, the first as an event.
        conn.wait_for(STALL, |f| match &f.body {
            Body::GameView(v1::GameView {
                view: Some(v1::game_view::View::Match(v)),
                ..
            }) if v.players.len() == 2 => Some(()),
            _ => match game_update(f, &m.room_id) {
                Some(Update::Match(v1::MatchUpdate {
                    update: Some(v1::match_update::Update::Seated(_)),
                })) => Some(()),
                _ => None,
            },
        })
        .await
        .context("waiting for the other player")?;
        let winner = m.players.iter().min().cloned().unwrap_or_default();
        conn.game_action(
            &m.room_id,
            Action::Match(v1::MatchAction {
                action: Some(v1::match_action::Action::Report(v1::ReportResult {
                    winner_user_id: winner.clone(),
                    draw: false,
                })),
            }),
        )
        .await?;
        conn.wait_for(STALL, |f| match game_update(f, &m.room_id) {
            Some(Update::Match(v1::MatchUpdate {
                update: Some(v1::match_update::Update::Settled(_)),
            })) => Some(()),
            _ => None,
        })
        .await?;
        if winner == me {
            c.add(&c.cycles, 1);
        }
        conn.leave_room(&m.room_id).await?;
    }
    Ok(true)
}
