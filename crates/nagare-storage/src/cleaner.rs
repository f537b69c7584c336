//! The log cleaner: compaction of logs with `cleanup.policy=compact` (Kafka's `LogCleaner`,
//! `LogCleanerManager` and `Cleaner`, Kafka 4.x semantics).
//!
//! One pass over a log:
//! 1. Bounds. The *dirty* section starts at the cleaner checkpoint (`cleaner-offset-checkpoint`
//!    in the log dir; the log start offset when absent or out of range) and ends at the first
//!    *uncleanable* offset: the active segment's base, the first unstable offset, and the
//!    first segment younger than `min.compaction.lag.ms`.
//! 2. Selection. The log is cleaned when its dirty ratio (dirty bytes / bytes of the clean
//!    and dirty sections) exceeds `min.cleanable.dirty.ratio`, or when a dirty record is older
//!    than `max.compaction.lag.ms` (KIP-354), or when tombstones' delete horizon has passed.
//! 3. Offset map. Key → latest offset over whole dirty segments, within the
//!    `log.cleaner.dedupe.buffer.size` budget (keys are stored whole, so there are no hash
//!    collisions; Kafka stores MD5 digests).
//! 4. Cleaning. Every segment from the log start to the end of the mapped section is
//!    rewritten, consecutive segments merged while they fit `segment.bytes` and
//!    `segment.index.bytes`. A record survives when a later offset for its key is not in the
//!    map and it is not an expired tombstone; keyless records are dropped. Batches keep their
//!    base and last offsets, producer fields and codec; a producer's last batch survives empty
//!    if all its records go. Tombstones get a delete horizon (KIP-534: now +
//!    `delete.retention.ms`, stored in the batch's base timestamp) the first time they are
//!    cleaned and are removed by the first cleaning after it.
//! 5. Swap. Each cleaned group is written to `*.cleaned` files, fsynced, and swapped in by
//!    [`Log`] atomically; then the checkpoint moves to the end of the mapped section.
//!
//! Transactions (Kafka's `CleanedTransactionMetadata`): the cleanable range ends at the first
//! unstable offset, so an open transaction is never cleaned. The aborted transactions of each
//! segment (from the aborted-transaction indexes) tell which transactional batches were
//! aborted: those are left out of the offset map and removed (a producer's last batch stays,
//! empty). A transaction marker is kept while the pass still saw data of its transaction
//! (the cleaned segment's `.txnindex` keeps the aborts whose data was just removed); once
//! none is left it gets a delete horizon (now + `delete.retention.ms`, as tombstones do) and
//! is removed by the first cleaning after it, unless it is its producer's last record
//! (kept empty for the epoch).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use nagare_protocol::record_batch::RecordBatchHeader;
use parking_lot::Mutex;

use crate::checkpoint::{read_offset_checkpoint, write_offset_checkpoint};
use crate::config::{LogConfig, TopicPartition};
use crate::error::StorageError;
use crate::log::{CleaningView, LastRecord, Log, SegmentView, CLEANED_SUFFIX};
use crate::records::{
    empty_batch, parse_end_txn_marker, parse_records, rebuild_batch, records_section, RawRecord,
};
use crate::scan::{ChunkReader, RECOVERY_CHUNK};
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;

/// Name of the cleaner's checkpoint file in the log dir (Kafka's).
pub const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Bytes the offset map is charged per entry on top of the key (hash table slot, length,
/// offset), an estimate of `HashMap<Box<[u8]>, i64>`'s footprint.
const MAP_ENTRY_OVERHEAD: u64 = 48;

/// Broker-level cleaner settings (`log.cleaner.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size`: memory for the offset maps of all cleaner threads
    /// (default 134217728).
    pub dedupe_buffer_size: u64,
    /// `log.cleaner.io.buffer.load.factor`: share of the buffer the map may fill (0.9).
    pub dedupe_buffer_load_factor: f64,
    /// `log.cleaner.threads`: the dedupe buffer is split between them (default 1).
    pub threads: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_size: 134_217_728,
            dedupe_buffer_load_factor: 0.9,
            threads: 1,
        }
    }
}

impl CleanerConfig {
    fn map_budget(&self) -> u64 {
        let per_thread = self.dedupe_buffer_size / self.threads.max(1) as u64;
        (per_thread as f64 * self.dedupe_buffer_load_factor.clamp(0.01, 1.0)) as u64
    }
}

