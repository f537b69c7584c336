//! `nagare group` against a real server: records produced with `nagare produce`, a librdkafka
//! group consumer that commits part of them, then `group list`, `group describe` (committed
//! offsets, log end offsets, lag, members while active, Empty after the consumer leaves),
//! `reset-offsets` (dry run, to an offset, earliest/latest/datetime, refused while active) and
//! `group delete`.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{nagare_bin, TestServer};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const GROUP: &str = "cli-group";
const TOPIC: &str = "group-t";

fn nagare(server: &TestServer, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(nagare_bin())
        .args(args)
        .env("NAGARE_BOOTSTRAP_SERVER", server.bootstrap())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nagare");
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

/// One row of `group describe`: the columns after GROUP and TOPIC, by partition.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    current: String,
    end: String,
    lag: String,
    consumer: String,
    client_id: String,
}

fn describe(server: &TestServer) -> Vec<(i32, Row)> {
    let out = ok(server, &["group", "describe", GROUP], None);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID"
        ],
        "{out}"
    );
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|c| c.len() == 9 && c[0] == GROUP && c[1] == TOPIC)
        .map(|c| {
            (
                c[2].parse().expect("partition"),
                Row {
                    current: c[3].to_owned(),
                    end: c[4].to_owned(),
                    lag: c[5].to_owned(),
                    consumer: c[6].to_owned(),
                    client_id: c[8].to_owned(),
                },
            )
        })
        .collect()
}

/// (partition, current offset, log end offset, lag) of every row.
fn offsets(server: &TestServer) -> Vec<(i32, String, String, String)> {
    describe(server)
        .into_iter()
        .map(|(p, r)| (p, r.current, r.end, r.lag))
        .collect()
}

fn o(p: i32, current: i64, end: i64, lag: i64) -> (i32, String, String, String) {
    (p, current.to_string(), end.to_string(), lag.to_string())
}

fn state(server: &TestServer) -> String {
    let out = ok(server, &["group", "describe", GROUP, "--state"], None);
    let row = out.lines().nth(1).expect("state row");
    row.split_whitespace().nth(1).expect("state").to_owned()
}

fn listed(server: &TestServer) -> bool {
    ok(server, &["group", "list"], None)
        .lines()
        .any(|l| l.trim() == GROUP)
}

