//! Atoms shared by the NIF modules, and error reasons as atoms.

use jido_core::ErrorName;
use rustler::{Atom, Encoder, Env, Term};

rustler::atoms! {
    ok,
    error,
    none,
    lz4,
    auto,
    drop_oldest,
    empty,
    busy,
    invalid,
    duplicate,
    gap,
    dirty,
}

jido_core::named_error! {
    /// Erlang terms that do not have the shape a NIF expects.
    pub enum InputError {
        /// A term is not what was asked for (an entry not in external term
        /// format, a list that is not one).
        BadTerm => ("bad_term", "bad term"),
        /// A tree member is not a `{node, region, zone, healthy}` tuple.
        BadMember => ("bad_member", "bad tree member"),
        /// A node is listed twice among the tree members.
        DuplicateMember => ("duplicate_member", "duplicate tree member"),
    }
}

/// An error returned to Elixir as the atom of its name: the name of any
/// [`ErrorName`] enum, written once in that enum's definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(&'static str);

impl<E: ErrorName> From<E> for Reason {
    fn from(err: E) -> Reason {
        Reason(err.name())
    }
}

impl Encoder for Reason {
    fn encode<'a>(&self, env: Env<'a>) -> Term<'a> {
        // Names are short literals from the error enums, so the atom is
        // always made; `error` stands in should that ever fail.
        Atom::from_str(env, self.0)
            .unwrap_or_else(|_| error())
            .encode(env)
    }
}

/// Every error name of every domain, for the Elixir side to check its
/// typespecs against: `[{domain, [name]}]`.
#[rustler::nif]
fn error_names() -> Vec<(&'static str, Vec<&'static str>)> {
    use jido_core::buffer::PushError;
    use jido_core::tree::PlanError;
    use jido_core::FrameError;
    fn names<E: ErrorName>(all: &[E]) -> Vec<&'static str> {
        all.iter().map(|e| e.name()).collect()
    }
    vec![
        ("frame", names(FrameError::ALL)),
        ("plan", names(PlanError::ALL)),
        ("push", names(PushError::ALL)),
        ("input", names(InputError::ALL)),
    ]
}

/// Looks up existing atoms by their text (`latin1` tells the encoding);
/// never creates one. Returns the atoms found and, as binaries, the names
/// this NIF version cannot look up (UTF-8 beyond Latin-1) or that do not
/// exist, for the caller to convert.
pub fn lookup_existing<'a, 'b>(
    env: Env<'a>,
    texts: impl Iterator<Item = (&'b [u8], bool)>,
) -> (Vec<Atom>, Vec<Term<'a>>) {
    let mut found = Vec::new();
    let mut names = Vec::new();
    for (text, latin1) in texts {
        let atom = if latin1 || text.is_ascii() {
            Atom::existing_from_bytes(env, text)
        } else {
            Atom::existing_from_utf8_bytes(env, text)
        };
        match atom {
            Ok(atom) => found.push(atom),
            Err(_) => {
                names.push(crate::binary::copy(env, text).to_term(env));
            }
        }
    }
    (found, names)
}
