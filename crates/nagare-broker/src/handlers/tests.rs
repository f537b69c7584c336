//! Tests of the request pipeline on an in-memory broker ([`crate::testing::TestBroker`]):
//! request context, authorization on every API, error mapping, Envelope forwarding and the
//! metrics hook.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;

use super::*;
use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
use crate::context::KafkaPrincipal;
use crate::testing::{decode_response, response_bytes, Answer, TestBroker};

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Refuses everything, remembering what it was asked.
#[derive(Default)]
struct DenyAll {
    asked: Mutex<Vec<(String, AclOperation, ResourceType, String)>>,
}

impl Authorizer for DenyAll {
    fn authorize(&self, who: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
        self.asked.lock().push((
            who.principal.to_string(),
            op,
            r.resource_type,
            r.name.to_string(),
        ));
        false
    }
}

/// Allows everything, remembering who asked for what.
#[derive(Default)]
struct Recording {
    asked: Mutex<Vec<(String, AclOperation, ResourceType, String)>>,
}

impl Authorizer for Recording {
    fn authorize(&self, who: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
        self.asked.lock().push((
            who.principal.to_string(),
            op,
            r.resource_type,
            r.name.to_string(),
        ));
        true
    }
}

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;

#[tokio::test]
async fn api_versions_keeps_the_client_software_on_the_connection() {
    let t = TestBroker::start().await;
    let req = ApiVersionsRequest::default()
        .with_client_software_name(s("librdkafka"))
        .with_client_software_version(s("2.3.0"));
    let resp = t.send(&req, 3).await.expect("ApiVersions");
    assert_eq!(resp.error_code, 0);
    let keys: Vec<i16> = resp.api_keys.iter().map(|k| k.api_key).collect();
    assert!(keys.contains(&(ApiKey::Produce as i16)));
    // Controller-only APIs are not offered to clients.
    assert!(!keys.contains(&(ApiKey::Envelope as i16)));
    let sw = t.connection.client_software().expect("client software");
    assert_eq!(
        (sw.name.as_str(), sw.version.as_str()),
        ("librdkafka", "2.3.0")
    );
}

#[tokio::test]
async fn a_malformed_body_closes_the_connection() {
    let t = TestBroker::start().await;
    let mut frame = t.frame(&CreateTopicsRequest::default(), 5).to_vec();
    // A topic array claiming one element, then nothing.
    frame.extend_from_slice(&[0x02]);
    let truncated = Bytes::from(frame[..frame.len() - 3].to_vec());
    assert!(t.send_frame(truncated).await.is_none(), "closed");
}

