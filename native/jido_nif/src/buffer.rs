//! Link buffer NIFs: a `jido_core::buffer::LinkBuffer` behind a mutex in a
//! resource, so it outlives the process that uses it.

use std::sync::Mutex;

use crate::{atoms, binary};
use jido_core::buffer::{encode_batch, Limits, LinkBuffer, Overflow, PushError};
use jido_core::frame::Compression;
use rustler::{Atom, Binary, Encoder, Env, NifMap, ResourceArc, Term};

/// A frame's atoms: those found on this node, and names to convert in Elixir.
type AtomLists<'a> = (Vec<Atom>, Vec<Term<'a>>);

/// The resource held by Elixir.
pub struct BufferResource(Mutex<LinkBuffer>);

#[rustler::resource_impl]
impl rustler::Resource for BufferResource {}

fn lock(buf: &BufferResource) -> std::sync::MutexGuard<'_, LinkBuffer> {
    // A poisoned lock means a panic happened mid-update; every operation
    // leaves the buffer consistent before it can panic, so go on.
    buf.0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn push_error(err: PushError) -> Atom {
    match err {
        PushError::Full => atoms::buffer_full(),
        PushError::TooLarge => atoms::too_large(),
    }
}

#[rustler::nif]
fn buffer_new(max_entries: usize, max_bytes: usize, overflow: Atom) -> ResourceArc<BufferResource> {
    let overflow = if overflow == atoms::drop_oldest() {
        Overflow::DropOldest
    } else {
        Overflow::Reject
    };
    ResourceArc::new(BufferResource(Mutex::new(LinkBuffer::new(Limits {
        max_entries,
        max_bytes,
        overflow,
    }))))
}

#[rustler::nif]
fn buffer_push_one(buf: ResourceArc<BufferResource>, entry: Binary) -> Result<(usize, u64), Atom> {
    lock(&buf)
        .push_many(&[entry.as_slice()])
        .map_err(push_error)
}

#[rustler::nif]
fn buffer_push(
    buf: ResourceArc<BufferResource>,
    entries: Vec<Binary>,
) -> Result<(usize, u64), Atom> {
    let slices: Vec<&[u8]> = entries.iter().map(|b| b.as_slice()).collect();
    lock(&buf).push_many(&slices).map_err(push_error)
}

fn take<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Term<'a>, Atom> {
    let Some(batch) = lock(&buf).begin_take(max_entries, max_bytes) else {
        return Ok(atoms::empty().to_term(env));
    };
    // Encode without holding the lock: callers keep pushing meanwhile.
    match encode_batch(&batch, Compression::Auto) {
        Ok((frame, atom_names)) => {
            let mut guard = lock(&buf);
            let taken = guard.finish_take(batch, frame, atom_names);
            let base = guard.base();
            drop(guard);
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
        Err(err) => {
            lock(&buf).abort_take(batch);
            Err(atoms::frame_error(err))
        }
    }
}

#[rustler::nif]
fn buffer_take<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Term<'a>, Atom> {
    take(env, buf, max_entries, max_bytes)
}

#[rustler::nif(schedule = "DirtyCpu")]
fn buffer_take_dirty<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Term<'a>, Atom> {
    take(env, buf, max_entries, max_bytes)
}

#[rustler::nif]
fn buffer_ack(buf: ResourceArc<BufferResource>, upto: u64) -> (usize, u64) {
    let mut guard = lock(&buf);
    let released = guard.ack(upto);
    (released, guard.base())
}

#[rustler::nif(schedule = "DirtyCpu")]
fn buffer_unacked<'a>(
    env: Env<'a>,
    buf: ResourceArc<BufferResource>,
) -> Result<Vec<(u64, Binary<'a>, AtomLists<'a>)>, Atom> {
    let guard = lock(&buf);
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
    let guard = lock(&buf);
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
