//! ISR changes proposed by partition leaders (AlterPartition, KIP-497), as a pure decision
//! over the image (the AlterPartition half of Kafka's `ReplicationControlManager`): the
//! request must come from the partition's current leader at its current leader epoch and be
//! based on the current partition epoch; the new ISR must hold the leader and only unfenced
//! replicas of the partition. An accepted change is a `PartitionChange` record.

use kafka_protocol::ResponseError;
use nagare_metadata::records::MetadataRecord;
use nagare_metadata::{MetadataImage, Uuid};

use crate::logic::ApiError;

/// One partition of an AlterPartition request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionItem {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// The leader epoch the leader has.
    pub leader_epoch: i32,
    /// The partition epoch its proposal is based on.
    pub partition_epoch: i32,
    /// The proposed ISR.
    pub new_isr: Vec<i32>,
}

/// The answer for one partition: an error code, or the partition's state after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionResult {
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// Kafka error code (0 when accepted).
    pub error_code: i16,
    /// Leader after the change.
    pub leader: i32,
    /// Leader epoch after the change.
    pub leader_epoch: i32,
    /// ISR after the change.
    pub isr: Vec<i32>,
    /// Partition epoch after the change.
    pub partition_epoch: i32,
}

/// Decides an AlterPartition from broker `broker_id` (registration epoch `broker_epoch`, -1
/// to skip that check as Kafka does for old versions). A stale broker epoch fails the whole
/// request (STALE_BROKER_EPOCH); each partition is then accepted or refused on its own.
pub fn alter_partition(
    image: &MetadataImage,
    broker_id: i32,
    broker_epoch: i64,
    items: &[AlterPartitionItem],
) -> Result<(Vec<MetadataRecord>, Vec<AlterPartitionResult>), ApiError> {
    match image.brokers.get(&broker_id) {
        None => {
            return Err(ApiError {
                code: ResponseError::BrokerIdNotRegistered.code(),
                message: format!("broker {broker_id} is not registered"),
            })
        }
        Some(b) if broker_epoch != -1 && b.epoch != broker_epoch => {
            return Err(ApiError {
                code: ResponseError::StaleBrokerEpoch.code(),
                message: format!("expected broker epoch {}, got {broker_epoch}", b.epoch),
            })
        }
        Some(_) => {}
    }
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let mut out = AlterPartitionResult {
            topic_id: item.topic_id,
            partition: item.partition,
            error_code: 0,
            leader: -1,
            leader_epoch: -1,
            isr: vec![],
            partition_epoch: -1,
        };
        let Some(topic) = image.topic_by_id(&item.topic_id) else {
            out.error_code = ResponseError::UnknownTopicId.code();
            results.push(out);
            continue;
        };
        let Some(p) = topic.partitions.get(&item.partition) else {
            out.error_code = ResponseError::UnknownTopicOrPartition.code();
            results.push(out);
            continue;
        };
        let code = validate(image, broker_id, p, item);
        if code != 0 {
            out.error_code = code;
            results.push(out);
            continue;
        }
        let mut new_isr = item.new_isr.clone();
        new_isr.sort_unstable();
        new_isr.dedup();
        let mut current = p.isr.clone();
        current.sort_unstable();
        let changed = new_isr != current;
        if changed {
            tracing::info!(
                topic = %topic.name,
                partition = item.partition,
                from = ?p.isr,
                to = ?new_isr,
                "ISR change requested by the leader"
            );
            records.push(MetadataRecord::PartitionChange {
                topic_id: item.topic_id,
                partition_id: item.partition,
                leader: None,
                isr: Some(new_isr.clone()),
                replicas: None,
            });
        }
        out.leader = p.leader;
        out.leader_epoch = p.leader_epoch;
        out.isr = if changed { new_isr } else { p.isr.clone() };
        out.partition_epoch = p.partition_epoch + i32::from(changed);
        results.push(out);
    }
    Ok((records, results))
}

