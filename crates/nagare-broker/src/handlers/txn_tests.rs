//! Tests of the transaction APIs on an in-memory broker ([`crate::testing::TestBroker`]):
//! FindCoordinator(TRANSACTION) and `__transaction_state`, InitProducerId with and without a
//! transactional id, and their authorization.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use nagare_metadata::records::ConfigResource;

use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
use crate::testing::TestBroker;
use crate::transaction_coordinator::TRANSACTION_STATE_TOPIC;

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

const TXN_ID_DENIED: i16 = 53;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// A broker with a small `__transaction_state`.
async fn broker() -> TestBroker {
    TestBroker::build(&[("transaction.state.log.num.partitions", "3")], None).await
}

/// Denies everything on transactional ids starting with `secret`.
struct NoSecretTxn;

impl Authorizer for NoSecretTxn {
    fn authorize(&self, _: &Requester<'_>, _: AclOperation, r: &Resource<'_>) -> bool {
        !(r.resource_type == ResourceType::TransactionalId && r.name.starts_with("secret"))
    }
    fn authorize_by_resource_type(
        &self,
        _: &Requester<'_>,
        _: AclOperation,
        _: ResourceType,
    ) -> bool {
        true
    }
}

#[tokio::test]
async fn find_coordinator_transaction_creates_the_state_topic_and_locates_the_leader() {
    let t = broker().await;
    // v3: one key.
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key(s("tx-1"))
                .with_key_type(1),
            3,
        )
        .await
        .expect("FindCoordinator");
    assert_eq!(r.error_code, 0, "{r:?}");
    assert_eq!(r.node_id.0, 1);
    assert_eq!(r.port, 9092);

    // The topic: compacted, the configured partitions, min.insync capped at the (capped)
    // replication factor of a single node, internal in Metadata.
    let image = t.broker.image();
    let topic = image.topic(TRANSACTION_STATE_TOPIC).expect("created");
    assert_eq!(topic.partitions.len(), 3);
    assert!(topic.partitions.values().all(|p| p.replicas == vec![1]));
    let cfg = image.config_overrides(ConfigResource::Topic, TRANSACTION_STATE_TOPIC);
    assert_eq!(
        cfg.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        cfg.get("min.insync.replicas").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        cfg.get("segment.bytes").map(String::as_str),
        Some("104857600")
    );
    let m = t
        .send(
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(s(TRANSACTION_STATE_TOPIC))))])),
            12,
        )
        .await
        .expect("Metadata");
    assert!(m.topics[0].is_internal);

    // v4+: a batch of keys; unknown key types are INVALID_REQUEST.
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("a"), s("b")]),
            4,
        )
        .await
        .expect("FindCoordinator v4");
    assert_eq!(r.coordinators.len(), 2);
    assert!(r
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 1));
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key_type(7)
                .with_coordinator_keys(vec![s("a")]),
            4,
        )
        .await
        .expect("FindCoordinator v4 bad type");
    assert_eq!(r.coordinators[0].error_code, 42);
}

#[tokio::test]
async fn find_coordinator_transaction_needs_describe_on_the_id_and_waits_for_brokers() {
    let t = TestBroker::build(
        &[("transaction.state.log.num.partitions", "2")],
        Some(Arc::new(NoSecretTxn)),
    )
    .await;
    // A refused id creates nothing.
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key(s("secret-1"))
                .with_key_type(1),
            3,
        )
        .await
        .expect("FindCoordinator");
    assert_eq!(r.error_code, TXN_ID_DENIED);
    assert!(t.broker.image().topic(TRANSACTION_STATE_TOPIC).is_none());
    // In a batch, refused keys are refused and the others answered.
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s("secret-2"), s("open")]),
            5,
        )
        .await
        .expect("FindCoordinator v5");
    assert_eq!(r.coordinators[0].error_code, TXN_ID_DENIED);
    assert_eq!(r.coordinators[1].error_code, 0);

    // An explicit replication factor larger than the live brokers: the topic is not created
    // and the answer is COORDINATOR_NOT_AVAILABLE (clients retry), as in Kafka.
    let t = TestBroker::build(&[("transaction.state.log.replication.factor", "3")], None).await;
    let r = t
        .send(
            &FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
            3,
        )
        .await
        .expect("FindCoordinator");
    assert_eq!(r.error_code, COORDINATOR_NOT_AVAILABLE);
    assert!(t.broker.image().topic(TRANSACTION_STATE_TOPIC).is_none());
}

#[tokio::test]
async fn init_producer_id_without_a_transactional_id_always_hands_out_a_new_id() {
    let t = broker().await;
    let init = |pid: i64, epoch: i16| {
        InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(-1)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
    };
    let a = t.send(&init(-1, -1), 4).await.expect("InitProducerId");
    assert_eq!((a.error_code, a.producer_epoch), (0, 0));
    let b = t.send(&init(-1, -1), 5).await.expect("InitProducerId");
    assert_eq!((b.error_code, b.producer_epoch), (0, 0));
    assert_ne!(a.producer_id, b.producer_id);
    // A client naming another producer's id and epoch does not get that id with a bumped
    // epoch (which would fence the owner's next produce): it gets a new id at epoch 0.
    let c = t
        .send(&init(a.producer_id.0, a.producer_epoch), 4)
        .await
        .expect("InitProducerId");
    assert_eq!(c.error_code, 0);
    assert_eq!(c.producer_epoch, 0);
    assert_ne!(c.producer_id, a.producer_id);
    assert_ne!(c.producer_id, b.producer_id);
}
