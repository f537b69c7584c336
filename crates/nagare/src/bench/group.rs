//! `nagare bench group`: how long a consumer group takes to give every member its partitions
//! after one more member joins, with the classic protocol (JoinGroup/SyncGroup, eager
//! rebalance) or KIP-848's (`group.protocol=consumer`, server-side incremental assignment).
//!
//! `--members - 1` librdkafka consumers join first and the group settles (every member owns
//! partitions, ownership exact). Then the last member joins; the clock runs from its
//! `subscribe` until every member has partitions and the ownership is exact again. Besides
//! that time, the summary counts the settled members that were left with no partitions at
//! some point of the rebalance (stop-the-world pauses: all of them with an eager classic
//! rebalance, only the members that give a partition away with KIP-848), and the time the
//! first `members - 1` took to form the group.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

use super::common::{round3, utc_now, Common};

/// The group protocol to measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// JoinGroup/SyncGroup with librdkafka's default eager assignors.
    Classic,
    /// KIP-848 ConsumerGroupHeartbeat with server-side assignment.
    Consumer,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Classic => "classic",
            Protocol::Consumer => "consumer",
        }
    }
}

/// Options of `nagare bench group`.
#[derive(clap::Args, Clone, Debug)]
pub struct GroupOpts {
    /// Members of the group (the last one's join is measured).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// The group protocol.
    #[arg(long, value_enum, default_value = "consumer")]
    pub protocol: Protocol,
    /// Give up after this many seconds per phase.
    #[arg(long, default_value_t = 180.0)]
    pub timeout: f64,
    /// Threads polling the consumers.
    #[arg(long, default_value_t = 4)]
    pub poll_threads: usize,
}

/// What the pollers saw of each member.
struct Shared {
    assignments: Vec<BTreeSet<i32>>,
    /// Members (index) that had no partitions at some sweep after `watch_from` was set.
    emptied: BTreeSet<usize>,
    watching: bool,
}

/// Runs the benchmark.
pub async fn group(common: Common, opts: GroupOpts) -> anyhow::Result<()> {
    anyhow::ensure!(opts.members >= 2, "--members must be at least 2");
    let partitions = common.ensure_topic().await?;
    anyhow::ensure!(
        partitions as usize >= opts.members,
        "the topic has {partitions} partitions; give at least --partitions {} so that every \
         member can own one (an existing topic keeps its partition count)",
        opts.members
    );
    let common2 = common.clone();
    let summary = tokio::task::spawn_blocking(move || run(&common2, &opts, partitions))
        .await
        .map_err(|e| anyhow::anyhow!("group benchmark task: {e}"))??;
    common.emit(&summary)
}

fn exact(assignments: &[BTreeSet<i32>], partitions: i32) -> bool {
    let total: usize = assignments.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    total == partitions as usize
        && union.len() == partitions as usize
        && assignments.iter().all(|a| !a.is_empty())
}

