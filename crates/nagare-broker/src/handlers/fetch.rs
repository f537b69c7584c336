//! Fetch (key 1): resolves the fetch session (KIP-227), reads through
//! `ReplicaManager::fetch` (whole batches, the one containing the fetch offset first, bounded
//! by the high watermark — the last stable offset for `isolation_level=1` (read_committed),
//! with the aborted transactions overlapping the records returned — `max_bytes` and
//! per-partition limits, KIP-74: at least one batch;
//! the delayed-fetch purgatory, keyed by partition, waits for `min_bytes` or `max_wait_ms`),
//! builds the response and hands record sets to the connection as file regions for
//! `sendfile`.
//!
//! A fetch with a replica id >= 0 (`replica_id` up to v14, `ReplicaState` from v15) is a
//! follower's: it updates that follower's state in the leader's replication state (its log
//! end, caught-up time, the high watermark, maybe an ISR expansion) and reads up to the log
//! end, not the high watermark. Consumers only ever see records below the high watermark.
//!
//! KIP-392 (follower fetching): consumers sending client metadata (v11+) may read from a
//! follower, up to its high watermark (what the leader last told it); older consumers get
//! NOT_LEADER_OR_FOLLOWER there. With `replica.selector.class` set to Kafka's
//! `RackAwareReplicaSelector`, the leader answers a consumer whose `rack_id` names another
//! rack with `preferred_read_replica` (no records, at once) pointing to an in-sync follower
//! in that rack.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName,
};

use nagare_protocol::fetch::encode_fetch_response;
use nagare_storage::FileSlice;

use super::HandlerResult;
use super::{sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::fetch_session::{FetchContext, FetchTarget};
use crate::metrics::topic_stats::TopicCounters;
use crate::network::{Region, Reply, Response};
use crate::replica_manager::{
    ClientMetadata, FetchParams, FetchPartitionRequest, FetchPartitionResult, IsolationLevel,
};
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (4, 17);

/// Handles Fetch.
pub fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: FetchRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let header_version = ApiKey::Fetch.response_header_version(v);
    let name_of = |name: &TopicName, id: &nagare_metadata::Uuid| -> String {
        if v >= 13 {
            broker.replicas.topic_name(id).unwrap_or_default()
        } else {
            name.to_string()
        }
    };
    let mut requested = Vec::new();
    for t in &r.topics {
        let topic = name_of(&t.topic, &t.topic_id);
        for p in &t.partitions {
            requested.push(FetchTarget {
                topic: topic.clone(),
                topic_id: t.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                last_fetched_epoch: if v >= 12 { p.last_fetched_epoch } else { -1 },
                durable_offset: crate::replica_fetcher::durable_offset_of(p),
                last_hw: -1,
                last_log_start: -1,
            });
        }
    }
    let forgotten: Vec<(String, nagare_metadata::Uuid, i32)> = r
        .forgotten_topics_data
        .iter()
        .flat_map(|f| {
            let topic = name_of(&f.topic, &f.topic_id);
            f.partitions
                .iter()
                .map(move |p| (topic.clone(), f.topic_id, *p))
        })
        .collect();
    let (ctx, targets) =
        match broker
            .fetch_sessions
            .open(r.session_id, r.session_epoch, requested, &forgotten)
        {
            Ok(x) => x,
            Err(code) => {
                let resp = FetchResponse::default()
                    .with_error_code(code)
                    .with_session_id(0);
                return Ok(Reply::Now(encode(corr, header_version, v, &resp, vec![])));
            }
        };
    let broker = broker.clone();
    let read_committed = r.isolation_level == 1;
    let replica_id = if v >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    if replica_id >= 0 {
        req.ctx.connection.mark_follower_fetches();
    }
    // Kafka's `clientMetadata`: present from v11 on (possibly with an empty rack).
    let client_metadata = (v >= 11 && replica_id < 0).then(|| ClientMetadata {
        rack_id: r.rack_id.to_string(),
        rack_of: broker.config.replication.rack_aware_selector.then(|| {
            let broker = broker.clone();
            let rack_of: Arc<dyn Fn(i32) -> Option<String> + Send + Sync> = Arc::new(move |id| {
                broker
                    .image()
                    .brokers
                    .get(&id)
                    .filter(|b| !b.fenced)
                    .and_then(|b| b.rack.clone())
            });
            rack_of
        }),
    });
    // Kafka: a follower needs CLUSTER_ACTION on the cluster (else every partition is refused,
    // so no client can pose as a replica and move a high watermark); a consumer needs READ on
    // each topic.
    let cluster_action = replica_id < 0
        || broker.authorize(&req.ctx, AclOperation::ClusterAction, &Resource::cluster());
    let mut read_allowed: std::collections::HashMap<&str, bool> = Default::default();
    let denied: Vec<bool> = targets
        .iter()
        .map(|t| {
            if replica_id >= 0 {
                return !cluster_action;
            }
            !*read_allowed.entry(t.topic.as_str()).or_insert_with(|| {
                broker.authorize(&req.ctx, AclOperation::Read, &Resource::topic(&t.topic))
            })
        })
        .collect();
    // Consumer byte-rate quota (not for followers: replication is not a client quota). As
    // Kafka, one response may not exceed what the quota allows over its windows.
    let quota = (replica_id < 0 && broker.quotas.fetch.enabled()).then(|| FetchQuota {
        user: req.ctx.principal().name,
        client_id: req.ctx.client_id().to_string(),
        conn: req.ctx.connection.clone(),
    });
    let quota_max_bytes = quota
        .as_ref()
        .and_then(|q| {
            broker
                .quotas
                .fetch
                .max_value_in_window(&q.user, &q.client_id)
        })
        .map(|b| b.min(i32::MAX as f64) as i32)
        .unwrap_or(i32::MAX);
    let params = FetchParams {
        replica_id,
        max_wait: Duration::from_millis(r.max_wait_ms.max(0) as u64),
        min_bytes: r.min_bytes.max(0) as usize,
        max_bytes: r
            .max_bytes
            .min(broker.config.fetch_max_bytes)
            .min(quota_max_bytes)
            .max(0) as usize,
        isolation: if read_committed {
            IsolationLevel::ReadCommitted
        } else {
            IsolationLevel::ReadUncommitted
        },
        client_metadata,
        partitions: targets
            .iter()
            .zip(&denied)
            .filter(|(_, d)| !**d)
            .map(|(t, _)| FetchPartitionRequest {
                topic: t.topic.clone(),
                partition: t.partition,
                fetch_offset: t.fetch_offset,
                max_bytes: t.max_bytes,
                current_leader_epoch: t.current_leader_epoch,
                last_fetched_epoch: t.last_fetched_epoch,
                durable_offset: t.durable_offset,
            })
            .collect(),
    };
    // A consumer's handling time counts against its request_percentage quota; a follower's
    // is exempt (Kafka's `sendResponseExemptThrottle`).
    let request_throttle = if replica_id < 0 {
        broker
            .quotas
            .record_request_time(&req.ctx, req.ctx.received.elapsed())
    } else {
        0
    };
    Ok(Reply::Later(Box::pin(async move {
        let mut fetched = broker.replicas.fetch(&params).await.into_iter();
        let results = targets
            .iter()
            .zip(&denied)
            .map(|(t, d)| match (d, if *d { None } else { fetched.next() }) {
                (false, Some(r)) => partition_data(t, r, read_committed),
                _ => refused(t),
            })
            .collect();
        build_response(
            &broker,
            corr,
            header_version,
            v,
            ctx,
            &targets,
            results,
            quota,
            request_throttle,
            replica_id,
        )
    })))
}

