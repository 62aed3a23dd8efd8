//! StatsTracker: sums activity counters from room actors and writes them to the Store in
//! batches. A failed write keeps the counters (bounded) and retries on the next tick.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture, Supervised,
    WrapFuture,
};
use parlor_store::{Stats, StatsDelta, StatsSubject, Store};

use crate::Metrics;

/// Subjects kept while the store is failing; past this, the oldest data is dropped and logged.
const MAX_PENDING: usize = 100_000;

/// Batches counters into the store.
pub(crate) struct StatsTracker {
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    pending: HashMap<StatsSubject, Stats>,
    writing: bool,
}

impl StatsTracker {
    pub(crate) fn new(store: Store, metrics: Arc<Metrics>, every: Duration) -> Self {
        Self {
            store,
            metrics,
            every,
            pending: HashMap::new(),
            writing: false,
        }
    }

    fn merge(&mut self, batch: Vec<StatsDelta>) {
        for d in batch {
            self.pending.entry(d.subject).or_default().add(&d.add);
        }
        if self.pending.len() > MAX_PENDING {
            tracing::error!(
                subjects = self.pending.len(),
                "stats backlog over its bound; dropping it"
            );
            self.pending.clear();
        }
        self.metrics.stats_pending.set(self.pending.len() as i64);
    }

    /// Takes everything pending into one write; `force` writes even while another write is
    /// in flight (the store adds, so two writes commute).
    fn write(
        &mut self,
        force: bool,
    ) -> Option<impl std::future::Future<Output = (Vec<StatsDelta>, bool)> + use<>> {
        if self.pending.is_empty() || (self.writing && !force) {
            return None;
        }
        self.writing = true;
        let batch: Vec<StatsDelta> = self
            .pending
            .drain()
            .map(|(subject, add)| StatsDelta { subject, add })
            .collect();
        let store = self.store.clone();
        Some(async move {
            match store.stats.add_stats(&batch).await {
                Ok(()) => (batch, true),
                Err(e) => {
                    tracing::warn!(error = %e, "stats write failed; will retry");
                    (batch, false)
                }
            }
        })
    }
}

impl Actor for StatsTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| {
            if let Some(fut) = act.write(false) {
                ctx.spawn(fut.into_actor(act).map(|(batch, ok), act, _| {
                    act.writing = false;
                    if !ok {
                        act.merge(batch);
                    }
                    act.metrics.stats_pending.set(act.pending.len() as i64);
                }));
            }
        });
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
    fn handle(&mut self, msg: Record, _: &mut Context<Self>) {
        self.merge(msg.batch);
    }
}

/// Writes everything pending now; answers whether the store took it.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct Flush;

impl Handler<Flush> for StatsTracker {
    type Result = ResponseActFuture<Self, bool>;
    fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
        match self.write(true) {
            None => Box::pin(actix::fut::ready(true)),
            Some(fut) => Box::pin(fut.into_actor(self).map(|(batch, ok), act, _| {
                act.writing = false;
                if !ok {
                    act.merge(batch);
                }
                act.metrics.stats_pending.set(act.pending.len() as i64);
                ok
            })),
        }
    }
}
