//! Inbound sequencing: what a receiver does with a frame from one origin.
//!
//! A sender numbers its frames `1, 2, 3, ...` within an *epoch* (a random
//! number drawn when its buffer is created) and tells, with every frame, the
//! lowest sequence number it still holds (`base`): everything below was
//! acknowledged, or dropped by the sender under its overflow policy.
//!
//! The receiver keeps one [`Session`] per origin. [`Session::admit`] decides
//! what to do with an arriving frame; [`Session::progress`] and
//! [`Session::complete`] record how far delivery got. The session is the
//! only state, so a receiver that records progress *atomically with each
//! delivery* (the NIF does all of it under one lock in one call) delivers
//! every entry exactly once and in order, whatever it is interrupted by:
//! entries of a frame already partly delivered are skipped when the frame
//! comes again.
//!
//! Pure: no I/O, no clocks (times are passed in), no Erlang types.

/// A receiver counter, kept per node over every origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Frames delivered in full.
    Frames,
    /// Entries delivered.
    Signals,
    /// Frames that arrived again after being delivered.
    Duplicates,
    /// Frames that arrived before an earlier one.
    Gaps,
    /// Frames the sender gave up (below its base) and were never delivered.
    Skipped,
    /// Frames or entries that do not decode.
    Malformed,
    /// Entries whose destination is gone.
    Undeliverable,
    /// Acks sent back (counted by the caller).
    AcksSent,
}

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 8] = [
        Counter::Frames,
        Counter::Signals,
        Counter::Duplicates,
        Counter::Gaps,
        Counter::Skipped,
        Counter::Malformed,
        Counter::Undeliverable,
        Counter::AcksSent,
    ];

    /// The position of the counter in [`Counter::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name, used as the Elixir atom.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Frames => "frames",
            Counter::Signals => "signals",
            Counter::Duplicates => "duplicates",
            Counter::Gaps => "gaps",
            Counter::Skipped => "skipped",
            Counter::Malformed => "malformed",
            Counter::Undeliverable => "undeliverable",
            Counter::AcksSent => "acks_sent",
        }
    }

    /// The counter named `name`, if any.
    pub fn from_name(name: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One origin's sequencing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// The sender's epoch this state belongs to.
    pub epoch: u64,
    /// Every frame up to and including this one was delivered in full.
    pub delivered: u64,
    /// Entries of frame `delivered + 1` already delivered (a frame whose
    /// delivery was interrupted).
    pub partial: u32,
    /// The highest `base - 1` the sender has shown: frames it knows were
    /// delivered (it has seen our acks for them).
    pub confirmed: u64,
    /// When the origin went down (ms, caller's clock), while it is down.
    pub down_since: Option<u64>,
}

/// A frame's sequencing header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// The sender's epoch.
    pub epoch: u64,
    /// The frame's sequence number (1-based).
    pub seq: u64,
    /// The lowest sequence number the sender still holds (1 ≤ base ≤ seq).
    pub base: u64,
}

/// What to do with an arriving frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver the frame's entries from this index on (0 unless an earlier
    /// delivery of the same frame was interrupted), then call
    /// [`Session::complete`].
    Deliver {
        /// First entry not delivered yet.
        from_entry: u32,
    },
    /// Already delivered: drop it and acknowledge again.
    Duplicate,
    /// A frame before it is missing: drop it, ask for a resend.
    Gap,
    /// Not a valid header (`seq` or `base` zero, or `base > seq`).
    Invalid,
}

/// The outcome of [`Session::admit`]: the session to keep if the frame is
/// accepted, what to do, and how many frames the sender skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The session after this arrival (to be stored only if the frame is
    /// used: a frame that turns out not to decode must change nothing).
    pub session: Session,
    /// What to do.
    pub verdict: Verdict,
    /// Frames the sender dropped without delivering (overflow), now skipped.
    pub skipped: u64,
}

impl Session {
    /// A fresh session for `epoch`, expecting frame `base` next.
    pub fn new(epoch: u64, base: u64) -> Session {
        let delivered = base.saturating_sub(1);
        Session {
            epoch,
            delivered,
            partial: 0,
            confirmed: delivered,
            down_since: None,
        }
    }

