//! One partition replica's log (Kafka's `UnifiedLog` + `LocalLog`).
//!
//! Locking: one mutex (`inner`) serializes appends and every structural change (roll,
//! truncation, retention). Reads take it only to pick a segment and capture its file and size,
//! then read without it. `flush` captures what to fsync under the mutex and fsyncs without it,
//! so appends continue while data is being made durable (group commit); a second mutex
//! serializes flushes with each other. Offsets that callers poll often are mirrored in atomics.
//!
//! Failure model: a failed write or fsync poisons the log ([`Log::is_poisoned`]); every later
//! mutation then fails with [`StorageError::LogDirFailed`] while reads keep working, because
//! after a failed fsync the page cache no longer tells what is on disk.
//!
//! The code is split by concern, each file adding an `impl Log` block: `recovery` (opening a
//! directory, torn-tail recovery, clean-shutdown handling), `append` (leader and follower
//! appends, validation, rolls), `read` (fetch reads and lookups by timestamp, epoch and
//! producer), `retention` (time and size retention, DeleteRecords, deferred file deletion),
//! `truncation` (replication truncation) and `compaction` (the cleaner's view and swap).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use nagare_protocol::record_batch::BatchError;
use parking_lot::{Mutex, MutexGuard, RwLock};

mod append;
mod compaction;
mod read;
mod recovery;
mod retention;
mod truncation;

pub use append::{AppendInfo, AppendOrigin};
pub(crate) use compaction::{CleaningView, LastRecord, SegmentView, CLEANED_SUFFIX};
pub use read::{offset_for_timestamp_in, FetchData, FileSlice, TimestampOffset};

use crate::checkpoint::fsync_dir;
use crate::config::{LogConfig, TopicPartition};
use crate::epoch_cache::LeaderEpochCache;
use crate::error::StorageError;
use crate::producer_state::ProducerStateManager;
use crate::segment::Segment;

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

    fn size_bytes(&self) -> u64 {
        self.segments().map(|s| s.size).sum()
    }

    /// Kafka's `updateFirstUnstableOffset`: the oldest open transaction's first offset, never
    /// below the log start (DeleteRecords may pass it).
    fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .first_unstable_offset()
            .map(|fuo| fuo.max(self.log_start_offset))
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
    /// The first unstable offset (clamped to the log start), -1 when no transaction is open:
    /// read on every `read_committed` fetch, so kept out of the append lock.
    first_unstable_offset: AtomicI64,
    poisoned: AtomicBool,
    disk: DiskState,
}

/// The health of a log directory, shared by every log of a [`LogManager`](crate::LogManager).
#[derive(Default)]
pub(crate) struct DirHealth {
    /// Set when any log of the directory is poisoned: Kafka takes the whole log directory
    /// offline on an I/O error in any of its logs (`LogDirFailureChannel`).
    pub(crate) failed: AtomicBool,
    /// When the last "disk full" line was logged (ms since the epoch; 0 = not full): one
    /// line per directory per [`DISK_FULL_LOG_INTERVAL_MS`], not one per refused request.
    full_logged_ms: AtomicI64,
}

/// What the log knows about its log directory's health beyond its own poisoning.
#[derive(Default)]
pub(crate) struct DiskState {
    /// The directory's shared health, once a [`LogManager`](crate::LogManager) owns the log.
    shared: std::sync::OnceLock<Arc<DirHealth>>,
    /// Used while no manager shared one (a log opened on its own).
    own: DirHealth,
    /// An append of this log was refused for lack of space: the next successful one says
    /// that space is back (one relaxed load per append otherwise).
    was_full: AtomicBool,
}

impl DiskState {
    fn health(&self) -> &DirHealth {
        self.shared.get().map_or(&self.own, |h| h)
    }
}

/// At most one "disk full" log line per log this often.
const DISK_FULL_LOG_INTERVAL_MS: i64 = 30_000;

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

