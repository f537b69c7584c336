//! `nagare group`: list, describe (with lag), delete consumer groups and reset their committed
//! offsets (like `kafka-consumer-groups`).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use nagare_client::{Client, GroupDescription, OffsetSpec};

/// Arguments of `nagare group`.
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
    /// List group ids (with `--state`: also protocol type and state).
    List {
        /// Also show each group's protocol type and state.
        #[arg(long)]
        state: bool,
    },
    /// Show a group's committed offsets, log end offsets and lag per partition, with the
    /// member owning each partition; `--members` / `--state` show members or the state only.
    Describe {
        /// Group id.
        group: String,
        /// Show the members (id, host, client id, assigned partitions) instead of offsets.
        #[arg(long, conflicts_with = "state")]
        members: bool,
        /// Show the coordinator's view of the group (state, protocol, member count) only.
        #[arg(long)]
        state: bool,
    },
    /// Delete a group and its committed offsets (only when it has no active members).
    Delete {
        /// Group id(s).
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Reset a group's committed offsets of a topic (only when the group is inactive).
    ResetOffsets {
        /// Group id.
        group: String,
        /// The topic, optionally restricted to partitions: `TOPIC` or `TOPIC:0,2`.
        #[arg(long, required = true)]
        topic: String,
        /// Reset to the log start offset.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// Reset to the log end offset.
        #[arg(long, group = "target")]
        to_latest: bool,
        /// Reset to this offset (clamped to the log's start and end, as Kafka does).
        #[arg(long, group = "target", value_name = "N")]
        to_offset: Option<i64>,
        /// Reset to the first offset at or after this time: ISO-8601 (`2026-11-24T10:00:00.000`,
        /// UTC unless it has a zone such as `Z` or `+01:00`) or epoch milliseconds.
        #[arg(long, group = "target", value_name = "TS", value_parser = parse_datetime)]
        to_datetime: Option<i64>,
        /// Print the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
        /// Commit the new offsets (the default; accepted for `kafka-consumer-groups`
        /// compatibility).
        #[arg(long, conflicts_with = "dry_run")]
        execute: bool,
    },
}

/// Where `reset-offsets` moves the committed offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetTarget {
    /// The log start offset.
    Earliest,
    /// The log end offset.
    Latest,
    /// This offset (clamped to the log's range).
    Offset(i64),
    /// The first offset at or after this time (ms since the epoch).
    Datetime(i64),
    /// The committed offset moved by this many (clamped).
    ShiftBy(i64),
    /// The committed offset as it is (`--to-current`).
    Current,
}

/// Runs `nagare group`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    match args.command {
        Command::List { state } => {
            let groups = client.list_groups().await.context("cannot list groups")?;
            if state {
                let mut rows = vec![vec![
                    "GROUP".to_owned(),
                    "PROTOCOL-TYPE".to_owned(),
                    "STATE".to_owned(),
                ]];
                for g in groups {
                    let state = if g.state.is_empty() {
                        client.describe_group(&g.group_id).await?.state
                    } else {
                        g.state
                    };
                    rows.push(vec![g.group_id, or_dash(&g.protocol_type), state]);
                }
                print!("{}", render_table(&rows));
            } else {
                for g in groups {
                    println!("{}", g.group_id);
                }
            }
        }
        Command::Describe {
            group,
            members,
            state,
        } => {
            let desc = client.describe_group(&group).await?;
            if state {
                print!("{}", render_state(&desc));
            } else if members {
                describe_members(&desc)?;
            } else {
                describe_offsets(&mut client, &desc).await?;
            }
        }
        Command::Delete { groups } => {
            for g in &groups {
                client.delete_groups(&[g.as_str()]).await?;
                println!("Deletion of requested consumer groups ('{g}') was successful.");
            }
        }
        Command::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            dry_run,
            execute: _,
        } => {
            let target = match (to_earliest, to_latest, to_offset, to_datetime) {
                (true, _, _, _) => ResetTarget::Earliest,
                (_, true, _, _) => ResetTarget::Latest,
                (_, _, Some(n), _) => ResetTarget::Offset(n),
                (_, _, _, Some(ts)) => ResetTarget::Datetime(ts),
                _ => bail!(
                    "one of --to-earliest, --to-latest, --to-offset or --to-datetime is required"
                ),
            };
            reset_offsets(&mut client, &group, &topic, target, dry_run).await?;
        }
    }
    Ok(())
}

