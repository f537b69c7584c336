//! The client data path under transactions, through the request pipeline on an in-memory
//! broker: transactional Produce (authorization, the log's refusals as Kafka's codes),
//! read_committed Fetch (the last stable offset, `aborted_transactions`), ListOffsets under
//! both isolation levels and DescribeProducers.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
use crate::replica_manager::{now_ms, AppendEntry, AppendOrigin, RequiredAcks};
use crate::testing::{encode_batch, plain_record, TestBroker};

/// These tests drive the partition data path without a transaction coordinator (batches of
/// made-up producers, markers appended directly): KIP-890's verification with the
/// coordinator is off, so the log's own checks are what is tested. Verification itself is
/// tested in `txn_verification_tests`.
const NO_VERIFICATION: &[(&str, &str)] = &[("transaction.partition.verification.enable", "false")];

async fn data_path_broker() -> TestBroker {
    TestBroker::build(NO_VERIFICATION, None).await
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// One batch of `n` records of producer `pid`/`epoch` starting at sequence `seq`.
pub(super) fn producer_batch(
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
    transactional: bool,
) -> Bytes {
    producer_batch_at(pid, epoch, seq, n, transactional, now_ms())
}

/// [`producer_batch`] with every record stamped `ts`.
fn producer_batch_at(
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
    transactional: bool,
    ts: i64,
) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            producer_id: pid,
            producer_epoch: epoch,
            sequence: seq + i as i32,
            ..plain_record(i, ts, Bytes::from(format!("v{i}")))
        })
        .collect();
    encode_batch(&records).freeze()
}

pub(super) fn produce(txn_id: Option<&str>, topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_transactional_id(txn_id.map(|t| TransactionalId(s(t))))
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s(topic)))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

/// (error code, base offset) of the one partition of a Produce.
async fn send_produce(t: &TestBroker, req: &ProduceRequest) -> (i16, i64) {
    let r = t.send(req, 9).await.expect("Produce");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// A transaction marker as the transaction coordinator writes it (Kafka's
/// `EndTransactionMarker`): one control record, key (version 0, type 0 ABORT / 1 COMMIT),
/// value (version 0, coordinator epoch). Built with `kafka-protocol`'s encoder, independent
/// of the broker's own builder, so the log is checked against another encoding of it.
fn control_batch(pid: i64, epoch: i16, coordinator_epoch: i32, commit: bool) -> BytesMut {
    let mut key = Vec::new();
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = Vec::new();
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: Some(Bytes::from(key)),
        value: Some(Bytes::from(value)),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        std::iter::once(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf
}

/// Appends a transaction marker as the transaction coordinator's WriteTxnMarkers does.
fn write_marker(t: &TestBroker, topic: &str, pid: i64, epoch: i16, commit: bool) {
    let marker = control_batch(pid, epoch, 0, commit);
    let results = t
        .broker
        .replicas
        .append_records(
            AppendOrigin::Coordinator,
            RequiredAcks::Leader,
            std::time::Duration::from_secs(1),
            vec![AppendEntry {
                topic: topic.to_string(),
                partition: 0,
                current_leader_epoch: -1,
                records: BytesMut::from(&marker[..]),
                verification: nagare_storage::TxnVerification::NotRequired,
            }],
        )
        .into_results();
    assert!(results[0].error.is_none(), "marker: {:?}", results[0].error);
}

/// The one partition of a consumer Fetch from offset 0.
async fn fetch(t: &TestBroker, topic: &str, isolation: i8) -> fetch_response::PartitionData {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s(topic)))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let mut r = t.send(&req, 11).await.expect("Fetch");
    r.responses.remove(0).partitions.remove(0)
}

/// The offsets of the records a fetch returned, control records included.
fn offsets(p: &fetch_response::PartitionData) -> Vec<i64> {
    let mut b = p.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    if b.is_empty() {
        return out;
    }
    for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b).expect("decode") {
        out.extend(set.records.iter().map(|r| r.offset));
    }
    out
}

