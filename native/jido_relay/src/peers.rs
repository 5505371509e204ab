//! The relay's peers: one outgoing queue and one set of counters per node,
//! and which connection (if any) currently owns each queue.
//!
//! A node's slot outlives its connections: frames queued while the node is
//! being dialled (or between a disconnect and a reconnect) are written by
//! the next connection. The queue is bounded by
//! [`Settings::queue_capacity`](crate::server::Settings::queue_capacity);
//! when it is full a new frame is **dropped and counted** (`drops`), never
//! waited for: the reader that produced it serves every other destination
//! of its node too, and one slow destination must not stall them. The
//! sender's transport (sequence numbers, acks, retransmission) repairs a
//! drop.
//!
//! At most one connection per node owns the queue ([`Peers::claim`]); the
//! tie-break for simultaneous connects is decided with [`Peers::admit`].

use erl_dist::handshake::HandshakeStatus;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// One encoded frame (length prefix included), ready for the socket.
pub type Frame = Vec<u8>;

/// `rtt_us` before the first answered probe.
pub const RTT_UNKNOWN: u64 = u64::MAX;

/// Counters of one peer node.
#[derive(Debug)]
pub struct PeerStats {
    /// Frames written to the node (forwards, replies, ticks, probes).
    pub frames_out: AtomicU64,
    /// Bytes written to the node.
    pub bytes_out: AtomicU64,
    /// Messages read from the node (ticks excluded).
    pub frames_in: AtomicU64,
    /// Bytes read from the node.
    pub bytes_in: AtomicU64,
    /// Frames for the node dropped because its queue was full.
    pub drops: AtomicU64,
    /// Last measured round trip to the node's `net_kernel`, in microseconds.
    pub rtt_us: AtomicU64,
}

impl Default for PeerStats {
    fn default() -> Self {
        Self {
            frames_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            rtt_us: AtomicU64::new(RTT_UNKNOWN),
        }
    }
}

/// Relay-wide counters of forward requests.
#[derive(Debug, Default)]
pub struct Counters {
    /// Forward requests queued for their destination.
    pub forwarded: AtomicU64,
    /// Forward requests refused: destination name not in the allowlist.
    pub refused: AtomicU64,
    /// Forward requests dropped: their destination queue was full.
    pub dropped: AtomicU64,
    /// Messages skipped as malformed (failed the term check or decoding).
    pub malformed: AtomicU64,
}

/// A copy of one peer's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    /// Node name.
    pub node: String,
    /// Whether a connection owns the queue now.
    pub connected: bool,
    /// See [`PeerStats`].
    pub frames_out: u64,
    /// See [`PeerStats`].
    pub bytes_out: u64,
    /// See [`PeerStats`].
    pub frames_in: u64,
    /// See [`PeerStats`].
    pub bytes_in: u64,
    /// See [`PeerStats`].
    pub drops: u64,
    /// Frames waiting in the queue.
    pub queue: u64,
    /// Round trip in microseconds, `None` before the first probe answer.
    pub rtt_us: Option<u64>,
}

/// What happened to an enqueued frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued; `dial` says whether the caller should start dialling the
    /// node (nobody owns its queue and nobody is dialling it).
    Queued {
        /// Start a dial.
        dial: bool,
    },
    /// Queue full: dropped and counted.
    Dropped,
}

/// A connection's hold on a node's queue; give it back with
/// [`Peers::release`].
#[derive(Debug)]
pub struct Claim {
    /// The queue's receiving end.
    pub rx: mpsc::Receiver<Frame>,
    /// The queue's sending end (for the connection's own replies).
    pub tx: mpsc::Sender<Frame>,
    /// The node's counters.
    pub stats: Arc<PeerStats>,
}

#[derive(Debug)]
struct Slot {
    tx: mpsc::Sender<Frame>,
    // `None` while a connection owns the queue.
    rx: Option<mpsc::Receiver<Frame>>,
    stats: Arc<PeerStats>,
    dialing: bool,
}

