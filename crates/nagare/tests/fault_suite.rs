//! Replication fault suite (issue 5): a real cluster of `nagare` processes on 127.0.0.1 whose
//! every connection, inter-node and client, crosses a fault-injecting proxy
//! (`common::fault_proxy`), an RF=3 topic with `min.insync.replicas=2`, idempotent `acks=all`
//! librdkafka producers (one per partition, see [`run_producer`]) writing unique values,
//! consumers reading all the while, and a seeded schedule of faults:
//!
//! - SIGKILL of a node, restart after a while;
//! - SIGSTOP, SIGCONT after a while (long enough, sometimes, for the node to be fenced);
//! - a cut link between two nodes, one direction (asymmetric) or both;
//! - a node cut off from every other node (and, every other time, from the clients too);
//! - the leader of a partition cut off that way (the split-brain case: with the clients still
//!   reaching it, producers keep talking to a leader that can no longer commit);
//! - the clients cut off from one broker.
//!
//! At the end every fault is healed, the producers are flushed, and the checker
//! ([`check_history`]) compares everything that was observed against the final log (read
//! once every partition has its full ISR again):
//!
//! - every acknowledged value is in the final log, at the (partition, offset) it was
//!   acknowledged with;
//! - no value appears twice, and every value in the log was sent by a producer;
//! - every consumer observation made during the run (value at (partition, offset)) equals the
//!   final log's value there: no offset ever held two different values, so all consumers agree
//!   with one total order per partition; a consumer never skipped an offset that is in the
//!   final log;
//! - each producer's acknowledged values of a partition are in the order it sent them;
//! - the replicas of each partition end byte-identical on disk.
//!
//! A second pair of tests SIGKILLs all brokers (3 controllers + 3 brokers), resp. all nodes
//! (3 combined nodes), at the same instant right after acknowledgements, restarts them and
//! reads everything back.
//!
//! [`failover`] times the failover after SIGKILL of a leader with Kafka's default timings
//! (first acknowledgement within 2 s: the controller fences on the closed heartbeat connection)
//! and checks that a broker stopped for less than the session is not fenced.
//! [`saturated_disk`] saturates the disk under the cluster and checks that no broker is
//! fenced and no leader changes (issue 17: no false fencing of a slow broker).
//!
//! `NAGARE_FAULT_SEED` (u64) replays a schedule; `NAGARE_FAULT_SECS` sets how long faults are
//! injected (default 60, the CI run); `NAGARE_FAULT_TOPOLOGY=combined` runs the schedule on 3
//! combined nodes instead of 3 controllers + 3 brokers; `NAGARE_FAULT_KILL_ROUNDS` sets the
//! rounds of the simultaneous-kill tests (default 3). The seed is printed first.

mod common;
#[path = "fault_suite/disk.rs"]
mod disk;
#[path = "fault_suite/failover.rs"]
mod failover;
#[path = "fault_suite/saturated_disk.rs"]
mod saturated_disk;
#[path = "fault_suite/txn.rs"]
mod txn;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::{ClusterLayout, TestCluster};
use common::fault_proxy::FaultNet;
use nagare_client::{Client, NewTopic, PartitionMetadata};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 3;
const READY: Duration = Duration::from_secs(90);

/// The nodes' settings: small timeouts, so faults are noticed (and healed) within seconds.
const NODE_PROPS: &[&str] = &[
    "broker.session.timeout.ms=3000",
    "broker.heartbeat.interval.ms=300",
    "replica.lag.time.max.ms=2000",
    "replica.fetch.backoff.ms=100",
    "replica.fetch.wait.max.ms=200",
    "unclean.leader.election.enable=false",
    "min.insync.replicas=2",
    "auto.create.topics.enable=false",
];

/// The tests share the machine's two cores with each other: one cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster behind the fault network.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topology {
    /// 3 controller-only nodes (1..3) and 3 broker-only nodes (101..103).
    Separate,
    /// 3 combined `broker,controller` nodes (1..3).
    Combined,
}

struct FaultCluster {
    // Dropped first: the nodes die before the proxies do.
    cluster: TestCluster,
    net: FaultNet,
    all: Vec<i32>,
    brokers: Vec<i32>,
    controllers: Vec<i32>,
    started: Instant,
}

impl FaultCluster {
    fn start(topology: Topology) -> FaultCluster {
        let net = FaultNet::new();
        let route = |id: i32, port: u16| net.route(id, port);
        let (controllers, brokers, combined) = match topology {
            Topology::Separate => (3, 3, 0),
            Topology::Combined => (0, 0, 3),
        };
        let mut cluster = TestCluster::with_layout(ClusterLayout {
            controllers,
            brokers,
            combined,
            extra: NODE_PROPS,
            client_address: Some(&route),
            controller_address: Some(&route),
        });
        cluster.start_all(READY);
        let all: Vec<i32> = cluster.nodes.iter().map(|n| n.id).collect();
        let brokers: Vec<i32> = cluster
            .nodes
            .iter()
            .filter(|n| n.is_broker())
            .map(|n| n.id)
            .collect();
        let controllers: Vec<i32> = cluster
            .nodes
            .iter()
            .filter(|n| n.is_controller())
            .map(|n| n.id)
            .collect();
        FaultCluster {
            cluster,
            net,
            all,
            brokers,
            controllers,
            started: Instant::now(),
        }
    }

