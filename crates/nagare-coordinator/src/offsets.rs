//! Committed offsets: OffsetCommit, OffsetFetch, OffsetDelete and retention (Kafka's
//! `OffsetMetadataManager`).

use std::collections::BTreeMap;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;

use crate::group::{ClassicGroup, GroupState};
use crate::record::{CoordinatorRecord, OffsetCommitValue};
use crate::runtime::RequestContext;
use crate::shard::GroupCoordinatorShard;

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The committed offset, -1 if none.
    pub offset: i64,
    /// The leader epoch committed with it, -1 if none.
    pub leader_epoch: i32,
    /// The metadata string committed with it ("" if none).
    pub metadata: String,
}

/// A partition's answer to OffsetFetch: index, offset, error code.
type FetchedOffset = (i32, CommittedOffset, i16);

/// Offsets by group, topic and partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct Offsets {
    by_group: BTreeMap<String, BTreeMap<String, BTreeMap<i32, OffsetCommitValue>>>,
    /// The replay position of each offset's record ([`GroupCoordinatorShard::record_seq`]):
    /// Kafka keeps the record's log offset so that, when a transaction commits, its offset
    /// replaces a committed one only if it was written later.
    order: BTreeMap<(String, String, i32), u64>,
}

impl Offsets {
    pub(crate) fn put(
        &mut self,
        group: &str,
        topic: &str,
        partition: i32,
        v: OffsetCommitValue,
        seq: u64,
    ) {
        self.by_group
            .entry(group.to_owned())
            .or_default()
            .entry(topic.to_owned())
            .or_default()
            .insert(partition, v);
        self.order
            .insert((group.to_owned(), topic.to_owned(), partition), seq);
    }

