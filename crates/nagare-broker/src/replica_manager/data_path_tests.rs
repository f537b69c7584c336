//! The replica manager's data path through its public doors: typed append outcomes
//! (`min.insync.replicas`, leadership, timeouts) and the delayed-fetch purgatory keyed by
//! partition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use nagare_metadata::records::ConfigResource;
use nagare_metadata::topic_config::TopicDefaults;
use nagare_metadata::{MetadataImage, PartitionRegistration, TopicImage, Uuid};
use nagare_storage::{LogConfig, LogManager};

use super::*;
use crate::testing::{encode_batch, plain_record};

const ME: i32 = 1;
const OTHER: i32 = 2;

struct Node {
    _dir: tempfile::TempDir,
    rm: Arc<ReplicaManager>,
}

/// One partition 0 per topic: (name, leader, leader epoch, replicas, isr, min.insync.replicas).
type TopicSpec<'a> = (&'a str, i32, i32, &'a [i32], &'a [i32], i32);

fn image(offset: i64, topics: &[TopicSpec<'_>]) -> MetadataImage {
    let mut img = MetadataImage::empty();
    img.offset = offset;
    for (i, (name, leader, epoch, replicas, isr, min_isr)) in topics.iter().enumerate() {
        let id = Uuid::from_u128(100 + i as u128);
        let reg = PartitionRegistration {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader: *leader,
            leader_epoch: *epoch,
            partition_epoch: offset as i32,
        };
        img.topics_by_id.insert(
            id,
            Arc::new(TopicImage {
                name: name.to_string(),
                id,
                partitions: BTreeMap::from([(0, reg)]),
            }),
        );
        img.topic_ids.insert(name.to_string(), id);
        img.configs.insert(
            (ConfigResource::Topic, name.to_string()),
            [("min.insync.replicas".to_string(), min_isr.to_string())].into(),
        );
    }
    img
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), 0)
            .expect("open logs");
        let rm = Arc::new(ReplicaManager::open(ME, logs));
        tokio::spawn(rm.clone().run_group_commit());
        Node { _dir: dir, rm }
    }

    fn apply(&self, img: &MetadataImage) {
        self.rm
            .apply_image(img, &TopicDefaults::from_broker(|_| None));
    }

    fn append(
        &self,
        origin: AppendOrigin,
        acks: RequiredAcks,
        topic: &str,
        timeout_ms: u64,
    ) -> PendingAppend {
        self.rm.append_records(
            origin,
            acks,
            Duration::from_millis(timeout_ms),
            vec![AppendEntry {
                topic: topic.to_string(),
                partition: 0,
                current_leader_epoch: -1,
                records: batch(3),
                verification: nagare_storage::TxnVerification::NotRequired,
            }],
        )
    }

    fn p(&self, topic: &str) -> Arc<Partition> {
        self.rm.partition(topic, 0).expect("hosted")
    }
}

fn batch(n: usize) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| plain_record(i, now_ms(), Bytes::from(format!("v{i}"))))
        .collect();
    encode_batch(&records)
}

/// The one result of a single-entry append.
async fn outcome(p: PendingAppend) -> PartitionAppend {
    p.complete().await.into_iter().next().expect("one result")
}

fn code(r: &PartitionAppend) -> i16 {
    r.error.as_ref().map(ReplicaError::code).unwrap_or(0)
}

