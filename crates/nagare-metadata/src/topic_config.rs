//! Topic-level configs: Kafka 4.x names, types, defaults, the broker property each one
//! inherits from, validation, and the mapping to the storage layer's `LogConfig`.

use std::collections::BTreeMap;

use nagare_storage::{LogConfig, TimestampType};

/// Value type of a config, as in Kafka's ConfigDef.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    /// 64-bit integer with an inclusive minimum.
    Long(i64),
    /// 32-bit integer with an inclusive minimum.
    Int(i32),
    /// `true` / `false`.
    Boolean,
    /// Floating point in [0, 1].
    Ratio,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A comma-separated list of members of a fixed set.
    List(&'static [&'static str]),
    /// Free text.
    Text,
}

/// One topic config definition.
#[derive(Debug, Clone, Copy)]
pub struct TopicConfigDef {
    /// Topic config name.
    pub name: &'static str,
    /// Broker property supplying the default (Kafka's "synonym"); empty for the topic
    /// configs without one (`remote.storage.enable` and the other KIP-405 switches).
    pub broker_key: &'static str,
    /// Kafka's default when the broker property is not set.
    pub default: &'static str,
    /// Value type and bounds.
    pub kind: ConfigKind,
}

const MAX: &str = "9223372036854775807";

/// Every topic config Kafka 4.x defines.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        "log.cleanup.policy",
        "delete",
        ConfigKind::List(&["delete", "compact"]),
    ),
    def(
        "compression.type",
        "compression.type",
        "producer",
        ConfigKind::Enum(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    def(
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        "86400000",
        ConfigKind::Long(0),
    ),
    def(
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        "60000",
        ConfigKind::Long(0),
    ),
    def(
        "flush.messages",
        "log.flush.interval.messages",
        MAX,
        ConfigKind::Long(1),
    ),
    def(
        "flush.ms",
        "log.flush.interval.ms",
        MAX,
        ConfigKind::Long(0),
    ),
    def(
        "follower.replication.throttled.replicas",
        "follower.replication.throttled.replicas",
        "",
        ConfigKind::Text,
    ),
    def(
        "index.interval.bytes",
        "log.index.interval.bytes",
        "4096",
        ConfigKind::Int(0),
    ),
    def(
        "leader.replication.throttled.replicas",
        "leader.replication.throttled.replicas",
        "",
        ConfigKind::Text,
    ),
    def(
        "local.retention.bytes",
        "log.local.retention.bytes",
        "-2",
        ConfigKind::Long(-2),
    ),
    def(
        "local.retention.ms",
        "log.local.retention.ms",
        "-2",
        ConfigKind::Long(-2),
    ),
    def(
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        MAX,
        ConfigKind::Long(1),
    ),
    def(
        "max.message.bytes",
        "message.max.bytes",
        "1048588",
        ConfigKind::Int(0),
    ),
    def(
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        "3600000",
        ConfigKind::Long(0),
    ),
    def(
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        MAX,
        ConfigKind::Long(0),
    ),
    def(
        "message.timestamp.type",
        "log.message.timestamp.type",
        "CreateTime",
        ConfigKind::Enum(&["CreateTime", "LogAppendTime"]),
    ),
    def(
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        ConfigKind::Ratio,
    ),
    def(
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        "0",
        ConfigKind::Long(0),
    ),
    def(
        "min.insync.replicas",
        "min.insync.replicas",
        "1",
        ConfigKind::Int(1),
    ),
    def(
        "preallocate",
        "log.preallocate",
        "false",
        ConfigKind::Boolean,
    ),
    def("remote.log.copy.disable", "", "false", ConfigKind::Boolean),
    def(
        "remote.log.delete.on.disable",
        "",
        "false",
        ConfigKind::Boolean,
    ),
    // Kafka gives it no broker synonym: `remote.log.storage.system.enable` only allows topics
    // to turn it on (see `validate_tiered`).
    def("remote.storage.enable", "", "false", ConfigKind::Boolean),
    def(
        "retention.bytes",
        "log.retention.bytes",
        "-1",
        ConfigKind::Long(-1),
    ),
    def(
        "retention.ms",
        "log.retention.ms",
        "604800000",
        ConfigKind::Long(-1),
    ),
    def(
        "segment.bytes",
        "log.segment.bytes",
        "1073741824",
        ConfigKind::Int(14),
    ),
    def(
        "segment.index.bytes",
        "log.index.size.max.bytes",
        "10485760",
        ConfigKind::Int(4),
    ),
    def(
        "segment.jitter.ms",
        "log.roll.jitter.ms",
        "0",
        ConfigKind::Long(0),
    ),
    def(
        "segment.ms",
        "log.roll.ms",
        "604800000",
        ConfigKind::Long(1),
    ),
    def(
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Boolean,
    ),
];

const fn def(
    name: &'static str,
    broker_key: &'static str,
    default: &'static str,
    kind: ConfigKind,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        broker_key,
        default,
        kind,
    }
}

