//! StatsTracker: sums activity counters and writes them to the Store in batches, every
//! `stats.flush_interval_ms` or once `stats.flush_records` subjects are pending. A pod runs
//! two: the UserStatsTracker (sessions, time in rooms, chat, events, joins, games) and the
//! RoomStatsTracker (chat, events, joins, peak members). A failed batch is kept as it is
//! and retried on the next tick; Flush (at shutdown) writes everything.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Duration,
};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture, Supervised,
    WrapFuture,
};
use parlor_store::{Stats, StatsBatch, StatsDelta, StatsSubject, Store};

use crate::Metrics;

/// Subjects kept while the store is failing. Past this, increments for new subjects are
/// refused (counted in `parlor_store_refused_writes_total{kind}`, by tracker) rather than
/// letting memory grow; subjects already pending keep adding up.
const MAX_PENDING: usize = 100_000;

/// Batches counters into the store. Each batch has an id, so a retry after a write that
/// timed out but landed counts once; a failed batch is retried, as it was, before any
/// newer one is written.
pub(crate) struct StatsTracker {
    /// `user_stats` or `room_stats`: the metrics label.
    name: &'static str,
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    /// Pending subjects that trigger a write before the interval.
    max_pending: usize,
    pending: HashMap<StatsSubject, Stats>,
    failed: VecDeque<StatsBatch>,
    writing: bool,
}

/// How a batch fared.
#[derive(Clone, Copy, PartialEq)]
enum Outcome {
    Written,
    Failed,
    /// Not tried, after an earlier batch failed: it keeps its place for the retry.
    Skipped,
}

async fn write_all(store: Store, batches: Vec<StatsBatch>) -> Vec<(StatsBatch, Outcome)> {
    let mut done = Vec::with_capacity(batches.len());
    let mut failed = false;
    for b in batches {
        let outcome = if failed {
            Outcome::Skipped
        } else {
            match store.stats.add_stats(&b).await {
                Ok(()) => Outcome::Written,
                Err(e) => {
                    tracing::warn!(error = %e, batch = %b.id, "stats write failed; will retry");
                    failed = true;
                    Outcome::Failed
                }
            }
        };
        done.push((b, outcome));
    }
    done
}

impl StatsTracker {
    pub(crate) fn new(
        name: &'static str,
        store: Store,
        metrics: Arc<Metrics>,
        every: Duration,
        max_pending: usize,
    ) -> Self {
        Self {
            name,
            store,
            metrics,
            every,
            max_pending: max_pending.max(1),
            pending: HashMap::new(),
            failed: VecDeque::new(),
            writing: false,
        }
    }

    fn merge(&mut self, batch: Vec<StatsDelta>) {
        let mut refused = 0u64;
        for d in batch {
            if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&d.subject) {
                refused += 1;
                continue;
            }
            self.pending.entry(d.subject).or_default().add(&d.add);
        }
        if refused > 0 {
            tracing::error!(
                refused,
                "stats backlog full; increments for new subjects refused"
            );
            self.metrics
                .store_refused_writes
                .with_label_values(&[self.name])
                .inc_by(refused);
        }
        self.gauge();
    }

    fn gauge(&self) {
        let queued: usize = self.failed.iter().map(|b| b.deltas.len()).sum();
        self.metrics
            .stats_pending
            .with_label_values(&[self.name])
            .set((self.pending.len() + queued) as i64);
    }

    /// The batches to write now: the failed ones, oldest first, then what is pending. With
    /// `all` false, only the first of them.
    fn take(&mut self, all: bool) -> Vec<StatsBatch> {
        if !self.pending.is_empty() && (all || self.failed.is_empty()) {
            let deltas = self
                .pending
                .drain()
                .map(|(subject, add)| StatsDelta { subject, add })
                .collect();
            self.failed.push_back(StatsBatch {
                id: parlor_core::new_id("sb_"),
                deltas,
            });
        }
        let n = if all { self.failed.len() } else { 1 };
        self.failed.drain(..n.min(self.failed.len())).collect()
    }

    /// Writes the next batch, unless one is in flight.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        let batches = self.take(false);
        if batches.is_empty() {
            return;
        }
        self.writing = true;
        let fut = write_all(self.store.clone(), batches);
        ctx.spawn(fut.into_actor(self).map(|done, act, _| act.finished(done)));
    }

    /// Puts written batches' outcomes back: failures return to the front, in order.
    fn finished(&mut self, done: Vec<(StatsBatch, Outcome)>) {
        self.writing = false;
        for (b, outcome) in done.into_iter().rev() {
            if outcome == Outcome::Written {
                self.metrics.tracker_wrote(self.name, b.deltas.len());
            } else {
                if outcome == Outcome::Failed {
                    self.metrics
                        .store_retries
                        .with_label_values(&[self.name])
                        .inc();
                }
                self.failed.push_front(b);
            }
        }
        self.gauge();
    }
}

impl Actor for StatsTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for StatsTracker {}

/// Counters to add.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Record {
    pub(crate) batch: Vec<StatsDelta>,
}

impl Handler<Record> for StatsTracker {
    type Result = ();
    fn handle(&mut self, msg: Record, ctx: &mut Context<Self>) {
        self.merge(msg.batch);
        if self.pending.len() >= self.max_pending {
            self.tick(ctx);
        }
    }
}

/// Writes everything pending now; answers whether the store took it.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Flush;

impl Handler<Flush> for StatsTracker {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        // Everything, even while a periodic write is in flight: batches have distinct ids,
        // so two writes in flight commute.
        let batches = self.take(true);
        Box::pin(
            write_all(self.store.clone(), batches)
                .into_actor(self)
                .map(|done, act, _| {
                    let ok = done.iter().all(|(_, o)| *o == Outcome::Written);
                    let periodic = act.writing;
                    act.finished(done);
                    act.writing = periodic;
                    ok
                }),
        )
    }
}