fn validate(
    image: &MetadataImage,
    broker_id: i32,
    p: &nagare_metadata::PartitionRegistration,
    item: &AlterPartitionItem,
) -> i16 {
    // Kafka's ReplicationControlManager.validateAlterPartitionData, in its order.
    if p.leader != broker_id {
        return ResponseError::InvalidRequest.code();
    }
    if item.leader_epoch < p.leader_epoch {
        return ResponseError::FencedLeaderEpoch.code();
    }
    if item.leader_epoch > p.leader_epoch {
        // The controller is behind the leader: it cannot be (epochs come from the
        // controller), so the request is invalid.
        return ResponseError::NotLeaderOrFollower.code();
    }
    if item.partition_epoch != p.partition_epoch {
        return kafka_protocol::ResponseError::InvalidUpdateVersion.code();
    }
    if item.new_isr.is_empty() || !item.new_isr.contains(&broker_id) {
        return ResponseError::InvalidRequest.code();
    }
    if item.new_isr.iter().any(|r| !p.replicas.contains(r)) {
        return ResponseError::InvalidRequest.code();
    }
    // Only unfenced brokers may join the ISR (members already in it may stay).
    let eligible = |r: &i32| p.isr.contains(r) || image.brokers.get(r).is_some_and(|b| !b.fenced);
    if !item.new_isr.iter().all(eligible) {
        return ResponseError::IneligibleReplica.code();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> (MetadataImage, Uuid) {
        let mut img = MetadataImage::empty();
        let t = Uuid::from_bytes([5; 16]);
        let mut recs = Vec::new();
        for id in 1..=3 {
            recs.push(MetadataRecord::RegisterBroker {
                broker_id: id,
                broker_epoch: 10 + id as i64,
                incarnation_id: Uuid::from_bytes([id as u8; 16]),
                endpoints: vec![],
                rack: None,
                fenced: id == 3,
            });
        }
        recs.push(MetadataRecord::Topic {
            name: "t".into(),
            topic_id: t,
        });
        recs.push(MetadataRecord::Partition {
            topic_id: t,
            partition_id: 0,
            replicas: vec![1, 2, 3],
            isr: vec![1, 2],
            leader: 1,
            leader_epoch: 4,
            partition_epoch: 9,
        });
        for (i, r) in recs.iter().enumerate() {
            img.apply(i as i64, r);
        }
        (img, t)
    }

    fn item(t: Uuid, le: i32, pe: i32, isr: &[i32]) -> AlterPartitionItem {
        AlterPartitionItem {
            topic_id: t,
            partition: 0,
            leader_epoch: le,
            partition_epoch: pe,
            new_isr: isr.to_vec(),
        }
    }

    #[test]
    fn accepts_a_valid_shrink_and_bumps_the_partition_epoch() {
        let (mut img, t) = image();
        let (recs, res) = alter_partition(&img, 1, 11, &[item(t, 4, 9, &[1])]).expect("ok");
        assert_eq!(recs.len(), 1);
        assert_eq!(res[0].error_code, 0);
        assert_eq!((res[0].isr.clone(), res[0].partition_epoch), (vec![1], 10));
        let o = img.offset + 1;
        img.apply(o, &recs[0]);
        let p = img.topic("t").map(|t| t.partitions[&0].clone()).expect("p");
        assert_eq!((p.isr, p.partition_epoch, p.leader_epoch), (vec![1], 10, 4));
        // The same proposal again is stale now.
        let (_, res) = alter_partition(&img, 1, 11, &[item(t, 4, 9, &[1])]).expect("ok");
        assert_eq!(
            res[0].error_code,
            kafka_protocol::ResponseError::InvalidUpdateVersion.code()
        );
    }

    #[test]
    fn refuses_bad_requests_with_kafkas_codes() {
        let (img, t) = image();
        let code = |broker, epoch, it: AlterPartitionItem| {
            alter_partition(&img, broker, epoch, &[it]).map(|(r, res)| {
                assert!(r.is_empty());
                res[0].error_code
            })
        };
        assert_eq!(
            code(1, 99, item(t, 4, 9, &[1])).map_err(|e| e.code),
            Err(ResponseError::StaleBrokerEpoch.code())
        );
        assert_eq!(
            code(2, 12, item(t, 4, 9, &[2])).ok(),
            Some(ResponseError::InvalidRequest.code())
        );
        assert_eq!(
            code(1, 11, item(t, 3, 9, &[1])).ok(),
            Some(ResponseError::FencedLeaderEpoch.code())
        );
        assert_eq!(
            code(1, 11, item(t, 4, 8, &[1])).ok(),
            Some(kafka_protocol::ResponseError::InvalidUpdateVersion.code())
        );
        assert_eq!(
            code(1, 11, item(t, 4, 9, &[2])).ok(),
            Some(ResponseError::InvalidRequest.code())
        );
        assert_eq!(
            code(1, 11, item(t, 4, 9, &[1, 7])).ok(),
            Some(ResponseError::InvalidRequest.code())
        );
        // Broker 3 is fenced: it may not join.
        assert_eq!(
            code(1, 11, item(t, 4, 9, &[1, 2, 3])).ok(),
            Some(ResponseError::IneligibleReplica.code())
        );
        let mut unknown = item(t, 4, 9, &[1]);
        unknown.topic_id = Uuid::from_bytes([9; 16]);
        assert_eq!(
            code(1, 11, unknown).ok(),
            Some(ResponseError::UnknownTopicId.code())
        );
        // An unchanged ISR is accepted without a record.
        assert_eq!(code(1, 11, item(t, 4, 9, &[2, 1])).ok(), Some(0));
    }
}
