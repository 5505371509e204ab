//! epmd registration, the accept loop and the per-connection handler.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests drive a
//! whole relay in-process on port 0 without epmd; `main` adds [`register`]
//! and the stdin/signal shutdown.

use crate::command::{Command, Context};
use crate::config::Config;
use crate::connection::{self, Incoming, ReadError, Reader};
use crate::dial;
use crate::forward::{self, Dest, Forward};
use crate::peers::{Claim, Enqueued, Frame, PeerStats, Peers};
use crate::shutdown::{self, Shutdown};
use crate::stats;
use crate::stream::Stream;
use erl_dist::epmd::{EpmdClient, EpmdError, NodeEntry};
use erl_dist::handshake::{HandshakeError, HandshakeStatus, ServerSideHandshake};
use erl_dist::message::Message;
use erl_dist::node::{Creation, LocalNode, NodeName, PeerNode};
use erl_dist::term::{Pid, Term};
use futures::io::AsyncWriteExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};
use tracing::{debug, error, info, warn, Instrument};

/// How long a handler gets to finish after shutdown before it is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Accept errors (e.g. out of file descriptors) back off up to this long.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Everything a connection handler needs; shared by all handlers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node: name, flags, creation.
    pub local: LocalNode,
    /// Cookie expected from peers.
    pub cookie: String,
    /// Interval between ticks sent on each connection.
    pub tick_interval: Duration,
    /// A peer silent this long (not even a tick) is dropped. BEAM ticks every
    /// `net_ticktime / 4` (15 s by default), so the default allows 60 s plus
    /// slack, whatever `tick_interval` is.
    pub peer_timeout: Duration,
    /// A handshake must complete within this time.
    pub handshake_timeout: Duration,
    /// A single send (the peer not reading) may block this long.
    pub send_timeout: Duration,
    /// Cap on concurrent connections, handshakes included.
    pub max_connections: usize,
    /// Bounds on incoming messages (and so on forwarded terms).
    pub limits: connection::Limits,
    /// Registered names a `{fwd, Node, Name, Msg}` may deliver to.
    pub allowlist: Vec<String>,
    /// Frames queued per peer node before new ones are dropped.
    pub queue_capacity: usize,
    /// Interval between RTT probes on each connection.
    pub rtt_interval: Duration,
    /// Dial attempts per request before giving up.
    pub dial_attempts: u32,
    /// Delay before the second dial attempt; doubles each attempt.
    pub dial_backoff: Duration,
    /// Longest delay between dial attempts.
    pub dial_backoff_max: Duration,
    /// Port of epmd on the hosts the relay dials.
    pub epmd_port: u16,
}

impl Settings {
    /// Settings for `config`, with the `creation` epmd handed out.
    pub fn new(config: &Config, creation: Creation) -> Self {
        Self {
            local: LocalNode::new(config.node_name.clone(), creation),
            cookie: config.cookie.clone(),
            tick_interval: config.tick_interval,
            peer_timeout: Duration::from_secs(75).max(config.tick_interval * 4),
            handshake_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60).max(config.tick_interval * 4),
            max_connections: config.max_connections,
            limits: config.limits,
            allowlist: config.allowlist.clone(),
            queue_capacity: config.queue_capacity,
            rtt_interval: config.rtt_interval,
            dial_attempts: config.dial_attempts,
            dial_backoff: Duration::from_millis(100),
            dial_backoff_max: config.dial_backoff_max,
            epmd_port: config.epmd_port,
        }
    }

    /// This relay's pid: the sender of forwards and probes. No process has
    /// it; links and monitors to it get `noproc`.
    pub fn relay_pid(&self) -> Pid {
        Pid::new(self.local.name.to_string(), 0, 0, self.local.creation.get())
    }
}

/// Startup failures.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Cannot reach epmd.
    #[error("cannot connect to epmd on 127.0.0.1:{port}: {source} (is epmd running? try `epmd -daemon`)")]
    EpmdUnreachable {
        /// epmd port tried.
        port: u16,
        /// Cause.
        source: std::io::Error,
    },
    /// epmd refused the registration.
    #[error("epmd refused to register {name}: {source} (is another node with that name running?)")]
    Register {
        /// Name part that was refused.
        name: String,
        /// Cause.
        source: EpmdError,
    },
}

