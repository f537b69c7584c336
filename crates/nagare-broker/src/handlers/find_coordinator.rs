//! FindCoordinator (key 10): the coordinator of a group is the leader of partition
//! `abs(hash(group)) % offsets.topic.num.partitions` of `__consumer_offsets`, that of a
//! transactional id (key type 1) the leader of its partition of `__transaction_state`
//! (`transaction.state.log.num.partitions`). Each topic is created on first use, as Kafka's
//! `AutoTopicCreationManager` does; until it exists and its partition has a leader the answer
//! is COORDINATOR_NOT_AVAILABLE and clients retry.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, FindCoordinatorRequest};

use nagare_controller::logic::{self, NewTopic};
use nagare_coordinator::{find_coordinator_response, partition_for, CoordinatorLocation};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::network::Reply;
use crate::replica_manager::now_ms;
use crate::transaction_coordinator::TRANSACTION_STATE_TOPIC;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 6);

/// The resource a key of `key_type` names and the code refusing it: Kafka asks DESCRIBE on
/// the group (or the transactional id) named by the key. None for unknown key types.
fn resource(key_type: i8, key: &str) -> Option<(Resource<'_>, ResponseError)> {
    match key_type {
        0 => Some((
            Resource::group(key),
            ResponseError::GroupAuthorizationFailed,
        )),
        1 => Some((
            Resource::transactional_id(key),
            ResponseError::TransactionalIdAuthorizationFailed,
        )),
        _ => None,
    }
}

/// Handles FindCoordinator.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: FindCoordinatorRequest = req.decode()?;
    let v = req.version();
    // The internal topic is created on the first lookup of a key the principal may describe
    // (v0-3 name one key, v4+ a batch), never for a refused one.
    let keys: Vec<&str> = if v >= 4 {
        r.coordinator_keys.iter().map(|k| k.as_str()).collect()
    } else {
        vec![r.key.as_str()]
    };
    let topic = match r.key_type {
        0 => Some(OFFSETS_TOPIC),
        1 => Some(TRANSACTION_STATE_TOPIC),
        _ => None,
    };
    if let Some(topic) = topic {
        let any_authorized = keys.iter().any(|k| {
            resource(r.key_type, k)
                .is_some_and(|(res, _)| broker.authorize(&req.ctx, AclOperation::Describe, &res))
        });
        if any_authorized && broker.image().topic(topic).is_none() {
            if r.key_type == 0 {
                create_offsets_topic(broker).await;
            } else {
                create_transaction_state_topic(broker).await;
            }
        }
    }
    let image = broker.image();
    let resp = find_coordinator_response(&r, v, |key_type, key| {
        let (Some((res, denied)), Some(topic)) = (resource(key_type, key), topic) else {
            return CoordinatorLocation::Error(ResponseError::InvalidRequest.code());
        };
        if !broker.authorize(&req.ctx, AclOperation::Describe, &res) {
            return CoordinatorLocation::Error(denied.code());
        }
        let Some(topic) = image.topic(topic) else {
            return CoordinatorLocation::Error(ResponseError::CoordinatorNotAvailable.code());
        };
        let p = partition_for(key, topic.partitions.len() as i32);
        let leader = topic.partitions.get(&p).map(|x| x.leader).unwrap_or(-1);
        match image
            .brokers
            .get(&leader)
            .and_then(|b| broker.endpoint_for_listener(b, &req.ctx.connection.listener_name))
        {
            Some(ep) => CoordinatorLocation::Node {
                node_id: leader,
                host: ep.host.clone(),
                port: ep.port as i32,
            },
            None => CoordinatorLocation::Error(ResponseError::CoordinatorNotAvailable.code()),
        }
    });
    Ok(Reply::Now(respond(
        ApiKey::FindCoordinator,
        v,
        req.correlation_id(),
        &resp,
    )))
}

/// The settings an internal coordinator topic is created with.
struct InternalTopic {
    name: &'static str,
    partitions: i32,
    /// The configured replication factor, and the key that configures it.
    replication_factor: i16,
    replication_factor_key: &'static str,
    segment_bytes: i64,
    /// `min.insync.replicas` to set on the topic (None: the cluster's).
    min_isr: Option<i32>,
}

