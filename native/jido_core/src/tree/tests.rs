//! Unit and property tests: one property per guarantee in the module docs.

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

type M = Member<u8>;

fn flat(n: usize) -> Vec<M> {
    (0..n).map(|_| Member::unlabelled()).collect()
}

fn regions(sizes: &[usize]) -> Vec<M> {
    sizes
        .iter()
        .enumerate()
        .flat_map(|(r, &n)| (0..n).map(move |_| Member::new(Some(r as u8), None, true)))
        .collect()
}

/// ⌈log_f n⌉: the least d with f^d ≥ n (f ≥ 2).
fn log_ceil(n: usize, f: u32) -> u32 {
    let (mut d, mut p) = (0, 1usize);
    while p < n {
        p = p.saturating_mul(f as usize);
        d += 1;
    }
    d
}

/// Spanning, parent/children consistency, fanout, depth bookkeeping.
fn assert_valid(tree: &Tree, n: usize, root: u32, fanout: u32) {
    assert_eq!(tree.root(), root);
    assert_eq!(tree.members(), n);
    assert_eq!(tree.len(), n);
    let seen: BTreeSet<u32> = tree.bfs().iter().copied().collect();
    assert_eq!(seen.len(), n, "every node exactly once");
    assert_eq!(tree.parent(root), None);
    assert_eq!(tree.depth_of(root), Some(0));
    let mut max_depth = 0;
    for v in 0..n as u32 {
        assert!(tree.contains(v));
        assert!(
            tree.children(v).len() <= fanout as usize,
            "fanout exceeded at {v}"
        );
        for &c in tree.children(v) {
            assert_eq!(tree.parent(c), Some(v));
            assert_eq!(tree.depth_of(c), Some(tree.depth_of(v).unwrap() + 1));
        }
        if v != root {
            let p = tree.parent(v).expect("non-root has a parent");
            assert!(tree.children(p).contains(&v));
        }
        max_depth = max_depth.max(tree.depth_of(v).unwrap());
    }
    assert_eq!(tree.depth(), max_depth);
    assert!(tree.max_children() <= fanout as usize);
}

fn interior_unhealthy<L>(tree: &Tree, members: &[Member<L>]) -> usize {
    (0..members.len() as u32)
        .filter(|&v| v != tree.root() && !members[v as usize].healthy)
        .filter(|&v| !tree.children(v).is_empty())
        .count()
}

/// For each group (by `key`), the number of its nodes whose parent is
/// outside the group or absent.
fn entries<K: Ord>(tree: &Tree, key: impl Fn(u32) -> K) -> BTreeMap<K, usize> {
    let mut out = BTreeMap::new();
    for v in tree.bfs().iter().copied() {
        let entry = out.entry(key(v)).or_insert(0);
        match tree.parent(v) {
            Some(p) if key(p) == key(v) => {}
            _ => *entry += 1,
        }
    }
    out
}

fn region_sizes<L: Ord + Clone>(members: &[Member<L>]) -> BTreeMap<Option<L>, (usize, usize)> {
    let mut out = BTreeMap::new();
    for m in members {
        let e = out.entry(m.region.clone()).or_insert((0, 0));
        e.0 += 1;
        e.1 += m.healthy as usize;
    }
    out
}

#[test]
fn rejects_bad_input() {
    assert_eq!(plan(&flat(3), 0, 0), Err(PlanError::BadFanout));
    assert_eq!(plan(&flat(3), 3, 2), Err(PlanError::RootNotMember));
    assert_eq!(plan::<u8>(&[], 0, 2), Err(PlanError::RootNotMember));
    assert_eq!(PlanError::RootNotMember.name(), "root_not_member");
}

#[test]
fn lone_root() {
    let tree = plan(&flat(1), 0, 4).unwrap();
    assert_valid(&tree, 1, 0, 4);
    assert_eq!(tree.depth(), 0);
    assert_eq!(tree.bfs(), &[0]);
    assert_eq!(tree.subtree(0).collect::<Vec<_>>(), vec![0]);
}

