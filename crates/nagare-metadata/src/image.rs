//! The immutable metadata image: the state obtained by applying every committed metadata
//! record in order. Readers hold an `Arc<MetadataImage>`; a change builds a new image.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use uuid::Uuid;

use crate::records::{ConfigResource, Endpoint, MetadataRecord};

/// A registered broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerRegistration {
    /// Node id.
    pub id: i32,
    /// Broker epoch.
    pub epoch: i64,
    /// Unique per process start: a re-registration with the same one is a retry.
    pub incarnation_id: Uuid,
    /// Advertised listeners.
    pub endpoints: Vec<Endpoint>,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are left out of Metadata responses.
    pub fenced: bool,
}

/// One partition's replica assignment and leadership.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRegistration {
    /// Replica broker ids.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader, -1 if none.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

/// A topic and its partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicImage {
    /// Name.
    pub name: String,
    /// Topic id.
    pub id: Uuid,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionRegistration>,
}

/// The whole metadata state at one offset of the metadata log.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Offset of the last record applied (-1 for the empty image).
    pub offset: i64,
    /// Registered brokers by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by id (each behind an `Arc` so building a new image copies pointers only).
    pub topics_by_id: HashMap<Uuid, Arc<TopicImage>>,
    /// Topic ids by name.
    pub topic_ids: HashMap<String, Uuid>,
    /// Config overrides per resource.
    pub configs: HashMap<(ConfigResource, String), BTreeMap<String, String>>,
    /// First producer id not yet allocated.
    pub next_producer_id: i64,
    /// Finalized feature levels.
    pub features: BTreeMap<String, i16>,
    /// Client quotas (behind an `Arc`: brokers compare pointers to see whether they changed).
    pub client_quotas: Arc<crate::client_quotas::ClientQuotasImage>,
    /// ACLs (behind an `Arc`: copied only when an ACL record changes them, and held by the
    /// authorizer without holding the image).
    pub acls: Arc<crate::acls::AclImage>,
    /// Users' SCRAM credentials.
    pub scram: crate::scram::ScramImage,
}

