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

use common::{block_on, consume_to_end, free_port, send_retrying_queue_full, TestServer};
use nagare_client::{AlterConfigOp, Client, ConfigResource, OffsetSpec};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
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
