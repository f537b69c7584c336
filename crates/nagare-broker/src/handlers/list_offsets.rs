//! ListOffsets (key 2): earliest (-2; the remote log start of a tiered partition), latest
//! (-1), max timestamp (-3), earliest local (-4), latest tiered (-5, KIP-1005), and by
//! timestamp through the time index. A consumer's `isolation_level` (v2+)
//! bounds the answers as Kafka's: read_committed gets the last stable offset as "latest" and
//! no lookup result at or past it; read_uncommitted the same with the high watermark.

use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::replica_manager::{IsolationLevel, OffsetSpec};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (1, 10);

/// Handles ListOffsets.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ListOffsetsRequest = req.decode()?;
    let v = req.version();
    // A follower (replica id >= 0, or the -2 debugging id) gets the log end for "latest"
    // (Kafka's isolation level `None` for non-clients); a consumer the high watermark or,
    // with read_committed, the last stable offset.
    let isolation = (r.replica_id.0 == -1).then_some(if r.isolation_level == 1 {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    });
    let mut topics = Vec::new();
    for t in r.topics {
        // Kafka: DESCRIBE on the topic.
        let allowed = broker.authorize(&req.ctx, AclOperation::Describe, &Resource::topic(&t.name));
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            if !allowed {
                parts.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            let res = broker.replicas.fetch_offset_for_timestamp(
                t.name.as_str(),
                p.partition_index,
                p.current_leader_epoch,
                OffsetSpec::from_wire(p.timestamp),
                isolation,
            );
            parts.push(match res {
                Ok(Some(o)) => out
                    .with_timestamp(o.timestamp)
                    .with_offset(o.offset)
                    .with_leader_epoch(if v >= 4 { o.leader_epoch } else { -1 }), // v4+ only
                Ok(None) => out,
                Err(e) => out.with_error_code(e.code()),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(parts),
        );
    }
    let resp = ListOffsetsResponse::default().with_topics(topics);
    Ok(Reply::Now(respond(
        ApiKey::ListOffsets,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
