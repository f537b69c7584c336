//! Tiered storage (KIP-405) end to end, against a `file://` store and a real S3-compatible
//! server (moto, started here on a free port): small segments, far more data than
//! `local.retention.bytes` keeps, then
//!
//! - only the tail stays on local disk, ListOffsets answers -2 (remote log start), -4 (local
//!   log start) and -5 (highest uploaded offset);
//! - librdkafka reads everything from offset 0, byte-for-byte;
//! - the whole log's `retention.bytes` deletes remote segments and consumers start after them;
//! - deleting the topic removes its objects.
//!
//! Without moto the S3 half is skipped with a message, except under `CI=true`, where a
//! missing moto fails the test (scripts/test.sh installs it from tests/compat/requirements.txt).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, TestCluster};
use common::replication;
use common::{block_on, consume_to_end, free_port, send_retrying_queue_full, TestServer};
use nagare_client::{AlterConfigOp, Client, ConfigResource, OffsetSpec};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::Offset;

const TOPIC: &str = "tiered";
const SEGMENT_BYTES: u64 = 16_384;
const LOCAL_RETENTION_BYTES: u64 = 49_152;
const RECORDS: usize = 1500;

fn value_of(i: usize) -> Vec<u8> {
    let mut v = format!("{i:08}:").into_bytes();
    v.resize(1000, b'a' + (i % 26) as u8);
    v
}

/// Bytes and count of live `.log` files of the partition on local disk.
fn local_log_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut count = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for entry in rd.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                total += std::fs::metadata(&path).map_or(0, |m| m.len());
                count += 1;
            }
        }
    }
    (total, count)
}

fn offsets(bootstrap: &str) -> (i64, i64, i64, i64) {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.expect("connect");
        let mut out = [0i64; 4];
        for (slot, spec) in out.iter_mut().zip([
            OffsetSpec::Earliest,
            OffsetSpec::EarliestLocal,
            OffsetSpec::LatestTiered,
            OffsetSpec::Latest,
        ]) {
            *slot = c.list_offsets(TOPIC, 0, spec).await.expect("list offsets");
        }
        (out[0], out[1], out[2], out[3])
    })
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn alter_topic(bootstrap: &str, ops: &[AlterConfigOp]) -> Result<(), String> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.expect("connect");
        c.incremental_alter_configs(&ConfigResource::Topic(TOPIC.into()), ops, false)
            .await
            .map_err(|e| e.to_string())
    })
}

