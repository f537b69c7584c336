//! Errors of the storage layer. They are mapped to Kafka error codes at the protocol edge.

use std::path::PathBuf;

/// An operating error of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed. If it was a write or an fsync the log is now poisoned and every
    /// later mutation returns [`StorageError::LogDirFailed`].
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A batch failed its CRC, length or codec check (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// A batch is well formed but not acceptable (Kafka `INVALID_RECORD`).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch is larger than `max.message.bytes` (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size} bytes is larger than max.message.bytes {max}")]
    RecordTooLarge {
        /// Size of the offending batch.
        size: usize,
        /// The configured maximum.
        max: u32,
    },
    /// The batches of one append are larger than a segment (Kafka `RECORD_LIST_TOO_LARGE`).
    #[error("record set of {size} bytes is larger than segment.bytes {max}")]
    RecordListTooLarge {
        /// Size of the appended records.
        size: usize,
        /// The configured segment size.
        max: u64,
    },
    /// The requested offset is outside `[log_start, log_end]` (Kafka `OFFSET_OUT_OF_RANGE`).
    #[error("offset {offset} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The requested offset.
        offset: i64,
        /// The log start offset.
        log_start: i64,
        /// The log end offset.
        log_end: i64,
    },
    /// An idempotent producer's sequence number has a gap (Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// A producer used an epoch older than the last one seen (Kafka `INVALID_PRODUCER_EPOCH`).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A transaction marker carries a coordinator epoch older than the last one seen for its
    /// producer: a zombie coordinator wrote it (Kafka `TRANSACTION_COORDINATOR_FENCED`,
    /// `ProducerAppendInfo.checkCoordinatorEpoch`).
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
    /// A non-transactional batch from a producer whose transaction is ongoing (Kafka
    /// `INVALID_TXN_STATE`, `ProducerAppendInfo.appendDataBatch`).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// Kept for the broker's error mapping; Kafka 4 no longer returns it on produce, and
    /// neither does this crate (an unknown producer may start at any sequence).
    #[error("unknown producer id: {0}")]
    UnknownProducerId(String),
    /// A CreateTime timestamp is outside `message.timestamp.{before,after}.max.ms`
    /// (Kafka `INVALID_TIMESTAMP`).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// Records of a batch broke Kafka's per-record rules (`LogValidator.validateRecord`): a
    /// keyless record on a compacted topic, a CreateTime timestamp out of range. The whole
    /// batch is refused and the offending records are named (KIP-467), so that a client can
    /// tell them from the records refused only because they shared the batch.
    #[error("{}", .0.message())]
    RejectedRecords(RejectedRecords),
    /// A follower append does not start at or after the log end offset.
    #[error("unexpected append offset {first_offset}: log end offset is {log_end_offset}")]
    UnexpectedAppendOffset {
        /// First offset of the appended batches.
        first_offset: i64,
        /// The log end offset.
        log_end_offset: i64,
    },
    /// A file of ours failed its checks and could not be repaired.
    #[error("corrupt file {path}: {reason}")]
    CorruptFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log was poisoned by an earlier failed write or fsync (Kafka `KAFKA_STORAGE_ERROR`).
    #[error("log directory failed: an earlier write or fsync failed")]
    LogDirFailed,
    /// The filesystem is full (ENOSPC/EDQUOT): the append was cut back and refused, the log
    /// stays online and serves reads, and appends succeed again once space is freed. Kafka
    /// answers KAFKA_STORAGE_ERROR here, and so does Nagare: librdkafka handles it on
    /// produce as refresh metadata + retry + "message not persisted" (true here: the partial
    /// write was cut back), so producers resume by themselves within `message.timeout.ms`.
    /// Unlike Kafka, which takes the log directory offline on any IOException, the log stays
    /// online: nothing acknowledged was lost and nothing needs recovery.
    #[error("no space left on the log directory's filesystem: {0}")]
    DiskFull(std::io::Error),
    /// The log was closed or deleted.
    #[error("log is closed")]
    Closed,
}

/// One record refused by Kafka's per-record rules: its index in its batch and why (KIP-467's
/// `BatchIndexAndErrorMessage`, Kafka's `ProduceResponse.RecordError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// The record's position in its batch, from 0.
    pub batch_index: i32,
    /// Why it was refused.
    pub message: String,
}

impl std::fmt::Display for RecordError {
    /// Kafka's `RecordError.toString`, which its summary message embeds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "RecordError(batchIndex={}, message='{}')",
            self.batch_index, self.message
        )
    }
}

/// The records of a batch refused by the per-record rules (Kafka's
/// `RecordValidationException`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedRecords {
    /// Whether any record was refused for its timestamp: Kafka then answers
    /// INVALID_TIMESTAMP for the batch, else INVALID_RECORD.
    pub invalid_timestamp: bool,
    /// The refused records, in batch order (never empty).
    pub records: Vec<RecordError>,
}

impl RejectedRecords {
    /// The batch's error message, worded as Kafka's `LogValidator.processRecordErrors`.
    pub fn message(&self) -> String {
        if self.invalid_timestamp {
            return "One or more records have been rejected due to invalid timestamp".into();
        }
        let shown: Vec<String> = self.records.iter().take(3).map(|r| r.to_string()).collect();
        format!(
            "One or more records have been rejected due to {} record errors in total, and only \
             showing the first three errors at most: [{}]",
            self.records.len(),
            shown.join(", ")
        )
    }
}
