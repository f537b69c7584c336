//! Broker configuration in Kafka's `server.properties` format with Kafka's names.
//!
//! Every key Nagare knows has one definition in [`BROKER_CONFIGS`] (type, default, doc, Kafka's
//! update mode, and whether Nagare acts on it). Keys Nagare implements are validated: an
//! invalid value is a startup error naming the key. Keys Kafka has but Nagare does not act
//! on, and keys nobody knows, are warnings naming them (as Kafka warns about unknown keys),
//! so existing files work.
//!
//! - `definitions`: the table, its checks and the README's rendering;
//! - `parse`: the properties syntax, `--override`, typed reads with the table's defaults;
//! - `listeners`: `node.id`, roles, listeners and voters and the rules tying them together.

mod definitions;
mod dynamic;
mod listeners;
mod parse;
mod tiered;

pub use tiered::TieredConfig;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use nagare_metadata::topic_config::TopicDefaults;

pub use definitions::{
    definition, definitions, markdown_table, ConfigDef, ConfigType, DefaultValue, Status,
    UpdateMode, Validator, BROKER_CONFIGS,
};
pub use dynamic::{
    check_broker_config, check_group_config, check_group_configs, group_config,
    group_config_default, group_overrides, GroupConfigDef, RuntimeSettings, GROUP_CONFIGS,
};
pub use listeners::{parse_listeners, parse_security_protocol_map, Listener};
pub use parse::parse_properties;

use parse::Props;

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

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
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
    /// `authorizer.class.name`, `super.users`, `allow.everyone.if.no.acl.found`.
    pub authorizer: crate::standard_authorizer::AuthorizerConfig,
    /// `listener.security.protocol.map`, resolved for every listener (see
    /// [`BrokerConfig::security_protocol`]).
    pub listener_security_protocols: BTreeMap<String, crate::context::SecurityProtocol>,
    /// `inter.broker.listener.name` (upper case), validated against `listeners` and
    /// `advertised.listeners`; see [`BrokerConfig::broker_listener`].
    pub inter_broker_listener_name: Option<String>,
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
    /// `transaction.partition.verification.enable` (KIP-890 part 1).
    pub transaction_partition_verification_enable: bool,
    /// `request.timeout.ms`: the acks=all wait of WriteTxnMarkers' markers.
    pub request_timeout_ms: u64,
    /// `fetch.max.bytes` (broker cap on a fetch response).
    pub fetch_max_bytes: i32,
    /// `max.incremental.fetch.session.cache.slots`.
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `max.request.partition.size.limit`: partitions per DescribeTopicPartitions response.
    pub max_request_partition_size_limit: i32,
    /// `telemetry.max.bytes`: largest KIP-714 PushTelemetry payload accepted.
    pub telemetry_max_bytes: i32,
    /// `metrics.enabled`: whether listeners record per-request metrics.
    pub metrics_enabled: bool,
    /// `http.metrics.bearer.token`: the token `/metrics` requires, if any.
    pub http_metrics_bearer_token: Option<String>,
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
    /// The transaction coordinator's settings (`transaction.state.log.*`,
    /// `transactional.id.expiration.ms`, the cleanup intervals).
    pub transaction: TransactionConfig,
    /// The KRaft quorum settings (`controller.quorum.*`, `broker.*` liveness).
    pub quorum: QuorumConfig,
    /// The replication settings (`replica.*`).
    pub replication: ReplicationConfig,
    /// Client quota windows and connection limits.
    pub quota: QuotaConfig,
    /// `http.listeners`: the `host:port` addresses serving `/metrics` and `/health/*`.
    pub http_listeners: Vec<String>,
    /// The `https://` entries of `http.listeners` (`host:port`), served with TLS.
    pub https_listeners: Vec<String>,
    /// `log.format`: `json` for one JSON object per log line, else text.
    pub log_json: bool,
    /// `log.level`: the root logger's level, when the config sets it.
    pub log_level: Option<crate::logging::LogLevel>,
    /// `log.levels`: per-logger levels.
    pub log_levels: Vec<(String, crate::logging::LogLevel)>,
    /// Tiered storage (`remote.log.*`, `rsm.config.*`).
    pub tiered: TieredConfig,
    /// `nagare.metadata.leader.failover.wait.ms`: the bound of a Metadata answer held
    /// across a leader's death (see [`crate::failover_hold`]); 0 never holds.
    pub metadata_leader_failover_wait_ms: u64,
}

