//! Walking the batch headers of a segment file with positioned reads.
//!
//! Reads go through a small buffer so that walking many small batches costs one `pread` per
//! chunk rather than one per batch. Only the region `[.., end)` is read: `end` is the segment
//! size captured under the log lock, so bytes being appended concurrently are never seen.
//!
//! Header walks (fetch, index scans) only need the 61-byte headers, not the records between
//! them, so their read-ahead adapts (see [`ChunkReader::headers`]): small reads first, chunks
//! while batches are small (one `pread` for many headers), single headers once batches are
//! large (no copying of record bytes that `sendfile` will send anyway), and never past a limit
//! the caller sets (a fetch's byte budget).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use nagare_protocol::record_batch::{BatchError, RecordBatchHeader, HEADER_SIZE};

/// Largest read-ahead of header walks.
pub(crate) const HEADER_CHUNK: usize = 64 * 1024;
/// First read of an adaptive header walk: covers the scan from a sparse index entry
/// (`index.interval.bytes`, 4096 by default) to the batch sought.
const FIRST_HEADER_READ: usize = 8 * 1024;
/// From this batch size on, reading the next header alone (one small `pread`) is cheaper than
/// copying the batch's records to reach it.
const LARGE_BATCH: usize = 4 * 1024;
/// Read-ahead for full scans (recovery), which read every byte anyway.
pub(crate) const RECOVERY_CHUNK: usize = 1024 * 1024;

/// A buffered positioned reader over `[0, end)` of a file.
pub(crate) struct ChunkReader<'f> {
    file: &'f File,
    end: u64,
    chunk_size: usize,
    buf: Vec<u8>,
    buf_pos: u64,
    /// Adaptive header walk: the read-ahead follows the batch sizes seen.
    adaptive: bool,
    /// Read-ahead never goes past this (a fetch's byte budget); reads of requested bytes do.
    limit: u64,
}

impl<'f> ChunkReader<'f> {
    /// A reader of `file` up to `end`.
    pub(crate) fn new(file: &'f File, end: u64, chunk_size: usize) -> Self {
        ChunkReader {
            file,
            end,
            chunk_size,
            buf: Vec::new(),
            buf_pos: 0,
            adaptive: false,
            limit: u64::MAX,
        }
    }

    /// A reader for walking batch headers: adaptive read-ahead, at most [`HEADER_CHUNK`].
    pub(crate) fn headers(file: &'f File, end: u64) -> Self {
        ChunkReader {
            adaptive: true,
            ..ChunkReader::new(file, end, FIRST_HEADER_READ)
        }
    }

    /// Caps the read-ahead at `limit` (bytes needed beyond it are still read when asked for).
    pub(crate) fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// `len` bytes at `pos`; the caller guarantees `pos + len <= end`.
    pub(crate) fn get(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        let in_buf =
            pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if !in_buf {
            let ahead = (self.chunk_size as u64).min(self.limit.saturating_sub(pos));
            let want = (len as u64).max(ahead);
            let avail = self.end.saturating_sub(pos);
            let n = want.min(avail) as usize;
            if n < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("read of {len} bytes at {pos} past end {}", self.end),
                ));
            }
            self.buf.resize(n, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        Ok(&self.buf[start..start + len])
    }

    /// The header of the batch at `pos`: `Ok(None)` at the end of the region, an inner error
    /// when the bytes there are not a complete valid batch (bad length or magic, or a batch
    /// running past `end`).
    pub(crate) fn header_at(
        &mut self,
        pos: u64,
    ) -> io::Result<Result<Option<RecordBatchHeader>, BatchError>> {
        let remaining = self.end.saturating_sub(pos);
        if remaining == 0 {
            return Ok(Ok(None));
        }
        let n = remaining.min(HEADER_SIZE as u64) as usize;
        let bytes = self.get(pos, n)?;
        let header = match RecordBatchHeader::parse(bytes) {
            Ok(h) => h,
            Err(e) => return Ok(Err(e)),
        };
        if self.adaptive {
            self.chunk_size = if header.total_size() >= LARGE_BATCH {
                HEADER_SIZE
            } else {
                (self.chunk_size * 2).clamp(FIRST_HEADER_READ, HEADER_CHUNK)
            };
        }
        if header.total_size() as u64 > remaining {
            return Ok(Err(BatchError::Truncated {
                needed: header.total_size(),
                available: remaining as usize,
            }));
        }
        Ok(Ok(Some(header)))
    }
}

/// Where a walk guided by an offset index entry `(offset, position)` may start: the entry's
/// position when the batch there is valid and ends at the entry's offset (entries record a
/// batch's last offset and start), otherwise 0, the segment's start.
///
/// Kafka's `OffsetIndex.sanityCheck` only checks the file's size and last entry, and Kafka
/// trusts the indexes of segments below the recovery point; an entry damaged in place but
/// still sorted and inside the file would then send a read to the wrong batch (records
/// skipped) or into the middle of one (a read error). Checking the one header the walk reads
/// anyway costs nothing and turns such an entry into a slower scan from the segment start
/// (found by the `log_recovery` fuzz target).
pub(crate) fn checked_index_start(
    reader: &mut ChunkReader<'_>,
    entry: (i64, u64),
    segment: &std::path::Path,
) -> io::Result<u64> {
    let (offset, pos) = entry;
    if pos == 0 {
        return Ok(0);
    }
    match reader.header_at(pos)? {
        Ok(Some(h)) if h.last_offset() == offset => Ok(pos),
        found => {
            let found = match found {
                Ok(Some(h)) => format!("a batch ending at {}", h.last_offset()),
                Ok(None) => "the end of the segment".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::warn!(segment = %segment.display(), offset, pos, found, "offset index entry does not point at its batch; scanning from the segment start");
            Ok(0)
        }
    }
}

/// Finds, from `start` (a batch boundary at or before the target), the first batch whose last
/// offset is >= `target`: Kafka's `FileRecords.searchForOffsetFromPosition`. Returns its
/// position and header, or `None` if no batch in the region qualifies.
pub(crate) fn find_batch(
    reader: &mut ChunkReader<'_>,
    start: u64,
    target: i64,
) -> io::Result<Result<Option<(u64, RecordBatchHeader)>, BatchError>> {
    let mut pos = start;
    loop {
        match reader.header_at(pos)? {
            Err(e) => return Ok(Err(e)),
            Ok(None) => return Ok(Ok(None)),
            Ok(Some(h)) => {
                if h.last_offset() >= target {
                    return Ok(Ok(Some((pos, h))));
                }
                pos += h.total_size() as u64;
            }
        }
    }
}
