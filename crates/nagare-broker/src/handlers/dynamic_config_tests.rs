//! Dynamic broker configs and KIP-848 group configs through the real request pipeline
//! (issue 17): IncrementalAlterConfigs/AlterConfigs accept what Kafka 4.x marks dynamic,
//! persist it in the metadata log, DescribeConfigs reports it with its source and synonyms,
//! and what Nagare acts on takes effect.

use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    alter_configs_request, AlterConfigsRequest, ConsumerGroupHeartbeatRequest,
    DescribeConfigsRequest, FindCoordinatorRequest, GroupId, IncrementalAlterConfigsRequest,
    TopicName,
};
use nagare_metadata::records::ConfigResource;

use crate::handlers::sb;
use crate::testing::TestBroker;

const BROKER: i8 = 4;
const GROUP: i8 = 32;
const TOPIC: i8 = 2;
const INVALID_CONFIG: i16 = 40;
const INVALID_REQUEST: i16 = 42;

/// IncrementalAlterConfigs SET (`Some`) / DELETE (`None`) on one resource: (code, message).
async fn alter(
    t: &TestBroker,
    resource_type: i8,
    name: &str,
    ops: &[(&str, Option<&str>)],
) -> (i16, Option<String>) {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(sb(name))
            .with_configs(
                ops.iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(sb(*k))
                            .with_config_operation(if v.is_some() { 0 } else { 1 })
                            .with_value(v.map(sb))
                    })
                    .collect(),
            ),
    ]);
    let r = t.send(&req, 1).await.expect("IncrementalAlterConfigs");
    let res = &r.responses[0];
    (
        res.error_code,
        res.error_message.as_ref().map(|m| m.to_string()),
    )
}

async fn describe(t: &TestBroker, resource_type: i8, name: &str) -> DescribeConfigsResult {
    let r = t
        .send(
            &DescribeConfigsRequest::default()
                .with_include_synonyms(true)
                .with_include_documentation(true)
                .with_resources(vec![DescribeConfigsResource::default()
                    .with_resource_type(resource_type)
                    .with_resource_name(sb(name))]),
            4,
        )
        .await
        .expect("DescribeConfigs");
    r.results.into_iter().next().expect("one result")
}

fn entry<'a>(r: &'a DescribeConfigsResult, k: &str) -> &'a DescribeConfigsResourceResult {
    r.configs
        .iter()
        .find(|c| c.name.as_str() == k)
        .unwrap_or_else(|| panic!("{k} missing"))
}

/// (value, source, synonym sources) of a described config.
fn shown(r: &DescribeConfigsResult, k: &str) -> (Option<String>, i8, Vec<i8>) {
    let e = entry(r, k);
    (
        e.value.as_ref().map(|v| v.to_string()),
        e.config_source,
        e.synonyms.iter().map(|s| s.source).collect(),
    )
}

