//! Transactions seen by real clients against a real `nagare` process, at the partition
//! level (the transaction coordinator is not involved): a transactional batch written by a
//! producer with a transactional id (raw Produce) holds the last stable offset back, so a
//! librdkafka `isolation.level=read_committed` consumer reads the records before it and
//! stops there while a `read_uncommitted` one reads everything; librdkafka's watermark
//! query (ListOffsets latest) answers the LSO and the high watermark respectively; and
//! DescribeProducers (KIP-664, also through `nagare transactions describe-producers`) shows
//! the open transaction's first offset.

mod common;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{block_on, TestServer};
use nagare_client::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use nagare_client::kafka_protocol::messages::{ProduceRequest, TopicName, TransactionalId};
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_client::{Client, Connection};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "rc";
/// The raw transactional batches here belong to no transaction at a coordinator, so KIP-890
/// part 1 (on by default, as in Kafka 3.6+) would refuse them: this partition-level test runs
/// with it off (`txn_verification.rs` tests it).
const NO_VERIFICATION: &[&str] = &["transaction.partition.verification.enable=false"];
const PID: i64 = 424_242;

/// One transactional batch of `n` records of producer [`PID`], epoch 0, from sequence 0.
fn transactional_batch(n: usize) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: PID,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: now,
            key: None,
            value: Some(Bytes::from(format!("txn-{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.freeze()
}

fn produce_plain(server: &TestServer, from: usize, n: usize) {
    let producer = server.producer(&[("enable.idempotence", "true")]);
    for i in from..from + n {
        let value = format!("plain-{i}");
        producer
            .send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&value))
            .expect("enqueue");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Polls `consumer` (assigned to partition 0 from the beginning) for `quiet` after the last
/// record, returning the offsets and values received.
fn drain(consumer: &BaseConsumer, quiet: Duration) -> Vec<(i64, String)> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut last = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while last.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "consuming took too long: {out:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
                out.push((m.offset(), v));
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consume error: {e}"),
            None => {}
        }
    }
    out
}

#[test]
fn read_committed_consumers_stop_at_an_open_transaction() {
    let server = TestServer::start(NO_VERIFICATION);
    server.create_topic(TOPIC, 1, &[]);
    // Offsets 0..10 plain, 10..15 an open transaction, 15..25 plain again.
    produce_plain(&server, 0, 10);
    block_on(async {
        let mut conn = Connection::connect(&server.direct_addr(), "txn-it")
            .await
            .expect("connect");
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("it-tx"))))
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(transactional_batch(5)))])]);
        let resp = conn.send_version(&req, 9).await.expect("produce");
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 10), "{p:?}");
    });
    produce_plain(&server, 10, 10);

    // DescribeProducers shows the open transaction and the idempotent producers.
    let producers = block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        client
            .describe_producers(TOPIC, 0)
            .await
            .expect("describe producers")
    });
    let txn = producers
        .iter()
        .find(|p| p.producer_id == PID)
        .expect("the transactional producer");
    assert_eq!(
        (
            txn.producer_epoch,
            txn.last_sequence,
            txn.current_txn_start_offset
        ),
        (0, 4, 10)
    );
    assert_eq!(producers.len(), 3, "{producers:?}");
    assert!(producers
        .iter()
        .filter(|p| p.producer_id != PID)
        .all(|p| p.current_txn_start_offset == -1 && p.last_sequence == 9));

    // `nagare transactions describe-producers` (kafka-transactions.sh's columns) shows it too.
    let out = std::process::Command::new(common::nagare_bin())
        .args(["transactions", "--bootstrap-server"])
        .arg(server.bootstrap())
        .args(["describe-producers", TOPIC, "0"])
        .output()
        .expect("run nagare");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&PID.to_string()))
        .unwrap_or_else(|| panic!("no row for the transactional producer:\n{text}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    // ProducerId ProducerEpoch LatestCoordinatorEpoch LastSequence LastTimestamp
    // CurrentTransactionStartOffset
    assert_eq!(
        (cols[1], cols[2], cols[3], cols[5]),
        ("0", "-1", "4", "10"),
        "{text}"
    );

    let committed = server.consumer(&[("isolation.level", "read_committed")]);
    let uncommitted = server.consumer(&[("isolation.level", "read_uncommitted")]);
    let marks = |c: &BaseConsumer| {
        c.fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
            .expect("watermarks")
    };
    assert_eq!(
        marks(&committed),
        (0, 10),
        "latest is the LSO under read_committed"
    );
    assert_eq!(
        marks(&uncommitted),
        (0, 25),
        "and the high watermark otherwise"
    );

    let got = drain(&committed, Duration::from_secs(2));
    let expected: Vec<(i64, String)> = (0..10).map(|i| (i, format!("plain-{i}"))).collect();
    assert_eq!(
        got, expected,
        "read_committed stops at the open transaction"
    );

    let got = drain(&uncommitted, Duration::from_secs(1));
    assert_eq!(got.len(), 25, "{got:?}");
    assert_eq!(got[10], (10, "txn-0".to_string()));
    assert_eq!(got[24], (24, "plain-19".to_string()));
}
