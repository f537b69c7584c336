//! The transaction marker sender (Kafka's `TransactionMarkerChannelManager`): writes the
//! COMMIT/ABORT markers of the transactions the transaction coordinator decided to the
//! leaders of their partitions, and tells the coordinator when a transaction's markers are
//! all written so that it can complete it.
//!
//! - **Grouping.** Markers pending for partitions led by the same broker go to it in one
//!   WriteTxnMarkers request (key 27), at most one request in flight per broker — as Kafka's
//!   per-broker queues drained by one sender thread.
//! - **Retries.** A partition whose leader is unknown, whose write failed with a retriable
//!   error (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS, request
//!   timeout, storage error) or whose request never got an answer is tried again after a
//!   backoff, its leader looked up again in the newest metadata. A partition whose topic is
//!   gone from the metadata is dropped (Kafka: "the partition is likely deleted").
//! - **Staleness.** A transaction whose coordinator shard moved away (or whose markers were
//!   refused with INVALID_PRODUCER_EPOCH / TRANSACTION_COORDINATOR_FENCED) is abandoned: the
//!   new coordinator asks for its markers again when it loads the shard.
//!
//! [`MarkerQueue`] is the sans-I/O core (markers in, requests out, responses in, completed
//! transactions out); [`MarkerSender`] drives it over the broker's connections.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::Notify;

use nagare_client::{Connection, ConnectionOptions};
use nagare_transaction_coordinator::{TopicPartition, TxnMarkerRequest};

use crate::replica_manager::now_ms;
use crate::Broker;

/// First pause before a partition is tried again.
pub const RETRY_BACKOFF_MS: i64 = 100;
/// Longest pause between tries of a partition.
pub const MAX_RETRY_BACKOFF_MS: i64 = 2_000;

/// Where the newest metadata says a partition lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leader {
    /// Led by this broker.
    Node(i32),
    /// The partition exists but has no leader right now.
    Unavailable,
    /// The topic or partition no longer exists.
    Gone,
}

/// One transaction's markers in a request: Kafka's `WritableTxnMarker`.
#[derive(Debug, Clone, PartialEq)]
pub struct MarkerEntry {
    /// The producer id the markers are for.
    pub producer_id: i64,
    /// Its epoch.
    pub producer_epoch: i16,
    /// COMMIT (true) or ABORT markers.
    pub commit: bool,
    /// The coordinator's epoch (the leader epoch of its `__transaction_state` partition):
    /// partition leaders refuse markers of an older coordinator.
    pub coordinator_epoch: i32,
    /// The partitions to write them to, all led by the destination.
    pub partitions: Vec<TopicPartition>,
}

/// A WriteTxnMarkers request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Identifies the request when its answer comes back.
    pub id: u64,
    /// The destination broker.
    pub broker: i32,
    /// One entry per transaction.
    pub markers: Vec<MarkerEntry>,
}

/// A transaction whose markers are all written (or whose partitions are gone): the
/// coordinator owning it is told with `TxnRequest::MarkersWritten`.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    /// The `__transaction_state` partition of the coordinator shard owning it.
    pub coordinator_partition: i32,
    /// The transactional id.
    pub transactional_id: String,
    /// The producer id the markers were written for.
    pub producer_id: i64,
    /// The producer epoch they were written with.
    pub producer_epoch: i16,
    /// Commit or abort.
    pub commit: bool,
}

#[derive(Debug)]
enum PartitionState {
    /// To be sent, not before `not_before_ms`; `attempts` sets the next backoff.
    Waiting { not_before_ms: i64, attempts: u32 },
    /// In request `id`.
    InFlight { id: u64, attempts: u32 },
}

#[derive(Debug)]
struct PendingTxn {
    /// Distinguishes this incarnation from a later request for the same transactional id.
    generation: u64,
    coordinator_partition: i32,
    coordinator_epoch: i32,
    marker: TxnMarkerRequest,
    partitions: BTreeMap<TopicPartition, PartitionState>,
}

/// The sans-I/O state of the marker sender. Every method takes the time as an argument; the
/// driver calls [`poll`](Self::poll) whenever something changed or
/// [`next_wakeup_ms`](Self::next_wakeup_ms) passed.
#[derive(Debug, Default)]
pub struct MarkerQueue {
    /// Pending transactions by transactional id (one transaction per id at a time, as the
    /// coordinator completes one before it starts the next).
    txns: HashMap<String, PendingTxn>,
    /// Requests in flight: destination broker, and which generation's partitions they carry.
    in_flight: HashMap<u64, (i32, Vec<(String, u64)>)>,
    next_id: u64,
}