/// Kafka's rules: a client's acks=all is refused before the append when the ISR is below
/// `min.insync.replicas`; acks=1 and the coordinator's writes are not.
#[tokio::test]
async fn acks_all_is_refused_below_min_isr_before_the_append() {
    let node = Node::new();
    node.apply(&image(1, &[("t", ME, 1, &[ME, OTHER], &[ME], 2)]));
    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::All, "t", 1000)).await;
    assert!(
        matches!(
            r.error,
            Some(ReplicaError::NotEnoughReplicas {
                isr: 1,
                min_isr: 2,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(code(&r), 19);
    assert!(r.appended.is_none());
    assert_eq!(node.p("t").log_end_offset(), 0, "appended anyway");

    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::Leader, "t", 1000)).await;
    assert_eq!(code(&r), 0);
    assert_eq!(r.appended.map(|a| a.base_offset), Some(0));
    // The coordinator appends as leader without the refusal, and its commit wait ignores
    // min.insync.replicas (the HW, the leader alone, passed it).
    let r = outcome(node.append(AppendOrigin::Coordinator, RequiredAcks::All, "t", 1000)).await;
    assert_eq!(code(&r), 0, "{r:?}");
    assert_eq!(r.appended.map(|a| a.base_offset), Some(3));
    let p = node.p("t");
    let wait = node
        .rm
        .wait_committed(&p, 6, 1, Duration::from_secs(1), AppendOrigin::Coordinator);
    assert_eq!(wait.await, ReplicationOutcome::Committed);
    // Replication is not an origin of leader appends.
    let r = outcome(node.append(AppendOrigin::Replication, RequiredAcks::Leader, "t", 0)).await;
    assert!(r.error.is_some());
}

/// Appends to partitions not led here, unknown ones, or with a stale epoch are refused
/// with typed errors and leave the log alone.
#[tokio::test]
async fn appends_need_the_leader() {
    let node = Node::new();
    node.apply(&image(1, &[("f", OTHER, 4, &[ME, OTHER], &[ME, OTHER], 1)]));
    for acks in [RequiredAcks::Leader, RequiredAcks::All] {
        let r = outcome(node.append(AppendOrigin::Client, acks, "f", 1000)).await;
        assert!(
            matches!(r.error, Some(ReplicaError::NotLeaderOrFollower)),
            "{r:?}"
        );
        assert_eq!(code(&r), 6);
    }
    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::Leader, "nope", 0)).await;
    assert_eq!(code(&r), 3);
    assert_eq!(node.p("f").log_end_offset(), 0);

    node.apply(&image(2, &[("f", ME, 5, &[ME, OTHER], &[ME, OTHER], 1)]));
    let stale = node.rm.append_records(
        AppendOrigin::Coordinator,
        RequiredAcks::Leader,
        Duration::ZERO,
        vec![AppendEntry {
            topic: "f".into(),
            partition: 0,
            current_leader_epoch: 4,
            records: batch(1),
            verification: nagare_storage::TxnVerification::NotRequired,
        }],
    );
    let r = outcome(stale).await;
    assert!(matches!(
        r.error,
        Some(ReplicaError::FencedLeaderEpoch {
            requested: 4,
            current: 5
        })
    ));
    assert_eq!(code(&r), 74);
}

/// acks=all waits for the ISR: REQUEST_TIMED_OUT when the follower does not fetch in time,
/// success once it does, NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below
/// `min.insync.replicas` meanwhile, NOT_LEADER_OR_FOLLOWER when leadership moved.
#[tokio::test]
async fn acks_all_outcomes_after_the_append() {
    let node = Node::new();
    node.apply(&image(1, &[("t", ME, 1, &[ME, OTHER], &[ME, OTHER], 2)]));
    let p = node.p("t");

    let started = Instant::now();
    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::All, "t", 200)).await;
    assert!(
        matches!(r.error, Some(ReplicaError::RequestTimedOut)),
        "{r:?}"
    );
    assert_eq!(code(&r), 7);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "timed out early"
    );
    assert_eq!(
        r.appended.map(|a| a.base_offset),
        Some(0),
        "it is in the leader's log"
    );

    let pending = node.append(AppendOrigin::Client, RequiredAcks::All, "t", 5000);
    assert!(pending.is_delayed());
    let waiting = tokio::spawn(outcome(pending));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "answered before the follower had it"
    );
    p.follower_fetch(OTHER, p.log_end_offset(), now_ms())
        .expect("follower fetch");
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(code(&r), 0, "{r:?}");
    assert_eq!(r.appended.map(|a| a.base_offset), Some(3));

    // The ISR shrinks to the leader alone while a write waits: the HW passes it, but the
    // ISR is below min.insync.replicas.
    let waiting = tokio::spawn(outcome(node.append(
        AppendOrigin::Client,
        RequiredAcks::All,
        "t",
        5000,
    )));
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.apply(&image(2, &[("t", ME, 1, &[ME, OTHER], &[ME], 2)]));
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .expect("task");
    assert!(
        matches!(r.error, Some(ReplicaError::NotEnoughReplicasAfterAppend)),
        "{r:?}"
    );
    assert_eq!(code(&r), 20);

    // Leadership moves while a write waits.
    node.apply(&image(3, &[("t", ME, 2, &[ME, OTHER], &[ME, OTHER], 1)]));
    let waiting = tokio::spawn(outcome(node.append(
        AppendOrigin::Client,
        RequiredAcks::All,
        "t",
        5000,
    )));
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.apply(&image(4, &[("t", OTHER, 3, &[ME, OTHER], &[ME, OTHER], 1)]));
    let r = tokio::time::timeout(Duration::from_secs(2), waiting)
        .await
        .expect("answered")
        .expect("task");
    assert!(
        matches!(r.error, Some(ReplicaError::NotLeaderOrFollower)),
        "{r:?}"
    );
    assert_eq!(code(&r), 6);
}

