//! The classic consumer-group APIs — JoinGroup (11), SyncGroup (14), Heartbeat (12),
//! LeaveGroup (13), OffsetCommit (8), OffsetFetch (9), DescribeGroups (15), ListGroups (16),
//! DeleteGroups (42), OffsetDelete (47) — and the KIP-848 ones — ConsumerGroupHeartbeat (68),
//! ConsumerGroupDescribe (69) — routed to the shard of `__consumer_offsets` that
//! owns each group. Requests naming several groups are split by shard and their answers
//! merged. The decisions live in `nagare-coordinator`; this module only routes and encodes.

use std::collections::HashMap;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, DeleteGroupsRequest, DeleteGroupsResponse,
    DescribeGroupsRequest, DescribeGroupsResponse, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetFetchRequest, OffsetFetchResponse,
    SyncGroupRequest,
};
use nagare_coordinator::{GroupRequest, GroupResponse, RequestContext};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::group_coordinator::{GroupCoordinator, PendingReply};
use crate::network::{Reply, Response};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// JoinGroup versions.
pub const JOIN_GROUP: (i16, i16) = (0, 9);
/// SyncGroup versions.
pub const SYNC_GROUP: (i16, i16) = (0, 5);
/// Heartbeat versions.
pub const HEARTBEAT: (i16, i16) = (0, 4);
/// LeaveGroup versions.
pub const LEAVE_GROUP: (i16, i16) = (0, 5);
/// OffsetCommit versions.
pub const OFFSET_COMMIT: (i16, i16) = (2, 9);
/// OffsetFetch versions.
pub const OFFSET_FETCH: (i16, i16) = (1, 9);
/// DescribeGroups versions.
pub const DESCRIBE_GROUPS: (i16, i16) = (0, 6);
/// ListGroups versions.
pub const LIST_GROUPS: (i16, i16) = (0, 5);
/// DeleteGroups versions.
pub const DELETE_GROUPS: (i16, i16) = (0, 2);
/// OffsetDelete versions.
pub const OFFSET_DELETE: (i16, i16) = (0, 0);

fn encode(v: i16, corr: i32, resp: &GroupResponse) -> Response {
    match resp {
        GroupResponse::JoinGroup(r) => respond(ApiKey::JoinGroup, v, corr, r),
        GroupResponse::SyncGroup(r) => respond(ApiKey::SyncGroup, v, corr, r),
        GroupResponse::Heartbeat(r) => respond(ApiKey::Heartbeat, v, corr, r),
        GroupResponse::LeaveGroup(r) => respond(ApiKey::LeaveGroup, v, corr, r),
        GroupResponse::OffsetCommit(r) => respond(ApiKey::OffsetCommit, v, corr, r),
        GroupResponse::OffsetFetch(r) => respond(ApiKey::OffsetFetch, v, corr, r),
        GroupResponse::OffsetDelete(r) => respond(ApiKey::OffsetDelete, v, corr, r),
        GroupResponse::DescribeGroups(r) => respond(ApiKey::DescribeGroups, v, corr, r),
        GroupResponse::ListGroups(r) => respond(ApiKey::ListGroups, v, corr, r),
        GroupResponse::DeleteGroups(r) => respond(ApiKey::DeleteGroups, v, corr, r),
        GroupResponse::ConsumerGroupHeartbeat(r) => {
            respond(ApiKey::ConsumerGroupHeartbeat, v, corr, r)
        }
        GroupResponse::ConsumerGroupDescribe(r) => {
            respond(ApiKey::ConsumerGroupDescribe, v, corr, r)
        }
        GroupResponse::TxnOffsetCommit(r) => respond(ApiKey::TxnOffsetCommit, v, corr, r),
    }
}

fn later(v: i16, corr: i32, pending: PendingReply) -> Reply {
    Reply::Later(Box::pin(async move { encode(v, corr, &pending.await) }))
}

