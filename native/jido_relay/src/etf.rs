//! A pre-decode check of external term format bytes.
//!
//! eetf (erl_dist's term codec) trusts its input: it recurses once per
//! nesting level (deep nesting overflows the stack, which aborts the
//! process), sizes vectors from declared counts before reading them (a 10-byte
//! message can ask for gigabytes), inflates compressed terms without a bound
//! and panics on atom-cache references. [`check`] walks the bytes without
//! recursion and without allocating per term, and accepts only what eetf then
//! decodes within bounds: every declared length fits in the bytes that are
//! actually there, nesting and term count stay under [`Limits`], and
//! compressed terms, distribution headers and atom-cache references are
//! refused (BEAM never sends them on a connection that did not negotiate them).

/// Bounds applied by [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of tuples, lists, maps and funs.
    pub max_depth: usize,
    /// Most terms (counting every element) in one message.
    pub max_terms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 256,
            max_terms: 1_000_000,
        }
    }
}

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtfError {
    /// The bytes end inside a term.
    #[error("truncated term at byte {0}")]
    Truncated(usize),
    /// A top-level term does not start with the version byte 131.
    #[error("bad version byte {byte} at byte {at}")]
    BadVersion {
        /// Offending byte.
        byte: u8,
        /// Its position.
        at: usize,
    },
    /// A tag this relay does not accept.
    #[error("unsupported tag {tag} at byte {at}")]
    UnsupportedTag {
        /// Offending tag.
        tag: u8,
        /// Its position.
        at: usize,
    },
    /// A declared size or count larger than the remaining bytes.
    #[error("declared size {declared} at byte {at} exceeds the {remaining} bytes left")]
    BadLength {
        /// What the term declared.
        declared: u64,
        /// Bytes left after the header.
        remaining: usize,
        /// Position of the term.
        at: usize,
    },
    /// Nesting deeper than [`Limits::max_depth`].
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// More terms than [`Limits::max_terms`].
    #[error("more than {0} terms")]
    TooManyTerms(u64),
    /// A bitstring whose trailing-bits count is not 1..=8.
    #[error("bad bit count {0} in bitstring")]
    BadBits(u8),
    /// Bytes that follow the last complete term, or no term at all.
    #[error("expected {expected} top-level terms, found a different layout")]
    Layout {
        /// How many top-level terms were expected (at most).
        expected: usize,
    },
}

const VERSION: u8 = 131;

/// Checks that `bytes` holds 1 to `max_terms_top` complete top-level terms
/// (each with its version byte) and nothing else.
///
/// A distribution message is a control tuple optionally followed by a
/// payload term, so the relay calls this with `max_terms_top = 2`.
pub fn check(bytes: &[u8], max_terms_top: usize, limits: Limits) -> Result<(), EtfError> {
    let mut cur = Cursor { bytes, pos: 0 };
    let mut top = 0;
    let mut terms = 0u64;
    while cur.pos < bytes.len() {
        if top == max_terms_top {
            return Err(EtfError::Layout {
                expected: max_terms_top,
            });
        }
        let at = cur.pos;
        let version = cur.u8()?;
        if version != VERSION {
            return Err(EtfError::BadVersion { byte: version, at });
        }
        check_term(&mut cur, limits, &mut terms)?;
        top += 1;
    }
    if top == 0 {
        return Err(EtfError::Layout {
            expected: max_terms_top,
        });
    }
    Ok(())
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn skip(&mut self, n: u64) -> Result<(), EtfError> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                self.pos += n;
                Ok(())
            }
            _ => Err(EtfError::Truncated(self.pos)),
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], EtfError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e)) {
            Some(slice) => {
                let mut out = [0u8; N];
                out.copy_from_slice(slice);
                self.pos += N;
                Ok(out)
            }
            None => Err(EtfError::Truncated(self.pos)),
        }
    }

    fn u8(&mut self) -> Result<u8, EtfError> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u64, EtfError> {
        Ok(u64::from(u16::from_be_bytes(self.take()?)))
    }

    fn u32(&mut self) -> Result<u64, EtfError> {
        Ok(u64::from(u32::from_be_bytes(self.take()?)))
    }

    // A declared length must fit in what is left: `per_item` bytes at least each.
    fn fits(&self, declared: u64, per_item: u64, at: usize) -> Result<(), EtfError> {
        let needed = declared.saturating_mul(per_item);
        if needed <= self.remaining() as u64 {
            Ok(())
        } else {
            Err(EtfError::BadLength {
                declared,
                remaining: self.remaining(),
                at,
            })
        }
    }

    fn sized(&mut self, len: u64, at: usize) -> Result<(), EtfError> {
        self.fits(len, 1, at)?;
        self.skip(len)
    }

    // Atoms inside pids, ports, references and funs: read in place.
    fn atom(&mut self) -> Result<(), EtfError> {
        let at = self.pos;
        match self.u8()? {
            ATOM_EXT | ATOM_UTF8_EXT => {
                let len = self.u16()?;
                self.sized(len, at)
            }
            SMALL_ATOM_EXT | SMALL_ATOM_UTF8_EXT => {
                let len = u64::from(self.u8()?);
                self.sized(len, at)
            }
            tag => Err(EtfError::UnsupportedTag { tag, at }),
        }
    }
}

