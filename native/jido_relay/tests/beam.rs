//! The relay between real BEAM nodes: two `erl -sname` nodes started (and
//! killed) by the test, with `dist_auto_connect never`, so every message
//! between them goes through the relay, which registers with epmd and dials
//! the destination itself.
//!
//! Needs `erl` and `epmd` on the PATH (Debian's erlang-nox).

use erl_dist::handshake::{ClientSideHandshake, HandshakeStatus};
use erl_dist::message::Message;
use erl_dist::node::{Creation, LocalNode, NodeName};
use erl_dist::term::{Atom, Pid, Reference, Tuple};
use futures::io::AsyncWriteExt;
use jido_relay::connection::{self, Incoming, Reader};
use jido_relay::server::{self, Settings};
use jido_relay::stream::Stream;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const COOKIE: &str = "jido_relay_beam_test";
// Generous: a loaded 2-core machine starts a VM in well under this.
const WAIT: Duration = Duration::from_secs(60);

/// A BEAM node run by the test; killed when dropped.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Node {
    /// Starts `erl` running `script`. The node goes on the network (epmd)
    /// under `sname` at once, or, with `dist_in_script`, only when the
    /// script calls `net_kernel:start/1` itself (`SNAME` in its env), so
    /// nothing can reach it before it has registered its processes.
    fn start(sname: &str, env: &[(&str, &str)], script: &str, dist_in_script: bool) -> Self {
        let mut cmd = Command::new("erl");
        if dist_in_script {
            cmd.env("SNAME", sname);
        } else {
            cmd.args(["-sname", sname]);
        }
        cmd.args([
            "-setcookie",
            COOKIE,
            "-noshell",
            "-kernel",
            "dist_auto_connect",
            "never",
            "-eval",
            script,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("erl starts (is erlang installed?)");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line starting with `prefix`; returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        if let Some(line) = self.seen.iter().find(|l| l.starts_with(prefix)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    eprintln!("node> {line}");
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!("no line starting with {prefix:?}; saw {:?}", self.seen),
            }
        }
    }

    /// Every line printed so far (without waiting).
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            eprintln!("node> {line}");
            self.seen.push(line);
        }
        &self.seen
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

struct Relay {
    node: String,
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    _epmd: Stream,
}

async fn start_relay(host: &str, tune: impl FnOnce(&mut Settings)) -> Relay {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("jido_relay=debug")
        .try_init();
    let _ = Command::new("epmd").arg("-daemon").status();
    let name = unique("jrelay");
    let node: NodeName = format!("{name}@{host}").parse().unwrap();
    let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (epmd, creation) = server::register(&node, port, 4369)
        .await
        .expect("epmd registration");
    let settings = Settings {
        local: LocalNode::new(node.clone(), creation),
        cookie: COOKIE.into(),
        tick_interval: Duration::from_secs(5),
        peer_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(20),
        send_timeout: Duration::from_secs(20),
        max_connections: 16,
        limits: connection::Limits::default(),
        allowlist: jido_relay::config::default_allowlist(),
        queue_capacity: 10_000,
        rtt_interval: Duration::from_millis(200),
        dial_attempts: 5,
        dial_backoff: Duration::from_millis(100),
        dial_backoff_max: Duration::from_secs(1),
        epmd_port: 4369,
    };
    let mut settings = settings;
    tune(&mut settings);
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server::run(listener, settings, async {
        let _ = rx.await;
    }));
    Relay {
        node: node.to_string(),
        addr: ([127, 0, 0, 1], port).into(),
        stop,
        task,
        _epmd: epmd,
    }
}

