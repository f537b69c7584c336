//! Log compaction end to end: a real `nagare` process with a fast log cleaner, a topic with
//! `cleanup.policy=compact` and small segments, many updates to few keys (and some
//! tombstones), then a consumer from the beginning sees only the latest value per key at its
//! original offset, tombstoned keys vanish after `delete.retention.ms`, and the log shrank.
//! Keyless records are refused with INVALID_RECORD, as Kafka does.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{send_retrying_queue_full, Delivery, TestServer};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::Offset;

const KEYS: usize = 20;
const UPDATES: usize = 100;
const TOMBSTONED: usize = 5;
/// Records with distinct keys written last (about 13 KB, more than a segment).
const FILLER: usize = 100;

fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Everything a consumer from the beginning receives until the partition stays quiet (a
/// compacted log may end in a gap, so the high watermark is not a usable end marker).
fn consume_all(server: &TestServer, topic: &str) -> Vec<OwnedMessage> {
    let consumer = server.consumer(&[]);
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(m.detach());
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

/// A value that does not compress away (so that sizes say something with lz4).
fn value_of(i: usize) -> String {
    let mut x = (i as u64)
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let noise: String = (0..100)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            char::from(b'a' + ((x >> 33) % 26) as u8)
        })
        .collect();
    format!("{i:06}:{noise}")
}

