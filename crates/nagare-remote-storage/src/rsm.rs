//! The remote storage manager (Kafka's `RemoteStorageManager` plugin interface, built in):
//! copies a rolled segment and its companions to the object store, reads them back with
//! ranged reads and an index cache, and deletes them. It also keeps each partition's remote
//! log metadata as a manifest object next to the segments (Nagare's
//! `RemoteLogMetadataManager`; docs/ARCHITECTURE.md explains why there and not in a topic).
//!
//! Object layout, under the configured prefix (readable by operators, one directory per
//! partition, the topic id keeping a re-created topic apart from the old one's data):
//!
//! ```text
//! {topic}-{topic_id}/{partition}/{start_offset:020}-{segment_id}.log
//!                                                              .index
//!                                                              .timeindex
//!                                                              .snapshot          (producer state)
//!                                                              .leader-epoch-checkpoint
//!                                                              .txnindex          (if any)
//! {topic}-{topic_id}/{partition}/remote_log_metadata               (the manifest)
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use uuid::Uuid;

use crate::metadata::{RemoteLogSegmentMetadata, TopicIdPartition};
use crate::state::{ManifestError, RemoteLogState};

/// An error of the remote storage manager (Kafka's `RemoteStorageException`); all of them are
/// retried by the caller with backoff.
#[derive(Debug, thiserror::Error)]
pub enum RemoteStorageError {
    /// The object store failed (network, credentials, throttling, ...).
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A local file could not be read.
    #[error("local file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The manifest is unreadable.
    #[error("manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// A remote object does not have the shape its metadata promises.
    #[error("corrupt remote data: {0}")]
    Corrupt(String),
}

/// The companion objects of a segment (Kafka's `IndexType`, plus the log itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    /// The `.log` file.
    Segment,
    /// The offset index.
    OffsetIndex,
    /// The time index.
    TimeIndex,
    /// The producer-state snapshot at the segment's end.
    ProducerSnapshot,
    /// The slice of the leader-epoch checkpoint covering the segment.
    LeaderEpoch,
    /// The aborted-transaction index.
    TransactionIndex,
}

impl ObjectKind {
    /// Every kind, in upload order (the `.log` last but one so a reader never finds indexes
    /// missing for a segment it can see; the metadata only turns COPY_FINISHED after all).
    pub const ALL: [ObjectKind; 6] = [
        ObjectKind::OffsetIndex,
        ObjectKind::TimeIndex,
        ObjectKind::ProducerSnapshot,
        ObjectKind::LeaderEpoch,
        ObjectKind::TransactionIndex,
        ObjectKind::Segment,
    ];

    fn suffix(self) -> &'static str {
        match self {
            ObjectKind::Segment => "log",
            ObjectKind::OffsetIndex => "index",
            ObjectKind::TimeIndex => "timeindex",
            ObjectKind::ProducerSnapshot => "snapshot",
            ObjectKind::LeaderEpoch => "leader-epoch-checkpoint",
            ObjectKind::TransactionIndex => "txnindex",
        }
    }
}

/// The local files of a rolled segment to upload.
#[derive(Debug, Clone)]
pub struct SegmentFiles {
    /// The `.log` file.
    pub log: PathBuf,
    /// The `.index` file.
    pub offset_index: PathBuf,
    /// The `.timeindex` file.
    pub time_index: PathBuf,
    /// The `.txnindex` file, if the segment has aborted transactions.
    pub txn_index: Option<PathBuf>,
    /// The producer-state snapshot taken at the segment's end offset, if any.
    pub producer_snapshot: Option<PathBuf>,
}

