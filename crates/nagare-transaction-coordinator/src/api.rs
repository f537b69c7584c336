//! The contract between a transaction coordinator shard and the broker.
//!
//! The broker turns InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
//! DescribeTransactions and ListTransactions into [`TxnRequest`]s for the shard owning the
//! transactional id, and the shard's [`TxnResponse`]s back into Kafka responses. A shard asks
//! for transaction markers with [`TxnMarkerRequest`] effects (the runtime hands them to the
//! broker's marker sender once the PrepareCommit/PrepareAbort record is committed); when every
//! marker is written the sender reports back with [`TxnRequest::MarkersWritten`], and the
//! shard writes CompleteCommit/CompleteAbort.

/// A topic partition named by topic name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// Kafka's `TransactionState`, with the ids of its `__transaction_state` encoding
/// (`TransactionStatus` of the value record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// No transaction in progress (0).
    Empty,
    /// A transaction with partitions added (1).
    Ongoing,
    /// Commit decided, markers being written (2).
    PrepareCommit,
    /// Abort decided, markers being written (3).
    PrepareAbort,
    /// Commit markers written (4).
    CompleteCommit,
    /// Abort markers written (5).
    CompleteAbort,
    /// The transactional id expired and is being removed (6).
    Dead,
    /// The ongoing transaction of a fenced epoch is being aborted (7).
    PrepareEpochFence,
}

impl TransactionState {
    /// The state's id in the `__transaction_state` value record.
    pub fn id(self) -> i8 {
        match self {
            TransactionState::Empty => 0,
            TransactionState::Ongoing => 1,
            TransactionState::PrepareCommit => 2,
            TransactionState::PrepareAbort => 3,
            TransactionState::CompleteCommit => 4,
            TransactionState::CompleteAbort => 5,
            TransactionState::Dead => 6,
            TransactionState::PrepareEpochFence => 7,
        }
    }