/// Registers `node` (listening on `port`) with the local epmd as a hidden
/// node. The returned stream must stay open: epmd drops the name when it
/// closes.
pub async fn register(
    node: &NodeName,
    port: u16,
    epmd_port: u16,
) -> Result<(Stream, Creation), ServerError> {
    let socket = TcpStream::connect(("127.0.0.1", epmd_port))
        .await
        .map_err(|source| ServerError::EpmdUnreachable {
            port: epmd_port,
            source,
        })?;
    EpmdClient::new(Stream::new(socket))
        .register(NodeEntry::new_hidden(node.name(), port))
        .await
        .map_err(|source| ServerError::Register {
            name: node.name().to_owned(),
            source,
        })
}

// What every connection and dial task shares.
struct Hub {
    settings: Settings,
    peers: Peers,
    relay_pid: Pid,
    stop: Shutdown,
    // RTT table subscribers: (pid, reference echoed in each push).
    rtt_subscribers: Mutex<Vec<(Pid, Term)>>,
}

impl Hub {
    fn subscribers(&self) -> MutexGuard<'_, Vec<(Pid, Term)>> {
        self.rtt_subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

// Pushes the RTT table to every subscriber each RTT interval; drops
// subscribers whose node is no longer connected.
async fn push_rtt(hub: Arc<Hub>) {
    let mut stop = hub.stop.clone();
    let mut every = tokio::time::interval(hub.settings.rtt_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = every.tick() => {}
        }
        let subscribers = {
            let mut subs = hub.subscribers();
            subs.retain(|(pid, _)| hub.peers.is_connected(&pid.node.name));
            subs.clone()
        };
        if subscribers.is_empty() {
            continue;
        }
        let snapshot = hub.peers.snapshot();
        for (pid, reference) in subscribers {
            let push = Message::send(pid.clone(), stats::rtt_reply(reference, &snapshot));
            if let Ok(frame) = connection::encode(push) {
                hub.peers.enqueue(&pid.node.name, frame);
            }
        }
    }
}

/// Accepts connections until `shutdown` resolves, then tells every handler
/// to stop and waits (briefly) for them.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: impl Future<Output = ()>) {
    let (trigger, stop) = shutdown::channel();
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let settings = Arc::new(Hub {
        peers: Peers::new(settings.queue_capacity),
        relay_pid: settings.relay_pid(),
        settings,
        stop: stop.clone(),
        rtt_subscribers: Mutex::new(Vec::new()),
    });
    let pusher = tokio::spawn(push_rtt(Arc::clone(&settings)));
    let mut handlers = JoinSet::new();
    let mut backoff = Duration::from_millis(10);
    tokio::pin!(shutdown);

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(done) = handlers.join_next(), if !handlers.is_empty() => {
                if let Err(e) = done {
                    error!(cause = %e, "connection handler failed");
                }
            }
            accepted = accept(&listener, &limit) => match accepted {
                Ok((socket, permit)) => {
                    backoff = Duration::from_millis(10);
                    let settings = Arc::clone(&settings);
                    let stop = stop.clone();
                    let addr = socket
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "?".into());
                    let span = tracing::info_span!("conn", %addr);
                    handlers.spawn(
                        async move {
                            serve(socket, settings, stop).await;
                            drop(permit);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    warn!(cause = %e, ?backoff, "accept failed; backing off");
                    tokio::select! {
                        _ = sleep(backoff) => {}
                        _ = &mut shutdown => break,
                    }
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                }
            },
        }
    }

    drop(listener);
    trigger.fire();
    pusher.abort();
    let drained = timeout(SHUTDOWN_GRACE, async {
        while handlers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("connection handlers did not stop in time; aborting them");
        handlers.shutdown().await;
    }
}

async fn accept(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
) -> std::io::Result<(TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    // The semaphore is never closed, so acquiring only fails if it were.
    let permit = Arc::clone(limit)
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("connection limit closed"))?;
    let (socket, _) = listener.accept().await?;
    Ok((socket, permit))
}