/// Splits `groups` by owning shard (groups without a shard go to `None`), keeping order.
fn by_shard(broker: &Broker, groups: Vec<GroupId>) -> Vec<(Option<i32>, Vec<GroupId>)> {
    let image = broker.image();
    let mut out: Vec<(Option<i32>, Vec<GroupId>)> = Vec::new();
    for g in groups {
        let shard = GroupCoordinator::shard_of(&image, g.as_str());
        match out.iter_mut().find(|(s, _)| *s == shard) {
            Some((_, v)) => v.push(g),
            None => out.push((shard, vec![g])),
        }
    }
    out
}

async fn on_shard(
    broker: &Broker,
    shard: Option<i32>,
    ctx: &RequestContext,
    req: GroupRequest,
) -> PendingReply {
    match shard {
        Some(p) => broker.groups.handle_on(p, ctx.clone(), req).await,
        None => {
            let resp = nagare_coordinator::error_response(
                &req,
                ctx,
                ResponseError::CoordinatorNotAvailable.code(),
            );
            Box::pin(async move { resp })
        }
    }
}

/// An answer ready now (for groups refused before reaching a shard).
fn ready(resp: GroupResponse) -> PendingReply {
    Box::pin(async move { resp })
}

/// Splits `groups` into those the request's principal may act on with `op` and those it may
/// not (Kafka answers the latter with GROUP_AUTHORIZATION_FAILED each).
fn authorized_groups(
    broker: &Broker,
    req: &Request,
    op: AclOperation,
    groups: Vec<GroupId>,
) -> (Vec<GroupId>, Vec<GroupId>) {
    groups
        .into_iter()
        .partition(|g| broker.authorize(&req.ctx, op, &Resource::group(g.as_str())))
}

const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();

/// Whether the request's principal may perform `op` on `topic`.
fn may(broker: &Broker, req: &Request, op: AclOperation, topic: &str) -> bool {
    broker.authorize(&req.ctx, op, &Resource::topic(topic))
}

/// OffsetFetch answers only about topics the principal may DESCRIBE (Kafka): a topic the
/// request named gets TOPIC_AUTHORIZATION_FAILED on each partition, and one returned for an
/// all-topics request is left out. `explicit` names, per group, the topics requested.
fn filter_offset_fetch(
    broker: &Arc<Broker>,
    req: &Request,
    explicit: Vec<(String, Vec<String>)>,
    pending: PendingReply,
) -> PendingReply {
    let (b, rc) = (broker.clone(), req.ctx.clone());
    Box::pin(async move {
        let mut resp = pending.await;
        let allowed = |t: &str| b.authorize(&rc, AclOperation::Describe, &Resource::topic(t));
        let named = |group: &str, t: &str| {
            explicit
                .iter()
                .any(|(g, ts)| g == group && ts.iter().any(|x| x == t))
        };
        if let GroupResponse::OffsetFetch(f) = &mut resp {
            // v0-7: one group, topics at the top level.
            let group = explicit.first().map(|(g, _)| g.clone()).unwrap_or_default();
            f.topics
                .retain(|t| allowed(t.name.as_str()) || named(&group, t.name.as_str()));
            for t in f.topics.iter_mut().filter(|t| !allowed(t.name.as_str())) {
                for p in &mut t.partitions {
                    p.error_code = TOPIC_DENIED;
                    p.committed_offset = -1;
                    p.metadata = None;
                }
            }
            // v8+: per group.
            for g in &mut f.groups {
                let gid = g.group_id.to_string();
                g.topics
                    .retain(|t| allowed(t.name.as_str()) || named(&gid, t.name.as_str()));
                for t in g.topics.iter_mut().filter(|t| !allowed(t.name.as_str())) {
                    for p in &mut t.partitions {
                        p.error_code = TOPIC_DENIED;
                        p.committed_offset = -1;
                        p.metadata = None;
                    }
                }
            }
        }
        resp
    })
}

