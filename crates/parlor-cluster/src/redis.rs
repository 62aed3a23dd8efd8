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
//! Two connections per pod: one for commands and one for subscriptions, both
//! `ConnectionManager`s, which reconnect with backoff; the subscription one resubscribes by
//! itself (RESP3). After a reconnect the position check fills what was missed.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::Duration,
};

use bytes::Bytes;
use parlor_core::{now_ms, RoomId};
use parlor_protocol::frame_seq;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    AsyncCommands, IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Script,
    Value,
};

use crate::{
    broker::select, BoxFuture, Broker, Checkpoint, Claim, ClusterError, EventSink, Health, Lease,
    Leases, Replay, Result, Retention, Settings, StateWrite, SubscriptionId,
};

/// How to reach Redis and what to keep there.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port/db`; RESP3 is switched on whatever the URL says.
    pub url: String,
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
}

impl From<&Settings> for RedisOptions {
    fn from(s: &Settings) -> Self {
        Self {
            url: s.redis_url.clone(),
            prefix: s.key_prefix.clone(),
            pod: s.pod.clone(),
            lease: s.lease,
            retention: s.retention,
            probe_every: Duration::from_secs(1),
        }
    }
}

/// Probes that may go unanswered before the subscription counts as dead.
const PROBES_MISSED: u64 = 3;

const CLAIM: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local pod = string.match(cur, '^(.*)|%d+$')
  if pod == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return cur
end
local tok = ARGV[1] .. '|' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok, 'PX', ARGV[2])
return tok
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

// ARGV: lease token, seq, now ms, history count, history ms, channel, frame, then writes:
// 'S' field value, or 'D' field. The stream append goes first: if it fails, nothing changed.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not ' .. ARGV[1])
end
local last = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if tonumber(ARGV[2]) ~= last + 1 then
  return redis.error_reply('FENCED seq ' .. ARGV[2] .. ' is not next after ' .. last)
end
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], ARGV[2] .. '-1', 't', ARGV[3], 'f', ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], 'seq', ARGV[2])
local i = 8
while i <= #ARGV do
  if ARGV[i] == 'S' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('PUBLISH', ARGV[6], ARGV[7])
return 1
";

// ARGV: lease token, seq, then writes as for PUBLISH. History that no longer lines up with
// the seq goes.
const RESET: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not ' .. ARGV[1])
end
local last = redis.call('HGET', KEYS[2], 'seq') or '0'
redis.call('DEL', KEYS[2])
if last ~= ARGV[2] then
  redis.call('DEL', KEYS[3])
end
redis.call('HSET', KEYS[2], 'seq', ARGV[2])
local i = 3
while i <= #ARGV do
  if ARGV[i] == 'S' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    i = i + 2
  end
end
return 1
";

struct Scripts {
    claim: Script,
    renew: Script,
    release: Script,
    publish: Script,
    reset: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            publish: Script::new(PUBLISH),
            reset: Script::new(RESET),
        }
    }
}

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

fn write_args(writes: &[StateWrite], args: &mut Vec<Vec<u8>>) {
    for w in writes {
        match w {
            StateWrite::Set(k, v) => {
                args.push(b"S".to_vec());
                args.push(k.as_bytes().to_vec());
                args.push(v.to_vec());
            }
            StateWrite::Del(k) => {
                args.push(b"D".to_vec());
                args.push(k.as_bytes().to_vec());
            }
        }
    }
}

/// One room's subscription on this pod.
#[derive(Default)]
struct RoomSub {
    /// Delivered up to here; None until `subscribe` has read the position.
    last: Option<u64>,
    sinks: Vec<(SubscriptionId, Arc<dyn EventSink>)>,
    /// Frames held back, by seq, while a gap is filled or the position is unknown.
    held: BTreeMap<u64, Bytes>,
    healing: bool,
    /// `last` at the previous position check, to tell a stall from a lag.
    checked_at: Option<u64>,
}

impl RoomSub {
    fn deliver(&mut self, seq: u64, frame: &Bytes) {
        for (_, sink) in &self.sinks {
            sink.deliver(seq, frame);
        }
        self.last = Some(seq);
    }

