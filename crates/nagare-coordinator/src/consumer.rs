//! KIP-848 consumer groups: the `consumer` group protocol (ConsumerGroupHeartbeat) with
//! server-side assignment and incremental reconciliation, following Kafka 4.x's
//! `GroupMetadataManager.consumerGroupHeartbeat`, `ConsumerGroup`, `ConsumerGroupMember` and
//! `CurrentAssignmentBuilder`.
//!
//! The group has an epoch (bumped when membership, subscriptions or the subscribed topics'
//! metadata change), a target assignment computed by an assignor at some epoch, and each
//! member reconciles from its current assignment towards its target: partitions to revoke are
//! revoked first (the member keeps its epoch until it acknowledges), and a partition is only
//! given to a member once no other member owns it (pending revocation included). A partition
//! is therefore never owned by two members at once.
//!
//! Every durable change goes through a record that the live path applies with
//! [`GroupCoordinatorShard::replay`], so a reloaded coordinator rebuilds exactly the same
//! groups; only timers (session and rebalance timeouts) are transient.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::consumer_group_describe_response::{
    self as cgd, DescribedGroup as CgDescribedGroup,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HbAssignment, TopicPartitions as HbTopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::info;
use uuid::Uuid;

use crate::assignor::{self, MemberSpec};
use crate::record::{
    ConsumerMemberMetadataValue, CoordinatorRecord, CurrentMemberAssignmentValue, TopicPartitions,
};
use crate::runtime::RequestContext;
use crate::shard::GroupCoordinatorShard;
use crate::timer::{TimerAction, TimerKey};

/// Epoch a member sends to leave the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// Epoch a static member sends to leave temporarily (it keeps its assignment until its
/// session expires or another process with its instance id takes over).
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// The names and partition counts of the cluster's topics, as the group coordinator needs
/// them (the broker feeds it from each new metadata image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicsImage {
    /// Topic name → (topic id, number of partitions).
    pub topics: BTreeMap<String, (Uuid, i32)>,
}

impl TopicsImage {
    /// The name of the topic with id `id`, if it exists.
    pub fn name_of(&self, id: &Uuid) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, (tid, _))| tid == id)
            .map(|(n, _)| n.as_str())
    }
}

/// A member's reconciliation state (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberState {
    /// The member owns its whole target assignment (or is moving to it with nothing blocked).
    Stable,
    /// The member must revoke partitions before going further.
    UnrevokedPartitions,
    /// Some partitions of the member's target are still owned by other members.
    UnreleasedPartitions,
}

impl MemberState {
    fn to_i8(self) -> i8 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    fn from_i8(v: i8) -> Self {
        match v {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }
}

/// The state of a consumer group (Kafka's `ConsumerGroupState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The group epoch is ahead of the target assignment.
    Assigning,
    /// Some member has not reached the target assignment yet.
    Reconciling,
    /// Every member owns its target assignment.
    Stable,
}

impl ConsumerGroupState {
    /// The name Kafka shows in ListGroups and ConsumerGroupDescribe.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A read-only view of one consumer-group member, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMemberView {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub instance_id: Option<String>,
    /// The member epoch.
    pub member_epoch: i32,
    /// The previous member epoch.
    pub previous_member_epoch: i32,
    /// The reconciliation state.
    pub state: MemberState,
    /// Partitions the member owns.
    pub assigned: TopicPartitions,
    /// Partitions the member must revoke (still owned until it acknowledges).
    pub pending_revocation: TopicPartitions,
    /// The member's target assignment.
    pub target: TopicPartitions,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
}

/// A read-only view of a consumer group: what replaying its records yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupView {
    /// The group epoch.
    pub group_epoch: i32,
    /// The epoch of the target assignment.
    pub assignment_epoch: i32,
    /// The state.
    pub state: ConsumerGroupState,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMemberView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerMember {
    pub(crate) member_id: String,
    pub(crate) meta: ConsumerMemberMetadataValue,
    pub(crate) member_epoch: i32,
    pub(crate) previous_member_epoch: i32,
    pub(crate) state: MemberState,
    pub(crate) assigned: TopicPartitions,
    pub(crate) pending_revocation: TopicPartitions,
}

impl ConsumerMember {
    fn new(member_id: String) -> Self {
        ConsumerMember {
            member_id,
            meta: ConsumerMemberMetadataValue {
                rebalance_timeout_ms: -1,
                ..Default::default()
            },
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: TopicPartitions::new(),
            pending_revocation: TopicPartitions::new(),
        }
    }

