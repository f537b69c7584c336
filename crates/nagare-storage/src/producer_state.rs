//! Idempotent and transactional producer state, after Kafka's `ProducerStateManager` and
//! `ProducerAppendInfo`.
//!
//! Per producer id the log remembers the producer epoch and the metadata of its last
//! [`MAX_BATCHES_PER_PRODUCER`] batches, so that a retried batch is recognised as a duplicate
//! (and answered with its original offsets) and a gap in sequence numbers is refused; and
//! the first offset of its open transaction and the coordinator epoch of its last marker, so
//! that the last stable offset is known, markers of zombie coordinators are refused, and an
//! ABORT marker yields the aborted-transaction index entry.
//!
//! The state is persisted in snapshot files `<offset>.snapshot` holding the state of every
//! batch below `offset`; on open the latest usable snapshot is loaded and the batches after it
//! are replayed. Snapshot format (our own, big-endian):
//!
//! ```text
//! magic "NGPS" | version u16 (1) | reserved u16 (0) | crc32c u32 of everything after it |
//! offset i64 | producer count u32 |
//! per producer: producer_id i64, epoch i16, coordinator_epoch i32, last_timestamp i64,
//!               current_txn_first_offset i64, batch count u8,
//!               per batch: first_seq i32, last_seq i32, first_offset i64, last_offset i64,
//!                          timestamp i64
//! ```

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nagare_protocol::record_batch::{RecordBatchHeader, NO_PRODUCER_EPOCH, NO_SEQUENCE};

use crate::error::StorageError;
use crate::log::AppendOrigin;
use crate::records::EndTxnMarker;
use crate::segment::{file_name, parse_file_name};
use crate::txn_index::AbortedTxn;

/// Kafka keeps the metadata of the last 5 batches per producer
/// (`max.in.flight.requests.per.connection` may be at most 5 with idempotence).
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;
/// Suffix of producer snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// How many snapshot files to keep.
const SNAPSHOTS_TO_KEEP: usize = 2;
const SNAPSHOT_MAGIC: &[u8; 4] = b"NGPS";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER: usize = 4 + 2 + 2 + 4;

/// Metadata of one batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatchMetadata {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp.
    pub timestamp: i64,
}

/// State of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStateEntry {
    /// The producer id.
    pub producer_id: i64,
    /// The latest epoch seen.
    pub producer_epoch: i16,
    /// Metadata of the last batches (at most 5), oldest first.
    pub batches: VecDeque<ProducerBatchMetadata>,
    /// Timestamp of the last batch or marker.
    pub last_timestamp: i64,
    /// Coordinator epoch of the last transaction marker (-1 if none): a marker with an older
    /// one comes from a zombie coordinator and is refused.
    pub coordinator_epoch: i32,
    /// First offset of the ongoing transaction, or -1. The oldest one over all producers is
    /// the log's first unstable offset, which bounds the last stable offset.
    pub current_txn_first_offset: i64,
}

impl ProducerStateEntry {
    fn empty(producer_id: i64) -> Self {
        ProducerStateEntry {
            producer_id,
            producer_epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }

    /// Sequence of the last batch, or -1.
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(NO_SEQUENCE, |b| b.last_seq)
    }

    /// The cached batch this batch duplicates, if any (same epoch, same sequence range).
    fn find_duplicate(&self, h: &RecordBatchHeader) -> Option<ProducerBatchMetadata> {
        if h.producer_epoch != self.producer_epoch {
            return None;
        }
        let last_seq = h.last_sequence();
        self.batches
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            .copied()
    }

    /// Kafka's `maybeUpdateProducerEpoch`: a new epoch forgets the old epoch's batches.
    fn update_epoch(&mut self, epoch: i16) {
        if self.producer_epoch != epoch {
            self.producer_epoch = epoch;
            self.batches.clear();
        }
    }

