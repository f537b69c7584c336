//! ApiVersions (key 18): the supported ranges, built from the handlers' declarations.

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::{apis_for, respond, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 4);

/// Handles ApiVersions.
pub fn handle(_broker: &Arc<Broker>, req: Request) -> Result<Reply, String> {
    // The body is not needed (client software name/version are informational); an
    // undecodable body at a supported version is still answered, as Kafka does.
    let api_keys = apis_for(req.listener)
        .into_iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    let resp = ApiVersionsResponse::default().with_api_keys(api_keys);
    Ok(Reply::Now(respond(
        ApiKey::ApiVersions,
        req.version(),
        req.header.correlation_id,
        &resp,
    )))
}
