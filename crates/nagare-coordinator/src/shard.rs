//! The coordinator shard of one `__consumer_offsets` partition: request dispatch, outputs,
//! timers, replay and loading.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::ResponseError;

use crate::config::GroupCoordinatorConfig;
use crate::consumer::{ConsumerGroup, ConsumerGroupView, TopicsImage};
use crate::group::{ClassicGroup, GroupState, GroupView, MemberView};
use crate::offsets::Offsets;
use crate::record::{CoordinatorRecord, OffsetCommitValue};
use crate::runtime::{self, CoordinatorShard, RequestContext, RequestToken};
use crate::timer::{TimerAction, TimerKey, Timers};

/// A request the group coordinator handles.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupRequest {
    /// JoinGroup (API 11).
    JoinGroup(JoinGroupRequest),
    /// SyncGroup (API 14).
    SyncGroup(SyncGroupRequest),
    /// Heartbeat (API 12).
    Heartbeat(HeartbeatRequest),
    /// LeaveGroup (API 13).
    LeaveGroup(LeaveGroupRequest),
    /// OffsetCommit (API 8).
    OffsetCommit(OffsetCommitRequest),
    /// OffsetFetch (API 9); every group in it must belong to this shard.
    OffsetFetch(OffsetFetchRequest),
    /// OffsetDelete (API 47).
    OffsetDelete(OffsetDeleteRequest),
    /// DescribeGroups (API 15); every group in it must belong to this shard.
    DescribeGroups(DescribeGroupsRequest),
    /// ListGroups (API 16): lists this shard's groups.
    ListGroups(ListGroupsRequest),
    /// DeleteGroups (API 42); every group in it must belong to this shard.
    DeleteGroups(DeleteGroupsRequest),
    /// ConsumerGroupHeartbeat (API 68, KIP-848).
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    /// ConsumerGroupDescribe (API 69, KIP-848); every group in it must belong to this shard.
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
    /// TxnOffsetCommit (API 28, KIP-98/KIP-447): its records must be written as the
    /// transaction's (the runtime's transactional write).
    TxnOffsetCommit(TxnOffsetCommitRequest),
}

/// A response of the group coordinator.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupResponse {
    /// JoinGroup.
    JoinGroup(JoinGroupResponse),
    /// SyncGroup.
    SyncGroup(SyncGroupResponse),
    /// Heartbeat.
    Heartbeat(HeartbeatResponse),
    /// LeaveGroup.
    LeaveGroup(LeaveGroupResponse),
    /// OffsetCommit.
    OffsetCommit(OffsetCommitResponse),
    /// OffsetFetch.
    OffsetFetch(OffsetFetchResponse),
    /// OffsetDelete.
    OffsetDelete(OffsetDeleteResponse),
    /// DescribeGroups.
    DescribeGroups(DescribeGroupsResponse),
    /// ListGroups.
    ListGroups(ListGroupsResponse),
    /// DeleteGroups.
    DeleteGroups(DeleteGroupsResponse),
    /// ConsumerGroupHeartbeat.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    /// ConsumerGroupDescribe.
    ConsumerGroupDescribe(ConsumerGroupDescribeResponse),
    /// TxnOffsetCommit.
    TxnOffsetCommit(TxnOffsetCommitResponse),
}

/// The reply to a group request: now, or deferred under a [`RequestToken`] (JoinGroup and
/// SyncGroup wait for the rebalance).
pub type Reply = runtime::Reply<GroupResponse>;

/// Everything one call of the group shard produced: records for its `__consumer_offsets`
/// partition, the reply, and answers to parked requests (the runtime's result contract,
/// [`crate::runtime`]).
pub type CoordinatorResult = runtime::CoordinatorResult<CoordinatorRecord, GroupResponse>;

/// The durable state of a shard: what replaying its records yields. Two shards with equal
/// durable states answer OffsetFetch, ListGroups and DescribeGroups of at-rest groups alike.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DurableState {
    /// Every group's view.
    pub groups: BTreeMap<String, GroupView>,
    /// Every committed offset by (group, topic, partition).
    pub offsets: BTreeMap<(String, String, i32), OffsetCommitValue>,
    /// Every KIP-848 consumer group's view.
    pub consumer_groups: BTreeMap<String, ConsumerGroupView>,
    /// Offsets of open transactions, by producer id (not yet visible to OffsetFetch).
    pub pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, String, i32), OffsetCommitValue>>,
}

