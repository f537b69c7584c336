//! Kafka's command-line tools (issue 17): `nagare tools install DIR` links `kafka-topics.sh`
//! and the others to the binary; each is run through its link, with the examples of Kafka's
//! quickstart and operations documentation, against one real server. Outputs are checked in
//! Kafka's formats and effects through other tools (and librdkafka where that is the clearer
//! witness).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{nagare_bin, TestServer};

struct Tools {
    bin: PathBuf,
    bootstrap: String,
}

impl Tools {
    fn run(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn tool");
        if let Some(input) = stdin {
            let mut s = child.stdin.take().expect("stdin");
            s.write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait tool")
    }

    /// Runs `tool --bootstrap-server B args…`, expects success, returns stdout.
    fn ok(&self, tool: &str, args: &[&str]) -> String {
        self.ok_stdin(tool, args, None)
    }

    fn ok_stdin(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> String {
        let mut all = vec!["--bootstrap-server", self.bootstrap.as_str()];
        all.extend_from_slice(args);
        let out = self.run(tool, &all, stdin);
        assert!(
            out.status.success(),
            "{tool} {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Expects exit code 1 (Kafka's tools' failure code); returns stderr.
    fn fails(&self, tool: &str, args: &[&str]) -> String {
        let mut all = vec!["--bootstrap-server", self.bootstrap.as_str()];
        all.extend_from_slice(args);
        let out = self.run(tool, &all, None);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{tool} {args:?} should fail with 1:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn install(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    let out = Command::new(nagare_bin())
        .args(["tools", "install"])
        .arg(&bin)
        .output()
        .expect("nagare tools install");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in [
        "kafka-topics.sh",
        "kafka-configs.sh",
        "kafka-consumer-groups.sh",
        "kafka-console-producer.sh",
        "kafka-console-consumer.sh",
        "kafka-acls.sh",
        "kafka-transactions.sh",
        "kafka-leader-election.sh",
        "kafka-metadata-quorum.sh",
        "kafka-storage.sh",
        "kafka-get-offsets.sh",
        "kafka-delete-records.sh",
        "kafka-log-dirs.sh",
    ] {
        assert!(bin.join(t).symlink_metadata().is_ok(), "{t} installed");
    }
    bin
}

#[test]
fn kafka_documented_examples_through_the_installed_tools() {
    let server = TestServer::start(&[
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "group.initial.rebalance.delay.ms=0",
    ]);
    let dir = tempfile::tempdir().expect("dir");
    let tools = Tools {
        bin: install(dir.path()),
        bootstrap: server.bootstrap(),
    };

    // kafka-storage.sh (quickstart): a cluster id, then format a fresh log directory.
    let out = tools.run("kafka-storage.sh", &["random-uuid"], None);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(id.len(), 22, "a base64 cluster id: {id:?}");
    let logs = dir.path().join("kraft-combined-logs");
    let props = dir.path().join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\nnode.id=1\ncontroller.quorum.voters=1@127.0.0.1:1\nlog.dirs={}\n",
            logs.display()
        ),
    )
    .expect("props");
    let out = tools.run(
        "kafka-storage.sh",
        &["format", "-t", &id, "-c", &props.to_string_lossy()],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.join("meta.properties").exists(), "formatted");

    // Quickstart: create, describe, write events, read them.
    assert_eq!(
        tools.ok(
            "kafka-topics.sh",
            &["--create", "--topic", "quickstart-events"]
        ),
        "Created topic quickstart-events.\n"
    );
    let d = tools.ok(
        "kafka-topics.sh",
        &["--describe", "--topic", "quickstart-events"],
    );
    let lines: Vec<&str> = d.lines().collect();
    assert!(
        lines[0].starts_with("Topic: quickstart-events\tTopicId: ")
            && lines[0].contains("\tPartitionCount: 1\tReplicationFactor: 1\tConfigs: "),
        "{d}"
    );
    assert_eq!(
        lines[1],
        "\tTopic: quickstart-events\tPartition: 0\tLeader: 1\tReplicas: 1\tIsr: 1\tElr: N/A\tLastKnownElr: N/A"
    );
    tools.ok_stdin(
        "kafka-console-producer.sh",
        &["--topic", "quickstart-events"],
        Some("This is my first event\nThis is my second event\n"),
    );
    assert_eq!(
        tools.ok(
            "kafka-console-consumer.sh",
            &[
                "--topic",
                "quickstart-events",
                "--from-beginning",
                "--max-messages",
                "2"
            ]
        ),
        "This is my first event\nThis is my second event\n"
    );

    // In a consumer group (librdkafka underneath): the group's committed offsets follow.
    assert_eq!(
        tools.ok(
            "kafka-console-consumer.sh",
            &[
                "--topic",
                "quickstart-events",
                "--group",
                "quickstart-group",
                "--from-beginning",
                "--max-messages",
                "2",
                "--property",
                "print.partition=true"
            ]
        ),
        "Partition:0\tThis is my first event\nPartition:0\tThis is my second event\n"
    );
    let d = tools.ok(
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "quickstart-group"],
    );
    let row: Vec<&str> = d
        .lines()
        .find(|l| l.starts_with("quickstart-group"))
        .unwrap_or_else(|| panic!("a row: {d}"))
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..6],
        ["quickstart-group", "quickstart-events", "0", "2", "2", "0"],
        "{d}"
    );

    // Operations docs: a topic with configs, more partitions, config changes.
    tools.ok(
        "kafka-topics.sh",
        &[
            "--create",
            "--topic",
            "my_topic_name",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "max.message.bytes=64000",
            "--config",
            "flush.messages=1",
        ],
    );
    let d = tools.ok(
        "kafka-topics.sh",
        &["--describe", "--topic", "my_topic_name"],
    );
    assert!(
        d.lines()
            .next()
            .is_some_and(|l| l.contains("PartitionCount: 3")
                && l.contains("flush.messages=1")
                && l.contains("max.message.bytes=64000")),
        "{d}"
    );
    tools.ok(
        "kafka-topics.sh",
        &["--alter", "--topic", "my_topic_name", "--partitions", "4"],
    );
    tools.ok(
        "kafka-configs.sh",
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "my_topic_name",
            "--alter",
            "--add-config",
            "max.message.bytes=128000",
        ],
    );
    let c = tools.ok(
        "kafka-configs.sh",
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "my_topic_name",
            "--describe",
        ],
    );
    assert!(
        c.starts_with("Dynamic configs for topic my_topic_name are:\n"),
        "{c}"
    );
    assert!(
        c.contains("  max.message.bytes=128000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:max.message.bytes=128000"),
        "{c}"
    );
    tools.ok(
        "kafka-configs.sh",
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "my_topic_name",
            "--alter",
            "--delete-config",
            "max.message.bytes",
        ],
    );
    let d = tools.ok(
        "kafka-topics.sh",
        &["--describe", "--topic", "my_topic_name"],
    );
    let summary = d.lines().next().unwrap_or_default();
    assert!(
        summary.contains("PartitionCount: 4") && !summary.contains("max.message.bytes"),
        "{d}"
    );
    // Per-broker dynamic config (a log.* one every Nagare accepts) and SCRAM credentials.
    assert_eq!(
        tools.ok(
            "kafka-configs.sh",
            &[
                "--entity-type",
                "brokers",
                "--entity-name",
                "1",
                "--alter",
                "--add-config",
                "log.retention.ms=3600000"
            ]
        ),
        "Completed updating config for broker 1.\n"
    );
    assert!(tools
        .ok("kafka-configs.sh", &["--broker", "1", "--describe"])
        .contains("  log.retention.ms=3600000 sensitive=false synonyms={DYNAMIC_BROKER_CONFIG:log.retention.ms=3600000"));
    let all = tools.ok(
        "kafka-configs.sh",
        &["--describe", "--entity-type", "brokers"],
    );
    assert!(
        all.starts_with("Dynamic configs for broker 1 are:\n  log.retention.ms=3600000 ")
            && all.contains("Default configs for brokers in the cluster are:\n"),
        "{all}"
    );
    tools.ok(
        "kafka-configs.sh",
        &[
            "--alter", "--add-config",
            "SCRAM-SHA-256=[iterations=8192,password=alice-secret],SCRAM-SHA-512=[password=alice-secret]",
            "--entity-type", "users", "--entity-name", "alice",
        ],
    );
    assert_eq!(
        tools.ok("kafka-configs.sh", &["--describe", "--entity-type", "users", "--entity-name", "alice"]),
        "SCRAM credential configs for user-principal 'alice' are SCRAM-SHA-256=iterations=8192, SCRAM-SHA-512=iterations=4096\n"
    );

    // Keyed records, then offsets: kafka-get-offsets, kafka-delete-records.
    tools.ok_stdin(
        "kafka-console-producer.sh",
        &[
            "--topic",
            "my_topic_name",
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
        Some("k:one\nk:two\nk:three\n"),
    );
    let offsets = tools.ok("kafka-get-offsets.sh", &["--topic", "my_topic_name"]);
    let with_records: Vec<&str> = offsets.lines().filter(|l| !l.ends_with(":0")).collect();
    assert_eq!(offsets.lines().count(), 4, "{offsets}");
    assert_eq!(with_records.len(), 1, "one key, one partition: {offsets}");
    let (tp, end) = with_records[0].rsplit_once(':').expect("t:p:o");
    assert_eq!(end, "3");
    let partition = tp.rsplit_once(':').expect("t:p").1.to_owned();
    let out = tools.ok(
        "kafka-console-consumer.sh",
        &[
            "--topic",
            "my_topic_name",
            "--partition",
            &partition,
            "--offset",
            "earliest",
            "--max-messages",
            "3",
            "--property",
            "print.key=true",
            "--property",
            "print.offset=true",
        ],
    );
    assert_eq!(
        out,
        "Offset:0\tk\tone\nOffset:1\tk\ttwo\nOffset:2\tk\tthree\n"
    );
    let json = dir.path().join("delete.json");
    std::fs::write(
        &json,
        format!(r#"{{"partitions":[{{"topic":"my_topic_name","partition":{partition},"offset":2}}],"version":1}}"#),
    )
    .expect("json");
    assert_eq!(
        tools.ok("kafka-delete-records.sh", &["--offset-json-file", &json.to_string_lossy()]),
        format!("Executing records delete operation\nRecords delete operation completed:\npartition: my_topic_name-{partition}\tlow_watermark: 2\n")
    );
    assert_eq!(
        tools.ok(
            "kafka-get-offsets.sh",
            &[
                "--topic-partitions",
                &format!("my_topic_name:{partition}"),
                "--time",
                "-2"
            ]
        ),
        format!("my_topic_name:{partition}:2\n")
    );

    // Consumer groups: reset (creates the offsets), describe with lag, shift, delete.
    let reset = tools.ok(
        "kafka-consumer-groups.sh",
        &[
            "--reset-offsets",
            "--group",
            "my-group",
            "--topic",
            "my_topic_name",
            "--to-earliest",
            "--execute",
        ],
    );
    assert!(reset.contains("NEW-OFFSET"), "{reset}");
    assert_eq!(
        tools.ok("kafka-consumer-groups.sh", &["--list"]),
        "my-group\nquickstart-group\n"
    );
    let d = tools.ok(
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "my-group"],
    );
    let row = d
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some(partition.as_str()))
        .unwrap_or_else(|| panic!("a row for partition {partition}: {d}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cols,
        [
            "my-group",
            "my_topic_name",
            partition.as_str(),
            "2",
            "3",
            "1",
            "-",
            "-",
            "-"
        ],
        "{d}"
    );
    assert!(
        d.starts_with(
            "\nGROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG"
        ),
        "{d:?}"
    );
    tools.ok(
        "kafka-consumer-groups.sh",
        &[
            "--reset-offsets",
            "--group",
            "my-group",
            "--all-topics",
            "--to-latest",
            "--execute",
        ],
    );
    let d = tools.ok(
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "my-group", "--offsets"],
    );
    assert!(
        d.lines()
            .filter(|l| l.starts_with("my-group"))
            .all(|l| l.split_whitespace().nth(5) == Some("0")),
        "{d}"
    );
    let del = tools.ok(
        "kafka-consumer-groups.sh",
        &[
            "--delete-offsets",
            "--group",
            "my-group",
            "--topic",
            &format!("my_topic_name:{partition}"),
        ],
    );
    assert!(
        del.starts_with(
            "Request succeed for deleting offsets with topic my_topic_name group my-group\n"
        ),
        "{del}"
    );
    assert!(del.contains("Successful"), "{del}");
    let d = tools.ok(
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "my-group"],
    );
    assert!(
        !d.lines()
            .any(|l| l.split_whitespace().nth(2) == Some(partition.as_str())),
        "offsets of partition {partition} deleted: {d}"
    );
    assert_eq!(
        tools.ok(
            "kafka-consumer-groups.sh",
            &["--delete", "--group", "my-group"]
        ),
        "Deletion of requested consumer groups ('my-group') was successful.\n"
    );
    let e = tools.fails(
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "my-group"],
    );
    assert!(
        e.contains("Consumer group 'my-group' does not exist."),
        "{e}"
    );

    // kafka-log-dirs.sh: the JSON line.
    let out = tools.ok(
        "kafka-log-dirs.sh",
        &["--describe", "--topic-list", "my_topic_name"],
    );
    let json_line = out.lines().last().expect("json");
    let v: serde_json::Value = serde_json::from_str(json_line).expect("JSON");
    let parts = &v["brokers"][0]["logDirs"][0]["partitions"];
    assert_eq!(parts.as_array().map(Vec::len), Some(4), "{json_line}");
    assert!(out.starts_with("Querying brokers for log directories information\nReceived log directory information from brokers 1\n"));

    // Leader election, quorum, transactions.
    assert_eq!(
        tools.ok(
            "kafka-leader-election.sh",
            &[
                "--election-type",
                "preferred",
                "--topic",
                "my_topic_name",
                "--partition",
                "0"
            ]
        ),
        "Valid replica already elected for partitions my_topic_name-0\n"
    );
    let q = tools.ok("kafka-metadata-quorum.sh", &["describe", "--status"]);
    assert!(
        q.contains("LeaderId:               1") && q.contains("CurrentVoters:          [1]"),
        "{q}"
    );
    let q = tools.ok("kafka-metadata-quorum.sh", &["describe", "--replication"]);
    assert!(q.starts_with("NodeId"), "{q}");
    let t = tools.ok("kafka-transactions.sh", &["list"]);
    assert!(t.starts_with("TransactionalId"), "{t}");

    // ACLs (security docs): add, list, remove.
    tools.ok(
        "kafka-acls.sh",
        &[
            "--add",
            "--allow-principal",
            "User:Bob",
            "--allow-principal",
            "User:Alice",
            "--allow-host",
            "198.51.100.0",
            "--operation",
            "Read",
            "--operation",
            "Write",
            "--topic",
            "Test-topic",
        ],
    );
    let l = tools.ok("kafka-acls.sh", &["--list", "--topic", "Test-topic"]);
    assert!(
        l.starts_with("Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=Test-topic, patternType=LITERAL)`: \n"),
        "{l}"
    );
    assert_eq!(l.matches("(principal=").count(), 4, "{l}");
    assert!(
        l.contains(
            "\t(principal=User:Bob, host=198.51.100.0, operation=READ, permissionType=ALLOW)"
        ),
        "{l}"
    );
    tools.ok(
        "kafka-acls.sh",
        &[
            "--remove",
            "--force",
            "--allow-principal",
            "User:Bob",
            "--allow-host",
            "198.51.100.0",
            "--operation",
            "Read",
            "--topic",
            "Test-topic",
        ],
    );
    let l = tools.ok("kafka-acls.sh", &["--list", "--principal", "User:Bob"]);
    assert!(l.starts_with("ACLs for principal `User:Bob`\n"), "{l}");
    assert_eq!(
        l.matches("(principal=").count(),
        1,
        "only Bob's WRITE is left: {l}"
    );
    assert!(l.contains("operation=WRITE"), "{l}");

    // --help exits 0, as Kafka's tools do.
    let help = tools.run("kafka-topics.sh", &["--help"], None);
    assert!(help.status.success());

    // Errors: an unsupported or unknown option is named, exit code 1.
    let e = tools.fails(
        "kafka-topics.sh",
        &["--create", "--topic", "x", "--replica-assignment", "1:2"],
    );
    assert!(e.contains("--replica-assignment"), "{e}");
    let e = tools.fails(
        "kafka-topics.sh",
        &["--list", "--zookeeper", "localhost:2181"],
    );
    assert!(e.contains("zookeeper is not a recognized option"), "{e}");
    let e = tools.fails(
        "kafka-topics.sh",
        &["--create", "--topic", "quickstart-events"],
    );
    assert!(e.contains("already exists"), "{e}");
    let e = tools.fails("kafka-metadata-quorum.sh", &["describe", "--nope"]);
    assert!(e.contains("--nope"), "{e}");

    // Delete, and the list no longer has it.
    tools.ok("kafka-topics.sh", &["--delete", "--topic", "my_topic_name"]);
    let l = tools.ok("kafka-topics.sh", &["--list", "--exclude-internal"]);
    assert!(
        !l.contains("my_topic_name") && l.contains("quickstart-events"),
        "{l}"
    );
}
