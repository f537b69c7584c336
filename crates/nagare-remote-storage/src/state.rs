//! The per-partition remote log state: a sans-I/O state machine over the remote segments of
//! one partition (what Kafka's `RemoteLogMetadataCache` holds per partition, fed by
//! `__remote_log_metadata`).
//!
//! Every change is an input that either applies completely or is refused with a
//! [`StateError`] leaving the state untouched (a test proves it). The shell — the leader's
//! upload task — persists the state as a manifest object ([`RemoteLogState::encode`]) after
//! each accepted change and before acting on it, so whichever replica leads next loads the
//! manifest and continues exactly where the last one stopped:
//!
//! 1. `claim(leader_epoch)`: a new leader fences older leaders' writes and learns which
//!    uploads they abandoned (COPY_STARTED) or left half-deleted (DELETE_STARTED); it deletes
//!    those objects and finishes their deletion.
//! 2. `begin_copy(metadata)` → persist → upload the objects → `finish_copy(id)` → persist.
//!    Only then may the local segment go (local retention waits for uploads).
//! 3. `begin_delete(id)` → persist → delete the objects → `finish_delete(id)` → persist.
//!
//! Offsets never gap: a copy must start at or below the next offset not yet copied and must
//! reach past it, so no committed offset is skipped and no segment is uploaded twice.
//! Segments of different leaders may overlap (replicas roll at different offsets, as in
//! Kafka); readers pick the finished segment containing the offset.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteSegmentState, TopicIdPartition,
};

/// Why an input was refused. The state is unchanged after every error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A leader with an older epoch tried to write (Kafka's FENCED_LEADER_EPOCH).
    #[error("fenced: leader epoch {given} is older than {current}")]
    Fenced {
        /// The state's current leader epoch.
        current: i32,
        /// The epoch given with the input.
        given: i32,
    },
    /// The segment belongs to another partition.
    #[error("segment of another partition")]
    WrongPartition,
    /// No segment with that id.
    #[error("unknown remote segment {0}")]
    UnknownSegment(Uuid),
    /// The segment already exists.
    #[error("remote segment {0} already exists")]
    DuplicateSegment(Uuid),
    /// A state change Kafka does not allow.
    #[error("invalid transition {from:?} -> {to:?}")]
    InvalidTransition {
        /// The current state.
        from: RemoteSegmentState,
        /// The requested state.
        to: RemoteSegmentState,
    },
    /// The copy would leave offsets `[expected, start)` out of the remote log.
    #[error("gap: next offset to copy is {expected}, segment starts at {start}")]
    Gap {
        /// The next offset not yet copied.
        expected: i64,
        /// The segment's start offset.
        start: i64,
    },
    /// Everything in the segment is already copied.
    #[error("already copied: segment ends at {end}, copied up to {copied}")]
    AlreadyCopied {
        /// The segment's end offset.
        end: i64,
        /// The highest offset already copied.
        copied: i64,
    },
    /// Another copy of this partition is still in progress (copies are sequential, as
    /// Kafka's per-partition copy task).
    #[error("a copy is already in progress")]
    CopyInProgress,
    /// Malformed metadata (end before start, a state other than COPY_STARTED on creation).
    #[error("invalid segment metadata: {0}")]
    Invalid(&'static str),
}

/// The remote log of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLogState {
    partition: TopicIdPartition,
    /// Epoch of the leader that last claimed the partition; older leaders are fenced.
    leader_epoch: i32,
    /// Lowest offset a reader may see (raised by DeleteRecords and retention); -1 = unset.
    log_start_offset: i64,
    /// Highest offset ever in a finished copy (Kafka's `highestOffsetInRemoteStorage`); it
    /// never goes down, so segments deleted by remote retention are not uploaded again.
    highest_copied: i64,
    /// Live segments (not DELETE_FINISHED), by start offset then id.
    segments: BTreeMap<(i64, Uuid), RemoteLogSegmentMetadata>,
}

impl RemoteLogState {
    /// An empty remote log.
    pub fn new(partition: TopicIdPartition) -> Self {
        RemoteLogState {
            partition,
            leader_epoch: -1,
            log_start_offset: -1,
            highest_copied: -1,
            segments: BTreeMap::new(),
        }
    }

