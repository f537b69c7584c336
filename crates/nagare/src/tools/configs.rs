//! `kafka-configs.sh`: Kafka 4.x's `ConfigCommand` against topics, brokers (one or the
//! cluster-wide default), broker loggers, and users / clients / ips (client quotas and users'
//! SCRAM credentials), with its `--describe` output (`Dynamic configs for topic t are:` and a
//! `  name=value sensitive=… synonyms={…}` line per config).

use nagare_client::{
    AlterConfigOp, Client, ConfigDescription, ConfigSource, QuotaEntityComponent, QuotaFilter,
    QuotaMatch, ScramAlteration, ScramMechanism,
};

use super::opts::{self, split_key_values, split_top_level, usage, Kind, Parsed, Spec};

const SPECS: &[Spec] = &[
    ("alter", Kind::Flag),
    ("describe", Kind::Flag),
    ("all", Kind::Flag),
    ("entity-type", Kind::Value),
    ("entity-name", Kind::Value),
    ("entity-default", Kind::Flag),
    ("add-config", Kind::Value),
    ("add-config-file", Kind::Value),
    ("delete-config", Kind::Value),
    ("force", Kind::Flag),
    ("topic", Kind::Value),
    ("broker", Kind::Value),
    ("broker-defaults", Kind::Flag),
    ("broker-logger", Kind::Value),
    ("user", Kind::Value),
    ("user-defaults", Kind::Flag),
    ("client", Kind::Value),
    ("client-defaults", Kind::Flag),
    ("ip", Kind::Value),
    ("ip-defaults", Kind::Flag),
    ("group", Kind::Value),
    ("client-metrics", Kind::Unsupported(true)),
];

/// The entity a command line names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entity {
    /// A topic, or every topic (describe only).
    Topic(Option<String>),
    /// A broker by id, or (None) the cluster-wide default.
    Broker(Option<i32>),
    /// Every broker, then the cluster-wide default (describe without a name).
    AllBrokers,
    /// A broker's loggers.
    BrokerLogger(i32),
    /// A consumer group's configs (KIP-848 group configs, resource type 32).
    Group(String),
    /// A quota entity (`user`, `client-id` or `ip`): a name, or None for the default.
    Quota(&'static str, Option<String>),
}

/// Resolves `--entity-type/--entity-name/--entity-default` or a shorthand (`--topic t`, …).
fn entity(p: &Parsed) -> anyhow::Result<Entity> {
    let shorthand = [
        ("topic", "topics"),
        ("broker", "brokers"),
        ("broker-logger", "broker-loggers"),
        ("user", "users"),
        ("client", "clients"),
        ("ip", "ips"),
        ("group", "groups"),
    ]
    .into_iter()
    .find_map(|(opt, ty)| p.value(opt).map(|n| (ty.to_owned(), Some(n.to_owned()))));
    let defaults = [
        ("broker-defaults", "brokers"),
        ("user-defaults", "users"),
        ("client-defaults", "clients"),
        ("ip-defaults", "ips"),
    ]
    .into_iter()
    .find_map(|(opt, ty)| p.has(opt).then(|| (ty.to_owned(), None)));
    let default_shorthand = defaults.is_some();
    let types = p.values("entity-type");
    if types.len() > 1 {
        return Err(usage(
            "Nagare's kafka-configs.sh takes one --entity-type at a time",
        ));
    }
    let (ty, name) = match (types.first(), shorthand.or(defaults)) {
        (Some(t), None) => {
            if p.has("entity-name") && p.has("entity-default") {
                return Err(usage("--entity-name and --entity-default are mutually exclusive"));
            }
            (t.clone(), p.value("entity-name").map(str::to_owned))
        }
        (None, Some(x)) => x,
        (Some(_), Some(_)) => {
            return Err(usage(
                "--entity-type cannot be combined with --topic, --broker, --user, ... shorthands",
            ))
        }
        (None, None) => {
            return Err(usage(
                "Missing required argument \"[entity-type]\" (or --topic, --broker, --broker-defaults, --broker-logger, --user, --client, --ip)",
            ))
        }
    };
    let default = p.has("entity-default") || default_shorthand;
    Ok(match ty.as_str() {
        "topics" => {
            if name.is_none() && p.has("alter") {
                return Err(usage("An entity name must be specified with --alter of topics"));
            }
            Entity::Topic(name)
        }
        "brokers" => match name {
            Some(n) => Entity::Broker(Some(n.trim().parse().map_err(|_| {
                usage(format!("The entity name for brokers must be a valid integer broker id, but it is: {n}"))
            })?)),
            None if default => Entity::Broker(None),
            None if p.has("describe") => Entity::AllBrokers,
            None => {
                return Err(usage(
                    "An entity name must be specified with --alter of brokers (or --entity-default)",
                ))
            }
        },
        "broker-loggers" => match name {
            Some(n) => Entity::BrokerLogger(n.trim().parse().map_err(|_| {
                usage(format!("The entity name for broker-loggers must be a valid integer broker id, but it is: {n}"))
            })?),
            None => return Err(usage("An entity name must be specified with --alter of broker-loggers")),
        },
        "users" => Entity::Quota("user", name),
        "clients" => Entity::Quota("client-id", name),
        "ips" => Entity::Quota("ip", name),
        "groups" => Entity::Group(name.ok_or_else(|| {
            usage("An entity name must be specified with groups (--entity-name or --group)")
        })?),
        "client-metrics" => {
            return Err(usage(format!(
                "--entity-type {ty} is not supported by Nagare's kafka-configs.sh"
            )))
        }
        other => {
            return Err(usage(format!(
                "Invalid entity type {other}, the entity type must be one of topics, clients, users, brokers, ips, broker-loggers, groups, client-metrics"
            )))
        }
    })
}

