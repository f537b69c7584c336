//! kill -9 while a producer writes with acks=all: after two crashes and restarts, every
//! acknowledged record is in the log exactly once, at the offset it was acknowledged with, and
//! offsets are dense from the log start.
//!
//! The schedule is seeded; set `NAGARE_IT_SEED` to replay a printed seed and
//! `NAGARE_IT_CRASH_ROUNDS` for more kill/restart rounds (default 3).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{consume_to_end, send_retrying_queue_full, Delivery, TestServer};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 3;

fn seed() -> u64 {
    std::env::var("NAGARE_IT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
        })
}

fn acked_count(reports: &[Delivery]) -> usize {
    reports
        .iter()
        .filter(|r| matches!(r, Delivery::Acked { .. }))
        .count()
}

#[test]
fn acknowledged_writes_survive_kill9() {
    let seed = seed();
    eprintln!("crash_recovery seed: {seed} (replay with NAGARE_IT_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let mut server = TestServer::start(&[]);
    server.create_topic(TOPIC, PARTITIONS, &[]);

    // acks=all without idempotence and without retries: a record the client never sent twice
    // can only appear twice if the broker duplicated it.
    let (producer, ctx) = server.recording_producer(&[
        ("enable.idempotence", "false"),
        ("retries", "0"),
        ("linger.ms", "2"),
        ("message.timeout.ms", "8000"),
        ("request.timeout.ms", "5000"),
        ("reconnect.backoff.ms", "20"),
        ("reconnect.backoff.max.ms", "200"),
        ("topic.metadata.refresh.interval.ms", "1000"),
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            while !stop.load(Ordering::SeqCst) {
                for _ in 0..20 {
                    let value = format!("v-{next}");
                    let record = BaseRecord::with_opaque_to(TOPIC, next)
                        .partition((next % PARTITIONS as usize) as i32)
                        .payload(value.as_bytes())
                        .key(value.as_bytes());
                    send_retrying_queue_full(&producer, record);
                    next += 1;
                }
                producer.poll(Duration::from_millis(2));
            }
            // Whatever is still queued either gets acknowledged or fails within the timeout.
            let _ = producer.flush(Duration::from_secs(30));
            next
        })
    };

    let rounds: usize = std::env::var("NAGARE_IT_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut acked_before_kill = Vec::new();
    for round in 0..rounds {
        let run = Duration::from_millis(rng.gen_range(700..2500));
        std::thread::sleep(run);
        acked_before_kill.push(acked_count(&ctx.reports.lock().expect("lock")));
        eprintln!("round {round}: SIGKILL after {run:?}");
        server.kill9();
        let down = Duration::from_millis(rng.gen_range(0..800));
        std::thread::sleep(down);
        let t = Instant::now();
        server.restart();
        eprintln!(
            "round {round}: down {down:?}, restarted in {:?}",
            t.elapsed()
        );
    }
    std::thread::sleep(Duration::from_millis(2000));
    let acked_before_stop = acked_count(&ctx.reports.lock().expect("lock"));
    stop.store(true, Ordering::SeqCst);
    let sent = writer.join().expect("writer thread");

    let reports = ctx.reports.lock().expect("lock").clone();
    let acked: Vec<(usize, i32, i64)> = reports
        .iter()
        .filter_map(|r| match r {
            Delivery::Acked {
                id,
                partition,
                offset,
            } => Some((*id, *partition, *offset)),
            Delivery::Failed { .. } => None,
        })
        .collect();
    let failed = reports.len() - acked.len();
    eprintln!(
        "sent {sent}, reports {}, acked {}, failed {failed}, acked before kills {:?}, before stop {}",
        reports.len(),
        acked.len(),
        acked_before_kill,
        acked_before_stop
    );
    assert!(
        acked_before_kill[0] > 0,
        "nothing acknowledged before the first crash"
    );
    for round in 1..rounds {
        assert!(
            acked_before_kill[round] > acked_before_kill[round - 1],
            "no progress between restart {round} and the next crash"
        );
    }
    assert!(
        acked.len() > acked_before_kill[rounds - 1],
        "the producer made no progress after the last restart"
    );
    assert_eq!(reports.len(), sent, "every record got a delivery report");

    // Read back everything.
    let consumed = consume_to_end(
        &server,
        TOPIC,
        PARTITIONS,
        Offset::Beginning,
        Duration::from_secs(120),
    );
    let mut location: HashMap<usize, (i32, i64)> = HashMap::new();
    for (p, msgs) in consumed.iter().enumerate() {
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(
                m.offset(),
                k as i64,
                "partition {p}: offsets not dense from 0 (seed {seed})"
            );
            let value = std::str::from_utf8(m.payload().expect("value")).expect("utf8");
            let id: usize = value
                .strip_prefix("v-")
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected value {value:?}"));
            assert_eq!(m.key(), m.payload(), "record {id}: key and value differ");
            assert_eq!(
                id % PARTITIONS as usize,
                p,
                "record {id} in the wrong partition"
            );
            if let Some(prev) = location.insert(id, (p as i32, m.offset())) {
                panic!(
                    "record {id} stored twice: at {prev:?} and at ({p}, {}) (seed {seed})",
                    m.offset()
                );
            }
        }
    }
    let mut lost = Vec::new();
    for &(id, partition, offset) in &acked {
        match location.get(&id) {
            Some(&loc) => assert_eq!(
                loc,
                (partition, offset),
                "record {id} acknowledged at ({partition}, {offset}) but found at {loc:?} (seed {seed})"
            ),
            None => lost.push((id, partition, offset)),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost (seed {seed}), first: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    eprintln!(
        "{} records in the log, {} acknowledged, {} unacknowledged but stored",
        location.len(),
        acked.len(),
        location.len() - acked.len()
    );
}
