//! The raw forwarding path: recognise a forward request without decoding its
//! payload, and build the outgoing message around the same bytes.
//!
//! A node asks the relay to forward by sending, to the relay's registered
//! name, either `{fwd, DestNode, DestName, Msg}` (delivered as a REG_SEND to
//! `{DestName, DestNode}`) or `{fwd, DestPid, Msg}` (delivered as a SEND to
//! that pid). `Msg` is the last element of the payload tuple, so its bytes
//! run from after the destination to the end of the message: [`parse`]
//! reads only the control tuple and the payload's head (small integers,
//! atoms, pids) and returns where `Msg` lies. erl_dist's `Message::read_from`
//! would decode the whole payload (3-190 µs for 1-256 KiB against ~1.5 µs
//! here).
//!
//! [`parse`] is total: any input gives `None` (not a forward request: the
//! ordinary decoder handles it) or a [`Forward`], never a panic. It does not
//! check the `Msg` bytes; the reader runs [`jido_core::etf::check`] over the
//! whole message first, so a forwarded term is always well formed and
//! within the configured size and depth. Trace-token variants (REG_SEND_TT)
//! are not forwarded raw; they fall through to the ordinary decoder and are
//! ignored.

use erl_dist::term::{Atom, Pid, Term, Tuple};
use std::ops::Range;

const VERSION: u8 = 131;
const SMALL_INTEGER: u8 = 97;
const SMALL_TUPLE: u8 = 104;
const ATOM: u8 = 100;
const SMALL_ATOM: u8 = 115;
const ATOM_UTF8: u8 = 118;
const SMALL_ATOM_UTF8: u8 = 119;
const PID: u8 = 103;
const NEW_PID: u8 = 88;

/// Control-message operation numbers used here.
const OP_SEND: u8 = 2;
const OP_REG_SEND: u8 = 6;

/// Where a forwarded message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// A registered name on a node.
    Name {
        /// Destination node (`name@host`).
        node: String,
        /// Registered name there.
        name: String,
    },
    /// A process.
    Pid(Pid),
}

impl Dest {
    /// The node the message must be written to.
    pub fn node(&self) -> &str {
        match self {
            Dest::Name { node, .. } => node,
            Dest::Pid(pid) => &pid.node.name,
        }
    }
}

/// A recognised forward request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Where the message goes.
    pub dest: Dest,
    /// Byte range of `Msg` (without a version byte) in the parsed bytes.
    pub msg: Range<usize>,
}

/// Recognises `{fwd, ...}` sent as a REG_SEND to `registered_name` in
/// `body`, the bytes after the pass-through tag (control term, then
/// payload term, each with its version byte). `None` for anything else.
pub fn parse(body: &[u8], registered_name: &str) -> Option<Forward> {
    let mut cur = Cursor {
        bytes: body,
        pos: 0,
    };
    // Control: {6, FromPid, Unused, ToName}.
    cur.expect(VERSION)?;
    cur.expect(SMALL_TUPLE)?;
    cur.expect(4)?;
    cur.expect(SMALL_INTEGER)?;
    cur.expect(OP_REG_SEND)?;
    cur.pid()?;
    cur.unused()?;
    if cur.atom()? != registered_name.as_bytes() {
        return None;
    }
    // Payload: {fwd, Node, Name, Msg} or {fwd, Pid, Msg}.
    cur.expect(VERSION)?;
    cur.expect(SMALL_TUPLE)?;
    let arity = cur.u8()?;
    if cur.atom()? != b"fwd" {
        return None;
    }
    let dest = match arity {
        4 => {
            let node = utf8(cur.atom()?)?;
            let name = utf8(cur.atom()?)?;
            Dest::Name { node, name }
        }
        3 => Dest::Pid(cur.pid()?),
        _ => return None,
    };
    if cur.pos >= body.len() {
        return None;
    }
    Some(Forward {
        dest,
        msg: cur.pos..body.len(),
    })
}

