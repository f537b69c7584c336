//! The group coordinator's async shell around `nagare-coordinator`'s sans-I/O shards.
//!
//! One shard per `__consumer_offsets` partition this broker leads. A shard is loaded by
//! replaying its partition; each request is handled under the shard's lock, the records it
//! produces are appended to the partition as one batch, and every reply (including parked
//! JoinGroup/SyncGroup answers completed by it) is released only once the partition is
//! durable past that batch — the single-node commit point, as Kafka's coordinator runtime
//! waits for the high watermark. Time is driven by a tick task.

use std::collections::HashMap;
use std::sync::Arc;

use nagare_protocol::batch_builder::build_batch;
use parking_lot::Mutex as SyncMutex;
use tokio::sync::{oneshot, Mutex};

use nagare_coordinator::{
    error_response, CoordinatorRecord, CoordinatorResult, GroupCoordinatorConfig,
    GroupCoordinatorShard, GroupRequest, GroupResponse, Reply as ShardReply, RequestContext,
    RequestToken, TopicsImage,
};
use nagare_metadata::MetadataImage;

use crate::replica_manager::{now_ms, Partition, ReplicaManager};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// NOT_COORDINATOR
const NOT_COORDINATOR: i16 = 16;
/// UNKNOWN_SERVER_ERROR
const UNKNOWN_SERVER_ERROR: i16 = -1;

struct ShardState {
    shard: GroupCoordinatorShard,
    parked: HashMap<RequestToken, oneshot::Sender<GroupResponse>>,
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
}

struct ShardHandle {
    partition: Arc<Partition>,
    state: Mutex<ShardState>,
}

/// The coordinator runtime of this broker.
pub struct GroupCoordinator {
    replicas: Arc<ReplicaManager>,
    config: GroupCoordinatorConfig,
    shards: SyncMutex<HashMap<i32, Arc<ShardHandle>>>,
    /// The cluster's topics from the latest metadata image, with a version number.
    topics: SyncMutex<(u64, Arc<TopicsImage>)>,
}

/// A pending answer: resolves once the request's effects are durable.
pub type PendingReply = std::pin::Pin<Box<dyn std::future::Future<Output = GroupResponse> + Send>>;

impl GroupCoordinator {
    /// A coordinator with no shards yet.
    pub fn new(replicas: Arc<ReplicaManager>, config: GroupCoordinatorConfig) -> Self {
        GroupCoordinator {
            replicas,
            config,
            shards: SyncMutex::new(HashMap::new()),
            topics: SyncMutex::new((0, Arc::new(TopicsImage::default()))),
        }
    }

    /// Loads shards for `__consumer_offsets` partitions this node now leads and unloads the
    /// others (their parked requests get NOT_COORDINATOR).
    pub fn on_image(&self, image: &MetadataImage, node_id: i32) {
        let topics = TopicsImage {
            topics: image
                .topics_by_id
                .values()
                .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                .collect(),
        };
        {
            let mut current = self.topics.lock();
            if *current.1 != topics {
                *current = (current.0 + 1, Arc::new(topics));
            }
        }
        let topics = self.topics.lock().clone();
        let led: Vec<i32> = image
            .topic(OFFSETS_TOPIC)
            .map(|t| {
                t.partitions
                    .iter()
                    .filter(|(_, p)| p.leader == node_id)
                    .map(|(i, _)| *i)
                    .collect()
            })
            .unwrap_or_default();
        let mut shards = self.shards.lock();
        let gone: Vec<i32> = shards
            .keys()
            .filter(|p| !led.contains(p))
            .copied()
            .collect();
        for p in gone {
            if let Some(h) = shards.remove(&p) {
                if let Ok(mut st) = h.state.try_lock() {
                    for (token, resp) in st.shard.unload() {
                        if let Some(tx) = st.parked.remove(&token) {
                            let _ = tx.send(resp);
                        }
                    }
                }
                tracing::info!(partition = p, "unloaded group coordinator shard");
            }
        }
        for p in led {
            if shards.contains_key(&p) {
                continue;
            }
            let Some(partition) = self.replicas.partition(OFFSETS_TOPIC, p) else {
                continue;
            };
            match load_shard(&partition, self.config.clone()) {
                Ok(mut shard) => {
                    shard.set_topics(topics.1.as_ref().clone());
                    let result = shard.on_loaded(now_ms());
                    if let Err(e) = append(&partition, &result.records) {
                        tracing::error!(partition = p, error = %e, "cannot append after loading the shard");
                        continue;
                    }
                    tracing::info!(partition = p, "loaded group coordinator shard");
                    shards.insert(
                        p,
                        Arc::new(ShardHandle {
                            partition,
                            state: Mutex::new(ShardState {
                                shard,
                                parked: HashMap::new(),
                                topics_version: topics.0,
                            }),
                        }),
                    );
                }
                Err(e) => {
                    tracing::error!(partition = p, error = %e, "cannot load group coordinator shard")
                }
            }
        }
    }

    /// Number of `__consumer_offsets` partitions, if the topic exists.
    pub fn shard_of(image: &MetadataImage, group_id: &str) -> Option<i32> {
        let n = image.topic(OFFSETS_TOPIC)?.partitions.len() as i32;
        Some(nagare_coordinator::partition_for(group_id, n))
    }

