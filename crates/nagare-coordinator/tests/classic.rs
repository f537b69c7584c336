//! Unit tests of the classic protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, timers.

mod common;

use common::*;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use nagare_coordinator::*;

#[test]
fn kip394_first_join_gets_member_id_required_with_generated_id() {
    let mut sh = loaded_shard();
    let r = join(&mut sh, join_req("g", "", None, &range(&["t"])), 0);
    let j = now_join(&r);
    assert_eq!(j.error_code, ResponseError::MemberIdRequired.code());
    assert!(
        j.member_id.as_str().starts_with("client-"),
        "{}",
        j.member_id.as_str()
    );
    assert_eq!(j.member_id.len(), "client-".len() + 36);
    // The new group is committed with an empty metadata record.
    assert_eq!(r.records.len(), 1);
    assert_eq!(sh.group("g").unwrap().state, GroupState::Empty);
}

#[test]
fn join_before_v4_needs_no_member_id() {
    let mut sh = loaded_shard();
    let r = sh.handle(
        &ctx(3),
        GroupRequest::JoinGroup(join_req("g", "", None, &range(&["t"]))),
        0,
    );
    let t = deferred(&r);
    // The initial rebalance delay holds the join for 3 s.
    assert!(sh.tick(2_999).completed.is_empty());
    let r = sh.tick(3_000);
    let j = completed_join(&r, t);
    assert_eq!(j.error_code, 0);
    assert_eq!(j.generation_id, 1);
    assert_eq!(j.leader, j.member_id);
    assert_eq!(j.members.len(), 1);
    assert_eq!(j.protocol_name.as_ref().unwrap().as_str(), "range");
}

#[test]
fn initial_delay_batches_members_into_one_rebalance() {
    let mut sh = loaded_shard();
    let (a, ra) = join_new(&mut sh, "g", &["t"], 0);
    let (_b, rb) = join_new(&mut sh, "g", &["t"], 1_000);
    let (_c, rc) = join_new(&mut sh, "g", &["t"], 2_500);
    // A member joining during the delay extends it (up to the rebalance timeout).
    let r = sh.tick(3_000);
    assert!(r.completed.is_empty());
    let r = sh.tick(6_000);
    let ja = completed_join(&r, deferred(&ra));
    let jb = completed_join(&r, deferred(&rb));
    let jc = completed_join(&r, deferred(&rc));
    assert_eq!(
        (ja.generation_id, jb.generation_id, jc.generation_id),
        (1, 1, 1)
    );
    assert_eq!(ja.leader.as_str(), a);
    assert_eq!(ja.members.len(), 3);
    assert!(jb.members.is_empty() && jc.members.is_empty());
}

#[test]
fn second_consumer_joining_does_not_get_unknown_member_id() {
    let mut sh = loaded_shard();
    let (ids, generation) = stable_group(&mut sh, "g", 1, 0);
    let a = &ids[0];
    let (b, rb) = join_new(&mut sh, "g", &["t"], 5_000);
    let tb = deferred(&rb);
    assert_eq!(sh.group("g").unwrap().state, GroupState::PreparingRebalance);
    // The existing member learns of the rebalance through its heartbeat and rejoins.
    assert_eq!(
        heartbeat(&mut sh, "g", a, generation, 5_100),
        ResponseError::RebalanceInProgress.code()
    );
    let ra = join(&mut sh, join_req("g", a, None, &range(&["t"])), 5_200);
    // Everybody has joined: the rebalance completes at once, answering both.
    let (ja, jb) = (now_join(&ra), completed_join(&ra, tb));
    assert_eq!(ja.error_code, 0);
    assert_eq!(jb.error_code, 0);
    assert_eq!(ja.generation_id, generation + 1);
    assert_eq!(jb.generation_id, generation + 1);
    assert_eq!(ja.leader.as_str(), a, "the old leader keeps leading");
    assert_eq!(ja.members.len(), 2);
    // Sync: follower waits, leader's assignment releases both.
    let rs = sync(&mut sh, sync_req("g", &b, generation + 1, &[]), 5_300);
    let ts = deferred(&rs);
    let rl = sync(
        &mut sh,
        sync_req("g", a, generation + 1, &[(a, b"A"), (&b, b"B")]),
        5_400,
    );
    assert_eq!(now_sync(&rl).assignment.as_ref(), b"A");
    assert_eq!(completed_sync(&rl, ts).assignment.as_ref(), b"B");
    assert_eq!(rl.records.len(), 1, "the assignment is persisted");
    assert_eq!(sh.group("g").unwrap().state, GroupState::Stable);
}

