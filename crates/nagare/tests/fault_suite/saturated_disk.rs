//! No false fencing of a broker that is merely slow: a saturated disk (issue 17).
//!
//! 1 controller + 3 brokers as processes with Kafka's default liveness timings
//! (`broker.session.timeout.ms` 9 s, heartbeats every 2 s, `replica.lag.time.max.ms` 30 s)
//! serve idempotent `acks=all` librdkafka producers (one per partition of an RF=3,
//! `min.insync.replicas=2` topic) while writer threads saturate the filesystem the nodes'
//! log directories (and metadata logs) are on: 8 threads of buffered 1 MiB writes with an
//! `fdatasync` every 64 MiB, overwriting 64 MiB of their files so the test does not fill
//! the disk (512 MiB in all). A probe measures what the saturation does to a broker's fsyncs (4 KiB write +
//! `fdatasync` in the same filesystem, p50/p99/max before and during) and prints it.
//!
//! Asserted: no broker was fenced (the controller logged no "fencing broker"), no partition
//! changed leader or leader epoch, and the fault suite's checker ([`super::check_history`])
//! finds every acknowledged record in the final log, once, in order.
//!
//! The CI run saturates for 5 s; `NAGARE_LONG_TESTS=1` for 30 s (more than three of Kafka's
//! 9 s sessions); `NAGARE_SATURATION_SECS` sets it, `NAGARE_SATURATION_WRITERS` the writer
//! count (default 8), `NAGARE_SATURATION_SYNC_MIB` their sync interval (default 64) and
//! `NAGARE_SATURATION_PROPS` (comma-separated `key=value`) adds node
//! settings, e.g. `broker.session.timeout.ms=3000,broker.heartbeat.interval.ms=300` to look
//! for a heartbeat path blocked behind disk I/O with a tighter session.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::cluster::TestCluster;
use super::failover::{partitions, rf3_cluster};
use super::{env_u64, eventually, run_producer, serial, stop_and_check, Recorded, PARTITIONS};

/// Each writer overwrites this much of its file (or its sync interval, if larger), then
/// starts over (bounded disk use).
const WRITER_REGION: u64 = 64 << 20;

/// Writes 1 MiB blocks to `path` with an `fdatasync` every 8 MiB until `stop`; adds the
/// bytes written to `written`.
fn saturate(path: PathBuf, sync_every: u64, stop: Arc<AtomicBool>, written: Arc<AtomicU64>) {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
    else {
        eprintln!("saturation writer: cannot open {}", path.display());
        return;
    };
    // Not all zeroes, so no filesystem can elide the writes.
    let block: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut at = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if f.write_all(&block).is_err() {
            break;
        }
        at += block.len() as u64;
        written.fetch_add(block.len() as u64, Ordering::Relaxed);
        if at.is_multiple_of(sync_every) && f.sync_data().is_err() {
            break;
        }
        if at >= WRITER_REGION.max(sync_every) {
            at = 0;
            if f.seek(SeekFrom::Start(0)).is_err() {
                break;
            }
        }
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
}

/// Latencies of 4 KiB write + `fdatasync` in `dir`, one every 20 ms, until `stop`; each
/// sample tagged with whether `saturated` was set when it started.
fn probe(dir: PathBuf, stop: Arc<AtomicBool>, saturated: Arc<AtomicBool>) -> Vec<(bool, Duration)> {
    let path = dir.join("fsync-probe");
    let Ok(f) = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
    else {
        return Vec::new();
    };
    let page = [7u8; 4096];
    let mut samples = Vec::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let during = saturated.load(Ordering::Relaxed);
        let t = Instant::now();
        if f.write_all_at(&page, (i % 256) * 4096).is_err() || f.sync_data().is_err() {
            break;
        }
        samples.push((during, t.elapsed()));
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_file(&path);
    samples
}

fn summary(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort();
    let at = |pct: f64| v[((v.len() as f64 * pct / 100.0).ceil() as usize).clamp(1, v.len()) - 1];
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
        at(50.0).as_secs_f64() * 1e3,
        at(99.0).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    )
}

/// Every "fencing broker" line the controller (node 1) logged.
fn fencing_lines(cluster: &mut TestCluster) -> Vec<String> {
    cluster
        .node(1)
        .output()
        .lines()
        .filter(|l| l.contains("fencing broker"))
        .map(str::to_string)
        .collect()
}

