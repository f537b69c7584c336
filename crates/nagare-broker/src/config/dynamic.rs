//! Configs that change at run time through IncrementalAlterConfigs/AlterConfigs:
//!
//! - dynamic broker configs (Kafka's `DynamicBrokerConfig`): which keys may change, per broker
//!   (`--entity-name <id>`) or cluster-wide (`--entity-default`), and how a new value is
//!   checked, from the update modes of [`super::definitions`];
//! - group configs (KIP-848's GROUP resource, Kafka's `GroupConfig`): their keys, defaults
//!   (the broker's `group.consumer.*` / `group.share.*` values) and bounds.
//!
//! Both are stored as ConfigRecords in the metadata log (resource BROKER with name `""` for
//! the cluster default, as Kafka; resource GROUP with the group id) and checked here, sans I/O,
//! by the active controller before it commits them.

use std::collections::{BTreeMap, HashMap};

use nagare_metadata::records::ConfigResource;
use nagare_metadata::MetadataImage;

use super::definitions::{definition, listener_override, ConfigDef, ConfigType, UpdateMode};

/// Resolves a dynamic broker key to its definition: a plain key, or a listener-prefixed one
/// (`listener.name.<l>.<key>`, Kafka's per-listener settings: TLS keys, SASL mechanisms and
/// JAAS logins, `max.connection.creation.rate`). The flag says whether it was prefixed.
fn resolve(key: &str) -> Option<(&'static ConfigDef, bool)> {
    if let Some(d) = definition(key) {
        return Some((d, false));
    }
    if let Some(d) = listener_override(key) {
        return Some((d, true));
    }
    let rest = key.strip_prefix("listener.name.")?;
    let (_, inner) = rest.split_once('.')?;
    let inner = if inner.ends_with(".sasl.jaas.config") {
        "sasl.jaas.config"
    } else {
        inner
    };
    definition(inner)
        .filter(|d| d.name.starts_with("sasl."))
        .map(|d| (d, true))
}

/// Checks that `value` parses as the key's type (Kafka's `ConfigDef.parseType`), whatever
/// Nagare does with it: a value Kafka would refuse is refused even when stored only.
fn check_type(d: &ConfigDef, value: &str) -> Result<(), String> {
    let v = value.trim();
    let ok = match d.config_type {
        ConfigType::Boolean => v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false"),
        ConfigType::Int => v.parse::<i32>().is_ok(),
        ConfigType::Short => v.parse::<i16>().is_ok(),
        ConfigType::Long => v.parse::<i64>().is_ok(),
        ConfigType::Double => v.parse::<f64>().is_ok(),
        ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid value {value} for configuration {}: Not a number of type {}",
            d.name,
            d.config_type.name()
        ))
    }
}

/// Checks one dynamic broker config change — `value` `None` for a delete, always allowed — on a broker
/// (`per_broker`) or on the cluster default, with Kafka's messages:
/// read-only (and unknown) keys "Cannot update these configs dynamically", per-broker keys
/// at the cluster default "Cannot update these configs at default cluster level, broker id
/// must be specified", TLS keys without a listener prefix "These security configs can be
/// dynamically updated only per-listener using the listener prefix", then the value.
pub fn check_broker_config(key: &str, value: Option<&str>, per_broker: bool) -> Result<(), String> {
    // Kafka validates what remains after a DELETE, so removing any override is allowed
    // (also one stored by an older version under rules since tightened).
    let Some(value) = value else {
        return Ok(());
    };
    let Some((d, prefixed)) = resolve(key) else {
        return Err(format!(
            "Cannot update these configs dynamically: Set({key})"
        ));
    };
    if d.update_mode == UpdateMode::ReadOnly {
        return Err(format!(
            "Cannot update these configs dynamically: Set({key})"
        ));
    }
    if d.name.starts_with("ssl.") && !prefixed {
        return Err(format!(
            "These security configs can be dynamically updated only per-listener using the \
             listener prefix: Set({key})"
        ));
    }
    // Listener-prefixed settings are a broker's own listeners' (Kafka: per-broker).
    if !per_broker && (d.update_mode == UpdateMode::PerBroker || prefixed) {
        return Err(format!(
            "Cannot update these configs at default cluster level, broker id must be \
             specified: Set({key})"
        ));
    }
    check_type(d, value)?;
    d.validate(value).map_err(|e| e.to_string())
}