    /// The replay position of an offset's record.
    pub(crate) fn seq(&self, group: &str, topic: &str, partition: i32) -> Option<u64> {
        self.order
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    pub(crate) fn remove(&mut self, group: &str, topic: &str, partition: i32) {
        self.order
            .remove(&(group.to_owned(), topic.to_owned(), partition));
        if let Some(topics) = self.by_group.get_mut(group) {
            if let Some(parts) = topics.get_mut(topic) {
                parts.remove(&partition);
                if parts.is_empty() {
                    topics.remove(topic);
                }
            }
            if topics.is_empty() {
                self.by_group.remove(group);
            }
        }
    }

    pub(crate) fn remove_group(&mut self, group: &str) {
        if self.by_group.remove(group).is_some() {
            self.order.retain(|(g, _, _), _| g != group);
        }
    }

    pub(crate) fn get(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<&OffsetCommitValue> {
        self.by_group.get(group)?.get(topic)?.get(&partition)
    }

    pub(crate) fn group(
        &self,
        group: &str,
    ) -> Option<&BTreeMap<String, BTreeMap<i32, OffsetCommitValue>>> {
        self.by_group.get(group)
    }

    pub(crate) fn all(&self) -> BTreeMap<(String, String, i32), OffsetCommitValue> {
        let mut out = BTreeMap::new();
        for (g, topics) in &self.by_group {
            for (t, parts) in topics {
                for (p, v) in parts {
                    out.insert((g.clone(), t.clone(), *p), v.clone());
                }
            }
        }
        out
    }
}

/// Kafka's `OffsetExpirationCondition`: from which timestamp retention is counted.
#[derive(Clone, Copy)]
enum ExpiryBase {
    /// From when the group became Empty (KIP-211), or from the commit when that is unknown
    /// (records older than GroupMetadataValue v2).
    StateChange(Option<i64>),
    /// From the commit itself.
    Commit,
}

impl ExpiryBase {
    fn of(self, o: &OffsetCommitValue) -> i64 {
        match self {
            ExpiryBase::StateChange(ts) => ts.unwrap_or(o.commit_timestamp_ms),
            ExpiryBase::Commit => o.commit_timestamp_ms,
        }
    }
}

/// `None` when the group's offsets must not expire now (a live group without known
/// subscriptions, or one that is rebalancing).
fn expiration_base(g: &ClassicGroup) -> Option<ExpiryBase> {
    match g.protocol_type.as_deref() {
        Some(_) if g.is(GroupState::Empty) => {
            Some(ExpiryBase::StateChange(g.current_state_timestamp_ms))
        }
        Some("consumer") if g.subscribed_topics.is_some() && g.is(GroupState::Stable) => {
            Some(ExpiryBase::Commit)
        }
        Some(_) => None,
        // A simple (standalone) consumer's offsets expire from their last commit.
        None => Some(ExpiryBase::Commit),
    }
}

impl GroupCoordinatorShard {
    /// Every committed offset of this shard as `(group, topic, partition, offset)`, sorted
    /// (the consumer-lag metrics; offsets of open transactions are not committed yet).
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for (g, topics) in &self.offsets.by_group {
            for (t, parts) in topics {
                for (p, v) in parts {
                    out.push((g.clone(), t.clone(), *p, v.offset));
                }
            }
        }
        out
    }

    /// The committed offset of a partition, if any.
    pub fn committed_offset(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> Option<CommittedOffset> {
        self.offsets
            .get(group_id, topic, partition)
            .map(|v| CommittedOffset {
                offset: v.offset,
                leader_epoch: v.leader_epoch,
                metadata: v.metadata.clone(),
            })
    }

    // ---------------------------------------------------------------- OffsetCommit

    pub(crate) fn offset_commit(
        &mut self,
        ctx: &RequestContext,
        req: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let group_id = req.group_id.0.as_str().to_owned();
        if let Err(code) = self.validate_offset_commit(ctx, &req) {
            return commit_error_response(&req, code);
        }
        // Why: in the classic protocol an offset commit keeps the member's session alive when
        // the group is Stable or PreparingRebalance.
        if let Some(g) = self.groups.get(&group_id) {
            if g.is(GroupState::Stable) || g.is(GroupState::PreparingRebalance) {
                if let Some(m) = g.members.get(req.member_id.as_str()) {
                    let (id, timeout) = (m.member_id.clone(), m.session_timeout_ms);
                    self.schedule_heartbeat(&group_id, &id, timeout);
                }
            }
        }
        let now = self.now_ms;
        // retention_time_ms (OffsetCommit v2–v4) of -1 means "the broker's retention".
        let expire = if req.retention_time_ms == -1 {
            -1
        } else {
            now.saturating_add(req.retention_time_ms)
        };
        let mut topics = Vec::with_capacity(req.topics.len().min(1024));
        for t in &req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len().min(1024));
            for p in &t.partitions {
                let too_large = p.committed_metadata.as_ref().is_some_and(|m| {
                    // Java's String.length(): UTF-16 code units.
                    m.as_str().encode_utf16().count() > self.config.offset_metadata_max_bytes
                });
                let code = if !self.partition_exists(t.name.0.as_str(), p.partition_index) {
                    // Kafka 4.x answers commits for topics or partitions that do not exist
                    // with UNKNOWN_TOPIC_OR_PARTITION, partition by partition.
                    ResponseError::UnknownTopicOrPartition.code()
                } else if too_large {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else {
                    self.append(CoordinatorRecord::OffsetCommit {
                        group_id: group_id.clone(),
                        topic: t.name.0.as_str().to_owned(),
                        partition: p.partition_index,
                        value: Some(OffsetCommitValue {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p
                                .committed_metadata
                                .as_ref()
                                .map(|m| m.as_str().to_owned())
                                .unwrap_or_default(),
                            commit_timestamp_ms: now,
                            expire_timestamp_ms: expire,
                        }),
                    });
                    0
                };
                parts.push(
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_topic_id(t.topic_id)
                    .with_partitions(parts),
            );
        }
        OffsetCommitResponse::default().with_topics(topics)
    }

    /// Kafka's `validateOffsetCommit` (shard and `ClassicGroup` parts).
    fn validate_offset_commit(
        &self,
        ctx: &RequestContext,
        req: &OffsetCommitRequest,
    ) -> Result<(), i16> {
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        if self.consumer_groups.contains_key(req.group_id.0.as_str()) {
            // KIP-848: commits into a consumer group carry the member id and epoch (v9+).
            return self.validate_consumer_member(
                req.group_id.0.as_str(),
                member_id,
                generation,
                ctx.api_version >= 9,
            );
        }
        let Some(g) = self.groups.get(req.group_id.0.as_str()) else {
            if generation < 0 {
                // A simple consumer (no group management) or the admin client: the group is
                // created by the commit's replay.
                return Ok(());
            }
            // Why: v9+ says GROUP_ID_NOT_FOUND; older clients expect ILLEGAL_GENERATION.
            return Err(if ctx.api_version >= 9 {
                ResponseError::GroupIdNotFound.code()
            } else {
                ResponseError::IllegalGeneration.code()
            });
        };
        if g.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        if generation < 0 && g.is(GroupState::Empty) {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            g.validate_member(member_id, instance)?;
            if generation != g.generation_id {
                // A member of an older generation must rejoin before committing.
                return Err(ResponseError::IllegalGeneration.code());
            }
        } else if !g.is(GroupState::Empty) {
            // v0-style commits without member and generation only into empty groups.
            return Err(ResponseError::UnknownMemberId.code());
        }
        if g.is(GroupState::CompletingRebalance) {
            // Valid member and generation but no assignment yet: let the consumer handle it.
            return Err(ResponseError::RebalanceInProgress.code());
        }
        Ok(())
    }

    // ---------------------------------------------------------------- transactions

    /// Applies an offset commit or tombstone (Kafka's `OffsetMetadataManager.replay`): a
    /// commit is committed at once without a producer, or pending in `producer_id`'s open
    /// transaction; a tombstone removes the committed offset and every pending one of the
    /// partition.
    pub(crate) fn replay_offset_commit(
        &mut self,
        producer_id: Option<i64>,
        record: &CoordinatorRecord,
    ) {
        let CoordinatorRecord::OffsetCommit {
            group_id,
            topic,
            partition,
            value,
        } = record
        else {
            return;
        };
        self.record_seq += 1;
        let seq = self.record_seq;
        match value {
            Some(v) => {
                // Why: a consumer that commits without group membership gets a so-called
                // simple group: an empty classic group without protocol type (Kafka's
                // OffsetMetadataManager.replay, transactional commits included).
                if !self.groups.contains_key(group_id)
                    && !self.consumer_groups.contains_key(group_id)
                {
                    self.groups
                        .insert(group_id.clone(), ClassicGroup::new(group_id.clone(), None));
                }
                match producer_id {
                    None => self
                        .offsets
                        .put(group_id, topic, *partition, v.clone(), seq),
                    Some(pid) => self.pending_txn.entry(pid).or_default().put(
                        group_id,
                        topic,
                        *partition,
                        v.clone(),
                        seq,
                    ),
                }
            }
            None => {
                self.offsets.remove(group_id, topic, *partition);
                for pending in self.pending_txn.values_mut() {
                    pending.remove(group_id, topic, *partition);
                }
            }
        }
    }

    /// Applies a record of producer `producer_id`'s transaction: offset commits wait for its
    /// marker; anything else (Kafka writes only offsets transactionally) applies at once.
    pub fn replay_transactional(&mut self, producer_id: i64, record: &CoordinatorRecord) {
        match record {
            CoordinatorRecord::OffsetCommit { .. } => {
                self.replay_offset_commit(Some(producer_id), record)
            }
            other => self.replay(other),
        }
    }

    /// Applies producer `producer_id`'s COMMIT (`commit`) or ABORT marker (Kafka's
    /// `replayEndTransactionMarker`): its pending offsets become committed offsets or are
    /// dropped.
    pub fn replay_end_transaction_marker(&mut self, producer_id: i64, commit: bool) {
        let Some(pending) = self.pending_txn.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for ((g, t, p), v) in pending.all() {
            let seq = pending.seq(&g, &t, p).unwrap_or(0);
            // Kafka keeps the most recent of a committed transaction's offset and a
            // non-transactional commit of the same partition written after it.
            if self.offsets.seq(&g, &t, p).is_some_and(|s| s > seq) {
                continue;
            }
            self.offsets.put(&g, &t, p, v, seq);
        }
    }

    /// Whether an open transaction has a pending offset for the partition.
    pub(crate) fn has_pending_txn_offset(
        &self,
        group_id: &str,
        topic: &str,
        partition: i32,
    ) -> bool {
        self.pending_txn
            .values()
            .any(|o| o.get(group_id, topic, partition).is_some())
    }

    /// Whether an open transaction has a pending offset of the group.
    pub(crate) fn group_has_open_txn(&self, group_id: &str) -> bool {
        self.pending_txn
            .values()
            .any(|o| o.group(group_id).is_some())
    }

    /// Drops the pending offsets of a deleted group.
    pub(crate) fn remove_pending_group(&mut self, group_id: &str) {
        for pending in self.pending_txn.values_mut() {
            pending.remove_group(group_id);
        }
    }

    /// The partitions of `group_id` with a pending offset and no committed one (their
    /// tombstones when the group's offsets are all deleted: Kafka's `deleteAllOffsets`).
    pub(crate) fn pending_only_partitions(&self, group_id: &str) -> Vec<(String, i32)> {
        let mut out = std::collections::BTreeSet::new();
        for pending in self.pending_txn.values() {
            if let Some(topics) = pending.group(group_id) {
                for (t, parts) in topics {
                    for p in parts.keys() {
                        if self.offsets.get(group_id, t, *p).is_none() {
                            out.insert((t.clone(), *p));
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// Emits a record of producer `producer_id`'s transaction, applying it as replay does.
    fn append_transactional(&mut self, producer_id: i64, record: CoordinatorRecord) {
        self.replay_transactional(producer_id, &record);
        self.out.records.push(record);
    }

    // ---------------------------------------------------------------- TxnOffsetCommit

    /// TxnOffsetCommit (Kafka's `OffsetMetadataManager.commitTransactionalOffset`): the
    /// offsets are written as records of the producer's transaction (the runtime appends
    /// them as its transactional batch) and stay pending until its marker.
    pub(crate) fn txn_offset_commit(
        &mut self,
        ctx: &RequestContext,
        req: &TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        if let Err(code) = self.validate_txn_offset_commit(ctx, req) {
            return txn_commit_error_response(req, code);
        }
        let group_id = req.group_id.0.as_str().to_owned();
        let producer_id = req.producer_id.0;
        let now = self.now_ms;
        let mut topics = Vec::with_capacity(req.topics.len().min(1024));
        for t in &req.topics {
            let mut parts = Vec::with_capacity(t.partitions.len().min(1024));
            for p in &t.partitions {
                let too_large = p.committed_metadata.as_ref().is_some_and(|m| {
                    // Java's String.length(): UTF-16 code units.
                    m.as_str().encode_utf16().count() > self.config.offset_metadata_max_bytes
                });
                let code = if !self.partition_exists(t.name.0.as_str(), p.partition_index) {
                    ResponseError::UnknownTopicOrPartition.code()
                } else if too_large {
                    ResponseError::OffsetMetadataTooLarge.code()
                } else {
                    self.append_transactional(
                        producer_id,
                        CoordinatorRecord::OffsetCommit {
                            group_id: group_id.clone(),
                            topic: t.name.0.as_str().to_owned(),
                            partition: p.partition_index,
                            value: Some(OffsetCommitValue {
                                offset: p.committed_offset,
                                leader_epoch: p.committed_leader_epoch,
                                metadata: p
                                    .committed_metadata
                                    .as_ref()
                                    .map(|m| m.as_str().to_owned())
                                    .unwrap_or_default(),
                                commit_timestamp_ms: now,
                                expire_timestamp_ms: -1,
                            }),
                        },
                    );
                    0
                };
                parts.push(
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code),
                );
            }
            topics.push(
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts),
            );
        }
        TxnOffsetCommitResponse::default().with_topics(topics)
    }

    /// Kafka's `validateTransactionalOffsetCommit`: KIP-447 (v3+) member checks when the
    /// request names a member or a generation; a request without them is accepted (the
    /// transaction coordinator already fenced zombies by producer epoch).
    fn validate_txn_offset_commit(
        &self,
        _ctx: &RequestContext,
        req: &TxnOffsetCommitRequest,
    ) -> Result<(), i16> {
        let group_id = req.group_id.0.as_str();
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId.code());
        }
        let generation = req.generation_id;
        let member_id = req.member_id.as_str();
        let instance = req.group_instance_id.as_ref().map(|s| s.as_str());
        if let Some(g) = self.consumer_groups.get(group_id) {
            // ConsumerGroup.validateOffsetCommit with isTransactional = true.
            if generation < 0 && g.members.is_empty() {
                return Ok(());
            }
            if generation == -1 && member_id.is_empty() && instance.is_none() {
                return Ok(());
            }
            let Some(m) = g.members.get(member_id) else {
                return Err(ResponseError::UnknownMemberId.code());
            };
            // Why: a stale member epoch is ILLEGAL_GENERATION for TxnOffsetCommit (Kafka
            // maps STALE_MEMBER_EPOCH, which transactional clients do not know).
            if generation != m.member_epoch {
                return Err(ResponseError::IllegalGeneration.code());
            }
            return Ok(());
        }
        let Some(g) = self.groups.get(group_id) else {
            // No group: a simple consumer or the admin client (generation -1) gets a simple
            // group by the commit's replay; a member of a group that is gone must rejoin.
            return if generation < 0 {
                Ok(())
            } else {
                Err(ResponseError::IllegalGeneration.code())
            };
        };
        // ClassicGroup.validateOffsetCommit with isTransactional = true: no UNKNOWN_MEMBER_ID
        // for commits without a member, and no REBALANCE_IN_PROGRESS.
        if g.is(GroupState::Dead) {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        if generation < 0 && g.is(GroupState::Empty) {
            return Ok(());
        }
        if generation >= 0 || !member_id.is_empty() || instance.is_some() {
            g.validate_member(member_id, instance)?;
            if generation != g.generation_id {
                return Err(ResponseError::IllegalGeneration.code());
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------- OffsetFetch

    pub(crate) fn offset_fetch(
        &self,
        ctx: &RequestContext,
        req: &OffsetFetchRequest,
    ) -> OffsetFetchResponse {
        let mut resp = OffsetFetchResponse::default();
        if ctx.api_version >= 8 {
            // Several groups per request (KIP-709).
            resp.groups = req
                .groups
                .iter()
                .map(|g| {
                    // KIP-848: a member of a consumer group fetches with its id and epoch.
                    let member_id = g.member_id.as_ref().map(|m| m.as_str()).unwrap_or("");
                    if (!member_id.is_empty() || g.member_epoch >= 0)
                        && self.consumer_groups.contains_key(g.group_id.0.as_str())
                    {
                        if let Err(code) = self.validate_consumer_member(
                            g.group_id.0.as_str(),
                            member_id,
                            g.member_epoch,
                            true,
                        ) {
                            return OffsetFetchResponseGroup::default()
                                .with_group_id(g.group_id.clone())
                                .with_error_code(code);
                        }
                    }
                    let topics = g.topics.as_ref().map(|ts| {
                        ts.iter()
                            .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                            .collect()
                    });
                    let found =
                        self.fetch_group_offsets(g.group_id.0.as_str(), topics, req.require_stable);
                    OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_topics(
                            found
                                .into_iter()
                                .map(|(name, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(TopicName(StrBytes::from_string(name)))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, c, code)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_error_code(code)
                                                        .with_committed_offset(c.offset)
                                                        .with_committed_leader_epoch(c.leader_epoch)
                                                        .with_metadata(Some(StrBytes::from_string(
                                                            c.metadata,
                                                        )))
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
        } else {
            let topics = req.topics.as_ref().map(|ts| {
                ts.iter()
                    .map(|t| (t.name.0.as_str().to_owned(), t.partition_indexes.clone()))
                    .collect()
            });
            let found =
                self.fetch_group_offsets(req.group_id.0.as_str(), topics, req.require_stable);
            resp.topics = found
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name)))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, c, code)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                        .with_committed_offset(c.offset)
                                        .with_committed_leader_epoch(c.leader_epoch)
                                        .with_metadata(Some(StrBytes::from_string(c.metadata)))
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        resp
    }

    /// Offsets of `group_id` for the given topics and partitions (-1 for none), or all of its
    /// offsets when `topics` is `None`, each with its error code. An unknown group has no
    /// offsets (Kafka answers -1s, not an error). With `require_stable` (OffsetFetch v7+,
    /// KIP-447) a partition with a pending transactional offset is UNSTABLE_OFFSET_COMMIT,
    /// so that a new consumer does not start from an offset its predecessor's open
    /// transaction is about to move; without it the last committed offset is answered.
    fn fetch_group_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<(String, Vec<FetchedOffset>)> {
        let none = || CommittedOffset {
            offset: -1,
            leader_epoch: -1,
            metadata: String::new(),
        };
        let to_committed = |v: &OffsetCommitValue| CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata.clone(),
        };
        let unstable =
            |t: &str, p: i32| require_stable && self.has_pending_txn_offset(group_id, t, p);
        const UNSTABLE: i16 = ResponseError::UnstableOffsetCommit.code();
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(name, parts)| {
                    let found = parts
                        .into_iter()
                        .map(|p| {
                            if unstable(&name, p) {
                                return (p, none(), UNSTABLE);
                            }
                            let c = self
                                .offsets
                                .get(group_id, &name, p)
                                .map(to_committed)
                                .unwrap_or_else(none);
                            (p, c, 0)
                        })
                        .collect();
                    (name, found)
                })
                .collect(),
            None => self
                .offsets
                .group(group_id)
                .map(|topics| {
                    topics
                        .iter()
                        .map(|(t, parts)| {
                            (
                                t.clone(),
                                parts
                                    .iter()
                                    .map(|(p, v)| {
                                        if unstable(t, *p) {
                                            (*p, none(), UNSTABLE)
                                        } else {
                                            (*p, to_committed(v), 0)
                                        }
                                    })
                                    .collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    // ---------------------------------------------------------------- OffsetDelete

    pub(crate) fn offset_delete(&mut self, req: &OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group_id = req.group_id.0.as_str().to_owned();
        let top = |code| OffsetDeleteResponse::default().with_error_code(code);
        if group_id.is_empty() {
            return top(ResponseError::InvalidGroupId.code());
        }
        if let Some(subscribed) = self.consumer_subscribed_topics(&group_id) {
            return self.offset_delete_consumer(req, &group_id, &subscribed);
        }
        let Some(g) = self.groups.get(&group_id) else {
            return top(ResponseError::GroupIdNotFound.code());
        };
        match g.state {
            GroupState::Dead => return top(ResponseError::GroupIdNotFound.code()),
            // Why (KIP-496): offsets of a live group can only be deleted for topics it does not
            // consume, which the coordinator can only tell for the consumer protocol.
            GroupState::Stable
            | GroupState::PreparingRebalance
            | GroupState::CompletingRebalance
                if g.protocol_type.as_deref() != Some("consumer") =>
            {
                return top(ResponseError::NonEmptyGroup.code())
            }
            _ => {}
        }
        let mut tombstones = Vec::new();
        let mut topics = Vec::with_capacity(req.topics.len().min(1024));
        for t in &req.topics {
            let name = t.name.0.as_str();
            let mut parts = Vec::new();
            if g.is_subscribed_to_topic(name) {
                for p in &t.partitions {
                    parts.push(
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::GroupSubscribedToTopic.code()),
                    );
                }
            } else {
                for p in &t.partitions {
                    // Kafka answers only for partitions that had an offset.
                    if self
                        .offsets
                        .get(&group_id, name, p.partition_index)
                        .is_some()
                        || self.has_pending_txn_offset(&group_id, name, p.partition_index)
                    {
                        parts.push(
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(p.partition_index),
                        );
                        tombstones.push(CoordinatorRecord::OffsetCommit {
                            group_id: group_id.clone(),
                            topic: name.to_owned(),
                            partition: p.partition_index,
                            value: None,
                        });
                    }
                }
            }
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts),
            );
        }
        for r in tombstones {
            self.append(r);
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    /// Whether `topic`-`partition` exists, per the last topics image the shell gave; without
    /// one (unit tests of the shard alone) every partition is taken to exist.
    fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        if !self.topics_known {
            return true;
        }
        self.topics
            .topics
            .get(topic)
            .is_some_and(|(_, n)| partition >= 0 && partition < *n)
    }

    /// OffsetDelete on a KIP-848 group: offsets of topics its members subscribe to cannot be
    /// deleted (KIP-496).
    fn offset_delete_consumer(
        &mut self,
        req: &OffsetDeleteRequest,
        group_id: &str,
        subscribed: &std::collections::BTreeSet<String>,
    ) -> OffsetDeleteResponse {
        let mut tombstones = Vec::new();
        let mut topics = Vec::with_capacity(req.topics.len().min(1024));
        for t in &req.topics {
            let name = t.name.0.as_str();
            let mut parts = Vec::new();
            for p in &t.partitions {
                if subscribed.contains(name) {
                    parts.push(
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::GroupSubscribedToTopic.code()),
                    );
                } else if self
                    .offsets
                    .get(group_id, name, p.partition_index)
                    .is_some()
                    || self.has_pending_txn_offset(group_id, name, p.partition_index)
                {
                    parts.push(
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index),
                    );
                    tombstones.push(CoordinatorRecord::OffsetCommit {
                        group_id: group_id.to_owned(),
                        topic: name.to_owned(),
                        partition: p.partition_index,
                        value: None,
                    });
                }
            }
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(parts),
            );
        }
        for r in tombstones {
            self.append(r);
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }

    // ---------------------------------------------------------------- retention

    /// Kafka's `cleanupGroupMetadata`: tombstones expired offsets, then deletes empty groups
    /// left without offsets.
    pub(crate) fn cleanup_group_metadata(&mut self) {
        let now = self.now_ms;
        let retention = self.config.offsets_retention_ms;
        let mut records = Vec::new();
        let mut groups_to_delete = Vec::new();
        for (group_id, g) in &self.groups {
            let mut all_expired = true;
            if let Some(topics) = self.offsets.group(group_id) {
                match expiration_base(g) {
                    None => all_expired = false,
                    Some(base) => {
                        for (topic, parts) in topics {
                            if g.is_subscribed_to_topic(topic) {
                                all_expired = false;
                                continue;
                            }
                            for (p, o) in parts {
                                let expired = if o.expire_timestamp_ms >= 0 {
                                    now >= o.expire_timestamp_ms
                                } else {
                                    now.saturating_sub(base.of(o)) >= retention
                                };
                                // Kafka: not while an open transaction has a pending
                                // offset for the partition.
                                if expired && !self.has_pending_txn_offset(group_id, topic, *p) {
                                    records.push(CoordinatorRecord::OffsetCommit {
                                        group_id: group_id.clone(),
                                        topic: topic.clone(),
                                        partition: *p,
                                        value: None,
                                    });
                                } else {
                                    all_expired = false;
                                }
                            }
                        }
                    }
                }
            }
            // Why: an empty group without offsets left is deleted (Kafka's maybeDeleteGroup),
            // so groups created by failed or probing joins do not pile up.
            if all_expired
                && g.is(GroupState::Empty)
                && g.pending_join_members.is_empty()
                && !self.group_has_open_txn(group_id)
            {
                groups_to_delete.push(group_id.clone());
            }
        }
        // KIP-848 groups: offsets expire from their commit time unless a member subscribes
        // to the topic (Kafka's `ConsumerGroup.offsetExpirationCondition`); an empty group
        // left without offsets is deleted.
        let mut consumer_groups_to_delete = Vec::new();
        for (group_id, g) in &self.consumer_groups {
            let subscribed = g.subscribed_names();
            let regex_matched: Vec<String> = g
                .subscription_metadata
                .as_ref()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let mut all_expired = true;
            if let Some(topics) = self.offsets.group(group_id) {
                for (topic, parts) in topics {
                    if !g.members.is_empty()
                        && (subscribed.contains(topic) || regex_matched.contains(topic))
                    {
                        all_expired = false;
                        continue;
                    }
                    for (p, o) in parts {
                        let expired = if o.expire_timestamp_ms >= 0 {
                            now >= o.expire_timestamp_ms
                        } else {
                            now.saturating_sub(o.commit_timestamp_ms) >= retention
                        };
                        if expired && !self.has_pending_txn_offset(group_id, topic, *p) {
                            records.push(CoordinatorRecord::OffsetCommit {
                                group_id: group_id.clone(),
                                topic: topic.clone(),
                                partition: *p,
                                value: None,
                            });
                        } else {
                            all_expired = false;
                        }
                    }
                }
            }
            if all_expired && g.members.is_empty() && !self.group_has_open_txn(group_id) {
                consumer_groups_to_delete.push(group_id.clone());
            }
        }
        if !records.is_empty()
            || !groups_to_delete.is_empty()
            || !consumer_groups_to_delete.is_empty()
        {
            info!(
                expired_offsets = records.len(),
                deleted_groups = groups_to_delete.len() + consumer_groups_to_delete.len(),
                "offset retention cleanup"
            );
        }
        for r in records {
            self.append(r);
        }
        for g in groups_to_delete {
            self.append(CoordinatorRecord::GroupMetadata {
                group_id: g,
                value: None,
            });
        }
        for g in consumer_groups_to_delete {
            self.delete_consumer_group_records(&g);
        }
    }
}

fn commit_error_response(req: &OffsetCommitRequest, code: i16) -> OffsetCommitResponse {
    OffsetCommitResponse::default().with_topics(
        req.topics
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
    )
}

/// The TxnOffsetCommit response failing every partition of `req` with `code`.
pub(crate) fn txn_commit_error_response(
    req: &TxnOffsetCommitRequest,
    code: i16,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse::default().with_topics(
        req.topics
            .iter()
            .map(|t| {
                TxnOffsetCommitResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}
