//! Broker configuration in Kafka's `server.properties` format with Kafka's names.
//!
//! Keys Nagare implements are typed and validated: an invalid value is a startup error
//! naming the key. Keys Kafka has but Nagare does not implement, and keys nobody knows,
//! are warnings naming them (as Kafka warns about unknown keys), so existing files work.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nagare_metadata::topic_config::{self, TopicDefaults};

/// A configuration problem that stops startup.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A value is invalid for its key.
    #[error("invalid value {value:?} for configuration {key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A line is not `key=value`.
    #[error("malformed line {line} in {path}: {text:?}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line number (1-based).
        line: usize,
        /// The line.
        text: String,
    },
}

/// One listener from `listeners` (`NAME://host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name (`PLAINTEXT`, `CONTROLLER`, ...).
    pub name: String,
    /// Host to bind (empty = all interfaces).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Listener {
    /// The socket address to bind.
    pub fn bind_addr(&self) -> String {
        let host = if self.host.is_empty() {
            "0.0.0.0"
        } else {
            &self.host
        };
        format!("{host}:{}", self.port)
    }
}

/// Parsed and validated broker configuration.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Every property as given (file then overrides).
    pub props: BTreeMap<String, String>,
    /// `node.id`.
    pub node_id: i32,
    /// `process.roles`.
    pub process_roles: Vec<String>,
    /// `listeners`.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners` minus controller listeners).
    pub advertised_listeners: Vec<Listener>,
    /// `controller.listener.names`.
    pub controller_listener_names: Vec<String>,
    /// `log.dirs` (first entry holds data; several dirs are not yet supported).
    pub log_dirs: Vec<PathBuf>,
    /// `metadata.log.dir` (defaults to the first log dir).
    pub metadata_log_dir: PathBuf,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`.
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: usize,
    /// `log.retention.check.interval.ms`.
    pub log_retention_check_interval_ms: u64,
    /// `log.flush.interval.ms`: period of the background fsync for data written with acks 0/1.
    pub log_flush_interval_ms: u64,
    /// `log.flush.offset.checkpoint.interval.ms`.
    pub log_flush_offset_checkpoint_interval_ms: u64,
    /// `max.connections`.
    pub max_connections: usize,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `transaction.max.timeout.ms`.
    pub transaction_max_timeout_ms: i32,
    /// `fetch.max.bytes` (broker cap on a fetch response).
    pub fetch_max_bytes: i32,
    /// `max.incremental.fetch.session.cache.slots`.
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `cluster.id` for a self-formatted single node (Nagare extension; else generated).
    pub cluster_id: Option<String>,
    /// `producer.id.expiration.ms`: idle producer ids are forgotten after this long.
    pub producer_id_expiration_ms: i64,
    /// `connections.max.idle.ms`: a connection with no request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`.
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor`: honoured as in Kafka when set; left at its
    /// default it is capped at the registered brokers, so a single node works unchanged.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`.
    pub offsets_topic_segment_bytes: i64,
    /// The group coordinator's settings (`group.*`, `offsets.retention.*`, ...).
    pub group: nagare_coordinator::GroupCoordinatorConfig,
    /// The KRaft quorum settings (`controller.quorum.*`, `broker.*` liveness).
    pub quorum: QuorumConfig,
    /// The replication settings (`replica.*`).
    pub replication: ReplicationConfig,
}

