//! One walker over Erlang's external term format (ETF), with two uses.
//!
//! **Checking untrusted bytes** ([`check`]). eetf (erl_dist's term codec)
//! trusts its input: it recurses once per nesting level (deep nesting
//! overflows the stack, which aborts the process), sizes vectors from
//! declared counts before reading them (a 10-byte message can ask for
//! gigabytes), inflates compressed terms without a bound and panics on
//! atom-cache references. The relay calls [`check`] first; it accepts only
//! what eetf then decodes within bounds: every declared length fits in the
//! bytes that are actually there, nesting and term count stay under
//! [`Limits`], and compressed terms, distribution headers and atom-cache
//! references are refused (BEAM never sends them on a connection that did
//! not negotiate them).
//!
//! **Listing atoms** ([`distinct_atoms`]). Receivers decode frame entries
//! with `binary_to_term(_, [:safe])`, which refuses atoms that do not exist
//! on the receiving node yet. Plain distribution creates such atoms; to
//! deliver the same signals, a Link sends the names of the atoms in each
//! frame alongside it, in the distribution message itself, so the receiving
//! node's distribution layer creates them (exactly as it would for a plain
//! `send/2`) before the frame is decoded.
//!
//! Both are built on [`check_with`], which walks the bytes without recursion
//! and without allocating per term, and hands every atom it meets to a
//! visitor: plain atoms, node names inside pids, ports and references, and
//! module and function names inside funs. [`check`] passes a visitor that
//! does nothing, which compiles away.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Bounds applied by [`check`] and [`check_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of tuples, lists, maps and funs.
    pub max_depth: usize,
    /// Most terms (counting every element) in one message.
    pub max_terms: u64,
}

impl Limits {
    /// No bounds beyond the bytes themselves. The walker still allocates at
    /// most one counter per input byte, so this is safe on any input; it
    /// only drops the policy limits on nesting and term count.
    pub const UNBOUNDED: Self = Self {
        max_depth: usize::MAX,
        max_terms: u64::MAX,
    };
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
    /// A tag that is not accepted here.
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
    /// A UTF-8 atom whose text is not valid UTF-8.
    #[error("atom at byte {0} is not valid UTF-8")]
    BadAtom(usize),
    /// Bytes that follow the last complete term, or no term at all.
    #[error("expected {expected} top-level terms, found a different layout")]
    Layout {
        /// How many top-level terms were expected (at most).
        expected: usize,
    },
}

/// An atom met by the walker, as it appears in the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Atom<'a> {
    /// The atom's text, undecoded.
    pub text: &'a [u8],
    /// Whether `text` is latin-1 (`ATOM_EXT`, `SMALL_ATOM_EXT`) rather than
    /// UTF-8.
    pub latin1: bool,
    /// Position of the atom's tag.
    pub at: usize,
}

impl<'a> Atom<'a> {
    /// The atom's name as UTF-8: borrowed when the text is UTF-8 or ASCII,
    /// converted when it is latin-1 beyond ASCII.
    pub fn name(&self) -> Result<Cow<'a, str>, EtfError> {
        if self.latin1 && !self.text.is_ascii() {
            Ok(Cow::Owned(
                self.text.iter().map(|&b| char::from(b)).collect(),
            ))
        } else {
            std::str::from_utf8(self.text)
                .map(Cow::Borrowed)
                .map_err(|_| EtfError::BadAtom(self.at))
        }
    }
}

const VERSION: u8 = 131;

/// Checks that `bytes` holds 1 to `max_terms_top` complete top-level terms
/// (each with its version byte) and nothing else.
///
/// A distribution message is a control tuple optionally followed by a
/// payload term, so the relay calls this with `max_terms_top = 2`.
pub fn check(bytes: &[u8], max_terms_top: usize, limits: Limits) -> Result<(), EtfError> {
    check_with(bytes, max_terms_top, limits, |_| Ok(()))
}

