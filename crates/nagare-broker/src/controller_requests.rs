//! The controller's answers to what nodes send the active controller — BrokerRegistration,
//! BrokerHeartbeat, AllocateProducerIds, AlterPartition and the broker's own CreateTopics
//! (auto-creation, `__consumer_offsets`) — as typed functions, `fn(broker, request, version)
//! -> response` ([`ControllerRequest::handle`]). The `CONTROLLER` listener decodes a request,
//! authorizes it and calls the same function (`handlers::controller_apis`); the controller
//! channel calls it in-process when this node is the active controller — one code path
//! whichever node that is. Below the handlers: the channel and the replica manager's
//! AlterPartition sender use it without importing from `handlers`.

use std::future::Future;
use std::sync::Arc;

use kafka_protocol::messages::alter_partition_response::{
    PartitionData as AlterPartitionPartition, TopicData as AlterPartitionTopic,
};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterPartitionRequest,
    AlterPartitionResponse, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest, BrokerRegistrationResponse, CreateTopicsRequest, ProducerId,
};
use kafka_protocol::protocol::Request;

use nagare_controller::cluster_control::{Heartbeat, Registration};
use nagare_controller::logic::{self, ApiError};
use nagare_controller::replication_control::{self, AlterPartitionItem, AlterPartitionResult};
use nagare_metadata::records::Endpoint;

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::CreateTopicsResponse;
use kafka_protocol::protocol::StrBytes;
use nagare_controller::logic::NewTopic;
use nagare_protocol::error::ResponseError;

use crate::controller_channel::Purpose;
use crate::Broker;

fn sb(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A request a node sends the active controller. Each implementation names the lane it
/// travels on, the versions the `CONTROLLER` listener serves, and the controller's typed
/// handling of it: [`ControllerRequest::handle`] is what the listener runs after decoding the
/// request, and what the channel calls in-process when this node is the active controller.
pub trait ControllerRequest: Request + Clone + Send + Sync + 'static {
    /// The lane this request travels on.
    const PURPOSE: Purpose;
    /// Lowest and highest version the `CONTROLLER` listener serves.
    const SERVED_VERSIONS: (i16, i16);

    /// The controller's answer to `req` at `version`, computed on this node's controller
    /// (an error code in the response when it is not the active one).
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send;
}

/// The version `R` is handled at when the controller channel hands it to this node's
/// controller in-process: the highest one the `CONTROLLER` listener serves (and
/// `kafka-protocol` knows), which is what a channel to another node of the same build
/// negotiates — so both paths run the same version-dependent logic.
pub fn local_version<R: ControllerRequest>() -> i16 {
    let ours = kafka_protocol::messages::ApiKey::try_from(R::KEY)
        .map(|k| k.valid_versions().max)
        .unwrap_or(R::SERVED_VERSIONS.1);
    R::SERVED_VERSIONS.1.min(ours)
}

/// BrokerRegistration versions.
pub const BROKER_REGISTRATION_VERSIONS: (i16, i16) = (0, 4);
/// BrokerHeartbeat versions.
pub const BROKER_HEARTBEAT_VERSIONS: (i16, i16) = (0, 1);
/// AllocateProducerIds versions.
pub const ALLOCATE_PRODUCER_IDS_VERSIONS: (i16, i16) = (0, 0);
/// AlterPartition versions: v2 identifies topics by id, v3 carries each ISR member's broker
/// epoch (KIP-903).
pub const ALTER_PARTITION_VERSIONS: (i16, i16) = (2, 3);
/// CreateTopics versions.
pub const CREATE_TOPICS_VERSIONS: (i16, i16) = (2, 7);

fn not_controller() -> (i16, String) {
    (
        kafka_protocol::ResponseError::NotController.code(),
        "this node has no controller role".into(),
    )
}

impl ControllerRequest for BrokerRegistrationRequest {
    const PURPOSE: Purpose = Purpose::Heartbeat;
    const SERVED_VERSIONS: (i16, i16) = BROKER_REGISTRATION_VERSIONS;
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        broker_registration(broker, req, version)
    }
}

