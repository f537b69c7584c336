//! The consuming side: librdkafka consumers (assigned partitions, throwaway group id, nothing
//! committed) on their own threads, or raw Fetch loops ([`super::raw_fetch`]) that count
//! records from batch headers without decoding them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nagare_client::Client;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

use super::common::{now_ns, read_stamp, Common, Side};
use super::raw_fetch::RawFetcher;

/// Which client consumes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerClient {
    /// librdkafka `BaseConsumer`: every record is handed to the application (a real client).
    Rdkafka,
    /// Blocking Fetch requests, one in flight per connection, responses read into a reused
    /// buffer; records are counted from batch headers and never decoded (the broker's and the
    /// network's ceiling rather than a client's).
    Raw,
}

/// Options of `nagare bench consume`.
#[derive(clap::Args, Clone, Debug)]
pub struct ConsumeOpts {
    /// Consumer connections; partitions are dealt round-robin among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Records to consume in all (default: everything in the topic when the run starts, read
    /// from the beginning: a catch-up read).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this many seconds even if `count` is not reached.
    #[arg(long)]
    pub duration: Option<f64>,
    /// The consuming client.
    #[arg(long, value_enum, default_value = "rdkafka")]
    pub client: ConsumerClient,
    /// Largest fetch response (`fetch.max.bytes`; also the per-partition limit).
    #[arg(long, default_value_t = 50 * 1024 * 1024)]
    pub fetch_max_bytes: usize,
    /// `isolation.level` of the librdkafka consumers: `read_uncommitted` or `read_committed`
    /// (up to the last stable offset, aborted transactions filtered out). Transaction markers
    /// take offsets but are not records: give `--count` when the topic has transactions.
    #[arg(long, default_value = "read_uncommitted", value_parser = ["read_uncommitted", "read_committed"])]
    pub isolation_level: String,
}

/// One consumer's partitions with the offset to start at.
pub type Assignment = Vec<(i32, i64)>;

/// Deals `starts` (partition, start offset) round-robin among `n` consumers.
pub fn deal(starts: &[(i32, i64)], n: usize) -> Vec<Assignment> {
    let mut out = vec![Vec::new(); n.max(1)];
    for (i, &p) in starts.iter().enumerate() {
        out[i % n.max(1)].push(p);
    }
    out.retain(|a| !a.is_empty());
    out
}

/// Low and high watermarks of every partition, from the broker.
pub fn watermarks(common: &Common, partitions: i32) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let consumer: BaseConsumer = common
        .rdkafka_config(&[("group.id", throwaway_group())])?
        .create()
        .context("creating a librdkafka consumer")?;
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(&common.topic, p, Duration::from_secs(30))
                .with_context(|| format!("watermarks of partition {p}"))?;
            Ok((p, low, high))
        })
        .collect()
}