    /// Delivers held frames that follow on; true if a gap is left before the rest.
    fn drain(&mut self) -> bool {
        let Some(mut last) = self.last else {
            return false;
        };
        while let Some(entry) = self.held.first_entry() {
            let seq = *entry.key();
            if seq <= last {
                entry.remove();
            } else if seq == last + 1 {
                let frame = entry.remove();
                self.deliver(seq, &frame);
                last = seq;
            } else {
                return true;
            }
        }
        false
    }
}

struct Subs {
    keys: Keys,
    rooms: Mutex<HashMap<RoomId, RoomSub>>,
    probe_seen: AtomicU64,
    /// Gaps filled from history (for metrics).
    healed: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The cluster broker and leases, on one Redis.
pub struct RedisBroker {
    opts: RedisOptions,
    keys: Keys,
    cmd: ConnectionManager,
    sub: ConnectionManager,
    subs: Arc<Subs>,
    scripts: Arc<Scripts>,
    /// Serialises subscribe and unsubscribe, so that a room's channel is subscribed once.
    sub_lock: tokio::sync::Mutex<()>,
    next_sub: AtomicU64,
    reachable: AtomicBool,
    probe_ok: AtomicBool,
    publishes: tokio::sync::mpsc::UnboundedSender<Job>,
}

/// One queued publish.
struct Job {
    cmd: redis::Cmd,
    done: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Sends queued publishes as pipelines, in order, so that a room's events reach Redis in
/// the order its home made them, while many are in flight at once.
async fn publisher(
    mut con: ConnectionManager,
    script: Script,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Job>,
) {
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut jobs = std::mem::take(&mut batch);
        for attempt in 0..2 {
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for j in &jobs {
                pipe.add_command(j.cmd.clone());
            }
            let results: std::result::Result<Vec<redis::RedisResult<Value>>, _> =
                pipe.query_async(&mut con).await;
            let results = match results {
                Ok(r) => r,
                Err(e) => {
                    let e = unavailable(e);
                    for j in jobs.drain(..) {
                        let _ = j.done.send(Err(e.clone()));
                    }
                    break;
                }
            };
            let mut again = Vec::new();
            for (j, r) in jobs.drain(..).zip(results) {
                match r {
                    Ok(_) => {
                        let _ = j.done.send(Ok(()));
                    }
                    // Redis lost its scripts (a restart or SCRIPT FLUSH): none of the rest
                    // ran either, so they go again, in order, once it is loaded.
                    Err(e)
                        if attempt == 0
                            && e.kind()
                                == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        again.push(j)
                    }
                    Err(e) => {
                        let _ = j.done.send(Err(unavailable(e)));
                    }
                }
            }
            if again.is_empty() {
                break;
            }
            if let Err(e) = script.load_async(&mut con).await {
                let e = unavailable(e);
                for j in again.drain(..) {
                    let _ = j.done.send(Err(e.clone()));
                }
                break;
            }
            jobs = again;
        }
    }
}

