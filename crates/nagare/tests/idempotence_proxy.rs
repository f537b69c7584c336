//! An idempotent producer behind a proxy that cuts connections mid-request and drops responses
//! of requests the broker already applied: the log ends up with every record exactly once, in
//! order, per partition.
//!
//! The fault schedule is seeded; set `NAGARE_IT_SEED` to replay a printed seed.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{FaultPlan, Proxy};
use common::{consume_to_end, send_retrying_queue_full, Delivery, ServerOptions, TestServer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const TOPIC: &str = "idempotent";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 20_000;

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

#[test]
fn idempotent_producer_through_cutting_proxy() {
    let seed = seed();
    eprintln!("idempotence_proxy seed: {seed} (replay with NAGARE_IT_SEED={seed})");
    let proxy = Proxy::start(FaultPlan {
        seed,
        cuts: 24,
        min_budget: 1_000,
        max_budget: 40_000,
    });
    let server = TestServer::start_with(ServerOptions {
        advertised_port: Some(proxy.port),
        ..ServerOptions::default()
    });
    proxy.set_target(server.port);
    server.create_topic(TOPIC, PARTITIONS, &[]);
    proxy.start_faults();

    let (producer, ctx) = server.recording_producer(&[
        ("enable.idempotence", "true"),
        ("linger.ms", "5"),
        ("batch.num.messages", "200"),
        ("message.timeout.ms", "120000"),
        ("request.timeout.ms", "5000"),
        ("reconnect.backoff.ms", "20"),
        ("reconnect.backoff.max.ms", "200"),
    ]);
    let t0 = Instant::now();
    for i in 0..RECORDS {
        let partition = (i % PARTITIONS as usize) as i32;
        let seq = i / PARTITIONS as usize;
        let value = format!("{partition}:{seq}");
        let record = BaseRecord::<(), _, _>::with_opaque_to(TOPIC, i)
            .partition(partition)
            .payload(value.as_bytes());
        send_retrying_queue_full(&producer, record);
        if i % 200 == 0 {
            // Pace the producer so the stream spans many requests and connections.
            producer.poll(Duration::from_millis(2));
        }
    }
    producer
        .flush(Duration::from_secs(180))
        .expect("flush: every record delivered");
    let produce_time = t0.elapsed();
    let reports = ctx.reports.lock().expect("lock").clone();
    assert_eq!(reports.len(), RECORDS);
    let mut acked_offsets = vec![-1i64; RECORDS];
    for r in &reports {
        match r {
            Delivery::Acked { id, offset, .. } => acked_offsets[*id] = *offset,
            Delivery::Failed { id, error } => {
                panic!("record {id} failed (seed {seed}): {error}")
            }
        }
    }
    let cuts = proxy.cuts_done();
    eprintln!(
        "produced {RECORDS} in {produce_time:?}; proxy: {:?}, {cuts} cuts",
        proxy.stats()
    );
    assert!(
        cuts >= 3,
        "the proxy cut only {cuts} connections; the test proved little"
    );
    proxy.stop_faults();
    drop(producer);

    let consumed = consume_to_end(
        &server,
        TOPIC,
        PARTITIONS,
        Offset::Beginning,
        Duration::from_secs(120),
    );
    for (p, msgs) in consumed.iter().enumerate() {
        let values: Vec<String> = msgs
            .iter()
            .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            .collect();
        let expected: Vec<String> = (0..RECORDS / PARTITIONS as usize)
            .map(|seq| format!("{p}:{seq}"))
            .collect();
        if values != expected {
            let first_diff = values
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(values.len().min(expected.len()));
            panic!(
                "partition {p} (seed {seed}): {} records, expected {}; first difference at \
                 position {first_diff}: got {:?}, expected {:?}",
                values.len(),
                expected.len(),
                values.get(first_diff..(first_diff + 5).min(values.len())),
                expected.get(first_diff..(first_diff + 5).min(expected.len())),
            );
        }
        for (k, m) in msgs.iter().enumerate() {
            assert_eq!(m.offset(), k as i64, "partition {p}: offsets dense from 0");
            let id = k * PARTITIONS as usize + p;
            assert_eq!(
                acked_offsets[id],
                m.offset(),
                "record {id}: acknowledged offset differs from stored offset"
            );
        }
    }
}
