//! Record-level access to v2 record batches, for the log cleaner and for the key check of
//! compacted topics: decompression, a record walker that keeps every record's bytes verbatim,
//! and re-encoding of a filtered batch with its original codec.
//!
//! `kafka-protocol`'s record decoder is not used here because it collapses duplicate header
//! keys: re-encoding through it would alter records. Only the record prefix (attributes,
//! timestamp delta, offset delta, key, value length) is parsed; the rest is copied as is.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use nagare_protocol::record_batch::{
    update_crc, Compression, RecordBatchHeader, TimestampType, HEADER_SIZE, LOG_OVERHEAD,
};

/// Attributes bit of the delete horizon flag (KIP-534).
const DELETE_HORIZON_BIT: i16 = 0x40;
/// Attributes bits of the codec.
const COMPRESSION_MASK: i16 = 0x07;

/// One record of a batch, borrowing the (decompressed) records buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawRecord<'a> {
    /// The record's attributes byte (unused by Kafka, kept verbatim).
    pub(crate) attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub(crate) timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub(crate) offset_delta: i32,
    /// The key, `None` for a null key.
    pub(crate) key: Option<&'a [u8]>,
    /// False for a tombstone (null value).
    pub(crate) has_value: bool,
    /// The value when there is one and it lies within the record (`has_value` with `None`
    /// here: a value length running past the record, which only replay needs to refuse).
    pub(crate) value: Option<&'a [u8]>,
    /// Everything from the key length to the end of the record.
    pub(crate) tail: &'a [u8],
}

