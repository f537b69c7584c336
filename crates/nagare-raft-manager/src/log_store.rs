//! The replicated metadata log on disk: `__cluster_metadata-0` is an ordinary
//! [`nagare_storage::Log`] whose record batches carry the raft entries — one record per
//! offset, the batch's partition leader epoch being the entry's epoch, the record's value the
//! entry's data. A LeaderChange entry is a control batch (control type 2, Kafka's
//! `LeaderChangeMessage`), so readers of the log skip it like any control record.
//!
//! Batches written by the single-voter metadata log of earlier versions (epoch 0, one metadata
//! record per record) load as ordinary data entries of epoch 0.

use std::path::{Path, PathBuf};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{leader_change_message, BrokerId, LeaderChangeMessage};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_protocol::record_batch;
use nagare_raft::{Entry, EntryPayload, NodeId, Offset};
use nagare_storage::{Log, LogConfig, StorageError, TopicPartition};

/// The metadata topic (KIP-500).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Control record type of Kafka's `LeaderChangeMessage`.
pub(crate) const CONTROL_LEADER_CHANGE: i16 = 2;
/// Control record type of Kafka's `SnapshotHeaderRecord` (KIP-630).
pub(crate) const CONTROL_SNAPSHOT_HEADER: i16 = 3;
/// Control record type of Kafka's `SnapshotFooterRecord` (KIP-630).
pub(crate) const CONTROL_SNAPSHOT_FOOTER: i16 = 4;
/// Most bytes read from the log in one go at load time.
const LOAD_CHUNK_BYTES: usize = 8 << 20;

/// Errors of the metadata log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The partition log failed.
    #[error("metadata log: {0}")]
    Storage(#[from] StorageError),
    /// Reading a region of the log failed.
    #[error("metadata log {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bytes that are not valid record batches, or entries that cannot be encoded.
    #[error("metadata log: {0}")]
    Corrupt(String),
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The key of a control record: version 0 and the control type (Kafka's `ControlRecordType`).
pub(crate) fn control_key(kind: i16) -> Bytes {
    let mut key = BytesMut::with_capacity(4);
    key.put_i16(0);
    key.put_i16(kind);
    key.freeze()
}

/// The control type of a control record's key.
pub(crate) fn control_type(key: Option<&Bytes>) -> Option<i16> {
    let k = key?;
    (k.len() >= 4).then(|| i16::from_be_bytes([k[2], k[3]]))
}

/// `LeaderChangeMessage` v0 as Kafka writes it (the leader and the voters; the granting
/// voters are the voters, which is what Kafka records for a normal election too).
fn encode_leader_change(leader_id: NodeId, voters: &[NodeId]) -> Result<Bytes, LogStoreError> {
    let vs: Vec<leader_change_message::Voter> = voters
        .iter()
        .map(|v| leader_change_message::Voter::default().with_voter_id(*v))
        .collect();
    let msg = LeaderChangeMessage::default()
        .with_version(0)
        .with_leader_id(BrokerId(leader_id))
        .with_voters(vs.clone())
        .with_granting_voters(vs);
    let mut buf = BytesMut::new();
    msg.encode(&mut buf, 0)
        .map_err(|e| LogStoreError::Corrupt(format!("cannot encode LeaderChangeMessage: {e}")))?;
    Ok(buf.freeze())
}

fn decode_leader_change(mut value: Bytes) -> Option<NodeId> {
    let mut peek = value.clone();
    if peek.remaining() < 2 {
        return None;
    }
    let version = peek.get_i16();
    LeaderChangeMessage::decode(&mut value, version.clamp(0, 1))
        .ok()
        .map(|m| m.leader_id.0)
}

/// Encodes `entries` (consecutive offsets) as record batches: one batch per run of data
/// entries of the same epoch, one control batch per LeaderChange. `voters` go into the
/// LeaderChangeMessage.
pub fn encode_entries(entries: &[Entry], voters: &[NodeId]) -> Result<BytesMut, LogStoreError> {
    let mut out = BytesMut::new();
    let mut i = 0;
    let now = now_ms();
    while i < entries.len() {
        let first = &entries[i];
        let mut j = i + 1;
        if matches!(first.payload, EntryPayload::Data(_)) {
            while j < entries.len()
                && entries[j].epoch == first.epoch
                && entries[j].offset == entries[j - 1].offset + 1
                && matches!(entries[j].payload, EntryPayload::Data(_))
            {
                j += 1;
            }
        }
        let mut records = Vec::with_capacity(j - i);
        for (k, e) in entries[i..j].iter().enumerate() {
            let (control, key, value) = match &e.payload {
                EntryPayload::Data(d) => (false, None, Some(d.clone())),
                EntryPayload::LeaderChange { leader_id } => (
                    true,
                    Some(control_key(CONTROL_LEADER_CHANGE)),
                    Some(encode_leader_change(*leader_id, voters)?),
                ),
            };
            records.push(Record {
                transactional: false,
                control,
                delete_horizon: false,
                partition_leader_epoch: first.epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: first.offset + k as i64,
                // A constant offset - sequence keeps the records in one batch (see
                // nagare_protocol::batch_builder).
                sequence: k as i32 - 1,
                timestamp: now,
                key,
                value,
                headers: Default::default(),
            });
        }
        out.extend_from_slice(&encode_batch(&records, first.offset, first.epoch)?);
        i = j;
    }
    Ok(out)
}

/// One uncompressed batch of `records` at `base_offset`, stamped with `epoch`.
pub(crate) fn encode_batch(
    records: &[Record],
    base_offset: Offset,
    epoch: i32,
) -> Result<BytesMut, LogStoreError> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| LogStoreError::Corrupt(format!("cannot encode a batch: {e}")))?;
    record_batch::set_base_offset(&mut buf, base_offset)
        .and_then(|_| record_batch::set_partition_leader_epoch(&mut buf, epoch))
        .and_then(|_| record_batch::update_crc(&mut buf))
        .map_err(|e| LogStoreError::Corrupt(format!("cannot patch a batch: {e}")))?;
    Ok(buf)
}

