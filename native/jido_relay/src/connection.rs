//! Reading and writing distribution messages on an established connection.
//!
//! After the handshake every message is `Length:32 | 112 | ControlTerm
//! [PayloadTerm]`, and a zero length is a tick. erl_dist's own receiver
//! trusts the length (allocating up to 4 GiB) and its term decoder trusts the
//! bytes, so the relay reads frames itself: it caps the length, checks the
//! term bytes with [`jido_core::etf::check`], and only then hands them to
//! `Message::read_from`. A bad message is skipped; only a broken stream
//! (short read, wrong pass-through tag, oversized length) ends the
//! connection.

use crate::command::REGISTERED_NAME;
use crate::forward;
use erl_dist::message::Message;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use jido_core::etf;
use std::io;

/// Pass-through tag in front of every non-tick message.
const PASS_THROUGH: u8 = 112;

/// Bounds on incoming messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message, in bytes after the length prefix.
    pub max_message_size: usize,
    /// Bounds on the term bytes.
    pub etf: etf::Limits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024 * 1024,
            etf: etf::Limits::default(),
        }
    }
}

/// One unit read from the peer.
#[derive(Debug)]
pub enum Incoming {
    /// A keep-alive.
    Tick,
    /// A decoded message (boxed: `Message` is large and travels through channels).
    Message(Box<Message>),
    /// A forward request, undecoded: the checked message bytes (after the
    /// pass-through tag) and what [`forward::parse`] found in them.
    Forward(Box<forward::Forward>, Vec<u8>),
    /// A complete message that was refused; the stream is still in sync.
    Skipped(DecodeError),
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The term bytes failed the pre-decode check.
    #[error("malformed terms: {0}")]
    Malformed(#[from] etf::EtfError),
    /// erl_dist refused the (well-formed) terms, e.g. an unknown operation.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// The decoder panicked; caught.
    #[error("decoder panicked")]
    Panicked,
}

/// Why the connection cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The peer closed the connection between messages.
    #[error("connection closed by the peer")]
    Closed,
    /// Socket error or close in the middle of a message.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// Length prefix over [`Limits::max_message_size`].
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// First byte of a message is not the pass-through tag.
    #[error("expected pass-through tag 112, got {0}")]
    BadTypeTag(u8),
}

/// Decodes the bytes after the pass-through tag into a message.
pub fn decode(bytes: &[u8], limits: etf::Limits) -> Result<Message, DecodeError> {
    etf::check(bytes, 2, limits)?;
    decode_checked(bytes)
}

/// Classifies the bytes after the pass-through tag: a forward request to
/// `registered_name` stays raw, anything else is decoded. The term check
/// runs first either way, so forwarded bytes are well formed and bounded.
pub fn classify(bytes: Vec<u8>, limits: etf::Limits, registered_name: &str) -> Incoming {
    if let Err(e) = etf::check(&bytes, 2, limits) {
        return Incoming::Skipped(e.into());
    }
    if let Some(fwd) = forward::parse(&bytes, registered_name) {
        return Incoming::Forward(Box::new(fwd), bytes);
    }
    match decode_checked(&bytes) {
        Ok(message) => Incoming::Message(Box::new(message)),
        Err(e) => Incoming::Skipped(e),
    }
}

fn decode_checked(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut reader = bytes;
    // The check leaves eetf only bounded work; the guard is a second line.
    match std::panic::catch_unwind(move || Message::read_from(&mut reader)) {
        Ok(Ok(message)) => Ok(message),
        Ok(Err(e)) => Err(DecodeError::Decode(e.to_string())),
        Err(_) => Err(DecodeError::Panicked),
    }
}

/// Encodes a message with its length prefix (a tick is four zero bytes).
pub fn encode(message: Message) -> Result<Vec<u8>, erl_dist::message::SendError> {
    if matches!(message, Message::Tick) {
        return Ok(vec![0; 4]);
    }
    let mut buf = vec![0, 0, 0, 0, PASS_THROUGH];
    message.write_into(&mut buf)?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| {
        erl_dist::message::SendError::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            "message larger than 4 GiB",
        ))
    })?;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

/// The reading half of a connection.
#[derive(Debug)]
pub struct Reader<R> {
    stream: R,
    limits: Limits,
    last_len: usize,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    /// Reads from `stream` with `limits`.
    pub fn new(stream: R, limits: Limits) -> Self {
        Self {
            stream,
            limits,
            last_len: 0,
        }
    }

    /// Size in bytes (length prefix included) of the last unit read.
    pub fn last_len(&self) -> usize {
        self.last_len
    }