    /// Applies a batch (its offsets already assigned) without validation. Returns the
    /// transaction a marker ends, if one was ongoing (Kafka emits no `CompletedTxn` for a
    /// marker without data: it affects neither the LSO nor the transaction index).
    fn apply(
        &mut self,
        h: &RecordBatchHeader,
        marker: Option<EndTxnMarker>,
    ) -> Option<CompletedTxn> {
        if h.is_control() {
            // A control batch without a marker (emptied by the cleaner) changes nothing, as
            // in Kafka's `ProducerAppendInfo.append`.
            let m = marker?;
            self.update_epoch(h.producer_epoch);
            let completed = (self.current_txn_first_offset >= 0).then_some(CompletedTxn {
                producer_id: self.producer_id,
                first_offset: self.current_txn_first_offset,
                last_offset: h.base_offset,
                aborted: !m.commit,
            });
            self.coordinator_epoch = m.coordinator_epoch;
            self.current_txn_first_offset = -1;
            self.last_timestamp = h.max_timestamp;
            return completed;
        }
        self.update_epoch(h.producer_epoch);
        self.batches.push_back(ProducerBatchMetadata {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            timestamp: h.max_timestamp,
        });
        while self.batches.len() > MAX_BATCHES_PER_PRODUCER {
            self.batches.pop_front();
        }
        if h.is_transactional() && self.current_txn_first_offset < 0 {
            // The first batch of a transaction starts it (Kafka's `appendDataBatch`).
            self.current_txn_first_offset = h.base_offset;
        }
        self.last_timestamp = h.max_timestamp;
        None
    }
}

/// A transaction ended by a marker (Kafka's `CompletedTxn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    producer_id: i64,
    first_offset: i64,
    /// Offset of the marker.
    last_offset: i64,
    aborted: bool,
}

/// The entries and completed transactions of a validated append.
#[derive(Debug)]
pub(crate) struct Update {
    entries: HashMap<i64, ProducerStateEntry>,
    completed: Vec<CompletedTxn>,
}

/// Kafka's `ProducerStateManager.inSequence`.
fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    next_seq == last_seq.wrapping_add(1) || (next_seq == 0 && last_seq == i32::MAX)
}

/// Result of validating an append against the producer state.
pub(crate) enum Prepared {
    /// Valid: the updated entries to install once the batches are written.
    Update(Update),
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(ProducerBatchMetadata),
}

/// Proof that a partition leader verified, with the transaction coordinator, that a
/// producer's transaction includes this partition (KIP-890 part 1; Kafka's
/// `VerificationGuard`). Handed out by [`crate::Log::start_txn_verification`] before the
/// coordinator is asked and passed back with the append: it matches only while nothing was
/// written for the producer in between (a transaction marker landing after the check clears
/// it, so the late write of an aborted transaction is refused instead of starting a new,
/// hanging one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

impl VerificationGuard {
    /// A guard no other call has returned (process-wide counter).
    fn fresh() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        VerificationGuard(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

/// How a leader append of client batches treats transactional batches that would start a
/// transaction on this partition (KIP-890 part 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnVerification {
    /// No verification (`transaction.partition.verification.enable=false`, or appends of the
    /// coordinators, which write their own transactional batches).
    #[default]
    NotRequired,
    /// Required: a transactional batch of a producer without an ongoing transaction here is
    /// refused with INVALID_TXN_STATE unless this is the producer's current guard.
    Required(Option<VerificationGuard>),
}

/// A verification in progress for one producer (Kafka's `VerificationStateEntry`).
#[derive(Debug, Clone, Copy)]
struct VerificationState {
    guard: VerificationGuard,
    epoch: i16,
    /// When it was created: entries whose append never came are dropped with idle producers.
    created_ms: i64,
}

/// The producer state of one log.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    partition: String,
    producers: HashMap<i64, ProducerStateEntry>,
    /// The open transactions as (first offset, producer id), oldest first (Kafka's
    /// `ongoingTxns`): the first unstable offset without a scan of every producer.
    ongoing: BTreeSet<(i64, i64)>,
    snapshots: BTreeSet<i64>,
    /// Snapshots at or above this offset survive the keep-the-latest-two pruning (tiered
    /// storage, KIP-405: the snapshot at a segment's end is uploaded with the segment, so it
    /// stays until that upload is done); `i64::MAX` (nothing extra kept) until the log's
    /// retention sets it.
    keep_from: i64,
    /// KIP-890 part 1: verifications in progress, by producer id. Memory only, as in Kafka:
    /// after a restart or leader change the leader verifies again.
    verifications: HashMap<i64, VerificationState>,
}

