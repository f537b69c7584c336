//! Fetch: one partition or many at once (one request per leader, sent concurrently), with
//! the records decoded.

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{topic_name, Client, Target, LAST_VERSION_WITH_TOPIC_NAMES};
use crate::error::{Error, Result};
use crate::records::{decode_record_set, ConsumedRecord};
use crate::types::{FetchOptions, FetchPosition, FetchedPartition, TopicPartition};

impl Client {
    /// Fetches records of one partition starting at `offset`, waiting up to `max_wait_ms` for
    /// data; at most about `max_bytes` are returned (at least one batch, even if larger).
    pub async fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<Vec<ConsumedRecord>> {
        let opts = FetchOptions {
            max_wait_ms,
            max_bytes,
            partition_max_bytes: max_bytes,
            ..FetchOptions::default()
        };
        Ok(self
            .fetch_partition(topic, partition, offset, &opts)
            .await?
            .records)
    }

    /// Like [`Client::fetch`], but also returns the high watermark and where to fetch next.
    /// Retries after refreshing metadata when the leader moved.
    pub async fn fetch_partition(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        opts: &FetchOptions,
    ) -> Result<FetchedPartition> {
        let pos = [FetchPosition {
            topic: topic.to_owned(),
            partition,
            offset,
        }];
        let mut attempt = 0;
        loop {
            let result = match self.fetch_many(&pos, opts).await {
                Ok(results) => results
                    .into_iter()
                    .next()
                    .map(|(_, r)| r)
                    .unwrap_or_else(|| {
                        Err(Error::UnexpectedResponse {
                            addr: "broker".into(),
                            reason: format!("no fetch result for {topic}-{partition}"),
                        })
                    }),
                Err(e) => Err(e),
            };
            match result {
                Err(e) if e.is_stale_metadata() && attempt < self.config.retries => {
                    self.backoff(attempt).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Fetches several partitions at once: one Fetch request per leader, sent to all leaders
    /// concurrently. Each partition gets its own result; partitions whose metadata turned out
    /// stale are dropped from the cache, so calling again retries them at the new leader.
    ///
    /// Fails as a whole only for errors that are not about one partition.
    pub async fn fetch_many(
        &mut self,
        positions: &[FetchPosition],
        opts: &FetchOptions,
    ) -> Result<Vec<(TopicPartition, Result<FetchedPartition>)>> {
        let mut results: Vec<(TopicPartition, Result<FetchedPartition>)> = Vec::new();
        // Group by leader; partitions without a leader fail individually.
        let mut by_leader: BTreeMap<i32, Vec<&FetchPosition>> = BTreeMap::new();
        for pos in positions {
            match self.leader_for(&pos.topic, pos.partition).await {
                Ok(leader) => by_leader.entry(leader).or_default().push(pos),
                Err(e)
                    if matches!(
                        e,
                        Error::UnknownTopic { .. }
                            | Error::UnknownPartition { .. }
                            | Error::LeaderNotAvailable { .. }
                            | Error::UnknownBroker { .. }
                    ) =>
                {
                    results.push((
                        TopicPartition::new(pos.topic.clone(), pos.partition),
                        Err(e),
                    ));
                }
                Err(e) => return Err(e),
            }
        }

        let extra_wait = Duration::from_millis(u64::try_from(opts.max_wait_ms).unwrap_or(0));
        let mut tasks = Vec::new();
        for (leader, group) in by_leader {
            let conn = match self.ensure_conn(Target::Node(leader)).await {
                Ok(_) => self.conns.remove(&leader),
                Err(e) => {
                    for pos in &group {
                        self.invalidate_topic(&pos.topic);
                    }
                    for pos in group {
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(e.clone()),
                        ));
                    }
                    continue;
                }
            };
            let Some(mut conn) = conn else { continue };
            let any_nil = group.iter().any(|p| self.topic_id(&p.topic).is_nil());
            let cap = any_nil.then_some(LAST_VERSION_WITH_TOPIC_NAMES);
            let version = match conn.negotiate(ApiKey::Fetch, cap) {
                Ok(v) => v,
                Err(e) => {
                    self.conns.insert(leader, conn);
                    return Err(e);
                }
            };
            let ids: Vec<Uuid> = group.iter().map(|p| self.topic_id(&p.topic)).collect();
            let req = build_fetch_request(&group, &ids, opts);
            let timeout = conn.options().request_timeout + extra_wait;
            let wanted: Vec<FetchPosition> = group.into_iter().cloned().collect();
            let handle = tokio::spawn(async move {
                let result = conn.send_version_timeout(&req, version, timeout).await;
                (conn, result)
            });
            tasks.push((leader, wanted, ids, handle));
        }

        for (leader, wanted, ids, handle) in tasks {
            let (conn, result) = match handle.await {
                Ok(pair) => pair,
                Err(join_err) => {
                    for pos in wanted {
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(Error::Io {
                                addr: format!("broker {leader}"),
                                reason: format!("fetch task failed: {join_err}"),
                            }),
                        ));
                    }
                    continue;
                }
            };
            let addr = conn.addr().to_owned();
            match result {
                Ok(resp) => {
                    self.conns.insert(leader, conn);
                    for (pos, result) in parse_fetch_response(resp, &wanted, &ids, &addr) {
                        if matches!(&result, Err(e) if e.is_stale_metadata()) {
                            self.invalidate_topic(&pos.topic);
                        }
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            result,
                        ));
                    }
                }
                Err(e) => {
                    if !e.is_transport() {
                        self.conns.insert(leader, conn);
                    }
                    if !e.is_transport() && !matches!(e, Error::Decode { .. }) {
                        return Err(e);
                    }
                    for pos in &wanted {
                        self.invalidate_topic(&pos.topic);
                        results.push((
                            TopicPartition::new(pos.topic.clone(), pos.partition),
                            Err(e.clone()),
                        ));
                    }
                }
            }
        }
        // Answer in the order asked.
        results.sort_by_key(|(tp, _)| {
            positions
                .iter()
                .position(|p| p.topic == tp.topic && p.partition == tp.partition)
                .unwrap_or(usize::MAX)
        });
        Ok(results)
    }
}

