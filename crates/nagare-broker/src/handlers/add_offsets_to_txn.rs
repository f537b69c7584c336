//! AddOffsetsToTxn (key 25): adds a consumer group's `__consumer_offsets` partition to a
//! producer's ongoing transaction, so that its TxnOffsetCommit is completed by the
//! transaction's markers (Kafka's `KafkaApis.handleAddOffsetsToTxnRequest`): WRITE on the
//! transactional id, READ on the group.

use std::sync::Arc;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, ApiKey};

use nagare_coordinator::partition_for;
use nagare_transaction_coordinator::{TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::network::Reply;
use crate::transaction_coordinator::request_context;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 4);

/// Handles AddOffsetsToTxn.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: AddOffsetsToTxnRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let txn_id = r.transactional_id.to_string();
    let group = r.group_id.to_string();
    let refuse = |code: i16| {
        Ok(Reply::Now(respond(
            ApiKey::AddOffsetsToTxn,
            v,
            corr,
            &AddOffsetsToTxnResponse::default().with_error_code(code),
        )))
    };
    if !broker.authorize(
        &req.ctx,
        AclOperation::Write,
        &Resource::transactional_id(&txn_id),
    ) {
        return refuse(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if !broker.authorize(&req.ctx, AclOperation::Read, &Resource::group(&group)) {
        return refuse(ResponseError::GroupAuthorizationFailed.code());
    }
    let image = broker.image();
    // The group's partition as the group coordinator places it: by the topic's partition
    // count once it exists, else by `offsets.topic.num.partitions` it will be created with.
    let partitions = image
        .topic(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .unwrap_or(broker.config.offsets_topic_num_partitions);
    let pending = broker
        .transactions
        .handle(
            &image,
            &txn_id,
            request_context(&req),
            TxnRequest::AddOffsets {
                transactional_id: txn_id.clone(),
                producer_id: *r.producer_id,
                producer_epoch: r.producer_epoch,
                group_id: group.clone(),
                offsets_partition: partition_for(&group, partitions),
            },
        )
        .await;
    Ok(Reply::Later(Box::pin(async move {
        let error = match pending.await {
            TxnResponse::AddOffsets { error } => error,
            other => {
                tracing::error!(
                    ?other,
                    "unexpected transaction coordinator answer to AddOffsetsToTxn"
                );
                ResponseError::UnknownServerError.code()
            }
        };
        respond(
            ApiKey::AddOffsetsToTxn,
            v,
            corr,
            &AddOffsetsToTxnResponse::default().with_error_code(error),
        )
    })))
}
