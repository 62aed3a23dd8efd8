//! The default store: one redb file in the data dir, values as JSON.
//!
//! redb is synchronous and a write transaction may fsync, so every call runs on tokio's
//! blocking pool and never stalls an executor thread.

use std::{fs, path::Path, sync::Arc};

use parlor_core::{Room, RoomId, UserId};
use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{
    records::leaderboard_order, Accounts, Analytics, AnalyticsEvent, AuditLog, AuditRecord,
    BoxFuture, ChatHistory, ChatRecord, ChatRetention, Health, LoginState, MagicRecord,
    MatchRecord, Rating, Ratings, RefreshRecord, RefreshUse, Result, RoomRecords, Standing, Stats,
    StatsBatch, StatsRecords, StatsSubject, StoreError, UserRecord, APPLIED_BATCHES_KEPT,
};

/// User id -> `UserRecord`.
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Lowercased login -> user id. Written in the same transaction as `USERS`.
const LOGINS: TableDefinition<&str, &str> = TableDefinition::new("logins");
/// Identity key (`identity_key`) -> user id. Written in the same transaction as `USERS`.
const IDENTITIES: TableDefinition<&str, &str> = TableDefinition::new("identities");
/// State hash -> `LoginState`.
const LOGIN_STATES: TableDefinition<&str, &[u8]> = TableDefinition::new("login_states");
/// Refresh token id (`jti`) -> `RefreshRecord`.
const REFRESH: TableDefinition<&str, &[u8]> = TableDefinition::new("refresh");
/// Refresh token families revoked after a replay.
const REVOKED_FAMILIES: TableDefinition<&str, ()> = TableDefinition::new("revoked_families");
/// Magic code hash -> `MagicRecord`.
const MAGIC: TableDefinition<&str, &[u8]> = TableDefinition::new("magic");
/// Room id -> `Room`.
const ROOMS: TableDefinition<&str, &[u8]> = TableDefinition::new("rooms");
/// (room id, seq) -> `ChatRecord`. Tuple keys sort by room then seq, so one room's history
/// is a contiguous range in seq order.
const CHAT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("chat");
/// `subject.key()` -> `Stats`.
const STATS: TableDefinition<&str, &[u8]> = TableDefinition::new("stats");

/// Match id -> `MatchRecord`; ids sort in time order.
const MATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("matches");
/// (user id, match id) -> (): a user's matches, in time order.
const USER_MATCHES: TableDefinition<(&str, &str), ()> = TableDefinition::new("user_matches");
/// (kind, user id) -> `Rating`.
const RATINGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("ratings");
/// Analytics event id -> `AnalyticsEvent`; ids sort in time order.
const ANALYTICS: TableDefinition<&str, &[u8]> = TableDefinition::new("analytics");
/// Audit record id -> `AuditRecord`; ids sort in time order.
const AUDIT: TableDefinition<&str, &[u8]> = TableDefinition::new("audit");
/// Tournament id -> `TournamentRecord`.
const TOURNAMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tournaments");
/// Question set id -> `QuestionSetRecord`.
const QUESTION_SETS: TableDefinition<&str, &[u8]> = TableDefinition::new("question_sets");

/// A subject's counters as stored, with the ids of the last batches it took.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredStats {
    #[serde(flatten)]
    stats: Stats,
    #[serde(default)]
    applied: Vec<String>,
}

/// Collection name -> the schema version its records were written with (`SCHEMA`).
const META: TableDefinition<&str, u32> = TableDefinition::new("schema");

/// A `Store` backed by a single redb file.
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    chat: ChatRetention,
}

impl EmbeddedStore {
    /// Opens (or creates) the database file at `path`, creating its parent directories.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        // A store reopened in place (an in-process restart) can race the last drop of the
        // previous handle, which holds the file's lock until then: wait briefly for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let db = loop {
            match Database::create(path) {
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => {
                    break r.map_err(|e| {
                        StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
                    })?
                }
            }
        };
        // Create every table up front so read transactions never meet a missing one.
        write(&db, |txn| {
            txn.open_table(USERS).map_err(db_err)?;
            txn.open_table(LOGINS).map_err(db_err)?;
            txn.open_table(IDENTITIES).map_err(db_err)?;
            txn.open_table(LOGIN_STATES).map_err(db_err)?;
            txn.open_table(REFRESH).map_err(db_err)?;
            txn.open_table(REVOKED_FAMILIES).map_err(db_err)?;
            txn.open_table(MAGIC).map_err(db_err)?;
            txn.open_table(ROOMS).map_err(db_err)?;
            txn.open_table(CHAT).map_err(db_err)?;
            txn.open_table(STATS).map_err(db_err)?;
            txn.open_table(AUDIT).map_err(db_err)?;
            txn.open_table(QUESTION_SETS).map_err(db_err)?;
            txn.open_table(TOURNAMENTS).map_err(db_err)?;
            txn.open_table(MATCHES).map_err(db_err)?;
            txn.open_table(USER_MATCHES).map_err(db_err)?;
            txn.open_table(RATINGS).map_err(db_err)?;
            txn.open_table(ANALYTICS).map_err(db_err)?;
            check_schema(&mut txn.open_table(META).map_err(db_err)?)
        })?;
        Ok(Self {
            db: Arc::new(db),
            chat: ChatRetention::default(),
        })
    }

    /// Keeps chat history as `chat` says instead of the default.
    pub fn with_retention(mut self, chat: ChatRetention) -> Self {
        self.chat = chat;
        self
    }

    /// Runs `f` on the blocking pool. The future owns everything it needs, so callers
    /// clone their arguments into `f`.
    fn run<T, F>(&self, f: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&db))
                .await
                .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
        })
    }
}