/// What one cleaning of one log did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Offset the dirty section started at.
    pub first_dirty_offset: i64,
    /// End of the section cleaned (the new checkpoint).
    pub end_offset: i64,
    /// Segments read (and rewritten).
    pub segments_cleaned: usize,
    /// Segments written (after merging).
    pub segments_written: usize,
    /// Keys in the offset map.
    pub map_entries: usize,
    /// Bytes read.
    pub bytes_read: u64,
    /// Bytes written.
    pub bytes_written: u64,
    /// Records read.
    pub records_read: u64,
    /// Records kept.
    pub records_kept: u64,
    /// Groups not swapped in because the log changed meanwhile.
    pub groups_aborted: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Cleaner checkpoint per partition: everything below was cleaned.
    checkpoints: HashMap<TopicPartition, i64>,
    /// Earliest delete horizon of the tombstones kept by the last cleaning, per partition.
    delete_horizons: HashMap<TopicPartition, i64>,
}

/// The cleaner of one log directory. Cleans one log at a time (calls are serialized).
/// Clones share their state (the [`LogManager`](crate::LogManager) keeps one to forget
/// deleted logs; the broker's background task drives another).
#[derive(Debug, Clone)]
pub struct Cleaner {
    log_dir: PathBuf,
    state: Arc<Mutex<State>>,
    /// Held for a whole cleaning, so that two callers never write the same `.cleaned` files.
    run: Arc<Mutex<()>>,
}

/// Why a log is (not) cleaned now.
#[derive(Debug, Clone, Copy)]
struct Cleanable {
    first_dirty: i64,
    first_uncleanable: i64,
    ratio: f64,
    must_clean: bool,
}

fn corrupt(path: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::CorruptRecord(format!("{path}: {e}"))
}

