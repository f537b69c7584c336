//! Followers fetching from leaders (Kafka's `ReplicaFetcherManager` / `ReplicaFetcherThread`)
//! and the leader's ISR upkeep.
//!
//! - [`run_fetchers`] keeps one fetcher task per source broker (a leader of partitions this
//!   broker follows, from the metadata image). Each fetcher batches all its partitions into
//!   one Fetch with our node id as replica id, appends what comes back with
//!   `ReplicaManager::append_as_follower` and takes the leader's high watermark.
//! - Before fetching in a new leader epoch, a follower asks the leader OffsetForLeaderEpoch
//!   for the end of its own latest epoch and truncates a divergent tail (KIP-101, KIP-279) —
//!   never by the high watermark alone.
//! - [`run_isr_upkeep`] checks the ISRs this broker leads every half
//!   `replica.lag.time.max.ms` and sends the proposed changes (shrinks from the check,
//!   expansions from follower fetches) to the controller with AlterPartition.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use nagare_client::{Connection, ConnectionOptions};
use nagare_storage::{StorageError, TopicPartition};
use tokio::task::JoinSet;

use crate::replica_manager::partition_state::IsrProposal;
use crate::replica_manager::{alter_partition_sender, now_ms, Partition, ReplicaError};
use crate::Broker;

/// Nagare's tagged field (Fetch v12+, per partition) by which a follower reports its fsynced
/// log end apart from its fetch offset: it may then fetch the next data while the last
/// fetch's is being fsynced, and the leader counts only the durable end toward the high
/// watermark (`Partition::follower_fetch_durable`). A tag number far above Kafka's (which
/// count up from 0), so a Kafka broker ignores it as an unknown tagged field.
pub const DURABLE_OFFSET_TAG: i32 = 0x4e_4744;

/// The durable offset a follower's fetch partition carries ([`DURABLE_OFFSET_TAG`], eight
/// bytes big-endian), if any.
pub fn durable_offset_of(p: &FetchPartition) -> Option<i64> {
    let b = p.unknown_tagged_fields.get(&DURABLE_OFFSET_TAG)?;
    let bytes: [u8; 8] = b.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// Keeps a fetcher running for every broker this one follows partitions from. Runs until
/// the process ends.
pub async fn run_fetchers(broker: Arc<Broker>) {
    let mut roles = broker.replicas.subscribe_roles();
    let mut fetchers: HashMap<i32, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        roles.borrow_and_update();
        fetchers.retain(|_, h| !h.is_finished());
        for source in broker.replicas.fetch_sources() {
            fetchers.entry(source).or_insert_with(|| {
                tracing::info!(source, "starting replica fetcher");
                tokio::spawn(fetcher(broker.clone(), source))
            });
        }
        if roles.changed().await.is_err() {
            return;
        }
    }
}

/// Whether `p` is followed from `source` in the epoch `epoch`.
fn still_following(p: &Partition, source: i32, epoch: i32) -> bool {
    p.leader.load(std::sync::atomic::Ordering::Acquire) == source && p.epoch() == epoch
}

