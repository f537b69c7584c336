//! `nagare topic`: create, list, describe, alter and delete topics (like `kafka-topics`),
//! and trigger leader elections (like `kafka-leader-election`).

use anyhow::{bail, Context};
use nagare_client::{
    AlterConfigOp, Client, ConfigResource, Error as ClientError, NewTopic, ResponseError,
    TopicMetadata,
};

/// Arguments of `nagare topic`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Number of partitions (default: the broker's `num.partitions`).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the broker's `default.replication.factor`).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config as `key=value`, e.g. `cleanup.policy=compact`. Repeatable.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without doing anything if the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
        /// Only check that the topic could be created.
        #[arg(long)]
        validate_only: bool,
    },
    /// List topic names.
    List {
        /// Leave out internal topics such as `__consumer_offsets`.
        #[arg(long)]
        exclude_internal: bool,
    },
    /// Show partitions (leader, replicas, ISR) and non-default configs of one or all topics.
    Describe {
        /// Topic name (all topics if omitted).
        name: Option<String>,
        /// Tiered topics: the broker's properties file naming the object store
        /// (`rsm.config.*`), to show remote sizes from the remote log manifests.
        #[arg(long = "config")]
        config: Option<std::path::PathBuf>,
        /// Tiered topics: a broker property as `key=value` (e.g.
        /// `rsm.config.url=s3://bucket/prefix`), to show remote sizes.
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
    /// Add partitions and/or change configs of a topic.
    Alter {
        /// Topic name.
        name: String,
        /// New total number of partitions (can only grow).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Set a topic config, as `key=value`. Repeatable.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
        /// Remove a topic config override (back to the default). Repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
    },
    /// Delete a topic.
    Delete {
        /// Topic name.
        name: String,
        /// Succeed without doing anything if the topic does not exist.
        #[arg(long)]
        if_exists: bool,
    },
    /// Trigger leader elections (ElectLeaders, like `kafka-leader-election`).
    ElectLeaders {
        /// `preferred` (leadership back to the first replica) or `unclean` (a leader for
        /// leaderless partitions, out of the ISR if need be: acknowledged records may be lost).
        #[arg(long, value_parser = ["preferred", "unclean"], ignore_case = true)]
        election_type: String,
        /// The topic (with --partition).
        #[arg(long, requires = "partition", conflicts_with = "all_topic_partitions")]
        topic: Option<String>,
        /// The partition of --topic.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Every partition of every topic.
        #[arg(long)]
        all_topic_partitions: bool,
    },
}

/// Parses `key=value` (the value may contain `=`; the key may not be empty).
pub(crate) fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got '{s}'")),
    }
}

