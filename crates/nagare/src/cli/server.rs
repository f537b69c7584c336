//! `nagare server`: starts a node from a Kafka-style `server.properties` file.

use std::path::PathBuf;

/// Arguments of `nagare server`.
#[derive(clap::Args)]
pub struct Args {
    /// A Kafka `server.properties` file (KRaft mode). Without it the single-node defaults apply.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Override one property, as `key=value` (like kafka-server-start's `--override`). Repeatable.
    #[arg(long = "override", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("not implemented yet")
}
