//! Replica placement for new partitions.

/// Assigns `partitions` new partitions (numbered from `first_partition`) `replication_factor`
/// replicas each over `brokers` (sorted, unfenced), spreading leaders round-robin and
/// followers on the next brokers, as Kafka's default placement does. `start` offsets the
/// round-robin so that topics do not all lead on the same broker.
pub fn place(
    brokers: &[i32],
    first_partition: i32,
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> Option<Vec<Vec<i32>>> {
    if brokers.is_empty() || replication_factor == 0 || replication_factor > brokers.len() {
        return None;
    }
    let n = brokers.len();
    let mut out = Vec::with_capacity(partitions.max(0) as usize);
    for p in 0..partitions.max(0) {
        let first = (start + (first_partition + p) as usize) % n;
        let shift = 1 + ((first_partition + p) as usize / n) % (n.max(2) - 1).max(1);
        let mut replicas = vec![brokers[first]];
        let mut idx = first;
        while replicas.len() < replication_factor {
            idx = (idx + shift) % n;
            if !replicas.contains(&brokers[idx]) {
                replicas.push(brokers[idx]);
            } else {
                idx = (idx + 1) % n;
                if !replicas.contains(&brokers[idx]) {
                    replicas.push(brokers[idx]);
                }
            }
        }
        out.push(replicas);
    }
    Some(out)
}

/// Rack-aware placement (Kafka's `broker.rack` assignment): brokers are ordered alternating
/// racks, leaders go round-robin over that order, and each further replica goes to the next
/// broker whose rack the partition does not use yet (any unused broker once every rack is
/// used), so a partition's replicas span as many racks as possible.
pub fn place_rack_aware(
    brokers: &[(i32, String)],
    first_partition: i32,
    partitions: i32,
    replication_factor: usize,
    start: usize,
) -> Option<Vec<Vec<i32>>> {
    if brokers.is_empty() || replication_factor == 0 || replication_factor > brokers.len() {
        return None;
    }
    // Alternate racks: r1b1, r2b1, r3b1, r1b2, ...
    let mut by_rack: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for (id, rack) in brokers {
        by_rack.entry(rack.as_str()).or_default().push(*id);
    }
    for v in by_rack.values_mut() {
        v.sort();
    }
    let mut order: Vec<(i32, &str)> = Vec::with_capacity(brokers.len());
    let deepest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    for i in 0..deepest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(i) {
                order.push((*id, rack));
            }
        }
    }
    let racks = by_rack.len();
    let n = order.len();
    let mut out = Vec::with_capacity(partitions.max(0) as usize);
    for p in 0..partitions.max(0) {
        let idx = first_partition + p;
        let first = (start + idx as usize) % n;
        let shift = 1 + (idx as usize / n) % (n.max(2) - 1).max(1);
        let mut replicas = vec![order[first].0];
        let mut used_racks = vec![order[first].1];
        let mut k = first;
        let mut scanned = 0;
        while replicas.len() < replication_factor && scanned < 2 * n {
            k = (k + if scanned == 0 { shift } else { 1 }) % n;
            scanned += 1;
            let (id, rack) = order[k];
            if replicas.contains(&id) {
                continue;
            }
            if used_racks.len() < racks && used_racks.contains(&rack) {
                continue;
            }
            replicas.push(id);
            if !used_racks.contains(&rack) {
                used_racks.push(rack);
            }
        }
        if replicas.len() < replication_factor {
            return None;
        }
        out.push(replicas);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_replicas_and_spread_leaders() {
        let brokers = [1, 2, 3];
        let a = place(&brokers, 0, 6, 3, 0).expect("placement");
        for r in &a {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 3);
        }
        let leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        assert!(place(&brokers, 0, 1, 4, 0).is_none());
        assert_eq!(place(&[7], 0, 2, 1, 0), Some(vec![vec![7], vec![7]]));
    }

    #[test]
    fn rack_aware_spreads_replicas_over_racks() {
        let brokers: Vec<(i32, String)> = vec![
            (1, "a".into()),
            (2, "a".into()),
            (3, "b".into()),
            (4, "b".into()),
            (5, "c".into()),
            (6, "c".into()),
        ];
        let rack = |id: i32| brokers.iter().find(|b| b.0 == id).map(|b| b.1.clone());
        let a = place_rack_aware(&brokers, 0, 12, 3, 0).expect("placement");
        for r in &a {
            let mut racks: Vec<_> = r.iter().map(|id| rack(*id)).collect();
            racks.sort();
            racks.dedup();
            assert_eq!(racks.len(), 3, "{r:?} spans only {racks:?}");
        }
        // Leaders are spread over every broker.
        let mut leaders: Vec<i32> = a.iter().map(|r| r[0]).collect();
        leaders.sort();
        leaders.dedup();
        assert_eq!(leaders.len(), 6);
        // More replicas than racks: still distinct brokers.
        let b = place_rack_aware(&brokers, 0, 4, 5, 0).expect("placement");
        for r in &b {
            let mut s = r.clone();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 5);
        }
        assert!(place_rack_aware(&brokers, 0, 1, 7, 0).is_none());
    }
}
