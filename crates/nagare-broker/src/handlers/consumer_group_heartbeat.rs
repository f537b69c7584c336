//! ConsumerGroupHeartbeat (key 68, KIP-848): joins, heartbeats and leaves of `consumer`-protocol
//! group members, with server-side assignment. Routed to the group's coordinator shard by
//! [`super::groups`]; the decisions live in `nagare-coordinator`.

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::HandlerResult;
use super::Request;
use crate::Broker;

/// Supported versions (Kafka 4.x: 0–1).
pub const VERSIONS: (i16, i16) = (0, 1);

/// Handles ConsumerGroupHeartbeat.
pub async fn handle(broker: &Arc<Broker>, req: Request) -> HandlerResult {
    super::groups::handle(broker, ApiKey::ConsumerGroupHeartbeat, req).await
}
