//! Unit tests of transactional offsets (TxnOffsetCommit, KIP-98/KIP-447): pending until the
//! producer's marker, committed on COMMIT, dropped on ABORT, `require_stable`, the member
//! checks, retention and deletion — and that replaying the log (transactional batches and
//! markers included) rebuilds the live state.

mod common;

use common::*;
use kafka_protocol::messages::offset_fetch_request::*;
use kafka_protocol::messages::txn_offset_commit_request::*;
use kafka_protocol::messages::*;
use kafka_protocol::ResponseError;
use nagare_coordinator::runtime::CoordinatorShard;
use nagare_coordinator::*;

/// What the runtime writes to `__consumer_offsets`, as loading sees it.
#[derive(Debug, Clone)]
enum Entry {
    /// A plain batch.
    Plain(Vec<CoordinatorRecord>),
    /// A transactional batch of a producer.
    Txn(i64, Vec<CoordinatorRecord>),
    /// A COMMIT (true) or ABORT marker of a producer.
    Marker(i64, bool),
}

/// A shard and the log its results would have written.
struct Live {
    sh: GroupCoordinatorShard,
    log: Vec<Entry>,
}

impl Live {
    fn new() -> Live {
        Live {
            sh: loaded_shard(),
            log: Vec::new(),
        }
    }

    fn plain(&mut self, r: CoordinatorResult) -> CoordinatorResult {
        if !r.records.is_empty() {
            self.log.push(Entry::Plain(r.records.clone()));
        }
        r
    }

    /// TxnOffsetCommit of `pid` (generation -1, no member unless given); returns the codes.
    #[allow(clippy::too_many_arguments)]
    fn txn_commit(
        &mut self,
        version: i16,
        group: &str,
        pid: i64,
        member: &str,
        generation: i32,
        offsets: &[(&str, i32, i64)],
        now: i64,
    ) -> Vec<i16> {
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (t, p, o) in offsets {
            let part = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(s("m")));
            match topics.iter_mut().find(|x| x.name.0.as_str() == *t) {
                Some(x) => x.partitions.push(part),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partitions(vec![part]),
                ),
            }
        }
        let req = TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_generation_id(generation)
            .with_member_id(s(member))
            .with_topics(topics);
        let r = self
            .sh
            .handle(&ctx(version), GroupRequest::TxnOffsetCommit(req), now);
        if !r.records.is_empty() {
            self.log.push(Entry::Txn(pid, r.records.clone()));
        }
        match &r.reply {
            Reply::Now(GroupResponse::TxnOffsetCommit(c)) => c
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    /// The marker as the runtime's `complete_transaction` applies and writes it.
    fn marker(&mut self, pid: i64, commit: bool) {
        CoordinatorShard::replay_end_transaction_marker(&mut self.sh, pid, 0, commit);
        self.log.push(Entry::Marker(pid, commit));
    }

    /// Replays the log through the runtime's entry points into a fresh shard.
    fn reload(&self, now: i64) -> GroupCoordinatorShard {
        let mut sh =
            GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default()).with_id_seed(99);
        for e in &self.log {
            match e {
                Entry::Plain(rs) => rs.iter().for_each(|r| CoordinatorShard::replay(&mut sh, r)),
                Entry::Txn(pid, rs) => rs
                    .iter()
                    .for_each(|r| CoordinatorShard::replay_transactional(&mut sh, *pid, 0, r)),
                Entry::Marker(pid, commit) => {
                    CoordinatorShard::replay_end_transaction_marker(&mut sh, *pid, 0, *commit)
                }
            }
        }
        sh.on_loaded(now);
        sh
    }

    fn assert_replay_matches(&self) {
        assert_eq!(
            self.reload(0).durable_state(),
            self.sh.durable_state(),
            "replay differs from the live state"
        );
    }
}

/// OffsetFetch v7 of one partition: (offset, error code).
fn fetch(sh: &mut GroupCoordinatorShard, group: &str, t: &str, p: i32, stable: bool) -> (i64, i16) {
    let req = OffsetFetchRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_require_stable(stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(s(t)))
            .with_partition_indexes(vec![p])]));
    match sh.handle(&ctx(7), GroupRequest::OffsetFetch(req), 0).reply {
        Reply::Now(GroupResponse::OffsetFetch(f)) => {
            let x = &f.topics[0].partitions[0];
            (x.committed_offset, x.error_code)
        }
        other => panic!("{other:?}"),
    }
}

const UNSTABLE: i16 = ResponseError::UnstableOffsetCommit.code();