/// One source broker's fetcher: lives as long as the process; idles while this broker
/// follows nothing from `source`.
async fn fetcher(broker: Arc<Broker>, source: i32) {
    let cfg = broker.config.replication.clone();
    let backoff = Duration::from_millis(cfg.fetch_backoff_ms.max(10));
    let mut roles = broker.replicas.subscribe_roles();
    let mut conn: Option<Connection> = None;
    // The fsyncs of fetched data still running (pipelined rounds, see `fetch_once`).
    let mut inflight: JoinSet<Result<(), String>> = JoinSet::new();
    loop {
        roles.borrow_and_update();
        let parts = broker.replicas.followed_from(source);
        if parts.is_empty() {
            conn = None;
            let _ = tokio::time::timeout(Duration::from_secs(1), roles.changed()).await;
            continue;
        }
        if conn.as_ref().is_none_or(|c| c.is_broken()) {
            conn = connect(&broker, source, cfg.socket_timeout_ms).await;
            if conn.is_none() {
                let _ = tokio::time::timeout(backoff, roles.changed()).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        // KIP-320: a leader answering Fetch v12+ checks each fetch's last fetched epoch and
        // answers a divergence itself, so a new leader epoch needs no OffsetForLeaderEpoch
        // round trip first (Kafka's truncation on fetch, `isTruncationOnFetchSupported`).
        if c.negotiate(ApiKey::Fetch, Some(17)).is_ok_and(|v| v >= 12) {
            for p in parts.iter().filter(|p| p.needs_truncation_check()) {
                p.mark_truncation_checked(p.epoch());
            }
        }
        let (to_check, ready): (Vec<_>, Vec<_>) =
            parts.into_iter().partition(|p| p.needs_truncation_check());
        if !to_check.is_empty() {
            if let Err(e) = truncate_divergent(&broker, c, source, &to_check).await {
                tracing::debug!(source, error = %e, "OffsetForLeaderEpoch failed");
                conn = None;
                tokio::time::sleep(backoff).await;
            }
            continue;
        }
        match fetch_once(&broker, c, source, &ready, &mut inflight).await {
            Ok(true) => {}
            Ok(false) => {
                // Errors (stale epochs while the metadata catches up): do not spin.
                let _ = tokio::time::timeout(backoff, roles.changed()).await;
            }
            Err(e) => {
                tracing::debug!(source, error = %e, "replica fetch failed");
                conn = None;
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

async fn connect(broker: &Broker, source: i32, timeout_ms: u64) -> Option<Connection> {
    let image = broker.image();
    let reg = image.brokers.get(&source)?;
    let ep = broker.client_endpoint(reg)?;
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let addr = format!("{host}:{}", ep.port);
    let opts = ConnectionOptions {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(timeout_ms.max(1000)),
        tls: broker.inter_broker_tls.get().cloned(),
        sasl: broker.inter_broker_sasl.get().cloned(),
        ..Default::default()
    };
    let client_id = format!("nagare-replica-fetcher-{}", broker.config.node_id);
    match Connection::connect_with(&addr, &client_id, opts).await {
        Ok(mut c) => {
            broker.peers.connected(source, reg.epoch, &mut c);
            Some(c)
        }
        Err(e) => {
            broker.peers.note_error(&image, source, &e);
            tracing::debug!(source, %addr, error = %e, "cannot connect to the leader");
            None
        }
    }
}

/// KIP-101/279: asks the leader where our latest epoch ends on its side and truncates what
/// we have beyond it; the partition is then marked checked for the epoch it was asked in.
async fn truncate_divergent(
    broker: &Broker,
    conn: &mut Connection,
    source: i32,
    parts: &[Arc<Partition>],
) -> Result<(), String> {
    let v = conn
        .negotiate(ApiKey::OffsetForLeaderEpoch, None)
        .map_err(|e| e.to_string())?;
    let mut asked = Vec::new();
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for p in parts {
        let epoch = p.epoch();
        let Some(ours) = p.latest_epoch() else {
            // Nothing written under any epoch: nothing can diverge.
            p.mark_truncation_checked(epoch);
            continue;
        };
        asked.push((p.clone(), epoch));
        let part = OffsetForLeaderPartition::default()
            .with_partition(p.tp.partition)
            .with_current_leader_epoch(epoch)
            .with_leader_epoch(ours);
        match topics.iter_mut().find(|t| t.topic.as_str() == p.tp.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(p.tp.topic.clone())))
                    .with_partitions(vec![part]),
            ),
        }
    }
    if asked.is_empty() {
        return Ok(());
    }
    let mut req = OffsetForLeaderEpochRequest::default().with_topics(topics);
    if v >= 3 {
        req = req.with_replica_id(BrokerId(broker.config.node_id));
    }
    let resp = conn
        .send_version(&req, v)
        .await
        .map_err(|e| e.to_string())?;
    for t in &resp.topics {
        for r in &t.partitions {
            let Some((p, epoch)) = asked
                .iter()
                .find(|(p, _)| p.tp.topic == t.topic.as_str() && p.tp.partition == r.partition)
            else {
                continue;
            };
            if !still_following(p, source, *epoch) {
                continue;
            }
            if r.error_code != 0 {
                tracing::debug!(tp = %p.tp, code = r.error_code, "OffsetForLeaderEpoch refused");
                continue;
            }
            match truncate_to_leader_epoch(p, r.leader_epoch, r.end_offset) {
                // Complete: fetch in this epoch. Otherwise ask again with our new latest epoch.
                Ok(true) => p.mark_truncation_checked(*epoch),
                Ok(false) => {}
                Err(e) => tracing::error!(tp = %p.tp, error = %e, "truncation failed"),
            }
        }
    }
    Ok(())
}

/// Truncates the divergent tail after the leader said its `leader_epoch` ends at
/// `leader_end` (an OffsetForLeaderEpoch answer or a Fetch's diverging epoch), as Kafka's
/// `getOffsetTruncationState`. Returns whether the truncation is complete; if not (we do not
/// have the leader's epoch), the log was cut to the end of our largest epoch below it and
/// the leader must be asked again with that one.
fn truncate_to_leader_epoch(
    p: &Partition,
    leader_epoch: i32,
    leader_end: i64,
) -> Result<bool, StorageError> {
    let leo = p.log_end_offset();
    let (target, complete) = if leader_end < 0 {
        // The leader has no epoch at or below ours: everything above the high watermark may
        // have diverged (Kafka truncates to the initial fetch offset, the high watermark).
        (p.high_watermark(), true)
    } else {
        let (mine, my_end) = p.end_offset_for_epoch(leader_epoch);
        if mine < 0 || my_end < 0 {
            // No epoch of ours at or below the leader's: its end is the bound (KIP-279).
            (leader_end, true)
        } else if mine != leader_epoch {
            // We never had the leader's epoch: what we wrote after our largest earlier one
            // may differ from the leader's data; cut there and ask again.
            (my_end, false)
        } else {
            // KIP-279: the leader's end of the epoch, capped by our end of that epoch.
            (leader_end.min(my_end), true)
        }
    };
    let target = target.min(leo);
    if target < leo {
        tracing::info!(tp = %p.tp, from = leo, to = target, leader_epoch, leader_end, "truncating divergent tail");
    }
    // Also when nothing is cut: an epoch we claim at the log end without data goes.
    p.truncate_to(target)?;
    Ok(complete)
}

fn note_fsync_result(source: i32, done: Result<Result<(), String>, tokio::task::JoinError>) {
    match done {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(source, error = %e, "follower fsync wait ended without the offset durable")
        }
        Err(e) => tracing::warn!(source, error = %e, "follower fsync task failed"),
    }
}

/// One Fetch for `parts`; returns whether every partition answered without error.
///
/// With Fetch v12+ the rounds are pipelined: the fetch reports each partition's fsynced log
/// end apart from its fetch offset ([`DURABLE_OFFSET_TAG`]), so the fsync of what one round
/// appended runs while the next round fetches (`inflight`); the leader counts only the
/// durable end toward the high watermark, so `acks=all` still waits for every ISR member's
/// fsync. While fsyncs run the fetch does not park at the leader, and a round that brought
/// nothing waits for them, so the next fetch reports them at once. Below v12 (no tagged
/// fields) a round waits for its fsync before the next fetch reports the log end.
async fn fetch_once(
    broker: &Broker,
    conn: &mut Connection,
    source: i32,
    parts: &[Arc<Partition>],
    inflight: &mut JoinSet<Result<(), String>>,
) -> Result<bool, String> {
    let cfg = &broker.config.replication;
    let v = conn
        .negotiate(ApiKey::Fetch, Some(17))
        .map_err(|e| e.to_string())?;
    // What is durable is read from the logs (`Partition::durable_end`), not from these
    // results: a failed fsync leaves the recovery point behind (and takes the log directory
    // offline), and a truncation makes a wait moot, so their errors are only logged.
    while let Some(done) = inflight.try_join_next() {
        note_fsync_result(source, done);
    }
    let pipelined = v >= 12;
    let fsyncs_running = !inflight.is_empty();
    let mut topics: Vec<FetchTopic> = Vec::new();
    let mut sent = Vec::with_capacity(parts.len());
    for p in parts {
        let epoch = p.epoch();
        sent.push((p.clone(), epoch));
        let mut part = FetchPartition::default()
            .with_partition(p.tp.partition)
            .with_current_leader_epoch(epoch)
            .with_fetch_offset(p.log_end_offset())
            .with_log_start_offset(p.log_start_offset())
            .with_partition_max_bytes(cfg.fetch_max_bytes);
        if v >= 12 {
            part = part.with_last_fetched_epoch(p.latest_epoch().unwrap_or(-1));
            let durable = p.durable_end();
            part.unknown_tagged_fields.insert(
                DURABLE_OFFSET_TAG,
                Bytes::copy_from_slice(&durable.to_be_bytes()),
            );
        }
        let same = |t: &FetchTopic| {
            if v >= 13 {
                t.topic_id == p.topic_id
            } else {
                t.topic.as_str() == p.tp.topic
            }
        };
        match topics.iter_mut().find(|t| same(t)) {
            Some(t) => t.partitions.push(part),
            None => {
                let t = if v >= 13 {
                    FetchTopic::default().with_topic_id(p.topic_id)
                } else {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(p.tp.topic.clone())))
                };
                topics.push(t.with_partitions(vec![part]));
            }
        }
    }
    let node = broker.config.node_id;
    let max_wait = if pipelined && fsyncs_running {
        0
    } else {
        cfg.fetch_wait_max_ms
    };
    let mut req = FetchRequest::default()
        .with_max_wait_ms(max_wait)
        .with_min_bytes(cfg.fetch_min_bytes)
        .with_max_bytes(cfg.fetch_response_max_bytes)
        .with_session_epoch(-1)
        .with_topics(topics);
    if v >= 15 {
        let epoch = broker
            .lifecycle
            .get()
            .and_then(|l| l.broker_epoch())
            .unwrap_or(-1);
        req = req.with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(node))
                .with_replica_epoch(epoch),
        );
    } else {
        req = req.with_replica_id(BrokerId(node));
    }
    let timeout = Duration::from_millis(cfg.socket_timeout_ms.max(1000))
        + Duration::from_millis(cfg.fetch_wait_max_ms.max(0) as u64);
    let resp = conn
        .send_version_timeout(&req, v, timeout)
        .await
        .map_err(|e| {
            // A closed or reset connection: the leader's process may be gone (issue 17).
            broker.peers.note_error(&broker.image(), source, &e);
            e.to_string()
        })?;
    if resp.error_code != 0 {
        return Ok(false);
    }
    let mut all_ok = true;
    // The next fetch reports this follower's log end offset to the leader, which counts it
    // toward the high watermark and so toward `acks=all`: the appended records must be fsynced
    // before then, as the leader fsyncs before it acknowledges (the "last replica standing"
    // problem of KIP-966 is closed by fsync-before-ack on every ISR member). One group-commit
    // round serves every partition of this response.
    let mut durable = Vec::new();
    let mut out_of_range = Vec::new();
    let mut moved_to_tiered = Vec::new();
    for t in &resp.responses {
        for r in &t.partitions {
            let Some((p, epoch)) = sent.iter().find(|(p, _)| {
                p.tp.partition == r.partition_index
                    && if v >= 13 {
                        p.topic_id == t.topic_id
                    } else {
                        p.tp.topic == t.topic.as_str()
                    }
            }) else {
                continue;
            };
            // The leadership changed while the fetch was in flight: drop the answer.
            if !still_following(p, source, *epoch) {
                continue;
            }
            match r.error_code {
                0 if r.diverging_epoch.epoch >= 0 => {
                    // KIP-320: our last fetched epoch ends earlier on the leader.
                    let d = &r.diverging_epoch;
                    if let Err(e) = truncate_to_leader_epoch(p, d.epoch, d.end_offset) {
                        tracing::error!(tp = %p.tp, error = %e, "truncation failed");
                        all_ok = false;
                    }
                    continue;
                }
                0 => {}
                1 => {
                    // OFFSET_OUT_OF_RANGE: the leader's answer carries no offsets (as Kafka's),
                    // so ask it for its log start and end (ListOffsets) after this response.
                    all_ok = false;
                    out_of_range.push((p.clone(), *epoch));
                    continue;
                }
                109 => {
                    // OFFSET_MOVED_TO_TIERED_STORAGE (KIP-405): start at the leader's local
                    // log start with the remote metadata's state, after this response.
                    all_ok = false;
                    moved_to_tiered.push((p.clone(), *epoch));
                    continue;
                }
                code => {
                    tracing::debug!(tp = %p.tp, code, "follower fetch refused");
                    all_ok = false;
                    continue;
                }
            }
            if let Some(records) = r.records.as_ref().filter(|b| !b.is_empty()) {
                match broker.replicas.append_as_follower(p, &records[..]) {
                    Ok(wait) => durable.push(wait),
                    Err(ReplicaError::Storage(StorageError::UnexpectedAppendOffset { .. })) => {
                        p.reset_truncation_check();
                        all_ok = false;
                        continue;
                    }
                    // A full disk is logged once per directory by the log; the fetch is
                    // retried after the backoff and resumes when space returns.
                    Err(e @ ReplicaError::Storage(StorageError::DiskFull(_))) => {
                        tracing::debug!(tp = %p.tp, error = %e, "follower append refused");
                        all_ok = false;
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(tp = %p.tp, error = %e, "follower append failed");
                        all_ok = false;
                        continue;
                    }
                }
            }
            // Consumers reading from this follower (KIP-392) parked on this partition are
            // woken when its high watermark moves.
            p.set_follower_hw(r.high_watermark);
            follow_log_start(p, r.log_start_offset);
        }
    }
    if pipelined {
        let got_records = !durable.is_empty();
        for wait in durable {
            inflight.spawn(wait);
        }
        if !got_records {
            while let Some(done) = inflight.join_next().await {
                note_fsync_result(source, done);
            }
        }
    } else {
        for wait in durable {
            wait.await?;
        }
    }
    if !out_of_range.is_empty() {
        handle_out_of_range(broker, conn, source, &out_of_range).await?;
    }
    if !moved_to_tiered.is_empty() {
        handle_moved_to_tiered(broker, conn, source, &moved_to_tiered).await?;
    }
    Ok(all_ok)
}