impl Cleaner {
    /// A cleaner for `log_dir`, starting from its `cleaner-offset-checkpoint` (an unreadable
    /// checkpoint is ignored: everything is then considered dirty, which is only slower).
    pub fn open(log_dir: PathBuf) -> Cleaner {
        let path = log_dir.join(CLEANER_CHECKPOINT_FILE);
        let checkpoints = read_offset_checkpoint(&path).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "unreadable cleaner checkpoint; ignoring it");
            HashMap::new()
        });
        Cleaner {
            log_dir,
            state: Arc::new(Mutex::new(State {
                checkpoints,
                delete_horizons: HashMap::new(),
            })),
            run: Arc::new(Mutex::new(())),
        }
    }

    /// The cleaner checkpoint of a partition.
    pub fn checkpoint(&self, tp: &TopicPartition) -> Option<i64> {
        self.state.lock().checkpoints.get(tp).copied()
    }

    /// Forgets a partition (its log was deleted) and rewrites the checkpoint file.
    pub fn forget(&self, tp: &TopicPartition) -> Result<(), StorageError> {
        let mut state = self.state.lock();
        state.delete_horizons.remove(tp);
        if state.checkpoints.remove(tp).is_some() {
            self.write_checkpoint(&state)?;
        }
        Ok(())
    }

    fn write_checkpoint(&self, state: &State) -> Result<(), StorageError> {
        write_offset_checkpoint(
            &self.log_dir.join(CLEANER_CHECKPOINT_FILE),
            &state.checkpoints,
        )
    }

    /// Cleans every log that needs it, filthiest first (Kafka's cleaner thread picks the
    /// filthiest log each round). Errors are logged per log. Returns the logs cleaned.
    pub fn clean_logs(
        &self,
        logs: &[(TopicPartition, Arc<Log>)],
        config: &CleanerConfig,
        now_ms: i64,
    ) -> Vec<(TopicPartition, CleanStats)> {
        let mut candidates: Vec<(f64, &TopicPartition, &Arc<Log>)> = Vec::new();
        for (tp, log) in logs {
            let log_config = log.config();
            if !log_config.cleanup_policy_compact || log.is_poisoned() {
                continue;
            }
            let Ok(view) = self.view(tp, log) else {
                continue;
            };
            if let Some(c) = self.cleanable(tp, &view, &log_config, now_ms) {
                let rank = if c.must_clean { f64::INFINITY } else { c.ratio };
                candidates.push((rank, tp, log));
            }
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut done = Vec::new();
        for (_, tp, log) in candidates {
            match self.clean_log(tp, log, config, now_ms, false) {
                Ok(Some(stats)) => done.push((tp.clone(), stats)),
                Ok(None) => {}
                Err(e) => tracing::error!(%tp, error = %e, "log cleaning failed"),
            }
        }
        done
    }

    /// The log's cleaning view, with the checkpoint lowered below any truncation since the
    /// last one (Kafka's `maybeTruncateCheckpoint`): offsets rewritten after a truncation are
    /// dirty again.
    fn view(&self, tp: &TopicPartition, log: &Log) -> Result<CleaningView, StorageError> {
        let view = log.cleaning_view()?;
        if let Some(t) = view.truncated_to {
            let mut state = self.state.lock();
            if let Some(cp) = state.checkpoints.get_mut(tp) {
                if *cp > t {
                    *cp = t;
                    self.write_checkpoint(&state)?;
                }
            }
        }
        Ok(view)
    }

    /// Kafka's `LogCleanerManager.cleanableOffsets` and the selection rule: `None` when the
    /// log need not be cleaned now.
    fn cleanable(
        &self,
        tp: &TopicPartition,
        view: &CleaningView,
        config: &LogConfig,
        now_ms: i64,
    ) -> Option<Cleanable> {
        let c = self.bounds(tp, view, config, now_ms);
        let state = self.state.lock();
        let horizon_due = state.delete_horizons.get(tp).is_some_and(|&h| h <= now_ms);
        let dirty_bytes: u64 = view
            .segments
            .iter()
            .filter(|s| s.next_offset > c.first_dirty && s.base_offset < c.first_uncleanable)
            .map(|s| s.size)
            .sum();
        let clean = c.ratio >= 0.0 && dirty_bytes > 0 && c.ratio > config.min_cleanable_dirty_ratio;
        let lagging = c.must_clean && dirty_bytes > 0;
        (clean || lagging || horizon_due).then_some(c)
    }

    fn bounds(
        &self,
        tp: &TopicPartition,
        view: &CleaningView,
        config: &LogConfig,
        now_ms: i64,
    ) -> Cleanable {
        let log_start = view.log_start_offset;
        let mut first_dirty = self
            .state
            .lock()
            .checkpoints
            .get(tp)
            .copied()
            .unwrap_or(log_start);
        if first_dirty < log_start || first_dirty > view.active_base_offset {
            // Kafka resets an out-of-range checkpoint to the log start (e.g. after truncation).
            first_dirty = log_start;
        }
        let mut first_uncleanable = view.active_base_offset;
        if let Some(fuo) = view.first_unstable_offset {
            first_uncleanable = first_uncleanable.min(fuo);
        }
        let dirty = view
            .segments
            .iter()
            .filter(|s| s.next_offset > first_dirty && s.base_offset < first_uncleanable);
        if config.min_compaction_lag_ms > 0 {
            let limit = now_ms.saturating_sub(config.min_compaction_lag_ms);
            if let Some(s) = dirty.clone().find(|s| s.largest_timestamp > limit) {
                first_uncleanable = first_uncleanable.min(s.base_offset);
            }
        }
        first_dirty = first_dirty.min(first_uncleanable);
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        for s in &view.segments {
            if s.base_offset < first_dirty && s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else if s.base_offset < first_uncleanable {
                dirty_bytes += s.size;
            }
        }
        let total = clean_bytes + dirty_bytes;
        let ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        // KIP-354: a dirty record older than max.compaction.lag.ms forces a cleaning. The
        // first dirty segment's first batch carries the oldest dirty timestamp.
        let must_clean = config.max_compaction_lag_ms < i64::MAX
            && view
                .segments
                .iter()
                .find(|s| s.next_offset > first_dirty && s.base_offset < first_uncleanable)
                .and_then(|s| first_batch_timestamp(s).ok().flatten())
                .is_some_and(|ts| now_ms.saturating_sub(ts) > config.max_compaction_lag_ms);
        Cleanable {
            first_dirty,
            first_uncleanable,
            ratio,
            must_clean,
        }
    }

    /// Cleans one log if it needs it (or whenever it has anything cleanable, with `force`).
    /// Returns `None` when nothing was done.
    pub fn clean_log(
        &self,
        tp: &TopicPartition,
        log: &Log,
        cleaner_config: &CleanerConfig,
        now_ms: i64,
        force: bool,
    ) -> Result<Option<CleanStats>, StorageError> {
        let _running = self.run.lock();
        let config = log.config();
        if !config.cleanup_policy_compact {
            return Ok(None);
        }
        let view = self.view(tp, log)?;
        let bounds = if force {
            self.bounds(tp, &view, &config, now_ms)
        } else {
            match self.cleanable(tp, &view, &config, now_ms) {
                Some(b) => b,
                None => return Ok(None),
            }
        };
        let mut stats = CleanStats {
            first_dirty_offset: bounds.first_dirty,
            ..CleanStats::default()
        };

        // The offset map over whole dirty segments, within the memory budget.
        let budget = cleaner_config.map_budget();
        let mut map: HashMap<Box<[u8]>, i64> = HashMap::new();
        let mut map_bytes = 0u64;
        let mut end_offset = bounds.first_dirty;
        // Aborted records never enter the map: they must not shadow committed ones.
        let mut txns = TxnTracker::default();
        for s in view.segments.iter().filter(|s| {
            s.next_offset > bounds.first_dirty && s.next_offset <= bounds.first_uncleanable
        }) {
            if map_bytes >= budget && !map.is_empty() {
                break;
            }
            txns.add_aborted(log.collect_aborted_transactions(s.base_offset, s.next_offset)?);
            walk_segment(s, &mut |h, bytes| {
                if h.is_control() {
                    txns.on_control_batch(h, bytes);
                    return Ok(());
                }
                if txns.on_data_batch(h) {
                    return Ok(());
                }
                let bad = |e: String| corrupt(&format!("batch at offset {}", h.base_offset), e);
                let section = records_section(h, bytes).map_err(bad)?;
                for r in parse_records(&section, h.records_count).map_err(bad)? {
                    let offset = h.base_offset + i64::from(r.offset_delta);
                    let Some(key) = r.key else { continue };
                    if offset < bounds.first_dirty {
                        continue;
                    }
                    match map.get_mut(key) {
                        Some(o) => *o = offset,
                        None => {
                            map_bytes += key.len() as u64 + MAP_ENTRY_OVERHEAD;
                            map.insert(key.into(), offset);
                        }
                    }
                }
                Ok(())
            })?;
            end_offset = s.next_offset;
        }
        if map_bytes > budget {
            tracing::warn!(%tp, map_bytes, budget, "offset map exceeds log.cleaner.dedupe.buffer.size for one segment");
        }
        stats.map_entries = map.len();
        let map_latest = end_offset - 1;

        // Every segment below the end of the mapped section, grouped for merging.
        let to_clean: Vec<&SegmentView> = view
            .segments
            .iter()
            .filter(|s| s.base_offset < end_offset && s.next_offset <= end_offset)
            .collect();
        if to_clean.is_empty() {
            return Ok(None);
        }
        let groups = group_segments(&to_clean, &config);
        let filter = Filter {
            map: &map,
            map_latest,
            now_ms,
            delete_retention_ms: config.delete_retention_ms,
            producer_last: &view.producer_last,
        };
        let mut earliest_horizon: Option<i64> = None;
        // One transaction tracker for the whole pass (Kafka keeps one per group): a marker
        // whose data sits in an earlier group is then still known to have data, so it never
        // goes while records of its transaction remain — a producer-state replay from the
        // log start would otherwise see those records as a transaction that never ended.
        let mut txns = TxnTracker::default();
        for group in groups {
            let (horizon, swapped) =
                self.clean_group(log, &group, &config, &filter, &mut txns, &mut stats)?;
            if swapped {
                if let Some(h) = horizon {
                    earliest_horizon = Some(earliest_horizon.map_or(h, |e| e.min(h)));
                }
            } else {
                stats.groups_aborted += 1;
            }
        }
        stats.end_offset = end_offset;
        {
            let mut state = self.state.lock();
            state.checkpoints.insert(tp.clone(), end_offset);
            match earliest_horizon {
                Some(h) => state.delete_horizons.insert(tp.clone(), h),
                None => state.delete_horizons.remove(tp),
            };
            self.write_checkpoint(&state)?;
        }
        tracing::info!(
            %tp,
            first_dirty = stats.first_dirty_offset,
            end = stats.end_offset,
            segments = stats.segments_cleaned,
            written = stats.segments_written,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_read = stats.records_read,
            records_kept = stats.records_kept,
            "log cleaned"
        );
        Ok(Some(stats))
    }

    /// Writes the cleaned form of `group` and swaps it in. Returns the earliest delete
    /// horizon of the tombstones kept and whether the swap happened.
    fn clean_group(
        &self,
        log: &Log,
        group: &[&SegmentView],
        config: &LogConfig,
        filter: &Filter<'_>,
        txns: &mut TxnTracker,
        stats: &mut CleanStats,
    ) -> Result<(Option<i64>, bool), StorageError> {
        let base = group[0].base_offset;
        let mut cleaned = Segment::create_with_suffix(log.dir(), base, CLEANED_SUFFIX)?;
        let result = (|| -> Result<Option<i64>, StorageError> {
            let mut horizon: Option<i64> = None;
            for s in group {
                stats.bytes_read += s.size;
                txns.add_aborted(log.collect_aborted_transactions(s.base_offset, s.next_offset)?);
                walk_segment(s, &mut |h, bytes| {
                    let out = filter
                        .apply(h, bytes, txns)
                        .map_err(|e| corrupt(&format!("batch at offset {}", h.base_offset), e))?;
                    stats.records_read += u64::try_from(h.records_count).unwrap_or(0);
                    let (nh, data, tombstones): (RecordBatchHeader, &[u8], bool) = match &out {
                        Outcome::Keep { tombstones } => (*h, bytes, *tombstones),
                        Outcome::Drop => return Ok(()),
                        Outcome::Rewrite(nh, data, tombstones) => (*nh, data, *tombstones),
                    };
                    // Tombstones and removable markers with a horizon need another cleaning.
                    if tombstones && nh.has_delete_horizon() {
                        let t = nh.base_timestamp;
                        horizon = Some(horizon.map_or(t, |e| e.min(t)));
                    }
                    stats.records_kept += u64::try_from(nh.records_count).unwrap_or(0);
                    stats.bytes_written += data.len() as u64;
                    cleaned
                        .append_batch(data, &nh, config.index_interval_bytes)
                        .map_err(StorageError::Io)?;
                    Ok(())
                })?;
            }
            // The aborts whose markers were kept because this pass removed their data.
            for a in txns.cleaned_index.drain(..) {
                cleaned.txn_index.append(a);
            }
            cleaned.finalize_time_index();
            cleaned.write_indexes()?;
            // Kafka gives the cleaned segment the newest mtime of the originals, so that
            // time retention of timestamp-less segments is not reset by cleaning.
            if let Some(mtime) = group.iter().filter_map(|s| mtime(&s.file)).max() {
                if let Err(e) = cleaned.file.set_modified(mtime) {
                    tracing::debug!(error = %e, "cannot set the cleaned segment's mtime");
                }
            }
            cleaned.sync_all_files()?;
            Ok(horizon)
        })();
        let horizon = match result {
            Ok(h) => h,
            Err(e) => {
                for p in [
                    cleaned.log_path.clone(),
                    cleaned.offset_index.path().to_path_buf(),
                    cleaned.time_index.path().to_path_buf(),
                    cleaned.txn_index.path().to_path_buf(),
                ] {
                    let _ = std::fs::remove_file(p);
                }
                return Err(e);
            }
        };
        let old: Vec<(i64, Arc<File>)> = group
            .iter()
            .map(|s| (s.base_offset, Arc::clone(&s.file)))
            .collect();
        let swapped = log.replace_segments(&old, cleaned)?;
        if swapped {
            stats.segments_cleaned += group.len();
            stats.segments_written += 1;
        }
        Ok((horizon, swapped))
    }
}