fn read_uvarint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..70).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn read_varlong(buf: &[u8], pos: &mut usize) -> Result<i64, String> {
    let u = read_uvarint(buf, pos)?;
    Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<i32, String> {
    let v = read_varlong(buf, pos)?;
    i32::try_from(v).map_err(|_| format!("varint {v} out of range"))
}

fn write_varlong(out: &mut Vec<u8>, v: i64) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

/// The uncompressed records section of a batch (`batch` is the whole batch).
pub(crate) fn records_section(h: &RecordBatchHeader, batch: &[u8]) -> Result<Bytes, String> {
    let codec = h.compression().map_err(|e| e.to_string())?;
    let body = batch
        .get(HEADER_SIZE..)
        .ok_or("batch shorter than its header")?;
    let mut src = Bytes::copy_from_slice(body);
    // The codecs' callbacks return `anyhow::Result`, inferred here from the trait bound.
    macro_rules! decompress {
        ($codec:ty) => {
            <$codec as Decompressor<Bytes>>::decompress(&mut src, |b| {
                Ok(b.copy_to_bytes(b.remaining()))
            })
            .map_err(|e| e.to_string())
        };
    }
    let out = match codec {
        Compression::None => Ok(src),
        Compression::Gzip => decompress!(Gzip),
        Compression::Snappy => decompress_snappy(&src),
        Compression::Lz4 => decompress!(Lz4),
        Compression::Zstd => decompress!(Zstd),
    };
    out.map_err(|e| format!("cannot decompress {codec:?} batch: {e}"))
}

/// The xerial framing header Kafka's Java clients put before snappy blocks.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
/// Magic, version and compatible-version fields.
const XERIAL_HEADER_LEN: usize = 16;

/// Snappy as Kafka writes it: xerial-framed (header, then blocks each behind a 4-byte
/// length) or raw. Each block's claimed uncompressed length is checked before its output is
/// sized: a snappy element of n bytes yields at most 64 bytes (a 3-byte copy), so a claim
/// above 22 times the block is invalid. `kafka-protocol` 0.18's decoder zero-fills the claimed
/// length first, which commits gigabytes of memory for a few bytes of input (found by the
/// `record_batch` fuzz target), so Nagare decodes snappy itself.
fn decompress_snappy(src: &[u8]) -> Result<Bytes, String> {
    fn block(b: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let claimed = snap::raw::decompress_len(b).map_err(|e| e.to_string())?;
        if claimed > b.len().saturating_mul(22) {
            return Err(format!(
                "snappy block claims {claimed} bytes from {} bytes",
                b.len()
            ));
        }
        let start = out.len();
        out.resize(start + claimed, 0);
        let n = snap::raw::Decoder::new()
            .decompress(b, &mut out[start..])
            .map_err(|e| e.to_string())?;
        out.truncate(start + n);
        Ok(())
    }
    let mut out = Vec::new();
    if src.len() >= XERIAL_HEADER_LEN && src.starts_with(XERIAL_MAGIC) {
        let mut rest = &src[XERIAL_HEADER_LEN..];
        while !rest.is_empty() {
            let len = rest
                .get(..4)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .ok_or("truncated snappy block length")?;
            let b = rest
                .get(4..4 + len)
                .ok_or("snappy block runs past the batch")?;
            block(b, &mut out)?;
            rest = &rest[4 + len..];
        }
    } else {
        block(src, &mut out)?;
    }
    Ok(Bytes::from(out))
}

/// Parses the records of an uncompressed records section (`count` from the batch header).
pub(crate) fn parse_records(section: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, String> {
    // Capacity from the bytes present, not the claimed count: a record takes at least 7
    // bytes (length, attributes, two deltas, key and value lengths, header count).
    let claimed = usize::try_from(count).unwrap_or(0);
    let mut out = Vec::with_capacity(claimed.min(section.len() / 7));
    let mut pos = 0usize;
    for _ in 0..count.max(0) {
        let len = read_varint(section, &mut pos)?;
        let len = usize::try_from(len).map_err(|_| format!("negative record length {len}"))?;
        let end = pos.checked_add(len).filter(|&e| e <= section.len());
        let end = end.ok_or("record runs past the batch")?;
        let rec = &section[..end];
        let attributes = *rec.get(pos).ok_or("truncated record")? as i8;
        pos += 1;
        let timestamp_delta = read_varlong(rec, &mut pos)?;
        let offset_delta = read_varint(rec, &mut pos)?;
        let tail_start = pos;
        let key_len = read_varint(rec, &mut pos)?;
        let key = if key_len < 0 {
            None
        } else {
            let k = rec
                .get(pos..pos + key_len as usize)
                .ok_or("key runs past the record")?;
            pos += key_len as usize;
            Some(k)
        };
        let value_len = read_varint(rec, &mut pos)?;
        let value = usize::try_from(value_len)
            .ok()
            .and_then(|n| rec.get(pos..pos.checked_add(n)?));
        out.push(RawRecord {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value_len >= 0,
            value,
            tail: &rec[tail_start..end],
        });
        pos = end;
    }
    Ok(out)
}

/// The per-record rules of Kafka's `LogValidator.validateRecord` that apply to a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordRules {
    /// A compacted topic: every record needs a key.
    pub(crate) require_key: bool,
    /// CreateTime timestamps must lie within `[lower, upper]` (from
    /// `message.timestamp.{before,after}.max.ms` around the broker's clock), if checked.
    pub(crate) timestamp_range: Option<(i64, i64)>,
}

/// Kafka's `LogValidator.validateRecord` over every record of a batch (KIP-467): the index
/// and reason of each refused record, at most one reason per record (the key first, then the
/// timestamp, as Kafka). The error is a record that does not parse. `tp` names the partition
/// in the messages, as Kafka's do.
pub(crate) fn record_errors(
    h: &RecordBatchHeader,
    batch: &[u8],
    rules: RecordRules,
    tp: &dyn std::fmt::Display,
) -> Result<Vec<RecordErrorFound>, String> {
    let section = records_section(h, batch)?;
    let records = parse_records(&section, h.records_count)?;
    let mut out = Vec::new();
    for (index, r) in records.iter().enumerate() {
        let batch_index = i32::try_from(index).unwrap_or(i32::MAX);
        if rules.require_key && r.key.is_none() {
            out.push(RecordErrorFound {
                batch_index,
                timestamp: false,
                message: format!(
                    "Compacted topic cannot accept message without key in topic partition {tp}."
                ),
            });
            continue;
        }
        let Some((lower, upper)) = rules.timestamp_range else {
            continue;
        };
        let ts = h.base_timestamp.saturating_add(r.timestamp_delta);
        if h.base_timestamp != nagare_protocol::record_batch::NO_TIMESTAMP
            && (ts < lower || ts > upper)
        {
            // Kafka names the offset the producer gave the record (its base offset is 0).
            let offset = h.base_offset.saturating_add(i64::from(r.offset_delta));
            out.push(RecordErrorFound {
                batch_index,
                timestamp: true,
                message: format!(
                    "Timestamp {ts} of message with offset {offset} is out of range. The \
                     timestamp should be within [{lower}, {upper}]"
                ),
            });
        }
    }
    Ok(out)
}

/// A record refused by [`record_errors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordErrorFound {
    /// Its index in the batch.
    pub(crate) batch_index: i32,
    /// Refused for its timestamp (INVALID_TIMESTAMP) rather than as INVALID_RECORD.
    pub(crate) timestamp: bool,
    /// Kafka's wording of the reason.
    pub(crate) message: String,
}

