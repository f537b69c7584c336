//! The classic group protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the rebalance
//! machinery behind them, following Kafka 4.x's `GroupMetadataManager` step by step.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tracing::{debug, info, warn};

use crate::group::{ClassicGroup, GroupState, Member};
use crate::runtime::{RequestContext, RequestToken};
use crate::shard::{join_error, sync_error, GroupCoordinatorShard, GroupResponse, Reply};
use crate::timer::{TimerAction, TimerKey};

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// JoinGroup v4+ requires a member id (KIP-394).
fn requires_known_member_id(api_version: i16) -> bool {
    api_version >= 4
}

impl GroupCoordinatorShard {
    // ---------------------------------------------------------------- JoinGroup

    pub(crate) fn join_group(&mut self, ctx: &RequestContext, mut req: JoinGroupRequest) -> Reply {
        let group_id = req.group_id.0.as_str().to_owned();
        let member_id = req.member_id.as_str().to_owned();
        if ctx.api_version == 0 {
            // Why: JoinGroup v0 has no rebalance timeout; Kafka uses the session timeout.
            req.rebalance_timeout_ms = req.session_timeout_ms;
        }
        if group_id.is_empty() {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                &member_id,
                ResponseError::InvalidGroupId.code(),
            )));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                &member_id,
                ResponseError::InvalidSessionTimeout.code(),
            )));
        }
        let metadata_bytes: usize = req
            .protocols
            .iter()
            .map(|p| p.metadata.len() + p.name.len())
            .sum();
        if metadata_bytes > self.config.max_record_bytes {
            // Why: the member's metadata goes into the group's record; Kafka would fail that
            // write (RECORD_LIST_TOO_LARGE) and answer UNKNOWN_SERVER_ERROR. Refusing up front
            // keeps one oversized member from failing every write of the group.
            warn!(
                group_id,
                metadata_bytes, "JoinGroup metadata exceeds the record size limit"
            );
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                &member_id,
                ResponseError::UnknownServerError.code(),
            )));
        }

        if let Some(n) = self.consumer_groups.get(&group_id).map(|g| g.members.len()) {
            if n > 0 {
                // KIP-848: classic and consumer groups share the id space; a classic member
                // cannot join a live consumer group.
                return Reply::Now(GroupResponse::JoinGroup(join_error(
                    &member_id,
                    ResponseError::InconsistentGroupProtocol.code(),
                )));
            }
            if !member_id.is_empty() {
                // A classic member id cannot belong to a consumer group.
                return Reply::Now(GroupResponse::JoinGroup(join_error(
                    &member_id,
                    ResponseError::UnknownMemberId.code(),
                )));
            }
            // An empty consumer group becomes a classic group (Kafka's downgrade of empty
            // groups); its offsets stay. The new classic group's first record follows.
            self.delete_consumer_group_records_keep_offsets(&group_id);
        }
        let is_unknown_member = member_id.is_empty();
        let is_new_group = !self.groups.contains_key(&group_id);
        let mut g = match self.groups.remove(&group_id) {
            Some(g) => g,
            None if is_unknown_member => ClassicGroup::new(group_id.clone(), Some(self.now_ms)),
            None => {
                // Why: a known member id for a group that does not exist means the group was
                // deleted or expired; UNKNOWN_MEMBER_ID makes the client rejoin from scratch.
                return Reply::Now(GroupResponse::JoinGroup(join_error(
                    &member_id,
                    ResponseError::UnknownMemberId.code(),
                )));
            }
        };
        let token = self.new_token();
        let records_before = self.out.records.len();

        let reply = if !self.accept_joining_member(&g, &member_id) {
            if let Some(m) = g.remove(&member_id) {
                self.flush_removed_member(&m);
                self.cancel_heartbeat(&group_id, &member_id);
            }
            Reply::Now(GroupResponse::JoinGroup(join_error(
                "",
                ResponseError::GroupMaxSizeReached.code(),
            )))
        } else if is_unknown_member {
            self.join_new_member(ctx, &req, &mut g, token)
        } else {
            self.join_existing_member(ctx, &req, &mut g, token)
        };

        if is_new_group && self.out.records.len() == records_before {
            // Why: a group created by this join is committed to the log with an empty record,
            // so that a reloaded coordinator knows it too (Kafka's newEmptyGroupMetadataRecord).
            self.append_group_snapshot(&g);
            self.groups.insert(group_id, g);
        } else {
            self.groups.insert(group_id, g);
        }
        reply
    }

    /// Kafka's `acceptJoiningMember`: enforces `group.max.size`.
    fn accept_joining_member(&self, g: &ClassicGroup, member_id: &str) -> bool {
        match g.state {
            GroupState::Empty | GroupState::Dead => true,
            // Why: counting awaiting members (not members) lets the last rejoining members be
            // kicked out when the max size was lowered.
            GroupState::PreparingRebalance => {
                g.members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || g.num_awaiting_join() < self.config.max_size
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                g.has_member(member_id) || g.members.len() < self.config.max_size
            }
        }
    }

    fn join_new_member(
        &mut self,
        ctx: &RequestContext,
        req: &JoinGroupRequest,
        g: &mut ClassicGroup,
        token: RequestToken,
    ) -> Reply {
        let protocols = protocols_of(req);
        if g.is(GroupState::Dead) {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                "",
                ResponseError::CoordinatorNotAvailable.code(),
            )));
        }
        if !g.supports_protocols(req.protocol_type.as_str(), &protocols) {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                "",
                ResponseError::InconsistentGroupProtocol.code(),
            )));
        }
        let instance_id = req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned());
        let prefix = instance_id.clone().unwrap_or_else(|| ctx.client_id.clone());
        let new_member_id = self.generate_member_id(&prefix);
        match instance_id {
            Some(instance) => {
                match g.static_member_id(&instance).cloned() {
                    // KIP-345: a static member restarting with an unknown member id replaces
                    // its previous incarnation.
                    Some(old) => self.update_static_member_then_rebalance_or_complete_join(
                        ctx,
                        req,
                        g,
                        &old,
                        &new_member_id,
                        token,
                    ),
                    None => self.add_member_then_rebalance_or_complete_join(
                        ctx,
                        req,
                        g,
                        &new_member_id,
                        token,
                    ),
                }
            }
            None if requires_known_member_id(ctx.api_version) => {
                // KIP-394: hand out the id and wait for the member to come back with it; the
                // pending member expires after its session timeout.
                info!(group_id = %g.group_id, member_id = %new_member_id, "dynamic member joins with unknown id; requiring a member id");
                g.pending_join_members.insert(new_member_id.clone());
                self.schedule_heartbeat(&g.group_id, &new_member_id, req.session_timeout_ms);
                let mut r = join_error(&new_member_id, ResponseError::MemberIdRequired.code());
                r.member_id = sb(&new_member_id);
                Reply::Now(GroupResponse::JoinGroup(r))
            }
            None => {
                self.add_member_then_rebalance_or_complete_join(ctx, req, g, &new_member_id, token)
            }
        }
    }

    fn join_existing_member(
        &mut self,
        ctx: &RequestContext,
        req: &JoinGroupRequest,
        g: &mut ClassicGroup,
        token: RequestToken,
    ) -> Reply {
        let member_id = req.member_id.as_str().to_owned();
        let instance_id = req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned());
        let protocols = protocols_of(req);
        if g.is(GroupState::Dead) {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                &member_id,
                ResponseError::CoordinatorNotAvailable.code(),
            )));
        }
        if !g.supports_protocols(req.protocol_type.as_str(), &protocols) {
            return Reply::Now(GroupResponse::JoinGroup(join_error(
                &member_id,
                ResponseError::InconsistentGroupProtocol.code(),
            )));
        }
        if g.is_pending_member(&member_id) {
            if instance_id.is_some() {
                // Pending members are always dynamic; a static id here is a client bug.
                return Reply::Now(GroupResponse::JoinGroup(join_error(
                    &member_id,
                    ResponseError::UnknownMemberId.code(),
                )));
            }
            // The second JoinGroup of KIP-394, with the id the coordinator handed out.
            return self.add_member_then_rebalance_or_complete_join(ctx, req, g, &member_id, token);
        }
        if let Err(code) = g.validate_member(&member_id, instance_id.as_deref()) {
            return Reply::Now(GroupResponse::JoinGroup(join_error(&member_id, code)));
        }
        let matches = g
            .members
            .get(&member_id)
            .is_some_and(|m| m.matches(&protocols));
        match g.state {
            GroupState::PreparingRebalance => {
                self.update_member_then_rebalance_or_complete_join(req, g, &member_id, token)
            }
            GroupState::CompletingRebalance if matches => {
                // The member lost its JoinGroup response: answer again for this generation.
                Reply::Now(GroupResponse::JoinGroup(current_join_response(
                    g,
                    &member_id,
                    g.is_leader(&member_id),
                    false,
                )))
            }
            GroupState::CompletingRebalance => {
                self.update_member_then_rebalance_or_complete_join(req, g, &member_id, token)
            }
            GroupState::Stable if g.is_leader(&member_id) || !matches => {
                // Why: the leader rejoining forces a rebalance (it may have seen topic metadata
                // change); a follower with new metadata does too.
                self.update_member_then_rebalance_or_complete_join(req, g, &member_id, token)
            }
            GroupState::Stable => {
                // A follower with unchanged metadata just gets the current generation back, so
                // it can SyncGroup again without disturbing the group.
                Reply::Now(GroupResponse::JoinGroup(current_join_response(
                    g, &member_id, false, false,
                )))
            }
            GroupState::Empty | GroupState::Dead => {
                // Let the member reset its generation and rejoin.
                Reply::Now(GroupResponse::JoinGroup(join_error(
                    &member_id,
                    ResponseError::UnknownMemberId.code(),
                )))
            }
        }
    }

    fn add_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &RequestContext,
        req: &JoinGroupRequest,
        g: &mut ClassicGroup,
        member_id: &str,
        token: RequestToken,
    ) -> Reply {
        let member = Member {
            member_id: member_id.to_owned(),
            group_instance_id: req
                .group_instance_id
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            client_id: ctx.client_id.clone(),
            client_host: ctx.client_host.clone(),
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            session_timeout_ms: req.session_timeout_ms,
            protocol_type: req.protocol_type.as_str().to_owned(),
            protocols: protocols_of(req),
            assignment: Bytes::new(),
            awaiting_join: Some(token),
            awaiting_sync: None,
            is_new: true,
        };
        // Why: a member joining during the initial delay extends it (InitialDelayedJoin).
        if g.is(GroupState::PreparingRebalance) && g.previous_state == GroupState::Empty {
            g.new_member_added = true;
        }
        g.add(member);
        // Why: new members cannot heartbeat while parked and a disconnect is not visible, so
        // their JoinGroup times out after the new-member join timeout (5 minutes in Kafka).
        self.schedule_heartbeat(
            &g.group_id,
            member_id,
            self.config.new_member_join_timeout_ms,
        );
        self.maybe_prepare_rebalance_or_complete_join(g);
        Reply::Deferred(token)
    }

    fn update_member_then_rebalance_or_complete_join(
        &mut self,
        req: &JoinGroupRequest,
        g: &mut ClassicGroup,
        member_id: &str,
        token: RequestToken,
    ) -> Reply {
        self.update_member(
            g,
            member_id,
            protocols_of(req),
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(token),
        );
        self.maybe_prepare_rebalance_or_complete_join(g);
        Reply::Deferred(token)
    }

    /// Kafka's `updateMember`. A JoinGroup that replaces a still-parked one of the same member
    /// answers the old one with REBALANCE_IN_PROGRESS (Kafka drops it and lets the client
    /// time out; answering keeps the shell from holding it forever).
    fn update_member(
        &mut self,
        g: &mut ClassicGroup,
        member_id: &str,
        protocols: Vec<(String, Bytes)>,
        rebalance_timeout_ms: i32,
        session_timeout_ms: i32,
        token: Option<RequestToken>,
    ) {
        let Some(m) = g.members.get_mut(member_id) else {
            return;
        };
        m.protocols = protocols;
        m.rebalance_timeout_ms = rebalance_timeout_ms;
        m.session_timeout_ms = session_timeout_ms;
        let old = std::mem::replace(&mut m.awaiting_join, token);
        if let Some(old) = old.filter(|o| Some(*o) != token) {
            self.complete(
                Some(old),
                GroupResponse::JoinGroup(join_error(
                    member_id,
                    ResponseError::RebalanceInProgress.code(),
                )),
            );
        }
    }

    fn update_static_member_then_rebalance_or_complete_join(
        &mut self,
        ctx: &RequestContext,
        req: &JoinGroupRequest,
        g: &mut ClassicGroup,
        old_member_id: &str,
        new_member_id: &str,
        token: RequestToken,
    ) -> Reply {
        let instance_id = req
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let current_leader = g.leader_id.clone();
        self.replace_static_member(g, &instance_id, old_member_id, new_member_id);
        let session_timeout = g
            .members
            .get(new_member_id)
            .map(|m| m.session_timeout_ms)
            .unwrap_or(req.session_timeout_ms);
        self.schedule_heartbeat(&g.group_id, new_member_id, session_timeout);
        self.update_member(
            g,
            new_member_id,
            protocols_of(req),
            req.rebalance_timeout_ms,
            req.session_timeout_ms,
            Some(token),
        );
        match g.state {
            GroupState::Stable => {
                let next = g.select_protocol();
                if next.is_some() && next == g.protocol_name {
                    // KIP-345: same protocol, no rebalance. Persist the new member id and hand
                    // back the current assignment; from JoinGroup v9 the leader learns it leads
                    // but skips the assignor (the group stays Stable).
                    info!(group_id = %g.group_id, %instance_id, new_member_id, "static member rejoined; no rebalance");
                    self.append_group_snapshot(g);
                    let supports_skip = ctx.api_version >= 9;
                    let is_leader = g.is_leader(new_member_id);
                    let mut resp = if supports_skip {
                        current_join_response(g, new_member_id, is_leader, is_leader)
                    } else {
                        let mut r = current_join_response(g, new_member_id, false, false);
                        r.leader = sb(current_leader.as_deref().unwrap_or(""));
                        r
                    };
                    resp.error_code = 0;
                    if let Some(m) = g.members.get_mut(new_member_id) {
                        m.awaiting_join = None;
                    }
                    Reply::Now(GroupResponse::JoinGroup(resp))
                } else {
                    self.maybe_prepare_rebalance_or_complete_join(g);
                    Reply::Deferred(token)
                }
            }
            GroupState::CompletingRebalance => {
                // Why: the leader may already hold the old member id for its assignment; a new
                // rebalance keeps assignment and member ids consistent.
                self.prepare_rebalance(g);
                Reply::Deferred(token)
            }
            _ => {
                self.maybe_prepare_rebalance_or_complete_join(g);
                Reply::Deferred(token)
            }
        }
    }

    /// Kafka's `replaceStaticMember`: fences the old incarnation's parked requests with
    /// FENCED_INSTANCE_ID and moves its state (assignment, leadership) to the new member id.
    fn replace_static_member(
        &mut self,
        g: &mut ClassicGroup,
        instance_id: &str,
        old_member_id: &str,
        new_member_id: &str,
    ) {
        let Some(mut m) = g.members.remove(old_member_id) else {
            return;
        };
        if let Some(t) = m.awaiting_join.take() {
            let mut r = join_error(old_member_id, ResponseError::FencedInstanceId.code());
            r.leader = StrBytes::default();
            self.complete(Some(t), GroupResponse::JoinGroup(r));
        }
        if let Some(t) = m.awaiting_sync.take() {
            self.complete(
                Some(t),
                GroupResponse::SyncGroup(sync_error(ResponseError::FencedInstanceId.code())),
            );
        }
        self.cancel_heartbeat(&g.group_id, old_member_id);
        m.member_id = new_member_id.to_owned();
        m.is_new = false;
        g.members.insert(new_member_id.to_owned(), m);
        if g.is_leader(old_member_id) {
            g.leader_id = Some(new_member_id.to_owned());
        }
        g.static_members
            .insert(instance_id.to_owned(), new_member_id.to_owned());
    }

    // ---------------------------------------------------------------- rebalance core

    pub(crate) fn maybe_prepare_rebalance_or_complete_join(&mut self, g: &mut ClassicGroup) {
        if g.can_rebalance() {
            self.prepare_rebalance(g);
        } else {
            self.maybe_complete_join_phase(g);
        }
    }

    /// Kafka's `prepareRebalance`.
    pub(crate) fn prepare_rebalance(&mut self, g: &mut ClassicGroup) {
        if g.is(GroupState::CompletingRebalance) {
            // Members parked in SyncGroup must rejoin.
            self.reset_and_propagate_assignment_with_error(
                g,
                ResponseError::RebalanceInProgress.code(),
            );
        }
        self.timers.cancel(&TimerKey::Sync {
            group_id: g.group_id.clone(),
        });
        let is_initial = g.is(GroupState::Empty);
        if is_initial {
            // Why: a new group waits group.initial.rebalance.delay.ms for more members, so
            // that consumers starting together cause one rebalance, not one each.
            let delay = self.config.initial_rebalance_delay_ms;
            let remaining = (g.rebalance_timeout_ms().saturating_sub(delay)).max(0);
            self.timers.schedule(
                TimerKey::Join {
                    group_id: g.group_id.clone(),
                },
                self.deadline(delay),
                TimerAction::InitialRebalance {
                    delay_ms: delay,
                    remaining_ms: remaining,
                },
            );
        }
        g.transition_to(GroupState::PreparingRebalance, self.now_ms);
        info!(group_id = %g.group_id, generation = g.generation_id, "preparing to rebalance");
        if !is_initial {
            self.maybe_complete_join_else_schedule(g);
        }
    }

    fn maybe_complete_join_else_schedule(&mut self, g: &mut ClassicGroup) {
        if g.has_all_members_joined() {
            self.complete_join(g);
        } else {
            self.timers.schedule(
                TimerKey::Join {
                    group_id: g.group_id.clone(),
                },
                self.deadline(g.rebalance_timeout_ms()),
                TimerAction::CompleteJoin,
            );
        }
    }

    /// Kafka's `maybeCompleteJoinPhase`: not during the initial delay.
    pub(crate) fn maybe_complete_join_phase(&mut self, g: &mut ClassicGroup) {
        if g.is(GroupState::PreparingRebalance)
            && g.has_all_members_joined()
            && g.previous_state != GroupState::Empty
        {
            self.complete_join(g);
        }
    }

    pub(crate) fn try_complete_initial_rebalance(
        &mut self,
        group_id: &str,
        delay_ms: i32,
        remaining_ms: i32,
    ) {
        let Some(mut g) = self.groups.remove(group_id) else {
            return;
        };
        if g.new_member_added && remaining_ms != 0 {
            g.new_member_added = false;
            let new_delay = self.config.initial_rebalance_delay_ms.min(remaining_ms);
            let new_remaining = (remaining_ms - delay_ms).max(0);
            self.timers.schedule(
                TimerKey::Join {
                    group_id: group_id.to_owned(),
                },
                self.deadline(new_delay),
                TimerAction::InitialRebalance {
                    delay_ms: new_delay,
                    remaining_ms: new_remaining,
                },
            );
        } else {
            self.complete_join(&mut g);
        }
        self.groups.insert(group_id.to_owned(), g);
    }

    /// Kafka's `completeClassicGroupJoin`: drops dynamic members that did not rejoin, starts
    /// the next generation and answers every parked JoinGroup (the leader gets the members'
    /// metadata).
    pub(crate) fn complete_join(&mut self, g: &mut ClassicGroup) {
        self.timers.cancel(&TimerKey::Join {
            group_id: g.group_id.clone(),
        });
        if !g.is(GroupState::PreparingRebalance) {
            return;
        }
        let not_rejoined: Vec<String> = g
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in &not_rejoined {
            if let Some(m) = g.remove(id) {
                self.flush_removed_member(&m);
            }
            self.cancel_heartbeat(&g.group_id, id);
        }
        if !not_rejoined.is_empty() {
            info!(group_id = %g.group_id, ?not_rejoined, "removed dynamic members who did not rejoin");
        }
        if !g.maybe_elect_new_joined_leader() && !g.members.is_empty() {
            // Only static members that did not rejoin are left: wait for them (or their
            // session expiry) for another rebalance timeout.
            warn!(group_id = %g.group_id, "could not complete rebalance because no members rejoined");
            self.timers.schedule(
                TimerKey::Join {
                    group_id: g.group_id.clone(),
                },
                self.deadline(g.rebalance_timeout_ms()),
                TimerAction::CompleteJoin,
            );
            return;
        }
        g.init_next_generation(self.now_ms);
        if g.is(GroupState::Empty) {
            info!(group_id = %g.group_id, generation = g.generation_id, "group is now empty");
            self.append_group_snapshot(g);
            return;
        }
        info!(group_id = %g.group_id, generation = g.generation_id, members = g.members.len(), "join phase complete");
        let ids: Vec<String> = g.members.keys().cloned().collect();
        for id in ids {
            let is_leader = g.is_leader(&id);
            let resp = current_join_response(g, &id, is_leader, false);
            let Some(m) = g.members.get_mut(&id) else {
                continue;
            };
            let token = m.awaiting_join.take();
            let session = m.session_timeout_ms;
            m.is_new = false;
            self.complete(token, GroupResponse::JoinGroup(resp));
            self.schedule_heartbeat(&g.group_id, &id, session);
            g.pending_sync_members.insert(id);
        }
        // Members that do not send SyncGroup within the rebalance timeout are removed.
        self.timers.schedule(
            TimerKey::Sync {
                group_id: g.group_id.clone(),
            },
            self.deadline(g.rebalance_timeout_ms()),
            TimerAction::ExpirePendingSync {
                generation_id: g.generation_id,
            },
        );
    }

    pub(crate) fn expire_pending_sync(&mut self, group_id: &str, generation_id: i32) {
        let Some(mut g) = self.groups.remove(group_id) else {
            return;
        };
        if generation_id == g.generation_id
            && (g.is(GroupState::CompletingRebalance) || g.is(GroupState::Stable))
            && !g.pending_sync_members.is_empty()
        {
            let pending: Vec<String> = g.pending_sync_members.iter().cloned().collect();
            info!(
                group_id,
                ?pending,
                "removing members on pending sync expiration"
            );
            for id in &pending {
                if let Some(m) = g.remove(id) {
                    self.flush_removed_member(&m);
                }
                self.cancel_heartbeat(group_id, id);
            }
            self.prepare_rebalance(&mut g);
        }
        self.groups.insert(group_id.to_owned(), g);
    }

    /// Kafka's `expireClassicGroupMemberHeartbeat`.
    pub(crate) fn expire_heartbeat(&mut self, group_id: &str, member_id: &str) {
        let Some(mut g) = self.groups.remove(group_id) else {
            return;
        };
        if g.is(GroupState::Dead) {
        } else if g.is_pending_member(member_id) {
            info!(
                group_id,
                member_id, "pending member removed after session timeout"
            );
            g.remove(member_id);
            if g.is(GroupState::PreparingRebalance) && g.has_all_members_joined() {
                self.complete_join(&mut g);
            }
        } else if let Some(m) = g.members.get(member_id) {
            if !m.has_satisfied_heartbeat() {
                info!(group_id, member_id, "member session expired");
                self.remove_member_and_update_group(&mut g, member_id);
            }
        }
        self.groups.insert(group_id.to_owned(), g);
    }

    /// Kafka's `removeMemberAndUpdateClassicGroup`.
    fn remove_member_and_update_group(&mut self, g: &mut ClassicGroup, member_id: &str) {
        if let Some(m) = g.remove(member_id) {
            self.flush_removed_member(&m);
        }
        self.cancel_heartbeat(&g.group_id, member_id);
        if g.is(GroupState::Stable) || g.is(GroupState::CompletingRebalance) {
            self.maybe_prepare_rebalance_or_complete_join(g);
        } else if g.is(GroupState::PreparingRebalance) && g.has_all_members_joined() {
            self.complete_join(g);
        }
    }

    /// Answers the parked requests of a removed member with UNKNOWN_MEMBER_ID, so that a
    /// client still waiting rejoins (Kafka does this for JoinGroup; we also do it for SyncGroup
    /// rather than leave that request unanswered).
    pub(crate) fn flush_removed_member(&mut self, m: &Member) {
        self.complete(
            m.awaiting_join,
            GroupResponse::JoinGroup(join_error("", ResponseError::UnknownMemberId.code())),
        );
        self.complete(
            m.awaiting_sync,
            GroupResponse::SyncGroup(sync_error(ResponseError::UnknownMemberId.code())),
        );
    }

    fn reset_and_propagate_assignment_with_error(&mut self, g: &mut ClassicGroup, code: i16) {
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
        }
        self.propagate_assignment(g, code);
    }

    /// Kafka's `propagateAssignment`: answers every parked SyncGroup and restarts those
    /// members' session timers.
    fn propagate_assignment(&mut self, g: &mut ClassicGroup, code: i16) {
        let (ptype, pname) = if code == 0 {
            (g.protocol_type.clone(), g.protocol_name.clone())
        } else {
            (None, None)
        };
        let mut restart = Vec::new();
        for m in g.members.values_mut() {
            if let Some(t) = m.awaiting_sync.take() {
                let mut r = SyncGroupResponse::default();
                r.error_code = code;
                r.protocol_type = ptype.as_deref().map(sb);
                r.protocol_name = pname.as_deref().map(sb);
                r.assignment = m.assignment.clone();
                self.out.completed.push((t, GroupResponse::SyncGroup(r)));
                restart.push((m.member_id.clone(), m.session_timeout_ms));
            }
        }
        for (id, timeout) in restart {
            self.schedule_heartbeat(&g.group_id, &id, timeout);
        }
    }

    // ---------------------------------------------------------------- SyncGroup

    pub(crate) fn sync_group(&mut self, _ctx: &RequestContext, req: SyncGroupRequest) -> Reply {
        let group_id = req.group_id.0.as_str().to_owned();
        let member_id = req.member_id.as_str().to_owned();
        if group_id.is_empty() {
            return Reply::Now(GroupResponse::SyncGroup(sync_error(
                ResponseError::InvalidGroupId.code(),
            )));
        }
        let Some(mut g) = self.groups.remove(&group_id) else {
            return Reply::Now(GroupResponse::SyncGroup(sync_error(
                ResponseError::UnknownMemberId.code(),
            )));
        };
        let reply = self.sync_group_in(&req, &mut g, &member_id);
        self.groups.insert(group_id, g);
        reply
    }

    fn sync_group_in(
        &mut self,
        req: &SyncGroupRequest,
        g: &mut ClassicGroup,
        member_id: &str,
    ) -> Reply {
        let now = |code| Reply::Now(GroupResponse::SyncGroup(sync_error(code)));
        if g.is(GroupState::Dead) {
            return now(ResponseError::CoordinatorNotAvailable.code());
        }
        let instance_id = req.group_instance_id.as_ref().map(|s| s.as_str());
        if let Err(code) = g.validate_member(member_id, instance_id) {
            return now(code);
        }
        if req.generation_id != g.generation_id {
            return now(ResponseError::IllegalGeneration.code());
        }
        if inconsistent(req.protocol_type.as_ref(), g.protocol_type.as_deref())
            || inconsistent(req.protocol_name.as_ref(), g.protocol_name.as_deref())
        {
            return now(ResponseError::InconsistentGroupProtocol.code());
        }
        match g.state {
            GroupState::Empty => now(ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => now(ResponseError::RebalanceInProgress.code()),
            GroupState::CompletingRebalance => {
                let token = self.new_token();
                if let Some(m) = g.members.get_mut(member_id) {
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        self.out.completed.push((
                            old,
                            GroupResponse::SyncGroup(sync_error(
                                ResponseError::RebalanceInProgress.code(),
                            )),
                        ));
                    }
                }
                g.pending_sync_members.remove(member_id);
                if g.is_leader(member_id) {
                    self.complete_sync_from_leader(req, g);
                }
                Reply::Deferred(token)
            }
            GroupState::Stable => {
                g.pending_sync_members.remove(member_id);
                let mut r = SyncGroupResponse::default();
                r.protocol_type = g.protocol_type.as_deref().map(sb);
                r.protocol_name = g.protocol_name.as_deref().map(sb);
                r.assignment = g
                    .members
                    .get(member_id)
                    .map(|m| m.assignment.clone())
                    .unwrap_or_default();
                Reply::Now(GroupResponse::SyncGroup(r))
            }
            GroupState::Dead => now(ResponseError::CoordinatorNotAvailable.code()),
        }
    }

    /// The leader's SyncGroup: store the assignment (missing members get an empty one), move
    /// to Stable and answer every parked SyncGroup.
    fn complete_sync_from_leader(&mut self, req: &SyncGroupRequest, g: &mut ClassicGroup) {
        let given: BTreeMap<String, Bytes> = req
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_owned(), a.assignment.clone()))
            .collect();
        let assignment: BTreeMap<String, Bytes> = g
            .members
            .keys()
            .map(|id| (id.clone(), given.get(id).cloned().unwrap_or_default()))
            .collect();
        let missing = g
            .members
            .keys()
            .filter(|id| !given.contains_key(*id))
            .count();
        if missing > 0 {
            warn!(group_id = %g.group_id, missing, "leader sent no assignment for some members; giving them an empty one");
        }
        let record = Self::group_record(g, Some(&assignment));
        let size = record.encode_key().len() + record.encode_value().map_or(0, |v| v.len());
        if size > self.config.max_record_bytes {
            // Kafka's append of this record would fail with RECORD_LIST_TOO_LARGE, mapped to
            // UNKNOWN_SERVER_ERROR; the members rejoin.
            warn!(group_id = %g.group_id, size, "group assignment too large to store");
            self.reset_and_propagate_assignment_with_error(
                g,
                ResponseError::UnknownServerError.code(),
            );
            self.maybe_prepare_rebalance_or_complete_join(g);
            return;
        }
        for (id, a) in &assignment {
            if let Some(m) = g.members.get_mut(id) {
                m.assignment = a.clone();
            }
        }
        g.transition_to(GroupState::Stable, self.now_ms);
        debug!(group_id = %g.group_id, generation = g.generation_id, "group is stable");
        self.append_group_snapshot(g);
        self.propagate_assignment(g, 0);
    }

    // ---------------------------------------------------------------- Heartbeat

    pub(crate) fn heartbeat(&mut self, req: HeartbeatRequest) -> HeartbeatResponse {
        let group_id = req.group_id.0.as_str();
        let member_id = req.member_id.as_str();
        let resp = |code| HeartbeatResponse::default().with_error_code(code);
        if group_id.is_empty() {
            return resp(ResponseError::InvalidGroupId.code());
        }
        let Some(g) = self.groups.get(group_id) else {
            return resp(ResponseError::UnknownMemberId.code());
        };
        if g.is(GroupState::Dead) {
            return resp(ResponseError::CoordinatorNotAvailable.code());
        }
        if let Err(code) = g.validate_member(
            member_id,
            req.group_instance_id.as_ref().map(|s| s.as_str()),
        ) {
            return resp(code);
        }
        if req.generation_id != g.generation_id {
            return resp(ResponseError::IllegalGeneration.code());
        }
        let state = g.state;
        let session = g
            .members
            .get(member_id)
            .map(|m| m.session_timeout_ms)
            .unwrap_or(0);
        match state {
            GroupState::Empty => resp(ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => {
                self.schedule_heartbeat(group_id, member_id, session);
                resp(ResponseError::RebalanceInProgress.code())
            }
            // Consumers may heartbeat between their JoinGroup and SyncGroup responses.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.schedule_heartbeat(group_id, member_id, session);
                resp(0)
            }
            GroupState::Dead => resp(ResponseError::CoordinatorNotAvailable.code()),
        }
    }

    // ---------------------------------------------------------------- LeaveGroup

    pub(crate) fn leave_group(
        &mut self,
        ctx: &RequestContext,
        req: LeaveGroupRequest,
    ) -> LeaveGroupResponse {
        let group_id = req.group_id.0.as_str().to_owned();
        // Why: v0–v2 carry one member id at the top level; v3+ a batch (KIP-345).
        let identities: Vec<MemberIdentity> = if ctx.api_version < 3 {
            vec![MemberIdentity::default().with_member_id(req.member_id.clone())]
        } else {
            req.members.clone()
        };
        let top = |code| LeaveGroupResponse::default().with_error_code(code);
        if group_id.is_empty() {
            return top(ResponseError::InvalidGroupId.code());
        }
        let Some(mut g) = self.groups.remove(&group_id) else {
            return top(ResponseError::UnknownMemberId.code());
        };
        if g.is(GroupState::Dead) {
            self.groups.insert(group_id, g);
            return top(ResponseError::CoordinatorNotAvailable.code());
        }
        let mut responses = Vec::with_capacity(identities.len().min(1024));
        let mut any_left = false;
        for ident in &identities {
            let member_id = ident.member_id.as_str();
            let instance = ident.group_instance_id.as_ref().map(|s| s.as_str());
            let code = if member_id.is_empty() {
                // Administrative removal by group.instance.id (KIP-345).
                match instance.and_then(|i| g.static_member_id(i).cloned()) {
                    Some(current) => {
                        self.remove_current_member(&mut g, &current);
                        0
                    }
                    None => ResponseError::UnknownMemberId.code(),
                }
            } else if g.is_pending_member(member_id) {
                g.remove(member_id);
                self.cancel_heartbeat(&group_id, member_id);
                0
            } else {
                match g.validate_member(member_id, instance) {
                    Ok(()) => {
                        self.remove_current_member(&mut g, member_id);
                        0
                    }
                    Err(code) => code,
                }
            };
            any_left |= code == 0;
            responses.push(
                MemberResponse::default()
                    .with_member_id(ident.member_id.clone())
                    .with_group_instance_id(ident.group_instance_id.clone())
                    .with_error_code(code),
            );
        }
        if any_left {
            match g.state {
                GroupState::Stable | GroupState::CompletingRebalance => {
                    self.maybe_prepare_rebalance_or_complete_join(&mut g)
                }
                GroupState::PreparingRebalance => self.maybe_complete_join_phase(&mut g),
                _ => {}
            }
        }
        self.groups.insert(group_id, g);
        if ctx.api_version < 3 {
            top(responses.first().map_or(0, |r| r.error_code))
        } else {
            LeaveGroupResponse::default().with_members(responses)
        }
    }

    fn remove_current_member(&mut self, g: &mut ClassicGroup, member_id: &str) {
        self.cancel_heartbeat(&g.group_id, member_id);
        info!(group_id = %g.group_id, member_id, "member left the group");
        if let Some(m) = g.remove(member_id) {
            self.flush_removed_member(&m);
        }
    }
}

