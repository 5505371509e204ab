//! The walk itself: a bounds-checked cursor over ETF bytes and a
//! non-recursive walk of one term.

use super::{Atom, EtfError, Limits};

pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
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

    pub(super) fn u8(&mut self) -> Result<u8, EtfError> {
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

pub(super) const NEW_FLOAT_EXT: u8 = 70;
pub(super) const BIT_BINARY_EXT: u8 = 77;
pub(super) const NEW_PID_EXT: u8 = 88;
pub(super) const NEW_PORT_EXT: u8 = 89;
pub(super) const NEWER_REFERENCE_EXT: u8 = 90;
pub(super) const SMALL_INTEGER_EXT: u8 = 97;
pub(super) const INTEGER_EXT: u8 = 98;
pub(super) const FLOAT_EXT: u8 = 99;
pub(super) const ATOM_EXT: u8 = 100;
pub(super) const REFERENCE_EXT: u8 = 101;
pub(super) const PORT_EXT: u8 = 102;
pub(super) const PID_EXT: u8 = 103;
pub(super) const SMALL_TUPLE_EXT: u8 = 104;
pub(super) const LARGE_TUPLE_EXT: u8 = 105;
pub(super) const NIL_EXT: u8 = 106;
pub(super) const STRING_EXT: u8 = 107;
pub(super) const LIST_EXT: u8 = 108;
pub(super) const BINARY_EXT: u8 = 109;
pub(super) const SMALL_BIG_EXT: u8 = 110;
pub(super) const LARGE_BIG_EXT: u8 = 111;
pub(super) const NEW_FUN_EXT: u8 = 112;
pub(super) const EXPORT_EXT: u8 = 113;
pub(super) const NEW_REFERENCE_EXT: u8 = 114;
pub(super) const SMALL_ATOM_EXT: u8 = 115;
pub(super) const MAP_EXT: u8 = 116;
pub(super) const ATOM_UTF8_EXT: u8 = 118;
pub(super) const SMALL_ATOM_UTF8_EXT: u8 = 119;
pub(super) const V4_PORT_EXT: u8 = 120;

// Walks one term. `pending` holds, per open container, how many of its
// terms are still to be read; its length is the nesting depth. A container
// is opened only after its count has been checked against the bytes left,
// so `pending` never holds more entries than there are input bytes.
pub(super) fn walk_term<'a, F>(
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
