//! What changed between two images (Kafka's `MetadataDelta`), handed to image listeners with
//! the new image so that they act only on what changed: a broker with 10,000 partitions must
//! not walk them all because one topic's config changed.
//!
//! The delta is computed by comparing the two images. That is cheap because images share
//! structure: a new image copies the old one's `Arc<TopicImage>` pointers and replaces only
//! the topics a record touched, so unchanged topics are skipped by a pointer comparison.
//! Comparing images (rather than collecting changes while replaying records) also gives the
//! right delta for a snapshot load and for a listener that starts from the empty image.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use crate::image::{BrokerRegistration, MetadataImage, PartitionRegistration};
use crate::records::ConfigResource;

/// One partition that was created, changed or removed.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionDelta {
    /// The topic's id.
    pub topic_id: Uuid,
    /// The topic's name.
    pub topic_name: String,
    /// The partition index.
    pub partition: i32,
    /// The registration before (`None`: the partition is new).
    pub old: Option<PartitionRegistration>,
    /// The registration after (`None`: the partition, with its topic, is gone).
    pub new: Option<PartitionRegistration>,
}

/// One broker whose registration changed (registered, fenced or unfenced).
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerDelta {
    /// The registration before, if any.
    pub old: Option<BrokerRegistration>,
    /// The registration after, if any.
    pub new: Option<BrokerRegistration>,
}

/// The changes from one image to the next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataDelta {
    /// Offset of the previous image (-1 for the empty one).
    pub old_offset: i64,
    /// Offset of the new image.
    pub new_offset: i64,
    /// Topics that exist now and did not before (id, name).
    pub created_topics: Vec<(Uuid, String)>,
    /// Topics that existed before and do not now (id, name).
    pub deleted_topics: Vec<(Uuid, String)>,
    /// Every partition created, changed or removed (those of created and deleted topics
    /// included), sorted by topic name and partition.
    pub partitions: Vec<PartitionDelta>,
    /// Brokers whose registration changed, by id.
    pub brokers: BTreeMap<i32, BrokerDelta>,
    /// Config resources whose overrides changed.
    pub configs: BTreeSet<(ConfigResource, String)>,
    /// Features whose finalized level changed: name → (old, new).
    pub features: BTreeMap<String, (Option<i16>, Option<i16>)>,
    /// Whether the next producer id moved.
    pub producer_ids_changed: bool,
}

impl MetadataDelta {
    /// The changes from `old` to `new`.
    pub fn between(old: &MetadataImage, new: &MetadataImage) -> MetadataDelta {
        let mut d = MetadataDelta {
            old_offset: old.offset,
            new_offset: new.offset,
            producer_ids_changed: old.next_producer_id != new.next_producer_id,
            ..Default::default()
        };
        for (id, t) in &new.topics_by_id {
            let before = old.topics_by_id.get(id);
            if before.is_some_and(|b| Arc::ptr_eq(b, t)) {
                continue;
            }
            if before.is_none() {
                d.created_topics.push((*id, t.name.clone()));
            }
            let empty = BTreeMap::new();
            let old_parts = before.map(|b| &b.partitions).unwrap_or(&empty);
            for (p, reg) in &t.partitions {
                let prev = old_parts.get(p);
                if prev != Some(reg) {
                    d.partitions.push(PartitionDelta {
                        topic_id: *id,
                        topic_name: t.name.clone(),
                        partition: *p,
                        old: prev.cloned(),
                        new: Some(reg.clone()),
                    });
                }
            }
            for (p, reg) in old_parts {
                if !t.partitions.contains_key(p) {
                    d.partitions.push(PartitionDelta {
                        topic_id: *id,
                        topic_name: t.name.clone(),
                        partition: *p,
                        old: Some(reg.clone()),
                        new: None,
                    });
                }
            }
        }
        for (id, t) in &old.topics_by_id {
            if new.topics_by_id.contains_key(id) {
                continue;
            }
            d.deleted_topics.push((*id, t.name.clone()));
            for (p, reg) in &t.partitions {
                d.partitions.push(PartitionDelta {
                    topic_id: *id,
                    topic_name: t.name.clone(),
                    partition: *p,
                    old: Some(reg.clone()),
                    new: None,
                });
            }
        }
        d.created_topics.sort_by(|a, b| a.1.cmp(&b.1));
        d.deleted_topics.sort_by(|a, b| a.1.cmp(&b.1));
        // Removals first within a name, so that a topic deleted and re-created under the
        // same name is seen going before it comes back.
        d.partitions.sort_by(|a, b| {
            (&a.topic_name, a.partition, a.new.is_some()).cmp(&(
                &b.topic_name,
                b.partition,
                b.new.is_some(),
            ))
        });
        let broker_ids: BTreeSet<i32> = old
            .brokers
            .keys()
            .chain(new.brokers.keys())
            .copied()
            .collect();
        for id in broker_ids {
            let (o, n) = (old.brokers.get(&id), new.brokers.get(&id));
            if o != n {
                d.brokers.insert(
                    id,
                    BrokerDelta {
                        old: o.cloned(),
                        new: n.cloned(),
                    },
                );
            }
        }
        // An emptied override map counts as no overrides.
        let overrides = |img: &MetadataImage, k: &(ConfigResource, String)| {
            img.configs.get(k).filter(|m| !m.is_empty()).cloned()
        };
        let config_keys: BTreeSet<&(ConfigResource, String)> =
            old.configs.keys().chain(new.configs.keys()).collect();
        for k in config_keys {
            if overrides(old, k) != overrides(new, k) {
                d.configs.insert(k.clone());
            }
        }
        let names: BTreeSet<&String> = old.features.keys().chain(new.features.keys()).collect();
        for name in names {
            let (o, n) = (
                old.features.get(name).copied(),
                new.features.get(name).copied(),
            );
            if o != n {
                d.features.insert(name.clone(), (o, n));
            }
        }
        d
    }

