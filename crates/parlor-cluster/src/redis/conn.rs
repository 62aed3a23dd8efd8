//! One connection type for both kinds of Redis a pod runs on: a single server
//! (`ConnectionManager`) or a Redis Cluster (`ClusterConnection`, which routes each command
//! to the master of its slot and follows slot moves and failovers).
//!
//! On a cluster:
//! - a pipeline may hold only one slot, so each pipeline Parlor sends (the publisher's, a
//!   renewal, a listing) is split by hash tag into one pipeline per tag, all sent at once;
//!   the results come back in command order. Commands with the same tag keep their order.
//! - channels are sharded (SPUBLISH, SSUBSCRIBE): each message goes to the node that owns
//!   its channel's slot only, instead of to every node.

use std::collections::HashMap;

use futures_util::future::join_all;
use redis::{
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
    Arg, Cmd, Pipeline, RedisFuture, RedisResult, Value,
};

#[derive(Clone)]
pub(super) enum Con {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Con {
    /// Whether channels are sharded (a Redis Cluster).
    pub(super) fn sharded(&self) -> bool {
        matches!(self, Con::Cluster(_))
    }

    pub(super) async fn subscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Con::One(c) => c.subscribe(channel).await,
            Con::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    pub(super) async fn unsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        match self {
            Con::One(c) => c.unsubscribe(channel).await,
            Con::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}

/// The command that publishes on a channel of this kind of Redis.
pub(super) fn publish_cmd(sharded: bool) -> &'static str {
    if sharded {
        "SPUBLISH"
    } else {
        "PUBLISH"
    }
}

/// What decides a command's slot: the hash tag of its first key (the part in braces), or
/// the whole key; empty for a command without a key.
pub(super) fn tag_of(cmd: &Cmd) -> &[u8] {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        Arg::Simple(b) => Some(b),
        _ => None,
    });
    let Some(name) = args.next() else {
        return &[];
    };
    let scripted = name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL");
    // EVALSHA sha numkeys key...
    let key = if scripted { args.nth(2) } else { args.next() };
    let Some(key) = key else { return &[] };
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    tagged.unwrap_or(key)
}

/// `items` in groups of equal key, groups in order of first appearance and items in order
/// within each: how commands are split into one pipeline per slot.
pub(super) fn group_by<T, K: std::hash::Hash + Eq>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> Vec<Vec<T>> {
    let mut groups: Vec<Vec<T>> = Vec::new();
    let mut index: HashMap<K, usize> = HashMap::new();
    for item in items {
        let g = *index.entry(key(&item)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(item);
    }
    groups
}

/// Sends a pipeline to a cluster as one pipeline per hash tag, at once, and puts the
/// results back in command order. A pipeline of one tag (the publisher's, which groups
/// by tag itself) goes as it is.
async fn split(con: &ClusterConnection, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let tags: Vec<&[u8]> = pipeline.cmd_iter().map(tag_of).collect();
    if tags.windows(2).all(|w| w[0] == w[1]) {
        return con
            .clone()
            .req_packed_commands(pipeline, 0, pipeline.len())
            .await;
    }
    let groups: Vec<(Pipeline, Vec<usize>)> =
        group_by(pipeline.cmd_iter().zip(&tags).enumerate(), |(_, (_, t))| {
            **t
        })
        .into_iter()
        .map(|group| {
            let mut p = redis::pipe();
            let at = group.iter().map(|(i, _)| *i).collect();
            for (_, (cmd, _)) in group {
                p.add_command(cmd.clone());
            }
            (p, at)
        })
        .collect();
    let sent = groups.iter().map(|(p, _)| {
        let mut con = con.clone();
        async move { con.req_packed_commands(p, 0, p.len()).await }
    });
    let answers = join_all(sent).await;
    let mut out = vec![Value::Nil; pipeline.len()];
    for ((_, at), answer) in groups.iter().zip(answers) {
        for (i, v) in at.iter().zip(answer?) {
            out[*i] = v;
        }
    }
    Ok(out)
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Con::One(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Con::One(c) => c.req_packed_commands(pipeline, offset, count),
            // A transaction must stay whole (and be single-slot); Parlor sends none.
            Con::Cluster(c) => match pipeline.is_transaction() {
                true => c.req_packed_commands(pipeline, offset, count),
                false => Box::pin(async move {
                    let all = split(c, pipeline).await?;
                    Ok(all.into_iter().skip(offset).take(count).collect())
                }),
            },
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::One(c) => c.get_db(),
            Con::Cluster(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_grouped_by_the_hash_tag_of_its_first_key() {
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg("abc")
            .arg(2)
            .arg("p:{room1}:lease")
            .arg("p:{room1}:epoch");
        assert_eq!(tag_of(&evalsha), b"room1");
        let mut set = redis::cmd("SET");
        set.arg("p:code:ABC").arg("x");
        assert_eq!(tag_of(&set), b"p:code:ABC", "no tag: the whole key");
        let mut publish = redis::cmd("SPUBLISH");
        publish.arg("p:pod:{pod-1}:inbox").arg("m");
        assert_eq!(tag_of(&publish), b"pod-1");
        let mut empty = redis::cmd("GET");
        empty.arg("p:{}:x");
        assert_eq!(tag_of(&empty), b"p:{}:x", "an empty tag is no tag");
    }
}