/// A request header (v1, no client id) for `api_key` at `version`, followed by `body`.
fn raw_frame(api_key: i16, version: i16, body: &[u8]) -> Bytes {
    let mut f = Vec::new();
    f.extend_from_slice(&api_key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    if ApiKey::try_from(api_key).is_ok_and(|k| k.request_header_version(version) >= 2) {
        // Flexible header: no tagged fields.
        f.push(0);
    }
    f.extend_from_slice(body);
    Bytes::from(f)
}

/// Few-byte requests claiming huge arrays, strings and bytes: `kafka-protocol` 0.18 reserves
/// what they claim before reading an element; under the server's guard allocator (installed
/// for these tests too) the broker answers or closes and stays up instead of aborting.
#[tokio::test]
async fn claimed_lengths_never_size_an_allocation() {
    let t = TestBroker::start().await;
    let cases: [(i16, i16, &[u8]); 6] = [
        // Metadata v1: topics array of i32::MAX entries.
        (3, 1, &i32::MAX.to_be_bytes()),
        // Metadata v12: compact topics array of u32::MAX - 1 entries.
        (3, 12, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        // CreateTopics v0: a topic name of 32767 bytes, then nothing.
        (19, 0, &[0, 0, 0, 1, 0x7f, 0xff]),
        // SaslAuthenticate v0: auth bytes of i32::MAX bytes, then nothing.
        (36, 0, &i32::MAX.to_be_bytes()),
        // SaslAuthenticate v2: compact auth bytes of ~4 GiB, then nothing.
        (36, 2, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        // DescribeConfigs v4: compact resources array, then a config-names array, each huge.
        (
            32,
            4,
            &[0x02, 0x02, 0x01, 0x61, 0xff, 0xff, 0xff, 0xff, 0x0f],
        ),
    ];
    for (key, version, body) in cases {
        let answer = t.send_frame(raw_frame(key, version, body)).await;
        // Closed (malformed) or an error response; never a reservation of the claimed size.
        if let Some(Some(resp)) = answer {
            assert!(response_bytes(resp).len() < 1 << 16, "api {key} v{version}");
        }
    }
    // The broker still answers.
    let resp = t
        .send(&ApiVersionsRequest::default(), 3)
        .await
        .expect("api versions");
    assert_eq!(resp.error_code, 0);
}

#[tokio::test]
async fn every_api_asks_the_authorizer_and_a_refusal_changes_nothing() {
    let deny = Arc::new(DenyAll::default());
    let t = TestBroker::with_authorizer(deny.clone()).await;
    t.create_topic("t", 1).await;
    let image_before = t.broker.image();

    // Metadata: a named topic is refused; the all-topics listing hides it.
    let r = t
        .send(
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s("t"))))])),
            12,
        )
        .await
        .expect("Metadata");
    assert_eq!(r.topics[0].error_code, TOPIC_DENIED);
    assert!(r.topics[0].partitions.is_empty());
    let r = t
        .send(&MetadataRequest::default().with_topics(None), 12)
        .await
        .expect("Metadata all");
    assert!(r.topics.is_empty());
    // Metadata auto-creation needs CREATE.
    let r = t
        .send(
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s("auto"))))])),
            12,
        )
        .await
        .expect("Metadata auto");
    assert_eq!(r.topics[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(s("x")))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]),
            5,
        )
        .await
        .expect("CreateTopics");
    assert_eq!(r.topics[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("t"))]),
            5,
        )
        .await
        .expect("DeleteTopics");
    assert_eq!(r.responses[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_count(3),
            ]),
            3,
        )
        .await
        .expect("CreatePartitions");
    assert_eq!(r.results[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t")),
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(s("1")),
            ]),
            4,
        )
        .await
        .expect("DescribeConfigs");
    assert_eq!(r.results[0].error_code, TOPIC_DENIED);
    assert_eq!(r.results[1].error_code, CLUSTER_DENIED);
    assert!(r.results.iter().all(|x| x.configs.is_empty()));

    let r = t
        .send(
            &IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("1000"))),
                    ]),
            ]),
            1,
        )
        .await
        .expect("IncrementalAlterConfigs");
    assert_eq!(r.responses[0].error_code, TOPIC_DENIED);

    let r = t
        .send(&ElectLeadersRequest::default().with_election_type(0), 2)
        .await
        .expect("ElectLeaders");
    assert_eq!(r.error_code, CLUSTER_DENIED);

    let r = t
        .send(&DescribeQuorumRequest::default(), 1)
        .await
        .expect("DescribeQuorum");
    assert_eq!(r.error_code, CLUSTER_DENIED);

    let r = t
        .send(&FindCoordinatorRequest::default().with_key(s("g")), 3)
        .await
        .expect("FindCoordinator");
    assert_eq!(r.error_code, GROUP_DENIED);

    let r = t
        .send(
            &JoinGroupRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_session_timeout_ms(10_000)
                .with_protocol_type(s("consumer")),
            5,
        )
        .await
        .expect("JoinGroup");
    assert_eq!(r.error_code, GROUP_DENIED);

    let r = t
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            5,
        )
        .await
        .expect("DescribeGroups");
    assert_eq!(r.groups[0].error_code, GROUP_DENIED);

    let r = t
        .send(
            &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
            2,
        )
        .await
        .expect("DeleteGroups");
    assert_eq!(r.results[0].error_code, GROUP_DENIED);

    let r = t
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .expect("InitProducerId");
    assert_eq!(r.error_code, CLUSTER_DENIED);
    let r = t
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("tx"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .expect("InitProducerId txn");
    assert_eq!(r.error_code, 53);

    // Nothing changed: no topic created, deleted, grown or reconfigured.
    let image_after = t.broker.image();
    assert_eq!(
        image_before.offset, image_after.offset,
        "no metadata record written"
    );
    assert_eq!(image_after.topic_names(), vec!["t".to_string()]);

    // Each refusal was a question about the right resource.
    let asked = deny.asked.lock().clone();
    for expected in [
        (AclOperation::Describe, ResourceType::Topic, "t"),
        (AclOperation::Create, ResourceType::Cluster, "kafka-cluster"),
        (AclOperation::Create, ResourceType::Topic, "x"),
        (AclOperation::Delete, ResourceType::Topic, "t"),
        (AclOperation::Alter, ResourceType::Topic, "t"),
        (AclOperation::DescribeConfigs, ResourceType::Topic, "t"),
        (
            AclOperation::DescribeConfigs,
            ResourceType::Cluster,
            "kafka-cluster",
        ),
        (AclOperation::AlterConfigs, ResourceType::Topic, "t"),
        (AclOperation::Alter, ResourceType::Cluster, "kafka-cluster"),
        (
            AclOperation::Describe,
            ResourceType::Cluster,
            "kafka-cluster",
        ),
        (AclOperation::Describe, ResourceType::Group, "g"),
        (AclOperation::Read, ResourceType::Group, "g"),
        (AclOperation::Delete, ResourceType::Group, "g"),
        (
            AclOperation::IdempotentWrite,
            ResourceType::Cluster,
            "kafka-cluster",
        ),
        (AclOperation::Write, ResourceType::TransactionalId, "tx"),
    ] {
        assert!(
            asked
                .iter()
                .any(|(p, op, rt, n)| p == "User:ANONYMOUS" && (*op, *rt, n.as_str()) == expected),
            "never asked {expected:?}; asked {asked:?}"
        );
    }
}

