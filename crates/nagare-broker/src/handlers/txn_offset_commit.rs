//! TxnOffsetCommit (key 28, KIP-98; member checks of KIP-447 from v3): a transactional
//! producer commits its consumer's offsets inside its transaction. The offsets are written
//! to the group's `__consumer_offsets` partition as a transactional batch of the producer
//! and become visible to OffsetFetch only once the transaction coordinator's COMMIT marker
//! reaches that partition (WriteTxnMarkers). Kafka's `KafkaApis.handleTxnOffsetCommitRequest`
//! and `GroupCoordinatorService.commitTransactionalOffsets`.

use std::sync::Arc;

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use nagare_coordinator::{GroupRequest, GroupResponse, RequestContext};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions (Kafka 4.x: 0–5; v5 marks a transaction-version-2 client).
pub const VERSIONS: (i16, i16) = (0, 5);

/// Every partition of `topics` answered with `code`.
fn answer_all(
    topics: &[kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic],
    code: i16,
) -> Vec<TxnOffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|t| {
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect()
}

/// Handles TxnOffsetCommit.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let mut r: TxnOffsetCommitRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let now = |topics| {
        Ok(Reply::Now(respond(
            ApiKey::TxnOffsetCommit,
            v,
            corr,
            &TxnOffsetCommitResponse::default().with_topics(topics),
        )))
    };
    // Kafka: WRITE on the transactional id, then READ on the group, for the whole request.
    if !broker.authorize(
        &req.ctx,
        AclOperation::Write,
        &Resource::transactional_id(r.transactional_id.as_str()),
    ) {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return now(answer_all(&r.topics, code));
    }
    let group = r.group_id.to_string();
    if !broker.authorize(&req.ctx, AclOperation::Read, &Resource::group(&group)) {
        return now(answer_all(
            &r.topics,
            ResponseError::GroupAuthorizationFailed.code(),
        ));
    }
    // Then READ on each topic (TOPIC_AUTHORIZATION_FAILED), and the topic must exist
    // (UNKNOWN_TOPIC_OR_PARTITION); only the rest reaches the coordinator.
    let image = broker.image();
    let mut refused = Vec::new();
    let mut allowed = Vec::new();
    for t in std::mem::take(&mut r.topics) {
        let name = t.name.as_str();
        if !broker.authorize(&req.ctx, AclOperation::Read, &Resource::topic(name)) {
            refused.extend(answer_all(
                std::slice::from_ref(&t),
                ResponseError::TopicAuthorizationFailed.code(),
            ));
        } else if image.topic(name).is_none() {
            refused.extend(answer_all(
                std::slice::from_ref(&t),
                ResponseError::UnknownTopicOrPartition.code(),
            ));
        } else {
            allowed.push(t);
        }
    }
    if allowed.is_empty() {
        return now(refused);
    }
    r.topics = allowed;
    let ctx = RequestContext {
        api_version: v,
        client_id: req.ctx.client_id().to_string(),
        client_host: format!("/{}", req.peer().ip()),
    };
    let (producer_id, producer_epoch) = (r.producer_id.0, r.producer_epoch);
    let pending = broker
        .groups
        .handle_transactional(
            &image,
            &group,
            ctx,
            GroupRequest::TxnOffsetCommit(r),
            producer_id,
            producer_epoch,
        )
        .await;
    Ok(Reply::Later(Box::pin(async move {
        let mut resp = match pending.await {
            GroupResponse::TxnOffsetCommit(c) => c,
            other => {
                // The group shard answers a TxnOffsetCommit with its own response.
                tracing::error!(response = ?other, "unexpected answer to TxnOffsetCommit");
                TxnOffsetCommitResponse::default()
            }
        };
        resp.topics.extend(refused);
        respond(ApiKey::TxnOffsetCommit, v, corr, &resp)
    })))
}

#[cfg(test)]
mod tests {
    //! TxnOffsetCommit, OffsetFetch and WriteTxnMarkers on the in-memory broker: offsets of
    //! a transaction become visible with its COMMIT marker, vanish with its ABORT marker;
    //! markers on data partitions are control batches; authorization.
    use std::sync::Arc;
    use std::time::Duration;

    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    use crate::authorizer::{AclOperation, Authorizer, Requester, Resource, ResourceType};
    use crate::group_coordinator::{GroupCoordinator, OFFSETS_TOPIC};
    use crate::testing::TestBroker;

    const UNSTABLE: i16 = 88;
    const LOADING: i16 = 14;

    fn s(x: &str) -> StrBytes {
        StrBytes::from_string(x.to_string())
    }

