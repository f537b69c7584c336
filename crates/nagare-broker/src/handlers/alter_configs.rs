//! AlterConfigs (key 33, replaces all overrides) and IncrementalAlterConfigs (key 44,
//! SET/DELETE/APPEND/SUBTRACT) for topics and dynamic broker configs; IncrementalAlterConfigs
//! also sets this broker's log levels (the BROKER_LOGGER resource, handled here, not forwarded).

use std::sync::Arc;

use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, ApiKey, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};

use nagare_controller::logic::{self, ApiError, ConfigOp, NonTopicChecks};
use nagare_metadata::records::ConfigResource;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::config;
use crate::context::RequestContext;
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// AlterConfigs versions.
pub const ALTER_VERSIONS: (i16, i16) = (0, 2);
/// IncrementalAlterConfigs versions.
pub const INCREMENTAL_VERSIONS: (i16, i16) = (0, 1);

async fn apply(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    resource_type: i8,
    name: String,
    ops: Result<Vec<ConfigOp>, ApiError>,
    replace: bool,
    validate_only: bool,
) -> (i16, Option<String>) {
    let Some(resource) = ConfigResource::from_code(resource_type) else {
        return (
            ResponseError::InvalidRequest.code(),
            Some(format!("Unsupported resource type {resource_type}")),
        );
    };
    // Kafka: ALTER_CONFIGS on the topic, or on the cluster for broker resources.
    let (target, denied) = match resource {
        ConfigResource::Topic => (
            Resource::topic(&name),
            ResponseError::TopicAuthorizationFailed,
        ),
        // KIP-714 subscriptions: ALTER_CONFIGS on the cluster, as Kafka.
        ConfigResource::Broker | ConfigResource::ClientMetrics => (
            Resource::cluster(),
            ResponseError::ClusterAuthorizationFailed,
        ),
        // KIP-848 group configs: ALTER_CONFIGS on the group.
        ConfigResource::Group => (
            Resource::group(&name),
            ResponseError::GroupAuthorizationFailed,
        ),
    };
    if !broker.authorize(ctx, AclOperation::AlterConfigs, &target) {
        return (denied.code(), None);
    }
    let mut ops = match ops {
        Ok(o) => o,
        Err(e) => return (e.code, Some(e.message)),
    };
    // A broker resource names the broker the client sent it to (Kafka's admin client routes
    // it there, and that broker checks the id); forwarded here in an Envelope, any broker's
    // id is accepted, as Kafka's controller does.
    if resource == ConfigResource::Broker
        && !name.is_empty()
        && ctx.forwarded.is_none()
        && name != broker.config.node_id.to_string()
    {
        return (
            ResponseError::InvalidRequest.code(),
            Some(format!("Broker {name} is not this broker")),
        );
    }
    let defaults = broker.topic_defaults();
    let props = broker.config.props.clone();
    let outcome = broker
        .controller_commit(validate_only, move |img| {
            if replace {
                // AlterConfigs replaces the whole set: delete every override not given.
                let given: Vec<String> = ops
                    .iter()
                    .filter_map(|o| match o {
                        ConfigOp::Set(k, _) => Some(k.clone()),
                        _ => None,
                    })
                    .collect();
                for k in img.config_overrides(resource, &name).keys() {
                    if !given.contains(k) {
                        ops.push(ConfigOp::Delete(k.clone()));
                    }
                }
            }
            let recs = logic::alter_configs_checked(
                img,
                &defaults,
                resource,
                &name,
                &ops,
                &non_topic_checks(resource, &name, &props),
            )?;
            Ok((recs, ()))
        })
        .await;
    match outcome {
        Ok(()) => (0, None),
        Err(e) => (e.code(), Some(e.message())),
    }
}

/// The checks of broker and group keys (topic keys are the controller's own): dynamic
/// broker configs refused as Kafka's `ConfigAdminManager` does (INVALID_REQUEST, "Invalid
/// config value for resource ..."), group configs as Kafka's `GroupConfig` (INVALID_CONFIG).
fn non_topic_checks<'a>(
    resource: ConfigResource,
    name: &'a str,
    props: &'a std::collections::BTreeMap<String, String>,
) -> NonTopicChecks<'a> {
    match resource {
        ConfigResource::Group => NonTopicChecks {
            key: Box::new(|k, v| {
                config::check_group_config(k, v)
                    .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m))
            }),
            all: Box::new(move |all| {
                config::check_group_configs(props, all)
                    .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m))
            }),
        },
        _ => NonTopicChecks {
            key: Box::new(move |k: &str, v: Option<&str>| {
                config::check_broker_config(k, v, !name.is_empty()).map_err(|m| {
                    ApiError::new(
                        ResponseError::InvalidRequest.code(),
                        format!(
                            "Invalid config value for resource ConfigResource(type=BROKER, \
                             name='{name}'): {m}"
                        ),
                    )
                })
            }),
            all: Box::new(|_| Ok(())),
        },
    }
}

