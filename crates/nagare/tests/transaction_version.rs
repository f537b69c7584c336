//! The `transaction.version` feature (KIP-1022) on a real `nagare` node formatted with
//! `nagare storage format --feature transaction.version=2`: ApiVersions reports it finalized,
//! an EndTxn v5 bumps the producer epoch (KIP-890 part 2), and librdkafka, whose EndTxn is
//! older than v5, still commits and aborts exactly as under transaction version 0.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{ClusterLayout, TestCluster};
use common::{block_on, nagare_bin};
use nagare_client::kafka_protocol::messages::*;
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::Connection;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(60);
const TOPIC: &str = "tv2";

/// One broker+controller node, re-formatted with `--feature transaction.version=2`.
fn tv2_node() -> TestCluster {
    let mut cluster = TestCluster::with_layout(ClusterLayout {
        controllers: 0,
        brokers: 0,
        combined: 1,
        extra: &[
            "transaction.state.log.num.partitions=2",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
        ],
        client_address: None,
        controller_address: None,
    });
    let cluster_id = cluster.cluster_id.clone();
    let node = cluster.node(1);
    std::fs::remove_dir_all(node.log_dir()).expect("remove the default format");
    let out = Command::new(nagare_bin())
        .args(["storage", "format", "--cluster-id", &cluster_id, "--config"])
        .arg(node.config_file())
        .args(["--feature", "transaction.version=2"])
        .output()
        .expect("storage format");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.start_all(TIMEOUT);
    cluster
}

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The finalized `transaction.version` ApiVersions v4 reports, once the node has it.
async fn finalized_transaction_version(addr: &str) -> Option<i16> {
    let mut conn = Connection::connect(addr, "tv-it").await.expect("connect");
    let r = conn
        .send_version(&ApiVersionsRequest::default(), 4)
        .await
        .expect("ApiVersions");
    assert!(r.finalized_features_epoch >= 0);
    let supported = r
        .supported_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| (f.min_version, f.max_version));
    assert_eq!(supported, Some((0, 2)));
    r.finalized_features
        .iter()
        .find(|f| f.name.as_str() == "transaction.version")
        .map(|f| f.max_version_level)
}

/// A raw transaction ended with EndTxn v5: (epoch before, epoch in the response).
async fn end_txn_v5_epochs(addr: &str) -> (i16, i16) {
    let mut conn = Connection::connect(addr, "tv-it").await.expect("connect");
    let id = TransactionalId(s("raw-tv2"));
    let deadline = Instant::now() + TIMEOUT;
    // The coordinator is found and loaded on the first InitProducerId (retriable until then).
    let init = loop {
        let r = conn
            .send_version(
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(id.clone()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await
            .expect("InitProducerId");
        if r.error_code == 0 {
            break r;
        }
        assert!(Instant::now() < deadline, "InitProducerId: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let add = conn
        .send_version(
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id.clone())
                .with_v3_and_below_producer_id(init.producer_id)
                .with_v3_and_below_producer_epoch(init.producer_epoch)
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(TOPIC)))
                        .with_partitions(vec![0]),
                ]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert_eq!(
        add.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let end = conn
        .send_version(
            &EndTxnRequest::default()
                .with_transactional_id(id)
                .with_producer_id(init.producer_id)
                .with_producer_epoch(init.producer_epoch)
                .with_committed(true),
            5,
        )
        .await
        .expect("EndTxn");
    assert_eq!(end.error_code, 0, "{end:?}");
    assert_eq!(end.producer_id, init.producer_id);
    (init.producer_epoch, end.producer_epoch)
}

fn values(c: &BaseConsumer, want: usize) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                quiet_since = Instant::now();
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None if out.len() >= want && quiet_since.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    out
}

#[test]
fn transaction_version_2_is_finalized_and_librdkafka_is_unaffected() {
    let mut cluster = tv2_node();
    let bootstrap = cluster.bootstrap();
    let (ok, _, err) = cluster.cli(&[
        "topic",
        "create",
        TOPIC,
        "--partitions",
        "1",
        "-b",
        &bootstrap,
    ]);
    assert!(ok, "{err}");

    assert_eq!(block_on(finalized_transaction_version(&bootstrap)), Some(2));
    let (before, after) = block_on(end_txn_v5_epochs(&bootstrap));
    assert_eq!(
        after,
        before + 1,
        "EndTxn v5 bumps the epoch under transaction version 2"
    );

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "rdkafka-tv2")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    for (tag, commit) in [("c1", true), ("a", false), ("c2", true)] {
        producer.begin_transaction().expect("begin");
        for i in 0..5 {
            let v = format!("{tag}-{i}");
            producer
                .send(BaseRecord::<(), _>::to(TOPIC).partition(0).payload(&v))
                .expect("enqueue");
        }
        producer.flush(TIMEOUT).expect("flush");
        if commit {
            producer.commit_transaction(TIMEOUT).expect("commit");
        } else {
            producer.abort_transaction(TIMEOUT).expect("abort");
        }
    }

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "tv2-reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let got = values(&consumer, 10);
    let want: Vec<String> = ["c1", "c2"]
        .iter()
        .flat_map(|t| (0..5).map(move |i| format!("{t}-{i}")))
        .collect();
    assert_eq!(
        got, want,
        "read_committed sees both commits whole, no aborted record"
    );
}