impl MarkerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the markers a coordinator shard of `coordinator_partition`, loaded in leader epoch
    /// `coordinator_epoch`, asked for. The same transaction asked again (a reloaded shard)
    /// keeps what was already written and takes the new coordinator epoch; a different one
    /// for the same transactional id replaces the old, which is stale. A transaction without
    /// partitions completes at once.
    pub fn add(
        &mut self,
        coordinator_partition: i32,
        coordinator_epoch: i32,
        marker: TxnMarkerRequest,
        now_ms: i64,
    ) -> Vec<Completed> {
        if let Some(t) = self.txns.get_mut(&marker.transactional_id) {
            let same = t.marker.producer_id == marker.producer_id
                && t.marker.producer_epoch == marker.producer_epoch
                && t.marker.commit == marker.commit;
            if same {
                t.coordinator_partition = coordinator_partition;
                t.coordinator_epoch = coordinator_epoch;
                return Vec::new();
            }
        }
        self.next_id += 1;
        let partitions = marker
            .partitions
            .iter()
            .map(|tp| {
                (
                    tp.clone(),
                    PartitionState::Waiting {
                        not_before_ms: now_ms,
                        attempts: 0,
                    },
                )
            })
            .collect();
        let id = marker.transactional_id.clone();
        self.txns.insert(
            id.clone(),
            PendingTxn {
                generation: self.next_id,
                coordinator_partition,
                coordinator_epoch,
                marker,
                partitions,
            },
        );
        self.take_if_done(&id).into_iter().collect()
    }

    /// Number of transactions with markers still to write.
    pub fn pending(&self) -> usize {
        self.txns.len()
    }

    /// Partitions of `transactional_id` still to write, if it is pending.
    pub fn pending_partitions(&self, transactional_id: &str) -> Option<Vec<TopicPartition>> {
        self.txns
            .get(transactional_id)
            .map(|t| t.partitions.keys().cloned().collect())
    }

    /// Abandons every transaction whose coordinator is no longer current: `current(partition,
    /// epoch)` says whether the shard of `__transaction_state` partition `partition` is still
    /// loaded here in leader epoch `epoch` (Kafka's `removeMarkersForTxnTopicPartition` on
    /// emigration; the new coordinator resends them).
    pub fn retain_current(&mut self, mut current: impl FnMut(i32, i32) -> bool) {
        self.txns.retain(|id, t| {
            let keep = current(t.coordinator_partition, t.coordinator_epoch);
            if !keep {
                tracing::info!(transactional_id = %id, coordinator_partition = t.coordinator_partition, "abandoning transaction markers: the coordinator moved");
            }
            keep
        });
    }

    /// The requests due at `now_ms`: every waiting partition whose backoff passed, grouped by
    /// its leader (from `leader_of`), one request per broker with none in flight, one marker
    /// entry per transaction. Partitions of deleted topics are dropped; transactions left
    /// with nothing to write are returned as completed.
    pub fn poll(
        &mut self,
        now_ms: i64,
        mut leader_of: impl FnMut(&TopicPartition) -> Leader,
    ) -> (Vec<Outgoing>, Vec<Completed>) {
        let busy: BTreeSet<i32> = self.in_flight.values().map(|(b, _)| *b).collect();
        // broker -> transactional id -> partitions
        let mut per_broker: BTreeMap<i32, BTreeMap<String, Vec<TopicPartition>>> = BTreeMap::new();
        let mut emptied = Vec::new();
        for (id, t) in self.txns.iter_mut() {
            let mut gone = Vec::new();
            for (tp, st) in t.partitions.iter() {
                let PartitionState::Waiting { not_before_ms, .. } = st else {
                    continue;
                };
                if *not_before_ms > now_ms {
                    continue;
                }
                match leader_of(tp) {
                    Leader::Gone => gone.push(tp.clone()),
                    Leader::Unavailable => {}
                    Leader::Node(b) if busy.contains(&b) => {}
                    Leader::Node(b) => per_broker
                        .entry(b)
                        .or_default()
                        .entry(id.clone())
                        .or_default()
                        .push(tp.clone()),
                }
            }
            for tp in gone {
                tracing::info!(transactional_id = %id, topic = %tp.topic, partition = tp.partition, "dropping the transaction marker of a deleted partition");
                t.partitions.remove(&tp);
            }
            if t.partitions.is_empty() {
                emptied.push(id.clone());
            }
        }
        let completed = emptied
            .iter()
            .filter_map(|id| self.take_if_done(id))
            .collect();
        let mut out = Vec::new();
        for (broker, txns) in per_broker {
            self.next_id += 1;
            let req_id = self.next_id;
            let mut markers = Vec::new();
            let mut carried = Vec::new();
            for (id, parts) in txns {
                let Some(t) = self.txns.get_mut(&id) else {
                    continue;
                };
                for tp in &parts {
                    if let Some(st) = t.partitions.get_mut(tp) {
                        let attempts = match st {
                            PartitionState::Waiting { attempts, .. } => *attempts,
                            PartitionState::InFlight { attempts, .. } => *attempts,
                        };
                        *st = PartitionState::InFlight {
                            id: req_id,
                            attempts,
                        };
                    }
                }
                carried.push((id.clone(), t.generation));
                markers.push(MarkerEntry {
                    producer_id: t.marker.producer_id,
                    producer_epoch: t.marker.producer_epoch,
                    commit: t.marker.commit,
                    coordinator_epoch: t.coordinator_epoch,
                    partitions: parts,
                });
            }
            self.in_flight.insert(req_id, (broker, carried));
            out.push(Outgoing {
                id: req_id,
                broker,
                markers,
            });
        }
        (out, completed)
    }

    /// The answer to request `id`: per transaction (by producer id, as the response keys it)
    /// the error of each partition. Written partitions are done; retriable failures wait a
    /// backoff; a fenced coordinator abandons the transaction. A partition the answer does
    /// not mention is tried again.
    pub fn on_response(
        &mut self,
        id: u64,
        results: &[(i64, Vec<(TopicPartition, i16)>)],
        now_ms: i64,
    ) -> Vec<Completed> {
        let Some((broker, carried)) = self.in_flight.remove(&id) else {
            return Vec::new();
        };
        let mut done = Vec::new();
        for (txn_id, generation) in carried {
            let Some(t) = self.txns.get_mut(&txn_id) else {
                continue;
            };
            if t.generation != generation {
                continue;
            }
            let errors: HashMap<&TopicPartition, i16> = results
                .iter()
                .filter(|(pid, _)| *pid == t.marker.producer_id)
                .flat_map(|(_, parts)| parts.iter().map(|(tp, e)| (tp, *e)))
                .collect();
            let mut abandon = false;
            let mut written = Vec::new();
            for (tp, st) in t.partitions.iter_mut() {
                let PartitionState::InFlight {
                    id: sent_in,
                    attempts,
                } = *st
                else {
                    continue;
                };
                if sent_in != id {
                    continue;
                }
                match errors.get(tp).copied() {
                    Some(0) => written.push(tp.clone()),
                    Some(code) if is_fenced(code) => {
                        tracing::info!(transactional_id = %txn_id, broker, code, "transaction markers refused: the coordinator is fenced; abandoning them");
                        abandon = true;
                    }
                    // Kafka drops a partition whose leader cannot take markers at all
                    // (UNSUPPORTED_FOR_MESSAGE_FORMAT).
                    Some(code) if code == ResponseError::UnsupportedForMessageFormat.code() => {
                        written.push(tp.clone())
                    }
                    other => {
                        if let Some(code) = other.filter(|c| !is_retriable(*c)) {
                            tracing::warn!(transactional_id = %txn_id, broker, topic = %tp.topic, partition = tp.partition, code, "unexpected error writing a transaction marker; retrying");
                        }
                        *st = backoff(attempts, now_ms);
                    }
                }
            }
            if abandon {
                self.txns.remove(&txn_id);
                continue;
            }
            for tp in written {
                t.partitions.remove(&tp);
            }
            if let Some(c) = self.take_if_done(&txn_id) {
                done.push(c);
            }
        }
        done
    }

    /// Request `id` got no answer (connection refused or broken, timeout): its partitions
    /// are tried again after a backoff.
    pub fn on_failure(&mut self, id: u64, now_ms: i64) {
        let Some((_, carried)) = self.in_flight.remove(&id) else {
            return;
        };
        for (txn_id, generation) in carried {
            let Some(t) = self.txns.get_mut(&txn_id) else {
                continue;
            };
            if t.generation != generation {
                continue;
            }
            for st in t.partitions.values_mut() {
                if let PartitionState::InFlight {
                    id: sent_in,
                    attempts,
                } = *st
                {
                    if sent_in == id {
                        *st = backoff(attempts, now_ms);
                    }
                }
            }
        }
    }

    /// When [`poll`](Self::poll) may next have something to send (None: only when new
    /// markers, answers or metadata arrive).
    pub fn next_wakeup_ms(&self) -> Option<i64> {
        self.txns
            .values()
            .flat_map(|t| t.partitions.values())
            .filter_map(|st| match st {
                PartitionState::Waiting { not_before_ms, .. } => Some(*not_before_ms),
                PartitionState::InFlight { .. } => None,
            })
            .min()
    }

    fn take_if_done(&mut self, txn_id: &str) -> Option<Completed> {
        if !self.txns.get(txn_id)?.partitions.is_empty() {
            return None;
        }
        let t = self.txns.remove(txn_id)?;
        Some(Completed {
            coordinator_partition: t.coordinator_partition,
            transactional_id: t.marker.transactional_id,
            producer_id: t.marker.producer_id,
            producer_epoch: t.marker.producer_epoch,
            commit: t.marker.commit,
        })
    }
}

