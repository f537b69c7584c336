//! The log's side of compaction: a consistent view of the segments the cleaner may rewrite,
//! the atomic swap of cleaned segments (Kafka's `.cleaned` → `.swap` → final-name protocol),
//! and the completion of a swap interrupted by a crash when the log is opened.
//!
//! Swap protocol (Kafka's `LocalLog.replaceSegments`): the cleaner writes and fsyncs
//! `<base>.log.cleaned` (+ indexes); under the log lock the files are renamed to `.swap`
//! (indexes first, data file last), the replaced segments are renamed to `.deleted`, and the
//! `.swap` files get their final names, with a directory fsync after each step. The data file
//! `<base>.log.swap` existing means "the cleaned segment is complete": on open it replaces
//! every segment whose base offset lies in `[base, its next offset)`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use super::{remove_file_if_exists, Log};
use crate::checkpoint::fsync_dir;
use crate::error::StorageError;
use crate::scan::{ChunkReader, RECOVERY_CHUNK};
use crate::segment::{
    file_name, parse_file_name, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
    TXN_INDEX_SUFFIX,
};

/// Extra suffix of the cleaner's output while it is being written.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Extra suffix of a complete cleaned segment being swapped in.
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// A rolled (immutable) segment as the cleaner sees it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentView {
    /// Base offset.
    pub(crate) base_offset: i64,
    /// One past its last offset.
    pub(crate) next_offset: i64,
    /// Bytes of batches.
    pub(crate) size: u64,
    /// The data file (the cleaner reads it without the log lock).
    pub(crate) file: Arc<File>,
    /// Kafka's `largestTimestamp` (max timestamp, else the file's mtime).
    pub(crate) largest_timestamp: i64,
    /// Size of its larger index.
    pub(crate) index_bytes: u64,
}

/// What the cleaner must keep of an active producer (Kafka's `LastRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LastRecord {
    /// Last offset of its last data batch, if its state still holds one: that batch carries
    /// its last sequence.
    pub(crate) last_data_offset: Option<i64>,
    /// Its current epoch: without a data batch, its last marker of this epoch is kept, which
    /// carries the epoch needed for fencing.
    pub(crate) producer_epoch: i16,
}

/// What the cleaner needs to know about a log, captured under the lock.
#[derive(Debug, Clone)]
pub(crate) struct CleaningView {
    /// Rolled segments, oldest first (never the active one).
    pub(crate) segments: Vec<SegmentView>,
    /// Base offset of the segment holding the log's last batch: the active segment, or the
    /// last non-empty rolled one when the active segment is empty (rolled by `segment.ms`
    /// without an append). The cleaner never goes past it, as Kafka never cleans its active
    /// segment, which always holds the last record: otherwise expired tombstones at the end
    /// of the log could vanish and leave consumers reading "to the end offset" stuck below it.
    pub(crate) active_base_offset: i64,
    /// The log start offset.
    pub(crate) log_start_offset: i64,
    /// First offset of the oldest open transaction (the cleaner stops below it).
    pub(crate) first_unstable_offset: Option<i64>,
    /// Producer id → what of it must survive: Kafka keeps that batch (empty if need be) so
    /// that the producer's sequence and epoch survive cleaning.
    pub(crate) producer_last: HashMap<i64, LastRecord>,
    /// The lowest log end left by a truncation since the previous view, if any.
    pub(crate) truncated_to: Option<i64>,
}

impl Log {
    /// The segments the cleaner may rewrite and the bounds it must respect.
    pub(crate) fn cleaning_view(&self) -> Result<CleaningView, StorageError> {
        let mut inner = self.lock_writable()?;
        let truncated_to = inner.truncated_to.take();
        let segments = inner
            .rolled
            .values()
            .map(|s| SegmentView {
                base_offset: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                file: Arc::clone(&s.file),
                largest_timestamp: s.largest_timestamp(),
                index_bytes: s.index_bytes(),
            })
            .collect();
        let producer_last = inner
            .producers
            .entries()
            .map(|e| {
                let last = LastRecord {
                    last_data_offset: e.batches.back().map(|b| b.last_offset),
                    producer_epoch: e.producer_epoch,
                };
                (e.producer_id, last)
            })
            .collect();
        let active_base_offset = if inner.active.size > 0 {
            inner.active.base_offset
        } else {
            inner
                .rolled
                .values()
                .rev()
                .find(|s| s.size > 0)
                .map_or(inner.active.base_offset, |s| s.base_offset)
        };
        Ok(CleaningView {
            segments,
            active_base_offset,
            log_start_offset: inner.log_start_offset,
            first_unstable_offset: inner.producers.first_unstable_offset(),
            producer_last,
            truncated_to,
        })
    }

