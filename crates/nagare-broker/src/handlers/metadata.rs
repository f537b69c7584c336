//! Metadata (key 3): brokers, topics and partitions, with topic auto-creation per
//! `auto.create.topics.enable` (librdkafka and many apps rely on it).

use std::collections::HashSet;
use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse, TopicName};

use nagare_controller::logic::{self, NewTopic};
use nagare_metadata::{MetadataImage, Uuid};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::failover_hold::{self, Requested};
use crate::network::{Reply, Response};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 13);

const INTERNAL_TOPICS: &[&str] = &["__consumer_offsets", "__transaction_state"];

/// Handles Metadata.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: MetadataRequest = req.decode()?;
    let v = req.version();
    // v0: an empty list means all topics; v1+: null means all, empty means none.
    let all =
        r.topics.is_none() || (v == 0 && r.topics.as_ref().map(|t| t.is_empty()).unwrap_or(false));
    let allow_auto = if v >= 4 {
        r.allow_auto_topic_creation
    } else {
        true
    };
    let mut image = broker.image();
    let mut requested: Vec<(Option<String>, Uuid)> = Vec::new();
    if !all {
        for t in r.topics.unwrap_or_default() {
            requested.push((t.name.map(|n| n.to_string()), t.topic_id));
        }
        // Auto-create unknown, valid names the principal may create (CREATE on the cluster
        // or on the topic, as Kafka's AutoTopicCreationManager requires).
        if allow_auto && broker.config.auto_create_topics_enable {
            let may_create_any =
                broker.authorize(&req.ctx, AclOperation::Create, &Resource::cluster());
            let missing: Vec<String> = requested
                .iter()
                .filter_map(|(n, _)| n.clone())
                .filter(|n| image.topic(n).is_none() && logic::validate_topic_name(n).is_ok())
                .filter(|n| {
                    may_create_any
                        || broker.authorize(&req.ctx, AclOperation::Create, &Resource::topic(n))
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                auto_create(broker, missing).await;
                image = broker.image();
            }
        }
    }
    let ops = (
        r.include_topic_authorized_operations,
        r.include_cluster_authorized_operations,
    );
    // Issue 17: an answer that would name a leader this broker just saw die waits (a
    // delayed response) until the fencing moved its partitions, within a bound.
    let selection = if all {
        Requested::All
    } else {
        Requested::Some(&requested)
    };
    if failover_hold::must_hold(broker, &image, &selection) {
        let broker = broker.clone();
        return Ok(Reply::Later(Box::pin(async move {
            let selection = if all {
                Requested::All
            } else {
                Requested::Some(&requested)
            };
            let image = failover_hold::wait_for_failover(&broker, &selection).await;
            answer(&broker, &req, all, requested, ops, &image)
        })));
    }
    Ok(Reply::Now(answer(
        broker, &req, all, requested, ops, &image,
    )))
}

