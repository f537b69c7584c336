//! Reads: fetch reads (whole batches handed out as file regions for `sendfile`), lookups by
//! timestamp (ListOffsets), by leader epoch (OffsetForLeaderEpoch) and of producer state.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use nagare_protocol::record_batch::{
    RecordBatchHeader, TimestampType as BatchTimestampType, HEADER_SIZE,
};

use super::{batch_error, Inner, Log};
use crate::config::TopicPartition;
use crate::epoch_cache::EpochEntry;
use crate::error::StorageError;
use crate::producer_state::ProducerStateEntry;
use crate::scan::{checked_index_start, find_batch, ChunkReader, HEADER_CHUNK};
use crate::segment::Segment;
use crate::txn_index::AbortedTxn;

/// The answer to a read.
#[derive(Debug, Clone)]
pub struct FetchData {
    /// Whole batches from one segment, or `None` when there is nothing to return.
    pub slice: Option<FileSlice>,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
    /// The log end offset at the time of the read.
    pub log_end_offset: i64,
}

/// A region of a segment file, for `sendfile` by the broker.
#[derive(Debug, Clone)]
pub struct FileSlice {
    /// The segment file (kept open even if the segment is deleted meanwhile).
    pub file: Arc<File>,
    /// Start of the region in the file.
    pub position: u64,
    /// Length of the region.
    pub len: usize,
}

impl FileSlice {
    /// Reads the region into memory (the fallback when `sendfile` cannot be used, e.g. TLS).
    pub fn read_to_bytes(&self) -> io::Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

/// A record found by timestamp (ListOffsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's timestamp.
    pub timestamp: i64,
    /// The record's offset.
    pub offset: i64,
    /// Partition leader epoch of the record's batch, or -1.
    pub leader_epoch: i32,
}