    /// Bootstrap through the proxies (what the workload clients use).
    fn proxied_bootstrap(&mut self) -> String {
        let ids = self.brokers.clone();
        ids.iter()
            .map(|id| self.cluster.node(*id).adv_bootstrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Bootstrap straight to the running brokers' listeners (for the harness's own queries;
    /// metadata still names the proxy ports, which this client does not follow for metadata).
    fn direct_bootstrap(&mut self) -> String {
        self.cluster.bootstrap()
    }

    fn log(&self, what: &str) {
        eprintln!("[{:>7.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// Creates the topic and waits until every partition has a leader and its full ISR.
    fn create_topic(&mut self) {
        self.create_named_topic(TOPIC, PARTITIONS);
        self.wait_full_isr(Duration::from_secs(60));
    }

    /// Creates topic `name` (RF 3, `min.insync.replicas=2`).
    fn create_named_topic(&mut self, name: &str, partitions: i32) {
        let boot = self.direct_bootstrap();
        eventually(Duration::from_secs(60), "topic creation", || {
            block_on(async {
                let mut c = Client::connect_to(&boot).await.ok()?;
                let created = c
                    .create_topics(
                        &[NewTopic {
                            name: name.into(),
                            partitions: Some(partitions),
                            replication_factor: Some(3),
                            configs: vec![("min.insync.replicas".into(), "2".into())],
                        }],
                        false,
                    )
                    .await
                    .is_ok();
                // A retried CreateTopics may answer TOPIC_ALREADY_EXISTS for our own topic.
                (created || c.topic_metadata(name).await.is_ok()).then_some(())
            })
        });
    }

    /// Metadata of every partition, asked straight from the brokers (bypassing the proxies).
    fn partitions(&mut self) -> Option<Vec<PartitionMetadata>> {
        let boot = self.direct_bootstrap();
        if boot.is_empty() {
            return None;
        }
        block_on(async {
            tokio::time::timeout(Duration::from_secs(5), async {
                let mut c = Client::connect_to(&boot).await.ok()?;
                let t = c.topic_metadata(TOPIC).await.ok()?;
                (0..PARTITIONS)
                    .map(|p| t.partition(p).cloned())
                    .collect::<Option<Vec<_>>>()
            })
            .await
            .ok()
            .flatten()
        })
    }

    /// The current leader of `partition`, if metadata names one.
    fn leader_of(&mut self, partition: i32) -> Option<i32> {
        let ps = self.partitions()?;
        let l = ps.get(partition as usize)?.leader;
        (l >= 0).then_some(l)
    }

    fn wait_full_isr(&mut self, timeout: Duration) -> Vec<PartitionMetadata> {
        eventually(
            timeout,
            "every partition with a leader and its full ISR",
            || {
                self.partitions().filter(|ps| {
                    ps.iter()
                        .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
                })
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The workload.

/// An acknowledged write.
#[derive(Clone, Debug)]
struct Ack {
    value: String,
    partition: i32,
    offset: i64,
}

/// A value a consumer received.
#[derive(Clone, Debug)]
struct Obs {
    consumer: usize,
    partition: i32,
    offset: i64,
    value: String,
}

#[derive(Default)]
struct Recorded {
    acked: Mutex<Vec<Ack>>,
    failed: Mutex<Vec<(String, String)>>,
    observed: Mutex<Vec<Obs>>,
    fatal: Mutex<Vec<String>>,
    sent: AtomicUsize,
    consume_errors: AtomicUsize,
    /// When each acknowledgement arrived (since the run started) and its partition: the
    /// longest stretches without one show how long faults kept a partition unavailable.
    ack_times: Mutex<Vec<(Duration, i32)>>,
    /// When each delivery failure was reported and its partition.
    fail_times: Mutex<Vec<(Duration, i32)>>,
    /// librdkafka's log lines of the producers.
    client_log: Mutex<Vec<String>>,
    started: Mutex<Option<Instant>>,
}

impl Recorded {
    fn since_start(&self) -> Duration {
        self.started
            .lock()
            .expect("started")
            .get_or_insert_with(Instant::now)
            .elapsed()
    }

    /// Per partition, acknowledgements/failures per `window` of the run: where availability
    /// went, when producers' messages timed out.
    fn deliveries_per_window(&self, window: Duration) -> Vec<String> {
        let acks = self.ack_times.lock().expect("ack times").clone();
        let fails = self.fail_times.lock().expect("fail times").clone();
        let bucket = |t: Duration| (t.as_secs_f64() / window.as_secs_f64()) as usize;
        let last = acks
            .iter()
            .chain(fails.iter())
            .map(|(t, _)| bucket(*t))
            .max()
            .unwrap_or(0);
        (0..PARTITIONS)
            .map(|p| {
                let mut counts = vec![(0usize, 0usize); last + 1];
                for (t, _) in acks.iter().filter(|(_, q)| *q == p) {
                    counts[bucket(*t)].0 += 1;
                }
                for (t, _) in fails.iter().filter(|(_, q)| *q == p) {
                    counts[bucket(*t)].1 += 1;
                }
                let cells: Vec<String> = counts
                    .iter()
                    .map(|(a, f)| {
                        if *f == 0 {
                            format!("{a}")
                        } else {
                            format!("{a}/{f}!")
                        }
                    })
                    .collect();
                format!("partition {p}: {}", cells.join(" "))
            })
            .collect()
    }

    /// Per partition, the longest stretch without an acknowledgement until `end` (when the
    /// producers were told to stop): (length, from).
    fn longest_ack_gaps(&self, end: Duration) -> Vec<(Duration, Duration)> {
        let times = self.ack_times.lock().expect("ack times");
        (0..PARTITIONS)
            .map(|p| {
                let mut last = Duration::ZERO;
                let mut best = (Duration::ZERO, Duration::ZERO);
                for (t, _) in times.iter().filter(|(_, q)| *q == p) {
                    if t.saturating_sub(last) > best.0 {
                        best = (t.saturating_sub(last), last);
                    }
                    last = last.max(*t);
                }
                if end.saturating_sub(last) > best.0 {
                    best = (end.saturating_sub(last), last);
                }
                best
            })
            .collect()
    }
}

fn value_of(producer: usize, seq: usize) -> String {
    format!("p{producer}-{seq:09}")
}

/// (producer, seq) of a value written by [`value_of`].
fn parse_value(v: &str) -> Option<(usize, usize)> {
    let (p, s) = v.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, s.parse().ok()?))
}

struct DeliveryRecorder {
    producer: usize,
    rec: Arc<Recorded>,
}

impl rdkafka::ClientContext for DeliveryRecorder {
    /// librdkafka's log (with `debug=eos`: PID/epoch changes, epoch bumps, duplicate-sequence
    /// and out-of-order handling), kept for the failure report.
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        let at = self.rec.since_start();
        self.rec
            .client_log
            .lock()
            .expect("client log")
            .push(format!(
                "[{:>8.3}s] producer {} {level:?} {fac}: {message}",
                at.as_secs_f64(),
                self.producer
            ));
    }
}

impl rdkafka::producer::ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: usize) {
        let value = value_of(self.producer, seq);
        match result {
            Ok(m) => {
                let at = self.rec.since_start();
                self.rec
                    .ack_times
                    .lock()
                    .expect("ack times")
                    .push((at, m.partition()));
                self.rec.acked.lock().expect("acked").push(Ack {
                    value,
                    partition: m.partition(),
                    offset: m.offset(),
                })
            }
            Err((e, m)) => {
                let at = self.rec.since_start();
                self.rec
                    .fail_times
                    .lock()
                    .expect("fail times")
                    .push((at, m.partition()));
                self.rec
                    .failed
                    .lock()
                    .expect("failed")
                    .push((value, e.to_string()))
            }
        }
    }
}

fn new_producer(
    bootstrap: &str,
    id: usize,
    incarnation: usize,
    rec: &Arc<Recorded>,
) -> BaseProducer<DeliveryRecorder> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("fault-producer-{id}-{incarnation}"))
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("queue.buffering.max.messages", "20000")
        .set(
            "debug",
            std::env::var("NAGARE_FAULT_CLIENT_DEBUG").unwrap_or_else(|_| "eos".into()),
        )
        // rust-rdkafka takes its log level from the `log` crate (off here): without this,
        // librdkafka drops its debug lines once the client is created.
        .set_log_level(rdkafka::config::RDKafkaLogLevel::Debug)
        .create_with_context(DeliveryRecorder {
            producer: id,
            rec: rec.clone(),
        })
        .expect("producer")
}

/// Writes unique values to `partition` until `stop`, then flushes. A producer that hits a
/// fatal (idempotence) error is recorded and replaced.
///
/// One partition per producer: librdkafka bumps an idempotent producer's epoch when a
/// partition sees OUT_OF_ORDER_SEQUENCE_NUMBER behind a failed request, and the bump renumbers
/// the unacknowledged but possibly persisted messages of its *other* partitions, which are
/// then written twice (confluentinc/librdkafka#4953, open; seen here as duplicates with a new
/// producer epoch and sequence 0 right after a leader change). On a single partition that
/// OUT_OF_ORDER_SEQUENCE_NUMBER proves the failed request was not persisted, so a duplicate
/// the checker finds is the broker's.
fn run_producer(
    bootstrap: String,
    id: usize,
    partition: i32,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorded>,
    pause: Duration,
) {
    let mut incarnation = 0;
    let mut producer = new_producer(&bootstrap, id, incarnation, &rec);
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst) {
        if let Some((code, msg)) = producer.client().fatal_error() {
            rec.fatal
                .lock()
                .expect("fatal")
                .push(format!("producer {id}: {code:?} {msg}"));
            eprintln!("producer {id}: FATAL {code:?} {msg}; replacing the producer");
            drop(producer);
            incarnation += 1;
            producer = new_producer(&bootstrap, id, incarnation, &rec);
        }
        let value = value_of(id, seq);
        let record = BaseRecord::with_opaque_to(TOPIC, seq)
            .partition(partition)
            .key(&value)
            .payload(&value);
        match producer.send(record) {
            Ok(()) => {
                seq += 1;
                rec.sent.fetch_add(1, Ordering::Relaxed);
            }
            // Queue full while the cluster cannot take writes: wait for deliveries.
            Err((_, _)) => producer.poll(Duration::from_millis(50)),
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(pause);
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!("producer {id}: flush: {e}");
    }
}

/// Reads every partition from the beginning until `stop`, recording every value received.
fn run_consumer(bootstrap: String, id: usize, stop: Arc<AtomicBool>, rec: Arc<Recorded>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", format!("fault-consumer-{id}"))
        .set("group.id", format!("fault-consumer-{id}"))
        .set("broker.address.family", "v4")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("fetch.wait.max.ms", "200")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => rec.observed.lock().expect("observed").push(Obs {
                consumer: id,
                partition: m.partition(),
                offset: m.offset(),
                value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            }),
            Some(Err(_)) => {
                rec.consume_errors.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// Reads each partition from 0 to its high watermark: `log[p]` is `(offset, value)` in order.
///
/// After restarts a leader's high watermark climbs back as its followers fetch, so the
/// watermarks are read until they are steady (and, within `settle`, until they cover
/// `expected[p]`, the highest acknowledged offset + 1; if they never do, the checker reports
/// what is missing).
fn read_final_log(bootstrap: &str, expected: &[i64], settle: Duration) -> Vec<Vec<(i64, String)>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fault-final-reader")
        .set("group.id", "fault-final-reader")
        .set("broker.address.family", "v4")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let marks = || -> Vec<(i64, i64)> {
        (0..PARTITIONS)
            .map(|p| {
                eventually(Duration::from_secs(30), "watermarks", || {
                    consumer
                        .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
                        .ok()
                })
            })
            .collect()
    };
    let deadline = Instant::now() + settle;
    let mut prev = marks();
    let marks = loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = marks();
        let covered = now
            .iter()
            .zip(expected)
            .all(|((_, high), want)| high >= want);
        if (now == prev && covered) || Instant::now() > deadline {
            break now;
        }
        prev = now;
    };
    eprintln!("final log watermarks (low, high) per partition: {marks:?}, acknowledged up to {expected:?}");
    let highs: Vec<i64> = marks.iter().map(|m| m.1).collect();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Offset(0))
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut log: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS as usize];
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = |log: &Vec<Vec<(i64, String)>>| {
        log.iter()
            .zip(&highs)
            .all(|(l, &h)| h == 0 || l.last().is_some_and(|(o, _)| o + 1 >= h))
    };
    while !done(&log) {
        assert!(
            Instant::now() < deadline,
            "reading the final log timed out: {:?} of {highs:?}",
            log.iter().map(|l| l.len()).collect::<Vec<_>>()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let p = m.partition() as usize;
            if m.offset() < highs[p] {
                log[p].push((
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                ));
            }
        }
    }
    log
}

