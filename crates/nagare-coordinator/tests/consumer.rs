//! KIP-848 consumer groups: ConsumerGroupHeartbeat scenarios (join, reconciliation with
//! revocation first, leave, fencing errors, static members, session and rebalance timeouts,
//! metadata changes, offset commits with member epochs, list/describe/delete, replay).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as ReqTp;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use nagare_coordinator::*;
use uuid::Uuid;

const T: Uuid = Uuid::from_u128(0xA1);

fn shard_with(partitions: i32) -> GroupCoordinatorShard {
    let mut sh = loaded_shard();
    sh.set_topics(topics(partitions));
    sh
}

fn topics(partitions: i32) -> TopicsImage {
    TopicsImage {
        topics: [("t".to_string(), (T, partitions))].into(),
    }
}

fn hb(member: &str, epoch: i32, owned: Option<&BTreeSet<i32>>) -> ConsumerGroupHeartbeatRequest {
    let mut r = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 });
    if epoch == 0 {
        r.subscribed_topic_names = Some(vec![TopicName(s("t"))]);
        r.topic_partitions = Some(vec![]);
    } else if let Some(o) = owned {
        r.topic_partitions = Some(vec![ReqTp::default()
            .with_topic_id(T)
            .with_partitions(o.iter().copied().collect())]);
    }
    r
}

fn send(
    sh: &mut GroupCoordinatorShard,
    req: ConsumerGroupHeartbeatRequest,
    now: i64,
) -> (ConsumerGroupHeartbeatResponse, Vec<CoordinatorRecord>) {
    let r = sh.handle(&ctx(1), GroupRequest::ConsumerGroupHeartbeat(req), now);
    match r.reply {
        Reply::Now(GroupResponse::ConsumerGroupHeartbeat(resp)) => (resp, r.records),
        other => panic!("unexpected reply {other:?}"),
    }
}

fn assigned(resp: &ConsumerGroupHeartbeatResponse) -> Option<BTreeSet<i32>> {
    resp.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .filter(|t| t.topic_id == T)
            .flat_map(|t| t.partitions.iter().copied())
            .collect()
    })
}

/// A well-behaved client: heartbeats with what it owns and adopts each assignment.
struct Client {
    id: String,
    epoch: i32,
    owned: BTreeSet<i32>,
}

impl Client {
    fn new(id: &str) -> Self {
        Client {
            id: id.into(),
            epoch: 0,
            owned: BTreeSet::new(),
        }
    }

    fn beat(&mut self, sh: &mut GroupCoordinatorShard, now: i64) -> ConsumerGroupHeartbeatResponse {
        let req = hb(&self.id, self.epoch, Some(&self.owned));
        let (resp, _) = send(sh, req, now);
        assert_eq!(resp.error_code, 0, "{:?}", resp.error_message);
        self.epoch = resp.member_epoch;
        if let Some(a) = assigned(&resp) {
            self.owned = a;
        }
        resp
    }
}

fn settle(sh: &mut GroupCoordinatorShard, clients: &mut [Client], now: &mut i64) {
    for _ in 0..6 {
        for c in clients.iter_mut() {
            *now += 10;
            c.beat(sh, *now);
            assert_exclusive(sh);
        }
    }
}

/// No partition is owned (assigned or pending revocation) by two members.
fn assert_exclusive(sh: &GroupCoordinatorShard) {
    let g = sh.consumer_group("g").unwrap();
    let mut seen = BTreeSet::new();
    for m in g.members.values() {
        for set in [&m.assigned, &m.pending_revocation] {
            for (t, ps) in set {
                for p in ps {
                    assert!(seen.insert((*t, *p)), "{t}-{p} owned twice: {g:?}");
                }
            }
        }
    }
}

