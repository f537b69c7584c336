//! The replica manager: the partitions this broker hosts, taken from the metadata image,
//! with their logs, leader epochs and high watermarks — and the only door to their data, as
//! Kafka's `ReplicaManager` is: a partition's [`Log`] is private to this module, and
//! handlers, the replica fetcher, the group coordinator and the server's background tasks go
//! through [`ReplicaManager`] and [`Partition`] methods. Appends (`append`: client,
//! coordinator and follower appends, typed outcomes, the one `acks=all` wait), reads
//! (`delayed_fetch`: Fetch with the delayed-fetch purgatory keyed by partition), offset
//! lookups (`offsets`), the leader's replication state ([`partition_state`]) driven by
//! follower fetches and its ISR proposals ([`alter_partition_sender`]), and the group commit
//! that makes `acks=all` writes durable before they are acknowledged. Errors are typed
//! ([`ReplicaError`]); handlers map them to Kafka codes.
//!
//! Durability policy (documented in README): an `acks=all` produce is answered only after
//! its batches are fsynced on the leader and every ISR member has them (the high watermark
//! passed them). fsyncs are group-committed: every waiter that arrives while an fsync runs
//! is served by the next one, across partitions and producers, so durability costs latency,
//! not throughput. `acks=0/1` writes are answered after the page-cache write and fsynced by
//! a background flush every `log.flush.interval.ms` (default 1000 ms).

pub mod alter_partition_sender;
mod append;
#[cfg(test)]
mod data_path_tests;
mod delayed_fetch;
mod error;
mod group_commit;
mod metadata_apply;
mod offsets;
pub mod partition_state;
mod tiered;

pub use append::{AppendEntry, PartitionAppend, PendingAppend, ReplicationOutcome, RequiredAcks};
pub use delayed_fetch::{
    AbortedTransaction, ClientMetadata, FetchParams, FetchPartitionRequest, FetchPartitionResult,
    IsolationLevel,
};
pub use error::{check_leader_epoch, ReplicaError};
pub use nagare_storage::AppendOrigin;
pub use offsets::{OffsetAndEpoch, OffsetSpec};
pub use tiered::{LocalSegmentView, TierState};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch, Notify};

use nagare_metadata::{PartitionRegistration, Uuid};
use nagare_storage::{Log, LogManager, StorageError, TopicPartition};

use partition_state::{Assignment, IsrProposal, LeaderState};

/// One partition replica hosted here.
pub struct Partition {
    /// Topic and partition.
    pub tp: TopicPartition,
    /// Topic id (KIP-516).
    pub topic_id: Uuid,
    /// The partition's log: private to the replica manager, the one door to partition data
    /// (Kafka's `ReplicaManager`/`Partition`); everything else goes through their methods.
    log: Arc<Log>,
    /// Current leader epoch from the metadata image.
    pub leader_epoch: AtomicI32,
    /// Current leader id (-1 when none).
    pub leader: AtomicI32,
    /// `min.insync.replicas` of the topic.
    pub min_isr: AtomicI32,
    /// The high watermark as last computed (leader) or learnt from the leader (follower).
    hw: AtomicI64,
    /// The replication state while this broker leads the partition.
    leader_state: Mutex<Option<LeaderState>>,
    /// The leader epoch for which this follower has checked its log against the leader's
    /// (OffsetForLeaderEpoch, KIP-101/279); fetching waits until it equals the current epoch.
    truncated_epoch: AtomicI32,
    /// Bumped whenever the high watermark or the leadership changes (the delayed-produce
    /// purgatory waits on it).
    changed: watch::Sender<u64>,
    /// Whether a consumer fetch served by this follower was logged (KIP-392).
    follower_read_logged: std::sync::atomic::AtomicBool,
    /// The delayed fetches parked on this partition (the purgatory keyed by partition, as
    /// Kafka's `DelayedOperationPurgatory` watches keys): woken by appends to this partition,
    /// high-watermark moves and role changes here, never by other partitions' traffic.
    fetch_watchers: delayed_fetch::FetchWatchers,
    /// The topic's bytes/messages counters, held here so the produce path needs no lookup.
    pub stats: Arc<crate::metrics::topic_stats::TopicCounters>,
    /// Tiered storage (KIP-405): whether the topic is tiered and how far its remote log
    /// reaches (bounds local retention).
    pub tier: TierState,
}

impl Partition {
    /// `checkpointed_hw` is the high watermark of `replication-offset-checkpoint`, if any:
    /// clamped to the log (Kafka's `UnifiedLog` initialisation), else the log start.
    fn new(
        tp: TopicPartition,
        topic_id: Uuid,
        log: Arc<Log>,
        epoch: i32,
        leader: i32,
        checkpointed_hw: Option<i64>,
        stats: Arc<crate::metrics::topic_stats::TopicCounters>,
    ) -> Self {
        let start = log.log_start_offset();
        let hw = checkpointed_hw
            .unwrap_or(start)
            .clamp(start, log.log_end_offset().max(start));
        Partition {
            tp,
            topic_id,
            log,
            leader_epoch: AtomicI32::new(epoch),
            leader: AtomicI32::new(leader),
            min_isr: AtomicI32::new(1),
            hw: AtomicI64::new(hw),
            leader_state: Mutex::new(None),
            truncated_epoch: AtomicI32::new(-1),
            changed: watch::channel(0).0,
            follower_read_logged: std::sync::atomic::AtomicBool::new(false),
            fetch_watchers: delayed_fetch::FetchWatchers::default(),
            stats,
            tier: TierState::default(),
        }
    }

