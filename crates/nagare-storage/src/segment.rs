//! One log segment: `<base>.log` plus its sparse `.index` and `.timeindex`.

use std::fs::File;
use std::io;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use nagare_protocol::record_batch::{validate_crc, RecordBatchHeader};

use crate::index::{Loaded, OffsetIndex, TimeIndex};
use crate::scan::{checked_index_start, find_batch, ChunkReader, RECOVERY_CHUNK};
use crate::txn_index::TxnIndex;

/// Suffix of segment data files.
pub(crate) const LOG_SUFFIX: &str = ".log";
/// Suffix of offset index files.
pub(crate) const INDEX_SUFFIX: &str = ".index";
/// Suffix of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Suffix of aborted-transaction index files (Kafka's `.txnindex`).
pub(crate) const TXN_INDEX_SUFFIX: &str = ".txnindex";
/// Suffix Kafka appends to files scheduled for deletion.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// Kafka's file name for an offset: 20 zero-padded digits plus a suffix.
pub(crate) fn file_name(offset: i64, suffix: &str) -> String {
    format!("{offset:020}{suffix}")
}

/// Parses `<20 digits><suffix>`, returning the offset and the suffix.
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &str)> {
    if name.len() < 20 {
        return None;
    }
    let (digits, suffix) = name.split_at(20);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, suffix))
}

