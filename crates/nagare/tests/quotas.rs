//! Client quotas measured with a real client (librdkafka through `rdkafka`), on one server:
//! a producer whose client id has a 5 MiB/s `producer_byte_rate` (set with `nagare quota
//! set`, i.e. AlterClientQuotas through the controller) sustains 5 MiB/s ±10% with
//! throttle_time_ms reported in librdkafka's statistics, while an unthrottled producer beside
//! it on another client id is not held back (its rate is compared with running alone).

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{nagare_bin, TestServer};
use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::DeliveryResult;
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
}

#[derive(Clone, Default)]
struct Ctx(Arc<Meter>);

impl ClientContext for Ctx {
    fn stats(&self, stats: Statistics) {
        for b in stats.brokers.values() {
            if let Some(t) = &b.throttle {
                self.0.throttle_max_ms.fetch_max(t.max, Ordering::Relaxed);
            }
        }
    }
}

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
    cfg.set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "500")
        .set("queue.buffering.max.messages", "20000");
    if pace.is_none() {
        // One request at a time, each waiting out the previous one's throttle_time_ms; and
        // 256 KiB batches, so that the request crossing the quota overshoots it by little.
        cfg.set("max.in.flight.requests.per.connection", "1")
            .set("batch.size", "262144");
    }
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
    // Old segments go quickly so that the unthrottled producer does not fill the disk.
    let mut server = TestServer::start(&["log.retention.check.interval.ms=1000"]);
    server.create_topic(
        TOPIC,
        1,
        &[
            ("segment.bytes", "16777216"),
            ("retention.bytes", "33554432"),
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
    let out = nagare_cli(&server, &["quota", "describe", "--client-id", "throttled"]);
    assert_eq!(
        out.trim(),
        format!("Quota configs for client-id 'throttled' are producer_byte_rate={QUOTA:?}"),
    );

    // The unthrottled producer alone, then with the throttled one beside it, then alone
    // again (the machine is shared: its speed alone is taken before and after).
    let t0 = Instant::now();
    let beside_start = t0 + Duration::from_secs(3);
    let beside_to = beside_start + Duration::from_secs(26);
    let end = beside_to + Duration::from_secs(3);
    let (free, free_thread) = spawn_producer(&server, "unthrottled", end, Some(UNTHROTTLED_PACE));
    let alone_before = rate_between(&free, t0 + Duration::from_secs(1), beside_start);
    let (held, held_thread) = spawn_producer(&server, "throttled", beside_to, None);
    // Delivered bytes of both, every 100 ms.
    let mut series: Vec<(Instant, u64, u64)> = Vec::new();
    while Instant::now() < beside_to {
        series.push((
            Instant::now(),
            held.delivered.load(Ordering::Relaxed),
            free.delivered.load(Ordering::Relaxed),
        ));
        std::thread::sleep(Duration::from_millis(100));
    }
    held_thread.join().expect("throttled producer");
    let alone_after = rate_between(&free, beside_to + Duration::from_secs(1), end);
    free_thread.join().expect("unthrottled producer");
    let alone = (alone_before + alone_after) / 2.0;
    // Kafka's windowed rate lets a client burst up to quota × (samples − 1) windows at
    // first, and that burst recurs whenever the sample holding it expires — about once per
    // `quota.window.num` × `quota.window.size.seconds` (11 s) — with throttled requests
    // trickling in between. The sustained rate is what one whole cycle delivers: from the
    // start of the second burst to the start of the third (the first cycle also holds the
    // initial allowance).
    let burst_starts: Vec<usize> = {
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
        starts
    };
    let per_tick: Vec<u64> = series.windows(2).map(|w| (w[1].1 - w[0].1) >> 10).collect();
    assert!(
        burst_starts.len() >= 3,
        "expected three bursts of the throttled producer, found {burst_starts:?} in (KiB per 100 ms) {per_tick:?}"
    );
    let (from, to) = (&series[burst_starts[1]], &series[burst_starts[2]]);
    let cycle = (to.0 - from.0).as_secs_f64();
    let throttled = (to.1 - from.1) as f64 / cycle;
    let beside = (to.2 - from.2) as f64 / cycle;
    let mib = |r: f64| r / (1024.0 * 1024.0);
    eprintln!(
        "throttled {:.2} MiB/s over a {cycle:.1}-s cycle (quota {:.2}), unthrottled alone {:.2} MiB/s ({:.2} before, {:.2} after), beside {:.2} MiB/s, throttle max {} ms / {} ms",
        mib(throttled),
        mib(QUOTA),
        mib(alone),
        mib(alone_before),
        mib(alone_after),
        mib(beside),
        held.throttle_max_ms.load(Ordering::Relaxed),
        free.throttle_max_ms.load(Ordering::Relaxed),
    );
    assert!(
        (throttled - QUOTA).abs() <= QUOTA * 0.10,
        "the throttled producer ran at {:.2} MiB/s, not 5 MiB/s ±10%",
        mib(throttled)
    );
    assert!(
        held.throttle_max_ms.load(Ordering::Relaxed) > 0,
        "librdkafka saw no throttle_time_ms"
    );
    assert_eq!(
        free.throttle_max_ms.load(Ordering::Relaxed),
        0,
        "the unthrottled producer was throttled"
    );
    // Not held to the quota, and not slowed by its neighbour: it keeps its pace beside it.
    assert!(
        beside > 2.0 * QUOTA && (beside - alone).abs() <= alone * 0.10,
        "the unthrottled producer slowed down: {:.2} MiB/s alone, {:.2} MiB/s beside",
        mib(alone),
        mib(beside)
    );
    server.assert_healthy("after the quota run");
    // `nagare quota delete` removes every key of the entity.
    let out = nagare_cli(&server, &["quota", "delete", "--client-id", "throttled"]);
    assert!(out.contains("Completed deleting"), "{out}");
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