impl RedisBroker {
    /// Connects both connections, subscribes the probe channel and starts the position
    /// check. Fails if Redis cannot be reached now.
    pub async fn connect(opts: RedisOptions) -> Result<Arc<Self>> {
        if opts.prefix.is_empty() || opts.prefix.contains(['{', '}']) {
            return Err(ClusterError::Config(format!(
                "cluster.key_prefix {:?} must be non-empty and without braces",
                opts.prefix
            )));
        }
        let info = opts
            .url
            .as_str()
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
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(Duration::from_secs(2)))
                .set_max_delay(Duration::from_secs(2))
        };
        let keys = Keys {
            prefix: opts.prefix.clone(),
        };
        let subs = Arc::new(Subs {
            keys: keys.clone(),
            rooms: Mutex::new(HashMap::new()),
            probe_seen: AtomicU64::new(0),
            healed: AtomicU64::new(0),
        });
        let cmd = client
            .get_connection_manager_with_config(config())
            .await
            .map_err(unavailable)?;
        let scripts = Arc::new(Scripts::new());
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
        let mut sub = client
            .get_connection_manager_with_config(
                config()
                    .set_push_sender(on_push)
                    .set_automatic_resubscription(),
            )
            .await
            .map_err(unavailable)?;
        sub.subscribe(keys.probe(&opts.pod))
            .await
            .map_err(unavailable)?;
        let (publishes, queue) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(publisher(cmd.clone(), Script::new(PUBLISH), queue));
        let me = Arc::new(Self {
            publishes,
            opts,
            keys,
            cmd,
            sub,
            subs,
            scripts,
            sub_lock: tokio::sync::Mutex::new(()),
            next_sub: AtomicU64::new(1),
            reachable: AtomicBool::new(true),
            probe_ok: AtomicBool::new(true),
        });
        tokio::spawn(healer(Arc::downgrade(&me), heal_rx));
        tokio::spawn(watch(Arc::downgrade(&me)));
        Ok(me)
    }

    /// Gaps filled from history so far.
    pub fn gaps_healed(&self) -> u64 {
        self.subs.healed.load(Ordering::Relaxed)
    }

    fn con(&self) -> ConnectionManager {
        self.cmd.clone()
    }

    fn seen<T>(&self, r: std::result::Result<T, RedisError>) -> Result<T> {
        match r {
            Ok(v) => {
                self.reachable.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Err(e) => {
                let e = unavailable(e);
                if matches!(e, ClusterError::Unavailable(_)) {
                    self.reachable.store(false, Ordering::Relaxed);
                }
                Err(e)
            }
        }
    }

    async fn seq_of(&self, room: &RoomId) -> Result<u64> {
        let r: std::result::Result<Option<u64>, _> =
            self.con().hget(self.keys.room(room, "state"), "seq").await;
        Ok(self.seen(r)?.unwrap_or(0))
    }

    /// History entries `from..=to` (all after `from` when `to` is None), as (seq, time,
    /// frame).
    async fn range(
        &self,
        room: &RoomId,
        from: u64,
        to: Option<u64>,
    ) -> Result<Vec<(u64, i64, Bytes)>> {
        let end = to.map_or_else(|| "+".to_owned(), |t| format!("{t}-1"));
        let r: std::result::Result<Value, _> = redis::cmd("XRANGE")
            .arg(self.keys.room(room, "hist"))
            .arg(format!("{from}-1"))
            .arg(end)
            .query_async(&mut self.con())
            .await;
        Ok(parse_entries(self.seen(r)?))
    }

    /// Fills a room's gap from history, then delivers what was held.
    async fn heal(&self, room: RoomId) {
        loop {
            let (from, to) = {
                let mut rooms = lock(&self.subs.rooms);
                let Some(rs) = rooms.get_mut(&room) else {
                    return;
                };
                let Some(last) = rs.last else { return };
                let gap = rs.drain();
                let to = match rs.held.keys().next() {
                    Some(first) if gap => first - 1,
                    _ => {
                        rs.healing = false;
                        return;
                    }
                };
                (last + 1, to)
            };
            let entries = match self.range(&room, from, Some(to)).await {
                Ok(e) => e,
                Err(_) => {
                    // Redis is down: try again once the watch sees it back.
                    tokio::time::sleep(self.opts.probe_every).await;
                    continue;
                }
            };
            let mut rooms = lock(&self.subs.rooms);
            let Some(rs) = rooms.get_mut(&room) else {
                return;
            };
            let mut expect = from;
            for (seq, _, frame) in entries {
                if seq == expect {
                    rs.deliver(seq, &frame);
                    expect += 1;
                }
            }
            if expect <= to {
                // History no longer holds them: the sinks must resync.
                for (_, sink) in &rs.sinks {
                    sink.lost(expect - 1);
                }
                rs.last = Some(to);
            }
            self.subs.healed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Catches a subscription that stopped delivering: a room whose seq moved on while
    /// nothing arrived since the last check is healed up to the seq.
    async fn check_positions(&self) {
        let rooms: Vec<(RoomId, u64)> = lock(&self.subs.rooms)
            .iter()
            .filter_map(|(r, s)| s.last.map(|l| (r.clone(), l)))
            .collect();
        for (room, _) in rooms {
            let Ok(seq) = self.seq_of(&room).await else {
                return;
            };
            let start = {
                let mut all = lock(&self.subs.rooms);
                let Some(rs) = all.get_mut(&room) else {
                    continue;
                };
                let Some(last) = rs.last else { continue };
                let stalled = seq > last && rs.checked_at == Some(last) && !rs.healing;
                rs.checked_at = Some(last);
                if stalled {
                    rs.healing = true;
                    // A marker past the gap, so that heal fetches up to `seq`.
                    rs.held.entry(seq + 1).or_insert_with(Bytes::new);
                }
                stalled
            };
            if start {
                self.heal_to(room, seq).await;
            }
        }
    }

    async fn heal_to(&self, room: RoomId, seq: u64) {
        self.heal(room.clone()).await;
        // Drop the marker if heal left it.
        if let Some(rs) = lock(&self.subs.rooms).get_mut(&room) {
            if rs.held.get(&(seq + 1)).is_some_and(Bytes::is_empty) {
                rs.held.remove(&(seq + 1));
            }
        }
    }
}

fn parse_entries(v: Value) -> Vec<(u64, i64, Bytes)> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Array(parts) = item else { continue };
        let mut parts = parts.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(id) = redis::from_redis_value::<String>(id) else {
            continue;
        };
        let Some(seq) = id.split('-').next().and_then(|s| s.parse::<u64>().ok()) else {
            continue;
        };
        let Ok(fields) = redis::from_redis_value::<HashMap<String, Vec<u8>>>(fields) else {
            continue;
        };
        let t = fields
            .get("t")
            .and_then(|t| std::str::from_utf8(t).ok()?.parse().ok())
            .unwrap_or(0);
        if let Some(f) = fields.get("f") {
            out.push((seq, t, Bytes::from(f.clone())));
        }
    }
    out
}

