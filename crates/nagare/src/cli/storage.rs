//! `nagare storage`: formats a node's log directories before its first start, like Kafka's
//! `kafka-storage format -t ID -c server.properties` and `kafka-storage random-uuid`. Every
//! node of a multi-node cluster must be formatted with the same cluster id; only the
//! single-node default formats itself. `--feature transaction.version=N` chooses a feature
//! level the new cluster starts at (KIP-1022), as `kafka-storage format --feature` does.

use std::path::PathBuf;

use clap::Subcommand;

use nagare_broker::config::BrokerConfig;

/// Arguments of `nagare storage`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a new random cluster id.
    RandomUuid,
    /// Write `meta.properties` into every log dir (and `metadata.log.dir`) of a node.
    Format {
        /// The cluster id (from `nagare storage random-uuid`), the same on every node.
        #[arg(long = "cluster-id", short = 't')]
        cluster_id: String,
        /// The node's `server.properties`.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Override one property, as `key=value`. Repeatable.
        #[arg(long = "override", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Skip directories that are already formatted instead of failing.
        #[arg(long = "ignore-formatted", short = 'g')]
        ignore_formatted: bool,
        /// A feature level the new cluster starts at, as `NAME=LEVEL` (e.g.
        /// `transaction.version=0`; by default `transaction.version=2`). Repeatable.
        #[arg(long = "feature", short = 'f', value_name = "NAME=LEVEL")]
        features: Vec<String>,
    },
}

/// Runs `nagare storage ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::RandomUuid => {
            println!("{}", nagare_broker::server::random_cluster_id());
            Ok(())
        }
        Command::Format {
            cluster_id,
            config,
            overrides,
            ignore_formatted,
            features,
        } => {
            let features = features
                .iter()
                .map(|f| nagare_metadata::features::parse_feature(f))
                .collect::<Result<Vec<_>, _>>()?;
            // Checked before anything is written, so a bad level formats nothing.
            let levels = nagare_metadata::features::bootstrap_levels(&features)?;
            if nagare_metadata::features::transaction_version(&levels) >= 2 {
                eprintln!(
                    "warning: with transaction.version=2, Java 4.x producers stop sending \
                     AddPartitionsToTxn/AddOffsetsToTxn; Nagare does not yet add partitions to \
                     their transactions on Produce v12 / TxnOffsetCommit v5 (KIP-890 part 2)"
                );
            }
            let (config, warnings) = BrokerConfig::load(Some(&config), &overrides)?;
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let mut dirs = config.log_dirs.clone();
            if !dirs.contains(&config.metadata_log_dir) {
                dirs.push(config.metadata_log_dir.clone());
            }
            for dir in dirs {
                if nagare_broker::server::format_dir(
                    &dir,
                    config.node_id,
                    &cluster_id,
                    ignore_formatted,
                )? {
                    // The first controller of the cluster finalizes these levels (Kafka's
                    // bootstrap.checkpoint in the metadata log dir).
                    if dir == config.metadata_log_dir {
                        nagare_broker::server::write_bootstrap_features(&dir, &features)?;
                    }
                    println!("Formatting {} with cluster id {cluster_id}", dir.display());
                } else {
                    println!("{} is already formatted; skipped", dir.display());
                }
            }
            Ok(())
        }
    }
}
