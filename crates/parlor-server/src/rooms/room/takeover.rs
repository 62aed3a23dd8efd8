//! What a room learns from its history before it handles a message:
//! - after a reload, which requests it applied, so that a retry is answered, not applied
//!   again;
//! - as a new home (its last home died), also its recent chat for snapshots, and, for a
//!   persistent room, the recorded chat lines the old home had not yet saved to the store.
//!   Those are saved now, before any new line, so none of them is lost and order holds.
//!
//! A line counts as saved when the store holds one with the same author, time and text.
//! Every line after a saved one in history is in history too, so comparing with as many of
//! the store's newest lines as history holds chat lines finds each saved line.

use std::collections::HashSet;

use parlor_cluster::Retained;
use prost::Message as _;

use super::{recording::RELOAD_WAIT, *};

/// What a new home read before taking its first message.
struct Learned {
    /// None if history could not be read.
    history: Option<Vec<Retained>>,
    /// The chat lines history holds, oldest first.
    lines: Vec<v1::ChatMessage>,
    /// The store's newest lines (persistent rooms); None if the store could not be read.
    stored: Option<Vec<ChatRecord>>,
}

/// The chat line a room event carries, if it is one.
fn chat_line(frame: &[u8]) -> Option<v1::ChatMessage> {
    match v1::Envelope::decode(frame).ok()?.body? {
        Body::ChatMessage(m) => Some(m),
        _ => None,
    }
}

fn line_of(r: ChatRecord, room: &RoomId) -> v1::ChatMessage {
    v1::ChatMessage {
        room_id: room.0.clone(),
        from_user_id: r.from_user_id.0,
        from_name: r.from_name,
        text: r.text,
        sent_at_ms: r.sent_at_ms,
        to_user_id: String::new(),
    }
}

impl RoomActor {
    /// After a reload: the requests applied (the writer still holds the unsaved lines).
    pub(super) fn learn_applied(&mut self, ctx: &mut Context<Self>) {
        let (deps, id) = (self.deps.clone(), self.id.clone());
        ctx.wait(
            async move { tokio::time::timeout(RELOAD_WAIT, deps.broker.retained(&id)).await }
                .into_actor(self)
                .map(|res, act, _| {
                    let history = res.ok().and_then(Result::ok);
                    act.learn_requests(history.as_deref());
                }),
        );
    }

    fn learn_requests(&mut self, history: Option<&[Retained]>) {
        match history {
            Some(h) => self.applied.reseed(h.iter().map(|e| (e.seq, e.origin))),
            None => {
                // Retries of requests from before are applied again.
                tracing::warn!(room_id = %self.id, "history unreadable: applied requests unknown");
                self.applied.reseed([]);
            }
        }
    }

    /// As a new home: learns from history and the store, holding the mailbox meanwhile.
    pub(super) fn take_over(&mut self, ctx: &mut Context<Self>) {
        let (deps, id) = (self.deps.clone(), self.id.clone());
        let persistent = self.room.as_ref().is_some_and(|r| r.info.persistent);
        let keep = deps.cfg.rooms.snapshot_chat;
        let read = async move {
            let history = tokio::time::timeout(RELOAD_WAIT, deps.broker.retained(&id))
                .await
                .ok()
                .and_then(Result::ok);
            let lines: Vec<v1::ChatMessage> = history
                .iter()
                .flatten()
                .filter_map(|e| chat_line(&e.frame))
                .collect();
            let stored = match persistent {
                true => {
                    let n = keep.max(lines.len());
                    let read = deps.store.chat.recent_chat(&id, None, n);
                    tokio::time::timeout(RELOAD_WAIT, read)
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                false => None,
            };
            Learned {
                history,
                lines,
                stored,
            }
        };
        ctx.wait(read.into_actor(self).map(move |learned, act, _| {
            act.learn_requests(learned.history.as_deref());
            let lines = learned.lines;
            let recent = match (persistent, learned.stored) {
                (false, _) => lines,
                (true, Some(stored)) => act.save_unsaved(stored, lines),
                (true, None) => {
                    // Saved later only if the old home's writer got them out.
                    tracing::error!(room_id = %act.id, "chat history unreadable at takeover");
                    lines
                }
            };
            let skip = recent.len().saturating_sub(keep);
            act.recent_chat = recent.into_iter().skip(skip).collect();
        }));
    }

    /// Hands the store the recorded lines it lacks; returns the room's recent chat.
    fn save_unsaved(
        &mut self,
        stored: Vec<ChatRecord>,
        recorded: Vec<v1::ChatMessage>,
    ) -> Vec<v1::ChatMessage> {
        let saved: HashSet<(i64, String, String)> = stored
            .iter()
            .map(|r| (r.sent_at_ms, r.from_user_id.0.clone(), r.text.clone()))
            .collect();
        let mut recent: Vec<v1::ChatMessage> = stored
            .into_iter()
            .filter(ChatRecord::is_chat)
            .map(|r| line_of(r, &self.id))
            .collect();
        for line in recorded {
            let key = (
                line.sent_at_ms,
                line.from_user_id.clone(),
                line.text.clone(),
            );
            if saved.contains(&key) {
                continue;
            }
            self.pending_chat.push(ChatRecord {
                seq: 0,
                from_user_id: UserId(line.from_user_id.clone()),
                from_name: line.from_name.clone(),
                text: line.text.clone(),
                sent_at_ms: line.sent_at_ms,
                game: None,
            });
            recent.push(line);
        }
        if !self.pending_chat.is_empty() {
            tracing::info!(room_id = %self.id, lines = self.pending_chat.len(), "saving chat lines the old home had not");
            self.deps
                .metrics
                .chat_recovered
                .inc_by(self.pending_chat.len() as u64);
            self.flush();
        }
        recent
    }
}
