//! The core's in-memory view of the replicated log: the entries after the latest snapshot and
//! the leader-epoch cache (Kafka's `LeaderEpochFileCache`) derived from them.
//!
//! Keeping the un-snapshotted tail in memory is the raft-rs `MemStorage` trade-off: the KRaft
//! metadata log is bounded by periodic snapshots (KIP-630), and payloads are reference-counted
//! [`Bytes`](bytes::Bytes), so the core, the `Ready` handed to the shell and fetch responses
//! share the same buffers. The shell's disk stays the source of truth across restarts.

use std::collections::VecDeque;

use crate::types::{Entry, Epoch, Offset, Snapshot, SnapshotId};

/// Entries `[start, end)` plus the epoch cache.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemLog {
    /// Log start offset: the latest snapshot's end offset, or 0.
    start: Offset,
    /// Epoch of the entry at `start - 1` (the snapshot's epoch), 0 for an empty log.
    start_epoch: Epoch,
    /// Entries from `start` on, contiguous.
    entries: VecDeque<Entry>,
    /// `(epoch, first offset)` for every epoch present in `entries`, ascending.
    epochs: Vec<(Epoch, Offset)>,
    /// The latest snapshot, served to lagging replicas (KIP-630).
    snapshot: Option<Snapshot>,
}

impl MemLog {
    /// Rebuilds the log from what the disk holds. Entries that do not continue the log
    /// (a gap, an overlap or a falling epoch) end the recovered log: everything from the first
    /// such entry on is dropped, as a torn tail would be.
    pub(crate) fn recover(snapshot: Option<Snapshot>, entries: Vec<Entry>) -> (Self, usize) {
        let mut log = MemLog::default();
        if let Some(s) = snapshot {
            log.start = s.id.end_offset.max(0);
            log.start_epoch = s.id.epoch.max(0);
            log.snapshot = Some(s);
        }
        let mut dropped = 0;
        for (i, e) in entries.iter().enumerate() {
            if e.offset < log.start {
                continue;
            }
            if !log.can_append(e) {
                dropped = entries.len() - i;
                break;
            }
            log.append(e.clone());
        }
        (log, dropped)
    }

    pub(crate) fn start(&self) -> Offset {
        self.start
    }

    pub(crate) fn end(&self) -> Offset {
        self.start + self.entries.len() as Offset
    }

    /// Epoch of the last entry (or of the snapshot), the `last_fetched_epoch` of a fetch.
    pub(crate) fn last_epoch(&self) -> Epoch {
        self.entries.back().map_or(self.start_epoch, |e| e.epoch)
    }

    pub(crate) fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Whether `e` may be appended: the next offset, and an epoch not below the last one.
    pub(crate) fn can_append(&self, e: &Entry) -> bool {
        e.offset == self.end() && e.epoch >= self.last_epoch() && e.epoch >= 0
    }

    /// Appends one entry; the caller checked [`MemLog::can_append`].
    pub(crate) fn append(&mut self, e: Entry) {
        debug_assert!(self.can_append(&e));
        if self.epochs.last().is_none_or(|&(ep, _)| ep < e.epoch) {
            self.epochs.push((e.epoch, e.offset));
        }
        self.entries.push_back(e);
    }

    /// Removes every entry at or above `offset` (never below the log start).
    pub(crate) fn truncate(&mut self, offset: Offset) {
        let offset = offset.max(self.start);
        if offset >= self.end() {
            return;
        }
        let keep = usize::try_from(offset - self.start).unwrap_or(0);
        self.entries.truncate(keep);
        while self.epochs.last().is_some_and(|&(_, s)| s >= offset) {
            self.epochs.pop();
        }
    }

    /// The entry at `offset`, if it is in memory.
    pub(crate) fn get(&self, offset: Offset) -> Option<&Entry> {
        if offset < self.start {
            return None;
        }
        self.entries.get(usize::try_from(offset - self.start).ok()?)
    }

    /// Epoch of the entry at `offset`, also answering for `start - 1` from the snapshot id.
    pub(crate) fn epoch_at(&self, offset: Offset) -> Option<Epoch> {
        if offset == self.start - 1 && self.start > 0 {
            return Some(self.start_epoch);
        }
        self.get(offset).map(|e| e.epoch)
    }

    /// Up to `max` entries from `from` on.
    pub(crate) fn entries_from(&self, from: Offset, max: usize) -> Vec<Entry> {
        if from < self.start || from >= self.end() {
            return Vec::new();
        }
        let skip = usize::try_from(from - self.start).unwrap_or(usize::MAX);
        self.entries.iter().skip(skip).take(max).cloned().collect()
    }

