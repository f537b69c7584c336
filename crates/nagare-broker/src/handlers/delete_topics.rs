//! DeleteTopics (key 20): by name (all versions) or id (v6+).

use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use nagare_controller::logic;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (1, 6);

/// Handles DeleteTopics.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DeleteTopicsRequest = req.decode()?;
    let v = req.version();
    let wanted: Vec<(Option<String>, nagare_metadata::Uuid)> = if v >= 6 {
        r.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        r.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), Default::default()))
            .collect()
    };
    let mut results = Vec::new();
    for (name, id) in wanted {
        let base = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(sb(n))))
            .with_topic_id(id);
        // Kafka: DELETE on the topic (resolved from its id when deleted by id).
        let target = name
            .clone()
            .or_else(|| broker.image().topic_by_id(&id).map(|t| t.name.clone()));
        if let Some(n) = &target {
            if !broker.authorize(&req.ctx, AclOperation::Delete, &Resource::topic(n)) {
                results.push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
        }
        if !broker.config.delete_topic_enable {
            results.push(
                base.with_error_code(ResponseError::TopicDeletionDisabled.code())
                    .with_error_message(Some(sb("Topic deletion is disabled."))),
            );
            continue;
        }
        // controller_mutation_rate (KIP-599): the topic's partitions, strictly from v5.
        let partitions = target
            .as_deref()
            .and_then(|n| broker.image().topic(n).map(|t| t.partitions.len()));
        if let Some(p) = partitions {
            if let Err(e) = broker.quotas.record_mutation(&req.ctx, p as f64, v >= 5) {
                results.push(
                    base.with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
                        .with_error_message(Some(sb(format!(
                            "The throttling quota has been exceeded (throttle {} ms).",
                            e.throttle_ms
                        )))),
                );
                continue;
            }
        }
        let by_id = if name.is_none() { Some(id) } else { None };
        let n2 = name.clone();
        let outcome = broker
            .controller_commit(false, move |img| {
                let (n, tid, recs) = logic::delete_topic(img, n2.as_deref(), by_id)?;
                Ok((recs, (n, tid)))
            })
            .await;
        results.push(match outcome {
            Ok((n, tid)) => {
                tracing::info!(topic = %n, "deleted topic");
                base.with_name(Some(TopicName(sb(n)))).with_topic_id(tid)
            }
            Err(e) => base
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.message()))),
        });
    }
    let resp = DeleteTopicsResponse::default()
        .with_responses(results)
        .with_throttle_time_ms(broker.quotas.mutation_throttle(&req.ctx));
    Ok(Reply::Now(respond(
        ApiKey::DeleteTopics,
        v,
        req.correlation_id(),
        &resp,
    )))
}
