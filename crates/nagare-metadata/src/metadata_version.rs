//! The `metadata.version` feature (KIP-778) as a gate on record versions: which version of
//! each metadata record type the controller may write at each finalized level. Kafka's
//! `MetadataVersion` enum plays this role (e.g. `PartitionRecord` v1 needs 3.4-IV0 for
//! directories, v2 needs 3.7 for ELR): a record version may be written only once every node
//! of the cluster can read it, and the finalized `metadata.version` is the cluster's promise
//! of that. Nodes still decode every version they know regardless of the level, so a record
//! written under a higher level before a downgrade is not lost.

use crate::records::{MetadataRecord, RecordError, RecordType};

/// The feature name.
pub const FEATURE_NAME: &str = "metadata.version";

/// The lowest `metadata.version` level this code accepts (Kafka's `IBP_3_0_IV1` is 1).
pub const MINIMUM_LEVEL: i16 = 1;

/// The highest `metadata.version` level this code knows (Kafka 4.0's `IBP_4_0_IV3` is 27,
/// the level a new cluster is bootstrapped at).
pub const LATEST_LEVEL: i16 = 27;

/// From which `metadata.version` level each record version may be written:
/// `(record type, version, first level)`. Every type is at version 0, writable at every
/// level; a new record version adds a row here with the level that introduces it.
const RECORD_VERSIONS: &[(RecordType, u16, i16)] = &[
    (RecordType::RegisterBroker, 0, MINIMUM_LEVEL),
    (RecordType::UnregisterBroker, 0, MINIMUM_LEVEL),
    (RecordType::Topic, 0, MINIMUM_LEVEL),
    (RecordType::Partition, 0, MINIMUM_LEVEL),
    (RecordType::Config, 0, MINIMUM_LEVEL),
    (RecordType::PartitionChange, 0, MINIMUM_LEVEL),
    (RecordType::RemoveTopic, 0, MINIMUM_LEVEL),
    (RecordType::FeatureLevel, 0, MINIMUM_LEVEL),
    (RecordType::ProducerIds, 0, MINIMUM_LEVEL),
    (RecordType::BrokerFencing, 0, MINIMUM_LEVEL),
    (RecordType::ClientQuota, 0, MINIMUM_LEVEL),
    (RecordType::AccessControlEntry, 0, MINIMUM_LEVEL),
    (RecordType::RemoveAccessControlEntry, 0, MINIMUM_LEVEL),
    (RecordType::UserScramCredential, 0, MINIMUM_LEVEL),
    (RecordType::RemoveUserScramCredential, 0, MINIMUM_LEVEL),
];

/// The newest version of `record_type` that may be written at `metadata.version` `level`;
/// `None` when the level is outside what this code knows or the type is not writable there.
pub fn max_record_version(level: i16, record_type: RecordType) -> Option<u16> {
    if !(MINIMUM_LEVEL..=LATEST_LEVEL).contains(&level) {
        return None;
    }
    RECORD_VERSIONS
        .iter()
        .filter(|(t, _, first)| *t == record_type && *first <= level)
        .map(|(_, v, _)| *v)
        .max()
}

/// The level to gate records by, given the finalized `metadata.version` of the image they
/// will be applied to: before one is finalized (a new cluster's first records) the lowest
/// level, so that nothing is written that an old node could not read.
pub fn effective_level(finalized: Option<i16>) -> i16 {
    finalized.unwrap_or(MINIMUM_LEVEL)
}

/// Encodes `records`, to be appended in this order to an image whose finalized
/// `metadata.version` is `finalized`, each at the newest version the level in force at its
/// position allows: a `FeatureLevelRecord` for `metadata.version` in the batch changes the
/// level for the records after it (it is itself gated by the level before it, as Kafka
/// writes an upgrade's FeatureLevelRecord so that nodes at the old level can read it).
/// Refuses the whole batch if any record is not allowed.
pub fn encode_gated(
    records: &[MetadataRecord],
    finalized: Option<i16>,
) -> Result<Vec<Vec<u8>>, RecordError> {
    let mut level = effective_level(finalized);
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        out.push(r.encode_for(level)?);
        if let MetadataRecord::FeatureLevel { name, level: l } = r {
            if name == FEATURE_NAME {
                level = *l;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_gated_by_the_level_in_force_at_each_record() {
        let topic = MetadataRecord::Topic {
            name: "t".into(),
            topic_id: uuid::Uuid::nil(),
        };
        let set = |level| MetadataRecord::FeatureLevel {
            name: FEATURE_NAME.into(),
            level,
        };
        // Bootstrap: nothing finalized yet, the level record first, then records under it.
        let ok = encode_gated(&[set(LATEST_LEVEL), topic.clone()], None).expect("allowed");
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1], topic.encode());
        // A level this code does not know allows nothing.
        assert_eq!(
            encode_gated(std::slice::from_ref(&topic), Some(LATEST_LEVEL + 1)),
            Err(RecordError::NotAllowed {
                record_type: RecordType::Topic,
                version: 0,
                metadata_version: LATEST_LEVEL + 1,
                allowed: None
            })
        );
        // Moving the level below what the batch's later records need refuses them.
        assert!(encode_gated(&[set(0), topic.clone()], Some(LATEST_LEVEL)).is_err());
        assert!(encode_gated(&[set(0)], Some(LATEST_LEVEL)).is_ok());
    }

    #[test]
    fn every_type_is_writable_at_every_known_level_at_version_0() {
        for t in RecordType::ALL {
            for level in MINIMUM_LEVEL..=LATEST_LEVEL {
                assert_eq!(max_record_version(level, t), Some(0), "{t} at {level}");
            }
            assert!(
                RECORD_VERSIONS
                    .iter()
                    .filter(|(rt, _, _)| *rt == t)
                    .all(|(_, v, _)| *v <= t.latest_version()),
                "the table allows a version of {t} this code cannot write"
            );
            assert_eq!(max_record_version(MINIMUM_LEVEL - 1, t), None);
            assert_eq!(max_record_version(LATEST_LEVEL + 1, t), None);
        }
    }
}
