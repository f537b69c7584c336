//! Client quotas measured with a real client (librdkafka through `rdkafka`, with its default
//! five requests in flight and 1 MB batches), on one server: a producer whose client id has a
//! 5 MiB/s `producer_byte_rate` (set with `nagare quota set`, i.e. AlterClientQuotas through
//! the controller) sustains 5 MiB/s ±10% with throttle_time_ms reported in librdkafka's
//! statistics, while an unthrottled producer beside it on another client id is not held back
//! (its rate is compared with running alone); a consumer whose client id has a 5 MiB/s
//! `consumer_byte_rate` is held to it the same way, in the same run.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{nagare_bin, TestServer};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext, PurgeConfig};
use rdkafka::Statistics;

const TOPIC: &str = "quota-it";
/// 5 MiB/s.
const QUOTA: f64 = 5.0 * 1024.0 * 1024.0;
const VALUE_BYTES: usize = 1000;
/// The unthrottled producer offers 25 MiB/s (5× the quota): enough to show it is not held
/// to the quota, little enough that a shared test machine keeps up with it, so that its rate
/// alone and beside the throttled one can be compared.
const UNTHROTTLED_PACE: f64 = 25.0 * 1024.0 * 1024.0;

/// Counts delivered payload bytes and the largest throttle time librdkafka reported.
#[derive(Default)]
struct Meter {
    delivered: AtomicU64,
    throttle_max_ms: AtomicI64,
    /// The client's per-broker connection counters, last seen (diagnostics).
    brokers: std::sync::Mutex<String>,
    /// Requests librdkafka timed out (each one retried after the broker counted it).
    req_timeouts: AtomicU64,
}

#[derive(Clone, Default)]
struct Ctx(Arc<Meter>);

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        let mut seen = String::new();
        let timeouts: u64 = stats.brokers.values().map(|b| b.req_timeouts).sum();
        self.0.req_timeouts.store(timeouts, Ordering::Relaxed);
        for b in stats.brokers.values() {
            if let Some(t) = &b.throttle {
                self.0.throttle_max_ms.fetch_max(t.max, Ordering::Relaxed);
            }
            seen.push_str(&format!(
                "{}: connects {:?} disconnects {:?} req_timeouts {} txretries {} txerrs {}; ",
                b.name, b.connects, b.disconnects, b.req_timeouts, b.txretries, b.txerrs
            ));
        }
        if let Ok(mut b) = self.0.brokers.lock() {
            *b = seen;
        }
    }
}

impl ConsumerContext for Ctx {}

impl ProducerContext for Ctx {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.0
                .delivered
                .fetch_add(VALUE_BYTES as u64, Ordering::Relaxed);
        }
    }
}

/// Produces until `stop` (an instant), from a thread: as fast as the client allows, or at
/// most `pace` bytes/s.
fn spawn_producer(
    server: &TestServer,
    client_id: &str,
    stop: Instant,
    pace: Option<f64>,
) -> (Arc<Meter>, std::thread::JoinHandle<()>) {
    let ctx = Ctx::default();
    let meter = ctx.0.clone();
    let mut cfg = server.client_config();
    // librdkafka's own socket.timeout.ms (60 s), not the harness's 10 s: with five requests
    // in flight, the last one waits out the mutes of the four before it, and a request that
    // times out is retried after the broker already counted it against the quota (seen as
    // 20-odd request timeouts and a producer at 4.0-4.2 MiB/s with 10 s).
    cfg.set("client.id", client_id)
        .set("socket.timeout.ms", "60000")
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "500")
        .set("queue.buffering.max.messages", "20000");
    let producer: BaseProducer<Ctx> = cfg.create_with_context(ctx).expect("producer");
    let handle = std::thread::spawn(move || {
        let value = vec![b'q'; VALUE_BYTES];
        let started = Instant::now();
        let mut offered = 0f64;
        while Instant::now() < stop {
            if let Some(rate) = pace {
                if offered > rate * started.elapsed().as_secs_f64() {
                    producer.poll(Duration::from_millis(1));
                    continue;
                }
            }
            match producer.send(BaseRecord::<(), _>::to(TOPIC).payload(&value)) {
                Ok(()) => offered += VALUE_BYTES as f64,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("produce failed: {e}"),
            }
            producer.poll(Duration::ZERO);
        }
        // What is still queued is not measured: drop it instead of waiting for it.
        producer.purge(PurgeConfig::default().queue().inflight());
        producer.poll(Duration::from_millis(100));
    });
    (meter, handle)
}

/// Consumes `TOPIC` from its start until `stop`, from a thread, counting payload bytes.
fn spawn_consumer(
    server: &TestServer,
    client_id: &str,
    stop: Instant,
) -> (Arc<Meter>, std::thread::JoinHandle<()>) {
    let ctx = Ctx::default();
    let meter = ctx.0.clone();
    let mut cfg = server.client_config();
    cfg.set("client.id", client_id)
        .set("socket.timeout.ms", "60000")
        .set("group.id", "quota-it-consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("statistics.interval.ms", "500");
    let consumer: BaseConsumer<Ctx> = cfg.create_with_context(ctx).expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let counted = meter.clone();
    let handle = std::thread::spawn(move || {
        while Instant::now() < stop {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                let n = m.payload().map_or(0, |p| p.len()) as u64;
                counted.delivered.fetch_add(n, Ordering::Relaxed);
            }
        }
    });
    (meter, handle)
}

