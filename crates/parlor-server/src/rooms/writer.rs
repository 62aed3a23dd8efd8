//! A room's writer task: the room's directory, store and chat-history writes, applied in
//! order, detached from the room actor so that an actor restart loses none.
//!
//! Invariants:
//! - Each chat line gets its key (`ChatRecord::seq`) from a per-room counter that
//!   continues from the highest key in the store, so no line overwrites another, across
//!   restarts and expiry too. The writer is the room's only chat writer, so the counter
//!   needs no coordination. A line keeps its key through retries, so a retry never
//!   duplicates it.
//! - What the store refuses is kept and retried, after 1 s and then twice as long each
//!   time up to 30 s (new writes wait for the retry meanwhile): chat lines, audit records, and the newest durable snapshot of a
//!   persistent room, which replaces any older one still waiting. No chat line is ever
//!   dropped here: the room refuses new lines instead while `Backlog` is full.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parlor_core::{Room, RoomId};
use parlor_store::{AuditRecord, ChatRecord};

use super::ratings::{rate, Finished};
use tokio::sync::{mpsc, oneshot};

use super::manager::RoomDeps;

/// A write the room's writer task applies, in order.
pub(super) enum Write {
    /// The room into the directory; also into the store when durable and persistent.
    Put(Box<Room>, bool),
    /// Chat lines into a persistent room's history.
    Chat(Vec<ChatRecord>),
    /// A moderation action into the audit log.
    Audit(AuditRecord),
    /// A finished game into the match history, with its rating changes, in one store
    /// write (recording one twice changes nothing).
    Match(Box<Finished>),
    /// Answers once every earlier write is done (refused ones get one more try first).
    Barrier(oneshot::Sender<()>),
    /// The room is being deleted: drop its unsaved chat lines and snapshot, so that no
    /// retry writes them back after the delete; audit records are kept. Then answers.
    Discard(oneshot::Sender<()>),
}

/// Most audit records a writer holds while the store refuses them; past it the oldest go.
const UNSAVED_AUDIT_MAX: usize = 10_000;
/// The first wait before retrying what the store refused; it doubles up to `RETRY_MAX`.
const RETRY: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Chat lines handed to a room's writer and not yet in the store, for the room to refuse
/// new ones when the store has been refusing for too long. The room adds as it hands
/// lines over; the writer subtracts as the store takes them.
#[derive(Clone, Default)]
pub(super) struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    pub(super) fn lines(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    pub(super) fn handed(&self, n: usize) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn saved(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::Relaxed);
    }
}

/// What a writer has not yet got into the store.
#[derive(Default)]
struct Unsaved {
    /// The next chat key; None until it has been read from the store.
    next: Option<u64>,
    /// Chat lines not yet acknowledged by the store, oldest first. Key 0: not yet keyed.
    lines: Vec<ChatRecord>,
    /// The newest durable room snapshot the store has not acknowledged.
    room: Option<Room>,
    /// Audit records not yet acknowledged (bounded like chat lines).
    audit: Vec<AuditRecord>,
    /// Finished games not yet acknowledged (bounded like audit records).
    matches: Vec<Finished>,
    /// When `save` last ran.
    tried: Option<Instant>,
    /// Tries in a row that left something unsaved.
    failures: u32,
}

impl Unsaved {
    fn waiting(&self) -> bool {
        !self.lines.is_empty()
            || self.room.is_some()
            || !self.audit.is_empty()
            || !self.matches.is_empty()
    }