fn consumer_fetch(topic: &str, max_wait_ms: u64) -> FetchParams {
    FetchParams {
        replica_id: -1,
        max_wait: Duration::from_millis(max_wait_ms),
        min_bytes: 1,
        max_bytes: 1 << 20,
        isolation: IsolationLevel::ReadUncommitted,
        client_metadata: None,
        partitions: vec![FetchPartitionRequest {
            topic: topic.to_string(),
            partition: 0,
            fetch_offset: 0,
            max_bytes: 1 << 20,
            current_leader_epoch: -1,
            last_fetched_epoch: -1,
            durable_offset: None,
        }],
    }
}

/// The delayed-fetch purgatory is keyed by partition: appends to one partition do not wake
/// a fetch parked on another; an append to its own partition completes it at once; a
/// completed fetch leaves no registration behind.
#[tokio::test]
async fn a_produce_wakes_only_fetches_parked_on_its_partition() {
    let node = Node::new();
    node.apply(&image(
        1,
        &[("a", ME, 1, &[ME], &[ME], 1), ("b", ME, 1, &[ME], &[ME], 1)],
    ));
    let parked = {
        let rm = node.rm.clone();
        tokio::spawn(async move { rm.fetch(&consumer_fetch("a", 10_000)).await })
    };
    for _ in 0..200 {
        if node.p("a").fetch_watchers.len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(node.p("a").fetch_watchers.len(), 1, "never parked");
    for _ in 0..20 {
        let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::Leader, "b", 0)).await;
        assert_eq!(code(&r), 0);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!parked.is_finished());
    assert_eq!(
        node.rm.delayed_fetch_checks(),
        0,
        "woken by another partition"
    );

    let started = Instant::now();
    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::Leader, "a", 0)).await;
    assert_eq!(code(&r), 0);
    let results = tokio::time::timeout(Duration::from_secs(2), parked)
        .await
        .expect("woken")
        .expect("task");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(results.len(), 1);
    assert!(results[0].error.is_none(), "{:?}", results[0].error);
    assert!(
        results[0].records.as_ref().is_some_and(|s| s.len > 0),
        "no records"
    );
    assert_eq!(results[0].high_watermark, 3);
    assert!(node.rm.delayed_fetch_checks() >= 1);
    assert_eq!(
        node.p("a").fetch_watchers.len(),
        0,
        "registration left behind"
    );

    // A fetch that times out unregisters too, and reports what it has.
    let started = Instant::now();
    let mut params = consumer_fetch("b", 100);
    params.partitions[0].fetch_offset = 60;
    let results = node.rm.fetch(&params).await;
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(results[0].records.is_none() && results[0].error.is_none());
    assert_eq!(node.p("b").fetch_watchers.len(), 0);
    // Errors answer at once.
    let results = node.rm.fetch(&consumer_fetch("nope", 10_000)).await;
    assert_eq!(results[0].error.as_ref().map(ReplicaError::code), Some(3));
}