/// OFFSET_MOVED_TO_TIERED_STORAGE for our fetch offset (KIP-405's follower path, Kafka's
/// `ReplicaFetcherTierStateMachine.start`): asks the leader for its local log start
/// (ListOffsets -4), reads the producer state and leader epochs below it from the remote
/// metadata and restarts our log there, so we fetch only what the leader keeps locally and
/// never the remote bytes. Without a remote log manager here (tiered storage off on this
/// broker) the log restarts there without that state.
async fn handle_moved_to_tiered(
    broker: &Broker,
    conn: &mut Connection,
    source: i32,
    parts: &[(Arc<Partition>, i32)],
) -> Result<(), String> {
    let local_starts = list_offsets(broker, conn, parts, -4).await?;
    let rlm = broker.replicas.remote_log.get().cloned();
    for (p, epoch) in parts {
        if !still_following(p, source, *epoch) {
            continue;
        }
        let Some(&local_start) = local_starts.get(&p.tp) else {
            continue;
        };
        if local_start <= p.log_end_offset() {
            // In range by now: fetch again as we are.
            continue;
        }
        let start = match rlm.as_ref() {
            Some(rlm) => match rlm.follower_start(p, local_start).await {
                Ok(Some(start)) => start,
                Ok(None) => {
                    tracing::debug!(tp = %p.tp, local_start, "remote metadata does not reach the leader's local log start yet");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(tp = %p.tp, local_start, error = %e, "cannot read the remote metadata; retrying");
                    continue;
                }
            },
            None => crate::remote_log_manager::FollowerStart::default(),
        };
        if !still_following(p, source, *epoch) {
            continue;
        }
        tracing::info!(tp = %p.tp, local_start, log_end = p.log_end_offset(), producer_snapshot = start.producer_snapshot.is_some(), epochs = start.epochs.len(), "follower behind the leader's local log start: starting there with the remote log's state");
        if let Err(e) = p.start_with_remote_state(
            local_start,
            start.producer_snapshot.as_deref(),
            &start.epochs,
        ) {
            tracing::error!(tp = %p.tp, error = %e, "cannot reset the log");
        }
    }
    Ok(())
}