    /// The wait before the next retry: `RETRY`, doubled after each further failed try.
    fn delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(5);
        RETRY.saturating_mul(1 << doublings).min(RETRY_MAX)
    }

    /// True when refused writes wait and their retry delay has passed.
    fn retry_due(&self) -> bool {
        self.waiting() && self.tried.is_none_or(|t| t.elapsed() >= self.delay())
    }

    /// Tries everything waiting, and counts the try if it left something.
    async fn save(&mut self, deps: &RoomDeps, id: &RoomId, backlog: &Backlog) {
        let before = self.lines.len();
        self.try_save(deps, id).await;
        let saved = before - self.lines.len();
        backlog.saved(saved);
        deps.metrics.chat_unsaved.sub(saved as i64);
        self.failures = if self.waiting() {
            self.failures.saturating_add(1)
        } else {
            0
        };
    }

    /// A new write: tried at once while the store is taking writes; while it refuses them,
    /// it waits for the next retry, so that writes do not queue behind failing tries.
    async fn write(&mut self, deps: &RoomDeps, id: &RoomId, backlog: &Backlog) {
        if self.failures == 0 {
            self.save(deps, id, backlog).await;
        }
    }

    /// Writes the room snapshot and keys and writes every chat line; what fails stays for
    /// the next try.
    async fn try_save(&mut self, deps: &RoomDeps, id: &RoomId) {
        self.tried = Some(Instant::now());
        self.save_room(deps, id).await;
        let had_rest = self.waiting_besides_room();
        self.save_rest(deps, id).await;
        // The first write after an outage can fail on a connection the store has not
        // replaced yet. If what followed got through, the store is back: the snapshot is
        // tried again now rather than after the next, doubled, retry delay.
        if self.room.is_some() && had_rest && !self.waiting_besides_room() {
            self.save_room(deps, id).await;
        }
    }

    fn waiting_besides_room(&self) -> bool {
        !self.lines.is_empty() || !self.audit.is_empty() || !self.matches.is_empty()
    }

    async fn save_room(&mut self, deps: &RoomDeps, id: &RoomId) {
        if let Some(room) = &self.room {
            match deps.store.rooms.save_room(room).await {
                Ok(()) => self.room = None,
                Err(e) => {
                    tracing::warn!(room_id = %id, error = %e, "room write failed; will retry")
                }
            }
        }
    }

    /// Audit records, finished games and chat lines; what fails stays for the next try.
    async fn save_rest(&mut self, deps: &RoomDeps, id: &RoomId) {
        if !self.audit.is_empty() {
            let over = self.audit.len().saturating_sub(UNSAVED_AUDIT_MAX);
            if over > 0 {
                tracing::error!(room_id = %id, records = over, "audit writes keep failing; dropping the oldest");
                self.audit.drain(..over);
                deps.metrics
                    .store_refused_writes
                    .with_label_values(&["audit"])
                    .inc_by(over as u64);
            }
            match deps.store.audit.append_audit(&self.audit).await {
                Ok(()) => self.audit.clear(),
                Err(e) => {
                    tracing::warn!(room_id = %id, error = %e, "audit write failed; will retry")
                }
            }
        }
        if !self.matches.is_empty() {
            let over = self.matches.len().saturating_sub(UNSAVED_AUDIT_MAX);
            if over > 0 {
                tracing::error!(room_id = %id, records = over, "match writes keep failing; dropping the oldest");
                self.matches.drain(..over);
            }
            let mut left = Vec::new();
            for f in std::mem::take(&mut self.matches) {
                if let Err(e) = record(deps, &f).await {
                    tracing::warn!(room_id = %id, error = %e, "match write failed; will retry");
                    left.push(f);
                }
            }
            self.matches = left;
        }
        if self.lines.is_empty() {
            return;
        }
        if self.next.is_none() {
            match deps.store.chat.last_chat_seq(id).await {
                Ok(last) => self.next = Some(last.map_or(1, |seq| seq + 1)),
                Err(e) => {
                    tracing::warn!(room_id = %id, error = %e, "chat history read failed; will retry");
                    return;
                }
            }
        }
        let next = self.next.as_mut().expect("read above");
        for line in self.lines.iter_mut().filter(|l| l.seq == 0) {
            line.seq = *next;
            *next += 1;
        }
        match deps.store.chat.append_chat(id, &self.lines).await {
            Ok(()) => self.lines.clear(),
            Err(e) => {
                tracing::warn!(room_id = %id, error = %e, lines = self.lines.len(), "chat history write failed; will retry");
            }
        }
    }
}

/// Tries of rating a game before its write counts as failed (and is retried later).
const RATING_TRIES: usize = 8;