fn check(p: &Parsed) -> anyhow::Result<(&'static str, Entity)> {
    super::no_positional(p)?;
    let action = p.exactly_one(&["alter", "describe"])?;
    p.required("bootstrap-server")?;
    p.only_with("add-config", &["alter"])?;
    p.only_with("add-config-file", &["alter"])?;
    p.only_with("delete-config", &["alter"])?;
    p.only_with("all", &["describe"])?;
    if action == "alter"
        && !p.has("add-config")
        && !p.has("add-config-file")
        && !p.has("delete-config")
    {
        return Err(usage("At least one of --add-config, --add-config-file or --delete-config must be specified with --alter"));
    }
    Ok((action, entity(p)?))
}

/// Configs to set (name, value) and configs to remove.
type Changes = (Vec<(String, String)>, Vec<String>);

/// The changes `--add-config`, `--add-config-file` and `--delete-config` ask for.
fn changes(p: &Parsed) -> anyhow::Result<Changes> {
    let mut add = Vec::new();
    for a in p.values("add-config") {
        add.extend(split_key_values(a)?);
    }
    if let Some(file) = p.value("add-config-file") {
        let path = std::path::Path::new(file);
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
        add.extend(nagare_broker::config::parse_properties(&text, path)?);
    }
    let mut delete = Vec::new();
    for d in p.values("delete-config") {
        delete.extend(
            split_top_level(d)
                .into_iter()
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty()),
        );
    }
    if let Some(k) = add.iter().find(|(k, _)| delete.contains(k)) {
        return Err(usage(format!(
            "Invalid config(s): {} (a config cannot be both added and deleted)",
            k.0
        )));
    }
    Ok((add, delete))
}

/// Runs `kafka-configs.sh`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(SPECS);
    let p = opts::parse("kafka-configs.sh", &specs, args)?;
    let (action, entity) = check(&p)?;
    let (add, delete) = if action == "alter" {
        changes(&p)?
    } else {
        (Vec::new(), Vec::new())
    };
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    match (action, &entity) {
        ("describe", Entity::Quota(ty, name)) => {
            describe_quota(&mut client, ty, name.as_deref()).await
        }
        ("describe", _) => describe(&mut client, &entity, p.has("all")).await,
        (_, Entity::Quota(ty, name)) => {
            alter_quota(&mut client, ty, name.as_deref(), &add, &delete).await
        }
        _ => {
            let (rtype, rname, label) = resource(&entity);
            let ops: Vec<AlterConfigOp> = add
                .iter()
                .map(|(k, v)| AlterConfigOp::Set(k.clone(), v.clone()))
                .chain(delete.iter().map(|k| AlterConfigOp::Delete(k.clone())))
                .collect();
            client
                .incremental_alter_configs_raw(rtype, &rname, &ops)
                .await?;
            match entity {
                Entity::Broker(None) => {
                    println!("Completed updating default config for brokers in the cluster.")
                }
                _ => println!("Completed updating config for {label}."),
            }
            Ok(())
        }
    }
}

