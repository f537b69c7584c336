//! Appends: the leader's (validation, offset assignment by patching batch headers, producer
//! sequence checks, leader-epoch stamping) and the follower's (offsets kept as the leader
//! assigned them), and the segment roll an append may need first.

use std::io;
use std::sync::atomic::Ordering;

use bytes::BytesMut;
use nagare_protocol::record_batch::{
    self, batches, validate_crc, RecordBatchHeader, TimestampType as BatchTimestampType,
};

use super::{batch_error, Inner, Log};
use crate::config::{LogConfig, TimestampType};
use crate::error::{RecordError, RejectedRecords, StorageError};
use crate::producer_state::{Prepared, TxnVerification, VerificationGuard};
use crate::records::{parse_end_txn_marker, EndTxnMarker};
use crate::segment::Segment;

/// Who is appending, which decides the validation applied (Kafka's `AppendOrigin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppendOrigin {
    /// A producer through the Produce API: full validation, sequence checks, offsets assigned.
    Client,
    /// The broker itself as leader (transaction markers, coordinator records): offsets are
    /// assigned and control batches are allowed; sequences are not checked.
    Coordinator,
    /// A follower copying the leader: offsets are kept, producer state is applied unchecked.
    Replication,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended (-1 when nothing was appended).
    pub first_offset: i64,
    /// Offset of the last record appended (-1 when nothing was appended).
    pub last_offset: i64,
    /// Largest timestamp appended (the append time for LogAppendTime topics).
    pub max_timestamp: i64,
    /// The broker time stamped on the batches, or -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
    /// Records appended (sum of the batches' record counts).
    pub record_count: u64,
    /// True when the batch was an idempotent-producer retry of a batch already in the log:
    /// nothing was written and the offsets are the original ones.
    pub duplicate: bool,
}

/// A batch of an append: its header (offsets as assigned) and its bytes in the buffer.
struct PendingBatch {
    header: RecordBatchHeader,
    range: std::ops::Range<usize>,
    /// The content of a transaction marker (control batches of a producer only).
    marker: Option<EndTxnMarker>,
}

/// The bytes of an append: a leader patches offsets, the leader epoch and timestamps in place
/// (a uniquely owned buffer); a follower writes them as the leader assigned them (read-only).
enum Input<'a> {
    Leader(BytesMut),
    Follower(&'a [u8]),
}

impl Input<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Input::Leader(b) => b,
            Input::Follower(b) => b,
        }
    }

    /// The buffer to patch; `None` for a follower's append, which keeps the leader's bytes.
    fn leader_bytes(&mut self) -> Option<&mut [u8]> {
        match self {
            Input::Leader(b) => Some(b),
            Input::Follower(_) => None,
        }
    }
}

impl Log {
    /// Leader append from a producer; see [`Log::append_as_leader_with_origin`].
    pub fn append_as_leader(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append(
            Input::Leader(records),
            AppendOrigin::Client,
            leader_epoch,
            now_ms,
            TxnVerification::NotRequired,
        )
    }

