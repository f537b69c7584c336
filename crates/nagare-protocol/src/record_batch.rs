//! Zero-copy view of a RecordBatch (magic v2) header.
//!
//! Kafka stores record batches on disk exactly as producers send them; the broker only reads
//! and patches the fixed 61-byte header (base offset, partition leader epoch, max timestamp and
//! the timestamp-type attribute bit). This module parses that header into a plain copy
//! ([`RecordBatchHeader`]), splits a buffer of concatenated batches ([`batches`]), verifies the
//! CRC-32C ([`validate_crc`]) and patches batches in place ([`set_base_offset`],
//! [`set_partition_leader_epoch`], [`set_max_timestamp`]). Records themselves are never decoded.
//!
//! Layout (big-endian), from Kafka's `DefaultRecordBatch`:
//!
//! | offset | field |
//! |---|---|
//! | 0 | baseOffset i64 |
//! | 8 | batchLength i32 (bytes after this field) |
//! | 12 | partitionLeaderEpoch i32 |
//! | 16 | magic i8 (2) |
//! | 17 | crc u32 (CRC-32C of bytes 21..end) |
//! | 21 | attributes i16 |
//! | 23 | lastOffsetDelta i32 |
//! | 27 | baseTimestamp i64 |
//! | 35 | maxTimestamp i64 |
//! | 43 | producerId i64 |
//! | 51 | producerEpoch i16 |
//! | 53 | baseSequence i32 |
//! | 57 | recordsCount i32 |
//! | 61 | records |

use std::ops::Range;

/// Offset of the base offset field.
pub const BASE_OFFSET_OFFSET: usize = 0;
/// Offset of the batch length field.
pub const BATCH_LENGTH_OFFSET: usize = 8;
/// Offset of the partition leader epoch field.
pub const PARTITION_LEADER_EPOCH_OFFSET: usize = 12;
/// Offset of the magic byte.
pub const MAGIC_OFFSET: usize = 16;
/// Offset of the CRC field.
pub const CRC_OFFSET: usize = 17;
/// Offset of the attributes field; the CRC covers everything from here to the end of the batch.
pub const ATTRIBUTES_OFFSET: usize = 21;
/// Offset of the last offset delta field.
pub const LAST_OFFSET_DELTA_OFFSET: usize = 23;
/// Offset of the base timestamp field.
pub const BASE_TIMESTAMP_OFFSET: usize = 27;
/// Offset of the max timestamp field.
pub const MAX_TIMESTAMP_OFFSET: usize = 35;
/// Offset of the producer id field.
pub const PRODUCER_ID_OFFSET: usize = 43;
/// Offset of the producer epoch field.
pub const PRODUCER_EPOCH_OFFSET: usize = 51;
/// Offset of the base sequence field.
pub const BASE_SEQUENCE_OFFSET: usize = 53;
/// Offset of the records count field.
pub const RECORDS_COUNT_OFFSET: usize = 57;
/// Size of the fixed batch header; records start here.
pub const HEADER_SIZE: usize = 61;
/// Bytes before and including the batch length field (Kafka's `LOG_OVERHEAD`): the batch
/// length counts the bytes after them.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest valid batch length (a header with no records): `HEADER_SIZE - LOG_OVERHEAD`.
pub const MIN_BATCH_LENGTH: i32 = (HEADER_SIZE - LOG_OVERHEAD) as i32;
/// The only magic value (record format version) supported.
pub const MAGIC_V2: i8 = 2;
/// Producer id of batches written without an idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// Producer epoch of batches written without an idempotent producer.
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// Sequence of batches written without an idempotent producer.
pub const NO_SEQUENCE: i32 = -1;
/// Timestamp meaning "no timestamp".
pub const NO_TIMESTAMP: i64 = -1;
/// Partition leader epoch meaning "unknown".
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Errors found while reading or patching a record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The buffer ends before the batch (or its header) does.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes available in the buffer.
        available: usize,
    },
    /// The batch length field is smaller than a batch header.
    #[error("record batch length {0} is smaller than the minimum {MIN_BATCH_LENGTH}")]
    InvalidLength(i32),
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0} (only v2 is supported)")]
    InvalidMagic(i8),
    /// The stored CRC does not match the batch contents.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
    /// The compression codec id in the attributes is not one Kafka defines.
    #[error("unknown compression codec id {0}")]
    UnknownCompression(u8),
}

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Records are stored uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy (xerial framing).
    Snappy,
    /// LZ4 (frame format).
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// The codec id stored in the attributes.
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an id, if Kafka defines one.
    pub fn from_id(id: u8) -> Option<Compression> {
        Some(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }
}

