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
//!
//! Transactional producers (KIP-98): their batches are appended like any other once WRITE
//! on the transactional id is allowed; the log checks the producer epoch (fencing), the
//! sequence and the producer's transaction state, and the refusals come back per partition
//! with Kafka's codes: INVALID_PRODUCER_EPOCH for an older epoch (Kafka answers Produce with
//! it rather than PRODUCER_FENCED since 2.7, so the client can abort and go on),
//! OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_TXN_STATE for a non-transactional batch during the
//! producer's transaction, INVALID_RECORD for a control batch sent by a client.
//!
//! KIP-467: a batch the log refuses for some of its records (a keyless record on a compacted
//! topic, a CreateTime timestamp out of range) is answered INVALID_RECORD (INVALID_TIMESTAMP
//! if any timestamp is at fault) with `record_errors` naming each refused record's batch index
//! and reason and Kafka's summary as `error_message` (v8+), so a client fails only those
//! records with the error and the rest as refused because of them.
//!
//! KIP-890 part 1 (`transaction.partition.verification.enable`): the first transactional
//! write of a transaction on a partition waits for the transaction coordinator to confirm
//! the partition is in the producer's ongoing transaction ([`crate::txn_verification`]);
//! refused partitions are answered with Kafka's translation of the coordinator's error and
//! nothing is appended.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, TopicName};

use super::produce_frame;
use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::replica_manager::{AppendEntry, AppendOrigin, PartitionAppend, RequiredAcks};
use crate::Broker;
use nagare_protocol::error::ResponseError;
use nagare_protocol::record_batch::RecordBatchHeader;
use nagare_storage::{TxnVerification, VerificationGuard};
use nagare_transaction_coordinator::TopicPartition;

use crate::txn_verification::{produce_error, VerifyRequest};

/// Supported versions.
pub const VERSIONS: (i16, i16) = (3, 12);