/// The open-transaction key of an entry, if its transaction is open.
fn ongoing_key(e: &ProducerStateEntry) -> Option<(i64, i64)> {
    (e.current_txn_first_offset >= 0).then_some((e.current_txn_first_offset, e.producer_id))
}

impl ProducerStateManager {
    /// Installs `entry`, keeping the open-transaction set in step.
    fn put(&mut self, entry: ProducerStateEntry) {
        let new_key = ongoing_key(&entry);
        if let Some(old) = self.producers.insert(entry.producer_id, entry) {
            if let Some(k) = ongoing_key(&old) {
                if Some(k) != new_key {
                    self.ongoing.remove(&k);
                }
            }
        }
        if let Some(k) = new_key {
            self.ongoing.insert(k);
        }
    }

    /// Replaces every entry (a loaded snapshot, or nothing).
    fn set_all(&mut self, producers: HashMap<i64, ProducerStateEntry>) {
        self.verifications.clear();
        self.ongoing = producers.values().filter_map(ongoing_key).collect();
        self.producers = producers;
    }

    /// Validates batches whose offsets are already assigned, as Kafka's
    /// `UnifiedLog.analyzeAndValidateProducerState` does, and computes the new entries.
    ///
    /// `batches` pairs each header with the content of its transaction marker (control
    /// batches only). Markers are checked as Kafka's `ProducerAppendInfo.appendEndTxnMarker`
    /// does (producer epoch not older, coordinator epoch not older), data batches as its
    /// `appendDataBatch` (epoch, sequence for clients, and no non-transactional batch while
    /// the producer's transaction is ongoing). Replication only logs what it would refuse.
    ///
    /// With [`TxnVerification::Required`], a client's transactional batch from a producer
    /// without an ongoing transaction here (the first write of a transaction) needs the
    /// producer's current [`VerificationGuard`] (Kafka's `batchMissingRequiredVerification`).
    pub(crate) fn prepare(
        &self,
        batches: &[(RecordBatchHeader, Option<EndTxnMarker>)],
        origin: AppendOrigin,
        verification: TxnVerification,
    ) -> Result<Prepared, StorageError> {
        let mut updated: HashMap<i64, ProducerStateEntry> = HashMap::new();
        let mut completed = Vec::new();
        for (h, marker) in batches {
            if !h.has_producer_id() {
                continue;
            }
            let pid = h.producer_id;
            let current = self.producers.get(&pid);
            if origin == AppendOrigin::Client {
                // Duplicates are checked against the state before this append, as in Kafka.
                if let Some(dup) = current.and_then(|e| e.find_duplicate(h)) {
                    return Ok(Prepared::Duplicate(dup));
                }
            }
            let entry = updated.entry(pid).or_insert_with(|| {
                current
                    .cloned()
                    .unwrap_or_else(|| ProducerStateEntry::empty(pid))
            });
            if h.producer_epoch < entry.producer_epoch {
                let msg = format!(
                    "epoch of producer {pid} at offset {} in {} is {}, which is smaller than the last seen epoch {}",
                    h.base_offset, self.partition, h.producer_epoch, entry.producer_epoch
                );
                if origin == AppendOrigin::Replication {
                    tracing::warn!("{msg}");
                } else {
                    return Err(StorageError::InvalidProducerEpoch(msg));
                }
            }
            if h.is_control() {
                if let Some(m) = marker {
                    if m.coordinator_epoch < entry.coordinator_epoch {
                        let msg = format!(
                            "invalid coordinator epoch for producer {pid} at offset {} in {}: {} (zombie), {} (current)",
                            h.base_offset, self.partition, m.coordinator_epoch, entry.coordinator_epoch
                        );
                        if origin == AppendOrigin::Replication {
                            tracing::info!("{msg}");
                        } else {
                            return Err(StorageError::TransactionCoordinatorFenced(msg));
                        }
                    }
                }
            } else {
                if origin == AppendOrigin::Client {
                    let current_epoch = current.map_or(NO_PRODUCER_EPOCH, |e| e.producer_epoch);
                    self.check_sequence(h, entry, current_epoch)?;
                }
                if let TxnVerification::Required(guard) = verification {
                    let missing = origin == AppendOrigin::Client
                        && h.is_transactional()
                        && entry.current_txn_first_offset < 0
                        && (guard.is_none() || guard != self.verification_guard(pid));
                    if missing {
                        return Err(StorageError::InvalidTxnState(format!(
                            "the transactional write of producer {pid} at offset {} in {} is not verified to be in an ongoing transaction (invalid verification guard)",
                            h.base_offset, self.partition
                        )));
                    }
                }
                if !h.is_transactional() && entry.current_txn_first_offset >= 0 {
                    let msg = format!(
                        "expected transactional write from producer {pid} at offset {} in {}",
                        h.base_offset, self.partition
                    );
                    if origin == AppendOrigin::Replication {
                        tracing::warn!("{msg}");
                    } else {
                        return Err(StorageError::InvalidTxnState(msg));
                    }
                }
            }
            completed.extend(entry.apply(h, *marker));
        }
        Ok(Prepared::Update(Update {
            entries: updated,
            completed,
        }))
    }

