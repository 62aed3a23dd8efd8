//! Parlor's durable record: accounts, refresh tokens, magic codes, persistent rooms, chat
//! history and stats.
//!
//! - `Store`: the parts (`Accounts`, `RoomRecords`, `ChatHistory`, `StatsRecords`) that
//!   every implementation honours, each with its own conformance suite.
//! - `embedded`: the default, a redb file in the data dir.
//! - `conformance`: one suite every implementation must pass (behind `test-util`).

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod embedded;
mod metered;
mod mongo;
mod records;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;

use std::{future::Future, pin::Pin, sync::Arc};

pub use embedded::EmbeddedStore;
pub use metered::Observer;
pub use mongo::{MongoOptions, MongoStore};
pub use records::{
    identity_key, AnalyticsEvent, AuditRecord, ChatRecord, LoginState, MagicRecord, MatchPlayer,
    MatchRecord, QuestionSetRecord, Rating, RefreshRecord, RefreshUse, Stats, StatsBatch,
    StatsDelta, StatsSubject, TournamentRecord, UserRecord, APPLIED_BATCHES_KEPT,
};

use parlor_core::{Room, RoomId, UserId};

/// A boxed future, so that `Store` stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How much chat history a store keeps per room (`store.chat_retain_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatRetention {
    /// The newest lines kept per room; appending drops older ones. 0 keeps every line.
    pub max_lines: usize,
    /// Lines older than this (by `sent_at_ms`) are no longer served, and are deleted.
    /// 0 keeps them forever.
    pub max_age_secs: u64,
}

impl Default for ChatRetention {
    fn default() -> Self {
        Self {
            max_lines: 100_000,
            max_age_secs: 0,
        }
    }
}

impl ChatRetention {
    /// The oldest `sent_at_ms` still kept, if lines expire.
    pub(crate) fn oldest_kept_ms(&self) -> Option<i64> {
        (self.max_age_secs > 0).then(|| {
            let age = i64::try_from(self.max_age_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            parlor_core::now_ms().saturating_sub(age)
        })
    }
}

/// Result alias for store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key (a registered name) is already taken.
    #[error("already exists: {0}")]
    Conflict(String),
    /// The record to update does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The backing store could not be reached or failed; the call may succeed later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The data was written with a newer schema than this build reads.
    #[error("incompatible schema: {0}")]
    Schema(String),
}

/// The schema version this build writes, per collection (embedded: per table). A change
/// that old readers cannot take bumps it; adding a defaulted field does not
/// (docs/storage.md, the compatibility rule).
pub const SCHEMA: &[(&str, u32)] = &[
    ("users", 1),
    ("refresh", 1),
    ("magic", 1),
    ("login_state", 1),
    ("rooms", 1),
    ("chat", 1),
    ("stats", 1),
    ("audit", 1),
    ("matches", 1),
    ("ratings", 1),
    ("analytics", 1),
];

/// Accounts and what logs into them: refresh-token families and magic codes.
pub trait Accounts: Send + Sync + 'static {
    /// Creates an account; `Conflict` if its id is taken, if `login` is set and already
    /// taken (case-insensitive), or if another account holds one of its `identities`.
    fn create_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>>;
    /// The account with this id.
    fn get_user(&self, id: &UserId) -> BoxFuture<'_, Result<Option<UserRecord>>>;
    /// The registered account with this login name (case-insensitive).
    fn find_user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<UserRecord>>>;
    /// The account that holds this third-party identity (`identity_key`).
    fn find_user_by_identity(&self, key: &str) -> BoxFuture<'_, Result<Option<UserRecord>>>;
    /// Replaces an existing account; `NotFound` if there is none, `Conflict` if it takes a
    /// login or an identity another account holds.
    fn update_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>>;
    /// Deletes an account and frees its login; returns whether it existed.
    fn delete_user(&self, id: &UserId) -> BoxFuture<'_, Result<bool>>;

    /// Records a newly issued refresh token.
    fn put_refresh(&self, token: &RefreshRecord) -> BoxFuture<'_, Result<()>>;
    /// Atomically marks a refresh token used and says whether it was fresh, already used
    /// (a replay: its family is revoked too) or unknown.
    fn use_refresh(&self, id: &str) -> BoxFuture<'_, Result<RefreshUse>>;

    /// Records a magic login code (by its hash).
    fn put_magic(&self, code: &MagicRecord) -> BoxFuture<'_, Result<()>>;
    /// Atomically removes and returns the magic code with this hash.
    fn take_magic(&self, code_hash: &str) -> BoxFuture<'_, Result<Option<MagicRecord>>>;
    /// Records a third-party sign-in in progress (by its state's hash).
    fn put_login_state(&self, state: &LoginState) -> BoxFuture<'_, Result<()>>;
    /// Atomically removes and returns the sign-in with this state hash, so that a state is
    /// used at most once, whichever pod takes the callback.
    fn take_login_state(&self, state_hash: &str) -> BoxFuture<'_, Result<Option<LoginState>>>;
    /// Deletes refresh tokens, magic codes and sign-in states that expired before `now_ms`; returns how
    /// many. (MongoDB's TTL indexes do this too, about once a minute.)
    fn purge_expired(&self, now_ms: i64) -> BoxFuture<'_, Result<u64>>;
}

