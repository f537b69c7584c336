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
            let mut overrides = overrides;
            // The store is all that is needed: tiered storage counts as on for this read.
            overrides.push("remote.log.storage.system.enable=true".into());
            let (cfg, _) = BrokerConfig::load(config.as_deref(), &overrides)?;
            let store_cfg = cfg
                .tiered
                .store
                .ok_or_else(|| anyhow::anyhow!("no rsm.config.url given"))?;
            let (store, root) = store_cfg.build()?;
            let rsm = RemoteStorageManager::new(store, root, 1 << 20);
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