/// The whole scenario against one store; `objects` lists the store's object keys.
fn scenario(label: &str, store: &[String], objects: &dyn Fn() -> Vec<String>) {
    let mut overrides: Vec<String> = [
        "remote.log.storage.system.enable=true",
        "remote.log.manager.task.interval.ms=200",
        "remote.log.manager.task.retry.backoff.ms=100",
        "log.retention.check.interval.ms=200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(store.iter().cloned());
    let refs: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&refs);
    let bootstrap = server.bootstrap();
    server.create_topic(
        TOPIC,
        1,
        &[
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", &LOCAL_RETENTION_BYTES.to_string()),
            ("file.delete.delay.ms", "0"),
        ],
    );
    // Kafka's validation: local retention unlimited while the whole log's is bounded.
    let e = alter_topic(
        &bootstrap,
        &[AlterConfigOp::Set("local.retention.ms".into(), "-1".into())],
    )
    .expect_err("local.retention.ms=-1 with a bounded retention.ms");
    assert!(e.contains("local.retention.ms"), "{label}: {e}");

    let producer = server.producer(&[
        ("batch.size", "4096"),
        ("linger.ms", "1"),
        ("compression.type", "none"),
    ]);
    for i in 0..RECORDS {
        let value = value_of(i);
        send_retrying_queue_full(
            &producer,
            BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&value),
        );
    }
    producer.flush(Duration::from_secs(60)).expect("flush");

    // Uploads and local retention leave only the tail on disk.
    let dir = server.log_dir().join(format!("{TOPIC}-0"));
    let t0 = Instant::now();
    let (earliest, local, tiered, latest) =
        wait_for("local retention", Duration::from_secs(60), || {
            let (bytes, _) = local_log_bytes(&dir);
            let o = offsets(&bootstrap);
            (bytes <= LOCAL_RETENTION_BYTES + 2 * SEGMENT_BYTES && o.1 > 0 && o.2 >= o.1 - 1)
                .then_some(o)
        });
    let (bytes, files) = local_log_bytes(&dir);
    let keys = objects();
    eprintln!(
        "{label}: after {:?} local {bytes} bytes in {files} segments; offsets earliest {earliest} \
         local {local} tiered {tiered} latest {latest}; {} objects",
        t0.elapsed(),
        keys.len()
    );
    assert_eq!(earliest, 0, "{label}: the remote log starts at 0");
    assert_eq!(latest, RECORDS as i64, "{label}: high watermark");
    assert!(
        local > 0 && local < latest,
        "{label}: local log start {local}"
    );
    assert!(
        tiered >= local - 1 && tiered < latest,
        "{label}: latest tiered {tiered}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".log")),
        "{label}: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".index")),
        "{label}: {keys:?}"
    );
    assert!(
        keys.iter().any(|k| k.ends_with("remote_log_metadata")),
        "{label}: manifest missing: {keys:?}"
    );

    // librdkafka reads everything from offset 0, most of it from the object store.
    let consumed = consume_to_end(
        &server,
        TOPIC,
        1,
        Offset::Beginning,
        Duration::from_secs(60),
    );
    let msgs = &consumed[0];
    assert_eq!(msgs.len(), RECORDS, "{label}: records read from offset 0");
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "{label}: dense offsets");
        assert_eq!(m.payload(), Some(&value_of(i)[..]), "{label}: record {i}");
    }

    // The whole log's retention deletes remote segments (local.retention.bytes stays below).
    let before = objects().len();
    alter_topic(
        &bootstrap,
        &[AlterConfigOp::Set(
            "retention.bytes".into(),
            "400000".into(),
        )],
    )
    .expect("retention.bytes");
    // Retention deletes in several passes: wait until the log start holds still.
    let mut last = -1;
    let start = wait_for("remote retention", Duration::from_secs(30), || {
        let (earliest, ..) = offsets(&bootstrap);
        let settled = earliest > 0 && earliest == last && objects().len() < before;
        last = earliest;
        std::thread::sleep(Duration::from_millis(800));
        settled.then_some(earliest)
    });
    eprintln!(
        "{label}: retention moved the log start to {start}; {} objects",
        objects().len()
    );
    let consumed = consume_to_end(
        &server,
        TOPIC,
        1,
        Offset::Beginning,
        Duration::from_secs(60),
    );
    let msgs = &consumed[0];
    assert_eq!(msgs.first().map(|m| m.offset()), Some(start), "{label}");
    assert_eq!(msgs.len(), RECORDS - start as usize, "{label}");
    for m in msgs {
        assert_eq!(
            m.payload(),
            Some(&value_of(m.offset() as usize)[..]),
            "{label}"
        );
    }

    // `nagare tiered status` lists the remote segments from the manifest.
    let mut args: Vec<String> = ["tiered", "status", TOPIC, "-b", &bootstrap]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for o in store {
        args.push("--override".into());
        args.push(o.clone());
    }
    let out = Command::new(common::nagare_bin())
        .args(&args)
        .output()
        .expect("nagare tiered status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{label}: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("remote log start Some({start})")) && text.contains("CopyFinished"),
        "{label}: {text}"
    );

    // `nagare topic describe` shows local and remote offsets and sizes.
    let mut args: Vec<String> = ["topic", "describe", TOPIC, "-b", &bootstrap]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for o in store {
        args.push("--override".into());
        args.push(o.clone());
    }
    let out = Command::new(common::nagare_bin())
        .args(&args)
        .output()
        .expect("nagare topic describe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{label}: {text}");
    let row: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.contains("LOCAL-START"))
        .nth(1)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(row.len(), 8, "{label}: {text}");
    assert_eq!(row[1], start.to_string(), "{label}: log start: {text}");
    assert_eq!(row[4], RECORDS.to_string(), "{label}: end: {text}");
    let local_bytes: u64 = row[5].parse().expect("local bytes");
    let remote_bytes: u64 = row[6].parse().expect("remote bytes");
    assert!(
        local_bytes > 0 && local_bytes <= LOCAL_RETENTION_BYTES + 2 * SEGMENT_BYTES,
        "{label}: {text}"
    );
    assert!(remote_bytes > local_bytes, "{label}: {text}");

    // Topic deletion removes every object of the topic.
    block_on(async {
        let mut c = Client::connect_to(&bootstrap).await.expect("connect");
        c.delete_topics(&[TOPIC]).await.expect("delete topic");
    });
    wait_for("remote objects deleted", Duration::from_secs(30), || {
        objects()
            .iter()
            .all(|k| !k.contains(&format!("{TOPIC}-")))
            .then_some(())
    });
}

