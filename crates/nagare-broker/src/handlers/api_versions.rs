//! ApiVersions (key 18): the supported ranges, built from the handlers' declarations.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::{apis_for, respond, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 4);

/// The controller listener's ApiVersions answer before the rest of the node is up (peers
/// connect to vote before this node has caught up with the metadata).
pub fn early_response(version: i16, correlation_id: i32) -> Reply {
    let version = version.clamp(VERSIONS.0, VERSIONS.1);
    Reply::Now(respond(
        ApiKey::ApiVersions,
        version,
        correlation_id,
        &response(super::ListenerKind::Controller),
    ))
}

fn response(listener: super::ListenerKind) -> ApiVersionsResponse {
    let api_keys = apis_for(listener)
        .into_iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_api_keys(api_keys)
}

/// Handles ApiVersions.
pub fn handle(_broker: &Arc<Broker>, req: Request) -> Result<Reply, String> {
    // The body is not needed (client software name/version are informational); an
    // undecodable body at a supported version is still answered, as Kafka does.
    let resp = response(req.listener);
    Ok(Reply::Now(respond(
        ApiKey::ApiVersions,
        req.version(),
        req.header.correlation_id,
        &resp,
    )))
}
