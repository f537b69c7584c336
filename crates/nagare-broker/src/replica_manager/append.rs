//! Appends to partition logs, and the one `acks=all` wait (Kafka's
//! `ReplicaManager.appendRecords` with its `DelayedProduce`).
//!
//! - Origin [`AppendOrigin::Client`] (Produce): the partition must be led here; `acks=all`
//!   is refused with NOT_ENOUGH_REPLICAS *before* the append when the ISR is smaller than
//!   `min.insync.replicas`, and answered NOT_ENOUGH_REPLICAS_AFTER_APPEND if it shrank below
//!   it by the time the high watermark passed the records (Kafka's
//!   `checkEnoughReplicasReachOffset`).
//! - Origin [`AppendOrigin::Coordinator`] (the group coordinator's records): appended as
//!   leader without the `min.insync.replicas` refusal, as Kafka 4's
//!   `CoordinatorPartitionWriter` appends with acks=1; its replies wait for the high
//!   watermark through the same wait ([`ReplicaManager::wait_committed`]).
//! - Origin [`AppendOrigin::Replication`]: a follower copying its leader, through
//!   [`ReplicaManager::append_as_follower`].
//!
//! Durability (see the module above): an `acks=all` reply is released only once the
//! group-commit loop fsynced the log past the records *and* the high watermark passed them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use nagare_storage::{AppendInfo, AppendOrigin, StorageError, TxnVerification, VerificationGuard};

use super::{now_ms, Partition, ReplicaError, ReplicaManager};
use crate::metrics::topic_stats::TopicCounters;

/// How many replicas must have a write before it is acknowledged (Produce's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequiredAcks {
    /// `acks=0`: no reply at all.
    None,
    /// `acks=1`: after the leader's page-cache write.
    Leader,
    /// `acks=-1`/`all`: after the fsync and the high watermark (every ISR member).
    All,
}

impl RequiredAcks {
    /// The wire value's meaning; `None` for anything but -1, 0 and 1 (INVALID_REQUIRED_ACKS).
    pub fn from_wire(acks: i16) -> Option<RequiredAcks> {
        match acks {
            -1 => Some(RequiredAcks::All),
            0 => Some(RequiredAcks::None),
            1 => Some(RequiredAcks::Leader),
            _ => None,
        }
    }
}

/// The records to append to one partition.
#[derive(Debug)]
pub struct AppendEntry {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch the caller expects (KIP-320), -1 for any.
    pub current_leader_epoch: i32,
    /// Record batches as received: offsets and leader epoch are patched in place.
    pub records: BytesMut,
    /// KIP-890 part 1: whether a transactional batch starting its producer's transaction
    /// needs a verification guard (client produce with
    /// `transaction.partition.verification.enable`), and the guard if verified.
    pub verification: TxnVerification,
}

/// Where the records of one partition landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The broker time stamped on the batches, or -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
}

impl From<&AppendInfo> for Appended {
    fn from(i: &AppendInfo) -> Self {
        Appended {
            base_offset: i.first_offset,
            last_offset: i.last_offset,
            log_append_time_ms: i.log_append_time,
            log_start_offset: i.log_start_offset,
        }
    }
}

/// The outcome of one partition's append (Kafka's `PartitionResponse`).
#[derive(Debug)]
pub struct PartitionAppend {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Where the records landed, if they were appended (an `acks=all` write that then failed
    /// to replicate keeps this: it is in the leader's log).
    pub appended: Option<Appended>,
    /// Why the write is not acknowledged, if it is not.
    pub error: Option<ReplicaError>,
}

/// How an `acks=all` wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationOutcome {
    /// Fsynced here and below the high watermark: every ISR member has it.
    Committed,
    /// The high watermark passed it, but the ISR is below `min.insync.replicas` (only
    /// reported for client appends; Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND).
    BelowMinIsr,
    /// Leadership moved (new epoch, or this broker is no longer the leader) before the high
    /// watermark passed it.
    NotLeader,
    /// Not replicated before the deadline.
    TimedOut,
    /// The local fsync failed (the log is poisoned).
    StorageError(String),
}

impl ReplicationOutcome {
    /// The produce view: `Ok` when the write may be acknowledged.
    pub fn into_result(self) -> Result<(), ReplicaError> {
        match self {
            ReplicationOutcome::Committed => Ok(()),
            ReplicationOutcome::BelowMinIsr => Err(ReplicaError::NotEnoughReplicasAfterAppend),
            ReplicationOutcome::NotLeader => Err(ReplicaError::NotLeaderOrFollower),
            ReplicationOutcome::TimedOut => Err(ReplicaError::RequestTimedOut),
            ReplicationOutcome::StorageError(e) => Err(ReplicaError::FlushFailed(e)),
        }
    }
}

