//! The per-link send buffer: entries waiting to be framed, and frames waiting
//! to be acknowledged.
//!
//! Everything a link has accepted lives here until the receiving node has
//! acknowledged it, so a crashed link process loses nothing. The buffer is
//! bounded by entries and bytes (both counted over pending entries and
//! unacknowledged frames, by their uncompressed size); what happens when it
//! is full is the [`Overflow`] policy. Frames carry consecutive sequence
//! numbers starting at 1.

use std::collections::VecDeque;

use crate::error::FrameError;
use crate::etf;
use crate::frame::{self, Compression};

/// What `push` does when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Refuse the new entry.
    Reject,
    /// Drop the oldest data (unacknowledged frames first, then pending
    /// entries) until the new entry fits; the drops are counted.
    DropOldest,
}

crate::named_error! {
    /// Why an entry was not accepted.
    pub enum PushError {
        /// The buffer is full and the policy is [`Overflow::Reject`].
        Full => ("buffer_full", "the buffer is full"),
        /// The entry alone is larger than the byte bound.
        TooLarge => ("too_large", "the entries are larger than the buffer"),
    }
}

/// Bounds of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
    pub overflow: Overflow,
}

/// A frame that has been sent and not yet acknowledged.
#[derive(Debug, Clone)]
struct Unacked {
    seq: u64,
    frame: Vec<u8>,
    atoms: Vec<String>,
    entries: usize,
    raw_bytes: usize,
}

/// A frame taken from the buffer, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub seq: u64,
    pub frame: Vec<u8>,
    /// Distinct atom names in the frame's entries (see [`crate::etf`]);
    /// empty when an entry is not in external term format.
    pub atoms: Vec<String>,
    pub entries: usize,
    pub raw_bytes: usize,
}

/// Entries taken out of the pending queue for one frame, being encoded.
#[derive(Debug)]
pub struct Batch {
    pub seq: u64,
    pub entries: Vec<Vec<u8>>,
    pub raw_bytes: usize,
}

/// Encodes a batch into a frame and lists the atoms of its entries.
pub fn encode_batch(
    batch: &Batch,
    compression: Compression,
) -> Result<(Vec<u8>, Vec<String>), FrameError> {
    let frame = frame::encode(&batch.entries, compression)?;
    let atoms = etf::distinct_atoms(&batch.entries).unwrap_or_default();
    Ok((frame, atoms))
}

/// Counters describing a buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub pending_entries: usize,
    pub pending_bytes: usize,
    pub unacked_frames: usize,
    pub unacked_entries: usize,
    pub unacked_bytes: usize,
    pub next_seq: u64,
    pub acked_seq: u64,
    pub dropped_entries: u64,
    pub pushed_entries: u64,
}

/// The buffer of one link.
#[derive(Debug)]
pub struct LinkBuffer {
    limits: Limits,
    pending: VecDeque<Vec<u8>>,
    pending_bytes: usize,
    unacked: VecDeque<Unacked>,
    unacked_entries: usize,
    unacked_bytes: usize,
    next_seq: u64,
    acked_seq: u64,
    dropped_entries: u64,
    pushed_entries: u64,
}

impl LinkBuffer {
    /// An empty buffer with the given bounds.
    pub fn new(limits: Limits) -> Self {
        LinkBuffer {
            limits,
            pending: VecDeque::new(),
            pending_bytes: 0,
            unacked: VecDeque::new(),
            unacked_entries: 0,
            unacked_bytes: 0,
            next_seq: 1,
            acked_seq: 0,
            dropped_entries: 0,
            pushed_entries: 0,
        }
    }

    fn held_entries(&self) -> usize {
        self.pending.len() + self.unacked_entries
    }

    fn held_bytes(&self) -> usize {
        self.pending_bytes + self.unacked_bytes
    }

    fn fits(&self, entries: usize, bytes: usize) -> bool {
        self.held_entries() + entries <= self.limits.max_entries
            && self.held_bytes() + bytes <= self.limits.max_bytes
    }

