//! KIP-890 part 1 (`transaction.partition.verification.enable`, on by default) against real
//! processes: 1 controller and 3 brokers, a topic whose partitions are spread over all three,
//! so most partition leaders are not the transaction coordinator of the producer's
//! transactional id and verify its first write of each transaction over the wire
//! (AddPartitionsToTxn v5, `verify_only`), the others in-process. A librdkafka transactional
//! producer commits and aborts transactions over every partition; a read_committed consumer
//! sees exactly the committed records, each transaction whole and in order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::replication;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const READY: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "verified";
const PARTITIONS: i32 = 6;
const PER_PARTITION: usize = 3;

fn send_all(p: &BaseProducer, tag: &str) {
    for part in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            let value = format!("{tag}-{i}");
            p.send(
                BaseRecord::<(), _>::to(TOPIC)
                    .partition(part)
                    .payload(&value),
            )
            .expect("enqueue");
        }
    }
    p.poll(Duration::ZERO);
}

fn read_committed(bootstrap: &str) -> BTreeMap<i32, Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kip890-check")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let started = Instant::now();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) && started.elapsed() < TIMEOUT {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            out.entry(m.partition()).or_default().push(v);
            last = Instant::now();
        }
    }
    out
}

#[test]
fn transactional_producers_work_with_partition_leaders_verifying_over_the_wire() {
    let mut cluster = TestCluster::new(
        1,
        3,
        &[
            "transaction.state.log.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
        ],
    );
    cluster.start_all(READY);
    let bootstrap = cluster.bootstrap();
    replication::create_topic(&bootstrap, TOPIC, PARTITIONS, 1, &[]);
    let leaders: BTreeSet<i32> = (0..PARTITIONS)
        .map(|p| {
            replication::eventually(Duration::from_secs(30), "partition leader", || {
                replication::partition_state(&bootstrap, TOPIC, p)
                    .map(|m| m.leader)
                    .filter(|l| *l >= 0)
            })
        })
        .collect();
    // Whichever broker coordinates the transactional id, partitions led elsewhere exist.
    assert!(leaders.len() > 1, "partition leaders {leaders:?}");

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "kip890-it")
        .set("transaction.timeout.ms", "60000")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    for (tag, commit) in [
        ("t1", true),
        ("t2", false),
        ("t3", true),
        ("t4", false),
        ("t5", true),
    ] {
        producer.begin_transaction().expect("begin_transaction");
        send_all(&producer, tag);
        producer.flush(TIMEOUT).expect("flush");
        if commit {
            producer.commit_transaction(TIMEOUT).expect("commit");
        } else {
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
    }

    let expected: Vec<String> = ["t1", "t3", "t5"]
        .iter()
        .flat_map(|t| (0..PER_PARTITION).map(move |i| format!("{t}-{i}")))
        .collect();
    let seen = read_committed(&bootstrap);
    for p in 0..PARTITIONS {
        assert_eq!(seen.get(&p), Some(&expected), "partition {p}");
    }
}
