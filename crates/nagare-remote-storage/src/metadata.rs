//! Remote log segment metadata: Kafka's `RemoteLogSegmentId`, `RemoteLogSegmentMetadata` and
//! `RemoteLogSegmentState` (KIP-405), as plain serialisable values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A topic partition as tiered storage names it: the topic id keeps a re-created topic of the
/// same name from ever seeing the old topic's remote data (Kafka's `TopicIdPartition`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TopicIdPartition {
    /// The topic's name (part of the object keys, so operators can read the bucket).
    pub topic: String,
    /// The topic's id.
    pub topic_id: Uuid,
    /// The partition index.
    pub partition: i32,
}

/// Identifies one uploaded copy of a segment. A fresh `segment_id` per upload attempt means a
/// retried or abandoned upload never overwrites a finished copy (Kafka's `RemoteLogSegmentId`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RemoteLogSegmentId {
    /// The partition the segment belongs to.
    pub partition: TopicIdPartition,
    /// Random id of this upload.
    pub segment_id: Uuid,
}

impl RemoteLogSegmentId {
    /// A new id for an upload of a segment of `partition`.
    pub fn generate(partition: TopicIdPartition) -> Self {
        RemoteLogSegmentId {
            partition,
            segment_id: Uuid::new_v4(),
        }
    }
}

/// The lifecycle of a remote segment (Kafka's `RemoteLogSegmentState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RemoteSegmentState {
    /// The upload began; the objects may be partial. Readers never use it.
    CopyStarted,
    /// Every object is in the store; readers may use it.
    CopyFinished,
    /// Deletion began (retention, DeleteRecords, an abandoned upload); readers stop using it.
    DeleteStarted,
    /// Every object is gone; the entry is dropped from the state.
    DeleteFinished,
}

impl RemoteSegmentState {
    /// Kafka's state code (`RemoteLogSegmentState.id()`).
    pub fn id(self) -> u8 {
        match self {
            RemoteSegmentState::CopyStarted => 0,
            RemoteSegmentState::CopyFinished => 1,
            RemoteSegmentState::DeleteStarted => 2,
            RemoteSegmentState::DeleteFinished => 3,
        }
    }

    /// Whether `self → next` is a transition Kafka allows: a started copy either finishes or is
    /// abandoned (deleted); only deletion follows a finished copy; a deletion only finishes.
    pub fn can_transition_to(self, next: RemoteSegmentState) -> bool {
        use RemoteSegmentState::*;
        matches!(
            (self, next),
            (CopyStarted, CopyFinished)
                | (CopyStarted, DeleteStarted)
                | (CopyFinished, DeleteStarted)
                | (DeleteStarted, DeleteFinished)
        )
    }
}

/// What is known of one remote segment (Kafka's `RemoteLogSegmentMetadata`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteLogSegmentMetadata {
    /// The upload's id.
    pub id: RemoteLogSegmentId,
    /// First offset in the segment (the local segment's base offset).
    pub start_offset: i64,
    /// Last offset in the segment (inclusive).
    pub end_offset: i64,
    /// Largest record timestamp in the segment (drives `retention.ms`).
    pub max_timestamp_ms: i64,
    /// The broker that uploaded it.
    pub broker_id: i32,
    /// When the state last changed.
    pub event_timestamp_ms: i64,
    /// Size of the `.log` object in bytes (drives `retention.bytes`).
    pub segment_size_bytes: u64,
    /// Leader epoch → first offset of that epoch within the segment (the leader-epoch slice;
    /// lets a reader follow the lineage of epochs, as Kafka's `segmentLeaderEpochs`).
    pub segment_leader_epochs: BTreeMap<i32, i64>,
    /// Whether a transaction index object was uploaded.
    pub txn_index_present: bool,
    /// Whether a producer-state snapshot object was uploaded.
    pub producer_snapshot_present: bool,
    /// The current state.
    pub state: RemoteSegmentState,
}

impl RemoteLogSegmentMetadata {
    /// Whether `offset` lies within the segment.
    pub fn contains(&self, offset: i64) -> bool {
        offset >= self.start_offset && offset <= self.end_offset
    }

    /// The highest leader epoch with data in the segment.
    pub fn max_leader_epoch(&self) -> Option<i32> {
        self.segment_leader_epochs.keys().next_back().copied()
    }
}
