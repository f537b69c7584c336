//! Helpers shared by the integration tests: building record batches with kafka-protocol.

#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_storage::{LogConfig, TopicPartition};

/// What to put in a test batch.
#[derive(Clone, Debug)]
pub struct Spec {
    pub records: usize,
    pub timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
    pub compression: Compression,
    pub value_size: usize,
    /// Offsets in the batch (the leader overwrites them; followers keep them).
    pub base_offset: i64,
    pub leader_epoch: i32,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            records: 1,
            timestamp: 1_000,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            transactional: false,
            compression: Compression::None,
            value_size: 10,
            base_offset: 0,
            leader_epoch: -1,
        }
    }
}

/// Encodes one batch. Record `i` has timestamp `timestamp + i` and a value that names it.
pub fn build(spec: &Spec) -> BytesMut {
    let records: Vec<Record> = (0..spec.records)
        .map(|i| {
            let mut value = format!("record-{i}-").into_bytes();
            value.resize(spec.value_size.max(value.len()), b'x');
            Record {
                transactional: spec.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: spec.leader_epoch,
                producer_id: spec.producer_id,
                producer_epoch: spec.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: spec.base_offset + i as i64,
                // kafka-protocol keeps records in one batch while offset - sequence is constant.
                sequence: spec.base_sequence.wrapping_add(i as i32),
                timestamp: spec.timestamp + i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: spec.compression,
        },
    )
    .expect("encode batch");
    buf
}

/// A plain batch of `records` records.
pub fn batch(records: usize, timestamp: i64) -> BytesMut {
    build(&Spec {
        records,
        timestamp,
        ..Spec::default()
    })
}

/// A batch of an idempotent producer.
pub fn idempotent(pid: i64, epoch: i16, seq: i32, records: usize) -> BytesMut {
    build(&Spec {
        records,
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        ..Spec::default()
    })
}

pub fn tp() -> TopicPartition {
    TopicPartition::new("test-topic", 0)
}

pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        index_interval_bytes: 100,
        retention_ms: -1,
        file_delete_delay_ms: 0,
        message_timestamp_after_max_ms: i64::MAX,
        ..LogConfig::default()
    }
}

/// Decodes every record of a buffer of batches as (offset, timestamp, value).
pub fn decode(bytes: &[u8]) -> Vec<(i64, i64, Vec<u8>)> {
    let mut b = Bytes::copy_from_slice(bytes);
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut b)
        .expect("decode")
        .into_iter()
        .flat_map(|set| set.records)
        .map(|r| {
            (
                r.offset,
                r.timestamp,
                r.value.map(|v| v.to_vec()).unwrap_or_default(),
            )
        })
        .collect()
}
