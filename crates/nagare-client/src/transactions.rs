//! Transaction administration on [`Client`], as Kafka's Admin client and
//! `kafka-transactions.sh` do it: list transactions at every broker (ListTransactions),
//! describe one at its coordinator (DescribeTransactions), describe a partition's active
//! producers at its leader (DescribeProducers, KIP-664), and abort a hanging transaction by
//! writing an abort marker at the partition's leader (WriteTxnMarkers, KIP-664's
//! `abortTransaction`).

use std::collections::BTreeMap;
use std::time::Duration;

use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeTransactionsRequest, ListTransactionsRequest, ProducerId,
    TopicName, TransactionalId, WriteTxnMarkersRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::client::{Client, Target};
use crate::error::{check_code, Error, Result};
use crate::group::is_coordinator_error;

/// A transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The transactional id.
    pub transactional_id: String,
    /// The broker that coordinates it.
    pub coordinator: i32,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its state (`Ongoing`, `CompleteCommit`, …).
    pub state: String,
}

/// A transaction as DescribeTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The coordinator's node id.
    pub coordinator: i32,
    /// The transactional id.
    pub transactional_id: String,
    /// Its state.
    pub state: String,
    /// The producer's `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// When the ongoing transaction started (-1 when none is ongoing).
    pub start_time_ms: i64,
    /// The producer id.
    pub producer_id: i64,
    /// The producer epoch.
    pub producer_epoch: i16,
    /// The partitions in the ongoing transaction.
    pub partitions: Vec<(String, i32)>,
}

/// An active producer of a partition as DescribeProducers reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    /// The producer id.
    pub producer_id: i64,
    /// The latest epoch.
    pub producer_epoch: i32,
    /// The last sequence number written.
    pub last_sequence: i32,
    /// The timestamp of its last write.
    pub last_timestamp: i64,
    /// The coordinator epoch of its last transaction marker (-1 if none).
    pub coordinator_epoch: i32,
    /// The first offset of its ongoing transaction (-1 if none).
    pub current_txn_start_offset: i64,
}

/// From DescribeProducers' wire form (the CLI and the web console read it the same way).
impl From<kafka_protocol::messages::describe_producers_response::ProducerState> for ProducerState {
    fn from(s: kafka_protocol::messages::describe_producers_response::ProducerState) -> Self {
        ProducerState {
            producer_id: s.producer_id.0,
            producer_epoch: s.producer_epoch,
            last_sequence: s.last_sequence,
            last_timestamp: s.last_timestamp,
            coordinator_epoch: s.coordinator_epoch,
            current_txn_start_offset: s.current_txn_start_offset,
        }
    }
}

/// The WriteTxnMarkers request that aborts the transaction of `producer_id`/`producer_epoch`
/// on one partition, written with `coordinator_epoch` (Kafka's `Admin.abortTransaction`,
/// KIP-664). Shared by [`Client::abort_transaction`] and the broker's web console, so both
/// abort a hanging transaction the same way.
pub fn abort_marker_request(
    topic: &str,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
) -> WriteTxnMarkersRequest {
    let mut t = WritableTxnMarkerTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    t.partition_indexes = vec![partition];
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(producer_id);
    m.producer_epoch = producer_epoch;
    m.transaction_result = false;
    m.coordinator_epoch = coordinator_epoch;
    m.topics = vec![t];
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![m];
    req
}

/// The producer id, epoch and coordinator epoch to abort `p`'s open transaction with, as
/// `kafka-transactions.sh abort --start-offset` derives them: the producer's last coordinator
/// epoch, or 0 when it never saw a marker. `None` when the epoch does not fit a request's
/// i16.
pub fn abort_spec(p: &ProducerState) -> Option<(i64, i16, i32)> {
    let epoch = i16::try_from(p.producer_epoch).ok()?;
    Some((p.producer_id, epoch, p.coordinator_epoch.max(0)))
}

