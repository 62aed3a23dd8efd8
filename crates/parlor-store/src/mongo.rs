//! The cluster store: MongoDB through the official driver.
//!
//! Every record is a native document, so operators can read and index it. A stored
//! record carries no field the store does not also need, besides the store's own keys:
//! `_id`, `login_key` (the lowercased login, unique), `room` and `seq` (chat), and
//! `expires_at` (a BSON date, for the TTL indexes that purge expired tokens and codes).
//! Start-up creates the indexes idempotently and checks the schema versions.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::{
    bson::{self, doc, DateTime, Document},
    error::{ErrorKind, WriteFailure},
    options::{ClientOptions, IndexOptions, ReturnDocument},
    Client, Collection, Database, IndexModel,
};
use parlor_core::{Room, RoomId, UserId};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    Accounts, Analytics, AnalyticsEvent, AuditLog, AuditRecord, BoxFuture, ChatHistory, ChatRecord,
    ChatRetention, Health, LoginState, MagicRecord, MatchRecord, Rating, Ratings, RefreshRecord,
    RefreshUse, Result, RoomRecords, Standing, Stats, StatsBatch, StatsRecords, StatsSubject,
    StoreError, UserRecord, APPLIED_BATCHES_KEPT,
};

/// How to reach MongoDB.
#[derive(Debug, Clone)]
pub struct MongoOptions {
    /// A `mongodb://` or `mongodb+srv://` URI.
    pub uri: String,
    /// The database that holds Parlor's collections.
    pub database: String,
    /// Most connections per pod; 0 keeps the driver's default.
    pub pool_size: u32,
}

/// A store backed by one MongoDB database.
#[derive(Debug, Clone)]
pub struct MongoStore {
    db: Database,
    chat: ChatRetention,
}

/// Server error code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

fn unavailable(e: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(format!("mongodb: {e}"))
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        _ => false,
    }
}

fn to_doc<T: Serialize>(what: &str, value: &T) -> Result<Document> {
    bson::to_document(value).map_err(|e| StoreError::Corrupt(format!("encoding {what}: {e}")))
}

