//! Reads for Fetch and the delayed-fetch purgatory (Kafka's `ReplicaManager.fetchMessages`
//! with `DelayedFetch`).
//!
//! - Each partition is read from the batch containing the fetch offset, whole batches,
//!   bounded by the high watermark for read_uncommitted consumers, the last stable offset for
//!   read_committed ones (with the aborted transactions overlapping what is returned, KIP-98)
//!   and the log end for followers, by the partition's and the response's byte limits, at
//!   least one batch (KIP-74).
//! - A follower's fetch (replica id >= 0) updates its state on the leader first (its log
//!   end, caught-up time, the high watermark, maybe an ISR expansion), and gets the leader's
//!   end of a diverging epoch instead of records (KIP-320).
//! - Consumers with client metadata (Fetch v11+) may read from followers, up to their high
//!   watermark, and a leader with the rack-aware selector redirects them to an in-sync
//!   follower in their rack (KIP-392).
//! - With fewer than `min_bytes` available the fetch parks until `max_wait`. The purgatory is
//!   keyed by partition: a parked fetch registers on the partitions it asked for and is woken
//!   only by an append, a high-watermark move or a role change on one of them, so a produce
//!   to one partition never wakes fetches parked on others (with one global signal, every
//!   produce re-read every parked fetch). The last stable offset only moves on those same
//!   events (a marker is an append; a transaction's records become stable once the high
//!   watermark passes its marker), so read_committed fetches need no other wake-up.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nagare_storage::FileSlice;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::{now_ms, Partition, ReplicaError, ReplicaManager};

/// Which records a consumer may see (Fetch's and ListOffsets' `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything below the high watermark.
    ReadUncommitted,
    /// Below the last stable offset (KIP-98): records of decided transactions only; the
    /// client drops those of aborted transactions, which the fetch lists for it.
    ReadCommitted,
}

/// An aborted transaction overlapping a read_committed fetch (Fetch's
/// `aborted_transactions`): the client skips this producer's records from `first_offset`
/// up to its abort marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// The transaction's first offset.
    pub first_offset: i64,
}

/// A consumer's client metadata (Fetch v11+, KIP-392): its presence lets the consumer read
/// from followers.
#[derive(Clone)]
pub struct ClientMetadata {
    /// The consumer's `client.rack` (may be empty).
    pub rack_id: String,
    /// With `replica.selector.class` set to the rack-aware selector: the rack of a live
    /// (unfenced) broker, `None` for unknown or fenced ones. `None` keeps consumers on the
    /// leader (Kafka's default selector).
    pub rack_of: Option<Arc<dyn Fn(i32) -> Option<String> + Send + Sync>>,
}

/// One partition of a fetch.
#[derive(Debug, Clone)]
pub struct FetchPartitionRequest {
    /// Topic name (empty: a topic id this broker does not know).
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Where to read from (a follower's log end).
    pub fetch_offset: i64,
    /// This partition's byte limit.
    pub max_bytes: i32,
    /// The leader epoch the client expects (KIP-320), -1 for any.
    pub current_leader_epoch: i32,
    /// The epoch of the follower's last fetched record (KIP-320), -1 if unknown.
    pub last_fetched_epoch: i32,
    /// A Nagare follower's fsynced log end, when it reports it apart from `fetch_offset`
    /// (`replica_fetcher::DURABLE_OFFSET_TAG`): the high watermark counts only this much.
    pub durable_offset: Option<i64>,
}

/// A fetch (Kafka's `FetchParams`).
#[derive(Clone)]
pub struct FetchParams {
    /// The fetching follower's id, or -1 for a consumer.
    pub replica_id: i32,
    /// How long to wait for `min_bytes`.
    pub max_wait: Duration,
    /// Bytes wanted before answering (at least one is always wanted).
    pub min_bytes: usize,
    /// The response's byte limit.
    pub max_bytes: usize,
    /// What a consumer may see.
    pub isolation: IsolationLevel,
    /// A consumer's client metadata (KIP-392), if it sent any.
    pub client_metadata: Option<ClientMetadata>,
    /// The partitions, in response order.
    pub partitions: Vec<FetchPartitionRequest>,
}

/// What one partition answers.
#[derive(Debug, Default)]
pub struct FetchPartitionResult {
    /// Why nothing could be read, if so.
    pub error: Option<ReplicaError>,
    /// The high watermark, -1 if unknown.
    pub high_watermark: i64,
    /// The last stable offset, -1 if unknown.
    pub last_stable_offset: i64,
    /// read_committed only (`None` otherwise, as Kafka sends null): the aborted transactions
    /// overlapping the records returned, in first-offset order.
    pub aborted_transactions: Option<Vec<AbortedTransaction>>,
    /// The log start offset, -1 if unknown.
    pub log_start_offset: i64,
    /// KIP-320: the leader's (epoch, end offset) for a follower whose tail diverges.
    pub diverging_epoch: Option<(i32, i64)>,
    /// KIP-392: the replica the consumer should read from instead.
    pub preferred_read_replica: Option<i32>,
    /// Whole batches to send, as a file region.
    pub records: Option<FileSlice>,
    /// Tiered storage: the fetch offset lies below the local log start, in the remote log;
    /// `(offset, max bytes)` to read from the object store before answering.
    pub remote_read: Option<(i64, usize)>,
}

impl FetchPartitionResult {
    fn unknown() -> Self {
        FetchPartitionResult {
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            ..Default::default()
        }
    }

