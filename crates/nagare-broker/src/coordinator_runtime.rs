//! The coordinator runtime: the async shell around any sans-I/O [`CoordinatorShard`] of
//! `nagare-coordinator`, for the partitions of its internal topic this broker leads — Kafka
//! 4.x's `CoordinatorRuntime` (KIP-848). The group coordinator runs on it over
//! `__consumer_offsets`; the transaction coordinator runs on it over `__transaction_state`.
//!
//! - **Loading.** A shard is loaded only once this broker is the partition's leader in the
//!   metadata image *and* the replica manager has put the partition in the leader role at that
//!   epoch (a leader's log is never truncated, a follower's may still be). The partition is
//!   replayed on a blocking task; meanwhile requests get COORDINATOR_LOAD_IN_PROGRESS (14).
//! - **Writes.** Each request is handled under its shard's lock; the records it produces are
//!   appended to the partition as one batch, and every reply (including parked answers
//!   completed by it, and replies of results that wrote nothing) is released only once the
//!   partition's high watermark has passed everything appended so far — Kafka's runtime
//!   completes write events when the HW reaches their offset. The local fsync comes first
//!   (group commit), so a single node (HW = log end) keeps its durability.
//! - **Acks.** As Kafka 4's `CoordinatorPartitionWriter`, a write is appended with acks=1
//!   semantics (no `min.insync.replicas` check) and its reply waits for the high watermark,
//!   which moves only when every ISR member has the records: an ISR shrunk below
//!   `min.insync.replicas` does not stop coordinator writes (the old ZooKeeper-era
//!   coordinator's acks=-1 did).
//! - **Failures.** As Kafka's `GroupCoordinatorService.handleOperationException` maps them:
//!   lost leadership or a storage error → NOT_COORDINATOR (16); a write that does not reach
//!   the high watermark within the write timeout (`offsets.commit.timeout.ms` for groups) →
//!   COORDINATOR_NOT_AVAILABLE (15). A shard whose in-memory state may be ahead of the log
//!   (the append did not happen, or the log failed) is unloaded and loaded again from the
//!   log — the place of Kafka's snapshot-registry revert. A timed-out write leaves the records
//!   in the leader's log, which a leader never truncates, so the state still matches the log.
//! - **Unloading.** When leadership moves away (or the epoch changes) the shard is dropped;
//!   parked requests get NOT_COORDINATOR and clients look the coordinator up again.
//!
//! - **Transactions.** As Kafka's `scheduleTransactionalWriteOperation`,
//!   [`CoordinatorRuntime::handle_transactional_on`] appends a result's records as a
//!   transactional batch of the producer (base sequence -1, coordinator origin), so that they
//!   take effect only with the producer's COMMIT marker; as `scheduleTransactionCompletion`,
//!   [`CoordinatorRuntime::complete_transaction`] writes that marker through the same
//!   serialised write path and applies it to the shard. Loading replays transactional batches
//!   and markers through [`CoordinatorShard::replay_transactional`] and
//!   [`CoordinatorShard::replay_end_transaction_marker`].
//!
//! Time is driven by [`CoordinatorRuntime::run_timers`]: it sleeps until the earliest timer
//! deadline any shard reported (every call that may move a deadline reports the shard's
//! next one), so a session or rebalance timeout expires at its deadline rather than at the
//! next tick of a fixed-period timer.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nagare_protocol::batch_builder::{build_batch, build_control_batch};
use parking_lot::Mutex as SyncMutex;
use tokio::sync::{oneshot, Mutex};

use nagare_coordinator::runtime::{
    CoordinatorResult, CoordinatorShard, Reply, RequestToken, ShardResult,
};
use nagare_coordinator::RequestContext;
use nagare_metadata::{MetadataDelta, MetadataImage};

use crate::replica_manager::{
    now_ms, AppendEntry, AppendOrigin, Partition, ReplicaError, ReplicaManager, ReplicationOutcome,
    RequiredAcks,
};
use nagare_storage::StorageError;

// The codes the runtime answers with, named once from the vocabulary.
pub(crate) const COORDINATOR_LOAD_IN_PROGRESS: i16 =
    kafka_protocol::ResponseError::CoordinatorLoadInProgress.code();
pub(crate) const COORDINATOR_NOT_AVAILABLE: i16 =
    kafka_protocol::ResponseError::CoordinatorNotAvailable.code();
pub(crate) const NOT_COORDINATOR: i16 = kafka_protocol::ResponseError::NotCoordinator.code();

/// Pause before loading a shard again after its log could not be read.
const LOAD_RETRY_BACKOFF: Duration = Duration::from_millis(1000);

/// Pause before reloading a shard after a failed write, so that a write failing at every
/// load (e.g. `onLoaded` records on a failing log) cannot spin.
const RELOAD_BACKOFF: Duration = Duration::from_millis(500);

/// A pending answer: resolves once the request's effects are committed.
pub type PendingReply<R> = Pin<Box<dyn Future<Output = R> + Send>>;

/// A parked request: where its answer goes, and the request itself so that an error answer
/// of the right shape can be built if its completion is not committed.
struct Parked<S: CoordinatorShard> {
    tx: oneshot::Sender<S::Response>,
    req: S::Request,
    ctx: RequestContext,
}

struct ShardState<S: CoordinatorShard> {
    shard: S,
    parked: HashMap<RequestToken, Parked<S>>,
    /// The version of the metadata the shard has seen.
    metadata_version: u64,
}

impl<S: CoordinatorShard> ShardState<S> {
    /// Gives the shard the latest metadata if it has not seen it yet (e.g. KIP-848 groups
    /// recompute their target assignment when their subscribed topics change).
    fn refresh_metadata(&mut self, metadata: &(u64, Arc<S::Metadata>)) {
        if self.metadata_version != metadata.0 {
            self.shard.set_metadata(&metadata.1);
            self.metadata_version = metadata.0;
        }
    }

    /// Drops the transient state and answers every parked request with NOT_COORDINATOR.
    fn unload(&mut self) {
        for (token, resp) in self.shard.unload() {
            if let Some(p) = self.parked.remove(&token) {
                let _ = p.tx.send(resp);
            }
        }
        for (_, p) in self.parked.drain() {
            let _ =
                p.tx.send(S::error_response(&p.req, &p.ctx, NOT_COORDINATOR));
        }
    }
}

struct ShardHandle<S: CoordinatorShard> {
    /// Identifies this incarnation of the shard (a reload gets a new one).
    id: u64,
    /// The leader epoch the shard was loaded in; it serves only while the partition is led
    /// here in this epoch.
    epoch: i32,
    partition: Arc<Partition>,
    /// Set when the shard is unloaded; requests that were waiting for its lock then answer
    /// NOT_COORDINATOR.
    dead: AtomicBool,
    state: Mutex<ShardState<S>>,
}

impl<S: CoordinatorShard> ShardHandle<S> {
    /// Whether the shard may serve: not unloaded, and its partition still led here in the
    /// epoch it was loaded in.
    fn serving(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
            && self.partition.is_leader()
            && self.partition.epoch() == self.epoch
    }
}

/// One partition of the internal topic led here.
enum Slot<S: CoordinatorShard> {
    /// Being replayed (requests get COORDINATOR_LOAD_IN_PROGRESS).
    Loading { id: u64, epoch: i32 },
    /// Serving.
    Loaded(Arc<ShardHandle<S>>),
}

impl<S: CoordinatorShard> Slot<S> {
    fn epoch(&self) -> i32 {
        match self {
            Slot::Loading { epoch, .. } => *epoch,
            Slot::Loaded(h) => h.epoch,
        }
    }

    fn id(&self) -> u64 {
        match self {
            Slot::Loading { id, .. } => *id,
            Slot::Loaded(h) => h.id,
        }
    }
}

/// How a result's records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteKind {
    /// A plain batch (no producer).
    Plain,
    /// A transactional batch of this producer (TxnOffsetCommit).
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
    },
}