    fn assignment_value(&self) -> CurrentMemberAssignmentValue {
        CurrentMemberAssignmentValue {
            member_epoch: self.member_epoch,
            previous_member_epoch: self.previous_member_epoch,
            state: self.state.to_i8(),
            assigned_partitions: self.assigned.clone(),
            partitions_pending_revocation: self.pending_revocation.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    pub(crate) group_id: String,
    pub(crate) group_epoch: i32,
    pub(crate) assignment_epoch: i32,
    pub(crate) members: BTreeMap<String, ConsumerMember>,
    /// `group.instance.id` → member id.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Target assignment by member id.
    pub(crate) target: BTreeMap<String, TopicPartitions>,
    /// Who owns each partition now: (topic id, partition) → owner's member epoch (Kafka's
    /// `currentPartitionEpoch`); absent means free.
    pub(crate) owners: BTreeMap<(Uuid, i32), (String, i32)>,
    /// The subscribed topics' metadata the current group epoch was computed with; `None`
    /// after a reload (the first heartbeat then bumps the epoch once, so that metadata
    /// changes made while the coordinator was down are not missed).
    pub(crate) subscription_metadata: Option<BTreeMap<String, (Uuid, i32)>>,
}

impl ConsumerGroup {
    fn new(group_id: String) -> Self {
        ConsumerGroup {
            group_id,
            ..Default::default()
        }
    }

    pub(crate) fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    fn release(&mut self, member_id: &str) {
        self.owners.retain(|_, (owner, _)| owner != member_id);
    }

    fn claim(&mut self, m: &ConsumerMember) {
        for set in [&m.assigned, &m.pending_revocation] {
            for (t, ps) in set {
                for p in ps {
                    let prev = self
                        .owners
                        .insert((*t, *p), (m.member_id.clone(), m.member_epoch));
                    debug_assert!(
                        prev.as_ref().is_none_or(|(o, _)| o == &m.member_id),
                        "partition {t}-{p} owned by {prev:?} and {}",
                        m.member_id
                    );
                }
            }
        }
    }

    /// Topics subscribed by any member (by name).
    pub(crate) fn subscribed_names(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.meta.subscribed_topic_names.iter().cloned())
            .collect()
    }

    pub(crate) fn view(&self) -> ConsumerGroupView {
        ConsumerGroupView {
            group_epoch: self.group_epoch,
            assignment_epoch: self.assignment_epoch,
            state: self.state(),
            members: self
                .members
                .values()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        ConsumerMemberView {
                            member_id: m.member_id.clone(),
                            instance_id: m.meta.instance_id.clone(),
                            member_epoch: m.member_epoch,
                            previous_member_epoch: m.previous_member_epoch,
                            state: m.state,
                            assigned: m.assigned.clone(),
                            pending_revocation: m.pending_revocation.clone(),
                            target: self.target.get(&m.member_id).cloned().unwrap_or_default(),
                            subscribed_topic_names: m.meta.subscribed_topic_names.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

fn hb_error(code: i16, message: &str) -> ConsumerGroupHeartbeatResponse {
    let mut r = ConsumerGroupHeartbeatResponse::default();
    r.error_code = code;
    r.error_message = Some(sb(message));
    r
}

fn is_subset(owned: &[(Uuid, Vec<i32>)], assigned: &TopicPartitions) -> bool {
    owned.iter().all(|(t, ps)| {
        ps.is_empty()
            || assigned
                .get(t)
                .is_some_and(|a| ps.iter().all(|p| a.contains(p)))
    })
}

/// Kafka's `CurrentAssignmentBuilder`: the member's next state from its current one, the
/// target (at `target_epoch`), what the member says it owns (`None`: not told) and who owns
/// what now.
fn reconcile(
    m: &ConsumerMember,
    target_epoch: i32,
    target: &TopicPartitions,
    owned: Option<&[(Uuid, Vec<i32>)]>,
    owners: &BTreeMap<(Uuid, i32), (String, i32)>,
) -> ConsumerMember {
    // Whether the member still (or may still) own any of `revoking`: without a list of owned
    // partitions we cannot tell, so we assume it does.
    let owns_any = |revoking: &TopicPartitions| match owned {
        None => true,
        Some(owned) => owned.iter().any(|(t, ps)| {
            revoking
                .get(t)
                .is_some_and(|r| ps.iter().any(|p| r.contains(p)))
        }),
    };
    match m.state {
        MemberState::Stable if m.member_epoch == target_epoch => return m.clone(),
        MemberState::UnrevokedPartitions if owns_any(&m.pending_revocation) => {
            return m.clone();
        }
        _ => {}
    }
    // computeNextAssignment(memberEpoch, assignedPartitions)
    let current = &m.assigned;
    let mut kept = TopicPartitions::new();
    let mut revoking = TopicPartitions::new();
    let mut newly = TopicPartitions::new();
    let mut unreleased = false;
    let topics: BTreeSet<&Uuid> = current.keys().chain(target.keys()).collect();
    for t in topics {
        let cur = current.get(t).cloned().unwrap_or_default();
        let tgt = target.get(t).cloned().unwrap_or_default();
        for p in &cur {
            if tgt.contains(p) {
                kept.entry(*t).or_default().insert(*p);
            } else {
                revoking.entry(*t).or_default().insert(*p);
            }
        }
        for p in tgt.difference(&cur) {
            // Why: a partition is given only once nobody else owns it (KIP-848's
            // "revocations first"): the owner must have acknowledged its revocation.
            match owners.get(&(*t, *p)) {
                Some((owner, _)) if owner != &m.member_id => unreleased = true,
                _ => {
                    newly.entry(*t).or_default().insert(*p);
                }
            }
        }
    }
    let mut next = m.clone();
    next.pending_revocation = TopicPartitions::new();
    if !revoking.is_empty() && owns_any(&revoking) {
        // Revoke first: the member keeps its epoch until it acknowledges.
        next.state = MemberState::UnrevokedPartitions;
        next.assigned = kept;
        next.pending_revocation = revoking;
        return next;
    }
    for (t, ps) in newly {
        kept.entry(t).or_default().extend(ps);
    }
    next.assigned = kept;
    if next.member_epoch != target_epoch {
        next.previous_member_epoch = m.member_epoch;
        next.member_epoch = target_epoch;
    }
    next.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    next
}

fn to_hb_assignment(a: &TopicPartitions) -> HbAssignment {
    HbAssignment::default().with_topic_partitions(
        a.iter()
            .map(|(t, ps)| {
                HbTopicPartitions::default()
                    .with_topic_id(*t)
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

impl GroupCoordinatorShard {
    // ---------------------------------------------------------------- replay

    /// Applies a KIP-848 record (Kafka's `GroupMetadataManager.replay` for consumer groups).
    pub(crate) fn replay_consumer(&mut self, record: &CoordinatorRecord) {
        match record {
            CoordinatorRecord::ConsumerGroupMetadata {
                group_id,
                epoch: Some(e),
            } => {
                self.claim_group_id_for_consumer(group_id);
                let g = self
                    .consumer_groups
                    .entry(group_id.clone())
                    .or_insert_with(|| ConsumerGroup::new(group_id.clone()));
                g.group_epoch = *e;
            }
            CoordinatorRecord::ConsumerGroupMetadata {
                group_id,
                epoch: None,
            } => {
                self.consumer_groups.remove(group_id);
                self.offsets.remove_group(group_id);
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
                group_id,
                assignment_epoch,
            } => {
                if let Some(g) = self.consumer_groups.get_mut(group_id) {
                    g.assignment_epoch = assignment_epoch.unwrap_or(0);
                }
            }
            CoordinatorRecord::ConsumerGroupMemberMetadata {
                group_id,
                member_id,
                value: Some(v),
            } => {
                self.claim_group_id_for_consumer(group_id);
                let g = self
                    .consumer_groups
                    .entry(group_id.clone())
                    .or_insert_with(|| ConsumerGroup::new(group_id.clone()));
                let m = g
                    .members
                    .entry(member_id.clone())
                    .or_insert_with(|| ConsumerMember::new(member_id.clone()));
                if let Some(old) = &m.meta.instance_id {
                    if g.static_members.get(old) == Some(member_id) {
                        g.static_members.remove(old);
                    }
                }
                m.meta = v.clone();
                if let Some(i) = &v.instance_id {
                    g.static_members.insert(i.clone(), member_id.clone());
                }
            }
            CoordinatorRecord::ConsumerGroupMemberMetadata {
                group_id,
                member_id,
                value: None,
            } => {
                if let Some(g) = self.consumer_groups.get_mut(group_id) {
                    if let Some(m) = g.members.remove(member_id) {
                        if let Some(i) = &m.meta.instance_id {
                            if g.static_members.get(i) == Some(member_id) {
                                g.static_members.remove(i);
                            }
                        }
                    }
                    g.release(member_id);
                }
            }
            CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                group_id,
                member_id,
                partitions,
            } => {
                if let Some(g) = self.consumer_groups.get_mut(group_id) {
                    match partitions {
                        Some(p) => {
                            g.target.insert(member_id.clone(), p.clone());
                        }
                        None => {
                            g.target.remove(member_id);
                        }
                    }
                }
            }
            CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id,
                member_id,
                value,
            } => {
                let Some(g) = self.consumer_groups.get_mut(group_id) else {
                    return;
                };
                g.release(member_id);
                let Some(m) = g.members.get_mut(member_id) else {
                    return;
                };
                match value {
                    Some(v) => {
                        m.member_epoch = v.member_epoch;
                        m.previous_member_epoch = v.previous_member_epoch;
                        m.state = MemberState::from_i8(v.state);
                        m.assigned = v.assigned_partitions.clone();
                        m.pending_revocation = v.partitions_pending_revocation.clone();
                    }
                    None => {
                        m.member_epoch = LEAVE_GROUP_MEMBER_EPOCH;
                        m.assigned.clear();
                        m.pending_revocation.clear();
                    }
                }
                let m = m.clone();
                g.claim(&m);
            }
            _ => {}
        }
    }

    /// Classic and consumer groups share one id space: a consumer-group record for an id
    /// held by an empty classic group (e.g. a simple consumer's offsets) converts it, as
    /// Kafka's online upgrade of empty groups does. Its offsets stay.
    fn claim_group_id_for_consumer(&mut self, group_id: &str) {
        if self
            .groups
            .get(group_id)
            .is_some_and(|g| g.members.is_empty())
        {
            self.groups.remove(group_id);
        }
    }

    // ---------------------------------------------------------------- heartbeat

    /// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
    fn validate_heartbeat(
        &self,
        ctx: &RequestContext,
        req: &ConsumerGroupHeartbeatRequest,
    ) -> Result<(), (i16, String)> {
        let invalid = |m: &str| Err((ResponseError::InvalidRequest.code(), m.to_owned()));
        if req.group_id.0.is_empty() {
            return invalid("GroupId can't be empty.");
        }
        if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
            return invalid("InstanceId can't be empty.");
        }
        if req.rack_id.as_ref().is_some_and(|r| r.is_empty()) {
            return invalid("RackId can't be empty.");
        }
        match req.member_epoch {
            0 => {
                if ctx.api_version >= 1 && req.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
                if req.rebalance_timeout_ms == -1 {
                    return invalid("RebalanceTimeoutMs must be provided in first request.");
                }
                if req.topic_partitions.as_ref().is_none_or(|t| !t.is_empty()) {
                    return invalid("TopicPartitions must be empty when (re-)joining.");
                }
                if req.subscribed_topic_names.is_none() && req.subscribed_topic_regex.is_none() {
                    return invalid(
                        "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                    );
                }
            }
            e if e > 0 => {
                if req.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
            }
            LEAVE_GROUP_MEMBER_EPOCH => {
                if req.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
            }
            LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                if req.member_id.is_empty() {
                    return invalid("MemberId can't be empty.");
                }
                if req.instance_id.is_none() {
                    return invalid("InstanceId can't be null.");
                }
            }
            _ => return invalid("MemberEpoch is invalid."),
        }
        if let Some(a) = &req.server_assignor {
            if !self
                .config
                .consumer_assignors
                .iter()
                .any(|n| n == a.as_str())
            {
                return Err((
                    ResponseError::UnsupportedAssignor.code(),
                    format!("ServerAssignor {} is not supported.", a.as_str()),
                ));
            }
        }
        if let Some(r) = &req.subscribed_topic_regex {
            if regex::Regex::new(&format!("^(?:{})$", r.as_str())).is_err() {
                return Err((
                    ResponseError::InvalidRegularExpression.code(),
                    format!(
                        "SubscribedTopicRegex `{}` is not a valid regular expression.",
                        r.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// ConsumerGroupHeartbeat (API 68).
    pub(crate) fn consumer_group_heartbeat(
        &mut self,
        ctx: &RequestContext,
        req: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        if let Err((code, msg)) = self.validate_heartbeat(ctx, &req) {
            return hb_error(code, &msg);
        }
        let group_id = req.group_id.0.as_str().to_owned();
        if req.member_epoch < 0 {
            return self.consumer_group_leave(&group_id, &req);
        }
        if self
            .groups
            .get(&group_id)
            .is_some_and(|g| !g.members.is_empty())
        {
            // KIP-848: one id space; a live classic group is not a consumer group.
            return hb_error(
                ResponseError::GroupIdNotFound.code(),
                &format!("Group {group_id} is not a consumer group."),
            );
        }
        let owned: Option<Vec<(Uuid, Vec<i32>)>> = req.topic_partitions.as_ref().map(|tps| {
            tps.iter()
                .map(|t| (t.topic_id, t.partitions.clone()))
                .collect()
        });
        let member_id_in = req.member_id.as_str().to_owned();
        let instance = req.instance_id.as_ref().map(|s| s.as_str().to_owned());
        let exists = self.consumer_groups.contains_key(&group_id);
        if !exists && req.member_epoch != 0 {
            // Why: the group is gone (deleted, or expired); UNKNOWN_MEMBER_ID makes the
            // client rejoin with epoch 0, which creates it again.
            return hb_error(
                ResponseError::UnknownMemberId.code(),
                &format!("Member {member_id_in} is not a member of group {group_id}."),
            );
        }
        let mut group = self
            .consumer_groups
            .get(&group_id)
            .cloned()
            .unwrap_or_else(|| ConsumerGroup::new(group_id.clone()));

        // ---- the member: new, rejoining, replacing a static member, or known
        let mut replaced: Option<String> = None;
        let member: ConsumerMember = match (&instance, req.member_epoch) {
            (Some(inst), 0) => match group.static_members.get(inst).cloned() {
                Some(old_id) if old_id != member_id_in => {
                    let Some(old) = group.members.get(&old_id) else {
                        return hb_error(
                            ResponseError::UnknownServerError.code(),
                            "static member missing",
                        );
                    };
                    if old.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                        return hb_error(
                            ResponseError::UnreleasedInstanceId.code(),
                            &format!(
                                "Static member {old_id} with instance id {inst} is still active."
                            ),
                        );
                    }
                    // KIP-848 static membership: the new process takes over the old member's
                    // assignment and epoch without a rebalance.
                    replaced = Some(old_id);
                    let mut m = old.clone();
                    m.member_id = self.member_id_for(ctx, &member_id_in);
                    m
                }
                _ => self.fresh_member(ctx, &group, &member_id_in),
            },
            (None, 0) => self.fresh_member(ctx, &group, &member_id_in),
            (Some(inst), _) => match group.static_members.get(inst) {
                None => {
                    return hb_error(
                        ResponseError::UnknownMemberId.code(),
                        &format!("Instance id {inst} is unknown."),
                    )
                }
                Some(id) if id != &member_id_in => {
                    return hb_error(
                        ResponseError::FencedInstanceId.code(),
                        &format!("Instance id {inst} belongs to member {id}."),
                    )
                }
                Some(id) => match group.members.get(id) {
                    Some(m) => m.clone(),
                    None => {
                        return hb_error(ResponseError::UnknownMemberId.code(), "unknown member")
                    }
                },
            },
            (None, _) => match group.members.get(&member_id_in) {
                Some(m) => m.clone(),
                None => {
                    return hb_error(
                        ResponseError::UnknownMemberId.code(),
                        &format!("Member {member_id_in} is not a member of group {group_id}."),
                    )
                }
            },
        };
        let is_new = !group.members.contains_key(&member.member_id) && replaced.is_none();
        if is_new && group.members.len() >= self.config.consumer_max_size {
            return hb_error(
                ResponseError::GroupMaxSizeReached.code(),
                &format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    self.config.consumer_max_size
                ),
            );
        }
        if req.member_epoch > 0 {
            // Kafka's throwIfMemberEpochIsInvalid: a member ahead of us, or behind by more
            // than a lost response, is fenced.
            let e = req.member_epoch;
            let lost_response = e == member.previous_member_epoch
                && owned
                    .as_deref()
                    .is_some_and(|o| is_subset(o, &member.assigned));
            if e > member.member_epoch || (e < member.member_epoch && !lost_response) {
                return hb_error(
                    ResponseError::FencedMemberEpoch.code(),
                    &format!(
                        "The consumer group member has a smaller or larger member epoch ({e}) than the one known by the group coordinator ({}).",
                        member.member_epoch
                    ),
                );
            }
        }

        // ---- records
        let member_id = member.member_id.clone();
        let mut meta = member.meta.clone();
        meta.client_id = ctx.client_id.clone();
        meta.client_host = ctx.client_host.clone();
        if let Some(i) = &instance {
            meta.instance_id = Some(i.clone());
        }
        if let Some(r) = &req.rack_id {
            meta.rack_id = Some(r.as_str().to_owned());
        }
        if req.rebalance_timeout_ms > 0 {
            meta.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut v: Vec<String> = names.iter().map(|n| n.0.as_str().to_owned()).collect();
            v.sort();
            v.dedup();
            meta.subscribed_topic_names = v;
        }
        if let Some(r) = &req.subscribed_topic_regex {
            meta.subscribed_topic_regex = (!r.is_empty()).then(|| r.as_str().to_owned());
        }
        if let Some(a) = &req.server_assignor {
            meta.server_assignor = Some(a.as_str().to_owned());
        }
        let subscription_changed = is_new
            || meta.subscribed_topic_names != member.meta.subscribed_topic_names
            || meta.subscribed_topic_regex != member.meta.subscribed_topic_regex
            || meta.server_assignor != member.meta.server_assignor;
        if let Some(old_id) = &replaced {
            self.emit_member_tombstones(&group_id, old_id);
        }
        if is_new || replaced.is_some() || meta != member.meta {
            self.append(CoordinatorRecord::ConsumerGroupMemberMetadata {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                value: Some(meta.clone()),
            });
        }
        let rejoining = req.member_epoch == 0 && !is_new && replaced.is_none();
        if rejoining {
            // The member rejoined with epoch 0: it owns nothing any more.
            self.append(CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                value: Some(member.assignment_value()),
            });
        }
        if let Some(old_id) = &replaced {
            // The new member id inherits the old one's target and current assignment.
            let target = group.target.get(old_id).cloned().unwrap_or_default();
            self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                partitions: Some(target),
            });
            self.append(CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                value: Some(member.assignment_value()),
            });
        }
        // Reload the group as the records left it.
        group = match self.consumer_groups.get(&group_id) {
            Some(g) => g.clone(),
            None => group,
        };
        let mut bump = subscription_changed;
        let metadata = self.subscription_metadata(&group, &member_id, &meta);
        if group.subscription_metadata.as_ref() != Some(&metadata) {
            // KIP-848: partitions added to or topics removed from the subscription change the
            // group's metadata, which requires a new target assignment.
            bump = true;
        }
        if bump || !exists {
            let epoch = group.group_epoch.saturating_add(1);
            self.append(CoordinatorRecord::ConsumerGroupMetadata {
                group_id: group_id.clone(),
                epoch: Some(epoch),
            });
        }
        if let Some(g) = self.consumer_groups.get_mut(&group_id) {
            g.subscription_metadata = Some(metadata.clone());
        }
        let Some(snapshot) = self.consumer_groups.get(&group_id).cloned() else {
            return hb_error(ResponseError::UnknownServerError.code(), "group vanished");
        };
        if snapshot.group_epoch > snapshot.assignment_epoch {
            self.compute_target_assignment(&snapshot, &metadata);
        }

        // ---- reconcile this member
        let Some(g) = self.consumer_groups.get(&group_id) else {
            return hb_error(ResponseError::UnknownServerError.code(), "group vanished");
        };
        let Some(current) = g.members.get(&member_id).cloned() else {
            return hb_error(ResponseError::UnknownServerError.code(), "member vanished");
        };
        let target = g.target.get(&member_id).cloned().unwrap_or_default();
        let next = reconcile(
            &current,
            g.assignment_epoch,
            &target,
            owned.as_deref(),
            &g.owners,
        );
        let assignment_changed =
            next.assigned != current.assigned || next.member_epoch != current.member_epoch;
        if next != current || is_new {
            self.append(CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
                value: Some(next.assignment_value()),
            });
        }

        // ---- timers
        self.schedule_consumer_session(&group_id, &member_id);
        if next.state == MemberState::UnrevokedPartitions {
            if current.state != MemberState::UnrevokedPartitions || is_new {
                let timeout = if next.meta.rebalance_timeout_ms > 0 {
                    next.meta.rebalance_timeout_ms
                } else {
                    self.config.consumer_session_timeout_for(&group_id)
                };
                self.timers.schedule(
                    TimerKey::ConsumerRebalance {
                        group_id: group_id.clone(),
                        member_id: member_id.clone(),
                    },
                    self.deadline(timeout),
                    TimerAction::ExpireConsumerRebalance {
                        member_epoch: next.member_epoch,
                    },
                );
            }
        } else {
            self.timers.cancel(&TimerKey::ConsumerRebalance {
                group_id: group_id.clone(),
                member_id: member_id.clone(),
            });
        }

        // ---- response
        let full_request = req.member_epoch == 0
            || (req.rebalance_timeout_ms != -1
                && (req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some())
                && req.topic_partitions.is_some());
        let mut resp = ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(&member_id)))
            .with_member_epoch(next.member_epoch)
            .with_heartbeat_interval_ms(self.config.consumer_heartbeat_interval_for(&group_id));
        if full_request || assignment_changed || replaced.is_some() {
            resp.assignment = Some(to_hb_assignment(&next.assigned));
        }
        resp
    }

    /// A new member (epoch 0), or a known dynamic member rejoining with epoch 0: it owns
    /// nothing any more (a client drops its partitions before rejoining), so its ownership is
    /// released and it reconciles from scratch.
    fn fresh_member(
        &mut self,
        ctx: &RequestContext,
        group: &ConsumerGroup,
        member_id: &str,
    ) -> ConsumerMember {
        match group.members.get(member_id) {
            Some(m) => {
                let mut m = m.clone();
                m.member_epoch = 0;
                m.previous_member_epoch = 0;
                m.state = MemberState::Stable;
                m.assigned.clear();
                m.pending_revocation.clear();
                m
            }
            None => ConsumerMember::new(self.member_id_for(ctx, member_id)),
        }
    }

    /// The client's member id (v1: generated by the client), or a new one (v0 with none).
    fn member_id_for(&mut self, _ctx: &RequestContext, given: &str) -> String {
        if given.is_empty() {
            let id = self.generate_member_id("m");
            id.trim_start_matches("m-").to_owned()
        } else {
            given.to_owned()
        }
    }

    /// The subscribed topics' metadata for the group with `member_id`'s subscription replaced
    /// by `meta` (name → (id, partitions)); topics that do not exist are left out.
    fn subscription_metadata(
        &self,
        g: &ConsumerGroup,
        member_id: &str,
        meta: &ConsumerMemberMetadataValue,
    ) -> BTreeMap<String, (Uuid, i32)> {
        let mut names: BTreeSet<String> = g
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.meta.subscribed_topic_names.iter().cloned())
            .collect();
        names.extend(meta.subscribed_topic_names.iter().cloned());
        let mut regexes: Vec<regex::Regex> = Vec::new();
        let metas = g
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .map(|(_, m)| &m.meta)
            .chain(std::iter::once(meta));
        for m in metas {
            if let Some(r) = &m.subscribed_topic_regex {
                if let Ok(re) = regex::Regex::new(&format!("^(?:{r})$")) {
                    regexes.push(re);
                }
            }
        }
        self.topics
            .topics
            .iter()
            .filter(|(n, _)| names.contains(*n) || regexes.iter().any(|re| re.is_match(n)))
            .map(|(n, v)| (n.clone(), *v))
            .collect()
    }

    /// The topic ids member `m` subscribes to, given the group's subscription metadata.
    fn member_topic_ids(
        m: &ConsumerMemberMetadataValue,
        metadata: &BTreeMap<String, (Uuid, i32)>,
    ) -> BTreeSet<Uuid> {
        let re = m
            .subscribed_topic_regex
            .as_ref()
            .and_then(|r| regex::Regex::new(&format!("^(?:{r})$")).ok());
        metadata
            .iter()
            .filter(|(n, _)| {
                m.subscribed_topic_names.iter().any(|s| s == *n)
                    || re.as_ref().is_some_and(|re| re.is_match(n))
            })
            .map(|(_, (id, _))| *id)
            .collect()
    }

    /// Runs the group's assignor and writes the new target assignment at the group epoch.
    fn compute_target_assignment(
        &mut self,
        g: &ConsumerGroup,
        metadata: &BTreeMap<String, (Uuid, i32)>,
    ) {
        let assignor_name = self.group_assignor(g);
        let specs: BTreeMap<String, MemberSpec> = g
            .members
            .values()
            .map(|m| {
                (
                    m.member_id.clone(),
                    MemberSpec {
                        subscribed: Self::member_topic_ids(&m.meta, metadata),
                        current: g.target.get(&m.member_id).cloned().unwrap_or_default(),
                    },
                )
            })
            .collect();
        let topics: BTreeMap<Uuid, i32> = metadata.values().copied().collect();
        let result = assignor::assign(&assignor_name, &specs, &topics);
        for (member_id, target) in result {
            if g.target.get(&member_id) != Some(&target) || !g.target.contains_key(&member_id) {
                self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
                    group_id: g.group_id.clone(),
                    member_id,
                    partitions: Some(target),
                });
            }
        }
        self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
            group_id: g.group_id.clone(),
            assignment_epoch: Some(g.group_epoch),
        });
    }

    /// Kafka's preferred server assignor: the one most members ask for, else the first of
    /// `group.consumer.assignors`.
    pub(crate) fn group_assignor(&self, g: &ConsumerGroup) -> String {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in g.members.values() {
            if let Some(a) = &m.meta.server_assignor {
                *votes.entry(a.as_str()).or_default() += 1;
            }
        }
        let best = votes.values().copied().max();
        match best {
            Some(b) => votes
                .into_iter()
                .find(|(_, v)| *v == b)
                .map(|(a, _)| a.to_owned())
                .unwrap_or_else(|| assignor::UNIFORM.to_owned()),
            None => self
                .config
                .consumer_assignors
                .first()
                .cloned()
                .unwrap_or_else(|| assignor::UNIFORM.to_owned()),
        }
    }

    fn schedule_consumer_session(&mut self, group_id: &str, member_id: &str) {
        self.timers.schedule(
            TimerKey::ConsumerSession {
                group_id: group_id.to_owned(),
                member_id: member_id.to_owned(),
            },
            self.deadline(self.config.consumer_session_timeout_for(group_id)),
            TimerAction::ExpireHeartbeat,
        );
    }

    fn cancel_consumer_timers(&mut self, group_id: &str, member_id: &str) {
        self.timers.cancel(&TimerKey::ConsumerSession {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
        });
        self.timers.cancel(&TimerKey::ConsumerRebalance {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
        });
    }

    fn emit_member_tombstones(&mut self, group_id: &str, member_id: &str) {
        self.append(CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            value: None,
        });
        self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMember {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            partitions: None,
        });
        self.append(CoordinatorRecord::ConsumerGroupMemberMetadata {
            group_id: group_id.to_owned(),
            member_id: member_id.to_owned(),
            value: None,
        });
        self.cancel_consumer_timers(group_id, member_id);
    }

    /// Removes a member and bumps the group epoch (Kafka's `removeMember` +
    /// `bumpGroupEpoch`): its partitions are free at once; the new target assignment is
    /// computed at the next heartbeat of any member.
    pub(crate) fn remove_consumer_member(&mut self, group_id: &str, member_id: &str, why: &str) {
        let Some(epoch) = self.consumer_groups.get(group_id).map(|g| g.group_epoch) else {
            return;
        };
        info!(
            group_id,
            member_id,
            reason = why,
            "consumer group member removed"
        );
        self.emit_member_tombstones(group_id, member_id);
        self.append(CoordinatorRecord::ConsumerGroupMetadata {
            group_id: group_id.to_owned(),
            epoch: Some(epoch.saturating_add(1)),
        });
    }

    fn consumer_group_leave(
        &mut self,
        group_id: &str,
        req: &ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let member_id = req.member_id.as_str().to_owned();
        let Some(g) = self.consumer_groups.get(group_id) else {
            return hb_error(
                ResponseError::UnknownMemberId.code(),
                &format!("Member {member_id} is not a member of group {group_id}."),
            );
        };
        let instance = req.instance_id.as_ref().map(|s| s.as_str().to_owned());
        if let Some(inst) = &instance {
            match g.static_members.get(inst) {
                None => {
                    return hb_error(
                        ResponseError::UnknownMemberId.code(),
                        &format!("Instance id {inst} is unknown."),
                    )
                }
                Some(id) if id != &member_id => {
                    return hb_error(
                        ResponseError::FencedInstanceId.code(),
                        &format!("Instance id {inst} belongs to member {id}."),
                    )
                }
                Some(_) => {}
            }
        }
        let Some(m) = g.members.get(&member_id).cloned() else {
            return hb_error(
                ResponseError::UnknownMemberId.code(),
                &format!("Member {member_id} is not a member of group {group_id}."),
            );
        };
        if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH && instance.is_some() {
            // KIP-848: a static member leaving temporarily keeps its assignment (epoch -2)
            // until its session expires or its instance id rejoins.
            let mut next = m.clone();
            next.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
            self.append(CoordinatorRecord::ConsumerGroupCurrentMemberAssignment {
                group_id: group_id.to_owned(),
                member_id: member_id.clone(),
                value: Some(next.assignment_value()),
            });
            self.timers.cancel(&TimerKey::ConsumerRebalance {
                group_id: group_id.to_owned(),
                member_id: member_id.clone(),
            });
        } else {
            self.remove_consumer_member(group_id, &member_id, "left the group");
        }
        ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(sb(&member_id)))
            .with_member_epoch(req.member_epoch)
    }

    // ---------------------------------------------------------------- timers

    pub(crate) fn expire_consumer_session(&mut self, group_id: &str, member_id: &str) {
        if self
            .consumer_groups
            .get(group_id)
            .is_some_and(|g| g.members.contains_key(member_id))
        {
            self.remove_consumer_member(group_id, member_id, "session timeout");
        }
    }

    pub(crate) fn expire_consumer_rebalance(
        &mut self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) {
        let still_revoking = self
            .consumer_groups
            .get(group_id)
            .and_then(|g| g.members.get(member_id))
            .is_some_and(|m| {
                m.state == MemberState::UnrevokedPartitions && m.member_epoch == member_epoch
            });
        if still_revoking {
            // KIP-848: a member that does not revoke within its rebalance timeout is fenced,
            // so that its partitions can move on.
            self.remove_consumer_member(group_id, member_id, "rebalance timeout");
        }
    }

    /// Starts session timers of every consumer-group member after loading (and rebalance
    /// timers of members still revoking).
    pub(crate) fn on_loaded_consumer(&mut self) {
        let members: Vec<(String, String, MemberState, i32, i32)> = self
            .consumer_groups
            .values()
            .flat_map(|g| {
                g.members.values().map(|m| {
                    (
                        g.group_id.clone(),
                        m.member_id.clone(),
                        m.state,
                        m.member_epoch,
                        m.meta.rebalance_timeout_ms,
                    )
                })
            })
            .collect();
        for (g, m, state, epoch, rebalance) in members {
            self.schedule_consumer_session(&g, &m);
            if state == MemberState::UnrevokedPartitions {
                let timeout = if rebalance > 0 {
                    rebalance
                } else {
                    self.config.consumer_session_timeout_for(&g)
                };
                self.timers.schedule(
                    TimerKey::ConsumerRebalance {
                        group_id: g.clone(),
                        member_id: m.clone(),
                    },
                    self.deadline(timeout),
                    TimerAction::ExpireConsumerRebalance {
                        member_epoch: epoch,
                    },
                );
            }
        }
    }

    // ---------------------------------------------------------------- deletion

    /// Tombstones for a whole consumer group (members, target, epoch) — the caller checks it
    /// is empty, and tombstones its offsets first.
    pub(crate) fn delete_consumer_group_records(&mut self, group_id: &str) {
        let members: Vec<String> = self
            .consumer_groups
            .get(group_id)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default();
        for m in members {
            self.emit_member_tombstones(group_id, &m);
        }
        self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
            group_id: group_id.to_owned(),
            assignment_epoch: None,
        });
        self.append(CoordinatorRecord::ConsumerGroupMetadata {
            group_id: group_id.to_owned(),
            epoch: None,
        });
    }

    /// Drops an empty consumer group so that its id can serve a classic group, keeping its
    /// committed offsets (the group tombstone would drop them on replay, so the records written
    /// are member and target tombstones plus an empty-epoch group that the classic group's
    /// first record then replaces).
    pub(crate) fn delete_consumer_group_records_keep_offsets(&mut self, group_id: &str) {
        let members: Vec<String> = self
            .consumer_groups
            .get(group_id)
            .map(|g| g.members.keys().cloned().collect())
            .unwrap_or_default();
        for m in members {
            self.emit_member_tombstones(group_id, &m);
        }
        self.append(CoordinatorRecord::ConsumerGroupTargetAssignmentMetadata {
            group_id: group_id.to_owned(),
            assignment_epoch: None,
        });
        self.consumer_groups.remove(group_id);
    }

    // ---------------------------------------------------------------- describe

    /// ConsumerGroupDescribe (API 69).
    pub(crate) fn consumer_group_describe(
        &self,
        req: &ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let groups = req
            .group_ids
            .iter()
            .map(|id| {
                let Some(g) = self.consumer_groups.get(id.0.as_str()) else {
                    let msg = if self.groups.contains_key(id.0.as_str()) {
                        format!("Group {} is not a consumer group.", id.0.as_str())
                    } else {
                        format!("Group {} not found.", id.0.as_str())
                    };
                    return CgDescribedGroup::default()
                        .with_group_id(id.clone())
                        .with_error_code(ResponseError::GroupIdNotFound.code())
                        .with_error_message(Some(sb(&msg)))
                        .with_group_state(sb("Dead"));
                };
                let to_assignment = |a: &TopicPartitions| {
                    cgd::Assignment::default().with_topic_partitions(
                        a.iter()
                            .map(|(t, ps)| {
                                let name = self
                                    .topics
                                    .name_of(t)
                                    .map(str::to_owned)
                                    .or_else(|| {
                                        g.subscription_metadata.as_ref().and_then(|m| {
                                            m.iter()
                                                .find(|(_, (tid, _))| tid == t)
                                                .map(|(n, _)| n.clone())
                                        })
                                    })
                                    .unwrap_or_default();
                                cgd::TopicPartitions::default()
                                    .with_topic_id(*t)
                                    .with_topic_name(TopicName(StrBytes::from_string(name)))
                                    .with_partitions(ps.iter().copied().collect())
                            })
                            .collect(),
                    )
                };
                let members = g
                    .members
                    .values()
                    .map(|m| {
                        cgd::Member::default()
                            .with_member_id(sb(&m.member_id))
                            .with_instance_id(m.meta.instance_id.as_deref().map(sb))
                            .with_rack_id(m.meta.rack_id.as_deref().map(sb))
                            .with_member_epoch(m.member_epoch)
                            .with_client_id(sb(&m.meta.client_id))
                            .with_client_host(sb(&m.meta.client_host))
                            .with_subscribed_topic_names(
                                m.meta
                                    .subscribed_topic_names
                                    .iter()
                                    .map(|n| TopicName(sb(n)))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                m.meta.subscribed_topic_regex.as_deref().map(sb),
                            )
                            .with_assignment(to_assignment(&m.assigned))
                            .with_target_assignment(to_assignment(
                                &g.target.get(&m.member_id).cloned().unwrap_or_default(),
                            ))
                    })
                    .collect();
                CgDescribedGroup::default()
                    .with_group_id(id.clone())
                    .with_group_state(sb(g.state().as_str()))
                    .with_group_epoch(g.group_epoch)
                    .with_assignment_epoch(g.assignment_epoch)
                    .with_assignor_name(sb(&self.group_assignor(g)))
                    .with_members(members)
                    .with_authorized_operations(i32::MIN)
            })
            .collect();
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }

    /// Kafka's `ConsumerGroup.validateOffsetCommit` / `validateOffsetFetch`: an empty group
    /// takes commits without a member (admin tools); otherwise the member must exist and send
    /// its current epoch (STALE_MEMBER_EPOCH otherwise).
    pub(crate) fn validate_consumer_member(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
        api_version_ok: bool,
    ) -> Result<(), i16> {
        let Some(g) = self.consumer_groups.get(group_id) else {
            return Ok(());
        };
        if member_epoch < 0 && member_id.is_empty() {
            return if g.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        }
        let Some(m) = g.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        if !api_version_ok {
            // Commits from a consumer-protocol member need OffsetCommit v9+.
            return Err(ResponseError::UnsupportedVersion.code());
        }
        if member_epoch != m.member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }

    /// The current view of a consumer group, if it exists.
    pub fn consumer_group(&self, group_id: &str) -> Option<ConsumerGroupView> {
        self.consumer_groups.get(group_id).map(ConsumerGroup::view)
    }

    /// Every consumer group's view.
    pub fn consumer_groups(&self) -> BTreeMap<String, ConsumerGroupView> {
        self.consumer_groups
            .iter()
            .map(|(id, g)| (id.clone(), g.view()))
            .collect()
    }

    /// Tells the shard the cluster's topics (from each new metadata image). Groups whose
    /// subscribed topics changed get a new target assignment at their members' next heartbeat
    /// (KIP-848), since their subscription metadata no longer matches.
    pub fn set_topics(&mut self, topics: TopicsImage) {
        self.topics = topics;
        self.topics_known = true;
    }

    /// The members of a consumer group with their subscribed topic names, to check OffsetDelete
    /// (KIP-496) against.
    pub(crate) fn consumer_subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        self.consumer_groups
            .get(group_id)
            .map(ConsumerGroup::subscribed_names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: u128, ps: &[i32]) -> TopicPartitions {
        [(Uuid::from_u128(t), ps.iter().copied().collect())].into()
    }

    fn member(id: &str, epoch: i32, assigned: TopicPartitions) -> ConsumerMember {
        let mut m = ConsumerMember::new(id.into());
        m.member_epoch = epoch;
        m.assigned = assigned;
        m
    }

    #[test]
    fn revocation_comes_first_and_keeps_the_epoch() {
        let m = member("a", 3, tp(1, &[0, 1, 2]));
        let owners = BTreeMap::new();
        let owned = vec![(Uuid::from_u128(1), vec![0, 1, 2])];
        let next = reconcile(&m, 4, &tp(1, &[0, 1]), Some(&owned), &owners);
        assert_eq!(next.state, MemberState::UnrevokedPartitions);
        assert_eq!(next.member_epoch, 3);
        assert_eq!(next.assigned, tp(1, &[0, 1]));
        assert_eq!(next.pending_revocation, tp(1, &[2]));
        // Still owned: wait.
        assert_eq!(
            reconcile(&next, 4, &tp(1, &[0, 1]), Some(&owned), &owners),
            next
        );
        // Acknowledged: move to the target epoch.
        let acked = vec![(Uuid::from_u128(1), vec![0, 1])];
        let done = reconcile(&next, 4, &tp(1, &[0, 1]), Some(&acked), &owners);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 4);
        assert_eq!(done.previous_member_epoch, 3);
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn partitions_owned_by_others_are_not_given() {
        let m = member("b", 1, TopicPartitions::new());
        let owners: BTreeMap<(Uuid, i32), (String, i32)> =
            [((Uuid::from_u128(1), 2), ("a".to_string(), 3))].into();
        let next = reconcile(&m, 4, &tp(1, &[2, 3]), Some(&[]), &owners);
        assert_eq!(next.state, MemberState::UnreleasedPartitions);
        assert_eq!(next.member_epoch, 4);
        assert_eq!(next.assigned, tp(1, &[3]));
        let next = reconcile(&next, 4, &tp(1, &[2, 3]), Some(&[]), &BTreeMap::new());
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!(next.assigned, tp(1, &[2, 3]));
    }
}
