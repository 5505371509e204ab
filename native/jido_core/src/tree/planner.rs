//! The planning algorithm behind [`super::plan`].
//!
//! Members are split into nested groups by label, outermost first (region,
//! then zone). A group that does not hold the current head is planned on its
//! own into a subtree and becomes an *item*: a head with the height of its
//! subtree and a *scope* (the label level at which it split off), which must
//! hang under a node sharing the head's labels down to that level. Items are
//! handed down to the innermost group of the head, the *base*, whose members
//! are laid out level by level together with the items:
//!
//! * *Providers* may have children: the head, healthy members, and — only as
//!   many as the base cannot do without — promoted unhealthy members, placed
//!   after the healthy ones. Other members and items are leaves of the base.
//! * For a target depth `D`, each level is filled with, in order: the items
//!   whose subtree would otherwise end below `D` (mandatory), then providers
//!   (each one placed now instead of a leaf adds `fanout − 1` slots to the next
//!   level, so this never hurts), then the remaining items (tallest first)
//!   and leaves. Slots are handed to the previous level's providers round
//!   robin. The smallest feasible `D` is found by binary search between a
//!   lower bound and the depth of the simple complete layout.
//! * Items beyond the base's capacity (*overflow*) go, tallest first, to the
//!   shallowest free slot of a provider already placed within their scope,
//!   preferring nodes in the head's own subgroup; only if none is left is an
//!   unhealthy leaf in scope promoted. One always exists: within a scope,
//!   the placed nodes have `fanout` slots each and use fewer than that.

use super::{Member, NONE};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Label levels: region, then zone.
const LEVELS: usize = 2;

/// A planned group waiting to be hung under the base.
struct Item {
    head: u32,
    /// Depth of the item's subtree below its head.
    height: u32,
    /// Parents must share the head's labels at levels `0..scope`.
    scope: usize,
    /// Creation order, the last tie-break.
    seq: u32,
    /// Every node of the item's subtree, the head first.
    nodes: Vec<u32>,
}

/// A planned group: its nodes (head first) and the height of its subtree.
struct Planned {
    nodes: Vec<u32>,
    height: u32,
}

/// One placement of a layout attempt: node, parent, depth below the head.
type Slot = (u32, u32, u32);

/// Min-heap of free slots by (depth, push order, node).
type SlotHeap = BinaryHeap<Reverse<(u32, u32, u32)>>;

pub(super) struct Planner<'m, L> {
    members: &'m [Member<L>],
    root: u32,
    fanout: usize,
    parent: Vec<u32>,
    /// Depth below the head of the group being planned; shifted when a
    /// planned group is hung under another.
    depth: Vec<u32>,
    /// Children given so far.
    used: Vec<u32>,
    /// Non-root nodes in the order they got their parent.
    order: Vec<u32>,
    next_seq: u32,
}

impl<'m, L: Ord> Planner<'m, L> {
    pub(super) fn new(members: &'m [Member<L>], root: u32, fanout: u32) -> Self {
        let n = members.len();
        Planner {
            members,
            root,
            fanout: fanout as usize,
            parent: vec![NONE; n],
            depth: vec![0; n],
            used: vec![0; n],
            order: Vec::with_capacity(n.saturating_sub(1)),
            next_seq: 0,
        }
    }

    /// Plans the whole tree: the parent array and the edge creation order.
    pub(super) fn run(mut self) -> (Vec<u32>, Vec<u32>) {
        let all = (0..self.members.len() as u32).collect();
        self.plan_group(0, self.root, all, Vec::new());
        (self.parent, self.order)
    }

    fn healthy(&self, v: u32) -> bool {
        self.members[v as usize].healthy
    }

    /// Whether `v` may get (more) children without breaking the health
    /// policy: the root, healthy nodes, and nodes already interior.
    fn may_lead(&self, v: u32) -> bool {
        v == self.root || self.healthy(v) || self.used[v as usize] > 0
    }

    fn link(&mut self, child: u32, parent: u32) {
        self.parent[child as usize] = parent;
        self.used[parent as usize] += 1;
        self.order.push(child);
    }

    /// Plans `nodes` (in input order, holding `head`) at label `level`; the
    /// `items` must end up inside this group's subtree.
    fn plan_group(
        &mut self,
        level: usize,
        head: u32,
        nodes: Vec<u32>,
        mut items: Vec<Item>,
    ) -> Planned {
        if level == LEVELS {
            return self.plan_base(head, nodes, items);
        }
        let mut groups = self.split(level, nodes, head).into_iter();
        let own = groups.next().unwrap_or_default();
        for group in groups {
            let sub_head = self.pick_head(&group);
            let planned = self.plan_group(level + 1, sub_head, group, Vec::new());
            let seq = self.next_seq;
            self.next_seq += 1;
            items.push(Item {
                head: sub_head,
                height: planned.height,
                scope: level,
                seq,
                nodes: planned.nodes,
            });
        }
        self.plan_group(level + 1, head, own, items)
    }

