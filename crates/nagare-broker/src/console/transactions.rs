//! The console's transactions page API, `kafka-transactions.sh`'s commands sent as the
//! session's principal through the pipeline:
//! - `list` (ListTransactions with its state, producer id and duration filters, KIP-664 and
//!   KIP-994) of this broker's transaction coordinator;
//! - `describe` (DescribeTransactions at the coordinator), with each partition's open
//!   transaction as its leader reports it (DescribeProducers);
//! - `find-hanging` (transactions open on partitions this broker leads for longer than the
//!   longest transaction timeout, that their coordinator no longer covers), with the same
//!   predicates as the `nagare transactions find-hanging` command ([`nagare_client`]);
//! - `abort` of a hanging transaction on one partition: the ABORT marker of Kafka's
//!   `Admin.abortTransaction` (WriteTxnMarkers, CLUSTER_ACTION), built by the same
//!   [`nagare_client::abort_marker_request`] the `nagare transactions abort` command sends;
//! - `forceTerminateTransaction` of a transaction its coordinator still has ongoing (Kafka
//!   4.1's `kafka-transactions.sh forceTerminateTransaction`, KIP-939, which is
//!   `Admin.fenceProducers`: an InitProducerId for the transactional id, WRITE on it). The
//!   coordinator bumps the epoch, fencing the producer, and aborts the transaction.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::{
    describe_transactions_response, DescribeProducersRequest, DescribeTransactionsRequest,
    InitProducerIdRequest, ListTransactionsRequest, ProducerId, TransactionalId,
};
use nagare_client::{
    abort_marker_request, abort_spec, coordinator_covers, hanging_suspect, ProducerState,
    TransactionDescription,
};
use serde_json::{json, Value};

use super::api::{check, coordinator_of, field, metadata, sb, topic_name, ApiError, ApiResult};
use super::client::InProcess;

/// Versions the console sends (within what the broker serves).
mod v {
    /// ListTransactions v1 has the duration filter (KIP-994).
    pub const LIST_TRANSACTIONS: i16 = 1;
    pub const DESCRIBE_TRANSACTIONS: i16 = 0;
    pub const DESCRIBE_PRODUCERS: i16 = 0;
    pub const INIT_PRODUCER_ID: i16 = 5;
    pub const WRITE_TXN_MARKERS: i16 = 1;
}

/// `kafka-transactions.sh find-hanging`'s default `--max-transaction-timeout`, minutes
/// (`transaction.max.timeout.ms`' default).
pub const DEFAULT_MAX_TIMEOUT_MIN: i64 = 15;

/// The filters of `GET /api/transactions`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// States (empty: all).
    pub states: Vec<String>,
    /// Producer ids (empty: all).
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this many ms (-1: all).
    pub min_duration_ms: i64,
}

fn csv(q: &BTreeMap<String, String>, k: &str) -> Vec<String> {
    q.get(k)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses `state` (comma-separated), `producer_id` (comma-separated) and `min_duration_ms`.
pub fn parse_list(q: &BTreeMap<String, String>) -> Result<ListFilter, ApiError> {
    let producer_ids = csv(q, "producer_id")
        .iter()
        .map(|p| {
            p.parse::<i64>()
                .map_err(|_| ApiError::new(400, "producer_id: integers, comma-separated"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let min_duration_ms = match q.get("min_duration_ms").map(|s| s.trim()) {
        None | Some("") => -1,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|d| *d >= 0)
            .ok_or_else(|| ApiError::new(400, "min_duration_ms: a non-negative integer"))?,
    };
    Ok(ListFilter {
        states: csv(q, "state"),
        producer_ids,
        min_duration_ms,
    })
}

/// `GET /api/transactions?state=&producer_id=&min_duration_ms=`: ListTransactions of this
/// broker's coordinator (Kafka's tool asks every broker; the console speaks to its own).
pub async fn list(c: &InProcess, f: &ListFilter) -> ApiResult {
    let req = ListTransactionsRequest::default()
        .with_state_filters(f.states.iter().map(|s| sb(s)).collect())
        .with_producer_id_filters(f.producer_ids.iter().map(|p| ProducerId(*p)).collect())
        .with_duration_filter(f.min_duration_ms);
    let resp = c.ask(&req, v::LIST_TRANSACTIONS).await?;
    check(resp.error_code, "ListTransactions", None)?;
    let mut out: Vec<Value> = resp
        .transaction_states
        .iter()
        .map(|t| {
            json!({"transactional_id": t.transactional_id.0.to_string(),
                "producer_id": t.producer_id.0, "state": t.transaction_state.to_string()})
        })
        .collect();
    out.sort_by(|a, b| {
        a["transactional_id"]
            .as_str()
            .cmp(&b["transactional_id"].as_str())
    });
    Ok(json!({
        "broker": c.broker.config.node_id,
        "transactions": out,
        "unknown_states": resp.unknown_state_filters.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    }))
}

/// DescribeTransactions of `id` at this broker (which must be its coordinator).
async fn describe_raw(
    c: &InProcess,
    id: &str,
) -> Result<describe_transactions_response::TransactionState, ApiError> {
    let resp = c
        .ask(
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(sb(id))]),
            v::DESCRIBE_TRANSACTIONS,
        )
        .await?;
    let t = resp
        .transaction_states
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(502, "DescribeTransactions answered nothing"))?;
    check(t.error_code, &format!("transactional id {id}"), None)?;
    Ok(t)
}

fn description(
    node: i32,
    id: &str,
    t: &describe_transactions_response::TransactionState,
) -> TransactionDescription {
    TransactionDescription {
        coordinator: node,
        transactional_id: id.to_string(),
        state: t.transaction_state.to_string(),
        timeout_ms: t.transaction_timeout_ms,
        start_time_ms: t.transaction_start_time_ms,
        producer_id: t.producer_id.0,
        producer_epoch: t.producer_epoch,
        partitions: t
            .topics
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
            .collect(),
    }
}

/// The active producers of `topic`'s `partitions` at this broker, by partition; a partition
/// this broker does not lead (or that the principal may not describe) maps to its error.
async fn producers(
    c: &InProcess,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, Result<Vec<ProducerState>, String>>, ApiError> {
    let resp = c
        .ask(
            &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions.to_vec())]),
            v::DESCRIBE_PRODUCERS,
        )
        .await?;
    let mut out = BTreeMap::new();
    for p in resp.topics.into_iter().flat_map(|t| t.partitions) {
        let v = if p.error_code == 0 {
            Ok(p.active_producers
                .into_iter()
                .map(ProducerState::from)
                .collect())
        } else {
            Err(super::format::error_name(p.error_code))
        };
        out.insert(p.partition_index, v);
    }
    Ok(out)
}

