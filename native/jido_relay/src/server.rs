//! epmd registration, the accept loop and the per-connection handler.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests drive a
//! whole relay in-process on port 0 without epmd; `main` adds [`register`]
//! and the stdin/signal shutdown.

use crate::command::{Command, Context};
use crate::config::Config;
use crate::connection::{self, Incoming, ReadError, Reader};
use crate::shutdown::{self, Shutdown};
use crate::stream::Stream;
use erl_dist::epmd::{EpmdClient, EpmdError, NodeEntry};
use erl_dist::handshake::{HandshakeError, HandshakeStatus, ServerSideHandshake};
use erl_dist::message::Message;
use erl_dist::node::{Creation, LocalNode, NodeName, PeerNode};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
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
    /// Bounds on incoming messages.
    pub limits: connection::Limits,
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
            limits: connection::Limits::default(),
        }
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

/// Accepts connections until `shutdown` resolves, then tells every handler
/// to stop and waits (briefly) for them.
pub async fn run(listener: TcpListener, settings: Settings, shutdown: impl Future<Output = ()>) {
    let (trigger, stop) = shutdown::channel();
    let limit = Arc::new(Semaphore::new(settings.max_connections));
    let settings = Arc::new(settings);
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
                            serve(socket, &settings, stop).await;
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
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("send failed: {0}")]
    Send(#[from] erl_dist::message::SendError),
    #[error("send timed out (peer not reading)")]
    SendTimeout,
    #[error("peer silent for {0:?}")]
    PeerTimeout(Duration),
}

async fn serve(socket: TcpStream, settings: &Settings, mut stop: Shutdown) {
    let _ = socket.set_nodelay(true);
    let stream = Stream::new(socket);

    let handshake = timeout(settings.handshake_timeout, handshake(stream, settings));
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

    let peer_name = peer.name.to_string();
    let span = tracing::info_span!("peer", node = %peer_name);
    async {
        info!("node connected");
        match session(stream, peer, settings, stop).await {
            Ok(()) => info!("node disconnected"),
            Err(e) => warn!(cause = %e, "connection closed"),
        }
    }
    .instrument(span)
    .await;
}

async fn handshake(stream: Stream, settings: &Settings) -> Result<(Stream, PeerNode), ConnError> {
    let mut hs = ServerSideHandshake::new(stream, settings.local.clone(), &settings.cookie);
    if hs.execute_recv_name().await?.is_none() {
        // Reply `not_allowed` so the peer gets a clear refusal.
        let _ = hs.execute_rest(HandshakeStatus::NotAllowed).await;
        return Err(ConnError::DynamicName);
    }
    Ok(hs.execute_rest(HandshakeStatus::Ok).await?)
}

// An established connection: answer messages, send ticks, watch liveness.
async fn session(
    stream: Stream,
    peer: PeerNode,
    settings: &Settings,
    mut stop: Shutdown,
) -> Result<(), ConnError> {
    let ctx = Context {
        local_node: settings.local.name.to_string(),
        peer_node: peer.name.to_string(),
    };
    let mut writer = stream.clone();

    // Reads are not cancel-safe, so they run in their own task and arrive
    // here through a channel that `select!` can poll safely.
    let (incoming_tx, mut incoming) = mpsc::channel(64);
    let mut reader = Reader::new(stream, settings.limits);
    let reader_task = tokio::spawn(
        async move {
            loop {
                let item = reader.read().await;
                let last = item.is_err();
                if incoming_tx.send(item).await.is_err() || last {
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
    let idle = sleep(settings.peer_timeout);
    tokio::pin!(idle);

    let result = loop {
        tokio::select! {
            _ = stop.recv() => break Ok(()),
            _ = ticker.tick() => {
                if let Err(e) = send(&mut writer, Message::Tick, settings).await {
                    break Err(e);
                }
            }
            _ = &mut idle => break Err(ConnError::PeerTimeout(settings.peer_timeout)),
            item = incoming.recv() => {
                idle.as_mut().reset(Instant::now() + settings.peer_timeout);
                let message = match item {
                    None | Some(Err(ReadError::Closed)) => break Ok(()),
                    Some(Err(e)) => break Err(e.into()),
                    Some(Ok(Incoming::Skipped(e))) => {
                        warn!(cause = %e, "skipped an undecodable message");
                        continue;
                    }
                    Some(Ok(Incoming::Tick)) => Message::Tick,
                    Some(Ok(Incoming::Message(m))) => *m,
                };
                let command = Command::parse(message);
                if let Command::Ignore(why) = &command {
                    debug!(%why, "ignored a message");
                }
                if let Some(reply) = command.reply(&ctx) {
                    if let Err(e) = send(&mut writer, reply, settings).await {
                        break Err(e);
                    }
                }
            }
        }
    };
    reader_task.abort();
    result
}

async fn send(writer: &mut Stream, message: Message, settings: &Settings) -> Result<(), ConnError> {
    match timeout(settings.send_timeout, connection::write(writer, message)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ConnError::SendTimeout),
    }
}
