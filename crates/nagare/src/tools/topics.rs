//! `kafka-topics.sh`: Kafka 4.x's `TopicCommand` options and output (`--create`, `--list`,
//! `--describe`, `--alter --partitions`, `--delete`; `--topic` is a regular expression except
//! with `--create`; `--describe` prints `Topic: …\tTopicId: …` and one tab-indented line per
//! partition).

use nagare_client::{Client, ConfigResource, NewTopic, ResponseError, TopicMetadata};

use super::opts::{self, usage, Kind, Parsed, Spec};
use crate::cli::topic::{join_ids, kafka_uuid};

const ACTIONS: &[&str] = &["create", "list", "describe", "alter", "delete"];
const REPORTS: &[&str] = &[
    "under-replicated-partitions",
    "unavailable-partitions",
    "under-min-isr-partitions",
    "at-min-isr-partitions",
];

const SPECS: &[Spec] = &[
    ("list", Kind::Flag),
    ("create", Kind::Flag),
    ("delete", Kind::Flag),
    ("alter", Kind::Flag),
    ("describe", Kind::Flag),
    ("topic", Kind::Value),
    ("topic-id", Kind::Value),
    ("config", Kind::Value),
    // Removed from kafka-topics in 4.0 (kafka-configs alters topic configs).
    ("delete-config", Kind::Unsupported(true)),
    ("partitions", Kind::Value),
    ("replication-factor", Kind::Value),
    ("replica-assignment", Kind::Unsupported(true)),
    ("under-replicated-partitions", Kind::Flag),
    ("unavailable-partitions", Kind::Flag),
    ("under-min-isr-partitions", Kind::Flag),
    ("at-min-isr-partitions", Kind::Flag),
    ("topics-with-overrides", Kind::Flag),
    ("if-exists", Kind::Flag),
    ("if-not-exists", Kind::Flag),
    ("exclude-internal", Kind::Flag),
    // Paging of DescribeTopicPartitions; Nagare's client reads metadata in one response.
    ("partition-size-limit-per-response", Kind::Value),
];

/// What a parsed command line asks for, after Kafka's `checkArgs`.
#[derive(Debug, PartialEq, Eq)]
struct Command {
    action: &'static str,
}

/// Kafka's argument checks: one action, `--topic` where needed, options only with the
/// actions they belong to.
fn check(p: &Parsed) -> anyhow::Result<Command> {
    super::no_positional(p)?;
    let action = p.exactly_one(ACTIONS)?;
    p.required("bootstrap-server")?;
    if matches!(action, "create" | "alter" | "delete") && !p.has("topic") {
        return Err(usage(format!(
            "Missing required argument \"[topic]\" for --{action}"
        )));
    }
    if action == "alter" && !p.has("partitions") {
        return Err(usage(
            "Missing required argument \"[partitions]\" for --alter (to alter topic configurations, the kafka-configs tool can be used)",
        ));
    }
    p.only_with("config", &["create"])?;
    p.only_with("replication-factor", &["create"])?;
    p.only_with("partitions", &["create", "alter"])?;
    p.only_with("if-not-exists", &["create"])?;
    p.only_with("if-exists", &["alter", "delete", "describe"])?;
    p.only_with("exclude-internal", &["list", "describe"])?;
    p.only_with("topic-id", &["describe"])?;
    p.only_with("topics-with-overrides", &["describe"])?;
    for r in REPORTS {
        p.only_with(r, &["describe"])?;
    }
    if p.given(REPORTS).len() + usize::from(p.has("topics-with-overrides")) > 1 {
        return Err(usage(
            "Options --under-replicated-partitions, --unavailable-partitions, --under-min-isr-partitions, --at-min-isr-partitions and --topics-with-overrides are mutually exclusive",
        ));
    }
    Ok(Command { action })
}

