//! The controller's side of the API (Kafka's `ControllerApis`): what a node with the
//! controller role answers on its `CONTROLLER` listener — the quorum RPCs, broker
//! registration and heartbeats, producer-id blocks, and the admin requests brokers forward
//! (which arrive in an Envelope, see [`super::envelope`]).
//!
//! The APIs a node itself sends the active controller (BrokerRegistration, BrokerHeartbeat,
//! AllocateProducerIds, AlterPartition, CreateTopics) each have a typed core, `fn(broker,
//! request, version) -> response`, declared as [`ControllerRequest::handle`]: the listener
//! decodes and calls it ([`dispatch`]), and the controller channel calls it in-process when
//! this node is the active controller — one code path whichever node that is.

use std::future::Future;
use std::sync::Arc;

use kafka_protocol::messages::alter_partition_response::{
    PartitionData as AlterPartitionPartition, TopicData as AlterPartitionTopic,
};
use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, AlterPartitionRequest,
    AlterPartitionResponse, ApiKey, BrokerHeartbeatRequest, BrokerHeartbeatResponse, BrokerId,
    BrokerRegistrationRequest, BrokerRegistrationResponse, CreateTopicsRequest, ProducerId,
};

use nagare_controller::cluster_control::{Heartbeat, Registration};
use nagare_controller::logic::{self, ApiError};
use nagare_controller::replication_control::{self, AlterPartitionItem, AlterPartitionResult};
use nagare_metadata::records::Endpoint;

use super::{create_topics, respond, HandlerResult, Request};
use crate::controller_channel::{ControllerRequest, Purpose};
use crate::network::Reply;
use crate::Broker;

/// AlterPartition versions: v2 identifies topics by id, v3 carries each ISR member's broker
/// epoch (KIP-903).
pub const ALTER_PARTITION_VERSIONS: (i16, i16) = (2, 3);

/// Serves the controller-only APIs that brokers send the active controller (their entries in
/// [`super::apis::APIS`] point here); the shared admin APIs have handler modules of their own.
pub async fn dispatch(broker: &Arc<Broker>, key: ApiKey, req: Request) -> HandlerResult {
    match key {
        ApiKey::BrokerRegistration => serve::<BrokerRegistrationRequest>(broker, req).await,
        ApiKey::BrokerHeartbeat => serve::<BrokerHeartbeatRequest>(broker, req).await,
        ApiKey::AllocateProducerIds => serve::<AllocateProducerIdsRequest>(broker, req).await,
        ApiKey::AlterPartition => serve::<AlterPartitionRequest>(broker, req).await,
        _ => Err(super::HandlerError::Internal(format!(
            "{key:?} is not a controller-only API"
        ))),
    }
}

/// Decodes a request of type `R`, runs its typed handling (the same function the controller
/// channel calls in-process on the active controller) and encodes the answer.
async fn serve<R: ControllerRequest>(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    // Kafka's ControllerApis: what brokers send the controller needs CLUSTER_ACTION.
    if !broker.authorize(
        &req.ctx,
        crate::authorizer::AclOperation::ClusterAction,
        &crate::authorizer::Resource::cluster(),
    ) {
        let refused = super::error_response::build(
            req.header(),
            req.body.clone(),
            kafka_protocol::ResponseError::ClusterAuthorizationFailed,
        );
        return Ok(refused.map(Reply::Now).unwrap_or(Reply::Close));
    }
    let r: R = req.decode()?;
    let v = req.version();
    let key = ApiKey::try_from(R::KEY)
        .map_err(|_| super::HandlerError::Internal(format!("unknown API key {}", R::KEY)))?;
    let resp = R::handle(broker, r, v).await;
    Ok(Reply::Now(respond(key, v, req.correlation_id(), &resp)))
}

/// The version a request with API key `key` is handled at when the controller channel hands
/// it to this node's controller in-process: the highest one the `CONTROLLER` listener
/// declares (and `kafka-protocol` knows), which is what a channel to another node of the same
/// build negotiates — so both paths run the same version-dependent logic.
pub fn local_version(key: i16) -> i16 {
    let ours = ApiKey::try_from(key)
        .map(|k| k.valid_versions().max)
        .unwrap_or(0);
    super::apis::spec_for_code(super::ListenerKind::Controller, key)
        .map(|s| s.versions.1.min(ours))
        .unwrap_or(ours)
}

fn not_controller() -> (i16, String) {
    (
        kafka_protocol::ResponseError::NotController.code(),
        "this node has no controller role".into(),
    )
}

impl ControllerRequest for BrokerRegistrationRequest {
    const PURPOSE: Purpose = Purpose::Heartbeat;
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
    fn handle(
        broker: &Arc<Broker>,
        req: Self,
        version: i16,
    ) -> impl Future<Output = Self::Response> + Send {
        create_topics::create_topics(broker, req, version)
    }
}

impl ControllerRequest for AlterPartitionRequest {
    const PURPOSE: Purpose = Purpose::AlterPartition;
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
                security_protocol: "PLAINTEXT".into(),
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
    _version: i16,
) -> BrokerHeartbeatResponse {
    let hb = Heartbeat {
        broker_id: r.broker_id.0,
        broker_epoch: r.broker_epoch,
        current_metadata_offset: r.current_metadata_offset,
        want_fence: r.want_fence,
        want_shut_down: r.want_shut_down,
    };
    match &broker.controller {
        Some(c) => match c.heartbeat(hb).await {
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