impl ControllerRequest for BrokerHeartbeatRequest {
    const PURPOSE: Purpose = Purpose::Heartbeat;
    const SERVED_VERSIONS: (i16, i16) = BROKER_HEARTBEAT_VERSIONS;
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        broker_heartbeat(broker, req, version)
    }
}

impl ControllerRequest for AllocateProducerIdsRequest {
    const PURPOSE: Purpose = Purpose::Forwarding;
    const SERVED_VERSIONS: (i16, i16) = ALLOCATE_PRODUCER_IDS_VERSIONS;
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        allocate_producer_ids(broker, req, version)
    }
}

impl ControllerRequest for CreateTopicsRequest {
    const PURPOSE: Purpose = Purpose::Forwarding;
    const SERVED_VERSIONS: (i16, i16) = CREATE_TOPICS_VERSIONS;
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        crate::controller_requests::create_topics(broker, req, version)
    }
}

impl ControllerRequest for AlterPartitionRequest {
    const PURPOSE: Purpose = Purpose::AlterPartition;
    const SERVED_VERSIONS: (i16, i16) = ALTER_PARTITION_VERSIONS;
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        alter_partition(broker, req, version)
    }
}

/// BrokerRegistration: registers the broker (a new broker epoch) on this node's controller.
pub async fn broker_registration(
    broker: &Arc<Broker>,
    r: BrokerRegistrationRequest,
    _version: i16,
) -> BrokerRegistrationResponse {
    let reg = Registration {
        broker_id: r.broker_id.0,
        cluster_id: r.cluster_id.to_string(),
        incarnation_id: r.incarnation_id,
        endpoints: r
            .listeners
            .iter()
            .map(|l| Endpoint {
                name: l.name.to_string(),
                host: l.host.to_string(),
                port: l.port,
                security_protocol: crate::context::SecurityProtocol::from_id(l.security_protocol)
                    .unwrap_or(crate::context::SecurityProtocol::Plaintext)
                    .name()
                    .into(),
            })
            .collect(),
        rack: r.rack.as_ref().map(|s| s.to_string()),
    };
    let (code, epoch) = match &broker.controller {
        Some(c) => match c.register_broker(reg).await {
            Ok(epoch) => (0, epoch),
            Err(e) => (e.code(), -1),
        },
        None => (not_controller().0, -1),
    };
    BrokerRegistrationResponse::default()
        .with_error_code(code)
        .with_broker_epoch(epoch)
}

/// BrokerHeartbeat: renews the broker's session; answers whether it is caught up, fenced and
/// (during a controlled shutdown) may stop.
pub async fn broker_heartbeat(
    broker: &Arc<Broker>,
    r: BrokerHeartbeatRequest,
    version: i16,
) -> BrokerHeartbeatResponse {
    broker_heartbeat_via(broker, r, version, None).await
}

/// [`broker_heartbeat`] of a heartbeat that arrived on connection `connection` of the
/// `CONTROLLER` listener (`None`: in-process), whose close by the peer fences the broker after
/// a short grace ([`crate::liveness`]).
pub async fn broker_heartbeat_via(
    broker: &Arc<Broker>,
    r: BrokerHeartbeatRequest,
    _version: i16,
    connection: Option<u64>,
) -> BrokerHeartbeatResponse {
    let hb = Heartbeat {
        broker_id: r.broker_id.0,
        broker_epoch: r.broker_epoch,
        current_metadata_offset: r.current_metadata_offset,
        want_fence: r.want_fence,
        want_shut_down: r.want_shut_down,
    };
    match &broker.controller {
        Some(c) => match c.heartbeat_via(hb, connection).await {
            Ok(reply) => BrokerHeartbeatResponse::default()
                .with_is_caught_up(reply.is_caught_up)
                .with_is_fenced(reply.is_fenced)
                .with_should_shut_down(reply.should_shut_down),
            Err(e) => BrokerHeartbeatResponse::default()
                .with_error_code(e.code())
                .with_is_fenced(true),
        },
        None => BrokerHeartbeatResponse::default()
            .with_error_code(not_controller().0)
            .with_is_fenced(true),
    }
}

