//! rustler glue for jido_distributed: converts Erlang terms to and from the
//! `jido_core` types. No logic lives here.

mod atoms;
mod binary;
mod buffer;
mod frame;
mod inbound;
mod schedule;
mod tree;

rustler::init!("Elixir.Jido.Distributed.Native");
