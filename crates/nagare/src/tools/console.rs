//! `kafka-console-producer.sh` and `kafka-console-consumer.sh`: Kafka 4.x's options mapped
//! onto `nagare produce` / `nagare consume` (`crate::cli::produce`, `crate::cli::consume`),
//! with the console consumer's `DefaultMessageFormatter` output (`--property print.key=true`,
//! `print.timestamp`, `print.partition`, `print.offset`, `print.headers`, `key.separator`, …).

use std::collections::BTreeMap;

use nagare_client::{Acks, ConsumedRecord, TimestampType};

use super::opts::{self, usage, Kind, Parsed, Spec};
use crate::cli::consume::{self, Start};
use crate::cli::produce::{self, parse_acks, parse_compression};

const PRODUCER_SPECS: &[Spec] = &[
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("producer.config", Kind::Value),
    ("command-config", Kind::Value),
    ("producer-property", Kind::Value),
    ("property", Kind::Value),
    ("reader-property", Kind::Value),
    ("reader-config", Kind::Unsupported(true)),
    ("line-reader", Kind::Unsupported(true)),
    ("compression-codec", Kind::OptionalValue),
    ("batch-size", Kind::Value),
    ("timeout", Kind::Value),
    ("request-required-acks", Kind::Value),
    ("request-timeout-ms", Kind::Value),
    ("message-send-max-retries", Kind::Value),
    ("retry-backoff-ms", Kind::Value),
    ("max-block-ms", Kind::Value),
    ("max-memory-bytes", Kind::Value),
    ("max-partition-memory-bytes", Kind::Value),
    ("metadata-expiry-ms", Kind::Value),
    ("socket-buffer-size", Kind::Value),
    ("sync", Kind::Flag),
    ("help", Kind::Unsupported(false)),
    ("version", Kind::Unsupported(false)),
];

/// `k=v` options (`--property`, `--producer-property`, …) as a map; later ones win.
fn properties(p: &Parsed, names: &[&str]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in names {
        for kv in p.values(name) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| usage(format!("Invalid --{name} '{kv}': expected key=value")))?;
            out.insert(k.trim().to_owned(), v.to_owned());
        }
    }
    Ok(out)
}

fn is_true(props: &BTreeMap<String, String>, key: &str) -> bool {
    props
        .get(key)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// The `nagare produce` arguments a console-producer command line means.
fn producer_args(p: &Parsed) -> anyhow::Result<produce::Args> {
    super::no_positional(p)?;
    let topic = p.required("topic")?.to_owned();
    let reader = properties(p, &["property", "reader-property"])?;
    // Reader properties Nagare does not implement: headers parsed from the line, a null
    // marker, skipping lines that fail. Their defaults (false / unset) are fine.
    let unsupported = ["parse.headers", "ignore.error"]
        .into_iter()
        .filter(|k| is_true(&reader, k))
        .chain(reader.contains_key("null.marker").then_some("null.marker"))
        .next();
    if let Some(key) = unsupported {
        return Err(usage(format!(
            "Property {key} of kafka-console-producer.sh is not supported by Nagare"
        )));
    }
    let key_separator = if is_true(&reader, "parse.key") {
        Some(
            reader
                .get("key.separator")
                .cloned()
                .unwrap_or_else(|| "\t".to_owned()),
        )
    } else {
        None
    };
    let producer_props = properties(p, &["producer-property"])?;
    let acks_text = producer_props
        .get("acks")
        .cloned()
        .or_else(|| p.value("request-required-acks").map(str::to_owned))
        .unwrap_or_else(|| "-1".to_owned());
    let acks: Acks = parse_acks(acks_text.trim()).map_err(|e| usage(format!("acks: {e}")))?;
    // `--compression-codec` alone means gzip, as in Kafka.
    let codec = match (
        producer_props.get("compression.type"),
        p.value("compression-codec"),
    ) {
        (Some(c), _) => c.clone(),
        (None, Some("")) => "gzip".to_owned(),
        (None, Some(c)) => c.to_owned(),
        (None, None) => "none".to_owned(),
    };
    let compression = parse_compression(&codec).map_err(|e| usage(format!("compression: {e}")))?;
    let linger_ms = match producer_props.get("linger.ms") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| usage(format!("linger.ms: invalid value '{v}'")))?,
        // `--timeout`: 1000 ms in Kafka; a console producer piped a file should not wait that
        // long per batch, but Kafka's own default is kept so timing-sensitive scripts match.
        None => p.number::<u64>("timeout")?.unwrap_or(1000),
    };
    let batch_bytes = match producer_props.get("batch.size") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| usage(format!("batch.size: invalid value '{v}'")))?,
        None => p.number::<u64>("batch-size")?.map_or(16_384, |b| b.max(1)),
    };
    let connection = super::bootstrap(
        p,
        if p.has("producer.config") {
            "producer.config"
        } else {
            "command-config"
        },
        p.values("producer-property").to_vec(),
    )?;
    Ok(produce::Args {
        topic,
        broker: connection,
        partition: None,
        key_separator,
        acks,
        compression,
        headers: Vec::new(),
        // --sync: one record per request.
        batch_size: if p.has("sync") { 1 } else { 1000 },
        batch_bytes: batch_bytes.max(1),
        linger_ms: if p.has("sync") { 0 } else { linger_ms },
        quiet: true,
    })
}

