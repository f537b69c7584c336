//! KIP-227 incremental fetch sessions, at the protocol level against a real server (librdkafka
//! and kafka-python do not use sessions; the Java client does): a full fetch creates a
//! session, incremental fetches list only partitions with news, a wrong epoch or unknown
//! session id gets Kafka's error, and epoch -1 closes the session. Also checks the delayed
//! fetch (min_bytes / max_wait_ms).

mod common;

use std::time::{Duration, Instant};

use common::{block_on, TestServer};
use nagare_client::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use nagare_client::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use nagare_client::kafka_protocol::protocol::StrBytes;
use nagare_client::{Acks, Client, Compression, Connection, ProduceRecord};

const TOPIC: &str = "sessions";

fn part(p: i32, offset: i64) -> FetchPartition {
    FetchPartition::default()
        .with_partition(p)
        .with_fetch_offset(offset)
        .with_partition_max_bytes(1 << 20)
}

fn request(
    session_id: i32,
    epoch: i32,
    parts: Vec<FetchPartition>,
    max_wait_ms: i32,
) -> FetchRequest {
    let topics = if parts.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
            .with_partitions(parts)]
    };
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
}

/// Partitions present in a response, with whether they carried records.
fn partitions(resp: &FetchResponse) -> Vec<(i32, bool)> {
    let mut v: Vec<(i32, bool)> = resp
        .responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| {
            (
                p.partition_index,
                p.records.as_ref().map(|r| !r.is_empty()).unwrap_or(false),
            )
        })
        .collect();
    v.sort();
    v
}

async fn produce(client: &mut Client, partition: i32, n: usize) {
    let records = (0..n)
        .map(|i| ProduceRecord {
            key: None,
            value: Some(format!("v{i}").into_bytes().into()),
            headers: vec![],
            timestamp: None,
        })
        .collect();
    client
        .produce(TOPIC, partition, records, Acks::All, Compression::None)
        .await
        .expect("produce");
}

#[test]
fn incremental_sessions_and_delayed_fetch() {
    let server = TestServer::start(&[]);
    server.create_topic(TOPIC, 3, &[]);
    block_on(async {
        let mut client = Client::connect_to(&server.bootstrap())
            .await
            .expect("client");
        for p in 0..3 {
            produce(&mut client, p, 5).await;
        }
        // Fetch v12 uses topic names and supports sessions.
        let mut conn = Connection::connect(&server.direct_addr(), "session-test")
            .await
            .expect("connect");
        let v = 12;

        // Full fetch (epoch 0): a new session, every partition answered.
        let full = conn
            .send_version(
                &request(0, 0, vec![part(0, 0), part(1, 0), part(2, 0)], 100),
                v,
            )
            .await
            .expect("full");
        assert_eq!(full.error_code, 0);
        let id = full.session_id;
        assert!(id > 0, "a session was created");
        assert_eq!(partitions(&full), vec![(0, true), (1, true), (2, true)]);

        // Incremental (epoch 1): move the offsets to the end; nothing new → no partition has
        // records (the high watermarks were already sent).
        let upd = vec![part(0, 5), part(1, 5), part(2, 5)];
        let t0 = Instant::now();
        let inc = conn
            .send_version(&request(id, 1, upd, 300), v)
            .await
            .expect("incremental 1");
        assert_eq!(inc.error_code, 0);
        assert_eq!(inc.session_id, id);
        assert!(
            partitions(&inc).iter().all(|(_, has)| !has),
            "{:?}",
            partitions(&inc)
        );
        assert!(
            t0.elapsed() >= Duration::from_millis(250),
            "waited for min_bytes up to max_wait_ms"
        );

        // New data on partition 1 only: the next incremental fetch (no partitions listed at
        // all) answers just that partition.
        produce(&mut client, 1, 2).await;
        let inc = conn
            .send_version(&request(id, 2, vec![], 1000), v)
            .await
            .expect("incremental 2");
        assert_eq!(partitions(&inc), vec![(1, true)]);

        // Delayed fetch is woken by an append: a fetch waiting up to 5 s returns soon after
        // a produce on another connection.
        let waiter = tokio::spawn(async move {
            let t = Instant::now();
            let r = conn
                .send_version(&request(id, 3, vec![part(1, 7)], 5000), v)
                .await
                .expect("incremental 3");
            (conn, r, t.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        produce(&mut client, 1, 1).await;
        let (mut conn, inc, waited) = waiter.await.expect("join");
        assert_eq!(partitions(&inc), vec![(1, true)]);
        assert!(
            waited < Duration::from_millis(3000),
            "woken by the append, waited {waited:?}"
        );

        // Wrong epoch and unknown session id get Kafka's errors.
        let bad = conn
            .send_version(&request(id, 99, vec![], 0), v)
            .await
            .expect("bad epoch");
        assert_eq!(bad.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
        let bad = conn
            .send_version(&request(id.wrapping_add(12345), 1, vec![], 0), v)
            .await
            .expect("bad id");
        assert_eq!(bad.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");

        // Epoch -1 closes the session and fetches sessionlessly; the id is then unknown.
        let close = conn
            .send_version(&request(id, -1, vec![part(0, 0)], 0), v)
            .await
            .expect("close");
        assert_eq!(close.session_id, 0);
        assert_eq!(partitions(&close), vec![(0, true)]);
        let gone = conn
            .send_version(&request(id, 4, vec![], 0), v)
            .await
            .expect("gone");
        assert_eq!(gone.error_code, 70);
    });
}
