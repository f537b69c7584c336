//! Opening a log directory (Kafka's `LogLoader`): leftovers of interrupted operations
//! removed, segments loaded, torn or corrupt tails truncated after an unclean shutdown, the
//! leader-epoch checkpoint and the producer state rebuilt.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64};

use nagare_protocol::record_batch::{BatchError, RecordBatchHeader};
use parking_lot::{Mutex, RwLock};

use super::DiskState;
use super::{compaction, remove_file_if_exists, Inner, Log};
use crate::checkpoint::fsync_dir;
use crate::config::{LogConfig, TopicPartition};
use crate::epoch_cache::LeaderEpochCache;
use crate::error::StorageError;
use crate::producer_state::ProducerStateManager;
use crate::records::{parse_end_txn_marker, EndTxnMarker};
use crate::scan::{checked_index_start, ChunkReader};
use crate::segment::{
    parse_file_name, Segment, DELETED_SUFFIX, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
};
use crate::txn_index::AbortedTxn;

fn corrupt_io(path: &Path, e: BatchError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {e}", path.display()),
    )
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

/// Reads the marker of a producer's control batch at `pos` of `seg` (a few dozen bytes).
/// An unreadable one is logged and ignored, as replication does.
fn read_marker(seg: &Segment, pos: u64, h: &RecordBatchHeader) -> io::Result<Option<EndTxnMarker>> {
    if !h.is_control() || !h.has_producer_id() {
        return Ok(None);
    }
    let mut buf = vec![0u8; h.total_size()];
    seg.file.read_exact_at(&mut buf, pos)?;
    Ok(match parse_end_txn_marker(h, &buf) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(segment = %seg.log_path.display(), offset = h.base_offset, error = %e, "unreadable transaction marker");
            None
        }
    })
}

/// Replays the batches at or after `from` into the producer state. Returns the aborted
/// transactions met, with the base offset of the segment holding each marker (to rebuild
/// transaction indexes).
pub(super) fn replay_producers<'a>(
    segments: impl Iterator<Item = &'a Segment>,
    producers: &mut ProducerStateManager,
    from: i64,
) -> io::Result<Vec<(i64, AbortedTxn)>> {
    let mut aborted = Vec::new();
    for seg in segments {
        if seg.next_offset <= from {
            continue;
        }
        let mut reader = ChunkReader::headers(&seg.file, seg.size);
        let start = if seg.base_offset < from {
            checked_index_start(&mut reader, seg.offset_index.lookup(from), &seg.log_path)?
        } else {
            0
        };
        let mut pos = start;
        while let Some(h) = reader
            .header_at(pos)?
            .map_err(|e| corrupt_io(&seg.log_path, e))?
        {
            if h.base_offset >= from {
                let marker = read_marker(seg, pos, &h)?;
                if let Some(a) = producers.replay(&h, marker) {
                    aborted.push((seg.base_offset, a));
                }
            }
            pos += h.total_size() as u64;
        }
    }
    Ok(aborted)
}

impl Log {
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
        let mut swapped_in = Vec::new();
        if listing.iter().any(|(n, _)| n.ends_with(".log.swap")) {
            // Before anything else: a cleaned segment that was being swapped in replaces the
            // segments it was cleaned from.
            swapped_in = compaction::complete_swaps(&dir)?;
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
        // Segments whose transaction index is rebuilt by replaying the producer state.
        let mut txn_rebuild: BTreeSet<i64> = swapped_in.into_iter().collect();
        let mut dir_dirty = false;
        let mut i = 0;
        while i < segs.len() {
            let unflushed = i >= recover_from;
            let mut recover = unflushed;
            if !recover {
                if let Some(reason) = segs[i].load()? {
                    tracing::warn!(%tp, segment = segs[i].base_offset, %reason, "rebuilding index");
                    recover = true;
                } else if let Some(reason) = segs[i].load_txn_index()? {
                    tracing::warn!(%tp, segment = segs[i].base_offset, %reason, "rebuilding transaction index");
                    txn_rebuild.insert(segs[i].base_offset);
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
                txn_rebuild.insert(segs[i].base_offset);
                if truncated > 0 {
                    tracing::warn!(%tp, segment = segs[i].base_offset, truncated, "truncated torn or corrupt tail");
                    // Make the truncation durable before anything is appended over it: a
                    // lost truncation could otherwise bring the discarded tail back behind
                    // new batches after another crash.
                    crate::io::sync_all(&segs[i].log_path, &segs[i].file)?;
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
        let mut rolled: BTreeMap<i64, Segment> =
            segs.into_iter().map(|s| (s.base_offset, s)).collect();
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

        // Segments that were deleted after a corrupt one need nothing rebuilt.
        let live: BTreeSet<i64> = rolled
            .keys()
            .copied()
            .chain(std::iter::once(active.base_offset))
            .collect();
        txn_rebuild.retain(|b| live.contains(b));
        // Kafka's `LogLoader`: the producer state is replayed from a snapshot at or below the
        // first segment whose transaction index must be rebuilt (recovered segments, or an
        // index that failed its check), so every ABORT marker in those is seen again.
        let snapshot_limit = txn_rebuild.first().copied().unwrap_or(log_end);
        let (mut producers, from) =
            ProducerStateManager::load_at_or_below(&dir, tp.to_string(), log_end, snapshot_limit)?;
        let aborted = replay_producers(
            rolled.values().chain(std::iter::once(&active)),
            &mut producers,
            from.unwrap_or(i64::MIN),
        )?;
        for &base in &txn_rebuild {
            let seg = if base == active.base_offset {
                &mut active
            } else if let Some(s) = rolled.get_mut(&base) {
                s
            } else {
                continue;
            };
            seg.txn_index.reset();
            for (_, a) in aborted.iter().filter(|(b, _)| *b == base) {
                seg.txn_index.append(*a);
            }
            // Written now, like the other rebuilt indexes, and fsynced by the next flush.
            seg.txn_index.write()?;
            unsynced_files.push(seg.txn_index.path().to_path_buf());
        }

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
        let first_unstable = inner.first_unstable_offset().unwrap_or(-1);
        Ok(Log {
            dir,
            tp,
            config: RwLock::new(config),
            inner: Mutex::new(inner),
            flush_lock: Mutex::new(()),
            log_start_offset: AtomicI64::new(log_start),
            log_end_offset: AtomicI64::new(log_end),
            recovery_point: AtomicI64::new(recovery_point),
            first_unstable_offset: AtomicI64::new(first_unstable),
            poisoned: AtomicBool::new(false),
            disk: DiskState::default(),
        })
    }
}
