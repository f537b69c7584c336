//! Exactly-once transactions driven by librdkafka (the `rdkafka` crate) against a real
//! single `nagare` process: a transactional producer commits and aborts transactions over
//! two topics × three partitions; a `read_committed` consumer sees exactly the committed
//! records, each transaction whole and in order, while a `read_uncommitted` one sees every
//! record; and a second producer with the same `transactional.id` fences the first, whose
//! commit then fails and whose open transaction is aborted.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::TestServer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPICS: [&str; 2] = ["txn-a", "txn-b"];
const PARTITIONS: i32 = 3;
/// Records per partition per transaction.
const PER_PARTITION: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(60);

fn server() -> TestServer {
    // A small __transaction_state keeps the coordinator's first load quick.
    let server = TestServer::start(&["transaction.state.log.num.partitions=4"]);
    for t in TOPICS {
        server.create_topic(t, PARTITIONS, &[]);
    }
    server
}

fn transactional_producer(server: &TestServer, id: &str) -> BaseProducer {
    let p = server.producer(&[
        ("transactional.id", id),
        ("transaction.timeout.ms", "60000"),
        ("enable.idempotence", "true"),
    ]);
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p
}

/// Sends `PER_PARTITION` records named `{tag}-{i}` to every partition of both topics.
fn send_all(p: &BaseProducer, tag: &str) {
    for t in TOPICS {
        for part in 0..PARTITIONS {
            for i in 0..PER_PARTITION {
                let value = format!("{tag}-{i}");
                p.send(BaseRecord::<(), _>::to(t).partition(part).payload(&value))
                    .expect("enqueue");
            }
        }
    }
    p.poll(Duration::ZERO);
}

/// Every record of both topics from the beginning, per partition in offset order, read
/// until nothing new arrived for a while.
fn read_all(server: &TestServer, isolation: &str) -> BTreeMap<(String, i32), Vec<String>> {
    let consumer: BaseConsumer = server.consumer(&[("isolation.level", isolation)]);
    let mut tpl = TopicPartitionList::new();
    for t in TOPICS {
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(t, p, Offset::Beginning)
                .expect("assign");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out: BTreeMap<(String, i32), Vec<String>> = BTreeMap::new();
    let mut last = Instant::now();
    let started = Instant::now();
    while last.elapsed() < Duration::from_secs(3) && started.elapsed() < TIMEOUT {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                out.entry((m.topic().to_string(), m.partition()))
                    .or_default()
                    .push(v);
                last = Instant::now();
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

fn expected(tags: &[&str]) -> BTreeMap<(String, i32), Vec<String>> {
    let mut out = BTreeMap::new();
    for t in TOPICS {
        for p in 0..PARTITIONS {
            let mut v = Vec::new();
            for tag in tags {
                v.extend((0..PER_PARTITION).map(|i| format!("{tag}-{i}")));
            }
            out.insert((t.to_string(), p), v);
        }
    }
    out
}

#[test]
fn committed_transactions_are_read_whole_and_aborted_ones_never() {
    let server = server();
    let p = transactional_producer(&server, "it-txn");
    p.begin_transaction().expect("begin 1");
    send_all(&p, "c1");
    p.commit_transaction(TIMEOUT).expect("commit 1");
    p.begin_transaction().expect("begin 2");
    send_all(&p, "aborted");
    p.flush(TIMEOUT).expect("flush the aborted records");
    p.abort_transaction(TIMEOUT).expect("abort");
    p.begin_transaction().expect("begin 3");
    send_all(&p, "c2");
    p.commit_transaction(TIMEOUT).expect("commit 3");

    let committed = read_all(&server, "read_committed");
    assert_eq!(
        committed,
        expected(&["c1", "c2"]),
        "read_committed sees exactly the committed transactions, in order"
    );
    let uncommitted = read_all(&server, "read_uncommitted");
    assert_eq!(
        uncommitted,
        expected(&["c1", "aborted", "c2"]),
        "read_uncommitted sees every record"
    );
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let server = server();
    let zombie = transactional_producer(&server, "it-zombie");
    zombie.begin_transaction().expect("begin");
    send_all(&zombie, "zombie");
    zombie.flush(TIMEOUT).expect("flush");

    // The new instance's InitProducerId bumps the epoch and aborts the zombie's transaction.
    let fresh = transactional_producer(&server, "it-zombie");
    let err = zombie
        .commit_transaction(TIMEOUT)
        .expect_err("the fenced producer's commit must fail");
    let fenced = match &err {
        KafkaError::Transaction(e) => {
            e.is_fatal()
                || matches!(
                    e.code(),
                    RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch
                )
        }
        _ => false,
    };
    assert!(fenced, "expected a fencing error, got {err:?}");

    fresh.begin_transaction().expect("begin");
    send_all(&fresh, "fresh");
    fresh.commit_transaction(TIMEOUT).expect("commit");
    // The zombie's records were aborted: a read_committed consumer sees only the new ones.
    assert_eq!(read_all(&server, "read_committed"), expected(&["fresh"]));
    assert_eq!(
        read_all(&server, "read_uncommitted"),
        expected(&["zombie", "fresh"])
    );
}
