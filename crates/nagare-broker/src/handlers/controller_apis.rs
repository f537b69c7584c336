//! The controller's side of the API (Kafka's `ControllerApis`): what a node with the
//! controller role answers on its `CONTROLLER` listener — the quorum RPCs, broker
//! registration and heartbeats, producer-id blocks, and the admin requests brokers forward
//! (which arrive in an Envelope, see [`super::envelope`]).

use std::sync::Arc;

use kafka_protocol::messages::{
    AllocateProducerIdsRequest, AllocateProducerIdsResponse, ApiKey, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerRegistrationRequest, BrokerRegistrationResponse, ProducerId,
};

use nagare_controller::cluster_control::{Heartbeat, Registration};
use nagare_controller::logic::{self, ApiError};
use nagare_metadata::records::Endpoint;

use super::HandlerResult;
use super::{
    alter_configs, api_versions, create_partitions, create_topics, delete_topics, respond, Request,
};
use crate::network::Reply;
use crate::Broker;

/// Routes a request that arrived on the controller listener.
pub async fn dispatch(broker: &Arc<Broker>, key: ApiKey, req: Request) -> HandlerResult {
    match key {
        ApiKey::ApiVersions => api_versions::handle(broker, req),
        ApiKey::CreateTopics => create_topics::handle(broker, req).await,
        ApiKey::DeleteTopics => delete_topics::handle(broker, req).await,
        ApiKey::CreatePartitions => create_partitions::handle(broker, req).await,
        ApiKey::AlterConfigs => alter_configs::handle_alter(broker, req).await,
        ApiKey::IncrementalAlterConfigs => alter_configs::handle_incremental(broker, req).await,
        ApiKey::BrokerRegistration => broker_registration(broker, req).await,
        ApiKey::BrokerHeartbeat => broker_heartbeat(broker, req).await,
        ApiKey::AllocateProducerIds => allocate_producer_ids(broker, req).await,
        ApiKey::AlterPartition => super::alter_partition::handle(broker, req).await,
        ApiKey::ElectLeaders => super::elect_leaders::handle(broker, req).await,
        _ => Err(super::HandlerError::Internal(format!(
            "{key:?} is not served on the controller listener"
        ))),
    }
}

fn not_controller() -> (i16, String) {
    (
        kafka_protocol::ResponseError::NotController.code(),
        "this node has no controller role".into(),
    )
}

async fn broker_registration(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: BrokerRegistrationRequest = req.decode()?;
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
    let resp = BrokerRegistrationResponse::default()
        .with_error_code(code)
        .with_broker_epoch(epoch);
    Ok(Reply::Now(respond(
        ApiKey::BrokerRegistration,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

async fn broker_heartbeat(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: BrokerHeartbeatRequest = req.decode()?;
    let hb = Heartbeat {
        broker_id: r.broker_id.0,
        broker_epoch: r.broker_epoch,
        current_metadata_offset: r.current_metadata_offset,
        want_fence: r.want_fence,
        want_shut_down: r.want_shut_down,
    };
    let resp = match &broker.controller {
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
    };
    Ok(Reply::Now(respond(
        ApiKey::BrokerHeartbeat,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}

async fn allocate_producer_ids(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AllocateProducerIdsRequest = req.decode()?;
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
    let resp = match outcome {
        Ok(first) => AllocateProducerIdsResponse::default()
            .with_producer_id_start(ProducerId(first))
            .with_producer_id_len(logic::PRODUCER_ID_BLOCK_SIZE as i32),
        Err(e) => AllocateProducerIdsResponse::default()
            .with_error_code(e.code())
            .with_producer_id_start(ProducerId(-1)),
    };
    Ok(Reply::Now(respond(
        ApiKey::AllocateProducerIds,
        req.version(),
        req.correlation_id(),
        &resp,
    )))
}