#[test]
fn three_members_share_twelve_partitions_and_a_fourth_rebalances_incrementally() {
    let mut sh = shard_with(12);
    let mut now = 0;
    let mut clients: Vec<Client> = ["a", "b", "c"].iter().map(|i| Client::new(i)).collect();
    settle(&mut sh, &mut clients, &mut now);
    let g = sh.consumer_group("g").unwrap();
    assert_eq!(g.state, ConsumerGroupState::Stable);
    let all: BTreeSet<i32> = clients.iter().flat_map(|c| c.owned.clone()).collect();
    assert_eq!(all.len(), 12);
    assert!(clients.iter().all(|c| c.owned.len() == 4));
    let before: Vec<BTreeSet<i32>> = clients.iter().map(|c| c.owned.clone()).collect();

    // A fourth member joins: nobody loses more than one partition, the newcomer waits for
    // the revoked ones.
    clients.push(Client::new("d"));
    let r = clients[3].beat(&mut sh, now + 1);
    assert!(r.member_epoch > 0);
    assert!(clients[3].owned.is_empty(), "given partitions still owned");
    settle(&mut sh, &mut clients, &mut now);
    for (i, c) in clients.iter().take(3).enumerate() {
        assert_eq!(c.owned.len(), 3);
        assert!(c.owned.is_subset(&before[i]), "kept partitions moved");
    }
    assert_eq!(clients[3].owned.len(), 3);
    let all: BTreeSet<i32> = clients.iter().flat_map(|c| c.owned.clone()).collect();
    assert_eq!(all.len(), 12);
    assert_eq!(
        sh.consumer_group("g").unwrap().state,
        ConsumerGroupState::Stable
    );

    // One leaves: its partitions are spread over the others.
    let (resp, _) = send(&mut sh, hb("b", -1, None), now + 5);
    assert_eq!(resp.error_code, 0);
    assert_eq!(resp.member_epoch, -1);
    clients.remove(1);
    settle(&mut sh, &mut clients, &mut now);
    assert!(clients.iter().all(|c| c.owned.len() == 4));
    let all: BTreeSet<i32> = clients.iter().flat_map(|c| c.owned.clone()).collect();
    assert_eq!(all.len(), 12);
}

#[test]
fn fencing_and_validation_errors_have_kafka_codes() {
    let mut sh = shard_with(4);
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    // Wrong epoch.
    let (r, _) = send(&mut sh, hb("a", a.epoch + 5, Some(&a.owned)), 1);
    assert_eq!(r.error_code, 110, "FENCED_MEMBER_EPOCH");
    // Unknown member.
    let (r, _) = send(&mut sh, hb("zz", 1, Some(&BTreeSet::new())), 2);
    assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");
    // Unknown assignor.
    let mut req = hb("b", 0, None);
    req.server_assignor = Some(s("sticky-nonsense"));
    let (r, _) = send(&mut sh, req, 3);
    assert_eq!(r.error_code, 112, "UNSUPPORTED_ASSIGNOR");
    // Missing member id in v1, empty group id.
    let (r, _) = send(&mut sh, hb("", 0, None), 4);
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    let mut req = hb("x", 0, None);
    req.group_id = GroupId(s(""));
    let (r, _) = send(&mut sh, req, 5);
    assert_eq!(r.error_code, 42);
    // Group max size.
    let mut small = GroupCoordinatorShard::new(
        0,
        GroupCoordinatorConfig {
            consumer_max_size: 1,
            ..Default::default()
        },
    );
    small.on_loaded(0);
    small.set_topics(topics(2));
    Client::new("a").beat(&mut small, 0);
    let (r, _) = send(&mut small, hb("b", 0, None), 1);
    assert_eq!(r.error_code, 81, "GROUP_MAX_SIZE_REACHED");
    // A classic group with members owns the id.
    let mut sh = loaded_shard();
    let r = sh.handle(
        &ctx(5),
        GroupRequest::JoinGroup(join_req(
            "g",
            "",
            Some("inst"),
            &[("range", subscription(&["t"]))],
        )),
        0,
    );
    assert!(matches!(r.reply, Reply::Now(_) | Reply::Deferred(_)));
    let (r, _) = send(&mut sh, hb("a", 0, None), 1);
    assert_eq!(r.error_code, 69, "GROUP_ID_NOT_FOUND");
}

#[test]
fn lost_response_is_accepted_with_the_previous_epoch() {
    let mut sh = shard_with(4);
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    let epoch = a.epoch;
    // b joins and bumps the group; a's next heartbeat moves it to the new epoch.
    let mut b = Client::new("b");
    b.beat(&mut sh, 1);
    let r = a.beat(&mut sh, 2);
    let (r2, _) = if r.member_epoch == epoch {
        // a had to revoke first: ack it.
        let r = a.beat(&mut sh, 3);
        assert!(r.member_epoch > epoch);
        // the response "was lost": retry with the previous epoch and a subset.
        send(&mut sh, hb("a", epoch, Some(&a.owned)), 4)
    } else {
        send(&mut sh, hb("a", epoch, Some(&a.owned)), 4)
    };
    assert_eq!(r2.error_code, 0, "{:?}", r2.error_message);
}