/// All peers of one relay.
#[derive(Debug)]
pub struct Peers {
    slots: Mutex<HashMap<String, Slot>>,
    queue_capacity: usize,
    /// Relay-wide counters.
    pub counters: Counters,
}

impl Peers {
    /// An empty table whose queues hold `queue_capacity` frames each.
    pub fn new(queue_capacity: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            queue_capacity: queue_capacity.max(1),
            counters: Counters::default(),
        }
    }

    // A poisoned lock only means a panic elsewhere; the map stays usable.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn slot<'a>(&self, map: &'a mut HashMap<String, Slot>, node: &str) -> &'a mut Slot {
        map.entry(node.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.queue_capacity);
            Slot {
                tx,
                rx: Some(rx),
                stats: Arc::default(),
                dialing: false,
            }
        })
    }

    /// Queues `frame` for `node`, dropping it if the queue is full.
    pub fn enqueue(&self, node: &str, frame: Frame) -> Enqueued {
        let mut map = self.lock();
        let slot = self.slot(&mut map, node);
        match slot.tx.try_send(frame) {
            Ok(()) => {
                let dial = slot.rx.is_some() && !slot.dialing;
                if dial {
                    slot.dialing = true;
                }
                Enqueued::Queued { dial }
            }
            Err(_) => {
                slot.stats.drops.fetch_add(1, Relaxed);
                Enqueued::Dropped
            }
        }
    }

    /// Decides the handshake status for an incoming connection from `node`
    /// (this relay being `local`): `Nok` if a connection already owns the
    /// node's queue, or if this relay is dialling the node and its name is
    /// greater (its own dial wins, as between BEAM nodes); `OkSimultaneous`
    /// if it is dialling and the peer's name is greater (the dial will find
    /// the queue claimed and close); `Ok` otherwise.
    pub fn admit(&self, node: &str, local: &str) -> HandshakeStatus {
        let map = self.lock();
        match map.get(node) {
            Some(slot) if slot.rx.is_none() => HandshakeStatus::Nok,
            Some(slot) if slot.dialing && local > node => HandshakeStatus::Nok,
            Some(slot) if slot.dialing => HandshakeStatus::OkSimultaneous,
            _ => HandshakeStatus::Ok,
        }
    }

    /// Takes `node`'s queue for a new connection; `None` if another
    /// connection holds it.
    pub fn claim(&self, node: &str) -> Option<Claim> {
        let mut map = self.lock();
        let slot = self.slot(&mut map, node);
        let rx = slot.rx.take()?;
        Some(Claim {
            rx,
            tx: slot.tx.clone(),
            stats: Arc::clone(&slot.stats),
        })
    }

    /// Gives `node`'s queue back when its connection ends. `true` when
    /// frames are still waiting and nobody dials the node: the caller should
    /// start a dial (now marked as started).
    pub fn release(&self, node: &str, rx: mpsc::Receiver<Frame>) -> bool {
        let mut map = self.lock();
        let Some(slot) = map.get_mut(node) else {
            return false;
        };
        let waiting = !rx.is_empty();
        slot.rx = Some(rx);
        let dial = waiting && !slot.dialing;
        if dial {
            slot.dialing = true;
        }
        dial
    }

    /// Marks the dial of `node` finished (connected or given up).
    pub fn dial_done(&self, node: &str) {
        if let Some(slot) = self.lock().get_mut(node) {
            slot.dialing = false;
        }
    }

    /// Whether a connection owns `node`'s queue.
    pub fn is_connected(&self, node: &str) -> bool {
        self.lock().get(node).is_some_and(|s| s.rx.is_none())
    }

    /// Marks `node` as being dialled; `false` if it already is or is
    /// connected (the caller then does not dial).
    pub fn start_dial(&self, node: &str) -> bool {
        let mut map = self.lock();
        let slot = self.slot(&mut map, node);
        if slot.dialing || slot.rx.is_none() {
            return false;
        }
        slot.dialing = true;
        true
    }

    /// Nodes with a connection now.
    pub fn connected(&self) -> Vec<String> {
        let map = self.lock();
        let mut nodes: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.rx.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        nodes.sort();
        nodes
    }

    /// A copy of every peer's counters, sorted by node name.
    pub fn snapshot(&self) -> Vec<PeerSnapshot> {
        let map = self.lock();
        let mut out: Vec<PeerSnapshot> = map
            .iter()
            .map(|(node, slot)| {
                let s = &slot.stats;
                let rtt = s.rtt_us.load(Relaxed);
                PeerSnapshot {
                    node: node.clone(),
                    connected: slot.rx.is_none(),
                    frames_out: s.frames_out.load(Relaxed),
                    bytes_out: s.bytes_out.load(Relaxed),
                    frames_in: s.frames_in.load(Relaxed),
                    bytes_in: s.bytes_in.load(Relaxed),
                    drops: s.drops.load(Relaxed),
                    queue: (slot.tx.max_capacity() - slot.tx.capacity()) as u64,
                    rtt_us: (rtt != RTT_UNKNOWN).then_some(rtt),
                }
            })
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_for_an_unknown_node_asks_for_one_dial() {
        let peers = Peers::new(4);
        assert_eq!(
            peers.enqueue("b@vm", vec![1]),
            Enqueued::Queued { dial: true }
        );
        assert_eq!(
            peers.enqueue("b@vm", vec![2]),
            Enqueued::Queued { dial: false }
        );
        assert!(!peers.start_dial("b@vm"));
        peers.dial_done("b@vm");
        assert!(peers.start_dial("b@vm"));
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let peers = Peers::new(2);
        peers.enqueue("b@vm", vec![1]);
        peers.enqueue("b@vm", vec![2]);
        assert_eq!(peers.enqueue("b@vm", vec![3]), Enqueued::Dropped);
        let snap = peers.snapshot();
        assert_eq!((snap[0].drops, snap[0].queue), (1, 2));
    }

    #[test]
    fn queued_frames_wait_for_the_connection_that_claims_them() {
        let peers = Peers::new(4);
        peers.enqueue("b@vm", vec![1]);
        let mut claim = peers.claim("b@vm").expect("free queue");
        peers.dial_done("b@vm");
        assert!(peers.claim("b@vm").is_none(), "one owner at a time");
        assert!(peers.is_connected("b@vm"));
        assert_eq!(claim.rx.try_recv().ok(), Some(vec![1]));
        assert_eq!(
            peers.enqueue("b@vm", vec![2]),
            Enqueued::Queued { dial: false }
        );
        assert!(peers.release("b@vm", claim.rx), "frame 2 waits: redial");
        assert!(!peers.is_connected("b@vm"));
        assert!(!peers.start_dial("b@vm"), "already marked as dialling");
        let mut again = peers.claim("b@vm").expect("released");
        assert_eq!(again.rx.try_recv().ok(), Some(vec![2]));
    }

    #[test]
    fn simultaneous_connect_tie_break() {
        let peers = Peers::new(4);
        assert_eq!(peers.admit("b@vm", "relay@vm"), HandshakeStatus::Ok);
        assert!(peers.start_dial("b@vm"));
        assert!(peers.start_dial("z@vm"));
        // relay@vm > b@vm: our dial wins.
        assert_eq!(peers.admit("b@vm", "relay@vm"), HandshakeStatus::Nok);
        // z@vm > relay@vm: theirs wins.
        assert_eq!(
            peers.admit("z@vm", "relay@vm"),
            HandshakeStatus::OkSimultaneous
        );
        let _held = peers.claim("z@vm").expect("free");
        assert_eq!(peers.admit("z@vm", "relay@vm"), HandshakeStatus::Nok);
    }
}
