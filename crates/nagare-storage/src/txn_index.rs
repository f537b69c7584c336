//! The aborted-transaction index of one segment (Kafka's `TransactionIndex`, the
//! `<base>.txnindex` file).
//!
//! One entry per transaction aborted by an ABORT marker in the segment, in marker order:
//! what a `read_committed` fetch returns in `aborted_transactions` so that the consumer can
//! drop the aborted records. File format exactly Kafka's: 34-byte big-endian entries
//! `version i16 (0) | producer_id i64 | first_offset i64 | last_offset i64 |
//! last_stable_offset i64`. The file is created with the first entry (a segment without
//! aborts has none), held in memory and written like the other indexes (on roll, flush and
//! close); a segment recovered after an unclean shutdown has it rebuilt from its batches.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index::write_tail;

/// Size of one entry of a `.txnindex` file.
pub(crate) const TXN_ENTRY_SIZE: usize = 34;
/// The only entry version Kafka writes.
const TXN_ENTRY_VERSION: i16 = 0;

/// An aborted transaction, as Kafka's `AbortedTxn` (and the `aborted_transactions` entries
/// of a `read_committed` Fetch response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The last stable offset right after the marker was appended: a fetch up to it needs no
    /// entry of a later segment (Kafka stops collecting at the first entry whose LSO reaches
    /// the fetch's upper bound).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&TXN_ENTRY_VERSION.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }

    fn decode(b: &[u8]) -> Result<AbortedTxn, String> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if b.len() != TXN_ENTRY_SIZE {
            return Err(format!("entry of {} bytes", b.len()));
        }
        let version = i16::from_be_bytes([b[0], b[1]]);
        if version != TXN_ENTRY_VERSION {
            return Err(format!("unknown entry version {version}"));
        }
        Ok(AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        })
    }
}

/// The aborted-transaction index of one segment.
#[derive(Debug)]
pub(crate) struct TxnIndex {
    path: PathBuf,
    entries: Vec<AbortedTxn>,
    /// Entries the file holds (a prefix of `entries`).
    persisted: usize,
    /// The file differs from `entries[..persisted]` (after a truncation): write it.
    dirty: bool,
}

impl TxnIndex {
    /// An empty index whose file is `path` (not created until an entry is written).
    pub(crate) fn new(path: PathBuf) -> TxnIndex {
        TxnIndex {
            path,
            entries: Vec::new(),
            persisted: 0,
            dirty: false,
        }
    }