const NEW_FLOAT_EXT: u8 = 70;
const BIT_BINARY_EXT: u8 = 77;
const NEW_PID_EXT: u8 = 88;
const NEW_PORT_EXT: u8 = 89;
const NEWER_REFERENCE_EXT: u8 = 90;
const SMALL_INTEGER_EXT: u8 = 97;
const INTEGER_EXT: u8 = 98;
const FLOAT_EXT: u8 = 99;
const ATOM_EXT: u8 = 100;
const REFERENCE_EXT: u8 = 101;
const PORT_EXT: u8 = 102;
const PID_EXT: u8 = 103;
const SMALL_TUPLE_EXT: u8 = 104;
const LARGE_TUPLE_EXT: u8 = 105;
const NIL_EXT: u8 = 106;
const STRING_EXT: u8 = 107;
const LIST_EXT: u8 = 108;
const BINARY_EXT: u8 = 109;
const SMALL_BIG_EXT: u8 = 110;
const LARGE_BIG_EXT: u8 = 111;
const NEW_FUN_EXT: u8 = 112;
const EXPORT_EXT: u8 = 113;
const NEW_REFERENCE_EXT: u8 = 114;
const SMALL_ATOM_EXT: u8 = 115;
const MAP_EXT: u8 = 116;
const ATOM_UTF8_EXT: u8 = 118;
const SMALL_ATOM_UTF8_EXT: u8 = 119;
const V4_PORT_EXT: u8 = 120;

