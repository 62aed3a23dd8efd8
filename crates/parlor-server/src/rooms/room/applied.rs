//! Requests the room already applied, by (session, request id), so that a retry is
//! answered instead of applied twice. A new home learns them from the origins that history
//! keeps with each event.

use std::collections::{HashMap, VecDeque};

use parlor_cluster::Origin;

/// Request ids kept per session: a client retries one soon after it timed out.
const PER_SESSION: usize = 32;

/// For each session, its newest applied request ids with the seq of the event each made
/// (0 for an answer outside the room sequence, as a targeted game event).
#[derive(Default)]
pub(super) struct Applied(HashMap<u64, VecDeque<(u64, u64)>>);

impl Applied {
    /// The seq the request made, if it was applied.
    pub(super) fn seq_of(&self, o: Origin) -> Option<u64> {
        let kept = self.0.get(&o.session)?;
        kept.iter().find(|(r, _)| *r == o.request).map(|(_, s)| *s)
    }

    /// Notes that `o` made the event `seq`; a request making several keeps its first.
    pub(super) fn record(&mut self, o: Origin, seq: u64) {
        if o.is_none() {
            return;
        }
        let kept = self.0.entry(o.session).or_default();
        if kept.iter().any(|(r, _)| *r == o.request) {
            return;
        }
        if kept.len() == PER_SESSION {
            kept.pop_front();
        }
        kept.push_back((o.request, seq));
    }

    /// The session left the room: its requests cannot come again.
    pub(super) fn end(&mut self, session: u64) {
        self.0.remove(&session);
    }

    /// Starts again from what history holds (a reload or a new home).
    pub(super) fn reseed(&mut self, history: impl IntoIterator<Item = (u64, Origin)>) {
        self.0.clear();
        for (seq, o) in history {
            self.record(o, seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(session: u64, request: u64) -> Origin {
        Origin { session, request }
    }

    #[test]
    fn a_request_is_known_until_its_session_ends_or_it_is_old() {
        let mut a = Applied::default();
        a.record(o(1, 5), 10);
        a.record(o(1, 5), 11);
        a.record(o(2, 5), 12);
        assert_eq!(
            a.seq_of(o(1, 5)),
            Some(10),
            "the first event a request made"
        );
        assert_eq!(a.seq_of(o(2, 5)), Some(12), "request ids are per session");
        assert_eq!(a.seq_of(o(1, 6)), None);
        a.record(o(3, 0), 13);
        assert_eq!(a.seq_of(o(3, 0)), None, "no request, nothing to refuse");
        for r in 100..100 + PER_SESSION as u64 {
            a.record(o(1, r), r);
        }
        assert_eq!(a.seq_of(o(1, 5)), None, "the oldest went");
        assert_eq!(a.seq_of(o(1, 100)), Some(100));
        a.end(1);
        assert_eq!(a.seq_of(o(1, 100)), None);
        a.reseed([(20, o(4, 1))]);
        assert_eq!(a.seq_of(o(2, 5)), None);
        assert_eq!(a.seq_of(o(4, 1)), Some(20));
    }
}