#[test]
fn session_timeout_removes_the_member_and_frees_its_partitions() {
    let mut sh = shard_with(6);
    let mut now = 0;
    let mut clients = vec![Client::new("a"), Client::new("b")];
    settle(&mut sh, &mut clients, &mut now);
    let epoch = sh.consumer_group("g").unwrap().group_epoch;
    // b stops; a keeps beating past b's session timeout.
    for _ in 0..10 {
        now += 5_000;
        clients[0].beat(&mut sh, now);
        sh.tick(now);
    }
    let g = sh.consumer_group("g").unwrap();
    assert_eq!(g.members.len(), 1);
    assert!(g.group_epoch > epoch);
    clients.truncate(1);
    settle(&mut sh, &mut clients, &mut now);
    assert_eq!(clients[0].owned.len(), 6);
    let (r, _) = send(&mut sh, hb("b", 3, Some(&BTreeSet::new())), now + 1);
    assert_eq!(r.error_code, 25);
}

#[test]
fn a_member_that_does_not_revoke_in_time_is_fenced() {
    let mut sh = shard_with(4);
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    assert_eq!(a.owned.len(), 4);
    Client::new("b").beat(&mut sh, 1);
    // a is asked to revoke but never acknowledges (keeps claiming everything).
    let (r, _) = send(&mut sh, hb("a", a.epoch, Some(&a.owned)), 2);
    assert_eq!(r.error_code, 0);
    let m = &sh.consumer_group("g").unwrap().members["a"];
    assert_eq!(m.state, MemberState::UnrevokedPartitions);
    for t in [10_000, 20_000, 31_000] {
        send(&mut sh, hb("a", a.epoch, Some(&a.owned)), t);
        sh.tick(t);
    }
    assert!(!sh.consumer_group("g").unwrap().members.contains_key("a"));
}

#[test]
fn static_member_leaves_temporarily_and_is_replaced_without_rebalance() {
    let mut sh = shard_with(4);
    let mut req = hb("a1", 0, None);
    req.instance_id = Some(s("inst"));
    let (r, _) = send(&mut sh, req, 0);
    assert_eq!(r.error_code, 0);
    let epoch = r.member_epoch;
    let owned = assigned(&r).unwrap();
    assert_eq!(owned.len(), 4);
    // Another process with the same instance id while a1 is active.
    let mut req = hb("a2", 0, None);
    req.instance_id = Some(s("inst"));
    let (r, _) = send(&mut sh, req.clone(), 1);
    assert_eq!(r.error_code, 111, "UNRELEASED_INSTANCE_ID");
    // a1 leaves temporarily (-2) and a2 takes over with the same assignment.
    let mut leave = hb("a1", -2, None);
    leave.instance_id = Some(s("inst"));
    let (r, _) = send(&mut sh, leave, 2);
    assert_eq!((r.error_code, r.member_epoch), (0, -2));
    let group_epoch = sh.consumer_group("g").unwrap().group_epoch;
    let (r, _) = send(&mut sh, req, 3);
    assert_eq!(r.error_code, 0);
    assert_eq!(assigned(&r).unwrap(), owned);
    assert!(r.member_epoch >= epoch);
    let g = sh.consumer_group("g").unwrap();
    assert_eq!(g.group_epoch, group_epoch, "replacement must not rebalance");
    assert!(g.members.contains_key("a2") && !g.members.contains_key("a1"));
}

#[test]
fn added_partitions_and_deleted_topics_change_the_target() {
    let mut sh = shard_with(2);
    let mut now = 0;
    let mut clients = vec![Client::new("a"), Client::new("b")];
    settle(&mut sh, &mut clients, &mut now);
    sh.set_topics(topics(6));
    settle(&mut sh, &mut clients, &mut now);
    assert!(clients.iter().all(|c| c.owned.len() == 3));
    sh.set_topics(TopicsImage::default());
    settle(&mut sh, &mut clients, &mut now);
    assert!(clients.iter().all(|c| c.owned.is_empty()));
}