    /// Kafka's `ProducerAppendInfo.checkSequence` (Kafka 4: an unknown producer may start at
    /// any sequence, because its state may have been removed by retention or expiration).
    fn check_sequence(
        &self,
        h: &RecordBatchHeader,
        updated: &ProducerStateEntry,
        current_epoch: i16,
    ) -> Result<(), StorageError> {
        let pid = h.producer_id;
        let first_seq = h.base_sequence;
        if h.producer_epoch != updated.producer_epoch {
            if first_seq != 0 && updated.producer_epoch != NO_PRODUCER_EPOCH {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "invalid sequence number for new epoch of producer {pid} at offset {} in {}: {} (request epoch), {first_seq} (seq. number), {} (current producer epoch)",
                    h.base_offset, self.partition, h.producer_epoch, updated.producer_epoch
                )));
            }
        } else {
            let last_seq = updated.last_seq();
            if !(current_epoch == NO_PRODUCER_EPOCH || in_sequence(last_seq, first_seq)) {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "out of order sequence number for producer {pid} at offset {} in {}: {first_seq} (incoming seq. number), {last_seq} (current end sequence number)",
                    h.base_offset, self.partition
                )));
            }
        }
        Ok(())
    }

    /// Installs entries computed by [`ProducerStateManager::prepare`]; returns the aborted
    /// transactions to add to the transaction index of the segment holding their markers.
    pub(crate) fn commit(&mut self, update: Update) -> Vec<AbortedTxn> {
        for (_, e) in update.entries {
            // Anything written for a producer (its transaction's first batch, or a marker
            // ending it) ends a verification in progress, as Kafka's `update` does: a guard
            // handed out before a marker no longer admits a write after it.
            self.verifications.remove(&e.producer_id);
            self.put(e);
        }
        self.aborted_entries(&update.completed)
    }

    /// The index entries of the aborted ones of `completed` (in marker order), each with the
    /// last stable offset once it is complete: Kafka's `ProducerStateManager.lastStableOffset`
    /// — the first offset of the earliest transaction of another producer still open (those
    /// completed later in the same append count as open), else one past the marker.
    fn aborted_entries(&self, completed: &[CompletedTxn]) -> Vec<AbortedTxn> {
        let mut out = Vec::new();
        for (i, c) in completed.iter().enumerate() {
            if !c.aborted {
                continue;
            }
            // Kafka's `findNextIncompleteTxn`: the oldest open transaction of another producer.
            let open_elsewhere = self
                .ongoing
                .iter()
                .find(|(_, pid)| *pid != c.producer_id)
                .map(|(first, _)| *first)
                .into_iter()
                .chain(
                    completed[i + 1..]
                        .iter()
                        .filter(|l| l.producer_id != c.producer_id)
                        .map(|l| l.first_offset),
                )
                .min();
            out.push(AbortedTxn {
                producer_id: c.producer_id,
                first_offset: c.first_offset,
                last_offset: c.last_offset,
                last_stable_offset: open_elsewhere.unwrap_or(c.last_offset + 1),
            });
        }
        out
    }

    /// Applies a batch read back from the log (recovery and reload): no validation, as for
    /// replication. Returns the index entry of the transaction it aborts, if any.
    pub(crate) fn replay(
        &mut self,
        h: &RecordBatchHeader,
        marker: Option<EndTxnMarker>,
    ) -> Option<AbortedTxn> {
        if !h.has_producer_id() {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerStateEntry::empty(h.producer_id));
        let before = ongoing_key(entry);
        let completed = entry.apply(h, marker);
        let after = ongoing_key(entry);
        if before != after {
            if let Some(k) = before {
                self.ongoing.remove(&k);
            }
            if let Some(k) = after {
                self.ongoing.insert(k);
            }
        }
        self.aborted_entries(&[completed?]).pop()
    }

    /// KIP-890 part 1 (Kafka's `maybeCreateVerificationStateEntry`): `None` when the producer
    /// already has an ongoing transaction here at `epoch` or later (its writes need no
    /// verification), else the guard to verify under — the current one if a verification at
    /// this epoch is in progress, a new one otherwise (a newer epoch replaces an older
    /// entry; an older epoch keeps it, and its write will be fenced by the epoch check).
    pub(crate) fn start_verification(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        now_ms: i64,
    ) -> Option<VerificationGuard> {
        if self
            .producers
            .get(&producer_id)
            .is_some_and(|e| e.current_txn_first_offset >= 0 && e.producer_epoch >= producer_epoch)
        {
            return None;
        }
        match self.verifications.get(&producer_id) {
            Some(v) if v.epoch >= producer_epoch => Some(v.guard),
            _ => {
                let guard = VerificationGuard::fresh();
                self.verifications.insert(
                    producer_id,
                    VerificationState {
                        guard,
                        epoch: producer_epoch,
                        created_ms: now_ms,
                    },
                );
                Some(guard)
            }
        }
    }

    /// The guard of the verification in progress for `producer_id`, if any.
    pub(crate) fn verification_guard(&self, producer_id: i64) -> Option<VerificationGuard> {
        self.verifications.get(&producer_id).map(|v| v.guard)
    }

    /// The entry of one producer.
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerStateEntry> {
        self.producers.get(&producer_id)
    }

    /// Every entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &ProducerStateEntry> {
        self.producers.values()
    }

    /// Removes producers whose last timestamp is older than `now_ms - expiration_ms` and that
    /// have no ongoing transaction (`producer.id.expiration.ms`). Returns how many.
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        self.verifications
            .retain(|_, v| now_ms.saturating_sub(v.created_ms) < expiration_ms);
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset >= 0
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// First offset of the oldest ongoing transaction.
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.first().map(|(first, _)| *first)
    }

    /// Loads the latest valid snapshot at or below `log_end_offset`, deleting snapshots above
    /// it and unreadable ones. Returns the manager and the offset to replay the log from
    /// (`None`: no snapshot, replay everything).
    pub(crate) fn load(
        dir: &Path,
        partition: String,
        log_end_offset: i64,
    ) -> io::Result<(ProducerStateManager, Option<i64>)> {
        Self::load_at_or_below(dir, partition, log_end_offset, log_end_offset)
    }

    /// As [`ProducerStateManager::load`], but uses the latest snapshot at or below
    /// `at_or_below` (later ones up to the log end are kept): recovery replays from there to
    /// rebuild the transaction index of segments from that offset on.
    pub(crate) fn load_at_or_below(
        dir: &Path,
        partition: String,
        log_end_offset: i64,
        at_or_below: i64,
    ) -> io::Result<(ProducerStateManager, Option<i64>)> {
        let mut snapshots = BTreeSet::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((offset, SNAPSHOT_SUFFIX)) = parse_file_name(name) {
                snapshots.insert(offset);
            }
        }
        let mut mgr = ProducerStateManager {
            dir: dir.to_path_buf(),
            partition,
            producers: HashMap::new(),
            ongoing: BTreeSet::new(),
            snapshots,
            keep_from: i64::MAX,
            verifications: HashMap::new(),
        };
        mgr.delete_snapshots_after(log_end_offset)?;
        let mut from = None;
        for &offset in mgr.snapshots.clone().range(..=at_or_below).rev() {
            let path = mgr.snapshot_path(offset);
            match read_snapshot(&path) {
                Ok((snap_offset, producers)) if snap_offset == offset => {
                    mgr.set_all(producers);
                    from = Some(offset);
                    break;
                }
                Ok((snap_offset, _)) => {
                    tracing::warn!(path = %path.display(), snap_offset, "producer snapshot names a different offset; deleting it");
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "unreadable producer snapshot; deleting it");
                }
            }
            remove_if_exists(&path)?;
            mgr.snapshots.remove(&offset);
        }
        Ok((mgr, from))
    }

    /// Forgets all state (before a full replay).
    pub(crate) fn clear(&mut self) {
        self.set_all(HashMap::new());
    }

    fn snapshot_path(&self, offset: i64) -> PathBuf {
        self.dir.join(file_name(offset, SNAPSHOT_SUFFIX))
    }

    /// Offsets of the snapshot files present.
    pub(crate) fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.iter().copied().collect()
    }

    /// Deletes snapshots above `offset` (after a truncation or a torn tail).
    pub(crate) fn delete_snapshots_after(&mut self, offset: i64) -> io::Result<()> {
        let above: Vec<i64> = self.snapshots.range(offset + 1..).copied().collect();
        for o in above {
            remove_if_exists(&self.snapshot_path(o))?;
            self.snapshots.remove(&o);
        }
        Ok(())
    }

    /// Writes the current state as `<offset>.snapshot` (not fsynced: the caller fsyncs it at
    /// the next flush; a torn snapshot fails its CRC and is skipped on load) and keeps only
    /// the latest two snapshots. Returns the file's path.
    pub(crate) fn take_snapshot(&mut self, offset: i64) -> io::Result<PathBuf> {
        let path = self.snapshot_path(offset);
        let bytes = encode_snapshot(offset, &self.producers);
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        let f = crate::io::open(&path, &opts)?;
        if let Err(e) = crate::io::write_at(&path, &f, &bytes, 0) {
            // A partial snapshot (full disk) would fail its CRC on load; remove it anyway so
            // that the directory holds only whole ones.
            let _ = crate::io::remove_if_exists(&path);
            return Err(e);
        }
        self.snapshots.insert(offset);
        while self.snapshots.len() > SNAPSHOTS_TO_KEEP {
            match self.snapshots.first().copied() {
                Some(oldest) if oldest < self.keep_from => {
                    self.snapshots.remove(&oldest);
                    remove_if_exists(&self.snapshot_path(oldest))?;
                }
                _ => break,
            }
        }
        Ok(path)
    }

    /// Keeps every snapshot at or above `offset` from now on (see `keep_from`).
    pub(crate) fn keep_snapshots_from(&mut self, offset: i64) {
        self.keep_from = offset;
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    crate::io::remove_if_exists(path)
}

