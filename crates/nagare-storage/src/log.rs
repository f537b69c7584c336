//! One partition replica's log (Kafka's `UnifiedLog` + `LocalLog`).
//!
//! Locking: one mutex (`inner`) serializes appends and every structural change (roll,
//! truncation, retention). Reads take it only to pick a segment and capture its file and size,
//! then read without it. `flush` captures what to fsync under the mutex and fsyncs without it,
//! so appends continue while data is being made durable (group commit); a second mutex
//! serializes flushes with each other. Offsets that callers poll often are mirrored in atomics.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use nagare_protocol::record_batch::{
    self, batches, validate_crc, BatchError, RecordBatchHeader,
    TimestampType as BatchTimestampType, HEADER_SIZE,
};
use parking_lot::{Mutex, MutexGuard, RwLock};

mod compaction;

pub(crate) use compaction::{CleaningView, SegmentView, CLEANED_SUFFIX};

use crate::checkpoint::fsync_dir;
use crate::config::{LogConfig, TimestampType, TopicPartition};
use crate::epoch_cache::{EpochEntry, LeaderEpochCache};
use crate::error::StorageError;
use crate::producer_state::{Prepared, ProducerStateEntry, ProducerStateManager};
use crate::scan::{find_batch, ChunkReader, HEADER_CHUNK};
use crate::segment::{
    parse_file_name, Segment, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
};

/// Who is appending, which decides the validation applied (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppendOrigin {
    /// A producer through the Produce API: full validation, sequence checks, offsets assigned.
    Client,
    /// The broker itself as leader (transaction markers, coordinator records): offsets are
    /// assigned and control batches are allowed; sequences are not checked.
    Coordinator,
    /// A follower copying the leader: offsets are kept, producer state is applied unchecked.
    Replication,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended (-1 when nothing was appended).
    pub first_offset: i64,
    /// Offset of the last record appended (-1 when nothing was appended).
    pub last_offset: i64,
    /// Largest timestamp appended (the append time for LogAppendTime topics).
    pub max_timestamp: i64,
    /// The broker time stamped on the batches, or -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Records appended (sum of the batches' record counts).
    pub record_count: u64,
    /// True when the batch was an idempotent-producer retry of a batch already in the log:
    /// nothing was written and the offsets are the original ones.
    pub duplicate: bool,
}

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Whole batches from one segment, or `None` when there is nothing to return.
    pub slice: Option<FileSlice>,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
    /// The log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// A region of a segment file, for `sendfile` by the broker.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file (kept open even if the segment is deleted meanwhile).
    pub file: Arc<File>,
    /// Start of the region in the file.
    pub position: u64,
    /// Length of the region.
    pub len: usize,
}

impl FileSlice {
    /// Reads the region into memory (the fallback when `sendfile` cannot be used, e.g. TLS).
    pub fn read_to_bytes(&self) -> io::Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

/// A record found by timestamp (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
    /// Partition leader epoch of the record's batch, or -1.
    pub leader_epoch: i32,
}

/// A batch of an append: its header (offsets as assigned) and its bytes in the buffer.
struct PendingBatch {
    header: RecordBatchHeader,
    range: std::ops::Range<usize>,
}

struct Inner {
    /// Segments that are no longer appended to, by base offset.
    rolled: BTreeMap<i64, Segment>,
    /// The segment appended to.
    active: Segment,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Everything below is fsynced.
    recovery_point: i64,
    producers: ProducerStateManager,
    epochs: LeaderEpochCache,
    /// Bumped by every truncation, so that a flush that raced with one does not move the
    /// recovery point over data that was rewritten after its fsync.
    truncations: u64,
    /// The lowest log end a truncation left since the cleaner last looked: its checkpoint
    /// must not stay above rewritten offsets (Kafka's `maybeTruncateCheckpoint`).
    truncated_to: Option<i64>,
    /// Files were created, renamed or deleted since the last flush: fsync the directory.
    dir_dirty: bool,
    /// Index and snapshot files written since the last flush, to fsync at the next one.
    unsynced_files: Vec<PathBuf>,
    /// Files renamed to `*.deleted`, to remove once `file.delete.delay.ms` has passed.
    pending_deletes: Vec<(i64, Vec<PathBuf>)>,
    /// The latest clock reading seen, for scheduling deletions from calls without a clock.
    last_now_ms: i64,
    closed: bool,
}

impl Inner {
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.rolled.values().chain(std::iter::once(&self.active))
    }

    /// The segment holding the first batch with an offset >= `offset` (the floor segment, or a
    /// later one when `offset` falls in a gap after the floor segment's last batch).
    fn segment_for_read(&self, offset: i64) -> Option<&Segment> {
        let lo = self
            .rolled
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        // Compaction can leave empty rolled segments (next offset = base): skip them.
        self.rolled
            .range(lo..)
            .map(|(_, s)| s)
            .filter(|s| s.size > 0)
            .chain(std::iter::once(&self.active))
            .find(|s| s.next_offset > offset)
    }

    fn size_bytes(&self) -> u64 {
        self.segments().map(|s| s.size).sum()
    }
}

/// One partition replica's log. `Send + Sync`; share it with `Arc`.
pub struct Log {
    dir: PathBuf,
    tp: TopicPartition,
    config: RwLock<LogConfig>,
    inner: Mutex<Inner>,
    flush_lock: Mutex<()>,
    log_start_offset: AtomicI64,
    log_end_offset: AtomicI64,
    recovery_point: AtomicI64,
    poisoned: AtomicBool,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("log_start_offset", &self.log_start_offset())
            .field("log_end_offset", &self.log_end_offset())
            .field("recovery_point", &self.recovery_point())
            .finish()
    }
}

fn batch_error(tp: &TopicPartition, e: BatchError) -> StorageError {
    match e {
        BatchError::InvalidMagic(_) => StorageError::InvalidRecord(format!("{tp}: {e}")),
        _ => StorageError::CorruptRecord(format!("{tp}: {e}")),
    }
}

fn corrupt_io(path: &Path, e: BatchError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
}

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Walks the batch headers of `seg` from `start_pos` to its end.
fn walk_headers(
    seg: &Segment,
    start_pos: u64,
    f: &mut dyn FnMut(&RecordBatchHeader),
) -> io::Result<()> {
    let mut reader = ChunkReader::headers(&seg.file, seg.size);
    let mut pos = start_pos;
    while let Some(h) = reader
        .header_at(pos)?
        .map_err(|e| corrupt_io(&seg.log_path, e))?
    {
        f(&h);
        pos += h.total_size() as u64;
    }
    Ok(())
}

