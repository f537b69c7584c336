//! The Nagare broker: the network server and request router, the replica manager (hosted
//! partitions, high watermarks, group commit), fetch sessions (KIP-227), the delayed-fetch
//! purgatory, and one handler module per Kafka API. Metadata decisions belong to the
//! controller (`nagare-controller`); the broker only reacts to the images it publishes.

pub mod alloc;
pub mod authorizer;
pub mod broker_lifecycle;
pub mod client_telemetry;
pub mod config;
pub mod connection_quotas;
pub mod console;
pub mod context;
pub mod controller_channel;
pub mod controller_mutation_quota;
pub mod controller_requests;
pub mod coordinator_runtime;
pub mod failover_hold;
pub mod fetch_session;
pub mod group_coordinator;
pub mod handlers;
pub mod limits;
pub mod liveness;
pub mod logging;
pub mod marker_sender;
pub mod metrics;
pub mod network;
pub mod oauth_https;
pub mod quorum;
pub mod quotas;
pub mod remote_log_manager;
pub mod replica_fetcher;
pub mod replica_manager;
pub mod request_metrics;
pub mod response_errors;
pub mod sasl;
mod sendfile;
pub mod server;
pub mod standard_authorizer;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// The unit tests run under the server's allocator, so hostile-input tests see what the
/// server would (see [`alloc`]).
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::GuardedAlloc = alloc::GuardedAlloc;
pub mod tls;
pub mod transaction_coordinator;
pub mod txn_verification;

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use nagare_controller::logic::{ApiError, ControllerDefaults};
use nagare_controller::shell::ControllerError;
use nagare_controller::Controller;
use nagare_metadata::records::{ConfigResource, MetadataRecord};
use nagare_metadata::topic_config::TopicDefaults;
use nagare_metadata::{MetadataDelta, MetadataImage, MetadataPublisher};

pub use config::BrokerConfig;
pub use replica_manager::ReplicaManager;

/// Shared state of a running broker.
pub struct Broker {
    /// Validated configuration.
    pub config: BrokerConfig,
    /// Cluster id (from `meta.properties`).
    pub cluster_id: String,
    /// This node's controller, on nodes with the controller role (active when this node
    /// leads the metadata quorum).
    pub controller: Option<Arc<Controller>>,
    /// The metadata image this node has applied, and its listeners.
    pub metadata: Arc<MetadataPublisher>,
    /// The channel to the active controller (set once the quorum is up).
    pub channel: std::sync::OnceLock<Arc<controller_channel::ControllerChannel>>,
    /// The metadata quorum this node takes part in (set at startup).
    pub quorum: std::sync::OnceLock<Arc<dyn quorum::NodeQuorum>>,
    /// This broker's registration with the controller (set at startup).
    pub lifecycle: std::sync::OnceLock<Arc<broker_lifecycle::BrokerLifecycle>>,
    /// Hosted partitions.
    pub replicas: Arc<ReplicaManager>,
    /// KIP-227 incremental fetch sessions.
    pub fetch_sessions: fetch_session::FetchSessionCache,
    /// The group coordinator (shards of `__consumer_offsets` led here).
    pub groups: Arc<group_coordinator::GroupCoordinator>,
    /// The transaction coordinator (shards of `__transaction_state` led here) and its
    /// marker sender; started by [`transaction_coordinator::TransactionCoordinator::start`].
    pub transactions: Arc<transaction_coordinator::TransactionCoordinator>,
    /// Defaults new topics get from the controller.
    pub controller_defaults: ControllerDefaults,
    /// The authorization hook every handler calls (allows everything until ACLs exist).
    pub authorizer: Arc<dyn authorizer::Authorizer>,
    /// Per-API request counts, bytes and latencies (the metrics hook).
    pub request_metrics: Arc<request_metrics::RequestMetrics>,
    /// Client quotas (produce, fetch, request time), following the metadata image.
    pub quotas: Arc<quotas::QuotaManagers>,
    /// Log levels per logger (`log.level`, `log.levels`, the BROKER_LOGGER resource).
    pub loggers: logging::BrokerLoggers,
    /// Connection limits of the client listeners (per ip, creation rates).
    pub connection_quotas: Arc<connection_quotas::ConnectionQuotas>,
    /// Settings dynamic broker configs change at run time (`producer.id.expiration.ms`,
    /// `transaction.partition.verification.enable`).
    pub runtime_settings: Arc<config::RuntimeSettings>,
    /// SASL settings of the SASL listeners (mechanisms, PLAIN users, session lifetime).
    pub sasl: sasl::SaslSettings,
    /// TLS for the connections this broker opens to other brokers (replica fetchers,
    /// transaction markers, KIP-890 verification), set when the inter-broker listener is SSL.
    pub inter_broker_tls: std::sync::OnceLock<nagare_client::TlsOptions>,
    /// The SASL login of this node's connections to other brokers (replica fetchers, marker
    /// sender, KIP-890 verification), set at startup when the inter-broker listener is
    /// SASL_PLAINTEXT or SASL_SSL (`sasl.mechanism.inter.broker.protocol`).
    pub inter_broker_sasl: std::sync::OnceLock<nagare_client::SaslCredentials>,
    /// Tiered storage (KIP-405), set at startup when `remote.log.storage.system.enable=true`.
    pub remote_log: std::sync::OnceLock<Arc<remote_log_manager::RemoteLogManager>>,
    /// KIP-714 client telemetry: subscriptions handed out, pushed metrics kept for `/metrics`.
    pub client_telemetry: client_telemetry::ClientTelemetry,
    /// Peer brokers seen to close or refuse this broker's connections (its replica
    /// fetchers'), for Metadata answers held across a leader's death ([`failover_hold`]).
    pub peers: failover_hold::PeerReachability,
    topic_defaults: RwLock<TopicDefaults>,
    producer_ids: Mutex<(i64, i64)>,
}