/// The leader's log start moved past ours (retention or DeleteRecords on the leader): delete
/// what lies below it here too (Kafka's `maybeIncrementLogStartOffset` with reason
/// `LeaderOffsetIncremented`), never past our own log end.
fn follow_log_start(p: &Partition, leader_log_start: i64) {
    match p.follow_leader_log_start(leader_log_start) {
        Ok(None) => {}
        Ok(Some(start)) => {
            tracing::debug!(tp = %p.tp, log_start = start, "follower log start follows the leader's")
        }
        Err(e) => tracing::warn!(tp = %p.tp, error = %e, "cannot advance the log start"),
    }
}

/// OFFSET_OUT_OF_RANGE for our fetch offset (Kafka's `fetchOffsetAndTruncate`): asks the leader
/// for its log end and start with ListOffsets as a replica (so "latest" is its log end, not
/// its high watermark). A leader log end below ours (it lost data, e.g. an unclean election)
/// truncates us to it; a leader log start past our log end (retention or DeleteRecords ran
/// while we were away) empties our log and restarts it there (`truncateFullyAndStartAt`).
async fn handle_out_of_range(
    broker: &Broker,
    conn: &mut Connection,
    source: i32,
    parts: &[(Arc<Partition>, i32)],
) -> Result<(), String> {
    let ends = list_offsets(broker, conn, parts, -1).await?;
    let starts = list_offsets(broker, conn, parts, -2).await?;
    for (p, epoch) in parts {
        if !still_following(p, source, *epoch) {
            continue;
        }
        let (Some(&leader_end), Some(&leader_start)) = (ends.get(&p.tp), starts.get(&p.tp)) else {
            continue;
        };
        let leo = p.log_end_offset();
        let res = if leader_end < leo {
            tracing::warn!(tp = %p.tp, leader_end, log_end = leo, "leader's log ends below ours: truncating to it");
            p.truncate_to(leader_end)
        } else if leader_start > leo {
            tracing::info!(tp = %p.tp, leader_log_start = leader_start, log_end = leo, "follower behind the leader's log start: truncating fully and starting there");
            p.truncate_fully_and_start_at(leader_start)
        } else {
            // In range by now (the leader's log moved meanwhile): fetch again as we are.
            Ok(())
        };
        if let Err(e) = res {
            tracing::error!(tp = %p.tp, error = %e, "cannot reset the log");
        }
    }
    Ok(())
}