/// Why a connection ended, when it was not a clean close.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("handshake timed out")]
    HandshakeTimeout,
    #[error("peer asked for a dynamic node name, which this relay does not hand out")]
    DynamicName,
    #[error("already connected to this node (or our own dial wins)")]
    Duplicate,
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("send failed: {0}")]
    Send(#[from] std::io::Error),
    #[error("send timed out (peer not reading)")]
    SendTimeout,
    #[error("peer silent for {0:?}")]
    PeerTimeout(Duration),
}

async fn serve(socket: TcpStream, hub: Arc<Hub>, mut stop: Shutdown) {
    let _ = socket.set_nodelay(true);
    let stream = Stream::new(socket);

    let handshake = timeout(hub.settings.handshake_timeout, handshake(stream, &hub));
    let outcome = tokio::select! {
        r = handshake => r,
        _ = stop.recv() => return,
    };
    let (stream, peer) = match outcome {
        Ok(Ok(ok)) => ok,
        Ok(Err(ConnError::Handshake(HandshakeError::CookieMismatch))) => {
            warn!("refused a connection: cookie mismatch");
            return;
        }
        Ok(Err(e)) => {
            warn!(cause = %e, "refused a connection");
            return;
        }
        Err(_) => {
            warn!(cause = %ConnError::HandshakeTimeout, "refused a connection");
            return;
        }
    };
    let node = peer.name.to_string();
    match hub.peers.claim(&node) {
        Some(claim) => connected(stream, node, claim, &hub, stop).await,
        None => warn!(node = %node, cause = %ConnError::Duplicate, "refused a connection"),
    }
}

async fn handshake(stream: Stream, hub: &Hub) -> Result<(Stream, PeerNode), ConnError> {
    let settings = &hub.settings;
    let mut hs = ServerSideHandshake::new(stream, settings.local.clone(), &settings.cookie);
    let Some(name) = hs.execute_recv_name().await? else {
        // Reply `not_allowed` so the peer gets a clear refusal.
        let _ = hs.execute_rest(HandshakeStatus::NotAllowed).await;
        return Err(ConnError::DynamicName);
    };
    let status = hub
        .peers
        .admit(&name.to_string(), &settings.local.name.to_string());
    if status == HandshakeStatus::Nok {
        let _ = hs.execute_rest(HandshakeStatus::Nok).await;
        return Err(ConnError::Duplicate);
    }
    Ok(hs.execute_rest(status).await?)
}

// Runs a session on a connection that owns `node`'s queue, then gives the
// queue back.
async fn connected(stream: Stream, node: String, claim: Claim, hub: &Arc<Hub>, stop: Shutdown) {
    let span = tracing::info_span!("peer", node = %node);
    async {
        info!("node connected");
        let (rx, result) = session(stream, &node, claim, hub, stop).await;
        match result {
            Ok(()) => info!("node disconnected"),
            Err(e) => warn!(cause = %e, "connection closed"),
        }
        // Frames still queued: reconnect to deliver them (bounded attempts).
        if hub.peers.release(&node, rx) && !hub.stop.is_shutdown() {
            tokio::spawn(dial_loop(Arc::clone(hub), node.clone()).in_current_span());
        }
    }
    .instrument(span)
    .await;
}

// Dials `node` with backoff until connected, refused for good, out of
// attempts or shut down.
// Boxed with an explicit `Send`: sessions spawn dials and dials run
// sessions, a cycle the compiler cannot see through otherwise.
fn dial_loop(hub: Arc<Hub>, node: String) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(dial(hub, node))
}

async fn dial(hub: Arc<Hub>, node: String) {
    let settings = &hub.settings;
    let mut stop = hub.stop.clone();
    for attempt in 0..settings.dial_attempts.max(1) {
        let delay = dial::backoff(attempt, settings.dial_backoff, settings.dial_backoff_max);
        tokio::select! {
            _ = sleep(delay) => {}
            _ = stop.recv() => break,
        }
        if hub.peers.is_connected(&node) {
            break;
        }
        let result = tokio::select! {
            r = dial::connect(&node, settings) => r,
            _ = stop.recv() => break,
        };
        match result {
            Ok((stream, _peer)) => {
                let claim = hub.peers.claim(&node);
                hub.peers.dial_done(&node);
                match claim {
                    Some(claim) => connected(stream, node, claim, &hub, stop).await,
                    None => {
                        debug!(node = %node, "dialled a node that connected meanwhile; closing ours")
                    }
                }
                return;
            }
            Err(e) => warn!(node = %node, attempt, cause = %e, "dial failed"),
        }
    }
    hub.peers.dial_done(&node);
}

