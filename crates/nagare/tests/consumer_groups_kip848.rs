//! KIP-848 consumer groups (`group.protocol=consumer`) with librdkafka against a real `nagare`
//! process: every partition owned by exactly one member as members join and leave, records
//! keep flowing on partitions that do not move, commits survive a restart; and the
//! ConsumerGroupHeartbeat error codes for bad input.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::{block_on, TestServer};
use nagare_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use nagare_client::kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, GroupId, MetadataRequest, TopicName,
};
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::{Client, Connection};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};

const TOPIC: &str = "kip848";

fn server() -> TestServer {
    // A short heartbeat interval makes reconciliation steps (one per heartbeat) quick.
    TestServer::start(&[
        "group.consumer.heartbeat.interval.ms=300",
        "group.consumer.session.timeout.ms=10000",
    ])
}

fn consumer(server: &TestServer, group: &str) -> BaseConsumer {
    let mut cfg = server.client_config();
    cfg.set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let c: BaseConsumer = cfg.create().expect("consumer");
    c.subscribe(&[TOPIC]).expect("subscribe");
    c
}

/// Every member's assignment, checked for exclusivity. librdkafka applies assignments on its
/// own thread, so members read one after the other can straddle a handoff (the old owner read
/// just before it released a partition, the new one just after it got it). An overlap only
/// counts if it is still there when every member is read again a moment later: the
/// coordinator gives a partition away only after its owner acknowledged the revocation.
fn exclusive_assignments(consumers: &[BaseConsumer]) -> Vec<BTreeSet<i32>> {
    let overlap = |sets: &[BTreeSet<i32>]| -> BTreeSet<i32> {
        let mut seen = BTreeSet::new();
        let mut twice = BTreeSet::new();
        for p in sets.iter().flatten() {
            if !seen.insert(*p) {
                twice.insert(*p);
            }
        }
        twice
    };
    let first: Vec<BTreeSet<i32>> = consumers.iter().map(assignment).collect();
    let twice = overlap(&first);
    if twice.is_empty() {
        return first;
    }
    std::thread::sleep(Duration::from_millis(200));
    let again: Vec<BTreeSet<i32>> = consumers.iter().map(assignment).collect();
    let still: BTreeSet<i32> = overlap(&again).intersection(&twice).copied().collect();
    assert!(
        still.is_empty(),
        "partitions {still:?} owned twice: {first:?} then {again:?}"
    );
    again
}

fn assignment(c: &BaseConsumer) -> BTreeSet<i32> {
    c.assignment()
        .map(|a| a.elements().iter().map(|e| e.partition()).collect())
        .unwrap_or_default()
}

/// Polls every consumer (counting received records per partition) until their assignments
/// are disjoint, non-empty, cover `0..partitions` and are balanced (sizes differ by at most
/// one: the uniform assignor's target). Coverage alone is not settled: a member that joined
/// late can own nothing yet while another still holds the partitions it is about to revoke
/// (e.g. 4/6/2 over three members on the way to 4/4/4). Panics if two members ever hold the
/// same partition at once.
fn wait_exact(
    consumers: &[BaseConsumer],
    partitions: i32,
    received: &mut BTreeMap<i32, u64>,
) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        for c in consumers {
            poll_into(c, received, Duration::from_millis(20));
        }
        last = exclusive_assignments(consumers);
        let union: BTreeSet<i32> = last.iter().flatten().copied().collect();
        let sizes = last.iter().map(BTreeSet::len);
        let balanced = sizes.clone().max().unwrap_or(0) - sizes.min().unwrap_or(0) <= 1;
        if union.len() == partitions as usize && last.iter().all(|s| !s.is_empty()) && balanced {
            return last;
        }
    }
    panic!("ownership never became exact and balanced: {last:?}");
}

fn poll_into(c: &BaseConsumer, received: &mut BTreeMap<i32, u64>, timeout: Duration) {
    if let Some(Ok(m)) = c.poll(timeout) {
        *received.entry(m.partition()).or_default() += 1;
    }
}