/// Meaning of a batch's timestamps (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Timestamps were set by the producer.
    CreateTime,
    /// The broker stamped `maxTimestamp` with its clock when appending; every record's timestamp
    /// is then the batch's `maxTimestamp`.
    LogAppendTime,
}

/// A parsed copy of the 61-byte header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordBatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes following the batch length field.
    pub batch_length: i32,
    /// Epoch of the leader that appended the batch (stamped by the broker).
    pub partition_leader_epoch: i32,
    /// Record format version; always 2 for a header returned by [`RecordBatchHeader::parse`].
    pub magic: i8,
    /// CRC-32C of the bytes from the attributes to the end of the batch.
    pub crc: u32,
    /// Compression codec, timestamp type, transactional, control and delete-horizon flags.
    pub attributes: i16,
    /// `lastOffset - baseOffset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (CreateTime).
    pub base_timestamp: i64,
    /// Largest record timestamp, or the log append time for LogAppendTime batches.
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, or -1.
    pub producer_id: i64,
    /// Producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence number of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl RecordBatchHeader {
    /// Parses the header at the start of `buf` (which may hold more than one batch).
    ///
    /// Checks that the header is complete, that the batch length is at least
    /// [`MIN_BATCH_LENGTH`] and that the magic is 2. It does not check that the whole batch is
    /// in `buf` (use [`batches`] for that) nor the CRC (use [`validate_crc`]).
    pub fn parse(buf: &[u8]) -> Result<RecordBatchHeader, BatchError> {
        // The length and magic are checked before the rest of the header so that a short
        // buffer holding a garbage length reports the length, not a truncation.
        if buf.len() < LOG_OVERHEAD {
            return Err(BatchError::Truncated {
                needed: LOG_OVERHEAD,
                available: buf.len(),
            });
        }
        let batch_length = be_i32(buf, BATCH_LENGTH_OFFSET);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength(batch_length));
        }
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_OFFSET] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::InvalidMagic(magic));
        }
        Ok(RecordBatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, PARTITION_LEADER_EPOCH_OFFSET),
            magic,
            crc: be_u32(buf, CRC_OFFSET),
            attributes: be_i16(buf, ATTRIBUTES_OFFSET),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_OFFSET),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_OFFSET),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_OFFSET),
            producer_id: be_i64(buf, PRODUCER_ID_OFFSET),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_OFFSET),
            base_sequence: be_i32(buf, BASE_SEQUENCE_OFFSET),
            records_count: be_i32(buf, RECORDS_COUNT_OFFSET),
        })
    }

    /// Writes this header into the first [`HEADER_SIZE`] bytes of `buf` verbatim (including
    /// the stored `crc`; call [`update_crc`] once the records follow it).
    ///
    /// Returns [`BatchError::Truncated`] if `buf` is shorter than a header.
    pub fn write_to(&self, buf: &mut [u8]) -> Result<(), BatchError> {
        if buf.len() < HEADER_SIZE {
            return Err(BatchError::Truncated {
                needed: HEADER_SIZE,
                available: buf.len(),
            });
        }
        buf[0..8].copy_from_slice(&self.base_offset.to_be_bytes());
        buf[8..12].copy_from_slice(&self.batch_length.to_be_bytes());
        buf[12..16].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        buf[16] = self.magic as u8;
        buf[17..21].copy_from_slice(&self.crc.to_be_bytes());
        buf[21..23].copy_from_slice(&self.attributes.to_be_bytes());
        buf[23..27].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        buf[27..35].copy_from_slice(&self.base_timestamp.to_be_bytes());
        buf[35..43].copy_from_slice(&self.max_timestamp.to_be_bytes());
        buf[43..51].copy_from_slice(&self.producer_id.to_be_bytes());
        buf[51..53].copy_from_slice(&self.producer_epoch.to_be_bytes());
        buf[53..57].copy_from_slice(&self.base_sequence.to_be_bytes());
        buf[57..61].copy_from_slice(&self.records_count.to_be_bytes());
        Ok(())
    }

    /// Offset of the last record: `base_offset + last_offset_delta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Offset one past the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// Total size of the batch on disk and on the wire: `batch_length + 12`.
    pub fn total_size(&self) -> usize {
        // parse() guarantees batch_length >= MIN_BATCH_LENGTH > 0.
        (self.batch_length.max(0) as usize) + LOG_OVERHEAD
    }

    /// The compression codec, or an error if the attributes name an unknown one.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        let id = (self.attributes & COMPRESSION_MASK) as u8;
        Compression::from_id(id).ok_or(BatchError::UnknownCompression(id))
    }

    /// Whether the timestamps are producer (CreateTime) or broker (LogAppendTime) timestamps.
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// True for batches written inside a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for control batches (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// True when the base timestamp holds a compaction delete horizon (KIP-534).
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & DELETE_HORIZON_BIT != 0
    }

    /// True when the batch was written by an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record, wrapping past `i32::MAX` to 0 as Kafka does;
    /// -1 when the batch carries no sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: sequences wrap from `i32::MAX` to 0. With
