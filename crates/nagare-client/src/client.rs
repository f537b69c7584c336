//! [`Client`]: cluster metadata, a connection per broker, admin, produce and fetch.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreateTopicsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, FetchRequest, FetchResponse, IncrementalAlterConfigsRequest,
    ListOffsetsRequest, MetadataRequest, MetadataResponse, ProduceRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::connection::{api_key_of, Connection};
use crate::error::{check_code, Error, Result};
use crate::records::{decode_record_set, encode_batch, Compression, ConsumedRecord, ProduceRecord};
use crate::types::{
    Acks, AlterConfigOp, BrokerMetadata, ClientConfig, ConfigEntry, ConfigResource, ConfigSource,
    FetchOptions, FetchPosition, FetchedPartition, Metadata, NewTopic, OffsetSpec,
    PartitionMetadata, TopicMetadata, TopicPartition,
};

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
    /// Fails with [`Error::Connect`] (one server) or [`Error::Bootstrap`] (several) when no
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

    // ----- connections -------------------------------------------------------------------

    async fn bootstrap_connect(&mut self) -> Result<Connection> {
        if self.config.bootstrap_servers.is_empty() {
            return Err(Error::NoBootstrapServers);
        }
        let mut errors = Vec::new();
        for addr in &self.config.bootstrap_servers {
            match Connection::connect_with(
                addr,
                &self.config.client_id,
                self.config.connection.clone(),
            )
            .await
            {
                Ok(conn) => return Ok(conn),
                Err(e) => errors.push(e),
            }
        }
        // Bootstrap servers may be unreachable while advertised broker addresses work.
        for broker in self.brokers.values() {
            if let Ok(conn) = Connection::connect_with(
                &broker.addr(),
                &self.config.client_id,
                self.config.connection.clone(),
            )
            .await
            {
                return Ok(conn);
            }
        }
        if errors.len() == 1 {
            if let Some(e) = errors.pop() {
                return Err(e);
            }
        }
        Err(Error::Bootstrap {
            errors: errors.iter().map(ToString::to_string).collect(),
        })
    }

    /// Makes sure a healthy connection for `target` exists and says which one it is.
    async fn ensure_conn(&mut self, target: Target) -> Result<ConnKey> {
        self.conns.retain(|_, c| !c.is_broken());
        if self.bootstrap.as_ref().is_some_and(Connection::is_broken) {
            self.bootstrap = None;
        }
        let node = match target {
            Target::Node(n) => Some(n),
            Target::Controller if self.brokers.contains_key(&self.controller_id) => {
                Some(self.controller_id)
            }
            Target::Controller | Target::Any => {
                // Reuse any open broker connection before the bootstrap one.
                let mut open: Vec<i32> = self.conns.keys().copied().collect();
                open.sort_unstable();
                open.first().copied()
            }
        };
        if let Some(node_id) = node {
            if !self.conns.contains_key(&node_id) {
                let broker = self
                    .brokers
                    .get(&node_id)
                    .ok_or(Error::UnknownBroker { node_id })?;
                let conn = Connection::connect_with(
                    &broker.addr(),
                    &self.config.client_id,
                    self.config.connection.clone(),
                )
                .await?;
                self.conns.insert(node_id, conn);
            }
            return Ok(ConnKey::Node(node_id));
        }
        if self.bootstrap.is_none() {
            self.bootstrap = Some(self.bootstrap_connect().await?);
        }
        Ok(ConnKey::Bootstrap)
    }

    fn conn_mut(&mut self, key: ConnKey) -> Result<&mut Connection> {
        let conn = match key {
            ConnKey::Bootstrap => self.bootstrap.as_mut(),
            ConnKey::Node(n) => self.conns.get_mut(&n),
        };
        conn.ok_or(Error::ConnectionBroken {
            addr: format!("{key:?}"),
        })
    }

    fn drop_conn(&mut self, key: ConnKey) {
        match key {
            ConnKey::Bootstrap => self.bootstrap = None,
            ConnKey::Node(n) => {
                self.conns.remove(&n);
            }
        }
    }

    /// Sends a request built for the negotiated version (at most `cap`) to `target`. A
    /// connection that failed is dropped so the next request reconnects.
    pub(crate) async fn send_to<R: Request>(
        &mut self,
        target: Target,
        cap: Option<i16>,
        extra_wait: Duration,
        build: impl FnOnce(i16) -> R,
    ) -> Result<R::Response> {
        let key = self.ensure_conn(target).await?;
        let conn = self.conn_mut(key)?;
        let version = conn.negotiate(api_key_of::<R>()?, cap)?;
        let req = build(version);
        let timeout = conn.options().request_timeout + extra_wait;
        let result = conn.send_version_timeout(&req, version, timeout).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        result
    }

    /// Sleeps before retry number `attempt` (0-based): backoff doubled per attempt, at most 1 s.
    pub(crate) async fn backoff(&self, attempt: u32) {
        let wait = self
            .config
            .retry_backoff
            .saturating_mul(1u32 << attempt.min(10))
            .min(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }

    // ----- metadata ----------------------------------------------------------------------

    /// Fetches metadata for `topics` (`None`: all topics; `Some(&[])`: brokers only) and
    /// updates the cache. Topics that do not exist are left out of the result.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> Result<Metadata> {
        let mut attempt = 0;
        loop {
            match self.metadata_once(topics).await {
                Ok(m) => return Ok(m),
                Err(e) if e.is_transport() && attempt < self.config.retries => {
                    tracing::debug!(error = %e, "metadata request failed; retrying");
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn metadata_once(&mut self, topics: Option<&[&str]>) -> Result<Metadata> {
        let resp: MetadataResponse = self
            .send_to(Target::Any, None, Duration::ZERO, |version| {
                let mut req = MetadataRequest::default();
                req.allow_auto_topic_creation = false;
                req.topics = match topics {
                    // v0 has no null array; an empty one means "all topics" there.
                    None if version == 0 => Some(Vec::new()),
                    None => None,
                    Some(names) => Some(
                        names
                            .iter()
                            .map(|n| {
                                let mut t = MetadataRequestTopic::default();
                                t.name = Some(topic_name(n));
                                t
                            })
                            .collect(),
                    ),
                };
                req
            })
            .await?;
        Ok(self.apply_metadata(resp, topics))
    }

    /// Turns a Metadata response into [`Metadata`] and updates the cache.
    fn apply_metadata(&mut self, resp: MetadataResponse, asked: Option<&[&str]>) -> Metadata {
        let mut brokers: Vec<BrokerMetadata> = resp
            .brokers
            .iter()
            .map(|b| BrokerMetadata {
                node_id: b.node_id.0,
                host: b.host.to_string(),
                port: b.port,
                rack: b.rack.as_ref().map(ToString::to_string),
            })
            .collect();
        brokers.sort_by_key(|b| b.node_id);
        let new_brokers: BTreeMap<i32, BrokerMetadata> =
            brokers.iter().map(|b| (b.node_id, b.clone())).collect();
        // Connections to brokers that left or moved are dropped.
        self.conns.retain(|id, _| {
            let old = self.brokers.get(id);
            let new = new_brokers.get(id);
            new.is_some() && (old.is_none() || old == new)
        });
        self.brokers = new_brokers;
        self.controller_id = resp.controller_id.0;
        self.cluster_id = resp.cluster_id.as_ref().map(ToString::to_string);

        let mut topics = Vec::new();
        let mut missing = Vec::new();
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let error = ResponseError::try_from_code(t.error_code);
            if matches!(
                error,
                Some(ResponseError::UnknownTopicOrPartition | ResponseError::InvalidTopicException)
            ) {
                missing.push(name);
                continue;
            }
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|b| b.0).collect(),
                    error: ResponseError::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            topics.push(TopicMetadata {
                name,
                topic_id: t.topic_id,
                is_internal: t.is_internal,
                partitions,
                error,
            });
        }
        topics.sort_by(|a, b| a.name.cmp(&b.name));

        if asked.is_none() {
            self.topics.clear();
        }
        for name in missing {
            self.topics.remove(&name);
        }
        if let Some(names) = asked {
            // A topic we asked about and that is not in the answer does not exist either.
            for n in names {
                if !topics.iter().any(|t| t.name == *n) {
                    self.topics.remove(*n);
                }
            }
        }
        for t in &topics {
            self.topics.insert(t.name.clone(), t.clone());
        }
        Metadata {
            cluster_id: self.cluster_id.clone(),
            controller_id: self.controller_id,
            brokers,
            topics,
        }
    }

    /// Names of all topics, sorted (internal topics included).
    pub async fn list_topics(&mut self) -> Result<Vec<String>> {
        let md = self.metadata(None).await?;
        Ok(md.topics.into_iter().map(|t| t.name).collect())
    }

    /// Metadata of the named topics (all topics if `names` is empty), sorted by name.
    ///
    /// Fails with [`Error::UnknownTopic`] if a named topic does not exist.
    pub async fn describe_topics(&mut self, names: &[&str]) -> Result<Vec<TopicMetadata>> {
        let md = if names.is_empty() {
            self.metadata(None).await?
        } else {
            self.metadata(Some(names)).await?
        };
        for n in names {
            if !md.topics.iter().any(|t| t.name == *n) {
                return Err(Error::UnknownTopic {
                    topic: (*n).to_owned(),
                });
            }
        }
        Ok(md.topics)
    }

    /// Metadata of one topic, from the cache or (if absent) from a broker.
    pub async fn topic_metadata(&mut self, topic: &str) -> Result<TopicMetadata> {
        if let Some(t) = self.topics.get(topic) {
            if !t.partitions.is_empty() {
                return Ok(t.clone());
            }
        }
        self.metadata(Some(&[topic])).await?;
        self.topics
            .get(topic)
            .cloned()
            .ok_or_else(|| Error::UnknownTopic {
                topic: topic.to_owned(),
            })
    }

    /// Forgets cached metadata of `topic`, so the next request refreshes it.
    pub fn invalidate_topic(&mut self, topic: &str) {
        self.topics.remove(topic);
    }

    /// The leader of a partition, refreshing metadata if the cache has none.
    async fn leader_for(&mut self, topic: &str, partition: i32) -> Result<i32> {
        let cached = self
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition))
            .map(|p| p.leader)
            .filter(|&l| l >= 0 && self.brokers.contains_key(&l));
        if let Some(leader) = cached {
            return Ok(leader);
        }
        self.metadata(Some(&[topic])).await?;
        let t = self.topics.get(topic).ok_or_else(|| Error::UnknownTopic {
            topic: topic.to_owned(),
        })?;
        if t.partitions.is_empty() {
            // Still being created.
            return Err(Error::LeaderNotAvailable {
                topic: topic.to_owned(),
                partition,
            });
        }
        let p = t
            .partition(partition)
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_owned(),
                partition,
                count: t.partitions.len(),
            })?;
        if p.leader < 0 {
            return Err(Error::LeaderNotAvailable {
                topic: topic.to_owned(),
                partition,
            });
        }
        if !self.brokers.contains_key(&p.leader) {
            return Err(Error::UnknownBroker { node_id: p.leader });
        }
        Ok(p.leader)
    }

    fn topic_id(&self, topic: &str) -> Uuid {
        self.topics.get(topic).map_or(Uuid::nil(), |t| t.topic_id)
    }

    /// Polls metadata until `done` holds for every topic in `names` or the admin timeout
    /// passes (then it just returns: the change was accepted, only its propagation is slow).
    async fn wait_for_topics(
        &mut self,
        names: &[&str],
        done: impl Fn(&str, Option<&TopicMetadata>) -> bool,
    ) {
        let deadline = Instant::now() + self.config.admin_timeout;
        let mut wait = Duration::from_millis(10);
        loop {
            if let Ok(md) = self.metadata(Some(names)).await {
                if names
                    .iter()
                    .all(|n| done(n, md.topics.iter().find(|t| t.name == *n)))
                {
                    return;
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!(?names, "metadata did not reflect the change in time");
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }

    // ----- admin -------------------------------------------------------------------------

    /// Sends an admin request to the controller, retrying on NOT_CONTROLLER after refreshing
    /// metadata. `not_controller` says whether a response failed only for that reason.
    async fn send_admin<R: Request>(
        &mut self,
        build: impl Fn(i16) -> R,
        not_controller: impl Fn(&R::Response) -> bool,
    ) -> Result<R::Response> {
        let mut attempt = 0;
        loop {
            let result = self
                .send_to(Target::Controller, None, Duration::ZERO, &build)
                .await;
            let retry = match &result {
                Ok(resp) => not_controller(resp),
                Err(e) => e.is_transport(),
            };
            if !retry || attempt >= self.config.retries {
                return result;
            }
            self.backoff(attempt).await;
            attempt += 1;
            let _ = self.metadata(Some(&[])).await;
        }
    }

    /// Creates topics (`validate_only`: only check that it would work). Waits until the new
    /// topics show in metadata with a leader for every partition, so they can be used at once.
    ///
    /// Fails with the first per-topic error, e.g. [`Error::Kafka`] with
    /// [`ResponseError::TopicAlreadyExists`].
    pub async fn create_topics(&mut self, topics: &[NewTopic], validate_only: bool) -> Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = CreateTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.validate_only = validate_only;
                    req.topics = topics
                        .iter()
                        .map(|t| {
                            let mut ct = CreatableTopic::default();
                            ct.name = topic_name(&t.name);
                            ct.num_partitions = t.partitions.unwrap_or(-1);
                            ct.replication_factor = t.replication_factor.unwrap_or(-1);
                            ct.configs = t
                                .configs
                                .iter()
                                .map(|(k, v)| {
                                    let mut c = CreatableTopicConfig::default();
                                    c.name = StrBytes::from_string(k.clone());
                                    c.value = Some(StrBytes::from_string(v.clone()));
                                    c
                                })
                                .collect();
                            ct
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.topics.is_empty()
                        && resp
                            .topics
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for t in &topics_in_order(topics.iter().map(|t| t.name.as_str()), &resp.topics, |r| {
            r.name.0.as_str()
        }) {
            match t {
                Some(r) => check_code(r.error_code, r.error_message.as_deref(), || {
                    format!("cannot create topic '{}'", r.name.0)
                })?,
                None => {
                    return Err(Error::UnexpectedResponse {
                        addr: "controller".into(),
                        reason: "CreateTopics response lacks a topic".into(),
                    })
                }
            }
        }
        if !validate_only {
            let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
            self.wait_for_topics(&names, |_, t| {
                t.is_some_and(|t| {
                    !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0)
                })
            })
            .await;
        }
        Ok(())
    }

    /// Deletes topics, then waits until they are gone from metadata.
    pub async fn delete_topics(&mut self, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = DeleteTopicsRequest::default();
                    req.timeout_ms = timeout_ms;
                    // v6+ sends `topics`, older versions `topic_names`; the encoder picks.
                    req.topic_names = names.iter().map(|n| topic_name(n)).collect();
                    req.topics = names
                        .iter()
                        .map(|n| {
                            let mut t = DeleteTopicState::default();
                            t.name = Some(topic_name(n));
                            t
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.responses.is_empty()
                        && resp
                            .responses
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for (i, r) in resp.responses.iter().enumerate() {
            let name = r
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .or_else(|| names.get(i).map(|n| (*n).to_owned()))
                .unwrap_or_default();
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(Error::UnknownTopic { topic: name });
            }
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("cannot delete topic '{name}'")
            })?;
        }
        for n in names {
            self.topics.remove(*n);
        }
        self.wait_for_topics(names, |_, t| t.is_none()).await;
        Ok(())
    }

    /// Raises the partition count of topics to the given totals (Kafka cannot lower it), then
    /// waits until metadata shows the new partitions with leaders.
    pub async fn create_partitions(
        &mut self,
        new_totals: &[(&str, i32)],
        validate_only: bool,
    ) -> Result<()> {
        if new_totals.is_empty() {
            return Ok(());
        }
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let resp = self
            .send_admin(
                |_| {
                    let mut req = CreatePartitionsRequest::default();
                    req.timeout_ms = timeout_ms;
                    req.validate_only = validate_only;
                    req.topics = new_totals
                        .iter()
                        .map(|(name, count)| {
                            let mut t = CreatePartitionsTopic::default();
                            t.name = topic_name(name);
                            t.count = *count;
                            t.assignments = None;
                            t
                        })
                        .collect();
                    req
                },
                |resp| {
                    !resp.results.is_empty()
                        && resp
                            .results
                            .iter()
                            .all(|t| t.error_code == ResponseError::NotController.code())
                },
            )
            .await?;
        for r in &resp.results {
            if r.error_code == ResponseError::UnknownTopicOrPartition.code() {
                return Err(Error::UnknownTopic {
                    topic: r.name.0.to_string(),
                });
            }
            check_code(r.error_code, r.error_message.as_deref(), || {
                format!("cannot create partitions for topic '{}'", r.name.0)
            })?;
        }
        if !validate_only {
            let names: Vec<&str> = new_totals.iter().map(|(n, _)| *n).collect();
            self.wait_for_topics(&names, |name, t| {
                let want = new_totals
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(0, |(_, c)| *c);
                t.is_some_and(|t| {
                    t.partitions.len() >= usize::try_from(want).unwrap_or(0)
                        && t.partitions.iter().all(|p| p.leader >= 0)
                })
            })
            .await;
        }
        Ok(())
    }

    /// All configs of a resource (`keys`: only these).
    pub async fn describe_configs(
        &mut self,
        resource: &ConfigResource,
        keys: Option<&[&str]>,
    ) -> Result<Vec<ConfigEntry>> {
        let target = match resource {
            ConfigResource::Broker(id) => Target::Node(*id),
            ConfigResource::Topic(_) => Target::Any,
        };
        if let ConfigResource::Broker(id) = resource {
            if !self.brokers.contains_key(id) {
                self.metadata(Some(&[])).await?;
            }
        }
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = DescribeConfigsResource::default();
                r.resource_type = resource.resource_type();
                r.resource_name = StrBytes::from_string(resource.resource_name());
                r.configuration_keys = keys.map(|ks| {
                    ks.iter()
                        .map(|k| StrBytes::from_string((*k).to_owned()))
                        .collect()
                });
                let mut req = DescribeConfigsRequest::default();
                req.resources = vec![r];
                req.include_synonyms = false;
                req.include_documentation = false;
                req
            })
            .await?;
        let result = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| Error::UnexpectedResponse {
                addr: "broker".into(),
                reason: "DescribeConfigs response has no result".into(),
            })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if let ConfigResource::Topic(t) = resource {
                return Err(Error::UnknownTopic { topic: t.clone() });
            }
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot describe configs of {resource}")
        })?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes configs of a resource (IncrementalAlterConfigs: only the named configs change).
    pub async fn incremental_alter_configs(
        &mut self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<()> {
        let target = match resource {
            ConfigResource::Broker(id) => Target::Node(*id),
            ConfigResource::Topic(_) => Target::Any,
        };
        let resp = self
            .send_to(target, None, Duration::ZERO, |_| {
                let mut r = AlterConfigsResource::default();
                r.resource_type = resource.resource_type();
                r.resource_name = StrBytes::from_string(resource.resource_name());
                r.configs = ops
                    .iter()
                    .map(|op| {
                        let mut c = AlterableConfig::default();
                        c.name = StrBytes::from_string(op.name().to_owned());
                        c.config_operation = op.op_code();
                        c.value = op.value().map(|v| StrBytes::from_string(v.to_owned()));
                        c
                    })
                    .collect();
                let mut req = IncrementalAlterConfigsRequest::default();
                req.resources = vec![r];
                req.validate_only = validate_only;
                req
            })
            .await?;
        let result =
            resp.responses
                .into_iter()
                .next()
                .ok_or_else(|| Error::UnexpectedResponse {
                    addr: "broker".into(),
                    reason: "IncrementalAlterConfigs response has no result".into(),
                })?;
        if result.error_code == ResponseError::UnknownTopicOrPartition.code() {
            if let ConfigResource::Topic(t) = resource {
                return Err(Error::UnknownTopic { topic: t.clone() });
            }
        }
        check_code(result.error_code, result.error_message.as_deref(), || {
            format!("cannot alter configs of {resource}")
        })
    }

    // ----- offsets -----------------------------------------------------------------------

    /// Looks up an offset of a partition. For [`OffsetSpec::Timestamp`] the answer is -1 when
    /// no record has a timestamp at or after it.
    pub async fn list_offsets(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self.list_offsets_once(topic, partition, spec).await {
                Err(e) if e.is_stale_metadata() && attempt < self.config.retries => {
                    self.invalidate_topic(topic);
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn list_offsets_once(
        &mut self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64> {
        let leader = self.leader_for(topic, partition).await?;
        let key = self.ensure_conn(Target::Node(leader)).await?;
        let conn = self.conn_mut(key)?;
        let version = conn.negotiate(ApiKey::ListOffsets, None)?;
        if spec == OffsetSpec::MaxTimestamp && version < 7 {
            return Err(Error::InvalidArgument(format!(
                "broker {} does not support looking up the max timestamp (ListOffsets v7)",
                conn.addr()
            )));
        }
        let mut p = ListOffsetsPartition::default();
        p.partition_index = partition;
        p.timestamp = spec.to_wire();
        let mut t = ListOffsetsTopic::default();
        t.name = topic_name(topic);
        t.partitions = vec![p];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.isolation_level = 0;
        req.topics = vec![t];
        req.timeout_ms = duration_ms_i32(conn.options().request_timeout);
        let addr = conn.addr().to_owned();
        let result = conn.send_version(&req, version).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        let resp = result?;
        let part = resp
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == partition)
            .ok_or_else(|| Error::UnexpectedResponse {
                addr,
                reason: format!("ListOffsets response lacks {topic}-{partition}"),
            })?;
        check_code(part.error_code, None, || {
            format!("list offsets of topic '{topic}' partition {partition}")
        })?;
        Ok(part.offset)
    }

    // ----- produce -----------------------------------------------------------------------

    /// Produces `records` to one partition as a single record batch and returns the offset
    /// the broker assigned to the first one (-1 with [`Acks::None`], which gets no answer).
    pub async fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: Vec<ProduceRecord>,
        acks: Acks,
        compression: Compression,
    ) -> Result<i64> {
        let batch =
            encode_batch(&records, compression, now_ms()).map_err(Error::InvalidArgument)?;
        self.produce_batch(topic, partition, batch, acks).await
    }

    /// Produces an already encoded record batch (v2) to one partition; see [`Client::produce`].
    ///
    /// Retries only when the broker certainly did not append the batch (stale leader, topic not
    /// yet known, connection failed before sending), so a retry cannot duplicate records.
    pub async fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<i64> {
        let mut attempt = 0;
        loop {
            match self
                .produce_once(topic, partition, batch.clone(), acks)
                .await
            {
                Err(e)
                    if e.is_stale_metadata()
                        && !matches!(e, Error::Io { .. } | Error::Timeout { .. })
                        && attempt < self.config.retries =>
                {
                    tracing::debug!(error = %e, topic, partition, "produce failed; retrying");
                    self.invalidate_topic(topic);
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn produce_once(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: Acks,
    ) -> Result<i64> {
        let leader = self.leader_for(topic, partition).await?;
        let topic_id = self.topic_id(topic);
        let produce_timeout = self.config.produce_timeout;
        let key = self.ensure_conn(Target::Node(leader)).await?;
        let conn = self.conn_mut(key)?;
        let cap = topic_id.is_nil().then_some(LAST_VERSION_WITH_TOPIC_NAMES);
        let version = conn.negotiate(ApiKey::Produce, cap)?;
        let mut pd = PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = topic_name(topic);
        td.topic_id = topic_id;
        td.partition_data = vec![pd];
        let mut req = ProduceRequest::default();
        req.acks = acks.to_wire();
        req.timeout_ms = duration_ms_i32(produce_timeout);
        req.topic_data = vec![td];
        let addr = conn.addr().to_owned();
        if acks == Acks::None {
            let result = conn.send_no_response(&req, version).await;
            if matches!(&result, Err(e) if e.is_transport()) {
                self.drop_conn(key);
            }
            return result.map(|()| -1);
        }
        let timeout = conn.options().request_timeout + produce_timeout;
        let result = conn.send_version_timeout(&req, version, timeout).await;
        if matches!(&result, Err(e) if e.is_transport()) {
            self.drop_conn(key);
        }
        let resp = result?;
        let part = resp
            .responses
            .iter()
            .filter(|t| {
                t.name.0.as_str() == topic || (!topic_id.is_nil() && t.topic_id == topic_id)
            })
            .flat_map(|t| t.partition_responses.iter())
            .find(|p| p.index == partition)
            .ok_or_else(|| Error::UnexpectedResponse {
                addr,
                reason: format!("Produce response lacks {topic}-{partition}"),
            })?;
        let message = part
            .error_message
            .as_deref()
            .map(str::to_owned)
            .or_else(|| {
                part.record_errors
                    .first()
                    .and_then(|e| e.batch_index_error_message.as_deref().map(str::to_owned))
            });
        check_code(part.error_code, message.as_deref(), || {
            format!("produce to topic '{topic}' partition {partition}")
        })?;
        Ok(part.base_offset)
    }

    // ----- fetch -------------------------------------------------------------------------

    /// Fetches records of one partition starting at `offset`, waiting up to `max_wait_ms` for
    /// data; at most about `max_bytes` are returned (at least one batch, even if larger).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Vec<ConsumedRecord>> {
        let opts = FetchOptions {
            max_wait_ms,
            max_bytes,
            partition_max_bytes: max_bytes,
            ..FetchOptions::default()
        };
        Ok(self
            .fetch_partition(topic, partition, offset, &opts)
            .await?
            .records)
    }

    /// Like [`Client::fetch`], but also returns the high watermark and where to fetch next.
    /// Retries after refreshing metadata when the leader moved.
    pub async fn fetch_partition(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchedPartition> {
        let pos = [FetchPosition {
            topic: topic.to_owned(),
            partition,
            offset,
        }];
        let mut attempt = 0;
        loop {
            let result = match self.fetch_many(&pos, opts).await {
                Ok(results) => results
                    .into_iter()
                    .next()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| {
                        Err(Error::UnexpectedResponse {
                            addr: "broker".into(),
                            reason: format!("no fetch result for {topic}-{partition}"),
                        })
                    }),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_stale_metadata() && attempt < self.config.retries => {
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Fetches several partitions at once: one Fetch request per leader, sent to all leaders
    /// concurrently. Each partition gets its own result; partitions whose metadata turned out
    /// stale are dropped from the cache, so calling again retries them at the new leader.
    ///
    /// Fails as a whole only for errors that are not about one partition.
    pub async fn fetch_many(
        &mut self,
        positions: &[FetchPosition],
        opts: &FetchOptions,
    ) -> Result<Vec<(TopicPartition, Result<FetchedPartition>)>> {
        let mut results: Vec<(TopicPartition, Result<FetchedPartition>)> = Vec::new();
        // Group by leader; partitions without a leader fail individually.
        let mut by_leader: BTreeMap<i32, Vec<&FetchPosition>> = BTreeMap::new();
        for pos in positions {
            match self.leader_for(&pos.topic, pos.partition).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(pos),
                Err(e)
                    if matches!(
                        e,
                        Error::UnknownTopic { .. }
                            | Error::UnknownPartition { .. }
                            | Error::LeaderNotAvailable { .. }
                            | Error::UnknownBroker { .. }
                    ) =>
                {
                    results.push((
                        TopicPartition::new(pos.topic.clone(), pos.partition),
                        Err(e),
                    ));
                }
                Err(e) => return Err(e),
            }
        }

        let extra_wait = Duration::from_millis(u64::try_from(opts.max_wait_ms).unwrap_or(0));
        let mut tasks = Vec::new();
        for (leader, group) in by_leader {
            let conn = match self.ensure_conn(Target::Node(leader)).await {
                Ok(_) => self.conns.remove(&leader),
                Err(e) => {
                    for pos in &group {
                        self.invalidate_topic(&pos.topic);
                    }
                    for pos in group {
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(e.clone()),
                        ));
                    }
                    continue;
                }
            };
            let Some(mut conn) = conn else { continue };
            let any_nil = group.iter().any(|p| self.topic_id(&p.topic).is_nil());
            let cap = any_nil.then_some(LAST_VERSION_WITH_TOPIC_NAMES);
            let version = match conn.negotiate(ApiKey::Fetch, cap) {
                Ok(v) => v,
                Err(e) => {
                    self.conns.insert(leader, conn);
                    return Err(e);
                }
            };
            let ids: Vec<Uuid> = group.iter().map(|p| self.topic_id(&p.topic)).collect();
            let req = build_fetch_request(&group, &ids, opts);
            let timeout = conn.options().request_timeout + extra_wait;
            let wanted: Vec<FetchPosition> = group.into_iter().cloned().collect();
            let handle = tokio::spawn(async move {
                let result = conn.send_version_timeout(&req, version, timeout).await;
                (conn, result)
            });
            tasks.push((leader, wanted, ids, handle));
        }

        for (leader, wanted, ids, handle) in tasks {
            let (conn, result) = match handle.await {
                Ok(pair) => pair,
                Err(join_err) => {
                    for pos in wanted {
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(Error::Io {
                                addr: format!("broker {leader}"),
                                reason: format!("fetch task failed: {join_err}"),
                            }),
                        ));
                    }
                    continue;
                }
            };
            let addr = conn.addr().to_owned();
            match result {
                Ok(resp) => {
                    self.conns.insert(leader, conn);
                    for (pos, result) in parse_fetch_response(resp, &wanted, &ids, &addr) {
                        if matches!(&result, Err(e) if e.is_stale_metadata()) {
                            self.invalidate_topic(&pos.topic);
                        }
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            result,
                        ));
                    }
                }
                Err(e) => {
                    if !e.is_transport() {
                        self.conns.insert(leader, conn);
                    }
                    if !e.is_transport() && !matches!(e, Error::Decode { .. }) {
                        return Err(e);
                    }
                    for pos in &wanted {
                        self.invalidate_topic(&pos.topic);
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(e.clone()),
                        ));
                    }
                }
            }
        }
        // Answer in the order asked.
        results.sort_by_key(|(tp, _)| {
            positions
                .iter()
                .position(|p| p.topic == tp.topic && p.partition == tp.partition)
                .unwrap_or(usize::MAX)
        });
        Ok(results)
    }
}

