//! Group coordinator failover with real processes (issue 5): 3 controllers and 3 brokers,
//! `__consumer_offsets` auto-created with `offsets.topic.replication.factor=3`,
//! `offsets.topic.num.partitions=10` and `min.insync.replicas=2`.
//!
//! For a librdkafka group with the classic protocol, and then one with KIP-848's `consumer`
//! protocol:
//!
//! - the members consume and commit synchronously (every acknowledged commit is recorded);
//! - the coordinator broker (FindCoordinator) is killed with SIGKILL;
//! - the new coordinator (the new leader of the group's `__consumer_offsets` partition) loads
//!   the shard and answers OffsetFetch with exactly the offsets acknowledged before the kill;
//! - the members find it, commit again, a new member joins (a rebalance on the new
//!   coordinator) and every record — including ones produced after the kill — is consumed, none
//!   skipped, and the final committed offsets are the partitions' ends;
//! - the old broker restarts and rejoins the ISR of every offsets partition (it follows);
//! - the current coordinator is killed too: the next one (in practice the restarted broker)
//!   has every committed offset and the members commit on it.
//!
//! Last, two of the three brokers are killed: the survivor alone is the ISR of every offsets
//! partition (below `min.insync.replicas`), and offset commits still succeed (Kafka 4's
//! coordinator writes with acks=1 and waits for the high watermark).
//!
//! Every wait is bounded, so a hang fails the test with a message naming what it waited on
//! instead of stalling CI: librdkafka's synchronous commit (`rd_kafka_commit` has no timeout of
//! its own) and the consumers' close run on helper threads with a deadline, the test's own
//! client calls run under a timeout, and the members' thread is joined with one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::sorted;
use nagare_client::{Client, OffsetSpec, PartitionMetadata};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const READY: Duration = Duration::from_secs(60);
const OFFSETS_TOPIC: &str = "__consumer_offsets";
const OFFSETS_PARTITIONS: usize = 10;
const PARTITIONS: i32 = 6;
const BROKERS: [i32; 3] = [101, 102, 103];
/// The longest one synchronous commit may take. `rd_kafka_commit` waits for its result without
/// a timeout: a commit parked on a coordinator that never answers would block forever (the
/// clean-clone CI run once sat 13 minutes after a coordinator kill, most likely in one).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest one of the test's own client calls (FindCoordinator, Metadata, OffsetFetch,
/// ListOffsets, OffsetCommit, with the client's retries) may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest the members' thread may take to stop, and the consumers to close (LeaveGroup;
/// rust-rdkafka's drop polls until librdkafka says the consumer is closed, without a limit).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

fn eventually<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    replication::eventually_every(timeout, Duration::from_millis(100), what, f)
}

/// Runs one of the test's client calls to completion, failing the test with `what` if it
/// takes longer than [`CLIENT_TIMEOUT`].
fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    // The timer is made inside the runtime `block_on` starts.
    match block_on(async { tokio::time::timeout(CLIENT_TIMEOUT, f).await }) {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {CLIENT_TIMEOUT:?}"),
    }
}

/// A client call whose failure the caller retries: `None` on an error or after
/// [`CLIENT_TIMEOUT`].
fn attempt<T>(what: &str, f: impl Future<Output = Option<T>>) -> Option<T> {
    match block_on(async { tokio::time::timeout(CLIENT_TIMEOUT, f).await }) {
        Ok(v) => v,
        Err(_) => {
            eprintln!("{what}: no answer within {CLIENT_TIMEOUT:?}; retrying");
            None
        }
    }
}

/// The coordinator of `group` as FindCoordinator answers it.
fn coordinator(bootstrap: &str, group: &str) -> Option<i32> {
    attempt("FindCoordinator", async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        c.find_coordinator(group).await.ok()
    })
}

/// The partitions of `__consumer_offsets`.
fn offsets_partitions(bootstrap: &str) -> Option<Vec<PartitionMetadata>> {
    attempt("Metadata of the offsets topic", async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let t = c.topic_metadata(OFFSETS_TOPIC).await.ok()?;
        Some(t.partitions.clone())
    })
}