/// The complete outgoing frame (length prefix, pass-through tag, control
/// term, payload) that delivers `msg` (term bytes without a version byte)
/// to `dest`, sent by `from` (a pid of the relay; SEND has no sender).
pub fn encode(dest: &Dest, from: &Pid, msg: &[u8]) -> Option<Vec<u8>> {
    let control: Term = match dest {
        Dest::Name { name, .. } => Tuple::from(vec![
            erl_dist::term::FixInteger::from(i32::from(OP_REG_SEND)).into(),
            from.clone().into(),
            Atom::from("").into(),
            Atom::from(name.as_str()).into(),
        ])
        .into(),
        Dest::Pid(pid) => Tuple::from(vec![
            erl_dist::term::FixInteger::from(i32::from(OP_SEND)).into(),
            Atom::from("").into(),
            pid.clone().into(),
        ])
        .into(),
    };
    let mut buf = Vec::with_capacity(msg.len() + 64);
    buf.extend_from_slice(&[0, 0, 0, 0, 112]);
    control.encode(&mut buf).ok()?;
    buf.push(VERSION);
    buf.extend_from_slice(msg);
    let len = u32::try_from(buf.len() - 4).ok()?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Some(buf)
}

fn utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let out = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(out)
    }

    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.u8()? == byte).then_some(())
    }

    // An atom's text (latin-1 atoms only when ASCII, so names compare as UTF-8).
    fn atom(&mut self) -> Option<&'a [u8]> {
        let tag = self.u8()?;
        let len = match tag {
            SMALL_ATOM | SMALL_ATOM_UTF8 => usize::from(self.u8()?),
            ATOM | ATOM_UTF8 => {
                let b = self.take(2)?;
                usize::from(u16::from_be_bytes([b[0], b[1]]))
            }
            _ => return None,
        };
        let text = self.take(len)?;
        if matches!(tag, ATOM | SMALL_ATOM) && !text.is_ascii() {
            return None;
        }
        Some(text)
    }

    // The control tuple's unused slot: BEAM writes `''`, erl_dist `{}`.
    fn unused(&mut self) -> Option<()> {
        if self.bytes.get(self.pos..self.pos + 2) == Some(&[SMALL_TUPLE, 0]) {
            self.pos += 2;
            return Some(());
        }
        self.atom().map(|_| ())
    }

    fn pid(&mut self) -> Option<Pid> {
        let tag = self.u8()?;
        let node = utf8(self.atom()?)?;
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = match tag {
            NEW_PID => self.u32()?,
            PID => u32::from(self.u8()?),
            _ => return None,
        };
        Some(Pid::new(node, id, serial, creation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_dist::message::Message;
    use erl_dist::term::{Binary, FixInteger, List, Map};

    const NAME: &str = "jido_relay";

    fn body(message: Message) -> Vec<u8> {
        crate::connection::encode(message).unwrap()[5..].to_vec()
    }

    fn from() -> Pid {
        Pid::new("a@vm", 7, 0, 3)
    }

    fn sample_msg() -> Term {
        Tuple::from(vec![
            Atom::from("jido_frame").into(),
            Binary::from(vec![1u8; 300]).into(),
            List::from(vec![FixInteger::from(1000).into()]).into(),
            Map::from([(Atom::from("k").into(), FixInteger::from(1).into())]).into(),
        ])
        .into()
    }

    fn fwd_name(node: &str, name: &str, msg: Term) -> Message {
        Message::reg_send(
            from(),
            Atom::from(NAME),
            Tuple::from(vec![
                Atom::from("fwd").into(),
                Atom::from(node).into(),
                Atom::from(name).into(),
                msg,
            ])
            .into(),
        )
    }

    fn term_bytes(term: &Term) -> Vec<u8> {
        let mut out = Vec::new();
        term.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn named_forward_slices_the_message_bytes() {
        let bytes = body(fwd_name("b@vm", "Elixir.R", sample_msg()));
        let fwd = parse(&bytes, NAME).expect("a forward");
        assert_eq!(
            fwd.dest,
            Dest::Name {
                node: "b@vm".into(),
                name: "Elixir.R".into()
            }
        );
        assert_eq!(&bytes[fwd.msg.clone()], &term_bytes(&sample_msg())[1..]);
    }

    #[test]
    fn pid_forward_slices_the_message_bytes() {
        let dest = Pid::new("b@vm", 99, 1, 12345);
        let message = Message::reg_send(
            from(),
            Atom::from(NAME),
            Tuple::from(vec![
                Atom::from("fwd").into(),
                dest.clone().into(),
                sample_msg(),
            ])
            .into(),
        );
        let bytes = body(message);
        let fwd = parse(&bytes, NAME).expect("a forward");
        assert_eq!(fwd.dest, Dest::Pid(dest));
        assert_eq!(&bytes[fwd.msg], &term_bytes(&sample_msg())[1..]);
    }

    #[test]
    fn encoded_forwards_decode_as_the_intended_messages() {
        let relay = Pid::new("relay@vm", 0, 0, 1);
        let msg = term_bytes(&sample_msg());
        let named = Dest::Name {
            node: "b@vm".into(),
            name: "Elixir.R".into(),
        };
        let frame = encode(&named, &relay, &msg[1..]).unwrap();
        let decoded = crate::connection::decode(&frame[5..], Default::default()).unwrap();
        assert_eq!(
            decoded,
            Message::reg_send(relay.clone(), Atom::from("Elixir.R"), sample_msg())
        );
        let pid = Pid::new("b@vm", 5, 0, 9);
        let frame = encode(&Dest::Pid(pid.clone()), &relay, &msg[1..]).unwrap();
        let decoded = crate::connection::decode(&frame[5..], Default::default()).unwrap();
        assert_eq!(decoded, Message::send(pid, sample_msg()));
    }

    #[test]
    fn other_messages_are_not_forwards() {
        let cases = vec![
            fwd_name("b@vm", "x", sample_msg()),
            Message::reg_send(from(), Atom::from(NAME), Atom::from("fwd").into()),
            Message::reg_send(
                from(),
                Atom::from(NAME),
                Tuple::from(vec![Atom::from("fwd").into(), Atom::from("b@vm").into()]).into(),
            ),
            Message::reg_send(
                from(),
                Atom::from(NAME),
                Tuple::from(vec![
                    Atom::from("ping").into(),
                    from().into(),
                    Atom::from("r").into(),
                ])
                .into(),
            ),
            Message::send(from(), sample_msg()),
            Message::Tick,
        ];
        // The first is a forward to another relay name: not for us.
        assert_eq!(parse(&body(cases[0].clone()), "other_name"), None);
        for message in cases.into_iter().skip(1) {
            if matches!(message, Message::Tick) {
                assert_eq!(parse(&[], NAME), None);
                continue;
            }
            assert_eq!(parse(&body(message.clone()), NAME), None, "{message:?}");
        }
    }

    // Deterministic xorshift, so the fuzz run is repeatable.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn fuzz_a_million_inputs_without_panic() {
        let seeds = [
            body(fwd_name("b@vm", "Elixir.R", sample_msg())),
            body(Message::reg_send(
                from(),
                Atom::from(NAME),
                Tuple::from(vec![
                    Atom::from("fwd").into(),
                    Pid::new("b@vm", 1, 2, 3).into(),
                    FixInteger::from(1).into(),
                ])
                .into(),
            )),
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut found = 0usize;
        for i in 0..1_200_000u64 {
            let seed = &seeds[(i % 2) as usize];
            let mut bytes = seed.clone();
            match rng.next() % 4 {
                // Flip a few bytes.
                0 | 1 => {
                    for _ in 0..=(rng.next() % 4) {
                        let at = (rng.next() as usize) % bytes.len();
                        bytes[at] = rng.next() as u8;
                    }
                }
                // Truncate.
                2 => bytes.truncate((rng.next() as usize) % bytes.len()),
                // Pure noise behind a plausible head.
                _ => {
                    let n = (rng.next() % 64) as usize;
                    bytes.truncate((rng.next() as usize) % 12);
                    bytes.extend((0..n).map(|_| rng.next() as u8));
                }
            }
            if let Some(fwd) = parse(&bytes, NAME) {
                found += 1;
                assert!(fwd.msg.start < fwd.msg.end && fwd.msg.end == bytes.len());
            }
        }
        assert!(found > 0, "some mutations keep the forward shape");
    }
}
