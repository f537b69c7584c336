//! The group coordinator's async shell around `nagare-coordinator`'s sans-I/O shards — Kafka
//! 4.x's `CoordinatorRuntime` (KIP-848) for the partitions of `__consumer_offsets` this broker
//! leads.
//!
//! - **Loading.** A shard is loaded only once this broker is the partition's leader in the
//!   metadata image *and* the replica manager has put the partition in the leader role at that
//!   epoch (a leader's log is never truncated, a follower's may still be). The partition is
//!   replayed on a blocking task; meanwhile requests get COORDINATOR_LOAD_IN_PROGRESS (14).
//! - **Writes.** Each request is handled under its shard's lock; the records it produces are
//!   appended to the partition as one batch, and every reply (including parked
//!   JoinGroup/SyncGroup answers completed by it, and replies of results that wrote nothing)
//!   is released only once the partition's high watermark has passed everything appended so
//!   far — Kafka's runtime completes write events when the HW reaches their offset. The local
//!   fsync comes first (group commit), so a single node (HW = log end) keeps its durability.
//! - **Acks.** As Kafka 4's `CoordinatorPartitionWriter`, a write is appended with acks=1
//!   semantics (no `min.insync.replicas` check) and its reply waits for the high watermark,
//!   which moves only when every ISR member has the records: an ISR shrunk below
//!   `min.insync.replicas` does not stop offset commits (the old ZooKeeper-era coordinator's
//!   acks=-1 did).
//! - **Failures.** As Kafka's `GroupCoordinatorService.handleOperationException` maps them:
//!   lost leadership or a storage error → NOT_COORDINATOR (16); a commit that does not reach
//!   the high watermark within `offsets.commit.timeout.ms` → COORDINATOR_NOT_AVAILABLE (15). A shard
//!   whose in-memory state may be ahead of the log (the append did not happen, or the log
//!   failed) is unloaded and loaded again from the log — the place of Kafka's snapshot-registry
//!   revert. A timed-out commit leaves the records in the leader's log, which a leader never
//!   truncates, so the state still matches the log.
//! - **Unloading.** When leadership moves away (or the epoch changes) the shard is dropped;
//!   parked requests get NOT_COORDINATOR and clients look the coordinator up again.
//!
//! Time is driven by a tick task.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nagare_protocol::batch_builder::build_batch;
use parking_lot::Mutex as SyncMutex;
use tokio::sync::{oneshot, Mutex};

use nagare_coordinator::{
    error_response, CoordinatorRecord, CoordinatorResult, GroupCoordinatorConfig,
    GroupCoordinatorShard, GroupRequest, GroupResponse, Reply as ShardReply, RequestContext,
    RequestToken, TopicsImage,
};
use nagare_metadata::MetadataImage;

use crate::replica_manager::{
    now_ms, AppendEntry, AppendOrigin, Partition, ReplicaManager, ReplicationOutcome, RequiredAcks,
};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// COORDINATOR_LOAD_IN_PROGRESS
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
/// COORDINATOR_NOT_AVAILABLE
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
/// NOT_COORDINATOR
const NOT_COORDINATOR: i16 = 16;

/// Pause before loading a shard again after its log could not be read.
const LOAD_RETRY_BACKOFF: Duration = Duration::from_millis(1000);

/// Pause before reloading a shard after a failed write, so that a write failing at every
/// load (e.g. `onLoaded` records on a failing log) cannot spin.
const RELOAD_BACKOFF: Duration = Duration::from_millis(500);

/// A parked JoinGroup/SyncGroup: where its answer goes, and the request itself so that an
/// error answer of the right shape can be built if its completion is not committed.
struct Parked {
    tx: oneshot::Sender<GroupResponse>,
    req: GroupRequest,
    ctx: RequestContext,
}

struct ShardState {
    shard: GroupCoordinatorShard,
    parked: HashMap<RequestToken, Parked>,
    /// The version of the topics image the shard has seen.
    topics_version: u64,
}