/// The committed offsets of `group` on `topic`, by partition (retried by the client on
/// coordinator errors).
fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<BTreeMap<i32, i64>> {
    attempt("OffsetFetch", async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let m = c.fetch_committed(group, Some(&[topic])).await.ok()?;
        Some(m.into_iter().map(|((_, p), o)| (p, o)).collect())
    })
}

/// Produces `values` round-robin over the partitions with acks=all; panics on a failure
/// (each delivery is bounded by the producer's `message.timeout.ms`, the whole by a minute
/// more).
fn produce_all(p: &FutureProducer, topic: &str, values: &[String]) {
    let limit = Duration::from_secs(120);
    let all = async {
        let futs: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.clone();
                async move {
                    let r = p
                        .send(
                            FutureRecord::to(topic)
                                .partition(i as i32 % PARTITIONS)
                                .payload(&v)
                                .key(&v),
                            Duration::from_secs(0),
                        )
                        .await;
                    (v, r)
                }
            })
            .collect();
        for f in futs {
            let (v, r) = f.await;
            if let Err((e, _)) = r {
                panic!("acks=all produce of {v} failed: {e}");
            }
        }
    };
    if block_on(async { tokio::time::timeout(limit, all).await }).is_err() {
        panic!(
            "producing {} records to {topic}: not all delivered within {limit:?}",
            values.len()
        );
    }
}

fn consumer(bootstrap: &str, group: &str, topic: &str, protocol: &str) -> Arc<BaseConsumer> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("retry.backoff.ms", "100");
    if protocol == "consumer" {
        cfg.set("group.protocol", "consumer");
    } else {
        cfg.set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
    }
    let c: BaseConsumer = cfg.create().expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    Arc::new(c)
}

/// What the members are doing, and since when: named in the failure when a wait on them
/// times out.
#[derive(Clone)]
struct Activity(Arc<Mutex<(String, Instant)>>);

impl Activity {
    fn new() -> Self {
        Activity(Arc::new(Mutex::new(("nothing yet".into(), Instant::now()))))
    }
    fn set(&self, what: String) {
        if let Ok(mut a) = self.0.lock() {
            *a = (what, Instant::now());
        }
    }
    fn describe(&self) -> String {
        match self.0.lock() {
            Ok(a) => format!("{} (for {} ms)", a.0, a.1.elapsed().as_millis()),
            Err(_) => "unknown".into(),
        }
    }
}

/// `c.commit(tpl, Sync)` on a helper thread, failing the test if it has not returned within
/// [`COMMIT_TIMEOUT`] (the helper is left behind, blocked in librdkafka). The caller waits
/// exactly as for the commit itself: it does not poll meanwhile.
fn commit_sync(c: &Arc<BaseConsumer>, tpl: TopicPartitionList, what: &str) -> KafkaResult<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let c = c.clone();
    std::thread::spawn(move || {
        let _ = tx.send(c.commit(&tpl, CommitMode::Sync));
    });
    match rx.recv_timeout(COMMIT_TIMEOUT) {
        Ok(result) => result,
        Err(_) => panic!(
            "{what}: the synchronous commit did not return within {COMMIT_TIMEOUT:?} \
             (librdkafka's rd_kafka_commit has no timeout; see the brokers' OffsetCommit \
             handling and the coordinator's state in their logs)"
        ),
    }
}

/// The members and what the test knows about the group.
struct Group {
    consumers: Vec<Arc<BaseConsumer>>,
    /// What the members are doing (for a timeout's message).
    activity: Activity,
    /// Every value consumed (at least once).
    seen: BTreeSet<String>,
    /// The last acknowledged commit per partition.
    acked: BTreeMap<i32, i64>,
    /// Every offset a commit was sent for, per partition.
    attempted: BTreeMap<i32, BTreeSet<i64>>,
    commits_ok: usize,
    commits_failed: usize,
    /// Total time spent in acknowledged synchronous commits.
    commit_time: Duration,
}