    /// Splits `nodes` by their label at `level`: the head's group first,
    /// then the others by first appearance. Each keeps input order.
    fn split(&self, level: usize, mut nodes: Vec<u32>, head: u32) -> Vec<Vec<u32>> {
        // Only `Ord` is used, so a type whose `==` disagrees with `cmp`
        // cannot split one group in two.
        let label = |v: u32| self.members[v as usize].label(level);
        let same = |a: u32, b: u32| label(a).cmp(&label(b)).is_eq();
        if nodes.iter().all(|&v| same(v, head)) {
            return vec![nodes];
        }
        nodes.sort_by(|&a, &b| label(a).cmp(&label(b)));
        let mut groups: Vec<Vec<u32>> = nodes
            .chunk_by(|&a, &b| same(a, b))
            .map(<[u32]>::to_vec)
            .collect();
        groups.sort_by_key(|g| g[0]);
        if let Some(pos) = groups.iter().position(|g| same(g[0], head)) {
            let own = groups.remove(pos);
            groups.insert(0, own);
        }
        groups
    }

    /// A group's head: its first healthy member, else its first member.
    fn pick_head(&self, group: &[u32]) -> u32 {
        group
            .iter()
            .copied()
            .find(|&v| self.healthy(v))
            .unwrap_or(group[0])
    }

    /// Lays out the innermost group of `head` together with `items`.
    fn plan_base(&mut self, head: u32, nodes: Vec<u32>, mut items: Vec<Item>) -> Planned {
        let f = self.fanout;
        let m = nodes.len();
        let mut providers = Vec::new();
        let mut leaves = Vec::new();
        for &v in &nodes {
            if v != head {
                if self.healthy(v) {
                    providers.push(v);
                } else {
                    leaves.push(v);
                }
            }
        }
        // Promote the fewest unhealthy members that let the group hold itself.
        let need = (m - 1).div_ceil(f);
        let have = 1 + providers.len();
        if need > have {
            providers.extend(leaves.drain(..need - have));
        }
        let capacity = (1 + providers.len()).saturating_mul(f) - (m - 1);

        // Narrow scopes first: a group's own subgroups before outer groups
        // (so an outer head never takes a slot an inner one needs). Then
        // healthy heads, which bring free slots for any overflow, then the
        // tallest.
        let key = |item: &Item| (item.scope, self.healthy(item.head), item.height);
        items.sort_by(|a, b| key(b).cmp(&key(a)).then(a.seq.cmp(&b.seq)));
        let overflow = items.split_off(items.len().min(capacity));
        let mut fitted = items;
        fitted.sort_by_key(|item| Reverse(item.height));

        self.layout(head, &providers, &leaves, &fitted);
        for item in &fitted {
            self.shift(item, self.depth[item.head as usize]);
        }
        self.depth[head as usize] = 0;

        let placed = if overflow.is_empty() {
            Vec::new()
        } else {
            self.place_overflow(&nodes, &fitted, overflow)
        };
        let mut all = nodes;
        for item in fitted {
            all.extend(item.nodes);
        }
        all.extend(placed);
        let height = all
            .iter()
            .map(|&v| self.depth[v as usize])
            .max()
            .unwrap_or(0);
        Planned { nodes: all, height }
    }

    /// Adds `offset` to the depth of every node of `item` but its head,
    /// whose depth is set to `offset`.
    fn shift(&mut self, item: &Item, offset: u32) {
        for &v in &item.nodes[1..] {
            self.depth[v as usize] += offset;
        }
        self.depth[item.head as usize] = offset;
    }