#[test]
fn min_depth_values() {
    assert_eq!(min_depth(0, 4), 0);
    assert_eq!(min_depth(1, 4), 0);
    assert_eq!(min_depth(5, 4), 1);
    assert_eq!(min_depth(6, 4), 2);
    assert_eq!(min_depth(21, 4), 2);
    assert_eq!(min_depth(1000, 4), 5);
    assert_eq!(min_depth(1000, 2), 9);
    assert_eq!(min_depth(7, 1), 6);
    assert_eq!(min_depth(1000, u32::MAX), 1);
}

#[test]
fn a_thousand_unlabelled_nodes() {
    for (f, depth) in [(4, 5), (2, 9), (10, 3), (1000, 1), (1, 999)] {
        let tree = plan(&flat(1000), 17, f).unwrap();
        assert_valid(&tree, 1000, 17, f);
        assert_eq!(tree.depth(), depth, "fanout {f}");
    }
    // ⌈log_2 1000⌉ = 10, but 9 levels below the root hold 1023 nodes.
    assert_eq!(log_ceil(1000, 2), 10);
}

#[test]
fn unhealthy_nodes_are_leaves_and_promoted_only_when_needed() {
    // Root + 3 healthy + 6 unhealthy, fanout 3: 4 healthy · 3 ≥ 9.
    let mut members = flat(10);
    for m in &mut members[4..] {
        m.healthy = false;
    }
    let tree = plan(&members, 0, 3).unwrap();
    assert_valid(&tree, 10, 0, 3);
    assert_eq!(interior_unhealthy(&tree, &members), 0);
    assert_eq!(tree.depth(), min_depth(10, 3));

    // Only the root is healthy: ⌈9/3⌉ = 3 interior nodes, so 2 promoted.
    for m in &mut members {
        m.healthy = false;
    }
    let tree = plan(&members, 0, 3).unwrap();
    assert_valid(&tree, 10, 0, 3);
    assert_eq!(interior_unhealthy(&tree, &members), 2);
    assert_eq!(tree.depth(), min_depth(10, 3));
}

#[test]
fn promoted_nodes_sit_below_healthy_interior_nodes() {
    // Root + 2 healthy + 20 unhealthy, fanout 2: 11 interior needed.
    let mut members = flat(23);
    for m in &mut members[3..] {
        m.healthy = false;
    }
    let tree = plan(&members, 0, 2).unwrap();
    assert_valid(&tree, 23, 0, 2);
    assert_eq!(interior_unhealthy(&tree, &members), 11 - 3);
    let deepest_healthy = (0..3).map(|v| tree.depth_of(v).unwrap()).max().unwrap();
    for v in 3..23 {
        if !tree.children(v).is_empty() {
            assert!(tree.depth_of(v).unwrap() >= deepest_healthy);
        }
    }
}

#[test]
fn three_big_regions_keep_the_flat_depth() {
    let members = regions(&[334, 333, 333]);
    let tree = plan(&members, 0, 4).unwrap();
    assert_valid(&tree, 1000, 0, 4);
    // The two remote heads hang directly under the root.
    let heads: Vec<u32> = tree
        .children(0)
        .iter()
        .copied()
        .filter(|&c| members[c as usize].region != Some(0))
        .collect();
    assert_eq!(heads, vec![334, 667]);
    assert_eq!(tree.depth(), 5);
    assert_eq!(tree.depth(), min_depth(1000, 4));
}