#[tokio::test]
async fn list_groups_shows_only_describable_groups_without_cluster_describe() {
    let deny = Arc::new(DenyAll::default());
    let t = TestBroker::with_authorizer(deny).await;
    let r = t
        .send(&ListGroupsRequest::default(), 4)
        .await
        .expect("ListGroups");
    assert_eq!(r.error_code, 0);
    assert!(r.groups.is_empty());
}

fn panicking_handler(_: Arc<Broker>, _: Request) -> BoxFuture<HandlerResult> {
    Box::pin(async { panic!("handler bug") })
}

fn failing_handler(_: Arc<Broker>, _: Request) -> BoxFuture<HandlerResult> {
    Box::pin(async { Err(HandlerError::Internal("disk on fire".into())) })
}

static PANICS: ApiSpec = ApiSpec {
    key: ApiKey::ListGroups,
    versions: (0, 5),
    listeners: apis::CLIENT,
    forwarded: false,
    handler: Handler::Local(panicking_handler),
    doc: "",
};

static FAILS: ApiSpec = ApiSpec {
    key: ApiKey::DescribeGroups,
    versions: (0, 6),
    listeners: apis::CLIENT,
    forwarded: false,
    handler: Handler::Local(failing_handler),
    doc: "",
};

fn request_for(t: &TestBroker, spec: &'static ApiSpec, frame: Bytes) -> Request {
    let mut body = frame;
    let (_, header) = frame::decode_request_header(&mut body).expect("header");
    Request {
        ctx: RequestContext {
            connection: t.connection.clone(),
            header,
            api: spec,
            received: Instant::now(),
            request_bytes: 0,
            forwarded: None,
        },
        body,
    }
}

#[tokio::test]
async fn internal_errors_and_panics_answer_unknown_server_error_and_keep_the_connection() {
    let t = TestBroker::start().await;
    let frame = t.frame(&ListGroupsRequest::default(), 4);
    let Reply::Now(resp) = run_handler(&t.broker, request_for(&t, &PANICS, frame)).await else {
        panic!("a panic must be answered, not close the connection");
    };
    let r = decode_response::<ListGroupsRequest>(response_bytes(resp).slice(4..), 4);
    assert_eq!(r.error_code, -1);

    let frame = t.frame(
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("a")), GroupId(s("b"))]),
        5,
    );
    let Reply::Now(resp) = run_handler(&t.broker, request_for(&t, &FAILS, frame)).await else {
        panic!("an internal error must be answered");
    };
    let r = decode_response::<DescribeGroupsRequest>(response_bytes(resp).slice(4..), 5);
    assert_eq!(r.groups.len(), 2);
    assert!(r.groups.iter().all(|g| g.error_code == -1));
}