/// The content of a transaction marker (Kafka's `EndTransactionMarker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndTxnMarker {
    /// COMMIT (control type 1) rather than ABORT (0).
    pub(crate) commit: bool,
    /// The epoch of the transaction coordinator that wrote it.
    pub(crate) coordinator_epoch: i32,
}

/// Parses the marker of a control batch (`batch` is the whole batch): `None` for a control
/// batch without records (the cleaner leaves those behind, Kafka's `ProducerAppendInfo`
/// ignores them). A control record that is not a COMMIT or ABORT is an error.
pub(crate) fn parse_end_txn_marker(
    h: &RecordBatchHeader,
    batch: &[u8],
) -> Result<Option<EndTxnMarker>, String> {
    if h.records_count == 0 {
        return Ok(None);
    }
    let section = records_section(h, batch)?;
    let records = parse_records(&section, 1)?;
    let rec = records.first().ok_or("control batch without a record")?;
    // Key: ControlRecordType (version i16, type i16). Kafka reads the type whatever the
    // version (a newer version only appends fields).
    let key = rec.key.ok_or("control record without a key")?;
    let ty = key
        .get(2..4)
        .map(|b| i16::from_be_bytes([b[0], b[1]]))
        .ok_or("control record key shorter than 4 bytes")?;
    let commit = match ty {
        0 => false,
        1 => true,
        other => {
            return Err(format!(
                "control record type {other} is not a transaction marker"
            ))
        }
    };
    // Value: EndTransactionMarker (version i16, coordinator epoch i32).
    let mut pos = 0usize;
    let key_len = read_varint(rec.tail, &mut pos)?;
    pos += usize::try_from(key_len).map_err(|_| "negative key length")?;
    let value_len = read_varint(rec.tail, &mut pos)?;
    let value_len = usize::try_from(value_len).map_err(|_| "marker without a value")?;
    let value = rec
        .tail
        .get(pos..pos + value_len)
        .ok_or("marker value runs past the record")?;
    let epoch = value
        .get(2..6)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("marker value shorter than 6 bytes")?;
    Ok(Some(EndTxnMarker {
        commit,
        coordinator_epoch: epoch,
    }))
}

/// The empty batch Kafka keeps for a producer's last batch when all its records were
/// cleaned (`DefaultRecordBatch.writeEmptyHeader`): same offsets and producer fields, no
/// records, uncompressed, base and max timestamp the original max.
pub(crate) fn empty_batch(h: &RecordBatchHeader) -> Result<(RecordBatchHeader, Vec<u8>), String> {
    let mut nh = *h;
    nh.attributes = h.attributes & !(COMPRESSION_MASK | DELETE_HORIZON_BIT);
    nh.base_timestamp = h.max_timestamp;
    nh.records_count = 0;
    nh.batch_length = (HEADER_SIZE - LOG_OVERHEAD) as i32;
    let mut out = vec![0u8; HEADER_SIZE];
    nh.write_to(&mut out).map_err(|e| e.to_string())?;
    update_crc(&mut out).map_err(|e| e.to_string())?;
    let nh = RecordBatchHeader::parse(&out).map_err(|e| e.to_string())?;
    Ok((nh, out))
}

