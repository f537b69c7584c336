//! Disk faults with real processes (issue 18), checked by the fault suite's acked-writes
//! checker ([`super::check_history`]):
//!
//! - **a real full filesystem**: a single node whose `log.dirs` is a 32 MiB tmpfs the test
//!   mounts (nearly filled by a filler file, so that librdkafka fills the rest in a second).
//!   Producers get KAFKA_STORAGE_ERROR (no hang), the node logs the condition once per log
//!   rather than per request, consumers read everything acknowledged, and once the filler is
//!   deleted the same producer's writes succeed again without a restart;
//! - **a failing disk on a 3-broker cluster**: every node runs with
//!   `NAGARE_DISK_FAULTS=eio-when:../FAIL_DISK`; creating that file under the leader of a
//!   partition makes every write and fsync of its log directory fail with EIO. The broker
//!   takes the directory offline, hands leadership over (controlled shutdown) and exits; the
//!   partition gets a new leader and no acknowledged write is lost.
//!
//! Skipped, with a message, when the machine does not allow mounting a tmpfs (not root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::common::cluster::TestCluster;
use super::common::{block_on, replication, ServerOptions, TestServer};
use super::{
    acked_ends, check_history, eventually, read_final_log, run_producer, serial, value_of,
    DeliveryRecorder, History, Recorded, NODE_PROPS, PARTITIONS, TOPIC,
};

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a `size_mb` tmpfs at `path`, or says why it cannot.
    fn mount(path: &Path, size_mb: u32) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Free bytes of the filesystem holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// A plain (non-idempotent, no retries) `acks=all` producer: a refused batch is reported at
/// once with the broker's error instead of being retried until `message.timeout.ms`.
fn no_retry_producer(bootstrap: &str, rec: &Arc<Recorded>) -> BaseProducer<DeliveryRecorder> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("retries", "0")
        .set("linger.ms", "5")
        .set("batch.size", "65536")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.messages", "200000")
        .create_with_context(DeliveryRecorder {
            producer: 0,
            rec: rec.clone(),
        })
        .expect("producer")
}

/// Sends `n` values (from `*seq` on) round-robin over the partitions and waits for their
/// delivery reports; returns (acknowledged, failed) counts of this round.
fn produce_round(
    producer: &BaseProducer<DeliveryRecorder>,
    rec: &Recorded,
    seq: &mut usize,
    n: usize,
) -> (usize, usize) {
    let (acked0, failed0) = (
        rec.acked.lock().expect("acked").len(),
        rec.failed.lock().expect("failed").len(),
    );
    for _ in 0..n {
        let value = value_of(0, *seq);
        let p = (*seq % PARTITIONS as usize) as i32;
        let mut record = BaseRecord::<(), String, usize>::with_opaque_to(TOPIC, *seq)
            .partition(p)
            .payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        *seq += 1;
    }
    // Every message gets its report well within message.timeout.ms: a refusal is an answer,
    // not a hang.
    producer
        .flush(Duration::from_secs(20))
        .expect("every message got a delivery report");
    (
        rec.acked.lock().expect("acked").len() - acked0,
        rec.failed.lock().expect("failed").len() - failed0,
    )
}