/// Waiting again after `attempts` tries: 100 ms doubling up to 2 s.
fn backoff(attempts: u32, now_ms: i64) -> PartitionState {
    let delay = (RETRY_BACKOFF_MS << attempts.min(8)).min(MAX_RETRY_BACKOFF_MS);
    PartitionState::Waiting {
        not_before_ms: now_ms + delay,
        attempts: attempts.saturating_add(1),
    }
}

/// Errors Kafka's `TransactionMarkerRequestCompletionHandler` retries.
fn is_retriable(code: i16) -> bool {
    [
        ResponseError::UnknownTopicOrPartition,
        ResponseError::NotLeaderOrFollower,
        ResponseError::NotEnoughReplicas,
        ResponseError::NotEnoughReplicasAfterAppend,
        ResponseError::RequestTimedOut,
        ResponseError::KafkaStorageError,
    ]
    .iter()
    .any(|e| e.code() == code)
}

/// Errors that mean this coordinator is stale: a newer one owns the transaction.
fn is_fenced(code: i16) -> bool {
    code == ResponseError::InvalidProducerEpoch.code()
        || code == ResponseError::TransactionCoordinatorFenced.code()
}

/// The WriteTxnMarkers request of `out`.
pub fn to_request(out: &Outgoing) -> WriteTxnMarkersRequest {
    WriteTxnMarkersRequest::default().with_markers(
        out.markers
            .iter()
            .map(|m| {
                let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in &m.partitions {
                    topics.entry(&tp.topic).or_default().push(tp.partition);
                }
                WritableTxnMarker::default()
                    .with_producer_id(ProducerId(m.producer_id))
                    .with_producer_epoch(m.producer_epoch)
                    .with_transaction_result(m.commit)
                    .with_coordinator_epoch(m.coordinator_epoch)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                WritableTxnMarkerTopic::default()
                                    .with_name(TopicName(crate::handlers::sb(name)))
                                    .with_partition_indexes(partitions)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The per-partition results of a WriteTxnMarkers response, keyed by producer id.
pub fn from_response(resp: &WriteTxnMarkersResponse) -> Vec<(i64, Vec<(TopicPartition, i16)>)> {
    resp.markers
        .iter()
        .map(|m| {
            (
                m.producer_id.0,
                m.topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| {
                            (
                                TopicPartition {
                                    topic: t.name.to_string(),
                                    partition: p.partition_index,
                                },
                                p.error_code,
                            )
                        })
                    })
                    .collect(),
            )
        })
        .collect()
}

/// What the driver needs from the coordinator: whether a shard is still current, and where
/// completed transactions go.
pub trait MarkerSink: Send + Sync + 'static {
    /// Whether the shard of `__transaction_state` partition `partition` is loaded here in
    /// leader epoch `epoch`.
    fn is_current(&self, partition: i32, epoch: i32) -> bool;
    /// Tells the coordinator that a transaction's markers are written.
    fn markers_written(&self, completed: Completed);
}

