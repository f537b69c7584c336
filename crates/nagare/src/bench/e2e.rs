//! `nagare bench e2e`: producers at a steady rate and consumers tailing the same partitions in
//! one process; each record's end-to-end latency is the consumer's clock minus the time the
//! record was due to be sent (stamped in its value).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::common::{now_ns, Common, Progress, Side};
use super::consume::{deal, run_rdkafka_consumers, watermarks, RdkafkaRun};
use super::produce::{run_producers, ProduceOpts};

/// Options of `nagare bench e2e` besides the producer's.
#[derive(clap::Args, Clone, Debug)]
pub struct E2eOpts {
    /// Consumer connections; partitions are dealt round-robin among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Seconds to wait for the last records after the producers are done.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
}

/// Default target rate of `e2e` when none is given, in MB/s.
const DEFAULT_E2E_MB_PER_SEC: f64 = 20.0;
/// Default `linger.ms` of `e2e`: with 0, librdkafka sends a request for almost every record at
/// this rate, and acknowledgements then lag far behind delivery to the consumer (see
/// BENCHMARKS.md).
const DEFAULT_E2E_LINGER_MS: f64 = 1.0;
/// Default duration of `e2e` when neither a count nor a duration is given, in seconds.
const DEFAULT_E2E_SECS: f64 = 30.0;

/// `nagare bench e2e`.
pub async fn e2e(common: Common, produce: ProduceOpts, opts: E2eOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.consumers > 0, "--consumers must be at least 1");
    let mut produce = produce;
    if produce.records_per_sec.is_none() && produce.mb_per_sec.is_none() {
        produce.mb_per_sec = Some(DEFAULT_E2E_MB_PER_SEC);
    }
    if produce.count.is_none() && produce.duration.is_none() {
        produce.duration = Some(DEFAULT_E2E_SECS);
    }
    let partitions = common.ensure_topic().await?;
    let c = common.clone();
    let marks = tokio::task::spawn_blocking(move || watermarks(&c, partitions))
        .await
        .context("watermarks task")??;
    // Tail the partitions from their current ends.
    let starts: Vec<(i32, i64)> = marks.iter().map(|&(p, _, high)| (p, high)).collect();
    let assignments = deal(&starts, opts.consumers);

    let acked = Arc::new(Side::default());
    let consumed = Arc::new(Side::default());
    let expect = Arc::new(AtomicU64::new(u64::MAX));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let consumers = {
        let c = common.clone();
        let run = RdkafkaRun {
            fetch_max_bytes: 50 * 1024 * 1024,
            side: consumed.clone(),
            expect: expect.clone(),
            stop: stop_consumers.clone(),
            deadline_ns: None,
            latency: true,
            isolation_level: "read_uncommitted".into(),
        };
        tokio::task::spawn_blocking(move || run_rdkafka_consumers(&c, assignments, run))
    };
    // Let the consumers connect and issue their first fetch before the clock starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let progress = Progress::start(
        common.interval(),
        vec![
            ("ack", acked.clone(), true),
            ("e2e", consumed.clone(), true),
        ],
    );
    let (c, o, a) = (common.clone(), produce.clone(), acked.clone());
    let produced = tokio::task::spawn_blocking(move || {
        run_producers(
            &c,
            &o,
            partitions,
            DEFAULT_E2E_LINGER_MS,
            a,
            Arc::new(AtomicBool::new(false)),
        )
    })
    .await
    .context("producer task");
    let outcome = match produced {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) | Err(e) => {
            stop_consumers.store(true, Ordering::Relaxed);
            let _ = consumers.await;
            return Err(e);
        }
    };
    // Every acknowledged record should arrive; give the consumers a bounded time for it.
    expect.store(
        outcome.acked.records.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    let drain_until = now_ns() + (opts.drain_timeout.max(0.0) * 1e9) as u64;
    while consumed.records.load(Ordering::Relaxed) < expect.load(Ordering::Relaxed)
        && now_ns() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_consumers.store(true, Ordering::Relaxed);
    consumers.await.context("consumer task")??;
    drop(progress);

    let mut summary = json!({
        "workload": "e2e",
        "date": super::common::utc_now(),
        "load_average": super::common::load_average(),
        "topic": common.topic,
        "partitions": partitions,
        "config": produce.to_json(produce.linger_ms.unwrap_or(DEFAULT_E2E_LINGER_MS)),
        "consumers": opts.consumers,
        "sent": outcome.sent,
        "produce": outcome.acked.summary(outcome.start_ns),
        "ack_latency": outcome.acked.latency.total().to_json(),
        "consume": consumed.summary(outcome.start_ns),
        "e2e_latency": consumed.latency.total().to_json(),
        "first_error": outcome.first_error,
    });
    summary["missing"] = json!(outcome
        .acked
        .records
        .load(Ordering::Relaxed)
        .saturating_sub(consumed.records.load(Ordering::Relaxed)));
    common.emit(&summary)
}