fn list_files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.push(rel.display().to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// A moto S3 server on a free port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One plain HTTP/1.1 request to moto (it does not check signatures); returns the body.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

fn start_moto() -> Option<Moto> {
    let present = Command::new("python3")
        .args(["-c", "import moto.server"])
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "moto is missing under CI=true: pip install -r tests/compat/requirements.txt"
        );
        eprintln!("moto not installed (pip install 'moto[server]'): skipping the S3 half");
        return None;
    }
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto");
    let moto = Moto { child, port };
    wait_for("moto to listen", Duration::from_secs(30), || {
        http(port, "GET", "/").ok().map(|_| ())
    });
    let (status, body) = http(port, "PUT", "/nagare-tiered").expect("create bucket");
    assert!(status == 200, "create bucket: {body}");
    Some(moto)
}

fn s3_keys(port: u16) -> Vec<String> {
    let Ok((_, body)) = http(port, "GET", "/nagare-tiered?list-type=2&prefix=cluster") else {
        return Vec::new();
    };
    body.split("<Key>")
        .skip(1)
        .filter_map(|s| s.split("</Key>").next())
        .map(str::to_string)
        .collect()
}

#[test]
fn tiered_storage_file_and_s3() {
    let store_dir = tempfile::tempdir().expect("tmp");
    let root: PathBuf = store_dir.path().join("remote");
    scenario(
        "file",
        &[format!("rsm.config.url=file://{}", root.display())],
        &|| list_files(&root),
    );

    let Some(moto) = start_moto() else {
        return;
    };
    let port = moto.port;
    scenario(
        "s3",
        &[
            "rsm.config.url=s3://nagare-tiered/cluster".to_string(),
            format!("rsm.config.endpoint=http://127.0.0.1:{port}"),
            "rsm.config.region=us-east-1".to_string(),
            "rsm.config.access.key.id=test".to_string(),
            "rsm.config.secret.access.key=test".to_string(),
            "rsm.config.path.style.access.enabled=true".to_string(),
        ],
        &|| s3_keys(port),
    );
}

const RF3_TOPIC: &str = "tiered-rf3";

/// The manifest of `RF3_TOPIC`'s partition 0 in the `file://` store at `root`.
fn rf3_manifest(root: &Path) -> Option<nagare_remote_storage::RemoteLogState> {
    let key = list_files(root)
        .into_iter()
        .find(|k| k.starts_with(&format!("{RF3_TOPIC}-")) && k.ends_with("remote_log_metadata"))?;
    let bytes = std::fs::read(root.join(key)).ok()?;
    nagare_remote_storage::RemoteLogState::decode(&bytes).ok()
}

/// Produces records `from..to` (acks=all, idempotent), all in flight at once; returns
/// (offset, index) of each.
fn produce_indexed(p: &FutureProducer, from: usize, to: usize) -> Vec<(i64, usize)> {
    block_on(async {
        let values: Vec<Vec<u8>> = (from..to).map(value_of).collect();
        let futs: Vec<_> = values
            .iter()
            .map(|v| {
                p.send(
                    FutureRecord::<(), _>::to(RF3_TOPIC).partition(0).payload(v),
                    Duration::from_secs(0),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (f, i) in futs.into_iter().zip(from..to) {
            match f.await {
                Ok(d) => out.push((d.offset, i)),
                Err((e, _)) => panic!("acks=all produce of record {i} failed: {e}"),
            }
        }
        out
    })
}

/// (earliest, earliest local, latest tiered, latest) of `RF3_TOPIC`-0, if the leader answers.
fn rf3_offsets(bootstrap: &str) -> Option<(i64, i64, i64, i64)> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let mut out = [0i64; 4];
        for (slot, spec) in out.iter_mut().zip([
            OffsetSpec::Earliest,
            OffsetSpec::EarliestLocal,
            OffsetSpec::LatestTiered,
            OffsetSpec::Latest,
        ]) {
            *slot = c.list_offsets(RF3_TOPIC, 0, spec).await.ok()?;
        }
        Some((out[0], out[1], out[2], out[3]))
    })
}

