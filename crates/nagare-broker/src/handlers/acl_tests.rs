//! The StandardAuthorizer end to end on an in-memory broker: ACLs created, described and
//! deleted through the controller and applied by the broker, and the authorization matrix —
//! for each API, a principal without the ACL it needs gets Kafka's *_AUTHORIZATION_FAILED
//! code and changes nothing (metadata image, log end, committed offsets), and succeeds once
//! the ACL exists; DENY beats ALLOW, prefixed ACLs, hosts, super users.

use std::net::IpAddr;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{AclOperation, ResourceType};
use crate::context::KafkaPrincipal;
use crate::standard_authorizer::STANDARD_AUTHORIZER;
use crate::testing::TestBroker;

use super::txn_data_tests::producer_batch;

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;
const SECURITY_DISABLED: i16 = 54;
const INVALID_REQUEST: i16 = 42;

const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const ALLOW: i8 = 3;
const DENY: i8 = 2;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn host() -> IpAddr {
    IpAddr::from([10, 0, 0, 1])
}

fn admin() -> KafkaPrincipal {
    KafkaPrincipal::user("admin")
}

fn alice() -> KafkaPrincipal {
    KafkaPrincipal::user("alice")
}

async fn secured() -> TestBroker {
    TestBroker::build(
        &[
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin"),
        ],
        None,
    )
    .await
}

/// One ACL binding for CreateAcls.
#[derive(Clone, Copy, Debug)]
struct Acl {
    rt: ResourceType,
    name: &'static str,
    pattern: i8,
    principal: &'static str,
    host: &'static str,
    op: AclOperation,
    perm: i8,
}

fn allow(rt: ResourceType, name: &'static str, op: AclOperation) -> Acl {
    Acl {
        rt,
        name,
        pattern: LITERAL,
        principal: "User:alice",
        host: "*",
        op,
        perm: ALLOW,
    }
}

fn creation(a: &Acl) -> create_acls_request::AclCreation {
    create_acls_request::AclCreation::default()
        .with_resource_type(a.rt.code())
        .with_resource_name(s(a.name))
        .with_resource_pattern_type(a.pattern)
        .with_principal(s(a.principal))
        .with_host(s(a.host))
        .with_operation(a.op.code())
        .with_permission_type(a.perm)
}

async fn create(t: &TestBroker, acls: &[Acl]) {
    let r = t
        .send_as(
            admin(),
            host(),
            &CreateAclsRequest::default().with_creations(acls.iter().map(creation).collect()),
            3,
        )
        .await
        .expect("CreateAcls");
    assert!(
        r.results.iter().all(|x| x.error_code == 0),
        "{:?}",
        r.results
    );
}

/// Deletes every ACL (as the super user).
async fn delete_all(t: &TestBroker) {
    let r = t
        .send_as(
            admin(),
            host(),
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
            3,
        )
        .await
        .expect("DeleteAcls");
    assert_eq!(r.filter_results[0].error_code, 0);
    assert!(t.broker.image().acls.is_empty());
}

