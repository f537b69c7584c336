//! How the replica manager follows the metadata (Kafka's `ReplicaManager.applyDelta`): each
//! published [`MetadataDelta`] creates, updates or deletes the partitions this broker
//! replicates — only those the delta names, so one topic's change does not walk every
//! hosted partition.
//!
//! Lock discipline: produce and fetch look partitions up under the `partitions` read lock,
//! so that lock is never held across file-system work. Creating a log (directories, files,
//! fsyncs) and deleting one (a large topic's segments) happen outside it; the write lock is
//! taken only to insert or remove `Partition` entries, briefly. A removed partition leaves the
//! map before its directory is deleted; a created one is fully set up (log open, leader state
//! installed) before it enters the map. Deltas are applied one at a time (`meta` lock).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nagare_metadata::records::ConfigResource;
use nagare_metadata::topic_config::TopicDefaults;
use nagare_metadata::{MetadataDelta, MetadataImage, PartitionRegistration, Uuid};
use nagare_storage::TopicPartition;

use super::{now_ms, Partition, ReplicaManager};

/// What the replica manager remembers between deltas.
#[derive(Default)]
pub(super) struct ApplyState {
    /// Whether on-disk logs the metadata lacks were looked for. That is done once, from the
    /// first image at or past the stray floor: afterwards every log is created and deleted
    /// here, by deltas, and cannot become stray.
    strays_checked: bool,
    /// The image of the last [`ReplicaManager::apply_image`] (tests apply whole images;
    /// the default's offset 0 rather than -1 only shows in the first delta's `old_offset`).
    #[cfg(test)]
    last_image: MetadataImage,
}

/// What one delta means for one partition hosted (or to be hosted) here.
enum Action {
    /// No longer replicated here (topic deleted, or reassigned away): delete the log.
    Remove(Arc<Partition>),
    /// Newly replicated here.
    Create(Uuid, PartitionRegistration),
    /// Still replicated here; new registration when the delta changed it.
    Update(Arc<Partition>, Option<PartitionRegistration>),
}