    /// High watermark: for a leader the smallest log end offset of the ISR (a single-member
    /// ISR follows the log end at once); for a follower what the leader last said, capped
    /// at its own log end.
    pub fn high_watermark(&self) -> i64 {
        let leo = self.log.log_end_offset();
        let mut st = self.leader_state.lock();
        if let Some(s) = st.as_mut() {
            if s.leader_appended(leo) {
                self.publish_hw(s.high_watermark());
            }
            return s.high_watermark();
        }
        self.hw.load(Ordering::Acquire).min(leo)
    }

    /// The last stable offset (Kafka's `Partition.lastStableOffset` / `UnifiedLog.
    /// lastStableOffset`): the first offset of the oldest transaction not yet decided *and*
    /// replicated, capped by the high watermark. read_committed consumers read below it
    /// (Fetch) and are told it as "latest" (ListOffsets); without open transactions it is the
    /// high watermark. A transaction whose marker is not yet below the high watermark still
    /// holds it back, so a consumer never reads records whose outcome it cannot see yet.
    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset_at(self.high_watermark())
    }

    /// The last stable offset for a high watermark `hw` already read (so that a fetch
    /// answers a consistent pair).
    fn last_stable_offset_at(&self, hw: i64) -> i64 {
        self.log.last_stable_offset(hw)
    }

    fn publish_hw(&self, hw: i64) {
        self.hw.store(hw, Ordering::Release);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
        // Consumers parked here may read up to the new high watermark.
        self.fetch_watchers.wake();
    }

    /// Bytes of the partition's log on disk (segments and indexes), as DescribeLogDirs and
    /// retention count them.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// The log end offset (the offset the next appended record gets).
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The end of what is fsynced here (the log end when all of it is): what a follower
    /// reports to its leader as durable.
    pub fn durable_end(&self) -> i64 {
        self.log.recovery_point().min(self.log.log_end_offset())
    }

    /// The log start offset (the first offset still readable).
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// The latest leader epoch of the log's leader-epoch checkpoint, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.latest_epoch()
    }

    /// The largest epoch at or below `epoch` in the leader-epoch checkpoint and where it ends
    /// in this log (KIP-101/279); (-1, -1) when there is none.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(epoch)
    }

    /// Truncates the log to `offset` (a follower cutting a divergent tail).
    pub fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        self.log.truncate_to(offset)
    }

    /// Empties the log and restarts it at `offset` (a follower behind the leader's log
    /// start, Kafka's `truncateFullyAndStartAt`).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), StorageError> {
        self.log.truncate_fully_and_start_at(offset)
    }

    /// A follower follows the leader's log start (Kafka's `maybeIncrementLogStartOffset`
    /// with reason `LeaderOffsetIncremented`), never past its own log end. Returns the new
    /// log start if it moved.
    pub fn follow_leader_log_start(
        &self,
        leader_log_start: i64,
    ) -> Result<Option<i64>, StorageError> {
        let target = leader_log_start.min(self.log.log_end_offset());
        if target <= self.log.log_start_offset() {
            return Ok(None);
        }
        self.log.delete_records_before(target).map(Some)
    }

    /// Reads every record of the log from its start to its end, in order (a coordinator
    /// loading its state from its partition).
    pub fn replay_records(
        &self,
        f: impl FnMut(nagare_storage::ReplayedRecord),
    ) -> Result<(), StorageError> {
        nagare_storage::replay_records(&self.log, f)
    }

    /// The latest epoch of producer `producer_id` in this partition's producer state, if it
    /// has one (the coordinator runtime refuses a transactional write the log would refuse
    /// before its shard applies it).
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.log
            .producer_state(producer_id)
            .map(|e| e.producer_epoch)
    }

    /// Current leader epoch.
    pub fn epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    /// Whether this broker leads the partition (has its replication state).
    pub fn is_leader(&self) -> bool {
        self.leader_state.lock().is_some()
    }

    /// The committed ISR as the leader knows it (empty on a follower).
    pub fn isr(&self) -> Vec<i32> {
        self.leader_state
            .lock()
            .as_ref()
            .map(|s| s.isr().to_vec())
            .unwrap_or_default()
    }

    /// A follower learnt the leader's high watermark (capped at its own log end). Returns
    /// whether its own high watermark moved (consumers reading from it may read more).
    pub fn set_follower_hw(&self, leader_hw: i64) -> bool {
        let hw = leader_hw.min(self.log.log_end_offset());
        if self.hw.load(Ordering::Acquire) != hw {
            self.publish_hw(hw);
            return true;
        }
        false
    }

    /// KIP-392 with Kafka's `RackAwareReplicaSelector`, on the leader: the in-sync follower
    /// in `client_rack` that has `fetch_offset` and is the most caught up (largest log end,
    /// then most recently caught up), unless the leader itself is in that rack. `rack_of`
    /// gives a live broker's rack (None for fenced or unknown brokers, which are never
    /// chosen). None means "read from the leader".
    pub fn preferred_read_replica(
        &self,
        leader_id: i32,
        client_rack: &str,
        fetch_offset: i64,
        now_ms: i64,
        rack_of: impl Fn(i32) -> Option<String>,
    ) -> Option<i32> {
        if client_rack.is_empty() || rack_of(leader_id).as_deref() == Some(client_rack) {
            return None;
        }
        let st = self.leader_state.lock();
        let s = st.as_ref()?;
        s.followers()
            // Kafka excludes replicas outside the ISR (they may lag forever) and those that
            // do not have the fetch offset yet.
            .filter(|(id, f)| s.isr().contains(id) && f.leo >= fetch_offset)
            .filter(|(id, _)| rack_of(*id).as_deref() == Some(client_rack))
            .max_by_key(|(id, f)| (f.leo, -(now_ms - f.last_caught_up_ms), -*id))
            .map(|(id, _)| id)
    }

    /// Logs the first consumer fetch served by this follower (KIP-392), once per partition
    /// and process, so follower reads are visible in the broker log without per-fetch noise.
    pub fn note_follower_read(&self) {
        if !self.follower_read_logged.swap(true, Ordering::AcqRel) {
            tracing::info!(tp = %self.tp, leader = self.leader.load(Ordering::Acquire), "serving consumer fetches as a follower (KIP-392)");
        }
    }

    /// A fetch from follower `replica` at `fetch_offset`: updates its state and the high
    /// watermark. Returns the high watermark, whether it moved, and an ISR expansion to
    /// propose; NOT_LEADER_OR_FOLLOWER if this broker does not lead or `replica` is not
    /// a replica.
    pub fn follower_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<(i64, bool, Option<IsrProposal>), ReplicaError> {
        self.follower_fetch_durable(replica, fetch_offset, None, now_ms)
    }

    /// [`Partition::follower_fetch`] from a follower that also reports its fsynced log end
    /// (`durable`): it reads from `fetch_offset`, but its state (and so the high watermark,
    /// `acks=all` and the ISR) counts only up to the durable end, so a follower may fetch
    /// ahead while its last fetch's data is being fsynced (issue 17).
    pub fn follower_fetch_durable(
        &self,
        replica: i32,
        fetch_offset: i64,
        durable: Option<i64>,
        now_ms: i64,
    ) -> Result<(i64, bool, Option<IsrProposal>), ReplicaError> {
        let leo = self.log.log_end_offset();
        let mut st = self.leader_state.lock();
        let s = st.as_mut().ok_or(ReplicaError::NotLeaderOrFollower)?;
        if s.follower(replica).is_none() {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        // KIP-405's follower path (Kafka's `OffsetMovedToTieredStorageException`): below our
        // local log start but in the remote log, a follower never fetches remote bytes; it
        // takes the remote metadata's state and starts at our local log start.
        if fetch_offset < self.log.log_start_offset()
            && self.tier.enabled()
            && self
                .tier
                .remote_log_start()
                .is_some_and(|s| fetch_offset >= s)
        {
            return Err(ReplicaError::OffsetMovedToTieredStorage(fetch_offset));
        }
        // A follower past our log end has a divergent tail (it must truncate first): it is
        // not caught up with anything. OFFSET_OUT_OF_RANGE, as Kafka's read answers.
        if fetch_offset > leo || fetch_offset < self.log.log_start_offset() {
            return Err(ReplicaError::OffsetOutOfRange(fetch_offset));
        }
        let durable = durable.map_or(fetch_offset, |d| d.min(fetch_offset));
        let u = s.follower_fetch_durable(replica, fetch_offset, durable, leo, now_ms);
        let hw = s.high_watermark();
        if u.hw_changed {
            self.publish_hw(hw);
        }
        Ok((hw, u.hw_changed, u.proposal))
    }

    /// KIP-320 on the leader: a follower that last fetched `last_fetched_epoch` and now fetches
    /// at `fetch_offset` diverges if that epoch ends before `fetch_offset` here, or if the
    /// largest epoch here at or below it is smaller (Kafka's `Partition.readRecords`). Returns
    /// the leader's (epoch, end offset) to truncate to. An epoch the leader knows nothing of
    /// (-1, -1) is not reported: followers ignore a diverging epoch of -1, so they would
    /// refetch forever; the fetch goes on and the offset checks apply instead.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end) = self.log.end_offset_for_epoch(last_fetched_epoch);
        if epoch < 0 || end < 0 {
            return None;
        }
        (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
    }

    /// The ISR shrink check (every half `replica.lag.time.max.ms`).
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_max_ms: i64) -> Option<IsrProposal> {
        let leo = self.log.log_end_offset();
        self.leader_state
            .lock()
            .as_mut()
            .and_then(|s| s.maybe_shrink(leo, now_ms, lag_max_ms))
    }

    /// The controller refused `proposal` (or could not be reached): allow a new one later.
    pub fn isr_proposal_failed(&self, proposal: &IsrProposal, now_ms: i64) {
        if let Some(s) = self.leader_state.lock().as_mut() {
            if s.pending() == Some(proposal) {
                s.proposal_failed(now_ms);
            }
        }
    }

    /// Whether this follower must check its log against the leader before fetching.
    pub fn needs_truncation_check(&self) -> bool {
        self.truncated_epoch.load(Ordering::Acquire) != self.epoch()
    }

    /// Records that the log was checked against the leader of `epoch`.
    pub fn mark_truncation_checked(&self, epoch: i32) {
        self.truncated_epoch.store(epoch, Ordering::Release);
    }

    /// Forces a new check against the leader (e.g. the leader's log is shorter than ours).
    pub fn reset_truncation_check(&self) {
        self.truncated_epoch.store(-1, Ordering::Release);
    }

    /// Takes the roles of `reg` for this broker `node_id`: becoming leader in a new epoch
    /// starts a fresh replication state (and records where the epoch starts in the log);
    /// the same epoch only updates the assignment; a follower drops the state.
    fn apply_registration(&self, node_id: i32, reg: &PartitionRegistration, now: i64) {
        self.leader_epoch.store(reg.leader_epoch, Ordering::Release);
        self.leader.store(reg.leader, Ordering::Release);
        let assignment = Assignment {
            leader_epoch: reg.leader_epoch,
            partition_epoch: reg.partition_epoch,
            replicas: reg.replicas.clone(),
            isr: reg.isr.clone(),
        };
        let leo = self.log.log_end_offset();
        let mut st = self.leader_state.lock();
        if reg.leader != node_id {
            if st.take().is_some() {
                tracing::info!(tp = %self.tp, leader = reg.leader, epoch = reg.leader_epoch, "became follower");
            }
            drop(st);
            self.changed.send_modify(|v| *v = v.wrapping_add(1));
            // A consumer reading from the old leader must now look elsewhere.
            self.fetch_watchers.wake();
            return;
        }
        match st.as_mut() {
            Some(s) if s.leader_epoch() == reg.leader_epoch => {
                if s.update_assignment(assignment, leo, now) {
                    let hw = s.high_watermark();
                    drop(st);
                    self.publish_hw(hw);
                }
            }
            _ => {
                if self.log.latest_epoch().is_none_or(|e| e < reg.leader_epoch) {
                    match self.log.assign_epoch_start(reg.leader_epoch, leo) {
                        Ok(()) => {}
                        // Said once per directory by the log; the first append that fits
                        // records the epoch.
                        Err(e @ StorageError::DiskFull(_)) => {
                            tracing::debug!(tp = %self.tp, error = %e, "cannot record leader epoch yet")
                        }
                        Err(e) => {
                            tracing::error!(tp = %self.tp, error = %e, "cannot record leader epoch")
                        }
                    }
                }
                let hw = self.hw.load(Ordering::Acquire).min(leo);
                let s = LeaderState::new(node_id, assignment, leo, hw, now);
                tracing::info!(tp = %self.tp, epoch = reg.leader_epoch, isr = ?reg.isr, hw = s.high_watermark(), "became leader");
                let hw = s.high_watermark();
                *st = Some(s);
                drop(st);
                self.publish_hw(hw);
            }
        }
    }
}