// Queues a forward for its destination, if allowed.
fn forward(hub: &Arc<Hub>, fwd: &Forward, bytes: &[u8]) {
    let counters = &hub.peers.counters;
    if let Dest::Name { name, .. } = &fwd.dest {
        if !hub.settings.allowlist.iter().any(|a| a == name) {
            counters.refused.fetch_add(1, Relaxed);
            debug!(name = %name, "forward to a name outside the allowlist refused");
            return;
        }
    }
    let node = fwd.dest.node();
    if node == hub.relay_pid.node.name {
        counters.refused.fetch_add(1, Relaxed);
        debug!("forward to the relay itself refused");
        return;
    }
    let Some(frame) = bytes
        .get(fwd.msg.clone())
        .and_then(|msg| forward::encode(&fwd.dest, &hub.relay_pid, msg))
    else {
        counters.malformed.fetch_add(1, Relaxed);
        return;
    };
    match hub.peers.enqueue(node, frame) {
        Enqueued::Queued { dial } => {
            counters.forwarded.fetch_add(1, Relaxed);
            if dial {
                tokio::spawn(dial_loop(Arc::clone(hub), node.to_owned()).in_current_span());
            }
        }
        Enqueued::Dropped => {
            counters.dropped.fetch_add(1, Relaxed);
        }
    }
}

// Writes queued frames until told to stop or a write fails; hands the
// queue back either way.
async fn write_loop(
    mut rx: mpsc::Receiver<Frame>,
    mut writer: Stream,
    stats: Arc<PeerStats>,
    send_timeout: Duration,
    mut done: oneshot::Receiver<()>,
) -> (mpsc::Receiver<Frame>, Result<(), ConnError>) {
    let result = loop {
        let frame = tokio::select! {
            _ = &mut done => break Ok(()),
            frame = rx.recv() => match frame {
                Some(frame) => frame,
                None => break Ok(()),
            },
        };
        match timeout(send_timeout, writer.write_all(&frame)).await {
            Ok(Ok(())) => {
                stats.frames_out.fetch_add(1, Relaxed);
                stats.bytes_out.fetch_add(frame.len() as u64, Relaxed);
            }
            Ok(Err(e)) => break Err(ConnError::Send(e)),
            Err(_) => break Err(ConnError::SendTimeout),
        }
    };
    (rx, result)
}

