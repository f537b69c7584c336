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
use crate::config::{self as definitions, ConfigType, DefaultValue, UpdateMode};
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

/// Kafka's DescribeConfigs ConfigType code of a broker config type.
fn broker_config_type(t: ConfigType) -> i8 {
    match t {
        ConfigType::Boolean => 1,
        ConfigType::String => 2,
        ConfigType::Int => 3,
        ConfigType::Short => 4,
        ConfigType::Long => 5,
        ConfigType::Double => 6,
        ConfigType::List => 7,
        ConfigType::Class => 8,
        ConfigType::Password => 9,
    }
}

/// The documentation line of a broker key, when the request asks for documentation.
fn doc_of(key: &str, include: bool) -> Option<kafka_protocol::protocol::StrBytes> {
    include
        .then(|| definitions::definition(key).map(|d| sb(d.doc)))
        .flatten()
}

/// Documentation of the topic configs without a broker synonym (KIP-405's switches).
fn topic_only_doc(name: &str) -> Option<&'static str> {
    Some(match name {
        "remote.storage.enable" => "Whether tiered storage is enabled for the topic.",
        "remote.log.copy.disable" => {
            "Stops copying segments to remote storage; what is there stays readable."
        }
        "remote.log.delete.on.disable" => {
            "Whether remote segments are deleted when tiered storage is disabled for the topic."
        }
        _ => return None,
    })
}