#[tokio::test]
async fn acls_are_written_by_the_controller_and_applied_by_the_broker() {
    let t = secured().await;
    let offset_before = t.broker.image().offset;
    let literal = allow(ResourceType::Topic, "orders", AclOperation::Read);
    let prefixed = Acl {
        pattern: PREFIXED,
        name: "ord",
        op: AclOperation::Write,
        ..literal
    };
    let wildcard = Acl {
        name: "*",
        principal: "User:*",
        perm: DENY,
        op: AclOperation::Delete,
        ..literal
    };
    let group = allow(ResourceType::Group, "orders", AclOperation::Read);
    let bad = [
        Acl {
            rt: ResourceType::Topic,
            principal: "alice",
            ..literal
        },
        Acl {
            rt: ResourceType::Cluster,
            name: "not-the-cluster",
            ..literal
        },
        Acl {
            name: "",
            ..literal
        },
    ];
    let mut creations: Vec<_> = [literal, prefixed, wildcard, group, literal]
        .iter()
        .map(creation)
        .collect();
    creations.extend(bad.iter().map(creation));
    // ANY as a resource type and MATCH as a pattern type cannot be created.
    creations.push(creation(&literal).with_resource_type(1));
    creations.push(creation(&literal).with_resource_pattern_type(2));
    creations.push(creation(&literal).with_operation(1));
    let r = t
        .send_as(
            admin(),
            host(),
            &CreateAclsRequest::default().with_creations(creations),
            3,
        )
        .await
        .expect("CreateAcls");
    let codes: Vec<i16> = r.results.iter().map(|x| x.error_code).collect();
    assert_eq!(
        codes,
        [
            0,
            0,
            0,
            0,
            0,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST
        ]
    );
    // Four records (the duplicate of `literal` is not created twice), applied here.
    let img = t.broker.image();
    assert_eq!(img.acls.len(), 4);
    assert_eq!(img.offset, offset_before + 4);

    let describe = |rt: i8, name: Option<&str>, pattern: i8| {
        DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(rt)
            .with_resource_name_filter(name.map(s))
            .with_pattern_type_filter(pattern)
            .with_operation(1)
            .with_permission_type(1)
    };
    let count = |r: &DescribeAclsResponse| r.resources.iter().map(|x| x.acls.len()).sum::<usize>();
    let r = t
        .send_as(admin(), host(), &describe(1, None, 1), 3)
        .await
        .expect("DescribeAcls");
    assert_eq!((r.error_code, count(&r)), (0, 4));
    // MATCH: the literal, the wildcard and the prefix that apply to topic `orders`.
    let r = t
        .send_as(admin(), host(), &describe(2, Some("orders"), 2), 3)
        .await
        .expect("DescribeAcls MATCH");
    assert_eq!(count(&r), 3);
    let mut patterns: Vec<(String, i8)> = r
        .resources
        .iter()
        .map(|x| (x.resource_name.to_string(), x.pattern_type))
        .collect();
    patterns.sort();
    assert_eq!(
        patterns,
        [
            ("*".to_string(), LITERAL),
            ("ord".to_string(), PREFIXED),
            ("orders".to_string(), LITERAL)
        ]
    );
    // ANY: that exact name under any pattern type.
    let r = t
        .send_as(admin(), host(), &describe(2, Some("orders"), 1), 3)
        .await
        .expect("DescribeAcls ANY");
    assert_eq!(count(&r), 1);

    // Alice may neither describe, create nor delete ACLs (no ALTER/DESCRIBE on the cluster).
    let r = t
        .send_as(alice(), host(), &describe(1, None, 1), 3)
        .await
        .expect("DescribeAcls as alice");
    assert_eq!(r.error_code, CLUSTER_DENIED);
    assert!(r.resources.is_empty());
    let r = t
        .send_as(
            alice(),
            host(),
            &CreateAclsRequest::default().with_creations(vec![creation(&allow(
                ResourceType::Cluster,
                "kafka-cluster",
                AclOperation::All,
            ))]),
            3,
        )
        .await
        .expect("CreateAcls as alice");
    assert_eq!(r.results[0].error_code, CLUSTER_DENIED);
    assert_eq!(t.broker.image().acls.len(), 4);

    // DeleteAcls: the MATCH filter for topic `orders` removes the three that apply to it.
    let r = t
        .send_as(
            admin(),
            host(),
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(2)
                    .with_resource_name_filter(Some(s("orders")))
                    .with_pattern_type_filter(2)
                    .with_operation(1)
                    .with_permission_type(1),
                // An invalid filter fails alone.
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(0)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
            ]),
            3,
        )
        .await
        .expect("DeleteAcls");
    assert_eq!(r.filter_results[0].error_code, 0);
    assert_eq!(r.filter_results[0].matching_acls.len(), 3);
    assert_eq!(r.filter_results[1].error_code, INVALID_REQUEST);
    let img = t.broker.image();
    assert_eq!(img.acls.len(), 1, "the group ACL is left");
    assert!(img
        .acls
        .iter()
        .all(|(_, a)| a.resource_type == ResourceType::Group.code()));
}

