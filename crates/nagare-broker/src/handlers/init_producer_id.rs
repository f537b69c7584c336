//! InitProducerId (key 22): producer ids for idempotent producers, from blocks the
//! controller hands out (AllocateProducerIds), and for transactional producers from the
//! transaction coordinator owning their transactional id (epoch bump and zombie fencing,
//! KIP-360 recovery), as Kafka's `TransactionCoordinator.handleInitProducerId`.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use nagare_transaction_coordinator::{TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource, ResourceType};
use crate::network::Reply;
use crate::transaction_coordinator::{request_context, TRANSACTION_STATE_TOPIC};
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
    let answer = |resp: &InitProducerIdResponse| {
        Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, resp)))
    };
    if let Some(txn_id) = &r.transactional_id {
        // Kafka: WRITE on the transactional id.
        if !broker.authorize(
            &req.ctx,
            AclOperation::Write,
            &Resource::transactional_id(txn_id.as_str()),
        ) {
            resp.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
            return answer(&resp);
        }
    } else {
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
            return answer(&resp);
        }
    }
    // KIP-360: a producer id and epoch come together or not at all (Kafka's KafkaApis).
    if (*r.producer_id == -1) != (r.producer_epoch == -1) {
        resp.error_code = ResponseError::InvalidRequest.code();
        return answer(&resp);
    }
    let Some(txn_id) = r.transactional_id.as_ref().map(|t| t.to_string()) else {
        // Kafka's TransactionCoordinator.handleInitProducerId: without a transactional id the
        // request is accepted blindly with a *new* producer id at epoch 0, whatever id and
        // epoch it carries. Bumping the epoch of the id a client names would let any client
        // fence another's idempotent producer (its next produce: INVALID_PRODUCER_EPOCH).
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
        return answer(&resp);
    };
    // Kafka checks these before looking for the coordinator.
    if txn_id.is_empty() {
        resp.error_code = ResponseError::InvalidRequest.code();
        return answer(&resp);
    }
    if r.transaction_timeout_ms <= 0
        || r.transaction_timeout_ms > broker.config.transaction_max_timeout_ms
    {
        resp.error_code = ResponseError::InvalidTransactionTimeout.code();
        return answer(&resp);
    }
    if broker.image().topic(TRANSACTION_STATE_TOPIC).is_none() {
        super::find_coordinator::create_transaction_state_topic(broker).await;
    }
    let image = broker.image();
    // A fresh id for the shard in case it needs one (a new transactional id, an exhausted
    // epoch); only asked for when the shard is here to use it.
    let mut new_producer_id = -1;
    if broker.transactions.is_loaded_for(&image, &txn_id) {
        match broker.next_producer_id().await {
            Ok(id) => new_producer_id = id,
            Err(e) => {
                tracing::error!(error = %e, "cannot allocate a producer id");
                resp.error_code = ResponseError::CoordinatorNotAvailable.code();
                return answer(&resp);
            }
        }
    }
    let pending = broker
        .transactions
        .handle(
            &image,
            &txn_id,
            request_context(&req),
            TxnRequest::InitProducerId {
                transactional_id: txn_id.clone(),
                transaction_timeout_ms: r.transaction_timeout_ms,
                producer_id: *r.producer_id,
                producer_epoch: r.producer_epoch,
                new_producer_id,
            },
        )
        .await;
    Ok(Reply::Later(Box::pin(async move {
        match pending.await {
            TxnResponse::InitProducerId {
                error,
                producer_id,
                producer_epoch,
            } => {
                resp.error_code = error;
                if error == 0 {
                    resp.producer_id = ProducerId(producer_id);
                    resp.producer_epoch = producer_epoch;
                }
            }
            other => {
                tracing::error!(
                    ?other,
                    "unexpected transaction coordinator answer to InitProducerId"
                );
                resp.error_code = ResponseError::UnknownServerError.code();
            }
        }
        respond(ApiKey::InitProducerId, v, corr, &resp)
    })))
}