/// Runs on the subscription connection's reader: delivers in-order frames at once and
/// hands gaps to the healer.
fn on_push(
    subs: &Subs,
    probe: &str,
    info: PushInfo,
    heal: &tokio::sync::mpsc::UnboundedSender<RoomId>,
) {
    if info.kind != PushKind::Message {
        return;
    }
    let mut data = info.data.into_iter();
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        return;
    };
    if channel == probe.as_bytes() {
        if let Some(n) = std::str::from_utf8(&payload)
            .ok()
            .and_then(|s| s.parse().ok())
        {
            subs.probe_seen.fetch_max(n, Ordering::Relaxed);
        }
        return;
    }
    let Some(room) = subs.keys.room_of(&channel) else {
        return;
    };
    let frame = Bytes::from(payload);
    let Some(seq) = frame_seq(&frame) else {
        return;
    };
    let mut rooms = lock(&subs.rooms);
    let Some(rs) = rooms.get_mut(&room) else {
        return;
    };
    match rs.last {
        Some(last) if seq <= last => {}
        Some(last) if seq == last + 1 && !rs.healing => {
            rs.deliver(seq, &frame);
            if rs.drain() && !rs.healing {
                rs.healing = true;
                let _ = heal.send(room);
            }
        }
        Some(_) => {
            rs.held.insert(seq, frame);
            if !rs.healing {
                rs.healing = true;
                let _ = heal.send(room);
            }
        }
        None => {
            rs.held.insert(seq, frame);
        }
    }
}

async fn healer(me: Weak<RedisBroker>, mut rx: tokio::sync::mpsc::UnboundedReceiver<RoomId>) {
    while let Some(room) = rx.recv().await {
        let Some(me) = me.upgrade() else { return };
        me.heal(room).await;
    }
}

/// The liveness probe and the position check, until the broker is dropped.
async fn watch(me: Weak<RedisBroker>) {
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
        let r: std::result::Result<i64, _> = me
            .con()
            .publish(me.keys.probe(&me.opts.pod), sent.to_string())
            .await;
        let up = me.seen(r).is_ok();
        let seen = me.subs.probe_seen.load(Ordering::Relaxed);
        let delivering = sent.saturating_sub(seen) <= PROBES_MISSED;
        me.probe_ok.store(up && delivering, Ordering::Relaxed);
        if !delivering {
            // A manager that gave up reconnecting tries again on its next command.
            let _: std::result::Result<Value, _> =
                redis::cmd("PING").query_async(&mut me.sub.clone()).await;
        }
        if up {
            me.check_positions().await;
        }
    }
}

impl Health for RedisBroker {
    fn ready(&self) -> bool {
        self.reachable.load(Ordering::Relaxed) && self.probe_ok.load(Ordering::Relaxed)
    }
}