struct DurableWaiter {
    log: Arc<Log>,
    offset: i64,
    done: oneshot::Sender<Result<(), String>>,
}

/// Manages hosted partitions and their durability.
pub struct ReplicaManager {
    node_id: i32,
    logs: LogManager,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    by_id: RwLock<HashMap<Uuid, String>>,
    waiters: Mutex<Vec<DurableWaiter>>,
    flush_needed: Notify,
    /// Identifies each parked delayed fetch in the watcher lists of its partitions.
    next_fetch_id: std::sync::atomic::AtomicU64,
    /// How many times parked delayed fetches were woken and re-read their partitions (a
    /// purgatory metric; it shows that traffic on one partition leaves others' fetches idle).
    delayed_fetch_checks: std::sync::atomic::AtomicU64,
    roles: watch::Sender<u64>,
    proposals: Mutex<Vec<(Arc<Partition>, IsrProposal)>>,
    proposals_ready: Notify,
    /// High watermarks read from `replication-offset-checkpoint` at startup, taken by each
    /// partition when it is first created from the metadata image.
    checkpointed_hws: Mutex<HashMap<TopicPartition, i64>>,
    /// What the high-watermark checkpoint file holds, to skip identical rewrites.
    last_hw_checkpoint: Mutex<Option<HashMap<TopicPartition, i64>>>,
    /// On-disk logs missing from the image are deleted only from images at or past this
    /// metadata offset (see [`ReplicaManager::delete_strays_from`]).
    stray_floor: AtomicI64,
    /// Serializes metadata application and remembers what it needs between deltas.
    meta: Mutex<metadata_apply::ApplyState>,
    /// Per-topic bytes and messages in/out (Kafka's `BrokerTopicMetrics`).
    pub topic_stats: crate::metrics::topic_stats::BrokerTopicStats,
    /// Time of each log fsync (group commit and periodic flush; Kafka's `LogFlushStats`).
    pub flush_latency: crate::request_metrics::LatencyHistogram,
    /// ISR shrinks the controller accepted for partitions led here (`IsrShrinksPerSec`).
    pub isr_shrinks: std::sync::atomic::AtomicU64,
    /// ISR expansions the controller accepted (`IsrExpandsPerSec`).
    pub isr_expands: std::sync::atomic::AtomicU64,
    /// Tiered storage's reads below the local log start (set at startup when enabled).
    pub remote_log: std::sync::OnceLock<Arc<crate::remote_log_manager::RemoteLogManager>>,
}

