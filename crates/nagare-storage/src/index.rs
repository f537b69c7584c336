//! Sparse offset and time indexes, in Kafka's file formats.
//!
//! `.index`: 8-byte entries (offset relative to the segment base u32, file position u32).
//! `.timeindex`: 12-byte entries (timestamp i64, relative offset u32). All big-endian.
//!
//! Kafka memory-maps preallocated index files; without `unsafe` we keep the entries in memory
//! and write the files out (exactly sized, as Kafka leaves them after trimming) when a segment
//! is rolled, flushed or closed. Between those points the files may lag behind the log: that is
//! safe because an unclean restart rebuilds the indexes of every unflushed segment anyway.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Size of an offset index entry.
pub(crate) const OFFSET_ENTRY_SIZE: usize = 8;
/// Size of a time index entry.
pub(crate) const TIME_ENTRY_SIZE: usize = 12;

fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes entries `[persisted..]` after the already persisted prefix and trims the file.
pub(crate) fn write_tail(
    path: &Path,
    persisted: usize,
    entry_size: usize,
    bytes: &[u8],
) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    let f: File = crate::io::open(path, &opts)?;
    let start = (persisted * entry_size) as u64;
    crate::io::write_at(path, &f, bytes, start)?;
    crate::io::set_len(path, &f, start + bytes.len() as u64)?;
    Ok(())
}

/// Outcome of loading an index file.
pub(crate) enum Loaded<T> {
    /// The file exists and passed the sanity check.
    Ok(T),
    /// The file is missing or failed the sanity check; the index must be rebuilt.
    Rebuild(String),
}

/// The sparse offset index of one segment.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    path: PathBuf,
    base_offset: i64,
    entries: Vec<(u32, u32)>,
    /// Entries known to be in the file.
    persisted: usize,
    /// The file may differ from `entries[..persisted]` in length (after a truncation).
    dirty: bool,
}

impl OffsetIndex {
    /// An empty index (the file is created empty by the caller or on first write).
    pub(crate) fn new(path: PathBuf, base_offset: i64) -> Self {
        OffsetIndex {
            path,
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            dirty: false,
        }
    }

    /// Loads and sanity-checks the file (Kafka's `OffsetIndex.sanityCheck`, stricter: entries
    /// must be strictly increasing and point inside the log file).
    pub(crate) fn load(path: PathBuf, base_offset: i64, log_size: u64) -> io::Result<Loaded<Self>> {
        let Some(bytes) = read_file(&path)? else {
            return Ok(Loaded::Rebuild("missing".into()));
        };
        if bytes.len() % OFFSET_ENTRY_SIZE != 0 {
            return Ok(Loaded::Rebuild(format!(
                "size {} is not a multiple of {OFFSET_ENTRY_SIZE}",
                bytes.len()
            )));
        }
        let mut entries = Vec::with_capacity(bytes.len() / OFFSET_ENTRY_SIZE);
        for chunk in bytes.chunks_exact(OFFSET_ENTRY_SIZE) {
            let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if let Some(&(last_rel, last_pos)) = entries.last() {
                if rel <= last_rel || pos <= last_pos {
                    return Ok(Loaded::Rebuild(format!(
                        "entry ({rel}, {pos}) does not follow ({last_rel}, {last_pos})"
                    )));
                }
            }
            if u64::from(pos) >= log_size || rel > i32::MAX as u32 {
                return Ok(Loaded::Rebuild(format!(
                    "entry ({rel}, {pos}) is outside a log of {log_size} bytes"
                )));
            }
            entries.push((rel, pos));
        }
        let persisted = entries.len();
        Ok(Loaded::Ok(OffsetIndex {
            path,
            base_offset,
            entries,
            persisted,
            dirty: false,
        }))
    }

    /// Maximum number of entries for `segment.index.bytes`.
    fn max_entries(max_index_bytes: u64) -> usize {
        (max_index_bytes / OFFSET_ENTRY_SIZE as u64) as usize
    }

