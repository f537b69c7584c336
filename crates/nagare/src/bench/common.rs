//! Pieces shared by the benchmark workloads: the clock stamped into payloads, latency
//! histograms, throughput counters, the progress line, the JSON summary, librdkafka
//! configuration and topic setup.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use nagare_client::{NewTopic, ResponseError};
use rdkafka::config::ClientConfig;
use serde_json::{json, Value};

/// Bytes at the start of every payload that carry the send time ([`now_ns`] at send).
pub const STAMP_BYTES: usize = 8;

/// Largest latency the histograms hold (one hour, in nanoseconds); larger values saturate.
const MAX_LATENCY_NS: u64 = 3_600 * 1_000_000_000;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process, on the monotonic clock. Producers stamp
/// it into payloads and consumers in the same process subtract it from their own reading, so
/// end-to-end latency needs no synchronized wall clocks.
pub fn now_ns() -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Reads the send stamp at the start of a payload, if it is long enough to carry one.
pub fn read_stamp(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; STAMP_BYTES] = payload.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// A payload of `size` pseudo-random upper-case letters (compressible about as well as
/// Kafka's `kafka-producer-perf-test` payloads), leaving room for the send stamp.
pub fn make_payload(size: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            // xorshift64*: enough to defeat trivial compression, no dependency needed.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            b'A' + (r >> 59) as u8 % 26
        })
        .collect()
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits from 1 ns to an hour; the bounds are constants that
    // `new_with_bounds` accepts, so failure here would be a programming error.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).unwrap_or_else(|_| {
        Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits are valid"))
    })
}

/// A latency histogram recorded from several threads: the whole run, and the interval since
/// the last progress line.
pub struct Latency {
    inner: Mutex<(Histogram<u64>, Histogram<u64>)>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            inner: Mutex::new((new_histogram(), new_histogram())),
        }
    }
}

impl Latency {
    /// Records one latency in nanoseconds.
    pub fn record(&self, ns: u64) {
        let ns = ns.clamp(1, MAX_LATENCY_NS);
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.saturating_record(ns);
        guard.1.saturating_record(ns);
    }

    /// Records many latencies, taking the lock once.
    pub fn record_all(&self, values: &[u64]) {
        if values.is_empty() {
            return;
        }
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for &ns in values {
            let ns = ns.clamp(1, MAX_LATENCY_NS);
            guard.0.saturating_record(ns);
            guard.1.saturating_record(ns);
        }
    }

    /// Takes the interval histogram's summary and resets it.
    fn take_interval(&self) -> Percentiles {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let p = Percentiles::of(&guard.1);
        guard.1.reset();
        p
    }

    /// The whole run's summary.
    pub fn total(&self) -> Percentiles {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        Percentiles::of(&guard.0)
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    /// Number of values recorded.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Maximum.
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Percentiles {
            count: h.len(),
            mean: h.mean() / 1e6,
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// The summary as JSON (milliseconds).
    pub fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "mean_ms": round3(self.mean),
            "p50_ms": round3(self.p50),
            "p99_ms": round3(self.p99),
            "p99_9_ms": round3(self.p999),
            "max_ms": round3(self.max),
        })
    }

    fn short(self) -> String {
        if self.count == 0 {
            return "-".into();
        }
        format!(
            "p50 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms",
            self.p50, self.p99, self.p999, self.max
        )
    }
}

/// Rounds to three decimals for the JSON summary.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Counters of one side of a run (records and bytes done, errors) with the latency of each
/// record, shared by the worker threads and the progress reporter.
#[derive(Default)]
pub struct Side {
    /// Records done (acknowledged, or consumed).
    pub records: AtomicU64,
    /// Payload bytes done.
    pub bytes: AtomicU64,
    /// Failed records.
    pub errors: AtomicU64,
    /// Per-record latency (acknowledgement or end-to-end), when measured.
    pub latency: Latency,
    /// [`now_ns`] of the first and the last record done (0 = none yet).
    first_ns: AtomicU64,
    last_ns: AtomicU64,
}

impl Side {
    /// Counts `records` records of `bytes` payload bytes done at `now` ([`now_ns`]).
    pub fn add(&self, records: u64, bytes: u64, now: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        let _ = self
            .first_ns
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
        self.last_ns.fetch_max(now, Ordering::Relaxed);
    }

