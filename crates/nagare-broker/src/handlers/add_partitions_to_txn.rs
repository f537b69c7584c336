//! AddPartitionsToTxn (key 24): adds partitions to a producer's ongoing transaction on the
//! transaction coordinator owning its transactional id, as Kafka's
//! `KafkaApis.handleAddPartitionsToTxnRequest`:
//!
//! - v0–3 come from clients, one transaction each: WRITE on the transactional id
//!   (TRANSACTIONAL_ID_AUTHORIZATION_FAILED for every partition), WRITE on each topic
//!   (TOPIC_AUTHORIZATION_FAILED), partitions that do not exist (UNKNOWN_TOPIC_OR_PARTITION);
//!   if any partition is refused the others get OPERATION_NOT_ATTEMPTED.
//! - v4+ come from partition leaders (KIP-890 part 1): CLUSTER_ACTION on the cluster, a batch
//!   of transactions answered one by one, each either added or — with `verify_only` — checked
//!   against the ongoing transaction.

use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, TopicName,
};

use nagare_transaction_coordinator::{TopicPartition, TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::transaction_coordinator::{
    add_partitions_transaction_version, request_context, PendingReply,
};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 5);

/// One transaction's answer: its partitions, each with an error.
type Results = Vec<(TopicPartition, i16)>;

/// Either answered already (refused), or waiting for the coordinator.
enum Outcome {
    Done(Results),
    Pending(PendingReply),
}

/// Handles AddPartitionsToTxn.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AddPartitionsToTxnRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    if v >= 4 {
        // KIP-890: the batched form is for brokers verifying transactional produce.
        if !broker.authorize(&req.ctx, AclOperation::ClusterAction, &Resource::cluster()) {
            let resp = AddPartitionsToTxnResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
            return Ok(Reply::Now(respond(
                ApiKey::AddPartitionsToTxn,
                v,
                corr,
                &resp,
            )));
        }
        let mut waiting = Vec::with_capacity(r.transactions.len());
        for t in &r.transactions {
            let outcome = one_transaction(broker, &req, t, false).await;
            waiting.push((t.transactional_id.clone(), outcome));
        }
        return Ok(Reply::Later(Box::pin(async move {
            let mut results = Vec::with_capacity(waiting.len());
            for (id, outcome) in waiting {
                let parts = settle(outcome).await;
                results.push(
                    AddPartitionsToTxnResult::default()
                        .with_transactional_id(id)
                        .with_topic_results(topic_results(parts)),
                );
            }
            let resp = AddPartitionsToTxnResponse::default().with_results_by_transaction(results);
            respond(ApiKey::AddPartitionsToTxn, v, corr, &resp)
        })));
    }
    let t = AddPartitionsToTxnTransaction::default()
        .with_transactional_id(r.v3_and_below_transactional_id.clone())
        .with_producer_id(r.v3_and_below_producer_id)
        .with_producer_epoch(r.v3_and_below_producer_epoch)
        .with_verify_only(false)
        .with_topics(r.v3_and_below_topics.clone());
    let outcome = one_transaction(broker, &req, &t, true).await;
    Ok(Reply::Later(Box::pin(async move {
        let parts = settle(outcome).await;
        let resp = AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(parts));
        respond(ApiKey::AddPartitionsToTxn, v, corr, &resp)
    })))
}

/// Authorizes and checks one transaction's partitions, then hands it to its coordinator.
/// `from_client`: v0–3, where the transactional id needs WRITE.
async fn one_transaction(
    broker: &Arc<Broker>,
    req: &Request,
    t: &AddPartitionsToTxnTransaction,
    from_client: bool,
) -> Outcome {
    let txn_id = t.transactional_id.to_string();
    let partitions = flatten(&t.topics);
    if from_client
        && !broker.authorize(
            &req.ctx,
            AclOperation::Write,
            &Resource::transactional_id(&txn_id),
        )
    {
        let code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return Outcome::Done(partitions.into_iter().map(|tp| (tp, code)).collect());
    }
    let image = broker.image();
    let mut refused = Vec::new();
    let mut accepted = Vec::new();
    for tp in partitions {
        if !broker.authorize(&req.ctx, AclOperation::Write, &Resource::topic(&tp.topic)) {
            refused.push((tp, ResponseError::TopicAuthorizationFailed.code()));
        } else if image
            .topic(&tp.topic)
            .is_none_or(|topic| !topic.partitions.contains_key(&tp.partition))
        {
            refused.push((tp, ResponseError::UnknownTopicOrPartition.code()));
        } else {
            accepted.push(tp);
        }
    }
    if !refused.is_empty() {
        let not_attempted = ResponseError::OperationNotAttempted.code();
        refused.extend(accepted.into_iter().map(|tp| (tp, not_attempted)));
        return Outcome::Done(refused);
    }
    let pending = broker
        .transactions
        .handle(
            &image,
            &txn_id,
            request_context(req),
            TxnRequest::AddPartitions {
                transactional_id: txn_id.clone(),
                producer_id: *t.producer_id,
                producer_epoch: t.producer_epoch,
                partitions: accepted,
                verify_only: t.verify_only,
                transaction_version: add_partitions_transaction_version(req.version()),
            },
        )
        .await;
    Outcome::Pending(pending)
}

/// The per-partition results of an outcome.
async fn settle(outcome: Outcome) -> Results {
    match outcome {
        Outcome::Done(r) => r,
        Outcome::Pending(p) => match p.await {
            TxnResponse::AddPartitions { results } => results,
            other => {
                tracing::error!(
                    ?other,
                    "unexpected transaction coordinator answer to AddPartitionsToTxn"
                );
                Vec::new()
            }
        },
    }
}

/// The request's partitions, in order.
fn flatten(topics: &[AddPartitionsToTxnTopic]) -> Vec<TopicPartition> {
    topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| TopicPartition {
                topic: t.name.to_string(),
                partition: *p,
            })
        })
        .collect()
}

/// Per-partition errors grouped by topic, topics in first-seen order.
fn topic_results(parts: Results) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (tp, code) in parts {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(tp.partition)
            .with_partition_error_code(code);
        match out.iter_mut().find(|t| t.name.as_str() == tp.topic) {
            Some(t) => t.results_by_partition.push(result),
            None => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(super::sb(tp.topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    out
}

/// The error response of a request failing as a whole (every partition gets `code`).
pub fn error_response(
    r: &AddPartitionsToTxnRequest,
    v: i16,
    code: i16,
) -> AddPartitionsToTxnResponse {
    if v >= 4 {
        AddPartitionsToTxnResponse::default().with_error_code(code)
    } else {
        let parts = flatten(&r.v3_and_below_topics)
            .into_iter()
            .map(|tp| (tp, code))
            .collect();
        AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(parts))
    }
}
