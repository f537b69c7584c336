//! Snapshots of the replicated state (KIP-630): files
//! `<20-digit end offset>-<10-digit epoch>.checkpoint` in the metadata partition directory.
//! Like Kafka's `RecordsSnapshotWriter`, a snapshot is a sequence of record batches (offsets
//! from 0, partition leader epoch = the snapshot's epoch): a `SnapshotHeaderRecord` control
//! record (type 3), the state's records, and a `SnapshotFooterRecord` control record (type 4).
//! A file without its footer is incomplete and never loaded.
//!
//! A snapshot is written to `<name>.checkpoint.part`, fsynced, renamed and the directory
//! fsynced, so a crash leaves either the whole snapshot or a `.part` that is deleted at start.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{SnapshotFooterRecord, SnapshotHeaderRecord};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::records::{Record, TimestampType};
use nagare_raft::{Snapshot, SnapshotId};

use crate::log_store::{
    control_key, control_type, decode_records, encode_batch, now_ms, CONTROL_SNAPSHOT_FOOTER,
    CONTROL_SNAPSHOT_HEADER,
};

const SUFFIX: &str = ".checkpoint";
const PART_SUFFIX: &str = ".checkpoint.part";
/// Most records in one batch of a snapshot.
const BATCH_RECORDS: usize = 1000;
/// Most bytes of record values in one batch of a snapshot.
const BATCH_BYTES: usize = 1 << 20;

/// Errors reading or writing snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// File I/O failed.
    #[error("metadata snapshot {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a complete snapshot.
    #[error("metadata snapshot is corrupt: {0}")]
    Corrupt(String),
}

/// `<20-digit end offset>-<10-digit epoch>.checkpoint`, as Kafka names snapshot files.
pub fn file_name(id: SnapshotId) -> String {
    format!("{:020}-{:010}{SUFFIX}", id.end_offset, id.epoch)
}

/// The id a snapshot file name stands for.
pub fn parse_file_name(name: &str) -> Option<SnapshotId> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (o, e) = stem.split_once('-')?;
    if o.len() != 20 || e.len() != 10 {
        return None;
    }
    Some(SnapshotId {
        end_offset: o.parse().ok()?,
        epoch: e.parse().ok()?,
    })
}

fn control_record(kind: i16, value: Bytes, offset: i64, epoch: i32, now: i64) -> Record {
    Record {
        transactional: false,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: epoch,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp: now,
        key: Some(control_key(kind)),
        value: Some(value),
        headers: Default::default(),
    }
}

fn encode_message<T: Encodable>(m: &T) -> Result<Bytes, SnapshotError> {
    let mut b = BytesMut::new();
    m.encode(&mut b, 0)
        .map_err(|e| SnapshotError::Corrupt(format!("cannot encode a control record: {e}")))?;
    Ok(b.freeze())
}

/// Encodes a snapshot's content: header, `records` in batches, footer.
pub fn encode(id: SnapshotId, records: &[Bytes]) -> Result<Bytes, SnapshotError> {
    let now = now_ms();
    let corrupt = |e: crate::LogStoreError| SnapshotError::Corrupt(e.to_string());
    let mut out = BytesMut::new();
    let header = SnapshotHeaderRecord::default()
        .with_version(0)
        .with_last_contained_log_timestamp(now);
    let header = control_record(
        CONTROL_SNAPSHOT_HEADER,
        encode_message(&header)?,
        0,
        id.epoch,
        now,
    );
    out.extend_from_slice(&encode_batch(&[header], 0, id.epoch).map_err(corrupt)?);
    let mut offset = 1i64;
    let mut i = 0;
    while i < records.len() {
        let mut j = i;
        let mut bytes = 0;
        while j < records.len() && j - i < BATCH_RECORDS && (j == i || bytes < BATCH_BYTES) {
            bytes += records[j].len();
            j += 1;
        }
        let batch: Vec<Record> = records[i..j]
            .iter()
            .enumerate()
            .map(|(k, r)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: id.epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: offset + k as i64,
                sequence: k as i32 - 1,
                timestamp: now,
                key: None,
                value: Some(r.clone()),
                headers: Default::default(),
            })
            .collect();
        out.extend_from_slice(&encode_batch(&batch, offset, id.epoch).map_err(corrupt)?);
        offset += (j - i) as i64;
        i = j;
    }
    let footer = SnapshotFooterRecord::default().with_version(0);
    let footer = control_record(
        CONTROL_SNAPSHOT_FOOTER,
        encode_message(&footer)?,
        offset,
        id.epoch,
        now,
    );
    out.extend_from_slice(&encode_batch(&[footer], offset, id.epoch).map_err(corrupt)?);
    Ok(out.freeze())
}

