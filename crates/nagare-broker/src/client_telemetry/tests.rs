//! The KIP-714 rules of [`ClientTelemetry`], on a fake clock.

use std::io::Write;

use nagare_controller::client_metrics::{ClientSelector, DEFAULT_INTERVAL_MS};
use nagare_metadata::records::ConfigResource;
use nagare_metadata::MetadataImage;
use nagare_protocol::error::ResponseError;
use uuid::Uuid;

use super::otlp::encode::{metric, metrics_data, point};
use super::{ClientTelemetry, Push};
use crate::metrics::prometheus::Exposition;

fn image_with(subs: &[(&str, &[(&str, &str)])]) -> MetadataImage {
    let mut img = MetadataImage::empty();
    for (name, cfg) in subs {
        img.configs.insert(
            (ConfigResource::ClientMetrics, name.to_string()),
            cfg.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
    }
    img.offset = 10;
    img
}

fn client() -> ClientSelector {
    ClientSelector {
        client_id: "app-1".into(),
        client_software_name: "librdkafka".into(),
        client_software_version: "2.5.0".into(),
        client_source_address: "127.0.0.1".into(),
        client_source_port: "5555".into(),
        ..Default::default()
    }
}

fn payload() -> Vec<u8> {
    metrics_data(
        &[],
        &[
            metric(
                "org.apache.kafka.producer.node.request.latency.avg",
                None,
                &[point(Ok(2.5), &[("node_id", "1")])],
            ),
            metric(
                "org.apache.kafka.producer.record.retries",
                Some((true, false)),
                &[point(Err(7), &[])],
            ),
        ],
    )
}

fn push<'a>(id: Uuid, sub: i32, metrics: &'a [u8]) -> Push<'a> {
    Push {
        client_instance_id: id,
        subscription_id: sub,
        terminating: false,
        compression_type: 0,
        metrics,
    }
}

#[test]
fn without_a_subscription_a_client_gets_an_id_and_no_metrics() {
    let t = ClientTelemetry::new(1024);
    let a = t.get_subscriptions(&MetadataImage::empty(), Uuid::nil(), client(), 0);
    assert_eq!(a.error, 0);
    assert!(!a.client_instance_id.is_nil(), "an id is assigned");
    assert!(a.requested_metrics.is_empty());
    assert_eq!(a.push_interval_ms, DEFAULT_INTERVAL_MS);
    // The id the client then uses is kept.
    let b = t.get_subscriptions(
        &MetadataImage::empty(),
        a.client_instance_id,
        client(),
        DEFAULT_INTERVAL_MS as u64,
    );
    assert_eq!(b.error, 0);
    assert_eq!(b.client_instance_id, a.client_instance_id);
    assert_eq!(t.instance_count(), 1);
}

#[test]
fn subscriptions_throttling_and_push_errors_follow_kafka() {
    let img = image_with(&[(
        "producers",
        &[
            ("metrics", "org.apache.kafka.producer."),
            ("interval.ms", "1000"),
            ("match", "client_software_name=librdkafka"),
        ],
    )]);
    let t = ClientTelemetry::new(4096);
    let a = t.get_subscriptions(&img, Uuid::nil(), client(), 0);
    assert_eq!(a.requested_metrics, vec!["org.apache.kafka.producer."]);
    assert_eq!(a.push_interval_ms, 1000);
    let id = a.client_instance_id;
    // Asking again within the interval is throttled.
    let again = t.get_subscriptions(&img, id, client(), 500);
    assert_eq!(again.error, ResponseError::ThrottlingQuotaExceeded.code());

    let data = payload();
    // A wrong subscription id: UNKNOWN_SUBSCRIPTION_ID; the client may then ask at once.
    assert_eq!(
        t.push(&img, &push(id, a.subscription_id ^ 1, &data), client(), 600),
        ResponseError::UnknownSubscriptionId.code()
    );
    let b = t.get_subscriptions(&img, id, client(), 601);
    assert_eq!(b.error, 0, "not throttled after UNKNOWN_SUBSCRIPTION_ID");
    // A push right after GetTelemetrySubscriptions is accepted even within the interval
    // (clients jitter their pushes).
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &data), client(), 700),
        0
    );
    // The next one must wait for the interval.
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &data), client(), 1200),
        ResponseError::ThrottlingQuotaExceeded.code()
    );
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &data), client(), 1700),
        0
    );
    // Too large, and a compression type not accepted (snappy).
    let big = vec![0u8; 4097];
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &big), client(), 2700),
        ResponseError::TelemetryTooLarge.code()
    );
    let mut snappy = push(id, b.subscription_id, &data);
    snappy.compression_type = 2;
    assert_eq!(
        t.push(&img, &snappy, client(), 3700),
        ResponseError::UnsupportedCompressionType.code()
    );
    // Garbage that is not OTLP: INVALID_RECORD.
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &[0x0b]), client(), 4700),
        ResponseError::InvalidRecord.code()
    );
    // The zero id is invalid for a push.
    assert_eq!(
        t.push(&img, &push(Uuid::nil(), 0, &data), client(), 5700),
        ResponseError::InvalidRequest.code()
    );
    // A terminating push is never throttled; nothing is accepted after it.
    let mut last = push(id, b.subscription_id, &data);
    last.terminating = true;
    assert_eq!(t.push(&img, &last, client(), 5701), 0);
    assert_eq!(
        t.push(&img, &push(id, b.subscription_id, &data), client(), 9000),
        ResponseError::InvalidRequest.code()
    );
}

