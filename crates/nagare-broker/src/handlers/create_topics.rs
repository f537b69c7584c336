//! CreateTopics (key 19): validation, `validate_only`, per-topic configs, manual
//! assignments; decided by the controller (`controller_requests::create_topics_as`), for a
//! client that may create each topic.

use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest};
use nagare_protocol::error::ResponseError;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = crate::controller_requests::CREATE_TOPICS_VERSIONS;

/// Handles CreateTopics.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let mut r: CreateTopicsRequest = req.decode()?;
    let v = req.version();
    // Kafka: CREATE on the cluster, or else on each topic.
    let may_create_any = broker.authorize(&req.ctx, AclOperation::Create, &Resource::cluster());
    let may_create = |name: &str| {
        may_create_any || broker.authorize(&req.ctx, AclOperation::Create, &Resource::topic(name))
    };
    // controller_mutation_rate (KIP-599): each topic's partitions, strictly from v6 (a topic
    // asked for once the quota is exhausted gets THROTTLING_QUOTA_EXCEEDED), permissively
    // before (created, and the response throttled).
    let mut throttled = Vec::new();
    if !r.validate_only {
        let default_partitions = broker.controller_defaults.num_partitions;
        r.topics.retain(|t| {
            if !may_create(t.name.as_str()) {
                return true;
            }
            let permits = if !t.assignments.is_empty() {
                t.assignments.len() as i32
            } else if t.num_partitions > 0 {
                t.num_partitions
            } else {
                default_partitions
            };
            match broker
                .quotas
                .record_mutation(&req.ctx, f64::from(permits.max(0)), v >= 6)
            {
                Ok(()) => true,
                Err(e) => {
                    throttled.push(
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                            .with_error_message(Some(sb(format!(
                                "The throttling quota has been exceeded (throttle {} ms).",
                                e.throttle_ms
                            ))))
                            .with_num_partitions(-1)
                            .with_replication_factor(-1),
                    );
                    false
                }
            }
        });
    }
    let mut resp = crate::controller_requests::create_topics_as(broker, r, v, &may_create).await;
    resp.topics.extend(throttled);
    resp.throttle_time_ms = resp
        .throttle_time_ms
        .max(broker.quotas.mutation_throttle(&req.ctx));
    Ok(Reply::Now(respond(
        ApiKey::CreateTopics,
        v,
        req.correlation_id(),
        &resp,
    )))
}