impl ShardState {
    /// Gives the shard the latest topics image if it has not seen it yet (KIP-848 groups
    /// recompute their target assignment when their subscribed topics change).
    fn refresh_topics(&mut self, topics: &(u64, Arc<TopicsImage>)) {
        if self.topics_version != topics.0 {
            self.shard.set_topics(topics.1.as_ref().clone());
            self.topics_version = topics.0;
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
            let _ = p.tx.send(error_response(&p.req, &p.ctx, NOT_COORDINATOR));
        }
    }
}

struct ShardHandle {
    /// Identifies this incarnation of the shard (a reload gets a new one).
    id: u64,
    /// The leader epoch the shard was loaded in; it serves only while the partition is led
    /// here in this epoch.
    epoch: i32,
    partition: Arc<Partition>,
    /// Set when the shard is unloaded; requests that were waiting for its lock then answer
    /// NOT_COORDINATOR.
    dead: AtomicBool,
    state: Mutex<ShardState>,
}

impl ShardHandle {
    /// Whether the shard may serve: not unloaded, and its partition still led here in the
    /// epoch it was loaded in.
    fn serving(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
            && self.partition.is_leader()
            && self.partition.epoch() == self.epoch
    }
}

/// One `__consumer_offsets` partition led here.
enum Slot {
    /// Being replayed (requests get COORDINATOR_LOAD_IN_PROGRESS).
    Loading { id: u64, epoch: i32 },
    /// Serving.
    Loaded(Arc<ShardHandle>),
}