/// Java's wrapping `int` arithmetic: a damaged header on disk can carry a negative offset
/// delta (found by the `log_recovery` fuzz target: an overflow panic in producer-state
/// recovery).
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if sequence > i32::MAX.wrapping_sub(increment) {
        increment
            .wrapping_sub(i32::MAX.wrapping_sub(sequence))
            .wrapping_sub(1)
    } else {
        sequence.wrapping_add(increment)
    }
}

/// Kafka's `DefaultRecordBatch.decrementSequence`: the inverse of [`increment_sequence`]
/// (wrapping as Java's `int` arithmetic does).
pub fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        i32::MAX
            .wrapping_sub(decrement.wrapping_sub(sequence))
            .wrapping_add(1)
    } else {
        sequence.wrapping_sub(decrement)
    }
}

/// Iterator over the batches of a buffer of concatenated batches; see [`batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for Batches<'_> {
    type Item = Result<(RecordBatchHeader, Range<usize>), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = RecordBatchHeader::parse(rest).and_then(|header| {
            let size = header.total_size();
            if size > rest.len() {
                Err(BatchError::Truncated {
                    needed: size,
                    available: rest.len(),
                })
            } else {
                Ok((header, self.pos..self.pos + size))
            }
        });
        match &result {
            Ok((_, range)) => self.pos = range.end,
            // After a bad batch the position of the next one is unknown: stop.
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

/// Splits a buffer of concatenated v2 batches into `(header, byte range)` pairs.
///
/// Each batch must be complete, have a length of at least [`MIN_BATCH_LENGTH`] and magic 2;
/// the first violation is returned as an error and ends the iteration. An empty buffer yields
/// nothing. CRCs are not checked here (see [`validate_crc`]).
pub fn batches(buf: &[u8]) -> Batches<'_> {
    Batches {
        buf,
        pos: 0,
        failed: false,
    }
}

fn check_batch_bounds(batch: &[u8]) -> Result<usize, BatchError> {
    if batch.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: batch.len(),
        });
    }
    let batch_length = be_i32(batch, BATCH_LENGTH_OFFSET);
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength(batch_length));
    }
    let size = batch_length as usize + LOG_OVERHEAD;
    if batch.len() < size {
        return Err(BatchError::Truncated {
            needed: size,
            available: batch.len(),
        });
    }
    Ok(size)
}