#[test]
fn each_region_is_entered_once_from_the_root_region() {
    let members = regions(&[3, 5, 1, 7, 2]);
    let tree = plan(&members, 1, 2).unwrap();
    assert_valid(&tree, members.len(), 1, 2);
    let by_region = entries(&tree, |v| members[v as usize].region);
    assert!(by_region.values().all(|&e| e == 1), "{by_region:?}");
    for v in tree.bfs().iter().copied().skip(1) {
        let p = tree.parent(v).unwrap();
        if members[p as usize].region != members[v as usize].region {
            assert_eq!(members[p as usize].region, Some(0));
        }
    }
}

#[test]
fn regions_beyond_the_root_regions_room_chain() {
    // The root alone in its region, 6 single-node regions, fanout 4: two
    // regions must hang under other regions' heads.
    let members = regions(&[1, 1, 1, 1, 1, 1, 1]);
    let tree = plan(&members, 0, 4).unwrap();
    assert_valid(&tree, 7, 0, 4);
    assert_eq!(tree.children(0).len(), 4);
    assert_eq!(tree.depth(), 2);
}

#[test]
fn zones_are_entered_once_within_their_region() {
    let mut members = Vec::new();
    for r in 0..3u8 {
        for z in 0..3u8 {
            for _ in 0..4 {
                members.push(Member::new(Some(r), Some(z), true));
            }
        }
    }
    let tree = plan(&members, 5, 3).unwrap();
    assert_valid(&tree, 36, 5, 3);
    let zones = entries(&tree, |v| {
        (members[v as usize].region, members[v as usize].zone)
    });
    assert!(zones.values().all(|&e| e == 1), "{zones:?}");
    let regions = entries(&tree, |v| members[v as usize].region);
    assert!(regions.values().all(|&e| e == 1), "{regions:?}");
}

#[test]
fn overflowing_heads_prefer_healthy_slots() {
    // The root's zone has room for one zone head; the healthy one goes
    // first so the unhealthy one can hang under it instead of leading.
    let members = vec![
        Member::new(Some(0), Some(0), true),
        Member::new(Some(0), Some(1), false),
        Member::new(Some(0), Some(2), true),
    ];
    let tree = plan(&members, 0, 1).unwrap();
    assert_valid(&tree, 3, 0, 1);
    assert_eq!(tree.bfs(), &[0, 2, 1]);
    assert_eq!(interior_unhealthy(&tree, &members), 0);
}

#[test]
fn children_come_deepest_subtree_first() {
    let members = regions(&[2, 40]);
    let tree = plan(&members, 0, 4).unwrap();
    assert_eq!(tree.children(0), &[2, 1]);
}

#[test]
fn subtree_lists_descendants_in_preorder() {
    let tree = plan(&flat(7), 0, 2).unwrap();
    let all: Vec<u32> = tree.subtree(0).collect();
    assert_eq!(all.len(), 7);
    assert_eq!(all[0], 0);
    let c = tree.children(0)[0];
    let sub: Vec<u32> = tree.subtree(c).collect();
    assert_eq!(sub.len(), 3);
    assert_eq!(sub[0], c);
    assert_eq!(&sub[1..], tree.children(c));
    assert_eq!(tree.subtree(99).count(), 0);
}

#[test]
fn adopt_splices_children_into_the_parent() {
    let tree = plan(&flat(7), 0, 2).unwrap();
    let dead = tree.children(0)[0];
    let orphans = tree.children(dead).to_vec();
    let repaired = tree.adopt(&[dead]).unwrap();
    assert_eq!(repaired.len(), 6);
    assert!(!repaired.contains(dead));
    assert_eq!(repaired.children(0).len(), 3);
    for o in orphans {
        assert_eq!(repaired.parent(o), Some(0));
    }
    assert_eq!(repaired.max_children(), 3);
    assert_eq!(tree.adopt(&[0]), Err(PlanError::RootRemoved));
    assert_eq!(tree.adopt(&[7]), Err(PlanError::UnknownNode));
    // Already absent ids are ignored.
    assert_eq!(repaired.adopt(&[dead]).unwrap(), repaired);
}

