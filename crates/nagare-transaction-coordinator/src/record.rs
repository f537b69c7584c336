//! Records of the `__transaction_state` topic, in Kafka's own schema (`TransactionLogKey` and
//! `TransactionLogValue`), so that a log written by Nagare reads with Kafka's tooling
//! (`kafka-dump-log --transaction-log-decoder`) and the other way round.
//!
//! | part | layout |
//! |---|---|
//! | key | `int16` version 0 (Kafka's `CoordinatorRecordType.TRANSACTION_LOG`), `TransactionalId` string |
//! | value v0 | `int16` 0, ProducerId i64, ProducerEpoch i16, TransactionTimeoutMs i32, TransactionStatus i8, TransactionPartitions nullable `[{Topic string, PartitionIds [i32]}]`, TransactionLastUpdateTimestampMs i64, TransactionStartTimestampMs i64 |
//! | value v1 | the same fields, flexible (compact strings and arrays, tagged fields), plus tagged PreviousProducerId (0), NextProducerId (1), ClientTransactionVersion (2) |
//!
//! A `None` value is a tombstone: the transactional id expired. We write value v1, as Kafka 4.x
//! does once the `transaction.version` feature is 1 or more (its default for new clusters is
//! 2); both versions are read, and unknown tagged fields (Kafka 4.2's NextProducerEpoch, tag 3)
//! are skipped. Decoding never panics and never allocates by a claimed length beyond the
//! bytes present.

use std::collections::BTreeSet;

use bytes::{BufMut, Bytes, BytesMut};

use crate::api::{TopicPartition, TransactionState};

/// The only key version of `__transaction_state` (Kafka's `TransactionLogKey` v0).
pub const KEY_VERSION: i16 = 0;
/// The value version Nagare writes (flexible `TransactionLogValue` v1).
pub const VALUE_VERSION: i16 = 1;

/// `RecordBatch.NO_PRODUCER_ID`.
pub const NO_PRODUCER_ID: i64 = -1;
/// `RecordBatch.NO_PRODUCER_EPOCH`.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Errors from decoding a `__transaction_state` record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnRecordError {
    /// The buffer ended before the field being read.
    #[error("record truncated while reading {0}")]
    Truncated(&'static str),
    /// A string field was not valid UTF-8.
    #[error("invalid UTF-8 in {0}")]
    InvalidUtf8(&'static str),
    /// A length prefix was impossible (negative where null is not allowed).
    #[error("invalid length {len} for {field}")]
    InvalidLength {
        /// The field being read.
        field: &'static str,
        /// The length read.
        len: i64,
    },
    /// The key version is not `TransactionLogKey`'s (Kafka skips such records when loading).
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    /// The value version is neither 0 nor 1.
    #[error("unknown value version {0}")]
    UnknownValueVersion(i16),
    /// The `TransactionStatus` is not a known state id.
    #[error("unknown transaction status {0}")]
    UnknownStatus(i8),
}

/// The value of a `__transaction_state` record (Kafka's `TransactionLogValue`): a
/// transactional id's metadata after a state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionLogValue {
    /// `ProducerId`: the producer id in use.
    pub producer_id: i64,
    /// `PreviousProducerId` (tagged, v1+): the producer id before the last transition (-1).
    pub previous_producer_id: i64,
    /// `NextProducerId` (tagged, v1+): with transaction version 2, the producer id that
    /// replaces an exhausted one when the transaction completes (-1).
    pub next_producer_id: i64,
    /// `ProducerEpoch`.
    pub producer_epoch: i16,
    /// `TransactionTimeoutMs`.
    pub transaction_timeout_ms: i32,
    /// `TransactionStatus`.
    pub state: TransactionState,
    /// `TransactionPartitions` (null when Empty, as Kafka writes it).
    pub partitions: BTreeSet<TopicPartition>,
    /// `TransactionLastUpdateTimestampMs`.
    pub last_update_timestamp_ms: i64,
    /// `TransactionStartTimestampMs` (-1 when no transaction has started).
    pub start_timestamp_ms: i64,
    /// `ClientTransactionVersion` (tagged, v1+): the transaction version the client used.
    pub client_transaction_version: i16,
}