impl Group {
    /// One round: every member polls for up to `budget` messages, and commits its position
    /// synchronously if `commit`. Returns whether any commit was acknowledged.
    fn round(&mut self, commit: bool, budget: usize) -> bool {
        let mut acked_any = false;
        for (i, c) in self.consumers.iter().enumerate() {
            self.activity.set(format!("member {i} polling"));
            let mut got = 0;
            while got < budget {
                match c.poll(Duration::from_millis(if got == 0 { 100 } else { 0 })) {
                    Some(Ok(m)) => {
                        self.seen.insert(
                            String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                        );
                        got += 1;
                    }
                    Some(Err(e)) => {
                        eprintln!("consumer error (librdkafka retries): {e}");
                        break;
                    }
                    None => break,
                }
            }
            if !commit {
                continue;
            }
            let Ok(pos) = c.position() else { continue };
            let mut tpl = TopicPartitionList::new();
            let mut offsets = Vec::new();
            for e in pos.elements() {
                if let Offset::Offset(o) = e.offset() {
                    tpl.add_partition_offset(e.topic(), e.partition(), Offset::Offset(o))
                        .expect("tpl");
                    offsets.push((e.partition(), o));
                }
            }
            if offsets.is_empty() {
                continue;
            }
            for (p, o) in &offsets {
                self.attempted.entry(*p).or_default().insert(*o);
            }
            let what = format!("member {i} committing {offsets:?} synchronously");
            self.activity.set(what.clone());
            let started = Instant::now();
            match commit_sync(c, tpl, &what) {
                Ok(()) => {
                    self.commit_time += started.elapsed();
                    for (p, o) in offsets {
                        self.acked.insert(p, o);
                    }
                    self.commits_ok += 1;
                    acked_any = true;
                }
                Err(e) => {
                    self.commits_failed += 1;
                    eprintln!("commit failed: {e}");
                }
            }
        }
        acked_any
    }

