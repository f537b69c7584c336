//! The producing side: librdkafka producers, one connection each, on their own threads, with
//! the acknowledgement latency of every record taken in the delivery callback.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Message};
use serde_json::{json, Value};

use super::common::{make_payload, now_ns, read_stamp, Common, Side, STAMP_BYTES};

/// Producer options (shared by `produce` and `e2e`).
#[derive(clap::Args, Clone, Debug)]
pub struct ProduceOpts {
    /// Bytes of each record value (no key); the first 8 carry the send time.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// `acks`: all (-1), 1 or 0.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// `compression.type`: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Idempotent producers (`enable.idempotence=true`).
    #[arg(long)]
    pub idempotence: bool,
    /// Target rate in records/s over all producers (default: unthrottled).
    #[arg(long, conflicts_with = "mb_per_sec")]
    pub records_per_sec: Option<f64>,
    /// Target rate in MB/s (10^6 bytes of record values) over all producers (0 = unthrottled).
    #[arg(long)]
    pub mb_per_sec: Option<f64>,
    /// Records to send in all (default 1,000,000 for `produce` unless `--duration` is given).
    #[arg(long)]
    pub count: Option<u64>,
    /// Seconds to send for.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Producer connections (each a librdkafka producer on its own thread).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// `linger.ms` (default: 5 for `produce`, 1 for `e2e`).
    #[arg(long)]
    pub linger_ms: Option<f64>,
    /// `batch.size` in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_size: usize,
    /// `queue.buffering.max.kbytes` per producer: records accepted but not yet acknowledged
    /// (this bounds the queueing part of unthrottled acknowledgement latency).
    #[arg(long, default_value_t = 32 * 1024)]
    pub buffer_kbytes: usize,
    /// Transactional producers committing a transaction every this many records (each
    /// producer its own `transactional.id`); the summary adds committed transactions/s.
    #[arg(long, value_name = "RECORDS")]
    pub transaction_size: Option<u64>,
}

impl ProduceOpts {
    /// The target rate in records/s, if throttled.
    pub fn rate(&self) -> Option<f64> {
        self.records_per_sec
            .or_else(|| {
                self.mb_per_sec
                    .map(|mb| mb * 1e6 / self.record_size.max(1) as f64)
            })
            .filter(|r| *r > 0.0)
    }

    /// The options as JSON, for the summary.
    pub fn to_json(&self, linger_ms: f64) -> Value {
        json!({
            "record_size": self.record_size,
            "acks": self.acks,
            "compression": self.compression,
            "idempotence": self.idempotence,
            "target_records_per_sec": self.rate(),
            "count": self.count,
            "duration_s": self.duration,
            "producers": self.producers,
            "linger_ms": linger_ms,
            "batch_size": self.batch_size,
            "buffer_kbytes": self.buffer_kbytes,
            "transaction_size": self.transaction_size,
        })
    }
}