/// Kafka's resource type, resource name and the label its messages use.
fn resource(entity: &Entity) -> (i8, String, String) {
    match entity {
        Entity::Topic(t) => {
            let t = t.clone().unwrap_or_default();
            (2, t.clone(), format!("topic {t}"))
        }
        Entity::Broker(Some(id)) => (4, id.to_string(), format!("broker {id}")),
        Entity::Broker(None) | Entity::AllBrokers => {
            (4, String::new(), "brokers in the cluster".to_owned())
        }
        Entity::BrokerLogger(id) => (8, id.to_string(), format!("broker-logger {id}")),
        Entity::Group(g) => (32, g.clone(), format!("group {g}")),
        Entity::Quota(ty, n) => (0, n.clone().unwrap_or_default(), format!("{ty} {n:?}")),
    }
}

async fn describe(client: &mut Client, entity: &Entity, all: bool) -> anyhow::Result<()> {
    let targets: Vec<Entity> = match entity {
        Entity::Topic(None) => {
            let mut names: Vec<String> = client
                .describe_topics(&[])
                .await?
                .into_iter()
                .map(|t| t.name)
                .collect();
            names.sort();
            names.into_iter().map(|n| Entity::Topic(Some(n))).collect()
        }
        Entity::AllBrokers => client
            .brokers()
            .keys()
            .map(|id| Entity::Broker(Some(*id)))
            .chain(std::iter::once(Entity::Broker(None)))
            .collect(),
        other => vec![other.clone()],
    };
    let mut out = String::new();
    for e in &targets {
        let (rtype, rname, label) = resource(e);
        let configs = client.describe_configs_raw(rtype, &rname, None).await?;
        out.push_str(&render_configs(e, &label, &configs, all));
    }
    print!("{out}");
    Ok(())
}

/// `Dynamic configs for topic t are:` (or `All configs …` with `--all`) and one line per
/// config: the dynamic ones of the resource's own level, or all of them with `--all`.
fn render_configs(
    entity: &Entity,
    label: &str,
    configs: &[ConfigDescription],
    all: bool,
) -> String {
    let own_source = match entity {
        Entity::Topic(_) => Some(ConfigSource::DynamicTopic),
        Entity::Broker(Some(_)) => Some(ConfigSource::DynamicBroker),
        Entity::Broker(None) | Entity::AllBrokers => Some(ConfigSource::DynamicDefaultBroker),
        Entity::Group(_) => Some(ConfigSource::DynamicGroup),
        Entity::BrokerLogger(_) | Entity::Quota(..) => None,
    };
    let mut out = match (entity, all) {
        (Entity::Broker(None), _) => "Default configs for brokers in the cluster are:\n".to_owned(),
        (_, true) => format!("All configs for {label} are:\n"),
        (_, false) => format!("Dynamic configs for {label} are:\n"),
    };
    for c in configs {
        let e = &c.entry;
        let own = own_source.is_none_or(|s| e.source == s);
        if !all && !own {
            continue;
        }
        let value = if e.sensitive {
            "null".to_owned()
        } else {
            e.value.clone().unwrap_or_else(|| "null".to_owned())
        };
        let mut synonyms: Vec<String> = c
            .synonyms
            .iter()
            .map(|(n, v, s)| {
                let v = if e.sensitive {
                    "null"
                } else {
                    v.as_deref().unwrap_or("null")
                };
                format!("{}:{n}={v}", s.name())
            })
            .collect();
        if synonyms.is_empty() && e.source != ConfigSource::Default {
            synonyms.push(format!("{}:{}={value}", e.source.name(), e.name));
        }
        out.push_str(&format!(
            "  {}={value} sensitive={} synonyms={{{}}}\n",
            e.name,
            e.sensitive,
            synonyms.join(", ")
        ));
    }
    out
}

