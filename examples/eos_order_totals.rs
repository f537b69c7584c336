//! An exactly-once consume-transform-produce service on Nagare with librdkafka (rdkafka).
//!
//! It reads orders from `--input` (key: customer, value: an amount in cents), and for every
//! batch of orders writes, per customer, one record to `--output` with the batch's total and
//! the input offsets it covers — in the same Kafka transaction that commits the consumer
//! group's input offsets (`send_offsets_to_transaction`, KIP-98/KIP-447). Killed at any
//! moment and restarted, its output holds every order exactly once: an open transaction of
//! the dead process is aborted when the new one calls `init_transactions` with the same
//! `transactional.id`, and the group's committed offsets say where to resume.
//!
//! ```sh
//! cargo run -p nagare --example eos_order_totals -- --bootstrap 127.0.0.1:9092 \
//!     --input orders --output order-totals --group totals --transactional-id totals-1
//! ```
//!
//! Output values are JSON: `{"customer":"c1","total":1234,"orders":3,"partition":0,
//! "first_offset":10,"last_offset":17}` (the input partition and offset range the batch
//! covered for that customer; offsets of other customers' orders may fall inside the range).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::util::Timeout;

/// Command-line options (a tiny parser keeps the example dependency-free beyond rdkafka).
struct Options {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
    transactional_id: String,
    /// Orders per transaction at most.
    batch: usize,
    /// A pause between producing a batch and committing it (widens the window in which a
    /// test kills the process mid-transaction).
    pause_before_commit: Duration,
    /// Exit after this long without new orders once partitions are assigned (0: run forever).
    exit_when_idle: Duration,
    /// The consumer's `session.timeout.ms` (how soon a killed instance's partitions move).
    session_timeout_ms: u32,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        bootstrap: "127.0.0.1:9092".into(),
        input: "orders".into(),
        output: "order-totals".into(),
        group: "order-totals".into(),
        transactional_id: "order-totals-1".into(),
        batch: 100,
        pause_before_commit: Duration::ZERO,
        exit_when_idle: Duration::ZERO,
        session_timeout_ms: 45_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bootstrap" => o.bootstrap = value()?,
            "--input" => o.input = value()?,
            "--output" => o.output = value()?,
            "--group" => o.group = value()?,
            "--transactional-id" => o.transactional_id = value()?,
            "--batch" => o.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--pause-before-commit-ms" => {
                o.pause_before_commit = Duration::from_millis(
                    value()?
                        .parse()
                        .map_err(|e| format!("--pause-before-commit-ms: {e}"))?,
                )
            }
            "--exit-when-idle-ms" => {
                o.exit_when_idle = Duration::from_millis(
                    value()?
                        .parse()
                        .map_err(|e| format!("--exit-when-idle-ms: {e}"))?,
                )
            }
            "--session-timeout-ms" => {
                o.session_timeout_ms = value()?
                    .parse()
                    .map_err(|e| format!("--session-timeout-ms: {e}"))?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(o)
}

/// One customer's part of a batch.
#[derive(Default)]
struct Total {
    total: i64,
    orders: u64,
    first_offset: i64,
    last_offset: i64,
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&o) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(o: &Options) -> Result<(), Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("group.id", &o.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // Read only committed input: upstream transactions that aborted never count.
        .set("isolation.level", "read_committed")
        .set("session.timeout.ms", o.session_timeout_ms.to_string())
        .create()?;
    consumer.subscribe(&[&o.input])?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("transactional.id", &o.transactional_id)
        .set("linger.ms", "5")
        .create()?;
    // Fences any earlier incarnation with this transactional id and aborts its open
    // transaction.
    producer.init_transactions(Timeout::After(Duration::from_secs(60)))?;
    println!("ready");
    let mut idle_since = Instant::now();
    let mut transactions = 0u64;
    loop {
        // Gather one batch of orders.
        let mut batch = Vec::new();
        let gather_until = Instant::now() + Duration::from_millis(200);
        while batch.len() < o.batch && Instant::now() < gather_until {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => batch.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    m.payload()
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.trim().parse::<i64>().ok()),
                )),
                Some(Err(e)) => eprintln!("consume error: {e}"),
                None => {}
            }
        }
        if batch.is_empty() {
            // Idle only counts once partitions are assigned: a new instance first waits for
            // the group to rebalance (a killed predecessor's session to expire).
            if consumer.assignment().map_or(true, |a| a.count() == 0) {
                idle_since = Instant::now();
                continue;
            }
            if !o.exit_when_idle.is_zero() && idle_since.elapsed() >= o.exit_when_idle {
                println!("idle; {transactions} transactions committed");
                return Ok(());
            }
            continue;
        }
        idle_since = Instant::now();
        // Per input partition and customer: the batch's total.
        let mut totals: BTreeMap<(i32, String), Total> = BTreeMap::new();
        for (partition, offset, customer, amount) in &batch {
            let customer = customer.clone().unwrap_or_else(|| "unknown".into());
            let t = totals.entry((*partition, customer)).or_insert(Total {
                first_offset: *offset,
                ..Total::default()
            });
            // An order whose amount does not parse counts as an order of 0 cents.
            t.total += amount.unwrap_or(0);
            t.orders += 1;
            t.last_offset = *offset;
        }
        producer.begin_transaction()?;
        for ((partition, customer), t) in &totals {
            let value = format!(
                "{{\"customer\":\"{customer}\",\"total\":{},\"orders\":{},\"partition\":{partition},\"first_offset\":{},\"last_offset\":{}}}",
                t.total, t.orders, t.first_offset, t.last_offset
            );
            let mut record = BaseRecord::to(&o.output).key(customer).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, r)) => {
                        if matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ) {
                            producer.poll(Duration::from_millis(10));
                            record = r;
                        } else {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        println!("produced batch of {} orders", batch.len());
        if !o.pause_before_commit.is_zero() {
            std::thread::sleep(o.pause_before_commit);
        }
        let group = consumer
            .group_metadata()
            .ok_or("the consumer has no group metadata")?;
        producer.send_offsets_to_transaction(
            &consumer.position()?,
            &group,
            Timeout::After(Duration::from_secs(30)),
        )?;
        producer.commit_transaction(Timeout::After(Duration::from_secs(30)))?;
        transactions += 1;
        println!("committed transaction {transactions}");
    }
}