#[tokio::test]
async fn acl_apis_answer_security_disabled_without_an_authorizer() {
    let t = TestBroker::start().await;
    let r = t
        .send(
            &DescribeAclsRequest::default()
                .with_resource_name_filter(None)
                .with_principal_filter(None)
                .with_host_filter(None)
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
            2,
        )
        .await
        .expect("DescribeAcls");
    assert_eq!(r.error_code, SECURITY_DISABLED);
    let r = t
        .send(
            &CreateAclsRequest::default().with_creations(vec![creation(&allow(
                ResourceType::Topic,
                "t",
                AclOperation::Read,
            ))]),
            2,
        )
        .await
        .expect("CreateAcls");
    assert_eq!(r.results[0].error_code, SECURITY_DISABLED);
    let r = t
        .send(
            &DeleteAclsRequest::default()
                .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]),
            2,
        )
        .await
        .expect("DeleteAcls");
    assert_eq!(r.filter_results[0].error_code, SECURITY_DISABLED);
    assert!(t.broker.image().acls.is_empty());
}

/// What a refused request could have changed.
#[derive(Debug, PartialEq)]
struct State {
    metadata_offset: i64,
    topics: Vec<String>,
    partitions: usize,
    topic_configs: std::collections::BTreeMap<String, String>,
    log_end: i64,
    committed: i64,
}

async fn state(t: &TestBroker) -> State {
    let img = t.broker.image();
    let r = t
        .send_as(
            admin(),
            host(),
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
    let log_end = r.topics[0].partitions[0].offset;
    let r = t
        .send_as(
            admin(),
            host(),
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0]),
                ])),
            7,
        )
        .await
        .expect("OffsetFetch");
    State {
        metadata_offset: img.offset,
        topics: img.topic_names(),
        partitions: img.topics_by_id.values().map(|t| t.partitions.len()).sum(),
        topic_configs: img.config_overrides(nagare_metadata::ConfigResource::Topic, "t"),
        log_end,
        committed: r.topics[0].partitions[0].committed_offset,
    }
}