/// Builds a batch holding `kept` (records of the batch `h`, in order) with the original
/// offsets (base offset and last offset delta are kept, as Kafka's cleaner does so that the
/// producer's last sequence survives), producer fields and codec. `delete_horizon` sets
/// KIP-534's delete horizon in the base timestamp.
pub(crate) fn rebuild_batch(
    h: &RecordBatchHeader,
    kept: &[RawRecord<'_>],
    delete_horizon: Option<i64>,
) -> Result<(RecordBatchHeader, Vec<u8>), String> {
    let log_append = h.timestamp_type() == TimestampType::LogAppendTime;
    let timestamps: Vec<i64> = kept
        .iter()
        .map(|r| h.base_timestamp.wrapping_add(r.timestamp_delta))
        .collect();
    let base_timestamp = match delete_horizon {
        Some(t) => t,
        None => timestamps.first().copied().unwrap_or(h.max_timestamp),
    };
    let max_timestamp = if log_append {
        h.max_timestamp
    } else {
        timestamps.iter().copied().max().unwrap_or(h.max_timestamp)
    };
    let mut plain = Vec::new();
    let mut rec = Vec::new();
    for (r, ts) in kept.iter().zip(&timestamps) {
        rec.clear();
        rec.push(r.attributes as u8);
        write_varlong(&mut rec, ts.wrapping_sub(base_timestamp));
        write_varlong(&mut rec, i64::from(r.offset_delta));
        rec.extend_from_slice(r.tail);
        write_varlong(&mut plain, rec.len() as i64);
        plain.extend_from_slice(&rec);
    }
    let codec = h.compression().map_err(|e| e.to_string())?;
    let mut body = BytesMut::new();
    macro_rules! compress {
        ($codec:ty) => {
            <$codec as Compressor<BytesMut>>::compress(&mut body, |b| {
                b.extend_from_slice(&plain);
                Ok(())
            })
            .map_err(|e| e.to_string())
        };
    }
    let compressed: Result<(), String> = match codec {
        Compression::None => {
            body.extend_from_slice(&plain);
            Ok(())
        }
        Compression::Gzip => compress!(Gzip),
        Compression::Snappy => compress!(Snappy),
        Compression::Lz4 => compress!(Lz4),
        Compression::Zstd => compress!(Zstd),
    };
    compressed.map_err(|e| format!("cannot compress {codec:?} batch: {e}"))?;
    let mut nh = *h;
    nh.attributes = match delete_horizon {
        Some(_) => h.attributes | DELETE_HORIZON_BIT,
        None => h.attributes & !DELETE_HORIZON_BIT,
    };
    nh.base_timestamp = base_timestamp;
    nh.max_timestamp = max_timestamp;
    nh.records_count = i32::try_from(kept.len()).map_err(|_| "too many records")?;
    let total = HEADER_SIZE + body.len();
    nh.batch_length = i32::try_from(total - LOG_OVERHEAD).map_err(|_| "batch too large")?;
    let mut out = vec![0u8; HEADER_SIZE];
    out.extend_from_slice(&body);
    nh.write_to(&mut out).map_err(|e| e.to_string())?;
    update_crc(&mut out).map_err(|e| e.to_string())?;
    let nh = RecordBatchHeader::parse(&out).map_err(|e| e.to_string())?;
    Ok((nh, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_protocol::record_batch::{validate_crc, NO_SEQUENCE};

    fn varint(out: &mut Vec<u8>, v: i64) {
        write_varlong(out, v);
    }

    /// A record with two headers under the same key (which kafka-protocol's decoder would
    /// collapse): the cleaner must copy it verbatim.
    fn record(offset_delta: i64, ts_delta: i64, key: &[u8], value: Option<&[u8]>) -> Vec<u8> {
        let mut body = vec![0u8];
        varint(&mut body, ts_delta);
        varint(&mut body, offset_delta);
        varint(&mut body, key.len() as i64);
        body.extend_from_slice(key);
        match value {
            Some(v) => {
                varint(&mut body, v.len() as i64);
                body.extend_from_slice(v);
            }
            None => varint(&mut body, -1),
        }
        varint(&mut body, 2);
        for hv in [&b"one"[..], b"two"] {
            varint(&mut body, 1);
            body.push(b'h');
            varint(&mut body, hv.len() as i64);
            body.extend_from_slice(hv);
        }
        let mut out = Vec::new();
        varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
        out
    }

    fn batch(records: &[Vec<u8>]) -> (RecordBatchHeader, Vec<u8>) {
        let h = RecordBatchHeader {
            base_offset: 100,
            batch_length: 0,
            partition_leader_epoch: 3,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records.len() as i32 - 1,
            base_timestamp: 5_000,
            max_timestamp: 5_000 + records.len() as i64 - 1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            records_count: records.len() as i32,
        };
        rebuild_batch(
            &h,
            &records
                .iter()
                .map(|r| parse_records(r, 1).expect("parse")[0])
                .collect::<Vec<_>>(),
            None,
        )
        .expect("build")
    }

    #[test]
    fn filtering_keeps_records_verbatim_and_offsets() {
        let recs = vec![
            record(0, 0, b"a", Some(b"1")),
            record(1, 1, b"b", None),
            record(2, 2, b"a", Some(b"2")),
        ];
        let (h, bytes) = batch(&recs);
        validate_crc(&bytes).expect("crc");
        let section = records_section(&h, &bytes).expect("section");
        let parsed = parse_records(&section, h.records_count).expect("parse");
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[1].key, Some(&b"b"[..]));
        assert!(!parsed[1].has_value);
        // Keep the last two; give the batch a delete horizon (it holds a tombstone).
        let (nh, out) = rebuild_batch(&h, &parsed[1..], Some(90_000)).expect("rebuild");
        validate_crc(&out).expect("crc");
        assert_eq!((nh.base_offset, nh.last_offset()), (100, 102));
        assert_eq!(nh.records_count, 2);
        assert!(nh.has_delete_horizon());
        assert_eq!(nh.base_timestamp, 90_000);
        assert_eq!(nh.max_timestamp, 5_002);
        assert_eq!(nh.partition_leader_epoch, 3);
        let section = records_section(&nh, &out).expect("section");
        let kept = parse_records(&section, nh.records_count).expect("parse");
        // Offsets, timestamps (relative to the horizon now) and everything after the offset
        // delta, duplicate header keys included, are unchanged.
        for (k, o) in kept.iter().zip(&parsed[1..]) {
            assert_eq!(k.offset_delta, o.offset_delta);
            assert_eq!(90_000 + k.timestamp_delta, 5_000 + o.timestamp_delta);
            assert_eq!(k.tail, o.tail);
        }
        // Codecs round-trip.
        for codec in [1i16, 2, 3, 4] {
            let mut ch = h;
            ch.attributes = codec;
            let (ch2, out) = rebuild_batch(&ch, &parsed, None).expect("compress");
            assert_eq!(ch2.attributes & COMPRESSION_MASK, codec);
            let section = records_section(&ch2, &out).expect("decompress");
            let again = parse_records(&section, 3).expect("parse");
            assert_eq!(
                again.iter().map(|r| r.tail).collect::<Vec<_>>(),
                parsed.iter().map(|r| r.tail).collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn empty_batch_keeps_the_producer_fields() {
        let recs = vec![
            record(0, 0, b"a", Some(b"1")),
            record(1, 1, b"a", Some(b"2")),
        ];
        let (mut h, _) = batch(&recs);
        h.producer_id = 42;
        h.producer_epoch = 1;
        h.base_sequence = 7;
        let (e, bytes) = empty_batch(&h).expect("empty");
        validate_crc(&bytes).expect("crc");
        assert_eq!(bytes.len(), HEADER_SIZE);
        assert_eq!(
            (e.records_count, e.base_offset, e.last_offset()),
            (0, 100, 101)
        );
        assert_eq!(
            (e.producer_id, e.producer_epoch, e.base_sequence),
            (42, 1, 7)
        );
        assert_eq!(e.last_sequence(), 8);
    }

    #[test]
    fn markers_parse() {
        for commit in [false, true] {
            let bytes = nagare_protocol::batch_builder::build_control_batch(9, 2, 17, commit, 0, 5)
                .expect("build");
            let h = RecordBatchHeader::parse(&bytes).expect("header");
            let m = parse_end_txn_marker(&h, &bytes).expect("parse");
            assert_eq!(
                m,
                Some(EndTxnMarker {
                    commit,
                    coordinator_epoch: 17
                })
            );
            let (eh, empty) = empty_batch(&h).expect("empty");
            assert_eq!(parse_end_txn_marker(&eh, &empty).expect("parse"), None);
        }
        // A data record is not a marker.
        let (h, bytes) = batch(&[record(0, 0, b"k", Some(b"v"))]);
        assert!(parse_end_txn_marker(&h, &bytes).is_err());
    }

    #[test]
    fn keyless_records_are_found_and_garbage_is_an_error() {
        let mut keyless = vec![0u8];
        varint(&mut keyless, 0);
        varint(&mut keyless, 0);
        varint(&mut keyless, -1);
        varint(&mut keyless, 1);
        keyless.push(b'x');
        varint(&mut keyless, 0);
        let mut rec = Vec::new();
        varint(&mut rec, keyless.len() as i64);
        rec.extend_from_slice(&keyless);
        let keys = RecordRules {
            require_key: true,
            timestamp_range: None,
        };
        let (h, bytes) = batch(&[record(0, 0, b"k", Some(b"v")), rec.clone(), rec]);
        let found = record_errors(&h, &bytes, keys, &"t-0").expect("parse");
        assert_eq!(
            found.iter().map(|e| e.batch_index).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            found[0].message,
            "Compacted topic cannot accept message without key in topic partition t-0."
        );
        let (h, bytes) = batch(&[record(0, 0, b"k", Some(b"v"))]);
        assert!(record_errors(&h, &bytes, keys, &"t-0")
            .expect("parse")
            .is_empty());
        assert!(parse_records(&[0x80, 0x80], 1).is_err());
        assert!(parse_records(&[0x10, 0, 0], 1).is_err());
    }

    /// Timestamps are checked per record (a record earlier than the batch's base timestamp
    /// included), each refused record named with the offset its producer gave it.
    #[test]
    fn out_of_range_timestamps_are_found_per_record() {
        let (h, bytes) = batch(&[
            record(0, 0, b"a", Some(b"1")),
            record(1, -3_000, b"b", Some(b"2")),
            record(2, 10, b"c", Some(b"3")),
            record(3, 5, b"d", Some(b"4")),
        ]);
        let rules = RecordRules {
            require_key: true,
            timestamp_range: Some((4_000, 5_005)),
        };
        let found = record_errors(&h, &bytes, rules, &"t-0").expect("parse");
        assert_eq!(
            found
                .iter()
                .map(|e| (e.batch_index, e.timestamp))
                .collect::<Vec<_>>(),
            vec![(1, true), (2, true)]
        );
        assert_eq!(
            found[0].message,
            "Timestamp 2000 of message with offset 101 is out of range. The timestamp should be \
             within [4000, 5005]"
        );
    }

    /// A snappy batch whose blocks claim ~4 GiB each is refused before the output buffer is
    /// sized (kafka-protocol's decoder zero-fills the claimed length, committing gigabytes
    /// for a few bytes of input); real snappy batches still decode.
    #[test]
    fn snappy_blocks_claiming_more_than_they_can_hold_are_refused() {
        let (mut h, plain) = batch(&[record(0, 0, b"k", Some(b"v"))]);
        h.attributes = Compression::Snappy.id() as i16;
        let mut body = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
        for _ in 0..4 {
            // A 6-byte block: a varint length of 0xffff_fff0, then one literal tag.
            body.extend_from_slice(&6u32.to_be_bytes());
            body.extend_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        }
        let mut bytes = plain[..HEADER_SIZE].to_vec();
        bytes.extend_from_slice(&body);
        let err = records_section(&h, &bytes).expect_err("refused");
        assert!(err.contains("snappy"), "{err}");
        // Raw (unframed) snappy claiming the same.
        let mut raw = plain[..HEADER_SIZE].to_vec();
        raw.extend_from_slice(&[0xf0, 0xff, 0xff, 0xff, 0x0f, 0x00]);
        assert!(records_section(&h, &raw).is_err());
    }
}