/// ListOffsets for `timestamp` (-1 latest, -2 earliest, -4 earliest local) of `parts` with our replica id; the
/// offsets of the partitions answered without error.
async fn list_offsets(
    broker: &Broker,
    conn: &mut Connection,
    parts: &[(Arc<Partition>, i32)],
    timestamp: i64,
) -> Result<HashMap<TopicPartition, i64>, String> {
    let v = conn
        .negotiate(ApiKey::ListOffsets, Some(10))
        .map_err(|e| e.to_string())?;
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for (p, epoch) in parts {
        let part = ListOffsetsPartition::default()
            .with_partition_index(p.tp.partition)
            .with_current_leader_epoch(*epoch)
            .with_timestamp(timestamp);
        match topics.iter_mut().find(|t| t.name.as_str() == p.tp.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(p.tp.topic.clone())))
                    .with_partitions(vec![part]),
            ),
        }
    }
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(broker.config.node_id))
        .with_topics(topics);
    let resp = conn
        .send_version(&req, v)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for t in &resp.topics {
        for r in &t.partitions {
            if r.error_code != 0 {
                tracing::debug!(topic = %t.name.as_str(), partition = r.partition_index, code = r.error_code, "ListOffsets refused");
                continue;
            }
            if let Some((p, _)) = parts
                .iter()
                .find(|(p, _)| p.tp.topic == t.name.as_str() && p.tp.partition == r.partition_index)
            {
                out.insert(p.tp.clone(), r.offset);
            }
        }
    }
    Ok(out)
}

