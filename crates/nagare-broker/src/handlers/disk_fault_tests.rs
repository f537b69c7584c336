//! Disk faults seen through the request pipeline (issue 18): a [`FaultyIo`] installed under
//! an in-memory broker's log directory.
//!
//! - a full disk: Produce gets KAFKA_STORAGE_ERROR, Fetch keeps serving what was written,
//!   DescribeLogDirs reports the directory online, and Produce succeeds again once space is
//!   back;
//! - EIO on a write: the log directory goes offline — Produce and Fetch of *every* partition
//!   get KAFKA_STORAGE_ERROR (Kafka's `handleLogDirFailure`) and DescribeLogDirs reports the
//!   directory with KAFKA_STORAGE_ERROR.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{
    fetch_request, produce_request, BrokerId, DescribeLogDirsRequest, FetchRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use nagare_storage::io::{self, FaultKind, FaultOp, FaultPlan, FaultyIo};

use crate::testing::TestBroker;

const KAFKA_STORAGE_ERROR: i16 = 56;

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

async fn produce(b: &TestBroker, partition: i32) -> i16 {
    let batch = nagare_protocol::batch_builder::build_batch(
        [(None, Some(Bytes::from(vec![7u8; 100])))],
        0,
        0,
    )
    .expect("batch");
    let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(name("d"))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.freeze()))]),
    ]);
    let r = b.send(&req, 9).await.expect("produce");
    r.responses[0].partition_responses[0].error_code
}

/// (error code, record bytes returned) of a consumer fetch from offset 0.
async fn fetch(b: &TestBroker, partition: i32) -> (i16, usize) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name("d"))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(partition)
                .with_partition_max_bytes(1 << 20)])]);
    let r = b.send(&req, 11).await.expect("fetch");
    let p = &r.responses[0].partitions[0];
    (p.error_code, p.records.as_ref().map_or(0, |r| r.len()))
}

async fn log_dir_error(b: &TestBroker) -> i16 {
    let r = b
        .send(&DescribeLogDirsRequest::default().with_topics(None), 4)
        .await
        .expect("DescribeLogDirs");
    r.results[0].error_code
}

#[tokio::test]
async fn full_disk_refuses_produce_and_serves_fetch_then_a_failed_write_takes_the_dir_offline() {
    let b = TestBroker::start().await;
    b.create_topic("d", 2).await;
    assert_eq!(produce(&b, 0).await, 0);
    assert_eq!(produce(&b, 1).await, 0);
    let faults = Arc::new(FaultyIo::new(FaultPlan::quiet(7)));
    let _guard = io::install(&b.broker.config.log_dirs[0], faults.clone());

    faults.set_disk_full(true);
    assert_eq!(produce(&b, 0).await, KAFKA_STORAGE_ERROR);
    let (code, bytes) = fetch(&b, 0).await;
    assert_eq!(code, 0, "reads keep being served on a full disk");
    assert!(bytes > 0);
    assert_eq!(
        log_dir_error(&b).await,
        0,
        "a full directory is not offline"
    );
    faults.set_disk_full(false);
    assert_eq!(produce(&b, 0).await, 0, "appends resume when space returns");

    faults.fail_next(FaultOp::Write, FaultKind::Eio);
    assert_eq!(produce(&b, 0).await, KAFKA_STORAGE_ERROR);
    // The whole directory is offline: the other partition too, for producers and consumers.
    assert_eq!(produce(&b, 1).await, KAFKA_STORAGE_ERROR);
    assert_eq!(fetch(&b, 0).await.0, KAFKA_STORAGE_ERROR);
    assert_eq!(fetch(&b, 1).await.0, KAFKA_STORAGE_ERROR);
    assert_eq!(log_dir_error(&b).await, KAFKA_STORAGE_ERROR);
    assert!(b.broker.replicas.log_dir_offline());
}