/// Builds the Fetch request for one leader: a full fetch, no session (KIP-227 epoch -1),
/// READ_UNCOMMITTED. Topic ids are sent for v13+, names before; both are set and the encoder
/// writes the one the version has.
fn build_fetch_request(
    group: &[&FetchPosition],
    ids: &[Uuid],
    opts: &FetchOptions,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (pos, id) in group.iter().zip(ids) {
        let mut p = FetchPartition::default();
        p.partition = pos.partition;
        p.fetch_offset = pos.offset;
        p.partition_max_bytes = opts.partition_max_bytes;
        p.log_start_offset = -1;
        p.current_leader_epoch = -1;
        match topics.iter_mut().find(|t| t.topic.0.as_str() == pos.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = FetchTopic::default();
                t.topic = topic_name(&pos.topic);
                t.topic_id = *id;
                t.partitions = vec![p];
                topics.push(t);
            }
        }
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = opts.max_wait_ms;
    req.min_bytes = opts.min_bytes;
    req.max_bytes = opts.max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics;
    req
}

/// Matches a Fetch response's partitions to the positions asked for and decodes their records.
fn parse_fetch_response<'a>(
    resp: FetchResponse,
    wanted: &'a [FetchPosition],
    ids: &[Uuid],
    addr: &str,
) -> Vec<(&'a FetchPosition, Result<FetchedPartition>)> {
    let mut out = Vec::with_capacity(wanted.len());
    let top_level = Error::from_code(
        resp.error_code,
        || format!("fetch from broker {addr}"),
        None,
    );
    for (pos, id) in wanted.iter().zip(ids) {
        if let Some(e) = &top_level {
            out.push((
                pos,
                Err(Error::from_code(
                    e.kafka_code().unwrap_or(-1),
                    || {
                        format!(
                            "fetch from topic '{}' partition {}",
                            pos.topic, pos.partition
                        )
                    },
                    None,
                )
                .unwrap_or_else(|| Error::UnexpectedResponse {
                    addr: addr.to_owned(),
                    reason: "fetch failed".into(),
                })),
            ));
            continue;
        }
        let data = resp
            .responses
            .iter()
            .filter(|t| t.topic.0.as_str() == pos.topic || (!id.is_nil() && t.topic_id == *id))
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == pos.partition);
        let Some(data) = data else {
            // Not in the answer (e.g. the response was already full): nothing this time.
            out.push((
                pos,
                Ok(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    next_offset: pos.offset,
                    records: Vec::new(),
                }),
            ));
            continue;
        };
        let context = || {
            format!(
                "fetch from topic '{}' partition {} at offset {}",
                pos.topic, pos.partition, pos.offset
            )
        };
        if let Some(e) = Error::from_code(data.error_code, context, None) {
            out.push((pos, Err(e)));
            continue;
        }
        let records = data.records.clone().unwrap_or_default();
        let result = decode_record_set(records.clone(), pos.partition, pos.offset)
            .map_err(|reason| Error::CorruptRecords {
                topic: pos.topic.clone(),
                partition: pos.partition,
                reason,
            })
            .and_then(|decoded| {
                if decoded.next_offset.is_none() && decoded.partial_tail_bytes > 0 {
                    return Err(Error::CorruptRecords {
                        topic: pos.topic.clone(),
                        partition: pos.partition,
                        reason: format!(
                            "the record batch at offset {} is larger than the {} bytes returned; \
                             raise the fetch size",
                            pos.offset,
                            records.len()
                        ),
                    });
                }
                Ok(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    high_watermark: data.high_watermark,
                    last_stable_offset: data.last_stable_offset,
                    log_start_offset: data.log_start_offset,
                    next_offset: decoded.next_offset.unwrap_or(pos.offset).max(pos.offset),
                    records: decoded.records,
                })
            });
        out.push((pos, result));
    }
    out
}