    /// Loads the file (missing: empty) and sanity-checks it as Kafka's
    /// `TransactionIndex.sanityCheck` does, plus ordering and the segment's offset range
    /// `[base_offset, next_offset)`. `Err` carries why the index must be rebuilt.
    pub(crate) fn load(
        path: PathBuf,
        base_offset: i64,
        next_offset: i64,
    ) -> io::Result<Result<TxnIndex, String>> {
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ok(TxnIndex::new(path))),
            Err(e) => return Err(e),
        };
        if bytes.len() % TXN_ENTRY_SIZE != 0 {
            return Ok(Err(format!(
                "size {} is not a multiple of {TXN_ENTRY_SIZE}",
                bytes.len()
            )));
        }
        let mut entries = Vec::with_capacity(bytes.len() / TXN_ENTRY_SIZE);
        for chunk in bytes.chunks_exact(TXN_ENTRY_SIZE) {
            let e = match AbortedTxn::decode(chunk) {
                Ok(e) => e,
                Err(why) => return Ok(Err(why)),
            };
            if e.last_offset < base_offset || e.last_offset >= next_offset {
                return Ok(Err(format!(
                    "entry with last offset {} outside the segment [{base_offset}, {next_offset})",
                    e.last_offset
                )));
            }
            if e.first_offset > e.last_offset {
                return Ok(Err(format!(
                    "entry with first offset {} after its last offset {}",
                    e.first_offset, e.last_offset
                )));
            }
            if entries
                .last()
                .is_some_and(|p: &AbortedTxn| p.last_offset >= e.last_offset)
            {
                return Ok(Err("entries out of order".into()));
            }
            entries.push(e);
        }
        let persisted = entries.len();
        Ok(Ok(TxnIndex {
            path,
            entries,
            persisted,
            dirty: false,
        }))
    }

    /// Adds the entry of an ABORT marker appended to the segment.
    pub(crate) fn append(&mut self, e: AbortedTxn) {
        self.entries.push(e);
    }

    /// True when entries were added or removed since the last write.
    pub(crate) fn needs_write(&self) -> bool {
        self.dirty || self.persisted < self.entries.len()
    }

    /// Writes pending entries (the file is created with the first one).
    pub(crate) fn write(&mut self) -> io::Result<()> {
        if !self.needs_write() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.persisted) * TXN_ENTRY_SIZE);
        for e in &self.entries[self.persisted..] {
            e.encode(&mut buf);
        }
        write_tail(&self.path, self.persisted, TXN_ENTRY_SIZE, &buf)?;
        self.persisted = self.entries.len();
        self.dirty = false;
        Ok(())
    }

    /// Kafka's `TransactionIndex.truncateTo`: drops the entries of markers at or above
    /// `offset`.
    pub(crate) fn truncate_to(&mut self, offset: i64) {
        let keep = self.entries.partition_point(|e| e.last_offset < offset);
        if keep < self.entries.len() {
            self.entries.truncate(keep);
            if self.persisted > keep {
                self.persisted = keep;
                self.dirty = true;
            }
        }
    }

    /// Forgets every entry (before a rebuild); the next write rewrites the file.
    pub(crate) fn reset(&mut self) {
        self.truncate_to(i64::MIN);
        if self.path.exists() {
            self.dirty = true;
        }
    }

    /// Kafka's `TransactionIndex.collectAbortedTxns`: adds to `out` every entry overlapping
    /// `[fetch_offset, upper_bound_offset)` and returns true once an entry's last stable
    /// offset reaches `upper_bound_offset` (no later segment can hold a relevant entry).
    pub(crate) fn collect(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
        out: &mut Vec<AbortedTxn>,
    ) -> bool {
        for e in &self.entries {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound_offset {
                out.push(*e);
            }
            if e.last_stable_offset >= upper_bound_offset {
                return true;
            }
        }
        false
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Points the index at a renamed file.
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn file_round_trip_truncation_and_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("00000000000000000000.txnindex");
        let mut idx = TxnIndex::new(path.clone());
        idx.write().expect("write");
        assert!(!path.exists(), "no file without entries");
        idx.append(e(1, 0, 5, 6));
        idx.append(e(2, 3, 9, 10));
        idx.write().expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").len(), 68);
        let bytes = fs::read(&path).expect("read");
        assert_eq!(&bytes[0..2], &[0, 0], "version 0");
        assert_eq!(&bytes[2..10], &1i64.to_be_bytes());
        let loaded = TxnIndex::load(path.clone(), 0, 10)
            .expect("io")
            .expect("valid");
        assert_eq!(loaded.entries, idx.entries);
        // Outside the segment, or garbage: rebuild.
        assert!(TxnIndex::load(path.clone(), 0, 9).expect("io").is_err());
        fs::write(&path, &bytes[..40]).expect("write");
        assert!(TxnIndex::load(path.clone(), 0, 10).expect("io").is_err());
        let mut bad = bytes.clone();
        bad[1] = 1;
        fs::write(&path, &bad).expect("write");
        assert!(TxnIndex::load(path.clone(), 0, 10).expect("io").is_err());
        // Truncation rewrites the file.
        idx.truncate_to(9);
        assert!(idx.needs_write());
        idx.write().expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").len(), 34);
    }

    #[test]
    fn collect_stops_at_the_upper_bound() {
        let mut idx = TxnIndex::new(PathBuf::from("x.txnindex"));
        idx.append(e(1, 0, 5, 6));
        idx.append(e(2, 3, 9, 10));
        idx.append(e(3, 12, 20, 21));
        let mut out = Vec::new();
        assert!(idx.collect(6, 10, &mut out));
        assert_eq!(out, vec![e(2, 3, 9, 10)]);
        out.clear();
        assert!(!idx.collect(0, 100, &mut out));
        assert_eq!(out.len(), 3);
    }
}
