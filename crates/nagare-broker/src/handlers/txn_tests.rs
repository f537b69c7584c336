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

const RETRIABLE_COORDINATOR: [i16; 3] = [14, 15, 16];
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const PRODUCER_FENCED: i16 = 90;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const CONCURRENT_TRANSACTIONS: i16 = 51;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const INVALID_REQUEST: i16 = 42;

/// InitProducerId for `id`, retried while the coordinator is created and loads.
async fn init_txn(t: &TestBroker, id: &str, pid: i64, epoch: i16) -> InitProducerIdResponse {
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch);
    for _ in 0..200 {
        let r = t.send(&req, 4).await.expect("InitProducerId");
        if !RETRIABLE_COORDINATOR.contains(&r.error_code) {
            return r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the transaction coordinator never loaded");
}

fn add_v3(
    id: &str,
    pid: ProducerId,
    epoch: i16,
    topics: &[(&str, &[i32])],
) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(id)))
        .with_v3_and_below_producer_id(pid)
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|(name, parts)| {
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(TopicName(s(name)))
                        .with_partitions(parts.to_vec())
                })
                .collect(),
        )
}

/// (topic, partition, error) of a v0–3 answer, sorted.
fn codes_v3(r: &AddPartitionsToTxnResponse) -> Vec<(String, i32, i16)> {
    let mut v: Vec<(String, i32, i16)> = r
        .results_by_topic_v3_and_below
        .iter()
        .flat_map(|t| {
            t.results_by_partition.iter().map(|p| {
                (
                    t.name.to_string(),
                    p.partition_index,
                    p.partition_error_code,
                )
            })
        })
        .collect();
    v.sort();
    v
}

fn end(id: &str, pid: ProducerId, epoch: i16, commit: bool) -> EndTxnRequest {
    EndTxnRequest::default()
        .with_transactional_id(TransactionalId(s(id)))
        .with_producer_id(pid)
        .with_producer_epoch(epoch)
        .with_committed(commit)
}

async fn describe(t: &TestBroker, id: &str) -> describe_transactions_response::TransactionState {
    let r = t
        .send(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(id))]),
            0,
        )
        .await
        .expect("DescribeTransactions");
    r.transaction_states.into_iter().next().expect("one state")
}

#[tokio::test]
async fn init_producer_id_with_a_transactional_id_bumps_the_epoch_and_fences_the_old_producer() {
    let t = broker().await;
    // InitProducerId creates __transaction_state itself if nobody looked it up before.
    let first = init_txn(&t, "tx", -1, -1).await;
    assert_eq!(first.error_code, 0);
    assert!(t.broker.image().topic(TRANSACTION_STATE_TOPIC).is_some());
    assert!(first.producer_id.0 >= 0);
    // The same id again (a new producer instance): same producer id, next epoch.
    let second = init_txn(&t, "tx", -1, -1).await;
    assert_eq!(second.error_code, 0);
    assert_eq!(second.producer_id, first.producer_id);
    assert_eq!(second.producer_epoch, first.producer_epoch + 1);
    // The first instance is fenced: its AddPartitions and EndTxn fail.
    t.create_topic("a", 2).await;
    let r = t
        .send(
            &add_v3(
                "tx",
                first.producer_id,
                first.producer_epoch,
                &[("a", &[0])],
            ),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    let code = codes_v3(&r)[0].2;
    assert!(
        code == PRODUCER_FENCED || code == INVALID_PRODUCER_EPOCH,
        "fenced producer got {code}"
    );
    let r = t
        .send(&end("tx", first.producer_id, first.producer_epoch, true), 3)
        .await
        .expect("EndTxn");
    assert!(
        r.error_code == PRODUCER_FENCED || r.error_code == INVALID_PRODUCER_EPOCH,
        "{r:?}"
    );
    // KIP-360: the current instance may recover naming its id and epoch.
    let third = init_txn(&t, "tx", second.producer_id.0, second.producer_epoch).await;
    assert_eq!(third.error_code, 0);
    assert_eq!(third.producer_id, first.producer_id);
    assert_eq!(third.producer_epoch, second.producer_epoch + 1);
    // Request checks done by the broker, as Kafka: an id without an epoch, a bad timeout,
    // an empty transactional id.
    let r = t
        .send(
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(s("tx"))))
                .with_transaction_timeout_ms(60_000)
                .with_producer_id(ProducerId(5))
                .with_producer_epoch(-1),
            4,
        )
        .await
        .expect("InitProducerId");
    assert_eq!(r.error_code, INVALID_REQUEST);
    for (id, timeout, code) in [
        ("tx", 0, INVALID_TRANSACTION_TIMEOUT),
        ("tx", 900_001, INVALID_TRANSACTION_TIMEOUT),
        ("", 60_000, INVALID_REQUEST),
    ] {
        let r = t
            .send(
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s(id))))
                    .with_transaction_timeout_ms(timeout)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
                4,
            )
            .await
            .expect("InitProducerId");
        assert_eq!(r.error_code, code, "{id:?} {timeout}");
    }
}