#[test]
fn follower_rejoin_with_same_metadata_in_stable_does_not_rebalance() {
    let mut sh = loaded_shard();
    let (ids, generation) = stable_group(&mut sh, "g", 2, 0);
    let r = join(&mut sh, join_req("g", &ids[1], None, &range(&["t"])), 4_000);
    let j = now_join(&r);
    assert_eq!(j.error_code, 0);
    assert_eq!(j.generation_id, generation);
    assert_eq!(sh.group("g").unwrap().state, GroupState::Stable);
    // The leader rejoining does force a rebalance.
    let r = join(&mut sh, join_req("g", &ids[0], None, &range(&["t"])), 4_000);
    deferred(&r);
    assert_eq!(sh.group("g").unwrap().state, GroupState::PreparingRebalance);
}

#[test]
fn leave_triggers_one_rebalance_and_last_leave_empties_group() {
    let mut sh = loaded_shard();
    let (ids, generation) = stable_group(&mut sh, "g", 2, 0);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![MemberIdentity::default().with_member_id(s(&ids[1]))]);
    let r = sh.handle(&ctx(3), GroupRequest::LeaveGroup(leave), 4_000);
    let Reply::Now(GroupResponse::LeaveGroup(l)) = &r.reply else {
        panic!()
    };
    assert_eq!(l.members[0].error_code, 0);
    assert_eq!(sh.group("g").unwrap().state, GroupState::PreparingRebalance);
    // The remaining member rejoins: the rebalance completes at once (no initial delay).
    let r = join(&mut sh, join_req("g", &ids[0], None, &range(&["t"])), 4_100);
    let j = now_join(&r);
    assert_eq!(j.generation_id, generation + 1);
    assert_eq!(j.members.len(), 1);
    // v0 LeaveGroup of the last member: top-level error, group becomes Empty with a record.
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(&ids[0]));
    let r = sh.handle(&ctx(0), GroupRequest::LeaveGroup(leave), 4_200);
    let Reply::Now(GroupResponse::LeaveGroup(l)) = &r.reply else {
        panic!()
    };
    assert_eq!(l.error_code, 0);
    let g = sh.group("g").unwrap();
    assert_eq!(g.state, GroupState::Empty);
    assert_eq!(g.snapshot.generation, generation + 2);
    assert_eq!(r.records.len(), 1);
}

#[test]
fn batched_leave_reports_each_member() {
    let mut sh = loaded_shard();
    let (ids, _) = stable_group(&mut sh, "g", 3, 0);
    let leave = LeaveGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_members(vec![
            MemberIdentity::default().with_member_id(s(&ids[1])),
            MemberIdentity::default().with_member_id(s("nobody")),
            MemberIdentity::default().with_member_id(s(&ids[2])),
        ]);
    let r = sh.handle(&ctx(5), GroupRequest::LeaveGroup(leave), 4_000);
    let Reply::Now(GroupResponse::LeaveGroup(l)) = &r.reply else {
        panic!()
    };
    let codes: Vec<i16> = l.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![0, ResponseError::UnknownMemberId.code(), 0]);
    assert_eq!(sh.members("g").len(), 1);
    // Unknown group: top-level UNKNOWN_MEMBER_ID.
    let leave = LeaveGroupRequest::default().with_group_id(GroupId(s("nope")));
    let r = sh.handle(&ctx(5), GroupRequest::LeaveGroup(leave), 4_000);
    let Reply::Now(GroupResponse::LeaveGroup(l)) = &r.reply else {
        panic!()
    };
    assert_eq!(l.error_code, ResponseError::UnknownMemberId.code());
}