/// A segment of the log. All mutation happens under the log's lock; readers take an
/// `Arc<File>` and the size at that moment and read without the lock.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the first batch this segment may hold (its file name).
    pub(crate) base_offset: i64,
    /// The data file, shared with readers (fetch hands it to `sendfile`).
    pub(crate) file: Arc<File>,
    /// Path of the data file.
    pub(crate) log_path: PathBuf,
    /// Valid bytes in the data file.
    pub(crate) size: u64,
    /// Sparse offset index.
    pub(crate) offset_index: OffsetIndex,
    /// Sparse time index.
    pub(crate) time_index: TimeIndex,
    /// Aborted transactions whose ABORT marker is in this segment.
    pub(crate) txn_index: TxnIndex,
    /// Bytes appended since the last index entry (`index.interval.bytes` spacing).
    pub(crate) bytes_since_last_index_entry: u64,
    /// Largest batch max timestamp in the segment, or -1.
    pub(crate) max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`, or -1.
    pub(crate) offset_of_max_timestamp: i64,
    /// One past the last offset in the segment (`base_offset` when empty).
    pub(crate) next_offset: i64,
    /// When the segment received its first append, for `segment.ms`.
    pub(crate) roll_base_ms: Option<i64>,
}

use crate::io::{open_rw, remove_if_exists};

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Segment {
    fn with_file(dir: &Path, base_offset: i64, file: File, size: u64) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(file),
            log_path: dir.join(file_name(base_offset, LOG_SUFFIX)),
            size,
            offset_index: OffsetIndex::new(
                dir.join(file_name(base_offset, INDEX_SUFFIX)),
                base_offset,
            ),
            time_index: TimeIndex::new(
                dir.join(file_name(base_offset, TIME_INDEX_SUFFIX)),
                base_offset,
            ),
            txn_index: TxnIndex::new(dir.join(file_name(base_offset, TXN_INDEX_SUFFIX))),
            bytes_since_last_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            next_offset: base_offset,
            roll_base_ms: None,
        }
    }

    /// Creates an empty segment (replacing any leftover files of the same name).
    pub(crate) fn create(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let file = open_rw(&dir.join(file_name(base_offset, LOG_SUFFIX)), true)?;
        let seg = Segment::with_file(dir, base_offset, file, 0);
        let rest = (|| {
            open_rw(seg.offset_index.path(), true)?;
            open_rw(seg.time_index.path(), true)?;
            // A leftover transaction index of an earlier segment at this base must not
            // describe the new one (it is created lazily, so it is removed, not emptied).
            remove_if_exists(seg.txn_index.path())
        })();
        if let Err(e) = rest {
            seg.remove_files();
            return Err(e);
        }
        Ok(seg)
    }

    /// Opens an existing segment's data file. Indexes are empty and `next_offset` is the base
    /// until [`Segment::load`] or [`Segment::recover`] runs.
    pub(crate) fn open(dir: &Path, base_offset: i64) -> io::Result<Segment> {
        let file = open_rw(&dir.join(file_name(base_offset, LOG_SUFFIX)), false)?;
        let size = file.metadata()?.len();
        Ok(Segment::with_file(dir, base_offset, file, size))
    }

    /// Loads the index files and walks the batches after the last index entry to find the
    /// segment's end. Returns why the segment must be recovered instead, if it must.
    pub(crate) fn load(&mut self) -> io::Result<Option<String>> {
        match OffsetIndex::load(
            self.offset_index.path().to_path_buf(),
            self.base_offset,
            self.size,
        )? {
            Loaded::Ok(i) => self.offset_index = i,
            Loaded::Rebuild(why) => return Ok(Some(format!("offset index: {why}"))),
        }
        match TimeIndex::load(self.time_index.path().to_path_buf(), self.base_offset)? {
            Loaded::Ok(i) => self.time_index = i,
            Loaded::Rebuild(why) => return Ok(Some(format!("time index: {why}"))),
        }
        self.scan_tail()
    }

    /// Loads the transaction index file (after [`Segment::load`], which finds the segment's
    /// end). Returns why it must be rebuilt from the batches instead, if it must; the index is
    /// then empty.
    pub(crate) fn load_txn_index(&mut self) -> io::Result<Option<String>> {
        let path = self.txn_index.path().to_path_buf();
        match TxnIndex::load(path.clone(), self.base_offset, self.next_offset)? {
            Ok(idx) => {
                self.txn_index = idx;
                Ok(None)
            }
            Err(why) => {
                self.txn_index = TxnIndex::new(path);
                self.txn_index.reset();
                Ok(Some(why))
            }
        }
    }

    /// Recomputes `next_offset`, the max timestamp and the index spacing from the index files'
    /// last entries and the batches after the last offset index entry. Returns a reason if the
    /// indexes and the data disagree or a batch header is bad.
    fn scan_tail(&mut self) -> io::Result<Option<String>> {
        let entry = self.offset_index.last_entry();
        let (start_pos, expect_last) = match entry {
            Some((offset, pos)) => (pos, Some(offset)),
            None => (0, None),
        };
        (self.max_timestamp, self.offset_of_max_timestamp) =
            self.time_index.last_entry().unwrap_or((-1, -1));
        self.next_offset = self.base_offset;
        let mut reader = ChunkReader::headers(&self.file, self.size);
        let mut pos = start_pos;
        let mut first = true;
        loop {
            let h = match reader.header_at(pos)? {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Ok(Some(format!("batch at position {pos}: {e}"))),
            };
            if first {
                if let Some(last) = expect_last {
                    if h.last_offset() != last {
                        return Ok(Some(format!(
                            "index entry offset {last} does not match batch ending at {}",
                            h.last_offset()
                        )));
                    }
                }
                first = false;
            }
            if h.base_offset < self.next_offset || h.last_offset_delta < 0 {
                return Ok(Some(format!("batch at position {pos} goes backwards")));
            }
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.offset_of_max_timestamp = h.last_offset();
            }
            self.next_offset = h.next_offset();
            pos += h.total_size() as u64;
        }
        if first && expect_last.is_some() {
            return Ok(Some("offset index points past the last batch".into()));
        }
        if let Some((last_time, last_time_offset)) = self.time_index.last_entry() {
            if last_time_offset >= self.next_offset {
                return Ok(Some(format!(
                    "time index offset {last_time_offset} is past the segment end {}",
                    self.next_offset
                )));
            }
            // The last entry seeds the segment's max timestamp (retention, ListOffsets
            // MAX_TIMESTAMP): it must be the max timestamp of the batch ending at its offset.
            // One header walk from the nearest (checked) offset index entry.
            // (A read error here makes recovery rescan, which meets it again if it is real.)
            let matches = matches!(
                self.find(last_time_offset),
                Ok(Some((_, h))) if h.last_offset() == last_time_offset
                    && h.max_timestamp == last_time
            );
            if !matches {
                return Ok(Some(format!(
                    "time index entry ({last_time}, {last_time_offset}) does not match its batch"
                )));
            }
        }
        if let Some((offset, _)) = entry {
            if offset >= self.next_offset {
                return Ok(Some("offset index is past the segment end".into()));
            }
        }
        self.bytes_since_last_index_entry = self.size - start_pos;
        Ok(None)
    }

    /// Kafka's `LogSegment.recover`: walks every batch from the start checking length, magic,
    /// offsets and CRC, rebuilds both indexes, and truncates the file at the first invalid
    /// batch. `on_batch` sees every valid batch (to rebuild the epoch cache). Returns the
    /// number of bytes truncated.
    ///
    /// Batches ending below `trusted_below` (the recovery point: fsynced before it moved) have
    /// only their headers checked, not their CRC, like every segment below the recovery point
    /// (whose CRCs are not read either): after a crash only the unflushed tail is read whole.
    pub(crate) fn recover(
        &mut self,
        index_interval_bytes: u64,
        trusted_below: i64,
        on_batch: &mut dyn FnMut(&RecordBatchHeader),
    ) -> io::Result<u64> {
        let file_len = self.file.metadata()?.len();
        self.offset_index.reset();
        self.time_index.reset();
        // Rebuilt by the caller, which replays the producer state over the batches.
        self.txn_index.reset();
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        self.bytes_since_last_index_entry = 0;
        self.next_offset = self.base_offset;
        let file = Arc::clone(&self.file);
        let mut headers = ChunkReader::headers(&file, file_len);
        let mut reader = ChunkReader::new(&file, file_len, RECOVERY_CHUNK);
        let mut pos = 0u64;
        loop {
            let h = match headers.header_at(pos)? {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(segment = %self.log_path.display(), pos, error = %e, "invalid batch during recovery; truncating");
                    break;
                }
            };
            let rel_last = h.last_offset() - self.base_offset;
            if h.base_offset < self.next_offset
                || h.last_offset_delta < 0
                || rel_last > i64::from(i32::MAX)
            {
                tracing::warn!(segment = %self.log_path.display(), pos, base_offset = h.base_offset, "batch offsets out of order during recovery; truncating");
                break;
            }
            if h.last_offset() >= trusted_below {
                let bytes = reader.get(pos, h.total_size())?;
                if let Err(e) = validate_crc(bytes) {
                    tracing::warn!(segment = %self.log_path.display(), pos, error = %e, "corrupt batch during recovery; truncating");
                    break;
                }
            }
            self.index_batch(pos, &h, index_interval_bytes);
            on_batch(&h);
            pos += h.total_size() as u64;
        }
        self.size = pos;
        let truncated = file_len - pos;
        if truncated > 0 {
            crate::io::set_len(&self.log_path, &self.file, pos)?;
        }
        Ok(truncated)
    }

    /// Updates the max timestamp and the sparse indexes for a batch at `pos`, exactly as
    /// Kafka's `LogSegment.append` does per batch: an index entry (batch last offset, batch
    /// position) once more than `index.interval.bytes` were appended since the last one.
    fn index_batch(&mut self, pos: u64, h: &RecordBatchHeader, index_interval_bytes: u64) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.last_offset();
        }
        if self.bytes_since_last_index_entry > index_interval_bytes {
            self.offset_index.append(h.last_offset(), pos);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += h.total_size() as u64;
        self.next_offset = h.next_offset();
    }

    /// Appends already validated batches with one positioned write, then indexes them.
    pub(crate) fn append(
        &mut self,
        data: &[u8],
        headers: &[RecordBatchHeader],
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> io::Result<()> {
        crate::io::write_at(&self.log_path, &self.file, data, self.size)?;
        let mut pos = self.size;
        for h in headers {
            self.index_batch(pos, h, index_interval_bytes);
            pos += h.total_size() as u64;
        }
        self.size = pos;
        if self.roll_base_ms.is_none() {
            self.roll_base_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Position and header of the first batch whose last offset is >= `offset`.
    pub(crate) fn find(&self, offset: i64) -> io::Result<Option<(u64, RecordBatchHeader)>> {
        let mut reader = ChunkReader::headers(&self.file, self.size);
        let start = checked_index_start(
            &mut reader,
            self.offset_index.lookup(offset),
            &self.log_path,
        )?;
        find_batch(&mut reader, start, offset)?
            .map_err(|e| corrupt(format!("{}: {e}", self.log_path.display())))
    }

    /// Removes every batch containing an offset >= `offset` (a batch straddling it goes
    /// entirely) and fixes the indexes. Returns whether anything was removed.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> io::Result<bool> {
        if offset >= self.next_offset {
            return Ok(false);
        }
        let Some((pos, h)) = self.find(offset)? else {
            return Ok(false);
        };
        crate::io::set_len(&self.log_path, &self.file, pos)?;
        self.size = pos;
        self.offset_index.truncate_to_offset(h.base_offset);
        self.time_index.truncate_to_offset(h.base_offset);
        self.txn_index.truncate_to(h.base_offset);
        if let Some(reason) = self.scan_tail()? {
            return Err(corrupt(format!(
                "{} after truncation: {reason}",
                self.log_path.display()
            )));
        }
        if self.size == 0 {
            self.roll_base_ms = None;
        }
        Ok(true)
    }

    /// Adds the final time index entry for the max timestamp (Kafka does this when a segment
    /// becomes inactive or is closed, so that the last entry holds the segment's max).
    pub(crate) fn finalize_time_index(&mut self) {
        if self.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
        }
    }

    /// Writes pending index entries; returns the files written.
    /// The paths of the index files (to fsync after a write of them failed part-way).
    pub(crate) fn index_paths(&self) -> Vec<PathBuf> {
        vec![
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
            self.txn_index.path().to_path_buf(),
        ]
    }

    /// Removes the segment's files (a segment created by a roll that then failed).
    pub(crate) fn remove_files(&self) {
        for p in [
            self.log_path.as_path(),
            self.offset_index.path(),
            self.time_index.path(),
            self.txn_index.path(),
        ] {
            if let Err(e) = remove_if_exists(p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove the files of a failed roll");
            }
        }
    }

    /// Cuts the data file back to the valid size after a failed append (a short write may
    /// have left a partial batch behind it).
    pub(crate) fn cut_back(&self) -> io::Result<()> {
        crate::io::set_len(&self.log_path, &self.file, self.size)
    }

    pub(crate) fn write_indexes(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        if self.offset_index.needs_write() {
            self.offset_index.write()?;
            written.push(self.offset_index.path().to_path_buf());
        }
        if self.time_index.needs_write() {
            self.time_index.write()?;
            written.push(self.time_index.path().to_path_buf());
        }
        if self.txn_index.needs_write() {
            self.txn_index.write()?;
            written.push(self.txn_index.path().to_path_buf());
        }
        Ok(written)
    }

    /// The timestamp retention compares against: the max timestamp, or the file's mtime for a
    /// segment without timestamps (Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            return self.max_timestamp;
        }
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(-1)
    }

    /// Max timestamp of the first batch, if the segment has one (for `segment.ms` on load).
    pub(crate) fn first_batch_timestamp(&self) -> io::Result<Option<i64>> {
        let mut reader = ChunkReader::new(&self.file, self.size, 128);
        Ok(match reader.header_at(0)? {
            Ok(Some(h)) if h.max_timestamp >= 0 => Some(h.max_timestamp),
            _ => None,
        })
    }

    /// Creates an empty segment whose files carry an extra suffix (`<base>.log.cleaned`, ...):
    /// the log cleaner's output before it is swapped in.
    pub(crate) fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        extra: &str,
    ) -> io::Result<Segment> {
        let name = |suffix: &str| dir.join(format!("{}{extra}", file_name(base_offset, suffix)));
        let file = open_rw(&name(LOG_SUFFIX), true)?;
        let mut seg = Segment::with_file(dir, base_offset, file, 0);
        seg.log_path = name(LOG_SUFFIX);
        seg.offset_index.set_path(name(INDEX_SUFFIX));
        seg.time_index.set_path(name(TIME_INDEX_SUFFIX));
        seg.txn_index.set_path(name(TXN_INDEX_SUFFIX));
        open_rw(seg.offset_index.path(), true)?;
        open_rw(seg.time_index.path(), true)?;
        remove_if_exists(seg.txn_index.path())?;
        Ok(seg)
    }

    /// Appends one batch (the cleaner's output) and indexes it; unlike [`Segment::append`] it
    /// leaves `roll_base_ms` alone.
    pub(crate) fn append_batch(
        &mut self,
        data: &[u8],
        h: &RecordBatchHeader,
        index_interval_bytes: u64,
    ) -> io::Result<()> {
        crate::io::write_at(&self.log_path, &self.file, data, self.size)?;
        let pos = self.size;
        self.index_batch(pos, h, index_interval_bytes);
        self.size = pos + data.len() as u64;
        Ok(())
    }

    /// Renames the segment's files from `<name><from>` to `<name><to>` (extra suffixes such as
    /// `.cleaned`, `.swap` or ""), indexes first and the data file last, so that the data
    /// file's name always tells how far a crash got.
    pub(crate) fn change_suffix(&mut self, from: &str, to: &str) -> io::Result<()> {
        let dir = self
            .log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let base = self.base_offset;
        let name =
            |suffix: &str, extra: &str| dir.join(format!("{}{extra}", file_name(base, suffix)));
        for suffix in [
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
            LOG_SUFFIX,
        ] {
            match crate::io::rename(&name(suffix, from), &name(suffix, to)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && suffix != LOG_SUFFIX => {}
                Err(e) => return Err(e),
            }
        }
        self.log_path = name(LOG_SUFFIX, to);
        self.offset_index.set_path(name(INDEX_SUFFIX, to));
        self.time_index.set_path(name(TIME_INDEX_SUFFIX, to));
        self.txn_index.set_path(name(TXN_INDEX_SUFFIX, to));
        Ok(())
    }

    /// Fsyncs the data file and both index files (after [`Segment::write_indexes`]).
    pub(crate) fn sync_all_files(&self) -> io::Result<()> {
        crate::io::sync_all(&self.log_path, &self.file)?;
        for p in [self.offset_index.path(), self.time_index.path()] {
            crate::io::sync_path(p)?;
        }
        match File::open(self.txn_index.path()) {
            Ok(f) => crate::io::sync_all(self.txn_index.path(), &f)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Bytes the two index files take (for the cleaner's grouping by `segment.index.bytes`).
    pub(crate) fn index_bytes(&self) -> u64 {
        self.offset_index
            .size_bytes()
            .max(self.time_index.size_bytes())
    }

    /// Renames the segment's files to `*.deleted` (Kafka's asynchronous delete) and returns
    /// the new paths. Readers holding the data file keep working.
    pub(crate) fn rename_for_delete(&mut self) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let dir = self
            .log_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        for suffix in [
            LOG_SUFFIX,
            INDEX_SUFFIX,
            TIME_INDEX_SUFFIX,
            TXN_INDEX_SUFFIX,
        ] {
            let from = dir.join(file_name(self.base_offset, suffix));
            let to = dir.join(format!(
                "{}{DELETED_SUFFIX}",
                file_name(self.base_offset, suffix)
            ));
            match crate::io::rename(&from, &to) {
                Ok(()) => out.push(to),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let renamed = |suffix: &str| {
            dir.join(format!(
                "{}{DELETED_SUFFIX}",
                file_name(self.base_offset, suffix)
            ))
        };
        self.log_path = renamed(LOG_SUFFIX);
        self.offset_index.set_path(renamed(INDEX_SUFFIX));
        self.time_index.set_path(renamed(TIME_INDEX_SUFFIX));
        self.txn_index.set_path(renamed(TXN_INDEX_SUFFIX));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(file_name(42, ".log"), "00000000000000000042.log");
        assert_eq!(
            parse_file_name("00000000000000000042.log"),
            Some((42, ".log"))
        );
        assert_eq!(
            parse_file_name("00000000000000000042.log.deleted"),
            Some((42, ".log.deleted"))
        );
        assert_eq!(parse_file_name("0000000000000000004x.log"), None);
        assert_eq!(parse_file_name("leader-epoch-checkpoint"), None);
    }
}
