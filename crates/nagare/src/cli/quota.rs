//! `nagare quota set|describe|delete`: client quotas (KIP-546), like `kafka-configs
//! --entity-type users|clients|ips --alter --add-config ...` and `--describe`.

use nagare_client::{QuotaEntityComponent, QuotaEntry, QuotaFilter, QuotaMatch};

/// Arguments of `nagare quota`.
#[derive(clap::Args)]
pub struct Args {
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    #[command(subcommand)]
    command: Command,
}

/// Which entity: a user and/or a client id (each named or the default), or an IP address.
#[derive(clap::Args, Clone, Debug, Default)]
struct Entity {
    /// A user principal's name (e.g. `alice`, or `ANONYMOUS` for PLAINTEXT clients).
    #[arg(long, conflicts_with = "user_default")]
    user: Option<String>,
    /// The default user.
    #[arg(long)]
    user_default: bool,
    /// A client id.
    #[arg(long, conflicts_with = "client_id_default")]
    client_id: Option<String>,
    /// The default client id.
    #[arg(long)]
    client_id_default: bool,
    /// A client IP address (`connection_creation_rate` only).
    #[arg(long, conflicts_with_all = ["ip_default", "user", "user_default", "client_id", "client_id_default"])]
    ip: Option<String>,
    /// The default IP.
    #[arg(long, conflicts_with_all = ["user", "user_default", "client_id", "client_id_default"])]
    ip_default: bool,
}

/// Quota values (`set`) or, as flags, the keys to remove (`delete`).
#[derive(clap::Args, Clone, Debug, Default)]
struct Values {
    /// `producer_byte_rate`: produce bytes per second.
    #[arg(long)]
    producer_byte_rate: Option<f64>,
    /// `consumer_byte_rate`: fetch bytes per second.
    #[arg(long)]
    consumer_byte_rate: Option<f64>,
    /// `request_percentage`: request-handling time, percent of one second per second.
    #[arg(long)]
    request_percentage: Option<f64>,
    /// `controller_mutation_rate`: partition mutations per second.
    #[arg(long)]
    controller_mutation_rate: Option<f64>,
    /// `connection_creation_rate`: new connections per second (ip entities).
    #[arg(long)]
    connection_creation_rate: Option<f64>,
}

impl Values {
    fn pairs(&self) -> Vec<(String, f64)> {
        [
            ("producer_byte_rate", self.producer_byte_rate),
            ("consumer_byte_rate", self.consumer_byte_rate),
            ("request_percentage", self.request_percentage),
            ("controller_mutation_rate", self.controller_mutation_rate),
            ("connection_creation_rate", self.connection_creation_rate),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect()
    }
}

#[derive(clap::Subcommand)]
enum Command {
    /// Set quota values on an entity.
    Set {
        #[command(flatten)]
        entity: Entity,
        #[command(flatten)]
        values: Values,
        /// Validate only, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show quotas: every entity matching the given components (none given: all).
    Describe {
        #[command(flatten)]
        entity: Entity,
        /// Only entities with exactly the given components.
        #[arg(long)]
        strict: bool,
    },
    /// Remove quota values from an entity (the named keys, else all it has).
    Delete {
        #[command(flatten)]
        entity: Entity,
        /// Keys to remove, comma-separated (e.g. `producer_byte_rate,consumer_byte_rate`).
        #[arg(long, value_delimiter = ',')]
        keys: Vec<String>,
    },
}

impl Entity {
    fn components(&self) -> Vec<QuotaEntityComponent> {
        let mut out = Vec::new();
        let mut add = |t: &str, named: &Option<String>, default: bool| {
            if named.is_some() || default {
                out.push(QuotaEntityComponent {
                    entity_type: t.to_string(),
                    name: named.clone(),
                });
            }
        };
        add("user", &self.user, self.user_default);
        add("client-id", &self.client_id, self.client_id_default);
        add("ip", &self.ip, self.ip_default);
        out
    }

    fn filter(&self) -> Vec<QuotaFilter> {
        self.components()
            .into_iter()
            .map(|c| QuotaFilter {
                entity_type: c.entity_type,
                matches: match c.name {
                    Some(n) => QuotaMatch::Exact(n),
                    None => QuotaMatch::Default,
                },
            })
            .collect()
    }
}

/// Runs `nagare quota ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::Set {
            entity,
            values,
            dry_run,
        } => {
            let components = need_entity(&entity)?;
            let ops: Vec<(String, Option<f64>)> = values
                .pairs()
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
            if ops.is_empty() {
                anyhow::bail!("give at least one quota value, e.g. --producer-byte-rate 1048576");
            }
            client
                .alter_client_quotas(&components, &ops, dry_run)
                .await?;
            println!(
                "{} quota configs for {}.",
                if dry_run {
                    "Validated"
                } else {
                    "Completed updating"
                },
                describe_entity(&components)
            );
        }
        Command::Delete { entity, keys } => {
            let components = need_entity(&entity)?;
            let keys = if keys.is_empty() {
                let found = client
                    .describe_client_quotas(&entity.filter(), true)
                    .await?;
                found
                    .into_iter()
                    .flat_map(|e| e.values.into_keys())
                    .collect()
            } else {
                keys
            };
            if keys.is_empty() {
                println!("No quota configs for {}.", describe_entity(&components));
                return Ok(());
            }
            let ops: Vec<(String, Option<f64>)> = keys.into_iter().map(|k| (k, None)).collect();
            client.alter_client_quotas(&components, &ops, false).await?;
            println!(
                "Completed deleting quota configs for {}.",
                describe_entity(&components)
            );
        }
        Command::Describe { entity, strict } => {
            let found = client
                .describe_client_quotas(&entity.filter(), strict)
                .await?;
            print!("{}", describe_text(&found));
        }
    }
    Ok(())
}

fn need_entity(entity: &Entity) -> anyhow::Result<Vec<QuotaEntityComponent>> {
    let c = entity.components();
    if c.is_empty() {
        anyhow::bail!(
            "name an entity: --user U / --user-default, --client-id C / --client-id-default, or --ip A / --ip-default"
        );
    }
    Ok(c)
}

/// `user-principal 'alice' and client-id 'app'`, as kafka-configs words it.
fn describe_entity(components: &[QuotaEntityComponent]) -> String {
    let parts: Vec<String> = components
        .iter()
        .map(|c| {
            let t = if c.entity_type == "user" {
                "user-principal"
            } else {
                c.entity_type.as_str()
            };
            match &c.name {
                Some(n) => format!("{t} '{n}'"),
                None => format!("the default {t}"),
            }
        })
        .collect();
    parts.join(" and ")
}

/// One line per entity, as `kafka-configs --describe`:
/// `Quota configs for user-principal 'alice' are producer_byte_rate=1024.0`.
pub fn describe_text(entries: &[QuotaEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        let values: Vec<String> = e.values.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        out.push_str(&format!(
            "Quota configs for {} are {}\n",
            describe_entity(&e.entity),
            values.join(", ")
        ));
    }
    out
}
