//! CreateTopics (key 19): validation, `validate_only`, per-topic configs, manual
//! assignments; decided by the controller (`controller_requests::create_topics_as`), for a
//! client that may create each topic.

use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, CreateTopicsRequest};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = crate::controller_requests::CREATE_TOPICS_VERSIONS;

/// Handles CreateTopics.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: CreateTopicsRequest = req.decode()?;
    let v = req.version();
    // Kafka: CREATE on the cluster, or else on each topic.
    let may_create_any = broker.authorize(&req.ctx, AclOperation::Create, &Resource::cluster());
    let may_create = |name: &str| {
        may_create_any || broker.authorize(&req.ctx, AclOperation::Create, &Resource::topic(name))
    };
    let resp = crate::controller_requests::create_topics_as(broker, r, v, &may_create).await;
    Ok(Reply::Now(respond(
        ApiKey::CreateTopics,
        v,
        req.correlation_id(),
        &resp,
    )))
}
