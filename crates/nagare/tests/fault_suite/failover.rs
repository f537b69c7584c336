//! Failover in about a second (issue 17), with real processes and Kafka's DEFAULT timings
//! (`broker.session.timeout.ms` 9 s, `broker.heartbeat.interval.ms` 2 s,
//! `replica.lag.time.max.ms` 30 s) on 1 controller + 3 brokers, checked by the fault suite's
//! acked-writes checker ([`super::check_history`]):
//!
//! - **SIGKILL of a partition leader's broker**: idempotent `acks=all` librdkafka producers
//!   with librdkafka's default settings (one per partition, a record every 5 ms) are
//!   acknowledged again on the dead leader's partition within [`FAILOVER_BOUND`] (3 s) of
//!   the kill, and the controller logged that it fenced the broker because its heartbeat
//!   connection was closed (the kernel closes a dead process's sockets; fencing follows
//!   after `nagare.broker.disconnect.fence.grace.ms`), not after the 9 s session;
//! - **SIGSTOP of a leader for 3 s** (less than the session): it keeps its connections open,
//!   so it is NOT fenced: after SIGCONT it still leads its partitions in the same leader
//!   epoch, and the controller logged no fencing of it;
//! - at the end, no acknowledged record is lost (nor duplicated, nor moved).
//!
//! `NAGARE_LONG_TESTS=1` runs 20 kills (each followed by a restart and a wait for the full
//! ISR), prints the p50/p99 of kill → first acknowledgement (BENCHMARKS.md) and asserts the
//! issue's target: p99 (the slowest of 20) below 2 s. What makes it: the controller fences
//! on the closed heartbeat connection (~0.1 s), and the live brokers hold librdkafka's
//! immediate "broker down" Metadata refresh until the new leader is in their image
//! (`nagare.metadata.leader.failover.wait.ms`, `nagare_broker::failover_hold`), instead of
//! answering with the dead leader and leaving the client to its 1 s topic scan.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nagare_client::{Client, PartitionMetadata};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::common::block_on;
use super::common::cluster::TestCluster;
use super::common::replication;
use super::{
    eventually, serial, stop_and_check, value_of, DeliveryRecorder, Recorded, PARTITIONS, TOPIC,
};

/// Only what the test needs beyond Kafka's defaults: no auto-created topics.
const PROPS: &[&str] = &["auto.create.topics.enable=false"];

/// The target for kill → first acknowledgement on the dead leader's partition
/// (p99), asserted over the long run's 20 kills. The tail left is librdkafka's: when the
/// answer that moves the partition also drops the dead broker, its decommission sometimes
/// races with the partition's migration and costs one 1 s topic scan (~1.1 s in all).
const FAILOVER_TARGET: Duration = Duration::from_secs(2);

/// What every single kill must beat (CI, one kill on a possibly loaded machine): one of
/// librdkafka's 1 s re-query periods after the fencing plus slack — a third of the 9 s
/// session timeout that bounds Kafka's failover.
const FAILOVER_BOUND: Duration = Duration::from_secs(3);

/// The fault suite's [`DeliveryRecorder`], plus when each record of producer 0 was
/// acknowledged (by seq).
struct Timed {
    inner: DeliveryRecorder,
    acked_at: Arc<Mutex<Vec<(usize, Duration)>>>,
}

impl rdkafka::ClientContext for Timed {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        self.inner.log(level, fac, message);
    }
}

impl rdkafka::producer::ProducerContext for Timed {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: usize) {
        if result.is_ok() && self.inner.producer == 0 {
            let at = self.inner.rec.since_start();
            self.acked_at.lock().expect("acked at").push((seq, at));
        }
        self.inner.delivery(result, seq);
    }
}

/// A producer with librdkafka's default settings, idempotent and `acks=all`.
fn default_producer(
    bootstrap: &str,
    id: usize,
    rec: &Arc<Recorded>,
    acked_at: &Arc<Mutex<Vec<(usize, Duration)>>>,
) -> BaseProducer<Timed> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        .set("client.id", format!("failover-producer-{id}"))
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("enable.idempotence", "true");
    // `NAGARE_FAILOVER_CLIENT_DEBUG=metadata,broker,topic` prints producer 0's librdkafka log
    // around each kill (where the client's time goes).
    if let Ok(d) = std::env::var("NAGARE_FAILOVER_CLIENT_DEBUG") {
        cfg.set("debug", d);
    }
    cfg.set_log_level(rdkafka::config::RDKafkaLogLevel::Debug)
        .create_with_context(Timed {
            inner: DeliveryRecorder {
                producer: id,
                rec: rec.clone(),
            },
            acked_at: acked_at.clone(),
        })
        .expect("producer")
}