/// The store's own keys (`_id`, `login_key`, ...) are unknown fields to the record, which
/// serde skips, so a record type may itself have a field of such a name (`room`).
fn from_doc<T: DeserializeOwned>(what: &str, d: Document) -> Result<T> {
    bson::from_document(d).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn expires(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

impl MongoStore {
    /// Connects, creates the indexes and checks the schema versions. Fails if the server
    /// cannot be reached within the driver's server-selection timeout.
    pub async fn connect(opts: &MongoOptions) -> Result<Self> {
        let mut client_opts = ClientOptions::parse(&opts.uri)
            .await
            .map_err(|e| StoreError::Unavailable(format!("store.mongodb_uri: {e}")))?;
        if opts.pool_size > 0 {
            client_opts.max_pool_size = Some(opts.pool_size);
        }
        client_opts.app_name = Some("parlor".into());
        // Readiness and outages are reported within seconds, not the driver's 30 s.
        client_opts
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        let client = Client::with_options(client_opts).map_err(unavailable)?;
        let store = Self {
            db: client.database(&opts.database),
            chat: ChatRetention::default(),
        };
        store.prepare().await?;
        Ok(store)
    }

    /// Keeps chat history as `chat` says instead of the default.
    pub fn with_retention(mut self, chat: ChatRetention) -> Self {
        self.chat = chat;
        self
    }

    fn coll(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    async fn prepare(&self) -> Result<()> {
        let index = |keys: Document, opts: Option<IndexOptions>| {
            IndexModel::builder().keys(keys).options(opts).build()
        };
        let unique = IndexOptions::builder().unique(true).build();
        let ttl = || IndexOptions::builder().expire_after(Duration::ZERO).build();
        self.coll("users")
            .create_index(index(
                doc! { "login_key": 1 },
                Some(IndexOptions::builder().unique(true).sparse(true).build()),
            ))
            .await
            .map_err(unavailable)?;
        // A multikey index: unique across accounts, over every element of the array.
        self.coll("users")
            .create_index(index(
                doc! { "identities": 1 },
                Some(IndexOptions::builder().unique(true).sparse(true).build()),
            ))
            .await
            .map_err(unavailable)?;
        self.coll("chat")
            .create_index(index(doc! { "room": 1, "seq": 1 }, Some(unique)))
            .await
            .map_err(unavailable)?;
        self.coll("ratings")
            .create_index(index(doc! { "kind": 1, "value": -1, "user": 1 }, None))
            .await
            .map_err(unavailable)?;
        self.coll("matches")
            .create_index(index(doc! { "players.user": 1, "_id": -1 }, None))
            .await
            .map_err(unavailable)?;
        self.coll("rooms")
            .create_index(index(doc! { "info.owner_id": 1 }, None))
            .await
            .map_err(unavailable)?;
        for name in [
            "refresh",
            "revoked_families",
            "magic",
            "login_state",
            "chat",
        ] {
            self.coll(name)
                .create_index(index(doc! { "expires_at": 1 }, Some(ttl())))
                .await
                .map_err(unavailable)?;
        }
        self.check_schema().await
    }

    /// Records this build's schema versions, or refuses data that a newer build wrote.
    async fn check_schema(&self) -> Result<()> {
        let schema = self.coll("schema");
        for &(name, version) in crate::SCHEMA {
            let stored = schema
                .find_one(doc! { "_id": name })
                .await
                .map_err(unavailable)?
                // Any numeric type: a version written by hand (mongosh) is a double.
                .and_then(|d| match d.get("version") {
                    Some(bson::Bson::Int32(v)) => Some(i64::from(*v)),
                    Some(bson::Bson::Int64(v)) => Some(*v),
                    Some(bson::Bson::Double(v)) => Some(*v as i64),
                    _ => None,
                });
            match stored {
                Some(v) if v > i64::from(version) => {
                    return Err(StoreError::Schema(format!(
                        "{name} has schema v{v}, this build reads up to v{version}: \
                         it was written by a newer Parlor"
                    )))
                }
                Some(v) if v == i64::from(version) => {}
                _ => {
                    schema
                        .update_one(
                            doc! { "_id": name },
                            doc! { "$set": { "version": i64::from(version) } },
                        )
                        .upsert(true)
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        Ok(())
    }
}

fn user_doc(user: &UserRecord) -> Result<Document> {
    let mut d = to_doc("user", user)?;
    d.insert("_id", user.id.as_str());
    // Absent rather than null, so the sparse unique index skips guests.
    if let Some(login) = &user.login {
        d.insert("login_key", login.to_lowercase());
    }
    Ok(d)
}

impl Accounts for MongoStore {
    fn create_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>> {
        let d = user_doc(user);
        let (id, login) = (user.id.clone(), user.login.clone());
        Box::pin(async move {
            match self.coll("users").insert_one(d?).await {
                Ok(_) => Ok(()),
                // The server names the index that refused it: ours, or `_id_`.
                Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(match login {
                    Some(l) if e.to_string().contains("login_key") => format!("login {l:?}"),
                    _ if e.to_string().contains("identities") => "an identity".to_owned(),
                    _ => format!("user {id}"),
                })),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn get_user(&self, id: &UserId) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let id = id.clone();
        Box::pin(async move {
            let found = self
                .coll("users")
                .find_one(doc! { "_id": id.as_str() })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("user", d)).transpose()
        })
    }

    fn find_user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let key = login.to_lowercase();
        Box::pin(async move {
            let found = self
                .coll("users")
                .find_one(doc! { "login_key": key })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("user", d)).transpose()
        })
    }

    fn find_user_by_identity(&self, key: &str) -> BoxFuture<'_, Result<Option<UserRecord>>> {
        let key = key.to_owned();
        Box::pin(async move {
            let found = self
                .coll("users")
                .find_one(doc! { "identities": key })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("user", d)).transpose()
        })
    }

    fn update_user(&self, user: &UserRecord) -> BoxFuture<'_, Result<()>> {
        let d = user_doc(user);
        let (id, login) = (user.id.clone(), user.login.clone());
        Box::pin(async move {
            match self
                .coll("users")
                .replace_one(doc! { "_id": id.as_str() }, d?)
                .await
            {
                Ok(r) if r.matched_count == 0 => Err(StoreError::NotFound(format!("user {id}"))),
                Ok(_) => Ok(()),
                Err(e) if is_duplicate(&e) && e.to_string().contains("identities") => {
                    Err(StoreError::Conflict("an identity".to_owned()))
                }
                Err(e) if is_duplicate(&e) => Err(StoreError::Conflict(format!(
                    "login {:?}",
                    login.unwrap_or_default()
                ))),
                Err(e) => Err(unavailable(e)),
            }
        })
    }

    fn delete_user(&self, id: &UserId) -> BoxFuture<'_, Result<bool>> {
        let id = id.clone();
        Box::pin(async move {
            let r = self
                .coll("users")
                .delete_one(doc! { "_id": id.as_str() })
                .await
                .map_err(unavailable)?;
            Ok(r.deleted_count > 0)
        })
    }

    fn put_refresh(&self, token: &RefreshRecord) -> BoxFuture<'_, Result<()>> {
        let token = token.clone();
        Box::pin(async move {
            let mut d = to_doc("refresh token", &token)?;
            d.insert("_id", token.id.as_str());
            d.insert("expires_at", expires(token.expires_at_ms));
            self.coll("refresh")
                .replace_one(doc! { "_id": token.id.as_str() }, d)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn use_refresh(&self, id: &str) -> BoxFuture<'_, Result<RefreshUse>> {
        let id = id.to_owned();
        Box::pin(async move {
            // One atomic step marks the token used and returns it as it was, so two pods
            // racing on one token cannot both see it fresh.
            let before = self
                .coll("refresh")
                .find_one_and_update(doc! { "_id": &id }, doc! { "$set": { "used": true } })
                .return_document(ReturnDocument::Before)
                .await
                .map_err(unavailable)?;
            let Some(before) = before else {
                return Ok(RefreshUse::Unknown);
            };
            let mut token: RefreshRecord = from_doc("refresh token", before)?;
            let revoked = self.coll("revoked_families");
            let family_revoked = revoked
                .find_one(doc! { "_id": token.family.as_str() })
                .await
                .map_err(unavailable)?
                .is_some();
            if token.used || family_revoked {
                revoked
                    .update_one(
                        doc! { "_id": token.family.as_str() },
                        doc! { "$max": { "expires_at": expires(token.expires_at_ms) } },
                    )
                    .upsert(true)
                    .await
                    .map_err(unavailable)?;
                return Ok(RefreshUse::Reused(token));
            }
            token.used = true;
            Ok(RefreshUse::Fresh(token))
        })
    }

    fn put_magic(&self, code: &MagicRecord) -> BoxFuture<'_, Result<()>> {
        let code = code.clone();
        Box::pin(async move {
            let mut d = to_doc("magic code", &code)?;
            d.insert("_id", code.code_hash.as_str());
            d.insert("expires_at", expires(code.expires_at_ms));
            self.coll("magic")
                .replace_one(doc! { "_id": code.code_hash.as_str() }, d)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn take_magic(&self, code_hash: &str) -> BoxFuture<'_, Result<Option<MagicRecord>>> {
        let code_hash = code_hash.to_owned();
        Box::pin(async move {
            let found = self
                .coll("magic")
                .find_one_and_delete(doc! { "_id": code_hash })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("magic code", d)).transpose()
        })
    }

    fn put_login_state(&self, state: &LoginState) -> BoxFuture<'_, Result<()>> {
        let state = state.clone();
        Box::pin(async move {
            let mut d = to_doc("login state", &state)?;
            d.insert("_id", state.state_hash.as_str());
            d.insert("expires_at", expires(state.expires_at_ms));
            self.coll("login_state")
                .insert_one(d)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn take_login_state(&self, state_hash: &str) -> BoxFuture<'_, Result<Option<LoginState>>> {
        let state_hash = state_hash.to_owned();
        Box::pin(async move {
            let found = self
                .coll("login_state")
                .find_one_and_delete(doc! { "_id": state_hash })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("login state", d)).transpose()
        })
    }

    fn purge_expired(&self, now_ms: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let mut purged = 0;
            for name in ["refresh", "magic", "login_state"] {
                let r = self
                    .coll(name)
                    .delete_many(doc! { "expires_at": { "$lt": expires(now_ms) } })
                    .await
                    .map_err(unavailable)?;
                purged += r.deleted_count;
            }
            Ok(purged)
        })
    }
}