fn mtime(file: &File) -> Option<SystemTime> {
    file.metadata().and_then(|m| m.modified()).ok()
}

/// A visitor of batches (header and bytes).
type BatchVisitor<'a> = dyn FnMut(&RecordBatchHeader, &[u8]) -> Result<(), StorageError> + 'a;

/// Calls `f` with every batch (header and bytes) of a rolled segment.
fn walk_segment(s: &SegmentView, f: &mut BatchVisitor<'_>) -> Result<(), StorageError> {
    let mut reader = ChunkReader::new(&s.file, s.size, RECOVERY_CHUNK);
    let mut pos = 0u64;
    let name = format!("segment {}", s.base_offset);
    while let Some(h) = reader.header_at(pos)?.map_err(|e| corrupt(&name, e))? {
        let bytes = reader.get(pos, h.total_size())?;
        f(&h, bytes)?;
        pos += h.total_size() as u64;
    }
    Ok(())
}

fn first_batch_timestamp(s: &SegmentView) -> std::io::Result<Option<i64>> {
    let mut reader = ChunkReader::new(&s.file, s.size, 128);
    Ok(match reader.header_at(0)? {
        Ok(Some(h)) if h.max_timestamp >= 0 => Some(h.base_timestamp.min(h.max_timestamp)),
        _ => None,
    })
}