/// Runs `kafka-console-producer.sh`: one record per line of stdin.
pub async fn run_producer(args: &[String]) -> anyhow::Result<()> {
    let p = opts::parse("kafka-console-producer.sh", PRODUCER_SPECS, args)?;
    p.required("bootstrap-server")?;
    produce::run(producer_args(&p)?).await
}

const CONSUMER_SPECS: &[Spec] = &[
    ("bootstrap-server", Kind::Value),
    ("topic", Kind::Value),
    ("include", Kind::Unsupported(true)),
    ("partition", Kind::Value),
    ("offset", Kind::Value),
    ("from-beginning", Kind::Flag),
    ("max-messages", Kind::Value),
    ("timeout-ms", Kind::Value),
    ("group", Kind::Value),
    ("property", Kind::Value),
    ("formatter-property", Kind::Value),
    ("formatter", Kind::Value),
    ("formatter-config", Kind::Unsupported(true)),
    ("consumer-property", Kind::Value),
    ("consumer.config", Kind::Value),
    ("command-config", Kind::Value),
    ("isolation-level", Kind::Value),
    ("skip-message-on-error", Kind::Flag),
    ("key-deserializer", Kind::Value),
    ("value-deserializer", Kind::Value),
    ("enable-systest-events", Kind::Unsupported(false)),
    ("help", Kind::Unsupported(false)),
    ("version", Kind::Unsupported(false)),
];

/// Kafka's `DefaultMessageFormatter` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Formatter {
    timestamp: bool,
    key: bool,
    value: bool,
    partition: bool,
    offset: bool,
    headers: bool,
    key_separator: Vec<u8>,
    line_separator: Vec<u8>,
    headers_separator: Vec<u8>,
    null_literal: Vec<u8>,
}

impl Formatter {
    fn from_properties(props: &BTreeMap<String, String>) -> Self {
        let flag = |k: &str, default: bool| {
            props
                .get(k)
                .map_or(default, |v| v.trim().eq_ignore_ascii_case("true"))
        };
        // Taken as given, escapes and all, as Kafka's formatter does.
        let text = |k: &str, default: &str| {
            props
                .get(k)
                .map_or(default, String::as_str)
                .as_bytes()
                .to_vec()
        };
        Formatter {
            timestamp: flag("print.timestamp", false),
            key: flag("print.key", false),
            value: flag("print.value", true),
            partition: flag("print.partition", false),
            offset: flag("print.offset", false),
            headers: flag("print.headers", false),
            key_separator: text("key.separator", "\t"),
            line_separator: text("line.separator", "\n"),
            headers_separator: text("headers.separator", ","),
            null_literal: text("null.literal", "null"),
        }
    }

    /// One record as Kafka prints it: `CreateTime:…`, `Partition:…`, `Offset:…`, headers,
    /// key and value, each followed by the key separator if more follow.
    fn write(&self, out: &mut Vec<u8>, r: &ConsumedRecord) {
        let fields = [
            self.timestamp,
            self.partition,
            self.offset,
            self.headers,
            self.key,
            self.value,
        ];
        let more_after = |i: usize| fields[i + 1..].iter().any(|f| *f);
        let sep = |out: &mut Vec<u8>, i: usize| {
            if more_after(i) {
                out.extend_from_slice(&self.key_separator);
            }
        };
        if self.timestamp {
            let kind = match r.timestamp_type {
                TimestampType::LogAppend => "LogAppendTime",
                _ => "CreateTime",
            };
            if r.timestamp < 0 {
                out.extend_from_slice(b"NO_TIMESTAMP");
            } else {
                out.extend_from_slice(format!("{kind}:{}", r.timestamp).as_bytes());
            }
            sep(out, 0);
        }
        if self.partition {
            out.extend_from_slice(format!("Partition:{}", r.partition).as_bytes());
            sep(out, 1);
        }
        if self.offset {
            out.extend_from_slice(format!("Offset:{}", r.offset).as_bytes());
            sep(out, 2);
        }
        if self.headers {
            if r.headers.is_empty() {
                out.extend_from_slice(b"NO_HEADERS");
            }
            for (i, (k, v)) in r.headers.iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(&self.headers_separator);
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(v.as_deref().unwrap_or(&self.null_literal));
            }
            sep(out, 3);
        }
        if self.key {
            out.extend_from_slice(r.key.as_deref().unwrap_or(&self.null_literal));
            sep(out, 4);
        }
        if self.value {
            out.extend_from_slice(r.value.as_deref().unwrap_or(&self.null_literal));
        }
        out.extend_from_slice(&self.line_separator);
    }
}

