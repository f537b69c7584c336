//! Configs of topics and brokers: DescribeConfigs and IncrementalAlterConfigs.

use std::time::Duration;

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{Client, Target};
use crate::error::{check_code, Error, Result};
use crate::types::{AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource};

impl Client {
    /// All configs of a resource (`keys`: only these).
    pub async fn describe_configs(
        &mut self,
        resource: &ConfigResource,
        keys: Option<&[&str]>,
    ) -> Result<Vec<ConfigEntry>> {
        let target = match resource {
            ConfigResource::Broker(id) | ConfigResource::BrokerLogger(id) => Target::Node(*id),
            ConfigResource::Topic(_) => Target::Any,
        };
        if let ConfigResource::Broker(id) | ConfigResource::BrokerLogger(id) = resource {
            if !self.brokers.contains_key(id) {
                self.metadata(Some(&[])).await?;
            }
        }
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = resource.resource_type();
                r.resource_name = StrBytes::from_string(resource.resource_name());
                r.configuration_keys = keys.map(|ks| {
                    ks.iter()
                        .map(|k| StrBytes::from_string((*k).to_owned()))
                        .collect()
                });
                let mut req = DescribeConfigsRequest::default();
                req.resources = vec![r];
                req.include_synonyms = false;
                req.include_documentation = false;
                req
            })
            .await?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnexpectedResponse {
                addr: "broker".into(),
                reason: "DescribeConfigs response has no result".into(),
            })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if let ConfigResource::Topic(t) = resource {
                return Err(Error::UnknownTopic { topic: t.clone() });
            }
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot describe configs of {resource}")
        })?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes configs of a resource (IncrementalAlterConfigs: only the named configs change).
    pub async fn incremental_alter_configs(
        &mut self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        let target = match resource {
            ConfigResource::Broker(id) | ConfigResource::BrokerLogger(id) => Target::Node(*id),
            ConfigResource::Topic(_) => Target::Any,
        };
        if let ConfigResource::Broker(id) | ConfigResource::BrokerLogger(id) = resource {
            if !self.brokers.contains_key(id) {
                self.metadata(Some(&[])).await?;
            }
        }
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = AlterConfigsResource::default();
                r.resource_type = resource.resource_type();
                r.resource_name = StrBytes::from_string(resource.resource_name());
                r.configs = ops
                    .iter()
                    .map(|op| {
                        let mut c = AlterableConfig::default();
                        c.name = StrBytes::from_string(op.name().to_owned());
                        c.config_operation = op.op_code();
                        c.value = op.value().map(|v| StrBytes::from_string(v.to_owned()));
                        c
                    })
                    .collect();
                let mut req = IncrementalAlterConfigsRequest::default();
                req.resources = vec![r];
                req.validate_only = validate_only;
                req
            })
            .await?;
        let result =
            resp.responses
                .into_iter()
                .next()
                .ok_or_else(|| Error::UnexpectedResponse {
                    addr: "broker".into(),
                    reason: "IncrementalAlterConfigs response has no result".into(),
                })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if let ConfigResource::Topic(t) = resource {
                return Err(Error::UnknownTopic { topic: t.clone() });
            }
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot alter configs of {resource}")
        })
    }
}

/// A config with its synonyms (DescribeConfigs with `include_synonyms`), for tools that print
/// them as `kafka-configs.sh` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDescription {
    /// The config.
    pub entry: ConfigEntry,
    /// Its synonyms in precedence order: (name, value, source); the first is the value in
    /// effect.
    pub synonyms: Vec<(String, Option<String>, ConfigSource)>,
}

impl Client {
    /// The configs of a resource named by Kafka's resource type number and name, with their
    /// synonyms: for resources [`ConfigResource`] cannot name, such as the cluster-wide broker
    /// default (type 4, name `""`). Broker resources with a numeric name go to that broker.
    pub async fn describe_configs_raw(
        &mut self,
        resource_type: i8,
        resource_name: &str,
        keys: Option<&[&str]>,
    ) -> Result<Vec<ConfigDescription>> {
        let target = raw_target(resource_type, resource_name);
        if let Target::Node(id) = target {
            if !self.brokers.contains_key(&id) {
                self.metadata(Some(&[])).await?;
            }
        }
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = resource_type;
                r.resource_name = StrBytes::from_string(resource_name.to_owned());
                r.configuration_keys = keys.map(|ks| {
                    ks.iter()
                        .map(|k| StrBytes::from_string((*k).to_owned()))
                        .collect()
                });
                let mut req = DescribeConfigsRequest::default();
                req.resources = vec![r];
                req.include_synonyms = true;
                req
            })
            .await?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnexpectedResponse {
                addr: "broker".into(),
                reason: "DescribeConfigs response has no result".into(),
            })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() && resource_type == 2
        {
            return Err(Error::UnknownTopic {
                topic: resource_name.to_owned(),
            });
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot describe configs of resource {resource_type}/'{resource_name}'")
        })?;
        let mut out: Vec<ConfigDescription> = result
            .configs
            .into_iter()
            .map(|c| ConfigDescription {
                entry: ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_wire(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                },
                synonyms: c
                    .synonyms
                    .into_iter()
                    .map(|s| {
                        (
                            s.name.to_string(),
                            s.value.map(|v| v.to_string()),
                            ConfigSource::from_wire(s.source),
                        )
                    })
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        Ok(out)
    }

    /// IncrementalAlterConfigs of a resource named by Kafka's resource type number and name
    /// (see [`Client::describe_configs_raw`]).
    pub async fn incremental_alter_configs_raw(
        &mut self,
        resource_type: i8,
        resource_name: &str,
        ops: &[AlterConfigOp],
    ) -> Result<()> {
        let target = raw_target(resource_type, resource_name);
        if let Target::Node(id) = target {
            if !self.brokers.contains_key(&id) {
                self.metadata(Some(&[])).await?;
            }
        }
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = AlterConfigsResource::default();
                r.resource_type = resource_type;
                r.resource_name = StrBytes::from_string(resource_name.to_owned());
                r.configs = ops
                    .iter()
                    .map(|op| {
                        let mut c = AlterableConfig::default();
                        c.name = StrBytes::from_string(op.name().to_owned());
                        c.config_operation = op.op_code();
                        c.value = op.value().map(|v| StrBytes::from_string(v.to_owned()));
                        c
                    })
                    .collect();
                let mut req = IncrementalAlterConfigsRequest::default();
                req.resources = vec![r];
                req
            })
            .await?;
        let result =
            resp.responses
                .into_iter()
                .next()
                .ok_or_else(|| Error::UnexpectedResponse {
                    addr: "broker".into(),
                    reason: "IncrementalAlterConfigs response has no result".into(),
                })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() && resource_type == 2
        {
            return Err(Error::UnknownTopic {
                topic: resource_name.to_owned(),
            });
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot alter configs of resource {resource_type}/'{resource_name}'")
        })
    }
}

/// Broker (4) and broker-logger (8) resources with a node id go to that broker; everything
/// else (topics, cluster-wide defaults, groups) to any broker.
fn raw_target(resource_type: i8, resource_name: &str) -> Target {
    match (resource_type, resource_name.parse::<i32>()) {
        (4 | 8, Ok(id)) => Target::Node(id),
        _ => Target::Any,
    }
}
