//! Broadcast tree planning.
//!
//! [`plan`] turns a member list (each member optionally labelled with a
//! region and a zone, and flagged healthy or not), a root and a fanout into a
//! [`Tree`] along which the root can broadcast: every node forwards to its
//! children only. Node ids are `u32` indexes into the member list.
//!
//! # Guarantees
//!
//! For every input accepted by [`plan`]:
//!
//! 1. **Spanning**: every member appears exactly once; the tree is rooted at
//!    `root`.
//! 2. **Fanout is a hard limit**: no node has more than `fanout` children.
//! 3. **Depth, unlabelled**: when every member has the same region and zone
//!    (for example none at all), the depth (edges from the root to the
//!    deepest leaf) is [`min_depth`]`(n, fanout)`, the smallest depth any tree
//!    of `n` nodes with that fanout can have. For `fanout >= 2` this is
//!    `⌈log_fanout((fanout − 1)·n + 1)⌉ − 1`, which is never more than
//!    `⌈log_fanout n⌉`; for `fanout == 1` the tree is a chain of depth `n − 1`.
//!    Health flags never change the depth of an unlabelled tree.
//! 4. **Unhealthy nodes are leaves** whenever healthy capacity allows. The
//!    root is the sender, so its own health flag is ignored. Within an
//!    innermost group (members sharing region and zone, see 5) of `m` nodes
//!    of which `h` are healthy (the root counted healthy), unhealthy nodes
//!    are never interior if `h·fanout ≥ m − 1`; otherwise exactly
//!    `⌈(m − 1)/fanout⌉ − h` of them are promoted to interior nodes — the
//!    fewest possible without exceeding the fanout — and none of them is
//!    shallower than a healthy member of the group, so they carry the
//!    smallest subtrees. For an unlabelled cluster the group is the whole
//!    cluster: no unhealthy node is interior iff `healthy·fanout ≥ n − 1`,
//!    otherwise exactly `⌈(n − 1)/fanout⌉ − healthy` are. With labels, one
//!    more case: a head that does not fit where it should hang (see 6) goes
//!    under a healthy node's free slot if one is in reach, and only failing
//!    that makes one unhealthy leaf interior.
//! 5. **Each location boundary is crossed once**: members are grouped by
//!    region, and within a region by zone. A missing label is a label value
//!    of its own: all members without a region form one region group (and
//!    likewise for zones within a region). The nodes of every group form one
//!    connected subtree, entered by exactly one edge (none for the groups that
//!    contain the root). So a broadcast crosses into each region once, and
//!    into each zone of a region once.
//! 6. **Where the cross edges start**: a region's entering edge goes from a
//!    node of the root's region to the region's head whenever the root's
//!    region has room: when its healthy nodes can hold its own members plus
//!    one head per other region (`h₀·fanout ≥ n₀ − 1 + regions − 1`, root
//!    counted healthy). Otherwise the regions that do not fit hang under the
//!    shallowest free slot of an already placed region (still entered once,
//!    fanout still respected). A group's head is its first healthy member in
//!    input order, or its first member if none is healthy.
//! 7. **Depth, labelled**: the subtrees of the groups are built first; the
//!    depth of the group holding the root is then the smallest depth the
//!    greedy level-by-level placement (provably optimal for that step) can
//!    reach given the heights of the other groups' subtrees. When all heads
//!    fit (see 6), it is never more than `min_depth(n₀ + k, f) + max height`
//!    (the depth of the simple layout that hangs the `k` heads as leaves of a
//!    complete tree of the root's group) and never less than
//!    `max(min_depth(n, f), 1 + max height)`.
//! 8. **Deterministic**: the same input gives the same tree. Children are
//!    listed deepest subtree first, so forwarding in list order starts the
//!    longest path first; ties keep placement order.
//!
//! Repair: [`Tree::adopt`] removes dead nodes, each dead node's children
//! being adopted by its nearest live ancestor in its place. It never moves
//! anything else, so it may exceed the fanout; re-plan (it is cheap) when the
//! bound matters.

mod planner;
#[cfg(test)]
mod tests;

/// The fanout used when the caller has no preference.
pub const DEFAULT_FANOUT: u32 = 4;

/// Marks "no node" in parent and depth arrays.
const NONE: u32 = u32::MAX;

/// One member of the cluster: optional location labels and a health flag.
///
/// Labels can be of any ordered type (`&str`, interned ids, ...). Two
/// members are in the same region when their `region` values are equal
/// (`None == None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<L> {
    pub region: Option<L>,
    pub zone: Option<L>,
    pub healthy: bool,
}

impl<L> Member<L> {
    /// A member with the given labels and health.
    pub fn new(region: Option<L>, zone: Option<L>, healthy: bool) -> Self {
        Member {
            region,
            zone,
            healthy,
        }
    }

