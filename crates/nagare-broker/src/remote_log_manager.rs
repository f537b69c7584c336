//! The remote log manager (Kafka's `RemoteLogManager`, KIP-405): the thin async shell around
//! `nagare_remote_storage`'s state machine and planner. On the leader of each tiered
//! partition, every `remote.log.manager.task.interval.ms`, it
//!
//! 1. loads the partition's remote log state (the manifest object) when it becomes leader,
//!    claims it with its leader epoch and deletes what earlier leaders left half done;
//! 2. uploads each rolled segment below the last stable offset, once, oldest first, at most
//!    `remote.log.manager.copy.max.bytes.per.second`, persisting COPY_STARTED before and
//!    COPY_FINISHED after the objects;
//! 3. publishes how far the remote log reaches, which is what lets local retention delete
//!    (`replica_manager::TierState`): an unreachable store stops uploads, never writes, and
//!    the local log simply grows until uploads resume;
//! 4. applies the whole log's `retention.*` to remote segments;
//! 5. on every broker that hosted a partition of a deleted topic, deletes its objects.
//!
//! Failures (store down, credentials, a segment file gone) back off exponentially per
//! partition (`remote.log.manager.task.retry.backoff.*`) and restart from the persisted
//! manifest, so a crash or failover at any step leaves no gap and no duplicate.
//!
//! Reads below the local log start ([`RemoteLogManager::read`]) run on the runtime's tasks,
//! never on a network thread, bounded by `remote.log.reader.threads` concurrent reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nagare_metadata::topic_config::TieredTopicConfig;
use nagare_metadata::Uuid;
use nagare_remote_storage::metadata::{
    RemoteLogSegmentId, RemoteLogSegmentMetadata, RemoteSegmentState, TopicIdPartition,
};
use nagare_remote_storage::plan::{self, RateLimiter};
use nagare_remote_storage::{RemoteLogState, RemoteStorageError, RemoteStorageManager};
use parking_lot::{Mutex, RwLock};

use crate::config::TieredConfig;
use crate::replica_manager::{Partition, ReplicaManager};