/// Producer 0's (partition 0's) timeline on the recorder's clock: when each record was
/// handed to librdkafka (index = seq) and when each was acknowledged (seq, time).
#[derive(Default)]
struct Timeline {
    sent: Mutex<Vec<Duration>>,
    acked_at: Arc<Mutex<Vec<(usize, Duration)>>>,
}

type SendTimes = Arc<Timeline>;

/// Writes unique values to `partition` every 5 ms until `stop`, then flushes.
fn produce(
    bootstrap: String,
    id: usize,
    stop: Arc<AtomicBool>,
    rec: Arc<Recorded>,
    sent: SendTimes,
) {
    let producer = default_producer(&bootstrap, id, &rec, &sent.acked_at);
    let mut seq = 0usize;
    while !stop.load(Ordering::SeqCst) {
        if id == 0 {
            let mut s = sent.sent.lock().expect("send times");
            if s.len() == seq {
                s.push(rec.since_start());
            }
        }
        let value = value_of(id, seq);
        let record = BaseRecord::with_opaque_to(TOPIC, seq)
            .partition(id as i32)
            .key(&value)
            .payload(&value);
        match producer.send(record) {
            Ok(()) => seq += 1,
            Err(_) => producer.poll(Duration::from_millis(20)),
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Err(e) = producer.flush(Duration::from_secs(60)) {
        eprintln!("failover producer {id}: flush: {e}");
    }
}

/// Every partition's metadata, asked from `bootstrap` (bounded: a stopped broker in the
/// list must not hang the test).
pub(super) fn partitions(bootstrap: &str) -> Option<Vec<PartitionMetadata>> {
    block_on(async {
        tokio::time::timeout(Duration::from_secs(3), async {
            let mut c = Client::connect_to(bootstrap).await.ok()?;
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

/// A 1-controller + 3-broker cluster with [`PROPS`], `props` and the `sep`-separated
/// `key=value` settings of the environment variable `extra_var`, and the suite's topic at
/// RF=3 with `min.insync.replicas=2` and its full ISR; returns the cluster and its bootstrap.
pub(super) fn rf3_cluster(more: Vec<String>, extra_var: &str, sep: char) -> (TestCluster, String) {
    let mut props: Vec<String> = PROPS.iter().map(|p| p.to_string()).collect();
    props.extend(more);
    if let Ok(extra) = std::env::var(extra_var) {
        props.extend(
            extra
                .split(sep)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
        );
    }
    let props: Vec<&str> = props.iter().map(String::as_str).collect();
    let mut cluster = TestCluster::new(1, 3, &props);
    cluster.start_all(Duration::from_secs(60));
    let boot = cluster.bootstrap();
    replication::create_topic(&boot, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    eventually(Duration::from_secs(30), "the full ISR", || full_isr(&boot));
    (cluster, boot)
}

pub(super) fn full_isr(bootstrap: &str) -> Option<Vec<PartitionMetadata>> {
    partitions(bootstrap).filter(|ps| ps.iter().all(|p| p.leader >= 0 && p.isr.len() == 3))
}

/// The running brokers' listeners, except `skip`.
fn bootstrap_without(cluster: &mut TestCluster, skip: i32) -> String {
    let ids: Vec<i32> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_broker() && n.id != skip)
        .map(|n| n.id)
        .collect();
    ids.into_iter()
        .filter_map(|id| {
            let n = cluster.node(id);
            n.is_running().then(|| n.bootstrap())
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// SIGKILLs the leader of partition 0 and returns (the broker, kill → first acknowledgement
/// of a record sent to partition 0 after the kill).
fn kill_leader_and_time_failover(
    cluster: &mut TestCluster,
    rec: &Arc<Recorded>,
    sent: &SendTimes,
) -> (i32, Duration) {
    let boot = cluster.bootstrap();
    let leader = eventually(Duration::from_secs(30), "a leader of partition 0", || {
        partitions(&boot).and_then(|ps| (ps[0].leader >= 0).then_some(ps[0].leader))
    });
    // Acknowledgements must be flowing on partition 0 before the kill.
    let before = rec.since_start();
    eventually(
        Duration::from_secs(30),
        "acknowledgements before the kill",
        || {
            std::thread::sleep(Duration::from_millis(300));
            acks_on_partition_0_after(rec, before).map(|_| ())
        },
    );
    let killed_at = rec.since_start();
    cluster.node(leader).kill9();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "SIGKILL of broker {leader} at unix {}.{:03} (recorder clock {:.3} s)",
        wall.as_secs(),
        wall.subsec_millis(),
        killed_at.as_secs_f64()
    );
    let first = eventually(
        Duration::from_secs(30),
        "an acknowledgement of a record sent to partition 0 after the kill",
        || first_ack_of_record_sent_after(sent, killed_at),
    );
    (leader, first - killed_at)
}

/// The first acknowledgement of a record sent to partition 0 (by producer 0) after `t`.
fn first_ack_of_record_sent_after(sent: &Timeline, t: Duration) -> Option<Duration> {
    let first_seq = sent
        .sent
        .lock()
        .expect("send times")
        .iter()
        .position(|at| *at > t)?;
    sent.acked_at
        .lock()
        .expect("acked at")
        .iter()
        .filter(|(seq, _)| *seq >= first_seq)
        .map(|(_, at)| *at)
        .min()
}

/// The first acknowledgement of partition 0 recorded after `t` (on the recorder's clock).
fn acks_on_partition_0_after(rec: &Recorded, t: Duration) -> Option<Duration> {
    rec.ack_times
        .lock()
        .expect("ack times")
        .iter()
        .filter(|(at, p)| *p == 0 && *at > t)
        .map(|(at, _)| *at)
        .min()
}

/// Lines of the controller's output that fence broker `id`.
fn fencing_lines(cluster: &mut TestCluster, id: i32) -> Vec<String> {
    let out = cluster.node(1).output();
    let needle = format!("broker={id}");
    out.lines()
        .filter(|l| l.contains("fencing broker") && l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Lines the brokers logged since the last call about Metadata answers they held across a
/// leader's death, or about seeing a peer die (`nagare.metadata.leader.failover.wait.ms`);
/// `seen` keeps how many lines of each broker's output were already returned.
fn new_hold_lines(
    cluster: &mut TestCluster,
    seen: &mut std::collections::HashMap<i32, usize>,
) -> Vec<String> {
    let ids: Vec<i32> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_broker())
        .map(|n| n.id)
        .collect();
    // `NAGARE_FAILOVER_TRACE_METADATA=1` (with `NAGARE_FAILOVER_PROPS=log.levels=
    // nagare_broker::request_logger=DEBUG`) also shows every Metadata request the brokers
    // completed, to see when the clients asked.
    let trace_metadata = std::env::var("NAGARE_FAILOVER_TRACE_METADATA").is_ok_and(|v| v == "1");
    let mut out = Vec::new();
    for id in ids {
        let lines: Vec<String> = cluster
            .node(id)
            .output()
            .lines()
            .filter(|l| {
                l.contains("Metadata answer held")
                    || l.contains("closed or refused our connection")
                    || (trace_metadata && l.contains("api=Metadata"))
            })
            .map(|l| format!("broker {id}: {l}"))
            .collect();
        let from = seen.insert(id, lines.len()).unwrap_or(0).min(lines.len());
        out.extend(lines.into_iter().skip(from));
    }
    out
}

fn percentile(sorted: &[Duration], pct: f64) -> Duration {
    let i = ((sorted.len() as f64 * pct / 100.0).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[test]
fn sigkilled_leader_fails_over_within_two_seconds_and_a_stopped_one_is_not_fenced() {
    let _serial = serial();
    let long = std::env::var("NAGARE_LONG_TESTS").is_ok_and(|v| v == "1");
    let t0 = Instant::now();
    // `NAGARE_FAILOVER_GRACE_MS` overrides nagare.broker.disconnect.fence.grace.ms (to
    // measure its effect; -1 is Kafka's behaviour, fencing on the session timeout only).
    let mut props: Vec<String> = Vec::new();
    if let Ok(g) = std::env::var("NAGARE_FAILOVER_GRACE_MS") {
        props.push(format!("nagare.broker.disconnect.fence.grace.ms={g}"));
    }
    // `NAGARE_FAILOVER_PROPS` (`;`-separated `key=value`) adds node settings, e.g.
    // `nagare.metadata.leader.failover.wait.ms=0` to measure without the Metadata hold.
    let (mut cluster, boot) = rf3_cluster(props, "NAGARE_FAILOVER_PROPS", ';');

    let rec = Arc::new(Recorded::default());
    *rec.started.lock().expect("started") = Some(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let sent: SendTimes = Arc::default();
    let producers: Vec<_> = (0..PARTITIONS as usize)
        .map(|id| {
            let (b, s, r, t) = (boot.clone(), stop.clone(), rec.clone(), sent.clone());
            std::thread::spawn(move || produce(b, id, s, r, t))
        })
        .collect();

    // SIGKILL of partition 0's leader (20 times with NAGARE_LONG_TESTS=1).
    let rounds = if long { 20 } else { 1 };
    let mut times = Vec::new();
    let mut holds_seen = std::collections::HashMap::new();
    for round in 0..rounds {
        let (killed, took) = kill_leader_and_time_failover(&mut cluster, &rec, &sent);
        eprintln!(
            "[{:>6.2}s] kill {}: broker {killed} SIGKILLed, partition 0 acknowledged again after {} ms",
            t0.elapsed().as_secs_f64(),
            round + 1,
            took.as_millis()
        );
        times.push(took);
        if std::env::var("NAGARE_FAILOVER_CLIENT_DEBUG").is_ok() {
            for l in rec.client_log.lock().expect("client log").drain(..) {
                if l.contains("producer 0 ") {
                    eprintln!("{l}");
                }
            }
        }
        let fenced = fencing_lines(&mut cluster, killed);
        eprintln!("controller: {:?}", fenced.last());
        for l in new_hold_lines(&mut cluster, &mut holds_seen) {
            eprintln!("{l}");
        }
        assert!(
            fenced
                .iter()
                .any(|l| l.contains("heartbeat connection was closed")),
            "broker {killed} was not fenced on its closed connection: {fenced:?}"
        );
        if round + 1 < rounds {
            cluster.node(killed).start();
            cluster.node(killed).wait_ready(Duration::from_secs(60));
            let b = cluster.bootstrap();
            eventually(Duration::from_secs(60), "the full ISR again", || {
                full_isr(&b)
            });
        } else {
            // Leave it dead for the SIGSTOP part: 2 brokers are enough for min.insync 2.
            let b = cluster.bootstrap();
            eventually(
                Duration::from_secs(30),
                "an ISR of the two live brokers",
                || partitions(&b).filter(|ps| ps.iter().all(|p| p.leader >= 0 && p.isr.len() == 2)),
            );
        }
    }
    let mut sorted = times.clone();
    sorted.sort();
    eprintln!(
        "failover (kill -> first ack) over {} kills: p50 {} ms, p99 {} ms, max {} ms; all: {:?}",
        sorted.len(),
        percentile(&sorted, 50.0).as_millis(),
        percentile(&sorted, 99.0).as_millis(),
        sorted.last().map_or(0, |d| d.as_millis()),
        times.iter().map(|d| d.as_millis()).collect::<Vec<_>>()
    );
    let p99 = percentile(&sorted, 99.0);
    eprintln!(
        "p99 {} the issue's target of {FAILOVER_TARGET:?}",
        if p99 < FAILOVER_TARGET {
            "meets"
        } else {
            "misses"
        }
    );
    assert!(
        p99 < FAILOVER_BOUND,
        "failover took {p99:?} (p99/max), more than {FAILOVER_BOUND:?}"
    );
    if long {
        assert!(
            p99 < FAILOVER_TARGET,
            "failover took {p99:?} (p99 of {} kills), more than {FAILOVER_TARGET:?}",
            sorted.len()
        );
    }

    // SIGSTOP of a live leader for 3 s (< the 9 s session): not fenced, leadership unchanged.
    let boot = cluster.bootstrap();
    let before = eventually(Duration::from_secs(30), "partition metadata", || {
        partitions(&boot)
    });
    let stopped = before[1].leader;
    let led: Vec<(i32, i32)> = before
        .iter()
        .filter(|p| p.leader == stopped)
        .map(|p| (p.partition, p.leader_epoch))
        .collect();
    let fenced_before = fencing_lines(&mut cluster, stopped).len();
    cluster.node(stopped).signal("STOP");
    std::thread::sleep(Duration::from_secs(3));
    cluster.node(stopped).signal("CONT");
    std::thread::sleep(Duration::from_secs(1));
    let others = bootstrap_without(&mut cluster, stopped);
    let after = eventually(Duration::from_secs(10), "partition metadata", || {
        partitions(&others)
    });
    // Within replica.lag.time.max.ms (30 s) the stopped broker stays in every ISR it was in.
    for (b, a) in before.iter().zip(&after) {
        assert!(
            !b.isr.contains(&stopped) || a.isr.contains(&stopped),
            "partition {} dropped broker {stopped} from its ISR after a 3 s stop: {:?} -> {:?}",
            b.partition,
            b.isr,
            a.isr
        );
    }
    for (p, epoch) in &led {
        let now = &after[*p as usize];
        assert_eq!(
            (now.leader, now.leader_epoch),
            (stopped, *epoch),
            "partition {p} changed leadership while broker {stopped} was stopped for 3 s: {now:?}"
        );
    }
    assert_eq!(
        fencing_lines(&mut cluster, stopped).len(),
        fenced_before,
        "broker {stopped} was fenced while stopped for less than the session timeout"
    );

    // Stop, flush, and check every acknowledged record against the final log.
    stop_and_check(
        "failover test",
        &stop,
        producers,
        &rec,
        &cluster.bootstrap(),
        t0,
    );
}
