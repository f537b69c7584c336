//! KIP-890 part 1 on an in-memory broker: the partition leader asks the transaction
//! coordinator (here in-process) before the first transactional write of a transaction on a
//! partition, and refuses a write whose partition is not in the producer's ongoing
//! transaction — in particular the late write of an aborted transaction, which would
//! otherwise start a hanging one.

use bytes::BytesMut;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::txn_data_tests::{produce, producer_batch};
use crate::replica_manager::{AppendEntry, AppendOrigin, RequiredAcks};
use crate::testing::TestBroker;
use nagare_storage::TxnVerification;

const INVALID_TXN_STATE: i16 = 48;
const TRANSACTION_ABORTABLE: i16 = 120;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const RETRIABLE_COORDINATOR: [i16; 3] = [14, 15, 16];

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

async fn broker(extra: &[(&str, &str)]) -> TestBroker {
    let mut props = vec![("transaction.state.log.num.partitions", "3")];
    props.extend_from_slice(extra);
    let t = TestBroker::build(&props, None).await;
    t.create_topic("t", 2).await;
    t
}

/// InitProducerId for `id`, retried while the coordinator is created and loads.
async fn init_txn(t: &TestBroker, id: &str) -> (i64, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    for _ in 0..200 {
        let r = t.send(&req, 4).await.expect("InitProducerId");
        if !RETRIABLE_COORDINATOR.contains(&r.error_code) {
            assert_eq!(r.error_code, 0);
            return (r.producer_id.0, r.producer_epoch);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the transaction coordinator never loaded");
}

/// AddPartitionsToTxn (v3, as a client) of `t-<partition>`.
async fn add(t: &TestBroker, id: &str, pid: i64, epoch: i16, partition: i32) {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![partition]),
        ]);
    let r = t.send(&req, 3).await.expect("AddPartitionsToTxn");
    let code = r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
    assert_eq!(code, 0, "{r:?}");
}

/// Produces a transactional batch of `n` records to `t-<partition>`: (error, base offset).
async fn send(
    t: &TestBroker,
    id: &str,
    (pid, epoch): (i64, i16),
    partition: i32,
    seq: i32,
    version: i16,
) -> (i16, i64) {
    let mut req = produce(Some(id), "t", producer_batch(pid, epoch, seq, 2, true));
    req.topic_data[0].partition_data[0].index = partition;
    let r = t.send(&req, version).await.expect("Produce");
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

#[tokio::test]
async fn a_write_to_a_partition_outside_the_transaction_is_refused_and_a_verified_one_appended() {
    let t = broker(&[]).await;
    let p = init_txn(&t, "v").await;
    add(&t, "v", p.0, p.1, 0).await;
    // Partition 1 was never added: refused with Kafka's code for the produce version, and
    // nothing is appended (the verified write below lands at offset 0).
    assert_eq!(send(&t, "v", p, 1, 0, 9).await, (INVALID_TXN_STATE, -1));
    assert_eq!(
        send(&t, "v", p, 1, 0, 11).await,
        (TRANSACTION_ABORTABLE, -1)
    );
    // Partition 0 is in the transaction: verified and appended; the next write continues
    // the ongoing transaction without asking again.
    assert_eq!(send(&t, "v", p, 0, 0, 9).await, (0, 0));
    assert_eq!(send(&t, "v", p, 0, 2, 9).await, (0, 2));
    add(&t, "v", p.0, p.1, 1).await;
    assert_eq!(send(&t, "v", p, 1, 0, 9).await, (0, 0));
    // A transactional write without a known transactional id at the coordinator.
    assert_eq!(
        send(&t, "unknown", (p.0 + 1000, 0), 0, 0, 9).await.0,
        INVALID_PRODUCER_ID_MAPPING
    );
}

/// The hole KIP-890 closes: a write delayed past its transaction's abort.
#[tokio::test]
async fn a_late_write_after_an_abort_does_not_start_a_hanging_transaction() {
    let t = broker(&[]).await;
    let p = init_txn(&t, "late").await;
    add(&t, "late", p.0, p.1, 0).await;
    assert_eq!(send(&t, "late", p, 0, 0, 9).await, (0, 0));
    let end = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s("late")))
        .with_producer_id(ProducerId(p.0))
        .with_producer_epoch(p.1)
        .with_committed(false);
    let r = t.send(&end, 3).await.expect("EndTxn");
    assert_eq!(r.error_code, 0);
    // Wait for the ABORT marker (offset 2) to be written.
    let mut state = String::new();
    for _ in 0..200 {
        let r = t
            .send(
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s("late"))]),
                0,
            )
            .await
            .expect("DescribeTransactions");
        state = r.transaction_states[0].transaction_state.to_string();
        if state == "CompleteAbort" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(state, "CompleteAbort");
    // The producer's delayed write of the aborted transaction arrives now: refused.
    assert_eq!(send(&t, "late", p, 0, 2, 9).await, (INVALID_TXN_STATE, -1));
    // The partition has no open transaction: the next write of a new transaction lands
    // right after the marker once added.
    add(&t, "late", p.0, p.1, 0).await;
    assert_eq!(send(&t, "late", p, 0, 2, 9).await, (0, 3));
}

/// A marker that lands between the verification and the append voids the verification.
#[tokio::test]
async fn a_marker_between_verification_and_append_refuses_the_append() {
    let t = broker(&[]).await;
    let (pid, epoch) = (77, 0);
    let guard = t
        .broker
        .replicas
        .start_txn_verification("t", 0, pid, epoch)
        .expect("leader")
        .expect("no ongoing transaction: a guard");
    let append = |records: BytesMut, origin, verification| {
        t.broker.replicas.append_records(
            origin,
            RequiredAcks::Leader,
            std::time::Duration::from_secs(1),
            vec![AppendEntry {
                topic: "t".into(),
                partition: 0,
                current_leader_epoch: -1,
                records,
                verification,
            }],
        )
    };
    let marker = nagare_protocol::batch_builder::build_control_batch(pid, epoch, 0, false, 0, 0)
        .expect("marker");
    let r = append(
        BytesMut::from(&marker[..]),
        AppendOrigin::Coordinator,
        TxnVerification::NotRequired,
    )
    .into_results();
    assert!(r[0].error.is_none(), "{:?}", r[0].error);
    let data = BytesMut::from(&producer_batch(pid, epoch, 0, 1, true)[..]);
    let r = append(
        data.clone(),
        AppendOrigin::Client,
        TxnVerification::Required(Some(guard)),
    )
    .into_results();
    assert_eq!(
        r[0].error.as_ref().map(|e| e.code()),
        Some(INVALID_TXN_STATE)
    );
    assert!(r[0].appended.is_none());
    // A fresh verification admits it.
    let guard = t
        .broker
        .replicas
        .start_txn_verification("t", 0, pid, epoch)
        .expect("leader")
        .expect("guard");
    let r = append(
        data,
        AppendOrigin::Client,
        TxnVerification::Required(Some(guard)),
    )
    .into_results();
    assert_eq!(r[0].appended.map(|a| a.base_offset), Some(1));
}

#[tokio::test]
async fn verification_off_leaves_the_storage_checks_only() {
    let t = broker(&[("transaction.partition.verification.enable", "false")]).await;
    let p = init_txn(&t, "off").await;
    // Not added to the transaction, yet appended (Kafka before 3.6).
    assert_eq!(send(&t, "off", p, 1, 0, 9).await, (0, 0));
}