/// Computes the CRC-32C of the batch at the start of `batch` (from the attributes to the end of
/// the batch, as its length field says).
pub fn compute_crc(batch: &[u8]) -> Result<u32, BatchError> {
    let size = check_batch_bounds(batch)?;
    Ok(crc32c::crc32c(&batch[ATTRIBUTES_OFFSET..size]))
}

/// Checks the stored CRC of the batch at the start of `batch` against its contents.
pub fn validate_crc(batch: &[u8]) -> Result<(), BatchError> {
    let computed = compute_crc(batch)?;
    let stored = be_u32(batch, CRC_OFFSET);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    Ok(())
}

/// Recomputes and stores the CRC of the batch at the start of `batch`.
pub fn update_crc(batch: &mut [u8]) -> Result<(), BatchError> {
    let crc = compute_crc(batch)?;
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

fn check_header(batch: &[u8]) -> Result<(), BatchError> {
    check_batch_bounds(batch)?;
    let magic = batch[MAGIC_OFFSET] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::InvalidMagic(magic));
    }
    Ok(())
}

/// Sets the base offset of the batch at the start of `batch`. The base offset is outside the
/// CRC, so the CRC stays valid (this is how the leader assigns offsets without re-encoding).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) -> Result<(), BatchError> {
    check_header(batch)?;
    batch[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    Ok(())
}

/// Sets the partition leader epoch of the batch at the start of `batch`. The epoch is outside
/// the CRC, so the CRC stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) -> Result<(), BatchError> {
    check_header(batch)?;
    batch[PARTITION_LEADER_EPOCH_OFFSET..PARTITION_LEADER_EPOCH_OFFSET + 4]
        .copy_from_slice(&epoch.to_be_bytes());
    Ok(())
}

/// Sets `maxTimestamp` and the timestamp-type attribute bit of the batch at the start of
/// `batch`, then recomputes the CRC (both fields are covered by it). Other attribute bits are
/// kept. Like Kafka's `DefaultRecordBatch.setMaxTimestamp`, nothing is rewritten when both
/// already have the requested values.
pub fn set_max_timestamp(
    batch: &mut [u8],
    timestamp_type: TimestampType,
    max_timestamp: i64,
) -> Result<(), BatchError> {
    check_header(batch)?;
    let attributes = be_i16(batch, ATTRIBUTES_OFFSET);
    let new_attributes = match timestamp_type {
        TimestampType::CreateTime => attributes & !TIMESTAMP_TYPE_BIT,
        TimestampType::LogAppendTime => attributes | TIMESTAMP_TYPE_BIT,
    };
    if new_attributes == attributes && be_i64(batch, MAX_TIMESTAMP_OFFSET) == max_timestamp {
        return Ok(());
    }
    batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&new_attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8]
        .copy_from_slice(&max_timestamp.to_be_bytes());
    update_crc(batch)
}