impl RoomRecords for MongoStore {
    fn save_room(&self, room: &Room) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        Box::pin(async move {
            let mut d = to_doc("room", &room)?;
            d.insert("_id", room.info.id.as_str());
            self.coll("rooms")
                .replace_one(doc! { "_id": room.info.id.as_str() }, d)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn delete_room(&self, id: &RoomId) -> BoxFuture<'_, Result<()>> {
        let id = id.clone();
        Box::pin(async move {
            // History first: a crash between the two leaves a room without history, never
            // history without a room.
            self.coll("chat")
                .delete_many(doc! { "room": id.as_str() })
                .await
                .map_err(unavailable)?;
            self.coll("chat_heads")
                .delete_one(doc! { "_id": id.as_str() })
                .await
                .map_err(unavailable)?;
            self.coll("rooms")
                .delete_one(doc! { "_id": id.as_str() })
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }

    fn load_rooms(&self) -> BoxFuture<'_, Result<Vec<Room>>> {
        Box::pin(async move {
            let by_id = doc! { "_id": 1 };
            self.find_records("rooms", "room", doc! {}, by_id, usize::MAX)
                .await
        })
    }

    fn count_rooms_owned(&self, owner: &UserId) -> BoxFuture<'_, Result<u64>> {
        let owner = owner.clone();
        Box::pin(async move {
            self.coll("rooms")
                .count_documents(doc! { "info.owner_id": owner.as_str() })
                .await
                .map_err(unavailable)
        })
    }
}

fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("chat seq {seq} out of range")))
}

