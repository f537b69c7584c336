//! `nagare tiered status TOPIC`: the remote segments of a tiered topic (KIP-405), read from
//! the object store named by the broker's `rsm.config.*` keys (give the broker's
//! `server.properties` or `--override`s) and the topic's id from the cluster.

use nagare_broker::config::BrokerConfig;
use nagare_remote_storage::metadata::TopicIdPartition;
use nagare_remote_storage::RemoteStorageManager;

/// Arguments of `nagare tiered`.
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
    /// List the remote segments of every partition of a topic.
    Status {
        /// The topic.
        topic: String,
        /// The broker's properties file (for `rsm.config.*`).
        #[arg(long = "config")]
        config: Option<std::path::PathBuf>,
        /// A broker property as `key=value` (e.g. `rsm.config.url=s3://bucket/prefix`).
        #[arg(long = "override")]
        overrides: Vec<String>,
    },
}

/// Runs `nagare tiered`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Status {
            topic,
            config,
            overrides,
        } => {
            let rsm = open_store(config.as_deref(), overrides)?;
            let mut client = args.broker.connect().await?;
            let meta = client.topic_metadata(&topic).await?;
            println!("topic {topic} (id {})", meta.topic_id);
            for p in &meta.partitions {
                let tp = TopicIdPartition {
                    topic: topic.clone(),
                    topic_id: meta.topic_id,
                    partition: p.partition,
                };
                match rsm.load_state(&tp).await? {
                    None => println!("  partition {}: no remote data", p.partition),
                    Some(state) => {
                        println!(
                            "  partition {}: remote log start {:?}, highest uploaded {:?}, {} bytes, leader epoch {}",
                            p.partition,
                            state.log_start_offset(),
                            state.copied_end_offset(),
                            state.size_bytes(),
                            state.leader_epoch()
                        );
                        for m in state.segments() {
                            println!(
                                "    {:>12}..{:<12} {:>10} bytes  {:?}  epochs {:?}  {}",
                                m.start_offset,
                                m.end_offset,
                                m.segment_size_bytes,
                                m.state,
                                m.segment_leader_epochs,
                                m.id.segment_id
                            );
                        }
                    }
                }
            }
            Ok(())
        }
    }
}

/// The object store named by a broker's properties (`rsm.config.*` from `config` and
/// `overrides`), for reading remote log manifests.
pub fn open_store(
    config: Option<&std::path::Path>,
    mut overrides: Vec<String>,
) -> anyhow::Result<RemoteStorageManager> {
    // The store is all that is needed: tiered storage counts as on for this read.
    overrides.push("remote.log.storage.system.enable=true".into());
    let (cfg, _) = BrokerConfig::load(config, &overrides)?;
    let store_cfg = cfg
        .tiered
        .store
        .ok_or_else(|| anyhow::anyhow!("no rsm.config.url given"))?;
    let (store, root) = store_cfg.build()?;
    Ok(RemoteStorageManager::new(store, root, 1 << 20))
}

/// Local and remote extent of one partition of a tiered topic (`nagare topic describe`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionStorage {
    /// The partition.
    pub partition: i32,
    /// ListOffsets -2 (the whole log's start, remote included), -4 (local log start), -5
    /// (highest uploaded offset, KIP-1005) and -1 (high watermark); `None` if not answered.
    pub offsets: [Option<i64>; 4],
    /// Bytes on the leader's disk (DescribeLogDirs).
    pub local_bytes: Option<i64>,
    /// Bytes and count of finished remote segments (the manifest), when the store is given.
    pub remote: Option<(u64, usize)>,
}

/// Gathers [`PartitionStorage`] of every partition of `t`; what cannot be read stays `None`.
pub async fn partition_storage(
    client: &mut nagare_client::Client,
    t: &nagare_client::TopicMetadata,
    rsm: Option<&RemoteStorageManager>,
) -> Vec<PartitionStorage> {
    use nagare_client::OffsetSpec;
    let mut sizes: std::collections::HashMap<i32, Vec<(i32, i64)>> = Default::default();
    let mut rows = Vec::new();
    for p in &t.partitions {
        let mut row = PartitionStorage {
            partition: p.partition,
            ..Default::default()
        };
        for (slot, spec) in row.offsets.iter_mut().zip([
            OffsetSpec::Earliest,
            OffsetSpec::EarliestLocal,
            OffsetSpec::LatestTiered,
            OffsetSpec::Latest,
        ]) {
            *slot = client.list_offsets(&t.name, p.partition, spec).await.ok();
        }
        if p.leader >= 0 {
            if let std::collections::hash_map::Entry::Vacant(e) = sizes.entry(p.leader) {
                e.insert(
                    client
                        .local_partition_sizes(p.leader, &t.name)
                        .await
                        .unwrap_or_default(),
                );
            }
            row.local_bytes = sizes
                .get(&p.leader)
                .and_then(|v| v.iter().find(|(i, _)| *i == p.partition))
                .map(|(_, b)| *b);
        }
        if let Some(rsm) = rsm {
            let tp = TopicIdPartition {
                topic: t.name.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
            };
            row.remote = match rsm.load_state(&tp).await {
                Ok(Some(state)) => Some((state.size_bytes(), state.finished().count())),
                Ok(None) => Some((0, 0)),
                Err(_) => None,
            };
        }
        rows.push(row);
    }
    rows
}

/// The tiered-storage table of `nagare topic describe`.
pub fn render_storage(rows: &[PartitionStorage]) -> String {
    let opt = |v: Option<i64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
    let mut table: Vec<Vec<String>> = vec![[
        "PARTITION",
        "LOG-START",
        "LOCAL-START",
        "TIERED-END",
        "END",
        "LOCAL-BYTES",
        "REMOTE-BYTES",
        "REMOTE-SEGMENTS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for r in rows {
        let (rb, rs) = match r.remote {
            Some((b, n)) => (b.to_string(), n.to_string()),
            None => ("-".to_owned(), "-".to_owned()),
        };
        table.push(vec![
            r.partition.to_string(),
            opt(r.offsets[0]),
            opt(r.offsets[1]),
            opt(r.offsets[2]),
            opt(r.offsets[3]),
            opt(r.local_bytes),
            rb,
            rs,
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out =
        String::from("  Tiered storage (remote sizes need --config or --override rsm.config.*):\n");
    for row in table {
        let mut line = String::from("  ");
        for (c, cell) in row.iter().enumerate() {
            line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_table() {
        let rows = vec![PartitionStorage {
            partition: 0,
            offsets: [Some(0), Some(1200), Some(1199), Some(1500)],
            local_bytes: Some(49_152),
            remote: Some((1_200_000, 75)),
        }];
        let text = render_storage(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].contains("LOCAL-START") && lines[1].contains("REMOTE-BYTES"));
        let cells: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cells,
            ["0", "0", "1200", "1199", "1500", "49152", "1200000", "75"]
        );
        let unknown = render_storage(&[PartitionStorage::default()]);
        assert!(unknown
            .lines()
            .nth(2)
            .is_some_and(|l| l.contains('?') && l.contains('-')));
    }
}
