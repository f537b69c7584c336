//! WriteTxnMarkers (key 27): the transaction coordinator asks the leaders of a
//! transaction's partitions to write its COMMIT or ABORT marker (Kafka's
//! `KafkaApis.handleWriteTxnMarkersRequest`). A partition of `__consumer_offsets` is
//! completed by the group coordinator, which commits or drops the producer's pending
//! transactional offsets with the marker; any other partition gets the control batch through
//! the replica manager (coordinator origin, acks=all within `request.timeout.ms`). Served on
//! client listeners (brokers reach each other there) and needs CLUSTER_ACTION on the cluster.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use nagare_protocol::batch_builder::build_control_batch;

use super::HandlerResult;
use super::{respond, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::group_coordinator::OFFSETS_TOPIC;
use crate::network::Reply;
use crate::replica_manager::{now_ms, AppendEntry, AppendOrigin, PendingAppend, RequiredAcks};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions (Kafka 4.x: 1; v0 was removed by KIP-896).
pub const VERSIONS: (i16, i16) = (1, 1);

/// A partition's answer.
enum Answer {
    /// Known now.
    Ready(i16),
    /// The group coordinator's completion, running on its own task.
    Group(tokio::task::JoinHandle<i16>),
    /// Entry `i` of its marker's append.
    Appended(usize),
}

/// What the group coordinator's completion errors become for the transaction coordinator
/// (Kafka: it does not expect coordinator errors, NOT_LEADER_OR_FOLLOWER makes it retry).
fn from_group_coordinator(code: i16) -> i16 {
    use kafka_protocol::ResponseError as E;
    if code == E::CoordinatorNotAvailable.code()
        || code == E::CoordinatorLoadInProgress.code()
        || code == E::NotCoordinator.code()
    {
        E::NotLeaderOrFollower.code()
    } else {
        code
    }
}

/// Whether this broker leads `topic`-`partition` with an ISR smaller than its
/// `min.insync.replicas` (Kafka's `Partition.appendRecordsToLeader` refusal for acks=-1).
fn below_min_isr(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .replicas
        .partition(topic, partition)
        .filter(|p| p.is_leader())
        .is_some_and(|p| (p.isr().len() as i32) < p.min_isr.load(Ordering::Acquire))
}

/// One marker's partitions by topic, and the append of its data partitions.
struct MarkerWork {
    producer_id: i64,
    topics: Vec<(TopicName, Vec<(i32, Answer)>)>,
    append: Option<PendingAppend>,
}

/// Handles WriteTxnMarkers.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: WriteTxnMarkersRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let allowed = broker.authorize(&req.ctx, AclOperation::ClusterAction, &Resource::cluster());
    let timeout = Duration::from_millis(broker.config.request_timeout_ms);
    let mut work = Vec::with_capacity(r.markers.len().min(1024));
    for m in &r.markers {
        let producer_id = m.producer_id.0;
        let mut topics = Vec::with_capacity(m.topics.len().min(1024));
        let mut entries = Vec::new();
        for t in &m.topics {
            let name = t.name.as_str();
            let mut parts = Vec::with_capacity(t.partition_indexes.len().min(1024));
            for &p in &t.partition_indexes {
                let answer = if !allowed {
                    Answer::Ready(ResponseError::ClusterAuthorizationFailed.code())
                } else if name == OFFSETS_TOPIC {
                    let b = broker.clone();
                    let (epoch, coordinator_epoch, commit) =
                        (m.producer_epoch, m.coordinator_epoch, m.transaction_result);
                    Answer::Group(tokio::spawn(async move {
                        b.groups
                            .complete_transaction(
                                p,
                                producer_id,
                                epoch,
                                coordinator_epoch,
                                commit,
                                timeout,
                            )
                            .await
                            .map_or_else(from_group_coordinator, |()| 0)
                    }))
                } else if below_min_isr(broker, name, p) {
                    // Kafka appends markers with acks=-1, so a leader whose ISR is below
                    // `min.insync.replicas` refuses them before appending (the replica
                    // manager's coordinator origin skips that check: it serves the
                    // coordinator runtime's acks=1 writes). The coordinator retries.
                    Answer::Ready(ResponseError::NotEnoughReplicas.code())
                } else {
                    match build_control_batch(
                        producer_id,
                        m.producer_epoch,
                        m.coordinator_epoch,
                        m.transaction_result,
                        // The log stamps its own leader epoch on the batch.
                        -1,
                        now_ms(),
                    ) {
                        Ok(batch) => {
                            entries.push(AppendEntry {
                                topic: name.to_string(),
                                partition: p,
                                current_leader_epoch: -1,
                                records: BytesMut::from(&batch[..]),
                                verification: nagare_storage::TxnVerification::NotRequired,
                            });
                            Answer::Appended(entries.len() - 1)
                        }
                        Err(e) => {
                            tracing::warn!(producer_id, error = %e, "invalid transaction marker");
                            Answer::Ready(ResponseError::InvalidRequest.code())
                        }
                    }
                };
                parts.push((p, answer));
            }
            topics.push((t.name.clone(), parts));
        }
        // Kafka appends the markers with acks=-1 and coordinator origin (internal topics
        // allowed), one append per marker; every wait is registered with the same fsync round.
        let append = (!entries.is_empty()).then(|| {
            broker.replicas.append_records(
                AppendOrigin::Coordinator,
                RequiredAcks::All,
                timeout,
                entries,
            )
        });
        work.push(MarkerWork {
            producer_id,
            topics,
            append,
        });
    }
    Ok(Reply::Later(Box::pin(async move {
        let mut out = Vec::with_capacity(work.len());
        for w in work {
            // The replica manager's errors as codes: NOT_LEADER_OR_FOLLOWER,
            // UNKNOWN_TOPIC_OR_PARTITION, storage refusals, REQUEST_TIMED_OUT, …
            let codes: Vec<i16> = match w.append {
                Some(a) => a
                    .complete()
                    .await
                    .into_iter()
                    .map(|r| r.error.map_or(0, |e| e.code()))
                    .collect(),
                None => Vec::new(),
            };
            let mut ts = Vec::with_capacity(w.topics.len());
            for (name, parts) in w.topics {
                let mut ps = Vec::with_capacity(parts.len());
                for (p, answer) in parts {
                    let code = match answer {
                        Answer::Ready(c) => c,
                        Answer::Group(h) => {
                            h.await.unwrap_or(ResponseError::UnknownServerError.code())
                        }
                        Answer::Appended(i) => codes
                            .get(i)
                            .copied()
                            .unwrap_or(ResponseError::UnknownServerError.code()),
                    };
                    ps.push(
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(p)
                            .with_error_code(code),
                    );
                }
                ts.push(
                    WritableTxnMarkerTopicResult::default()
                        .with_name(name)
                        .with_partitions(ps),
                );
            }
            out.push(
                WritableTxnMarkerResult::default()
                    .with_producer_id(ProducerId(w.producer_id))
                    .with_topics(ts),
            );
        }
        respond(
            ApiKey::WriteTxnMarkers,
            v,
            corr,
            &WriteTxnMarkersResponse::default().with_markers(out),
        )
    })))
}