    /// Leader append. Validates every batch (size <= `max.message.bytes`, length, magic 2,
    /// CRC, record count; for clients also no control batches and sane timestamps), checks
    /// idempotent-producer sequences, assigns offsets by patching base offsets in place (the
    /// records are never decoded or re-encoded), stamps the partition leader epoch, applies
    /// LogAppendTime if configured, and writes everything with one write call. A retried
    /// idempotent batch is answered with its original offsets and `duplicate: true`.
    ///
    /// `origin` must be [`AppendOrigin::Client`] or [`AppendOrigin::Coordinator`].
    ///
    /// Transactions (Kafka's `ProducerAppendInfo`): a transactional batch starts or continues
    /// its producer's transaction; a non-transactional batch from a producer whose
    /// transaction is ongoing is refused ([`StorageError::InvalidTxnState`]). Transaction
    /// markers (control batches, see `nagare_protocol::batch_builder::build_control_batch`)
    /// are accepted from the coordinator only (a client's is
    /// [`StorageError::InvalidRecord`]); one with an older producer epoch is
    /// [`StorageError::InvalidProducerEpoch`], one with an older coordinator epoch
    /// [`StorageError::TransactionCoordinatorFenced`]. A marker ends the ongoing
    /// transaction (a marker for a producer without one is still appended, as in Kafka); an
    /// ABORT marker adds the transaction to the aborted-transaction index. The coordinator's
    /// own transactional batches (TxnOffsetCommit, base sequence -1) skip the sequence check.
    pub fn append_as_leader_with_origin(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, StorageError> {
        self.append_as_leader_verified(
            records,
            leader_epoch,
            now_ms,
            origin,
            TxnVerification::NotRequired,
        )
    }

    /// [`Log::append_as_leader_with_origin`] with KIP-890 part 1's check: under
    /// [`TxnVerification::Required`] a transactional batch that would start its producer's
    /// transaction here is refused with [`StorageError::InvalidTxnState`] unless it carries
    /// the guard of [`Log::start_txn_verification`], still current (no batch or marker of
    /// that producer was appended since).
    pub fn append_as_leader_verified(
        &self,
        records: BytesMut,
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
        verification: TxnVerification,
    ) -> Result<AppendInfo, StorageError> {
        if origin == AppendOrigin::Replication {
            return Err(StorageError::InvalidRecord(
                "replication appends go through append_as_follower".into(),
            ));
        }
        self.append(
            Input::Leader(records),
            origin,
            leader_epoch,
            now_ms,
            verification,
        )
    }

    /// KIP-890 part 1, before a partition leader asks the transaction coordinator: `None` if
    /// producer `producer_id` has an ongoing transaction here at this epoch or later (no
    /// verification needed), else the guard to append with once the coordinator confirmed
    /// the partition is in the producer's transaction (Kafka's
    /// `UnifiedLog.maybeStartTransactionVerification`).
    pub fn start_txn_verification(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Option<VerificationGuard> {
        self.inner
            .lock()
            .producers
            .start_verification(producer_id, producer_epoch, now_ms)
    }

    /// Follower append: the batches carry offsets assigned by the leader. The first must start
    /// at or after the log end offset (a gap is possible after compaction) and offsets must
    /// increase. CRCs are verified; `max.message.bytes` is not applied (as in Kafka).
    ///
    /// Nothing is patched, so the bytes are only read: a follower hands the fetch response's
    /// slice as received (`Bytes`), without copying it into a mutable buffer first.
    pub fn append_as_follower(
        &self,
        records: impl AsRef<[u8]>,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append(
            Input::Follower(records.as_ref()),
            AppendOrigin::Replication,
            -1,
            now_ms,
            TxnVerification::NotRequired,
        )
    }

    fn validate_batch(
        &self,
        config: &LogConfig,
        origin: AppendOrigin,
        h: &RecordBatchHeader,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let tp = &self.tp;
        let size = h.total_size();
        if origin != AppendOrigin::Replication && size > config.max_message_bytes as usize {
            return Err(StorageError::RecordTooLarge {
                size,
                max: config.max_message_bytes,
            });
        }
        validate_crc(bytes).map_err(|e| batch_error(tp, e))?;
        h.compression().map_err(|e| batch_error(tp, e))?;
        if h.last_offset_delta < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "{tp}: negative last offset delta {}",
                h.last_offset_delta
            )));
        }
        if origin == AppendOrigin::Client {
            // Kafka's LogValidator.validateBatch.
            if h.records_count <= 0
                || i64::from(h.last_offset_delta) + 1 != i64::from(h.records_count)
            {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: inconsistent batch offset range ({}) and record count ({})",
                    i64::from(h.last_offset_delta) + 1,
                    h.records_count
                )));
            }
            if h.is_control() {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: clients are not allowed to write control records"
                )));
            }
            if h.has_producer_id() && h.base_sequence < 0 {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: invalid sequence number {} in record batch with producerId {}",
                    h.base_sequence, h.producer_id
                )));
            }
            if h.is_transactional() && !h.has_producer_id() {
                return Err(StorageError::InvalidRecord(format!(
                    "{tp}: transactional batch without a producer id"
                )));
            }
        }
        // Kafka's `LogValidator.validateRecord` (KIP-467): a compacted topic needs a key on
        // every record, and a CreateTime timestamp must lie within
        // `message.timestamp.{before,after}.max.ms` of the broker's clock. Records are decoded
        // (and decompressed) only for compacted topics, or when the batch header's base or
        // max timestamp is out of range; then every record is checked and the refused ones
        // are named. Unlike Kafka, a batch whose header timestamps are in range is not
        // decoded, so a record with a negative timestamp delta below the lower bound passes
        // (producers write the first record's timestamp as the base).
        let require_key = origin == AppendOrigin::Client && config.cleanup_policy_compact;
        let timestamp_range = (origin != AppendOrigin::Replication
            && config.message_timestamp_type == TimestampType::CreateTime)
            .then(|| {
                (
                    now_ms.saturating_sub(config.message_timestamp_before_max_ms),
                    now_ms.saturating_add(config.message_timestamp_after_max_ms),
                )
            });
        let header_out_of_range = timestamp_range.is_some_and(|(lower, upper)| {
            (h.max_timestamp != record_batch::NO_TIMESTAMP && h.max_timestamp > upper)
                || (h.base_timestamp != record_batch::NO_TIMESTAMP && h.base_timestamp < lower)
        });
        if require_key || header_out_of_range {
            let rules = crate::records::RecordRules {
                require_key,
                timestamp_range,
            };
            let found = crate::records::record_errors(h, bytes, rules, tp).map_err(|e| {
                StorageError::InvalidRecord(format!("{e} in topic partition {tp}."))
            })?;
            if !found.is_empty() {
                return Err(StorageError::RejectedRecords(RejectedRecords {
                    invalid_timestamp: found.iter().any(|e| e.timestamp),
                    records: found
                        .into_iter()
                        .map(|e| RecordError {
                            batch_index: e.batch_index,
                            message: e.message,
                        })
                        .collect(),
                }));
            }
        }
        Ok(())
    }

    /// The transaction marker of a producer's control batch. The coordinator's markers must
    /// be well formed (Kafka's `LogValidator`: a control batch holds exactly one record, is
    /// transactional and has a producer id); a follower copies what its leader accepted, so
    /// an unreadable one is logged and kept without effect on the producer state.
    fn marker_of(
        &self,
        origin: AppendOrigin,
        h: &RecordBatchHeader,
        bytes: &[u8],
    ) -> Result<Option<EndTxnMarker>, StorageError> {
        if !h.is_control() || !h.has_producer_id() {
            if origin == AppendOrigin::Coordinator && h.is_control() {
                return Err(StorageError::InvalidRecord(format!(
                    "{}: transaction marker without a producer id",
                    self.tp
                )));
            }
            return Ok(None);
        }
        let tp = &self.tp;
        if origin == AppendOrigin::Replication {
            return Ok(match parse_end_txn_marker(h, bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(%tp, offset = h.base_offset, error = %e, "unreadable transaction marker replicated");
                    None
                }
            });
        }
        if h.records_count != 1 || h.last_offset_delta != 0 || !h.is_transactional() {
            return Err(StorageError::InvalidRecord(format!(
                "{tp}: a transaction marker must be one transactional control record"
            )));
        }
        match parse_end_txn_marker(h, bytes) {
            Ok(Some(m)) => Ok(Some(m)),
            Ok(None) => Err(StorageError::InvalidRecord(format!(
                "{tp}: empty transaction marker"
            ))),
            Err(e) => Err(StorageError::InvalidRecord(format!("{tp}: {e}"))),
        }
    }

    fn append(
        &self,
        mut input: Input<'_>,
        origin: AppendOrigin,
        leader_epoch: i32,
        now_ms: i64,
        verification: TxnVerification,
    ) -> Result<AppendInfo, StorageError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(StorageError::LogDirFailed);
        }
        let config = self.config();
        let leader = origin != AppendOrigin::Replication;
        let log_append_time =
            leader && config.message_timestamp_type == TimestampType::LogAppendTime;

        // Validation and the patches that do not depend on offsets run before taking the
        // lock: CRC work should not stall other appenders and readers.
        let mut pending = Vec::new();
        for item in batches(input.bytes()) {
            let (header, range) = item.map_err(|e| batch_error(&self.tp, e))?;
            let bytes = &input.bytes()[range.clone()];
            self.validate_batch(&config, origin, &header, bytes, now_ms)?;
            let marker = self.marker_of(origin, &header, bytes)?;
            pending.push(PendingBatch {
                header,
                range,
                marker,
            });
        }
        if pending.is_empty() {
            return Ok(AppendInfo {
                first_offset: -1,
                last_offset: -1,
                max_timestamp: -1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset(),
                record_count: 0,
                duplicate: false,
            });
        }
        let total_len = input.bytes().len();
        if total_len as u64 > config.effective_segment_bytes() {
            return Err(StorageError::RecordListTooLarge {
                size: total_len,
                max: config.segment_bytes,
            });
        }
        if let Some(records) = input.leader_bytes() {
            for b in &mut pending {
                let bytes = &mut records[b.range.clone()];
                let patched = record_batch::set_partition_leader_epoch(bytes, leader_epoch)
                    .and_then(|()| {
                        if log_append_time {
                            record_batch::set_log_append_time(bytes, now_ms)
                        } else if b.header.timestamp_type() == BatchTimestampType::LogAppendTime {
                            // The topic keeps producer timestamps: clear a client's flag.
                            record_batch::set_max_timestamp(
                                bytes,
                                BatchTimestampType::CreateTime,
                                b.header.max_timestamp,
                            )
                        } else {
                            Ok(())
                        }
                    });
                patched.map_err(|e| batch_error(&self.tp, e))?;
                b.header = RecordBatchHeader::parse(bytes).map_err(|e| batch_error(&self.tp, e))?;
            }
        }

        let mut inner = self.lock_writable()?;
        let log_end = inner.log_end_offset;
        if leader {
            let mut next = log_end;
            for b in &mut pending {
                b.header.base_offset = next;
                next = b.header.next_offset();
            }
        } else {
            let first = pending[0].header.base_offset;
            if first < log_end {
                return Err(StorageError::UnexpectedAppendOffset {
                    first_offset: first,
                    log_end_offset: log_end,
                });
            }
            let mut next = first;
            for b in &pending {
                if b.header.base_offset < next {
                    return Err(StorageError::InvalidRecord(format!(
                        "{}: batch offsets go backwards at {}",
                        self.tp, b.header.base_offset
                    )));
                }
                next = b.header.next_offset();
            }
        }
        let first_offset = pending[0].header.base_offset;
        let last_offset = pending[pending.len() - 1].header.last_offset();
        if last_offset - first_offset > i64::from(i32::MAX) {
            return Err(StorageError::InvalidRecord(format!(
                "{}: offsets {first_offset}..{last_offset} do not fit one segment",
                self.tp
            )));
        }
        let headers: Vec<RecordBatchHeader> = pending.iter().map(|b| b.header).collect();
        let with_markers: Vec<(RecordBatchHeader, Option<EndTxnMarker>)> =
            pending.iter().map(|b| (b.header, b.marker)).collect();
        let update = match inner
            .producers
            .prepare(&with_markers, origin, verification)?
        {
            Prepared::Duplicate(d) => {
                return Ok(AppendInfo {
                    first_offset: d.first_offset,
                    last_offset: d.last_offset,
                    max_timestamp: d.timestamp,
                    log_append_time: if log_append_time { d.timestamp } else { -1 },
                    log_start_offset: inner.log_start_offset,
                    record_count: 0,
                    duplicate: true,
                });
            }
            Prepared::Update(u) => u,
        };

        // Record new leader epochs before the data (Kafka's maybeAssignEpochStartOffset), so
        // the checkpoint never lags the log; a torn tail is trimmed from it on recovery.
        let mut epochs_changed = false;
        let latest_epoch = inner.epochs.latest_epoch();
        let epochs_before = headers
            .iter()
            .any(|h| latest_epoch.is_none_or(|l| l < h.partition_leader_epoch))
            .then(|| inner.epochs.clone());
        for h in &headers {
            let epoch = h.partition_leader_epoch;
            if inner.epochs.latest_epoch().is_none_or(|l| l < epoch) {
                epochs_changed |= inner.epochs.assign(epoch, h.base_offset);
            }
        }
        if epochs_changed {
            if let Err(e) = inner.epochs.write() {
                // The old checkpoint is intact (atomic replace); keep memory in step with it
                // so that the next attempt writes the new epoch again.
                if let Some(before) = epochs_before {
                    inner.epochs = before;
                }
                return Err(self.write_failed(e));
            }
        }

        self.maybe_roll(
            &mut inner,
            &config,
            total_len as u64,
            first_offset,
            last_offset,
            now_ms,
        )?;

        if let Some(records) = input.leader_bytes() {
            for b in &pending {
                record_batch::set_base_offset(&mut records[b.range.clone()], b.header.base_offset)
                    .map_err(|e| batch_error(&self.tp, e))?;
            }
        }
        if let Err(e) =
            inner
                .active
                .append(input.bytes(), &headers, config.index_interval_bytes, now_ms)
        {
            // Nothing of this append counts (the segment's size did not move); on a full disk
            // cut the partial batch off so the file ends at the last whole batch, and stay
            // online: the producer gets KAFKA_STORAGE_ERROR and retries.
            if crate::io::is_no_space(&e) {
                if let Err(cut) = inner.active.cut_back() {
                    if !crate::io::is_no_space(&cut) {
                        return Err(self.poison(cut));
                    }
                }
            }
            return Err(self.write_failed(e));
        }
        self.disk_has_space();
        inner.log_end_offset = last_offset + 1;
        // Kafka's `UnifiedLog.append`: aborted transactions go to the index of the segment
        // their marker was written to, with the LSO as of right after the marker.
        for aborted in inner.producers.commit(update) {
            inner.active.txn_index.append(aborted);
        }
        inner.last_now_ms = inner.last_now_ms.max(now_ms);
        self.publish(&inner);

        let max_timestamp = if log_append_time {
            now_ms
        } else {
            headers.iter().map(|h| h.max_timestamp).max().unwrap_or(-1)
        };
        Ok(AppendInfo {
            first_offset,
            last_offset,
            max_timestamp,
            log_append_time: if log_append_time { now_ms } else { -1 },
            log_start_offset: inner.log_start_offset,
            record_count: headers
                .iter()
                .map(|h| u64::try_from(h.records_count).unwrap_or(0))
                .sum(),
            duplicate: false,
        })
    }

    /// Kafka's `LogSegment.shouldRoll`: roll before an append of `size` bytes when the active
    /// segment would exceed `segment.bytes`, is older than `segment.ms`, has a full index, or
    /// cannot hold the offsets relative to its base.
    fn maybe_roll(
        &self,
        inner: &mut Inner,
        config: &LogConfig,
        size: u64,
        first_offset: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<(), StorageError> {
        let a = &inner.active;
        let offsets_fit =
            first_offset >= a.base_offset && last_offset - a.base_offset <= i64::from(i32::MAX);
        let reason = if a.size == 0 {
            (!offsets_fit).then_some("offsets")
        } else if a.size + size > config.effective_segment_bytes() {
            Some("segment.bytes")
        } else if a
            .roll_base_ms
            .is_some_and(|t| now_ms.saturating_sub(t) > config.max_segment_ms())
        {
            Some("segment.ms")
        } else if a.offset_index.is_full(config.segment_index_bytes)
            || a.time_index.is_full(config.segment_index_bytes)
        {
            Some("index full")
        } else if !offsets_fit {
            Some("offsets")
        } else {
            None
        };
        if let Some(reason) = reason {
            tracing::debug!(tp = %self.tp, reason, new_base = first_offset, "rolling segment");
            self.roll(inner, first_offset)
                .map_err(|e| self.write_failed(e))?;
        }
        Ok(())
    }

    /// Starts a new active segment at `new_base` (>= the log end offset). The old one gets its
    /// final time index entry and index files written (fsynced by the next flush), and a
    /// producer-state snapshot is taken at the new base, as Kafka does on roll.
    pub(super) fn roll(&self, inner: &mut Inner, new_base: i64) -> io::Result<()> {
        if inner.active.size == 0 {
            if inner.active.base_offset == new_base {
                return Ok(());
            }
            // Replace the empty active segment rather than keep an empty one behind. Its
            // files are removed directly (nothing to read in them, and a removal cannot fail
            // for lack of space the way a rename can); a leftover one would only load as an
            // empty segment.
            let new = Segment::create(&self.dir, new_base)?;
            let old = std::mem::replace(&mut inner.active, new);
            old.remove_files();
        } else {
            // Every step before the swap leaves the log as it was if it fails (a full disk:
            // the old segment stays active and the roll is retried by the next append).
            inner.active.finalize_time_index();
            match inner.active.write_indexes() {
                Ok(written) => inner.unsynced_files.extend(written),
                Err(e) => {
                    let paths = inner.active.index_paths();
                    inner.unsynced_files.extend(paths);
                    return Err(e);
                }
            }
            let new = Segment::create(&self.dir, new_base)?;
            let snapshot = match inner.producers.take_snapshot(new_base) {
                Ok(p) => p,
                Err(e) => {
                    new.remove_files();
                    return Err(e);
                }
            };
            inner.unsynced_files.push(snapshot);
            let old = std::mem::replace(&mut inner.active, new);
            inner.rolled.insert(old.base_offset, old);
        }
        inner.dir_dirty = true;
        Ok(())
    }

    /// Records that leader epoch `epoch` starts at `start_offset` (Kafka's
    /// `LeaderEpochFileCache.assign`; the broker calls this when becoming leader, and
    /// appends call it for every new epoch) and writes the checkpoint if it changed.
    pub fn assign_epoch_start(&self, epoch: i32, start_offset: i64) -> Result<(), StorageError> {
        if epoch < 0 || start_offset < 0 {
            return Err(StorageError::InvalidRecord(format!(
                "invalid leader epoch entry ({epoch}, {start_offset})"
            )));
        }
        let mut inner = self.lock_writable()?;
        let before = inner.epochs.clone();
        if inner.epochs.assign(epoch, start_offset) {
            if let Err(e) = inner.epochs.write() {
                inner.epochs = before;
                return Err(self.write_failed(e));
            }
        }
        Ok(())
    }
}