/// Objects above this size are uploaded in parts (S3 refuses single PUTs over 5 GiB and a
/// multipart upload keeps memory bounded).
const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Part size of a multipart upload (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts in flight per upload.
const PART_CONCURRENCY: usize = 4;

/// The object-store key prefix of a partition.
pub fn partition_prefix(root: &ObjectPath, tp: &TopicIdPartition) -> ObjectPath {
    root.child(format!("{}-{}", tp.topic, tp.topic_id))
        .child(tp.partition.to_string())
}

/// The object-store key of one object of a segment.
pub fn object_path(
    root: &ObjectPath,
    m: &RemoteLogSegmentMetadata,
    kind: ObjectKind,
) -> ObjectPath {
    partition_prefix(root, &m.id.partition).child(format!(
        "{:020}-{}.{}",
        m.start_offset,
        m.id.segment_id,
        kind.suffix()
    ))
}

/// The leader-epoch slice in Kafka's checkpoint text format (version 0, entry count, then
/// `epoch start_offset` lines), so the object reads like the local checkpoint file.
pub fn leader_epoch_checkpoint_text(m: &RemoteLogSegmentMetadata) -> String {
    let mut s = format!("0\n{}\n", m.segment_leader_epochs.len());
    for (epoch, offset) in &m.segment_leader_epochs {
        s.push_str(&format!("{epoch} {offset}\n"));
    }
    s
}

/// A bounded LRU cache of index objects (`remote.log.index.file.cache.total.size.bytes`):
/// every remote fetch needs the segment's offset index, so it is fetched once per segment
/// rather than once per read.
#[derive(Debug)]
pub struct IndexCache {
    max_bytes: u64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    used: u64,
    map: HashMap<(Uuid, ObjectKind), Bytes>,
    order: VecDeque<(Uuid, ObjectKind)>,
}

impl IndexCache {
    /// A cache holding at most `max_bytes`.
    pub fn new(max_bytes: u64) -> Self {
        IndexCache {
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic elsewhere while holding the lock leaves only a cache behind: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached object, marking it recently used.
    pub fn get(&self, segment: Uuid, kind: ObjectKind) -> Option<Bytes> {
        let mut c = self.lock();
        let b = c.map.get(&(segment, kind)).cloned()?;
        c.order.retain(|k| *k != (segment, kind));
        c.order.push_back((segment, kind));
        Some(b)
    }

    /// Caches an object, evicting the least recently used ones beyond the bound. An object
    /// larger than the whole cache is not cached.
    pub fn insert(&self, segment: Uuid, kind: ObjectKind, bytes: Bytes) {
        let len = bytes.len() as u64;
        if len > self.max_bytes {
            return;
        }
        let mut c = self.lock();
        if let Some(old) = c.map.insert((segment, kind), bytes) {
            c.used -= old.len() as u64;
            c.order.retain(|k| *k != (segment, kind));
        }
        c.used += len;
        c.order.push_back((segment, kind));
        while c.used > self.max_bytes {
            let Some(k) = c.order.pop_front() else { break };
            if let Some(b) = c.map.remove(&k) {
                c.used -= b.len() as u64;
            }
        }
    }

    /// Drops every object of a deleted segment.
    pub fn remove_segment(&self, segment: Uuid) {
        let mut c = self.lock();
        for kind in ObjectKind::ALL {
            if let Some(b) = c.map.remove(&(segment, kind)) {
                c.used -= b.len() as u64;
            }
        }
        c.order.retain(|(s, _)| *s != segment);
    }

    /// Bytes cached now.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }
}

/// Where a fetch's bytes lie in a buffer of whole batches read from a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchScan {
    /// Bytes `[start, end)` of the buffer: the batch containing the target and following
    /// whole batches within the byte limit.
    Found {
        /// Start of the batch containing (or first after) the target offset.
        start: usize,
        /// End of the last whole batch taken.
        end: usize,
    },
    /// The first wanted batch starts at `start` but is not wholly in the buffer (it is larger
    /// than the read, or than the byte limit): read `len` bytes from there (KIP-74: a fetch
    /// always returns at least one whole batch).
    FirstBatchIncomplete {
        /// Its position in the buffer.
        start: usize,
        /// Its total length.
        len: usize,
    },
    /// Every whole batch in the buffer ends before the target: continue reading at `consumed`.
    NeedMore {
        /// Bytes of whole batches skipped.
        consumed: usize,
    },
}

/// Size of the record batch fields up to and including `batchLength`.
const LOG_OVERHEAD: usize = 12;
/// Offset of `lastOffsetDelta` in a v2 record batch header.
const LAST_OFFSET_DELTA_AT: usize = 23;

/// Finds the batches to return for a fetch at `target` of at most `max_bytes` in `buf`, which
/// starts at a batch boundary. Pure, so each case is tested without a store.
pub fn scan_batches(buf: &[u8], target: i64, max_bytes: usize) -> Result<BatchScan, String> {
    let mut pos = 0usize;
    let mut start: Option<usize> = None;
    while pos + LOG_OVERHEAD <= buf.len() {
        let base = i64::from_be_bytes(read_arr(buf, pos)?);
        let batch_len = i32::from_be_bytes(read_arr(buf, pos + 8)?);
        if batch_len < 0 {
            return Err(format!("negative batch length at {pos}"));
        }
        let total = LOG_OVERHEAD + batch_len as usize;
        match start {
            None => {
                if pos + LAST_OFFSET_DELTA_AT + 4 > buf.len() {
                    break;
                }
                let delta = i32::from_be_bytes(read_arr(buf, pos + LAST_OFFSET_DELTA_AT)?);
                if base + i64::from(delta) < target {
                    if pos + total > buf.len() {
                        break;
                    }
                    pos += total;
                    continue;
                }
                if pos + total > buf.len() {
                    return Ok(BatchScan::FirstBatchIncomplete {
                        start: pos,
                        len: total,
                    });
                }
                start = Some(pos);
                pos += total;
                if total > max_bytes {
                    // KIP-74: one whole batch even over the limit, and nothing more.
                    break;
                }
            }
            Some(s) => {
                if pos + total > buf.len() || pos + total - s > max_bytes {
                    break;
                }
                pos += total;
            }
        }
    }
    Ok(match start {
        Some(s) => BatchScan::Found { start: s, end: pos },
        None => BatchScan::NeedMore { consumed: pos },
    })
}

fn read_arr<const N: usize>(buf: &[u8], at: usize) -> Result<[u8; N], String> {
    buf.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("truncated batch header at {at}"))
}

/// The file position of the last offset-index entry at or below `target` (0 if none).
/// Entries are 8 bytes: offset relative to `base_offset` (u32 BE), position (u32 BE).
pub fn index_position(index: &[u8], base_offset: i64, target: i64) -> u64 {
    let mut pos = 0u64;
    for e in index.chunks_exact(8) {
        let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let p = u32::from_be_bytes([e[4], e[5], e[6], e[7]]);
        if base_offset + i64::from(rel) > target {
            break;
        }
        // A zeroed (preallocated) tail entry after the first would go backwards: stop there.
        if u64::from(p) < pos {
            break;
        }
        pos = u64::from(p);
    }
    pos
}

/// The offset of the last time-index entry whose timestamp is below `timestamp`
/// (`base_offset` if none): a record with a timestamp at or after it cannot lie before that
/// offset. Entries are 12 bytes: timestamp (i64 BE), offset relative to `base_offset` (u32 BE).
pub fn time_index_offset_before(index: &[u8], base_offset: i64, timestamp: i64) -> i64 {
    let mut found = base_offset;
    for e in index.chunks_exact(12) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&e[..8]);
        let ts = i64::from_be_bytes(ts);
        let rel = i64::from(u32::from_be_bytes([e[8], e[9], e[10], e[11]]));
        // A zeroed (preallocated) tail entry after the first goes backwards: stop there.
        if ts >= timestamp || base_offset + rel < found {
            break;
        }
        found = base_offset + rel;
    }
    found
}