    /// The partition.
    pub fn partition(&self) -> &TopicIdPartition {
        &self.partition
    }

    /// The epoch of the leader that last claimed the partition.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    fn check_epoch(&self, epoch: i32) -> Result<(), StateError> {
        if epoch < self.leader_epoch {
            return Err(StateError::Fenced {
                current: self.leader_epoch,
                given: epoch,
            });
        }
        Ok(())
    }

    fn key_of(&self, id: &RemoteLogSegmentId) -> Result<(i64, Uuid), StateError> {
        if id.partition != self.partition {
            return Err(StateError::WrongPartition);
        }
        self.segments
            .iter()
            .find(|(_, m)| m.id.segment_id == id.segment_id)
            .map(|(k, _)| *k)
            .ok_or(StateError::UnknownSegment(id.segment_id))
    }

    /// A leader of `leader_epoch` takes over the partition. Returns the segments it must
    /// clean up: uploads abandoned by earlier leaders (COPY_STARTED, their objects possibly
    /// partial) and deletions left unfinished (DELETE_STARTED). The caller moves the former
    /// to DELETE_STARTED with [`Self::begin_delete`] and finishes both.
    pub fn claim(
        &mut self,
        leader_epoch: i32,
    ) -> Result<Vec<RemoteLogSegmentMetadata>, StateError> {
        self.check_epoch(leader_epoch)?;
        self.leader_epoch = leader_epoch;
        Ok(self
            .segments
            .values()
            .filter(|m| {
                matches!(
                    m.state,
                    RemoteSegmentState::CopyStarted | RemoteSegmentState::DeleteStarted
                )
            })
            .cloned()
            .collect())
    }

    /// The highest offset ever in a finished copy, if any (also after remote retention
    /// deleted that copy: local retention may delete everything up to it).
    pub fn copied_end_offset(&self) -> Option<i64> {
        (self.highest_copied >= 0).then_some(self.highest_copied)
    }

    /// The first offset not yet in the remote log (where the next copy must start at the
    /// latest); `None` when nothing is copied yet.
    pub fn next_copy_offset(&self) -> Option<i64> {
        self.copied_end_offset().map(|e| e + 1)
    }

    /// The remote log start offset (what ListOffsets EARLIEST answers for a tiered topic):
    /// the lowest offset of a finished segment, raised to the log start offset.
    pub fn log_start_offset(&self) -> Option<i64> {
        let first = self.finished().map(|m| m.start_offset).min()?;
        Some(first.max(self.log_start_offset))
    }

    /// Finished segments in offset order (what readers and retention see).
    pub fn finished(&self) -> impl Iterator<Item = &RemoteLogSegmentMetadata> {
        self.segments
            .values()
            .filter(|m| m.state == RemoteSegmentState::CopyFinished)
    }

    /// Every live segment in offset order, whatever its state.
    pub fn segments(&self) -> impl Iterator<Item = &RemoteLogSegmentMetadata> {
        self.segments.values()
    }

    /// Total bytes of finished segments.
    pub fn size_bytes(&self) -> u64 {
        self.finished().map(|m| m.segment_size_bytes).sum()
    }

    /// The finished segment a fetch at `offset` reads: the one containing it, or the first
    /// one after it (offsets below a segment's start can be missing after compaction or an
    /// aborted batch, as Kafka's `findNextSegmentMetadata`). `None` below the log start or
    /// past the remote log.
    pub fn segment_for_fetch(&self, offset: i64) -> Option<&RemoteLogSegmentMetadata> {
        if offset < self.log_start_offset {
            return None;
        }
        self.finished()
            .filter(|m| m.contains(offset))
            .last()
            .or_else(|| self.finished().find(|m| m.start_offset > offset))
    }

    /// A new upload begins (COPY_STARTED). `metadata.start_offset` must not leave a gap after
    /// the copied offsets and `end_offset` must reach past them (no duplicate upload).
    pub fn begin_copy(
        &mut self,
        metadata: RemoteLogSegmentMetadata,
        leader_epoch: i32,
    ) -> Result<(), StateError> {
        self.check_epoch(leader_epoch)?;
        if metadata.id.partition != self.partition {
            return Err(StateError::WrongPartition);
        }
        if metadata.state != RemoteSegmentState::CopyStarted {
            return Err(StateError::Invalid("a new segment starts in COPY_STARTED"));
        }
        if metadata.end_offset < metadata.start_offset {
            return Err(StateError::Invalid("end offset before start offset"));
        }
        if self
            .segments
            .values()
            .any(|m| m.id.segment_id == metadata.id.segment_id)
        {
            return Err(StateError::DuplicateSegment(metadata.id.segment_id));
        }
        if self
            .segments
            .values()
            .any(|m| m.state == RemoteSegmentState::CopyStarted)
        {
            return Err(StateError::CopyInProgress);
        }
        if let Some(next) = self.next_copy_offset() {
            if metadata.start_offset > next {
                return Err(StateError::Gap {
                    expected: next,
                    start: metadata.start_offset,
                });
            }
            if metadata.end_offset < next {
                return Err(StateError::AlreadyCopied {
                    end: metadata.end_offset,
                    copied: next - 1,
                });
            }
        }
        self.leader_epoch = leader_epoch;
        self.segments
            .insert((metadata.start_offset, metadata.id.segment_id), metadata);
        Ok(())
    }

    fn transition(
        &mut self,
        id: &RemoteLogSegmentId,
        to: RemoteSegmentState,
        event_timestamp_ms: i64,
        leader_epoch: i32,
    ) -> Result<(), StateError> {
        self.check_epoch(leader_epoch)?;
        let key = self.key_of(id)?;
        let from = self.segments[&key].state;
        if !from.can_transition_to(to) {
            return Err(StateError::InvalidTransition { from, to });
        }
        if to == RemoteSegmentState::CopyFinished {
            let end = self.segments[&key].end_offset;
            self.highest_copied = self.highest_copied.max(end);
        }
        if to == RemoteSegmentState::DeleteFinished {
            self.segments.remove(&key);
        } else if let Some(m) = self.segments.get_mut(&key) {
            m.state = to;
            m.event_timestamp_ms = event_timestamp_ms;
        }
        Ok(())
    }

    /// Every object of the upload is stored (COPY_FINISHED): readers may use it and the local
    /// segment becomes eligible for local retention.
    pub fn finish_copy(
        &mut self,
        id: &RemoteLogSegmentId,
        event_timestamp_ms: i64,
        leader_epoch: i32,
    ) -> Result<(), StateError> {
        self.transition(
            id,
            RemoteSegmentState::CopyFinished,
            event_timestamp_ms,
            leader_epoch,
        )
    }

    /// Deletion begins (DELETE_STARTED): readers stop using the segment.
    pub fn begin_delete(
        &mut self,
        id: &RemoteLogSegmentId,
        event_timestamp_ms: i64,
        leader_epoch: i32,
    ) -> Result<(), StateError> {
        self.transition(
            id,
            RemoteSegmentState::DeleteStarted,
            event_timestamp_ms,
            leader_epoch,
        )
    }

    /// Every object is deleted (DELETE_FINISHED): the entry is dropped.
    pub fn finish_delete(
        &mut self,
        id: &RemoteLogSegmentId,
        event_timestamp_ms: i64,
        leader_epoch: i32,
    ) -> Result<(), StateError> {
        self.transition(
            id,
            RemoteSegmentState::DeleteFinished,
            event_timestamp_ms,
            leader_epoch,
        )
    }

    /// The local log lost offsets `[next copy offset, to)` before they were uploaded (only
    /// DeleteRecords can do that: local retention waits for uploads). Those offsets are
    /// deleted records, so copying resumes at `to` and the log start moves up to it; without
    /// this, uploads and therefore local retention would stop for good on the gap.
    pub fn skip_to(&mut self, to: i64, leader_epoch: i32) -> Result<(), StateError> {
        self.check_epoch(leader_epoch)?;
        if self.next_copy_offset().is_some_and(|next| to > next) {
            self.highest_copied = to - 1;
            self.log_start_offset = self.log_start_offset.max(to);
        }
        Ok(())
    }

    /// Raises the log start offset (DeleteRecords, or the local log start moving up when the
    /// whole log's retention deleted data). Never lowers it.
    pub fn raise_log_start_offset(&mut self, offset: i64) {
        self.log_start_offset = self.log_start_offset.max(offset);
    }

    /// The finished segments whole-log retention removes, oldest first (Kafka's
    /// `RLMExpirationTask`): those entirely below the log start offset, then while the whole
    /// log (remote plus `local_only_bytes`, the local bytes not yet copied) stays at or above
    /// `retention_bytes` without the segment, then those whose newest record is older than
    /// `retention_ms`. `-1` disables a limit. Stops at the first segment that stays.
    pub fn retention_candidates(
        &self,
        now_ms: i64,
        retention_ms: i64,
        retention_bytes: i64,
        local_only_bytes: u64,
    ) -> Vec<RemoteLogSegmentMetadata> {
        let mut out = Vec::new();
        let total = self.size_bytes().saturating_add(local_only_bytes);
        let mut breach: i64 = if retention_bytes >= 0 {
            i64::try_from(total).unwrap_or(i64::MAX) - retention_bytes
        } else {
            0
        };
        for m in self.finished() {
            let size = i64::try_from(m.segment_size_bytes).unwrap_or(i64::MAX);
            let below_start = self.log_start_offset >= 0 && m.end_offset < self.log_start_offset;
            let by_size = retention_bytes >= 0 && breach - size >= 0;
            let by_time = retention_ms >= 0 && m.max_timestamp_ms < now_ms - retention_ms;
            if !(below_start || by_size || by_time) {
                break;
            }
            breach -= size;
            out.push(m.clone());
        }
        out
    }

    /// Serialises the state as a manifest object: magic `NRLM`, version (u16 BE), CRC-32C of
    /// the payload (u32 BE), then the JSON payload. JSON keeps the manifest readable by
    /// operators; the CRC catches a torn or corrupted object.
    pub fn encode(&self) -> Result<Vec<u8>, ManifestError> {
        let manifest = ManifestV1 {
            partition: self.partition.clone(),
            leader_epoch: self.leader_epoch,
            log_start_offset: self.log_start_offset,
            highest_copied: self.highest_copied,
            segments: self.segments.values().cloned().collect(),
        };
        let payload =
            serde_json::to_vec(&manifest).map_err(|e| ManifestError::Json(e.to_string()))?;
        let mut out = Vec::with_capacity(payload.len() + 10);
        out.extend_from_slice(MANIFEST_MAGIC);
        out.extend_from_slice(&MANIFEST_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
        out.extend_from_slice(&payload);
        Ok(out)
    }

    /// Parses a manifest written by [`Self::encode`], rejecting unknown versions and bad CRCs.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() < 10 || &bytes[..4] != MANIFEST_MAGIC {
            return Err(ManifestError::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != MANIFEST_VERSION {
            return Err(ManifestError::UnknownVersion(version));
        }
        let crc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let payload = &bytes[10..];
        if crc32c::crc32c(payload) != crc {
            return Err(ManifestError::BadCrc);
        }
        let m: ManifestV1 =
            serde_json::from_slice(payload).map_err(|e| ManifestError::Json(e.to_string()))?;
        let mut segments = BTreeMap::new();
        for seg in m.segments {
            if seg.id.partition != m.partition || seg.end_offset < seg.start_offset {
                return Err(ManifestError::Json(format!(
                    "segment {} does not belong to the manifest's partition or has bad offsets",
                    seg.id.segment_id
                )));
            }
            segments.insert((seg.start_offset, seg.id.segment_id), seg);
        }
        Ok(RemoteLogState {
            partition: m.partition,
            leader_epoch: m.leader_epoch,
            log_start_offset: m.log_start_offset,
            highest_copied: m.highest_copied,
            segments,
        })
    }
}

