//! Normal and dirty NIF twins from one definition.
//!
//! [`twin_nif!`] defines, from one argument list and one function that does
//! the work, a NIF on a normal scheduler that first measures its input (a
//! `jido_core::schedule::Work`, whose thresholds live in jido_core) and
//! answers `:dirty` instead of doing long work, and its twin on a dirty CPU
//! scheduler that always does the work. The Elixir wrapper calls the
//! normal one and, on `:dirty`, the twin (`Jido.Distributed.Native.scheduled/1`).

use rustler::{Encoder, Env, Term};

/// What the normal-scheduler half of a twin returns.
pub enum Scheduled<T> {
    /// The work was done: its result.
    Done(T),
    /// The work is too long for a normal scheduler: call the dirty twin.
    Dirty,
}

impl<T: Encoder> Encoder for Scheduled<T> {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        match self {
            Scheduled::Done(result) => result.encode(env),
            Scheduled::Dirty => crate::atoms::dirty().encode(env),
        }
    }
}

/// `twin_nif!(name / name_dirty <'a>(arg: Type, ...) -> Ret = run; work = expr)`
/// (each argument type a name with optional generic arguments, as rustler's
/// attribute does not read macro type fragments):
/// `run(env, arg, ...)` does the work; `expr` (which may read the
/// arguments) is the `Work` it measures.
macro_rules! twin_nif {
    (
        $(#[$meta:meta])*
        fn $name:ident / $dirty:ident <$lt:lifetime> (
            $($arg:ident : $T:ident $(< $($g:tt),+ >)?),* $(,)?
        ) -> $ret:ty = $run:path;
        work = $work:expr;
    ) => {
        $(#[$meta])*
        #[rustler::nif]
        #[allow(clippy::too_many_arguments)]
        fn $name<$lt>(
            env: rustler::Env<$lt>,
            $($arg: $T $(< $($g),+ >)?),*
        ) -> $crate::schedule::Scheduled<$ret> {
            let work: jido_core::schedule::Work = $work;
            if work.dirty() {
                return $crate::schedule::Scheduled::Dirty;
            }
            $crate::schedule::Scheduled::Done($run(env, $($arg),*))
        }

        $(#[$meta])*
        #[rustler::nif(schedule = "DirtyCpu")]
        #[allow(clippy::too_many_arguments)]
        fn $dirty<$lt>(env: rustler::Env<$lt>, $($arg: $T $(< $($g),+ >)?),*) -> $ret {
            $run(env, $($arg),*)
        }
    };
}

pub(crate) use twin_nif;

/// The number of elements of a list term (0 for anything else, which the
/// work function then refuses).
pub fn list_len(term: Term) -> usize {
    term.list_length().unwrap_or(0)
}
