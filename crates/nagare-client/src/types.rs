//! Plain data types of the client's API: metadata, admin requests, offsets and fetch results.

use std::time::Duration;

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::connection::ConnectionOptions;
use crate::records::ConsumedRecord;

/// Settings of a [`Client`](crate::Client).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of brokers to ask for cluster metadata first; any one reachable is enough.
    pub bootstrap_servers: Vec<String>,
    /// Sent in every request header; shows up in broker logs and quotas.
    pub client_id: String,
    /// Connect/request timeouts and the response size limit of each connection.
    pub connection: ConnectionOptions,
    /// How many times a request that failed for a retriable reason (leader moved, topic still
    /// being created, connection dropped before sending) is retried after refreshing metadata.
    pub retries: u32,
    /// Wait before the first retry; doubled on each further retry, up to one second.
    pub retry_backoff: Duration,
    /// How long the broker may wait for replicas to acknowledge a produce (`acks=all`); sent
    /// as the request's `timeout_ms`.
    pub produce_timeout: Duration,
    /// How long the controller may take to apply an admin request (create/delete topics, ...);
    /// sent as the request's `timeout_ms`. Also bounds how long the client waits for the change
    /// to show in metadata.
    pub admin_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with defaults for a comma-separated list of `host:port` servers.
    pub fn new(bootstrap_servers: &str) -> Self {
        ClientConfig {
            bootstrap_servers: bootstrap_servers
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            client_id: "nagare-client".to_owned(),
            connection: ConnectionOptions::default(),
            retries: 5,
            retry_backoff: Duration::from_millis(100),
            produce_timeout: Duration::from_secs(30),
            admin_timeout: Duration::from_secs(30),
        }
    }

    /// Sets the client id.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }
}

/// A broker as listed in cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// The broker's `node.id`.
    pub node_id: i32,
    /// Advertised host name.
    pub host: String,
    /// Advertised port.
    pub port: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// `host:port`, with IPv6 literals in brackets.
    pub fn addr(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition as listed in cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// Partition index.
    pub partition: i32,
    /// Node id of the leader, or -1 if there is none.
    pub leader: i32,
    /// The leader's epoch.
    pub leader_epoch: i32,
    /// All assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas.
    pub isr: Vec<i32>,
    /// Replicas on offline log directories or brokers.
    pub offline_replicas: Vec<i32>,
    /// A per-partition error (e.g. LEADER_NOT_AVAILABLE), if any.
    pub error: Option<ResponseError>,
}

/// One topic as listed in cluster metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMetadata {
    /// The topic's name.
    pub name: String,
    /// The topic's id (nil if the broker is too old to send one).
    pub topic_id: Uuid,
    /// True for internal topics such as `__consumer_offsets`.
    pub is_internal: bool,
    /// Partitions, sorted by index.
    pub partitions: Vec<PartitionMetadata>,
    /// A topic-level error (e.g. LEADER_NOT_AVAILABLE while it is being created), if any.
    pub error: Option<ResponseError>,
}

impl TopicMetadata {
    /// The replication factor: the replica count of partition 0 (0 if there are no partitions).
    pub fn replication_factor(&self) -> usize {
        self.partitions.first().map_or(0, |p| p.replicas.len())
    }

    /// The partition with this index, if it exists.
    pub fn partition(&self, partition: i32) -> Option<&PartitionMetadata> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// A snapshot of cluster metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The cluster id, if the broker sent one.
    pub cluster_id: Option<String>,
    /// Node id of the controller (-1 if unknown).
    pub controller_id: i32,
    /// Live brokers, sorted by node id.
    pub brokers: Vec<BrokerMetadata>,
    /// The topics asked for (all topics when none were named), sorted by name. Topics that do
    /// not exist are left out.
    pub topics: Vec<TopicMetadata>,
}

/// A topic to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    /// The topic's name.
    pub name: String,
    /// Number of partitions; `None` uses the broker's `num.partitions`.
    pub partitions: Option<i32>,
    /// Replication factor; `None` uses the broker's `default.replication.factor`.
    pub replication_factor: Option<i16>,
    /// Topic configs (e.g. `cleanup.policy=compact`), as name/value pairs.
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    /// A topic with broker-default partitions and replication factor.
    pub fn new(name: impl Into<String>) -> Self {
        NewTopic {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Sets the partition count.
    pub fn with_partitions(mut self, partitions: i32) -> Self {
        self.partitions = Some(partitions);
        self
    }

    /// Sets the replication factor.
    pub fn with_replication_factor(mut self, replication_factor: i16) -> Self {
        self.replication_factor = Some(replication_factor);
        self
    }

    /// Adds a topic config.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// Which offset [`Client::list_offsets`](crate::Client::list_offsets) looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The log end offset (high watermark): where the next record will go.
    Latest,
    /// The first offset whose timestamp is at or after this one (milliseconds since the epoch).
    Timestamp(i64),
    /// The offset of the record with the largest timestamp (KIP-734; ListOffsets v7+).
    MaxTimestamp,
    /// The first offset on the leader's local disk (tiered storage, KIP-405; ListOffsets v8+).
    EarliestLocal,
    /// The highest offset uploaded to remote storage, -1 if none (KIP-1005; ListOffsets v9+).
    LatestTiered,
}

impl OffsetSpec {
    /// The `timestamp` value ListOffsets uses to express this spec.
    pub fn to_wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::EarliestLocal => -4,
            OffsetSpec::LatestTiered => -5,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// How many replicas must have a produced batch before the broker answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// Fire and forget (`acks=0`): the broker sends no response; the base offset is unknown.
    None,
    /// The leader has appended it (`acks=1`).
    Leader,
    /// All in-sync replicas have it (`acks=all`, `-1`).
    #[default]
    All,
}

impl Acks {
    /// The `acks` field of a ProduceRequest.
    pub fn to_wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// A resource whose configs can be described or altered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic's configs.
    Topic(String),
    /// A broker's configs (by node id).
    Broker(i32),
    /// A broker's log levels (by node id; Kafka's BROKER_LOGGER, as `kafka-configs
    /// --entity-type broker-loggers`).
    BrokerLogger(i32),
}

impl ConfigResource {
    /// Kafka's resource type number (TOPIC = 2, BROKER = 4, BROKER_LOGGER = 8).
    pub fn resource_type(&self) -> i8 {
        match self {
            ConfigResource::Topic(_) => 2,
            ConfigResource::Broker(_) => 4,
            ConfigResource::BrokerLogger(_) => 8,
        }
    }

    /// The resource name as sent on the wire.
    pub fn resource_name(&self) -> String {
        match self {
            ConfigResource::Topic(name) => name.clone(),
            ConfigResource::Broker(id) | ConfigResource::BrokerLogger(id) => id.to_string(),
        }
    }
}

impl std::fmt::Display for ConfigResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigResource::Topic(name) => write!(f, "topic '{name}'"),
            ConfigResource::Broker(id) => write!(f, "broker {id}"),
            ConfigResource::BrokerLogger(id) => write!(f, "the loggers of broker {id}"),
        }
    }
}

