//! `nagare transactions`: list and describe transactions, describe a partition's active
//! producers, find hanging transactions and abort them — `kafka-transactions.sh`'s commands
//! and options (KIP-664).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use nagare_client::{Client, ProducerState, TransactionDescription};

use super::group::render_table;

/// Arguments of `nagare transactions`.
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
    /// List the transactions of every broker's transaction coordinator.
    List {
        /// Only transactions in these states (`Ongoing`, `PrepareCommit`, …).
        #[arg(long = "state", value_name = "STATE")]
        states: Vec<String>,
        /// Only transactions of these producer ids.
        #[arg(long = "producer-id", value_name = "ID")]
        producer_ids: Vec<i64>,
        /// Only transactions running longer than this many milliseconds (KIP-994).
        #[arg(long, value_name = "MS")]
        duration_filter: Option<i64>,
    },
    /// Describe a transactional id at its coordinator.
    Describe {
        /// The transactional id.
        #[arg(
            value_name = "TRANSACTIONAL_ID",
            required_unless_present = "transactional_id"
        )]
        id: Option<String>,
        /// The transactional id (`kafka-transactions.sh` spelling).
        #[arg(long, conflicts_with = "id")]
        transactional_id: Option<String>,
    },
    /// Describe the active producers of a partition (at its leader).
    DescribeProducers {
        /// Topic (or `--topic`).
        #[arg(value_name = "TOPIC", required_unless_present = "topic")]
        topic_arg: Option<String>,
        /// Partition (or `--partition`).
        #[arg(value_name = "PARTITION", required_unless_present = "partition")]
        partition_arg: Option<i32>,
        /// Topic.
        #[arg(long, conflicts_with = "topic_arg")]
        topic: Option<String>,
        /// Partition.
        #[arg(long, conflicts_with = "partition_arg")]
        partition: Option<i32>,
    },
    /// Abort a hanging transaction on a partition by writing an abort marker at its leader:
    /// name it by `--start-offset` (the producer whose open transaction starts there) or by
    /// `--producer-id`, `--producer-epoch` and `--coordinator-epoch`.
    Abort {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Partition.
        #[arg(long)]
        partition: i32,
        /// The first offset of the transaction to abort.
        #[arg(long, conflicts_with_all = ["producer_id", "producer_epoch", "coordinator_epoch"])]
        start_offset: Option<i64>,
        /// The producer id of the transaction.
        #[arg(long, requires_all = ["producer_epoch", "coordinator_epoch"])]
        producer_id: Option<i64>,
        /// The producer epoch of the transaction.
        #[arg(long)]
        producer_epoch: Option<i16>,
        /// The coordinator epoch to write the marker with.
        #[arg(long)]
        coordinator_epoch: Option<i32>,
    },
    /// Find transactions open on partitions longer than the longest transaction timeout whose
    /// coordinator does not know them (hanging): by `--broker-id` (the partitions it leads) or
    /// `--topic` [`--partition`].
    FindHanging {
        /// The broker whose led partitions to check.
        #[arg(long, required_unless_present = "topic", conflicts_with = "topic")]
        broker_id: Option<i32>,
        /// The topic to check.
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of `--topic`.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
        /// Transactions open longer than this many minutes are suspects (Kafka's default is
        /// `transaction.max.timeout.ms`' default, 15).
        #[arg(long, default_value_t = 15)]
        max_transaction_timeout: i64,
    },
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `nagare transactions`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::List {
            states,
            producer_ids,
            duration_filter,
        } => {
            let txns = client
                .list_transactions(&states, &producer_ids, duration_filter.unwrap_or(-1))
                .await
                .context("cannot list transactions")?;
            let mut rows = vec![vec![
                "TransactionalId".to_owned(),
                "Coordinator".to_owned(),
                "ProducerId".to_owned(),
                "TransactionState".to_owned(),
            ]];
            for t in txns {
                rows.push(vec![
                    t.transactional_id,
                    t.coordinator.to_string(),
                    t.producer_id.to_string(),
                    t.state,
                ]);
            }
            print!("{}", render_table(&rows));
        }
        Command::Describe {
            id,
            transactional_id,
        } => {
            let Some(id) = id.or(transactional_id) else {
                bail!("name the transactional id");
            };
            let d = client
                .describe_transaction(&id)
                .await
                .with_context(|| format!("cannot describe transactional id '{id}'"))?;
            print!("{}", render_table(&describe_rows(&d, now_ms())));
        }
        Command::DescribeProducers {
            topic_arg,
            partition_arg,
            topic,
            partition,
        } => {
            let (Some(topic), Some(partition)) = (topic_arg.or(topic), partition_arg.or(partition))
            else {
                bail!("name the topic and the partition");
            };
            let producers = client
                .describe_producers(&topic, partition)
                .await
                .with_context(|| format!("cannot describe the producers of {topic}-{partition}"))?;
            print!("{}", render_table(&producer_rows(&producers)));
        }
        Command::Abort {
            topic,
            partition,
            start_offset,
            producer_id,
            producer_epoch,
            coordinator_epoch,
        } => {
            let (pid, epoch, coordinator_epoch) =
                match (start_offset, producer_id, producer_epoch, coordinator_epoch) {
                    (Some(offset), _, _, _) => {
                        let producers = client
                            .describe_producers(&topic, partition)
                            .await
                            .with_context(|| {
                                format!("cannot describe the producers of {topic}-{partition}")
                            })?;
                        let Some(p) = producers
                            .iter()
                            .find(|p| p.current_txn_start_offset == offset)
                        else {
                            bail!(
                            "no open transaction on {topic}-{partition} starts at offset {offset}"
                        );
                        };
                        nagare_client::abort_spec(p).with_context(|| {
                            format!("producer epoch {} out of range", p.producer_epoch)
                        })?
                    }
                    (None, Some(pid), Some(epoch), Some(ce)) => (pid, epoch, ce),
                    _ => bail!(
                        "name the transaction by --start-offset, or by --producer-id, \
                     --producer-epoch and --coordinator-epoch"
                    ),
                };
            client
                .abort_transaction(&topic, partition, pid, epoch, coordinator_epoch)
                .await
                .with_context(|| {
                    format!("cannot abort the transaction of producer {pid} on {topic}-{partition}")
                })?;
            println!(
                "Aborted the transaction of producer {pid} (epoch {epoch}) on {topic}-{partition}"
            );
        }
        Command::FindHanging {
            broker_id,
            topic,
            partition,
            max_transaction_timeout,
        } => {
            let partitions = partitions_to_check(&mut client, broker_id, topic, partition).await?;
            let rows = find_hanging(&mut client, &partitions, max_transaction_timeout).await?;
            print!("{}", render_table(&rows));
        }
    }
    Ok(())
}