/// What became of a result's write: failed at once, or waiting for the commit.
enum Committed<R> {
    /// The append failed: answer with this error code.
    Failed(i16),
    /// Appended; `code` resolves once the wait ended (0: committed).
    Waiting {
        code: oneshot::Receiver<i16>,
        /// The reply: ready, parked, or none (ticks, loads).
        reply: Option<Result<R, oneshot::Receiver<R>>>,
    },
}

impl<R> Committed<R> {
    /// The answer to `req`, once committed (or the error that stopped it).
    async fn into_reply<S: CoordinatorShard<Response = R>>(
        self,
        req: S::Request,
        ctx: RequestContext,
    ) -> R {
        let (code, reply) = match self {
            Committed::Failed(code) => return S::error_response(&req, &ctx, code),
            Committed::Waiting { code, reply } => (code, reply),
        };
        let code = code.await.unwrap_or(NOT_COORDINATOR);
        if code != 0 {
            return S::error_response(&req, &ctx, code);
        }
        match reply {
            Some(Ok(r)) => r,
            // The shard was dropped without answering (cannot happen through unload).
            Some(Err(rx)) => rx
                .await
                .unwrap_or_else(|_| S::error_response(&req, &ctx, NOT_COORDINATOR)),
            None => S::error_response(&req, &ctx, 0),
        }
    }

    /// Waits until the write is committed or failed.
    async fn done(self) {
        if let Committed::Waiting { code, .. } = self {
            let _ = code.await;
        }
    }
}

/// The coordinator runtime of this broker for shards of type `S`.
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    replicas: Arc<ReplicaManager>,
    config: S::Config,
    /// How long a write waits for the high watermark before COORDINATOR_NOT_AVAILABLE.
    write_timeout: Duration,
    shards: SyncMutex<HashMap<i32, Slot<S>>>,
    next_id: AtomicU64,
    /// The shards' metadata from the latest image, with a version number.
    metadata: SyncMutex<(u64, Arc<S::Metadata>)>,
    /// The runtime to spawn loads and unloads on (image listeners run on their own thread).
    runtime: Option<tokio::runtime::Handle>,
    /// Where the shards' side effects go once their records are committed.
    effect_sink: SyncMutex<Option<EffectSink<S>>>,
    /// The earliest timer deadline reported by any shard since the timer task last looked
    /// (`i64::MAX`: none), and the task's wake-up when an earlier one is reported.
    earliest_deadline: AtomicI64,
    timers_changed: Arc<tokio::sync::Notify>,
}

/// The timer task's longest sleep: it looks at every shard at least this often, so a
/// deadline is never missed for long even if a report were lost.
const MAX_TIMER_SLEEP: Duration = Duration::from_millis(1000);