#[test]
fn a_changed_subscription_makes_pushes_fail_until_the_client_asks_again() {
    let cfg: &[(&str, &str)] = &[("metrics", "*"), ("interval.ms", "1000")];
    let img = image_with(&[("all", cfg)]);
    let t = ClientTelemetry::new(4096);
    let a = t.get_subscriptions(&img, Uuid::nil(), client(), 0);
    assert_eq!(
        a.requested_metrics,
        vec![String::new()],
        "`*`: every metric"
    );
    let data = payload();
    assert_eq!(
        t.push(
            &img,
            &push(a.client_instance_id, a.subscription_id, &data),
            client(),
            10
        ),
        0
    );
    let mut changed = image_with(&[("all", &[("metrics", "org."), ("interval.ms", "2000")])]);
    changed.offset = 11;
    assert_eq!(
        t.push(
            &changed,
            &push(a.client_instance_id, a.subscription_id, &data),
            client(),
            1100
        ),
        ResponseError::UnknownSubscriptionId.code()
    );
    let b = t.get_subscriptions(&changed, a.client_instance_id, client(), 1101);
    assert_eq!(b.error, 0);
    assert_ne!(b.subscription_id, a.subscription_id);
    assert_eq!(b.requested_metrics, vec!["org."]);
    assert_eq!(b.push_interval_ms, 2000);
    // A client the `match` no longer selects gets nothing.
    let mut other = client();
    other.client_id = "other".into();
    let mut narrowed = image_with(&[("all", &[("metrics", "*"), ("match", "client_id=app-.*")])]);
    narrowed.offset = 12;
    let c = t.get_subscriptions(&narrowed, Uuid::nil(), other, 0);
    assert!(c.requested_metrics.is_empty());
}

#[test]
fn pushed_metrics_are_rendered_per_client_and_expire() {
    let img = image_with(&[("all", &[("metrics", "*"), ("interval.ms", "1000")])]);
    let t = ClientTelemetry::new(1 << 20);
    let a = t.get_subscriptions(&img, Uuid::nil(), client(), 0);
    // gzip and zstd payloads decode as the plain one does.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&payload()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let mut p = push(a.client_instance_id, a.subscription_id, &gz);
    p.compression_type = 1;
    assert_eq!(t.push(&img, &p, client(), 1), 0);
    let zs = zstd::stream::encode_all(&payload()[..], 3).expect("zstd");
    let mut p = push(a.client_instance_id, a.subscription_id, &zs);
    p.compression_type = 4;
    assert_eq!(t.push(&img, &p, client(), 1001), 0);

    let mut e = Exposition::new();
    t.render(&mut e, 1002);
    let text = e.finish();
    let id = a.client_instance_id.to_string();
    let gauge = format!(
        "org_apache_kafka_producer_node_request_latency_avg{{client_instance_id=\"{id}\",client_id=\"app-1\",client_software_name=\"librdkafka\",client_software_version=\"2.5.0\",client_source_address=\"127.0.0.1\",node_id=\"1\"}} 2.5"
    );
    assert!(text.contains(&gauge), "{text}");
    assert!(
        text.contains("# TYPE org_apache_kafka_producer_record_retries_total counter"),
        "{text}"
    );
    assert!(
        text.contains("kafka_server_client_metrics_instance_count 1"),
        "{text}"
    );
    // Idle for three intervals (at least a minute): forgotten with its metrics.
    let mut e = Exposition::new();
    t.render(&mut e, 1001 + 60_000);
    let text = e.finish();
    assert!(
        text.contains("kafka_server_client_metrics_instance_count 0"),
        "{text}"
    );
    assert!(!text.contains("org_apache_kafka_producer"), "{text}");
}