/// A group id nobody else uses (nothing is committed to it).
pub fn throwaway_group() -> String {
    format!(
        "nagare-bench-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// How a set of librdkafka consumers runs and when it stops.
pub struct RdkafkaRun {
    /// `fetch.max.bytes` and `max.partition.fetch.bytes`.
    pub fetch_max_bytes: usize,
    /// Where consumed records are counted.
    pub side: Arc<Side>,
    /// Stop once `side` has counted this many records (it may rise while the consumers run;
    /// `u64::MAX` = until stopped).
    pub expect: Arc<AtomicU64>,
    /// Stop now.
    pub stop: Arc<AtomicBool>,
    /// Stop at this [`now_ns`].
    pub deadline_ns: Option<u64>,
    /// Take each record's end-to-end latency from the stamp in its payload.
    pub latency: bool,
    /// `isolation.level`.
    pub isolation_level: String,
}

/// Runs librdkafka consumers, one per assignment, each on its own thread; see [`RdkafkaRun`].
pub fn run_rdkafka_consumers(
    common: &Common,
    assignments: Vec<Assignment>,
    run: RdkafkaRun,
) -> anyhow::Result<()> {
    let RdkafkaRun {
        fetch_max_bytes,
        side,
        expect,
        stop,
        deadline_ns,
        latency,
        isolation_level,
    } = run;
    let fetch = fetch_max_bytes.to_string();
    let config = common.rdkafka_config(&[
        ("group.id", throwaway_group()),
        ("enable.auto.commit", "false".into()),
        ("enable.auto.offset.store", "false".into()),
        ("enable.partition.eof", "false".into()),
        ("fetch.max.bytes", fetch.clone()),
        ("max.partition.fetch.bytes", fetch),
        (
            "receive.message.max.bytes",
            (fetch_max_bytes + 1024 * 1024).to_string(),
        ),
        ("fetch.wait.max.ms", "100".into()),
        ("isolation.level", isolation_level),
    ])?;
    let mut handles = Vec::new();
    for (i, assignment) in assignments.into_iter().enumerate() {
        let consumer: BaseConsumer = config.create().context("creating a librdkafka consumer")?;
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in &assignment {
            tpl.add_partition_offset(&common.topic, *p, Offset::Offset(*offset))?;
        }
        consumer.assign(&tpl).context("assigning partitions")?;
        let (side, expect, stop) = (side.clone(), expect.clone(), stop.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-consumer-{i}"))
                .spawn(move || -> anyhow::Result<()> {
                    let mut lat = Vec::with_capacity(1024);
                    let (mut records, mut bytes) = (0u64, 0u64);
                    loop {
                        let done = side.records.load(Ordering::Relaxed) + records
                            >= expect.load(Ordering::Relaxed);
                        let late = deadline_ns.is_some_and(|d| now_ns() >= d);
                        if done || late || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let msg = consumer.poll(Duration::from_millis(50));
                        let now = now_ns();
                        match msg {
                            Some(Ok(m)) => {
                                let payload = m.payload().unwrap_or_default();
                                if latency {
                                    if let Some(sent) = read_stamp(payload) {
                                        lat.push(now.saturating_sub(sent));
                                    }
                                }
                                records += 1;
                                bytes += (payload.len() + m.key().map_or(0, <[u8]>::len)) as u64;
                                if records >= 256 {
                                    side.add(records, bytes, now);
                                    side.latency.record_all(&lat);
                                    lat.clear();
                                    (records, bytes) = (0, 0);
                                }
                            }
                            Some(Err(e)) => {
                                side.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!("consumer error: {e}");
                            }
                            None => {
                                if records > 0 {
                                    side.add(records, bytes, now);
                                    side.latency.record_all(&lat);
                                    lat.clear();
                                    (records, bytes) = (0, 0);
                                }
                            }
                        }
                    }
                    if records > 0 {
                        side.add(records, bytes, now_ns());
                        side.latency.record_all(&lat);
                    }
                    Ok(())
                })
                .context("spawning a consumer thread")?,
        );
    }
    join_all(handles)
}

fn join_all(handles: Vec<std::thread::JoinHandle<anyhow::Result<()>>>) -> anyhow::Result<()> {
    let mut failure = None;
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a consumer thread panicked"))),
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Runs raw consumers on `assignments` until `expect` records are counted or the deadline.
async fn run_raw_consumers(
    common: &Common,
    fetch_max_bytes: usize,
    assignments: Vec<Assignment>,
    side: Arc<Side>,
    expect: u64,
    deadline_ns: Option<u64>,
) -> anyhow::Result<()> {
    let mut client = Client::connect_to(&common.broker.bootstrap_server).await?;
    let meta = client.topic_metadata(&common.topic).await?;
    let leaders: BTreeMap<i32, i32> = meta
        .partitions
        .iter()
        .map(|p| (p.partition, p.leader))
        .collect();
    let fetch_max = i32::try_from(fetch_max_bytes).unwrap_or(i32::MAX);
    let mut handles = Vec::new();
    for assignment in assignments {
        // One connection per (consumer, leader).
        let mut by_leader: BTreeMap<i32, Vec<(i32, i64)>> = BTreeMap::new();
        for (p, offset) in assignment {
            let leader = leaders.get(&p).copied().unwrap_or(-1);
            by_leader.entry(leader).or_default().push((p, offset));
        }
        for (leader, positions) in by_leader {
            let addr = client
                .brokers()
                .get(&leader)
                .map(|b| b.addr())
                .with_context(|| format!("no leader address for broker {leader}"))?;
            let mut fetcher = RawFetcher::connect(&addr, &common.topic, positions, fetch_max)?;
            let side = side.clone();
            handles.push(
                std::thread::Builder::new()
                    .name("bench-raw-consumer".into())
                    .spawn(move || -> anyhow::Result<()> {
                        while side.records.load(Ordering::Relaxed) < expect
                            && deadline_ns.is_none_or(|d| now_ns() < d)
                        {
                            let got = fetcher.fetch()?;
                            if got.records > 0 {
                                side.add(got.records, got.bytes, now_ns());
                            }
                        }
                        Ok(())
                    })
                    .context("spawning a consumer thread")?,
            );
        }
    }
    tokio::task::spawn_blocking(move || join_all(handles))
        .await
        .context("raw consumers")?
}

/// `nagare bench consume`: reads the topic from the beginning (catch-up).
pub async fn consume(common: Common, opts: ConsumeOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.consumers > 0, "--consumers must be at least 1");
    anyhow::ensure!(
        matches!(opts.client, ConsumerClient::Rdkafka)
            || opts.isolation_level == "read_uncommitted",
        "--isolation-level read_committed needs --client rdkafka"
    );
    let partitions = common.ensure_topic().await?;
    let c = common.clone();
    let marks = tokio::task::spawn_blocking(move || watermarks(&c, partitions))
        .await
        .context("watermarks task")??;
    let available: u64 = marks
        .iter()
        .map(|&(_, low, high)| u64::try_from(high - low).unwrap_or(0))
        .sum();
    let expect = opts.count.unwrap_or(available);
    anyhow::ensure!(
        expect <= available,
        "asked for {expect} records but the topic holds {available} (produce first)"
    );
    let starts: Vec<(i32, i64)> = marks.iter().map(|&(p, low, _)| (p, low)).collect();
    let assignments = deal(&starts, opts.consumers);
    let side = Arc::new(Side::default());
    let progress =
        super::common::Progress::start(common.interval(), vec![("consume", side.clone(), false)]);
    let start_ns = now_ns();
    let deadline_ns = opts.duration.map(|d| start_ns + (d.max(0.0) * 1e9) as u64);
    match opts.client {
        ConsumerClient::Rdkafka => {
            let (c, s) = (common.clone(), side.clone());
            let fetch = opts.fetch_max_bytes;
            let isolation_level = opts.isolation_level.clone();
            tokio::task::spawn_blocking(move || {
                run_rdkafka_consumers(
                    &c,
                    assignments,
                    RdkafkaRun {
                        fetch_max_bytes: fetch,
                        side: s,
                        expect: Arc::new(AtomicU64::new(expect)),
                        stop: Arc::new(AtomicBool::new(false)),
                        deadline_ns,
                        latency: false,
                        isolation_level,
                    },
                )
            })
            .await
            .context("consumer task")??;
        }
        ConsumerClient::Raw => {
            run_raw_consumers(
                &common,
                opts.fetch_max_bytes,
                assignments,
                side.clone(),
                expect,
                deadline_ns,
            )
            .await?;
        }
    }
    drop(progress);
    let mut summary = side.summary(start_ns);
    summary["workload"] = json!("consume");
    summary["date"] = json!(super::common::utc_now());
    summary["load_average"] = json!(super::common::load_average());
    summary["topic"] = json!(common.topic);
    summary["partitions"] = json!(partitions);
    summary["config"] = json!({
        "client": format!("{:?}", opts.client).to_lowercase(),
        "consumers": opts.consumers,
        "count": expect,
        "fetch_max_bytes": opts.fetch_max_bytes,
        "isolation_level": opts.isolation_level,
        "bytes_counted": match opts.client {
            ConsumerClient::Rdkafka => "record keys and values",
            ConsumerClient::Raw => "whole record batches as sent by the broker",
        },
    });
    common.emit(&summary)
}
