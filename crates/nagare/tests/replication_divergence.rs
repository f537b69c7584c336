//! A real divergent tail (issue 5, KIP-101/KIP-279) with real processes: 3 controllers and 3
//! brokers, an RF=3 topic with `min.insync.replicas=2`.
//!
//! 1. The leader A gets records its followers never see: both followers are SIGSTOPped (for
//!    less than `broker.session.timeout.ms` and `replica.lag.time.max.ms`, so nobody is
//!    fenced or leaves the ISR) and a non-idempotent `acks=1` librdkafka producer writes to A,
//!    which appends them above its high watermark.
//! 2. A is SIGKILLed, the followers resume; the controller fences A and elects one of them
//!    with a new leader epoch; more records are written there with `acks=all` at the same
//!    offsets A's divergent records had.
//! 3. A restarts as a follower: OffsetForLeaderEpoch tells it where its epoch ends on the new
//!    leader, it truncates its divergent tail and fetches the new records, ending with a
//!    segment file byte-identical to the other replicas'.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::eventually;
use nagare_client::PartitionMetadata;
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "divergent";
const READY: Duration = Duration::from_secs(60);

fn partition_state(bootstrap: &str) -> Option<PartitionMetadata> {
    replication::partition_state(bootstrap, TOPIC, 0)
}

/// Produces `values` all in flight at once; returns the offset of each (panics on a failure).
fn produce_all(p: &FutureProducer, values: &[String]) -> Vec<i64> {
    block_on(async {
        let futs: Vec<_> = values
            .iter()
            .map(|v| {
                p.send(
                    FutureRecord::to(TOPIC).partition(0).payload(v).key(v),
                    Duration::from_secs(0),
                )
            })
            .collect();
        let mut offsets = Vec::new();
        for (f, v) in futs.into_iter().zip(values) {
            match f.await {
                Ok(d) => offsets.push(d.offset),
                Err((e, _)) => panic!("produce of {v} failed: {e}"),
            }
        }
        offsets
    })
}

fn segment(dir: &Path) -> Vec<u8> {
    std::fs::read(
        dir.join(format!("{TOPIC}-0"))
            .join("00000000000000000000.log"),
    )
    .unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn consume_all(bootstrap: &str, expected: usize) -> Vec<(i64, String)> {
    replication::consume_exactly(bootstrap, TOPIC, expected)
}

#[test]
fn restarted_leader_truncates_its_divergent_tail() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=6000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=10000",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
        ],
    );
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    replication::create_topic(&all, TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    let p = eventually(Duration::from_secs(30), "a leader with a full ISR", || {
        partition_state(&all).filter(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let a = p.leader;
    let old_epoch = p.leader_epoch;
    let followers: Vec<i32> = p.replicas.iter().copied().filter(|r| *r != a).collect();
    eprintln!("leader A={a} (epoch {old_epoch}), followers {followers:?}");
    let dirs: Vec<PathBuf> = [101, 102, 103]
        .iter()
        .map(|id| cluster.node(*id).log_dir())
        .collect();
    let a_dir = cluster.node(a).log_dir();

    // Committed records everywhere.
    let committed: Vec<String> = (0..100).map(|i| format!("committed-{i}")).collect();
    let offs = produce_all(&replication::producer(&all, "all", true), &committed);
    assert_eq!(offs, (0..100).collect::<Vec<i64>>());
    eventually(Duration::from_secs(20), "identical replica logs", || {
        let logs: Vec<Vec<u8>> = dirs.iter().map(|d| segment(d)).collect();
        (!logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])).then_some(())
    });

    // 1. The followers freeze; once their parked fetches have been answered (empty, after
    //    replica.fetch.wait.max.ms) A takes acks=1 writes that nobody replicates.
    for f in &followers {
        cluster.node(*f).signal("STOP");
    }
    std::thread::sleep(Duration::from_millis(1000));
    let divergent: Vec<String> = (0..20).map(|i| format!("divergent-{i}")).collect();
    let a_boot = cluster.node(a).bootstrap();
    let offs = produce_all(&replication::producer(&a_boot, "1", false), &divergent);
    assert_eq!(offs, (100..120).collect::<Vec<i64>>());
    let a_log = segment(&a_dir);
    assert!(
        contains(&a_log, b"divergent-19"),
        "A's segment lacks the divergent records"
    );
    let a_len_before = a_log.len();

    // 2. A dies, the followers resume; one of them leads in a new epoch.
    cluster.node(a).kill9();
    for f in &followers {
        cluster.node(*f).signal("CONT");
    }
    let others = followers
        .iter()
        .map(|f| cluster.node(*f).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let newp = eventually(Duration::from_secs(30), "a new leader", || {
        partition_state(&others).filter(|p| p.leader >= 0 && p.leader != a)
    });
    assert!(followers.contains(&newp.leader), "{newp:?}");
    assert!(newp.leader_epoch > old_epoch, "{newp:?}");
    eprintln!(
        "new leader {} in epoch {}, ISR {:?}",
        newp.leader, newp.leader_epoch, newp.isr
    );
    for f in &followers {
        let log = segment(&cluster.node(*f).log_dir());
        assert!(
            !contains(&log, b"divergent-"),
            "follower {f} got divergent records"
        );
    }
    let fresh: Vec<String> = (0..30).map(|i| format!("new-leader-{i}")).collect();
    let offs = produce_all(&replication::producer(&others, "all", true), &fresh);
    assert_eq!(offs, (100..130).collect::<Vec<i64>>());

    // 3. A comes back: it truncates its divergent tail and ends with the new leader's log.
    cluster.node(a).start();
    cluster.node(a).wait_ready(READY);
    let line = eventually(Duration::from_secs(30), "A's truncation", || {
        let out = cluster.node(a).current_output();
        out.lines()
            .find(|l| l.contains("truncating divergent tail") && l.contains(TOPIC))
            .map(str::to_string)
    });
    eprintln!("A: {line}");
    eventually(Duration::from_secs(30), "A back in the ISR", || {
        partition_state(&others).filter(|p| p.isr.len() == 3)
    });
    let logs = eventually(Duration::from_secs(30), "identical replica logs", || {
        let logs: Vec<Vec<u8>> = dirs.iter().map(|d| segment(d)).collect();
        (logs.iter().all(|l| *l == logs[0]) && contains(&logs[0], b"new-leader-29")).then_some(logs)
    });
    assert!(!contains(&logs[0], b"divergent-"), "divergent records left");
    eprintln!(
        "A's segment: {a_len_before} bytes with the divergent tail, {} after",
        logs[0].len()
    );

    // Every value at its offset, read by a consumer.
    let expected: Vec<(i64, String)> = committed
        .iter()
        .chain(&fresh)
        .enumerate()
        .map(|(i, v)| (i as i64, v.clone()))
        .collect();
    let all = cluster.bootstrap();
    assert_eq!(consume_all(&all, expected.len()), expected);
}
