//! The Lua scripts. Each touches the keys of one room only (one hash tag), so that it runs
//! unchanged on Redis Cluster.

use redis::Script;

pub(super) const CLAIM: &str = r"
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

pub(super) const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

pub(super) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

// ARGV: lease token, seq, now ms, history count, history ms, channel, frame, origin (empty
// or 16 bytes), then writes: 'S' field value, or 'D' field. The stream append goes first:
// if it fails, nothing changed. Subscribers get the origin's length byte, the origin, then
// the frame.
pub(super) const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the lease is not ' .. ARGV[1])
end
local last = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if tonumber(ARGV[2]) ~= last + 1 then
  return redis.error_reply('FENCED seq ' .. ARGV[2] .. ' is not next after ' .. last)
end
if ARGV[8] == '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], ARGV[2] .. '-1', 't', ARGV[3], 'f', ARGV[7])
else
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], ARGV[2] .. '-1', 't', ARGV[3], 'f', ARGV[7],
    'o', ARGV[8])
end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], 'seq', ARGV[2])
local i = 9
while i <= #ARGV do
  if ARGV[i] == 'S' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
    i = i + 3
  else
    redis.call('HDEL', KEYS[2], ARGV[i + 1])
    i = i + 2
  end
end
redis.call('PUBLISH', ARGV[6], string.char(#ARGV[8]) .. ARGV[8] .. ARGV[7])
return 1
";

// ARGV: lease token, seq, then writes as for PUBLISH. History that no longer lines up with
// the seq goes.
pub(super) const RESET: &str = r"
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

pub(super) struct Scripts {
    pub(super) claim: Script,
    pub(super) renew: Script,
    pub(super) release: Script,
    pub(super) publish: Script,
    pub(super) reset: Script,
}

/// The publish script for a Redis Cluster, where the room channel is sharded.
pub(super) fn publish_script(sharded: bool) -> String {
    match sharded {
        true => PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"),
        false => PUBLISH.to_owned(),
    }
}

impl Scripts {
    pub(super) fn new(sharded: bool) -> Self {
        Self {
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            publish: Script::new(&publish_script(sharded)),
            reset: Script::new(RESET),
        }
    }
}