/// Client quota windows and connection limits, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaConfig {
    /// `quota.window.num`.
    pub window_num: usize,
    /// `quota.window.size.seconds`.
    pub window_size_seconds: u64,
    /// `max.connections.per.ip`.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: host or address → count.
    pub max_connections_per_ip_overrides: BTreeMap<String, usize>,
    /// `max.connection.creation.rate` (broker-wide, per second).
    pub max_connection_creation_rate: u64,
    /// `listener.name.<listener>.max.connection.creation.rate`, by listener name.
    pub listener_connection_creation_rate: BTreeMap<String, u64>,
}

impl QuotaConfig {
    /// The client quota window these settings describe.
    pub fn window(&self) -> crate::quotas::QuotaWindow {
        crate::quotas::QuotaWindow {
            samples: self.window_num.max(1),
            window_ms: self.window_size_seconds.max(1) * 1000,
        }
    }
}

/// Parses `http.listeners` (`http://host:port,...`, `https://host:port`) into `host:port`
/// bind addresses: the plain ones, then the TLS ones.
fn parse_http_listeners(value: &str) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let key = "http.listeners";
    let (mut out, mut tls) = (Vec::new(), Vec::new());
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (addr, is_tls) = match (
            entry.strip_prefix("http://"),
            entry.strip_prefix("https://"),
        ) {
            (Some(a), _) => (a, false),
            (None, Some(a)) => (a, true),
            (None, None) => {
                return Err(invalid(
                    key,
                    value,
                    format!("`{entry}` is not http://host:port or https://host:port"),
                ))
            }
        };
        let addr = addr.trim_end_matches('/');
        let port_ok = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(invalid(key, value, format!("`{entry}` has no host:port")));
        }
        if is_tls {
            tls.push(addr.to_string());
        } else {
            out.push(addr.to_string());
        }
    }
    Ok((out, tls))
}

/// Parses `max.connections.per.ip.overrides` (`host:count,...`, Kafka's format).
fn parse_ip_overrides(value: &str) -> Result<BTreeMap<String, usize>, ConfigError> {
    let key = "max.connections.per.ip.overrides";
    let mut out = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, count)) = entry.rsplit_once(':') else {
            return Err(invalid(key, value, format!("`{entry}` is not host:count")));
        };
        let count: usize = count
            .trim()
            .parse()
            .map_err(|_| invalid(key, value, format!("`{count}` is not a count")))?;
        out.insert(host.trim().to_string(), count);
    }
    Ok(out)
}

/// The transaction coordinator's settings, with Kafka's names and defaults
/// (`transaction.max.timeout.ms` is [`BrokerConfig::transaction_max_timeout_ms`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions`: partitions of `__transaction_state`.
    pub state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor`: honoured when set; left at its default it
    /// is capped at the registered brokers, as `offsets.topic.replication.factor` is.
    pub state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr`: `min.insync.replicas` of `__transaction_state`.
    pub state_log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub state_log_segment_bytes: i64,
    /// `transactional.id.expiration.ms`.
    pub transactional_id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    pub abort_timed_out_transaction_cleanup_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    pub remove_expired_transaction_cleanup_interval_ms: i64,
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
    /// `nagare.broker.disconnect.fence.grace.ms`: fence a broker this long after the peer
    /// closed its heartbeat connection (`None`: -1, session timeout only).
    pub broker_disconnect_fence_grace_ms: Option<u64>,
}

impl BrokerConfig {
    /// Loads a config: the file (if any), then `key=value` overrides; returns the config and
    /// warnings to log (unknown or not implemented keys).
    pub fn load(
        file: Option<&Path>,
        overrides: &[String],
    ) -> Result<(Self, Vec<String>), ConfigError> {
        Self::from_props(parse::read_props(file, overrides)?)
    }

