//! The controller's side of the API (Kafka's `ControllerApis`): what a node with the
//! controller role answers on its `CONTROLLER` listener — the quorum RPCs, broker
//! registration and heartbeats, producer-id blocks, and the admin requests brokers forward
//! (which arrive in an Envelope, see [`super::envelope`]).
//!
//! The APIs a node itself sends the active controller (BrokerRegistration, BrokerHeartbeat,
//! AllocateProducerIds, AlterPartition, CreateTopics) each have a typed core, `fn(broker,
//! request, version) -> response`, declared as [`ControllerRequest::handle`]: the listener
//! decodes and calls it ([`dispatch`]), and the controller channel calls it in-process when
//! this node is the active controller — one code path whichever node that is.

use std::sync::Arc;

use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AlterPartitionRequest, ApiKey, BrokerHeartbeatRequest,
    BrokerRegistrationRequest,
};

use super::{respond, HandlerResult, Request};
use crate::controller_requests::ControllerRequest;
use crate::network::Reply;
use crate::Broker;

/// Serves the controller-only APIs that brokers send the active controller (their entries in
/// [`super::apis::APIS`] point here); the shared admin APIs have handler modules of their own.
pub async fn dispatch(broker: &Arc<Broker>, key: ApiKey, req: Request) -> HandlerResult {
    match key {
        ApiKey::BrokerRegistration => serve::<BrokerRegistrationRequest>(broker, req).await,
        ApiKey::BrokerHeartbeat => serve_heartbeat(broker, req).await,
        ApiKey::AllocateProducerIds => serve::<AllocateProducerIdsRequest>(broker, req).await,
        ApiKey::AlterPartition => serve::<AlterPartitionRequest>(broker, req).await,
        _ => Err(super::HandlerError::Internal(format!(
            "{key:?} is not a controller-only API"
        ))),
    }
}

/// Decodes a request of type `R`, runs its typed handling (the same function the controller
/// channel calls in-process on the active controller) and encodes the answer.
async fn serve<R: ControllerRequest>(broker: &Arc<Broker>, mut req: Request) -> HandlerResult
where
    R::Response: crate::response_errors::ResponseErrors,
{
    // Kafka's ControllerApis: what brokers send the controller needs CLUSTER_ACTION.
    if !broker.authorize(
        &req.ctx,
        crate::authorizer::AclOperation::ClusterAction,
        &crate::authorizer::Resource::cluster(),
    ) {
        let refused = super::error_response::build(
            req.header(),
            req.body.clone(),
            kafka_protocol::ResponseError::ClusterAuthorizationFailed,
        );
        return Ok(refused.map(Reply::Now).unwrap_or(Reply::Close));
    }
    let r: R = req.decode()?;
    let v = req.version();
    let key = ApiKey::try_from(R::KEY)
        .map_err(|_| super::HandlerError::Internal(format!("unknown API key {}", R::KEY)))?;
    let resp = R::handle(broker, r, v).await;
    Ok(Reply::Now(respond(key, v, req.correlation_id(), &resp)))
}

/// BrokerHeartbeat on the `CONTROLLER` listener: [`serve`]'s path, plus the connection it
/// arrived on, whose close by the peer fences the broker after a short grace
/// ([`crate::liveness`]).
async fn serve_heartbeat(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    if !broker.authorize(
        &req.ctx,
        crate::authorizer::AclOperation::ClusterAction,
        &crate::authorizer::Resource::cluster(),
    ) {
        let refused = super::error_response::build(
            req.header(),
            req.body.clone(),
            kafka_protocol::ResponseError::ClusterAuthorizationFailed,
        );
        return Ok(refused.map(Reply::Now).unwrap_or(Reply::Close));
    }
    let r: BrokerHeartbeatRequest = req.decode()?;
    let v = req.version();
    // An enveloped request's connection is the forwarding broker's: only a direct one counts.
    let conn = req
        .ctx
        .forwarded
        .is_none()
        .then(|| req.ctx.connection.clone());
    let (broker_id, broker_epoch) = (r.broker_id.0, r.broker_epoch);
    let resp = crate::controller_requests::broker_heartbeat_via(
        broker,
        r,
        v,
        conn.as_ref().map(|c| c.index),
    )
    .await;
    if let (Some(conn), Some(c), 0) = (&conn, &broker.controller, resp.error_code) {
        crate::liveness::watch_heartbeat_connection(c, conn, broker_id, broker_epoch);
    }
    Ok(Reply::Now(respond(
        ApiKey::BrokerHeartbeat,
        v,
        req.correlation_id(),
        &resp,
    )))
}