/// A decoded record with its batch's epoch.
pub(crate) struct DecodedRecord {
    pub epoch: i32,
    pub record: Record,
}

/// Decodes whole record batches (CRCs checked; trailing bytes are an error).
pub(crate) fn decode_records(bytes: &[u8]) -> Result<Vec<DecodedRecord>, LogStoreError> {
    let mut out = Vec::new();
    let mut pos = 0;
    for item in record_batch::batches(bytes) {
        let (h, range) = item.map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
        let batch = &bytes[range.clone()];
        record_batch::validate_crc(batch).map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
        let mut b = Bytes::copy_from_slice(batch);
        let sets = RecordBatchDecoder::decode_all(&mut b)
            .map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
        for set in sets {
            for r in set.records {
                out.push(DecodedRecord {
                    epoch: h.partition_leader_epoch,
                    record: r,
                });
            }
        }
        pos = range.end;
    }
    if pos != bytes.len() {
        return Err(LogStoreError::Corrupt(format!(
            "{} trailing bytes after the last batch",
            bytes.len() - pos
        )));
    }
    Ok(out)
}

/// Decodes record batches into entries (CRCs checked). Control records other than
/// LeaderChange are skipped (they occupy no entry the core knows of).
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, LogStoreError> {
    let mut out = Vec::new();
    for DecodedRecord { epoch, record: r } in decode_records(bytes)? {
        let payload = if r.control {
            match (control_type(r.key.as_ref()), r.value) {
                (Some(CONTROL_LEADER_CHANGE), Some(v)) => match decode_leader_change(v) {
                    Some(leader_id) => EntryPayload::LeaderChange { leader_id },
                    None => {
                        return Err(LogStoreError::Corrupt(format!(
                            "undecodable LeaderChangeMessage at offset {}",
                            r.offset
                        )))
                    }
                },
                _ => continue,
            }
        } else {
            EntryPayload::Data(r.value.unwrap_or_default())
        };
        out.push(Entry {
            offset: r.offset,
            epoch,
            payload,
        });
    }
    Ok(out)
}