    /// Whether nothing but the offset changed.
    pub fn is_empty(&self) -> bool {
        self.created_topics.is_empty()
            && self.deleted_topics.is_empty()
            && self.partitions.is_empty()
            && self.brokers.is_empty()
            && self.configs.is_empty()
            && self.features.is_empty()
            && !self.producer_ids_changed
    }

    /// Whether the topics' overrides of `topic` changed.
    pub fn topic_config_changed(&self, topic: &str) -> bool {
        self.configs
            .contains(&(ConfigResource::Topic, topic.to_string()))
    }

    /// The changed partitions of the topic named `name`.
    pub fn partitions_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a PartitionDelta> {
        self.partitions.iter().filter(move |p| p.topic_name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::MetadataRecord;

    fn apply(img: &MetadataImage, offset: i64, records: &[MetadataRecord]) -> MetadataImage {
        let mut next = img.clone();
        for r in records {
            next.apply(offset, r);
        }
        next
    }

    fn partition(id: Uuid, p: i32, replicas: Vec<i32>) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: id,
            partition_id: p,
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    #[test]
    fn delta_lists_exactly_what_changed() {
        let (a, b) = (Uuid::from_bytes([1; 16]), Uuid::from_bytes([2; 16]));
        let base = apply(
            &MetadataImage::empty(),
            0,
            &[
                MetadataRecord::FeatureLevel {
                    name: "metadata.version".into(),
                    level: 27,
                },
                MetadataRecord::RegisterBroker {
                    broker_id: 1,
                    broker_epoch: 0,
                    incarnation_id: Uuid::nil(),
                    endpoints: vec![],
                    rack: None,
                    fenced: true,
                },
                MetadataRecord::Topic {
                    name: "a".into(),
                    topic_id: a,
                },
                partition(a, 0, vec![1]),
                partition(a, 1, vec![1]),
            ],
        );
        let full = MetadataDelta::between(&MetadataImage::empty(), &base);
        assert_eq!(full.created_topics, vec![(a, "a".to_string())]);
        assert_eq!(full.partitions.len(), 2);
        assert!(full.partitions.iter().all(|p| p.old.is_none()));
        assert_eq!(full.brokers.len(), 1);
        assert_eq!(
            full.features.get("metadata.version"),
            Some(&(None, Some(27)))
        );

        let next = apply(
            &base,
            5,
            &[
                MetadataRecord::PartitionChange {
                    topic_id: a,
                    partition_id: 1,
                    leader: Some(1),
                    isr: None,
                    replicas: None,
                },
                MetadataRecord::BrokerFencing {
                    broker_id: 1,
                    fenced: false,
                },
                MetadataRecord::Topic {
                    name: "b".into(),
                    topic_id: b,
                },
                partition(b, 0, vec![1]),
                MetadataRecord::Config {
                    resource: ConfigResource::Topic,
                    resource_name: "a".into(),
                    name: "retention.ms".into(),
                    value: Some("1".into()),
                },
            ],
        );
        let d = MetadataDelta::between(&base, &next);
        assert_eq!((d.old_offset, d.new_offset), (0, 5));
        assert_eq!(d.created_topics, vec![(b, "b".to_string())]);
        assert!(d.deleted_topics.is_empty());
        let changed: Vec<(&str, i32)> = d
            .partitions
            .iter()
            .map(|p| (p.topic_name.as_str(), p.partition))
            .collect();
        assert_eq!(changed, vec![("a", 1), ("b", 0)], "a-0 did not change");
        let a1 = &d.partitions[0];
        assert_eq!(a1.old.as_ref().map(|r| r.leader_epoch), Some(0));
        assert_eq!(a1.new.as_ref().map(|r| r.leader_epoch), Some(1));
        assert_eq!(d.brokers[&1].new.as_ref().map(|b| b.fenced), Some(false));
        assert!(d.topic_config_changed("a"));
        assert!(!d.topic_config_changed("b"));
        assert!(d.features.is_empty());

        let deleted = apply(&next, 6, &[MetadataRecord::RemoveTopic { topic_id: a }]);
        let d = MetadataDelta::between(&next, &deleted);
        assert_eq!(d.deleted_topics, vec![(a, "a".to_string())]);
        assert_eq!(d.partitions.len(), 2);
        assert!(d
            .partitions
            .iter()
            .all(|p| p.new.is_none() && p.topic_id == a));
        // The topic's overrides went with it.
        assert!(d.topic_config_changed("a"));
        assert!(MetadataDelta::between(&deleted, &deleted).is_empty());
    }
}
