//! `nagare cluster describe`: the cluster id, the controller and every broker with its state
//! (fenced or not) and rack, from DescribeCluster; `nagare cluster unregister --id N` removes a
//! decommissioned broker's registration (like `kafka-cluster unregister`).

/// Arguments of `nagare cluster`.
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
    /// Show the cluster id and the brokers (id, host:port, rack, state).
    Describe,
    /// Remove a (decommissioned) broker's registration: it leaves every ISR and the
    /// partitions it led elect new leaders.
    Unregister {
        /// The broker's node id.
        #[arg(long)]
        id: i32,
    },
}

/// Runs `nagare cluster ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::Unregister { id } => {
            client.unregister_broker(id).await?;
            println!("Broker {id} is no longer registered.");
            Ok(())
        }
        Command::Describe => {
            let c = client.describe_cluster(true, false).await?;
            println!("ClusterId: {}", c.cluster_id);
            println!("{:<8}{:<28}{:<12}STATE", "ID", "ENDPOINT", "RACK");
            let mut nodes = c.nodes.clone();
            nodes.sort_by_key(|n| n.id);
            for n in nodes {
                println!(
                    "{:<8}{:<28}{:<12}{}",
                    n.id,
                    format!("{}:{}", n.host, n.port),
                    n.rack.as_deref().unwrap_or("-"),
                    if n.fenced { "fenced" } else { "unfenced" }
                );
            }
            Ok(())
        }
    }
}