/// Whether `p` has a transaction open on its partition whose last write is older than
/// `max_ms` at `now_ms`: a suspect of Kafka's `FindHangingTransactionsCommand`.
pub fn hanging_suspect(p: &ProducerState, now_ms: i64, max_ms: i64) -> bool {
    p.current_txn_start_offset >= 0 && now_ms - p.last_timestamp > max_ms
}

/// Whether the coordinator's description `d` still covers the open transaction of a
/// producer with `producer_epoch` on `topic`-`partition` (ongoing or completing, same epoch,
/// the partition in it): then the transaction is not hanging.
pub fn coordinator_covers(
    d: &TransactionDescription,
    topic: &str,
    partition: i32,
    producer_epoch: i32,
) -> bool {
    matches!(
        d.state.as_str(),
        "Ongoing" | "PrepareCommit" | "PrepareAbort"
    ) && i32::from(d.producer_epoch) == producer_epoch
        && d.partitions
            .iter()
            .any(|(t, q)| t == topic && *q == partition)
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.to_owned()))
}

impl Client {
    /// Lists the transactions of every broker's coordinator (ListTransactions), optionally
    /// only those in `states`, of `producer_ids`, or running longer than `min_duration_ms`
    /// (KIP-994; -1 for all). Sorted by transactional id.
    pub async fn list_transactions(
        &mut self,
        states: &[String],
        producer_ids: &[i64],
        min_duration_ms: i64,
    ) -> Result<Vec<TransactionListing>> {
        self.metadata(Some(&[])).await?;
        let nodes: Vec<i32> = self.brokers().keys().copied().collect();
        let mut out = BTreeMap::new();
        for node in nodes {
            let mut attempt = 0;
            let resp = loop {
                let result = self
                    .send_to(Target::Node(node), None, Duration::ZERO, |_| {
                        let mut req = ListTransactionsRequest::default();
                        req.state_filters = states
                            .iter()
                            .map(|s| StrBytes::from_string(s.clone()))
                            .collect();
                        req.producer_id_filters =
                            producer_ids.iter().map(|p| ProducerId(*p)).collect();
                        req.duration_filter = min_duration_ms;
                        req
                    })
                    .await;
                let retry = match &result {
                    Ok(resp) => ResponseError::try_from_code(resp.error_code)
                        .is_some_and(is_coordinator_error),
                    Err(e) => e.is_transport(),
                };
                if !retry || attempt >= self.config().retries.max(10) {
                    break result?;
                }
                self.backoff(attempt).await;
                attempt += 1;
            };
            check_code(resp.error_code, None, || {
                format!("list transactions of broker {node}")
            })?;
            for t in resp.transaction_states {
                let listing = TransactionListing {
                    transactional_id: t.transactional_id.0.to_string(),
                    coordinator: node,
                    producer_id: t.producer_id.0,
                    state: t.transaction_state.to_string(),
                };
                out.insert(listing.transactional_id.clone(), listing);
            }
        }
        Ok(out.into_values().collect())
    }

    /// The node id of the coordinator of transactional id `id` (FindCoordinator, key type 1).
    pub async fn find_transaction_coordinator(&mut self, id: &str) -> Result<i32> {
        self.find_coordinator_of(1, id).await
    }