    /// Decides what to do with `arrival`, given the origin's current session
    /// (`None` if it has none).
    ///
    /// ```
    /// use jido_core::inbound::{Arrival, Session, Verdict};
    /// let a = Session::admit(None, Arrival { epoch: 7, seq: 1, base: 1 });
    /// assert_eq!(a.verdict, Verdict::Deliver { from_entry: 0 });
    /// let s = a.session.complete(1);
    /// let again = Session::admit(Some(s), Arrival { epoch: 7, seq: 1, base: 1 });
    /// assert_eq!(again.verdict, Verdict::Duplicate);
    /// let gap = Session::admit(Some(s), Arrival { epoch: 7, seq: 3, base: 1 });
    /// assert_eq!(gap.verdict, Verdict::Gap);
    /// ```
    pub fn admit(current: Option<Session>, arrival: Arrival) -> Admission {
        let Arrival { epoch, seq, base } = arrival;
        let fallback = current.unwrap_or_else(|| Session::new(epoch, 1));
        if seq == 0 || base == 0 || base > seq {
            return Admission {
                session: fallback,
                verdict: Verdict::Invalid,
                skipped: 0,
            };
        }

        // A new epoch means a new sender buffer: start from its base.
        let mut session = match current {
            Some(s) if s.epoch == epoch => s,
            _ => Session::new(epoch, base),
        };
        session.down_since = None;
        session.confirmed = session.confirmed.max(base - 1);

        // The sender no longer holds frames below `base`: those it never got
        // an ack for were dropped on its side; skip them.
        let mut skipped = 0;
        if base - 1 > session.delivered {
            skipped = base - 1 - session.delivered;
            session.delivered = base - 1;
            session.partial = 0;
        }

        let verdict = if seq <= session.delivered {
            Verdict::Duplicate
        } else if seq == session.delivered + 1 {
            Verdict::Deliver {
                from_entry: session.partial,
            }
        } else {
            Verdict::Gap
        };

        Admission {
            session,
            verdict,
            skipped,
        }
    }

    /// Records that entries of frame `seq` (= `delivered + 1`) before
    /// `entries_done` were delivered.
    pub fn progress(mut self, seq: u64, entries_done: u32) -> Session {
        if seq == self.delivered + 1 {
            self.partial = entries_done;
        }
        self
    }

    /// Records that frame `seq` (= `delivered + 1`) was delivered in full.
    pub fn complete(mut self, seq: u64) -> Session {
        if seq == self.delivered + 1 {
            self.delivered = seq;
            self.partial = 0;
        }
        self
    }