/// The coordinator's view: `GROUP STATE PROTOCOL-TYPE PROTOCOL #MEMBERS`.
fn render_state(desc: &GroupDescription) -> String {
    render_table(&[
        vec![
            "GROUP".to_owned(),
            "STATE".to_owned(),
            "PROTOCOL-TYPE".to_owned(),
            "PROTOCOL".to_owned(),
            "#MEMBERS".to_owned(),
        ],
        vec![
            desc.group_id.clone(),
            desc.state.clone(),
            or_dash(&desc.protocol_type),
            or_dash(&desc.protocol),
            desc.members.len().to_string(),
        ],
    ])
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn print_inactive_notice(desc: &GroupDescription) {
    if desc.members.is_empty() {
        eprintln!("Consumer group '{}' has no active members.", desc.group_id);
    }
}

fn describe_members(desc: &GroupDescription) -> anyhow::Result<()> {
    if desc.state == "Dead" {
        bail!("Consumer group '{}' does not exist.", desc.group_id);
    }
    print_inactive_notice(desc);
    let mut rows = vec![[
        "GROUP",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
        "#PARTITIONS",
        "ASSIGNMENT",
    ]
    .map(str::to_owned)
    .to_vec()];
    for m in &desc.members {
        let count: usize = m.assignment.values().map(Vec::len).sum();
        let assignment = m
            .assignment
            .iter()
            .map(|(t, ps)| {
                let ps: Vec<String> = ps.iter().map(ToString::to_string).collect();
                format!("{t}({})", ps.join(","))
            })
            .collect::<Vec<_>>()
            .join(",");
        rows.push(vec![
            desc.group_id.clone(),
            m.member_id.clone(),
            m.client_host.clone(),
            m.client_id.clone(),
            count.to_string(),
            or_dash(&assignment),
        ]);
    }
    print!("{}", render_table(&rows));
    Ok(())
}

/// The offsets view: one row per partition with a committed offset or an owner, like
/// `kafka-consumer-groups --describe`.
async fn describe_offsets(client: &mut Client, desc: &GroupDescription) -> anyhow::Result<()> {
    let data = offset_rows(client, desc).await?;
    print_inactive_notice(desc);
    let mut rows = vec![[
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
    .to_vec()];
    rows.extend(data);
    print!("{}", render_table(&rows));
    Ok(())
}

/// The rows of the offsets view (GROUP, TOPIC, PARTITION, CURRENT-OFFSET, LOG-END-OFFSET,
/// LAG, CONSUMER-ID, HOST, CLIENT-ID; `-` where unknown), sorted by topic and partition; an
/// error if the group does not exist. Shared with `kafka-consumer-groups.sh`.
pub(crate) async fn offset_rows(
    client: &mut Client,
    desc: &GroupDescription,
) -> anyhow::Result<Vec<Vec<String>>> {
    let committed = client.fetch_committed(&desc.group_id, None).await?;
    if desc.state == "Dead" && committed.is_empty() {
        bail!("Consumer group '{}' does not exist.", desc.group_id);
    }
    // Partition -> (consumer id, host, client id) of the member it is assigned to.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &desc.members {
        for (topic, parts) in &m.assignment {
            for &p in parts {
                owners.insert(
                    (topic.clone(), p),
                    (
                        m.member_id.clone(),
                        m.client_host.clone(),
                        m.client_id.clone(),
                    ),
                );
            }
        }
    }
    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let mut rows = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let current = committed.get(&(topic.clone(), partition)).copied();
        let end = match client
            .list_offsets(&topic, partition, OffsetSpec::Latest)
            .await
        {
            Ok(end) => Some(end),
            Err(e) => {
                tracing::debug!(%topic, partition, error = %e, "no log end offset");
                None
            }
        };
        let lag = match (current, end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        let dash = || "-".to_owned();
        let (member, host, client_id) = owners
            .get(&(topic.clone(), partition))
            .cloned()
            .unwrap_or_else(|| (dash(), dash(), dash()));
        rows.push(vec![
            desc.group_id.clone(),
            topic,
            partition.to_string(),
            current.map_or_else(dash, |c| c.to_string()),
            end.map_or_else(dash, |e| e.to_string()),
            lag.map_or_else(dash, |l| l.to_string()),
            member,
            host,
            client_id,
        ]);
    }
    Ok(rows)
}

/// Splits `TOPIC` or `TOPIC:0,2` into the name and the partitions named (None: all).
pub(crate) fn parse_topic_spec(spec: &str) -> anyhow::Result<(String, Option<Vec<i32>>)> {
    match spec.split_once(':') {
        None => Ok((spec.to_owned(), None)),
        Some((topic, parts)) => {
            let parts = parts
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .with_context(|| format!("invalid partition '{p}' in '{spec}'"))
                })
                .collect::<anyhow::Result<Vec<i32>>>()?;
            Ok((topic.to_owned(), Some(parts)))
        }
    }
}