/// The `nagare consume` arguments and the formatter a console-consumer command line means.
fn consumer_args(p: &Parsed) -> anyhow::Result<(consume::Args, Formatter)> {
    super::no_positional(p)?;
    let topic = p.required("topic")?.to_owned();
    if let Some(f) = p.value("formatter") {
        if !f.ends_with("DefaultMessageFormatter") {
            return Err(usage(format!(
                "--formatter {f}: Nagare's kafka-console-consumer.sh has only org.apache.kafka.tools.consumer.DefaultMessageFormatter"
            )));
        }
    }
    for opt in ["key-deserializer", "value-deserializer"] {
        if let Some(d) = p.value(opt) {
            if !(d.ends_with("StringDeserializer") || d.ends_with("ByteArrayDeserializer")) {
                return Err(usage(format!(
                    "--{opt} {d} is not supported by Nagare (records are printed as their bytes)"
                )));
            }
        }
    }
    let consumer_props = properties(p, &["consumer-property"])?;
    let isolation = consumer_props
        .get("isolation.level")
        .map(String::as_str)
        .or(p.value("isolation-level"))
        .unwrap_or("read_uncommitted");
    if isolation != "read_uncommitted" {
        return Err(usage(format!(
            "isolation level {isolation} is not supported by Nagare's kafka-console-consumer.sh"
        )));
    }
    let partition: Option<i32> = p.number("partition")?;
    let offset = match p.value("offset") {
        None => None,
        Some(o) => {
            if partition.is_none() {
                return Err(usage("The partition is required when offset is specified."));
            }
            if p.has("from-beginning") {
                return Err(usage(
                    "Options from-beginning and offset cannot be specified together.",
                ));
            }
            Some(match o.trim().to_ascii_lowercase().as_str() {
                "earliest" => Start::Earliest,
                "latest" => Start::Latest,
                n => Start::At(n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    usage(format!("The provided offset value '{o}' is incorrect. Valid values are 'earliest', 'latest', or a non-negative long."))
                })?),
            })
        }
    };
    let formatter =
        Formatter::from_properties(&properties(p, &["property", "formatter-property"])?);
    let connection = super::bootstrap(
        p,
        if p.has("consumer.config") {
            "consumer.config"
        } else {
            "command-config"
        },
        p.values("consumer-property").to_vec(),
    )?;
    let args = consume::Args {
        topic,
        broker: connection,
        partition,
        from_beginning: p.has("from-beginning"),
        offset,
        from_timestamp: None,
        count: p.number("max-messages")?,
        format: "%v".to_owned(),
        timeout_ms: p.number("timeout-ms")?,
    };
    Ok((args, formatter))
}

/// Runs `kafka-console-consumer.sh`: without a consumer group every partition (or
/// `--partition`) is read directly; with `--group` (or `group.id` in the consumer
/// properties) as a member of that group through librdkafka, committing offsets as Kafka's
/// console consumer does (auto-commit, and on exit).
pub async fn run_consumer(args: &[String]) -> anyhow::Result<()> {
    let p = opts::parse("kafka-console-consumer.sh", CONSUMER_SPECS, args)?;
    p.required("bootstrap-server")?;
    let (args, formatter) = consumer_args(&p)?;
    let consumer_props = properties(&p, &["consumer-property"])?;
    let group = p
        .value("group")
        .map(str::to_owned)
        .or_else(|| consumer_props.get("group.id").cloned());
    match group {
        Some(group) => {
            let client_props = args.broker.client_properties()?;
            tokio::task::spawn_blocking(move || {
                group_consume(&args, &group, &client_props, &formatter)
            })
            .await
            .map_err(|e| anyhow::anyhow!("the consumer thread failed: {e}"))?
        }
        None => consume::run_with(args, &mut |out, _topic, r| formatter.write(out, r)).await,
    }
}