type ReplicationWait = Pin<Box<dyn Future<Output = ReplicationOutcome> + Send>>;

/// The results of [`ReplicaManager::append_records`]: final at once unless some partitions
/// wait for `acks=all` ([`PendingAppend::complete`]).
#[must_use]
pub struct PendingAppend {
    results: Vec<PartitionAppend>,
    /// (index in `results`, its wait), registered with the group commit already.
    waits: Vec<(usize, ReplicationWait)>,
}

impl PendingAppend {
    /// Whether some partition waits for replication (`acks=all`).
    pub fn is_delayed(&self) -> bool {
        !self.waits.is_empty()
    }

    /// The results as they are now (final when [`PendingAppend::is_delayed`] is false).
    pub fn into_results(self) -> Vec<PartitionAppend> {
        self.results
    }

    /// Waits for every `acks=all` partition (one after the other, all registered with the
    /// same fsync round already) and returns the final results, in entry order.
    pub async fn complete(self) -> Vec<PartitionAppend> {
        let PendingAppend { mut results, waits } = self;
        for (i, wait) in waits {
            if let Err(e) = wait.await.into_result() {
                if let Some(r) = results.get_mut(i) {
                    r.error = Some(e);
                }
            }
        }
        results
    }
}

impl ReplicaManager {
    /// Appends each entry's batches to its partition as leader (validated, offsets assigned by
    /// patching in place, one write per partition) in entry order, wakes the fetches parked
    /// on those partitions, and for [`RequiredAcks::All`] registers the replication wait
    /// bounded by `timeout`. `origin` is [`AppendOrigin::Client`] or
    /// [`AppendOrigin::Coordinator`] (see the module documentation); replication appends go
    /// through [`ReplicaManager::append_as_follower`] and are refused here.
    pub fn append_records(
        &self,
        origin: AppendOrigin,
        acks: RequiredAcks,
        timeout: Duration,
        entries: Vec<AppendEntry>,
    ) -> PendingAppend {
        let now = now_ms();
        let mut results = Vec::with_capacity(entries.len());
        let mut waits: Vec<(usize, ReplicationWait)> = Vec::new();
        for e in entries {
            let (topic, partition) = (e.topic.clone(), e.partition);
            match self.append_to_leader(origin, acks, e, now) {
                Ok((p, info, epoch)) => {
                    // A duplicate (idempotent retry) waits too: its original may still be in
                    // the page cache if the first attempt's connection dropped before the
                    // fsync; acknowledging it now could lose it on a crash.
                    if acks == RequiredAcks::All {
                        let wait =
                            self.wait_committed(&p, info.last_offset + 1, epoch, timeout, origin);
                        waits.push((results.len(), Box::pin(wait)));
                    }
                    results.push(PartitionAppend {
                        topic,
                        partition,
                        appended: Some(Appended::from(&info)),
                        error: None,
                    });
                }
                Err(error) => {
                    if matches!(error, ReplicaError::Storage(_)) {
                        tracing::debug!(%topic, partition, error = %error, code = error.code(), "append refused");
                    }
                    results.push(PartitionAppend {
                        topic,
                        partition,
                        appended: None,
                        error: Some(error),
                    })
                }
            }
        }
        PendingAppend { results, waits }
    }

    fn append_to_leader(
        &self,
        origin: AppendOrigin,
        acks: RequiredAcks,
        e: AppendEntry,
        now: i64,
    ) -> Result<(Arc<Partition>, AppendInfo, i32), ReplicaError> {
        if origin == AppendOrigin::Replication {
            return Err(ReplicaError::Storage(StorageError::InvalidRecord(
                "replication appends go through append_as_follower".into(),
            )));
        }
        let p = self.leader_partition(&e.topic, e.partition, e.current_leader_epoch)?;
        self.check_log_dir_online()?;
        if acks == RequiredAcks::All && origin == AppendOrigin::Client {
            // Kafka's Partition.appendRecordsToLeader: refuse before appending.
            let isr = p.isr().len();
            let min_isr = p.min_isr.load(Ordering::Acquire);
            if (isr as i32) < min_isr {
                return Err(ReplicaError::NotEnoughReplicas {
                    tp: p.tp.to_string(),
                    isr,
                    min_isr,
                });
            }
        }
        let epoch = p.epoch();
        let bytes = e.records.len() as u64;
        let appended =
            p.log
                .append_as_leader_verified(e.records, epoch, now, origin, e.verification);
        let info = match appended {
            Ok(info) => info,
            Err(err) => {
                if origin == AppendOrigin::Client {
                    TopicCounters::add(&p.stats.failed_produce, 1);
                }
                return Err(err.into());
            }
        };
        if origin == AppendOrigin::Client {
            // Kafka's BytesInPerSec / MessagesInPerSec: the batches as appended, clients only.
            TopicCounters::add(&p.stats.bytes_in, bytes);
            TopicCounters::add(&p.stats.messages_in, info.record_count);
        }
        // Followers long-poll this partition in the delayed-fetch purgatory: wake them (and
        // only them), or the high watermark would wait for replica.fetch.wait.max.ms.
        p.fetch_watchers.wake();
        Ok((p, info, epoch))
    }

