//! What the replica manager knows of a partition's tiered storage (KIP-405): whether the
//! topic has `remote.storage.enable`, how far its remote log reaches, and views of the local
//! segments for the remote log manager (`crate::remote_log_manager`), which owns the
//! uploads. The log stays private to the replica manager: the remote log manager only gets
//! file paths of rolled, immutable segments and the offsets bounding them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use nagare_remote_storage::plan::LocalSegment;
use nagare_remote_storage::SegmentFiles;

use super::Partition;

/// `copied_end` before the remote log manager has loaded the partition's remote state.
const UNKNOWN: i64 = i64::MIN;

/// Per-partition tiered-storage facts shared by the replica manager and the remote log
/// manager.
#[derive(Debug)]
pub struct TierState {
    /// The topic has `remote.storage.enable=true` and the broker
    /// `remote.log.storage.system.enable=true`.
    enabled: AtomicBool,
    /// Highest offset in a finished upload; [`UNKNOWN`] until the remote state is loaded,
    /// -1 when nothing is uploaded.
    copied_end: AtomicI64,
    /// The remote log start offset; -1 when the remote log is empty or not loaded.
    remote_log_start: AtomicI64,
    /// The log start DeleteRecords asked for, applied to the remote state by the next pass
    /// of the remote log manager; -1 when none.
    requested_log_start: AtomicI64,
}

impl Default for TierState {
    fn default() -> Self {
        TierState {
            enabled: AtomicBool::new(false),
            copied_end: AtomicI64::new(UNKNOWN),
            remote_log_start: AtomicI64::new(-1),
            requested_log_start: AtomicI64::new(-1),
        }
    }
}

impl TierState {
    /// Whether the partition is tiered.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    pub(super) fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Release);
    }

    /// Publishes the remote log's reach (after each change the remote log manager persisted).
    pub fn publish(&self, copied_end: Option<i64>, remote_log_start: Option<i64>) {
        self.copied_end
            .store(copied_end.unwrap_or(-1), Ordering::Release);
        self.remote_log_start
            .store(remote_log_start.unwrap_or(-1), Ordering::Release);
    }

    /// Forgets the remote reach (leadership lost: another broker's uploads move it now).
    pub fn reset(&self) {
        self.copied_end.store(UNKNOWN, Ordering::Release);
        self.remote_log_start.store(-1, Ordering::Release);
    }

    /// The remote log start offset, if known and non-empty (raised at once by a
    /// DeleteRecords not yet applied to the remote state).
    pub fn remote_log_start(&self) -> Option<i64> {
        let v = self.remote_log_start.load(Ordering::Acquire);
        (v >= 0).then(|| v.max(self.requested_log_start.load(Ordering::Acquire)))
    }

    /// DeleteRecords on a tiered partition: the log start moves to `offset` (never down);
    /// the remote log manager persists it and deletes the remote segments below it.
    pub fn request_log_start(&self, offset: i64) {
        self.requested_log_start.fetch_max(offset, Ordering::AcqRel);
    }

    /// The log start DeleteRecords asked for, if any.
    pub fn requested_log_start(&self) -> Option<i64> {
        let v = self.requested_log_start.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// The highest uploaded offset, if known.
    pub fn copied_end(&self) -> Option<i64> {
        let v = self.copied_end.load(Ordering::Acquire);
        (v >= 0).then_some(v)
    }

    /// The exclusive offset below which local retention may delete segments of a log whose
    /// high watermark is `hw`: for a tiered partition only what is uploaded (KIP-405: local
    /// segments go after their upload), nothing while the remote state is unknown (e.g. on
    /// a follower, until the follower path learns the remote metadata).
    pub fn retention_bound(&self, hw: i64) -> i64 {
        if !self.enabled() {
            return hw;
        }
        match self.copied_end.load(Ordering::Acquire) {
            UNKNOWN => i64::MIN,
            end => hw.min(end.saturating_add(1)),
        }
    }
}

/// A rolled local segment, as the remote log manager uploads it.
#[derive(Debug, Clone)]
pub struct LocalSegmentView {
    /// Offsets, size and largest timestamp.
    pub segment: LocalSegment,
    /// Its files.
    pub files: SegmentFiles,
}

/// Largest timestamp of a rolled segment: the last time-index entry (Kafka appends one for
/// the segment's largest timestamp when it rolls), else the file's modification time.
fn max_timestamp(time_index: &Path, log: &Path) -> i64 {
    if let Ok(b) = std::fs::read(time_index) {
        let n = b.len() / 12;
        if n > 0 {
            let e = &b[(n - 1) * 12..n * 12];
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&e[..8]);
            return i64::from_be_bytes(ts);
        }
    }
    std::fs::metadata(log)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

