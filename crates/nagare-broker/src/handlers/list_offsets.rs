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
    // (topic index, partition index, partition, remote log manager, timestamp) of lookups by
    // timestamp the remote log may answer (KIP-405), done after the local ones.
    let mut remote = Vec::new();
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
            if p.timestamp >= 0 {
                if let Some((part, rlm)) = broker.replicas.remote_timestamp_lookup(
                    t.name.as_str(),
                    p.partition_index,
                    p.current_leader_epoch,
                    p.timestamp,
                ) {
                    remote.push((topics.len(), parts.len(), part, rlm, p.timestamp));
                }
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
    let mut resp = ListOffsetsResponse::default().with_topics(topics);
    if remote.is_empty() {
        return Ok(Reply::Now(respond(
            ApiKey::ListOffsets,
            v,
            req.correlation_id(),
            &resp,
        )));
    }
    // Remote lookups read object-store indexes and segments: answered later, never on a
    // network thread (Kafka's DelayedRemoteListOffsets). A remote answer comes first in
    // the log, so it replaces the local one.
    let correlation_id = req.correlation_id();
    Ok(Reply::Later(Box::pin(async move {
        for (ti, pi, p, rlm, ts) in remote {
            let Some(out) = resp
                .topics
                .get_mut(ti)
                .and_then(|t| t.partitions.get_mut(pi))
            else {
                continue;
            };
            match rlm
                .offset_for_timestamp(p.topic_id, p.tp.partition, ts, p.earliest_offset())
                .await
            {
                Ok(Some(o)) => {
                    out.error_code = 0;
                    out.timestamp = o.timestamp;
                    out.offset = o.offset;
                    out.leader_epoch = if v >= 4 { o.leader_epoch } else { -1 };
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tp = %p.tp, timestamp = ts, error = %e, "remote ListOffsets lookup failed");
                    out.error_code = ResponseError::KafkaStorageError.code();
                    out.offset = -1;
                    out.timestamp = -1;
                }
            }
        }
        respond(ApiKey::ListOffsets, v, correlation_id, &resp)
    })))
}