#[test]
fn range_assignor_is_used_when_members_ask_for_it() {
    let mut sh = shard_with(5);
    for (i, m) in ["a", "b"].iter().enumerate() {
        let mut req = hb(m, 0, None);
        req.server_assignor = Some(s("range"));
        send(&mut sh, req, i as i64);
    }
    let mut now = 10;
    let mut clients = vec![Client::new("a"), Client::new("b")];
    clients[0].epoch = sh.consumer_group("g").unwrap().members["a"].member_epoch;
    clients[1].epoch = sh.consumer_group("g").unwrap().members["b"].member_epoch;
    clients[0].owned = sh.consumer_group("g").unwrap().members["a"]
        .assigned
        .get(&T)
        .cloned()
        .unwrap_or_default();
    clients[1].owned = sh.consumer_group("g").unwrap().members["b"]
        .assigned
        .get(&T)
        .cloned()
        .unwrap_or_default();
    settle(&mut sh, &mut clients, &mut now);
    assert_eq!(clients[0].owned, [0, 1, 2].into());
    assert_eq!(clients[1].owned, [3, 4].into());
}

#[test]
fn offset_commits_and_fetches_check_member_epochs() {
    let mut sh = shard_with(2);
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    let commit = |member: &str, epoch: i32, version: i16, sh: &mut GroupCoordinatorShard| {
        let req = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_member_id(s(member))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(42),
                    OffsetCommitRequestPartition::default()
                        .with_partition_index(9)
                        .with_committed_offset(1),
                ])]);
        match sh
            .handle(&ctx(version), GroupRequest::OffsetCommit(req), 5)
            .reply
        {
            Reply::Now(GroupResponse::OffsetCommit(r)) => r.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        commit("a", a.epoch + 1, 9, &mut sh),
        vec![113, 113],
        "STALE_MEMBER_EPOCH"
    );
    assert_eq!(commit("zz", a.epoch, 9, &mut sh), vec![25, 25]);
    // Partition 9 does not exist: UNKNOWN_TOPIC_OR_PARTITION for it alone.
    assert_eq!(commit("a", a.epoch, 9, &mut sh), vec![0, 3]);
    assert_eq!(sh.committed_offset("g", "t", 0).unwrap().offset, 42);

    let fetch = |member: Option<&str>, epoch: i32, sh: &mut GroupCoordinatorShard| {
        let req = OffsetFetchRequest::default().with_groups(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s("g")))
                .with_member_id(member.map(s))
                .with_member_epoch(epoch)
                .with_topics(None),
        ]);
        match sh.handle(&ctx(9), GroupRequest::OffsetFetch(req), 6).reply {
            Reply::Now(GroupResponse::OffsetFetch(r)) => r.groups[0].clone(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(fetch(Some("a"), a.epoch + 3, &mut sh).error_code, 113);
    let ok = fetch(Some("a"), a.epoch, &mut sh);
    assert_eq!(ok.error_code, 0);
    assert_eq!(ok.topics[0].partitions[0].committed_offset, 42);
    assert_eq!(fetch(None, -1, &mut sh).error_code, 0, "admin fetch");
}

#[test]
fn list_describe_and_delete_consumer_groups() {
    let mut sh = shard_with(3);
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    a.beat(&mut sh, 1);
    let list = |sh: &mut GroupCoordinatorShard, types: Vec<&str>| match sh
        .handle(
            &ctx(5),
            GroupRequest::ListGroups(
                ListGroupsRequest::default().with_types_filter(types.into_iter().map(s).collect()),
            ),
            2,
        )
        .reply
    {
        Reply::Now(GroupResponse::ListGroups(r)) => r.groups,
        other => panic!("{other:?}"),
    };
    let all = list(&mut sh, vec![]);
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].group_type.as_str(), "consumer");
    assert_eq!(all[0].group_state.as_str(), "Stable");
    assert!(list(&mut sh, vec!["classic"]).is_empty());
    assert_eq!(list(&mut sh, vec!["Consumer"]).len(), 1);

    let d = match sh
        .handle(
            &ctx(0),
            GroupRequest::ConsumerGroupDescribe(
                ConsumerGroupDescribeRequest::default()
                    .with_group_ids(vec![GroupId(s("g")), GroupId(s("nope"))]),
            ),
            3,
        )
        .reply
    {
        Reply::Now(GroupResponse::ConsumerGroupDescribe(r)) => r.groups,
        other => panic!("{other:?}"),
    };
    assert_eq!(d[0].error_code, 0);
    assert_eq!(d[0].assignor_name.as_str(), "uniform");
    assert_eq!(
        d[0].members[0].assignment.topic_partitions[0]
            .partitions
            .len(),
        3
    );
    assert_eq!(
        d[0].members[0].assignment.topic_partitions[0]
            .topic_name
            .as_str(),
        "t"
    );
    assert_eq!(d[1].error_code, 69);

    let describe_classic = match sh
        .handle(
            &ctx(5),
            GroupRequest::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            ),
            3,
        )
        .reply
    {
        Reply::Now(GroupResponse::DescribeGroups(r)) => r.groups,
        other => panic!("{other:?}"),
    };
    assert_eq!(describe_classic[0].protocol_type.as_str(), "consumer");
    assert_eq!(describe_classic[0].members.len(), 1);

    let delete = |sh: &mut GroupCoordinatorShard| match sh
        .handle(
            &ctx(2),
            GroupRequest::DeleteGroups(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            ),
            4,
        )
        .reply
    {
        Reply::Now(GroupResponse::DeleteGroups(r)) => r.results[0].error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(delete(&mut sh), 68, "NON_EMPTY_GROUP");
    send(&mut sh, hb("a", -1, None), 5);
    assert_eq!(delete(&mut sh), 0);
    assert!(sh.consumer_group("g").is_none());
}

