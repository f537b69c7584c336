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

/// Produces as fast as the client allows until `stop` (an instant), from a thread.
fn spawn_producer(
    server: &TestServer,
    client_id: &str,
    stop: Instant,
) -> (Arc<Meter>, std::thread::JoinHandle<()>) {
    let ctx = Ctx::default();
    let meter = ctx.0.clone();
    let mut cfg = server.client_config();
    cfg.set("client.id", client_id)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("statistics.interval.ms", "500")
        .set("queue.buffering.max.messages", "20000");
    let producer: BaseProducer<Ctx> = cfg.create_with_context(ctx).expect("producer");
    let handle = std::thread::spawn(move || {
        let value = vec![b'q'; VALUE_BYTES];
        while Instant::now() < stop {
            match producer.send(BaseRecord::<(), _>::to(TOPIC).payload(&value)) {
                Ok(()) => {}
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

    // The unthrottled producer alone, then with the throttled one beside it.
    let t0 = Instant::now();
    let alone_from = t0 + Duration::from_secs(1);
    let beside_start = t0 + Duration::from_secs(4);
    // The throttled producer may burst up to quota × (samples − 1) windows at first (Kafka's
    // windowed rate); it is measured once that allowance is used up.
    let measure_from = beside_start + Duration::from_secs(4);
    let measure_to = measure_from + Duration::from_secs(10);
    let (free, free_thread) = spawn_producer(&server, "unthrottled", measure_to);
    let alone = rate_between(&free, alone_from, beside_start);
    let (held, held_thread) = spawn_producer(&server, "throttled", measure_to);
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let (free_start, held_start) = (
        free.delivered.load(Ordering::Relaxed),
        held.delivered.load(Ordering::Relaxed),
    );
    std::thread::sleep(measure_to.saturating_duration_since(Instant::now()));
    let secs = (measure_to - measure_from).as_secs_f64();
    let beside = (free.delivered.load(Ordering::Relaxed) - free_start) as f64 / secs;
    let throttled = (held.delivered.load(Ordering::Relaxed) - held_start) as f64 / secs;
    free_thread.join().expect("unthrottled producer");
    held_thread.join().expect("throttled producer");
    let mib = |r: f64| r / (1024.0 * 1024.0);
    eprintln!(
        "throttled {:.2} MiB/s (quota {:.2}), unthrottled alone {:.2} MiB/s, beside {:.2} MiB/s, throttle max {} ms / {} ms",
        mib(throttled),
        mib(QUOTA),
        mib(alone),
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
    // Not held to the quota, and not slowed by its neighbour beyond the noise of a shared
    // machine (both rates are printed above).
    assert!(
        beside > 2.0 * QUOTA && beside >= 0.5 * alone,
        "the unthrottled producer slowed down: {:.2} MiB/s alone, {:.2} MiB/s beside",
        mib(alone),
        mib(beside)
    );
    server.assert_healthy("after the quota run");
}