/// Who a consumer fetch's bytes count against.
struct FetchQuota {
    user: String,
    client_id: String,
    conn: Arc<crate::context::ConnectionContext>,
}

/// A partition the requester may not read: TOPIC_AUTHORIZATION_FAILED with an empty record
/// set (librdkafka rejects a null one).
fn refused(t: &FetchTarget) -> (PartitionData, Option<FileSlice>) {
    let pd = PartitionData::default()
        .with_partition_index(t.partition)
        .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Default::default()));
    (pd, None)
}

/// One partition's answer as the Fetch response has it.
fn partition_data(
    t: &FetchTarget,
    r: FetchPartitionResult,
    read_committed: bool,
) -> (PartitionData, Option<FileSlice>) {
    // Kafka answers `aborted_transactions` as null for read_uncommitted and as a list
    // (possibly empty) for read_committed, also on errors.
    let aborted = match r.aborted_transactions {
        Some(list) => Some(
            list.into_iter()
                .map(|a| {
                    AbortedTransaction::default()
                        .with_producer_id(ProducerId(a.producer_id))
                        .with_first_offset(a.first_offset)
                })
                .collect(),
        ),
        None if read_committed => Some(vec![]),
        None => None,
    };
    let mut pd = PartitionData::default()
        .with_partition_index(t.partition)
        .with_high_watermark(r.high_watermark)
        .with_last_stable_offset(r.last_stable_offset)
        .with_log_start_offset(r.log_start_offset)
        .with_aborted_transactions(aborted)
        .with_records(Some(Default::default()));
    if let Some(e) = &r.error {
        pd.error_code = e.code();
    }
    if let Some((epoch, end)) = r.diverging_epoch {
        pd.diverging_epoch = EpochEndOffset::default()
            .with_epoch(epoch)
            .with_end_offset(end);
    }
    if let Some(id) = r.preferred_read_replica {
        pd.preferred_read_replica = BrokerId(id);
    }
    (pd, r.records)
}