/// A record of a `__transaction_state` partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnRecord {
    /// The metadata of a transactional id.
    Metadata {
        /// The transactional id (the record key).
        transactional_id: String,
        /// The value.
        value: TransactionLogValue,
    },
    /// A tombstone: the transactional id expired and is removed.
    Tombstone {
        /// The transactional id (the record key).
        transactional_id: String,
    },
}

impl TxnRecord {
    /// The transactional id the record is about.
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnRecord::Metadata {
                transactional_id, ..
            }
            | TxnRecord::Tombstone { transactional_id } => transactional_id,
        }
    }

    /// The key bytes: version 0 and the transactional id (a non-flexible string).
    pub fn encode_key(&self) -> Bytes {
        let id = self.transactional_id();
        let mut buf = BytesMut::with_capacity(4 + id.len());
        buf.put_i16(KEY_VERSION);
        put_string(&mut buf, id);
        buf.freeze()
    }

    /// The value bytes (`None` for a tombstone), in [`VALUE_VERSION`].
    pub fn encode_value(&self) -> Option<Bytes> {
        match self {
            TxnRecord::Metadata { value, .. } => Some(encode_value(value, VALUE_VERSION)),
            TxnRecord::Tombstone { .. } => None,
        }
    }

    /// Decodes a record from its key and value (`None`: a tombstone).
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<Self, TxnRecordError> {
        let mut k = key;
        let version = get_i16(&mut k, "key version")?;
        if version != KEY_VERSION {
            return Err(TxnRecordError::UnknownKeyVersion(version));
        }
        let transactional_id = get_string(&mut k, "TransactionalId")?;
        match value {
            None => Ok(TxnRecord::Tombstone { transactional_id }),
            Some(v) => Ok(TxnRecord::Metadata {
                transactional_id,
                value: decode_value(v)?,
            }),
        }
    }
}

