//! In-process tests of client quotas: AlterClientQuotas through the controller into the
//! image, DescribeClientQuotas from it, and throttle_time_ms in Produce and Fetch responses.

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use nagare_protocol::error::ResponseError;

use crate::testing::TestBroker;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// The TestBroker's connection announces this client id.
const CLIENT: &str = "test-client";

fn alter(
    entity: &[(&str, Option<&str>)],
    ops: &[(&str, f64, bool)],
    validate_only: bool,
) -> AlterClientQuotasRequest {
    AlterClientQuotasRequest::default()
        .with_validate_only(validate_only)
        .with_entries(vec![alter_client_quotas_request::EntryData::default()
            .with_entity(
                entity
                    .iter()
                    .map(|(t, n)| {
                        alter_client_quotas_request::EntityData::default()
                            .with_entity_type(s(t))
                            .with_entity_name(n.map(s))
                    })
                    .collect(),
            )
            .with_ops(
                ops.iter()
                    .map(|(k, v, rm)| {
                        alter_client_quotas_request::OpData::default()
                            .with_key(s(k))
                            .with_value(*v)
                            .with_remove(*rm)
                    })
                    .collect(),
            )])
}

async fn alter_ok(t: &TestBroker, entity: &[(&str, Option<&str>)], ops: &[(&str, f64, bool)]) {
    let r = t
        .send(&alter(entity, ops, false), 1)
        .await
        .expect("AlterClientQuotas");
    assert_eq!(
        r.entries[0].error_code, 0,
        "{:?}",
        r.entries[0].error_message
    );
}

fn describe_all() -> DescribeClientQuotasRequest {
    DescribeClientQuotasRequest::default().with_components(vec![])
}

fn batch(n: usize) -> Bytes {
    let b = nagare_protocol::batch_builder::build_batch(
        (0..n).map(|i| (None, Some(Bytes::from(vec![b'x'; 100 + i % 2])))),
        0,
        0,
    )
    .expect("batch");
    b.freeze()
}

fn produce(records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(s("q")))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

fn fetch() -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(s("q")))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])])
}