/// The definition of a topic config, if Kafka has one by that name.
pub fn lookup(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a value against its definition; the message is what Kafka would say.
pub fn validate_value(kind: ConfigKind, name: &str, value: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "Invalid value {value} for configuration {name}: {why}"
        ))
    };
    match kind {
        ConfigKind::Long(min) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(&format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type LONG"),
        },
        ConfigKind::Int(min) => match value.trim().parse::<i32>() {
            Ok(v) if v >= min => Ok(()),
            Ok(_) => bad(&format!("Value must be at least {min}")),
            Err(_) => bad("Not a number of type INT"),
        },
        ConfigKind::Boolean => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => bad("Expected value to be either true or false"),
        },
        ConfigKind::Ratio => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => bad("Value must be a number between 0 and 1"),
        },
        ConfigKind::Enum(allowed) => {
            if allowed.contains(&value.trim()) {
                Ok(())
            } else {
                bad(&format!("String must be one of: {}", allowed.join(", ")))
            }
        }
        ConfigKind::List(allowed) => {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !allowed.contains(&item) {
                    return bad(&format!("String must be one of: {}", allowed.join(", ")));
                }
            }
            Ok(())
        }
        ConfigKind::Text => Ok(()),
    }
}

/// Validates a topic config override: the name must be a Kafka topic config.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match lookup(name) {
        Some(d) => validate_value(d.kind, name, value),
        None => Err(format!("Unknown topic config name: {name}")),
    }
}

/// A topic's tiered-storage settings (KIP-405), `-2` already resolved to the whole log's
/// limit. `-1` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TieredTopicConfig {
    /// `remote.storage.enable`.
    pub remote_storage_enable: bool,
    /// `local.retention.ms`: how long a segment stays on local disk after its upload.
    pub local_retention_ms: i64,
    /// `local.retention.bytes`: local bytes kept after upload.
    pub local_retention_bytes: i64,
    /// `retention.ms`: the whole log (local and remote).
    pub retention_ms: i64,
    /// `retention.bytes`: the whole log (local and remote).
    pub retention_bytes: i64,
    /// `remote.log.copy.disable`: remote data stays readable, nothing more is uploaded.
    pub remote_log_copy_disable: bool,
    /// `remote.log.delete.on.disable`: turning tiered storage off deletes the remote data.
    pub remote_log_delete_on_disable: bool,
}

