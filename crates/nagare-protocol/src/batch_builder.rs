//! Building record batches for the broker's own writes (metadata records, coordinator
//! records): uncompressed RecordBatch v2 with no producer id, encoded with `kafka-protocol`.
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

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

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