impl Slot {
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

/// The coordinator runtime of this broker.
pub struct GroupCoordinator {
    replicas: Arc<ReplicaManager>,
    config: GroupCoordinatorConfig,
    shards: SyncMutex<HashMap<i32, Slot>>,
    next_id: AtomicU64,
    /// The cluster's topics from the latest metadata image, with a version number.
    topics: SyncMutex<(u64, Arc<TopicsImage>)>,
    /// The runtime to spawn loads and unloads on (image listeners run on their own thread).
    runtime: Option<tokio::runtime::Handle>,
}

/// A pending answer: resolves once the request's effects are committed.
pub type PendingReply = std::pin::Pin<Box<dyn std::future::Future<Output = GroupResponse> + Send>>;

impl GroupCoordinator {
    /// A coordinator with no shards yet. Call it inside the Tokio runtime that should run
    /// shard loading.
    pub fn new(replicas: Arc<ReplicaManager>, config: GroupCoordinatorConfig) -> Self {
        GroupCoordinator {
            replicas,
            config,
            shards: SyncMutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            topics: SyncMutex::new((0, Arc::new(TopicsImage::default()))),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Starts loading shards for the `__consumer_offsets` partitions this node now leads
    /// (in the image and in the replica manager, at the image's epoch) and unloads the
    /// others — looking only at the partitions `delta` changed, since no other can have
    /// changed hands. Call after [`ReplicaManager::apply_delta`] of the same delta.
    pub fn on_image(
        self: &Arc<Self>,
        delta: &nagare_metadata::MetadataDelta,
        image: &MetadataImage,
        node_id: i32,
    ) {
        // The topics image (names, ids, partition counts) changes only when topics come or
        // go or gain partitions.
        let topics_changed = !delta.created_topics.is_empty()
            || !delta.deleted_topics.is_empty()
            || delta
                .partitions
                .iter()
                .any(|p| p.old.is_none() || p.new.is_none());
        if topics_changed {
            let topics = TopicsImage {
                topics: image
                    .topics_by_id
                    .values()
                    .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                    .collect(),
            };
            let mut current = self.topics.lock();
            if *current.1 != topics {
                *current = (current.0 + 1, Arc::new(topics));
            }
        }
        let changed: std::collections::HashSet<i32> = delta
            .partitions_of(OFFSETS_TOPIC)
            .map(|p| p.partition)
            .collect();
        if changed.is_empty() {
            return;
        }
        // Partition -> leader epoch of every changed partition to serve.
        let mut led: HashMap<i32, (i32, Arc<Partition>)> = HashMap::new();
        if let Some(t) = image.topic(OFFSETS_TOPIC) {
            for i in &changed {
                let Some(reg) = t.partitions.get(i) else {
                    continue;
                };
                if reg.leader != node_id {
                    continue;
                }
                let Some(partition) = self.replicas.partition(OFFSETS_TOPIC, *i) else {
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
                tracing::info!(partition = p, "unloaded group coordinator shard");
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
    fn unload_later(&self, h: Arc<ShardHandle>) {
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
            None => tracing::error!(partition = p, "no runtime to load the coordinator shard on"),
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
            let res = tokio::task::spawn_blocking(move || load_shard(&part, config))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            match res {
                Ok(shard) => break shard,
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "cannot load group coordinator shard; retrying");
                    tokio::time::sleep(LOAD_RETRY_BACKOFF).await;
                }
            }
        };
        let topics = self.topics.lock().clone();
        let h = Arc::new(ShardHandle {
            id,
            epoch,
            partition: partition.clone(),
            dead: AtomicBool::new(false),
            state: Mutex::new(ShardState {
                shard,
                parked: HashMap::new(),
                topics_version: topics.0,
            }),
        });
        // Locked before it is published, so on_loaded's records precede any request's.
        let Ok(mut st) = h.state.try_lock() else {
            return;
        };
        st.shard.set_topics(topics.1.as_ref().clone());
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
            partition = p,
            epoch,
            load_ms = started.elapsed().as_millis() as u64,
            log_end = partition.log_end_offset(),
            "loaded group coordinator shard"
        );
        let pending = self.commit(&h, &mut st, result, None);
        drop(st);
        pending.await;
    }

    /// The `__consumer_offsets` partition of `group_id`, if the topic exists.
    pub fn shard_of(image: &MetadataImage, group_id: &str) -> Option<i32> {
        let n = image.topic(OFFSETS_TOPIC)?.partitions.len() as i32;
        Some(nagare_coordinator::partition_for(group_id, n))
    }

    /// Handles one group request on the shard owning `group_id`. Runs the decision now (in
    /// request order) and returns the answer to await.
    pub async fn handle(
        self: &Arc<Self>,
        image: &MetadataImage,
        group_id: &str,
        ctx: RequestContext,
        req: GroupRequest,
    ) -> PendingReply {
        let Some(p) = Self::shard_of(image, group_id) else {
            let resp = error_response(&req, &ctx, COORDINATOR_NOT_AVAILABLE);
            return Box::pin(async move { resp });
        };
        self.handle_on(p, ctx, req).await
    }

    /// Handles a request on shard `p`.
    pub async fn handle_on(
        self: &Arc<Self>,
        p: i32,
        ctx: RequestContext,
        req: GroupRequest,
    ) -> PendingReply {
        let handle = match self.shards.lock().get(&p) {
            Some(Slot::Loaded(h)) => Ok(h.clone()),
            Some(Slot::Loading { .. }) => Err(COORDINATOR_LOAD_IN_PROGRESS),
            None => Err(NOT_COORDINATOR),
        };
        let handle = match handle {
            Ok(h) => h,
            Err(code) => {
                let resp = error_response(&req, &ctx, code);
                return Box::pin(async move { resp });
            }
        };
        let topics = self.topics.lock().clone();
        let mut st = handle.state.lock().await;
        if !handle.serving() {
            let resp = error_response(&req, &ctx, NOT_COORDINATOR);
            return Box::pin(async move { resp });
        }
        st.refresh_topics(&topics);
        let result = st.shard.handle(&ctx, req.clone(), now_ms());
        self.commit(&handle, &mut st, result, Some((req, ctx)))
    }

    /// Fires due timers of every shard.
    pub async fn tick(self: &Arc<Self>) {
        let handles: Vec<Arc<ShardHandle>> = self
            .shards
            .lock()
            .values()
            .filter_map(|s| match s {
                Slot::Loaded(h) => Some(h.clone()),
                Slot::Loading { .. } => None,
            })
            .collect();
        let now = now_ms();
        let topics = self.topics.lock().clone();
        for h in handles {
            let mut st = h.state.lock().await;
            if !h.serving() {
                continue;
            }
            st.refresh_topics(&topics);
            if st.shard.next_deadline_ms().map(|d| d > now).unwrap_or(true) {
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
    fn fail_shard(self: &Arc<Self>, h: &Arc<ShardHandle>, st: &mut ShardState) {
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
                partition = p,
                "reloading group coordinator shard from its log"
            );
            self.spawn_load(p, id, h.epoch, h.partition.clone(), RELOAD_BACKOFF);
        }
    }

    /// Appends a result's records and returns the reply, released once the high watermark
    /// has passed everything appended so far; parked replies completed by it are released at
    /// the same point. `request` is the request handled (None for ticks and loading).
    fn commit(
        self: &Arc<Self>,
        h: &Arc<ShardHandle>,
        st: &mut ShardState,
        result: CoordinatorResult,
        request: Option<(GroupRequest, RequestContext)>,
    ) -> PendingReply {
        let CoordinatorResult {
            records,
            reply,
            completed,
        } = result;
        let completed: Vec<(Parked, GroupResponse)> = completed
            .into_iter()
            .filter_map(|(token, resp)| st.parked.remove(&token).map(|p| (p, resp)))
            .collect();
        let partition = h.partition.clone();
        let wrote = !records.is_empty();
        // Write: the batch goes into the leader's log at the shard's epoch.
        let written = if !wrote {
            Ok(())
        } else {
            // Kafka 4 appends coordinator records with acks=1 (no min.insync.replicas check)
            // and completes the write when the high watermark passes it. The replica manager
            // wakes the followers long-polling this partition.
            append(&self.replicas, &partition, h.epoch, &records).map_err(|e| {
                tracing::error!(tp = %partition.tp, error = %e, "group coordinator append failed");
                NOT_COORDINATOR // Kafka maps KAFKA_STORAGE_ERROR / NOT_LEADER so
            })
        };
        if let Err(code) = written {
            // The shard already applied records that are not in the log.
            for (p, _) in completed {
                let _ = p.tx.send(error_response(&p.req, &p.ctx, code));
            }
            self.fail_shard(h, st);
            let resp = fail_with(&request, code);
            return Box::pin(async move { resp });
        }
        let reply: Option<Result<GroupResponse, oneshot::Receiver<GroupResponse>>> = match reply {
            ShardReply::Now(r) => Some(Ok(r)),
            ShardReply::Deferred(token) => {
                let (tx, rx) = oneshot::channel();
                if let Some((req, ctx)) = &request {
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
            ShardReply::None => None,
        };
        // Everything appended so far, including this batch, must be committed before any
        // reply that reflects it is sent (even when this result wrote nothing).
        let required = partition.log_end_offset();
        let commit_timeout = Duration::from_millis(self.config.offsets_commit_timeout_ms);
        // The acks=all wait (fsync, then the high watermark), registered now so that one
        // group-commit round serves every shard's writes.
        let committed = self.replicas.wait_committed(
            &partition,
            required,
            h.epoch,
            commit_timeout,
            AppendOrigin::Coordinator,
        );
        let this = self.clone();
        let h = h.clone();
        // The wait runs on its own task, so that the answers this result completed for other
        // members are released even if this request's connection goes away meanwhile.
        let (code_tx, code_rx) = oneshot::channel::<i16>();
        tokio::spawn(async move {
            let code = match committed.await {
                // The HW passed: committed on every ISR member. (Below min.insync.replicas
                // is not reported for coordinator writes: acks=1 does not check it.)
                ReplicationOutcome::Committed | ReplicationOutcome::BelowMinIsr => 0,
                ReplicationOutcome::TimedOut => COORDINATOR_NOT_AVAILABLE,
                ReplicationOutcome::NotLeader => NOT_COORDINATOR,
                ReplicationOutcome::StorageError(e) => {
                    tracing::error!(tp = %partition.tp, error = %e, "group coordinator fsync failed");
                    NOT_COORDINATOR
                }
            };
            for (p, resp) in completed {
                let resp = if code == 0 {
                    resp
                } else {
                    error_response(&p.req, &p.ctx, code)
                };
                let _ = p.tx.send(resp);
            }
            if code == NOT_COORDINATOR && h.serving() {
                // The log failed under a shard that still serves: start again from the log.
                let mut st = h.state.lock().await;
                this.fail_shard(&h, &mut st);
            }
            let _ = code_tx.send(code);
        });
        Box::pin(async move {
            let code = code_rx.await.unwrap_or(NOT_COORDINATOR);
            if code != 0 {
                return fail_with(&request, code);
            }
            match reply {
                Some(Ok(r)) => r,
                // The shard was dropped without answering (cannot happen through unload).
                Some(Err(rx)) => rx
                    .await
                    .unwrap_or_else(|_| fail_with(&request, NOT_COORDINATOR)),
                None => fail_with(&request, 0),
            }
        })
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

    /// Shard numbers loaded or being loaded here (ListGroups asks all of them, so that a
    /// loading one makes the answer COORDINATOR_LOAD_IN_PROGRESS, as in Kafka).
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

/// The answer to `request` failing with `code` (ticks and loads have no one to answer).
fn fail_with(request: &Option<(GroupRequest, RequestContext)>, code: i16) -> GroupResponse {
    match request {
        Some((req, ctx)) => error_response(req, ctx, code),
        None => GroupResponse::Heartbeat(Default::default()),
    }
}

/// Replays a partition into a fresh shard.
fn load_shard(
    partition: &Partition,
    config: GroupCoordinatorConfig,
) -> Result<GroupCoordinatorShard, String> {
    let mut shard = GroupCoordinatorShard::new(partition.tp.partition, config);
    partition
        .replay_records(|r| {
            let Some(key) = r.key.filter(|_| !r.control) else {
                return;
            };
            match CoordinatorRecord::decode(&key, r.value.as_deref()) {
                Ok(rec) => shard.replay(&rec),
                // KIP-848 / share-group records this shard does not know: skip, as Kafka skips
                // unknown record types.
                Err(e) => {
                    tracing::debug!(offset = r.offset, error = %e, "skipping coordinator record")
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(shard)
}

/// Appends coordinator records as one batch in leader epoch `epoch`, as leader of that epoch
/// (Kafka's `AppendOrigin.COORDINATOR`, acks=1).
fn append(
    replicas: &ReplicaManager,
    partition: &Partition,
    epoch: i32,
    records: &[CoordinatorRecord],
) -> Result<(), String> {
    let now = now_ms();
    let buf = build_batch(
        records
            .iter()
            .map(|r| (Some(r.encode_key()), r.encode_value())),
        epoch,
        now,
    )
    .map_err(|e| e.to_string())?;
    let entry = AppendEntry {
        topic: partition.tp.topic.clone(),
        partition: partition.tp.partition,
        current_leader_epoch: epoch,
        records: buf,
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
        Some(r) => r.error.map_or(Ok(()), |e| Err(e.to_string())),
        None => Err("no append result".to_string()),
    }
}

#[cfg(test)]
mod tests {
    //! The runtime against a real replica manager and log, with the follower played by the
    //! test (`Partition::follower_fetch` moves the high watermark).
    use super::*;
    use std::collections::BTreeMap;

    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetCommitRequest, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use nagare_metadata::records::ConfigResource;
    use nagare_metadata::topic_config::TopicDefaults;
    use nagare_metadata::{PartitionRegistration, TopicImage, Uuid};
    use nagare_storage::{LogConfig, LogManager};

    const ME: i32 = 1;
    const OTHER: i32 = 2;
    /// `offsets.commit.timeout.ms` of the test coordinator.
    const TEST_COMMIT_TIMEOUT_MS: u64 = 1500;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_string())
    }

    /// An image with a one-partition `__consumer_offsets` on replicas [ME, OTHER].
    fn image(leader: i32, epoch: i32, isr: &[i32], min_isr: i32) -> MetadataImage {
        let id = Uuid::from_u128(7);
        let mut partitions = BTreeMap::new();
        partitions.insert(
            0,
            PartitionRegistration {
                replicas: vec![ME, OTHER],
                isr: isr.to_vec(),
                leader,
                leader_epoch: epoch,
                partition_epoch: epoch,
            },
        );
        let mut img = MetadataImage::empty();
        img.offset = epoch as i64;
        img.topics_by_id.insert(
            id,
            Arc::new(TopicImage {
                name: OFFSETS_TOPIC.to_string(),
                id,
                partitions,
            }),
        );
        img.topic_ids.insert(OFFSETS_TOPIC.to_string(), id);
        // The topic the offsets are committed for (the shard checks it exists).
        let t = Uuid::from_u128(8);
        let reg = PartitionRegistration {
            replicas: vec![ME],
            isr: vec![ME],
            leader: ME,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        img.topics_by_id.insert(
            t,
            Arc::new(TopicImage {
                name: "t".to_string(),
                id: t,
                partitions: [(0, reg)].into(),
            }),
        );
        img.topic_ids.insert("t".to_string(), t);
        img.configs.insert(
            (ConfigResource::Topic, OFFSETS_TOPIC.to_string()),
            [("min.insync.replicas".to_string(), min_isr.to_string())].into(),
        );
        img
    }

    struct Node {
        _dir: tempfile::TempDir,
        rm: Arc<ReplicaManager>,
        gc: Arc<GroupCoordinator>,
        defaults: TopicDefaults,
    }

    impl Node {
        fn new() -> Node {
            let dir = tempfile::tempdir().expect("tempdir");
            let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), 0)
                .expect("open logs");
            let rm = Arc::new(ReplicaManager::open(ME, logs));
            tokio::spawn(rm.clone().run_group_commit());
            let gc = Arc::new(GroupCoordinator::new(
                rm.clone(),
                GroupCoordinatorConfig {
                    offsets_commit_timeout_ms: TEST_COMMIT_TIMEOUT_MS,
                    ..Default::default()
                },
            ));
            Node {
                _dir: dir,
                rm,
                gc,
                defaults: TopicDefaults::from_broker(|_| None),
            }
        }

        /// Applies `img` as the broker does: replica manager first, then the coordinator.
        fn apply(&self, img: &MetadataImage) {
            let delta = self.rm.apply_image(img, &self.defaults);
            self.gc.on_image(&delta, img, ME);
        }

        fn partition(&self) -> Arc<Partition> {
            self.rm.partition(OFFSETS_TOPIC, 0).expect("hosted")
        }

        /// The follower fetches up to the leader's log end: the HW follows.
        fn follower_catches_up(&self) {
            let p = self.partition();
            p.follower_fetch(OTHER, p.log_end_offset(), now_ms())
                .expect("follower fetch");
        }

        async fn wait_loaded(&self) {
            for _ in 0..500 {
                if self.gc.loaded_shards() == vec![0] {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("shard never loaded");
        }

        async fn commit(&self, group: &str, offset: i64) -> PendingReply {
            let req = OffsetCommitRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_generation_id_or_member_epoch(-1)
                .with_retention_time_ms(-1)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1)])]);
            self.gc
                .handle_on(0, ctx(8), GroupRequest::OffsetCommit(req))
                .await
        }

        /// Group `group`'s committed offset of t-0 (-1 if none), or the error code.
        async fn fetch(&self, group: &str) -> Result<i64, i16> {
            let req = OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partition_indexes(vec![0])]));
            let pending = self
                .gc
                .handle_on(0, ctx(7), GroupRequest::OffsetFetch(req))
                .await;
            match pending.await {
                GroupResponse::OffsetFetch(r) if r.error_code != 0 => Err(r.error_code),
                GroupResponse::OffsetFetch(r) => Ok(r.topics[0].partitions[0].committed_offset),
                other => panic!("{other:?}"),
            }
        }
    }

    fn ctx(v: i16) -> RequestContext {
        RequestContext {
            api_version: v,
            client_id: "test".into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn commit_code(r: &GroupResponse) -> i16 {
        match r {
            GroupResponse::OffsetCommit(c) => c.topics[0].partitions[0].error_code,
            other => panic!("{other:?}"),
        }
    }

    /// Poll a pending reply once more after `ms`: `None` if still waiting.
    async fn within(p: &mut PendingReply, ms: u64) -> Option<GroupResponse> {
        tokio::time::timeout(Duration::from_millis(ms), p)
            .await
            .ok()
    }

    #[tokio::test]
    async fn replies_wait_for_the_high_watermark_and_fail_over_cleanly() {
        let node = Node::new();
        // Led here, ISR of two: loading, then loaded.
        node.apply(&image(ME, 0, &[ME, OTHER], 1));
        assert_eq!(node.gc.loading_shards(), vec![0]);
        node.wait_loaded().await;

        // A commit is in the leader's log and fsynced, but the follower has not fetched it:
        // no reply until the HW passes it.
        let mut pending = node.commit("g", 42).await;
        if let Some(r) = within(&mut pending, 300).await {
            panic!(
                "replied before the HW: {r:?} (hw {}, leo {})",
                node.partition().high_watermark(),
                node.partition().log_end_offset()
            );
        }
        // Reads wait too (they must not show uncommitted state).
        let fetch = {
            let gc = node.gc.clone();
            tokio::spawn(async move {
                let req = OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(None);
                gc.handle_on(0, ctx(7), GroupRequest::OffsetFetch(req))
                    .await
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!fetch.is_finished(), "a read answered before the HW");
        node.follower_catches_up();
        let r = within(&mut pending, 2000)
            .await
            .expect("reply after the HW");
        assert_eq!(commit_code(&r), 0);
        assert!(matches!(fetch.await, Ok(GroupResponse::OffsetFetch(_))));
        assert_eq!(node.fetch("g").await, Ok(42));

        // Leadership moves away while a commit waits: NOT_COORDINATOR, and the shard is gone.
        let mut pending = node.commit("g", 50).await;
        assert!(within(&mut pending, 100).await.is_none());
        node.apply(&image(OTHER, 1, &[ME, OTHER], 1));
        let r = within(&mut pending, 2000).await.expect("answered");
        assert_eq!(commit_code(&r), NOT_COORDINATOR);
        assert!(node.gc.loaded_shards().is_empty());
        assert_eq!(node.fetch("g").await, Err(NOT_COORDINATOR));

        // Leader again (as a follower it would have truncated the uncommitted 50; here the
        // log keeps it, and a leader's log is the truth). Loading answers
        // COORDINATOR_LOAD_IN_PROGRESS until replayed.
        node.partition()
            .truncate_to(node.partition().high_watermark())
            .expect("truncate");
        node.apply(&image(ME, 2, &[ME, OTHER], 1));
        assert_eq!(node.fetch("g").await, Err(COORDINATOR_LOAD_IN_PROGRESS));
        node.wait_loaded().await;
        node.follower_catches_up();
        assert_eq!(node.fetch("g").await, Ok(42));

        // The ISR shrinks below min.insync.replicas: as Kafka 4's coordinator (acks=1
        // appends), the write still succeeds once the HW (the leader alone) passes it.
        node.apply(&image(ME, 2, &[ME], 2));
        let mut pending = node.commit("h", 7).await;
        let r = within(&mut pending, 2000).await.expect("reply");
        assert_eq!(commit_code(&r), 0, "commit with the ISR below min.insync");
        assert_eq!(node.fetch("h").await, Ok(7));
        assert_eq!(node.fetch("g").await, Ok(42));
        // Two in the ISR again, but the follower does not fetch: the commit gets
        // COORDINATOR_NOT_AVAILABLE after offsets.commit.timeout.ms. Its record stays in the
        // leader's log (a leader never truncates), so it is committed once the follower
        // catches up, as in Kafka.
        node.apply(&image(ME, 2, &[ME, OTHER], 2));
        let started = std::time::Instant::now();
        let r = node.commit("h", 8).await.await;
        assert_eq!(commit_code(&r), COORDINATOR_NOT_AVAILABLE);
        assert!(
            started.elapsed() >= Duration::from_millis(TEST_COMMIT_TIMEOUT_MS),
            "timed out early"
        );
        node.follower_catches_up();
        assert_eq!(node.fetch("h").await, Ok(8));
    }
}