    /// KIP-890 part 1: starts a transaction verification of producer `producer_id` on a
    /// partition led here (see [`nagare_storage::Log::start_txn_verification`]): `None` when
    /// its transaction is already ongoing on the partition, else the guard to append with
    /// once the transaction coordinator confirmed the partition is in the transaction.
    pub fn start_txn_verification(
        &self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<Option<VerificationGuard>, ReplicaError> {
        let p = self.leader_partition(topic, partition, -1)?;
        Ok(p.log
            .start_txn_verification(producer_id, producer_epoch, now_ms()))
    }

    /// A follower's append of batches fetched from its leader (offsets kept). Returns a
    /// future that completes once the group commit fsynced them: the next fetch reports this
    /// log end to the leader, which counts it toward `acks=all`, so it must be durable first.
    pub fn append_as_follower(
        &self,
        p: &Partition,
        records: impl AsRef<[u8]>,
    ) -> Result<impl Future<Output = Result<(), String>> + Send + 'static, ReplicaError> {
        // Read-only: the fetch response's bytes are written as they arrived (no copy).
        let records = records.as_ref();
        let bytes = records.len() as u64;
        self.check_log_dir_online()?;
        p.log.append_as_follower(records, now_ms())?;
        TopicCounters::add(&p.stats.replication_bytes_in, bytes);
        Ok(self.wait_durable(p.log.clone(), p.log.log_end_offset() - 1))
    }

    /// The one `acks=all` wait (Kafka's DelayedProduce): registers now with the group commit
    /// for an fsync of `partition` past `required - 1`, then waits until the high watermark
    /// reaches `required` (every ISR member has the offsets below it) while this broker leads
    /// in `epoch`, for at most `timeout` from now. Only client appends
    /// ([`AppendOrigin::Client`]) report [`ReplicationOutcome::BelowMinIsr`]; a coordinator's
    /// write is committed once the high watermark passed it (Kafka 4's acks=1 semantics).
    pub fn wait_committed(
        &self,
        partition: &Arc<Partition>,
        required: i64,
        epoch: i32,
        timeout: Duration,
        origin: AppendOrigin,
    ) -> impl Future<Output = ReplicationOutcome> + Send + 'static {
        let deadline = Instant::now() + timeout;
        let durable = self.wait_durable(partition.log.clone(), required - 1);
        let partition = partition.clone();
        async move {
            if let Err(e) = durable.await {
                tracing::error!(tp = %partition.tp, error = %e, "fsync failed; acks=all write not acknowledged");
                return ReplicationOutcome::StorageError(e);
            }
            let check_min_isr = origin == AppendOrigin::Client;
            wait_high_watermark(partition, required, epoch, deadline, check_min_isr).await
        }
    }
}

/// Waits until the high watermark of `p` reaches `required` while it is led here in `epoch`.
async fn wait_high_watermark(
    p: Arc<Partition>,
    required: i64,
    epoch: i32,
    deadline: Instant,
    check_min_isr: bool,
) -> ReplicationOutcome {
    let mut rx = p.changed.subscribe();
    let wait = async {
        loop {
            rx.borrow_and_update();
            if p.epoch() != epoch || !p.is_leader() {
                return ReplicationOutcome::NotLeader;
            }
            if p.high_watermark() >= required {
                // Kafka's checkEnoughReplicasReachOffset.
                let isr = p.isr().len() as i32;
                return if !check_min_isr || isr >= p.min_isr.load(Ordering::Acquire) {
                    ReplicationOutcome::Committed
                } else {
                    ReplicationOutcome::BelowMinIsr
                };
            }
            if rx.changed().await.is_err() {
                return ReplicationOutcome::NotLeader;
            }
        }
    };
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), wait)
        .await
        .unwrap_or(ReplicationOutcome::TimedOut)
}
