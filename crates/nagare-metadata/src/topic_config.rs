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
    /// Broker property supplying the default (Kafka's "synonym").
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
    def(
        "remote.storage.enable",
        "remote.log.storage.system.enable",
        "false",
        ConfigKind::Boolean,
    ),
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
}

impl TopicDefaults {
    /// Builds the defaults from a broker property lookup (`None` = not set in the file).
    pub fn from_broker(get: impl Fn(&str) -> Option<String>) -> Self {
        let mut values = BTreeMap::new();
        for d in TOPIC_CONFIGS {
            let v = match get(d.broker_key) {
                Some(v) => (v, ConfigSource::StaticBroker),
                None => (d.default.to_string(), ConfigSource::Default),
            };
            values.insert(d.name, v);
        }
        TopicDefaults { values }
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
        c.cleanup_policy_delete = eff
            .get("cleanup.policy")
            .map(|p| p.split(',').any(|x| x.trim() == "delete"))
            .unwrap_or(true);
        c.cleanup_policy_compact = eff
            .get("cleanup.policy")
            .is_some_and(|p| p.split(',').any(|x| x.trim() == "compact"));
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
    }
}
