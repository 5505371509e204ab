//! `jido_relay`: a hidden Erlang C-node for jido_distributed.
//!
//! BEAM nodes connect to it over the ordinary distribution protocol, and it
//! dials them itself when it has something for them (epmd lookup, client
//! handshake, backoff; one connection per node, simultaneous connects
//! settled as between BEAM nodes). Requests go to its registered name
//! `jido_relay`:
//!
//! - `{fwd, DestNode, DestName, Msg}`: `Msg` is written to `{DestName,
//!   DestNode}` as a REG_SEND, raw (its bytes are sliced out of the incoming
//!   message, never decoded), if `DestName` is in the allowlist (by default
//!   the Receiver and `jido_relay`); refusals are counted.
//! - `{fwd, DestPid, Msg}`: `Msg` is written to `DestPid` as a SEND (how
//!   acks reach a Link).
//! - `{ping, From, Ref}` → `{pong, Ref, RelayNode}`; `{stats, From, Ref}`
//!   and `{rtt, From, Ref}` → counters and the RTT table;
//!   `{subscribe_rtt, From, Ref}` → the RTT table every RTT interval
//!   ([`stats`]).
//!
//! Every incoming message passes [`jido_core::etf::check`] first (bounded
//! size and depth, well formed), so a forwarded term never makes its
//! destination drop the connection. Each peer node has one bounded queue
//! (drop-and-count when full, see [`peers`]) written by one writer task;
//! every connection is probed for RTT through `net_kernel`, ticked, and
//! answered `noproc` for links and monitors. The relay exits when its stdin
//! closes (its BEAM owner is gone) or on SIGTERM.
//!
//! One file per concern, after tokio's mini-redis:
//! [`config`] (arguments and limits), [`stream`] (tokio socket for
//! erl_dist), [`connection`] (bounded message reading, with the term
//! check), [`forward`] (the raw forward path), [`command`] (what a decoded
//! message means, as pure functions), [`peers`] (queues and counters per
//! node), [`stats`] (counters and probes as terms), [`dial`] (outgoing
//! connections), [`server`] (epmd, accept loop, sessions) and [`shutdown`].

pub mod command;
pub mod config;
pub mod connection;
pub mod dial;
pub mod forward;
pub mod peers;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod stream;