#[test]
fn pending_offsets_are_committed_by_the_commit_marker() {
    let mut l = Live::new();
    let r = commit(&mut l.sh, 8, "g", "", -1, &[("t", 0, 5, None)], 10).1;
    l.plain(r);
    assert_eq!(
        l.txn_commit(3, "g", 7, "", -1, &[("t", 0, 9), ("t", 1, 3)], 20),
        vec![0, 0]
    );
    // Pending: the last committed offset without require_stable, UNSTABLE_OFFSET_COMMIT with.
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, false), (5, 0));
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (-1, UNSTABLE));
    assert_eq!(fetch(&mut l.sh, "g", "t", 1, true), (-1, UNSTABLE));
    assert_eq!(
        fetch(&mut l.sh, "g", "t", 2, true),
        (-1, 0),
        "other partitions are stable"
    );
    l.assert_replay_matches();
    // Another producer's marker does not touch them.
    l.marker(8, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (-1, UNSTABLE));
    l.marker(7, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (9, 0));
    assert_eq!(fetch(&mut l.sh, "g", "t", 1, false), (3, 0));
    assert!(l.sh.durable_state().pending_txn_offsets.is_empty());
    l.assert_replay_matches();
}

#[test]
fn pending_offsets_are_dropped_by_the_abort_marker() {
    let mut l = Live::new();
    let r = commit(&mut l.sh, 8, "g", "", -1, &[("t", 0, 5, None)], 10).1;
    l.plain(r);
    l.txn_commit(3, "g", 7, "", -1, &[("t", 0, 9)], 20);
    l.marker(7, false);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (5, 0));
    assert!(l.sh.durable_state().pending_txn_offsets.is_empty());
    l.assert_replay_matches();
    // A transaction left open at the end of the log is still open after a reload.
    l.txn_commit(3, "g", 11, "", -1, &[("t", 0, 12)], 30);
    let mut back = l.reload(40);
    assert_eq!(fetch(&mut back, "g", "t", 0, true), (-1, UNSTABLE));
    CoordinatorShard::replay_end_transaction_marker(&mut back, 11, 0, true);
    assert_eq!(fetch(&mut back, "g", "t", 0, true), (12, 0));
}

#[test]
fn the_later_of_a_committed_transaction_and_a_plain_commit_wins() {
    // A plain commit written after the transaction's offset: kept at the COMMIT marker.
    let mut l = Live::new();
    l.txn_commit(3, "g", 7, "", -1, &[("t", 0, 9)], 20);
    let r = commit(&mut l.sh, 8, "g", "", -1, &[("t", 0, 15, None)], 25).1;
    l.plain(r);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, false), (15, 0));
    l.marker(7, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (15, 0));
    l.assert_replay_matches();
    // A plain commit written before it: replaced at the COMMIT marker.
    let r = commit(&mut l.sh, 8, "g", "", -1, &[("t", 1, 1, None)], 30).1;
    l.plain(r);
    l.txn_commit(3, "g", 8, "", -1, &[("t", 1, 4)], 35);
    l.marker(8, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 1, true), (4, 0));
    l.assert_replay_matches();
}

#[test]
fn kip_447_member_checks_of_a_classic_group() {
    let mut l = Live::new();
    let (ids, generation) = stable_group(&mut l.sh, "g", 2, 0);
    let now = 10_000;
    // Without member fields (v0-2 or a producer not using KIP-447): accepted.
    assert_eq!(
        l.txn_commit(2, "g", 7, "", -1, &[("t", 0, 1)], now),
        vec![0]
    );
    // The member of the current generation: accepted.
    assert_eq!(
        l.txn_commit(3, "g", 7, &ids[0], generation, &[("t", 0, 2)], now),
        vec![0]
    );
    assert_eq!(
        l.txn_commit(3, "g", 7, &ids[1], generation + 1, &[("t", 0, 3)], now),
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        l.txn_commit(3, "g", 7, "nobody", generation, &[("t", 0, 3)], now),
        vec![ResponseError::UnknownMemberId.code()]
    );
    // A generation for a group that does not exist: ILLEGAL_GENERATION.
    assert_eq!(
        l.txn_commit(3, "nogroup", 7, "m", 1, &[("t", 0, 3)], now),
        vec![ResponseError::IllegalGeneration.code()]
    );
    // An empty group id is invalid.
    assert_eq!(
        l.txn_commit(3, "", 7, "", -1, &[("t", 0, 3)], now),
        vec![ResponseError::InvalidGroupId.code()]
    );
    l.marker(7, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, true), (2, 0));
}

#[test]
fn pending_offsets_hold_retention_and_deleting_the_group_drops_them() {
    let mut l = Live::new();
    let r = commit(&mut l.sh, 8, "g", "", -1, &[("t", 0, 5, None)], 0).1;
    l.plain(r);
    l.txn_commit(3, "g", 7, "", -1, &[("t", 0, 9), ("t", 1, 2)], 0);
    // Far past the retention: the partition with a pending offset does not expire, nor the
    // group.
    let week = 7 * 24 * 3600 * 1000;
    let r = l.sh.tick(2 * week);
    let r = l.plain(r);
    assert!(r.records.is_empty(), "{:?}", r.records);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, false), (5, 0));
    assert!(l.sh.group("g").is_some());
    // DeleteGroups tombstones the committed and the pending offsets.
    let req = DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]);
    let r =
        l.sh.handle(&ctx(2), GroupRequest::DeleteGroups(req), 2 * week);
    let r = l.plain(r);
    match &r.reply {
        Reply::Now(GroupResponse::DeleteGroups(d)) => assert_eq!(d.results[0].error_code, 0),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.records.len(), 3, "two offset tombstones and the group's");
    assert!(l.sh.durable_state().pending_txn_offsets.is_empty());
    l.marker(7, true);
    assert_eq!(fetch(&mut l.sh, "g", "t", 0, false), (-1, 0));
    l.assert_replay_matches();
}