    /// True when no entry may be added under `segment.index.bytes` (the segment must roll).
    pub(crate) fn is_full(&self, max_index_bytes: u64) -> bool {
        self.entries.len() >= Self::max_entries(max_index_bytes)
    }

    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The last entry as (absolute offset, position).
    pub(crate) fn last_entry(&self) -> Option<(i64, u64)> {
        self.entries
            .last()
            .map(|&(rel, pos)| (self.base_offset + i64::from(rel), u64::from(pos)))
    }

    /// Adds an entry; ignored unless it follows the last one (callers only add increasing
    /// entries; this keeps the file valid whatever happens).
    pub(crate) fn append(&mut self, offset: i64, position: u64) {
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return;
        };
        let Ok(pos) = u32::try_from(position) else {
            return;
        };
        if let Some(&(last_rel, last_pos)) = self.entries.last() {
            if rel <= last_rel || pos <= last_pos {
                return;
            }
        }
        self.entries.push((rel, pos));
    }

    /// Kafka's `lookup`: the largest entry whose offset is <= `target`, as (offset, position),
    /// or (base offset, 0) when there is none.
    pub(crate) fn lookup(&self, target: i64) -> (i64, u64) {
        let rel = target - self.base_offset;
        if rel < 0 {
            return (self.base_offset, 0);
        }
        let idx = self.entries.partition_point(|&(r, _)| i64::from(r) <= rel);
        if idx == 0 {
            (self.base_offset, 0)
        } else {
            let (r, p) = self.entries[idx - 1];
            (self.base_offset + i64::from(r), u64::from(p))
        }
    }

    /// The last entry (absolute offset, position) whose position is <= `max_position` and
    /// whose offset is <= `max_offset`. Entries point at batch starts and every batch before
    /// an entry ends below its offset, so a read may skip straight to it.
    pub(crate) fn last_entry_within(
        &self,
        max_position: u64,
        max_offset: i64,
    ) -> Option<(i64, u64)> {
        let rel = max_offset - self.base_offset;
        let idx = self
            .entries
            .partition_point(|&(r, p)| u64::from(p) <= max_position && i64::from(r) <= rel);
        let (r, p) = *self.entries.get(idx.checked_sub(1)?)?;
        Some((self.base_offset + i64::from(r), u64::from(p)))
    }

    /// Drops every entry whose offset is >= `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) {
        let rel = offset - self.base_offset;
        let keep = self.entries.partition_point(|&(r, _)| i64::from(r) < rel);
        self.truncate_entries(keep);
    }

    fn truncate_entries(&mut self, keep: usize) {
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            if self.persisted > keep {
                self.persisted = keep;
                self.dirty = true;
            }
        }
    }

    /// Drops all entries and marks the file for a full rewrite (its contents are unknown).
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.persisted = 0;
        self.dirty = true;
    }

    /// True when the file lags behind the entries.
    pub(crate) fn needs_write(&self) -> bool {
        self.dirty || self.persisted < self.entries.len()
    }

    /// Writes the entries not yet in the file and trims it to the exact size.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        if !self.needs_write() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * OFFSET_ENTRY_SIZE);
        for &(rel, pos) in &self.entries[self.persisted..] {
            buf.extend_from_slice(&rel.to_be_bytes());
            buf.extend_from_slice(&pos.to_be_bytes());
        }
        write_tail(&self.path, self.persisted, OFFSET_ENTRY_SIZE, &buf)?;
        self.persisted = self.entries.len();
        self.dirty = false;
        Ok(())
    }

    /// The index file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Points the index at a renamed file.
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Bytes the entries take in the file.
    pub(crate) fn size_bytes(&self) -> u64 {
        (self.entries.len() * OFFSET_ENTRY_SIZE) as u64
    }

    /// Forgets what the file holds, so that the next write rewrites it whole.
    pub(crate) fn reset_persisted(&mut self) {
        self.persisted = 0;
        self.dirty = true;
    }
}

/// The sparse time index of one segment.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    path: PathBuf,
    base_offset: i64,
    entries: Vec<(i64, u32)>,
    persisted: usize,
    dirty: bool,
}

