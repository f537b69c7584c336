//! Replication with real processes (issue 5): 3 controllers and 3 brokers on 127.0.0.1, an
//! RF=3 topic with `min.insync.replicas=2`, written with librdkafka `acks=all`.
//!
//! - every replica ends with the same log (byte for byte: followers append the leader's
//!   batches verbatim);
//! - SIGKILL of one follower: the leader drops it from the ISR after
//!   `replica.lag.time.max.ms` and `acks=all` writes continue;
//! - SIGKILL of the second follower: the ISR is the leader alone and `acks=all` is refused
//!   with NOT_ENOUGH_REPLICAS (19);
//! - both restart, truncate/catch up and rejoin the ISR;
//! - SIGKILL of the leader: the controller elects an in-sync replica, the producer resumes on
//!   it, and every acknowledged record is still there, once, in order.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::{eventually, sorted};
use nagare_client::{Acks, Client, Compression, PartitionMetadata, ProduceRecord};
use rdkafka::producer::{FutureProducer, FutureRecord};

const TOPIC: &str = "replicated";
const READY: Duration = Duration::from_secs(60);

fn partition_state(bootstrap: &str) -> Option<PartitionMetadata> {
    replication::partition_state(bootstrap, TOPIC, 0)
}

/// Produces `values` with acks=all, all in flight at once; returns (value, offset) of every
/// acknowledged one and panics if any failed.
fn produce_all(p: &FutureProducer, values: &[String]) -> Vec<(String, i64)> {
    block_on(async {
        let futs: Vec<_> = values
            .iter()
            .map(|v| {
                let v = v.clone();
                async move {
                    let r = p
                        .send(
                            FutureRecord::to(TOPIC).partition(0).payload(&v).key(&v),
                            Duration::from_secs(0),
                        )
                        .await;
                    (v, r)
                }
            })
            .collect();
        let mut acked = Vec::new();
        for f in futs {
            let (v, r) = f.await;
            match r {
                Ok(d) => acked.push((v, d.offset)),
                Err((e, _)) => panic!("acks=all produce of {v} failed: {e}"),
            }
        }
        acked
    })
}

fn segment(dir: PathBuf) -> Vec<u8> {
    std::fs::read(
        dir.join(format!("{TOPIC}-0"))
            .join("00000000000000000000.log"),
    )
    .unwrap_or_default()
}

fn consume_all(bootstrap: &str, expected: usize) -> Vec<(i64, String)> {
    replication::consume_all(bootstrap, TOPIC, expected)
}

#[test]
fn rf3_min_isr2_survives_broker_failures() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=2000",
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
    let leader = p.leader;
    let followers: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|r| *r != leader)
        .collect();
    eprintln!("leader {leader}, followers {followers:?}");

    // 1. acks=all with a healthy ISR; every replica ends with the same bytes.
    let prod = replication::idempotent_producer(&all);
    let mut acked = produce_all(
        &prod,
        &(0..200).map(|i| format!("a-{i}")).collect::<Vec<_>>(),
    );
    let dirs: Vec<PathBuf> = [101, 102, 103]
        .iter()
        .map(|id| cluster.node(*id).log_dir())
        .collect();
    eventually(Duration::from_secs(20), "identical replica logs", || {
        let logs: Vec<Vec<u8>> = dirs.iter().map(|d| segment(d.clone())).collect();
        (!logs[0].is_empty() && logs.iter().all(|l| *l == logs[0])).then_some(())
    });

    // 2. One follower dies: after replica.lag.time.max.ms the ISR shrinks and writes go on.
    cluster.node(followers[0]).kill9();
    let t0 = Instant::now();
    acked.extend(produce_all(
        &prod,
        &(0..100).map(|i| format!("b-{i}")).collect::<Vec<_>>(),
    ));
    eprintln!(
        "writes with one follower down acknowledged after {:?}",
        t0.elapsed()
    );
    let live = cluster.node(leader).bootstrap();
    eventually(
        Duration::from_secs(20),
        "ISR without the dead follower",
        || partition_state(&live).filter(|p| !p.isr.contains(&followers[0])),
    );

    // 3. The second follower dies: the ISR is the leader alone, acks=all is refused.
    cluster.node(followers[1]).kill9();
    eventually(Duration::from_secs(20), "ISR of the leader alone", || {
        partition_state(&live).filter(|p| p.isr == vec![leader])
    });
    let code = block_on(async {
        let mut c = Client::connect_to(&live).await.expect("connect");
        c.produce(
            TOPIC,
            0,
            vec![ProduceRecord::new("refused")],
            Acks::All,
            Compression::None,
        )
        .await
        .err()
        .and_then(|e| e.kafka_code())
    });
    assert_eq!(code, Some(19), "NOT_ENOUGH_REPLICAS expected");

    // 4. Both come back, catch up and rejoin the ISR.
    for f in &followers {
        cluster.node(*f).start();
    }
    for f in &followers {
        cluster.node(*f).wait_ready(READY);
    }
    eventually(Duration::from_secs(30), "the full ISR again", || {
        partition_state(&live).filter(|p| sorted(p.isr.clone()) == sorted(p.replicas.clone()))
    });
    acked.extend(produce_all(
        &prod,
        &(0..100).map(|i| format!("c-{i}")).collect::<Vec<_>>(),
    ));

    // 5. The leader dies: a new leader is elected from the ISR and producers resume on it.
    cluster.node(leader).kill9();
    let t0 = Instant::now();
    acked.extend(produce_all(
        &prod,
        &(0..100).map(|i| format!("d-{i}")).collect::<Vec<_>>(),
    ));
    eprintln!(
        "writes resumed {:?} after the leader was killed",
        t0.elapsed()
    );
    let others = followers
        .iter()
        .map(|f| cluster.node(*f).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let newp = eventually(Duration::from_secs(20), "a new leader", || {
        partition_state(&others).filter(|p| p.leader >= 0 && p.leader != leader)
    });
    assert!(followers.contains(&newp.leader), "{newp:?}");

    // Nothing acknowledged was lost, nothing duplicated, and each value sits at the offset
    // it was acknowledged with.
    let consumed = consume_all(&others, acked.len());
    let mut seen = std::collections::HashMap::new();
    for (off, v) in &consumed {
        assert!(seen.insert(v.clone(), *off).is_none(), "{v} appears twice");
    }
    for (v, off) in &acked {
        assert_eq!(
            seen.get(v),
            Some(off),
            "acknowledged {v} at {off} lost or moved"
        );
    }
    assert!(
        consumed.windows(2).all(|w| w[0].0 < w[1].0),
        "offsets not increasing"
    );
}