/// The sustained rate of a greedy client held by a quota, from delivered-byte samples taken
/// every 100 ms: Kafka's windowed rate lets it burst up to quota × (samples − 1) windows at
/// first, and that burst recurs whenever the sample holding it leaves the rate — about once
/// per `quota.window.num` × `quota.window.size.seconds` (11 s) — with throttled requests
/// trickling in between. The sustained rate is what whole cycles deliver: from the start of
/// the second burst to the start of the fourth (the first cycle also holds the initial
/// allowance; one cycle alone varies by some percent with where the burst falls in its
/// sample and whether it leaves the rate while the client is muted). Returns (bytes/s, the
/// span's first and last sample index).
fn sustained_rate(name: &str, series: &[(Instant, u64)]) -> (f64, usize, usize) {
    let mut starts: Vec<usize> = Vec::new();
    for i in 1..series.len() {
        let delta = series[i].1 - series[i - 1].1;
        let recent = starts
            .last()
            .is_some_and(|&j| series[i].0 - series[j].0 < Duration::from_secs(3));
        if delta >= 3 * 1024 * 1024 && !recent {
            starts.push(i - 1);
        }
    }
    let per_tick: Vec<u64> = series.windows(2).map(|w| (w[1].1 - w[0].1) >> 10).collect();
    eprintln!("{name}, KiB per 100 ms: {per_tick:?}; bursts at {starts:?}");
    assert!(
        starts.len() >= 4,
        "expected four bursts of the {name}, found {starts:?}"
    );
    let (from, to) = (&series[starts[1]], &series[starts[3]]);
    let span = (to.0 - from.0).as_secs_f64();
    ((to.1 - from.1) as f64 / span, starts[1], starts[3])
}

/// Bytes/s delivered over [from, to] (sleeps until `to`).
fn rate_between(meter: &Meter, from: Instant, to: Instant) -> f64 {
    std::thread::sleep(from.saturating_duration_since(Instant::now()));
    let start = meter.delivered.load(Ordering::Relaxed);
    std::thread::sleep(to.saturating_duration_since(Instant::now()));
    let end = meter.delivered.load(Ordering::Relaxed);
    (end - start) as f64 / (to - from).as_secs_f64()
}

