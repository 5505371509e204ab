//! When NIF work belongs on a dirty scheduler: every threshold in one place.
//!
//! A NIF on a normal scheduler should return within about a millisecond.
//! Each NIF that can take longer measures its input first (a [`Work`]) and,
//! when [`Work::dirty`] says so, hands the call to its dirty-CPU twin instead
//! of doing it.

/// Above this many entries, encoding a frame goes to a dirty scheduler.
pub const ENCODE_ENTRIES: usize = 64;
/// Above this many frame bytes, decoding (or listing atoms) goes dirty.
pub const DECODE_BYTES: usize = 64 * 1024;
/// Above this many entries, delivering an inbound frame goes dirty.
pub const DELIVER_ENTRIES: usize = 128;
/// Above this many decoded bytes, delivering an inbound frame goes dirty.
pub const DELIVER_RAW_BYTES: usize = 64 * 1024;
/// Above this many pending bytes to frame, a buffer take goes dirty.
pub const TAKE_BYTES: usize = 64 * 1024;
/// Above this many members, planning a broadcast tree goes dirty.
pub const PLAN_MEMBERS: usize = 1_000;

/// The size of the work a NIF call is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Encoding this many entries into one frame.
    Encode { entries: usize },
    /// Decoding, or reading the atoms of, a frame of this many bytes.
    Decode { bytes: usize },
    /// Delivering a frame of `entries` entries, `raw_bytes` once decoded.
    Deliver { entries: usize, raw_bytes: usize },
    /// Framing this many pending bytes out of a link buffer.
    Take { bytes: usize },
    /// Planning a tree over this many members.
    Plan { members: usize },
}

impl Work {
    /// True when the work may outlast a normal scheduler's time slice.
    pub fn dirty(self) -> bool {
        match self {
            Work::Encode { entries } => entries > ENCODE_ENTRIES,
            Work::Decode { bytes } => bytes > DECODE_BYTES,
            Work::Deliver { entries, raw_bytes } => {
                entries > DELIVER_ENTRIES || raw_bytes > DELIVER_RAW_BYTES
            }
            Work::Take { bytes } => bytes > TAKE_BYTES,
            Work::Plan { members } => members > PLAN_MEMBERS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_inclusive_bounds_of_normal_work() {
        let cases = [
            (
                Work::Encode {
                    entries: ENCODE_ENTRIES,
                },
                Work::Encode {
                    entries: ENCODE_ENTRIES + 1,
                },
            ),
            (
                Work::Decode {
                    bytes: DECODE_BYTES,
                },
                Work::Decode {
                    bytes: DECODE_BYTES + 1,
                },
            ),
            (
                Work::Deliver {
                    entries: DELIVER_ENTRIES,
                    raw_bytes: DELIVER_RAW_BYTES,
                },
                Work::Deliver {
                    entries: DELIVER_ENTRIES + 1,
                    raw_bytes: 0,
                },
            ),
            (
                Work::Take { bytes: TAKE_BYTES },
                Work::Take {
                    bytes: TAKE_BYTES + 1,
                },
            ),
            (
                Work::Plan {
                    members: PLAN_MEMBERS,
                },
                Work::Plan {
                    members: PLAN_MEMBERS + 1,
                },
            ),
        ];
        for (normal, dirty) in cases {
            assert!(!normal.dirty(), "{normal:?}");
            assert!(dirty.dirty(), "{dirty:?}");
        }
    }

    #[test]
    fn a_large_frame_of_few_entries_is_delivered_dirty() {
        assert!(Work::Deliver {
            entries: 1,
            raw_bytes: DELIVER_RAW_BYTES + 1
        }
        .dirty());
        assert!(!Work::Deliver {
            entries: 0,
            raw_bytes: 0
        }
        .dirty());
    }
}
