//! Pod inboxes on Redis: one channel per pod, `P:pod:{POD}:inbox`, published through the
//! ordered publisher, so that one pod's messages to another keep their order.

use bytes::Bytes;

use super::{Job, JobKind, RedisBackend};
use crate::{BoxFuture, ClusterError, Inbox, InboxHandler, Result};

impl Inbox for RedisBackend {
    fn send(&self, pod: &str, msg: Bytes) -> BoxFuture<'static, Result<()>> {
        let mut cmd = redis::cmd(super::conn::publish_cmd(self.cmd.sharded()));
        cmd.arg(self.keys.inbox(pod)).arg(msg.as_ref());
        let (done, answer) = tokio::sync::oneshot::channel();
        let _ = self.publishes.send(Job {
            cmd,
            kind: JobKind::Plain,
            done,
        });
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(ClusterError::Unavailable("the broker is closed".into())))
        })
    }

    fn listen(&self, pod: &str, handler: InboxHandler) -> BoxFuture<'_, Result<()>> {
        let channel = self.keys.inbox(pod);
        Box::pin(async move {
            *super::lock(&self.subs.inbox) = Some((channel.clone().into_bytes(), handler));
            let r = self.sub.clone().subscribe(&channel).await;
            self.seen(r)
        })
    }
}