/// Runs `kafka-topics.sh`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(SPECS);
    let p = opts::parse("kafka-topics.sh", &specs, args)?;
    let cmd = check(&p)?;
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    match cmd.action {
        "create" => create(&mut client, &p).await,
        "list" => {
            let topics = matching_topics(&mut client, &p).await?;
            println!("{}", topics.join("\n"));
            Ok(())
        }
        "describe" => describe(&mut client, &p).await,
        "alter" => {
            let count: i32 = p.number("partitions")?.unwrap_or_default();
            let topics = existing(&mut client, &p).await?;
            for t in &topics {
                client
                    .create_partitions(&[(t.as_str(), count)], false)
                    .await?;
            }
            Ok(())
        }
        "delete" => {
            let topics = existing(&mut client, &p).await?;
            for t in &topics {
                client.delete_topics(&[t.as_str()]).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

async fn create(client: &mut Client, p: &Parsed) -> anyhow::Result<()> {
    let name = p.required("topic")?.to_owned();
    let partitions: Option<i32> = p.number("partitions")?;
    let rf: Option<i32> = p.number("replication-factor")?;
    if rf.is_some_and(|rf| !(1..=i32::from(i16::MAX)).contains(&rf)) {
        anyhow::bail!("The replication factor must be between 1 and 32767 inclusive");
    }
    if partitions.is_some_and(|n| n < 1) {
        anyhow::bail!("The partitions must be greater than 0");
    }
    let mut configs = Vec::new();
    for c in p.values("config") {
        let (k, v) = c
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| usage(format!("Invalid topic config: all configs to be added must be in the format \"key=val\": '{c}'")))?;
        configs.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if name.contains('.') || name.contains('_') {
        println!("WARNING: Due to limitations in metric names, topics with a period ('.') or underscore ('_') could collide. To avoid issues it is best to use either, but not both.");
    }
    let topic = NewTopic {
        name: name.clone(),
        partitions,
        replication_factor: rf.and_then(|r| i16::try_from(r).ok()),
        configs,
    };
    match client.create_topics(&[topic], false).await {
        Ok(()) => {
            println!("Created topic {name}.");
            Ok(())
        }
        Err(e)
            if p.has("if-not-exists")
                && e.kafka_error() == Some(ResponseError::TopicAlreadyExists) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Sorted topic names matching `--topic` (all if absent), internal ones left out with
/// `--exclude-internal` (Kafka's `getTopics`).
async fn matching_topics(client: &mut Client, p: &Parsed) -> anyhow::Result<Vec<String>> {
    let all = client.describe_topics(&[]).await?;
    let filter = p.value("topic").map(super::include_list).transpose()?;
    let exclude_internal = p.has("exclude-internal");
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|t| !(exclude_internal && t.is_internal))
        .filter(|t| filter.as_ref().is_none_or(|r| r.is_match(&t.name)))
        .map(|t| t.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The matching topics; an error if `--topic` matches none and `--if-exists` is absent.
async fn existing(client: &mut Client, p: &Parsed) -> anyhow::Result<Vec<String>> {
    let topics = matching_topics(client, p).await?;
    if let Some(t) = p.value("topic") {
        if topics.is_empty() && !p.has("if-exists") {
            anyhow::bail!("Topic '{t}' does not exist as expected");
        }
    }
    Ok(topics)
}

async fn describe(client: &mut Client, p: &Parsed) -> anyhow::Result<()> {
    let topics: Vec<TopicMetadata> = if let Some(id) = p.value("topic-id") {
        let all = client.describe_topics(&[]).await?;
        let found: Vec<TopicMetadata> = all
            .into_iter()
            .filter(|t| kafka_uuid(t.topic_id.as_bytes()) == id)
            .filter(|t| !(p.has("exclude-internal") && t.is_internal))
            .collect();
        if found.is_empty() && !p.has("if-exists") {
            anyhow::bail!("TopicId '{id}' does not exist as expected");
        }
        found
    } else {
        let names = existing(client, p).await?;
        if names.is_empty() {
            return Ok(());
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut t = client.describe_topics(&refs).await?;
        t.sort_by(|a, b| a.name.cmp(&b.name));
        t
    };
    let live: Vec<i32> = client.brokers().keys().copied().collect();
    let report = p.given(REPORTS).first().copied();
    let mut out = String::new();
    for t in &topics {
        let entries = client
            .describe_configs(&ConfigResource::Topic(t.name.clone()), None)
            .await?;
        let overrides: Vec<String> = entries
            .iter()
            .filter(|e| !e.is_default())
            .map(|e| format!("{}={}", e.name, e.value.as_deref().unwrap_or("null")))
            .collect();
        let min_isr = entries
            .iter()
            .find(|e| e.name == "min.insync.replicas")
            .and_then(|e| e.value.as_deref())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1);
        out.push_str(&render(
            t,
            &overrides,
            min_isr,
            &live,
            report,
            p.has("topics-with-overrides"),
        ));
    }
    print!("{out}");
    Ok(())
}

/// Kafka's describe output of one topic: the summary line (left out when a partition
/// report is asked for, or with `--topics-with-overrides` for a topic without overrides)
/// and a line per partition the report selects.
fn render(
    t: &TopicMetadata,
    overrides: &[String],
    min_isr: usize,
    live: &[i32],
    report: Option<&str>,
    with_overrides: bool,
) -> String {
    let mut out = String::new();
    if report.is_none() && (!with_overrides || !overrides.is_empty()) {
        let id = if t.topic_id.is_nil() {
            String::new()
        } else {
            format!("\tTopicId: {}", kafka_uuid(t.topic_id.as_bytes()))
        };
        out.push_str(&format!(
            "Topic: {}{id}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
            t.name,
            t.partitions.len(),
            t.replication_factor(),
            overrides.join(",")
        ));
    }
    if with_overrides {
        return out;
    }
    for part in &t.partitions {
        let has_leader = part.leader >= 0;
        let show = match report {
            None => true,
            Some("under-replicated-partitions") => part.replicas.len() > part.isr.len(),
            Some("unavailable-partitions") => !has_leader || !live.contains(&part.leader),
            Some("under-min-isr-partitions") => !has_leader || part.isr.len() < min_isr,
            Some("at-min-isr-partitions") => part.isr.len() == min_isr,
            Some(_) => false,
        };
        if !show {
            continue;
        }
        let leader = if has_leader {
            part.leader.to_string()
        } else {
            "none".to_owned()
        };
        // Nagare's metadata has no eligible leader replicas (KIP-966): Kafka prints N/A then.
        out.push_str(&format!(
            "\tTopic: {}\tPartition: {}\tLeader: {leader}\tReplicas: {}\tIsr: {}\tElr: N/A\tLastKnownElr: N/A\n",
            t.name,
            part.partition,
            join_ids(&part.replicas),
            join_ids(&part.isr),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_client::PartitionMetadata;

    fn parse(a: &[&str]) -> anyhow::Result<Command> {
        let args: Vec<String> = a.iter().map(|s| s.to_string()).collect();
        let specs = super::super::with_connection(SPECS);
        let p = opts::parse("kafka-topics.sh", &specs, &args)?;
        check(&p)
    }

    #[test]
    fn kafka_argument_rules() {
        let bs = ["--bootstrap-server", "localhost:9092"];
        let ok = |extra: &[&str]| {
            let mut a = bs.to_vec();
            a.extend_from_slice(extra);
            parse(&a)
        };
        assert_eq!(
            ok(&[
                "--create",
                "--topic",
                "t",
                "--partitions",
                "3",
                "--replication-factor",
                "1",
                "--config",
                "cleanup.policy=compact"
            ])
            .expect("create")
            .action,
            "create"
        );
        assert_eq!(ok(&["--list"]).expect("list").action, "list");
        assert_eq!(
            ok(&["--describe", "--topic", "t"]).expect("d").action,
            "describe"
        );
        assert!(ok(&["--create"]).is_err(), "create needs --topic");
        assert!(
            ok(&["--alter", "--topic", "t"]).is_err(),
            "alter needs --partitions"
        );
        assert!(ok(&["--list", "--describe"]).is_err(), "one action");
        assert!(ok(&["--topic", "t"]).is_err(), "an action");
        assert!(
            ok(&["--describe", "--config", "a=b"]).is_err(),
            "--config only with --create"
        );
        assert!(ok(&["--create", "--topic", "t", "--if-exists"]).is_err());
        assert!(ok(&[
            "--describe",
            "--under-replicated-partitions",
            "--unavailable-partitions"
        ])
        .is_err());
        assert!(
            parse(&["--list"]).is_err(),
            "--bootstrap-server is required"
        );
        let e = ok(&["--alter", "--topic", "t", "--delete-config", "x"]).expect_err("removed");
        assert!(e.to_string().contains("--delete-config"), "{e}");
        let e = ok(&["--list", "--zookeeper", "z:2181"]).expect_err("unknown");
        assert!(e.to_string().contains("zookeeper"), "{e}");
    }

    #[test]
    fn describe_lines_like_kafka() {
        let part = |i: i32, leader: i32, isr: Vec<i32>| PartitionMetadata {
            partition: i,
            leader,
            leader_epoch: 0,
            replicas: vec![1, 2],
            isr,
            offline_replicas: vec![],
            error: None,
        };
        // A nil id (a broker without topic ids) is left out, as Kafka does.
        let t = TopicMetadata {
            name: "orders".into(),
            topic_id: Default::default(),
            is_internal: false,
            partitions: vec![part(0, 1, vec![1, 2]), part(1, -1, vec![2])],
            error: None,
        };
        let all = render(
            &t,
            &["cleanup.policy=compact".into()],
            2,
            &[1, 2],
            None,
            false,
        );
        assert_eq!(
            all,
            "Topic: orders\tPartitionCount: 2\tReplicationFactor: 2\tConfigs: cleanup.policy=compact\n\
             \tTopic: orders\tPartition: 0\tLeader: 1\tReplicas: 1,2\tIsr: 1,2\tElr: N/A\tLastKnownElr: N/A\n\
             \tTopic: orders\tPartition: 1\tLeader: none\tReplicas: 1,2\tIsr: 2\tElr: N/A\tLastKnownElr: N/A\n"
        );
        let under = render(
            &t,
            &[],
            2,
            &[1, 2],
            Some("under-replicated-partitions"),
            false,
        );
        assert_eq!(under.lines().count(), 1);
        assert!(under.contains("Partition: 1"));
        assert_eq!(render(&t, &[], 2, &[1, 2], None, true), "");
    }
}