#[tokio::test]
async fn envelope_runs_the_inner_request_as_the_original_principal() {
    let rec = Arc::new(Recording::default());
    let t = TestBroker::with_authorizer(rec.clone()).await;
    let controller_conn = Arc::new(crate::context::ConnectionContext::new(
        "CONTROLLER",
        ListenerKind::Controller,
        crate::context::SecurityProtocol::Plaintext,
        None,
        "127.0.0.1:40001".parse().expect("addr"),
    ));
    let inner = t.frame(
        &CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("enveloped")))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]),
        5,
    );
    let env = EnvelopeRequest::default()
        .with_request_data(inner)
        .with_request_principal(Some(envelope::serialize_principal(&KafkaPrincipal::user(
            "alice",
        ))))
        .with_client_host_address(Bytes::from_static(&[10, 1, 2, 3]));
    let d = dispatch(
        &t.broker,
        t.frame(&env, 0),
        &controller_conn,
        Instant::now(),
    )
    .await;
    let Reply::Now(resp) = d.reply else {
        panic!("Envelope answered at once");
    };
    let env_resp = decode_response::<EnvelopeRequest>(response_bytes(resp).slice(4..), 0);
    assert_eq!(env_resp.error_code, 0);
    let inner_resp =
        decode_response::<CreateTopicsRequest>(env_resp.response_data.expect("inner response"), 5);
    assert_eq!(inner_resp.topics[0].error_code, 0);
    assert!(t.broker.image().topic("enveloped").is_some());
    let asked = rec.asked.lock().clone();
    // The forwarding broker's connection is authorized for CLUSTER_ACTION; the inner
    // request as the client who sent it.
    assert!(asked
        .iter()
        .any(|(p, op, _, _)| p == "User:ANONYMOUS" && *op == AclOperation::ClusterAction));
    assert!(asked.iter().any(|(p, op, rt, n)| p == "User:alice"
        && *op == AclOperation::Create
        && (*rt == ResourceType::Cluster || n == "enveloped")));

    // An API that is never forwarded is refused inside the Envelope.
    let env = EnvelopeRequest::default()
        .with_request_data(t.frame(&ListGroupsRequest::default(), 4))
        .with_request_principal(Some(envelope::serialize_principal(&KafkaPrincipal::user(
            "alice",
        ))))
        .with_client_host_address(Bytes::from_static(&[10, 1, 2, 3]));
    let d = dispatch(
        &t.broker,
        t.frame(&env, 0),
        &controller_conn,
        Instant::now(),
    )
    .await;
    let Reply::Now(resp) = d.reply else {
        panic!("Envelope answered at once");
    };
    let env_resp = decode_response::<EnvelopeRequest>(response_bytes(resp).slice(4..), 0);
    assert_eq!(env_resp.error_code, 42);
    assert!(env_resp.response_data.is_none());
}

#[tokio::test]
async fn the_metrics_hook_sees_every_request_with_its_bytes_and_times() {
    let t = TestBroker::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let ctx = crate::network::ServeContext::for_broker(
        t.broker.clone(),
        "PLAINTEXT",
        ListenerKind::Broker,
    );
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(crate::network::serve_with(ctx.clone(), stream, peer));
        }
    });
    let mut conn = nagare_client::Connection::connect(&addr.to_string(), "metrics-test")
        .await
        .expect("connect");
    for _ in 0..3 {
        conn.send(&MetadataRequest::default().with_topics(None))
            .await
            .expect("Metadata");
    }
    // The writer records after the last byte is written; give it a moment.
    let mut m = t
        .broker
        .request_metrics
        .get(ApiKey::Metadata, ListenerKind::Broker);
    for _ in 0..100 {
        if m.requests() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        m = t
            .broker
            .request_metrics
            .get(ApiKey::Metadata, ListenerKind::Broker);
    }
    assert_eq!(m.requests(), 3);
    assert!(m.bytes_in > 0 && m.bytes_out > 0);
    assert_eq!(m.total.count, 3);
    assert_eq!(m.local.count, 3);
    // The connection negotiated versions first: ApiVersions is counted too.
    assert!(
        t.broker
            .request_metrics
            .get(ApiKey::ApiVersions, ListenerKind::Broker)
            .requests()
            >= 1
    );
    // Queue + local + remote + response queue + send never exceeds the total.
    let parts = m.request_queue.sum_us
        + m.local.sum_us
        + m.remote.sum_us
        + m.response_queue.sum_us
        + m.response_send.sum_us;
    assert!(parts <= m.total.sum_us + 5, "{parts} > {}", m.total.sum_us);
}