#[test]
fn members_join_and_leave_with_exact_ownership_and_no_pause_on_unmoved_partitions() {
    let server = server();
    server.create_topic(TOPIC, 12, &[]);
    let producer = server.producer(&[]);
    let produce_round = |round: usize| {
        for p in 0..12 {
            let v = format!("r{round}-p{p}");
            producer
                .send(BaseRecord::<(), _>::to(TOPIC).partition(p).payload(&v))
                .expect("send");
        }
        producer.poll(Duration::ZERO);
    };
    let mut received = BTreeMap::new();
    let mut consumers: Vec<BaseConsumer> = (0..3).map(|_| consumer(&server, "g848")).collect();
    let owned = wait_exact(&consumers, 12, &mut received);
    assert!(
        owned.iter().all(|s| s.len() == 4),
        "uniform assignor over 3 members: {owned:?}"
    );

    // A fourth member joins while records flow into every partition.
    consumers.push(consumer(&server, "g848"));
    let mut round = 0;
    let mut during: BTreeMap<i32, u64> = BTreeMap::new();
    let start = Instant::now();
    let mut after = None;
    let mut snapshots: Vec<Vec<BTreeSet<i32>>> = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        produce_round(round);
        round += 1;
        for c in &consumers {
            poll_into(c, &mut during, Duration::from_millis(10));
        }
        let now = exclusive_assignments(&consumers);
        snapshots.push(now.clone());
        let union: BTreeSet<i32> = now.iter().flatten().copied().collect();
        if union.len() == 12 && now.iter().all(|s| !s.is_empty()) {
            after = Some(now);
            break;
        }
    }
    let after = after.expect("the fourth member never got partitions");
    // No stop-the-world: at every moment of the rebalance each old member kept the
    // partitions it keeps in the end (an eager classic rebalance revokes everything).
    let unmoved: Vec<BTreeSet<i32>> = (0..3)
        .map(|i| owned[i].intersection(&after[i]).copied().collect())
        .collect();
    assert!(
        unmoved.iter().map(BTreeSet::len).sum::<usize>() >= 6,
        "too many partitions moved: {owned:?} -> {after:?}"
    );
    for snap in &snapshots {
        for i in 0..3 {
            assert!(
                snap[i].is_superset(&unmoved[i]),
                "member {i} lost unmoved partitions mid-rebalance: {snap:?} (keeps {unmoved:?})"
            );
        }
    }
    for i in 0..3 {
        assert!(after[i].len() >= 2, "member {i} lost too much: {after:?}");
    }
    // Records keep flowing on the unmoved partitions.
    let flow_deadline = Instant::now() + Duration::from_secs(30);
    while unmoved
        .iter()
        .flatten()
        .any(|p| during.get(p).copied().unwrap_or(0) == 0)
        && Instant::now() < flow_deadline
    {
        produce_round(round);
        round += 1;
        for c in &consumers {
            poll_into(c, &mut during, Duration::from_millis(10));
        }
    }
    for p in unmoved.iter().flatten() {
        assert!(
            during.get(p).copied().unwrap_or(0) > 0,
            "unmoved partition {p} received nothing ({during:?})"
        );
    }

    // One member leaves (close sends the leave heartbeat): the others take its partitions.
    let leaving = consumers.remove(0);
    leaving.unsubscribe();
    drop(leaving);
    let owned = wait_exact(&consumers, 12, &mut received);
    assert_eq!(owned.len(), 3);
    producer.flush(Duration::from_secs(10)).expect("flush");

    // The group is described as a consumer group with three members.
    let desc = block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        client
            .consumer_group_describe("g848")
            .await
            .expect("describe")
    });
    let g = &desc.groups[0];
    assert_eq!(g.error_code, 0);
    assert_eq!(g.assignor_name.as_str(), "uniform");
    assert_eq!(g.members.len(), 3);
}

#[test]
fn commits_survive_a_server_restart() {
    let mut server = server();
    server.create_topic(TOPIC, 3, &[]);
    let producer = server.producer(&[]);
    for i in 0..60i32 {
        let v = format!("v{i}");
        producer
            .send(BaseRecord::<(), _>::to(TOPIC).partition(i % 3).payload(&v))
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    {
        let c = consumer(&server, "g848-commit");
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while seen < 60 && Instant::now() < deadline {
            if let Some(Ok(_)) = c.poll(Duration::from_millis(100)) {
                seen += 1;
            }
        }
        assert_eq!(seen, 60);
        c.commit_consumer_state(CommitMode::Sync).expect("commit");
        c.unsubscribe();
    }
    server.kill9();
    server.restart();
    let producer = server.producer(&[]);
    for i in 60..66i32 {
        let v = format!("v{i}");
        producer
            .send(BaseRecord::<(), _>::to(TOPIC).partition(i % 3).payload(&v))
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    let c = consumer(&server, "g848-commit");
    let mut values = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while values.len() < 6 && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            assert!(
                !values.contains(&v),
                "record {v} delivered twice after the restart"
            );
            values.insert(v);
        }
    }
    let expected: BTreeSet<String> = (60..66).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected, "resumed at the committed offsets");
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_owned())
}

