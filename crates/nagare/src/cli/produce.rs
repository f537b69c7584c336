//! `nagare produce`: one record per line of stdin (like `kafka-console-producer`).

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use nagare_client::partitioner::partition_for_key;
use nagare_client::{Acks, Compression, ProduceRecord};
use tokio::sync::mpsc;

/// The longest line accepted; longer ones are an error rather than unbounded memory.
const MAX_LINE_BYTES: u64 = 64 * 1024 * 1024;

/// Arguments of `nagare produce`.
#[derive(clap::Args)]
pub struct Args {
    /// Topic to produce to.
    pub topic: String,
    /// Where the brokers are.
    #[command(flatten)]
    pub broker: super::Bootstrap,
    /// Send every record to this partition (default: keyed records by murmur2 of the key, like
    /// Kafka's default partitioner; unkeyed ones round-robin).
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Split each line at the first occurrence of SEP into key and value.
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// Acknowledgements to wait for: all (-1), 1 (leader) or 0 (none).
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    pub acks: Acks,
    /// Compression codec of the record batches.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    pub compression: Compression,
    /// A header added to every record, as `key=value` (or just `key` for a null value). Repeatable.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// Most records per produce request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Most bytes (keys plus values) per produce request.
    #[arg(long, default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,
    /// Send what is buffered once stdin has been quiet this long.
    #[arg(long, default_value_t = 100)]
    pub linger_ms: u64,
    /// No summary on stderr (`kafka-console-producer.sh` prints none).
    #[arg(skip)]
    pub quiet: bool,
}

pub(crate) fn parse_acks(s: &str) -> Result<Acks, String> {
    match s {
        "all" | "-1" => Ok(Acks::All),
        "1" | "leader" => Ok(Acks::Leader),
        "0" | "none" => Ok(Acks::None),
        other => Err(format!("expected all, 1 or 0, got '{other}'")),
    }
}

pub(crate) fn parse_compression(s: &str) -> Result<Compression, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(format!(
            "expected none, gzip, snappy, lz4 or zstd, got '{other}'"
        )),
    }
}

fn parse_header(s: &str) -> (String, Option<Bytes>) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), Some(Bytes::copy_from_slice(v.as_bytes()))),
        None => (s.to_owned(), None),
    }
}

/// Turns one input line into a record; `Err` if a separator is expected and missing.
fn line_to_record(
    line: Vec<u8>,
    separator: Option<&[u8]>,
    headers: &[(String, Option<Bytes>)],
) -> Result<ProduceRecord, ()> {
    let (key, value) = match separator {
        None => (None, Bytes::from(line)),
        Some(sep) => {
            let at = line.windows(sep.len()).position(|w| w == sep).ok_or(())?;
            let all = Bytes::from(line);
            (Some(all.slice(..at)), all.slice(at + sep.len()..))
        }
    };
    Ok(ProduceRecord {
        key,
        value: Some(value),
        headers: headers.to_vec(),
        timestamp: None,
    })
}

/// Picks the partition: the fixed one, murmur2 of the key, or the next in round-robin order.
fn choose_partition(
    fixed: Option<i32>,
    key: Option<&[u8]>,
    partitions: i32,
    round_robin: &mut i32,
) -> i32 {
    if let Some(p) = fixed {
        return p;
    }
    match key {
        Some(k) => partition_for_key(k, partitions),
        None => {
            let p = *round_robin % partitions.max(1);
            *round_robin = (*round_robin + 1) % partitions.max(1);
            p
        }
    }
}

/// Records waiting to be sent to one partition.
#[derive(Default)]
struct Pending {
    records: Vec<ProduceRecord>,
    bytes: u64,
}

/// What was produced, for the summary.
#[derive(Default)]
struct Stats {
    records: u64,
    bytes: u64,
    requests: u64,
    /// Per partition: (records, first offset, last offset).
    partitions: BTreeMap<i32, (u64, i64, i64)>,
}