/// The marker sender of this broker: the [`MarkerQueue`] driven by one task, which sends
/// each due request on the destination's connection (this broker's own partitions included:
/// it connects to its own listener, so a marker takes the same path whoever leads).
pub struct MarkerSender {
    queue: Mutex<MarkerQueue>,
    wake: Notify,
}

impl Default for MarkerSender {
    fn default() -> Self {
        Self::new()
    }
}

impl MarkerSender {
    /// A sender with nothing pending.
    pub fn new() -> Self {
        MarkerSender {
            queue: Mutex::new(MarkerQueue::new()),
            wake: Notify::new(),
        }
    }

    /// Queues markers a shard asked for (the coordinator runtime's effect sink). Returns
    /// transactions that completed at once (no partitions).
    pub fn enqueue(
        &self,
        coordinator_partition: i32,
        coordinator_epoch: i32,
        markers: Vec<TxnMarkerRequest>,
    ) -> Vec<Completed> {
        let now = now_ms();
        let mut done = Vec::new();
        {
            let mut q = self.queue.lock();
            for m in markers {
                done.extend(q.add(coordinator_partition, coordinator_epoch, m, now));
            }
        }
        self.wake.notify_one();
        done
    }

    /// Transactions with markers still to write.
    pub fn pending(&self) -> usize {
        self.queue.lock().pending()
    }

    /// Wakes the sender (new metadata may have new leaders).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the sender until the broker is dropped.
    pub async fn run(self: Arc<Self>, broker: std::sync::Weak<Broker>, sink: Arc<dyn MarkerSink>) {
        let connections: Arc<tokio::sync::Mutex<HashMap<i32, Connection>>> = Arc::default();
        loop {
            let Some(b) = broker.upgrade() else {
                return;
            };
            let image = b.image();
            let now = now_ms();
            let (out, done, wakeup) = {
                let mut q = self.queue.lock();
                q.retain_current(|p, e| sink.is_current(p, e));
                let (out, done) = q.poll(now, |tp| leader_in(&image, tp));
                (out, done, q.next_wakeup_ms())
            };
            for c in done {
                sink.markers_written(c);
            }
            for o in out {
                let this = self.clone();
                let sink = sink.clone();
                let conns = connections.clone();
                let b = b.clone();
                tokio::spawn(async move {
                    let result = send(&b, &conns, &o).await;
                    let done = {
                        let mut q = this.queue.lock();
                        match result {
                            Ok(resp) => q.on_response(o.id, &from_response(&resp), now_ms()),
                            Err(e) => {
                                tracing::debug!(broker = o.broker, error = %e, "cannot send transaction markers; retrying");
                                q.on_failure(o.id, now_ms());
                                Vec::new()
                            }
                        }
                    };
                    for c in done {
                        sink.markers_written(c);
                    }
                    this.wake.notify_one();
                });
            }
            drop(b);
            // Sleep until the next backoff ends, new work arrives, or (to notice new leaders
            // and deleted topics) at most a second.
            let wait = wakeup
                .map(|t| (t - now_ms()).clamp(1, 1000))
                .unwrap_or(1000);
            let _ = tokio::time::timeout(Duration::from_millis(wait as u64), self.wake.notified())
                .await;
        }
    }
}