#[test]
fn bad_heartbeats_get_kafka_error_codes() {
    let server = server();
    server.create_topic(TOPIC, 2, &[]);
    block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        let join = |member: &str| {
            ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(s("g848-bad")))
                .with_member_id(s(member))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_names(Some(vec![TopicName(s(TOPIC))]))
                .with_topic_partitions(Some(vec![]))
        };
        let ok = client
            .consumer_group_heartbeat(&join("member-a"))
            .await
            .expect("join");
        assert_eq!(ok.error_code, 0, "{:?}", ok.error_message);
        assert!(ok.member_epoch > 0);
        assert_eq!(ok.heartbeat_interval_ms, 300);
        let assigned: usize = ok
            .assignment
            .as_ref()
            .map(|a| a.topic_partitions.iter().map(|t| t.partitions.len()).sum())
            .unwrap_or(0);
        assert_eq!(assigned, 2);

        // Assignments name topics by id; clients resolve them with Metadata v12+ by id.
        let topic_id = ok.assignment.as_ref().unwrap().topic_partitions[0].topic_id;
        let mut conn = Connection::connect(&server.bootstrap(), "kip848-test")
            .await
            .expect("connect");
        let by_id = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_topic_id(topic_id)
                .with_name(None)]))
            .with_allow_auto_topic_creation(false);
        let md = conn.send_version(&by_id, 12).await.expect("metadata by id");
        assert_eq!(md.topics.len(), 1);
        assert_eq!(md.topics[0].error_code, 0);
        assert_eq!(
            md.topics[0].name.as_ref().map(|n| n.0.as_str()),
            Some(TOPIC)
        );
        assert_eq!(md.topics[0].partitions.len(), 2);

        let wrong_epoch = join("member-a")
            .with_member_epoch(ok.member_epoch + 10)
            .with_rebalance_timeout_ms(-1)
            .with_subscribed_topic_names(None)
            .with_topic_partitions(None);
        let r = client
            .consumer_group_heartbeat(&wrong_epoch)
            .await
            .expect("send");
        assert_eq!(r.error_code, 110, "FENCED_MEMBER_EPOCH");

        let unknown = wrong_epoch
            .clone()
            .with_member_id(s("nobody"))
            .with_member_epoch(1);
        let r = client
            .consumer_group_heartbeat(&unknown)
            .await
            .expect("send");
        assert_eq!(r.error_code, 25, "UNKNOWN_MEMBER_ID");

        let bad_assignor = join("member-b").with_server_assignor(Some(s("no-such-assignor")));
        let r = client
            .consumer_group_heartbeat(&bad_assignor)
            .await
            .expect("send");
        assert_eq!(r.error_code, 112, "UNSUPPORTED_ASSIGNOR");

        let leave = join("member-a")
            .with_member_epoch(-1)
            .with_subscribed_topic_names(None)
            .with_topic_partitions(None);
        let r = client.consumer_group_heartbeat(&leave).await.expect("send");
        assert_eq!((r.error_code, r.member_epoch), (0, -1));

        // OffsetCommit for a topic or partition that does not exist: UNKNOWN_TOPIC_OR_PARTITION.
        for (topic, partition) in [("no-such-topic", 0), (TOPIC, 7)] {
            let err = client
                .commit_offsets("g848-bad", &[(topic, partition, 5)])
                .await
                .expect_err("commit to a missing partition");
            assert_eq!(
                err.kafka_error(),
                Some(nagare_client::ResponseError::UnknownTopicOrPartition),
                "{topic}-{partition}: {err}"
            );
        }
        client
            .commit_offsets("g848-bad", &[(TOPIC, 1, 5)])
            .await
            .expect("commit to an existing partition of the empty group");
    });
}