/// librdkafka settings for Kafka client properties: the security ones librdkafka spells the
/// same, the JAAS login as `sasl.username`/`sasl.password`, and the consumer settings that
/// mean the same in both clients. Others are reported and left out.
fn librdkafka_properties(
    props: &BTreeMap<String, String>,
) -> anyhow::Result<Vec<(String, String)>> {
    const SAME: &[&str] = &[
        "security.protocol",
        "ssl.ca.location",
        "ssl.certificate.location",
        "ssl.key.location",
        "ssl.endpoint.identification.algorithm",
        "client.id",
        "session.timeout.ms",
        "heartbeat.interval.ms",
        "max.poll.interval.ms",
        "group.instance.id",
        "group.protocol",
        "isolation.level",
        "auto.commit.interval.ms",
        "enable.auto.commit",
        "fetch.min.bytes",
        "fetch.max.bytes",
        "group.id",
        "auto.offset.reset",
    ];
    let mut out = Vec::new();
    for (k, v) in props {
        if SAME.contains(&k.as_str()) {
            out.push((k.clone(), v.clone()));
        } else if k == "ssl.truststore.location" {
            out.push(("ssl.ca.location".to_owned(), v.clone()));
        } else if !k.starts_with("sasl.") {
            eprintln!("WARN: consumer property {k} is not passed on by Nagare's kafka-console-consumer.sh");
        }
    }
    if let Some(sasl) = crate::cli::sasl_from_properties(props)? {
        out.push(("sasl.mechanisms".to_owned(), sasl.mechanism));
        out.push(("sasl.username".to_owned(), sasl.username));
        out.push(("sasl.password".to_owned(), sasl.password));
    }
    Ok(out)
}

