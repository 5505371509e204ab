//! Finding the distinct atoms of a lone term by walking the term itself.
//!
//! A frame is sent with the atoms its entries contain (see [`crate::etf`]).
//! For the usual case, one signal of maps, lists, tuples and scalars, the
//! atoms are at hand in the term and need no lookup by name; for anything
//! else, or several terms, walking the entries' external term format and
//! looking each distinct atom up once is faster. This module holds that
//! decision and the walk, over any term type that implements [`Walkable`]
//! (the NIF implements it for Erlang terms).

/// The deepest nesting walked before leaving the term to the ETF walk.
pub const MAX_DEPTH: usize = 64;
/// The most distinct atoms collected: past a few dozen the linear search
/// loses to the ETF walk's hashing.
pub const MAX_ATOMS: usize = 64;
/// The most terms walked: above it, the ETF walk is faster (each distinct
/// atom is looked up once for all of them, while the term walk iterates
/// every map through the NIF API).
pub const MAX_TERMS: usize = 1;

/// What a term is, as far as the walk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<A> {
    /// An atom.
    Atom(A),
    /// A binary, integer or float: no atoms inside.
    Scalar,
    /// A map, list or tuple: its children are walked.
    Compound,
    /// Anything else (pids, ports, references, funs): atoms hide inside, so
    /// the walk gives up.
    Opaque,
}

/// A term the walk can look into.
pub trait Walkable: Copy {
    /// The atom type.
    type Atom: Copy + PartialEq;

    /// What this term is.
    fn kind(self) -> Kind<Self::Atom>;

    /// Calls `visit` on every child of a compound term (map keys and
    /// values, list elements and an improper tail, tuple elements) until it
    /// returns false. False if `visit` did, or if the children cannot be
    /// read.
    fn each_child(self, visit: impl FnMut(Self) -> bool) -> bool;
}

/// The distinct atoms of `terms`, in order of first appearance, or `None`
/// when the terms are better left to the ETF walk (more than [`MAX_TERMS`]
/// terms, an opaque term, nesting deeper than [`MAX_DEPTH`], or more than
/// [`MAX_ATOMS`] distinct atoms).
pub fn distinct_atoms<T: Walkable>(terms: &[T]) -> Option<Vec<T::Atom>> {
    if terms.len() > MAX_TERMS {
        return None;
    }
    let mut found = Vec::new();
    terms
        .iter()
        .all(|&term| collect(term, &mut found, MAX_DEPTH))
        .then_some(found)
}

fn collect<T: Walkable>(term: T, found: &mut Vec<T::Atom>, depth: usize) -> bool {
    if depth == 0 {
        return false;
    }
    match term.kind() {
        Kind::Atom(atom) => {
            if !found.contains(&atom) {
                found.push(atom);
            }
            found.len() <= MAX_ATOMS
        }
        Kind::Scalar => true,
        Kind::Compound => term.each_child(|child| collect(child, found, depth - 1)),
        Kind::Opaque => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small stand-in for Erlang terms.
    #[derive(Debug)]
    enum T {
        Atom(u32),
        Int,
        List(Vec<T>),
        Map(Vec<(T, T)>),
        Pid,
    }

    impl Walkable for &T {
        type Atom = u32;

        fn kind(self) -> Kind<u32> {
            match self {
                T::Atom(a) => Kind::Atom(*a),
                T::Int => Kind::Scalar,
                T::List(_) | T::Map(_) => Kind::Compound,
                T::Pid => Kind::Opaque,
            }
        }

        fn each_child(self, mut visit: impl FnMut(Self) -> bool) -> bool {
            match self {
                T::List(items) => items.iter().all(visit),
                T::Map(pairs) => pairs.iter().all(|(k, v)| visit(k) && visit(v)),
                _ => true,
            }
        }
    }

    fn nested(depth: usize) -> T {
        (0..depth).fold(T::Atom(1), |inner, _| T::List(vec![inner]))
    }

    #[test]
    fn a_signal_gives_its_atoms_once_in_order_of_appearance() {
        let signal = T::Map(vec![
            (T::Atom(1), T::Int),
            (T::Atom(2), T::Atom(3)),
            (T::Atom(4), T::List(vec![T::Atom(3), T::Atom(1), T::Int])),
        ]);
        assert_eq!(distinct_atoms(&[&signal]), Some(vec![1, 2, 3, 4]));
        assert_eq!(distinct_atoms::<&T>(&[]), Some(vec![]));
    }

    #[test]
    fn gives_up_where_the_etf_walk_does_better() {
        let pid_inside = T::List(vec![T::Atom(1), T::Pid]);
        assert_eq!(distinct_atoms(&[&pid_inside]), None);
        assert_eq!(distinct_atoms(&[&T::Int, &T::Int]), None);
        let many = T::List((0..=MAX_ATOMS as u32).map(T::Atom).collect());
        assert_eq!(distinct_atoms(&[&many]), None);
        let enough = T::List((0..MAX_ATOMS as u32).map(T::Atom).collect());
        assert_eq!(distinct_atoms(&[&enough]).map(|a| a.len()), Some(MAX_ATOMS));
    }

    #[test]
    fn depth_is_bounded() {
        assert_eq!(distinct_atoms(&[&nested(MAX_DEPTH - 1)]), Some(vec![1]));
        assert_eq!(distinct_atoms(&[&nested(MAX_DEPTH)]), None);
    }
}