    /// Kafka's `endOffsetForEpoch`: the largest epoch not above `epoch` in this log and the
    /// offset where it ends. `None` when the log holds nothing that old (only a snapshot of a
    /// newer epoch), in which case a fetcher needs the snapshot.
    pub(crate) fn end_offset_for_epoch(&self, epoch: Epoch) -> Option<(Epoch, Offset)> {
        let idx = self.epochs.partition_point(|&(ep, _)| ep <= epoch);
        if idx > 0 {
            let (ep, _) = self.epochs[idx - 1];
            let end = self.epochs.get(idx).map_or(self.end(), |&(_, s)| s);
            return Some((ep, end));
        }
        // No entry of an epoch <= `epoch` in memory: the snapshot (or the empty log) is the
        // last thing of an old enough epoch, and it ends at the log start.
        let first = self.epochs.first().map_or(self.end(), |&(_, s)| s);
        if self.start_epoch <= epoch {
            Some((self.start_epoch, first))
        } else {
            None
        }
    }

    /// Replaces everything below `snapshot.id.end_offset` by the snapshot (taken locally; the
    /// caller checked the id matches the log).
    pub(crate) fn compact(&mut self, snapshot: Snapshot) {
        let end = snapshot.id.end_offset;
        while self.entries.front().is_some_and(|e| e.offset < end) {
            self.entries.pop_front();
        }
        self.epochs.retain(|&(_, s)| s >= end);
        if let Some(first) = self.entries.front() {
            // The epoch that spans the snapshot boundary still starts in memory at `end`.
            if self.epochs.first().is_none_or(|&(ep, _)| ep != first.epoch) {
                self.epochs.insert(0, (first.epoch, end));
            }
        }
        self.start = end;
        self.start_epoch = snapshot.id.epoch;
        self.snapshot = Some(snapshot);
    }

    /// Replaces the whole log by a snapshot fetched from the leader (KIP-630).
    pub(crate) fn install(&mut self, snapshot: Snapshot) {
        self.entries.clear();
        self.epochs.clear();
        self.start = snapshot.id.end_offset;
        self.start_epoch = snapshot.id.epoch;
        self.snapshot = Some(snapshot);
    }

    /// Whether `id` names a prefix of this log that a snapshot may replace.
    pub(crate) fn matches_snapshot_id(&self, id: SnapshotId) -> bool {
        id.end_offset > self.start && self.epoch_at(id.end_offset - 1) == Some(id.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;
    use bytes::Bytes;

    fn e(offset: Offset, epoch: Epoch) -> Entry {
        Entry {
            offset,
            epoch,
            payload: EntryPayload::Data(Bytes::from_static(b"x")),
        }
    }

    fn log_of(epochs: &[Epoch]) -> MemLog {
        let entries = epochs
            .iter()
            .enumerate()
            .map(|(i, &ep)| e(i as Offset, ep))
            .collect();
        MemLog::recover(None, entries).0
    }

    #[test]
    fn end_offset_for_epoch_follows_kafka() {
        let log = log_of(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 2)));
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 2)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 5)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 5)));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 6)));
        assert_eq!(log.end_offset_for_epoch(9), Some((5, 6)));
    }

    #[test]
    fn truncate_drops_epochs() {
        let mut log = log_of(&[1, 1, 3, 3, 3, 5]);
        log.truncate(3);
        assert_eq!(log.end(), 3);
        assert_eq!(log.last_epoch(), 3);
        log.truncate(2);
        assert_eq!(log.last_epoch(), 1);
        assert_eq!(log.end_offset_for_epoch(3), Some((1, 2)));
    }

    #[test]
    fn recover_stops_at_gap_or_falling_epoch() {
        let (log, dropped) = MemLog::recover(None, vec![e(0, 1), e(1, 2), e(2, 1), e(3, 2)]);
        assert_eq!(log.end(), 2);
        assert_eq!(dropped, 2);
        let (log, dropped) = MemLog::recover(None, vec![e(0, 1), e(2, 1)]);
        assert_eq!((log.end(), dropped), (1, 1));
    }

    #[test]
    fn compact_and_snapshot_epochs() {
        let mut log = log_of(&[1, 1, 3, 3, 3, 5]);
        let id = SnapshotId {
            end_offset: 4,
            epoch: 3,
        };
        assert!(log.matches_snapshot_id(id));
        log.compact(Snapshot {
            id,
            data: Bytes::new(),
        });
        assert_eq!(log.start(), 4);
        assert_eq!(log.epoch_at(3), Some(3));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 5)));
        assert_eq!(log.end_offset_for_epoch(1), None);
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 6)));
        assert!(log.entries_from(2, 10).is_empty());
        assert_eq!(log.entries_from(4, 10).len(), 2);
    }
}