fn nagare_cli(server: &TestServer, args: &[&str]) -> String {
    let out = Command::new(nagare_bin())
        .args(args)
        .env("NAGARE_BOOTSTRAP_SERVER", server.bootstrap())
        .stdin(Stdio::null())
        .output()
        .expect("run nagare");
    assert!(
        out.status.success(),
        "nagare {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn producer_byte_rate_quota_holds_a_producer_and_spares_its_neighbour() {
    // Old segments go, so that the unthrottled producer does not fill the disk — but not
    // before the throttled consumer, reading from the start at 5 MiB/s while ~30 MiB/s are
    // written, has read them (about 1.2 GiB are written in the whole run).
    let mut server = TestServer::start(&["log.retention.check.interval.ms=1000"]);
    server.create_topic(
        TOPIC,
        1,
        &[
            ("segment.bytes", "16777216"),
            ("retention.bytes", "1342177280"),
        ],
    );
    let quota = format!("{}", QUOTA as u64);
    let out = nagare_cli(
        &server,
        &[
            "quota",
            "set",
            "--client-id",
            "throttled",
            "--producer-byte-rate",
            &quota,
        ],
    );
    assert!(out.contains("client-id 'throttled'"), "{out}");
    nagare_cli(
        &server,
        &[
            "quota",
            "set",
            "--client-id",
            "throttled-consumer",
            "--consumer-byte-rate",
            &quota,
        ],
    );
    let out = nagare_cli(&server, &["quota", "describe", "--client-id", "throttled"]);
    assert_eq!(
        out.trim(),
        format!("Quota configs for client-id 'throttled' are producer_byte_rate={QUOTA:?}"),
    );

    // The unthrottled producer alone, then with the throttled one beside it, then alone
    // again (the machine is shared: its speed alone is taken before and after).
    let t0 = Instant::now();
    let beside_start = t0 + Duration::from_secs(3);
    let beside_to = beside_start + Duration::from_secs(38);
    let end = beside_to + Duration::from_secs(3);
    let (free, free_thread) = spawn_producer(&server, "unthrottled", end, Some(UNTHROTTLED_PACE));
    let alone_before = rate_between(&free, t0 + Duration::from_secs(1), beside_start);
    let (held, held_thread) = spawn_producer(&server, "throttled", beside_to, None);
    let (reader, reader_thread) = spawn_consumer(&server, "throttled-consumer", beside_to);
    // Delivered bytes of the three, every 100 ms.
    let mut series: Vec<(Instant, u64, u64, u64)> = Vec::new();
    let mut connections = String::new();
    let mut timeouts = 0;
    while Instant::now() < beside_to {
        if connections.is_empty() && Instant::now() + Duration::from_secs(1) > beside_to {
            // Before the end's purge (which times requests out and drops the connection).
            connections = held.brokers.lock().map(|b| b.clone()).unwrap_or_default();
            timeouts = held.req_timeouts.load(Ordering::Relaxed);
        }
        series.push((
            Instant::now(),
            held.delivered.load(Ordering::Relaxed),
            free.delivered.load(Ordering::Relaxed),
            reader.delivered.load(Ordering::Relaxed),
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    held_thread.join().expect("throttled producer");
    reader_thread.join().expect("throttled consumer");
    let alone_after = rate_between(&free, beside_to + Duration::from_secs(1), end);
    free_thread.join().expect("unthrottled producer");
    let alone = (alone_before + alone_after) / 2.0;
    let column = |f: fn(&(Instant, u64, u64, u64)) -> u64| -> Vec<(Instant, u64)> {
        series.iter().map(|r| (r.0, f(r))).collect()
    };
    let (throttled, from, to) = sustained_rate("throttled producer", &column(|r| r.1));
    let cycle = (series[to].0 - series[from].0).as_secs_f64();
    let (consumed, c_from, c_to) = sustained_rate("throttled consumer", &column(|r| r.3));
    let consumer_cycle = (series[c_to].0 - series[c_from].0).as_secs_f64();
    // The unthrottled producer over the throttled producer's cycle.
    let beside = (series[to].2 - series[from].2) as f64 / cycle;
    let mib = |r: f64| r / (1024.0 * 1024.0);
    eprintln!("throttled producer's connections before the end: {connections}");
    eprintln!(
        "throttled producer {:.2} MiB/s over two cycles ({cycle:.1} s; quota {:.2}), throttled consumer {:.2} MiB/s over two cycles ({consumer_cycle:.1} s), unthrottled alone {:.2} MiB/s ({:.2} before, {:.2} after), beside {:.2} MiB/s, throttle max {} ms (producer) / {} ms (consumer) / {} ms (unthrottled)",
        mib(throttled),
        mib(QUOTA),
        mib(consumed),
        mib(alone),
        mib(alone_before),
        mib(alone_after),
        mib(beside),
        held.throttle_max_ms.load(Ordering::Relaxed),
        reader.throttle_max_ms.load(Ordering::Relaxed),
        free.throttle_max_ms.load(Ordering::Relaxed),
    );
    assert_eq!(
        timeouts, 0,
        "the throttled producer's requests timed out: {connections}"
    );
    assert!(
        (throttled - QUOTA).abs() <= QUOTA * 0.10,
        "the throttled producer ran at {:.2} MiB/s, not 5 MiB/s ±10%",
        mib(throttled)
    );
    assert!(
        (consumed - QUOTA).abs() <= QUOTA * 0.10,
        "the throttled consumer read {:.2} MiB/s, not 5 MiB/s ±10%",
        mib(consumed)
    );
    assert!(
        held.throttle_max_ms.load(Ordering::Relaxed) > 0,
        "librdkafka saw no throttle_time_ms on produce"
    );
    assert!(
        reader.throttle_max_ms.load(Ordering::Relaxed) > 0,
        "librdkafka saw no throttle_time_ms on fetch"
    );
    assert_eq!(
        free.throttle_max_ms.load(Ordering::Relaxed),
        0,
        "the unthrottled producer was throttled"
    );
    // Not held to the quota, and not slowed by its neighbours: it keeps its pace beside them.
    assert!(
        beside > 2.0 * QUOTA && (beside - alone).abs() <= alone * 0.10,
        "the unthrottled producer slowed down: {:.2} MiB/s alone, {:.2} MiB/s beside",
        mib(alone),
        mib(beside)
    );
    server.assert_healthy("after the quota run");
    // `nagare quota delete` removes every key of the entity.
    for client in ["throttled", "throttled-consumer"] {
        let out = nagare_cli(&server, &["quota", "delete", "--client-id", client]);
        assert!(out.contains("Completed deleting"), "{out}");
    }
    let out = nagare_cli(&server, &["quota", "describe"]);
    assert_eq!(out.trim(), "", "no quota left");

    // A `connection_creation_rate` ip quota: 2 new connections/s from 127.0.0.1, i.e. 20
    // within the 10-s minimum window; the ones beyond are closed by the broker after the
    // throttle time (Kafka's delayed close), the others stay open.
    nagare_cli(
        &server,
        &[
            "quota",
            "set",
            "--ip",
            "127.0.0.1",
            "--connection-creation-rate",
            "2",
        ],
    );
    let conns: Vec<std::net::TcpStream> = (0..26)
        .map(|_| std::net::TcpStream::connect(server.direct_addr()).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let closed = conns
        .iter()
        .filter(|c| {
            use std::io::Read;
            c.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("timeout");
            matches!((&**c).read(&mut [0u8; 1]), Ok(0))
                || matches!((&**c).read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
        })
        .count();
    assert!(
        (3..=10).contains(&closed),
        "{closed} of 26 connections closed under a 2/s connection_creation_rate"
    );
}
