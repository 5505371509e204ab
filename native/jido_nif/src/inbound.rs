//! Inbound delivery NIFs: decode a frame, send each entry to its local
//! destination and advance the origin's `jido_core::inbound::Session`, all
//! in one call under the origin's lock.
//!
//! A NIF call is never interrupted: a process killed while it runs one on a
//! normal scheduler dies only after it returns. On a dirty scheduler the
//! call also runs on after a kill, but its sends start failing; progress is
//! therefore recorded after every entry, and a send to a live destination
//! that fails (the caller is gone) stops the call with the entry marked
//! undelivered. A
//! restarted receiver that meets the lock still held gets `:busy`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::atoms::{self, Reason};
use crate::schedule::twin_nif;
use jido_core::frame::{self, DecodeLimits};
use jido_core::inbound::{Arrival, Counter, Session, Verdict};
use jido_core::schedule::Work;
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, ResourceArc, Term};

type Cell = Arc<Mutex<Option<Session>>>;

/// Sessions and counters of this node's receiver; owned outside the
/// receiver process, so a restart forgets nothing.
pub struct InboundResource {
    sessions: Mutex<HashMap<Atom, Cell>>,
    counters: [AtomicU64; Counter::ALL.len()],
}

#[rustler::resource_impl]
impl rustler::Resource for InboundResource {}

fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update below leaves the state consistent before anything can
    // panic, so a poisoned lock holds valid state.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl InboundResource {
    fn cell(&self, origin: Atom) -> Cell {
        relock(&self.sessions)
            .entry(origin)
            .or_insert_with(|| Arc::new(Mutex::new(None)))
            .clone()
    }

    fn add(&self, counter: Counter, n: u64) {
        if n > 0 {
            self.counters[counter.index()].fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[rustler::nif]
fn inbound_new() -> ResourceArc<InboundResource> {
    ResourceArc::new(InboundResource {
        sessions: Mutex::new(HashMap::new()),
        counters: Default::default(),
    })
}

enum Sent {
    Delivered,
    Undeliverable,
    Malformed,
    CallerGone,
}

/// Sends one `{destination, message}` entry to its local destination.
fn send_entry(env: Env, bytes: &[u8]) -> Sent {
    let term = match env.binary_to_term(bytes) {
        Some((term, used)) if used == bytes.len() => term,
        _ => return Sent::Malformed,
    };
    let (dest, message) = match get_tuple(term) {
        Ok(items) if items.len() == 2 => (items[0], items[1]),
        _ => return Sent::Malformed,
    };
    let pid: LocalPid = if dest.is_pid() {
        match dest.decode() {
            Ok(pid) => pid,
            // A pid of another node.
            Err(_) => return Sent::Undeliverable,
        }
    } else if dest.is_atom() {
        match env.whereis_pid(dest) {
            Some(pid) => pid,
            None => return Sent::Undeliverable,
        }
    } else {
        return Sent::Malformed;
    };
    // A send fails when the destination is gone, or when the caller is:
    // killed during a dirty call, its sends fail while it still looks alive
    // until the call returns. So a failed send to a live destination means
    // the caller is gone.
    match env.send(&pid, message) {
        Ok(()) => Sent::Delivered,
        Err(_) if !env.is_process_alive(pid) => Sent::Undeliverable,
        Err(_) => Sent::CallerGone,
    }
}

/// The work of delivering `frame`, by its header; none for a frame whose
/// header does not parse (`deliver` refuses it at once).
fn deliver_work(frame: &Binary) -> Work {
    match frame::parse_header(frame.as_slice()) {
        Ok(h) => Work::Deliver {
            entries: h.count as usize,
            raw_bytes: h.raw_len as usize,
        },
        Err(_) => Work::Deliver {
            entries: 0,
            raw_bytes: 0,
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn deliver<'a>(
    env: Env<'a>,
    res: ResourceArc<InboundResource>,
    origin: Atom,
    epoch: u64,
    seq: u64,
    base: u64,
    frame_bin: Binary,
    max_decoded: usize,
) -> Term<'a> {
    // A frame whose header does not parse changes nothing.
    if let Err(err) = frame::parse_header(frame_bin.as_slice()) {
        res.add(Counter::Malformed, 1);
        return (atoms::error(), Reason::from(err)).encode(env);
    }
    let cell = res.cell(origin);
    let mut guard = match cell.try_lock() {
        Ok(guard) => guard,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return (atoms::busy(), 0u64).encode(env),
    };
    let current = *guard;
    let admission = Session::admit(current, Arrival { epoch, seq, base });
    let mut session = admission.session;

    let from_entry = match admission.verdict {
        Verdict::Invalid => {
            res.add(Counter::Malformed, 1);
            let delivered = current.map_or(0, |s| s.delivered);
            return (atoms::invalid(), delivered).encode(env);
        }
        Verdict::Duplicate => {
            *guard = Some(session);
            res.add(Counter::Duplicates, 1);
            res.add(Counter::Skipped, admission.skipped);
            return (atoms::duplicate(), session.delivered).encode(env);
        }
        Verdict::Gap => {
            *guard = Some(session);
            res.add(Counter::Gaps, 1);
            res.add(Counter::Skipped, admission.skipped);
            return (atoms::gap(), session.delivered).encode(env);
        }
        Verdict::Deliver { from_entry } => from_entry,
    };

    // A frame that does not decode changes nothing.
    let decoded = match frame::decode(frame_bin.as_slice(), DecodeLimits { max_decoded }) {
        Ok(decoded) => decoded,
        Err(err) => {
            res.add(Counter::Malformed, 1);
            return (atoms::error(), Reason::from(err)).encode(env);
        }
    };
    *guard = Some(session);
    res.add(Counter::Skipped, admission.skipped);

    let (mut signals, mut undeliverable, mut malformed) = (0, 0, 0);
    let mut stopped = false;
    for (index, bytes) in decoded.entries().enumerate().skip(from_entry as usize) {
        match send_entry(env, bytes) {
            Sent::Delivered => signals += 1,
            Sent::Undeliverable => undeliverable += 1,
            Sent::Malformed => malformed += 1,
            Sent::CallerGone => {
                stopped = true;
                break;
            }
        }
        let done = u32::try_from(index + 1).unwrap_or(u32::MAX);
        session = session.progress(seq, done);
        *guard = Some(session);
    }
    if !stopped {
        session = session.complete(seq);
        *guard = Some(session);
        res.add(Counter::Frames, 1);
    }
    drop(guard);
    res.add(Counter::Signals, signals);
    res.add(Counter::Undeliverable, undeliverable);
    res.add(Counter::Malformed, malformed);
    (atoms::ok(), session.delivered).encode(env)
}

twin_nif! {
    /// Delivers a frame from `origin`; returns `{status, delivered}`, where
    /// status is `:ok`, `:duplicate`, `:gap`, `:invalid` or `:busy` and
    /// `delivered` the last frame delivered in full, or `{:error, reason}`
    /// for a frame that does not decode (its header, counted malformed, or
    /// its payload).
    fn inbound_deliver / inbound_deliver_dirty<'a>(
        res: ResourceArc<InboundResource>,
        origin: Atom,
        epoch: u64,
        seq: u64,
        base: u64,
        frame: Binary<'a>,
        max_decoded: usize,
    ) -> Term<'a> = deliver;
    work = deliver_work(&frame);
}

/// The last frame of `origin`'s `epoch` delivered in full (0 if none).
#[rustler::nif]
fn inbound_delivered(res: ResourceArc<InboundResource>, origin: Atom, epoch: u64) -> u64 {
    let Some(cell) = relock(&res.sessions).get(&origin).cloned() else {
        return 0;
    };
    let session = *relock(&cell);
    match session {
        Some(s) if s.epoch == epoch => s.delivered,
        _ => 0,
    }
}

/// Every session: `[{origin, epoch, delivered}]`.
#[rustler::nif]
fn inbound_sessions(res: ResourceArc<InboundResource>) -> Vec<(Atom, u64, u64)> {
    let cells: Vec<(Atom, Cell)> = relock(&res.sessions)
        .iter()
        .map(|(origin, cell)| (*origin, cell.clone()))
        .collect();
    cells
        .into_iter()
        .filter_map(|(origin, cell)| {
            let session = *relock(&cell);
            session.map(|s| (origin, s.epoch, s.delivered))
        })
        .collect()
}

/// Marks `origin` down at `now_ms` (`down? = true`) or up again.
#[rustler::nif]
fn inbound_mark(res: ResourceArc<InboundResource>, origin: Atom, down: bool, now_ms: u64) -> Atom {
    if let Some(cell) = relock(&res.sessions).get(&origin).cloned() {
        if let Some(s) = relock(&cell).as_mut() {
            s.down_since = if down { Some(now_ms) } else { None };
        }
    }
    atoms::ok()
}

/// Forgets the sessions that `Session::expired` allows; returns their
/// origins. Sessions locked by a delivery in progress are kept.
#[rustler::nif]
fn inbound_expire(
    res: ResourceArc<InboundResource>,
    now_ms: u64,
    grace_ms: u64,
    ttl_ms: u64,
) -> Vec<Atom> {
    let mut sessions = relock(&res.sessions);
    let mut gone = Vec::new();
    sessions.retain(|origin, cell| {
        let expired = match cell.try_lock() {
            Ok(guard) => guard.is_some_and(|s| s.expired(now_ms, grace_ms, ttl_ms)),
            Err(_) => false,
        };
        if expired {
            gone.push(*origin);
        }
        !expired
    });
    gone
}

/// Adds `n` to the named counter; `:error` for an unknown name.
#[rustler::nif]
fn inbound_count(res: ResourceArc<InboundResource>, name: Term, n: u64) -> Atom {
    let Ok(name) = name.atom_to_string() else {
        return atoms::error();
    };
    match Counter::from_name(&name) {
        Some(counter) => {
            res.add(counter, n);
            atoms::ok()
        }
        None => atoms::error(),
    }
}

/// The counters, as `[{name, value}]` with names as binaries.
#[rustler::nif]
fn inbound_counters(res: ResourceArc<InboundResource>) -> Vec<(&'static str, u64)> {
    Counter::ALL
        .iter()
        .zip(res.counters.iter())
        .map(|(counter, c)| (counter.name(), c.load(Ordering::Relaxed)))
        .collect()
}
