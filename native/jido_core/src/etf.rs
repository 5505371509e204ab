//! A minimal walker over Erlang's external term format that lists the atoms
//! a term contains.
//!
//! Receivers decode frame entries with `binary_to_term(_, [:safe])`, which
//! refuses atoms that do not exist on the receiving node yet. Plain
//! distribution creates such atoms; to deliver the same signals, a Link
//! sends the names of the atoms in each frame alongside it, in the
//! distribution message itself, so the receiving node's distribution layer
//! creates them (exactly as it would for a plain `send/2`) before the frame
//! is decoded.

use thiserror::Error;

/// Why a term could not be walked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EtfError {
    #[error("external term is truncated")]
    Truncated,
    #[error("not external term format (no version byte)")]
    BadVersion,
    #[error("unsupported external term tag {0}")]
    UnsupportedTag(u8),
    #[error("external term claims more elements than can exist")]
    TooDeep,
}

/// Calls `found` with the text of each atom in `term` (external term format,
/// with its version byte), in order of appearance, repeats included. Atom
/// texts are UTF-8 except for the latin-1 tags, which are passed with
/// `latin1 = true`.
pub fn each_atom<'a>(
    term: &'a [u8],
    found: &mut dyn FnMut(&'a [u8], bool),
) -> Result<(), EtfError> {
    match term.first() {
        Some(131) => {}
        Some(_) => return Err(EtfError::BadVersion),
        None => return Err(EtfError::Truncated),
    }
    let mut walker = Walker {
        bytes: term,
        at: 1,
        found,
    };
    // Iterative over a count of pending terms, so deep lists cannot blow
    // the stack; nesting only grows the counter.
    let mut pending: usize = 1;
    while pending > 0 {
        pending -= 1;
        let more = walker.term()?;
        // A claimed count beyond the bytes left fails at the next read.
        pending = pending.checked_add(more).ok_or(EtfError::TooDeep)?;
    }
    Ok(())
}

/// The distinct atom texts of all `terms`, in order of first appearance,
/// as UTF-8 (latin-1 atoms converted).
pub fn distinct_atoms<T: AsRef<[u8]>>(terms: &[T]) -> Result<Vec<String>, EtfError> {
    let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for term in terms {
        let mut fail = None;
        each_atom(term.as_ref(), &mut |text, latin1| {
            if fail.is_some() || seen.contains(text) {
                return;
            }
            let name = if latin1 {
                Some(text.iter().map(|&b| b as char).collect::<String>())
            } else {
                std::str::from_utf8(text).ok().map(str::to_owned)
            };
            match name {
                Some(name) => {
                    seen.insert(text.to_vec());
                    out.push(name);
                }
                None => fail = Some(EtfError::UnsupportedTag(118)),
            }
        })?;
        if let Some(err) = fail {
            return Err(err);
        }
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
    let mut seen: std::collections::HashSet<&'a [u8]> = std::collections::HashSet::new();
    for term in terms {
        each_atom(term.as_ref(), &mut |text, latin1| {
            let known = if out.len() < 32 {
                out.iter().any(|&(t, _)| t == text)
            } else {
                if seen.is_empty() {
                    seen.extend(out.iter().map(|&(t, _)| t));
                }
                !seen.insert(text)
            };
            if !known {
                out.push((text, latin1));
            }
        })?;
    }
    Ok(out)
}

struct Walker<'a, 'f> {
    bytes: &'a [u8],
    at: usize,
    found: &'f mut dyn FnMut(&'a [u8], bool),
}

