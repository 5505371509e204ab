//! Frame encode/decode NIFs. Each comes in a normal and a dirty-CPU variant;
//! the Elixir side picks by size.

use crate::{atoms, binary};
use jido_core::etf;
use jido_core::frame::{self, Compression, DecodeLimits};
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

/// The frame of `entries` (each in external term format), as a binary.
fn frame_binary<'a>(env: Env<'a>, entries: &[&[u8]], mode: Atom) -> Result<Binary<'a>, Atom> {
    let bytes = frame::encode(entries, compression(mode)).map_err(atoms::frame_error)?;
    Ok(binary::copy(env, &bytes))
}

fn encode<'a>(env: Env<'a>, terms: ListIterator<'a>, mode: Atom) -> Result<Binary<'a>, Atom> {
    let encoded: Vec<_> = terms.map(Term::to_binary).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
    frame_binary(env, &slices, mode)
}

fn encode_binaries<'a>(
    env: Env<'a>,
    entries: ListIterator<'a>,
    mode: Atom,
) -> Result<Binary<'a>, Atom> {
    let binaries: Vec<Binary> = entries
        .map(|t| t.decode::<Binary>())
        .collect::<Result<_, _>>()
        .map_err(|_| atoms::bad_term())?;
    let slices: Vec<&[u8]> = binaries.iter().map(|b| b.as_slice()).collect();
    frame_binary(env, &slices, mode)
}

fn decode<'a>(env: Env<'a>, bin: Binary<'a>, max_decoded: usize) -> Result<Vec<Term<'a>>, Atom> {
    let decoded =
        frame::decode(bin.as_slice(), DecodeLimits { max_decoded }).map_err(atoms::frame_error)?;
    let mut terms = Vec::with_capacity(decoded.len());
    for entry in decoded.entries() {
        match env.binary_to_term(entry) {
            Some((term, used)) if used == entry.len() => terms.push(term),
            _ => return Err(atoms::bad_term()),
        }
    }
    Ok(terms)
}

fn header_info(bin: Binary) -> Result<(u32, u32, u32, bool), Atom> {
    let h = frame::parse_header(bin.as_slice()).map_err(atoms::frame_error)?;
    Ok((
        h.count,
        h.raw_len,
        h.payload_len,
        h.flags & frame::FLAG_LZ4 != 0,
    ))
}

#[rustler::nif]
fn frame_encode<'a>(env: Env<'a>, terms: ListIterator<'a>, mode: Atom) -> Result<Binary<'a>, Atom> {
    encode(env, terms, mode)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn frame_encode_dirty<'a>(
    env: Env<'a>,
    terms: ListIterator<'a>,
    mode: Atom,
) -> Result<Binary<'a>, Atom> {
    encode(env, terms, mode)
}

#[rustler::nif]
fn frame_encode_binaries<'a>(
    env: Env<'a>,
    entries: ListIterator<'a>,
    mode: Atom,
) -> Result<Binary<'a>, Atom> {
    encode_binaries(env, entries, mode)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn frame_encode_binaries_dirty<'a>(
    env: Env<'a>,
    entries: ListIterator<'a>,
    mode: Atom,
) -> Result<Binary<'a>, Atom> {
    encode_binaries(env, entries, mode)
}

#[rustler::nif]
fn frame_decode<'a>(
    env: Env<'a>,
    bin: Binary<'a>,
    max_decoded: usize,
) -> Result<Vec<Term<'a>>, Atom> {
    decode(env, bin, max_decoded)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn frame_decode_dirty<'a>(
    env: Env<'a>,
    bin: Binary<'a>,
    max_decoded: usize,
) -> Result<Vec<Term<'a>>, Atom> {
    decode(env, bin, max_decoded)
}

#[rustler::nif]
fn frame_header(bin: Binary) -> Result<(u32, u32, u32, bool), Atom> {
    header_info(bin)
}

