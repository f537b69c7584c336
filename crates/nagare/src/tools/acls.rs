//! `kafka-acls.sh`: Kafka 4.x's `AclCommand` options (`--add`, `--remove`, `--list`, with
//! `--principal` filtering the list) on top of `nagare acl`'s expansion of principals, hosts,
//! operations and resources (`crate::cli::acl`), printing Kafka's `Current ACLs for resource
//! `ResourcePattern(…)`:` blocks.

use std::collections::BTreeMap;

use nagare_client::{
    acl_name, AclBinding, AclBindingFilter, Client, OPERATIONS, PATTERN_TYPES, PERMISSION_TYPES,
    RESOURCE_TYPES,
};

use super::opts::{self, Kind, Parsed, Spec};
use crate::cli::acl::{bindings, filters, AclArgs};

const SPECS: &[Spec] = &[
    ("add", Kind::Flag),
    ("remove", Kind::Flag),
    ("list", Kind::Flag),
    ("topic", Kind::Value),
    ("group", Kind::Value),
    ("cluster", Kind::Flag),
    ("transactional-id", Kind::Value),
    ("delegation-token", Kind::Unsupported(true)),
    ("user-principal", Kind::Unsupported(true)),
    ("resource-pattern-type", Kind::Value),
    ("allow-principal", Kind::Value),
    ("deny-principal", Kind::Value),
    ("principal", Kind::Value),
    ("allow-host", Kind::Value),
    ("deny-host", Kind::Value),
    ("operation", Kind::Value),
    ("producer", Kind::Flag),
    ("consumer", Kind::Flag),
    ("idempotent", Kind::Flag),
    ("force", Kind::Flag),
];