/// Takes the latency of each acknowledged record from the stamp in its payload.
struct AckContext {
    acked: Arc<Side>,
    first_error: std::sync::Mutex<Option<String>>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let now = now_ns();
        match result {
            Ok(msg) => {
                let payload = msg.payload().unwrap_or_default();
                if let Some(sent) = read_stamp(payload) {
                    self.acked.latency.record(now.saturating_sub(sent));
                }
                self.acked.add(1, payload.len() as u64, now);
            }
            Err((e, _)) => {
                self.acked.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                if first.is_none() {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

/// What the producers did.
pub struct ProduceOutcome {
    /// Acknowledged records, their bytes and acknowledgement latency.
    pub acked: Arc<Side>,
    /// Records handed to librdkafka.
    pub sent: u64,
    /// [`now_ns`] when sending started.
    pub start_ns: u64,
    /// The first delivery error, if any.
    pub first_error: Option<String>,
    /// Transactions committed (transactional producers only).
    pub transactions: u64,
    /// [`now_ns`] when the last transaction was committed.
    pub end_ns: u64,
}

/// Runs the producers until `count` records are sent or `duration` has passed (whichever is
/// given; `count` wins if both are), then waits for every acknowledgement. `acked` receives
/// the acknowledgements as they come (for the progress line). `stop` ends sending early.
pub fn run_producers(
    common: &Common,
    opts: &ProduceOpts,
    partitions: i32,
    default_linger_ms: f64,
    acked: Arc<Side>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<ProduceOutcome> {
    anyhow::ensure!(opts.producers > 0, "--producers must be at least 1");
    anyhow::ensure!(
        opts.transaction_size != Some(0),
        "--transaction-size must be at least 1"
    );
    anyhow::ensure!(
        opts.record_size >= STAMP_BYTES,
        "--record-size must be at least {STAMP_BYTES} (the send time is stamped in the value)"
    );
    let linger = opts.linger_ms.unwrap_or(default_linger_ms);
    let config = common.rdkafka_config(&[
        ("acks", opts.acks.clone()),
        ("compression.type", opts.compression.clone()),
        // Transactional producers are idempotent ones.
        (
            "enable.idempotence",
            (opts.idempotence || opts.transaction_size.is_some()).to_string(),
        ),
        ("linger.ms", linger.to_string()),
        ("batch.size", opts.batch_size.to_string()),
        ("batch.num.messages", "1000000".into()),
        ("queue.buffering.max.kbytes", opts.buffer_kbytes.to_string()),
        ("queue.buffering.max.messages", "10000000".into()),
        ("message.timeout.ms", "120000".into()),
    ])?;
    let mut producers = Vec::with_capacity(opts.producers);
    for i in 0..opts.producers {
        let ctx = AckContext {
            acked: acked.clone(),
            first_error: std::sync::Mutex::new(None),
        };
        let mut config = config.clone();
        if opts.transaction_size.is_some() {
            config
                .set(
                    "transactional.id",
                    format!("nagare-bench-{}-{i}", std::process::id()),
                )
                // librdkafka wants message.timeout.ms (120 s here) <= transaction.timeout.ms;
                // the broker allows up to transaction.max.timeout.ms (15 min).
                .set("transaction.timeout.ms", "120000");
        }
        let p: BaseProducer<AckContext> = config
            .create_with_context(ctx)
            .context("creating a librdkafka producer")?;
        if opts.transaction_size.is_some() {
            p.init_transactions(Duration::from_secs(60))
                .context("init_transactions")?;
        }
        producers.push(p);
    }
    let transactions = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let count = opts.count;
    let deadline_ns = opts
        .duration
        .map(|d| (d.max(0.0) * 1e9) as u64)
        .filter(|_| count.is_none());
    let per_producer_rate = opts.rate().map(|r| r / opts.producers as f64);
    let start_ns = now_ns();
    let mut handles = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let sent = sent.clone();
        let stop = stop.clone();
        let topic = common.topic.clone();
        let record_size = opts.record_size;
        let transaction_size = opts.transaction_size;
        let transactions = transactions.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-producer-{i}"))
                .spawn(move || -> anyhow::Result<Option<String>> {
                    let worker = Worker {
                        producer: &producer,
                        topic: &topic,
                        partitions,
                        first_partition: i as i32,
                        record_size,
                        rate: per_producer_rate,
                        count,
                        deadline_ns: deadline_ns.map(|d| start_ns + d),
                        start_ns,
                        sent: &sent,
                        stop: &stop,
                        transaction_size,
                        transactions: &transactions,
                    };
                    worker.run()?;
                    // Wait for every acknowledgement (delivery callbacks run inside flush).
                    producer
                        .flush(Duration::from_secs(180))
                        .context("waiting for acknowledgements")?;
                    let first = producer
                        .context()
                        .first_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone();
                    Ok(first)
                })
                .context("spawning a producer thread")?,
        );
    }
    let mut first_error = None;
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(e)) => first_error = first_error.or(e),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a producer thread panicked"))),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(ProduceOutcome {
        acked,
        sent: sent.load(Ordering::Relaxed),
        start_ns,
        first_error,
        transactions: transactions.load(Ordering::Relaxed),
        end_ns: now_ns(),
    })
}

/// One producer thread's sending loop.
struct Worker<'a> {
    producer: &'a BaseProducer<AckContext>,
    topic: &'a str,
    partitions: i32,
    first_partition: i32,
    record_size: usize,
    /// Records/s for this producer, if throttled.
    rate: Option<f64>,
    count: Option<u64>,
    deadline_ns: Option<u64>,
    start_ns: u64,
    sent: &'a AtomicU64,
    stop: &'a AtomicBool,
    /// Commit a transaction every this many records (transactional producers).
    transaction_size: Option<u64>,
    /// Transactions committed.
    transactions: &'a AtomicU64,
}