#[test]
fn replaying_the_records_rebuilds_the_groups() {
    let mut sh = shard_with(7);
    let mut log = Vec::new();
    let mut now = 0;
    let mut clients = vec![Client::new("a"), Client::new("b"), Client::new("c")];
    for round in 0..5 {
        for c in clients.iter_mut() {
            now += 7;
            let req = hb(&c.id, c.epoch, Some(&c.owned));
            let r = sh.handle(&ctx(1), GroupRequest::ConsumerGroupHeartbeat(req), now);
            log.extend(r.records);
            if let Reply::Now(GroupResponse::ConsumerGroupHeartbeat(resp)) = r.reply {
                c.epoch = resp.member_epoch;
                if let Some(a) = assigned(&resp) {
                    c.owned = a;
                }
            }
        }
        if round == 2 {
            let r = sh.handle(
                &ctx(1),
                GroupRequest::ConsumerGroupHeartbeat(hb("b", -1, None)),
                now,
            );
            log.extend(r.records);
            clients.remove(1);
        }
    }
    let mut replica = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default());
    for r in &log {
        let back = CoordinatorRecord::decode(&r.encode_key(), r.encode_value().as_deref()).unwrap();
        replica.replay(&back);
    }
    replica.on_loaded(now);
    assert_eq!(replica.durable_state(), sh.durable_state());
    let views: BTreeMap<String, ConsumerGroupView> = replica.consumer_groups();
    assert_eq!(views["g"].members.len(), 2);
    // The reloaded coordinator goes on serving the same members.
    replica.set_topics(topics(7));
    for c in clients.iter_mut() {
        c.beat(&mut replica, now + 1);
    }
}

#[test]
fn classic_and_consumer_groups_share_the_id_space_and_convert_when_empty() {
    let mut sh = shard_with(2);
    let mut log: Vec<CoordinatorRecord> = Vec::new();
    let mut run = |sh: &mut GroupCoordinatorShard, ver: i16, req: GroupRequest, now: i64| {
        let r = sh.handle(&ctx(ver), req, now);
        log.extend(r.records.clone());
        r.reply
    };
    // A simple consumer's offsets make an empty classic group; a KIP-848 member converts it
    // and the offsets stay.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(7)])]);
    run(&mut sh, 9, GroupRequest::OffsetCommit(commit), 0);
    assert!(sh.group("g").is_some());
    let reply = run(
        &mut sh,
        1,
        GroupRequest::ConsumerGroupHeartbeat(hb("a", 0, None)),
        1,
    );
    assert!(
        matches!(reply, Reply::Now(GroupResponse::ConsumerGroupHeartbeat(ref r)) if r.error_code == 0)
    );
    assert!(sh.group("g").is_none());
    assert!(sh.consumer_group("g").is_some());
    assert_eq!(sh.committed_offset("g", "t", 0).unwrap().offset, 7);
    // A classic member cannot join the live consumer group.
    let join =
        || GroupRequest::JoinGroup(join_req("g", "", None, &[("range", subscription(&["t"]))]));
    match run(&mut sh, 5, join(), 2) {
        Reply::Now(GroupResponse::JoinGroup(j)) => assert_eq!(j.error_code, 23),
        other => panic!("{other:?}"),
    }
    // Once empty, the consumer group gives its id to a classic group; offsets stay.
    run(
        &mut sh,
        1,
        GroupRequest::ConsumerGroupHeartbeat(hb("a", -1, None)),
        3,
    );
    let reply = run(&mut sh, 3, join(), 4);
    assert!(matches!(reply, Reply::Deferred(_) | Reply::Now(_)));
    assert!(sh.consumer_group("g").is_none());
    assert!(sh.group("g").is_some());
    assert_eq!(sh.committed_offset("g", "t", 0).unwrap().offset, 7);
    // Replaying the log gives the same groups and offsets.
    let mut replica = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default());
    for r in &log {
        replica.replay(
            &CoordinatorRecord::decode(&r.encode_key(), r.encode_value().as_deref()).unwrap(),
        );
    }
    assert!(replica.consumer_group("g").is_none());
    assert!(replica.group("g").is_some());
    assert_eq!(replica.committed_offset("g", "t", 0).unwrap().offset, 7);
}