fn protocols_of(req: &JoinGroupRequest) -> Vec<(String, Bytes)> {
    req.protocols
        .iter()
        .map(|p| (p.name.as_str().to_owned(), p.metadata.clone()))
        .collect()
}

fn inconsistent(requested: Option<&StrBytes>, current: Option<&str>) -> bool {
    matches!((requested, current), (Some(r), Some(c)) if r.as_str() != c)
}

/// The JoinGroup answer for the group's current generation; `with_members` gives the member
/// list to the leader.
fn current_join_response(
    g: &ClassicGroup,
    member_id: &str,
    with_members: bool,
    skip_assignment: bool,
) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = 0;
    r.generation_id = g.generation_id;
    r.protocol_type = g.protocol_type.as_deref().map(sb);
    r.protocol_name = g.protocol_name.as_deref().map(sb);
    r.leader = sb(g.leader_id.as_deref().unwrap_or(""));
    r.skip_assignment = skip_assignment;
    r.member_id = sb(member_id);
    if with_members {
        let protocol = g.protocol_name.clone().unwrap_or_default();
        r.members = g
            .members
            .values()
            .map(|m| {
                JoinGroupResponseMember::default()
                    .with_member_id(sb(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(sb))
                    .with_metadata(m.metadata(&protocol))
            })
            .collect();
    }
    r
}