    /// Places providers, leaves and fitted items (tallest first) below
    /// `head` at the smallest feasible depth.
    fn layout(&mut self, head: u32, providers: &[u32], leaves: &[u32], items: &[Item]) {
        let total = 1 + providers.len() + leaves.len() + items.len();
        if total == 1 {
            return;
        }
        let f = self.fanout as u32;
        let tallest = items.first().map(|i| i.height);
        let complete = super::min_depth(total, f);
        let lower = complete.max(tallest.map_or(0, |h| h + 1));
        // The complete layout (providers first, then items, then leaves)
        // reaches this depth; the greedy is optimal, so it does too.
        let mut upper = complete + tallest.unwrap_or(0);
        let mut best = Vec::with_capacity(total);
        let mut scratch = Vec::with_capacity(total);
        if !self.try_layout(head, providers, leaves, items, upper, &mut best) {
            // Unreachable if the argument above holds. Still safe: no slot is
            // ever wasted, so with no item mandatory before every provider is
            // placed, everything fits.
            debug_assert!(false, "complete layout bound not reached");
            upper = total as u32 + tallest.unwrap_or(0);
            let placed = self.try_layout(head, providers, leaves, items, upper, &mut best);
            assert!(placed, "layout must succeed at depth {upper}");
        }
        let (mut lo, mut hi) = (lower, upper);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.try_layout(head, providers, leaves, items, mid, &mut scratch) {
                hi = mid;
                std::mem::swap(&mut best, &mut scratch);
            } else {
                lo = mid + 1;
            }
        }
        for &(v, p, d) in &best {
            self.link(v, p);
            self.depth[v as usize] = d;
        }
    }

    /// One greedy attempt at depth `max`; fills `out` and returns whether
    /// everything was placed.
    fn try_layout(
        &self,
        head: u32,
        providers: &[u32],
        leaves: &[u32],
        items: &[Item],
        max: u32,
        out: &mut Vec<Slot>,
    ) -> bool {
        out.clear();
        let f = self.fanout;
        let (mut pi, mut li, mut ii) = (0, 0, 0);
        let mut remaining = providers.len() + leaves.len() + items.len();
        let mut parents = vec![head];
        let mut next = Vec::new();
        for level in 1..=max {
            if remaining == 0 {
                break;
            }
            let slots = parents.len().saturating_mul(f);
            let start = out.len();
            let put = |out: &mut Vec<Slot>, v: u32| {
                let k = out.len() - start;
                out.push((v, parents[k % parents.len()], level));
            };
            // Items whose subtree would otherwise end below `max`.
            while ii < items.len() && items[ii].height + level >= max {
                put(out, items[ii].head);
                ii += 1;
            }
            if out.len() - start > slots {
                return false;
            }
            if level == max && remaining > slots {
                return false;
            }
            let take = (slots - (out.len() - start)).min(providers.len() - pi);
            for &v in &providers[pi..pi + take] {
                put(out, v);
                next.push(v);
            }
            pi += take;
            while out.len() - start < slots && ii < items.len() {
                put(out, items[ii].head);
                ii += 1;
            }
            while out.len() - start < slots && li < leaves.len() {
                put(out, leaves[li]);
                li += 1;
            }
            remaining -= out.len() - start;
            std::mem::swap(&mut parents, &mut next);
            next.clear();
            if parents.is_empty() && remaining > 0 {
                return false;
            }
        }
        remaining == 0
    }

    /// Hangs the `overflow` items (already in priority order) under free
    /// slots of nodes placed in this base (`base`) or in `fitted` items;
    /// returns the nodes of the overflow items.
    fn place_overflow(&mut self, base: &[u32], fitted: &[Item], overflow: Vec<Item>) -> Vec<u32> {
        let mut placed = Vec::new();
        let f = self.fanout as u32;
        // Per label-match level m: free slots of providers, and unhealthy
        // leaves that could be promoted. A node shares the head's labels at
        // levels 0..m; scope-s items may use nodes with m >= s.
        let mut open: Vec<SlotHeap> = (0..=LEVELS).map(|_| BinaryHeap::new()).collect();
        let mut spare: Vec<SlotHeap> = (0..=LEVELS).map(|_| BinaryHeap::new()).collect();
        let mut pushed = 0u32;
        let mut offer =
            |this: &Self, open: &mut Vec<SlotHeap>, spare: &mut Vec<SlotHeap>, v: u32, m: usize| {
                let entry = Reverse((this.depth[v as usize], pushed, v));
                pushed += 1;
                if !this.may_lead(v) {
                    spare[m].push(entry);
                } else if this.used[v as usize] < f {
                    open[m].push(entry);
                }
            };
        for &v in base {
            offer(self, &mut open, &mut spare, v, LEVELS);
        }
        for item in fitted {
            for &v in &item.nodes {
                offer(self, &mut open, &mut spare, v, item.scope);
            }
        }
        for item in overflow {
            let s = item.scope;
            // Near (inside the head's own subgroup) before far, then
            // shallowest; promote an unhealthy leaf only as a last resort.
            let (parent, m) = pop_best(&mut open, s + 1..=LEVELS)
                .or_else(|| pop_best(&mut open, s..=s))
                .or_else(|| pop_best(&mut spare, s + 1..=LEVELS))
                .or_else(|| pop_best(&mut spare, s..=s))
                .expect("a scope always has a free slot");
            self.link(item.head, parent);
            self.shift(&item, self.depth[parent as usize] + 1);
            offer(self, &mut open, &mut spare, parent, m);
            for &v in &item.nodes {
                offer(self, &mut open, &mut spare, v, s);
            }
            placed.extend(item.nodes);
        }
        placed
    }
}

/// Pops the shallowest entry among `heaps[range]`: (node, its level).
fn pop_best(
    heaps: &mut [SlotHeap],
    range: std::ops::RangeInclusive<usize>,
) -> Option<(u32, usize)> {
    let m = range
        .filter(|&m| m < heaps.len())
        .filter_map(|m| heaps[m].peek().map(|e| (e.0, m)))
        .min()?
        .1;
    heaps[m].pop().map(|Reverse((_, _, v))| (v, m))
}
