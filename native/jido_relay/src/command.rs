//! What the relay does with a message from a connected node.
//!
//! [`Command::parse`] classifies a distribution message; [`Command::reply`]
//! computes the answer, if any. Both are pure, so every case is unit-tested
//! without sockets. Anything unexpected becomes [`Command::Ignore`]: a peer can
//! never crash the relay with a strange term.

use erl_dist::message::{Message, RegSend};
use erl_dist::term::{Atom, Pid, PidOrAtom, Reference, Term, Tuple};

/// The registered process name the relay answers to.
pub const REGISTERED_NAME: &str = "jido_relay";

/// Who is talking to whom, for a single connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// This relay's node name (`name@host`).
    pub local_node: String,
    /// The connected peer's node name.
    pub peer_node: String,
}

/// A classified incoming message.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Keep-alive from the peer; answered with a tick.
    Tick,
    /// `{ping, ReplyTo, Ref}` sent to the registered name.
    Ping {
        /// Where the pong goes.
        reply_to: Pid,
        /// Echoed back untouched.
        reference: Term,
    },
    /// A peer process links to a process of ours; none exist, so it gets a
    /// `noproc` exit, as from any BEAM node.
    Link {
        /// The linking process.
        from: Pid,
        /// The (nonexistent) process it links to.
        to: Pid,
    },
    /// `{stats, ReplyTo, Ref}`: counters wanted (answered by the session,
    /// which holds them).
    Stats {
        /// Where the answer goes.
        reply_to: Pid,
        /// Echoed back untouched.
        reference: Term,
    },
    /// `{rtt, ReplyTo, Ref}`: the RTT table wanted.
    Rtt {
        /// Where the answer goes.
        reply_to: Pid,
        /// Echoed back untouched.
        reference: Term,
    },
    /// `{subscribe_rtt, ReplyTo, Ref}`: push the RTT table to `ReplyTo`
    /// every RTT interval, tagged `Ref`, while its node stays connected.
    SubscribeRtt {
        /// Where the tables go.
        reply_to: Pid,
        /// Echoed in every push.
        reference: Term,
    },
    /// `{unsubscribe_rtt, ReplyTo, Ref}`: stop those pushes.
    UnsubscribeRtt {
        /// The subscriber.
        reply_to: Pid,
        /// The subscription's reference.
        reference: Term,
    },
    /// A peer process monitors a process of ours; none exist, so it gets a
    /// `noproc` MONITOR_P_EXIT at once.
    Monitor {
        /// The monitoring process.
        from: Pid,
        /// The monitored pid or name.
        to: PidOrAtom,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{Ref, yes}` sent to a pid: the answer to an RTT probe.
    ProbeReply(Reference),
    /// Anything else; the text says what, for a debug log.
    Ignore(String),
}

impl Command {
    /// Classifies one message.
    pub fn parse(message: Message) -> Self {
        match message {
            Message::Tick => Command::Tick,
            Message::RegSend(RegSend {
                to_name, message, ..
            }) => parse_reg_send(&to_name, message),
            Message::RegSendTt(m) => parse_reg_send(&m.to_name, m.message),
            Message::Link(link) => Command::Link {
                from: link.from_pid,
                to: link.to_pid,
            },
            Message::MonitorP(m) => Command::Monitor {
                from: m.from_pid,
                to: m.to_proc,
                reference: m.reference,
            },
            Message::Send(send) => parse_send(send.message),
            other => Command::Ignore(format!("unhandled control message {}", op_name(&other))),
        }
    }

    /// The message to send back on the same connection, if any.
    pub fn reply(self, ctx: &Context) -> Option<Message> {
        match self {
            Command::Tick => Some(Message::Tick),
            Command::Ping {
                reply_to,
                reference,
            } => {
                // Replies travel on the connection the request came on, so
                // they can only reach processes of that node.
                if reply_to.node.name != ctx.peer_node {
                    tracing::debug!(
                        reply_to = %reply_to,
                        peer = %ctx.peer_node,
                        "ping asks for a reply to another node; ignored"
                    );
                    return None;
                }
                let pong = Tuple::from(vec![
                    Atom::from("pong").into(),
                    reference,
                    Atom::from(ctx.local_node.as_str()).into(),
                ]);
                Some(Message::send(reply_to, pong.into()))
            }
            Command::Link { from, to } => {
                if from.node.name != ctx.peer_node {
                    return None;
                }
                Some(Message::exit(to, from, Atom::from("noproc").into()))
            }
            Command::Monitor {
                from,
                to,
                reference,
            } => {
                if from.node.name != ctx.peer_node {
                    return None;
                }
                Some(Message::monitor_p_exit(
                    to,
                    from,
                    reference,
                    Atom::from("noproc").into(),
                ))
            }
            Command::Stats { .. }
            | Command::Rtt { .. }
            | Command::SubscribeRtt { .. }
            | Command::UnsubscribeRtt { .. }
            | Command::ProbeReply(_)
            | Command::Ignore(_) => None,
        }
    }
}

fn parse_reg_send(to_name: &Atom, message: Term) -> Command {
    if to_name.name != REGISTERED_NAME {
        return Command::Ignore(format!(
            "message to unknown registered name {}",
            clip(&to_name.name)
        ));
    }
    match message {
        Term::Tuple(Tuple { elements }) => match <[Term; 3]>::try_from(elements) {
            Ok([Term::Atom(tag), Term::Pid(reply_to), reference]) => match tag.name.as_str() {
                "ping" => Command::Ping {
                    reply_to,
                    reference,
                },
                "stats" => Command::Stats {
                    reply_to,
                    reference,
                },
                "rtt" => Command::Rtt {
                    reply_to,
                    reference,
                },
                "subscribe_rtt" => Command::SubscribeRtt {
                    reply_to,
                    reference,
                },
                "unsubscribe_rtt" => Command::UnsubscribeRtt {
                    reply_to,
                    reference,
                },
                _ => Command::Ignore(format!(
                    "unknown request: 3-tuple tagged {}",
                    clip(&tag.name)
                )),
            },
            Ok(elements) => unknown_tuple(&elements),
            Err(elements) => unknown_tuple(&elements),
        },
        other => Command::Ignore(format!("unknown request: {}", describe(&other))),
    }
}

fn parse_send(message: Term) -> Command {
    if let Term::Tuple(Tuple { elements }) = &message {
        if let [Term::Reference(reference), Term::Atom(yes)] = elements.as_slice() {
            if yes.name == "yes" {
                return Command::ProbeReply((**reference).clone());
            }
        }
    }
    Command::Ignore(format!("plain send of {}", describe(&message)))
}

fn unknown_tuple(elements: &[Term]) -> Command {
    Command::Ignore(format!("unknown request: {}", describe_tuple(elements)))
}

// A short description of a term: never the whole (possibly huge) term.
fn describe(term: &Term) -> String {
    match term {
        Term::Atom(a) => format!("atom {}", clip(&a.name)),
        Term::Tuple(t) => describe_tuple(&t.elements),
        Term::FixInteger(_) | Term::BigInteger(_) => "integer".into(),
        Term::Float(_) => "float".into(),
        Term::Pid(_) => "pid".into(),
        Term::Port(_) => "port".into(),
        Term::Reference(_) => "reference".into(),
        Term::ExternalFun(_) | Term::InternalFun(_) => "fun".into(),
        Term::Binary(b) => format!("{}-byte binary", b.bytes.len()),
        Term::BitBinary(_) => "bitstring".into(),
        Term::ByteList(_) | Term::List(_) | Term::ImproperList(_) => "list".into(),
        Term::Map(_) => "map".into(),
    }
}

fn describe_tuple(elements: &[Term]) -> String {
    match elements.first() {
        Some(Term::Atom(tag)) => format!("{}-tuple tagged {}", elements.len(), clip(&tag.name)),
        _ => format!("{}-tuple", elements.len()),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

// Names only: printing whole messages could flood the log.
fn op_name(message: &Message) -> &'static str {
    match message {
        Message::Link(_) => "LINK",
        Message::Send(_) => "SEND",
        Message::Exit(_) => "EXIT",
        Message::Unlink(_) => "UNLINK",
        Message::NodeLink(_) => "NODE_LINK",
        Message::RegSend(_) => "REG_SEND",
        Message::GroupLeader(_) => "GROUP_LEADER",
        Message::Exit2(_) => "EXIT2",
        Message::SendTt(_) => "SEND_TT",
        Message::ExitTt(_) => "EXIT_TT",
        Message::RegSendTt(_) => "REG_SEND_TT",
        Message::Exit2Tt(_) => "EXIT2_TT",
        Message::MonitorP(_) => "MONITOR_P",
        Message::DemonitorP(_) => "DEMONITOR_P",
        Message::MonitorPExit(_) => "MONITOR_P_EXIT",
        Message::SendSender(_) => "SEND_SENDER",
        Message::SendSenderTt(_) => "SEND_SENDER_TT",
        Message::PayloadExit(_) => "PAYLOAD_EXIT",
        Message::PayloadExitTt(_) => "PAYLOAD_EXIT_TT",
        Message::PayloadExit2(_) => "PAYLOAD_EXIT2",
        Message::PayloadExit2Tt(_) => "PAYLOAD_EXIT2_TT",
        Message::PayloadMonitorPExit(_) => "PAYLOAD_MONITOR_P_EXIT",
        Message::SpawnRequest(_) => "SPAWN_REQUEST",
        Message::SpawnRequestTt(_) => "SPAWN_REQUEST_TT",
        Message::SpawnReply(_) => "SPAWN_REPLY",
        Message::SpawnReplyTt(_) => "SPAWN_REPLY_TT",
        Message::UnlinkId(_) => "UNLINK_ID",
        Message::UnlinkIdAck(_) => "UNLINK_ID_ACK",
        Message::AliasSend(_) => "ALIAS_SEND",
        Message::AliasSendTt(_) => "ALIAS_SEND_TT",
        Message::Tick => "TICK",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use erl_dist::term::FixInteger;

    fn ctx() -> Context {
        Context {
            local_node: "relay@vm".into(),
            peer_node: "a@vm".into(),
        }
    }

    fn pid(node: &str) -> Pid {
        Pid::new(node, 42, 0, 7)
    }

    fn reference() -> Term {
        Reference {
            node: Atom::from("a@vm"),
            id: vec![1, 2, 3],
            creation: 7,
        }
        .into()
    }

    fn tuple(elements: Vec<Term>) -> Term {
        Tuple::from(elements).into()
    }

    fn ping_to(name: &str, body: Term) -> Message {
        Message::reg_send(pid("a@vm"), Atom::from(name), body)
    }

    fn ping_body(reply_to: Pid) -> Term {
        tuple(vec![
            Atom::from("ping").into(),
            reply_to.into(),
            reference(),
        ])
    }

    #[test]
    fn ping_is_answered_with_pong() {
        let cmd = Command::parse(ping_to("jido_relay", ping_body(pid("a@vm"))));
        assert!(matches!(cmd, Command::Ping { .. }));
        let expected = Message::send(
            pid("a@vm"),
            tuple(vec![
                Atom::from("pong").into(),
                reference(),
                Atom::from("relay@vm").into(),
            ]),
        );
        assert_eq!(cmd.reply(&ctx()), Some(expected));
    }

    #[test]
    fn ping_with_trace_token_is_answered() {
        let msg = Message::reg_send_tt(
            pid("a@vm"),
            Atom::from("jido_relay"),
            ping_body(pid("a@vm")),
            Atom::from("token").into(),
        );
        assert!(matches!(
            Command::parse(msg).reply(&ctx()),
            Some(Message::Send(_))
        ));
    }

    #[test]
    fn any_term_works_as_the_ping_reference() {
        let body = tuple(vec![
            Atom::from("ping").into(),
            pid("a@vm").into(),
            FixInteger::from(5).into(),
        ]);
        let reply = Command::parse(ping_to("jido_relay", body)).reply(&ctx());
        let Some(Message::Send(send)) = reply else {
            panic!("expected a send, got {reply:?}")
        };
        assert_eq!(
            send.message,
            tuple(vec![
                Atom::from("pong").into(),
                FixInteger::from(5).into(),
                Atom::from("relay@vm").into()
            ])
        );
    }

    #[test]
    fn ping_for_a_pid_on_another_node_is_ignored() {
        let cmd = Command::parse(ping_to("jido_relay", ping_body(pid("other@vm"))));
        assert_eq!(cmd.reply(&ctx()), None);
    }

    #[test]
    fn malformed_requests_are_ignored() {
        let bodies = vec![
            Atom::from("ping").into(),
            tuple(vec![]),
            tuple(vec![Atom::from("ping").into()]),
            tuple(vec![Atom::from("ping").into(), pid("a@vm").into()]),
            tuple(vec![
                Atom::from("ping").into(),
                Atom::from("not_a_pid").into(),
                reference(),
            ]),
            tuple(vec![
                Atom::from("pong").into(),
                pid("a@vm").into(),
                reference(),
            ]),
            tuple(vec![
                Atom::from("ping").into(),
                pid("a@vm").into(),
                reference(),
                reference(),
            ]),
            FixInteger::from(1).into(),
        ];
        for body in bodies {
            let cmd = Command::parse(ping_to("jido_relay", body.clone()));
            assert!(matches!(cmd, Command::Ignore(_)), "{body:?} gave {cmd:?}");
            assert_eq!(cmd.reply(&ctx()), None);
        }
    }

    #[test]
    fn other_registered_names_are_ignored() {
        let cmd = Command::parse(ping_to("someone_else", ping_body(pid("a@vm"))));
        assert!(matches!(cmd, Command::Ignore(_)));
    }

    #[test]
    fn plain_send_and_other_ops_are_ignored() {
        let msgs = vec![
            Message::send(pid("relay@vm"), Atom::from("hi").into()),
            Message::node_link(),
            Message::group_leader(pid("a@vm"), pid("relay@vm")),
            Message::exit2(pid("a@vm"), pid("relay@vm"), Atom::from("kill").into()),
        ];
        for msg in msgs {
            let cmd = Command::parse(msg);
            assert!(matches!(cmd, Command::Ignore(_)));
            assert_eq!(cmd.reply(&ctx()), None);
        }
    }

    #[test]
    fn tick_is_answered_with_tick() {
        assert_eq!(
            Command::parse(Message::Tick).reply(&ctx()),
            Some(Message::Tick)
        );
    }

    #[test]
    fn monitor_gets_noproc_monitor_exit() {
        let r = Reference::from(("a@vm", vec![4, 5, 6]));
        let to = PidOrAtom::Atom(Atom::from("nobody"));
        let msg = Message::monitor_p(pid("a@vm"), to.clone(), r.clone());
        assert_eq!(
            Command::parse(msg).reply(&ctx()),
            Some(Message::monitor_p_exit(
                to,
                pid("a@vm"),
                r,
                Atom::from("noproc").into()
            ))
        );
    }

    #[test]
    fn stats_rtt_and_probe_replies_are_recognised() {
        let ask = |tag: &str| {
            Command::parse(ping_to(
                "jido_relay",
                tuple(vec![
                    Atom::from(tag).into(),
                    pid("a@vm").into(),
                    reference(),
                ]),
            ))
        };
        assert!(matches!(ask("stats"), Command::Stats { .. }));
        assert!(matches!(ask("rtt"), Command::Rtt { .. }));
        assert!(matches!(ask("subscribe_rtt"), Command::SubscribeRtt { .. }));
        assert!(matches!(
            ask("unsubscribe_rtt"),
            Command::UnsubscribeRtt { .. }
        ));
        assert!(matches!(ask("other"), Command::Ignore(_)));
        let r = Reference::from(("relay@vm", vec![1, 0, 0]));
        let yes = Message::send(
            pid("relay@vm"),
            tuple(vec![r.clone().into(), Atom::from("yes").into()]),
        );
        assert_eq!(Command::parse(yes), Command::ProbeReply(r));
    }

    #[test]
    fn link_gets_noproc_exit() {
        let reply = Command::parse(Message::link(pid("a@vm"), pid("relay@vm"))).reply(&ctx());
        assert_eq!(
            reply,
            Some(Message::exit(
                pid("relay@vm"),
                pid("a@vm"),
                Atom::from("noproc").into()
            ))
        );
    }
}