/// Kafka's enum spelling of a name from the client's tables: `ClusterAction` →
/// `CLUSTER_ACTION`.
fn upper_snake(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// `ResourcePattern(resourceType=TOPIC, name=t, patternType=LITERAL)`.
fn pattern_text(resource_type: i8, name: &str, pattern_type: i8) -> String {
    format!(
        "ResourcePattern(resourceType={}, name={name}, patternType={})",
        upper_snake(&acl_name(RESOURCE_TYPES, resource_type)),
        upper_snake(&acl_name(PATTERN_TYPES, pattern_type)),
    )
}

/// `(principal=User:Bob, host=*, operation=READ, permissionType=ALLOW)`.
fn entry_text(acl: &AclBinding) -> String {
    format!(
        "(principal={}, host={}, operation={}, permissionType={})",
        acl.principal,
        acl.host,
        upper_snake(&acl_name(OPERATIONS, acl.operation)),
        upper_snake(&acl_name(PERMISSION_TYPES, acl.permission_type)),
    )
}

/// Kafka's block per resource: ``{verb} for resource `R`: `` then the entries, tab-indented.
fn render(verb: &str, acls: &[AclBinding]) -> String {
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<&AclBinding>> = BTreeMap::new();
    for a in acls {
        by_resource
            .entry((a.resource_type, a.resource_name.clone(), a.pattern_type))
            .or_default()
            .push(a);
    }
    let mut out = String::new();
    for ((rt, name, pt), entries) in by_resource {
        let lines: Vec<String> = entries
            .iter()
            .map(|a| format!("\t{}", entry_text(a)))
            .collect();
        out.push_str(&format!(
            "{verb} for resource `{}`: \n {} \n\n",
            pattern_text(rt, &name, pt),
            lines.join("\n")
        ));
    }
    out
}

fn acl_args(p: &Parsed) -> AclArgs {
    let v = |n: &str| p.values(n).to_vec();
    AclArgs {
        allow_principal: v("allow-principal"),
        deny_principal: v("deny-principal"),
        allow_host: v("allow-host"),
        deny_host: v("deny-host"),
        operation: v("operation"),
        topic: v("topic"),
        group: v("group"),
        cluster: p.has("cluster"),
        transactional_id: v("transactional-id"),
        resource_pattern_type: p
            .value("resource-pattern-type")
            .unwrap_or("literal")
            .to_owned(),
        producer: p.has("producer"),
        consumer: p.has("consumer"),
        idempotent: p.has("idempotent"),
    }
}

/// The current ACLs of the resources `acls` name.
async fn current(client: &mut Client, acls: &[AclBinding]) -> anyhow::Result<Vec<AclBinding>> {
    let mut resources: Vec<(i8, String, i8)> = acls
        .iter()
        .map(|a| (a.resource_type, a.resource_name.clone(), a.pattern_type))
        .collect();
    resources.sort();
    resources.dedup();
    let mut out = Vec::new();
    for (rt, name, pt) in resources {
        let mut f = AclBindingFilter::any();
        f.resource_type = rt;
        f.resource_name = Some(name);
        f.pattern_type = pt;
        out.extend(client.describe_acls(&f).await?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Runs `kafka-acls.sh`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(SPECS);
    let p = opts::parse("kafka-acls.sh", &specs, args)?;
    super::no_positional(&p)?;
    let action = p.exactly_one(&["add", "remove", "list"])?;
    p.required("bootstrap-server")?;
    p.only_with("principal", &["list"])?;
    p.only_with("force", &["remove", "add"])?;
    let a = acl_args(&p);
    match action {
        "add" => {
            let acls = bindings(&a).map_err(|e| opts::usage(e.to_string()))?;
            let mut client = super::connect(&p, "command-config", Vec::new()).await?;
            print!("{}", render("Adding ACLs", &acls));
            client.create_acls(&acls).await?;
            print!(
                "{}",
                render("Current ACLs", &current(&mut client, &acls).await?)
            );
        }
        "remove" => {
            let fs = filters(&a).map_err(|e| opts::usage(e.to_string()))?;
            let mut client = super::connect(&p, "command-config", Vec::new()).await?;
            let removed = client.delete_acls(&fs).await?;
            print!("{}", render("Removing ACLs", &removed));
            print!(
                "{}",
                render("Current ACLs", &current(&mut client, &removed).await?)
            );
        }
        _ => {
            let fs = filters(&a).map_err(|e| opts::usage(e.to_string()))?;
            let mut client = super::connect(&p, "command-config", Vec::new()).await?;
            let mut all = Vec::new();
            for f in &fs {
                all.extend(client.describe_acls(f).await?);
            }
            all.sort();
            all.dedup();
            let principals = p.values("principal");
            if principals.is_empty() {
                print!("{}", render("Current ACLs", &all));
            } else {
                for principal in principals {
                    let mine: Vec<AclBinding> = all
                        .iter()
                        .filter(|x| &x.principal == principal)
                        .cloned()
                        .collect();
                    println!("ACLs for principal `{principal}`");
                    print!("{}", render("Current ACLs", &mine));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_spelling() {
        assert_eq!(upper_snake("ClusterAction"), "CLUSTER_ACTION");
        assert_eq!(upper_snake("TransactionalId"), "TRANSACTIONAL_ID");
        let acl = AclBinding {
            resource_type: 2,
            resource_name: "Test-topic".into(),
            pattern_type: 3,
            principal: "User:Bob".into(),
            host: "*".into(),
            operation: 3,
            permission_type: 3,
        };
        let mut alice = acl.clone();
        alice.principal = "User:Alice".into();
        assert_eq!(
            render("Current ACLs", &[alice, acl]),
            "Current ACLs for resource `ResourcePattern(resourceType=TOPIC, name=Test-topic, patternType=LITERAL)`: \n \
             \t(principal=User:Alice, host=*, operation=READ, permissionType=ALLOW)\n\
             \t(principal=User:Bob, host=*, operation=READ, permissionType=ALLOW) \n\n"
        );
    }

    #[test]
    fn options_map_to_acl_args() {
        let args: Vec<String> = [
            "--bootstrap-server",
            "h:1",
            "--add",
            "--allow-principal",
            "User:Bob",
            "--producer",
            "--topic",
            "t",
            "--resource-pattern-type",
            "prefixed",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let specs = super::super::with_connection(SPECS);
        let p = opts::parse("kafka-acls.sh", &specs, &args).expect("parses");
        let b = bindings(&acl_args(&p)).expect("bindings");
        assert_eq!(b.len(), 3, "WRITE, DESCRIBE, CREATE on the topic");
        assert!(b.iter().all(|x| x.pattern_type == 4));
    }
}
