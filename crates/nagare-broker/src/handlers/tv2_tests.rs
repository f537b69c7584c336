//! Transaction version 2 (KIP-890 part 2) and the `transaction.version` feature (KIP-1022)
//! on an in-memory broker ([`crate::testing::TestBroker`]): what ApiVersions reports, and
//! which EndTxn requests bump the producer epoch.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use nagare_metadata::features::{TRANSACTION_VERSION, TRANSACTION_VERSION_DEFAULT};
use nagare_metadata::metadata_version;
use nagare_metadata::records::MetadataRecord;

use nagare_transaction_coordinator::TransactionState;

use crate::testing::TestBroker;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const RETRIABLE_COORDINATOR: [i16; 3] = [14, 15, 16];

async fn broker() -> TestBroker {
    TestBroker::build(&[("transaction.state.log.num.partitions", "2")], None).await
}

/// Finalizes `transaction.version` at `level` through the controller (as an UpdateFeatures
/// would; `storage format --feature` does it at bootstrap).
async fn set_transaction_version(t: &TestBroker, level: i16) {
    t.controller
        .commit(false, move |_| {
            Ok((
                vec![MetadataRecord::FeatureLevel {
                    name: TRANSACTION_VERSION.into(),
                    level,
                }],
                (),
            ))
        })
        .await
        .expect("feature level committed");
}

async fn api_versions(t: &TestBroker, version: i16) -> ApiVersionsResponse {
    t.send(&ApiVersionsRequest::default(), version)
        .await
        .expect("ApiVersions")
}

fn finalized(r: &ApiVersionsResponse, name: &str) -> Option<(i16, i16)> {
    r.finalized_features
        .iter()
        .find(|f| f.name.as_str() == name)
        .map(|f| (f.min_version_level, f.max_version_level))
}

fn supported(r: &ApiVersionsResponse, name: &str) -> Option<(i16, i16)> {
    r.supported_features
        .iter()
        .find(|f| f.name.as_str() == name)
        .map(|f| (f.min_version, f.max_version))
}

#[tokio::test]
async fn api_versions_reports_supported_and_finalized_features() {
    let t = broker().await;
    let r = api_versions(&t, 4).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(supported(&r, TRANSACTION_VERSION), Some((0, 2)));
    assert_eq!(
        supported(&r, metadata_version::FEATURE_NAME),
        Some((
            metadata_version::MINIMUM_LEVEL,
            metadata_version::LATEST_LEVEL
        ))
    );
    assert_eq!(
        finalized(&r, TRANSACTION_VERSION),
        Some((TRANSACTION_VERSION_DEFAULT, TRANSACTION_VERSION_DEFAULT))
    );
    assert_eq!(
        finalized(&r, metadata_version::FEATURE_NAME),
        Some((
            metadata_version::LATEST_LEVEL,
            metadata_version::LATEST_LEVEL
        ))
    );
    // The epoch is the metadata offset the levels were read at.
    assert_eq!(r.finalized_features_epoch, t.broker.image().offset);
    assert!(r.finalized_features_epoch >= 0);
    // v3 cannot carry a minimum of 0 (KAFKA-17011): it is sent as 1.
    let r3 = api_versions(&t, 3).await;
    assert_eq!(supported(&r3, TRANSACTION_VERSION), Some((1, 2)));

    // A new level is reported with a newer epoch; level 0 is not finalized at all.
    let before = r.finalized_features_epoch;
    set_transaction_version(&t, 2).await;
    let r = api_versions(&t, 4).await;
    assert_eq!(finalized(&r, TRANSACTION_VERSION), Some((2, 2)));
    assert!(r.finalized_features_epoch > before);
    set_transaction_version(&t, 0).await;
    let r = api_versions(&t, 4).await;
    assert_eq!(finalized(&r, TRANSACTION_VERSION), None);
    assert!(finalized(&r, metadata_version::FEATURE_NAME).is_some());
    // Before v3 there are no feature fields.
    let r2 = api_versions(&t, 2).await;
    assert!(r2.supported_features.is_empty() && r2.finalized_features.is_empty());
}