#[test]
fn list_describe_reset_and_delete_a_group() {
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    ok(
        &server,
        &["topic", "create", TOPIC, "--partitions", "2"],
        None,
    );
    ok(
        &server,
        &["produce", TOPIC, "-p", "0"],
        Some("a\nb\nc\nd\ne\nf\n"),
    );
    ok(
        &server,
        &["produce", TOPIC, "-p", "1"],
        Some("g\nh\ni\nj\n"),
    );

    // A group consumer owning both partitions commits 3 on partition 0 and 1 on partition 1.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", GROUP)
        .set("client.id", "lag-checker")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
        let owned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if owned == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never got both partitions"
        );
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(3))
        .expect("tpl");
    tpl.add_partition_offset(TOPIC, 1, Offset::Offset(1))
        .expect("tpl");
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");

    // Active: listed, Stable, offsets and lag per partition, owned by the consumer.
    assert!(listed(&server), "group list shows {GROUP}");
    let _ = consumer.poll(Duration::from_millis(100));
    assert_eq!(state(&server), "Stable");
    let rows = describe(&server);
    assert_eq!(
        rows.iter()
            .map(|(p, r)| (*p, r.current.clone(), r.end.clone(), r.lag.clone()))
            .collect::<Vec<_>>(),
        vec![o(0, 3, 6, 3), o(1, 1, 4, 3)]
    );
    for (p, r) in &rows {
        assert_eq!(r.client_id, "lag-checker", "partition {p}: {r:?}");
        assert_ne!(r.consumer, "-", "partition {p} has an owner");
    }
    let members = ok(&server, &["group", "describe", GROUP, "--members"], None);
    assert!(
        members.contains("lag-checker") && members.contains(&format!("{TOPIC}(0,1)")),
        "members view:\n{members}"
    );
    let with_state = ok(&server, &["group", "list", "--state"], None);
    assert!(
        with_state
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [GROUP, "consumer", "Stable"]),
        "list --state:\n{with_state}"
    );

    // Resetting an active group is refused, like Kafka.
    let _ = consumer.poll(Duration::from_millis(100));
    let refused = nagare(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
        ],
        None,
    );
    assert!(
        !refused.status.success(),
        "reset of an active group must fail"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "Assignments can only be reset if the group '{GROUP}' is inactive, but the current \
             state is Stable."
        )),
        "{stderr}"
    );
    assert_eq!(offsets(&server), vec![o(0, 3, 6, 3), o(1, 1, 4, 3)]);

    // The consumer leaves: Empty, offsets kept, no owners.
    drop(consumer);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&server) != "Empty" {
        assert!(Instant::now() < deadline, "the group never became Empty");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rows = describe(&server);
    assert!(
        rows.iter()
            .all(|(_, r)| r.consumer == "-" && r.client_id == "-"),
        "{rows:?}"
    );
    assert_eq!(offsets(&server), vec![o(0, 3, 6, 3), o(1, 1, 4, 3)]);

    // A dry run prints the plan and commits nothing.
    let plan = ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
            "--dry-run",
        ],
        None,
    );
    let planned: Vec<Vec<&str>> = plan
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|c: &Vec<&str>| c.first() == Some(&GROUP))
        .collect();
    assert_eq!(
        planned,
        vec![vec![GROUP, TOPIC, "0", "0"], vec![GROUP, TOPIC, "1", "0"]],
        "{plan}"
    );
    assert_eq!(offsets(&server), vec![o(0, 3, 6, 3), o(1, 1, 4, 3)]);

    // To an offset (clamped to the log end on partition 1, which has only 4 records)...
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-offset",
            "5",
        ],
        None,
    );
    assert_eq!(offsets(&server), vec![o(0, 5, 6, 1), o(1, 4, 4, 0)]);
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-offset",
            "2",
        ],
        None,
    );
    assert_eq!(offsets(&server), vec![o(0, 2, 6, 4), o(1, 2, 4, 2)]);

    // ... one partition only, to the latest, and to a datetime (before and after the records).
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            &format!("{TOPIC}:1"),
            "--to-latest",
        ],
        None,
    );
    assert_eq!(offsets(&server), vec![o(0, 2, 6, 4), o(1, 4, 4, 0)]);
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-datetime",
            "2000-01-01T00:00:00.000",
        ],
        None,
    );
    assert_eq!(offsets(&server), vec![o(0, 0, 6, 6), o(1, 0, 4, 4)]);
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-datetime",
            "9999999999999",
        ],
        None,
    );
    assert_eq!(offsets(&server), vec![o(0, 6, 6, 0), o(1, 4, 4, 0)]);

    // Delete: gone from the list; deleting it again fails.
    let deleted = ok(&server, &["group", "delete", GROUP], None);
    assert!(deleted.contains("successful"), "{deleted}");
    assert!(!listed(&server), "group list no longer shows {GROUP}");
    let again = nagare(&server, &["group", "delete", GROUP], None);
    assert!(!again.status.success(), "deleting a missing group fails");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("GROUP_ID_NOT_FOUND"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn groups_that_do_not_exist() {
    let server = TestServer::start(&["group.initial.rebalance.delay.ms=0"]);
    ok(&server, &["topic", "create", "fresh-t"], None);
    ok(&server, &["produce", "fresh-t"], Some("a\nb\nc\n"));

    let out = nagare(&server, &["group", "describe", "nobody"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Consumer group 'nobody' does not exist."),
        "{stderr}"
    );

    // Resetting the offsets of a group that does not exist creates them, as in Kafka.
    ok(
        &server,
        &[
            "group",
            "reset-offsets",
            "fresh-g",
            "--topic",
            "fresh-t",
            "--to-offset",
            "1",
            "--execute",
        ],
        None,
    );
    let described = ok(&server, &["group", "describe", "fresh-g"], None);
    let row: Vec<&str> = described
        .lines()
        .nth(1)
        .expect("one row")
        .split_whitespace()
        .collect();
    assert_eq!(
        row,
        ["fresh-g", "fresh-t", "0", "1", "3", "2", "-", "-", "-"],
        "{described}"
    );
    let state = ok(&server, &["group", "describe", "fresh-g", "--state"], None);
    assert!(state.contains("Empty"), "{state}");
    ok(&server, &["group", "delete", "fresh-g"], None);
    let out = nagare(&server, &["group", "describe", "fresh-g"], None);
    assert!(!out.status.success(), "deleted group is gone");
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let out = Command::new(nagare_bin())
        .args(["group", "list", "-b", "127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .expect("run nagare");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
}
