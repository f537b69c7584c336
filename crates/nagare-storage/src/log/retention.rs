//! Retention: time and size retention, DeleteRecords (moving the log start offset), the
//! deferred deletion of segment files, and producer-id expiration.

use std::io;
use std::path::PathBuf;

use super::{remove_file_if_exists, Inner, Log};
use crate::error::StorageError;
use crate::segment::Segment;

impl Log {
    /// Renames a segment's files for deletion after `file.delete.delay.ms` (readers holding
    /// the file keep working) and forgets the segment.
    pub(super) fn schedule_delete(&self, inner: &mut Inner, mut seg: Segment) -> io::Result<()> {
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
    ///
    /// Open transactions do not bound it: Kafka lets DeleteRecords go up to the high
    /// watermark (the broker checks that bound), past the last stable offset, and then
    /// clamps the first unstable offset to the new log start (`UnifiedLog.
    /// updateFirstUnstableOffset`), which [`Log::first_unstable_offset`] does too. The
    /// transaction itself stays open and its marker still ends it.
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
    ///
    /// Time and size retention also stop at the first unstable offset: a segment goes only
    /// if it ends at or below `min(high watermark, first unstable offset)`, so an open
    /// transaction keeps its records (and a consumer reading committed data never finds its
    /// start deleted under it). Kafka bounds retention by the high watermark alone.
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
        // Producer snapshots of segments not yet past the caller's bound (with tiered
        // storage: not yet uploaded, KIP-405 uploads each segment's end snapshot) are kept;
        // never below the log start, so they cannot pile up.
        let keep_from = high_watermark.max(inner.log_start_offset);
        inner.producers.keep_snapshots_from(keep_from);
        let bound = inner
            .producers
            .first_unstable_offset()
            .map_or(high_watermark, |fuo| fuo.min(high_watermark));
        if config.cleanup_policy_delete {
            if config.retention_ms >= 0 {
                deleted += self.delete_old_segments(&mut inner, &mut |s, next_base| {
                    next_base <= bound
                        && now_ms.saturating_sub(s.largest_timestamp()) > config.retention_ms
                })?;
            }
            if config.retention_bytes >= 0 {
                let mut excess = inner.size_bytes() as i64 - config.retention_bytes;
                deleted += self.delete_old_segments(&mut inner, &mut |s, next_base| {
                    if next_base <= bound && excess >= s.size as i64 {
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

    /// Forgets producers idle for longer than `expiration_ms` (`producer.id.expiration.ms`,
    /// Kafka default 86400000) without an ongoing transaction. Returns how many.
    pub fn remove_expired_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.inner
            .lock()
            .producers
            .remove_expired(now_ms, expiration_ms)
    }
}