/// Receives a shard's side effects once the records of the call that asked for them are
/// committed: the shard's partition, the leader epoch it was loaded in (the transaction
/// coordinator's `coordinator_epoch`), and the effects.
pub type EffectSink<S> =
    Arc<dyn Fn(i32, i32, Vec<<S as CoordinatorShard>::Effect>) + Send + Sync + 'static>;

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    /// A runtime with no shards yet, whose shards get `config` and whose writes wait at most
    /// `write_timeout` for the high watermark. Call it inside the Tokio runtime that should
    /// run shard loading.
    pub fn new(replicas: Arc<ReplicaManager>, config: S::Config, write_timeout: Duration) -> Self {
        CoordinatorRuntime {
            replicas,
            config,
            write_timeout,
            shards: SyncMutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            metadata: SyncMutex::new((0, Arc::new(S::Metadata::default()))),
            runtime: tokio::runtime::Handle::try_current().ok(),
            effect_sink: SyncMutex::new(None),
            earliest_deadline: AtomicI64::new(i64::MAX),
            timers_changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Notes a shard's next timer deadline; wakes the timer task if it is earlier than any
    /// it knows of.
    fn note_deadline(&self, deadline: Option<i64>) {
        let Some(d) = deadline else { return };
        if self.earliest_deadline.fetch_min(d, Ordering::AcqRel) > d {
            self.timers_changed.notify_one();
        }
    }

    /// Drives the shards' timers until the runtime is dropped: sleeps until the earliest
    /// reported deadline (at most [`MAX_TIMER_SLEEP`]) or until an earlier one is reported,
    /// then fires what is due. Holds the runtime only while it ticks.
    pub async fn run_timers(runtime: std::sync::Weak<Self>) {
        let Some(changed) = runtime.upgrade().map(|rt| rt.timers_changed.clone()) else {
            return;
        };
        loop {
            let wait = {
                let Some(rt) = runtime.upgrade() else { return };
                let earliest = rt.earliest_deadline.load(Ordering::Acquire);
                if earliest == i64::MAX {
                    MAX_TIMER_SLEEP
                } else {
                    Duration::from_millis(earliest.saturating_sub(now_ms()).max(0) as u64)
                        .min(MAX_TIMER_SLEEP)
                }
            };
            // notify_one keeps a permit when nobody waits, so a report made between the
            // load above and this wait is not lost.
            let woke_early = tokio::select! {
                _ = tokio::time::sleep(wait) => false,
                _ = changed.notified() => true,
            };
            if woke_early {
                continue;
            }
            let Some(rt) = runtime.upgrade() else { return };
            rt.tick().await;
        }
    }

    /// Sets where the shards' side effects go ([`CoordinatorShard::take_effects`]); without
    /// a sink they are dropped.
    pub fn set_effect_sink(&self, sink: EffectSink<S>) {
        *self.effect_sink.lock() = Some(sink);
    }

    /// Sets the metadata the shards follow; each shard gets it before its next request or
    /// tick if it differs from the current one.
    pub fn set_metadata(&self, metadata: S::Metadata) {
        let mut current = self.metadata.lock();
        if *current.1 != metadata {
            *current = (current.0 + 1, Arc::new(metadata));
        }
    }

    /// Starts loading shards for the partitions of `S::TOPIC` this node now leads (in the
    /// image and in the replica manager, at the image's epoch) and unloads the others —
    /// looking only at the partitions `delta` changed, since no other can have changed
    /// hands. Call after [`ReplicaManager::apply_delta`] of the same delta.
    pub fn on_image(self: &Arc<Self>, delta: &MetadataDelta, image: &MetadataImage, node_id: i32) {
        let changed: HashSet<i32> = delta.partitions_of(S::TOPIC).map(|p| p.partition).collect();
        if changed.is_empty() {
            return;
        }
        // Partition -> leader epoch of every changed partition to serve.
        let mut led: HashMap<i32, (i32, Arc<Partition>)> = HashMap::new();
        if let Some(t) = image.topic(S::TOPIC) {
            for i in &changed {
                let Some(reg) = t.partitions.get(i) else {
                    continue;
                };
                if reg.leader != node_id {
                    continue;
                }
                let Some(partition) = self.replicas.partition(S::TOPIC, *i) else {
                    continue;
                };
                // Why both: the image says who leads, the replica manager says whether our
                // log has stopped following (and so can no longer be truncated).
                if partition.is_leader() && partition.epoch() == reg.leader_epoch {
                    led.insert(*i, (reg.leader_epoch, partition));
                }
            }
        }
        let mut shards = self.shards.lock();
        let gone: Vec<i32> = shards
            .iter()
            .filter(|(p, slot)| {
                changed.contains(p) && led.get(p).map(|(e, _)| *e) != Some(slot.epoch())
            })
            .map(|(p, _)| *p)
            .collect();
        for p in gone {
            if let Some(slot) = shards.remove(&p) {
                if let Slot::Loaded(h) = slot {
                    self.unload_later(h);
                }
                tracing::info!(
                    coordinator = S::NAME,
                    partition = p,
                    "unloaded coordinator shard"
                );
            }
        }
        for (p, (epoch, partition)) in led {
            if shards.contains_key(&p) {
                continue;
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            shards.insert(p, Slot::Loading { id, epoch });
            self.spawn_load(p, id, epoch, partition, Duration::ZERO);
        }
    }

    /// Marks `h` unloaded and answers its parked requests once its lock is free.
    fn unload_later(&self, h: Arc<ShardHandle<S>>) {
        h.dead.store(true, Ordering::Release);
        match &self.runtime {
            Some(rt) => {
                rt.spawn(async move { h.state.lock().await.unload() });
            }
            None => {
                if let Ok(mut st) = h.state.try_lock() {
                    st.unload();
                }
            }
        }
    }

    fn spawn_load(
        self: &Arc<Self>,
        p: i32,
        id: u64,
        epoch: i32,
        partition: Arc<Partition>,
        delay: Duration,
    ) {
        let this = self.clone();
        match &self.runtime {
            Some(rt) => {
                rt.spawn(async move {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    this.load(p, id, epoch, partition).await
                });
            }
            None => tracing::error!(
                coordinator = S::NAME,
                partition = p,
                "no runtime to load the coordinator shard on"
            ),
        }
    }

    /// Whether slot `p` still waits for the load `id`, and the partition is still led here
    /// in `epoch`.
    fn load_wanted(&self, p: i32, id: u64, epoch: i32, partition: &Partition) -> bool {
        matches!(self.shards.lock().get(&p), Some(Slot::Loading { id: i, .. }) if *i == id)
            && partition.is_leader()
            && partition.epoch() == epoch
    }

    /// Replays partition `p` into a fresh shard and installs it (Kafka's
    /// `CoordinatorLoaderImpl` followed by `onLoaded`).
    async fn load(self: Arc<Self>, p: i32, id: u64, epoch: i32, partition: Arc<Partition>) {
        let started = Instant::now();
        let shard = loop {
            if !self.load_wanted(p, id, epoch, &partition) {
                return;
            }
            let part = partition.clone();
            let config = self.config.clone();
            let res = tokio::task::spawn_blocking(move || load_shard::<S>(&part, &config))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            match res {
                Ok(shard) => break shard,
                Err(e) => {
                    tracing::error!(coordinator = S::NAME, partition = p, error = %e, "cannot load coordinator shard; retrying");
                    tokio::time::sleep(LOAD_RETRY_BACKOFF).await;
                }
            }
        };
        let metadata = self.metadata.lock().clone();
        let h = Arc::new(ShardHandle {
            id,
            epoch,
            partition: partition.clone(),
            dead: AtomicBool::new(false),
            state: Mutex::new(ShardState {
                shard,
                parked: HashMap::new(),
                metadata_version: metadata.0,
            }),
        });
        // Locked before it is published, so on_loaded's records precede any request's.
        let Ok(mut st) = h.state.try_lock() else {
            return;
        };
        st.shard.set_metadata(&metadata.1);
        {
            let mut shards = self.shards.lock();
            let current = matches!(shards.get(&p), Some(Slot::Loading { id: i, .. }) if *i == id);
            if !current || !partition.is_leader() || partition.epoch() != epoch {
                return;
            }
            shards.insert(p, Slot::Loaded(h.clone()));
        }
        let result = st.shard.on_loaded(now_ms());
        tracing::info!(
            coordinator = S::NAME,
            partition = p,
            epoch,
            load_ms = started.elapsed().as_millis() as u64,
            log_end = partition.log_end_offset(),
            "loaded coordinator shard"
        );
        let committed = self.commit(&h, &mut st, result, None);
        drop(st);
        committed.done().await;
    }

    /// The partition of `S::TOPIC` owning `key`, if the topic exists.
    pub fn shard_of(image: &MetadataImage, key: &str) -> Option<i32> {
        let n = image.topic(S::TOPIC)?.partitions.len() as i32;
        Some(S::partition_for(key, n))
    }

    /// Handles one request on the shard owning `key`. Runs the decision now (in request
    /// order) and returns the answer to await.
    pub async fn handle(
        self: &Arc<Self>,
        image: &MetadataImage,
        key: &str,
        ctx: RequestContext,
        req: S::Request,
    ) -> PendingReply<S::Response> {
        let Some(p) = Self::shard_of(image, key) else {
            let resp = S::error_response(&req, &ctx, COORDINATOR_NOT_AVAILABLE);
            return Box::pin(async move { resp });
        };
        self.handle_on(p, ctx, req).await
    }

    /// Handles a request on shard `p`.
    pub async fn handle_on(
        self: &Arc<Self>,
        p: i32,
        ctx: RequestContext,
        req: S::Request,
    ) -> PendingReply<S::Response> {
        self.handle_with(p, ctx, req, WriteKind::Plain).await
    }

    /// Handles a request on shard `p` whose records belong to the transaction of producer
    /// `producer_id` (Kafka's `scheduleTransactionalWriteOperation`): they are appended as one
    /// transactional batch of that producer (base sequence -1, coordinator origin), which the
    /// partition's producer state checks against the producer's epoch, and take effect only
    /// with its COMMIT marker ([`Self::complete_transaction`]). The shard applies them to its
    /// live state as [`CoordinatorShard::replay_transactional`] would. A write the log
    /// refuses (e.g. a fenced producer epoch) answers with the log's error, mapped as Kafka's
    /// `GroupCoordinatorService.handleOperationException`, and reloads the shard.
    pub async fn handle_transactional_on(
        self: &Arc<Self>,
        p: i32,
        ctx: RequestContext,
        req: S::Request,
        producer_id: i64,
        producer_epoch: i16,
    ) -> PendingReply<S::Response> {
        let kind = WriteKind::Transactional {
            producer_id,
            producer_epoch,
        };
        self.handle_with(p, ctx, req, kind).await
    }

    async fn handle_with(
        self: &Arc<Self>,
        p: i32,
        ctx: RequestContext,
        req: S::Request,
        kind: WriteKind,
    ) -> PendingReply<S::Response> {
        let handle = match self.shards.lock().get(&p) {
            Some(Slot::Loaded(h)) => Ok(h.clone()),
            Some(Slot::Loading { .. }) => Err(COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(NOT_COORDINATOR),
        };
        let handle = match handle {
            Ok(h) => h,
            Err(code) => {
                let resp = S::error_response(&req, &ctx, code);
                return Box::pin(async move { resp });
            }
        };
        let metadata = self.metadata.lock().clone();
        let mut st = handle.state.lock().await;
        if !handle.serving() {
            let resp = S::error_response(&req, &ctx, NOT_COORDINATOR);
            return Box::pin(async move { resp });
        }
        if let WriteKind::Transactional {
            producer_id,
            producer_epoch,
        } = kind
        {
            // Why: the log refuses a write of an older producer epoch (a zombie fenced by an
            // epoch bump, Kafka's ProducerAppendInfo.checkProducerEpoch); refusing it here,
            // before the shard applies it, spares reloading the shard after the refusal (Kafka
            // reverts to its snapshot instead). Every write to this partition goes through
            // this lock, so the check cannot race with one.
            if handle
                .partition
                .producer_epoch(producer_id)
                .is_some_and(|current| producer_epoch < current)
            {
                tracing::debug!(
                    coordinator = S::NAME,
                    producer_id,
                    producer_epoch,
                    "transactional write of a fenced producer epoch refused"
                );
                let resp = S::error_response(
                    &req,
                    &ctx,
                    kafka_protocol::ResponseError::InvalidProducerEpoch.code(),
                );
                return Box::pin(async move { resp });
            }
        }
        st.refresh_metadata(&metadata);
        let result = st.shard.handle(&ctx, req.clone(), now_ms());
        let committed = self.commit_as(&handle, &mut st, result, Some((&req, &ctx)), kind);
        Box::pin(committed.into_reply::<S>(req, ctx))
    }

    /// Writes the COMMIT (`commit`) or ABORT marker of producer `producer_id`'s transaction
    /// to shard `p`'s partition and applies it to the shard (Kafka's
    /// `scheduleTransactionCompletion`, called for WriteTxnMarkers on the coordinator's own
    /// partitions). Serialised with the shard's writes; answers once the marker is committed
    /// (high watermark), within `timeout`. Errors: COORDINATOR_LOAD_IN_PROGRESS while the
    /// shard loads, NOT_COORDINATOR when it is not led here (or its log failed),
    /// COORDINATOR_NOT_AVAILABLE when not committed in time, or the log's refusal (e.g.
    /// TRANSACTION_COORDINATOR_FENCED for a stale `coordinator_epoch`).
    pub async fn complete_transaction(
        self: &Arc<Self>,
        p: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        timeout: Duration,
    ) -> Result<(), i16> {
        let handle = match self.shards.lock().get(&p) {
            Some(Slot::Loaded(h)) => h.clone(),
            Some(Slot::Loading { .. }) => return Err(COORDINATOR_LOAD_IN_PROGRESS),
            None => return Err(NOT_COORDINATOR),
        };
        let mut st = handle.state.lock().await;
        if !handle.serving() {
            return Err(NOT_COORDINATOR);
        }
        let partition = handle.partition.clone();
        // Why the marker is appended before the shard applies it: the log may refuse it (a
        // stale coordinator epoch, a fenced producer), and then the shard must not change.
        // Kafka applies first and reverts to its snapshot on failure; the outcome is the same.
        let buf = build_control_batch(
            producer_id,
            producer_epoch,
            coordinator_epoch,
            commit,
            handle.epoch,
            now_ms(),
        )
        .map_err(|e| {
            tracing::warn!(coordinator = S::NAME, tp = %partition.tp, error = %e, "invalid transaction marker");
            kafka_protocol::ResponseError::InvalidRequest.code()
        })?;
        append_entry(
            &self.replicas,
            &partition,
            handle.epoch,
            BytesMut::from(&buf[..]),
        )
        .map_err(|e| {
            tracing::warn!(coordinator = S::NAME, tp = %partition.tp, error = %e, producer_id, "transaction marker refused");
            operation_error_code(&e)
        })?;
        st.shard
            .replay_end_transaction_marker(producer_id, producer_epoch, commit);
        let required = partition.log_end_offset();
        let committed = self.replicas.wait_committed(
            &partition,
            required,
            handle.epoch,
            timeout,
            AppendOrigin::Coordinator,
        );
        drop(st);
        match committed.await {
            ReplicationOutcome::Committed | ReplicationOutcome::BelowMinIsr => Ok(()),
            ReplicationOutcome::TimedOut => Err(COORDINATOR_NOT_AVAILABLE),
            ReplicationOutcome::NotLeader => Err(NOT_COORDINATOR),
            ReplicationOutcome::StorageError(e) => {
                tracing::error!(coordinator = S::NAME, tp = %partition.tp, error = %e, "coordinator fsync failed");
                if handle.serving() {
                    let mut st = handle.state.lock().await;
                    self.fail_shard(&handle, &mut st);
                }
                Err(NOT_COORDINATOR)
            }
        }
    }

    /// Fires due timers of every shard.
    pub async fn tick(self: &Arc<Self>) {
        let handles: Vec<Arc<ShardHandle<S>>> = self
            .shards
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Loaded(h) => Some(h.clone()),
                Slot::Loading { .. } => None,
            })
            .collect();
        let now = now_ms();
        let metadata = self.metadata.lock().clone();
        // Every shard's deadline is noted again below (and by any call meanwhile).
        self.earliest_deadline.store(i64::MAX, Ordering::Release);
        for h in handles {
            let mut st = h.state.lock().await;
            if !h.serving() {
                continue;
            }
            st.refresh_metadata(&metadata);
            let next = st.shard.next_deadline_ms();
            if next.map(|d| d > now).unwrap_or(true) {
                self.note_deadline(next);
                continue;
            }
            let result = st.shard.tick(now);
            // Nobody awaits a tick's reply; the commit's own task releases what it completed.
            drop(self.commit(&h, &mut st, result, None));
        }
    }

    /// Drops shard `h` whose in-memory state may be ahead of its log, answering its parked
    /// requests NOT_COORDINATOR, and loads it again from the log if the partition is still
    /// led here in the same epoch (Kafka reverts to the last committed snapshot instead).
    fn fail_shard(self: &Arc<Self>, h: &Arc<ShardHandle<S>>, st: &mut ShardState<S>) {
        if h.dead.swap(true, Ordering::AcqRel) {
            return;
        }
        st.unload();
        let p = h.partition.tp.partition;
        let mut shards = self.shards.lock();
        if shards.get(&p).map(Slot::id) != Some(h.id) {
            return;
        }
        shards.remove(&p);
        if h.partition.is_leader() && h.partition.epoch() == h.epoch {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            shards.insert(p, Slot::Loading { id, epoch: h.epoch });
            drop(shards);
            tracing::warn!(
                coordinator = S::NAME,
                partition = p,
                "reloading coordinator shard from its log"
            );
            self.spawn_load(p, id, h.epoch, h.partition.clone(), RELOAD_BACKOFF);
        }
    }

    /// Appends a result's records and returns what becomes of its reply, released once the
    /// high watermark has passed everything appended so far; parked replies completed by it
    /// are released at the same point. `request` is the request handled (None for ticks and
    /// loading).
    fn commit(
        self: &Arc<Self>,
        h: &Arc<ShardHandle<S>>,
        st: &mut ShardState<S>,
        result: ShardResult<S>,
        request: Option<(&S::Request, &RequestContext)>,
    ) -> Committed<S::Response> {
        self.commit_as(h, st, result, request, WriteKind::Plain)
    }

    /// [`Self::commit`] with the records written as `kind`.
    fn commit_as(
        self: &Arc<Self>,
        h: &Arc<ShardHandle<S>>,
        st: &mut ShardState<S>,
        result: ShardResult<S>,
        request: Option<(&S::Request, &RequestContext)>,
        kind: WriteKind,
    ) -> Committed<S::Response> {
        let CoordinatorResult {
            records,
            reply,
            completed,
        } = result;
        // The call may have set an earlier timer (a new member's session, a rebalance).
        self.note_deadline(st.shard.next_deadline_ms());
        let effects = st.shard.take_effects();
        let completed: Vec<(Parked<S>, S::Response)> = completed
            .into_iter()
            .filter_map(|(token, resp)| st.parked.remove(&token).map(|p| (p, resp)))
            .collect();
        let partition = h.partition.clone();
        // Write: the batch goes into the leader's log at the shard's epoch.
        let written = if records.is_empty() {
            Ok(())
        } else {
            // Kafka 4 appends coordinator records with acks=1 (no min.insync.replicas check)
            // and completes the write when the high watermark passes it. The replica manager
            // wakes the followers long-polling this partition.
            append::<S>(&self.replicas, &partition, h.epoch, &records, kind).map_err(|e| {
                match kind {
                    WriteKind::Plain => {
                        tracing::error!(coordinator = S::NAME, tp = %partition.tp, error = %e, "coordinator append failed");
                        NOT_COORDINATOR // Kafka maps KAFKA_STORAGE_ERROR / NOT_LEADER so
                    }
                    // The producer state may refuse a transaction's write (a fenced epoch):
                    // the producer gets that error, not a coordinator move.
                    WriteKind::Transactional { producer_id, .. } => {
                        tracing::warn!(coordinator = S::NAME, tp = %partition.tp, error = %e, producer_id, "transactional coordinator append refused");
                        operation_error_code(&e)
                    }
                }
            })
        };
        if let Err(code) = written {
            // The shard already applied records that are not in the log.
            for (p, _) in completed {
                let _ = p.tx.send(S::error_response(&p.req, &p.ctx, code));
            }
            self.fail_shard(h, st);
            return Committed::Failed(code);
        }
        let reply: Option<Result<S::Response, oneshot::Receiver<S::Response>>> = match reply {
            Reply::Now(r) => Some(Ok(r)),
            Reply::Deferred(token) => {
                let (tx, rx) = oneshot::channel();
                if let Some((req, ctx)) = request {
                    st.parked.insert(
                        token,
                        Parked {
                            tx,
                            req: req.clone(),
                            ctx: ctx.clone(),
                        },
                    );
                }
                Some(Err(rx))
            }
            Reply::None => None,
        };
        // Everything appended so far, including this batch, must be committed before any
        // reply that reflects it is sent (even when this result wrote nothing).
        let required = partition.log_end_offset();
        // The acks=all wait (fsync, then the high watermark), registered now so that one
        // group-commit round serves every shard's writes.
        let committed = self.replicas.wait_committed(
            &partition,
            required,
            h.epoch,
            self.write_timeout,
            AppendOrigin::Coordinator,
        );
        let this = self.clone();
        let h = h.clone();
        // The wait runs on its own task, so that the answers this result completed for other
        // requests are released even if this request's connection goes away meanwhile.
        let (code_tx, code_rx) = oneshot::channel::<i16>();
        tokio::spawn(async move {
            let code = match committed.await {
                // The HW passed: committed on every ISR member. (Below min.insync.replicas
                // is not reported for coordinator writes: acks=1 does not check it.)
                ReplicationOutcome::Committed | ReplicationOutcome::BelowMinIsr => 0,
                ReplicationOutcome::TimedOut => COORDINATOR_NOT_AVAILABLE,
                ReplicationOutcome::NotLeader => NOT_COORDINATOR,
                ReplicationOutcome::StorageError(e) => {
                    tracing::error!(coordinator = S::NAME, tp = %partition.tp, error = %e, "coordinator fsync failed");
                    NOT_COORDINATOR
                }
            };
            for (p, resp) in completed {
                let resp = if code == 0 {
                    resp
                } else {
                    S::error_response(&p.req, &p.ctx, code)
                };
                let _ = p.tx.send(resp);
            }
            if code == 0 && !effects.is_empty() {
                let sink = this.effect_sink.lock().clone();
                if let Some(sink) = sink {
                    sink(h.partition.tp.partition, h.epoch, effects);
                }
            }
            if code == NOT_COORDINATOR && h.serving() {
                // The log failed under a shard that still serves: start again from the log.
                let mut st = h.state.lock().await;
                this.fail_shard(&h, &mut st);
            }
            let _ = code_tx.send(code);
        });
        Committed::Waiting {
            code: code_rx,
            reply,
        }
    }

    /// Applies `f` to every shard loaded here, each under its lock in turn (for metrics:
    /// a read between two requests of the shard, never concurrent with one).
    pub async fn read_loaded<T>(&self, f: impl Fn(&S) -> T) -> Vec<T> {
        let handles: Vec<Arc<ShardHandle<S>>> = self
            .shards
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Loaded(h) => Some(h.clone()),
                Slot::Loading { .. } => None,
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            let state = h.state.lock().await;
            out.push(f(&state.shard));
        }
        out
    }

    /// Shard numbers loaded here.
    pub fn loaded_shards(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .shards
            .lock()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Loaded(_)))
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v
    }

    /// Shard numbers loaded or being loaded here.
    pub fn owned_shards(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.shards.lock().keys().copied().collect();
        v.sort();
        v
    }

    /// Shard numbers being loaded here.
    pub fn loading_shards(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .shards
            .lock()
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Loading { .. }))
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v
    }
}