#[tokio::test]
async fn dynamic_broker_configs_are_accepted_stored_described_and_applied() {
    let t = TestBroker::build(&[("num.io.threads", "6")], None).await;
    // Cluster-wide (`--entity-default`, name "") and per broker.
    let ok = alter(
        &t,
        BROKER,
        "",
        &[
            ("num.io.threads", Some("16")),
            ("message.max.bytes", Some("2000000")),
            ("max.connections.per.ip", Some("1")),
            ("unclean.leader.election.enable", Some("true")),
        ],
    )
    .await;
    assert_eq!(ok, (0, None));
    let ok = alter(
        &t,
        BROKER,
        "1",
        &[
            ("background.threads", Some("4")),
            ("num.replica.fetchers", Some("2")),
            ("leader.replication.throttled.rate", Some("1048576")),
            (
                "listener.name.external.ssl.keystore.location",
                Some("/etc/k.pem"),
            ),
            ("listener.name.external.ssl.key.password", Some("secret")),
        ],
    )
    .await;
    assert_eq!(ok, (0, None));

    // Refusals, with Kafka's code and message; nothing of a refused resource is stored.
    let (code, msg) = alter(&t, BROKER, "1", &[("node.id", Some("7"))]).await;
    assert_eq!(code, INVALID_REQUEST);
    let msg = msg.unwrap_or_default();
    assert!(
        msg.contains("Cannot update these configs dynamically: Set(node.id)"),
        "{msg}"
    );
    for (name, key, value, want) in [
        (
            "",
            "listener.name.external.ssl.keystore.location",
            "/k",
            "broker id must be specified",
        ),
        ("1", "ssl.keystore.location", "/k", "only per-listener"),
        ("", "num.io.threads", "many", "Not a number of type INT"),
        (
            "",
            "background.threads",
            "99999999999",
            "Not a number of type INT",
        ),
        (
            "",
            "log.dirs",
            "/tmp",
            "Cannot update these configs dynamically",
        ),
    ] {
        let (code, msg) = alter(&t, BROKER, name, &[(key, Some(value))]).await;
        assert_eq!(code, INVALID_REQUEST, "{key}");
        let msg = msg.unwrap_or_default();
        assert!(msg.contains(want), "{key}: {msg}");
    }

    // Persisted as ConfigRecords on BROKER resources, "" being the cluster default.
    let img = t.broker.image();
    let cluster = img.config_overrides(ConfigResource::Broker, "");
    assert_eq!(
        cluster.get("num.io.threads").map(String::as_str),
        Some("16")
    );
    let node = img.config_overrides(ConfigResource::Broker, "1");
    assert_eq!(
        node.get("background.threads").map(String::as_str),
        Some("4")
    );
    assert!(!node.contains_key("node.id"));

    // Described with their source and synonyms in Kafka's order.
    let d = describe(&t, BROKER, "1").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(
        shown(&d, "num.io.threads"),
        (Some("16".into()), 3, vec![3, 4, 5])
    );
    assert_eq!(
        shown(&d, "background.threads"),
        (Some("4".into()), 2, vec![2, 5])
    );
    assert_eq!(
        shown(&d, "message.max.bytes"),
        (Some("2000000".into()), 3, vec![3, 5])
    );
    assert_eq!(entry(&d, "message.max.bytes").config_type, 3);
    assert!(entry(&d, "node.id").read_only);
    assert!(!entry(&d, "num.io.threads").read_only);
    let ks = entry(&d, "listener.name.external.ssl.keystore.location");
    assert_eq!(
        (
            ks.value.as_ref().map(|v| v.as_str()),
            ks.config_source,
            ks.config_type
        ),
        (Some("/etc/k.pem"), 2, 2)
    );
    let pw = entry(&d, "listener.name.external.ssl.key.password");
    assert!(
        pw.is_sensitive && pw.value.is_none(),
        "a password is never shown"
    );
    // The cluster default resource lists only its dynamic values, as Kafka.
    let d = describe(&t, BROKER, "").await;
    let names: Vec<&str> = d.configs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "max.connections.per.ip",
            "message.max.bytes",
            "num.io.threads",
            "unclean.leader.election.enable"
        ]
    );
    assert!(d.configs.iter().all(|c| c.config_source == 3));
    // A per-broker value beats the cluster default; both are synonyms.
    assert_eq!(
        alter(&t, BROKER, "1", &[("message.max.bytes", Some("3000000"))]).await,
        (0, None)
    );
    let d = describe(&t, BROKER, "1").await;
    assert_eq!(
        shown(&d, "message.max.bytes"),
        (Some("3000000".into()), 2, vec![2, 3, 5])
    );

    // Applied: the topic default follows message.max.bytes, the connection limit per ip
    // takes the dynamic value (a second connection from one address is refused).
    assert_eq!(
        t.broker
            .topic_defaults()
            .value(&Default::default(), "max.message.bytes")
            .as_deref(),
        Some("3000000")
    );
    let ip: std::net::IpAddr = [127, 0, 0, 9].into();
    let first = t.broker.connection_quotas.admit(ip, 0);
    assert!(matches!(
        first,
        crate::connection_quotas::Admission::Admit(_)
    ));
    assert!(matches!(
        t.broker.connection_quotas.admit(ip, 0),
        crate::connection_quotas::Admission::TooMany { max: 1 }
    ));
    drop(first);
    // Deleting the dynamic value restores the file's (here Kafka's default, unlimited).
    assert_eq!(
        alter(&t, BROKER, "", &[("max.connections.per.ip", None)]).await,
        (0, None)
    );
    let a = t.broker.connection_quotas.admit(ip, 0);
    let b = t.broker.connection_quotas.admit(ip, 0);
    assert!(matches!(b, crate::connection_quotas::Admission::Admit(_)));
    drop((a, b));

    // KIP-890 verification and producer-id expiry follow their dynamic values.
    assert!(t
        .broker
        .runtime_settings
        .transaction_partition_verification_enable());
    assert_eq!(
        alter(
            &t,
            BROKER,
            "1",
            &[
                ("transaction.partition.verification.enable", Some("false")),
                ("producer.id.expiration.ms", Some("60000")),
            ],
        )
        .await,
        (0, None)
    );
    assert!(!t
        .broker
        .runtime_settings
        .transaction_partition_verification_enable());
    assert_eq!(
        t.broker.runtime_settings.producer_id_expiration_ms(),
        60_000
    );

    // AlterConfigs replaces the per-broker set: what is not given is removed.
    let r = t
        .send(
            &AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(BROKER)
                    .with_resource_name(sb("1"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(sb("num.network.threads"))
                        .with_value(Some(sb("5")))]),
            ]),
            2,
        )
        .await
        .expect("AlterConfigs");
    assert_eq!(r.responses[0].error_code, 0);
    let node = t
        .broker
        .image()
        .config_overrides(ConfigResource::Broker, "1");
    assert_eq!(
        node.keys().map(String::as_str).collect::<Vec<_>>(),
        vec!["num.network.threads"]
    );
    assert!(t
        .broker
        .runtime_settings
        .transaction_partition_verification_enable());
}