#[test]
fn regex_subscriptions_are_assigned_server_side() {
    let server = server();
    server.create_topic("kip848-rx-1", 2, &[]);
    server.create_topic("kip848-rx-2", 2, &[]);
    server.create_topic("other-topic", 2, &[]);
    let mut cfg = server.client_config();
    cfg.set("group.id", "g848-regex")
        .set("group.protocol", "consumer")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cfg.create().expect("consumer");
    c.subscribe(&["^kip848-rx-.*"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = BTreeSet::new();
    while Instant::now() < deadline {
        let _ = c.poll(Duration::from_millis(50));
        got = c
            .assignment()
            .map(|a| {
                a.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default();
        if got.len() == 4 {
            break;
        }
    }
    let want: BTreeSet<(String, i32)> = ["kip848-rx-1", "kip848-rx-2"]
        .iter()
        .flat_map(|t| (0..2).map(move |p| (t.to_string(), p)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn added_partitions_are_assigned_without_a_rejoin() {
    let server = server();
    server.create_topic(TOPIC, 2, &[]);
    let mut received = BTreeMap::new();
    let consumers: Vec<BaseConsumer> = (0..2).map(|_| consumer(&server, "g848-grow")).collect();
    let before = wait_exact(&consumers, 2, &mut received);
    assert!(before.iter().all(|s| s.len() == 1));
    // KIP-848: the coordinator sees the new metadata image and computes a new target
    // assignment; the members get the new partitions at their next heartbeats.
    block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        client
            .create_partitions(&[(TOPIC, 6)], false)
            .await
            .expect("create partitions");
    });
    let after = wait_exact_all(&consumers, 6, &mut received);
    assert!(after.iter().all(|s| s.len() == 3), "{after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a.is_superset(b),
            "a member lost its partition: {before:?} -> {after:?}"
        );
    }
}

/// Like [`wait_exact`] but waits for the full partition count (metadata may lag).
fn wait_exact_all(
    consumers: &[BaseConsumer],
    partitions: i32,
    received: &mut BTreeMap<i32, u64>,
) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let got = wait_exact_or_partial(consumers, received);
        let union: BTreeSet<i32> = got.iter().flatten().copied().collect();
        if union.len() == partitions as usize && got.iter().all(|s| !s.is_empty()) {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "never reached {partitions} partitions: {got:?}"
        );
    }
}

fn wait_exact_or_partial(
    consumers: &[BaseConsumer],
    received: &mut BTreeMap<i32, u64>,
) -> Vec<BTreeSet<i32>> {
    for c in consumers {
        poll_into(c, received, Duration::from_millis(20));
    }
    exclusive_assignments(consumers)
}

#[test]
fn an_active_group_survives_a_coordinator_restart() {
    let mut server = server();
    server.create_topic(TOPIC, 4, &[]);
    let mut received = BTreeMap::new();
    let consumers: Vec<BaseConsumer> = (0..2).map(|_| consumer(&server, "g848-live")).collect();
    let before = wait_exact(&consumers, 4, &mut received);
    let epoch_before = block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        let d = client
            .consumer_group_describe("g848-live")
            .await
            .expect("describe");
        d.groups[0].group_epoch
    });
    // SIGKILL: the group comes back by replaying __consumer_offsets; the members keep their
    // ids and reconcile to an exact assignment again.
    server.kill9();
    server.restart();
    // Let the members heartbeat a few times (300 ms interval) against the new incarnation.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        for c in &consumers {
            poll_into(c, &mut received, Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (group, after) = loop {
        let after = wait_exact(&consumers, 4, &mut received);
        let d = block_on(async {
            let mut client = Client::connect_to(&server.bootstrap())
                .await
                .expect("client");
            client
                .consumer_group_describe("g848-live")
                .await
                .expect("describe")
        });
        let g = d.groups[0].clone();
        if g.error_code == 0 && g.members.len() == 2 && g.group_state.as_str() == "Stable" {
            break (g, after);
        }
        assert!(Instant::now() < deadline, "group never stable again: {g:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    // A replayed group continues from its epoch (bumped once: the reloaded coordinator
    // re-reads the topics' metadata); a group rebuilt from scratch would restart at 1.
    assert!(
        group.group_epoch > epoch_before,
        "group epoch {} after the restart, {epoch_before} before: not replayed",
        group.group_epoch
    );
    assert_eq!(after.iter().map(BTreeSet::len).sum::<usize>(), 4);
    assert_eq!(before.len(), after.len());
}
