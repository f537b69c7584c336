//! DescribeConfigs (key 32): topic configs with their sources and synonyms, and the
//! broker's configs.

use std::sync::Arc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use nagare_metadata::records::ConfigResource;
use nagare_metadata::topic_config::{self, ConfigKind, ConfigSource};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (1, 4);

fn config_type(kind: ConfigKind) -> i8 {
    // Kafka's DescribeConfigs ConfigType codes.
    match kind {
        ConfigKind::Boolean => 1,
        ConfigKind::Text | ConfigKind::Enum(_) => 2,
        ConfigKind::Int(_) => 3,
        ConfigKind::Long(_) => 5,
        ConfigKind::Ratio => 6,
        ConfigKind::List(_) => 7,
    }
}

/// Handles DescribeConfigs.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeConfigsRequest = req.decode()?;
    let image = broker.image();
    let defaults = broker.topic_defaults();
    let mut results = Vec::new();
    for res in r.resources {
        let name = res.resource_name.to_string();
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .map(|k| k.iter().map(|s| s.to_string()).collect());
        let wanted = |k: &str| {
            keys.as_ref()
                .map(|ks| ks.iter().any(|x| x == k))
                .unwrap_or(true)
        };
        let base = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        // Kafka: DESCRIBE_CONFIGS on the topic, or on the cluster for broker resources.
        let denied = match ConfigResource::from_code(res.resource_type) {
            Some(ConfigResource::Topic) => (!broker.authorize(
                &req.ctx,
                AclOperation::DescribeConfigs,
                &Resource::topic(&name),
            ))
            .then_some(ResponseError::TopicAuthorizationFailed),
            Some(ConfigResource::Broker) => (!broker.authorize(
                &req.ctx,
                AclOperation::DescribeConfigs,
                &Resource::cluster(),
            ))
            .then_some(ResponseError::ClusterAuthorizationFailed),
            None => None,
        };
        if let Some(e) = denied {
            results.push(base.with_error_code(e.code()));
            continue;
        }
        match ConfigResource::from_code(res.resource_type) {
            Some(ConfigResource::Topic) => {
                if image.topic(&name).is_none() {
                    results.push(
                        base.with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(sb(format!("Topic {name} does not exist")))),
                    );
                    continue;
                }
                let overrides = image.config_overrides(ConfigResource::Topic, &name);
                let configs = defaults
                    .effective(&overrides)
                    .into_iter()
                    .filter(|(k, _, _)| wanted(k))
                    .map(|(k, v, src)| {
                        let def = topic_config::lookup(k);
                        let mut synonyms = Vec::new();
                        if r.include_synonyms {
                            if src == ConfigSource::DynamicTopic {
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(sb(k))
                                        .with_value(Some(sb(v.clone())))
                                        .with_source(1),
                                );
                            }
                            if let Some(d) = def {
                                let bv = defaults.value(&Default::default(), k).unwrap_or_default();
                                let bsrc = if bv != d.default { 4 } else { 5 };
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(sb(d.broker_key))
                                        .with_value(Some(sb(bv)))
                                        .with_source(bsrc),
                                );
                            }
                        }
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                            .with_config_source(src.code())
                            .with_synonyms(synonyms)
                            .with_config_type(def.map(|d| config_type(d.kind)).unwrap_or(0))
                    })
                    .collect();
                results.push(base.with_configs(configs));
            }
            Some(ConfigResource::Broker) => {
                if !name.is_empty() && name != broker.config.node_id.to_string() {
                    results.push(
                        base.with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(sb(format!(
                                "Broker {name} is not this broker ({})",
                                broker.config.node_id
                            )))),
                    );
                    continue;
                }
                let dynamic_default = image.config_overrides(ConfigResource::Broker, "");
                let dynamic_node = image
                    .config_overrides(ConfigResource::Broker, &broker.config.node_id.to_string());
                // Static values come from the file as topics see them (e.g. log.retention.hours
                // folded into log.retention.ms).
                let static_defaults = broker.config.topic_defaults(&Default::default());
                let mut configs = Vec::new();
                let mut listed = std::collections::BTreeSet::new();
                for d in topic_config::TOPIC_CONFIGS {
                    // Kafka's ConfigSource codes: 2 DYNAMIC_BROKER_CONFIG, 3 DYNAMIC_DEFAULT_BROKER_CONFIG,
                    // 4 STATIC_BROKER_CONFIG, 5 DEFAULT_CONFIG.
                    let (v, src) = if let Some(v) = dynamic_node.get(d.broker_key) {
                        (v.clone(), 2)
                    } else if let Some(v) = dynamic_default.get(d.broker_key) {
                        (v.clone(), 3)
                    } else {
                        match static_defaults.default_with_source(d.name) {
                            Some((v, ConfigSource::StaticBroker)) => (v, 4),
                            _ => (d.default.to_string(), 5),
                        }
                    };
                    listed.insert(d.broker_key.to_string());
                    if wanted(d.broker_key) {
                        configs.push(
                            DescribeConfigsResourceResult::default()
                                .with_name(sb(d.broker_key))
                                .with_value(Some(sb(v)))
                                .with_config_source(src)
                                .with_config_type(config_type(d.kind)),
                        );
                    }
                }
                for (k, v) in &broker.config.props {
                    if listed.contains(k) || !wanted(k) {
                        continue;
                    }
                    configs.push(
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k.clone()))
                            .with_value(Some(sb(v.clone())))
                            .with_read_only(true)
                            .with_config_source(4),
                    );
                }
                results.push(base.with_configs(configs));
            }
            None => results.push(
                base.with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(sb(format!(
                        "Unsupported resource type {}",
                        res.resource_type
                    )))),
            ),
        }
    }
    let resp = DescribeConfigsResponse::default().with_results(results);
    Ok(Reply::Now(respond(
        ApiKey::DescribeConfigs,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
