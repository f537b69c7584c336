//! Helpers shared by the replication tests on a [`super::cluster::TestCluster`]: polling for a
//! condition, a partition's leader/ISR as Metadata reports it, a librdkafka producer tuned for
//! failovers, and reading a partition back with librdkafka.

use std::time::{Duration, Instant};

use nagare_client::{Client, NewTopic, PartitionMetadata, ResponseError};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};

use super::block_on;

/// Calls `f` every `poll` until it returns `Some`, failing the test after `timeout`.
pub fn eventually_every<T>(
    timeout: Duration,
    poll: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(poll);
    }
}

/// [`eventually_every`] polling every 200 ms.
pub fn eventually<T>(timeout: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_every(timeout, Duration::from_millis(200), what, f)
}

/// Leader, replicas and ISR of `topic`'s `partition` per a Metadata request to `bootstrap`
/// (`None` while no broker answers or the partition is unknown).
pub fn partition_state(bootstrap: &str, topic: &str, partition: i32) -> Option<PartitionMetadata> {
    block_on(async {
        let mut c = Client::connect_to(bootstrap).await.ok()?;
        let t = c.topic_metadata(topic).await.ok()?;
        t.partition(partition).cloned()
    })
}

/// Creates `name` through `bootstrap`, retrying for up to 30 s while the cluster settles; a
/// TOPIC_ALREADY_EXISTS answer (a retry of a creation that went through) counts as done.
pub fn create_topic(bootstrap: &str, name: &str, parts: i32, rf: i16, configs: &[(&str, &str)]) {
    eventually(Duration::from_secs(30), "topic creation", || {
        block_on(async {
            let mut c = Client::connect_to(bootstrap).await.ok()?;
            let topic = NewTopic {
                name: name.into(),
                partitions: Some(parts),
                replication_factor: Some(rf),
                configs: configs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            match c.create_topics(&[topic], false).await {
                Ok(()) => Some(()),
                Err(e) if e.kafka_error() == Some(ResponseError::TopicAlreadyExists) => Some(()),
                Err(e) => {
                    eprintln!("create {name}: {e}");
                    None
                }
            }
        })
    });
}

/// A librdkafka producer with `acks` and idempotence as given, quick retries and reconnects
/// and metadata refreshed every 500 ms, so that it finds a new leader soon after a failover.
pub fn producer(bootstrap: &str, acks: &str, idempotent: bool) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set(
            "enable.idempotence",
            if idempotent { "true" } else { "false" },
        )
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("request.timeout.ms", "20000")
        .set("retry.backoff.ms", "100")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "500")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("producer")
}

/// [`producer`] with `acks=all` and idempotence.
pub fn idempotent_producer(bootstrap: &str) -> FutureProducer {
    producer(bootstrap, "all", true)
}

/// `v` sorted (ISR and replica lists compared as sets).
pub fn sorted(mut v: Vec<i32>) -> Vec<i32> {
    v.sort_unstable();
    v
}

/// Reads `topic`'s partition 0 from the beginning until `expected` records arrived (failing
/// the test after 60 s); returns (offset, value) of each.
pub fn consume_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<(i64, String)> {
    consume(bootstrap, topic, expected, false)
}

/// [`consume_all`], and then fails the test if a further record arrives within a second.
pub fn consume_exactly(bootstrap: &str, topic: &str, expected: usize) -> Vec<(i64, String)> {
    consume(bootstrap, topic, expected, true)
}

fn consume(bootstrap: &str, topic: &str, expected: usize, exact: bool) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "replication-check")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "500")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < expected {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {expected} records",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => eprintln!("consume error (retrying): {e}"),
            None => {}
        }
    }
    if exact {
        // Nothing more than expected (e.g. no divergent record resurfaced after new ones).
        let extra = consumer.poll(Duration::from_secs(1));
        assert!(
            !matches!(extra, Some(Ok(_))),
            "more records than the {expected} expected"
        );
    }
    out
}