/// Where `tp` lives in `image`.
fn leader_in(image: &nagare_metadata::MetadataImage, tp: &TopicPartition) -> Leader {
    let Some(p) = image
        .topic(&tp.topic)
        .and_then(|t| t.partitions.get(&tp.partition))
    else {
        return Leader::Gone;
    };
    if p.leader >= 0 && image.brokers.contains_key(&p.leader) {
        Leader::Node(p.leader)
    } else {
        Leader::Unavailable
    }
}

/// Sends one request to its destination: this broker's own handler in-process when it
/// leads the partitions (as Kafka's channel manager also sends to the local broker, only
/// without the socket), otherwise on the (cached) connection to the leader.
async fn send(
    broker: &Arc<Broker>,
    conns: &tokio::sync::Mutex<HashMap<i32, Connection>>,
    out: &Outgoing,
) -> Result<WriteTxnMarkersResponse, String> {
    if out.broker == broker.config.node_id {
        return send_local(broker, out).await;
    }
    // Taken out of the cache while in use: one request per broker at a time anyway.
    let cached = conns.lock().await.remove(&out.broker);
    let mut conn = match cached {
        Some(c) if !c.is_broken() => c,
        _ => {
            let client_id = format!("nagare-txn-marker-sender-{}", broker.config.node_id);
            connect(broker, out.broker, &client_id).await?
        }
    };
    let resp = conn
        .send_version(&to_request(out), 1)
        .await
        .map_err(|e| e.to_string())?;
    conns.lock().await.insert(out.broker, conn);
    Ok(resp)
}

/// Runs the request through this broker's own request pipeline, as if it came in on a
/// client listener from this broker.
async fn send_local(
    broker: &Arc<Broker>,
    out: &Outgoing,
) -> Result<WriteTxnMarkersResponse, String> {
    use bytes::{Buf, BytesMut};
    use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};

    const VERSION: i16 = 1;
    let key = ApiKey::WriteTxnMarkers;
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(out.id as i32)
        .with_client_id(Some(crate::handlers::sb(format!(
            "nagare-txn-marker-sender-{}",
            broker.config.node_id
        ))));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(VERSION))
        .map_err(|e| e.to_string())?;
    to_request(out)
        .encode(&mut buf, VERSION)
        .map_err(|e| e.to_string())?;
    let conn = Arc::new(crate::context::ConnectionContext::new(
        "INTERNAL",
        crate::context::ListenerKind::Broker,
        crate::context::SecurityProtocol::Plaintext,
        None,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    ));
    // The broker writing markers to its own partitions: never refused by the authorizer.
    conn.set_principal(crate::context::KafkaPrincipal::broker_internal());
    let d = crate::handlers::dispatch(broker, buf.freeze(), &conn, std::time::Instant::now()).await;
    let resp = match d.reply {
        crate::network::Reply::Now(r) => r,
        crate::network::Reply::Later(f) => f.await,
        crate::network::Reply::Nothing | crate::network::Reply::Close => {
            return Err("the local WriteTxnMarkers handler gave no answer".into())
        }
    };
    let mut bytes = BytesMut::new();
    for c in resp.chunks {
        match c {
            nagare_protocol::fetch::Chunk::Bytes(b) => bytes.extend_from_slice(&b),
            nagare_protocol::fetch::Chunk::Records(_) => {
                return Err("unexpected file region in a WriteTxnMarkers answer".into())
            }
        }
    }
    let mut bytes = bytes.freeze();
    if bytes.len() < 4 {
        return Err("short WriteTxnMarkers answer".into());
    }
    bytes.advance(4);
    ResponseHeader::decode(&mut bytes, key.response_header_version(VERSION))
        .map_err(|e| e.to_string())?;
    WriteTxnMarkersResponse::decode(&mut bytes, VERSION).map_err(|e| e.to_string())
}

