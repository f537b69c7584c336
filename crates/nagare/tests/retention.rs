//! Size-based retention: with small segments and a small `retention.bytes`, old segments are
//! deleted by the periodic check, the log start offset moves forward, and consumers starting
//! from the beginning start there.

mod common;

use std::time::{Duration, Instant};

use common::{consume_to_end, send_retrying_queue_full, TestServer};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const SEGMENT_BYTES: u64 = 16_384;
const RETENTION_BYTES: u64 = 65_536;

fn log_bytes(dir: &std::path::Path) -> (u64, usize) {
    let mut total = 0;
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("partition dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "log") {
            total += std::fs::metadata(&path).expect("metadata").len();
            count += 1;
        }
    }
    (total, count)
}

fn value_of(i: usize) -> Vec<u8> {
    let mut v = format!("{i:08}:").into_bytes();
    v.resize(1000, b'x');
    v
}

#[test]
fn size_based_retention_deletes_old_segments() {
    let server = TestServer::start(&["log.retention.check.interval.ms=500"]);
    let topic = "retained";
    server.create_topic(
        topic,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("retention.bytes", &RETENTION_BYTES.to_string()),
        ],
    );

    // ~1 MB in small batches, so that no batch is larger than a segment.
    let n = 1000;
    let producer = server.producer(&[
        ("batch.size", "4096"),
        ("linger.ms", "1"),
        ("compression.type", "none"),
    ]);
    for i in 0..n {
        let value = value_of(i);
        send_retrying_queue_full(
            &producer,
            BaseRecord::<(), _>::to(topic).partition(0).payload(&value),
        );
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    let dir = server.log_dir().join(format!("{topic}-0"));
    assert!(
        dir.is_dir(),
        "partition directory {} missing",
        dir.display()
    );
    let consumer = server.consumer(&[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (low, high) = loop {
        let (bytes, segments) = log_bytes(&dir);
        let (low, high) = consumer
            .fetch_watermarks(topic, 0, Duration::from_secs(10))
            .expect("watermarks");
        if bytes <= RETENTION_BYTES + SEGMENT_BYTES && low > 0 {
            eprintln!("retention: {bytes} bytes in {segments} segments, offsets {low}..{high}");
            break (low, high);
        }
        assert!(
            Instant::now() < deadline,
            "retention never applied: {bytes} bytes in {segments} .log files, log start {low}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(high, n as i64, "high watermark");
    assert!(low < high, "retention must keep the active segment");

    // It stays within bounds (the check runs every 500 ms).
    std::thread::sleep(Duration::from_millis(1500));
    let (bytes, _) = log_bytes(&dir);
    assert!(
        bytes <= RETENTION_BYTES + SEGMENT_BYTES,
        "{bytes} bytes of .log files exceed retention.bytes + one segment"
    );

    // Consuming from the beginning starts at the (current) log start offset.
    let (low_now, _) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert!(low_now >= low);
    let consumed = consume_to_end(
        &server,
        topic,
        1,
        Offset::Beginning,
        Duration::from_secs(30),
    );
    let msgs = &consumed[0];
    assert!(!msgs.is_empty(), "records after the log start are readable");
    assert_eq!(
        msgs[0].offset(),
        low_now,
        "first offset consumed from the beginning"
    );
    for (k, m) in msgs.iter().enumerate() {
        let offset = low_now + k as i64;
        assert_eq!(m.offset(), offset, "offsets dense from the log start");
        assert_eq!(m.payload(), Some(&value_of(offset as usize)[..]));
    }
    assert_eq!(msgs.last().map(|m| m.offset()), Some(n as i64 - 1));
}
