//! Produce through the copy-free path (`produce_frame`): a large request for several
//! partitions is split into per-partition buffers of the frame, each patched (offsets, leader
//! epoch) by the log, and reads back byte for byte.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::produce_frame;
use crate::testing::{encode_batch, plain_record, TestBroker};

const RECORDS: usize = 40;

/// A batch of `RECORDS` 1 KiB records whose values start with `tag` and their index.
fn batch(tag: u8) -> Bytes {
    let records: Vec<Record> = (0..RECORDS)
        .map(|i| {
            let mut value = vec![tag; 1024];
            value[1] = i as u8;
            plain_record(i, 1_700_000_000_000 + i as i64, Bytes::from(value))
        })
        .collect();
    encode_batch(&records).freeze()
}

fn tag(round: usize, partition: i32) -> u8 {
    (10 * round as i32 + partition + 1) as u8
}

#[tokio::test]
async fn a_large_produce_for_two_partitions_is_split_without_copying_and_reads_back() {
    let t = TestBroker::start().await;
    t.create_topic("big", 2).await;
    let before = produce_frame::frames_split_without_copy();
    for round in 0..2 {
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("big")))
                .with_partition_data(
                    (0..2)
                        .map(|p| {
                            produce_request::PartitionProduceData::default()
                                .with_index(p)
                                .with_records(Some(batch(tag(round, p))))
                        })
                        .collect(),
                )]);
        let r = t.send(&req, 9).await.expect("Produce");
        for pr in &r.responses[0].partition_responses {
            assert_eq!(pr.error_code, 0, "partition {}", pr.index);
            assert_eq!(pr.base_offset, (round * RECORDS) as i64);
        }
    }
    // Both requests (80 KiB frames) took the copy-free path (other tests may add to the
    // process-wide count, never take from it).
    assert!(
        produce_frame::frames_split_without_copy() >= before + 2,
        "the produce records were copied"
    );
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(8 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("big")))
            .with_partitions(
                (0..2)
                    .map(|p| {
                        fetch_request::FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(4 << 20)
                    })
                    .collect(),
            )]);
    let r = t.send(&fetch, 11).await.expect("Fetch");
    for part in &r.responses[0].partitions {
        assert_eq!(part.error_code, 0);
        let mut bytes = part.records.clone().unwrap_or_default();
        let sets = RecordBatchDecoder::decode_all(&mut bytes).expect("decode");
        let records: Vec<Record> = sets.into_iter().flat_map(|s| s.records).collect();
        assert_eq!(records.len(), 2 * RECORDS);
        for (i, rec) in records.iter().enumerate() {
            assert_eq!(rec.offset, i as i64);
            let value = rec.value.as_ref().expect("value");
            let expect_tag = tag(i / RECORDS, part.partition_index);
            assert_eq!(value.len(), 1024);
            assert_eq!(
                (value[0], value[1]),
                (expect_tag, (i % RECORDS) as u8),
                "partition {} offset {i}",
                part.partition_index
            );
        }
    }
}