    /// Swaps `cleaned` (files named `*.cleaned`, complete and fsynced) in for the consecutive
    /// rolled segments `old` (base offset and the data file seen when cleaning started).
    /// Returns `Ok(false)`, removing the cleaned files, when those segments changed meanwhile
    /// (retention, truncation, deletion). A failure mid-swap poisons the log; the next open
    /// completes or discards the swap.
    pub(crate) fn replace_segments(
        &self,
        old: &[(i64, Arc<File>)],
        mut cleaned: Segment,
    ) -> Result<bool, StorageError> {
        let discard = |seg: &mut Segment| {
            for p in [
                seg.log_path.clone(),
                seg.offset_index.path().to_path_buf(),
                seg.time_index.path().to_path_buf(),
                seg.txn_index.path().to_path_buf(),
            ] {
                if let Err(e) = remove_file_if_exists(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove cleaned file");
                }
            }
        };
        let mut inner = match self.lock_writable() {
            Ok(i) => i,
            Err(e) => {
                discard(&mut cleaned);
                return Err(e);
            }
        };
        let unchanged = !old.is_empty()
            && old[0].0 == cleaned.base_offset
            && old.iter().all(|(base, file)| {
                inner
                    .rolled
                    .get(base)
                    .is_some_and(|s| Arc::ptr_eq(&s.file, file))
            });
        if !unchanged {
            drop(inner);
            discard(&mut cleaned);
            return Ok(false);
        }
        let result = (|| -> std::io::Result<()> {
            cleaned.change_suffix(CLEANED_SUFFIX, SWAP_SUFFIX)?;
            fsync_dir(&self.dir)?;
            for (base, _) in old {
                if let Some(seg) = inner.rolled.remove(base) {
                    self.schedule_delete(&mut inner, seg)?;
                }
            }
            fsync_dir(&self.dir)?;
            cleaned.change_suffix(SWAP_SUFFIX, "")?;
            fsync_dir(&self.dir)?;
            Ok(())
        })();
        result.map_err(|e| self.poison(e))?;
        inner.rolled.insert(cleaned.base_offset, cleaned);
        Ok(true)
    }
}

/// One past the last offset of the complete batches of a data file.
fn next_offset_of(path: &Path, base_offset: i64) -> std::io::Result<i64> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = ChunkReader::new(&file, len, RECOVERY_CHUNK);
    let mut pos = 0u64;
    let mut next = base_offset;
    while let Ok(Some(h)) = reader.header_at(pos)? {
        next = next.max(h.next_offset());
        pos += h.total_size() as u64;
    }
    Ok(next)
}

/// Completes the swaps a crash interrupted (Kafka's `LogLoader` handling of `.swap` files):
/// each `<base>.log.swap` replaces the segments whose base offsets lie in `[base, its next
/// offset)` (always including `base` itself) and takes its final name, with its index files
/// if they were swapped too (stale ones are removed, so they are rebuilt). Other leftovers
/// are removed by the caller. Returns the base offsets of the swapped-in segments: their
/// transaction index is rebuilt from their batches (a missing `.txnindex` otherwise reads as
/// "no aborted transaction", and a crash mid-rename can leave either file behind).
pub(super) fn complete_swaps(dir: &Path) -> Result<Vec<i64>, StorageError> {
    let mut swaps = Vec::new();
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match parse_file_name(name) {
            Some((base, s)) if s == format!("{LOG_SUFFIX}{SWAP_SUFFIX}") => swaps.push(base),
            Some((base, LOG_SUFFIX)) => segments.push(base),
            _ => {}
        }
    }
    if swaps.is_empty() {
        return Ok(swaps);
    }
    swaps.sort_unstable();
    for &base in &swaps {
        let swap_path = dir.join(format!("{}{SWAP_SUFFIX}", file_name(base, LOG_SUFFIX)));
        let next = next_offset_of(&swap_path, base)?;
        let upper = next.max(base + 1);
        tracing::warn!(dir = %dir.display(), base, next, "completing an interrupted segment swap");
        for &old in segments.iter().filter(|&&b| b >= base && b < upper) {
            for suffix in [
                LOG_SUFFIX,
                INDEX_SUFFIX,
                TIME_INDEX_SUFFIX,
                TXN_INDEX_SUFFIX,
            ] {
                remove_file_if_exists(&dir.join(file_name(old, suffix)))?;
            }
        }
        segments.retain(|&b| b < base || b >= upper);
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX, TXN_INDEX_SUFFIX] {
            let from = dir.join(format!("{}{SWAP_SUFFIX}", file_name(base, suffix)));
            let to = dir.join(file_name(base, suffix));
            match crate::io::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    remove_file_if_exists(&to)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        crate::io::rename(&swap_path, &dir.join(file_name(base, LOG_SUFFIX)))?;
        fsync_dir(dir)?;
    }
    Ok(swaps)
}