/// Runs API `case` as alice; the error code that tells whether it was authorized.
async fn run(t: &TestBroker, case: &str) -> i16 {
    let as_alice = alice();
    macro_rules! send {
        ($req:expr, $v:expr) => {
            t.send_as(as_alice.clone(), host(), &$req, $v)
                .await
                .expect(case)
        };
    }
    match case {
        "Produce" => {
            let r = send!(
                ProduceRequest::default().with_acks(1).with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_data(vec![produce_request::PartitionProduceData::default(
                        )
                        .with_index(0)
                        .with_records(Some(producer_batch(-1, -1, -1, 2, false)))]),
                ]),
                9
            );
            r.responses[0].partition_responses[0].error_code
        }
        "Fetch" => {
            let r = send!(
                FetchRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_max_wait_ms(0)
                    .with_topics(vec![fetch_request::FetchTopic::default()
                        .with_topic(TopicName(s("t")))
                        .with_partitions(vec![fetch_request::FetchPartition::default()
                            .with_partition(0)
                            .with_partition_max_bytes(1 << 20)])]),
                11
            );
            r.responses[0].partitions[0].error_code
        }
        "ListOffsets" => {
            let r = send!(
                ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ])]),
                7
            );
            r.topics[0].partitions[0].error_code
        }
        "Metadata" => {
            let r = send!(
                MetadataRequest::default()
                    .with_allow_auto_topic_creation(false)
                    .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                    )
                    .with_name(Some(TopicName(s("t"))))])),
                12
            );
            r.topics[0].error_code
        }
        "CreateTopics" => {
            let r = send!(
                CreateTopicsRequest::default().with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(s("new-1")))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
                5
            );
            r.topics[0].error_code
        }
        "DeleteTopics" => {
            let r = send!(
                DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]),
                5
            );
            r.responses[0].error_code
        }
        "CreatePartitions" => {
            let r = send!(
                CreatePartitionsRequest::default().with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_count(2)
                        .with_assignments(None),
                ]),
                3
            );
            r.results[0].error_code
        }
        "DescribeConfigs" => {
            let r = send!(
                DescribeConfigsRequest::default().with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("t")),
                ]),
                4
            );
            r.results[0].error_code
        }
        "IncrementalAlterConfigs" => {
            let r = send!(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("t"))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(s("retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(s("123456"))),
                        ]),
                ]),
                1
            );
            r.responses[0].error_code
        }
        "DeleteRecords" => {
            let r = send!(
                DeleteRecordsRequest::default().with_topics(vec![
                    delete_records_request::DeleteRecordsTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_partitions(vec![
                            delete_records_request::DeleteRecordsPartition::default()
                                .with_partition_index(0)
                                .with_offset(0),
                        ]),
                ]),
                2
            );
            r.topics[0].partitions[0].error_code
        }
        "FindCoordinator" => {
            let r = send!(FindCoordinatorRequest::default().with_key(s("g")), 3);
            r.error_code
        }
        "OffsetCommit" => {
            let r = send!(
                OffsetCommitRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        offset_commit_request::OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partitions(vec![
                                offset_commit_request::OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(1),
                            ])
                    ]),
                8
            );
            r.topics[0].partitions[0].error_code
        }
        "OffsetFetch" => {
            let r = send!(
                OffsetFetchRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0])
                    ])),
                7
            );
            if r.error_code != 0 {
                r.error_code
            } else {
                r.topics[0].partitions[0].error_code
            }
        }
        "DescribeGroups" => {
            let r = send!(
                DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
                5
            );
            r.groups[0].error_code
        }
        "InitProducerId" => {
            let r = send!(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4
            );
            r.error_code
        }
        "DescribeCluster" => {
            let r = send!(DescribeClusterRequest::default(), 1);
            r.error_code
        }
        "ElectLeaders" => {
            let r = send!(
                ElectLeadersRequest::default()
                    .with_election_type(0)
                    .with_topic_partitions(Some(vec![
                        elect_leaders_request::TopicPartitions::default()
                            .with_topic(TopicName(s("t")))
                            .with_partitions(vec![0]),
                    ])),
                2
            );
            r.error_code
        }
        "AlterBrokerLoggers" => {
            let r = send!(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(8)
                        .with_resource_name(s("1"))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(s("nagare_raft"))
                                .with_config_operation(0)
                                .with_value(Some(s("DEBUG"))),
                        ]),
                ]),
                1
            );
            r.responses[0].error_code
        }
        "DescribeBrokerLoggers" => {
            let r = send!(
                DescribeConfigsRequest::default().with_resources(vec![
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(8)
                        .with_resource_name(s("1"))
                ]),
                4
            );
            r.results[0].error_code
        }
        "AlterConfigsBroker" => {
            let r = send!(
                IncrementalAlterConfigsRequest::default().with_resources(vec![
                    incremental_alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(s(""))
                        .with_configs(vec![
                            incremental_alter_configs_request::AlterableConfig::default()
                                .with_name(s("log.retention.ms"))
                                .with_config_operation(0)
                                .with_value(Some(s("7200000"))),
                        ]),
                ]),
                1
            );
            r.responses[0].error_code
        }
        "DescribeAcls" => {
            let r = send!(
                DescribeAclsRequest::default()
                    .with_resource_name_filter(None)
                    .with_principal_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(1)
                    .with_pattern_type_filter(1)
                    .with_operation(1)
                    .with_permission_type(1),
                3
            );
            r.error_code
        }
        "AlterConfigs" => {
            let r = send!(
                AlterConfigsRequest::default().with_resources(vec![
                    alter_configs_request::AlterConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(s("t"))
                        .with_configs(vec![alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("654321")))]),
                ]),
                2
            );
            r.responses[0].error_code
        }
        "OffsetForLeaderEpoch" => {
            let r = send!(
                OffsetForLeaderEpochRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![
                        offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                            .with_topic(TopicName(s("t")))
                            .with_partitions(vec![
                                offset_for_leader_epoch_request::OffsetForLeaderPartition::default(
                                )
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                            ])
                    ]),
                4
            );
            r.topics[0].partitions[0].error_code
        }
        "DescribeProducers" => {
            let r = send!(
                DescribeProducersRequest::default().with_topics(vec![
                    describe_producers_request::TopicRequest::default()
                        .with_name(TopicName(s("t")))
                        .with_partition_indexes(vec![0]),
                ]),
                0
            );
            r.topics[0].partitions[0].error_code
        }
        "OffsetDelete" => {
            let r = send!(
                OffsetDeleteRequest::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(vec![
                        offset_delete_request::OffsetDeleteRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partitions(vec![
                                offset_delete_request::OffsetDeleteRequestPartition::default()
                                    .with_partition_index(0),
                            ])
                    ]),
                0
            );
            if r.error_code != 0 {
                r.error_code
            } else {
                r.topics[0].partitions[0].error_code
            }
        }
        "DeleteGroups" => {
            let r = send!(
                DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("g"))]),
                2
            );
            r.results[0].error_code
        }
        other => panic!("no case {other}"),
    }
}

