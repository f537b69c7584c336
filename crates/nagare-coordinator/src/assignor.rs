//! Server-side partition assignors of KIP-848 consumer groups (`group.consumer.assignors`):
//! `uniform` (Kafka's `UniformAssignor`, the default) and `range` (Kafka's server-side
//! `RangeAssignor`).
//!
//! An assignor is a pure function from the members' subscriptions (topic ids), the topics'
//! partition counts and the current target assignment to a new target assignment. Both are
//! deterministic: the same input gives the same output, so a reloaded coordinator computes the
//! same targets as the one before it.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use crate::record::TopicPartitions;

/// The name of the uniform assignor.
pub const UNIFORM: &str = "uniform";
/// The name of the range assignor.
pub const RANGE: &str = "range";

/// One member as an assignor sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemberSpec {
    /// Topic ids the member subscribes to (only topics that exist).
    pub(crate) subscribed: BTreeSet<Uuid>,
    /// The member's current target assignment (for stickiness).
    pub(crate) current: TopicPartitions,
}

/// Runs assignor `name` (unknown names fall back to `uniform`; the heartbeat refuses unknown
/// assignors before they get here). `topics` holds the partition count of every subscribed
/// topic. Every member of `members` gets an entry in the result, possibly empty.
pub(crate) fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    match name {
        RANGE => range(members, topics),
        _ => uniform(members, topics),
    }
}

/// Kafka's `RangeAssignor` semantics: per topic, the subscribed members in member-id order get
/// contiguous ranges, the first `partitions % members` of them one partition more. Members
/// subscribed to the same co-partitioned topics get the same partition numbers.
fn range(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let mut out: BTreeMap<String, TopicPartitions> = members
        .keys()
        .map(|m| (m.clone(), TopicPartitions::new()))
        .collect();
    for (topic, &count) in topics {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, s)| s.subscribed.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if subscribers.is_empty() || count <= 0 {
            continue;
        }
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribers.into_iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            if take > 0 {
                if let Some(a) = out.get_mut(m) {
                    a.entry(*topic).or_default().extend(next..next + take);
                }
            }
            next += take;
        }
    }
    out
}