impl Broker for RedisBroker {
    fn publish(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        frame: Bytes,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'static, Result<()>> {
        if let Err(e) = checked(room) {
            return Box::pin(std::future::ready(Err(e)));
        }
        let mut args: Vec<Vec<u8>> = vec![
            lease.token().into_bytes(),
            seq.to_string().into_bytes(),
            now_ms().to_string().into_bytes(),
            self.opts.retention.count.to_string().into_bytes(),
            self.opts
                .retention
                .age
                .as_millis()
                .max(1)
                .to_string()
                .into_bytes(),
            self.keys.channel(room).into_bytes(),
            frame.to_vec(),
        ];
        write_args(&writes, &mut args);
        let keys = [
            self.keys.room(room, "lease"),
            self.keys.room(room, "state"),
            self.keys.room(room, "hist"),
        ];
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.scripts.publish.get_hash())
            .arg(keys.len())
            .arg(&keys);
        for a in &args {
            cmd.arg(a.as_slice());
        }
        let (done, answer) = tokio::sync::oneshot::channel();
        // Queued in call order: the publisher sends them to Redis in that order.
        let queued = self.publishes.send(Job { cmd, done }).is_ok();
        Box::pin(async move {
            if !queued {
                return Err(ClusterError::Unavailable("the broker is closed".into()));
            }
            answer
                .await
                .unwrap_or_else(|_| Err(ClusterError::Unavailable("the broker is closed".into())))
        })
    }

    fn reset(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        writes: Vec<StateWrite>,
    ) -> BoxFuture<'_, Result<()>> {
        let (room, lease) = (room.clone(), lease.clone());
        Box::pin(async move {
            checked(&room)?;
            let mut args: Vec<Vec<u8>> =
                vec![lease.token().into_bytes(), seq.to_string().into_bytes()];
            write_args(&writes, &mut args);
            let mut inv = self.scripts.reset.prepare_invoke();
            inv.key(self.keys.room(&room, "lease"))
                .key(self.keys.room(&room, "state"))
                .key(self.keys.room(&room, "hist"));
            for a in &args {
                inv.arg(a.as_slice());
            }
            let r: std::result::Result<Value, _> = inv.invoke_async(&mut self.con()).await;
            self.seen(r).map(|_| ())
        })
    }

    fn load(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Checkpoint>>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<HashMap<String, Vec<u8>>, _> =
                self.con().hgetall(self.keys.room(&room, "state")).await;
            let mut fields = self.seen(r)?;
            let seq = fields
                .remove("seq")
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
                .unwrap_or(0);
            if fields.is_empty() {
                return Ok(None);
            }
            Ok(Some(Checkpoint {
                seq,
                fields: fields
                    .into_iter()
                    .map(|(k, v)| (k, Bytes::from(v)))
                    .collect(),
            }))
        })
    }

    fn subscribe(
        &self,
        room: &RoomId,
        sink: Arc<dyn EventSink>,
    ) -> BoxFuture<'_, Result<(SubscriptionId, u64)>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let _one = self.sub_lock.lock().await;
            let id = SubscriptionId(self.next_sub.fetch_add(1, Ordering::Relaxed));
            {
                let mut rooms = lock(&self.subs.rooms);
                if let Some(rs) = rooms.get_mut(&room) {
                    if let Some(last) = rs.last {
                        rs.sinks.push((id, sink));
                        return Ok((id, last));
                    }
                }
                rooms.insert(
                    room.clone(),
                    RoomSub {
                        sinks: vec![(id, sink)],
                        ..RoomSub::default()
                    },
                );
            }
            let subscribed = self.sub.clone().subscribe(self.keys.channel(&room)).await;
            let position = match self.seen(subscribed) {
                Ok(()) => self.seq_of(&room).await,
                Err(e) => Err(e),
            };
            let gap = {
                let mut rooms = lock(&self.subs.rooms);
                let position = match position {
                    Ok(p) => p,
                    Err(e) => {
                        rooms.remove(&room);
                        return Err(e);
                    }
                };
                let rs = rooms.entry(room.clone()).or_default();
                rs.last = Some(position);
                rs.checked_at = Some(position);
                let gap = rs.drain();
                rs.healing |= gap;
                (position, gap)
            };
            let (position, gap) = gap;
            if gap {
                self.heal(room).await;
            }
            Ok((id, position))
        })
    }

    fn unsubscribe(&self, room: &RoomId, id: SubscriptionId) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        Box::pin(async move {
            let _one = self.sub_lock.lock().await;
            let empty = {
                let mut rooms = lock(&self.subs.rooms);
                let Some(rs) = rooms.get_mut(&room) else {
                    return Ok(());
                };
                rs.sinks.retain(|(s, _)| *s != id);
                let empty = rs.sinks.is_empty();
                if empty {
                    rooms.remove(&room);
                }
                empty
            };
            if empty {
                let r = self.sub.clone().unsubscribe(self.keys.channel(&room)).await;
                self.seen(r)?;
            }
            Ok(())
        })
    }

    fn last_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<u64>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            self.seq_of(&room).await
        })
    }

    fn replay(&self, room: &RoomId, since: u64) -> BoxFuture<'_, Result<Replay>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let last = self.seq_of(&room).await?;
            if since >= last {
                return Ok(select(std::iter::empty(), since, last));
            }
            let entries = self.range(&room, since + 1, Some(last)).await?;
            let oldest =
                now_ms() - i64::try_from(self.opts.retention.age.as_millis()).unwrap_or(i64::MAX);
            let kept = entries
                .iter()
                .filter(|(_, t, _)| *t >= oldest)
                .map(|(s, _, f)| (*s, f));
            Ok(select(kept, since, last))
        })
    }

    fn forget(&self, room: &RoomId) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let keys: Vec<String> = ["lease", "epoch", "state", "hist"]
                .iter()
                .map(|w| self.keys.room(&room, w))
                .collect();
            let r: std::result::Result<i64, _> = self.con().del(keys).await;
            self.seen(r).map(|_| ())
        })
    }
}

