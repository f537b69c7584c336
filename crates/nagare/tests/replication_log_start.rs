//! Followers follow the leader's log start offset (issue 5), with real processes: 3
//! controllers and 3 brokers, an RF=3 topic with small segments.
//!
//! - every broker checkpoints its high watermark in `replication-offset-checkpoint`;
//! - DeleteRecords on the leader moves its log start; the followers learn it from the fetch
//!   responses and delete the same segments (Kafka's `maybeIncrementLogStartOffset`), ending
//!   with byte-identical segment files;
//! - a follower that was down while the leader deleted everything it had fetches below the
//!   leader's log start, gets OFFSET_OUT_OF_RANGE, asks the leader's log start with ListOffsets
//!   and restarts its log there (Kafka's `truncateFullyAndStartAt`), then rejoins the ISR.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::eventually;
use nagare_client::{Client, PartitionMetadata};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "logstart";
const READY: Duration = Duration::from_secs(60);

fn partition_state(bootstrap: &str) -> Option<PartitionMetadata> {
    replication::partition_state(bootstrap, TOPIC, 0)
}

/// Produces `rounds` rounds of 10 records of about 300 bytes (each round awaited, so each is
/// a batch of its own and the 4 KiB segments roll often); returns (value, offset) of each.
fn produce_rounds(p: &FutureProducer, prefix: &str, rounds: usize) -> Vec<(String, i64)> {
    let mut acked = Vec::new();
    for r in 0..rounds {
        let values: Vec<String> = (0..10)
            .map(|i| format!("{prefix}-{r}-{i}-{}", "x".repeat(300)))
            .collect();
        block_on(async {
            let futs: Vec<_> = values
                .iter()
                .map(|v| {
                    p.send(
                        FutureRecord::<(), _>::to(TOPIC).partition(0).payload(v),
                        Duration::from_secs(0),
                    )
                })
                .collect();
            for (f, v) in futs.into_iter().zip(&values) {
                match f.await {
                    Ok(d) => acked.push((v.clone(), d.offset)),
                    Err((e, _)) => panic!("acks=all produce failed: {e}"),
                }
            }
        });
    }
    acked
}

fn delete_records(bootstrap: &str, offset: Offset) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, offset).expect("tpl");
    let res = block_on(admin.delete_records(
        &tpl,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .expect("DeleteRecords");
    for e in res.elements() {
        assert!(e.error().is_ok(), "DeleteRecords failed: {:?}", e.error());
    }
}

/// `(file name, contents)` of every `.log` segment of the partition in `dir`, by name.
fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir.join(format!("{TOPIC}-0"))) else {
        return vec![];
    };
    let mut v: Vec<(String, Vec<u8>)> = rd
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".log")
                .then(|| (name, std::fs::read(e.path()).unwrap_or_default()))
        })
        .collect();
    v.sort();
    v
}

/// The partition's entry in the offset checkpoint file `file` of `dir`.
fn checkpointed(dir: &Path, file: &str) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    text.lines().skip(2).find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(TOPIC) && it.next() == Some("0"))
            .then(|| it.next().and_then(|o| o.parse().ok()))
            .flatten()
    })
}

fn consume_all(bootstrap: &str, expected: usize) -> Vec<(i64, String)> {
    replication::consume_all(bootstrap, TOPIC, expected)
}

