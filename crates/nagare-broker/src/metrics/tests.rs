//! The metrics endpoint end to end, in process: a broker serving the Kafka protocol on a
//! real socket and `http.listeners` on another; a client produces and fetches, and scrapes
//! see the topic's counters and the Produce latency histogram move.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::MetricsSource;
use crate::context::ListenerKind;
use crate::testing::{encode_batch, plain_record, TestBroker};

/// Sends `request` raw and returns the status code and the body.
async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8(out).expect("UTF-8");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http(addr, &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await
}

/// The value of the sample whose name and labels are exactly `series`, 0 when absent.
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn batch(n: usize, value_len: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| plain_record(i, 1_700_000_000_000, Bytes::from(vec![b'x'; value_len])))
        .collect();
    encode_batch(&records).freeze()
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

#[tokio::test]
async fn scrape_sees_bytes_in_and_out_a_produce_histogram_and_health() {
    let t = TestBroker::start().await;
    t.create_topic("metered", 1).await;

    // The Kafka protocol on a real socket, so requests go through the network layer (the
    // request metrics are recorded once the response is written).
    let kafka = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let kafka_addr = kafka.local_addr().expect("addr");
    let ctx = crate::network::ServeContext::for_broker(
        t.broker.clone(),
        "PLAINTEXT",
        ListenerKind::Broker,
    );
    tokio::spawn(async move {
        while let Ok((stream, peer)) = kafka.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    // The HTTP listener, as server::start wires it.
    let cell = Arc::new(OnceLock::new());
    let src = Arc::new(MetricsSource {
        request_metrics: t.broker.request_metrics.clone(),
        broker: cell.clone(),
        console: Arc::new(crate::console::Console::new()),
        metrics_token: None,
    });
    let http_l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = http_l.local_addr().expect("addr");
    tokio::spawn(super::http::serve(http_l, src));

    // Before the broker state exists (catching up with the metadata): live, not ready.
    assert_eq!(get(addr, "/health/live").await.0, 200);
    let (code, body) = get(addr, "/health/ready").await;
    assert_eq!(
        (code, body.trim()),
        (503, "not ready: catching up with the metadata log")
    );
    let _ = cell.set(t.broker.clone());
    let mut ready = 0;
    for _ in 0..100 {
        ready = get(addr, "/health/ready").await.0;
        if ready == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(ready, 200, "registered and unfenced");

    // Bad requests are answered, never fatal.
    assert_eq!(http(addr, "POST /metrics HTTP/1.1\r\n\r\n").await.0, 405);
    assert_eq!(get(addr, "/nope").await.0, 404);
    assert_eq!(http(addr, "GET /metrics\r\n\r\n").await.0, 400);
    assert_eq!(
        http(addr, &format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000)))
            .await
            .0,
        400
    );

    const BYTES_IN: &str = "kafka_server_brokertopicmetrics_bytesin_total{topic=\"metered\"}";
    const MSGS_IN: &str = "kafka_server_brokertopicmetrics_messagesin_total{topic=\"metered\"}";
    const BYTES_OUT: &str = "kafka_server_brokertopicmetrics_bytesout_total{topic=\"metered\"}";
    const PRODUCE_COUNT: &str =
        "kafka_network_requestmetrics_totaltimems_count{request=\"Produce\",listener=\"broker\"}";
    const PRODUCE_INF: &str = "kafka_network_requestmetrics_totaltimems_bucket{request=\"Produce\",listener=\"broker\",le=\"+Inf\"}";
    let (code, before) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(before.contains("# TYPE kafka_server_brokertopicmetrics_bytesin_total counter"));
    assert!(
        before.contains(BYTES_IN),
        "the hosted topic is listed: {before}"
    );

    let mut conn = nagare_client::Connection::connect(&kafka_addr.to_string(), "metrics-it")
        .await
        .expect("connect");
    // A group that consumed everything so far (offset 0 of the empty topic) and stopped.
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("stopped")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(s("metered")))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(0),
                ]),
        ]);
    let mut code = -1;
    for _ in 0..200 {
        // FindCoordinator creates __consumer_offsets on first use, as Kafka does.
        conn.send_version(&FindCoordinatorRequest::default().with_key(s("stopped")), 3)
            .await
            .expect("FindCoordinator");
        let r = conn.send_version(&commit, 8).await.expect("OffsetCommit");
        code = r.topics[0].partitions[0].error_code;
        // The coordinator loads __consumer_offsets on first use (14, 15, 16 meanwhile).
        if code == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(code, 0, "offset committed");

    // Produce three batches of 10 records of 100-byte values: N bytes of record batches.
    let mut n = 0u64;
    for _ in 0..3 {
        let records = batch(10, 100);
        n += records.len() as u64;
        let req = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(TopicName(s("metered")))
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ])]);
        let r = conn.send_version(&req, 9).await.expect("Produce");
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s("metered")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let f = conn.send_version(&fetch, 12).await.expect("Fetch");
    let fetched = f.responses[0].partitions[0]
        .records
        .as_ref()
        .map(|r| r.len() as u64);
    assert_eq!(fetched, Some(n), "one fetch returns the three batches");

    // The writer records a request after its last byte: poll until Produce shows up.
    let mut after = String::new();
    for _ in 0..100 {
        after = get(addr, "/metrics").await.1;
        if value(&after, PRODUCE_COUNT) - value(&before, PRODUCE_COUNT) >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Bytes in are the record batches exactly as produced (Kafka's BytesInPerSec: batch
    // headers included, the Produce request's own fields not): N exactly. Over the 3,000
    // value bytes that is at most a 61-byte batch header and ~10 bytes of record framing
    // per record (kafka-protocol's encoder may cut the records into several batches).
    let bytes_in = value(&after, BYTES_IN) - value(&before, BYTES_IN);
    assert_eq!(bytes_in, n as f64);
    assert!(
        (3_000.0..=3_000.0 + 30.0 * (61.0 + 10.0)).contains(&bytes_in),
        "{bytes_in}"
    );
    assert_eq!(value(&after, MSGS_IN) - value(&before, MSGS_IN), 30.0);
    assert_eq!(
        value(&after, BYTES_OUT) - value(&before, BYTES_OUT),
        n as f64
    );
    assert_eq!(
        value(&after, PRODUCE_COUNT) - value(&before, PRODUCE_COUNT),
        3.0
    );
    assert_eq!(value(&after, PRODUCE_INF), value(&after, PRODUCE_COUNT));
    // Every part is observed once per request; no quota, so no throttle time.
    for part in [
        "requestqueuetimems",
        "localtimems",
        "remotetimems",
        "responsequeuetimems",
        "responsesendtimems",
        "throttletimems",
    ] {
        let series = format!(
            "kafka_network_requestmetrics_{part}_count{{request=\"Produce\",listener=\"broker\"}}"
        );
        assert_eq!(
            value(&after, &series),
            value(&after, PRODUCE_COUNT),
            "{part}"
        );
    }
    assert_eq!(
        value(&after, "kafka_network_requestmetrics_throttletimems_sum{request=\"Produce\",listener=\"broker\"}"),
        0.0
    );
    assert!(
        value(
            &after,
            "kafka_network_requestmetrics_totaltimems_sum{request=\"Produce\",listener=\"broker\"}"
        ) > 0.0
    );
    assert!(after.contains("kafka_network_requestmetrics_requests_total{request=\"Produce\",version=\"9\",listener=\"broker\"} 3\n"));
    // Kafka splits Fetch: a consumer's is FetchConsumer; a fetch with a replica id (here on a
    // second connection, whatever its outcome) is FetchFollower.
    assert!(after.contains(
        "kafka_network_requestmetrics_requests_total{request=\"FetchConsumer\",version=\"12\",listener=\"broker\"} 1\n"
    ));
    assert!(!after.contains("request=\"FetchFollower\""));
    let mut follower = nagare_client::Connection::connect(&kafka_addr.to_string(), "follower")
        .await
        .expect("connect");
    let _ = follower
        .send_version(&fetch.clone().with_replica_id(BrokerId(7)), 12)
        .await;
    let mut scrape = String::new();
    for _ in 0..100 {
        scrape = get(addr, "/metrics").await.1;
        if scrape.contains("request=\"FetchFollower\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(scrape.contains(
        "kafka_network_requestmetrics_requests_total{request=\"FetchFollower\",version=\"12\",listener=\"broker\"} 1\n"
    ), "{scrape}");
    assert!(scrape.contains(
        "kafka_network_requestmetrics_requests_total{request=\"FetchConsumer\",version=\"12\",listener=\"broker\"} 1\n"
    ));
    assert!(
        value(
            &after,
            "kafka_server_socket_server_metrics_connection_count{listener=\"PLAINTEXT\"}"
        ) >= 1.0
    );
    // One node: it leads every partition (the topic and __consumer_offsets').
    let leaders = value(&after, "kafka_server_replicamanager_leadercount");
    assert!(leaders >= 1.0);
    assert_eq!(
        value(&after, "kafka_server_replicamanager_partitioncount"),
        leaders
    );
    assert_eq!(
        value(
            &after,
            "kafka_server_replicamanager_underreplicatedpartitions"
        ),
        0.0
    );
    assert_eq!(value(&after, "nagare_ready"), 1.0);
    // The stopped group's lag is the 30 records produced since its commit.
    let group = "{consumergroup=\"stopped\",topic=\"metered\",partition=\"0\"}";
    assert_eq!(
        value(&after, &format!("kafka_consumergroup_lag{group}")),
        30.0,
        "{after}"
    );
    assert_eq!(
        value(
            &after,
            &format!("kafka_consumergroup_current_offset{group}")
        ),
        0.0
    );
    assert!(after.contains(&format!("kafka_consumergroup_current_offset{group} 0\n")));
    // acks=all waited for the group commit's fsyncs.
    assert!(
        value(
            &after,
            "kafka_log_logflushstats_logflushrateandtimems_count"
        ) >= 1.0
    );
    assert!(after.contains("# TYPE kafka_server_replicamanager_isrshrinks_total counter"));
    assert!(
        value(
            &after,
            "kafka_server_broker_metadata_metrics_last_applied_record_offset"
        ) > 0.0
    );
    if std::path::Path::new("/proc/self/stat").exists() {
        assert!(value(&after, "process_open_fds") > 0.0);
        assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    }
    // Every series the Grafana dashboard in the repository queries is exported.
    let dashboard = include_str!("../../../../docs/grafana/nagare-overview.json");
    for token in dashboard.split(|c: char| !(c.is_ascii_lowercase() || c == '_')) {
        if !["kafka_", "nagare_", "process_"]
            .iter()
            .any(|p| token.starts_with(p))
        {
            continue;
        }
        // The test broker's quorum is a stand-in without raft state (no `broker.quorum`).
        if token == "nagare_metadata_apply_lag_records" || token.starts_with("kafka_server_raft_") {
            assert!(t.broker.quorum.get().is_none());
            continue;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|x| token.strip_suffix(x))
            .unwrap_or(token);
        assert!(
            after.contains(&format!("# TYPE {token} "))
                || after.contains(&format!("# TYPE {family} histogram")),
            "the dashboard queries {token}, which /metrics lacks"
        );
    }

    // A consumer long-polling at the log end is parked in the delayed-fetch purgatory.
    const PURGATORY: &str =
        "kafka_server_delayedoperationpurgatory_purgatorysize{delayedOperation=\"Fetch\"}";
    assert_eq!(value(&after, PURGATORY), 0.0);
    let mut poller = nagare_client::Connection::connect(&kafka_addr.to_string(), "poller")
        .await
        .expect("connect");
    let long_poll = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(5_000)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s("metered")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(30)
                .with_partition_max_bytes(1 << 20)])]);
    let parked = tokio::spawn(async move { poller.send_version(&long_poll, 12).await });
    let mut size = 0.0;
    for _ in 0..100 {
        size = value(&get(addr, "/metrics").await.1, PURGATORY);
        if size == 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(size, 1.0, "the long poll is parked");
    let req = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s("metered")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(1, 10))),
            ])]);
    conn.send_version(&req, 9).await.expect("Produce");
    let r = tokio::time::timeout(Duration::from_secs(10), parked)
        .await
        .expect("woken by the produce")
        .expect("task")
        .expect("Fetch");
    assert!(r.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|b| !b.is_empty()));
    for _ in 0..100 {
        size = value(&get(addr, "/metrics").await.1, PURGATORY);
        if size == 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(size, 0.0, "the completed fetch left the purgatory");

    // Errors per API (ErrorsPerSec): every code in a response, NONE included, per partition
    // for Produce. One produce to a partition that does not exist, one that succeeds.
    const OK: &str = "kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"NONE\",listener=\"broker\"}";
    const UNKNOWN: &str = "kafka_network_requestmetrics_errors_total{request=\"Produce\",error=\"UNKNOWN_TOPIC_OR_PARTITION\",listener=\"broker\"}";
    let before = get(addr, "/metrics").await.1;
    assert!(
        value(&before, OK) >= 4.0,
        "the produces so far had no error: {before}"
    );
    assert_eq!(value(&before, UNKNOWN), 0.0);
    let bad = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s("metered")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(1, 10))),
                produce_request::PartitionProduceData::default()
                    .with_index(7)
                    .with_records(Some(batch(1, 10))),
            ])]);
    let r = conn.send_version(&bad, 9).await.expect("Produce");
    assert_eq!(r.responses[0].partition_responses[1].error_code, 3);
    let mut after = String::new();
    for _ in 0..100 {
        after = get(addr, "/metrics").await.1;
        if value(&after, UNKNOWN) > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(value(&after, UNKNOWN), 1.0, "{after}");
    assert_eq!(value(&after, OK) - value(&before, OK), 1.0);
}

/// `metrics.enabled=false` (for measuring their cost): a listener records no request
/// metrics; by default it does.
#[tokio::test]
async fn metrics_enabled_false_stops_request_recording() {
    let on = TestBroker::start().await;
    let ctx = crate::network::ServeContext::for_broker(
        on.broker.clone(),
        "PLAINTEXT",
        ListenerKind::Broker,
    );
    assert!(ctx.metrics.is_some());
    let off = TestBroker::build(&[("metrics.enabled", "false")], None).await;
    let ctx = crate::network::ServeContext::for_broker(
        off.broker.clone(),
        "PLAINTEXT",
        ListenerKind::Broker,
    );
    assert!(ctx.metrics.is_none(), "no request metrics recorded");
}
