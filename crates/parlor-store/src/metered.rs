//! Times every store call, for any backend: `Store::observed` wraps a backend in `Metered`,
//! which reports each call's operation name, duration and outcome to an `Observer`.

use std::{sync::Arc, time::Instant};

use parlor_core::{Room, RoomId, UserId};

use crate::{
    Accounts, Analytics, AnalyticsEvent, AuditLog, AuditRecord, BoxFuture, ChatHistory, ChatRecord,
    Health, LoginState, MagicRecord, MatchRecord, Rating, Ratings, RefreshRecord, RefreshUse,
    Result, RoomRecords, Standing, Stats, StatsBatch, StatsRecords, StatsSubject, UserRecord,
};

/// Told of every store call when it ends: the operation, its duration, and whether it
/// succeeded.
pub type Observer = Arc<dyn Fn(&'static str, std::time::Duration, bool) + Send + Sync>;

pub(crate) struct Metered<B> {
    pub(crate) inner: B,
    pub(crate) observe: Observer,
}

impl<B: Sync> Metered<B> {
    fn timed<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        Box::pin(async move {
            let start = Instant::now();
            let out = call.await;
            (self.observe)(op, start.elapsed(), out.is_ok());
            out
        })
    }
}

/// Forwards each listed method to `inner`, timed under its own name.
macro_rules! forward {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty; )*) => {
        $(
            fn $name(&self $(, $arg: $ty)*) -> BoxFuture<'_, Result<$out>> {
                self.timed(stringify!($name), self.inner.$name($($arg),*))
            }
        )*
    };
}

impl<B: Accounts> Accounts for Metered<B> {
    forward! {
        fn create_user(&self, user: &UserRecord) -> ();
        fn get_user(&self, id: &UserId) -> Option<UserRecord>;
        fn find_user_by_login(&self, login: &str) -> Option<UserRecord>;
        fn find_user_by_identity(&self, key: &str) -> Option<UserRecord>;
        fn update_user(&self, user: &UserRecord) -> ();
        fn delete_user(&self, id: &UserId) -> bool;
        fn put_refresh(&self, token: &RefreshRecord) -> ();
        fn use_refresh(&self, id: &str) -> RefreshUse;
        fn put_magic(&self, code: &MagicRecord) -> ();
        fn take_magic(&self, code_hash: &str) -> Option<MagicRecord>;
        fn put_login_state(&self, state: &LoginState) -> ();
        fn take_login_state(&self, state_hash: &str) -> Option<LoginState>;
        fn purge_expired(&self, now_ms: i64) -> u64;
    }
}

impl<B: RoomRecords> RoomRecords for Metered<B> {
    forward! {
        fn save_room(&self, room: &Room) -> ();
        fn delete_room(&self, id: &RoomId) -> ();
        fn load_rooms(&self) -> Vec<Room>;
        fn count_rooms_owned(&self, owner: &UserId) -> u64;
    }
}

impl<B: ChatHistory> ChatHistory for Metered<B> {
    forward! {
        fn append_chat(&self, room: &RoomId, lines: &[ChatRecord]) -> ();
        fn recent_chat(&self, room: &RoomId, before: Option<u64>, limit: usize) -> Vec<ChatRecord>;
        fn last_chat_seq(&self, room: &RoomId) -> Option<u64>;
        fn chat_after(&self, room: &RoomId, after: u64, limit: usize) -> Vec<ChatRecord>;
    }
}

impl<B: StatsRecords> StatsRecords for Metered<B> {
    forward! {
        fn add_stats(&self, batch: &StatsBatch) -> ();
        fn stats(&self, subject: &StatsSubject) -> Stats;
    }
}

impl<B: AuditLog> AuditLog for Metered<B> {
    forward! {
        fn append_audit(&self, records: &[AuditRecord]) -> ();
        fn audit_page(&self, before: Option<String>, limit: usize) -> Vec<AuditRecord>;
    }
}

impl<B: crate::QuestionSets> crate::QuestionSets for Metered<B> {
    forward! {
        fn put_question_set(&self, set: &crate::QuestionSetRecord) -> ();
        fn question_set(&self, id: &str) -> Option<crate::QuestionSetRecord>;
        fn question_sets(&self, before: Option<String>, limit: usize) -> Vec<crate::QuestionSetRecord>;
    }
}

impl<B: crate::Tournaments> crate::Tournaments for Metered<B> {
    forward! {
        fn save_tournament(&self, t: &crate::TournamentRecord) -> bool;
        fn tournament(&self, id: &str) -> Option<crate::TournamentRecord>;
    }
}

impl<B: Ratings> Ratings for Metered<B> {
    forward! {
        fn record_match(&self, m: &MatchRecord, ratings: &[Rating]) -> bool;
        fn rating(&self, user: &UserId, kind: &str) -> Option<Rating>;
        fn ratings_of(&self, user: &UserId) -> Vec<Rating>;
        fn leaderboard(&self, kind: &str, limit: usize) -> Vec<Rating>;
        fn around(&self, kind: &str, user: &UserId, n: usize) -> Option<Standing>;
        fn matches_of(&self, user: &UserId, before: Option<String>, limit: usize) -> Vec<MatchRecord>;
    }
}

impl<B: Analytics> Analytics for Metered<B> {
    forward! {
        fn append_events(&self, events: &[AnalyticsEvent]) -> ();
        fn events(&self, before: Option<String>, limit: usize) -> Vec<AnalyticsEvent>;
        fn purge_events(&self, older_than_ms: i64) -> u64;
    }
}

impl<B: Health> Health for Metered<B> {
    forward! {
        fn ping(&self) -> ();
    }
}