/// Handles DescribeConfigs.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeConfigsRequest = req.decode()?;
    let image = broker.image();
    let defaults = broker.topic_defaults();
    let mut results = Vec::new();
    for res in r.resources {
        let name = res.resource_name.to_string();
        // Null (or, as Kafka's ConfigHelper treats it, empty) asks for every config.
        let keys: Option<Vec<String>> = res
            .configuration_keys
            .filter(|k| !k.is_empty())
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
            Some(ConfigResource::Broker | ConfigResource::ClientMetrics) => (!broker.authorize(
                &req.ctx,
                AclOperation::DescribeConfigs,
                &Resource::cluster(),
            ))
            .then_some(ResponseError::ClusterAuthorizationFailed),
            Some(ConfigResource::Group) => (!broker.authorize(
                &req.ctx,
                AclOperation::DescribeConfigs,
                &Resource::group(&name),
            ))
            .then_some(ResponseError::GroupAuthorizationFailed),
            None => None,
        };
        if let Some(e) = denied {
            results.push(base.with_error_code(e.code()));
            continue;
        }
        if res.resource_type == super::alter_configs::BROKER_LOGGER {
            // Kafka: DESCRIBE_CONFIGS on the cluster; every logger with its effective level,
            // reported as DYNAMIC_BROKER_LOGGER_CONFIG (6) as Kafka's ConfigHelper does.
            if !broker.authorize(
                &req.ctx,
                AclOperation::DescribeConfigs,
                &Resource::cluster(),
            ) {
                results
                    .push(base.with_error_code(ResponseError::ClusterAuthorizationFailed.code()));
                continue;
            }
            if let Err((code, msg)) = super::alter_configs::check_logger_resource(broker, &name) {
                results.push(base.with_error_code(code).with_error_message(Some(sb(msg))));
                continue;
            }
            let configs = broker
                .loggers
                .describe()
                .into_iter()
                .filter(|l| wanted(&l.name))
                .map(|l| {
                    DescribeConfigsResourceResult::default()
                        .with_name(sb(l.name))
                        .with_value(Some(sb(l.level.name())))
                        .with_config_source(6)
                        .with_read_only(false)
                        .with_is_sensitive(false)
                })
                .collect();
            results.push(base.with_configs(configs));
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
                            if let Some(d) = def.filter(|d| !d.broker_key.is_empty()) {
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
                        // Topic configs are documented by their broker synonym's line, the
                        // few without one by their own.
                        let documentation = def.and_then(|d| {
                            doc_of(d.broker_key, r.include_documentation).or_else(|| {
                                r.include_documentation
                                    .then(|| topic_only_doc(d.name).map(sb))
                                    .flatten()
                            })
                        });
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k))
                            .with_value(Some(sb(v)))
                            .with_config_source(src.code())
                            .with_synonyms(synonyms)
                            .with_config_type(def.map(|d| config_type(d.kind)).unwrap_or(0))
                            .with_documentation(documentation)
                    })
                    .collect();
                results.push(base.with_configs(configs));
            }
            Some(ConfigResource::ClientMetrics) => {
                // A KIP-714 subscription: its three configs, set (DYNAMIC_CLIENT_METRICS_CONFIG,
                // source 8) or at their defaults.
                let set = image.config_overrides(ConfigResource::ClientMetrics, &name);
                let configs = nagare_controller::client_metrics::CONFIGS
                    .iter()
                    .filter(|(k, _, _)| wanted(k))
                    .map(|(k, default, doc)| {
                        let (v, src) = match set.get(*k) {
                            Some(v) => (v.clone(), 8),
                            None => (default.to_string(), 5),
                        };
                        // LIST (7) for metrics and match, INT (3) for interval.ms.
                        let ty = if *k == nagare_controller::client_metrics::INTERVAL_MS {
                            3
                        } else {
                            7
                        };
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(*k))
                            .with_value(Some(sb(v)))
                            .with_config_source(src)
                            .with_read_only(false)
                            .with_config_type(ty)
                            .with_documentation(r.include_documentation.then(|| sb(*doc)))
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
                if name.is_empty() {
                    // The cluster default (`--entity-default`): only its dynamic values, as
                    // Kafka's ConfigHelper answers it (source DYNAMIC_DEFAULT_BROKER_CONFIG).
                    let configs = dynamic_default
                        .iter()
                        .filter(|(k, _)| wanted(k))
                        .map(|(k, v)| {
                            let def = definitions::definition(k);
                            let sensitive =
                                def.is_some_and(|d| d.config_type == ConfigType::Password);
                            DescribeConfigsResourceResult::default()
                                .with_name(sb(k.clone()))
                                .with_value((!sensitive).then(|| sb(v.clone())))
                                .with_config_source(3)
                                .with_read_only(false)
                                .with_is_sensitive(sensitive)
                                .with_config_type(
                                    def.map(|d| broker_config_type(d.config_type)).unwrap_or(0),
                                )
                                .with_synonyms(if r.include_synonyms {
                                    vec![DescribeConfigsSynonym::default()
                                        .with_name(sb(k.clone()))
                                        .with_value((!sensitive).then(|| sb(v.clone())))
                                        .with_source(3)]
                                } else {
                                    Vec::new()
                                })
                                .with_documentation(doc_of(k, r.include_documentation))
                        })
                        .collect();
                    results.push(base.with_configs(configs));
                    continue;
                }
                let dynamic_node = image
                    .config_overrides(ConfigResource::Broker, &broker.config.node_id.to_string());
                // Static values come from the file as topics see them (e.g. log.retention.hours
                // folded into log.retention.ms).
                let static_defaults = broker.config.topic_defaults(&Default::default());
                let mut configs = Vec::new();
                let mut listed = std::collections::BTreeSet::new();
                for d in topic_config::TOPIC_CONFIGS
                    .iter()
                    .filter(|d| !d.broker_key.is_empty())
                {
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
                        let read_only = definitions::definition(d.broker_key)
                            .is_none_or(|b| b.update_mode == UpdateMode::ReadOnly);
                        // Synonyms in Kafka's order: per-broker, cluster default, file, default.
                        let mut synonyms = Vec::new();
                        if r.include_synonyms {
                            let mut add = |v: Option<String>, src: i8| {
                                if let Some(v) = v {
                                    synonyms.push(
                                        DescribeConfigsSynonym::default()
                                            .with_name(sb(d.broker_key))
                                            .with_value(Some(sb(v)))
                                            .with_source(src),
                                    );
                                }
                            };
                            add(dynamic_node.get(d.broker_key).cloned(), 2);
                            add(dynamic_default.get(d.broker_key).cloned(), 3);
                            if let Some((v, ConfigSource::StaticBroker)) =
                                static_defaults.default_with_source(d.name)
                            {
                                add(Some(v), 4);
                            }
                            add(Some(d.default.to_string()), 5);
                        }
                        configs.push(
                            DescribeConfigsResourceResult::default()
                                .with_name(sb(d.broker_key))
                                .with_value(Some(sb(v)))
                                .with_config_source(src)
                                .with_read_only(read_only)
                                .with_config_type(config_type(d.kind))
                                .with_synonyms(synonyms)
                                .with_documentation(doc_of(d.broker_key, r.include_documentation)),
                        );
                    }
                }
                // Every other broker config Kafka defines, set or not (Kafka lists each key
                // of its ConfigDef): the file's value (STATIC_BROKER_CONFIG), else the default
                // (DEFAULT_CONFIG; null when Kafka's default is null or derived from other
                // keys). Secrets are never shown.
                for d in definitions::definitions() {
                    if listed.contains(d.name) || !wanted(d.name) {
                        continue;
                    }
                    let sensitive = d.config_type == ConfigType::Password;
                    let dynamic = if d.update_mode == UpdateMode::ReadOnly {
                        None
                    } else {
                        dynamic_node
                            .get(d.name)
                            .map(|v| (v.clone(), 2))
                            .or_else(|| dynamic_default.get(d.name).map(|v| (v.clone(), 3)))
                    };
                    let (value, src) = match (dynamic, broker.config.props.get(d.name)) {
                        (Some((v, src)), _) => (Some(v), src),
                        (None, Some(v)) => (Some(v.clone()), 4),
                        (None, None) => match d.default {
                            DefaultValue::Value(v) => (Some(v.to_string()), 5),
                            DefaultValue::Null | DefaultValue::Derived(_) => (None, 5),
                        },
                    };
                    let mut synonyms = Vec::new();
                    if r.include_synonyms {
                        let mut add = |v: Option<&String>, src: i8| {
                            if let Some(v) = v {
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(sb(d.name))
                                        .with_value((!sensitive).then(|| sb(v.clone())))
                                        .with_source(src),
                                );
                            }
                        };
                        if d.update_mode != UpdateMode::ReadOnly {
                            add(dynamic_node.get(d.name), 2);
                            add(dynamic_default.get(d.name), 3);
                        }
                        add(broker.config.props.get(d.name), 4);
                        if let DefaultValue::Value(v) = d.default {
                            add(Some(&v.to_string()), 5);
                        }
                    }
                    configs.push(
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(d.name))
                            .with_value(if sensitive { None } else { value.map(sb) })
                            .with_config_source(src)
                            .with_read_only(d.update_mode == UpdateMode::ReadOnly)
                            .with_is_sensitive(sensitive)
                            .with_config_type(broker_config_type(d.config_type))
                            .with_synonyms(synonyms)
                            .with_documentation(doc_of(d.name, r.include_documentation)),
                    );
                }
                // Listener-prefixed dynamic settings (`listener.name.<l>.ssl.keystore.location`,
                // ...) are listed as Kafka lists every dynamic key it holds.
                for (k, v, src) in dynamic_node
                    .iter()
                    .map(|(k, v)| (k, v, 2))
                    .chain(dynamic_default.iter().map(|(k, v)| (k, v, 3)))
                    .filter(|(k, _, _)| k.starts_with("listener.name.") && wanted(k))
                {
                    if !listed.insert(k.clone()) {
                        continue;
                    }
                    let def = definitions::definition(k.splitn(4, '.').nth(3).unwrap_or_default())
                        .or_else(|| {
                            k.ends_with(".sasl.jaas.config")
                                .then(|| definitions::definition("sasl.jaas.config"))
                                .flatten()
                        });
                    let sensitive = def.is_none_or(|d| d.config_type == ConfigType::Password);
                    configs.push(
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(k.clone()))
                            .with_value((!sensitive).then(|| sb(v.clone())))
                            .with_config_source(src)
                            .with_read_only(false)
                            .with_is_sensitive(sensitive)
                            .with_config_type(
                                def.map(|d| broker_config_type(d.config_type)).unwrap_or(0),
                            )
                            .with_documentation(
                                def.and_then(|d| doc_of(d.name, r.include_documentation)),
                            ),
                    );
                }
                results.push(base.with_configs(configs));
            }
            Some(ConfigResource::Group) => {
                // KIP-848 group configs: each key of Kafka's GroupConfig, the group's own value
                // (GROUP_CONFIG, 8) or the broker's default (DEFAULT_CONFIG, 5).
                let overrides = image.config_overrides(ConfigResource::Group, &name);
                let props = &broker.config.props;
                let configs = definitions::GROUP_CONFIGS
                    .iter()
                    .filter(|d| wanted(d.name))
                    .map(|d| {
                        let default = definitions::group_config_default(props, d);
                        let (value, src) = match overrides.get(d.name) {
                            Some(v) => (v.clone(), 8),
                            None => (default.clone(), 5),
                        };
                        let mut synonyms = Vec::new();
                        if r.include_synonyms {
                            if let Some(v) = overrides.get(d.name) {
                                synonyms.push(
                                    DescribeConfigsSynonym::default()
                                        .with_name(sb(d.name))
                                        .with_value(Some(sb(v.clone())))
                                        .with_source(8),
                                );
                            }
                            let (key, bsrc) = if d.broker_default.is_empty() {
                                (d.name, 5)
                            } else if props.contains_key(d.broker_default) {
                                (d.broker_default, 4)
                            } else {
                                (d.broker_default, 5)
                            };
                            synonyms.push(
                                DescribeConfigsSynonym::default()
                                    .with_name(sb(key))
                                    .with_value(Some(sb(default)))
                                    .with_source(bsrc),
                            );
                        }
                        DescribeConfigsResourceResult::default()
                            .with_name(sb(d.name))
                            .with_value(Some(sb(value)))
                            .with_config_source(src)
                            .with_read_only(false)
                            .with_is_sensitive(false)
                            .with_config_type(broker_config_type(d.config_type))
                            .with_synonyms(synonyms)
                            .with_documentation(r.include_documentation.then(|| sb(d.doc)))
                    })
                    .collect();
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

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;

    use crate::handlers::sb;
    use crate::testing::TestBroker;

    /// Kafka 4.x lists every config of a broker resource — set or not, with its type, its
    /// source and (when asked) its documentation — not only the keys the file sets.
    #[tokio::test]
    async fn broker_resource_lists_every_config_with_type_source_and_docs() {
        let t = TestBroker::build(&[("queued.max.requests", "600")], None).await;
        let r = t
            .send(
                &DescribeConfigsRequest::default()
                    .with_include_documentation(true)
                    .with_include_synonyms(true)
                    .with_resources(vec![DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(sb("1"))]),
                4,
            )
            .await
            .expect("DescribeConfigs");
        let res = &r.results[0];
        assert_eq!(res.error_code, 0);
        let find = |k: &str| {
            res.configs
                .iter()
                .find(|c| c.name.as_str() == k)
                .unwrap_or_else(|| panic!("{k} missing"))
        };
        assert!(
            res.configs.len() >= crate::config::definitions().count(),
            "{} configs listed",
            res.configs.len()
        );
        // Unset: Kafka's default, DEFAULT_CONFIG (5), with its type (INT = 3).
        let io = find("num.io.threads");
        assert_eq!(
            (
                io.value.as_ref().map(|v| v.as_str()),
                io.config_source,
                io.config_type
            ),
            (Some("8"), 5, 3)
        );
        assert!(io.documentation.is_some(), "documentation asked for");
        // Set in the file: STATIC_BROKER_CONFIG (4), synonyms down to the default.
        let bg = find("queued.max.requests");
        assert_eq!(
            (bg.value.as_ref().map(|v| v.as_str()), bg.config_source),
            (Some("600"), 4)
        );
        let sources: Vec<i8> = bg.synonyms.iter().map(|s| s.source).collect();
        assert_eq!(sources, vec![4, 5]);
        // A topic default's broker synonym is typed from the topic config.
        let retention = find("log.retention.ms");
        assert_eq!(retention.config_type, 5);
        assert!(
            res.configs.iter().all(|c| c.config_type != 0),
            "every config is typed"
        );
    }

    /// The BROKER_LOGGER resource: DescribeConfigs lists loggers with their effective levels;
    /// IncrementalAlterConfigs SETs and DELETEs levels (validate_only changes nothing);
    /// APPEND, bad levels, removing root and another broker's id are refused as Kafka does.
    #[tokio::test]
    async fn broker_logger_levels_describe_and_change() {
        use kafka_protocol::messages::incremental_alter_configs_request::{
            AlterConfigsResource, AlterableConfig,
        };
        use kafka_protocol::messages::IncrementalAlterConfigsRequest;

        let t = TestBroker::build(&[("log.levels", "nagare_raft=DEBUG")], None).await;
        let describe = |keys: Option<Vec<&str>>, name: &str| {
            DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(8)
                    .with_resource_name(sb(name))
                    .with_configuration_keys(keys.map(|k| k.into_iter().map(sb).collect())),
            ])
        };
        let levels = |r: &kafka_protocol::messages::DescribeConfigsResponse| {
            r.results[0]
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                    )
                })
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let r = t.send(&describe(None, "1"), 4).await.expect("describe");
        assert_eq!(r.results[0].error_code, 0);
        let all = levels(&r);
        assert_eq!(all.get("root").map(String::as_str), Some("INFO"));
        assert_eq!(all.get("nagare_raft").map(String::as_str), Some("DEBUG"));
        assert_eq!(all.get("nagare_storage").map(String::as_str), Some("INFO"));
        assert!(r.results[0].configs.iter().all(|c| c.config_source == 6));

        let alter = |ops: Vec<(&str, i8, Option<&str>)>, validate_only: bool, name: &str| {
            IncrementalAlterConfigsRequest::default()
                .with_validate_only(validate_only)
                .with_resources(vec![AlterConfigsResource::default()
                    .with_resource_type(8)
                    .with_resource_name(sb(name))
                    .with_configs(
                        ops.into_iter()
                            .map(|(k, op, v)| {
                                AlterableConfig::default()
                                    .with_name(sb(k))
                                    .with_config_operation(op)
                                    .with_value(v.map(sb))
                            })
                            .collect(),
                    )])
        };
        let code = |r: kafka_protocol::messages::IncrementalAlterConfigsResponse| {
            r.responses[0].error_code
        };
        // validate_only: accepted, nothing changes.
        let r = t
            .send(
                &alter(vec![("nagare_storage", 0, Some("TRACE"))], true, "1"),
                1,
            )
            .await
            .expect("alter");
        assert_eq!(code(r), 0);
        let r = t
            .send(&describe(Some(vec!["nagare_storage"]), "1"), 4)
            .await
            .expect("d");
        assert_eq!(
            levels(&r).get("nagare_storage").map(String::as_str),
            Some("INFO")
        );
        // SET and DELETE; a child of a changed logger inherits.
        let r = t
            .send(
                &alter(
                    vec![
                        ("nagare_storage", 0, Some("trace")),
                        ("nagare_raft", 1, None),
                    ],
                    false,
                    "1",
                ),
                1,
            )
            .await
            .expect("alter");
        assert_eq!(code(r), 0);
        let r = t
            .send(
                &describe(
                    Some(vec!["nagare_storage", "nagare_raft", "nagare_storage::log"]),
                    "1",
                ),
                4,
            )
            .await
            .expect("d");
        let got = levels(&r);
        assert_eq!(got.get("nagare_storage").map(String::as_str), Some("TRACE"));
        assert_eq!(got.get("nagare_raft").map(String::as_str), Some("INFO"));
        assert_eq!(
            t.broker
                .loggers
                .level_of("nagare_storage::log")
                .level
                .name(),
            "TRACE"
        );
        // Refusals: a bad level, removing root, APPEND, another broker.
        for (ops, name, want) in [
            (vec![("nagare_raft", 0, Some("LOUD"))], "1", 40),
            (vec![("root", 1, None)], "1", 40),
            (vec![("nagare_raft", 2, Some("DEBUG"))], "1", 42),
            (vec![("nagare_raft", 0, Some("DEBUG"))], "7", 42),
        ] {
            let r = t.send(&alter(ops, false, name), 1).await.expect("alter");
            assert_eq!(code(r), want, "broker {name}");
        }
        assert_eq!(
            t.broker.loggers.level_of("nagare_raft").level.name(),
            "INFO"
        );
        let r = t.send(&describe(None, "7"), 4).await.expect("d");
        assert_eq!(r.results[0].error_code, 42);
    }
}