fn scram_mechanism(key: &str) -> Option<ScramMechanism> {
    match key {
        "SCRAM-SHA-256" => Some(ScramMechanism::Sha256),
        "SCRAM-SHA-512" => Some(ScramMechanism::Sha512),
        _ => None,
    }
}

/// `iterations=8192,password=pw` (or just `password=pw`: 4096 iterations, Kafka's default).
fn parse_scram_value(key: &str, v: &str) -> anyhow::Result<(i32, String)> {
    let mut iterations = 4096;
    let mut password = None;
    for part in v.split(',') {
        match part.split_once('=') {
            Some(("iterations", n)) => {
                iterations = n
                    .trim()
                    .parse()
                    .map_err(|_| usage(format!("{key}: invalid iterations '{n}'")))?
            }
            Some(("password", pw)) => password = Some(pw.to_owned()),
            _ => {
                return Err(usage(format!(
                    "{key}: expected [iterations=N,]password=PASSWORD"
                )))
            }
        }
    }
    let password = password.ok_or_else(|| usage(format!("{key}: a password is required")))?;
    Ok((iterations, password))
}

async fn alter_quota(
    client: &mut Client,
    ty: &str,
    name: Option<&str>,
    add: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    let mut scram = Vec::new();
    let mut quota_ops: Vec<(String, Option<f64>)> = Vec::new();
    for (k, v) in add {
        if let Some(m) = scram_mechanism(k) {
            let user = match (ty, name) {
                ("user", Some(u)) => u.to_owned(),
                _ => return Err(usage(format!("{k} can only be set on a named user"))),
            };
            let (iterations, password) = parse_scram_value(k, v)?;
            scram.push(ScramAlteration::Upsert {
                user,
                mechanism: m,
                iterations: u32::try_from(iterations).unwrap_or(4096),
                password,
            });
        } else {
            let value: f64 = v.trim().parse().map_err(|_| {
                usage(format!(
                    "Invalid value '{v}' for quota {k}: a number is expected"
                ))
            })?;
            quota_ops.push((k.clone(), Some(value)));
        }
    }
    for k in delete {
        if let Some(m) = scram_mechanism(k) {
            let user = name
                .filter(|_| ty == "user")
                .ok_or_else(|| usage(format!("{k} can only be deleted from a named user")))?;
            scram.push(ScramAlteration::Delete {
                user: user.to_owned(),
                mechanism: m,
            });
        } else {
            quota_ops.push((k.clone(), None));
        }
    }
    if !quota_ops.is_empty() {
        let entity = [QuotaEntityComponent {
            entity_type: ty.to_owned(),
            name: name.map(str::to_owned),
        }];
        client
            .alter_client_quotas(&entity, &quota_ops, false)
            .await?;
    }
    if !scram.is_empty() {
        client.alter_user_scram_credentials(&scram).await?;
    }
    let what = match ty {
        "user" => "user",
        "client-id" => "client",
        _ => "ip",
    };
    match name {
        Some(n) => println!("Completed updating config for {what} {n}."),
        None => println!("Completed updating default config for {what}s in the cluster."),
    }
    Ok(())
}

