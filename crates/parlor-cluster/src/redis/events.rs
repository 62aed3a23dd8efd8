//! Room events on Redis: the publish and reset scripts, history, checkpoints, and the
//! subscriber that delivers each room's events in order, filling gaps from history.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
};

use bytes::Bytes;
use parlor_core::{now_ms, RoomId};
use parlor_protocol::frame_seq;
use redis::{AsyncCommands, PushInfo, PushKind, Value};

use super::{checked, lock, Job, JobKind, Keys, RedisBackend};
use crate::{
    broker::select, BoxFuture, Broker, Checkpoint, ClusterError, EventSink, Lease, Origin, Replay,
    Result, Retained, StateWrite, SubscriptionId,
};

pub(super) fn write_args(writes: &[StateWrite], args: &mut Vec<Vec<u8>>) {
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
pub(super) struct RoomSub {
    /// Delivered up to here; None until `subscribe` has read the position.
    last: Option<u64>,
    sinks: Vec<(SubscriptionId, Arc<dyn EventSink>)>,
    /// Frames held back, by seq, while a gap is filled or the position is unknown.
    held: BTreeMap<u64, (Bytes, Origin)>,
    healing: bool,
    /// `last` at the previous position check, to tell a stall from a lag.
    checked_at: Option<u64>,
}

impl RoomSub {
    fn deliver(&mut self, seq: u64, frame: &Bytes, origin: Origin) {
        for (_, sink) in &self.sinks {
            sink.deliver_from(seq, frame, origin);
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
                let (frame, origin) = entry.remove();
                self.deliver(seq, &frame, origin);
                last = seq;
            } else {
                return true;
            }
        }
        false
    }
}

pub(super) struct Subs {
    keys: Keys,
    rooms: Mutex<HashMap<RoomId, RoomSub>>,
    pub(super) probe_seen: AtomicU64,
    /// This pod's inbox channel and what reads it.
    pub(super) inbox: Mutex<Option<(Vec<u8>, crate::InboxHandler)>>,
    /// Gaps filled from history (for metrics).
    pub(super) healed: AtomicU64,
    pub(super) lost: AtomicU64,
    pub(super) resubscribed: AtomicU64,
    /// Batches of publishes whose WAIT came back with fewer replicas than asked.
    pub(super) unreplicated: AtomicU64,
}

impl Subs {
    pub(super) fn new(keys: Keys) -> Self {
        Self {
            keys,
            rooms: Mutex::new(HashMap::new()),
            probe_seen: AtomicU64::new(0),
            inbox: Mutex::new(None),
            healed: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            resubscribed: AtomicU64::new(0),
            unreplicated: AtomicU64::new(0),
        }
    }
}

impl RedisBackend {
    async fn seq_of(&self, room: &RoomId) -> Result<u64> {
        let r: std::result::Result<Option<u64>, _> =
            self.con().hget(self.keys.room(room, "state"), "seq").await;
        Ok(self.seen(r)?.unwrap_or(0))
    }

    /// History entries `from..=to` (all after `from` when `to` is None).
    async fn range(&self, room: &RoomId, from: u64, to: Option<u64>) -> Result<Vec<Entry>> {
        let end = to.map_or_else(|| "+".to_owned(), |t| format!("{t}-1"));
        let r: std::result::Result<Value, _> = redis::cmd("XRANGE")
            .arg(self.keys.room(room, "hist"))
            .arg(format!("{from}-1"))
            .arg(end)
            .query_async(&mut self.con())
            .await;
        Ok(parse_entries(self.seen(r)?))
    }

