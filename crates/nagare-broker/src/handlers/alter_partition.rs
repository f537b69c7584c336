//! AlterPartition (key 56, KIP-497): a partition leader asks the active controller to change
//! its ISR. The controller side decodes the request and runs the pure decision of
//! `nagare_controller::replication_control`; the broker side ([`send`]) builds the request
//! from an [`IsrProposal`] and sends it to the active controller (or calls this node's own
//! controller when it is the active one, as `broker_lifecycle` does for heartbeats).

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::alter_partition_response::{
    PartitionData as RespPartition, TopicData as RespTopic,
};
use kafka_protocol::messages::{AlterPartitionRequest, AlterPartitionResponse, ApiKey, BrokerId};

use nagare_controller::replication_control::{self, AlterPartitionItem, AlterPartitionResult};
use nagare_metadata::Uuid;

use super::HandlerResult;
use super::{respond, Request};
use crate::network::Reply;
use crate::replica_manager::partition_state::IsrProposal;
use crate::Broker;

/// Supported versions (2: topic ids; 3: ISR members with broker epochs, KIP-903).
pub const VERSIONS: (i16, i16) = (2, 3);

/// Handles AlterPartition on the controller listener.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
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
        req.correlation_id(),
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

/// Sends the ISR proposals of `changes` (topic id, partition, proposal; at most one per
/// partition) to the active controller in one AlterPartition request, as Kafka's
/// `AlterPartitionManager` batches every pending item, and returns each one's error code in
/// order (0 when accepted). Transport failures come back as REQUEST_TIMED_OUT (7) or
/// NOT_CONTROLLER (41) for every item; the caller retries later.
pub async fn send(broker: &Arc<Broker>, changes: &[(Uuid, i32, IsrProposal)]) -> Vec<i16> {
    if changes.is_empty() {
        return Vec::new();
    }
    let node = broker.config.node_id;
    let broker_epoch = broker
        .lifecycle
        .get()
        .and_then(|l| l.broker_epoch())
        .unwrap_or(-1);
    let code_of = |topic_id: Uuid, partition: i32, codes: &[(Uuid, i32, i16)]| {
        codes
            .iter()
            .find(|(t, p, _)| *t == topic_id && *p == partition)
            .map(|(_, _, c)| *c)
            .unwrap_or(-1)
    };
    if let Some(c) = broker.controller.as_ref().filter(|c| c.is_active()) {
        let items: Vec<AlterPartitionItem> = changes
            .iter()
            .map(|(topic_id, partition, proposal)| AlterPartitionItem {
                topic_id: *topic_id,
                partition: *partition,
                leader_epoch: proposal.leader_epoch,
                partition_epoch: proposal.partition_epoch,
                new_isr: proposal.new_isr.clone(),
            })
            .collect();
        return match c
            .commit(false, move |img| {
                replication_control::alter_partition(img, node, broker_epoch, &items)
            })
            .await
        {
            Ok(results) => {
                let codes: Vec<(Uuid, i32, i16)> = results
                    .iter()
                    .map(|r| (r.topic_id, r.partition, r.error_code))
                    .collect();
                changes
                    .iter()
                    .map(|(t, p, _)| code_of(*t, *p, &codes))
                    .collect()
            }
            Err(e) => vec![e.code(); changes.len()],
        };
    }
    // Version 3 (the one the controller listener negotiates) carries each member's broker
    // epoch (KIP-903); taken from the image this leader has.
    let image = broker.image();
    let mut topics: Vec<TopicData> = Vec::new();
    for (topic_id, partition, proposal) in changes {
        let members = proposal
            .new_isr
            .iter()
            .map(|id| {
                BrokerState::default()
                    .with_broker_id(BrokerId(*id))
                    .with_broker_epoch(image.brokers.get(id).map(|b| b.epoch).unwrap_or(-1))
            })
            .collect();
        let p = PartitionData::default()
            .with_partition_index(*partition)
            .with_leader_epoch(proposal.leader_epoch)
            .with_partition_epoch(proposal.partition_epoch)
            .with_new_isr_with_epochs(members);
        match topics.iter_mut().find(|t| t.topic_id == *topic_id) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                TopicData::default()
                    .with_topic_id(*topic_id)
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = AlterPartitionRequest::default()
        .with_broker_id(BrokerId(node))
        .with_broker_epoch(broker_epoch)
        .with_topics(topics);
    match broker.channel_send(&req).await {
        Ok(resp) if resp.error_code != 0 => vec![resp.error_code; changes.len()],
        Ok(resp) => {
            let codes: Vec<(Uuid, i32, i16)> = resp
                .topics
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| (t.topic_id, p.partition_index, p.error_code))
                })
                .collect();
            changes
                .iter()
                .map(|(t, p, _)| code_of(*t, *p, &codes))
                .collect()
        }
        Err(e) => vec![e.code; changes.len()],
    }
}