/// Consumes as a member of `group` (blocking; run on a blocking thread).
fn group_consume(
    args: &consume::Args,
    group: &str,
    props: &BTreeMap<String, String>,
    formatter: &Formatter,
) -> anyhow::Result<()> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use std::io::Write;
    use std::time::{Duration, Instant};

    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", &args.broker.bootstrap_server)
        .set("client.id", "console-consumer")
        .set(
            "auto.offset.reset",
            if args.from_beginning {
                "earliest"
            } else {
                "latest"
            },
        );
    for (k, v) in librdkafka_properties(props)? {
        config.set(k, v);
    }
    config.set("group.id", group);
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| anyhow::anyhow!("cannot create the consumer: {e}"))?;
    match args.partition {
        Some(partition) => {
            let mut tpl = rdkafka::TopicPartitionList::new();
            let offset = match args.offset {
                Some(Start::Earliest) => rdkafka::Offset::Beginning,
                Some(Start::Latest) => rdkafka::Offset::End,
                Some(Start::At(o)) => rdkafka::Offset::Offset(o),
                None if args.from_beginning => rdkafka::Offset::Beginning,
                None => rdkafka::Offset::Stored,
            };
            tpl.add_partition_offset(&args.topic, partition, offset)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            consumer.assign(&tpl).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        None => consumer
            .subscribe(&[args.topic.as_str()])
            .map_err(|e| anyhow::anyhow!("cannot subscribe to {}: {e}", args.topic))?,
    }
    let idle = args.timeout_ms.map(Duration::from_millis);
    let mut last = Instant::now();
    let mut printed: u64 = 0;
    let mut stdout = std::io::stdout();
    let mut buf = Vec::new();
    let outcome = loop {
        if args.count.is_some_and(|c| printed >= c) {
            break Ok(());
        }
        if idle.is_some_and(|i| last.elapsed() >= i) {
            break Ok(());
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Err(e)) => break Err(anyhow::anyhow!("consumer error: {e}")),
            Some(Ok(m)) => {
                last = Instant::now();
                let headers = m
                    .headers()
                    .map(|hs| {
                        hs.iter()
                            .map(|h| (h.key.to_owned(), h.value.map(bytes::Bytes::copy_from_slice)))
                            .collect()
                    })
                    .unwrap_or_default();
                let (timestamp_type, timestamp) = match m.timestamp() {
                    rdkafka::Timestamp::LogAppendTime(t) => (TimestampType::LogAppend, t),
                    rdkafka::Timestamp::CreateTime(t) => (TimestampType::Creation, t),
                    rdkafka::Timestamp::NotAvailable => (TimestampType::Creation, -1),
                };
                let record = ConsumedRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp,
                    timestamp_type,
                    key: m.key().map(bytes::Bytes::copy_from_slice),
                    value: m.payload().map(bytes::Bytes::copy_from_slice),
                    headers,
                };
                buf.clear();
                formatter.write(&mut buf, &record);
                printed += 1;
                if let Err(e) = stdout.write_all(&buf).and_then(|()| stdout.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        break Ok(());
                    }
                    break Err(e.into());
                }
            }
        }
    };
    // Commit what was printed, as Kafka's console consumer does when it closes.
    if let Err(e) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        // Nothing consumed yet is not a failure.
        tracing::debug!(error = %e, "final commit");
    }
    eprintln!("Processed a total of {printed} messages");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn parsed(specs: &[Spec], a: &[&str]) -> Parsed {
        let mut args: Vec<String> = vec!["--bootstrap-server".into(), "h:1".into()];
        args.extend(a.iter().map(|s| s.to_string()));
        opts::parse("t", specs, &args).expect("parses")
    }

    #[test]
    fn producer_options() {
        let a = producer_args(&parsed(
            PRODUCER_SPECS,
            &[
                "--topic",
                "t",
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=:",
                "--compression-codec",
                "--request-required-acks",
                "1",
            ],
        ))
        .expect("ok");
        assert_eq!(a.topic, "t");
        assert_eq!(a.key_separator.as_deref(), Some(":"));
        assert_eq!(a.compression, nagare_client::Compression::Gzip);
        assert_eq!(a.acks, Acks::Leader);
        let d = producer_args(&parsed(PRODUCER_SPECS, &["--topic", "t"])).expect("ok");
        assert_eq!(
            (d.key_separator, d.acks, d.compression),
            (None, Acks::All, nagare_client::Compression::None)
        );
        assert!(
            producer_args(&parsed(PRODUCER_SPECS, &[])).is_err(),
            "--topic is required"
        );
        let Err(e) = producer_args(&parsed(
            PRODUCER_SPECS,
            &["--topic", "t", "--property", "parse.headers=true"],
        )) else {
            panic!("parse.headers is not supported");
        };
        assert!(e.to_string().contains("parse.headers"), "{e}");
    }

    #[test]
    fn consumer_options() {
        let (a, f) = consumer_args(&parsed(
            CONSUMER_SPECS,
            &[
                "--topic",
                "t",
                "--from-beginning",
                "--max-messages",
                "3",
                "--property",
                "print.key=true",
            ],
        ))
        .expect("ok");
        assert!(a.from_beginning);
        assert_eq!(a.count, Some(3));
        assert!(f.key && f.value && !f.offset);
        assert!(
            consumer_args(&parsed(CONSUMER_SPECS, &["--topic", "t", "--offset", "5"])).is_err()
        );
        let (a, _) = consumer_args(&parsed(
            CONSUMER_SPECS,
            &["--topic", "t", "--partition", "0", "--offset", "earliest"],
        ))
        .expect("ok");
        assert_eq!((a.partition, a.offset), (Some(0), Some(Start::Earliest)));
        let e = opts::parse(
            "kafka-console-consumer.sh",
            CONSUMER_SPECS,
            &["--include".into(), "t.*".into()],
        )
        .expect_err("unsupported");
        assert!(e.to_string().contains("--include"), "{e}");
    }

    #[test]
    fn default_message_formatter() {
        let r = ConsumedRecord {
            partition: 1,
            offset: 7,
            timestamp: 1000,
            timestamp_type: TimestampType::Creation,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: vec![("h".into(), Some(Bytes::from_static(b"1")))],
        };
        let render = |props: &[(&str, &str)]| {
            let map = props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut out = Vec::new();
            Formatter::from_properties(&map).write(&mut out, &r);
            String::from_utf8(out).expect("utf8")
        };
        assert_eq!(render(&[]), "v\n");
        assert_eq!(render(&[("print.key", "true")]), "k\tv\n");
        assert_eq!(
            render(&[
                ("print.timestamp", "true"),
                ("print.partition", "true"),
                ("print.offset", "true"),
                ("print.headers", "true"),
                ("print.key", "true"),
                ("key.separator", ":")
            ]),
            "CreateTime:1000:Partition:1:Offset:7:h:1:k:v\n"
        );
        assert_eq!(
            render(&[("print.key", "true"), ("print.value", "false")]),
            "k\n"
        );
    }
}