#[tokio::test]
async fn authorization_matrix_with_the_standard_authorizer() {
    use AclOperation::*;
    use ResourceType::{Cluster, Group, Topic};
    let t = secured().await;
    t.create_topic("t", 1).await;
    t.create_topic("doomed", 1).await;
    // A message and a committed offset to compare, written by the super user.
    create(&t, &[allow(Topic, "t", All), allow(Group, "g", All)]).await;
    assert_eq!(run(&t, "Produce").await, 0, "Produce with ALLOW ALL");
    // The coordinator loads __consumer_offsets on first use: retry while it is loading.
    let mut code = -1;
    for _ in 0..100 {
        assert_eq!(run(&t, "FindCoordinator").await, 0);
        code = run(&t, "OffsetCommit").await;
        if code == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(code, 0, "OffsetCommit with ALLOW ALL");
    delete_all(&t).await;
    let prefixed = |rt, name, op| Acl {
        pattern: PREFIXED,
        ..allow(rt, name, op)
    };
    // (API, the ACLs it needs, Kafka's code without them).
    let cases: Vec<(&str, Vec<Acl>, i16)> = vec![
        ("Produce", vec![allow(Topic, "t", Write)], TOPIC_DENIED),
        ("Fetch", vec![allow(Topic, "t", Read)], TOPIC_DENIED),
        // DESCRIBE implied by READ.
        ("ListOffsets", vec![allow(Topic, "t", Read)], TOPIC_DENIED),
        ("Metadata", vec![allow(Topic, "t", Describe)], TOPIC_DENIED),
        // A prefixed CREATE covers new-1.
        (
            "CreateTopics",
            vec![prefixed(Topic, "new-", Create)],
            TOPIC_DENIED,
        ),
        (
            "CreatePartitions",
            vec![allow(Topic, "t", Alter)],
            TOPIC_DENIED,
        ),
        // DESCRIBE_CONFIGS implied by ALTER_CONFIGS.
        (
            "DescribeConfigs",
            vec![allow(Topic, "t", AlterConfigs)],
            TOPIC_DENIED,
        ),
        (
            "IncrementalAlterConfigs",
            vec![allow(Topic, "t", AlterConfigs)],
            TOPIC_DENIED,
        ),
        (
            "AlterConfigsBroker",
            vec![allow(Cluster, "kafka-cluster", AlterConfigs)],
            CLUSTER_DENIED,
        ),
        (
            "FindCoordinator",
            vec![allow(Group, "g", Describe)],
            GROUP_DENIED,
        ),
        (
            "OffsetCommit",
            vec![allow(Group, "g", Read), allow(Topic, "t", Read)],
            GROUP_DENIED,
        ),
        (
            "OffsetFetch",
            vec![allow(Group, "g", Describe), allow(Topic, "t", Describe)],
            GROUP_DENIED,
        ),
        (
            "DescribeGroups",
            vec![allow(Group, "g", Describe)],
            GROUP_DENIED,
        ),
        // KIP-679: WRITE on any topic is enough for an idempotent producer.
        (
            "InitProducerId",
            vec![prefixed(Topic, "any", Write)],
            CLUSTER_DENIED,
        ),
        (
            "ElectLeaders",
            vec![allow(Cluster, "kafka-cluster", Alter)],
            CLUSTER_DENIED,
        ),
        (
            "AlterBrokerLoggers",
            vec![allow(Cluster, "kafka-cluster", AlterConfigs)],
            CLUSTER_DENIED,
        ),
        (
            "DescribeBrokerLoggers",
            vec![allow(Cluster, "kafka-cluster", DescribeConfigs)],
            CLUSTER_DENIED,
        ),
        (
            "DescribeAcls",
            vec![allow(Cluster, "kafka-cluster", Describe)],
            CLUSTER_DENIED,
        ),
        (
            "AlterConfigs",
            vec![allow(Topic, "t", AlterConfigs)],
            TOPIC_DENIED,
        ),
        (
            "OffsetForLeaderEpoch",
            vec![allow(Topic, "t", Describe)],
            TOPIC_DENIED,
        ),
        (
            "DescribeProducers",
            vec![allow(Topic, "t", Read)],
            TOPIC_DENIED,
        ),
        // The group's offsets go with these two: OffsetDelete, then DeleteGroups.
        (
            "OffsetDelete",
            vec![allow(Group, "g", Delete), allow(Topic, "t", Read)],
            GROUP_DENIED,
        ),
        (
            "DeleteGroups",
            vec![allow(Group, "g", Delete)],
            GROUP_DENIED,
        ),
        (
            "DeleteRecords",
            vec![allow(Topic, "t", Delete)],
            TOPIC_DENIED,
        ),
        (
            "DeleteTopics",
            vec![allow(Topic, "doomed", Delete)],
            TOPIC_DENIED,
        ),
    ];
    for (case, acls, denied) in cases {
        // Without the ACL (another principal's ACL on the same resource does not help).
        let mut others: Vec<Acl> = acls
            .iter()
            .map(|a| Acl {
                principal: "User:bob",
                ..*a
            })
            .collect();
        create(&t, &others).await;
        let before = state(&t).await;
        assert_eq!(run(&t, case).await, denied, "{case} without its ACL");
        assert_eq!(
            state(&t).await,
            before,
            "{case} refused but changed something"
        );
        // A partial grant is not enough when the API needs several.
        if acls.len() > 1 {
            create(&t, &acls[1..]).await;
            assert_eq!(
                run(&t, case).await,
                denied,
                "{case} with only some of its ACLs"
            );
        }
        // With the ACL it succeeds.
        create(&t, &acls).await;
        assert_eq!(run(&t, case).await, 0, "{case} with {acls:?}");
        // DENY beats ALLOW: a DENY on the first resource, as a prefix, for every principal.
        let a = acls[0];
        // (The cluster has one valid name, so its DENY is literal.)
        let (pattern, name) = if a.rt == Cluster {
            (LITERAL, a.name)
        } else {
            (PREFIXED, &a.name[..1])
        };
        others = vec![Acl {
            pattern,
            name,
            principal: "User:*",
            op: All,
            perm: DENY,
            ..a
        }];
        create(&t, &others).await;
        let before = state(&t).await;
        assert_eq!(run(&t, case).await, denied, "{case}: DENY must beat ALLOW");
        assert_eq!(
            state(&t).await,
            before,
            "{case} denied but changed something"
        );
        delete_all(&t).await;
    }
    // The super user needs no ACL; hosts are matched.
    create(
        &t,
        &[
            allow(Topic, "t", Read),
            Acl {
                host: "10.0.0.9",
                perm: DENY,
                ..allow(Topic, "t", Read)
            },
        ],
    )
    .await;
    assert_eq!(run(&t, "Fetch").await, 0);
    let r = t
        .send_as(
            alice(),
            IpAddr::from([10, 0, 0, 9]),
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s("t"))))])),
            12,
        )
        .await
        .expect("Metadata from the denied host");
    // DENY READ does not deny DESCRIBE, which READ implied.
    assert_eq!(r.topics[0].error_code, 0);
    let r = t
        .send_as(admin(), host(), &DescribeClusterRequest::default(), 1)
        .await
        .expect("DescribeCluster as admin");
    assert_eq!(r.error_code, 0);
    // A transactional id needs WRITE on it.
    let txn = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s("tx"))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let r = t
        .send_as(alice(), host(), &txn, 4)
        .await
        .expect("InitProducerId txn");
    assert_eq!(r.error_code, TXN_DENIED);
}