/// Where a config's value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (`kafka-configs --alter --entity-type topics`, or at creation).
    DynamicTopic,
    /// Set dynamically for this broker.
    DynamicBroker,
    /// Set dynamically as the default of all brokers.
    DynamicDefaultBroker,
    /// From the broker's `server.properties`.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Set dynamically for a broker logger.
    DynamicBrokerLogger,
    /// Set on a client-metrics resource (KIP-714).
    DynamicClientMetrics,
    /// Set on a group (KIP-848 group configs).
    DynamicGroup,
    /// Some other or unknown source (the wire number).
    Other(i8),
}

impl ConfigSource {
    /// Maps the wire number.
    pub fn from_wire(source: i8) -> Self {
        match source {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            6 => ConfigSource::DynamicBrokerLogger,
            7 => ConfigSource::DynamicClientMetrics,
            8 => ConfigSource::DynamicGroup,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name for the source, as printed by `kafka-configs --describe`.
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLogger => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::DynamicClientMetrics => "CLIENT_METRICS_CONFIG",
            ConfigSource::DynamicGroup => "GROUP_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

/// One config of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// The config's name, e.g. `retention.ms`.
    pub name: String,
    /// Its value (`None` for sensitive configs or when unset).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// True if it cannot be changed dynamically.
    pub read_only: bool,
    /// True if the value is a secret (and therefore not returned).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// True if the value is the built-in default.
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// One change of an IncrementalAlterConfigs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Set `name` to `value`.
    Set(String, String),
    /// Remove the override of `name` (back to the default).
    Delete(String),
    /// Append `value` to the list config `name`.
    Append(String, String),
    /// Remove `value` from the list config `name`.
    Subtract(String, String),
}

impl AlterConfigOp {
    /// The config's name.
    pub fn name(&self) -> &str {
        match self {
            AlterConfigOp::Set(n, _)
            | AlterConfigOp::Delete(n)
            | AlterConfigOp::Append(n, _)
            | AlterConfigOp::Subtract(n, _) => n,
        }
    }

    /// Kafka's operation number (SET 0, DELETE 1, APPEND 2, SUBTRACT 3).
    pub fn op_code(&self) -> i8 {
        match self {
            AlterConfigOp::Set(..) => 0,
            AlterConfigOp::Delete(_) => 1,
            AlterConfigOp::Append(..) => 2,
            AlterConfigOp::Subtract(..) => 3,
        }
    }

    /// The value, if the operation has one.
    pub fn value(&self) -> Option<&str> {
        match self {
            AlterConfigOp::Set(_, v)
            | AlterConfigOp::Append(_, v)
            | AlterConfigOp::Subtract(_, v) => Some(v),
            AlterConfigOp::Delete(_) => None,
        }
    }
}

/// A topic partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds one.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Where to fetch from in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPosition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The first offset wanted.
    pub offset: i64,
}

/// Limits of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// How long the broker may wait for `min_bytes` of data.
    pub max_wait_ms: i32,
    /// Answer as soon as this many bytes are available.
    pub min_bytes: i32,
    /// Limit of the whole response (the broker still returns at least one batch).
    pub max_bytes: i32,
    /// Limit per partition.
    pub partition_max_bytes: i32,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
        }
    }
}

/// The result of fetching one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPartition {
    /// The topic's name.
    pub topic: String,
    /// The partition index.
    pub partition: i32,
    /// The partition's high watermark (last committed offset + 1).
    pub high_watermark: i64,
    /// The last stable offset (transactions), or -1 if unknown.
    pub last_stable_offset: i64,
    /// The log start offset, or -1 if unknown.
    pub log_start_offset: i64,
    /// Where to fetch next: past the last complete batch returned (even if it held no data
    /// records, e.g. only transaction markers), or the requested offset if nothing came back.
    pub next_offset: i64,
    /// Data records at or above the requested offset, in offset order.
    pub records: Vec<ConsumedRecord>,
}