/// Handles Produce.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    // The body as received: the decoded records are slices of it, handed to the log without
    // a copy once nothing else refers to it (see `produce_frame`).
    let whole = req.body.clone();
    let mut r: ProduceRequest = req.decode()?;
    req.body = Bytes::new();
    // Producer byte-rate quota: the request's size, recorded as it arrives (Kafka counts the
    // request size); the response reports the throttle and the connection is muted for it.
    let throttle = broker.quotas.record_produce(&req.ctx);
    // Request-percentage quota (Kafka: not for acks=0): the handling time so far, recorded
    // where the response is built; the response carries the larger of the two throttles.
    let quota_ctx = broker.quotas.request.enabled().then(|| req.ctx.clone());
    let with_request_throttle = |throttle: i32| match &quota_ctx {
        Some(ctx) => throttle.max(
            broker
                .quotas
                .record_request_time(ctx, ctx.received.elapsed()),
        ),
        None => throttle,
    };
    let v = req.version();
    let corr = req.correlation_id();
    let acks = RequiredAcks::from_wire(r.acks);
    let timeout = Duration::from_millis(r.timeout_ms.max(0) as u64);
    let mut topics = Vec::with_capacity(r.topic_data.len());
    // The partitions handed to the replica manager, and where their answers go.
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    // Per entry: the producer id and epoch of its first batch when it is transactional.
    let mut txn_producers: Vec<Option<(i64, i16)>> = Vec::new();
    // Per entry: where its records lie in `whole` (filled in below, after the loop dropped
    // the decoded request's references to the frame).
    let mut in_frame: Vec<Option<std::ops::Range<usize>>> = Vec::new();
    let transactional_id = r.transactional_id.as_ref().map(|id| id.to_string());
    // Kafka (`KafkaApis.handleProduceRequest`): a request carrying transactional batches needs
    // a transactional id and WRITE on it (which implies the producer id), else the whole
    // request is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED; every topic needs WRITE.
    let txn_denied = has_transactional_records(&r)
        && !r.transactional_id.as_ref().is_some_and(|id| {
            broker.authorize(
                &req.ctx,
                AclOperation::Write,
                &Resource::transactional_id(id.as_str()),
            )
        });
    // The rest of the request (its transactional id, tagged fields) refers to the frame too.
    let topic_data = std::mem::take(&mut r.topic_data);
    drop(r);
    for t in topic_data {
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
            if txn_denied {
                parts.push(
                    out.with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code()),
                );
                continue;
            }
            if topic_denied {
                parts.push(out.with_error_code(ResponseError::TopicAuthorizationFailed.code()));
                continue;
            }
            if name == crate::group_coordinator::OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC {
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
            txn_producers.push(
                RecordBatchHeader::parse(&records)
                    .ok()
                    .filter(|h| h.is_transactional())
                    .map(|h| (h.producer_id, h.producer_epoch)),
            );
            // Records outside the frame (never, with our decoder) are copied here.
            let range = produce_frame::locate(&whole, &records);
            entries.push(AppendEntry {
                topic: name.clone(),
                partition: p.index,
                current_leader_epoch: -1,
                records: match range {
                    Some(_) => BytesMut::new(),
                    None => BytesMut::from(&records[..]),
                },
                verification: TxnVerification::NotRequired,
            });
            in_frame.push(range);
            parts.push(out);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(TopicName(sb(name)))
                .with_topic_id(t.topic_id)
                .with_partition_responses(parts),
        );
    }
    // Every slice of the frame is gone now: split it into the entries' buffers (the log
    // patches them in place), without a copy when this handler holds its only reference.
    let ranges: Vec<std::ops::Range<usize>> = in_frame.iter().flatten().cloned().collect();
    let mut buffers = produce_frame::split_records(whole, &ranges).into_iter();
    for (entry, range) in entries.iter_mut().zip(&in_frame) {
        if range.is_some() {
            entry.records = buffers.next().unwrap_or_default();
        }
    }
    let Some(acks) = acks else {
        let resp = ProduceResponse::default()
            .with_throttle_time_ms(with_request_throttle(throttle))
            .with_responses(topics);
        return Ok(Reply::Now(respond(ApiKey::Produce, v, corr, &resp)));
    };
    // KIP-890 part 1 (Kafka's `ReplicaManager.appendRecordsWithTransactionVerification`):
    // the first transactional write of a producer's transaction on a partition is appended
    // only once the transaction coordinator confirmed the partition is in the ongoing
    // transaction; the guard taken before asking makes a marker written meanwhile (the
    // transaction ended) void the confirmation.
    let checks = match (
        &transactional_id,
        broker
            .runtime_settings
            .transaction_partition_verification_enable(),
    ) {
        (Some(id), true) => start_verification(broker, id, &mut entries, &txn_producers),
        _ => Verification::None,
    };
    match checks {
        Verification::None => {}
        Verification::Refused(code) => {
            // Transactional batches of several producers in one request (Kafka's
            // InvalidPidMappingException): every transactional partition is refused.
            let refused: Vec<usize> = (0..entries.len())
                .filter(|i| txn_producers[*i].is_some())
                .collect();
            for &i in refused.iter().rev() {
                entries.remove(i);
                let (ti, pi) = slots.remove(i);
                set_error(&mut topics, (ti, pi), code);
            }
        }
        Verification::Ask(request, guards) => {
            let broker = broker.clone();
            // Taken now, in arrival order: this request appends after the producer's
            // earlier ones that also wait for a verification.
            let mut turn = broker
                .transactions
                .verifier()
                .take_turn(request.producer_id);
            let work = async move {
                let results = broker
                    .transactions
                    .verifier()
                    .verify(&broker, request)
                    .await;
                let (entries, slots) =
                    apply_verification(&mut topics, entries, slots, guards, results, v);
                turn.wait().await;
                let pending =
                    broker
                        .replicas
                        .append_records(AppendOrigin::Client, acks, timeout, entries);
                drop(turn);
                let results = if pending.is_delayed() {
                    pending.complete().await
                } else {
                    pending.into_results()
                };
                fill(&mut topics, &slots, results);
                topics
            };
            if acks == RequiredAcks::None {
                tokio::spawn(async move {
                    work.await;
                });
                return Ok(Reply::Nothing);
            }
            let throttle = with_request_throttle(throttle);
            return Ok(Reply::Later(Box::pin(async move {
                let resp = ProduceResponse::default()
                    .with_throttle_time_ms(throttle)
                    .with_responses(work.await);
                respond(ApiKey::Produce, v, corr, &resp)
            })));
        }
    }
    let pending = broker
        .replicas
        .append_records(AppendOrigin::Client, acks, timeout, entries);
    if acks == RequiredAcks::None {
        return Ok(Reply::Nothing);
    }
    let throttle = with_request_throttle(throttle);
    if !pending.is_delayed() {
        fill(&mut topics, &slots, pending.into_results());
        let resp = ProduceResponse::default()
            .with_throttle_time_ms(throttle)
            .with_responses(topics);
        return Ok(Reply::Now(respond(ApiKey::Produce, v, corr, &resp)));
    }
    Ok(Reply::Later(Box::pin(async move {
        fill(&mut topics, &slots, pending.complete().await);
        let resp = ProduceResponse::default()
            .with_throttle_time_ms(throttle)
            .with_responses(topics);
        respond(ApiKey::Produce, v, corr, &resp)
    })))
}

/// What KIP-890 verification a produce request needs.
enum Verification {
    /// None: no transactional batch starts a transaction here (or verification is off).
    None,
    /// Every transactional partition is refused with this code.
    Refused(i16),
    /// Ask the coordinator; the guards are per entry index.
    Ask(VerifyRequest, Vec<(usize, VerificationGuard)>),
}