#[test]
fn full_filesystem_refuses_produce_serves_reads_and_resumes() {
    let _serial = serial();
    let started = Instant::now();
    let scratch = tempfile::tempdir().expect("tempdir");
    let mnt = scratch.path().join("tmpfs");
    let fs = match Tmpfs::mount(&mnt, 32) {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED full_filesystem_refuses_produce_serves_reads_and_resumes: cannot mount a tmpfs here ({why}); run as root");
            return;
        }
    };
    let data = fs.path.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let meta = scratch.path().join("meta");
    let server = TestServer::start_with(ServerOptions {
        overrides: vec![
            format!("log.dirs={}", data.display()),
            // The metadata log elsewhere: this test fills the partition logs' filesystem.
            format!("metadata.log.dir={}", meta.display()),
            "auto.create.topics.enable=false".into(),
        ],
        ..ServerOptions::default()
    });
    let boot = server.bootstrap();
    replication::create_topic(&boot, TOPIC, PARTITIONS, 1, &[]);

    let rec = Arc::new(Recorded::default());
    let producer = no_retry_producer(&boot, &rec);
    let mut seq = 0usize;
    let (acked, failed) = produce_round(&producer, &rec, &mut seq, 3000);
    assert_eq!((acked, failed), (3000, 0), "{:?}", rec.failed.lock());

    // Leave ~1 MiB: a filler file takes the rest, so producing fills the disk in a second.
    let filler = fs.path.join("filler");
    let fill = free_bytes(&fs.path).saturating_sub(1 << 20);
    let _ = Command::new("fallocate")
        .args(["-l", &fill.to_string()])
        .arg(&filler)
        .status();
    eprintln!(
        "[{:.1}s] filled the tmpfs: {} bytes free",
        started.elapsed().as_secs_f64(),
        free_bytes(&fs.path)
    );

    // Produce until the filesystem is full: the producer gets KAFKA_STORAGE_ERROR.
    let mut rounds = 0;
    let mut round_failed = 0;
    while round_failed == 0 {
        rounds += 1;
        assert!(rounds <= 60, "the disk never filled up");
        round_failed = produce_round(&producer, &rec, &mut seq, 5000).1;
    }
    let (_, failed_when_full) = produce_round(&producer, &rec, &mut seq, 2000);
    assert!(failed_when_full > 0, "appends continued on a full disk");
    let errors: Vec<String> = rec
        .failed
        .lock()
        .expect("failed")
        .iter()
        .map(|(_, e)| e.clone())
        .collect();
    assert!(
        errors.iter().all(|e| e.contains("KafkaStorageError")),
        "errors other than KAFKA_STORAGE_ERROR: {:?}",
        errors.iter().find(|e| !e.contains("KafkaStorageError"))
    );
    eprintln!(
        "[{:.1}s] disk full: {} acknowledged, {} refused with KAFKA_STORAGE_ERROR",
        started.elapsed().as_secs_f64(),
        rec.acked.lock().expect("acked").len(),
        errors.len()
    );

    // Reads keep being served: everything acknowledged so far is there, at its offset.
    let acked_now = rec.acked.lock().expect("acked").clone();
    let final_log = read_final_log(&boot, &acked_ends(&acked_now), Duration::from_secs(5));
    let bad = check_history(&History {
        acked: acked_now,
        observed: Vec::new(),
        final_log,
    });
    assert!(bad.is_empty(), "while full: {bad:?}");

    // Space returns: the same producer's writes succeed again, no restart.
    std::fs::remove_file(&filler).expect("remove filler");
    let (acked_after, _) = produce_round(&producer, &rec, &mut seq, 2000);
    let (acked_after2, failed_after2) = produce_round(&producer, &rec, &mut seq, 2000);
    assert!(acked_after > 0, "appends did not resume");
    assert_eq!((acked_after2, failed_after2), (2000, 0));

    let output = server.current_output();
    let full_lines = output.matches("log directory is full").count();
    let resumed_lines = output.matches("appends resumed").count();
    eprintln!(
        "[{:.1}s] resumed; server logged {full_lines} disk-full line(s) and {resumed_lines} resume line(s) for {} refused messages",
        started.elapsed().as_secs_f64(),
        errors.len()
    );
    assert!(
        (1..=2).contains(&full_lines),
        "one disk-full line per log directory (rate-limited), not per request: {full_lines}"
    );
    assert!(resumed_lines >= 1);

    let acked_all = rec.acked.lock().expect("acked").clone();
    let final_log = read_final_log(&boot, &acked_ends(&acked_all), Duration::from_secs(5));
    let bad = check_history(&History {
        acked: acked_all,
        observed: Vec::new(),
        final_log,
    });
    assert!(bad.is_empty(), "after space returned: {bad:?}");
    drop(producer);
    drop(server);
}

