//! [`Client`]: cluster metadata, a connection per broker, admin, produce and fetch.
//!
//! Each concern adds an `impl Client` block in its own file: `connections` (the connection
//! pool, request sending, retry backoff), `metadata` (the metadata cache and partition
//! leaders), `admin` (topics, partitions and leader elections at the controller), `configs`,
//! `offsets` (ListOffsets), `produce` and `fetch`. Consumer groups are in `crate::group`,
//! cluster and quorum descriptions in `crate::cluster`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::connection::Connection;
use crate::error::Result;
use crate::types::{BrokerMetadata, ClientConfig, TopicMetadata};

mod acls;
mod admin;
mod configs;
mod connections;
mod fetch;
mod log_admin;
mod metadata;
mod offsets;
mod produce;
mod quotas;

pub use acls::{
    acl_code, acl_name, AclBinding, AclBindingFilter, OPERATIONS, PATTERN_TYPES, PERMISSION_TYPES,
    RESOURCE_TYPES,
};
pub use admin::ElectionResult;
pub use configs::ConfigDescription;
pub use log_admin::{DeleteRecordsResult, LogDirDescription};
pub use quotas::{QuotaEntityComponent, QuotaEntry, QuotaFilter, QuotaMatch};

/// Highest Produce/Fetch version that names topics rather than using topic ids; used when the
/// cluster's metadata has no topic id for a topic.
const LAST_VERSION_WITH_TOPIC_NAMES: i16 = 12;

/// Which broker a request should go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// Any broker (metadata, describe configs).
    Any,
    /// This broker (partition leaders, broker configs).
    Node(i32),
    /// The controller if known, else any broker (admin requests; KRaft brokers forward them).
    Controller,
}

/// Which connection was used, so a failed one can be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnKey {
    Bootstrap,
    Node(i32),
}

/// An async Kafka client: metadata, admin operations, produce and fetch.
///
/// It keeps one connection per broker (opened lazily) plus one to a bootstrap server, and a
/// metadata cache refreshed when a request fails because the cache was stale. Requests that
/// failed for a retriable reason are retried up to [`ClientConfig::retries`] times. Methods
/// take `&mut self`: a `Client` serves one task at a time; open several for parallelism.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    bootstrap: Option<Connection>,
    conns: HashMap<i32, Connection>,
    brokers: BTreeMap<i32, BrokerMetadata>,
    topics: HashMap<String, TopicMetadata>,
    controller_id: i32,
    cluster_id: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn duration_ms_i32(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

impl Client {
    /// Connects to the first reachable bootstrap server and loads the broker list.
    ///
    /// Fails with [`Error::Connect`](crate::Error::Connect) (one server) or
    /// [`Error::Bootstrap`](crate::Error::Bootstrap) (several) when no
    /// bootstrap server can be reached.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let mut client = Client {
            config,
            bootstrap: None,
            conns: HashMap::new(),
            brokers: BTreeMap::new(),
            topics: HashMap::new(),
            controller_id: -1,
            cluster_id: None,
        };
        client.metadata(Some(&[])).await?;
        Ok(client)
    }

    /// Shorthand for [`Client::connect`] with default settings and a comma-separated server list.
    pub async fn connect_to(bootstrap_servers: &str) -> Result<Client> {
        Self::connect(ClientConfig::new(bootstrap_servers)).await
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Brokers from the last metadata response, by node id.
    pub fn brokers(&self) -> &BTreeMap<i32, BrokerMetadata> {
        &self.brokers
    }

    /// The controller's node id from the last metadata response (-1 if unknown).
    pub fn controller_id(&self) -> i32 {
        self.controller_id
    }

    /// The cluster id from the last metadata response.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.as_deref()
    }
}
