//! `nagare server`: starts a node from a Kafka-style `server.properties` file.

use std::path::PathBuf;

use nagare_broker::config::BrokerConfig;

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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
    let (config, warnings) = BrokerConfig::load(args.config.as_deref(), &args.overrides)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    nagare_broker::server::run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