impl ChatHistory for MongoStore {
    fn append_chat(&self, room: &RoomId, lines: &[ChatRecord]) -> BoxFuture<'_, Result<()>> {
        let room = room.clone();
        let lines = lines.to_vec();
        Box::pin(async move {
            let chat = self.coll("chat");
            let mut updates = Vec::with_capacity(lines.len());
            for line in &lines {
                let seq = seq_i64(line.seq)?;
                let mut d = to_doc("chat line", line)?;
                d.insert("room", room.as_str());
                // The TTL index deletes the line at this time; reads stop serving it then.
                if self.chat.max_age_secs > 0 {
                    let age = i64::try_from(self.chat.max_age_secs.saturating_mul(1000))
                        .unwrap_or(i64::MAX);
                    d.insert("expires_at", expires(line.sent_at_ms.saturating_add(age)));
                }
                // (room, seq) is the key: a retried line replaces itself.
                updates.push(doc! {
                    "q": { "room": room.as_str(), "seq": seq },
                    "u": d,
                    "upsert": true,
                });
            }
            self.update_many_statements("chat", updates, false).await?;
            // The room's highest key ever, which outlives its lines (the TTL index may take
            // them all), so that keys are never reused.
            if let Some(top) = lines.iter().map(|l| l.seq).max() {
                self.coll("chat_heads")
                    .update_one(
                        doc! { "_id": room.as_str() },
                        doc! { "$max": { "seq": seq_i64(top)? } },
                    )
                    .upsert(true)
                    .await
                    .map_err(unavailable)?;
            }
            if self.chat.max_lines == 0 {
                return Ok(());
            }
            // The newest line past the count, if any: it and everything older goes.
            let cutoff = chat
                .find_one(doc! { "room": room.as_str() })
                .sort(doc! { "seq": -1 })
                .skip(self.chat.max_lines as u64)
                .projection(doc! { "seq": 1 })
                .await
                .map_err(unavailable)?;
            if let Some(seq) = cutoff.and_then(|d| d.get_i64("seq").ok()) {
                chat.delete_many(doc! { "room": room.as_str(), "seq": { "$lte": seq } })
                    .await
                    .map_err(unavailable)?;
            }
            Ok(())
        })
    }

    fn recent_chat(
        &self,
        room: &RoomId,
        before: Option<u64>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>> {
        let room = room.clone();
        Box::pin(async move {
            let mut filter = doc! { "room": room.as_str() };
            if let Some(b) = before {
                filter.insert("seq", doc! { "$lt": i64::try_from(b).unwrap_or(i64::MAX) });
            }
            let mut lines = self.chat_page(filter, -1, limit).await?;
            lines.reverse();
            Ok(lines)
        })
    }

    fn last_chat_seq(&self, room: &RoomId) -> BoxFuture<'_, Result<Option<u64>>> {
        let room = room.clone();
        Box::pin(async move {
            let last = self
                .coll("chat")
                .find_one(doc! { "room": room.as_str() })
                .sort(doc! { "seq": -1 })
                .projection(doc! { "seq": 1 })
                .await
                .map_err(unavailable)?;
            let head = self
                .coll("chat_heads")
                .find_one(doc! { "_id": room.as_str() })
                .await
                .map_err(unavailable)?;
            let seq = |d: Option<Document>| d.and_then(|d| d.get_i64("seq").ok());
            Ok(seq(last).max(seq(head)).and_then(|s| u64::try_from(s).ok()))
        })
    }

    fn chat_after(
        &self,
        room: &RoomId,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ChatRecord>>> {
        let room = room.clone();
        Box::pin(async move {
            let Ok(after) = i64::try_from(after) else {
                return Ok(Vec::new());
            };
            let filter = doc! { "room": room.as_str(), "seq": { "$gt": after } };
            self.chat_page(filter, 1, limit).await
        })
    }
}

/// Statements per `update` command, well below the server's batch and 16 MB limits.
const STATEMENTS_PER_COMMAND: usize = 1000;