fn remove_file_if_exists(path: &Path) -> io::Result<()> {
    crate::io::remove_if_exists(path)
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

    fn publish(&self, inner: &Inner) {
        self.log_start_offset
            .store(inner.log_start_offset, Ordering::Release);
        self.log_end_offset
            .store(inner.log_end_offset, Ordering::Release);
        self.recovery_point
            .store(inner.recovery_point, Ordering::Release);
        self.first_unstable_offset.store(
            inner.first_unstable_offset().unwrap_or(-1),
            Ordering::Release,
        );
    }

    /// Marks the log failed after an I/O error on a write path and returns the error.
    fn poison(&self, e: io::Error) -> StorageError {
        self.poisoned.store(true, Ordering::Release);
        self.disk.health().failed.store(true, Ordering::Release);
        tracing::error!(tp = %self.tp, error = %e, "write or fsync failed; log is now offline");
        StorageError::Io(e)
    }

    /// Maps a failed write-side operation: a full disk (ENOSPC/EDQUOT) refuses the operation
    /// and leaves the log online (the caller has cut back what it wrote); anything else
    /// poisons it. Not for fsync errors, which always poison ([`Log::flush`]).
    fn write_failed(&self, e: io::Error) -> StorageError {
        if !crate::io::is_no_space(&e) {
            return self.poison(e);
        }
        self.disk.was_full.store(true, Ordering::Relaxed);
        let health = self.disk.health();
        let now = wall_ms();
        let last = health.full_logged_ms.load(Ordering::Relaxed);
        if (last == 0 || now - last >= DISK_FULL_LOG_INTERVAL_MS)
            && health
                .full_logged_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let dir = self.dir.parent().unwrap_or(&self.dir);
            tracing::error!(tp = %self.tp, dir = %dir.display(), error = %e,
                "log directory is full: appends are refused (KAFKA_STORAGE_ERROR) until space is freed; reads continue");
        }
        StorageError::DiskFull(e)
    }

    /// After a successful append: logs once per directory that a full disk has space again.
    fn disk_has_space(&self) {
        if self.disk.was_full.load(Ordering::Relaxed)
            && self.disk.was_full.swap(false, Ordering::Relaxed)
            && self.disk.health().full_logged_ms.swap(0, Ordering::Relaxed) != 0
        {
            tracing::info!(tp = %self.tp, "log directory has space again: appends resumed");
        }
    }

    /// Shares the log directory's health with this log (the [`LogManager`] does this for
    /// each of its logs).
    ///
    /// [`LogManager`]: crate::LogManager
    pub(crate) fn share_dir_health(&self, health: Arc<DirHealth>) {
        if self.is_poisoned() {
            health.failed.store(true, Ordering::Release);
        }
        let _ = self.disk.shared.set(health);
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
            let mut failed = None;
            for seg in inner.rolled.values_mut() {
                if seg.next_offset > rp {
                    match seg.write_indexes() {
                        Ok(w) => written.extend(w),
                        Err(e) => {
                            // What was written before the failure is fsynced by a later
                            // flush; index writes resume from their persisted prefix, so
                            // a full disk only postpones the flush (the recovery point
                            // stays behind).
                            written.extend(seg.index_paths());
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            inner.unsynced_files.extend(written);
            if let Some(e) = failed {
                return Err(self.write_failed(e));
            }
            let files: Vec<(PathBuf, Arc<File>)> = inner
                .segments()
                .filter(|s| s.next_offset > rp && s.size > 0)
                .map(|s| (s.log_path.clone(), Arc::clone(&s.file)))
                .collect();
            let paths = std::mem::take(&mut inner.unsynced_files);
            let sync_dir = std::mem::take(&mut inner.dir_dirty);
            if files.is_empty() && paths.is_empty() && !sync_dir && target <= rp {
                return Ok(rp);
            }
            (target, files, paths, sync_dir, inner.truncations)
        };
        // A failed fsync is final (the kernel may have dropped the dirty pages and cleared
        // the error: retrying would "succeed" over lost data, the PostgreSQL fsyncgate
        // lesson): the log goes offline and the recovery point stays where it was.
        for (p, f) in &files {
            crate::io::sync_data(p, f).map_err(|e| self.poison(e))?;
        }
        for p in &paths {
            match File::open(p) {
                Ok(f) => crate::io::sync_all(p, &f).map_err(|e| self.poison(e))?,
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

    /// Replaces the configuration (applies to later appends, rolls and retention).
    pub fn update_config(&self, config: LogConfig) {
        *self.config.write() = config;
    }

    /// The current configuration.
    pub fn config(&self) -> LogConfig {
        self.config.read().clone()
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
                    crate::io::sync_data(&seg.log_path, &seg.file)?;
                }
            }
            written.append(&mut inner.unsynced_files);
            for p in &written {
                match File::open(p) {
                    Ok(f) => crate::io::sync_all(p, &f)?,
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
        match crate::io::rename(&self.dir, &target) {
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
}
