//! The broker's tiered-storage settings (KIP-405): `remote.log.*` with Kafka's names and
//! defaults, and the object store named by `rsm.config.*` (see
//! `nagare_remote_storage::config`). With `remote.log.storage.system.enable=true` the store
//! must be configured correctly, or startup fails naming the key.

use nagare_remote_storage::{Backoff, RemoteStorageConfig};

use super::parse::Props;
use super::{invalid, ConfigError};

/// Tiered-storage settings of a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TieredConfig {
    /// `remote.log.storage.system.enable`: topics may turn on `remote.storage.enable`.
    pub enabled: bool,
    /// The object store (`rsm.config.*`); `Some` exactly when `enabled`.
    pub store: Option<RemoteStorageConfig>,
    /// `remote.log.manager.task.interval.ms`.
    pub task_interval_ms: u64,
    /// `remote.log.manager.task.retry.backoff.ms` / `.max.ms`.
    pub retry_backoff: Backoff,
    /// `remote.log.manager.copy.max.bytes.per.second` (`u64::MAX`: unlimited).
    pub copy_max_bytes_per_second: u64,
    /// `remote.log.reader.threads`: concurrent remote reads.
    pub reader_threads: usize,
    /// `remote.log.index.file.cache.total.size.bytes`.
    pub index_cache_bytes: u64,
}

impl TieredConfig {
    pub(crate) fn parse(p: Props<'_>) -> Result<Self, ConfigError> {
        let enabled = p.boolean("remote.log.storage.system.enable");
        let store = if enabled {
            let cfg = RemoteStorageConfig::from_lookup(|k| p.given(k).map(str::to_string))
                .map_err(|e| invalid(e.key, p.given(e.key).unwrap_or(""), e.reason))?;
            Some(cfg)
        } else {
            None
        };
        let positive = |k: &str| p.int(k).max(1) as u64;
        Ok(TieredConfig {
            enabled,
            store,
            task_interval_ms: positive("remote.log.manager.task.interval.ms"),
            retry_backoff: Backoff {
                initial_ms: positive("remote.log.manager.task.retry.backoff.ms"),
                max_ms: positive("remote.log.manager.task.retry.backoff.max.ms"),
            },
            copy_max_bytes_per_second: positive("remote.log.manager.copy.max.bytes.per.second"),
            reader_threads: positive("remote.log.reader.threads") as usize,
            index_cache_bytes: positive("remote.log.index.file.cache.total.size.bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::BrokerConfig;

    fn load(pairs: &[(&str, &str)]) -> Result<BrokerConfig, super::ConfigError> {
        let mut props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        props.insert("log.dirs".into(), "/tmp/nagare-tiered-config-test".into());
        BrokerConfig::from_props(props).map(|(c, _)| c)
    }

    #[test]
    fn kafka_defaults_and_store_validation() {
        let c = load(&[]).expect("defaults");
        assert!(!c.tiered.enabled && c.tiered.store.is_none());
        assert_eq!(c.tiered.task_interval_ms, 30_000);
        assert_eq!(c.tiered.copy_max_bytes_per_second, i64::MAX as u64);
        assert_eq!(c.tiered.reader_threads, 10);
        assert_eq!(c.tiered.index_cache_bytes, 1 << 30);
        assert_eq!(
            (
                c.tiered.retry_backoff.initial_ms,
                c.tiered.retry_backoff.max_ms
            ),
            (500, 30_000)
        );
        // Enabled without a store names the missing key.
        let e = load(&[("remote.log.storage.system.enable", "true")]).unwrap_err();
        assert!(e.to_string().contains("rsm.config.url"), "{e}");
        let e = load(&[
            ("remote.log.storage.system.enable", "true"),
            ("rsm.config.url", "ftp://x"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("rsm.config.url"), "{e}");
        let c = load(&[
            ("remote.log.storage.system.enable", "true"),
            ("rsm.config.url", "s3://bucket/prefix"),
            ("rsm.config.endpoint", "http://127.0.0.1:5000"),
            ("rsm.config.path.style.access.enabled", "true"),
            (
                "remote.log.storage.manager.class.name",
                "io.aiven.kafka.tieredstorage.RemoteStorageManager",
            ),
            ("remote.log.manager.copy.max.bytes.per.second", "1048576"),
        ])
        .expect("valid");
        assert!(c.tiered.store.as_ref().is_some_and(|s| s.path_style));
        assert_eq!(c.tiered.copy_max_bytes_per_second, 1_048_576);
        // The system switch is visible to topic validation.
        assert!(c
            .topic_defaults(&BTreeMap::new())
            .remote_log_storage_system_enable());
        let e = load(&[("remote.log.reader.threads", "0")]).unwrap_err();
        assert!(e.to_string().contains("remote.log.reader.threads"), "{e}");
    }
}
