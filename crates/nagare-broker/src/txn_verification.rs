//! KIP-890 part 1: the partition leader's transaction verification client (Kafka's
//! `AddPartitionsToTxnManager`). Before the first transactional write of a producer's
//! transaction on a partition, the leader asks the transaction coordinator of the request's
//! transactional id whether the partition is in the producer's ongoing transaction at that
//! epoch (AddPartitionsToTxn v4+ with `verify_only`). Without this check a write delayed past
//! its transaction's abort would start a new transaction nobody ends: a hanging transaction
//! that pins the last stable offset until it times out.
//!
//! - **Batching.** Checks for transactional ids whose coordinator is on the same broker go to
//!   it in one AddPartitionsToTxn request, at most one in flight per broker; checks arriving
//!   meanwhile wait for the next one (Kafka's per-node `TransactionDataAndCallbacks`).
//! - **Same transactional id twice.** A check of the same producer and epoch as a waiting one
//!   is merged with it: Nagare reads a connection's next request while the previous one
//!   waits (Kafka mutes the connection), so a producer's pipelined produce requests meet
//!   here, and failing one of them would make it retry out of order. A newer epoch fences the
//!   waiting checks (INVALID_PRODUCER_EPOCH); a check with an older epoch than the waiting one
//!   gets INVALID_PRODUCER_EPOCH itself (Kafka's `addTxnData`).
//! - **Local coordinator.** A coordinator on this broker is asked in-process, without the
//!   wire (Kafka sends to itself over the network; the answer is the same).
//! - **Errors for produce** ([`produce_error`]): Kafka's `AddPartitionsToTxnManager` and
//!   `ReplicaManager` translations.
//!
//! [`VerifyQueue`] is the sans-I/O core; [`TxnVerifier`] drives it over the broker's
//! inter-broker connections.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId, TopicName, TransactionalId,
};
use nagare_client::Connection;
use nagare_coordinator::RequestContext;
use nagare_protocol::error::ResponseError;
use nagare_transaction_coordinator::{TopicPartition, TxnRequest, TxnResponse};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::Broker;

/// AddPartitionsToTxn version the verification requests use (v5: answers may carry
/// TRANSACTION_ABORTABLE, which [`produce_error`] translates for older produce versions).
pub const REQUEST_VERSION: i16 = 5;

/// One producer's check: are these partitions in its ongoing transaction?
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The transactional id of the produce request.
    pub transactional_id: String,
    /// The producer id of its transactional batches.
    pub producer_id: i64,
    /// Their producer epoch.
    pub producer_epoch: i16,
    /// The partitions whose first transactional write this is.
    pub partitions: Vec<TopicPartition>,
}

/// The per-partition error codes of a check (0: the partition is in the transaction).
pub type Results = Vec<(TopicPartition, i16)>;

/// An AddPartitionsToTxn request to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Identifies the request when its answer comes back.
    pub id: u64,
    /// The coordinator's broker.
    pub node: i32,
    /// One check per transactional id.
    pub checks: Vec<VerifyRequest>,
}

/// The sans-I/O state of the verification client: checks in (each with a waiter id chosen by
/// the driver), requests out, answers in, per-waiter results out.
#[derive(Debug, Default)]
pub struct VerifyQueue {
    /// Checks waiting for a request, per coordinator broker, per transactional id.
    waiting: BTreeMap<i32, BTreeMap<String, Waiting>>,
    /// Requests in flight: their broker and checks (with their waiters).
    in_flight: HashMap<u64, (i32, Vec<Waiting>)>,
    next_id: u64,
}

/// One transactional id's check and the waiters it answers (each with its partitions).
#[derive(Debug)]
struct Waiting {
    check: VerifyRequest,
    waiters: Vec<(u64, Vec<TopicPartition>)>,
}

impl Waiting {
    /// Each waiter's results, its partitions' codes from `code_of`.
    fn answer(self, mut code_of: impl FnMut(&TopicPartition) -> i16) -> Vec<(u64, Results)> {
        self.waiters
            .into_iter()
            .map(|(w, parts)| {
                let r = parts
                    .into_iter()
                    .map(|p| {
                        let c = code_of(&p);
                        (p, c)
                    })
                    .collect();
                (w, r)
            })
            .collect()
    }
}