/// Encodes a snapshot file.
pub(crate) fn encode_snapshot(
    offset: i64,
    producers: &HashMap<i64, ProducerStateEntry>,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + producers.len() * 64);
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    let mut entries: Vec<&ProducerStateEntry> = producers.values().collect();
    entries.sort_by_key(|e| e.producer_id);
    for e in entries {
        body.extend_from_slice(&e.producer_id.to_be_bytes());
        body.extend_from_slice(&e.producer_epoch.to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
        let n = e.batches.len().min(MAX_BATCHES_PER_PRODUCER);
        body.push(n as u8);
        for b in e.batches.iter().skip(e.batches.len() - n) {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.first_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A cursor that fails instead of panicking on short input.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let end = self.pos + N;
        let slice = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let mut a = [0u8; N];
        a.copy_from_slice(slice);
        self.pos = end;
        Ok(a)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.take::<2>().map(u16::from_be_bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|a| a[0])
    }
}

/// Decodes a snapshot file: its offset and producers. Unknown versions, bad magic, CRC
/// mismatches and malformed contents are errors.
pub(crate) fn decode_snapshot(
    bytes: &[u8],
) -> Result<(i64, HashMap<i64, ProducerStateEntry>), String> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    if &c.take::<4>()? != SNAPSHOT_MAGIC {
        return Err("bad magic".into());
    }
    let version = c.u16()?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let flags = c.u16()?;
    if flags != 0 {
        return Err(format!("unknown snapshot flags {flags:#06x}"));
    }
    let crc = c.u32()?;
    let body = &bytes[SNAPSHOT_HEADER..];
    let computed = crc32c::crc32c(body);
    if crc != computed {
        return Err(format!(
            "CRC mismatch: stored {crc:#010x}, computed {computed:#010x}"
        ));
    }
    let offset = c.i64()?;
    let count = c.u32()?;
    let mut producers = HashMap::new();
    for _ in 0..count {
        let producer_id = c.i64()?;
        let producer_epoch = c.i16()?;
        let coordinator_epoch = c.i32()?;
        let last_timestamp = c.i64()?;
        let current_txn_first_offset = c.i64()?;
        let n = c.u8()? as usize;
        if n > MAX_BATCHES_PER_PRODUCER {
            return Err(format!("{n} batches for producer {producer_id}"));
        }
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(ProducerBatchMetadata {
                first_seq: c.i32()?,
                last_seq: c.i32()?,
                first_offset: c.i64()?,
                last_offset: c.i64()?,
                timestamp: c.i64()?,
            });
        }
        producers.insert(
            producer_id,
            ProducerStateEntry {
                producer_id,
                producer_epoch,
                batches,
                last_timestamp,
                coordinator_epoch,
                current_txn_first_offset,
            },
        );
    }
    if c.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - c.pos));
    }
    Ok((offset, producers))
}

