//! The frame codec: many entries (opaque byte strings) in one checked,
//! optionally lz4-compressed frame.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! offset size field
//!      0    4 magic        b"JDFR"
//!      4    1 version      1
//!      5    1 flags        bit 0: payload is lz4 block-compressed
//!      6    2 reserved     0
//!      8    4 entry count
//!     12    4 raw length   length of the uncompressed payload
//!     16    4 payload len  length of the payload as stored
//!     20    4 checksum     crc32 of bytes 0..20 and of the stored payload
//!     24    … payload      entries: u32 length, then that many bytes
//! ```
//!
//! Decoding treats every byte as hostile: every length is bounds-checked, the
//! decoded size is capped before anything is allocated, and every failure is a
//! [`FrameError`], never a panic.

use crate::error::FrameError;

/// The four bytes every frame starts with.
pub const MAGIC: [u8; 4] = *b"JDFR";
/// The only frame version this codec writes and reads.
pub const VERSION: u8 = 1;
/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 24;
/// Flag bit: the payload is lz4 block-compressed.
pub const FLAG_LZ4: u8 = 0b0000_0001;
/// Default cap on the decoded payload size: 64 MiB.
pub const DEFAULT_MAX_DECODED: usize = 64 * 1024 * 1024;
/// lz4 cannot expand data by more than about 255:1; a header that claims more
/// is rejected before any allocation.
const LZ4_MAX_RATIO: usize = 255;
const ENTRY_PREFIX: usize = 4;

/// How the payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Never compress.
    None,
    /// Always store lz4-compressed.
    Lz4,
    /// Compress, but store raw when compression does not make it smaller.
    Auto,
}

/// Limits applied while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted uncompressed payload, in bytes.
    pub max_decoded: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_decoded: DEFAULT_MAX_DECODED,
        }
    }
}

/// The parsed header of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub flags: u8,
    pub count: u32,
    pub raw_len: u32,
    pub payload_len: u32,
    pub checksum: u32,
}

/// A decoded frame: the uncompressed payload and where each entry lies in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    payload: Vec<u8>,
    entries: Vec<(usize, usize)>,
}

impl Decoded {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the frame holds no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in the order they were encoded.
    pub fn entries(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.entries
            .iter()
            .map(move |&(start, len)| &self.payload[start..start + len])
    }

    /// Size of the uncompressed payload.
    pub fn raw_len(&self) -> usize {
        self.payload.len()
    }
}

/// Encodes `entries` into one frame.
///
/// Fails only when the frame would not fit the header's 32-bit fields.
pub fn encode<E: AsRef<[u8]>>(
    entries: &[E],
    compression: Compression,
) -> Result<Vec<u8>, FrameError> {
    let count = u32::try_from(entries.len()).map_err(|_| FrameError::TooLarge)?;
    let raw_len: usize = entries
        .iter()
        .map(|e| ENTRY_PREFIX + e.as_ref().len())
        .sum();
    let raw_len_u32 = u32::try_from(raw_len).map_err(|_| FrameError::TooLarge)?;
    let mut raw = Vec::with_capacity(raw_len);
    for entry in entries {
        let bytes = entry.as_ref();
        let len = u32::try_from(bytes.len()).map_err(|_| FrameError::TooLarge)?;
        raw.extend_from_slice(&len.to_le_bytes());
        raw.extend_from_slice(bytes);
    }
    encode_raw_payload(&raw, count, raw_len_u32, compression)
}