    fn txn_commit(
        txn: &str,
        group: &str,
        pid: i64,
        topic: &str,
        offset: i64,
    ) -> TxnOffsetCommitRequest {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(s(txn)))
            .with_group_id(GroupId(s(group)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(0)
            .with_generation_id(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(topic)))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1),
                    ]),
            ])
    }

    fn codes(r: &TxnOffsetCommitResponse) -> Vec<(String, i16)> {
        let mut v: Vec<(String, i16)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.name.to_string(), p.error_code))
            })
            .collect();
        v.sort();
        v
    }

    /// Sends TxnOffsetCommit, retrying while `__consumer_offsets` is created and loaded.
    async fn commit_loaded(
        t: &TestBroker,
        req: &TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        for _ in 0..200 {
            t.send(
                &FindCoordinatorRequest::default().with_key(req.group_id.0.clone()),
                3,
            )
            .await
            .expect("FindCoordinator");
            let r = t.send(req, 4).await.expect("TxnOffsetCommit");
            if !codes(&r)
                .iter()
                .any(|(_, c)| *c == LOADING || *c == 15 || *c == 16)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the group coordinator never loaded");
    }

    /// OffsetFetch v7 of partition 0 of `topic`: (offset, error).
    async fn fetch(t: &TestBroker, group: &str, topic: &str, stable: bool) -> (i64, i16) {
        let r = t
            .send(
                &OffsetFetchRequest::default()
                    .with_group_id(GroupId(s(group)))
                    .with_require_stable(stable)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s(topic)))
                            .with_partition_indexes(vec![0]),
                    ])),
                7,
            )
            .await
            .expect("OffsetFetch");
        let p = &r.topics[0].partitions[0];
        (p.committed_offset, p.error_code)
    }

    fn markers_req(pid: i64, commit: bool, partitions: &[(&str, i32)]) -> WriteTxnMarkersRequest {
        let mut topics: Vec<write_txn_markers_request::WritableTxnMarkerTopic> = Vec::new();
        for (t, p) in partitions {
            match topics.iter_mut().find(|x| x.name.as_str() == *t) {
                Some(x) => x.partition_indexes.push(*p),
                None => topics.push(
                    write_txn_markers_request::WritableTxnMarkerTopic::default()
                        .with_name(TopicName(s(t)))
                        .with_partition_indexes(vec![*p]),
                ),
            }
        }
        WriteTxnMarkersRequest::default().with_markers(vec![
            write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(0)
                .with_transaction_result(commit)
                .with_coordinator_epoch(0)
                .with_topics(topics),
        ])
    }

    fn marker_codes(r: &WriteTxnMarkersResponse) -> Vec<(String, i32, i16)> {
        r.markers
            .iter()
            .flat_map(|m| {
                m.topics.iter().flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
                })
            })
            .collect()
    }

    /// The control records of a partition: (producer id, commit).
    fn control_records(t: &TestBroker, topic: &str, p: i32) -> Vec<(i64, bool)> {
        let part = t.broker.replicas.partition(topic, p).expect("hosted");
        let mut out = Vec::new();
        part.replay_records(|r| {
            if r.control {
                let commit = r.key.as_deref().and_then(|k| k.get(3)).copied() == Some(1);
                out.push((r.producer_id, commit));
            }
        })
        .expect("replay");
        out
    }

    #[tokio::test]
    async fn offsets_of_a_transaction_appear_with_its_commit_marker_only() {
        let t = TestBroker::start().await;
        t.create_topic("in", 1).await;
        t.create_topic("out", 1).await;
        // A committed offset before the transaction (retried while the coordinator loads).
        let plain = OffsetCommitRequest::default()
            .with_group_id(GroupId(s("g")))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(s(""))
            .with_topics(vec![
                offset_commit_request::OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("in")))
                    .with_partitions(vec![
                        offset_commit_request::OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(3),
                    ]),
            ]);
        let mut code = -1;
        for _ in 0..200 {
            t.send(&FindCoordinatorRequest::default().with_key(s("g")), 3)
                .await
                .expect("FindCoordinator");
            let r = t.send(&plain, 8).await.expect("OffsetCommit");
            code = r.topics[0].partitions[0].error_code;
            if code == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(code, 0, "OffsetCommit");
        let r = commit_loaded(&t, &txn_commit("tx", "g", 4000, "in", 10)).await;
        assert_eq!(codes(&r), vec![("in".to_string(), 0)]);
        // Pending: the last committed offset, or UNSTABLE_OFFSET_COMMIT with require_stable.
        assert_eq!(fetch(&t, "g", "in", false).await, (3, 0));
        assert_eq!(fetch(&t, "g", "in", true).await, (-1, UNSTABLE));

        // The coordinator's markers: the data partition and the group's offsets partition.
        let image = t.broker.image();
        let op = GroupCoordinator::shard_of(&image, "g").expect("offsets topic");
        let r = t
            .send(
                &markers_req(4000, true, &[("out", 0), (OFFSETS_TOPIC, op)]),
                1,
            )
            .await
            .expect("WriteTxnMarkers");
        assert_eq!(
            marker_codes(&r),
            vec![
                ("out".to_string(), 0, 0),
                (OFFSETS_TOPIC.to_string(), op, 0)
            ]
        );
        assert_eq!(fetch(&t, "g", "in", true).await, (10, 0));
        assert_eq!(control_records(&t, "out", 0), vec![(4000, true)]);
        assert_eq!(control_records(&t, OFFSETS_TOPIC, op), vec![(4000, true)]);

        // An aborted transaction's offsets vanish.
        let r = commit_loaded(&t, &txn_commit("tx", "g", 4001, "in", 20)).await;
        assert_eq!(codes(&r), vec![("in".to_string(), 0)]);
        let r = t
            .send(&markers_req(4001, false, &[(OFFSETS_TOPIC, op)]), 1)
            .await
            .expect("WriteTxnMarkers abort");
        assert_eq!(marker_codes(&r), vec![(OFFSETS_TOPIC.to_string(), op, 0)]);
        assert_eq!(fetch(&t, "g", "in", true).await, (10, 0));

        // Partitions this broker does not host; a topic that does not exist for the commit.
        let r = t
            .send(&markers_req(4002, true, &[("nope", 0), ("out", 5)]), 1)
            .await
            .expect("WriteTxnMarkers unknown");
        assert_eq!(
            marker_codes(&r),
            vec![("nope".to_string(), 0, 3), ("out".to_string(), 5, 3)]
        );
        let r = t
            .send(&txn_commit("tx", "g", 4003, "nope", 1), 4)
            .await
            .expect("TxnOffsetCommit unknown topic");
        assert_eq!(codes(&r), vec![("nope".to_string(), 3)]);
    }

    /// Refuses every resource whose name starts with `deny`.
    struct DenyPrefix;

    impl Authorizer for DenyPrefix {
        fn authorize(&self, _: &Requester<'_>, op: AclOperation, r: &Resource<'_>) -> bool {
            // The cluster is refused CLUSTER_ACTION (a client, not a broker).
            if r.resource_type == ResourceType::Cluster {
                return op != AclOperation::ClusterAction;
            }
            !r.name.starts_with("deny")
        }
    }

    #[tokio::test]
    async fn txn_offset_commit_and_write_txn_markers_are_authorized() {
        let t = TestBroker::with_authorizer(Arc::new(DenyPrefix)).await;
        t.create_topic("in", 1).await;
        t.create_topic("deny-topic", 1).await;
        // WRITE on the transactional id first, then READ on the group, then per topic.
        let r = t
            .send(&txn_commit("deny-tx", "g", 1, "in", 1), 4)
            .await
            .expect("TxnOffsetCommit");
        assert_eq!(codes(&r), vec![("in".to_string(), 53)]);
        let r = t
            .send(&txn_commit("tx", "deny-group", 1, "in", 1), 4)
            .await
            .expect("TxnOffsetCommit");
        assert_eq!(codes(&r), vec![("in".to_string(), 30)]);
        let mut req = txn_commit("tx", "g", 1, "in", 1);
        let denied = txn_commit("tx", "g", 1, "deny-topic", 1);
        req.topics.extend(denied.topics);
        let r = commit_loaded(&t, &req).await;
        assert_eq!(
            codes(&r),
            vec![("deny-topic".to_string(), 29), ("in".to_string(), 0)]
        );
        // Without CLUSTER_ACTION every partition is refused and nothing is written.
        let r = t
            .send(&markers_req(1, true, &[("in", 0)]), 1)
            .await
            .expect("WriteTxnMarkers");
        assert_eq!(marker_codes(&r), vec![("in".to_string(), 0, 31)]);
        assert!(control_records(&t, "in", 0).is_empty());
    }

    #[tokio::test]
    async fn markers_need_min_insync_replicas_on_data_partitions() {
        let t = TestBroker::build(&[("min.insync.replicas", "2")], None).await;
        t.create_topic("t", 1).await;
        let r = t
            .send(&markers_req(5, true, &[("t", 0)]), 1)
            .await
            .expect("WriteTxnMarkers");
        assert_eq!(marker_codes(&r), vec![("t".to_string(), 0, 19)]);
        assert!(control_records(&t, "t", 0).is_empty());
    }
}