impl Broker {
    /// Builds the broker state; call [`Broker::on_image`] for every published image.
    pub fn new(
        config: BrokerConfig,
        cluster_id: String,
        controller: Option<Arc<Controller>>,
        metadata: Arc<MetadataPublisher>,
        replicas: Arc<ReplicaManager>,
    ) -> Self {
        let image = metadata.image();
        let defaults = config.topic_defaults(&dynamic_broker_overrides(&image, config.node_id));
        Broker {
            groups: Arc::new(group_coordinator::GroupCoordinator::new(
                replicas.clone(),
                config.group.clone(),
            )),
            transactions: Arc::new(transaction_coordinator::TransactionCoordinator::new(
                replicas.clone(),
                transaction_coordinator::shard_config(&config),
            )),
            fetch_sessions: fetch_session::FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots,
            ),
            controller_defaults: ControllerDefaults {
                num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
            },
            topic_defaults: RwLock::new(defaults),
            authorizer: standard_authorizer::build(&config.authorizer, metadata.clone()),
            request_metrics: Arc::new(request_metrics::RequestMetrics::new()),
            loggers: logging::BrokerLoggers::new(config.log_level, &config.log_levels),
            quotas: {
                let q = quotas::QuotaManagers::new(config.quota.window());
                q.on_image(&image.client_quotas);
                Arc::new(q)
            },
            connection_quotas: {
                let q = connection_quotas::ConnectionQuotas::new(&config.quota);
                q.on_image(&image.client_quotas);
                q.apply_dynamic(&dynamic_broker_overrides(&image, config.node_id));
                Arc::new(q)
            },
            runtime_settings: {
                let r = config::RuntimeSettings::new(
                    config.transaction_partition_verification_enable,
                    config.producer_id_expiration_ms,
                );
                r.apply(&dynamic_broker_overrides(&image, config.node_id));
                Arc::new(r)
            },
            // `server::start` refuses a bad SASL config before building the broker; a
            // broker built otherwise (tests) with one serves no mechanism at all.
            sasl: sasl::SaslSettings::from_config(&config).unwrap_or_else(|e| {
                tracing::error!(error = %e, "invalid SASL configuration: no SASL mechanism served");
                sasl::SaslSettings::default()
            }),
            inter_broker_tls: std::sync::OnceLock::new(),
            inter_broker_sasl: std::sync::OnceLock::new(),
            remote_log: std::sync::OnceLock::new(),
            client_telemetry: client_telemetry::ClientTelemetry::new(config.telemetry_max_bytes),
            peers: failover_hold::PeerReachability::new(),
            producer_ids: Mutex::new((0, 0)),
            config,
            cluster_id,
            controller,
            metadata,
            channel: std::sync::OnceLock::new(),
            lifecycle: std::sync::OnceLock::new(),
            quorum: std::sync::OnceLock::new(),
            replicas,
        }
    }

    /// Sends a request to the active controller over the controller channel: in-process to
    /// this node's controller when it is the active one, otherwise over the wire on the
    /// request's lane ([`controller_channel::Purpose`]). Error codes inside the response are
    /// the caller's; a request no controller answered in time is REQUEST_TIMED_OUT.
    pub async fn channel_send<R>(
        &self,
        req: &R,
    ) -> Result<R::Response, broker_lifecycle::LifecycleError>
    where
        R: controller_channel::ControllerRequest,
    {
        let Some(ch) = self.channel.get() else {
            return Err(broker_lifecycle::LifecycleError {
                code: kafka_protocol::ResponseError::NotController.code(),
                message: "no controller channel".into(),
            });
        };
        ch.send(req)
            .await
            .map_err(|e| broker_lifecycle::LifecycleError {
                code: kafka_protocol::ResponseError::RequestTimedOut.code(),
                message: e.to_string(),
            })
    }

    /// Whether the request's principal may perform `operation` on `resource` (Kafka's
    /// `AuthHelper.authorize`). A refusal is logged at debug level here; the handler answers
    /// the API's *_AUTHORIZATION_FAILED code.
    pub fn authorize(
        &self,
        ctx: &context::RequestContext,
        operation: authorizer::AclOperation,
        resource: &authorizer::Resource<'_>,
    ) -> bool {
        let requester = authorizer::Requester::of(ctx);
        // The broker's own in-process requests act as the broker: never refused, whatever
        // the authorizer (see `KafkaPrincipal::broker_internal`).
        if requester.principal.is_broker_internal() {
            return true;
        }
        let allowed = self.authorizer.authorize(&requester, operation, resource);
        if !allowed {
            tracing::debug!(
                principal = %requester.principal,
                host = %requester.client_address,
                ?operation,
                resource = ?resource,
                api = ?ctx.api.key,
                "authorization denied"
            );
        }
        allowed
    }

    /// The operations the request's principal may perform on `resource`, as Kafka's
    /// "authorized operations" bit field.
    pub fn authorized_operations(
        &self,
        ctx: &context::RequestContext,
        resource: &authorizer::Resource<'_>,
    ) -> i32 {
        authorizer::authorized_operations(
            self.authorizer.as_ref(),
            &authorizer::Requester::of(ctx),
            resource,
        )
    }

    /// Current broker-level topic defaults (static config plus dynamic broker configs).
    pub fn topic_defaults(&self) -> TopicDefaults {
        self.topic_defaults.read().clone()
    }

    /// The latest metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Whether this node is the active controller.
    pub fn is_active_controller(&self) -> bool {
        self.controller.as_ref().is_some_and(|c| c.is_active())
    }

    /// Reacts to a newly committed image: `delta` says what changed since the image this was
    /// last called with (the first call gets the whole image as a delta from the empty one).
    pub fn on_image(&self, delta: &MetadataDelta, image: &MetadataImage) {
        let defaults = self
            .config
            .topic_defaults(&dynamic_broker_overrides(image, self.config.node_id));
        *self.topic_defaults.write() = defaults.clone();
        self.replicas.apply_delta(delta, image, &defaults);
        self.groups.on_image(delta, image, self.config.node_id);
        self.transactions
            .on_image(delta, image, self.config.node_id);
        self.quotas.on_image(&image.client_quotas);
        self.connection_quotas.on_image(&image.client_quotas);
        if delta
            .configs
            .iter()
            .any(|(r, _)| *r == ConfigResource::Broker)
        {
            let dynamic = dynamic_broker_overrides(image, self.config.node_id);
            self.connection_quotas.apply_dynamic(&dynamic);
            self.runtime_settings.apply(&dynamic);
        }
    }

    /// Runs a controller decision on this node's controller; NOT_CONTROLLER unless it is the
    /// active one (requests reaching a broker are forwarded to the active controller first).
    pub async fn controller_commit<T, F>(
        self: &Arc<Self>,
        dry_run: bool,
        decide: F,
    ) -> Result<T, ControllerError>
    where
        T: Send + 'static,
        F: FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ApiError> + Send + 'static,
    {
        let answer = match &self.controller {
            Some(c) => c.commit(dry_run, decide).await?,
            None => return Err(ControllerError::NotController { leader: None }),
        };
        if !dry_run {
            self.wait_metadata_applied().await;
        }
        Ok(answer)
    }

    /// Waits (a bounded time) until this node's image listeners — the replica manager above
    /// all — have applied the current image, so that an answer sent after a commit finds its
    /// effect here: a client told that its topic was created may produce to it at once.
    /// (Before listeners took deltas this held by accident: applying an image held the
    /// partitions lock, so the next request's lookup waited for it.)
    async fn wait_metadata_applied(&self) {
        let target = self.metadata.image().offset;
        let mut applied = self.metadata.applied_offset();
        let wait = applied.wait_for(|o| *o >= target);
        if tokio::time::timeout(std::time::Duration::from_secs(10), wait)
            .await
            .is_err()
        {
            tracing::warn!(
                offset = target,
                "the metadata listeners have not applied the committed change yet; answering anyway"
            );
        }
    }

    /// Creates topics on behalf of the broker itself (auto-creation, `__consumer_offsets`)
    /// with a CreateTopics request to the active controller (Kafka's
    /// `AutoTopicCreationManager`), then waits (briefly) until this node's image has them. A
    /// topic that already exists is not an error.
    pub async fn create_topics_internal(
        self: &Arc<Self>,
        topics: Vec<nagare_controller::logic::NewTopic>,
    ) -> Result<(), String> {
        use kafka_protocol::messages::create_topics_request::{
            CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
        };
        use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, TopicName};
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(
                topics
                    .into_iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(TopicName(kafka_protocol::protocol::StrBytes::from_string(
                                t.name,
                            )))
                            .with_num_partitions(t.num_partitions)
                            .with_replication_factor(t.replication_factor)
                            .with_assignments(
                                t.assignments
                                    .into_iter()
                                    .map(|(partition, replicas)| {
                                        CreatableReplicaAssignment::default()
                                            .with_partition_index(partition)
                                            .with_broker_ids(
                                                replicas.into_iter().map(BrokerId).collect(),
                                            )
                                    })
                                    .collect(),
                            )
                            .with_configs(
                                t.configs
                                    .into_iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(
                                                kafka_protocol::protocol::StrBytes::from_string(k),
                                            )
                                            .with_value(v.map(
                                                kafka_protocol::protocol::StrBytes::from_string,
                                            ))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let resp = self.channel_send(&req).await.map_err(|e| e.message)?;
        for t in &resp.topics {
            if t.error_code != 0
                && t.error_code != kafka_protocol::ResponseError::TopicAlreadyExists.code()
            {
                return Err(format!(
                    "cannot create topic {}: error {} {}",
                    t.name.as_str(),
                    t.error_code,
                    t.error_message.as_deref().unwrap_or("")
                ));
            }
        }
        // Answer once this node knows the topics, so the caller can use them at once.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let img = self.image();
            if names.iter().all(|n| img.topic(n).is_some()) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// The endpoint clients should use to reach `b`: its advertised listener with the name
    /// of our client listener, else its first one.
    pub fn client_endpoint<'a>(
        &self,
        b: &'a nagare_metadata::BrokerRegistration,
    ) -> Option<&'a nagare_metadata::Endpoint> {
        let listener = self.config.broker_listener().map(|l| &l.name);
        b.endpoints
            .iter()
            .find(|e| Some(&e.name) == listener)
            .or(b.endpoints.first())
    }

    /// The endpoint of broker `b` on listener `listener` (what Metadata, FindCoordinator and
    /// DescribeCluster answer: Kafka returns the endpoints of the listener the request came
    /// in on, so a SASL client is sent to SASL ports); the client endpoint when `b` has no
    /// such listener (e.g. a request on the controller listener).
    pub fn endpoint_for_listener<'a>(
        &self,
        b: &'a nagare_metadata::BrokerRegistration,
        listener: &str,
    ) -> Option<&'a nagare_metadata::Endpoint> {
        b.endpoints
            .iter()
            .find(|e| e.name == listener)
            .or_else(|| self.client_endpoint(b))
    }

    /// Hands out a producer id for an idempotent producer, fetching a new block from the
    /// controller when the current one is used up (AllocateProducerIds).
    pub async fn next_producer_id(self: &Arc<Self>) -> Result<i64, ControllerError> {
        {
            let mut ids = self.producer_ids.lock();
            if ids.0 < ids.1 {
                ids.0 += 1;
                return Ok(ids.0 - 1);
            }
        }
        // AllocateProducerIds to the active controller, with our registration's epoch.
        // (Before the lifecycle exists — in-process tests register through the controller
        // directly — our registration in the image carries the same epoch.)
        let epoch = self
            .lifecycle
            .get()
            .and_then(|l| l.broker_epoch())
            .or_else(|| {
                self.image()
                    .brokers
                    .get(&self.config.node_id)
                    .map(|b| b.epoch)
            })
            .unwrap_or(-1);
        let req = kafka_protocol::messages::AllocateProducerIdsRequest::default()
            .with_broker_id(kafka_protocol::messages::BrokerId(self.config.node_id))
            .with_broker_epoch(epoch);
        let resp = self.channel_send(&req).await.map_err(|e| {
            ControllerError::Api(ApiError {
                code: e.code,
                message: e.message,
            })
        })?;
        if resp.error_code != 0 {
            return Err(ControllerError::Api(ApiError {
                code: resp.error_code,
                message: "AllocateProducerIds refused".into(),
            }));
        }
        let first = resp.producer_id_start.0;
        let mut ids = self.producer_ids.lock();
        *ids = (
            first + 1,
            first + nagare_controller::logic::PRODUCER_ID_BLOCK_SIZE,
        );
        Ok(first)
    }
}

/// Dynamic broker configs for this node: cluster-wide (`""`) overlaid by per-broker.
fn dynamic_broker_overrides(
    image: &MetadataImage,
    node_id: i32,
) -> std::collections::BTreeMap<String, String> {
    let mut m = image.config_overrides(ConfigResource::Broker, "");
    m.extend(image.config_overrides(ConfigResource::Broker, &node_id.to_string()));
    m
}