fn all(req: &VerifyRequest, code: i16) -> Results {
    req.partitions.iter().map(|p| (p.clone(), code)).collect()
}

impl VerifyQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `req` of `waiter` for the coordinator on `node`. A check of the same
    /// transactional id and epoch already waiting is merged with it (a producer's pipelined
    /// produce requests: both are answered by the one request, so neither is failed and
    /// retried out of order). Returns the waiters answered at once: the waiting ones of an
    /// older epoch, or this one if the waiting check has a newer epoch.
    pub fn add(&mut self, node: i32, waiter: u64, req: VerifyRequest) -> Vec<(u64, Results)> {
        let per_node = self.waiting.entry(node).or_default();
        let fenced = ResponseError::InvalidProducerEpoch.code();
        let mut answered = Vec::new();
        if let Some(w) = per_node.get_mut(&req.transactional_id) {
            if w.check.producer_epoch > req.producer_epoch {
                return vec![(waiter, all(&req, fenced))];
            }
            if w.check.producer_epoch == req.producer_epoch
                && w.check.producer_id == req.producer_id
            {
                for tp in &req.partitions {
                    if !w.check.partitions.contains(tp) {
                        w.check.partitions.push(tp.clone());
                    }
                }
                w.waiters.push((waiter, req.partitions));
                return Vec::new();
            }
            // A newer epoch (or producer id): the waiting checks are of a fenced producer.
            for (old_waiter, parts) in w.waiters.drain(..) {
                answered.push((old_waiter, parts.into_iter().map(|p| (p, fenced)).collect()));
            }
        }
        per_node.insert(
            req.transactional_id.clone(),
            Waiting {
                waiters: vec![(waiter, req.partitions.clone())],
                check: req,
            },
        );
        answered
    }

    /// The requests to send now: one per broker with waiting checks and none in flight.
    pub fn poll(&mut self) -> Vec<Outgoing> {
        let busy: Vec<i32> = self.in_flight.values().map(|(n, _)| *n).collect();
        let ready: Vec<i32> = self
            .waiting
            .iter()
            .filter(|(n, w)| !w.is_empty() && !busy.contains(n))
            .map(|(n, _)| *n)
            .collect();
        let mut out = Vec::new();
        for node in ready {
            let Some(checks) = self.waiting.remove(&node) else {
                continue;
            };
            self.next_id += 1;
            let carried: Vec<Waiting> = checks.into_values().collect();
            out.push(Outgoing {
                id: self.next_id,
                node,
                checks: carried.iter().map(|w| w.check.clone()).collect(),
            });
            self.in_flight.insert(self.next_id, (node, carried));
        }
        out
    }

    /// The answer to request `id`: a top-level error (non-zero: every check gets it), else
    /// each transactional id's per-partition errors. A partition the answer leaves out gets
    /// NETWORK_EXCEPTION (retriable: the producer sends again).
    pub fn on_response(
        &mut self,
        id: u64,
        top_error: i16,
        results: &HashMap<String, Results>,
    ) -> Vec<(u64, Results)> {
        let Some((node, carried)) = self.in_flight.remove(&id) else {
            return Vec::new();
        };
        let missing = ResponseError::NetworkException.code();
        carried
            .into_iter()
            .flat_map(|w| {
                if top_error != 0 {
                    tracing::warn!(
                        node,
                        code = top_error,
                        "transaction verification request failed"
                    );
                    return w.answer(|_| top_error);
                }
                let answer: HashMap<TopicPartition, i16> = results
                    .get(&w.check.transactional_id)
                    .map(|r| r.iter().cloned().collect())
                    .unwrap_or_default();
                w.answer(|tp| answer.get(tp).copied().unwrap_or(missing))
            })
            .collect()
    }

    /// Request `id` got no answer (connection refused or broken, timeout): its checks get
    /// NETWORK_EXCEPTION (Kafka's disconnect handling), which produce turns into a retriable
    /// error.
    pub fn on_failure(&mut self, id: u64) -> Vec<(u64, Results)> {
        let Some((_, carried)) = self.in_flight.remove(&id) else {
            return Vec::new();
        };
        let code = ResponseError::NetworkException.code();
        carried
            .into_iter()
            .flat_map(|w| w.answer(|_| code))
            .collect()
    }

    /// Checks waiting or in flight.
    pub fn pending(&self) -> usize {
        let waiters = |w: &Waiting| w.waiters.len();
        self.waiting
            .values()
            .flat_map(|m| m.values())
            .map(waiters)
            .sum::<usize>()
            + self
                .in_flight
                .values()
                .flat_map(|(_, c)| c.iter())
                .map(waiters)
                .sum::<usize>()
    }
}