impl ReplicaManager {
    /// Applies the changes of `delta`, whose result is `image`: creates logs for partitions
    /// newly replicated here, updates the epochs, roles and configs of changed ones, deletes
    /// the logs of partitions no longer here; and, once, deletes on-disk logs the metadata
    /// does not have (see [`ReplicaManager::delete_strays_from`]). `defaults` are the
    /// broker-level topic defaults in force at `image`.
    pub fn apply_delta(
        &self,
        delta: &MetadataDelta,
        image: &MetadataImage,
        defaults: &TopicDefaults,
    ) {
        let mut state = self.meta.lock();
        let now = now_ms();
        let me = self.node_id;
        // Broker-level config changes may change the defaults of every topic.
        let node = me.to_string();
        let defaults_changed = delta
            .configs
            .iter()
            .any(|(r, name)| *r == ConfigResource::Broker && (name.is_empty() || *name == node));
        // Every partition to look at, and whether the delta changed its registration.
        let mut registrations: BTreeMap<TopicPartition, bool> = BTreeMap::new();
        for p in &delta.partitions {
            registrations.insert(TopicPartition::new(&p.topic_name, p.partition), true);
        }
        // Partitions whose registration did not change but whose topic config did.
        let config_topics: BTreeSet<&str> = if defaults_changed {
            BTreeSet::new()
        } else {
            delta
                .configs
                .iter()
                .filter(|(r, _)| *r == ConfigResource::Topic)
                .map(|(_, name)| name.as_str())
                .collect()
        };
        for name in &config_topics {
            if let Some(t) = image.topic(name) {
                for p in t.partitions.keys() {
                    registrations
                        .entry(TopicPartition::new(*name, *p))
                        .or_insert(false);
                }
            }
        }
        let wanted = |tp: &TopicPartition| {
            image.topic(&tp.topic).and_then(|t| {
                t.partitions
                    .get(&tp.partition)
                    .filter(|r| r.replicas.contains(&me))
                    .map(|r| (t.id, r.clone()))
            })
        };
        // Decide under the read lock (produce and fetch go on).
        let mut actions: Vec<(TopicPartition, Action)> = Vec::new();
        let mut config_updates: Vec<Arc<Partition>> = Vec::new();
        {
            let parts = self.partitions.read();
            if defaults_changed {
                config_updates.extend(
                    parts
                        .iter()
                        .filter(|(tp, _)| !registrations.contains_key(*tp))
                        .map(|(_, p)| p.clone()),
                );
            }
            for (tp, in_delta) in &registrations {
                let in_delta = *in_delta;
                match (wanted(tp), parts.get(tp)) {
                    (None, Some(p)) => actions.push((tp.clone(), Action::Remove(p.clone()))),
                    (Some((id, reg)), Some(p)) if p.topic_id == id => actions.push((
                        tp.clone(),
                        Action::Update(p.clone(), in_delta.then_some(reg)),
                    )),
                    (Some((id, reg)), Some(p)) => {
                        // The topic was deleted and re-created under the same name: the old
                        // incarnation's log goes first.
                        actions.push((tp.clone(), Action::Remove(p.clone())));
                        actions.push((tp.clone(), Action::Create(id, reg)));
                    }
                    (Some((id, reg)), None) => actions.push((tp.clone(), Action::Create(id, reg))),
                    (None, None) => {}
                }
            }
        }
        // The replica fetchers re-read whom they follow (and reconnect to re-registered
        // brokers) when roles or brokers change; a config-only delta leaves them alone.
        let roles_changed = !delta.brokers.is_empty()
            || actions
                .iter()
                .any(|(_, a)| !matches!(a, Action::Update(_, None)));
        let topic_config = |topic: &str| {
            let overrides = image.config_overrides(ConfigResource::Topic, topic);
            let min_isr = defaults
                .value(&overrides, "min.insync.replicas")
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(1);
            (
                defaults.log_config(&overrides),
                min_isr,
                defaults.is_tiered(&overrides),
            )
        };

        // Removals: out of the map under a brief write lock, then the directories deleted
        // without any lock held.
        let removing = actions.iter().any(|(_, a)| matches!(a, Action::Remove(_)));
        let removed: Vec<TopicPartition> = if !removing {
            Vec::new()
        } else {
            let mut parts = self.partitions.write();
            actions
                .iter()
                .filter_map(|(tp, a)| match a {
                    Action::Remove(p) => {
                        if parts.get(tp).is_some_and(|cur| Arc::ptr_eq(cur, p)) {
                            parts.remove(tp);
                        }
                        Some(tp.clone())
                    }
                    _ => None,
                })
                .collect()
        };
        for tp in &removed {
            if let Err(e) = self.logs.remove(tp) {
                tracing::error!(%tp, error = %e, "failed to delete partition log");
            } else {
                tracing::info!(%tp, "deleted partition log");
            }
        }

        // Creations and updates, without the lock: a new partition is set up completely
        // (log open, leader state installed) before it enters the map.
        let mut configs: HashMap<String, (nagare_storage::LogConfig, i32, bool)> = HashMap::new();
        for (tp, action) in actions {
            let (config, min_isr, tiered) = configs
                .entry(tp.topic.clone())
                .or_insert_with(|| topic_config(&tp.topic))
                .clone();
            match action {
                Action::Remove(_) => {}
                Action::Update(p, reg) => {
                    p.tier.set_enabled(tiered);
                    p.log.update_config(config);
                    p.min_isr.store(min_isr, Ordering::Release);
                    if let Some(reg) = reg {
                        p.apply_registration(me, &reg, now);
                    }
                }
                Action::Create(topic_id, reg) => {
                    match self.logs.get_or_create(&tp, config.clone(), now) {
                        Ok(log) => {
                            log.update_config(config);
                            let hw = self.checkpointed_hws.lock().remove(&tp);
                            let p = Arc::new(Partition::new(
                                tp.clone(),
                                topic_id,
                                log,
                                reg.leader_epoch,
                                reg.leader,
                                hw,
                                self.topic_stats.topic(&tp.topic),
                            ));
                            p.min_isr.store(min_isr, Ordering::Release);
                            p.tier.set_enabled(tiered);
                            p.apply_registration(me, &reg, now);
                            // Visible at once, not after the rest of the delta: a client told
                            // its topic exists may produce to it right away.
                            self.partitions.write().insert(tp, p);
                        }
                        Err(e) => tracing::error!(%tp, error = %e, "cannot open partition log"),
                    }
                }
            }
        }
        for p in config_updates {
            let (config, min_isr, tiered) = configs
                .entry(p.tp.topic.clone())
                .or_insert_with(|| topic_config(&p.tp.topic))
                .clone();
            p.tier.set_enabled(tiered);
            p.log.update_config(config);
            p.min_isr.store(min_isr, Ordering::Release);
        }

        for (_, name) in &delta.deleted_topics {
            self.topic_stats.remove(name);
        }
        // Topic ids of the topics with a partition replicated here (Fetch v13+ names).
        let touched: BTreeSet<Uuid> = delta
            .partitions
            .iter()
            .map(|p| p.topic_id)
            .chain(delta.deleted_topics.iter().map(|(id, _)| *id))
            .collect();
        if !touched.is_empty() {
            let mut by_id = self.by_id.write();
            for id in touched {
                match image.topic_by_id(&id) {
                    Some(t) if t.partitions.values().any(|r| r.replicas.contains(&me)) => {
                        by_id.insert(id, t.name.clone());
                    }
                    _ => {
                        by_id.remove(&id);
                    }
                }
            }
        }

        // On-disk logs no longer in metadata (deleted while we were down). Never from an empty
        // image (nothing applied yet, e.g. a restart whose metadata replay has not reached
        // the publisher) nor from a partial one: every log would look stray and be deleted
        // with its data.
        if !state.strays_checked
            && image.offset >= 0
            && image.offset >= self.stray_floor.load(Ordering::Acquire)
        {
            state.strays_checked = true;
            let strays: Vec<TopicPartition> = {
                let parts = self.partitions.read();
                self.logs
                    .all()
                    .into_iter()
                    .map(|(tp, _)| tp)
                    .filter(|tp| wanted(tp).is_none() && !parts.contains_key(tp))
                    .collect()
            };
            for tp in strays {
                tracing::info!(%tp, offset = image.offset, "deleting a log the metadata no longer has");
                if let Err(e) = self.logs.remove(&tp) {
                    tracing::error!(%tp, error = %e, "failed to delete stray partition log");
                }
            }
        }
        drop(state);
        if roles_changed {
            // The replica fetchers re-read which partitions they follow from whom.
            self.roles.send_modify(|v| *v = v.wrapping_add(1));
        }
    }