impl MongoStore {
    /// Runs update statements (`{q, u, upsert}`) as few `update` commands, so
    /// that a batch costs one round trip per thousand records rather than one each.
    /// Duplicate-key refusals are success when `duplicates_done` (an idempotent upsert
    /// that found its record already there).
    async fn update_many_statements(
        &self,
        coll: &str,
        updates: Vec<Document>,
        duplicates_done: bool,
    ) -> Result<()> {
        for chunk in updates.chunks(STATEMENTS_PER_COMMAND) {
            // Two upserts racing to create one document: the loser gets a duplicate key
            // though its statement was not applied. Once more finds the document there,
            // so a second duplicate really means "already applied" (`duplicates_done`).
            let dups = self.update_command(coll, chunk, false).await?;
            if dups.is_empty() {
                continue;
            }
            let retry: Vec<Document> = dups.into_iter().map(|i| chunk[i].clone()).collect();
            if !self
                .update_command(coll, &retry, duplicates_done)
                .await?
                .is_empty()
            {
                return Err(StoreError::Unavailable(format!(
                    "mongodb {coll} write: duplicate key on retry"
                )));
            }
        }
        Ok(())
    }

    /// One unordered `update` command with the database's write concern (a command does
    /// not take it by itself). Returns the indexes of the statements refused as duplicate
    /// keys, unless `duplicates_done`; any other refusal is an error.
    async fn update_command(
        &self,
        coll: &str,
        updates: &[Document],
        duplicates_done: bool,
    ) -> Result<Vec<usize>> {
        // Unordered: one refused statement must not stop the rest (a retried batch that
        // landed for some subjects only).
        let mut cmd = doc! { "update": coll, "updates": updates, "ordered": false };
        if let Some(wc) = self.db.write_concern() {
            let wc = bson::to_document(wc)
                .map_err(|e| StoreError::Unavailable(format!("write concern: {e}")))?;
            if !wc.is_empty() {
                cmd.insert("writeConcern", wc);
            }
        }
        let reply = self.db.run_command(cmd).await.map_err(unavailable)?;
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(StoreError::Unavailable(format!(
                "mongodb {coll} write concern: {wce}"
            )));
        }
        let errors = reply
            .get_array("writeErrors")
            .map(|a| a.as_slice())
            .unwrap_or(&[]);
        let mut dups = Vec::new();
        for e in errors {
            let e = e.as_document();
            let code = e.and_then(|d| d.get_i32("code").ok()).unwrap_or_default();
            let index = e.and_then(|d| d.get_i32("index").ok());
            match index {
                Some(i) if code == DUPLICATE_KEY => {
                    if !duplicates_done {
                        dups.push(i as usize);
                    }
                }
                _ => {
                    return Err(StoreError::Unavailable(format!(
                        "mongodb {coll} write: {e:?}"
                    )))
                }
            }
        }
        Ok(dups)
    }

    /// Up to `limit` records of `coll` matching `filter`, in `sort` order. A limit of 0
    /// gives none (to MongoDB, 0 would mean no limit).
    async fn find_records<T: DeserializeOwned>(
        &self,
        coll: &str,
        what: &str,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<T>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let docs: Vec<Document> = self
            .coll(coll)
            .find(filter)
            .sort(sort)
            .limit(i64::try_from(limit).unwrap_or(i64::MAX))
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.into_iter().map(|d| from_doc(what, d)).collect()
    }

    /// Writes documents by `_id`, each replacing any stored one, so a retry never
    /// duplicates.
    async fn put_by_id(&self, coll: &str, docs: Vec<Document>) -> Result<()> {
        let updates = docs
            .into_iter()
            .map(|d| {
                let id = d.get("_id").cloned().unwrap_or(bson::Bson::Null);
                doc! { "q": { "_id": id }, "u": d, "upsert": true }
            })
            .collect();
        self.update_many_statements(coll, updates, false).await
    }

    /// Up to `limit` chat lines matching `filter`, in seq order (`order` 1 or -1).
    async fn chat_page(
        &self,
        mut filter: Document,
        order: i32,
        limit: usize,
    ) -> Result<Vec<ChatRecord>> {
        // The TTL monitor runs about once a minute; expired lines are hidden until then.
        if let Some(oldest) = self.chat.oldest_kept_ms() {
            filter.insert("sent_at_ms", doc! { "$gte": oldest });
        }
        self.find_records("chat", "chat line", filter, doc! { "seq": order }, limit)
            .await
    }
}

