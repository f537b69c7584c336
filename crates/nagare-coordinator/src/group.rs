//! A classic-protocol group (Kafka's `ClassicGroup` and `ClassicGroupMember`).

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use kafka_protocol::ResponseError;

use crate::record::{GroupMetadataValue, MemberMetadataValue};
use crate::runtime::RequestToken;

/// The states of a classic group, as in Kafka's `ClassicGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupState {
    /// No members; offsets may still be committed by simple consumers.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Join done; waiting for the leader's SyncGroup with the assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Removed; only seen transiently.
    Dead,
}

impl GroupState {
    /// The name Kafka uses in DescribeGroups and ListGroups.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// States from which a group may move to `self` (Kafka's `validPreviousStates`).
    fn valid_previous(self) -> &'static [GroupState] {
        use GroupState::*;
        match self {
            Empty => &[PreparingRebalance],
            PreparingRebalance => &[Stable, CompletingRebalance, Empty],
            CompletingRebalance => &[PreparingRebalance],
            Stable => &[CompletingRebalance],
            Dead => &[Stable, PreparingRebalance, CompletingRebalance, Empty, Dead],
        }
    }
}

/// A read-only view of a group: its state and what its metadata record would hold now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// The group's state.
    pub state: GroupState,
    /// The group's durable fields, exactly as a GroupMetadata record of it would carry them.
    pub snapshot: GroupMetadataValue,
}

/// A read-only view of one member, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member id.
    pub member_id: String,
    /// The static instance id, if any.
    pub group_instance_id: Option<String>,
    /// The member's current assignment.
    pub assignment: Bytes,
    /// Whether a JoinGroup of this member is parked.
    pub awaiting_join: bool,
    /// Whether a SyncGroup of this member is parked.
    pub awaiting_sync: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) member_id: String,
    pub(crate) group_instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocol_type: String,
    /// Protocols in the member's order of preference, with their metadata.
    pub(crate) protocols: Vec<(String, Bytes)>,
    pub(crate) assignment: Bytes,
    /// The parked JoinGroup request, if any (Kafka's `awaitingJoinFuture`).
    pub(crate) awaiting_join: Option<RequestToken>,
    /// The parked SyncGroup request, if any (Kafka's `awaitingSyncFuture`).
    pub(crate) awaiting_sync: Option<RequestToken>,
    /// A member that has not yet received its first JoinGroup response; it can be expired even
    /// while awaiting join (Kafka's `isNew`).
    pub(crate) is_new: bool,
}

impl Member {
    pub(crate) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Kafka's `hasSatisfiedHeartbeat`: members parked in JoinGroup or SyncGroup count as
    /// alive, except new members whose JoinGroup has never been answered.
    pub(crate) fn has_satisfied_heartbeat(&self) -> bool {
        if self.is_new {
            false
        } else {
            self.awaiting_join.is_some() || self.awaiting_sync.is_some()
        }
    }

    /// Kafka's `ClassicGroupMember.matches`: same protocols, same order, same metadata.
    pub(crate) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The first of this member's protocols (in its preference order) among `candidates`.
    fn vote(&self, candidates: &BTreeSet<&str>) -> Option<&str> {
        self.protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| candidates.contains(n))
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ClassicGroup {
    pub(crate) group_id: String,
    pub(crate) state: GroupState,
    pub(crate) previous_state: GroupState,
    pub(crate) current_state_timestamp_ms: Option<i64>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) generation_id: i32,
    pub(crate) leader_id: Option<String>,
    pub(crate) members: BTreeMap<String, Member>,
    /// `group.instance.id` → member id.
    pub(crate) static_members: BTreeMap<String, String>,
    /// Members given an id by MEMBER_ID_REQUIRED that have not joined with it yet (KIP-394).
    pub(crate) pending_join_members: BTreeSet<String>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub(crate) pending_sync_members: BTreeSet<String>,
    /// A member joined during the initial rebalance delay, which extends it.
    pub(crate) new_member_added: bool,
    /// Topics the members subscribe to (consumer protocol only), computed per generation.
    pub(crate) subscribed_topics: Option<BTreeSet<String>>,
}

