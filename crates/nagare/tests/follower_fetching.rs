//! KIP-392 follower fetching with real processes: 3 controllers and 3 brokers, each broker in
//! its own `broker.rack`, `replica.selector.class` set to Kafka's `RackAwareReplicaSelector`.
//!
//! A librdkafka consumer with `client.rack` naming a follower's rack is sent there by the
//! leader (`preferred_read_replica`) and reads everything from the follower: the follower logs
//! that it serves consumer fetches, and the consumer keeps reading while the leader is
//! SIGSTOPped.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::block_on;
use common::cluster::TestCluster;
use common::replication;
use common::replication::eventually;
use nagare_client::PartitionMetadata;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const TOPIC: &str = "rack-local";
const READY: Duration = Duration::from_secs(60);
const RECORDS: usize = 500;

fn partition_state(bootstrap: &str) -> Option<PartitionMetadata> {
    replication::partition_state(bootstrap, TOPIC, 0)
}

/// The partition's high watermark in `replication-offset-checkpoint` of `dir`.
fn checkpointed_hw(dir: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join("replication-offset-checkpoint")).ok()?;
    text.lines().skip(2).find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(TOPIC) && it.next() == Some("0"))
            .then(|| it.next().and_then(|o| o.parse().ok()))
            .flatten()
    })
}

/// Keeps librdkafka's log lines that mention the preferred replica.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

impl ClientContext for Logs {
    fn log(&self, _level: RDKafkaLogLevel, fac: &str, msg: &str) {
        if msg.contains("rack-local") || msg.contains("preferred") {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("{fac}: {msg}"));
            }
        }
    }
}

impl ConsumerContext for Logs {}

/// What one partition of a raw Fetch answered.
#[derive(Debug)]
struct Fetched {
    error: i16,
    hw: i64,
    preferred: i32,
    bytes: usize,
}

/// A sessionless consumer Fetch (replica id -1) of version `v` at `offset` with `rack_id`.
fn raw_fetch(addr: &str, v: i16, offset: i64, rack: &str) -> Fetched {
    block_on(async {
        let mut c = nagare_client::Connection::connect(addr, "raw-fetch")
            .await
            .expect("connect");
        let (_, parts) = fetch_on(&mut c, v, (0, -1), Some(offset), rack).await;
        parts.into_iter().next().expect("the partition")
    })
}

/// One consumer Fetch on `c`: `session` is (session id, epoch); `offset` lists the partition
/// (None: an incremental fetch naming nothing). Returns the session id and the partitions.
async fn fetch_on(
    c: &mut nagare_client::Connection,
    v: i16,
    session: (i32, i32),
    offset: Option<i64>,
    rack: &str,
) -> (i32, Vec<Fetched>) {
    use nagare_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use nagare_client::kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
    use nagare_client::kafka_protocol::protocol::StrBytes;
    let topics = offset.map_or(vec![], |offset| {
        vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]
    });
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session.0)
        .with_session_epoch(session.1)
        .with_rack_id(StrBytes::from_string(rack.to_string()))
        .with_topics(topics);
    let resp = c.send_version(&req, v).await.expect("fetch");
    let parts = resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| Fetched {
            error: p.error_code,
            hw: p.high_watermark,
            preferred: p.preferred_read_replica.0,
            bytes: p.records.as_ref().map_or(0, |r| r.len()),
        })
        .collect();
    (resp.session_id, parts)
}

