//! Every broker/controller config key Nagare knows, one definition per key (the broker's
//! counterpart of `nagare_metadata::topic_config`, and of Kafka's `ConfigDef`): Kafka's name
//! and type, the default, a one-line doc, Kafka 4.x's dynamic update mode, how a value is
//! validated, and whether Nagare acts on it.
//!
//! The table drives startup: [`check`] validates each given key (an invalid value is an
//! error naming the key) and produces the warnings for keys Nagare does not act on; the
//! parser reads typed values with the defaults written here. The README's broker-config
//! table is rendered from it by [`markdown_table`] (a unit test fails when the README is
//! stale; `NAGARE_UPDATE_README=1 cargo test -p nagare-broker config_table` rewrites it).
//! DescribeConfigs can answer types and docs from [`definition`].
//!
//! Update modes follow Kafka 4.x's `DynamicBrokerConfig`: the primary broker synonym of each
//! topic config (`ServerTopicConfigSynonyms`), the log cleaner's and thread pools' sizes,
//! `max.connections` and `producer.id.expiration.ms` are cluster-wide; listener and security
//! settings are per-broker; everything else is read-only.

use std::fmt::Write as _;

use nagare_metadata::topic_config;

use super::{invalid, ConfigError};

/// Kafka's config value types (`ConfigDef.Type`), as DescribeConfigs reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` / `false`.
    Boolean,
    /// Free text.
    String,
    /// 32-bit integer.
    Int,
    /// 16-bit integer.
    Short,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
    /// A Java class name.
    Class,
    /// A secret, never shown.
    Password,
}

impl ConfigType {
    /// Kafka's name of the type (`BOOLEAN`, `STRING`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// A key's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// A literal value, written as it would be in `server.properties`.
    Value(&'static str),
    /// No value (Kafka's `null`): the feature is off or another key decides.
    Null,
    /// Computed from other keys or the node's own settings; the text says how.
    Derived(&'static str),
}

/// Whether and how Kafka 4.x lets a key change without a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Only read at startup.
    ReadOnly,
    /// Dynamic per broker (`--entity-name <id>`).
    PerBroker,
    /// Dynamic cluster-wide (`--entity-default`), or per broker.
    ClusterWide,
}

impl UpdateMode {
    /// Kafka's documentation name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            UpdateMode::ReadOnly => "read-only",
            UpdateMode::PerBroker => "per-broker",
            UpdateMode::ClusterWide => "cluster-wide",
        }
    }
}

/// What Nagare does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nagare acts on the value.
    Implemented,
    /// Validated and kept (topic-config defaults are reported by DescribeConfigs), but nothing
    /// in Nagare acts on it yet; accepted without a warning.
    Accepted,
    /// Validated, then ignored with a startup warning: not implemented yet.
    Ignored,
    /// A Kafka key Nagare does not implement: not validated, warned about and ignored.
    Unimplemented,
}

/// How a given value is checked at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// An integer in `min..=max`.
    Range(i64, i64),
    /// `true` or `false` (any case).
    Bool,
    /// Any text; lists and listener strings are checked where they are parsed.
    Any,
    /// The broker synonym of this topic config: checked by the topic config's rules
    /// (`nagare_metadata::topic_config`), since its value is the topic's default.
    Topic(&'static str),
}

/// One broker/controller config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name of the key.
    pub name: &'static str,
    /// Kafka's type of the value.
    pub config_type: ConfigType,
    /// Kafka 4.x's default where Nagare implements it the same way, else Nagare's.
    pub default: DefaultValue,
    /// One line for users (the README and, later, DescribeConfigs' documentation).
    pub doc: &'static str,
    /// Kafka 4.x's dynamic update mode.
    pub update_mode: UpdateMode,
    /// What Nagare does with it.
    pub status: Status,
    /// How a given value is checked.
    pub validator: Validator,
}

impl ConfigDef {
    /// Checks a value for this key; the error names the key. Unimplemented keys are not
    /// checked (Nagare does not know their rules, and ignores them anyway).
    pub fn validate(&self, value: &str) -> Result<(), ConfigError> {
        if self.status == Status::Unimplemented {
            return Ok(());
        }
        let key = self.name;
        match self.validator {
            Validator::Range(min, max) => match value.trim().parse::<i64>() {
                Ok(v) if v >= min && v <= max => Ok(()),
                Ok(_) => Err(invalid(
                    key,
                    value,
                    format!("value must be between {min} and {max}"),
                )),
                Err(_) => Err(invalid(key, value, "not a number")),
            },
            Validator::Bool => match value.trim().to_ascii_lowercase().as_str() {
                "true" | "false" => Ok(()),
                _ => Err(invalid(key, value, "expected true or false")),
            },
            Validator::Any => Ok(()),
            Validator::Topic(topic) => match topic_config::lookup(topic) {
                Some(d) => topic_config::validate_value(d.kind, key, value)
                    .map_err(|r| invalid(key, value, r)),
                None => Ok(()),
            },
        }
    }

    /// The startup warning for a given value of this key, if Nagare does not act on it.
    fn warning(&self) -> Option<String> {
        let k = self.name;
        match self.status {
            Status::Implemented | Status::Accepted => None,
            Status::Ignored => Some(format!(
                "config {k} is accepted but not implemented yet; ignored"
            )),
            Status::Unimplemented => Some(format!(
                "config {k} is a Kafka config Nagare does not implement yet; ignored"
            )),
        }
    }
}

/// The definition of a broker config, if Nagare knows a key by that name.
pub fn definition(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS.iter().find(|d| d.name == name)
}

/// Every broker config definition, in the table's (and the README's) order.
pub fn definitions() -> impl Iterator<Item = &'static ConfigDef> {
    BROKER_CONFIGS.iter()
}

/// Checks one given property: an invalid value of a known key is an error naming it; a key
/// Nagare does not act on, or does not know, yields the warning to log (as Kafka warns
/// about unknown keys), so existing files keep working.
pub(crate) fn check(key: &str, value: &str) -> Result<Option<String>, ConfigError> {
    match definition(key).or_else(|| listener_override(key)) {
        Some(d) => {
            d.validate(value)?;
            Ok(d.warning())
        }
        // Listener-prefixed SASL settings (`listener.name.<l>.sasl.enabled.mechanisms`,
        // `listener.name.<l>.<mechanism>.sasl.jaas.config`,
        // `listener.name.<l>.oauthbearer.sasl.oauthbearer.*`) are read by `crate::sasl`;
        // Kafka's OAUTHBEARER setups also name the validator callback handler, which is
        // what Nagare does built in.
        None if key.starts_with("listener.name.")
            && (key.ends_with(".sasl.enabled.mechanisms")
                || key.ends_with(".sasl.jaas.config")
                || key.ends_with(".sasl.server.callback.handler.class")
                || key.contains(".sasl.oauthbearer.")) =>
        {
            Ok(None)
        }
        None => Ok(Some(format!("unknown config {key}; ignored"))),
    }
}

/// Keys besides `ssl.*` that a listener may override with `listener.name.<listener>.<key>`
/// and Nagare acts on.
const LISTENER_OVERRIDABLE: &[&str] = &["max.connection.creation.rate"];