    fn failed(error: ReplicaError) -> Self {
        FetchPartitionResult {
            error: Some(error),
            ..FetchPartitionResult::unknown()
        }
    }

    /// Answered at once, whatever `min_bytes` says (Kafka's `anyPreferredReadReplica`,
    /// `hasDivergingEpoch` and errors).
    fn completes_at_once(&self) -> bool {
        self.error.is_some()
            || self.preferred_read_replica.is_some()
            || self.diverging_epoch.is_some()
            || self.remote_read.is_some()
    }
}

/// The delayed fetches parked on one partition.
#[derive(Default)]
pub(super) struct FetchWatchers {
    parked: Mutex<HashMap<u64, Arc<Notify>>>,
}

impl FetchWatchers {
    /// Wakes every fetch parked here (each re-reads its partitions).
    pub(super) fn wake(&self) {
        for n in self.parked.lock().values() {
            n.notify_one();
        }
    }

    /// How many fetches are parked here.
    pub(super) fn len(&self) -> usize {
        self.parked.lock().len()
    }
}

/// A parked fetch's registration on its partitions; dropping it unregisters.
struct Watch {
    id: u64,
    notify: Arc<Notify>,
    partitions: Vec<Arc<Partition>>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        for p in &self.partitions {
            p.fetch_watchers.parked.lock().remove(&self.id);
        }
    }
}