#[test]
fn failed_disk_moves_leadership_away_and_loses_nothing() {
    let _serial = serial();
    let started = Instant::now();
    // Every node may inject EIO: while `<node dir>/FAIL_DISK` exists, every write and fsync
    // of its log directory fails. Set only while the nodes start.
    std::env::set_var("NAGARE_DISK_FAULTS", "eio-when:../FAIL_DISK");
    let mut props: Vec<&str> = NODE_PROPS.to_vec();
    props.push("log.flush.interval.ms=200");
    let mut cluster = TestCluster::new(1, 3, &props);
    cluster.start_all(super::READY);
    std::env::remove_var("NAGARE_DISK_FAULTS");
    let boot = cluster.bootstrap();
    replication::create_topic(&boot, TOPIC, PARTITIONS, 3, &[("min.insync.replicas", "2")]);
    let leader_of = |boot: &str, p: i32| -> Option<(i32, Vec<i32>)> {
        block_on(async {
            let mut c = nagare_client::Client::connect_to(boot).await.ok()?;
            let t = c.topic_metadata(TOPIC).await.ok()?;
            let pm = t.partition(p)?;
            (pm.leader >= 0).then(|| (pm.leader, pm.isr.clone()))
        })
    };
    eventually(Duration::from_secs(30), "a full ISR", || {
        leader_of(&boot, 0).filter(|(_, isr)| isr.len() == 3)
    });

    let rec = Arc::new(Recorded::default());
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (b, s, r) = (boot.clone(), stop.clone(), rec.clone());
            std::thread::spawn(move || {
                run_producer(b, p as usize, p, s, r, Duration::from_millis(2))
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let (victim, _) = leader_of(&boot, 0).expect("leader");
    let acked_before = rec.acked.lock().expect("acked").len();
    eprintln!(
        "[{:.1}s] failing the disk of broker {victim} (leader of partition 0) after {acked_before} acks",
        started.elapsed().as_secs_f64()
    );
    let trigger = cluster.node(victim).dir().join("FAIL_DISK");
    std::fs::write(&trigger, b"").expect("trigger");
    let failed_at = Instant::now();

    // The broker hands leadership over and stops; partition 0 gets another leader.
    let others: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| n.is_broker() && n.id != victim)
        .map(|n| n.bootstrap())
        .collect();
    let others = others.join(",");
    let (new_leader, isr) = eventually(Duration::from_secs(20), "a new leader", || {
        leader_of(&others, 0).filter(|(l, isr)| *l != victim && !isr.contains(&victim))
    });
    let moved_after = failed_at.elapsed();
    eventually(Duration::from_secs(20), "the failed broker to exit", || {
        (!cluster.node(victim).is_running()).then_some(())
    });
    let output = cluster.node(victim).output();
    assert!(
        output.contains("the log directory failed"),
        "broker {victim} did not report its failed log directory"
    );
    eprintln!(
        "[{:.1}s] partition 0: leader {victim} -> {new_leader} (ISR {isr:?}) {:.1}s after the disk failed; broker {victim} exited",
        started.elapsed().as_secs_f64(),
        moved_after.as_secs_f64()
    );

    // Producers carry on against the new leaders.
    let acked_mid = rec.acked.lock().expect("acked").len();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    for p in producers {
        p.join().expect("producer");
    }
    let acked = rec.acked.lock().expect("acked").clone();
    assert!(
        acked.len() > acked_mid,
        "no write was acknowledged after the failover"
    );
    let final_log = read_final_log(&others, &acked_ends(&acked), Duration::from_secs(10));
    let bad = check_history(&History {
        acked: acked.clone(),
        observed: Vec::new(),
        final_log,
    });
    assert!(
        bad.is_empty(),
        "{} violations: {:?}",
        bad.len(),
        &bad[..bad.len().min(20)]
    );
    eprintln!(
        "[{:.1}s] {} acknowledged writes, all in the final log; {} refused",
        started.elapsed().as_secs_f64(),
        acked.len(),
        rec.failed.lock().expect("failed").len()
    );
}