#[tokio::test]
async fn add_partitions_end_txn_and_describe_follow_the_transaction() {
    let t = broker().await;
    t.create_topic("a", 2).await;
    t.create_topic("b", 1).await;
    let p = init_txn(&t, "flow", -1, -1).await;
    assert_eq!(p.error_code, 0);
    let (pid, epoch) = (p.producer_id, p.producer_epoch);

    // An unknown partition refuses the request; the others are not attempted.
    let r = t
        .send(
            &add_v3("flow", pid, epoch, &[("a", &[0, 5]), ("nope", &[0])]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert_eq!(
        codes_v3(&r),
        vec![
            ("a".to_string(), 0, OPERATION_NOT_ATTEMPTED),
            ("a".to_string(), 5, UNKNOWN_TOPIC_OR_PARTITION),
            ("nope".to_string(), 0, UNKNOWN_TOPIC_OR_PARTITION),
        ]
    );
    assert_eq!(
        describe(&t, "flow").await.transaction_state.as_str(),
        "Empty"
    );

    // Added: the transaction is Ongoing with its partitions.
    let r = t
        .send(
            &add_v3("flow", pid, epoch, &[("a", &[0, 1]), ("b", &[0])]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert!(codes_v3(&r).iter().all(|c| c.2 == 0), "{r:?}");
    let d = describe(&t, "flow").await;
    assert_eq!(d.error_code, 0);
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!((d.producer_id, d.producer_epoch), (pid, epoch));
    assert_eq!(d.transaction_timeout_ms, 60_000);
    assert!(d.transaction_start_time_ms > 0);
    let mut parts: Vec<(String, i32)> = d
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        vec![("a".into(), 0), ("a".into(), 1), ("b".into(), 0)]
    );

    // AddOffsetsToTxn adds the group's __consumer_offsets partition.
    let r = t
        .send(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("flow")))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("g"))),
            3,
        )
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(r.error_code, 0);
    let d = describe(&t, "flow").await;
    let offsets_partition =
        nagare_coordinator::partition_for("g", t.broker.config.offsets_topic_num_partitions);
    assert!(d.topics.iter().any(
        |x| x.topic.as_str() == "__consumer_offsets" && x.partitions == vec![offsets_partition]
    ));

    // ListTransactions sees it, with filters.
    let r = t
        .send(&ListTransactionsRequest::default(), 1)
        .await
        .expect("ListTransactions");
    assert_eq!(r.error_code, 0);
    assert!(r.transaction_states.iter().any(
        |x| x.transactional_id.as_str() == "flow" && x.transaction_state.as_str() == "Ongoing"
    ));
    let r = t
        .send(
            &ListTransactionsRequest::default()
                .with_state_filters(vec![s("CompleteCommit"), s("Bogus")]),
            1,
        )
        .await
        .expect("ListTransactions filtered");
    assert!(r.transaction_states.is_empty());
    assert_eq!(r.unknown_state_filters, vec![s("Bogus")]);
    // v2 (KIP-1152): a pattern the whole id must match; an invalid one is refused.
    let tb = &t;
    let listed = |pattern: &str| {
        let req =
            ListTransactionsRequest::default().with_transactional_id_pattern(Some(s(pattern)));
        async move {
            let r = tb.send(&req, 2).await.expect("ListTransactions v2");
            let ids: Vec<String> = r
                .transaction_states
                .iter()
                .map(|x| x.transactional_id.to_string())
                .collect();
            (r.error_code, ids)
        }
    };
    assert_eq!(listed("fl.*").await, (0, vec!["flow".to_string()]));
    assert_eq!(listed("").await, (0, vec!["flow".to_string()]));
    assert_eq!(listed("fl").await, (0, vec![]));
    assert_eq!(listed("other|flo?w").await, (0, vec!["flow".to_string()]));
    assert_eq!(listed("fl(ow").await.0, 128, "INVALID_REGULAR_EXPRESSION");

    // EndTxn(commit): PrepareCommit, and the marker sender has its markers to write.
    let r = t
        .send(&end("flow", pid, epoch, true), 3)
        .await
        .expect("EndTxn");
    assert_eq!(r.error_code, 0, "{r:?}");
    let d = describe(&t, "flow").await;
    assert!(
        ["PrepareCommit", "CompleteCommit"].contains(&d.transaction_state.as_str()),
        "{d:?}"
    );
    // While the commit is being completed, new work on the id waits. (The local markers may
    // complete it between the describe and the add: then the add starts a new transaction.)
    let mut started_new = false;
    if d.transaction_state.as_str() == "PrepareCommit" {
        let r = t
            .send(&add_v3("flow", pid, epoch, &[("a", &[0])]), 3)
            .await
            .expect("AddPartitionsToTxn");
        let code = codes_v3(&r)[0].2;
        assert!(code == CONCURRENT_TRANSACTIONS || code == 0, "{r:?}");
        started_new = code == 0;
    }
    // Aborting what was committed is refused.
    if !started_new {
        let r = t
            .send(&end("flow", pid, epoch, false), 3)
            .await
            .expect("EndTxn abort");
        assert!(
            r.error_code == INVALID_TXN_STATE || r.error_code == CONCURRENT_TRANSACTIONS,
            "{r:?}"
        );
    }
    // DescribeTransactions of an id nobody used.
    let d = describe(&t, "never").await;
    assert_eq!(d.error_code, 105, "TRANSACTIONAL_ID_NOT_FOUND");
}

