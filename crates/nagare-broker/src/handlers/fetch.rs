//! Fetch (key 1): reads whole batches (the one containing the fetch offset first), bounded
//! by the high watermark, `max_bytes` and per-partition limits (KIP-74: at least one batch),
//! waits in the delayed-fetch purgatory for `min_bytes` or `max_wait_ms`, supports fetch
//! sessions (KIP-227), and hands record sets to the connection as file regions for
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
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{
    EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};

use nagare_protocol::fetch::encode_fetch_response;
use nagare_storage::FileSlice;

use super::HandlerResult;
use super::{sb, storage_error_code, Request};
use crate::fetch_session::{FetchContext, FetchTarget};
use crate::network::{Region, Reply, Response};
use crate::replica_manager::Partition;
use crate::Broker;

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
    let max_wait = Duration::from_millis(r.max_wait_ms.max(0) as u64);
    let min_bytes = r.min_bytes.max(0) as usize;
    let max_bytes = r.max_bytes.min(broker.config.fetch_max_bytes).max(0) as usize;
    let read_committed = r.isolation_level == 1;
    let replica_id = if v >= 15 {
        r.replica_state.replica_id.0
    } else {
        r.replica_id.0
    };
    // Kafka's `clientMetadata`: present from v11 on (possibly with an empty rack).
    let client = (v >= 11 && replica_id < 0).then(|| r.rack_id.to_string());
    Ok(Reply::Later(Box::pin(async move {
        let deadline = Instant::now() + max_wait;
        let mut appended = broker.replicas.subscribe_appends();
        let mut results;
        loop {
            appended.borrow_and_update();
            results = read_all(
                &broker,
                &targets,
                max_bytes,
                read_committed,
                replica_id,
                client.as_deref(),
            );
            let bytes: usize = results
                .iter()
                .map(|(_, s)| s.as_ref().map(|s| s.len).unwrap_or(0))
                .sum();
            // A redirection to a preferred read replica or a diverging epoch is answered at
            // once (Kafka's `anyPreferredReadReplica` / `hasDivergingEpoch`), like an error.
            let any_error = results.iter().any(|(p, _)| {
                p.error_code != 0 || p.preferred_read_replica.0 >= 0 || p.diverging_epoch.epoch >= 0
            });
            let now = Instant::now();
            if bytes >= min_bytes.max(1) || any_error || now >= deadline {
                break;
            }
            if tokio::time::timeout(deadline - now, appended.changed())
                .await
                .is_err()
            {
                results = read_all(
                    &broker,
                    &targets,
                    max_bytes,
                    read_committed,
                    replica_id,
                    client.as_deref(),
                );
                break;
            }
        }
        build_response(&broker, corr, header_version, v, ctx, &targets, results)
    })))
}