#[test]
fn offsets_of_consumer_groups_expire_and_empty_groups_are_deleted() {
    let retention = 60_000;
    let mut sh = GroupCoordinatorShard::new(
        0,
        GroupCoordinatorConfig {
            offsets_retention_ms: retention,
            offsets_retention_check_interval_ms: 1_000,
            ..Default::default()
        },
    );
    sh.on_loaded(0);
    sh.set_topics(topics(2));
    let mut a = Client::new("a");
    a.beat(&mut sh, 0);
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s("a"))
        .with_generation_id_or_member_epoch(a.epoch)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(1)
                .with_committed_offset(3)])]);
    sh.handle(&ctx(9), GroupRequest::OffsetCommit(req), 1);
    // Subscribed topic: kept while the member lives, however old.
    let mut now = 1;
    while now < 3 * retention {
        now += 5_000;
        a.beat(&mut sh, now);
        sh.tick(now);
    }
    assert!(sh.committed_offset("g", "t", 1).is_some());
    // Empty group: the offset expires from its commit time, then the group goes.
    send(&mut sh, hb("a", -1, None), now);
    now += 2_000;
    sh.tick(now);
    assert!(sh.committed_offset("g", "t", 1).is_none());
    now += 2_000;
    sh.tick(now);
    assert!(sh.consumer_group("g").is_none());
}

#[test]
fn version_0_members_get_an_id_from_the_coordinator() {
    let mut sh = shard_with(1);
    let r = sh.handle(
        &ctx(0),
        GroupRequest::ConsumerGroupHeartbeat(hb("", 0, None)),
        0,
    );
    let Reply::Now(GroupResponse::ConsumerGroupHeartbeat(resp)) = r.reply else {
        panic!("no answer");
    };
    assert_eq!(resp.error_code, 0);
    let id = resp.member_id.unwrap().to_string();
    assert!(!id.is_empty());
    assert!(sh.consumer_group("g").unwrap().members.contains_key(&id));
}

/// KIP-848 group configs (the GROUP config resource): a group's own
/// `consumer.heartbeat.interval.ms` is what its members are told, and its own
/// `consumer.session.timeout.ms` is how long a silent member stays; other groups keep the
/// broker's values, and a change applies from the next heartbeat.
#[test]
fn group_config_overrides_set_heartbeat_interval_and_session_timeout() {
    let overrides = GroupConfigOverrides::default();
    let mut sh = GroupCoordinatorShard::new(
        0,
        GroupCoordinatorConfig {
            group_overrides: overrides.clone(),
            ..Default::default()
        },
    );
    sh.on_loaded(0);
    sh.set_topics(topics(2));
    overrides.replace(
        [(
            "g".to_string(),
            GroupOverride {
                consumer_session_timeout_ms: Some(50_000),
                consumer_heartbeat_interval_ms: Some(7_000),
            },
        )]
        .into(),
    );
    let (r, _) = send(&mut sh, hb("a", 0, None), 0);
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 7_000));
    let mut other = hb("o", 0, None);
    other.group_id = GroupId(s("other"));
    let (r, _) = send(&mut sh, other, 0);
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 5_000));
    // Past the broker's 45 s but within the group's 50 s: still a member; then expired.
    sh.tick(46_000);
    assert_eq!(sh.consumer_group("g").unwrap().members.len(), 1);
    assert!(sh.consumer_group("other").unwrap().members.is_empty());
    sh.tick(50_001);
    assert!(sh.consumer_group("g").unwrap().members.is_empty());
    // Removed override: the broker's interval from the next heartbeat.
    overrides.replace(Default::default());
    let (r, _) = send(&mut sh, hb("b", 0, None), 50_002);
    assert_eq!((r.error_code, r.heartbeat_interval_ms), (0, 5_000));
}