/// The definition behind a listener override, `listener.name.<listener>.<key>` (Kafka's
/// per-listener settings, e.g. `listener.name.internal.ssl.client.auth`): the TLS keys and
/// [`LISTENER_OVERRIDABLE`] can be overridden that way.
pub(crate) fn listener_override(key: &str) -> Option<&'static ConfigDef> {
    let rest = key.strip_prefix("listener.name.")?;
    let (listener, inner) = rest.split_once('.')?;
    if listener.is_empty() {
        return None;
    }
    definition(inner)
        .filter(|d| d.name.starts_with("ssl.") || LISTENER_OVERRIDABLE.contains(&d.name))
}

/// The README's broker-config table (markdown): key, default, notes, Kafka's update mode.
pub fn markdown_table() -> String {
    let mut out = String::from("| key | default | notes | dynamic in Kafka |\n|---|---|---|---|\n");
    for d in definitions() {
        let default = match d.default {
            DefaultValue::Value("") => "empty".to_string(),
            DefaultValue::Value(v) => format!("`{v}`"),
            DefaultValue::Null => "none".to_string(),
            DefaultValue::Derived(how) => how.to_string(),
        };
        let status = match d.status {
            Status::Implemented => "",
            Status::Accepted => " *Accepted; Nagare does not act on it yet.*",
            Status::Ignored => " *Not implemented yet: validated, then ignored with a warning.*",
            Status::Unimplemented => " *Not implemented: warned about and ignored.*",
        };
        let _ = writeln!(
            out,
            "| `{}` | {default} | {}{status} | {} |",
            d.name,
            d.doc,
            d.update_mode.name()
        );
    }
    out
}

const I16: i64 = i16::MAX as i64;
const I32: i64 = i32::MAX as i64;
const I64: i64 = i64::MAX;
/// Kafka's `Long.MAX_VALUE` default ("never" / "unlimited").
const LONG_MAX: &str = "9223372036854775807";
/// Kafka's `Integer.MAX_VALUE` default ("unlimited").
const INT_MAX: &str = "2147483647";

const BOOLEAN: ConfigType = ConfigType::Boolean;
const STRING: ConfigType = ConfigType::String;
const INT: ConfigType = ConfigType::Int;
const SHORT: ConfigType = ConfigType::Short;
const LONG: ConfigType = ConfigType::Long;
const DOUBLE: ConfigType = ConfigType::Double;
const LIST: ConfigType = ConfigType::List;
const PASSWORD: ConfigType = ConfigType::Password;
const CLASS: ConfigType = ConfigType::Class;

use self::DefaultValue::{Derived, Null, Value};
use self::UpdateMode::{ClusterWide, PerBroker, ReadOnly};
use self::Validator::{Any, Bool, Range, Topic};

/// An implemented key.
const fn def(
    name: &'static str,
    config_type: ConfigType,
    default: DefaultValue,
    validator: Validator,
    update_mode: UpdateMode,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        config_type,
        default,
        doc,
        update_mode,
        status: Status::Implemented,
        validator,
    }
}

impl ConfigDef {
    const fn with_status(self, status: Status) -> Self {
        ConfigDef { status, ..self }
    }
}

/// A Kafka key Nagare does not implement (never validated).
const fn unimplemented(
    name: &'static str,
    config_type: ConfigType,
    default: DefaultValue,
    update_mode: UpdateMode,
    doc: &'static str,
) -> ConfigDef {
    def(name, config_type, default, Any, update_mode, doc).with_status(Status::Unimplemented)
}