    /// Each member's partitions.
    fn assignments(&self) -> Vec<BTreeSet<i32>> {
        self.consumers
            .iter()
            .map(|c| {
                c.assignment()
                    .map(|a| a.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default()
            })
            .collect()
    }
}

impl Drop for Group {
    /// Closes the consumers on a helper thread, failing the test (unless it is failing
    /// already) if that has not finished within [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        let consumers = std::mem::take(&mut self.consumers);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(consumers);
            let _ = tx.send(());
        });
        if rx.recv_timeout(STOP_TIMEOUT).is_err() {
            let msg =
                format!("closing the group's consumers did not finish within {STOP_TIMEOUT:?}");
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// Joins the members' thread within [`STOP_TIMEOUT`]; a panic there (a commit that timed
/// out) is raised here with its own message.
fn join_members(members: std::thread::JoinHandle<Group>, activity: &Activity) -> Group {
    let deadline = Instant::now() + STOP_TIMEOUT;
    while !members.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the members' thread did not stop within {STOP_TIMEOUT:?}: {}",
            activity.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    match members.join() {
        Ok(g) => g,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// One failover round for `protocol` ("classic" or "consumer") on `topic` with `group`.
fn failover(cluster: &mut TestCluster, protocol: &str, topic: &str, group: &str) {
    let all = cluster.bootstrap();
    replication::create_topic(&all, topic, PARTITIONS, 3, &[]);
    let prod = replication::idempotent_producer(&all);
    let mut expected: BTreeSet<String> = BTreeSet::new();
    let first = values(&format!("{protocol}-a"), 6000);
    produce_all(&prod, topic, &first);
    expected.extend(first);

    let mut g = Group {
        consumers: (0..2)
            .map(|_| consumer(&all, group, topic, protocol))
            .collect(),
        activity: Activity::new(),
        seen: BTreeSet::new(),
        acked: BTreeMap::new(),
        attempted: BTreeMap::new(),
        commits_ok: 0,
        commits_failed: 0,
        commit_time: Duration::ZERO,
    };
    // Consume and commit a quarter, with every partition committed at least once.
    let deadline = Instant::now() + Duration::from_secs(90);
    while g.seen.len() < 1500 || g.acked.len() < PARTITIONS as usize {
        assert!(
            Instant::now() < deadline,
            "group never got going: {} consumed, commits {:?}",
            g.seen.len(),
            g.acked
        );
        g.round(true, 10);
    }

    // The coordinator, and its offsets partition fully in sync.
    let coord = eventually(Duration::from_secs(20), "the coordinator", || {
        coordinator(&all, group)
    });
    assert!(BROKERS.contains(&coord), "coordinator {coord}");
    let offsets_partition = eventually(
        Duration::from_secs(30),
        "the group's offsets partition with a full ISR",
        || {
            offsets_partitions(&all)?
                .into_iter()
                .find(|p| p.leader == coord && p.isr.len() == 3)
        },
    );
    let _ = offsets_partition;
    eprintln!(
        "[{protocol}] coordinator {coord}; {} consumed, {} commits acknowledged ({} failed) so far, {:.1} ms per synchronous commit (RF=3, min.insync.replicas=2)",
        g.seen.len(),
        g.commits_ok,
        g.commits_failed,
        g.commit_time.as_secs_f64() * 1000.0 / g.commits_ok.max(1) as f64
    );

    // The members go on consuming and committing on their own thread, and the coordinator is
    // SIGKILLed in the middle of that (a commit may be in flight). Right after the kill they
    // stop committing (but go on polling: heartbeats, fetches) until the test has read the
    // committed offsets from the new coordinator.
    let stop = Arc::new(AtomicBool::new(false));
    let commit = Arc::new(AtomicBool::new(true));
    let rounds = Arc::new(AtomicU64::new(0));
    let activity = g.activity.clone();
    let members = {
        let (stop, commit, rounds) = (stop.clone(), commit.clone(), rounds.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                // Small rounds: commits keep coming while the coordinator dies.
                g.round(commit.load(Ordering::Acquire), 5);
                rounds.fetch_add(1, Ordering::AcqRel);
            }
            g
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    cluster.node(coord).kill9();
    let t0 = Instant::now();
    commit.store(false, Ordering::Release);
    let r = rounds.load(Ordering::Acquire);
    let survivors = BROKERS
        .iter()
        .filter(|b| **b != coord)
        .map(|b| cluster.node(*b).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let new_coord = loop {
        if members.is_finished() {
            // It failed (a commit that never returned): say so rather than wait on.
            join_members(members, &activity);
            unreachable!("the members' thread stopped before it was told to");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "no coordinator answered OffsetFetch after the kill"
        );
        if let Some(new) = coordinator(&survivors, group).filter(|c| *c != coord) {
            if committed(&survivors, group, topic).is_some() {
                break new;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let failover_ms = t0.elapsed().as_millis();
    // Let the round that was running at the kill (and its commit) finish, then read what the
    // new coordinator has.
    while rounds.load(Ordering::Acquire) < r + 2 {
        if members.is_finished() {
            join_members(members, &activity);
            unreachable!("the members' thread stopped before it was told to");
        }
        assert!(
            t0.elapsed() < Duration::from_secs(90),
            "the members' thread is stuck: {}",
            activity.describe()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = eventually(Duration::from_secs(30), "committed offsets", || {
        committed(&survivors, group, topic)
    });
    stop.store(true, Ordering::Release);
    let mut g = join_members(members, &activity);
    eprintln!(
        "[{protocol}] new coordinator {new_coord} answered OffsetFetch {failover_ms} ms after the SIGKILL: {after:?}; acknowledged {:?}",
        g.acked
    );
    // Every acknowledged commit is there; a later value is allowed only if it was sent (a
    // commit that reached the ISR but whose answer was lost with the coordinator).
    for (p, o) in &g.acked {
        let c = after.get(p).copied();
        let ok = c == Some(*o)
            || c.is_some_and(|c| c > *o && g.attempted.get(p).is_some_and(|a| a.contains(&c)));
        assert!(
            ok,
            "partition {p}: committed {c:?} after the failover, acknowledged {o} before it (sent: {:?})",
            g.attempted.get(p)
        );
    }

    // The members find the new coordinator and commit again.
    let t1 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !g.round(true, 20) {
        assert!(
            Instant::now() < deadline,
            "the group never committed on the new coordinator"
        );
    }
    eprintln!(
        "[{protocol}] first commit acknowledged by the new coordinator {} ms after resuming ({} ms after the SIGKILL)",
        t1.elapsed().as_millis(),
        t0.elapsed().as_millis()
    );

    // More records while the old coordinator is down, and a new member: a rebalance on the
    // new coordinator.
    let prod2 = replication::idempotent_producer(&survivors);
    let second = values(&format!("{protocol}-b"), 1000);
    produce_all(&prod2, topic, &second);
    expected.extend(second);
    g.consumers
        .push(consumer(&survivors, group, topic, protocol));
    let t2 = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        g.round(true, 50);
        let owned = g.assignments();
        let total: usize = owned.iter().map(|s| s.len()).sum();
        let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
        let exact = total == PARTITIONS as usize
            && union.len() == PARTITIONS as usize
            && owned.iter().all(|s| !s.is_empty());
        if exact && expected.is_subset(&g.seen) {
            eprintln!(
                "[{protocol}] 3 members own {owned:?}; everything consumed {} ms after the new member joined",
                t2.elapsed().as_millis()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the failover: {} of {} records consumed, ownership {owned:?}; missing e.g. {:?}",
            expected.intersection(&g.seen).count(),
            expected.len(),
            expected.difference(&g.seen).take(5).collect::<Vec<_>>()
        );
    }
    // The last commits: every partition at its end.
    let ends: BTreeMap<i32, i64> = within("ListOffsets of every partition", async {
        let mut c = Client::connect_to(&survivors).await.expect("connect");
        let mut out = BTreeMap::new();
        for p in 0..PARTITIONS {
            let high = c
                .list_offsets(topic, p, OffsetSpec::Latest)
                .await
                .expect("list offsets");
            out.insert(p, high);
        }
        out
    });
    eventually(
        Duration::from_secs(60),
        "commits at the partition ends",
        || {
            g.round(true, 50);
            let c = committed(&survivors, group, topic)?;
            (c == ends).then_some(())
        },
    );

    // The old coordinator comes back and follows: it rejoins the ISR of every offsets
    // partition, including the group's.
    cluster.node(coord).start();
    cluster.node(coord).wait_ready(READY);
    let all = cluster.bootstrap();
    let t3 = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the restarted broker back in the ISR of every offsets partition",
        || {
            let parts = offsets_partitions(&all)?;
            parts
                .iter()
                .all(|p| sorted(p.isr.clone()) == sorted(p.replicas.clone()))
                .then_some(())
        },
    );
    eprintln!(
        "[{protocol}] broker {coord} back in every offsets ISR {} ms after its restart",
        t3.elapsed().as_millis()
    );
    // The group still works and its coordinator is a leader that kept everything.
    let now_coord = eventually(Duration::from_secs(20), "the coordinator", || {
        coordinator(&all, group)
    });
    assert_eq!(
        committed(&all, group, topic).as_ref(),
        Some(&ends),
        "committed offsets after the old coordinator rejoined (coordinator {now_coord})"
    );

    // A second failover, now that the restarted broker is in the ISR again: the coordinator
    // dies once more; whichever broker takes over (possibly the restarted one) has every
    // committed offset, and the members commit on it.
    cluster.node(now_coord).kill9();
    let t4 = Instant::now();
    let rest = BROKERS
        .iter()
        .filter(|b| **b != now_coord)
        .map(|b| cluster.node(*b).bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let third = eventually(Duration::from_secs(60), "a third coordinator", || {
        coordinator(&rest, group).filter(|c| *c != now_coord)
    });
    assert_eq!(
        eventually(Duration::from_secs(60), "committed offsets", || committed(
            &rest, group, topic
        )),
        ends,
        "committed offsets after the second failover (coordinator {third})"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !g.round(true, 50) {
        assert!(
            Instant::now() < deadline,
            "the group never committed on the third coordinator"
        );
    }
    eprintln!(
        "[{protocol}] second failover {now_coord} -> {third} (the restarted broker: {}): offsets intact, group committing {} ms after the SIGKILL",
        third == coord,
        t4.elapsed().as_millis()
    );
    drop(g);
    cluster.node(now_coord).start();
    cluster.node(now_coord).wait_ready(READY);
    let all = cluster.bootstrap();
    eventually(
        Duration::from_secs(60),
        "every broker back in every offsets ISR",
        || {
            offsets_partitions(&all)?
                .iter()
                .all(|p| sorted(p.isr.clone()) == sorted(p.replicas.clone()))
                .then_some(())
        },
    );
}

#[test]
fn coordinator_fails_over_with_its_offsets_partition() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
            // The harness writes 1; the last value wins.
            "offsets.topic.replication.factor=3",
            "offsets.topic.num.partitions=10",
            "min.insync.replicas=2",
            "group.initial.rebalance.delay.ms=0",
            "group.consumer.heartbeat.interval.ms=300",
            "group.consumer.session.timeout.ms=10000",
        ],
    );
    // With two of the three brokers up, offsets.topic.replication.factor=3 cannot be met:
    // FindCoordinator answers COORDINATOR_NOT_AVAILABLE (15) and the topic is not created
    // (Kafka's rule), rather than created with fewer replicas.
    cluster.start_nodes(&[1, 2, 3, 101, 102], READY);
    let two = cluster.bootstrap();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let code = within("FindCoordinator with 2 of 3 brokers", async {
            let mut c = Client::connect_to(&two).await.expect("connect");
            c.find_coordinator("probe")
                .await
                .err()
                .and_then(|e| e.kafka_code())
        });
        assert_eq!(code, Some(15), "FindCoordinator with 2 of 3 brokers");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A Metadata request allowed to auto-create it (a producer's) does not create it
    // with the defaults of ordinary topics either.
    let p: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &two)
        .create()
        .expect("producer");
    let _ = p
        .client()
        .fetch_metadata(Some(OFFSETS_TOPIC), Duration::from_secs(5));
    assert!(
        offsets_partitions(&two).is_none_or(|p| p.is_empty()),
        "{OFFSETS_TOPIC} created with 2 live brokers"
    );
    cluster.start_nodes(&[103], READY);
    let all = cluster.bootstrap();
    let coord = eventually(Duration::from_secs(60), "a coordinator", || {
        coordinator(&all, "probe")
    });
    eprintln!("probe group coordinator: {coord}");
    let parts = offsets_partitions(&all).expect("offsets topic metadata");
    assert_eq!(
        parts.len(),
        OFFSETS_PARTITIONS,
        "offsets.topic.num.partitions"
    );
    for p in &parts {
        assert_eq!(
            p.replicas.len(),
            3,
            "offsets.topic.replication.factor: {p:?}"
        );
    }

    failover(&mut cluster, "classic", "failover-classic", "g-classic");
    failover(&mut cluster, "consumer", "failover-kip848", "g-kip848");
    commits_with_the_isr_below_min_insync(&mut cluster, "failover-classic");
}

/// Kafka 4's coordinator appends its records with acks=1 and answers once the high watermark
/// passes them (`CoordinatorPartitionWriter`): with two of three brokers down, the offsets
/// partitions' ISR is the survivor alone, below `min.insync.replicas=2`, and offset commits
/// still succeed (an `acks=all` produce would get NOT_ENOUGH_REPLICAS).
fn commits_with_the_isr_below_min_insync(cluster: &mut TestCluster, topic: &str) {
    let group = "g-lone";
    let all = cluster.bootstrap();
    let coord = eventually(Duration::from_secs(60), "a coordinator", || {
        coordinator(&all, group)
    });
    for b in BROKERS.iter().filter(|b| **b != coord) {
        cluster.node(*b).kill9();
    }
    let lone = cluster.node(coord).bootstrap();
    let isr_alone = || {
        offsets_partitions(&lone)?
            .iter()
            .all(|p| p.leader == coord && p.isr == vec![coord])
            .then_some(())
    };
    eventually(
        Duration::from_secs(60),
        "every offsets partition led by the survivor with itself alone in the ISR",
        isr_alone,
    );
    let offsets: Vec<(&str, i32, i64)> =
        (0..PARTITIONS).map(|p| (topic, p, 7 + p as i64)).collect();
    within("OffsetCommit to the lone survivor", async {
        let mut c = Client::connect_to(&lone).await.expect("connect");
        c.commit_offsets(group, &offsets)
            .await
            .expect("offset commit with the ISR (1) below min.insync.replicas (2)");
    });
    let want: BTreeMap<i32, i64> = offsets.iter().map(|(_, p, o)| (*p, *o)).collect();
    assert_eq!(committed(&lone, group, topic), Some(want));
    assert!(isr_alone().is_some(), "the ISR stayed the survivor alone");
    eprintln!("coordinator {coord}: offsets committed with the ISR at 1 of min.insync.replicas=2");
}
