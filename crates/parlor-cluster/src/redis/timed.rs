//! A command connection that times every round trip, by command (bounded labels).

use std::time::Instant;

use redis::{aio::ConnectionLike, Arg, Cmd, Pipeline, RedisFuture, Value};

use super::conn::Con;
use crate::Observer;

/// The commands Parlor sends, as metric labels; anything else is `other`.
const KNOWN: [&str; 18] = [
    "evalsha",
    "eval",
    "get",
    "set",
    "del",
    "hget",
    "hgetall",
    "xrange",
    "publish",
    "spublish",
    "wait",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zcard",
    "smembers",
    "script",
    "ping",
];

fn label(cmd: &Cmd) -> &'static str {
    let Some(Arg::Simple(name)) = cmd.args_iter().next() else {
        return "other";
    };
    KNOWN
        .iter()
        .find(|k| name.eq_ignore_ascii_case(k.as_bytes()))
        .copied()
        .unwrap_or("other")
}

/// A connection with an observer on each round trip.
#[derive(Clone)]
pub(super) struct Timed {
    pub(super) inner: Con,
    pub(super) observe: Option<Observer>,
}

impl Timed {
    fn done(&self, op: &'static str, started: Instant, ok: bool) {
        if let Some(o) = &self.observe {
            o(op, started.elapsed(), ok);
        }
    }
}

impl ConnectionLike for Timed {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let (op, started) = (label(cmd), Instant::now());
        Box::pin(async move {
            let r = self.inner.req_packed_command(cmd).await;
            self.done(op, started, r.is_ok());
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let started = Instant::now();
        Box::pin(async move {
            let r = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.done("pipeline", started, r.is_ok());
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}