/// AllocateProducerIds: hands a registered broker the next block of producer ids.
pub async fn allocate_producer_ids(
    broker: &Arc<Broker>,
    r: AllocateProducerIdsRequest,
    _version: i16,
) -> AllocateProducerIdsResponse {
    let broker_id = r.broker_id.0;
    let broker_epoch = r.broker_epoch;
    let outcome = broker
        .controller_commit(false, move |img| {
            // Kafka checks the requester's registration before handing out a block.
            match img.brokers.get(&broker_id) {
                Some(b) if b.epoch == broker_epoch => {}
                Some(_) => {
                    return Err(ApiError {
                        code: kafka_protocol::ResponseError::StaleBrokerEpoch.code(),
                        message: format!("stale broker epoch {broker_epoch}"),
                    })
                }
                None => {
                    return Err(ApiError {
                        code: kafka_protocol::ResponseError::BrokerIdNotRegistered.code(),
                        message: format!("broker {broker_id} is not registered"),
                    })
                }
            }
            let (first, recs) = logic::allocate_producer_ids(img, broker_id);
            Ok((recs, first))
        })
        .await;
    match outcome {
        Ok(first) => AllocateProducerIdsResponse::default()
            .with_producer_id_start(ProducerId(first))
            .with_producer_id_len(logic::PRODUCER_ID_BLOCK_SIZE as i32),
        Err(e) => AllocateProducerIdsResponse::default()
            .with_error_code(e.code())
            .with_producer_id_start(ProducerId(-1)),
    }
}

/// AlterPartition (KIP-497): a partition leader's ISR changes, decided by the pure
/// `nagare_controller::replication_control::alter_partition`. From version 3 the new ISR
/// carries each member's broker epoch (KIP-903); the members are taken from there.
pub async fn alter_partition(
    broker: &Arc<Broker>,
    r: AlterPartitionRequest,
    version: i16,
) -> AlterPartitionResponse {
    let broker_id = r.broker_id.0;
    let broker_epoch = r.broker_epoch;
    let items: Vec<AlterPartitionItem> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| AlterPartitionItem {
                topic_id: t.topic_id,
                partition: p.partition_index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: if version >= 3 {
                    p.new_isr_with_epochs
                        .iter()
                        .map(|b| b.broker_id.0)
                        .collect()
                } else {
                    p.new_isr.iter().map(|b| b.0).collect()
                },
            })
        })
        .collect();
    let outcome = broker
        .controller_commit(false, move |img| {
            replication_control::alter_partition(img, broker_id, broker_epoch, &items)
        })
        .await;
    match outcome {
        Ok(results) => {
            AlterPartitionResponse::default().with_topics(alter_partition_topics(results))
        }
        Err(e) => AlterPartitionResponse::default().with_error_code(e.code()),
    }
}

/// Per-partition AlterPartition results grouped by topic, in first-seen order.
fn alter_partition_topics(results: Vec<AlterPartitionResult>) -> Vec<AlterPartitionTopic> {
    let mut topics: Vec<AlterPartitionTopic> = Vec::new();
    for r in results {
        let p = AlterPartitionPartition::default()
            .with_partition_index(r.partition)
            .with_error_code(r.error_code)
            .with_leader_id(BrokerId(r.leader))
            .with_leader_epoch(r.leader_epoch)
            .with_isr(r.isr.into_iter().map(BrokerId).collect())
            .with_partition_epoch(r.partition_epoch);
        match topics.iter_mut().find(|t| t.topic_id == r.topic_id) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                AlterPartitionTopic::default()
                    .with_topic_id(r.topic_id)
                    .with_partitions(vec![p]),
            ),
        }
    }
    topics
}

/// CreateTopics as the controller decides it, typed: what the controller channel runs
/// in-process on the active controller for the broker itself (topic auto-creation, the
/// offsets topic), which Kafka authorizes as the broker's own cluster action.
pub async fn create_topics(
    broker: &Arc<Broker>,
    r: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    create_topics_as(broker, r, version, &|_| true).await
}