/// Per partition, the highest acknowledged offset + 1.
fn acked_ends(acked: &[Ack]) -> Vec<i64> {
    let mut ends = vec![0; PARTITIONS as usize];
    for a in acked {
        if let Some(e) = ends.get_mut(a.partition as usize) {
            *e = (*e).max(a.offset + 1);
        }
    }
    ends
}

/// Ends a run whose producers write into `rec`: stops them, reads the final log from
/// `bootstrap` and checks every acknowledged record against it (panics on a violation or when
/// nothing was acknowledged); `what` names the run in the summary line.
fn stop_and_check(
    what: &str,
    stop: &AtomicBool,
    producers: Vec<std::thread::JoinHandle<()>>,
    rec: &Recorded,
    bootstrap: &str,
    t0: Instant,
) {
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().expect("producer thread");
    }
    let acked = rec.acked.lock().expect("acked").clone();
    let failed = rec.failed.lock().expect("failed").len();
    let final_log = read_final_log(bootstrap, &acked_ends(&acked), Duration::from_secs(20));
    let h = History {
        acked,
        observed: Vec::new(),
        final_log,
    };
    let bad = check_history(&h);
    eprintln!(
        "{what}: {} acknowledged, {failed} failed, {} violations, wall time {:?}",
        h.acked.len(),
        bad.len(),
        t0.elapsed()
    );
    assert!(bad.is_empty(), "violations:\n{}", bad.join("\n"));
    assert!(!h.acked.is_empty(), "nothing was acknowledged");
}

// ---------------------------------------------------------------------------------------------
// The checker.

/// Everything a run observed.
#[derive(Default)]
struct History {
    acked: Vec<Ack>,
    observed: Vec<Obs>,
    /// Per partition, `(offset, value)` in log order.
    final_log: Vec<Vec<(i64, String)>>,
}

