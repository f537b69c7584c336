//! ApiVersions (key 18): the supported ranges, built from the handlers' declarations, and
//! (v3+, KIP-584) the features this node supports and the cluster finalized: clients read
//! `transaction.version` there to choose transaction version 2 (KIP-890, KIP-1022).

use std::sync::Arc;

use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::StrBytes;
use nagare_metadata::MetadataImage;

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

/// The supported features (KIP-584). Before v4 a minimum of 0 is sent as 1: older clients
/// refuse a range starting at 0 (KAFKA-17011, fixed by ApiVersions v4).
fn supported_features(version: i16) -> Vec<SupportedFeatureKey> {
    nagare_metadata::features::SUPPORTED
        .iter()
        .map(|f| {
            let min = if version < 4 && f.min == 0 { 1 } else { f.min };
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(f.name))
                .with_min_version(min)
                .with_max_version(f.max)
        })
        .collect()
}

/// The finalized features and their epoch: every feature of the image finalized at a
/// level above 0 (a level of 0 is not finalized), and as epoch the image's offset (Kafka's
/// `KRaftMetadataCache.features`: the metadata offset the levels were read at). Before the
/// node has the cluster's metadata version there is nothing finalized (epoch -1).
fn finalized_features(image: &MetadataImage) -> (Vec<FinalizedFeatureKey>, i64) {
    if !image
        .features
        .contains_key(nagare_metadata::metadata_version::FEATURE_NAME)
    {
        return (Vec::new(), -1);
    }
    let keys = image
        .features
        .iter()
        .filter(|(_, level)| **level > 0)
        .map(|(name, level)| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_min_version_level(*level)
                .with_max_version_level(*level)
        })
        .collect();
    (keys, image.offset)
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
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
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
    let mut resp = response(req.listener());
    if req.version() >= 3 {
        let (finalized, epoch) = finalized_features(&broker.image());
        resp = resp
            .with_supported_features(supported_features(req.version()))
            .with_finalized_features(finalized)
            .with_finalized_features_epoch(epoch);
    }
    Ok(Reply::Now(respond(
        ApiKey::ApiVersions,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
