//! `jido_relay`: a hidden Erlang C-node for jido_distributed.
//!
//! BEAM nodes connect to it over the ordinary distribution protocol. For now
//! it answers `{ping, From, Ref}` sent to the registered name `jido_relay`
//! with `{pong, Ref, RelayNode}`, keeps every connection alive with ticks,
//! and exits when its stdin closes (its BEAM owner is gone) or on SIGTERM.
//!
//! One file per concern, after tokio's mini-redis:
//! [`config`] (arguments), [`stream`] (tokio socket for erl_dist),
//! [`connection`] (bounded message reading, with the term check from
//! [`jido_core::etf`]), [`command`] (what a message means, as pure
//! functions), [`server`] (epmd, accept loop, per-connection handler) and
//! [`shutdown`].

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
