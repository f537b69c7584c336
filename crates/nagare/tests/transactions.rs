//! Exactly-once transactions driven by librdkafka (the `rdkafka` crate) against a real
//! single `nagare` process: a transactional producer commits and aborts transactions over
//! two topics × three partitions; a `read_committed` consumer sees exactly the committed
//! records, each transaction whole and in order, while a `read_uncommitted` one sees every
//! record; a second producer with the same `transactional.id` fences the first, whose
//! commit then fails and whose open transaction is aborted; a transaction left open by a
//! producer that went away is aborted by the coordinator at its timeout, unblocking the last
//! stable offset; `nagare transactions list|describe` show the coordinator's view; and a
//! consume-transform-produce step's offsets (`send_offsets_to_transaction`) become the
//! group's committed offsets only when its transaction commits.
//!
//! On a cluster of three brokers (`__transaction_state` and the data with replication factor
//! 3) the markers go between brokers, and the transaction coordinator is SIGKILLed between
//! AddPartitionsToTxn and EndTxn: the new coordinator loads the transaction from its replica
//! of `__transaction_state` and completes the commit, nothing torn. And mid-commit: with a
//! partition's only replica down, a committed transaction stays in PrepareCommit (its marker
//! cannot be written); the coordinator is SIGKILLed, the new one resumes the markers and,
//! once the partition is back, completes the commit.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{block_on, TestServer};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
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
    // A small __transaction_state keeps the coordinator's first load quick; timed-out
    // transactions are looked for every half second.
    let server = TestServer::start(&[
        "transaction.state.log.num.partitions=4",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms=500",
    ]);
    for t in TOPICS {
        server.create_topic(t, PARTITIONS, &[]);
    }
    server
}

fn transactional_producer(server: &TestServer, id: &str) -> BaseProducer {
    transactional_producer_with(server, id, &[("transaction.timeout.ms", "60000")])
}

fn transactional_producer_with(
    server: &TestServer,
    id: &str,
    extra: &[(&str, &str)],
) -> BaseProducer {
    let mut cfg = vec![("transactional.id", id), ("enable.idempotence", "true")];
    cfg.extend_from_slice(extra);
    let p = server.producer(&cfg);
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
    read_all_from(&server.bootstrap(), isolation)
}

fn read_all_from(bootstrap: &str, isolation: &str) -> BTreeMap<(String, i32), Vec<String>> {
    let partitions: Vec<(&str, i32)> = TOPICS
        .iter()
        .flat_map(|t| (0..PARTITIONS).map(move |p| (*t, p)))
        .collect();
    read_partitions(bootstrap, &partitions, isolation)
}

/// Every record of `partitions` from the beginning, as [`read_all`].
fn read_partitions(
    bootstrap: &str,
    partitions: &[(&str, i32)],
    isolation: &str,
) -> BTreeMap<(String, i32), Vec<String>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", format!("it-txn-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition_offset(t, *p, Offset::Beginning)
            .expect("assign");
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

    // The operator's view (kafka-transactions.sh's columns).
    let list = cli(&server, &["list"]);
    let row = list
        .lines()
        .find(|l| l.split_whitespace().next() == Some("it-txn"))
        .unwrap_or_else(|| panic!("it-txn not listed:\n{list}"));
    assert_eq!(
        row.split_whitespace().nth(3),
        Some("CompleteCommit"),
        "{list}"
    );
    let describe = cli(&server, &["describe", "--transactional-id", "it-txn"]);
    assert!(describe.contains("CompleteCommit"), "{describe}");
}