/// ListOffsets(`timestamp`) on partition 0: (error, offset).
async fn list_offset(t: &TestBroker, topic: &str, timestamp: i64, isolation: i8) -> (i16, i64) {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(s(topic)))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(timestamp),
            ])]);
    let r = t.send(&req, 7).await.expect("ListOffsets");
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// read_committed stops at the first offset of an open transaction while read_uncommitted
/// reads to the high watermark; both are told the LSO; a commit marker releases the records
/// (the marker included), and ListOffsets(latest) follows the same bounds.
#[tokio::test]
async fn read_committed_stops_at_an_open_transaction_until_its_commit() {
    let t = data_path_broker().await;
    t.create_topic("t", 1).await;
    // Offsets 0..3: non-transactional; 3..6: producer 7's open transaction; 6..8: another
    // producer's idempotent batch, each batch a little newer than the one before.
    let now = now_ms();
    let b0 = producer_batch_at(-1, -1, -1, 3, false, now - 10_000);
    let b1 = producer_batch_at(7, 0, 0, 3, true, now - 5_000);
    let b2 = producer_batch_at(9, 0, 0, 2, false, now);
    assert_eq!(send_produce(&t, &produce(None, "t", b0)).await, (0, 0));
    assert_eq!(
        send_produce(&t, &produce(Some("tx"), "t", b1)).await,
        (0, 3)
    );
    assert_eq!(send_produce(&t, &produce(None, "t", b2)).await, (0, 6));
    assert_eq!(
        t.broker
            .replicas
            .partition("t", 0)
            .expect("p")
            .last_stable_offset(),
        3
    );

    let rc = fetch(&t, "t", 1).await;
    assert_eq!(
        (rc.error_code, rc.high_watermark, rc.last_stable_offset),
        (0, 8, 3)
    );
    assert_eq!(offsets(&rc), vec![0, 1, 2], "only below the LSO");
    assert_eq!(rc.aborted_transactions, Some(vec![]));
    let ru = fetch(&t, "t", 0).await;
    assert_eq!((ru.high_watermark, ru.last_stable_offset), (8, 3));
    assert_eq!(offsets(&ru), (0..8).collect::<Vec<_>>());
    assert_eq!(
        ru.aborted_transactions, None,
        "null for read_uncommitted, as Kafka"
    );

    assert_eq!(list_offset(&t, "t", -1, 0).await, (0, 8));
    assert_eq!(list_offset(&t, "t", -1, 1).await, (0, 3));
    // A timestamp or max-timestamp lookup landing at or past the LSO is not answered under
    // read_committed (Kafka: -1); under read_uncommitted the bound is the high watermark.
    assert_eq!(list_offset(&t, "t", now - 20_000, 1).await, (0, 0));
    assert_eq!(list_offset(&t, "t", now - 5_000, 1).await, (0, -1));
    assert_eq!(list_offset(&t, "t", now - 5_000, 0).await, (0, 3));
    assert_eq!(list_offset(&t, "t", -3, 1).await, (0, -1));
    assert_eq!(list_offset(&t, "t", -3, 0).await, (0, 6));

    write_marker(&t, "t", 7, 0, true);
    let rc = fetch(&t, "t", 1).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (9, 9));
    assert_eq!(offsets(&rc), (0..9).collect::<Vec<_>>());
    assert_eq!(
        rc.aborted_transactions,
        Some(vec![]),
        "a commit aborts nothing"
    );
    assert_eq!(list_offset(&t, "t", -1, 1).await, (0, 9));
}

/// An aborted transaction is listed for read_committed consumers (producer id and first
/// offset), so they drop its records.
#[tokio::test]
async fn read_committed_lists_aborted_transactions() {
    let t = data_path_broker().await;
    t.create_topic("t", 1).await;
    assert_eq!(
        send_produce(
            &t,
            &produce(Some("tx"), "t", producer_batch(7, 0, 0, 2, true))
        )
        .await,
        (0, 0)
    );
    assert_eq!(
        send_produce(
            &t,
            &produce(Some("tx"), "t", producer_batch(7, 0, 2, 2, true))
        )
        .await,
        (0, 2)
    );
    write_marker(&t, "t", 7, 0, false);
    assert_eq!(
        send_produce(
            &t,
            &produce(None, "t", producer_batch(-1, -1, -1, 1, false))
        )
        .await,
        (0, 5)
    );
    let rc = fetch(&t, "t", 1).await;
    assert_eq!((rc.high_watermark, rc.last_stable_offset), (6, 6));
    assert_eq!(offsets(&rc), (0..6).collect::<Vec<_>>());
    assert_eq!(
        rc.aborted_transactions,
        Some(vec![fetch_response::AbortedTransaction::default()
            .with_producer_id(ProducerId(7))
            .with_first_offset(0)])
    );
    let ru = fetch(&t, "t", 0).await;
    assert_eq!(ru.aborted_transactions, None);
}

