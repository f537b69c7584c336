//! The transaction coordinator shard of one `__transaction_state` partition (Kafka's
//! `TransactionCoordinator`, `TransactionMetadata` and `TransactionStateManager`, sans I/O).
//!
//! Every state change is a [`TxnRecord`] in the call's result, applied to the shard through
//! [`TransactionCoordinatorShard::replay`] — the same code a reloading coordinator runs — so
//! replaying the log rebuilds exactly the live state. The runtime releases a reply only once
//! the records of its call (and of every call before it) are committed, and reloads the
//! shard from its log if a write fails; Kafka's `pendingState` (which holds off other
//! requests while a write is in flight) is therefore not needed: a request that follows an
//! unwritten change sees it, and its reply waits for that change's commit.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use tracing::{debug, error, info, warn};

use crate::api::{
    TopicPartition, TransactionDescription, TransactionListing, TransactionState, TxnMarkerRequest,
    TxnRequest, TxnResponse,
};
use crate::config::TransactionCoordinatorConfig;
use crate::record::{
    TransactionLogValue, TxnRecord, TxnRecordError, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use nagare_coordinator::runtime::{self, CoordinatorShard, RequestContext, RequestToken};

/// The internal topic holding the transactional ids' state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// The topic AddOffsetsToTxn adds a partition of (the group's offsets partition).
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Everything one call of the shard produced (the runtime's result contract).
pub type TxnResult = runtime::CoordinatorResult<TxnRecord, TxnResponse>;

type Reply = runtime::Reply<TxnResponse>;

/// Kafka's `TransactionMetadata.isEpochExhausted`: the coordinator keeps `i16::MAX` for
/// itself so that it can always fence the last epoch a client holds.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// The metadata of one transactional id (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    /// The producer id in use.
    pub producer_id: i64,
    /// The producer id before the last transition (Kafka's `prevProducerId`).
    pub previous_producer_id: i64,
    /// With transaction version 2, the producer id that replaces an exhausted one when the
    /// transaction being completed is done (-1 otherwise).
    pub next_producer_id: i64,
    /// The current producer epoch (-1 before the first InitProducerId completes).
    pub producer_epoch: i16,
    /// The epoch before the last bump, for KIP-360 retries. Not in the log (Kafka does not
    /// persist it either): after a reload it is -1, and a retried InitProducerId whose
    /// response was lost across a coordinator change is fenced, as in Kafka.
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub transaction_timeout_ms: i32,
    /// The state.
    pub state: TransactionState,
    /// The partitions of the transaction.
    pub partitions: BTreeSet<TopicPartition>,
    /// When the current transaction started (-1 if none).
    pub start_timestamp_ms: i64,
    /// When the metadata last changed (drives transactional id expiration).
    pub last_update_timestamp_ms: i64,
    /// The transaction version the client used for the last transition.
    pub client_transaction_version: i16,
}

impl TransactionMetadata {
    /// The metadata a record's value describes (the last epoch is not in the log: -1).
    pub fn from_value(v: &TransactionLogValue) -> Self {
        TransactionMetadata {
            producer_id: v.producer_id,
            previous_producer_id: v.previous_producer_id,
            next_producer_id: v.next_producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            transaction_timeout_ms: v.transaction_timeout_ms,
            state: v.state,
            partitions: v.partitions.clone(),
            start_timestamp_ms: v.start_timestamp_ms,
            last_update_timestamp_ms: v.last_update_timestamp_ms,
            client_transaction_version: v.client_transaction_version,
        }
    }

    /// The record value of this metadata.
    pub fn to_value(&self) -> TransactionLogValue {
        TransactionLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: self.next_producer_id,
            producer_epoch: self.producer_epoch,
            transaction_timeout_ms: self.transaction_timeout_ms,
            state: self.state,
            partitions: if self.state == TransactionState::Empty {
                BTreeSet::new()
            } else {
                self.partitions.clone()
            },
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
            client_transaction_version: self.client_transaction_version,
        }
    }

    fn supports_epoch_bump(&self) -> bool {
        self.client_transaction_version >= 2
    }

    /// A copy to transition from: Kafka's `prepareTransitionTo` records the producer id it
    /// leaves as the previous one.
    fn transit(&self, state: TransactionState, now_ms: i64) -> TransactionMetadata {
        let mut m = self.clone();
        m.previous_producer_id = self.producer_id;
        m.state = state;
        m.last_update_timestamp_ms = now_ms;
        m
    }

    /// The markers of a transaction in a Prepare state.
    fn markers(&self, transactional_id: &str) -> TxnMarkerRequest {
        TxnMarkerRequest {
            transactional_id: transactional_id.to_owned(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            commit: self.state == TransactionState::PrepareCommit,
            partitions: self.partitions.iter().cloned().collect(),
            transaction_version: self.client_transaction_version,
        }
    }

    /// Kafka's `prepareComplete`: the Complete state of a Prepare state once its markers are
    /// written. With transaction version 2 an exhausted producer id gives way to the next one.
    fn completed(&self, now_ms: i64) -> TransactionMetadata {
        let state = if self.state == TransactionState::PrepareCommit {
            TransactionState::CompleteCommit
        } else {
            TransactionState::CompleteAbort
        };
        let mut m = self.transit(state, now_ms);
        if self.supports_epoch_bump() && self.next_producer_id != NO_PRODUCER_ID {
            m.producer_id = self.next_producer_id;
            m.producer_epoch = 0;
        }
        m.next_producer_id = NO_PRODUCER_ID;
        m.partitions.clear();
        m
    }
}

/// The transaction coordinator for one `__transaction_state` partition.
#[derive(Debug)]
pub struct TransactionCoordinatorShard {
    config: TransactionCoordinatorConfig,
    partition: i32,
    loaded: bool,
    txns: BTreeMap<String, TransactionMetadata>,
    records: Vec<TxnRecord>,
    effects: Vec<TxnMarkerRequest>,
    now_ms: i64,
    abort_check_at: Option<i64>,
    expire_check_at: Option<i64>,
    /// The cluster's finalized `transaction.version` (KIP-1022), which the aborts the
    /// coordinator starts itself (fencing, timeouts) are written under.
    finalized_transaction_version: i16,
}

fn code(e: ResponseError) -> i16 {
    e.code()
}

const NONE: i16 = 0;

impl TransactionCoordinatorShard {
    /// A shard for `partition` that is loading: feed it the partition's records with
    /// [`replay`](Self::replay), then call [`on_loaded`](Self::on_loaded). Until then every
    /// request is answered COORDINATOR_LOAD_IN_PROGRESS.
    pub fn new(partition: i32, config: TransactionCoordinatorConfig) -> Self {
        TransactionCoordinatorShard {
            config,
            partition,
            loaded: false,
            txns: BTreeMap::new(),
            records: Vec::new(),
            effects: Vec::new(),
            now_ms: 0,
            abort_check_at: None,
            expire_check_at: None,
            finalized_transaction_version: 0,
        }
    }

    /// Sets the cluster's finalized `transaction.version` (0 when not finalized), from the
    /// metadata image.
    pub fn set_finalized_transaction_version(&mut self, level: i16) {
        self.finalized_transaction_version = level;
    }

    /// The `__transaction_state` partition this shard owns.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether loading has finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// The metadata of a transactional id.
    pub fn transaction(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.txns.get(transactional_id)
    }

    /// Every transactional id's metadata.
    pub fn transactions(&self) -> &BTreeMap<String, TransactionMetadata> {
        &self.txns
    }

    /// The durable state: what the log says of every transactional id. A shard rebuilt by
    /// replaying this shard's records has the same durable state.
    pub fn durable_state(&self) -> BTreeMap<String, TransactionLogValue> {
        self.txns
            .iter()
            .map(|(id, m)| (id.clone(), m.to_value()))
            .collect()
    }

    /// Applies one record of the partition. Used while loading, and by the live path for every
    /// record it writes, so both build the same state.
    pub fn replay(&mut self, record: &TxnRecord) {
        match record {
            TxnRecord::Metadata {
                transactional_id,
                value,
            } => {
                if value.state == TransactionState::Dead {
                    // Why: Kafka never writes Dead (an expiring id is written as a tombstone);
                    // a Dead value can only mean the id is gone.
                    self.txns.remove(transactional_id);
                } else {
                    self.txns.insert(
                        transactional_id.clone(),
                        TransactionMetadata::from_value(value),
                    );
                }
            }
            TxnRecord::Tombstone { transactional_id } => {
                self.txns.remove(transactional_id);
            }
        }
    }

    /// Ends loading at `now_ms` (Kafka's `loadTransactionsForTxnTopicPartition` completion):
    /// markers are asked for again for every transaction in a Prepare state — the coordinator
    /// that wrote it may have died before they were all written — and the cleanup timers
    /// start.
    pub fn on_loaded(&mut self, now_ms: i64) -> TxnResult {
        self.now_ms = self.now_ms.max(now_ms);
        self.loaded = true;
        let pending: Vec<(String, TransactionMetadata)> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m.state,
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                )
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, m) in pending {
            info!(
                transactional_id = %id,
                state = m.state.name(),
                "transaction loaded in a prepare state: writing its markers again"
            );
            self.request_markers(&id, &m);
        }
        for (id, m) in &self.txns {
            if m.state == TransactionState::PrepareEpochFence {
                // Kafka never writes this transient state; nothing can complete it.
                error!(transactional_id = %id, "loaded a PrepareEpochFence record, which Kafka never writes");
            }
        }
        self.abort_check_at = Some(
            self.now_ms
                .saturating_add(self.config.abort_timed_out_transaction_cleanup_interval_ms),
        );
        self.expire_check_at = Some(
            self.now_ms
                .saturating_add(self.config.remove_expired_transaction_cleanup_interval_ms),
        );
        self.finish(Reply::None)
    }

    /// Drops the shard's transient state when it loses its partition. No request is ever
    /// parked, so there is nobody to answer.
    pub fn unload(&mut self) -> Vec<(RequestToken, TxnResponse)> {
        self.loaded = false;
        self.abort_check_at = None;
        self.expire_check_at = None;
        self.records.clear();
        self.effects.clear();
        Vec::new()
    }

    /// The earliest timer deadline: call [`tick`](Self::tick) at or after it.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        match (self.abort_check_at, self.expire_check_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances time to `now_ms` and runs the cleanups due: aborting transactions past their
    /// timeout (Kafka's `abortTimedOutTransactions`) and removing expired transactional ids
    /// (`removeExpiredTransactionalIds`).
    pub fn tick(&mut self, now_ms: i64) -> TxnResult {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.loaded {
            return self.finish(Reply::None);
        }
        if self.abort_check_at.is_some_and(|t| t <= self.now_ms) {
            self.abort_timed_out_transactions();
            self.abort_check_at = Some(
                self.now_ms.saturating_add(
                    self.config
                        .abort_timed_out_transaction_cleanup_interval_ms
                        .max(1),
                ),
            );
        }
        if self.expire_check_at.is_some_and(|t| t <= self.now_ms) {
            self.remove_expired_transactional_ids();
            self.expire_check_at = Some(
                self.now_ms.saturating_add(
                    self.config
                        .remove_expired_transaction_cleanup_interval_ms
                        .max(1),
                ),
            );
        }
        self.finish(Reply::None)
    }

    /// Handles one request at `now_ms`.
    pub fn handle(&mut self, ctx: &RequestContext, request: TxnRequest, now_ms: i64) -> TxnResult {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.loaded {
            let r = error_response(&request, code(ResponseError::CoordinatorLoadInProgress));
            return self.finish(Reply::Now(r));
        }
        let _ = ctx;
        let response = match request {
            TxnRequest::InitProducerId {
                transactional_id,
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
                new_producer_id,
            } => self.init_producer_id(
                &transactional_id,
                transaction_timeout_ms,
                producer_id,
                producer_epoch,
                new_producer_id,
            ),
            TxnRequest::AddPartitions {
                transactional_id,
                producer_id,
                producer_epoch,
                partitions,
                verify_only,
                transaction_version,
            } => {
                let results = if verify_only {
                    self.verify_partitions(
                        &transactional_id,
                        producer_id,
                        producer_epoch,
                        &partitions,
                    )
                } else {
                    let e = self.add_partitions(
                        &transactional_id,
                        producer_id,
                        producer_epoch,
                        &partitions,
                        transaction_version,
                    );
                    partitions.into_iter().map(|p| (p, e)).collect()
                };
                TxnResponse::AddPartitions { results }
            }
            TxnRequest::AddOffsets {
                transactional_id,
                producer_id,
                producer_epoch,
                group_id,
                offsets_partition,
            } => {
                debug!(transactional_id = %transactional_id, group_id = %group_id, "AddOffsetsToTxn");
                let tp = TopicPartition {
                    topic: CONSUMER_OFFSETS_TOPIC.to_owned(),
                    partition: offsets_partition,
                };
                // Kafka's handleAddOffsetsToTxnRequest passes TV_0 whatever the client speaks;
                // an ongoing transaction keeps the version its partitions were added with, as
                // the shard fences and aborts it under that version (see fence_and_abort).
                let tv = self
                    .txns
                    .get(&transactional_id)
                    .filter(|m| m.state == TransactionState::Ongoing)
                    .map_or(0, |m| m.client_transaction_version);
                let error =
                    self.add_partitions(&transactional_id, producer_id, producer_epoch, &[tp], tv);
                TxnResponse::AddOffsets { error }
            }
            TxnRequest::EndTxn {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
                transaction_version,
                new_producer_id,
            } => {
                let (error, producer_id, producer_epoch) = if transaction_version >= 2 {
                    self.end_txn_v2(
                        &transactional_id,
                        producer_id,
                        producer_epoch,
                        commit,
                        new_producer_id,
                    )
                } else {
                    let e = self.end_txn_v1(&transactional_id, producer_id, producer_epoch, commit);
                    (e, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                };
                TxnResponse::EndTxn {
                    error,
                    producer_id,
                    producer_epoch,
                }
            }
            TxnRequest::MarkersWritten {
                transactional_id,
                producer_id,
                producer_epoch,
                commit,
            } => TxnResponse::MarkersWritten {
                error: self.markers_written(&transactional_id, producer_id, producer_epoch, commit),
            },
            TxnRequest::Describe { transactional_id } => self.describe(&transactional_id),
            TxnRequest::List {
                state_filters,
                producer_id_filters,
                duration_filter_ms,
            } => self.list(&state_filters, &producer_id_filters, duration_filter_ms),
        };
        self.finish(Reply::Now(response))
    }

    // ---- InitProducerId ----

    fn init_producer_id(
        &mut self,
        id: &str,
        timeout_ms: i32,
        producer_id: i64,
        producer_epoch: i16,
        new_producer_id: i64,
    ) -> TxnResponse {
        let fail = |e: ResponseError| TxnResponse::InitProducerId {
            error: e.code(),
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        };
        if id.is_empty() {
            return fail(ResponseError::InvalidRequest);
        }
        // TransactionStateManager.validateTransactionTimeoutMs.
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return fail(ResponseError::InvalidTransactionTimeout);
        }
        // KafkaApis: both or neither of the KIP-360 producer id and epoch.
        let expected = match (producer_id, producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
            (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => {
                return fail(ResponseError::InvalidRequest)
            }
            (p, e) => Some((p, e)),
        };
        let current = match self.txns.get(id) {
            Some(m) => m.clone(),
            None => {
                if new_producer_id < 0 {
                    warn!(transactional_id = %id, "InitProducerId without a new producer id for a new transactional id");
                    return fail(ResponseError::CoordinatorLoadInProgress);
                }
                TransactionMetadata {
                    producer_id: new_producer_id,
                    previous_producer_id: NO_PRODUCER_ID,
                    next_producer_id: NO_PRODUCER_ID,
                    producer_epoch: NO_PRODUCER_EPOCH,
                    last_producer_epoch: NO_PRODUCER_EPOCH,
                    transaction_timeout_ms: timeout_ms,
                    state: TransactionState::Empty,
                    partitions: BTreeSet::new(),
                    start_timestamp_ms: -1,
                    last_update_timestamp_ms: self.now_ms,
                    client_transaction_version: 0,
                }
            }
        };
        if let Some((p, e)) = expected {
            // KIP-360: fence unless the metadata is new, the id is the current one (the epoch
            // is checked below), or it is the previous one with an exhausted epoch (a retry
            // after a producer id rotation whose response was lost).
            let valid = current.producer_epoch == NO_PRODUCER_EPOCH
                || p == current.producer_id
                || (p == current.previous_producer_id && is_epoch_exhausted(e));
            if !valid {
                return fail(ResponseError::ProducerFenced);
            }
        }
        match current.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                fail(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort => {
                let next = if is_epoch_exhausted(current.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == current.producer_epoch)
                {
                    // prepareProducerIdRotation.
                    if new_producer_id < 0 {
                        warn!(transactional_id = %id, "epoch exhausted but no new producer id given");
                        return fail(ResponseError::CoordinatorLoadInProgress);
                    }
                    let mut m = current.transit(TransactionState::Empty, self.now_ms);
                    m.producer_id = new_producer_id;
                    m.producer_epoch = 0;
                    m.last_producer_epoch = if expected.is_some() {
                        current.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    m
                } else {
                    match increment_epoch(&current, expected.map(|(_, e)| e), self.now_ms) {
                        Ok(m) => m,
                        Err(e) => return fail(e),
                    }
                };
                let mut next = next;
                next.transaction_timeout_ms = timeout_ms;
                next.partitions.clear();
                next.start_timestamp_ms = -1;
                info!(
                    transactional_id = %id,
                    producer_id = next.producer_id,
                    producer_epoch = next.producer_epoch,
                    partition = self.partition,
                    "initialized transactional id"
                );
                let (pid, epoch) = (next.producer_id, next.producer_epoch);
                self.write(id, next);
                TxnResponse::InitProducerId {
                    error: NONE,
                    producer_id: pid,
                    producer_epoch: epoch,
                }
            }
            TransactionState::Ongoing => {
                // Abort the ongoing transaction with the epoch fenced, and let the client retry
                // (CONCURRENT_TRANSACTIONS) until the abort completes: its retry bumps the
                // epoch again, or rotates the producer id if fencing exhausted it.
                info!(transactional_id = %id, "InitProducerId fences the producer of an ongoing transaction");
                self.fence_and_abort(id, &current);
                fail(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Dead | TransactionState::PrepareEpochFence => {
                error!(transactional_id = %id, state = current.state.name(), "illegal stored transaction state");
                fail(ResponseError::InvalidTxnState)
            }
        }
    }

    // ---- AddPartitionsToTxn ----

    fn add_partitions(
        &mut self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        transaction_version: i16,
    ) -> i16 {
        if id.is_empty() {
            return code(ResponseError::InvalidRequest);
        }
        let Some(current) = self.txns.get(id) else {
            return code(ResponseError::InvalidProducerIdMapping);
        };
        if let Err(e) = check_producer(current, producer_id, producer_epoch) {
            return code(e);
        }
        match current.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                return code(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Ongoing
                if partitions.iter().all(|p| current.partitions.contains(p)) =>
            {
                // Kafka's optimization: nothing new, answer at once without a write.
                return NONE;
            }
            TransactionState::Dead | TransactionState::PrepareEpochFence => {
                return code(ResponseError::InvalidTxnState)
            }
            _ => {}
        }
        // prepareAddPartitions.
        let starting = matches!(
            current.state,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        );
        let mut m = current.transit(TransactionState::Ongoing, self.now_ms);
        if starting {
            m.start_timestamp_ms = self.now_ms;
        }
        m.partitions.extend(partitions.iter().cloned());
        m.client_transaction_version = transaction_version;
        self.write(id, m);
        NONE
    }

    /// KIP-890 part 1: a partition leader asks whether its partitions are in the ongoing
    /// transaction (Kafka's `handleVerifyPartitionsInTransaction`); nothing is written.
    fn verify_partitions(
        &self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, i16)> {
        let all = |e: ResponseError| partitions.iter().map(|p| (p.clone(), e.code())).collect();
        if id.is_empty() {
            return all(ResponseError::InvalidRequest);
        }
        let Some(current) = self.txns.get(id) else {
            return all(ResponseError::InvalidProducerIdMapping);
        };
        if let Err(e) = check_producer(current, producer_id, producer_epoch) {
            return all(e);
        }
        if matches!(
            current.state,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        ) {
            return all(ResponseError::ConcurrentTransactions);
        }
        partitions
            .iter()
            .map(|p| {
                let e = if current.partitions.contains(p) {
                    NONE
                } else {
                    code(ResponseError::TransactionAbortable)
                };
                (p.clone(), e)
            })
            .collect()
    }

    // ---- EndTxn ----

    /// EndTxn before KIP-890 part 2 (`endTransactionWithTV1`): the epoch stays.
    fn end_txn_v1(&mut self, id: &str, producer_id: i64, producer_epoch: i16, commit: bool) -> i16 {
        use TransactionState as S;
        if id.is_empty() {
            return code(ResponseError::InvalidRequest);
        }
        let Some(current) = self.txns.get(id) else {
            return code(ResponseError::InvalidProducerIdMapping);
        };
        if current.producer_id != producer_id {
            return code(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != current.producer_epoch {
            return code(ResponseError::ProducerFenced);
        }
        match (current.state, commit) {
            (S::Ongoing, _) => {
                let state = if commit {
                    S::PrepareCommit
                } else {
                    S::PrepareAbort
                };
                let mut m = current.transit(state, self.now_ms);
                m.next_producer_id = NO_PRODUCER_ID;
                m.client_transaction_version = 0;
                self.write_prepare(id, m);
                NONE
            }
            // A retry of an EndTxn that already completed.
            (S::CompleteCommit, true) | (S::CompleteAbort, false) => NONE,
            // Still writing the markers of the same decision: retry later.
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => {
                code(ResponseError::ConcurrentTransactions)
            }
            (state, _) => invalid_transition(id, state, commit),
        }
    }

    /// EndTxn with transaction version 2 (KIP-890 part 2): every commit or abort bumps the
    /// epoch, which the response carries; a retry is recognised by the epoch being one below
    /// the current one. Returns the error and the producer id and epoch to answer with.
    fn end_txn_v2(
        &mut self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        new_producer_id: i64,
    ) -> (i16, i64, i16) {
        use TransactionState as S;
        let fail = |e: i16| (e, NO_PRODUCER_ID, NO_PRODUCER_EPOCH);
        if id.is_empty() {
            return fail(code(ResponseError::InvalidRequest));
        }
        let Some(current) = self.txns.get(id).cloned() else {
            return fail(code(ResponseError::InvalidProducerIdMapping));
        };
        if matches!(current.state, S::PrepareCommit | S::PrepareAbort)
            && current.next_producer_id != NO_PRODUCER_ID
            && producer_id == current.next_producer_id
        {
            // The client already holds the rotated producer id of the transaction whose
            // markers are still being written.
            return fail(code(ResponseError::ConcurrentTransactions));
        }
        // Why the transaction version check (stricter than Kafka): only a Complete state that
        // a transaction version 2 EndTxn (or fence) wrote carries a bump this request could
        // be the retry of. After an InitProducerId bump followed by a version 0/1 EndTxn of
        // another producer (mixed client versions on one transactional id), the epoch one
        // below the current one is a fenced producer's, and answering it NONE with the
        // current epoch would hand that epoch to two producers.
        let bumped_by_v2 = current.supports_epoch_bump();
        // A retry of a request that overflowed the epoch: the new producer id is in place.
        let retry_on_overflow = bumped_by_v2
            && current.previous_producer_id == producer_id
            && producer_epoch == i16::MAX - 1
            && current.producer_epoch == 0;
        // A retry of a request whose bump is in place. In a Complete state, i16::MAX is
        // never the bump of a client's EndTxn (one from i16::MAX - 1 rotates the producer id
        // instead): it is a fence, and the epoch below it belongs to the fenced producer.
        let prepare = matches!(current.state, S::PrepareCommit | S::PrepareAbort);
        let retry_on_epoch_bump = i32::from(current.producer_epoch)
            == i32::from(producer_epoch) + 1
            && (prepare || (bumped_by_v2 && current.producer_epoch < i16::MAX));
        let valid_epoch = match current.state {
            S::PrepareCommit | S::PrepareAbort => retry_on_epoch_bump,
            S::CompleteCommit | S::CompleteAbort => {
                retry_on_epoch_bump || retry_on_overflow || producer_epoch == current.producer_epoch
            }
            _ => producer_epoch == current.producer_epoch,
        };
        let is_retry = retry_on_epoch_bump || retry_on_overflow;
        if current.producer_id != producer_id && !retry_on_overflow {
            return fail(code(ResponseError::InvalidProducerIdMapping));
        }
        if !valid_epoch {
            return fail(code(ResponseError::ProducerFenced));
        }
        let decision = match (current.state, commit) {
            (S::Ongoing, true) => Some((S::PrepareCommit, false)),
            (S::Ongoing, false) => Some((S::PrepareAbort, false)),
            (S::CompleteCommit, true) | (S::CompleteAbort, false) if is_retry => {
                return (NONE, current.producer_id, current.producer_epoch)
            }
            (S::CompleteCommit, true) => None,
            (S::CompleteCommit, false) if is_retry => None,
            // TV2 lets a producer abort with no partition added (nothing to write markers for).
            (S::CompleteCommit, false) | (S::CompleteAbort, false) | (S::Empty, false) => {
                Some((S::PrepareAbort, true))
            }
            (S::PrepareCommit, true) | (S::PrepareAbort, false) => {
                return fail(code(ResponseError::ConcurrentTransactions))
            }
            _ => None,
        };
        let Some((state, no_partition_added)) = decision else {
            return fail(invalid_transition(id, current.state, commit));
        };
        // prepareAbortOrCommit with an epoch bump; an exhausted epoch needs a new producer id.
        let mut m = current.transit(state, self.now_ms);
        if is_epoch_exhausted(current.producer_epoch) {
            if new_producer_id < 0 {
                warn!(transactional_id = %id, "EndTxn exhausts the epoch but no new producer id was given");
                return fail(code(ResponseError::CoordinatorLoadInProgress));
            }
            m.next_producer_id = new_producer_id;
        } else {
            m.next_producer_id = NO_PRODUCER_ID;
        }
        if !(current.producer_epoch == i16::MAX && state == S::PrepareAbort) {
            m.producer_epoch = current.producer_epoch.saturating_add(1);
        }
        m.last_producer_epoch = current.producer_epoch;
        if no_partition_added {
            m.start_timestamp_ms = self.now_ms;
            m.partitions.clear();
        }
        m.client_transaction_version = 2;
        // The producer continues with the rotated id at epoch 0, or the bumped epoch.
        let answer = if m.next_producer_id != NO_PRODUCER_ID {
            (m.next_producer_id, 0)
        } else {
            (m.producer_id, m.producer_epoch)
        };
        self.write_prepare(id, m);
        (NONE, answer.0, answer.1)
    }

    /// Fences the producer of an Ongoing transaction and aborts it (Kafka's
    /// `prepareFenceProducerEpoch` followed by an abort that is not from the client): the
    /// PrepareAbort record carries the fenced epoch, so the markers fence the old producer on
    /// every partition. One bump under every transaction version: KAFKA-19367 (Kafka 4.1)
    /// dropped the second bump transaction version 2 used to add, which overflowed at
    /// `i16::MAX - 1`. Kafka keeps PrepareEpochFence as a pending, never-written state; it is
    /// never stored here. The abort is not from the client, so the record carries the
    /// cluster's finalized `transaction.version` (Kafka's `endTransaction(isFromClient =
    /// false, clientTransactionVersion = txnManager.transactionVersionLevel())`), as in
    /// `abortTimedOutTransactions`.
    fn fence_and_abort(&mut self, id: &str, current: &TransactionMetadata) {
        let fenced = if current.producer_epoch == i16::MAX {
            error!(transactional_id = %id, "fencing a producer whose epoch is already i16::MAX");
            i16::MAX
        } else {
            current.producer_epoch + 1
        };
        let mut m = current.transit(TransactionState::PrepareAbort, self.now_ms);
        m.next_producer_id = NO_PRODUCER_ID;
        m.producer_epoch = fenced;
        m.last_producer_epoch = NO_PRODUCER_EPOCH;
        m.client_transaction_version = self.finalized_transaction_version;
        self.write_prepare(id, m);
    }

    // ---- markers ----

    fn markers_written(
        &mut self,
        id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> i16 {
        let Some(current) = self.txns.get(id) else {
            debug!(transactional_id = %id, "markers written for an unknown transactional id");
            return code(ResponseError::InvalidProducerIdMapping);
        };
        let expected = if commit {
            TransactionState::PrepareCommit
        } else {
            TransactionState::PrepareAbort
        };
        if current.state != expected {
            debug!(transactional_id = %id, state = current.state.name(), commit, "stale markers-written report");
            return code(ResponseError::InvalidTxnState);
        }
        if current.producer_id != producer_id || current.producer_epoch != producer_epoch {
            debug!(transactional_id = %id, producer_id, producer_epoch, "markers written for another producer epoch");
            return code(ResponseError::InvalidProducerEpoch);
        }
        let m = current.completed(self.now_ms);
        debug!(transactional_id = %id, state = m.state.name(), "transaction completed");
        self.write(id, m);
        NONE
    }

    // ---- Describe / List ----

    fn describe(&self, id: &str) -> TxnResponse {
        let fail = |e: ResponseError| TxnResponse::Describe {
            error: e.code(),
            description: None,
        };
        if id.is_empty() {
            return fail(ResponseError::InvalidRequest);
        }
        match self.txns.get(id) {
            None => fail(ResponseError::TransactionalIdNotFound),
            Some(m) if m.state == TransactionState::Dead => {
                fail(ResponseError::TransactionalIdNotFound)
            }
            Some(m) => TxnResponse::Describe {
                error: NONE,
                description: Some(TransactionDescription {
                    transactional_id: id.to_owned(),
                    state: m.state,
                    transaction_timeout_ms: m.transaction_timeout_ms,
                    transaction_start_time_ms: m.start_timestamp_ms,
                    producer_id: m.producer_id,
                    producer_epoch: m.producer_epoch,
                    partitions: m.partitions.iter().cloned().collect(),
                }),
            },
        }
    }

    /// Kafka's `listTransactionStates`: a state filter naming no known state matches nothing
    /// (the broker reports such names as unknown state filters).
    fn list(&self, states: &[String], producer_ids: &[i64], duration_ms: i64) -> TxnResponse {
        let transactions = self
            .txns
            .iter()
            .filter(|(_, m)| m.state != TransactionState::Dead)
            .filter(|(_, m)| producer_ids.is_empty() || producer_ids.contains(&m.producer_id))
            .filter(|(_, m)| states.is_empty() || states.iter().any(|s| s == m.state.name()))
            .filter(|(_, m)| {
                duration_ms < 0 || self.now_ms.saturating_sub(m.start_timestamp_ms) > duration_ms
            })
            .map(|(id, m)| TransactionListing {
                transactional_id: id.clone(),
                producer_id: m.producer_id,
                state: m.state,
            })
            .collect();
        TxnResponse::List {
            error: NONE,
            transactions,
        }
    }

    // ---- timers ----

    fn abort_timed_out_transactions(&mut self) {
        let now = self.now_ms;
        let timed_out: Vec<(String, TransactionMetadata)> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                m.state == TransactionState::Ongoing
                    && m.start_timestamp_ms
                        .saturating_add(i64::from(m.transaction_timeout_ms))
                        < now
            })
            .map(|(id, m)| (id.clone(), m.clone()))
            .collect();
        for (id, m) in timed_out {
            info!(
                transactional_id = %id,
                producer_id = m.producer_id,
                producer_epoch = m.producer_epoch,
                "aborting a transaction past its timeout"
            );
            self.fence_and_abort(&id, &m);
        }
    }

    fn remove_expired_transactional_ids(&mut self) {
        let horizon = self
            .now_ms
            .saturating_sub(self.config.transactional_id_expiration_ms);
        let expired: Vec<String> = self
            .txns
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m.state,
                    TransactionState::Empty
                        | TransactionState::CompleteCommit
                        | TransactionState::CompleteAbort
                ) && m.last_update_timestamp_ms <= horizon
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            info!(transactional_id = %id, "removing an expired transactional id");
            let record = TxnRecord::Tombstone {
                transactional_id: id,
            };
            self.replay(&record);
            self.records.push(record);
        }
    }

    // ---- writes ----

    /// Writes `m` as the new metadata of `id`, applying it through [`Self::replay`] (and
    /// keeping the epoch before the last bump, which the log does not carry).
    fn write(&mut self, id: &str, m: TransactionMetadata) {
        let last = m.last_producer_epoch;
        let record = TxnRecord::Metadata {
            transactional_id: id.to_owned(),
            value: m.to_value(),
        };
        self.replay(&record);
        if let Some(e) = self.txns.get_mut(id) {
            e.last_producer_epoch = last;
        }
        self.records.push(record);
    }

    /// Writes a PrepareCommit/PrepareAbort and asks for its markers.
    fn write_prepare(&mut self, id: &str, m: TransactionMetadata) {
        self.write(id, m.clone());
        self.request_markers(id, &m);
    }

    /// Asks for the markers of a transaction in a Prepare state. A transaction without
    /// partitions (TV2 aborts with nothing added) has no marker to write: it completes in the
    /// same batch, as Kafka's marker manager completes it at once.
    fn request_markers(&mut self, id: &str, m: &TransactionMetadata) {
        if m.partitions.is_empty() {
            let done = m.completed(self.now_ms);
            self.write(id, done);
        } else {
            self.effects.push(m.markers(id));
        }
    }

    fn finish(&mut self, reply: Reply) -> TxnResult {
        runtime::CoordinatorResult {
            records: std::mem::take(&mut self.records),
            reply,
            completed: Vec::new(),
        }
    }
}

/// The producer id and epoch of a request against the metadata (AddPartitionsToTxn).
fn check_producer(
    m: &TransactionMetadata,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(), ResponseError> {
    if matches!(
        m.state,
        TransactionState::PrepareCommit | TransactionState::PrepareAbort
    ) && m.next_producer_id != NO_PRODUCER_ID
        && producer_id == m.next_producer_id
    {
        // TV2: the client already holds the id its transaction rotates to; the markers of
        // that transaction are still being written.
        return Err(ResponseError::ConcurrentTransactions);
    }
    if m.producer_id != producer_id {
        return Err(ResponseError::InvalidProducerIdMapping);
    }
    if m.producer_epoch != producer_epoch {
        return Err(ResponseError::ProducerFenced);
    }
    Ok(())
}

/// Kafka's `prepareIncrementProducerEpoch` (the caller resets partitions, timestamps and
/// timeout).
fn increment_epoch(
    current: &TransactionMetadata,
    expected_epoch: Option<i16>,
    now_ms: i64,
) -> Result<TransactionMetadata, ResponseError> {
    let mut m = current.transit(TransactionState::Empty, now_ms);
    let bumped = || {
        current.producer_epoch.checked_add(1).ok_or_else(|| {
            error!(producer_id = current.producer_id, "producer epoch overflow");
            ResponseError::ProducerFenced
        })
    };
    match expected_epoch {
        None => {
            m.producer_epoch = bumped()?;
            m.last_producer_epoch = NO_PRODUCER_EPOCH;
        }
        Some(e) if current.producer_epoch == NO_PRODUCER_EPOCH || e == current.producer_epoch => {
            m.producer_epoch = bumped()?;
            m.last_producer_epoch = current.producer_epoch;
        }
        // A retry of a bump whose response was lost: answer the current epoch again.
        Some(e) if e == current.last_producer_epoch => {}
        Some(e) => {
            info!(
                expected = e,
                current = current.producer_epoch,
                last = current.last_producer_epoch,
                "expected producer epoch is neither the current nor the previous one"
            );
            return Err(ResponseError::ProducerFenced);
        }
    }
    Ok(m)
}

fn invalid_transition(id: &str, state: TransactionState, commit: bool) -> i16 {
    warn!(
        transactional_id = %id,
        state = state.name(),
        commit,
        "EndTxn in a state that does not allow it"
    );
    code(ResponseError::InvalidTxnState)
}

/// The response to `request` failing as a whole with `code` (NOT_COORDINATOR,
/// COORDINATOR_LOAD_IN_PROGRESS, …): every partition of an AddPartitions gets it.
pub fn error_response(request: &TxnRequest, code: i16) -> TxnResponse {
    match request {
        TxnRequest::InitProducerId { .. } => TxnResponse::InitProducerId {
            error: code,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        },
        TxnRequest::AddPartitions { partitions, .. } => TxnResponse::AddPartitions {
            results: partitions.iter().map(|p| (p.clone(), code)).collect(),
        },
        TxnRequest::AddOffsets { .. } => TxnResponse::AddOffsets { error: code },
        TxnRequest::EndTxn { .. } => TxnResponse::EndTxn {
            error: code,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
        },
        TxnRequest::MarkersWritten { .. } => TxnResponse::MarkersWritten { error: code },
        TxnRequest::Describe { .. } => TxnResponse::Describe {
            error: code,
            description: None,
        },
        TxnRequest::List { .. } => TxnResponse::List {
            error: code,
            transactions: Vec::new(),
        },
    }
}

/// The transaction coordinator in the coordinator runtime: `__transaction_state`,
/// transactional ids as keys, markers to write as effects.
impl CoordinatorShard for TransactionCoordinatorShard {
    const TOPIC: &'static str = TRANSACTION_STATE_TOPIC;
    const NAME: &'static str = "transaction coordinator";
    type Config = TransactionCoordinatorConfig;
    type Record = TxnRecord;
    type DecodeError = TxnRecordError;
    type Request = TxnRequest;
    type Response = TxnResponse;
    /// The finalized `transaction.version`.
    type Metadata = i16;
    type Effect = TxnMarkerRequest;

    // The transaction coordinator draws nothing at random: its producer ids come from the
    // controller's blocks.
    fn new_shard(partition: i32, config: &TransactionCoordinatorConfig, _random_seed: u64) -> Self {
        TransactionCoordinatorShard::new(partition, config.clone())
    }

    fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<TxnRecord, TxnRecordError> {
        TxnRecord::decode(key, value)
    }

    fn encode_record(record: &TxnRecord) -> (bytes::Bytes, Option<bytes::Bytes>) {
        (record.encode_key(), record.encode_value())
    }

    fn replay(&mut self, record: &TxnRecord) {
        TransactionCoordinatorShard::replay(self, record)
    }

    fn set_metadata(&mut self, metadata: &i16) {
        self.finalized_transaction_version = *metadata;
    }

    fn on_loaded(&mut self, now_ms: i64) -> TxnResult {
        TransactionCoordinatorShard::on_loaded(self, now_ms)
    }

    fn handle(&mut self, ctx: &RequestContext, request: TxnRequest, now_ms: i64) -> TxnResult {
        TransactionCoordinatorShard::handle(self, ctx, request, now_ms)
    }

    fn take_effects(&mut self) -> Vec<TxnMarkerRequest> {
        std::mem::take(&mut self.effects)
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        TransactionCoordinatorShard::next_deadline_ms(self)
    }

    fn tick(&mut self, now_ms: i64) -> TxnResult {
        TransactionCoordinatorShard::tick(self, now_ms)
    }

    fn unload(&mut self) -> Vec<(RequestToken, TxnResponse)> {
        TransactionCoordinatorShard::unload(self)
    }

    fn error_response(request: &TxnRequest, _ctx: &RequestContext, code: i16) -> TxnResponse {
        error_response(request, code)
    }
}
