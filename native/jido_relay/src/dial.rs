//! Dialling BEAM nodes: epmd lookup, client-side handshake, backoff.
//!
//! A node is dialled when the first frame for it is queued and no
//! connection owns its queue ([`Peers::enqueue`](crate::peers::Peers::enqueue)
//! says so). Failed attempts back off exponentially from
//! [`Settings::dial_backoff`] up to [`Settings::dial_backoff_max`], for at
//! most [`Settings::dial_attempts`] attempts; an incoming connection from
//! the node ends the dialling. Frames stay queued (bounded) meanwhile.

use crate::server::Settings;
use crate::stream::Stream;
use erl_dist::epmd::{EpmdClient, EpmdError};
use erl_dist::handshake::{ClientSideHandshake, HandshakeError, HandshakeStatus};
use erl_dist::node::{NodeName, PeerNode};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Why one dial attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// Not `name@host`.
    #[error("bad node name {0:?}")]
    BadName(String),
    /// epmd on the node's host could not be asked.
    #[error("epmd on {host}: {source}")]
    Epmd {
        /// Host tried.
        host: String,
        /// Cause.
        source: std::io::Error,
    },
    /// epmd answered with an error.
    #[error("epmd lookup: {0}")]
    Lookup(#[from] EpmdError),
    /// epmd does not know the node.
    #[error("node not registered with epmd")]
    NotRegistered,
    /// The node's port refused or failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// The handshake failed (cookie, refused, simultaneous connect lost).
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// The node already has a connection to us.
    #[error("node reports a connection to this relay already")]
    Alive,
    /// Took longer than the handshake timeout.
    #[error("timed out")]
    Timeout,
}

/// The delay before attempt `attempt` (0-based; 0 means no delay).
pub fn backoff(attempt: u32, first: Duration, max: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
    first.saturating_mul(factor).min(max)
}

/// One attempt: look `node` up in epmd on its host, connect, handshake.
pub async fn connect(node: &str, settings: &Settings) -> Result<(Stream, PeerNode), DialError> {
    match timeout(settings.handshake_timeout, attempt(node, settings)).await {
        Ok(result) => result,
        Err(_) => Err(DialError::Timeout),
    }
}

async fn attempt(node: &str, settings: &Settings) -> Result<(Stream, PeerNode), DialError> {
    let name: NodeName = node
        .parse()
        .map_err(|_| DialError::BadName(node.to_owned()))?;
    let host = name.host().to_owned();
    let epmd = TcpStream::connect((host.as_str(), settings.epmd_port))
        .await
        .map_err(|source| DialError::Epmd {
            host: host.clone(),
            source,
        })?;
    let entry = EpmdClient::new(Stream::new(epmd))
        .get_node(name.name())
        .await?
        .ok_or(DialError::NotRegistered)?;
    let socket = TcpStream::connect((host.as_str(), entry.port))
        .await
        .map_err(DialError::Connect)?;
    let _ = socket.set_nodelay(true);
    let mut hs = ClientSideHandshake::new(
        Stream::new(socket),
        settings.local.clone(),
        &settings.cookie,
    );
    let status = hs.execute_send_name(entry.highest_version).await?;
    if status == HandshakeStatus::Alive {
        let _ = hs.execute_rest(false).await;
        return Err(DialError::Alive);
    }
    Ok(hs.execute_rest(true).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let first = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let delays: Vec<u128> = (0..8).map(|i| backoff(i, first, max).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(backoff(200, first, max), max);
    }
}