/// A sticky, balanced assignment (Kafka's `UniformAssignor`): every member keeps the
/// partitions of its current target that are still valid, then unassigned partitions go to
/// the least-loaded eligible member, then partitions move from the most- to the least-loaded
/// eligible member until no move can reduce the spread. With identical subscriptions the
/// result has every member at `⌊P/M⌋` or `⌈P/M⌉` partitions; members move as few partitions
/// as that allows.
fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    topics: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, TopicPartitions> {
    let ids: Vec<&String> = members.keys().collect();
    let mut owned: Vec<BTreeSet<(Uuid, i32)>> = vec![BTreeSet::new(); ids.len()];
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    // 1. Stickiness: keep what is still valid (and not claimed twice).
    for (i, id) in ids.iter().enumerate() {
        let spec = &members[*id];
        for (topic, parts) in &spec.current {
            let Some(&count) = topics.get(topic) else {
                continue;
            };
            if !spec.subscribed.contains(topic) {
                continue;
            }
            for &p in parts {
                if p >= 0 && p < count && taken.insert((*topic, p)) {
                    owned[i].insert((*topic, p));
                }
            }
        }
    }
    let eligible = |i: usize, topic: &Uuid| members[ids[i]].subscribed.contains(topic);
    // With identical subscriptions, trim members above the ceiling first so that the
    // freed partitions can go to members below the floor.
    let total: usize = topics
        .iter()
        .filter(|(t, _)| (0..ids.len()).any(|i| eligible(i, t)))
        .map(|(_, c)| (*c).max(0) as usize)
        .sum();
    if !ids.is_empty() {
        let ceil = total.div_ceil(ids.len());
        for set in owned.iter_mut() {
            while set.len() > ceil {
                if let Some(last) = set.iter().next_back().copied() {
                    set.remove(&last);
                    taken.remove(&last);
                }
            }
        }
    }
    // 2. Unassigned partitions to the least-loaded eligible member.
    for (topic, &count) in topics {
        for p in 0..count.max(0) {
            if taken.contains(&(*topic, p)) {
                continue;
            }
            let best = (0..ids.len())
                .filter(|&i| eligible(i, topic))
                .min_by_key(|&i| (owned[i].len(), i));
            if let Some(i) = best {
                owned[i].insert((*topic, p));
                taken.insert((*topic, p));
            }
        }
    }
    // 3. Balance: move from the most-loaded member to a less-loaded eligible one while the
    // difference is at least two. Each move lowers the sum of squared loads, so this ends.
    let mut moves = 0usize;
    let limit = total.saturating_mul(ids.len()).saturating_add(16);
    'outer: while moves < limit {
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(owned[i].len()), i));
        for &from in &order {
            let mut receivers: Vec<usize> = (0..ids.len())
                .filter(|&j| owned[j].len() + 1 < owned[from].len())
                .collect();
            receivers.sort_by_key(|&j| (owned[j].len(), j));
            for to in receivers {
                let candidate = owned[from]
                    .iter()
                    .rev()
                    .find(|(t, _)| eligible(to, t))
                    .copied();
                if let Some(tp) = candidate {
                    owned[from].remove(&tp);
                    owned[to].insert(tp);
                    moves += 1;
                    continue 'outer;
                }
            }
        }
        break;
    }
    ids.iter()
        .zip(owned)
        .map(|(id, set)| {
            let mut a = TopicPartitions::new();
            for (t, p) in set {
                a.entry(t).or_default().insert(p);
            }
            ((*id).clone(), a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(topics: &[Uuid], current: TopicPartitions) -> MemberSpec {
        MemberSpec {
            subscribed: topics.iter().copied().collect(),
            current,
        }
    }

    fn count(a: &TopicPartitions) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    fn all_exactly_once(out: &BTreeMap<String, TopicPartitions>, topics: &BTreeMap<Uuid, i32>) {
        let mut seen = BTreeSet::new();
        for a in out.values() {
            for (t, ps) in a {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} assigned twice");
                }
            }
        }
        let total: i32 = topics.values().sum();
        assert_eq!(seen.len(), total as usize);
    }

    #[test]
    fn uniform_balances_and_is_sticky() {
        let t = Uuid::from_u128(1);
        let topics: BTreeMap<Uuid, i32> = [(t, 12)].into();
        let mut members: BTreeMap<String, MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), spec(&[t], TopicPartitions::new())))
            .collect();
        let first = uniform(&members, &topics);
        all_exactly_once(&first, &topics);
        assert!(first.values().all(|a| count(a) == 4));
        // A fourth member joins: everyone keeps 3 of its 4, the newcomer gets 3.
        for (m, a) in &first {
            members.get_mut(m).unwrap().current = a.clone();
        }
        members.insert("d".into(), spec(&[t], TopicPartitions::new()));
        let second = uniform(&members, &topics);
        all_exactly_once(&second, &topics);
        for m in ["a", "b", "c"] {
            assert_eq!(count(&second[m]), 3);
            let kept = second[m][&t].intersection(&first[m][&t]).count();
            assert_eq!(kept, 3, "member {m} moved more than needed");
        }
        assert_eq!(count(&second["d"]), 3);
    }

    #[test]
    fn uniform_respects_heterogeneous_subscriptions() {
        let (t1, t2) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let topics: BTreeMap<Uuid, i32> = [(t1, 3), (t2, 5)].into();
        let members: BTreeMap<String, MemberSpec> = [
            ("a".to_string(), spec(&[t1], TopicPartitions::new())),
            ("b".to_string(), spec(&[t1, t2], TopicPartitions::new())),
            ("c".to_string(), spec(&[t2], TopicPartitions::new())),
        ]
        .into();
        let out = uniform(&members, &topics);
        all_exactly_once(&out, &topics);
        assert!(!out["a"].contains_key(&t2));
        assert!(!out["c"].contains_key(&t1));
        let loads: Vec<usize> = out.values().map(count).collect();
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = Uuid::from_u128(7);
        let topics: BTreeMap<Uuid, i32> = [(t, 7)].into();
        let members: BTreeMap<String, MemberSpec> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), spec(&[t], TopicPartitions::new())))
            .collect();
        let out = range(&members, &topics);
        all_exactly_once(&out, &topics);
        assert_eq!(out["a"][&t], [0, 1, 2].into());
        assert_eq!(out["b"][&t], [3, 4].into());
        assert_eq!(out["c"][&t], [5, 6].into());
    }

    #[test]
    fn members_without_topics_get_empty_assignments() {
        let topics = BTreeMap::new();
        let members: BTreeMap<String, MemberSpec> =
            [("a".to_string(), MemberSpec::default())].into();
        for name in [UNIFORM, RANGE] {
            let out = assign(name, &members, &topics);
            assert_eq!(out.len(), 1);
            assert!(out["a"].is_empty());
        }
    }
}
