//! Frame encode/decode NIFs. Each long one has a normal and a dirty-CPU
//! twin (see [`crate::schedule`]).

use crate::atoms::{self, InputError, Reason};
use crate::binary;
use crate::schedule::{list_len, twin_nif};
use jido_core::atom_walk::{self, Kind, Walkable};
use jido_core::etf;
use jido_core::frame::{self, Compression, DecodeLimits};
use jido_core::schedule::Work;
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, ListIterator, MapIterator, Term, TermType};

fn compression(mode: Atom) -> Compression {
    if mode == atoms::none() {
        Compression::None
    } else if mode == atoms::lz4() {
        Compression::Lz4
    } else {
        Compression::Auto
    }
}

fn list(term: Term) -> Result<ListIterator, Reason> {
    term.into_list_iterator()
        .map_err(|_| InputError::BadTerm.into())
}

/// The frame of `entries` (each in external term format), as a binary.
fn frame_binary<'a>(env: Env<'a>, entries: &[&[u8]], mode: Atom) -> Result<Binary<'a>, Reason> {
    let bytes = frame::encode(entries, compression(mode))?;
    Ok(binary::copy(env, &bytes))
}

fn encode<'a>(env: Env<'a>, terms: Term<'a>, mode: Atom) -> Result<Binary<'a>, Reason> {
    let encoded: Vec<_> = list(terms)?.map(Term::to_binary).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
    frame_binary(env, &slices, mode)
}

fn encode_binaries<'a>(env: Env<'a>, entries: Term<'a>, mode: Atom) -> Result<Binary<'a>, Reason> {
    let binaries: Vec<Binary> = list(entries)?
        .map(|t| t.decode::<Binary>())
        .collect::<Result<_, _>>()
        .map_err(|_| InputError::BadTerm)?;
    let slices: Vec<&[u8]> = binaries.iter().map(|b| b.as_slice()).collect();
    frame_binary(env, &slices, mode)
}

fn decode<'a>(env: Env<'a>, bin: Binary<'a>, max_decoded: usize) -> Result<Vec<Term<'a>>, Reason> {
    let decoded = frame::decode(bin.as_slice(), DecodeLimits { max_decoded })?;
    let mut terms = Vec::with_capacity(decoded.len());
    for entry in decoded.entries() {
        match env.binary_to_term(entry) {
            Some((term, used)) if used == entry.len() => terms.push(term),
            _ => return Err(InputError::BadTerm.into()),
        }
    }
    Ok(terms)
}

twin_nif! {
    fn frame_encode / frame_encode_dirty<'a>(terms: Term<'a>, mode: Atom)
        -> Result<Binary<'a>, Reason> = encode;
    work = Work::Encode { entries: list_len(terms) };
}

twin_nif! {
    fn frame_encode_binaries / frame_encode_binaries_dirty<'a>(entries: Term<'a>, mode: Atom)
        -> Result<Binary<'a>, Reason> = encode_binaries;
    work = Work::Encode { entries: list_len(entries) };
}

twin_nif! {
    fn frame_decode / frame_decode_dirty<'a>(bin: Binary<'a>, max_decoded: usize)
        -> Result<Vec<Term<'a>>, Reason> = decode;
    work = Work::Decode { bytes: bin.len() };
}

#[rustler::nif]
fn frame_header(bin: Binary) -> Result<(u32, u32, u32, bool), Reason> {
    let h = frame::parse_header(bin.as_slice())?;
    Ok((
        h.count,
        h.raw_len,
        h.payload_len,
        h.flags & frame::FLAG_LZ4 != 0,
    ))
}

/// Encodes `terms` into a frame and lists the distinct atoms they contain:
/// walking a lone signal as a term when `jido_core::atom_walk` says so,
/// else the entries' ETF before compression, each distinct atom then
/// looked up by name once (never created: the terms are this node's, so
/// their atoms exist here). Returns `{frame, atoms, names}`: `names` holds,
/// as binaries, the names this NIF version cannot look up (UTF-8 beyond
/// Latin-1), for the caller to convert.
fn encode_atoms<'a>(env: Env<'a>, terms: Term<'a>, mode: Atom) -> Result<Term<'a>, Reason> {
    let terms: Vec<Walk<'a>> = list(terms)?.map(Walk).collect();
    let encoded: Vec<_> = terms.iter().map(|t| t.0.to_binary()).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
    let frame = frame_binary(env, &slices, mode)?;
    if let Some(found) = atom_walk::distinct_atoms(&terms) {
        return Ok((frame, found, Vec::<Term>::new()).encode(env));
    }
    let texts = etf::distinct_atom_texts(&slices).map_err(|_| InputError::BadTerm)?;
    let (found, names) = atoms::lookup_existing(env, texts.iter().copied());
    Ok((frame, found, names).encode(env))
}

/// An Erlang term as `jido_core::atom_walk` sees it.
#[derive(Clone, Copy)]
struct Walk<'a>(Term<'a>);

impl<'a> Walkable for Walk<'a> {
    type Atom = Atom;

    fn kind(self) -> Kind<Atom> {
        match self.0.get_type() {
            TermType::Atom => match Atom::from_term(self.0) {
                Ok(atom) => Kind::Atom(atom),
                Err(_) => Kind::Opaque,
            },
            TermType::Binary | TermType::Integer | TermType::Float => Kind::Scalar,
            TermType::Map | TermType::List | TermType::Tuple => Kind::Compound,
            _ => Kind::Opaque,
        }
    }

    fn each_child(self, mut visit: impl FnMut(Self) -> bool) -> bool {
        let term = self.0;
        match term.get_type() {
            TermType::Map => match MapIterator::new(term) {
                Some(mut entries) => entries.all(|(k, v)| visit(Walk(k)) && visit(Walk(v))),
                None => false,
            },
            TermType::List => {
                // Cell by cell, so an improper tail is walked too; long
                // lists do not deepen the recursion.
                let mut rest = term;
                while let Ok((head, tail)) = rest.list_get_cell() {
                    if !visit(Walk(head)) {
                        return false;
                    }
                    rest = tail;
                }
                rest.is_empty_list() || visit(Walk(rest))
            }
            TermType::Tuple => match get_tuple(term) {
                Ok(elements) => elements.into_iter().all(|e| visit(Walk(e))),
                Err(_) => false,
            },
            _ => true,
        }
    }
}

twin_nif! {
    fn frame_encode_atoms / frame_encode_atoms_dirty<'a>(terms: Term<'a>, mode: Atom)
        -> Result<Term<'a>, Reason> = encode_atoms;
    work = Work::Encode { entries: list_len(terms) };
}

/// The distinct atom names in a frame's entries, in order of first
/// appearance. Names, not atoms: the frame may come from elsewhere, and
/// creating atoms from untrusted bytes could fill the atom table.
fn atom_names<'a>(
    _env: Env<'a>,
    bin: Binary<'a>,
    max_decoded: usize,
) -> Result<Vec<String>, Reason> {
    let decoded = frame::decode(bin.as_slice(), DecodeLimits { max_decoded })?;
    let entries: Vec<&[u8]> = decoded.entries().collect();
    etf::distinct_atoms(&entries).map_err(|_| InputError::BadTerm.into())
}

twin_nif! {
    fn frame_atoms / frame_atoms_dirty<'a>(bin: Binary<'a>, max_decoded: usize)
        -> Result<Vec<String>, Reason> = atom_names;
    work = Work::Decode { bytes: bin.len() };
}