/// Persistent rooms.
pub trait RoomRecords: Send + Sync + 'static {
    /// Inserts or replaces a persistent room.
    fn save_room(&self, room: &Room) -> BoxFuture<'_, Result<()>>;
    /// Deletes a persistent room and its chat history.
    fn delete_room(&self, id: &RoomId) -> BoxFuture<'_, Result<()>>;
    /// Every persistent room.
    fn load_rooms(&self) -> BoxFuture<'_, Result<Vec<Room>>>;
    /// How many persistent rooms `owner` owns, for the per-user quota.
    fn count_rooms_owned(&self, owner: &UserId) -> BoxFuture<'_, Result<u64>>;
}

/// Rooms' chat history.
pub trait ChatHistory: Send + Sync + 'static {
    /// Appends chat lines to a room's history (a line with an existing `seq` replaces it),
    /// then applies the store's `ChatRetention`.
    fn append_chat(&self, room: &RoomId, lines: &[ChatRecord]) -> BoxFuture<'_, Result<()>>;
    /// The newest `limit` lines of a room's history with a seq below `before` (any seq,
    /// if None), oldest first: a page going back in time. Expired lines are not served.
    fn recent_chat(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>>;
    /// The highest seq the room's history holds, expired lines included, so that new lines
    /// never reuse a key.
    fn last_chat_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<u64>>>;
    /// The oldest `limit` lines with a seq above `after`, oldest first: a page going
    /// forward (an export).
    fn chat_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>>;
}

/// Activity counters of users and rooms.
pub trait StatsRecords: Send + Sync + 'static {
    /// Adds a batch of counter increments, once: a subject that has already taken a batch
    /// with this id (within the last `APPLIED_BATCHES_KEPT`) is left as it is.
    fn add_stats(&self, batch: &StatsBatch) -> BoxFuture<'_, Result<()>>;
    /// The counters of one user or room (zeros if none).
    fn stats(&self, subject: &StatsSubject) -> BoxFuture<'_, Result<Stats>>;
}

/// Moderation and admin actions, append-only.
pub trait AuditLog: Send + Sync + 'static {
    /// Appends records; one with an id already stored replaces it, so a retry never
    /// duplicates.
    fn append_audit(&self, records: &[AuditRecord]) -> BoxFuture<'_, Result<()>>;
    /// The newest `limit` records with an id below `before` (any, if None), newest first.
    fn audit_page(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>>>;
}

/// A place in a leaderboard (1 is the top) and the players around it, in order.
pub type Standing = (u64, Vec<Rating>);

/// Match results, ratings and leaderboards.
pub trait Ratings: Send + Sync + 'static {
    /// Records a match and sets its players' ratings, in one step: a crash applies both or
    /// neither, and recording a match id again changes nothing (true).
    ///
    /// Each rating's `games` names the version it follows: it applies only over a stored
    /// rating of `games - 1` games, or over none when `games` is 1. If any does not, nothing
    /// is written and the answer is false: a rating changed since the caller read it (a
    /// game that ended at the same time on another pod), and the caller rates again.
    fn record_match(&self, m: &MatchRecord, ratings: &[Rating]) -> BoxFuture<'_, Result<bool>>;
    /// A user's rating in a kind.
    fn rating(&self, user: &UserId, kind: &str) -> BoxFuture<'_, Result<Option<Rating>>>;
    /// A user's ratings in every kind they have played.
    fn ratings_of(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<Rating>>>;
    /// The top `limit` of a kind: highest rating first, ties by user id.
    fn leaderboard(&self, kind: &str, limit: usize) -> BoxFuture<'_, Result<Vec<Rating>>>;
    /// A user's place in a kind's leaderboard (1 is the top) and up to `n` players on
    /// either side, in leaderboard order, the user included; None if unrated.
    fn around(
        &self,
        kind: &str,
        user: &UserId,
        n: usize,
    ) -> BoxFuture<'_, Result<Option<Standing>>>;
    /// A user's matches, newest first, with an id below `before` (any, if None).
    fn matches_of(
        &self,
        user: &UserId,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<MatchRecord>>>;
}

/// Trivia question sets.
pub trait QuestionSets: Send + Sync + 'static {
    /// Stores a set (a set with the same id is replaced).
    fn put_question_set(&self, set: &QuestionSetRecord) -> BoxFuture<'_, Result<()>>;
    /// One set, if there is one with that id.
    fn question_set(&self, id: &str) -> BoxFuture<'_, Result<Option<QuestionSetRecord>>>;
    /// Up to `limit` sets with an id below `before` (any, if None), newest first.
    fn question_sets(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<QuestionSetRecord>>>;
}

/// Tournaments.
pub trait Tournaments: Send + Sync + 'static {
    /// Stores `t` if it follows the stored version: `t.version` 1 for a new tournament,
    /// else one more than the stored one. False when another write came first (the caller
    /// reads again and retries).
    fn save_tournament(&self, t: &TournamentRecord) -> BoxFuture<'_, Result<bool>>;
    /// One tournament, if there is one with that id.
    fn tournament(&self, id: &str) -> BoxFuture<'_, Result<Option<TournamentRecord>>>;
}

