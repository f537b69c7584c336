//! InitProducerId (key 22): producer ids for idempotent producers, from blocks the
//! controller hands out (AllocateProducerIds), with the epoch bump of KIP-360.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource, ResourceType};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 5);

/// Handles InitProducerId.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: InitProducerIdRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let mut resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(txn_id) = &r.transactional_id {
        // Kafka: WRITE on the transactional id.
        if !broker.authorize(
            &req.ctx,
            AclOperation::Write,
            &Resource::transactional_id(txn_id.as_str()),
        ) {
            resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)));
        }
        if r.transaction_timeout_ms <= 0
            || r.transaction_timeout_ms > broker.config.transaction_max_timeout_ms
        {
            resp.error_code = ResponseError::InvalidTransactionTimeout.code();
        } else {
            // The transaction coordinator is not built yet.
            tracing::warn!(peer = %req.peer(), "transactional producer refused: transactions are not supported yet");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
        return Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)));
    }
    // Kafka (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on some topic.
    let requester = crate::authorizer::Requester::of(&req.ctx);
    if !broker.authorize(
        &req.ctx,
        AclOperation::IdempotentWrite,
        &Resource::cluster(),
    ) && !broker.authorizer.authorize_by_resource_type(
        &requester,
        AclOperation::Write,
        ResourceType::Topic,
    ) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)));
    }
    // Kafka's TransactionCoordinator.handleInitProducerId: without a transactional id the
    // request is accepted blindly with a *new* producer id at epoch 0, whatever id and epoch
    // it carries. Bumping the epoch of the id a client names would let any client fence
    // another's idempotent producer (its next produce: INVALID_PRODUCER_EPOCH).
    match broker.next_producer_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.error_code = ResponseError::CoordinatorNotAvailable.code();
        }
    }
    Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)))
}