/// The rows of `describe` (Kafka's columns).
fn describe_rows(d: &TransactionDescription, now: i64) -> Vec<Vec<String>> {
    let duration = if d.start_time_ms >= 0 {
        (now - d.start_time_ms).max(0).to_string()
    } else {
        "None".to_owned()
    };
    let partitions = d
        .partitions
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(",");
    vec![
        [
            "CoordinatorId",
            "TransactionalId",
            "ProducerId",
            "ProducerEpoch",
            "TransactionState",
            "TransactionTimeoutMs",
            "CurrentTransactionStartTimeMs",
            "TransactionDurationMs",
            "TopicPartitions",
        ]
        .map(str::to_owned)
        .to_vec(),
        vec![
            d.coordinator.to_string(),
            d.transactional_id.clone(),
            d.producer_id.to_string(),
            d.producer_epoch.to_string(),
            d.state.clone(),
            d.timeout_ms.to_string(),
            if d.start_time_ms >= 0 {
                d.start_time_ms.to_string()
            } else {
                "None".to_owned()
            },
            duration,
            partitions,
        ],
    ]
}

/// The rows of `describe-producers` (Kafka's columns).
fn producer_rows(producers: &[ProducerState]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "ProducerId",
        "ProducerEpoch",
        "LatestCoordinatorEpoch",
        "LastSequence",
        "LastTimestamp",
        "CurrentTransactionStartOffset",
    ]
    .map(str::to_owned)
    .to_vec()];
    for p in producers {
        rows.push(vec![
            p.producer_id.to_string(),
            p.producer_epoch.to_string(),
            p.coordinator_epoch.to_string(),
            p.last_sequence.to_string(),
            p.last_timestamp.to_string(),
            if p.current_txn_start_offset >= 0 {
                p.current_txn_start_offset.to_string()
            } else {
                "None".to_owned()
            },
        ]);
    }
    rows
}

