//! Counters and RTTs as Erlang terms, and the RTT probe itself.
//!
//! Pure functions: the session hands them a [`PeerSnapshot`] list and sends
//! what they return.
//!
//! - `{stats, From, Ref}` is answered with
//!   `{jido_relay_stats, Ref, Peers, Totals}` where `Peers` is a map from
//!   node atom to `#{connected, frames_out, bytes_out, frames_in, bytes_in,
//!   drops, queue, rtt_us}` (`rtt_us` is `undefined` before the first probe
//!   answer) and `Totals` is `#{forwarded, refused, dropped, malformed}`.
//! - `{rtt, From, Ref}` is answered with `{jido_relay_rtt, Ref, #{Node =>
//!   RttMicros}}`, connected nodes with a measurement only.
//! - `{subscribe_rtt, From, Ref}` is answered with the same term at once
//!   and then every RTT interval while `From`'s node stays connected;
//!   `{unsubscribe_rtt, From, Ref}` stops it.
//! - A probe is a REG_SEND to the node's `net_kernel` of
//!   `{'$gen_call', {RelayPid, Ref}, {is_auth, RelayNode}}`; every BEAM node
//!   answers `{Ref, yes}` to `RelayPid`, no code of ours needed.

use crate::peers::{Counters, PeerSnapshot};
use erl_dist::message::Message;
use erl_dist::term::{Atom, BigInteger, FixInteger, Map, Pid, Reference, Term, Tuple};
use std::sync::atomic::Ordering::Relaxed;

fn int(n: u64) -> Term {
    match i32::try_from(n) {
        Ok(small) => FixInteger::from(small).into(),
        Err(_) => BigInteger::from(n).into(),
    }
}

fn atom(s: &str) -> Term {
    Atom::from(s).into()
}

fn boolean(b: bool) -> Term {
    atom(if b { "true" } else { "false" })
}

/// The answer to `{stats, From, Ref}`.
pub fn stats_reply(reference: Term, peers: &[PeerSnapshot], counters: &Counters) -> Term {
    let per_peer = Map::from(
        peers
            .iter()
            .map(|p| {
                let row = Map::from([
                    (atom("connected"), boolean(p.connected)),
                    (atom("frames_out"), int(p.frames_out)),
                    (atom("bytes_out"), int(p.bytes_out)),
                    (atom("frames_in"), int(p.frames_in)),
                    (atom("bytes_in"), int(p.bytes_in)),
                    (atom("drops"), int(p.drops)),
                    (atom("queue"), int(p.queue)),
                    (atom("rtt_us"), p.rtt_us.map_or(atom("undefined"), int)),
                ]);
                (atom(&p.node), Term::from(row))
            })
            .collect::<std::collections::HashMap<Term, Term>>(),
    );
    let totals = Map::from([
        (atom("forwarded"), int(counters.forwarded.load(Relaxed))),
        (atom("refused"), int(counters.refused.load(Relaxed))),
        (atom("dropped"), int(counters.dropped.load(Relaxed))),
        (atom("malformed"), int(counters.malformed.load(Relaxed))),
    ]);
    Tuple::from(vec![
        atom("jido_relay_stats"),
        reference,
        per_peer.into(),
        totals.into(),
    ])
    .into()
}

/// The answer to `{rtt, From, Ref}`.
pub fn rtt_reply(reference: Term, peers: &[PeerSnapshot]) -> Term {
    let table = Map::from(
        peers
            .iter()
            .filter(|p| p.connected)
            .filter_map(|p| Some((atom(&p.node), int(p.rtt_us?))))
            .collect::<std::collections::HashMap<Term, Term>>(),
    );
    Tuple::from(vec![atom("jido_relay_rtt"), reference, table.into()]).into()
}

/// The reference of probe number `id` from the relay node `local`.
pub fn probe_reference(local: &Pid, id: u32) -> Reference {
    Reference {
        node: local.node.clone(),
        id: vec![id, 0x6a69_646f, 0],
        creation: local.creation,
    }
}

/// The probe message for `net_kernel`, sent from `relay_pid`.
pub fn probe(relay_pid: &Pid, id: u32) -> Message {
    let tag = Tuple::from(vec![
        relay_pid.clone().into(),
        probe_reference(relay_pid, id).into(),
    ]);
    let request = Tuple::from(vec![atom("is_auth"), Term::from(relay_pid.node.clone())]);
    Message::reg_send(
        relay_pid.clone(),
        Atom::from("net_kernel"),
        Tuple::from(vec![atom("$gen_call"), tag.into(), request.into()]).into(),
    )
}

/// The probe number `reference` answers, if it is one of `relay_pid`'s.
pub fn probe_id(relay_pid: &Pid, reference: &Reference) -> Option<u32> {
    match reference.id.as_slice() {
        [id, 0x6a69_646f, 0] if reference.node == relay_pid.node => Some(*id),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(node: &str, rtt: Option<u64>) -> PeerSnapshot {
        PeerSnapshot {
            node: node.into(),
            connected: true,
            frames_out: 3,
            bytes_out: 5_000_000_000,
            frames_in: 1,
            bytes_in: 10,
            drops: 0,
            queue: 0,
            rtt_us: rtt,
        }
    }

    #[test]
    fn stats_reply_has_a_row_per_peer_and_totals() {
        let counters = Counters::default();
        counters.refused.fetch_add(2, Relaxed);
        let term = stats_reply(atom("r"), &[snap("b@vm", None)], &counters);
        let Term::Tuple(t) = term else {
            panic!("tuple")
        };
        assert_eq!(t.elements[0], atom("jido_relay_stats"));
        let Term::Map(peers) = &t.elements[2] else {
            panic!("map")
        };
        let Some(Term::Map(row)) = peers.map.get(&atom("b@vm")) else {
            panic!("row")
        };
        assert_eq!(row.map.get(&atom("bytes_out")), Some(&int(5_000_000_000)));
        assert_eq!(row.map.get(&atom("rtt_us")), Some(&atom("undefined")));
        let Term::Map(totals) = &t.elements[3] else {
            panic!("map")
        };
        assert_eq!(totals.map.get(&atom("refused")), Some(&int(2)));
    }

    #[test]
    fn rtt_reply_lists_measured_nodes() {
        let term = rtt_reply(atom("r"), &[snap("b@vm", Some(57)), snap("c@vm", None)]);
        let Term::Tuple(t) = term else {
            panic!("tuple")
        };
        let Term::Map(table) = &t.elements[2] else {
            panic!("map")
        };
        assert_eq!(table.map.len(), 1);
        assert_eq!(table.map.get(&atom("b@vm")), Some(&int(57)));
    }

    #[test]
    fn probe_ids_round_trip() {
        let me = Pid::new("relay@vm", 0, 0, 9);
        assert_eq!(probe_id(&me, &probe_reference(&me, 41)), Some(41));
        let other = Reference::from(("a@vm", vec![41, 0x6a69_646f, 0]));
        assert_eq!(probe_id(&me, &other), None);
        assert!(matches!(probe(&me, 1), Message::RegSend(_)));
    }
}
