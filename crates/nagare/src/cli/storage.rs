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
        /// A SCRAM credential the new cluster starts with, in `kafka-storage format`'s syntax:
        /// `SCRAM-SHA-256=[name=alice,password=alice-secret]`, optionally with
        /// `iterations=N` and `salt=<base64>`, or `saltedpassword=<base64>` with `salt` and
        /// `iterations` instead of the password. Repeatable; the first admin's way in.
        #[arg(
            long = "add-scram",
            short = 'S',
            value_name = "MECHANISM=[name=...,password=...]"
        )]
        add_scram: Vec<String>,
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
            add_scram,
        } => {
            // Parsed (and the passwords salted and hashed) before anything is written.
            let mut scram_records = Vec::new();
            for arg in &add_scram {
                let (name, c) =
                    nagare_sasl::scram::parse_add_scram(arg, &rand::random::<[u8; 16]>())
                        .map_err(|e| anyhow::anyhow!(e))?;
                scram_records.push(nagare_metadata::MetadataRecord::UserScramCredential {
                    name,
                    mechanism: c.mechanism.type_id(),
                    salt: c.salt,
                    stored_key: c.stored_key,
                    server_key: c.server_key,
                    iterations: c.iterations as i32,
                });
            }
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
                        nagare_broker::server::write_bootstrap_records(&dir, &scram_records)?;
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
