//! KIP-714 through the request pipeline: a CLIENT_METRICS subscription set with
//! IncrementalAlterConfigs and read back with DescribeConfigs, then GetTelemetrySubscriptions
//! and PushTelemetry, and the pushed metric on `/metrics`.

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::client_telemetry::otlp::encode::{metric, metrics_data, point};
use crate::testing::TestBroker;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn set(name: &str, value: &str) -> incremental_alter_configs_request::AlterableConfig {
    incremental_alter_configs_request::AlterableConfig::default()
        .with_name(s(name))
        .with_config_operation(0)
        .with_value(Some(s(value)))
}

async fn alter(
    t: &TestBroker,
    sub: &str,
    configs: Vec<incremental_alter_configs_request::AlterableConfig>,
) -> i16 {
    let r = t
        .send(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(16)
                    .with_resource_name(s(sub))
                    .with_configs(configs),
            ]),
            1,
        )
        .await
        .expect("IncrementalAlterConfigs");
    r.responses[0].error_code
}

#[tokio::test]
async fn subscription_get_push_and_metrics_endpoint() {
    let t = TestBroker::start().await;
    assert_eq!(
        alter(
            &t,
            "apps",
            vec![
                set("metrics", "org.apache.kafka.producer."),
                set("interval.ms", "1000"),
                set("match", "client_id=nobody"),
            ],
        )
        .await,
        0
    );
    // Kafka's validation: intervals below 100 ms and unknown configs are INVALID_REQUEST.
    assert_eq!(alter(&t, "bad", vec![set("interval.ms", "5")]).await, 42);
    assert_eq!(alter(&t, "bad", vec![set("colour", "red")]).await, 42);

    let d = t
        .send(
            &DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(16)
                    .with_resource_name(s("apps")),
            ]),
            4,
        )
        .await
        .expect("DescribeConfigs");
    let configs: Vec<(String, Option<String>, i8)> = d.results[0]
        .configs
        .iter()
        .map(|c| {
            (
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()),
                c.config_source,
            )
        })
        .collect();
    assert!(
        configs.contains(&("interval.ms".into(), Some("1000".into()), 8)),
        "{configs:?}"
    );

    // The TestBroker's client is not selected by `client_id=nobody`.
    let g = t
        .send(&GetTelemetrySubscriptionsRequest::default(), 0)
        .await
        .expect("GetTelemetrySubscriptions");
    assert_eq!(g.error_code, 0);
    assert!(g.requested_metrics.is_empty(), "{g:?}");
    assert_eq!(
        alter(&t, "apps", vec![set("match", "client_id=.*")]).await,
        0
    );
    let g = t
        .send(
            &GetTelemetrySubscriptionsRequest::default()
                .with_client_instance_id(g.client_instance_id),
            0,
        )
        .await
        .expect("GetTelemetrySubscriptions");
    assert_eq!(g.error_code, 0, "a changed subscription is not throttled");
    assert_eq!(g.push_interval_ms, 1000);
    assert_eq!(
        g.requested_metrics
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>(),
        vec!["org.apache.kafka.producer."]
    );
    assert_eq!(g.telemetry_max_bytes, 1024 * 1024);

    let payload = metrics_data(
        &[],
        &[metric(
            "org.apache.kafka.producer.record.queue.time.avg",
            None,
            &[point(Ok(3.25), &[])],
        )],
    );
    let p = t
        .send(
            &PushTelemetryRequest::default()
                .with_client_instance_id(g.client_instance_id)
                .with_subscription_id(g.subscription_id)
                .with_metrics(payload.clone().into()),
            0,
        )
        .await
        .expect("PushTelemetry");
    assert_eq!(p.error_code, 0);
    let again = t
        .send(
            &PushTelemetryRequest::default()
                .with_client_instance_id(g.client_instance_id)
                .with_subscription_id(g.subscription_id)
                .with_metrics(payload.into()),
            0,
        )
        .await
        .expect("PushTelemetry");
    assert_eq!(
        again.error_code, 89,
        "THROTTLING_QUOTA_EXCEEDED within the interval"
    );

    let src = crate::metrics::MetricsSource {
        request_metrics: t.broker.request_metrics.clone(),
        broker: std::sync::Arc::new(std::sync::OnceLock::from(t.broker.clone())),
        console: std::sync::Arc::new(crate::console::Console::new()),
        metrics_token: None,
    };
    let text = crate::metrics::render_with(&src, &[]);
    let line = text
        .lines()
        .find(|l| l.starts_with("org_apache_kafka_producer_record_queue_time_avg{"))
        .unwrap_or_else(|| panic!("pushed metric missing:\n{text}"));
    assert!(
        line.contains(&format!("client_instance_id=\"{}\"", g.client_instance_id)),
        "{line}"
    );
    assert!(line.ends_with(" 3.25"), "{line}");
}