/// The replication data plane's settings, with Kafka's names and defaults.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: how long a follower fetch waits for data.
    pub fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `replica.fetch.max.bytes`: per partition (at least one batch is returned anyway).
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`.
    pub fetch_response_max_bytes: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed fetch.
    pub fetch_backoff_ms: u64,
    /// `replica.socket.timeout.ms`.
    pub socket_timeout_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the high watermarks are
    /// written to `replication-offset-checkpoint`.
    pub hw_checkpoint_interval_ms: u64,
    /// `replica.selector.class` is Kafka's `RackAwareReplicaSelector` (KIP-392): leaders send
    /// consumers that name a `client.rack` to an in-sync replica in that rack.
    pub rack_aware_selector: bool,
}

/// Kafka's rack-aware replica selector (KIP-392), the one `replica.selector.class` accepts.
pub const RACK_AWARE_REPLICA_SELECTOR: &str =
    "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// The KRaft settings: who the voters are and the quorum's and brokers' timings.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// `controller.quorum.voters` (for the single-node default: this node on its controller
    /// listener).
    pub voters: Vec<nagare_raft::VoterAddress>,
    /// Whether `controller.quorum.voters` was given (rather than defaulted).
    pub voters_configured: bool,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`.
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`.
    pub request_timeout_ms: u64,
    /// `controller.quorum.retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`.
    pub max_record_bytes_between_snapshots: u64,
    /// `broker.session.timeout.ms`: a broker without a heartbeat for this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Int(i64, i64),
    Bool,
    Text,
    List,
}

/// Keys Nagare implements, with their types (defaults live in [`BrokerConfig::from_props`]).
const IMPLEMENTED: &[(&str, Kind)] = &[
    ("node.id", Kind::Int(0, i32::MAX as i64)),
    ("broker.id", Kind::Int(0, i32::MAX as i64)),
    ("process.roles", Kind::List),
    ("listeners", Kind::List),
    ("advertised.listeners", Kind::List),
    ("controller.listener.names", Kind::List),
    ("controller.quorum.voters", Kind::List),
    (
        "controller.quorum.election.timeout.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    (
        "controller.quorum.election.backoff.max.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    (
        "controller.quorum.fetch.timeout.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    (
        "controller.quorum.request.timeout.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    (
        "controller.quorum.retry.backoff.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    (
        "metadata.log.max.record.bytes.between.snapshots",
        Kind::Int(1, i64::MAX),
    ),
    ("broker.session.timeout.ms", Kind::Int(1, i32::MAX as i64)),
    ("replica.lag.time.max.ms", Kind::Int(1, i32::MAX as i64)),
    ("replica.fetch.wait.max.ms", Kind::Int(0, i32::MAX as i64)),
    ("replica.fetch.min.bytes", Kind::Int(1, i32::MAX as i64)),
    ("replica.fetch.max.bytes", Kind::Int(0, i32::MAX as i64)),
    (
        "replica.fetch.response.max.bytes",
        Kind::Int(0, i32::MAX as i64),
    ),
    ("replica.fetch.backoff.ms", Kind::Int(0, i32::MAX as i64)),
    ("replica.socket.timeout.ms", Kind::Int(1, i32::MAX as i64)),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        Kind::Int(1, i64::MAX),
    ),
    ("replica.selector.class", Kind::Text),
    (
        "broker.heartbeat.interval.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    ("inter.broker.listener.name", Kind::Text),
    ("listener.security.protocol.map", Kind::List),
    ("log.dirs", Kind::List),
    ("log.dir", Kind::Text),
    ("metadata.log.dir", Kind::Text),
    ("num.partitions", Kind::Int(1, i32::MAX as i64)),
    ("default.replication.factor", Kind::Int(1, i16::MAX as i64)),
    ("auto.create.topics.enable", Kind::Bool),
    ("delete.topic.enable", Kind::Bool),
    ("log.retention.hours", Kind::Int(-1, i32::MAX as i64)),
    ("log.retention.minutes", Kind::Int(-1, i32::MAX as i64)),
    ("log.roll.hours", Kind::Int(1, i32::MAX as i64)),
    ("socket.request.max.bytes", Kind::Int(1, i32::MAX as i64)),
    ("log.retention.check.interval.ms", Kind::Int(1, i64::MAX)),
    (
        "log.flush.offset.checkpoint.interval.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    ("max.connections", Kind::Int(0, i32::MAX as i64)),
    ("broker.rack", Kind::Text),
    ("transaction.max.timeout.ms", Kind::Int(1, i32::MAX as i64)),
    ("fetch.max.bytes", Kind::Int(1024, i32::MAX as i64)),
    (
        "max.incremental.fetch.session.cache.slots",
        Kind::Int(0, i32::MAX as i64),
    ),
    ("cluster.id", Kind::Text),
    ("producer.id.expiration.ms", Kind::Int(1, i32::MAX as i64)),
    ("connections.max.idle.ms", Kind::Int(1, i64::MAX)),
    ("offsets.topic.num.partitions", Kind::Int(1, 10_000)),
    (
        "offsets.topic.replication.factor",
        Kind::Int(1, i16::MAX as i64),
    ),
    ("offsets.topic.segment.bytes", Kind::Int(1, i32::MAX as i64)),
    ("offsets.commit.timeout.ms", Kind::Int(1, i32::MAX as i64)),
    (
        "group.min.session.timeout.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    (
        "group.max.session.timeout.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    (
        "group.initial.rebalance.delay.ms",
        Kind::Int(0, i32::MAX as i64),
    ),
    ("group.max.size", Kind::Int(1, i32::MAX as i64)),
    (
        "group.consumer.session.timeout.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    (
        "group.consumer.heartbeat.interval.ms",
        Kind::Int(1, i32::MAX as i64),
    ),
    ("group.consumer.assignors", Kind::List),
    ("group.consumer.max.size", Kind::Int(1, i32::MAX as i64)),
    ("offsets.retention.minutes", Kind::Int(1, i32::MAX as i64)),
    (
        "offsets.retention.check.interval.ms",
        Kind::Int(1, i64::MAX),
    ),
    ("offset.metadata.max.bytes", Kind::Int(0, i32::MAX as i64)),
    // The log cleaner (compaction); see `BrokerConfig::log_cleaner`.
    ("log.cleaner.enable", Kind::Bool),
    ("log.cleaner.threads", Kind::Int(0, i32::MAX as i64)),
    ("log.cleaner.backoff.ms", Kind::Int(0, i64::MAX)),
    ("log.cleaner.dedupe.buffer.size", Kind::Int(0, i64::MAX)),
    // Leader elections on the controller; see `BrokerConfig::elections`.
    ("auto.leader.rebalance.enable", Kind::Bool),
    (
        "leader.imbalance.check.interval.seconds",
        Kind::Int(1, i64::MAX),
    ),
    (
        "leader.imbalance.per.broker.percentage",
        Kind::Int(0, i32::MAX as i64),
    ),
];

/// Kafka broker keys Nagare accepts but does not act on yet (warned about at startup).
const NOT_IMPLEMENTED: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "num.recovery.threads.per.data.dir",
    "transaction.state.log.replication.factor",
    "transaction.state.log.min.isr",
    "log.flush.scheduler.interval.ms",
    "queued.max.requests",
    "controller.quorum.bootstrap.servers",
    "num.replica.fetchers",
    "group.coordinator.rebalance.protocols",
    "share.coordinator.state.topic.replication.factor",
    "share.coordinator.state.topic.min.isr",
    "sasl.enabled.mechanisms",
    "sasl.mechanism.controller.protocol",
    "sasl.mechanism.inter.broker.protocol",
    "ssl.keystore.location",
    "authorizer.class.name",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.buffer.load.factor",
];

impl BrokerConfig {
    /// The controller's election settings: `unclean.leader.election.enable` (default false),
    /// `auto.leader.rebalance.enable` (true), `leader.imbalance.check.interval.seconds` (300)
    /// and `leader.imbalance.per.broker.percentage` (10), as in Kafka.
    pub fn elections(&self) -> nagare_controller::elections::ElectionConfig {
        let get = |k: &str| self.props.get(k).map(|v| v.trim().to_string());
        let boolean =
            |k: &str, d: bool| get(k).map(|v| v.eq_ignore_ascii_case("true")).unwrap_or(d);
        let int = |k: &str, d: i64| get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(d);
        nagare_controller::elections::ElectionConfig {
            unclean_leader_election_enable: boolean("unclean.leader.election.enable", false),
            auto_leader_rebalance_enable: boolean("auto.leader.rebalance.enable", true),
            leader_imbalance_check_interval_ms:
                (int("leader.imbalance.check.interval.seconds", 300).max(1) as u64)
                    .saturating_mul(1000),
            leader_imbalance_per_broker_percentage: int(
                "leader.imbalance.per.broker.percentage",
                10,
            )
            .clamp(0, u32::MAX as i64) as u32,
        }
    }
}

/// Parses `server.properties` text (Java properties: `key=value`, `key: value` or
/// `key value`; `#`/`!` comments; `\` line continuations).
pub fn parse_properties(text: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if pending.is_empty() {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            start_line = i + 1;
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(line);
        let entry = std::mem::take(&mut pending);
        let split = entry
            .find(['=', ':'])
            .or_else(|| entry.find(char::is_whitespace));
        let Some(pos) = split else {
            return Err(ConfigError::Malformed {
                path: path.to_path_buf(),
                line: start_line,
                text: entry,
            });
        };
        let key = entry[..pos].trim().to_string();
        let value = entry[pos + 1..].trim().to_string();
        if key.is_empty() {
            return Err(ConfigError::Malformed {
                path: path.to_path_buf(),
                line: start_line,
                text: entry,
            });
        }
        out.push((key, value));
    }
    Ok(out)
}

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a `listeners`-style list: `NAME://host:port,...`.
pub fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, rest)) = item.split_once("://") else {
            return Err(invalid(
                key,
                value,
                format!("listener {item:?} is not NAME://host:port"),
            ));
        };
        let Some((host, port)) = rest.rsplit_once(':') else {
            return Err(invalid(
                key,
                value,
                format!("listener {item:?} has no port"),
            ));
        };
        let port: u16 = port
            .parse()
            .map_err(|_| invalid(key, value, format!("listener {item:?} has an invalid port")))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        out.push(Listener {
            name: name.to_ascii_uppercase(),
            host,
            port,
        });
    }
    Ok(out)
}