/// The produce error of a verification answer, as Kafka 4.x translates it: PRODUCER_FENCED
/// becomes INVALID_PRODUCER_EPOCH (produce answers fencing that way since 2.7);
/// TRANSACTION_ABORTABLE stays only for produce v11+ (clients of KIP-890's generic abortable
/// error; `AddPartitionsToTxnManager`), older ones get INVALID_TXN_STATE; coordinator and
/// network trouble (CONCURRENT_TRANSACTIONS, NETWORK_EXCEPTION, COORDINATOR_LOAD_IN_PROGRESS,
/// COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR) becomes NOT_ENOUGH_REPLICAS, which every
/// client retries without a metadata refresh (`ReplicaManager`'s verification callback).
pub fn produce_error(code: i16, produce_version: i16) -> i16 {
    use ResponseError as E;
    let is = |e: E| code == e.code();
    if is(E::ProducerFenced) {
        E::InvalidProducerEpoch.code()
    } else if is(E::TransactionAbortable) && produce_version < 11 {
        E::InvalidTxnState.code()
    } else if is(E::ConcurrentTransactions)
        || is(E::NetworkException)
        || is(E::CoordinatorLoadInProgress)
        || is(E::CoordinatorNotAvailable)
        || is(E::NotCoordinator)
    {
        E::NotEnoughReplicas.code()
    } else {
        code
    }
}

/// The AddPartitionsToTxn request (v4+, verify only) of `out`.
pub fn to_request(out: &Outgoing) -> AddPartitionsToTxnRequest {
    AddPartitionsToTxnRequest::default().with_transactions(
        out.checks
            .iter()
            .map(|c| {
                let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for tp in &c.partitions {
                    topics.entry(&tp.topic).or_default().push(tp.partition);
                }
                AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(crate::handlers::sb(
                        c.transactional_id.clone(),
                    )))
                    .with_producer_id(ProducerId(c.producer_id))
                    .with_producer_epoch(c.producer_epoch)
                    .with_verify_only(true)
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, partitions)| {
                                AddPartitionsToTxnTopic::default()
                                    .with_name(TopicName(crate::handlers::sb(name)))
                                    .with_partitions(partitions)
                            })
                            .collect(),
                    )
            })
            .collect(),
    )
}

/// The top-level error and per-transaction results of an AddPartitionsToTxn v4+ response.
pub fn from_response(resp: &AddPartitionsToTxnResponse) -> (i16, HashMap<String, Results>) {
    let results = resp
        .results_by_transaction
        .iter()
        .map(|t| {
            let parts = t
                .topic_results
                .iter()
                .flat_map(|topic| {
                    topic.results_by_partition.iter().map(|p| {
                        (
                            TopicPartition {
                                topic: topic.name.to_string(),
                                partition: p.partition_index,
                            },
                            p.partition_error_code,
                        )
                    })
                })
                .collect();
            (t.transactional_id.to_string(), parts)
        })
        .collect();
    (resp.error_code, results)
}

/// The verification client of this broker: [`VerifyQueue`] plus the waiters' channels and the
/// connections to coordinator brokers.
#[derive(Debug, Default)]
pub struct TxnVerifier {
    queue: Mutex<VerifyQueue>,
    waiters: Mutex<HashMap<u64, oneshot::Sender<Results>>>,
    next_waiter: AtomicU64,
    conns: tokio::sync::Mutex<HashMap<i32, Connection>>,
    /// Per producer id, the newest verified produce still to append: its turn number and
    /// the signal it gives once appended ([`TxnVerifier::take_turn`]).
    turns: Mutex<HashMap<i64, (u64, oneshot::Receiver<()>)>>,
}