/// Encodes `value` as `TransactionLogValue` of `version` (0 or 1; anything above 1 is written
/// as 1). Version 0 cannot carry the tagged fields and drops them, as Kafka does.
pub fn encode_value(value: &TransactionLogValue, version: i16) -> Bytes {
    let flexible = version >= 1;
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(if flexible { 1 } else { 0 });
    buf.put_i64(value.producer_id);
    buf.put_i16(value.producer_epoch);
    buf.put_i32(value.transaction_timeout_ms);
    buf.put_i8(value.state.id());
    // Why null when Empty: Kafka's `TransactionLog.valueToBytes` writes no partition list for
    // an Empty transaction (and an empty list for the Complete states).
    if value.state == TransactionState::Empty {
        if flexible {
            put_uvarint(&mut buf, 0);
        } else {
            buf.put_i32(-1);
        }
    } else {
        let groups = group_by_topic(&value.partitions);
        if flexible {
            put_uvarint(&mut buf, groups.len() as u64 + 1);
        } else {
            buf.put_i32(len_i32(groups.len()));
        }
        for (topic, ids) in groups {
            if flexible {
                put_uvarint(&mut buf, topic.len() as u64 + 1);
                buf.put_slice(topic.as_bytes());
                put_uvarint(&mut buf, ids.len() as u64 + 1);
            } else {
                put_string(&mut buf, topic);
                buf.put_i32(len_i32(ids.len()));
            }
            for id in ids {
                buf.put_i32(id);
            }
            if flexible {
                put_uvarint(&mut buf, 0); // the struct's tagged fields
            }
        }
    }
    buf.put_i64(value.last_update_timestamp_ms);
    buf.put_i64(value.start_timestamp_ms);
    if flexible {
        // Tagged fields in tag order, each only when it differs from its default (-1, -1, 0),
        // as Kafka's generated serializer does.
        let mut tags: Vec<(u64, Vec<u8>)> = Vec::new();
        if value.previous_producer_id != NO_PRODUCER_ID {
            tags.push((0, value.previous_producer_id.to_be_bytes().to_vec()));
        }
        if value.next_producer_id != NO_PRODUCER_ID {
            tags.push((1, value.next_producer_id.to_be_bytes().to_vec()));
        }
        if value.client_transaction_version != 0 {
            tags.push((2, value.client_transaction_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut buf, tags.len() as u64);
        for (tag, data) in tags {
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, data.len() as u64);
            buf.put_slice(&data);
        }
    }
    buf.freeze()
}

/// Decodes a `TransactionLogValue` of version 0 or 1.
pub fn decode_value(mut b: &[u8]) -> Result<TransactionLogValue, TxnRecordError> {
    let version = get_i16(&mut b, "value version")?;
    if !(0..=1).contains(&version) {
        return Err(TxnRecordError::UnknownValueVersion(version));
    }
    let flexible = version >= 1;
    let producer_id = get_i64(&mut b, "ProducerId")?;
    let producer_epoch = get_i16(&mut b, "ProducerEpoch")?;
    let transaction_timeout_ms = get_i32(&mut b, "TransactionTimeoutMs")?;
    let status = get_i8(&mut b, "TransactionStatus")?;
    let state = TransactionState::from_id(status).ok_or(TxnRecordError::UnknownStatus(status))?;
    let mut partitions = BTreeSet::new();
    if let Some(n) = read_array_len(&mut b, flexible, "TransactionPartitions")? {
        for _ in 0..n {
            let topic = if flexible {
                get_compact_string(&mut b, "Topic")?
            } else {
                get_string(&mut b, "Topic")?
            };
            let ids = read_array_len(&mut b, flexible, "PartitionIds")?.ok_or(
                TxnRecordError::InvalidLength {
                    field: "PartitionIds",
                    len: -1,
                },
            )?;
            for _ in 0..ids {
                let partition = get_i32(&mut b, "PartitionIds")?;
                // Why: Kafka ignores the partitions of an Empty record (`TransactionLog.read`).
                if state != TransactionState::Empty {
                    partitions.insert(TopicPartition {
                        topic: topic.clone(),
                        partition,
                    });
                }
            }
            if flexible {
                skip_tagged_fields(&mut b)?;
            }
        }
    }
    let last_update_timestamp_ms = get_i64(&mut b, "TransactionLastUpdateTimestampMs")?;
    let start_timestamp_ms = get_i64(&mut b, "TransactionStartTimestampMs")?;
    let mut value = TransactionLogValue {
        producer_id,
        previous_producer_id: NO_PRODUCER_ID,
        next_producer_id: NO_PRODUCER_ID,
        producer_epoch,
        transaction_timeout_ms,
        state,
        partitions,
        last_update_timestamp_ms,
        start_timestamp_ms,
        client_transaction_version: 0,
    };
    if flexible {
        let n = get_uvarint(&mut b, "tagged field count")?;
        for _ in 0..n {
            let tag = get_uvarint(&mut b, "tag")?;
            let size = get_uvarint(&mut b, "tag size")?;
            let size = usize::try_from(size).map_err(|_| TxnRecordError::InvalidLength {
                field: "tag size",
                len: i64::MAX,
            })?;
            let mut data = take(&mut b, size, "tagged field")?;
            match tag {
                0 => value.previous_producer_id = get_i64(&mut data, "PreviousProducerId")?,
                1 => value.next_producer_id = get_i64(&mut data, "NextProducerId")?,
                2 => {
                    value.client_transaction_version =
                        get_i16(&mut data, "ClientTransactionVersion")?
                }
                _ => {} // a newer Kafka's field (NextProducerEpoch): skipped
            }
        }
    }
    Ok(value)
}

/// The partitions grouped by topic, topics and partitions in order (Kafka groups them the
/// same way, in hash order; the order carries no meaning).
fn group_by_topic(partitions: &BTreeSet<TopicPartition>) -> Vec<(&str, Vec<i32>)> {
    let mut out: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match out.last_mut() {
            Some((t, ids)) if *t == tp.topic => ids.push(tp.partition),
            _ => out.push((&tp.topic, vec![tp.partition])),
        }
    }
    out
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn put_string(buf: &mut BytesMut, s: &str) {
    // Why the cap: a non-flexible string carries an int16 length; ids and topic names are far
    // shorter (Kafka limits topic names to 249 bytes).
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn take<'a>(b: &mut &'a [u8], len: usize, field: &'static str) -> Result<&'a [u8], TxnRecordError> {
    if b.len() < len {
        return Err(TxnRecordError::Truncated(field));
    }
    let (head, tail) = b.split_at(len);
    *b = tail;
    Ok(head)
}

fn get_i8(b: &mut &[u8], field: &'static str) -> Result<i8, TxnRecordError> {
    let s = take(b, 1, field)?;
    Ok(s[0] as i8)
}

fn get_i16(b: &mut &[u8], field: &'static str) -> Result<i16, TxnRecordError> {
    let s = take(b, 2, field)?;
    Ok(i16::from_be_bytes([s[0], s[1]]))
}

fn get_i32(b: &mut &[u8], field: &'static str) -> Result<i32, TxnRecordError> {
    let s = take(b, 4, field)?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn get_i64(b: &mut &[u8], field: &'static str) -> Result<i64, TxnRecordError> {
    let s = take(b, 8, field)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(i64::from_be_bytes(a))
}

fn get_uvarint(b: &mut &[u8], field: &'static str) -> Result<u64, TxnRecordError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = get_i8(b, field)? as u8;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(TxnRecordError::InvalidLength {
        field,
        len: i64::MAX,
    })
}

fn utf8(bytes: &[u8], field: &'static str) -> Result<String, TxnRecordError> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| TxnRecordError::InvalidUtf8(field))
}

fn get_string(b: &mut &[u8], field: &'static str) -> Result<String, TxnRecordError> {
    let len = get_i16(b, field)?;
    if len < 0 {
        return Err(TxnRecordError::InvalidLength {
            field,
            len: i64::from(len),
        });
    }
    utf8(take(b, len as usize, field)?, field)
}

fn get_compact_string(b: &mut &[u8], field: &'static str) -> Result<String, TxnRecordError> {
    let n = get_uvarint(b, field)?;
    if n == 0 {
        return Err(TxnRecordError::InvalidLength { field, len: -1 });
    }
    let len = usize::try_from(n - 1).map_err(|_| TxnRecordError::InvalidLength {
        field,
        len: i64::MAX,
    })?;
    utf8(take(b, len, field)?, field)
}

/// An array's element count (`None`: null). The count is checked against the bytes left (every
/// element takes at least one byte), so a corrupt count fails fast instead of looping.
fn read_array_len(
    b: &mut &[u8],
    flexible: bool,
    field: &'static str,
) -> Result<Option<usize>, TxnRecordError> {
    let n: i64 = if flexible {
        let n = get_uvarint(b, field)?;
        if n == 0 {
            return Ok(None);
        }
        i64::try_from(n - 1).unwrap_or(i64::MAX)
    } else {
        let n = get_i32(b, field)?;
        if n < 0 {
            return Ok(None);
        }
        i64::from(n)
    };
    if n > b.len() as i64 {
        return Err(TxnRecordError::InvalidLength { field, len: n });
    }
    Ok(Some(n as usize))
}

fn skip_tagged_fields(b: &mut &[u8]) -> Result<(), TxnRecordError> {
    let n = get_uvarint(b, "tagged field count")?;
    for _ in 0..n {
        get_uvarint(b, "tag")?;
        let size = get_uvarint(b, "tag size")?;
        let size = usize::try_from(size).map_err(|_| TxnRecordError::InvalidLength {
            field: "tag size",
            len: i64::MAX,
        })?;
        take(b, size, "tagged field")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition {
            topic: t.to_owned(),
            partition: p,
        }
    }

    fn ongoing() -> TransactionLogValue {
        TransactionLogValue {
            producer_id: 1000,
            previous_producer_id: 999,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: 3,
            transaction_timeout_ms: 60_000,
            state: TransactionState::Ongoing,
            partitions: [tp("a", 0), tp("a", 2), tp("b", 1)].into_iter().collect(),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_100,
            client_transaction_version: 2,
        }
    }

    #[test]
    fn metadata_and_tombstones_round_trip() {
        let rec = TxnRecord::Metadata {
            transactional_id: "txn-1".into(),
            value: ongoing(),
        };
        let back = TxnRecord::decode(&rec.encode_key(), rec.encode_value().as_deref());
        assert_eq!(back, Ok(rec));
        let tomb = TxnRecord::Tombstone {
            transactional_id: "txn-1".into(),
        };
        assert_eq!(tomb.encode_value(), None);
        assert_eq!(TxnRecord::decode(&tomb.encode_key(), None), Ok(tomb));
    }

    #[test]
    fn key_is_version_zero_and_a_plain_string() {
        let rec = TxnRecord::Tombstone {
            transactional_id: "ab".into(),
        };
        assert_eq!(&rec.encode_key()[..], &[0, 0, 0, 2, b'a', b'b']);
    }

    /// The exact bytes of Kafka's v1 serializer for a PrepareCommit value with one topic,
    /// PreviousProducerId set, NextProducerId at its default and ClientTransactionVersion 2.
    #[test]
    fn flexible_v1_bytes_are_kafkas() {
        let v = TransactionLogValue {
            producer_id: 7,
            previous_producer_id: 7,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: 1,
            transaction_timeout_ms: 1000,
            state: TransactionState::PrepareCommit,
            partitions: [tp("t", 0), tp("t", 1)].into_iter().collect(),
            last_update_timestamp_ms: 5,
            start_timestamp_ms: 4,
            client_transaction_version: 2,
        };
        let mut want: Vec<u8> = vec![0, 1]; // version 1
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&1i16.to_be_bytes());
        want.extend_from_slice(&1000i32.to_be_bytes());
        want.push(2); // PrepareCommit
        want.push(2); // compact array of 1
        want.extend_from_slice(&[2, b't']); // compact string "t"
        want.push(3); // compact array of 2 ints
        want.extend_from_slice(&0i32.to_be_bytes());
        want.extend_from_slice(&1i32.to_be_bytes());
        want.push(0); // the element's tagged fields
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&4i64.to_be_bytes());
        want.push(2); // two tagged fields
        want.extend_from_slice(&[0, 8]);
        want.extend_from_slice(&7i64.to_be_bytes());
        want.extend_from_slice(&[2, 2]);
        want.extend_from_slice(&2i16.to_be_bytes());
        assert_eq!(&encode_value(&v, 1)[..], &want[..]);
        assert_eq!(decode_value(&want), Ok(v));
    }

    /// A v0 value as Kafka 3.x writes it (non-flexible, Empty with null partitions).
    #[test]
    fn decodes_kafka_v0_written_by_hand() {
        let mut b: Vec<u8> = vec![0, 0];
        b.extend_from_slice(&42i64.to_be_bytes());
        b.extend_from_slice(&5i16.to_be_bytes());
        b.extend_from_slice(&60_000i32.to_be_bytes());
        b.push(0); // Empty
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null partitions
        b.extend_from_slice(&10i64.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        let v = decode_value(&b).expect("decodes");
        assert_eq!(v.producer_id, 42);
        assert_eq!(v.producer_epoch, 5);
        assert_eq!(v.state, TransactionState::Empty);
        assert!(v.partitions.is_empty());
        assert_eq!(v.previous_producer_id, NO_PRODUCER_ID);
        assert_eq!(v.client_transaction_version, 0);
        assert_eq!(&encode_value(&v, 0)[..], &b[..]);

        // An Ongoing v0 value with one topic.
        let mut o = ongoing();
        o.previous_producer_id = NO_PRODUCER_ID;
        o.client_transaction_version = 0;
        let bytes = encode_value(&o, 0);
        assert_eq!(decode_value(&bytes), Ok(o));
    }

    #[test]
    fn unknown_tagged_fields_are_skipped() {
        let v = ongoing();
        let mut b = encode_value(&v, 1).to_vec();
        // Replace the tag count and append a tag 3 (NextProducerEpoch, int16) after ours.
        let tags_at = b.len() - (1 + 2 + 8 + 2 + 2);
        b[tags_at] = 3;
        b.extend_from_slice(&[3, 2, 0, 9]);
        assert_eq!(decode_value(&b), Ok(v));
    }

    /// Kafka's `testDeserializeFutureTransactionLogValue`: a future v1 value with unknown
    /// tagged fields (100: a string, 101: an int32) in the value and in a partitions element.
    #[test]
    fn future_tagged_fields_in_value_and_partitions_are_skipped() {
        let future_tags = |b: &mut Vec<u8>| {
            b.push(2);
            b.extend_from_slice(&[100, 5, 0, 3, b'f', b'o', b'o']); // STRING "foo"
            b.extend_from_slice(&[101, 4]);
            b.extend_from_slice(&4000i32.to_be_bytes());
        };
        let mut b: Vec<u8> = vec![0, 1];
        b.extend_from_slice(&1000i64.to_be_bytes());
        b.extend_from_slice(&100i16.to_be_bytes());
        b.extend_from_slice(&1000i32.to_be_bytes());
        b.push(4); // CompleteCommit
        b.push(2); // one element
        b.extend_from_slice(&[6, b't', b'o', b'p', b'i', b'c']);
        b.push(2);
        b.extend_from_slice(&1i32.to_be_bytes());
        future_tags(&mut b);
        b.extend_from_slice(&2000i64.to_be_bytes());
        b.extend_from_slice(&3000i64.to_be_bytes());
        future_tags(&mut b);
        let v = decode_value(&b).expect("decodes");
        assert_eq!(v.producer_id, 1000);
        assert_eq!(v.producer_epoch, 100);
        assert_eq!(v.transaction_timeout_ms, 1000);
        assert_eq!(v.state, TransactionState::CompleteCommit);
        assert_eq!(v.partitions, [tp("topic", 1)].into_iter().collect());
        assert_eq!(v.last_update_timestamp_ms, 2000);
        assert_eq!(v.start_timestamp_ms, 3000);
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let rec = TxnRecord::Metadata {
            transactional_id: "t".into(),
            value: ongoing(),
        };
        let key = rec.encode_key();
        let value = rec.encode_value().expect("value");
        for cut in 0..value.len() {
            assert!(TxnRecord::decode(&key, Some(&value[..cut])).is_err());
        }
        for cut in 0..key.len() {
            assert!(TxnRecord::decode(&key[..cut], None).is_err());
        }
        assert_eq!(
            TxnRecord::decode(&[0, 9, 0, 0], None),
            Err(TxnRecordError::UnknownKeyVersion(9))
        );
        assert_eq!(
            decode_value(&[0, 7]),
            Err(TxnRecordError::UnknownValueVersion(7))
        );
        // A huge claimed array length fails before allocating or looping.
        let mut b: Vec<u8> = vec![0, 0];
        b.extend_from_slice(&[0; 14]);
        b.push(1);
        b.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode_value(&b),
            Err(TxnRecordError::InvalidLength { .. })
        ));
        // An unknown status.
        let mut b = value.to_vec();
        b[2 + 8 + 2 + 4] = 42;
        assert_eq!(decode_value(&b), Err(TxnRecordError::UnknownStatus(42)));
        // Deterministic garbage never panics.
        let mut s = 1u64;
        for _ in 0..2000 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (s >> 59) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| (s >> ((i % 8) * 8)) as u8 ^ i as u8)
                .collect();
            let _ = decode_value(&bytes);
            let _ = TxnRecord::decode(&bytes, Some(&bytes));
        }
    }
}
