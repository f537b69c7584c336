//! `kafka-get-offsets.sh` (`GetOffsetShell`: `topic:partition:offset` lines),
//! `kafka-delete-records.sh` (`DeleteRecordsCommand`, an `--offset-json-file`) and
//! `kafka-log-dirs.sh` (`LogDirsCommand --describe`, a JSON line).

use std::collections::BTreeSet;

use nagare_client::{kafka_error_name, OffsetSpec, ResponseError};

use super::opts::{self, usage, Kind, Parsed, Spec};

const GET_OFFSETS_SPECS: &[Spec] = &[
    ("topic", Kind::Value),
    ("partitions", Kind::Value),
    ("topic-partitions", Kind::Value),
    ("time", Kind::Value),
    ("exclude-internal-topics", Kind::Flag),
    // Removed in Kafka 4.0 along with ZooKeeper-era connection options.
    ("broker-list", Kind::Unsupported(true)),
];

/// `--time`: -1/latest, -2/earliest, -3/max-timestamp, -4/earliest-local, -5/latest-tiered,
/// or a timestamp in ms.
fn parse_time(s: &str) -> anyhow::Result<OffsetSpec> {
    Ok(match s.trim().to_ascii_lowercase().as_str() {
        "-1" | "latest" => OffsetSpec::Latest,
        "-2" | "earliest" => OffsetSpec::Earliest,
        "-3" | "max-timestamp" => OffsetSpec::MaxTimestamp,
        "-4" | "earliest-local" => OffsetSpec::EarliestLocal,
        "-5" | "latest-tiered" => OffsetSpec::LatestTiered,
        n => match n.parse::<i64>() {
            Ok(ts) if ts >= 0 => OffsetSpec::Timestamp(ts),
            _ => {
                return Err(usage(format!(
                    "Malformed time argument {s}. Please use -1 or latest / -2 or earliest / -3 or max-timestamp / -4 or earliest-local / -5 or latest-tiered, or a specified long format timestamp"
                )))
            }
        },
    })
}

/// A partition set: `0`, `1-3`, `2-`, `-4` (inclusive lower, exclusive upper in Kafka: `1-3`
/// is 1 and 2), or empty for all.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartitionFilter {
    All,
    One(i32),
    Range(Option<i32>, Option<i32>),
}

impl PartitionFilter {
    fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let bad = || usage(format!("Invalid partition '{s}'"));
        if s.is_empty() {
            return Ok(PartitionFilter::All);
        }
        match s.split_once('-') {
            None => Ok(PartitionFilter::One(s.parse().map_err(|_| bad())?)),
            Some((lo, hi)) => {
                let lo = if lo.is_empty() {
                    None
                } else {
                    Some(lo.parse().map_err(|_| bad())?)
                };
                let hi = if hi.is_empty() {
                    None
                } else {
                    Some(hi.parse().map_err(|_| bad())?)
                };
                Ok(PartitionFilter::Range(lo, hi))
            }
        }
    }

    fn matches(&self, p: i32) -> bool {
        match self {
            PartitionFilter::All => true,
            PartitionFilter::One(n) => p == *n,
            PartitionFilter::Range(lo, hi) => lo.is_none_or(|l| p >= l) && hi.is_none_or(|h| p < h),
        }
    }
}

/// (topic regex, partition filters) pairs from `--topic-partitions` or `--topic` +
/// `--partitions`.
fn topic_partition_filters(
    p: &Parsed,
) -> anyhow::Result<Vec<(Option<regex::Regex>, Vec<PartitionFilter>)>> {
    if let Some(tp) = p.value("topic-partitions") {
        if p.has("topic") || p.has("partitions") {
            return Err(usage(
                "--topic-partitions cannot be used with --topic or --partitions",
            ));
        }
        let mut out = Vec::new();
        for item in tp.split(',') {
            let (topic, parts) = match item.rsplit_once(':') {
                Some((t, ps)) => (t, ps),
                None => (item, ""),
            };
            let regex = if topic.is_empty() {
                None
            } else {
                Some(super::include_list(topic)?)
            };
            out.push((regex, vec![PartitionFilter::parse(parts)?]));
        }
        return Ok(out);
    }
    let regex = p.value("topic").map(super::include_list).transpose()?;
    let parts = match p.value("partitions") {
        Some(ps) => ps
            .split(',')
            .map(PartitionFilter::parse)
            .collect::<anyhow::Result<_>>()?,
        None => vec![PartitionFilter::All],
    };
    Ok(vec![(regex, parts)])
}

