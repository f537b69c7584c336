//! Records as the client's users see them, and their conversion to and from Kafka record
//! batches (v2, "magic 2").

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
pub use kafka_protocol::records::{Compression, TimestampType};
use kafka_protocol::records::{
    Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    /// The key (`None` is a null key; keyed records are partitioned by the key's hash).
    pub key: Option<Bytes>,
    /// The value (`None` is a tombstone on compacted topics).
    pub value: Option<Bytes>,
    /// Headers in order. Note: `kafka-protocol`'s record type stores headers in a map, so
    /// of several headers with the same key only the last one's value is sent.
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Creation time in milliseconds since the epoch; `None` means "now".
    pub timestamp: Option<i64>,
}

impl ProduceRecord {
    /// A record with only a value.
    pub fn new(value: impl Into<Bytes>) -> Self {
        ProduceRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Appends a header.
    pub fn with_header(mut self, key: impl Into<String>, value: Option<Bytes>) -> Self {
        self.headers.push((key.into(), value));
        self
    }

    /// Sets the creation timestamp (milliseconds since the epoch).
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }
}

/// A record read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    /// The partition it was read from.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp in milliseconds since the epoch (the batch's append time for topics with
    /// `message.timestamp.type=LogAppendTime`).
    pub timestamp: i64,
    /// Whether `timestamp` is the producer's creation time or the broker's append time.
    pub timestamp_type: TimestampType,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value, if any.
    pub value: Option<Bytes>,
    /// Headers in order.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as one record batch (v2) with relative offsets 0..n, no producer id
