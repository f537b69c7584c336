//! Test harness shared by the coordinator's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use kafka_protocol::ResponseError;
use nagare_coordinator::*;

pub const SESSION: i32 = 10_000;
pub const REBALANCE: i32 = 30_000;

pub fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

pub fn ctx(version: i16) -> RequestContext {
    RequestContext {
        api_version: version,
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
    }
}

pub fn loaded_shard() -> GroupCoordinatorShard {
    let mut sh = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default()).with_id_seed(7);
    sh.on_loaded(0);
    sh
}

/// ConsumerProtocol subscription bytes (version prefix + struct), as Java clients send.
pub fn subscription(topics: &[&str]) -> Bytes {
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = BytesMut::new();
    b.put_i16(1);
    sub.encode(&mut b, 1).unwrap();
    b.freeze()
}

pub fn join_req(
    group: &str,
    member: &str,
    instance: Option<&str>,
    protocols: &[(&str, Bytes)],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_group_instance_id(instance.map(s))
        .with_session_timeout_ms(SESSION)
        .with_rebalance_timeout_ms(REBALANCE)
        .with_protocol_type(s("consumer"))
        .with_protocols(
            protocols
                .iter()
                .map(|(n, m)| {
                    JoinGroupRequestProtocol::default()
                        .with_name(s(n))
                        .with_metadata(m.clone())
                })
                .collect(),
        )
}

pub fn range(topics: &[&str]) -> Vec<(&'static str, Bytes)> {
    vec![("range", subscription(topics))]
}

pub fn join(sh: &mut GroupCoordinatorShard, req: JoinGroupRequest, now: i64) -> CoordinatorResult {
    sh.handle(&ctx(9), GroupRequest::JoinGroup(req), now)
}

pub fn now_join(r: &CoordinatorResult) -> JoinGroupResponse {
    match &r.reply {
        Reply::Now(GroupResponse::JoinGroup(j)) => j.clone(),
        other => panic!("expected an immediate JoinGroup reply, got {other:?}"),
    }
}

pub fn now_sync(r: &CoordinatorResult) -> SyncGroupResponse {
    match &r.reply {
        Reply::Now(GroupResponse::SyncGroup(j)) => j.clone(),
        other => panic!("expected an immediate SyncGroup reply, got {other:?}"),
    }
}

pub fn deferred(r: &CoordinatorResult) -> RequestToken {
    match &r.reply {
        Reply::Deferred(t) => *t,
        other => panic!("expected a deferred reply, got {other:?}"),
    }
}