    /// Describes transactional id `id` at its coordinator (DescribeTransactions), retrying
    /// while the coordinator moves or loads.
    pub async fn describe_transaction(&mut self, id: &str) -> Result<TransactionDescription> {
        let mut attempt = 0;
        loop {
            let result = match self.find_coordinator_of(1, id).await {
                Ok(node) => self
                    .send_to(Target::Node(node), None, Duration::ZERO, |_| {
                        let mut req = DescribeTransactionsRequest::default();
                        req.transactional_ids = vec![txn_id(id)];
                        req
                    })
                    .await
                    .map(|r| (node, r)),
                Err(e) => Err(e),
            };
            let retry = match &result {
                Ok((_, resp)) => resp.transaction_states.first().is_some_and(|t| {
                    ResponseError::try_from_code(t.error_code).is_some_and(is_coordinator_error)
                }),
                Err(e) => {
                    e.is_transport()
                        || e.kafka_error().is_some_and(is_coordinator_error)
                        || matches!(e, Error::UnknownBroker { .. })
                }
            };
            if retry && attempt < self.config().retries.max(10) {
                self.backoff(attempt).await;
                attempt += 1;
                continue;
            }
            let (node, resp) = result?;
            let Some(t) = resp.transaction_states.into_iter().next() else {
                return Err(Error::UnexpectedResponse {
                    addr: format!("node {node}"),
                    reason: format!("DescribeTransactions of '{id}' answered no transaction"),
                });
            };
            check_code(t.error_code, None, || {
                format!("describe transaction '{id}'")
            })?;
            let mut partitions: Vec<(String, i32)> = t
                .topics
                .iter()
                .flat_map(|tp| tp.partitions.iter().map(|p| (tp.topic.0.to_string(), *p)))
                .collect();
            partitions.sort();
            return Ok(TransactionDescription {
                coordinator: node,
                transactional_id: t.transactional_id.0.to_string(),
                state: t.transaction_state.to_string(),
                timeout_ms: t.transaction_timeout_ms,
                start_time_ms: t.transaction_start_time_ms,
                producer_id: t.producer_id.0,
                producer_epoch: t.producer_epoch,
                partitions,
            });
        }
    }

