//! The whole relay in-process on port 0, driven by an erl_dist client.
//! No epmd needed: the client connects to the listener directly.

use erl_dist::handshake::{ClientSideHandshake, HandshakeStatus};
use erl_dist::message::Message;
use erl_dist::node::{Creation, LocalNode, NodeName};
use erl_dist::term::{Atom, Pid, Reference, Term, Tuple};
use erl_dist::LOWEST_DISTRIBUTION_PROTOCOL_VERSION;
use futures::io::AsyncWriteExt;
use jido_relay::connection::{self, Incoming, ReadError, Reader};
use jido_relay::server::{self, Settings};
use jido_relay::stream::Stream;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

const COOKIE: &str = "secret";
const RELAY: &str = "relay@localhost";
static CLIENTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
const WAIT: Duration = Duration::from_secs(5);

struct Relay {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(tune: impl FnOnce(&mut Settings)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let name: NodeName = RELAY.parse().unwrap();
        let mut settings = Settings {
            local: LocalNode::new(name, Creation::random()),
            cookie: COOKIE.into(),
            tick_interval: Duration::from_secs(60),
            peer_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            max_connections: 16,
            limits: connection::Limits::default(),
            allowlist: jido_relay::config::default_allowlist(),
            queue_capacity: 64,
            rtt_interval: Duration::from_secs(60),
            dial_attempts: 1,
            dial_backoff: Duration::from_millis(10),
            dial_backoff_max: Duration::from_millis(10),
            epmd_port: 4369,
        };
        tune(&mut settings);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, settings, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        timeout(WAIT, &mut self.task)
            .await
            .expect("server stops")
            .unwrap();
    }
}

struct Client {
    name: String,
    writer: Stream,
    reader: Reader<Stream>,
    pid: Pid,
}

async fn connect(addr: SocketAddr, cookie: &str) -> Result<Client, String> {
    // One connection per node: every client is its own node.
    let n = CLIENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    connect_as(addr, cookie, &format!("client{n}@localhost")).await
}

async fn connect_as(addr: SocketAddr, cookie: &str, name: &str) -> Result<Client, String> {
    let socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = name.to_owned();
    let local = LocalNode::new(name.parse().unwrap(), Creation::random());
    let creation = local.creation.get();
    let mut hs = ClientSideHandshake::new(Stream::new(socket), local, cookie);
    let status = hs
        .execute_send_name(LOWEST_DISTRIBUTION_PROTOCOL_VERSION)
        .await
        .map_err(|e| e.to_string())?;
    if status != HandshakeStatus::Ok {
        return Err(format!("handshake status {status:?}"));
    }
    let (stream, peer) = hs.execute_rest(true).await.map_err(|e| e.to_string())?;
    assert_eq!(peer.name.to_string(), RELAY);
    Ok(Client {
        pid: Pid::new(name.as_str(), 7, 0, creation),
        name,
        writer: stream.clone(),
        reader: Reader::new(stream, connection::Limits::default()),
    })
}

