//! `kafka-leader-election.sh` (Kafka 4.x's `LeaderElectionCommand`).

use std::collections::BTreeMap;

use nagare_client::{kafka_error_name, ResponseError};

use super::opts::{self, usage, Kind, Parsed, Spec};

const ELECTION_SPECS: &[Spec] = &[
    ("admin.config", Kind::Value),
    ("election-type", Kind::Value),
    ("topic", Kind::Value),
    ("partition", Kind::Value),
    ("all-topic-partitions", Kind::Flag),
    ("path-to-json-file", Kind::Value),
];

/// Partitions by topic.
type TopicPartitions = Vec<(String, Vec<i32>)>;

/// The partitions a leader-election command line names (`None`: all of them).
fn election_partitions(p: &Parsed) -> anyhow::Result<Option<TopicPartitions>> {
    let sources = p.given(&["topic", "all-topic-partitions", "path-to-json-file"]);
    if sources.len() != 1 {
        return Err(usage(
            "One and only one of the following options is required: --all-topic-partitions, --topic, --path-to-json-file",
        ));
    }
    if p.has("partition") && !p.has("topic") {
        return Err(usage("Option --partition requires --topic"));
    }
    if p.has("all-topic-partitions") {
        return Ok(None);
    }
    if let Some(topic) = p.value("topic") {
        let partition: i32 = p
            .number("partition")?
            .ok_or_else(|| usage("Missing required option(s) [partition]"))?;
        return Ok(Some(vec![(topic.to_owned(), vec![partition])]));
    }
    let file = p.required("path-to-json-file")?;
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {file}: {e}"))?;
    Ok(Some(parse_partitions_json(&text)?))
}

/// `{"partitions": [{"topic": "t", "partition": 0}, …]}`, grouped by topic.
fn parse_partitions_json(text: &str) -> anyhow::Result<Vec<(String, Vec<i32>)>> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("invalid JSON: {e}"))?;
    let parts = v
        .get("partitions")
        .and_then(|p| p.as_array())
        .ok_or_else(|| anyhow::anyhow!("the JSON file has no \"partitions\" array"))?;
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for part in parts {
        match (
            part.get("topic").and_then(|t| t.as_str()),
            part.get("partition")
                .and_then(|p| p.as_i64())
                .and_then(|p| i32::try_from(p).ok()),
        ) {
            (Some(t), Some(p)) => by_topic.entry(t.to_owned()).or_default().push(p),
            _ => anyhow::bail!("each partition needs \"topic\" and \"partition\": {part}"),
        }
    }
    Ok(by_topic.into_iter().collect())
}

/// Runs `kafka-leader-election.sh`.
pub async fn run_leader_election(args: &[String]) -> anyhow::Result<()> {
    let specs = super::with_connection(ELECTION_SPECS);
    let p = opts::parse("kafka-leader-election.sh", &specs, args)?;
    super::no_positional(&p)?;
    p.required("bootstrap-server")?;
    let (code, label) = match p.required("election-type")?.to_ascii_uppercase().as_str() {
        "PREFERRED" => (0i8, "PREFERRED"),
        "UNCLEAN" => (1, "UNCLEAN"),
        other => {
            return Err(usage(format!(
                "Election type {other} is not one of PREFERRED, UNCLEAN"
            )))
        }
    };
    let wanted = election_partitions(&p)?;
    let config = if p.has("admin.config") {
        "admin.config"
    } else {
        "command-config"
    };
    let mut client = super::connect(&p, config, Vec::new()).await?;
    let refs: Option<Vec<(&str, Vec<i32>)>> = wanted
        .as_ref()
        .map(|w| w.iter().map(|(t, ps)| (t.as_str(), ps.clone())).collect());
    let results = client.elect_leaders(code, refs.as_deref()).await?;
    let mut succeeded = Vec::new();
    let mut noop = Vec::new();
    let mut failed = Vec::new();
    for r in &results {
        let tp = format!("{}-{}", r.topic, r.partition);
        match r.error_code {
            0 => succeeded.push(tp),
            // ELECTION_NOT_NEEDED
            84 => noop.push(tp),
            c => {
                let name = ResponseError::try_from_code(c)
                    .map(kafka_error_name)
                    .unwrap_or_else(|| format!("error code {c}"));
                let detail = r
                    .error_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default();
                failed.push(format!("{tp}: {name}{detail}"));
            }
        }
    }
    if !succeeded.is_empty() {
        println!(
            "Successfully completed leader election ({label}) for partitions {}",
            succeeded.join(", ")
        );
    }
    if !noop.is_empty() {
        println!(
            "Valid replica already elected for partitions {}",
            noop.join(", ")
        );
    }
    if !failed.is_empty() {
        for f in &failed {
            println!("Error completing leader election ({label}) for partition: {f}");
        }
        anyhow::bail!("{} replica(s) could not be elected", failed.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn election_targets() {
        let parse = |v: &[&str]| {
            let specs = super::super::with_connection(ELECTION_SPECS);
            let p = opts::parse("kafka-leader-election.sh", &specs, &a(v)).expect("parses");
            election_partitions(&p)
        };
        assert_eq!(
            parse(&["--topic", "t", "--partition", "1"]).expect("ok"),
            Some(vec![("t".to_owned(), vec![1])])
        );
        assert_eq!(parse(&["--all-topic-partitions"]).expect("ok"), None);
        assert!(parse(&["--topic", "t"]).is_err());
        assert!(parse(&["--all-topic-partitions", "--topic", "t"]).is_err());
        assert!(parse(&[]).is_err());
        assert_eq!(
            parse_partitions_json(r#"{"partitions":[{"topic":"a","partition":0},{"topic":"a","partition":2},{"topic":"b","partition":1}]}"#)
                .expect("ok"),
            vec![("a".to_owned(), vec![0, 2]), ("b".to_owned(), vec![1])]
        );
    }
}