/// Reads the rated players' ratings, rates the game, and writes the result with the new
/// ratings in one store write. The write names the ratings it read; if one moved
/// meanwhile (a game of the same player ended on another pod), it is rated again.
async fn record(deps: &RoomDeps, f: &Finished) -> parlor_store::Result<()> {
    for _ in 0..RATING_TRIES {
        let mut stored = std::collections::HashMap::new();
        for user in &f.rated {
            if let Some(r) = deps.store.ratings.rating(user, &f.record.kind).await? {
                stored.insert(user.clone(), r);
            }
        }
        let (record, ratings) = rate(f, &stored);
        if deps.store.ratings.record_match(&record, &ratings).await? {
            return Ok(());
        }
        deps.metrics.rating_conflicts.inc();
    }
    Err(parlor_store::StoreError::Unavailable(
        "ratings kept moving while this game was rated".into(),
    ))
}

/// Starts a room's writer on the current arbiter, outside any actor context.
pub(super) fn spawn_writer(
    deps: Arc<RoomDeps>,
    id: RoomId,
) -> (mpsc::UnboundedSender<Write>, Backlog) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let backlog = Backlog::default();
    let shared = backlog.clone();
    actix::spawn(async move {
        let backlog = shared;
        let mut unsaved = Unsaved::default();
        loop {
            // Some(None) is a retry tick: refused writes wake the writer even when no
            // write comes. None: every sender is gone.
            let next = if unsaved.waiting() {
                tokio::time::timeout(unsaved.delay(), rx.recv())
                    .await
                    .map_or(Some(None), |w| w.map(Some))
            } else {
                rx.recv().await.map(Some)
            };
            let Some(w) = next else { break };
            match w {
                None => {}
                Some(Write::Put(room, durable)) => {
                    if let Err(e) = deps.directory.put(&room).await {
                        tracing::warn!(room_id = %id, error = %e, "directory write failed");
                    }
                    if durable && room.info.persistent {
                        let mut durable = *room;
                        durable.members.clear();
                        unsaved.room = Some(durable);
                        unsaved.write(&deps, &id, &backlog).await;
                    }
                }
                Some(Write::Audit(record)) => {
                    unsaved.audit.push(record);
                    unsaved.write(&deps, &id, &backlog).await;
                }
                Some(Write::Match(record)) => {
                    unsaved.matches.push(*record);
                    unsaved.write(&deps, &id, &backlog).await;
                }
                Some(Write::Chat(lines)) => {
                    deps.metrics.chat_unsaved.add(lines.len() as i64);
                    unsaved.lines.extend(lines);
                    unsaved.write(&deps, &id, &backlog).await;
                }
                Some(Write::Discard(done)) => {
                    let dropped = std::mem::take(&mut unsaved.lines).len();
                    deps.metrics.chat_unsaved.sub(dropped as i64);
                    backlog.saved(dropped);
                    unsaved.room = None;
                    if unsaved.waiting() {
                        unsaved.save(&deps, &id, &backlog).await;
                    }
                    let _ = done.send(());
                }
                Some(Write::Barrier(done)) => {
                    // A flush waits on this: give refused writes one more try first.
                    if unsaved.waiting() {
                        unsaved.save(&deps, &id, &backlog).await;
                    }
                    let _ = done.send(());
                }
            }
            // The one retry rule, after ticks and writes alike, so that steady directory
            // traffic cannot starve it.
            if unsaved.retry_due() {
                unsaved.save(&deps, &id, &backlog).await;
            }
        }
        if unsaved.waiting() {
            // The room is gone: one last try, then say what is lost.
            unsaved.save(&deps, &id, &backlog).await;
            if unsaved.waiting() {
                tracing::error!(room_id = %id, lines = unsaved.lines.len(), room = unsaved.room.is_some(), "writes lost: the store refused them until the room closed");
            }
        }
        deps.metrics.chat_unsaved.sub(unsaved.lines.len() as i64);
        backlog.saved(unsaved.lines.len());
    });
    (tx, backlog)
}