    /// The state with this id.
    pub fn from_id(id: i8) -> Option<Self> {
        Some(match id {
            0 => TransactionState::Empty,
            1 => TransactionState::Ongoing,
            2 => TransactionState::PrepareCommit,
            3 => TransactionState::PrepareAbort,
            4 => TransactionState::CompleteCommit,
            5 => TransactionState::CompleteAbort,
            6 => TransactionState::Dead,
            7 => TransactionState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions report (Kafka's `stateName`).
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// A request to the shard owning `transactional_id`.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnRequest {
    /// InitProducerId with a transactional id.
    InitProducerId {
        /// The transactional id.
        transactional_id: String,
        /// `transaction.timeout.ms` of the producer (the shard checks it against
        /// `transaction.max.timeout.ms`: INVALID_TRANSACTION_TIMEOUT).
        transaction_timeout_ms: i32,
        /// KIP-360: the producer's current id and epoch when it asks to recover (-1 if none).
        producer_id: i64,
        /// KIP-360: the producer's current epoch (-1 if none).
        producer_epoch: i16,
        /// A fresh producer id the broker allocated for this request, used if the shard
        /// needs a new one (a new transactional id, or an exhausted epoch); otherwise unused.
        new_producer_id: i64,
    },
    /// AddPartitionsToTxn for one transaction (v4+ batches are split per transaction by the
    /// broker); `verify_only` is KIP-890's partition-leader check (v4+ from brokers).
    AddPartitions {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        producer_epoch: i16,
        /// The partitions to add (or to check).
        partitions: Vec<TopicPartition>,
        /// Only check that the partitions are in the ongoing transaction.
        verify_only: bool,
        /// The transaction version the sender speaks (Kafka's
        /// `TransactionVersion.transactionVersionForAddPartitionsToTxn`): 2 for
        /// AddPartitionsToTxn v4+ (TV2 clients, and brokers adding partitions for them), 0 for
        /// v0–v3. Recorded as the transaction's `ClientTransactionVersion`.
        transaction_version: i16,
    },
    /// AddOffsetsToTxn: adds the group's `__consumer_offsets` partition to the transaction.
    AddOffsets {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        producer_epoch: i16,
        /// The consumer group.
        group_id: String,
        /// The group's `__consumer_offsets` partition (computed by the broker).
        offsets_partition: i32,
    },
    /// EndTxn.
    EndTxn {
        /// The transactional id.
        transactional_id: String,
        /// The producer id.
        producer_id: i64,
        /// The producer epoch.
        producer_epoch: i16,
        /// Commit (true) or abort.
        commit: bool,
        /// The transaction version in effect for this request: 2 (KIP-890 part 2, epoch bump
        /// on every EndTxn) for EndTxn v5+ when the finalized `transaction.version` is 2+,
        /// otherwise 0 or 1.
        transaction_version: i16,
        /// A fresh producer id the broker allocated for a transaction version 2 EndTxn whose
        /// `producer_epoch` is exhausted (`>= i16::MAX - 1`): the epoch bump cannot go on, so
        /// the transaction completes under this new id at epoch 0 (Kafka's `nextProducerId`).
        /// -1 otherwise (the shard answers COORDINATOR_LOAD_IN_PROGRESS, retriable, if it
        /// needed one: Kafka's producer id manager fails the same way without a block).
        new_producer_id: i64,
    },
    /// Sent by the broker's marker sender when every marker of a transaction is written
    /// (or its partition no longer exists): write CompleteCommit/CompleteAbort.
    MarkersWritten {
        /// The transactional id.
        transactional_id: String,
        /// The producer id the markers were written for.
        producer_id: i64,
        /// The producer epoch the markers were written with.
        producer_epoch: i16,
        /// Whether the markers were commit markers.
        commit: bool,
    },
    /// DescribeTransactions of one transactional id.
    Describe {
        /// The transactional id.
        transactional_id: String,
    },
    /// ListTransactions over this shard.
    List {
        /// States to list (empty: all).
        state_filters: Vec<String>,
        /// Producer ids to list (empty: all).
        producer_id_filters: Vec<i64>,
        /// KIP-994: only transactions running longer than this (-1: all).
        duration_filter_ms: i64,
    },
}

/// A transaction as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionDescription {
    /// The transactional id.
    pub transactional_id: String,
    /// The state.
    pub state: TransactionState,
    /// The transaction timeout.
    pub transaction_timeout_ms: i32,
    /// When the ongoing transaction started (-1 if none).
    pub transaction_start_time_ms: i64,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The partitions in the transaction.
    pub partitions: Vec<TopicPartition>,
}

/// A transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id.
    pub producer_id: i64,
    /// The state.
    pub state: TransactionState,
}

/// A response of the shard. Error codes are Kafka's (`kafka_protocol::ResponseError`).
#[derive(Debug, Clone, PartialEq)]
pub enum TxnResponse {
    /// InitProducerId.
    InitProducerId {
        /// Error code.
        error: i16,
        /// The producer id (-1 on error).
        producer_id: i64,
        /// The producer epoch (-1 on error).
        producer_epoch: i16,
    },
    /// AddPartitionsToTxn: an error per partition, in the request's order. An add fails or
    /// succeeds as a whole (INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS, …); a `verify_only` check answers NONE or
    /// TRANSACTION_ABORTABLE per partition (Kafka's `handleVerifyPartitionsInTransaction`).
    /// The shard answers PRODUCER_FENCED as Kafka's coordinator does; the broker turns it into
    /// INVALID_PRODUCER_EPOCH for request versions that predate it (as `KafkaApis` does) and
    /// answers unknown or unauthorized partitions itself (OPERATION_NOT_ATTEMPTED for the
    /// rest).
    AddPartitions {
        /// Per partition.
        results: Vec<(TopicPartition, i16)>,
    },
    /// AddOffsetsToTxn.
    AddOffsets {
        /// Error code.
        error: i16,
    },
    /// EndTxn; with transaction version 2 the producer id and epoch to use next.
    EndTxn {
        /// Error code.
        error: i16,
        /// The producer id (-1 unless transaction version 2).
        producer_id: i64,
        /// The producer epoch (-1 unless transaction version 2).
        producer_epoch: i16,
    },
    /// MarkersWritten (nobody waits for it).
    MarkersWritten {
        /// Error code.
        error: i16,
    },
    /// DescribeTransactions of one id.
    Describe {
        /// Error code (TRANSACTIONAL_ID_NOT_FOUND, NOT_COORDINATOR, …).
        error: i16,
        /// The transaction (None on error).
        description: Option<TransactionDescription>,
    },
    /// ListTransactions of this shard.
    List {
        /// Error code.
        error: i16,
        /// The transactions.
        transactions: Vec<TransactionListing>,
    },
}

/// Markers to write for one transaction: the effect a shard asks for once its
/// PrepareCommit/PrepareAbort (or PrepareEpochFence) record is committed, and again from
/// `on_loaded` for every transaction still in a Prepare state.
#[derive(Debug, Clone, PartialEq)]
pub struct TxnMarkerRequest {
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id the markers are for.
    pub producer_id: i64,
    /// The producer epoch to write them with.
    pub producer_epoch: i16,
    /// Commit (true) or abort markers.
    pub commit: bool,
    /// The partitions of the transaction, never empty (a transaction without partitions —
    /// a transaction version 2 abort with nothing added — completes in the shard at once).
    pub partitions: Vec<TopicPartition>,
    /// The transaction version (0–2) the transaction ran under.
    pub transaction_version: i16,
}
