//! The replicated metadata log on disk: `__cluster_metadata-0` is an ordinary
//! [`nagare_storage::Log`] whose record batches carry the raft entries (one record per
//! offset, the batch's partition leader epoch being the entry's epoch), plus snapshot files
//! `<20-digit end offset>-<10-digit epoch>.checkpoint` (KIP-630) holding the state's records as
//! record batches. A LeaderChange entry is a control batch (control type 2, as Kafka's
//! `LeaderChangeMessage`), so readers of the log skip it like any control record.
//!
//! Batches written by the single-voter metadata log of earlier versions (epoch 0, one metadata
//! record per record) load as ordinary data entries.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_protocol::record_batch;
use nagare_raft::{Entry, EntryPayload, Snapshot, SnapshotId};
use nagare_storage::{Log, LogConfig, StorageError, TopicPartition};

use crate::replica_manager::now_ms;

/// The metadata topic (KIP-500).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// Control record type of Kafka's LeaderChangeMessage.
const LEADER_CHANGE: i16 = 2;
const SNAPSHOT_SUFFIX: &str = ".checkpoint";

/// Errors of the metadata log store.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// The partition log failed.
    #[error("metadata log: {0}")]
    Storage(#[from] StorageError),
    /// Snapshot file I/O failed.
    #[error("metadata snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Bytes that are not valid record batches.
    #[error("metadata log {0}")]
    Corrupt(String),
}

/// Encodes `entries` (consecutive offsets) as record batches: one batch per run of data
/// entries of the same epoch, one control batch per LeaderChange.
pub fn encode_entries(entries: &[Entry]) -> Result<BytesMut, LogStoreError> {
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
        let records: Vec<Record> = entries[i..j]
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let (control, key, value) = match &e.payload {
                    EntryPayload::Data(d) => (false, None, Some(d.clone())),
                    EntryPayload::LeaderChange { leader_id } => {
                        let mut key = Vec::with_capacity(4);
                        key.extend_from_slice(&0i16.to_be_bytes());
                        key.extend_from_slice(&LEADER_CHANGE.to_be_bytes());
                        (
                            true,
                            Some(Bytes::from(key)),
                            Some(Bytes::copy_from_slice(&leader_id.to_be_bytes())),
                        )
                    }
                };
                Record {
                    transactional: false,
                    control,
                    delete_horizon: false,
                    partition_leader_epoch: first.epoch,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: first.offset + k as i64,
                    // Constant offset - sequence keeps the records in one batch (see
                    // nagare_protocol::batch_builder).
                    sequence: k as i32 - 1,
                    timestamp: now,
                    key,
                    value,
                    headers: Default::default(),
                }
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| LogStoreError::Corrupt(format!("cannot encode entries: {e}")))?;
        record_batch::set_base_offset(&mut buf, first.offset)
            .and_then(|_| record_batch::set_partition_leader_epoch(&mut buf, first.epoch))
            .and_then(|_| record_batch::update_crc(&mut buf))
            .map_err(|e| LogStoreError::Corrupt(format!("cannot patch batch: {e}")))?;
        out.extend_from_slice(&buf);
        i = j;
    }
    Ok(out)
}