#[test]
fn session_expiry_removes_silent_member() {
    let mut sh = loaded_shard();
    let (ids, generation) = stable_group(&mut sh, "g", 2, 0);
    // Only the leader heartbeats.
    // Formed at 6 s; member 1's session ends at 16 s.
    for t in (8_000..16_000).step_by(2_000) {
        assert_eq!(heartbeat(&mut sh, "g", &ids[0], generation, t), 0);
        sh.tick(t);
    }
    assert_eq!(sh.members("g").len(), 2);
    sh.tick(16_000);
    assert_eq!(sh.group("g").unwrap().state, GroupState::PreparingRebalance);
    assert_eq!(sh.members("g").len(), 1);
    assert_eq!(
        heartbeat(&mut sh, "g", &ids[1], generation, 16_001),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut sh = loaded_shard();
    let (ids, generation) = stable_group(&mut sh, "g", 2, 0);
    let r = join(&mut sh, join_req("g", &ids[0], None, &range(&["t"])), 8_000);
    let t = deferred(&r);
    // Member 1 keeps heartbeating (REBALANCE_IN_PROGRESS) but never rejoins.
    for now in (9_000..38_000).step_by(3_000) {
        assert_eq!(
            heartbeat(&mut sh, "g", &ids[1], generation, now),
            ResponseError::RebalanceInProgress.code()
        );
        assert!(sh.tick(now).completed.is_empty());
    }
    let r = sh.tick(38_000);
    let j = completed_join(&r, t);
    assert_eq!(j.generation_id, generation + 1);
    assert_eq!(j.members.len(), 1);
}

#[test]
fn pending_sync_expiry_rebalances() {
    let mut sh = loaded_shard();
    let (a, ra) = join_new(&mut sh, "g", &["t"], 0);
    let (b, rb) = join_new(&mut sh, "g", &["t"], 0);
    sh.tick(3_000);
    let r = sh.tick(6_000);
    let ja = completed_join(&r, deferred(&ra));
    completed_join(&r, deferred(&rb));
    // The leader syncs; the follower heartbeats but never syncs.
    let r = sync(
        &mut sh,
        sync_req("g", &a, ja.generation_id, &[(&a, b"x")]),
        6_100,
    );
    assert_eq!(now_sync(&r).error_code, 0);
    for now in (9_000..36_000).step_by(3_000) {
        heartbeat(&mut sh, "g", &a, ja.generation_id, now);
        heartbeat(&mut sh, "g", &b, ja.generation_id, now);
        sh.tick(now);
        assert_eq!(sh.members("g").len(), 2);
    }
    sh.tick(36_000);
    assert_eq!(sh.members("g").len(), 1);
    assert_eq!(sh.group("g").unwrap().state, GroupState::PreparingRebalance);
}

#[test]
fn static_member_rejoin_keeps_assignment_without_rebalance() {
    let mut sh = loaded_shard();
    let r = join(&mut sh, join_req("g", "", Some("i1"), &range(&["t"])), 0);
    let t = deferred(&r);
    let r = sh.tick(3_000);
    let j = completed_join(&r, t);
    let old = j.member_id.as_str().to_owned();
    assert!(old.starts_with("i1-"));
    let r = sync(
        &mut sh,
        sync_req("g", &old, 1, &[(&old, b"P0")]).with_group_instance_id(Some(s("i1"))),
        3_000,
    );
    assert_eq!(now_sync(&r).assignment.as_ref(), b"P0");
    // Restart: unknown member id, same instance id.
    let r = join(
        &mut sh,
        join_req("g", "", Some("i1"), &range(&["t"])),
        5_000,
    );
    let j = now_join(&r);
    assert_eq!(j.error_code, 0);
    assert_eq!(j.generation_id, 1, "no rebalance");
    assert!(j.skip_assignment, "v9 leader skips the assignor");
    let new = j.member_id.as_str().to_owned();
    assert_ne!(new, old);
    assert_eq!(r.records.len(), 1, "the new member id is persisted");
    assert_eq!(sh.group("g").unwrap().state, GroupState::Stable);
    let r = sync(
        &mut sh,
        sync_req("g", &new, 1, &[]).with_group_instance_id(Some(s("i1"))),
        5_100,
    );
    assert_eq!(now_sync(&r).assignment.as_ref(), b"P0");
    // The old incarnation is fenced.
    let req = HeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(&old))
        .with_group_instance_id(Some(s("i1")))
        .with_generation_id(1);
    let Reply::Now(GroupResponse::Heartbeat(h)) = sh
        .handle(&ctx(4), GroupRequest::Heartbeat(req), 5_200)
        .reply
    else {
        panic!()
    };
    assert_eq!(h.error_code, ResponseError::FencedInstanceId.code());
}

