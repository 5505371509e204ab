//! Copying Rust bytes into Erlang binaries.

use rustler::{Binary, Env, NewBinary};

/// A new Erlang binary holding a copy of `bytes`.
pub fn copy<'a>(env: Env<'a>, bytes: &[u8]) -> Binary<'a> {
    let mut out = NewBinary::new(env, bytes.len());
    out.as_mut_slice().copy_from_slice(bytes);
    out.into()
}