/// Stamps the batch at the start of `batch` with the broker's append time (KIP-32
/// `LogAppendTime`): sets `maxTimestamp` to `now_ms`, sets the timestamp-type bit and
/// recomputes the CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) -> Result<(), BatchError> {
    set_max_timestamp(batch, TimestampType::LogAppendTime, now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(records_len: usize) -> RecordBatchHeader {
        RecordBatchHeader {
            base_offset: 0,
            batch_length: (HEADER_SIZE - LOG_OVERHEAD + records_len) as i32,
            partition_leader_epoch: -1,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: 2,
            base_timestamp: 1_000,
            max_timestamp: 1_005,
            producer_id: 7,
            producer_epoch: 1,
            base_sequence: 10,
            records_count: 3,
        }
    }

    /// Builds a batch with `records` as an opaque payload and a valid CRC.
    fn build(h: &RecordBatchHeader, records: &[u8]) -> Vec<u8> {
        let mut h = *h;
        h.batch_length = (HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32;
        let mut buf = vec![0u8; HEADER_SIZE + records.len()];
        h.write_to(&mut buf).expect("header fits");
        buf[HEADER_SIZE..].copy_from_slice(records);
        update_crc(&mut buf).expect("valid batch");
        buf
    }

    #[test]
    fn parse_round_trip_and_helpers() {
        let mut h = header(5);
        h.attributes = 2 | TRANSACTIONAL_BIT;
        let buf = build(&h, b"hello");
        let parsed = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(parsed.base_offset, 0);
        assert_eq!(parsed.last_offset(), 2);
        assert_eq!(parsed.next_offset(), 3);
        assert_eq!(parsed.total_size(), buf.len());
        assert_eq!(parsed.compression(), Ok(Compression::Snappy));
        assert_eq!(parsed.timestamp_type(), TimestampType::CreateTime);
        assert!(parsed.is_transactional());
        assert!(!parsed.is_control());
        assert!(!parsed.has_delete_horizon());
        assert!(parsed.has_producer_id());
        assert_eq!(parsed.last_sequence(), 12);
        validate_crc(&buf).expect("crc ok");
    }

    #[test]
    fn crc_matches_kafka_protocol_encoder() {
        use kafka_protocol::records::{
            Compression as KC, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KT,
        };
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KT::Creation,
                offset: i,
                // kafka-protocol groups records into one batch while offset - sequence is
                // constant; this keeps the batch's base sequence at -1.
                sequence: i as i32 - 1,
                timestamp: 100 + i,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: KC::None,
            },
        )
        .expect("encodes");
        validate_crc(&buf).expect("crc from encoder validates");
        let h = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 102);
        assert_eq!(h.total_size(), buf.len());
    }

    #[test]
    fn crc_mismatch_detected() {
        let mut buf = build(&header(3), b"abc");
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(
            validate_crc(&buf),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn base_offset_and_epoch_do_not_touch_crc() {
        let mut buf = build(&header(4), b"abcd");
        let crc_before = RecordBatchHeader::parse(&buf).expect("parses").crc;
        set_base_offset(&mut buf, 1234).expect("patch");
        set_partition_leader_epoch(&mut buf, 9).expect("patch");
        let h = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.last_offset(), 1236);
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.crc, crc_before);
        validate_crc(&buf).expect("still valid");
    }

    #[test]
    fn log_append_time_recomputes_crc_and_keeps_other_bits() {
        let mut h = header(2);
        h.attributes = 4 | CONTROL_BIT;
        let mut buf = build(&h, b"xy");
        set_log_append_time(&mut buf, 99_999).expect("patch");
        validate_crc(&buf).expect("crc recomputed");
        let p = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(p.max_timestamp, 99_999);
        assert_eq!(p.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(p.compression(), Ok(Compression::Zstd));
        assert!(p.is_control());
        set_max_timestamp(&mut buf, TimestampType::CreateTime, 5).expect("patch back");
        validate_crc(&buf).expect("crc recomputed");
        let p = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(p.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(p.max_timestamp, 5);
    }

    #[test]
    fn batches_splits_and_validates() {
        let a = build(&header(1), b"a");
        let mut hb = header(3);
        hb.base_offset = 3;
        let b = build(&hb, b"bbb");
        let mut all = a.clone();
        all.extend_from_slice(&b);
        let got: Vec<_> = batches(&all).collect::<Result<_, _>>().expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, 0..a.len());
        assert_eq!(got[1].1, a.len()..all.len());
        assert_eq!(got[1].0.base_offset, 3);
        assert_eq!(batches(&[]).count(), 0);

        // Truncated second batch.
        let cut = &all[..all.len() - 1];
        let res: Vec<_> = batches(cut).collect();
        assert_eq!(res.len(), 2);
        assert!(matches!(res[1], Err(BatchError::Truncated { .. })));

        // Trailing bytes shorter than a length field.
        let mut trailing = a.clone();
        trailing.extend_from_slice(&[0, 0, 0]);
        let res: Vec<_> = batches(&trailing).collect();
        assert!(matches!(res[1], Err(BatchError::Truncated { .. })));

        // Length below the minimum.
        let mut small = a.clone();
        small[8..12].copy_from_slice(&48i32.to_be_bytes());
        assert_eq!(
            batches(&small).next(),
            Some(Err(BatchError::InvalidLength(48)))
        );
        small[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            batches(&small).next(),
            Some(Err(BatchError::InvalidLength(-5)))
        );

        // Wrong magic.
        let mut old = a.clone();
        old[MAGIC_OFFSET] = 1;
        assert_eq!(batches(&old).next(), Some(Err(BatchError::InvalidMagic(1))));
        assert!(set_base_offset(&mut old, 1).is_err());
    }

    #[test]
    fn unknown_compression_is_an_error() {
        let mut h = header(0);
        h.attributes = 7;
        let buf = build(&h, b"");
        let p = RecordBatchHeader::parse(&buf).expect("parses");
        assert_eq!(p.compression(), Err(BatchError::UnknownCompression(7)));
    }

    #[test]
    fn sequence_wraps_like_kafka() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        assert_eq!(decrement_sequence(1, 3), i32::MAX - 1);
        assert_eq!(decrement_sequence(8, 3), 5);
        let mut h = header(0);
        h.base_sequence = i32::MAX;
        h.last_offset_delta = 2;
        assert_eq!(h.last_sequence(), 1);
        h.base_sequence = NO_SEQUENCE;
        assert_eq!(h.last_sequence(), NO_SEQUENCE);
    }

    /// A small deterministic randomized round trip (the crate has no proptest dependency;
    /// `nagare-storage` runs proptest over this module too).
    #[test]
    fn randomized_round_trips() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..500 {
            let len = (next() % 200) as usize;
            let payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let mut h = header(len);
            h.base_offset = next() as i64;
            h.partition_leader_epoch = next() as i32;
            h.attributes = (next() % 5) as i16 | ((next() as i16) & 0x70);
            h.last_offset_delta = (next() % 1000) as i32;
            h.base_timestamp = next() as i64;
            h.max_timestamp = next() as i64;
            h.producer_id = next() as i64;
            h.producer_epoch = next() as i16;
            h.base_sequence = next() as i32;
            h.records_count = next() as i32;
            let mut buf = build(&h, &payload);
            let mut expected = RecordBatchHeader::parse(&buf).expect("parses");
            h.crc = expected.crc;
            h.batch_length = expected.batch_length;
            assert_eq!(expected, h);
            let off = next() as i64;
            let epoch = next() as i32;
            let ts = next() as i64;
            set_base_offset(&mut buf, off).expect("patch");
            set_partition_leader_epoch(&mut buf, epoch).expect("patch");
            set_log_append_time(&mut buf, ts).expect("patch");
            validate_crc(&buf).expect("valid");
            let p = RecordBatchHeader::parse(&buf).expect("parses");
            expected.base_offset = off;
            expected.partition_leader_epoch = epoch;
            expected.max_timestamp = ts;
            expected.attributes |= TIMESTAMP_TYPE_BIT;
            expected.crc = p.crc;
            assert_eq!(p, expected);
            assert_eq!(&buf[HEADER_SIZE..], &payload[..]);
        }
    }

    /// A header damaged on disk can carry any offset delta: the sequence arithmetic wraps
    /// as Java's does instead of panicking on overflow (the `log_recovery` fuzz finding).
    #[test]
    fn sequence_arithmetic_wraps_on_any_delta() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(decrement_sequence(0, 1), i32::MAX);
        for (seq, delta) in [(0, i32::MIN), (7, -1), (i32::MAX, i32::MIN), (0, i32::MAX)] {
            let _ = increment_sequence(seq, delta);
            let _ = decrement_sequence(seq, delta);
        }
        // As Java computes it: 7 > MAX - (-1) (wrapped to MIN), so the wrap branch.
        assert_eq!(increment_sequence(7, -1), -1 - (i32::MAX - 7) - 1);
    }
}