/// Records this build's schema versions, or refuses data that a newer build wrote.
fn check_schema(meta: &mut redb::Table<&str, u32>) -> Result<()> {
    for &(name, version) in crate::SCHEMA {
        let stored = meta.get(name).map_err(db_err)?.map(|g| g.value());
        match stored {
            Some(v) if v > version => {
                return Err(StoreError::Schema(format!(
                    "{name} has schema v{v}, this build reads up to v{version}: \
                     it was written by a newer Parlor"
                )))
            }
            Some(v) if v == version => {}
            // Absent (a new file) or older: nothing to migrate yet at v1.
            _ => {
                meta.insert(name, version).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

/// Runs `f` in one write transaction: committed if `f` succeeds, aborted (by drop) if not.
fn write<T>(db: &Database, f: impl FnOnce(&WriteTransaction) -> Result<T>) -> Result<T> {
    let txn = db.begin_write().map_err(db_err)?;
    let out = f(&txn)?;
    txn.commit().map_err(db_err)?;
    Ok(out)
}

/// Runs `f` in one read transaction (a consistent snapshot).
fn read<T>(db: &Database, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
    let txn = db.begin_read().map_err(db_err)?;
    f(&txn)
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(e.into().to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(format!("encoding: {e}")))
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Logins are unique regardless of case.
fn login_key(login: &str) -> String {
    login.to_lowercase()
}

impl Accounts for EmbeddedStore {
    fn create_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>> {
        let user = user.clone();
        self.run(move |db| {
            let bytes = encode(&user)?;
            write(db, |txn| {
                let mut users = txn.open_table(USERS).map_err(db_err)?;
                if users.get(user.id.as_str()).map_err(db_err)?.is_some() {
                    return Err(StoreError::Conflict(format!("user {}", user.id)));
                }
                if let Some(login) = &user.login {
                    let key = login_key(login);
                    let mut logins = txn.open_table(LOGINS).map_err(db_err)?;
                    if logins.get(key.as_str()).map_err(db_err)?.is_some() {
                        return Err(StoreError::Conflict(format!("login {key:?}")));
                    }
                    logins
                        .insert(key.as_str(), user.id.as_str())
                        .map_err(db_err)?;
                }
                claim_identities(txn, &user)?;
                users
                    .insert(user.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn get_user(&self, id: &UserId) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let id = id.clone();
        self.run(move |db| {
            read(db, |txn| {
                let users = txn.open_table(USERS).map_err(db_err)?;
                let found = users.get(id.as_str()).map_err(db_err)?;
                found.map(|g| decode("user", g.value())).transpose()
            })
        })
    }

    fn find_user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let key = login_key(login);
        self.run(move |db| {
            read(db, |txn| {
                let logins = txn.open_table(LOGINS).map_err(db_err)?;
                let Some(id) = logins.get(key.as_str()).map_err(db_err)? else {
                    return Ok(None);
                };
                let id = id.value();
                let users = txn.open_table(USERS).map_err(db_err)?;
                match users.get(id).map_err(db_err)? {
                    Some(g) => decode("user", g.value()).map(Some),
                    None => Err(StoreError::Corrupt(format!(
                        "login {key:?} points at missing user {id}"
                    ))),
                }
            })
        })
    }

    fn find_user_by_identity(&self, key: &str) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let key = key.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let identities = txn.open_table(IDENTITIES).map_err(db_err)?;
                let Some(id) = identities.get(key.as_str()).map_err(db_err)? else {
                    return Ok(None);
                };
                let users = txn.open_table(USERS).map_err(db_err)?;
                match users.get(id.value()).map_err(db_err)? {
                    Some(g) => decode("user", g.value()).map(Some),
                    None => Err(StoreError::Corrupt(format!(
                        "identity {key:?} points at missing user {}",
                        id.value()
                    ))),
                }
            })
        })
    }

    fn update_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>> {
        let user = user.clone();
        self.run(move |db| {
            let bytes = encode(&user)?;
            write(db, |txn| {
                let mut users = txn.open_table(USERS).map_err(db_err)?;
                let old: UserRecord = match users.get(user.id.as_str()).map_err(db_err)? {
                    Some(g) => decode("user", g.value())?,
                    None => return Err(StoreError::NotFound(format!("user {}", user.id))),
                };
                let old_key = old.login.as_deref().map(login_key);
                let new_key = user.login.as_deref().map(login_key);
                if old_key != new_key {
                    let mut logins = txn.open_table(LOGINS).map_err(db_err)?;
                    if let Some(key) = &new_key {
                        let owner = logins.get(key.as_str()).map_err(db_err)?;
                        if owner.is_some_and(|o| o.value() != user.id.as_str()) {
                            return Err(StoreError::Conflict(format!("login {key:?}")));
                        }
                        logins
                            .insert(key.as_str(), user.id.as_str())
                            .map_err(db_err)?;
                    }
                    if let Some(key) = &old_key {
                        remove_login_if_owned(&mut logins, key, &user.id)?;
                    }
                }
                claim_identities(txn, &user)?;
                let mut identities = txn.open_table(IDENTITIES).map_err(db_err)?;
                for key in old
                    .identities
                    .iter()
                    .filter(|k| !user.identities.contains(k))
                {
                    remove_login_if_owned(&mut identities, key, &user.id)?;
                }
                users
                    .insert(user.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn delete_user(&self, id: &UserId) -> BoxFuture<'_, Result<bool>> {
        let id = id.clone();
        self.run(move |db| {
            write(db, |txn| {
                let mut users = txn.open_table(USERS).map_err(db_err)?;
                let Some(removed) = users.remove(id.as_str()).map_err(db_err)? else {
                    return Ok(false);
                };
                let old = decode::<UserRecord>("user", removed.value());
                drop(removed);
                let mut logins = txn.open_table(LOGINS).map_err(db_err)?;
                let mut identities = txn.open_table(IDENTITIES).map_err(db_err)?;
                match old {
                    Ok(old) => {
                        if let Some(login) = &old.login {
                            remove_login_if_owned(&mut logins, &login_key(login), &id)?;
                        }
                        for key in &old.identities {
                            remove_login_if_owned(&mut identities, key, &id)?;
                        }
                    }
                    // The record is unreadable, so its login is unknown: sweep the indexes
                    // rather than leave the name taken forever.
                    Err(_) => {
                        logins
                            .retain(|_, owner| owner != id.as_str())
                            .map_err(db_err)?;
                        identities
                            .retain(|_, owner| owner != id.as_str())
                            .map_err(db_err)?;
                    }
                }
                Ok(true)
            })
        })
    }

    fn put_refresh(&self, token: &RefreshRecord) -> BoxFuture<'_, Result<()>> {
        let token = token.clone();
        self.run(move |db| {
            let bytes = encode(&token)?;
            write(db, |txn| {
                let mut refresh = txn.open_table(REFRESH).map_err(db_err)?;
                refresh
                    .insert(token.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn use_refresh(&self, id: &str) -> BoxFuture<'_, Result<RefreshUse>> {
        let id = id.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut refresh = txn.open_table(REFRESH).map_err(db_err)?;
                let mut token: RefreshRecord = match refresh.get(id.as_str()).map_err(db_err)? {
                    Some(g) => decode("refresh token", g.value())?,
                    None => return Ok(RefreshUse::Unknown),
                };
                let mut revoked = txn.open_table(REVOKED_FAMILIES).map_err(db_err)?;
                let family_revoked = revoked
                    .get(token.family.as_str())
                    .map_err(db_err)?
                    .is_some();
                if token.used || family_revoked {
                    revoked.insert(token.family.as_str(), ()).map_err(db_err)?;
                    return Ok(RefreshUse::Reused(token));
                }
                token.used = true;
                let bytes = encode(&token)?;
                refresh
                    .insert(id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(RefreshUse::Fresh(token))
            })
        })
    }

    fn put_magic(&self, code: &MagicRecord) -> BoxFuture<'_, Result<()>> {
        let code = code.clone();
        self.run(move |db| {
            let bytes = encode(&code)?;
            write(db, |txn| {
                let mut magic = txn.open_table(MAGIC).map_err(db_err)?;
                magic
                    .insert(code.code_hash.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn take_magic(&self, code_hash: &str) -> BoxFuture<'_, Result<Option<MagicRecord>>> {
        let code_hash = code_hash.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut magic = txn.open_table(MAGIC).map_err(db_err)?;
                let removed = magic.remove(code_hash.as_str()).map_err(db_err)?;
                removed.map(|g| decode("magic code", g.value())).transpose()
            })
        })
    }

    fn put_login_state(&self, state: &LoginState) -> BoxFuture<'_, Result<()>> {
        let state = state.clone();
        self.run(move |db| {
            let bytes = encode(&state)?;
            write(db, |txn| {
                let mut states = txn.open_table(LOGIN_STATES).map_err(db_err)?;
                states
                    .insert(state.state_hash.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn take_login_state(&self, state_hash: &str) -> BoxFuture<'_, Result<Option<LoginState>>> {
        let state_hash = state_hash.to_owned();
        self.run(move |db| {
            write(db, |txn| {
                let mut states = txn.open_table(LOGIN_STATES).map_err(db_err)?;
                let removed = states.remove(state_hash.as_str()).map_err(db_err)?;
                removed
                    .map(|g| decode("login state", g.value()))
                    .transpose()
            })
        })
    }

    fn purge_expired(&self, now_ms: i64) -> BoxFuture<'_, Result<u64>> {
        self.run(move |db| {
            write(db, |txn| {
                let mut purged = 0u64;
                // A record that cannot be decoded is kept: purging must not hide corruption.
                let mut refresh = txn.open_table(REFRESH).map_err(db_err)?;
                refresh
                    .retain(|_, v| {
                        let expired = serde_json::from_slice::<RefreshRecord>(v)
                            .is_ok_and(|t| t.expires_at_ms < now_ms);
                        purged += u64::from(expired);
                        !expired
                    })
                    .map_err(db_err)?;
                let mut magic = txn.open_table(MAGIC).map_err(db_err)?;
                magic
                    .retain(|_, v| {
                        let expired = serde_json::from_slice::<MagicRecord>(v)
                            .is_ok_and(|m| m.expires_at_ms < now_ms);
                        purged += u64::from(expired);
                        !expired
                    })
                    .map_err(db_err)?;
                let mut states = txn.open_table(LOGIN_STATES).map_err(db_err)?;
                states
                    .retain(|_, v| {
                        let expired = serde_json::from_slice::<LoginState>(v)
                            .is_ok_and(|m| m.expires_at_ms < now_ms);
                        purged += u64::from(expired);
                        !expired
                    })
                    .map_err(db_err)?;
                Ok(purged)
            })
        })
    }
}

impl RoomRecords for EmbeddedStore {
    fn save_room(&self, room: &Room) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        self.run(move |db| {
            let bytes = encode(&room)?;
            write(db, |txn| {
                let mut rooms = txn.open_table(ROOMS).map_err(db_err)?;
                rooms
                    .insert(room.info.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn delete_room(&self, id: &RoomId) -> BoxFuture<'_, Result<()>> {
        let id = id.clone();
        self.run(move |db| {
            write(db, |txn| {
                let mut rooms = txn.open_table(ROOMS).map_err(db_err)?;
                rooms.remove(id.as_str()).map_err(db_err)?;
                let mut chat = txn.open_table(CHAT).map_err(db_err)?;
                let room = id.as_str();
                chat.retain_in((room, 0)..=(room, u64::MAX), |_, _| false)
                    .map_err(db_err)?;
                Ok(())
            })
        })
    }

    fn load_rooms(&self) -> BoxFuture<'_, Result<Vec<Room>>> {
        self.run(move |db| {
            read(db, |txn| {
                let rooms = txn.open_table(ROOMS).map_err(db_err)?;
                rooms
                    .iter()
                    .map_err(db_err)?
                    .map(|entry| {
                        let (_, v) = entry.map_err(db_err)?;
                        decode("room", v.value())
                    })
                    .collect()
            })
        })
    }

    fn count_rooms_owned(&self, owner: &UserId) -> BoxFuture<'_, Result<u64>> {
        let owner = owner.clone();
        self.run(move |db| {
            read(db, |txn| {
                let rooms = txn.open_table(ROOMS).map_err(db_err)?;
                let mut n = 0;
                for entry in rooms.iter().map_err(db_err)? {
                    let (_, v) = entry.map_err(db_err)?;
                    let room: Room = decode("room", v.value())?;
                    n += u64::from(room.info.owner_id == owner);
                }
                Ok(n)
            })
        })
    }
}

impl ChatHistory for EmbeddedStore {
    fn append_chat(&self, room: &RoomId, lines: &[ChatRecord]) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        let lines = lines.to_vec();
        let retention = self.chat;
        self.run(move |db| {
            let encoded = lines
                .iter()
                .map(|line| Ok((line.seq, encode(line)?)))
                .collect::<Result<Vec<_>>>()?;
            write(db, |txn| {
                let mut chat = txn.open_table(CHAT).map_err(db_err)?;
                let room = room.as_str();
                for (seq, bytes) in &encoded {
                    chat.insert((room, *seq), bytes.as_slice())
                        .map_err(db_err)?;
                }
                // The newest line past the count, if any: it and everything older goes.
                let over_count = match retention.max_lines {
                    0 => None,
                    n => chat
                        .range((room, 0)..=(room, u64::MAX))
                        .map_err(db_err)?
                        .rev()
                        .nth(n)
                        .transpose()
                        .map_err(db_err)?
                        .map(|(k, _)| k.value().1),
                };
                // The newest expired line, scanning from the oldest: lines come in time
                // order, so this stops at the first one still kept.
                let mut over_age = None;
                if let Some(oldest) = retention.oldest_kept_ms() {
                    for entry in chat.range((room, 0)..=(room, u64::MAX)).map_err(db_err)? {
                        let (k, v) = entry.map_err(db_err)?;
                        let line: ChatRecord = decode("chat line", v.value())?;
                        if line.sent_at_ms >= oldest {
                            break;
                        }
                        over_age = Some(k.value().1);
                    }
                }
                if let Some(cutoff) = over_count.max(over_age) {
                    chat.retain_in((room, 0)..=(room, cutoff), |_, _| false)
                        .map_err(db_err)?;
                }
                Ok(())
            })
        })
    }

    fn recent_chat(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>> {
        let room = room.clone();
        let retention = self.chat;
        self.run(move |db| {
            read(db, |txn| {
                let chat = txn.open_table(CHAT).map_err(db_err)?;
                let room = room.as_str();
                let range = match before {
                    Some(b) => chat.range((room, 0)..(room, b)),
                    None => chat.range((room, 0)..=(room, u64::MAX)),
                };
                let oldest = retention.oldest_kept_ms().unwrap_or(i64::MIN);
                let mut lines = decode_lines(range.map_err(db_err)?.rev())
                    .filter(|l| l.as_ref().map_or(true, |l| l.sent_at_ms >= oldest))
                    .take(limit)
                    .collect::<Result<Vec<_>>>()?;
                lines.reverse();
                Ok(lines)
            })
        })
    }

    fn last_chat_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<u64>>> {
        let room = room.clone();
        self.run(move |db| {
            read(db, |txn| {
                let chat = txn.open_table(CHAT).map_err(db_err)?;
                let room = room.as_str();
                let last = chat
                    .range((room, 0)..=(room, u64::MAX))
                    .map_err(db_err)?
                    .next_back()
                    .transpose()
                    .map_err(db_err)?;
                Ok(last.map(|(k, _)| k.value().1))
            })
        })
    }

    fn chat_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>> {
        let room = room.clone();
        let retention = self.chat;
        self.run(move |db| {
            let Some(first) = after.checked_add(1) else {
                return Ok(Vec::new());
            };
            read(db, |txn| {
                let chat = txn.open_table(CHAT).map_err(db_err)?;
                let room = room.as_str();
                let range = chat
                    .range((room, first)..=(room, u64::MAX))
                    .map_err(db_err)?;
                let oldest = retention.oldest_kept_ms().unwrap_or(i64::MIN);
                decode_lines(range)
                    .filter(|l| l.as_ref().map_or(true, |l| l.sent_at_ms >= oldest))
                    .take(limit)
                    .collect()
            })
        })
    }
}

type ChatEntry<'a> = std::result::Result<
    (
        redb::AccessGuard<'a, (&'static str, u64)>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

fn decode_lines<'a, I: Iterator<Item = ChatEntry<'a>>>(
    entries: I,
) -> impl Iterator<Item = Result<ChatRecord>> + use<'a, I> {
    entries.map(|entry| {
        let (_, v) = entry.map_err(db_err)?;
        decode("chat line", v.value())
    })
}

impl StatsRecords for EmbeddedStore {
    fn add_stats(&self, batch: &StatsBatch) -> BoxFuture<'_, Result<()>> {
        let batch = batch.clone();
        self.run(move |db| {
            write(db, |txn| {
                let mut stats = txn.open_table(STATS).map_err(db_err)?;
                for (subject, add) in batch.by_subject() {
                    let key = subject.key();
                    let mut total: StoredStats = match stats.get(key.as_str()).map_err(db_err)? {
                        Some(g) => decode("stats", g.value())?,
                        None => StoredStats::default(),
                    };
                    if total.applied.contains(&batch.id) {
                        continue;
                    }
                    total.stats.add(&add);
                    total.applied.push(batch.id.clone());
                    let over = total.applied.len().saturating_sub(APPLIED_BATCHES_KEPT);
                    total.applied.drain(..over);
                    let bytes = encode(&total)?;
                    stats
                        .insert(key.as_str(), bytes.as_slice())
                        .map_err(db_err)?;
                }
                Ok(())
            })
        })
    }

    fn stats(&self, subject: &StatsSubject) -> BoxFuture<'_, Result<Stats>> {
        let key = subject.key();
        self.run(move |db| {
            read(db, |txn| {
                let stats = txn.open_table(STATS).map_err(db_err)?;
                match stats.get(key.as_str()).map_err(db_err)? {
                    Some(g) => decode("stats", g.value()),
                    None => Ok(Stats::default()),
                }
            })
        })
    }
}

/// Writes records into a table keyed by their time-ordered ids; one with an id already
/// there replaces it.
fn put_by_id<T: Serialize>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    records: &[(String, T)],
) -> Result<()> {
    let encoded = records
        .iter()
        .map(|(id, r)| Ok((id, encode(r)?)))
        .collect::<Result<Vec<_>>>()?;
    write(db, |txn| {
        let mut t = txn.open_table(table).map_err(db_err)?;
        for (id, bytes) in &encoded {
            t.insert(id.as_str(), bytes.as_slice()).map_err(db_err)?;
        }
        Ok(())
    })
}

/// The newest `limit` records of an id-keyed table with an id below `before`, newest first.
fn newest_below<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    what: &str,
    before: Option<&str>,
    limit: usize,
) -> Result<Vec<T>> {
    read(db, |txn| {
        let t = txn.open_table(table).map_err(db_err)?;
        let range = match before {
            Some(b) => t.range(..b),
            None => t.range::<&str>(..),
        };
        range
            .map_err(db_err)?
            .rev()
            .take(limit)
            .map(|e| {
                let (_, v) = e.map_err(db_err)?;
                decode(what, v.value())
            })
            .collect()
    })
}

impl AuditLog for EmbeddedStore {
    fn append_audit(&self, records: &[AuditRecord]) -> BoxFuture<'_, Result<()>> {
        let keyed: Vec<_> = records.iter().map(|r| (r.id.clone(), r.clone())).collect();
        self.run(move |db| put_by_id(db, AUDIT, &keyed))
    }

    fn audit_page(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>>> {
        self.run(move |db| newest_below(db, AUDIT, "audit record", before.as_deref(), limit))
    }
}

impl crate::Tournaments for EmbeddedStore {
    fn save_tournament(&self, t: &crate::TournamentRecord) -> BoxFuture<'_, Result<bool>> {
        let t = t.clone();
        self.run(move |db| {
            let bytes = encode(&t)?;
            write(db, |txn| {
                let mut table = txn.open_table(TOURNAMENTS).map_err(db_err)?;
                let stored = match table.get(t.id.as_str()).map_err(db_err)? {
                    Some(v) => {
                        Some(decode::<crate::TournamentRecord>("tournament", v.value())?.version)
                    }
                    None => None,
                };
                // In one write transaction: nothing can come between the check and the put.
                if stored.map_or(0, |v| v) + 1 != t.version {
                    return Ok(false);
                }
                table
                    .insert(t.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                Ok(true)
            })
        })
    }

    fn tournament(&self, id: &str) -> BoxFuture<'_, Result<Option<crate::TournamentRecord>>> {
        let id = id.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let t = txn.open_table(TOURNAMENTS).map_err(db_err)?;
                match t.get(id.as_str()).map_err(db_err)? {
                    Some(v) => Ok(Some(decode("tournament", v.value())?)),
                    None => Ok(None),
                }
            })
        })
    }
}

impl crate::QuestionSets for EmbeddedStore {
    fn put_question_set(&self, set: &crate::QuestionSetRecord) -> BoxFuture<'_, Result<()>> {
        let keyed = vec![(set.id.clone(), set.clone())];
        self.run(move |db| put_by_id(db, QUESTION_SETS, &keyed))
    }

    fn question_set(&self, id: &str) -> BoxFuture<'_, Result<Option<crate::QuestionSetRecord>>> {
        let id = id.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let t = txn.open_table(QUESTION_SETS).map_err(db_err)?;
                match t.get(id.as_str()).map_err(db_err)? {
                    Some(v) => Ok(Some(decode("question set", v.value())?)),
                    None => Ok(None),
                }
            })
        })
    }

    fn question_sets(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::QuestionSetRecord>>> {
        self.run(move |db| {
            newest_below(db, QUESTION_SETS, "question set", before.as_deref(), limit)
        })
    }
}