/// Marks every transactional entry as needing verification and starts a verification on
/// each partition where the producer has no ongoing transaction yet (the others carry on
/// with the storage's own checks: epoch, sequence, transaction state).
fn start_verification(
    broker: &Arc<Broker>,
    transactional_id: &str,
    entries: &mut [AppendEntry],
    txn_producers: &[Option<(i64, i16)>],
) -> Verification {
    let producers: BTreeSet<(i64, i16)> = txn_producers.iter().flatten().copied().collect();
    if producers.len() > 1 {
        tracing::info!(
            transactional_id,
            ?producers,
            "produce request with transactional batches of several producers"
        );
        return Verification::Refused(ResponseError::InvalidProducerIdMapping.code());
    }
    let Some(&(producer_id, producer_epoch)) = producers.first() else {
        return Verification::None;
    };
    let mut guards = Vec::new();
    let mut partitions = Vec::new();
    for (i, e) in entries.iter_mut().enumerate() {
        if txn_producers[i].is_none() {
            continue;
        }
        e.verification = TxnVerification::Required(None);
        // A partition not led here is answered by the append with its own error.
        if let Ok(Some(guard)) = broker.replicas.start_txn_verification(
            &e.topic,
            e.partition,
            producer_id,
            producer_epoch,
        ) {
            guards.push((i, guard));
            partitions.push(TopicPartition {
                topic: e.topic.clone(),
                partition: e.partition,
            });
        }
    }
    // Nothing to verify, and no earlier produce of this producer waiting to append: go on.
    // (If one waits, this one appends after it, keeping the producer's order.)
    if guards.is_empty() && !broker.transactions.verifier().has_turn(producer_id) {
        return Verification::None;
    }
    Verification::Ask(
        VerifyRequest {
            transactional_id: transactional_id.to_string(),
            producer_id,
            producer_epoch,
            partitions,
        },
        guards,
    )
}

/// Keeps the entries the coordinator confirmed (with their guards) and those that needed no
/// check; the others are answered with the produce error of the coordinator's (Kafka's
/// translation, [`produce_error`]) and not appended.
fn apply_verification(
    topics: &mut [TopicProduceResponse],
    entries: Vec<AppendEntry>,
    slots: Vec<(usize, usize)>,
    guards: Vec<(usize, VerificationGuard)>,
    results: Vec<(TopicPartition, i16)>,
    version: i16,
) -> (Vec<AppendEntry>, Vec<(usize, usize)>) {
    let errors: HashMap<TopicPartition, i16> = results.into_iter().collect();
    let guards: HashMap<usize, VerificationGuard> = guards.into_iter().collect();
    let mut kept = Vec::with_capacity(entries.len());
    let mut kept_slots = Vec::with_capacity(entries.len());
    for (i, (mut e, slot)) in entries.into_iter().zip(slots).enumerate() {
        if let Some(&guard) = guards.get(&i) {
            let tp = TopicPartition {
                topic: e.topic.clone(),
                partition: e.partition,
            };
            let code = errors
                .get(&tp)
                .copied()
                .unwrap_or(ResponseError::NetworkException.code());
            let code = produce_error(code, version);
            if code != 0 {
                tracing::debug!(topic = %e.topic, partition = e.partition, code, "transactional write refused: the partition is not verified to be in the producer's transaction");
                set_error(topics, slot, code);
                continue;
            }
            e.verification = TxnVerification::Required(Some(guard));
        }
        kept.push(e);
        kept_slots.push(slot);
    }
    (kept, kept_slots)
}

/// Sets the error of the partition at `slot` of the response.
fn set_error(topics: &mut [TopicProduceResponse], (ti, pi): (usize, usize), code: i16) {
    if let Some(out) = topics
        .get_mut(ti)
        .and_then(|t| t.partition_responses.get_mut(pi))
    {
        out.error_code = code;
        out.base_offset = -1;
    }
}

/// The transaction state topic: clients may not write to it (Kafka's internal topics).
const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Kafka's `RequestUtils.hasTransactionalRecords`: whether the first batch of any partition
/// is transactional (only its 61-byte header is read).
fn has_transactional_records(r: &ProduceRequest) -> bool {
    r.topic_data.iter().any(|t| {
        t.partition_data.iter().any(|p| {
            p.records
                .as_ref()
                .is_some_and(|b| RecordBatchHeader::parse(b).is_ok_and(|h| h.is_transactional()))
        })
    })
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
            // KIP-467 (Produce v8+; older versions leave these ignorable fields out).
            out.record_errors = e
                .record_errors()
                .iter()
                .map(|r| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(r.batch_index)
                        .with_batch_index_error_message(Some(sb(r.message.clone())))
                })
                .collect();
        }
    }
}