#[tokio::test]
async fn alter_and_describe_go_through_the_controller_and_the_image() {
    let t = TestBroker::start().await;
    // validate_only checks and writes nothing.
    let r = t
        .send(
            &alter(
                &[("user", Some("alice"))],
                &[("producer_byte_rate", 1024.0, false)],
                true,
            ),
            1,
        )
        .await
        .expect("validate only");
    assert_eq!(r.entries[0].error_code, 0);
    assert!(t.broker.image().client_quotas.entities.is_empty());
    // Unknown keys and bad combinations: INVALID_REQUEST with Kafka's message.
    let r = t
        .send(
            &alter(&[("user", Some("alice"))], &[("bogus", 1.0, false)], false),
            1,
        )
        .await
        .expect("bad key");
    assert_eq!(
        r.entries[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert_eq!(
        r.entries[0].error_message.as_deref(),
        Some("Invalid configuration key bogus")
    );
    let r = t
        .send(
            &alter(
                &[("user", Some("a")), ("ip", None)],
                &[("producer_byte_rate", 1.0, false)],
                false,
            ),
            0,
        )
        .await
        .expect("bad combination");
    assert_eq!(
        r.entries[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    // Set on several entities, describe them back.
    alter_ok(
        &t,
        &[("user", Some("alice"))],
        &[("producer_byte_rate", 1024.0, false)],
    )
    .await;
    alter_ok(
        &t,
        &[("client-id", None), ("user", Some("alice"))],
        &[
            ("consumer_byte_rate", 2048.0, false),
            ("request_percentage", 12.5, false),
        ],
    )
    .await;
    alter_ok(
        &t,
        &[("ip", Some("10.1.2.3"))],
        &[("connection_creation_rate", 5.0, false)],
    )
    .await;
    let r = t.send(&describe_all(), 1).await.expect("describe");
    assert_eq!(r.error_code, 0);
    let entries = r.entries.expect("entries");
    assert_eq!(entries.len(), 3);
    // Exact user match, not strict: both alice entities.
    let only_alice = DescribeClientQuotasRequest::default().with_components(vec![
        describe_client_quotas_request::ComponentData::default()
            .with_entity_type(s("user"))
            .with_match_type(0)
            .with_match(Some(s("alice"))),
    ]);
    let r = t.send(&only_alice, 0).await.expect("describe alice");
    let entries = r.entries.expect("entries");
    assert_eq!(entries.len(), 2);
    let with_default_client = entries
        .iter()
        .find(|e| e.entity.len() == 2)
        .expect("user+default client-id");
    assert!(with_default_client
        .entity
        .iter()
        .any(|e| e.entity_type.as_str() == "client-id" && e.entity_name.is_none()));
    assert_eq!(with_default_client.values.len(), 2);
    // Strict: only the entity that is exactly user=alice.
    let r = t
        .send(&only_alice.clone().with_strict(true), 1)
        .await
        .expect("strict");
    let entries = r.entries.expect("entries");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].values[0].key.as_str(), "producer_byte_rate");
    assert_eq!(entries[0].values[0].value, 1024.0);
    // Remove: the entity disappears once its last key is gone.
    alter_ok(
        &t,
        &[("user", Some("alice"))],
        &[("producer_byte_rate", 0.0, true)],
    )
    .await;
    let r = t
        .send(&only_alice.with_strict(true), 1)
        .await
        .expect("after removal");
    assert!(r.entries.expect("entries").is_empty());
    // A bad filter is a top-level error.
    let bad = DescribeClientQuotasRequest::default().with_components(vec![
        describe_client_quotas_request::ComponentData::default()
            .with_entity_type(s("user"))
            .with_match_type(0)
            .with_match(None),
    ]);
    let r = t.send(&bad, 1).await.expect("bad filter");
    assert_eq!(r.error_code, ResponseError::InvalidRequest.code());
    assert!(r.entries.is_none());
}

#[tokio::test]
async fn produce_and_fetch_report_throttle_time_and_mute_the_connection() {
    let t = TestBroker::start().await;
    t.create_topic("q", 1).await;
    // No quota: no throttle.
    let r = t.send(&produce(batch(50)), 9).await.expect("produce");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(r.throttle_time_ms, 0);
    assert!(t.connection.muted_until().is_none());
    // 100 B/s for this client id: a ~5 KB request is 500 B/s over the 10-s minimum window.
    alter_ok(
        &t,
        &[("client-id", Some(CLIENT))],
        &[("producer_byte_rate", 100.0, false)],
    )
    .await;
    let r = t
        .send(&produce(batch(50)), 9)
        .await
        .expect("throttled produce");
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "appended anyway"
    );
    assert!(
        r.throttle_time_ms > 10_000,
        "(500 - 100) / 100 × 10 s: {}",
        r.throttle_time_ms
    );
    let muted = t.connection.muted_until().expect("connection muted");
    assert!(muted > std::time::Instant::now() + std::time::Duration::from_secs(10));
    // The quota of another client id does not apply to the default user's other clients.
    assert_eq!(t.broker.quotas.produce.quota("ANONYMOUS", "other"), None);

    // Fetch: 10 B/s for the default user; the response (~10 KB) is over it, so the client
    // gets an empty response with the throttle time (Kafka's behaviour).
    alter_ok(
        &t,
        &[("user", None)],
        &[("consumer_byte_rate", 10.0, false)],
    )
    .await;
    let r = t.send(&fetch(), 11).await.expect("throttled fetch");
    assert!(r.throttle_time_ms > 0);
    assert!(
        r.responses.is_empty(),
        "a throttled fetch is answered empty"
    );
    // The bytes were not counted, since they were not sent.
    let rate = t
        .broker
        .quotas
        .fetch
        .observed_rate("ANONYMOUS", CLIENT, t.broker.quotas.now_ms())
        .unwrap_or(0.0);
    assert!(rate < 10.0, "unrecorded: {rate}");
    // Quotas follow the metadata at once: removing it lets the data through.
    alter_ok(&t, &[("user", None)], &[("consumer_byte_rate", 0.0, true)]).await;
    let r = t.send(&fetch(), 11).await.expect("fetch");
    assert_eq!(r.throttle_time_ms, 0);
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_some_and(|b| b.len() > 5_000));
}