impl StatsRecords for MongoStore {
    fn add_stats(&self, batch: &StatsBatch) -> BoxFuture<'_, Result<()>> {
        let batch = batch.clone();
        Box::pin(async move {
            let mut updates = Vec::new();
            for (subject, add) in batch.by_subject() {
                let mut inc = to_doc("stats", &add)?;
                // The one field that keeps its highest value rather than adding up.
                let peak = inc.remove("peak_members").unwrap_or(bson::Bson::Int64(0));
                // Per subject, one atomic update: it matches only if the subject has not
                // taken this batch, and records the batch as it adds. If the subject has
                // it, the upsert's insert hits the existing _id, which means done.
                updates.push(doc! {
                    "q": { "_id": subject.key(), "applied": { "$ne": batch.id.as_str() } },
                    "u": {
                        "$inc": inc,
                        "$max": { "peak_members": peak },
                        "$push": { "applied": {
                            "$each": [batch.id.as_str()],
                            "$slice": -(APPLIED_BATCHES_KEPT as i64),
                        } },
                    },
                    "upsert": true,
                });
            }
            self.update_many_statements("stats", updates, true).await
        })
    }

    fn stats(&self, subject: &StatsSubject) -> BoxFuture<'_, Result<Stats>> {
        let key = subject.key();
        Box::pin(async move {
            let found = self
                .coll("stats")
                .find_one(doc! { "_id": key })
                .await
                .map_err(unavailable)?;
            Ok(found
                .map(|d| from_doc::<Stats>("stats", d))
                .transpose()?
                .unwrap_or_default())
        })
    }
}

/// Everything with an `_id` below `before`, or everything.
fn below(before: Option<String>) -> Document {
    before.map_or_else(|| doc! {}, |b| doc! { "_id": { "$lt": b } })
}

/// A record as its document, keyed by `id`.
fn keyed<T: Serialize>(what: &str, id: &str, record: &T) -> Result<Document> {
    let mut d = to_doc(what, record)?;
    d.insert("_id", id);
    Ok(d)
}

impl AuditLog for MongoStore {
    fn append_audit(&self, records: &[AuditRecord]) -> BoxFuture<'_, Result<()>> {
        let docs = records
            .iter()
            .map(|r| keyed("audit record", &r.id, r))
            .collect::<Result<Vec<_>>>();
        Box::pin(async move { self.put_by_id("audit", docs?).await })
    }

    fn audit_page(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditRecord>>> {
        Box::pin(async move {
            let newest = doc! { "_id": -1 };
            self.find_records("audit", "audit record", below(before), newest, limit)
                .await
        })
    }
}

impl crate::Tournaments for MongoStore {
    fn save_tournament(&self, t: &crate::TournamentRecord) -> BoxFuture<'_, Result<bool>> {
        let d = keyed("tournament", &t.id, t);
        let (id, version) = (t.id.clone(), t.version);
        Box::pin(async move {
            let coll = self.coll("tournaments");
            if version == 1 {
                return match coll.insert_one(d?).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_duplicate(&e) => Ok(false),
                    Err(e) => Err(unavailable(e)),
                };
            }
            let prev = i64::try_from(version - 1).unwrap_or(i64::MAX);
            // Matches only the version this write follows: one writer wins.
            let r = coll
                .replace_one(doc! { "_id": id.as_str(), "version": prev }, d?)
                .await
                .map_err(unavailable)?;
            Ok(r.matched_count == 1)
        })
    }

    fn tournament(&self, id: &str) -> BoxFuture<'_, Result<Option<crate::TournamentRecord>>> {
        let id = id.to_owned();
        Box::pin(async move {
            let found = self
                .find_records(
                    "tournaments",
                    "tournament",
                    doc! { "_id": id },
                    doc! { "_id": 1 },
                    1,
                )
                .await?;
            Ok(found.into_iter().next())
        })
    }
}

impl crate::QuestionSets for MongoStore {
    fn put_question_set(&self, set: &crate::QuestionSetRecord) -> BoxFuture<'_, Result<()>> {
        let doc = keyed("question set", &set.id, set);
        Box::pin(async move { self.put_by_id("question_sets", vec![doc?]).await })
    }

    fn question_set(&self, id: &str) -> BoxFuture<'_, Result<Option<crate::QuestionSetRecord>>> {
        let id = id.to_owned();
        Box::pin(async move {
            let found = self
                .find_records(
                    "question_sets",
                    "question set",
                    doc! { "_id": id },
                    doc! { "_id": 1 },
                    1,
                )
                .await?;
            Ok(found.into_iter().next())
        })
    }

    fn question_sets(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<crate::QuestionSetRecord>>> {
        Box::pin(async move {
            let newest = doc! { "_id": -1 };
            self.find_records(
                "question_sets",
                "question set",
                below(before),
                newest,
                limit,
            )
            .await
        })
    }
}