/// The response entry for each requested name, in request order.
fn topics_in_order<'r, T>(
    names: impl Iterator<Item = &'r str>,
    results: &'r [T],
    name_of: impl Fn(&T) -> &str,
) -> Vec<Option<&'r T>> {
    names
        .map(|n| results.iter().find(|r| name_of(r) == n))
        .collect()
}

/// One partition's answer to [`Client::elect_leaders`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionResult {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Kafka error code: 0 (elected), ELECTION_NOT_NEEDED (84), PREFERRED_LEADER_NOT_AVAILABLE
    /// (80), ELIGIBLE_LEADERS_NOT_AVAILABLE (83), UNKNOWN_TOPIC_OR_PARTITION (3), ...
    pub error_code: i16,
    /// Detail.
    pub error_message: Option<String>,
}

impl Client {
    /// ElectLeaders (key 43, KIP-460): `election_type` 0 = preferred, 1 = unclean, for the
    /// given partitions or (`None`) every partition — then, as in Kafka, partitions that need
    /// no election are left out. Returns the per-partition answers; a request-level error
    /// (v1+) fails the call. Retries while the answer is NOT_CONTROLLER.
    pub async fn elect_leaders(
        &mut self,
        election_type: i8,
        partitions: Option<&[(&str, Vec<i32>)]>,
    ) -> Result<Vec<ElectionResult>> {
        use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
        use kafka_protocol::messages::ElectLeadersRequest;
        let timeout_ms = duration_ms_i32(self.config.admin_timeout);
        let not_controller = ResponseError::NotController.code();
        let resp = self
            .send_admin(
                |_| {
                    let mut req = ElectLeadersRequest::default();
                    req.election_type = election_type;
                    req.timeout_ms = timeout_ms;
                    req.topic_partitions = partitions.map(|ps| {
                        ps.iter()
                            .map(|(t, parts)| {
                                let mut tp = TopicPartitions::default();
                                tp.topic = topic_name(t);
                                tp.partitions = parts.clone();
                                tp
                            })
                            .collect()
                    });
                    req
                },
                |resp| {
                    resp.error_code == not_controller
                        || (!resp.replica_election_results.is_empty()
                            && resp.replica_election_results.iter().all(|t| {
                                t.partition_result
                                    .iter()
                                    .all(|p| p.error_code == not_controller)
                            }))
                },
            )
            .await?;
        check_code(resp.error_code, None, || "ElectLeaders failed".to_string())?;
        Ok(resp
            .replica_election_results
            .iter()
            .flat_map(|t| {
                t.partition_result.iter().map(move |p| ElectionResult {
                    topic: t.topic.to_string(),
                    partition: p.partition_id,
                    error_code: p.error_code,
                    error_message: p.error_message.as_ref().map(|m| m.to_string()),
                })
            })
            .collect())
    }
}
