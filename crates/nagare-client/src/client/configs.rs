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