/// One entry of a remote `.txnindex` object (Kafka's `AbortedTxn`, 34 bytes big-endian:
/// version i16, producer id, first offset, last offset, last stable offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// The transaction's first offset.
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    /// The last stable offset right after the marker.
    pub last_stable_offset: i64,
}

/// Parses a `.txnindex` object; a torn final entry is ignored.
pub fn parse_txn_index(bytes: &[u8]) -> Vec<RemoteAbortedTxn> {
    let long = |e: &[u8], at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&e[at..at + 8]);
        i64::from_be_bytes(b)
    };
    bytes
        .chunks_exact(34)
        .map(|e| RemoteAbortedTxn {
            producer_id: long(e, 2),
            first_offset: long(e, 10),
            last_offset: long(e, 18),
            last_stable_offset: long(e, 26),
        })
        .collect()
}

/// The end (exclusive) of the last whole batch in `records`: the offset a fetch returning
/// them reaches. `None` for no whole batch.
pub fn records_end_offset(records: &[u8]) -> Option<i64> {
    let mut pos = 0;
    let mut end = None;
    while pos + LAST_OFFSET_DELTA_AT + 4 <= records.len() {
        let base = i64::from_be_bytes(read_arr(records, pos).ok()?);
        let len = i32::from_be_bytes(read_arr(records, pos + 8).ok()?);
        let delta = i32::from_be_bytes(read_arr(records, pos + LAST_OFFSET_DELTA_AT).ok()?);
        if len < 0 || pos + LOG_OVERHEAD + len as usize > records.len() {
            break;
        }
        end = Some(base + i64::from(delta) + 1);
        pos += LOG_OVERHEAD + len as usize;
    }
    end
}

