//! Where a member's direct frames and notices go: its session on this pod, or, for a member
//! connected to another pod, that pod's inbox. Room events never go this way: every pod
//! with members fans a room out from its own subscription.

use std::sync::Arc;

use actix::Recipient;
use bytes::Bytes;
use parlor_core::{RoomId, UserId};
use parlor_protocol::v1::{self, pod_message};

use super::LocalFanout;
use crate::{
    relay::PodLink,
    ws::{Outbox, SessionNotice},
};

/// One member session, wherever it is connected.
#[derive(Clone)]
pub(crate) enum Peer {
    /// A session on this pod.
    Local {
        outbox: Outbox,
        notify: Recipient<SessionNotice>,
    },
    /// A session on another pod.
    Remote(Arc<RemotePeer>),
}

/// A session on another pod.
pub(crate) struct RemotePeer {
    pub(crate) pod: Arc<str>,
    pub(crate) session_id: String,
    pub(crate) link: Arc<PodLink>,
}

impl Peer {
    /// Queues one frame; false if a local session is gone.
    pub(crate) fn push(&self, frame: Bytes) -> bool {
        match self {
            Peer::Local { outbox, .. } => outbox.push(frame),
            Peer::Remote(r) => {
                r.deliver(vec![frame]);
                true
            }
        }
    }

    /// Queues frames in order, in one message for a remote session.
    pub(crate) fn push_all(&self, frames: Vec<Bytes>) {
        match self {
            Peer::Local { outbox, .. } => {
                for f in frames {
                    outbox.push(f);
                }
            }
            Peer::Remote(r) => r.deliver(frames),
        }
    }

    /// Queues an answer to a request that made event `seq` of `room`, to go out after that
    /// event: `fanout` is the room's fan-out on this pod, and a remote session's own pod
    /// holds it back likewise.
    pub(crate) fn answer_after(&self, fanout: &LocalFanout, room: &RoomId, seq: u64, frame: Bytes) {
        match self {
            Peer::Local { outbox, .. } => fanout.answer_after(seq, outbox.clone(), frame),
            Peer::Remote(r) => r.deliver_after(vec![frame], room, seq),
        }
    }

    /// The local queue, which the room's fan-out writes to; None for a remote session,
    /// whose own pod fans the room out to it.
    pub(crate) fn outbox(&self) -> Option<&Outbox> {
        match self {
            Peer::Local { outbox, .. } => Some(outbox),
            Peer::Remote(_) => None,
        }
    }

    /// Tells the session it is no longer in `room`.
    pub(crate) fn room_gone(&self, room: &RoomId) {
        match self {
            Peer::Local { notify, .. } => notify.do_send(SessionNotice::RoomGone {
                room_id: room.clone(),
            }),
            Peer::Remote(r) => r.notice(room, 0, v1::notice::Kind::RoomGone(true)),
        }
    }

    /// Closes the session's socket after its queued frames.
    pub(crate) fn close(&self, code: u16, reason: String) {
        match self {
            Peer::Local { notify, .. } => notify.do_send(SessionNotice::Close { code, reason }),
            Peer::Remote(r) => r.notice(
                &RoomId(String::new()),
                0,
                v1::notice::Kind::Close(v1::Close {
                    code: u32::from(code),
                    reason,
                }),
            ),
        }
    }

    /// A forwarded join failed (a local join's error goes back as its answer instead).
    pub(crate) fn join_failed(&self, room: &RoomId, request_id: u64, e: &crate::ApiError) {
        if let Peer::Remote(r) = self {
            r.notice(
                room,
                request_id,
                v1::notice::Kind::JoinFailed(v1::Error {
                    code: e.code as i32,
                    message: e.message.clone(),
                    retry_after_ms: e.retry_after_ms(),
                }),
            );
        }
    }

    /// A join was answered: a remote session's pod now fans the room out to it, for every
    /// event after `after`.
    pub(crate) fn seated(&self, room: &RoomId, user: &UserId, after: u64, request_id: u64) {
        if let Peer::Remote(r) = self {
            r.link.send(
                &r.pod,
                pod_message::Body::Seated(v1::Seated {
                    session_id: r.session_id.clone(),
                    room_id: room.0.clone(),
                    user_id: user.0.clone(),
                    after_seq: after,
                    request_id,
                }),
            );
        }
    }
}

impl RemotePeer {
    fn deliver(&self, frames: Vec<Bytes>) {
        self.deliver_after(frames, &RoomId(String::new()), 0);
    }

    /// Frames that go out after event `seq` of `room` (0: at once).
    fn deliver_after(&self, frames: Vec<Bytes>, room: &RoomId, seq: u64) {
        self.link.send(
            &self.pod,
            pod_message::Body::Deliver(v1::Deliver {
                session_id: self.session_id.clone(),
                frames,
                after_seq: seq,
                room_id: room.0.clone(),
            }),
        );
    }

    fn notice(&self, room: &RoomId, request_id: u64, kind: v1::notice::Kind) {
        self.link.send(
            &self.pod,
            pod_message::Body::Notice(v1::Notice {
                session_id: self.session_id.clone(),
                room_id: room.0.clone(),
                kind: Some(kind),
                request_id,
            }),
        );
    }
}