/// The leader's ISR upkeep: every half `replica.lag.time.max.ms` proposes removing lagging
/// followers, and sends every queued proposal to the controller (AlterPartition). Runs until
/// the process ends.
pub async fn run_isr_upkeep(broker: Arc<Broker>) {
    let lag = broker.config.replication.lag_time_max_ms;
    let checker = {
        let broker = broker.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_millis((lag / 2).max(10) as u64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = now_ms();
                for p in broker.replicas.all_partitions() {
                    if let Some(proposal) = p.maybe_shrink_isr(now, lag) {
                        broker.replicas.propose_isr(p, proposal);
                    }
                }
            }
        }
    };
    // One AlterPartition in flight at a time, carrying every proposal queued meanwhile (Kafka's
    // AlterPartitionManager): a broker failure shrinks the ISRs of all partitions this broker
    // leads with one controller round trip, not one per partition.
    let sender = async move {
        loop {
            let mut batch: Vec<(Arc<Partition>, IsrProposal)> = Vec::new();
            for (p, proposal) in broker.replicas.take_isr_proposals().await {
                // A later proposal of a partition replaced the earlier one in its state.
                match batch.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &p)) {
                    Some(entry) => entry.1 = proposal,
                    None => batch.push((p, proposal)),
                }
            }
            let changes: Vec<_> = batch
                .iter()
                .map(|(p, proposal)| (p.topic_id, p.tp.partition, proposal.clone()))
                .collect();
            // The committed ISR sizes before the change, to tell shrinks from expansions.
            let before: Vec<usize> = batch.iter().map(|(p, _)| p.isr().len()).collect();
            let codes = alter_partition_sender::send(&broker, &changes).await;
            let refused = codes.iter().filter(|c| **c != 0).count();
            tracing::info!(partitions = changes.len(), refused, "AlterPartition sent");
            for (((p, proposal), code), before) in batch.iter().zip(codes).zip(before) {
                if code != 0 {
                    tracing::info!(tp = %p.tp, code, isr = ?proposal.new_isr, "AlterPartition refused");
                    p.isr_proposal_failed(proposal, now_ms());
                    continue;
                }
                // Kafka marks IsrShrinksPerSec / IsrExpandsPerSec once the change is accepted.
                let counter = match proposal.new_isr.len().cmp(&before) {
                    std::cmp::Ordering::Less => &broker.replicas.isr_shrinks,
                    std::cmp::Ordering::Greater => &broker.replicas.isr_expands,
                    std::cmp::Ordering::Equal => continue,
                };
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    tokio::join!(checker, sender);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchRequest;
    use kafka_protocol::protocol::{Decodable, Encodable};

    /// The durable offset survives the wire (a tagged field of Fetch v12+) and is absent
    /// from a fetch without it; a malformed value is ignored.
    #[test]
    fn the_durable_offset_tag_round_trips() {
        let mut part = FetchPartition::default().with_fetch_offset(10);
        part.unknown_tagged_fields.insert(
            DURABLE_OFFSET_TAG,
            Bytes::copy_from_slice(&7i64.to_be_bytes()),
        );
        let req = FetchRequest::default().with_topics(vec![FetchTopic::default()
            .with_partitions(vec![part, FetchPartition::default().with_fetch_offset(3)])]);
        let mut buf = bytes::BytesMut::new();
        req.encode(&mut buf, 15).expect("encode");
        let back = FetchRequest::decode(&mut buf.freeze(), 15).expect("decode");
        let parts = &back.topics[0].partitions;
        assert_eq!(durable_offset_of(&parts[0]), Some(7));
        assert_eq!(durable_offset_of(&parts[1]), None);
        let mut bad = FetchPartition::default();
        bad.unknown_tagged_fields
            .insert(DURABLE_OFFSET_TAG, Bytes::from_static(b"short"));
        assert_eq!(durable_offset_of(&bad), None);
    }
}