    /// Handles one group request on the shard owning `group_id`. Runs the decision now (in
    /// request order) and returns the answer to await.
    pub async fn handle(
        &self,
        image: &MetadataImage,
        group_id: &str,
        ctx: RequestContext,
        req: GroupRequest,
    ) -> PendingReply {
        let Some(p) = Self::shard_of(image, group_id) else {
            let resp = error_response(&req, &ctx, 15); // COORDINATOR_NOT_AVAILABLE
            return Box::pin(async move { resp });
        };
        self.handle_on(p, ctx, req).await
    }

    /// Handles a request on shard `p`.
    pub async fn handle_on(&self, p: i32, ctx: RequestContext, req: GroupRequest) -> PendingReply {
        let handle = self.shards.lock().get(&p).cloned();
        let Some(handle) = handle else {
            let resp = error_response(&req, &ctx, NOT_COORDINATOR);
            return Box::pin(async move { resp });
        };
        let topics = self.topics.lock().clone();
        let mut st = handle.state.lock().await;
        st.refresh_topics(&topics);
        let result = st.shard.handle(&ctx, req.clone(), now_ms());
        let fallback = error_response(&req, &ctx, UNKNOWN_SERVER_ERROR);
        self.commit(&handle, &mut st, result, Some(fallback))
    }

    /// Fires due timers of every shard.
    pub async fn tick(&self) {
        let handles: Vec<Arc<ShardHandle>> = self.shards.lock().values().cloned().collect();
        let now = now_ms();
        let topics = self.topics.lock().clone();
        for h in handles {
            let mut st = h.state.lock().await;
            st.refresh_topics(&topics);
            if st.shard.next_deadline_ms().map(|d| d > now).unwrap_or(true) {
                continue;
            }
            let result = st.shard.tick(now);
            let pending = self.commit(&h, &mut st, result, None);
            drop(st);
            tokio::spawn(pending);
        }
    }

    /// Appends a result's records and returns the reply, released after the append is
    /// durable; parked replies completed by it are released at the same point.
    fn commit(
        &self,
        h: &ShardHandle,
        st: &mut ShardState,
        result: CoordinatorResult,
        fallback: Option<GroupResponse>,
    ) -> PendingReply {
        let CoordinatorResult {
            records,
            reply,
            completed,
        } = result;
        let appended = append(&h.partition, &records);
        let completed: Vec<(oneshot::Sender<GroupResponse>, GroupResponse)> = completed
            .into_iter()
            .filter_map(|(token, resp)| st.parked.remove(&token).map(|tx| (tx, resp)))
            .collect();
        let reply: Option<Result<GroupResponse, oneshot::Receiver<GroupResponse>>> = match reply {
            ShardReply::Now(r) => Some(Ok(r)),
            ShardReply::Deferred(token) => {
                let (tx, rx) = oneshot::channel();
                st.parked.insert(token, tx);
                Some(Err(rx))
            }
            ShardReply::None => None,
        };
        // Everything appended so far, including this batch, must be durable before any reply
        // that reflects it is sent (even when this result wrote nothing).
        let durable = match &appended {
            Ok(()) => {
                let last = h.partition.log.log_end_offset() - 1;
                Some(self.replicas.wait_durable(h.partition.log.clone(), last))
            }
            Err(e) => {
                tracing::error!(tp = %h.partition.tp, error = %e, "group coordinator append failed");
                None
            }
        };
        let fallback = fallback.unwrap_or(GroupResponse::Heartbeat(Default::default()));
        Box::pin(async move {
            let ok = match durable {
                Some(d) => d.await.is_ok(),
                None => false,
            };
            for (tx, resp) in completed {
                let _ = tx.send(resp);
            }
            if !ok {
                return fallback;
            }
            match reply {
                Some(Ok(r)) => r,
                Some(Err(rx)) => rx.await.unwrap_or(fallback),
                None => fallback,
            }
        })
    }

    /// Shard numbers loaded here.
    pub fn loaded_shards(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self.shards.lock().keys().copied().collect();
        v.sort();
        v
    }
}

/// Replays a partition into a fresh shard.
fn load_shard(
    partition: &Partition,
    config: GroupCoordinatorConfig,
) -> Result<GroupCoordinatorShard, String> {
    let mut shard = GroupCoordinatorShard::new(partition.tp.partition, config);
    nagare_storage::replay_records(&partition.log, |r| {
        let Some(key) = r.key.filter(|_| !r.control) else {
            return;
        };
        match CoordinatorRecord::decode(&key, r.value.as_deref()) {
            Ok(rec) => shard.replay(&rec),
            // KIP-848 / share-group records this shard does not know: skip, as Kafka skips
            // unknown record types.
            Err(e) => tracing::debug!(offset = r.offset, error = %e, "skipping coordinator record"),
        }
    })
    .map_err(|e| e.to_string())?;
    Ok(shard)
}

/// Appends coordinator records as one batch.
fn append(partition: &Partition, records: &[CoordinatorRecord]) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let buf = build_batch(
        records
            .iter()
            .map(|r| (Some(r.encode_key()), r.encode_value())),
        partition.epoch(),
        now,
    )
    .map_err(|e| e.to_string())?;
    partition
        .log
        .append_as_leader(buf, partition.epoch(), now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
