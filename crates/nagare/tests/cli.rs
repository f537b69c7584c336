//! The `nagare` CLI against a real server: topic create/list/describe/alter/delete, produce
//! from stdin with keys, consume from the beginning and from a timestamp (ListOffsets by
//! timestamp), broker configs through DescribeConfigs/AlterConfigs, and a clear error when the
//! broker is unreachable.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{block_on, nagare_bin, TestServer};
use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};

fn nagare(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(nagare_bin());
    cmd.args(args)
        .env("NAGARE_BOOTSTRAP_SERVER", server.bootstrap())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn nagare");
    if let Some(input) = stdin {
        let mut s = child.stdin.take().expect("stdin");
        s.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait nagare")
}

fn ok(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let out = nagare(server, args, stdin);
    assert!(
        out.status.success(),
        "nagare {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.current_output()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[test]
fn topic_produce_consume_through_the_cli() {
    let mut server = TestServer::start(&[]);

    ok(
        &server,
        &[
            "topic",
            "create",
            "cli-t",
            "--partitions",
            "3",
            "--config",
            "retention.ms=123456",
        ],
        None,
    );
    assert!(ok(&server, &["topic", "list"], None)
        .lines()
        .any(|l| l.trim() == "cli-t"));
    let described = ok(&server, &["topic", "describe", "cli-t"], None);
    assert!(
        described.contains("retention.ms=123456"),
        "describe shows the override:\n{described}"
    );
    assert_eq!(
        described
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        3,
        "{described}"
    );

    // Keyed lines; the same key always lands on the same partition (murmur2).
    ok(
        &server,
        &["produce", "cli-t", "--key-separator", ":", "--acks", "all"],
        Some("a:1\nb:2\nc:3\na:4\n"),
    );
    let out = ok(
        &server,
        &[
            "consume",
            "cli-t",
            "--from-beginning",
            "--count",
            "4",
            "--format",
            "%p %k=%v",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_by_key(|l| l.split(' ').nth(1).map(str::to_string));
    let kv: Vec<&str> = lines.iter().filter_map(|l| l.split(' ').nth(1)).collect();
    assert_eq!(kv.len(), 4, "{out}");
    for want in ["a=1", "b=2", "c=3", "a=4"] {
        assert!(kv.contains(&want), "missing {want} in {out}");
    }
    let part_of = |k: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(" {k}=")))
            .map(|l| l.split(' ').next())
            .collect::<Vec<_>>()
    };
    let a = part_of("a");
    assert!(
        a.windows(2).all(|w| w[0] == w[1]),
        "key a on one partition: {out}"
    );

    // ListOffsets by timestamp: only records written after `t` are returned.
    ok(
        &server,
        &["produce", "cli-t", "--partition", "1", "--acks", "all"],
        Some("early\n"),
    );
    std::thread::sleep(Duration::from_millis(50));
    let t = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    ok(
        &server,
        &["produce", "cli-t", "--partition", "1", "--acks", "all"],
        Some("late\n"),
    );
    let out = ok(
        &server,
        &[
            "consume",
            "cli-t",
            "--partition",
            "1",
            "--from-timestamp",
            &t.to_string(),
            "--count",
            "1",
            "--timeout-ms",
            "10000",
        ],
        None,
    );
    assert_eq!(out.trim(), "late");

    // Alter: more partitions and a config change, visible in describe.
    ok(
        &server,
        &[
            "topic",
            "alter",
            "cli-t",
            "--partitions",
            "5",
            "--config",
            "retention.bytes=1000000",
        ],
        None,
    );
    let described = ok(&server, &["topic", "describe", "cli-t"], None);
    assert!(described.contains("retention.bytes=1000000"), "{described}");
    assert_eq!(
        described
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        5,
        "{described}"
    );
    // Invalid values are refused with Kafka's error.
    let bad = nagare(
        &server,
        &["topic", "alter", "cli-t", "--config", "retention.ms=soon"],
        None,
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("INVALID_CONFIG"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    ok(&server, &["topic", "delete", "cli-t"], None);
    assert!(!ok(&server, &["topic", "list"], None)
        .lines()
        .any(|l| l.trim() == "cli-t"));
    server.assert_healthy("after the CLI session");
}

#[test]
fn broker_configs_are_described_and_altered() {
    let mut server = TestServer::start(&["log.retention.hours=24"]);
    let admin = server.admin();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let describe = |key: &str| -> Option<String> {
        let res = block_on(admin.describe_configs([&ResourceSpecifier::Broker(1)], &opts))
            .expect("DescribeConfigs");
        let r = res
            .into_iter()
            .next()
            .expect("one result")
            .expect("broker resource");
        r.get(key).and_then(|e| e.value.clone())
    };
    // log.retention.hours=24 in the file shows up as the static value of log.retention.ms.
    assert_eq!(describe("log.retention.ms").as_deref(), Some("86400000"));
    // A dynamic broker config (AlterConfigs) becomes the default of topics without overrides.
    let alter = AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.retention.ms", "3600000");
    let res = block_on(admin.alter_configs([&alter], &opts)).expect("AlterConfigs");
    assert!(res.iter().all(|r| r.is_ok()), "{res:?}");
    assert_eq!(describe("log.retention.ms").as_deref(), Some("3600000"));
    server.create_topic("dyn", 1, &[]);
    let res = block_on(admin.describe_configs([&ResourceSpecifier::Topic("dyn")], &opts))
        .expect("DescribeConfigs");
    let topic = res.into_iter().next().expect("one").expect("topic");
    assert_eq!(
        topic
            .get("retention.ms")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("3600000")
    );
    // A key that is not dynamically changeable is refused (INVALID_CONFIG), and the refused
    // AlterConfigs changes nothing — not even the override it would have replaced. (The
    // rdkafka crate's alter_configs result does not surface per-resource error codes, so
    // the effect is what is checked; the compat script sees the error code itself.)
    let bad = AlterConfig::new(ResourceSpecifier::Broker(1)).set("node.id", "7");
    let _ = block_on(admin.alter_configs([&bad], &opts)).expect("AlterConfigs");
    assert_eq!(describe("log.retention.ms").as_deref(), Some("3600000"));
    assert_eq!(
        describe("node.id").as_deref(),
        Some("1"),
        "node.id keeps its static value"
    );
    server.assert_healthy("after config changes");
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let port = common::free_port();
    let out = Command::new(nagare_bin())
        .args([
            "topic",
            "list",
            "--bootstrap-server",
            &format!("127.0.0.1:{port}"),
        ])
        .output()
        .expect("run nagare");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect") && err.contains(&port.to_string()),
        "{err}"
    );
}
