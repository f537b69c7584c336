//! The broker side of AlterPartition (KIP-497, Kafka's `AlterPartitionManager`): a
//! partition leader's ISR proposals ([`IsrProposal`], from the replication state of
//! [`super::partition_state`]) sent to the active controller in one request over the
//! controller channel, which hands it in-process to this node's controller when it is the
//! active one — one code path either way. The controller side is
//! `controller_requests::alter_partition`.

use std::sync::Arc;

use kafka_protocol::messages::alter_partition_request::{BrokerState, PartitionData, TopicData};
use kafka_protocol::messages::{AlterPartitionRequest, BrokerId};

use nagare_metadata::Uuid;

use super::partition_state::IsrProposal;
use crate::Broker;

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
