//! Pure-Rust core of jido_distributed.
//!
//! Everything byte-heavy or algorithmic lives here, with no Erlang types, so
//! it can be tested and benchmarked on its own and reused by both the NIF
//! crate and the relay C-node.

pub mod atom_walk;
pub mod buffer;
pub mod error;
pub mod etf;
pub mod frame;
pub mod inbound;
pub mod schedule;
pub mod shared_buffer;
pub mod tree;

pub use error::{ErrorName, FrameError};