    /// [`now_ns`] of the last record done, if any.
    pub fn last_ns(&self) -> Option<u64> {
        match self.last_ns.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// Throughput figures from `start_ns` to the last record done.
    pub fn summary(&self, start_ns: u64) -> Value {
        let records = self.records.load(Ordering::Relaxed);
        let bytes = self.bytes.load(Ordering::Relaxed);
        let end = self.last_ns().unwrap_or(start_ns);
        let secs = (end.saturating_sub(start_ns)) as f64 / 1e9;
        let (rps, mbps) = if secs > 0.0 {
            (records as f64 / secs, bytes as f64 / 1e6 / secs)
        } else {
            (0.0, 0.0)
        };
        json!({
            "records": records,
            "bytes": bytes,
            "errors": self.errors.load(Ordering::Relaxed),
            "elapsed_s": round3(secs),
            "records_per_sec": rps.round(),
            "mb_per_sec": round3(mbps),
        })
    }
}

/// Prints a progress line for each side every `interval` until dropped.
pub struct Progress {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts the reporter thread. `sides` are (name, counters, whether latency is measured).
    pub fn start(interval: Duration, sides: Vec<(&'static str, Arc<Side>, bool)>) -> Progress {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let start = Instant::now();
            let mut last: Vec<(u64, u64)> = vec![(0, 0); sides.len()];
            let mut tick = start;
            while !flag.load(Ordering::Relaxed) {
                tick += interval;
                // Sleep in small steps so that a finished run is not held up by the reporter.
                while Instant::now() < tick && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20).min(interval));
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let secs = interval.as_secs_f64();
                for (i, (name, side, has_latency)) in sides.iter().enumerate() {
                    let records = side.records.load(Ordering::Relaxed);
                    let bytes = side.bytes.load(Ordering::Relaxed);
                    let (r0, b0) = last[i];
                    last[i] = (records, bytes);
                    let lat = if *has_latency {
                        side.latency.take_interval().short()
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "[{:6.1}s] {:<8} {:>10.0} rec/s {:>8.1} MB/s  {}  total {} errors {}",
                        start.elapsed().as_secs_f64(),
                        name,
                        (records - r0) as f64 / secs,
                        (bytes - b0) as f64 / 1e6 / secs,
                        lat,
                        records,
                        side.errors.load(Ordering::Relaxed),
                    );
                }
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Options common to every workload that talks to a broker.
#[derive(clap::Args, Clone, Debug)]
pub struct Common {
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: crate::cli::Bootstrap,
    /// Topic to use (created if missing).
    #[arg(short, long, default_value = "nagare-bench")]
    pub topic: String,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Replication factor of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i16,
    /// Seconds between progress lines (on stderr).
    #[arg(long, default_value_t = 1.0)]
    pub report_interval: f64,
    /// Also write the JSON summary to this file (it always goes to stdout).
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    // Extra librdkafka properties are the shared `-X KEY=VALUE` / `--command-config` of
    // `broker` (applied last, so they win; security settings reach both clients).
}

impl Common {
    /// The progress interval as a duration (at least 10 ms).
    pub fn interval(&self) -> Duration {
        Duration::from_secs_f64(self.report_interval.max(0.01))
    }

    /// A librdkafka configuration with the bootstrap server, `defaults`, then `-X` overrides.
    pub fn rdkafka_config(&self, defaults: &[(&str, String)]) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.broker.bootstrap_server);
        config.set("client.id", "nagare-bench");
        for (k, v) in defaults {
            config.set(*k, v);
        }
        for (k, v) in self.broker.client_properties()? {
            config.set(k, v);
        }
        Ok(config)
    }

    /// Creates the topic unless it exists; returns its partition count.
    pub async fn ensure_topic(&self) -> anyhow::Result<i32> {
        let mut client = self
            .broker
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.broker.bootstrap_server))?;
        let topic = NewTopic::new(&self.topic)
            .with_partitions(self.partitions)
            .with_replication_factor(self.replication_factor);
        match client.create_topics(&[topic], false).await {
            Ok(()) => {}
            Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => {}
            Err(e) => return Err(e).context("creating the benchmark topic"),
        }
        // The broker asked may not have applied the topic's creation yet (metadata reaches
        // brokers asynchronously, and on a busy machine — a benchmark right after an RF=3 row
        // — that can take a while): wait for every partition to have a leader, as Kafka
        // clients do, instead of failing the run.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            client.invalidate_topic(&self.topic);
            let waiting = match client.topic_metadata(&self.topic).await {
                Ok(meta) if !meta.partitions.is_empty() => {
                    if meta.partitions.iter().all(|p| p.leader >= 0) {
                        return i32::try_from(meta.partitions.len()).context("partition count");
                    }
                    anyhow::anyhow!("topic {} has partitions without a leader", self.topic)
                }
                Ok(_) => anyhow::anyhow!("topic {} has no partitions", self.topic),
                Err(e) => anyhow::Error::new(e).context("the benchmark topic's metadata"),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(waiting.context("waited 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prints the summary on stdout and writes it to `--json` if given.
    pub fn emit(&self, summary: &Value) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(summary)?;
        println!("{text}");
        if let Some(path) = &self.json {
            write_json(path, &text)?;
        }
        Ok(())
    }
}

fn write_json(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{text}\n")).with_context(|| format!("writing {}", path.display()))
}

/// Today's date and time in UTC (RFC 3339, seconds), for the summary.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The 1-, 5- and 15-minute load averages, if `/proc/loadavg` is readable.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}