async fn reset_offsets(
    client: &mut Client,
    group: &str,
    topic_spec: &str,
    target: ResetTarget,
    dry_run: bool,
) -> anyhow::Result<()> {
    let desc = client.describe_group(group).await?;
    if !desc.is_inactive() {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {}.",
            desc.state
        );
    }
    let (topic, only) = parse_topic_spec(topic_spec)?;
    let md = client
        .topic_metadata(&topic)
        .await
        .with_context(|| format!("cannot look up topic '{topic}'"))?;
    let partitions: Vec<i32> = match only {
        None => md.partitions.iter().map(|p| p.partition).collect(),
        Some(ps) => {
            for p in &ps {
                if md.partition(*p).is_none() {
                    bail!("topic '{topic}' has no partition {p}");
                }
            }
            ps
        }
    };
    let plan = reset_plan(client, &topic, &partitions, target, &BTreeMap::new()).await?;
    let offsets: Vec<(&str, i32, i64)> =
        plan.iter().map(|&(p, o)| (topic.as_str(), p, o)).collect();
    if !dry_run {
        client.commit_offsets(group, &offsets).await?;
    }
    let mut rows = vec![["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"]
        .map(str::to_owned)
        .to_vec()];
    for (p, o) in plan {
        rows.push(vec![
            group.to_owned(),
            topic.clone(),
            p.to_string(),
            o.to_string(),
        ]);
    }
    print!("{}", render_table(&rows));
    if dry_run {
        println!("(dry run: nothing was committed)");
    }
    Ok(())
}

/// The new offset of each partition of `topic` for a reset to `target` (Kafka's
/// `GroupOffsetsResetter`): explicit offsets and shifts are clamped to the log's range, a
/// time with no record at or after it resets to the end. `committed` holds the group's
/// offsets, needed by `ShiftBy` and `Current`.
pub(crate) async fn reset_plan(
    client: &mut Client,
    topic: &str,
    partitions: &[i32],
    target: ResetTarget,
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<(i32, i64)>> {
    let mut plan = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let start = client.list_offsets(topic, p, OffsetSpec::Earliest).await?;
        let end = client.list_offsets(topic, p, OffsetSpec::Latest).await?;
        let current = committed.get(&(topic.to_owned(), p)).copied();
        let new = match target {
            ResetTarget::Earliest => start,
            ResetTarget::Latest => end,
            ResetTarget::Offset(n) => n.clamp(start, end),
            ResetTarget::ShiftBy(n) => match current {
                Some(c) => c.saturating_add(n).clamp(start, end),
                None => bail!("Expected a valid current offset for topic partition: {topic}-{p}"),
            },
            // Partitions without a committed offset reset to the end, as Kafka's tool does.
            ResetTarget::Current => current.unwrap_or(end),
            ResetTarget::Datetime(ts) => {
                match client
                    .list_offsets(topic, p, OffsetSpec::Timestamp(ts))
                    .await?
                {
                    // No record at or after the time: the end, as Kafka does.
                    -1 => end,
                    o => o,
                }
            }
        };
        plan.push((p, new));
    }
    Ok(plan)
}

