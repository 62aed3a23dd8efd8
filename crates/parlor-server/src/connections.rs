//! ConnectionManager: this pod's sessions by user, for private messages, presence and drain.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix::{
    Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, Recipient, Supervised,
    WrapFuture,
};
use bytes::Bytes;
use parlor_cluster::Presence;
use parlor_core::UserId;

use crate::{
    stats::{Record, StatsTracker},
    ws::{Outbox, SessionNotice},
    Metrics,
};

struct Entry {
    user: UserId,
    notify: Recipient<SessionNotice>,
    outbox: Outbox,
}

/// Tracks local sessions.
pub(crate) struct ConnectionManager {
    pod: String,
    presence: Arc<dyn Presence>,
    /// How long this pod's presence lasts unless it heartbeats again.
    ttl: Duration,
    metrics: Arc<Metrics>,
    /// Counts sessions. On this actor's thread, so counting costs a session no extra hop.
    user_stats: Addr<StatsTracker>,
    sessions: HashMap<String, Entry>,
    by_user: HashMap<UserId, Vec<String>>,
    /// Sessions must be listed in presence again (the last try failed).
    relist: bool,
}

impl ConnectionManager {
    pub(crate) fn new(
        pod: String,
        presence: Arc<dyn Presence>,
        ttl: Duration,
        metrics: Arc<Metrics>,
        user_stats: Addr<StatsTracker>,
    ) -> Self {
        Self {
            pod,
            presence,
            ttl,
            metrics,
            user_stats,
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            relist: false,
        }
    }
}

impl Actor for ConnectionManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        ctx.run_interval(self.ttl / 3, |act, ctx| act.beat(ctx));
    }
}

impl ConnectionManager {
    /// Refreshes this pod's presence and sweeps the sessions of pods that stopped.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        let (presence, pod, ttl) = (self.presence.clone(), self.pod.clone(), self.ttl);
        let fut = async move {
            let fresh = presence.heartbeat(&pod, ttl).await;
            let rest = async {
                let swept = presence.sweep().await?;
                let pods = presence.pods().await?.len();
                Ok::<_, parlor_cluster::ClusterError>((swept, pods))
            };
            let rest = match fresh {
                Ok(_) => rest.await,
                Err(ref e) => Err(e.clone()),
            };
            (fresh, rest)
        };
        ctx.spawn(fut.into_actor(self).map(|(fresh, rest), act, ctx| {
            // Kept even if the sweep fails: the next ZADD would not say it again.
            act.relist |= matches!(fresh, Ok(true));
            if act.relist && !act.sessions.is_empty() {
                act.relist(ctx);
            }
            match rest {
                Ok((swept, pods)) => {
                    act.metrics.pods.set(pods as i64);
                    if swept > 0 {
                        tracing::info!(swept, "sessions of stopped pods swept");
                        act.metrics.sessions_swept.inc_by(swept as u64);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "presence heartbeat failed"),
            }
        }));
    }
}

impl ConnectionManager {
    /// Lists every local session in presence again: this pod's registration had lapsed
    /// (Redis was unreachable for longer than the TTL) and other pods swept its sessions.
    fn relist(&mut self, ctx: &mut Context<Self>) {
        self.relist = false;
        tracing::info!(
            sessions = self.sessions.len(),
            "presence lapsed; listing sessions again"
        );
        let (presence, pod) = (self.presence.clone(), self.pod.clone());
        let all: Vec<(UserId, String)> = self
            .sessions
            .iter()
            .map(|(id, e)| (e.user.clone(), id.clone()))
            .collect();
        let listing = all.clone();
        let fut = async move {
            let listed = listing.iter().map(|(u, s)| presence.online(u, s, &pod));
            futures_util::future::join_all(listed).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, _| {
            if let Some(Err(e)) = res.into_iter().find(Result::is_err) {
                tracing::warn!(error = %e, "listing sessions again failed; the next beat retries");
                act.relist = true;
            }
            // A session that ended during the relisting may have had its `offline` land
            // before the relisting's `online`: take it off again.
            for (user, session) in all {
                if !act.sessions.contains_key(&session) {
                    let (presence, pod) = (act.presence.clone(), act.pod.clone());
                    actix::spawn(async move {
                        let _ = presence.offline(&user, &session, &pod).await;
                    });
                }
            }
        }));
    }
}