/// Every rating of `kind`, in leaderboard order.
fn board(txn: &ReadTransaction, kind: &str) -> Result<Vec<Rating>> {
    let ratings = txn.open_table(RATINGS).map_err(db_err)?;
    let mut all = Vec::new();
    for e in ratings.range((kind, "")..).map_err(db_err)? {
        let (k, v) = e.map_err(db_err)?;
        if k.value().0 != kind {
            break;
        }
        all.push(decode::<Rating>("rating", v.value())?);
    }
    all.sort_by(leaderboard_order);
    Ok(all)
}

impl Ratings for EmbeddedStore {
    fn record_match(&self, m: &MatchRecord, ratings: &[Rating]) -> BoxFuture<'_, Result<bool>> {
        let (m, ratings) = (m.clone(), ratings.to_vec());
        self.run(move |db| {
            let bytes = encode(&m)?;
            let encoded = ratings
                .iter()
                .map(|r| Ok((r, encode(r)?)))
                .collect::<Result<Vec<_>>>()?;
            write(db, |txn| {
                let mut matches = txn.open_table(MATCHES).map_err(db_err)?;
                if matches.get(m.id.as_str()).map_err(db_err)?.is_some() {
                    return Ok(true);
                }
                let mut table = txn.open_table(RATINGS).map_err(db_err)?;
                for (r, _) in &encoded {
                    let key = (r.kind.as_str(), r.user.as_str());
                    let had = match table.get(key).map_err(db_err)? {
                        Some(g) => decode::<Rating>("rating", g.value())?.games,
                        None => 0,
                    };
                    if had + 1 != r.games {
                        return Ok(false);
                    }
                }
                matches
                    .insert(m.id.as_str(), bytes.as_slice())
                    .map_err(db_err)?;
                let mut by_user = txn.open_table(USER_MATCHES).map_err(db_err)?;
                for p in &m.players {
                    by_user
                        .insert((p.user.as_str(), m.id.as_str()), ())
                        .map_err(db_err)?;
                }
                for (r, bytes) in &encoded {
                    let key = (r.kind.as_str(), r.user.as_str());
                    table.insert(key, bytes.as_slice()).map_err(db_err)?;
                }
                Ok(true)
            })
        })
    }

    fn rating(&self, user: &UserId, kind: &str) -> BoxFuture<'_, Result<Option<Rating>>> {
        let (user, kind) = (user.clone(), kind.to_owned());
        self.run(move |db| {
            read(db, |txn| {
                let ratings = txn.open_table(RATINGS).map_err(db_err)?;
                let got = ratings
                    .get((kind.as_str(), user.as_str()))
                    .map_err(db_err)?;
                got.map(|g| decode("rating", g.value())).transpose()
            })
        })
    }

    fn ratings_of(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<Rating>>> {
        let user = user.clone();
        self.run(move |db| {
            read(db, |txn| {
                let ratings = txn.open_table(RATINGS).map_err(db_err)?;
                let mut mine = Vec::new();
                for e in ratings.iter().map_err(db_err)? {
                    let (k, v) = e.map_err(db_err)?;
                    if k.value().1 == user.as_str() {
                        mine.push(decode::<Rating>("rating", v.value())?);
                    }
                }
                Ok(mine)
            })
        })
    }

    fn leaderboard(&self, kind: &str, limit: usize) -> BoxFuture<'_, Result<Vec<Rating>>> {
        let kind = kind.to_owned();
        self.run(move |db| {
            read(db, |txn| {
                let mut all = board(txn, &kind)?;
                all.truncate(limit);
                Ok(all)
            })
        })
    }

    fn around(
        &self,
        kind: &str,
        user: &UserId,
        n: usize,
    ) -> BoxFuture<'_, Result<Option<Standing>>> {
        let (kind, user) = (kind.to_owned(), user.clone());
        self.run(move |db| {
            read(db, |txn| {
                let all = board(txn, &kind)?;
                let Some(at) = all.iter().position(|r| r.user == user) else {
                    return Ok(None);
                };
                let window = all[at.saturating_sub(n)..(at + n + 1).min(all.len())].to_vec();
                Ok(Some((at as u64 + 1, window)))
            })
        })
    }

    fn matches_of(
        &self,
        user: &UserId,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<MatchRecord>>> {
        let user = user.clone();
        self.run(move |db| {
            read(db, |txn| {
                let by_user = txn.open_table(USER_MATCHES).map_err(db_err)?;
                let matches = txn.open_table(MATCHES).map_err(db_err)?;
                let u = user.as_str();
                let range = match &before {
                    Some(b) => by_user.range((u, "")..(u, b.as_str())),
                    None => by_user.range((u, "")..=(u, "\u{10ffff}")),
                };
                let mut out = Vec::new();
                for e in range.map_err(db_err)?.rev().take(limit) {
                    let (k, _) = e.map_err(db_err)?;
                    let id = k.value().1;
                    if let Some(g) = matches.get(id).map_err(db_err)? {
                        out.push(decode("match", g.value())?);
                    }
                }
                Ok(out)
            })
        })
    }
}