fn description_json(d: &TransactionDescription, now: i64) -> Value {
    // The coordinator keeps the last transaction's start time after it completes; a
    // duration is only meaningful while one is open.
    let open = matches!(
        d.state.as_str(),
        "Ongoing" | "PrepareCommit" | "PrepareAbort"
    );
    json!({
        "transactional_id": d.transactional_id,
        "coordinator": d.coordinator,
        "state": d.state,
        "producer_id": d.producer_id,
        "producer_epoch": d.producer_epoch,
        "timeout_ms": d.timeout_ms,
        "start_time_ms": (d.start_time_ms >= 0).then_some(d.start_time_ms),
        "duration_ms": (open && d.start_time_ms >= 0).then(|| (now - d.start_time_ms).max(0)),
    })
}

/// `GET /api/transactions/{id}`: DescribeTransactions at the coordinator (this broker), and
/// for each partition of the transaction what its leader reports of the producer's open
/// transaction there (start offset, coordinator epoch) when this broker leads it.
pub async fn describe(c: &InProcess, id: &str) -> ApiResult {
    coordinator_of(c, 1, id, "transactional id").await?;
    let raw = describe_raw(c, id).await?;
    let node = c.broker.config.node_id;
    let d = description(node, id, &raw);
    let now = crate::replica_manager::now_ms();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &d.partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    let mut partitions = Vec::new();
    for (topic, parts) in &by_topic {
        let ps = producers(c, topic, parts).await?;
        for p in parts {
            let (open, error) = match ps.get(p) {
                Some(Ok(list)) => (
                    list.iter()
                        .find(|s| s.producer_id == d.producer_id && s.current_txn_start_offset >= 0)
                        .map(|s| {
                            json!({"start_offset": s.current_txn_start_offset,
                                "producer_epoch": s.producer_epoch,
                                "coordinator_epoch": s.coordinator_epoch,
                                "last_timestamp": s.last_timestamp})
                        }),
                    None,
                ),
                Some(Err(e)) => (None, Some(e.clone())),
                None => (None, Some("no answer".to_string())),
            };
            partitions.push(json!({"topic": topic, "partition": p, "open": open, "error": error}));
        }
    }
    let mut out = description_json(&d, now);
    out["partitions"] = Value::Array(partitions);
    Ok(out)
}

