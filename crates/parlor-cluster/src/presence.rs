use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use parlor_core::UserId;

use crate::{ready, BoxFuture, Result};

/// Presence is responsible for knowing which sessions each user has online, cluster-wide.
pub trait Presence: Send + Sync + 'static {
    /// Records a session of `user` as online on `pod`.
    fn online(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>>;
    /// Records a session as gone.
    fn offline(&self, user: &UserId, session: &str) -> BoxFuture<'_, Result<()>>;
    /// The (session, pod) pairs of a user.
    fn sessions(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<(String, String)>>>;
}

/// The single-pod presence map.
#[derive(Default)]
pub struct MemoryPresence {
    users: Mutex<HashMap<UserId, Vec<(String, String)>>>,
}

impl MemoryPresence {
    fn lock(&self) -> MutexGuard<'_, HashMap<UserId, Vec<(String, String)>>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Presence for MemoryPresence {
    fn online(&self, user: &UserId, session: &str, pod: &str) -> BoxFuture<'_, Result<()>> {
        self.lock()
            .entry(user.clone())
            .or_default()
            .push((session.to_owned(), pod.to_owned()));
        ready(Ok(()))
    }

    fn offline(&self, user: &UserId, session: &str) -> BoxFuture<'_, Result<()>> {
        let mut users = self.lock();
        if let Some(list) = users.get_mut(user) {
            list.retain(|(s, _)| s != session);
            if list.is_empty() {
                users.remove(user);
            }
        }
        ready(Ok(()))
    }

    fn sessions(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<(String, String)>>> {
        ready(Ok(self.lock().get(user).cloned().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn online_offline() {
        let p = MemoryPresence::default();
        let u = UserId::from("u");
        p.online(&u, "s1", "pod").await.unwrap();
        p.online(&u, "s2", "pod").await.unwrap();
        p.offline(&u, "s1").await.unwrap();
        assert_eq!(
            p.sessions(&u).await.unwrap(),
            vec![("s2".into(), "pod".into())]
        );
        p.offline(&u, "s2").await.unwrap();
        assert!(p.sessions(&u).await.unwrap().is_empty());
    }
}
