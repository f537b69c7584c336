//! DescribeProducers (key 61, KIP-664): the producer states a partition's log tracks —
//! producer id, epoch, last sequence, last timestamp, the coordinator epoch of its last
//! transaction marker and the first offset of its ongoing transaction — as
//! `kafka-transactions.sh describe-producers` and `find-hanging` read them.
//!
//! As Kafka's `KafkaApis.handleDescribeProducersRequest`: READ on the topic
//! (TOPIC_AUTHORIZATION_FAILED on every partition otherwise), UNKNOWN_TOPIC_OR_PARTITION for a
//! topic or partition the cluster does not have, and the answer of any replica hosting the
//! partition (`ReplicaManager.activeProducerState`: leader or follower, the admin client may
//! address a chosen broker); NOT_LEADER_OR_FOLLOWER from a broker that hosts no replica of it.

use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    ApiKey, DescribeProducersRequest, DescribeProducersResponse, ProducerId,
};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::replica_manager::ReplicaError;
use crate::Broker;
use nagare_metadata::MetadataImage;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 0);

/// Handles DescribeProducers.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: DescribeProducersRequest = req.decode()?;
    let image = broker.image();
    let mut topics = Vec::with_capacity(r.topics.len());
    for t in r.topics {
        let name = t.name.as_str();
        let allowed = broker.authorize(&req.ctx, AclOperation::Read, &Resource::topic(name));
        let partitions = t
            .partition_indexes
            .iter()
            .map(|&index| {
                let out = PartitionResponse::default().with_partition_index(index);
                if !allowed {
                    return out.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                match broker.replicas.active_producers(name, index) {
                    Ok(states) => out.with_active_producers(
                        states
                            .iter()
                            .map(|s| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(s.producer_id))
                                    .with_producer_epoch(i32::from(s.producer_epoch))
                                    .with_last_sequence(s.last_seq())
                                    .with_last_timestamp(s.last_timestamp)
                                    .with_coordinator_epoch(s.coordinator_epoch)
                                    .with_current_txn_start_offset(s.current_txn_first_offset)
                            })
                            .collect(),
                    ),
                    Err(ReplicaError::UnknownTopicOrPartition) => {
                        out.with_error_code(not_hosted_code(&image, name, index))
                    }
                    Err(e) => out.with_error_code(e.code()),
                }
            })
            .collect();
        topics.push(
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    let resp = DescribeProducersResponse::default().with_topics(topics);
    Ok(Reply::Now(respond(
        ApiKey::DescribeProducers,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

/// A partition not hosted here: NOT_LEADER_OR_FOLLOWER if the cluster has it (the client
/// refreshes its metadata and asks a replica), UNKNOWN_TOPIC_OR_PARTITION otherwise (Kafka's
/// `ReplicaManager.getPartitionOrError`).
fn not_hosted_code(image: &MetadataImage, topic: &str, partition: i32) -> i16 {
    let exists = image
        .topic(topic)
        .is_some_and(|t| t.partitions.contains_key(&partition));
    if exists {
        ResponseError::NotLeaderOrFollower.code()
    } else {
        ResponseError::UnknownTopicOrPartition.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use nagare_metadata::{PartitionRegistration, TopicImage, Uuid};

    /// A partition the cluster has but this broker does not host is NOT_LEADER_OR_FOLLOWER
    /// (the client looks for a replica); anything else is UNKNOWN_TOPIC_OR_PARTITION.
    #[test]
    fn not_hosted_partitions() {
        let mut img = MetadataImage::empty();
        let id = Uuid::from_u128(7);
        img.topics_by_id.insert(
            id,
            Arc::new(TopicImage {
                name: "t".into(),
                id,
                partitions: BTreeMap::from([(
                    0,
                    PartitionRegistration {
                        replicas: vec![2],
                        isr: vec![2],
                        leader: 2,
                        leader_epoch: 0,
                        partition_epoch: 0,
                    },
                )]),
            }),
        );
        img.topic_ids.insert("t".into(), id);
        assert_eq!(not_hosted_code(&img, "t", 0), 6);
        assert_eq!(not_hosted_code(&img, "t", 1), 3);
        assert_eq!(not_hosted_code(&img, "u", 0), 3);
    }
}