/// Sends `inner` (CreateAcls v3) in an Envelope on a controller connection whose principal is
/// `forwarder`, as forwarded for `client`; the Envelope's error code and the inner answer.
async fn forwarded_create(
    t: &TestBroker,
    forwarder: KafkaPrincipal,
    client: KafkaPrincipal,
    acl: &Acl,
) -> (i16, Option<CreateAclsResponse>) {
    use crate::testing::{decode_response, response_bytes};
    let conn = std::sync::Arc::new(crate::context::ConnectionContext::new(
        "CONTROLLER",
        super::ListenerKind::Controller,
        crate::context::SecurityProtocol::Plaintext,
        None,
        "127.0.0.1:40002".parse().expect("addr"),
    ));
    conn.set_principal(forwarder);
    let inner = t.frame(
        &CreateAclsRequest::default().with_creations(vec![creation(acl)]),
        3,
    );
    let env = EnvelopeRequest::default()
        .with_request_data(inner)
        .with_request_principal(Some(super::envelope::serialize_principal(&client)))
        .with_client_host_address(bytes::Bytes::from_static(&[10, 0, 0, 1]));
    let d = super::dispatch(
        &t.broker,
        t.frame(&env, 0),
        &conn,
        std::time::Instant::now(),
    )
    .await;
    let crate::network::Reply::Now(resp) = d.reply else {
        panic!("Envelope answered at once");
    };
    let env_resp = decode_response::<EnvelopeRequest>(response_bytes(resp).slice(4..), 0);
    let inner = env_resp
        .response_data
        .map(|b| decode_response::<CreateAclsRequest>(b, 3));
    (env_resp.error_code, inner)
}