impl Leases for RedisBroker {
    fn claim(&self, room: &RoomId, pod: &str) -> BoxFuture<'_, Result<Claim>> {
        let (room, pod) = (room.clone(), pod.to_owned());
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<String, _> = self
                .scripts
                .claim
                .key(self.keys.room(&room, "lease"))
                .key(self.keys.room(&room, "epoch"))
                .arg(&pod)
                .arg(self.opts.lease.as_millis().max(1) as u64)
                .invoke_async(&mut self.con())
                .await;
            let token = self.seen(r)?;
            let lease = Lease::parse(&token)
                .ok_or_else(|| ClusterError::Unavailable(format!("bad lease {token:?}")))?;
            Ok(if *lease.pod == *pod {
                Claim::Home(lease)
            } else {
                Claim::Elsewhere(lease)
            })
        })
    }

    fn renew(&self, held: Vec<(RoomId, Lease)>) -> BoxFuture<'_, Result<Vec<bool>>> {
        Box::pin(async move {
            let ms = self.opts.lease.as_millis().max(1) as u64;
            let mut pipe = redis::pipe();
            for (room, lease) in &held {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.scripts.renew.get_hash())
                    .arg(1)
                    .arg(self.keys.room(room, "lease"))
                    .arg(lease.token())
                    .arg(ms);
                pipe.add_command(cmd);
            }
            if held.is_empty() {
                return Ok(Vec::new());
            }
            // Renewal is the pod's heartbeat, so the scripts are loaded first: a pipeline
            // cannot fall back from EVALSHA by itself.
            let mut con = self.con();
            let loaded = self.scripts.renew.load_async(&mut con).await;
            self.seen(loaded)?;
            let r: std::result::Result<Vec<i64>, _> = pipe.query_async(&mut con).await;
            Ok(self.seen(r)?.into_iter().map(|v| v == 1).collect())
        })
    }

    fn release(&self, room: &RoomId, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        let (room, lease) = (room.clone(), lease.clone());
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<i64, _> = self
                .scripts
                .release
                .key(self.keys.room(&room, "lease"))
                .arg(lease.token())
                .invoke_async(&mut self.con())
                .await;
            self.seen(r).map(|_| ())
        })
    }

    fn holder(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<Lease>>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let r: std::result::Result<Option<String>, _> =
                self.con().get(self.keys.room(&room, "lease")).await;
            Ok(self.seen(r)?.as_deref().and_then(Lease::parse))
        })
    }
}
