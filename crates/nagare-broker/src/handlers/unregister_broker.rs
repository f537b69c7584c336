//! UnregisterBroker (key 64, KIP-631; `kafka-cluster unregister --id N`): removes a broker's
//! registration from the cluster metadata, e.g. after it was decommissioned. A broker forwards
//! it to the active controller, which decides it with
//! `nagare_controller::cluster_control::unregister_broker`. ALTER on the cluster.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, UnregisterBrokerRequest, UnregisterBrokerResponse};

use nagare_controller::shell::ControllerError;
use nagare_protocol::error::ResponseError;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 0);

/// Handles UnregisterBroker on the active controller (NOT_CONTROLLER elsewhere: a forwarding
/// broker's client retries).
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: UnregisterBrokerRequest = req.decode()?;
    let outcome = if !broker.authorize(&req.ctx, AclOperation::Alter, &Resource::cluster()) {
        Err((ResponseError::ClusterAuthorizationFailed.code(), None))
    } else {
        match &broker.controller {
            None => {
                let e = ControllerError::NotController { leader: None };
                Err((e.code(), Some(e.message())))
            }
            Some(c) => c
                .unregister_broker(r.broker_id.0)
                .await
                .map_err(|e| (e.code(), Some(e.message()))),
        }
    };
    let resp = match outcome {
        Ok(()) => {
            tracing::info!(peer = %req.peer(), broker = r.broker_id.0, "broker unregistered by request");
            UnregisterBrokerResponse::default()
        }
        Err((code, message)) => {
            tracing::info!(peer = %req.peer(), broker = r.broker_id.0, code, ?message, "UnregisterBroker refused");
            UnregisterBrokerResponse::default()
                .with_error_code(code)
                .with_error_message(message.map(sb))
        }
    };
    Ok(Reply::Now(respond(
        ApiKey::UnregisterBroker,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