/// A verified produce's place in its producer's order (see [`TxnVerifier::take_turn`]).
/// Dropping it (appended, or the request abandoned) lets the next one go.
#[derive(Debug)]
pub struct Turn {
    verifier: Arc<TxnVerifier>,
    producer_id: i64,
    number: u64,
    previous: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl Turn {
    /// Waits until the producer's previous verified produce has appended (or given up).
    pub async fn wait(&mut self) {
        if let Some(prev) = self.previous.take() {
            let _ = prev.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
        let mut turns = self.verifier.turns.lock();
        if turns
            .get(&self.producer_id)
            .is_some_and(|(n, _)| *n == self.number)
        {
            turns.remove(&self.producer_id);
        }
    }
}

impl TxnVerifier {
    /// A verifier with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next place in `producer_id`'s order, in the handler (that is, in request
    /// arrival order). Nagare reads a connection's next request while an earlier one waits
    /// for its verification; two pipelined produce requests of a transaction's first writes
    /// both wait, and must append in the order they came, or the second would be refused as
    /// out of sequence (Kafka avoids this by muting the connection until it answered).
    pub fn take_turn(self: &Arc<Self>, producer_id: i64) -> Turn {
        let number = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let previous = self
            .turns
            .lock()
            .insert(producer_id, (number, rx))
            .map(|(_, r)| r);
        Turn {
            verifier: self.clone(),
            producer_id,
            number,
            previous,
            done: Some(tx),
        }
    }

    /// Whether a verified produce of `producer_id` is still to append: a later one must then
    /// take a turn too, even if it needs no verification itself.
    pub fn has_turn(&self, producer_id: i64) -> bool {
        self.turns.lock().contains_key(&producer_id)
    }

    /// Asks the transaction coordinator of `req.transactional_id` whether `req.partitions`
    /// are in the producer's ongoing transaction. Returns each partition's error as the
    /// coordinator gave it (see [`produce_error`] for what produce answers).
    pub async fn verify(self: &Arc<Self>, broker: &Arc<Broker>, req: VerifyRequest) -> Results {
        if req.partitions.is_empty() {
            return Vec::new();
        }
        let image = broker.image();
        let not_available = ResponseError::CoordinatorNotAvailable.code();
        let Some(shard) = crate::transaction_coordinator::TransactionCoordinator::shard_of(
            &image,
            &req.transactional_id,
        ) else {
            return all(&req, not_available);
        };
        let leader = image
            .topic(nagare_transaction_coordinator::TRANSACTION_STATE_TOPIC)
            .and_then(|t| t.partitions.get(&shard))
            .map(|p| p.leader)
            .filter(|l| *l >= 0 && image.brokers.contains_key(l));
        let Some(node) = leader else {
            return all(&req, not_available);
        };
        if node == broker.config.node_id {
            return verify_local(broker, &image, req).await;
        }
        let waiter = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(waiter, tx);
        let answered = self.queue.lock().add(node, waiter, req.clone());
        self.deliver(answered);
        self.pump(broker);
        rx.await
            .unwrap_or_else(|_| all(&req, ResponseError::NetworkException.code()))
    }

    fn deliver(&self, answered: Vec<(u64, Results)>) {
        let mut waiters = self.waiters.lock();
        for (waiter, results) in answered {
            if let Some(tx) = waiters.remove(&waiter) {
                let _ = tx.send(results);
            }
        }
    }

    /// Sends every request due, each on its own task; an answer sends the next batch.
    fn pump(self: &Arc<Self>, broker: &Arc<Broker>) {
        let outgoing = self.queue.lock().poll();
        for out in outgoing {
            let this = self.clone();
            let b = broker.clone();
            tokio::spawn(async move {
                let answered = match this.send(&b, &out).await {
                    Ok(resp) => {
                        let (top, results) = from_response(&resp);
                        this.queue.lock().on_response(out.id, top, &results)
                    }
                    Err(e) => {
                        tracing::info!(node = out.node, error = %e, "transaction verification request failed");
                        this.queue.lock().on_failure(out.id)
                    }
                };
                this.deliver(answered);
                this.pump(&b);
            });
        }
    }

    async fn send(
        &self,
        broker: &Arc<Broker>,
        out: &Outgoing,
    ) -> Result<AddPartitionsToTxnResponse, String> {
        // Taken out of the cache while in use: one request per broker at a time anyway.
        let cached = self.conns.lock().await.remove(&out.node);
        let mut conn = match cached {
            Some(c) if !c.is_broken() => c,
            _ => {
                let client_id = format!("nagare-txn-verifier-{}", broker.config.node_id);
                crate::marker_sender::connect(broker, out.node, &client_id).await?
            }
        };
        let resp = conn
            .send_version(&to_request(out), REQUEST_VERSION)
            .await
            .map_err(|e| e.to_string())?;
        self.conns.lock().await.insert(out.node, conn);
        Ok(resp)
    }
}

/// Asks the coordinator shard on this broker directly.
async fn verify_local(
    broker: &Arc<Broker>,
    image: &nagare_metadata::MetadataImage,
    req: VerifyRequest,
) -> Results {
    let ctx = RequestContext {
        api_version: REQUEST_VERSION,
        client_id: format!("nagare-txn-verifier-{}", broker.config.node_id),
        client_host: String::new(),
    };
    let id = req.transactional_id.clone();
    let pending = broker
        .transactions
        .handle(
            image,
            &id,
            ctx,
            TxnRequest::AddPartitions {
                transactional_id: id.clone(),
                producer_id: req.producer_id,
                producer_epoch: req.producer_epoch,
                partitions: req.partitions.clone(),
                verify_only: true,
                // As the AddPartitionsToTxn handler does for v4+ (from brokers).
                transaction_version: 2,
            },
        )
        .await;
    match pending.await {
        TxnResponse::AddPartitions { results } => {
            // Partitions the answer leaves out are retried by the producer.
            let answer: HashMap<TopicPartition, i16> = results.into_iter().collect();
            let missing = ResponseError::NetworkException.code();
            req.partitions
                .iter()
                .map(|tp| (tp.clone(), answer.get(tp).copied().unwrap_or(missing)))
                .collect()
        }
        other => {
            tracing::error!(
                ?other,
                "unexpected transaction coordinator answer to a verification"
            );
            all(&req, ResponseError::UnknownServerError.code())
        }
    }
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

    fn check(id: &str, epoch: i16, parts: &[TopicPartition]) -> VerifyRequest {
        VerifyRequest {
            transactional_id: id.into(),
            producer_id: 100,
            producer_epoch: epoch,
            partitions: parts.to_vec(),
        }
    }

    #[test]
    fn checks_for_one_broker_share_a_request_and_later_ones_wait_for_the_answer() {
        let mut q = VerifyQueue::new();
        assert!(q.add(1, 10, check("a", 0, &[tp("x", 0)])).is_empty());
        assert!(q
            .add(1, 11, check("b", 0, &[tp("x", 1), tp("y", 0)]))
            .is_empty());
        assert!(q.add(2, 12, check("c", 0, &[tp("x", 2)])).is_empty());
        let mut out = q.poll();
        out.sort_by_key(|o| o.node);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].node, 1);
        assert_eq!(out[0].checks.len(), 2);
        let req = to_request(&out[0]);
        assert!(req.transactions.iter().all(|t| t.verify_only));
        assert_eq!(req.transactions[1].topics.len(), 2);
        // While broker 1's request is in flight, a new check for it waits.
        q.add(1, 13, check("d", 0, &[tp("z", 0)]));
        assert!(q.poll().is_empty());
        let abortable = ResponseError::TransactionAbortable.code();
        let answer = HashMap::from([
            ("a".to_string(), vec![(tp("x", 0), 0)]),
            // y-0 left out of the answer.
            ("b".to_string(), vec![(tp("x", 1), abortable)]),
        ]);
        let mut done = q.on_response(out[0].id, 0, &answer);
        done.sort_by_key(|d| d.0);
        let net = ResponseError::NetworkException.code();
        assert_eq!(done[0], (10, vec![(tp("x", 0), 0)]));
        assert_eq!(
            done[1],
            (11, vec![(tp("x", 1), abortable), (tp("y", 0), net)])
        );
        // Now broker 1's next batch goes.
        let next = q.poll();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].checks, vec![check("d", 0, &[tp("z", 0)])]);
        // A top-level error answers every check; a lost request answers NETWORK_EXCEPTION.
        let auth = ResponseError::ClusterAuthorizationFailed.code();
        assert_eq!(
            q.on_response(next[0].id, auth, &HashMap::new()),
            vec![(13, vec![(tp("z", 0), auth)])]
        );
        assert_eq!(q.on_failure(out[1].id), vec![(12, vec![(tp("x", 2), net)])]);
        assert_eq!(q.pending(), 0);
        // A late answer changes nothing.
        assert!(q.on_response(out[0].id, 0, &answer).is_empty());
    }

    #[test]
    fn checks_of_the_same_transactional_id_merge_and_a_newer_epoch_fences_the_waiting_ones() {
        let mut q = VerifyQueue::new();
        q.add(1, 1, check("a", 3, &[tp("x", 0)]));
        // Same producer and epoch (pipelined produce requests): merged into one check, each
        // waiter answered for its own partitions.
        assert!(q
            .add(1, 2, check("a", 3, &[tp("x", 0), tp("x", 1)]))
            .is_empty());
        let out = q.poll();
        assert_eq!(
            out[0].checks,
            vec![check("a", 3, &[tp("x", 0), tp("x", 1)])]
        );
        let abortable = ResponseError::TransactionAbortable.code();
        let answer = HashMap::from([(
            "a".to_string(),
            vec![(tp("x", 0), 0), (tp("x", 1), abortable)],
        )]);
        let mut done = q.on_response(out[0].id, 0, &answer);
        done.sort_by_key(|d| d.0);
        assert_eq!(
            done,
            vec![
                (1, vec![(tp("x", 0), 0)]),
                (2, vec![(tp("x", 0), 0), (tp("x", 1), abortable)]),
            ]
        );
        // A newer epoch: the waiting checks of the old one are fenced.
        q.add(1, 3, check("a", 3, &[tp("x", 0)]));
        let fenced = ResponseError::InvalidProducerEpoch.code();
        assert_eq!(
            q.add(1, 4, check("a", 4, &[tp("x", 1)])),
            vec![(3, vec![(tp("x", 0), fenced)])]
        );
        // Older epoch than the waiting one: refused itself.
        assert_eq!(
            q.add(1, 5, check("a", 2, &[tp("x", 2)])),
            vec![(5, vec![(tp("x", 2), fenced)])]
        );
        let out = q.poll();
        assert_eq!(out[0].checks, vec![check("a", 4, &[tp("x", 1)])]);
        assert_eq!(q.pending(), 1);
    }

    #[tokio::test]
    async fn turns_keep_a_producers_verified_appends_in_arrival_order() {
        let v = Arc::new(TxnVerifier::new());
        assert!(!v.has_turn(7));
        let first = v.take_turn(7);
        let mut second = v.take_turn(7);
        let mut other = v.take_turn(8);
        assert!(v.has_turn(7));
        // Another producer does not wait; the second waits for the first.
        other.wait().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), second.wait());
        assert!(
            waiting.await.is_err(),
            "the second went before the first appended"
        );
        drop(first);
        assert!(v.has_turn(7), "the second is still to append");
        tokio::time::timeout(std::time::Duration::from_secs(1), second.wait())
            .await
            .expect("the first appended: the second goes");
        drop(second);
        assert!(!v.has_turn(7));
    }

    #[test]
    fn produce_errors_follow_kafka() {
        use ResponseError as E;
        assert_eq!(produce_error(0, 9), 0);
        assert_eq!(
            produce_error(E::ProducerFenced.code(), 9),
            E::InvalidProducerEpoch.code()
        );
        assert_eq!(
            produce_error(E::TransactionAbortable.code(), 10),
            E::InvalidTxnState.code()
        );
        assert_eq!(
            produce_error(E::TransactionAbortable.code(), 11),
            E::TransactionAbortable.code()
        );
        for e in [
            E::ConcurrentTransactions,
            E::NetworkException,
            E::CoordinatorLoadInProgress,
            E::CoordinatorNotAvailable,
            E::NotCoordinator,
        ] {
            assert_eq!(produce_error(e.code(), 9), E::NotEnoughReplicas.code());
        }
        assert_eq!(
            produce_error(E::InvalidProducerIdMapping.code(), 9),
            E::InvalidProducerIdMapping.code()
        );
    }
}
