//! `kafka-consumer-groups.sh`: Kafka 4.x's `ConsumerGroupCommand` options (`--list`,
//! `--describe [--members [--verbose] | --state | --offsets]`, `--delete`,
//! `--reset-offsets --to-… --dry-run|--execute`) with its printf-style column output.

use std::collections::BTreeMap;

use nagare_client::{Client, GroupDescription};

use super::opts::{self, usage, Kind, Parsed, Spec};
use crate::cli::group::{offset_rows, parse_datetime, parse_topic_spec, reset_plan, ResetTarget};

const ACTIONS: &[&str] = &[
    "list",
    "describe",
    "delete",
    "reset-offsets",
    "delete-offsets",
];
const RESET_SCENARIOS: &[&str] = &[
    "to-earliest",
    "to-latest",
    "to-offset",
    "to-datetime",
    "shift-by",
    "to-current",
    "by-duration",
    "from-file",
];

const SPECS: &[Spec] = &[
    ("group", Kind::Value),
    ("topic", Kind::Value),
    ("all-topics", Kind::Flag),
    ("list", Kind::Flag),
    ("describe", Kind::Flag),
    ("delete", Kind::Flag),
    ("delete-offsets", Kind::Flag),
    ("reset-offsets", Kind::Flag),
    ("all-groups", Kind::Flag),
    ("timeout", Kind::Value),
    ("offsets", Kind::Flag),
    ("members", Kind::Flag),
    ("state", Kind::OptionalValue),
    ("type", Kind::OptionalValue),
    ("verbose", Kind::Flag),
    ("to-earliest", Kind::Flag),
    ("to-latest", Kind::Flag),
    ("to-offset", Kind::Value),
    ("to-datetime", Kind::Value),
    ("shift-by", Kind::Value),
    ("to-current", Kind::Flag),
    ("by-duration", Kind::Value),
    ("from-file", Kind::Unsupported(true)),
    ("export", Kind::Unsupported(false)),
    ("dry-run", Kind::Flag),
    ("execute", Kind::Flag),
];

/// Kafka's argument checks (`ConsumerGroupCommandOptions.checkArgs`); the action.
fn check(p: &Parsed) -> anyhow::Result<&'static str> {
    super::no_positional(p)?;
    let action = p.exactly_one(ACTIONS)?;
    p.required("bootstrap-server")?;
    let groups_given = p.has("group") || p.has("all-groups");
    if action == "delete-offsets"
        && (!p.has("group") || p.values("group").len() > 1 || !p.has("topic"))
    {
        return Err(usage(
            "Option [delete-offsets] takes the following options: [topic], [group] (one group)",
        ));
    }
    if matches!(action, "describe" | "delete" | "reset-offsets") && !groups_given {
        return Err(usage(format!(
            "Option [{action}] takes one of these options: [all-groups], [group]"
        )));
    }
    if p.has("group") && p.has("all-groups") {
        return Err(usage(
            "Option [group] and [all-groups] are mutually exclusive",
        ));
    }
    p.only_with("members", &["describe"])?;
    p.only_with("offsets", &["describe"])?;
    p.only_with("verbose", &["describe"])?;
    p.only_with("state", &["describe", "list"])?;
    p.only_with("type", &["list"])?;
    p.only_with("all-topics", &["reset-offsets"])?;
    p.only_with("dry-run", &["reset-offsets"])?;
    p.only_with("execute", &["reset-offsets"])?;
    for s in RESET_SCENARIOS {
        p.only_with(s, &["reset-offsets"])?;
    }
    if action == "describe" && p.given(&["members", "offsets", "state"]).len() > 1 {
        return Err(usage(
            "Option [describe] takes at most one of these options: [members], [offsets], [state]",
        ));
    }
    if action == "describe" && p.has("state") && !p.value("state").unwrap_or("").is_empty() {
        return Err(usage("Option [describe] does not take a value for [state]"));
    }
    if action == "reset-offsets" {
        if p.given(RESET_SCENARIOS).len() != 1 {
            return Err(usage(
                "One and only one of [to-earliest], [to-latest], [to-offset], [to-datetime], [shift-by], [to-current], [by-duration], [from-file] must be given with [reset-offsets]",
            ));
        }
        if !p.has("topic") && !p.has("all-topics") {
            return Err(usage(
                "Option [reset-offsets] takes one of these options: [all-topics], [topic]",
            ));
        }
        if p.has("dry-run") && p.has("execute") {
            return Err(usage(
                "Option [dry-run] and [execute] are mutually exclusive",
            ));
        }
    }
    Ok(action)
}