impl Analytics for EmbeddedStore {
    fn append_events(&self, events: &[AnalyticsEvent]) -> BoxFuture<'_, Result<()>> {
        let keyed: Vec<_> = events.iter().map(|e| (e.id.clone(), e.clone())).collect();
        self.run(move |db| put_by_id(db, ANALYTICS, &keyed))
    }

    fn events(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AnalyticsEvent>>> {
        self.run(move |db| newest_below(db, ANALYTICS, "analytics event", before.as_deref(), limit))
    }

    fn purge_events(&self, older_than_ms: i64) -> BoxFuture<'_, Result<u64>> {
        self.run(move |db| {
            write(db, |txn| {
                let mut table = txn.open_table(ANALYTICS).map_err(db_err)?;
                // Ids start with the time, so the old ones are one range at the front.
                let bound = format!("{older_than_ms:013}");
                let mut purged = 0u64;
                table
                    .retain_in::<&str, _>(..bound.as_str(), |_, _| {
                        purged += 1;
                        false
                    })
                    .map_err(db_err)?;
                Ok(purged)
            })
        })
    }
}

impl Health for EmbeddedStore {
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        self.run(move |db| {
            read(db, |txn| {
                txn.open_table(USERS).map_err(db_err)?;
                Ok(())
            })
        })
    }
}