/// The log's transactional checks come back with Kafka's per-partition codes.
#[tokio::test]
async fn transactional_produce_errors_have_kafka_codes() {
    let t = data_path_broker().await;
    t.create_topic("t", 1).await;
    assert_eq!(
        send_produce(
            &t,
            &produce(Some("tx"), "t", producer_batch(7, 1, 0, 2, true))
        )
        .await,
        (0, 0)
    );
    // A non-transactional batch while the producer's transaction is open: INVALID_TXN_STATE.
    let (code, _) = send_produce(&t, &produce(None, "t", producer_batch(7, 1, 2, 1, false))).await;
    assert_eq!(code, 48);
    // An older epoch: INVALID_PRODUCER_EPOCH (Kafka answers produce with it, not
    // PRODUCER_FENCED, since 2.7).
    let (code, _) = send_produce(
        &t,
        &produce(Some("tx"), "t", producer_batch(7, 0, 2, 1, true)),
    )
    .await;
    assert_eq!(code, 47);
    // A gap in the sequence: OUT_OF_ORDER_SEQUENCE_NUMBER.
    let (code, _) = send_produce(
        &t,
        &produce(Some("tx"), "t", producer_batch(7, 1, 5, 1, true)),
    )
    .await;
    assert_eq!(code, 45);
    // A client's control batch: INVALID_RECORD.
    let marker = control_batch(7, 1, 0, true).freeze();
    let (code, _) = send_produce(&t, &produce(Some("tx"), "t", marker)).await;
    assert_eq!(code, 87);
    // Clients never write to the transaction state topic.
    let (code, _) = send_produce(
        &t,
        &produce(
            None,
            "__transaction_state",
            producer_batch(-1, -1, -1, 1, false),
        ),
    )
    .await;
    assert_eq!(code, 17);
    // Nothing of the refused batches was appended.
    assert_eq!(
        t.broker
            .replicas
            .partition("t", 0)
            .expect("p")
            .log_end_offset(),
        2
    );
}

/// Denies WRITE on transactional ids only.
#[derive(Default)]
struct DenyTxnIds;

impl Authorizer for DenyTxnIds {
    fn authorize(&self, _: &Requester<'_>, _: AclOperation, r: &Resource<'_>) -> bool {
        r.resource_type != ResourceType::TransactionalId
    }
}

/// Kafka's rule: transactional batches need a transactional id with WRITE on it (else
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED and nothing appended); a transactional id on a
/// request without transactional batches is not checked.
#[tokio::test]
async fn transactional_produce_needs_write_on_the_transactional_id() {
    let t = TestBroker::build(NO_VERIFICATION, Some(Arc::new(DenyTxnIds))).await;
    t.create_topic("t", 1).await;
    let (code, offset) = send_produce(
        &t,
        &produce(Some("tx"), "t", producer_batch(7, 0, 0, 2, true)),
    )
    .await;
    assert_eq!((code, offset), (53, -1));
    let allowed = data_path_broker().await;
    allowed.create_topic("t", 1).await;
    let (code, _) = send_produce(
        &allowed,
        &produce(None, "t", producer_batch(7, 0, 0, 2, true)),
    )
    .await;
    assert_eq!(code, 53, "transactional batches without a transactional id");
    assert_eq!(
        allowed
            .broker
            .replicas
            .partition("t", 0)
            .expect("p")
            .log_end_offset(),
        0
    );
    let (code, offset) = send_produce(
        &t,
        &produce(Some("tx"), "t", producer_batch(8, 0, 0, 2, false)),
    )
    .await;
    assert_eq!(
        (code, offset),
        (0, 0),
        "idempotent batches under a transactional id"
    );
    assert_eq!(
        t.broker
            .replicas
            .partition("t", 0)
            .expect("p")
            .log_end_offset(),
        2
    );
}