#[derive(Debug, Default)]
pub(crate) struct Output {
    pub(crate) records: Vec<CoordinatorRecord>,
    pub(crate) completed: Vec<(RequestToken, GroupResponse)>,
}

/// The group coordinator for one `__consumer_offsets` partition.
#[derive(Debug)]
pub struct GroupCoordinatorShard {
    pub(crate) config: GroupCoordinatorConfig,
    partition: i32,
    loaded: bool,
    pub(crate) groups: BTreeMap<String, ClassicGroup>,
    /// KIP-848 consumer groups (their ids never collide with `groups`).
    pub(crate) consumer_groups: BTreeMap<String, ConsumerGroup>,
    /// The cluster's topics, from the latest metadata image.
    pub(crate) topics: TopicsImage,
    /// Whether the shell has given a topics image yet.
    pub(crate) topics_known: bool,
    pub(crate) offsets: Offsets,
    /// Offsets committed by open transactions, by producer id (Kafka's
    /// `pendingTransactionalOffsets`): they become committed offsets at the producer's COMMIT
    /// marker and are dropped at its ABORT marker.
    pub(crate) pending_txn: BTreeMap<i64, Offsets>,
    /// Counts the offset records applied, in log order (the live path writes records in the
    /// order it applies them): the stand-in for Kafka's record offsets when a committed
    /// transaction's offsets meet non-transactional commits (see [`Offsets`]).
    pub(crate) record_seq: u64,
    pub(crate) timers: Timers,
    pub(crate) out: Output,
    pub(crate) now_ms: i64,
    next_token: u64,
    id_seed: u64,
}

impl GroupCoordinatorShard {
    /// A shard for `partition` that is loading: feed it the partition's records with
    /// [`replay`](Self::replay), then call [`on_loaded`](Self::on_loaded). Until then every
    /// request is answered COORDINATOR_LOAD_IN_PROGRESS.
    pub fn new(partition: i32, config: GroupCoordinatorConfig) -> Self {
        GroupCoordinatorShard {
            config,
            partition,
            loaded: false,
            groups: BTreeMap::new(),
            consumer_groups: BTreeMap::new(),
            topics: TopicsImage::default(),
            topics_known: false,
            offsets: Offsets::default(),
            pending_txn: BTreeMap::new(),
            record_seq: 0,
            timers: Timers::default(),
            out: Output::default(),
            now_ms: 0,
            next_token: 0,
            // Deterministic: whoever needs fresh ids across loads seeds it (`with_id_seed`;
            // the broker's runtime does with a random seed per load).
            id_seed: 0,
        }
    }

    /// Seeds the generator of member ids: the broker gives each load a random seed (so a
    /// reloaded shard never hands out ids it gave before), simulations a fixed one.
    pub fn with_id_seed(mut self, seed: u64) -> Self {
        self.id_seed = seed;
        self
    }

    /// The `__consumer_offsets` partition this shard owns.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Whether loading has finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Applies one record of the partition. Used while loading, and by the live path for the
    /// offset commits and tombstones it emits, so both build the same state. A group metadata
    /// record replaces the group (Kafka's `ClassicGroup.fromRecord`), which is why the live
    /// path does not replay its own group snapshots: it already holds the richer live group
    /// (parked requests, pending members), as Kafka's `replayRecords = false` results do.
    pub fn replay(&mut self, record: &CoordinatorRecord) {
        match record {
            CoordinatorRecord::GroupMetadata {
                group_id,
                value: Some(v),
            } => {
                // One id space: a classic group record replaces an empty consumer group of
                // the same id (see `delete_consumer_group_records_keep_offsets`).
                if self
                    .consumer_groups
                    .get(group_id)
                    .is_some_and(|g| g.members.is_empty())
                {
                    self.consumer_groups.remove(group_id);
                }
                self.groups.insert(
                    group_id.clone(),
                    ClassicGroup::from_record(group_id.clone(), v),
                );
            }
            CoordinatorRecord::GroupMetadata {
                group_id,
                value: None,
            } => {
                self.groups.remove(group_id);
                self.offsets.remove_group(group_id);
                self.remove_pending_group(group_id);
            }
            CoordinatorRecord::OffsetCommit { .. } => self.replay_offset_commit(None, record),
            other => self.replay_consumer(other),
        }
    }