impl BrokerConfig {
    /// Loads a config: the file (if any), then `key=value` overrides; returns the config and
    /// warnings to log (unknown or not implemented keys).
    pub fn load(
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut pairs = Vec::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            pairs.extend(parse_properties(&text, path)?);
        }
        for o in overrides {
            let Some((k, v)) = o.split_once('=') else {
                return Err(invalid(o, "", "an override must be key=value"));
            };
            pairs.push((k.trim().to_string(), v.trim().to_string()));
        }
        let props: BTreeMap<String, String> = pairs.into_iter().collect();
        Self::from_props(props)
    }

    /// Validates properties and fills Kafka's defaults (single-node defaults where Kafka has
    /// none: node 1, combined roles, 127.0.0.1:9092, `./nagare-data`).
    pub fn from_props(props: BTreeMap<String, String>) -> Result<(Self, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        for (k, v) in &props {
            if let Some((_, kind)) = IMPLEMENTED.iter().find(|(n, _)| n == k) {
                check_kind(k, v, *kind)?;
            } else if let Some(def) = topic_config::TOPIC_CONFIGS
                .iter()
                .find(|d| d.broker_key == k)
            {
                topic_config::validate_value(def.kind, k, v).map_err(|r| invalid(k, v, r))?;
                if matches!(
                    k.as_str(),
                    "log.flush.interval.messages"
                        | "log.preallocate"
                        | "log.roll.jitter.ms"
                        | "compression.type"
                        | "remote.log.storage.system.enable"
                ) {
                    warnings.push(format!(
                        "config {k} is accepted but not implemented yet; ignored"
                    ));
                }
            } else if NOT_IMPLEMENTED.contains(&k.as_str()) {
                warnings.push(format!(
                    "config {k} is a Kafka config Nagare does not implement yet; ignored"
                ));
            } else {
                warnings.push(format!("unknown config {k}; ignored"));
            }
        }
        let get = |k: &str| props.get(k).map(String::as_str);
        let int = |k: &str, d: i64| {
            get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let boolean = |k: &str, d: bool| {
            get(k)
                .map(|v| v.trim().eq_ignore_ascii_case("true"))
                .unwrap_or(d)
        };
        let node_id = get("node.id")
            .or(get("broker.id"))
            .map(|_| int("node.id", int("broker.id", 1)))
            .unwrap_or(1) as i32;
        let process_roles: Vec<String> = get("process.roles")
            .unwrap_or("broker,controller")
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        for r in &process_roles {
            if r != "broker" && r != "controller" {
                return Err(invalid(
                    "process.roles",
                    get("process.roles").unwrap_or(""),
                    format!("unknown role {r}"),
                ));
            }
        }
        if process_roles.is_empty() {
            return Err(invalid("process.roles", "", "no role given"));
        }
        let listeners = parse_listeners(
            "listeners",
            get("listeners").unwrap_or("PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"),
        )?;
        let controller_listener_names: Vec<String> = get("controller.listener.names")
            .unwrap_or("CONTROLLER")
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect();
        let is_broker = process_roles.iter().any(|r| r == "broker");
        let is_controller = process_roles.iter().any(|r| r == "controller");
        let has_broker_listener = listeners
            .iter()
            .any(|l| !controller_listener_names.contains(&l.name));
        let controller_listener = listeners
            .iter()
            .find(|l| controller_listener_names.first() == Some(&l.name))
            .cloned();
        if is_broker && !has_broker_listener {
            return Err(invalid(
                "listeners",
                get("listeners").unwrap_or(""),
                "no broker listener (all listeners are controller listeners)",
            ));
        }
        // Kafka: a controller listens on the first of controller.listener.names; a
        // broker-only node must not list a controller listener in `listeners`.
        if is_controller && controller_listener.is_none() {
            return Err(invalid(
                "listeners",
                get("listeners").unwrap_or(""),
                format!(
                    "a controller must have a listener named by controller.listener.names ({})",
                    controller_listener_names.join(",")
                ),
            ));
        }
        if !is_controller && controller_listener.is_some() {
            return Err(invalid(
                "listeners",
                get("listeners").unwrap_or(""),
                "a broker-only node (process.roles=broker) must not have a controller listener",
            ));
        }
        if !is_broker && has_broker_listener {
            return Err(invalid(
                "listeners",
                get("listeners").unwrap_or(""),
                "a controller-only node (process.roles=controller) may only have controller listeners",
            ));
        }
        let advertised_listeners = match get("advertised.listeners") {
            Some(v) => parse_listeners("advertised.listeners", v)?,
            None => listeners
                .iter()
                .filter(|l| !controller_listener_names.contains(&l.name))
                .map(|l| Listener {
                    host: if l.host.is_empty() || l.host == "0.0.0.0" {
                        "127.0.0.1".into()
                    } else {
                        l.host.clone()
                    },
                    ..l.clone()
                })
                .collect(),
        };
        let (voters, voters_configured) =
            match get("controller.quorum.voters") {
                Some(v) => (
                    nagare_raft::parse_voters(v)
                        .map_err(|e| invalid("controller.quorum.voters", v, e.to_string()))?,
                    true,
                ),
                // The single-node default: this node is the only voter, on its own listener.
                None => match (&controller_listener, is_controller) {
                    (Some(l), true) => (
                        vec![nagare_raft::VoterAddress {
                            node_id,
                            host: if l.host.is_empty() || l.host == "0.0.0.0" {
                                "127.0.0.1".into()
                            } else {
                                l.host.clone()
                            },
                            port: l.port,
                        }],
                        false,
                    ),
                    _ => return Err(invalid(
                        "controller.quorum.voters",
                        "",
                        "a broker-only node needs controller.quorum.voters to find the controllers",
                    )),
                },
            };
        if is_controller && !voters.iter().any(|v| v.node_id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                get("controller.quorum.voters").unwrap_or(""),
                format!("node.id {node_id} has the controller role but is not a voter"),
            ));
        }
        if !is_controller && voters.iter().any(|v| v.node_id == node_id) {
            return Err(invalid(
                "controller.quorum.voters",
                get("controller.quorum.voters").unwrap_or(""),
                format!("node.id {node_id} is a voter but does not have the controller role"),
            ));
        }
        let log_dirs: Vec<PathBuf> = get("log.dirs")
            .or(get("log.dir"))
            .unwrap_or("./nagare-data")
            .split(',')
            .map(|s| PathBuf::from(s.trim()))
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if log_dirs.is_empty() {
            return Err(invalid("log.dirs", "", "no log directory given"));
        }
        if log_dirs.len() > 1 {
            warnings.push(format!(
                "log.dirs lists {} directories; Nagare uses only the first ({}) for now",
                log_dirs.len(),
                log_dirs[0].display()
            ));
        }
        let metadata_log_dir = get("metadata.log.dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| log_dirs[0].clone());
        // KIP-392: none (consumers read from leaders only) or Kafka's rack-aware selector.
        let rack_aware_selector = match get("replica.selector.class").map(str::trim) {
            None | Some("") => false,
            Some(v) if v == RACK_AWARE_REPLICA_SELECTOR || v == "RackAwareReplicaSelector" => true,
            Some(v) => {
                return Err(invalid(
                    "replica.selector.class",
                    v,
                    format!("the only replica selector is {RACK_AWARE_REPLICA_SELECTOR}"),
                ))
            }
        };
        let cfg = BrokerConfig {
            node_id,
            process_roles,
            listeners,
            advertised_listeners,
            controller_listener_names,
            metadata_log_dir,
            num_partitions: int("num.partitions", 1) as i32,
            default_replication_factor: int("default.replication.factor", 1) as i16,
            auto_create_topics_enable: boolean("auto.create.topics.enable", true),
            delete_topic_enable: boolean("delete.topic.enable", true),
            socket_request_max_bytes: int("socket.request.max.bytes", 104_857_600) as usize,
            log_retention_check_interval_ms: int("log.retention.check.interval.ms", 300_000) as u64,
            // Nagare deviates from Kafka (which never fsyncs by default and relies on
            // replication): data written with acks 0/1 is fsynced at least once a second.
            log_flush_interval_ms: int("log.flush.interval.ms", 1000).max(1) as u64,
            log_flush_offset_checkpoint_interval_ms: int(
                "log.flush.offset.checkpoint.interval.ms",
                60_000,
            ) as u64,
            max_connections: int("max.connections", 10_000) as usize,
            broker_rack: get("broker.rack").map(str::to_string),
            transaction_max_timeout_ms: int("transaction.max.timeout.ms", 900_000) as i32,
            fetch_max_bytes: int("fetch.max.bytes", 57_671_680) as i32,
            max_incremental_fetch_session_cache_slots: int(
                "max.incremental.fetch.session.cache.slots",
                1000,
            ) as usize,
            cluster_id: get("cluster.id").map(str::to_string),
            producer_id_expiration_ms: int("producer.id.expiration.ms", 86_400_000),
            connections_max_idle_ms: int("connections.max.idle.ms", 600_000) as u64,
            offsets_topic_num_partitions: int("offsets.topic.num.partitions", 50) as i32,
            offsets_topic_replication_factor: int("offsets.topic.replication.factor", 3) as i16,
            offsets_topic_segment_bytes: int("offsets.topic.segment.bytes", 104_857_600),
            group: nagare_coordinator::GroupCoordinatorConfig {
                min_session_timeout_ms: int("group.min.session.timeout.ms", 6_000) as i32,
                max_session_timeout_ms: int("group.max.session.timeout.ms", 1_800_000) as i32,
                initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms", 3_000) as i32,
                max_size: int("group.max.size", i32::MAX as i64) as usize,
                offsets_retention_ms: int("offsets.retention.minutes", 10_080) * 60_000,
                offsets_retention_check_interval_ms: int(
                    "offsets.retention.check.interval.ms",
                    600_000,
                ),
                offset_metadata_max_bytes: int("offset.metadata.max.bytes", 4096) as usize,
                max_record_bytes: int("message.max.bytes", 1_048_588) as usize,
                // KIP-848 consumer groups.
                consumer_session_timeout_ms: int("group.consumer.session.timeout.ms", 45_000)
                    as i32,
                consumer_heartbeat_interval_ms: int("group.consumer.heartbeat.interval.ms", 5_000)
                    as i32,
                consumer_assignors: consumer_assignors(get("group.consumer.assignors")),
                consumer_max_size: int("group.consumer.max.size", i32::MAX as i64) as usize,
                offsets_commit_timeout_ms: int("offsets.commit.timeout.ms", 5_000) as u64,
                ..Default::default()
            },
            quorum: QuorumConfig {
                voters,
                voters_configured,
                election_timeout_ms: int("controller.quorum.election.timeout.ms", 1000) as u64,
                election_backoff_max_ms: int("controller.quorum.election.backoff.max.ms", 1000)
                    as u64,
                fetch_timeout_ms: int("controller.quorum.fetch.timeout.ms", 2000) as u64,
                request_timeout_ms: int("controller.quorum.request.timeout.ms", 2000) as u64,
                retry_backoff_ms: int("controller.quorum.retry.backoff.ms", 20) as u64,
                max_record_bytes_between_snapshots: int(
                    "metadata.log.max.record.bytes.between.snapshots",
                    20 * 1024 * 1024,
                ) as u64,
                broker_session_timeout_ms: int("broker.session.timeout.ms", 9000) as u64,
                broker_heartbeat_interval_ms: int("broker.heartbeat.interval.ms", 2000) as u64,
            },
            replication: ReplicationConfig {
                lag_time_max_ms: int("replica.lag.time.max.ms", 30_000),
                fetch_wait_max_ms: int("replica.fetch.wait.max.ms", 500) as i32,
                fetch_min_bytes: int("replica.fetch.min.bytes", 1) as i32,
                fetch_max_bytes: int("replica.fetch.max.bytes", 1_048_576) as i32,
                fetch_response_max_bytes: int("replica.fetch.response.max.bytes", 10_485_760)
                    as i32,
                fetch_backoff_ms: int("replica.fetch.backoff.ms", 1000) as u64,
                socket_timeout_ms: int("replica.socket.timeout.ms", 30_000) as u64,
                hw_checkpoint_interval_ms: int(
                    "replica.high.watermark.checkpoint.interval.ms",
                    5000,
                ) as u64,
                rack_aware_selector,
            },
            log_dirs,
            props: BTreeMap::new(),
        };
        Ok((BrokerConfig { props, ..cfg }, warnings))
    }

    /// Broker-level topic defaults (the `log.*` synonyms), honouring Kafka's precedence of
    /// `log.retention.ms` over `.minutes` over `.hours` and `log.roll.ms` over `.hours`.
    pub fn topic_defaults(&self, dynamic: &BTreeMap<String, String>) -> TopicDefaults {
        let props = &self.props;
        TopicDefaults::from_broker(|key| {
            if let Some(v) = dynamic.get(key) {
                return Some(v.clone());
            }
            match key {
                "log.retention.ms" => props.get(key).cloned().or_else(|| {
                    props
                        .get("log.retention.minutes")
                        .and_then(|m| m.trim().parse::<i64>().ok())
                        .map(|m| if m < 0 { -1 } else { m * 60_000 }.to_string())
                        .or_else(|| {
                            props
                                .get("log.retention.hours")
                                .and_then(|h| h.trim().parse::<i64>().ok())
                                .map(|h| if h < 0 { -1 } else { h * 3_600_000 }.to_string())
                        })
                }),
                "log.roll.ms" => props.get(key).cloned().or_else(|| {
                    props
                        .get("log.roll.hours")
                        .and_then(|h| h.trim().parse::<i64>().ok())
                        .map(|h| (h * 3_600_000).to_string())
                }),
                _ => props.get(key).cloned(),
            }
        })
    }

    /// Whether this node has the broker role.
    pub fn is_broker(&self) -> bool {
        self.process_roles.iter().any(|r| r == "broker")
    }

    /// Whether this node has the controller role.
    pub fn is_controller(&self) -> bool {
        self.process_roles.iter().any(|r| r == "controller")
    }

    /// The listener the controller serves the quorum on (the first of
    /// `controller.listener.names`), on controller nodes.
    pub fn controller_listener(&self) -> Option<&Listener> {
        let name = self.controller_listener_names.first()?;
        self.listeners.iter().find(|l| &l.name == name)
    }

    /// Whether this is the single-node default (combined roles, the only voter), the one
    /// setup that formats its own log dirs; any other node must be formatted explicitly with
    /// `nagare storage format`, as Kafka's nodes are with `kafka-storage format`.
    pub fn is_single_node_default(&self) -> bool {
        self.is_broker()
            && self.is_controller()
            && self.quorum.voters.len() == 1
            && self.quorum.voters[0].node_id == self.node_id
    }

    /// The listener clients connect to (first non-controller listener).
    pub fn broker_listener(&self) -> Option<&Listener> {
        self.listeners
            .iter()
            .find(|l| !self.controller_listener_names.contains(&l.name))
    }

    /// The advertised listener matching the broker listener's name, else the first.
    pub fn advertised_broker_listener(&self) -> Option<&Listener> {
        let name = self.broker_listener().map(|l| l.name.clone());
        self.advertised_listeners
            .iter()
            .find(|l| Some(&l.name) == name.as_ref())
            .or(self.advertised_listeners.first())
    }

    /// Parsed socket address of a listener, if it resolves literally.
    pub fn socket_addr(l: &Listener) -> Option<SocketAddr> {
        l.bind_addr().parse().ok()
    }
}

