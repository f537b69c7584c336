//! CreateTopics (key 19): validation, `validate_only`, per-topic configs, manual
//! assignments; decided by the controller.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};

use nagare_controller::logic::{self, NewTopic};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (2, 7);

/// Handles CreateTopics.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: CreateTopicsRequest = req.decode()?;
    let v = req.version();
    // Kafka: CREATE on the cluster, or else on each topic.
    let may_create_any = broker.authorize(&req.ctx, AclOperation::Create, &Resource::cluster());
    let may_create = |name: &str| {
        may_create_any || broker.authorize(&req.ctx, AclOperation::Create, &Resource::topic(name))
    };
    let resp = create_topics_as(broker, r, v, &may_create).await;
    Ok(Reply::Now(respond(
        ApiKey::CreateTopics,
        v,
        req.correlation_id(),
        &resp,
    )))
}

/// CreateTopics as the controller decides it, typed: what the controller channel runs
/// in-process on the active controller for the broker itself (topic auto-creation, the
/// offsets topic), which Kafka authorizes as the broker's own cluster action.
pub async fn create_topics(
    broker: &Arc<Broker>,
    r: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    create_topics_as(broker, r, version, &|_| true).await
}

/// CreateTopics for a requester allowed to create the topics `may_create` accepts; the others
/// get TOPIC_AUTHORIZATION_FAILED.
async fn create_topics_as(
    broker: &Arc<Broker>,
    r: CreateTopicsRequest,
    _version: i16,
    may_create: &(dyn Fn(&str) -> bool + Sync),
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = r
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let mut results: Vec<CreatableTopicResult> = Vec::new();
    let mut todo = Vec::new();
    for t in &r.topics {
        let name = t.name.to_string();
        if !dupes.contains(&name) && !may_create(&name) {
            results.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
            continue;
        }
        if dupes.contains(&name) {
            if !results.iter().any(|x| x.name.as_str() == name) {
                results.push(
                    CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!(
                            "Duplicate topic name {name} in request"
                        )))),
                );
            }
            continue;
        }
        todo.push(NewTopic {
            name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| **b).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        });
    }
    let defaults = broker.controller_defaults.clone();
    let outcome = broker
        .controller_commit(r.validate_only, move |img| {
            let mut records = Vec::new();
            let mut pending = HashSet::new();
            let mut answers = Vec::new();
            for t in todo {
                match logic::create_topic(img, &defaults, &t, &pending) {
                    Ok(c) => {
                        records.extend(c.records.clone());
                        pending.insert(t.name.clone());
                        answers.push((t, Ok(c)));
                    }
                    Err(e) => answers.push((t, Err(e))),
                }
            }
            Ok((records, answers))
        })
        .await;
    let topic_defaults = broker.topic_defaults();
    match outcome {
        Ok(answers) => {
            for (t, a) in answers {
                let base = CreatableTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(sb(t.name.clone())));
                results.push(match a {
                    Ok(c) => {
                        if !r.validate_only {
                            tracing::info!(topic = %t.name, partitions = c.num_partitions, "created topic");
                        }
                        let overrides: BTreeMap<String, String> =
                            t.configs.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
                        let configs = topic_defaults
                            .effective(&overrides)
                            .into_iter()
                            .map(|(k, val, src)| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(k))
                                    .with_value(Some(sb(val)))
                                    .with_config_source(src.code())
                            })
                            .collect();
                        base.with_topic_id(if r.validate_only { Default::default() } else { c.topic_id })
                            .with_num_partitions(c.num_partitions)
                            .with_replication_factor(c.replication_factor)
                            .with_configs(Some(configs))
                    }
                    Err(e) => base
                        .with_error_code(e.code)
                        .with_error_message(Some(sb(e.message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                });
            }
        }
        Err(e) => {
            for t in &r.topics {
                if !results.iter().any(|x| x.name == t.name) {
                    results.push(
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(e.code())
                            .with_error_message(Some(sb(e.message()))),
                    );
                }
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}