fn rating_id(kind: &str, user: &UserId) -> String {
    format!("{kind}/{user}")
}

impl MongoStore {
    async fn ratings_where(
        &self,
        filter: Document,
        sort: Document,
        limit: usize,
    ) -> Result<Vec<Rating>> {
        self.find_records("ratings", "rating", filter, sort, limit)
            .await
    }
}

impl Ratings for MongoStore {
    fn record_match(&self, m: &MatchRecord, ratings: &[Rating]) -> BoxFuture<'_, Result<bool>> {
        let (m, ratings) = (m.clone(), ratings.to_vec());
        Box::pin(async move {
            let mut d = to_doc("match", &m)?;
            d.insert("_id", m.id.as_str());
            let rated = ratings
                .iter()
                .map(|r| {
                    let mut d = to_doc("rating", r)?;
                    d.insert("_id", rating_id(&r.kind, &r.user));
                    Ok((rating_id(&r.kind, &r.user), d))
                })
                .collect::<Result<Vec<_>>>()?;
            // One transaction: the match and its ratings land together or not at all. A
            // replica set is required, as for any managed MongoDB.
            let mut session = self
                .db
                .client()
                .start_session()
                .await
                .map_err(unavailable)?;
            session.start_transaction().await.map_err(unavailable)?;
            match self
                .coll("matches")
                .insert_one(d)
                .session(&mut session)
                .await
            {
                Ok(_) => {}
                Err(e) if is_duplicate(&e) => {
                    let _ = session.abort_transaction().await;
                    return Ok(true);
                }
                Err(e) => return Err(unavailable(e)),
            }
            for ((id, _), r) in rated.iter().zip(&ratings) {
                let stored = self
                    .coll("ratings")
                    .find_one(doc! { "_id": id })
                    .session(&mut session)
                    .await
                    .map_err(unavailable)?;
                let had = match stored {
                    Some(s) => from_doc::<Rating>("rating", s)?.games,
                    None => 0,
                };
                if had + 1 != r.games {
                    let _ = session.abort_transaction().await;
                    return Ok(false);
                }
            }
            // Each replace also conflicts with a concurrent transaction's on the same
            // rating, so two that both passed the check cannot both commit.
            for (id, d) in rated {
                self.coll("ratings")
                    .replace_one(doc! { "_id": id }, d)
                    .upsert(true)
                    .session(&mut session)
                    .await
                    .map_err(unavailable)?;
            }
            session.commit_transaction().await.map_err(unavailable)?;
            Ok(true)
        })
    }

    fn rating(&self, user: &UserId, kind: &str) -> BoxFuture<'_, Result<Option<Rating>>> {
        let id = rating_id(kind, user);
        Box::pin(async move {
            let found = self
                .coll("ratings")
                .find_one(doc! { "_id": id })
                .await
                .map_err(unavailable)?;
            found.map(|d| from_doc("rating", d)).transpose()
        })
    }

    fn ratings_of(&self, user: &UserId) -> BoxFuture<'_, Result<Vec<Rating>>> {
        let user = user.clone();
        Box::pin(async move {
            self.ratings_where(
                doc! { "user": user.as_str() },
                doc! { "kind": 1 },
                usize::MAX,
            )
            .await
        })
    }

    fn leaderboard(&self, kind: &str, limit: usize) -> BoxFuture<'_, Result<Vec<Rating>>> {
        let kind = kind.to_owned();
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            self.ratings_where(
                doc! { "kind": kind },
                doc! { "value": -1, "user": 1 },
                limit,
            )
            .await
        })
    }

    fn around(
        &self,
        kind: &str,
        user: &UserId,
        n: usize,
    ) -> BoxFuture<'_, Result<Option<Standing>>> {
        let (kind, user) = (kind.to_owned(), user.clone());
        Box::pin(async move {
            let Some(me) = self.rating(&user, &kind).await? else {
                return Ok(None);
            };
            let u = user.as_str();
            // Ahead of me in leaderboard order: a higher rating, or the same and a lower id.
            let ahead = doc! { "kind": &kind, "$or": [
                { "value": { "$gt": me.value } },
                { "value": me.value, "user": { "$lt": u } },
            ] };
            let behind = doc! { "kind": &kind, "$or": [
                { "value": { "$lt": me.value } },
                { "value": me.value, "user": { "$gt": u } },
            ] };
            let place = self
                .coll("ratings")
                .count_documents(ahead.clone())
                .await
                .map_err(unavailable)?
                + 1;
            // A limit of 0 means none to MongoDB, so n = 0 asks for nobody instead.
            let mut window = if n > 0 {
                self.ratings_where(ahead, doc! { "value": 1, "user": -1 }, n)
                    .await?
            } else {
                Vec::new()
            };
            window.reverse();
            window.retain(|r| r.user != user);
            window.push(me);
            if n > 0 {
                let after = self
                    .ratings_where(behind, doc! { "value": -1, "user": 1 }, n)
                    .await?;
                window.extend(after.into_iter().filter(|r| r.user != user));
            }
            Ok(Some((place, window)))
        })
    }

    fn matches_of(
        &self,
        user: &UserId,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<MatchRecord>>> {
        let user = user.clone();
        Box::pin(async move {
            let mut filter = below(before);
            filter.insert("players.user", user.as_str());
            let newest = doc! { "_id": -1 };
            self.find_records("matches", "match", filter, newest, limit)
                .await
        })
    }
}