    /// Fills a room's gaps from history, then delivers what was held: up to the first
    /// held frame, or up to `target` (the room's seq, when the position check found a
    /// stall and nothing is held).
    async fn heal(&self, room: RoomId, target: Option<u64>) {
        loop {
            let (from, to) = {
                let mut rooms = lock(&self.subs.rooms);
                let Some(rs) = rooms.get_mut(&room) else {
                    return;
                };
                let Some(last) = rs.last else { return };
                let gap = rs.drain();
                let last = rs.last.unwrap_or(last);
                let to = match rs.held.keys().next() {
                    Some(first) if gap => first - 1,
                    _ => match target {
                        Some(t) if t > last => t,
                        _ => {
                            rs.healing = false;
                            return;
                        }
                    },
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
            // Frames may have arrived meanwhile; deliver only what is still missing.
            let mut expect = rs.last.map_or(from, |l| l + 1);
            for e in entries {
                if e.seq == expect {
                    rs.deliver(e.seq, &e.frame, e.origin);
                    expect += 1;
                }
            }
            if expect <= to {
                // History no longer holds them: the sinks must resync.
                for (_, sink) in &rs.sinks {
                    sink.lost(expect - 1);
                }
                rs.last = Some(to);
                self.subs.lost.fetch_add(1, Ordering::Relaxed);
            } else {
                self.subs.healed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Catches a subscription that stopped delivering: a room whose seq moved on while
    /// nothing arrived since the last check is healed up to the seq.
    pub(super) async fn check_positions(&self) {
        let rooms: Vec<(RoomId, u64)> = lock(&self.subs.rooms)
            .iter()
            .filter_map(|(r, s)| s.last.map(|l| (r.clone(), l)))
            .collect();
        for (room, _) in rooms {
            // One room's slot may be down (a Redis Cluster failover); the others are checked.
            let Ok(seq) = self.seq_of(&room).await else {
                continue;
            };
            let stalled = {
                let mut all = lock(&self.subs.rooms);
                let Some(rs) = all.get_mut(&room) else {
                    continue;
                };
                let Some(last) = rs.last else { continue };
                let stalled = seq > last && rs.checked_at == Some(last) && !rs.healing;
                rs.checked_at = Some(last);
                rs.healing |= stalled;
                stalled
            };
            if stalled {
                if self.sub.sharded() {
                    // Its shard channel may have stayed on a failed master (mod.rs, watch).
                    let _ = self.sub.clone().subscribe(&self.keys.channel(&room)).await;
                }
                self.heal(room, Some(seq)).await;
            }
        }
    }
}

/// One history entry.
struct Entry {
    seq: u64,
    /// When it was recorded, in ms.
    at: i64,
    frame: Bytes,
    origin: Origin,
}

fn parse_entries(v: Value) -> Vec<Entry> {
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
        let origin = fields
            .get("o")
            .and_then(|o| Origin::from_bytes(o))
            .unwrap_or_default();
        if let Some(f) = fields.get("f") {
            out.push(Entry {
                seq,
                at: t,
                frame: Bytes::from(f.clone()),
                origin,
            });
        }
    }
    out
}

/// Runs on the subscription connection's reader: delivers in-order frames at once and
/// hands gaps to the healer.
pub(super) fn on_push(
    subs: &Subs,
    probe: &str,
    info: PushInfo,
    heal: &tokio::sync::mpsc::UnboundedSender<RoomId>,
) {
    if info.kind == PushKind::Disconnection {
        // The manager reconnects and subscribes again by itself; the position check then
        // fills what was missed meanwhile.
        subs.resubscribed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if !matches!(info.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = info.data.into_iter();
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        return;
    };
    let inbox = lock(&subs.inbox)
        .as_ref()
        .filter(|(c, _)| *c == channel)
        .map(|(_, h)| h.clone());
    if let Some(handler) = inbox {
        return handler(Bytes::from(payload));
    }
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
    // The script's payload: the origin's length, the origin, the frame.
    let payload = Bytes::from(payload);
    let Some(&n) = payload.first() else { return };
    let n = usize::from(n);
    let origin = match n {
        0 => Origin::default(),
        _ => match payload.get(1..=n).and_then(Origin::from_bytes) {
            Some(o) => o,
            None => return,
        },
    };
    let frame = payload.slice(1 + n..);
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
            rs.deliver(seq, &frame, origin);
            if rs.drain() && !rs.healing {
                rs.healing = true;
                let _ = heal.send(room);
            }
        }
        Some(_) => {
            rs.held.insert(seq, (frame, origin));
            if !rs.healing {
                rs.healing = true;
                let _ = heal.send(room);
            }
        }
        None => {
            rs.held.insert(seq, (frame, origin));
        }
    }
}

pub(super) async fn healer(
    me: Weak<RedisBackend>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<RoomId>,
) {
    while let Some(room) = rx.recv().await {
        let Some(me) = me.upgrade() else { return };
        me.heal(room, None).await;
    }
}

impl Broker for RedisBackend {
    fn publish(
        &self,
        room: &RoomId,
        lease: &Lease,
        seq: u64,
        frame: Bytes,
        origin: Origin,
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
            if origin.is_none() {
                Vec::new()
            } else {
                origin.to_bytes().to_vec()
            },
        ];
        write_args(&writes, &mut args);
        let keys = [
            self.keys.room(room, "lease"),
            self.keys.room(room, "state"),
            self.keys.room(room, "hist"),
        ];
        let (done, answer) = tokio::sync::oneshot::channel();
        // Waiting for replicas: recorded first, fanned out once they have it (mod.rs).
        let job = match self.opts.wait_replicas {
            0 => Job {
                cmd: self.scripts.publish.call(&keys, &args),
                kind: JobKind::Publish,
                done,
            },
            _ => {
                // The same message the publish script would send: origin length, origin,
                // frame. The publisher sends it only once the record succeeded.
                let origin = &args[7];
                let mut payload = Vec::with_capacity(1 + origin.len() + frame.len());
                payload.push(origin.len() as u8);
                payload.extend_from_slice(origin);
                payload.extend_from_slice(&frame);
                let mut fanout = redis::cmd(super::conn::publish_cmd(self.cmd.sharded()));
                fanout.arg(self.keys.channel(room)).arg(payload);
                Job {
                    cmd: self.scripts.record.call(&keys, &args),
                    kind: JobKind::Record(fanout),
                    done,
                }
            }
        };
        // Queued in call order: the publisher sends them to Redis in that order.
        let queued = self.publishes.send(job).is_ok();
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
            let keys = [
                self.keys.room(&room, "lease"),
                self.keys.room(&room, "state"),
                self.keys.room(&room, "hist"),
            ];
            let reset = &self.scripts.reset;
            let r: std::result::Result<Value, _> =
                reset.run(&mut self.con(), reset.call(&keys, &args)).await;
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
            let subscribed = self.sub.clone().subscribe(&self.keys.channel(&room)).await;
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
                self.heal(room, None).await;
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
                let r = self
                    .sub
                    .clone()
                    .unsubscribe(&self.keys.channel(&room))
                    .await;
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
                .filter(|e| e.at >= oldest)
                .map(|e| (e.seq, &e.frame));
            Ok(select(kept, since, last))
        })
    }

    fn retained(&self, room: &RoomId) -> BoxFuture<'_, Result<Vec<Retained>>> {
        let room = room.clone();
        Box::pin(async move {
            checked(&room)?;
            let oldest =
                now_ms() - i64::try_from(self.opts.retention.age.as_millis()).unwrap_or(i64::MAX);
            let entries = self.range(&room, 0, None).await?;
            Ok(entries
                .into_iter()
                .filter(|e| e.at >= oldest)
                .map(|e| Retained {
                    seq: e.seq,
                    frame: e.frame,
                    origin: e.origin,
                })
                .collect())
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