    /// Reads the next tick or message. Not cancel-safe: a cancelled read
    /// leaves the stream mid-message, so cancel only to close.
    pub async fn read(&mut self) -> Result<Incoming, ReadError> {
        let mut len = [0u8; 4];
        if let Err(e) = self.stream.read_exact(&mut len).await {
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                ReadError::Closed
            } else {
                ReadError::Io(e)
            });
        }
        let size = u32::from_be_bytes(len) as usize;
        self.last_len = size + 4;
        if size == 0 {
            return Ok(Incoming::Tick);
        }
        if size > self.limits.max_message_size {
            return Err(ReadError::TooLarge {
                size,
                max: self.limits.max_message_size,
            });
        }
        let mut tag = [0u8; 1];
        self.stream.read_exact(&mut tag).await?;
        if tag[0] != PASS_THROUGH {
            return Err(ReadError::BadTypeTag(tag[0]));
        }
        let mut buf = vec![0u8; size - 1];
        self.stream.read_exact(&mut buf).await?;
        Ok(classify(buf, self.limits.etf, REGISTERED_NAME))
    }
}

/// Writes one message (or tick) and flushes.
pub async fn write<W: AsyncWrite + Unpin>(
    stream: &mut W,
    message: Message,
) -> Result<(), erl_dist::message::SendError> {
    let bytes = encode(message)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_dist::term::{Atom, Pid, Term, Tuple};

    fn ping() -> Message {
        Message::reg_send(
            Pid::new("a@vm", 1, 0, 1),
            Atom::from("jido_relay"),
            Tuple::from(vec![
                Atom::from("ping").into(),
                Pid::new("a@vm", 1, 0, 1).into(),
            ])
            .into(),
        )
    }

    async fn read_all(bytes: Vec<u8>, limits: Limits) -> Vec<Result<Incoming, ReadError>> {
        let mut reader = Reader::new(futures::io::Cursor::new(bytes), limits);
        let mut out = Vec::new();
        loop {
            let r = reader.read().await;
            let stop = r.is_err();
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn round_trip_messages_and_ticks() {
        let mut bytes = encode(ping()).unwrap();
        bytes.extend(encode(Message::Tick).unwrap());
        bytes.extend(encode(ping()).unwrap());
        let got = read_all(bytes, Limits::default()).await;
        assert_eq!(got.len(), 4);
        assert!(matches!(&got[0], Ok(Incoming::Message(m)) if **m == ping()));
        assert!(matches!(got[1], Ok(Incoming::Tick)));
        assert!(matches!(&got[2], Ok(Incoming::Message(m)) if **m == ping()));
        assert!(matches!(got[3], Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn bad_terms_are_skipped_and_the_stream_stays_in_sync() {
        let garbage = [0, 0, 0, 4, PASS_THROUGH, 131, 80, 1];
        // A well-formed control tuple with an operation erl_dist lacks.
        let mut unknown_op = vec![PASS_THROUGH];
        Term::from(Tuple::from(vec![
            erl_dist::term::FixInteger::from(99).into()
        ]))
        .encode(&mut unknown_op)
        .unwrap();
        let mut bytes = garbage.to_vec();
        bytes.extend((unknown_op.len() as u32).to_be_bytes());
        bytes.extend(unknown_op);
        bytes.extend(encode(ping()).unwrap());
        let got = read_all(bytes, Limits::default()).await;
        assert!(matches!(
            got[0],
            Ok(Incoming::Skipped(DecodeError::Malformed(_)))
        ));
        assert!(matches!(
            got[1],
            Ok(Incoming::Skipped(DecodeError::Decode(_)))
        ));
        assert!(matches!(&got[2], Ok(Incoming::Message(m)) if **m == ping()));
        assert!(matches!(got[3], Err(ReadError::Closed)));
    }

    #[tokio::test]
    async fn broken_framing_ends_the_connection() {
        let limits = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let too_large = vec![0, 0, 1, 0, PASS_THROUGH];
        assert!(matches!(
            read_all(too_large, limits).await[0],
            Err(ReadError::TooLarge {
                size: 256,
                max: 100
            })
        ));
        let wrong_tag = vec![0, 0, 0, 2, 68, 0];
        assert!(matches!(
            read_all(wrong_tag, limits).await[0],
            Err(ReadError::BadTypeTag(68))
        ));
        let short = vec![0, 0, 0, 9, PASS_THROUGH, 131];
        assert!(matches!(
            read_all(short, limits).await[0],
            Err(ReadError::Io(_))
        ));
        let half_length = vec![0, 0];
        assert!(matches!(
            read_all(half_length, limits).await[0],
            Err(ReadError::Closed)
        ));
    }

    // A term with a pid, a reference, a map, a big integer and a float.
    fn sample() -> Term {
        use erl_dist::term::{BigInteger, Binary, FixInteger, Float, List, Map, Reference};
        let map = Map::from([
            (
                Atom::from("id").into(),
                Binary::from(b"abc".as_slice()).into(),
            ),
            (FixInteger::from(-7).into(), List::nil().into()),
        ]);
        Tuple::from(vec![
            Atom::from("ping").into(),
            Pid::new("a@vm", 1, 2, 3).into(),
            Reference::from(("a@vm", vec![1, 2, 3])).into(),
            List::from(vec![FixInteger::from(1000).into(), Term::from(map)]).into(),
            Term::from(BigInteger::from(u64::MAX)),
            Term::from(Float::try_from(1.5f64).unwrap()),
        ])
        .into()
    }

    fn encode_term(term: &Term) -> Vec<u8> {
        let mut buf = Vec::new();
        term.encode(&mut buf).unwrap();
        buf
    }

    #[test]
    fn the_term_check_accepts_what_eetf_encodes() {
        let one = encode_term(&sample());
        assert_eq!(etf::check(&one, 2, etf::Limits::default()), Ok(()));
        let two = [one.clone(), one].concat();
        assert_eq!(etf::check(&two, 2, etf::Limits::default()), Ok(()));
    }

    #[test]
    fn eetf_decodes_whatever_the_term_check_accepts() {
        // No panic, whatever the result; accepted bytes must then decode.
        let one = encode_term(&sample());
        for i in 0..one.len() {
            for delta in [1u8, 0x80, 0xff] {
                let mut bytes = one.clone();
                bytes[i] = bytes[i].wrapping_add(delta);
                if etf::check(&bytes, 2, etf::Limits::default()).is_ok() {
                    let mut slice = bytes.as_slice();
                    let _ = Term::decode(&mut slice);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics_on_mangled_messages() {
        let good = encode(ping()).unwrap();
        let body = &good[5..];
        for i in 0..body.len() {
            for delta in [1u8, 0x7f, 0xff] {
                let mut bytes = body.to_vec();
                bytes[i] = bytes[i].wrapping_add(delta);
                let _ = decode(&bytes, etf::Limits::default());
            }
            let _ = decode(&body[..i], etf::Limits::default());
        }
    }

    #[test]
    fn fuzz_classify_with_a_million_inputs_without_panic() {
        // Seeds: a ping, a named forward, a pid forward, a monitor.
        let pid = Pid::new("a@vm", 1, 0, 1);
        let fwd = |rest: Vec<Term>| {
            let mut elements = vec![Atom::from("fwd").into()];
            elements.extend(rest);
            Message::reg_send(
                pid.clone(),
                Atom::from(REGISTERED_NAME),
                Tuple::from(elements).into(),
            )
        };
        let seeds: Vec<Vec<u8>> = [
            ping(),
            fwd(vec![
                Atom::from("b@vm").into(),
                Atom::from("Elixir.R").into(),
                sample(),
            ]),
            fwd(vec![pid.clone().into(), sample()]),
            Message::monitor_p(
                pid.clone(),
                erl_dist::term::PidOrAtom::Atom(Atom::from("x")),
                erl_dist::term::Reference::from(("a@vm", vec![1, 2, 3])),
            ),
        ]
        .into_iter()
        .map(|m| encode(m).unwrap()[5..].to_vec())
        .collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let limits = etf::Limits::default();
        let (mut forwards, mut messages) = (0u32, 0u32);
        for i in 0..1_000_000usize {
            let mut bytes = seeds[i % seeds.len()].clone();
            match next() % 3 {
                0 => {
                    for _ in 0..=(next() % 3) {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                _ => {
                    let at = (next() as usize) % bytes.len();
                    let n = (next() % 8) as usize;
                    let noise: Vec<u8> = (0..n).map(|_| next() as u8).collect();
                    bytes.splice(at..at, noise);
                }
            }
            match classify(bytes, limits, REGISTERED_NAME) {
                Incoming::Forward(fwd, bytes) => {
                    forwards += 1;
                    // What is forwarded is always one well-formed term.
                    let mut term = vec![131];
                    term.extend_from_slice(&bytes[fwd.msg.clone()]);
                    assert_eq!(etf::check(&term, 1, limits), Ok(()));
                }
                Incoming::Message(_) => messages += 1,
                Incoming::Skipped(_) | Incoming::Tick => {}
            }
        }
        assert!(forwards > 0 && messages > 0, "{forwards} {messages}");
    }
}