/// Decodes record batches into entries (CRCs checked).
pub fn decode_entries(bytes: &[u8]) -> Result<Vec<Entry>, LogStoreError> {
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
                let payload = if r.control {
                    let kind = r
                        .key
                        .as_ref()
                        .filter(|k| k.len() >= 4)
                        .map(|k| i16::from_be_bytes([k[2], k[3]]));
                    match (kind, r.value.as_ref()) {
                        (Some(LEADER_CHANGE), Some(v)) if v.len() >= 4 => {
                            EntryPayload::LeaderChange {
                                leader_id: i32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                            }
                        }
                        _ => continue,
                    }
                } else {
                    EntryPayload::Data(r.value.unwrap_or_default())
                };
                out.push(Entry {
                    offset: r.offset,
                    epoch: h.partition_leader_epoch,
                    payload,
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

/// The metadata partition's log and snapshots.
pub struct LogStore {
    dir: PathBuf,
    log: Log,
}

fn snapshot_name(id: SnapshotId) -> String {
    format!("{:020}-{:010}{SNAPSHOT_SUFFIX}", id.end_offset, id.epoch)
}

fn parse_snapshot_name(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    let (o, e) = stem.split_once('-')?;
    Some(SnapshotId {
        end_offset: o.parse().ok()?,
        epoch: e.parse().ok()?,
    })
}

impl LogStore {
    /// Opens (creating) `<metadata_dir>/__cluster_metadata-0`.
    pub fn open(metadata_dir: &Path) -> Result<LogStore, LogStoreError> {
        let tp = TopicPartition {
            topic: METADATA_TOPIC.to_string(),
            partition: 0,
        };
        let dir = metadata_dir.join(tp.to_string());
        let config = LogConfig {
            // Snapshots bound the log; nothing expires by time or size.
            retention_ms: -1,
            retention_bytes: -1,
            segment_bytes: 16 * 1024 * 1024,
            max_message_bytes: 64 * 1024 * 1024,
            ..LogConfig::default()
        };
        // Every entry was fsynced before it was acknowledged, so a full scan at open (CRCs,
        // torn tail) costs little: the log is bounded by snapshots.
        let log = Log::open(dir.clone(), tp, config, 0, false, now_ms())?;
        Ok(LogStore { dir, log })
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads every entry at or after `from` (the newest snapshot's end).
    pub fn load_entries(&self, from: i64) -> Result<Vec<Entry>, LogStoreError> {
        let mut out = Vec::new();
        let end = self.log.log_end_offset();
        let mut offset = self.log.log_start_offset().max(from);
        while offset < end {
            let data = self.log.read(offset, 8 << 20, true, end)?;
            let Some(slice) = data.slice else { break };
            let bytes = slice.read_to_bytes().map_err(|e| LogStoreError::Io {
                path: self.dir.clone(),
                source: e,
            })?;
            let entries = decode_entries(&bytes)?;
            let mut next = offset;
            for item in record_batch::batches(&bytes) {
                let (h, _) = item.map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
                next = next.max(h.next_offset());
            }
            out.extend(entries.into_iter().filter(|e| e.offset >= offset));
            if next <= offset {
                break;
            }
            offset = next;
        }
        Ok(out)
    }

    /// Appends entries (already offset-assigned, continuing the log).
    pub fn append(&self, entries: &[Entry]) -> Result<(), LogStoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let buf = encode_entries(entries)?;
        self.log.append_as_follower(buf, now_ms())?;
        Ok(())
    }

    /// fsyncs the log.
    pub fn flush(&self) -> Result<(), LogStoreError> {
        self.log.flush()?;
        Ok(())
    }

    /// Drops every entry at or above `offset`.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogStoreError> {
        self.log.truncate_to(offset)?;
        Ok(())
    }

    /// The log end offset.
    pub fn end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The log start offset.
    pub fn start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Writes a snapshot durably (`.part`, fsync, rename, directory fsync).
    pub fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        let path = self.dir.join(snapshot_name(snapshot.id));
        let part = path.with_extension("checkpoint.part");
        let io = |source| LogStoreError::Io {
            path: path.clone(),
            source,
        };
        std::fs::write(&part, &snapshot.data).map_err(io)?;
        std::fs::File::open(&part)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        std::fs::rename(&part, &path).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// The newest readable snapshot, if any (a damaged file is skipped with a log line).
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>, LogStoreError> {
        let mut ids = self.snapshot_ids()?;
        ids.sort();
        while let Some(id) = ids.pop() {
            let path = self.dir.join(snapshot_name(id));
            let data = std::fs::read(&path).map_err(|source| LogStoreError::Io {
                path: path.clone(),
                source,
            })?;
            if let Err(e) = decode_snapshot_records(&data) {
                tracing::warn!(file = %path.display(), error = %e, "skipping damaged snapshot");
                continue;
            }
            return Ok(Some(Snapshot {
                id,
                data: Bytes::from(data),
            }));
        }
        Ok(None)
    }

    fn snapshot_ids(&self) -> Result<Vec<SnapshotId>, LogStoreError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| LogStoreError::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(rd
            .filter_map(|e| e.ok())
            .filter_map(|e| parse_snapshot_name(&e.file_name().to_string_lossy()))
            .collect())
    }

    /// After snapshot `keep` is durable: deletes older snapshots and the log segments entirely
    /// below it (Kafka keeps the log from the newest snapshot on).
    pub fn clean_before(&self, keep: SnapshotId) -> Result<(), LogStoreError> {
        for id in self.snapshot_ids()? {
            if id < keep {
                let _ = std::fs::remove_file(self.dir.join(snapshot_name(id)));
            }
        }
        if keep.end_offset > self.log.log_start_offset()
            && keep.end_offset <= self.log.log_end_offset()
        {
            self.log.delete_records_before(keep.end_offset)?;
        }
        Ok(())
    }

    /// Replaces the whole log by a fetched snapshot: the log restarts at its end offset.
    pub fn install_snapshot(&self, snapshot: &Snapshot) -> Result<(), LogStoreError> {
        self.write_snapshot(snapshot)?;
        self.log
            .truncate_fully_and_start_at(snapshot.id.end_offset)?;
        self.clean_before(snapshot.id)
    }

    /// Flushes and closes the log.
    pub fn close(&self) -> Result<(), LogStoreError> {
        self.log.close()?;
        Ok(())
    }
}

/// Encodes a state's records as snapshot content (uncompressed record batches).
pub fn encode_snapshot_records(records: &[Bytes]) -> Result<Bytes, LogStoreError> {
    let mut out = BytesMut::new();
    // Batches of at most 1000 records keep each one well below any size limit.
    for chunk in records.chunks(1000) {
        let b = nagare_protocol::batch_builder::build_batch(
            chunk.iter().map(|r| (None, Some(r.clone()))),
            0,
            now_ms(),
        )
        .map_err(|e| LogStoreError::Corrupt(e.to_string()))?;
        out.extend_from_slice(&b);
    }
    Ok(out.freeze())
}

/// Decodes snapshot content back into the state's records (CRCs checked).
pub fn decode_snapshot_records(data: &[u8]) -> Result<Vec<Bytes>, LogStoreError> {
    Ok(decode_entries(data)?
        .into_iter()
        .filter_map(|e| match e.payload {
            EntryPayload::Data(d) => Some(d),
            EntryPayload::LeaderChange { .. } => None,
        })
        .collect())
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
    fn entries_survive_reopen_truncation_and_snapshots() {
        let dir = tempfile::tempdir().expect("dir");
        let store = LogStore::open(dir.path()).expect("open");
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
        let store = LogStore::open(dir.path()).expect("reopen");
        assert_eq!(store.load_entries(0).expect("load"), entries);
        store.truncate_to(3).expect("truncate");
        entries.truncate(3);
        assert_eq!(store.load_entries(0).expect("load"), entries);
        assert_eq!(store.load_entries(2).expect("load").len(), 1);

        let snap = Snapshot {
            id: SnapshotId {
                end_offset: 3,
                epoch: 1,
            },
            data: encode_snapshot_records(&[Bytes::from_static(b"x"), Bytes::from_static(b"y")])
                .expect("encode"),
        };
        store.write_snapshot(&snap).expect("snapshot");
        store.append(&[data(3, 3, "e")]).expect("append");
        store.clean_before(snap.id).expect("clean");
        let got = store.latest_snapshot().expect("latest").expect("some");
        assert_eq!(got.id, snap.id);
        assert_eq!(
            decode_snapshot_records(&got.data).expect("decode"),
            vec![Bytes::from_static(b"x"), Bytes::from_static(b"y")]
        );
        assert_eq!(store.load_entries(3).expect("tail"), vec![data(3, 3, "e")]);

        // A fetched snapshot replaces everything.
        let far = Snapshot {
            id: SnapshotId {
                end_offset: 100,
                epoch: 5,
            },
            data: encode_snapshot_records(&[Bytes::from_static(b"z")]).expect("encode"),
        };
        store.install_snapshot(&far).expect("install");
        assert_eq!(store.end_offset(), 100);
        assert_eq!(store.start_offset(), 100);
        assert_eq!(
            store.latest_snapshot().expect("latest").map(|s| s.id),
            Some(far.id)
        );
    }

    #[test]
    fn old_single_voter_batches_load_as_epoch_zero_entries() {
        let dir = tempfile::tempdir().expect("dir");
        let mut b = nagare_protocol::batch_builder::build_batch(
            [
                (None, Some(Bytes::from_static(b"r0"))),
                (None, Some(Bytes::from_static(b"r1"))),
            ],
            0,
            0,
        )
        .expect("batch");
        record_batch::update_crc(&mut b).expect("crc");
        let got = decode_entries(&b).expect("decode");
        assert_eq!(got, vec![data(0, 0, "r0"), data(1, 0, "r1")]);
        let _ = dir;
    }
}