#[test]
fn compaction_keeps_the_latest_value_per_key() {
    let server = TestServer::start(&[
        "log.cleaner.backoff.ms=200",
        "log.retention.check.interval.ms=200",
    ]);
    let topic = "compacted";
    server.create_topic(
        topic,
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "8192"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "3000"),
            ("file.delete.delay.ms", "0"),
        ],
    );

    // UPDATES rounds over KEYS keys; record i has offset i (one partition, acks=all, in order).
    let (producer, ctx) = server.recording_producer(&[
        ("batch.size", "2048"),
        ("linger.ms", "1"),
        ("compression.type", "lz4"),
        ("max.in.flight.requests.per.connection", "1"),
    ]);
    let mut expected: BTreeMap<String, Option<(i64, String)>> = BTreeMap::new();
    let total = KEYS * UPDATES;
    for i in 0..total {
        let key = format!("key-{:02}", i % KEYS);
        let value = value_of(i);
        send_retrying_queue_full(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .partition(0)
                .key(&key)
                .payload(&value),
        );
        expected.insert(key, Some((i as i64, value)));
    }
    // Tombstones for the first keys.
    for k in 0..TOMBSTONED {
        let key = format!("key-{k:02}");
        send_retrying_queue_full(
            &producer,
            BaseRecord::<String, (), usize>::with_opaque_to(topic, total + k)
                .partition(0)
                .key(&key),
        );
        expected.insert(key, None);
    }
    // Then distinct keys: as in Kafka, the segment holding the last record is never cleaned,
    // so the tombstones must be followed by more than a segment of data to go.
    for f in 0..FILLER {
        let key = format!("filler-{f:03}");
        let i = total + TOMBSTONED + f;
        let value = value_of(i);
        send_retrying_queue_full(
            &producer,
            BaseRecord::with_opaque_to(topic, i)
                .partition(0)
                .key(&key)
                .payload(&value),
        );
        expected.insert(key, Some((i as i64, value)));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    let reports = ctx.reports.lock().expect("reports").clone();
    assert_eq!(reports.len(), total + TOMBSTONED + FILLER);
    for r in &reports {
        match r {
            Delivery::Acked { id, offset, .. } => assert_eq!(*offset, *id as i64, "offsets"),
            Delivery::Failed { id, error } => panic!("record {id} failed: {error}"),
        }
    }

    // Keyless records are refused on a compacted topic (Kafka's INVALID_RECORD).
    let (keyless, kctx) = server.recording_producer(&[("message.timeout.ms", "10000")]);
    keyless
        .send(
            BaseRecord::<(), _, usize>::with_opaque_to(topic, 0)
                .partition(0)
                .payload("no key"),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    keyless.flush(Duration::from_secs(20)).expect("flush");
    match kctx.reports.lock().expect("reports").first() {
        Some(Delivery::Failed { error, .. }) => {
            assert!(error.to_lowercase().contains("invalid"), "{error}")
        }
        other => panic!("keyless record not refused: {other:?}"),
    }

    let dir = server.log_dir().join(format!("{topic}-0"));
    // What was written (the cleaner may already be at work, so the files are no measure).
    let size_before: u64 = (0..total).map(|i| value_of(i).len() as u64 + 8).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let msgs = consume_all(&server, topic);
        let mut seen: BTreeMap<String, Vec<(i64, Option<String>)>> = BTreeMap::new();
        for m in &msgs {
            let key =
                String::from_utf8_lossy(m.key().expect("every record has a key")).into_owned();
            let value = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
            seen.entry(key).or_default().push((m.offset(), value));
        }
        // Whatever the cleaner did so far, each key's last record is the latest written.
        for (key, want) in &expected {
            let got = seen.get(key).and_then(|v| v.last()).cloned();
            match want {
                Some((offset, value)) => {
                    assert_eq!(got, Some((*offset, Some(value.clone()))), "key {key}")
                }
                None => {
                    if let Some((_, v)) = &got {
                        assert!(v.is_none(), "key {key}: tombstone expected, got {v:?}");
                    }
                }
            }
        }
        let duplicates = seen.values().filter(|v| v.len() > 1).count();
        let tombstones_left = seen
            .values()
            .filter(|v| v.iter().any(|r| r.1.is_none()))
            .count();
        let size = log_bytes(&dir);
        let last = format!(
            "{} records, {duplicates} keys with duplicates, {tombstones_left} tombstones, {size} bytes on disk for {size_before} bytes written",
            msgs.len()
        );
        if duplicates == 0 && tombstones_left == 0 {
            assert_eq!(msgs.len(), KEYS - TOMBSTONED + FILLER, "{last}");
            assert!(size * 10 < size_before, "the log shrank: {last}");
            eprintln!("compacted: {last}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "compaction did not finish: {last}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let checkpoint = std::fs::read_to_string(server.log_dir().join("cleaner-offset-checkpoint"))
        .expect("cleaner checkpoint");
    assert!(checkpoint.contains(&format!("{topic} 0 ")), "{checkpoint}");
}

/// `__consumer_offsets` is compacted: many commits of one group shrink to the latest per
/// partition, and the group coordinator still loads the right offsets after a SIGKILL.
#[test]
fn consumer_offsets_are_compacted_and_reload_after_a_crash() {
    use rdkafka::consumer::{CommitMode, Consumer};
    let mut server = TestServer::start(&[
        "offsets.topic.num.partitions=1",
        "offsets.topic.segment.bytes=4096",
        "log.roll.ms=1000",
        "log.cleaner.min.cleanable.ratio=0.01",
        "log.cleaner.backoff.ms=200",
        "log.retention.check.interval.ms=200",
    ]);
    let topic = "tracked";
    server.create_topic(topic, 2, &[]);
    let mut cfg = server.client_config();
    cfg.set("group.id", "compacted-group")
        .set("enable.auto.commit", "false");
    let consumer: rdkafka::consumer::BaseConsumer = cfg.create().expect("consumer");
    let commits = 400;
    for i in 0..commits {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset(topic, (i % 2) as i32, Offset::Offset(i))
            .expect("tpl");
        consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    }
    let dir = server.log_dir().join("__consumer_offsets-0");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut size = log_bytes(&dir);
    // 400 commit records of ~100 bytes each were written; the latest two must remain.
    while size > 4096 * 2 {
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets not compacted: {size} bytes"
        );
        std::thread::sleep(Duration::from_millis(300));
        size = log_bytes(&dir);
    }
    let (_, high) = consumer
        .fetch_watermarks("__consumer_offsets", 0, Duration::from_secs(10))
        .expect("watermarks");
    assert!(
        high >= commits,
        "{high} records written to __consumer_offsets-0"
    );
    eprintln!(
        "__consumer_offsets-0: {size} bytes on disk after {commits} commits ({high} records)"
    );
    drop(consumer);
    server.kill9();
    server.restart();
    let mut cfg = server.client_config();
    cfg.set("group.id", "compacted-group")
        .set("enable.auto.commit", "false");
    let consumer: rdkafka::consumer::BaseConsumer = cfg.create().expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    tpl.add_partition(topic, 1);
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .expect("committed offsets");
    let offsets: Vec<Offset> = got.elements().iter().map(|e| e.offset()).collect();
    assert_eq!(
        offsets,
        vec![Offset::Offset(commits - 2), Offset::Offset(commits - 1)]
    );
}
