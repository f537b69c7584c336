//! `nagare consume`: print records of a topic, one line each (like `kafka-console-consumer`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nagare_client::{Client, ConsumedRecord, FetchOptions, FetchPosition, OffsetSpec};

/// Consecutive fetch rounds with retriable errors tolerated before giving up.
const MAX_RETRIABLE_ROUNDS: u32 = 20;

/// Arguments of `nagare consume`.
#[derive(clap::Args)]
pub struct Args {
    /// Topic to consume.
    pub topic: String,
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    /// Read only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Start at the earliest offset (default: only records produced from now on).
    #[arg(long, conflicts_with_all = ["offset", "from_timestamp"])]
    pub from_beginning: bool,
    /// Start at this offset: a number, `earliest` or `latest` (in every partition read).
    #[arg(long, value_parser = parse_start, conflicts_with = "from_timestamp")]
    pub offset: Option<Start>,
    /// Start at the first record with a timestamp at or after this (milliseconds since epoch).
    #[arg(long, value_name = "MS")]
    pub from_timestamp: Option<i64>,
    /// Exit after printing this many records.
    #[arg(long, short = 'n', alias = "max-messages")]
    pub count: Option<u64>,
    /// Output format: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp,
    /// %h headers (k:v,...), %% a percent sign; \n, \t and \\ are escapes.
    #[arg(long, short = 'f', default_value = "%v")]
    pub format: String,
    /// Exit once no record has arrived for this long (default: follow until Ctrl-C).
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
}

/// Where to start reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The log start.
    Earliest,
    /// The log end.
    Latest,
    /// An absolute offset.
    At(i64),
}

fn parse_start(s: &str) -> Result<Start, String> {
    match s {
        "earliest" => Ok(Start::Earliest),
        "latest" => Ok(Start::Latest),
        n => match n.parse::<i64>() {
            Ok(o) if o >= 0 => Ok(Start::At(o)),
            _ => Err(format!(
                "expected a non-negative offset, 'earliest' or 'latest', got '{s}'"
            )),
        },
    }
}

/// One piece of a parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