impl Worker<'_> {
    fn run(&self) -> anyhow::Result<()> {
        let mut payload = make_payload(self.record_size);
        let mut partition = self.first_partition % self.partitions;
        let interval_ns = self.rate.map(|r| 1e9 / r.max(1e-9));
        let mut mine: u64 = 0;
        // Records in the open transaction.
        let mut in_txn: u64 = 0;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Some(total) = self.count {
                // Claim one record of the global count.
                if self.sent.fetch_add(1, Ordering::Relaxed) >= total {
                    self.sent.fetch_sub(1, Ordering::Relaxed);
                    break;
                }
            } else {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            let now = now_ns();
            if self.deadline_ns.is_some_and(|d| now >= d) {
                self.sent.fetch_sub(1, Ordering::Relaxed);
                break;
            }
            // When throttled, the stamp is the time the record was due, not the time it went
            // out: a sender that falls behind then shows up in the latency (no coordinated
            // omission).
            let stamp = match interval_ns {
                Some(iv) => {
                    let due = self.start_ns + (mine as f64 * iv) as u64;
                    self.wait_until(due);
                    due
                }
                None => now,
            };
            payload[..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
            if self.transaction_size.is_some() && in_txn == 0 {
                self.producer
                    .begin_transaction()
                    .context("begin_transaction")?;
            }
            let mut record = BaseRecord::to(self.topic)
                .payload(&payload[..])
                .partition(partition);
            let mut full_before = false;
            loop {
                match self.producer.send::<[u8], [u8]>(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        // Serve delivery reports (they free queue space), and sleep if that
                        // was not enough: rust-rdkafka's `poll` with a timeout under 1 ms
                        // busy-waits (librdkafka takes whole milliseconds), which burnt a
                        // core while the queue was full — CPU the brokers on the same
                        // machine needed (issue 17's RF=3 profile).
                        if full_before {
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        self.producer.poll(Duration::ZERO);
                        full_before = true;
                    }
                    Err((e, _)) => return Err(e).context("producing"),
                }
            }
            mine += 1;
            if let Some(size) = self.transaction_size {
                in_txn += 1;
                if in_txn >= size {
                    self.commit()?;
                    in_txn = 0;
                }
            }
            partition = (partition + 1) % self.partitions;
            if mine & 63 == 0 {
                self.producer.poll(Duration::ZERO);
            }
        }
        if in_txn > 0 {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits the open transaction. Its records' delivery reports are served here first, in
    /// short polls: librdkafka's commit waits for them, and rust-rdkafka's `flush` polls in
    /// 100 ms steps, which would cap a producer at ~10 transactions/s.
    fn commit(&self) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.producer.in_flight_count() > 0 {
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "the transaction's records were not acknowledged within 60 s"
            );
            self.producer.poll(Duration::from_millis(1));
        }
        self.producer
            .commit_transaction(Duration::from_secs(60))
            .context("commit_transaction")?;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Serves delivery callbacks until `due` ([`now_ns`]).
    fn wait_until(&self, due: u64) {
        loop {
            let now = now_ns();
            if now >= due {
                return;
            }
            let left = due - now;
            if left > 200_000 {
                // `BaseProducer::poll` waits for its whole timeout; keep it short.
                self.producer
                    .poll(Duration::from_nanos((left - 100_000).min(1_000_000)));
            } else {
                self.producer.poll(Duration::ZERO);
                std::thread::yield_now();
            }
        }
    }
}

/// `nagare bench produce`.
pub async fn produce(common: Common, opts: ProduceOpts) -> anyhow::Result<()> {
    let partitions = common.ensure_topic().await?;
    let mut opts = opts;
    if opts.count.is_none() && opts.duration.is_none() {
        opts.count = Some(1_000_000);
    }
    let acked = Arc::new(Side::default());
    let progress =
        super::common::Progress::start(common.interval(), vec![("produce", acked.clone(), true)]);
    let stop = Arc::new(AtomicBool::new(false));
    let (c, o, a) = (common.clone(), opts.clone(), acked.clone());
    let outcome =
        tokio::task::spawn_blocking(move || run_producers(&c, &o, partitions, 5.0, a, stop))
            .await
            .context("producer task")??;
    drop(progress);
    let mut summary = outcome.acked.summary(outcome.start_ns);
    summary["workload"] = json!("produce");
    summary["date"] = json!(super::common::utc_now());
    summary["load_average"] = json!(super::common::load_average());
    summary["topic"] = json!(common.topic);
    summary["partitions"] = json!(partitions);
    summary["config"] = opts.to_json(opts.linger_ms.unwrap_or(5.0));
    summary["sent"] = json!(outcome.sent);
    summary["ack_latency"] = outcome.acked.latency.total().to_json();
    summary["first_error"] = json!(outcome.first_error);
    if opts.transaction_size.is_some() {
        let secs = (outcome.end_ns.saturating_sub(outcome.start_ns)) as f64 / 1e9;
        summary["transactions"] = json!(outcome.transactions);
        summary["transactions_per_sec"] = json!(if secs > 0.0 {
            outcome.transactions as f64 / secs
        } else {
            0.0
        });
    }
    common.emit(&summary)
}
