//! Matchmaking queues on Redis. Every key of a kind's queue carries the hash tag
//! `{mm.KIND}`, so that each script touches one slot:
//! - `:r` zset, user by rating; `:t` zset, user by when the wait started (Redis's clock);
//! - `:h` hash, user to the ticket (JSON); `:g` hash, user to `min:max:stamp`;
//! - `:c` zset, user by the stamp of their latest cancel.
//!
//! Pairing is one script, so two pods pairing at once cannot both take a ticket.

use parlor_core::UserId;

use super::{scripts::Lua, RedisBackend};
use crate::{BoxFuture, ClusterError, Paired, Queues, Result, Ticket};

// KEYS: r, t, h, g, c. ARGV: user, rating, "min:max:stamp", ticket, stamp.
const ENQUEUE: &str = r"
local c = redis.call('ZSCORE', KEYS[5], ARGV[1])
if c and tonumber(c) > tonumber(ARGV[5]) then return 0 end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], ms, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
return 1
";

// KEYS: r, t, h, g, c. ARGV: user, stamp.
const CANCEL: &str = r"
local removed = 0
local g = redis.call('HGET', KEYS[4], ARGV[1])
if g and tonumber(string.match(g, ':(%d+)$')) < tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  removed = 1
end
local c = redis.call('ZSCORE', KEYS[5], ARGV[1])
if not c or tonumber(c) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[5], ARGV[2], ARGV[1])
end
return removed
";

// KEYS: r, t, h, g, c. ARGV: window, widen per second, cancel memory (µs). The rule is
// the one in queues.rs, walking outward from each ticket by rating, nearest first. The
// queue is read in three calls, and only the tickets of groups are touched one by one.
// Each group comes back as its tickets, oldest first.
const PAIR: &str = r"
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window, widen = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. string.format('%.0f', ms * 1000 - tonumber(ARGV[3])))
local function reach(since) return window + widen * (ms - since) / 1000 end
local rs = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local ts = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
local gs = redis.call('HGETALL', KEYS[4])
local n = #rs / 2
local user, rating, pos, since, size = {}, {}, {}, {}, {}
-- The untaken tickets in rating order, linked, so that a walk never steps over taken ones.
local prev, nxt = {}, {}
for k = 1, n do
  user[k] = rs[2 * k - 1]
  rating[k] = tonumber(rs[2 * k])
  pos[user[k]] = k
  prev[k], nxt[k] = k - 1, k + 1
end
for k = 1, #ts, 2 do since[ts[k]] = tonumber(ts[k + 1]) end
for k = 1, #gs, 2 do size[gs[k]] = string.match(gs[k + 1], '^(%d+:%d+):') end
local taken, out, n_taken = {}, {}, 0
for i = 1, #ts, 2 do
  local u = ts[i]
  if not taken[u] then
    local p, ru, gu = pos[u], rating[pos[u]], size[u]
    local least, most = string.match(gu, '(%d+):(%d+)')
    least, most = tonumber(least), tonumber(most) - 1
    local reach_u = reach(since[u])
    local near, l, h = {}, prev[p], nxt[p]
    while (l >= 1 or h <= n) and #near < most do
      local k
      if l >= 1 and (h > n or ru - rating[l] <= rating[h] - ru) then
        k = l; l = prev[l]
      else
        k = h; h = nxt[h]
      end
      local d = math.abs(rating[k] - ru)
      if d > reach_u then break end
      local o = user[k]
      if size[o] == gu and d <= reach(since[o]) then near[#near + 1] = o end
    end
    if #near + 1 >= least then
      local group = {u}
      for _, o in ipairs(near) do group[#group + 1] = o end
      table.sort(group, function(a, b)
        if since[a] ~= since[b] then return since[a] < since[b] end
        return a < b
      end)
      local tickets = {}
      for _, m in ipairs(group) do
        taken[m] = true
        local q = pos[m]
        if prev[q] >= 1 then nxt[prev[q]] = nxt[q] end
        if nxt[q] <= n then prev[nxt[q]] = prev[q] end
        tickets[#tickets + 1] = redis.call('HGET', KEYS[3], m)
        redis.call('ZREM', KEYS[1], m)
        redis.call('ZREM', KEYS[2], m)
        redis.call('HDEL', KEYS[3], m)
        redis.call('HDEL', KEYS[4], m)
      end
      out[#out + 1] = tickets
      n_taken = n_taken + #group
    end
  end
end
return {out, n - n_taken}
";

pub(super) struct QueueScripts {
    enqueue: Lua,
    cancel: Lua,
    pair: Lua,
}

impl QueueScripts {
    pub(super) fn new() -> Self {
        Self {
            enqueue: Lua::new(ENQUEUE),
            cancel: Lua::new(CANCEL),
            pair: Lua::new(PAIR),
        }
    }
}

impl RedisBackend {
    fn queue_keys(&self, kind: &str) -> Result<[String; 5]> {
        if kind.contains(['{', '}']) {
            return Err(ClusterError::Config(format!("bad kind {kind:?}")));
        }
        let p = &self.keys.prefix;
        Ok(["r", "t", "h", "g", "c"].map(|k| format!("{p}:mm:{{mm.{kind}}}:{k}")))
    }
}

impl Queues for RedisBackend {
    fn enqueue(&self, kind: &str, t: Ticket) -> BoxFuture<'_, Result<bool>> {
        let keys = self.queue_keys(kind);
        Box::pin(async move {
            let keys = keys?;
            let ticket = serde_json::to_string(&t)
                .map_err(|e| ClusterError::Unavailable(format!("ticket: {e}")))?;
            let s = &self.queue_scripts.enqueue;
            let args = [
                t.user.0.clone(),
                t.rating.to_string(),
                format!("{}:{}:{}", t.min, t.max, t.stamp),
                ticket,
                t.stamp.to_string(),
            ];
            let r: std::result::Result<i64, _> = s.run(&mut self.con(), s.call(&keys, &args)).await;
            Ok(self.seen(r)? == 1)
        })
    }

    fn cancel(&self, kind: &str, user: &UserId, stamp: u64) -> BoxFuture<'_, Result<bool>> {
        let (keys, user) = (self.queue_keys(kind), user.clone());
        Box::pin(async move {
            let keys = keys?;
            let s = &self.queue_scripts.cancel;
            let args = [user.0, stamp.to_string()];
            let r: std::result::Result<i64, _> = s.run(&mut self.con(), s.call(&keys, &args)).await;
            Ok(self.seen(r)? == 1)
        })
    }

    fn pair(&self, kind: &str, window: f64, widen_per_sec: f64) -> BoxFuture<'_, Result<Paired>> {
        let keys = self.queue_keys(kind);
        Box::pin(async move {
            let keys = keys?;
            let s = &self.queue_scripts.pair;
            let args = [
                window.to_string(),
                widen_per_sec.to_string(),
                crate::queues::CANCEL_KEPT_US.to_string(),
            ];
            let r: std::result::Result<(Vec<Vec<String>>, usize), _> =
                s.run(&mut self.con(), s.call(&keys, &args)).await;
            let (groups, waiting) = self.seen(r)?;
            let groups = groups
                .into_iter()
                .map(|g| {
                    g.iter()
                        .map(|t| serde_json::from_str(t))
                        .collect::<std::result::Result<Vec<Ticket>, _>>()
                })
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| ClusterError::Unavailable(format!("a queued ticket: {e}")))?;
            Ok(Paired { groups, waiting })
        })
    }
}