/// [`check`], calling `visit` on every atom in order of appearance (repeats
/// included), including node names in pids, ports and references and
/// module and function names in funs. An error from `visit` stops the walk
/// and is returned.
pub fn check_with<'a, F>(
    bytes: &'a [u8],
    max_terms_top: usize,
    limits: Limits,
    mut visit: F,
) -> Result<(), EtfError>
where
    F: FnMut(Atom<'a>) -> Result<(), EtfError>,
{
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
        walk_term(&mut cur, limits, &mut terms, &mut visit)?;
        top += 1;
    }
    if top == 0 {
        return Err(EtfError::Layout {
            expected: max_terms_top,
        });
    }
    Ok(())
}

/// The distinct atom names of all `terms` (each one top-level term with its
/// version byte), in order of first appearance, as UTF-8 (latin-1 atoms
/// converted, so an atom is listed once whichever way it was encoded).
///
/// The terms are walked with [`Limits::UNBOUNDED`]: they are the local
/// node's own `term_to_binary` output, and any nesting it produces must be
/// listed.
pub fn distinct_atoms<T: AsRef<[u8]>>(terms: &[T]) -> Result<Vec<String>, EtfError> {
    // Entries repeat the same few atoms many times: dedupe on the raw text
    // with a cheap hash first, and convert each spelling to a name once.
    let mut seen_raw: HashSet<(&[u8], bool), BuildHasherDefault<Fnv1a>> = HashSet::default();
    let mut seen_names: HashSet<Cow<'_, str>> = HashSet::new();
    let mut out = Vec::new();
    for term in terms {
        check_with(term.as_ref(), 1, Limits::UNBOUNDED, |atom| {
            if seen_raw.insert((atom.text, atom.latin1)) {
                let name = atom.name()?;
                if !seen_names.contains(&name) {
                    out.push(name.clone().into_owned());
                    seen_names.insert(name);
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// One atom's text as it appears in a term: the bytes and whether they are
/// latin-1 (the old atom tags) rather than UTF-8.
pub type AtomText<'a> = (&'a [u8], bool);

/// The distinct atom texts of all `terms`, in order of first appearance,
/// borrowed from the terms: no copy per atom, for hot paths. Texts are
/// compared as bytes, so an atom written once as latin-1 and once as UTF-8
/// (non-ASCII) is listed twice.
pub fn distinct_atom_texts<'a, T: AsRef<[u8]>>(
    terms: &'a [T],
) -> Result<Vec<AtomText<'a>>, EtfError> {
    let mut out: Vec<AtomText<'a>> = Vec::new();
    // Few distinct atoms is the common case: a linear scan beats hashing
    // until the list grows.
    let mut seen: HashSet<&'a [u8], BuildHasherDefault<Fnv1a>> = HashSet::default();
    for term in terms {
        check_with(term.as_ref(), 1, Limits::UNBOUNDED, |atom| {
            let known = if out.len() < 32 {
                out.iter().any(|&(t, _)| t == atom.text)
            } else {
                if seen.is_empty() {
                    seen.extend(out.iter().map(|&(t, _)| t));
                }
                !seen.insert(atom.text)
            };
            if !known {
                out.push((atom.text, atom.latin1));
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// FNV-1a: fast for the short keys (atom texts) it is used on here.
struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
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
        let [b] = self.take::<1>()?;
        Ok(b)
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

    // The next `len` bytes, which the term at `at` declared.
    fn slice(&mut self, len: u64, at: usize) -> Result<&'a [u8], EtfError> {
        let start = self.pos;
        self.sized(len, at)?;
        self.bytes
            .get(start..self.pos)
            .ok_or(EtfError::Truncated(start))
    }

    // The rest of an atom whose tag (at `at`) has been read.
    fn atom_body<F>(&mut self, tag: u8, at: usize, visit: &mut F) -> Result<(), EtfError>
    where
        F: FnMut(Atom<'a>) -> Result<(), EtfError>,
    {
        let (len, latin1) = match tag {
            ATOM_EXT => (self.u16()?, true),
            SMALL_ATOM_EXT => (u64::from(self.u8()?), true),
            ATOM_UTF8_EXT => (self.u16()?, false),
            SMALL_ATOM_UTF8_EXT => (u64::from(self.u8()?), false),
            tag => return Err(EtfError::UnsupportedTag { tag, at }),
        };
        let text = self.slice(len, at)?;
        visit(Atom { text, latin1, at })
    }

    // An atom that must be one (node names, fun modules and names).
    fn atom<F>(&mut self, visit: &mut F) -> Result<(), EtfError>
    where
        F: FnMut(Atom<'a>) -> Result<(), EtfError>,
    {
        let at = self.pos;
        let tag = self.u8()?;
        self.atom_body(tag, at, visit)
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
// terms are still to be read; its length is the nesting depth. A container
// is opened only after its count has been checked against the bytes left,
// so `pending` never holds more entries than there are input bytes.
fn walk_term<'a, F>(
    cur: &mut Cursor<'a>,
    limits: Limits,
    terms: &mut u64,
    visit: &mut F,
) -> Result<(), EtfError>
where
    F: FnMut(Atom<'a>) -> Result<(), EtfError>,
{
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
            ATOM_EXT | ATOM_UTF8_EXT | SMALL_ATOM_EXT | SMALL_ATOM_UTF8_EXT => {
                cur.atom_body(tag, at, visit)?;
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
            // Pids, ports and references: a node atom and fixed fields.
            PID_EXT => {
                cur.atom(visit)?;
                cur.skip(9)?;
            }
            NEW_PID_EXT => {
                cur.atom(visit)?;
                cur.skip(12)?;
            }
            PORT_EXT => {
                cur.atom(visit)?;
                cur.skip(5)?;
            }
            NEW_PORT_EXT => {
                cur.atom(visit)?;
                cur.skip(8)?;
            }
            V4_PORT_EXT => {
                cur.atom(visit)?;
                cur.skip(12)?;
            }
            REFERENCE_EXT => {
                cur.atom(visit)?;
                cur.skip(5)?;
            }
            NEW_REFERENCE_EXT | NEWER_REFERENCE_EXT => {
                let creation_len = if tag == NEW_REFERENCE_EXT { 1 } else { 4 };
                let ids = cur.u16()?;
                cur.atom(visit)?;
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
                // fun M:F/A: module and function atoms, the arity as a
                // SMALL_INTEGER_EXT.
                cur.atom(visit)?;
                cur.atom(visit)?;
                let arity_at = cur.pos;
                match cur.u8()? {
                    SMALL_INTEGER_EXT => cur.skip(1)?,
                    tag => return Err(EtfError::UnsupportedTag { tag, at: arity_at }),
                }
            }
            NEW_FUN_EXT => {
                // Size(4) Arity(1) Uniq(16) Index(4) NumFree(4) Module
                // OldIndex OldUniq Pid FreeVars...
                cur.skip(4 + 1 + 16 + 4)?;
                let free = cur.u32()?;
                cur.atom(visit)?;
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

    /// `elixir --name gen@127.0.0.1 otp_terms.exs` on OTP 25 (see that
    /// script): a map holding maps, a struct, a MapSet, a pid, a reference,
    /// a port, a closure, an external fun, floats, big integers (small and
    /// large), a bitstring, a charlist, nested and improper lists and a
    /// 300-element tuple.
    const OTP_TERM: &[u8] = include_bytes!("../tests/fixtures/otp_term.etf");
    /// The same term with `minor_version: 2` (every atom UTF-8).
    const OTP_TERM_V2: &[u8] = include_bytes!("../tests/fixtures/otp_term_v2.etf");

    fn ok(bytes: &[u8]) -> Result<(), EtfError> {
        check(bytes, 2, Limits::default())
    }

    fn atoms(bytes: &[u8]) -> Vec<String> {
        distinct_atoms(&[bytes]).expect("walks")
    }

    fn all_atoms(bytes: &[u8]) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        check(bytes, 1, Limits::default()).expect("checks");
        check_with(bytes, 1, Limits::default(), |atom| {
            out.push((atom.name()?.into_owned(), atom.latin1));
            Ok(())
        })
        .expect("walks");
        out
    }

    // Map keys and values appear in the map's internal order; the expected
    // lists below are that order, checked by hand against the term.
    const OTP_ATOMS: &[&str] = &[
        "atom_key",
        "plain",
        "ünïcödé_latin1",
        "日本",
        "true",
        "false",
        "nil",
        "bigs",
        "bits",
        "bytes",
        "charlist",
        "closure",
        "Elixir.Jido.EtfFixture",
        "gen@127.0.0.1",
        "export",
        "Elixir.Enum",
        "map",
        "keyword",
        "opt",
        "other",
        "ok",
        "done",
        "large_tuple",
        "mapset",
        "__struct__",
        "Elixir.MapSet",
        "m1",
        "m2",
        "version",
        "nested",
        "deep",
        "improper_tail",
        "pid",
        "port",
        "ref",
        "struct",
        "name",
        "tags",
        "a",
        "b",
    ];

    #[test]
    fn walks_everything_otp_encodes() {
        for bytes in [OTP_TERM, OTP_TERM_V2] {
            assert_eq!(check(bytes, 1, Limits::default()), Ok(()));
            assert_eq!(atoms(bytes), OTP_ATOMS);
        }
        // Default encoding: latin-1 atoms as ATOM_EXT, others as UTF-8.
        let default: Vec<_> = all_atoms(OTP_TERM);
        assert!(default.contains(&("ünïcödé_latin1".to_owned(), true)));
        assert!(default.contains(&("日本".to_owned(), false)));
        assert!(all_atoms(OTP_TERM_V2).iter().all(|(_, latin1)| !latin1));
        // Node names come from the pid, the port, the reference and the
        // closure's pid; module names from the struct, the closure and the
        // external fun.
        let node = default.iter().filter(|(a, _)| a == "gen@127.0.0.1");
        assert_eq!(node.count(), 4);
        let module = default
            .iter()
            .filter(|(a, _)| a == "Elixir.Jido.EtfFixture");
        assert_eq!(module.count(), 2);
    }

    #[test]
    fn accepts_two_terms_and_no_more() {
        let two = [OTP_TERM, OTP_TERM_V2].concat();
        assert_eq!(ok(&two), Ok(()));
        let three = [OTP_TERM, OTP_TERM, OTP_TERM].concat();
        assert!(matches!(ok(&three), Err(EtfError::Layout { expected: 2 })));
        // distinct_atoms takes one term per entry.
        assert!(matches!(
            distinct_atoms(&[two]),
            Err(EtfError::Layout { expected: 1 })
        ));
        // Atoms are distinct across entries and across encodings.
        assert_eq!(
            distinct_atoms(&[OTP_TERM, OTP_TERM_V2]),
            Ok(atoms(OTP_TERM))
        );
    }

    // Bytes produced by OTP 25's term_to_binary, written out by hand.
    #[test]
    fn atom_texts_are_distinct_and_borrowed() {
        // [:a, :b, :a] twice, then :c: term_to_binary output.
        let list = [
            131u8, 108, 0, 0, 0, 3, 119, 1, b'a', 119, 1, b'b', 119, 1, b'a', 106,
        ];
        let c = [131u8, 119, 1, b'c'];
        let terms: Vec<&[u8]> = vec![&list, &list, &c];
        let texts = distinct_atom_texts(&terms).unwrap();
        assert_eq!(
            texts,
            vec![(&b"a"[..], false), (&b"b"[..], false), (&b"c"[..], false)]
        );
        assert!(matches!(
            distinct_atom_texts(&[&[1u8][..]]),
            Err(EtfError::BadVersion { .. })
        ));
    }

    #[test]
    fn atom_texts_past_the_linear_scan_stay_distinct() {
        // A list of 100 atoms, each twice: a0..a49, a0..a49.
        let mut bytes = vec![131u8, 108, 0, 0, 0, 100];
        for _round in 0..2 {
            for i in 0..50 {
                let name = format!("a{i}");
                bytes.push(119);
                bytes.push(name.len() as u8);
                bytes.extend_from_slice(name.as_bytes());
            }
        }
        bytes.push(106);
        let terms = [&bytes];
        let texts = distinct_atom_texts(&terms).unwrap();
        assert_eq!(texts.len(), 50);
        assert_eq!(texts[49].0, b"a49");
        let strings = distinct_atoms(&[&bytes]).unwrap();
        assert_eq!(strings.len(), 50);
    }

    #[test]
    fn lists_atoms_of_small_terms() {
        // :hello
        assert_eq!(
            atoms(&[131, 119, 5, b'h', b'e', b'l', b'l', b'o']),
            vec!["hello"]
        );
        // {:a, 1, "x", [:b | :c]}
        let t = [
            131, 104, 4, 119, 1, b'a', 97, 1, 109, 0, 0, 0, 1, b'x', 108, 0, 0, 0, 1, 119, 1, b'b',
            119, 1, b'c',
        ];
        assert_eq!(atoms(&t), vec!["a", "b", "c"]);
        // %{k: :k}: repeats are listed once
        let m = [131, 116, 0, 0, 0, 1, 119, 1, b'k', 119, 1, b'k'];
        assert_eq!(atoms(&m), vec!["k"]);
        // latin-1 atom "é", as SMALL_ATOM_EXT and as ATOM_EXT, and the same
        // atom as UTF-8: one name.
        assert_eq!(atoms(&[131, 115, 1, 0xE9]), vec!["é"]);
        let three = [
            131, 108, 0, 0, 0, 2, 100, 0, 1, 0xE9, 119, 2, 0xC3, 0xA9, 106,
        ];
        assert_eq!(atoms(&three), vec!["é"]);
        // An invalid UTF-8 atom passes the check but cannot be listed.
        let bad = [131, 119, 1, 0xE9];
        assert_eq!(check(&bad, 1, Limits::default()), Ok(()));
        assert_eq!(distinct_atoms(&[bad]), Err(EtfError::BadAtom(1)));
    }

    #[test]
    fn lists_atoms_in_every_pid_port_reference_and_fun_form() {
        let node = |bytes: &mut Vec<u8>| bytes.extend_from_slice(&[119, 1, b'n']);
        let mut forms: Vec<Vec<u8>> = Vec::new();
        for (tag, fixed) in [
            (PID_EXT, 9),
            (NEW_PID_EXT, 12),
            (PORT_EXT, 5),
            (NEW_PORT_EXT, 8),
            (V4_PORT_EXT, 12),
            (REFERENCE_EXT, 5),
        ] {
            let mut b = vec![VERSION, tag];
            node(&mut b);
            b.extend(std::iter::repeat_n(0, fixed));
            forms.push(b);
        }
        for (tag, creation) in [(NEW_REFERENCE_EXT, 1), (NEWER_REFERENCE_EXT, 4)] {
            let mut b = vec![VERSION, tag, 0, 3];
            node(&mut b);
            b.extend(std::iter::repeat_n(0, creation + 3 * 4));
            forms.push(b);
        }
        for bytes in &forms {
            assert_eq!(atoms(bytes), vec!["n"], "{bytes:?}");
        }
        // fun m:f/2
        let export = [VERSION, EXPORT_EXT, 119, 1, b'm', 119, 1, b'f', 97, 2];
        assert_eq!(atoms(&export), vec!["m", "f"]);
        let bad_arity = [VERSION, EXPORT_EXT, 119, 1, b'm', 119, 1, b'f', 106];
        assert_eq!(
            ok(&bad_arity),
            Err(EtfError::UnsupportedTag { tag: 106, at: 8 })
        );
        // A closure in module m with one free variable :v.
        let mut fun = vec![VERSION, NEW_FUN_EXT];
        fun.extend([0; 4 + 1 + 16 + 4]);
        fun.extend([0, 0, 0, 1, 119, 1, b'm', 97, 0, 97, 0, NEW_PID_EXT]);
        node(&mut fun);
        fun.extend([0; 12]);
        fun.extend([119, 1, b'v']);
        assert_eq!(atoms(&fun), vec!["m", "n", "v"]);
        // A large tuple and a large big integer.
        let mut large = vec![VERSION, LARGE_TUPLE_EXT, 0, 0, 1, 0];
        large.extend(std::iter::repeat_n([119, 1, b't'], 256).flatten());
        assert_eq!(atoms(&large), vec!["t"]);
        let mut big = vec![VERSION, LARGE_BIG_EXT, 0, 0, 1, 0, 0];
        big.extend([0xff; 256]);
        assert_eq!(ok(&big), Ok(()));
    }

    #[test]
    fn rejects_empty_extra_and_missing_version() {
        assert!(matches!(ok(&[]), Err(EtfError::Layout { .. })));
        let three = [OTP_TERM, OTP_TERM, OTP_TERM].concat();
        assert!(matches!(ok(&three), Err(EtfError::Layout { .. })));
        assert!(matches!(
            ok(&OTP_TERM[1..]),
            Err(EtfError::BadVersion { .. })
        ));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        for bytes in [OTP_TERM, OTP_TERM_V2] {
            for len in 1..bytes.len() {
                assert!(ok(&bytes[..len]).is_err(), "prefix {len} accepted");
                assert!(distinct_atoms(&[&bytes[..len]]).is_err());
            }
        }
    }

    #[test]
    fn every_byte_flip_is_handled() {
        // No panic, whatever the result. (That eetf then decodes accepted
        // bytes without panicking is tested in jido_relay's connection.)
        for i in 0..OTP_TERM.len() {
            for delta in [1u8, 0x80, 0xff] {
                let mut bytes = OTP_TERM.to_vec();
                bytes[i] = bytes[i].wrapping_add(delta);
                let _ = ok(&bytes);
                let _ = distinct_atoms(&[&bytes]);
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
        let fun_vars = [&[VERSION, NEW_FUN_EXT][..], &[0; 25], &[0xff; 4], &[119, 0]].concat();
        assert!(matches!(ok(&fun_vars), Err(EtfError::BadLength { .. })));
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
        // Listing atoms has no depth limit, and does not recurse either.
        assert_eq!(distinct_atoms(&[&bytes]), Ok(vec![]));
    }

    #[test]
    fn term_count_is_bounded() {
        // A list of 100 empty lists.
        let mut bytes = vec![VERSION, LIST_EXT, 0, 0, 0, 100];
        bytes.extend(std::iter::repeat_n(NIL_EXT, 101));
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

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        let one = |bytes: &[u8]| distinct_atoms(&[bytes]);
        assert_eq!(one(&[]), Err(EtfError::Layout { expected: 1 }));
        assert_eq!(one(&[1, 2]), Err(EtfError::BadVersion { byte: 1, at: 0 }));
        assert!(matches!(
            one(&[131, 108, 255, 255, 255, 255]),
            Err(EtfError::BadLength { .. })
        ));
        assert_eq!(
            one(&[131, 200]),
            Err(EtfError::UnsupportedTag { tag: 200, at: 1 })
        );
        let mut rng = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let len = (rng % 40) as usize;
            let mut bytes = vec![131u8];
            let mut r = rng;
            for _ in 0..len {
                r = r.rotate_left(9) ^ 0x9E37_79B9;
                bytes.push(r as u8);
            }
            let _ = one(&bytes);
            let _ = check(&bytes, 2, Limits::default());
            let _ = distinct_atom_texts(&[&bytes]);
        }
    }
}