#[test]
fn require_stable_applies_to_every_group_of_offset_fetch_v8_and_to_all_topics() {
    let mut l = Live::new();
    let r = commit(
        &mut l.sh,
        8,
        "g",
        "",
        -1,
        &[("t", 0, 5, None), ("u", 0, 1, None)],
        10,
    )
    .1;
    l.plain(r);
    l.txn_commit(3, "g", 7, "", -1, &[("t", 0, 9)], 20);
    let req = OffsetFetchRequest::default()
        .with_require_stable(true)
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(None)]);
    let f = match l
        .sh
        .handle(&ctx(8), GroupRequest::OffsetFetch(req), 0)
        .reply
    {
        Reply::Now(GroupResponse::OffsetFetch(f)) => f,
        other => panic!("{other:?}"),
    };
    let got: Vec<(String, i64, i16)> = f.groups[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.committed_offset, p.error_code))
        })
        .collect();
    assert_eq!(
        got,
        vec![("t".to_string(), -1, UNSTABLE), ("u".to_string(), 1, 0)]
    );
}

#[test]
fn kip_447_member_checks_of_a_consumer_group() {
    let mut l = Live::new();
    let t = uuid::Uuid::from_u128(0xA1);
    l.sh.set_topics(TopicsImage {
        topics: [("t".to_string(), (t, 2))].into(),
    });
    let hb = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s("cg")))
        .with_member_id(s("a"))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(30_000)
        .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
        .with_topic_partitions(Some(vec![]));
    let r =
        l.sh.handle(&ctx(1), GroupRequest::ConsumerGroupHeartbeat(hb), 0);
    let epoch = match &r.reply {
        Reply::Now(GroupResponse::ConsumerGroupHeartbeat(h)) => {
            assert_eq!(h.error_code, 0);
            h.member_epoch
        }
        other => panic!("{other:?}"),
    };
    l.plain(r);
    assert_eq!(
        l.txn_commit(4, "cg", 7, "a", epoch, &[("t", 0, 1)], 5),
        vec![0]
    );
    assert_eq!(
        l.txn_commit(4, "cg", 7, "a", epoch + 1, &[("t", 0, 1)], 5),
        vec![ResponseError::IllegalGeneration.code()],
        "a stale member epoch is ILLEGAL_GENERATION for TxnOffsetCommit"
    );
    assert_eq!(
        l.txn_commit(4, "cg", 7, "b", epoch, &[("t", 0, 1)], 5),
        vec![ResponseError::UnknownMemberId.code()]
    );
    // Without member fields: accepted; a partition the topic does not have: unknown.
    assert_eq!(
        l.txn_commit(2, "cg", 7, "", -1, &[("t", 1, 2), ("t", 9, 2)], 5),
        vec![0, ResponseError::UnknownTopicOrPartition.code()]
    );
    l.marker(7, true);
    assert_eq!(fetch(&mut l.sh, "cg", "t", 1, true), (2, 0));
    l.assert_replay_matches();
}

#[test]
fn a_static_member_replaced_by_a_new_instance_is_fenced() {
    let mut sh = loaded_shard();
    let r = join(&mut sh, join_req("g", "", Some("i1"), &range(&["t"])), 0);
    let t = deferred(&r);
    let r = sh.tick(3_000);
    let old = completed_join(&r, t).member_id.as_str().to_owned();
    let r = sync(
        &mut sh,
        sync_req("g", &old, 1, &[(&old, b"P0")]).with_group_instance_id(Some(s("i1"))),
        3_000,
    );
    assert_eq!(now_sync(&r).error_code, 0);
    // The instance restarts: a new member id for i1.
    let r = join(
        &mut sh,
        join_req("g", "", Some("i1"), &range(&["t"])),
        5_000,
    );
    let new = now_join(&r).member_id.as_str().to_owned();
    assert_ne!(new, old);
    let commit = |member: &str| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s("tx")))
            .with_group_id(GroupId(s("g")))
            .with_producer_id(ProducerId(7))
            .with_generation_id(1)
            .with_member_id(s(member))
            .with_group_instance_id(Some(s("i1")))
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(4)])])
    };
    let code = |sh: &mut GroupCoordinatorShard, member: &str| match sh
        .handle(
            &ctx(3),
            GroupRequest::TxnOffsetCommit(commit(member)),
            6_000,
        )
        .reply
    {
        Reply::Now(GroupResponse::TxnOffsetCommit(c)) => c.topics[0].partitions[0].error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(code(&mut sh, &old), ResponseError::FencedInstanceId.code());
    assert_eq!(code(&mut sh, &new), 0);
}
