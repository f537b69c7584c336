//! One module per CLI subcommand.

pub mod acl;
pub mod bench;
pub mod cluster;
pub mod consume;
pub mod group;
pub mod produce;
pub mod quorum;
pub mod quota;
pub mod server;
pub mod storage;
pub mod topic;
pub mod transactions;

/// The broker-address option every client subcommand takes.
#[derive(clap::Args, Clone, Debug)]
pub struct Bootstrap {
    /// Broker(s) to bootstrap from, comma-separated `host:port`.
    #[arg(
        long = "bootstrap-server",
        short = 'b',
        alias = "bootstrap-servers",
        env = "NAGARE_BOOTSTRAP_SERVER",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap_server: String,
}

impl Bootstrap {
    /// Connects a client for the CLI; the error already names the broker and the cause.
    pub async fn connect(&self) -> anyhow::Result<nagare_client::Client> {
        let config =
            nagare_client::ClientConfig::new(&self.bootstrap_server).with_client_id("nagare-cli");
        Ok(nagare_client::Client::connect(config).await?)
    }
}
