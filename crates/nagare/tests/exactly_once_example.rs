//! The exactly-once example (`examples/eos_order_totals.rs`) against a real node: its
//! process is SIGKILLed mid-transaction several times and restarted, and its committed
//! output still holds every order exactly once (per-customer totals and order counts equal
//! the input's), while the aborted attempts are visible to read_uncommitted only.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::TestServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const ORDERS: usize = 3000;
const CUSTOMERS: usize = 20;

/// The example's binary, next to the `nagare` binary Cargo built for this test run.
///
/// `cargo test --workspace` (CI) builds every example along with the tests, so the binary is
/// there and fresh; a nested `cargo build -p nagare --example` would resolve features for this
/// one package instead of the whole workspace and rebuild half of it (about a minute of CI).
/// Run alone (`cargo test -p nagare --test exactly_once_example`), Cargo does not build
/// examples, so the example is built here when it is missing or older than its source.
fn example_bin() -> PathBuf {
    let nagare = PathBuf::from(env!("CARGO_BIN_EXE_nagare"));
    let dir = nagare.parent().expect("the binary's directory");
    let bin = dir.join("examples").join("eos_order_totals");
    let source =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/eos_order_totals.rs");
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let fresh = match (modified(&bin), modified(&source)) {
        (Some(built), Some(src)) => built >= src,
        _ => false,
    };
    if !fresh {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "nagare", "--example", "eos_order_totals"])
            .status()
            .expect("run cargo build --example");
        assert!(status.success(), "building the example failed");
    }
    bin
}

/// A running example process with its stdout lines on a channel.
struct Service {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Service {
    fn start(bin: &PathBuf, bootstrap: &str, extra: &[&str]) -> Service {
        let mut child = Command::new(bin)
            .args([
                "--bootstrap",
                bootstrap,
                "--input",
                "orders",
                "--output",
                "order-totals",
                "--group",
                "totals",
                "--transactional-id",
                "totals-1",
                "--batch",
                "50",
                // Kafka's smallest allowed session timeout: a killed instance's partitions
                // move to the next one within seconds.
                "--session-timeout-ms",
                "6000",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Service { child, lines }
    }

    /// Waits for a line starting with `prefix`.
    fn wait_for(&self, prefix: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return,
                Ok(_) => {}
                Err(e) => panic!("the example did not print '{prefix}…': {e}"),
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every record of `topic` under `isolation`, read until nothing new came for 3 s.
fn read_all(server: &TestServer, topic: &str, partitions: i32, isolation: &str) -> Vec<String> {
    let consumer: BaseConsumer = server.consumer(&[("isolation.level", isolation)]);
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("tpl");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_new = Instant::now();
    while last_new.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "reading {topic} did not settle");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                last_new = Instant::now();
            }
            Some(Err(e)) => panic!("consume error on {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Per customer: (total, orders), from the example's output values.
fn sums(values: &[String]) -> BTreeMap<String, (i64, u64)> {
    let mut out: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    for v in values {
        let j: serde_json::Value = serde_json::from_str(v).expect("output is JSON");
        let customer = j["customer"].as_str().expect("customer").to_owned();
        let e = out.entry(customer).or_default();
        e.0 += j["total"].as_i64().expect("total");
        e.1 += j["orders"].as_u64().expect("orders");
    }
    out
}

#[test]
fn killed_mid_transaction_the_service_still_counts_every_order_once() {
    let mut server = TestServer::start(&[]);
    server.create_topic("orders", 3, &[]);
    server.create_topic("order-totals", 3, &[]);
    // The input, with the per-customer sums the output must reach.
    let mut want: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    let producer = server.producer(&[("enable.idempotence", "true")]);
    for i in 0..ORDERS {
        let customer = format!("c{}", i % CUSTOMERS);
        let amount = (i % 997 + 1) as i64;
        let value = amount.to_string();
        let e = want.entry(customer.clone()).or_default();
        e.0 += amount;
        e.1 += 1;
        let mut record = BaseRecord::to("orders").key(&customer).payload(&value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    producer.poll(Duration::from_millis(10));
                    record = r;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("input delivered");

    let bin = example_bin();
    // Kill it three times while a transaction is open (after producing a batch, before
    // committing it).
    for round in 0..3 {
        let service = Service::start(
            &bin,
            &server.bootstrap(),
            &["--pause-before-commit-ms", "300"],
        );
        service.wait_for("ready", Duration::from_secs(90));
        for _ in 0..(2 + round) {
            service.wait_for("committed transaction", Duration::from_secs(60));
        }
        service.wait_for("produced batch", Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(100));
        drop(service); // SIGKILL
    }
    // Then let it finish.
    let mut last = Service::start(&bin, &server.bootstrap(), &["--exit-when-idle-ms", "4000"]);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = last.child.try_wait().expect("wait") {
            assert!(status.success(), "the example failed: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "the example did not finish");
        std::thread::sleep(Duration::from_millis(200));
    }

    let committed = read_all(&server, "order-totals", 3, "read_committed");
    let got = sums(&committed);
    let uncommitted = read_all(&server, "order-totals", 3, "read_uncommitted");
    if got != want {
        // What the committed output holds beyond the input, and what read_uncommitted sees,
        // tell a duplicate commit from an aborted read.
        let ranges = |values: &[String]| -> Vec<String> {
            let mut v: Vec<String> = values
                .iter()
                .filter_map(|v| serde_json::from_str::<serde_json::Value>(v).ok())
                .map(|j| {
                    format!(
                        "p{}:{}-{}",
                        j["partition"], j["first_offset"], j["last_offset"]
                    )
                })
                .collect();
            v.sort();
            v
        };
        let _ = ranges;
        // Per (partition, customer): output records whose offset ranges overlap.
        let mut by: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
        for v in &committed {
            if let Ok(j) = serde_json::from_str::<serde_json::Value>(v) {
                by.entry((j["partition"].to_string(), j["customer"].to_string()))
                    .or_default()
                    .push((
                        j["first_offset"].as_i64().unwrap_or(-1),
                        j["last_offset"].as_i64().unwrap_or(-1),
                    ));
            }
        }
        for ((p, c), mut rs) in by {
            rs.sort();
            let overlaps: Vec<_> = rs.windows(2).filter(|w| w[1].0 <= w[0].1).collect();
            if !overlaps.is_empty() {
                eprintln!("partition {p} customer {c}: overlapping ranges {overlaps:?}");
            }
        }
        eprintln!("read_uncommitted sums: {:?}", sums(&uncommitted));
    }
    assert_eq!(
        got, want,
        "read_committed output differs from the input (lost or duplicated orders)"
    );
    let all_orders: u64 = sums(&uncommitted).values().map(|v| v.1).sum();
    assert!(
        all_orders > ORDERS as u64,
        "the killed transactions' output should be visible to read_uncommitted only \
         ({all_orders} orders there)"
    );
    server.assert_running("after the exactly-once example");
}