/// Runs `nagare transactions --bootstrap-server <server> <args>` and returns its output.
fn cli(server: &TestServer, args: &[&str]) -> String {
    let out = std::process::Command::new(common::nagare_bin())
        .args(["transactions", "--bootstrap-server"])
        .arg(server.bootstrap())
        .args(args)
        .output()
        .expect("run nagare");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "nagare transactions {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn a_transaction_left_open_is_aborted_at_its_timeout_and_unblocks_the_lso() {
    let server = server();
    // A producer opens a transaction, writes to every partition and goes away without
    // ending it (leaked rather than dropped, so that nothing ends it on its way out: the
    // coordinator's view of a SIGKILLed client).
    let gone = transactional_producer_with(
        &server,
        "it-gone",
        &[
            ("transaction.timeout.ms", "3000"),
            ("socket.timeout.ms", "2000"),
        ],
    );
    gone.begin_transaction().expect("begin");
    send_all(&gone, "gone");
    gone.flush(TIMEOUT).expect("flush");
    std::mem::forget(gone);

    // Another producer commits after it: its records sit above the open transaction's first
    // offset, so a read_committed consumer can read them only once that transaction ends.
    let next = transactional_producer(&server, "it-next");
    next.begin_transaction().expect("begin");
    send_all(&next, "next");
    next.commit_transaction(TIMEOUT).expect("commit");

    // The coordinator aborts it after its 3 s timeout and writes ABORT markers.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let committed = read_all(&server, "read_committed");
        if committed == expected(&["next"]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the timed-out transaction still blocks read_committed: {committed:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let describe = cli(&server, &["describe", "--transactional-id", "it-gone"]);
    assert!(
        describe.contains("CompleteAbort") || describe.contains("PrepareEpochFence"),
        "{describe}"
    );
    assert_eq!(
        read_all(&server, "read_uncommitted"),
        expected(&["gone", "next"])
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

fn failover_cluster() -> TestCluster {
    let mut cluster = TestCluster::new(
        1,
        3,
        &[
            "broker.session.timeout.ms=3000",
            "broker.heartbeat.interval.ms=300",
            "replica.lag.time.max.ms=2000",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
            "transaction.state.log.replication.factor=3",
            "transaction.state.log.num.partitions=4",
            "transaction.state.log.min.isr=2",
        ],
    );
    cluster.start_all(Duration::from_secs(60));
    let bootstrap = cluster.bootstrap();
    let topics: Vec<NewTopic> = TOPICS
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(3)))
        .collect();
    create_topics(&bootstrap, &topics);
    cluster
}

fn create_topics(bootstrap: &str, topics: &[NewTopic]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    for r in block_on(admin.create_topics(topics, &opts)).expect("CreateTopics") {
        r.expect("topic created");
    }
}

fn cluster_producer(bootstrap: &str, id: &str) -> BaseProducer {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p
}

fn transaction_coordinator(bootstrap: &str, id: &str) -> i32 {
    block_on(async {
        let mut c = nagare_client::Client::connect_to(bootstrap)
            .await
            .expect("connect");
        c.find_transaction_coordinator(id)
            .await
            .expect("FindCoordinator(TRANSACTION)")
    })
}

fn transaction_state(bootstrap: &str, id: &str) -> String {
    block_on(async {
        let mut c = nagare_client::Client::connect_to(bootstrap)
            .await
            .expect("connect");
        c.describe_transaction(id)
            .await
            .expect("DescribeTransactions")
            .state
    })
}

#[test]
fn the_coordinator_fails_over_between_add_partitions_and_end_txn() {
    let mut cluster = failover_cluster();
    let bootstrap = cluster.bootstrap();
    let p = cluster_producer(&bootstrap, "it-failover");
    // One transaction across the three brokers' partitions: markers go between brokers.
    p.begin_transaction().expect("begin");
    send_all(&p, "before");
    p.commit_transaction(TIMEOUT)
        .expect("commit before the kill");

    // The next transaction's partitions are added (its records are written), then its
    // coordinator dies before EndTxn.
    p.begin_transaction().expect("begin");
    send_all(&p, "across");
    p.flush(TIMEOUT).expect("flush");
    let coordinator = transaction_coordinator(&bootstrap, "it-failover");
    eprintln!("killing the transaction coordinator, broker {coordinator}");
    cluster.node(coordinator).kill9();
    // librdkafka looks the coordinator up again and retries EndTxn on the new one, which
    // loaded the Ongoing transaction from its replica of __transaction_state.
    p.commit_transaction(TIMEOUT)
        .expect("commit on the new coordinator");
    p.begin_transaction().expect("begin");
    send_all(&p, "after");
    p.commit_transaction(TIMEOUT)
        .expect("commit after the failover");

    let survivors = cluster.bootstrap();
    assert_eq!(
        read_all_from(&survivors, "read_committed"),
        expected(&["before", "across", "after"]),
        "every committed transaction whole, in order, after the failover"
    );
    drop(p);
}

#[test]
fn the_new_coordinator_completes_a_commit_whose_markers_were_pending() {
    let mut cluster = failover_cluster();
    let bootstrap = cluster.bootstrap();
    let p = cluster_producer(&bootstrap, "it-midcommit");
    let coordinator = transaction_coordinator(&bootstrap, "it-midcommit");
    // A one-replica topic on another broker: while that broker is down, its marker waits.
    let pinned = [101, 102, 103]
        .into_iter()
        .find(|b| *b != coordinator)
        .expect("another broker");
    create_topics(
        &bootstrap,
        &[NewTopic::new(
            "txn-pinned",
            1,
            TopicReplication::Variable(&[&[pinned]]),
        )],
    );
    p.begin_transaction().expect("begin");
    send_all(&p, "mid");
    p.send(
        BaseRecord::<(), _>::to("txn-pinned")
            .partition(0)
            .payload("pinned"),
    )
    .expect("enqueue");
    p.flush(TIMEOUT).expect("flush");
    cluster.node(pinned).kill9();
    // EndTxn is answered once PrepareCommit is written; the marker of txn-pinned-0 cannot be.
    p.commit_transaction(TIMEOUT).expect("commit");
    let alive = cluster.bootstrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(transaction_state(&alive, "it-midcommit"), "PrepareCommit");
    eprintln!("killing coordinator {coordinator} mid-commit; {pinned} is down");
    cluster.node(coordinator).kill9();
    cluster.node(pinned).start();
    cluster.node(pinned).wait_ready(Duration::from_secs(60));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let alive = cluster.bootstrap();
        if transaction_state(&alive, "it-midcommit") == "CompleteCommit" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new coordinator never completed the commit"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let alive = cluster.bootstrap();
    assert_eq!(
        read_all_from(&alive, "read_committed"),
        expected(&["mid"]),
        "the whole transaction, nothing torn"
    );
    let pinned = read_partitions(&alive, &[("txn-pinned", 0)], "read_committed");
    assert_eq!(
        pinned.get(&("txn-pinned".to_string(), 0)),
        Some(&vec!["pinned".to_string()]),
        "the pinned partition's record is committed too"
    );
    drop(p);
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_with_it_and_dropped_on_abort() {
    let server = server();
    server.create_topic("txn-in", 1, &[]);
    server.create_topic("txn-out", 1, &[]);
    let plain = server.producer(&[]);
    for i in 0..10 {
        let v = format!("in-{i}");
        plain
            .send(BaseRecord::<(), _>::to("txn-in").partition(0).payload(&v))
            .expect("enqueue");
    }
    plain.flush(TIMEOUT).expect("flush");

    // A consume-transform-produce step: the input's offsets go into the transaction
    // (AddOffsetsToTxn + TxnOffsetCommit) and become the group's only when it commits.
    let group = "it-eos-group";
    let consumer: BaseConsumer = server.consumer(&[("group.id", group)]);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("txn-in", 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&tpl).expect("assign");
    let p = transactional_producer(&server, "it-eos");
    let step = |upto: i64, tag: &str, commit: bool| {
        p.begin_transaction().expect("begin");
        let v = format!("{tag}-out");
        p.send(BaseRecord::<(), _>::to("txn-out").partition(0).payload(&v))
            .expect("enqueue");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("txn-in", 0, Offset::Offset(upto))
            .expect("offset");
        let meta = consumer.group_metadata().expect("group metadata");
        p.send_offsets_to_transaction(&offsets, &meta, TIMEOUT)
            .expect("send_offsets_to_transaction");
        // A BaseProducer's delivery reports are served by polling, which abort waits for.
        p.flush(TIMEOUT).expect("flush");
        if commit {
            p.commit_transaction(TIMEOUT).expect("commit");
        } else {
            p.abort_transaction(TIMEOUT).expect("abort");
        }
    };
    step(5, "first", true);
    step(10, "second", false);

    let committed = |c: &BaseConsumer| {
        let mut q = TopicPartitionList::new();
        q.add_partition("txn-in", 0);
        let r = c.committed_offsets(q, TIMEOUT).expect("OffsetFetch");
        r.find_partition("txn-in", 0).expect("txn-in-0").offset()
    };
    assert_eq!(
        committed(&consumer),
        Offset::Offset(5),
        "the committed transaction's offsets, not the aborted one's"
    );
    let out = read_partitions(&server.bootstrap(), &[("txn-out", 0)], "read_committed");
    assert_eq!(
        out.get(&("txn-out".to_string(), 0)),
        Some(&vec!["first-out".to_string()])
    );
}