    /// Ends loading at `now_ms` (Kafka's `onLoaded`): every member's session timer starts,
    /// groups above `group.max.size` rebalance, and the offset-retention cycle is scheduled.
    pub fn on_loaded(&mut self, now_ms: i64) -> CoordinatorResult {
        self.now_ms = now_ms;
        self.loaded = true;
        let ids: Vec<String> = self.groups.keys().cloned().collect();
        for id in ids {
            let Some(mut g) = self.groups.remove(&id) else {
                continue;
            };
            let members: Vec<(String, i32)> = g
                .members
                .values()
                .map(|m| (m.member_id.clone(), m.session_timeout_ms))
                .collect();
            for (m, timeout) in members {
                self.schedule_heartbeat(&id, &m, timeout);
            }
            if g.members.len() > self.config.max_size {
                // Why: the max size may have been lowered; rebalancing gives the members a
                // chance to commit before the extra ones are kicked out.
                self.prepare_rebalance(&mut g);
            }
            self.groups.insert(id, g);
        }
        self.on_loaded_consumer();
        self.timers.schedule(
            TimerKey::Cleanup,
            now_ms.saturating_add(self.config.offsets_retention_check_interval_ms),
            TimerAction::Cleanup,
        );
        self.finish(Reply::None)
    }

    /// Drops the shard's transient state when it loses leadership of its partition: every
    /// parked request is answered NOT_COORDINATOR (clients then look the coordinator up again)
    /// and all timers stop.
    pub fn unload(&mut self) -> Vec<(RequestToken, GroupResponse)> {
        let mut answers = Vec::new();
        for g in self.groups.values_mut() {
            for m in g.members.values_mut() {
                if let Some(t) = m.awaiting_join.take() {
                    answers.push((
                        t,
                        GroupResponse::JoinGroup(join_error(
                            &m.member_id,
                            ResponseError::NotCoordinator.code(),
                        )),
                    ));
                }
                if let Some(t) = m.awaiting_sync.take() {
                    answers.push((
                        t,
                        GroupResponse::SyncGroup(sync_error(ResponseError::NotCoordinator.code())),
                    ));
                }
            }
        }
        self.timers.clear();
        self.loaded = false;
        answers
    }