/// Builds the Fetch request for one leader: a full fetch, no session (KIP-227 epoch -1),
/// READ_UNCOMMITTED. Topic ids are sent for v13+, names before; both are set and the encoder
/// writes the one the version has.
fn build_fetch_request(
    group: &[&FetchPosition],
    ids: &[Uuid],
    opts: &FetchOptions,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (pos, id) in group.iter().zip(ids) {
        let mut p = FetchPartition::default();
        p.partition = pos.partition;
        p.fetch_offset = pos.offset;
        p.partition_max_bytes = opts.partition_max_bytes;
        p.log_start_offset = -1;
        p.current_leader_epoch = -1;
        match topics.iter_mut().find(|t| t.topic.0.as_str() == pos.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = FetchTopic::default();
                t.topic = topic_name(&pos.topic);
                t.topic_id = *id;
                t.partitions = vec![p];
                topics.push(t);
            }
        }
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = opts.max_wait_ms;
    req.min_bytes = opts.min_bytes;
    req.max_bytes = opts.max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics;
    req
}

/// Matches a Fetch response's partitions to the positions asked for and decodes their records.
fn parse_fetch_response<'a>(
    resp: FetchResponse,
    wanted: &'a [FetchPosition],
    ids: &[Uuid],
    addr: &str,
) -> Vec<(&'a FetchPosition, Result<FetchedPartition>)> {
    let mut out = Vec::with_capacity(wanted.len());
    let top_level = Error::from_code(
        resp.error_code,
        || format!("fetch from broker {addr}"),
        None,
    );
    for (pos, id) in wanted.iter().zip(ids) {
        if let Some(e) = &top_level {
            out.push((
                pos,
                Err(Error::from_code(
                    e.kafka_code()
                        .unwrap_or(ResponseError::UnknownServerError.code()),
                    || {
                        format!(
                            "fetch from topic '{}' partition {}",
                            pos.topic, pos.partition
                        )
                    },
                    None,
                )
                .unwrap_or_else(|| Error::UnexpectedResponse {
                    addr: addr.to_owned(),
                    reason: "fetch failed".into(),
                })),
            ));
            continue;
        }
        let data = resp
            .responses
            .iter()
            .filter(|t| t.topic.0.as_str() == pos.topic || (!id.is_nil() && t.topic_id == *id))
            .flat_map(|t| t.partitions.iter())
            .find(|p| p.partition_index == pos.partition);
        let Some(data) = data else {
            // Not in the answer (e.g. the response was already full): nothing this time.
            out.push((
                pos,
                Ok(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    next_offset: pos.offset,
                    records: Vec::new(),
                }),
            ));
            continue;
        };
        let context = || {
            format!(
                "fetch from topic '{}' partition {} at offset {}",
                pos.topic, pos.partition, pos.offset
            )
        };
        if let Some(e) = Error::from_code(data.error_code, context, None) {
            out.push((pos, Err(e)));
            continue;
        }
        let records = data.records.clone().unwrap_or_default();
        let result = decode_record_set(records.clone(), pos.partition, pos.offset)
            .map_err(|reason| Error::CorruptRecords {
                topic: pos.topic.clone(),
                partition: pos.partition,
                reason,
            })
            .and_then(|decoded| {
                if decoded.next_offset.is_none() && decoded.partial_tail_bytes > 0 {
                    return Err(Error::CorruptRecords {
                        topic: pos.topic.clone(),
                        partition: pos.partition,
                        reason: format!(
                            "the record batch at offset {} is larger than the {} bytes returned; \
                             raise the fetch size",
                            pos.offset,
                            records.len()
                        ),
                    });
                }
                Ok(FetchedPartition {
                    topic: pos.topic.clone(),
                    partition: pos.partition,
                    high_watermark: data.high_watermark,
                    last_stable_offset: data.last_stable_offset,
                    log_start_offset: data.log_start_offset,
                    next_offset: decoded.next_offset.unwrap_or(pos.offset).max(pos.offset),
                    records: decoded.records,
                })
            });
        out.push((pos, result));
    }
    out
}