/// `n` records of producer `pid` (epoch 0) in one transactional batch from sequence `seq`.
fn txn_batch(pid: i64, seq: i32, n: usize) -> BytesMut {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq + i as i32,
            timestamp: now_ms(),
            key: None,
            value: Some(Bytes::from(format!("t{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf
}

/// The transaction coordinator's marker for producer `pid` (epoch 0, coordinator epoch 0),
/// built by the broker's own builder (the one WriteTxnMarkers uses).
fn marker(pid: i64, commit: bool) -> BytesMut {
    let m = nagare_protocol::batch_builder::build_control_batch(pid, 0, 0, commit, 0, now_ms())
        .expect("marker");
    BytesMut::from(&m[..])
}

impl Node {
    /// Appends `records` to partition 0 of `topic` with `origin`, acks=1; panics on refusal.
    fn append_bytes(&self, origin: AppendOrigin, topic: &str, records: BytesMut) {
        let results = self
            .rm
            .append_records(
                origin,
                RequiredAcks::Leader,
                Duration::from_secs(1),
                vec![AppendEntry {
                    topic: topic.to_string(),
                    partition: 0,
                    current_leader_epoch: -1,
                    records,
                    verification: nagare_storage::TxnVerification::NotRequired,
                }],
            )
            .into_results();
        assert!(results[0].error.is_none(), "{:?}", results[0].error);
    }

    /// Spawns a read_committed consumer fetch of `topic` from 0 and waits until it parked.
    async fn park_read_committed(
        &self,
        topic: &str,
    ) -> tokio::task::JoinHandle<Vec<FetchPartitionResult>> {
        let mut params = consumer_fetch(topic, 10_000);
        params.isolation = IsolationLevel::ReadCommitted;
        let rm = self.rm.clone();
        let parked = tokio::spawn(async move { rm.fetch(&params).await });
        for _ in 0..200 {
            if self.p(topic).fetch_watchers.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(self.p(topic).fetch_watchers.len(), 1, "never parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!parked.is_finished(), "answered with an open transaction");
        parked
    }
}

/// A read_committed fetch parked behind an open transaction is woken by the transaction's
/// marker (the LSO moves with it on a single-replica partition) and gets the records, the
/// marker included; an abort is listed in `aborted_transactions`.
#[tokio::test]
async fn a_read_committed_fetch_wakes_on_the_marker() {
    let node = Node::new();
    node.apply(&image(
        1,
        &[("c", ME, 1, &[ME], &[ME], 1), ("a", ME, 1, &[ME], &[ME], 1)],
    ));
    for (topic, commit) in [("c", true), ("a", false)] {
        node.append_bytes(AppendOrigin::Client, topic, txn_batch(7, 0, 3));
        assert_eq!(node.p(topic).high_watermark(), 3);
        assert_eq!(node.p(topic).last_stable_offset(), 0);
        let parked = node.park_read_committed(topic).await;
        node.append_bytes(AppendOrigin::Coordinator, topic, marker(7, commit));
        let results = tokio::time::timeout(Duration::from_secs(2), parked)
            .await
            .expect("woken by the marker")
            .expect("task");
        let r = &results[0];
        assert!(r.error.is_none(), "{:?}", r.error);
        assert_eq!((r.high_watermark, r.last_stable_offset), (4, 4), "{topic}");
        assert!(r.records.as_ref().is_some_and(|s| s.len > 0));
        let aborted = if commit {
            vec![]
        } else {
            vec![AbortedTransaction {
                producer_id: 7,
                first_offset: 0,
            }]
        };
        assert_eq!(r.aborted_transactions, Some(aborted), "{topic}");
        assert_eq!(node.p(topic).fetch_watchers.len(), 0);
    }
    // read_uncommitted is never told about aborted transactions (Kafka sends null).
    let results = node.rm.fetch(&consumer_fetch("a", 0)).await;
    assert_eq!(results[0].aborted_transactions, None);
    assert_eq!(results[0].last_stable_offset, 4);
}

/// On a replicated partition the marker alone does not make the transaction readable: the
/// high watermark must pass it, and that move (a follower's fetch) wakes the parked
/// read_committed fetch. The follower itself reads to the log end, LSO or not.
#[tokio::test]
async fn a_read_committed_fetch_wakes_when_the_high_watermark_passes_the_marker() {
    let node = Node::new();
    node.apply(&image(1, &[("r", ME, 1, &[ME, OTHER], &[ME, OTHER], 1)]));
    node.append_bytes(AppendOrigin::Client, "r", txn_batch(7, 0, 3));
    node.append_bytes(AppendOrigin::Coordinator, "r", marker(7, true));
    assert_eq!(
        node.p("r").high_watermark(),
        0,
        "the follower has nothing yet"
    );
    let parked = node.park_read_committed("r").await;
    let follower = |offset: i64| FetchParams {
        replica_id: OTHER,
        min_bytes: 0,
        max_wait: Duration::ZERO,
        partitions: vec![FetchPartitionRequest {
            fetch_offset: offset,
            ..consumer_fetch("r", 0).partitions[0].clone()
        }],
        ..consumer_fetch("r", 0)
    };
    // The follower reads the open transaction's records and the marker: to the log end.
    let f = node.rm.fetch(&follower(0)).await;
    assert!(f[0].error.is_none(), "{:?}", f[0].error);
    assert!(f[0].records.as_ref().is_some_and(|s| s.len > 0));
    assert_eq!(f[0].aborted_transactions, None);
    assert!(!parked.is_finished());
    // Its next fetch, at the log end, moves the high watermark past the marker.
    let f = node.rm.fetch(&follower(4)).await;
    assert_eq!(f[0].high_watermark, 4);
    let results = tokio::time::timeout(Duration::from_secs(2), parked)
        .await
        .expect("woken by the high watermark")
        .expect("task");
    assert_eq!(
        (results[0].high_watermark, results[0].last_stable_offset),
        (4, 4)
    );
    assert!(results[0].records.as_ref().is_some_and(|s| s.len > 0));
    assert_eq!(results[0].aborted_transactions, Some(vec![]));
}

/// DescribeProducers reads any replica's producer states (Kafka's `activeProducerState`):
/// a follower has them from the batches it copied, open transaction included; a partition
/// not hosted here is UNKNOWN_TOPIC_OR_PARTITION at this level.
#[tokio::test]
async fn active_producers_on_leader_and_follower() {
    let node = Node::new();
    node.apply(&image(
        1,
        &[
            ("l", ME, 1, &[ME], &[ME], 1),
            ("f", OTHER, 1, &[OTHER, ME], &[OTHER, ME], 1),
        ],
    ));
    node.append_bytes(AppendOrigin::Client, "l", txn_batch(7, 0, 3));
    // A follower keeps the leader's offsets and epoch.
    let copied = as_replicated(txn_batch(8, 0, 2), 0);
    let durable = node
        .rm
        .append_as_follower(&node.p("f"), copied)
        .expect("follower append");
    durable.await.expect("durable");
    for (topic, pid, last_seq) in [("l", 7, 2), ("f", 8, 1)] {
        let states = node.rm.active_producers(topic, 0).expect("hosted");
        assert_eq!(states.len(), 1, "{topic}");
        let s = &states[0];
        assert_eq!(
            (
                s.producer_id,
                s.producer_epoch,
                s.last_seq(),
                s.current_txn_first_offset
            ),
            (pid, 0, last_seq, 0),
            "{topic}"
        );
    }
    assert_eq!(
        node.rm
            .active_producers("nope", 0)
            .map_err(|e| e.code())
            .err(),
        Some(3)
    );
}

/// As leader patches them: base offset, leader epoch 1, CRC.
fn as_replicated(mut b: BytesMut, base: i64) -> BytesMut {
    nagare_protocol::record_batch::set_base_offset(&mut b, base).expect("offset");
    nagare_protocol::record_batch::set_partition_leader_epoch(&mut b, 1).expect("epoch");
    nagare_protocol::record_batch::update_crc(&mut b).expect("crc");
    b
}

/// KIP-392 under transactions: a read_committed consumer reading from a follower stops at
/// the follower's own last stable offset (its replicated producer state and its high
/// watermark), and gets the aborted transactions from the follower's index once the
/// replicated ABORT marker is below the high watermark the leader sent.
#[tokio::test]
async fn read_committed_from_a_follower() {
    let node = Node::new();
    node.apply(&image(1, &[("f", OTHER, 1, &[OTHER, ME], &[OTHER, ME], 1)]));
    let p = node.p("f");
    node.rm
        .append_as_follower(&p, as_replicated(txn_batch(7, 0, 3), 0))
        .expect("data")
        .await
        .expect("durable");
    p.set_follower_hw(3);
    let mut params = consumer_fetch("f", 0);
    params.isolation = IsolationLevel::ReadCommitted;
    params.client_metadata = Some(ClientMetadata {
        rack_id: String::new(),
        rack_of: None,
    });
    let r = &node.rm.fetch(&params).await[0];
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!((r.high_watermark, r.last_stable_offset), (3, 0));
    assert!(r.records.is_none(), "nothing below the follower's LSO");

    let abort = marker(7, false);
    node.rm
        .append_as_follower(&p, as_replicated(abort, 3))
        .expect("marker")
        .await
        .expect("durable");
    p.set_follower_hw(4);
    let r = &node.rm.fetch(&params).await[0];
    assert!(r.error.is_none(), "{:?}", r.error);
    assert_eq!((r.high_watermark, r.last_stable_offset), (4, 4));
    assert!(r.records.as_ref().is_some_and(|s| s.len > 0));
    assert_eq!(
        r.aborted_transactions,
        Some(vec![AbortedTransaction {
            producer_id: 7,
            first_offset: 0,
        }])
    );
}

/// The group commit fsyncs each log on its own: an `acks=all` write to one partition is not
/// held up by a slow fsync of another (it used to wait for the whole round, one log after the
/// other, which bounded RF=3 throughput: a follower's fetch round took the sum of the fsyncs
/// of every partition on the broker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fsync_of_one_log_does_not_hold_up_another() {
    use nagare_storage::io::{self, FaultKind, FaultOp, FaultPlan, FaultyIo};
    let node = Node::new();
    node.apply(&image(
        1,
        &[("a", ME, 1, &[ME], &[ME], 1), ("b", ME, 1, &[ME], &[ME], 1)],
    ));
    // First writes (leader-epoch checkpoints and the like) before any fault is queued.
    for t in ["a", "b"] {
        let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::All, t, 5000)).await;
        assert!(r.error.is_none(), "{r:?}");
    }
    let faults = Arc::new(FaultyIo::new(FaultPlan::quiet(17)));
    let _guard = io::install(node._dir.path(), faults.clone());
    faults.fail_next(FaultOp::Fsync, FaultKind::SlowFsync(2000));
    let slow = node.append(AppendOrigin::Client, RequiredAcks::All, "a", 10_000);
    let slow = tokio::spawn(outcome(slow));
    // Let the flush of `a` start and take the slow fsync.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = outcome(node.append(AppendOrigin::Client, RequiredAcks::All, "b", 10_000)).await;
    let waited = started.elapsed();
    assert!(r.error.is_none(), "{r:?}");
    assert!(
        waited < Duration::from_millis(1000),
        "acks=all on b waited {waited:?} for the slow fsync of a"
    );
    let r = slow.await.expect("join");
    assert!(r.error.is_none(), "{r:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the fault did not slow a's fsync: the test proves nothing"
    );
}

/// A pipelined follower (issue 17) reads from its fetch offset but reports its fsynced end
/// apart: the high watermark, and so `acks=all`, counts only the durable end.
#[tokio::test]
async fn the_high_watermark_counts_a_followers_durable_offset_not_its_fetch_offset() {
    let node = Node::new();
    node.apply(&image(1, &[("d", ME, 1, &[ME, OTHER], &[ME, OTHER], 1)]));
    let pending = node.append(AppendOrigin::Client, RequiredAcks::Leader, "d", 1000);
    let r = outcome(pending).await;
    assert!(r.error.is_none(), "{r:?}");
    let follower = |fetch_offset: i64, durable: Option<i64>| FetchParams {
        replica_id: OTHER,
        min_bytes: 0,
        max_wait: Duration::ZERO,
        partitions: vec![FetchPartitionRequest {
            fetch_offset,
            durable_offset: durable,
            ..consumer_fetch("d", 0).partitions[0].clone()
        }],
        ..consumer_fetch("d", 0)
    };
    // Fetched all three records, none of them fsynced yet: the high watermark stays.
    let f = node.rm.fetch(&follower(3, Some(0))).await;
    assert!(f[0].error.is_none(), "{:?}", f[0].error);
    assert_eq!(f[0].high_watermark, 0);
    // Two of them durable.
    let f = node.rm.fetch(&follower(3, Some(2))).await;
    assert_eq!(f[0].high_watermark, 2);
    // A durable offset past the fetch offset counts only up to the fetch offset.
    let f = node.rm.fetch(&follower(2, Some(3))).await;
    assert_eq!(f[0].high_watermark, 2);
    // Without the field (a Kafka follower, or Fetch below v12) the fetch offset counts.
    let f = node.rm.fetch(&follower(3, None)).await;
    assert_eq!(f[0].high_watermark, 3);
}