/// Creates `__consumer_offsets` (compacted; `min.insync.replicas` is the cluster's) with
/// `offsets.topic.num.partitions` partitions. Its replication factor is
/// `offsets.topic.replication.factor`; as in Kafka the topic is created only once at least
/// that many brokers are alive — until then FindCoordinator answers COORDINATOR_NOT_AVAILABLE
/// and clients retry — so a cluster still starting up does not get an offsets topic with
/// fewer replicas than configured. Only when the key is left at its default (Kafka's 3) is it
/// capped at the number of registered brokers, so a single node works out of the box.
pub(crate) async fn create_offsets_topic(broker: &Arc<Broker>) {
    create_internal_topic(
        broker,
        InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: broker.config.offsets_topic_num_partitions,
            replication_factor: broker.config.offsets_topic_replication_factor,
            replication_factor_key: "offsets.topic.replication.factor",
            segment_bytes: broker.config.offsets_topic_segment_bytes,
            min_isr: None,
        },
    )
    .await
}

/// Creates `__transaction_state` as Kafka's `AutoTopicCreationManager` does (compacted,
/// `transaction.state.log.*`), with the same replication-factor rule as `__consumer_offsets`.
/// Its `min.insync.replicas` is `transaction.state.log.min.isr`, capped at the replication
/// factor when that was capped (a single node would otherwise get a topic it can never
/// satisfy).
pub(crate) async fn create_transaction_state_topic(broker: &Arc<Broker>) {
    let cfg = &broker.config.transaction;
    create_internal_topic(
        broker,
        InternalTopic {
            name: TRANSACTION_STATE_TOPIC,
            partitions: cfg.state_log_num_partitions,
            replication_factor: cfg.state_log_replication_factor,
            replication_factor_key: "transaction.state.log.replication.factor",
            segment_bytes: cfg.state_log_segment_bytes,
            min_isr: Some(cfg.state_log_min_isr),
        },
    )
    .await
}

async fn create_internal_topic(broker: &Arc<Broker>, topic: InternalTopic) {
    let name = topic.name;
    let partitions = topic.partitions;
    let configured = topic.replication_factor;
    let img = broker.image();
    if img.topic(name).is_some() {
        return;
    }
    let explicit = broker
        .config
        .props
        .contains_key(topic.replication_factor_key);
    let registered = img.brokers.len().max(1) as i16;
    let rf = if explicit {
        configured
    } else {
        configured.min(registered)
    };
    let live = logic::live_brokers(&img).len() as i16;
    if live < rf {
        // Clients retry FindCoordinator in a loop: say it at most every 10 s.
        static LAST_WARNING_MS: AtomicI64 = AtomicI64::new(0);
        let now = now_ms();
        if now - LAST_WARNING_MS.load(Ordering::Relaxed) >= 10_000 {
            LAST_WARNING_MS.store(now, Ordering::Relaxed);
            tracing::warn!(
                live,
                replication_factor = rf,
                "not creating {name} yet: fewer live brokers than {}",
                topic.replication_factor_key
            );
        }
        return;
    }
    let mut configs = vec![
        ("cleanup.policy".into(), Some("compact".into())),
        ("compression.type".into(), Some("producer".into())),
        (
            "segment.bytes".into(),
            Some(topic.segment_bytes.to_string()),
        ),
    ];
    if let Some(min_isr) = topic.min_isr {
        let min_isr = if explicit {
            min_isr
        } else {
            min_isr.min(i32::from(rf))
        };
        configs.push(("min.insync.replicas".into(), Some(min_isr.to_string())));
    }
    let t = NewTopic {
        name: name.to_string(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: vec![],
        configs,
    };
    match broker.create_topics_internal(vec![t]).await {
        Ok(()) => tracing::info!(partitions, "created {name}"),
        Err(e) => tracing::error!(error = %e, "cannot create {name}"),
    }
}
