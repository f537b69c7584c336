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
    let (config, warnings) = BrokerConfig::load(args.config.as_deref(), &args.overrides)?;
    init_logging(&config);
    for w in warnings {
        tracing::warn!("{w}");
    }
    nagare_broker::server::run(config, shutdown_signal()).await
}

/// Installs the process's log subscriber: `log.format` (text or JSON lines), the levels of
/// `log.level` / `log.levels` (or `RUST_LOG` when set), and a reload handle so that the
/// BROKER_LOGGER resource changes levels at run time.
fn init_logging(config: &BrokerConfig) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, reload, EnvFilter};

    let from_config =
        nagare_broker::logging::BrokerLoggers::new(config.log_level, &config.log_levels)
            .directives();
    let initial = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or(from_config);
    let filter = EnvFilter::try_new(&initial).unwrap_or_else(|e| {
        eprintln!("invalid log filter {initial:?} ({e}); logging at info");
        EnvFilter::new("info")
    });
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = if config.log_json {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init()
    } else {
        registry.with(fmt::layer().with_target(false)).try_init()
    };
    if installed.is_ok() {
        nagare_broker::logging::install_reload(move |directives| {
            let f = EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(f).map_err(|e| e.to_string())
        });
    }
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
