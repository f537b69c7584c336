//! DescribeTransactions (key 65, KIP-664): the state of transactional ids whose coordinator
//! is this broker (DESCRIBE on each id, TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise;
//! NOT_COORDINATOR for ids owned elsewhere, as Kafka).

use std::sync::Arc;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
    TransactionalId,
};

use nagare_transaction_coordinator::{TransactionDescription, TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::transaction_coordinator::{request_context, PendingReply};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 0);

/// Handles DescribeTransactions.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeTransactionsRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let image = broker.image();
    let mut waiting: Vec<(TransactionalId, Result<PendingReply, i16>)> = Vec::new();
    for id in r.transactional_ids {
        if !broker.authorize(
            &req.ctx,
            AclOperation::Describe,
            &Resource::transactional_id(id.as_str()),
        ) {
            let code = ResponseError::TransactionalIdAuthorizationFailed.code();
            waiting.push((id, Err(code)));
            continue;
        }
        let txn_id = id.to_string();
        let pending = broker
            .transactions
            .handle(
                &image,
                &txn_id,
                request_context(&req),
                TxnRequest::Describe {
                    transactional_id: txn_id.clone(),
                },
            )
            .await;
        waiting.push((id, Ok(pending)));
    }
    Ok(Reply::Later(Box::pin(async move {
        let mut states = Vec::with_capacity(waiting.len());
        for (id, outcome) in waiting {
            let (code, description) = match outcome {
                Err(code) => (code, None),
                Ok(p) => match p.await {
                    TxnResponse::Describe { error, description } => (error, description),
                    other => {
                        tracing::error!(
                            ?other,
                            "unexpected transaction coordinator answer to DescribeTransactions"
                        );
                        (ResponseError::UnknownServerError.code(), None)
                    }
                },
            };
            states.push(state(id, code, description));
        }
        respond(
            ApiKey::DescribeTransactions,
            v,
            corr,
            &DescribeTransactionsResponse::default().with_transaction_states(states),
        )
    })))
}

/// One id's entry: the description, or the error with Kafka's empty fields (-1 ids).
fn state(id: TransactionalId, code: i16, d: Option<TransactionDescription>) -> TransactionState {
    let base = TransactionState::default()
        .with_transactional_id(id)
        .with_error_code(code);
    let Some(d) = d.filter(|_| code == 0) else {
        return base
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_start_time_ms(-1);
    };
    let mut topics: Vec<TopicData> = Vec::new();
    for tp in d.partitions {
        match topics.iter_mut().find(|t| t.topic.as_str() == tp.topic) {
            Some(t) => t.partitions.push(tp.partition),
            None => topics.push(
                TopicData::default()
                    .with_topic(TopicName(sb(tp.topic)))
                    .with_partitions(vec![tp.partition]),
            ),
        }
    }
    base.with_transaction_state(sb(d.state.name()))
        .with_transaction_timeout_ms(d.transaction_timeout_ms)
        .with_transaction_start_time_ms(d.transaction_start_time_ms)
        .with_producer_id(ProducerId(d.producer_id))
        .with_producer_epoch(d.producer_epoch)
        .with_topics(topics)
}