/// One group config (Kafka 4.x's `GroupConfig`).
#[derive(Debug, Clone, Copy)]
pub struct GroupConfigDef {
    /// The group config's name.
    pub name: &'static str,
    /// Its type (INT, or STRING for `share.auto.offset.reset`).
    pub config_type: ConfigType,
    /// The broker config whose value is the default (empty: `literal_default`).
    pub broker_default: &'static str,
    /// The default when there is no broker key.
    pub literal_default: &'static str,
    /// The broker configs bounding it (`min`, `max`), empty for none.
    pub bounds: (&'static str, &'static str),
    /// Kafka's lower limit of the type's range (`atLeast`).
    pub at_least: i64,
    /// One line for DescribeConfigs' documentation.
    pub doc: &'static str,
    /// Whether Nagare acts on it (share groups do not exist in Nagare: stored and described).
    pub applied: bool,
}

/// Every group config of Kafka 4.x, in Kafka's order.
pub const GROUP_CONFIGS: &[GroupConfigDef] = &[
    GroupConfigDef {
        name: "consumer.session.timeout.ms",
        config_type: ConfigType::Int,
        broker_default: "group.consumer.session.timeout.ms",
        literal_default: "",
        bounds: (
            "group.consumer.min.session.timeout.ms",
            "group.consumer.max.session.timeout.ms",
        ),
        at_least: 1,
        doc: "The timeout to detect client failures when using the consumer group protocol.",
        applied: true,
    },
    GroupConfigDef {
        name: "consumer.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        broker_default: "group.consumer.heartbeat.interval.ms",
        literal_default: "",
        bounds: (
            "group.consumer.min.heartbeat.interval.ms",
            "group.consumer.max.heartbeat.interval.ms",
        ),
        at_least: 1,
        doc: "The heartbeat interval given to the members of a consumer group.",
        applied: true,
    },
    GroupConfigDef {
        name: "share.session.timeout.ms",
        config_type: ConfigType::Int,
        broker_default: "group.share.session.timeout.ms",
        literal_default: "",
        bounds: (
            "group.share.min.session.timeout.ms",
            "group.share.max.session.timeout.ms",
        ),
        at_least: 1,
        doc: "The timeout to detect client failures when using the share group protocol.",
        applied: false,
    },
    GroupConfigDef {
        name: "share.heartbeat.interval.ms",
        config_type: ConfigType::Int,
        broker_default: "group.share.heartbeat.interval.ms",
        literal_default: "",
        bounds: (
            "group.share.min.heartbeat.interval.ms",
            "group.share.max.heartbeat.interval.ms",
        ),
        at_least: 1,
        doc: "The heartbeat interval given to the members of a share group.",
        applied: false,
    },
    GroupConfigDef {
        name: "share.record.lock.duration.ms",
        config_type: ConfigType::Int,
        broker_default: "group.share.record.lock.duration.ms",
        literal_default: "",
        bounds: (
            "group.share.min.record.lock.duration.ms",
            "group.share.max.record.lock.duration.ms",
        ),
        at_least: 1000,
        doc: "The record acquisition lock duration in milliseconds for share groups.",
        applied: false,
    },
    GroupConfigDef {
        name: "share.auto.offset.reset",
        config_type: ConfigType::String,
        broker_default: "",
        literal_default: "latest",
        bounds: ("", ""),
        at_least: 0,
        doc: "The strategy to initialize the share-partition start offset.",
        applied: false,
    },
];

/// The definition of a group config.
pub fn group_config(name: &str) -> Option<&'static GroupConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// A broker config's value for this node: the file's, else the table's literal default.
fn broker_value(props: &BTreeMap<String, String>, key: &str) -> Option<String> {
    props
        .get(key)
        .cloned()
        .or_else(|| match definition(key)?.default {
            super::DefaultValue::Value(v) => Some(v.to_string()),
            _ => None,
        })
}

/// The default of a group config on this broker (the broker key's value).
pub fn group_config_default(props: &BTreeMap<String, String>, d: &GroupConfigDef) -> String {
    if d.broker_default.is_empty() {
        return d.literal_default.to_string();
    }
    broker_value(props, d.broker_default).unwrap_or_default()
}

/// Checks one group config being set (`Some`) or deleted: known name, value of its type.
pub fn check_group_config(key: &str, value: Option<&str>) -> Result<(), String> {
    let Some(d) = group_config(key) else {
        return Err(format!("Unknown group config name: {key}"));
    };
    let Some(v) = value else { return Ok(()) };
    match d.config_type {
        ConfigType::Int => match v.trim().parse::<i32>() {
            Ok(n) if i64::from(n) >= d.at_least => Ok(()),
            Ok(_) => Err(format!(
                "Invalid value {v} for configuration {key}: Value must be at least {}",
                d.at_least
            )),
            Err(_) => Err(format!(
                "Invalid value {v} for configuration {key}: Not a number of type INT"
            )),
        },
        _ => match v.trim().to_ascii_lowercase().as_str() {
            "latest" | "earliest" => Ok(()),
            _ => Err(format!(
                "Invalid value {v} for configuration {key}: String must be one of: latest, earliest"
            )),
        },
    }
}