fn run(common: &Common, opts: &GroupOpts, partitions: i32) -> anyhow::Result<serde_json::Value> {
    let group = format!(
        "nagare-bench-group-{}-{}",
        opts.protocol.name(),
        std::process::id()
    );
    let make = |i: usize| -> anyhow::Result<BaseConsumer> {
        let mut defaults = vec![
            ("group.id", group.clone()),
            ("client.id", format!("nagare-bench-group-{i}")),
            ("enable.auto.commit", "false".to_owned()),
            ("auto.offset.reset", "latest".to_owned()),
        ];
        if opts.protocol == Protocol::Consumer {
            defaults.push(("group.protocol", "consumer".to_owned()));
        }
        let c: BaseConsumer = common
            .rdkafka_config(&defaults)?
            .create()
            .context("creating a consumer")?;
        c.subscribe(&[common.topic.as_str()])
            .context("subscribing")?;
        Ok(c)
    };
    let timeout = Duration::from_secs_f64(opts.timeout.max(1.0));
    let n = opts.members;
    let shared = Arc::new(Mutex::new(Shared {
        assignments: vec![BTreeSet::new(); n],
        emptied: BTreeSet::new(),
        watching: false,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = opts.poll_threads.clamp(1, n);
    // Consumers are dealt to poll threads by index; each thread owns its consumers.
    let (senders, handles): (Vec<_>, Vec<_>) = (0..threads)
        .map(|_| {
            let (tx, rx) = std::sync::mpsc::channel::<(usize, BaseConsumer)>();
            let shared = shared.clone();
            let stop = stop.clone();
            let h = std::thread::spawn(move || poll_loop(rx, shared, stop));
            (tx, h)
        })
        .unzip();
    let started = Instant::now();
    eprintln!(
        "bench group: {} members ({} protocol) over {partitions} partitions; forming the group with {}",
        n,
        opts.protocol.name(),
        n - 1
    );
    for i in 0..n - 1 {
        senders[i % threads]
            .send((i, make(i)?))
            .map_err(|_| anyhow::anyhow!("poll thread gone"))?;
    }
    wait_until(&shared, timeout, |a| exact(&a[..n - 1], partitions))
        .context("the first members never settled")?;
    let formed = started.elapsed();
    eprintln!(
        "bench group: {} members settled in {:.3} s; last member joins",
        n - 1,
        formed.as_secs_f64()
    );
    // Let a heartbeat interval or so pass so that the group is fully at rest.
    std::thread::sleep(Duration::from_secs(2));
    {
        let mut s = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        s.emptied.clear();
        s.watching = true;
    }
    let last = make(n - 1)?;
    let joined = Instant::now();
    senders[(n - 1) % threads]
        .send((n - 1, last))
        .map_err(|_| anyhow::anyhow!("poll thread gone"))?;
    wait_until(&shared, timeout, |a| exact(a, partitions))
        .context("the group never settled after the last join")?;
    let rebalance = joined.elapsed();
    let (paused, sizes) = {
        let s = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let paused = s.emptied.iter().filter(|i| **i < n - 1).count();
        let sizes: Vec<usize> = s.assignments.iter().map(BTreeSet::len).collect();
        (paused, sizes)
    };
    eprintln!(
        "bench group: every member assigned {:.3} s after the last join; {paused} of {} settled members were paused",
        rebalance.as_secs_f64(),
        n - 1
    );
    stop.store(true, Ordering::Relaxed);
    drop(senders);
    for h in handles {
        let _ = h.join();
    }
    Ok(json!({
        "benchmark": "group",
        "date": utc_now(),
        "protocol": opts.protocol.name(),
        "members": n,
        "partitions": partitions,
        "form_group_s": round3(formed.as_secs_f64()),
        "last_join_to_all_assigned_s": round3(rebalance.as_secs_f64()),
        "settled_members_paused": paused,
        "min_partitions_per_member": sizes.iter().min(),
        "max_partitions_per_member": sizes.iter().max(),
    }))
}

fn wait_until(
    shared: &Mutex<Shared>,
    timeout: Duration,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        {
            let s = shared.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if done(&s.assignments) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    anyhow::bail!("timed out after {:.0} s", timeout.as_secs_f64())
}

/// Polls this thread's consumers round-robin (librdkafka serves rebalance callbacks in
/// `poll`) and publishes their assignments; closes them on stop.
fn poll_loop(
    rx: std::sync::mpsc::Receiver<(usize, BaseConsumer)>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
) {
    let mut mine: Vec<(usize, BaseConsumer)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        while let Ok(c) = rx.try_recv() {
            mine.push(c);
        }
        for (i, c) in &mine {
            let _ = c.poll(Duration::ZERO);
            let a: BTreeSet<i32> = c
                .assignment()
                .map(|l| l.elements().iter().map(|e| e.partition()).collect())
                .unwrap_or_default();
            if let Ok(mut s) = shared.lock() {
                if s.watching && a.is_empty() {
                    s.emptied.insert(*i);
                }
                if let Some(slot) = s.assignments.get_mut(*i) {
                    *slot = a;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    for (_, c) in mine {
        c.unsubscribe();
    }
}