#[allow(clippy::too_many_arguments)]
fn build_response(
    broker: &Broker,
    corr: i32,
    header_version: i16,
    v: i16,
    ctx: FetchContext,
    targets: &[FetchTarget],
    results: Vec<(PartitionData, Option<FileSlice>)>,
    quota: Option<FetchQuota>,
    request_throttle: i32,
    replica_id: i32,
) -> Response {
    let incremental = matches!(ctx, FetchContext::Incremental(_));
    let session_id = match ctx {
        FetchContext::Sessionless => 0,
        FetchContext::Full(id) | FetchContext::Incremental(id) => id,
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut records: Vec<Vec<Option<Region>>> = Vec::new();
    let mut sent = Vec::new();
    // Record bytes per topic, for BytesOutPerSec once the response is known to be sent.
    let mut bytes_out: Vec<(&str, u64)> = Vec::new();
    for (t, (pd, slice)) in targets.iter().zip(results) {
        if let Some(s) = &slice {
            match bytes_out.last_mut() {
                Some((topic, n)) if *topic == t.topic.as_str() => *n += s.len as u64,
                _ => bytes_out.push((t.topic.as_str(), s.len as u64)),
            }
        }
        // An incremental session leaves out unchanged partitions, but never a redirection to a
        // preferred read replica (Kafka's `CachedPartition.maybeUpdateResponseData`).
        if incremental
            && slice.is_none()
            && pd.error_code == 0
            && pd.preferred_read_replica.0 < 0
            && pd.high_watermark == t.last_hw
            && pd.log_start_offset == t.last_log_start
        {
            continue;
        }
        sent.push((
            t.topic.clone(),
            t.topic_id,
            t.partition,
            pd.high_watermark,
            pd.log_start_offset,
        ));
        let same = topics
            .last()
            .map(|x| {
                if v >= 13 {
                    x.topic_id == t.topic_id
                } else {
                    x.topic.as_str() == t.topic
                }
            })
            .unwrap_or(false);
        if !same {
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(sb(t.topic.clone())))
                    .with_topic_id(t.topic_id),
            );
            records.push(Vec::new());
        }
        if let (Some(tr), Some(rr)) = (topics.last_mut(), records.last_mut()) {
            tr.partitions.push(pd);
            rr.push(slice.map(Region));
        }
    }
    let resp = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics);
    let encoded = encode(corr, header_version, v, &resp, records);
    // Kafka's `handleFetchRequest`: the response's size is recorded against the consumer
    // byte-rate quota; over it — or over the request quota — the client gets an empty
    // response with the larger throttle time instead (its bytes are taken back out of the
    // rate, since they are not sent) and the connection is muted. The session keeps its
    // state, so the partitions not sent now are sent next time.
    let mut throttle = request_throttle;
    if let Some(q) = &quota {
        let now = broker.quotas.now_ms();
        let size = encoded.len() as f64;
        let t = broker
            .quotas
            .fetch
            .record_and_get_throttle_ms(&q.user, &q.client_id, size, now);
        throttle = throttle.max(broker.quotas.throttle(&q.conn, t));
        if throttle > 0 {
            broker
                .quotas
                .fetch
                .unrecord(&q.user, &q.client_id, size, now);
        }
    }
    if throttle > 0 {
        let empty = FetchResponse::default()
            .with_throttle_time_ms(throttle)
            .with_session_id(session_id);
        return encode(corr, header_version, v, &empty, vec![]);
    }
    if session_id != 0 {
        broker.fetch_sessions.record_sent(session_id, &sent);
    }
    // Kafka's `updateBytesOut`: a follower's fetch is replication traffic, kept apart.
    for (topic, n) in bytes_out {
        if let Some(c) = broker.replicas.topic_stats.get(topic) {
            let counter = if replica_id >= 0 {
                &c.replication_bytes_out
            } else {
                &c.bytes_out
            };
            TopicCounters::add(counter, n);
        }
    }
    encoded
}

fn encode(
    corr: i32,
    header_version: i16,
    v: i16,
    resp: &FetchResponse,
    records: Vec<Vec<Option<Region>>>,
) -> Response {
    match encode_fetch_response(corr, header_version, v, resp, records) {
        Ok(enc) => {
            let mut out = Response {
                chunks: enc.chunks,
                errors: Default::default(),
            };
            crate::response_errors::ResponseErrors::error_counts(resp, &mut out.errors);
            out
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot encode fetch response");
            let resp =
                FetchResponse::default().with_error_code(ResponseError::UnknownServerError.code());
            match encode_fetch_response::<Region>(corr, header_version, v, &resp, vec![]) {
                Ok(enc) => Response {
                    chunks: enc.chunks,
                    errors: Default::default(),
                },
                Err(_) => Response {
                    chunks: vec![],
                    errors: Default::default(),
                },
            }
        }
    }
}