    /// The earliest timer deadline: call [`tick`](Self::tick) at or after it.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.timers.next_deadline()
    }

    /// Advances time to `now_ms` and fires every timer due: session expiry, join completion
    /// (initial delay or rebalance timeout), pending-sync expiry and offset retention.
    pub fn tick(&mut self, now_ms: i64) -> CoordinatorResult {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.loaded {
            return self.finish(Reply::None);
        }
        while let Some((key, action)) = self.timers.pop_due(self.now_ms) {
            match (key, action) {
                (
                    TimerKey::Heartbeat {
                        group_id,
                        member_id,
                    },
                    _,
                ) => {
                    self.expire_heartbeat(&group_id, &member_id);
                }
                (
                    TimerKey::Join { group_id },
                    TimerAction::InitialRebalance {
                        delay_ms,
                        remaining_ms,
                    },
                ) => self.try_complete_initial_rebalance(&group_id, delay_ms, remaining_ms),
                (TimerKey::Join { group_id }, _) => {
                    if let Some(mut g) = self.groups.remove(&group_id) {
                        self.complete_join(&mut g);
                        self.groups.insert(group_id, g);
                    }
                }
                (TimerKey::Sync { group_id }, TimerAction::ExpirePendingSync { generation_id }) => {
                    self.expire_pending_sync(&group_id, generation_id);
                }
                (TimerKey::Sync { .. }, _) => {}
                (
                    TimerKey::ConsumerSession {
                        group_id,
                        member_id,
                    },
                    _,
                ) => self.expire_consumer_session(&group_id, &member_id),
                (
                    TimerKey::ConsumerRebalance {
                        group_id,
                        member_id,
                    },
                    TimerAction::ExpireConsumerRebalance { member_epoch },
                ) => self.expire_consumer_rebalance(&group_id, &member_id, member_epoch),
                (TimerKey::ConsumerRebalance { .. }, _) => {}
                (TimerKey::Cleanup, _) => {
                    self.cleanup_group_metadata();
                    self.timers.schedule(
                        TimerKey::Cleanup,
                        self.now_ms
                            .saturating_add(self.config.offsets_retention_check_interval_ms),
                        TimerAction::Cleanup,
                    );
                }
            }
        }
        self.finish(Reply::None)
    }

    /// Handles one request at `now_ms`.
    pub fn handle(
        &mut self,
        ctx: &RequestContext,
        request: GroupRequest,
        now_ms: i64,
    ) -> CoordinatorResult {
        self.now_ms = self.now_ms.max(now_ms);
        if !self.loaded {
            let response = error_response(
                &request,
                ctx,
                ResponseError::CoordinatorLoadInProgress.code(),
            );
            return self.finish(Reply::Now(response));
        }
        let reply = match request {
            GroupRequest::JoinGroup(r) => self.join_group(ctx, r),
            GroupRequest::SyncGroup(r) => self.sync_group(ctx, r),
            GroupRequest::Heartbeat(r) => Reply::Now(GroupResponse::Heartbeat(self.heartbeat(r))),
            GroupRequest::LeaveGroup(r) => {
                Reply::Now(GroupResponse::LeaveGroup(self.leave_group(ctx, r)))
            }
            GroupRequest::OffsetCommit(r) => {
                Reply::Now(GroupResponse::OffsetCommit(self.offset_commit(ctx, r)))
            }
            GroupRequest::OffsetFetch(r) => {
                Reply::Now(GroupResponse::OffsetFetch(self.offset_fetch(ctx, &r)))
            }
            GroupRequest::OffsetDelete(r) => {
                Reply::Now(GroupResponse::OffsetDelete(self.offset_delete(&r)))
            }
            GroupRequest::DescribeGroups(r) => {
                Reply::Now(GroupResponse::DescribeGroups(self.describe_groups(ctx, &r)))
            }
            GroupRequest::ListGroups(r) => {
                Reply::Now(GroupResponse::ListGroups(self.list_groups(&r)))
            }
            GroupRequest::DeleteGroups(r) => {
                Reply::Now(GroupResponse::DeleteGroups(self.delete_groups(&r)))
            }
            GroupRequest::ConsumerGroupHeartbeat(r) => Reply::Now(
                GroupResponse::ConsumerGroupHeartbeat(self.consumer_group_heartbeat(ctx, r)),
            ),
            GroupRequest::ConsumerGroupDescribe(r) => Reply::Now(
                GroupResponse::ConsumerGroupDescribe(self.consumer_group_describe(&r)),
            ),
            GroupRequest::TxnOffsetCommit(r) => Reply::Now(GroupResponse::TxnOffsetCommit(
                self.txn_offset_commit(ctx, &r),
            )),
        };
        self.finish(reply)
    }

    /// The current view of a group, if it exists.
    pub fn group(&self, group_id: &str) -> Option<GroupView> {
        self.groups.get(group_id).map(ClassicGroup::view)
    }

    /// The current members of a group (empty if the group does not exist).
    pub fn members(&self, group_id: &str) -> Vec<MemberView> {
        self.groups
            .get(group_id)
            .map(ClassicGroup::member_views)
            .unwrap_or_default()
    }

    /// The durable state: groups in Empty or Stable state (whose live view is exactly what
    /// their last record says) and all committed offsets.
    pub fn durable_state(&self) -> DurableState {
        DurableState {
            groups: self
                .groups
                .iter()
                .filter(|(_, g)| g.is(GroupState::Empty) || g.is(GroupState::Stable))
                .map(|(id, g)| (id.clone(), g.view()))
                .collect(),
            offsets: self.offsets.all(),
            consumer_groups: self.consumer_groups(),
            pending_txn_offsets: self
                .pending_txn
                .iter()
                .map(|(pid, o)| (*pid, o.all()))
                .filter(|(_, o)| !o.is_empty())
                .collect(),
        }
    }

    // ---- internals shared by the handlers ----

    pub(crate) fn new_token(&mut self) -> RequestToken {
        self.next_token += 1;
        RequestToken(self.next_token)
    }

    /// A fresh member id `{prefix}-{uuid}` (Kafka's `generateMemberId`), from a seeded
    /// generator so that runs are reproducible.
    pub(crate) fn generate_member_id(&mut self, prefix: &str) -> String {
        let mut bytes = [0u8; 16];
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&splitmix64(&mut self.id_seed).to_le_bytes());
        }
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        format!("{prefix}-{id}")
    }

    /// Emits an offset commit or a tombstone, applying it through [`Self::replay`] — the same
    /// code path a reloading coordinator takes.
    pub(crate) fn append(&mut self, record: CoordinatorRecord) {
        debug_assert!(!matches!(
            record,
            CoordinatorRecord::GroupMetadata { value: Some(_), .. }
        ));
        self.replay(&record);
        self.out.records.push(record);
    }

    /// Emits a snapshot of the live group `g` (which the live path does not replay: it holds
    /// the richer live group). Debug builds check that replaying it rebuilds the same durable
    /// view.
    pub(crate) fn append_group_snapshot(&mut self, g: &ClassicGroup) {
        let record = Self::group_record(g, None);
        if let CoordinatorRecord::GroupMetadata { value: Some(v), .. } = &record {
            debug_assert_eq!(
                ClassicGroup::from_record(g.group_id.clone(), v)
                    .view()
                    .snapshot,
                g.view().snapshot,
                "group record does not match the live group"
            );
        }
        self.out.records.push(record);
    }

    pub(crate) fn group_record(
        g: &ClassicGroup,
        assignment: Option<&BTreeMap<String, Bytes>>,
    ) -> CoordinatorRecord {
        CoordinatorRecord::GroupMetadata {
            group_id: g.group_id.clone(),
            value: Some(g.to_record_value(assignment)),
        }
    }

    pub(crate) fn schedule_heartbeat(&mut self, group_id: &str, member_id: &str, timeout_ms: i32) {
        self.timers.schedule(
            TimerKey::Heartbeat {
                group_id: group_id.to_owned(),
                member_id: member_id.to_owned(),
            },
            self.deadline(timeout_ms),
            TimerAction::ExpireHeartbeat,
        );
    }

    pub(crate) fn cancel_heartbeat(&mut self, group_id: &str, member_id: &str) {
        self.timers.cancel(&TimerKey::Heartbeat {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
        });
    }

    /// `now + delay`, at least 1 ms ahead so that a zero or negative client timeout cannot
    /// make a timer re-arm itself forever within one tick.
    pub(crate) fn deadline(&self, delay_ms: i32) -> i64 {
        self.now_ms.saturating_add(i64::from(delay_ms.max(1)))
    }

    pub(crate) fn complete(&mut self, token: Option<RequestToken>, response: GroupResponse) {
        if let Some(t) = token {
            self.out.completed.push((t, response));
        }
    }

    fn finish(&mut self, reply: Reply) -> CoordinatorResult {
        let mut out = std::mem::take(&mut self.out);
        let reply = match reply {
            Reply::Deferred(t) => match out.completed.iter().position(|(c, _)| *c == t) {
                Some(i) => Reply::Now(out.completed.remove(i).1),
                None => Reply::Deferred(t),
            },
            other => other,
        };
        CoordinatorResult {
            records: out.records,
            reply,
            completed: out.completed,
        }
    }
}