/// The manifest's JSON payload, version 1.
#[derive(Serialize, Deserialize)]
struct ManifestV1 {
    partition: TopicIdPartition,
    leader_epoch: i32,
    log_start_offset: i64,
    highest_copied: i64,
    segments: Vec<RemoteLogSegmentMetadata>,
}

const MANIFEST_MAGIC: &[u8; 4] = b"NRLM";
const MANIFEST_VERSION: u16 = 1;

/// A manifest object that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a manifest.
    #[error("not a remote log manifest")]
    BadMagic,
    /// Written by a newer version.
    #[error("unknown manifest version {0}")]
    UnknownVersion(u16),
    /// Torn or corrupted.
    #[error("manifest CRC mismatch")]
    BadCrc,
    /// The payload does not parse.
    #[error("manifest payload: {0}")]
    Json(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicIdPartition {
        TopicIdPartition {
            topic: "t".into(),
            topic_id: Uuid::from_u128(7),
            partition: 0,
        }
    }

    fn seg(start: i64, end: i64, size: u64, max_ts: i64) -> RemoteLogSegmentMetadata {
        RemoteLogSegmentMetadata {
            id: RemoteLogSegmentId::generate(tp()),
            start_offset: start,
            end_offset: end,
            max_timestamp_ms: max_ts,
            broker_id: 1,
            event_timestamp_ms: 0,
            segment_size_bytes: size,
            segment_leader_epochs: BTreeMap::from([(0, start)]),
            txn_index_present: false,
            producer_snapshot_present: true,
            state: RemoteSegmentState::CopyStarted,
        }
    }

    fn copy(s: &mut RemoteLogState, m: RemoteLogSegmentMetadata, epoch: i32) {
        let id = m.id.clone();
        s.begin_copy(m, epoch).expect("begin");
        s.finish_copy(&id, 1, epoch).expect("finish");
    }

    #[test]
    fn transitions_follow_kafka() {
        use RemoteSegmentState::*;
        assert!(CopyStarted.can_transition_to(CopyFinished));
        assert!(CopyStarted.can_transition_to(DeleteStarted));
        assert!(CopyFinished.can_transition_to(DeleteStarted));
        assert!(DeleteStarted.can_transition_to(DeleteFinished));
        assert!(!CopyFinished.can_transition_to(CopyStarted));
        assert!(!DeleteStarted.can_transition_to(CopyFinished));
        assert!(!CopyStarted.can_transition_to(DeleteFinished));
        assert!(!DeleteFinished.can_transition_to(DeleteStarted));
    }

    #[test]
    fn copies_are_contiguous_and_never_duplicated() {
        let mut s = RemoteLogState::new(tp());
        s.claim(3).expect("claim");
        copy(&mut s, seg(0, 99, 1000, 10), 3);
        assert_eq!(s.next_copy_offset(), Some(100));
        assert_eq!(s.log_start_offset(), Some(0));
        // A gap is refused, so is a segment already copied.
        let before = s.clone();
        assert_eq!(
            s.begin_copy(seg(101, 150, 10, 10), 3),
            Err(StateError::Gap {
                expected: 100,
                start: 101
            })
        );
        assert_eq!(
            s.begin_copy(seg(0, 99, 10, 10), 3),
            Err(StateError::AlreadyCopied {
                end: 99,
                copied: 99
            })
        );
        assert_eq!(s, before, "a refused input changes nothing");
        // An overlapping segment (another replica's boundaries) reaching past is accepted.
        copy(&mut s, seg(50, 180, 1000, 20), 3);
        assert_eq!(s.next_copy_offset(), Some(181));
        assert_eq!(s.segment_for_fetch(120).map(|m| m.start_offset), Some(50));
        assert_eq!(s.segment_for_fetch(10).map(|m| m.start_offset), Some(0));
        assert!(s.segment_for_fetch(181).is_none());
    }

    #[test]
    fn one_copy_at_a_time_and_unfinished_copies_are_invisible() {
        let mut s = RemoteLogState::new(tp());
        let a = seg(0, 9, 10, 1);
        s.begin_copy(a.clone(), 0).expect("begin");
        assert_eq!(
            s.begin_copy(seg(0, 9, 10, 1), 0),
            Err(StateError::CopyInProgress)
        );
        assert!(s.segment_for_fetch(0).is_none());
        assert_eq!(s.log_start_offset(), None);
        assert_eq!(s.next_copy_offset(), None);
        s.finish_copy(&a.id, 1, 0).expect("finish");
        assert_eq!(s.segment_for_fetch(0).map(|m| m.id.clone()), Some(a.id));
    }

    #[test]
    fn new_leader_fences_old_and_cleans_abandoned_uploads() {
        let mut s = RemoteLogState::new(tp());
        s.claim(1).expect("claim");
        copy(&mut s, seg(0, 9, 10, 1), 1);
        let abandoned = seg(10, 19, 10, 1);
        s.begin_copy(abandoned.clone(), 1).expect("begin");
        // Failover: the manifest goes to the new leader, which claims with epoch 2.
        let bytes = s.encode().expect("encode");
        let mut s2 = RemoteLogState::decode(&bytes).expect("decode");
        assert_eq!(s2, s);
        let cleanup = s2.claim(2).expect("claim");
        assert_eq!(cleanup.len(), 1);
        assert_eq!(cleanup[0].id, abandoned.id);
        // The old leader is fenced.
        let before = s2.clone();
        assert_eq!(
            s2.finish_copy(&abandoned.id, 5, 1),
            Err(StateError::Fenced {
                current: 2,
                given: 1
            })
        );
        assert_eq!(s2, before);
        s2.begin_delete(&abandoned.id, 5, 2).expect("delete");
        s2.finish_delete(&abandoned.id, 6, 2).expect("deleted");
        // The new leader re-uploads from offset 10: no gap, no duplicate.
        assert_eq!(s2.next_copy_offset(), Some(10));
        copy(&mut s2, seg(10, 25, 10, 1), 2);
        assert_eq!(s2.segments().count(), 2);
    }

    #[test]
    fn retention_by_size_time_and_log_start() {
        let mut s = RemoteLogState::new(tp());
        copy(&mut s, seg(0, 9, 100, 1_000), 0);
        copy(&mut s, seg(10, 19, 100, 2_000), 0);
        copy(&mut s, seg(20, 29, 100, 3_000), 0);
        // Size: 300 remote + 50 local-only, limit 200 → delete one (250 ≥ 200), not two.
        let c = s.retention_candidates(10_000, -1, 200, 50);
        assert_eq!(
            c.iter().map(|m| m.start_offset).collect::<Vec<_>>(),
            vec![0]
        );
        // Time: older than now - 7500 = 2500 → the first two.
        let c = s.retention_candidates(10_000, 7_500, -1, 0);
        assert_eq!(c.len(), 2);
        // Log start (DeleteRecords) at 20 → the first two.
        s.raise_log_start_offset(20);
        let c = s.retention_candidates(10_000, -1, -1, 0);
        assert_eq!(c.len(), 2);
        assert_eq!(s.log_start_offset(), Some(20));
        assert!(s.segment_for_fetch(5).is_none());
        // Records deleted locally before their upload (DeleteRecords) are skipped.
        let mut skipped = s.clone();
        skipped.skip_to(50, 0).expect("skip");
        assert_eq!(skipped.next_copy_offset(), Some(50));
        assert_eq!(
            skipped.retention_candidates(0, -1, -1, 0).len(),
            3,
            "all below 50"
        );
        assert_eq!(skipped.skip_to(10, 0), Ok(()));
        assert_eq!(skipped.next_copy_offset(), Some(50), "never backwards");
        // Deleting every remote segment does not make them due for upload again.
        let mut emptied = s.clone();
        for m in emptied.finished().cloned().collect::<Vec<_>>() {
            emptied.begin_delete(&m.id, 1, 0).expect("delete");
            emptied.finish_delete(&m.id, 1, 0).expect("deleted");
        }
        assert_eq!(emptied.next_copy_offset(), Some(30));
        assert_eq!(emptied.log_start_offset(), None);
        // The log start never moves down; with unlimited retention only the segments below
        // it go.
        s.raise_log_start_offset(0);
        assert_eq!(s.retention_candidates(10_000, -1, -1, 0).len(), 2);
    }

    #[test]
    fn manifest_rejects_corruption() {
        let mut s = RemoteLogState::new(tp());
        copy(&mut s, seg(0, 9, 100, 1), 0);
        let mut b = s.encode().expect("encode");
        assert_eq!(RemoteLogState::decode(&b).expect("ok"), s);
        let last = b.len() - 2;
        b[last] ^= 0x20;
        assert_eq!(RemoteLogState::decode(&b), Err(ManifestError::BadCrc));
        assert_eq!(
            RemoteLogState::decode(b"NRLM"),
            Err(ManifestError::BadMagic)
        );
        let mut v = s.encode().expect("encode");
        v[5] = 9;
        assert_eq!(
            RemoteLogState::decode(&v),
            Err(ManifestError::UnknownVersion(9))
        );
    }
}