fn encode_raw_payload(
    raw: &[u8],
    count: u32,
    raw_len: u32,
    compression: Compression,
) -> Result<Vec<u8>, FrameError> {
    let mut out;
    let mut flags = 0u8;
    match compression {
        Compression::None => {
            out = Vec::with_capacity(HEADER_LEN + raw.len());
            out.resize(HEADER_LEN, 0);
            out.extend_from_slice(raw);
        }
        Compression::Lz4 | Compression::Auto => {
            let max = lz4_flex::block::get_maximum_output_size(raw.len());
            out = vec![0u8; HEADER_LEN + max];
            let written = lz4_flex::block::compress_into(raw, &mut out[HEADER_LEN..])
                .map_err(|_| FrameError::TooLarge)?;
            if compression == Compression::Auto && written >= raw.len() {
                out.truncate(HEADER_LEN);
                out.extend_from_slice(raw);
            } else {
                out.truncate(HEADER_LEN + written);
                flags |= FLAG_LZ4;
            }
        }
    }
    let payload_len = u32::try_from(out.len() - HEADER_LEN).map_err(|_| FrameError::TooLarge)?;
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = VERSION;
    out[5] = flags;
    out[6..8].copy_from_slice(&[0, 0]);
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..16].copy_from_slice(&raw_len.to_le_bytes());
    out[16..20].copy_from_slice(&payload_len.to_le_bytes());
    let checksum = checksum(&out[0..20], &out[HEADER_LEN..]);
    out[20..24].copy_from_slice(&checksum.to_le_bytes());
    Ok(out)
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(header);
    hasher.update(payload);
    hasher.finalize()
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, FrameError> {
    bytes
        .get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(u32::from_le_bytes)
        .ok_or(FrameError::Truncated)
}

/// Parses and checks the fixed header without touching the payload.
pub fn parse_header(frame: &[u8]) -> Result<Header, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::Truncated);
    }
    if frame[0..4] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if frame.len() < HEADER_LEN {
        return Err(FrameError::Truncated);
    }
    if frame[4] != VERSION {
        return Err(FrameError::BadVersion);
    }
    let flags = frame[5];
    if flags & !FLAG_LZ4 != 0 || frame[6] != 0 || frame[7] != 0 {
        return Err(FrameError::BadFlags);
    }
    Ok(Header {
        flags,
        count: read_u32(frame, 8)?,
        raw_len: read_u32(frame, 12)?,
        payload_len: read_u32(frame, 16)?,
        checksum: read_u32(frame, 20)?,
    })
}

/// Decodes a frame into its entries, checking everything.
pub fn decode(frame: &[u8], limits: DecodeLimits) -> Result<Decoded, FrameError> {
    let header = parse_header(frame)?;
    let payload = &frame[HEADER_LEN..];
    let payload_len = header.payload_len as usize;
    let raw_len = header.raw_len as usize;
    if payload.len() < payload_len {
        return Err(FrameError::Truncated);
    }
    if payload.len() > payload_len {
        return Err(FrameError::TrailingBytes);
    }
    if raw_len > limits.max_decoded {
        return Err(FrameError::TooLarge);
    }
    if checksum(&frame[0..20], payload) != header.checksum {
        return Err(FrameError::ChecksumMismatch);
    }
    let count = header.count as usize;
    // Each entry needs at least its length prefix: reject absurd counts
    // before allocating an index for them.
    if count > raw_len / ENTRY_PREFIX {
        return Err(FrameError::BadEntry);
    }
    let raw = if header.flags & FLAG_LZ4 != 0 {
        if raw_len > payload_len.saturating_mul(LZ4_MAX_RATIO).saturating_add(16) {
            return Err(FrameError::CorruptPayload);
        }
        let mut raw = vec![0u8; raw_len];
        let written = lz4_flex::block::decompress_into(payload, &mut raw)
            .map_err(|_| FrameError::CorruptPayload)?;
        if written != raw_len {
            return Err(FrameError::CorruptPayload);
        }
        raw
    } else {
        if payload_len != raw_len {
            return Err(FrameError::CorruptPayload);
        }
        payload.to_vec()
    };
    let entries = index_entries(&raw, count)?;
    Ok(Decoded {
        payload: raw,
        entries,
    })
}