/// The Metadata response for `requested` (or all topics) from `image`; `ops` says whether
/// the topics' and the cluster's authorized operations were asked for.
fn answer(
    broker: &Broker,
    req: &Request,
    all: bool,
    requested: Vec<(Option<String>, Uuid)>,
    ops: (bool, bool),
    image: &MetadataImage,
) -> Response {
    let v = req.version();
    let mut topics = Vec::new();
    // Kafka lists only the topics the principal may DESCRIBE; a requested topic it may not
    // describe gets TOPIC_AUTHORIZATION_FAILED whether it exists or not.
    let may_describe =
        |n: &str| broker.authorize(&req.ctx, AclOperation::Describe, &Resource::topic(n));
    let denied = |name: Option<String>, id: Uuid| {
        MetadataResponseTopic::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_name(name.map(|n| TopicName(sb(n))))
            .with_topic_id(id)
            .with_topic_authorized_operations(i32::MIN)
    };
    if all {
        for name in image.topic_names() {
            if may_describe(&name) {
                topics.push(topic_entry(image, &name));
            }
        }
    } else {
        for (name, id) in requested {
            match name {
                Some(n) if !may_describe(&n) => topics.push(denied(Some(n), Uuid::nil())),
                Some(n) => {
                    if image.topic(&n).is_some() {
                        topics.push(topic_entry(image, &n));
                    } else {
                        let code = if logic::validate_topic_name(&n).is_err() {
                            ResponseError::InvalidTopicException.code()
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        };
                        topics.push(
                            MetadataResponseTopic::default()
                                .with_error_code(code)
                                .with_name(Some(TopicName(sb(n))))
                                .with_topic_authorized_operations(i32::MIN),
                        );
                    }
                }
                None => match image.topic_by_id(&id) {
                    Some(t) if !may_describe(&t.name) => topics.push(denied(None, id)),
                    Some(t) => {
                        let n = t.name.clone();
                        topics.push(topic_entry(image, &n));
                    }
                    None => topics.push(
                        MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_topic_id(id)
                            .with_topic_authorized_operations(i32::MIN),
                    ),
                },
            }
        }
    }
    // Authorized operations only when asked for (v8+); otherwise Kafka's "not provided".
    if ops.0 {
        for t in topics.iter_mut().filter(|t| t.error_code == 0) {
            if let Some(name) = &t.name {
                t.topic_authorized_operations =
                    broker.authorized_operations(&req.ctx, &Resource::topic(name.as_str()));
            }
        }
    }
    let cluster_ops = if ops.1 {
        broker.authorized_operations(&req.ctx, &Resource::cluster())
    } else {
        i32::MIN
    };
    let resp = MetadataResponse::default()
        .with_brokers(brokers(broker, image, v, &req.ctx.connection.listener_name))
        .with_cluster_id(Some(sb(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics)
        .with_cluster_authorized_operations(cluster_ops);
    respond(ApiKey::Metadata, v, req.correlation_id(), &resp)
}

async fn auto_create(broker: &Arc<Broker>, mut names: Vec<String>) {
    // Kafka's AutoTopicCreationManager creates the offsets topic with its own settings
    // (offsets.topic.*), never with the defaults of ordinary topics.
    if let Some(i) = names
        .iter()
        .position(|n| n == crate::group_coordinator::OFFSETS_TOPIC)
    {
        names.swap_remove(i);
        super::find_coordinator::create_offsets_topic(broker).await;
        if names.is_empty() {
            return;
        }
    }
    // And `__transaction_state` with its own (transaction.state.log.*).
    if let Some(i) = names
        .iter()
        .position(|n| n == crate::transaction_coordinator::TRANSACTION_STATE_TOPIC)
    {
        names.swap_remove(i);
        super::find_coordinator::create_transaction_state_topic(broker).await;
        if names.is_empty() {
            return;
        }
    }
    let topics = names
        .into_iter()
        .map(|name| NewTopic {
            name,
            num_partitions: -1,
            replication_factor: -1,
            assignments: vec![],
            configs: vec![],
        })
        .collect();
    if let Err(e) = broker.create_topics_internal(topics).await {
        tracing::error!(error = %e, "auto-create failed");
    }
}

/// The broker list of Metadata responses: unfenced brokers' endpoints on `listener` (the
/// listener the request came in on, as Kafka answers).
pub fn brokers(
    broker: &Broker,
    image: &MetadataImage,
    v: i16,
    listener: &str,
) -> Vec<MetadataResponseBroker> {
    image
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let ep = broker.endpoint_for_listener(b, listener)?;
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(b.id))
                    .with_host(sb(ep.host.clone()))
                    .with_port(ep.port as i32)
                    .with_rack(if v >= 1 { b.rack.clone().map(sb) } else { None }),
            )
        })
        .collect()
}

/// The replicas of `replicas` that are offline: in KRaft, those on a fenced or unregistered
/// broker (what Metadata and DescribeTopicPartitions report as `offline_replicas`).
pub(crate) fn offline_replicas(image: &MetadataImage, replicas: &[i32]) -> Vec<BrokerId> {
    replicas
        .iter()
        .filter(|r| image.brokers.get(r).map(|b| b.fenced).unwrap_or(true))
        .map(|r| BrokerId(*r))
        .collect()
}

fn topic_entry(image: &MetadataImage, name: &str) -> MetadataResponseTopic {
    let Some(t) = image.topic(name) else {
        return MetadataResponseTopic::default()
            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    let partitions = t
        .partitions
        .iter()
        .map(|(i, p)| {
            MetadataResponsePartition::default()
                .with_error_code(if p.leader < 0 {
                    ResponseError::LeaderNotAvailable.code()
                } else {
                    0
                })
                .with_partition_index(*i)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(p.isr.iter().map(|r| BrokerId(*r)).collect())
                .with_offline_replicas(offline_replicas(image, &p.replicas))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(sb(name.to_string()))))
        .with_topic_id(t.id)
        .with_is_internal(INTERNAL_TOPICS.contains(&name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(i32::MIN)
}