/// Runs `nagare topic`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::Create {
            name,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
            validate_only,
        } => {
            let topic = NewTopic {
                name: name.clone(),
                partitions,
                replication_factor,
                configs,
            };
            match client.create_topics(&[topic], validate_only).await {
                Ok(()) if validate_only => println!("Topic {name} can be created."),
                Ok(()) => println!("Created topic {name}."),
                Err(e)
                    if if_not_exists
                        && e.kafka_error() == Some(ResponseError::TopicAlreadyExists) =>
                {
                    println!("Topic {name} already exists.");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Command::List { exclude_internal } => {
            let topics = client.describe_topics(&[]).await?;
            for t in topics {
                if exclude_internal && t.is_internal {
                    continue;
                }
                println!("{}", t.name);
            }
        }
        Command::Describe {
            name,
            config,
            overrides,
        } => {
            let names: Vec<&str> = name.as_deref().into_iter().collect();
            let topics = client.describe_topics(&names).await?;
            let store = if config.is_some() || !overrides.is_empty() {
                Some(super::tiered::open_store(config.as_deref(), overrides)?)
            } else {
                None
            };
            let mut out = String::new();
            for t in &topics {
                let configs = non_default_configs(&mut client, &t.name).await?;
                out.push_str(&render_topic(t, &configs));
                if configs.iter().any(|c| c == "remote.storage.enable=true") {
                    let rows =
                        super::tiered::partition_storage(&mut client, t, store.as_ref()).await;
                    out.push_str(&super::tiered::render_storage(&rows));
                }
                out.push('\n');
            }
            print!("{out}");
        }
        Command::Alter {
            name,
            partitions,
            configs,
            delete_configs,
        } => {
            if partitions.is_none() && configs.is_empty() && delete_configs.is_empty() {
                bail!("nothing to alter: give --partitions, --config or --delete-config");
            }
            // Fail early and clearly if the topic does not exist.
            client.describe_topics(&[name.as_str()]).await?;
            if let Some(count) = partitions {
                client
                    .create_partitions(&[(name.as_str(), count)], false)
                    .await?;
                println!("Topic {name} now has {count} partitions.");
            }
            if !configs.is_empty() || !delete_configs.is_empty() {
                let ops: Vec<AlterConfigOp> = configs
                    .iter()
                    .map(|(k, v)| AlterConfigOp::Set(k.clone(), v.clone()))
                    .chain(
                        delete_configs
                            .iter()
                            .map(|k| AlterConfigOp::Delete(k.clone())),
                    )
                    .collect();
                client
                    .incremental_alter_configs(&ConfigResource::Topic(name.clone()), &ops, false)
                    .await?;
                for (k, v) in &configs {
                    println!("Set {k}={v} on topic {name}.");
                }
                for k in &delete_configs {
                    println!("Removed {k} from topic {name}.");
                }
            }
        }
        Command::Delete { name, if_exists } => match client.delete_topics(&[name.as_str()]).await {
            Ok(()) => println!("Deleted topic {name}."),
            Err(ClientError::UnknownTopic { .. }) if if_exists => {
                println!("Topic {name} does not exist.");
            }
            Err(e) => return Err(e.into()),
        },
        Command::ElectLeaders {
            election_type,
            topic,
            partition,
            all_topic_partitions,
        } => {
            let (code, label) = if election_type.eq_ignore_ascii_case("unclean") {
                (1, "UNCLEAN")
            } else {
                (0, "PREFERRED")
            };
            let wanted: Option<Vec<(&str, Vec<i32>)>> = match (&topic, partition) {
                (Some(t), Some(p)) => Some(vec![(t.as_str(), vec![p])]),
                _ if all_topic_partitions => None,
                _ => bail!("give --topic and --partition, or --all-topic-partitions"),
            };
            let results = client.elect_leaders(code, wanted.as_deref()).await?;
            let mut failed = 0;
            for r in &results {
                let tp = format!("{}-{}", r.topic, r.partition);
                match r.error_code {
                    0 => println!(
                        "Successfully completed leader election ({label}) for partition {tp}"
                    ),
                    84 => println!("Valid replica already elected for partition {tp}"),
                    c => {
                        failed += 1;
                        println!(
                            "Error completing leader election ({label}) for partition {tp}: {}{}",
                            ResponseError::try_from_code(c)
                                .map(nagare_client::kafka_error_name)
                                .unwrap_or_default(),
                            r.error_message
                                .as_deref()
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            if results.is_empty() {
                println!("No partition needed a leader election ({label}).");
            }
            if failed > 0 {
                bail!("{failed} leader election(s) failed");
            }
        }
    }
    Ok(())
}

/// `name=value` for every config of the topic not at its built-in default, sorted by name.
async fn non_default_configs(client: &mut Client, topic: &str) -> anyhow::Result<Vec<String>> {
    let entries = client
        .describe_configs(&ConfigResource::Topic(topic.to_owned()), None)
        .await
        .with_context(|| format!("cannot read the configs of topic {topic}"))?;
    Ok(entries
        .into_iter()
        .filter(|e| !e.is_default())
        .map(|e| {
            let value = if e.sensitive {
                "[hidden]".to_owned()
            } else {
                e.value.unwrap_or_else(|| "null".to_owned())
            };
            format!("{}={}", e.name, value)
        })
        .collect())
}

/// Kafka prints topic ids as URL-safe base64 without padding (`Uuid.toString()` in Java).
pub(crate) fn kafka_uuid(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

pub(crate) fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One topic as a summary line plus an aligned table of its partitions.
fn render_topic(t: &TopicMetadata, configs: &[String]) -> String {
    let mut out = format!(
        "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}\n",
        t.name,
        kafka_uuid(t.topic_id.as_bytes()),
        t.partitions.len(),
        t.replication_factor(),
        configs.join(",")
    );
    let any_offline = t.partitions.iter().any(|p| !p.offline_replicas.is_empty());
    let mut rows: Vec<Vec<String>> = vec![{
        let mut h = vec!["PARTITION", "LEADER", "REPLICAS", "ISR"];
        if any_offline {
            h.push("OFFLINE");
        }
        h.into_iter().map(str::to_owned).collect()
    }];
    for p in &t.partitions {
        let mut row = vec![
            p.partition.to_string(),
            if p.leader >= 0 {
                p.leader.to_string()
            } else {
                "none".to_owned()
            },
            join_ids(&p.replicas),
            join_ids(&p.isr),
        ];
        if any_offline {
            row.push(join_ids(&p.offline_replicas));
        }
        rows.push(row);
    }
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_client::PartitionMetadata;

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("a="), Ok(("a".into(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn uuid_like_kafka() {
        // Kafka: new Uuid(0, 1).toString() == "AAAAAAAAAAAAAAAAAAAAAQ"
        let mut b = [0u8; 16];
        b[15] = 1;
        assert_eq!(kafka_uuid(&b), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(kafka_uuid(&[0xff; 16]), "_____________________w");
    }

    #[test]
    fn table_is_aligned() {
        let p = |i: i32, leader: i32| PartitionMetadata {
            partition: i,
            leader,
            leader_epoch: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            offline_replicas: vec![],
            error: None,
        };
        let t = TopicMetadata {
            name: "orders".into(),
            topic_id: Default::default(),
            is_internal: false,
            partitions: vec![p(0, 1), p(10, -1)],
            error: None,
        };
        let s = render_topic(&t, &["cleanup.policy=compact".into()]);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(
            lines[0],
            "Topic: orders\tTopicId: AAAAAAAAAAAAAAAAAAAAAA\tPartitionCount: 2\tReplicationFactor: 3\tConfigs: cleanup.policy=compact"
        );
        assert_eq!(lines[1], "  PARTITION  LEADER  REPLICAS  ISR");
        assert_eq!(lines[2], "  0          1       1,2,3     1,2");
        assert_eq!(lines[3], "  10         none    1,2,3     1,2");
    }
}