/// The append-only analytics stream.
pub trait Analytics: Send + Sync + 'static {
    /// Appends events; one with an id already stored replaces it, so a retry never
    /// duplicates.
    fn append_events(&self, events: &[AnalyticsEvent]) -> BoxFuture<'_, Result<()>>;
    /// The newest `limit` events with an id below `before` (any, if None), newest first.
    fn events(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AnalyticsEvent>>>;
    /// Deletes events from before `older_than_ms`; returns how many.
    fn purge_events(&self, older_than_ms: i64) -> BoxFuture<'_, Result<u64>>;
}

/// Whether the backing store can serve requests.
pub trait Health: Send + Sync + 'static {
    /// Succeeds when the store can serve requests (readiness).
    fn ping(&self) -> BoxFuture<'_, Result<()>>;
}

/// A backend that implements every part.
pub trait Backend:
    Accounts
    + RoomRecords
    + ChatHistory
    + StatsRecords
    + AuditLog
    + Ratings
    + QuestionSets
    + Tournaments
    + Analytics
    + Health
{
}
impl<B> Backend for B where
    B: Accounts
        + RoomRecords
        + ChatHistory
        + StatsRecords
        + AuditLog
        + Ratings
        + QuestionSets
        + Tournaments
        + Analytics
        + Health
{
}

/// Everything that must outlive a pod, by part. Callers use the part they need; one
/// backend implements them all.
#[derive(Clone)]
pub struct Store {
    /// Accounts, refresh tokens and magic codes.
    pub accounts: Arc<dyn Accounts>,
    /// Persistent rooms.
    pub rooms: Arc<dyn RoomRecords>,
    /// Chat history.
    pub chat: Arc<dyn ChatHistory>,
    /// Activity counters.
    pub stats: Arc<dyn StatsRecords>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Matches, ratings and leaderboards.
    pub ratings: Arc<dyn Ratings>,
    /// Trivia question sets.
    pub questions: Arc<dyn QuestionSets>,
    /// Tournaments.
    pub tournaments: Arc<dyn Tournaments>,
    /// The analytics stream.
    pub analytics: Arc<dyn Analytics>,
    health: Arc<dyn Health>,
}

impl Store {
    /// Every part served by one backend.
    pub fn new<B: Backend>(backend: B) -> Self {
        let b = Arc::new(backend);
        Self {
            accounts: b.clone(),
            rooms: b.clone(),
            chat: b.clone(),
            stats: b.clone(),
            audit: b.clone(),
            ratings: b.clone(),
            questions: b.clone(),
            tournaments: b.clone(),
            analytics: b.clone(),
            health: b,
        }
    }

    /// Every part served by one backend, each call reported to `observe`.
    pub fn observed<B: Backend>(backend: B, observe: Observer) -> Self {
        Self::new(metered::Metered {
            inner: backend,
            observe,
        })
    }

    /// Succeeds when the store can serve requests (readiness).
    pub fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.health.ping()
    }
}

/// Which store to open.
#[derive(Debug, Clone)]
pub enum Settings {
    /// A redb file at this path (the default of a single pod).
    Embedded(std::path::PathBuf),
    /// A MongoDB database (a cluster).
    MongoDb(MongoOptions),
}

/// Opens the store that `settings` names, keeping chat as `chat` says, and reporting
/// every call to `observe` if given.
pub async fn open(
    settings: &Settings,
    chat: ChatRetention,
    observe: Option<Observer>,
) -> Result<Store> {
    fn wrap<B: Backend>(b: B, observe: Option<Observer>) -> Store {
        match observe {
            Some(o) => Store::observed(b, o),
            None => Store::new(b),
        }
    }
    Ok(match settings {
        Settings::Embedded(path) => wrap(EmbeddedStore::open(path)?.with_retention(chat), observe),
        Settings::MongoDb(opts) => wrap(
            MongoStore::connect(opts).await?.with_retention(chat),
            observe,
        ),
    })
}