    /// Accepts entries, all or none under [`Overflow::Reject`]. Returns the
    /// number of pending entries afterwards and how many entries were dropped
    /// to make room.
    pub fn push_many<E: AsRef<[u8]>>(&mut self, entries: &[E]) -> Result<(usize, u64), PushError> {
        let bytes: usize = entries.iter().map(|e| e.as_ref().len()).sum();
        if entries.len() > self.limits.max_entries || bytes > self.limits.max_bytes {
            return Err(PushError::TooLarge);
        }
        let mut dropped = 0u64;
        if !self.fits(entries.len(), bytes) {
            match self.limits.overflow {
                Overflow::Reject => return Err(PushError::Full),
                Overflow::DropOldest => {
                    while !self.fits(entries.len(), bytes) {
                        match self.drop_oldest() {
                            // Only frames being encoded are left: nothing
                            // can be dropped to make room right now.
                            0 => {
                                self.dropped_entries += dropped;
                                return Err(PushError::Full);
                            }
                            n => dropped += n,
                        }
                    }
                }
            }
        }
        for entry in entries {
            let entry = entry.as_ref();
            self.pending_bytes += entry.len();
            self.pending.push_back(entry.to_vec());
        }
        self.dropped_entries += dropped;
        self.pushed_entries += entries.len() as u64;
        Ok((self.pending.len(), dropped))
    }

    /// Drops the oldest unacknowledged frame, or else the oldest pending
    /// entry. Returns how many entries went.
    fn drop_oldest(&mut self) -> u64 {
        if let Some(frame) = self.unacked.pop_front() {
            self.unacked_entries -= frame.entries;
            self.unacked_bytes -= frame.raw_bytes;
            frame.entries as u64
        } else if let Some(entry) = self.pending.pop_front() {
            self.pending_bytes -= entry.len();
            1
        } else {
            0
        }
    }

    /// Frames up to `max_entries` pending entries (and at most `max_bytes` of
    /// them, but always at least one) under the next sequence number, and
    /// keeps the frame until it is acknowledged. `None` when nothing is
    /// pending. Equivalent to [`begin_take`](Self::begin_take),
    /// [`encode_batch`] and [`finish_take`](Self::finish_take).
    pub fn take_frame(
        &mut self,
        max_entries: usize,
        max_bytes: usize,
        compression: Compression,
    ) -> Result<Option<Taken>, FrameError> {
        let Some(batch) = self.begin_take(max_entries, max_bytes) else {
            return Ok(None);
        };
        match encode_batch(&batch, compression) {
            Ok((frame, atoms)) => Ok(Some(self.finish_take(batch, frame, atoms))),
            Err(err) => {
                self.abort_take(batch);
                Err(err)
            }
        }
    }