impl Client {
    async fn send(&mut self, message: Message) {
        connection::write(&mut self.writer, message).await.unwrap();
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    async fn next(&mut self) -> Result<Incoming, ReadError> {
        timeout(WAIT, self.reader.read())
            .await
            .expect("relay answers in time")
    }

    // Next non-tick message.
    async fn next_message(&mut self) -> Message {
        loop {
            match self.next().await {
                Ok(Incoming::Tick) => continue,
                Ok(Incoming::Message(m)) => return *m,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    fn ping(&self, id: u32) -> Message {
        let reference = Reference::from((self.name.as_str(), vec![id, 0, 0]));
        Message::reg_send(
            self.pid.clone(),
            Atom::from("jido_relay"),
            Tuple::from(vec![
                Atom::from("ping").into(),
                self.pid.clone().into(),
                reference.into(),
            ])
            .into(),
        )
    }

    async fn assert_ping(&mut self, id: u32) {
        self.send(self.ping(id)).await;
        let expected = Message::send(
            self.pid.clone(),
            Tuple::from(vec![
                Atom::from("pong").into(),
                Reference::from((self.name.as_str(), vec![id, 0, 0])).into(),
                Atom::from(RELAY).into(),
            ])
            .into(),
        );
        assert_eq!(self.next_message().await, expected);
    }
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(112);
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn ping_round_trip() {
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    for id in 1..=3 {
        client.assert_ping(id).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn wrong_cookie_is_refused_and_the_relay_keeps_serving() {
    let relay = Relay::start(|_| {}).await;
    let mut good = connect(relay.addr, COOKIE).await.unwrap();
    let err = connect(relay.addr, "wrong").await.err();
    assert!(err.is_some(), "a wrong cookie must fail the handshake");
    good.assert_ping(1).await;
    let mut another = connect(relay.addr, COOKIE).await.unwrap();
    another.assert_ping(2).await;
    relay.stop().await;
}

#[tokio::test]
async fn sends_ticks_on_its_own() {
    let relay = Relay::start(|s| s.tick_interval = Duration::from_millis(50)).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(client.next().await, Ok(Incoming::Tick)));
    }
    relay.stop().await;
}

#[tokio::test]
async fn answers_ticks() {
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    client.send(Message::Tick).await;
    assert!(matches!(client.next().await, Ok(Incoming::Tick)));
    relay.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_messages_do_not_break_the_connection() {
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();

    // Garbage terms in a well-formed frame.
    client.send_raw(&frame(&[131, 99])).await;
    client.send_raw(&frame(&[1, 2, 3, 4])).await;
    // A list claiming 4 billion elements.
    client
        .send_raw(&frame(&[131, 108, 0xff, 0xff, 0xff, 0xff, 106]))
        .await;
    // 100k-deep nesting.
    let mut deep = vec![131u8];
    for _ in 0..100_000 {
        deep.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    deep.extend(std::iter::repeat_n(106u8, 100_001));
    client.send_raw(&frame(&deep)).await;
    // A distribution header where a term should be (eetf would panic).
    client.send_raw(&frame(&[131, 68, 0])).await;
    // Unknown requests and names, a plain send, a spawn-free exit2.
    let pid = client.pid.clone();
    client
        .send(Message::reg_send(
            pid.clone(),
            Atom::from("jido_relay"),
            Atom::from("hello").into(),
        ))
        .await;
    client
        .send(Message::reg_send(
            pid.clone(),
            Atom::from("nobody"),
            Term::from(Atom::from("hello")),
        ))
        .await;
    client
        .send(Message::send(
            Pid::new(RELAY, 1, 0, 1),
            Atom::from("hi").into(),
        ))
        .await;

    client.assert_ping(9).await;
    relay.stop().await;
}

#[tokio::test]
async fn link_to_a_relay_pid_gets_noproc() {
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    let target = Pid::new(RELAY, 1, 0, 1);
    client
        .send(Message::link(client.pid.clone(), target.clone()))
        .await;
    assert_eq!(
        client.next_message().await,
        Message::exit(target, client.pid.clone(), Atom::from("noproc").into())
    );
    relay.stop().await;
}

#[tokio::test]
async fn oversized_frame_closes_only_that_connection() {
    let relay = Relay::start(|s| s.limits.max_message_size = 1024).await;
    let mut bad = connect(relay.addr, COOKIE).await.unwrap();
    let mut good = connect(relay.addr, COOKIE).await.unwrap();
    bad.send_raw(&[0, 1, 0, 0, 112]).await;
    // Closed, or reset: the relay closes with the frame's byte unread.
    assert!(matches!(
        bad.next().await,
        Err(ReadError::Closed | ReadError::Io(_))
    ));
    good.assert_ping(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn silent_peer_is_dropped() {
    let relay = Relay::start(|s| s.peer_timeout = Duration::from_millis(200)).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    assert!(matches!(client.next().await, Err(ReadError::Closed)));
    relay.stop().await;
}

#[tokio::test]
async fn stalled_handshake_times_out() {
    let relay = Relay::start(|s| s.handshake_timeout = Duration::from_millis(200)).await;
    let socket = TcpStream::connect(relay.addr).await.unwrap();
    let mut reader = Reader::new(Stream::new(socket), connection::Limits::default());
    // The relay closes the socket without having sent anything.
    assert!(matches!(
        timeout(WAIT, reader.read()).await.unwrap(),
        Err(ReadError::Closed)
    ));
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    client.assert_ping(1).await;
    relay.stop().await;
    assert!(matches!(client.next().await, Err(ReadError::Closed)));
}

#[tokio::test]
async fn connection_cap_delays_but_does_not_refuse() {
    let relay = Relay::start(|s| s.max_connections = 1).await;
    let mut first = connect(relay.addr, COOKIE).await.unwrap();
    first.assert_ping(1).await;
    let addr = relay.addr;
    let second = tokio::spawn(async move { connect(addr, COOKIE).await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "second connection waits for a slot");
    drop(first);
    timeout(WAIT, second).await.unwrap().unwrap().unwrap();
    relay.stop().await;
}

#[tokio::test]
async fn monitor_of_a_relay_process_gets_noproc() {
    use erl_dist::term::PidOrAtom;
    let relay = Relay::start(|_| {}).await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    let reference = Reference::from((client.name.as_str(), vec![9, 9, 9]));
    let to = PidOrAtom::Atom(Atom::from("nobody"));
    client
        .send(Message::monitor_p(
            client.pid.clone(),
            to.clone(),
            reference.clone(),
        ))
        .await;
    assert_eq!(
        client.next_message().await,
        Message::monitor_p_exit(
            to,
            client.pid.clone(),
            reference,
            Atom::from("noproc").into()
        )
    );
    client.assert_ping(1).await;
    relay.stop().await;
}

fn map_get<'a>(map: &'a Term, key: &str) -> &'a Term {
    let Term::Map(m) = map else {
        panic!("expected a map, got {map:?}")
    };
    m.map
        .get(&Term::from(Atom::from(key)))
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
}

fn int(n: i32) -> Term {
    erl_dist::term::FixInteger::from(n).into()
}

#[tokio::test]
async fn forwards_to_an_unreachable_node_queue_then_drop_and_are_counted() {
    // epmd on port 1 refuses at once: the dial fails, frames stay queued.
    let relay = Relay::start(|s| {
        s.queue_capacity = 2;
        s.epmd_port = 1;
    })
    .await;
    let mut client = connect(relay.addr, COOKIE).await.unwrap();
    let forward = |name: &str, i: i32| {
        Message::reg_send(
            client.pid.clone(),
            Atom::from("jido_relay"),
            Tuple::from(vec![
                Atom::from("fwd").into(),
                Atom::from("nobody@localhost").into(),
                Atom::from(name).into(),
                int(i),
            ])
            .into(),
        )
    };
    let receiver = jido_relay::config::RECEIVER_NAME;
    let msgs: Vec<Message> = (0..5)
        .map(|i| forward(receiver, i))
        .chain([forward("not_allowed", 9)])
        .collect();
    for m in msgs {
        client.send(m).await;
    }
    let reference: Term = Reference::from((client.name.as_str(), vec![5, 5, 5])).into();
    client
        .send(Message::reg_send(
            client.pid.clone(),
            Atom::from("jido_relay"),
            Tuple::from(vec![
                Atom::from("stats").into(),
                client.pid.clone().into(),
                reference.clone(),
            ])
            .into(),
        ))
        .await;
    let Message::Send(reply) = client.next_message().await else {
        panic!("expected a send")
    };
    let Term::Tuple(Tuple { elements }) = reply.message else {
        panic!("expected a tuple")
    };
    assert_eq!(elements[0], Term::from(Atom::from("jido_relay_stats")));
    assert_eq!(elements[1], reference);
    let totals = &elements[3];
    assert_eq!(map_get(totals, "forwarded"), &int(2));
    assert_eq!(map_get(totals, "dropped"), &int(3));
    assert_eq!(map_get(totals, "refused"), &int(1));
    let row = map_get(&elements[2], "nobody@localhost");
    assert_eq!(map_get(row, "queue"), &int(2));
    assert_eq!(map_get(row, "drops"), &int(3));
    assert_eq!(map_get(row, "connected"), &Term::from(Atom::from("false")));
    let me = map_get(&elements[2], &client.name);
    assert_eq!(map_get(me, "connected"), &Term::from(Atom::from("true")));
    client.assert_ping(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn a_second_connection_from_the_same_node_is_refused() {
    let relay = Relay::start(|_| {}).await;
    let mut first = connect_as(relay.addr, COOKIE, "twin@localhost")
        .await
        .unwrap();
    let second = connect_as(relay.addr, COOKIE, "twin@localhost").await;
    assert!(second.is_err(), "one connection per node");
    first.assert_ping(1).await;
    relay.stop().await;
}

#[tokio::test]
async fn forwards_reuse_the_connection_the_destination_opened() {
    // No epmd reachable: delivery can only use the existing connection.
    let relay = Relay::start(|s| s.epmd_port = 1).await;
    let mut dest = connect(relay.addr, COOKIE).await.unwrap();
    let mut source = connect(relay.addr, COOKIE).await.unwrap();
    let receiver = jido_relay::config::RECEIVER_NAME;
    let request = |elements: Vec<Term>| {
        Message::reg_send(
            source.pid.clone(),
            Atom::from("jido_relay"),
            Tuple::from(elements).into(),
        )
    };
    let by_name = request(vec![
        Atom::from("fwd").into(),
        Atom::from(dest.name.as_str()).into(),
        Atom::from(receiver).into(),
        Tuple::from(vec![Atom::from("frame").into(), int(1)]).into(),
    ]);
    let by_pid = request(vec![
        Atom::from("fwd").into(),
        dest.pid.clone().into(),
        Tuple::from(vec![Atom::from("jido_ack").into(), int(1)]).into(),
    ]);
    source.send(by_name).await;
    source.send(by_pid).await;
    let relay_pid = |m: &Message| match m {
        Message::RegSend(r) => r.from_pid.node.name == RELAY,
        _ => false,
    };
    let first = dest.next_message().await;
    assert!(relay_pid(&first), "sent by the relay: {first:?}");
    let Message::RegSend(first) = first else {
        unreachable!()
    };
    assert_eq!(first.to_name, Atom::from(receiver));
    assert_eq!(
        first.message,
        Tuple::from(vec![Atom::from("frame").into(), int(1)]).into()
    );
    assert_eq!(
        dest.next_message().await,
        Message::send(
            dest.pid.clone(),
            Tuple::from(vec![Atom::from("jido_ack").into(), int(1)]).into()
        )
    );
    relay.stop().await;
}