/// The high watermarks of every partition of a log dir (Kafka's file name and format).
pub const REPLICATION_OFFSET_CHECKPOINT_FILE: &str = "replication-offset-checkpoint";

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl ReplicaManager {
    /// Opens every log in `log_dir` (with recovery) for node `node_id`.
    pub fn open(node_id: i32, logs: LogManager) -> Self {
        let path = logs.log_dir().join(REPLICATION_OFFSET_CHECKPOINT_FILE);
        let checkpointed_hws = match nagare_storage::read_offset_checkpoint(&path) {
            Ok(m) => m,
            Err(e) => {
                // Safe to ignore: the high watermarks then start at the log starts, as
                // before this file existed, and move up with the ISR's fetches.
                tracing::warn!(path = %path.display(), error = %e, "unreadable high-watermark checkpoint; ignoring it");
                HashMap::new()
            }
        };
        ReplicaManager {
            node_id,
            logs,
            partitions: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            waiters: Mutex::new(Vec::new()),
            flush_needed: Notify::new(),
            next_fetch_id: std::sync::atomic::AtomicU64::new(0),
            delayed_fetch_checks: std::sync::atomic::AtomicU64::new(0),
            roles: watch::channel(0).0,
            proposals: Mutex::new(Vec::new()),
            proposals_ready: Notify::new(),
            checkpointed_hws: Mutex::new(checkpointed_hws),
            last_hw_checkpoint: Mutex::new(None),
            stray_floor: AtomicI64::new(0),
            meta: Mutex::new(Default::default()),
            topic_stats: Default::default(),
            flush_latency: Default::default(),
            isr_shrinks: Default::default(),
            isr_expands: Default::default(),
            remote_log: std::sync::OnceLock::new(),
        }
    }

    /// Deletes on-disk logs the metadata does not have only from images at or past `offset`:
    /// at startup, the end of the local metadata log. An image replayed only part of the way
    /// there may simply not have reached a topic's records yet, and deleting its log would
    /// lose its data (Kafka finds stray logs only once its first image is complete).
    pub fn delete_strays_from(&self, offset: i64) {
        self.stray_floor.store(offset, Ordering::Release);
    }

    /// A hosted partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&TopicPartition {
                topic: topic.to_string(),
                partition,
            })
            .cloned()
    }

    /// The partition as a client may use it: hosted here, led by this node, and at the
    /// leader epoch the client expects (KIP-320; -1 skips that check).
    pub fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let p = self
            .partition(topic, partition)
            .ok_or(ReplicaError::UnknownTopicOrPartition)?;
        check_leader_epoch(current_leader_epoch, p.epoch())?;
        if p.leader.load(Ordering::Acquire) != self.node_id {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        Ok(p)
    }

    /// The partition as a consumer may read it (KIP-392): hosted here as leader or follower,
    /// at the leader epoch the client expects (-1 skips that check). Kafka lets consumers
    /// that send client metadata (Fetch v11+) read from followers; `leader_only` is set for
    /// older ones (NOT_LEADER_OR_FOLLOWER from a follower).
    pub fn readable_partition(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
        leader_only: bool,
    ) -> Result<Arc<Partition>, ReplicaError> {
        if leader_only {
            return self.leader_partition(topic, partition, current_leader_epoch);
        }
        let p = self
            .partition(topic, partition)
            .ok_or(ReplicaError::UnknownTopicOrPartition)?;
        check_leader_epoch(current_leader_epoch, p.epoch())?;
        Ok(p)
    }

    /// Topic name for an id (for Fetch v13+).
    pub fn topic_name(&self, id: &Uuid) -> Option<String> {
        self.by_id.read().get(id).cloned()
    }

    /// Every hosted partition.
    pub fn all_partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// A receiver that changes whenever the image changed leaders or followers here.
    pub fn subscribe_roles(&self) -> watch::Receiver<u64> {
        self.roles.subscribe()
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// Partitions this broker follows whose leader is `source`.
    pub fn followed_from(&self, source: i32) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .values()
            .filter(|p| p.leader.load(Ordering::Acquire) == source && source != self.node_id)
            .cloned()
            .collect()
    }

    /// The leaders this broker follows partitions of.
    pub fn fetch_sources(&self) -> std::collections::BTreeSet<i32> {
        self.partitions
            .read()
            .values()
            .map(|p| p.leader.load(Ordering::Acquire))
            .filter(|l| *l >= 0 && *l != self.node_id)
            .collect()
    }

    /// Queues an ISR change for the AlterPartition sender.
    pub fn propose_isr(&self, partition: Arc<Partition>, proposal: IsrProposal) {
        tracing::info!(tp = %partition.tp, isr = ?proposal.new_isr, partition_epoch = proposal.partition_epoch, "proposing ISR change");
        self.proposals.lock().push((partition, proposal));
        self.proposals_ready.notify_one();
    }

    /// Waits for queued ISR proposals and takes them.
    pub async fn take_isr_proposals(&self) -> Vec<(Arc<Partition>, IsrProposal)> {
        loop {
            let v = std::mem::take(&mut *self.proposals.lock());
            if !v.is_empty() {
                return v;
            }
            self.proposals_ready.notified().await;
        }
    }

    /// Registers interest in `log` being fsynced past `last_offset` (group commit) and
    /// returns a future for it. Registration happens now, so several waits registered
    /// before awaiting any of them are served by the same fsync round.
    fn wait_durable(
        &self,
        log: Arc<Log>,
        last_offset: i64,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let rx = if log.recovery_point() > last_offset {
            None
        } else {
            let (tx, rx) = oneshot::channel();
            self.waiters.lock().push(DurableWaiter {
                log,
                offset: last_offset,
                done: tx,
            });
            self.flush_needed.notify_one();
            Some(rx)
        };
        async move {
            match rx {
                None => Ok(()),
                Some(rx) => rx
                    .await
                    .map_err(|_| "the flusher stopped before the write was durable".to_string())?,
            }
        }
    }

    /// The delayed-fetch purgatory's size: parked fetches summed over the partitions they
    /// watch (a fetch waiting on three partitions counts three times, as Kafka's
    /// `PurgatorySize` counts watcher-list entries).
    pub fn delayed_fetch_watchers(&self) -> usize {
        self.all_partitions()
            .iter()
            .map(|p| p.fetch_watchers.len())
            .sum()
    }

    /// Fsyncs every log with unflushed data (the periodic flush for acks 0/1).
    pub fn flush_all(&self) {
        for p in self.all_partitions() {
            if p.log.recovery_point() < p.log.log_end_offset() {
                let started = std::time::Instant::now();
                if let Err(e) = p.log.flush() {
                    tracing::error!(tp = %p.tp, error = %e, "periodic flush failed");
                }
                self.flush_latency.observe(started.elapsed());
            }
        }
    }

    /// One pass of the log cleaner (compaction, Kafka's `CleanerThread`) over the hosted
    /// logs with `cleanup.policy=compact`. Returns how many logs it cleaned. Blocking: run it
    /// off the async runtime.
    pub fn clean_logs(&self, settings: &nagare_storage::CleanerConfig, now_ms: i64) -> usize {
        let logs: Vec<_> = self
            .all_partitions()
            .into_iter()
            .map(|p| (p.tp.clone(), p.log.clone()))
            .collect();
        self.logs
            .cleaner()
            .clean_logs(&logs, settings, now_ms)
            .len()
    }

    /// Retention for every hosted log (below its high watermark and any open transaction),
    /// and expiry of producer ids
    /// idle for longer than `producer.id.expiration.ms` (so producer state does not grow
    /// without bound).
    pub fn enforce_retention(&self, producer_id_expiration_ms: i64) {
        let now = now_ms();
        for p in self.all_partitions() {
            // Bounded by the high watermark (Kafka's rule): a leader never deletes what its
            // followers have not fetched yet, nor moves its log start past what consumers may
            // read. The log bounds it further by its first unstable offset: a segment holding
            // records of an open transaction stays until the transaction is decided.
            // A tiered partition's local log also keeps everything not yet uploaded
            // (KIP-405); its retention config holds `local.retention.*`.
            let bound = p.tier.retention_bound(p.high_watermark());
            if let Err(e) = p.log.enforce_retention_below(now, bound) {
                tracing::error!(tp = %p.tp, error = %e, "retention failed");
            }
            let n = p
                .log
                .remove_expired_producers(now, producer_id_expiration_ms);
            if n > 0 {
                tracing::debug!(tp = %p.tp, expired = n, "expired idle producer ids");
            }
        }
    }

    /// Writes the recovery-point and log-start checkpoints.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        self.logs.checkpoint()
    }

    /// Writes `replication-offset-checkpoint` (Kafka's `checkpointHighWatermarks`): the high
    /// watermark of every hosted partition, plus the checkpointed ones of logs on disk not
    /// yet taken over from the metadata image (so a checkpoint written early after startup
    /// does not forget them). Identical contents are not rewritten.
    pub fn checkpoint_high_watermarks(&self) -> Result<(), StorageError> {
        let mut hws: HashMap<TopicPartition, i64> = self
            .all_partitions()
            .iter()
            .map(|p| (p.tp.clone(), p.high_watermark()))
            .collect();
        for (tp, hw) in self.checkpointed_hws.lock().iter() {
            if !hws.contains_key(tp) && self.logs.get(tp).is_some() {
                hws.insert(tp.clone(), *hw);
            }
        }
        let mut last = self.last_hw_checkpoint.lock();
        if last.as_ref() == Some(&hws) {
            return Ok(());
        }
        *last = None;
        nagare_storage::write_offset_checkpoint(
            &self.logs.log_dir().join(REPLICATION_OFFSET_CHECKPOINT_FILE),
            &hws,
        )?;
        *last = Some(hws);
        Ok(())
    }

    /// Kafka's offline log directory: once a write or fsync failed in any log of the (single)
    /// log directory, every partition of it answers KAFKA_STORAGE_ERROR to producers,
    /// consumers and followers (`ReplicaManager.handleLogDirFailure` marks them offline):
    /// their files can no longer be trusted. A full disk does not count
    /// ([`StorageError::DiskFull`] refuses appends only, per log).
    pub fn check_log_dir_online(&self) -> Result<(), ReplicaError> {
        if self.logs.is_offline() {
            return Err(ReplicaError::Storage(StorageError::LogDirFailed));
        }
        Ok(())
    }

    /// True once the log directory failed (see [`ReplicaManager::check_log_dir_online`]).
    pub fn log_dir_offline(&self) -> bool {
        self.logs.is_offline()
    }

    /// The partitions whose log failed, for the operator's log line.
    pub fn failed_logs(&self) -> Vec<TopicPartition> {
        self.logs.failed_logs()
    }

    /// Clean shutdown: write the high-watermark checkpoint, flush and close every log, write
    /// the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        let hw = self.checkpoint_high_watermarks();
        if let Err(e) = &hw {
            tracing::error!(error = %e, "cannot write the high-watermark checkpoint");
        }
        self.logs.shutdown()?;
        hw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use nagare_storage::LogConfig;

    fn batch(base: i64, n: usize) -> BytesMut {
        batch_in_epoch(base, n, 0)
    }

    fn batch_in_epoch(base: i64, n: usize, epoch: i32) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: epoch,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base + i as i64,
                sequence: -1,
                timestamp: 1_700_000_000_000,
                key: None,
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .expect("encode");
        buf
    }

    fn partition(rm: &ReplicaManager, tp: &TopicPartition) -> Arc<Partition> {
        let log = rm
            .logs
            .get_or_create(tp, LogConfig::default(), now_ms())
            .expect("log");
        let hw = rm.checkpointed_hws.lock().remove(tp);
        let p = Arc::new(Partition::new(
            tp.clone(),
            Uuid::nil(),
            log,
            0,
            2,
            hw,
            Default::default(),
        ));
        rm.partitions.write().insert(tp.clone(), p.clone());
        p
    }

    /// KIP-405's follower path on the leader: a follower below the local log start of a
    /// tiered partition, at an offset the remote log holds, gets OFFSET_MOVED_TO_TIERED_STORAGE
    /// (109), not OFFSET_OUT_OF_RANGE (whose answer, the remote log start, is below its log
    /// end, so it would retry the same fetch forever).
    #[test]
    fn follower_below_the_local_log_start_of_a_tiered_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
            .expect("open");
        let rm = ReplicaManager::open(1, logs);
        let p = partition(&rm, &TopicPartition::new("t", 0));
        p.log
            .append_as_follower(batch(0, 10), now_ms())
            .expect("append");
        let reg = PartitionRegistration {
            replicas: vec![1, 2],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 1,
            partition_epoch: 1,
        };
        let now = now_ms();
        p.apply_registration(1, &reg, now);
        p.log.delete_records_before(6).expect("local retention");
        let code = |r: Result<(i64, bool, Option<IsrProposal>), ReplicaError>| {
            r.err().map_or(0, |e| e.code())
        };
        assert_eq!(code(p.follower_fetch(2, 3, now)), 1, "not tiered");
        p.tier.set_enabled(true);
        assert_eq!(code(p.follower_fetch(2, 3, now)), 1, "remote log unknown");
        p.tier.publish(Some(5), Some(2));
        assert_eq!(code(p.follower_fetch(2, 3, now)), 109);
        assert_eq!(
            code(p.follower_fetch(2, 1, now)),
            1,
            "below the remote log too"
        );
        assert_eq!(code(p.follower_fetch(2, 6, now)), 0);
    }

    /// KIP-392's rack-aware choice on the leader: the most caught-up in-sync live follower
    /// in the client's rack that has the fetch offset; the leader when it is in that rack or
    /// nobody fits.
    #[test]
    fn rack_aware_preferred_read_replica() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
            .expect("open");
        let rm = ReplicaManager::open(1, logs);
        let tp = TopicPartition::new("t", 0);
        let p = partition(&rm, &tp);
        p.log
            .append_as_follower(batch(0, 10), now_ms())
            .expect("append");
        let reg = PartitionRegistration {
            replicas: vec![1, 2, 3, 4],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 1,
            partition_epoch: 1,
        };
        let now = now_ms();
        p.apply_registration(1, &reg, now);
        assert!(p.is_leader());
        p.follower_fetch(2, 10, now).expect("fetch 2");
        p.follower_fetch(3, 8, now).expect("fetch 3");
        p.follower_fetch(4, 10, now).expect("fetch 4");
        let racks = |fenced: i32| {
            move |id: i32| match id {
                _ if id == fenced => None,
                1 => Some("a".to_string()),
                2..=4 => Some("b".to_string()),
                _ => None,
            }
        };
        let pick = |rack: &str, offset: i64, fenced: i32| {
            p.preferred_read_replica(1, rack, offset, now, racks(fenced))
        };
        assert_eq!(pick("b", 5, 0), Some(2), "largest log end in the ISR");
        assert_eq!(pick("b", 9, 0), Some(2));
        assert_eq!(
            pick("b", 9, 2),
            None,
            "3 lacks offset 9, 4 is not in the ISR"
        );
        assert_eq!(pick("b", 5, 2), Some(3), "a fenced broker is never chosen");
        assert_eq!(pick("b", 11, 0), None, "nobody has offset 11");
        assert_eq!(pick("a", 5, 0), None, "the leader's own rack");
        assert_eq!(pick("c", 5, 0), None, "no replica in that rack");
        assert_eq!(pick("", 5, 0), None, "no client rack");
    }

    /// KIP-320's check on the leader (log: epoch 0 at 0..5, epoch 2 at 5..10).
    #[test]
    fn diverging_epoch_of_follower_fetches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
            .expect("open");
        let rm = ReplicaManager::open(1, logs);
        let p = partition(&rm, &TopicPartition::new("t", 0));
        for (base, epoch) in [(0, 0), (5, 2)] {
            p.log
                .append_as_follower(batch_in_epoch(base, 5, epoch), now_ms())
                .expect("append");
        }
        assert_eq!(p.diverging_epoch(-1, 3), None, "no epoch: nothing to check");
        assert_eq!(
            p.diverging_epoch(2, 10),
            None,
            "caught up in the latest epoch"
        );
        assert_eq!(p.diverging_epoch(2, 7), None);
        assert_eq!(
            p.diverging_epoch(2, 12),
            Some((2, 10)),
            "past the leader's end"
        );
        assert_eq!(p.diverging_epoch(0, 5), None, "epoch 0 ends at 5 here too");
        assert_eq!(
            p.diverging_epoch(0, 6),
            Some((0, 5)),
            "epoch 0 went further there"
        );
        assert_eq!(
            p.diverging_epoch(1, 5),
            Some((0, 5)),
            "epoch 1 never existed here"
        );
        assert_eq!(p.diverging_epoch(3, 10), None, "unknown here: not reported");
    }

    /// `replication-offset-checkpoint` round trip: a follower's high watermark is written on
    /// shutdown and read back at startup, clamped to the log.
    #[test]
    fn high_watermarks_survive_a_restart_clamped_to_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let open = || {
            let logs =
                LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
                    .expect("open");
            ReplicaManager::open(1, logs)
        };
        let a = TopicPartition::new("a", 0);
        let b = TopicPartition::new("b", 1);
        {
            let rm = open();
            for tp in [&a, &b] {
                let p = partition(&rm, tp);
                for base in [0, 5] {
                    p.log
                        .append_as_follower(batch(base, 5), now_ms())
                        .expect("append");
                }
                assert_eq!(p.high_watermark(), 0, "no checkpoint: the log start");
            }
            rm.partition("a", 0).expect("a").set_follower_hw(7);
            rm.partition("b", 1).expect("b").set_follower_hw(10);
            rm.shutdown().expect("shutdown");
        }
        let text = std::fs::read_to_string(dir.path().join(REPLICATION_OFFSET_CHECKPOINT_FILE))
            .expect("checkpoint file");
        assert_eq!(text, "0\n2\na 0 7\nb 1 10\n");
        {
            let rm = open();
            // Written before the partitions exist again: the checkpointed values are kept.
            rm.checkpoint_high_watermarks().expect("early checkpoint");
            let text = std::fs::read_to_string(dir.path().join(REPLICATION_OFFSET_CHECKPOINT_FILE))
                .expect("checkpoint file");
            assert_eq!(text, "0\n2\na 0 7\nb 1 10\n");
            let pa = partition(&rm, &a);
            assert_eq!(pa.high_watermark(), 7);
            // Becoming the leader of an RF=3 partition whose followers have not fetched yet:
            // consumers see up to the checkpointed high watermark at once (without the
            // checkpoint it would be the log start until every ISR member fetched).
            let reg = PartitionRegistration {
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
                leader: 1,
                leader_epoch: 1,
                partition_epoch: 1,
            };
            pa.apply_registration(1, &reg, now_ms());
            assert!(pa.is_leader());
            assert_eq!(pa.high_watermark(), 7);
            let pb = partition(&rm, &b);
            assert_eq!(pb.high_watermark(), 10);
            // The log lost its tail (e.g. truncated): the HW never passes the log end.
            pb.log.truncate_to(5).expect("truncate");
            assert_eq!(pb.high_watermark(), 5);
            rm.checkpoint_high_watermarks().expect("checkpoint");
        }
        let text = std::fs::read_to_string(dir.path().join(REPLICATION_OFFSET_CHECKPOINT_FILE))
            .expect("checkpoint file");
        assert_eq!(text, "0\n2\na 0 7\nb 1 5\n");
    }
}