/// The metadata partition's log.
pub struct LogStore {
    dir: PathBuf,
    log: Log,
    voters: Vec<NodeId>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("start", &self.log.log_start_offset())
            .field("end", &self.log.log_end_offset())
            .finish()
    }
}

/// `<metadata.log.dir>/__cluster_metadata-0`.
pub fn partition_dir(metadata_log_dir: &Path) -> PathBuf {
    metadata_log_dir.join(format!("{METADATA_TOPIC}-0"))
}

impl LogStore {
    /// Opens (creating) the log in `dir` (see [`partition_dir`]); entries below
    /// `log_start_offset` (covered by a snapshot) are not part of the log any more. `voters`
    /// are recorded in LeaderChange entries.
    pub fn open(
        dir: &Path,
        log_start_offset: Offset,
        voters: Vec<NodeId>,
    ) -> Result<LogStore, LogStoreError> {
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        };
        let config = LogConfig {
            // Snapshots bound the log; nothing expires by time or size.
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            ..LogConfig::default()
        };
        // Every entry was fsynced before it was acknowledged, and the log is bounded by
        // snapshots, so a full recovery scan at open (CRCs, torn tail) costs little.
        let log = Log::open_with_log_start_offset(
            dir.to_path_buf(),
            tp,
            config,
            0,
            log_start_offset.max(0),
            false,
            now_ms(),
        )?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            log,
            voters,
        })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every entry at or after `from`.
    pub fn load_entries(&self, from: Offset) -> Result<Vec<Entry>, LogStoreError> {
        let mut out = Vec::new();
        let end = self.log.log_end_offset();
        let mut offset = self.log.log_start_offset().max(from);
        while offset < end {
            let data = self.log.read(offset, LOAD_CHUNK_BYTES, true, end)?;
            let Some(slice) = data.slice else { break };
            let bytes = slice.read_to_bytes().map_err(|e| LogStoreError::Io {
                path: self.dir.clone(),
                source: e,
            })?;
            let mut next = offset;
            for item in record_batch::batches(&bytes) {
                let (h, _) = item.map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
                next = next.max(h.next_offset());
            }
            out.extend(
                decode_entries(&bytes)?
                    .into_iter()
                    .filter(|e| e.offset >= offset),
            );
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(out)
    }

    /// Appends entries (offset-assigned by the leader, continuing the log). Not durable until
    /// [`LogStore::flush`].
    pub fn append(&self, entries: &[Entry]) -> Result<(), LogStoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let buf = encode_entries(entries, &self.voters)?;
        self.log.append_as_follower(buf, now_ms())?;
        Ok(())
    }

    /// fsyncs the log.
    pub fn flush(&self) -> Result<(), LogStoreError> {
        self.log.flush()?;
        Ok(())
    }

    /// Drops every entry at or above `offset` (divergence, KIP-595).
    pub fn truncate_to(&self, offset: Offset) -> Result<(), LogStoreError> {
        self.log.truncate_to(offset)?;
        Ok(())
    }

    /// Moves the log start to `offset` (a snapshot covers everything below) and deletes the
    /// segments entirely below it.
    pub fn delete_before(&self, offset: Offset) -> Result<(), LogStoreError> {
        if offset > self.log.log_start_offset() && offset <= self.log.log_end_offset() {
            self.log.delete_records_before(offset)?;
        }
        Ok(())
    }

    /// Empties the log; it restarts at `offset` (a fetched snapshot replaces it, KIP-630).
    pub fn restart_at(&self, offset: Offset) -> Result<(), LogStoreError> {
        self.log.truncate_fully_and_start_at(offset)?;
        Ok(())
    }

    /// The log end offset.
    pub fn end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// The log start offset.
    pub fn start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        self.log.segment_count()
    }

    /// Flushes and closes the log.
    pub fn close(&self) -> Result<(), LogStoreError> {
        self.log.close()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(offset: i64, epoch: i32, v: &str) -> Entry {
        Entry {
            offset,
            epoch,
            payload: EntryPayload::Data(Bytes::from(v.to_string())),
        }
    }

    #[test]
    fn entries_survive_reopen_and_truncation() {
        let tmp = tempfile::tempdir().expect("dir");
        let dir = partition_dir(tmp.path());
        let store = LogStore::open(&dir, 0, vec![1, 2, 3]).expect("open");
        let mut entries = vec![
            data(0, 1, "a"),
            Entry {
                offset: 1,
                epoch: 1,
                payload: EntryPayload::LeaderChange { leader_id: 2 },
            },
            data(2, 1, "b"),
            data(3, 2, "c"),
            data(4, 2, "d"),
        ];
        store.append(&entries).expect("append");
        store.flush().expect("flush");
        store.close().expect("close");
        drop(store);
        let store = LogStore::open(&dir, 0, vec![1, 2, 3]).expect("reopen");
        assert_eq!(store.end_offset(), 5);
        assert_eq!(store.load_entries(0).expect("load"), entries);
        store.truncate_to(3).expect("truncate");
        entries.truncate(3);
        assert_eq!(store.load_entries(0).expect("load"), entries);
        assert_eq!(store.load_entries(2).expect("load"), vec![data(2, 1, "b")]);
        // The log continues after the truncation point with a new epoch.
        store.append(&[data(3, 4, "x")]).expect("append");
        store.flush().expect("flush");
        store.close().expect("close");
        drop(store);
        // Reopened with a snapshot covering the first three entries: only the tail loads.
        let store = LogStore::open(&dir, 3, vec![1, 2, 3]).expect("reopen");
        assert_eq!(store.start_offset(), 3);
        assert_eq!(store.load_entries(3).expect("load"), vec![data(3, 4, "x")]);
        store.restart_at(100).expect("restart");
        assert_eq!((store.start_offset(), store.end_offset()), (100, 100));
        assert!(store.load_entries(0).expect("load").is_empty());
    }

    #[test]
    fn leader_change_is_a_kafka_control_batch() {
        let e = Entry {
            offset: 7,
            epoch: 3,
            payload: EntryPayload::LeaderChange { leader_id: 2 },
        };
        let bytes = encode_entries(std::slice::from_ref(&e), &[1, 2, 3]).expect("encode");
        let (h, _) = record_batch::batches(&bytes)
            .next()
            .expect("one batch")
            .expect("valid");
        assert!(h.is_control());
        assert_eq!((h.base_offset, h.partition_leader_epoch), (7, 3));
        let recs = decode_records(&bytes).expect("records");
        let r = &recs[0].record;
        assert_eq!(control_type(r.key.as_ref()), Some(CONTROL_LEADER_CHANGE));
        let mut v = r.value.clone().expect("value");
        let msg = LeaderChangeMessage::decode(&mut v, 0).expect("LeaderChangeMessage");
        assert_eq!(msg.leader_id.0, 2);
        assert_eq!(msg.voters.len(), 3);
        assert_eq!(decode_entries(&bytes).expect("decode"), vec![e]);
    }

    #[test]
    fn old_single_voter_batches_load_as_epoch_zero_entries() {
        // What nagare-metadata's MetadataLog wrote: epoch 0, one JSON record per record.
        let tmp = tempfile::tempdir().expect("dir");
        let dir = partition_dir(tmp.path());
        {
            let log = Log::open(
                dir.clone(),
                TopicPartition {
                    topic: METADATA_TOPIC.to_string(),
                    partition: 0,
                },
                LogConfig::default(),
                0,
                false,
                0,
            )
            .expect("log");
            for chunk in [
                &[b"{\"r\":0}".as_slice(), b"{\"r\":1}"][..],
                &[b"{\"r\":2}"],
            ] {
                let b = nagare_protocol::batch_builder::build_batch(
                    chunk
                        .iter()
                        .map(|v| (None, Some(Bytes::copy_from_slice(v)))),
                    0,
                    0,
                )
                .expect("batch");
                log.append_as_leader(b, 0, 0).expect("append");
            }
            log.flush().expect("flush");
            log.close().expect("close");
        }
        let store = LogStore::open(&dir, 0, vec![1]).expect("open");
        assert_eq!(
            store.load_entries(0).expect("load"),
            vec![
                data(0, 0, "{\"r\":0}"),
                data(1, 0, "{\"r\":1}"),
                data(2, 0, "{\"r\":2}")
            ]
        );
    }
}