impl Supervised for ConnectionManager {}

/// A session was welcomed.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Connect {
    pub(crate) session_id: String,
    pub(crate) user_id: UserId,
    /// An account, not a visitor: its sessions are counted.
    pub(crate) account: bool,
    pub(crate) addr: Recipient<SessionNotice>,
    pub(crate) outbox: Outbox,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Disconnect {
    pub(crate) session_id: String,
    pub(crate) user_id: UserId,
}

/// Delivers a frame to every local session of a user; returns how many got it.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct DirectMessage {
    pub(crate) to: UserId,
    pub(crate) frame: Bytes,
}

/// Tells every session to reconnect elsewhere; returns how many were told.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Drain {
    pub(crate) reason: String,
}

/// Closes every local session of a user (the account was deleted).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct CloseUser {
    pub(crate) user_id: UserId,
}

impl Handler<CloseUser> for ConnectionManager {
    type Result = ();
    fn handle(&mut self, msg: CloseUser, _: &mut Context<Self>) {
        for id in self.by_user.get(&msg.user_id).into_iter().flatten() {
            if let Some(e) = self.sessions.get(id) {
                e.notify.do_send(SessionNotice::Close {
                    code: parlor_protocol::close::AUTH_FAILED,
                    reason: "account deleted".into(),
                });
            }
        }
    }
}

/// How many sessions are open.
#[derive(Message)]
#[rtype(result = "usize")]
pub(crate) struct Count;

impl Handler<Connect> for ConnectionManager {
    type Result = ();
    fn handle(&mut self, msg: Connect, _: &mut Context<Self>) {
        if msg.account {
            self.user_stats.do_send(Record {
                batch: vec![parlor_store::StatsDelta {
                    subject: parlor_store::StatsSubject::User(msg.user_id.clone()),
                    add: parlor_store::Stats {
                        sessions: 1,
                        ..Default::default()
                    },
                }],
            });
        }
        let presence = self.presence.clone();
        let (user, session, pod) = (
            msg.user_id.clone(),
            msg.session_id.clone(),
            self.pod.clone(),
        );
        actix::spawn(async move {
            let _ = presence.online(&user, &session, &pod).await;
        });
        self.by_user
            .entry(msg.user_id.clone())
            .or_default()
            .push(msg.session_id.clone());
        self.sessions.insert(
            msg.session_id,
            Entry {
                user: msg.user_id,
                notify: msg.addr,
                outbox: msg.outbox,
            },
        );
    }
}

impl Handler<Disconnect> for ConnectionManager {
    type Result = ();
    fn handle(&mut self, msg: Disconnect, _: &mut Context<Self>) {
        if let Some(e) = self.sessions.remove(&msg.session_id) {
            if let Some(list) = self.by_user.get_mut(&e.user) {
                list.retain(|s| s != &msg.session_id);
                if list.is_empty() {
                    self.by_user.remove(&e.user);
                }
            }
        }
        let (presence, pod) = (self.presence.clone(), self.pod.clone());
        actix::spawn(async move {
            let _ = presence.offline(&msg.user_id, &msg.session_id, &pod).await;
        });
    }
}

impl Handler<DirectMessage> for ConnectionManager {
    type Result = usize;
    fn handle(&mut self, msg: DirectMessage, _: &mut Context<Self>) -> usize {
        let Some(ids) = self.by_user.get(&msg.to) else {
            return 0;
        };
        ids.iter()
            .filter_map(|id| self.sessions.get(id))
            .filter(|e| e.outbox.push(msg.frame.clone()))
            .count()
    }
}

impl Handler<Drain> for ConnectionManager {
    type Result = usize;
    fn handle(&mut self, msg: Drain, _: &mut Context<Self>) -> usize {
        for e in self.sessions.values() {
            e.notify.do_send(SessionNotice::Drain {
                reason: msg.reason.clone(),
            });
        }
        self.sessions.len()
    }
}

impl Handler<Count> for ConnectionManager {
    type Result = usize;
    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.sessions.len()
    }
}
