//! ElectLeaders (key 43, KIP-183, KIP-460 election types): preferred (0) or unclean (1)
//! leader elections. Like Kafka in KRaft mode, a broker forwards it to the active
//! controller, which answers it on its CONTROLLER listener; the decision is
//! `nagare_controller::elections::elect_leaders`. A null topic list means every partition.

use std::sync::Arc;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ApiKey, ElectLeadersRequest, ElectLeadersResponse, TopicName};

use nagare_controller::elections::ElectionType;
use nagare_controller::shell::ControllerError;

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles ElectLeaders on the active controller (or answers NOT_CONTROLLER, which the
/// forwarding broker's client retries).
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ElectLeadersRequest = req.decode()?;
    let v = req.version();
    // v0 has no election type: always preferred.
    let election_type = if v == 0 { 0 } else { r.election_type };
    let partitions: Option<Vec<(String, Vec<i32>)>> = r.topic_partitions.as_ref().map(|tps| {
        tps.iter()
            .map(|t| (t.topic.to_string(), t.partitions.clone()))
            .collect()
    });
    // Every requested partition gets this error (a request-level failure).
    let fail_all = |code: i16, message: String| -> ElectLeadersResponse {
        let results = partitions
            .as_ref()
            .map(|ps| {
                ps.iter()
                    .map(|(t, parts)| {
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(sb(t.clone())))
                            .with_partition_result(
                                parts
                                    .iter()
                                    .map(|p| {
                                        PartitionResult::default()
                                            .with_partition_id(*p)
                                            .with_error_code(code)
                                            .with_error_message(Some(sb(message.clone())))
                                    })
                                    .collect(),
                            )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ElectLeadersResponse::default()
            .with_error_code(if v >= 1 { code } else { 0 })
            .with_replica_election_results(results)
    };
    // Kafka: ALTER on the cluster.
    let authorized = broker.authorize(&req.ctx, AclOperation::Alter, &Resource::cluster());
    let resp = match (ElectionType::from_wire(election_type), &broker.controller) {
        _ if !authorized => fail_all(
            ResponseError::ClusterAuthorizationFailed.code(),
            "Cluster authorization failed.".into(),
        ),
        (None, _) => fail_all(
            kafka_protocol::ResponseError::InvalidRequest.code(),
            format!("Unknown election type {election_type}"),
        ),
        (Some(_), None) => {
            let e = ControllerError::NotController { leader: None };
            fail_all(e.code(), e.message())
        }
        (Some(t), Some(c)) => match c.elect_leaders(t, partitions.clone()).await {
            Ok(results) => ElectLeadersResponse::default().with_replica_election_results(
                results
                    .into_iter()
                    .map(|t| {
                        ReplicaElectionResult::default()
                            .with_topic(TopicName(sb(t.topic)))
                            .with_partition_result(
                                t.partitions
                                    .into_iter()
                                    .map(|p| {
                                        PartitionResult::default()
                                            .with_partition_id(p.partition)
                                            .with_error_code(p.error_code)
                                            .with_error_message(p.error_message.map(sb))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
            Err(e) => fail_all(e.code(), e.message()),
        },
    };
    Ok(Reply::Now(respond(
        ApiKey::ElectLeaders,
        v,
        req.correlation_id(),
        &resp,
    )))
}