fn check_kind(key: &str, value: &str, kind: Kind) -> Result<(), ConfigError> {
    match kind {
        Kind::Int(min, max) => match value.trim().parse::<i64>() {
            Ok(v) if v >= min && v <= max => Ok(()),
            Ok(_) => Err(invalid(
                key,
                value,
                format!("value must be between {min} and {max}"),
            )),
            Err(_) => Err(invalid(key, value, "not a number")),
        },
        Kind::Bool => match value.trim().to_ascii_lowercase().as_str() {
            "true" | "false" => Ok(()),
            _ => Err(invalid(key, value, "expected true or false")),
        },
        Kind::Text | Kind::List => Ok(()),
    }
}

/// The log cleaner's broker settings (`log.cleaner.*`, Kafka's defaults). The per-topic
/// ones (`log.cleaner.delete.retention.ms`, `log.cleaner.min.cleanable.ratio`,
/// `log.cleaner.{min,max}.compaction.lag.ms`) are topic-config defaults.
#[derive(Debug, Clone)]
pub struct LogCleanerSettings {
    /// `log.cleaner.enable` (default true) and `log.cleaner.threads` > 0.
    pub enabled: bool,
    /// `log.cleaner.backoff.ms`: pause between passes with nothing to clean (default 15000).
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size` (default 134217728) and `log.cleaner.threads`
    /// (default 1), which split it.
    pub storage: nagare_storage::CleanerConfig,
}

impl BrokerConfig {
    /// The log cleaner's settings.
    pub fn log_cleaner(&self) -> LogCleanerSettings {
        let get = |k: &str, d: i64| {
            self.props
                .get(k)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(d)
        };
        let threads = get("log.cleaner.threads", 1).max(0) as usize;
        let enabled = self
            .props
            .get("log.cleaner.enable")
            .is_none_or(|v| v.trim().eq_ignore_ascii_case("true"));
        LogCleanerSettings {
            enabled: enabled && threads > 0,
            backoff_ms: get("log.cleaner.backoff.ms", 15_000).max(0) as u64,
            storage: nagare_storage::CleanerConfig {
                dedupe_buffer_size: get("log.cleaner.dedupe.buffer.size", 134_217_728).max(0)
                    as u64,
                threads: threads.max(1),
                ..nagare_storage::CleanerConfig::default()
            },
        }
    }
}

/// `group.consumer.assignors`: short names (`uniform`, `range`) or Kafka's class names
/// (`org.apache.kafka.coordinator.group.assignor.UniformAssignor`, …); the first is the
/// default. Unknown names are kept, so that a client asking for them is refused with
/// UNSUPPORTED_ASSIGNOR only if they are not listed.
fn consumer_assignors(v: Option<&str>) -> Vec<String> {
    let Some(v) = v else {
        return vec!["uniform".to_owned(), "range".to_owned()];
    };
    v.split(',')
        .map(|a| {
            let a = a.trim();
            let lower = a.to_ascii_lowercase();
            if lower.ends_with("uniformassignor") {
                "uniform".to_owned()
            } else if lower.ends_with("rangeassignor") {
                "range".to_owned()
            } else {
                a.to_owned()
            }
        })
        .filter(|a| !a.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAFKA_FILE: &str = r#"
# Kafka 4.x KRaft combined mode
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL
num.network.threads=3
log.dirs=/tmp/kraft-combined-logs
num.partitions=3
offsets.topic.replication.factor=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
foo.bar=1
"#;

    fn load(text: &str) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let props = parse_properties(text, Path::new("x"))?
            .into_iter()
            .collect();
        BrokerConfig::from_props(props)
    }

    #[test]
    fn kafka_combined_file_starts() {
        let (c, warnings) = load(KAFKA_FILE).expect("config");
        assert_eq!(c.node_id, 1);
        assert_eq!(c.num_partitions, 3);
        assert_eq!(c.broker_listener().map(|l| l.port), Some(9092));
        assert_eq!(
            c.advertised_broker_listener().map(|l| l.host.as_str()),
            Some("localhost")
        );
        assert!(warnings.iter().any(|w| w.contains("foo.bar")));
        assert!(warnings.iter().any(|w| w.contains("num.network.threads")));
        let d = c.topic_defaults(&BTreeMap::new());
        assert_eq!(
            d.value(&BTreeMap::new(), "retention.ms").as_deref(),
            Some("604800000")
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        let e = load("num.partitions=abc\n").unwrap_err().to_string();
        assert!(e.contains("num.partitions"), "{e}");
        let e = load("log.segment.bytes=x\n").unwrap_err().to_string();
        assert!(e.contains("log.segment.bytes"), "{e}");
        let e = load("listeners=bogus\n").unwrap_err().to_string();
        assert!(e.contains("listeners"), "{e}");
    }

    #[test]
    fn replication_data_plane_settings() {
        let (c, _) = load("").expect("config");
        assert_eq!(c.replication.hw_checkpoint_interval_ms, 5000);
        assert!(!c.replication.rack_aware_selector, "no selector by default");
        let (c, _) = load(
            "replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector\n\
             replica.high.watermark.checkpoint.interval.ms=250\n",
        )
        .expect("config");
        assert!(c.replication.rack_aware_selector);
        assert_eq!(c.replication.hw_checkpoint_interval_ms, 250);
        let e = load("replica.selector.class=com.example.MySelector\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("replica.selector.class"), "{e}");
    }

    #[test]
    fn properties_syntax() {
        let p =
            parse_properties("a = 1\nb: 2\n! c\nlong=x\\\n  y\n", Path::new("x")).expect("parse");
        assert_eq!(
            p,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("long".into(), "xy".into())
            ]
        );
    }
}