/// Frees `key` in the login index unless another account has claimed it since.
/// Indexes the account's identities; `Conflict` if another account holds one.
fn claim_identities(txn: &WriteTransaction, user: &UserRecord) -> Result<()> {
    let mut identities = txn.open_table(IDENTITIES).map_err(db_err)?;
    for key in &user.identities {
        let owner = identities.get(key.as_str()).map_err(db_err)?;
        if owner.is_some_and(|o| o.value() != user.id.as_str()) {
            return Err(StoreError::Conflict(format!("identity {key:?}")));
        }
        identities
            .insert(key.as_str(), user.id.as_str())
            .map_err(db_err)?;
    }
    Ok(())
}

/// Removes an index entry (a login or an identity) if it points at `id`.
fn remove_login_if_owned(
    logins: &mut redb::Table<'_, &'static str, &'static str>,
    key: &str,
    id: &UserId,
) -> Result<()> {
    let owned = logins
        .get(key)
        .map_err(db_err)?
        .is_some_and(|owner| owner.value() == id.as_str());
    if owned {
        logins.remove(key).map_err(db_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use parlor_core::{GlobalRole, RoomInfo, RoomSettings};

    use super::*;
    use crate::conformance;

    fn fresh() -> (tempfile::TempDir, EmbeddedStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("nested/parlor.redb"))
            .expect("open")
            .with_retention(conformance::RETENTION);
        (dir, store)
    }

    #[tokio::test]
    async fn users() {
        let (_dir, store) = fresh();
        conformance::users(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn question_sets() {
        let (_dir, store) = fresh();
        conformance::question_sets(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn tournaments() {
        let (_dir, store) = fresh();
        conformance::tournaments(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn refresh() {
        let (_dir, store) = fresh();
        conformance::refresh(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn magic() {
        let (_dir, store) = fresh();
        conformance::magic(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn purge() {
        let (_dir, store) = fresh();
        conformance::purge(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn audit() {
        let (_dir, store) = fresh();
        conformance::audit(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn ratings() {
        let (_dir, store) = fresh();
        conformance::ratings(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn analytics() {
        let (_dir, store) = fresh();
        conformance::analytics(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn stats_peak() {
        let (_dir, store) = fresh();
        conformance::stats_peak(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn rooms() {
        let (_dir, store) = fresh();
        conformance::rooms(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn chat() {
        let (_dir, store) = fresh();
        conformance::chat(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn chat_age() {
        let (_dir, store) = fresh();
        let store = store.with_retention(conformance::ONE_DAY);
        conformance::chat_age(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn chat_paging() {
        let (_dir, store) = fresh();
        conformance::chat_paging(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn stats() {
        let (_dir, store) = fresh();
        conformance::stats(&crate::Store::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_stats() {
        let (_dir, store) = fresh();
        conformance::concurrent_stats(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn all_on_one_store() {
        let (_dir, store) = fresh();
        conformance::run_all(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn open_through_the_factory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = crate::Settings::Embedded(dir.path().join("parlor.redb"));
        let store = crate::open(&settings, crate::ChatRetention::default(), None)
            .await
            .expect("open");
        store.ping().await.expect("ping");
    }

    #[tokio::test]
    async fn survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("parlor.redb");
        let user = UserRecord {
            id: "u_restart".into(),
            name: "Ada".into(),
            login: Some("ada".into()),
            password_hash: Some("$argon2id$stub".into()),
            role: GlobalRole::Admin,
            created_at_ms: 42,
            blocked: Vec::new(),
            identities: Vec::new(),
        };
        let room = Room {
            info: RoomInfo {
                id: "r_restart".into(),
                code: "ABCDEF".into(),
                name: "Jam".into(),
                kind: "piano".into(),
                public: true,
                password: String::new(),
                max_members: 8,
                owner_id: user.id.clone(),
                persistent: true,
                created_at_ms: 7,
                status: String::new(),
                game_config: None,
                tournament: None,
            },
            settings: RoomSettings::default(),
            members: Vec::new(),
            bans: BTreeSet::new(),
            mutes: BTreeSet::new(),
        };
        let subject = StatsSubject::User(user.id.clone());
        let add = Stats {
            chat_messages: 3,
            game_events: 2,
            joins: 1,
            ..Stats::default()
        };
        {
            let store = EmbeddedStore::open(&path).expect("open");
            store.create_user(&user).await.expect("create user");
            store.save_room(&room).await.expect("save room");
            store
                .add_stats(&StatsBatch {
                    id: "b1".into(),
                    deltas: vec![crate::StatsDelta {
                        subject: subject.clone(),
                        add,
                    }],
                })
                .await
                .expect("add stats");
        }
        let store = EmbeddedStore::open(&path).expect("reopen");
        assert_eq!(
            store.get_user(&user.id).await.expect("get"),
            Some(user.clone())
        );
        assert_eq!(
            store.find_user_by_login("ADA").await.expect("find"),
            Some(user.clone())
        );
        assert_eq!(store.load_rooms().await.expect("load"), vec![room]);
        assert_eq!(store.stats(&subject).await.expect("stats"), add);
    }

    #[tokio::test]
    async fn records_of_an_older_shape_still_load() {
        let (_dir, store) = fresh();
        // A room as first stored: settings without echo_events, no bans or mutes.
        let room = br#"{"info":{"id":"r_old","code":"OLD123","name":"Old","kind":"piano",
            "public":true,"password":"","max_members":16,"owner_id":"u_1",
            "persistent":true,"created_at_ms":1},
            "settings":{"allow_chat":false,"allow_guests":true,"owner_only_play":false,
            "owner_only_chat":false,"welcome_message":"hi","event_rate_limit":20},
            "members":[]}"#;
        let user = br#"{"id":"u_old","name":"Old","role":"user","created_at_ms":1}"#;
        write(&store.db, |txn| {
            let mut rooms = txn.open_table(ROOMS).map_err(db_err)?;
            rooms.insert("r_old", room.as_slice()).map_err(db_err)?;
            let mut users = txn.open_table(USERS).map_err(db_err)?;
            users.insert("u_old", user.as_slice()).map_err(db_err)?;
            Ok(())
        })
        .expect("seed");
        let rooms = store.load_rooms().await.expect("old room loads");
        assert_eq!(rooms.len(), 1);
        let r = &rooms[0];
        assert!(!r.settings.allow_chat && r.settings.echo_events);
        assert_eq!(r.settings.event_rate_limit, 20);
        assert!(r.bans.is_empty() && r.mutes.is_empty());
        let u = store
            .get_user(&UserId::from("u_old"))
            .await
            .expect("old user loads");
        let u = u.expect("present");
        assert_eq!((u.login, u.password_hash), (None, None));
    }

    #[test]
    fn data_from_a_newer_schema_is_refused_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("parlor.redb");
        let store = EmbeddedStore::open(&path).expect("open");
        write(&store.db, |txn| {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            meta.insert("rooms", 99).map_err(db_err)?;
            Ok(())
        })
        .expect("bump");
        drop(store);
        match EmbeddedStore::open(&path) {
            Err(StoreError::Schema(m)) => assert!(m.contains("rooms") && m.contains("v99"), "{m}"),
            other => panic!("newer data accepted: {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn corrupt_records_are_errors_not_panics() {
        let (_dir, store) = fresh();
        write(&store.db, |txn| {
            let mut users = txn.open_table(USERS).map_err(db_err)?;
            users
                .insert("u_bad", b"not json".as_slice())
                .map_err(db_err)?;
            let mut logins = txn.open_table(LOGINS).map_err(db_err)?;
            logins.insert("bad", "u_bad").map_err(db_err)?;
            Ok(())
        })
        .expect("seed");
        let id = UserId::from("u_bad");
        assert!(matches!(
            store.get_user(&id).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.find_user_by_login("bad").await,
            Err(StoreError::Corrupt(_))
        ));
        // Deleting still works and frees the login.
        assert!(store.delete_user(&id).await.expect("delete"));
        assert_eq!(store.find_user_by_login("bad").await.expect("find"), None);
    }
}
