//! All logs of one log directory (Kafka's `LogManager`, one directory).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::checkpoint::{fsync_dir, read_offset_checkpoint, write_offset_checkpoint};
use crate::cleaner::{CleanStats, Cleaner, CleanerConfig};
use crate::config::{LogConfig, TopicPartition};
use crate::error::StorageError;
use crate::log::{DirHealth, Log};

/// Recovery points of all logs (Kafka's file name).
pub const RECOVERY_POINT_CHECKPOINT_FILE: &str = "recovery-point-offset-checkpoint";
/// Log start offsets of all logs (Kafka's file name).
pub const LOG_START_OFFSET_CHECKPOINT_FILE: &str = "log-start-offset-checkpoint";
/// Marker written by a clean shutdown (Kafka's file name).
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

/// Topic of the metadata log, which a `LogManager` never opens (the metadata layer does).
pub const METADATA_TOPIC: &str = "__cluster_metadata";

/// All logs of one log directory.
pub struct LogManager {
    log_dir: PathBuf,
    logs: RwLock<HashMap<TopicPartition, Arc<Log>>>,
    /// Serializes creation and removal so that two callers never open the same directory.
    create_lock: Mutex<()>,
    /// The log cleaner of this directory (compaction) and its checkpoint.
    cleaner: Cleaner,
    /// What the checkpoint files hold (recovery points, log starts), to skip identical writes.
    last_checkpoint: Mutex<Option<CheckpointMaps>>,
    /// The directory's health, shared with each [`Log`]: failed once a write or fsync failed
    /// in any of them; the rate limit of the "disk full" line.
    health: Arc<DirHealth>,
}

type CheckpointMaps = (HashMap<TopicPartition, i64>, HashMap<TopicPartition, i64>);

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("log_dir", &self.log_dir)
            .field("logs", &self.logs.read().len())
            .finish()
    }
}

fn read_checkpoint_or_empty(path: &Path) -> HashMap<TopicPartition, i64> {
    match read_offset_checkpoint(path) {
        Ok(m) => m,
        Err(e) => {
            // Falling back to empty is safe: recovery from 0 scans everything, and the log
            // start falls back to the first segment's base offset.
            tracing::warn!(path = %path.display(), error = %e, "unreadable checkpoint; ignoring it");
            HashMap::new()
        }
    }
}

/// Runs `f` over `items` on up to `available_parallelism` (at most 8) threads; results come
/// back in no particular order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(items.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(item) =
                    items.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                {
                    let r = f(item);
                    out.lock().push(r);
                }
            });
        }
    });
    out.into_inner()
}

