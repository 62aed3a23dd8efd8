use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::Bytes;

use crate::{ready, BoxFuture, Result};

/// What reads a pod's inbox.
pub type InboxHandler = Arc<dyn Fn(Bytes) + Send + Sync>;

/// Inbox is responsible for messages between pods: each pod reads its own inbox.
///
/// Messages from one pod to another arrive in the order they were sent, or not at all
/// (Redis pub/sub drops what a disconnected pod misses), so whatever waits for an answer
/// has a timeout.
pub trait Inbox: Send + Sync + 'static {
    /// Queues `msg` for `pod`'s inbox; never blocks. The future says whether the backend
    /// took it (not whether the pod read it); dropping it is fine.
    fn send(&self, pod: &str, msg: Bytes) -> BoxFuture<'static, Result<()>>;
    /// Starts delivering `pod`'s inbox to `handler`, in order. Called once per pod.
    fn listen(&self, pod: &str, handler: InboxHandler) -> BoxFuture<'_, Result<()>>;
}

/// Inboxes within one process (the single pod, or pods in a test).
#[derive(Default)]
pub struct MemoryInbox {
    pods: Mutex<HashMap<String, InboxHandler>>,
}

impl Inbox for MemoryInbox {
    fn send(&self, pod: &str, msg: Bytes) -> BoxFuture<'static, Result<()>> {
        let handler = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pod)
            .cloned();
        if let Some(h) = handler {
            h(msg);
        }
        ready(Ok(()))
    }

    fn listen(&self, pod: &str, handler: InboxHandler) -> BoxFuture<'_, Result<()>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pod.to_owned(), handler);
        ready(Ok(()))
    }
}
