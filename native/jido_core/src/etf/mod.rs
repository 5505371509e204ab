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

#[cfg(test)]
mod tests;
mod walk;

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use walk::{walk_term, Cursor};

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

/// The version byte every top-level term starts with.
pub(crate) const VERSION: u8 = 131;

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
