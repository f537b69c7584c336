//! DeleteRecords (key 21): moves a partition's log start offset forward.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles DeleteRecords.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DeleteRecordsRequest = req.decode()?;
    let mut topics = Vec::new();
    for t in r.topics {
        // Kafka: DELETE on the topic.
        let allowed = broker.authorize(&req.ctx, AclOperation::Delete, &Resource::topic(&t.name));
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            if !allowed {
                parts.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            // -1 means "up to the high watermark" (Kafka's DeleteRecordsRequest.HIGH_WATERMARK).
            parts.push(
                match broker
                    .replicas
                    .delete_records(t.name.as_str(), p.partition_index, p.offset)
                {
                    Ok(low) => out.with_low_watermark(low),
                    Err(e) => out.with_error_code(e.code()),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    let resp = DeleteRecordsResponse::default().with_topics(topics);
    Ok(Reply::Now(respond(
        ApiKey::DeleteRecords,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