    /// A healthy member without location labels.
    pub fn unlabelled() -> Self {
        Member::new(None, None, true)
    }

    /// The label at `level`: 0 is the region, 1 the zone.
    fn label(&self, level: usize) -> Option<&L> {
        match level {
            0 => self.region.as_ref(),
            _ => self.zone.as_ref(),
        }
    }
}

crate::named_error! {
    /// Why a tree could not be planned or repaired.
    pub enum PlanError {
        /// The fanout is 0.
        BadFanout => ("bad_fanout", "fanout must be at least 1"),
        /// The root index is outside the member list.
        RootNotMember => ("root_not_member", "the root is not a member"),
        /// More members than `u32` ids can name.
        TooManyMembers => ("too_many_members", "too many members"),
        /// [`Tree::adopt`] was asked to remove the root.
        RootRemoved => ("root_removed", "the root cannot be removed"),
        /// A node index outside the member list.
        UnknownNode => ("unknown_node", "unknown node"),
    }
}

/// Plans a broadcast tree over `members`, rooted at `members[root]`, with at
/// most `fanout` children per node. See the [module docs](self) for what the
/// result guarantees.
pub fn plan<L: Ord>(members: &[Member<L>], root: u32, fanout: u32) -> Result<Tree, PlanError> {
    if fanout == 0 {
        return Err(PlanError::BadFanout);
    }
    if members.len() >= NONE as usize {
        return Err(PlanError::TooManyMembers);
    }
    if root as usize >= members.len() {
        return Err(PlanError::RootNotMember);
    }
    let (parent, order) = planner::Planner::new(members, root, fanout).run();
    Ok(Tree::build(root, fanout, parent, &order))
}

/// The smallest depth of any tree of `n` nodes in which no node has more than
/// `fanout` children: the least `d` with `1 + f + … + f^d ≥ n` (`n − 1` for
/// `fanout == 1`, 0 for `n ≤ 1`). `fanout` must be at least 1.
pub fn min_depth(n: usize, fanout: u32) -> u32 {
    let f = fanout.max(1) as usize;
    if f == 1 {
        return n.saturating_sub(1) as u32;
    }
    let (mut depth, mut level, mut total) = (0u32, 1usize, 1usize);
    while total < n {
        level = level.saturating_mul(f);
        total = total.saturating_add(level);
        depth += 1;
    }
    depth
}

/// A planned broadcast tree over member ids `0..members`.
///
/// After [`Tree::adopt`] some ids may be absent; [`Tree::contains`] tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    root: u32,
    fanout: u32,
    parent: Vec<u32>,
    depth_of: Vec<u32>,
    child_start: Vec<u32>,
    children: Vec<u32>,
    bfs: Vec<u32>,
    depth: u32,
}

impl Tree {
    /// Builds the tree from a parent array (`NONE` for the root and for
    /// absent ids) and the non-root nodes in creation order, which decides
    /// the order of equally deep siblings.
    fn build(root: u32, fanout: u32, parent: Vec<u32>, order: &[u32]) -> Tree {
        let n = parent.len();
        let mut child_start = vec![0u32; n + 1];
        for &v in order {
            child_start[parent[v as usize] as usize + 1] += 1;
        }
        for i in 0..n {
            child_start[i + 1] += child_start[i];
        }
        let mut cursor = child_start.clone();
        let mut children = vec![0u32; order.len()];
        for &v in order {
            let p = parent[v as usize] as usize;
            children[cursor[p] as usize] = v;
            cursor[p] += 1;
        }
        let mut tree = Tree {
            root,
            fanout,
            parent,
            depth_of: vec![NONE; n],
            child_start,
            children,
            bfs: Vec::with_capacity(order.len() + 1),
            depth: 0,
        };

        // Deepest subtree first: heights from a first traversal, then sort
        // each child list (stable, so ties keep creation order).
        tree.traverse();
        let mut height = vec![0u32; n];
        for &v in tree.bfs.iter().rev() {
            let p = tree.parent[v as usize];
            if p != NONE {
                height[p as usize] = height[p as usize].max(height[v as usize] + 1);
            }
        }
        for v in 0..n {
            let (start, end) = (tree.child_start[v], tree.child_start[v + 1]);
            tree.children[start as usize..end as usize]
                .sort_by_key(|&c| std::cmp::Reverse(height[c as usize]));
        }
        tree.traverse();
        tree
    }