/// Runs `kafka-get-offsets.sh`.
pub async fn run_get_offsets(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(GET_OFFSETS_SPECS);
    let p = opts::parse("kafka-get-offsets.sh", &specs, args)?;
    super::no_positional(&p)?;
    p.required("bootstrap-server")?;
    let spec = parse_time(p.value("time").unwrap_or("-1"))?;
    let filters = topic_partition_filters(&p)?;
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    let topics = client.describe_topics(&[]).await?;
    let mut wanted: BTreeSet<(String, i32)> = BTreeSet::new();
    for t in &topics {
        if p.has("exclude-internal-topics") && t.is_internal {
            continue;
        }
        for part in &t.partitions {
            let chosen = filters.iter().any(|(regex, parts)| {
                regex.as_ref().is_none_or(|r| r.is_match(&t.name))
                    && parts.iter().any(|f| f.matches(part.partition))
            });
            if chosen {
                wanted.insert((t.name.clone(), part.partition));
            }
        }
    }
    if wanted.is_empty() {
        if let Some(t) = p.value("topic") {
            anyhow::bail!(
                "Could not match any topic-partitions with the specified filters (topic {t})"
            );
        }
    }
    let mut out = String::new();
    for (topic, partition) in wanted {
        let offset = client.list_offsets(&topic, partition, spec).await?;
        out.push_str(&format!("{topic}:{partition}:{offset}\n"));
    }
    print!("{out}");
    Ok(())
}

const DELETE_RECORDS_SPECS: &[Spec] = &[("offset-json-file", Kind::Value)];

/// The `(topic, partition, offset)` triples of a delete-records JSON file:
/// `{"partitions": [{"topic": "t", "partition": 0, "offset": 3}], "version": 1}`.
fn parse_offset_json(text: &str) -> anyhow::Result<Vec<(String, i32, i64)>> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("invalid offset JSON: {e}"))?;
    let parts = v
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or_else(|| anyhow::anyhow!("the offset JSON file has no \"partitions\" array"))?;
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for part in parts {
        let topic = part.get("topic").and_then(|t| t.as_str());
        let partition = part
            .get("partition")
            .and_then(|p| p.as_i64())
            .and_then(|p| i32::try_from(p).ok());
        let offset = part.get("offset").and_then(|o| o.as_i64());
        match (topic, partition, offset) {
            (Some(t), Some(p), Some(o)) => {
                if !seen.insert((t.to_owned(), p)) {
                    anyhow::bail!("Offset json file contains duplicate topic partitions: {t}-{p}");
                }
                out.push((t.to_owned(), p, o));
            }
            _ => anyhow::bail!(
                "each entry of \"partitions\" needs \"topic\" (string), \"partition\" and \"offset\" (integers): {part}"
            ),
        }
    }
    Ok(out)
}

/// Runs `kafka-delete-records.sh`.
pub async fn run_delete_records(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(DELETE_RECORDS_SPECS);
    let p = opts::parse("kafka-delete-records.sh", &specs, args)?;
    super::no_positional(&p)?;
    p.required("bootstrap-server")?;
    let file = p.required("offset-json-file")?;
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
    let offsets = parse_offset_json(&text)?;
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    println!("Executing records delete operation");
    let refs: Vec<(&str, i32, i64)> = offsets
        .iter()
        .map(|(t, p, o)| (t.as_str(), *p, *o))
        .collect();
    let results = client.delete_records(&refs).await?;
    println!("Records delete operation completed:");
    for r in results {
        if r.error_code == 0 {
            println!(
                "partition: {}-{}\tlow_watermark: {}",
                r.topic, r.partition, r.low_watermark
            );
        } else {
            let name = ResponseError::try_from_code(r.error_code)
                .map(kafka_error_name)
                .unwrap_or_else(|| format!("error code {}", r.error_code));
            println!("partition: {}-{}\terror: {name}", r.topic, r.partition);
        }
    }
    Ok(())
}

