//! The group coordinator: the [coordinator runtime](crate::coordinator_runtime) over the
//! group shards of `nagare-coordinator` (Kafka 4.x's `GroupCoordinatorService` on its
//! `CoordinatorRuntime`, KIP-848), for the partitions of `__consumer_offsets` this broker
//! leads. The runtime loads, serialises, writes, waits for the high watermark, unloads and
//! ticks; this wrapper adds what is group-specific: the topics image the shards follow, and
//! the write timeout `offsets.commit.timeout.ms`.

use std::sync::Arc;
use std::time::Duration;

use nagare_coordinator::runtime::CoordinatorShard;
use nagare_coordinator::{
    GroupCoordinatorConfig, GroupCoordinatorShard, GroupRequest, GroupResponse, RequestContext,
    TopicsImage,
};
use nagare_metadata::{MetadataDelta, MetadataImage};

use crate::coordinator_runtime::CoordinatorRuntime;
use crate::replica_manager::ReplicaManager;

#[cfg(test)]
use crate::coordinator_runtime::{
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
};
#[cfg(test)]
use crate::replica_manager::{now_ms, Partition};

/// The internal topic holding group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = GroupCoordinatorShard::TOPIC;

/// A pending answer: resolves once the request's effects are committed.
pub type PendingReply = crate::coordinator_runtime::PendingReply<GroupResponse>;

/// The group coordinator of this broker.
pub struct GroupCoordinator {
    runtime: Arc<CoordinatorRuntime<GroupCoordinatorShard>>,
    /// The shards' shared view of the GROUP config resources (KIP-848 group configs).
    group_overrides: nagare_coordinator::GroupConfigOverrides,
}

impl GroupCoordinator {
    /// A coordinator with no shards yet. Call it inside the Tokio runtime that should run
    /// shard loading.
    pub fn new(replicas: Arc<ReplicaManager>, config: GroupCoordinatorConfig) -> Self {
        let write_timeout = Duration::from_millis(config.offsets_commit_timeout_ms);
        let group_overrides = config.group_overrides.clone();
        GroupCoordinator {
            runtime: Arc::new(CoordinatorRuntime::new(replicas, config, write_timeout)),
            group_overrides,
        }
    }

    /// The runtime the group shards run on.
    pub fn runtime(&self) -> &Arc<CoordinatorRuntime<GroupCoordinatorShard>> {
        &self.runtime
    }

    /// Gives the shards the new topics image if topics came, went or gained partitions,
    /// then starts loading shards for the `__consumer_offsets` partitions this node now leads
    /// and unloads the others ([`CoordinatorRuntime::on_image`]). Call after
    /// [`ReplicaManager::apply_delta`] of the same delta.
    pub fn on_image(&self, delta: &MetadataDelta, image: &MetadataImage, node_id: i32) {
        // The topics image (names, ids, partition counts) changes only when topics come or
        // go or gain partitions.
        let topics_changed = !delta.created_topics.is_empty()
            || !delta.deleted_topics.is_empty()
            || delta
                .partitions
                .iter()
                .any(|p| p.old.is_none() || p.new.is_none());
        if topics_changed {
            self.runtime.set_metadata(TopicsImage {
                topics: image
                    .topics_by_id
                    .values()
                    .map(|t| (t.name.clone(), (t.id, t.partitions.len() as i32)))
                    .collect(),
            });
        }
        // GROUP config resources (the first image arrives as a delta holding every config):
        // the shards read them at each heartbeat.
        if delta
            .configs
            .iter()
            .any(|(r, _)| *r == nagare_metadata::records::ConfigResource::Group)
        {
            self.group_overrides
                .replace(crate::config::group_overrides(image));
        }
        self.runtime.on_image(delta, image, node_id);
    }

    /// The `__consumer_offsets` partition of `group_id`, if the topic exists.
    pub fn shard_of(image: &MetadataImage, group_id: &str) -> Option<i32> {
        CoordinatorRuntime::<GroupCoordinatorShard>::shard_of(image, group_id)
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
        self.runtime.handle(image, group_id, ctx, req).await
    }

    /// Handles a request on shard `p`.
    pub async fn handle_on(&self, p: i32, ctx: RequestContext, req: GroupRequest) -> PendingReply {
        self.runtime.handle_on(p, ctx, req).await
    }

    /// Handles TxnOffsetCommit (or any request whose records belong to a transaction) on
    /// the shard owning `group_id`: its records are written as a transactional batch of
    /// producer `producer_id` ([`CoordinatorRuntime::handle_transactional_on`]).
    pub async fn handle_transactional(
        &self,
        image: &MetadataImage,
        group_id: &str,
        ctx: RequestContext,
        req: GroupRequest,
        producer_id: i64,
        producer_epoch: i16,
    ) -> PendingReply {
        let Some(p) = Self::shard_of(image, group_id) else {
            let resp = nagare_coordinator::error_response(
                &req,
                &ctx,
                crate::coordinator_runtime::COORDINATOR_NOT_AVAILABLE,
            );
            return Box::pin(async move { resp });
        };
        self.runtime
            .handle_transactional_on(p, ctx, req, producer_id, producer_epoch)
            .await
    }

    /// Writes a transaction marker to `__consumer_offsets` partition `p` and applies it to
    /// its shard (Kafka's `GroupCoordinatorService.completeTransaction`, for WriteTxnMarkers):
    /// the producer's pending offsets are committed or dropped. See
    /// [`CoordinatorRuntime::complete_transaction`] for the errors.
    pub async fn complete_transaction(
        &self,
        p: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        timeout: Duration,
    ) -> Result<(), i16> {
        self.runtime
            .complete_transaction(
                p,
                producer_id,
                producer_epoch,
                coordinator_epoch,
                commit,
                timeout,
            )
            .await
    }

    /// Fires due timers of every shard.
    pub async fn tick(&self) {
        self.runtime.tick().await
    }

    /// Shard numbers loaded here.
    pub fn loaded_shards(&self) -> Vec<i32> {
        self.runtime.loaded_shards()
    }

    /// Shard numbers loaded or being loaded here (ListGroups asks all of them, so that a
    /// loading one makes the answer COORDINATOR_LOAD_IN_PROGRESS, as in Kafka).
    pub fn owned_shards(&self) -> Vec<i32> {
        self.runtime.owned_shards()
    }

    /// Shard numbers being loaded here.
    pub fn loading_shards(&self) -> Vec<i32> {
        self.runtime.loading_shards()
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