/// Parses `--to-datetime`: epoch milliseconds, or ISO-8601 `YYYY-MM-DDTHH:mm:SS[.sss][zone]`
/// where the zone is `Z` or `±HH:mm` / `±HHmm` (UTC when absent).
pub(crate) fn parse_datetime(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        format!(
            "invalid datetime '{s}': expected epoch milliseconds or ISO-8601 like \
             2026-11-24T10:00:00.000 (UTC unless a zone like Z or +01:00 follows)"
        )
    };
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let mut d = date.split('-');
    let (year, month, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(d), None) if y.len() == 4 && m.len() == 2 && d.len() == 2 => (
            y.parse::<i64>().map_err(|_| bad())?,
            m.parse::<i64>().map_err(|_| bad())?,
            d.parse::<i64>().map_err(|_| bad())?,
        ),
        _ => return Err(bad()),
    };
    // Split the zone off the time.
    let (time, offset_min) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(pos) = rest.rfind(['+', '-']) {
        let (t, zone) = rest.split_at(pos);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let digits: String = zone[1..].chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        let h: i64 = digits[..2].parse().map_err(|_| bad())?;
        let m: i64 = digits[2..].parse().map_err(|_| bad())?;
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (t, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, frac),
        None => (time, ""),
    };
    let mut t = hms.split(':');
    let (hour, minute, second) = match (t.next(), t.next(), t.next(), t.next()) {
        (Some(h), Some(m), sec, None) if h.len() == 2 && m.len() == 2 => (
            h.parse::<i64>().map_err(|_| bad())?,
            m.parse::<i64>().map_err(|_| bad())?,
            match sec {
                Some(sec) if sec.len() == 2 => sec.parse::<i64>().map_err(|_| bad())?,
                Some(_) => return Err(bad()),
                None => 0,
            },
        ),
        _ => return Err(bad()),
    };
    if !frac.chars().all(|c| c.is_ascii_digit()) || (frac.is_empty() && time.contains('.')) {
        return Err(bad());
    }
    // Milliseconds: the first three fractional digits.
    let millis: i64 = format!("{frac:0<3}")[..3].parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_min * 60;
    Ok(secs * 1000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
pub(crate) fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes() {
        assert_eq!(parse_datetime("0"), Ok(0));
        assert_eq!(parse_datetime("1764000000000"), Ok(1_764_000_000_000));
        assert_eq!(parse_datetime("1970-01-01T00:00:00.000"), Ok(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:01.5"), Ok(1500));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:00-0130"), Ok(5_400_000));
        assert_eq!(parse_datetime("1970-01-02T00:00:00Z"), Ok(86_400_000));
        // 2026-11-24T10:00:00Z = 1_795_514_400 s.
        assert_eq!(
            parse_datetime("2026-11-24T10:00:00.000"),
            Ok(1_795_514_400_000)
        );
        assert_eq!(parse_datetime("2000-02-29T00:00"), Ok(951_782_400_000));
        for bad in [
            "",
            "yesterday",
            "2026-11-24",
            "2026-13-01T00:00:00",
            "2026-02-30T00:00:00",
            "2026-11-24T25:00:00",
            "2026-11-24T10:00:00.",
            "2026-11-24T10:00:00+1",
        ] {
            assert!(parse_datetime(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn topic_specs() {
        assert_eq!(parse_topic_spec("t").expect("ok"), ("t".to_owned(), None));
        assert_eq!(
            parse_topic_spec("t:0,2").expect("ok"),
            ("t".to_owned(), Some(vec![0, 2]))
        );
        assert!(parse_topic_spec("t:x").is_err());
    }

    #[test]
    fn table_is_aligned() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "x".to_owned(), "-".to_owned()],
        ];
        assert_eq!(render_table(&rows), "A     BB  C\nlong  x   -\n");
    }
}
