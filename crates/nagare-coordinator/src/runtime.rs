//! The contract between a coordinator shard and the broker's coordinator runtime (Kafka 4.x's
//! `CoordinatorShard` and `CoordinatorResult`, KIP-848).
//!
//! A coordinator keeps its state in the partitions of an internal topic (groups in
//! `__consumer_offsets`, transactions in `__transaction_state`); the key of a request (group
//! id, transactional id) picks the partition, and the leader of that partition runs its
//! shard. The runtime in the broker does everything that is not the coordinator's own
//! decisions — loading a shard when its partition's leadership arrives, replaying the
//! partition into it, serialising requests, appending the records a shard produced, releasing
//! replies only once they are committed, timers, unloading — for any [`CoordinatorShard`].
//!
//! # The result contract
//!
//! Every call that may change a shard's state returns a [`CoordinatorResult`]. The runtime
//! appends its `records` to the shard's partition as one atomic batch, and sends its `reply`
//! and every response in `completed` only once that batch — and every batch appended before
//! it — is committed (Kafka's runtime does the same even when `records` is empty, so that no
//! reply exposes uncommitted state). If the append fails the in-memory state is ahead of the
//! log: the runtime unloads the shard ([`CoordinatorShard::unload`]) and loads it again by
//! replaying the partition.

use bytes::Bytes;

/// Identifies a parked (deferred) request of one shard. The runtime keeps the connection's
/// responder under this token and answers it when the token shows up in
/// [`CoordinatorResult::completed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestToken(pub u64);

/// What a coordinator needs to know about a request besides its body (Kafka passes its
/// `RequestContext` to every shard operation the same way).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestContext {
    /// The request's API version: several rules depend on it (KIP-394 needs JoinGroup v4+,
    /// LeaveGroup v3+ batches members, OffsetFetch v8+ batches groups, …).
    pub api_version: i16,
    /// The client id from the request header (used in generated member ids).
    pub client_id: String,
    /// The client's address as the broker sees it (shown by DescribeGroups).
    pub client_host: String,
}

/// The reply to the request just handled.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<Resp> {
    /// Answer with this (after the result's records are committed).
    Now(Resp),
    /// The request is parked; its answer will come in a later result's `completed`.
    Deferred(RequestToken),
    /// No reply (results of ticks and of loading).
    None,
}

/// Everything one call of a shard produced; see the module's result contract.
#[derive(Debug, Clone, PartialEq)]
pub struct CoordinatorResult<Rec, Resp> {
    /// Records to append, as one batch.
    pub records: Vec<Rec>,
    /// The reply to the request handled (always [`Reply::None`] for ticks and loading).
    pub reply: Reply<Resp>,
    /// Answers to earlier deferred requests.
    pub completed: Vec<(RequestToken, Resp)>,
}

/// The result type of shard `S`.
pub type ShardResult<S> =
    CoordinatorResult<<S as CoordinatorShard>::Record, <S as CoordinatorShard>::Response>;

