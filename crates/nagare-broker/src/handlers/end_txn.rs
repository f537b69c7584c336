//! EndTxn (key 26): commits or aborts a producer's transaction on the transaction
//! coordinator owning its transactional id (WRITE on the id). The coordinator writes
//! PrepareCommit/PrepareAbort, answers, and has the markers written; with transaction
//! version 2 (KIP-890 part 2: EndTxn v5+, which clients send once the cluster finalized
//! `transaction.version` 2) the answer carries the producer id and epoch to use next.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, EndTxnRequest, EndTxnResponse, ProducerId};

use nagare_transaction_coordinator::{is_epoch_exhausted, TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::transaction_coordinator::{end_txn_transaction_version, request_context};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 5);

/// Handles EndTxn.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: EndTxnRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let txn_id = r.transactional_id.to_string();
    let mut resp = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if !broker.authorize(
        &req.ctx,
        AclOperation::Write,
        &Resource::transactional_id(&txn_id),
    ) {
        resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        return Ok(Reply::Now(respond(ApiKey::EndTxn, v, corr, &resp)));
    }
    let image = broker.image();
    let transaction_version = end_txn_transaction_version(v);
    // KIP-890 part 2: an EndTxn bumps the epoch; an exhausted one continues under a new
    // producer id, allocated here for the shard (only when it is here to use it).
    let mut new_producer_id = -1;
    if transaction_version >= 2
        && is_epoch_exhausted(r.producer_epoch)
        && broker.transactions.is_loaded_for(&image, &txn_id)
    {
        match broker.next_producer_id().await {
            Ok(id) => new_producer_id = id,
            Err(e) => tracing::error!(error = %e, "cannot allocate a producer id"),
        }
    }
    let pending = broker
        .transactions
        .handle(
            &image,
            &txn_id,
            request_context(&req),
            TxnRequest::EndTxn {
                transactional_id: txn_id.clone(),
                producer_id: *r.producer_id,
                producer_epoch: r.producer_epoch,
                commit: r.committed,
                transaction_version,
                new_producer_id,
            },
        )
        .await;
    Ok(Reply::Later(Box::pin(async move {
        match pending.await {
            TxnResponse::EndTxn {
                error,
                producer_id,
                producer_epoch,
            } => {
                resp.error_code = error;
                resp.producer_id = ProducerId(producer_id);
                resp.producer_epoch = producer_epoch;
            }
            other => {
                tracing::error!(
                    ?other,
                    "unexpected transaction coordinator answer to EndTxn"
                );
                resp.error_code = ResponseError::UnknownServerError.code();
            }
        }
        respond(ApiKey::EndTxn, v, corr, &resp)
    })))
}
