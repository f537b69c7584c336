//! InitProducerId (key 22): producer ids for idempotent producers, from blocks the
//! controller hands out (AllocateProducerIds), with the epoch bump of KIP-360.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::HandlerResult;
use super::{respond, Request};
use crate::network::Reply;
use crate::Broker;

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
    if r.transactional_id.is_some() {
        if r.transaction_timeout_ms <= 0
            || r.transaction_timeout_ms > broker.config.transaction_max_timeout_ms
        {
            resp.error_code = 50; // INVALID_TRANSACTION_TIMEOUT
        } else {
            // The transaction coordinator is not built yet.
            tracing::warn!(peer = %req.peer(), "transactional producer refused: transactions are not supported yet");
            resp.error_code = 15; // COORDINATOR_NOT_AVAILABLE
        }
        return Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)));
    }
    // KIP-360: an idempotent producer that already has an id asks for an epoch bump.
    if *r.producer_id >= 0 && r.producer_epoch >= 0 && r.producer_epoch < i16::MAX - 1 {
        resp.producer_id = r.producer_id;
        resp.producer_epoch = r.producer_epoch + 1;
        return Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)));
    }
    match broker.next_producer_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot allocate a producer id");
            resp.error_code = 15;
        }
    }
    Ok(Reply::Now(respond(ApiKey::InitProducerId, v, corr, &resp)))
}
