//! DescribeCluster (key 60): cluster id, controller, brokers (or controllers, v1+).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::Resource;
use crate::network::Reply;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// Handles DescribeCluster.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeClusterRequest = req.decode()?;
    let v = req.version();
    let image = broker.image();
    let brokers = if r.endpoint_type == 2 {
        // Controllers: the voters of controller.quorum.voters.
        broker
            .config
            .quorum
            .voters
            .iter()
            .map(|v| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(v.node_id))
                    .with_host(sb(v.host.clone()))
                    .with_port(v.port as i32)
            })
            .collect()
    } else {
        image
            .brokers
            .values()
            .filter(|b| r.include_fenced_brokers || !b.fenced)
            .filter_map(|b| {
                let ep = broker.endpoint_for_listener(b, &req.ctx.connection.listener_name)?;
                Some(
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(b.id))
                        .with_host(sb(ep.host.clone()))
                        .with_port(ep.port as i32)
                        .with_rack(b.rack.clone().map(sb))
                        .with_is_fenced(v >= 2 && b.fenced),
                )
            })
            .collect()
    };
    let resp = DescribeClusterResponse::default()
        .with_endpoint_type(if r.endpoint_type == 0 {
            1
        } else {
            r.endpoint_type
        })
        .with_cluster_id(sb(broker.cluster_id.clone()))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(if r.include_cluster_authorized_operations {
            broker.authorized_operations(&req.ctx, &Resource::cluster())
        } else {
            i32::MIN
        });
    Ok(Reply::Now(respond(
        ApiKey::DescribeCluster,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