pub fn completed_join(r: &CoordinatorResult, t: RequestToken) -> JoinGroupResponse {
    r.completed
        .iter()
        .find_map(|(tok, resp)| match resp {
            GroupResponse::JoinGroup(j) if *tok == t => Some(j.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("join {t:?} not completed in {r:?}"))
}

pub fn completed_sync(r: &CoordinatorResult, t: RequestToken) -> SyncGroupResponse {
    r.completed
        .iter()
        .find_map(|(tok, resp)| match resp {
            GroupResponse::SyncGroup(j) if *tok == t => Some(j.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("sync {t:?} not completed in {r:?}"))
}

/// KIP-394 two-step join of a new dynamic member: returns (member id, token of the parked join).
pub fn join_new(
    sh: &mut GroupCoordinatorShard,
    group: &str,
    topics: &[&str],
    now: i64,
) -> (String, CoordinatorResult) {
    let r = join(sh, join_req(group, "", None, &range(topics)), now);
    let j = now_join(&r);
    assert_eq!(j.error_code, ResponseError::MemberIdRequired.code());
    let id = j.member_id.as_str().to_owned();
    let r = join(sh, join_req(group, &id, None, &range(topics)), now);
    (id, r)
}

pub fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    SyncGroupRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation)
        .with_assignments(
            assignments
                .iter()
                .map(|(m, a)| {
                    SyncGroupRequestAssignment::default()
                        .with_member_id(s(m))
                        .with_assignment(Bytes::copy_from_slice(a))
                })
                .collect(),
        )
}

pub fn sync(sh: &mut GroupCoordinatorShard, req: SyncGroupRequest, now: i64) -> CoordinatorResult {
    sh.handle(&ctx(5), GroupRequest::SyncGroup(req), now)
}

pub fn heartbeat(
    sh: &mut GroupCoordinatorShard,
    group: &str,
    member: &str,
    generation: i32,
    now: i64,
) -> i16 {
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id(generation);
    match sh.handle(&ctx(4), GroupRequest::Heartbeat(req), now).reply {
        Reply::Now(GroupResponse::Heartbeat(h)) => h.error_code,
        other => panic!("{other:?}"),
    }
}

pub fn commit(
    sh: &mut GroupCoordinatorShard,
    version: i16,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64, Option<&str>)],
    now: i64,
) -> (Vec<i16>, CoordinatorResult) {
    use kafka_protocol::messages::offset_commit_request::*;
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (t, p, o, m) in offsets {
        let part = OffsetCommitRequestPartition::default()
            .with_partition_index(*p)
            .with_committed_offset(*o)
            .with_committed_leader_epoch(-1)
            .with_committed_metadata(m.map(s));
        match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
            Some(x) => x.partitions.push(part),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_retention_time_ms(-1)
        .with_topics(topics);
    let r = sh.handle(&ctx(version), GroupRequest::OffsetCommit(req), now);
    let codes = match &r.reply {
        Reply::Now(GroupResponse::OffsetCommit(c)) => c
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            .collect(),
        other => panic!("{other:?}"),
    };
    (codes, r)
}

/// Forms a stable group of `n` dynamic members at `now` (initial delay elapsed): returns the
/// member ids (leader first) and the generation.
pub fn stable_group(
    sh: &mut GroupCoordinatorShard,
    group: &str,
    n: usize,
    now: i64,
) -> (Vec<String>, i32) {
    let mut ids = Vec::new();
    let mut tokens = Vec::new();
    for _ in 0..n {
        let (id, r) = join_new(sh, group, &["t"], now);
        tokens.push(deferred(&r));
        ids.push(id);
    }
    // The initial delay (3 s) is extended once when several members join within it.
    let mut r = sh.tick(now + 3_000);
    r.completed.extend(sh.tick(now + 6_000).completed);
    let now = now + 3_000;
    let mut leader = None;
    let mut generation = 0;
    for (id, t) in ids.iter().zip(&tokens) {
        let j = completed_join(&r, *t);
        assert_eq!(j.error_code, 0);
        generation = j.generation_id;
        if j.leader.as_str() == id {
            leader = Some(id.clone());
        }
    }
    let leader = leader.expect("a leader");
    let mut sync_tokens = Vec::new();
    for id in ids.iter().filter(|i| **i != leader) {
        let r = sync(sh, sync_req(group, id, generation, &[]), now + 3_000);
        sync_tokens.push((id.clone(), deferred(&r)));
    }
    let assignments: Vec<(String, Vec<u8>)> = ids
        .iter()
        .map(|i| (i.clone(), format!("a-{i}").into_bytes()))
        .collect();
    let refs: Vec<(&str, &[u8])> = assignments
        .iter()
        .map(|(i, a)| (i.as_str(), a.as_slice()))
        .collect();
    let r = sync(sh, sync_req(group, &leader, generation, &refs), now + 3_000);
    assert_eq!(now_sync(&r).error_code, 0);
    for (id, t) in sync_tokens {
        assert_eq!(
            completed_sync(&r, t).assignment.as_ref(),
            format!("a-{id}").as_bytes()
        );
    }
    let mut ordered = vec![leader.clone()];
    ordered.extend(ids.into_iter().filter(|i| *i != leader));
    (ordered, generation)
}

/// Replays `log` (encoded and decoded, as a reload would) into a fresh shard.
pub fn reload(log: &[CoordinatorRecord], now: i64) -> GroupCoordinatorShard {
    let mut sh = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default()).with_id_seed(99);
    for r in log {
        let k = r.encode_key();
        let v = r.encode_value();
        let back = CoordinatorRecord::decode(&k, v.as_deref()).unwrap();
        assert_eq!(&back, r);
        sh.replay(&back);
    }
    sh.on_loaded(now);
    sh
}

/// The seeds a simulation runs (issue 18): the fixed regression range `0..fixed`, then
/// `random` seeds from a base drawn for this run — printed, with `replay_var`, the variable
/// that replays one seed — so every run also explores schedules no earlier run tried.
pub fn sim_seeds(fixed: u64, random: u64, replay_var: &str) -> Vec<u64> {
    use std::hash::BuildHasher;
    let base =
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    eprintln!(
        "seeds 0..{fixed}, then {random} from random base {base} (replay one with {replay_var}=<seed>)"
    );
    (0..fixed)
        .chain((0..random).map(|i| base.wrapping_add(i)))
        .collect()
}
