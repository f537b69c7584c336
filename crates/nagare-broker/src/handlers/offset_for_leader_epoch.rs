//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, from the leader-epoch
//! checkpoint (KIP-101/KIP-279), so clients and followers can detect log divergence.

use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (2, 4);

/// Handles OffsetForLeaderEpoch.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: OffsetForLeaderEpochRequest = req.decode()?;
    // Kafka: a follower (replica id >= 0) needs CLUSTER_ACTION on the cluster, a client
    // DESCRIBE on each topic.
    let follower_allowed = r.replica_id.0 < 0
        || broker.authorize(&req.ctx, AclOperation::ClusterAction, &Resource::cluster());
    let mut topics = Vec::new();
    for t in r.topics {
        let allowed = follower_allowed
            && (r.replica_id.0 >= 0
                || broker.authorize(&req.ctx, AclOperation::Describe, &Resource::topic(&t.topic)));
        let mut parts = Vec::new();
        for p in t.partitions {
            let out = EpochEndOffset::default()
                .with_partition(p.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            if !allowed {
                parts.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            parts.push(
                match broker.replicas.last_offset_for_leader_epoch(
                    t.topic.as_str(),
                    p.partition,
                    p.current_leader_epoch,
                    p.leader_epoch,
                ) {
                    Ok((epoch, end)) => out.with_leader_epoch(epoch).with_end_offset(end),
                    Err(e) => out.with_error_code(e.code()),
                },
            );
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(parts),
        );
    }
    let resp = OffsetForLeaderEpochResponse::default().with_topics(topics);
    Ok(Reply::Now(respond(
        ApiKey::OffsetForLeaderEpoch,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
