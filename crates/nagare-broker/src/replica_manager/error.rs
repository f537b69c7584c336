//! The replica manager's error vocabulary: what went wrong with a partition operation, as a
//! typed value. Handlers map it to a Kafka error code ([`ReplicaError::code`]) only when they
//! build the response (DESIGN: operating errors are typed, codes belong to the protocol edge).

use nagare_storage::StorageError;

/// Why a partition operation (append, read, offset lookup, record deletion) was refused or
/// failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The partition is not hosted here (Kafka UNKNOWN_TOPIC_OR_PARTITION).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// A topic id (Fetch v13+) this broker does not know (Kafka UNKNOWN_TOPIC_ID).
    #[error("unknown topic id")]
    UnknownTopicId,
    /// This broker is not the leader (or, for a consumer allowed to read from followers, not
    /// a replica in the right role) of the partition (Kafka NOT_LEADER_OR_FOLLOWER).
    #[error("not the leader or follower of the partition")]
    NotLeaderOrFollower,
    /// The client's leader epoch is older than ours (KIP-320, FENCED_LEADER_EPOCH).
    #[error("leader epoch {requested} is fenced by the current epoch {current}")]
    FencedLeaderEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// Our epoch.
        current: i32,
    },
    /// The client's leader epoch is newer than ours (KIP-320, UNKNOWN_LEADER_EPOCH): our
    /// metadata is behind.
    #[error("leader epoch {requested} is newer than the current epoch {current}")]
    UnknownLeaderEpoch {
        /// The epoch the client sent.
        requested: i32,
        /// Our epoch.
        current: i32,
    },
    /// `acks=all` refused before the append: the ISR is smaller than `min.insync.replicas`
    /// (Kafka's `Partition.appendRecordsToLeader`, NOT_ENOUGH_REPLICAS).
    #[error("The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {tp}")]
    NotEnoughReplicas {
        /// The partition.
        tp: String,
        /// The ISR size.
        isr: usize,
        /// `min.insync.replicas`.
        min_isr: i32,
    },
    /// Appended, but the ISR shrank below `min.insync.replicas` before the high watermark
    /// passed the records (NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    #[error("the ISR shrank below min.insync.replicas after the append")]
    NotEnoughReplicasAfterAppend,
    /// Appended, but not replicated to the ISR within the request's timeout
    /// (REQUEST_TIMED_OUT).
    #[error("not replicated within the timeout")]
    RequestTimedOut,
    /// An offset outside what the operation allows (OFFSET_OUT_OF_RANGE), e.g. a
    /// DeleteRecords target above the high watermark.
    #[error("offset {0} out of range")]
    OffsetOutOfRange(i64),
    /// A follower fetch below the local log start of a tiered leader, at an offset the
    /// remote log holds (OFFSET_MOVED_TO_TIERED_STORAGE, KIP-405): the follower takes the
    /// remote metadata and starts at the leader's local log start instead.
    #[error("offset {0} moved to tiered storage")]
    OffsetMovedToTieredStorage(i64),
    /// The local fsync of an `acks=all` write failed (KAFKA_STORAGE_ERROR).
    #[error("fsync failed: {0}")]
    FlushFailed(String),
    /// The log refused the operation or failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl ReplicaError {
    /// The Kafka error code to answer with.
    pub fn code(&self) -> i16 {
        match self {
            ReplicaError::UnknownTopicOrPartition => 3,
            ReplicaError::UnknownTopicId => 100,
            ReplicaError::NotLeaderOrFollower => 6,
            ReplicaError::FencedLeaderEpoch { .. } => 74,
            ReplicaError::UnknownLeaderEpoch { .. } => 75,
            ReplicaError::NotEnoughReplicas { .. } => 19,
            ReplicaError::NotEnoughReplicasAfterAppend => 20,
            ReplicaError::RequestTimedOut => 7,
            ReplicaError::OffsetOutOfRange(_) => 1,
            ReplicaError::OffsetMovedToTieredStorage(_) => 109,
            ReplicaError::FlushFailed(_) => 56,
            ReplicaError::Storage(e) => storage_error_code(e),
        }
    }

    /// The error message to answer with (Produce's `error_message`), only where it tells the
    /// client something its code does not.
    pub fn message(&self) -> Option<String> {
        match self {
            ReplicaError::NotEnoughReplicas { .. } | ReplicaError::Storage(_) => {
                Some(self.to_string())
            }
            _ => None,
        }
    }

    /// The records of the batch refused one by one (KIP-467's `record_errors`): empty unless
    /// the log refused the batch for some of its records.
    pub fn record_errors(&self) -> &[nagare_storage::RecordError] {
        match self {
            ReplicaError::Storage(StorageError::RejectedRecords(r)) => &r.records,
            _ => &[],
        }
    }
}

/// The Kafka error code of a storage error.
fn storage_error_code(e: &StorageError) -> i16 {
    use nagare_storage::StorageError as E;
    match e {
        E::RecordTooLarge { .. } => 10,
        E::RecordListTooLarge { .. } => 18,
        E::CorruptRecord(_) => 2,
        E::InvalidRecord(_) => 87,
        E::OffsetOutOfRange { .. } => 1,
        E::OutOfOrderSequence(_) => 45,
        E::InvalidProducerEpoch(_) => 47,
        E::UnknownProducerId(_) => 59,
        E::InvalidTimestamp(_) => 32,
        E::RejectedRecords(r) if r.invalid_timestamp => 32,
        E::RejectedRecords(_) => 87,
        E::InvalidTxnState(_) => 48,
        E::TransactionCoordinatorFenced(_) => 52,
        _ => 56,
    }
}

/// Leader-epoch fencing (KIP-320): -1 skips the check.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ReplicaError> {
    if requested == -1 || requested == current {
        Ok(())
    } else if requested > current {
        Err(ReplicaError::UnknownLeaderEpoch { requested, current })
    } else {
        Err(ReplicaError::FencedLeaderEpoch { requested, current })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_epoch_fencing() {
        assert!(check_leader_epoch(-1, 5).is_ok());
        assert!(check_leader_epoch(5, 5).is_ok());
        assert_eq!(check_leader_epoch(6, 5).map_err(|e| e.code()), Err(75));
        assert_eq!(check_leader_epoch(4, 5).map_err(|e| e.code()), Err(74));
    }
}
