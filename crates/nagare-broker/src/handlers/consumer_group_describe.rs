//! ConsumerGroupDescribe (key 69, KIP-848): epochs, assignor, members with their current and
//! target assignments. Groups are split by coordinator shard by [`super::groups`].

use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use super::HandlerResult;
use super::Request;
use crate::Broker;

/// Supported versions (Kafka 4.x: 0–1).
pub const VERSIONS: (i16, i16) = (0, 1);

/// Handles ConsumerGroupDescribe.
pub async fn handle(broker: &Arc<Broker>, req: Request) -> HandlerResult {
    super::groups::handle(broker, ApiKey::ConsumerGroupDescribe, req).await
}