impl ReplicaManager {
    /// Reads every partition of `params`; if fewer than `min_bytes` are available, parks
    /// until one of the partitions asked for changes or `max_wait` passes, then reads again.
    /// Results come in the order of `params.partitions`.
    pub async fn fetch(&self, params: &FetchParams) -> Vec<FetchPartitionResult> {
        let deadline = Instant::now() + params.max_wait;
        let mut watch: Option<Watch> = None;
        loop {
            let mut results = self.read_partitions(params);
            if results.iter().any(|r| r.remote_read.is_some()) {
                // Kafka's remote fetch purgatory: the object-store reads run as async tasks
                // (bounded by `remote.log.reader.threads`), never on a network thread; the
                // fetch answers once they are done.
                self.read_remote(params, &mut results).await;
                return results;
            }
            let bytes: usize = results
                .iter()
                .map(|r| r.records.as_ref().map(|s| s.len).unwrap_or(0))
                .sum();
            let now = Instant::now();
            if bytes >= params.min_bytes.max(1)
                || results.iter().any(FetchPartitionResult::completes_at_once)
                || now >= deadline
            {
                return results;
            }
            let Some(w) = &watch else {
                // Kafka's tryCompleteElseWatch: register on the partitions, then read once
                // more, so an append between the read and the registration is not missed.
                watch = Some(self.watch(params));
                continue;
            };
            if tokio::time::timeout(deadline - now, w.notify.notified())
                .await
                .is_err()
            {
                return self.read_partitions(params);
            }
            self.delayed_fetch_checks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many times parked fetches were woken to read again (since startup).
    pub fn delayed_fetch_checks(&self) -> u64 {
        self.delayed_fetch_checks.load(Ordering::Relaxed)
    }

    fn watch(&self, params: &FetchParams) -> Watch {
        let id = self.next_fetch_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut partitions: Vec<Arc<Partition>> = Vec::new();
        for t in &params.partitions {
            let Some(p) = self.partition(&t.topic, t.partition) else {
                continue;
            };
            if partitions.iter().any(|q| Arc::ptr_eq(q, &p)) {
                continue;
            }
            p.fetch_watchers.parked.lock().insert(id, notify.clone());
            partitions.push(p);
        }
        Watch {
            id,
            notify,
            partitions,
        }
    }

    fn read_partitions(&self, params: &FetchParams) -> Vec<FetchPartitionResult> {
        let mut remaining = params.max_bytes;
        let mut any_data = false;
        let now = now_ms();
        params
            .partitions
            .iter()
            .map(|t| {
                let r = self.read_partition(params, t, remaining, !any_data, now);
                if let Some(s) = &r.records {
                    any_data = true;
                    remaining = remaining.saturating_sub(s.len);
                }
                r
            })
            .collect()
    }

    fn read_partition(
        &self,
        params: &FetchParams,
        t: &FetchPartitionRequest,
        remaining: usize,
        min_one_batch: bool,
        now: i64,
    ) -> FetchPartitionResult {
        if t.topic.is_empty() {
            return FetchPartitionResult::failed(ReplicaError::UnknownTopicId);
        }
        let replica_id = params.replica_id;
        // Followers fetch from leaders only; consumers with client metadata (v11+) may read
        // from any replica (KIP-392).
        let p = match self.readable_partition(
            &t.topic,
            t.partition,
            t.current_leader_epoch,
            params.client_metadata.is_none(),
        ) {
            Ok(p) => p,
            Err(e) => return FetchPartitionResult::failed(e),
        };
        if let Err(e) = self.check_log_dir_online() {
            return FetchPartitionResult::failed(e);
        }
        let is_leader = p.is_leader();
        if replica_id < 0 && !is_leader {
            p.note_follower_read();
        }
        // KIP-320: a follower whose last fetched epoch ends earlier on the leader (or is
        // unknown below a later one) has a divergent tail. It gets the leader's end of that
        // epoch instead of records and truncates; its fetch offset is not a log end the
        // leader can count (Kafka's `Partition.fetchRecords`).
        if replica_id >= 0 {
            if let Some(d) = p.diverging_epoch(t.last_fetched_epoch, t.fetch_offset) {
                let hw = p.high_watermark();
                return FetchPartitionResult {
                    high_watermark: hw,
                    last_stable_offset: p.last_stable_offset_at(hw),
                    log_start_offset: p.log.log_start_offset(),
                    diverging_epoch: Some(d),
                    ..FetchPartitionResult::unknown()
                };
            }
        }
        // A follower's fetch offset is its log end: update its state on the leader first,
        // so the high watermark in the answer already counts it (a move wakes the consumers
        // parked on this partition).
        let (hw, max_offset) = if replica_id >= 0 {
            match p.follower_fetch_durable(replica_id, t.fetch_offset, t.durable_offset, now) {
                Ok((hw, _moved, proposal)) => {
                    if let Some(proposal) = proposal {
                        self.propose_isr(p.clone(), proposal);
                    }
                    (hw, p.log.log_end_offset())
                }
                Err(e) => return FetchPartitionResult::failed(e),
            }
        } else {
            let hw = p.high_watermark();
            (hw, hw)
        };
        // Every answer carries the last stable offset (Kafka's `LogReadResult`), whatever
        // the isolation level; a read_committed consumer also reads only below it.
        let lso = p.last_stable_offset_at(hw);
        let read_committed = replica_id < 0 && params.isolation == IsolationLevel::ReadCommitted;
        let max_offset = if read_committed { lso } else { max_offset };
        let mut out = FetchPartitionResult {
            high_watermark: hw,
            last_stable_offset: lso,
            // Consumers see the whole log's start (remote included, KIP-405); followers the
            // leader's local log start, which they follow (they fetch no remote data).
            log_start_offset: if replica_id >= 0 {
                p.log.log_start_offset()
            } else {
                p.earliest_offset()
            },
            aborted_transactions: read_committed.then(Vec::new),
            ..FetchPartitionResult::unknown()
        };
        if let (Some(cm), true) = (&params.client_metadata, is_leader) {
            if let Some(id) = self.preferred_read_replica(&p, cm, t.fetch_offset, now) {
                // The consumer fetches from `id` from now on; no records from here.
                out.preferred_read_replica = Some(id);
                return out;
            }
        }
        if t.fetch_offset >= max_offset && t.fetch_offset <= p.log.log_end_offset() {
            return out;
        }
        let limit = (t.max_bytes.max(0) as usize).min(remaining);
        match p.log.read(t.fetch_offset, limit, min_one_batch, max_offset) {
            Ok(data) => {
                out.records = data.slice.filter(|s| s.len > 0);
                if read_committed && out.records.is_some() {
                    match p.aborted_transactions(t.fetch_offset, max_offset) {
                        Ok(list) => out.aborted_transactions = Some(list),
                        Err(e) => {
                            // Records without their abort information would show aborted
                            // data as committed: the partition fails instead (Kafka's
                            // KafkaStorageException from the index read).
                            tracing::error!(tp = %p.tp, offset = t.fetch_offset, error = %e, "cannot read the aborted-transaction index");
                            out.records = None;
                            out.error = Some(e);
                        }
                    }
                }
            }
            Err(nagare_storage::StorageError::OffsetOutOfRange { log_start, .. })
                if replica_id < 0
                    && p.tier.enabled()
                    && t.fetch_offset < log_start
                    && p.tier
                        .remote_log_start()
                        .is_some_and(|s| t.fetch_offset >= s) =>
            {
                // KIP-405: below the local log start, in the remote log.
                out.remote_read = Some((t.fetch_offset, limit));
            }
            Err(e) => {
                let e = ReplicaError::from(e);
                if e.code() != 1 {
                    tracing::warn!(tp = %p.tp, offset = t.fetch_offset, error = %e, "fetch read failed");
                }
                out.error = Some(e);
            }
        }
        out
    }

    /// Completes the partitions whose fetch offset is in the remote log: reads their batches
    /// from the object store and stages them in an unlinked file so the zero-copy response
    /// path sends them like local data. A read that fails answers KAFKA_STORAGE_ERROR (the
    /// client retries); an offset the remote log no longer holds OFFSET_OUT_OF_RANGE.
    async fn read_remote(&self, params: &FetchParams, results: &mut [FetchPartitionResult]) {
        let rlm = self.remote_log.get().cloned();
        for (t, r) in params.partitions.iter().zip(results.iter_mut()) {
            let Some((offset, limit)) = r.remote_read.take() else {
                continue;
            };
            let Some(p) = self.partition(&t.topic, t.partition) else {
                r.error = Some(ReplicaError::UnknownTopicOrPartition);
                continue;
            };
            let Some(rlm) = rlm.as_ref() else {
                r.error = Some(ReplicaError::OffsetOutOfRange(offset));
                continue;
            };
            match rlm
                .read(p.topic_id, t.partition, offset, limit.max(1))
                .await
            {
                Ok(Some(bytes)) if !bytes.is_empty() => {
                    if params.replica_id < 0 && params.isolation == IsolationLevel::ReadCommitted {
                        // KIP-98 over tiered data: the aborted transactions overlapping what
                        // is returned, from the remote transaction indexes and, past them,
                        // the local log.
                        let upper = nagare_remote_storage::rsm::records_end_offset(&bytes)
                            .unwrap_or(offset + 1);
                        let list = match rlm
                            .aborted_transactions(p.topic_id, t.partition, offset, upper)
                            .await
                        {
                            Ok((remote, complete)) => {
                                let mut list: Vec<AbortedTransaction> = remote
                                    .into_iter()
                                    .map(|(producer_id, first_offset)| AbortedTransaction {
                                        producer_id,
                                        first_offset,
                                    })
                                    .collect();
                                if !complete && upper > p.log.log_start_offset() {
                                    match p.aborted_transactions(p.log.log_start_offset(), upper) {
                                        Ok(local) => list.extend(
                                            local.into_iter().filter(|a| a.first_offset < upper),
                                        ),
                                        Err(e) => {
                                            r.error = Some(e);
                                            continue;
                                        }
                                    }
                                }
                                list.sort_by_key(|a| (a.first_offset, a.producer_id));
                                list.dedup();
                                list
                            }
                            Err(e) => {
                                // Records without their abort information would show aborted
                                // data as committed: fail the partition instead.
                                tracing::warn!(tp = %p.tp, offset, error = %e, "cannot read a remote transaction index");
                                r.error =
                                    Some(ReplicaError::from(nagare_storage::StorageError::Io(
                                        std::io::Error::other(e.to_string()),
                                    )));
                                continue;
                            }
                        };
                        r.aborted_transactions = Some(list);
                    }
                    let dir = self.logs.log_dir().to_path_buf();
                    match tokio::task::spawn_blocking(move || super::tiered::stage(&dir, &bytes))
                        .await
                    {
                        Ok(Ok(slice)) => r.records = Some(slice),
                        Ok(Err(e)) => {
                            tracing::warn!(tp = %p.tp, offset, error = %e, "cannot stage remote data");
                            r.error = Some(ReplicaError::from(nagare_storage::StorageError::Io(e)));
                        }
                        Err(e) => {
                            tracing::warn!(tp = %p.tp, offset, error = %e, "remote read task failed");
                            r.error = Some(ReplicaError::from(nagare_storage::StorageError::Io(
                                std::io::Error::other(e.to_string()),
                            )));
                        }
                    }
                }
                Ok(_) => r.error = Some(ReplicaError::OffsetOutOfRange(offset)),
                Err(e) => {
                    tracing::warn!(tp = %p.tp, offset, error = %e, "remote read failed");
                    r.error = Some(ReplicaError::from(nagare_storage::StorageError::Io(
                        std::io::Error::other(e.to_string()),
                    )));
                }
            }
        }
    }

    /// The leader's choice of a read replica for a consumer (KIP-392), if the rack-aware
    /// selector is configured and picks a follower.
    fn preferred_read_replica(
        &self,
        p: &Partition,
        cm: &ClientMetadata,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Option<i32> {
        let rack_of = cm.rack_of.as_ref()?;
        if cm.rack_id.is_empty() {
            return None;
        }
        let chosen =
            p.preferred_read_replica(self.node_id, &cm.rack_id, fetch_offset, now_ms, |id| {
                rack_of(id)
            })?;
        tracing::debug!(tp = %p.tp, rack = %cm.rack_id, replica = chosen, "preferred read replica");
        Some(chosen)
    }
}

impl Partition {
    /// The aborted transactions a read_committed fetch from `start` must list (Kafka's
    /// `UnifiedLog.collectAbortedTransactions`): those with records below `upper_bound`
    /// and their abort marker at or after `start`. Kafka bounds it by the offset after the
    /// last batch returned; the fetch's own bound (the last stable offset) is used here, as
    /// the read does not report where its data ends: entries past the data are harmless (a
    /// client only applies an entry once it meets that producer's records at or after its
    /// first offset, and drops the list with the response).
    fn aborted_transactions(
        &self,
        start: i64,
        upper_bound: i64,
    ) -> Result<Vec<AbortedTransaction>, ReplicaError> {
        Ok(self
            .log
            .collect_aborted_transactions(start, upper_bound)?
            .into_iter()
            .map(|a| AbortedTransaction {
                producer_id: a.producer_id,
                first_offset: a.first_offset,
            })
            .collect())
    }
}