async fn describe_quota(client: &mut Client, ty: &str, name: Option<&str>) -> anyhow::Result<()> {
    let filter = [QuotaFilter {
        entity_type: ty.to_owned(),
        matches: match name {
            Some(n) => QuotaMatch::Exact(n.to_owned()),
            None => QuotaMatch::Any,
        },
    }];
    let label = match ty {
        "user" => "user-principal",
        other => other,
    };
    for e in client.describe_client_quotas(&filter, true).await? {
        let who = e
            .entity
            .iter()
            .map(|c| match &c.name {
                Some(n) => format!("{label} '{n}'"),
                None => format!("the default {label}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let values: Vec<String> = e.values.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        println!("Quota configs for {who} are {}", values.join(", "));
    }
    if ty == "user" {
        let names: Vec<&str> = name.into_iter().collect();
        // A user without credentials is not an error for describe.
        if let Ok(users) = client.describe_user_scram_credentials(&names).await {
            for u in users {
                let creds: Vec<String> = u
                    .credentials
                    .iter()
                    .map(|(m, i)| format!("{m}=iterations={i}"))
                    .collect();
                if !creds.is_empty() {
                    println!(
                        "SCRAM credential configs for user-principal '{}' are {}",
                        u.user,
                        creds.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_client::ConfigEntry;

    fn parse(a: &[&str]) -> anyhow::Result<(&'static str, Entity)> {
        let mut args: Vec<String> = vec!["--bootstrap-server".into(), "h:1".into()];
        args.extend(a.iter().map(|s| s.to_string()));
        let specs = super::super::with_connection(SPECS);
        check(&opts::parse("kafka-configs.sh", &specs, &args)?)
    }

    #[test]
    fn entities_like_kafka() {
        assert_eq!(
            parse(&[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                "t",
                "--add-config",
                "retention.ms=1000"
            ])
            .expect("ok"),
            ("alter", Entity::Topic(Some("t".into())))
        );
        assert_eq!(
            parse(&["--describe", "--topic", "t"]).expect("ok"),
            ("describe", Entity::Topic(Some("t".into())))
        );
        assert_eq!(
            parse(&["--describe", "--entity-type", "brokers", "--entity-default"])
                .expect("ok")
                .1,
            Entity::Broker(None)
        );
        assert_eq!(
            parse(&[
                "--alter",
                "--broker",
                "1",
                "--add-config",
                "log.cleaner.threads=2"
            ])
            .expect("ok")
            .1,
            Entity::Broker(Some(1))
        );
        assert_eq!(
            parse(&[
                "--alter",
                "--entity-type",
                "users",
                "--entity-name",
                "alice",
                "--add-config",
                "SCRAM-SHA-256=[iterations=8192,password=alice-secret]"
            ])
            .expect("ok")
            .1,
            Entity::Quota("user", Some("alice".into()))
        );
        assert!(
            parse(&["--alter", "--topic", "t"]).is_err(),
            "alter needs a change"
        );
        assert!(parse(&["--describe"]).is_err(), "needs an entity");
        assert!(parse(&["--alter", "--entity-type", "topics", "--add-config", "a=1"]).is_err());
        assert!(parse(&[
            "--describe",
            "--entity-type",
            "brokers",
            "--entity-name",
            "x"
        ])
        .is_err());
        assert_eq!(
            parse(&["--describe", "--entity-type", "brokers"])
                .expect("ok")
                .1,
            Entity::AllBrokers
        );
        assert!(parse(&["--alter", "--entity-type", "brokers", "--add-config", "a=1"]).is_err());
        assert_eq!(
            parse(&[
                "--describe",
                "--entity-type",
                "groups",
                "--entity-name",
                "g"
            ])
            .expect("ok")
            .1,
            Entity::Group("g".into())
        );
        let e = parse(&[
            "--describe",
            "--entity-type",
            "client-metrics",
            "--entity-name",
            "m",
        ])
        .expect_err("client-metrics");
        assert!(e.to_string().contains("client-metrics"), "{e}");
    }

    #[test]
    fn scram_values() {
        assert_eq!(
            parse_scram_value("SCRAM-SHA-256", "iterations=8192,password=a=b").expect("ok"),
            (8192, "a=b".to_owned())
        );
        assert_eq!(
            parse_scram_value("SCRAM-SHA-512", "password=pw").expect("ok"),
            (4096, "pw".to_owned())
        );
        assert!(parse_scram_value("SCRAM-SHA-512", "iterations=1").is_err());
    }

    #[test]
    fn describe_output_like_kafka() {
        let entry = |name: &str, value: &str, source| ConfigDescription {
            entry: ConfigEntry {
                name: name.into(),
                value: Some(value.into()),
                source,
                read_only: false,
                sensitive: false,
            },
            synonyms: vec![(name.into(), Some(value.into()), source)],
        };
        let configs = vec![
            entry("cleanup.policy", "compact", ConfigSource::DynamicTopic),
            entry("retention.ms", "604800000", ConfigSource::Default),
        ];
        let t = Entity::Topic(Some("t".into()));
        assert_eq!(
            render_configs(&t, "topic t", &configs, false),
            "Dynamic configs for topic t are:\n  cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact}\n"
        );
        let all = render_configs(&t, "topic t", &configs, true);
        assert!(all.starts_with("All configs for topic t are:\n"));
        assert!(all.contains("  retention.ms=604800000 sensitive=false synonyms={DEFAULT_CONFIG:retention.ms=604800000}\n"));
    }
}