fn parse_format(format: &str) -> anyhow::Result<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut literal = Vec::new();
    let mut chars = format.chars();
    let flush = |literal: &mut Vec<u8>, tokens: &mut Vec<Token>| {
        if !literal.is_empty() {
            tokens.push(Token::Literal(std::mem::take(literal)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '%' => {
                let token = match chars.next() {
                    Some('t') => Token::Topic,
                    Some('p') => Token::Partition,
                    Some('o') => Token::Offset,
                    Some('k') => Token::Key,
                    Some('v') => Token::Value,
                    Some('T') => Token::Timestamp,
                    Some('h') => Token::Headers,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some(other) => bail!("unknown format directive %{other} in '{format}'"),
                    None => bail!("format '{format}' ends with a lone %"),
                };
                flush(&mut literal, &mut tokens);
                tokens.push(token);
            }
            '\\' => match chars.next() {
                Some('n') => literal.push(b'\n'),
                Some('t') => literal.push(b'\t'),
                Some('r') => literal.push(b'\r'),
                Some('\\') => literal.push(b'\\'),
                Some(other) => {
                    literal.push(b'\\');
                    let mut buf = [0u8; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
                }
                None => literal.push(b'\\'),
            },
            other => {
                let mut buf = [0u8; 4];
                literal.extend_from_slice(other.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    flush(&mut literal, &mut tokens);
    Ok(tokens)
}

/// Appends one record, formatted, plus a newline. Keys and values are written as raw bytes;
/// absent ones print as `null`, like Kafka's console consumer.
fn format_record(out: &mut Vec<u8>, tokens: &[Token], topic: &str, r: &ConsumedRecord) {
    for t in tokens {
        match t {
            Token::Literal(l) => out.extend_from_slice(l),
            Token::Topic => out.extend_from_slice(topic.as_bytes()),
            Token::Partition => out.extend_from_slice(r.partition.to_string().as_bytes()),
            Token::Offset => out.extend_from_slice(r.offset.to_string().as_bytes()),
            Token::Timestamp => out.extend_from_slice(r.timestamp.to_string().as_bytes()),
            Token::Key => out.extend_from_slice(r.key.as_deref().unwrap_or(b"null")),
            Token::Value => out.extend_from_slice(r.value.as_deref().unwrap_or(b"null")),
            Token::Headers => {
                for (i, (k, v)) in r.headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(k.as_bytes());
                    out.push(b':');
                    out.extend_from_slice(v.as_deref().unwrap_or(b"null"));
                }
            }
        }
    }
    out.push(b'\n');
}

/// Appends one record's output to the buffer, given the topic.
pub(crate) type RecordFormatter<'a> = dyn FnMut(&mut Vec<u8>, &str, &ConsumedRecord) + Send + 'a;

/// Resolves the starting offset of one partition.
async fn start_offset(
    client: &mut Client,
    topic: &str,
    partition: i32,
    args: &Args,
) -> anyhow::Result<i64> {
    let spec = if let Some(ts) = args.from_timestamp {
        OffsetSpec::Timestamp(ts)
    } else if args.from_beginning {
        OffsetSpec::Earliest
    } else {
        match args.offset {
            Some(Start::At(o)) => return Ok(o),
            Some(Start::Earliest) => OffsetSpec::Earliest,
            Some(Start::Latest) | None => OffsetSpec::Latest,
        }
    };
    let offset = client
        .list_offsets(topic, partition, spec)
        .await
        .with_context(|| format!("cannot find the start offset of partition {partition}"))?;
    if offset < 0 {
        // No record at or after the timestamp: start at the end.
        return Ok(client
            .list_offsets(topic, partition, OffsetSpec::Latest)
            .await?);
    }
    Ok(offset)
}

/// Runs `nagare consume`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let tokens = parse_format(&args.format)?;
    run_with(args, &mut |out, topic, r| {
        format_record(out, &tokens, topic, r)
    })
    .await
}

/// Runs `nagare consume` with `format` appending each record's output (and its line end):
/// shared with `kafka-console-consumer.sh`, whose formatter differs.
pub(crate) async fn run_with(args: Args, format: &mut RecordFormatter<'_>) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    let meta = client.topic_metadata(&args.topic).await?;
    let partitions: Vec<i32> = match args.partition {
        Some(p) => {
            if meta.partition(p).is_none() {
                bail!(
                    "topic {} has no partition {p} (it has {} partitions)",
                    args.topic,
                    meta.partitions.len()
                );
            }
            vec![p]
        }
        None => meta.partitions.iter().map(|p| p.partition).collect(),
    };
    let mut positions = Vec::with_capacity(partitions.len());
    for p in partitions {
        let offset = start_offset(&mut client, &args.topic, p, &args).await?;
        positions.push(FetchPosition {
            topic: args.topic.clone(),
            partition: p,
            offset,
        });
    }

    let mut printed: u64 = 0;
    let outcome = tokio::select! {
        r = consume_loop(&mut client, &args, format, &mut positions, &mut printed) => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    };
    eprintln!("Processed a total of {printed} messages");
    outcome
}

async fn consume_loop(
    client: &mut Client,
    args: &Args,
    format: &mut RecordFormatter<'_>,
    positions: &mut [FetchPosition],
    printed: &mut u64,
) -> anyhow::Result<()> {
    if args.count == Some(0) || positions.is_empty() {
        return Ok(());
    }
    let mut stdout = std::io::stdout();
    let mut buf = Vec::with_capacity(64 * 1024);
    let idle_limit = args.timeout_ms.map(Duration::from_millis);
    let mut last_activity = Instant::now();
    let mut failed_rounds = 0u32;
    loop {
        let mut opts = FetchOptions::default();
        if let Some(limit) = idle_limit {
            let left = limit.saturating_sub(last_activity.elapsed());
            opts.max_wait_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).min(500);
        }
        let mut got_any = false;
        let mut retriable = None;
        let results = match client.fetch_many(positions, &opts).await {
            Ok(results) => results,
            // E.g. the broker restarts: try again below, a bounded number of times.
            Err(e) if e.is_retriable() => {
                retriable = Some(e);
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        for (tp, result) in results {
            let Some(pos) = positions
                .iter_mut()
                .find(|p| p.partition == tp.partition && p.topic == tp.topic)
            else {
                continue;
            };
            match result {
                Ok(fetched) => {
                    for r in &fetched.records {
                        format(&mut buf, &pos.topic, r);
                        *printed += 1;
                        got_any = true;
                        if args.count.is_some_and(|c| *printed >= c) {
                            break;
                        }
                    }
                    pos.offset = fetched.next_offset;
                }
                Err(e) if e.is_retriable() => retriable = Some(e),
                Err(e) => return Err(e.into()),
            }
            if args.count.is_some_and(|c| *printed >= c) {
                break;
            }
        }
        if !buf.is_empty() {
            let written = stdout.write_all(&buf).and_then(|()| stdout.flush());
            buf.clear();
            if let Err(e) = written {
                // `nagare consume | head` closes the pipe: not an error.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(e).context("cannot write to stdout");
            }
        }
        if args.count.is_some_and(|c| *printed >= c) {
            return Ok(());
        }
        match retriable {
            Some(e) => {
                failed_rounds += 1;
                if failed_rounds >= MAX_RETRIABLE_ROUNDS {
                    return Err(e).context("giving up after repeated fetch errors");
                }
                tokio::time::sleep(Duration::from_millis(
                    100 * u64::from(failed_rounds.min(10)),
                ))
                .await;
            }
            None => failed_rounds = 0,
        }
        if got_any {
            last_activity = Instant::now();
        } else if idle_limit.is_some_and(|limit| last_activity.elapsed() >= limit) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use nagare_client::TimestampType;

    fn record() -> ConsumedRecord {
        ConsumedRecord {
            partition: 2,
            offset: 41,
            timestamp: 1_700_000_000_000,
            timestamp_type: TimestampType::Creation,
            key: None,
            value: Some(Bytes::from_static(b"hello")),
            headers: vec![
                ("a".into(), Some(Bytes::from_static(b"1"))),
                ("b".into(), None),
            ],
        }
    }

    fn render(format: &str) -> String {
        let tokens = parse_format(format).expect("valid format");
        let mut out = Vec::new();
        format_record(&mut out, &tokens, "orders", &record());
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn formats() {
        assert_eq!(render("%v"), "hello\n");
        assert_eq!(
            render("%t/%p@%o %T %k=%v [%h] 100%%"),
            "orders/2@41 1700000000000 null=hello [a:1,b:null] 100%\n"
        );
        assert_eq!(render(r"%k\t%v"), "null\thello\n");
        assert!(parse_format("%x").is_err());
        assert!(parse_format("abc%").is_err());
    }

    #[test]
    fn start_positions() {
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start("latest"), Ok(Start::Latest));
        assert_eq!(parse_start("17"), Ok(Start::At(17)));
        assert!(parse_start("-3").is_err());
        assert!(parse_start("soon").is_err());
    }
}