/// (not idempotent), and the given compression. Records without a timestamp get `now_ms`.
pub fn encode_batch(
    records: &[ProduceRecord],
    compression: Compression,
    now_ms: i64,
) -> Result<Bytes, String> {
    if records.is_empty() {
        return Err("cannot encode an empty record batch".into());
    }
    let converted: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let offset = i as i64;
            let mut headers = kafka_protocol::indexmap::IndexMap::new();
            for (k, v) in &r.headers {
                headers.insert(StrBytes::from_string(k.clone()), v.clone());
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                timestamp_type: TimestampType::Creation,
                offset,
                // The encoder starts a new batch whenever `offset - sequence` changes, and
                // derives the batch's base sequence from the first record. `offset - 1` keeps
                // all records in one batch with base sequence -1 (NO_SEQUENCE), as a
                // non-idempotent producer sends.
                sequence: (offset as i32).wrapping_sub(1),
                timestamp: r.timestamp.unwrap_or(now_ms),
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &converted, &options).map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

/// Size of the fixed part of a v2 batch header: base offset (8), length (4), partition leader
/// epoch (4), magic (1), CRC (4), attributes (2), last offset delta (4), first and max
/// timestamps (8 + 8), producer id (8), producer epoch (2), base sequence (4), count (4).
const BATCH_HEADER_LEN: usize = 61;
/// Base offset plus length: what precedes the `length` bytes of a batch.
const LOG_OVERHEAD: usize = 12;

/// What [`decode_record_set`] found in a fetched record set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodedRecords {
    /// Data records at or above the requested offset (control records are left out).
    pub records: Vec<ConsumedRecord>,
    /// One past the last offset of the last complete batch, if there was one: where the next
    /// fetch should start, even when the last batches held only control records or records
    /// below the requested offset.
    pub next_offset: Option<i64>,
    /// Bytes at the end that did not form a complete batch (a fetch may cut the last batch).
    pub partial_tail_bytes: usize,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// Decodes every complete record batch in `data` (a fetch response's `records`), keeping the
/// records at or above `min_offset`: a fetch from the middle of a batch returns the whole batch.
///
/// Uncompressed keys and values are slices of `data` (no copy). A partial batch at the end is
/// ignored and reported in [`DecodedRecords::partial_tail_bytes`]. Legacy message sets (magic
/// 0 and 1) are refused.
pub fn decode_record_set(
    mut data: Bytes,
    partition: i32,
    min_offset: i64,
) -> Result<DecodedRecords, String> {
    let mut out = DecodedRecords::default();
    while data.len() >= LOG_OVERHEAD {
        let base_offset = be_i64(&data, 0);
        let length = be_i32(&data, 8);
        let length = usize::try_from(length)
            .map_err(|_| format!("batch at offset {base_offset} has negative length {length}"))?;
        let total = LOG_OVERHEAD + length;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        if total < BATCH_HEADER_LEN {
            // Magic 0/1 message sets can be this short; check the magic byte if it is there.
            if total > 16 && batch[16] < 2 {
                return Err(format!(
                    "legacy message format (magic {}) at offset {base_offset} is not supported",
                    batch[16]
                ));
            }
            return Err(format!(
                "batch at offset {base_offset} is {total} bytes, shorter than a batch header"
            ));
        }
        let magic = batch[16];
        if magic != 2 {
            return Err(format!(
                "record batch at offset {base_offset} has magic {magic}; only v2 is supported"
            ));
        }
        let attributes = be_i16(&batch, 21);
        let last_offset_delta = be_i32(&batch, 23);
        let max_timestamp = be_i64(&batch, 35);
        let last_offset = base_offset.saturating_add(i64::from(last_offset_delta));
        out.next_offset = Some(last_offset.saturating_add(1));
        if last_offset < min_offset {
            continue;
        }
        let is_control = attributes & (1 << 5) != 0;
        if is_control {
            continue;
        }
        let log_append_time = attributes & (1 << 3) != 0;
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| format!("batch at offset {base_offset}: {e}"))?;
        for r in set.records {
            if r.control || r.offset < min_offset {
                continue;
            }
            out.records.push(ConsumedRecord {
                partition,
                offset: r.offset,
                // With LogAppendTime the broker sets only the batch's max timestamp; that is
                // every record's timestamp (KIP-32).
                timestamp: if log_append_time {
                    max_timestamp
                } else {
                    r.timestamp
                },
                timestamp_type: if log_append_time {
                    TimestampType::LogAppend
                } else {
                    TimestampType::Creation
                },
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    out.partial_tail_bytes = data.len();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<ProduceRecord> {
        (0..n)
            .map(|i| {
                let mut r = ProduceRecord::new(format!("value-{i}"))
                    .with_timestamp(1_700_000_000_000 + i as i64);
                if i % 2 == 0 {
                    r = r.with_key(format!("key-{i}"));
                }
                if i % 3 == 0 {
                    r = r
                        .with_header("h1", Some(Bytes::from_static(b"v1")))
                        .with_header("h2", None);
                }
                r
            })
            .collect()
    }

    /// Patches the base offset of an encoded batch, as a broker does on append.
    fn with_base_offset(batch: &Bytes, base: i64) -> Bytes {
        let mut b = BytesMut::from(&batch[..]);
        b[..8].copy_from_slice(&base.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn round_trip_every_compression() {
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = sample(10);
            let batch = encode_batch(&records, compression, 0).expect("encodes");
            // One batch, not one per record.
            assert_eq!(be_i32(&batch, 8) as usize + LOG_OVERHEAD, batch.len());
            assert_eq!(be_i32(&batch, 57), 10, "record count");
            assert_eq!(be_i32(&batch, 53), -1, "base sequence is NO_SEQUENCE");
            assert_eq!(be_i64(&batch, 43), -1, "no producer id");
            assert_eq!(be_i16(&batch, 21) & 7, compression as i16);

            let stored = with_base_offset(&batch, 100);
            let decoded = decode_record_set(stored, 3, 0).expect("decodes");
            assert_eq!(decoded.next_offset, Some(110));
            assert_eq!(decoded.partial_tail_bytes, 0);
            assert_eq!(decoded.records.len(), 10);
            for (i, (got, want)) in decoded.records.iter().zip(&records).enumerate() {
                assert_eq!(got.partition, 3);
                assert_eq!(got.offset, 100 + i as i64);
                assert_eq!(got.timestamp, want.timestamp.expect("set"));
                assert_eq!(got.timestamp_type, TimestampType::Creation);
                assert_eq!(got.key, want.key);
                assert_eq!(got.value, want.value);
                assert_eq!(got.headers, want.headers);
            }
        }
    }

    #[test]
    fn missing_timestamps_use_now() {
        let batch = encode_batch(&[ProduceRecord::new("x")], Compression::None, 1234).expect("ok");
        let decoded = decode_record_set(batch, 0, 0).expect("decodes");
        assert_eq!(decoded.records[0].timestamp, 1234);
    }

    #[test]
    fn skips_records_below_the_fetch_offset_and_partial_tails() {
        let a = with_base_offset(
            &encode_batch(&sample(5), Compression::None, 0).expect("ok"),
            0,
        );
        let b = with_base_offset(
            &encode_batch(&sample(5), Compression::Lz4, 0).expect("ok"),
            5,
        );
        let c = with_base_offset(
            &encode_batch(&sample(5), Compression::None, 0).expect("ok"),
            10,
        );
        let mut set = BytesMut::new();
        set.extend_from_slice(&a);
        set.extend_from_slice(&b);
        // A fetch response may cut the last batch short.
        set.extend_from_slice(&c[..c.len() - 7]);
        let decoded = decode_record_set(set.freeze(), 0, 7).expect("decodes");
        let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![7, 8, 9]);
        assert_eq!(decoded.next_offset, Some(10));
        assert_eq!(decoded.partial_tail_bytes, c.len() - 7);
    }

    #[test]
    fn batches_wholly_below_the_offset_still_advance() {
        let a = with_base_offset(
            &encode_batch(&sample(5), Compression::None, 0).expect("ok"),
            0,
        );
        let decoded = decode_record_set(a, 0, 5).expect("decodes");
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, Some(5));
    }

    #[test]
    fn control_batches_are_skipped_but_advance() {
        let a = encode_batch(&sample(1), Compression::None, 0).expect("ok");
        let mut b = BytesMut::from(&a[..]);
        b[..8].copy_from_slice(&42i64.to_be_bytes());
        // Set the control bit and fix the CRC (covers attributes onward).
        let attrs = be_i16(&b, 21) | (1 << 5);
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        let crc = crc32c_of(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_record_set(b.freeze(), 0, 0).expect("decodes");
        assert!(decoded.records.is_empty());
        assert_eq!(decoded.next_offset, Some(43));
    }

    #[test]
    fn log_append_time_uses_the_batch_max_timestamp() {
        let a = encode_batch(&sample(3), Compression::None, 0).expect("ok");
        let mut b = BytesMut::from(&a[..]);
        let attrs = be_i16(&b, 21) | (1 << 3);
        b[21..23].copy_from_slice(&attrs.to_be_bytes());
        b[35..43].copy_from_slice(&99i64.to_be_bytes());
        let crc = crc32c_of(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let decoded = decode_record_set(b.freeze(), 0, 0).expect("decodes");
        assert!(decoded
            .records
            .iter()
            .all(|r| r.timestamp == 99 && r.timestamp_type == TimestampType::LogAppend));
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let a = encode_batch(&sample(3), Compression::None, 0).expect("ok");
        let mut bad_crc = BytesMut::from(&a[..]);
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(decode_record_set(bad_crc.freeze(), 0, 0).is_err());

        let mut legacy = BytesMut::from(&a[..]);
        legacy[16] = 1;
        assert!(decode_record_set(legacy.freeze(), 0, 0).is_err());

        let mut negative = BytesMut::from(&a[..]);
        negative[8..12].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_record_set(negative.freeze(), 0, 0).is_err());

        let mut tiny = BytesMut::new();
        tiny.extend_from_slice(&0i64.to_be_bytes());
        tiny.extend_from_slice(&10i32.to_be_bytes());
        tiny.extend_from_slice(&[0u8; 10]);
        assert!(decode_record_set(tiny.freeze(), 0, 0).is_err());

        // Fewer than 12 bytes: just a partial tail.
        let decoded = decode_record_set(Bytes::from_static(&[0, 0, 0]), 0, 0).expect("ok");
        assert_eq!(decoded.partial_tail_bytes, 3);
        assert_eq!(decoded.next_offset, None);
    }

    fn crc32c_of(data: &[u8]) -> u32 {
        // CRC-32C (Castagnoli), bitwise; slow but fine for tests.
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (0x82F6_3B78 & mask);
            }
        }
        !crc
    }
}