/// A label whose `==` is stricter than its `cmp` (like Erlang terms: `1`
/// and `1.0` compare equal but are not identical).
#[derive(Debug, PartialEq, Eq)]
struct Loose(u8, u8);

impl PartialOrd for Loose {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Loose {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[test]
fn groups_follow_ord_not_eq() {
    let members: Vec<Member<Loose>> = (0..30u8)
        .map(|i| Member::new(Some(Loose(i % 3, i % 2)), None, true))
        .collect();
    let tree = plan(&members, 0, 2).unwrap();
    assert_valid(&tree, 30, 0, 2);
    let by_region = entries(&tree, |v| members[v as usize].region.as_ref().map(|l| l.0));
    assert_eq!(by_region.len(), 3);
    assert!(by_region.values().all(|&e| e == 1), "{by_region:?}");
}

#[test]
fn same_input_same_tree() {
    let members = regions(&[10, 20, 30]);
    assert_eq!(plan(&members, 12, 3), plan(&members, 12, 3));
}

// ---- properties ----------------------------------------------------------

/// (members, root, fanout) with region and zone labels, some missing.
fn labelled() -> impl Strategy<Value = (Vec<M>, u32, u32)> {
    (1usize..150, 1u32..7, 1u8..6, 1u8..4, 0.0f64..1.0).prop_flat_map(|(n, f, r, z, ok)| {
        let member = (
            proptest::option::weighted(0.9, 0..r),
            proptest::option::weighted(0.7, 0..z),
            proptest::bool::weighted(ok),
        )
            .prop_map(|(region, zone, healthy)| Member::new(region, zone, healthy));
        (proptest::collection::vec(member, n), 0..n as u32, Just(f))
    })
}

/// Many small regions and zones, small fanouts, mostly unhealthy: the root
/// region rarely has room, so heads overflow and leaves get promoted.
fn scattered() -> impl Strategy<Value = (Vec<M>, u32, u32)> {
    (1usize..80, 1u32..4, 1u8..40, 1u8..4, 0.0f64..0.5).prop_flat_map(|(n, f, r, z, ok)| {
        let member = (
            proptest::option::weighted(0.95, 0..r),
            proptest::option::weighted(0.5, 0..z),
            proptest::bool::weighted(ok),
        )
            .prop_map(|(region, zone, healthy)| Member::new(region, zone, healthy));
        (proptest::collection::vec(member, n), 0..n as u32, Just(f))
    })
}

/// Regions only (no zones).
fn region_only() -> impl Strategy<Value = (Vec<M>, u32, u32)> {
    (1usize..150, 1u32..7, 1u8..8, 0.0f64..1.0).prop_flat_map(|(n, f, r, ok)| {
        let member = (
            proptest::option::weighted(0.9, 0..r),
            proptest::bool::weighted(ok),
        )
            .prop_map(|(region, healthy)| Member::new(region, None, healthy));
        (proptest::collection::vec(member, n), 0..n as u32, Just(f))
    })
}

/// No labels at all.
fn unlabelled() -> impl Strategy<Value = (Vec<M>, u32, u32)> {
    (1usize..400, 1u32..9, 0.0f64..1.0).prop_flat_map(|(n, f, ok)| {
        let member = proptest::bool::weighted(ok).prop_map(|h| Member::new(None, None, h));
        (proptest::collection::vec(member, n), 0..n as u32, Just(f))
    })
}

/// Root-region numbers for the capacity conditions: (n₀, healthy h₀ with
/// the root counted, number of other regions k).
fn root_region<L: Ord + Clone>(members: &[Member<L>], root: u32) -> (usize, usize, usize) {
    let r0 = &members[root as usize].region;
    let n0 = members.iter().filter(|m| &m.region == r0).count();
    let h0 = members
        .iter()
        .enumerate()
        .filter(|(i, m)| &m.region == r0 && (m.healthy || *i as u32 == root))
        .count();
    (n0, h0, region_sizes(members).len() - 1)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// 1, 2: spanning and fanout, whatever the labels and health.
    #[test]
    fn prop_spanning_within_fanout((members, root, f) in labelled()) {
        let tree = plan(&members, root, f).unwrap();
        assert_valid(&tree, members.len(), root, f);
    }

    /// 1, 2, 5 under pressure: overflowing heads and promoted leaves.
    #[test]
    fn prop_scattered_groups((members, root, f) in scattered()) {
        let tree = plan(&members, root, f).unwrap();
        assert_valid(&tree, members.len(), root, f);
        let regions = entries(&tree, |v| members[v as usize].region);
        prop_assert!(regions.values().all(|&e| e == 1), "{:?}", regions);
        let zones = entries(&tree, |v| (members[v as usize].region, members[v as usize].zone));
        prop_assert!(zones.values().all(|&e| e == 1), "{:?}", zones);
    }

    /// 3: unlabelled depth is the minimum possible, ≤ ⌈log_f n⌉.
    #[test]
    fn prop_unlabelled_depth((members, root, f) in unlabelled()) {
        let tree = plan(&members, root, f).unwrap();
        let n = members.len();
        prop_assert_eq!(tree.depth(), min_depth(n, f));
        if f >= 2 {
            prop_assert!(tree.depth() <= log_ceil(n, f));
        } else {
            prop_assert_eq!(tree.depth() as usize, n - 1);
        }
    }

    /// 3: one shared label is the same as none.
    #[test]
    fn prop_one_label_is_unlabelled((members, root, f) in unlabelled()) {
        let same: Vec<M> = members
            .iter()
            .map(|m| Member::new(Some(7), Some(1), m.healthy))
            .collect();
        prop_assert_eq!(plan(&same, root, f), plan(&members, root, f));
    }

    /// 4: unlabelled — unhealthy nodes are leaves iff healthy capacity
    /// allows, else exactly the minimum number is promoted.
    #[test]
    fn prop_unlabelled_unhealthy_leaves((members, root, f) in unlabelled()) {
        let tree = plan(&members, root, f).unwrap();
        let n = members.len();
        let healthy = members
            .iter()
            .enumerate()
            .filter(|(i, m)| m.healthy || *i as u32 == root)
            .count();
        let need = (n - 1).div_ceil(f as usize);
        prop_assert_eq!(interior_unhealthy(&tree, &members), need.saturating_sub(healthy));
    }

    /// 4: with regions, per-region promotion only; none when every region
    /// can hold itself and the root region can also hold the heads.
    #[test]
    fn prop_labelled_unhealthy_leaves((members, root, f) in region_only()) {
        let (n0, h0, k) = root_region(&members, root);
        prop_assume!(h0 * f as usize >= n0 - 1 + k);
        let tree = plan(&members, root, f).unwrap();
        let r0 = members[root as usize].region;
        let promoted: usize = region_sizes(&members)
            .into_iter()
            .filter(|(r, _)| *r != r0)
            .map(|(_, (n, h))| (n - 1).div_ceil(f as usize).saturating_sub(h))
            .sum();
        prop_assert_eq!(interior_unhealthy(&tree, &members), promoted);
    }

    /// 5: every region and every zone of a region is entered exactly once.
    #[test]
    fn prop_groups_entered_once((members, root, f) in labelled()) {
        let tree = plan(&members, root, f).unwrap();
        let regions = entries(&tree, |v| members[v as usize].region);
        prop_assert!(regions.values().all(|&e| e == 1), "{:?}", regions);
        let zones = entries(&tree, |v| (members[v as usize].region, members[v as usize].zone));
        prop_assert!(zones.values().all(|&e| e == 1), "{:?}", zones);
    }

    /// 6: cross-region edges start in the root's region when it has room.
    #[test]
    fn prop_cross_edges_from_root_region((members, root, f) in labelled()) {
        let (n0, h0, k) = root_region(&members, root);
        prop_assume!(h0 * f as usize >= n0 - 1 + k);
        let tree = plan(&members, root, f).unwrap();
        let r0 = members[root as usize].region;
        for &v in &tree.bfs()[1..] {
            let p = tree.parent(v).unwrap();
            if members[p as usize].region != members[v as usize].region {
                prop_assert_eq!(members[p as usize].region, r0);
            }
        }
    }

    /// 7: labelled depth between the lower bound and the simple layout.
    #[test]
    fn prop_labelled_depth_bounds((members, root, f) in region_only()) {
        let (n0, h0, k) = root_region(&members, root);
        prop_assume!(h0 * f as usize >= n0 - 1 + k);
        let tree = plan(&members, root, f).unwrap();
        let r0 = members[root as usize].region;
        let tallest = region_sizes(&members)
            .into_iter()
            .filter(|(r, _)| *r != r0)
            .map(|(_, (n, _))| min_depth(n, f))
            .max();
        let upper = min_depth(n0 + k, f) + tallest.unwrap_or(0);
        let lower = min_depth(members.len(), f).max(tallest.map_or(0, |h| h + 1));
        prop_assert!(tree.depth() <= upper, "depth {} > {}", tree.depth(), upper);
        prop_assert!(tree.depth() >= lower);
    }

    /// 8: deterministic, and only label equality matters (not label type,
    /// value or order).
    #[test]
    fn prop_deterministic((members, root, f) in labelled()) {
        let a = plan(&members, root, f).unwrap();
        prop_assert_eq!(&a, &plan(&members, root, f).unwrap());
        let renamed: Vec<Member<String>> = members
            .iter()
            .map(|m| Member::new(
                m.region.map(|r| format!("region-{}", 9 - r)),
                m.zone.map(|z| format!("zone-{}", 9 - z)),
                m.healthy,
            ))
            .collect();
        prop_assert_eq!(&a, &plan(&renamed, root, f).unwrap());
    }

    /// Children are listed deepest subtree first.
    #[test]
    fn prop_children_deepest_first((members, root, f) in labelled()) {
        let tree = plan(&members, root, f).unwrap();
        let height = |v: u32| tree.subtree(v).map(|d| tree.depth_of(d).unwrap()).max().unwrap()
            - tree.depth_of(v).unwrap();
        for v in 0..members.len() as u32 {
            let hs: Vec<u32> = tree.children(v).iter().map(|&c| height(c)).collect();
            prop_assert!(hs.windows(2).all(|w| w[0] >= w[1]), "{:?}", hs);
        }
    }

    /// Repair: live nodes keep their nearest live ancestor as parent.
    #[test]
    fn prop_adopt((members, root, f) in labelled(), picks in proptest::collection::vec(any::<u32>(), 0..40)) {
        let tree = plan(&members, root, f).unwrap();
        let n = members.len() as u32;
        let dead: BTreeSet<u32> = picks.iter().map(|p| p % n).filter(|&d| d != root).collect();
        let dead_list: Vec<u32> = dead.iter().copied().collect();
        let repaired = tree.adopt(&dead_list).unwrap();
        prop_assert_eq!(repaired.len(), members.len() - dead.len());
        prop_assert!(repaired.depth() <= tree.depth());
        for v in 0..n {
            prop_assert_eq!(repaired.contains(v), !dead.contains(&v));
            if v == root || dead.contains(&v) {
                continue;
            }
            let mut p = tree.parent(v).unwrap();
            while dead.contains(&p) {
                p = tree.parent(p).unwrap();
            }
            prop_assert_eq!(repaired.parent(v), Some(p));
            prop_assert!(repaired.children(p).contains(&v));
        }
        let seen: BTreeSet<u32> = repaired.subtree(root).collect();
        prop_assert_eq!(seen.len(), repaired.len());
    }
}