#[test]
fn static_member_replacement_fences_parked_join() {
    let mut sh = loaded_shard();
    let r = join(&mut sh, join_req("g", "", Some("i1"), &range(&["t"])), 0);
    let t = deferred(&r);
    let r = join(&mut sh, join_req("g", "", Some("i1"), &range(&["t"])), 100);
    let fenced = completed_join(&r, t);
    assert_eq!(fenced.error_code, ResponseError::FencedInstanceId.code());
    let t2 = deferred(&r);
    let r = sh.tick(3_100);
    assert_eq!(completed_join(&r, t2).error_code, 0);
}

#[test]
fn join_errors_have_kafka_codes() {
    let mut sh = loaded_shard();
    let bad_session = join_req("g", "", None, &range(&["t"])).with_session_timeout_ms(10);
    assert_eq!(
        now_join(&join(&mut sh, bad_session, 0)).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    let too_long = join_req("g", "", None, &range(&["t"])).with_session_timeout_ms(1_800_001);
    assert_eq!(
        now_join(&join(&mut sh, too_long, 0)).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    assert_eq!(
        now_join(&join(&mut sh, join_req("", "", None, &range(&["t"])), 0)).error_code,
        ResponseError::InvalidGroupId.code()
    );
    // Unknown protocol type / no protocols.
    let no_type = join_req("g", "", None, &range(&["t"])).with_protocol_type(s(""));
    assert_eq!(
        now_join(&join(&mut sh, no_type, 0)).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        now_join(&join(&mut sh, join_req("g", "", None, &[]), 0)).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // Known member id for a group that does not exist.
    assert_eq!(
        now_join(&join(
            &mut sh,
            join_req("nope", "m-1", None, &range(&["t"])),
            0
        ))
        .error_code,
        ResponseError::UnknownMemberId.code()
    );
    // Oversized metadata.
    let huge = bytes::Bytes::from(vec![0u8; 2_000_000]);
    assert_eq!(
        now_join(&join(
            &mut sh,
            join_req("g", "", None, &[("range", huge)]),
            0
        ))
        .error_code,
        ResponseError::UnknownServerError.code()
    );

    let (ids, generation) = stable_group(&mut sh, "h", 1, 0);
    // Unknown member id in an existing group.
    assert_eq!(
        now_join(&join(
            &mut sh,
            join_req("h", "ghost", None, &range(&["t"])),
            4_000
        ))
        .error_code,
        ResponseError::UnknownMemberId.code()
    );
    // Protocol type mismatch with a non-empty group.
    let other = join_req("h", "", None, &range(&["t"])).with_protocol_type(s("connect"));
    assert_eq!(
        now_join(&join(&mut sh, other, 4_000)).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // No common protocol.
    let rr = join_req("h", "", None, &[("roundrobin", subscription(&["t"]))]);
    assert_eq!(
        now_join(&join(&mut sh, rr, 4_000)).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // Stale generation on SyncGroup and Heartbeat.
    assert_eq!(
        heartbeat(&mut sh, "h", &ids[0], generation - 1, 4_000),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        now_sync(&sync(
            &mut sh,
            sync_req("h", &ids[0], generation + 5, &[]),
            4_000
        ))
        .error_code,
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        now_sync(&sync(
            &mut sh,
            sync_req("h", "ghost", generation, &[]),
            4_000
        ))
        .error_code,
        ResponseError::UnknownMemberId.code()
    );
    assert_eq!(
        now_sync(&sync(
            &mut sh,
            sync_req("zz", "ghost", generation, &[]),
            4_000
        ))
        .error_code,
        ResponseError::UnknownMemberId.code()
    );
    let wrong = sync_req("h", &ids[0], generation, &[]).with_protocol_name(Some(s("roundrobin")));
    assert_eq!(
        now_sync(&sync(&mut sh, wrong, 4_000)).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    assert_eq!(
        heartbeat(&mut sh, "nope", "x", 1, 4_000),
        ResponseError::UnknownMemberId.code()
    );
}

#[test]
fn group_max_size_is_enforced() {
    let config = GroupCoordinatorConfig {
        max_size: 2,
        ..Default::default()
    };
    let mut sh = GroupCoordinatorShard::new(0, config).with_id_seed(3);
    sh.on_loaded(0);
    let (ids, _) = stable_group(&mut sh, "g", 2, 0);
    // The size check comes before KIP-394's member id handout, as in Kafka.
    let r = join(&mut sh, join_req("g", "", None, &range(&["t"])), 7_000);
    assert_eq!(
        now_join(&r).error_code,
        ResponseError::GroupMaxSizeReached.code()
    );
    assert_eq!(sh.members("g").len(), 2);
    assert!(sh.members("g").iter().all(|m| ids.contains(&m.member_id)));
}

#[test]
fn protocol_selection_picks_the_common_preferred_assignor() {
    let mut sh = loaded_shard();
    let sub = subscription(&["t"]);
    let r1 = join(
        &mut sh,
        join_req(
            "g",
            "",
            None,
            &[("range", sub.clone()), ("roundrobin", sub.clone())],
        ),
        0,
    );
    let id1 = now_join(&r1).member_id.as_str().to_owned();
    let r1 = join(
        &mut sh,
        join_req(
            "g",
            &id1,
            None,
            &[("range", sub.clone()), ("roundrobin", sub.clone())],
        ),
        0,
    );
    let r2 = join(
        &mut sh,
        join_req(
            "g",
            "",
            None,
            &[("roundrobin", sub.clone()), ("sticky", sub.clone())],
        ),
        0,
    );
    let id2 = now_join(&r2).member_id.as_str().to_owned();
    let r2 = join(
        &mut sh,
        join_req(
            "g",
            &id2,
            None,
            &[("roundrobin", sub.clone()), ("sticky", sub.clone())],
        ),
        0,
    );
    assert!(
        sh.tick(3_000).completed.is_empty(),
        "the second member extended the delay"
    );
    let r = sh.tick(6_000);
    let j = completed_join(&r, deferred(&r1));
    assert_eq!(j.protocol_name.unwrap().as_str(), "roundrobin");
    completed_join(&r, deferred(&r2));
}

#[test]
fn loading_shard_answers_load_in_progress_and_unload_answers_parked_requests() {
    let mut sh = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default());
    let r = join(&mut sh, join_req("g", "", None, &range(&["t"])), 0);
    assert_eq!(
        now_join(&r).error_code,
        ResponseError::CoordinatorLoadInProgress.code()
    );
    sh.on_loaded(0);
    let (_id, r) = join_new(&mut sh, "g", &["t"], 0);
    let t = deferred(&r);
    let answers = sh.unload();
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].0, t);
    assert!(
        matches!(&answers[0].1, GroupResponse::JoinGroup(j) if j.error_code == ResponseError::NotCoordinator.code())
    );
}

#[test]
fn reload_restores_stable_group_and_members_must_keep_heartbeating() {
    let mut sh = loaded_shard();
    let mut log = Vec::new();
    let (_, r) = join_new(&mut sh, "g", &["t"], 0);
    log.extend(r.records.clone());
    let t = deferred(&r);
    let r = sh.tick(3_000);
    let j = completed_join(&r, t);
    let id = j.member_id.as_str().to_owned();
    let r = sync(&mut sh, sync_req("g", &id, 1, &[(&id, b"A")]), 3_000);
    log.extend(r.records.clone());
    // The log so far: empty group record (from the first join) and the stable group record.
    let mut all = vec![];
    all.extend(log.iter().cloned());
    let mut fresh = reload(&all, 4_000);
    assert_eq!(fresh.durable_state().groups, sh.durable_state().groups);
    assert_eq!(heartbeat(&mut fresh, "g", &id, 1, 5_000), 0);
    // Without heartbeats the reloaded member expires after its session timeout.
    let r = fresh.tick(15_001);
    // The last member gone, the group completes a rebalance into Empty at once.
    let g = fresh.group("g").unwrap();
    assert_eq!((g.state, g.snapshot.generation), (GroupState::Empty, 2));
    assert_eq!(r.records.len(), 1);
}