impl<'a> Walker<'a, '_> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EtfError> {
        let end = self.at.checked_add(n).ok_or(EtfError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(EtfError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<usize, EtfError> {
        Ok(self.take(1)?[0] as usize)
    }

    fn u16(&mut self) -> Result<usize, EtfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]) as usize)
    }

    fn u32(&mut self) -> Result<usize, EtfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    fn atom_text(&mut self, len: usize, latin1: bool) -> Result<(), EtfError> {
        let text = self.take(len)?;
        (self.found)(text, latin1);
        Ok(())
    }

    /// Reads one atom term (node names in pids, module names in funs).
    fn atom(&mut self) -> Result<(), EtfError> {
        match self.u8()? as u8 {
            100 => {
                let n = self.u16()?;
                self.atom_text(n, true)
            }
            115 => {
                let n = self.u8()?;
                self.atom_text(n, true)
            }
            118 => {
                let n = self.u16()?;
                self.atom_text(n, false)
            }
            119 => {
                let n = self.u8()?;
                self.atom_text(n, false)
            }
            tag => Err(EtfError::UnsupportedTag(tag)),
        }
    }

    /// Reads one term's own bytes; returns how many sub-terms follow it.
    fn term(&mut self) -> Result<usize, EtfError> {
        let tag = self.u8()? as u8;
        match tag {
            97 => self.take(1).map(|_| 0),
            98 => self.take(4).map(|_| 0),
            70 => self.take(8).map(|_| 0),
            99 => self.take(31).map(|_| 0),
            100 | 115 | 118 | 119 => {
                self.at -= 1;
                self.atom().map(|_| 0)
            }
            104 => self.u8(),
            105 => self.u32(),
            106 => Ok(0),
            107 => {
                let n = self.u16()?;
                self.take(n).map(|_| 0)
            }
            // A list: its elements and its tail.
            108 => Ok(self.u32()? + 1),
            109 => {
                let n = self.u32()?;
                self.take(n).map(|_| 0)
            }
            77 => {
                let n = self.u32()?;
                self.take(1 + n).map(|_| 0)
            }
            110 => {
                let n = self.u8()?;
                self.take(1 + n).map(|_| 0)
            }
            111 => {
                let n = self.u32()?;
                self.take(1 + n).map(|_| 0)
            }
            116 => Ok(self.u32()?.checked_mul(2).ok_or(EtfError::TooDeep)?),
            // Pids, ports and references: a node atom and fixed fields.
            88 => self.atom().and_then(|_| self.take(12)).map(|_| 0),
            103 => self.atom().and_then(|_| self.take(9)).map(|_| 0),
            89 => self.atom().and_then(|_| self.take(8)).map(|_| 0),
            120 => self.atom().and_then(|_| self.take(12)).map(|_| 0),
            102 => self.atom().and_then(|_| self.take(5)).map(|_| 0),
            101 => self.atom().and_then(|_| self.take(5)).map(|_| 0),
            114 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(1 + 4 * n).map(|_| 0)
            }
            90 => {
                let n = self.u16()?;
                self.atom()?;
                self.take(4 + 4 * n).map(|_| 0)
            }
            // fun M:F/A: two atoms and a small integer term.
            113 => {
                self.atom()?;
                self.atom()?;
                Ok(1)
            }
            // A closure: fixed header, module atom, then old index, old
            // uniq, pid and the free variables as terms.
            112 => {
                self.take(4 + 1 + 16 + 4)?;
                let free = self.u32()?;
                self.atom()?;
                Ok(3 + free)
            }
            other => Err(EtfError::UnsupportedTag(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atoms(bytes: &[u8]) -> Vec<String> {
        distinct_atoms(&[bytes]).unwrap()
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
        assert_eq!(
            distinct_atom_texts(&[&[1u8][..]]),
            Err(EtfError::BadVersion)
        );
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
        // latin-1 atom "é"
        assert_eq!(atoms(&[131, 115, 1, 0xE9]), vec!["é"]);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert_eq!(distinct_atoms(&[&[] as &[u8]]), Err(EtfError::Truncated));
        assert_eq!(distinct_atoms(&[&[1u8, 2][..]]), Err(EtfError::BadVersion));
        assert_eq!(
            distinct_atoms(&[&[131u8, 108, 255, 255, 255, 255][..]]),
            Err(EtfError::Truncated)
        );
        assert_eq!(
            distinct_atoms(&[&[131u8, 200][..]]),
            Err(EtfError::UnsupportedTag(200))
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
            let _ = distinct_atoms(&[&bytes]);
            let _ = distinct_atom_texts(&[&bytes]);
        }
    }
}