// B (started with `dist_in_script`): the Receiver counts `{msg, I, Bin}` that arrive in order, answers
// `{hello, Pid}` with a `{jido_ack, node(), Count}` sent to Pid through the
// relay; `not_allowed` reports anything that reaches it.
const B_SCRIPT: &str = r#"
Relay = list_to_atom(os:getenv("RELAY")),
register('Elixir.Jido.Distributed.Transport.Receiver', self()),
register(not_allowed, spawn(fun L() -> receive M -> io:format("LEAK ~p~n", [M]), L() end end)),
{ok, _} = net_kernel:start([list_to_atom(os:getenv("SNAME")), shortnames]),
io:format("READY~n"),
Loop = fun Loop(N) ->
  receive
    {msg, I, Bin} when I =:= N + 1, byte_size(Bin) =:= 1000 ->
      case (N + 1) rem 50 of 0 -> io:format("AT ~p~n", [N + 1]); _ -> ok end,
      Loop(N + 1);
    {msg, I, _} -> io:format("ORDER ~p ~p~n", [N, I]), Loop(N);
    {hello, APid} -> {jido_relay, Relay} ! {fwd, APid, {jido_ack, node(), N}}, Loop(N);
    Other -> io:format("OTHER ~p~n", [Other]), Loop(N)
  end
end,
Loop(list_to_integer(os:getenv("START", "0"))).
"#;

// A: refused and garbage requests first, then 2000 frames and a hello; waits
// for B's ack, then reads the stats and the RTT table.
const A_SCRIPT: &str = r#"
Relay = list_to_atom(os:getenv("RELAY")),
B = list_to_atom(os:getenv("BNODE")),
true = net_kernel:connect_node(Relay),
R = {jido_relay, Relay},
Recv = 'Elixir.Jido.Distributed.Transport.Receiver',
R ! {fwd, B, not_allowed, secret},
R ! {fwd, B}, R ! {fwd, 42, x, y}, R ! {fwd, B, Recv}, R ! garbage, R ! {fwd, self()},
R ! {fwd, node(), Recv, to_myself_is_fine},
Bin = binary:copy(<<7>>, 1000),
[R ! {fwd, B, Recv, {msg, I, Bin}} || I <- lists:seq(1, 2000)],
R ! {fwd, B, Recv, {hello, self()}},
receive {jido_ack, B, N} -> io:format("ACKED ~p~n", [N]) after 30000 -> io:format("NOACK~n") end,
io:format("DIRECT ~p~n", [lists:member(B, nodes(connected))]),
Ref = make_ref(), R ! {stats, self(), Ref},
receive
  {jido_relay_stats, Ref, Peers, T} ->
    io:format("TOTALS ~w ~w ~w ~w~n", [maps:get(forwarded, T), maps:get(refused, T), maps:get(dropped, T), maps:get(malformed, T)]),
    #{B := Row} = Peers,
    io:format("BROW ~w ~w~n", [maps:get(frames_out, Row), maps:get(drops, Row)])
after 10000 -> io:format("NOSTATS~n")
end,
WaitRtt = fun W(K) ->
  Ref2 = make_ref(), R ! {rtt, self(), Ref2},
  receive {jido_relay_rtt, Ref2, Table} ->
    case maps:is_key(B, Table) andalso maps:is_key(node(), Table) of
      true -> io:format("RTT ok~n");
      false when K > 0 -> timer:sleep(200), W(K - 1);
      false -> io:format("RTT missing ~p~n", [Table])
    end
  after 10000 -> io:format("NORTT~n")
  end
end,
WaitRtt(100),
Ref3 = make_ref(), R ! {subscribe_rtt, self(), Ref3},
receive {jido_relay_rtt, Ref3, _} -> ok after 10000 -> io:format("NOSUB~n") end,
receive {jido_relay_rtt, Ref3, T3} -> io:format("PUSH ~p~n", [maps:is_key(B, T3)])
after 10000 -> io:format("NOPUSH~n")
end,
R ! {unsubscribe_rtt, self(), Ref3},
io:format("END~n").
"#;