/// A sans-I/O coordinator shard: the state of one partition of the coordinator's internal
/// topic, and what the runtime needs to load it, feed it requests and time, and write its
/// records. Implemented by the group shard ([`crate::GroupCoordinatorShard`]); the
/// transaction coordinator plugs in the same way over `__transaction_state`.
pub trait CoordinatorShard: Sized + Send + 'static {
    /// The internal topic whose partitions hold the shards (`__consumer_offsets`).
    const TOPIC: &'static str;
    /// What the coordinator is called in logs ("group coordinator").
    const NAME: &'static str;

    /// The coordinator's settings, handed to every new shard.
    type Config: Clone + Send + Sync + 'static;
    /// A record of the internal topic.
    type Record: Send + 'static;
    /// Why a record of the internal topic could not be decoded.
    type DecodeError: std::fmt::Display;
    /// A request the coordinator handles.
    type Request: Clone + Send + 'static;
    /// A response of the coordinator.
    type Response: Send + 'static;
    /// The part of the cluster metadata the shards follow (`()` if none); the runtime gives
    /// each shard the latest one before it handles a request or a tick.
    type Metadata: Clone + Default + PartialEq + Send + Sync + 'static;
    /// A side effect the shard asks for once the records of the call that produced it are
    /// committed (the transaction coordinator's markers to write; `()` for none).
    type Effect: Send + 'static;

    /// The partition of the internal topic owning `key` (a group or transactional id):
    /// `abs(javaHashCode(key)) % partitions`, as Kafka's coordinators place them.
    fn partition_for(key: &str, partitions: i32) -> i32 {
        crate::partition_for(key, partitions)
    }

    /// A shard for `partition` that is loading: the runtime feeds it the partition's records
    /// with [`replay`](Self::replay), then calls [`on_loaded`](Self::on_loaded).
    /// `random_seed` is the shard's only source of randomness (e.g. member ids): the caller
    /// draws it, so the shard itself stays deterministic and simulations replay exactly.
    fn new_shard(partition: i32, config: &Self::Config, random_seed: u64) -> Self;

    /// Decodes a record of the internal topic (a record that cannot be decoded, e.g. of a
    /// type this version does not know, is skipped while loading, as Kafka skips them).
    fn decode_record(key: &[u8], value: Option<&[u8]>) -> Result<Self::Record, Self::DecodeError>;

    /// Encodes a record as its key and value (`None`: a tombstone).
    fn encode_record(record: &Self::Record) -> (Bytes, Option<Bytes>);

    /// Applies one record of the partition while loading.
    fn replay(&mut self, record: &Self::Record);

    /// Applies one record of a transactional batch of producer `producer_id` (Kafka's
    /// `CoordinatorShard.replay(offset, producerId, producerEpoch, record)`): while loading,
    /// and for the records of [`handle`](Self::handle) results the runtime writes as a
    /// transaction's (TxnOffsetCommit). The record takes effect only once the producer's
    /// COMMIT marker comes ([`replay_end_transaction_marker`](Self::replay_end_transaction_marker)).
    /// By default a shard without transactional records applies it at once.
    fn replay_transactional(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        record: &Self::Record,
    ) {
        let _ = (producer_id, producer_epoch);
        self.replay(record)
    }

    /// Applies the COMMIT (`commit`) or ABORT marker of producer `producer_id`'s transaction
    /// (Kafka's `CoordinatorShard.replayEndTransactionMarker`): the records it wrote with
    /// [`replay_transactional`](Self::replay_transactional) since its last marker take effect
    /// or are dropped. Called while loading and by the runtime's `complete_transaction`.
    fn replay_end_transaction_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) {
        let _ = (producer_id, producer_epoch, commit);
    }

    /// Gives the shard the latest metadata.
    fn set_metadata(&mut self, metadata: &Self::Metadata);

    /// Ends loading at `now_ms` (Kafka's `onLoaded`); its records are written before any
    /// request's.
    fn on_loaded(&mut self, now_ms: i64) -> ShardResult<Self>;

    /// Handles one request at `now_ms`.
    fn handle(
        &mut self,
        ctx: &RequestContext,
        request: Self::Request,
        now_ms: i64,
    ) -> ShardResult<Self>;

    /// Takes the side effects the last call (request, tick or `on_loaded`) asked for. The
    /// runtime calls it right after each call and performs them only once that call's
    /// records are committed; effects of a write that failed are dropped (the shard is then
    /// reloaded from its log, and must ask again from `on_loaded` for what is still due).
    fn take_effects(&mut self) -> Vec<Self::Effect> {
        Vec::new()
    }

    /// The earliest timer deadline: the runtime calls [`tick`](Self::tick) at or after it.
    fn next_deadline_ms(&self) -> Option<i64>;

    /// Advances time to `now_ms` and fires every timer due.
    fn tick(&mut self, now_ms: i64) -> ShardResult<Self>;

    /// Drops the shard's transient state when it loses its partition (or its in-memory state
    /// went ahead of the log), answering parked requests it knows how to (the runtime answers
    /// the rest with [`error_response`](Self::error_response) NOT_COORDINATOR).
    fn unload(&mut self) -> Vec<(RequestToken, Self::Response)>;

    /// The response to `request` failing as a whole with `code` — NOT_COORDINATOR,
    /// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE when no shard can serve it
    /// or its write was not committed.
    fn error_response(request: &Self::Request, ctx: &RequestContext, code: i16) -> Self::Response;
}