/// The checks Kafka's `LogConfig.validate` makes across tiered-storage keys on CreateTopics
/// and (Incremental)AlterConfigs, on the topic's effective values (overrides over broker
/// defaults). `before` is the topic's overrides before the change (`None` on creation). The
/// message is Kafka's; the error code is INVALID_CONFIG.
pub fn validate_tiered(
    defaults: &TopicDefaults,
    before: Option<&BTreeMap<String, String>>,
    after: &BTreeMap<String, String>,
) -> Result<(), String> {
    let c = defaults.tiered_config(after);
    if !c.remote_storage_enable {
        let was = before.is_some_and(|b| defaults.tiered_config(b).remote_storage_enable);
        if was && !c.remote_log_delete_on_disable {
            return Err(
                "It is invalid to disable remote storage without deleting remote data. \
                If you want to keep the remote data and turn to read only, please set \
                `remote.storage.enable=true,remote.log.copy.disable=true`. If you want to \
                disable remote storage and delete all remote data, please set \
                `remote.storage.enable=false,remote.log.delete.on.disable=true`."
                    .to_string(),
            );
        }
        return Ok(());
    }
    if !defaults.remote_log_storage_system_enable() {
        return Err(
            "Tiered Storage functionality is disabled in the broker. Topic cannot be \
            configured with remote log storage."
                .to_string(),
        );
    }
    let policy = defaults.value(after, "cleanup.policy").unwrap_or_default();
    if policy.split(',').any(|p| p.trim() == "compact") {
        return Err(
            "Remote log storage only supported for topics with cleanup.policy=delete".to_string(),
        );
    }
    let raw = |k: &str| {
        defaults
            .value(after, k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(-2)
    };
    for (local_key, whole_key, whole) in [
        ("local.retention.ms", "retention.ms", c.retention_ms),
        (
            "local.retention.bytes",
            "retention.bytes",
            c.retention_bytes,
        ),
    ] {
        let local = raw(local_key);
        if whole > -1 && local != -2 {
            if local == -1 {
                return Err(format!(
                    "Invalid value -1 for configuration {local_key}: Value must not be -1 as \
                     {whole_key} value is set as {whole}."
                ));
            }
            if local > whole {
                return Err(format!(
                    "Invalid value {local} for configuration {local_key}: Value must not be \
                     more than {whole_key} property value: {whole}"
                ));
            }
        }
    }
    if c.remote_log_copy_disable
        && (c.local_retention_ms != c.retention_ms || c.local_retention_bytes != c.retention_bytes)
    {
        return Err(
            "When `remote.log.copy.disable` is set to true, the `local.retention.ms` \
            and `retention.ms` must be set to the identical value because there will be no \
            more logs copied to the remote storage."
                .to_string(),
        );
    }
    Ok(())
}

/// Where an effective config value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (DYNAMIC_TOPIC_CONFIG, 1).
    DynamicTopic,
    /// Set in the broker's properties file (STATIC_BROKER_CONFIG, 4).
    StaticBroker,
    /// Kafka's default (DEFAULT_CONFIG, 5).
    Default,
}

impl ConfigSource {
    /// Kafka's numeric config source.
    pub fn code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// The broker-level defaults for topic configs: what a topic without overrides gets.
#[derive(Debug, Clone, Default)]
pub struct TopicDefaults {
    values: BTreeMap<&'static str, (String, ConfigSource)>,
    /// The broker's `remote.log.storage.system.enable`: topics may enable tiered storage.
    remote_log_storage_system_enable: bool,
}

impl TopicDefaults {
    /// Builds the defaults from a broker property lookup (`None` = not set in the file).
    pub fn from_broker(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut values = BTreeMap::new();
        for d in TOPIC_CONFIGS {
            let from_broker = if d.broker_key.is_empty() {
                None
            } else {
                get(d.broker_key)
            };
            let v = match from_broker {
                Some(v) => (v, ConfigSource::StaticBroker),
                None => (d.default.to_string(), ConfigSource::Default),
            };
            values.insert(d.name, v);
        }
        let remote_log_storage_system_enable = get("remote.log.storage.system.enable")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        TopicDefaults {
            values,
            remote_log_storage_system_enable,
        }
    }

    /// Whether the broker's `remote.log.storage.system.enable` is on.
    pub fn remote_log_storage_system_enable(&self) -> bool {
        self.remote_log_storage_system_enable
    }

    /// Whether a topic with these overrides is tiered: `remote.storage.enable=true` on a
    /// broker with `remote.log.storage.system.enable=true`.
    pub fn is_tiered(&self, overrides: &BTreeMap<String, String>) -> bool {
        self.remote_log_storage_system_enable && self.tiered_config(overrides).remote_storage_enable
    }