// Walks one term. `pending` holds, per open container, how many of its
// terms are still to be read; its length is the nesting depth.
fn check_term(cur: &mut Cursor<'_>, limits: Limits, terms: &mut u64) -> Result<(), EtfError> {
    let mut pending: Vec<u64> = vec![1];
    let open = |pending: &mut Vec<u64>, n: u64, terms: &mut u64| -> Result<(), EtfError> {
        *terms = terms.saturating_add(n);
        if *terms > limits.max_terms {
            return Err(EtfError::TooManyTerms(limits.max_terms));
        }
        if n > 0 {
            if pending.len() >= limits.max_depth {
                return Err(EtfError::TooDeep(limits.max_depth));
            }
            pending.push(n);
        }
        Ok(())
    };
    *terms = terms.saturating_add(1);

    while let Some(left) = pending.last_mut() {
        if *left == 0 {
            pending.pop();
            continue;
        }
        *left -= 1;

        let at = cur.pos;
        let tag = cur.u8()?;
        match tag {
            SMALL_INTEGER_EXT => cur.skip(1)?,
            INTEGER_EXT => cur.skip(4)?,
            NEW_FLOAT_EXT => cur.skip(8)?,
            FLOAT_EXT => cur.skip(31)?,
            NIL_EXT => {}
            ATOM_EXT | ATOM_UTF8_EXT => {
                let len = cur.u16()?;
                cur.sized(len, at)?;
            }
            SMALL_ATOM_EXT | SMALL_ATOM_UTF8_EXT => {
                let len = u64::from(cur.u8()?);
                cur.sized(len, at)?;
            }
            STRING_EXT => {
                let len = cur.u16()?;
                cur.sized(len, at)?;
            }
            BINARY_EXT => {
                let len = cur.u32()?;
                cur.sized(len, at)?;
            }
            BIT_BINARY_EXT => {
                let len = cur.u32()?;
                let bits = cur.u8()?;
                if !(1..=8).contains(&bits) {
                    return Err(EtfError::BadBits(bits));
                }
                cur.sized(len, at)?;
            }
            SMALL_BIG_EXT => {
                let n = u64::from(cur.u8()?);
                cur.skip(1)?;
                cur.sized(n, at)?;
            }
            LARGE_BIG_EXT => {
                let n = cur.u32()?;
                cur.skip(1)?;
                cur.sized(n, at)?;
            }
            PID_EXT => {
                cur.atom()?;
                cur.skip(9)?;
            }
            NEW_PID_EXT => {
                cur.atom()?;
                cur.skip(12)?;
            }
            PORT_EXT => {
                cur.atom()?;
                cur.skip(5)?;
            }
            NEW_PORT_EXT => {
                cur.atom()?;
                cur.skip(8)?;
            }
            V4_PORT_EXT => {
                cur.atom()?;
                cur.skip(12)?;
            }
            REFERENCE_EXT => {
                cur.atom()?;
                cur.skip(5)?;
            }
            NEW_REFERENCE_EXT | NEWER_REFERENCE_EXT => {
                let creation_len = if tag == NEW_REFERENCE_EXT { 1 } else { 4 };
                let ids = cur.u16()?;
                cur.atom()?;
                cur.skip(creation_len)?;
                cur.fits(ids, 4, at)?;
                cur.skip(ids * 4)?;
            }
            SMALL_TUPLE_EXT => {
                let n = u64::from(cur.u8()?);
                cur.fits(n, 1, at)?;
                open(&mut pending, n, terms)?;
            }
            LARGE_TUPLE_EXT => {
                let n = cur.u32()?;
                cur.fits(n, 1, at)?;
                open(&mut pending, n, terms)?;
            }
            LIST_EXT => {
                // Elements, then the tail.
                let n = cur.u32()?.saturating_add(1);
                cur.fits(n, 1, at)?;
                open(&mut pending, n, terms)?;
            }
            MAP_EXT => {
                let pairs = cur.u32()?;
                cur.fits(pairs, 2, at)?;
                open(&mut pending, pairs * 2, terms)?;
            }
            EXPORT_EXT => {
                // Module, function, arity: three terms.
                open(&mut pending, 3, terms)?;
            }
            NEW_FUN_EXT => {
                // Size(4) Arity(1) Uniq(16) Index(4) NumFree(4) Module
                // OldIndex OldUniq Pid FreeVars...
                cur.skip(4 + 1 + 16 + 4)?;
                let free = cur.u32()?;
                cur.atom()?;
                let n = free.saturating_add(3);
                cur.fits(n, 1, at)?;
                open(&mut pending, n, terms)?;
            }
            _ => return Err(EtfError::UnsupportedTag { tag, at }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_dist::term::{Atom, Binary, FixInteger, List, Map, Pid, Reference, Term, Tuple};

    fn encode(term: &Term) -> Vec<u8> {
        let mut buf = Vec::new();
        term.encode(&mut buf).unwrap();
        buf
    }

    fn ok(bytes: &[u8]) -> Result<(), EtfError> {
        check(bytes, 2, Limits::default())
    }

    fn sample() -> Term {
        let map = Map::from([
            (
                Atom::from("id").into(),
                Binary::from(b"abc".as_slice()).into(),
            ),
            (FixInteger::from(-7).into(), List::nil().into()),
        ]);
        Tuple::from(vec![
            Atom::from("ping").into(),
            Pid::new("a@vm", 1, 2, 3).into(),
            Reference::from(("a@vm", vec![1, 2, 3])).into(),
            List::from(vec![FixInteger::from(1000).into(), Term::from(map)]).into(),
            Term::from(erl_dist::term::BigInteger::from(u64::MAX)),
            Term::from(erl_dist::term::Float::try_from(1.5f64).unwrap()),
        ])
        .into()
    }

    #[test]
    fn accepts_what_eetf_encodes() {
        let one = encode(&sample());
        assert_eq!(ok(&one), Ok(()));
        let two = [one.clone(), one].concat();
        assert_eq!(ok(&two), Ok(()));
    }

    #[test]
    fn rejects_empty_extra_and_missing_version() {
        let one = encode(&sample());
        assert!(matches!(ok(&[]), Err(EtfError::Layout { .. })));
        let three = [one.clone(), one.clone(), one.clone()].concat();
        assert!(matches!(ok(&three), Err(EtfError::Layout { .. })));
        assert!(matches!(ok(&one[1..]), Err(EtfError::BadVersion { .. })));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let one = encode(&sample());
        for len in 1..one.len() {
            assert!(ok(&one[..len]).is_err(), "prefix {len} accepted");
        }
    }

    #[test]
    fn every_byte_flip_is_handled() {
        // No panic, whatever the result; accepted bytes must then decode.
        let one = encode(&sample());
        for i in 0..one.len() {
            for delta in [1u8, 0x80, 0xff] {
                let mut bytes = one.clone();
                bytes[i] = bytes[i].wrapping_add(delta);
                if ok(&bytes).is_ok() {
                    let mut slice = bytes.as_slice();
                    let _ = Term::decode(&mut slice);
                }
            }
        }
    }

    #[test]
    fn huge_declared_lengths_are_refused() {
        // LIST_EXT claiming 4 billion elements in a 10-byte message.
        let list = [VERSION, LIST_EXT, 0xff, 0xff, 0xff, 0xff, NIL_EXT, NIL_EXT];
        assert!(matches!(ok(&list), Err(EtfError::BadLength { .. })));
        let binary = [VERSION, BINARY_EXT, 0xff, 0xff, 0xff, 0xff, 0];
        assert!(matches!(ok(&binary), Err(EtfError::BadLength { .. })));
        let map = [VERSION, MAP_EXT, 0x7f, 0xff, 0xff, 0xff, NIL_EXT];
        assert!(matches!(ok(&map), Err(EtfError::BadLength { .. })));
    }

    #[test]
    fn deep_nesting_is_refused() {
        // [[[[...]]]] 100k deep: eetf would overflow the stack.
        let depth = 100_000;
        let mut bytes = vec![VERSION];
        for _ in 0..depth {
            bytes.extend_from_slice(&[LIST_EXT, 0, 0, 0, 1]);
        }
        bytes.push(NIL_EXT);
        bytes.extend(std::iter::repeat_n(NIL_EXT, depth));
        assert_eq!(ok(&bytes), Err(EtfError::TooDeep(256)));
        // Within the limit it is fine.
        let limits = Limits {
            max_depth: depth + 2,
            max_terms: 10 * depth as u64,
        };
        assert_eq!(check(&bytes, 1, limits), Ok(()));
    }

    #[test]
    fn term_count_is_bounded() {
        let list = Term::from(List::from(vec![List::nil().into(); 100]));
        let bytes = encode(&list);
        let limits = Limits {
            max_depth: 8,
            max_terms: 50,
        };
        assert_eq!(check(&bytes, 1, limits), Err(EtfError::TooManyTerms(50)));
    }

    #[test]
    fn refuses_compressed_cache_refs_and_dist_headers() {
        for tag in [80u8, 82, 68, 121, 117, 0, 255] {
            let bytes = [VERSION, tag, 0, 0, 0, 0, 0, 0];
            assert!(
                matches!(ok(&bytes), Err(EtfError::UnsupportedTag { .. })),
                "tag {tag}"
            );
        }
    }

    #[test]
    fn bitstring_bits_are_checked() {
        let bad = [VERSION, BIT_BINARY_EXT, 0, 0, 0, 1, 0, 0xff];
        assert_eq!(ok(&bad), Err(EtfError::BadBits(0)));
        let good = [VERSION, BIT_BINARY_EXT, 0, 0, 0, 1, 3, 0xe0];
        assert_eq!(ok(&good), Ok(()));
    }
}
