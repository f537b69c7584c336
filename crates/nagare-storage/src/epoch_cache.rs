//! The leader-epoch cache, after Kafka's `LeaderEpochFileCache`.
//!
//! An ordered list of (epoch, start offset): the first offset written by the leader of each
//! epoch. Followers use it (through OffsetsForLeaderEpoch) to find where their log diverges
//! from the leader's (KIP-101, KIP-279). Persisted in `leader-epoch-checkpoint` in Kafka's
//! text format: `0`, the count, then `<epoch> <start offset>` lines.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::checkpoint::{parse_checkpoint, write_atomic};

/// File name of the leader-epoch checkpoint.
pub(crate) const LEADER_EPOCH_CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// One entry of the leader-epoch cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// The first offset written in that epoch.
    pub start_offset: i64,
}

/// The in-memory cache and its file.
#[derive(Debug, Clone)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache writing to `dir/leader-epoch-checkpoint`.
    pub(crate) fn empty(dir: &Path) -> Self {
        LeaderEpochCache {
            path: dir.join(LEADER_EPOCH_CHECKPOINT_FILE),
            entries: Vec::new(),
        }
    }

    /// Loads the checkpoint (a missing file is an empty cache). A malformed file is an
    /// `Err(reason)` so that the caller can rebuild the cache from the batches instead.
    pub(crate) fn load(dir: &Path) -> io::Result<Result<Self, String>> {
        let mut cache = LeaderEpochCache::empty(dir);
        let text = match fs::read_to_string(&cache.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(cache)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Err(e.to_string())),
            Err(e) => return Err(e),
        };
        let lines = match parse_checkpoint(&text, 2) {
            Ok(l) => l,
            Err(reason) => return Ok(Err(reason)),
        };
        for parts in lines {
            let (Ok(epoch), Ok(start_offset)) = (parts[0].parse::<i32>(), parts[1].parse::<i64>())
            else {
                return Ok(Err(format!("malformed entry {parts:?}")));
            };
            let entry = EpochEntry {
                epoch,
                start_offset,
            };
            if epoch < 0 || start_offset < 0 {
                return Ok(Err(format!("negative entry {entry:?}")));
            }
            if let Some(last) = cache.entries.last() {
                if epoch <= last.epoch || start_offset < last.start_offset {
                    return Ok(Err(format!("entry {entry:?} does not follow {last:?}")));
                }
            }
            cache.entries.push(entry);
        }
        Ok(Ok(cache))
    }

    /// Writes the checkpoint atomically.
    pub(crate) fn write(&self) -> io::Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        write_atomic(&self.path, text.as_bytes())
    }

    /// All entries, oldest first.
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Kafka's `assign`: records that `epoch` starts at `start_offset`. An entry that is not
    /// newer than the latest one is ignored unless it moves the latest epoch's start back;
    /// entries that would no longer be monotonic are removed first. Returns whether the cache
    /// changed (and must be written). Negative values are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = match self.entries.last() {
            None => true,
            Some(last) => epoch != last.epoch || start_offset < last.start_offset,
        };
        if !needed {
            return false;
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` and the offset where the epoch
    /// after it starts (the log end offset for the latest epoch); (-1, -1) when unknown.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (-1, -1);
        if requested < 0 {
            return UNDEFINED;
        }
        let Some(latest) = self.entries.last() else {
            return UNDEFINED;
        };
        if latest.epoch == requested {
            // The current epoch is still being written: it ends at the log end.
            return (requested, log_end_offset);
        }
        // First entry with an epoch above the requested one.
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(higher_entry) = self.entries.get(higher) else {
            return UNDEFINED;
        };
        if higher == 0 {
            // Older than every known epoch: its data is gone, start from the first known one.
            (requested, higher_entry.start_offset)
        } else {
            (self.entries[higher - 1].epoch, higher_entry.start_offset)
        }
    }

    /// The epoch of the leader that wrote `offset`, if known.
    pub(crate) fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        let idx = self.entries.partition_point(|e| e.start_offset <= offset);
        idx.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Kafka's `truncateFromEnd`: removes entries starting at or after `end_offset`.
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self
            .entries
            .partition_point(|e| e.start_offset < end_offset);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Kafka's `truncateFromStart`: removes entries starting at or before `start_offset`,
    /// keeping the last of them with its start moved up to `start_offset`.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let removed = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        if removed == 0 {
            return false;
        }
        let last_removed = self.entries[removed - 1];
        if removed == 1 && last_removed.start_offset == start_offset {
            return false;
        }
        self.entries.drain(..removed);
        self.entries.insert(
            0,
            EpochEntry {
                epoch: last_removed.epoch,
                start_offset,
            },
        );
        true
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(e, o) in entries {
            assert!(c.assign(e, o));
        }
        c
    }

    #[test]
    fn end_offset_for_matches_kafka() {
        let empty = cache(&[]);
        assert_eq!(empty.end_offset_for(0, 10), (-1, -1));
        let c = cache(&[(2, 10), (4, 20), (7, 35)]);
        // Latest epoch: log end.
        assert_eq!(c.end_offset_for(7, 50), (7, 50));
        // Known earlier epoch: start of the next one.
        assert_eq!(c.end_offset_for(4, 50), (4, 35));
        assert_eq!(c.end_offset_for(2, 50), (2, 20));
        // Unknown epoch between known ones: the largest smaller epoch.
        assert_eq!(c.end_offset_for(5, 50), (4, 35));
        assert_eq!(c.end_offset_for(3, 50), (2, 20));
        // Older than all: requested epoch, first start offset.
        assert_eq!(c.end_offset_for(1, 50), (1, 10));
        // Newer than all known: undefined.
        assert_eq!(c.end_offset_for(8, 50), (-1, -1));
        assert_eq!(c.end_offset_for(-1, 50), (-1, -1));
    }

    #[test]
    fn assign_truncates_non_monotonic_entries() {
        let mut c = cache(&[(1, 0), (2, 10), (3, 20)]);
        assert!(!c.assign(3, 25), "same epoch, later offset: no-op");
        assert!(c.assign(3, 15), "same epoch, earlier start: replaces");
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 10
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 15
                }
            ]
        );
        assert!(c.assign(5, 12), "removes entries that are not below it");
        assert_eq!(c.entries().len(), 3);
        assert_eq!(c.latest_epoch(), Some(5));
        assert!(!c.assign(-1, 3));
    }

    #[test]
    fn truncation() {
        let mut c = cache(&[(1, 0), (2, 10), (3, 20)]);
        assert_eq!(c.epoch_for_offset(15), Some(2));
        assert_eq!(c.epoch_for_offset(25), Some(3));
        assert!(c.truncate_from_end(20));
        assert_eq!(c.latest_epoch(), Some(2));
        assert!(!c.truncate_from_end(20));
        assert!(c.truncate_from_start(12));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 2,
                start_offset: 12
            }]
        );
        assert!(!c.truncate_from_start(5));
        assert!(!c.truncate_from_start(12));
    }

    #[test]
    fn file_round_trip_and_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = LeaderEpochCache::empty(dir.path());
        c.assign(0, 0);
        c.assign(3, 100);
        c.write().expect("write");
        let text = fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE)).expect("read");
        assert_eq!(text, "0\n2\n0 0\n3 100\n");
        let loaded = LeaderEpochCache::load(dir.path())
            .expect("io")
            .expect("valid");
        assert_eq!(loaded.entries(), c.entries());
        fs::write(
            dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE),
            "0\n2\n3 100\n0 0\n",
        )
        .expect("write");
        assert!(LeaderEpochCache::load(dir.path()).expect("io").is_err());
        fs::write(dir.path().join(LEADER_EPOCH_CHECKPOINT_FILE), "garbage").expect("write");
        assert!(LeaderEpochCache::load(dir.path()).expect("io").is_err());
    }
}