/// Kafka's `groupSegmentsBySize`: consecutive segments merge while the sum of their sizes
/// fits `segment.bytes`, their indexes fit `segment.index.bytes`, and their offsets fit a
/// segment's 32-bit relative offsets.
fn group_segments<'a>(segs: &[&'a SegmentView], config: &LogConfig) -> Vec<Vec<&'a SegmentView>> {
    let max_size = config.effective_segment_bytes();
    let max_index = config.segment_index_bytes;
    let mut groups = Vec::new();
    let mut i = 0;
    while i < segs.len() {
        let first = segs[i];
        let mut group = vec![first];
        let (mut size, mut index) = (first.size, first.index_bytes);
        i += 1;
        while i < segs.len() {
            let s = segs[i];
            let fits = size + s.size <= max_size
                && index + s.index_bytes <= max_index
                && s.next_offset - 1 - first.base_offset <= i64::from(i32::MAX);
            if !fits {
                break;
            }
            size += s.size;
            index += s.index_bytes;
            group.push(s);
            i += 1;
        }
        groups.push(group);
    }
    groups
}

/// What becomes of a batch; `tombstones` tells whether the written batch holds any.
enum Outcome {
    Keep { tombstones: bool },
    Drop,
    Rewrite(RecordBatchHeader, Vec<u8>, bool),
}