/// The built-in remote storage manager over an [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct RemoteStorageManager {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    cache: Arc<IndexCache>,
}

/// How many bytes past the wanted ones a remote read takes, to cover the batches between the
/// index entry and the target (about `index.interval.bytes`) without a second round trip.
const READ_SLACK: u64 = 64 * 1024;

impl RemoteStorageManager {
    /// A manager storing under `root` in `store`, caching up to `index_cache_bytes` of indexes.
    pub fn new(store: Arc<dyn ObjectStore>, root: ObjectPath, index_cache_bytes: u64) -> Self {
        RemoteStorageManager {
            store,
            root,
            cache: Arc::new(IndexCache::new(index_cache_bytes)),
        }
    }

    /// The index cache (for metrics and tests).
    pub fn index_cache(&self) -> &IndexCache {
        &self.cache
    }

    async fn put_file(
        &self,
        path: &std::path::Path,
        to: &ObjectPath,
    ) -> Result<u64, RemoteStorageError> {
        let io = |source| RemoteStorageError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = tokio::fs::metadata(path).await.map_err(io)?.len();
        if len <= MULTIPART_THRESHOLD {
            let bytes = tokio::fs::read(path).await.map_err(io)?;
            self.store.put(to, PutPayload::from(bytes)).await?;
            return Ok(len);
        }
        use tokio::io::AsyncReadExt;
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let upload = self.store.put_multipart(to).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; PART_BYTES];
        let mut left = len;
        while left > 0 {
            let n = match file.read(&mut buf).await {
                Ok(0) => {
                    let _ = w.abort().await;
                    return Err(RemoteStorageError::Corrupt(format!(
                        "{} shrank during upload",
                        path.display()
                    )));
                }
                Ok(n) => n.min(usize::try_from(left).unwrap_or(usize::MAX)),
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(io(e));
                }
            };
            if let Err(e) = w.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = w.abort().await;
                return Err(e.into());
            }
            w.write(&buf[..n]);
            left -= n as u64;
        }
        w.finish().await?;
        Ok(len)
    }

    /// Uploads a rolled segment and its companions (Kafka's `copyLogSegmentData`). The
    /// metadata's state must already be COPY_STARTED in the persisted manifest, so that a crash
    /// here leaves objects the next leader knows to delete. Returns the bytes uploaded.
    pub async fn copy_log_segment_data(
        &self,
        m: &RemoteLogSegmentMetadata,
        files: &SegmentFiles,
    ) -> Result<u64, RemoteStorageError> {
        let mut total = 0;
        for kind in ObjectKind::ALL {
            let to = object_path(&self.root, m, kind);
            let file = match kind {
                ObjectKind::Segment => Some(&files.log),
                ObjectKind::OffsetIndex => Some(&files.offset_index),
                ObjectKind::TimeIndex => Some(&files.time_index),
                ObjectKind::ProducerSnapshot => files.producer_snapshot.as_ref(),
                ObjectKind::TransactionIndex => files.txn_index.as_ref(),
                ObjectKind::LeaderEpoch => {
                    let text = leader_epoch_checkpoint_text(m);
                    total += text.len() as u64;
                    self.store
                        .put(&to, PutPayload::from(text.into_bytes()))
                        .await?;
                    continue;
                }
            };
            if let Some(f) = file {
                total += self.put_file(f, &to).await?;
            }
        }
        Ok(total)
    }

    /// One whole companion object (indexes go through the cache).
    pub async fn fetch_object(
        &self,
        m: &RemoteLogSegmentMetadata,
        kind: ObjectKind,
    ) -> Result<Bytes, RemoteStorageError> {
        let cacheable = matches!(
            kind,
            ObjectKind::OffsetIndex | ObjectKind::TimeIndex | ObjectKind::TransactionIndex
        );
        if cacheable {
            if let Some(b) = self.cache.get(m.id.segment_id, kind) {
                return Ok(b);
            }
        }
        let bytes = self
            .store
            .get(&object_path(&self.root, m, kind))
            .await?
            .bytes()
            .await?;
        if cacheable {
            self.cache.insert(m.id.segment_id, kind, bytes.clone());
        }
        Ok(bytes)
    }

    /// Bytes `[start, end)` of the segment's `.log` object (Kafka's `fetchLogSegment`).
    pub async fn fetch_log_segment(
        &self,
        m: &RemoteLogSegmentMetadata,
        start: u64,
        end: u64,
    ) -> Result<Bytes, RemoteStorageError> {
        let end = end.min(m.segment_size_bytes);
        if start >= end {
            return Ok(Bytes::new());
        }
        Ok(self
            .store
            .get_range(&object_path(&self.root, m, ObjectKind::Segment), start..end)
            .await?)
    }

    /// Whole record batches from the remote segment for a fetch at `offset` of at most
    /// `max_bytes` (at least one whole batch, KIP-74). Empty when the segment holds nothing
    /// at or after `offset`.
    pub async fn read(
        &self,
        m: &RemoteLogSegmentMetadata,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, RemoteStorageError> {
        let index = self.fetch_object(m, ObjectKind::OffsetIndex).await?;
        let mut pos = index_position(&index, m.start_offset, offset.max(m.start_offset));
        let want = max_bytes.max(1) as u64;
        while pos < m.segment_size_bytes {
            let chunk = self
                .fetch_log_segment(m, pos, pos + want + READ_SLACK)
                .await?;
            match scan_batches(&chunk, offset, max_bytes.max(1))
                .map_err(RemoteStorageError::Corrupt)?
            {
                BatchScan::Found { start, end } => return Ok(chunk.slice(start..end)),
                BatchScan::FirstBatchIncomplete { start, len } => {
                    let from = pos + start as u64;
                    let b = self.fetch_log_segment(m, from, from + len as u64).await?;
                    if b.len() != len {
                        return Err(RemoteStorageError::Corrupt(format!(
                            "batch at {from} of segment {} is truncated",
                            m.id.segment_id
                        )));
                    }
                    return Ok(b);
                }
                BatchScan::NeedMore { consumed } => {
                    if consumed == 0 {
                        return Err(RemoteStorageError::Corrupt(format!(
                            "no whole batch at {pos} of segment {}",
                            m.id.segment_id
                        )));
                    }
                    pos += consumed as u64;
                }
            }
        }
        Ok(Bytes::new())
    }

    /// Deletes every object of a segment (Kafka's `deleteLogSegmentData`); objects already
    /// gone are fine, so a retried or repeated deletion succeeds.
    pub async fn delete_log_segment_data(
        &self,
        m: &RemoteLogSegmentMetadata,
    ) -> Result<(), RemoteStorageError> {
        for kind in ObjectKind::ALL {
            match self.store.delete(&object_path(&self.root, m, kind)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.cache.remove_segment(m.id.segment_id);
        Ok(())
    }

    /// Deletes everything of a partition, manifest included (topic deletion). Returns the
    /// number of objects deleted.
    pub async fn delete_partition(
        &self,
        tp: &TopicIdPartition,
    ) -> Result<usize, RemoteStorageError> {
        let prefix = partition_prefix(&self.root, tp);
        let mut listed = self.store.list(Some(&prefix));
        let mut paths = Vec::new();
        while let Some(meta) = listed.next().await {
            paths.push(meta?.location);
        }
        for p in &paths {
            match self.store.delete(p).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(paths.len())
    }

    /// Object keys under a partition (operators' `tiered status`, tests).
    pub async fn list_partition(
        &self,
        tp: &TopicIdPartition,
    ) -> Result<Vec<String>, RemoteStorageError> {
        let prefix = partition_prefix(&self.root, tp);
        let mut listed = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listed.next().await {
            out.push(meta?.location.to_string());
        }
        out.sort();
        Ok(out)
    }

    fn manifest_path(&self, tp: &TopicIdPartition) -> ObjectPath {
        partition_prefix(&self.root, tp).child("remote_log_metadata")
    }

    /// Loads a partition's remote log state; `None` if it never had one.
    pub async fn load_state(
        &self,
        tp: &TopicIdPartition,
    ) -> Result<Option<RemoteLogState>, RemoteStorageError> {
        match self.store.get(&self.manifest_path(tp)).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                let state = RemoteLogState::decode(&bytes)?;
                if state.partition() != tp {
                    return Err(RemoteStorageError::Corrupt(format!(
                        "manifest of {:?} found under {:?}",
                        state.partition(),
                        tp
                    )));
                }
                Ok(Some(state))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Persists a partition's remote log state (one PUT replaces the manifest atomically).
    pub async fn save_state(&self, state: &RemoteLogState) -> Result<(), RemoteStorageError> {
        let bytes = state.encode()?;
        self.store
            .put(
                &self.manifest_path(state.partition()),
                PutPayload::from(bytes),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake batch of `total` bytes holding offsets `base..=base+delta` (only the fields
    /// the scan reads are set).
    fn batch(base: i64, delta: i32, total: usize) -> Vec<u8> {
        let mut b = vec![0u8; total];
        b[..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&((total - 12) as i32).to_be_bytes());
        b[23..27].copy_from_slice(&delta.to_be_bytes());
        b
    }

    #[test]
    fn scan_finds_the_batch_holding_the_target() {
        let mut buf = batch(0, 9, 100);
        buf.extend(batch(10, 9, 100));
        buf.extend(batch(20, 9, 100));
        // Target inside the second batch: from it, within the byte limit.
        assert_eq!(
            scan_batches(&buf, 15, 150),
            Ok(BatchScan::Found {
                start: 100,
                end: 200
            })
        );
        assert_eq!(
            scan_batches(&buf, 15, 1000),
            Ok(BatchScan::Found {
                start: 100,
                end: 300
            })
        );
        // KIP-74: one whole batch even over the limit.
        assert_eq!(
            scan_batches(&buf, 0, 10),
            Ok(BatchScan::Found { start: 0, end: 100 })
        );
        // Past everything: read on.
        assert_eq!(
            scan_batches(&buf, 30, 1000),
            Ok(BatchScan::NeedMore { consumed: 300 })
        );
        // The wanted batch cut off by the read.
        assert_eq!(
            scan_batches(&buf[..250], 25, 1000),
            Ok(BatchScan::FirstBatchIncomplete {
                start: 200,
                len: 100
            })
        );
        assert_eq!(records_end_offset(&buf), Some(30));
        assert_eq!(records_end_offset(&buf[..150]), Some(10));
        assert_eq!(records_end_offset(&[]), None);
        let mut bad = batch(0, 0, 30);
        bad[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(scan_batches(&bad, 0, 100).is_err());
    }

    #[test]
    fn index_lookup_and_txn_index_parsing() {
        let mut idx = Vec::new();
        for (rel, pos) in [(5u32, 400u32), (10, 800), (20, 1600)] {
            idx.extend(rel.to_be_bytes());
            idx.extend(pos.to_be_bytes());
        }
        assert_eq!(index_position(&idx, 100, 99), 0);
        assert_eq!(index_position(&idx, 100, 112), 800);
        assert_eq!(index_position(&idx, 100, 500), 1600);
        let mut txn = Vec::new();
        for v in [
            0i16.to_be_bytes().to_vec(),
            7i64.to_be_bytes().to_vec(),
            3i64.to_be_bytes().to_vec(),
            9i64.to_be_bytes().to_vec(),
            10i64.to_be_bytes().to_vec(),
        ] {
            txn.extend(v);
        }
        txn.extend([1, 2, 3]); // torn tail
        assert_eq!(
            parse_txn_index(&txn),
            vec![RemoteAbortedTxn {
                producer_id: 7,
                first_offset: 3,
                last_offset: 9,
                last_stable_offset: 10
            }]
        );
    }

    #[test]
    fn index_cache_is_bounded_and_lru() {
        let c = IndexCache::new(10);
        let (a, b, d) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
        c.insert(a, ObjectKind::OffsetIndex, Bytes::from_static(b"aaaa"));
        c.insert(b, ObjectKind::OffsetIndex, Bytes::from_static(b"bbbb"));
        assert!(
            c.get(a, ObjectKind::OffsetIndex).is_some(),
            "a is now the most recent"
        );
        c.insert(d, ObjectKind::OffsetIndex, Bytes::from_static(b"dddd"));
        assert!(
            c.get(b, ObjectKind::OffsetIndex).is_none(),
            "the least recent went"
        );
        assert_eq!(c.used_bytes(), 8);
        c.insert(d, ObjectKind::TimeIndex, Bytes::from(vec![0; 11]));
        assert!(
            c.get(d, ObjectKind::TimeIndex).is_none(),
            "larger than the cache"
        );
        c.remove_segment(a);
        assert_eq!(c.used_bytes(), 4);
    }

    #[test]
    fn time_index_lookup_stops_before_the_timestamp() {
        let mut idx = Vec::new();
        for (ts, rel) in [(100i64, 0u32), (200, 10), (300, 25)] {
            idx.extend_from_slice(&ts.to_be_bytes());
            idx.extend_from_slice(&rel.to_be_bytes());
        }
        idx.extend_from_slice(&[0u8; 12]);
        assert_eq!(time_index_offset_before(&idx, 1000, 50), 1000);
        assert_eq!(time_index_offset_before(&idx, 1000, 100), 1000);
        assert_eq!(time_index_offset_before(&idx, 1000, 201), 1010);
        assert_eq!(
            time_index_offset_before(&idx, 1000, 999),
            1025,
            "zeroed tail ignored"
        );
        assert_eq!(time_index_offset_before(&[], 7, 5), 7);
    }
}