/// Every broker/controller config Nagare knows, grouped as the README shows them.
// One key per entry, its doc on the next line: easier to scan than rustfmt's one argument
// per line.
#[rustfmt::skip]
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    // Identity, roles and listeners (see `listeners.rs` for the rules tying them together).
    def("node.id", INT, Value("1"), Range(0, I32), ReadOnly,
        "This node's id (Nagare's default; Kafka requires it)."),
    def("broker.id", INT, Null, Range(0, I32), ReadOnly,
        "Older name of `node.id`, used when `node.id` is not set."),
    def("process.roles", LIST, Value("broker,controller"), Any, ReadOnly,
        "`broker`, `controller`, or both (combined); Nagare's default (Kafka requires it)."),
    def("listeners", STRING, Value("PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"), Any, PerBroker,
        "`NAME://host:port,...`: every non-controller listener serves clients (the inter-broker one is `inter.broker.listener.name`, else the first); a controller serves the quorum on the first of `controller.listener.names`; a broker-only node must not list a controller listener, a controller-only node only controller listeners."),
    def("http.listeners", STRING, Value(""), Any, ReadOnly,
        "Nagare's own key (Kafka has no HTTP listener): `http://host:port,...` serving Prometheus `/metrics`, `/health/live` and `/health/ready` (see docs/METRICS.md) and, on a broker, the web console at `/` (README \"Web console\"); empty serves none. `https://host:port` entries are served with TLS, configured as a Kafka listener named HTTP would be (`listener.name.http.ssl.keystore.location`, ..., else the node's `ssl.*`; reloaded when the files change). The console asks for a SASL login when security is on; `/metrics` requires `http.metrics.bearer.token` when set; `/health/*` are open."),
    def("log.format", STRING, Value("text"), Any, ReadOnly,
        "Nagare's own key (Kafka configures log4j): `text` (human-readable lines) or `json` (one JSON object per line: timestamp, level, target, message and fields) on standard output."),
    def("log.level", STRING, Value("INFO"), Any, ReadOnly,
        "Nagare's own key: the root logger's level (OFF, FATAL, ERROR, WARN, INFO, DEBUG, TRACE, ALL). `RUST_LOG`, when set, replaces `log.level` and `log.levels` at startup. Changed at run time through the BROKER_LOGGER resource (`kafka-configs --entity-type broker-loggers`)."),
    def("log.levels", STRING, Value(""), Any, ReadOnly,
        "Nagare's own key: per-logger levels, `logger=LEVEL,...`, a logger being a module path such as `nagare_broker::replica_manager` (a logger without a level inherits its nearest ancestor's, then root's)."),
    def("advertised.listeners", STRING, Derived("the broker listeners"), Any, ReadOnly,
        "What Metadata tells clients; by default the non-controller `listeners`, a wildcard or empty host advertised as `127.0.0.1`."),
    def("controller.listener.names", STRING, Value("CONTROLLER"), Any, ReadOnly,
        "Names of the controller listeners; a controller serves the quorum on the first."),
    def("inter.broker.listener.name", STRING, Null, Any, ReadOnly,
        "The listener brokers replicate, send transaction markers and verify transactions over; it must be in `listeners` and `advertised.listeners` and not a controller listener. Unset: the first non-controller listener (Kafka would pick the listener named by `security.inter.broker.protocol`)."),
    def("listener.security.protocol.map", STRING, Value("SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"), Any, PerBroker,
        "`LISTENER_NAME:PROTOCOL,...`: each listener's security protocol; controller listeners not in the default map speak PLAINTEXT. Every protocol is served on every listener (TLS: the `ssl.*` keys; SASL: `sasl.enabled.mechanisms`); a SASL inter-broker or controller listener also needs `sasl.mechanism.inter.broker.protocol` / `sasl.mechanism.controller.protocol` and a login in that listener's JAAS config, or startup fails naming the key."),
    def("cluster.id", STRING, Null, Any, ReadOnly,
        "Nagare extension: the cluster id of a self-formatted single node (else one is generated)."),
    // The KRaft quorum and broker liveness.
    def("controller.quorum.voters", LIST, Derived("this node, on its controller listener"), Any, ReadOnly,
        "`id@host:port,...`: a node with the controller role must be one of them, a broker-only node must set them to find the active controller."),
    def("controller.quorum.election.timeout.ms", INT, Value("1000"), Range(1, I32), ReadOnly,
        "A voter without a leader for this long, plus a random `controller.quorum.election.backoff.max.ms`, starts an election."),
    def("controller.quorum.election.backoff.max.ms", INT, Value("1000"), Range(0, I32), ReadOnly,
        "Upper bound of the random backoff before a new election."),
    def("controller.quorum.fetch.timeout.ms", INT, Value("2000"), Range(1, I32), ReadOnly,
        "A follower that hears nothing from the leader for this long starts a (pre-)election."),
    def("controller.quorum.request.timeout.ms", INT, Value("2000"), Range(1, I32), ReadOnly,
        "Timeout of a quorum request to another voter."),
    def("controller.quorum.retry.backoff.ms", INT, Value("20"), Range(0, I32), ReadOnly,
        "Pause before a failed quorum request is retried."),
    def("metadata.log.max.record.bytes.between.snapshots", LONG, Value("20971520"), Range(1, I64), ReadOnly,
        "Committed metadata bytes between two snapshots (KIP-630)."),
    def("broker.session.timeout.ms", INT, Value("9000"), Range(1, I32), ReadOnly,
        "The active controller fences a broker that has not heartbeated for this long."),
    def("broker.heartbeat.interval.ms", INT, Value("2000"), Range(1, I32), ReadOnly,
        "How often a broker heartbeats to the active controller."),
    def("nagare.broker.disconnect.fence.grace.ms", INT, Value("100"), Range(-1, I32), ReadOnly,
        "Nagare only: the active controller fences a broker this long after the peer closed the connection its latest heartbeat arrived on (its process died), unless it heartbeats again; -1 fences on broker.session.timeout.ms only, as Kafka."),
    def("nagare.metadata.leader.failover.wait.ms", INT, Value("600"), Range(0, I32), ReadOnly,
        "Nagare only: a broker that saw a partition leader close or refuse its replica fetcher's connection (its process died) holds Metadata answers naming that leader until the leadership moved, the leader is reachable again, or this long after it saw it go; 0 answers at once, as Kafka."),
    // Leader elections on the controller.
    def("unclean.leader.election.enable", BOOLEAN, Value("false"), Topic("unclean.leader.election.enable"), ClusterWide,
        "Default of the topic config; the controllers' own value (or a cluster-wide dynamic broker config) is the default."),
    def("auto.leader.rebalance.enable", BOOLEAN, Value("true"), Bool, ReadOnly,
        "The active controller moves leadership back to preferred replicas."),
    def("leader.imbalance.check.interval.seconds", LONG, Value("300"), Range(1, I64), ReadOnly,
        "How often the active controller checks for leader imbalance."),
    def("leader.imbalance.per.broker.percentage", INT, Value("10"), Range(0, I32), ReadOnly,
        "A broker's share of partitions led elsewhere that triggers a rebalance (the ZooKeeper-era rule; `0` re-elects every imbalanced partition, as Kafka 4's KRaft controller does)."),
    // Replication.
    def("replica.lag.time.max.ms", LONG, Value("30000"), Range(1, I32), ReadOnly,
        "A follower that has not caught up for this long leaves the ISR (the leader asks the controller with AlterPartition)."),
    def("replica.fetch.wait.max.ms", INT, Value("500"), Range(0, I32), ReadOnly,
        "How long a follower fetch waits for data (one fetcher per source broker)."),
    def("replica.fetch.min.bytes", INT, Value("1"), Range(1, I32), ReadOnly,
        "Bytes a follower fetch waits for."),
    def("replica.fetch.max.bytes", INT, Value("1048576"), Range(0, I32), ReadOnly,
        "Per-partition limit of a follower fetch (at least one batch is returned anyway)."),
    def("replica.fetch.response.max.bytes", INT, Value("10485760"), Range(0, I32), ReadOnly,
        "Limit of a whole follower fetch response."),
    def("replica.fetch.backoff.ms", INT, Value("1000"), Range(0, I32), ReadOnly,
        "Pause of a follower after a failed fetch."),
    def("replica.socket.timeout.ms", INT, Value("30000"), Range(1, I32), ReadOnly,
        "Timeout of a follower's fetch request."),
    def("replica.high.watermark.checkpoint.interval.ms", LONG, Value("5000"), Range(1, I64), ReadOnly,
        "How often every partition's high watermark is written to `replication-offset-checkpoint` (also on clean shutdown); read at startup, so a restarted leader or follower serves consumers up to its last known high watermark at once."),
    def("replica.selector.class", STRING, Null, Any, ReadOnly,
        "`org.apache.kafka.common.replica.RackAwareReplicaSelector` (KIP-392; other selectors are refused): a leader sends a consumer whose `client.rack` matches another replica's `broker.rack` to that in-sync follower (`preferred_read_replica`); consumers using Fetch v11+ may read from followers up to the follower's high watermark whatever this is."),
    def("broker.rack", STRING, Null, Any, ReadOnly,
        "This broker's rack: rack-aware replica placement and KIP-392 follower fetching."),
    def("min.insync.replicas", INT, Value("1"), Topic("min.insync.replicas"), ClusterWide,
        "Default of the topic config: an acks=all produce to a partition with a smaller ISR fails with NOT_ENOUGH_REPLICAS."),
    // Log directories and topic defaults.
    def("log.dirs", STRING, Value("./nagare-data"), Any, ReadOnly,
        "Data directories; Nagare uses the first (a warning names the others)."),
    def("log.dir", STRING, Null, Any, ReadOnly,
        "The data directory when `log.dirs` is not set."),
    def("metadata.log.dir", STRING, Derived("the first log dir"), Any, ReadOnly,
        "Holds `__cluster_metadata-0`."),
    def("num.partitions", INT, Value("1"), Range(1, I32), ReadOnly,
        "Partitions of auto-created topics and of CreateTopics with -1."),
    def("default.replication.factor", INT, Value("1"), Range(1, I16), ReadOnly,
        "Replication factor of auto-created topics and of CreateTopics with -1."),
    def("auto.create.topics.enable", BOOLEAN, Value("true"), Bool, ReadOnly,
        "Metadata requests create unknown topics."),
    def("delete.topic.enable", BOOLEAN, Value("true"), Bool, ReadOnly,
        "Whether DeleteTopics may delete topics."),
    def("log.retention.ms", LONG, Derived("168 hours (`log.retention.hours`)"), Topic("retention.ms"), ClusterWide,
        "Default of topic `retention.ms` (-1: no time limit); takes precedence over `log.retention.minutes` and `log.retention.hours`."),
    def("log.retention.minutes", INT, Null, Range(-1, I32), ReadOnly,
        "`log.retention.ms` in minutes; takes precedence over `log.retention.hours`."),
    def("log.retention.hours", INT, Value("168"), Range(-1, I32), ReadOnly,
        "`log.retention.ms` in hours, used when neither `.ms` nor `.minutes` is set."),
    def("log.retention.bytes", LONG, Value("-1"), Topic("retention.bytes"), ClusterWide,
        "Default of topic `retention.bytes` (-1: no size limit)."),
    def("log.segment.bytes", INT, Value("1073741824"), Topic("segment.bytes"), ClusterWide,
        "Default of topic `segment.bytes` (1 GiB)."),
    def("log.roll.ms", LONG, Derived("168 hours (`log.roll.hours`)"), Topic("segment.ms"), ClusterWide,
        "Default of topic `segment.ms`; takes precedence over `log.roll.hours`."),
    def("log.roll.hours", INT, Value("168"), Range(1, I32), ReadOnly,
        "`log.roll.ms` in hours."),
    def("log.retention.check.interval.ms", LONG, Value("300000"), Range(1, I64), ReadOnly,
        "How often retention runs."),
    def("log.segment.delete.delay.ms", LONG, Value("60000"), Topic("file.delete.delay.ms"), ClusterWide,
        "Default of topic `file.delete.delay.ms`: how long a deleted segment stays on disk."),
    def("log.index.interval.bytes", INT, Value("4096"), Topic("index.interval.bytes"), ClusterWide,
        "Default of topic `index.interval.bytes`: bytes between two offset-index entries."),
    def("log.index.size.max.bytes", INT, Value("10485760"), Topic("segment.index.bytes"), ClusterWide,
        "Default of topic `segment.index.bytes`."),
    def("message.max.bytes", INT, Value("1048588"), Topic("max.message.bytes"), ClusterWide,
        "Default of topic `max.message.bytes` (MESSAGE_TOO_LARGE above it); also the group coordinator's largest record batch."),
    def("log.message.timestamp.type", STRING, Value("CreateTime"), Topic("message.timestamp.type"), ClusterWide,
        "Default of topic `message.timestamp.type`."),
    def("log.cleanup.policy", LIST, Value("delete"), Topic("cleanup.policy"), ClusterWide,
        "Default of topic `cleanup.policy` (`delete`, `compact` or both)."),
    // Requests, flushing and checkpoints.
    def("socket.request.max.bytes", INT, Value("104857600"), Range(1, I32), ReadOnly,
        "Larger request frames are refused before allocating."),
    def("log.flush.interval.ms", LONG, Value("1000"), Topic("flush.ms"), ClusterWide,
        "**Nagare's default** (Kafka never fsyncs by default, relying on replication): period of the background fsync of data written with acks 0/1; see the durability policy below."),
    def("log.flush.offset.checkpoint.interval.ms", INT, Value("60000"), Range(0, I32), ReadOnly,
        "Recovery-point checkpoints (also written after every periodic flush, so a crash rescans at most about a second of writes)."),
    // The log cleaner (compaction).
    def("log.cleaner.enable", BOOLEAN, Value("true"), Bool, ReadOnly,
        "The log cleaner compacts `cleanup.policy=compact` topics (incl. `__consumer_offsets`)."),
    def("log.cleaner.backoff.ms", LONG, Value("15000"), Range(0, I64), ClusterWide,
        "Pause of the cleaner when no log needs cleaning."),
    def("log.cleaner.threads", INT, Value("1"), Range(0, I32), ClusterWide,
        "Cleaning runs on one background task; `0` disables it; the dedupe buffer is split by this."),
    def("log.cleaner.dedupe.buffer.size", LONG, Value("134217728"), Range(0, I64), ClusterWide,
        "Memory for the key → offset map of one cleaning (×0.9 load factor)."),
    def("log.cleaner.min.cleanable.ratio", DOUBLE, Value("0.5"), Topic("min.cleanable.dirty.ratio"), ClusterWide,
        "Default of topic `min.cleanable.dirty.ratio`."),
    def("log.cleaner.delete.retention.ms", LONG, Value("86400000"), Topic("delete.retention.ms"), ClusterWide,
        "Default of topic `delete.retention.ms` (tombstones, KIP-534 delete horizon)."),
    def("log.cleaner.min.compaction.lag.ms", LONG, Value("0"), Topic("min.compaction.lag.ms"), ClusterWide,
        "Default of topic `min.compaction.lag.ms` (KIP-354)."),
    def("log.cleaner.max.compaction.lag.ms", LONG, Value(LONG_MAX), Topic("max.compaction.lag.ms"), ClusterWide,
        "Default of topic `max.compaction.lag.ms` (KIP-354; the default is unlimited)."),
    // Connections and fetches.
    def("max.connections", INT, Value("10000"), Range(0, I32), ClusterWide,
        "Open client connections at most (Nagare's default; Kafka's is unlimited)."),
    def("connections.max.idle.ms", LONG, Value("600000"), Range(1, I64), ReadOnly,
        "Connections without a request for this long are closed."),
    def("max.connections.per.ip", INT, Value(INT_MAX), Range(0, I32), ClusterWide,
        "Open connections from one IP address at most (client listeners); a connection over it is closed at once with a log line. Read at startup."),
    def("max.connections.per.ip.overrides", STRING, Value(""), Any, ClusterWide,
        "`host-or-ip:count,...`: per-address exceptions to `max.connections.per.ip` (host names resolved at startup). Read at startup."),
    def("max.connection.creation.rate", INT, Value(INT_MAX), Range(0, I32), ClusterWide,
        "New connections per second the broker accepts (all listeners); over it, accepting is delayed (KIP-612). `listener.name.<listener>.max.connection.creation.rate` sets a listener's own rate; `connection_creation_rate` client quotas on ip entities limit one address. Read at startup."),
    // Client quotas (KIP-13): the quota values themselves live in the metadata log.
    def("quota.window.num", INT, Value("11"), Range(1, I32), ReadOnly,
        "Samples kept for client quota rates."),
    def("quota.window.size.seconds", INT, Value("1"), Range(1, I32), ReadOnly,
        "Length of one client quota sample."),
    def("request.timeout.ms", INT, Value("30000"), Range(0, I32), ReadOnly,
        "How long the broker waits for the writes of a request it makes on behalf of another broker (WriteTxnMarkers' markers reaching the high watermark)."),
    def("fetch.max.bytes", INT, Value("57671680"), Range(1024, I32), ReadOnly,
        "Cap on one fetch response."),
    def("max.incremental.fetch.session.cache.slots", INT, Value("1000"), Range(0, I32), ReadOnly,
        "Incremental fetch sessions kept (KIP-227)."),
    def("max.request.partition.size.limit", INT, Value("2000"), Range(1, I32), ReadOnly,
        "Most partitions one DescribeTopicPartitions response holds (KIP-966); the client pages on with the cursor."),
    def("http.metrics.bearer.token", PASSWORD, Null, Any, ReadOnly,
        "Nagare's own key: when set, `GET /metrics` on `http.listeners` requires `Authorization: Bearer <token>` (Prometheus' `authorization: {credentials: ...}`), else 401; `/health/*` stay open for probes; the console has its own SASL login."),
    def("metrics.enabled", BOOLEAN, Value("true"), Bool, ReadOnly,
        "Nagare's own key: `false` stops recording per-request metrics (counts, bytes, latency histograms, errors per API) on every listener, to measure their cost; topic counters, gauges and `/metrics` stay."),
    def("telemetry.max.bytes", INT, Value("1048576"), Range(1, I32), ReadOnly,
        "Largest (compressed) metrics payload of a KIP-714 PushTelemetry request; larger ones get TELEMETRY_TOO_LARGE."),
    // Producers and transactions.
    def("transaction.max.timeout.ms", INT, Value("900000"), Range(1, I32), ReadOnly,
        "Largest transaction timeout a producer may ask for."),
    def("transaction.partition.verification.enable", BOOLEAN, Value("true"), Bool, ClusterWide,
        "KIP-890 part 1: a partition leader asks the transaction coordinator (AddPartitionsToTxn v4+, verify only) before the first transactional write of a producer's transaction, and refuses it if the partition is not in the ongoing transaction Changeable at run time as a dynamic broker config."),
    def("producer.id.expiration.ms", INT, Value("86400000"), Range(1, I32), ClusterWide,
        "Idle idempotent-producer state is dropped after this."),
    // The transaction coordinator.
    def("transaction.state.log.num.partitions", INT, Value("50"), Range(1, 10_000), ReadOnly,
        "Partitions of `__transaction_state` (created on the first FindCoordinator(TRANSACTION) or transactional InitProducerId)."),
    def("transaction.state.log.replication.factor", SHORT, Value("3"), Range(1, I16), ReadOnly,
        "`__transaction_state` is created once this many brokers are alive (COORDINATOR_NOT_AVAILABLE until then, as in Kafka); left at its default it is capped at the registered brokers, as `offsets.topic.replication.factor`."),
    def("transaction.state.log.min.isr", INT, Value("2"), Range(1, I32), ReadOnly,
        "`min.insync.replicas` of `__transaction_state` (capped at its replication factor when that was capped)."),
    def("transaction.state.log.segment.bytes", INT, Value("104857600"), Range(1, I32), ReadOnly,
        "`segment.bytes` of `__transaction_state`."),
    def("transactional.id.expiration.ms", INT, Value("604800000"), Range(1, I32), ReadOnly,
        "A transactional id with no transaction for this long is removed."),
    def("transaction.abort.timed.out.transaction.cleanup.interval.ms", INT, Value("10000"), Range(1, I32), ReadOnly,
        "How often the coordinator aborts transactions open longer than their timeout."),
    def("transaction.remove.expired.transaction.cleanup.interval.ms", INT, Value("3600000"), Range(1, I32), ReadOnly,
        "How often expired transactional ids are removed."),
    // The group coordinator.
    def("offsets.topic.num.partitions", INT, Value("50"), Range(1, 10_000), ReadOnly,
        "Partitions of `__consumer_offsets` (created on first FindCoordinator)."),
    def("offsets.topic.replication.factor", SHORT, Value("3"), Range(1, I16), ReadOnly,
        "`__consumer_offsets` is created once this many brokers are alive (COORDINATOR_NOT_AVAILABLE until then, as in Kafka); left at its default it is capped at the registered brokers, so a single node works."),
    def("offsets.topic.segment.bytes", INT, Value("104857600"), Range(1, I32), ReadOnly,
        "`segment.bytes` of `__consumer_offsets`."),
    def("offsets.commit.timeout.ms", INT, Value("5000"), Range(1, I32), ReadOnly,
        "A group write whose records do not reach the `__consumer_offsets` high watermark in time fails with COORDINATOR_NOT_AVAILABLE."),
    def("offsets.retention.minutes", INT, Value("10080"), Range(1, I32), ReadOnly,
        "Committed offsets of empty groups expire after this."),
    def("offsets.retention.check.interval.ms", LONG, Value("600000"), Range(1, I64), ReadOnly,
        "How often expired offsets are removed."),
    def("offset.metadata.max.bytes", INT, Value("4096"), Range(0, I32), ReadOnly,
        "Largest metadata string of an offset commit."),
    def("group.initial.rebalance.delay.ms", INT, Value("3000"), Range(0, I32), ReadOnly,
        "How long a new classic group waits for more members before its first rebalance."),
    def("group.min.session.timeout.ms", INT, Value("6000"), Range(0, I32), ReadOnly,
        "Smallest session timeout a classic-group member may ask for."),
    def("group.max.session.timeout.ms", INT, Value("1800000"), Range(0, I32), ReadOnly,
        "Largest session timeout a classic-group member may ask for."),
    def("group.max.size", INT, Value(INT_MAX), Range(1, I32), ReadOnly,
        "Members of a classic group at most (the default is unlimited)."),
    def("group.consumer.session.timeout.ms", INT, Value("45000"), Range(1, I32), ReadOnly,
        "KIP-848 members that do not heartbeat for this long are removed."),
    def("group.consumer.heartbeat.interval.ms", INT, Value("5000"), Range(1, I32), ReadOnly,
        "Heartbeat interval given to KIP-848 members (one reconciliation step per heartbeat)."),
    def("group.consumer.assignors", LIST, Value("uniform,range"), Any, ReadOnly,
        "Server-side assignors, the first is the default; Kafka's class names are accepted too."),
    def("group.consumer.max.size", INT, Value(INT_MAX), Range(1, I32), ReadOnly,
        "Members of a KIP-848 consumer group at most (the default is unlimited)."),
    // Bounds of the KIP-848 group configs (the GROUP resource, `consumer.*`): a group's
    // override outside them is refused (Kafka's `GroupConfig.validateValues`).
    def("group.consumer.min.session.timeout.ms", INT, Value("45000"), Range(1, I32), ReadOnly,
        "Smallest `consumer.session.timeout.ms` a group config may set."),
    def("group.consumer.max.session.timeout.ms", INT, Value("60000"), Range(1, I32), ReadOnly,
        "Largest `consumer.session.timeout.ms` a group config may set."),
    def("group.consumer.min.heartbeat.interval.ms", INT, Value("5000"), Range(1, I32), ReadOnly,
        "Smallest `consumer.heartbeat.interval.ms` a group config may set."),
    def("group.consumer.max.heartbeat.interval.ms", INT, Value("15000"), Range(1, I32), ReadOnly,
        "Largest `consumer.heartbeat.interval.ms` a group config may set."),
    // Share groups (KIP-932) do not exist in Nagare; these bound the `share.*` group configs,
    // which are validated, stored and described only.
    def("group.share.session.timeout.ms", INT, Value("45000"), Range(1, I32), ReadOnly,
        "Default `share.session.timeout.ms` of a group (share groups: stored and described only).").with_status(Status::Accepted),
    def("group.share.min.session.timeout.ms", INT, Value("45000"), Range(1, I32), ReadOnly,
        "Smallest `share.session.timeout.ms` a group config may set.").with_status(Status::Accepted),
    def("group.share.max.session.timeout.ms", INT, Value("60000"), Range(1, I32), ReadOnly,
        "Largest `share.session.timeout.ms` a group config may set.").with_status(Status::Accepted),
    def("group.share.heartbeat.interval.ms", INT, Value("5000"), Range(1, I32), ReadOnly,
        "Default `share.heartbeat.interval.ms` of a group.").with_status(Status::Accepted),
    def("group.share.min.heartbeat.interval.ms", INT, Value("5000"), Range(1, I32), ReadOnly,
        "Smallest `share.heartbeat.interval.ms` a group config may set.").with_status(Status::Accepted),
    def("group.share.max.heartbeat.interval.ms", INT, Value("15000"), Range(1, I32), ReadOnly,
        "Largest `share.heartbeat.interval.ms` a group config may set.").with_status(Status::Accepted),
    def("group.share.record.lock.duration.ms", INT, Value("30000"), Range(1000, 3_600_000), ReadOnly,
        "Default `share.record.lock.duration.ms` of a group.").with_status(Status::Accepted),
    def("group.share.min.record.lock.duration.ms", INT, Value("15000"), Range(1000, 30_000), ReadOnly,
        "Smallest `share.record.lock.duration.ms` a group config may set.").with_status(Status::Accepted),
    def("group.share.max.record.lock.duration.ms", INT, Value("60000"), Range(30_000, 3_600_000), ReadOnly,
        "Largest `share.record.lock.duration.ms` a group config may set.").with_status(Status::Accepted),
    // Topic-config defaults Nagare validates and reports but does not act on yet.
    def("compression.type", STRING, Value("producer"), Topic("compression.type"), ClusterWide,
        "Default of the topic config; batches are stored as produced.").with_status(Status::Ignored),
    def("log.flush.interval.messages", LONG, Value(LONG_MAX), Topic("flush.messages"), ClusterWide,
        "Default of topic `flush.messages`.").with_status(Status::Ignored),
    def("log.preallocate", BOOLEAN, Value("false"), Topic("preallocate"), ClusterWide,
        "Default of topic `preallocate`.").with_status(Status::Ignored),
    def("log.roll.jitter.ms", LONG, Value("0"), Topic("segment.jitter.ms"), ClusterWide,
        "Default of topic `segment.jitter.ms`.").with_status(Status::Ignored),
    // Tiered storage (KIP-405; see the README's "Tiered storage" section and crates/nagare-remote-storage).
    def("log.local.retention.ms", LONG, Value("-2"), Topic("local.retention.ms"), ClusterWide,
        "Default of topic `local.retention.ms` (tiered storage): how long uploaded segments stay on local disk; -2 = `retention.ms`."),
    def("log.local.retention.bytes", LONG, Value("-2"), Topic("local.retention.bytes"), ClusterWide,
        "Default of topic `local.retention.bytes` (tiered storage): local bytes kept of uploaded segments; -2 = `retention.bytes`."),
    def("remote.log.storage.system.enable", BOOLEAN, Value("false"), Bool, ReadOnly,
        "Lets topics enable tiered storage (`remote.storage.enable`); requires `rsm.config.url`."),
    def("remote.log.manager.task.interval.ms", LONG, Value("30000"), Range(1, I64), ReadOnly,
        "Interval of the leader's copy and expiration tasks per tiered partition."),
    def("remote.log.manager.task.retry.backoff.ms", LONG, Value("500"), Range(1, I64), ReadOnly,
        "First backoff after a failed upload, read or delete."),
    def("remote.log.manager.task.retry.backoff.max.ms", LONG, Value("30000"), Range(1, I64), ReadOnly,
        "Upper bound of that backoff (exponential, with 20% jitter)."),
    def("remote.log.manager.copy.max.bytes.per.second", LONG, Value(LONG_MAX), Range(1, I64), ClusterWide,
        "Upload rate limit of the broker (all partitions together)."),
    def("remote.log.reader.threads", INT, Value("10"), Range(1, I32), ClusterWide,
        "Concurrent remote reads (fetches below the local log start)."),
    def("remote.log.index.file.cache.total.size.bytes", LONG, Value("1073741824"), Range(1, I64), ClusterWide,
        "Bytes of remote offset/time/transaction indexes cached in memory."),
    def("remote.log.storage.manager.class.name", CLASS, Null, Any, ReadOnly,
        "Accepted and ignored: Nagare's remote storage manager (object_store: S3, file://) is built in and configured by `rsm.config.*`.").with_status(Status::Accepted),
    def("remote.log.metadata.manager.class.name", CLASS, Value("org.apache.kafka.server.log.remote.metadata.storage.TopicBasedRemoteLogMetadataManager"), Any, ReadOnly,
        "Accepted and ignored: Nagare keeps remote segment metadata in a manifest object per partition (docs/ARCHITECTURE.md).").with_status(Status::Accepted),
    def("rsm.config.url", STRING, Null, Any, ReadOnly,
        "Nagare's object store: `s3://bucket/prefix` or `file:///absolute/path`; required when `remote.log.storage.system.enable=true`."),
    def("rsm.config.endpoint", STRING, Null, Any, ReadOnly,
        "S3 endpoint (MinIO, moto, ...); `http://` allows plain HTTP. Unset: AWS."),
    def("rsm.config.region", STRING, Null, Any, ReadOnly,
        "S3 region; unset: `AWS_REGION`, else `us-east-1`."),
    def("rsm.config.access.key.id", STRING, Null, Any, ReadOnly,
        "S3 access key; unset: the standard AWS chain (environment, web identity, instance metadata)."),
    def("rsm.config.secret.access.key", PASSWORD, Null, Any, ReadOnly,
        "S3 secret key (with `rsm.config.access.key.id`)."),
    def("rsm.config.session.token", PASSWORD, Null, Any, ReadOnly,
        "S3 session token for temporary credentials."),
    def("rsm.config.path.style.access.enabled", BOOLEAN, Value("false"), Bool, ReadOnly,
        "`true`: path-style requests (`endpoint/bucket/key`), as MinIO and moto need."),
    // More topic-config defaults Nagare accepts but does not act on yet.
    def("log.message.timestamp.before.max.ms", LONG, Value(LONG_MAX), Topic("message.timestamp.before.max.ms"), ClusterWide,
        "Default of topic `message.timestamp.before.max.ms`.").with_status(Status::Accepted),
    def("log.message.timestamp.after.max.ms", LONG, Value("3600000"), Topic("message.timestamp.after.max.ms"), ClusterWide,
        "Default of topic `message.timestamp.after.max.ms`.").with_status(Status::Accepted),
    def("follower.replication.throttled.replicas", LIST, Value(""), Topic("follower.replication.throttled.replicas"), ReadOnly,
        "A topic config in Kafka (replication quotas), accepted here too.").with_status(Status::Accepted),
    def("leader.replication.throttled.replicas", LIST, Value(""), Topic("leader.replication.throttled.replicas"), ReadOnly,
        "A topic config in Kafka (replication quotas), accepted here too.").with_status(Status::Accepted),
    // Kafka keys Nagare does not implement (found in Kafka's sample files).
    unimplemented("num.network.threads", INT, Value("3"), ClusterWide,
        "Network threads; Nagare serves connections as async tasks."),
    unimplemented("num.io.threads", INT, Value("8"), ClusterWide,
        "Request handler threads; Nagare handles requests on its async runtime."),
    unimplemented("background.threads", INT, Value("10"), ClusterWide,
        "Threads of background tasks; Nagare runs them as async tasks."),
    unimplemented("num.replica.alter.log.dirs.threads", INT, Null, ClusterWide,
        "Threads moving replicas between log dirs; Nagare has no AlterReplicaLogDirs."),
    // Replication quotas (Kafka's DynamicReplicationConfig, per broker).
    unimplemented("leader.replication.throttled.rate", LONG, Value(LONG_MAX), PerBroker,
        "Bytes/s a leader serves to throttled followers; Nagare does not throttle replication."),
    unimplemented("follower.replication.throttled.rate", LONG, Value(LONG_MAX), PerBroker,
        "Bytes/s a follower fetches for throttled replicas; Nagare does not throttle replication."),
    unimplemented("replica.alter.log.dirs.io.max.bytes.per.second", LONG, Value(LONG_MAX), PerBroker,
        "Bytes/s of replica moves between log dirs; Nagare has no AlterReplicaLogDirs."),
    unimplemented("metric.reporters", LIST, Value(""), ClusterWide,
        "Java metric reporter classes; Nagare exports Prometheus metrics (`http.listeners`)."),
    unimplemented("queued.max.requests", INT, Value("500"), ReadOnly,
        "Requests queued for the handler threads."),
    unimplemented("socket.send.buffer.bytes", INT, Value("102400"), ReadOnly,
        "SO_SNDBUF of client connections."),
    unimplemented("socket.receive.buffer.bytes", INT, Value("102400"), ReadOnly,
        "SO_RCVBUF of client connections."),
    unimplemented("num.recovery.threads.per.data.dir", INT, Value("2"), ClusterWide,
        "Threads recovering logs at startup."),
    unimplemented("num.replica.fetchers", INT, Value("1"), ClusterWide,
        "Fetcher threads per source broker; Nagare runs one fetcher per source broker."),
    unimplemented("log.flush.scheduler.interval.ms", LONG, Value(LONG_MAX), ReadOnly,
        "How often the flusher checks logs; see `log.flush.interval.ms`."),
    unimplemented("log.cleaner.io.max.bytes.per.second", DOUBLE, Value("1.7976931348623157E308"), ClusterWide,
        "I/O throttle of the log cleaner."),
    unimplemented("log.cleaner.io.buffer.size", INT, Value("524288"), ClusterWide,
        "I/O buffer of the log cleaner."),
    unimplemented("log.cleaner.io.buffer.load.factor", DOUBLE, Value("0.9"), ClusterWide,
        "Load factor of the cleaner's dedupe buffer."),
    unimplemented("share.coordinator.state.topic.replication.factor", SHORT, Value("3"), ReadOnly,
        "Replication factor of `__share_group_state` (KIP-932)."),
    unimplemented("share.coordinator.state.topic.min.isr", SHORT, Value("2"), ReadOnly,
        "`min.insync.replicas` of `__share_group_state` (KIP-932)."),
    unimplemented("group.coordinator.rebalance.protocols", LIST, Value("classic,consumer"), ReadOnly,
        "Enabled group protocols; Nagare serves classic and KIP-848 consumer groups."),
    unimplemented("controller.quorum.bootstrap.servers", LIST, Value(""), ReadOnly,
        "Dynamic KRaft quorums (KIP-853); Nagare's quorum is static (`controller.quorum.voters`)."),
    def("sasl.enabled.mechanisms", LIST, Value("GSSAPI"), Any, PerBroker,
        "Mechanisms of the SASL listeners (per listener: `listener.name.<l>.sasl.enabled.mechanisms`): PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER. Any other (Kafka's default GSSAPI too) is a startup error when a SASL listener exists."),
    def("sasl.jaas.config", ConfigType::Password, Null, Any, PerBroker,
        "JAAS config of the SASL listeners; PLAIN users as `org.apache.kafka.common.security.plain.PlainLoginModule required user_<name>=\"<password>\";` (per listener: `listener.name.<l>.plain.sasl.jaas.config`). Never shown."),
    def("connections.max.reauth.ms", LONG, Value("0"), Range(0, I64), PerBroker,
        "KIP-368: lifetime of a SASL session, sent in SaslAuthenticate; a connection that has not re-authenticated by then is closed on its next request. 0: no limit."),
    def("connection.failed.authentication.delay.ms", INT, Value("100"), Range(0, I32), ReadOnly,
        "A failed SASL authentication is answered (and the connection closed) this much later, slowing password guessing."),
    // OAUTHBEARER (KIP-768's broker-side validation); each also per listener as
    // `listener.name.<l>.oauthbearer.<key>` (Kafka's spelling) or `listener.name.<l>.<key>`.
    def("sasl.oauthbearer.jwks.endpoint.url", STRING, Null, Any, ReadOnly,
        "Where OAUTHBEARER token signing keys (a JWKS) come from; required when OAUTHBEARER is enabled: `file://<path>` (re-read when the file changes) or `https://...` (fetched at startup, then every refresh interval; CA from the OAUTHBEARER JAAS option `ssl.truststore.location`, a PEM file, else the Mozilla roots)."),
    def("sasl.oauthbearer.jwks.endpoint.refresh.ms", LONG, Value("3600000"), Range(0, I64), ReadOnly,
        "How often an `https://` JWKS is fetched again (a file is also re-read at least this often)."),
    def("sasl.oauthbearer.expected.audience", LIST, Value(""), Any, ReadOnly,
        "If set, a token's `aud` must hold one of these."),
    def("sasl.oauthbearer.expected.issuer", STRING, Null, Any, ReadOnly,
        "If set, a token's `iss` must equal it."),
    def("sasl.oauthbearer.clock.skew.seconds", INT, Value("30"), Range(0, I32), ReadOnly,
        "Tolerance for `exp` and `nbf` against the broker's clock."),
    def("sasl.oauthbearer.sub.claim.name", STRING, Value("sub"), Any, ReadOnly,
        "The token claim naming the principal (`User:<value>`)."),
    def("sasl.mechanism.controller.protocol", STRING, Value("GSSAPI"), Any, ReadOnly,
        "SASL mechanism of this node's connections to a SASL controller listener (controller channel, quorum peers): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the login is `username`/`password` of `listener.name.<controller listener>.<mechanism>.sasl.jaas.config`. Kafka's GSSAPI default is a startup error when that listener is SASL."),
    def("sasl.mechanism.inter.broker.protocol", STRING, Value("GSSAPI"), Any, PerBroker,
        "SASL mechanism of this node's connections to a SASL inter-broker listener (replica fetchers, transaction markers, KIP-890 verification): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, enabled on that listener; the login is `username`/`password` of `listener.name.<listener>.<mechanism>.sasl.jaas.config`. Kafka's GSSAPI default is a startup error when that listener is SASL."),
    // TLS of SSL and SASL_SSL listeners (`crate::tls`); each key can be given per listener
    // as `listener.name.<listener in lower case>.<key>`, which beats the plain key.
    def("ssl.keystore.type", STRING, Derived("`JKS` in Kafka; Nagare reads PEM"), Any, PerBroker,
        "Nagare reads PEM key stores only: `PEM` (or unset, read as PEM); JKS and PKCS12 are refused at startup naming the key."),
    def("ssl.keystore.location", STRING, Null, Any, PerBroker,
        "A PEM file with the private key and the certificate chain (leaf first); reloaded when the file changes (checked every 5 s)."),
    def("ssl.keystore.certificate.chain", PASSWORD, Null, Any, PerBroker,
        "The certificate chain as PEM text (with `ssl.keystore.key`, instead of `ssl.keystore.location`)."),
    def("ssl.keystore.key", PASSWORD, Null, Any, PerBroker,
        "The private key as PEM text (PKCS#8, PKCS#1 or SEC1, unencrypted)."),
    def("ssl.keystore.password", PASSWORD, Null, Any, PerBroker,
        "Not used by PEM key stores.").with_status(Status::Accepted),
    def("ssl.key.password", PASSWORD, Null, Any, PerBroker,
        "Nagare reads unencrypted private keys only: an encrypted key is a startup error."),
    def("ssl.truststore.type", STRING, Derived("`JKS` in Kafka; Nagare reads PEM"), Any, PerBroker,
        "Nagare reads PEM trust stores only: `PEM` (or unset, read as PEM)."),
    def("ssl.truststore.location", STRING, Null, Any, PerBroker,
        "A PEM file of the CA certificates that verify client certificates (and, for the node's own connections, servers); reloaded when it changes."),
    def("ssl.truststore.certificates", PASSWORD, Null, Any, PerBroker,
        "The trusted CA certificates as PEM text (instead of `ssl.truststore.location`)."),
    def("ssl.truststore.password", PASSWORD, Null, Any, PerBroker,
        "Not used by PEM trust stores.").with_status(Status::Accepted),
    def("ssl.client.auth", STRING, Value("none"), Any, PerBroker,
        "`required` (clients need a certificate the trust store vouches for), `requested` (clients without one are `User:ANONYMOUS`) or `none`."),
    def("ssl.enabled.protocols", LIST, Value("TLSv1.2,TLSv1.3"), Any, PerBroker,
        "TLS versions served; TLSv1 and TLSv1.1 are ignored with a warning (insecure)."),
    def("ssl.protocol", STRING, Value("TLSv1.3"), Any, PerBroker,
        "rustls negotiates the best version of `ssl.enabled.protocols`.").with_status(Status::Accepted),
    def("ssl.cipher.suites", LIST, Null, Any, PerBroker,
        "IANA names of the suites to allow (TLS 1.3 AES-GCM/ChaCha20 suites, TLS 1.2 ECDHE AEAD suites); an unknown or unsupported name is a startup error; none means rustls' defaults."),
    def("ssl.endpoint.identification.algorithm", STRING, Value("https"), Any, PerBroker,
        "`https` checks a server certificate against the host name on the node's own TLS connections; empty does not."),
    def("ssl.principal.mapping.rules", STRING, Value("DEFAULT"), Any, ReadOnly,
        "Maps a client certificate's subject (RFC 2253) to the principal name: `DEFAULT` or `RULE:pattern/replacement/[LU]`, first match wins (KIP-371)."),
    def("authorizer.class.name", STRING, Value(""), Any, ReadOnly,
        "`org.apache.kafka.metadata.authorizer.StandardAuthorizer` authorizes every request with the ACLs of the metadata log; empty allows everything (and the ACL APIs answer SECURITY_DISABLED). Any other class is a startup error."),
    def("super.users", STRING, Value(""), Any, ReadOnly,
        "Principals allowed everything by the StandardAuthorizer, `User:a;User:b`."),
    def("allow.everyone.if.no.acl.found", BOOLEAN, Value("false"), Bool, ReadOnly,
        "StandardAuthorizer: a resource without any ACL is allowed to everyone (else only to super users)."),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The README section the table is rendered into.
    const START: &str = "<!-- broker-config-table:start -->";
    const END: &str = "<!-- broker-config-table:end -->";
    const HOW: &str = "NAGARE_UPDATE_README=1 cargo test -p nagare-broker config_table";

    #[test]
    fn one_definition_per_key() {
        let mut seen = BTreeSet::new();
        for d in definitions() {
            assert!(seen.insert(d.name), "{} is defined twice", d.name);
            assert!(!d.doc.is_empty(), "{} has no doc", d.name);
            // The doc is one cell of a markdown table.
            assert!(
                !d.doc.contains('|') && !d.doc.contains('\n'),
                "{}: the doc must be one line without `|`",
                d.name
            );
        }
        assert_eq!(definition("node.id").map(|d| d.config_type), Some(INT));
        assert!(definition("no.such.key").is_none());
    }

    #[test]
    fn literal_defaults_pass_their_own_validation() {
        for d in definitions().filter(|d| d.status != Status::Unimplemented) {
            if let DefaultValue::Value(v) = d.default {
                assert!(
                    d.validate(v).is_ok(),
                    "{}: default {v:?} is invalid",
                    d.name
                );
                if matches!(d.validator, Validator::Range(..)) {
                    assert!(v.parse::<i64>().is_ok(), "{}: default {v:?}", d.name);
                }
            }
        }
    }

    /// Every broker synonym of a topic config is defined here, validated by that topic
    /// config's rules, with the topic config's default unless Nagare documents its own.
    #[test]
    fn topic_synonyms_match_the_topic_configs() {
        for t in topic_config::TOPIC_CONFIGS
            .iter()
            .filter(|t| !t.broker_key.is_empty())
        {
            let d = definition(t.broker_key)
                .unwrap_or_else(|| panic!("{} (topic {}) has no definition", t.broker_key, t.name));
            assert_eq!(d.validator, Validator::Topic(t.name), "{}", d.name);
            match (d.name, d.default) {
                // Nagare fsyncs acks 0/1 data every second (see the README's durability
                // policy); `.ms` retention and roll default to their `.hours` synonyms.
                ("log.flush.interval.ms", _) => {}
                ("log.retention.ms" | "log.roll.ms", Derived(_)) => {}
                (_, Value(v)) => assert_eq!(v, t.default, "default of {}", d.name),
                (name, other) => panic!("{name}: unexpected default {other:?}"),
            }
        }
        for d in definitions() {
            if let Validator::Topic(topic) = d.validator {
                let t = topic_config::lookup(topic)
                    .unwrap_or_else(|| panic!("{}: no topic config {topic}", d.name));
                assert_eq!(t.broker_key, d.name, "{topic} inherits from another key");
            }
        }
    }

    #[test]
    fn validation_names_the_key_and_sets_warnings() {
        let e = check("num.partitions", "abc").unwrap_err().to_string();
        assert!(
            e.contains("num.partitions") && e.contains("not a number"),
            "{e}"
        );
        let e = check("num.partitions", "0").unwrap_err().to_string();
        assert!(e.contains("between 1 and"), "{e}");
        let e = check("log.cleaner.enable", "maybe")
            .unwrap_err()
            .to_string();
        assert!(e.contains("log.cleaner.enable"), "{e}");
        let e = check("log.segment.bytes", "x").unwrap_err().to_string();
        assert!(e.contains("log.segment.bytes"), "{e}");
        assert_eq!(check("num.partitions", " 3 ").expect("valid"), None);
        assert_eq!(check("log.local.retention.ms", "-2").expect("valid"), None);
        let w = check("log.preallocate", "true").expect("valid");
        assert!(w.is_some_and(|w| w.contains("accepted but not implemented")));
        // Unimplemented keys are not validated, only warned about.
        let w = check("num.io.threads", "lots").expect("not validated");
        assert!(w.is_some_and(|w| w.contains("does not implement")));
        // Per-listener TLS overrides are known keys.
        assert_eq!(
            check("listener.name.internal.ssl.client.auth", "required").expect("valid"),
            None
        );
        let w = check("listener.name.internal.foo", "1").expect("unknown");
        assert!(w.is_some_and(|w| w.contains("unknown config")));
        let w = check("foo.bar", "1").expect("unknown keys are not errors");
        assert!(w.is_some_and(|w| w.contains("unknown config foo.bar")));
    }

    /// The README's broker-config table is generated from this table.
    #[test]
    fn readme_config_table_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
            panic!("README.md lacks the markers {START} ... {END}");
        };
        assert!(start < end, "README.md: {END} before {START}");
        let body_start = start + START.len();
        let generated = format!(
            "\n<!-- Generated from crates/nagare-broker/src/config/definitions.rs: edit the \
             definitions, then run `{HOW}`. -->\n\n{}\n",
            markdown_table()
        );
        if readme[body_start..end] == generated {
            return;
        }
        if std::env::var_os("NAGARE_UPDATE_README").is_some_and(|v| v == "1") {
            let updated = format!("{}{generated}{}", &readme[..body_start], &readme[end..]);
            std::fs::write(path, updated).expect("write README.md");
            return;
        }
        panic!(
            "README.md's broker-config table differs from the definitions in \
             crates/nagare-broker/src/config/definitions.rs; regenerate it with `{HOW}`"
        );
    }
}