/// Checks `h`; returns every violation found (empty: the run kept every promise).
fn check_history(h: &History) -> Vec<String> {
    let mut bad = Vec::new();
    // Position of every value in the final log; offsets strictly increasing; no duplicates.
    let mut at: HashMap<&str, (i32, i64)> = HashMap::new();
    let mut by_offset: Vec<BTreeMap<i64, &str>> = Vec::new();
    for (p, log) in h.final_log.iter().enumerate() {
        let p = p as i32;
        let mut offsets = BTreeMap::new();
        let mut prev = -1;
        for (o, v) in log {
            if *o <= prev {
                bad.push(format!(
                    "partition {p}: offset {o} after {prev} in the final log"
                ));
            }
            prev = *o;
            if parse_value(v).is_none() {
                bad.push(format!(
                    "partition {p} offset {o}: {v:?} was never produced"
                ));
            }
            if let Some((p0, o0)) = at.insert(v, (p, *o)) {
                bad.push(format!(
                    "{v} appears twice: partition {p0} offset {o0} and partition {p} offset {o}"
                ));
            }
            offsets.insert(*o, v.as_str());
        }
        by_offset.push(offsets);
    }
    let value_at = |p: i32, o: i64| by_offset.get(p as usize).and_then(|m| m.get(&o)).copied();
    // Every acknowledged value sits where it was acknowledged.
    for a in &h.acked {
        match at.get(a.value.as_str()) {
            None => bad.push(format!(
                "LOST: {} acknowledged at partition {} offset {} is not in the final log (that offset holds {:?})",
                a.value,
                a.partition,
                a.offset,
                value_at(a.partition, a.offset)
            )),
            // librdkafka acknowledges without an offset (-1001) the messages of a batch whose
            // response was lost once a later batch of the same idempotent producer succeeded
            // ("implicitly acked by subsequent batch success"): only the partition is known.
            Some(&(p, o)) if a.offset < 0 && p != a.partition => bad.push(format!(
                "MOVED: {} acknowledged (without an offset) on partition {} is at partition {p} offset {o}",
                a.value, a.partition
            )),
            Some(_) if a.offset < 0 => {}
            Some(&(p, o)) if (p, o) != (a.partition, a.offset) => bad.push(format!(
                "MOVED: {} acknowledged at partition {} offset {} is at partition {p} offset {o}",
                a.value, a.partition, a.offset
            )),
            Some(_) => {}
        }
    }
    // Every observation agrees with the final log, and no consumer skipped a logged offset.
    let mut last: HashMap<(usize, i32), i64> = HashMap::new();
    for ob in &h.observed {
        match value_at(ob.partition, ob.offset) {
            Some(v) if v == ob.value => {}
            other => bad.push(format!(
                "consumer {} saw {} at partition {} offset {}, the final log holds {other:?} there",
                ob.consumer, ob.value, ob.partition, ob.offset
            )),
        }
        if let Some(prev) = last.insert((ob.consumer, ob.partition), ob.offset) {
            if ob.offset > prev + 1 {
                if let Some((o, _)) = by_offset
                    .get(ob.partition as usize)
                    .and_then(|m| m.range(prev + 1..ob.offset).next())
                {
                    bad.push(format!(
                        "consumer {} went from offset {prev} to {} on partition {}, skipping offset {o} of the final log",
                        ob.consumer, ob.offset, ob.partition
                    ));
                }
            }
        }
    }
    // Each producer's acknowledged values of a partition are in its send order.
    let mut order: BTreeMap<(usize, i32), Vec<(usize, i64)>> = BTreeMap::new();
    for a in &h.acked {
        // An acknowledgement without an offset is ordered by where the value is in the log
        // (if it is not there, it was reported as lost above).
        let offset = if a.offset >= 0 {
            Some(a.offset)
        } else {
            at.get(a.value.as_str())
                .filter(|(p, _)| *p == a.partition)
                .map(|(_, o)| *o)
        };
        if let (Some((prod, seq)), Some(offset)) = (parse_value(&a.value), offset) {
            order
                .entry((prod, a.partition))
                .or_default()
                .push((seq, offset));
        }
    }
    for ((prod, p), mut v) in order {
        v.sort_unstable();
        if let Some(w) = v.windows(2).find(|w| w[0].1 >= w[1].1) {
            bad.push(format!(
                "producer {prod} partition {p}: seq {} acknowledged at offset {} but later seq {} at {}",
                w[0].0, w[0].1, w[1].0, w[1].1
            ));
        }
    }
    bad
}

/// Checks `h` and panics with the violations; before that, copies every node's directory
/// (config, data, log) out of the temporary directory so the failure can be examined.
fn assert_history(h: &History, fc: &FaultCluster, client_log: &[String]) {
    if let Ok(d) = std::env::var("NAGARE_TEST_KEEP_LOGS") {
        let _ = std::fs::create_dir_all(&d);
        let _ = std::fs::write(format!("{d}/producers.log"), client_log.join("\n"));
    }
    let bad = check_history(h);
    if !bad.is_empty() {
        let keep = std::env::temp_dir().join(format!(
            "nagare-fault-failure-{}-{}",
            std::process::id(),
            fc.started.elapsed().as_millis()
        ));
        let _ = std::fs::create_dir_all(&keep);
        for n in &fc.cluster.nodes {
            let _ = std::process::Command::new("cp")
                .arg("-r")
                .arg(n.dir())
                .arg(&keep)
                .status();
        }
        let _ = std::fs::write(keep.join("producers-librdkafka.log"), client_log.join("\n"));
        eprintln!(
            "node directories and the producers' librdkafka log copied to {}",
            keep.display()
        );
        let shown: Vec<_> = bad.iter().take(50).cloned().collect();
        panic!(
            "{} violations (first {}):\n{}",
            bad.len(),
            shown.len(),
            shown.join("\n")
        );
    }
}