/// Replays a partition into a fresh shard.
fn load_shard<S: CoordinatorShard>(partition: &Partition, config: &S::Config) -> Result<S, String> {
    // The shell draws the shard's randomness; the shard stays deterministic.
    let seed = uuid::Uuid::new_v4().as_u64_pair().0;
    let mut shard = S::new_shard(partition.tp.partition, config, seed);
    partition
        .replay_records(|r| {
            if r.control {
                // A transaction marker: the control record's key is (version i16, type i16),
                // type 0 ABORT, 1 COMMIT (Kafka's ControlRecordType); other types (e.g. the
                // KRaft ones) are not transaction markers.
                match r.key.as_deref().and_then(control_record_type) {
                    Some(t @ (CONTROL_ABORT | CONTROL_COMMIT)) => shard
                        .replay_end_transaction_marker(
                            r.producer_id,
                            r.producer_epoch,
                            t == CONTROL_COMMIT,
                        ),
                    _ => tracing::debug!(
                        coordinator = S::NAME,
                        offset = r.offset,
                        "skipping control record"
                    ),
                }
                return;
            }
            let Some(key) = r.key else {
                return;
            };
            match S::decode_record(&key, r.value.as_deref()) {
                Ok(rec) if r.transactional && r.producer_id >= 0 => {
                    shard.replay_transactional(r.producer_id, r.producer_epoch, &rec)
                }
                Ok(rec) => shard.replay(&rec),
                // Records this shard does not know (e.g. share-group records): skip, as Kafka
                // skips unknown record types.
                Err(e) => tracing::debug!(
                    coordinator = S::NAME,
                    offset = r.offset,
                    error = %e,
                    "skipping coordinator record"
                ),
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(shard)
}

/// Kafka's `ControlRecordType.ABORT`.
const CONTROL_ABORT: i16 = 0;
/// Kafka's `ControlRecordType.COMMIT`.
const CONTROL_COMMIT: i16 = 1;

/// The type of a control record from its key (version i16, type i16).
fn control_record_type(key: &[u8]) -> Option<i16> {
    let b: [u8; 2] = key.get(2..4)?.try_into().ok()?;
    Some(i16::from_be_bytes(b))
}

/// Appends coordinator records as one batch in leader epoch `epoch`, as leader of that epoch
/// (Kafka's `AppendOrigin.COORDINATOR`, acks=1): a plain batch, or a transactional batch of
/// the producer.
fn append<S: CoordinatorShard>(
    replicas: &ReplicaManager,
    partition: &Partition,
    epoch: i32,
    records: &[S::Record],
    kind: WriteKind,
) -> Result<(), ReplicaError> {
    let now = now_ms();
    let records = records.iter().map(|r| {
        let (key, value) = S::encode_record(r);
        (Some(key), value)
    });
    let buf = match kind {
        WriteKind::Plain => build_batch(records, epoch, now).map_err(|e| e.to_string()),
        WriteKind::Transactional {
            producer_id,
            producer_epoch,
        } => build_transactional_batch(records, producer_id, producer_epoch, epoch, now),
    }
    .map_err(|e| ReplicaError::Storage(StorageError::InvalidRecord(e)))?;
    append_entry(replicas, partition, epoch, buf)
}

/// Appends one partition's batches as leader of `epoch`, coordinator origin, acks=1.
fn append_entry(
    replicas: &ReplicaManager,
    partition: &Partition,
    epoch: i32,
    records: BytesMut,
) -> Result<(), ReplicaError> {
    let entry = AppendEntry {
        topic: partition.tp.topic.clone(),
        partition: partition.tp.partition,
        current_leader_epoch: epoch,
        records,
        verification: nagare_storage::TxnVerification::NotRequired,
    };
    let results = replicas
        .append_records(
            AppendOrigin::Coordinator,
            RequiredAcks::Leader,
            Duration::ZERO,
            vec![entry],
        )
        .into_results();
    match results.into_iter().next() {
        Some(r) => r.error.map_or(Ok(()), Err),
        None => Err(ReplicaError::NotLeaderOrFollower),
    }
}

/// The error a coordinator operation answers when the log refused its write (Kafka's
/// `GroupCoordinatorService.handleOperationException`): lost leadership or a storage
/// failure → NOT_COORDINATOR; no partition, too few replicas or a timeout →
/// COORDINATOR_NOT_AVAILABLE; sizes → UNKNOWN_SERVER_ERROR; anything else (a fenced
/// producer, an invalid transaction state) as is.
fn operation_error_code(e: &ReplicaError) -> i16 {
    use kafka_protocol::ResponseError as E;
    let code = e.code();
    match code {
        c if c == E::NotLeaderOrFollower.code() || c == E::KafkaStorageError.code() => {
            NOT_COORDINATOR
        }
        c if c == E::UnknownTopicOrPartition.code()
            || c == E::NotEnoughReplicas.code()
            || c == E::NotEnoughReplicasAfterAppend.code()
            || c == E::RequestTimedOut.code() =>
        {
            COORDINATOR_NOT_AVAILABLE
        }
        c if c == E::MessageTooLarge.code()
            || c == E::RecordListTooLarge.code()
            || c == E::InvalidFetchSize.code() =>
        {
            E::UnknownServerError.code()
        }
        // Fenced leader epochs mean this broker no longer leads in the shard's epoch.
        c if c == E::FencedLeaderEpoch.code() || c == E::UnknownLeaderEpoch.code() => {
            NOT_COORDINATOR
        }
        c => c,
    }
}

/// One uncompressed transactional batch of producer `producer_id` (Kafka's runtime builds
/// it with `MemoryRecords.builder(..., producerId, producerEpoch, NO_SEQUENCE, true, ...)`):
/// base sequence -1, since coordinator writes are not deduplicated by sequence.
fn build_transactional_batch(
    records: impl IntoIterator<Item = (Option<bytes::Bytes>, Option<bytes::Bytes>)>,
    producer_id: i64,
    producer_epoch: i16,
    leader_epoch: i32,
    timestamp_ms: i64,
) -> Result<BytesMut, String> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let recs: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: leader_epoch,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol starts a new batch whenever `offset - sequence` changes; keeping
            // it constant makes one batch whose base sequence is -1.
            sequence: i as i32 - 1,
            timestamp: timestamp_ms,
            key,
            value,
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    //! The runtime with a shard that is not a group shard: a key → counter map over its own
    //! internal topic, with parked requests ("wait for the next add"), timers (expiry) and
    //! metadata — so what the runtime does is shown to depend on the [`CoordinatorShard`]
    //! contract only. Run against a real replica manager and log, with the follower played
    //! by the test (`Partition::follower_fetch` moves the high watermark), and hosted by the
    //! in-memory broker of [`crate::testing`].
    use super::*;
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use nagare_coordinator::runtime::CoordinatorResult;
    use nagare_metadata::topic_config::TopicDefaults;
    use nagare_metadata::{PartitionRegistration, TopicImage, Uuid};
    use nagare_storage::{LogConfig, LogManager};

    const TOPIC: &str = "__counters";
    const ME: i32 = 1;
    const OTHER: i32 = 2;
    const WRITE_TIMEOUT: Duration = Duration::from_millis(800);
    /// The key on_loaded bumps: how many times the shard was loaded, as the log says.
    const LOADS: &str = "__loads";

    /// A counter per key.
    #[derive(Debug, Default)]
    struct CounterShard {
        values: BTreeMap<String, i64>,
        /// Parked `Wait`s: answered by the next `Add` to their key.
        waiting: Vec<(String, RequestToken)>,
        next_token: u64,
        /// Deadline → keys to delete then.
        expiries: BTreeMap<i64, Vec<String>>,
        metadata: i64,
        /// Writes of open transactions by producer id: applied at their COMMIT marker.
        pending: BTreeMap<i64, Vec<CounterRecord>>,
    }

    #[derive(Debug, Clone)]
    enum CounterRequest {
        Add(&'static str, i64),
        Get(&'static str),
        /// Answered with the key's value after the next `Add` to it.
        Wait(&'static str),
        /// Deletes the key `ms` from now.
        ExpireIn(&'static str, i64),
        /// The metadata the shard has.
        Metadata,
        /// Sets the key to the value inside producer `.0`'s transaction (to be sent with
        /// `handle_transactional_on`).
        TxnSet(i64, &'static str, i64),
        /// How many writes producer `.0`'s open transaction holds.
        Pending(i64),
    }

    #[derive(Debug, PartialEq)]
    enum CounterResponse {
        Value(i64),
        Error(i16),
    }

    #[derive(Debug, Clone)]
    struct CounterRecord {
        key: String,
        value: Option<i64>,
    }

    type Result = CoordinatorResult<CounterRecord, CounterResponse>;

    impl CounterShard {
        /// Emits a record, applying it as replay would.
        fn write(&mut self, key: &str, value: Option<i64>, records: &mut Vec<CounterRecord>) {
            let r = CounterRecord {
                key: key.to_string(),
                value,
            };
            self.replay(&r);
            records.push(r);
        }

        fn get(&self, key: &str) -> i64 {
            self.values.get(key).copied().unwrap_or(0)
        }
    }

    impl CoordinatorShard for CounterShard {
        const TOPIC: &'static str = TOPIC;
        const NAME: &'static str = "counter coordinator";
        type Config = ();
        type Record = CounterRecord;
        type DecodeError = String;
        type Request = CounterRequest;
        type Response = CounterResponse;
        type Metadata = i64;
        type Effect = ();

        fn new_shard(_partition: i32, _config: &(), _random_seed: u64) -> Self {
            CounterShard::default()
        }

        fn decode_record(
            key: &[u8],
            value: Option<&[u8]>,
        ) -> std::result::Result<CounterRecord, String> {
            let key = String::from_utf8(key.to_vec()).map_err(|e| e.to_string())?;
            let value = match value {
                None => None,
                Some(v) => Some(i64::from_be_bytes(
                    v.try_into().map_err(|_| "bad value".to_string())?,
                )),
            };
            Ok(CounterRecord { key, value })
        }

        fn encode_record(r: &CounterRecord) -> (Bytes, Option<Bytes>) {
            (
                Bytes::from(r.key.clone()),
                r.value.map(|v| Bytes::copy_from_slice(&v.to_be_bytes())),
            )
        }

        fn replay(&mut self, r: &CounterRecord) {
            match r.value {
                Some(v) => self.values.insert(r.key.clone(), v),
                None => self.values.remove(&r.key),
            };
        }

        fn replay_transactional(&mut self, producer_id: i64, _epoch: i16, r: &CounterRecord) {
            self.pending.entry(producer_id).or_default().push(r.clone());
        }

        fn replay_end_transaction_marker(&mut self, producer_id: i64, _epoch: i16, commit: bool) {
            let writes = self.pending.remove(&producer_id).unwrap_or_default();
            if commit {
                writes.iter().for_each(|r| self.replay(r));
            }
        }

        fn set_metadata(&mut self, metadata: &i64) {
            self.metadata = *metadata;
        }

        fn on_loaded(&mut self, _now_ms: i64) -> Result {
            let mut records = Vec::new();
            self.write(LOADS, Some(self.get(LOADS) + 1), &mut records);
            CoordinatorResult {
                records,
                reply: Reply::None,
                completed: vec![],
            }
        }

        fn handle(&mut self, _ctx: &RequestContext, req: CounterRequest, now_ms: i64) -> Result {
            let mut records = Vec::new();
            let mut completed = Vec::new();
            let reply = match req {
                CounterRequest::Add(k, by) => {
                    let v = self.get(k) + by;
                    self.write(k, Some(v), &mut records);
                    let (done, rest) = std::mem::take(&mut self.waiting)
                        .into_iter()
                        .partition(|(w, _)| w == k);
                    self.waiting = rest;
                    completed = done
                        .into_iter()
                        .map(|(_, t)| (t, CounterResponse::Value(v)))
                        .collect();
                    Reply::Now(CounterResponse::Value(v))
                }
                CounterRequest::Get(k) => Reply::Now(CounterResponse::Value(self.get(k))),
                CounterRequest::Wait(k) => {
                    self.next_token += 1;
                    let t = RequestToken(self.next_token);
                    self.waiting.push((k.to_string(), t));
                    Reply::Deferred(t)
                }
                CounterRequest::ExpireIn(k, ms) => {
                    self.expiries
                        .entry(now_ms + ms)
                        .or_default()
                        .push(k.to_string());
                    Reply::Now(CounterResponse::Value(self.get(k)))
                }
                CounterRequest::Metadata => Reply::Now(CounterResponse::Value(self.metadata)),
                CounterRequest::TxnSet(pid, k, v) => {
                    let r = CounterRecord {
                        key: k.to_string(),
                        value: Some(v),
                    };
                    self.replay_transactional(pid, 0, &r);
                    records.push(r);
                    Reply::Now(CounterResponse::Value(v))
                }
                CounterRequest::Pending(pid) => Reply::Now(CounterResponse::Value(
                    self.pending.get(&pid).map_or(0, |w| w.len() as i64),
                )),
            };
            CoordinatorResult {
                records,
                reply,
                completed,
            }
        }

        fn next_deadline_ms(&self) -> Option<i64> {
            self.expiries.keys().next().copied()
        }

        fn tick(&mut self, now_ms: i64) -> Result {
            let mut records = Vec::new();
            let later = self.expiries.split_off(&(now_ms + 1));
            for k in std::mem::replace(&mut self.expiries, later)
                .into_values()
                .flatten()
            {
                self.write(&k, None, &mut records);
            }
            CoordinatorResult {
                records,
                reply: Reply::None,
                completed: vec![],
            }
        }

        fn unload(&mut self) -> Vec<(RequestToken, CounterResponse)> {
            // Leaves the parked requests to the runtime (NOT_COORDINATOR).
            self.waiting.clear();
            self.expiries.clear();
            Vec::new()
        }

        fn error_response(_: &CounterRequest, _: &RequestContext, code: i16) -> CounterResponse {
            CounterResponse::Error(code)
        }
    }

    type Runtime = CoordinatorRuntime<CounterShard>;
    use CounterRequest::*;
    use CounterResponse::*;

    /// An image with a one-partition `__counters` on replicas [ME, OTHER].
    fn image(leader: i32, epoch: i32, isr: &[i32]) -> MetadataImage {
        let id = Uuid::from_u128(9);
        let reg = PartitionRegistration {
            replicas: vec![ME, OTHER],
            isr: isr.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
        };
        let mut img = MetadataImage::empty();
        img.offset = epoch as i64;
        img.topics_by_id.insert(
            id,
            Arc::new(TopicImage {
                name: TOPIC.to_string(),
                id,
                partitions: [(0, reg)].into(),
            }),
        );
        img.topic_ids.insert(TOPIC.to_string(), id);
        img
    }

    struct Node {
        _dir: tempfile::TempDir,
        rm: Arc<ReplicaManager>,
        rt: Arc<Runtime>,
        defaults: TopicDefaults,
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().expect("tempdir");
            let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), 0)
                .expect("open logs");
            let rm = Arc::new(ReplicaManager::open(ME, logs));
            tokio::spawn(rm.clone().run_group_commit());
            let rt = Arc::new(Runtime::new(rm.clone(), (), WRITE_TIMEOUT));
            Node {
                _dir: dir,
                rm,
                rt,
                defaults: TopicDefaults::from_broker(|_| None),
            }
        }

        /// Applies `img` as the broker does: replica manager first, then the runtime.
        fn apply(&self, img: &MetadataImage) {
            let delta = self.rm.apply_image(img, &self.defaults);
            self.rt.on_image(&delta, img, ME);
        }

        fn partition(&self) -> Arc<Partition> {
            self.rm.partition(TOPIC, 0).expect("hosted")
        }

        /// The follower fetches up to the leader's log end: the HW follows.
        fn follower_catches_up(&self) {
            let p = self.partition();
            p.follower_fetch(OTHER, p.log_end_offset(), now_ms())
                .expect("follower fetch");
        }

        /// Waits until shard 0 is loaded and its on_loaded write committed.
        async fn wait_loaded(&self) {
            for _ in 0..500 {
                if self.rt.loaded_shards() == vec![0] {
                    self.follower_catches_up();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("shard never loaded");
        }

        async fn send(&self, req: CounterRequest) -> PendingReply<CounterResponse> {
            self.rt.handle_on(0, RequestContext::default(), req).await
        }

        /// Sends `req` and answers once the follower has caught up.
        async fn call(&self, req: CounterRequest) -> CounterResponse {
            let pending = self.send(req).await;
            self.follower_catches_up();
            pending.await
        }
    }

    /// Polls a pending reply for `ms`: `None` if still waiting.
    async fn within(p: &mut PendingReply<CounterResponse>, ms: u64) -> Option<CounterResponse> {
        tokio::time::timeout(Duration::from_millis(ms), p)
            .await
            .ok()
    }

    /// Timers fire at their deadline, not at the next tick of a fixed-period timer (the
    /// 100 ms tick this replaced made expiries up to 100 ms late, 50 ms on average).
    #[tokio::test]
    async fn timers_fire_at_their_deadline() {
        let node = Node::new();
        node.apply(&image(ME, 0, &[ME, OTHER]));
        node.wait_loaded().await;
        tokio::spawn(Runtime::run_timers(Arc::downgrade(&node.rt)));
        const DELAY_MS: i64 = 30;
        let mut late = Vec::new();
        for _ in 0..7 {
            // Let the timer task fall into its longest sleep first: the new deadline must
            // wake it.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert_eq!(node.call(Add("k", 1)).await, Value(1));
            let set = Instant::now();
            assert_eq!(node.call(ExpireIn("k", DELAY_MS)).await, Value(1));
            loop {
                if node.call(Get("k")).await == Value(0) {
                    break;
                }
                assert!(
                    set.elapsed() < Duration::from_secs(2),
                    "the timer never fired"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            late.push(set.elapsed().as_millis() as i64 - DELAY_MS);
        }
        late.sort_unstable();
        assert!(late[0] >= -2, "fired early: {late:?}");
        assert!(late[late.len() / 2] < 20, "median lateness {late:?} ms");
    }

    #[tokio::test]
    async fn loads_commits_parks_times_out_and_unloads_any_shard() {
        let node = Node::new();
        node.apply(&image(ME, 0, &[ME, OTHER]));
        assert_eq!(node.rt.loading_shards(), vec![0]);
        assert_eq!(
            node.send(Get("a")).await.await,
            Error(COORDINATOR_LOAD_IN_PROGRESS)
        );
        node.wait_loaded().await;
        assert_eq!(node.call(Get(LOADS)).await, Value(1));

        // A write is in the leader's log, but its reply waits for the high watermark.
        let mut add = node.send(Add("a", 5)).await;
        assert!(
            within(&mut add, 300).await.is_none(),
            "replied before the HW"
        );
        node.follower_catches_up();
        assert_eq!(within(&mut add, 2000).await, Some(Value(5)));

        // A parked request is answered by the write that completes it, once that write is
        // committed.
        let mut wait = node.send(Wait("a")).await;
        assert!(within(&mut wait, 100).await.is_none());
        let mut add = node.send(Add("a", 1)).await;
        assert!(
            within(&mut wait, 200).await.is_none(),
            "released before the HW"
        );
        node.follower_catches_up();
        assert_eq!(within(&mut add, 2000).await, Some(Value(6)));
        assert_eq!(within(&mut wait, 2000).await, Some(Value(6)));

        // No commit within the write timeout: COORDINATOR_NOT_AVAILABLE. The record stays in
        // the leader's log and is committed once the follower catches up.
        let started = Instant::now();
        assert_eq!(
            node.send(Add("b", 2)).await.await,
            Error(COORDINATOR_NOT_AVAILABLE)
        );
        assert!(started.elapsed() >= WRITE_TIMEOUT, "timed out early");
        assert_eq!(node.call(Get("b")).await, Value(2));

        // Timers: the tick task's call fires due expiries, whose records are written too.
        assert_eq!(node.call(ExpireIn("b", 0)).await, Value(2));
        tokio::time::sleep(Duration::from_millis(5)).await;
        node.rt.tick().await;
        assert_eq!(node.call(Get("b")).await, Value(0));

        // Metadata reaches the shard before its next request.
        node.rt.set_metadata(7);
        assert_eq!(node.call(Metadata).await, Value(7));

        // Leadership moves away: a parked request gets NOT_COORDINATOR, the shard is gone.
        let mut wait = node.send(Wait("a")).await;
        node.apply(&image(OTHER, 1, &[ME, OTHER]));
        assert_eq!(within(&mut wait, 2000).await, Some(Error(NOT_COORDINATOR)));
        assert!(node.rt.owned_shards().is_empty());
        assert_eq!(node.send(Get("a")).await.await, Error(NOT_COORDINATOR));

        // Leader again: the shard is replayed from the log (the expiry's tombstone included)
        // and loaded once more.
        node.apply(&image(ME, 2, &[ME, OTHER]));
        assert_eq!(
            node.send(Get("a")).await.await,
            Error(COORDINATOR_LOAD_IN_PROGRESS)
        );
        node.wait_loaded().await;
        assert_eq!(node.call(Get("a")).await, Value(6));
        assert_eq!(node.call(Get("b")).await, Value(0));
        assert_eq!(node.call(Get(LOADS)).await, Value(2));
        assert_eq!(node.call(Metadata).await, Value(7));
    }

    /// The control records of the partition: (producer id, commit).
    fn markers(p: &Partition) -> Vec<(i64, bool)> {
        let mut out = Vec::new();
        p.replay_records(|r| {
            if r.control {
                let t = r.key.as_deref().and_then(control_record_type);
                out.push((r.producer_id, t == Some(CONTROL_COMMIT)));
            }
        })
        .expect("replay");
        out
    }

    #[tokio::test]
    async fn transactional_writes_wait_for_their_marker_and_reload_replays_them() {
        let node = Node::new();
        node.apply(&image(ME, 0, &[ME, OTHER]));
        node.wait_loaded().await;
        let ctx = RequestContext::default();
        // Producer 7 sets a, producer 8 sets b, producer 9 sets c: all pending.
        for (pid, k, v) in [(7, "a", 5), (8, "b", 6), (9, "c", 7)] {
            let pending = node
                .rt
                .handle_transactional_on(0, ctx.clone(), TxnSet(pid, k, v), pid, 0)
                .await;
            node.follower_catches_up();
            assert_eq!(pending.await, Value(v));
        }
        assert_eq!(
            node.call(Get("a")).await,
            Value(0),
            "visible before its commit"
        );
        assert_eq!(node.call(Pending(7)).await, Value(1));

        // COMMIT for 7, ABORT for 8, through the serialised write path: answered once the
        // marker is committed (the follower has to catch up first).
        let rt = node.rt.clone();
        let commit = tokio::spawn(async move {
            rt.complete_transaction(0, 7, 0, 3, true, WRITE_TIMEOUT)
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!commit.is_finished(), "answered before the high watermark");
        node.follower_catches_up();
        assert_eq!(commit.await.expect("join"), Ok(()));
        let rt = node.rt.clone();
        let abort = tokio::spawn(async move {
            rt.complete_transaction(0, 8, 0, 3, false, WRITE_TIMEOUT)
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        node.follower_catches_up();
        assert_eq!(abort.await.expect("join"), Ok(()));
        assert_eq!(node.call(Get("a")).await, Value(5));
        assert_eq!(node.call(Get("b")).await, Value(0));
        assert_eq!(node.call(Pending(8)).await, Value(0));
        // Both markers are control batches of their producers in the partition.
        assert_eq!(markers(&node.partition()), vec![(7, true), (8, false)]);
        // Not committed in time: COORDINATOR_NOT_AVAILABLE.
        assert_eq!(
            node.rt
                .complete_transaction(0, 9, 0, 3, false, Duration::from_millis(50))
                .await,
            Err(COORDINATOR_NOT_AVAILABLE)
        );
        node.follower_catches_up();

        // Producer 7's marker at epoch 1 fences its epoch 0: a zombie's write is refused
        // before the shard applies it (no reload), while epoch 1 writes.
        let rt = node.rt.clone();
        let bump = tokio::spawn(async move {
            rt.complete_transaction(0, 7, 1, 3, false, WRITE_TIMEOUT)
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        node.follower_catches_up();
        assert_eq!(bump.await.expect("join"), Ok(()));
        let zombie = node
            .rt
            .handle_transactional_on(0, ctx.clone(), TxnSet(7, "z", 1), 7, 0)
            .await;
        assert_eq!(zombie.await, Error(47));
        assert_eq!(node.rt.loaded_shards(), vec![0], "no reload");
        assert_eq!(node.call(Pending(7)).await, Value(0));
        let current = node
            .rt
            .handle_transactional_on(0, ctx.clone(), TxnSet(7, "z", 2), 7, 1)
            .await;
        node.follower_catches_up();
        assert_eq!(current.await, Value(2));
        assert_eq!(node.call(Pending(7)).await, Value(1));

        // Reload: the transactional batches and markers replay to the same state, and 9's
        // transaction (aborted above) stays aborted.
        node.apply(&image(OTHER, 1, &[ME, OTHER]));
        assert_eq!(
            node.rt
                .complete_transaction(0, 7, 0, 3, true, WRITE_TIMEOUT)
                .await,
            Err(NOT_COORDINATOR)
        );
        node.apply(&image(ME, 2, &[ME, OTHER]));
        node.wait_loaded().await;
        assert_eq!(node.call(Get("a")).await, Value(5));
        assert_eq!(node.call(Get("b")).await, Value(0));
        assert_eq!(node.call(Get("c")).await, Value(0));
        assert_eq!(node.call(Pending(9)).await, Value(0));
        // A transaction left open across the reload is still pending, then commits.
        let pending = node
            .rt
            .handle_transactional_on(0, ctx.clone(), TxnSet(10, "d", 1), 10, 0)
            .await;
        node.follower_catches_up();
        assert_eq!(pending.await, Value(1));
        node.apply(&image(OTHER, 3, &[ME, OTHER]));
        node.apply(&image(ME, 4, &[ME, OTHER]));
        node.wait_loaded().await;
        assert_eq!(node.call(Pending(10)).await, Value(1));
        let rt = node.rt.clone();
        let commit = tokio::spawn(async move {
            rt.complete_transaction(0, 10, 0, 4, true, WRITE_TIMEOUT)
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        node.follower_catches_up();
        assert_eq!(commit.await.expect("join"), Ok(()));
        assert_eq!(node.call(Get("d")).await, Value(1));
    }

    #[tokio::test]
    async fn hosted_by_a_broker_routes_keys_to_their_partitions() {
        let t = crate::testing::TestBroker::start().await;
        t.create_topic(TOPIC, 3).await;
        let rt = Arc::new(Runtime::new(t.broker.replicas.clone(), (), WRITE_TIMEOUT));
        let image = t.broker.image();
        rt.on_image(
            &MetadataDelta::between(&MetadataImage::empty(), &image),
            &image,
            1,
        );
        assert_eq!(rt.owned_shards(), vec![0, 1, 2]);
        for _ in 0..500 {
            if rt.loaded_shards().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(rt.loaded_shards(), vec![0, 1, 2]);
        let ctx = RequestContext::default();
        for (i, key) in ["x", "y", "z", "w"].into_iter().enumerate() {
            // Kafka's placement: abs(javaHashCode(key)) % partitions.
            let p = Runtime::shard_of(&image, key).expect("topic exists");
            assert_eq!(p, nagare_coordinator::partition_for(key, 3));
            let by = i as i64 + 1;
            let r = rt.handle(&image, key, ctx.clone(), Add(key, by)).await;
            assert_eq!(r.await, Value(by), "{key} on partition {p}");
            let r = rt.handle_on(p, ctx.clone(), Get(key)).await;
            assert_eq!(r.await, Value(by));
        }
        // No such topic: COORDINATOR_NOT_AVAILABLE.
        let r = rt
            .handle(&MetadataImage::empty(), "x", ctx.clone(), Get("x"))
            .await;
        assert_eq!(r.await, Error(COORDINATOR_NOT_AVAILABLE));
    }
}