/// Replays the batches at or after `from` into the producer state.
fn replay_producers<'a>(
    segments: impl Iterator<Item = &'a Segment>,
    producers: &mut ProducerStateManager,
    from: i64,
) -> io::Result<()> {
    for seg in segments {
        if seg.next_offset <= from {
            continue;
        }
        let start = if seg.base_offset < from {
            seg.offset_index.lookup(from).1
        } else {
            0
        };
        walk_headers(seg, start, &mut |h| {
            if h.base_offset >= from {
                producers.replay(h);
            }
        })?;
    }
    Ok(())
}

/// A name for a directory being deleted, unique enough without a UUID crate.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = nanos ^ (u128::from(std::process::id()) << 64) ^ (u128::from(n) << 96);
    format!("{mixed:032x}")
}

/// The first record of a batch (given its bytes) at or after `min_offset` whose timestamp
/// satisfies `pred`, decoding (and decompressing) the records. Not a hot path.
fn find_record(
    tp: &TopicPartition,
    bytes: &[u8],
    h: &RecordBatchHeader,
    min_offset: i64,
    pred: &dyn Fn(i64) -> bool,
) -> Result<Option<TimestampOffset>, StorageError> {
    if h.timestamp_type() == BatchTimestampType::LogAppendTime {
        // Every record of a LogAppendTime batch has the batch's max timestamp.
        let offset = h.base_offset.max(min_offset);
        if offset <= h.last_offset() && pred(h.max_timestamp) {
            return Ok(Some(TimestampOffset {
                timestamp: h.max_timestamp,
                offset,
                leader_epoch: h.partition_leader_epoch,
            }));
        }
        return Ok(None);
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|e| {
        StorageError::CorruptRecord(format!(
            "{tp}: cannot decode batch at offset {}: {e}",
            h.base_offset
        ))
    })?;
    Ok(set
        .records
        .iter()
        .find(|r| r.offset >= min_offset && pred(r.timestamp))
        .map(|r| TimestampOffset {
            timestamp: r.timestamp,
            offset: r.offset,
            leader_epoch: h.partition_leader_epoch,
        }))
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, with no log-start-offset checkpoint.
    /// See [`Log::open_with_log_start_offset`].
    pub fn open(
        dir: PathBuf,
        tp: TopicPartition,
        config: LogConfig,
        recovery_point: i64,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        Log::open_with_log_start_offset(
            dir,
            tp,
            config,
            recovery_point,
            0,
            had_clean_shutdown,
            now_ms,
        )
    }

    /// Opens (creating if needed) the log in `dir` (Kafka's `LogLoader`).
    ///
    /// After a clean shutdown the files are trusted, except that every index is
    /// sanity-checked and rebuilt if it fails. Otherwise every segment from the one containing
    /// `recovery_point` on is scanned: batch headers walked, CRCs verified from the recovery
    /// point on (everything below it was fsynced), indexes rebuilt, and the log truncated at
    /// the first torn or corrupt batch (later segments are deleted).
    /// A torn tail never makes this fail. The log start offset is the larger of
    /// `log_start_offset` (from the checkpoint) and the first segment's base offset.
    pub fn open_with_log_start_offset(
        dir: PathBuf,
        tp: TopicPartition,
        config: LogConfig,
        recovery_point: i64,
        log_start_offset: i64,
        had_clean_shutdown: bool,
        now_ms: i64,
    ) -> Result<Log, StorageError> {
        fs::create_dir_all(&dir)?;
        let mut listing: Vec<(String, PathBuf)> = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if let Ok(name) = entry.file_name().into_string() {
                listing.push((name, entry.path()));
            }
        }
        if listing.iter().any(|(n, _)| n.ends_with(".log.swap")) {
            // Before anything else: a cleaned segment that was being swapped in replaces the
            // segments it was cleaned from.
            compaction::complete_swaps(&dir)?;
            listing.clear();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                if let Ok(name) = entry.file_name().into_string() {
                    listing.push((name, entry.path()));
                }
            }
        }
        let mut bases = std::collections::BTreeSet::new();
        let mut index_files = Vec::new();
        for (name, path) in listing {
            let name = name.as_str();
            // Leftovers of deletes, compactions and atomic writes interrupted by a crash.
            if name.ends_with(DELETED_SUFFIX)
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
                || name.ends_with(".tmp")
            {
                if let Err(e) = remove_file_if_exists(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover file");
                }
                continue;
            }
            if let Some((base, suffix)) = parse_file_name(name) {
                match suffix {
                    LOG_SUFFIX => {
                        bases.insert(base);
                    }
                    INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX => {
                        index_files.push((base, path))
                    }
                    _ => {}
                }
            }
        }
        for (base, path) in index_files {
            if !bases.contains(&base) {
                tracing::info!(path = %path.display(), "removing index without a segment");
                remove_file_if_exists(&path)?;
            }
        }

        let (mut epochs, rebuild_epochs) = match LeaderEpochCache::load(&dir)? {
            Ok(c) => (c, false),
            Err(reason) => {
                tracing::warn!(%tp, %reason, "corrupt leader-epoch-checkpoint; rebuilding it from the batches");
                (LeaderEpochCache::empty(&dir), true)
            }
        };

        let epochs_before = epochs.entries().to_vec();
        let mut segs = Vec::with_capacity(bases.len());
        for &base in &bases {
            segs.push(Segment::open(&dir, base)?);
        }
        // Without a clean shutdown, everything from the segment holding the recovery point on
        // may hold unflushed (torn) data.
        let recover_from = if had_clean_shutdown {
            usize::MAX
        } else {
            segs.iter()
                .rposition(|s| s.base_offset <= recovery_point)
                .unwrap_or(0)
        };
        let mut dirty_segments = Vec::new();
        let mut dir_dirty = false;
        let mut i = 0;
        while i < segs.len() {
            let unflushed = i >= recover_from;
            let mut recover = unflushed;
            if !recover {
                if let Some(reason) = segs[i].load()? {
                    tracing::warn!(%tp, segment = segs[i].base_offset, %reason, "rebuilding index");
                    recover = true;
                }
            }
            if recover {
                // A flushed segment whose index failed its check is verified whole.
                let trusted_below = if unflushed { recovery_point } else { i64::MIN };
                let truncated =
                    segs[i].recover(config.index_interval_bytes, trusted_below, &mut |h| {
                        if epochs
                            .latest_epoch()
                            .is_none_or(|l| l < h.partition_leader_epoch)
                        {
                            epochs.assign(h.partition_leader_epoch, h.base_offset);
                        }
                    })?;
                dirty_segments.push(i);
                if truncated > 0 {
                    tracing::warn!(%tp, segment = segs[i].base_offset, truncated, "truncated torn or corrupt tail");
                    // Make the truncation durable before anything is appended over it: a
                    // lost truncation could otherwise bring the discarded tail back behind
                    // new batches after another crash.
                    segs[i].file.sync_all()?;
                    dir_dirty = true;
                    if unflushed {
                        // Kafka deletes every segment after a corrupt unflushed one.
                        for mut later in segs.drain(i + 1..) {
                            tracing::warn!(%tp, segment = later.base_offset, "deleting segment after corrupt data");
                            for p in later.rename_for_delete()? {
                                remove_file_if_exists(&p)?;
                            }
                        }
                    }
                }
            }
            i += 1;
        }

        let first_base = segs.first().map(|s| s.base_offset);
        let mut log_start = log_start_offset.max(first_base.unwrap_or(0)).max(0);
        let end = segs.last().map(|s| s.next_offset);
        if end.is_none_or(|e| e < log_start) {
            // No data, or the checkpointed start is past what survived: start empty there.
            for mut s in segs.drain(..) {
                for p in s.rename_for_delete()? {
                    remove_file_if_exists(&p)?;
                }
            }
            segs.push(Segment::create(&dir, log_start)?);
            dir_dirty = true;
        }
        if let Some(first) = segs.first() {
            log_start = log_start.max(first.base_offset);
        }
        let mut unsynced_files = Vec::new();
        let n_segs = segs.len();
        for &i in &dirty_segments {
            if let Some(s) = segs.get_mut(i) {
                if i + 1 < n_segs {
                    s.finalize_time_index();
                }
                unsynced_files.extend(s.write_indexes()?);
            }
        }
        let Some(mut active) = segs.pop() else {
            return Err(StorageError::CorruptFile {
                path: dir,
                reason: "no segment after loading".into(),
            });
        };
        if active.size > 0 {
            active.roll_base_ms = Some(
                active
                    .first_batch_timestamp()?
                    .unwrap_or(now_ms)
                    .min(now_ms),
            );
        }
        let rolled: BTreeMap<i64, Segment> = segs.into_iter().map(|s| (s.base_offset, s)).collect();
        let log_end = active.next_offset;
        let recovery_point = if had_clean_shutdown {
            log_end
        } else {
            recovery_point.clamp(0, log_end)
        };

        let mut epochs_changed = rebuild_epochs;
        if rebuild_epochs {
            epochs.clear();
            for seg in rolled.values().chain(std::iter::once(&active)) {
                walk_headers(seg, 0, &mut |h| {
                    if epochs
                        .latest_epoch()
                        .is_none_or(|l| l < h.partition_leader_epoch)
                    {
                        epochs.assign(h.partition_leader_epoch, h.base_offset);
                    }
                })?;
            }
        }
        epochs_changed |= epochs.truncate_from_end(log_end);
        epochs_changed |= epochs.truncate_from_start(log_start);
        if epochs_changed || epochs.entries() != epochs_before.as_slice() {
            epochs.write()?;
        }
        if dir_dirty {
            fsync_dir(&dir)?;
            dir_dirty = false;
        }

        let (mut producers, from) = ProducerStateManager::load(&dir, tp.to_string(), log_end)?;
        replay_producers(
            rolled.values().chain(std::iter::once(&active)),
            &mut producers,
            from.unwrap_or(i64::MIN),
        )?;

        let inner = Inner {
            rolled,
            active,
            log_start_offset: log_start,
            log_end_offset: log_end,
            recovery_point,
            producers,
            epochs,
            truncations: 0,
            truncated_to: None,
            dir_dirty,
            unsynced_files,
            pending_deletes: Vec::new(),
            last_now_ms: now_ms,
            closed: false,
        };
        tracing::debug!(%tp, log_start, log_end, recovery_point, segments = inner.rolled.len() + 1, "log loaded");
        Ok(Log {
            dir,
            tp,
            config: RwLock::new(config),
            inner: Mutex::new(inner),
            flush_lock: Mutex::new(()),
            log_start_offset: AtomicI64::new(log_start),
            log_end_offset: AtomicI64::new(log_end),
            recovery_point: AtomicI64::new(recovery_point),
            poisoned: AtomicBool::new(false),
        })
    }

    fn publish(&self, inner: &Inner) {
        self.log_start_offset
            .store(inner.log_start_offset, Ordering::Release);
        self.log_end_offset
            .store(inner.log_end_offset, Ordering::Release);
        self.recovery_point
            .store(inner.recovery_point, Ordering::Release);
    }

    /// Marks the log failed after an I/O error on a write path and returns the error.
    fn poison(&self, e: io::Error) -> StorageError {
        self.poisoned.store(true, Ordering::Release);
        tracing::error!(tp = %self.tp, error = %e, "write or fsync failed; log is now offline");
        StorageError::Io(e)
    }

    /// Locks the state for a mutation, failing if the log is poisoned or closed.
    fn lock_writable(&self) -> Result<MutexGuard<'_, Inner>, StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::LogDirFailed);
        }
        let inner = self.inner.lock();
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::LogDirFailed);
        }
        if inner.closed {
            return Err(StorageError::Closed);
        }
        Ok(inner)
    }

    /// Leader append from a producer; see [`Log::append_as_leader_with_origin`].
    pub fn append_as_leader(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append(records, AppendOrigin::Client, leader_epoch, now_ms)
    }

    /// Leader append. Validates every batch (size <= `max.message.bytes`, length, magic 2,
    /// CRC, record count; for clients also no control batches and sane timestamps), checks
    /// idempotent-producer sequences, assigns offsets by patching base offsets in place (the
    /// records are never decoded or re-encoded), stamps the partition leader epoch, applies
    /// LogAppendTime if configured, and writes everything with one write call. A retried
    /// idempotent batch is answered with its original offsets and `duplicate: true`.
    ///
    /// `origin` must be [`AppendOrigin::Client`] or [`AppendOrigin::Coordinator`].
    pub fn append_as_leader_with_origin(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, StorageError> {
        if origin == AppendOrigin::Replication {
            return Err(StorageError::InvalidRecord(
                "replication appends go through append_as_follower".into(),
            ));
        }
        self.append(records, origin, leader_epoch, now_ms)
    }

    /// Follower append: the batches carry offsets assigned by the leader. The first must start
    /// at or after the log end offset (a gap is possible after compaction) and offsets must
    /// increase. CRCs are verified; `max.message.bytes` is not applied (as in Kafka).
    pub fn append_as_follower(
        &self,
        records: BytesMut,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append(records, AppendOrigin::Replication, -1, now_ms)
    }

    fn validate_batch(
        &self,
        config: &LogConfig,
        origin: AppendOrigin,
        h: &RecordBatchHeader,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tp = &self.tp;
        let size = h.total_size();
        if origin != AppendOrigin::Replication && size > config.max_message_bytes as usize {
            return Err(StorageError::RecordTooLarge {
                size,
                max: config.max_message_bytes,
            });
        }
        validate_crc(bytes).map_err(|e| batch_error(tp, e))?;
        h.compression().map_err(|e| batch_error(tp, e))?;
        if h.last_offset_delta < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "{tp}: negative last offset delta {}",
                h.last_offset_delta
            )));
        }
        if origin == AppendOrigin::Client {
            // Kafka's LogValidator.validateBatch.
            if h.records_count <= 0
                || i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count)
            {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: inconsistent batch offset range ({}) and record count ({})",
                    i64::from(h.last_offset_delta) + 1,
                    h.records_count
                )));
            }
            if h.is_control() {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: clients are not allowed to write control records"
                )));
            }
            if h.has_producer_id() && h.base_sequence < 0 {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: invalid sequence number {} in record batch with producerId {}",
                    h.base_sequence, h.producer_id
                )));
            }
            if h.is_transactional() && !h.has_producer_id() {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: transactional batch without a producer id"
                )));
            }
            if config.cleanup_policy_compact {
                // Kafka's LogValidator: a compacted topic needs a key on every record (this
                // decodes, and decompresses, the records: only for compacted topics).
                crate::records::check_keys(h, bytes).map_err(|e| {
                    StorageError::InvalidRecord(format!("{e} in topic partition {tp}."))
                })?;
            }
        }
        if origin != AppendOrigin::Replication
            && config.message_timestamp_type == TimestampType::CreateTime
        {
            // Kafka checks every record; without decoding we check the batch's max (the
            // latest record) and base (the first record) timestamps.
            if h.max_timestamp != record_batch::NO_TIMESTAMP
                && h.max_timestamp.saturating_sub(now_ms) > config.message_timestamp_after_max_ms
            {
                return Err(StorageError::InvalidTimestamp(format!(
                    "{tp}: timestamp {} is more than message.timestamp.after.max.ms {} after the broker time {now_ms}",
                    h.max_timestamp, config.message_timestamp_after_max_ms
                )));
            }
            if h.base_timestamp != record_batch::NO_TIMESTAMP
                && now_ms.saturating_sub(h.base_timestamp) > config.message_timestamp_before_max_ms
            {
                return Err(StorageError::InvalidTimestamp(format!(
                    "{tp}: timestamp {} is more than message.timestamp.before.max.ms {} before the broker time {now_ms}",
                    h.base_timestamp, config.message_timestamp_before_max_ms
                )));
            }
        }
        Ok(())
    }

    fn append(
        &self,
        mut records: BytesMut,
        origin: AppendOrigin,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::LogDirFailed);
        }
        let config = self.config();
        let leader = origin != AppendOrigin::Replication;
        let log_append_time =
            leader && config.message_timestamp_type == TimestampType::LogAppendTime;

        // Validation and the patches that do not depend on offsets run before taking the
        // lock: CRC work should not stall other appenders and readers.
        let mut pending = Vec::new();
        for item in batches(&records) {
            let (header, range) = item.map_err(|e| batch_error(&self.tp, e))?;
            self.validate_batch(&config, origin, &header, &records[range.clone()], now_ms)?;
            pending.push(PendingBatch { header, range });
        }
        if pending.is_empty() {
            return Ok(AppendInfo {
                first_offset: -1,
                last_offset: -1,
                max_timestamp: -1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset(),
                record_count: 0,
                duplicate: false,
            });
        }
        if records.len() as u64 > config.effective_segment_bytes() {
            return Err(StorageError::RecordListTooLarge {
                size: records.len(),
                max: config.segment_bytes,
            });
        }
        if leader {
            for b in &mut pending {
                let bytes = &mut records[b.range.clone()];
                let patched = record_batch::set_partition_leader_epoch(bytes, leader_epoch)
                    .and_then(|()| {
                        if log_append_time {
                            record_batch::set_log_append_time(bytes, now_ms)
                        } else if b.header.timestamp_type() == BatchTimestampType::LogAppendTime {
                            // The topic keeps producer timestamps: clear a client's flag.
                            record_batch::set_max_timestamp(
                                bytes,
                                BatchTimestampType::CreateTime,
                                b.header.max_timestamp,
                            )
                        } else {
                            Ok(())
                        }
                    });
                patched.map_err(|e| batch_error(&self.tp, e))?;
                b.header = RecordBatchHeader::parse(bytes).map_err(|e| batch_error(&self.tp, e))?;
            }
        }

        let mut inner = self.lock_writable()?;
        let log_end = inner.log_end_offset;
        if leader {
            let mut next = log_end;
            for b in &mut pending {
                b.header.base_offset = next;
                next = b.header.next_offset();
            }
        } else {
            let first = pending[0].header.base_offset;
            if first < log_end {
                return Err(StorageError::UnexpectedAppendOffset {
                    first_offset: first,
                    log_end_offset: log_end,
                });
            }
            let mut next = first;
            for b in &pending {
                if b.header.base_offset < next {
                    return Err(StorageError::InvalidRecord(format!(
                        "{}: batch offsets go backwards at {}",
                        self.tp, b.header.base_offset
                    )));
                }
                next = b.header.next_offset();
            }
        }
        let first_offset = pending[0].header.base_offset;
        let last_offset = pending[pending.len() - 1].header.last_offset();
        if last_offset - first_offset > i64::from(i32::MAX) {
            return Err(StorageError::InvalidRecord(format!(
                "{}: offsets {first_offset}..{last_offset} do not fit one segment",
                self.tp
            )));
        }
        let headers: Vec<RecordBatchHeader> = pending.iter().map(|b| b.header).collect();
        let update = match inner.producers.prepare(&headers, origin)? {
            Prepared::Duplicate(d) => {
                return Ok(AppendInfo {
                    first_offset: d.first_offset,
                    last_offset: d.last_offset,
                    max_timestamp: d.timestamp,
                    log_append_time: if log_append_time { d.timestamp } else { -1 },
                    log_start_offset: inner.log_start_offset,
                    record_count: 0,
                    duplicate: true,
                });
            }
            Prepared::Update(u) => u,
        };

        // Record new leader epochs before the data (Kafka's maybeAssignEpochStartOffset), so
        // the checkpoint never lags the log; a torn tail is trimmed from it on recovery.
        let mut epochs_changed = false;
        for h in &headers {
            let epoch = h.partition_leader_epoch;
            if inner.epochs.latest_epoch().is_none_or(|l| l < epoch) {
                epochs_changed |= inner.epochs.assign(epoch, h.base_offset);
            }
        }
        if epochs_changed {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }

        self.maybe_roll(
            &mut inner,
            &config,
            records.len() as u64,
            first_offset,
            last_offset,
            now_ms,
        )?;

        if leader {
            for b in &pending {
                record_batch::set_base_offset(&mut records[b.range.clone()], b.header.base_offset)
                    .map_err(|e| batch_error(&self.tp, e))?;
            }
        }
        inner
            .active
            .append(&records, &headers, config.index_interval_bytes, now_ms)
            .map_err(|e| self.poison(e))?;
        inner.log_end_offset = last_offset + 1;
        inner.producers.commit(update);
        inner.last_now_ms = inner.last_now_ms.max(now_ms);
        self.publish(&inner);

        let max_timestamp = if log_append_time {
            now_ms
        } else {
            headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1)
        };
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            record_count: headers
                .iter()
                .map(|h| u64::try_from(h.records_count).unwrap_or(0))
                .sum(),
            duplicate: false,
        })
    }

    /// Kafka's `LogSegment.shouldRoll`: roll before an append of `size` bytes when the active
    /// segment would exceed `segment.bytes`, is older than `segment.ms`, has a full index, or
    /// cannot hold the offsets relative to its base.
    fn maybe_roll(
        &self,
        inner: &mut Inner,
        config: &LogConfig,
        size: u64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let a = &inner.active;
        let offsets_fit =
            first_offset >= a.base_offset && last_offset - a.base_offset <= i64::from(i32::MAX);
        let reason = if a.size == 0 {
            (!offsets_fit).then_some("offsets")
        } else if a.size + size > config.effective_segment_bytes() {
            Some("segment.bytes")
        } else if a
            .roll_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > config.max_segment_ms())
        {
            Some("segment.ms")
        } else if a.offset_index.is_full(config.segment_index_bytes)
            || a.time_index.is_full(config.segment_index_bytes)
        {
            Some("index full")
        } else if !offsets_fit {
            Some("offsets")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::debug!(tp = %self.tp, reason, new_base = first_offset, "rolling segment");
            self.roll(inner, first_offset).map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    /// Starts a new active segment at `new_base` (>= the log end offset). The old one gets its
    /// final time index entry and index files written (fsynced by the next flush), and a
    /// producer-state snapshot is taken at the new base, as Kafka does on roll.
    fn roll(&self, inner: &mut Inner, new_base: i64) -> io::Result<()> {
        if inner.active.size == 0 {
            if inner.active.base_offset == new_base {
                return Ok(());
            }
            // Replace the empty active segment rather than keep an empty one behind.
            let new = Segment::create(&self.dir, new_base)?;
            let mut old = std::mem::replace(&mut inner.active, new);
            for p in old.rename_for_delete()? {
                remove_file_if_exists(&p)?;
            }
        } else {
            inner.active.finalize_time_index();
            let written = inner.active.write_indexes()?;
            inner.unsynced_files.extend(written);
            let new = Segment::create(&self.dir, new_base)?;
            let snapshot = inner.producers.take_snapshot(new_base)?;
            inner.unsynced_files.push(snapshot);
            let old = std::mem::replace(&mut inner.active, new);
            inner.rolled.insert(old.base_offset, old);
        }
        inner.dir_dirty = true;
        Ok(())
    }

    /// Reads for a fetch: whole batches from one segment starting with the batch that
    /// contains `offset` (a consumer may ask for an offset inside a batch and skips the
    /// records before it), at most `max_bytes` of them but at least one batch when
    /// `min_one_batch` (KIP-74), and only batches entirely below `max_offset` (exclusive, e.g.
    /// the high watermark). `offset` equal to the log end gives no data; outside
    /// `[log start, log end]` it is [`StorageError::OffsetOutOfRange`].
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: i64,
    ) -> Result<FetchData, StorageError> {
        let (file, path, start_pos, jump, seg_end, log_start, log_end) = {
            let inner = self.inner.lock();
            let (log_start, log_end) = (inner.log_start_offset, inner.log_end_offset);
            if offset < log_start || offset > log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start,
                    log_end,
                });
            }
            let empty = FetchData {
                slice: None,
                log_start_offset: log_start,
                log_end_offset: log_end,
            };
            if offset == log_end || offset >= max_offset {
                return Ok(empty);
            }
            let Some(seg) = inner.segment_for_read(offset) else {
                return Ok(empty);
            };
            let (_, pos) = seg.offset_index.lookup(offset);
            // The batches between the first one and the last index entry within the byte
            // budget all fit: the header walk may resume there instead of at every batch.
            let jump = seg
                .offset_index
                .last_entry_within(
                    pos.saturating_add(max_bytes as u64),
                    max_offset.min(log_end),
                )
                .map(|(_, p)| p);
            (
                Arc::clone(&seg.file),
                seg.log_path.clone(),
                pos,
                jump,
                seg.size,
                log_start,
                log_end,
            )
        };
        let mut data = FetchData {
            slice: None,
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        let max_offset = max_offset.min(log_end);
        let mut reader = ChunkReader::headers(&file, seg_end);
        let Some((start, mut h)) = find_batch(&mut reader, start_pos, offset)?
            .map_err(|e| StorageError::CorruptRecord(format!("{}: {e}", path.display())))?
        else {
            return Ok(data);
        };
        // Headers past the byte budget are never needed: do not read ahead beyond it.
        reader.set_limit(
            start
                .saturating_add(max_bytes as u64)
                .saturating_add(HEADER_SIZE as u64),
        );
        let mut end = start;
        if let Some(p) = jump.filter(|&p| p > start) {
            // (Were there no valid batch at the entry, the walk would go from the start.)
            if let Ok(Some(next)) = reader.header_at(p)? {
                end = p;
                h = next;
            }
        }
        loop {
            if h.last_offset() >= max_offset {
                break;
            }
            let size = h.total_size() as u64;
            if end - start + size > max_bytes as u64 {
                if end == start && min_one_batch {
                    end += size;
                }
                break;
            }
            end += size;
            match reader.header_at(end)? {
                Ok(Some(next)) => h = next,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(tp = %self.tp, pos = end, error = %e, "bad batch header while reading");
                    break;
                }
            }
        }
        if end > start {
            data.slice = Some(FileSlice {
                file,
                position: start,
                len: (end - start) as usize,
            });
        }
        Ok(data)
    }

    /// The log start offset (the earliest offset a consumer may read).
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    /// The log end offset (the offset the next record will get).
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// Everything below this offset has been fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point.load(Ordering::Acquire)
    }

    /// Fsyncs everything appended so far and returns the new recovery point.
    ///
    /// What to sync is captured under the append lock; the fsyncs run without it, so appends
    /// continue meanwhile and the next flush covers them (group commit). Index files of rolled
    /// segments, producer snapshots and the directory (after segment creation or deletion) are
    /// synced too. A failed fsync poisons the log.
    pub fn flush(&self) -> Result<i64, StorageError> {
        let _serial = self.flush_lock.lock();
        let (target, files, paths, sync_dir, truncations) = {
            let mut inner = self.lock_writable()?;
            let target = inner.log_end_offset;
            let rp = inner.recovery_point;
            let mut written = Vec::new();
            for seg in inner.rolled.values_mut() {
                if seg.next_offset > rp {
                    written.extend(seg.write_indexes().map_err(|e| self.poison(e))?);
                }
            }
            inner.unsynced_files.extend(written);
            let files: Vec<Arc<File>> = inner
                .segments()
                .filter(|s| s.next_offset > rp && s.size > 0)
                .map(|s| Arc::clone(&s.file))
                .collect();
            let paths = std::mem::take(&mut inner.unsynced_files);
            let sync_dir = std::mem::take(&mut inner.dir_dirty);
            if files.is_empty() && paths.is_empty() && !sync_dir && target <= rp {
                return Ok(rp);
            }
            (target, files, paths, sync_dir, inner.truncations)
        };
        for f in &files {
            f.sync_data().map_err(|e| self.poison(e))?;
        }
        for p in &paths {
            match File::open(p) {
                Ok(f) => f.sync_all().map_err(|e| self.poison(e))?,
                // Deleted meanwhile (retention, truncation): nothing to make durable.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.poison(e)),
            }
        }
        if sync_dir {
            fsync_dir(&self.dir).map_err(|e| self.poison(e))?;
        }
        let mut inner = self.inner.lock();
        if inner.truncations == truncations && target > inner.recovery_point {
            inner.recovery_point = target.min(inner.log_end_offset);
        }
        self.publish(&inner);
        Ok(inner.recovery_point)
    }

    /// ListOffsets by timestamp: the first record (at or after the log start offset) whose
    /// timestamp is >= `timestamp`, decoding (and decompressing) the batch that holds it.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        struct Candidate {
            file: Arc<File>,
            size: u64,
            start: u64,
        }
        let (candidates, log_start) = {
            let inner = self.inner.lock();
            let log_start = inner.log_start_offset;
            let candidates: Vec<Candidate> = inner
                .segments()
                .filter(|s| s.max_timestamp >= timestamp && s.next_offset > log_start)
                .map(|s| {
                    let start = match s.time_index.lookup_before(timestamp) {
                        Some((_, offset)) => s.offset_index.lookup(offset).1,
                        None => 0,
                    };
                    Candidate {
                        file: Arc::clone(&s.file),
                        size: s.size,
                        start,
                    }
                })
                .collect();
            (candidates, log_start)
        };
        for c in candidates {
            let mut reader = ChunkReader::new(&c.file, c.size, HEADER_CHUNK);
            let mut pos = c.start;
            while let Some(h) = reader
                .header_at(pos)?
                .map_err(|e| batch_error(&self.tp, e))?
            {
                if h.max_timestamp >= timestamp && h.last_offset() >= log_start {
                    let bytes = reader.get(pos, h.total_size())?;
                    if let Some(found) =
                        find_record(&self.tp, bytes, &h, log_start, &|ts| ts >= timestamp)?
                    {
                        return Ok(Some(found));
                    }
                }
                pos += h.total_size() as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734): the offset and timestamp of the first record
    /// carrying the largest timestamp in the log.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, StorageError> {
        let (file, size, start, target) = {
            let inner = self.inner.lock();
            let mut best: Option<&Segment> = None;
            for s in inner.segments() {
                if s.max_timestamp >= 0 && best.is_none_or(|b| s.max_timestamp > b.max_timestamp) {
                    best = Some(s);
                }
            }
            let Some(s) = best else { return Ok(None) };
            let (_, start) = s.offset_index.lookup(s.offset_of_max_timestamp);
            (Arc::clone(&s.file), s.size, start, s.max_timestamp)
        };
        let mut reader = ChunkReader::new(&file, size, HEADER_CHUNK);
        let mut pos = start;
        while let Some(h) = reader
            .header_at(pos)?
            .map_err(|e| batch_error(&self.tp, e))?
        {
            if h.max_timestamp == target {
                let bytes = reader.get(pos, h.total_size())?;
                return find_record(&self.tp, bytes, &h, i64::MIN, &|ts| ts == target);
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// Renames a segment's files for deletion after `file.delete.delay.ms` (readers holding
    /// the file keep working) and forgets the segment.
    fn schedule_delete(&self, inner: &mut Inner, mut seg: Segment) -> io::Result<()> {
        let files = seg.rename_for_delete()?;
        let delay = self.config.read().file_delete_delay_ms;
        if delay <= 0 {
            for f in &files {
                remove_file_if_exists(f)?;
            }
        } else {
            inner
                .pending_deletes
                .push((inner.last_now_ms.saturating_add(delay), files));
        }
        inner.dir_dirty = true;
        Ok(())
    }

    /// Deletes rolled segments from the front while `pred` holds; returns how many.
    fn delete_old_segments(
        &self,
        inner: &mut Inner,
        pred: &mut dyn FnMut(&Segment, i64) -> bool,
    ) -> Result<usize, StorageError> {
        let mut deleted = 0;
        while let Some((&base, seg)) = inner.rolled.first_key_value() {
            let next_base = inner
                .rolled
                .range(base + 1..)
                .next()
                .map_or(inner.active.base_offset, |(b, _)| *b);
            if !pred(seg, next_base) {
                break;
            }
            if let Some(seg) = inner.rolled.remove(&base) {
                self.schedule_delete(inner, seg)
                    .map_err(|e| self.poison(e))?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            let first = inner
                .rolled
                .first_key_value()
                .map_or(inner.active.base_offset, |(b, _)| *b);
            if first > inner.log_start_offset {
                inner.log_start_offset = first;
            }
            self.truncate_epochs_from_start(inner)?;
        }
        Ok(deleted)
    }

    fn truncate_epochs_from_start(&self, inner: &mut Inner) -> Result<(), StorageError> {
        let start = inner.log_start_offset;
        if inner.epochs.truncate_from_start(start) {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    /// DeleteRecords: moves the log start offset up to `offset` (never past the log end:
    /// [`StorageError::OffsetOutOfRange`]) and deletes the segments entirely below it.
    /// Returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, StorageError> {
        let mut inner = self.lock_writable()?;
        if offset > inner.log_end_offset || offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start: inner.log_start_offset,
                log_end: inner.log_end_offset,
            });
        }
        if offset <= inner.log_start_offset {
            return Ok(inner.log_start_offset);
        }
        inner.log_start_offset = offset;
        if inner.active.size > 0 && inner.active.next_offset <= offset {
            // Everything is deleted: roll so that the old active segment can go too (Kafka
            // rolls before deleting all segments).
            let end = inner.log_end_offset;
            self.roll(&mut inner, end).map_err(|e| self.poison(e))?;
        }
        self.delete_old_segments(&mut inner, &mut |_, next_base| next_base <= offset)?;
        self.truncate_epochs_from_start(&mut inner)?;
        self.publish(&inner);
        Ok(inner.log_start_offset)
    }

    /// Time and size retention (`retention.ms` against each segment's largest timestamp,
    /// `retention.bytes` against the log size) when `cleanup.policy` includes `delete`, plus
    /// segments entirely below the log start offset. Whole segments only, never the active
    /// one; the log start offset moves to the first remaining segment. Also rolls the active
    /// segment when `segment.ms` is due, and removes `*.deleted` files whose
    /// `file.delete.delay.ms` has passed. Returns the number of segments deleted.
    pub fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        self.enforce_retention_below(now_ms, i64::MAX)
    }

    /// [`Log::enforce_retention`] for a replicated log: retention deletes only segments
    /// entirely below `high_watermark` (Kafka's `deletableSegments` upper bound), so neither
    /// records that are not yet replicated nor the log start can pass the high watermark.
    pub fn enforce_retention_below(
        &self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, StorageError> {
        let config = self.config();
        let mut inner = self.lock_writable()?;
        inner.last_now_ms = inner.last_now_ms.max(now_ms);
        let due: Vec<(i64, Vec<PathBuf>)> = {
            let (due, keep) = std::mem::take(&mut inner.pending_deletes)
                .into_iter()
                .partition(|(at, _)| *at <= now_ms);
            inner.pending_deletes = keep;
            due
        };
        for path in due.iter().flat_map(|(_, files)| files) {
            if let Err(e) = remove_file_if_exists(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete file");
            }
        }
        let mut deleted = 0;
        if config.cleanup_policy_delete {
            if config.retention_ms >= 0 {
                deleted += self.delete_old_segments(&mut inner, &mut |s, next_base| {
                    next_base <= high_watermark
                        && now_ms.saturating_sub(s.largest_timestamp()) > config.retention_ms
                })?;
            }
            if config.retention_bytes >= 0 {
                let mut excess = inner.size_bytes() as i64 - config.retention_bytes;
                deleted += self.delete_old_segments(&mut inner, &mut |s, next_base| {
                    if next_base <= high_watermark && excess >= s.size as i64 {
                        excess -= s.size as i64;
                        true
                    } else {
                        false
                    }
                })?;
            }
        }
        let log_start = inner.log_start_offset;
        deleted +=
            self.delete_old_segments(&mut inner, &mut |_, next_base| next_base <= log_start)?;
        let roll_due = inner.active.size > 0
            && inner
                .active
                .roll_base_ms
                .is_some_and(|t| now_ms.saturating_sub(t) > config.max_segment_ms());
        if roll_due {
            let end = inner.log_end_offset;
            self.roll(&mut inner, end).map_err(|e| self.poison(e))?;
        }
        if deleted > 0 {
            tracing::info!(tp = %self.tp, deleted, log_start = inner.log_start_offset, "retention deleted segments");
        }
        self.publish(&inner);
        Ok(deleted)
    }

    /// Replaces the configuration (applies to later appends, rolls and retention).
    pub fn update_config(&self, config: LogConfig) {
        *self.config.write() = config;
    }

    /// The current configuration.
    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
    }

    /// Drops every batch containing an offset >= `offset` (replication truncation; a batch
    /// straddling `offset` goes entirely, so the log end may end up below it), fixing indexes,
    /// producer state and the epoch cache. Below the log start offset the log is emptied and
    /// restarted at `offset`. When `offset` >= the log end only epoch-cache entries starting at
    /// the log end go (Kafka's `truncateTo`: a broker that became leader and wrote nothing
    /// before losing the leadership holds such an entry, which would otherwise make it claim
    /// an epoch it has no data of).
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let mut inner = self.lock_writable()?;
        if offset >= inner.log_end_offset {
            let end = inner.log_end_offset;
            if inner.epochs.truncate_from_end(end) {
                inner.epochs.write().map_err(|e| self.poison(e))?;
            }
            return Ok(());
        }
        if offset < inner.log_start_offset
            || offset < inner.segments().next().map_or(0, |s| s.base_offset)
        {
            return self.truncate_fully_locked(&mut inner, offset.max(0));
        }
        tracing::info!(tp = %self.tp, offset, log_end = inner.log_end_offset, "truncating log");
        while inner.active.base_offset > offset {
            let Some((_, prev)) = inner.rolled.pop_last() else {
                break;
            };
            let old = std::mem::replace(&mut inner.active, prev);
            self.schedule_delete(&mut inner, old)
                .map_err(|e| self.poison(e))?;
        }
        let later: Vec<i64> = inner.rolled.range(offset + 1..).map(|(b, _)| *b).collect();
        for base in later {
            if let Some(seg) = inner.rolled.remove(&base) {
                self.schedule_delete(&mut inner, seg)
                    .map_err(|e| self.poison(e))?;
            }
        }
        inner
            .active
            .truncate_to(offset)
            .map_err(|e| self.poison(e))?;
        self.after_truncation(&mut inner)
    }

    /// Empties the log and restarts it at `offset` (a follower whose leader's log start is
    /// past its log end, or a truncation below the log start). Clears the epoch cache and
    /// producer state.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        let mut inner = self.lock_writable()?;
        self.truncate_fully_locked(&mut inner, offset.max(0))
    }

    fn truncate_fully_locked(&self, inner: &mut Inner, offset: i64) -> Result<(), StorageError> {
        tracing::info!(tp = %self.tp, offset, "truncating log fully");
        let new = Segment::create(&self.dir, offset);
        let new = match new {
            Ok(s) => s,
            Err(e) => return Err(self.poison(e)),
        };
        let old_active = std::mem::replace(&mut inner.active, new);
        let rolled = std::mem::take(&mut inner.rolled);
        for seg in rolled.into_values().chain(std::iter::once(old_active)) {
            if seg.base_offset == offset {
                // Its files were just replaced by the new empty segment's.
                continue;
            }
            self.schedule_delete(inner, seg)
                .map_err(|e| self.poison(e))?;
        }
        inner.log_start_offset = offset;
        inner.dir_dirty = true;
        if inner.epochs.clear() {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        self.after_truncation(inner)
    }

    fn after_truncation(&self, inner: &mut Inner) -> Result<(), StorageError> {
        // Truncations are rare and must not be undone by a crash (a lost truncation would
        // resurrect diverged batches behind new ones): make them durable now.
        inner
            .active
            .file
            .sync_all()
            .and_then(|()| fsync_dir(&self.dir))
            .map_err(|e| self.poison(e))?;
        inner.dir_dirty = false;
        inner.log_end_offset = inner.active.next_offset;
        inner.recovery_point = inner.recovery_point.min(inner.log_end_offset);
        inner.truncations += 1;
        let end = inner.log_end_offset;
        inner.truncated_to = Some(inner.truncated_to.map_or(end, |t| t.min(end)));
        if inner.epochs.truncate_from_end(end) {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        // Rebuild the producer state from the latest snapshot at or below the new end.
        let (mut producers, from) = ProducerStateManager::load(&self.dir, self.tp.to_string(), end)
            .map_err(|e| self.poison(e))?;
        if from.is_none() {
            producers.clear();
        }
        replay_producers(inner.segments(), &mut producers, from.unwrap_or(i64::MIN))?;
        inner.producers = producers;
        self.publish(inner);
        Ok(())
    }

    /// Flushes everything, writes the index files and a producer-state snapshot, and closes
    /// the log to further mutation (reads keep working).
    pub fn close(&self) -> Result<(), StorageError> {
        let _serial = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        if inner.closed {
            return Ok(());
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::LogDirFailed);
        }
        let result = (|| -> io::Result<()> {
            let mut written = Vec::new();
            for seg in inner.rolled.values_mut() {
                written.extend(seg.write_indexes()?);
            }
            inner.active.finalize_time_index();
            written.extend(inner.active.write_indexes()?);
            let end = inner.log_end_offset;
            written.push(inner.producers.take_snapshot(end)?);
            let rp = inner.recovery_point;
            for seg in inner.segments() {
                if seg.next_offset > rp && seg.size > 0 {
                    seg.file.sync_data()?;
                }
            }
            written.append(&mut inner.unsynced_files);
            for p in &written {
                match File::open(p) {
                    Ok(f) => f.sync_all()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            fsync_dir(&self.dir)?;
            inner.dir_dirty = false;
            Ok(())
        })();
        result.map_err(|e| self.poison(e))?;
        inner.recovery_point = inner.log_end_offset;
        inner.closed = true;
        self.publish(&inner);
        Ok(())
    }

    /// Deletes the log: renames its directory to `<dir>.<unique>-delete` (so that a crash
    /// mid-way leaves a directory the next start removes, not a half-deleted log) and removes
    /// it. The log is closed to further mutation.
    pub fn delete(&self) -> Result<(), StorageError> {
        let _serial = self.flush_lock.lock();
        let mut inner = self.inner.lock();
        inner.closed = true;
        let name = self
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = self
            .dir
            .with_file_name(format!("{name}.{}-delete", unique_suffix()));
        match fs::rename(&self.dir, &target) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = target.parent() {
            fsync_dir(parent)?;
        }
        fs::remove_dir_all(&target)?;
        Ok(())
    }

    /// Records that leader epoch `epoch` starts at `start_offset` (Kafka's
    /// `LeaderEpochFileCache.assign`; the broker calls this when becoming leader, and
    /// appends call it for every new epoch) and writes the checkpoint if it changed.
    pub fn assign_epoch_start(&self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        if epoch < 0 || start_offset < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "invalid leader epoch entry ({epoch}, {start_offset})"
            )));
        }
        let mut inner = self.lock_writable()?;
        if inner.epochs.assign(epoch, start_offset) {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        Ok(())
    }

    /// The latest leader epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.latest_epoch()
    }

    /// The leader-epoch cache entries, oldest first.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.inner.lock().epochs.entries().to_vec()
    }

    /// The leader epoch that wrote `offset`, if known.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.inner.lock().epochs.epoch_for_offset(offset)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the end offset of that epoch
    /// (the start of the next epoch, or the log end for the latest one), per Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`; (-1, -1) if unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.inner.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// Bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().size_bytes()
    }

    /// Number of segments (including the active one).
    pub fn segment_count(&self) -> usize {
        self.inner.lock().rolled.len() + 1
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.inner
            .lock()
            .segments()
            .map(|s| s.base_offset)
            .collect()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The partition this log belongs to.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// True once a write or fsync failed; the log then refuses every mutation.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// The idempotent-producer state of `producer_id`.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerStateEntry> {
        self.inner.lock().producers.get(producer_id).cloned()
    }

    /// Every producer's state (DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateEntry> {
        let mut v: Vec<ProducerStateEntry> =
            self.inner.lock().producers.entries().cloned().collect();
        v.sort_by_key(|e| e.producer_id);
        v
    }

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`,
    /// Kafka default 86400000) without an ongoing transaction. Returns how many.
    pub fn remove_expired_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.inner
            .lock()
            .producers
            .remove_expired(now_ms, expiration_ms)
    }

    /// First offset of the oldest ongoing transaction (bounds the last stable offset).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.inner.lock().producers.first_unstable_offset()
    }

    /// Offsets of the producer-state snapshot files present.
    pub fn producer_snapshot_offsets(&self) -> Vec<i64> {
        self.inner.lock().producers.snapshot_offsets()
    }
}