#[test]
fn consumer_reads_from_the_follower_in_its_rack() {
    let mut cluster = TestCluster::new(
        3,
        3,
        &[
            "broker.heartbeat.interval.ms=300",
            "replica.fetch.backoff.ms=100",
            "replica.fetch.wait.max.ms=200",
            "replica.high.watermark.checkpoint.interval.ms=200",
            "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector",
        ],
    );
    for id in [101, 102, 103] {
        let path = cluster.node(id).config_file();
        let mut text = std::fs::read_to_string(&path).expect("config");
        text.push_str(&format!("broker.rack=rack-{id}\n"));
        std::fs::write(&path, text).expect("config");
    }
    cluster.start_all(READY);
    let all = cluster.bootstrap();
    replication::create_topic(&all, TOPIC, 1, 3, &[("min.insync.replicas", "2")]);
    let p = eventually(Duration::from_secs(30), "a leader with a full ISR", || {
        partition_state(&all).filter(|p| p.leader >= 0 && p.isr.len() == 3)
    });
    let leader = p.leader;
    let follower = *p.replicas.iter().find(|r| **r != leader).expect("follower");
    eprintln!("leader {leader}, consumer in rack-{follower}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let values: Vec<String> = (0..RECORDS)
        .map(|i| format!("value-{i}-{}", "y".repeat(100)))
        .collect();
    block_on(async {
        let futs: Vec<_> = values
            .iter()
            .map(|v| {
                producer.send(
                    FutureRecord::<(), _>::to(TOPIC).partition(0).payload(v),
                    Duration::from_secs(0),
                )
            })
            .collect();
        for f in futs {
            f.await.expect("acks=all produce");
        }
    });
    // The follower knows every record is committed (its high watermark, checkpointed).
    let fdir = cluster.node(follower).log_dir();
    eventually(
        Duration::from_secs(20),
        "the follower's high watermark",
        || (checkpointed_hw(&fdir) == Some(RECORDS as i64)).then_some(()),
    );

    // Small fetches, so that reading everything takes many of them.
    let logs = Logs::default();
    let consumer: BaseConsumer<Logs> = ClientConfig::new()
        .set("bootstrap.servers", &all)
        .set("group.id", "rack-local-check")
        .set("enable.auto.commit", "false")
        .set("client.rack", format!("rack-{follower}"))
        .set("fetch.message.max.bytes", "1024")
        .set("queued.max.messages.kbytes", "1")
        .set("queued.min.messages", "1")
        .set("fetch.queue.backoff.ms", "10")
        .set("debug", "fetch")
        .set_log_level(RDKafkaLogLevel::Debug)
        .create_with_context(logs.clone())
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut consumed: Vec<(i64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut leader_stopped = false;
    while consumed.len() < RECORDS {
        if Instant::now() >= deadline {
            for l in logs
                .0
                .lock()
                .map(|v| v.clone())
                .unwrap_or_default()
                .iter()
                .rev()
                .take(60)
                .rev()
            {
                eprintln!("librdkafka: {l}");
            }
        }
        assert!(
            Instant::now() < deadline,
            "consumed {} of {RECORDS} records (leader stopped: {leader_stopped})",
            consumed.len()
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            consumed.push((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
            if !leader_stopped {
                // From here on only the follower can serve the rest.
                cluster.node(leader).signal("STOP");
                leader_stopped = true;
            }
        }
    }
    cluster.node(leader).signal("CONT");
    let expected: Vec<(i64, String)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as i64, v.clone()))
        .collect();
    assert_eq!(consumed, expected);
    let out = cluster.node(follower).current_output();
    let line = out
        .lines()
        .find(|l| l.contains("serving consumer fetches as a follower") && l.contains(TOPIC))
        .unwrap_or_else(|| panic!("follower {follower} did not serve the consumer"));
    eprintln!("follower {follower}: {line}");
    let client_lines = logs.0.lock().map(|v| v.clone()).unwrap_or_default();
    // librdkafka's own account: redirected by the leader, every record fetched from the
    // follower's connection.
    let migrated = client_lines
        .iter()
        .find(|l| l.contains("preferred replica updated"))
        .unwrap_or_else(|| panic!("librdkafka was not redirected: {client_lines:#?}"));
    eprintln!("librdkafka: {migrated}");
    let from_leader = format!("/{leader}]:");
    let from_follower = format!("/{follower}]:");
    let enqueued = |from: &str| {
        client_lines
            .iter()
            .filter(|l| l.contains(from) && l.contains("Enqueue"))
            .count()
    };
    assert_eq!(enqueued(&from_leader), 0, "records fetched from the leader");
    assert!(
        enqueued(&from_follower) > 10,
        "too few fetches from the follower"
    );
    eprintln!(
        "{} fetch responses with records, all from follower {follower}",
        enqueued(&from_follower)
    );
    // Kafka's rules, with raw Fetch requests: the follower serves consumers with client
    // metadata (v11+) up to its high watermark, OFFSET_OUT_OF_RANGE past its log, and
    // NOT_LEADER_OR_FOLLOWER to older consumers; the leader redirects the rack.
    let rack = format!("rack-{follower}");
    let fboot = cluster.node(follower).bootstrap();
    let lboot = cluster.node(leader).bootstrap();
    let f = raw_fetch(&fboot, 12, 0, "");
    assert_eq!(
        (f.error, f.hw, f.preferred),
        (0, RECORDS as i64, -1),
        "{f:?}"
    );
    assert!(f.bytes > 0, "{f:?}");
    assert_eq!(
        raw_fetch(&fboot, 12, 10_000, "").error,
        1,
        "past the log end"
    );
    assert_eq!(raw_fetch(&fboot, 10, 0, "").error, 6, "no client metadata");
    let l = raw_fetch(&lboot, 12, 0, &rack);
    assert_eq!((l.error, l.preferred, l.bytes), (0, follower, 0), "{l:?}");
    // In a fetch session (KIP-227) the redirection is repeated in incremental answers, where
    // an unchanged partition would otherwise be left out.
    block_on(async {
        let mut c = nagare_client::Connection::connect(&lboot, "raw-session")
            .await
            .expect("connect");
        let (id, parts) = fetch_on(&mut c, 12, (0, 0), Some(RECORDS as i64), &rack).await;
        assert!(id != 0, "no session created");
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].preferred, follower, "{parts:?}");
        let (_, parts) = fetch_on(&mut c, 12, (id, 1), None, &rack).await;
        assert_eq!(
            parts.len(),
            1,
            "redirection left out of the incremental answer"
        );
        assert_eq!(parts[0].preferred, follower, "{parts:?}");
    });
    let l = raw_fetch(&lboot, 12, 0, "rack-elsewhere");
    assert_eq!((l.error, l.preferred), (0, -1), "{l:?}");
    assert!(l.bytes > 0, "{l:?}");
    for id in [101, 102, 103] {
        if id != follower {
            assert!(
                !cluster
                    .node(id)
                    .current_output()
                    .contains("serving consumer fetches as a follower"),
                "broker {id} served follower reads"
            );
        }
    }
}