const LOG_DIRS_SPECS: &[Spec] = &[
    ("describe", Kind::Flag),
    ("broker-list", Kind::Value),
    ("topic-list", Kind::Value),
];

/// Runs `kafka-log-dirs.sh --describe`.
pub async fn run_log_dirs(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(LOG_DIRS_SPECS);
    let p = opts::parse("kafka-log-dirs.sh", &specs, args)?;
    super::no_positional(&p)?;
    p.required("bootstrap-server")?;
    if !p.has("describe") {
        return Err(usage("Missing required argument \"[describe]\""));
    }
    let topics: Option<BTreeSet<String>> = p.value("topic-list").map(|l| {
        l.split(',')
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect()
    });
    let mut client = super::connect(&p, "command-config", Vec::new()).await?;
    let brokers: Vec<i32> = match p.value("broker-list") {
        Some(list) => list
            .split(',')
            .map(|b| {
                b.trim()
                    .parse::<i32>()
                    .map_err(|_| usage(format!("Invalid broker id '{b}' in --broker-list")))
            })
            .collect::<anyhow::Result<_>>()?,
        None => client.brokers().keys().copied().collect(),
    };
    let known: BTreeSet<i32> = client.brokers().keys().copied().collect();
    let missing: Vec<String> = brokers
        .iter()
        .filter(|b| !known.contains(b))
        .map(ToString::to_string)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "ERROR: The given brokers do not exist from --broker-list: {}. Current existent brokers: {}",
            missing.join(","),
            known.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
        );
    }
    println!("Querying brokers for log directories information");
    let mut json_brokers = Vec::new();
    for b in &brokers {
        let dirs = client.describe_log_dirs(*b, None).await?;
        let log_dirs: Vec<serde_json::Value> = dirs
            .into_iter()
            .map(|d| {
                let partitions: Vec<serde_json::Value> = d
                    .partitions
                    .iter()
                    .filter(|((t, _), _)| topics.as_ref().is_none_or(|ts| ts.contains(t)))
                    .map(|((t, part), (size, lag, future))| {
                        serde_json::json!({
                            "partition": format!("{t}-{part}"),
                            "size": size,
                            "offsetLag": lag,
                            "isFuture": future,
                        })
                    })
                    .collect();
                let error = if d.error_code == 0 {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::String(
                        ResponseError::try_from_code(d.error_code)
                            .map(kafka_error_name)
                            .unwrap_or_else(|| format!("error code {}", d.error_code)),
                    )
                };
                serde_json::json!({"logDir": d.path, "error": error, "partitions": partitions})
            })
            .collect();
        json_brokers.push(serde_json::json!({"broker": b, "logDirs": log_dirs}));
    }
    println!(
        "Received log directory information from brokers {}",
        brokers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    println!(
        "{}",
        serde_json::json!({"version": 1, "brokers": json_brokers})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("-1").expect("ok"), OffsetSpec::Latest);
        assert_eq!(parse_time("earliest").expect("ok"), OffsetSpec::Earliest);
        assert_eq!(parse_time("-3").expect("ok"), OffsetSpec::MaxTimestamp);
        assert_eq!(
            parse_time("1700000000000").expect("ok"),
            OffsetSpec::Timestamp(1_700_000_000_000)
        );
        assert!(parse_time("-9").is_err());
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn partition_filters() {
        let f = PartitionFilter::parse("1-3").expect("ok");
        assert!(!f.matches(0) && f.matches(1) && f.matches(2) && !f.matches(3));
        assert!(PartitionFilter::parse("2-").expect("ok").matches(9));
        assert!(PartitionFilter::parse("").expect("ok").matches(0));
        assert!(PartitionFilter::parse("x").is_err());
    }

    #[test]
    fn offset_json() {
        let v = parse_offset_json(
            r#"{"partitions":[{"topic":"t","partition":0,"offset":3}],"version":1}"#,
        )
        .expect("ok");
        assert_eq!(v, vec![("t".to_owned(), 0, 3)]);
        assert!(parse_offset_json(r#"{"partitions":[{"topic":"t","partition":0}]}"#).is_err());
        assert!(parse_offset_json(r#"{"partitions":[{"topic":"t","partition":0,"offset":1},{"topic":"t","partition":0,"offset":2}]}"#).is_err());
        assert!(parse_offset_json("nope").is_err());
    }
}