/// Allows everything but: WRITE on topic `secret`, transactional id `secret-tx`, group
/// `secret-g`, and CLUSTER_ACTION.
struct Partly;

impl Authorizer for Partly {
    fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
        !((r.resource_type == ResourceType::Topic && r.name == "secret")
            || (r.resource_type == ResourceType::TransactionalId && r.name == "secret-tx")
            || (r.resource_type == ResourceType::Group && r.name == "secret-g")
            || op == AclOperation::ClusterAction)
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
async fn transaction_apis_are_authorized() {
    let t = TestBroker::build(
        &[("transaction.state.log.num.partitions", "2")],
        Some(Arc::new(Partly)),
    )
    .await;
    t.create_topic("open", 1).await;
    t.create_topic("secret", 1).await;
    let p = init_txn(&t, "tx", -1, -1).await;
    assert_eq!(p.error_code, 0);
    let (pid, epoch) = (p.producer_id, p.producer_epoch);
    // A denied topic: TOPIC_AUTHORIZATION_FAILED, the rest not attempted.
    let r = t
        .send(
            &add_v3("tx", pid, epoch, &[("open", &[0]), ("secret", &[0])]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert_eq!(
        codes_v3(&r),
        vec![
            ("open".to_string(), 0, OPERATION_NOT_ATTEMPTED),
            ("secret".to_string(), 0, TOPIC_DENIED),
        ]
    );
    // A denied transactional id everywhere.
    let r = t
        .send(&add_v3("secret-tx", pid, epoch, &[("open", &[0])]), 3)
        .await
        .expect("AddPartitionsToTxn");
    assert_eq!(codes_v3(&r)[0].2, TXN_ID_DENIED);
    let r = t
        .send(&end("secret-tx", pid, epoch, true), 3)
        .await
        .expect("EndTxn");
    assert_eq!(r.error_code, TXN_ID_DENIED);
    let r = t
        .send(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("secret-tx")))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("g"))),
            3,
        )
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(r.error_code, TXN_ID_DENIED);
    let r = t
        .send(
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s("tx")))
                .with_producer_id(pid)
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s("secret-g"))),
            3,
        )
        .await
        .expect("AddOffsetsToTxn");
    assert_eq!(r.error_code, GROUP_DENIED);
    assert_eq!(describe(&t, "secret-tx").await.error_code, TXN_ID_DENIED);
    // v4+ batches are for brokers: CLUSTER_ACTION.
    let r = t
        .send(
            &AddPartitionsToTxnRequest::default().with_transactions(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s("tx")))
                    .with_producer_id(pid)
                    .with_producer_epoch(epoch)
                    .with_verify_only(true),
            ]),
            4,
        )
        .await
        .expect("AddPartitionsToTxn v4");
    assert_eq!(r.error_code, CLUSTER_DENIED);
    // ListTransactions hides ids the principal may not describe.
    let s_tx = init_txn(&t, "tx2", -1, -1).await;
    assert_eq!(s_tx.error_code, 0);
    let r = t
        .send(&ListTransactionsRequest::default(), 0)
        .await
        .expect("ListTransactions");
    let mut ids: Vec<String> = r
        .transaction_states
        .iter()
        .map(|x| x.transactional_id.to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["tx".to_string(), "tx2".to_string()]);
}

