//! Truncation of a replica's log (replication divergence, a follower restarting past its log
//! end): made durable at once, with indexes, producer state and the epoch cache fixed.

use super::recovery::replay_producers;
use super::{Inner, Log};
use crate::checkpoint::fsync_dir;
use crate::error::StorageError;
use crate::producer_state::ProducerStateManager;
use crate::segment::Segment;

impl Log {
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

    /// Empties the log and restarts it at `offset` with the state of the data below it, which
    /// lives elsewhere (KIP-405's follower path, Kafka's `buildRemoteLogAuxState`: a follower
    /// far behind a tiered leader starts at the leader's local log start and takes the
    /// producer state and leader epochs of the remote log from the object store instead of
    /// fetching remote bytes). `producer_snapshot` is a producer snapshot file's contents taken
    /// at `offset` (as uploaded beside the remote segment ending just below it); `epochs` are
    /// `(epoch, start offset)` entries of the data below `offset`, oldest first. A snapshot
    /// that does not load (wrong offset, bad CRC) is dropped with a warning: the log then
    /// starts with empty producer state, as a plain `truncate_fully_and_start_at` does.
    pub fn truncate_fully_and_start_with_state(
        &self,
        offset: i64,
        producer_snapshot: Option<&[u8]>,
        epochs: &[(i32, i64)],
    ) -> Result<(), StorageError> {
        let offset = offset.max(0);
        let mut inner = self.lock_writable()?;
        self.truncate_fully_locked(&mut inner, offset)?;
        let mut changed = false;
        for &(epoch, start) in epochs.iter().filter(|(_, s)| *s <= offset) {
            changed |= inner.epochs.assign(epoch, start);
        }
        if changed {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        if let Some(bytes) = producer_snapshot {
            let path = self.dir.join(crate::segment::file_name(
                offset,
                crate::producer_state::SNAPSHOT_SUFFIX,
            ));
            crate::checkpoint::write_atomic(&path, bytes).map_err(|e| self.poison(e))?;
            let (producers, from) =
                ProducerStateManager::load(&self.dir, self.tp.to_string(), offset)
                    .map_err(|e| self.poison(e))?;
            if from == Some(offset) {
                inner.producers = producers;
                self.publish(&inner);
            } else {
                tracing::warn!(tp = %self.tp, offset, "remote producer snapshot unusable; starting with empty producer state");
            }
        }
        Ok(())
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
        // Kafka's `truncateFullyAndStartAt` drops every producer snapshot: one of the old
        // log would bring back producers (and open transactions pinning the last stable
        // offset) that the new log never saw.
        inner
            .producers
            .delete_snapshots_after(-1)
            .map_err(|e| self.poison(e))?;
        if inner.epochs.clear() {
            inner.epochs.write().map_err(|e| self.poison(e))?;
        }
        self.after_truncation(inner)
    }

    fn after_truncation(&self, inner: &mut Inner) -> Result<(), StorageError> {
        // Truncations are rare and must not be undone by a crash (a lost truncation would
        // resurrect diverged batches behind new ones): make them durable now.
        crate::io::sync_all(&inner.active.log_path, &inner.active.file)
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
}
