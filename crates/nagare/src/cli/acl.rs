//! `nagare acl add|list|remove`: ACLs of the StandardAuthorizer, with kafka-acls' argument
//! names (`--allow-principal`, `--deny-principal`, `--allow-host`, `--deny-host`,
//! `--operation`, `--topic`, `--group`, `--cluster`, `--transactional-id`,
//! `--resource-pattern-type`, `--producer`, `--consumer`, `--idempotent`).

use anyhow::{bail, Context};
use nagare_client::{acl_code, AclBinding, AclBindingFilter, OPERATIONS, PATTERN_TYPES};

/// Arguments of `nagare acl`.
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
    /// Add ACLs: every principal × host × operation × resource given.
    Add(AclArgs),
    /// List ACLs (all, or those of the given resources).
    List(AclArgs),
    /// Remove the ACLs matching the given resources, principals, hosts and operations.
    Remove(AclArgs),
}

/// The ACL options kafka-acls.sh and `nagare acl` share (also built by the `tools` module).
#[derive(clap::Args, Default)]
pub(crate) struct AclArgs {
    /// Principal to allow, `User:name` (repeatable).
    #[arg(long = "allow-principal")]
    pub(crate) allow_principal: Vec<String>,
    /// Principal to deny, `User:name` (repeatable).
    #[arg(long = "deny-principal")]
    pub(crate) deny_principal: Vec<String>,
    /// Hosts the allow principals are allowed from (default `*`).
    #[arg(long = "allow-host")]
    pub(crate) allow_host: Vec<String>,
    /// Hosts the deny principals are denied from (default `*`).
    #[arg(long = "deny-host")]
    pub(crate) deny_host: Vec<String>,
    /// Operation (Read, Write, Create, Delete, Alter, Describe, ClusterAction,
    /// DescribeConfigs, AlterConfigs, IdempotentWrite, All); repeatable, default All.
    #[arg(long = "operation")]
    pub(crate) operation: Vec<String>,
    /// Topic (repeatable; `*` for every topic).
    #[arg(long = "topic")]
    pub(crate) topic: Vec<String>,
    /// Consumer group (repeatable; `*` for every group).
    #[arg(long = "group")]
    pub(crate) group: Vec<String>,
    /// The cluster resource.
    #[arg(long = "cluster")]
    pub(crate) cluster: bool,
    /// Transactional id (repeatable).
    #[arg(long = "transactional-id")]
    pub(crate) transactional_id: Vec<String>,
    /// literal or prefixed (add); also any or match (list, remove).
    #[arg(long = "resource-pattern-type", default_value = "literal")]
    pub(crate) resource_pattern_type: String,
    /// Producer convenience: WRITE, DESCRIBE, CREATE on the topics (and WRITE, DESCRIBE on
    /// the transactional ids, IDEMPOTENT_WRITE on the cluster with --idempotent).
    #[arg(long = "producer")]
    pub(crate) producer: bool,
    /// Consumer convenience: READ, DESCRIBE on the topics and READ on the groups.
    #[arg(long = "consumer")]
    pub(crate) consumer: bool,
    /// With --producer: IDEMPOTENT_WRITE on the cluster.
    #[arg(long = "idempotent")]
    pub(crate) idempotent: bool,
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const TRANSACTIONAL_ID: i8 = 5;

/// (resource type, name, operations) triples the arguments name.
fn resources(a: &AclArgs) -> anyhow::Result<Vec<(i8, String, Vec<i8>)>> {
    let op = |n: &str| -> anyhow::Result<i8> {
        match acl_code(OPERATIONS, n) {
            Some(c) if c != 1 => Ok(c),
            _ => bail!("unknown operation {n}"),
        }
    };
    let mut out = Vec::new();
    if a.producer || a.consumer {
        if !a.operation.is_empty() {
            bail!("--operation cannot be combined with --producer or --consumer");
        }
        if a.producer {
            for t in &a.topic {
                out.push((
                    TOPIC,
                    t.clone(),
                    vec![op("Write")?, op("Describe")?, op("Create")?],
                ));
            }
            for t in &a.transactional_id {
                out.push((
                    TRANSACTIONAL_ID,
                    t.clone(),
                    vec![op("Write")?, op("Describe")?],
                ));
            }
            if a.idempotent {
                out.push((
                    CLUSTER,
                    "kafka-cluster".into(),
                    vec![op("IdempotentWrite")?],
                ));
            }
        }
        if a.consumer {
            for t in &a.topic {
                out.push((TOPIC, t.clone(), vec![op("Read")?, op("Describe")?]));
            }
            for g in &a.group {
                out.push((GROUP, g.clone(), vec![op("Read")?]));
            }
        }
        return Ok(out);
    }
    let ops: Vec<i8> = if a.operation.is_empty() {
        vec![op("All")?]
    } else {
        a.operation
            .iter()
            .map(|o| op(o))
            .collect::<anyhow::Result<_>>()?
    };
    for t in &a.topic {
        out.push((TOPIC, t.clone(), ops.clone()));
    }
    for g in &a.group {
        out.push((GROUP, g.clone(), ops.clone()));
    }
    for t in &a.transactional_id {
        out.push((TRANSACTIONAL_ID, t.clone(), ops.clone()));
    }
    if a.cluster {
        out.push((CLUSTER, "kafka-cluster".into(), ops.clone()));
    }
    Ok(out)
}

/// (principal, host, permission) triples: every allow principal from every allow host, every
/// deny principal from every deny host.
fn entries(a: &AclArgs) -> Vec<(String, String, i8)> {
    let hosts = |h: &Vec<String>| {
        if h.is_empty() {
            vec!["*".to_string()]
        } else {
            h.clone()
        }
    };
    let mut out = Vec::new();
    for p in &a.allow_principal {
        for h in hosts(&a.allow_host) {
            out.push((p.clone(), h, 3));
        }
    }
    for p in &a.deny_principal {
        for h in hosts(&a.deny_host) {
            out.push((p.clone(), h, 2));
        }
    }
    out
}

fn pattern(a: &AclArgs) -> anyhow::Result<i8> {
    acl_code(PATTERN_TYPES, &a.resource_pattern_type)
        .with_context(|| format!("unknown resource pattern type {}", a.resource_pattern_type))
}

/// The ACLs `nagare acl add` creates.
pub(crate) fn bindings(a: &AclArgs) -> anyhow::Result<Vec<AclBinding>> {
    let pattern_type = pattern(a)?;
    if pattern_type != 3 && pattern_type != 4 {
        bail!("--resource-pattern-type must be literal or prefixed when adding ACLs");
    }
    let res = resources(a)?;
    if res.is_empty() {
        bail!("name a resource: --topic, --group, --cluster or --transactional-id");
    }
    let ents = entries(a);
    if ents.is_empty() {
        bail!("name a principal: --allow-principal or --deny-principal");
    }
    let mut out = Vec::new();
    for (rt, name, ops) in &res {
        for (principal, host, perm) in &ents {
            for op in ops {
                out.push(AclBinding {
                    resource_type: *rt,
                    resource_name: name.clone(),
                    // The cluster has one name: kafka-acls always writes it literally.
                    pattern_type: if *rt == CLUSTER { 3 } else { pattern_type },
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: *op,
                    permission_type: *perm,
                });
            }
        }
    }
    Ok(out)
}

/// The filters `nagare acl list|remove` use: per resource (or every resource), per entry
/// (or any principal/host), per operation (or any).
pub(crate) fn filters(a: &AclArgs) -> anyhow::Result<Vec<AclBindingFilter>> {
    let res = resources(a)?;
    let explicit_ops = !a.operation.is_empty() || a.producer || a.consumer;
    let pattern_type = if res.is_empty() { 1 } else { pattern(a)? };
    let res: Vec<(i8, Option<String>, Vec<i8>)> = if res.is_empty() {
        vec![(1, None, vec![1])]
    } else {
        res.into_iter()
            .map(|(rt, n, ops)| (rt, Some(n), if explicit_ops { ops } else { vec![1] }))
            .collect()
    };
    let ents: Vec<(Option<String>, Option<String>, i8)> = {
        let e = entries(a);
        if e.is_empty() {
            vec![(None, None, 1)]
        } else {
            // Hosts given explicitly filter; the default `*` of add means "any" here.
            e.into_iter()
                .map(|(p, h, perm)| {
                    let given = if perm == 3 {
                        &a.allow_host
                    } else {
                        &a.deny_host
                    };
                    (Some(p), (!given.is_empty()).then_some(h), perm)
                })
                .collect()
        }
    };
    let mut out = Vec::new();
    for (rt, name, ops) in &res {
        for (principal, host, perm) in &ents {
            for op in ops {
                out.push(AclBindingFilter {
                    resource_type: *rt,
                    resource_name: name.clone(),
                    pattern_type: if *rt == CLUSTER && pattern_type == 4 {
                        3
                    } else {
                        pattern_type
                    },
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: *op,
                    permission_type: *perm,
                });
            }
        }
    }
    Ok(out)
}

/// Runs `nagare acl ...`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Add(a) => {
            let acls = bindings(&a)?;
            let mut client = args.broker.connect().await?;
            client.create_acls(&acls).await?;
            println!("Added ACLs:");
            for acl in acls {
                println!("  {acl}");
            }
        }
        Command::List(a) => {
            let fs = filters(&a)?;
            let mut client = args.broker.connect().await?;
            let mut all = Vec::new();
            for f in &fs {
                all.extend(client.describe_acls(f).await?);
            }
            all.sort();
            all.dedup();
            for acl in all {
                println!("{acl}");
            }
        }
        Command::Remove(a) => {
            let fs = filters(&a)?;
            let mut client = args.broker.connect().await?;
            let removed = client.delete_acls(&fs).await?;
            println!("Removed {} ACLs:", removed.len());
            for acl in removed {
                println!("  {acl}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_expands_principals_hosts_operations_and_resources() {
        let a = AclArgs {
            allow_principal: vec!["User:a".into(), "User:b".into()],
            deny_principal: vec!["User:c".into()],
            deny_host: vec!["10.0.0.1".into()],
            operation: vec!["read".into(), "Write".into()],
            topic: vec!["t".into()],
            resource_pattern_type: "prefixed".into(),
            ..Default::default()
        };
        let b = bindings(&a).expect("valid");
        assert_eq!(b.len(), 6);
        assert!(b
            .iter()
            .all(|x| x.pattern_type == 4 && x.resource_type == TOPIC));
        assert!(b
            .iter()
            .any(|x| x.principal == "User:c" && x.host == "10.0.0.1" && x.permission_type == 2));
        assert!(b
            .iter()
            .filter(|x| x.principal != "User:c")
            .all(|x| x.host == "*"));
    }

    #[test]
    fn producer_and_consumer_conveniences() {
        let a = AclArgs {
            allow_principal: vec!["User:p".into()],
            topic: vec!["t".into()],
            group: vec!["g".into()],
            transactional_id: vec!["tx".into()],
            producer: true,
            consumer: true,
            idempotent: true,
            resource_pattern_type: "literal".into(),
            ..Default::default()
        };
        let ops: Vec<(i8, i8)> = bindings(&a)
            .expect("valid")
            .iter()
            .map(|x| (x.resource_type, x.operation))
            .collect();
        for want in [
            (TOPIC, 4),
            (TOPIC, 8),
            (TOPIC, 5),
            (TRANSACTIONAL_ID, 4),
            (CLUSTER, 12),
            (TOPIC, 3),
            (GROUP, 3),
        ] {
            assert!(ops.contains(&want), "{want:?} in {ops:?}");
        }
        let prefixed = AclArgs {
            resource_pattern_type: "prefixed".into(),
            ..a
        };
        let b = bindings(&prefixed).expect("valid");
        assert!(b
            .iter()
            .all(|x| (x.resource_type == CLUSTER) == (x.pattern_type == 3)));
    }

    #[test]
    fn list_without_resources_lists_everything_and_add_needs_a_principal() {
        let a = AclArgs {
            resource_pattern_type: "literal".into(),
            ..Default::default()
        };
        assert_eq!(filters(&a).expect("valid"), vec![AclBindingFilter::any()]);
        let add = AclArgs {
            topic: vec!["t".into()],
            resource_pattern_type: "literal".into(),
            ..Default::default()
        };
        assert!(bindings(&add).is_err());
        let m = AclArgs {
            topic: vec!["orders".into()],
            resource_pattern_type: "match".into(),
            ..Default::default()
        };
        let f = filters(&m).expect("valid");
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].pattern_type, f[0].operation), (2, 1));
        assert!(bindings(&m).is_err(), "match is a filter, not a pattern");
    }
}