    /// Applies a whole image, as the delta from the image applied by the previous call (for
    /// tests that build images rather than deltas); returns that delta.
    #[cfg(test)]
    pub(crate) fn apply_image(
        &self,
        image: &MetadataImage,
        defaults: &TopicDefaults,
    ) -> MetadataDelta {
        let prev = std::mem::replace(&mut self.meta.lock().last_image, image.clone());
        let delta = MetadataDelta::between(&prev, image);
        self.apply_delta(&delta, image, defaults);
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_metadata::MetadataRecord;
    use nagare_storage::{LogConfig, LogManager};

    /// An empty image (nothing applied yet) never deletes on-disk logs as strays; a real
    /// image without the topic does.
    #[test]
    fn empty_image_deletes_no_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
            .expect("open");
        let tp = TopicPartition::new("kept", 0);
        logs.get_or_create(&tp, LogConfig::default(), now_ms())
            .expect("log");
        let rm = ReplicaManager::open(1, logs);
        let defaults = TopicDefaults::from_broker(|_| None);
        let empty = MetadataImage {
            offset: -1,
            ..Default::default()
        };
        rm.apply_image(&empty, &defaults);
        assert!(rm.logs.get(&tp).is_some(), "deleted by the empty image");
        assert!(dir.path().join("kept-0").exists());
        // The local metadata log ends at 7: an image at 5 is a partial replay.
        rm.delete_strays_from(7);
        let partial = MetadataImage {
            offset: 5,
            ..Default::default()
        };
        rm.apply_image(&partial, &defaults);
        assert!(rm.logs.get(&tp).is_some(), "deleted by a partial image");
        let later = MetadataImage {
            offset: 7,
            ..Default::default()
        };
        rm.apply_image(&later, &defaults);
        assert!(rm.logs.get(&tp).is_none(), "a stray log survived");
    }

