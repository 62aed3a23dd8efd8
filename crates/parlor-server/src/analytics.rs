//! AnalyticsTracker: batches the analytics stream (sign-ups, logins, rooms created, games
//! finished) into the store, every `stats.flush_interval_ms` or once `stats.flush_records`
//! events wait. A failed batch goes back to the front, with its ids, so a retry never
//! duplicates; past `MAX_PENDING` new events are refused and counted.

use std::{sync::Arc, time::Duration};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, Supervised, WrapFuture,
};
use parlor_store::{AnalyticsEvent, Store};

use crate::Metrics;

/// Events kept while the store refuses them.
const MAX_PENDING: usize = 100_000;
/// The tracker's name in metrics.
const NAME: &str = "analytics";
/// Most events per write.
const BATCH: usize = 1_000;

pub(crate) struct AnalyticsTracker {
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    max_pending: usize,
    pending: Vec<AnalyticsEvent>,
    writing: bool,
}

impl AnalyticsTracker {
    pub(crate) fn new(
        store: Store,
        metrics: Arc<Metrics>,
        every: Duration,
        max_pending: usize,
    ) -> Self {
        Self {
            store,
            metrics,
            every,
            max_pending: max_pending.max(1),
            pending: Vec::new(),
            writing: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.pending.is_empty() {
            return;
        }
        self.writing = true;
        let batch: Vec<_> = self
            .pending
            .drain(..self.pending.len().min(BATCH))
            .collect();
        let store = self.store.clone();
        let fut = async move {
            let res = store.analytics.append_events(&batch).await;
            (batch, res)
        };
        ctx.spawn(fut.into_actor(self).map(|(batch, res), act, _| {
            act.writing = false;
            match res {
                Ok(()) => act.metrics.tracker_wrote(NAME, batch.len()),
                Err(e) => {
                    tracing::warn!(error = %e, events = batch.len(), "analytics write failed; will retry");
                    act.metrics.store_retries.with_label_values(&[NAME]).inc();
                    act.pending.splice(0..0, batch);
                }
            }
        }));
    }
}

impl Actor for AnalyticsTracker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.every, |act, ctx| act.tick(ctx));
    }
}

impl Supervised for AnalyticsTracker {}

/// An event for the stream.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Track(pub(crate) AnalyticsEvent);

impl Handler<Track> for AnalyticsTracker {
    type Result = ();
    fn handle(&mut self, msg: Track, ctx: &mut Context<Self>) {
        if self.pending.len() >= MAX_PENDING {
            self.metrics
                .store_refused_writes
                .with_label_values(&[NAME])
                .inc();
            return;
        }
        self.pending.push(msg.0);
        if self.pending.len() >= self.max_pending {
            self.tick(ctx);
        }
    }
}

/// Writes what is pending now (shutdown); answers whether the store took it all.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct FlushAnalytics;

impl Handler<FlushAnalytics> for AnalyticsTracker {
    type Result = actix::ResponseFuture<bool>;
    fn handle(&mut self, _: FlushAnalytics, _: &mut Context<Self>) -> Self::Result {
        let batch = std::mem::take(&mut self.pending);
        let store = self.store.clone();
        Box::pin(
            async move { batch.is_empty() || store.analytics.append_events(&batch).await.is_ok() },
        )
    }
}
