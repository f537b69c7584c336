//! Building record batches for the broker's own writes (metadata records, coordinator
//! records): uncompressed RecordBatch v2 with no producer id, encoded with `kafka-protocol`;
//! and transaction markers (control batches, [`build_control_batch`]).
//! Client batches are never rebuilt; they are stored as received.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// Error building a batch.
#[derive(Debug, thiserror::Error)]
#[error("cannot build record batch: {0}")]
pub struct BuildError(String);

/// One uncompressed batch of `(key, value)` records, offsets 0.. (the log assigns real
/// ones), stamped with `leader_epoch` and `timestamp_ms`.
pub fn build_batch(
    records: impl IntoIterator<Item = (Option<Bytes>, Option<Bytes>)>,
    leader_epoch: i32,
    timestamp_ms: i64,
) -> Result<BytesMut, BuildError> {
    let recs: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: leader_epoch,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch whenever `offset - sequence` changes; keeping
            // it constant makes all records one batch (atomic on disk) whose base sequence
            // is -1 (no producer). Only the base sequence is written to the batch header.
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| BuildError(e.to_string()))?;
    Ok(buf)
}

/// Attributes of a transaction marker batch: transactional (bit 4) and control (bit 5),
/// uncompressed, CreateTime.
const CONTROL_BATCH_ATTRIBUTES: i16 = 0x10 | 0x20;
/// Kafka's `ControlRecordType.ABORT`.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Kafka's `ControlRecordType.COMMIT`.
pub const CONTROL_TYPE_COMMIT: i16 = 1;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

/// A transaction marker (Kafka's `EndTransactionMarker` written by `WriteTxnMarkers`): a v2
/// control batch with attributes transactional + control, base offset 0 (the log assigns the
/// real one), base sequence -1, the producer's id and epoch, and one record whose key is the
/// `ControlRecordType` (version i16 0, type i16: 0 ABORT, 1 COMMIT) and whose value is the
/// `EndTransactionMarker` (version i16 0, coordinator epoch i32). The CRC is set, so clients
/// (librdkafka, the Java client) parse it as one of Kafka's own markers.
pub fn build_control_batch(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
    partition_leader_epoch: i32,
    timestamp_ms: i64,
) -> Result<Vec<u8>, BuildError> {
    use crate::record_batch::{update_crc, RecordBatchHeader, HEADER_SIZE, LOG_OVERHEAD};
    if producer_id < 0 || producer_epoch < 0 {
        return Err(BuildError(format!(
            "a transaction marker needs a producer id and epoch (got {producer_id}/{producer_epoch})"
        )));
    }
    let control_type = if commit {
        CONTROL_TYPE_COMMIT
    } else {
        CONTROL_TYPE_ABORT
    };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&control_type.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    // The record: attributes, timestamp delta 0, offset delta 0, key, value, no headers.
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0);
    let mut record = Vec::with_capacity(body.len() + 1);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);

    let total = HEADER_SIZE + record.len();
    let header = RecordBatchHeader {
        base_offset: 0,
        batch_length: (total - LOG_OVERHEAD) as i32,
        partition_leader_epoch,
        magic: 2,
        crc: 0,
        attributes: CONTROL_BATCH_ATTRIBUTES,
        last_offset_delta: 0,
        base_timestamp: timestamp_ms,
        max_timestamp: timestamp_ms,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        records_count: 1,
    };
    let mut out = vec![0u8; HEADER_SIZE];
    header
        .write_to(&mut out)
        .map_err(|e| BuildError(e.to_string()))?;
    out.extend_from_slice(&record);
    update_crc(&mut out).map_err(|e| BuildError(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    #[test]
    fn control_batch_is_kafkas_marker() {
        use crate::record_batch::{validate_crc, RecordBatchHeader};
        for commit in [false, true] {
            let bytes = build_control_batch(42, 7, 3, commit, 5, 1_700_000_000_000).expect("build");
            validate_crc(&bytes).expect("crc");
            let h = RecordBatchHeader::parse(&bytes).expect("header");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (42, 7));
            assert_eq!((h.base_sequence, h.records_count), (-1, 1));
            assert_eq!((h.base_offset, h.last_offset_delta), (0, 0));
            assert_eq!(h.partition_leader_epoch, 5);
            assert_eq!(h.total_size(), bytes.len());
            // An independent decoder (kafka-protocol's) agrees.
            let mut b = Bytes::from(bytes);
            let sets = RecordBatchDecoder::decode_all(&mut b).expect("decode");
            let r = &sets[0].records[0];
            assert!(r.control && r.transactional);
            assert_eq!(r.producer_id, 42);
            let ty: i16 = if commit { 1 } else { 0 };
            let mut key = 0i16.to_be_bytes().to_vec();
            key.extend_from_slice(&ty.to_be_bytes());
            assert_eq!(r.key.as_deref(), Some(&key[..]));
            let mut value = 0i16.to_be_bytes().to_vec();
            value.extend_from_slice(&3i32.to_be_bytes());
            assert_eq!(r.value.as_deref(), Some(&value[..]));
            assert_eq!(r.timestamp, 1_700_000_000_000);
        }
        assert!(build_control_batch(-1, 0, 0, true, 0, 0).is_err());
    }

    #[test]
    fn round_trip() {
        let buf = build_batch(
            vec![
                (
                    Some(Bytes::from_static(b"k")),
                    Some(Bytes::from_static(b"v")),
                ),
                (Some(Bytes::from_static(b"tomb")), None),
            ],
            3,
            1234,
        )
        .expect("build");
        let mut b = buf.freeze();
        let sets = RecordBatchDecoder::decode_all(&mut b).expect("decode");
        assert_eq!(sets.len(), 1, "one batch");
        let set = &sets[0];
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[0].sequence, -1, "no producer");
        assert_eq!(set.records[0].value.as_deref(), Some(&b"v"[..]));
        assert_eq!(set.records[1].value, None);
        assert_eq!(set.records[1].timestamp, 1234);
        assert_eq!(set.records[0].partition_leader_epoch, 3);
    }
}
