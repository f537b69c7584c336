//! AlterPartition (key 56, KIP-497): a partition leader asks the active controller to change
//! its ISR. This is the controller side: it decodes the request and runs the pure decision of
//! `nagare_controller::replication_control`. The broker side (building the request from an
//! ISR proposal) lives next to the ISR upkeep, in
//! `replica_manager::alter_partition_sender`.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_response::{
    PartitionData as RespPartition, TopicData as RespTopic,
};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, ApiKey, BrokerId};

use nagare_controller::replication_control::{self, AlterPartitionItem, AlterPartitionResult};

use super::{respond, Request};
use crate::network::Reply;
use crate::Broker;

/// Supported versions (2: topic ids; 3: ISR members with broker epochs, KIP-903).
pub const VERSIONS: (i16, i16) = (2, 3);

/// Handles AlterPartition on the controller listener.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> Result<Reply, String> {
    let r: AlterPartitionRequest = req.decode()?;
    let v = req.version();
    let broker_id = r.broker_id.0;
    let broker_epoch = r.broker_epoch;
    let items: Vec<AlterPartitionItem> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| AlterPartitionItem {
                topic_id: t.topic_id,
                partition: p.partition_index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: if v >= 3 {
                    p.new_isr_with_epochs
                        .iter()
                        .map(|b| b.broker_id.0)
                        .collect()
                } else {
                    p.new_isr.iter().map(|b| b.0).collect()
                },
            })
        })
        .collect();
    let outcome = broker
        .controller_commit(false, move |img| {
            replication_control::alter_partition(img, broker_id, broker_epoch, &items)
        })
        .await;
    let resp = match outcome {
        Ok(results) => AlterPartitionResponse::default().with_topics(group(results)),
        Err(e) => AlterPartitionResponse::default().with_error_code(e.code()),
    };
    Ok(Reply::Now(respond(
        ApiKey::AlterPartition,
        v,
        req.header.correlation_id,
        &resp,
    )))
}

fn group(results: Vec<AlterPartitionResult>) -> Vec<RespTopic> {
    let mut topics: Vec<RespTopic> = Vec::new();
    for r in results {
        let p = RespPartition::default()
            .with_partition_index(r.partition)
            .with_error_code(r.error_code)
            .with_leader_id(BrokerId(r.leader))
            .with_leader_epoch(r.leader_epoch)
            .with_isr(r.isr.into_iter().map(BrokerId).collect())
            .with_partition_epoch(r.partition_epoch);
        match topics.iter_mut().find(|t| t.topic_id == r.topic_id) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                RespTopic::default()
                    .with_topic_id(r.topic_id)
                    .with_partitions(vec![p]),
            ),
        }
    }
    topics
}