impl ClassicGroup {
    pub(crate) fn new(group_id: String, now_ms: Option<i64>) -> Self {
        ClassicGroup {
            group_id,
            state: GroupState::Empty,
            previous_state: GroupState::Empty,
            current_state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_join_members: BTreeSet::new(),
            pending_sync_members: BTreeSet::new(),
            new_member_added: false,
            subscribed_topics: None,
        }
    }

    /// Kafka's `ClassicGroup.fromRecord`: members come back with only the selected protocol,
    /// and the group is Stable if it has members, Empty otherwise.
    pub(crate) fn from_record(group_id: String, v: &GroupMetadataValue) -> Self {
        let mut g = ClassicGroup::new(group_id, None);
        g.protocol_type = (!v.protocol_type.is_empty()).then(|| v.protocol_type.clone());
        g.generation_id = v.generation;
        g.protocol_name = v.protocol.clone();
        g.leader_id = v.leader.clone();
        g.current_state_timestamp_ms =
            (v.current_state_timestamp_ms >= 0).then_some(v.current_state_timestamp_ms);
        for m in &v.members {
            let protocols = match &v.protocol {
                Some(p) => vec![(p.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            if let Some(id) = &m.group_instance_id {
                g.static_members.insert(id.clone(), m.member_id.clone());
            }
            g.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    protocol_type: v.protocol_type.clone(),
                    protocols,
                    assignment: m.assignment.clone(),
                    awaiting_join: None,
                    awaiting_sync: None,
                    is_new: false,
                },
            );
        }
        g.state = if g.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        g.previous_state = g.state;
        g.subscribed_topics = g.compute_subscribed_topics();
        g
    }

    /// The group's durable fields as a GroupMetadata record value. `assignment` overrides the
    /// members' current assignments (the leader's SyncGroup writes the new one).
    pub(crate) fn to_record_value(
        &self,
        assignment: Option<&BTreeMap<String, Bytes>>,
    ) -> GroupMetadataValue {
        let protocol = self.protocol_name.clone();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: protocol.clone(),
            leader: self.leader_id.clone(),
            current_state_timestamp_ms: self.current_state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: protocol
                        .as_deref()
                        .map(|p| m.metadata(p))
                        .unwrap_or_default(),
                    assignment: match assignment {
                        Some(a) => a.get(&m.member_id).cloned().unwrap_or_default(),
                        None => m.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    pub(crate) fn view(&self) -> GroupView {
        GroupView {
            state: self.state,
            snapshot: self.to_record_value(None),
        }
    }

    pub(crate) fn member_views(&self) -> Vec<MemberView> {
        self.members
            .values()
            .map(|m| MemberView {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                assignment: m.assignment.clone(),
                awaiting_join: m.awaiting_join.is_some(),
                awaiting_sync: m.awaiting_sync.is_some(),
            })
            .collect()
    }

    pub(crate) fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    pub(crate) fn transition_to(&mut self, state: GroupState, now_ms: i64) {
        debug_assert!(
            state.valid_previous().contains(&self.state),
            "group {} cannot go from {:?} to {:?}",
            self.group_id,
            self.state,
            state
        );
        self.previous_state = self.state;
        self.state = state;
        self.current_state_timestamp_ms = Some(now_ms);
    }

    /// Kafka's `canRebalance`: PreparingRebalance is reachable from the current state.
    pub(crate) fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance
            .valid_previous()
            .contains(&self.state)
    }

    pub(crate) fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    pub(crate) fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub(crate) fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_join_members.contains(member_id)
    }

    pub(crate) fn static_member_id(&self, instance_id: &str) -> Option<&String> {
        self.static_members.get(instance_id)
    }

    pub(crate) fn num_awaiting_join(&self) -> usize {
        self.members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count()
    }

    /// Kafka's `hasAllMembersJoined`: every member is parked in JoinGroup and no member given
    /// an id by MEMBER_ID_REQUIRED is still expected (KIP-394).
    pub(crate) fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some())
            && self.pending_join_members.is_empty()
    }

    /// The largest rebalance timeout of the members (Kafka's `rebalanceTimeoutMs`).
    pub(crate) fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `validateMember`: a static member must present its current member id (else
    /// FENCED_INSTANCE_ID), a dynamic one must be known (else UNKNOWN_MEMBER_ID).
    pub(crate) fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), i16> {
        match group_instance_id {
            Some(instance) => match self.static_member_id(instance) {
                None => Err(ResponseError::UnknownMemberId.code()),
                Some(existing) if existing != member_id => {
                    Err(ResponseError::FencedInstanceId.code())
                }
                Some(_) => Ok(()),
            },
            None if !self.has_member(member_id) => Err(ResponseError::UnknownMemberId.code()),
            None => Ok(()),
        }
    }

    fn supported_counts(&self) -> BTreeMap<&str, usize> {
        let mut counts = BTreeMap::new();
        for m in self.members.values() {
            for (name, _) in &m.protocols {
                *counts.entry(name.as_str()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Kafka's `supportsProtocols`: an empty group takes any non-empty protocol type and
    /// list; otherwise the type must match and one of the protocols must be supported by every
    /// current member.
    pub(crate) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.is(GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            let counts = self.supported_counts();
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(name, _)| {
                    counts.get(name.as_str()).copied().unwrap_or(0) == self.members.len()
                })
        }
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol among those
    /// all members support; the most votes wins (ties go to the smallest name, deterministically).
    pub(crate) fn select_protocol(&self) -> Option<String> {
        let n = self.members.len();
        let counts = self.supported_counts();
        let candidates: BTreeSet<&str> = counts
            .iter()
            .filter(|(_, c)| **c == n)
            .map(|(p, _)| *p)
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(p) = m.vote(&candidates) {
                *votes.entry(p).or_insert(0) += 1;
            }
        }
        let best = votes.values().copied().max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(p, _)| p.to_owned())
    }

    /// Kafka's `add`: the first member fixes the protocol type and becomes leader.
    pub(crate) fn add(&mut self, member: Member) {
        if let Some(id) = &member.group_instance_id {
            self.static_members
                .insert(id.clone(), member.member_id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        self.pending_join_members.remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Kafka's `remove`: the leadership passes to the first remaining member. Returns the
    /// removed member so the caller can answer its parked requests.
    pub(crate) fn remove(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.remove(member_id);
        if let Some(m) = &removed {
            if let Some(id) = &m.group_instance_id {
                self.static_members.remove(id);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_join_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
        removed
    }

    /// Kafka's `maybeElectNewJoinedLeader`: if the leader did not rejoin, the first member that
    /// did becomes leader. False when nobody rejoined.
    pub(crate) fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader_id.clone() else {
            return false;
        };
        let leader_joined = self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some());
        if leader_joined {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader_id = Some(m.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's `initNextGeneration`.
    pub(crate) fn init_next_generation(&mut self, now_ms: i64) {
        self.generation_id = self.generation_id.wrapping_add(1);
        if self.members.is_empty() {
            self.protocol_name = None;
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = self.select_protocol();
            self.subscribed_topics = self.compute_subscribed_topics();
            self.transition_to(GroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync_members.clear();
    }

    /// Kafka's `computeSubscribedTopics`: only known for the `consumer` protocol type, parsed
    /// from the members' subscriptions with the version-0 prefix of ConsumerProtocol.
    pub(crate) fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            let mut buf = m.metadata(protocol);
            if buf.remaining() < 2 {
                return None;
            }
            let _version = buf.get_i16();
            let sub = ConsumerProtocolSubscription::decode(&mut buf, 0).ok()?;
            topics.extend(sub.topics.iter().map(|t| t.as_str().to_owned()));
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`.
    pub(crate) fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.subscribed_topics
            .as_ref()
            .is_some_and(|t| t.contains(topic))
    }
}