/// (partition, leader, leader epoch) of every partition, asked from `boot`.
fn leadership(boot: &str) -> Option<Vec<(i32, i32, i32)>> {
    partitions(boot).map(|ps| {
        ps.iter()
            .map(|p| (p.partition, p.leader, p.leader_epoch))
            .collect()
    })
}

fn filesystem_of(dir: &Path) -> String {
    std::process::Command::new("df")
        .args(["--output=source,fstype,target"])
        .arg(dir)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

#[test]
fn saturated_disk_fences_no_broker_and_loses_no_acknowledged_write() {
    let _serial = serial();
    let long = std::env::var("NAGARE_LONG_TESTS").is_ok_and(|v| v == "1");
    let secs = env_u64("NAGARE_SATURATION_SECS").unwrap_or(if long { 30 } else { 5 });
    let writers = env_u64("NAGARE_SATURATION_WRITERS").unwrap_or(8) as usize;
    let sync_every = env_u64("NAGARE_SATURATION_SYNC_MIB").unwrap_or(64).max(1) << 20;
    let t0 = Instant::now();
    let (mut cluster, boot) = rf3_cluster(Vec::new(), "NAGARE_SATURATION_PROPS", ',');
    // The brokers' log directories share this filesystem with the hog and the probe.
    let root = cluster
        .node(101)
        .dir()
        .parent()
        .map(Path::to_path_buf)
        .expect("cluster root");
    eprintln!("log dirs on: {}", filesystem_of(&root));

    let rec = Arc::new(Recorded::default());
    *rec.started.lock().expect("started") = Some(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PARTITIONS as usize)
        .map(|id| {
            let (b, s, r) = (boot.clone(), stop.clone(), rec.clone());
            std::thread::spawn(move || {
                run_producer(b, id, id as i32, s, r, Duration::from_millis(5))
            })
        })
        .collect();

    let before = eventually(Duration::from_secs(30), "partition metadata", || {
        leadership(&boot)
    });
    let fenced_before = fencing_lines(&mut cluster).len();
    let saturated = Arc::new(AtomicBool::new(false));
    let probe_stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (d, s, sat) = (root.clone(), probe_stop.clone(), saturated.clone());
        std::thread::spawn(move || probe(d, s, sat))
    };
    // Baseline first.
    std::thread::sleep(Duration::from_millis(1500));
    let acked_before = rec.acked.lock().expect("acked").len();
    let hog_stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    saturated.store(true, Ordering::SeqCst);
    let hog_started = Instant::now();
    let hogs: Vec<_> = (0..writers)
        .map(|i| {
            let (p, s, w) = (
                root.join(format!("disk-hog-{i}")),
                hog_stop.clone(),
                written.clone(),
            );
            std::thread::spawn(move || saturate(p, sync_every, s, w))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    hog_stop.store(true, Ordering::SeqCst);
    saturated.store(false, Ordering::SeqCst);
    let hog_secs = hog_started.elapsed().as_secs_f64();
    for h in hogs {
        h.join().expect("writer");
    }
    probe_stop.store(true, Ordering::SeqCst);
    let samples = prober.join().expect("probe");
    let acked_during = rec.acked.lock().expect("acked").len() - acked_before;
    let (during, baseline): (Vec<_>, Vec<_>) = samples.into_iter().partition(|(d, _)| *d);
    eprintln!(
        "saturation: {writers} writers, {secs} s, {:.0} MB/s written by them; 4 KiB write+fdatasync before: {}; during: {}; {acked_during} records acknowledged during it",
        written.load(Ordering::Relaxed) as f64 / 1e6 / hog_secs,
        summary(baseline.into_iter().map(|(_, d)| d).collect()),
        summary(during.into_iter().map(|(_, d)| d).collect()),
    );

    // Let the brokers' write-back settle, then compare.
    std::thread::sleep(Duration::from_secs(2));
    let after = eventually(Duration::from_secs(30), "partition metadata", || {
        leadership(&boot)
    });
    let fenced = fencing_lines(&mut cluster);
    assert_eq!(
        fenced.len(),
        fenced_before,
        "a broker was fenced while the disk was saturated: {:?}",
        &fenced[fenced_before..]
    );
    assert_eq!(
        before, after,
        "leadership changed while the disk was saturated (partition, leader, epoch)"
    );

    stop_and_check("saturated-disk test", &stop, producers, &rec, &boot, t0);
}