// A raw erl_dist client that sends garbage straight at the relay and then
// checks it still answers a ping on the same connection.
async fn garbage_client(relay: &Relay, b_node: &str, host: &str) {
    let socket = TcpStream::connect(relay.addr).await.unwrap();
    let name = unique("garbage");
    let local = LocalNode::new(
        format!("{name}@{host}").parse().unwrap(),
        Creation::random(),
    );
    let me = Pid::new(format!("{name}@{host}"), 1, 0, local.creation.get());
    let mut hs = ClientSideHandshake::new(Stream::new(socket), local, COOKIE);
    let status = hs.execute_send_name(6).await.unwrap();
    assert_eq!(status, HandshakeStatus::Ok);
    let (stream, _) = hs.execute_rest(true).await.unwrap();
    let mut writer = stream.clone();

    // A well-formed forward head to B's Receiver followed by broken
    // message bytes: must be refused by the term check, never forwarded.
    let good = Message::reg_send(
        me.clone(),
        Atom::from("jido_relay"),
        Tuple::from(vec![
            Atom::from("fwd").into(),
            Atom::from(b_node).into(),
            Atom::from("Elixir.Jido.Distributed.Transport.Receiver").into(),
            Atom::from("x").into(),
        ])
        .into(),
    );
    let frame = connection::encode(good).unwrap();
    let head = &frame[5..frame.len() - 3]; // drop the trailing atom `x`
    for tail in [&[119u8, 200][..], &[108, 0xff, 0xff, 0xff, 0xff], &[99]] {
        let mut body = head.to_vec();
        body.extend_from_slice(tail);
        let mut bytes = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        bytes.push(112);
        bytes.extend(body);
        writer.write_all(&bytes).await.unwrap();
    }
    writer.write_all(&[0, 0, 0, 3, 112, 131, 99]).await.unwrap();

    let ping = Message::reg_send(
        me.clone(),
        Atom::from("jido_relay"),
        Tuple::from(vec![
            Atom::from("ping").into(),
            me.clone().into(),
            Reference::from((me.node.name.as_str(), vec![1, 2, 3])).into(),
        ])
        .into(),
    );
    connection::write(&mut writer, ping).await.unwrap();
    let mut reader = Reader::new(stream, connection::Limits::default());
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, reader.read()).await {
            Ok(Ok(Incoming::Message(m))) => {
                if let Message::Send(send) = *m {
                    if send.to_pid == me {
                        break;
                    }
                }
            }
            Ok(Ok(_)) => continue,
            other => panic!("relay stopped answering after garbage: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_between_real_nodes_by_name_and_by_pid() {
    let host = jido_relay::config::short_hostname().expect("hostname");
    let relay = start_relay(&host, |_| {}).await;
    let b_name = unique("jrb");
    let b_node = format!("{b_name}@{host}");
    let mut b = Node::start(&b_name, &[("RELAY", &relay.node)], B_SCRIPT, true);
    b.wait_for("READY");

    garbage_client(&relay, &b_node, &host).await;

    let a_name = unique("jra");
    let mut a = Node::start(
        &a_name,
        &[("RELAY", &relay.node), ("BNODE", &b_node)],
        A_SCRIPT,
        false,
    );
    let acked = a.wait_for("ACKED");
    assert_eq!(acked, "ACKED 2000", "B got all 2000 frames in order");
    assert_eq!(a.wait_for("DIRECT"), "DIRECT false", "A and B never met");
    let totals = a.wait_for("TOTALS");
    let fields: Vec<u64> = totals
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap())
        .collect();
    // 2000 frames, the hello, B's ack and the forward to A itself;
    // one refusal (not_allowed); nothing dropped; the garbage client's
    // four messages failed the term check.
    assert_eq!(fields, [2003, 1, 0, 4], "{totals}");
    let brow = a.wait_for("BROW");
    let frames_to_b: u64 = brow.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(frames_to_b >= 2001, "{brow}");
    assert_eq!(a.wait_for("RTT"), "RTT ok");
    assert_eq!(a.wait_for("PUSH"), "PUSH true", "subscribers get pushes");
    a.wait_for("END");

    let b_lines = b.drain().to_vec();
    assert!(
        !b_lines
            .iter()
            .any(|l| l.starts_with("LEAK") || l.starts_with("ORDER")),
        "{b_lines:?}"
    );

    drop(a);
    drop(b);
    let _ = relay.stop.send(());
    tokio::time::timeout(WAIT, relay.task)
        .await
        .expect("relay stops")
        .unwrap();
}

/// An erl_dist client node connected straight to the relay.
struct Client {
    me: Pid,
    writer: Stream,
    reader: Reader<Stream>,
}