/// Encodes `terms` into a frame and lists the distinct atoms they contain.
/// A single term holding only maps, lists, tuples and scalars (the usual
/// signal) is walked as a term; anything else, and several terms, by the
/// entries' ETF before compression, each distinct atom then looked up by
/// name once (never created: the terms are this node's, so their atoms
/// exist here). Returns
/// `{frame, atoms, names}`: `names` holds, as binaries, the names this NIF
/// version cannot look up (UTF-8 beyond Latin-1), for the caller to convert.
fn encode_atoms<'a>(env: Env<'a>, terms: ListIterator<'a>, mode: Atom) -> Result<Term<'a>, Atom> {
    let terms_copy: Vec<Term<'a>> = terms.collect();
    let encoded: Vec<_> = terms_copy.iter().map(|t| t.to_binary()).collect();
    let slices: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
    let frame = frame_binary(env, &slices, mode)?;
    // A lone signal's atoms are at hand in the term, no lookup by name
    // needed.
    let mut found: Vec<Atom> = Vec::new();
    if terms_copy.len() <= TERM_WALK_TERMS
        && terms_copy
            .into_iter()
            .all(|term| collect_atoms(term, &mut found, TERM_WALK_DEPTH))
    {
        return Ok((frame, found, Vec::<Term>::new()).encode(env));
    }
    let texts = etf::distinct_atom_texts(&slices).map_err(|_| atoms::bad_term())?;
    let (found, names) = atoms::lookup_existing(env, texts.iter().copied());
    Ok((frame, found, names).encode(env))
}

/// How deep `collect_atoms` walks, and how many distinct atoms it
/// collects, before leaving the terms to the ETF walk.
const TERM_WALK_DEPTH: usize = 64;
const TERM_WALK_ATOMS: usize = 64;
/// Above this many terms, the ETF walk is faster: each distinct atom is
/// looked up once for all of them, while the term walk iterates every map
/// through the NIF API.
const TERM_WALK_TERMS: usize = 1;

/// Adds the distinct atoms of `term` to `found` by walking the term itself.
/// False (with `found` partly filled) for what it does not walk: pids,
/// ports, references and funs (whose atoms are inside them), and nesting
/// deeper than `depth` or more atoms than `TERM_WALK_ATOMS`.
fn collect_atoms(term: Term, found: &mut Vec<Atom>, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    match term.get_type() {
        TermType::Atom => {
            if let Ok(atom) = Atom::from_term(term) {
                if !found.contains(&atom) {
                    found.push(atom);
                }
            }
            // Past a few dozen distinct atoms the linear search loses to
            // the ETF walk's hashing.
            found.len() <= TERM_WALK_ATOMS
        }
        TermType::Binary | TermType::Integer | TermType::Float => true,
        TermType::Map => match MapIterator::new(term) {
            Some(entries) => {
                let mut complete = true;
                for (key, value) in entries {
                    complete = complete
                        && collect_atoms(key, found, depth - 1)
                        && collect_atoms(value, found, depth - 1);
                    if !complete {
                        break;
                    }
                }
                complete
            }
            None => false,
        },
        TermType::List => {
            // Cell by cell, so an improper tail is walked too; long lists
            // do not deepen the recursion.
            let mut rest = term;
            while let Ok((head, tail)) = rest.list_get_cell() {
                if !collect_atoms(head, found, depth - 1) {
                    return false;
                }
                rest = tail;
            }
            rest.is_empty_list() || collect_atoms(rest, found, depth - 1)
        }
        TermType::Tuple => match get_tuple(term) {
            Ok(elements) => elements
                .into_iter()
                .all(|element| collect_atoms(element, found, depth - 1)),
            Err(_) => false,
        },
        _ => false,
    }
}

#[rustler::nif]
fn frame_encode_atoms<'a>(
    env: Env<'a>,
    terms: ListIterator<'a>,
    mode: Atom,
) -> Result<Term<'a>, Atom> {
    encode_atoms(env, terms, mode)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn frame_encode_atoms_dirty<'a>(
    env: Env<'a>,
    terms: ListIterator<'a>,
    mode: Atom,
) -> Result<Term<'a>, Atom> {
    encode_atoms(env, terms, mode)
}

/// The distinct atom names in a frame's entries, in order of first
/// appearance. Names, not atoms: the frame may come from elsewhere, and
/// creating atoms from untrusted bytes could fill the atom table.
fn atom_names(bin: Binary, max_decoded: usize) -> Result<Vec<String>, Atom> {
    let decoded =
        frame::decode(bin.as_slice(), DecodeLimits { max_decoded }).map_err(atoms::frame_error)?;
    let entries: Vec<&[u8]> = decoded.entries().collect();
    etf::distinct_atoms(&entries).map_err(|_| atoms::bad_term())
}

#[rustler::nif]
fn frame_atoms(bin: Binary, max_decoded: usize) -> Result<Vec<String>, Atom> {
    atom_names(bin, max_decoded)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn frame_atoms_dirty(bin: Binary, max_decoded: usize) -> Result<Vec<String>, Atom> {
    atom_names(bin, max_decoded)
}
