//! KIP-467 per-record produce errors (issue 17): a batch refused for some of its records
//! names them in `record_errors` (batch index and reason) and carries an `error_message`,
//! worded as Kafka 4.x's `LogValidator.processRecordErrors`; nothing of the batch is
//! appended.

use bytes::Bytes;
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{produce_request, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::testing::TestBroker;

const INVALID_RECORD: i16 = 87;
const INVALID_TIMESTAMP: i16 = 32;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn topic(t: &TestBroker, name: &str, configs: &[(&str, &str)]) {
    t.broker
        .create_topics_internal(vec![nagare_controller::logic::NewTopic {
            name: name.into(),
            num_partitions: 1,
            replication_factor: 1,
            assignments: vec![],
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), Some(v.to_string())))
                .collect(),
        }])
        .await
        .expect("create topic");
}

/// Produces one batch of `keys` (a value each) stamped `timestamp` at `version`.
async fn produce(
    t: &TestBroker,
    topic: &str,
    keys: &[Option<&str>],
    timestamp: i64,
    version: i16,
) -> PartitionProduceResponse {
    let batch = nagare_protocol::batch_builder::build_batch(
        keys.iter().map(|k| {
            (
                k.map(|k| Bytes::from(k.to_string())),
                Some(Bytes::from_static(b"v")),
            )
        }),
        0,
        timestamp,
    )
    .expect("batch");
    let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))]),
    ]);
    let mut r = t.send(&req, version).await.expect("produce");
    r.responses.remove(0).partition_responses.remove(0)
}

fn indexes(p: &PartitionProduceResponse) -> Vec<i32> {
    p.record_errors.iter().map(|e| e.batch_index).collect()
}

#[tokio::test]
async fn keyless_records_on_a_compacted_topic_are_named() {
    let t = TestBroker::start().await;
    topic(&t, "c", &[("cleanup.policy", "compact")]).await;
    let now = now_ms();
    let keys = [Some("a"), None, Some("b"), None, None, None];
    let p = produce(&t, "c", &keys, now, 9).await;
    assert_eq!(p.error_code, INVALID_RECORD);
    assert_eq!(p.base_offset, -1);
    assert_eq!(indexes(&p), vec![1, 3, 4, 5]);
    let reason = "Compacted topic cannot accept message without key in topic partition c-0.";
    for e in &p.record_errors {
        assert_eq!(e.batch_index_error_message.as_deref(), Some(reason));
    }
    // Kafka's summary: the count, then at most the first three.
    let shown = [1, 3, 4]
        .map(|i| format!("RecordError(batchIndex={i}, message='{reason}')"))
        .join(", ");
    assert_eq!(
        p.error_message.as_deref(),
        Some(
            format!(
                "One or more records have been rejected due to 4 record errors in total, and \
                 only showing the first three errors at most: [{shown}]"
            )
            .as_str()
        )
    );
    // Produce v7 has no such fields: the same code, encoded without them.
    let p = produce(&t, "c", &keys, now, 7).await;
    assert_eq!(p.error_code, INVALID_RECORD);
    assert!(p.record_errors.is_empty() && p.error_message.is_none());
    // Nothing was appended; a batch with every key is.
    let p = produce(&t, "c", &[Some("a"), Some("b")], now, 9).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    assert!(p.record_errors.is_empty() && p.error_message.is_none());
}

#[tokio::test]
async fn out_of_range_timestamps_are_named() {
    let t = TestBroker::start().await;
    topic(&t, "ts", &[("message.timestamp.after.max.ms", "60000")]).await;
    let ahead = now_ms() + 3_600_000;
    let p = produce(&t, "ts", &[Some("a"), None], ahead, 12).await;
    assert_eq!(p.error_code, INVALID_TIMESTAMP);
    assert_eq!(indexes(&p), vec![0, 1], "{p:?}");
    assert_eq!(
        p.error_message.as_deref(),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    let first = p.record_errors[0]
        .batch_index_error_message
        .as_deref()
        .unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "Timestamp {ahead} of message with offset 0 is out of range. The timestamp should be within ["
        )),
        "{first}"
    );
    let p = produce(&t, "ts", &[Some("a")], now_ms(), 12).await;
    assert_eq!((p.error_code, p.base_offset), (0, 0));
}
