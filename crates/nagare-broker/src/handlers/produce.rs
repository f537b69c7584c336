//! Produce (key 0): validates and appends batches as received (offsets patched, never
//! re-encoded). `acks=all` replies after the data is fsynced on the leader (group commit)
//! and every ISR member has it (the high watermark passed it: Kafka's delayed-produce
//! purgatory); `acks=1` after the page-cache write; `acks=0` gets no reply at all.
//!
//! As in Kafka, `acks=all` is refused with NOT_ENOUGH_REPLICAS before the append when the ISR
//! is smaller than `min.insync.replicas`; once appended it is answered with
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below it by the time the batch was
//! replicated, and REQUEST_TIMED_OUT if that did not happen within the request's
//! `timeout_ms`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::replica_manager::{AppendEntry, AppendOrigin, PartitionAppend, RequiredAcks};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (3, 12);

/// Handles Produce.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ProduceRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let acks = RequiredAcks::from_wire(r.acks);
    let timeout = Duration::from_millis(r.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(r.topic_data.len());
    // The partitions handed to the replica manager, and where their answers go.
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    // Kafka: a transactional produce needs WRITE on its transactional id (which implies the
    // producer id); every topic needs WRITE.
    let txn_denied = r.transactional_id.as_ref().is_some_and(|id| {
        !broker.authorize(
            &req.ctx,
            AclOperation::Write,
            &Resource::transactional_id(id.as_str()),
        )
    });
    for t in r.topic_data {
        let name = if v >= 13 {
            broker.replicas.topic_name(&t.topic_id).unwrap_or_default()
        } else {
            t.name.to_string()
        };
        let topic_denied =
            !broker.authorize(&req.ctx, AclOperation::Write, &Resource::topic(&name));
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let out = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            if acks.is_none() {
                parts.push(out.with_error_code(ResponseError::InvalidRequiredAcks.code()));
                continue;
            }
            if txn_denied || r.transactional_id.is_some() {
                // Refused, or (when allowed) transactions need the transaction coordinator,
                // which is not built yet.
                parts.push(
                    out.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
                );
                continue;
            }
            if topic_denied {
                parts.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            if name == crate::group_coordinator::OFFSETS_TOPIC {
                // Kafka refuses client writes to internal topics.
                parts.push(out.with_error_code(ResponseError::InvalidTopicException.code()));
                continue;
            }
            let Some(records) = p.records else {
                // A partition not led here says so first.
                let code = match broker.replicas.leader_partition(&name, p.index, -1) {
                    Err(e) => e.code(),
                    Ok(_) => ResponseError::InvalidRecord.code(),
                };
                parts.push(out.with_error_code(code));
                continue;
            };
            slots.push((topics.len(), parts.len()));
            // The only copy on the produce path: request bytes into a mutable buffer so the
            // batch headers can be patched in place before the single write.
            entries.push(AppendEntry {
                topic: name.clone(),
                partition: p.index,
                current_leader_epoch: -1,
                records: BytesMut::from(&records[..]),
            });
            parts.push(out);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(TopicName(sb(name)))
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    let Some(acks) = acks else {
        let resp = ProduceResponse::default().with_responses(topics);
        return Ok(Reply::Now(respond(ApiKey::Produce, v, corr, &resp)));
    };
    let pending = broker
        .replicas
        .append_records(AppendOrigin::Client, acks, timeout, entries);
    if acks == RequiredAcks::None {
        return Ok(Reply::Nothing);
    }
    if !pending.is_delayed() {
        fill(&mut topics, &slots, pending.into_results());
        let resp = ProduceResponse::default().with_responses(topics);
        return Ok(Reply::Now(respond(ApiKey::Produce, v, corr, &resp)));
    }
    Ok(Reply::Later(Box::pin(async move {
        fill(&mut topics, &slots, pending.complete().await);
        let resp = ProduceResponse::default().with_responses(topics);
        respond(ApiKey::Produce, v, corr, &resp)
    })))
}

/// Writes each partition's outcome into its place in the response: an unacknowledged write
/// has base offset -1 and the error's code (and, where useful, its message).
fn fill(
    topics: &mut [TopicProduceResponse],
    slots: &[(usize, usize)],
    results: Vec<PartitionAppend>,
) {
    for (&(ti, pi), r) in slots.iter().zip(results) {
        let Some(out) = topics
            .get_mut(ti)
            .and_then(|t| t.partition_responses.get_mut(pi))
        else {
            continue;
        };
        if let Some(a) = r.appended {
            out.base_offset = a.base_offset;
            out.log_append_time_ms = a.log_append_time_ms;
            out.log_start_offset = a.log_start_offset;
        }
        if let Some(e) = r.error {
            out.error_code = e.code();
            out.base_offset = -1;
            out.error_message = e.message().map(sb);
        }
    }
}
