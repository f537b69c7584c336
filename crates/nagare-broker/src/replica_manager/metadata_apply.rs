//! How the replica manager follows the metadata image: the partitions this broker replicates
//! are created, updated or deleted as the image says (Kafka's `ReplicaManager.applyDelta`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nagare_metadata::records::ConfigResource;
use nagare_metadata::topic_config::TopicDefaults;
use nagare_metadata::{MetadataImage, PartitionRegistration, Uuid};
use nagare_storage::TopicPartition;

use super::{now_ms, Partition, ReplicaManager};

impl ReplicaManager {
    /// Reacts to a new metadata image: creates logs for new partitions this node
    /// replicates, updates epochs and configs, deletes logs of removed topics.
    pub fn apply_image(&self, image: &MetadataImage, defaults: &TopicDefaults) {
        let now = now_ms();
        let mut wanted: HashMap<TopicPartition, (Uuid, PartitionRegistration)> = HashMap::new();
        let mut configs: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for topic in image.topics_by_id.values() {
            for (p, reg) in &topic.partitions {
                if reg.replicas.contains(&self.node_id) {
                    wanted.insert(
                        TopicPartition {
                            topic: topic.name.clone(),
                            partition: *p,
                        },
                        (topic.id, reg.clone()),
                    );
                }
            }
            configs.insert(
                topic.name.clone(),
                image.config_overrides(ConfigResource::Topic, &topic.name),
            );
        }
        let mut parts = self.partitions.write();
        // Removed topics (or reassigned-away partitions): delete their logs.
        let gone: Vec<TopicPartition> = parts
            .keys()
            .filter(|tp| !wanted.contains_key(*tp))
            .cloned()
            .collect();
        for tp in gone {
            parts.remove(&tp);
            if let Err(e) = self.logs.remove(&tp) {
                tracing::error!(%tp, error = %e, "failed to delete partition log");
            } else {
                tracing::info!(%tp, "deleted partition log");
            }
        }
        // On-disk logs no longer in metadata (deleted while we were down). Never from an empty
        // image (nothing applied yet, e.g. a restart whose metadata replay has not reached
        // the publisher): every log would look stray and be deleted with its data.
        for (tp, _) in self.logs.all() {
            if image.offset < 0 || image.offset < self.stray_floor.load(Ordering::Acquire) {
                break;
            }
            if !wanted.contains_key(&tp) && !parts.contains_key(&tp) {
                tracing::info!(%tp, offset = image.offset, "deleting a log the metadata no longer has");
                if let Err(e) = self.logs.remove(&tp) {
                    tracing::error!(%tp, error = %e, "failed to delete stray partition log");
                }
            }
        }
        let mut by_id = HashMap::new();
        for (tp, (topic_id, reg)) in wanted {
            by_id.insert(topic_id, tp.topic.clone());
            let overrides = configs.get(&tp.topic).cloned().unwrap_or_default();
            let config = defaults.log_config(&overrides);
            let min_isr = defaults
                .value(&overrides, "min.insync.replicas")
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(1);
            if let Some(p) = parts.get(&tp) {
                p.log.update_config(config);
                p.min_isr.store(min_isr, Ordering::Release);
                p.apply_registration(self.node_id, &reg, now);
                continue;
            }
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
                    ));
                    p.min_isr.store(min_isr, Ordering::Release);
                    p.apply_registration(self.node_id, &reg, now);
                    parts.insert(tp, p);
                }
                Err(e) => tracing::error!(%tp, error = %e, "cannot open partition log"),
            }
        }
        *self.by_id.write() = by_id;
        drop(parts);
        // The replica fetchers re-read which partitions they follow from whom.
        self.roles.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