impl LogManager {
    /// Opens every `<topic>-<partition>` directory under `log_dir` (creating `log_dir` if
    /// missing) with the recovery points and log start offsets of the checkpoint files and the
    /// clean-shutdown marker, which is then deleted (durably, before any append can happen,
    /// so that a later crash is never mistaken for a clean shutdown). Directories named
    /// `*-delete` (interrupted deletions) are removed.
    pub fn open(
        log_dir: PathBuf,
        config_for: impl Fn(&TopicPartition) -> LogConfig,
        now_ms: i64,
    ) -> Result<LogManager, StorageError> {
        fs::create_dir_all(&log_dir)?;
        let marker = log_dir.join(CLEAN_SHUTDOWN_FILE);
        let had_clean_shutdown = marker.exists();
        let recovery_points =
            read_checkpoint_or_empty(&log_dir.join(RECOVERY_POINT_CHECKPOINT_FILE));
        let log_starts = read_checkpoint_or_empty(&log_dir.join(LOG_START_OFFSET_CHECKPOINT_FILE));
        let mut dirs = Vec::new();
        for entry in fs::read_dir(&log_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with("-delete") {
                tracing::info!(dir = name, "removing directory of a deleted log");
                if let Err(e) = fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = name, error = %e, "cannot remove deleted log directory");
                }
                continue;
            }
            let Some(tp) = TopicPartition::from_dir_name(name) else {
                tracing::warn!(dir = name, "ignoring directory that is not a log");
                continue;
            };
            // The metadata log (KIP-500) shares the directory but is owned by the metadata
            // layer, as in Kafka's LogManager.
            if tp.topic == METADATA_TOPIC {
                continue;
            }
            let config = config_for(&tp);
            dirs.push((tp, entry.path(), config));
        }
        // Logs load in parallel (Kafka's `num.recovery.threads.per.data.dir`): loading is a
        // mix of small file reads and, after a crash, CRC work over the unflushed tails.
        let opened = in_parallel(&dirs, |(tp, path, config)| {
            let log = Log::open_with_log_start_offset(
                path.clone(),
                tp.clone(),
                config.clone(),
                recovery_points.get(tp).copied().unwrap_or(0),
                log_starts.get(tp).copied().unwrap_or(0),
                had_clean_shutdown,
                now_ms,
            );
            log.map(|l| (tp.clone(), l))
        });
        let health = Arc::new(DirHealth::default());
        let mut logs = HashMap::new();
        for r in opened {
            let (tp, log) = r?;
            log.share_dir_health(Arc::clone(&health));
            logs.insert(tp, Arc::new(log));
        }
        if had_clean_shutdown {
            crate::io::remove_file(&marker)?;
            fsync_dir(&log_dir)?;
        }
        tracing::info!(dir = %log_dir.display(), logs = logs.len(), had_clean_shutdown, "log manager opened");
        Ok(LogManager {
            health,
            last_checkpoint: Mutex::new(None),
            cleaner: Cleaner::open(log_dir.clone()),
            log_dir,
            logs: RwLock::new(logs),
            create_lock: Mutex::new(()),
        })
    }

    /// The log directory.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// True once a write or fsync failed in any log of this directory (Kafka's offline log
    /// directory, `LogDirFailureChannel`): its logs can no longer be trusted, the broker
    /// must stop serving them and hand their leadership over. A full disk does not count.
    pub fn is_offline(&self) -> bool {
        self.health
            .failed
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// The partitions whose own log failed (a subset of what [`LogManager::is_offline`]
    /// takes offline), for the operator's log line.
    pub fn failed_logs(&self) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> = self
            .logs
            .read()
            .iter()
            .filter(|(_, l)| l.is_poisoned())
            .map(|(tp, _)| tp.clone())
            .collect();
        out.sort();
        out
    }

    /// The log of a partition.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Log>> {
        self.logs.read().get(tp).cloned()
    }

    /// The log of a partition, creating it (empty, at offset 0) with `config` if needed.
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<Arc<Log>, StorageError> {
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let _guard = self.create_lock.lock();
        if let Some(log) = self.get(tp) {
            return Ok(log);
        }
        let dir = self.log_dir.join(tp.dir_name());
        let log = Arc::new(Log::open(dir, tp.clone(), config, 0, true, now_ms)?);
        log.share_dir_health(Arc::clone(&self.health));
        fsync_dir(&self.log_dir)?;
        self.logs.write().insert(tp.clone(), Arc::clone(&log));
        Ok(log)
    }

    /// Removes a partition's log and deletes its directory (renamed to `*-delete` first).
    pub fn remove(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let _guard = self.create_lock.lock();
        let Some(log) = self.logs.write().remove(tp) else {
            return Ok(());
        };
        log.delete()?;
        self.cleaner.forget(tp)
    }

    /// Every log.
    pub fn all(&self) -> Vec<(TopicPartition, Arc<Log>)> {
        let mut v: Vec<(TopicPartition, Arc<Log>)> = self
            .logs
            .read()
            .iter()
            .map(|(tp, log)| (tp.clone(), Arc::clone(log)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Writes `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint` atomically,
    /// unless they would not change. Cheap enough to call after every periodic flush, which
    /// bounds what a restart after a crash must scan to what was written since.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let mut recovery_points = HashMap::new();
        let mut log_starts = HashMap::new();
        for (tp, log) in self.all() {
            recovery_points.insert(tp.clone(), log.recovery_point());
            log_starts.insert(tp, log.log_start_offset());
        }
        let mut last = self.last_checkpoint.lock();
        if last
            .as_ref()
            .is_some_and(|(rp, ls)| *rp == recovery_points && *ls == log_starts)
        {
            return Ok(());
        }
        *last = None;
        write_offset_checkpoint(
            &self.log_dir.join(RECOVERY_POINT_CHECKPOINT_FILE),
            &recovery_points,
        )?;
        write_offset_checkpoint(
            &self.log_dir.join(LOG_START_OFFSET_CHECKPOINT_FILE),
            &log_starts,
        )?;
        *last = Some((recovery_points, log_starts));
        Ok(())
    }

    /// Flushes every log (errors are logged; a failed log is poisoned).
    pub fn flush_all(&self) {
        for (tp, log) in self.all() {
            if let Err(e) = log.flush() {
                tracing::error!(%tp, error = %e, "flush failed");
            }
        }
    }

    /// Applies retention to every log, logging errors.
    pub fn enforce_retention(&self, now_ms: i64) {
        for (tp, log) in self.all() {
            if let Err(e) = log.enforce_retention(now_ms) {
                tracing::error!(%tp, error = %e, "retention failed");
            }
        }
    }

    /// Runs the log cleaner over every compacted log that needs it (Kafka's cleaner thread:
    /// filthiest first). Errors are logged per log. Returns what was cleaned.
    pub fn clean_logs(
        &self,
        config: &CleanerConfig,
        now_ms: i64,
    ) -> Vec<(TopicPartition, CleanStats)> {
        self.cleaner.clean_logs(&self.all(), config, now_ms)
    }

    /// The log cleaner of this directory.
    pub fn cleaner(&self) -> &Cleaner {
        &self.cleaner
    }

    /// Closes every log, writes the checkpoints, and writes the clean-shutdown marker, unless
    /// some log failed to close (then the next start recovers). Returns the first error.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        let mut first_error: Option<StorageError> = None;
        // In parallel: each close fsyncs a few files, which the disk serves concurrently.
        let closed = in_parallel(&self.all(), |(tp, log)| {
            log.close().inspect_err(|e| {
                tracing::error!(%tp, error = %e, "closing log failed");
            })
        });
        for r in closed {
            if let Err(e) = r {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.checkpoint() {
            first_error.get_or_insert(e);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let marker = self.log_dir.join(CLEAN_SHUTDOWN_FILE);
        let write = || -> io::Result<()> {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            let f = crate::io::open(&marker, &opts)?;
            crate::io::sync_all(&marker, &f)?;
            fsync_dir(&self.log_dir)
        };
        write()?;
        tracing::info!(dir = %self.log_dir.display(), "log manager shut down cleanly");
        Ok(())
    }
}