impl Client {
    async fn connect(relay: &Relay, host: &str) -> Self {
        let socket = TcpStream::connect(relay.addr).await.unwrap();
        let name = format!("{}@{host}", unique("client"));
        let local = LocalNode::new(name.parse().unwrap(), Creation::random());
        let me = Pid::new(name, 1, 0, local.creation.get());
        let mut hs = ClientSideHandshake::new(Stream::new(socket), local, COOKIE);
        assert_eq!(hs.execute_send_name(6).await.unwrap(), HandshakeStatus::Ok);
        let (stream, _) = hs.execute_rest(true).await.unwrap();
        Self {
            me,
            writer: stream.clone(),
            reader: Reader::new(stream, connection::Limits::default()),
        }
    }

    async fn forward(&mut self, node: &str, i: i32) {
        let msg = Tuple::from(vec![
            Atom::from("msg").into(),
            erl_dist::term::FixInteger::from(i).into(),
            erl_dist::term::Binary::from(vec![7u8; 1000]).into(),
        ]);
        let request = Tuple::from(vec![
            Atom::from("fwd").into(),
            Atom::from(node).into(),
            Atom::from(jido_relay::config::RECEIVER_NAME).into(),
            msg.into(),
        ]);
        let m = Message::reg_send(self.me.clone(), Atom::from("jido_relay"), request.into());
        connection::write(&mut self.writer, m).await.unwrap();
    }

    /// Whether the relay reports a connection to `node`.
    async fn relay_connected_to(&mut self, node: &str) -> bool {
        let reference = Reference::from((self.me.node.name.as_str(), vec![7, 7, 7]));
        let ask = Tuple::from(vec![
            Atom::from("stats").into(),
            self.me.clone().into(),
            reference.into(),
        ]);
        let m = Message::reg_send(self.me.clone(), Atom::from("jido_relay"), ask.into());
        connection::write(&mut self.writer, m).await.unwrap();
        loop {
            let item = tokio::time::timeout(WAIT, self.reader.read())
                .await
                .expect("stats reply in time");
            let Ok(Incoming::Message(m)) = item else {
                continue;
            };
            let Message::Send(send) = *m else { continue };
            let erl_dist::term::Term::Tuple(t) = send.message else {
                continue;
            };
            let erl_dist::term::Term::Map(peers) = &t.elements[2] else {
                panic!("peers map")
            };
            let Some(erl_dist::term::Term::Map(row)) = peers.map.get(&Atom::from(node).into())
            else {
                return false;
            };
            return row.map.get(&Atom::from("connected").into())
                == Some(&Atom::from("true").into());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_for_a_restarting_node_wait_and_are_delivered_in_order() {
    let host = jido_relay::config::short_hostname().expect("hostname");
    // Dial for a long while: the node restarts within it.
    let relay = start_relay(&host, |s| {
        s.dial_attempts = 200;
        s.dial_backoff_max = Duration::from_millis(250);
    })
    .await;
    let b_name = unique("jrb");
    let b_node = format!("{b_name}@{host}");
    let mut b = Node::start(&b_name, &[("RELAY", &relay.node)], B_SCRIPT, true);
    b.wait_for("READY");
    let mut client = Client::connect(&relay, &host).await;
    for i in 1..=100 {
        client.forward(&b_node, i).await;
    }
    b.wait_for("AT 100");
    drop(b);

    let deadline = Instant::now() + WAIT;
    while client.relay_connected_to(&b_node).await {
        assert!(Instant::now() < deadline, "relay never saw B go");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // B is down: these queue while the relay keeps dialling.
    for i in 101..=200 {
        client.forward(&b_node, i).await;
    }
    let mut b = Node::start(
        &b_name,
        &[("RELAY", &relay.node), ("START", "100")],
        B_SCRIPT,
        true,
    );
    b.wait_for("AT 200");
    let lines = b.drain().to_vec();
    assert!(!lines.iter().any(|l| l.starts_with("ORDER")), "{lines:?}");
    assert!(client.relay_connected_to(&b_node).await);

    drop(b);
    let _ = relay.stop.send(());
    tokio::time::timeout(WAIT, relay.task)
        .await
        .expect("relay stops")
        .unwrap();
}