/// KIP-405 on a 3-node RF=3 cluster (real processes, one shared `file://` store):
///
/// - SIGKILL of the leader while it uploads: the new leader claims the manifest and goes on
///   uploading; in the end the finished remote segments cover every offset from 0 with no
///   gap, none uploaded twice, and no object is left that the manifest does not list;
/// - the killed broker comes back far behind the new leader's local log start: it gets
///   OFFSET_MOVED_TO_TIERED_STORAGE and starts at that offset with the producer state and
///   leader epochs of the remote metadata (KIP-405's follower path), then rejoins the ISR;
/// - the object store goes away under load (10 s here, a minute with
///   `NAGARE_LONG_TESTS=1`): producers go on, the leader's local log grows past local
///   retention and nothing is deleted that is not uploaded; uploads resume afterwards;
/// - librdkafka reads every acknowledged record from offset 0, byte-for-byte.
#[test]
fn tiered_failover_and_store_outage_on_three_brokers() {
    let store_dir = tempfile::tempdir().expect("tmp");
    let root: PathBuf = store_dir.path().join("remote");
    std::fs::create_dir_all(&root).expect("store root");
    let url = format!("rsm.config.url=file://{}", root.display());
    let extra = [
        "broker.session.timeout.ms=3000",
        "broker.heartbeat.interval.ms=300",
        "replica.lag.time.max.ms=3000",
        "replica.fetch.backoff.ms=100",
        "replica.fetch.wait.max.ms=200",
        "log.retention.check.interval.ms=200",
        "remote.log.storage.system.enable=true",
        "remote.log.manager.task.interval.ms=200",
        "remote.log.manager.task.retry.backoff.ms=100",
        "remote.log.manager.task.retry.backoff.max.ms=1000",
        url.as_str(),
    ];
    let mut cluster = TestCluster::with_layout(ClusterLayout {
        controllers: 0,
        brokers: 0,
        combined: 3,
        extra: &extra,
        client_address: None,
        controller_address: None,
    });
    let t0 = Instant::now();
    cluster.start_all(Duration::from_secs(60));
    let all = cluster.bootstrap();
    replication::create_topic(
        &all,
        RF3_TOPIC,
        1,
        3,
        &[
            ("min.insync.replicas", "2"),
            ("segment.bytes", &SEGMENT_BYTES.to_string()),
            ("remote.storage.enable", "true"),
            ("local.retention.bytes", &LOCAL_RETENTION_BYTES.to_string()),
            ("file.delete.delay.ms", "0"),
        ],
    );
    let p = replication::eventually(Duration::from_secs(30), "a full ISR", || {
        replication::partition_state(&all, RF3_TOPIC, 0)
            .filter(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let old_leader = p.leader;
    let producer = replication::idempotent_producer(&all);
    // Records 0..1000 in rounds of 50 while the leader uploads; it is killed meanwhile.
    let writer = {
        let p = producer.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for r in 0..20 {
                acked.extend(produce_indexed(&p, r * 50, r * 50 + 50));
            }
            acked
        })
    };

    // Kill the leader once uploads are under way (more rolled segments still to come).
    replication::eventually_every(
        Duration::from_secs(30),
        Duration::from_millis(20),
        "the first uploads",
        || {
            rf3_manifest(&root)
                .filter(|m| m.finished().count() >= 3)
                .map(|_| ())
        },
    );
    let before_kill = rf3_manifest(&root).map_or(0, |m| m.finished().count());
    cluster.node(old_leader).kill9();
    eprintln!("killed leader {old_leader} with {before_kill} segments uploaded");
    let mut acked = writer.join().expect("writer");
    let new_leader = replication::eventually(Duration::from_secs(30), "a new leader", || {
        replication::partition_state(&all, RF3_TOPIC, 0)
            .filter(|p| p.leader >= 0 && p.leader != old_leader)
            .map(|p| p.leader)
    });
    // The new leader uploads and retains locally: its local log starts past all the killed
    // broker has.
    let (_, local, tiered, _) =
        replication::eventually(Duration::from_secs(60), "uploads by the new leader", || {
            rf3_offsets(&all).filter(|o| o.1 > 600 && o.2 >= o.1 - 1)
        });
    eprintln!("new leader {new_leader}: local log start {local}, tiered up to {tiered}");

    // The killed broker comes back below that local log start: KIP-405's follower path.
    cluster.node(old_leader).start();
    cluster.node(old_leader).wait_ready(Duration::from_secs(60));
    replication::eventually(Duration::from_secs(30), "the follower path", || {
        cluster
            .node(old_leader)
            .current_output()
            .contains("starting there with the remote log's state")
            .then_some(())
    });
    replication::eventually(Duration::from_secs(30), "the full ISR again", || {
        replication::partition_state(&all, RF3_TOPIC, 0).filter(|p| p.isr.len() == 3)
    });
    let failover_done = t0.elapsed();

    // The store goes away under load: writes go on, nothing not uploaded is deleted.
    let outage = if std::env::var("NAGARE_LONG_TESTS").is_ok_and(|v| v == "1") {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(10)
    };
    let leader_dir = cluster
        .node(new_leader)
        .log_dir()
        .join(format!("{RF3_TOPIC}-0"));
    let parked = store_dir.path().join("remote.off");
    std::fs::rename(&root, &parked).expect("take the store away");
    std::fs::write(&root, b"not a directory").expect("block the store path");
    let outage_start = Instant::now();
    let mut next = 1000;
    let mut max_local = 0u64;
    let mut tiered_during = tiered;
    while outage_start.elapsed() < outage {
        acked.extend(produce_indexed(&producer, next, next + 50));
        next += 50;
        let (bytes, _) = local_log_bytes(&leader_dir);
        max_local = max_local.max(bytes);
        if let Some((_, local, tiered, _)) = rf3_offsets(&all) {
            assert!(
                local <= tiered + 1,
                "local log start {local} past the uploads ({tiered}) during the outage"
            );
            tiered_during = tiered;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let written_during = next - 1000;
    assert!(
        max_local > LOCAL_RETENTION_BYTES + 4 * SEGMENT_BYTES,
        "the local log grew during the outage: {max_local} bytes"
    );
    std::fs::remove_file(&root).expect("unblock");
    std::fs::rename(&parked, &root).expect("store back");
    let back = Instant::now();
    let total = next;
    let (_, local, tiered, latest) =
        replication::eventually(Duration::from_secs(60), "uploads after the outage", || {
            rf3_offsets(&all).filter(|o| o.2 > tiered_during && o.1 > 1000 && o.2 >= o.1 - 1)
        });
    let caught_up = back.elapsed();
    let after = local_log_bytes(&leader_dir).0;
    eprintln!(
        "outage {outage:?}: {written_during} records written, local log up to {max_local} bytes \
         (local retention {LOCAL_RETENTION_BYTES}); {caught_up:?} after the store came back: \
         local start {local}, tiered {tiered}, latest {latest}, local {after} bytes"
    );
    assert_eq!(latest, total as i64, "every record acknowledged once");

    // The manifest: every offset from 0 in finished segments, no gap, none twice, and no
    // object in the store it does not list (the killed leader's unfinished upload was
    // cleaned up by the claim).
    // Uploads go on until the last rolled segment is in: wait for a settled manifest (no
    // upload in flight, one `.log` object per listed segment).
    let segs = replication::eventually(Duration::from_secs(30), "a settled manifest", || {
        let m = rf3_manifest(&root)?;
        let mut segs: Vec<_> = m.segments().cloned().collect();
        segs.sort_by_key(|s| s.start_offset);
        let logs = list_files(&root)
            .into_iter()
            .filter(|k| k.starts_with(&format!("{RF3_TOPIC}-")) && k.ends_with(".log"))
            .count();
        let settled = segs
            .iter()
            .all(|s| s.state == nagare_remote_storage::RemoteSegmentState::CopyFinished)
            && logs == segs.len()
            && rf3_offsets(&all).is_some_and(|o| o.2 == m.copied_end_offset().unwrap_or(-1));
        settled.then_some(segs)
    });
    assert_eq!(segs.first().map(|s| s.start_offset), Some(0));
    for w in segs.windows(2) {
        assert!(
            w[1].start_offset <= w[0].end_offset + 1 && w[1].end_offset > w[0].end_offset,
            "gap or duplicate between {}..{} and {}..{}",
            w[0].start_offset,
            w[0].end_offset,
            w[1].start_offset,
            w[1].end_offset
        );
    }
    // Each segment went up with its producer snapshot, also those uploaded after the
    // outage (the local snapshots wait for their upload).
    assert!(
        segs.iter().all(|s| s.producer_snapshot_present),
        "segments without producer snapshot: {:?}",
        segs.iter()
            .filter(|s| !s.producer_snapshot_present)
            .map(|s| s.start_offset)
            .collect::<Vec<_>>()
    );
    assert!(
        segs.iter().any(|s| s.broker_id == old_leader)
            && segs.iter().any(|s| s.broker_id == new_leader),
        "both leaders uploaded"
    );

    // librdkafka reads everything from 0, byte-for-byte.
    let consumed = replication::consume_all(&all, RF3_TOPIC, total);
    assert_eq!(consumed.len(), total);
    let mut by_offset: Vec<(i64, usize)> = acked.clone();
    by_offset.sort_unstable();
    for ((offset, value), (acked_offset, i)) in consumed.iter().zip(&by_offset) {
        assert_eq!(offset, acked_offset, "dense offsets");
        assert_eq!(value.as_bytes(), &value_of(*i)[..], "record at {offset}");
    }
    eprintln!(
        "3-broker tiered test: failover part {failover_done:?}, whole test {:?}, {} remote segments",
        t0.elapsed(),
        segs.len()
    );
}

/// The store's own PUT throughput: `count` objects of `size` bytes put one after another (as
/// the remote log manager uploads a partition's segments), in MB/s.
fn store_put_mb_per_s(store: &[String], count: usize, size: usize) -> f64 {
    let props: std::collections::HashMap<String, String> = store
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cfg = nagare_remote_storage::RemoteStorageConfig::from_lookup(|k| props.get(k).cloned())
        .expect("store config");
    let (store, root) = cfg.build().expect("store");
    #[allow(unused_imports)]
    use nagare_remote_storage::object_store::ObjectStore as _;
    let payload = bytes::Bytes::from(vec![7u8; size]);
    block_on(async {
        let t = Instant::now();
        for i in 0..count {
            let path = root.child("put-bench").child(format!("{i}"));
            store.put(&path, payload.clone().into()).await.expect("put");
        }
        let secs = t.elapsed().as_secs_f64();
        for i in 0..count {
            let _ = store
                .delete(&root.child("put-bench").child(format!("{i}")))
                .await;
        }
        (count * size) as f64 / 1e6 / secs
    })
}

/// Reads `topic`-0 from offset 0 to its end with librdkafka; (records, MB/s).
fn consume_rate(server: &TestServer, topic: &str) -> (usize, f64) {
    let t = Instant::now();
    let msgs = consume_to_end(
        server,
        topic,
        1,
        Offset::Beginning,
        Duration::from_secs(600),
    );
    let bytes: usize = msgs[0]
        .iter()
        .map(|m| m.payload().map_or(0, <[u8]>::len))
        .sum();
    (
        msgs[0].len(),
        bytes as f64 / 1e6 / t.elapsed().as_secs_f64(),
    )
}

/// One benchmark run against `store` (BENCHMARKS.md, "Tiered storage"): `mb` MB written to a
/// tiered topic with uploads held back (`remote.log.copy.disable=true`), then uploads let go
/// and timed until the remote log reaches the last rolled segment, beside the store's own PUT
/// rate for segment-sized objects measured in the same run; then a cold catch-up read from
/// offset 0 (remote) against the same read of a non-tiered copy (local).
fn bench_run(label: &str, store: &[String], mb: usize) {
    let segment: usize = 8 << 20;
    let mut overrides: Vec<String> = [
        "remote.log.storage.system.enable=true",
        "remote.log.manager.task.interval.ms=100",
        "log.retention.check.interval.ms=200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    overrides.extend(store.iter().cloned());
    let refs: Vec<&str> = overrides.iter().map(String::as_str).collect();
    let server = TestServer::start(&refs);
    let bootstrap = server.bootstrap();
    let seg = segment.to_string();
    server.create_topic(
        TOPIC,
        1,
        &[
            ("segment.bytes", &seg),
            ("remote.storage.enable", "true"),
            // Kafka: with copies disabled local retention must equal the whole log's.
            ("remote.log.copy.disable", "true"),
            ("file.delete.delay.ms", "0"),
        ],
    );
    server.create_topic("local-copy", 1, &[("segment.bytes", &seg)]);
    let producer = server.producer(&[
        ("batch.size", "1000000"),
        ("linger.ms", "5"),
        ("compression.type", "none"),
    ]);
    let records = mb * 1000;
    for topic in [TOPIC, "local-copy"] {
        for i in 0..records {
            let value = value_of(i);
            send_retrying_queue_full(
                &producer,
                BaseRecord::<(), _>::to(topic).partition(0).payload(&value),
            );
        }
    }
    producer.flush(Duration::from_secs(600)).expect("flush");
    let put_rate = store_put_mb_per_s(store, 16, segment);
    let latest = records as i64;
    let t = Instant::now();
    alter_topic(
        &bootstrap,
        &[
            AlterConfigOp::Set("remote.log.copy.disable".into(), "false".into()),
            AlterConfigOp::Set("local.retention.bytes".into(), seg.clone()),
        ],
    )
    .expect("enable copies");
    // Everything but the active segment (at most one segment of records) is uploaded.
    let tiered = wait_for("uploads", Duration::from_secs(900), || {
        let o = offsets(&bootstrap);
        (o.2 >= latest - (segment / 1000) as i64 - 1 && o.1 > 0).then_some(o.2)
    });
    let upload_secs = t.elapsed().as_secs_f64();
    let uploaded_mb = (tiered + 1) as f64 * 1000.0 / 1e6;
    let (n_remote, remote_rate) = consume_rate(&server, TOPIC);
    let (n_local, local_rate) = consume_rate(&server, "local-copy");
    assert_eq!((n_remote, n_local), (records, records));
    eprintln!(
        "BENCH {label}: store PUT {put_rate:.1} MB/s (16 x {} MiB); upload {uploaded_mb:.1} MB in \
         {upload_secs:.2} s = {:.1} MB/s; catch-up consume from 0: remote (cold) {remote_rate:.1} \
         MB/s, local {local_rate:.1} MB/s ({mb} MB)",
        segment >> 20,
        uploaded_mb / upload_secs
    );
}

/// Opt-in benchmark (`NAGARE_BENCH_TIERED=<MB>`, e.g. 200): see [`bench_run`] and
/// BENCHMARKS.md. Runs against `file://` and, if installed, moto.
#[test]
fn tiered_storage_benchmark() {
    let Some(mb) = std::env::var("NAGARE_BENCH_TIERED")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        eprintln!("NAGARE_BENCH_TIERED=<MB> not set: skipping the tiered storage benchmark");
        return;
    };
    let store_dir = tempfile::tempdir().expect("tmp");
    let root: PathBuf = store_dir.path().join("remote");
    bench_run(
        "file",
        &[format!("rsm.config.url=file://{}", root.display())],
        mb,
    );
    if let Some(moto) = start_moto() {
        let port = moto.port;
        bench_run(
            "moto",
            &[
                "rsm.config.url=s3://nagare-tiered/cluster".to_string(),
                format!("rsm.config.endpoint=http://127.0.0.1:{port}"),
                "rsm.config.region=us-east-1".to_string(),
                "rsm.config.access.key.id=test".to_string(),
                "rsm.config.secret.access.key=test".to_string(),
                "rsm.config.path.style.access.enabled=true".to_string(),
            ],
            mb,
        );
    }
}
