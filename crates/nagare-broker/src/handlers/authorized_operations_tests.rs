//! "Include authorized operations" (issue 17): Metadata, DescribeCluster, DescribeGroups and
//! ConsumerGroupDescribe answer the principal's operations as Kafka's bit field when asked,
//! and "not provided" (`i32::MIN`) when not.

use std::sync::Arc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::authorizer::{AclOperation, Authorizer, Requester, Resource};
use crate::testing::TestBroker;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

/// Allows reading and describing only.
struct ReadOnly;

impl Authorizer for ReadOnly {
    fn authorize(&self, _: &Requester<'_>, op: AclOperation, _: &Resource<'_>) -> bool {
        matches!(op, AclOperation::Read | AclOperation::Describe)
    }
}

const READ: i32 = 1 << 3;
const DESCRIBE: i32 = 1 << 8;

#[tokio::test]
async fn operations_are_answered_only_when_asked() {
    let t = TestBroker::with_authorizer(Arc::new(ReadOnly)).await;
    t.create_topic("t", 1).await;
    let metadata = |ask: bool| {
        MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(s("t"))))]))
            .with_include_topic_authorized_operations(ask)
            .with_include_cluster_authorized_operations(ask)
    };
    let r = t.send(&metadata(true), 10).await.expect("Metadata");
    assert_eq!(r.topics[0].error_code, 0);
    assert_eq!(r.topics[0].topic_authorized_operations, READ | DESCRIBE);
    // The cluster supports DESCRIBE but not READ.
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);
    let r = t.send(&metadata(false), 10).await.expect("Metadata");
    assert_eq!(r.topics[0].topic_authorized_operations, i32::MIN);
    assert_eq!(r.cluster_authorized_operations, i32::MIN);

    let r = t
        .send(
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            1,
        )
        .await
        .expect("DescribeCluster");
    assert_eq!(r.cluster_authorized_operations, DESCRIBE);

    // A group nobody created is described as Dead, with the operations on it (once
    // FindCoordinator has created `__consumer_offsets` and its shard has loaded).
    t.send(
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("g")]),
        4,
    )
    .await
    .expect("FindCoordinator");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let r = loop {
        let r = t
            .send(
                &DescribeGroupsRequest::default()
                    .with_groups(vec![GroupId(s("g"))])
                    .with_include_authorized_operations(true),
                5,
            )
            .await
            .expect("DescribeGroups");
        if r.groups[0].error_code == 0 || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].authorized_operations, READ | DESCRIBE);
    let r = t
        .send(
            &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
            5,
        )
        .await
        .expect("DescribeGroups");
    assert_eq!(r.groups[0].authorized_operations, i32::MIN);
}

#[tokio::test]
async fn without_an_authorizer_every_supported_operation_is_allowed() {
    let t = TestBroker::start().await;
    t.create_topic("t", 1).await;
    let r = t
        .send(
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s("t"))))]))
                .with_include_topic_authorized_operations(true),
            12,
        )
        .await
        .expect("Metadata");
    // READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
    assert_eq!(r.topics[0].topic_authorized_operations, 0b1101_1111_1000);

    // The cluster: CREATE (5), ALTER (7), DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS,
    // IDEMPOTENT_WRITE (Kafka's `AclEntry.supportedOperations(CLUSTER)`).
    const CLUSTER_ALL: i32 = 0b1_1111_1010_0000;
    let r = t
        .send(
            &MetadataRequest::default()
                .with_topics(Some(vec![]))
                .with_include_cluster_authorized_operations(true),
            10,
        )
        .await
        .expect("Metadata");
    assert_eq!(r.cluster_authorized_operations, CLUSTER_ALL);
    let r = t
        .send(
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            1,
        )
        .await
        .expect("DescribeCluster");
    assert_eq!(r.cluster_authorized_operations, CLUSTER_ALL);

    // A group: READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS, for a KIP-848 group
    // (ConsumerGroupDescribe) as for a classic one (DescribeGroups).
    const GROUP_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8) | (1 << 10) | (1 << 11);
    t.send(
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![s("g848")]),
        4,
    )
    .await
    .expect("FindCoordinator");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = t
            .send(
                &ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(s("g848")))
                    .with_member_id(s("m1"))
                    .with_member_epoch(0)
                    .with_rebalance_timeout_ms(30_000)
                    .with_subscribed_topic_names(Some(vec![TopicName(s("t"))]))
                    .with_topic_partitions(Some(vec![])),
                1,
            )
            .await
            .expect("ConsumerGroupHeartbeat");
        if r.error_code == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let describe = |ask: bool| {
        ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("g848"))])
            .with_include_authorized_operations(ask)
    };
    let r = t
        .send(&describe(true), 0)
        .await
        .expect("ConsumerGroupDescribe");
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].authorized_operations, GROUP_ALL);
    let r = t
        .send(&describe(false), 0)
        .await
        .expect("ConsumerGroupDescribe");
    assert_eq!(r.groups[0].authorized_operations, i32::MIN);
    let r = t
        .send(
            &DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(s("classic"))])
                .with_include_authorized_operations(true),
            5,
        )
        .await
        .expect("DescribeGroups");
    assert_eq!(r.groups[0].error_code, 0);
    assert_eq!(r.groups[0].authorized_operations, GROUP_ALL);
}
