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
        Compression::Snappy => decompress!(Snappy),
        Compression::Lz4 => decompress!(Lz4),
        Compression::Zstd => decompress!(Zstd),
    };
    out.map_err(|e| format!("cannot decompress {codec:?} batch: {e}"))
}

/// Parses the records of an uncompressed records section (`count` from the batch header).
pub(crate) fn parse_records(section: &[u8], count: i32) -> Result<Vec<RawRecord<'_>>, String> {
    let mut out = Vec::with_capacity(count.clamp(0, 1 << 16) as usize);
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
        out.push(RawRecord {
            attributes,
            timestamp_delta,
            offset_delta,
            key,
            has_value: value_len >= 0,
            tail: &rec[tail_start..end],
        });
        pos = end;
    }
    Ok(out)
}

/// Kafka's `LogValidator` rule for compacted topics: every record must have a key. Returns
/// an error message naming the first violation.
pub(crate) fn check_keys(h: &RecordBatchHeader, batch: &[u8]) -> Result<(), String> {
    let section = records_section(h, batch)?;
    let records = parse_records(&section, h.records_count)?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err("Compacted topic cannot accept message without key".into());
    }
    Ok(())
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
