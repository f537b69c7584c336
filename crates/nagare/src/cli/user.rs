//! `nagare user scram set|describe|delete`: SCRAM credentials in the metadata log, like
//! `kafka-configs --entity-type users --alter --add-config 'SCRAM-SHA-512=[password=...]'`,
//! `--describe` and `--delete-config` (AlterUserScramCredentials /
//! DescribeUserScramCredentials, KIP-554).

use nagare_client::{ScramAlteration, ScramMechanism};

/// Arguments of `nagare user`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the brokers are, and how to log in.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// SCRAM credentials.
    Scram {
        #[command(subcommand)]
        command: ScramCommand,
    },
}

#[derive(clap::Subcommand)]
enum ScramCommand {
    /// Set (or replace) a user's credential for one mechanism. The password is salted and
    /// hashed here; only the salted password is sent.
    Set {
        /// The user name.
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// The password.
        #[arg(long)]
        password: String,
        /// PBKDF2 iterations (4096 to 16384; Kafka's default 4096).
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// List users' credentials (mechanism and iterations; every user when none is named).
    Describe {
        /// User names.
        names: Vec<String>,
    },
    /// Delete a user's credential for one mechanism.
    Delete {
        /// The user name.
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long)]
        mechanism: String,
    },
}

fn mechanism(name: &str) -> anyhow::Result<ScramMechanism> {
    ScramMechanism::from_name(name).ok_or_else(|| {
        anyhow::anyhow!("{name:?} is not a SCRAM mechanism (SCRAM-SHA-256, SCRAM-SHA-512)")
    })
}

/// Runs `nagare user ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Command::Scram { command } = args.command;
    match command {
        ScramCommand::Describe { names } => {
            let mut client = args.broker.connect().await?;
            let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
            for u in client.describe_user_scram_credentials(&names).await? {
                let creds: Vec<String> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| format!("{m}=iterations={i}"))
                    .collect();
                println!(
                    "SCRAM credential configs for user-principal '{}' are {}",
                    u.user,
                    creds.join(", ")
                );
            }
        }
        ScramCommand::Set {
            name,
            mechanism: m,
            password,
            iterations,
        } => {
            // Checked before connecting, so a typo costs no round trip.
            let alteration = ScramAlteration::Upsert {
                user: name.clone(),
                mechanism: mechanism(&m)?,
                iterations,
                password,
            };
            let mut client = args.broker.connect().await?;
            client.alter_user_scram_credentials(&[alteration]).await?;
            println!("Set {m} credential of user {name}.");
        }
        ScramCommand::Delete { name, mechanism: m } => {
            let alteration = ScramAlteration::Delete {
                user: name.clone(),
                mechanism: mechanism(&m)?,
            };
            let mut client = args.broker.connect().await?;
            client.alter_user_scram_credentials(&[alteration]).await?;
            println!("Deleted {m} credential of user {name}.");
        }
    }
    Ok(())
}
