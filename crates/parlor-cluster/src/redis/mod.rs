//! The Redis broker and leases.
//!
//! Every key and channel of a room carries the hash tag `{room_id}`, so that each script
//! touches one slot and the layout is ready for Redis Cluster:
//! - `P:{R}:lease`: the home pod's lease, `pod|epoch`, with a TTL (PX).
//! - `P:{R}:epoch`: the newest epoch handed out, so a new home gets a higher one.
//! - `P:{R}:state`: the checkpoint hash: `seq` plus one field per part (`checkpoint.rs`).
//! - `P:{R}:hist`: the history stream; entry ID `seq-1`, fields `t` (ms) and `f` (frame).
//! - `P:{R}:events`: the room channel; each message is a final frame.
//! - `P:pod:{POD}:probe`: a pod's own channel, for the liveness probe of its subscription.
//!
//! Two connections per pod: one for commands and one for subscriptions. On a single Redis
//! both are `ConnectionManager`s, which reconnect with backoff; on a Redis Cluster both are
//! cluster connections, which follow slot moves and failovers (`conn.rs`). Either way the
//! subscription one resubscribes by itself (RESP3); on a cluster the watch also subscribes
//! again what a failover may have left on a dead master. After a reconnect the position
//! check fills what was missed.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::Duration,
};

use futures_util::future::join_all;
use parlor_core::RoomId;
use redis::{
    aio::ConnectionManagerConfig, cluster::ClusterClientBuilder, IntoConnectionInfo,
    ProtocolVersion, PushInfo, RedisError, Value,
};

use self::{
    conn::{publish_cmd, Con},
    events::{healer, on_push, Subs},
    scripts::Scripts,
};
use crate::{ClusterError, Health, Result, Retention, Settings};

mod conn;
mod directory;
mod events;
mod inbox;
mod lease;
mod presence;
mod queues;
mod scripts;
mod timed;

/// How to reach Redis and what to keep there.
#[derive(Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`; RESP3 is switched on whatever the URL says.
    pub url: String,
    /// For a Redis Cluster: its seed nodes' URLs (`url` is then unused). Empty for a
    /// single Redis.
    pub cluster_urls: Vec<String>,
    /// Prefix of every key and channel.
    pub prefix: String,
    /// This pod's name.
    pub pod: String,
    /// Lease time.
    pub lease: Duration,
    /// History per room.
    pub retention: Retention,
    /// How often the position check and the liveness probe run.
    pub probe_every: Duration,
    /// Told of each command round trip.
    pub observer: Option<crate::Observer>,
    /// Before an event counts as recorded, this many replicas must have it (WAIT), for at
    /// most `wait`; 0 does not wait.
    pub wait_replicas: u32,
    pub wait: Duration,
}

impl From<&Settings> for RedisOptions {
    fn from(s: &Settings) -> Self {
        Self {
            url: s.redis_url.clone(),
            cluster_urls: match s.redis_mode.as_str() {
                "cluster" => s.redis_urls.clone(),
                _ => Vec::new(),
            },
            prefix: s.key_prefix.clone(),
            pod: s.pod.clone(),
            lease: s.lease,
            retention: s.retention,
            probe_every: s.probe_every,
            observer: None,
            wait_replicas: s.wait_replicas,
            wait: s.wait,
        }
    }
}

/// Probes that may go unanswered before the subscription counts as dead.
const PROBES_MISSED: u64 = 3;

/// Key and channel names (module docs).
#[derive(Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn room(&self, room: &RoomId, what: &str) -> String {
        format!("{}:{{{}}}:{what}", self.prefix, room)
    }

    fn channel(&self, room: &RoomId) -> String {
        self.room(room, "events")
    }

    fn inbox(&self, pod: &str) -> String {
        format!("{}:pod:{{{pod}}}:inbox", self.prefix)
    }

    fn probe(&self, pod: &str) -> String {
        format!("{}:pod:{{{pod}}}:probe", self.prefix)
    }

    /// The room a channel belongs to.
    fn room_of(&self, channel: &[u8]) -> Option<RoomId> {
        let s = std::str::from_utf8(channel).ok()?;
        let rest = s.strip_prefix(self.prefix.as_str())?.strip_prefix(":{")?;
        Some(RoomId(rest.strip_suffix("}:events")?.to_owned()))
    }
}

/// A room id becomes part of key names: braces would break the hash tag.
fn checked(room: &RoomId) -> Result<()> {
    if room.0.is_empty() || room.0.contains(['{', '}']) {
        return Err(ClusterError::NoSuchRoom);
    }
    Ok(())
}