struct Filter<'a> {
    map: &'a HashMap<Box<[u8]>, i64>,
    map_latest: i64,
    now_ms: i64,
    delete_retention_ms: i64,
    producer_last: &'a HashMap<i64, LastRecord>,
}

/// Kafka's `CleanedTransactionMetadata`: which transactional batches met while walking a
/// range of the log were aborted, and which markers may go.
#[derive(Debug, Default)]
struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Aborted transactions reached and not yet ended by their marker, by producer, with
    /// whether a batch of theirs was met.
    ongoing_aborted: HashMap<i64, (AbortedTxn, bool)>,
    /// Producers whose transaction met in this walk is not aborted (committed).
    ongoing_committed: HashSet<i64>,
    /// Aborts whose marker is kept because their data was met: the cleaned segment's index.
    cleaned_index: Vec<AbortedTxn>,
}

impl TxnTracker {
    /// Adds the aborted transactions of the next segment (duplicates of ones already known
    /// are harmless: a reached transaction is not reset).
    fn add_aborted(&mut self, txns: Vec<AbortedTxn>) {
        self.pending.extend(txns);
        self.pending
            .make_contiguous()
            .sort_by_key(|a| (a.first_offset, a.last_offset));
    }

    fn consume_up_to(&mut self, offset: i64) {
        while self
            .pending
            .front()
            .is_some_and(|a| a.first_offset <= offset)
        {
            if let Some(a) = self.pending.pop_front() {
                self.ongoing_aborted
                    .entry(a.producer_id)
                    .or_insert((a, false));
            }
        }
    }

    /// A data batch: returns true when it belongs to an aborted transaction.
    fn on_data_batch(&mut self, h: &RecordBatchHeader) -> bool {
        self.consume_up_to(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&h.producer_id) {
            Some((_, seen)) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(h.producer_id);
                false
            }
        }
    }

    /// A control batch: returns true when it may be removed (its transaction has no data
    /// left in what was walked, or it was already emptied).
    fn on_control_batch(&mut self, h: &RecordBatchHeader, bytes: &[u8]) -> bool {
        self.consume_up_to(h.last_offset());
        if h.records_count == 0 {
            return true;
        }
        match parse_end_txn_marker(h, bytes) {
            Ok(Some(m)) if !m.commit => match self.ongoing_aborted.remove(&h.producer_id) {
                Some((a, true)) => {
                    self.cleaned_index.push(a);
                    false
                }
                _ => true,
            },
            Ok(Some(_)) => !self.ongoing_committed.remove(&h.producer_id),
            Ok(None) => true,
            // Not a transaction marker (or unreadable): kept, as Kafka keeps unknown types.
            Err(_) => false,
        }
    }
}