#[tokio::test]
async fn acks_zero_gets_no_answer() {
    let t = TestBroker::start().await;
    t.create_topic("z", 1).await;
    // acks=0 with an empty record set: no answer at all, and the connection stays open.
    let req = ProduceRequest::default()
        .with_acks(0)
        .with_topic_data(vec![]);
    assert!(matches!(t.send(&req, 9).await, Answer::Nothing));
}

/// Allows everything but the topic `secret`.
struct NoSecret;

impl Authorizer for NoSecret {
    fn authorize(&self, _: &Requester<'_>, _: AclOperation, r: &Resource<'_>) -> bool {
        !(r.resource_type == ResourceType::Topic && r.name == "secret")
    }
}

#[tokio::test]
async fn group_offsets_are_authorized_per_topic() {
    let t = TestBroker::with_authorizer(Arc::new(NoSecret)).await;
    t.create_topic("open", 1).await;
    t.create_topic("secret", 1).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(s(""))
        .with_topics(
            ["open", "secret"]
                .iter()
                .map(|n| {
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(TopicName(s(n)))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(7),
                        ])
                })
                .collect(),
        );
    // The coordinator loads __consumer_offsets on first use: retry while it is loading.
    let mut codes = Vec::new();
    for _ in 0..100 {
        t.send(&FindCoordinatorRequest::default().with_key(s("g")), 3)
            .await
            .expect("FindCoordinator");
        let r = t.send(&commit, 8).await.expect("OffsetCommit");
        codes = r
            .topics
            .iter()
            .map(|x| (x.name.to_string(), x.partitions[0].error_code))
            .collect();
        if codes.iter().any(|(n, c)| n == "open" && *c == 0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    codes.sort();
    assert_eq!(
        codes,
        vec![
            ("open".to_string(), 0),
            ("secret".to_string(), TOPIC_DENIED)
        ]
    );

    // Named topics: the refused one is reported refused; all topics: it is left out.
    let fetch = |topics: Option<Vec<&str>>| {
        OffsetFetchRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_topics(topics.map(|ts| {
                ts.iter()
                    .map(|n| {
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(n)))
                            .with_partition_indexes(vec![0])
                    })
                    .collect()
            }))
    };
    let r = t
        .send(&fetch(Some(vec!["open", "secret"])), 7)
        .await
        .expect("OffsetFetch named");
    let mut got: Vec<(String, i16, i64)> = r
        .topics
        .iter()
        .map(|x| {
            let p = &x.partitions[0];
            (x.name.to_string(), p.error_code, p.committed_offset)
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("open".to_string(), 0, 7),
            ("secret".to_string(), TOPIC_DENIED, -1)
        ]
    );
    let r = t.send(&fetch(None), 7).await.expect("OffsetFetch all");
    let names: Vec<String> = r.topics.iter().map(|x| x.name.to_string()).collect();
    assert_eq!(names, vec!["open".to_string()]);
}