/// CreateTopics for a requester allowed to create the topics `may_create` accepts; the others
/// get TOPIC_AUTHORIZATION_FAILED.
pub async fn create_topics_as(
    broker: &Arc<Broker>,
    r: CreateTopicsRequest,
    _version: i16,
    may_create: &(dyn Fn(&str) -> bool + Sync),
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let dupes: HashSet<String> = r
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let mut results: Vec<CreatableTopicResult> = Vec::new();
    let mut todo = Vec::new();
    for t in &r.topics {
        let name = t.name.to_string();
        if !dupes.contains(&name) && !may_create(&name) {
            results.push(
                CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_num_partitions(-1)
                    .with_replication_factor(-1),
            );
            continue;
        }
        if dupes.contains(&name) {
            if !results.iter().any(|x| x.name.as_str() == name) {
                results.push(
                    CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(sb(format!(
                            "Duplicate topic name {name} in request"
                        )))),
                );
            }
            continue;
        }
        todo.push(NewTopic {
            name,
            num_partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            assignments: t
                .assignments
                .iter()
                .map(|a| {
                    (
                        a.partition_index,
                        a.broker_ids.iter().map(|b| **b).collect(),
                    )
                })
                .collect(),
            configs: t
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect(),
        });
    }
    let defaults = broker.controller_defaults.clone();
    let tiered_defaults = broker.topic_defaults();
    let outcome = broker
        .controller_commit(r.validate_only, move |img| {
            let mut records = Vec::new();
            let mut pending = HashSet::new();
            let mut answers = Vec::new();
            for t in todo {
                let created =
                    logic::create_topic(img, &defaults, &t, &pending, uuid::Uuid::new_v4())
                        .and_then(|c| {
                            // Kafka validates the tiered-storage keys together (LogConfig.validate).
                            let overrides: BTreeMap<String, String> = t
                                .configs
                                .iter()
                                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                                .collect();
                            nagare_metadata::topic_config::validate_tiered(
                                &tiered_defaults,
                                None,
                                &overrides,
                            )
                            .map_err(|m| ApiError::new(ResponseError::InvalidConfig.code(), m))?;
                            Ok(c)
                        });
                match created {
                    Ok(c) => {
                        records.extend(c.records.clone());
                        pending.insert(t.name.clone());
                        answers.push((t, Ok(c)));
                    }
                    Err(e) => answers.push((t, Err(e))),
                }
                if records.len() > logic::MAX_RECORDS_PER_USER_OP {
                    // Kafka fails the whole request (its bounded record list overflows).
                    return Err(logic::excessive_batch());
                }
            }
            Ok((records, answers))
        })
        .await;
    let topic_defaults = broker.topic_defaults();
    match outcome {
        Ok(answers) => {
            for (t, a) in answers {
                let base = CreatableTopicResult::default()
                    .with_name(kafka_protocol::messages::TopicName(sb(t.name.clone())));
                results.push(match a {
                    Ok(c) => {
                        if !r.validate_only {
                            tracing::info!(topic = %t.name, partitions = c.num_partitions, "created topic");
                        }
                        let overrides: BTreeMap<String, String> =
                            t.configs.iter().filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v))).collect();
                        let configs = topic_defaults
                            .effective(&overrides)
                            .into_iter()
                            .map(|(k, val, src)| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(k))
                                    .with_value(Some(sb(val)))
                                    .with_config_source(src.code())
                            })
                            .collect();
                        base.with_topic_id(if r.validate_only { Default::default() } else { c.topic_id })
                            .with_num_partitions(c.num_partitions)
                            .with_replication_factor(c.replication_factor)
                            .with_configs(Some(configs))
                    }
                    Err(e) => base
                        .with_error_code(e.code)
                        .with_error_message(Some(sb(e.message)))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                });
            }
        }
        Err(e) => {
            for t in &r.topics {
                if !results.iter().any(|x| x.name == t.name) {
                    results.push(
                        CreatableTopicResult::default()
                            .with_name(t.name.clone())
                            .with_error_code(e.code())
                            .with_error_message(Some(sb(e.message()))),
                    );
                }
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}
