//! DeleteRecords (key 21): moves a partition's log start offset forward.

use std::sync::Arc;

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{ApiKey, DeleteRecordsRequest, DeleteRecordsResponse};

use super::HandlerResult;
use super::{respond, storage_error_code, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles DeleteRecords.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DeleteRecordsRequest = req.decode()?;
    let mut topics = Vec::new();
    for t in r.topics {
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let part =
                match broker
                    .replicas
                    .leader_partition(t.name.as_str(), p.partition_index, -1)
                {
                    Ok(part) => part,
                    Err(code) => {
                        parts.push(out.with_error_code(code));
                        continue;
                    }
                };
            let hw = part.high_watermark();
            // -1 means "up to the high watermark" (Kafka's DeleteRecordsRequest.HIGH_WATERMARK).
            let target = if p.offset == -1 { hw } else { p.offset };
            if target < 0 || target > hw {
                parts.push(out.with_error_code(1));
                continue;
            }
            parts.push(match part.log.delete_records_before(target) {
                Ok(low) => {
                    tracing::info!(tp = %part.tp, low_watermark = low, "deleted records");
                    out.with_low_watermark(low)
                }
                Err(e) => out.with_error_code(storage_error_code(&e)),
            });
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