    /// The active producers of a partition at its leader (DescribeProducers).
    pub async fn describe_producers(
        &mut self,
        topic: &str,
        partition: i32,
    ) -> Result<Vec<ProducerState>> {
        let mut attempt = 0;
        loop {
            let result = match self.leader_for(topic, partition).await {
                Ok(leader) => {
                    self.send_to(Target::Node(leader), None, Duration::ZERO, |_| {
                        let mut t = TopicRequest::default();
                        t.name = TopicName(StrBytes::from_string(topic.to_owned()));
                        t.partition_indexes = vec![partition];
                        let mut req = DescribeProducersRequest::default();
                        req.topics = vec![t];
                        req
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            let code = match &result {
                Ok(resp) => resp
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .map(|p| {
                        (
                            p.error_code,
                            p.error_message.as_ref().map(|m| m.to_string()),
                        )
                    }),
                Err(_) => None,
            };
            let stale = match (&result, &code) {
                (Err(e), _) => e.is_transport(),
                (Ok(_), Some((c, _))) => {
                    *c == ResponseError::NotLeaderOrFollower.code()
                        || *c == ResponseError::LeaderNotAvailable.code()
                }
                (Ok(_), None) => false,
            };
            if stale && attempt < self.config().retries {
                self.invalidate_topic(topic);
                self.backoff(attempt).await;
                attempt += 1;
                continue;
            }
            let resp = result?;
            let Some((code, message)) = code else {
                return Err(Error::UnexpectedResponse {
                    addr: format!("the leader of {topic}-{partition}"),
                    reason: "DescribeProducers answered nothing for the partition".into(),
                });
            };
            check_code(code, message.as_deref(), || {
                format!("describe the producers of {topic}-{partition}")
            })?;
            let mut out: Vec<ProducerState> = resp
                .topics
                .into_iter()
                .flat_map(|t| t.partitions)
                .filter(|p| p.partition_index == partition)
                .flat_map(|p| p.active_producers)
                .map(ProducerState::from)
                .collect();
            out.sort_by_key(|s| s.producer_id);
            return Ok(out);
        }
    }

    /// Aborts the transaction of producer `producer_id`/`producer_epoch` on one partition by
    /// writing an ABORT marker at the partition's leader with `coordinator_epoch`
    /// (WriteTxnMarkers, as Kafka's `Admin.abortTransaction`): the way out for a hanging
    /// transaction whose coordinator no longer knows it. Needs CLUSTER_ACTION.
    pub async fn abort_transaction(
        &mut self,
        topic: &str,
        partition: i32,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<()> {
        let mut attempt = 0;
        loop {
            let result = match self.leader_for(topic, partition).await {
                Ok(leader) => {
                    self.send_to(Target::Node(leader), None, Duration::ZERO, |_| {
                        abort_marker_request(
                            topic,
                            partition,
                            producer_id,
                            producer_epoch,
                            coordinator_epoch,
                        )
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            let code = match &result {
                Ok(resp) => resp
                    .markers
                    .iter()
                    .flat_map(|m| m.topics.iter())
                    .flat_map(|t| t.partitions.iter())
                    .find(|p| p.partition_index == partition)
                    .map(|p| p.error_code),
                Err(_) => None,
            };
            let stale = match (&result, code) {
                (Err(e), _) => e.is_transport(),
                (Ok(_), Some(c)) => {
                    c == ResponseError::NotLeaderOrFollower.code()
                        || c == ResponseError::LeaderNotAvailable.code()
                }
                (Ok(_), None) => false,
            };
            if stale && attempt < self.config().retries {
                self.invalidate_topic(topic);
                self.backoff(attempt).await;
                attempt += 1;
                continue;
            }
            result?;
            let Some(code) = code else {
                return Err(Error::UnexpectedResponse {
                    addr: format!("the leader of {topic}-{partition}"),
                    reason: "WriteTxnMarkers answered nothing for the partition".into(),
                });
            };
            return check_code(code, None, || {
                format!("abort the transaction of producer {producer_id} on {topic}-{partition}")
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn producer(epoch: i32, start: i64, last: i64, coordinator_epoch: i32) -> ProducerState {
        ProducerState {
            producer_id: 7,
            producer_epoch: epoch,
            last_sequence: 0,
            last_timestamp: last,
            coordinator_epoch,
            current_txn_start_offset: start,
        }
    }

    #[test]
    fn find_hanging_predicates_follow_kafkas_tool() {
        // Suspect: open, and last written longer ago than the timeout.
        assert!(hanging_suspect(&producer(0, 5, 1_000, -1), 62_000, 60_000));
        assert!(!hanging_suspect(&producer(0, 5, 1_000, -1), 61_000, 60_000));
        assert!(!hanging_suspect(&producer(0, -1, 0, -1), 1_000_000, 60_000));
        let d = TransactionDescription {
            coordinator: 1,
            transactional_id: "t".into(),
            state: "Ongoing".into(),
            timeout_ms: 60_000,
            start_time_ms: 0,
            producer_id: 7,
            producer_epoch: 3,
            partitions: vec![("a".into(), 1)],
        };
        assert!(coordinator_covers(&d, "a", 1, 3));
        assert!(!coordinator_covers(&d, "a", 2, 3), "another partition");
        assert!(!coordinator_covers(&d, "a", 1, 2), "an older epoch");
        let done = TransactionDescription {
            state: "CompleteCommit".into(),
            ..d
        };
        assert!(!coordinator_covers(&done, "a", 1, 3));
        // The abort marker: the producer's coordinator epoch, 0 when it never saw one.
        assert_eq!(abort_spec(&producer(3, 5, 0, -1)), Some((7, 3, 0)));
        assert_eq!(abort_spec(&producer(3, 5, 0, 4)), Some((7, 3, 4)));
        assert_eq!(abort_spec(&producer(70_000, 5, 0, 4)), None);
        let req = abort_marker_request("a", 1, 7, 3, 4);
        let m = &req.markers[0];
        assert_eq!(
            (
                m.producer_id.0,
                m.producer_epoch,
                m.coordinator_epoch,
                m.transaction_result
            ),
            (7, 3, 4, false)
        );
        assert_eq!(m.topics[0].partition_indexes, vec![1]);
    }
}