impl Inner {
    /// The segment holding the first batch with an offset >= `offset` (the floor segment, or a
    /// later one when `offset` falls in a gap after the floor segment's last batch).
    fn segment_for_read(&self, offset: i64) -> Option<&Segment> {
        let lo = self
            .rolled
            .range(..=offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        // Compaction can leave empty rolled segments (next offset = base): skip them.
        self.rolled
            .range(lo..)
            .map(|(_, s)| s)
            .filter(|s| s.size > 0)
            .chain(std::iter::once(&self.active))
            .find(|s| s.next_offset > offset)
    }
}

/// The first record of a batch (given its bytes) at or after `min_offset` whose timestamp
/// satisfies `pred`, decoding (and decompressing) the records. Not a hot path.
fn find_record(
    tp: &TopicPartition,
    bytes: &[u8],
    h: &RecordBatchHeader,
    min_offset: i64,
    pred: &dyn Fn(i64) -> bool,
) -> Result<Option<TimestampOffset>, StorageError> {
    if h.timestamp_type() == BatchTimestampType::LogAppendTime {
        // Every record of a LogAppendTime batch has the batch's max timestamp.
        let offset = h.base_offset.max(min_offset);
        if offset <= h.last_offset() && pred(h.max_timestamp) {
            return Ok(Some(TimestampOffset {
                timestamp: h.max_timestamp,
                offset,
                leader_epoch: h.partition_leader_epoch,
            }));
        }
        return Ok(None);
    }
    // Nagare's own record walker rather than kafka-protocol's decoder: that one zero-fills
    // whatever length a snappy block claims (gigabytes from a few stored bytes).
    let corrupt = |e: String| {
        StorageError::CorruptRecord(format!(
            "{tp}: cannot decode batch at offset {}: {e}",
            h.base_offset
        ))
    };
    let section = crate::records::records_section(h, bytes).map_err(corrupt)?;
    let records = crate::records::parse_records(&section, h.records_count).map_err(corrupt)?;
    // Deltas from a producer's batch can be anything: wrap as Kafka's Java arithmetic does.
    Ok(records
        .iter()
        .map(|r| {
            (
                h.base_offset.wrapping_add(i64::from(r.offset_delta)),
                h.base_timestamp.wrapping_add(r.timestamp_delta),
            )
        })
        .find(|&(offset, timestamp)| offset >= min_offset && pred(timestamp))
        .map(|(offset, timestamp)| TimestampOffset {
            timestamp,
            offset,
            leader_epoch: h.partition_leader_epoch,
        }))
}

/// Where a search by timestamp guided by the time index entry `(timestamp, offset)` may start,
/// given `pos` (the checked offset index position for that offset): `pos` when the batch
/// holding `offset` ends there and carries that max timestamp (entries record the largest
/// timestamp so far and the last offset of its batch), otherwise 0. A damaged entry with too
/// large an offset would otherwise skip records with later timestamps (the same reasoning
/// as [`checked_index_start`]).
fn checked_time_entry(
    reader: &mut ChunkReader<'_>,
    pos: u64,
    (timestamp, offset): (i64, i64),
    segment: &std::path::Path,
) -> Result<u64, StorageError> {
    if let Ok(Some((_, h))) = find_batch(reader, pos, offset)? {
        if h.last_offset() == offset && h.max_timestamp == timestamp {
            return Ok(pos);
        }
    }
    tracing::warn!(segment = %segment.display(), timestamp, offset, "time index entry does not match its batch; scanning from the segment start");
    Ok(0)
}

/// ListOffsets by timestamp over a buffer of whole record batches (the bytes of a remote
/// segment, KIP-405: a lookup below the local log start is answered from the object store):
/// the first record at or after `min_offset` whose timestamp is >= `timestamp`, as
/// [`Log::offset_for_timestamp`] finds it in a local segment. A torn or short last batch
/// ends the scan (`Ok(None)` if nothing was found before it).
pub fn offset_for_timestamp_in(
    tp: &TopicPartition,
    bytes: &[u8],
    min_offset: i64,
    timestamp: i64,
) -> Result<Option<TimestampOffset>, StorageError> {
    let mut pos = 0usize;
    while bytes.len().saturating_sub(pos) >= nagare_protocol::record_batch::HEADER_SIZE {
        let h = RecordBatchHeader::parse(&bytes[pos..]).map_err(|e| batch_error(tp, e))?;
        let end = pos.saturating_add(h.total_size());
        if end > bytes.len() {
            break;
        }
        if h.max_timestamp >= timestamp && h.last_offset() >= min_offset {
            if let Some(found) =
                find_record(tp, &bytes[pos..end], &h, min_offset, &|ts| ts >= timestamp)?
            {
                return Ok(Some(found));
            }
        }
        pos = end;
    }
    Ok(None)
}

impl Log {
    /// Reads for a fetch: whole batches from one segment starting with the batch that
    /// contains `offset` (a consumer may ask for an offset inside a batch and skips the
    /// records before it), at most `max_bytes` of them but at least one batch when
    /// `min_one_batch` (KIP-74), and only batches entirely below `max_offset` (exclusive, e.g.
    /// the high watermark). `offset` equal to the log end gives no data; outside
    /// `[log start, log end]` it is [`StorageError::OffsetOutOfRange`].
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        max_offset: i64,
    ) -> Result<FetchData, StorageError> {
        let (file, path, entry, jump, seg_end, log_start, log_end) = {
            let inner = self.inner.lock();
            let (log_start, log_end) = (inner.log_start_offset, inner.log_end_offset);
            if offset < log_start || offset > log_end {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start,
                    log_end,
                });
            }
            let empty = FetchData {
                slice: None,
                log_start_offset: log_start,
                log_end_offset: log_end,
            };
            if offset == log_end || offset >= max_offset {
                return Ok(empty);
            }
            let Some(seg) = inner.segment_for_read(offset) else {
                return Ok(empty);
            };
            let entry = seg.offset_index.lookup(offset);
            // The batches between the first one and the last index entry within the byte
            // budget all fit: the header walk may resume there instead of at every batch.
            let jump = seg.offset_index.last_entry_within(
                entry.1.saturating_add(max_bytes as u64),
                max_offset.min(log_end),
            );
            (
                Arc::clone(&seg.file),
                seg.log_path.clone(),
                entry,
                jump,
                seg.size,
                log_start,
                log_end,
            )
        };
        let mut data = FetchData {
            slice: None,
            log_start_offset: log_start,
            log_end_offset: log_end,
        };
        let max_offset = max_offset.min(log_end);
        let mut reader = ChunkReader::headers(&file, seg_end);
        let start_pos = checked_index_start(&mut reader, entry, &path)?;
        let Some((start, mut h)) = find_batch(&mut reader, start_pos, offset)?
            .map_err(|e| StorageError::CorruptRecord(format!("{}: {e}", path.display())))?
        else {
            return Ok(data);
        };
        // Headers past the byte budget are never needed: do not read ahead beyond it.
        reader.set_limit(
            start
                .saturating_add(max_bytes as u64)
                .saturating_add(HEADER_SIZE as u64),
        );
        let mut end = start;
        if let Some((jump_offset, p)) =
            jump.filter(|&(_, p)| p > start && p - start <= max_bytes as u64)
        {
            // Only an entry pointing at its own batch is followed (a damaged one is not: the
            // walk goes on batch by batch, see `checked_index_start`).
            if let Ok(Some(next)) = reader.header_at(p)? {
                if next.last_offset() == jump_offset {
                    end = p;
                    h = next;
                }
            }
        }
        loop {
            if h.last_offset() >= max_offset {
                break;
            }
            let size = h.total_size() as u64;
            if end - start + size > max_bytes as u64 {
                if end == start && min_one_batch {
                    end += size;
                }
                break;
            }
            end += size;
            match reader.header_at(end)? {
                Ok(Some(next)) => h = next,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(tp = %self.tp, pos = end, error = %e, "bad batch header while reading");
                    break;
                }
            }
        }
        if end > start {
            data.slice = Some(FileSlice {
                file,
                position: start,
                len: (end - start) as usize,
            });
        }
        Ok(data)
    }

    /// ListOffsets by timestamp: the first record (at or after the log start offset) whose
    /// timestamp is >= `timestamp`, decoding (and decompressing) the batch that holds it.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, StorageError> {
        struct Candidate {
            file: Arc<File>,
            path: std::path::PathBuf,
            size: u64,
            /// The time index entry below the timestamp, if any, as (timestamp, offset).
            time_entry: Option<(i64, i64)>,
            /// The offset index entry at or below that entry's offset.
            entry: (i64, u64),
        }
        let (candidates, log_start) = {
            let inner = self.inner.lock();
            let log_start = inner.log_start_offset;
            let candidates: Vec<Candidate> = inner
                .segments()
                .filter(|s| s.max_timestamp >= timestamp && s.next_offset > log_start)
                .map(|s| {
                    let time_entry = s.time_index.lookup_before(timestamp);
                    let entry = match time_entry {
                        Some((_, offset)) => s.offset_index.lookup(offset),
                        None => (s.base_offset, 0),
                    };
                    Candidate {
                        file: Arc::clone(&s.file),
                        path: s.log_path.clone(),
                        size: s.size,
                        time_entry,
                        entry,
                    }
                })
                .collect();
            (candidates, log_start)
        };
        for c in candidates {
            let mut reader = ChunkReader::new(&c.file, c.size, HEADER_CHUNK);
            let mut pos = checked_index_start(&mut reader, c.entry, &c.path)?;
            if let Some(te) = c.time_entry {
                pos = checked_time_entry(&mut reader, pos, te, &c.path)?;
            }
            while let Some(h) = reader
                .header_at(pos)?
                .map_err(|e| batch_error(&self.tp, e))?
            {
                if h.max_timestamp >= timestamp && h.last_offset() >= log_start {
                    let bytes = reader.get(pos, h.total_size())?;
                    if let Some(found) =
                        find_record(&self.tp, bytes, &h, log_start, &|ts| ts >= timestamp)?
                    {
                        return Ok(Some(found));
                    }
                }
                pos += h.total_size() as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets `MAX_TIMESTAMP` (-3, KIP-734): the offset and timestamp of the first record
    /// carrying the largest timestamp in the log.
    pub fn max_timestamp_offset(&self) -> Result<Option<TimestampOffset>, StorageError> {
        let (file, path, size, entry, target) = {
            let inner = self.inner.lock();
            let mut best: Option<&Segment> = None;
            for s in inner.segments() {
                if s.max_timestamp >= 0 && best.is_none_or(|b| s.max_timestamp > b.max_timestamp) {
                    best = Some(s);
                }
            }
            let Some(s) = best else { return Ok(None) };
            let entry = s.offset_index.lookup(s.offset_of_max_timestamp);
            (
                Arc::clone(&s.file),
                s.log_path.clone(),
                s.size,
                entry,
                s.max_timestamp,
            )
        };
        let mut reader = ChunkReader::new(&file, size, HEADER_CHUNK);
        let mut pos = checked_index_start(&mut reader, entry, &path)?;
        while let Some(h) = reader
            .header_at(pos)?
            .map_err(|e| batch_error(&self.tp, e))?
        {
            if h.max_timestamp == target {
                let bytes = reader.get(pos, h.total_size())?;
                return find_record(&self.tp, bytes, &h, i64::MIN, &|ts| ts == target);
            }
            pos += h.total_size() as u64;
        }
        Ok(None)
    }

    /// The latest leader epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.latest_epoch()
    }

    /// The leader-epoch cache entries, oldest first.
    pub fn epoch_entries(&self) -> Vec<EpochEntry> {
        self.inner.lock().epochs.entries().to_vec()
    }

    /// The leader epoch that wrote `offset`, if known.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.inner.lock().epochs.epoch_for_offset(offset)
    }

    /// OffsetForLeaderEpoch: the largest epoch <= `epoch` and the end offset of that epoch
    /// (the start of the next epoch, or the log end for the latest one), per Kafka's
    /// `LeaderEpochFileCache.endOffsetFor`; (-1, -1) if unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let inner = self.inner.lock();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// The idempotent-producer state of `producer_id`.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerStateEntry> {
        self.inner.lock().producers.get(producer_id).cloned()
    }

    /// Every producer's state (DescribeProducers).
    pub fn producer_states(&self) -> Vec<ProducerStateEntry> {
        let mut v: Vec<ProducerStateEntry> =
            self.inner.lock().producers.entries().cloned().collect();
        v.sort_by_key(|e| e.producer_id);
        v
    }

    /// First offset of the oldest ongoing transaction (bounds the last stable offset), never
    /// below the log start offset (Kafka's `updateFirstUnstableOffset`: DeleteRecords may
    /// move the log start past a transaction's first records).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let fuo = self.first_unstable_offset.load(Ordering::Acquire);
        (fuo >= 0).then_some(fuo)
    }

    /// Kafka's last stable offset: `min(first unstable offset, high_watermark)`, the bound of
    /// a `read_committed` fetch and of ListOffsets(latest) under `read_committed`. Every
    /// transaction below it is decided (committed or aborted).
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable_offset()
            .map_or(high_watermark, |fuo| fuo.min(high_watermark))
    }

    /// Every aborted transaction overlapping `[start_offset, upper_bound_offset)` (its
    /// first offset below the bound, its ABORT marker at or after the start), oldest marker
    /// first: the `aborted_transactions` of a `read_committed` fetch from `start_offset` whose
    /// records end below `upper_bound_offset` (Kafka's `UnifiedLog.collectAbortedTransactions`).
    /// The transaction indexes are searched from the segment holding `start_offset` and stop
    /// at the first entry whose last stable offset reaches the bound: an aborted transaction
    /// overlapping the range has its marker at or after the start, so no earlier segment can
    /// hold it, and once the LSO passed the bound no later marker belongs to a transaction
    /// that began below it.
    pub fn collect_aborted_transactions(
        &self,
        start_offset: i64,
        upper_bound_offset: i64,
    ) -> Result<Vec<AbortedTxn>, StorageError> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        if upper_bound_offset <= start_offset {
            return Ok(out);
        }
        let floor = inner
            .rolled
            .range(..=start_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let segments = inner
            .rolled
            .range(floor..)
            .map(|(_, s)| s)
            .chain(std::iter::once(&inner.active));
        for seg in segments {
            if seg
                .txn_index
                .collect(start_offset, upper_bound_offset, &mut out)
            {
                break;
            }
        }
        Ok(out)
    }

    /// Offsets of the producer-state snapshot files present.
    pub fn producer_snapshot_offsets(&self) -> Vec<i64> {
        self.inner.lock().producers.snapshot_offsets()
    }
}