/// The bytes of every `.log` segment of `TOPIC-partition` under `dir`, in offset order.
fn partition_bytes(dir: &Path, partition: i32) -> Vec<u8> {
    let pdir = dir.join(format!("{TOPIC}-{partition}"));
    let mut files: Vec<_> = std::fs::read_dir(&pdir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

/// Waits until every broker's copy of each partition holds the same bytes.
fn assert_replicas_identical(fc: &mut FaultCluster) {
    let dirs: Vec<_> = fc
        .brokers
        .clone()
        .iter()
        .map(|id| fc.cluster.node(*id).log_dir())
        .collect();
    for p in 0..PARTITIONS {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let copies: Vec<Vec<u8>> = dirs.iter().map(|d| partition_bytes(d, p)).collect();
            if copies.iter().all(|c| *c == copies[0]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "replicas of partition {p} differ: sizes {:?}",
                copies.iter().map(|c| c.len()).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fault schedule.

/// One fault: [`Fault::begin`] injects it, [`Fault::end`] heals it.
#[derive(Clone, Debug)]
enum Fault {
    /// SIGKILL; the end restarts the node.
    Kill(i32),
    /// SIGSTOP; the end sends SIGCONT.
    Pause(i32),
    /// Cut `a → b`, and `b → a` too when the flag is set.
    Cut(i32, i32, bool),
    /// Cut a node from every other node, and from the clients when the flag is set.
    Isolate(i32, bool),
    /// Cut the clients from a broker.
    ClientCut(i32),
    /// Cut a node from the controllers (both directions) but not from the other brokers:
    /// a leader that followers still reach while the controller fences it (the zombie leader).
    CutFromControllers(i32),
}

impl Fault {
    /// A random fault; `None` when the leader to isolate is unknown right now.
    fn pick(fc: &mut FaultCluster, rng: &mut StdRng) -> Option<Fault> {
        let all = fc.all.clone();
        let mut node = all[rng.gen_range(0..all.len())];
        let kind = rng.gen_range(0..100);
        // Half of the kills and pauses hit the leader of a random partition.
        if kind < 35 && rng.gen_bool(0.5) {
            if let Some(leader) = fc.leader_of(rng.gen_range(0..PARTITIONS)) {
                node = leader;
            }
        }
        Some(match kind {
            0..=19 => Fault::Kill(node),
            20..=34 => Fault::Pause(node),
            35..=49 => {
                let mut other = all[rng.gen_range(0..all.len())];
                while other == node {
                    other = all[rng.gen_range(0..all.len())];
                }
                Fault::Cut(node, other, rng.gen_bool(0.5))
            }
            50..=69 => {
                // The leader of a random partition: the split-brain case.
                let leader = fc.leader_of(rng.gen_range(0..PARTITIONS))?;
                Fault::Isolate(leader, rng.gen_bool(0.5))
            }
            70..=79 if fc.brokers.iter().all(|b| !fc.controllers.contains(b)) => {
                let leader = fc.leader_of(rng.gen_range(0..PARTITIONS))?;
                Fault::CutFromControllers(leader)
            }
            70..=89 => Fault::Isolate(node, rng.gen_bool(0.5)),
            _ => Fault::ClientCut(fc.brokers[rng.gen_range(0..fc.brokers.len())]),
        })
    }

    fn describe(&self) -> String {
        match self {
            Fault::Kill(n) => format!("SIGKILL node {n}"),
            Fault::Pause(n) => format!("SIGSTOP node {n}"),
            Fault::Cut(a, b, true) => format!("cut {a} <-> {b}"),
            Fault::Cut(a, b, false) => format!("cut {a} -> {b} (asymmetric)"),
            Fault::Isolate(n, true) => format!("isolate {n} from every node and the clients"),
            Fault::Isolate(n, false) => {
                format!("isolate {n} from every node (clients still reach it)")
            }
            Fault::ClientCut(b) => format!("cut the clients from broker {b}"),
            Fault::CutFromControllers(n) => format!("cut {n} from the controllers"),
        }
    }

    fn begin(&self, fc: &mut FaultCluster) {
        match *self {
            Fault::Kill(n) => fc.cluster.node(n).kill9(),
            Fault::Pause(n) => fc.cluster.node(n).signal("STOP"),
            Fault::Cut(a, b, both) => {
                fc.net.cut(a, b);
                if both {
                    fc.net.cut(b, a);
                }
            }
            Fault::Isolate(n, clients) => {
                let all = fc.all.clone();
                fc.net.isolate(n, &all, clients);
            }
            Fault::ClientCut(b) => fc.net.cut(common::fault_proxy::CLIENT, b),
            Fault::CutFromControllers(n) => {
                for c in fc.controllers.clone() {
                    fc.net.cut(n, c);
                    fc.net.cut(c, n);
                }
            }
        }
    }

    fn end(&self, fc: &mut FaultCluster) {
        match *self {
            // Only started here: a restarted node may still be cut off by another fault of
            // the same step, so [`run_schedule`] waits for it once the whole step is healed.
            Fault::Kill(n) => {
                let node = fc.cluster.node(n);
                if !node.is_running() {
                    node.kill9();
                    node.start();
                }
            }
            Fault::Pause(n) => fc.cluster.node(n).signal("CONT"),
            Fault::Cut(a, b, both) => {
                fc.net.heal(a, b);
                if both {
                    fc.net.heal(b, a);
                }
            }
            Fault::Isolate(n, clients) => {
                for o in fc.all.clone() {
                    fc.net.heal(n, o);
                    fc.net.heal(o, n);
                }
                if clients {
                    fc.net.heal(common::fault_proxy::CLIENT, n);
                }
            }
            Fault::ClientCut(b) => fc.net.heal(common::fault_proxy::CLIENT, b),
            Fault::CutFromControllers(n) => {
                for c in fc.controllers.clone() {
                    fc.net.heal(n, c);
                    fc.net.heal(c, n);
                }
            }
        }
    }
}

/// Runs seeded faults for `secs` seconds, one at a time or (one step in four) two
/// overlapping; returns how many faults were injected.
fn run_schedule(fc: &mut FaultCluster, rng: &mut StdRng, secs: u64) -> usize {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut faults = 0;
    while Instant::now() < end {
        let n = if rng.gen_bool(0.25) { 2 } else { 1 };
        let mut step = Vec::new();
        for _ in 0..n {
            if let Some(f) = Fault::pick(fc, rng) {
                step.push(f);
            }
        }
        if step.is_empty() {
            fc.log("no leader known right now; retrying");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let hold = Duration::from_millis(rng.gen_range(500..6000));
        let stagger = Duration::from_millis(rng.gen_range(0..1500));
        for (i, f) in step.iter().enumerate() {
            faults += 1;
            if i > 0 {
                std::thread::sleep(stagger);
            }
            fc.log(&format!("fault {faults}: {}", f.describe()));
            f.begin(fc);
        }
        std::thread::sleep(hold);
        for f in step.iter().rev() {
            f.end(fc);
            fc.log(&format!("healed: {}", f.describe()));
        }
        for f in &step {
            if let Fault::Kill(n) = f {
                fc.cluster.node(*n).wait_ready(READY);
                fc.log(&format!("node {n} ready again"));
            }
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..2500)));
    }
    faults
}

#[test]
fn faults_keep_every_acknowledged_write() {
    let _serial = serial();
    let seed = env_u64("NAGARE_FAULT_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("NAGARE_FAULT_SECS").unwrap_or(60);
    let topology = match std::env::var("NAGARE_FAULT_TOPOLOGY").as_deref() {
        Ok("combined") => Topology::Combined,
        _ => Topology::Separate,
    };
    eprintln!(
        "fault suite: NAGARE_FAULT_SEED={seed} NAGARE_FAULT_SECS={secs} topology {topology:?}"
    );
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fc = FaultCluster::start(topology);
    fc.create_topic();
    fc.log("cluster up, topic created with its full ISR");

    let boot = fc.proxied_bootstrap();
    let rec = Arc::new(Recorded::default());
    // Acknowledgement times on the schedule's clock.
    *rec.started.lock().expect("started") = Some(fc.started);
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for id in 0..PARTITIONS as usize {
        let (b, s, r) = (boot.clone(), stop_producers.clone(), rec.clone());
        producers.push(std::thread::spawn(move || {
            run_producer(b, id, id as i32, s, r, Duration::from_millis(6))
        }));
    }
    let mut consumers = Vec::new();
    for id in 0..2 {
        let (b, s, r) = (boot.clone(), stop_consumers.clone(), rec.clone());
        consumers.push(std::thread::spawn(move || run_consumer(b, id, s, r)));
    }
    std::thread::sleep(Duration::from_secs(2));

    let faults = run_schedule(&mut fc, &mut rng, secs);

    // Heal everything, let the producers write through a quiet period, then flush them.
    fc.net.heal_all();
    let ids = fc.all.clone();
    for id in &ids {
        let n = fc.cluster.node(*id);
        n.signal("CONT");
        if !n.is_running() {
            n.kill9();
            n.start();
            n.wait_ready(READY);
        }
    }
    fc.log(&format!(
        "{faults} faults injected; healed, writing on for 3 s"
    ));
    std::thread::sleep(Duration::from_secs(3));
    stop_producers.store(true, Ordering::SeqCst);
    let producers_stopped = rec.since_start();
    for p in producers {
        p.join().expect("producer thread");
    }
    fc.log("producers flushed");
    let parts = fc.wait_full_isr(Duration::from_secs(90));
    fc.log(&format!(
        "full ISR again: leaders {:?}",
        parts.iter().map(|p| p.leader).collect::<Vec<_>>()
    ));
    // Let the consumers reach the end too, so their observations cover the whole run.
    std::thread::sleep(Duration::from_secs(3));
    stop_consumers.store(true, Ordering::SeqCst);
    for c in consumers {
        c.join().expect("consumer thread");
    }
    let acked = rec.acked.lock().expect("acked").clone();
    let final_log = read_final_log(&boot, &acked_ends(&acked), Duration::from_secs(30));
    assert_replicas_identical(&mut fc);

    let h = History {
        acked,
        observed: rec.observed.lock().expect("observed").clone(),
        final_log,
    };
    let failed = rec.failed.lock().expect("failed").clone();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e) in &failed {
        *failures.entry(e.clone()).or_default() += 1;
    }
    let in_log: usize = h.final_log.iter().map(|l| l.len()).sum();
    let failed_in_log = {
        let logged: HashSet<&str> = h
            .final_log
            .iter()
            .flatten()
            .map(|(_, v)| v.as_str())
            .collect();
        failed
            .iter()
            .filter(|(v, _)| logged.contains(v.as_str()))
            .count()
    };
    let fatal = rec.fatal.lock().expect("fatal").clone();
    let implicit = h.acked.iter().filter(|a| a.offset < 0).count();
    let bumps = rec
        .client_log
        .lock()
        .expect("client log")
        .iter()
        .filter(|l| l.to_lowercase().contains("epoch bump"))
        .count();
    eprintln!("librdkafka log lines mentioning an epoch bump: {bumps}");
    eprintln!(
        "fault suite summary: seed {seed}, {secs} s of faults, {faults} faults, {} records sent, {} acked ({implicit} without an offset), {} failed ({failed_in_log} of them in the log anyway) {failures:?}, {in_log} in the final log, {} consumer observations, {} consume errors, {} connections through the proxies ({} held), producer fatal errors {fatal:?}, wall time {:?}",
        rec.sent.load(Ordering::Relaxed),
        h.acked.len(),
        failed.len(),
        h.observed.len(),
        rec.consume_errors.load(Ordering::Relaxed),
        fc.net.stats().connections.load(Ordering::Relaxed),
        fc.net.stats().held.load(Ordering::Relaxed),
        t0.elapsed()
    );
    eprintln!(
        "longest stretch without an acknowledgement per partition (length, from, on the schedule's clock): {:?}",
        rec.longest_ack_gaps(producers_stopped)
    );
    eprintln!("acknowledged (/failed!) per 10 s window:");
    for line in rec.deliveries_per_window(Duration::from_secs(10)) {
        eprintln!("  {line}");
    }
    assert!(!h.acked.is_empty(), "nothing was acknowledged");
    let client_log = rec.client_log.lock().expect("client log").clone();
    assert_history(&h, &fc, &client_log);
}

// ---------------------------------------------------------------------------------------------
// Transactions under faults (issue 13).

/// Transactional producers (commits and aborts) and read_committed consumers through the
/// same seeded fault schedule; the checker of [`txn`] looks for lost committed writes,
/// aborted reads, torn transactions, duplicates and non-monotonic reads.
/// `NAGARE_FAULT_TXN_SECS` sets how long faults are injected (default 45).
#[test]
fn transactions_keep_their_promises_under_faults() {
    let _serial = serial();
    let seed = env_u64("NAGARE_FAULT_SEED").unwrap_or_else(rand::random);
    let secs = env_u64("NAGARE_FAULT_TXN_SECS").unwrap_or(45);
    let topology = match std::env::var("NAGARE_FAULT_TOPOLOGY").as_deref() {
        Ok("combined") => Topology::Combined,
        _ => Topology::Separate,
    };
    eprintln!(
        "transactional fault suite: NAGARE_FAULT_SEED={seed} NAGARE_FAULT_TXN_SECS={secs} topology {topology:?}"
    );
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fc = FaultCluster::start(topology);
    // The schedule picks partition leaders of TOPIC; the workload writes TXN_TOPIC.
    fc.create_named_topic(txn::TXN_TOPIC, txn::TXN_PARTITIONS);
    fc.create_topic();
    fc.log("cluster up, topics created");

    let boot = fc.proxied_bootstrap();
    let rec = Arc::new(txn::TxnRecorded::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..3)
        .map(|id| {
            let (b, s, r) = (boot.clone(), stop_producers.clone(), rec.clone());
            std::thread::spawn(move || txn::run_txn_producer(b, id, seed, s, r))
        })
        .collect();
    let consumers: Vec<_> = (0..2)
        .map(|id| {
            let (b, s, r) = (boot.clone(), stop_consumers.clone(), rec.clone());
            std::thread::spawn(move || txn::run_txn_consumer(b, id, s, r))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let faults = run_schedule(&mut fc, &mut rng, secs);

    fc.net.heal_all();
    let ids = fc.all.clone();
    for id in &ids {
        let n = fc.cluster.node(*id);
        n.signal("CONT");
        if !n.is_running() {
            n.kill9();
            n.start();
            n.wait_ready(READY);
        }
    }
    fc.log(&format!(
        "{faults} faults injected; healed, transactions go on for 5 s"
    ));
    std::thread::sleep(Duration::from_secs(5));
    stop_producers.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().expect("transactional producer thread");
    }
    fc.log("producers done");
    fc.wait_full_isr(Duration::from_secs(90));
    std::thread::sleep(Duration::from_secs(3));
    stop_consumers.store(true, Ordering::SeqCst);
    for c in consumers {
        c.join().expect("consumer thread");
    }
    let committed_log = txn::read_txn_log(&boot, "read_committed");
    let uncommitted: usize = txn::read_txn_log(&boot, "read_uncommitted")
        .iter()
        .map(Vec::len)
        .sum();
    let h = txn::TxnHistory {
        txns: rec.txns.lock().expect("txns").clone(),
        observed: rec.observed.lock().expect("observed").clone(),
        committed_log,
    };
    let count = |o: txn::Outcome| h.txns.iter().filter(|t| t.outcome == o).count();
    let replaced = rec.replaced.lock().expect("replaced").clone();
    eprintln!(
        "transactional fault suite summary: seed {seed}, {secs} s of faults, {faults} faults, {} transactions ({} committed, {} aborted, {} unknown), {} records in the read_committed log, {uncommitted} read_uncommitted, {} observations, {} producer replacements {:?}, wall time {:?}",
        h.txns.len(),
        count(txn::Outcome::Committed),
        count(txn::Outcome::Aborted),
        count(txn::Outcome::Unknown),
        h.committed_log.iter().map(Vec::len).sum::<usize>(),
        h.observed.len(),
        replaced.len(),
        replaced.iter().take(10).collect::<Vec<_>>(),
        t0.elapsed()
    );
    assert!(
        count(txn::Outcome::Committed) > 0,
        "no transaction was committed"
    );
    let bad = txn::check_txn_history(&h);
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(50).collect();
        panic!(
            "seed {seed}: {} transactional violations:\n{}",
            bad.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Transaction coordinator failover (issue 13).

const FAILOVER_TOPIC: &str = "txn-failover";

/// A transactional producer through the proxies.
fn failover_producer(bootstrap: &str, txn_id: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", txn_id)
        .set("linger.ms", "5")
        .set("transaction.timeout.ms", "60000")
        .set("request.timeout.ms", "5000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .expect("transactional producer")
}

/// Every value of `FAILOVER_TOPIC` a read_committed consumer finds within `wait` that
/// starts with `prefix`.
fn committed_values(bootstrap: &str, prefix: &str, want: usize, wait: Duration) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set(
            "group.id",
            format!("failover-reader-{}", rand::random::<u32>()),
        )
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(FAILOVER_TOPIC, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while Instant::now() < deadline && out.len() < want {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if v.starts_with(prefix) {
                out.push(v);
            }
        }
    }
    out
}

/// The broker coordinating `txn_id`, asked straight from the brokers.
fn txn_coordinator(fc: &mut FaultCluster, txn_id: &str) -> i32 {
    let boot = fc.direct_bootstrap();
    eventually(
        Duration::from_secs(60),
        "the transaction coordinator",
        || {
            block_on(async {
                let mut c = Client::connect_to(&boot).await.ok()?;
                c.find_transaction_coordinator(txn_id).await.ok()
            })
        },
    )
}

/// SIGKILL of the transaction coordinator on a 3-broker RF=3 cluster (a) between
/// AddPartitionsToTxn and EndTxn: the producer's commit goes to the new coordinator and
/// succeeds; (b) after PrepareCommit, before the markers are written (the coordinator is cut
/// off from the partition leaders, so EndTxn answers but no marker lands): the new
/// coordinator completes the commit. Nothing is torn either way.
#[test]
fn transaction_coordinator_failover_completes_commits() {
    let _serial = serial();
    let mut fc = FaultCluster::start(Topology::Separate);
    fc.create_named_topic(FAILOVER_TOPIC, PARTITIONS);
    fc.create_topic();
    let boot = fc.proxied_bootstrap();

    // (a) Killed between AddPartitionsToTxn and EndTxn.
    let producer = failover_producer(&boot, "failover-a");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    producer.begin_transaction().expect("begin");
    for i in 0..12 {
        let v = format!("a-{i}");
        producer
            .send(
                BaseRecord::to(FAILOVER_TOPIC)
                    .partition(i % PARTITIONS)
                    .key(&v)
                    .payload(&v),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let coordinator = txn_coordinator(&mut fc, "failover-a");
    fc.log(&format!(
        "(a) records written; SIGKILL coordinator {coordinator}"
    ));
    fc.cluster.node(coordinator).kill9();
    producer
        .commit_transaction(Duration::from_secs(90))
        .expect("commit after the coordinator died");
    fc.log("(a) committed through the new coordinator");
    let seen = committed_values(&boot, "a-", 12, Duration::from_secs(60));
    assert_eq!(seen.len(), 12, "(a) read_committed sees {seen:?}");
    fc.cluster.node(coordinator).start();
    fc.cluster.node(coordinator).wait_ready(READY);
    fc.wait_full_isr(Duration::from_secs(90));
    drop(producer);

    // (b) Killed after PrepareCommit, before the markers.
    let producer = failover_producer(&boot, "failover-b");
    producer
        .init_transactions(Duration::from_secs(60))
        .expect("init_transactions");
    let coordinator = txn_coordinator(&mut fc, "failover-b");
    // Partitions led elsewhere, so every marker must cross a link we cut.
    let direct = fc.direct_bootstrap();
    let parts = eventually(Duration::from_secs(30), "the topic's leaders", || {
        block_on(async {
            let mut c = Client::connect_to(&direct).await.ok()?;
            c.topic_metadata(FAILOVER_TOPIC).await.ok()
        })
    })
    .partitions;
    let targets: Vec<i32> = parts
        .iter()
        .filter(|p| p.leader >= 0 && p.leader != coordinator)
        .map(|p| p.partition)
        .collect();
    assert!(
        !targets.is_empty(),
        "every partition is led by the coordinator"
    );
    producer.begin_transaction().expect("begin");
    for i in 0..12 {
        let v = format!("b-{i}");
        producer
            .send(
                BaseRecord::to(FAILOVER_TOPIC)
                    .partition(targets[i % targets.len()])
                    .key(&v)
                    .payload(&v),
            )
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    let others: Vec<i32> = fc
        .brokers
        .iter()
        .copied()
        .filter(|b| *b != coordinator)
        .collect();
    for b in &others {
        fc.net.cut(coordinator, *b);
    }
    fc.log(&format!(
        "(b) coordinator {coordinator} cut off from {others:?}; committing"
    ));
    producer
        .commit_transaction(Duration::from_secs(60))
        .expect("EndTxn answers once PrepareCommit is committed");
    let early = committed_values(&boot, "b-", 12, Duration::from_secs(3));
    assert!(
        early.is_empty(),
        "(b) the markers could not be written, yet read_committed sees {early:?}"
    );
    let state = block_on(async {
        let mut c = Client::connect_to(&fc.direct_bootstrap()).await.ok()?;
        c.describe_transaction("failover-b").await.ok()
    });
    fc.log(&format!("(b) before the kill: {state:?}"));
    assert_eq!(
        state.map(|d| d.state),
        Some("PrepareCommit".to_owned()),
        "(b) the transaction should wait in PrepareCommit"
    );
    fc.cluster.node(coordinator).kill9();
    fc.net.heal_all();
    fc.log(&format!("(b) SIGKILLed coordinator {coordinator}; healed"));
    let seen = committed_values(&boot, "b-", 12, Duration::from_secs(90));
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        (seen.len(), sorted.len()),
        (12, 12),
        "(b) the new coordinator should complete the commit: read_committed sees {seen:?}"
    );
    fc.cluster.node(coordinator).start();
    fc.cluster.node(coordinator).wait_ready(READY);
}

// ---------------------------------------------------------------------------------------------
// Every replica SIGKILLed at once.

/// Produces `count` values (all in flight at once) and waits for every report; returns the
/// acknowledgements, panicking on any failure (nothing is being injected).
fn produce_round(bootstrap: &str, round: usize, count: usize) -> Vec<Ack> {
    let rec = Arc::new(Recorded::default());
    let producer = new_producer(bootstrap, round, 0, &rec);
    for seq in 0..count {
        let value = value_of(round, seq);
        let record = BaseRecord::with_opaque_to(TOPIC, seq)
            .partition((seq % PARTITIONS as usize) as i32)
            .key(&value)
            .payload(&value);
        common::send_retrying_queue_full(&producer, record);
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("flush the round");
    let failed = rec.failed.lock().expect("failed").clone();
    assert!(
        failed.is_empty(),
        "round {round}: failed deliveries {failed:?}"
    );
    let acked = rec.acked.lock().expect("acked").clone();
    assert_eq!(acked.len(), count, "round {round}: every record reported");
    acked
}

fn all_replicas_sigkilled(topology: Topology) {
    let _serial = serial();
    let rounds = env_u64("NAGARE_FAULT_KILL_ROUNDS").unwrap_or(3) as usize;
    let t0 = Instant::now();
    let mut fc = FaultCluster::start(topology);
    fc.create_topic();
    let boot = fc.proxied_bootstrap();
    // Besides the bursts, one producer per partition streams and a consumer reads all along,
    // so the kills also land while acknowledgements and fetches are in flight.
    let rec = Arc::new(Recorded::default());
    let stop = Arc::new(AtomicBool::new(false));
    let streamers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (b, s, r) = (boot.clone(), stop.clone(), rec.clone());
            std::thread::spawn(move || {
                run_producer(b, 1000 + p as usize, p, s, r, Duration::from_millis(6))
            })
        })
        .collect();
    let reader = {
        let (b, s, r) = (boot.clone(), stop.clone(), rec.clone());
        std::thread::spawn(move || run_consumer(b, 0, s, r))
    };
    let mut acked = Vec::new();
    let victims = fc.brokers.clone();
    for round in 0..rounds {
        let acks = produce_round(&boot, round, 3000);
        // Right after the last acknowledgement: SIGKILL every replica in one kill(1) call.
        let pids: Vec<String> = victims
            .iter()
            .filter_map(|id| fc.cluster.node(*id).pid().map(|p| p.to_string()))
            .collect();
        let _ = std::process::Command::new("kill")
            .arg("-KILL")
            .args(&pids)
            .status();
        for id in &victims {
            fc.cluster.node(*id).kill9();
        }
        fc.log(&format!(
            "round {round}: {} acknowledged, SIGKILLed {victims:?} at once",
            acks.len()
        ));
        acked.extend(acks);
        fc.cluster.start_nodes(&victims, READY);
        fc.wait_full_isr(Duration::from_secs(90));
        fc.log(&format!("round {round}: restarted, full ISR"));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    for t in streamers {
        t.join().expect("streaming producer");
    }
    reader.join().expect("consumer");
    let streamed = rec.acked.lock().expect("acked").clone();
    let streamed_failed = rec.failed.lock().expect("failed").len();
    let streamed_acked = streamed.len();
    acked.extend(streamed);
    let final_log = read_final_log(&boot, &acked_ends(&acked), Duration::from_secs(30));
    assert_replicas_identical(&mut fc);
    let h = History {
        acked,
        observed: rec.observed.lock().expect("observed").clone(),
        final_log,
    };
    eprintln!(
        "simultaneous SIGKILL ({topology:?}): {rounds} rounds, {} acked ({streamed_acked} of them streamed, {streamed_failed} streamed failed), {} consumer observations, {} in the final log, wall time {:?}",
        h.acked.len(),
        h.observed.len(),
        h.final_log.iter().map(|l| l.len()).sum::<usize>(),
        t0.elapsed()
    );
    let client_log = rec.client_log.lock().expect("client log").clone();
    assert_history(&h, &fc, &client_log);
}

#[test]
fn all_brokers_sigkilled_at_once_lose_nothing_acknowledged() {
    all_replicas_sigkilled(Topology::Separate);
}

#[test]
fn all_combined_nodes_sigkilled_at_once_lose_nothing_acknowledged() {
    all_replicas_sigkilled(Topology::Combined);
}

// ---------------------------------------------------------------------------------------------
// The checker catches what it should (synthetic histories).

fn sample() -> History {
    let log = |vals: &[&str]| {
        vals.iter()
            .enumerate()
            .map(|(o, v)| (o as i64, v.to_string()))
            .collect::<Vec<_>>()
    };
    History {
        acked: vec![
            Ack {
                value: value_of(0, 0),
                partition: 0,
                offset: 0,
            },
            Ack {
                value: value_of(0, 2),
                partition: 0,
                offset: 1,
            },
        ],
        observed: vec![Obs {
            consumer: 0,
            partition: 0,
            offset: 1,
            value: value_of(0, 2),
        }],
        final_log: vec![log(&[&value_of(0, 0), &value_of(0, 2), &value_of(1, 0)])],
    }
}

#[test]
fn checker_accepts_a_consistent_history() {
    assert_eq!(check_history(&sample()), Vec::<String>::new());
}

#[test]
fn checker_finds_each_kind_of_violation() {
    let expect = |h: History, what: &str| {
        let bad = check_history(&h);
        assert!(
            bad.iter().any(|b| b.contains(what)),
            "expected {what:?} in {bad:?}"
        );
    };
    let mut h = sample();
    h.final_log[0].remove(1);
    expect(h, "LOST");
    let mut h = sample();
    h.acked[1].offset = 2;
    expect(h, "MOVED");
    let mut h = sample();
    h.final_log[0].push((3, value_of(0, 0)));
    expect(h, "appears twice");
    let mut h = sample();
    h.observed[0].value = value_of(1, 7);
    expect(h, "the final log holds");
    let mut h = sample();
    h.observed.insert(
        0,
        Obs {
            consumer: 0,
            partition: 0,
            offset: 0,
            value: value_of(0, 0),
        },
    );
    h.observed[1].offset = 2;
    h.observed[1].value = value_of(1, 0);
    expect(h, "skipping offset 1");
    let mut h = sample();
    h.acked[0].value = value_of(0, 3);
    h.final_log[0][0].1 = value_of(0, 3);
    expect(h, "later seq");
    let mut h = sample();
    h.final_log[0][2].1 = "garbage".into();
    expect(h, "never produced");
    // Acknowledged without an offset (librdkafka's implicit ack): must still be there, once,
    // on its partition, in its producer's order.
    let mut h = sample();
    h.acked[1].offset = -1001;
    assert_eq!(check_history(&h), Vec::<String>::new());
    h.final_log[0].remove(1);
    expect(h, "LOST");
    let mut h = sample();
    h.acked[1].offset = -1001;
    h.final_log.push(vec![(0, h.final_log[0][1].1.clone())]);
    h.final_log[0].remove(1);
    expect(h, "without an offset");
    let mut h = sample();
    h.acked[0].offset = -1001;
    h.acked[0].value = value_of(0, 3);
    h.final_log[0][0].1 = value_of(0, 3);
    expect(h, "later seq");
}