fn index_entries(raw: &[u8], count: usize) -> Result<Vec<(usize, usize)>, FrameError> {
    let mut entries = Vec::with_capacity(count);
    let mut at = 0usize;
    for _ in 0..count {
        let len = read_u32(raw, at).map_err(|_| FrameError::BadEntry)? as usize;
        let start = at + ENTRY_PREFIX;
        let end = start.checked_add(len).ok_or(FrameError::BadEntry)?;
        if end > raw.len() {
            return Err(FrameError::BadEntry);
        }
        entries.push((start, len));
        at = end;
    }
    if at != raw.len() {
        return Err(FrameError::BadEntry);
    }
    Ok(entries)
}

/// Recomputes the checksum of a (possibly tampered) frame in place, so tests
/// can reach the checks that sit behind the checksum.
#[doc(hidden)]
pub fn reseal(frame: &mut [u8]) {
    if frame.len() >= HEADER_LEN {
        let sum = checksum(&frame[0..20], &frame[HEADER_LEN..]);
        frame[20..24].copy_from_slice(&sum.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(entries: &[Vec<u8>], compression: Compression) -> Vec<Vec<u8>> {
        let frame = encode(entries, compression).expect("encode");
        let decoded = decode(&frame, DecodeLimits::default()).expect("decode");
        decoded.entries().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn empty_frame_roundtrips() {
        assert!(roundtrip(&[], Compression::Lz4).is_empty());
        assert!(roundtrip(&[], Compression::None).is_empty());
    }

    #[test]
    fn compressible_payload_is_compressed() {
        let entries = vec![vec![7u8; 10_000]; 10];
        let frame = encode(&entries, Compression::Auto).unwrap();
        assert_eq!(frame[5] & FLAG_LZ4, FLAG_LZ4);
        assert!(frame.len() < 2_000);
        assert_eq!(roundtrip(&entries, Compression::Auto), entries);
    }

    #[test]
    fn incompressible_payload_is_stored_raw_under_auto() {
        let entries = vec![vec![1u8, 200, 3, 99, 5]];
        let frame = encode(&entries, Compression::Auto).unwrap();
        assert_eq!(frame[5] & FLAG_LZ4, 0);
        assert_eq!(roundtrip(&entries, Compression::Auto), entries);
    }

    #[test]
    fn rejects_each_kind_of_bad_frame() {
        let good = encode(&[b"hello".to_vec(), b"world".to_vec()], Compression::Lz4).unwrap();
        let limits = DecodeLimits::default();
        assert_eq!(decode(b"", limits), Err(FrameError::Truncated));
        assert_eq!(
            decode(b"nope-not-a-frame-at-all!!", limits),
            Err(FrameError::BadMagic)
        );
        assert_eq!(decode(&good[..10], limits), Err(FrameError::Truncated));
        assert_eq!(
            decode(&good[..good.len() - 1], limits),
            Err(FrameError::Truncated)
        );
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(&longer, limits), Err(FrameError::TrailingBytes));
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(decode(&v, limits), Err(FrameError::BadVersion));
        let mut f = good.clone();
        f[5] = 0x80;
        assert_eq!(decode(&f, limits), Err(FrameError::BadFlags));
        let mut c = good.clone();
        let last = c.len() - 1;
        c[last] ^= 0xFF;
        assert_eq!(decode(&c, limits), Err(FrameError::ChecksumMismatch));
        let tight = DecodeLimits { max_decoded: 4 };
        assert_eq!(decode(&good, tight), Err(FrameError::TooLarge));
    }

    #[test]
    fn rejects_lies_behind_a_valid_checksum() {
        let good = encode(&[b"abc".to_vec()], Compression::None).unwrap();
        let limits = DecodeLimits::default();
        // Count claims two entries.
        let mut two = good.clone();
        two[8] = 2;
        reseal(&mut two);
        assert_eq!(decode(&two, limits), Err(FrameError::BadEntry));
        // Entry length runs past the payload.
        let mut long = good.clone();
        long[HEADER_LEN] = 200;
        reseal(&mut long);
        assert_eq!(decode(&long, limits), Err(FrameError::BadEntry));
        // Raw length disagrees with an uncompressed payload.
        let mut raw = good.clone();
        raw[12] = 99;
        reseal(&mut raw);
        assert_eq!(decode(&raw, limits), Err(FrameError::CorruptPayload));
        // A compressed frame claiming an impossible expansion.
        let mut lz = encode(&[b"abc".to_vec()], Compression::Lz4).unwrap();
        lz[12..16].copy_from_slice(&(60_000_000u32).to_le_bytes());
        reseal(&mut lz);
        assert_eq!(decode(&lz, limits), Err(FrameError::CorruptPayload));
        // Absurd entry count is rejected before allocation.
        let mut many = good;
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        reseal(&mut many);
        assert_eq!(decode(&many, limits), Err(FrameError::BadEntry));
    }

    fn entries_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(
            prop_oneof![
                prop::collection::vec(any::<u8>(), 0..300),
                (any::<u8>(), 0usize..2000).prop_map(|(b, n)| vec![b; n]),
            ],
            0..40,
        )
    }

    fn compression_strategy() -> impl Strategy<Value = Compression> {
        prop_oneof![
            Just(Compression::None),
            Just(Compression::Lz4),
            Just(Compression::Auto)
        ]
    }

    proptest! {
        #[test]
        fn prop_roundtrip(entries in entries_strategy(), compression in compression_strategy()) {
            prop_assert_eq!(roundtrip(&entries, compression), entries);
        }

        #[test]
        fn prop_random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes, DecodeLimits::default());
        }

        #[test]
        fn prop_mutated_frames_error_or_roundtrip(
            entries in entries_strategy(),
            compression in compression_strategy(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            resealed in any::<bool>(),
            cut in any::<Option<prop::sample::Index>>(),
        ) {
            let mut frame = encode(&entries, compression).unwrap();
            for (at, byte) in flips {
                let i = at.index(frame.len());
                frame[i] ^= byte;
            }
            if let Some(cut) = cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            if resealed {
                reseal(&mut frame);
            }
            if let Ok(decoded) = decode(&frame, DecodeLimits::default()) {
                // Whatever decodes must be internally consistent.
                let total: usize = decoded.entries().map(|e| e.len() + ENTRY_PREFIX).sum();
                prop_assert_eq!(total, decoded.raw_len());
            }
        }
    }

    /// One million random and mutated inputs, none of which may panic.
    #[test]
    fn a_million_hostile_inputs_do_not_panic() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds: Vec<Vec<u8>> = (0..16)
            .map(|i| {
                let entries: Vec<Vec<u8>> = (0..(i % 5 + 1))
                    .map(|j| vec![(i * 7 + j) as u8; (i * 13 + j * 31) % 200])
                    .collect();
                let compression = if i % 2 == 0 {
                    Compression::Lz4
                } else {
                    Compression::None
                };
                encode(&entries, compression).unwrap()
            })
            .collect();
        let limits = DecodeLimits {
            max_decoded: 1 << 20,
        };
        let mut ok = 0usize;
        for n in 0..1_000_000u32 {
            let input = match n % 4 {
                0 => {
                    let len = (rng.next() % 96) as usize;
                    (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
                }
                _ => {
                    let mut frame = seeds[(rng.next() % seeds.len() as u64) as usize].clone();
                    for _ in 0..(1 + rng.next() % 4) {
                        let i = (rng.next() % frame.len() as u64) as usize;
                        frame[i] = rng.next() as u8;
                    }
                    if n % 4 == 3 {
                        let keep = (rng.next() % (frame.len() as u64 + 1)) as usize;
                        frame.truncate(keep);
                    }
                    if n % 2 == 0 {
                        reseal(&mut frame);
                    }
                    frame
                }
            };
            if decode(&input, limits).is_ok() {
                ok += 1;
            }
        }
        // Some resealed mutations only touch entry bytes and still decode.
        assert!(ok < 1_000_000);
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }
}