impl Analytics for MongoStore {
    fn append_events(&self, events: &[AnalyticsEvent]) -> BoxFuture<'_, Result<()>> {
        let docs = events
            .iter()
            .map(|e| {
                let mut d = keyed("analytics event", &e.id, e)?;
                d.insert("at", expires(e.at_ms));
                Ok(d)
            })
            .collect::<Result<Vec<_>>>();
        Box::pin(async move { self.put_by_id("analytics", docs?).await })
    }

    fn events(
        &self,
        before: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AnalyticsEvent>>> {
        Box::pin(async move {
            let newest = doc! { "_id": -1 };
            self.find_records("analytics", "analytics event", below(before), newest, limit)
                .await
        })
    }

    fn purge_events(&self, older_than_ms: i64) -> BoxFuture<'_, Result<u64>> {
        Box::pin(async move {
            let r = self
                .coll("analytics")
                .delete_many(doc! { "at": { "$lt": expires(older_than_ms) } })
                .await
                .map_err(unavailable)?;
            Ok(r.deleted_count)
        })
    }
}

impl Health for MongoStore {
    fn ping(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.db
                .run_command(doc! { "ping": 1 })
                .await
                .map_err(unavailable)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    //! The conformance suites against a real MongoDB wire server (crate::testing).

    use super::*;
    use crate::{conformance, testing};

    #[tokio::test]
    async fn users() {
        conformance::users(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn refresh() {
        conformance::refresh(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn magic() {
        conformance::magic(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn purge() {
        conformance::purge(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn audit() {
        conformance::audit(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn question_sets() {
        conformance::question_sets(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn tournaments() {
        conformance::tournaments(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn ratings() {
        conformance::ratings(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn analytics() {
        conformance::analytics(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn stats_peak() {
        conformance::stats_peak(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn all_on_one_store() {
        conformance::run_all(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn rooms() {
        conformance::rooms(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn chat() {
        conformance::chat(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn chat_age() {
        let store = testing::mongo_store().await.0;
        let store = store.with_retention(conformance::ONE_DAY);
        conformance::chat_age(&crate::Store::new(store)).await;
    }

    #[tokio::test]
    async fn chat_paging() {
        conformance::chat_paging(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn stats() {
        conformance::stats(&testing::mongo_store().await.1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_stats() {
        conformance::concurrent_stats(&testing::mongo_store().await.1).await;
    }

    #[tokio::test]
    async fn data_from_a_newer_schema_is_refused_at_connect() {
        let opts = testing::options(&testing::shared_uri());
        let store = MongoStore::connect(&opts).await.expect("connect");
        store
            .coll("schema")
            .update_one(
                doc! { "_id": "chat" },
                doc! { "$set": { "version": 99_i64 } },
            )
            .await
            .expect("bump");
        match MongoStore::connect(&opts).await {
            Err(StoreError::Schema(m)) => assert!(m.contains("chat") && m.contains("v99"), "{m}"),
            other => panic!("newer data accepted: {:?}", other.map(|_| ())),
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let opts = MongoOptions {
            uri: format!(
                "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=500"
            ),
            database: testing::fresh_database(),
            pool_size: 2,
        };
        match MongoStore::connect(&opts).await {
            Err(StoreError::Unavailable(_)) => {}
            other => panic!("expected Unavailable, got {:?}", other.map(|_| ())),
        }
    }
}