/// DescribeProducers: each producer's state on the partition (the open transaction's first
/// offset included), UNKNOWN_TOPIC_OR_PARTITION for what the cluster lacks, and
/// TOPIC_AUTHORIZATION_FAILED without READ on the topic.
#[tokio::test]
async fn describe_producers_shows_producer_states() {
    let t = data_path_broker().await;
    t.create_topic("t", 1).await;
    assert_eq!(
        send_produce(&t, &produce(None, "t", producer_batch(5, 2, 0, 3, false))).await,
        (0, 0)
    );
    assert_eq!(
        send_produce(
            &t,
            &produce(Some("tx"), "t", producer_batch(7, 0, 0, 2, true))
        )
        .await,
        (0, 3)
    );
    let req = DescribeProducersRequest::default().with_topics(vec![
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0, 4]),
        describe_producers_request::TopicRequest::default()
            .with_name(TopicName(s("nope")))
            .with_partition_indexes(vec![0]),
    ]);
    let r = t.send(&req, 0).await.expect("DescribeProducers");
    let p0 = &r.topics[0].partitions[0];
    assert_eq!((p0.partition_index, p0.error_code), (0, 0));
    let states: Vec<(i64, i32, i32, i32, i64)> = p0
        .active_producers
        .iter()
        .map(|p| {
            assert!(p.last_timestamp > 0);
            (
                p.producer_id.0,
                p.producer_epoch,
                p.last_sequence,
                p.coordinator_epoch,
                p.current_txn_start_offset,
            )
        })
        .collect();
    assert_eq!(states, vec![(5, 2, 2, -1, -1), (7, 0, 1, -1, 3)]);
    let p4 = &r.topics[0].partitions[1];
    assert_eq!((p4.partition_index, p4.error_code), (4, 3));
    assert_eq!(r.topics[1].partitions[0].error_code, 3);

    // The commit ends the transaction; the marker's coordinator epoch is kept.
    write_marker(&t, "t", 7, 0, true);
    let r = t.send(&req, 0).await.expect("DescribeProducers");
    let p7 = &r.topics[0].partitions[0].active_producers[1];
    assert_eq!(
        (
            p7.producer_id.0,
            p7.current_txn_start_offset,
            p7.coordinator_epoch
        ),
        (7, -1, 0)
    );

    let denied = TestBroker::with_authorizer(Arc::new(DenyReads)).await;
    denied.create_topic("t", 1).await;
    let r = denied.send(&req, 0).await.expect("DescribeProducers");
    assert_eq!(r.topics[0].partitions[0].error_code, 29);
    assert_eq!(r.topics[0].partitions[1].error_code, 29);
}

/// Denies READ on topics only.
#[derive(Default)]
struct DenyReads;

impl Authorizer for DenyReads {
    fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
        !(op == AclOperation::Read && r.resource_type == ResourceType::Topic)
    }
}

/// DeleteRecords never cuts into an open transaction: "up to the high watermark" (-1) stops
/// at the last stable offset and an explicit offset past it is OFFSET_OUT_OF_RANGE.
#[tokio::test]
async fn delete_records_stops_at_an_open_transaction() {
    let t = data_path_broker().await;
    t.create_topic("t", 1).await;
    assert_eq!(
        send_produce(
            &t,
            &produce(None, "t", producer_batch(-1, -1, -1, 2, false))
        )
        .await,
        (0, 0)
    );
    assert_eq!(
        send_produce(
            &t,
            &produce(Some("tx"), "t", producer_batch(7, 0, 0, 2, true))
        )
        .await,
        (0, 2)
    );
    let delete = |offset: i64| {
        DeleteRecordsRequest::default().with_topics(vec![
            delete_records_request::DeleteRecordsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    delete_records_request::DeleteRecordsPartition::default()
                        .with_partition_index(0)
                        .with_offset(offset),
                ]),
        ])
    };
    let r = t.send(&delete(3), 2).await.expect("DeleteRecords");
    assert_eq!(r.topics[0].partitions[0].error_code, 1);
    let r = t.send(&delete(-1), 2).await.expect("DeleteRecords");
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 2));
    write_marker(&t, "t", 7, 0, false);
    let r = t.send(&delete(-1), 2).await.expect("DeleteRecords");
    let p = &r.topics[0].partitions[0];
    assert_eq!((p.error_code, p.low_watermark), (0, 5));
}