#[tokio::test]
async fn group_configs_are_validated_stored_described_and_applied() {
    let t = TestBroker::start().await;
    // Kafka's GroupConfig: bounds from group.consumer.min/max.*, session > heartbeat.
    assert_eq!(
        alter(
            &t,
            GROUP,
            "g-cfg",
            &[
                ("consumer.heartbeat.interval.ms", Some("7000")),
                ("consumer.session.timeout.ms", Some("50000")),
            ],
        )
        .await,
        (0, None)
    );
    for (key, value, want) in [
        (
            "consumer.session.timeout.ms",
            "1000",
            "must be greater than or equal to group.consumer.min.session.timeout.ms",
        ),
        (
            "consumer.heartbeat.interval.ms",
            "60000",
            "must be less than or equal to group.consumer.max.heartbeat.interval.ms",
        ),
        ("consumer.session.timeout.ms", "soon", "Not a number"),
        ("group.id", "x", "Unknown group config name: group.id"),
        ("share.auto.offset.reset", "middle", "latest, earliest"),
    ] {
        let (code, msg) = alter(&t, GROUP, "g-cfg", &[(key, Some(value))]).await;
        assert_eq!(code, INVALID_CONFIG, "{key}={value}");
        let msg = msg.unwrap_or_default();
        assert!(msg.contains(want), "{key}: {msg}");
    }
    let stored = t
        .broker
        .image()
        .config_overrides(ConfigResource::Group, "g-cfg");
    assert_eq!(
        stored
            .get("consumer.heartbeat.interval.ms")
            .map(String::as_str),
        Some("7000")
    );

    // Described: the group's values (GROUP_CONFIG, 8), the rest from the broker (5).
    let d = describe(&t, GROUP, "g-cfg").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(
        shown(&d, "consumer.heartbeat.interval.ms"),
        (Some("7000".into()), 8, vec![8, 5])
    );
    assert_eq!(
        shown(&d, "share.auto.offset.reset"),
        (Some("latest".into()), 5, vec![5])
    );
    assert_eq!(entry(&d, "consumer.session.timeout.ms").config_type, 3);
    assert!(entry(&d, "consumer.session.timeout.ms")
        .documentation
        .is_some());
    assert_eq!(d.configs.len(), crate::config::GROUP_CONFIGS.len());

    // Applied by the KIP-848 coordinator: members of g-cfg are told 7000 ms, others the
    // broker's 5000 ms.
    t.create_topic("cfg-topic", 1).await;
    let hb = |group: &str| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(sb(group)))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(sb("cfg-topic"))]))
            .with_topic_partitions(Some(vec![]))
    };
    let interval = |group: &'static str| {
        let t = &t;
        async move {
            t.send(&FindCoordinatorRequest::default().with_key(sb(group)), 3)
                .await
                .expect("FindCoordinator");
            for _ in 0..200 {
                let r = t.send(&hb(group), 0).await.expect("ConsumerGroupHeartbeat");
                if r.error_code == 0 {
                    return r.heartbeat_interval_ms;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the coordinator of {group} never answered");
        }
    };
    assert_eq!(interval("g-cfg").await, 7000);
    assert_eq!(interval("g-other").await, 5000);
    // A change applies from the next heartbeat; deleting it restores the broker's value.
    assert_eq!(
        alter(
            &t,
            GROUP,
            "g-cfg",
            &[("consumer.heartbeat.interval.ms", None)]
        )
        .await,
        (0, None)
    );
    assert_eq!(interval("g-cfg").await, 5000);
    let d = describe(&t, GROUP, "g-cfg").await;
    assert_eq!(
        shown(&d, "consumer.heartbeat.interval.ms"),
        (Some("5000".into()), 5, vec![5])
    );
}

/// Topics: every config, typed, documented when asked.
#[tokio::test]
async fn topic_configs_are_all_typed_and_documented() {
    let t = TestBroker::start().await;
    t.create_topic("docs", 1).await;
    let d = describe(&t, TOPIC, "docs").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(
        d.configs.len(),
        nagare_metadata::topic_config::TOPIC_CONFIGS.len()
    );
    for c in &d.configs {
        assert_ne!(c.config_type, 0, "{} untyped", c.name.as_str());
        assert!(
            c.documentation.is_some(),
            "{} undocumented",
            c.name.as_str()
        );
    }
    assert_eq!(shown(&d, "retention.ms").1, 5);
}
