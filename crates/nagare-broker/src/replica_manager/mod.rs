//! The replica manager: the partitions this broker hosts, taken from the metadata image,
//! with their logs, leader epochs and high watermarks; appends and reads on them; and the
//! group commit that makes `acks=all` writes durable before they are acknowledged.
//!
//! Durability policy (documented in README): an `acks=all` produce is answered only after
//! its batches are fsynced. fsyncs are group-committed: every waiter that arrives while an
//! fsync runs is served by the next one, across partitions and producers, so durability
//! costs latency, not throughput. `acks=0/1` writes are answered after the page-cache write
//! and fsynced by a background flush every `log.flush.interval.ms` (default 1000 ms).

pub mod partition_state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch, Notify};

use nagare_metadata::records::ConfigResource;
use nagare_metadata::topic_config::TopicDefaults;
use nagare_metadata::{MetadataImage, Uuid};
use nagare_storage::{Log, LogManager, StorageError, TopicPartition};

/// One partition replica hosted here.
pub struct Partition {
    /// Topic and partition.
    pub tp: TopicPartition,
    /// Topic id (KIP-516).
    pub topic_id: Uuid,
    /// The partition's log.
    pub log: Arc<Log>,
    /// Current leader epoch from the metadata image.
    pub leader_epoch: AtomicI32,
    /// Current leader id (-1 when none).
    pub leader: AtomicI32,
}