/// Reads stdin on a thread of its own (a blocking read cannot be cancelled, and a detached
/// thread does not hold up the process exit) and hands lines over through a bounded channel.
fn spawn_stdin_reader() -> mpsc::Receiver<std::io::Result<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(4096);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut reader = stdin.lock();
        loop {
            let mut line = Vec::new();
            match reader
                .by_ref()
                .take(MAX_LINE_BYTES + 1)
                .read_until(b'\n', &mut line)
            {
                Ok(0) => return,
                Ok(_) => {
                    if line.last() == Some(&b'\n') {
                        line.pop();
                        if line.last() == Some(&b'\r') {
                            line.pop();
                        }
                    } else if line.len() as u64 > MAX_LINE_BYTES {
                        let _ = tx.blocking_send(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("a line is longer than {MAX_LINE_BYTES} bytes"),
                        )));
                        return;
                    }
                    if tx.blocking_send(Ok(line)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    rx
}

/// Runs `nagare produce`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut client = args.broker.connect().await?;
    let meta = client.topic_metadata(&args.topic).await?;
    let partitions = i32::try_from(meta.partitions.len()).unwrap_or(i32::MAX);
    if partitions == 0 {
        bail!("topic {} has no partitions yet", args.topic);
    }
    if let Some(p) = args.partition {
        if p < 0 || p >= partitions {
            bail!(
                "topic {} has no partition {p} (it has {partitions} partitions)",
                args.topic
            );
        }
    }
    let headers: Vec<(String, Option<Bytes>)> =
        args.headers.iter().map(|h| parse_header(h)).collect();
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    if separator.is_some_and(<[u8]>::is_empty) {
        bail!("--key-separator must not be empty");
    }
    let linger = Duration::from_millis(args.linger_ms);
    let batch_size = args.batch_size as usize;

    let started = Instant::now();
    let mut lines = spawn_stdin_reader();
    let mut pending: BTreeMap<i32, Pending> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut round_robin = 0;
    let mut line_number: u64 = 0;

    // Ctrl-C ends the input like EOF does: what was read is still sent.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let read = async {
            if pending.is_empty() {
                Some(lines.recv().await)
            } else {
                tokio::time::timeout(linger, lines.recv()).await.ok()
            }
        };
        let next = tokio::select! {
            next = read => next,
            _ = &mut ctrl_c => break,
        };
        match next {
            // Quiet for `linger`: send what is buffered.
            None => {
                let all: Vec<i32> = pending.keys().copied().collect();
                for p in all {
                    flush(&mut client, &args, &mut pending, p, &mut stats).await?;
                }
            }
            // End of input.
            Some(None) => break,
            Some(Some(Err(e))) => {
                return Err(e).context(format!("cannot read line {} of stdin", line_number + 1))
            }
            Some(Some(Ok(line))) => {
                line_number += 1;
                let Ok(record) = line_to_record(line, separator, &headers) else {
                    bail!(
                        "line {line_number} has no key separator '{}'",
                        args.key_separator.as_deref().unwrap_or_default()
                    );
                };
                let partition = choose_partition(
                    args.partition,
                    record.key.as_deref(),
                    partitions,
                    &mut round_robin,
                );
                let size = record.key.as_ref().map_or(0, Bytes::len)
                    + record.value.as_ref().map_or(0, Bytes::len);
                let entry = pending.entry(partition).or_default();
                entry.records.push(record);
                entry.bytes += size as u64;
                if entry.records.len() >= batch_size || entry.bytes >= args.batch_bytes {
                    flush(&mut client, &args, &mut pending, partition, &mut stats).await?;
                }
            }
        }
    }
    let all: Vec<i32> = pending.keys().copied().collect();
    for p in all {
        flush(&mut client, &args, &mut pending, p, &mut stats).await?;
    }
    if !args.quiet {
        print_summary(&args, &stats, started.elapsed());
    }
    Ok(())
}

/// Sends the records buffered for `partition` as one batch.
async fn flush(
    client: &mut nagare_client::Client,
    args: &Args,
    pending: &mut BTreeMap<i32, Pending>,
    partition: i32,
    stats: &mut Stats,
) -> anyhow::Result<()> {
    let Some(batch) = pending.remove(&partition) else {
        return Ok(());
    };
    if batch.records.is_empty() {
        return Ok(());
    }
    let count = batch.records.len() as u64;
    let base = client
        .produce(
            &args.topic,
            partition,
            batch.records,
            args.acks,
            args.compression,
        )
        .await
        .with_context(|| {
            format!(
                "produce failed after {} records had been sent successfully",
                stats.records
            )
        })?;
    stats.records += count;
    stats.bytes += batch.bytes;
    stats.requests += 1;
    let last = if base >= 0 {
        base + count as i64 - 1
    } else {
        -1
    };
    let entry = stats.partitions.entry(partition).or_insert((0, base, last));
    entry.0 += count;
    entry.2 = last;
    Ok(())
}

fn print_summary(args: &Args, stats: &Stats, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "Produced {} records ({} bytes) to topic {} in {} requests, {:.2} s ({:.0} records/s)",
        stats.records,
        stats.bytes,
        args.topic,
        stats.requests,
        secs,
        if secs > 0.0 {
            stats.records as f64 / secs
        } else {
            0.0
        }
    );
    for (p, (count, first, last)) in &stats.partitions {
        if *first >= 0 {
            eprintln!("  partition {p}: {count} records, offsets {first}..={last}");
        } else {
            eprintln!("  partition {p}: {count} records (acks=0: offsets unknown)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        assert_eq!(parse_acks("all"), Ok(Acks::All));
        assert_eq!(parse_acks("-1"), Ok(Acks::All));
        assert_eq!(parse_acks("1"), Ok(Acks::Leader));
        assert_eq!(parse_acks("0"), Ok(Acks::None));
        assert!(parse_acks("2").is_err());
        assert_eq!(parse_compression("zstd"), Ok(Compression::Zstd));
        assert_eq!(parse_compression("LZ4"), Ok(Compression::Lz4));
        assert!(parse_compression("brotli").is_err());
        assert_eq!(
            parse_header("a=b=c"),
            ("a".into(), Some(Bytes::from_static(b"b=c")))
        );
        assert_eq!(parse_header("flag"), ("flag".into(), None));
    }

    #[test]
    fn splits_keys() {
        let r = line_to_record(b"k1\tv\t1".to_vec(), Some(b"\t"), &[]).expect("has separator");
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v\t1"[..]));
        let r = line_to_record(b"k::v".to_vec(), Some(b"::"), &[]).expect("has separator");
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.value.as_deref(), Some(&b"v"[..]));
        assert!(line_to_record(b"no-sep".to_vec(), Some(b":"), &[]).is_err());
        let r = line_to_record(b"plain".to_vec(), None, &[("h".into(), None)]).expect("ok");
        assert_eq!(r.key, None);
        assert_eq!(r.headers.len(), 1);
    }

    #[test]
    fn partitions_like_kafka() {
        let mut rr = 0;
        assert_eq!(choose_partition(Some(2), Some(b"x"), 3, &mut rr), 2);
        // murmur2("21") & 0x7fffffff = 1173551340; % 3 = 0.
        assert_eq!(choose_partition(None, Some(b"21"), 3, &mut rr), 0);
        let unkeyed: Vec<i32> = (0..5)
            .map(|_| choose_partition(None, None, 3, &mut rr))
            .collect();
        assert_eq!(unkeyed, vec![0, 1, 2, 0, 1]);
    }
}