/// The partitions `find-hanging` looks at: those `broker_id` leads, or `topic`'s (one of them
/// with `partition`).
async fn partitions_to_check(
    client: &mut Client,
    broker_id: Option<i32>,
    topic: Option<String>,
    partition: Option<i32>,
) -> anyhow::Result<Vec<(String, i32)>> {
    let md = match &topic {
        Some(t) => client.metadata(Some(&[t.as_str()])).await?,
        None => client.metadata(None).await?,
    };
    if let Some(t) = &topic {
        if !md.topics.iter().any(|m| &m.name == t) {
            bail!("topic '{t}' does not exist");
        }
    }
    let mut out = Vec::new();
    for t in &md.topics {
        for p in &t.partitions {
            let wanted = match (broker_id, &topic) {
                (Some(b), _) => p.leader == b,
                (None, Some(name)) => &t.name == name && partition.is_none_or(|q| q == p.partition),
                (None, None) => false,
            };
            if wanted {
                out.push((t.name.clone(), p.partition));
            }
        }
    }
    if let (Some(q), Some(t)) = (partition, &topic) {
        if out.is_empty() {
            bail!("topic '{t}' has no partition {q}");
        }
    }
    Ok(out)
}

/// Kafka's `FindHangingTransactionsCommand`: an open transaction on a partition older than
/// the longest transaction timeout is hanging unless its coordinator still has it ongoing (or
/// completing) with this partition, under the same producer epoch.
async fn find_hanging(
    client: &mut Client,
    partitions: &[(String, i32)],
    max_timeout_min: i64,
) -> anyhow::Result<Vec<Vec<String>>> {
    let now = now_ms();
    let max_ms = max_timeout_min.saturating_mul(60_000);
    // Candidates: open transactions whose last write is older than the timeout.
    let mut suspects: Vec<(String, i32, ProducerState)> = Vec::new();
    for (topic, partition) in partitions {
        let producers = client
            .describe_producers(topic, *partition)
            .await
            .with_context(|| format!("cannot describe the producers of {topic}-{partition}"))?;
        for p in producers {
            if nagare_client::hanging_suspect(&p, now, max_ms) {
                suspects.push((topic.clone(), *partition, p));
            }
        }
    }
    let mut rows = vec![[
        "Topic",
        "Partition",
        "ProducerId",
        "ProducerEpoch",
        "CoordinatorEpoch",
        "StartOffset",
        "LastTimestamp",
        "Duration(min)",
    ]
    .map(str::to_owned)
    .to_vec()];
    if suspects.is_empty() {
        return Ok(rows);
    }
    let pids: Vec<i64> = suspects
        .iter()
        .map(|(_, _, p)| p.producer_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let listed = client
        .list_transactions(&[], &pids, -1)
        .await
        .context("cannot list the suspects' transactions")?;
    let mut by_pid: BTreeMap<i64, Vec<TransactionDescription>> = BTreeMap::new();
    for t in listed {
        let d = client
            .describe_transaction(&t.transactional_id)
            .await
            .with_context(|| {
                format!("cannot describe transactional id '{}'", t.transactional_id)
            })?;
        by_pid.entry(t.producer_id).or_default().push(d);
    }
    for (topic, partition, p) in suspects {
        let known = by_pid.get(&p.producer_id).is_some_and(|ds| {
            ds.iter()
                .any(|d| nagare_client::coordinator_covers(d, &topic, partition, p.producer_epoch))
        });
        if known {
            continue;
        }
        rows.push(vec![
            topic,
            partition.to_string(),
            p.producer_id.to_string(),
            p.producer_epoch.to_string(),
            p.coordinator_epoch.to_string(),
            p.current_txn_start_offset.to_string(),
            p.last_timestamp.to_string(),
            ((now - p.last_timestamp) / 60_000).to_string(),
        ]);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_shows_kafka_columns_and_duration() {
        let d = TransactionDescription {
            coordinator: 1,
            transactional_id: "t1".into(),
            state: "Ongoing".into(),
            timeout_ms: 60_000,
            start_time_ms: 1_000,
            producer_id: 7,
            producer_epoch: 2,
            partitions: vec![("a".into(), 0), ("b".into(), 3)],
        };
        let rows = describe_rows(&d, 4_000);
        assert_eq!(rows[0][0], "CoordinatorId");
        assert_eq!(rows[1][7], "3000");
        assert_eq!(rows[1][8], "a-0,b-3");
        let idle = TransactionDescription {
            start_time_ms: -1,
            partitions: vec![],
            ..d
        };
        assert_eq!(describe_rows(&idle, 4_000)[1][7], "None");
    }

    #[test]
    fn producers_without_open_transaction_show_none() {
        let rows = producer_rows(&[ProducerState {
            producer_id: 5,
            producer_epoch: 0,
            last_sequence: 9,
            last_timestamp: 10,
            coordinator_epoch: -1,
            current_txn_start_offset: -1,
        }]);
        assert_eq!(rows[1], vec!["5", "0", "-1", "9", "10", "None"]);
    }
}