    /// Breadth-first walk from the root: fills `bfs`, `depth_of`, `depth`.
    fn traverse(&mut self) {
        self.bfs.clear();
        self.bfs.push(self.root);
        self.depth_of[self.root as usize] = 0;
        let mut i = 0;
        while i < self.bfs.len() {
            let v = self.bfs[i];
            let d = self.depth_of[v as usize] + 1;
            let (start, end) = self.range(v);
            for k in start..end {
                let c = self.children[k];
                self.depth_of[c as usize] = d;
                self.bfs.push(c);
            }
            i += 1;
        }
        self.depth = self.bfs.last().map_or(0, |&v| self.depth_of[v as usize]);
    }

    fn range(&self, v: u32) -> (usize, usize) {
        let v = v as usize;
        (
            self.child_start[v] as usize,
            self.child_start[v + 1] as usize,
        )
    }

    /// The root (the sender).
    pub fn root(&self) -> u32 {
        self.root
    }

    /// The fanout the tree was planned with.
    pub fn fanout(&self) -> u32 {
        self.fanout
    }

    /// Number of nodes in the tree.
    pub fn len(&self) -> usize {
        self.bfs.len()
    }

    /// Always false: a tree holds at least its root.
    pub fn is_empty(&self) -> bool {
        self.bfs.is_empty()
    }

    /// Size of the id space: the length of the member list planned from.
    pub fn members(&self) -> usize {
        self.parent.len()
    }

    /// Whether `v` is in the tree.
    pub fn contains(&self, v: u32) -> bool {
        self.depth_of.get(v as usize).is_some_and(|&d| d != NONE)
    }

    /// The parent of `v`; `None` for the root and for absent ids.
    pub fn parent(&self, v: u32) -> Option<u32> {
        self.parent.get(v as usize).copied().filter(|&p| p != NONE)
    }

    /// The children of `v`, deepest subtree first; empty for leaves and
    /// absent ids.
    pub fn children(&self, v: u32) -> &[u32] {
        if (v as usize) < self.parent.len() {
            let (start, end) = self.range(v);
            &self.children[start..end]
        } else {
            &[]
        }
    }

    /// Edges from the root to the deepest leaf (0 for a lone root).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Edges from the root to `v`, or `None` if `v` is absent.
    pub fn depth_of(&self, v: u32) -> Option<u32> {
        self.depth_of
            .get(v as usize)
            .copied()
            .filter(|&d| d != NONE)
    }

    /// Every node in breadth-first order: the root first, parents before
    /// children, siblings in [`Tree::children`] order.
    pub fn bfs(&self) -> &[u32] {
        &self.bfs
    }

    /// The largest number of children of any node (≤ fanout for a planned
    /// tree; may be more after [`Tree::adopt`]).
    pub fn max_children(&self) -> usize {
        self.child_start
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0)
    }

    /// `v` and all its descendants in depth-first pre-order (children in
    /// [`Tree::children`] order). Empty if `v` is absent.
    pub fn subtree(&self, v: u32) -> Subtree<'_> {
        let stack = if self.contains(v) { vec![v] } else { vec![] };
        Subtree { tree: self, stack }
    }

    /// The tree without the `dead` nodes: each dead node's children (with
    /// their subtrees) take its place, in order, among the children of its
    /// nearest live ancestor. Nothing else moves, so live nodes keep their
    /// relative order and the result may have nodes with more than `fanout`
    /// children (see [`Tree::max_children`]); plan again for a balanced tree.
    ///
    /// Ids already absent are ignored. Fails with [`PlanError::RootRemoved`]
    /// if `dead` holds the root and [`PlanError::UnknownNode`] for ids
    /// outside the member list.
    pub fn adopt(&self, dead: &[u32]) -> Result<Tree, PlanError> {
        let n = self.parent.len();
        let mut gone = vec![false; n];
        for &d in dead {
            if d as usize >= n {
                return Err(PlanError::UnknownNode);
            }
            if d == self.root {
                return Err(PlanError::RootRemoved);
            }
            gone[d as usize] = true;
        }
        let mut parent = vec![NONE; n];
        let mut order = Vec::with_capacity(self.bfs.len());
        let mut stack = Vec::new();
        for &v in &self.bfs {
            if gone[v as usize] {
                continue;
            }
            stack.extend(self.children(v).iter().rev());
            while let Some(c) = stack.pop() {
                if gone[c as usize] {
                    stack.extend(self.children(c).iter().rev());
                } else {
                    parent[c as usize] = v;
                    order.push(c);
                }
            }
        }
        Ok(Tree::build(self.root, self.fanout, parent, &order))
    }
}

/// Iterator over a subtree in depth-first pre-order; see [`Tree::subtree`].
#[derive(Debug, Clone)]
pub struct Subtree<'a> {
    tree: &'a Tree,
    stack: Vec<u32>,
}

impl Iterator for Subtree<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let v = self.stack.pop()?;
        self.stack.extend(self.tree.children(v).iter().rev());
        Some(v)
    }
}