/// Checks a group's overrides as they would be after a change, as Kafka's
/// `GroupConfig.validateValues`: each value within the broker's `group.*.min/max.*` bounds,
/// and each session timeout above its heartbeat interval (unset keys take their defaults).
pub fn check_group_configs(
    props: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Result<(), String> {
    let value = |d: &GroupConfigDef| -> i64 {
        overrides
            .get(d.name)
            .cloned()
            .unwrap_or_else(|| group_config_default(props, d))
            .trim()
            .parse()
            .unwrap_or(0)
    };
    for d in GROUP_CONFIGS.iter().filter(|d| !d.bounds.0.is_empty()) {
        let v = value(d);
        let bound = |k: &str| broker_value(props, k).and_then(|b| b.trim().parse::<i64>().ok());
        if bound(d.bounds.0).is_some_and(|min| v < min) {
            return Err(format!(
                "{} must be greater than or equal to {}",
                d.name, d.bounds.0
            ));
        }
        if bound(d.bounds.1).is_some_and(|max| v > max) {
            return Err(format!(
                "{} must be less than or equal to {}",
                d.name, d.bounds.1
            ));
        }
    }
    for (session, heartbeat) in [
        (
            "consumer.session.timeout.ms",
            "consumer.heartbeat.interval.ms",
        ),
        ("share.session.timeout.ms", "share.heartbeat.interval.ms"),
    ] {
        let (Some(s), Some(h)) = (group_config(session), group_config(heartbeat)) else {
            continue;
        };
        if value(s) <= value(h) {
            return Err(format!("{session} must be greater than {heartbeat}"));
        }
    }
    Ok(())
}

/// Broker settings read per use that dynamic broker configs change at run time (Kafka's
/// `DynamicProducerStateManagerConfig`): the file's value unless this broker or the cluster
/// default sets one.
#[derive(Debug)]
pub struct RuntimeSettings {
    static_verification: bool,
    static_producer_id_expiration_ms: i64,
    verification: std::sync::atomic::AtomicBool,
    producer_id_expiration_ms: std::sync::atomic::AtomicI64,
}

impl RuntimeSettings {
    /// The file's values.
    pub fn new(
        transaction_partition_verification_enable: bool,
        producer_id_expiration_ms: i64,
    ) -> Self {
        RuntimeSettings {
            static_verification: transaction_partition_verification_enable,
            static_producer_id_expiration_ms: producer_id_expiration_ms,
            verification: transaction_partition_verification_enable.into(),
            producer_id_expiration_ms: producer_id_expiration_ms.into(),
        }
    }

    /// Takes this broker's dynamic configs (its own overlaid on the cluster default).
    pub fn apply(&self, dynamic: &BTreeMap<String, String>) {
        use std::sync::atomic::Ordering;
        let verification = dynamic
            .get("transaction.partition.verification.enable")
            .map(|v| v.trim().eq_ignore_ascii_case("true"))
            .unwrap_or(self.static_verification);
        let expiration = dynamic
            .get("producer.id.expiration.ms")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(self.static_producer_id_expiration_ms);
        self.verification.store(verification, Ordering::Relaxed);
        self.producer_id_expiration_ms
            .store(expiration, Ordering::Relaxed);
    }

    /// `transaction.partition.verification.enable` (KIP-890 part 1).
    pub fn transaction_partition_verification_enable(&self) -> bool {
        self.verification.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `producer.id.expiration.ms`.
    pub fn producer_id_expiration_ms(&self) -> i64 {
        self.producer_id_expiration_ms
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The KIP-848 overrides of every group with GROUP configs in `image`, as the group
/// coordinator applies them.
pub fn group_overrides(
    image: &MetadataImage,
) -> HashMap<String, nagare_coordinator::GroupOverride> {
    image
        .configs
        .iter()
        .filter(|((r, _), _)| *r == ConfigResource::Group)
        .map(|((_, group), m)| {
            let int = |k: &str| m.get(k).and_then(|v| v.trim().parse::<i32>().ok());
            (
                group.clone(),
                nagare_coordinator::GroupOverride {
                    consumer_session_timeout_ms: int("consumer.session.timeout.ms"),
                    consumer_heartbeat_interval_ms: int("consumer.heartbeat.interval.ms"),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_broker_configs_follow_kafkas_update_modes() {
        // Cluster-wide keys: at the default and per broker, values checked by type.
        for key in [
            "background.threads",
            "num.io.threads",
            "num.network.threads",
            "num.replica.fetchers",
            "message.max.bytes",
            "max.connections",
            "max.connections.per.ip",
            "log.retention.ms",
            "min.insync.replicas",
            "unclean.leader.election.enable",
            "compression.type",
        ] {
            let v = match key {
                "unclean.leader.election.enable" => "true",
                "compression.type" => "lz4",
                _ => "4",
            };
            assert_eq!(check_broker_config(key, Some(v), false), Ok(()), "{key}");
            assert_eq!(check_broker_config(key, Some(v), true), Ok(()), "{key}");
        }
        let e = check_broker_config("num.io.threads", Some("many"), false).unwrap_err();
        assert!(e.contains("Not a number of type INT"), "{e}");
        let e = check_broker_config("message.max.bytes", Some("-5"), false).unwrap_err();
        assert!(e.contains("message.max.bytes"), "{e}");
        // Read-only keys and unknown keys.
        for key in ["node.id", "log.dirs", "no.such.key"] {
            let e = check_broker_config(key, Some("1"), true).unwrap_err();
            assert_eq!(
                e,
                format!("Cannot update these configs dynamically: Set({key})")
            );
        }
        // Per-broker keys: not at the cluster default.
        let e = check_broker_config(
            "listener.name.external.ssl.keystore.location",
            Some("/k.pem"),
            false,
        )
        .unwrap_err();
        assert!(e.contains("broker id must be specified"), "{e}");
        assert_eq!(
            check_broker_config(
                "listener.name.external.ssl.keystore.location",
                Some("/k.pem"),
                true
            ),
            Ok(())
        );
        assert_eq!(
            check_broker_config(
                "listener.name.external.scram-sha-256.sasl.jaas.config",
                Some("x"),
                true
            ),
            Ok(())
        );
        // TLS keys only with a listener prefix.
        let e = check_broker_config("ssl.keystore.location", Some("/k.pem"), true).unwrap_err();
        assert!(e.contains("only per-listener"), "{e}");
        // Quota settings of replication (per broker).
        assert_eq!(
            check_broker_config("leader.replication.throttled.rate", Some("1048576"), true),
            Ok(())
        );
        // Deleting is always allowed (Kafka checks what remains).
        assert_eq!(check_broker_config("node.id", None, true), Ok(()));
    }

    #[test]
    fn group_configs_are_checked_like_kafkas_group_config() {
        let props = BTreeMap::new();
        let set = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            check_group_config("consumer.session.timeout.ms", Some("50000")),
            Ok(())
        );
        assert!(check_group_config("consumer.session.timeout.ms", Some("x")).is_err());
        assert_eq!(
            check_group_config("bogus", Some("1")).unwrap_err(),
            "Unknown group config name: bogus"
        );
        assert!(check_group_config("share.auto.offset.reset", Some("middle")).is_err());
        assert_eq!(
            check_group_configs(&props, &set(&[("consumer.session.timeout.ms", "50000")])),
            Ok(())
        );
        // Kafka's bounds: session 45000..=60000, heartbeat 5000..=15000.
        assert_eq!(
            check_group_configs(&props, &set(&[("consumer.session.timeout.ms", "30000")])).unwrap_err(),
            "consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms"
        );
        assert_eq!(
            check_group_configs(&props, &set(&[("consumer.heartbeat.interval.ms", "20000")])).unwrap_err(),
            "consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms"
        );
        // The broker's bounds decide.
        let wide = set(&[
            ("group.consumer.min.session.timeout.ms", "1000"),
            ("group.consumer.min.heartbeat.interval.ms", "500"),
        ]);
        assert_eq!(
            check_group_configs(
                &wide,
                &set(&[
                    ("consumer.session.timeout.ms", "2000"),
                    ("consumer.heartbeat.interval.ms", "500")
                ])
            ),
            Ok(())
        );
        assert_eq!(
            check_group_configs(
                &wide,
                &set(&[
                    ("consumer.session.timeout.ms", "1000"),
                    ("consumer.heartbeat.interval.ms", "1000")
                ])
            )
            .unwrap_err(),
            "consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms"
        );
        assert_eq!(
            group_config_default(
                &props,
                group_config("consumer.heartbeat.interval.ms").expect("def")
            ),
            "5000"
        );
    }
}