#[tokio::test]
async fn batched_add_partitions_verifies_per_transaction() {
    let t = broker().await;
    t.create_topic("a", 2).await;
    let p = init_txn(&t, "v1", -1, -1).await;
    let q = init_txn(&t, "v2", -1, -1).await;
    let r = t
        .send(
            &add_v3("v1", p.producer_id, p.producer_epoch, &[("a", &[0])]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert!(codes_v3(&r).iter().all(|c| c.2 == 0));
    let txn = |id: &str, pid: ProducerId, epoch: i16| {
        add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(pid)
            .with_producer_epoch(epoch)
            .with_verify_only(true)
            .with_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s("a")))
                    .with_partitions(vec![0]),
            ])
    };
    let r = t
        .send(
            &AddPartitionsToTxnRequest::default().with_transactions(vec![
                txn("v1", p.producer_id, p.producer_epoch),
                txn("v2", q.producer_id, q.producer_epoch),
            ]),
            4,
        )
        .await
        .expect("AddPartitionsToTxn v4");
    assert_eq!(r.error_code, 0);
    assert_eq!(r.results_by_transaction.len(), 2);
    let code = |i: usize| {
        r.results_by_transaction[i].topic_results[0].results_by_partition[0].partition_error_code
    };
    assert_eq!(r.results_by_transaction[0].transactional_id.as_str(), "v1");
    // v1 has a-0 in its ongoing transaction; v2 has no transaction.
    assert_eq!(code(0), 0);
    assert_ne!(code(1), 0);
    // verify_only added nothing.
    assert_eq!(describe(&t, "v2").await.transaction_state.as_str(), "Empty");
}

/// Polls DescribeTransactions until `id` reaches `state` (at most 10 s).
async fn wait_state(t: &TestBroker, id: &str, state: &str) {
    let mut last = String::new();
    for _ in 0..500 {
        let d = describe(t, id).await;
        last = d.transaction_state.to_string();
        if last == state {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{id} stayed in {last}, never reached {state}");
}

#[tokio::test]
async fn markers_are_written_to_every_partition_and_complete_the_transaction() {
    let t = broker().await;
    t.create_topic("m", 3).await;
    let p = init_txn(&t, "mk", -1, -1).await;
    let (pid, epoch) = (p.producer_id, p.producer_epoch);
    let leo = |part: i32| {
        t.broker
            .replicas
            .partition("m", part)
            .expect("hosted")
            .log_end_offset()
    };
    let before: Vec<i64> = (0..3).map(leo).collect();
    let r = t
        .send(&add_v3("mk", pid, epoch, &[("m", &[0, 2])]), 3)
        .await
        .expect("AddPartitionsToTxn");
    assert!(codes_v3(&r).iter().all(|c| c.2 == 0), "{r:?}");
    let r = t
        .send(&end("mk", pid, epoch, true), 3)
        .await
        .expect("EndTxn");
    assert_eq!(r.error_code, 0);
    // The sender writes a COMMIT marker to m-0 and m-2 (through this broker's own
    // WriteTxnMarkers handler) and the coordinator completes the transaction.
    wait_state(&t, "mk", "CompleteCommit").await;
    assert_eq!(t.broker.transactions.markers().pending(), 0);
    let after: Vec<i64> = (0..3).map(leo).collect();
    assert_eq!(
        after,
        vec![before[0] + 1, before[1], before[2] + 1],
        "one marker on each partition of the transaction, none elsewhere"
    );
    // The next transaction of the producer may start, and an abort completes the same way.
    let r = t
        .send(&add_v3("mk", pid, epoch, &[("m", &[1])]), 3)
        .await
        .expect("AddPartitionsToTxn");
    assert!(codes_v3(&r).iter().all(|c| c.2 == 0), "{r:?}");
    let r = t
        .send(&end("mk", pid, epoch, false), 3)
        .await
        .expect("EndTxn");
    assert_eq!(r.error_code, 0);
    wait_state(&t, "mk", "CompleteAbort").await;
    assert_eq!(leo(1), before[1] + 1);

    // A partition whose topic is deleted before its marker is written is dropped, as Kafka,
    // and the transaction still completes.
    t.create_topic("doomed", 1).await;
    let r = t
        .send(
            &add_v3("mk", pid, epoch, &[("doomed", &[0]), ("m", &[0])]),
            3,
        )
        .await
        .expect("AddPartitionsToTxn");
    assert!(codes_v3(&r).iter().all(|c| c.2 == 0), "{r:?}");
    let r = t
        .send(
            &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("doomed"))]),
            5,
        )
        .await
        .expect("DeleteTopics");
    assert_eq!(r.responses[0].error_code, 0);
    let r = t
        .send(&end("mk", pid, epoch, true), 3)
        .await
        .expect("EndTxn");
    assert_eq!(r.error_code, 0);
    wait_state(&t, "mk", "CompleteCommit").await;
    assert_eq!(leo(0), before[0] + 2);
}