    /// Validates properties and fills the defaults of [`BROKER_CONFIGS`] (Kafka's, and
    /// single-node defaults where Kafka has none: node 1, combined roles, 127.0.0.1:9092,
    /// `./nagare-data`).
    pub fn from_props(props: BTreeMap<String, String>) -> Result<(Self, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        for (k, v) in &props {
            warnings.extend(definitions::check(k, v)?);
        }
        let p = Props::new(&props);
        let topology = listeners::resolve(p)?;
        let log_dirs: Vec<PathBuf> = p
            .given("log.dirs")
            .or(p.given("log.dir"))
            .or(p.text("log.dirs"))
            .unwrap_or_default()
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
        let metadata_log_dir = p
            .given("metadata.log.dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| log_dirs[0].clone());
        // KIP-392: none (consumers read from leaders only) or Kafka's rack-aware selector.
        let rack_aware_selector = match p.given("replica.selector.class").map(str::trim) {
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
        let authorizer = crate::standard_authorizer::AuthorizerConfig::parse(
            p.given("authorizer.class.name"),
            p.given("super.users"),
            p.boolean("allow.everyone.if.no.acl.found"),
        )
        .map_err(|(key, value, reason)| invalid(key, &value, reason))?;
        let int = |k: &str| p.int(k);
        // Kafka: zero connections per ip only makes sense with overrides letting some in.
        if int("max.connections.per.ip") == 0
            && p.given("max.connections.per.ip.overrides")
                .is_none_or(|v| v.trim().is_empty())
        {
            return Err(invalid(
                "max.connections.per.ip",
                "0",
                "may be 0 only when max.connections.per.ip.overrides is set",
            ));
        }
        let cfg = BrokerConfig {
            authorizer,
            node_id: topology.node_id,
            process_roles: topology.process_roles,
            listeners: topology.listeners,
            advertised_listeners: topology.advertised_listeners,
            controller_listener_names: topology.controller_listener_names,
            listener_security_protocols: topology.security_protocols,
            inter_broker_listener_name: topology.inter_broker_listener_name,
            metadata_log_dir,
            num_partitions: int("num.partitions") as i32,
            default_replication_factor: int("default.replication.factor") as i16,
            auto_create_topics_enable: p.boolean("auto.create.topics.enable"),
            delete_topic_enable: p.boolean("delete.topic.enable"),
            socket_request_max_bytes: int("socket.request.max.bytes") as usize,
            log_retention_check_interval_ms: int("log.retention.check.interval.ms") as u64,
            // Nagare deviates from Kafka (which never fsyncs by default and relies on
            // replication): data written with acks 0/1 is fsynced at least once a second.
            log_flush_interval_ms: int("log.flush.interval.ms").max(1) as u64,
            log_flush_offset_checkpoint_interval_ms: int("log.flush.offset.checkpoint.interval.ms")
                as u64,
            max_connections: int("max.connections") as usize,
            broker_rack: p.given("broker.rack").map(str::to_string),
            transaction_max_timeout_ms: int("transaction.max.timeout.ms") as i32,
            transaction_partition_verification_enable: p
                .boolean("transaction.partition.verification.enable"),
            request_timeout_ms: int("request.timeout.ms") as u64,
            fetch_max_bytes: int("fetch.max.bytes") as i32,
            max_incremental_fetch_session_cache_slots: int(
                "max.incremental.fetch.session.cache.slots",
            ) as usize,
            max_request_partition_size_limit: int("max.request.partition.size.limit") as i32,
            telemetry_max_bytes: int("telemetry.max.bytes") as i32,
            metrics_enabled: p.boolean("metrics.enabled"),
            http_metrics_bearer_token: p
                .text("http.metrics.bearer.token")
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            cluster_id: p.given("cluster.id").map(str::to_string),
            producer_id_expiration_ms: int("producer.id.expiration.ms"),
            connections_max_idle_ms: int("connections.max.idle.ms") as u64,
            offsets_topic_num_partitions: int("offsets.topic.num.partitions") as i32,
            offsets_topic_replication_factor: int("offsets.topic.replication.factor") as i16,
            offsets_topic_segment_bytes: int("offsets.topic.segment.bytes"),
            group: nagare_coordinator::GroupCoordinatorConfig {
                min_session_timeout_ms: int("group.min.session.timeout.ms") as i32,
                max_session_timeout_ms: int("group.max.session.timeout.ms") as i32,
                initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms") as i32,
                max_size: int("group.max.size") as usize,
                offsets_retention_ms: int("offsets.retention.minutes") * 60_000,
                offsets_retention_check_interval_ms: int("offsets.retention.check.interval.ms"),
                offset_metadata_max_bytes: int("offset.metadata.max.bytes") as usize,
                max_record_bytes: int("message.max.bytes") as usize,
                // KIP-848 consumer groups.
                consumer_session_timeout_ms: int("group.consumer.session.timeout.ms") as i32,
                consumer_heartbeat_interval_ms: int("group.consumer.heartbeat.interval.ms") as i32,
                consumer_assignors: consumer_assignors(
                    p.text("group.consumer.assignors").unwrap_or_default(),
                ),
                consumer_max_size: int("group.consumer.max.size") as usize,
                offsets_commit_timeout_ms: int("offsets.commit.timeout.ms") as u64,
                ..Default::default()
            },
            quorum: QuorumConfig {
                voters: topology.voters,
                voters_configured: topology.voters_configured,
                election_timeout_ms: int("controller.quorum.election.timeout.ms") as u64,
                election_backoff_max_ms: int("controller.quorum.election.backoff.max.ms") as u64,
                fetch_timeout_ms: int("controller.quorum.fetch.timeout.ms") as u64,
                request_timeout_ms: int("controller.quorum.request.timeout.ms") as u64,
                retry_backoff_ms: int("controller.quorum.retry.backoff.ms") as u64,
                max_record_bytes_between_snapshots: int(
                    "metadata.log.max.record.bytes.between.snapshots",
                ) as u64,
                broker_session_timeout_ms: int("broker.session.timeout.ms") as u64,
                broker_heartbeat_interval_ms: int("broker.heartbeat.interval.ms") as u64,
                broker_disconnect_fence_grace_ms: u64::try_from(int(
                    "nagare.broker.disconnect.fence.grace.ms",
                ))
                .ok(),
            },
            transaction: TransactionConfig {
                state_log_num_partitions: int("transaction.state.log.num.partitions") as i32,
                state_log_replication_factor: int("transaction.state.log.replication.factor")
                    as i16,
                state_log_min_isr: int("transaction.state.log.min.isr") as i32,
                state_log_segment_bytes: int("transaction.state.log.segment.bytes"),
                transactional_id_expiration_ms: int("transactional.id.expiration.ms"),
                abort_timed_out_transaction_cleanup_interval_ms: int(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                ),
                remove_expired_transaction_cleanup_interval_ms: int(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                ),
            },
            replication: ReplicationConfig {
                lag_time_max_ms: int("replica.lag.time.max.ms"),
                fetch_wait_max_ms: int("replica.fetch.wait.max.ms") as i32,
                fetch_min_bytes: int("replica.fetch.min.bytes") as i32,
                fetch_max_bytes: int("replica.fetch.max.bytes") as i32,
                fetch_response_max_bytes: int("replica.fetch.response.max.bytes") as i32,
                fetch_backoff_ms: int("replica.fetch.backoff.ms") as u64,
                socket_timeout_ms: int("replica.socket.timeout.ms") as u64,
                hw_checkpoint_interval_ms: int("replica.high.watermark.checkpoint.interval.ms")
                    as u64,
                rack_aware_selector,
            },
            quota: QuotaConfig {
                window_num: int("quota.window.num").max(1) as usize,
                window_size_seconds: int("quota.window.size.seconds").max(1) as u64,
                max_connections_per_ip: int("max.connections.per.ip").max(0) as usize,
                max_connections_per_ip_overrides: parse_ip_overrides(
                    p.text("max.connections.per.ip.overrides")
                        .unwrap_or_default(),
                )?,
                max_connection_creation_rate: int("max.connection.creation.rate").max(0) as u64,
                listener_connection_creation_rate: props
                    .iter()
                    .filter(|(k, _)| {
                        definitions::listener_override(k)
                            .is_some_and(|d| d.name == "max.connection.creation.rate")
                    })
                    .filter_map(|(k, v)| {
                        let listener = k
                            .strip_prefix("listener.name.")?
                            .strip_suffix(".max.connection.creation.rate")?;
                        Some((listener.to_uppercase(), v.trim().parse().ok()?))
                    })
                    .collect(),
            },
            http_listeners: parse_http_listeners(p.text("http.listeners").unwrap_or_default())?.0,
            https_listeners: parse_http_listeners(p.text("http.listeners").unwrap_or_default())?.1,
            log_json: match p.text("log.format").unwrap_or("text").trim() {
                "text" => false,
                "json" => true,
                other => return Err(invalid("log.format", other, "expected text or json")),
            },
            log_level: match p.given("log.level") {
                None => None,
                Some(v) => Some(crate::logging::LogLevel::parse(v).ok_or_else(|| {
                    invalid(
                        "log.level",
                        v,
                        "expected OFF, FATAL, ERROR, WARN, INFO, DEBUG, TRACE or ALL",
                    )
                })?),
            },
            log_levels: crate::logging::parse_levels(p.text("log.levels").unwrap_or_default())
                .map_err(|e| {
                    invalid(
                        "log.levels",
                        p.text("log.levels").unwrap_or_default(),
                        e.to_string(),
                    )
                })?,
            tiered: TieredConfig::parse(p)?,
            metadata_leader_failover_wait_ms: int("nagare.metadata.leader.failover.wait.ms").max(0)
                as u64,
            log_dirs,
            props: BTreeMap::new(),
        };
        Ok((BrokerConfig { props, ..cfg }, warnings))
    }

    /// The controller's election settings: `unclean.leader.election.enable` (default false),
    /// `auto.leader.rebalance.enable` (true), `leader.imbalance.check.interval.seconds` (300)
    /// and `leader.imbalance.per.broker.percentage` (10), as in Kafka.
    pub fn elections(&self) -> nagare_controller::elections::ElectionConfig {
        let p = Props::new(&self.props);
        nagare_controller::elections::ElectionConfig {
            unclean_leader_election_enable: p.boolean("unclean.leader.election.enable"),
            auto_leader_rebalance_enable: p.boolean("auto.leader.rebalance.enable"),
            leader_imbalance_check_interval_ms: (p
                .int("leader.imbalance.check.interval.seconds")
                .max(1) as u64)
                .saturating_mul(1000),
            leader_imbalance_per_broker_percentage: p
                .int("leader.imbalance.per.broker.percentage")
                .clamp(0, u32::MAX as i64)
                as u32,
        }
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

    /// The security protocol of listener `name` (`listener.security.protocol.map`; every
    /// configured listener has one, validated at load; PLAINTEXT for an unknown name).
    pub fn security_protocol(&self, name: &str) -> crate::context::SecurityProtocol {
        self.listener_security_protocols
            .get(&name.to_ascii_uppercase())
            .copied()
            .unwrap_or(crate::context::SecurityProtocol::Plaintext)
    }

    /// The inter-broker listener: `inter.broker.listener.name` when set, else the first
    /// non-controller listener. Brokers replicate and send transaction markers over it, other
    /// brokers reach this one on its advertised endpoint, and the node binds it first.
    pub fn broker_listener(&self) -> Option<&Listener> {
        match &self.inter_broker_listener_name {
            Some(name) => self.listeners.iter().find(|l| &l.name == name),
            None => self
                .listeners
                .iter()
                .find(|l| !self.controller_listener_names.contains(&l.name)),
        }
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
        let p = Props::new(&self.props);
        let threads = p.int("log.cleaner.threads").max(0) as usize;
        LogCleanerSettings {
            enabled: p.boolean("log.cleaner.enable") && threads > 0,
            backoff_ms: p.int("log.cleaner.backoff.ms").max(0) as u64,
            storage: nagare_storage::CleanerConfig {
                dedupe_buffer_size: p.int("log.cleaner.dedupe.buffer.size").max(0) as u64,
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
fn consumer_assignors(v: &str) -> Vec<String> {
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
    fn logging_keys() {
        use crate::logging::LogLevel;
        let c = load(KAFKA_FILE).expect("config").0;
        assert_eq!(
            (c.log_json, c.log_level, c.log_levels.len()),
            (false, None, 0)
        );
        let c = load(&format!(
            "{KAFKA_FILE}\nlog.format=json\nlog.level=warn\nlog.levels=nagare_raft=DEBUG\n"
        ))
        .expect("config")
        .0;
        assert!(c.log_json);
        assert_eq!(c.log_level, Some(LogLevel::Warn));
        assert_eq!(c.log_levels, [("nagare_raft".to_string(), LogLevel::Debug)]);
        for (key, bad) in [
            ("log.format", "xml"),
            ("log.level", "LOUD"),
            ("log.levels", "nagare_raft"),
            ("log.levels", "nagare raft=INFO"),
        ] {
            let e = load(&format!("{KAFKA_FILE}\n{key}={bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn http_listeners() {
        let (c, warnings) = load(&format!(
            "{KAFKA_FILE}\nhttp.listeners=http://127.0.0.1:8080, http://[::1]:0/\n"
        ))
        .expect("config");
        assert!(!warnings.iter().any(|w| w.contains("http")), "{warnings:?}");
        assert_eq!(c.http_listeners, ["127.0.0.1:8080", "[::1]:0"]);
        let c = load(&format!(
            "{KAFKA_FILE}\nhttp.listeners=https://127.0.0.1:8443,http://127.0.0.1:8080\n"
        ))
        .expect("config")
        .0;
        assert_eq!(c.https_listeners, ["127.0.0.1:8443"]);
        assert_eq!(c.http_listeners, ["127.0.0.1:8080"]);
        // Off unless set.
        assert!(load(KAFKA_FILE)
            .expect("config")
            .0
            .http_listeners
            .is_empty());
        for bad in [
            "ftp://127.0.0.1:8443",
            "127.0.0.1:8080",
            "http://nohost",
            "http://:80",
        ] {
            let e = load(&format!("{KAFKA_FILE}\nhttp.listeners={bad}\n"))
                .expect_err(bad)
                .to_string();
            assert!(e.contains("http.listeners"), "{e}");
        }
    }

    #[test]
    fn quota_and_connection_limit_keys() {
        let (c, warnings) = load(&format!(
            "{KAFKA_FILE}\nmax.connections.per.ip=5\nmax.connections.per.ip.overrides=10.0.0.1:50, localhost:7\nmax.connection.creation.rate=20\nlistener.name.plaintext.max.connection.creation.rate=3\nquota.window.num=5\n"
        ))
        .expect("valid");
        assert_eq!(c.quota.max_connections_per_ip, 5);
        assert_eq!(
            c.quota.max_connections_per_ip_overrides,
            BTreeMap::from([("10.0.0.1".to_string(), 50), ("localhost".to_string(), 7)])
        );
        assert_eq!(c.quota.max_connection_creation_rate, 20);
        assert_eq!(
            c.quota.listener_connection_creation_rate,
            BTreeMap::from([("PLAINTEXT".to_string(), 3)])
        );
        assert_eq!(c.quota.window().samples, 5);
        assert_eq!(c.quota.window().window_ms, 1000);
        assert!(
            !warnings.iter().any(|w| w.contains("max.connection")),
            "{warnings:?}"
        );
        // Defaults: unlimited, Kafka's windows.
        let (c, _) = load(KAFKA_FILE).expect("valid");
        assert_eq!(c.quota.max_connections_per_ip, i32::MAX as usize);
        assert_eq!(c.quota.window().samples, 11);
        assert!(load(&format!(
            "{KAFKA_FILE}\nmax.connections.per.ip.overrides=nocount\n"
        ))
        .is_err());
        assert!(load(&format!("{KAFKA_FILE}\nmax.connections.per.ip=0\n")).is_err());
        assert!(load(&format!(
            "{KAFKA_FILE}\nmax.connections.per.ip=0\nmax.connections.per.ip.overrides=10.0.0.1:5\n"
        ))
        .is_ok());
        assert!(load(&format!(
            "{KAFKA_FILE}\nlistener.name.plaintext.max.connection.creation.rate=-1\n"
        ))
        .is_err());
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
    fn authorizer_settings() {
        let (c, _) = load("").expect("defaults");
        assert!(!c.authorizer.enabled, "no authorizer by default");
        let (c, _) = load(
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:admin;User:broker\nallow.everyone.if.no.acl.found=true\n",
        )
        .expect("StandardAuthorizer");
        assert!(c.authorizer.enabled && c.authorizer.allow_everyone_if_no_acl_found);
        assert_eq!(c.authorizer.super_users, ["User:admin", "User:broker"]);
        let e = load("authorizer.class.name=kafka.security.authorizer.AclAuthorizer\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("authorizer.class.name") && e.contains("AclAuthorizer"),
            "{e}"
        );
        let e = load("super.users=admin\n").unwrap_err().to_string();
        assert!(e.contains("super.users"), "{e}");
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
}
