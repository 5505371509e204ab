//! A [`LinkBuffer`] shared between threads: the NIF resource's contents.
//!
//! Encoding a frame is the slow part of a take, so [`SharedBuffer::take`]
//! holds the lock only to move the entries out and to record the frame;
//! pushes from other threads go on meanwhile.

use std::sync::{Mutex, MutexGuard};

use crate::buffer::{encode_batch, Limits, LinkBuffer, Taken};
use crate::error::FrameError;
use crate::frame::Compression;
use crate::schedule::Work;

/// A link buffer behind a mutex.
#[derive(Debug)]
pub struct SharedBuffer(Mutex<LinkBuffer>);

impl SharedBuffer {
    /// An empty buffer with the given bounds.
    pub fn new(limits: Limits) -> Self {
        SharedBuffer(Mutex::new(LinkBuffer::new(limits)))
    }

    /// The buffer, locked. A poisoned lock means a panic happened
    /// mid-update; every operation leaves the buffer consistent before it
    /// can panic, so the buffer is used as it is.
    pub fn lock(&self) -> MutexGuard<'_, LinkBuffer> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The work of taking a frame of at most `max_bytes` now.
    pub fn take_work(&self, max_bytes: usize) -> Work {
        let pending = self.lock().stats().pending_bytes;
        Work::Take {
            bytes: pending.min(max_bytes),
        }
    }

    /// Frames up to `max_entries` pending entries (at most `max_bytes` of
    /// them, but at least one) under the next sequence number, encoding
    /// without the lock; returns the frame and the buffer's base after it,
    /// or `None` when nothing is pending. On an encoding error the entries
    /// go back to the front of the queue.
    pub fn take(
        &self,
        max_entries: usize,
        max_bytes: usize,
        compression: Compression,
    ) -> Result<Option<(Taken, u64)>, FrameError> {
        let Some(batch) = self.lock().begin_take(max_entries, max_bytes) else {
            return Ok(None);
        };
        match encode_batch(&batch, compression) {
            Ok((frame, atoms)) => {
                let mut guard = self.lock();
                let taken = guard.finish_take(batch, frame, atoms);
                Ok(Some((taken, guard.base())))
            }
            Err(err) => {
                self.lock().abort_take(batch);
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::Overflow;
    use crate::frame::{self, DecodeLimits};
    use std::sync::Arc;

    fn buffer() -> SharedBuffer {
        SharedBuffer::new(Limits {
            max_entries: 100_000,
            max_bytes: 1 << 30,
            overflow: Overflow::Reject,
        })
    }

    fn entry(i: u32) -> Vec<u8> {
        // An ETF small integer or integer.
        let mut bytes = vec![131, 98];
        bytes.extend_from_slice(&i.to_be_bytes());
        bytes
    }

    #[test]
    fn take_frames_pending_entries_in_sequence() {
        let buf = buffer();
        assert_eq!(buf.take(10, 1 << 20, Compression::Auto), Ok(None));
        buf.lock()
            .push_many(&[entry(1), entry(2), entry(3)])
            .unwrap();
        let (first, base) = buf.take(2, 1 << 20, Compression::Auto).unwrap().unwrap();
        assert_eq!((first.seq, first.entries, base), (1, 2, 1));
        let decoded = frame::decode(
            &first.frame,
            DecodeLimits {
                max_decoded: 1 << 20,
            },
        )
        .unwrap();
        assert_eq!(
            decoded.entries().collect::<Vec<_>>(),
            vec![&entry(1)[..], &entry(2)[..]]
        );
        let (second, _) = buf.take(2, 1 << 20, Compression::Auto).unwrap().unwrap();
        assert_eq!((second.seq, second.entries), (2, 1));
        buf.lock().ack(1);
        assert_eq!(buf.lock().base(), 2);
    }

    #[test]
    fn take_work_counts_what_one_take_encodes() {
        let buf = buffer();
        assert_eq!(buf.take_work(100), Work::Take { bytes: 0 });
        buf.lock().push_many(&[entry(1), entry(2)]).unwrap();
        assert_eq!(buf.take_work(100), Work::Take { bytes: 12 });
        assert_eq!(buf.take_work(7), Work::Take { bytes: 7 });
    }

    #[test]
    fn pushes_during_takes_keep_every_entry_once_in_order() {
        let buf = Arc::new(buffer());
        let pusher = {
            let buf = Arc::clone(&buf);
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    buf.lock().push_many(&[entry(i)]).unwrap();
                }
            })
        };
        let mut seen = Vec::new();
        let drain = |seen: &mut Vec<Vec<u8>>| {
            while let Some((taken, _)) = buf.take(50, 1 << 20, Compression::Auto).unwrap() {
                let decoded = frame::decode(
                    &taken.frame,
                    DecodeLimits {
                        max_decoded: 1 << 20,
                    },
                )
                .unwrap();
                seen.extend(decoded.entries().map(<[u8]>::to_vec));
            }
        };
        while !pusher.is_finished() {
            drain(&mut seen);
        }
        pusher.join().unwrap();
        drain(&mut seen);
        assert_eq!(seen, (0..2_000).map(entry).collect::<Vec<_>>());
    }
}