#[tokio::test]
async fn forwarded_acl_changes_are_authorized_as_the_original_client() {
    let t = TestBroker::build(
        &[
            ("authorizer.class.name", STANDARD_AUTHORIZER),
            ("super.users", "User:admin;User:broker"),
        ],
        None,
    )
    .await;
    let acl = allow(ResourceType::Topic, "t", AclOperation::Read);
    let broker = || KafkaPrincipal::user("broker");
    // The forwarding connection itself needs CLUSTER_ACTION: an anonymous one is refused.
    let (code, inner) = forwarded_create(&t, KafkaPrincipal::anonymous(), admin(), &acl).await;
    assert_eq!((code, inner.is_none()), (CLUSTER_DENIED, true));
    // Forwarded by a broker for alice: refused as alice.
    let (code, inner) = forwarded_create(&t, broker(), alice(), &acl).await;
    assert_eq!(code, 0);
    assert_eq!(inner.expect("inner").results[0].error_code, CLUSTER_DENIED);
    assert!(t.broker.image().acls.is_empty());
    // No one can claim the broker's internal principal through an Envelope.
    let (code, _) = forwarded_create(&t, broker(), KafkaPrincipal::broker_internal(), &acl).await;
    assert_eq!(code, 97, "PRINCIPAL_DESERIALIZATION_FAILURE");
    assert!(t.broker.image().acls.is_empty());
    // Forwarded for the admin: written by the controller, applied here.
    let (code, inner) = forwarded_create(&t, broker(), admin(), &acl).await;
    assert_eq!(code, 0);
    assert_eq!(inner.expect("inner").results[0].error_code, 0);
    assert_eq!(t.broker.image().acls.len(), 1);
}

/// UnregisterBroker: ALTER on the cluster; a registered broker leaves the cluster (and every
/// ISR), an unknown id is BROKER_ID_NOT_REGISTERED.
#[tokio::test]
async fn unregister_broker_needs_alter_on_the_cluster() {
    use nagare_metadata::records::MetadataRecord;
    let t = secured().await;
    // A second broker, registered (as a decommissioned one would be) through the controller.
    t.broker
        .controller_commit(false, |_img| {
            Ok((
                vec![MetadataRecord::RegisterBroker {
                    broker_id: 2,
                    broker_epoch: 1,
                    incarnation_id: nagare_metadata::Uuid::from_bytes([2; 16]),
                    endpoints: vec![],
                    rack: None,
                    fenced: true,
                }],
                (),
            ))
        })
        .await
        .expect("register broker 2");
    assert!(t.broker.image().brokers.contains_key(&2));
    let req = |id: i32| UnregisterBrokerRequest::default().with_broker_id(BrokerId(id));
    let r = t
        .send_as(alice(), host(), &req(2), 0)
        .await
        .expect("UnregisterBroker as alice");
    assert_eq!(r.error_code, CLUSTER_DENIED);
    assert!(
        t.broker.image().brokers.contains_key(&2),
        "refused but removed"
    );
    create(
        &t,
        &[allow(
            ResourceType::Cluster,
            "kafka-cluster",
            AclOperation::Alter,
        )],
    )
    .await;
    let r = t
        .send_as(alice(), host(), &req(2), 0)
        .await
        .expect("UnregisterBroker with ALTER");
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    assert!(!t.broker.image().brokers.contains_key(&2));
    let r = t
        .send_as(alice(), host(), &req(99), 0)
        .await
        .expect("UnregisterBroker unknown");
    assert_eq!(r.error_code, 102, "BROKER_ID_NOT_REGISTERED");
}