impl TimeIndex {
    /// An empty index.
    pub(crate) fn new(path: PathBuf, base_offset: i64) -> Self {
        TimeIndex {
            path,
            base_offset,
            entries: Vec::new(),
            persisted: 0,
            dirty: false,
        }
    }

    /// Loads and sanity-checks the file (Kafka's `TimeIndex.sanityCheck`, stricter:
    /// timestamps and offsets must not decrease).
    pub(crate) fn load(path: PathBuf, base_offset: i64) -> io::Result<Loaded<Self>> {
        let Some(bytes) = read_file(&path)? else {
            return Ok(Loaded::Rebuild("missing".into()));
        };
        if bytes.len() % TIME_ENTRY_SIZE != 0 {
            return Ok(Loaded::Rebuild(format!(
                "size {} is not a multiple of {TIME_ENTRY_SIZE}",
                bytes.len()
            )));
        }
        let mut entries = Vec::with_capacity(bytes.len() / TIME_ENTRY_SIZE);
        for chunk in bytes.chunks_exact(TIME_ENTRY_SIZE) {
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&chunk[0..8]);
            let ts = i64::from_be_bytes(ts);
            let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if let Some(&(last_ts, last_rel)) = entries.last() {
                if ts < last_ts || rel < last_rel {
                    return Ok(Loaded::Rebuild(format!(
                        "entry ({ts}, {rel}) does not follow ({last_ts}, {last_rel})"
                    )));
                }
            }
            if rel > i32::MAX as u32 {
                return Ok(Loaded::Rebuild(format!("relative offset {rel} too large")));
            }
            entries.push((ts, rel));
        }
        let persisted = entries.len();
        Ok(Loaded::Ok(TimeIndex {
            path,
            base_offset,
            entries,
            persisted,
            dirty: false,
        }))
    }

    /// True when no entry may be added under `segment.index.bytes`.
    pub(crate) fn is_full(&self, max_index_bytes: u64) -> bool {
        self.entries.len() >= (max_index_bytes / TIME_ENTRY_SIZE as u64) as usize
    }

    /// The last entry as (timestamp, absolute offset).
    pub(crate) fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(ts, rel)| (ts, self.base_offset + i64::from(rel)))
    }

    /// Kafka's `maybeAppend`: adds (timestamp, offset) only if the timestamp is larger than
    /// the last entry's (and the offset does not go backwards).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) {
        let Ok(rel) = u32::try_from(offset - self.base_offset) else {
            return;
        };
        match self.entries.last() {
            Some(&(last_ts, last_rel)) if timestamp <= last_ts || rel < last_rel => {}
            None if timestamp < 0 => {}
            _ => self.entries.push((timestamp, rel)),
        }
    }

    /// The largest entry whose timestamp is strictly below `target`, as (timestamp, offset).
    /// Every record at or before that offset has a smaller timestamp than `target`, so a
    /// search for the first record with timestamp >= `target` may start after it.
    pub(crate) fn lookup_before(&self, target: i64) -> Option<(i64, i64)> {
        let idx = self.entries.partition_point(|&(ts, _)| ts < target);
        if idx == 0 {
            None
        } else {
            let (ts, rel) = self.entries[idx - 1];
            Some((ts, self.base_offset + i64::from(rel)))
        }
    }

    /// Drops every entry whose offset is >= `offset`.
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) {
        let rel = offset - self.base_offset;
        let keep = self
            .entries
            .iter()
            .position(|&(_, r)| i64::from(r) >= rel)
            .unwrap_or(self.entries.len());
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            if self.persisted > keep {
                self.persisted = keep;
                self.dirty = true;
            }
        }
    }

    /// Drops all entries and marks the file for a full rewrite (its contents are unknown).
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
        self.persisted = 0;
        self.dirty = true;
    }

    /// True when the file lags behind the entries.
    pub(crate) fn needs_write(&self) -> bool {
        self.dirty || self.persisted < self.entries.len()
    }

    /// Writes the entries not yet in the file and trims it to the exact size.
    pub(crate) fn write(&mut self) -> io::Result<()> {
        if !self.needs_write() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * TIME_ENTRY_SIZE);
        for &(ts, rel) in &self.entries[self.persisted..] {
            buf.extend_from_slice(&ts.to_be_bytes());
            buf.extend_from_slice(&rel.to_be_bytes());
        }
        write_tail(&self.path, self.persisted, TIME_ENTRY_SIZE, &buf)?;
        self.persisted = self.entries.len();
        self.dirty = false;
        Ok(())
    }

    /// The index file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Points the index at a renamed file.
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Bytes the entries take in the file.
    pub(crate) fn size_bytes(&self) -> u64 {
        (self.entries.len() * TIME_ENTRY_SIZE) as u64
    }

    /// Forgets what the file holds, so that the next write rewrites it whole.
    pub(crate) fn reset_persisted(&mut self) {
        self.persisted = 0;
        self.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_truncate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::new(path.clone(), 100);
        assert_eq!(idx.lookup(150), (100, 0));
        idx.append(110, 4000);
        idx.append(120, 8000);
        idx.append(120, 9000); // ignored: not increasing
        idx.append(130, 12000);
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(109), (100, 0));
        assert_eq!(idx.lookup(110), (110, 4000));
        assert_eq!(idx.lookup(125), (120, 8000));
        assert_eq!(idx.lookup(1000), (130, 12000));
        assert_eq!(idx.last_entry_within(3999, 1000), None);
        assert_eq!(idx.last_entry_within(9000, 1000), Some((120, 8000)));
        assert_eq!(idx.last_entry_within(1 << 20, 125), Some((120, 8000)));
        assert_eq!(idx.last_entry_within(1 << 20, 130), Some((130, 12000)));
        assert!(idx.is_full(24));
        assert!(!idx.is_full(32));
        idx.write().expect("write");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 24);
        idx.truncate_to_offset(120);
        assert_eq!(idx.len(), 1);
        idx.write().expect("write");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 8);
        idx.append(115, 5000);
        idx.write().expect("write");
        match OffsetIndex::load(path.clone(), 100, 6000).expect("load") {
            Loaded::Ok(l) => {
                assert_eq!(l.len(), 2);
                assert_eq!(l.lookup(116), (115, 5000));
            }
            Loaded::Rebuild(r) => panic!("unexpected rebuild: {r}"),
        }
        // Position beyond the log: rebuild.
        assert!(matches!(
            OffsetIndex::load(path.clone(), 100, 4500).expect("load"),
            Loaded::Rebuild(_)
        ));
        std::fs::write(&path, [0u8; 12]).expect("write");
        assert!(matches!(
            OffsetIndex::load(path, 100, 1 << 20).expect("load"),
            Loaded::Rebuild(_)
        ));
    }

    #[test]
    fn time_index_semantics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::new(path.clone(), 0);
        idx.maybe_append(-1, 0); // no timestamp: ignored
        idx.maybe_append(1000, 5);
        idx.maybe_append(1000, 9); // not larger: ignored
        idx.maybe_append(2000, 12);
        assert_eq!(idx.last_entry(), Some((2000, 12)));
        assert_eq!(idx.lookup_before(1000), None);
        assert_eq!(idx.lookup_before(1001), Some((1000, 5)));
        assert_eq!(idx.lookup_before(5000), Some((2000, 12)));
        idx.write().expect("write");
        match TimeIndex::load(path.clone(), 0).expect("load") {
            Loaded::Ok(l) => assert_eq!(l.last_entry(), Some((2000, 12))),
            Loaded::Rebuild(r) => panic!("unexpected rebuild: {r}"),
        }
        idx.truncate_to_offset(12);
        assert_eq!(idx.last_entry(), Some((1000, 5)));
        idx.write().expect("write");
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 12);
        std::fs::write(&path, [1u8; 13]).expect("write");
        assert!(matches!(
            TimeIndex::load(path, 0).expect("load"),
            Loaded::Rebuild(_)
        ));
    }
}