// An established connection: answer messages, forward, probe, send ticks,
// watch liveness. Returns the queue's receiving end.
async fn session(
    stream: Stream,
    node: &str,
    claim: Claim,
    hub: &Arc<Hub>,
    mut stop: Shutdown,
) -> (mpsc::Receiver<Frame>, Result<(), ConnError>) {
    let settings = &hub.settings;
    let ctx = Context {
        local_node: settings.local.name.to_string(),
        peer_node: node.to_owned(),
    };
    let Claim { rx, tx, stats } = claim;
    let (done_tx, done_rx) = oneshot::channel();
    let mut writer = tokio::spawn(
        write_loop(
            rx,
            stream.clone(),
            Arc::clone(&stats),
            settings.send_timeout,
            done_rx,
        )
        .in_current_span(),
    );
    // Replies, ticks and probes share the queue: dropped when it is full
    // (the peer is then not reading, or is receiving plenty anyway).
    let out = |message: Message| match connection::encode(message) {
        Ok(frame) => {
            if tx.try_send(frame).is_err() {
                stats.drops.fetch_add(1, Relaxed);
            }
        }
        Err(e) => warn!(cause = %e, "cannot encode a reply"),
    };

    // Reads are not cancel-safe, so they run in their own task and arrive
    // here through a channel that `select!` can poll safely.
    let (incoming_tx, mut incoming) = mpsc::channel(64);
    let mut reader = Reader::new(stream, settings.limits);
    let reader_task = tokio::spawn(
        async move {
            loop {
                let item = reader.read().await;
                let last = item.is_err();
                if incoming_tx.send((item, reader.last_len())).await.is_err() || last {
                    break;
                }
            }
        }
        .in_current_span(),
    );

    let mut ticker = tokio::time::interval_at(
        Instant::now() + settings.tick_interval,
        settings.tick_interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prober = tokio::time::interval_at(
        Instant::now() + settings.rtt_interval,
        settings.rtt_interval,
    );
    prober.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probe_id = 0u32;
    let mut probe_sent: Option<(u32, Instant)> = None;
    let idle = sleep(settings.peer_timeout);
    tokio::pin!(idle);

    let result = loop {
        tokio::select! {
            _ = stop.recv() => break Ok(()),
            _ = ticker.tick() => out(Message::Tick),
            _ = prober.tick() => {
                probe_id = probe_id.wrapping_add(1);
                probe_sent = Some((probe_id, Instant::now()));
                out(stats::probe(&hub.relay_pid, probe_id));
            }
            _ = &mut idle => break Err(ConnError::PeerTimeout(settings.peer_timeout)),
            finished = &mut writer => {
                let _ = done_tx.send(());
                reader_task.abort();
                return match finished {
                    Ok((rx, result)) => (rx, result),
                    // The writer never panics; if it did, the queue is lost
                    // with it: start a fresh one.
                    Err(_) => (mpsc::channel(1).1, Ok(())),
                };
            }
            item = incoming.recv() => {
                idle.as_mut().reset(Instant::now() + settings.peer_timeout);
                let Some((item, len)) = item else { break Ok(()) };
                if !matches!(item, Ok(Incoming::Tick)) {
                    stats.frames_in.fetch_add(1, Relaxed);
                    stats.bytes_in.fetch_add(len as u64, Relaxed);
                }
                let message = match item {
                    Err(ReadError::Closed) => break Ok(()),
                    Err(e) => break Err(e.into()),
                    Ok(Incoming::Skipped(e)) => {
                        hub.peers.counters.malformed.fetch_add(1, Relaxed);
                        warn!(cause = %e, "skipped an undecodable message");
                        continue;
                    }
                    Ok(Incoming::Forward(fwd, bytes)) => {
                        forward(hub, &fwd, &bytes);
                        continue;
                    }
                    Ok(Incoming::Tick) => Message::Tick,
                    Ok(Incoming::Message(m)) => *m,
                };
                match Command::parse(message) {
                    Command::Stats { reply_to, reference } if reply_to.node.name == ctx.peer_node => {
                        let term = stats::stats_reply(reference, &hub.peers.snapshot(), &hub.peers.counters);
                        out(Message::send(reply_to, term));
                    }
                    Command::Rtt { reply_to, reference } if reply_to.node.name == ctx.peer_node => {
                        let term = stats::rtt_reply(reference, &hub.peers.snapshot());
                        out(Message::send(reply_to, term));
                    }
                    Command::SubscribeRtt { reply_to, reference } if reply_to.node.name == ctx.peer_node => {
                        let term = stats::rtt_reply(reference.clone(), &hub.peers.snapshot());
                        let mut subs = hub.subscribers();
                        if !subs.iter().any(|(p, r)| *p == reply_to && *r == reference) {
                            subs.push((reply_to.clone(), reference));
                        }
                        drop(subs);
                        out(Message::send(reply_to, term));
                    }
                    Command::UnsubscribeRtt { reply_to, reference } => {
                        hub.subscribers().retain(|(p, r)| !(*p == reply_to && *r == reference));
                    }
                    Command::ProbeReply(reference) => {
                        let id = stats::probe_id(&hub.relay_pid, &reference);
                        if let Some((sent_id, at)) = probe_sent {
                            if id == Some(sent_id) {
                                let us = u64::try_from(at.elapsed().as_micros()).unwrap_or(u64::MAX - 1);
                                stats.rtt_us.store(us, Relaxed);
                                probe_sent = None;
                            }
                        }
                    }
                    Command::Ignore(why) => debug!(%why, "ignored a message"),
                    command => {
                        if let Some(reply) = command.reply(&ctx) {
                            out(reply);
                        }
                    }
                }
            }
        }
    };
    reader_task.abort();
    let _ = done_tx.send(());
    match writer.await {
        Ok((rx, writer_result)) => (rx, result.and(writer_result)),
        Err(_) => (mpsc::channel(1).1, result),
    }
}
