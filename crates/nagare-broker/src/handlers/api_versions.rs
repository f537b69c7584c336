//! ApiVersions (key 18): the supported ranges, built from the handlers' declarations.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use super::HandlerResult;
use super::{apis_for, respond, Request};
use crate::context::ClientSoftware;
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
pub fn handle(_broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    // KIP-511: v3+ carries the client's software name and version, kept on the connection
    // for logs and metrics. An undecodable body at a supported version is still answered
    // (the client needs our ranges to talk to us at all).
    if req.version() >= 3 {
        if let Ok(r) = req.decode::<ApiVersionsRequest>() {
            let name = r.client_software_name.to_string();
            if !name.is_empty() {
                req.ctx.connection.set_client_software(ClientSoftware {
                    name,
                    version: r.client_software_version.to_string(),
                });
            }
        }
    }
    let resp = response(req.listener());
    Ok(Reply::Now(respond(
        ApiKey::ApiVersions,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