/// Decodes a snapshot's content into the state's records; refuses content without the
/// header first and the footer last (a torn or truncated snapshot).
pub fn decode(data: &[u8]) -> Result<Vec<Bytes>, SnapshotError> {
    let recs = decode_records(data).map_err(|e| SnapshotError::Corrupt(e.to_string()))?;
    let kinds: Vec<Option<i16>> = recs
        .iter()
        .map(|r| {
            r.record
                .control
                .then(|| control_type(r.record.key.as_ref()))
                .flatten()
        })
        .collect();
    if kinds.first() != Some(&Some(CONTROL_SNAPSHOT_HEADER)) {
        return Err(SnapshotError::Corrupt("no SnapshotHeader record".into()));
    }
    if kinds.last() != Some(&Some(CONTROL_SNAPSHOT_FOOTER)) || recs.len() < 2 {
        return Err(SnapshotError::Corrupt(
            "no SnapshotFooter record (incomplete snapshot)".into(),
        ));
    }
    Ok(recs
        .into_iter()
        .filter(|r| !r.record.control)
        .map(|r| r.record.value.unwrap_or_default())
        .collect())
}

/// The snapshot files of one partition directory.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    dir: PathBuf,
}

impl SnapshotStore {
    /// The snapshots in `dir`; deletes leftover `.part` files of interrupted writes.
    pub fn open(dir: &Path) -> Result<SnapshotStore, SnapshotError> {
        let io = |source| SnapshotError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        for e in std::fs::read_dir(dir).map_err(io)?.flatten() {
            if e.file_name().to_string_lossy().ends_with(PART_SUFFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
        })
    }

    /// The path of snapshot `id`.
    pub fn path(&self, id: SnapshotId) -> PathBuf {
        self.dir.join(file_name(id))
    }

    /// Every snapshot id present, oldest first.
    pub fn list(&self) -> Result<Vec<SnapshotId>, SnapshotError> {
        let rd = std::fs::read_dir(&self.dir).map_err(|source| SnapshotError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut ids: Vec<SnapshotId> = rd
            .flatten()
            .filter_map(|e| parse_file_name(&e.file_name().to_string_lossy()))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// The newest complete snapshot with its decoded records; a damaged file is skipped
    /// (with a warning) for the next older one.
    pub fn latest(&self) -> Result<Option<(Snapshot, Vec<Bytes>)>, SnapshotError> {
        let mut ids = self.list()?;
        while let Some(id) = ids.pop() {
            let path = self.path(id);
            let data = std::fs::read(&path).map_err(|source| SnapshotError::Io {
                path: path.clone(),
                source,
            })?;
            match decode(&data) {
                Ok(records) => {
                    return Ok(Some((
                        Snapshot {
                            id,
                            data: Bytes::from(data),
                        },
                        records,
                    )))
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping damaged metadata snapshot")
                }
            }
        }
        Ok(None)
    }

    /// Writes `snapshot` durably: `.part`, fsync, rename, directory fsync.
    pub fn write(&self, snapshot: &Snapshot) -> Result<(), SnapshotError> {
        let path = self.path(snapshot.id);
        let part = self.dir.join(format!("{}{PART_SUFFIX}", {
            let n = file_name(snapshot.id);
            n.strip_suffix(SUFFIX).unwrap_or(&n).to_string()
        }));
        let io = |source| SnapshotError::Io {
            path: path.clone(),
            source,
        };
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&part).map_err(io)?;
            f.write_all(&snapshot.data).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&part, &path).map_err(io)?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(())
    }