fn read_all(
    broker: &Broker,
    targets: &[FetchTarget],
    max_bytes: usize,
    read_committed: bool,
    replica_id: i32,
    client_rack: Option<&str>,
) -> Vec<(PartitionData, Option<FileSlice>)> {
    let mut remaining = max_bytes;
    let mut any_data = false;
    let now = crate::replica_manager::now_ms();
    let mut hw_moved = false;
    let out = targets
        .iter()
        .map(|t| {
            let mut pd = PartitionData::default()
                .with_partition_index(t.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1)
                .with_records(Some(Default::default()));
            if read_committed {
                pd.aborted_transactions = Some(vec![]);
            }
            if t.topic.is_empty() {
                return (pd.with_error_code(100), None); // UNKNOWN_TOPIC_ID
            }
            // Followers fetch from leaders only; consumers with client metadata (v11+) may
            // read from any replica (KIP-392).
            let p = match broker.replicas.readable_partition(
                &t.topic,
                t.partition,
                t.current_leader_epoch,
                client_rack.is_none(),
            ) {
                Ok(p) => p,
                Err(code) => return (pd.with_error_code(code), None),
            };
            let is_leader = p.is_leader();
            if replica_id < 0 && !is_leader {
                p.note_follower_read();
            }
            // KIP-320: a follower whose last fetched epoch ends earlier on the leader (or is
            // unknown below a later one) has a divergent tail. It gets the leader's end of that
            // epoch instead of records and truncates; its fetch offset is not a log end the
            // leader can count (Kafka's `Partition.fetchRecords`).
            if replica_id >= 0 {
                if let Some((epoch, end)) = p.diverging_epoch(t.last_fetched_epoch, t.fetch_offset) {
                    let pd = pd
                        .with_high_watermark(p.high_watermark())
                        .with_last_stable_offset(p.high_watermark())
                        .with_log_start_offset(p.log.log_start_offset())
                        .with_diverging_epoch(
                            EpochEndOffset::default().with_epoch(epoch).with_end_offset(end),
                        );
                    return (pd, None);
                }
            }
            // A follower's fetch offset is its log end: update its state on the leader first,
            // so the high watermark in the answer already counts it.
            let (hw, max_offset) = if replica_id >= 0 {
                match p.follower_fetch(replica_id, t.fetch_offset, now) {
                    Ok((hw, moved, proposal)) => {
                        hw_moved |= moved;
                        if let Some(proposal) = proposal {
                            broker.replicas.propose_isr(p.clone(), proposal);
                        }
                        (hw, p.log.log_end_offset())
                    }
                    Err(code) => return (pd.with_error_code(code), None),
                }
            } else {
                let hw = p.high_watermark();
                (hw, hw)
            };
            let log_start = p.log.log_start_offset();
            pd = pd
                .with_high_watermark(hw)
                .with_last_stable_offset(hw)
                .with_log_start_offset(log_start);
            if let (Some(rack), true) = (client_rack, is_leader) {
                if let Some(id) = preferred_read_replica(broker, &p, rack, t.fetch_offset, now) {
                    // The consumer fetches from `id` from now on; no records from here.
                    return (pd.with_preferred_read_replica(BrokerId(id)), None);
                }
            }
            if t.fetch_offset >= max_offset && t.fetch_offset <= p.log.log_end_offset() {
                return (pd, None);
            }
            let limit = (t.max_bytes.max(0) as usize).min(remaining);
            match p.log.read(t.fetch_offset, limit, !any_data, max_offset) {
                Ok(data) => {
                    let slice = data.slice.filter(|s| s.len > 0);
                    if let Some(s) = &slice {
                        any_data = true;
                        remaining = remaining.saturating_sub(s.len);
                    }
                    (pd, slice)
                }
                Err(e) => {
                    let code = storage_error_code(&e);
                    if code != 1 {
                        tracing::warn!(tp = %p.tp, offset = t.fetch_offset, error = %e, "fetch read failed");
                    }
                    (pd.with_error_code(code), None)
                }
            }
        })
        .collect::<Vec<_>>();
    if hw_moved {
        // Consumers waiting in the delayed-fetch purgatory may now read more.
        broker.replicas.notify_appended();
    }
    out
}

/// The leader's choice of a read replica for a consumer in `rack` (KIP-392), if the
/// rack-aware selector is configured and picks a follower.
fn preferred_read_replica(
    broker: &Broker,
    p: &Partition,
    rack: &str,
    fetch_offset: i64,
    now_ms: i64,
) -> Option<i32> {
    if !broker.config.replication.rack_aware_selector || rack.is_empty() {
        return None;
    }
    let image = broker.image();
    let chosen =
        p.preferred_read_replica(broker.config.node_id, rack, fetch_offset, now_ms, |id| {
            image
                .brokers
                .get(&id)
                .filter(|b| !b.fenced)
                .and_then(|b| b.rack.clone())
        })?;
    tracing::debug!(tp = %p.tp, rack, replica = chosen, "preferred read replica");
    Some(chosen)
}

fn build_response(
    broker: &Broker,
    corr: i32,
    header_version: i16,
    v: i16,
    ctx: FetchContext,
    targets: &[FetchTarget],
    results: Vec<(PartitionData, Option<FileSlice>)>,
) -> Response {
    let incremental = matches!(ctx, FetchContext::Incremental(_));
    let session_id = match ctx {
        FetchContext::Sessionless => 0,
        FetchContext::Full(id) | FetchContext::Incremental(id) => id,
    };
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut records: Vec<Vec<Option<Region>>> = Vec::new();
    let mut sent = Vec::new();
    for (t, (pd, slice)) in targets.iter().zip(results) {
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
    if session_id != 0 {
        broker.fetch_sessions.record_sent(session_id, &sent);
    }
    let resp = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics);
    encode(corr, header_version, v, &resp, records)
}

fn encode(
    corr: i32,
    header_version: i16,
    v: i16,
    resp: &FetchResponse,
    records: Vec<Vec<Option<Region>>>,
) -> Response {
    match encode_fetch_response(corr, header_version, v, resp, records) {
        Ok(enc) => Response { chunks: enc.chunks },
        Err(e) => {
            tracing::error!(error = %e, "cannot encode fetch response");
            let resp = FetchResponse::default().with_error_code(-1);
            match encode_fetch_response::<Region>(corr, header_version, v, &resp, vec![]) {
                Ok(enc) => Response { chunks: enc.chunks },
                Err(_) => Response { chunks: vec![] },
            }
        }
    }
}