/// Handles one of the group APIs.
pub async fn handle(broker: &Arc<Broker>, key: ApiKey, mut req: Request) -> HandlerResult {
    let v = req.version();
    let corr = req.correlation_id();
    let ctx = RequestContext {
        api_version: v,
        client_id: req.ctx.client_id().to_string(),
        client_host: format!("/{}", req.peer().ip()),
    };
    let image = broker.image();
    // Single-group APIs: Kafka checks `$op` on the group first.
    macro_rules! single {
        ($ty:ty, $variant:ident, $op:expr) => {{
            let r: $ty = req.decode()?;
            let group = r.group_id.to_string();
            if !broker.authorize(&req.ctx, $op, &Resource::group(&group)) {
                let denied = nagare_coordinator::error_response(
                    &GroupRequest::$variant(r),
                    &ctx,
                    GROUP_DENIED,
                );
                return Ok(Reply::Now(encode(v, corr, &denied)));
            }
            let pending = broker
                .groups
                .handle(&image, &group, ctx, GroupRequest::$variant(r))
                .await;
            Ok(later(v, corr, pending))
        }};
    }
    match key {
        ApiKey::JoinGroup => single!(JoinGroupRequest, JoinGroup, AclOperation::Read),
        ApiKey::SyncGroup => single!(SyncGroupRequest, SyncGroup, AclOperation::Read),
        ApiKey::Heartbeat => single!(HeartbeatRequest, Heartbeat, AclOperation::Read),
        ApiKey::LeaveGroup => single!(LeaveGroupRequest, LeaveGroup, AclOperation::Read),
        ApiKey::OffsetCommit => {
            let mut r: OffsetCommitRequest = req.decode()?;
            let group = r.group_id.to_string();
            if !broker.authorize(&req.ctx, AclOperation::Read, &Resource::group(&group)) {
                let denied = nagare_coordinator::error_response(
                    &GroupRequest::OffsetCommit(r),
                    &ctx,
                    GROUP_DENIED,
                );
                return Ok(Reply::Now(encode(v, corr, &denied)));
            }
            // Kafka: READ on each topic; refused topics are answered here and never committed.
            let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| may(broker, &req, AclOperation::Read, t.name.as_str()));
            r.topics = allowed;
            let refused: Vec<OffsetCommitResponseTopic> = refused
                .into_iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            if r.topics.is_empty() && !refused.is_empty() {
                let resp = GroupResponse::OffsetCommit(
                    OffsetCommitResponse::default().with_topics(refused),
                );
                return Ok(Reply::Now(encode(v, corr, &resp)));
            }
            let pending = broker
                .groups
                .handle(&image, &group, ctx, GroupRequest::OffsetCommit(r))
                .await;
            Ok(Reply::Later(Box::pin(async move {
                let mut resp = pending.await;
                if let GroupResponse::OffsetCommit(c) = &mut resp {
                    c.topics.extend(refused);
                }
                encode(v, corr, &resp)
            })))
        }
        ApiKey::OffsetDelete => {
            let mut r: OffsetDeleteRequest = req.decode()?;
            let group = r.group_id.to_string();
            if !broker.authorize(&req.ctx, AclOperation::Delete, &Resource::group(&group)) {
                let denied = nagare_coordinator::error_response(
                    &GroupRequest::OffsetDelete(r),
                    &ctx,
                    GROUP_DENIED,
                );
                return Ok(Reply::Now(encode(v, corr, &denied)));
            }
            // Kafka: READ on each topic whose offsets are deleted.
            let (allowed, refused): (Vec<_>, Vec<_>) = std::mem::take(&mut r.topics)
                .into_iter()
                .partition(|t| may(broker, &req, AclOperation::Read, t.name.as_str()));
            r.topics = allowed;
            let refused: Vec<OffsetDeleteResponseTopic> = refused
                .into_iter()
                .map(|t| {
                    OffsetDeleteResponseTopic::default()
                        .with_name(t.name)
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetDeleteResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(TOPIC_DENIED)
                                })
                                .collect(),
                        )
                })
                .collect();
            let pending = broker
                .groups
                .handle(&image, &group, ctx, GroupRequest::OffsetDelete(r))
                .await;
            Ok(Reply::Later(Box::pin(async move {
                let mut resp = pending.await;
                if let GroupResponse::OffsetDelete(d) = &mut resp {
                    d.topics.extend(refused);
                }
                encode(v, corr, &resp)
            })))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let r: ConsumerGroupHeartbeatRequest = req.decode()?;
            let group = r.group_id.to_string();
            // Kafka: READ on the group, then DESCRIBE on every subscribed topic name (a client
            // must not learn of topics it may not describe through its assignment).
            let code = if !broker.authorize(&req.ctx, AclOperation::Read, &Resource::group(&group))
            {
                Some(GROUP_DENIED)
            } else {
                r.subscribed_topic_names
                    .iter()
                    .flatten()
                    .any(|t| !may(broker, &req, AclOperation::Describe, t.as_str()))
                    .then_some(TOPIC_DENIED)
            };
            if let Some(code) = code {
                let denied = nagare_coordinator::error_response(
                    &GroupRequest::ConsumerGroupHeartbeat(r),
                    &ctx,
                    code,
                );
                return Ok(Reply::Now(encode(v, corr, &denied)));
            }
            let pending = broker
                .groups
                .handle(&image, &group, ctx, GroupRequest::ConsumerGroupHeartbeat(r))
                .await;
            Ok(later(v, corr, pending))
        }
        ApiKey::ConsumerGroupDescribe => {
            let r: ConsumerGroupDescribeRequest = req.decode()?;
            let (allowed, denied) =
                authorized_groups(broker, &req, AclOperation::Describe, r.group_ids.clone());
            let mut parts = Vec::new();
            if !denied.is_empty() {
                let sub = GroupRequest::ConsumerGroupDescribe(r.clone().with_group_ids(denied));
                parts.push(ready(nagare_coordinator::error_response(
                    &sub,
                    &ctx,
                    GROUP_DENIED,
                )));
            }
            let ops: HashMap<String, i32> = if r.include_authorized_operations {
                allowed
                    .iter()
                    .map(|g| {
                        let ops = broker.authorized_operations(&req.ctx, &Resource::group(g));
                        (g.to_string(), ops)
                    })
                    .collect()
            } else {
                HashMap::new()
            };
            for (shard, groups) in by_shard(broker, allowed) {
                let sub = r.clone().with_group_ids(groups);
                parts.push(
                    on_shard(
                        broker,
                        shard,
                        &ctx,
                        GroupRequest::ConsumerGroupDescribe(sub),
                    )
                    .await,
                );
            }
            Ok(merge_then(
                v,
                corr,
                parts,
                |acc, next| {
                    if let (
                        GroupResponse::ConsumerGroupDescribe(a),
                        GroupResponse::ConsumerGroupDescribe(b),
                    ) = (acc, next)
                    {
                        a.groups.extend(b.groups);
                    }
                },
                GroupResponse::ConsumerGroupDescribe(ConsumerGroupDescribeResponse::default()),
                move |all| {
                    if let GroupResponse::ConsumerGroupDescribe(d) = all {
                        for g in d.groups.iter_mut().filter(|g| g.error_code == 0) {
                            if let Some(o) = ops.get(g.group_id.as_str()) {
                                g.authorized_operations = *o;
                            }
                        }
                    }
                },
            ))
        }
        ApiKey::OffsetFetch => {
            let r: OffsetFetchRequest = req.decode()?;
            if v < 8 {
                let group = r.group_id.to_string();
                if !broker.authorize(&req.ctx, AclOperation::Describe, &Resource::group(&group)) {
                    let denied = nagare_coordinator::error_response(
                        &GroupRequest::OffsetFetch(r),
                        &ctx,
                        GROUP_DENIED,
                    );
                    return Ok(Reply::Now(encode(v, corr, &denied)));
                }
                let explicit: Vec<String> = r
                    .topics
                    .iter()
                    .flatten()
                    .map(|t| t.name.to_string())
                    .collect();
                let pending = broker
                    .groups
                    .handle(&image, &group, ctx, GroupRequest::OffsetFetch(r))
                    .await;
                let pending = filter_offset_fetch(broker, &req, vec![(group, explicit)], pending);
                return Ok(later(v, corr, pending));
            }
            // v8+: several groups per request, possibly on several shards.
            let ids: Vec<GroupId> = r.groups.iter().map(|g| g.group_id.clone()).collect();
            let (allowed, denied) = authorized_groups(broker, &req, AclOperation::Describe, ids);
            let mut parts = Vec::new();
            if !denied.is_empty() {
                let mut sub = r.clone();
                sub.groups.retain(|g| denied.contains(&g.group_id));
                let sub = GroupRequest::OffsetFetch(sub);
                parts.push(ready(nagare_coordinator::error_response(
                    &sub,
                    &ctx,
                    GROUP_DENIED,
                )));
            }
            let explicit: Vec<(String, Vec<String>)> = r
                .groups
                .iter()
                .map(|g| {
                    let topics = g.topics.iter().flatten().map(|t| t.name.to_string());
                    (g.group_id.to_string(), topics.collect())
                })
                .collect();
            for (shard, groups) in by_shard(broker, allowed) {
                let mut sub = r.clone();
                sub.groups.retain(|g| groups.contains(&g.group_id));
                let pending = on_shard(broker, shard, &ctx, GroupRequest::OffsetFetch(sub)).await;
                parts.push(filter_offset_fetch(broker, &req, explicit.clone(), pending));
            }
            Ok(merge(
                v,
                corr,
                parts,
                |acc, next| {
                    if let (GroupResponse::OffsetFetch(a), GroupResponse::OffsetFetch(b)) =
                        (acc, next)
                    {
                        a.groups.extend(b.groups);
                    }
                },
                GroupResponse::OffsetFetch(OffsetFetchResponse::default()),
            ))
        }
        ApiKey::DescribeGroups => {
            let r: DescribeGroupsRequest = req.decode()?;
            let (allowed, denied) =
                authorized_groups(broker, &req, AclOperation::Describe, r.groups.clone());
            let mut parts = Vec::new();
            if !denied.is_empty() {
                let sub = GroupRequest::DescribeGroups(r.clone().with_groups(denied));
                parts.push(ready(nagare_coordinator::error_response(
                    &sub,
                    &ctx,
                    GROUP_DENIED,
                )));
            }
            // Kafka answers each described group's authorized operations when asked (v3+).
            let ops: HashMap<String, i32> = if r.include_authorized_operations {
                allowed
                    .iter()
                    .map(|g| {
                        let ops = broker.authorized_operations(&req.ctx, &Resource::group(g));
                        (g.to_string(), ops)
                    })
                    .collect()
            } else {
                HashMap::new()
            };
            for (shard, groups) in by_shard(broker, allowed) {
                let sub = r.clone().with_groups(groups);
                parts.push(on_shard(broker, shard, &ctx, GroupRequest::DescribeGroups(sub)).await);
            }
            Ok(merge_then(
                v,
                corr,
                parts,
                |acc, next| {
                    if let (GroupResponse::DescribeGroups(a), GroupResponse::DescribeGroups(b)) =
                        (acc, next)
                    {
                        a.groups.extend(b.groups);
                    }
                },
                GroupResponse::DescribeGroups(DescribeGroupsResponse::default()),
                move |all| {
                    if let GroupResponse::DescribeGroups(d) = all {
                        for g in d.groups.iter_mut().filter(|g| g.error_code == 0) {
                            if let Some(o) = ops.get(g.group_id.as_str()) {
                                g.authorized_operations = *o;
                            }
                        }
                    }
                },
            ))
        }
        ApiKey::DeleteGroups => {
            let r: DeleteGroupsRequest = req.decode()?;
            let (allowed, denied) =
                authorized_groups(broker, &req, AclOperation::Delete, r.groups_names.clone());
            let mut parts = Vec::new();
            if !denied.is_empty() {
                let sub = GroupRequest::DeleteGroups(r.clone().with_groups_names(denied));
                parts.push(ready(nagare_coordinator::error_response(
                    &sub,
                    &ctx,
                    GROUP_DENIED,
                )));
            }
            for (shard, groups) in by_shard(broker, allowed) {
                let sub = r.clone().with_groups_names(groups);
                parts.push(on_shard(broker, shard, &ctx, GroupRequest::DeleteGroups(sub)).await);
            }
            Ok(merge(
                v,
                corr,
                parts,
                |acc, next| {
                    if let (GroupResponse::DeleteGroups(a), GroupResponse::DeleteGroups(b)) =
                        (acc, next)
                    {
                        a.results.extend(b.results);
                    }
                },
                GroupResponse::DeleteGroups(DeleteGroupsResponse::default()),
            ))
        }
        ApiKey::ListGroups => {
            let r: ListGroupsRequest = req.decode()?;
            // Kafka: DESCRIBE on the cluster lists every group; otherwise only the groups
            // the principal may DESCRIBE.
            let see_all = broker.authorize(&req.ctx, AclOperation::Describe, &Resource::cluster());
            let mut parts: Vec<PendingReply> = Vec::new();
            for p in broker.groups.owned_shards() {
                let pending = broker
                    .groups
                    .handle_on(p, ctx.clone(), GroupRequest::ListGroups(r.clone()))
                    .await;
                if see_all {
                    parts.push(pending);
                    continue;
                }
                let (b, rc) = (broker.clone(), req.ctx.clone());
                parts.push(Box::pin(async move {
                    let mut resp = pending.await;
                    if let GroupResponse::ListGroups(l) = &mut resp {
                        l.groups.retain(|g| {
                            b.authorize(
                                &rc,
                                AclOperation::Describe,
                                &Resource::group(g.group_id.as_str()),
                            )
                        });
                    }
                    resp
                }));
            }
            Ok(merge(
                v,
                corr,
                parts,
                |acc, next| {
                    if let (GroupResponse::ListGroups(a), GroupResponse::ListGroups(b)) =
                        (acc, next)
                    {
                        if a.error_code == 0 {
                            a.error_code = b.error_code;
                        }
                        a.groups.extend(b.groups);
                    }
                },
                GroupResponse::ListGroups(ListGroupsResponse::default()),
            ))
        }
        _ => Err(super::HandlerError::Internal(format!(
            "{key:?} is not a group API"
        ))),
    }
}

/// Awaits every shard's answer and folds them into one response.
fn merge(
    v: i16,
    corr: i32,
    parts: Vec<PendingReply>,
    fold: impl Fn(&mut GroupResponse, GroupResponse) + Send + 'static,
    empty: GroupResponse,
) -> Reply {
    merge_then(v, corr, parts, fold, empty, |_| {})
}

/// [`merge`], then `finish` on the whole answer before it is encoded.
fn merge_then(
    v: i16,
    corr: i32,
    parts: Vec<PendingReply>,
    fold: impl Fn(&mut GroupResponse, GroupResponse) + Send + 'static,
    empty: GroupResponse,
    finish: impl FnOnce(&mut GroupResponse) + Send + 'static,
) -> Reply {
    Reply::Later(Box::pin(async move {
        let mut acc: Option<GroupResponse> = None;
        for p in parts {
            let r = p.await;
            match acc.as_mut() {
                None => acc = Some(r),
                Some(a) => fold(a, r),
            }
        }
        let mut all = acc.unwrap_or(empty);
        finish(&mut all);
        encode(v, corr, &all)
    }))
}