fn unavailable(e: RedisError) -> ClusterError {
    let text = e.to_string();
    if text.contains("FENCED") {
        ClusterError::Fenced(e.detail().unwrap_or(&text).to_owned())
    } else {
        ClusterError::Unavailable(text)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cluster broker and leases, on one Redis.
pub struct RedisBackend {
    opts: RedisOptions,
    keys: Keys,
    cmd: Con,
    sub: Con,
    subs: Arc<Subs>,
    scripts: Arc<Scripts>,
    queue_scripts: queues::QueueScripts,
    /// Serialises subscribe and unsubscribe, so that a room's channel is subscribed once.
    sub_lock: tokio::sync::Mutex<()>,
    next_sub: AtomicU64,
    /// When a command last failed for want of Redis (ms since the epoch; 0 never). On a
    /// Redis Cluster, commands to the other masters go on working meanwhile, so readiness
    /// looks at the newest failure, not at the newest answer.
    failed_at: AtomicU64,
    probe_ok: AtomicBool,
    publishes: tokio::sync::mpsc::UnboundedSender<Job>,
}

/// One queued publish.
struct Job {
    cmd: redis::Cmd,
    kind: JobKind,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// What a job's command is, for a retry with a script's body and for the fan-out.
pub(super) enum JobKind {
    /// The publish script, which fans the event out itself.
    Publish,
    /// The record script; once it succeeded and replicas have the event, this command
    /// publishes it.
    Record(redis::Cmd),
    /// A plain command (an inbox message).
    Plain,
}

/// How the publisher waits for replicas before an event counts as recorded.
struct Replication {
    /// (replicas, at most this long); None does not wait.
    wait: Option<(u32, Duration)>,
    /// Where short waits are counted.
    subs: Arc<Subs>,
}

/// After a WAIT that came back short (a master without a replica in sync), publishes do
/// not wait for this long: each batch would stall for the whole wait.
const UNREPLICATED_PAUSE: Duration = Duration::from_secs(10);

/// A batch's jobs by hash tag, in order within each tag: on a Redis Cluster each group is
/// one slot, sent as its own pipeline, so that a failed master fails only its own rooms.
fn by_tag(jobs: Vec<Job>, sharded: bool) -> Vec<Vec<Job>> {
    if !sharded {
        return vec![jobs];
    }
    // Grouped by index with the tags borrowed from the jobs: no copy of a tag per job.
    let groups = conn::group_by(0..jobs.len(), |&i| conn::tag_of(&jobs[i].cmd));
    let mut jobs: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    groups
        .into_iter()
        .map(|g| g.into_iter().filter_map(|i| jobs[i].take()).collect())
        .collect()
}

/// Sends `cmds` as one pipeline; a call Redis lacks the script of goes again once, in
/// order, with the body (scripts.rs), which `body` gives for command `i`.
async fn run_all(
    con: &mut timed::Timed,
    cmds: Vec<redis::Cmd>,
    body: impl Fn(usize, &redis::Cmd) -> Option<redis::Cmd>,
) -> Vec<redis::RedisResult<Value>> {
    let n = cmds.len();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for c in cmds {
        pipe.add_command(c);
    }
    let mut results: Vec<redis::RedisResult<Value>> = match pipe.query_async(con).await {
        Ok(r) => r,
        Err(e) => return (0..n).map(|_| Err(e.clone())).collect(),
    };
    let mut again = redis::pipe();
    again.ignore_errors();
    let mut at = Vec::new();
    for (i, (cmd, r)) in pipe.cmd_iter().zip(&results).enumerate() {
        if !matches!(r, Err(e) if scripts::no_script(e)) {
            continue;
        }
        if let Some(c) = body(i, cmd) {
            again.add_command(c);
            at.push(i);
        }
    }
    if !at.is_empty() {
        match again
            .query_async::<Vec<redis::RedisResult<Value>>>(con)
            .await
        {
            Ok(r) => at.into_iter().zip(r).for_each(|(i, r)| results[i] = r),
            Err(e) => at.into_iter().for_each(|i| results[i] = Err(e.clone())),
        }
    }
    results
}

/// Sends queued publishes as pipelines, in order, so that a room's events reach Redis in
/// the order its home made them, while many are in flight at once. When replicas must
/// have each event first: record every job, WAIT for the replicas, then fan the recorded
/// events out, and only then answer, so nothing is seen or acknowledged that a failover
/// could lose.
async fn publisher(
    con: timed::Timed,
    scripts: Arc<Scripts>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
    replication: Replication,
) {
    let sharded = con.inner.sharded();
    let mut batch = Vec::new();
    let mut paused_until: Option<std::time::Instant> = None;
    while rx.recv_many(&mut batch, 512).await > 0 {
        let groups = by_tag(std::mem::take(&mut batch), sharded);
        let recorded = groups.into_iter().map(|mut jobs| {
            let (mut con, scripts) = (con.clone(), scripts.clone());
            async move {
                let cmds = jobs
                    .iter_mut()
                    .map(|j| std::mem::take(&mut j.cmd))
                    .collect();
                let results = run_all(&mut con, cmds, |i, c| match jobs[i].kind {
                    JobKind::Publish => Some(scripts.publish.with_body(c)),
                    JobKind::Record(_) => Some(scripts.record.with_body(c)),
                    JobKind::Plain => None,
                })
                .await;
                (jobs, results)
            }
        });
        let mut recorded = join_all(recorded).await;
        let fan_out = recorded.iter().any(|(jobs, results)| {
            jobs.iter()
                .zip(results)
                .any(|(j, r)| r.is_ok() && matches!(j.kind, JobKind::Record(_)))
        });
        if fan_out {
            let paused = paused_until.is_some_and(|t| t > std::time::Instant::now());
            if let (Some((n, ms)), false) = (replication.wait, paused) {
                // To every master: each waits for the writes this pod sent it.
                let r: redis::RedisResult<i64> = redis::cmd("WAIT")
                    .arg(n)
                    .arg(ms.as_millis().max(1) as u64)
                    .query_async(&mut con.clone())
                    .await;
                if !matches!(r, Ok(got) if got >= i64::from(n)) {
                    replication
                        .subs
                        .unreplicated
                        .fetch_add(1, Ordering::Relaxed);
                    paused_until = Some(std::time::Instant::now() + UNREPLICATED_PAUSE);
                    tracing::warn!(
                        "events recorded without their replicas; not waiting for replicas for a while"
                    );
                }
            }
            // Fan-outs that fail are healed from history by the pods (position check).
            let fanouts = recorded.iter_mut().map(|(jobs, results)| {
                let cmds: Vec<redis::Cmd> = jobs
                    .iter_mut()
                    .zip(results.iter())
                    .filter_map(|(j, r)| match (&mut j.kind, r) {
                        (JobKind::Record(f), Ok(_)) => Some(std::mem::take(f)),
                        _ => None,
                    })
                    .collect();
                let mut con = con.clone();
                async move {
                    if !cmds.is_empty() {
                        run_all(&mut con, cmds, |_, _| None).await;
                    }
                }
            });
            join_all(fanouts).await;
        }
        for (jobs, results) in recorded {
            for (j, r) in jobs.into_iter().zip(results) {
                let _ = j.done.send(r.map(|_| ()).map_err(unavailable));
            }
        }
    }
}

impl RedisBackend {
    /// Connects both connections, subscribes the probe channel and starts the position
    /// check. Fails if Redis cannot be reached now.
    pub async fn connect(opts: RedisOptions) -> Result<Arc<Self>> {
        if opts.prefix.is_empty() || opts.prefix.contains(['{', '}']) {
            return Err(ClusterError::Config(format!(
                "cluster.key_prefix {:?} must be non-empty and without braces",
                opts.prefix
            )));
        }
        let keys = Keys {
            prefix: opts.prefix.clone(),
        };
        let subs = Arc::new(Subs::new(keys.clone()));
        let (heal_tx, heal_rx) = tokio::sync::mpsc::unbounded_channel();
        let on_push = {
            let subs = Arc::downgrade(&subs);
            let probe = keys.probe(&opts.pod);
            move |info: PushInfo| {
                if let Some(subs) = subs.upgrade() {
                    on_push(&subs, &probe, info, &heal_tx);
                }
                Ok::<(), redis::aio::SendError>(())
            }
        };
        let (cmd, mut sub) = if opts.cluster_urls.is_empty() {
            connect_one(&opts.url, on_push).await?
        } else {
            connect_cluster(&opts.cluster_urls, on_push).await?
        };
        let sharded = cmd.sharded();
        let scripts = Arc::new(Scripts::new(sharded));
        sub.subscribe(&keys.probe(&opts.pod))
            .await
            .map_err(unavailable)?;
        let (publishes, queue) = tokio::sync::mpsc::unbounded_channel();
        let timed = timed::Timed {
            inner: cmd.clone(),
            observe: opts.observer.clone(),
        };
        let wait = (opts.wait_replicas > 0).then_some((opts.wait_replicas, opts.wait));
        let replication = Replication {
            wait,
            subs: subs.clone(),
        };
        tokio::spawn(publisher(timed, scripts.clone(), queue, replication));
        let me = Arc::new(Self {
            publishes,
            opts,
            keys,
            cmd,
            sub,
            subs,
            scripts,
            queue_scripts: queues::QueueScripts::new(),
            sub_lock: tokio::sync::Mutex::new(()),
            next_sub: AtomicU64::new(1),
            failed_at: AtomicU64::new(0),
            probe_ok: AtomicBool::new(true),
        });
        tokio::spawn(healer(Arc::downgrade(&me), heal_rx));
        tokio::spawn(watch(Arc::downgrade(&me)));
        Ok(me)
    }

    fn con(&self) -> timed::Timed {
        timed::Timed {
            inner: self.cmd.clone(),
            observe: self.opts.observer.clone(),
        }
    }

    fn seen<T>(&self, r: std::result::Result<T, RedisError>) -> Result<T> {
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let e = unavailable(e);
                if matches!(e, ClusterError::Unavailable(_)) {
                    let now = u64::try_from(parlor_core::now_ms()).unwrap_or(0);
                    self.failed_at.fetch_max(now, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }
}

/// How long connecting, and each answer, may take before Redis counts as unreachable.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The command and subscription connections to a single Redis.
async fn connect_one(
    url: &str,
    on_push: impl Fn(PushInfo) -> std::result::Result<(), redis::aio::SendError> + Send + Sync + 'static,
) -> Result<(Con, Con)> {
    let info = url
        .into_connection_info()
        .map_err(|e| ClusterError::Config(format!("cluster.redis_url: {e}")))?;
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = redis::Client::open(info.set_redis_settings(resp3))
        .map_err(|e| ClusterError::Config(format!("cluster.redis_url: {e}")))?;
    let config = || {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_max_delay(TIMEOUT)
    };
    let cmd = client
        .get_connection_manager_with_config(config())
        .await
        .map_err(unavailable)?;
    let sub = client
        .get_connection_manager_with_config(
            config()
                .set_push_sender(on_push)
                .set_automatic_resubscription(),
        )
        .await
        .map_err(unavailable)?;
    Ok((Con::One(cmd), Con::One(sub)))
}

/// The command and subscription connections to a Redis Cluster, from its seed nodes.
async fn connect_cluster(
    urls: &[String],
    on_push: impl Fn(PushInfo) -> std::result::Result<(), redis::aio::SendError> + Send + Sync + 'static,
) -> Result<(Con, Con)> {
    let builder = || {
        ClusterClientBuilder::new(urls.to_vec())
            .use_protocol(ProtocolVersion::RESP3)
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
    };
    let config = |e: RedisError| ClusterError::Config(format!("cluster.redis_urls: {e}"));
    let cmd = builder().build().map_err(config)?;
    let sub = builder().push_sender(on_push).build().map_err(config)?;
    let cmd = cmd.get_async_connection().await.map_err(unavailable)?;
    let sub = sub.get_async_connection().await.map_err(unavailable)?;
    Ok((Con::Cluster(cmd), Con::Cluster(sub)))
}

/// The liveness probe and the position check, until the broker is dropped.
async fn watch(me: Weak<RedisBackend>) {
    let every = match me.upgrade() {
        Some(me) => me.opts.probe_every,
        None => return,
    };
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(me) = me.upgrade() else { return };
        sent += 1;
        let r: std::result::Result<i64, _> = redis::cmd(publish_cmd(me.cmd.sharded()))
            .arg(me.keys.probe(&me.opts.pod))
            .arg(sent.to_string())
            .query_async(&mut me.con())
            .await;
        let up = me.seen(r).is_ok();
        let seen = me.subs.probe_seen.load(Ordering::Relaxed);
        let delivering = sent.saturating_sub(seen) <= PROBES_MISSED;
        me.probe_ok.store(up && delivering, Ordering::Relaxed);
        if !delivering {
            // A manager that gave up reconnecting tries again on its next command.
            let _: std::result::Result<Value, _> =
                redis::cmd("PING").query_async(&mut me.sub.clone()).await;
            if me.sub.sharded() {
                // A shard channel lives on its slot's master; after a failover the client
                // may not have moved it to the new one. Subscribing again does, and is a
                // no-op where it still holds.
                let mut channels = vec![me.keys.probe(&me.opts.pod)];
                if let Some((inbox, _)) = lock(&me.subs.inbox).as_ref() {
                    channels.extend(String::from_utf8(inbox.clone()).ok());
                }
                for c in channels {
                    let _ = me.sub.clone().subscribe(&c).await;
                }
            }
        }
        if up {
            me.check_positions().await;
        }
    }
}

impl Health for RedisBackend {
    fn ready(&self) -> bool {
        // Ready again two probes after the last failure: one probe answered is not enough.
        let quiet = u64::try_from(self.opts.probe_every.as_millis() * 2).unwrap_or(u64::MAX);
        let now = u64::try_from(parlor_core::now_ms()).unwrap_or(0);
        let since = now.saturating_sub(self.failed_at.load(Ordering::Relaxed));
        since > quiet && self.probe_ok.load(Ordering::Relaxed)
    }

    fn counters(&self) -> crate::Counters {
        crate::Counters {
            gaps_healed: self.subs.healed.load(Ordering::Relaxed),
            gaps_lost: self.subs.lost.load(Ordering::Relaxed),
            resubscriptions: self.subs.resubscribed.load(Ordering::Relaxed),
            unreplicated: self.subs.unreplicated.load(Ordering::Relaxed),
        }
    }
}