/// Runs `kafka-consumer-groups.sh`.
pub async fn run(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(SPECS);
    let p = opts::parse("kafka-consumer-groups.sh", &specs, args)?;
    let action = check(&p)?;
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    let groups = if p.has("all-groups") {
        client
            .list_groups()
            .await?
            .into_iter()
            .map(|g| g.group_id)
            .collect()
    } else {
        p.values("group").to_vec()
    };
    match action {
        "list" => list(&mut client, &p).await,
        "describe" => {
            for g in &groups {
                let desc = client.describe_group(g).await?;
                if p.has("state") {
                    print!("{}", state_table(&mut client, &desc).await?);
                } else if p.has("members") {
                    print!("{}", members_table(&desc, p.has("verbose"))?);
                } else {
                    let rows = offset_rows(&mut client, &desc).await?;
                    if desc.members.is_empty() {
                        eprintln!("\nConsumer group '{g}' has no active members.");
                    }
                    print!("{}", offsets_table(&rows));
                }
            }
            Ok(())
        }
        "delete" => {
            let refs: Vec<&str> = groups.iter().map(String::as_str).collect();
            client.delete_groups(&refs).await?;
            println!(
                "Deletion of requested consumer groups ({}) was successful.",
                groups
                    .iter()
                    .map(|g| format!("'{g}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        "reset-offsets" => reset(&mut client, &p, &groups).await,
        "delete-offsets" => delete_offsets(&mut client, &p, &groups[0]).await,
        _ => Ok(()),
    }
}

async fn list(client: &mut Client, p: &Parsed) -> anyhow::Result<()> {
    let listings = client.list_groups().await?;
    let wanted_states: Vec<String> = p
        .value("state")
        .unwrap_or("")
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    if !p.has("state") && !p.has("type") {
        for g in listings {
            println!("{}", g.group_id);
        }
        return Ok(());
    }
    let mut rows = Vec::new();
    for g in listings {
        let state = if g.state.is_empty() {
            client.describe_group(&g.group_id).await?.state
        } else {
            g.state
        };
        if !wanted_states.is_empty() && !wanted_states.contains(&state.to_ascii_lowercase()) {
            continue;
        }
        // Nagare lists classic-protocol and KIP-848 groups alike as consumer groups.
        let kind = if g.protocol_type.is_empty() || g.protocol_type == "consumer" {
            "Consumer"
        } else {
            "Classic"
        };
        rows.push((g.group_id, kind.to_owned(), state));
    }
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(15);
    let mut out = String::new();
    match (p.has("state"), p.has("type")) {
        (true, true) => {
            out.push_str(&format!("{:<w$} {:<15} {}\n", "GROUP", "TYPE", "STATE"));
            for (g, t, s) in &rows {
                out.push_str(&format!("{g:<w$} {t:<15} {s}\n"));
            }
        }
        (true, false) => {
            out.push_str(&format!("{:<w$} {}\n", "GROUP", "STATE"));
            for (g, _, s) in &rows {
                out.push_str(&format!("{g:<w$} {s}\n"));
            }
        }
        _ => {
            out.push_str(&format!("{:<w$} {}\n", "GROUP", "TYPE"));
            for (g, t, _) in &rows {
                out.push_str(&format!("{g:<w$} {t}\n"));
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// Kafka's describe table: a blank line, then columns padded to at least 15 characters
/// (PARTITION: 10), the last one unpadded.
fn offsets_table(rows: &[Vec<String>]) -> String {
    let header: Vec<String> = [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    .map(str::to_owned)
    .to_vec();
    let width = |c: usize| {
        rows.iter()
            .map(|r| r.get(c).map_or(0, String::len))
            .max()
            .unwrap_or(0)
            .max(15)
    };
    let widths = [width(0), width(1), 10, 15, 15, 15, width(6), width(7)];
    printf_table(&header, rows, &widths)
}

/// Rows formatted as `%-W1s %-W2s … %s`, after a blank line (Kafka prints `\n%-…s` per row).
fn printf_table(header: &[String], rows: &[Vec<String>], widths: &[usize]) -> String {
    let mut out = String::from("\n");
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            match widths.get(c) {
                Some(&w) if c + 1 < row.len() => line.push_str(&format!("{cell:<w$} ")),
                _ => line.push_str(cell),
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn members_table(desc: &GroupDescription, verbose: bool) -> anyhow::Result<String> {
    if desc.state == "Dead" {
        anyhow::bail!("Consumer group '{}' does not exist.", desc.group_id);
    }
    if desc.members.is_empty() {
        eprintln!(
            "\nConsumer group '{}' has no active members.",
            desc.group_id
        );
    }
    let mut header: Vec<String> = ["GROUP", "CONSUMER-ID", "HOST", "CLIENT-ID", "#PARTITIONS"]
        .map(str::to_owned)
        .to_vec();
    if verbose {
        header.push("ASSIGNMENT".to_owned());
    }
    let mut rows = Vec::new();
    for m in &desc.members {
        let count: usize = m.assignment.values().map(Vec::len).sum();
        let mut row = vec![
            desc.group_id.clone(),
            m.member_id.clone(),
            m.client_host.clone(),
            m.client_id.clone(),
            count.to_string(),
        ];
        if verbose {
            let a: Vec<String> = m
                .assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(ToString::to_string).collect();
                    format!("{t}({})", ps.join(","))
                })
                .collect();
            row.push(if a.is_empty() {
                "-".to_owned()
            } else {
                a.join(", ")
            });
        }
        rows.push(row);
    }
    let width = |c: usize| {
        rows.iter()
            .map(|r: &Vec<String>| r.get(c).map_or(0, String::len))
            .max()
            .unwrap_or(0)
            .max(15)
    };
    let widths = [width(0), width(1), width(2), width(3), 15];
    Ok(printf_table(&header, &rows, &widths))
}

async fn state_table(client: &mut Client, desc: &GroupDescription) -> anyhow::Result<String> {
    if desc.state == "Dead" {
        anyhow::bail!("Consumer group '{}' does not exist.", desc.group_id);
    }
    let id = client.find_coordinator(&desc.group_id).await?;
    let coordinator = client
        .brokers()
        .get(&id)
        .map(|b| format!("{}:{}  ({id})", b.host, b.port))
        .unwrap_or_else(|| format!("({id})"));
    let strategy = if desc.protocol.is_empty() {
        String::new()
    } else {
        desc.protocol.clone()
    };
    let header: Vec<String> = [
        "GROUP",
        "COORDINATOR (ID)",
        "ASSIGNMENT-STRATEGY",
        "STATE",
        "#MEMBERS",
    ]
    .map(str::to_owned)
    .to_vec();
    let row = vec![
        desc.group_id.clone(),
        coordinator,
        strategy,
        desc.state.clone(),
        desc.members.len().to_string(),
    ];
    let widths = [desc.group_id.len().max(15), row[1].len().max(25), 20, 20];
    Ok(printf_table(&header, &[row], &widths))
}

/// `--delete-offsets --group g --topic t[:p,…]`: OffsetDelete, and Kafka's status table.
async fn delete_offsets(client: &mut Client, p: &Parsed, group: &str) -> anyhow::Result<()> {
    let mut wanted: Vec<(String, Vec<i32>)> = Vec::new();
    for spec in p.values("topic") {
        let (topic, only) = parse_topic_spec(spec)?;
        let parts = match only {
            Some(ps) => ps,
            None => client
                .topic_metadata(&topic)
                .await?
                .partitions
                .iter()
                .map(|x| x.partition)
                .collect(),
        };
        wanted.push((topic, parts));
    }
    let refs: Vec<(&str, Vec<i32>)> = wanted
        .iter()
        .map(|(t, ps)| (t.as_str(), ps.clone()))
        .collect();
    let results = client.delete_offsets(group, &refs).await?;
    let failed = results.iter().any(|r| r.2 != 0);
    let topics: Vec<&str> = wanted.iter().map(|(t, _)| t.as_str()).collect();
    println!(
        "Request {} for deleting offsets with topic {} group {group}",
        if failed { "failed" } else { "succeed" },
        topics.join(", ")
    );
    let header: Vec<String> = ["TOPIC", "PARTITION", "STATUS"].map(str::to_owned).to_vec();
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(t, part, code)| {
            let status = if *code == 0 {
                "Successful".to_owned()
            } else {
                format!(
                    "Error: {}",
                    nagare_client::ResponseError::try_from_code(*code)
                        .map(nagare_client::kafka_error_name)
                        .unwrap_or_else(|| format!("error code {code}"))
                )
            };
            vec![t.clone(), part.to_string(), status]
        })
        .collect();
    print!("{}", printf_table(&header, &rows, &[30, 15]));
    if failed {
        anyhow::bail!("some offsets of group '{group}' could not be deleted");
    }
    Ok(())
}

fn reset_target(p: &Parsed) -> anyhow::Result<ResetTarget> {
    Ok(if p.has("to-earliest") {
        ResetTarget::Earliest
    } else if p.has("to-latest") {
        ResetTarget::Latest
    } else if p.has("to-current") {
        ResetTarget::Current
    } else if let Some(n) = p.number::<i64>("to-offset")? {
        ResetTarget::Offset(n)
    } else if let Some(n) = p.number::<i64>("shift-by")? {
        ResetTarget::ShiftBy(n)
    } else if let Some(ts) = p.value("to-datetime") {
        ResetTarget::Datetime(parse_datetime(ts).map_err(usage)?)
    } else if let Some(d) = p.value("by-duration") {
        let ms = parse_duration(d)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        ResetTarget::Datetime(now.saturating_sub(ms))
    } else {
        return Err(usage("a reset scenario is required"));
    })
}

/// An ISO-8601 duration as `--by-duration` takes it (`PnDTnHnMn.nS`, e.g. `PT30M`, `P1DT2H`);
/// milliseconds.
fn parse_duration(s: &str) -> anyhow::Result<i64> {
    let bad = || {
        usage(format!(
            "Error parsing duration '{s}': expected ISO-8601 like PT30M or P1DT2H"
        ))
    };
    let upper = s.trim().to_ascii_uppercase();
    let body = upper.strip_prefix('P').ok_or_else(bad)?;
    let (days, time) = match body.split_once('T') {
        Some((d, t)) => (d, t),
        None => (body, ""),
    };
    let mut ms: f64 = 0.0;
    if !days.is_empty() {
        let n = days.strip_suffix('D').ok_or_else(bad)?;
        ms += n.parse::<f64>().map_err(|_| bad())? * 86_400_000.0;
    }
    let mut num = String::new();
    for c in time.chars() {
        let unit = match c {
            'H' => 3_600_000.0,
            'M' => 60_000.0,
            'S' => 1000.0,
            c if c.is_ascii_digit() || c == '.' => {
                num.push(c);
                continue;
            }
            _ => return Err(bad()),
        };
        ms += num.parse::<f64>().map_err(|_| bad())? * unit;
        num.clear();
    }
    if !num.is_empty() || (days.is_empty() && time.is_empty()) {
        return Err(bad());
    }
    Ok(ms as i64)
}

async fn reset(client: &mut Client, p: &Parsed, groups: &[String]) -> anyhow::Result<()> {
    let target = reset_target(p)?;
    let execute = p.has("execute");
    if !execute && !p.has("dry-run") {
        println!("WARN: No action will be performed as the --execute option is missing. You should add the --dry-run option explicitly if you are scripting this command and want to keep the current default behavior without prompting.");
    }
    for group in groups {
        let desc = client.describe_group(group).await?;
        if !desc.is_inactive() {
            anyhow::bail!(
                "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
                desc.state
            );
        }
        let committed = client.fetch_committed(group, None).await?;
        // (topic, partitions): each --topic (`t` or `t:0,1`), or with --all-topics every topic
        // the group has offsets for.
        let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        if p.has("all-topics") {
            for (t, part) in committed.keys() {
                wanted.entry(t.clone()).or_default().push(*part);
            }
        } else {
            for spec in p.values("topic") {
                let (topic, only) = parse_topic_spec(spec)?;
                let md = client.topic_metadata(&topic).await?;
                let parts = match only {
                    Some(ps) => ps,
                    None => md.partitions.iter().map(|x| x.partition).collect(),
                };
                wanted.entry(topic).or_default().extend(parts);
            }
        }
        let mut rows = Vec::new();
        let mut commits: Vec<(String, i32, i64)> = Vec::new();
        for (topic, parts) in &wanted {
            for (part, offset) in reset_plan(client, topic, parts, target, &committed).await? {
                rows.push(vec![
                    group.clone(),
                    topic.clone(),
                    part.to_string(),
                    offset.to_string(),
                ]);
                commits.push((topic.clone(), part, offset));
            }
        }
        if execute {
            let refs: Vec<(&str, i32, i64)> = commits
                .iter()
                .map(|(t, part, o)| (t.as_str(), *part, *o))
                .collect();
            client.commit_offsets(group, &refs).await?;
        }
        let header: Vec<String> = ["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
            .map(str::to_owned)
            .to_vec();
        let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(30);
        let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(30);
        print!("{}", printf_table(&header, &rows, &[w0, w1, 10]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_args(a: &[&str]) -> anyhow::Result<&'static str> {
        let mut args: Vec<String> = vec!["--bootstrap-server".into(), "h:1".into()];
        args.extend(a.iter().map(|s| s.to_string()));
        let specs = super::super::with_connection(SPECS);
        check(&opts::parse("kafka-consumer-groups.sh", &specs, &args)?)
    }

    #[test]
    fn kafka_argument_rules() {
        assert_eq!(check_args(&["--list"]).expect("list"), "list");
        assert_eq!(check_args(&["--list", "--state"]).expect("list"), "list");
        assert_eq!(
            check_args(&["--list", "--state", "Stable,Empty"]).expect("list"),
            "list"
        );
        assert_eq!(
            check_args(&["--describe", "--group", "g", "--members", "--verbose"]).expect("d"),
            "describe"
        );
        assert_eq!(
            check_args(&["--describe", "--state", "--group", "g"]).expect("state takes no value"),
            "describe"
        );
        assert!(check_args(&["--describe"]).is_err(), "needs --group");
        assert!(check_args(&["--describe", "--group", "g", "--members", "--state"]).is_err());
        assert_eq!(
            check_args(&[
                "--reset-offsets",
                "--group",
                "g",
                "--topic",
                "t",
                "--to-earliest",
                "--execute"
            ])
            .expect("reset"),
            "reset-offsets"
        );
        assert!(check_args(&["--reset-offsets", "--group", "g", "--topic", "t"]).is_err());
        assert!(check_args(&["--reset-offsets", "--group", "g", "--to-latest"]).is_err());
        assert!(check_args(&[
            "--reset-offsets",
            "--group",
            "g",
            "--all-topics",
            "--to-latest",
            "--to-earliest"
        ])
        .is_err());
        assert!(check_args(&["--list", "--to-earliest"]).is_err());
        assert_eq!(
            check_args(&["--delete-offsets", "--group", "g", "--topic", "t:0"]).expect("ok"),
            "delete-offsets"
        );
        assert!(check_args(&["--delete-offsets", "--group", "g"]).is_err());
        let e = check_args(&[
            "--reset-offsets",
            "--group",
            "g",
            "--all-topics",
            "--from-file",
            "x.csv",
        ])
        .expect_err("unsupported");
        assert!(e.to_string().contains("--from-file"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("PT30M").expect("ok"), 1_800_000);
        assert_eq!(parse_duration("P1DT2H").expect("ok"), 93_600_000);
        assert_eq!(parse_duration("PT0.5S").expect("ok"), 500);
        assert_eq!(parse_duration("P2D").expect("ok"), 172_800_000);
        for bad in ["", "P", "30M", "PT5", "PTXM"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn describe_table_like_kafka() {
        let rows = vec![vec![
            "my-group".to_owned(),
            "my-topic".to_owned(),
            "0".to_owned(),
            "2".to_owned(),
            "4".to_owned(),
            "2".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
            "-".to_owned(),
        ]];
        let out = offsets_table(&rows);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "");
        assert_eq!(
            lines[1],
            "GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID"
        );
        assert_eq!(
            lines[2],
            "my-group        my-topic        0          2               4               2               -               -               -"
        );
    }
}