    /// The tiered-storage settings of a topic with these overrides, `-2` resolved.
    pub fn tiered_config(&self, overrides: &BTreeMap<String, String>) -> TieredTopicConfig {
        let long = |k: &str, d: i64| {
            self.value(overrides, k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let boolean = |k: &str| {
            self.value(overrides, k)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        };
        let retention_ms = long("retention.ms", 604_800_000);
        let retention_bytes = long("retention.bytes", -1);
        let resolve = |local: i64, whole: i64| if local == -2 { whole } else { local };
        TieredTopicConfig {
            remote_storage_enable: boolean("remote.storage.enable"),
            local_retention_ms: resolve(long("local.retention.ms", -2), retention_ms),
            local_retention_bytes: resolve(long("local.retention.bytes", -2), retention_bytes),
            retention_ms,
            retention_bytes,
            remote_log_copy_disable: boolean("remote.log.copy.disable"),
            remote_log_delete_on_disable: boolean("remote.log.delete.on.disable"),
        }
    }

    /// Effective value and source of every topic config given a topic's overrides.
    pub fn effective(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Vec<(&'static str, String, ConfigSource)> {
        TOPIC_CONFIGS
            .iter()
            .map(|d| match overrides.get(d.name) {
                Some(v) => (d.name, v.clone(), ConfigSource::DynamicTopic),
                None => {
                    let (v, s) = self
                        .values
                        .get(d.name)
                        .cloned()
                        .unwrap_or((d.default.to_string(), ConfigSource::Default));
                    (d.name, v, s)
                }
            })
            .collect()
    }

    /// The storage layer's configuration for a topic with these overrides.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let eff: BTreeMap<&str, String> = self
            .effective(overrides)
            .into_iter()
            .map(|(k, v, _)| (k, v))
            .collect();
        let long = |k: &str, d: i64| {
            eff.get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let mut c = LogConfig::default();
        c.segment_bytes = long("segment.bytes", c.segment_bytes as i64).max(14) as u64;
        c.segment_ms = long("segment.ms", c.segment_ms);
        c.segment_index_bytes =
            long("segment.index.bytes", c.segment_index_bytes as i64).max(8) as u64;
        c.index_interval_bytes =
            long("index.interval.bytes", c.index_interval_bytes as i64).max(0) as u64;
        c.retention_bytes = long("retention.bytes", c.retention_bytes);
        c.retention_ms = long("retention.ms", c.retention_ms);
        c.max_message_bytes =
            long("max.message.bytes", c.max_message_bytes as i64).clamp(0, u32::MAX as i64) as u32;
        c.file_delete_delay_ms = long("file.delete.delay.ms", c.file_delete_delay_ms);
        c.message_timestamp_type = match eff.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };
        // KIP-937: the window around the broker's clock a CreateTime timestamp must lie in.
        c.message_timestamp_before_max_ms = long(
            "message.timestamp.before.max.ms",
            c.message_timestamp_before_max_ms,
        )
        .max(0);
        c.message_timestamp_after_max_ms = long(
            "message.timestamp.after.max.ms",
            c.message_timestamp_after_max_ms,
        )
        .max(0);
        c.cleanup_policy_delete = eff
            .get("cleanup.policy")
            .map(|p| p.split(',').any(|x| x.trim() == "delete"))
            .unwrap_or(true);
        c.cleanup_policy_compact = eff
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"));
        if self.is_tiered(overrides) {
            // KIP-405: the local log keeps only `local.retention.*`; the whole log's
            // `retention.*` applies to the remote log. The broker also bounds local deletion
            // by what is uploaded.
            let t = self.tiered_config(overrides);
            c.retention_ms = t.local_retention_ms;
            c.retention_bytes = t.local_retention_bytes;
        }
        c.delete_retention_ms = long("delete.retention.ms", c.delete_retention_ms);
        c.min_compaction_lag_ms = long("min.compaction.lag.ms", c.min_compaction_lag_ms);
        c.max_compaction_lag_ms = long("max.compaction.lag.ms", c.max_compaction_lag_ms);
        c.min_cleanable_dirty_ratio = eff
            .get("min.cleanable.dirty.ratio")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| r.is_finite())
            .unwrap_or(c.min_cleanable_dirty_ratio);
        c
    }

    /// The broker-level default of a topic config and where it comes from.
    pub fn default_with_source(&self, name: &str) -> Option<(String, ConfigSource)> {
        self.values.get(name).cloned()
    }

    /// One effective value (override, else broker default).
    pub fn value(&self, overrides: &BTreeMap<String, String>, name: &str) -> Option<String> {
        overrides
            .get(name)
            .cloned()
            .or_else(|| self.values.get(name).map(|(v, _)| v.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_kafka_messages() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-1").is_ok());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "nope").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("no.such.config", "1")
            .unwrap_err()
            .contains("Unknown topic config"));
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tiered_validation_follows_kafka() {
        let off = TopicDefaults::from_broker(|_| None);
        let on = TopicDefaults::from_broker(|k| {
            (k == "remote.log.storage.system.enable").then(|| "true".to_string())
        });
        // The system switch does not turn topics on (no broker synonym).
        assert!(!on.tiered_config(&BTreeMap::new()).remote_storage_enable);
        let enable = map(&[("remote.storage.enable", "true")]);
        assert!(validate_tiered(&off, None, &enable)
            .unwrap_err()
            .contains("disabled in the broker"));
        assert!(validate_tiered(&on, None, &enable).is_ok());
        let compacted = map(&[
            ("remote.storage.enable", "true"),
            ("cleanup.policy", "compact"),
        ]);
        assert!(validate_tiered(&on, None, &compacted).is_err());
        // local.retention.* ≤ retention.*, -2 = the same, -1 only with unlimited retention.
        let c = map(&[
            ("remote.storage.enable", "true"),
            ("retention.ms", "1000"),
            ("local.retention.ms", "2000"),
        ]);
        assert!(validate_tiered(&on, None, &c)
            .unwrap_err()
            .contains("must not be more than retention.ms"));
        let c = map(&[
            ("remote.storage.enable", "true"),
            ("retention.bytes", "1000"),
            ("local.retention.bytes", "-1"),
        ]);
        assert!(validate_tiered(&on, None, &c)
            .unwrap_err()
            .contains("must not be -1"));
        let c = map(&[
            ("remote.storage.enable", "true"),
            ("retention.ms", "-1"),
            ("local.retention.ms", "-1"),
            ("local.retention.bytes", "100"),
        ]);
        assert!(validate_tiered(&on, None, &c).is_ok());
        // A tiered topic's local log keeps only local.retention.*.
        let tiered = map(&[
            ("remote.storage.enable", "true"),
            ("retention.ms", "100000"),
            ("local.retention.ms", "1000"),
        ]);
        assert!(on.is_tiered(&tiered) && !off.is_tiered(&tiered));
        assert_eq!(on.log_config(&tiered).retention_ms, 1000);
        assert_eq!(off.log_config(&tiered).retention_ms, 100000);
        let t = on.tiered_config(&map(&[("retention.bytes", "500")]));
        assert_eq!(
            (t.local_retention_bytes, t.local_retention_ms),
            (500, 604_800_000)
        );
        // Turning it off needs remote.log.delete.on.disable=true.
        assert!(validate_tiered(&on, Some(&enable), &BTreeMap::new())
            .unwrap_err()
            .contains("without deleting remote data"));
        let off_delete = map(&[("remote.log.delete.on.disable", "true")]);
        assert!(validate_tiered(&on, Some(&enable), &off_delete).is_ok());
        // Copy disabled: local retention must equal the whole log's.
        let c = map(&[
            ("remote.storage.enable", "true"),
            ("remote.log.copy.disable", "true"),
            ("local.retention.ms", "10"),
        ]);
        assert!(validate_tiered(&on, None, &c)
            .unwrap_err()
            .contains("remote.log.copy.disable"));
    }

    #[test]
    fn defaults_and_overrides() {
        let d =
            TopicDefaults::from_broker(|k| (k == "log.segment.bytes").then(|| "1000".to_string()));
        let mut o = BTreeMap::new();
        o.insert("retention.bytes".to_string(), "5000".to_string());
        let lc = d.log_config(&o);
        assert_eq!(lc.segment_bytes, 1000);
        assert_eq!(lc.retention_bytes, 5000);
        let eff = d.effective(&o);
        let seg = eff.iter().find(|e| e.0 == "segment.bytes").map(|e| e.2);
        assert_eq!(seg, Some(ConfigSource::StaticBroker));
        let rb = eff.iter().find(|e| e.0 == "retention.bytes").map(|e| e.2);
        assert_eq!(rb, Some(ConfigSource::DynamicTopic));
        // The timestamp window (KIP-937) reaches the log: Kafka's defaults, then overrides.
        assert_eq!(lc.message_timestamp_after_max_ms, 3_600_000);
        assert_eq!(lc.message_timestamp_before_max_ms, i64::MAX);
        o.insert("message.timestamp.after.max.ms".into(), "60000".into());
        o.insert("message.timestamp.before.max.ms".into(), "1000".into());
        let lc = d.log_config(&o);
        assert_eq!(lc.message_timestamp_after_max_ms, 60_000);
        assert_eq!(lc.message_timestamp_before_max_ms, 1_000);
    }
}