    fn with(img: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
        let mut next = img.clone();
        for r in records {
            next.apply(next.offset + 1, r);
        }
        next
    }

    fn topic(name: &str, id: u8) -> MetadataRecord {
        MetadataRecord::Topic {
            name: name.into(),
            topic_id: Uuid::from_bytes([id; 16]),
        }
    }

    fn partition(id: u8, p: i32, replicas: Vec<i32>) -> MetadataRecord {
        MetadataRecord::Partition {
            topic_id: Uuid::from_bytes([id; 16]),
            partition_id: p,
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// Deltas create the partitions newly replicated here, delete those no longer here
    /// (a topic deleted and re-created under the same name gets a fresh log), apply config
    /// changes, and leave everything else alone.
    #[test]
    fn deltas_create_update_and_delete_only_what_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogManager::open(dir.path().to_path_buf(), |_| LogConfig::default(), now_ms())
            .expect("open");
        let rm = ReplicaManager::open(1, logs);
        let defaults = TopicDefaults::from_broker(|_| None);
        let img1 = with(
            &MetadataImage::empty(),
            &[
                topic("a", 1),
                partition(1, 0, vec![1]),
                partition(1, 1, vec![1]),
                topic("b", 2),
                partition(2, 0, vec![2]),
            ],
        );
        rm.apply_image(&img1, &defaults);
        assert!(rm.partition("a", 0).is_some() && rm.partition("a", 1).is_some());
        assert!(rm.partition("b", 0).is_none(), "not a replica of b-0");
        assert_eq!(
            rm.topic_name(&Uuid::from_bytes([1; 16])).as_deref(),
            Some("a")
        );
        assert_eq!(rm.topic_name(&Uuid::from_bytes([2; 16])), None);
        let a1 = rm.partition("a", 1).expect("a-1");

        // A config change of a touches a's partitions only, and keeps them.
        let img2 = with(
            &img1,
            &[MetadataRecord::Config {
                resource: ConfigResource::Topic,
                resource_name: "a".into(),
                name: "min.insync.replicas".into(),
                value: Some("2".into()),
            }],
        );
        let d = rm.apply_image(&img2, &defaults);
        assert!(d.partitions.is_empty());
        let a1_now = rm.partition("a", 1).expect("a-1");
        assert!(
            Arc::ptr_eq(&a1, &a1_now),
            "an unchanged partition was recreated"
        );
        assert_eq!(a1_now.min_isr.load(Ordering::Acquire), 2);

        // a deleted, re-created with one partition under a new id; b-0 moves here.
        rm.partition("a", 0)
            .expect("a-0")
            .log
            .append_as_leader(
                nagare_protocol::batch_builder::build_batch(
                    (0..3).map(|_| (None, Some(bytes::Bytes::from_static(b"v")))),
                    0,
                    now_ms(),
                )
                .expect("batch"),
                0,
                now_ms(),
            )
            .expect("append");
        let img3 = with(
            &img2,
            &[
                MetadataRecord::RemoveTopic {
                    topic_id: Uuid::from_bytes([1; 16]),
                },
                topic("a", 3),
                partition(3, 0, vec![1]),
                MetadataRecord::PartitionChange {
                    topic_id: Uuid::from_bytes([2; 16]),
                    partition_id: 0,
                    leader: None,
                    isr: None,
                    replicas: Some(vec![2, 1]),
                },
            ],
        );
        rm.apply_image(&img3, &defaults);
        let a0 = rm.partition("a", 0).expect("new a-0");
        assert_eq!(a0.topic_id, Uuid::from_bytes([3; 16]));
        assert_eq!(a0.log.log_end_offset(), 0, "the old topic's data survived");
        assert!(rm.partition("a", 1).is_none());
        assert!(
            !dir.path().join("a-1").exists(),
            "a-1's log was not deleted"
        );
        assert!(rm.partition("b", 0).is_some_and(|p| !p.is_leader()));
        assert_eq!(rm.topic_name(&Uuid::from_bytes([1; 16])), None);
        assert_eq!(
            rm.topic_name(&Uuid::from_bytes([3; 16])).as_deref(),
            Some("a")
        );
        assert_eq!(
            rm.topic_name(&Uuid::from_bytes([2; 16])).as_deref(),
            Some("b")
        );
    }
}
