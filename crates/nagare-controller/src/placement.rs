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
}