/// Why a pass over a partition stopped.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    /// The object store or a local file failed.
    #[error(transparent)]
    Storage(#[from] RemoteStorageError),
    /// The state machine refused a step (fenced by a newer leader, or a bug).
    #[error("remote log state: {0}")]
    State(#[from] nagare_remote_storage::StateError),
}

/// Tiered-storage counters and gauges of this broker (Kafka's `BrokerTopicMetrics` remote
/// storage meters, KIP-405/KIP-963, broker-wide), exported by `/metrics`.
#[derive(Debug, Default)]
pub struct RemoteMetrics {
    /// Bytes uploaded (RemoteCopyBytesPerSec).
    pub copy_bytes: AtomicU64,
    /// Segments uploaded (RemoteCopyRequestsPerSec).
    pub copy_requests: AtomicU64,
    /// Failed passes: uploads, deletes or manifest writes that will be retried
    /// (FailedRemoteCopyRequestsPerSec).
    pub copy_failed: AtomicU64,
    /// Bytes read for consumers (RemoteFetchBytesPerSec).
    pub fetch_bytes: AtomicU64,
    /// Remote reads (RemoteFetchRequestsPerSec).
    pub fetch_requests: AtomicU64,
    /// Failed remote reads (FailedRemoteFetchRequestsPerSec).
    pub fetch_failed: AtomicU64,
    /// Remote segments deleted (RemoteDeleteRequestsPerSec).
    pub delete_requests: AtomicU64,
    /// Bytes of rolled local segments below the upload bound not yet uploaded, as of the
    /// last pass (RemoteCopyLagBytes).
    pub copy_lag_bytes: AtomicU64,
    /// Bytes in finished remote segments of partitions led here (RemoteLogSizeBytes).
    pub remote_log_size_bytes: AtomicU64,
}

/// Per-partition progress of the leader's task.
#[derive(Debug)]
struct PartitionTask {
    /// The remote log state as last persisted; `None` forces a reload and claim.
    state: Option<RemoteLogState>,
    /// The leader epoch the state was claimed with.
    epoch: i32,
    /// Consecutive failures (drives the backoff).
    failures: u32,
    /// No attempt before this time.
    next_try_ms: i64,
    /// Rolled bytes below the upload bound not uploaded at the end of the last pass.
    lag_bytes: u64,
}

/// The broker's remote log manager.
pub struct RemoteLogManager {
    broker_id: i32,
    config: TieredConfig,
    rsm: RemoteStorageManager,
    tasks: tokio::sync::Mutex<HashMap<(Uuid, i32), PartitionTask>>,
    /// Every tiered partition hosted here (led or not), to delete the objects of deleted
    /// topics.
    hosted: Mutex<HashMap<(Uuid, i32), TopicIdPartition>>,
    /// The last persisted state of each partition led here, for remote reads.
    states: RwLock<HashMap<(Uuid, i32), Arc<RemoteLogState>>>,
    rate: Mutex<RateLimiter>,
    readers: tokio::sync::Semaphore,
    /// Counters for `/metrics`.
    pub metrics: RemoteMetrics,
}

impl std::fmt::Debug for RemoteLogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteLogManager")
            .field("broker_id", &self.broker_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RemoteLogManager {
    /// Builds the manager over the configured store (`rsm.config.*`); `None` when tiered
    /// storage is off. Fails when the store cannot be set up.
    pub fn from_config(
        broker_id: i32,
        config: &TieredConfig,
    ) -> Result<Option<Arc<Self>>, nagare_remote_storage::config::ConfigError> {
        let Some(store_cfg) = config.store.as_ref().filter(|_| config.enabled) else {
            return Ok(None);
        };
        let (store, root) = store_cfg.build()?;
        Ok(Some(Self::new(broker_id, config, store, root)))
    }

    /// A manager over a given store (tests wrap the store to inject faults).
    pub fn new(
        broker_id: i32,
        config: &TieredConfig,
        store: Arc<dyn nagare_remote_storage::object_store::ObjectStore>,
        root: nagare_remote_storage::object_store::path::Path,
    ) -> Arc<Self> {
        let rsm = RemoteStorageManager::new(store, root, config.index_cache_bytes);
        Arc::new(RemoteLogManager {
            broker_id,
            config: config.clone(),
            rsm,
            tasks: tokio::sync::Mutex::new(HashMap::new()),
            hosted: Mutex::new(HashMap::new()),
            states: RwLock::new(HashMap::new()),
            rate: Mutex::new(RateLimiter::new(config.copy_max_bytes_per_second)),
            readers: tokio::sync::Semaphore::new(config.reader_threads.max(1)),
            metrics: RemoteMetrics::default(),
        })
    }

    /// The remote storage manager (tests and `tiered status`).
    pub fn rsm(&self) -> &RemoteStorageManager {
        &self.rsm
    }

    /// The last persisted remote state of a partition led here.
    pub fn state(&self, topic_id: Uuid, partition: i32) -> Option<Arc<RemoteLogState>> {
        self.states.read().get(&(topic_id, partition)).cloned()
    }

    /// Runs passes every `remote.log.manager.task.interval.ms` until the task is dropped.
    /// `topic_config` gives a topic's tiered settings, `topic_exists` whether a topic id is
    /// still in the metadata image.
    pub async fn run(
        self: Arc<Self>,
        replicas: Arc<ReplicaManager>,
        topic_config: impl Fn(&str) -> TieredTopicConfig + Send + Sync + 'static,
        topic_exists: impl Fn(Uuid) -> bool + Send + Sync + 'static,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.task_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.pass(&replicas, &topic_config, &topic_exists).await;
        }
    }

    /// One pass over every tiered partition hosted here.
    pub async fn pass(
        &self,
        replicas: &ReplicaManager,
        topic_config: &(dyn Fn(&str) -> TieredTopicConfig + Send + Sync),
        topic_exists: &(dyn Fn(Uuid) -> bool + Send + Sync),
    ) {
        let now = now_ms();
        let mut tasks = self.tasks.lock().await;
        let mut seen = HashSet::new();
        let mut tasks_lag: HashMap<(Uuid, i32), u64> = HashMap::new();
        for p in replicas.all_partitions() {
            if !p.tier.enabled() {
                continue;
            }
            let key = (p.topic_id, p.tp.partition);
            seen.insert(key);
            self.hosted.lock().insert(
                key,
                TopicIdPartition {
                    topic: p.tp.topic.clone(),
                    topic_id: p.topic_id,
                    partition: p.tp.partition,
                },
            );
            if !p.is_leader() {
                // Another broker uploads now; forget our view so local retention waits.
                if tasks.remove(&key).is_some() {
                    p.tier.reset();
                    self.states.write().remove(&key);
                }
                continue;
            }
            let task = tasks.entry(key).or_insert(PartitionTask {
                state: None,
                epoch: -1,
                failures: 0,
                next_try_ms: 0,
                lag_bytes: 0,
            });
            if now < task.next_try_ms {
                continue;
            }
            let cfg = topic_config(&p.tp.topic);
            let result = self.pass_partition(&p, task, &cfg).await;
            if result.is_err() {
                // The pass stopped early (e.g. the store is down): the lag still grows.
                let copied = p.tier.copied_end().unwrap_or(-1);
                let bound = p.upload_bound();
                let locals = p.local_segments();
                if let Some((_active, rolled)) = locals.split_last() {
                    task.lag_bytes = rolled
                        .iter()
                        .filter(|l| {
                            l.segment.next_offset - 1 > copied && l.segment.next_offset <= bound
                        })
                        .map(|l| l.segment.size_bytes)
                        .sum();
                }
            }
            tasks_lag.insert(key, task.lag_bytes);
            match result {
                Ok(()) => task.failures = 0,
                Err(e) => {
                    task.failures = task.failures.saturating_add(1);
                    self.metrics.copy_failed.fetch_add(1, Ordering::Relaxed);
                    let delay = self
                        .config
                        .retry_backoff
                        .delay_ms(task.failures - 1, rand::random::<f64>());
                    task.next_try_ms = now_ms() + delay as i64;
                    // Restart from the persisted manifest: a half-done step is cleaned up
                    // by the claim.
                    task.state = None;
                    tracing::warn!(tp = %p.tp, error = %e, retry_in_ms = delay, "tiered storage task failed");
                }
            }
        }
        tasks.retain(|k, _| seen.contains(k));
        drop(tasks);
        let lag: u64 = tasks_lag.values().sum();
        self.metrics.copy_lag_bytes.store(lag, Ordering::Relaxed);
        self.states.write().retain(|k, _| seen.contains(k));
        let size: u64 = self.states.read().values().map(|s| s.size_bytes()).sum();
        self.metrics
            .remote_log_size_bytes
            .store(size, Ordering::Relaxed);
        // Deleted topics: remove their objects (every former replica tries; deletes are
        // idempotent), then forget them.
        let gone: Vec<((Uuid, i32), TopicIdPartition)> = self
            .hosted
            .lock()
            .iter()
            .filter(|(k, _)| !seen.contains(k) && !topic_exists(k.0))
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (key, tp) in gone {
            match self.rsm.delete_partition(&tp).await {
                Ok(n) => {
                    tracing::info!(topic = %tp.topic, partition = tp.partition, objects = n, "deleted remote data of deleted topic");
                    self.hosted.lock().remove(&key);
                }
                Err(e) => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = %e, "cannot delete remote data yet")
                }
            }
        }
        // Partitions moved away (topic still exists) are simply forgotten.
        self.hosted
            .lock()
            .retain(|k, _| seen.contains(k) || !topic_exists(k.0));
    }

    async fn save(&self, p: &Partition, state: &RemoteLogState) -> Result<(), TierError> {
        self.rsm.save_state(state).await?;
        p.tier
            .publish(state.copied_end_offset(), state.log_start_offset());
        self.states
            .write()
            .insert((p.topic_id, p.tp.partition), Arc::new(state.clone()));
        Ok(())
    }

    /// Deletes one segment: DELETE_STARTED persisted, objects deleted, DELETE_FINISHED
    /// persisted.
    async fn delete_segment(
        &self,
        p: &Partition,
        state: &mut RemoteLogState,
        m: &RemoteLogSegmentMetadata,
        epoch: i32,
    ) -> Result<(), TierError> {
        if m.state != RemoteSegmentState::DeleteStarted {
            state.begin_delete(&m.id, now_ms(), epoch)?;
            self.save(p, state).await?;
        }
        self.rsm.delete_log_segment_data(m).await?;
        self.metrics.delete_requests.fetch_add(1, Ordering::Relaxed);
        state.finish_delete(&m.id, now_ms(), epoch)?;
        self.save(p, state).await
    }

    async fn pass_partition(
        &self,
        p: &Partition,
        task: &mut PartitionTask,
        cfg: &TieredTopicConfig,
    ) -> Result<(), TierError> {
        let epoch = p.epoch();
        let tp = TopicIdPartition {
            topic: p.tp.topic.clone(),
            topic_id: p.topic_id,
            partition: p.tp.partition,
        };
        if task.state.is_none() || task.epoch != epoch {
            let mut state = self
                .rsm
                .load_state(&tp)
                .await?
                .unwrap_or_else(|| RemoteLogState::new(tp.clone()));
            let cleanup = state.claim(epoch)?;
            self.save(p, &state).await?;
            for m in cleanup {
                tracing::info!(tp = %p.tp, segment = %m.id.segment_id, state = ?m.state, "cleaning up an unfinished remote segment");
                self.delete_segment(p, &mut state, &m, epoch).await?;
            }
            task.state = Some(state);
            task.epoch = epoch;
        }
        let Some(state) = task.state.as_mut() else {
            return Ok(());
        };
        // DeleteRecords moved the log start: persist it (retention below deletes the remote
        // segments under it).
        if let Some(req) = p.tier.requested_log_start() {
            if state.log_start_offset().is_none_or(|s| s < req) {
                state.raise_log_start_offset(req);
                self.save(p, state).await?;
            }
        }
        // DeleteRecords may have removed local data never uploaded: skip the gap.
        if state
            .next_copy_offset()
            .is_some_and(|next| p.log_start_offset() > next)
        {
            state.skip_to(p.log_start_offset(), epoch)?;
            self.save(p, state).await?;
        }
        let locals = p.local_segments();
        let segments: Vec<_> = locals.iter().map(|l| l.segment).collect();
        if !cfg.remote_log_copy_disable {
            for c in plan::upload_candidates(&segments, p.upload_bound(), state.next_copy_offset())
            {
                if !p.is_leader() || p.epoch() != epoch {
                    return Ok(());
                }
                let Some(view) = locals
                    .iter()
                    .find(|l| l.segment.base_offset == c.base_offset)
                else {
                    continue;
                };
                let end = c.next_offset - 1;
                let m = RemoteLogSegmentMetadata {
                    id: RemoteLogSegmentId::generate(tp.clone()),
                    start_offset: c.base_offset,
                    end_offset: end,
                    max_timestamp_ms: c.max_timestamp_ms,
                    broker_id: self.broker_id,
                    event_timestamp_ms: now_ms(),
                    segment_size_bytes: c.size_bytes,
                    segment_leader_epochs: p.epochs_in_range(c.base_offset, end),
                    txn_index_present: view.files.txn_index.is_some(),
                    producer_snapshot_present: view.files.producer_snapshot.is_some(),
                    state: RemoteSegmentState::CopyStarted,
                };
                state.begin_copy(m.clone(), epoch)?;
                self.save(p, state).await?;
                let wait = self.rate.lock().acquire(now_ms(), c.size_bytes);
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                let bytes = self.rsm.copy_log_segment_data(&m, &view.files).await?;
                self.metrics.copy_bytes.fetch_add(bytes, Ordering::Relaxed);
                self.metrics.copy_requests.fetch_add(1, Ordering::Relaxed);
                state.finish_copy(&m.id, now_ms(), epoch)?;
                self.save(p, state).await?;
                tracing::debug!(tp = %p.tp, start = m.start_offset, end, bytes, "uploaded segment");
            }
        }
        // The whole log's retention applies to the remote segments.
        let copied = state.copied_end_offset().unwrap_or(-1);
        let bound = p.upload_bound();
        if let Some((_active, rolled)) = segments.split_last() {
            task.lag_bytes = rolled
                .iter()
                .filter(|s| s.next_offset - 1 > copied && s.next_offset <= bound)
                .map(|s| s.size_bytes)
                .sum();
        }
        let local_only: u64 = segments
            .iter()
            .filter(|s| s.next_offset - 1 > copied)
            .map(|s| s.size_bytes)
            .sum();
        let doomed =
            state.retention_candidates(now_ms(), cfg.retention_ms, cfg.retention_bytes, local_only);
        for m in doomed {
            self.delete_segment(p, state, &m, epoch).await?;
            tracing::info!(tp = %p.tp, start = m.start_offset, end = m.end_offset, "retention deleted remote segment");
        }
        Ok(())
    }

    /// Reads whole batches at `offset` (at most `max_bytes`, at least one batch) from the
    /// remote log of a partition led here; `Ok(None)` when the remote log does not hold
    /// `offset` (the caller answers OFFSET_OUT_OF_RANGE). Bounded by
    /// `remote.log.reader.threads` concurrent reads.
    pub async fn read(
        &self,
        topic_id: Uuid,
        partition: i32,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Option<Bytes>, RemoteStorageError> {
        let Some(state) = self.state(topic_id, partition) else {
            return Ok(None);
        };
        let Some(m) = state.segment_for_fetch(offset).cloned() else {
            return Ok(None);
        };
        let _permit = self.readers.acquire().await.ok();
        self.metrics.fetch_requests.fetch_add(1, Ordering::Relaxed);
        let bytes = match self.rsm.read(&m, offset, max_bytes).await {
            Ok(b) => b,
            Err(e) => {
                self.metrics.fetch_failed.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        self.metrics
            .fetch_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(Some(bytes))
    }

    /// The aborted transactions a read_committed fetch of remote data from `start` up to
    /// `upper` (exclusive) must list (Kafka's `collectAbortedTransactions` over remote
    /// segments): entries of the remote `.txnindex` objects, from the segment holding
    /// `start` onwards, whose records overlap `[start, upper)`; it stops at the first entry
    /// whose last stable offset reaches `upper` (no later abort can concern the range).
    /// Returns `(producer id, first offset)` pairs and whether that stop was reached.
    pub async fn aborted_transactions(
        &self,
        topic_id: Uuid,
        partition: i32,
        start: i64,
        upper: i64,
    ) -> Result<(Vec<(i64, i64)>, bool), RemoteStorageError> {
        let Some(state) = self.state(topic_id, partition) else {
            return Ok((Vec::new(), false));
        };
        let mut out = Vec::new();
        for m in state.finished().filter(|m| m.end_offset >= start) {
            if !m.txn_index_present {
                continue;
            }
            let bytes = self
                .rsm
                .fetch_object(m, nagare_remote_storage::ObjectKind::TransactionIndex)
                .await?;
            for a in nagare_remote_storage::rsm::parse_txn_index(&bytes) {
                if a.last_offset >= start && a.first_offset < upper {
                    out.push((a.producer_id, a.first_offset));
                }
                if a.last_stable_offset >= upper {
                    return Ok((out, true));
                }
            }
        }
        Ok((out, false))
    }

    /// ListOffsets by timestamp in the remote log of a partition led here (Kafka's
    /// `RemoteLogManager.findOffsetByTimestamp`): the first record at or after `log_start`
    /// with a timestamp >= `timestamp`, in the oldest finished remote segment whose largest
    /// timestamp reaches it; its time index (cached) and offset index give where to start
    /// reading, then the segment is read in ranged chunks. `Ok(None)` when the remote log
    /// holds no such record (the caller looks in the local log).
    pub async fn offset_for_timestamp(
        &self,
        topic_id: Uuid,
        partition: i32,
        timestamp: i64,
        log_start: i64,
    ) -> Result<Option<nagare_storage::TimestampOffset>, RemoteStorageError> {
        use nagare_protocol::record_batch::{RecordBatchHeader, HEADER_SIZE};
        use nagare_remote_storage::ObjectKind;
        const CHUNK: u64 = 1 << 20;
        let Some(state) = self.state(topic_id, partition) else {
            return Ok(None);
        };
        let mut segments: Vec<RemoteLogSegmentMetadata> = state
            .finished()
            .filter(|m| m.max_timestamp_ms >= timestamp && m.end_offset >= log_start)
            .cloned()
            .collect();
        segments.sort_by_key(|m| m.start_offset);
        let tp = nagare_storage::TopicPartition::new(state.partition().topic.clone(), partition);
        let corrupt = |e: nagare_storage::StorageError| RemoteStorageError::Corrupt(e.to_string());
        let mut min_offset = log_start;
        for m in segments {
            // Segments of different leaders may overlap: what an earlier one held is done.
            if m.end_offset < min_offset {
                continue;
            }
            let _permit = self.readers.acquire().await.ok();
            let time_index = self.rsm.fetch_object(&m, ObjectKind::TimeIndex).await?;
            let from = nagare_remote_storage::rsm::time_index_offset_before(
                &time_index,
                m.start_offset,
                timestamp,
            )
            .max(min_offset);
            let index = self.rsm.fetch_object(&m, ObjectKind::OffsetIndex).await?;
            let mut pos = nagare_remote_storage::rsm::index_position(&index, m.start_offset, from);
            while pos < m.segment_size_bytes {
                let chunk = self.rsm.fetch_log_segment(&m, pos, pos + CHUNK).await?;
                if let Some(found) =
                    nagare_storage::offset_for_timestamp_in(&tp, &chunk, min_offset, timestamp)
                        .map_err(corrupt)?
                {
                    self.metrics
                        .fetch_bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    return Ok(Some(found));
                }
                // Continue after the last whole batch of the chunk (one larger than the
                // chunk is read whole).
                let mut used = 0usize;
                let mut next_len = 0usize;
                while chunk.len().saturating_sub(used) >= HEADER_SIZE {
                    let h = RecordBatchHeader::parse(&chunk[used..])
                        .map_err(|e| RemoteStorageError::Corrupt(e.to_string()))?;
                    if used + h.total_size() > chunk.len() {
                        next_len = h.total_size();
                        break;
                    }
                    used += h.total_size();
                }
                if used == 0 {
                    if next_len == 0 {
                        break;
                    }
                    let whole = self
                        .rsm
                        .fetch_log_segment(&m, pos, pos + next_len as u64)
                        .await?;
                    if let Some(found) =
                        nagare_storage::offset_for_timestamp_in(&tp, &whole, min_offset, timestamp)
                            .map_err(corrupt)?
                    {
                        return Ok(Some(found));
                    }
                    used = whole.len();
                    if used == 0 {
                        break;
                    }
                }
                pos += used as u64;
            }
            min_offset = m.end_offset + 1;
        }
        Ok(None)
    }

    /// KIP-405's follower path (Kafka's `ReplicaFetcherTierStateMachine`): a follower told
    /// OFFSET_MOVED_TO_TIERED_STORAGE reads the partition's manifest and takes from the remote
    /// segment ending just below the leader's local log start `local_start` its producer
    /// snapshot, and from every finished remote segment its leader epochs; the follower then
    /// starts its log at `local_start` with that state. Returns `Ok(None)` when the manifest
    /// does not reach `local_start` yet (the leader's retention ran on a state this broker
    /// cannot see: fetch again later). Also publishes the remote reach into the partition's
    /// `TierState`, so this follower's ListOffsets -2 and local retention know it.
    pub async fn follower_start(
        &self,
        p: &Partition,
        local_start: i64,
    ) -> Result<Option<FollowerStart>, TierError> {
        let tp = TopicIdPartition {
            topic: p.tp.topic.clone(),
            topic_id: p.topic_id,
            partition: p.tp.partition,
        };
        let Some(state) = self.rsm.load_state(&tp).await? else {
            return Ok(None);
        };
        if local_start > 0
            && state
                .copied_end_offset()
                .is_none_or(|e| e < local_start - 1)
        {
            return Ok(None);
        }
        let below = state
            .finished()
            .filter(|m| m.start_offset < local_start && m.end_offset >= local_start - 1)
            // Overlapping segments after a failover: the one ending exactly below wins.
            .min_by_key(|m| (m.end_offset != local_start - 1, m.end_offset));
        let producer_snapshot = match below {
            Some(m) if m.end_offset + 1 == local_start && m.producer_snapshot_present => Some(
                self.rsm
                    .fetch_object(m, nagare_remote_storage::ObjectKind::ProducerSnapshot)
                    .await?,
            ),
            _ => None,
        };
        let mut firsts: BTreeMap<i32, i64> = BTreeMap::new();
        for m in state.finished() {
            for (&epoch, &start) in &m.segment_leader_epochs {
                if start < local_start {
                    let e = firsts.entry(epoch).or_insert(start);
                    *e = (*e).min(start);
                }
            }
        }
        p.tier
            .publish(state.copied_end_offset(), state.log_start_offset());
        Ok(Some(FollowerStart {
            producer_snapshot,
            epochs: firsts.into_iter().collect(),
        }))
    }

    /// Remote segments of a partition led here, for `tiered status` and tests.
    pub fn segments(&self, topic_id: Uuid, partition: i32) -> Vec<RemoteLogSegmentMetadata> {
        self.state(topic_id, partition)
            .map(|s| s.segments().cloned().collect())
            .unwrap_or_default()
    }
}

/// What a follower far behind a tiered leader takes from the remote metadata before it
/// starts at the leader's local log start ([`RemoteLogManager::follower_start`]).
#[derive(Debug, Clone, Default)]
pub struct FollowerStart {
    /// The producer snapshot at the local log start, when the remote segment ending there
    /// has one.
    pub producer_snapshot: Option<Bytes>,
    /// `(epoch, first offset)` of every leader epoch with remote data, oldest first.
    pub epochs: Vec<(i32, i64)>,
}

/// The tiered settings of every topic from the metadata image and the broker defaults.
pub fn topic_tiered_config(
    image: &nagare_metadata::MetadataImage,
    defaults: &nagare_metadata::topic_config::TopicDefaults,
    topic: &str,
) -> TieredTopicConfig {
    let overrides: BTreeMap<String, String> =
        image.config_overrides(nagare_metadata::records::ConfigResource::Topic, topic);
    defaults.tiered_config(&overrides)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use super::topic_tiered_config;
    use crate::testing::TestBroker;

    fn name(n: &str) -> TopicName {
        TopicName(StrBytes::from_string(n.to_string()))
    }

    fn value(i: usize) -> Vec<u8> {
        let mut v = format!("value-{i:04}-").into_bytes();
        v.resize(200, b'a' + (i % 26) as u8);
        v
    }

    async fn produce(b: &TestBroker, i: usize) {
        let batch = nagare_protocol::batch_builder::build_batch(
            [(None, Some(Bytes::from(value(i))))],
            0,
            // Recent timestamps: `retention.ms` (7 days) must not expire them.
            super::now_ms(),
        )
        .expect("batch");
        let req = ProduceRequest::default().with_acks(1).with_topic_data(vec![
            produce_request::TopicProduceData::default()
                .with_name(name("t"))
                .with_partition_data(vec![produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.freeze()))]),
        ]);
        let r = b.send(&req, 9).await.expect("produce");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }

    async fn list_offset(b: &TestBroker, ts: i64) -> i64 {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("t"))
                .with_partitions(vec![
                    list_offsets_request::ListOffsetsPartition::default()
                        .with_partition_index(0)
                        .with_timestamp(ts),
                ])]);
        let r = b.send(&req, 9).await.expect("ListOffsets");
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "ListOffsets {ts}");
        p.offset
    }

    /// (error, log start, (offset, value) of each record) of a consumer fetch at `offset`.
    async fn fetch(b: &TestBroker, offset: i64) -> (i16, i64, Vec<(i64, Vec<u8>)>) {
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("t"))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(2048)])]);
        let mut r = b.send(&req, 11).await.expect("Fetch");
        let p = r.responses.remove(0).partitions.remove(0);
        let mut bytes = p.records.clone().unwrap_or_default();
        let mut out = Vec::new();
        if !bytes.is_empty() {
            for set in
                kafka_protocol::records::RecordBatchDecoder::decode_all(&mut bytes).expect("decode")
            {
                for rec in set.records {
                    let v = rec.value.map(|v| v.to_vec()).unwrap_or_default();
                    out.push((rec.offset, v));
                }
            }
        }
        (p.error_code, p.log_start_offset, out)
    }

    #[tokio::test]
    async fn uploads_then_retains_locally_and_serves_old_offsets_remotely() {
        let store = tempfile::tempdir().expect("tmp");
        let url = format!("file://{}", store.path().display());
        let b = TestBroker::build(
            &[
                ("remote.log.storage.system.enable", "true"),
                ("rsm.config.url", &url),
            ],
            None,
        )
        .await;
        let config = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        b.broker
            .create_topics_internal(vec![nagare_controller::logic::NewTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![
                    config("segment.bytes", "1024"),
                    config("remote.storage.enable", "true"),
                    config("local.retention.bytes", "2048"),
                    config("file.delete.delay.ms", "0"),
                ],
            }])
            .await
            .expect("create topic");
        let n = 120;
        for i in 0..n {
            produce(&b, i).await;
        }
        let replicas = b.broker.replicas.clone();
        let p = replicas.partition("t", 0).expect("partition");
        assert!(p.tier.enabled());
        // Before any upload, local retention deletes nothing (it waits for uploads).
        replicas.enforce_retention(i64::MAX);
        assert_eq!(list_offset(&b, -4).await, 0);
        assert_eq!(list_offset(&b, -5).await, -1, "nothing tiered yet");

        let rlm = b
            .broker
            .remote_log
            .get()
            .cloned()
            .expect("remote log manager");
        let broker = b.broker.clone();
        let cfg = move |topic: &str| {
            topic_tiered_config(&broker.image(), &broker.topic_defaults(), topic)
        };
        rlm.pass(&replicas, &cfg, &|_| true).await;
        let segments = rlm.segments(p.topic_id, 0);
        let local_segments = p.local_segments().len();
        assert_eq!(
            segments.len(),
            local_segments - 1,
            "every rolled segment, once"
        );
        // A second pass uploads nothing new.
        rlm.pass(&replicas, &cfg, &|_| true).await;
        assert_eq!(rlm.segments(p.topic_id, 0), segments);
        let copies = rlm
            .metrics
            .copy_requests
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(copies as usize, segments.len());
        assert_eq!(
            rlm.metrics
                .copy_lag_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );

        replicas.enforce_retention(i64::MAX);
        let local_start = list_offset(&b, -4).await;
        let tiered = list_offset(&b, -5).await;
        assert!(local_start > 0, "local retention ran after the uploads");
        assert!(
            tiered >= local_start - 1,
            "everything below the local start is tiered"
        );
        assert_eq!(
            list_offset(&b, -2).await,
            0,
            "the log starts in the remote store"
        );
        assert_eq!(list_offset(&b, -1).await, n as i64);
        // By timestamp below the local log start: answered from the remote time indexes.
        assert_eq!(list_offset(&b, 0).await, 0, "the first record is remote");

        // A consumer reads everything from 0, the old part from the object store.
        let mut next = 0i64;
        let mut seen = Vec::new();
        while next < n as i64 {
            let (err, log_start, recs) = fetch(&b, next).await;
            assert_eq!(err, 0, "fetch at {next}");
            assert_eq!(log_start, 0, "consumers see the remote log start");
            let recs: Vec<_> = recs.into_iter().filter(|(o, _)| *o >= next).collect();
            assert!(!recs.is_empty(), "no records at {next}");
            for (o, v) in recs {
                assert_eq!(o, next, "dense offsets");
                assert_eq!(v, value(o as usize), "record {o}");
                seen.push(o);
                next += 1;
            }
        }
        assert_eq!(seen.len(), n);
        assert!(
            rlm.metrics
                .fetch_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0
        );
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(b.broker.clone());
        let source = crate::metrics::MetricsSource {
            request_metrics: b.broker.request_metrics.clone(),
            broker: Arc::new(cell),
            console: Arc::new(crate::console::Console::new()),
            metrics_token: None,
        };
        let text = crate::metrics::render_with(&source, &[]);
        assert!(
            text.contains("kafka_server_brokertopicmetrics_remotecopybytes_total"),
            "exported"
        );

        // DeleteRecords into the remote part: the log start moves at once, older offsets are
        // out of range, and the next pass deletes the remote segments below it.
        let before = rlm.segments(p.topic_id, 0).len();
        let r = b
            .send(
                &DeleteRecordsRequest::default()
                    .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(10),
                        ])])
                    .with_timeout_ms(5_000),
                2,
            )
            .await
            .expect("DeleteRecords");
        let dr = &r.topics[0].partitions[0];
        assert_eq!((dr.error_code, dr.low_watermark), (0, 10));
        assert_eq!(list_offset(&b, -2).await, 10);
        assert_eq!(
            list_offset(&b, 0).await,
            10,
            "by timestamp: not below the log start"
        );
        assert_eq!(
            fetch(&b, 5).await.0,
            1,
            "OFFSET_OUT_OF_RANGE below the new start"
        );
        rlm.pass(&replicas, &cfg, &|_| true).await;
        let after = rlm.segments(p.topic_id, 0);
        assert!(after.len() < before, "segments below 10 deleted");
        assert!(after.iter().all(|m| m.end_offset >= 10));
        let (err, _, recs) = fetch(&b, 10).await;
        assert_eq!(err, 0);
        assert_eq!(
            recs.iter().find(|(o, _)| *o == 10).map(|(_, v)| v.clone()),
            Some(value(10))
        );

        // Topic deletion: the next pass deletes every object of the partition.
        let tp = rlm.state(p.topic_id, 0).expect("state").partition().clone();
        assert!(!rlm
            .rsm()
            .list_partition(&tp)
            .await
            .expect("list")
            .is_empty());
        let r = b
            .send(
                &DeleteTopicsRequest::default()
                    .with_topic_names(vec![name("t")])
                    .with_timeout_ms(5_000),
                5,
            )
            .await
            .expect("DeleteTopics");
        assert_eq!(r.responses[0].error_code, 0);
        let image_broker = b.broker.clone();
        rlm.pass(&replicas, &cfg, &move |id| {
            image_broker.image().topic_by_id(&id).is_some()
        })
        .await;
        assert!(rlm
            .rsm()
            .list_partition(&tp)
            .await
            .expect("list")
            .is_empty());
    }

    /// The object store unreachable under load: producers keep writing, local retention
    /// keeps what is not uploaded (the local log grows), uploads resume when it is back, and
    /// the remote log has every offset exactly once.
    #[tokio::test]
    async fn store_outage_blocks_nothing_and_loses_nothing() {
        use nagare_remote_storage::fault::FaultyStore;
        use nagare_remote_storage::object_store::local::LocalFileSystem;
        use nagare_remote_storage::object_store::path::Path as ObjectPath;

        let unused = tempfile::tempdir().expect("tmp");
        let url = format!("file://{}", unused.path().display());
        let b = TestBroker::build(
            &[
                ("remote.log.storage.system.enable", "true"),
                ("rsm.config.url", &url),
            ],
            None,
        )
        .await;
        let config = |k: &str, v: &str| (k.to_string(), Some(v.to_string()));
        b.broker
            .create_topics_internal(vec![nagare_controller::logic::NewTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: 1,
                assignments: vec![],
                configs: vec![
                    config("segment.bytes", "1024"),
                    config("remote.storage.enable", "true"),
                    config("local.retention.bytes", "2048"),
                    config("file.delete.delay.ms", "0"),
                ],
            }])
            .await
            .expect("create topic");
        let store_dir = tempfile::tempdir().expect("tmp");
        let faulty = Arc::new(FaultyStore::new(Arc::new(
            LocalFileSystem::new_with_prefix(store_dir.path()).expect("store"),
        )));
        let mut tiered = b.broker.config.tiered.clone();
        tiered.retry_backoff = nagare_remote_storage::Backoff {
            initial_ms: 1,
            max_ms: 2,
        };
        let rlm = super::RemoteLogManager::new(1, &tiered, faulty.clone(), ObjectPath::default());
        let replicas = b.broker.replicas.clone();
        let p = replicas.partition("t", 0).expect("partition");
        let broker = b.broker.clone();
        let cfg = move |topic: &str| {
            topic_tiered_config(&broker.image(), &broker.topic_defaults(), topic)
        };

        for i in 0..40 {
            produce(&b, i).await;
        }
        rlm.pass(&replicas, &cfg, &|_| true).await;
        let copied_before = p.tier.copied_end().expect("uploaded before the outage");

        // Outage: writes go on, uploads fail, local retention deletes nothing new.
        faulty.set_down(true);
        for i in 40..160 {
            produce(&b, i).await;
        }
        for _ in 0..3 {
            rlm.pass(&replicas, &cfg, &|_| true).await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        replicas.enforce_retention(i64::MAX);
        assert!(faulty.refused() > 0, "the outage was hit");
        assert_eq!(
            p.tier.copied_end(),
            Some(copied_before),
            "nothing uploaded while down"
        );
        assert!(
            p.log_start_offset() <= copied_before + 1,
            "local retention kept what is not uploaded: start {} copied {copied_before}",
            p.log_start_offset()
        );
        assert!(
            rlm.metrics
                .copy_lag_bytes
                .load(std::sync::atomic::Ordering::Relaxed)
                > 0,
            "the copy lag shows the outage"
        );
        let local_during = p.local_segments().len();
        assert!(
            local_during > 40,
            "the local log grew: {local_during} segments"
        );

        // Back up: uploads resume (after the backoff) and local retention catches up.
        faulty.set_down(false);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        rlm.pass(&replicas, &cfg, &|_| true).await;
        replicas.enforce_retention(i64::MAX);
        let copied = p.tier.copied_end().expect("copied");
        assert!(copied > copied_before + 100, "uploads resumed: {copied}");
        assert!(
            p.log_start_offset() > copied_before + 1,
            "local retention resumed"
        );

        // Every offset below the local start is in the remote log exactly once, intact.
        let segments = rlm.segments(p.topic_id, 0);
        let mut expected = 0;
        for m in &segments {
            assert_eq!(m.start_offset, expected, "no gap, no overlap");
            expected = m.end_offset + 1;
        }
        for o in 0..p.log_start_offset() {
            let bytes = rlm
                .read(p.topic_id, 0, o, 1)
                .await
                .expect("remote read")
                .expect("in the remote log");
            let mut buf = bytes.clone();
            let batches =
                kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf).expect("decode");
            let rec = batches
                .iter()
                .flat_map(|b| b.records.iter())
                .find(|r| r.offset == o)
                .expect("record");
            assert_eq!(
                rec.value.as_deref(),
                Some(&value(o as usize)[..]),
                "record {o}"
            );
        }
    }
}