fn read_snapshot(path: &Path) -> Result<(i64, HashMap<i64, ProducerStateEntry>), String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    decode_snapshot(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HashMap<i64, ProducerStateEntry> {
        let mut m = HashMap::new();
        let mut e = ProducerStateEntry::empty(7);
        e.producer_epoch = 3;
        e.last_timestamp = 99;
        // An open transaction and a marker's coordinator epoch round-trip too.
        e.current_txn_first_offset = 104;
        e.coordinator_epoch = 9;
        for i in 0..7 {
            e.batches.push_back(ProducerBatchMetadata {
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                first_offset: 100 + i64::from(i) * 10,
                last_offset: 109 + i64::from(i) * 10,
                timestamp: 1000 + i64::from(i),
            });
        }
        while e.batches.len() > MAX_BATCHES_PER_PRODUCER {
            e.batches.pop_front();
        }
        m.insert(7, e);
        m.insert(8, ProducerStateEntry::empty(8));
        m
    }

    #[test]
    fn snapshot_round_trip() {
        let m = sample();
        let bytes = encode_snapshot(170, &m);
        let (offset, decoded) = decode_snapshot(&bytes).expect("decodes");
        assert_eq!(offset, 170);
        assert_eq!(decoded, m);
    }

    #[test]
    fn snapshot_rejects_corruption_and_unknown_versions() {
        let bytes = encode_snapshot(170, &sample());
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(decode_snapshot(&b).is_err(), "flip at {i} accepted");
        }
        for len in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..len]).is_err());
        }
        let mut v2 = bytes.clone();
        v2[4..6].copy_from_slice(&2u16.to_be_bytes());
        let err = decode_snapshot(&v2).expect_err("version 2 rejected");
        assert!(err.contains("version"));
    }

    #[test]
    fn sequence_wrap() {
        assert!(in_sequence(5, 6));
        assert!(in_sequence(i32::MAX, 0));
        assert!(in_sequence(NO_SEQUENCE, 0));
        assert!(!in_sequence(5, 7));
        assert!(!in_sequence(5, 5));
    }
}
