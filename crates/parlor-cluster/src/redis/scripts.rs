//! The Lua scripts. Each touches the keys of one room only (one hash tag), so that it runs
//! unchanged on Redis Cluster.
//!
//! A script goes by its hash (EVALSHA). A Redis that lacks it (restarted, or a replica
//! just promoted on a Redis Cluster: loaded scripts are not replicated) answers NOSCRIPT
//! and gets the same call once with the body (EVAL), which caches it there. No SCRIPT
//! LOAD: on a cluster it goes to every node, and fails while one is down.

use redis::{aio::ConnectionLike, Arg, Cmd, FromRedisValue, RedisError, RedisResult};

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

/// Whether Redis lacks the script a call named by hash.
pub(super) fn no_script(e: &RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// One script (module docs).
pub(super) struct Lua {
    hash: String,
    body: String,
}

impl Lua {
    pub(super) fn new(body: &str) -> Self {
        Self {
            hash: redis::Script::new(body).get_hash().to_owned(),
            body: body.to_owned(),
        }
    }

    /// The call by hash, with its keys and arguments.
    pub(super) fn call<K: AsRef<[u8]>, A: AsRef<[u8]>>(&self, keys: &[K], args: &[A]) -> Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.hash).arg(keys.len());
        for k in keys {
            cmd.arg(k.as_ref());
        }
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd
    }

    /// The same call as `call` made, with the body (for a Redis that answered NOSCRIPT).
    pub(super) fn with_body(&self, call: &Cmd) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.body);
        for a in call.args_iter().skip(2) {
            if let Arg::Simple(b) = a {
                cmd.arg(b);
            }
        }
        cmd
    }

    /// Runs a call from `call`, sending the body if Redis lacks the script.
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        con: &mut (impl ConnectionLike + Send),
        call: Cmd,
    ) -> RedisResult<T> {
        match call.query_async(con).await {
            Err(e) if no_script(&e) => self.with_body(&call).query_async(con).await,
            r => r,
        }
    }
}

pub(super) struct Scripts {
    pub(super) claim: Lua,
    pub(super) renew: Lua,
    pub(super) release: Lua,
    pub(super) publish: Lua,
    pub(super) record: Lua,
    pub(super) reset: Lua,
    pub(super) unlock: Lua,
}

/// The publish script for a Redis Cluster, where the room channel is sharded.
fn publish_script(sharded: bool) -> String {
    match sharded {
        true => PUBLISH.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'"),
        false => PUBLISH.to_owned(),
    }
}

/// PUBLISH without its fan-out, for when events must reach replicas (WAIT) before anyone
/// sees them: the publisher publishes them afterwards.
fn record_script() -> String {
    let (kept, _) = PUBLISH
        .rsplit_once("redis.call('PUBLISH'")
        .expect("PUBLISH ends with its fan-out");
    format!("{kept}return 1\n")
}

// Deletes a lock only if `owner` (ARGV[1]) still holds it.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
";

impl Scripts {
    pub(super) fn new(sharded: bool) -> Self {
        Self {
            claim: Lua::new(CLAIM),
            renew: Lua::new(RENEW),
            release: Lua::new(RELEASE),
            publish: Lua::new(&publish_script(sharded)),
            record: Lua::new(&record_script()),
            reset: Lua::new(RESET),
            unlock: Lua::new(UNLOCK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_is_publishing_without_the_fan_out() {
        let record = record_script();
        assert!(!record.contains("'PUBLISH'") && record.contains("XADD"));
        assert!(record.trim_end().ends_with("return 1"));
    }

    #[test]
    fn a_call_by_hash_becomes_the_same_call_with_the_body() {
        let lua = Lua::new("return ARGV[1]");
        let call = lua.call(&["k1", "k2"], &[b"a".as_slice()]);
        let eval = lua.with_body(&call);
        let args = |c: &Cmd| -> Vec<Vec<u8>> {
            c.args_iter()
                .filter_map(|a| match a {
                    Arg::Simple(b) => Some(b.to_vec()),
                    _ => None,
                })
                .collect()
        };
        let (sha, body) = (args(&call), args(&eval));
        assert_eq!(sha[0], b"EVALSHA");
        assert_eq!(body[0], b"EVAL");
        assert_eq!(body[1], b"return ARGV[1]");
        assert_eq!(sha[2..], body[2..], "numkeys, keys and arguments are kept");
    }
}
