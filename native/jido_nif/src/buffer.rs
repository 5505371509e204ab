//! Link buffer NIFs: a `jido_core::shared_buffer::SharedBuffer` in a
//! resource, so it outlives the process that uses it.

use crate::atoms::{self, Reason};
use crate::binary;
use crate::schedule::twin_nif;
use jido_core::buffer::{Limits, Overflow};
use jido_core::frame::Compression;
use jido_core::shared_buffer::SharedBuffer;
use rustler::{Atom, Binary, Encoder, Env, NifMap, ResourceArc, Term};

/// A frame's atoms: those found on this node, and names to convert in Elixir.
type AtomLists<'a> = (Vec<Atom>, Vec<Term<'a>>);

/// The resource held by Elixir.
pub struct BufferResource(SharedBuffer);

#[rustler::resource_impl]
impl rustler::Resource for BufferResource {}

#[rustler::nif]
fn buffer_new(max_entries: usize, max_bytes: usize, overflow: Atom) -> ResourceArc<BufferResource> {
    let overflow = if overflow == atoms::drop_oldest() {
        Overflow::DropOldest
    } else {
        Overflow::Reject
    };
    ResourceArc::new(BufferResource(SharedBuffer::new(Limits {
        max_entries,
        max_bytes,
        overflow,
    })))
}

#[rustler::nif]
fn buffer_push_one(
    buf: ResourceArc<BufferResource>,
    entry: Binary,
) -> Result<(usize, u64), Reason> {
    Ok(buf.0.lock().push_many(&[entry.as_slice()])?)
}

#[rustler::nif]
fn buffer_push(
    buf: ResourceArc<BufferResource>,
    entries: Vec<Binary>,
) -> Result<(usize, u64), Reason> {
    let slices: Vec<&[u8]> = entries.iter().map(|b| b.as_slice()).collect();
    Ok(buf.0.lock().push_many(&slices)?)
}

fn take<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Term<'a>, Reason> {
    let Some((taken, base)) = buf.0.take(max_entries, max_bytes, Compression::Auto)? else {
        return Ok(atoms::empty().to_term(env));
    };
    let frame = binary::copy(env, &taken.frame);
    let texts = taken.atoms.iter().map(|name| (name.as_bytes(), false));
    let atoms = atoms::lookup_existing(env, texts);
    Ok((
        taken.seq,
        base,
        frame,
        atoms,
        taken.entries,
        taken.raw_bytes,
    )
        .encode(env))
}

twin_nif! {
    fn buffer_take / buffer_take_dirty<'a>(buf: ResourceArc<BufferResource>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Result<Term<'a>, Reason> = take;
    work = buf.0.take_work(max_bytes);
}

#[rustler::nif]
fn buffer_ack(buf: ResourceArc<BufferResource>, upto: u64) -> (usize, u64) {
    let mut guard = buf.0.lock();
    let released = guard.ack(upto);
    (released, guard.base())
}

#[rustler::nif(schedule = "DirtyCpu")]
fn buffer_unacked<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
) -> Result<Vec<(u64, Binary<'a>, AtomLists<'a>)>, Reason> {
    let guard = buf.0.lock();
    Ok(guard
        .unacked()
        .map(|(seq, frame, names)| {
            let texts = names.iter().map(|name| (name.as_bytes(), false));
            (
                seq,
                binary::copy(env, frame),
                atoms::lookup_existing(env, texts),
            )
        })
        .collect())
}

/// Counters of one buffer, returned to Elixir as a map.
#[derive(NifMap)]
pub struct BufferStats {
    pending_entries: usize,
    pending_bytes: usize,
    unacked_frames: usize,
    unacked_entries: usize,
    unacked_bytes: usize,
    next_seq: u64,
    acked_seq: u64,
    base_seq: u64,
    dropped_entries: u64,
    pushed_entries: u64,
}

#[rustler::nif]
fn buffer_stats(buf: ResourceArc<BufferResource>) -> BufferStats {
    let guard = buf.0.lock();
    let s = guard.stats();
    BufferStats {
        pending_entries: s.pending_entries,
        pending_bytes: s.pending_bytes,
        unacked_frames: s.unacked_frames,
        unacked_entries: s.unacked_entries,
        unacked_bytes: s.unacked_bytes,
        next_seq: s.next_seq,
        acked_seq: s.acked_seq,
        base_seq: guard.base(),
        dropped_entries: s.dropped_entries,
        pushed_entries: s.pushed_entries,
    }
}