impl MetadataImage {
    /// The empty image, before any record.
    pub fn empty() -> Self {
        MetadataImage {
            offset: -1,
            ..Default::default()
        }
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topic_ids
            .get(name)
            .and_then(|id| self.topics_by_id.get(id))
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&Arc<TopicImage>> {
        self.topics_by_id.get(id)
    }

    /// Config overrides of a resource (empty when none).
    pub fn config_overrides(
        &self,
        resource: ConfigResource,
        name: &str,
    ) -> BTreeMap<String, String> {
        self.configs
            .get(&(resource, name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// All topic names, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.topic_ids.keys().cloned().collect();
        v.sort();
        v
    }

    /// Applies one record at `offset`. Records that refer to unknown topics are ignored with
    /// a log line: the controller never writes them, so they can only come from a bug.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) {
        self.offset = offset;
        match record {
            MetadataRecord::RegisterBroker {
                broker_id,
                broker_epoch,
                incarnation_id,
                endpoints,
                rack,
                fenced,
            } => {
                self.brokers.insert(
                    *broker_id,
                    BrokerRegistration {
                        id: *broker_id,
                        epoch: *broker_epoch,
                        incarnation_id: *incarnation_id,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        fenced: *fenced,
                    },
                );
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                // Kafka's ClusterControlManager.replay: only the registration of that epoch.
                if self
                    .brokers
                    .get(broker_id)
                    .is_some_and(|b| b.epoch == *broker_epoch)
                {
                    self.brokers.remove(broker_id);
                }
            }
            MetadataRecord::BrokerFencing { broker_id, fenced } => {
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.fenced = *fenced;
                }
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_ids.insert(name.clone(), *topic_id);
                self.topics_by_id.insert(
                    *topic_id,
                    Arc::new(TopicImage {
                        name: name.clone(),
                        id: *topic_id,
                        partitions: BTreeMap::new(),
                    }),
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition_id,
                replicas,
                isr,
                leader,
                leader_epoch,
                partition_epoch,
            } => match self.topics_by_id.get_mut(topic_id) {
                Some(t) => {
                    Arc::make_mut(t).partitions.insert(
                        *partition_id,
                        PartitionRegistration {
                            replicas: replicas.clone(),
                            isr: isr.clone(),
                            leader: *leader,
                            leader_epoch: *leader_epoch,
                            partition_epoch: *partition_epoch,
                        },
                    );
                }
                None => tracing::warn!(%topic_id, offset, "PartitionRecord for unknown topic"),
            },
            MetadataRecord::PartitionChange {
                topic_id,
                partition_id,
                leader,
                isr,
                replicas,
            } => {
                let Some(t) = self.topics_by_id.get_mut(topic_id) else {
                    tracing::warn!(%topic_id, offset, "PartitionChangeRecord for unknown topic");
                    return;
                };
                let t = Arc::make_mut(t);
                let Some(p) = t.partitions.get_mut(partition_id) else {
                    return;
                };
                if let Some(l) = leader {
                    p.leader = *l;
                    p.leader_epoch += 1;
                }
                if let Some(i) = isr {
                    p.isr = i.clone();
                }
                if let Some(r) = replicas {
                    p.replicas = r.clone();
                }
                p.partition_epoch += 1;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(t) = self.topics_by_id.remove(topic_id) {
                    self.topic_ids.remove(&t.name);
                    self.configs
                        .remove(&(ConfigResource::Topic, t.name.clone()));
                }
            }
            MetadataRecord::Config {
                resource,
                resource_name,
                name,
                value,
            } => {
                let entry = self
                    .configs
                    .entry((*resource, resource_name.clone()))
                    .or_default();
                match value {
                    Some(v) => {
                        entry.insert(name.clone(), v.clone());
                    }
                    None => {
                        entry.remove(name);
                    }
                }
            }
            MetadataRecord::ProducerIds {
                next_producer_id, ..
            } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            // Level 0 means "not finalized" (Kafka's FeaturesDelta removes the feature), so
            // a snapshot never carries it and ApiVersions does not report it.
            MetadataRecord::FeatureLevel { name, level } => {
                if *level == 0 {
                    self.features.remove(name);
                } else {
                    self.features.insert(name.clone(), *level);
                }
            }
            MetadataRecord::ClientQuota {
                entity,
                key,
                value,
                remove,
            } => {
                let entity = crate::client_quotas::QuotaEntity::new(entity.clone());
                Arc::make_mut(&mut self.client_quotas).apply(&entity, key, *value, *remove);
            }
            MetadataRecord::AccessControlEntry {
                id,
                resource_type,
                resource_name,
                pattern_type,
                principal,
                host,
                operation,
                permission_type,
            } => {
                Arc::make_mut(&mut self.acls).add(
                    *id,
                    crate::acls::StandardAcl {
                        resource_type: *resource_type,
                        resource_name: resource_name.clone(),
                        pattern_type: *pattern_type,
                        principal: principal.clone(),
                        host: host.clone(),
                        operation: *operation,
                        permission_type: *permission_type,
                    },
                );
            }
            MetadataRecord::RemoveAccessControlEntry { id } => {
                if Arc::make_mut(&mut self.acls).remove(id).is_none() {
                    tracing::warn!(%id, offset, "RemoveAccessControlEntryRecord for an unknown ACL");
                }
            }
            MetadataRecord::UserScramCredential { .. }
            | MetadataRecord::RemoveUserScramCredential { .. } => {
                self.scram.apply(record);
            }
        }
    }
}

impl MetadataImage {
    /// The records that rebuild this image from the empty one: the content of a metadata
    /// snapshot (KIP-630). Applying them in order to [`MetadataImage::empty`] gives an image
    /// equal to `self` (but for `offset`, which the snapshot's end offset sets).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut out = Vec::new();
        for (name, level) in &self.features {
            out.push(MetadataRecord::FeatureLevel {
                name: name.clone(),
                level: *level,
            });
        }
        for b in self.brokers.values() {
            out.push(MetadataRecord::RegisterBroker {
                broker_id: b.id,
                broker_epoch: b.epoch,
                incarnation_id: b.incarnation_id,
                endpoints: b.endpoints.clone(),
                rack: b.rack.clone(),
                fenced: b.fenced,
            });
        }
        // Sorted, so that two nodes snapshotting the same image write the same bytes.
        let mut topics: Vec<&Arc<TopicImage>> = self.topics_by_id.values().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        for t in topics {
            out.push(MetadataRecord::Topic {
                name: t.name.clone(),
                topic_id: t.id,
            });
            for (pid, p) in &t.partitions {
                out.push(MetadataRecord::Partition {
                    topic_id: t.id,
                    partition_id: *pid,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                });
            }
        }
        let mut configs: Vec<_> = self.configs.iter().collect();
        configs.sort_by(|a, b| a.0.cmp(b.0));
        for ((resource, resource_name), values) in configs {
            for (name, value) in values {
                out.push(MetadataRecord::Config {
                    resource: *resource,
                    resource_name: resource_name.clone(),
                    name: name.clone(),
                    value: Some(value.clone()),
                });
            }
        }
        out.extend(self.scram.to_records());
        if self.next_producer_id > 0 {
            out.push(MetadataRecord::ProducerIds {
                broker_id: -1,
                next_producer_id: self.next_producer_id,
            });
        }
        out.extend(self.client_quotas.to_records());
        out.extend(self.acls.to_records());
        out
    }

    /// Rebuilds an image from snapshot records (see [`MetadataImage::to_records`]) whose
    /// last included offset is `offset`.
    pub fn from_records<'a>(
        offset: i64,
        records: impl IntoIterator<Item = &'a MetadataRecord>,
    ) -> MetadataImage {
        let mut img = MetadataImage::empty();
        for r in records {
            img.apply(offset, r);
        }
        img.offset = offset;
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_lifecycle() {
        let mut img = MetadataImage::empty();
        let id = Uuid::from_bytes([3; 16]);
        img.apply(
            0,
            &MetadataRecord::Topic {
                name: "a".into(),
                topic_id: id,
            },
        );
        img.apply(
            1,
            &MetadataRecord::Partition {
                topic_id: id,
                partition_id: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
        );
        let before = img.clone();
        img.apply(
            2,
            &MetadataRecord::PartitionChange {
                topic_id: id,
                partition_id: 0,
                leader: Some(2),
                isr: None,
                replicas: None,
            },
        );
        // The old image is untouched: topics are copy-on-write.
        assert_eq!(before.topic("a").map(|t| t.partitions[&0].leader), Some(1));
        let p = &img.topic("a").map(|t| t.partitions[&0].clone());
        assert_eq!(
            p.as_ref()
                .map(|p| (p.leader, p.leader_epoch, p.partition_epoch)),
            Some((2, 1, 1))
        );
        img.apply(
            3,
            &MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "a".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
        );
        assert_eq!(img.config_overrides(ConfigResource::Topic, "a").len(), 1);
        img.apply(4, &MetadataRecord::RemoveTopic { topic_id: id });
        assert!(img.topic("a").is_none());
        assert!(img.config_overrides(ConfigResource::Topic, "a").is_empty());
        assert_eq!(img.offset, 4);
    }

    /// A FeatureLevelRecord at level 0 un-finalizes the feature, as Kafka's FeaturesDelta.
    #[test]
    fn feature_level_zero_removes_the_feature() {
        let mut img = MetadataImage::empty();
        let tv = |level| MetadataRecord::FeatureLevel {
            name: crate::features::TRANSACTION_VERSION.into(),
            level,
        };
        img.apply(0, &tv(2));
        assert_eq!(crate::features::transaction_version(&img.features), 2);
        img.apply(1, &tv(0));
        assert!(!img
            .features
            .contains_key(crate::features::TRANSACTION_VERSION));
        assert_eq!(crate::features::transaction_version(&img.features), 0);
        assert!(img.to_records().is_empty());
    }

    #[test]
    fn snapshot_records_rebuild_the_image() {
        let mut img = MetadataImage::empty();
        let recs = [
            MetadataRecord::FeatureLevel {
                name: "metadata.version".into(),
                level: 27,
            },
            MetadataRecord::FeatureLevel {
                name: crate::features::TRANSACTION_VERSION.into(),
                level: 2,
            },
            MetadataRecord::RegisterBroker {
                broker_id: 1,
                broker_epoch: 1,
                incarnation_id: Uuid::from_bytes([9; 16]),
                endpoints: vec![],
                rack: Some("r1".into()),
                fenced: false,
            },
            MetadataRecord::Topic {
                name: "t".into(),
                topic_id: Uuid::from_bytes([1; 16]),
            },
            MetadataRecord::Partition {
                topic_id: Uuid::from_bytes([1; 16]),
                partition_id: 0,
                replicas: vec![1],
                isr: vec![1],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            },
            MetadataRecord::PartitionChange {
                topic_id: Uuid::from_bytes([1; 16]),
                partition_id: 0,
                leader: Some(1),
                isr: None,
                replicas: None,
            },
            MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "t".into(),
                name: "retention.ms".into(),
                value: Some("5".into()),
            },
            MetadataRecord::ProducerIds {
                broker_id: 1,
                next_producer_id: 1000,
            },
            MetadataRecord::ClientQuota {
                entity: vec![crate::client_quotas::EntityComponent::default_of(
                    "client-id",
                )],
                key: "producer_byte_rate".into(),
                value: 5e6,
                remove: false,
            },
            MetadataRecord::AccessControlEntry {
                id: Uuid::from_bytes([5; 16]),
                resource_type: 2,
                resource_name: "t".into(),
                pattern_type: 4,
                principal: "User:alice".into(),
                host: "*".into(),
                operation: 3,
                permission_type: 3,
            },
            MetadataRecord::AccessControlEntry {
                id: Uuid::from_bytes([6; 16]),
                resource_type: 3,
                resource_name: "g".into(),
                pattern_type: 3,
                principal: "User:bob".into(),
                host: "10.0.0.1".into(),
                operation: 3,
                permission_type: 2,
            },
            MetadataRecord::RemoveAccessControlEntry {
                id: Uuid::from_bytes([6; 16]),
            },
        ];
        for (i, r) in recs.iter().enumerate() {
            img.apply(i as i64, r);
        }
        let snap = img.to_records();
        let rebuilt = MetadataImage::from_records(img.offset, &snap);
        assert_eq!(rebuilt.to_records(), snap);
        assert_eq!(rebuilt.client_quotas, img.client_quotas);
        assert_eq!(rebuilt.client_quotas.entities.len(), 1);
        assert_eq!(rebuilt.offset, 11);
        // ACLs survive a snapshot, the removed one stays removed.
        assert_eq!(rebuilt.acls, img.acls);
        assert_eq!(rebuilt.acls.len(), 1);
        assert_eq!(rebuilt.acls.applicable(2, "topic").count(), 1);
        assert_eq!(rebuilt.next_producer_id, 1000);
        // The finalized transaction.version survives a snapshot (KIP-1022).
        assert_eq!(crate::features::transaction_version(&rebuilt.features), 2);
        let p = &rebuilt.topic("t").map(|t| t.partitions[&0].clone());
        assert_eq!(p.as_ref().map(|p| p.leader_epoch), Some(1));
        assert_eq!(rebuilt.brokers[&1].rack.as_deref(), Some("r1"));
    }
}