#[test]
fn followers_follow_the_leader_log_start() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
            "replica.high.watermark.checkpoint.interval.ms=300",
            "log.flush.interval.ms=300",
        ],
    );
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    replication::create_topic(
        &all,
        TOPIC,
        1,
        3,
        &[("min.insync.replicas", "2"), ("segment.bytes", "4096")],
    );
    let p = eventually(Duration::from_secs(30), "a leader with a full ISR", || {
        partition_state(&all).filter(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let leader = p.leader;
    let follower = *p.replicas.iter().find(|r| **r != leader).expect("follower");
    eprintln!("leader {leader}, restarted follower {follower}");
    let dirs: Vec<PathBuf> = [101, 102, 103]
        .iter()
        .map(|id| cluster.node(*id).log_dir())
        .collect();

    let prod = replication::idempotent_producer(&all);
    let mut acked = produce_rounds(&prod, "a", 20);
    assert_eq!(acked.last().map(|a| a.1), Some(199));

    // Every broker checkpoints the high watermark (leader and followers alike).
    eventually(
        Duration::from_secs(20),
        "high-watermark checkpoints",
        || {
            dirs.iter()
                .all(|d| checkpointed(d, "replication-offset-checkpoint") == Some(200))
                .then_some(())
        },
    );

    // DeleteRecords on the leader: the followers delete the same segments.
    delete_records(&all, Offset::Offset(100));
    eventually(
        Duration::from_secs(20),
        "log starts at 100 everywhere",
        || {
            dirs.iter()
                .all(|d| checkpointed(d, "log-start-offset-checkpoint") == Some(100))
                .then_some(())
        },
    );
    eventually(Duration::from_secs(20), "identical segments", || {
        let segs: Vec<_> = dirs.iter().map(|d| segments(d)).collect();
        (segs.iter().all(|s| *s == segs[0]) && segs[0].len() > 1).then_some(())
    });
    let first = segments(&dirs[0])[0].0.clone();
    let base: i64 = first
        .trim_end_matches(".log")
        .parse()
        .expect("segment name");
    assert!(base > 0 && base <= 100, "first segment {first}");

    // A follower is away while the leader deletes everything it has: it comes back below
    // the leader's log start and must start over there.
    cluster.node(follower).kill9();
    acked.extend(produce_rounds(&prod, "b", 20));
    delete_records(&all, Offset::End);
    let leader_dir = cluster.node(leader).log_dir();
    eventually(
        Duration::from_secs(20),
        "the leader's log start at 400",
        || (checkpointed(&leader_dir, "log-start-offset-checkpoint") == Some(400)).then_some(()),
    );
    cluster.node(follower).start();
    cluster.node(follower).wait_ready(READY);
    eventually(
        Duration::from_secs(30),
        "the follower's full truncation",
        || {
            cluster
                .node(follower)
                .current_output()
                .contains("follower behind the leader's log start")
                .then_some(())
        },
    );
    eventually(Duration::from_secs(30), "the full ISR again", || {
        partition_state(&all).filter(|p| p.isr.len() == 3)
    });
    acked.extend(produce_rounds(&prod, "c", 5));
    eventually(
        Duration::from_secs(20),
        "identical segments after the restart",
        || {
            let segs: Vec<_> = dirs.iter().map(|d| segments(d)).collect();
            (segs.iter().all(|s| *s == segs[0])
                && segs[0].first().map(|s| s.0.as_str()) == Some("00000000000000000400.log"))
            .then_some(())
        },
    );
    eventually(
        Duration::from_secs(20),
        "log starts at 400 everywhere",
        || {
            dirs.iter()
                .all(|d| checkpointed(d, "log-start-offset-checkpoint") == Some(400))
                .then_some(())
        },
    );

    // What is left is every acknowledged record from 400 on, at its offset.
    let kept: Vec<(i64, String)> = acked
        .iter()
        .filter(|(_, o)| *o >= 400)
        .map(|(v, o)| (*o, v.clone()))
        .collect();
    assert_eq!(kept.len(), 50);
    let consumed = consume_all(&all, kept.len());
    assert_eq!(consumed, kept);
}

/// A crash of every replica and a restart: the checkpointed high watermarks are read back
/// (clamped to the recovered logs) and the first high watermark a leader answers is the one
/// before the crash. (Here the controller's fencing usually leaves a one-member ISR or the
/// followers fetch within milliseconds, so this guards the restart path end to end; the
/// RF=3 leader with silent followers is covered by the replica manager's unit test.)
#[test]
fn high_watermark_survives_killing_every_replica() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
            "replica.high.watermark.checkpoint.interval.ms=300",
        ],
    );
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    replication::create_topic(&all, TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    eventually(Duration::from_secs(30), "a leader with a full ISR", || {
        partition_state(&all).filter(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let prod = replication::idempotent_producer(&all);
    let acked = produce_rounds(&prod, "a", 20);
    drop(prod);
    let hw = acked.len() as i64;
    let dirs: Vec<PathBuf> = [101, 102, 103]
        .iter()
        .map(|id| cluster.node(*id).log_dir())
        .collect();
    eventually(
        Duration::from_secs(20),
        "high-watermark checkpoints",
        || {
            dirs.iter()
                .all(|d| checkpointed(d, "replication-offset-checkpoint") == Some(hw))
                .then_some(())
        },
    );
    for id in [101, 102, 103] {
        cluster.node(id).kill9();
    }
    cluster.start_nodes(&[101, 102, 103], READY);
    let t0 = Instant::now();
    let all = cluster.bootstrap();
    // The first answer of a leader, polled as fast as the client allows.
    let first = eventually(Duration::from_secs(60), "a leader answering", || {
        block_on(async {
            let mut c = Client::connect_to(&all).await.ok()?;
            c.list_offsets(TOPIC, 0, nagare_client::OffsetSpec::Latest)
                .await
                .ok()
        })
    });
    eprintln!(
        "first high watermark after restarting every replica: {first} (before: {hw}), {:?} after they were ready",
        t0.elapsed()
    );
    assert_eq!(first, hw);
}