    /// Deletes every snapshot older than `keep` (Kafka keeps only the newest once it is
    /// durable and the log before it is gone).
    pub fn delete_older_than(&self, keep: SnapshotId) -> Result<usize, SnapshotError> {
        let mut n = 0;
        for id in self.list()? {
            if id < keep && std::fs::remove_file(self.path(id)).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(end_offset: i64, epoch: i32) -> SnapshotId {
        SnapshotId { end_offset, epoch }
    }

    #[test]
    fn names_are_kafkas() {
        assert_eq!(
            file_name(id(1234, 5)),
            "00000000000000001234-0000000005.checkpoint"
        );
        assert_eq!(parse_file_name(&file_name(id(1234, 5))), Some(id(1234, 5)));
        assert_eq!(
            parse_file_name("00000000000000001234-0000000005.checkpoint.part"),
            None
        );
        assert_eq!(parse_file_name("1-2.checkpoint"), None);
    }

    #[test]
    fn content_is_header_records_footer() {
        let records: Vec<Bytes> = (0..2500)
            .map(|i| Bytes::from(format!("record-{i}")))
            .collect();
        let data = encode(id(10, 2), &records).expect("encode");
        let recs = decode_records(&data).expect("batches");
        assert_eq!(recs.len(), 2502);
        assert!(recs[0].record.control);
        assert_eq!(
            control_type(recs[0].record.key.as_ref()),
            Some(CONTROL_SNAPSHOT_HEADER)
        );
        assert_eq!(
            control_type(recs[2501].record.key.as_ref()),
            Some(CONTROL_SNAPSHOT_FOOTER)
        );
        assert!(recs.iter().all(|r| r.epoch == 2));
        // Offsets run from 0 through the footer.
        assert!(recs
            .iter()
            .enumerate()
            .all(|(i, r)| r.record.offset == i as i64));
        assert_eq!(decode(&data).expect("decode"), records);
        // An empty state is still a complete snapshot.
        assert!(decode(&encode(id(1, 1), &[]).expect("empty"))
            .expect("decode")
            .is_empty());
        // A truncated snapshot (footer lost) is refused.
        let cut = data.len() - 20;
        assert!(decode(&data[..cut]).is_err());
        let footer_start = {
            let mut last = 0;
            for b in nagare_protocol::record_batch::batches(&data) {
                last = b.expect("batch").1.start;
            }
            last
        };
        assert!(matches!(
            decode(&data[..footer_start]),
            Err(SnapshotError::Corrupt(_))
        ));
    }

    #[test]
    fn files_are_written_atomically_and_the_newest_complete_one_wins() {
        let tmp = tempfile::tempdir().expect("dir");
        let store = SnapshotStore::open(tmp.path()).expect("open");
        assert!(store.latest().expect("none").is_none());
        let a = Snapshot {
            id: id(5, 1),
            data: encode(id(5, 1), &[Bytes::from_static(b"a")]).expect("a"),
        };
        let b = Snapshot {
            id: id(9, 2),
            data: encode(id(9, 2), &[Bytes::from_static(b"b")]).expect("b"),
        };
        store.write(&a).expect("a");
        store.write(&b).expect("b");
        let (s, recs) = store.latest().expect("latest").expect("some");
        assert_eq!((s.id, recs), (b.id, vec![Bytes::from_static(b"b")]));
        // A damaged newest file falls back to the older one.
        std::fs::write(store.path(b.id), &b.data[..b.data.len() - 3]).expect("damage");
        assert_eq!(store.latest().expect("latest").expect("some").0.id, a.id);
        store.write(&b).expect("b again");
        assert_eq!(store.delete_older_than(b.id).expect("delete"), 1);
        assert_eq!(store.list().expect("list"), vec![b.id]);
        // A leftover .part is removed at open and never loaded.
        let part = tmp
            .path()
            .join("00000000000000000100-0000000003.checkpoint.part");
        std::fs::write(&part, b"junk").expect("part");
        let store = SnapshotStore::open(tmp.path()).expect("reopen");
        assert!(!part.exists());
        assert_eq!(store.list().expect("list"), vec![b.id]);
    }
}
