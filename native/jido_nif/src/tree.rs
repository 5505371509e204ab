//! Broadcast tree NIFs: `{node, region | nil, zone | nil, healthy}` member
//! tuples in, the nested tree `{node, [subtree]}` out, so a forwarder hands
//! each child exactly the part of the tree below it.

use crate::atoms::{InputError, Reason};
use crate::schedule::{list_len, twin_nif};
use jido_core::schedule::Work;
use jido_core::tree::{self, Member, PlanError};
use rustler::types::atom::nil;
use rustler::{Atom, Encoder, Env, Term};
use std::collections::HashMap;

/// Interns labels: equal (identical) terms get the same id, `nil` none.
/// The core then compares small integers, not terms.
#[derive(Default)]
struct Labels<'a>(HashMap<Term<'a>, u32>);

impl<'a> Labels<'a> {
    fn id(&mut self, term: Term<'a>) -> Option<u32> {
        if term.decode::<Atom>().ok() == Some(nil()) {
            return None;
        }
        let next = self.0.len() as u32;
        Some(*self.0.entry(term).or_insert(next))
    }
}

fn plan<'a>(env: Env<'a>, members: Term<'a>, root: Atom, fanout: i64) -> Result<Term<'a>, Reason> {
    if fanout < 1 {
        return Err(PlanError::BadFanout.into());
    }
    let members = members
        .into_list_iterator()
        .map_err(|_| InputError::BadMember)?;
    let fanout = u32::try_from(fanout).unwrap_or(u32::MAX);
    let mut nodes: Vec<Atom> = Vec::new();
    let mut list: Vec<Member<u32>> = Vec::new();
    let mut labels = Labels::default();
    let mut index: HashMap<Atom, u32> = HashMap::new();
    for term in members {
        let (node, region, zone, healthy): (Atom, Term, Term, bool) =
            term.decode().map_err(|_| InputError::BadMember)?;
        let id = u32::try_from(nodes.len()).map_err(|_| PlanError::TooManyMembers)?;
        if index.insert(node, id).is_some() {
            return Err(InputError::DuplicateMember.into());
        }
        nodes.push(node);
        list.push(Member::new(labels.id(region), labels.id(zone), healthy));
    }
    let root = *index.get(&root).ok_or(PlanError::RootNotMember)?;
    let tree = tree::plan(&list, root, fanout)?;

    // Children come after their parent in breadth-first order, so building
    // in reverse finds every child's term ready.
    let mut built: Vec<Option<Term<'a>>> = vec![None; nodes.len()];
    for &v in tree.bfs().iter().rev() {
        let mut children = Term::list_new_empty(env);
        for &c in tree.children(v).iter().rev() {
            if let Some(child) = built[c as usize].take() {
                children = children.list_prepend(child);
            }
        }
        built[v as usize] = Some((nodes[v as usize], children).encode(env));
    }
    built[root as usize]
        .take()
        .ok_or(PlanError::RootNotMember.into())
}

twin_nif! {
    fn tree_plan / tree_plan_dirty<'a>(members: Term<'a>, root: Atom, fanout: i64)
        -> Result<Term<'a>, Reason> = plan;
    work = Work::Plan { members: list_len(members) };
}