impl Filter<'_> {
    /// Kafka's `shouldRetainRecord`.
    fn retain(&self, h: &RecordBatchHeader, r: &RawRecord<'_>) -> bool {
        let offset = h.base_offset + i64::from(r.offset_delta);
        if offset > self.map_latest {
            return true;
        }
        let Some(key) = r.key else {
            // Keyless records cannot be compacted (Kafka counts them as invalid and drops).
            return false;
        };
        let latest = offset >= self.map.get(key).copied().unwrap_or(-1);
        let retain_deletes = !h.has_delete_horizon() || self.now_ms < h.base_timestamp;
        latest && (r.has_value || retain_deletes)
    }

    /// Kafka's `isBatchLastRecordOfProducer`: the batch holding an active producer's last
    /// sequence, or, when its state holds no data batch, a marker of its current epoch.
    fn last_of_producer(&self, h: &RecordBatchHeader) -> bool {
        if !h.has_producer_id() {
            return false;
        }
        self.producer_last
            .get(&h.producer_id)
            .is_some_and(|l| match l.last_data_offset {
                Some(offset) => h.last_offset() == offset,
                None => h.is_control() && h.producer_epoch == l.producer_epoch,
            })
    }

    /// A batch that goes whole: kept empty if it is its producer's last record.
    fn drop_batch(&self, h: &RecordBatchHeader) -> Result<Outcome, String> {
        if self.last_of_producer(h) {
            if h.records_count == 0 {
                return Ok(Outcome::Keep { tombstones: false });
            }
            let (nh, data) = empty_batch(h)?;
            return Ok(Outcome::Rewrite(nh, data, false));
        }
        Ok(Outcome::Drop)
    }

    /// Kafka's `MemoryRecords.filterTo` for one batch, with its `checkBatchRetention`.
    fn apply(
        &self,
        h: &RecordBatchHeader,
        bytes: &[u8],
        txns: &mut TxnTracker,
    ) -> Result<Outcome, String> {
        if h.is_control() {
            let removable = txns.on_control_batch(h, bytes);
            if !removable {
                return Ok(Outcome::Keep { tombstones: false });
            }
            if h.records_count == 0 {
                // Emptied by an earlier cleaning: Kafka's DELETE_EMPTY.
                return self.drop_batch(h);
            }
            // Kafka piggy-backs on the tombstone horizon: a marker without data left gets a
            // delete horizon and goes once it has passed.
            if h.has_delete_horizon() {
                if h.base_timestamp <= self.now_ms {
                    return self.drop_batch(h);
                }
                return Ok(Outcome::Keep { tombstones: true });
            }
            let section = records_section(h, bytes)?;
            let records = parse_records(&section, h.records_count)?;
            let horizon = self.now_ms.saturating_add(self.delete_retention_ms);
            let (nh, data) = rebuild_batch(h, &records, Some(horizon))?;
            return Ok(Outcome::Rewrite(nh, data, true));
        }
        if txns.on_data_batch(h) {
            // A batch of an aborted transaction: no consumer may see it.
            return self.drop_batch(h);
        }
        let section = records_section(h, bytes)?;
        let records = parse_records(&section, h.records_count)?;
        let kept: Vec<RawRecord<'_>> = records
            .iter()
            .copied()
            .filter(|r| self.retain(h, r))
            .collect();
        let has_tombstones = kept.iter().any(|r| !r.has_value);
        let needs_horizon = has_tombstones && !h.has_delete_horizon();
        if kept.len() == records.len() && !needs_horizon {
            return Ok(Outcome::Keep {
                tombstones: has_tombstones,
            });
        }
        if kept.is_empty() {
            // Kafka's RETAIN_EMPTY: a producer's last batch stays (without records) so that
            // its sequence and epoch survive.
            return self.drop_batch(h);
        }
        let horizon = if needs_horizon {
            Some(self.now_ms.saturating_add(self.delete_retention_ms))
        } else if h.has_delete_horizon() {
            Some(h.base_timestamp)
        } else {
            None
        };
        let (nh, data) = rebuild_batch(h, &kept, horizon)?;
        Ok(Outcome::Rewrite(nh, data, has_tombstones))
    }
}