/// InitProducerId for `id`, retried while the coordinator loads.
async fn init_txn(t: &TestBroker, id: &str) -> (ProducerId, i16) {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    for _ in 0..200 {
        let r = t.send(&req, 4).await.expect("InitProducerId");
        if !RETRIABLE_COORDINATOR.contains(&r.error_code) {
            assert_eq!(r.error_code, 0, "{r:?}");
            return (r.producer_id, r.producer_epoch);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the transaction coordinator never loaded");
}

async fn add_partition(t: &TestBroker, id: &str, pid: ProducerId, epoch: i16) -> i16 {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(TopicName(s("a")))
                .with_partitions(vec![0]),
        ]);
    let r = t.send(&req, 3).await.expect("AddPartitionsToTxn");
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn end_txn(
    t: &TestBroker,
    id: &str,
    pid: ProducerId,
    epoch: i16,
    version: i16,
) -> EndTxnResponse {
    let req = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(true);
    t.send(&req, version).await.expect("EndTxn")
}

/// The producer epoch the coordinator holds for `id`, once its transaction completed.
async fn settled_epoch(t: &TestBroker, id: &str) -> i16 {
    for _ in 0..200 {
        let r = t
            .send(
                &DescribeTransactionsRequest::default()
                    .with_transactional_ids(vec![TransactionalId(s(id))]),
                0,
            )
            .await
            .expect("DescribeTransactions");
        let st = &r.transaction_states[0];
        if st.transaction_state.as_str() == "CompleteCommit" {
            return st.producer_epoch;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the commit never completed");
}

/// A committed transaction of `id` ended with EndTxn at `version`: the response and the
/// epoch the coordinator then holds.
async fn commit_one(
    t: &TestBroker,
    id: &str,
    version: i16,
) -> (ProducerId, i16, EndTxnResponse, i16) {
    let (pid, epoch) = init_txn(t, id).await;
    assert_eq!(add_partition(t, id, pid, epoch).await, 0);
    let r = end_txn(t, id, pid, epoch, version).await;
    assert_eq!(r.error_code, 0, "{r:?}");
    let settled = settled_epoch(t, id).await;
    (pid, epoch, r, settled)
}

#[tokio::test]
async fn end_txn_v5_bumps_the_epoch_under_transaction_version_2() {
    let t = broker().await;
    t.create_topic("a", 1).await;
    set_transaction_version(&t, 2).await;
    let (pid, epoch, r, settled) = commit_one(&t, "tv2", 5).await;
    // The response carries the epoch to continue with, and the coordinator holds it.
    assert_eq!((r.producer_id, r.producer_epoch), (pid, epoch + 1));
    assert_eq!(settled, epoch + 1);
    // The next transaction runs at the bumped epoch without another InitProducerId; the
    // old epoch is fenced.
    assert_eq!(add_partition(&t, "tv2", pid, epoch + 1).await, 0);
    assert_eq!(
        add_partition(&t, "tv2", pid, epoch).await,
        90,
        "PRODUCER_FENCED"
    );
}

#[tokio::test]
async fn end_txn_before_v5_keeps_the_epoch_whatever_the_finalized_level() {
    let t = broker().await;
    t.create_topic("a", 1).await;
    // transaction.version 0 (not finalized) and 2: an EndTxn v4 (librdkafka's) is a
    // transaction version 0 request and never bumps (its response cannot carry the epoch).
    for (level, id) in [(0, "tv0"), (2, "v4-on-tv2")] {
        set_transaction_version(&t, level).await;
        let (pid, epoch, r, settled) = commit_one(&t, id, 4).await;
        assert_eq!(settled, epoch, "level {level}");
        assert_eq!(add_partition(&t, id, pid, epoch).await, 0, "level {level}");
        assert_eq!(r.error_code, 0);
    }
}

#[tokio::test]
async fn end_txn_v5_follows_the_request_version_not_the_finalized_level() {
    // Kafka's TransactionVersion.transactionVersionForEndTxn: a v5 request is a
    // transaction version 2 client even where transaction.version is 0 (clients send v5
    // only after seeing 2 finalized, so this is a cluster downgraded under them).
    let t = broker().await;
    t.create_topic("a", 1).await;
    set_transaction_version(&t, 0).await;
    let (pid, epoch, r, settled) = commit_one(&t, "v5-on-tv0", 5).await;
    assert_eq!((r.producer_id, r.producer_epoch), (pid, epoch + 1));
    assert_eq!(settled, epoch + 1);
}

/// The `__transaction_state` values written for `id`, in log order.
async fn txn_log_values(
    t: &TestBroker,
    id: &str,
) -> Vec<nagare_transaction_coordinator::TransactionLogValue> {
    let image = t.broker.image();
    let p = crate::transaction_coordinator::TransactionCoordinator::shard_of(&image, id)
        .expect("__transaction_state exists");
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s(
                crate::transaction_coordinator::TRANSACTION_STATE_TOPIC,
            )))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = t.send(&req, 11).await.expect("Fetch");
    let part = &r.responses[0].partitions[0];
    assert_eq!(part.error_code, 0);
    let mut b = part.records.clone().unwrap_or_default();
    let mut out = Vec::new();
    if b.is_empty() {
        return out;
    }
    for set in kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b).expect("decode") {
        for rec in set.records {
            let (Some(k), Some(v)) = (rec.key.as_deref(), rec.value.as_deref()) else {
                continue;
            };
            match nagare_transaction_coordinator::TxnRecord::decode(k, Some(v)) {
                Ok(nagare_transaction_coordinator::TxnRecord::Metadata {
                    transactional_id,
                    value,
                }) if transactional_id == id => out.push(value),
                _ => {}
            }
        }
    }
    out
}

/// The abort the coordinator starts when a new producer fences a transaction is written
/// under the cluster's finalized `transaction.version` (Kafka's `endTransaction(isFromClient
/// = false)`), not the client's (0 here: AddPartitionsToTxn v3).
#[tokio::test]
async fn a_fencing_abort_is_written_under_the_finalized_transaction_version() {
    let t = broker().await;
    t.create_topic("a", 1).await;
    set_transaction_version(&t, 2).await;
    let (pid, epoch) = init_txn(&t, "fenced").await;
    assert_eq!(add_partition(&t, "fenced", pid, epoch).await, 0);
    // A new instance with the same id: the ongoing transaction is aborted first.
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("fenced"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = t.send(&req, 4).await.expect("InitProducerId");
    assert_eq!(
        r.error_code, 51,
        "CONCURRENT_TRANSACTIONS while the abort completes"
    );
    let values = txn_log_values(&t, "fenced").await;
    let ongoing = values
        .iter()
        .find(|v| v.state == TransactionState::Ongoing)
        .expect("Ongoing written");
    assert_eq!(
        ongoing.client_transaction_version, 0,
        "the client's version"
    );
    let abort = values
        .iter()
        .find(|v| v.state == TransactionState::PrepareAbort)
        .expect("PrepareAbort written");
    assert_eq!(abort.producer_epoch, epoch + 1);
    assert_eq!(abort.client_transaction_version, 2, "the finalized version");
}