/// Refuses everything, remembering what it was asked.
#[derive(Default)]
struct DenyAll(parking_lot::Mutex<Vec<(crate::authorizer::AclOperation, String)>>);

impl crate::authorizer::Authorizer for DenyAll {
    fn authorize(
        &self,
        _: &crate::authorizer::Requester<'_>,
        op: crate::authorizer::AclOperation,
        r: &crate::authorizer::Resource<'_>,
    ) -> bool {
        self.0.lock().push((op, format!("{:?}", r.resource_type)));
        false
    }
}

#[tokio::test]
async fn quotas_need_describe_configs_and_alter_configs_on_the_cluster() {
    use crate::authorizer::AclOperation;
    let deny = std::sync::Arc::new(DenyAll::default());
    let t = TestBroker::with_authorizer(deny.clone()).await;
    let r = t
        .send(
            &alter(
                &[("user", Some("a"))],
                &[("producer_byte_rate", 1.0, false)],
                false,
            ),
            1,
        )
        .await
        .expect("alter");
    assert_eq!(
        r.entries[0].error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert!(
        t.broker.image().client_quotas.entities.is_empty(),
        "nothing written"
    );
    let r = t.send(&describe_all(), 1).await.expect("describe");
    assert_eq!(
        r.error_code,
        ResponseError::ClusterAuthorizationFailed.code()
    );
    assert!(r.entries.is_none());
    let asked = deny.0.lock().clone();
    assert_eq!(
        asked,
        vec![
            (AclOperation::AlterConfigs, "Cluster".to_string()),
            (AclOperation::DescribeConfigs, "Cluster".to_string()),
        ]
    );
}

#[tokio::test]
async fn request_percentage_mutes_the_connection_for_at_most_one_window() {
    let t = TestBroker::start().await;
    alter_ok(
        &t,
        &[("user", Some("ANONYMOUS")), ("client-id", Some(CLIENT))],
        &[("request_percentage", 0.0001, false)],
    )
    .await;
    // Any request's handling time is far over 0.0001% of a second per second.
    let r = t
        .send(&MetadataRequest::default().with_topics(Some(vec![])), 12)
        .await
        .expect("Metadata");
    assert_eq!(r.brokers.len(), 1);
    let until = t.connection.muted_until().expect("muted");
    let left = until.saturating_duration_since(std::time::Instant::now());
    assert!(
        left > std::time::Duration::ZERO && left <= std::time::Duration::from_secs(1),
        "bounded by one quota window: {left:?}"
    );
    // A follower's fetch is exempt; a consumer's counts.
    t.create_topic("q", 1).await;
    // Measured at one fixed instant, since the windowed rate moves with time alone.
    let at = t.broker.quotas.now_ms() + 5_000;
    let rate = || {
        t.broker
            .quotas
            .request
            .observed_rate("ANONYMOUS", CLIENT, at)
            .unwrap_or(0.0)
    };
    let before = rate();
    let follower = fetch().with_replica_id(BrokerId(7));
    t.send(&follower, 11).await.expect("follower fetch");
    assert_eq!(rate(), before, "a follower fetch is not counted");
    let r = t.send(&fetch(), 11).await.expect("consumer fetch");
    assert!(rate() > before, "a consumer fetch is counted");
    // Over the request quota, a fetch is answered empty with the throttle (Kafka), and a
    // produce reports it.
    assert!(r.throttle_time_ms > 0 && r.throttle_time_ms <= 1000);
    assert!(r.responses.is_empty());
    let r = t.send(&produce(batch(1)), 9).await.expect("produce");
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert!(r.throttle_time_ms > 0 && r.throttle_time_ms <= 1000);
}

fn create_topic_req(name: &str, partitions: i32) -> create_topics_request::CreatableTopic {
    create_topics_request::CreatableTopic::default()
        .with_name(TopicName(s(name)))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
}

/// controller_mutation_rate (KIP-599): 1 partition/s for this client id, a burst of 11.
/// CreateTopics v7 (strict) creates topics while tokens are left (the last one may take the
/// bucket below zero), then answers THROTTLING_QUOTA_EXCEEDED with the throttle time and
/// creates nothing more; CreatePartitions v3 and DeleteTopics v6 are refused the same way;
/// an old version (CreateTopics v5, permissive) is served but throttled and muted.
#[tokio::test]
async fn controller_mutation_rate_throttles_topic_mutations() {
    let t = TestBroker::start().await;
    alter_ok(
        &t,
        &[("client-id", Some(CLIENT))],
        &[("controller_mutation_rate", 1.0, false)],
    )
    .await;
    let create = |topics: Vec<create_topics_request::CreatableTopic>| {
        CreateTopicsRequest::default()
            .with_topics(topics)
            .with_timeout_ms(5000)
    };
    // 8 of 11 tokens, then 8 more (3 left: accepted, −5), then refused.
    let r = t
        .send(
            &create(vec![create_topic_req("m1", 8), create_topic_req("m2", 8)]),
            7,
        )
        .await
        .expect("CreateTopics");
    assert!(r.topics.iter().all(|x| x.error_code == 0), "{r:?}");
    assert!(
        (4000..=5000).contains(&r.throttle_time_ms),
        "−5 tokens at 1/s: {}",
        r.throttle_time_ms
    );
    let r = t
        .send(&create(vec![create_topic_req("m3", 1)]), 7)
        .await
        .expect("CreateTopics");
    assert_eq!(
        r.topics[0].error_code,
        ResponseError::ThrottlingQuotaExceeded.code()
    );
    assert!(r.throttle_time_ms >= 4000, "{}", r.throttle_time_ms);
    assert!(t.broker.image().topic("m3").is_none(), "m3 was not created");
    assert!(t.connection.muted_until().is_some(), "connection muted");
    // CreatePartitions v3 and DeleteTopics v6: strict too.
    let r = t
        .send(
            &CreatePartitionsRequest::default()
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(s("m1")))
                        .with_count(9),
                ])
                .with_timeout_ms(5000),
            3,
        )
        .await
        .expect("CreatePartitions");
    assert_eq!(
        r.results[0].error_code,
        ResponseError::ThrottlingQuotaExceeded.code()
    );
    assert!(r.throttle_time_ms > 0);
    let r = t
        .send(
            &DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(s("m1"))))])
                .with_timeout_ms(5000),
            6,
        )
        .await
        .expect("DeleteTopics");
    assert_eq!(
        r.responses[0].error_code,
        ResponseError::ThrottlingQuotaExceeded.code()
    );
    assert!(t.broker.image().topic("m1").is_some(), "m1 not deleted");
    // CreateTopics v5 predates the error: served, with the throttle time.
    let r = t
        .send(&create(vec![create_topic_req("m4", 2)]), 5)
        .await
        .expect("CreateTopics v5");
    assert_eq!(r.topics[0].error_code, 0);
    assert!(r.throttle_time_ms >= 6000, "{}", r.throttle_time_ms);
    assert!(t.broker.image().topic("m4").is_some());
    // Another client id is not limited.
    assert!(t
        .broker
        .quotas
        .mutation
        .record("ANONYMOUS", "other", 1e6, true, 0)
        .is_ok());
}