impl Partition {
    /// Every local segment, oldest first, the last one being the active segment (never
    /// uploaded). Files of segments deleted meanwhile read as size 0.
    pub fn local_segments(&self) -> Vec<LocalSegmentView> {
        let dir = self.log.dir().to_path_buf();
        let bases = self.log.segment_base_offsets();
        let end = self.log.log_end_offset();
        let file = |base: i64, suffix: &str| dir.join(format!("{base:020}{suffix}"));
        let snapshots = self.log.producer_snapshot_offsets();
        bases
            .iter()
            .enumerate()
            .map(|(i, &base)| {
                let next = bases.get(i + 1).copied().unwrap_or(end);
                let log = file(base, ".log");
                let time_index = file(base, ".timeindex");
                let size = std::fs::metadata(&log).map_or(0, |m| m.len());
                let txn = file(base, ".txnindex");
                let txn_index = std::fs::metadata(&txn)
                    .is_ok_and(|m| m.len() > 0)
                    .then_some(txn);
                // Kafka uploads the producer snapshot taken at the segment's end offset.
                let producer_snapshot = snapshots.contains(&next).then(|| file(next, ".snapshot"));
                LocalSegmentView {
                    segment: LocalSegment {
                        base_offset: base,
                        next_offset: next,
                        size_bytes: size,
                        max_timestamp_ms: max_timestamp(&time_index, &log),
                    },
                    files: SegmentFiles {
                        log,
                        offset_index: file(base, ".index"),
                        time_index,
                        txn_index,
                        producer_snapshot,
                    },
                }
            })
            .collect()
    }

    /// The leader-epoch slice of `[start, end]` (KIP-405's `segmentLeaderEpochs`): each
    /// epoch with data in the range and its first offset there.
    pub fn epochs_in_range(&self, start: i64, end: i64) -> std::collections::BTreeMap<i32, i64> {
        let entries = self.log.epoch_entries();
        let mut out = std::collections::BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let next_start = entries.get(i + 1).map_or(i64::MAX, |n| n.start_offset);
            if e.start_offset > end || next_start <= start {
                continue;
            }
            out.insert(e.epoch, e.start_offset.max(start));
        }
        out
    }

    /// The partition's log start offset as consumers see it: the remote log start of a
    /// tiered partition when its remote log reaches below the local one (ListOffsets -2,
    /// Fetch's `log_start_offset`), else the local log start.
    pub fn earliest_offset(&self) -> i64 {
        let local = self.log.log_start_offset();
        match self.tier.remote_log_start().filter(|_| self.tier.enabled()) {
            Some(remote) => remote.min(local),
            None => local,
        }
    }

    /// KIP-405's follower path: empties the log and restarts it at the leader's local log
    /// start `offset` with the producer state and leader epochs of the remote log below it
    /// (see `RemoteLogManager::follower_start`), instead of fetching remote bytes.
    pub fn start_with_remote_state(
        &self,
        offset: i64,
        producer_snapshot: Option<&[u8]>,
        epochs: &[(i32, i64)],
    ) -> Result<(), nagare_storage::StorageError> {
        self.log
            .truncate_fully_and_start_with_state(offset, producer_snapshot, epochs)
    }

    /// The upload bound: rolled segments entirely below it may be uploaded (the high
    /// watermark lowered to the last stable offset, so undecided transactions stay local).
    pub fn upload_bound(&self) -> i64 {
        self.last_stable_offset()
    }
}

impl super::ReplicaManager {
    /// A ListOffsets by `timestamp` on a partition led here that the remote log may answer
    /// (KIP-405: the first record at or after a timestamp can lie below the local log
    /// start): the partition and the remote log manager when it is tiered and a finished
    /// remote segment below the local log start reaches `timestamp`.
    pub fn remote_timestamp_lookup(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        timestamp: i64,
    ) -> Option<(
        std::sync::Arc<Partition>,
        std::sync::Arc<crate::remote_log_manager::RemoteLogManager>,
    )> {
        let p = self
            .leader_partition(topic, partition, current_leader_epoch)
            .ok()?;
        if !p.tier.enabled() {
            return None;
        }
        let rlm = self.remote_log.get()?.clone();
        let state = rlm.state(p.topic_id, partition)?;
        let local_start = p.log.log_start_offset();
        let earliest = p.earliest_offset();
        let reaches = state.finished().any(|m| {
            m.start_offset < local_start
                && m.end_offset >= earliest
                && m.max_timestamp_ms >= timestamp
        });
        reaches.then_some((p, rlm))
    }
}

/// Writes remote bytes to an unlinked file in `dir` and returns them as a file region, so a
/// remote read is answered through the same (zero-copy) path as local data. The file
/// disappears when the response drops its handle.
pub(super) fn stage(dir: &Path, bytes: &[u8]) -> std::io::Result<nagare_storage::FileSlice> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".remote-fetch-{}-{n}.tmp", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let unlinked = std::fs::remove_file(&path);
    f.write_all(bytes)?;
    unlinked?;
    Ok(nagare_storage::FileSlice {
        file: std::sync::Arc::new(f),
        position: 0,
        len: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_waits_for_the_remote_state() {
        let t = TierState::default();
        assert_eq!(
            t.retention_bound(100),
            100,
            "not tiered: the high watermark"
        );
        t.set_enabled(true);
        assert_eq!(t.retention_bound(100), i64::MIN, "unknown: nothing goes");
        t.publish(None, None);
        assert_eq!(t.retention_bound(100), 0, "nothing uploaded");
        t.publish(Some(49), Some(0));
        assert_eq!(t.retention_bound(100), 50);
        t.publish(Some(499), Some(0));
        assert_eq!(t.retention_bound(100), 100, "never past the high watermark");
        t.reset();
        assert_eq!(t.retention_bound(100), i64::MIN);
        assert_eq!(t.remote_log_start(), None);
    }
}