    /// Moves the next frame's entries out of the pending queue and reserves
    /// its sequence number, so the (slow) encoding can run without holding
    /// the buffer. The entries keep counting against the bounds as unacked.
    /// Batches must be finished in the order they were begun.
    pub fn begin_take(&mut self, max_entries: usize, max_bytes: usize) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        let mut count = 0usize;
        let mut raw_bytes = 0usize;
        for entry in self.pending.iter() {
            if count > 0 && (count >= max_entries || raw_bytes + entry.len() > max_bytes) {
                break;
            }
            count += 1;
            raw_bytes += entry.len();
        }
        let entries: Vec<Vec<u8>> = self.pending.drain(..count).collect();
        self.pending_bytes -= raw_bytes;
        self.unacked_entries += count;
        self.unacked_bytes += raw_bytes;
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(Batch {
            seq,
            entries,
            raw_bytes,
        })
    }

    /// Records the encoded frame of a begun batch as unacknowledged.
    pub fn finish_take(&mut self, batch: Batch, frame: Vec<u8>, atoms: Vec<String>) -> Taken {
        let entries = batch.entries.len();
        let at = self
            .unacked
            .iter()
            .rposition(|f| f.seq < batch.seq)
            .map_or(0, |i| i + 1);
        self.unacked.insert(
            at,
            Unacked {
                seq: batch.seq,
                frame: frame.clone(),
                atoms: atoms.clone(),
                entries,
                raw_bytes: batch.raw_bytes,
            },
        );
        Taken {
            seq: batch.seq,
            frame,
            atoms,
            entries,
            raw_bytes: batch.raw_bytes,
        }
    }

    /// Puts a begun batch's entries back at the front of the queue.
    pub fn abort_take(&mut self, batch: Batch) {
        self.unacked_entries -= batch.entries.len();
        self.unacked_bytes -= batch.raw_bytes;
        self.pending_bytes += batch.raw_bytes;
        for entry in batch.entries.into_iter().rev() {
            self.pending.push_front(entry);
        }
        if self.next_seq == batch.seq + 1 {
            self.next_seq = batch.seq;
        }
    }

    /// Releases every frame with a sequence number up to `upto`. Returns the
    /// number of entries released. Acks for frames never sent are ignored
    /// beyond what was sent.
    pub fn ack(&mut self, upto: u64) -> usize {
        let mut released = 0;
        while let Some(front) = self.unacked.front() {
            if front.seq > upto {
                break;
            }
            released += front.entries;
            self.unacked_entries -= front.entries;
            self.unacked_bytes -= front.raw_bytes;
            self.unacked.pop_front();
        }
        let sent = self.next_seq - 1;
        self.acked_seq = self.acked_seq.max(upto.min(sent));
        released
    }

    /// The lowest sequence number the buffer can still send: the receiver
    /// may skip anything below it (it was acknowledged or dropped).
    pub fn base(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |f| f.seq)
    }

    /// The unacknowledged frames, oldest first, for retransmission.
    pub fn unacked(&self) -> impl Iterator<Item = (u64, &[u8], &[String])> + '_ {
        self.unacked
            .iter()
            .map(|f| (f.seq, f.frame.as_slice(), f.atoms.as_slice()))
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        Stats {
            pending_entries: self.pending.len(),
            pending_bytes: self.pending_bytes,
            unacked_frames: self.unacked.len(),
            unacked_entries: self.unacked_entries,
            unacked_bytes: self.unacked_bytes,
            next_seq: self.next_seq,
            acked_seq: self.acked_seq,
            dropped_entries: self.dropped_entries,
            pushed_entries: self.pushed_entries,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{decode, DecodeLimits};
    use proptest::prelude::*;

    fn limits(max_entries: usize, max_bytes: usize, overflow: Overflow) -> Limits {
        Limits {
            max_entries,
            max_bytes,
            overflow,
        }
    }

    fn entries_of(taken: &Taken) -> Vec<Vec<u8>> {
        decode(&taken.frame, DecodeLimits::default())
            .unwrap()
            .entries()
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn frames_in_order_with_consecutive_seqs() {
        let mut b = LinkBuffer::new(limits(100, 1 << 20, Overflow::Reject));
        for i in 0..10u8 {
            b.push_many(&[vec![i; 3]]).unwrap();
        }
        let t1 = b
            .take_frame(4, usize::MAX, Compression::Auto)
            .unwrap()
            .unwrap();
        let t2 = b
            .take_frame(4, usize::MAX, Compression::Auto)
            .unwrap()
            .unwrap();
        let t3 = b
            .take_frame(4, usize::MAX, Compression::Auto)
            .unwrap()
            .unwrap();
        assert_eq!((t1.seq, t2.seq, t3.seq), (1, 2, 3));
        assert_eq!(
            entries_of(&t1),
            (0..4u8).map(|i| vec![i; 3]).collect::<Vec<_>>()
        );
        assert_eq!(t3.entries, 2);
        assert!(b
            .take_frame(4, usize::MAX, Compression::Auto)
            .unwrap()
            .is_none());
        assert_eq!(b.base(), 1);
        assert_eq!(b.ack(2), 8);
        assert_eq!(b.base(), 3);
        assert_eq!(b.unacked().map(|(s, _, _)| s).collect::<Vec<_>>(), vec![3]);
        assert_eq!(b.ack(99), 2);
        assert_eq!(b.stats().acked_seq, 3);
        assert_eq!(b.base(), 4);
    }

    #[test]
    fn byte_cap_per_frame_still_takes_one_entry() {
        let mut b = LinkBuffer::new(limits(100, 1 << 20, Overflow::Reject));
        b.push_many(&[vec![1u8; 100], vec![2u8; 100]]).unwrap();
        let t = b.take_frame(10, 10, Compression::None).unwrap().unwrap();
        assert_eq!(t.entries, 1);
    }

    #[test]
    fn reject_keeps_everything_accepted() {
        let mut b = LinkBuffer::new(limits(3, 1 << 20, Overflow::Reject));
        b.push_many(&[b"a", b"b"]).unwrap();
        assert_eq!(b.push_many(&[b"c", b"d"]), Err(PushError::Full));
        b.push_many(&[b"c"]).unwrap();
        assert_eq!(b.push_many(&[b"d"]), Err(PushError::Full));
        b.take_frame(10, usize::MAX, Compression::None).unwrap();
        // Unacked frames still count against the bound.
        assert_eq!(b.push_many(&[b"d"]), Err(PushError::Full));
        b.ack(1);
        b.push_many(&[b"d"]).unwrap();
        assert_eq!(b.stats().dropped_entries, 0);
        assert_eq!(b.push_many(&[vec![0u8; 2 << 20]]), Err(PushError::TooLarge));
    }

    #[test]
    fn drop_oldest_drops_unacked_frames_first_and_counts() {
        let mut b = LinkBuffer::new(limits(4, 1 << 20, Overflow::DropOldest));
        b.push_many(&[b"a", b"b"]).unwrap();
        b.take_frame(10, usize::MAX, Compression::None).unwrap();
        b.push_many(&[b"c", b"d"]).unwrap();
        let (pending, dropped) = b.push_many(&[b"e"]).unwrap();
        assert_eq!((pending, dropped), (3, 2));
        assert_eq!(b.base(), 2);
        let (_, dropped) = b.push_many(&[b"f"]).unwrap();
        assert_eq!(dropped, 0);
        let (_, dropped) = b.push_many(&[b"g"]).unwrap();
        assert_eq!(dropped, 1);
        assert_eq!(b.stats().dropped_entries, 3);
        let t = b
            .take_frame(10, usize::MAX, Compression::None)
            .unwrap()
            .unwrap();
        assert_eq!(
            entries_of(&t),
            vec![b"d".to_vec(), b"e".to_vec(), b"f".to_vec(), b"g".to_vec()]
        );
    }

    proptest! {
        /// Whatever the interleaving, every accepted entry is released by an
        /// ack, still held (pending or unacked), or counted as dropped; frames
        /// keep the order of acceptance; the bounds hold throughout.
        #[test]
        fn prop_accounting(ops in prop::collection::vec((0u8..4, 1usize..5), 1..200),
                           drop_oldest in any::<bool>()) {
            let overflow = if drop_oldest { Overflow::DropOldest } else { Overflow::Reject };
            let mut b = LinkBuffer::new(limits(20, 400, overflow));
            let mut next = 0u32;
            let mut accepted = 0u64;
            let mut released = 0u64;
            let mut framed: Vec<u32> = Vec::new();
            for (op, n) in ops {
                match op {
                    0 | 1 => {
                        let entries: Vec<Vec<u8>> =
                            (0..n).map(|k| (next + k as u32).to_le_bytes().to_vec()).collect();
                        if b.push_many(&entries).is_ok() {
                            next += n as u32;
                            accepted += n as u64;
                        }
                    }
                    2 => {
                        if let Some(t) = b.take_frame(n, 1000, Compression::Auto).unwrap() {
                            for e in entries_of(&t) {
                                framed.push(u32::from_le_bytes([e[0], e[1], e[2], e[3]]));
                            }
                        }
                    }
                    _ => {
                        let upto = b.stats().next_seq.saturating_sub(n as u64);
                        released += b.ack(upto) as u64;
                    }
                }
                let s = b.stats();
                prop_assert!(s.pending_entries + s.unacked_entries <= 20);
                prop_assert!(s.pending_bytes + s.unacked_bytes <= 400);
                prop_assert_eq!(
                    accepted,
                    released + (s.pending_entries + s.unacked_entries) as u64 + s.dropped_entries
                );
            }
            prop_assert!(framed.windows(2).all(|w| w[0] < w[1]));
            if !drop_oldest {
                prop_assert_eq!(b.stats().dropped_entries, 0);
            }
        }
    }
}