/// `POST /api/transactions/{id}/abort`: Kafka's `forceTerminateTransaction` of an ongoing
/// transaction (see the module docs): InitProducerId for `id` with the transaction's own
/// timeout, so nothing but the epoch changes. The coordinator answers
/// CONCURRENT_TRANSACTIONS while it aborts; the call then waits (5 s at most) for the
/// abort to complete and answers the transaction's state.
pub async fn force_terminate(c: &InProcess, id: &str) -> ApiResult {
    coordinator_of(c, 1, id, "transactional id").await?;
    let before = describe_raw(c, id).await?;
    let state = before.transaction_state.to_string();
    if !matches!(state.as_str(), "Ongoing" | "PrepareAbort" | "PrepareCommit") {
        return Err(ApiError {
            status: 409,
            message: format!("transactional id {id} is {state}: no transaction to abort"),
            code: Some("INVALID_TXN_STATE".into()),
        });
    }
    let req = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(sb(id))))
        .with_transaction_timeout_ms(before.transaction_timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = c.ask(&req, v::INIT_PRODUCER_ID).await?;
    // CONCURRENT_TRANSACTIONS: the coordinator is aborting the fenced epoch's transaction
    // (the answer a fencing InitProducerId gets first, Kafka's `TransactionCoordinator`).
    if resp.error_code != 51 {
        check(resp.error_code, &format!("aborting {id}"), None)?;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let after = loop {
        let t = describe_raw(c, id).await?;
        let s = t.transaction_state.to_string();
        if !matches!(s.as_str(), "Ongoing" | "PrepareAbort" | "PrepareCommit")
            || std::time::Instant::now() >= deadline
        {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let d = description(c.broker.config.node_id, id, &after);
    tracing::info!(transactional_id = id, principal = %c.conn.principal(), state = %d.state, "console: transaction force-terminated");
    Ok(json!({"aborted": id, "previous_state": state,
        "transaction": description_json(&d, crate::replica_manager::now_ms())}))
}

/// `GET /api/hanging?topic=&partition=&max_timeout_min=`: `kafka-transactions.sh
/// find-hanging` over the partitions this broker leads (of `topic`, one `partition` of it,
/// or all): open transactions whose last write is older than `max_timeout_min` (default 15)
/// that the coordinator does not cover. The console sees only this broker's coordinator,
/// so on a cluster of several brokers a suspect whose producer id this coordinator does not
/// know is reported with `verdict: "coordinator elsewhere?"` rather than as hanging.
pub async fn find_hanging(c: &InProcess, q: &BTreeMap<String, String>) -> ApiResult {
    let max_min = match q.get("max_timeout_min").map(|s| s.trim()) {
        None | Some("") => DEFAULT_MAX_TIMEOUT_MIN,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|m| *m >= 0)
            .ok_or_else(|| ApiError::new(400, "max_timeout_min: a non-negative integer"))?,
    };
    let topic = q.get("topic").map(|s| s.trim()).filter(|s| !s.is_empty());
    let partition = match q
        .get("partition")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(p) => Some(
            p.parse::<i32>()
                .map_err(|_| ApiError::new(400, "partition: an integer"))?,
        ),
    };
    let md = metadata(c, topic.map(|t| vec![t]).as_deref()).await?;
    let me = c.broker.config.node_id;
    let mut led: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in md.topics.iter().filter(|t| t.error_code == 0) {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for p in &t.partitions {
            if p.leader_id.0 == me && partition.is_none_or(|q| q == p.partition_index) {
                led.entry(name.clone()).or_default().push(p.partition_index);
            }
        }
    }
    if let Some(t) = topic {
        if let Some(mt) = md.topics.first().filter(|mt| mt.error_code != 0) {
            check(mt.error_code, &format!("topic {t}"), None)?;
        }
    }
    let now = crate::replica_manager::now_ms();
    let max_ms = max_min.saturating_mul(60_000);
    let mut suspects: Vec<(String, i32, ProducerState)> = Vec::new();
    let mut checked = 0usize;
    for (t, parts) in &led {
        for (p, r) in producers(c, t, parts).await? {
            let Ok(list) = r else { continue };
            checked += 1;
            for s in list {
                if hanging_suspect(&s, now, max_ms) {
                    suspects.push((t.clone(), p, s));
                }
            }
        }
    }
    // What this broker's coordinator knows of the suspects' producer ids.
    let pids: BTreeSet<i64> = suspects.iter().map(|(_, _, s)| s.producer_id).collect();
    let mut known: BTreeMap<i64, Vec<TransactionDescription>> = BTreeMap::new();
    if !pids.is_empty() {
        let listed = c
            .ask(
                &ListTransactionsRequest::default()
                    .with_producer_id_filters(pids.iter().map(|p| ProducerId(*p)).collect())
                    .with_duration_filter(-1),
                v::LIST_TRANSACTIONS,
            )
            .await?;
        check(listed.error_code, "ListTransactions", None)?;
        for t in &listed.transaction_states {
            let id = t.transactional_id.0.to_string();
            if let Ok(raw) = describe_raw(c, &id).await {
                known
                    .entry(t.producer_id.0)
                    .or_default()
                    .push(description(me, &id, &raw));
            }
        }
    }
    let several_brokers = c.broker.image().brokers.len() > 1;
    let mut rows = Vec::new();
    for (t, p, s) in suspects {
        let ds = known.get(&s.producer_id);
        if ds.is_some_and(|ds| {
            ds.iter()
                .any(|d| coordinator_covers(d, &t, p, s.producer_epoch))
        }) {
            continue;
        }
        let verdict = if ds.is_none() && several_brokers {
            "coordinator elsewhere?"
        } else {
            "hanging"
        };
        rows.push(json!({
            "topic": t, "partition": p, "producer_id": s.producer_id,
            "producer_epoch": s.producer_epoch, "coordinator_epoch": s.coordinator_epoch,
            "start_offset": s.current_txn_start_offset, "last_timestamp": s.last_timestamp,
            "duration_min": (now - s.last_timestamp) / 60_000, "verdict": verdict,
        }));
    }
    Ok(
        json!({"broker": me, "partitions_checked": checked, "max_timeout_min": max_min,
        "hanging": rows}),
    )
}

/// `POST /api/hanging/abort` `{topic, partition, start_offset}` (or `producer_id`,
/// `producer_epoch`, `coordinator_epoch` instead of `start_offset`): `kafka-transactions.sh
/// abort`, an ABORT marker for one partition this broker leads.
pub async fn abort_partition(c: &InProcess, body: &Value) -> ApiResult {
    let topic = field(body, "topic")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::new(400, "topic: a non-empty string"))?;
    let int = |k: &str| field(body, k).and_then(|v| v.as_i64());
    let partition = int("partition")
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| ApiError::new(400, "partition: an integer"))?;
    let (pid, epoch, coordinator_epoch) = match (
        int("start_offset"),
        int("producer_id"),
        int("producer_epoch"),
        int("coordinator_epoch"),
    ) {
        (Some(offset), _, _, _) => {
            let ps = producers(c, topic, &[partition]).await?;
            let list = match ps.get(&partition) {
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    return Err(ApiError {
                        status: if e.ends_with("AUTHORIZATION_FAILED") { 403 } else { 502 },
                        message: format!("describing the producers of {topic}-{partition}: {e}"),
                        code: Some(e.clone()),
                    })
                }
                None => return Err(ApiError::new(502, "DescribeProducers answered nothing")),
            };
            let p = list
                .iter()
                .find(|p| p.current_txn_start_offset == offset)
                .ok_or_else(|| {
                    ApiError::new(
                        404,
                        format!("no open transaction on {topic}-{partition} starts at offset {offset}"),
                    )
                })?;
            abort_spec(p).ok_or_else(|| {
                ApiError::new(502, format!("producer epoch {} out of range", p.producer_epoch))
            })?
        }
        (None, Some(pid), Some(epoch), Some(ce)) => (
            pid,
            i16::try_from(epoch).map_err(|_| ApiError::new(400, "producer_epoch: out of range"))?,
            i32::try_from(ce).map_err(|_| ApiError::new(400, "coordinator_epoch: out of range"))?,
        ),
        _ => {
            return Err(ApiError::new(
                400,
                "name the transaction by start_offset, or by producer_id, producer_epoch and coordinator_epoch",
            ))
        }
    };
    let req = abort_marker_request(topic, partition, pid, epoch, coordinator_epoch);
    let resp = c.ask(&req, v::WRITE_TXN_MARKERS).await?;
    let code = resp
        .markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .map(|p| p.error_code)
        .ok_or_else(|| ApiError::new(502, "WriteTxnMarkers answered nothing for the partition"))?;
    check(
        code,
        &format!("aborting the transaction of producer {pid} on {topic}-{partition}"),
        None,
    )?;
    tracing::info!(topic, partition, producer_id = pid, principal = %c.conn.principal(), "console: hanging transaction aborted");
    Ok(
        json!({"topic": topic, "partition": partition, "producer_id": pid,
        "producer_epoch": epoch, "coordinator_epoch": coordinator_epoch}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn list_filters_parse_as_the_tool_takes_them() {
        assert_eq!(
            parse_list(&q(&[])).expect("empty"),
            ListFilter {
                states: vec![],
                producer_ids: vec![],
                min_duration_ms: -1
            }
        );
        let f = parse_list(&q(&[
            ("state", "Ongoing, PrepareAbort"),
            ("producer_id", "7,9"),
            ("min_duration_ms", "60000"),
        ]))
        .expect("filters");
        assert_eq!(f.states, vec!["Ongoing", "PrepareAbort"]);
        assert_eq!(f.producer_ids, vec![7, 9]);
        assert_eq!(f.min_duration_ms, 60_000);
        for bad in [q(&[("producer_id", "x")]), q(&[("min_duration_ms", "-5")])] {
            assert_eq!(parse_list(&bad).map_err(|e| e.status), Err(400));
        }
    }
}
