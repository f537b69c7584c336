//! FindCoordinator (key 10): the coordinator of a group is the leader of partition
//! `abs(hash(group)) % offsets.topic.num.partitions` of `__consumer_offsets`, which is created
//! on first use as Kafka does. Transaction coordinators are not built yet: key type 1 gets
//! COORDINATOR_NOT_AVAILABLE.

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
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 6);

/// Handles FindCoordinator.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: FindCoordinatorRequest = req.decode()?;
    let v = req.version();
    // The offsets topic is created on the first lookup of a group the principal may
    // describe (v0-3 name one key, v4+ a batch), never for a refused one.
    let keys: Vec<&str> = if v >= 4 {
        r.coordinator_keys.iter().map(|k| k.as_str()).collect()
    } else {
        vec![r.key.as_str()]
    };
    let any_authorized_group = r.key_type == 0
        && keys
            .iter()
            .any(|k| broker.authorize(&req.ctx, AclOperation::Describe, &Resource::group(k)));
    if any_authorized_group && broker.image().topic(OFFSETS_TOPIC).is_none() {
        create_offsets_topic(broker).await;
    }
    let image = broker.image();
    let resp = find_coordinator_response(&r, v, |key_type, key| {
        // Kafka: DESCRIBE on the group (or the transactional id) named by the key.
        let (resource, denied) = if key_type == 0 {
            (
                Resource::group(key),
                ResponseError::GroupAuthorizationFailed,
            )
        } else {
            (
                Resource::transactional_id(key),
                ResponseError::TransactionalIdAuthorizationFailed,
            )
        };
        if !broker.authorize(&req.ctx, AclOperation::Describe, &resource) {
            return CoordinatorLocation::Error(denied.code());
        }
        if key_type != 0 {
            return CoordinatorLocation::Error(ResponseError::CoordinatorNotAvailable.code());
        }
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return CoordinatorLocation::Error(ResponseError::CoordinatorNotAvailable.code());
        };
        let p = partition_for(key, topic.partitions.len() as i32);
        let leader = topic.partitions.get(&p).map(|x| x.leader).unwrap_or(-1);
        match image
            .brokers
            .get(&leader)
            .and_then(|b| broker.client_endpoint(b))
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

/// Creates `__consumer_offsets` (compacted; `min.insync.replicas` is the cluster's) with
/// `offsets.topic.num.partitions` partitions. Its replication factor is
/// `offsets.topic.replication.factor`; as in Kafka the topic is created only once at least
/// that many brokers are alive — until then FindCoordinator answers COORDINATOR_NOT_AVAILABLE
/// and clients retry — so a cluster still starting up does not get an offsets topic with
/// fewer replicas than configured. Only when the key is left at its default (Kafka's 3) is it
/// capped at the number of registered brokers, so a single node works out of the box.
pub(crate) async fn create_offsets_topic(broker: &Arc<Broker>) {
    let partitions = broker.config.offsets_topic_num_partitions;
    let configured = broker.config.offsets_topic_replication_factor;
    let segment_bytes = broker.config.offsets_topic_segment_bytes;
    let img = broker.image();
    if img.topic(OFFSETS_TOPIC).is_some() {
        return;
    }
    let explicit = broker
        .config
        .props
        .contains_key("offsets.topic.replication.factor");
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
                "not creating {OFFSETS_TOPIC} yet: fewer live brokers than offsets.topic.replication.factor"
            );
        }
        return;
    }
    let t = NewTopic {
        name: OFFSETS_TOPIC.to_string(),
        num_partitions: partitions,
        replication_factor: rf,
        assignments: vec![],
        configs: vec![
            ("cleanup.policy".into(), Some("compact".into())),
            ("compression.type".into(), Some("producer".into())),
            ("segment.bytes".into(), Some(segment_bytes.to_string())),
        ],
    };
    match broker.create_topics_internal(vec![t]).await {
        Ok(()) => tracing::info!(partitions, "created {OFFSETS_TOPIC}"),
        Err(e) => tracing::error!(error = %e, "cannot create {OFFSETS_TOPIC}"),
    }
}
