//! FindCoordinator (key 10). The group and transaction coordinators are not built yet
//! (consumer groups and transactions are separate issues), so every key is answered with
//! COORDINATOR_NOT_AVAILABLE — what Kafka answers while a coordinator's partition has no
//! leader. Clients keep retrying in the background and meanwhile still produce, and consume
//! with `assign`; without this handler librdkafka consumers (which always look up their
//! group's coordinator) would have their broker connection closed.

use std::sync::Arc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::{respond, sb, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 6);

/// COORDINATOR_NOT_AVAILABLE
const COORDINATOR_NOT_AVAILABLE: i16 = 15;

/// Handles FindCoordinator.
pub fn handle(_broker: &Arc<Broker>, mut req: Request) -> Result<Reply, String> {
    let r: FindCoordinatorRequest = req.decode()?;
    let v = req.version();
    let message = "The coordinator is not available (consumer groups and transactions are not supported yet).";
    let mut resp = FindCoordinatorResponse::default()
        .with_node_id(BrokerId(-1))
        .with_port(-1);
    if v >= 4 {
        resp.coordinators = r
            .coordinator_keys
            .into_iter()
            .map(|k| {
                Coordinator::default()
                    .with_key(k)
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(COORDINATOR_NOT_AVAILABLE)
                    .with_error_message(Some(sb(message)))
            })
            .collect();
    } else {
        // v0-3 carry one coordinator at the top level (v4+ refuses these fields set).
        resp.error_code = COORDINATOR_NOT_AVAILABLE;
        resp.error_message = Some(sb(message));
        resp.node_id = BrokerId(-1);
        resp.port = -1;
    }
    Ok(Reply::Now(respond(
        ApiKey::FindCoordinator,
        v,
        req.header.correlation_id,
        &resp,
    )))
}
