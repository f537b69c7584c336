//! CreatePartitions (key 37): grow a topic; one result per requested topic, always.

use std::sync::Arc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use nagare_controller::logic;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 3);

/// Handles CreatePartitions.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: CreatePartitionsRequest = req.decode()?;
    let mut results = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for t in r.topics {
        let base = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if !seen.insert(t.name.to_string()) {
            results.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb("Duplicate topic in request."))),
            );
            continue;
        }
        let name = t.name.to_string();
        // Kafka: ALTER on the topic.
        if !broker.authorize(&req.ctx, AclOperation::Alter, &Resource::topic(&name)) {
            results.push(base.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
            continue;
        }
        let count = t.count;
        // controller_mutation_rate (KIP-599): the partitions added, strictly from v3.
        let current = broker
            .image()
            .topic(&name)
            .map(|t| t.partitions.len() as i32);
        if let Some(current) = current.filter(|c| count > *c && !r.validate_only) {
            let permits = f64::from(count - current);
            if let Err(e) = broker
                .quotas
                .record_mutation(&req.ctx, permits, req.version() >= 3)
            {
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
        let assignments: Option<Vec<Vec<i32>>> = t.assignments.map(|a| {
            a.into_iter()
                .map(|x| x.broker_ids.into_iter().map(|b| *b).collect())
                .collect()
        });
        let outcome = broker
            .controller_commit(r.validate_only, move |img| {
                let recs = logic::create_partitions(img, &name, count, assignments.as_deref())?;
                Ok((recs, ()))
            })
            .await;
        results.push(match outcome {
            Ok(()) => base,
            Err(e) => base
                .with_error_code(e.code())
                .with_error_message(Some(sb(e.message()))),
        });
    }
    let resp = CreatePartitionsResponse::default()
        .with_results(results)
        .with_throttle_time_ms(broker.quotas.mutation_throttle(&req.ctx));
    Ok(Reply::Now(respond(
        ApiKey::CreatePartitions,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