/// Handles AlterConfigs.
pub async fn handle_alter(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AlterConfigsRequest = req.decode()?;
    let mut out = Vec::new();
    for res in r.resources {
        let ops = res
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(v) => Ok(ConfigOp::Set(c.name.to_string(), v.to_string())),
                None => Err(ApiError {
                    code: ResponseError::InvalidConfig.code(),
                    message: format!("Null value not supported for : {}", c.name),
                }),
            })
            .collect();
        let (code, msg) = apply(
            broker,
            &req.ctx,
            res.resource_type,
            res.resource_name.to_string(),
            ops,
            true,
            r.validate_only,
        )
        .await;
        out.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    let resp = AlterConfigsResponse::default().with_responses(out);
    Ok(Reply::Now(respond(
        ApiKey::AlterConfigs,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// Kafka's BROKER_LOGGER resource type.
pub const BROKER_LOGGER: i8 = 8;

/// Checks the resource name of a BROKER_LOGGER resource: this broker's id (Kafka's
/// `ConfigHelper`/`ConfigAdminManager` refuse anything else with INVALID_REQUEST).
pub(crate) fn check_logger_resource(broker: &Broker, name: &str) -> Result<(), (i16, String)> {
    if name.is_empty() {
        return Err((
            ResponseError::InvalidRequest.code(),
            "Broker id must not be empty".into(),
        ));
    }
    if name != broker.config.node_id.to_string() {
        return Err((
            ResponseError::InvalidRequest.code(),
            format!(
                "Unexpected broker id, expected {} but received {name}",
                broker.config.node_id
            ),
        ));
    }
    Ok(())
}

/// Whether an IncrementalAlterConfigs body names only BROKER_LOGGER resources: such a request
/// is answered by the broker it was sent to, not forwarded to the controller (Kafka's
/// `KafkaApis` alters log levels locally). A request mixing them with other resources is
/// forwarded whole, and its logger resources then answer for the controller's node id.
pub fn only_broker_loggers(body: &bytes::Bytes, version: i16) -> bool {
    use kafka_protocol::protocol::Decodable;
    let mut b = body.clone();
    IncrementalAlterConfigsRequest::decode(&mut b, version).is_ok_and(|r| {
        !r.resources.is_empty()
            && r.resources
                .iter()
                .all(|res| res.resource_type == BROKER_LOGGER)
    })
}

/// IncrementalAlterConfigs on BROKER_LOGGER: SET a level or DELETE it (the logger inherits
/// again); APPEND/SUBTRACT are refused, as Kafka's `ConfigAdminManager.alterLogLevelConfigs`.
fn alter_loggers(
    broker: &Broker,
    ctx: &RequestContext,
    name: &str,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> (i16, Option<String>) {
    if !broker.authorize(ctx, AclOperation::AlterConfigs, &Resource::cluster()) {
        return (ResponseError::ClusterAuthorizationFailed.code(), None);
    }
    if let Err((code, msg)) = check_logger_resource(broker, name) {
        return (code, Some(msg));
    }
    let mut changes = Vec::new();
    for c in configs {
        let logger = c.name.to_string();
        let level = c.value.as_ref().map(|v| v.to_string());
        match c.config_operation {
            0 => match level {
                Some(l) => changes.push((logger, Some(l))),
                None => {
                    return (
                        ResponseError::InvalidConfig.code(),
                        Some(format!("Cannot set the log level of {logger} to null")),
                    )
                }
            },
            1 => changes.push((logger, None)),
            op => {
                return (
                    ResponseError::InvalidRequest.code(),
                    Some(format!(
                        "Operation {op} is not allowed for the BROKER_LOGGER resource (only SET and DELETE)"
                    )),
                )
            }
        }
    }
    let result = if validate_only {
        changes
            .iter()
            .try_for_each(|(n, l)| broker.loggers.validate(n, l.as_deref()))
    } else {
        broker.loggers.apply(&changes)
    };
    match result {
        Ok(()) => (0, None),
        Err(e) => (ResponseError::InvalidConfig.code(), Some(e.to_string())),
    }
}

/// Handles IncrementalAlterConfigs.
pub async fn handle_incremental(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: IncrementalAlterConfigsRequest = req.decode()?;
    let mut out = Vec::new();
    for res in r.resources {
        if res.resource_type == BROKER_LOGGER {
            let (code, msg) = alter_loggers(
                broker,
                &req.ctx,
                res.resource_name.as_str(),
                &res.configs,
                r.validate_only,
            );
            out.push(
                incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(msg.map(sb))
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name),
            );
            continue;
        }
        let ops = res
            .configs
            .iter()
            .map(|c| {
                let k = c.name.to_string();
                let val = c.value.as_ref().map(|v| v.to_string());
                match (c.config_operation, val) {
                    (0, Some(v)) => Ok(ConfigOp::Set(k, v)),
                    (1, _) => Ok(ConfigOp::Delete(k)),
                    (2, Some(v)) => Ok(ConfigOp::Append(k, v)),
                    (3, Some(v)) => Ok(ConfigOp::Subtract(k, v)),
                    (0 | 2 | 3, None) => Err(ApiError {
                        code: ResponseError::InvalidConfig.code(),
                        message: format!("Null value not supported for : {k}"),
                    }),
                    (op, _) => Err(ApiError {
                        code: ResponseError::InvalidRequest.code(),
                        message: format!("Unknown config operation {op}"),
                    }),
                }
            })
            .collect();
        let (code, msg) = apply(
            broker,
            &req.ctx,
            res.resource_type,
            res.resource_name.to_string(),
            ops,
            false,
            r.validate_only,
        )
        .await;
        out.push(
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(msg.map(sb))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name),
        );
    }
    let resp = IncrementalAlterConfigsResponse::default().with_responses(out);
    Ok(Reply::Now(respond(
        ApiKey::IncrementalAlterConfigs,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
