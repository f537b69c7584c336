//! Records produced by librdkafka (through the `rdkafka` crate) come back byte for byte:
//! keys, values, headers (order, duplicate keys, null values), timestamps and per-partition
//! order, for every compression codec; plus metadata and fetching from inside a batch.
//!
//! `NAGARE_IT_RECORDS` sets the records per codec (default 100,000).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{consume_to_end, send_retrying_queue_full, Delivery, TestServer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

const PARTITIONS: i32 = 8;

fn records_per_codec() -> usize {
    std::env::var("NAGARE_IT_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Timestamps start 100 days ago; odd records are 40 days later than even ones, so one batch
/// spans more than 2^31 ms and a 32-bit timestamp delta would corrupt it.
fn timestamp_of(base_ms: i64, i: usize) -> i64 {
    base_ms + (i as i64 % 2) * 40 * 24 * 3600 * 1000 + i as i64
}

fn key_of(i: usize) -> Vec<u8> {
    format!("key-{i:07}").into_bytes()
}

/// Values of varied length (0..=300 bytes beyond a unique prefix), compressible but not uniform.
fn value_of(i: usize) -> Vec<u8> {
    let mut v = format!("value-{i}-").into_bytes();
    let extra = (i * 7919) % 301;
    v.extend((0..extra).map(|j| b"abcdefghijklmnopqrstuvwxyz0123456789"[(i + j * j) % 36]));
    v
}

/// The expected headers: a unique one, a key repeated twice, and a null value.
fn headers_of(i: usize) -> Vec<(String, Option<Vec<u8>>)> {
    vec![
        ("trace".to_string(), Some(format!("t-{i}").into_bytes())),
        ("dup".to_string(), Some(b"first".to_vec())),
        ("dup".to_string(), Some(format!("second-{i}").into_bytes())),
        ("nullh".to_string(), None),
    ]
}

fn owned_headers(i: usize) -> OwnedHeaders {
    let mut h = OwnedHeaders::new_with_capacity(4);
    for (key, value) in headers_of(i) {
        h = h.insert(Header {
            key: &key,
            value: value.as_deref(),
        });
    }
    h
}

fn received_headers(m: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    match m.headers() {
        None => Vec::new(),
        Some(h) => h
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
            .collect(),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Produces `n` records to `topic` (record `i` to partition `i % 8`) with `codec`, and returns
/// for each record its acknowledged `(partition, offset)`.
fn produce_all(
    server: &TestServer,
    topic: &str,
    codec: &str,
    n: usize,
    base_ms: i64,
) -> Vec<(i32, i64)> {
    let (producer, ctx) = server.recording_producer(&[
        ("compression.type", codec),
        ("linger.ms", "20"),
        ("batch.num.messages", "10000"),
        ("queue.buffering.max.messages", "500000"),
        ("queue.buffering.max.kbytes", "1048576"),
        ("message.timeout.ms", "120000"),
    ]);
    for i in 0..n {
        let key = key_of(i);
        let value = value_of(i);
        let record = BaseRecord::with_opaque_to(topic, i)
            .partition((i % PARTITIONS as usize) as i32)
            .key(&key)
            .payload(&value)
            .headers(owned_headers(i))
            .timestamp(timestamp_of(base_ms, i));
        send_retrying_queue_full(&producer, record);
        if i % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("flush: every record acknowledged");
    let reports = ctx.reports.lock().expect("reports").clone();
    assert_eq!(reports.len(), n, "one delivery report per record");
    let mut acked = vec![(-1, -1); n];
    for r in reports {
        match r {
            Delivery::Acked {
                id,
                partition,
                offset,
            } => acked[id] = (partition, offset),
            Delivery::Failed { id, error } => panic!("record {id} failed: {error}"),
        }
    }
    acked
}

fn roundtrip(codec: &str) {
    let n = records_per_codec();
    let server = TestServer::start(&[]);
    let topic = format!("roundtrip-{codec}");
    server.create_topic(&topic, PARTITIONS, &[]);
    let base_ms = now_ms() - 100 * 24 * 3600 * 1000;

    let t0 = Instant::now();
    let acked = produce_all(&server, &topic, codec, n, base_ms);
    let produce_time = t0.elapsed();

    // What each partition should contain, in produce order.
    let mut expected: Vec<Vec<usize>> = vec![Vec::new(); PARTITIONS as usize];
    for (i, &(p, _)) in acked.iter().enumerate() {
        assert_eq!(p, (i % PARTITIONS as usize) as i32, "record {i} partition");
        expected[p as usize].push(i);
    }

    let t1 = Instant::now();
    let consumed = consume_to_end(
        &server,
        &topic,
        PARTITIONS,
        Offset::Beginning,
        Duration::from_secs(180),
    );
    let consume_time = t1.elapsed();

    for (p, msgs) in consumed.iter().enumerate() {
        assert_eq!(
            msgs.len(),
            expected[p].len(),
            "partition {p}: consumed count != produced count"
        );
        for (pos, (m, &i)) in msgs.iter().zip(&expected[p]).enumerate() {
            // Offsets are dense from 0 and follow produce order.
            assert_eq!(m.offset(), pos as i64, "partition {p} position {pos}");
            assert_eq!(
                m.offset(),
                acked[i].1,
                "record {i}: consumed offset != acknowledged offset"
            );
            assert_eq!(m.key(), Some(&key_of(i)[..]), "record {i} key");
            assert_eq!(m.payload(), Some(&value_of(i)[..]), "record {i} value");
            assert_eq!(received_headers(m), headers_of(i), "record {i} headers");
            assert_eq!(
                m.timestamp(),
                Timestamp::CreateTime(timestamp_of(base_ms, i)),
                "record {i} timestamp"
            );
        }
    }

    // Fetching from offsets inside batches: the first record delivered is the one asked for.
    let consumer = server.consumer(&[]);
    let (_, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!(
        high as usize,
        expected[0].len(),
        "partition 0 high watermark"
    );
    for start in [3, high / 2 + 1, high - 1] {
        let m = first_record_from(&consumer, &topic, 0, start);
        assert_eq!(m.offset(), start, "{codec}: fetch from offset {start}");
        assert_eq!(
            m.payload(),
            Some(&value_of(expected[0][start as usize])[..])
        );
    }

    eprintln!("{codec}: {n} records produced in {produce_time:?}, consumed in {consume_time:?}");
}

/// Assigns `partition` at `offset` and returns the first record received.
fn first_record_from(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedMessage {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing received from {topic}/{partition} at offset {offset}"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => return m.detach(),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
}

#[test]
fn roundtrip_none() {
    roundtrip("none");
}

#[test]
fn roundtrip_gzip() {
    roundtrip("gzip");
}

#[test]
fn roundtrip_snappy() {
    roundtrip("snappy");
}

#[test]
fn roundtrip_lz4() {
    roundtrip("lz4");
}

#[test]
fn roundtrip_zstd() {
    roundtrip("zstd");
}

/// Counts the record batches in a partition's `.log` files (Kafka's on-disk format:
/// base offset i64, batch length i32, then `batch length` bytes).
fn count_batches(partition_dir: &std::path::Path) -> usize {
    let mut count = 0;
    let mut logs: Vec<_> = std::fs::read_dir(partition_dir)
        .expect("partition dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for path in logs {
        let bytes = std::fs::read(&path).expect("read segment");
        let mut pos = 0;
        while pos + 12 <= bytes.len() {
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes"));
            if len <= 0 {
                break; // preallocated zeroes
            }
            count += 1;
            pos += 12 + len as usize;
        }
    }
    count
}

/// Metadata lists the broker and topics; a consumer can start in the middle of a batch.
#[test]
fn metadata_and_fetch_inside_batch() {
    let server = TestServer::start(&[]);
    server.create_topic("meta-a", PARTITIONS, &[]);
    server.create_topic("meta-b", 3, &[]);

    let consumer = server.consumer(&[]);
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let brokers: Vec<_> = md
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect();
    assert_eq!(
        brokers,
        vec![(1, "127.0.0.1".to_string(), i32::from(server.port))],
        "the single broker, as advertised"
    );
    let topics: HashMap<String, Vec<i32>> = md
        .topics()
        .iter()
        .map(|t| {
            (
                t.name().to_string(),
                t.partitions().iter().map(|p| p.leader()).collect(),
            )
        })
        .collect();
    assert_eq!(topics.get("meta-a"), Some(&vec![1; PARTITIONS as usize]));
    assert_eq!(topics.get("meta-b"), Some(&vec![1; 3]));
    for t in md.topics() {
        if t.name() == "meta-a" {
            let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
            ids.sort();
            assert_eq!(ids, (0..PARTITIONS).collect::<Vec<_>>());
        }
    }

    // One batch of 10 records per codec (long linger, then flush), read from offsets inside it.
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("mid-batch-{codec}");
        server.create_topic(&topic, 1, &[]);
        let producer = server.producer(&[("linger.ms", "2000"), ("compression.type", codec)]);
        for i in 0..10 {
            let value = format!("{codec}-{i}");
            producer
                .send(
                    BaseRecord::<(), _>::to(&topic)
                        .payload(value.as_bytes())
                        .partition(0),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        let dir = server.log_dir().join(format!("{topic}-0"));
        if dir.is_dir() {
            assert_eq!(
                count_batches(&dir),
                1,
                "{topic}: the 10 records form one batch"
            );
        }
        for start in [5, 1, 9] {
            let m = first_record_from(&consumer, &topic, 0, start);
            assert_eq!(m.offset(), start, "{topic}: first offset delivered");
            assert_eq!(m.payload(), Some(format!("{codec}-{start}").as_bytes()));
        }
    }
}