#[tokio::test]
async fn data_and_replica_apis_are_authorized() {
    let deny = Arc::new(DenyAll::default());
    let t = TestBroker::with_authorizer(deny.clone()).await;
    t.create_topic("t", 1).await;
    let produce = ProduceRequest::default().with_acks(1).with_topic_data(vec![
        produce_request::TopicProduceData::default()
            .with_name(TopicName(s("t")))
            .with_partition_data(vec![produce_request::PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from_static(b"not even a batch")))]),
    ]);
    let r = t.send(&produce, 9).await.expect("Produce");
    assert_eq!(
        r.responses[0].partition_responses[0].error_code,
        TOPIC_DENIED
    );

    let fetch = |replica: i32| {
        FetchRequest::default()
            .with_replica_id(BrokerId(replica))
            .with_max_wait_ms(0)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(s("t")))
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])])
    };
    // A consumer without READ, and a client posing as follower 7 without CLUSTER_ACTION.
    for replica in [-1, 7] {
        let r = t.send(&fetch(replica), 11).await.expect("Fetch");
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, TOPIC_DENIED, "replica id {replica}");
        assert_eq!(p.records.as_ref().map(|b| b.len()), Some(0));
    }

    let r = t
        .send(
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ])]),
            7,
        )
        .await
        .expect("ListOffsets");
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(TopicName(s("t")))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-1),
                    ]),
            ]),
            2,
        )
        .await
        .expect("DeleteRecords");
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC_DENIED);

    let r = t
        .send(
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(7))
                .with_topics(vec![
                    offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_leader_epoch(0),
                        ]),
                ]),
            4,
        )
        .await
        .expect("OffsetForLeaderEpoch");
    assert_eq!(r.topics[0].partitions[0].error_code, TOPIC_DENIED);

    // Broker → controller APIs need CLUSTER_ACTION.
    let controller_conn = Arc::new(crate::context::ConnectionContext::new(
        "CONTROLLER",
        ListenerKind::Controller,
        crate::context::SecurityProtocol::Plaintext,
        None,
        "127.0.0.1:40002".parse().expect("addr"),
    ));
    let hb = BrokerHeartbeatRequest::default().with_broker_id(BrokerId(1));
    let d = dispatch(&t.broker, t.frame(&hb, 1), &controller_conn, Instant::now()).await;
    let Reply::Now(resp) = d.reply else {
        panic!("answered at once");
    };
    let r = decode_response::<BrokerHeartbeatRequest>(response_bytes(resp).slice(4..), 1);
    assert_eq!(r.error_code, CLUSTER_DENIED);

    // Nothing was appended or deleted.
    let end = t.broker.replicas.partition("t", 0).expect("partition");
    assert_eq!(end.log_end_offset(), 0);
    let asked = deny.asked.lock().clone();
    for expected in [
        (AclOperation::Write, ResourceType::Topic, "t"),
        (AclOperation::Read, ResourceType::Topic, "t"),
        (
            AclOperation::ClusterAction,
            ResourceType::Cluster,
            "kafka-cluster",
        ),
        (AclOperation::Describe, ResourceType::Topic, "t"),
        (AclOperation::Delete, ResourceType::Topic, "t"),
    ] {
        assert!(
            asked
                .iter()
                .any(|(_, op, rt, n)| (*op, *rt, n.as_str()) == expected),
            "never asked {expected:?}"
        );
    }
}

#[tokio::test]
async fn kip848_heartbeat_needs_describe_on_every_subscribed_topic() {
    let t = TestBroker::with_authorizer(Arc::new(NoSecret)).await;
    t.create_topic("open", 1).await;
    t.create_topic("secret", 1).await;
    let hb = |topics: Vec<&str>| {
        ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s("g848")))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(
                topics.into_iter().map(|n| TopicName(s(n))).collect(),
            ))
            .with_topic_partitions(Some(vec![]))
    };
    let r = t
        .send(&hb(vec!["open", "secret"]), 0)
        .await
        .expect("ConsumerGroupHeartbeat");
    assert_eq!(r.error_code, TOPIC_DENIED);
    // Only describable topics: the request reaches the coordinator (which may still be
    // loading `__consumer_offsets`, but never refuses it for authorization).
    t.send(&FindCoordinatorRequest::default().with_key(s("g848")), 3)
        .await
        .expect("FindCoordinator");
    let r = t
        .send(&hb(vec!["open"]), 0)
        .await
        .expect("ConsumerGroupHeartbeat");
    assert_ne!(r.error_code, TOPIC_DENIED);
    assert_ne!(r.error_code, GROUP_DENIED);
}
