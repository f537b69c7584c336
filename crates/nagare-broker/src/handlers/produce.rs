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

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::HandlerResult;
use super::{respond, sb, storage_error_code, Request};
use crate::network::Reply;
use crate::replica_manager::now_ms;
use crate::Broker;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (3, 12);

/// Handles Produce.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ProduceRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let acks = r.acks;
    let deadline = Instant::now() + Duration::from_millis(r.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(r.topic_data.len());
    let mut durable_waits = Vec::new();
    let now = now_ms();
    for t in r.topic_data {
        let name = if v >= 13 {
            broker.replicas.topic_name(&t.topic_id).unwrap_or_default()
        } else {
            t.name.to_string()
        };
        let mut parts = Vec::with_capacity(t.partition_data.len());
        for p in t.partition_data {
            let mut out = PartitionProduceResponse::default()
                .with_index(p.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            if acks != -1 && acks != 0 && acks != 1 {
                parts.push(out.with_error_code(21)); // INVALID_REQUIRED_ACKS
                continue;
            }
            if r.transactional_id.is_some() {
                // Transactions need the transaction coordinator, which is not built yet.
                parts.push(out.with_error_code(53)); // TRANSACTIONAL_ID_AUTHORIZATION_FAILED
                continue;
            }
            if name == crate::group_coordinator::OFFSETS_TOPIC {
                // Kafka refuses client writes to internal topics.
                parts.push(out.with_error_code(17)); // INVALID_TOPIC_EXCEPTION
                continue;
            }
            let partition = match broker.replicas.leader_partition(&name, p.index, -1) {
                Ok(partition) => partition,
                Err(code) => {
                    parts.push(out.with_error_code(code));
                    continue;
                }
            };
            let Some(records) = p.records else {
                parts.push(out.with_error_code(87)); // INVALID_RECORD
                continue;
            };
            if acks == -1 {
                // Kafka's Partition.appendRecordsToLeader: refuse before appending.
                let isr = partition.isr().len() as i32;
                let min_isr = partition.min_isr.load(Ordering::Acquire);
                if isr < min_isr {
                    parts.push(out.with_error_code(19).with_error_message(Some(sb(format!(
                        "The size of the current ISR {isr} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {}",
                        partition.tp
                    ))))); // NOT_ENOUGH_REPLICAS
                    continue;
                }
            }
            let epoch = partition.epoch();
            // The only copy on the produce path: request bytes into a mutable buffer so the
            // batch headers can be patched in place before the single write.
            let buf = BytesMut::from(&records[..]);
            match partition.log.append_as_leader(buf, epoch, now) {
                Ok(info) => {
                    out = out
                        .with_base_offset(info.first_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset);
                    // A duplicate (idempotent retry) waits too: its original may still be
                    // in the page cache if the first attempt's connection dropped before
                    // the fsync; acknowledging it now could lose it on a crash.
                    if acks == -1 {
                        durable_waits.push((
                            parts.len(),
                            topics.len(),
                            partition.clone(),
                            info.last_offset,
                            epoch,
                        ));
                    }
                    parts.push(out);
                }
                Err(e) => {
                    let code = storage_error_code(&e);
                    tracing::debug!(tp = %partition.tp, error = %e, code, "produce refused");
                    parts.push(
                        out.with_error_code(code)
                            .with_error_message(Some(sb(e.to_string()))),
                    );
                }
            }
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(TopicName(sb(name)))
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    broker.replicas.notify_appended();
    if acks == 0 {
        return Ok(Reply::Nothing);
    }
    if durable_waits.is_empty() {
        let resp = ProduceResponse::default().with_responses(topics);
        return Ok(Reply::Now(respond(ApiKey::Produce, v, corr, &resp)));
    }
    // Register every wait before awaiting any: one fsync round serves them all.
    let waits: Vec<_> = durable_waits
        .into_iter()
        .map(|(pi, ti, partition, last, epoch)| {
            let durable = broker.replicas.wait_durable(partition.log.clone(), last);
            (pi, ti, partition, last, epoch, durable)
        })
        .collect();
    Ok(Reply::Later(Box::pin(async move {
        for (pi, ti, partition, last, epoch, durable) in waits {
            let code = match durable.await {
                Err(e) => {
                    tracing::error!(error = %e, "fsync failed; acks=all write not acknowledged");
                    56 // KAFKA_STORAGE_ERROR
                }
                Ok(()) => {
                    // The delayed produce: wait for the ISR until the request's timeout.
                    let left = deadline.saturating_duration_since(Instant::now());
                    partition.wait_replicated(last + 1, epoch, left).await
                }
            };
            if code != 0 {
                if let Some(p) = topics
                    .get_mut(ti)
                    .and_then(|t| t.partition_responses.get_mut(pi))
                {
                    p.error_code = code;
                    p.base_offset = -1;
                }
            }
        }
        let resp = ProduceResponse::default().with_responses(topics);
        respond(ApiKey::Produce, v, corr, &resp)
    })))
}