    /// Whether this session can be forgotten at `now` (ms).
    ///
    /// A session is needed while its origin may still send frames of this
    /// epoch that were delivered but not known to be: forgetting it would
    /// deliver them again. It can go once the origin has been down for
    /// `grace_ms` *and* the origin had confirmed every delivered frame (its
    /// next frame would start above them anyway), or once the origin has
    /// been down for `ttl_ms`, whatever it had confirmed.
    ///
    /// ```
    /// use jido_core::inbound::Session;
    /// let mut s = Session::new(1, 1).complete(1);
    /// s.down_since = Some(1_000);
    /// assert!(!s.expired(2_000, 5_000, 60_000)); // within the grace
    /// assert!(!s.expired(7_000, 5_000, 60_000)); // frame 1 not confirmed
    /// assert!(s.expired(61_000, 5_000, 60_000)); // past the ttl
    /// s.confirmed = 1;
    /// assert!(s.expired(7_000, 5_000, 60_000));
    /// ```
    pub fn expired(&self, now: u64, grace_ms: u64, ttl_ms: u64) -> bool {
        match self.down_since {
            None => false,
            Some(since) => {
                let down_for = now.saturating_sub(since);
                (down_for >= grace_ms && self.confirmed >= self.delivered && self.partial == 0)
                    || down_for >= ttl_ms
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arrival(epoch: u64, seq: u64, base: u64) -> Arrival {
        Arrival { epoch, seq, base }
    }

    #[test]
    fn invalid_headers_change_nothing() {
        let s = Session::new(3, 1).complete(1);
        for (seq, base) in [(0, 0), (0, 1), (2, 0), (2, 3)] {
            let a = Session::admit(Some(s), arrival(3, seq, base));
            assert_eq!(a.verdict, Verdict::Invalid);
            assert_eq!(a.session, s);
        }
    }

    #[test]
    fn a_new_epoch_starts_from_its_base() {
        let s = Session::new(3, 1).complete(1).complete(2);
        let a = Session::admit(Some(s), arrival(4, 5, 5));
        assert_eq!(a.verdict, Verdict::Deliver { from_entry: 0 });
        assert_eq!(a.session.epoch, 4);
        assert_eq!(a.session.delivered, 4);
        assert_eq!(a.skipped, 0);
    }

    #[test]
    fn a_raised_base_skips_dropped_frames() {
        let s = Session::new(3, 1).complete(1);
        let a = Session::admit(Some(s), arrival(3, 5, 4));
        assert_eq!(a.skipped, 2);
        assert_eq!(a.session.delivered, 3);
        assert_eq!(a.verdict, Verdict::Gap);
    }

    #[test]
    fn an_interrupted_frame_resumes_where_it_stopped() {
        let s = Session::new(9, 1).progress(1, 3);
        let a = Session::admit(Some(s), arrival(9, 1, 1));
        assert_eq!(a.verdict, Verdict::Deliver { from_entry: 3 });
        let done = a.session.complete(1);
        assert_eq!((done.delivered, done.partial), (1, 0));
    }

    #[test]
    fn progress_and_complete_ignore_other_frames() {
        let s = Session::new(9, 1);
        assert_eq!(s.progress(2, 3), s);
        assert_eq!(s.complete(2), s);
    }

    #[test]
    fn arrival_clears_down_and_raises_confirmed() {
        let mut s = Session::new(1, 1).complete(1).complete(2);
        s.down_since = Some(5);
        let a = Session::admit(Some(s), arrival(1, 2, 2));
        assert_eq!(a.session.down_since, None);
        assert_eq!(a.session.confirmed, 1);
        assert_eq!(a.verdict, Verdict::Duplicate);
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Deliver the in-flight frame with this index (mod in-flight).
        Arrive(usize),
        /// The receiver crashes after delivering this many entries of the
        /// next frame it handles (progress recorded with each delivery).
        CrashAfter(u32),
        /// The sender gets an ack for everything delivered.
        Ack,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0usize..8).prop_map(Step::Arrive),
            1 => (0u32..6).prop_map(Step::CrashAfter),
            2 => Just(Step::Ack),
        ]
    }

    proptest! {
        /// Frames of 1-5 entries arrive duplicated, reordered and in any
        /// interleaving (the sender resends everything unacked until it is
        /// acked), the receiver is interrupted mid-frame at random; every
        /// entry is delivered exactly once and in order.
        #[test]
        fn any_interleaving_delivers_each_entry_once_in_order(
            sizes in proptest::collection::vec(1u32..6, 1..20),
            steps in proptest::collection::vec(step(), 0..400),
        ) {
            let frames = sizes.len() as u64;
            let mut session: Option<Session> = None;
            let mut acked = 0u64; // sender's base - 1
            let mut delivered: Vec<(u64, u32)> = Vec::new();
            let mut crash_after: Option<u32> = None;

            let arrive = |seq: u64, acked: u64, crash_after: &mut Option<u32>,
                              session: &mut Option<Session>,
                              delivered: &mut Vec<(u64, u32)>| {
                let a = Session::admit(*session, arrival(42, seq, acked + 1));
                let mut s = a.session;
                match a.verdict {
                    Verdict::Deliver { from_entry } => {
                        let size = sizes[(seq - 1) as usize];
                        let mut crashed = false;
                        for entry in from_entry..size {
                            if let Some(limit) = *crash_after {
                                if entry - from_entry >= limit {
                                    crashed = true;
                                    break;
                                }
                            }
                            delivered.push((seq, entry));
                            s = s.progress(seq, entry + 1);
                        }
                        *crash_after = None;
                        if !crashed {
                            s = s.complete(seq);
                        }
                    }
                    Verdict::Invalid => unreachable!(),
                    Verdict::Duplicate | Verdict::Gap => {}
                }
                *session = Some(s);
            };

            for st in &steps {
                match st {
                    Step::Arrive(i) => {
                        let unacked = frames - acked;
                        if unacked > 0 {
                            let seq = acked + 1 + (*i as u64 % unacked);
                            arrive(seq, acked, &mut crash_after, &mut session, &mut delivered);
                        }
                    }
                    Step::CrashAfter(n) => crash_after = Some(*n),
                    Step::Ack => acked = session.map_or(0, |s| s.delivered),
                }
            }
            // Then the sender resends in order until everything is acked.
            crash_after = None;
            let mut rounds = 0;
            while acked < frames {
                for seq in acked + 1..=frames {
                    arrive(seq, acked, &mut crash_after, &mut session, &mut delivered);
                }
                acked = session.map_or(0, |s| s.delivered);
                rounds += 1;
                prop_assert!(rounds < 1000);
            }

            let expected: Vec<(u64, u32)> = sizes
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| (0..n).map(move |e| (i as u64 + 1, e)))
                .collect();
            prop_assert_eq!(delivered, expected);
        }
    }

    #[test]
    fn counters_are_named_once_in_index_order() {
        for (i, c) in Counter::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(Counter::from_name(c.name()), Some(c));
        }
        assert_eq!(Counter::from_name("nope"), None);
    }
}
