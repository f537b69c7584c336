//! GetTelemetrySubscriptions (key 71) and PushTelemetry (key 72): KIP-714 client metrics,
//! answered by the broker's receiver ([`crate::client_telemetry`]), whose pushed metrics are
//! re-exported on `/metrics`. Kafka requires no ACL for either (any authenticated client).

use std::sync::Arc;

use kafka_protocol::messages::{
    ApiKey, GetTelemetrySubscriptionsRequest, GetTelemetrySubscriptionsResponse,
    PushTelemetryRequest, PushTelemetryResponse,
};
use nagare_controller::client_metrics::ClientSelector;

use super::{respond, sb, HandlerResult, Request};
use crate::client_telemetry::{Push, ACCEPTED_COMPRESSION};
use crate::network::Reply;
use crate::Broker;

/// GetTelemetrySubscriptions versions.
pub const GET_VERSIONS: (i16, i16) = (0, 0);
/// PushTelemetry versions.
pub const PUSH_VERSIONS: (i16, i16) = (0, 0);

/// Who the client is, for `match` selectors and the labels of its metrics.
fn selector(req: &Request) -> ClientSelector {
    let software = req.ctx.connection.client_software();
    let peer = req.peer();
    ClientSelector {
        client_instance_id: String::new(),
        client_id: req.ctx.client_id().to_string(),
        client_software_name: software
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        client_software_version: software.map(|s| s.version).unwrap_or_default(),
        client_source_address: peer.ip().to_string(),
        client_source_port: peer.port().to_string(),
    }
}

/// Handles GetTelemetrySubscriptions.
pub fn handle_get(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: GetTelemetrySubscriptionsRequest = req.decode()?;
    let t = &broker.client_telemetry;
    let a = t.get_subscriptions(
        &broker.image(),
        r.client_instance_id,
        selector(&req),
        t.now_ms(),
    );
    // Nagare asks for cumulative values: Prometheus counters are cumulative, so points need
    // no accumulation here (Kafka leaves the choice to its receiver plugin).
    let resp = GetTelemetrySubscriptionsResponse::default()
        .with_error_code(a.error)
        .with_client_instance_id(a.client_instance_id)
        .with_subscription_id(a.subscription_id)
        .with_accepted_compression_types(ACCEPTED_COMPRESSION.to_vec())
        .with_push_interval_ms(a.push_interval_ms)
        .with_telemetry_max_bytes(t.max_bytes())
        .with_delta_temporality(false)
        .with_requested_metrics(a.requested_metrics.into_iter().map(sb).collect());
    Ok(Reply::Now(respond(
        ApiKey::GetTelemetrySubscriptions,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// Handles PushTelemetry.
pub fn handle_push(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: PushTelemetryRequest = req.decode()?;
    let t = &broker.client_telemetry;
    let push = Push {
        client_instance_id: r.client_instance_id,
        subscription_id: r.subscription_id,
        terminating: r.terminating,
        compression_type: r.compression_type,
        metrics: &r.metrics,
    };
    let error = t.push(&broker.image(), &push, selector(&req), t.now_ms());
    let resp = PushTelemetryResponse::default().with_error_code(error);
    Ok(Reply::Now(respond(
        ApiKey::PushTelemetry,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