/// A connection to broker `node`'s client endpoint, as `client_id` (also used by the
/// KIP-890 verification client, [`crate::txn_verification`]).
pub(crate) async fn connect(
    broker: &Broker,
    node: i32,
    client_id: &str,
) -> Result<Connection, String> {
    let image = broker.image();
    let reg = image
        .brokers
        .get(&node)
        .ok_or_else(|| format!("broker {node} is not registered"))?;
    let ep = broker
        .client_endpoint(reg)
        .ok_or_else(|| format!("broker {node} has no endpoint"))?;
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let addr = format!("{host}:{}", ep.port);
    let opts = ConnectionOptions {
        connect_timeout: Duration::from_secs(2),
        // Kafka's marker channel uses request.timeout.ms (30 s).
        request_timeout: Duration::from_secs(30),
        tls: broker.inter_broker_tls.get().cloned(),
        sasl: broker.inter_broker_sasl.get().cloned(),
        ..Default::default()
    };
    Connection::connect_with(&addr, client_id, opts)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition {
            topic: t.into(),
            partition: p,
        }
    }

    fn marker(id: &str, pid: i64, commit: bool, parts: &[TopicPartition]) -> TxnMarkerRequest {
        TxnMarkerRequest {
            transactional_id: id.into(),
            producer_id: pid,
            producer_epoch: 3,
            commit,
            partitions: parts.to_vec(),
            transaction_version: 0,
        }
    }

    /// a-* on broker 1, b-* on broker 2, c-* leaderless, gone-* deleted.
    fn leaders(tp: &TopicPartition) -> Leader {
        match tp.topic.as_str() {
            "a" => Leader::Node(1),
            "b" => Leader::Node(2),
            "c" => Leader::Unavailable,
            _ => Leader::Gone,
        }
    }

    fn ok(out: &Outgoing) -> Vec<(i64, Vec<(TopicPartition, i16)>)> {
        out.markers
            .iter()
            .map(|m| {
                (
                    m.producer_id,
                    m.partitions.iter().map(|p| (p.clone(), 0)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn one_request_per_broker_carrying_every_transaction_pending_for_it() {
        let mut q = MarkerQueue::new();
        assert!(q
            .add(
                4,
                7,
                marker("t1", 10, true, &[tp("a", 0), tp("b", 0), tp("a", 1)]),
                0
            )
            .is_empty());
        q.add(5, 2, marker("t2", 11, false, &[tp("a", 2)]), 0);
        let (mut out, done) = q.poll(0, leaders);
        assert!(done.is_empty());
        out.sort_by_key(|o| o.broker);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].broker, 1);
        let mut m = out[0].markers.clone();
        m.sort_by_key(|m| m.producer_id);
        assert_eq!(
            m,
            vec![
                MarkerEntry {
                    producer_id: 10,
                    producer_epoch: 3,
                    commit: true,
                    coordinator_epoch: 7,
                    partitions: vec![tp("a", 0), tp("a", 1)],
                },
                MarkerEntry {
                    producer_id: 11,
                    producer_epoch: 3,
                    commit: false,
                    coordinator_epoch: 2,
                    partitions: vec![tp("a", 2)],
                },
            ]
        );
        assert_eq!(out[1].broker, 2);
        assert_eq!(out[1].markers[0].partitions, vec![tp("b", 0)]);
        // The wire request groups partitions by topic.
        let req = to_request(&out[0]);
        assert_eq!(req.markers.len(), 2);
        // Nothing more while both are in flight.
        assert!(q.poll(0, leaders).0.is_empty());

        // Broker 1 answers: t2 is complete, t1 still waits for broker 2.
        let done = q.on_response(out[0].id, &ok(&out[0]), 5);
        assert_eq!(
            done,
            vec![Completed {
                coordinator_partition: 5,
                transactional_id: "t2".into(),
                producer_id: 11,
                producer_epoch: 3,
                commit: false,
            }]
        );
        assert_eq!(q.pending_partitions("t1"), Some(vec![tp("b", 0)]));
        let done = q.on_response(out[1].id, &ok(&out[1]), 6);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].transactional_id, "t1");
        assert_eq!(done[0].coordinator_partition, 4);
        assert_eq!(q.pending(), 0);
        assert_eq!(q.next_wakeup_ms(), None);
    }

    #[test]
    fn retriable_errors_and_lost_requests_retry_after_a_backoff_at_the_new_leader() {
        let mut q = MarkerQueue::new();
        q.add(0, 1, marker("t", 10, true, &[tp("a", 0), tp("a", 1)]), 0);
        let (out, _) = q.poll(0, leaders);
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        // a-0 written, a-1 refused by a former leader.
        let done = q.on_response(
            out[0].id,
            &[(10, vec![(tp("a", 0), 0), (tp("a", 1), not_leader)])],
            100,
        );
        assert!(done.is_empty());
        assert_eq!(q.next_wakeup_ms(), Some(100 + RETRY_BACKOFF_MS));
        assert!(
            q.poll(150, leaders).0.is_empty(),
            "retried before the backoff"
        );
        // The leader moved to broker 9.
        let (out, _) = q.poll(200, |_| Leader::Node(9));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].broker, 9);
        assert_eq!(out[0].markers[0].partitions, vec![tp("a", 1)]);
        // The connection breaks: tried again, with a longer backoff.
        q.on_failure(out[0].id, 200);
        assert_eq!(q.next_wakeup_ms(), Some(200 + 2 * RETRY_BACKOFF_MS));
        // No leader for a while: it waits.
        assert!(q.poll(400, |_| Leader::Unavailable).0.is_empty());
        let (out, _) = q.poll(400, |_| Leader::Node(9));
        let done = q.on_response(out[0].id, &ok(&out[0]), 401);
        assert_eq!(done.len(), 1);
        // A late answer to a finished request changes nothing.
        assert!(q.on_response(out[0].id, &ok(&out[0]), 402).is_empty());
    }

    #[test]
    fn deleted_partitions_are_dropped_and_fenced_coordinators_abandon() {
        let mut q = MarkerQueue::new();
        // Every partition deleted: completes on the next poll.
        q.add(
            0,
            1,
            marker("t", 10, false, &[tp("gone", 0), tp("c", 0)]),
            0,
        );
        let (out, done) = q.poll(0, leaders);
        assert!(out.is_empty() && done.is_empty(), "c-0 waits for a leader");
        assert_eq!(q.pending_partitions("t"), Some(vec![tp("c", 0)]));
        let (_, done) = q.poll(0, |_| Leader::Gone);
        assert_eq!(done.len(), 1);
        // An UNKNOWN_TOPIC_OR_PARTITION answer is retried; the next look finds it gone.
        q.add(0, 1, marker("u", 12, true, &[tp("a", 0)]), 0);
        let (out, _) = q.poll(0, leaders);
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        assert!(q
            .on_response(out[0].id, &[(12, vec![(tp("a", 0), unknown)])], 0)
            .is_empty());
        let (out, done) = q.poll(1_000, |_| Leader::Gone);
        assert!(out.is_empty());
        assert_eq!(done[0].transactional_id, "u");
        // A transaction without partitions completes at once.
        assert_eq!(q.add(0, 1, marker("e", 13, true, &[]), 0).len(), 1);

        // INVALID_PRODUCER_EPOCH: a newer coordinator owns it; abandoned, not completed.
        q.add(0, 1, marker("f", 14, true, &[tp("a", 0)]), 0);
        let (out, _) = q.poll(0, leaders);
        let fenced = ResponseError::InvalidProducerEpoch.code();
        assert!(q
            .on_response(out[0].id, &[(14, vec![(tp("a", 0), fenced)])], 0)
            .is_empty());
        assert_eq!(q.pending(), 0);

        // The coordinator's shard moved away: abandoned.
        q.add(3, 5, marker("g", 15, true, &[tp("c", 0)]), 0);
        q.retain_current(|p, e| (p, e) != (3, 5));
        assert_eq!(q.pending(), 0);
    }

    #[test]
    fn a_reloaded_shard_asking_again_keeps_progress_and_a_new_transaction_replaces_the_old() {
        let mut q = MarkerQueue::new();
        q.add(0, 1, marker("t", 10, true, &[tp("a", 0), tp("b", 0)]), 0);
        let (out, _) = q.poll(0, leaders);
        let to_a = out.iter().find(|o| o.broker == 1).expect("a");
        q.on_response(to_a.id, &ok(to_a), 1);
        // The shard reloads at epoch 2 and asks again: only b-0 is left, now at epoch 2.
        assert!(q
            .add(0, 2, marker("t", 10, true, &[tp("a", 0), tp("b", 0)]), 2)
            .is_empty());
        assert_eq!(q.pending_partitions("t"), Some(vec![tp("b", 0)]));
        // The in-flight request to b answers: done, reported once.
        let to_b = out.iter().find(|o| o.broker == 2).expect("b");
        let done = q.on_response(to_b.id, &ok(to_b), 3);
        assert_eq!(done.len(), 1);

        // A different transaction for the same id replaces a stale one; the stale request's
        // answer is ignored.
        q.add(0, 1, marker("s", 20, true, &[tp("a", 0)]), 0);
        let (out, _) = q.poll(0, leaders);
        q.add(0, 2, marker("s", 21, false, &[tp("b", 1)]), 0);
        assert!(q.on_response(out[0].id, &ok(&out[0]), 1).is_empty());
        assert_eq!(q.pending_partitions("s"), Some(vec![tp("b", 1)]));
        let (out, _) = q.poll(1, leaders);
        assert_eq!(out[0].markers[0].producer_id, 21);
        assert!(!out[0].markers[0].commit);
        assert_eq!(out[0].markers[0].coordinator_epoch, 2);
    }

    /// xorshift64*: a tiny deterministic generator for the seeded schedules.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Seeded schedules of leader moves, leaderless spells, lost requests, refusals by former
    /// leaders and transactions arriving at any time. Invariants checked at every step: at
    /// most one request in flight per broker, one marker entry per producer in a request,
    /// no partition in two requests at once, every partition sent to its leader of the
    /// moment; a transaction completes only after each of its partitions was written by its
    /// leader, and exactly once. Once leaders settle, everything completes.
    #[test]
    fn seeded_schedules_complete_every_transaction_once_after_all_its_markers() {
        const TXNS: usize = 12;
        for seed in 1..=300u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            let mut q = MarkerQueue::new();
            let all: Vec<TopicPartition> = ["a", "b", "c", "d"]
                .iter()
                .flat_map(|t| (0..3).map(move |p| tp(t, p)))
                .collect();
            let mut leaders: HashMap<TopicPartition, Leader> = all
                .iter()
                .map(|p| (p.clone(), Leader::Node(1 + (p.partition % 3))))
                .collect();
            let mut in_flight: Vec<Outgoing> = Vec::new();
            let mut txns: HashMap<String, BTreeSet<TopicPartition>> = HashMap::new();
            let mut written: BTreeSet<(String, TopicPartition)> = BTreeSet::new();
            let mut completed: HashMap<String, u32> = HashMap::new();
            let mut added = 0usize;
            let mut now = 0i64;
            let check_done = |done: Vec<Completed>,
                              txns: &HashMap<String, BTreeSet<TopicPartition>>,
                              written: &BTreeSet<(String, TopicPartition)>,
                              completed: &mut HashMap<String, u32>| {
                for c in done {
                    let parts = &txns[&c.transactional_id];
                    for p in parts {
                        assert!(
                            written.contains(&(c.transactional_id.clone(), p.clone())),
                            "seed {seed}: {} completed before {p:?} was written",
                            c.transactional_id
                        );
                    }
                    *completed.entry(c.transactional_id).or_default() += 1;
                }
            };
            for step in 0..3000 {
                let settle = step >= 2000;
                now += rng.below(40) as i64 + if settle { 500 } else { 0 };
                if settle {
                    for l in leaders.values_mut() {
                        if *l == Leader::Unavailable {
                            *l = Leader::Node(1);
                        }
                    }
                }
                match rng.below(10) {
                    0 | 1 if added < TXNS => {
                        let id = format!("t{added}");
                        let mut parts = BTreeSet::new();
                        for _ in 0..=rng.below(5) {
                            parts.insert(all[rng.below(all.len() as u64) as usize].clone());
                        }
                        txns.insert(id.clone(), parts.clone());
                        let m = TxnMarkerRequest {
                            transactional_id: id,
                            producer_id: 1000 + added as i64,
                            producer_epoch: 0,
                            commit: rng.below(2) == 0,
                            partitions: parts.into_iter().collect(),
                            transaction_version: 0,
                        };
                        added += 1;
                        let done = q.add(0, 1, m, now);
                        check_done(done, &txns, &written, &mut completed);
                    }
                    2 if !settle => {
                        let p = all[rng.below(all.len() as u64) as usize].clone();
                        let l = match rng.below(4) {
                            0 => Leader::Unavailable,
                            n => Leader::Node(n as i32),
                        };
                        leaders.insert(p, l);
                    }
                    3..=5 => {
                        let (out, done) = q.poll(now, |p| leaders[p]);
                        check_done(done, &txns, &written, &mut completed);
                        for o in out {
                            assert!(
                                in_flight.iter().all(|f| f.broker != o.broker),
                                "seed {seed}: two requests in flight to broker {}",
                                o.broker
                            );
                            let pids: BTreeSet<i64> =
                                o.markers.iter().map(|m| m.producer_id).collect();
                            assert_eq!(pids.len(), o.markers.len(), "seed {seed}");
                            for m in &o.markers {
                                for p in &m.partitions {
                                    assert_eq!(leaders[p], Leader::Node(o.broker), "seed {seed}");
                                    assert!(
                                        in_flight.iter().all(|f| f
                                            .markers
                                            .iter()
                                            .all(|fm| fm.producer_id != m.producer_id
                                                || !fm.partitions.contains(p))),
                                        "seed {seed}: {p:?} in two requests"
                                    );
                                }
                            }
                            in_flight.push(o);
                        }
                    }
                    _ if !in_flight.is_empty() => {
                        let o = in_flight.remove(rng.below(in_flight.len() as u64) as usize);
                        if !settle && rng.below(5) == 0 {
                            q.on_failure(o.id, now);
                            continue;
                        }
                        let mut results = Vec::new();
                        for m in &o.markers {
                            let id = format!("t{}", m.producer_id - 1000);
                            let mut parts = Vec::new();
                            for p in &m.partitions {
                                // Only the leader of the moment writes the marker.
                                if leaders[p] == Leader::Node(o.broker) {
                                    written.insert((id.clone(), p.clone()));
                                    parts.push((p.clone(), 0));
                                } else {
                                    parts.push((
                                        p.clone(),
                                        ResponseError::NotLeaderOrFollower.code(),
                                    ));
                                }
                            }
                            results.push((m.producer_id, parts));
                        }
                        let done = q.on_response(o.id, &results, now);
                        check_done(done, &txns, &written, &mut completed);
                    }
                    _ => {}
                }
            }
            // Leaders settled long ago: drain what is left.
            for _ in 0..100 {
                now += MAX_RETRY_BACKOFF_MS;
                let (out, done) = q.poll(now, |p| leaders[p]);
                check_done(done, &txns, &written, &mut completed);
                in_flight.extend(out);
                for o in std::mem::take(&mut in_flight) {
                    let results: Vec<_> = o
                        .markers
                        .iter()
                        .map(|m| {
                            let id = format!("t{}", m.producer_id - 1000);
                            for p in &m.partitions {
                                written.insert((id.clone(), p.clone()));
                            }
                            (
                                m.producer_id,
                                m.partitions.iter().map(|p| (p.clone(), 0)).collect(),
                            )
                        })
                        .collect();
                    let done = q.on_response(o.id, &results, now);
                    check_done(done, &txns, &written, &mut completed);
                }
            }
            assert_eq!(q.pending(), 0, "seed {seed}: transactions left pending");
            assert_eq!(completed.len(), added, "seed {seed}");
            assert!(
                completed.values().all(|n| *n == 1),
                "seed {seed}: a transaction completed twice: {completed:?}"
            );
        }
    }
}