/// The group shard in the coordinator runtime: `__consumer_offsets`, group ids as keys, the
/// topics image as the metadata it follows.
impl CoordinatorShard for GroupCoordinatorShard {
    const TOPIC: &'static str = "__consumer_offsets";
    const NAME: &'static str = "group coordinator";
    type Config = GroupCoordinatorConfig;
    type Record = CoordinatorRecord;
    type DecodeError = crate::record::RecordError;
    type Request = GroupRequest;
    type Response = GroupResponse;
    type Metadata = TopicsImage;
    type Effect = ();

    fn new_shard(partition: i32, config: &GroupCoordinatorConfig, random_seed: u64) -> Self {
        GroupCoordinatorShard::new(partition, config.clone()).with_id_seed(random_seed)
    }

    fn decode_record(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<CoordinatorRecord, crate::record::RecordError> {
        CoordinatorRecord::decode(key, value)
    }

    fn encode_record(record: &CoordinatorRecord) -> (Bytes, Option<Bytes>) {
        (record.encode_key(), record.encode_value())
    }

    fn replay(&mut self, record: &CoordinatorRecord) {
        GroupCoordinatorShard::replay(self, record)
    }

    fn replay_transactional(&mut self, producer_id: i64, _epoch: i16, record: &CoordinatorRecord) {
        GroupCoordinatorShard::replay_transactional(self, producer_id, record)
    }

    fn replay_end_transaction_marker(&mut self, producer_id: i64, _epoch: i16, commit: bool) {
        GroupCoordinatorShard::replay_end_transaction_marker(self, producer_id, commit)
    }

    fn set_metadata(&mut self, topics: &TopicsImage) {
        self.set_topics(topics.clone())
    }

    fn on_loaded(&mut self, now_ms: i64) -> CoordinatorResult {
        GroupCoordinatorShard::on_loaded(self, now_ms)
    }

    fn handle(
        &mut self,
        ctx: &RequestContext,
        request: GroupRequest,
        now_ms: i64,
    ) -> CoordinatorResult {
        GroupCoordinatorShard::handle(self, ctx, request, now_ms)
    }

    fn next_deadline_ms(&self) -> Option<i64> {
        GroupCoordinatorShard::next_deadline_ms(self)
    }

    fn tick(&mut self, now_ms: i64) -> CoordinatorResult {
        GroupCoordinatorShard::tick(self, now_ms)
    }

    fn unload(&mut self) -> Vec<(RequestToken, GroupResponse)> {
        GroupCoordinatorShard::unload(self)
    }

    fn error_response(request: &GroupRequest, ctx: &RequestContext, code: i16) -> GroupResponse {
        error_response(request, ctx, code)
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A JoinGroup error response (generation -1, no leader, no protocol), as Kafka's.
pub(crate) fn join_error(member_id: &str, code: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = code;
    r.generation_id = -1;
    r.member_id = member_id.to_owned().into();
    r.protocol_type = None;
    r.protocol_name = None;
    r
}

/// A SyncGroup error response with an empty assignment.
pub(crate) fn sync_error(code: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = code;
    r
}

/// The response to `request` when it fails as a whole with `code` — for the shell to answer
/// NOT_COORDINATOR / COORDINATOR_NOT_AVAILABLE when it has no loaded shard for the group, and
/// used by the shard itself while loading.
pub fn error_response(request: &GroupRequest, ctx: &RequestContext, code: i16) -> GroupResponse {
    use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
    use kafka_protocol::messages::describe_groups_response::DescribedGroup;
    use kafka_protocol::messages::offset_commit_response::{
        OffsetCommitResponsePartition, OffsetCommitResponseTopic,
    };
    use kafka_protocol::messages::offset_fetch_response::OffsetFetchResponseGroup;
    match request {
        GroupRequest::JoinGroup(r) => GroupResponse::JoinGroup(join_error(&r.member_id, code)),
        GroupRequest::SyncGroup(_) => GroupResponse::SyncGroup(sync_error(code)),
        GroupRequest::Heartbeat(_) => {
            GroupResponse::Heartbeat(HeartbeatResponse::default().with_error_code(code))
        }
        GroupRequest::LeaveGroup(_) => {
            GroupResponse::LeaveGroup(LeaveGroupResponse::default().with_error_code(code))
        }
        GroupRequest::OffsetCommit(r) => GroupResponse::OffsetCommit(
            OffsetCommitResponse::default().with_topics(
                r.topics
                    .iter()
                    .map(|t| {
                        OffsetCommitResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_partitions(
                                t.partitions
                                    .iter()
                                    .map(|p| {
                                        OffsetCommitResponsePartition::default()
                                            .with_partition_index(p.partition_index)
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        GroupRequest::OffsetFetch(r) => {
            let mut resp = OffsetFetchResponse::default();
            if ctx.api_version >= 8 {
                resp.groups = r
                    .groups
                    .iter()
                    .map(|g| {
                        OffsetFetchResponseGroup::default()
                            .with_group_id(g.group_id.clone())
                            .with_error_code(code)
                    })
                    .collect();
            } else {
                resp.error_code = code;
            }
            GroupResponse::OffsetFetch(resp)
        }
        GroupRequest::OffsetDelete(_) => {
            GroupResponse::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code))
        }
        GroupRequest::DescribeGroups(r) => GroupResponse::DescribeGroups(
            DescribeGroupsResponse::default().with_groups(
                r.groups
                    .iter()
                    .map(|g| {
                        DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        GroupRequest::ListGroups(_) => {
            GroupResponse::ListGroups(ListGroupsResponse::default().with_error_code(code))
        }
        GroupRequest::ConsumerGroupHeartbeat(_) => GroupResponse::ConsumerGroupHeartbeat(
            ConsumerGroupHeartbeatResponse::default().with_error_code(code),
        ),
        GroupRequest::ConsumerGroupDescribe(r) => GroupResponse::ConsumerGroupDescribe(
            ConsumerGroupDescribeResponse::default().with_groups(
                r.group_ids
                    .iter()
                    .map(|g| {
                        kafka_protocol::messages::consumer_group_describe_response::DescribedGroup::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
        GroupRequest::TxnOffsetCommit(r) => {
            GroupResponse::TxnOffsetCommit(crate::offsets::txn_commit_error_response(r, code))
        }
        GroupRequest::DeleteGroups(r) => GroupResponse::DeleteGroups(
            DeleteGroupsResponse::default().with_results(
                r.groups_names
                    .iter()
                    .map(|g| {
                        DeletableGroupResult::default()
                            .with_group_id(g.clone())
                            .with_error_code(code)
                    })
                    .collect(),
            ),
        ),
    }
}