impl Partition {
    /// High watermark. With a single replica in the ISR it is the log end offset; the
    /// replication data plane computes it from the ISR's log end offsets.
    pub fn high_watermark(&self) -> i64 {
        self.log.log_end_offset()
    }
    /// Current leader epoch.
    pub fn epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
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
    appended: watch::Sender<u64>,
}

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
        let (appended, _) = watch::channel(0);
        ReplicaManager {
            node_id,
            logs,
            partitions: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
            waiters: Mutex::new(Vec::new()),
            flush_needed: Notify::new(),
            appended,
        }
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
    /// leader epoch the client expects (KIP-320; -1 skips that check). The error is the
    /// Kafka code to answer with.
    pub fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
        current_leader_epoch: i32,
    ) -> Result<Arc<Partition>, i16> {
        let p = self.partition(topic, partition).ok_or(3i16)?; // UNKNOWN_TOPIC_OR_PARTITION
        let code = crate::handlers::check_leader_epoch(current_leader_epoch, p.epoch());
        if code != 0 {
            return Err(code);
        }
        if p.leader.load(Ordering::Acquire) != self.node_id {
            return Err(6); // NOT_LEADER_OR_FOLLOWER
        }
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

    /// Reacts to a new metadata image: creates logs for new partitions this node
    /// replicates, updates epochs and configs, deletes logs of removed topics.
    pub fn apply_image(&self, image: &MetadataImage, defaults: &TopicDefaults) {
        let now = now_ms();
        let mut wanted: HashMap<TopicPartition, (Uuid, i32, i32)> = HashMap::new();
        let mut configs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for topic in image.topics_by_id.values() {
            for (p, reg) in &topic.partitions {
                if reg.replicas.contains(&self.node_id) {
                    wanted.insert(
                        TopicPartition {
                            topic: topic.name.clone(),
                            partition: *p,
                        },
                        (topic.id, reg.leader_epoch, reg.leader),
                    );
                }
            }
            configs.insert(
                topic.name.clone(),
                image.config_overrides(ConfigResource::Topic, &topic.name),
            );
        }
        let mut parts = self.partitions.write();
        // Removed topics (or reassigned-away partitions): delete their logs.
        let gone: Vec<TopicPartition> = parts
            .keys()
            .filter(|tp| !wanted.contains_key(*tp))
            .cloned()
            .collect();
        for tp in gone {
            parts.remove(&tp);
            if let Err(e) = self.logs.remove(&tp) {
                tracing::error!(%tp, error = %e, "failed to delete partition log");
            } else {
                tracing::info!(%tp, "deleted partition log");
            }
        }
        // On-disk logs no longer in metadata (deleted while we were down).
        for (tp, _) in self.logs.all() {
            if !wanted.contains_key(&tp) && !parts.contains_key(&tp) {
                if let Err(e) = self.logs.remove(&tp) {
                    tracing::error!(%tp, error = %e, "failed to delete stray partition log");
                }
            }
        }
        let mut by_id = HashMap::new();
        for (tp, (topic_id, epoch, leader)) in wanted {
            by_id.insert(topic_id, tp.topic.clone());
            let overrides = configs.get(&tp.topic).cloned().unwrap_or_default();
            let config = defaults.log_config(&overrides);
            if let Some(p) = parts.get(&tp) {
                p.leader_epoch.store(epoch, Ordering::Release);
                p.leader.store(leader, Ordering::Release);
                p.log.update_config(config);
                continue;
            }
            match self.logs.get_or_create(&tp, config.clone(), now) {
                Ok(log) => {
                    log.update_config(config);
                    if leader == self.node_id
                        && log.latest_epoch().map(|e| e < epoch).unwrap_or(true)
                    {
                        if let Err(e) = log.assign_epoch_start(epoch, log.log_end_offset()) {
                            tracing::error!(%tp, error = %e, "cannot record leader epoch");
                        }
                    }
                    parts.insert(
                        tp.clone(),
                        Arc::new(Partition {
                            tp,
                            topic_id,
                            log,
                            leader_epoch: AtomicI32::new(epoch),
                            leader: AtomicI32::new(leader),
                        }),
                    );
                }
                Err(e) => tracing::error!(%tp, error = %e, "cannot open partition log"),
            }
        }
        *self.by_id.write() = by_id;
    }

    /// Signals waiting fetches that new data may be available.
    pub fn notify_appended(&self) {
        self.appended.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver that changes whenever any partition is appended to (delayed fetch).
    pub fn subscribe_appends(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Registers interest in `log` being fsynced past `last_offset` (group commit) and
    /// returns a future for it. Registration happens now, so several waits registered
    /// before awaiting any of them are served by the same fsync round.
    pub fn wait_durable(
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

    /// The group-commit loop: each round takes every waiter queued so far, fsyncs each
    /// distinct log once, and completes the waiters. Runs until the process ends.
    pub async fn run_group_commit(self: Arc<Self>) {
        loop {
            self.flush_needed.notified().await;
            let batch: Vec<DurableWaiter> = std::mem::take(&mut *self.waiters.lock());
            if batch.is_empty() {
                continue;
            }
            let mut logs: Vec<Arc<Log>> = Vec::new();
            for w in &batch {
                if !logs.iter().any(|l| Arc::ptr_eq(l, &w.log)) {
                    logs.push(w.log.clone());
                }
            }
            let results = tokio::task::spawn_blocking(move || {
                logs.iter()
                    .map(|l| (l.clone(), l.flush().map_err(|e| e.to_string())))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for w in batch {
                let res = results
                    .iter()
                    .find(|(l, _)| Arc::ptr_eq(l, &w.log))
                    .map(|(_, r)| r.clone())
                    .unwrap_or_else(|| Err("flush task failed".to_string()));
                let res = match res {
                    Ok(_) if w.log.recovery_point() > w.offset => Ok(()),
                    Ok(rp) => Err(format!("flushed to {rp}, short of offset {}", w.offset)),
                    Err(e) => Err(e),
                };
                let _ = w.done.send(res);
            }
        }
    }

    /// Fsyncs every log with unflushed data (the periodic flush for acks 0/1).
    pub fn flush_all(&self) {
        for p in self.all_partitions() {
            if p.log.recovery_point() < p.log.log_end_offset() {
                if let Err(e) = p.log.flush() {
                    tracing::error!(tp = %p.tp, error = %e, "periodic flush failed");
                }
            }
        }
    }

    /// Retention for every log, and expiry of producer ids idle for longer than
    /// `producer.id.expiration.ms` (so producer state does not grow without bound).
    pub fn enforce_retention(&self, producer_id_expiration_ms: i64) {
        let now = now_ms();
        self.logs.enforce_retention(now);
        for p in self.all_partitions() {
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

    /// Clean shutdown: flush and close every log, write the clean-shutdown marker.
    pub fn shutdown(&self) -> Result<(), StorageError> {
        self.logs.shutdown()
    }
}
