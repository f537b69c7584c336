//! DescribeQuorum (key 55, KIP-595): the metadata quorum's leader, epoch, high watermark and
//! every voter's and observer's progress. Only the leader knows the others' progress, so a
//! broker forwards the request to the active controller; a controller that does not lead
//! answers NOT_LEADER_OR_FOLLOWER.

use std::sync::Arc;

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles DescribeQuorum.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeQuorumRequest = req.decode()?;
    let v = req.version();
    // Kafka: DESCRIBE on the cluster.
    if !broker.authorize(&req.ctx, AclOperation::Describe, &Resource::cluster()) {
        let resp = DescribeQuorumResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
        return Ok(Reply::Now(respond(
            ApiKey::DescribeQuorum,
            v,
            req.correlation_id(),
            &resp,
        )));
    }
    let info = broker.quorum.get().map(|q| q.quorum_info());
    let leads = info
        .as_ref()
        .is_some_and(|i| i.leader_id == Some(broker.config.node_id));
    let replica = |x: &nagare_raft::ReplicaInfo| {
        let mut s = ReplicaState::default()
            .with_replica_id(BrokerId(x.replica_id))
            .with_log_end_offset(x.log_end_offset);
        if v >= 1 {
            s = s
                .with_last_fetch_timestamp(x.last_fetch_ms.map(|t| t as i64).unwrap_or(-1))
                .with_last_caught_up_timestamp(x.last_caught_up_ms.map(|t| t as i64).unwrap_or(-1));
        }
        s
    };
    let topics = r
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = PartitionData::default().with_partition_index(p.partition_index);
                    if t.topic_name.as_str() != "__cluster_metadata" || p.partition_index != 0 {
                        return base.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    match (&info, leads) {
                        (Some(i), true) => base
                            .with_leader_id(BrokerId(i.leader_id.unwrap_or(-1)))
                            .with_leader_epoch(i.epoch)
                            .with_high_watermark(i.high_watermark)
                            .with_current_voters(i.voters.iter().map(replica).collect())
                            .with_observers(i.observers.iter().map(replica).collect()),
                        (i, _) => base
                            .with_error_code(ResponseError::NotLeaderOrFollower.code())
                            .with_leader_id(BrokerId(
                                i.as_ref().and_then(|i| i.leader_id).unwrap_or(-1),
                            ))
                            .with_leader_epoch(i.as_ref().map(|i| i.epoch).unwrap_or(-1)),
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(sb(t.topic_name.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let mut resp = DescribeQuorumResponse::default().with_topics(topics);
    if v >= 2 {
        // KIP-853: the voters' endpoints.
        resp = resp.with_nodes(
            broker
                .config
                .quorum
                .voters
                .iter()
                .map(|vo| {
                    Node::default()
                        .with_node_id(BrokerId(vo.node_id))
                        .with_listeners(vec![Listener::default()
                            .with_name(sb(broker
                                .config
                                .controller_listener_names
                                .first()
                                .cloned()
                                .unwrap_or_else(|| "CONTROLLER".into())))
                            .with_host(sb(vo.host.clone()))
                            .with_port(vo.port)])
                })
                .collect(),
        );
    }
    Ok(Reply::Now(respond(
        ApiKey::DescribeQuorum,
        v,
        req.correlation_id(),
        &resp,
    )))
}
